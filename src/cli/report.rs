//! `treefarm report`: the run's journal (state.json, events.jsonl, logs,
//! per-instance files) gathered into `report::html::RunReport` and written
//! as one HTML file, by default `summary.html` in the run directory. `run`,
//! `resume` and `merge` write it at the end too.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::context::Ctx;
use crate::error::ExitCode;
use crate::git::Repo;
use crate::overlap::{find_overlaps, Footprint};
use crate::report::graph::{Graph, GraphNode, OverlapEdge};
use crate::report::html::{render, RunReport, SpecDetail, Usage};
use crate::report::timeline;
use crate::state::RunOptions;
use crate::state::{InstanceState, RunDir, RunRecord};

/// The report's file name inside the run directory.
pub const REPORT_FILE: &str = "summary.html";

/// `treefarm report [RUN_ID] [--html FILE] [--open]`.
pub fn report(
    ctx: &Ctx,
    run_id: Option<&str>,
    html: Option<&Path>,
    open: bool,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (_, dir) = crate::cli::commands::open_run_or_latest(ctx, run_id)?;
    let path = write_report(&dir, &ctx.config.overlap.ignore, html)?;
    writeln!(err, "report: {}", path.display())?;
    if open {
        open_in_browser(&path, err)?;
    }
    Ok(ExitCode::Success)
}

/// Writes the report of the run in `dir` to `out` (default `summary.html`
/// in the run directory) and returns its path.
pub fn write_report(
    dir: &RunDir,
    ignore: &[String],
    out: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    write_report_with(dir, ignore, out).map(|(path, _)| path)
}

/// [`write_report`], also returning the report's data (the MCP `report`
/// tool returns its figures).
pub(crate) fn write_report_with(
    dir: &RunDir,
    ignore: &[String],
    out: Option<&Path>,
) -> anyhow::Result<(PathBuf, RunReport)> {
    let path = out.map_or_else(|| dir.path().join(REPORT_FILE), Path::to_path_buf);
    let record = dir.read_state()?;
    let events = dir.read_events()?;
    let report = assemble(dir, &record, &events, record.opts(), ignore, &path);
    let html = render(&report);
    std::fs::write(&path, html)
        .with_context(|| format!("failed to write the report `{}`", path.display()))?;
    Ok((path, report))
}

/// Writes the report at the end of a run and prints where; a report that
/// cannot be written is a warning, never the run's failure.
pub fn report_after_run(dir: &RunDir, ignore: &[String], err: &mut dyn Write) {
    match write_report(dir, ignore, None) {
        Ok(path) => {
            let _ = writeln!(err, "report: {}", path.display());
        }
        Err(e) => {
            let _ = writeln!(err, "treefarm: warning: no report written: {e:#}");
        }
    }
}

fn open_in_browser(path: &Path, err: &mut dyn Write) -> anyhow::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => Ok(()),
        Err(e) => {
            writeln!(
                err,
                "treefarm: cannot start `{opener}` to open the report: {e}\nhint: open {} in a browser",
                path.display()
            )?;
            Ok(())
        }
    }
}

/// `path` as a link from the report file: relative when the report lives in
/// the run directory (the default), else absolute.
fn link(run_dir: &Path, report: &Path, path: &Path) -> Option<String> {
    if !path.exists() {
        return None;
    }
    // The default report, in the run directory, of a path under it as the
    // journal names it: relative without canonicalising (three per link,
    // a failing readlink per component, were most of `report`'s time at
    // 2,000 specs).
    if report.parent() == Some(run_dir) {
        if let Ok(rel) = path.strip_prefix(run_dir) {
            return Some(rel.display().to_string());
        }
    }
    let report_dir = report.parent().and_then(|p| p.canonicalize().ok());
    let run_dir = run_dir.canonicalize().ok();
    let abs = path.canonicalize().ok()?;
    if report_dir.is_some() && report_dir == run_dir {
        if let Some(rel) = run_dir.and_then(|r| abs.strip_prefix(r).ok().map(Path::to_path_buf)) {
            return Some(rel.display().to_string());
        }
    }
    Some(format!("file://{}", abs.display()))
}

fn result_of(state: InstanceState) -> String {
    match state {
        // Merged and cleaned up is, to the reader, merged.
        InstanceState::Pruned => "merged".into(),
        other => other.as_str().into(),
    }
}

