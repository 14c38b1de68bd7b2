//! `treefarm split`: an agent drafts the specs of one request in a scratch
//! folder of a throwaway worktree; treefarm judges every round with its own
//! `check` plus the split's rules (`crate::split`), hands the diagnostics
//! back, names the specs and, with `--write`, adds them to the spec folder.
//! `run --from FILE` and `split --run` chain a split and a run.
//!
//! Layout, under `<git-common-dir>/treefarm/splits/<split-id>/`:
//! `split-*/` the throwaway worktree (removed in every case; made anew at
//! the same path when a round wrote outside the scratch folder, so a CLI
//! that keys its conversations by the folder continues them) holding the
//! scratch folder `.treefarm-split/`; `coordinator` the pid and start time
//! of the `treefarm` running the split (so `prune` leaves a running split
//! alone); `agent/` the agent's private folder (`tmp/` = `TMPDIR`, prompt,
//! status, exit code, one log per round, the preset wrapper's record of its
//! CLI's conversation `session-<cli>`);
//! `judge/` the spec folder `check` reads (existing specs and the rendered
//! drafts); `drafts/` the last round's scratch folder, kept;
//! `round-N.md` each round's diagnostics.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::args::{RunArgs, SplitArgs};
use crate::cli::check::{evaluate, CheckOptions};
use crate::cli::commands::write_json;
use crate::cli::context::{git_err, Ctx};
use crate::error::{ExitCode, InputError};
use crate::git::{worktree_snapshot, Oid, ScratchWorktree};
use crate::report::check::CheckReport;
use crate::spec::{load_spec_folder, Diagnostic, ParseOptions, SpecFolder};
use crate::split::{
    assign_ids, declared_files, diagnostics_text, judge_drafts, read_drafts, render_spec,
    rewritten_depends_on, spec_file_name, split_prompt, write_scratch, Draft, ExistingSpec,
    Findings, IdMap, ScratchInputs, SplitLimits, SplitRound, DIAGNOSTICS_FILE, DRAFT_HINT,
    SCRATCH_DIR,
};

/// What one split is asked.
#[derive(Debug, Clone)]
pub struct SplitRequest {
    pub request: String,
    /// An agent command (`--agent`), over the config's.
    pub agent: Option<String>,
    /// A preset (`--preset`), over the config's.
    pub preset: Option<String>,
    pub rounds: u32,
    pub limits: SplitLimits,
    pub isolation: Option<crate::config::IsolationMode>,
}

/// One spec of the split, named by treefarm (also a part of the MCP tool
/// `check_drafts`'s result, hence its schema).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlannedSpec {
    /// The id treefarm gives it (the next free one).
    pub id: String,
    /// The draft it came from: its file name in the scratch folder.
    pub draft: String,
    /// Where `--write` puts it, relative to the repository root.
    pub file: String,
    pub title: String,
    /// Its declared files (`files` and `creates` together).
    pub files: Vec<String>,
    pub creates: Vec<String>,
    /// `depends_on` with draft names replaced by ids.
    pub depends_on: Vec<String>,
    #[serde(skip)]
    pub text: String,
}

/// How a split ended.
#[derive(Debug, Clone, Serialize)]
pub struct SplitOutcome {
    /// `independent`, `overlaps`, `invalid`, `agent_failed` or `interrupted`.
    pub result: &'static str,
    /// Why the rounds stopped: `valid`, `rounds`, `no_progress`, `agent`.
    pub stopped: &'static str,
    pub rounds: u32,
    /// The split's folder: drafts, diagnostics and logs are kept there.
    pub kept: PathBuf,
    pub specs: Vec<PlannedSpec>,
    pub waves: Vec<Vec<String>>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub overlaps: Vec<crate::overlap::Overlap>,
    /// The last round's `check` report.
    pub check: Option<CheckReport>,
    /// What went wrong with the agent.
    pub failure: Option<String>,
    /// Spec files `--write` added.
    pub written: Vec<String>,
    #[serde(skip)]
    pub exit: ExitCode,
}

impl SplitOutcome {
    /// "4 specs, 3 waves".
    pub fn cost(&self) -> String {
        cost(self.specs.len(), self.waves.len())
    }
}

/// "4 specs, 3 waves": what a split costs to run.
pub(crate) fn cost(specs: usize, waves: usize) -> String {
    format!(
        "{specs} spec{}, {waves} wave{}",
        if specs == 1 { "" } else { "s" },
        if waves == 1 { "" } else { "s" }
    )
}

/// `treefarm split`.
pub fn split(
    mut ctx: Ctx,
    args: &SplitArgs,
    quiet: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let request = read_request(args.request.as_deref(), args.from.as_deref())?;
    let req = SplitRequest {
        request,
        agent: args.agent.clone(),
        preset: args.preset.clone(),
        rounds: args.rounds.unwrap_or(ctx.config.split.rounds),
        limits: SplitLimits {
            min_specs: args.min_specs.unwrap_or(ctx.config.split.min_specs),
            max_specs: args.max_specs.unwrap_or(ctx.config.split.max_specs),
        },
        isolation: args.isolation,
    };
    let mut outcome = split_specs(&mut ctx, &req, quiet || args.json, err)?;
    if (args.write || args.run) && outcome.exit != ExitCode::BadInput && outcome.failure.is_none() {
        outcome.written = write_specs(&ctx, &outcome.specs)?;
    }
    report(&outcome, args.json, out, err)?;
    if args.run && !outcome.written.is_empty() {
        return run_written(ctx, &RunArgs::default_for(&outcome), quiet);
    }
    Ok(outcome.exit)
}

