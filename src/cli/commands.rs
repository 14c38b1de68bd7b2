//! `init`, `check`, `plan` and `status`.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use crate::cli::context::{git_err, Ctx};
use crate::error::{ExitCode, InputError};
use crate::git::Oid;
use crate::overlap::{find_overlaps, Footprint, Overlap};
use crate::report::check::{write_diagnostics, write_plan_human, PlanReport, PlanSpec};
use crate::schedule::{plan_waves, Node};
use crate::spec::{load_spec_folder, Diagnostic, Spec, SpecFolder};

/// The selected specs and what `check`, `plan` and `run` derive from them.
pub struct Selection {
    pub specs: Vec<Spec>,
    /// The commit branches would start from: the target tip, or `base` when
    /// the target does not exist yet.
    pub base: Oid,
    pub overlaps: Vec<Overlap>,
    /// Warnings about the selected specs (errors stop `select`).
    pub warnings: Vec<Diagnostic>,
}

impl Selection {
    pub fn conflicts(&self) -> Vec<(String, String)> {
        self.overlaps
            .iter()
            .map(|o| (o.a.clone(), o.b.clone()))
            .collect()
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.specs.iter().map(Node::from).collect()
    }
}

/// Reads the spec folder with the configured markers and patterns.
pub fn spec_folder(ctx: &Ctx) -> anyhow::Result<SpecFolder> {
    let opts = ctx.config.spec.load_options();
    Ok(load_spec_folder(ctx.root(), &ctx.config.spec_dir, &opts).map_err(InputError::from)?)
}

/// The overlaps of `specs` against the tree of the base commit.
pub fn overlaps_of(ctx: &Ctx, specs: &[Spec]) -> anyhow::Result<(Oid, Vec<Overlap>)> {
    let target_tip = ctx.repo.branch_tip(&ctx.config.target).map_err(git_err)?;
    let base = match target_tip {
        Some(tip) => tip,
        None => ctx.repo.resolve(&ctx.config.base).map_err(git_err)?,
    };
    let tracked = ctx.repo.tracked_files(base).map_err(git_err)?;
    let footprints: Vec<Footprint> = specs
        .iter()
        .map(|s| Footprint {
            id: s.id.clone(),
            files: s.files.clone(),
            shared: s.shared.clone(),
        })
        .collect();
    let overlaps = find_overlaps(&footprints, &tracked, &ctx.config.overlap.ignore)
        .map_err(|e| InputError::new(e.to_string()))?;
    Ok((base, overlaps))
}

/// The specs `plan` and `run` act on. Any error of a selected spec (and an
/// unknown dependency or a duplicated id in use) is bad input: nothing is
/// created. Specs that were not selected cannot make it fail.
pub fn select(ctx: &Ctx, ids: &[String]) -> anyhow::Result<Selection> {
    let folder = spec_folder(ctx)?;
    let chosen = folder.select(ids).map_err(InputError::from)?;
    if let Some(text) = chosen.error_text() {
        return Err(InputError::new(text)
            .with_hint("`treefarm check --explain <spec>` shows how a spec was read")
            .into());
    }
    let (base, overlaps) = overlaps_of(ctx, &chosen.specs)?;
    Ok(Selection {
        warnings: chosen.warnings().cloned().collect(),
        specs: chosen.specs,
        base,
        overlaps,
    })
}

/// `value` as one line of JSON. Buffered: the writer may be stdout, which
/// would otherwise take its lock and flush its small buffer thousands of times
/// for a large report.
pub(crate) fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut buf = std::io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut buf, value).context("write JSON")?;
    writeln!(buf)?;
    buf.flush()?;
    Ok(())
}

/// The preset `init` configures without `--agent`: the path the real-CLI
/// tests prove (`tests/integration/real_agents.rs`), with the prompt on
/// stdin, root handling, usage, rate limits and the event stream — never a
/// raw command line.
const DEFAULT_INIT_PRESET: &str = "claude-code";

pub fn init(start: &Path, agent: Option<&str>, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = crate::git::Repo::discover(start).map_err(git_err)?;
    let agent = agent.unwrap_or(DEFAULT_INIT_PRESET);
    crate::agents::preset(agent)?;
    let written = crate::config::init(repo.root(), Some(agent)).map_err(InputError::from)?;
    for (path, created) in written {
        let rel = path.strip_prefix(repo.root()).unwrap_or(&path);
        if created {
            writeln!(err, "created {}", rel.display())?;
        } else {
            writeln!(
                err,
                "kept    {} (already exists; not overwritten)",
                rel.display()
            )?;
        }
    }
    Ok(ExitCode::Success)
}