/// The overlaps of the run's specs with their paths, recomputed at the run's
/// base commit and restricted to the pairs the run scheduled apart. Without
/// the repository, the pairs without paths.
fn overlap_edges(opts: &RunOptions, ignore: &[String]) -> Vec<OverlapEdge> {
    let pairs: HashSet<(&str, &str)> = opts
        .conflicts
        .iter()
        .flat_map(|(a, b)| [(a.as_str(), b.as_str()), (b.as_str(), a.as_str())])
        .collect();
    let recomputed = (|| -> Option<Vec<OverlapEdge>> {
        let repo = Repo::discover(&opts.repo_root).ok()?;
        let base = repo.resolve(&opts.base_commit).ok()?;
        let tracked = repo.tracked_files(base).ok()?;
        let footprints: Vec<Footprint> = opts
            .specs
            .iter()
            .map(|s| Footprint {
                id: s.id.clone(),
                files: s.files.clone(),
                shared: s.shared.clone(),
            })
            .collect();
        let found = find_overlaps(&footprints, &tracked, ignore).ok()?;
        Some(
            found
                .into_iter()
                .filter(|o| pairs.contains(&(o.a.as_str(), o.b.as_str())))
                .map(|o| OverlapEdge {
                    a: o.a,
                    b: o.b,
                    paths: o.paths,
                })
                .collect(),
        )
    })()
    .unwrap_or_default();
    let mut edges = recomputed;
    for (a, b) in &opts.conflicts {
        let known = edges
            .iter()
            .any(|e| (&e.a, &e.b) == (a, b) || (&e.a, &e.b) == (b, a));
        if !known {
            edges.push(OverlapEdge {
                a: a.clone(),
                b: b.clone(),
                paths: Vec::new(),
            });
        }
    }
    edges
}

/// Everything the report shows, from the journal.
fn assemble(
    dir: &RunDir,
    record: &RunRecord,
    events: &[serde_json::Value],
    opts: Option<&RunOptions>,
    ignore: &[String],
    report_path: &Path,
) -> RunReport {
    let now = crate::state::now_ms();
    let timeline = timeline::build(record, events, now);
    let summary: Option<serde_json::Value> = std::fs::read(dir.summary_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let target_commit = summary
        .as_ref()
        .and_then(|s| s.get("target_commit")?.as_str().map(str::to_string));
    let members: HashSet<&str> = record.instances.iter().map(|i| i.id.as_str()).collect();
    let wave_of = |id: &str| {
        timeline
            .rows
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.wave)
            .map(|w| w - 1)
    };
    let graph = Graph {
        nodes: record
            .instances
            .iter()
            .map(|i| GraphNode {
                id: i.id.clone(),
                title: i.title.clone(),
                wave: wave_of(&i.id),
                result: Some(result_of(i.state)),
            })
            .collect(),
        overlaps: opts.map(|o| overlap_edges(o, ignore)).unwrap_or_default(),
        depends: opts
            .map(|o| {
                o.specs
                    .iter()
                    .flat_map(|s| {
                        s.depends_on
                            .iter()
                            .filter(|d| members.contains(d.as_str()))
                            .map(|d| (d.clone(), s.id.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        waves: 0,
    };
    let gate_configured = opts.is_some_and(|o| o.gate.is_some());
    let specs = record
        .instances
        .iter()
        .map(|inst| {
            let spec = opts.and_then(|o| o.spec(&inst.id));
            let usage: Option<Usage> = std::fs::read(dir.instance_dir(&inst.id).join("usage.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let gate = match (gate_configured, inst.state) {
                (false, _) => "none configured".to_string(),
                (true, InstanceState::Merged | InstanceState::Pruned) => "passed".into(),
                (true, InstanceState::Refused) => "refused".into(),
                (true, _) => "not run".into(),
            };
            SpecDetail {
                id: inst.id.clone(),
                title: inst.title.clone(),
                result: result_of(inst.state),
                attempts: inst.attempt,
                duration_ms: inst
                    .started_at_ms
                    .map(|s| inst.ended_at_ms.unwrap_or(now).saturating_sub(s)),
                commits: inst.commits,
                declared: spec.map(|s| s.files.clone()).unwrap_or_default(),
                changed_files: inst.changed_files.clone(),
                scope_creep: inst.scope_creep.clone(),
                conflict_paths: inst.conflict_paths.clone(),
                gate,
                reason: inst.reason.clone(),
                denied: inst.denied.clone(),
                branch: inst.branch.clone(),
                log: link(dir.path(), report_path, Path::new(&inst.log_path))
                    .or_else(|| link(dir.path(), report_path, &dir.log_path(&inst.id))),
                prompt: link(dir.path(), report_path, &dir.prompt_path(&inst.id)),
                gate_log: link(dir.path(), report_path, &dir.gate_log_path(&inst.id)),
                usage,
                job: inst.job.as_ref().map(|j| {
                    let id = j.id.map_or(String::new(), |id| format!(" {id}"));
                    format!("job{id} {}", j.describe(now))
                }),
            }
        })
        .collect();
    RunReport {
        run_id: record.run_id.clone(),
        state: record.effective_state().as_str().to_string(),
        target: record.target().to_string(),
        target_commit,
        timeline: Some(timeline),
        graph,
        specs,
        pacing: crate::report::human::pacing_lines(record),
    }
}