/// `treefarm run --from FILE`: split the request with the configured agent,
/// write the specs when the split is valid, and run them.
pub fn run_from(
    mut ctx: Ctx,
    args: &RunArgs,
    from: &Path,
    quiet: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let req = SplitRequest {
        request: read_request(None, Some(from))?,
        agent: args.agent.clone(),
        preset: None,
        rounds: ctx.config.split.rounds,
        limits: SplitLimits {
            min_specs: ctx.config.split.min_specs,
            max_specs: ctx.config.split.max_specs,
        },
        isolation: args.isolation,
    };
    let mut outcome = split_specs(&mut ctx, &req, quiet || args.json, err)?;
    if outcome.exit == ExitCode::BadInput || outcome.failure.is_some() {
        report(&outcome, false, out, err)?;
        return Ok(outcome.exit);
    }
    outcome.written = write_specs(&ctx, &outcome.specs)?;
    report(&outcome, false, out, err)?;
    let mut run_args = args.clone();
    run_args.ids = outcome.specs.iter().map(|s| s.id.clone()).collect();
    run_written(ctx, &run_args, quiet)
}

impl RunArgs {
    /// `run` of exactly the specs of a split, everything else as configured.
    fn default_for(outcome: &SplitOutcome) -> RunArgs {
        RunArgs {
            ids: outcome.specs.iter().map(|s| s.id.clone()).collect(),
            ..RunArgs::default()
        }
    }
}

/// Runs the specs just written (the spec folder is read again).
fn run_written(ctx: Ctx, args: &RunArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::load(ctx.root(), ctx.config_path.as_deref())?;
    crate::cli::run::run(ctx, args, quiet)
}

/// For the demo (and tools): split `request` in the repository at `root`
/// with the agent command `agent` (a scripted one), writing the specs when
/// the split is valid. Output as `treefarm split --write` prints it.
pub fn scripted_split(
    root: &Path,
    request: &str,
    agent: &str,
    write: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut ctx = Ctx::load(root, None)?;
    let req = SplitRequest {
        request: request.to_string(),
        agent: Some(agent.to_string()),
        preset: None,
        rounds: ctx.config.split.rounds,
        limits: SplitLimits {
            min_specs: ctx.config.split.min_specs,
            max_specs: ctx.config.split.max_specs,
        },
        isolation: None,
    };
    let mut outcome = split_specs(&mut ctx, &req, false, err)?;
    if write && outcome.exit != ExitCode::BadInput && outcome.failure.is_none() {
        outcome.written = write_specs(&ctx, &outcome.specs)?;
    }
    report(&outcome, false, out, err)?;
    Ok(outcome.exit)
}

fn read_request(text: Option<&str>, from: Option<&Path>) -> anyhow::Result<String> {
    let request = match (text, from) {
        (Some(t), _) => t.to_string(),
        (None, Some(p)) if p == Path::new("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("failed to read the request from stdin")?;
            s
        }
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("failed to read the request `{}`", p.display()))?,
        (None, None) => String::new(),
    };
    if request.trim().is_empty() {
        return Err(InputError::new("the request to split is empty")
            .with_hint("pass it as an argument, or `--from FILE`")
            .into());
    }
    Ok(request)
}

/// Where the scratch folder waits while the worktree is made anew.
const SCRATCH_HOLD: &str = "scratch-hold";

/// The file in a split's folder naming the `treefarm` that runs it.
const SPLIT_COORDINATOR: &str = "coordinator";

/// Writes `<dir>/coordinator`: this process's pid and start time (`prune`
/// leaves a split whose coordinator is alive alone).
fn write_coordinator(dir: &Path) -> anyhow::Result<()> {
    let pid = std::process::id();
    let start = crate::procfs::start_time(pid).map_or(String::new(), |t| t.to_string());
    let path = dir.join(SPLIT_COORDINATOR);
    std::fs::write(&path, format!("{pid} {start}\n"))
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// True when the `treefarm` that wrote `<dir>/coordinator` still runs; a
/// folder without that file (or with one it cannot read) is not running.
pub(crate) fn split_running(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(SPLIT_COORDINATOR)) else {
        return false;
    };
    let mut words = text.split_whitespace();
    let Some(pid) = words.next().and_then(|w| w.parse::<u32>().ok()) else {
        return false;
    };
    let start = words.next().and_then(|w| w.parse::<u64>().ok());
    crate::procfs::is_alive(pid, start)
}

/// Everything a split's rounds share.
struct Workspace {
    dir: PathBuf,
    /// `TREEFARM_SPLIT_SESSION`: the conversation every round continues.
    session: String,
    agent_dir: PathBuf,
    judge: PathBuf,
    worktree: Option<ScratchWorktree>,
    basis: Basis,
}

/// What drafts are judged against: the files tracked at the base commit and
/// the existing specs.
pub(crate) struct Basis {
    /// The target's tip, else the base: what the drafts' paths must exist in.
    base: Oid,
    /// Tracked at `base`, sorted.
    tracked: Vec<String>,
    folder: SpecFolder,
    existing: Vec<ExistingSpec>,
    existing_ids: Vec<String>,
    /// Existing ids and every id they depend on: new ids come after these.
    taken: Vec<String>,
}