pub fn plan(
    ctx: &Ctx,
    ids: &[String],
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if ctx.config.instances == 0 {
        return Err(InputError::new("--instances must be at least 1").into());
    }
    let sel = select(ctx, ids)?;
    if !json {
        write_diagnostics(
            &[],
            &sel.warnings,
            err,
            crate::report::human::stderr_color(),
        )?;
    }
    let worktree_dir = ctx.worktree_dir()?;
    let waves = plan_waves(sel.nodes(), &sel.conflicts(), ctx.config.instances);
    let wave_index: std::collections::HashMap<&str, usize> = waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |id| (id.as_str(), i)))
        .collect();
    let wave_of = |id: &str| wave_index.get(id).copied().unwrap_or(0);
    let report = PlanReport {
        target: ctx.config.target.clone(),
        base: sel.base.to_string(),
        instances: ctx.config.instances,
        specs: sel
            .specs
            .iter()
            .map(|s| PlanSpec {
                id: s.id.clone(),
                title: s.title.clone(),
                branch: crate::spec::branch_for(&s.id),
                worktree: worktree_dir.join(&s.id).display().to_string(),
                depends_on: s.depends_on.clone(),
                priority: s.priority,
                wave: wave_of(&s.id),
            })
            .collect(),
        waves,
    };
    if json {
        write_json(out, &report)?;
    } else {
        write_plan_human(&report, err, crate::report::human::stderr_color())?;
    }
    Ok(ExitCode::Success)
}

/// The run `run_id`, or the latest one: its id and folder. No run, or an
/// unknown id, is bad input (exit 2).
pub(crate) fn open_run_or_latest(
    ctx: &Ctx,
    run_id: Option<&str>,
) -> anyhow::Result<(String, crate::state::RunDir)> {
    let state = crate::state::StateDir::new(ctx.repo.common_dir());
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => state.latest_run()?.ok_or_else(|| {
            InputError::new("no treefarm run in this repository yet")
                .with_hint("start one with `treefarm run`")
        })?,
    };
    let dir = state
        .open_run(&run_id)
        .map_err(|e| anyhow::Error::new(InputError::new(e.to_string())))?;
    Ok((run_id, dir))
}

pub fn status(
    ctx: &Ctx,
    run_id: Option<&str>,
    json: bool,
    watch: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    use crate::state::RunState;
    let (_, dir) = open_run_or_latest(ctx, run_id)?;
    let color = !json
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let mut last = String::new();
    let mut disk_at: Option<(std::time::Instant, u64)> = None;
    loop {
        let mut record = dir.read_state()?;
        // Progress written by agents since the last journal write, and by
        // agents whose coordinator is gone.
        crate::report::status::apply_live_status(&mut record, &dir);
        let now = crate::state::now_ms();
        let mut buf = Vec::new();
        // Disk the run's worktrees use now (only those still on disk); a
        // walk of every file, so `--watch` repeats it every few seconds only.
        let disk = match disk_at {
            Some((at, bytes)) if at.elapsed() < std::time::Duration::from_secs(5) => bytes,
            _ => {
                let bytes: u64 = record
                    .instances
                    .iter()
                    .map(|i| crate::disk::disk_usage(std::path::Path::new(&i.worktree)))
                    .sum();
                disk_at = Some((std::time::Instant::now(), bytes));
                bytes
            }
        };
        if json {
            let mut value = crate::report::status::status_json(&record, now);
            value["disk_bytes"] = disk.into();
            value["usage"] = crate::report::usage::usage_json(&crate::report::usage::run_usage(
                dir.path(),
                &record,
            ));
            serde_json::to_writer(&mut buf, &value)?;
            buf.push(b'\n');
        } else {
            crate::report::status::write_status_human(&record, now, &mut buf, color)?;
            writeln!(
                buf,
                "disk: worktrees use {}",
                crate::policy::reserve::human_bytes(disk)
            )?;
            let usage = crate::report::usage::run_usage(dir.path(), &record);
            if let Some(line) = crate::report::usage::usage_line(&usage) {
                writeln!(buf, "{line}")?;
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        if !watch || text != last {
            if watch && color {
                write!(out, "\x1b[H\x1b[2J")?;
            }
            out.write_all(text.as_bytes())?;
            out.flush()?;
            last = text;
        }
        let live = record.state == RunState::Running
            && crate::procfs::is_alive(record.coordinator_pid, record.coordinator_start);
        if !watch || !live {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    Ok(ExitCode::Success)
}