impl Basis {
    /// The basis of `ctx`'s repository now (no spec folder: no existing specs).
    pub(crate) fn load(ctx: &Ctx) -> anyhow::Result<Basis> {
        let target_tip = ctx.repo.branch_tip(&ctx.config.target).map_err(git_err)?;
        let base = match target_tip {
            Some(tip) => tip,
            None => ctx.repo.resolve(&ctx.config.base).map_err(git_err)?,
        };
        let mut tracked = ctx.repo.tracked_files(base).map_err(git_err)?;
        tracked.sort();
        let folder = if ctx.root().join(&ctx.config.spec_dir).exists() {
            crate::cli::commands::spec_folder(ctx)?
        } else {
            SpecFolder::default()
        };
        let existing: Vec<ExistingSpec> = folder
            .entries
            .iter()
            .map(|e| ExistingSpec {
                id: e.raw.id.clone(),
                title: e.raw.title.clone(),
                path: e.rel_path.clone(),
                files: e.raw.files.iter().map(|d| d.value.clone()).collect(),
                depends_on: e.raw.depends_on.iter().map(|d| d.value.clone()).collect(),
            })
            .collect();
        let existing_ids: Vec<String> = existing.iter().map(|e| e.id.clone()).collect();
        let mut taken = existing_ids.clone();
        taken.extend(existing.iter().flat_map(|e| e.depends_on.iter().cloned()));
        Ok(Basis {
            base,
            tracked,
            folder,
            existing,
            existing_ids,
            taken,
        })
    }
}

/// `--min-specs` must not exceed `--max-specs`.
pub(crate) fn check_limits(limits: SplitLimits) -> anyhow::Result<()> {
    if limits.min_specs > limits.max_specs {
        return Err(InputError::new(format!(
            "--min-specs {} is more than --max-specs {}",
            limits.min_specs, limits.max_specs
        ))
        .into());
    }
    Ok(())
}

impl Workspace {
    fn worktree(&self) -> &Path {
        self.worktree
            .as_ref()
            .map(ScratchWorktree::path)
            .expect("the worktree exists while the split runs")
    }

    fn scratch(&self) -> PathBuf {
        self.worktree().join(SCRATCH_DIR)
    }
}

/// The rounds of one split; the throwaway worktree is gone when it returns.
pub fn split_specs(
    ctx: &mut Ctx,
    req: &SplitRequest,
    quiet: bool,
    err: &mut dyn Write,
) -> anyhow::Result<SplitOutcome> {
    check_limits(req.limits)?;
    if let Some(mode) = req.isolation {
        ctx.config.isolation.mode = mode;
    }
    if let Some(preset) = &req.preset {
        crate::agents::preset(preset)?;
        ctx.config.agent.preset = Some(preset.clone());
        ctx.config.agent.command = None;
    }
    let isolation = crate::cli::run::isolation(&ctx.config.isolation, quiet)?;
    let rate_rules = ctx
        .config
        .agent
        .rate_limit
        .rules()
        .map_err(InputError::new)?;

    let basis = Basis::load(ctx)?;
    let state = crate::state::StateDir::new(ctx.repo.common_dir());
    let splits = state.path().join("splits");
    let id = crate::state::StateDir::new(&splits).new_run_id();
    let dir = splits.join(&id);
    let agent_dir = dir.join("agent");
    // The folder appears with its `coordinator` file already in it (made
    // beside it, then renamed), so `prune` never sees a running split's
    // folder without the file that says it runs.
    let staging = splits.join(format!(".{id}.new"));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("failed to create the split folder `{}`", staging.display()))?;
    write_coordinator(&staging)?;
    std::fs::rename(&staging, &dir).with_context(|| {
        format!(
            "failed to rename `{}` to `{}`",
            staging.display(),
            dir.display()
        )
    })?;
    std::fs::create_dir_all(agent_dir.join("tmp"))
        .with_context(|| format!("failed to create the split folder `{}`", dir.display()))?;
    let (command, agent_env) =
        crate::cli::run::agent_command(ctx, req.agent.as_deref(), &agent_dir)?;
    // Listening before the worktree exists: no signal can leave it behind.
    let mut signals = Interrupts::new()?;
    let worktree = ctx
        .repo
        .scratch_worktree(basis.base, &dir)
        .map_err(git_err)?;
    let mut ws = Workspace {
        judge: dir.join("judge"),
        session: uuid::Uuid::new_v4().to_string(),
        dir,
        agent_dir,
        worktree: Some(worktree),
        basis,
    };
    write_scratch(
        &ws.scratch(),
        &ScratchInputs {
            request: &req.request,
            tracked: &ws.basis.tracked,
            existing: &ws.basis.existing,
        },
    )?;
    if !quiet {
        writeln!(
            err,
            "split: the agent drafts in {} (at most {} round{})",
            ws.scratch().display(),
            req.rounds,
            if req.rounds == 1 { "" } else { "s" }
        )?;
    }
    let agent = AgentSetup {
        command,
        env: agent_env,
        isolation,
        rate_rules,
        preset: ctx.config.agent.preset.clone(),
    };
    let result = rounds(ctx, req, &mut ws, &agent, &mut signals, quiet, err);
    // The drafts outlive the throwaway worktree (or the folder they were
    // set aside in, when making a fresh one failed).
    let kept = ws.dir.join("drafts");
    let scratch = match &ws.worktree {
        Some(wt) => wt.path().join(SCRATCH_DIR),
        None => ws.dir.join(SCRATCH_HOLD),
    };
    let _ = copy_flat(&scratch, &kept);
    if let Some(wt) = ws.worktree.take() {
        wt.remove().map_err(git_err)?;
    }
    let mut outcome = result?;
    outcome.kept = kept;
    Ok(outcome)
}

/// The agent as every round runs it.
struct AgentSetup {
    command: String,
    env: Vec<(String, String)>,
    isolation: Option<crate::isolation::Active>,
    rate_rules: crate::agents::RateLimitRules,
    preset: Option<String>,
}

/// Why an agent's round did not produce drafts.
enum AgentFailure {
    Failed(String),
    Interrupted,
}

fn rounds(
    ctx: &Ctx,
    req: &SplitRequest,
    ws: &mut Workspace,
    agent: &AgentSetup,
    signals: &mut Interrupts,
    quiet: bool,
    err: &mut dyn Write,
) -> anyhow::Result<SplitOutcome> {
    let mut previous: Option<BTreeSet<String>> = None;
    let mut last: Option<(Vec<PlannedSpec>, Findings, CheckReport)> = None;
    let mut stopped = "rounds";
    let mut round = 0;
    while round < req.rounds {
        round += 1;
        if signals.arrived() {
            return Ok(failed_outcome(
                ws,
                round - 1,
                "interrupted",
                "interrupted".into(),
            ));
        }
        let before = worktree_snapshot(ws.worktree()).map_err(git_err)?;
        let (log, denied) = match run_round(ctx, req, ws, agent, signals, round)? {
            Ok(done) => done,
            Err(failure) => {
                let (result, failure) = match failure {
                    AgentFailure::Failed(why) => ("agent_failed", why),
                    AgentFailure::Interrupted => ("interrupted", "interrupted".to_string()),
                };
                return Ok(failed_outcome(ws, round, result, failure));
            }
        };
        let after = worktree_snapshot(ws.worktree()).map_err(git_err)?;
        let prefix = format!("{SCRATCH_DIR}/");
        let mut outside: Vec<String> = before
            .differences(&after)
            .into_iter()
            .filter(|p| !p.starts_with(&prefix) && p != SCRATCH_DIR)
            .collect();
        let wt = ws.worktree().to_path_buf();
        outside.extend(denied.into_iter().map(|p| {
            let shown = Path::new(&p)
                .strip_prefix(&wt)
                .map_or(p.clone(), |rel| rel.display().to_string());
            format!("{shown} (denied by isolation)")
        }));
        if !outside.is_empty() {
            restore_worktree(ws)?;
        }
        let Judged {
            specs,
            findings,
            report,
            ids,
        } = judge_round(
            ctx,
            &ws.basis,
            &ws.scratch(),
            &ws.judge,
            req.limits,
            &outside,
        )?;
        let text = diagnostics_text(round, &ids, &findings, &report);
        let path = ws.scratch().join(DIAGNOSTICS_FILE);
        std::fs::write(&path, &text)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        let _ = std::fs::write(ws.dir.join(format!("round-{round}.md")), &text);
        if !quiet {
            writeln!(
                err,
                "split: round {round}: {} draft{}, {} error{}, {} overlap{} (log: {})",
                specs.len(),
                if specs.len() == 1 { "" } else { "s" },
                findings.errors.len(),
                if findings.errors.len() == 1 { "" } else { "s" },
                findings.overlaps.len(),
                if findings.overlaps.len() == 1 {
                    ""
                } else {
                    "s"
                },
                log.display()
            )?;
        }
        let keys = findings.keys();
        let clean = findings.is_clean();
        let no_progress = previous
            .as_ref()
            .is_some_and(|prev| !prev.is_empty() && prev.is_subset(&keys));
        previous = Some(keys);
        last = Some((specs, findings, report));
        if clean {
            stopped = "valid";
            break;
        }
        if no_progress {
            stopped = "no_progress";
            break;
        }
    }
    let (specs, findings, report) = last.expect("at least one round ran");
    let exit = verdict(&findings);
    Ok(SplitOutcome {
        result: match exit {
            ExitCode::BadInput => "invalid",
            ExitCode::Overlaps => "overlaps",
            _ => "independent",
        },
        stopped,
        rounds: round,
        kept: ws.dir.clone(),
        specs,
        waves: findings.waves.clone(),
        errors: findings.errors,
        warnings: findings.warnings,
        overlaps: findings.overlaps,
        check: Some(report),
        failure: None,
        written: Vec::new(),
        exit,
    })
}

fn failed_outcome(
    ws: &Workspace,
    round: u32,
    result: &'static str,
    failure: String,
) -> SplitOutcome {
    SplitOutcome {
        result,
        stopped: "agent",
        rounds: round,
        kept: ws.dir.clone(),
        specs: Vec::new(),
        waves: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        overlaps: Vec::new(),
        check: None,
        failure: Some(failure),
        written: Vec::new(),
        exit: ExitCode::Failed,
    }
}

/// Runs the agent for one round (again after a rate limit, within
/// `agent.rate_limit.max_waits`). `Ok(Ok((log, denied writes)))` when it
/// exited 0.
fn run_round(
    ctx: &Ctx,
    req: &SplitRequest,
    ws: &Workspace,
    agent: &AgentSetup,
    signals: &mut Interrupts,
    round: u32,
) -> anyhow::Result<Result<(PathBuf, Vec<String>), AgentFailure>> {
    let scratch = ws.scratch();
    let prompt = ws.agent_dir.join(format!("prompt-{round}.md"));
    std::fs::write(
        &prompt,
        split_prompt(&scratch, ws.worktree(), round, req.limits),
    )
    .with_context(|| format!("failed to write `{}`", prompt.display()))?;
    let mut env: Vec<(String, String)> = vec![
        ("TREEFARM_MODE".into(), "split".into()),
        ("TREEFARM_SPLIT_DIR".into(), scratch.display().to_string()),
        ("TREEFARM_SPLIT_ROUND".into(), round.to_string()),
        ("TREEFARM_SPLIT_SESSION".into(), ws.session.clone()),
        (
            "TREEFARM_WORKTREE".into(),
            ws.worktree().display().to_string(),
        ),
        ("TREEFARM_BASE_COMMIT".into(), ws.basis.base.to_string()),
        ("TREEFARM_PROMPT_FILE".into(), prompt.display().to_string()),
        (
            "TREEFARM_USAGE_FILE".into(),
            ws.agent_dir.join("usage.json").display().to_string(),
        ),
        (
            "TMPDIR".into(),
            ws.agent_dir.join("tmp").display().to_string(),
        ),
    ];
    // The agent's git identity, as `run` gives it: a CLI that finds none
    // would write one into the shared git config.
    let (name, email) = crate::agents::agent_identity(
        ctx.config.agent.git_identity.as_deref(),
        ctx.repo.configured_identity(),
    );
    env.extend(crate::agents::identity_env(&name, &email));
    let sandbox = match agent.isolation {
        Some(active) => {
            let full: Vec<(String, String)> = std::env::vars()
                .chain(env.iter().cloned())
                .chain(agent.env.iter().cloned())
                .collect();
            Some(split_sandbox(ctx, ws, agent, active, &full)?)
        }
        None => None,
    };
    if sandbox.is_some() {
        env.push(("IS_SANDBOX".into(), "1".into()));
        env.push(("TREEFARM_ISOLATED".into(), "1".into()));
    }
    env.extend(agent.env.iter().cloned());
    let rate = &ctx.config.agent.rate_limit;
    let mut waits = 0;
    loop {
        let log = ws.agent_dir.join(format!("round-{round}.log"));
        let job = crate::runner::AgentJob {
            command: agent.command.clone(),
            cwd: ws.worktree().to_path_buf(),
            env: env.clone(),
            log_path: log.clone(),
            status_path: ws.agent_dir.join("status.json"),
            exit_path: ws.agent_dir.join("exit_code"),
            timeout: ctx.config.agent.timeout,
            idle_timeout: ctx.config.agent.idle_timeout,
            grace: ctx.config.agent.kill_grace,
            sandbox: sandbox.clone(),
        };
        let (end, interrupted) = signals.run_agent(job);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if interrupted {
            return Ok(Err(AgentFailure::Interrupted));
        }
        let denied = match &sandbox {
            Some(s) => crate::isolation::denials(&text, &s.policy)
                .iter()
                .map(|d| d.path().to_string())
                .collect(),
            None => Vec::new(),
        };
        if end.success() {
            return Ok(Ok((log, denied)));
        }
        let tail = crate::agents::log_tail(&text);
        let limited = crate::agents::classify_rate_limit(
            agent.preset.as_deref(),
            &agent.rate_rules,
            end.exit_code(),
            tail,
        );
        match limited {
            Some(limit) if waits < rate.max_waits => {
                waits += 1;
                let backoff = limit
                    .retry_after
                    .unwrap_or_else(|| Duration::from_secs(1 << waits.min(8)))
                    .min(rate.max_backoff);
                tracing::info!("split: agent rate-limited ({}); retrying in {backoff:?}", limit.evidence);
                std::thread::sleep(backoff);
            }
            Some(limit) => {
                return Ok(Err(AgentFailure::Failed(format!(
                    "the agent was rate-limited in round {round} ({}) and gave up after {waits} wait(s); log: {}",
                    limit.evidence,
                    log.display()
                ))))
            }
            None => {
                let last: Vec<&str> = tail.lines().rev().take(5).collect();
                let last: Vec<&str> = last.into_iter().rev().collect();
                return Ok(Err(AgentFailure::Failed(format!(
                    "the agent {end} in round {round}; log: {}{}{}",
                    log.display(),
                    if last.is_empty() { "" } else { "\n" },
                    last.join("\n")
                ))));
            }
        }
    }
}

/// The agent's confinement, as `run` builds an agent's: writable = the
/// scratch folder, its private folder and its CLI's state (created first,
/// when missing); credential stores unreadable but `isolation.allow_read`.
fn split_sandbox(
    ctx: &Ctx,
    ws: &Workspace,
    agent: &AgentSetup,
    active: crate::isolation::Active,
    env: &[(String, String)],
) -> anyhow::Result<crate::isolation::Sandbox> {
    let home = env
        .iter()
        .rev()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v))
        .filter(|h| h.is_absolute());
    let program = agent
        .preset
        .as_deref()
        .and_then(|name| crate::agents::preset(name).ok())
        .map(|p| p.program);
    let cli = crate::isolation::cli_of(program, &agent.command);
    if let Some(home) = &home {
        let state = crate::isolation::tool_state(cli, home, env);
        crate::isolation::prepare_tool_state(&state).with_context(|| {
            format!(
                "isolation: cannot create the state of `{}` that the agent must write",
                cli.unwrap_or("the agent")
            )
        })?;
    }
    let scratch = ws.scratch();
    Ok(crate::isolation::Sandbox {
        abi: active.abi,
        policy: crate::isolation::Policy::new(&crate::isolation::PolicyInputs {
            worktree: &scratch,
            instance_dir: &ws.agent_dir,
            home: home.as_deref(),
            repo_root: ctx.root(),
            allow_write: &ctx.config.isolation.allow_write,
            allow_read: &ctx.config.isolation.allow_read,
            cli,
            env,
            extra: Vec::new(),
            ports: None,
        }),
    })
}

/// Ctrl-C and SIGTERM, listened for from before the throwaway worktree is
/// made until it is gone: during the agent they stop it (gracefully, its
/// whole group); between rounds they end the split at the next look. Either
/// way the worktree is removed.
struct Interrupts {
    rt: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> anyhow::Result<Interrupts> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the agent's runtime")?;
        let (interrupt, terminate) = rt
            .block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                ))
            })
            .context("failed to listen for Ctrl-C and SIGTERM")?;
        Ok(Interrupts {
            rt,
            interrupt,
            terminate,
        })
    }

    /// True when Ctrl-C or SIGTERM arrived since the last look.
    fn arrived(&mut self) -> bool {
        let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
        self.rt.block_on(async {
            tokio::select! {
                biased;
                _ = interrupt.recv() => true,
                _ = terminate.recv() => true,
                () = std::future::ready(()) => false,
            }
        })
    }

    /// Runs one agent to its end with the runner's executor (own process
    /// group, timeouts, nothing left behind); true when a signal stopped it.
    fn run_agent(&mut self, job: crate::runner::AgentJob) -> (crate::runner::AgentEnd, bool) {
        let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
        self.rt.block_on(async move {
            let (events, _keep) = tokio::sync::mpsc::unbounded_channel();
            let (stop, stop_rx) = tokio::sync::watch::channel(crate::runner::Stop::Run);
            let agent = crate::runner::run_agent(job, events, stop_rx);
            tokio::pin!(agent);
            tokio::select! {
                end = &mut agent => (end, false),
                _ = interrupt.recv() => {
                    let _ = stop.send(crate::runner::Stop::Graceful);
                    (agent.await, true)
                }
                _ = terminate.recv() => {
                    let _ = stop.send(crate::runner::Stop::Graceful);
                    (agent.await, true)
                }
            }
        })
    }
}

/// A round that changed the worktree outside the scratch folder: the next
/// round starts from a fresh worktree at the base commit, at the same path
/// (the scratch folder moved over): the CLIs that key their conversations by
/// the folder they run in (Claude Code, Gemini CLI) continue them there.
fn restore_worktree(ws: &mut Workspace) -> anyhow::Result<()> {
    let hold = ws.dir.join(SCRATCH_HOLD);
    let _ = std::fs::remove_dir_all(&hold);
    std::fs::rename(ws.scratch(), &hold).with_context(|| {
        format!(
            "failed to set the scratch folder aside in `{}`",
            hold.display()
        )
    })?;
    let base = ws.basis.base;
    ws.worktree
        .as_mut()
        .expect("the worktree exists while the split runs")
        .renew(base)
        .map_err(git_err)?;
    std::fs::rename(&hold, ws.scratch()).with_context(|| {
        format!(
            "failed to move the scratch folder back from `{}`",
            hold.display()
        )
    })?;
    Ok(())
}

/// One round judged: the drafts as treefarm names them, the findings, the
/// `check` report they come from, and the ids given.
pub(crate) struct Judged {
    pub(crate) specs: Vec<PlannedSpec>,
    pub(crate) findings: Findings,
    pub(crate) report: CheckReport,
    pub(crate) ids: IdMap,
}

/// The exit code a round's findings mean: 2 an error, 3 overlaps that run in
/// sequence, 0 independent.
pub(crate) fn verdict(findings: &Findings) -> ExitCode {
    if !findings.errors.is_empty() {
        ExitCode::BadInput
    } else if !findings.overlaps.is_empty() {
        ExitCode::Overlaps
    } else {
        ExitCode::Success
    }
}

/// Reads the drafts in `scratch`, names them, and judges them against
/// `basis` with `check` (existing specs and rendered drafts together in the
/// folder `judge`, made anew) and the split's rules. `outside` is what the
/// agent changed beyond the scratch folder. The split's rounds and the MCP
/// tool `check_drafts` both judge here.
pub(crate) fn judge_round(
    ctx: &Ctx,
    basis: &Basis,
    scratch: &Path,
    judge: &Path,
    limits: SplitLimits,
    outside: &[String],
) -> anyhow::Result<Judged> {
    let mut load = ctx.config.spec.load_options();
    if !load.include.is_empty() {
        // Configured patterns replace the defaults: the rendered drafts'
        // names must still be read.
        load.include.push("SPEC-*.md".into());
    }
    let parse = ParseOptions {
        repo_root: Some(basis.folder.root.clone()).filter(|r| !r.as_os_str().is_empty()),
        rules: load.rules.clone(),
        default_id: None,
    };
    let drafts: Vec<Draft> = read_drafts(scratch, &parse)?;
    let new_ids = assign_ids(&basis.taken, drafts.len());
    let ids = IdMap {
        pairs: drafts
            .iter()
            .zip(&new_ids)
            .map(|(d, id)| (d.name.clone(), d.file.clone(), id.clone()))
            .collect(),
    };
    // The judge folder: the existing specs as they are, the drafts as
    // treefarm will write them (malformed ones as written).
    let _ = std::fs::remove_dir_all(judge);
    std::fs::create_dir_all(judge)
        .with_context(|| format!("failed to create `{}`", judge.display()))?;
    let mut shown: HashMap<String, (String, bool)> = HashMap::new();
    for entry in &basis.folder.entries {
        let name = entry.rel_path.rsplit('/').next().unwrap_or(&entry.rel_path);
        let from = ctx.root().join(&entry.rel_path);
        if copy_entry(&from, &judge.join(name)).is_ok() {
            shown.insert(name.to_string(), (entry.rel_path.clone(), false));
        }
    }
    let spec_dir = ctx
        .config
        .spec_dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let mut planned = Vec::new();
    for (draft, id) in drafts.iter().zip(&new_ids) {
        let file = spec_file_name(id, &draft.raw.title);
        let text = if draft.parsed_ok {
            render_spec(draft, id, &ids)
        } else {
            draft.text.clone()
        };
        let judged = if draft.parsed_ok {
            file.clone()
        } else {
            // Its file name must carry its id for the loader.
            format!("SPEC-{id}-draft.md")
        };
        std::fs::write(judge.join(&judged), &text)
            .with_context(|| format!("failed to write `{}`", judge.display()))?;
        shown.insert(judged, (draft.file.clone(), draft.parsed_ok));
        planned.push(PlannedSpec {
            id: id.clone(),
            draft: draft.file.clone(),
            file: format!("{spec_dir}/{file}"),
            title: draft.raw.title.clone(),
            files: declared_files(draft),
            creates: draft.creates.clone(),
            depends_on: rewritten_depends_on(draft, &ids),
            text,
        });
    }
    let folder = load_spec_folder(ctx.root(), judge, &load).map_err(InputError::from)?;
    let (specs, mut report) = evaluate(ctx, &folder, &CheckOptions::default())?;
    show_paths(&mut report, &shown, &judged_prefixes(ctx.root(), judge));
    let findings = judge_drafts(&SplitRound {
        drafts: &drafts,
        ids: &ids,
        report: &report,
        specs: &specs,
        tracked: &basis.tracked,
        existing_ids: &basis.existing_ids,
        limits,
        outside,
        instances: ctx.config.instances,
    });
    Ok(Judged {
        specs: planned,
        findings,
        report,
        ids,
    })
}

/// Drafts given inline (`(file name, text)`, the MCP tool `check_drafts`)
/// judged as one round of `treefarm split` judges its agent's drafts, in a
/// temporary scratch folder and judge folder removed on return: nothing is
/// written to the repository or its spec folder. Returns the round and the
/// `DIAGNOSTICS.md` text the split's agent would get.
pub(crate) fn judge_inline(
    ctx: &Ctx,
    drafts: &[(String, String)],
    limits: SplitLimits,
) -> anyhow::Result<(Judged, String)> {
    check_limits(limits)?;
    let basis = Basis::load(ctx)?;
    let tmp = tempfile::Builder::new()
        .prefix("treefarm-drafts-")
        .tempdir()
        .context("failed to create a temporary folder for the drafts")?;
    let scratch = tmp.path().join(SCRATCH_DIR);
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("failed to create `{}`", scratch.display()))?;
    let mut misnamed = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, text) in drafts {
        let problem = match draft_name_problem(name) {
            Some(why) => Some(why),
            None if !seen.insert(name.to_ascii_lowercase()) => Some("is given twice".to_string()),
            None => None,
        };
        match problem {
            Some(why) => misnamed.push(Diagnostic {
                level: crate::spec::Level::Error,
                file: Some(name.clone()),
                line: None,
                spec: None,
                spec_path: Some(name.clone()),
                message: format!("{name}: the draft {why}; it was not judged"),
                hint: Some(DRAFT_HINT.to_string()),
            }),
            None => {
                let path = scratch.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("failed to write `{}`", path.display()))?;
            }
        }
    }
    let mut judged = judge_round(
        ctx,
        &basis,
        &scratch,
        &tmp.path().join("judge"),
        limits,
        &[],
    )?;
    if !misnamed.is_empty() {
        // Invalid as a whole: no plan for part of it.
        judged.findings.waves.clear();
        judged.findings.errors.splice(0..0, misnamed);
    }
    let text = diagnostics_text(1, &judged.ids, &judged.findings, &judged.report);
    tmp.close()
        .context("failed to remove the temporary folder of the drafts")?;
    Ok((judged, text))
}

/// Why `name` cannot be a draft's file name in the scratch folder (the
/// split reads `SPEC-*.md` directly in it), if it cannot.
fn draft_name_problem(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if name.contains(['/', '\\']) || name.starts_with('.') {
        Some("name is not a plain file name".to_string())
    } else if !(lower.starts_with("spec-") && lower.ends_with(".md") && lower.len() > 8) {
        Some("name does not have the form `SPEC-<name>-<slug>.md`".to_string())
    } else {
        None
    }
}

/// Names judged files as the agent and the user know them: a draft by its
/// file in the scratch folder (a rendered draft's lines are not the draft's,
/// so they are dropped), an existing spec by its path.
fn show_paths(
    report: &mut CheckReport,
    shown: &HashMap<String, (String, bool)>,
    prefixes: &[String],
) {
    // Messages name files too (`<file>:<line>: dependency cycle: ...`).
    let alternatives: Vec<String> = prefixes.iter().map(|p| regex::escape(p)).collect();
    let pattern = format!(r"(?:{})/([^\s:`'/]+)(:\d+)?", alternatives.join("|"));
    let names = regex::Regex::new(&pattern).ok();
    let rewrite = |text: &str| -> String {
        let Some(re) = &names else {
            return text.to_string();
        };
        re.replace_all(text, |caps: &regex::Captures| match shown.get(&caps[1]) {
            Some((to, true)) => to.clone(),
            Some((to, false)) => format!("{to}{}", caps.get(2).map_or("", |m| m.as_str())),
            None => caps[0].to_string(),
        })
        .into_owned()
    };
    for d in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
        d.message = rewrite(&d.message);
        if let Some(h) = &d.hint {
            d.hint = Some(rewrite(h));
        }
    }
    let map = |p: &str| -> Option<(String, bool)> {
        let name = p.rsplit('/').next().unwrap_or(p);
        shown.get(name).cloned()
    };
    for d in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
        let mut rendered = false;
        for field in [&mut d.file, &mut d.spec_path] {
            if let Some((to, render)) = field.as_deref().and_then(map) {
                rendered = render;
                *field = Some(to);
            }
        }
        if rendered {
            d.line = None;
        }
    }
    for s in &mut report.specs {
        if let Some((to, _)) = map(&s.path) {
            s.path = to;
        }
    }
    for s in &mut report.invalid {
        if let Some((to, _)) = map(&s.path) {
            s.path = to;
        }
    }
}

/// How the loader may have written the judge folder in messages: relative
/// to the repository root (as given or canonical), or absolute.
fn judged_prefixes(root: &Path, judge: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let canon_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let canon_judge = judge.canonicalize().unwrap_or_else(|_| judge.to_path_buf());
    for (r, j) in [(root, judge), (canon_root.as_path(), canon_judge.as_path())] {
        if let Ok(rel) = j.strip_prefix(r) {
            out.push(rel.display().to_string());
        }
        out.push(j.display().to_string());
    }
    // Longest first, so an absolute path is not cut at its relative tail.
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.dedup();
    out
}

/// Copies a spec file, or a spec folder's Markdown files, following links.
fn copy_entry(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.path().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

/// Copies the files directly in `from` into `to` (created).
fn copy_flat(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Adds the specs to the spec folder; refuses (writing none) when a file is
/// there already.
fn write_specs(ctx: &Ctx, specs: &[PlannedSpec]) -> anyhow::Result<Vec<String>> {
    for s in specs {
        let path = ctx.root().join(&s.file);
        if path.symlink_metadata().is_ok() {
            return Err(InputError::new(format!(
                "`{}` already exists; the split's specs were not written",
                s.file
            ))
            .with_hint("move that file away, or run `treefarm split` again: ids are picked anew")
            .into());
        }
    }
    let dir = ctx.root().join(&ctx.config.spec_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create the spec folder `{}`", dir.display()))?;
    let mut written = Vec::new();
    for s in specs {
        let path = ctx.root().join(&s.file);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("failed to create `{}`", path.display()))?;
        file.write_all(s.text.as_bytes())
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        written.push(s.file.clone());
    }
    Ok(written)
}

/// The table, the plan and where the drafts are kept (stderr), or the JSON
/// (stdout).
fn report(
    outcome: &SplitOutcome,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    if json {
        return write_json(out, outcome);
    }
    if let Some(failure) = &outcome.failure {
        writeln!(err, "split: {failure}")?;
        writeln!(
            err,
            "split: drafts, logs and diagnostics kept in {}",
            outcome.kept.display()
        )?;
        return Ok(());
    }
    let color = crate::report::human::stderr_color();
    crate::report::check::write_diagnostics(&outcome.errors, &outcome.warnings, err, color)?;
    for o in &outcome.overlaps {
        writeln!(
            err,
            "overlap: {} and {} both declare {} ({})",
            o.a,
            o.b,
            o.paths.join(", "),
            o.reason
        )?;
    }
    let width = |f: fn(&PlannedSpec) -> usize| outcome.specs.iter().map(f).max().unwrap_or(0);
    let (wi, wf) = (width(|s| s.id.len()).max(2), width(|s| s.file.len()).max(4));
    writeln!(
        err,
        "{:<wi$}  {:<wf$}  {:>5}  {:<10}  TITLE",
        "ID", "FILE", "FILES", "DEPENDS ON"
    )?;
    for s in &outcome.specs {
        let deps = if s.depends_on.is_empty() {
            "-".to_string()
        } else {
            s.depends_on.join(",")
        };
        writeln!(
            err,
            "{:<wi$}  {:<wf$}  {:>5}  {:<10}  {}",
            s.id,
            s.file,
            s.files.len(),
            deps,
            s.title
        )?;
    }
    if !outcome.waves.is_empty() {
        let waves: Vec<String> = outcome
            .waves
            .iter()
            .enumerate()
            .map(|(i, w)| format!("wave {}: {}", i + 1, w.join(" ")))
            .collect();
        writeln!(err, "plan: {}", waves.join("; "))?;
    }
    let verdict = match outcome.exit {
        ExitCode::Success => format!("independent: {}", outcome.cost()),
        ExitCode::Overlaps => format!(
            "valid with overlaps that run in sequence: {}",
            outcome.cost()
        ),
        _ => "still invalid: nothing written".to_string(),
    };
    let why = match outcome.stopped {
        "no_progress" => ", stopped: a round fixed nothing",
        "rounds" if outcome.exit == ExitCode::BadInput => ", stopped: no rounds left",
        _ => "",
    };
    writeln!(
        err,
        "split: {verdict} after {} round{}{why}",
        outcome.rounds,
        if outcome.rounds == 1 { "" } else { "s" }
    )?;
    for w in &outcome.written {
        writeln!(err, "wrote {w}")?;
    }
    if outcome.written.is_empty() && outcome.exit != ExitCode::BadInput {
        let judged = outcome.kept.with_file_name("judge");
        writeln!(
            err,
            "split: nothing written; `--write` adds them (as rendered in {})",
            judged.display()
        )?;
    }
    writeln!(
        err,
        "split: drafts and diagnostics kept in {}",
        outcome.kept.display()
    )?;
    Ok(())
}
