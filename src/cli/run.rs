//! `run`, `merge` and `resume`: build or reload a run's options, take the
//! lock, and hand the run to the dispatcher.

use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::args::RunArgs;
use crate::cli::commands::select;
use crate::cli::context::{git_err, Ctx};
use crate::error::{ExitCode, InputError};
use crate::report::{HumanReporter, JsonLinesReporter, Reporter, Reporters};
use crate::runner::messages::Mode;
use crate::spec::branch_for;
use crate::state::now_ms;
use crate::state::RunOptions;
use crate::state::{InstanceRecord, InstanceState, Lock, LockError, RunRecord, RunState, StateDir};

fn reporters(json: bool, quiet: bool) -> Reporters {
    let mut list: Vec<Box<dyn Reporter>> = Vec::new();
    if json {
        list.push(Box::new(JsonLinesReporter::new(
            Box::new(std::io::stdout()),
        )));
    }
    if !quiet {
        list.push(Box::new(HumanReporter::new(
            Box::new(std::io::stderr()),
            crate::report::human::stderr_color(),
            crate::report::human::stderr_live(),
        )));
    }
    Reporters(list)
}

fn lock(state: &StateDir, run_id: &str) -> anyhow::Result<Lock> {
    match Lock::acquire(state, run_id) {
        Ok((lock, stale)) => {
            if let Some(stale) = stale {
                eprintln!(
                    "treefarm: took over a stale lock from dead pid {} (run {})",
                    stale.pid, stale.run_id
                );
            }
            Ok(lock)
        }
        Err(err @ LockError::Held { .. }) => Err(InputError::new(err.to_string()).into()),
        Err(err) => Err(err.into()),
    }
}

/// Resolves the agent command from flags, env and config; a preset's wrapper
/// is written into `wrapper_dir`. Checks that the program exists.
pub(crate) fn agent_command(
    ctx: &Ctx,
    flag: Option<&str>,
    wrapper_dir: &std::path::Path,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let agent = &ctx.config.agent;
    let path = std::env::var_os("PATH");
    let mut env: Vec<(String, String)> = agent
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(cmd) = flag
        .or(agent.command.as_deref())
        .filter(|c| !c.trim().is_empty())
    {
        crate::agents::check_program(cmd, path.as_deref(), ctx.root())?;
        return Ok((cmd.to_string(), env));
    }
    if let Some(name) = &agent.preset {
        let preset = crate::agents::preset(name)?;
        let bin = std::env::var_os(preset.bin_env);
        crate::agents::check_preset_program(preset, bin.as_deref(), path.as_deref(), ctx.root())?;
        std::fs::create_dir_all(wrapper_dir)?;
        let wrapper =
            crate::agents::materialize_wrapper(preset, wrapper_dir).with_context(|| {
                format!(
                    "failed to write the `{name}` wrapper into `{}`",
                    wrapper_dir.display()
                )
            })?;
        env.extend(crate::agents::preset_env(
            agent.model.as_deref(),
            &agent.extra_args,
        ));
        env.extend(crate::agents::allowed_commands_env(&agent.allowed_commands));
        if let Some(note) = crate::agents::preset_note(preset, crate::procfs::running_as_root()) {
            eprintln!("treefarm: note: {note}");
        }
        return Ok((crate::agents::preset_command(&wrapper), env));
    }
    Err(InputError::new("no agent configured")
        .with_hint("set `agent.command` (or `agent.preset`) in treefarm.yaml, or pass --agent CMD")
        .into())
}

pub fn run(mut ctx: Ctx, args: &RunArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    // Flags override env and file.
    let cfg = &mut ctx.config;
    if let Some(n) = args.instances {
        cfg.instances = n;
    }
    if let Some(t) = &args.target {
        cfg.target = t.clone();
    }
    if let Some(b) = &args.base {
        cfg.base = b.clone();
    }
    if let Some(t) = args.timeout {
        cfg.agent.timeout = Some(t);
    }
    if let Some(r) = args.retries {
        cfg.agent.retries = r;
    }
    if let Some(g) = &args.gate {
        cfg.merge.gate = g.clone();
    }
    if let Some(mode) = args.isolation {
        cfg.isolation.mode = mode;
    }
    if let Some(kind) = args.executor {
        cfg.executor = kind;
    }
    let isolation_active = isolation(&cfg.isolation, quiet || args.json)?;
    if cfg.instances == 0 {
        return Err(InputError::new("--instances must be at least 1").into());
    }
    let no_merge = args.no_merge || !cfg.merge.auto;
    let max_port = u32::from(cfg.port_base)
        + (cfg.instances as u32).saturating_sub(1) * u32::from(cfg.port_stride);
    if max_port > u32::from(u16::MAX) {
        return Err(InputError::new(format!(
            "port_base {} + {} instances x port_stride {} exceeds 65535",
            cfg.port_base, cfg.instances, cfg.port_stride
        ))
        .into());
    }
    if !crate::git::layout::is_valid_branch_name(&cfg.target) {
        return Err(InputError::new(format!(
            "`{}` is not a valid branch name for --target",
            cfg.target
        ))
        .into());
    }

    check_target_namespace(&cfg.target)?;

    // Everything that can be wrong is checked before anything is created.
    let sel = select(&ctx, &args.ids)?;
    if !quiet && !args.json {
        crate::report::check::write_diagnostics(
            &[],
            &sel.warnings,
            &mut std::io::stderr(),
            crate::report::human::stderr_color(),
        )?;
    }
    if let Some(spec) = sel.specs.iter().find(|s| s.branch() == ctx.config.target) {
        return Err(InputError::new(format!(
            "--target `{}` is the branch treefarm creates for spec `{}`",
            ctx.config.target, spec.id
        ))
        .with_hint("merge into an integration branch such as `roadmap`")
        .into());
    }
    if sel.specs.is_empty() {
        return Err(InputError::new(format!(
            "no specs found in `{}`",
            ctx.root().join(&ctx.config.spec_dir).display()
        ))
        .with_hint("add SPEC-<id>-<slug>.md files, or run `treefarm init`")
        .into());
    }
    // A live coordinator's instances would look like leftovers below (with a
    // hint to prune them): name the holder first. Reading creates nothing;
    // the lock itself is taken later, before anything is created.
    let state = StateDir::new(ctx.repo.common_dir());
    if let Some(holder) = Lock::holder_of(&state) {
        let held = LockError::Held {
            pid: holder.pid,
            run_id: holder.run_id,
            path: state.lock_path(),
            since_ms: holder.since_ms,
        };
        return Err(held
            .input_error()
            .expect("a held lock is an input error")
            .into());
    }
    let worktree_dir = ctx.worktree_dir()?;
    let mut leftovers = Vec::new();
    for spec in &sel.specs {
        let path = worktree_dir.join(&spec.id);
        let branch = branch_for(&spec.id);
        if path.exists() {
            leftovers.push(format!("worktree path `{}`", path.display()));
        }
        if ctx.repo.branch_tip(&branch).map_err(git_err)?.is_some() {
            leftovers.push(format!("branch `{branch}`"));
        }
    }
    if !leftovers.is_empty() {
        return Err(InputError::new(format!(
            "left over from an earlier run: {}",
            leftovers.join(", ")
        ))
        .with_hint("`treefarm resume` continues an interrupted run; `treefarm prune` removes merged leftovers (`--force` archives and removes unmerged ones; `--all --force` also those of an unfinished run)")
        .into());
    }
    check_disk_budget(&ctx, &sel.specs, &worktree_dir, no_merge || args.keep)?;
    let worktree_include = ctx.repo.worktree_include().map_err(git_err)?;
    let run_id = state.new_run_id();
    let staging = std::env::temp_dir().join(format!("treefarm-agent-{run_id}"));
    let (agent_command, agent_env) = agent_command(&ctx, args.agent.as_deref(), &staging)?;
    check_env_size(&agent_command, &agent_env)?;
    let slurm = if ctx.config.executor == crate::config::ExecutorKind::Slurm {
        let calls = crate::cli::slurm::check(&ctx.config, &sel.specs, &worktree_dir, &run_id)?;
        Some(crate::slurm::SlurmRun {
            config: ctx.config.slurm.clone(),
            calls,
            polls: 0,
        })
    } else {
        None
    };
    let _lock = lock(&state, &run_id)?;

    // From here on, things are created.
    let base_commit = match ctx
        .repo
        .ensure_branch(&ctx.config.target, sel.base)
        .map_err(git_err)?
    {
        Some(existing) => existing,
        None => sel.base,
    };
    let dir = state.create_run(&run_id)?;
    let (agent_command, _) = relocate_wrapper(&agent_command, &staging, dir.path())?;
    let cfg = &ctx.config;
    let opts = RunOptions {
        repo_root: ctx.root().to_path_buf(),
        target: cfg.target.clone(),
        base_commit: base_commit.to_string(),
        worktree_dir,
        instances: cfg.instances,
        agent_command,
        agent_env,
        prompt_template: cfg.agent.prompt_template.clone(),
        timeout_ms: cfg.agent.timeout.map(|d| d.as_millis() as u64),
        idle_timeout_ms: cfg.agent.idle_timeout.map(|d| d.as_millis() as u64),
        grace_ms: cfg.agent.kill_grace.as_millis() as u64,
        retries: cfg.agent.retries,
        commit: cfg.agent.commit,
        scope: cfg.scope,
        setup: cfg.setup.clone(),
        port_base: cfg.port_base,
        port_stride: cfg.port_stride,
        strategy: cfg.merge.strategy,
        gate: Some(cfg.merge.gate.clone()).filter(|g| !g.trim().is_empty()),
        no_merge,
        keep: args.keep,
        specs: sel.specs.clone(),
        conflicts: sel.conflicts(),
        sparse: cfg.worktree.sparse.clone(),
        sparse_include: cfg.worktree.sparse_include.clone(),
        slot_env: cfg.slot_env.clone(),
        cache_dir: Some(crate::runner::slot::caches::cache_dir(ctx.root(), |k| {
            std::env::var(k).ok()
        })),
        worktree_include,
        isolation: cfg.isolation.clone(),
        isolation_active,
        git_identity: Some(crate::agents::agent_identity(
            cfg.agent.git_identity.as_deref(),
            ctx.repo.configured_identity(),
        )),
        allow_unchanged: cfg.agent.allow_unchanged,
        agent_preset: cfg
            .agent
            .preset
            .clone()
            .filter(|_| args.agent.is_none() && cfg.agent.command.is_none()),
        rate_limit: cfg.agent.rate_limit.clone(),
        start_interval_ms: u64::try_from(cfg.agent.start_interval.as_millis()).unwrap_or(u64::MAX),
        budget: budget_from(cfg.run.budget(), args.max_cost, args.max_tokens),
        queue: crate::state::QueueOptions::from_config(cfg),
    };
    let record = RunRecord {
        run_id: run_id.clone(),
        state: RunState::Running,
        coordinator_pid: std::process::id(),
        coordinator_start: crate::procfs::start_time(std::process::id()),
        started_at_ms: now_ms(),
        finished_at_ms: None,
        options: opts.clone().into(),
        instances: opts
            .specs
            .iter()
            .map(|s| InstanceRecord {
                id: s.id.clone(),
                title: s.title.clone(),
                spec_path: s.rel_path.clone(),
                branch: s.branch(),
                worktree: opts.worktree_for(&s.id).display().to_string(),
                state: InstanceState::Pending,
                attempt: 0,
                log_path: dir.log_path(&s.id).display().to_string(),
                ..InstanceRecord::default()
            })
            .collect(),
        slurm,
        ..RunRecord::default()
    };
    dir.write_state(&record)?;
    let mut reporter = reporters(args.json, quiet);
    let start_event = crate::report::Event::RunStarted {
        run_id: run_id.clone(),
        target: opts.target.clone(),
        base: opts.base_commit.clone(),
        instances: opts.instances,
        specs: opts.specs.iter().map(|s| s.id.clone()).collect(),
    };
    let at_ms = now_ms();
    dir.append_event(&crate::report::stamped(&start_event, at_ms)?)?;
    reporter.event_at(&start_event, at_ms);
    drive(opts, dir, record, &mut reporter, Mode::Run, &ctx, quiet)
}

/// Refuses a run whose worktrees would not fit in the free space of
/// `worktree_dir`'s file system minus `worktree.reserve` (nothing created).
fn check_disk_budget(
    ctx: &Ctx,
    specs: &[crate::spec::Spec],
    worktree_dir: &std::path::Path,
    all_kept: bool,
) -> anyhow::Result<()> {
    use crate::policy::reserve;
    let cfg = &ctx.config;
    let reserve_bytes = reserve::Reserve::parse(&cfg.worktree.reserve).map_err(InputError::new)?;
    let start = match ctx.repo.branch_tip(&cfg.target).map_err(git_err)? {
        Some(tip) => tip,
        None => ctx.repo.resolve(&cfg.base).map_err(git_err)?,
    };
    let requests: Vec<_> = specs
        .iter()
        .map(|s| {
            crate::state::sparse_request(&cfg.worktree.sparse, &cfg.worktree.sparse_include, s)
        })
        .collect();
    let sizes = ctx.repo.checkout_sizes(start, &requests).map_err(git_err)?;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let needed = reserve::needed(sizes, cfg.instances, all_kept);
    let free = crate::disk::free_space(worktree_dir).with_context(|| {
        format!(
            "failed to read the free space of `{}`",
            worktree_dir.display()
        )
    })?;
    if let Err(over) = reserve::check(needed, free, reserve_bytes) {
        let hb = reserve::human_bytes;
        return Err(InputError::new(format!(
            "not enough disk space for the worktrees in `{}`: needed {}, available {} ({} free minus worktree.reserve {})",
            worktree_dir.display(),
            hb(over.needed),
            hb(over.available),
            hb(free),
            hb(over.reserve),
        ))
        .with_hint(format!(
            "run fewer at once (--instances; the largest worktree takes {}), set `worktree.sparse: auto` to plant only what each spec needs, or point `worktree_dir` at a file system with more room",
            hb(largest)
        ))
        .into());
    }
    Ok(())
}

fn drive(
    opts: RunOptions,
    dir: crate::state::RunDir,
    record: RunRecord,
    reporter: &mut Reporters,
    mode: Mode,
    ctx: &Ctx,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let no_merge = opts.no_merge && mode == Mode::Run;
    let dir = Arc::new(dir);
    let (record, _summary) =
        crate::runner::run::imp::execute(opts, Arc::clone(&dir), record, reporter, mode)?;
    // Every run ends with the path of its report, so a user always has it.
    let mut err: Box<dyn std::io::Write> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    crate::cli::report::report_after_run(&dir, &ctx.config.overlap.ignore, &mut err);
    let all_done = record.state == RunState::Finished
        && record.instances.iter().all(|i| match i.state {
            InstanceState::Merged | InstanceState::Pruned => true,
            InstanceState::Succeeded => no_merge,
            _ => false,
        });
    Ok(if all_done {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}

/// A preset wrapper is first written to a staging folder (so the program check
/// happens before anything is created), then moved into the run directory.
fn relocate_wrapper(
    command: &str,
    staging: &std::path::Path,
    run_dir: &std::path::Path,
) -> anyhow::Result<(String, bool)> {
    if !staging.exists() {
        return Ok((command.to_string(), false));
    }
    let mut command = command.to_string();
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        let to = run_dir.join(entry.file_name());
        std::fs::copy(entry.path(), &to)?;
        let from = entry.path().display().to_string();
        command = command.replace(&from, &to.display().to_string());
    }
    let _ = std::fs::remove_dir_all(staging);
    Ok((command, true))
}

/// The target must lie outside treefarm's own branch namespace: a spec's
/// branch (`treefarm/<id>`) is deleted after its merge, and a branch named
/// `treefarm` would keep every `treefarm/<id>` from being created.
fn check_target_namespace(target: &str) -> anyhow::Result<()> {
    let prefix = branch_for("");
    if target == prefix.trim_end_matches('/') || target.starts_with(&prefix) {
        return Err(InputError::new(format!(
            "--target `{target}` lies in treefarm's branch namespace `{prefix}…`"
        ))
        .with_hint("treefarm creates and deletes `treefarm/<id>` branches itself; merge into an integration branch such as `roadmap`")
        .into());
    }
    Ok(())
}

/// The agent's environment and command line must leave the kernel's limit
/// (E2BIG) far behind before anything is created: treefarm's own
/// environment, `agent.env`, the command, and room for the `TREEFARM_*`
/// variables (paths; the declared files go in `TREEFARM_FILES_FILE` and only
/// in `TREEFARM_FILES` while they fit).
fn check_env_size(command: &str, env: &[(String, String)]) -> anyhow::Result<()> {
    use crate::runner::agent::job::{env_size, inherited_env_size, ENV_BUDGET};
    const TREEFARM_VARS: usize = 16 * 4096;
    let size = inherited_env_size()
        + env_size(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        + command.len()
        + TREEFARM_VARS;
    if size > ENV_BUDGET {
        return Err(InputError::new(format!(
            "the agent's environment and command would take {size} bytes, more than the {ENV_BUDGET} an agent may be given"
        ))
        .with_hint("shorten `agent.env` or the agent command, or unset large variables in treefarm's environment")
        .into());
    }
    Ok(())
}

fn load_run(
    ctx: &Ctx,
    run_id: Option<&str>,
    unfinished: bool,
) -> anyhow::Result<Option<(crate::state::RunDir, RunRecord, RunOptions)>> {
    let state = StateDir::new(ctx.repo.common_dir());
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => {
            let found = if unfinished {
                state.latest_unfinished()?
            } else {
                state.latest_run()?
            };
            match found {
                Some(id) => id,
                None => return Ok(None),
            }
        }
    };
    let dir = state
        .open_run(&run_id)
        .map_err(|e| anyhow::Error::new(InputError::new(e.to_string())))?;
    let record = dir.read_state()?;
    let Some(opts) = record.opts().cloned() else {
        anyhow::bail!(
            "the journal of run {run_id} has no options this treefarm can read (`{}`)\n\
             hint: it was written by another treefarm version; resume it with that version",
            dir.path().join("state.json").display()
        );
    };
    Ok(Some((dir, record, opts)))
}

/// Decides the run's isolation before anything is created: `landlock`
/// without kernel support is an input error; `auto` without it says so.
pub(crate) fn isolation(
    config: &crate::config::IsolationConfig,
    quiet: bool,
) -> anyhow::Result<Option<crate::isolation::Active>> {
    // A test hook, like TREEFARM_CRASH_AT: behave as on a kernel without
    // Landlock.
    let kernel = match std::env::var_os("TREEFARM_TEST_NO_LANDLOCK") {
        Some(_) => Err("the kernel has no Landlock (TREEFARM_TEST_NO_LANDLOCK)".to_string()),
        None => crate::isolation::kernel_abi(),
    };
    let (active, line) = crate::isolation::resolve(config, kernel)
        .map_err(|e| InputError::new(e.to_string()).with_hint(e.hint()))?;
    if let Some(line) = line {
        tracing::info!("{line}");
        if !quiet {
            eprintln!("treefarm: {line}");
        }
    }
    Ok(active)
}

/// The budget a coordinator enforces: `--max-cost` / `--max-tokens` over
/// the config's `run.max_cost` / `run.max_tokens`.
fn budget_from(
    config: crate::policy::Budget,
    max_cost: Option<f64>,
    max_tokens: Option<u64>,
) -> crate::policy::Budget {
    crate::policy::Budget {
        max_cost: max_cost.or(config.max_cost),
        max_tokens: max_tokens.or(config.max_tokens),
    }
}

/// `--max-cost` and `--max-tokens` of `run` and `resume`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BudgetFlags {
    pub max_cost: Option<f64>,
    pub max_tokens: Option<u64>,
}

pub fn resume(
    ctx: Ctx,
    run_id: Option<&str>,
    json: bool,
    quiet: bool,
    isolation_flag: Option<crate::config::IsolationMode>,
    budget: BudgetFlags,
) -> anyhow::Result<ExitCode> {
    let Some((dir, record, mut opts)) = load_run(&ctx, run_id, true)? else {
        // A coordinator killed before its first journal write started
        // nothing, but left its lock: take it over (or be refused by a live
        // coordinator) so the repository is left clean.
        drop(lock(&StateDir::new(ctx.repo.common_dir()), "resume")?);
        eprintln!("treefarm: no unfinished run to resume");
        return Ok(ExitCode::Success);
    };
    if record.state == RunState::Finished
        && record
            .instances
            .iter()
            .all(|i| i.state.is_terminal() || i.state == InstanceState::Succeeded)
    {
        eprintln!(
            "treefarm: run {} is already finished; nothing to resume",
            record.run_id
        );
        return Ok(ExitCode::Success);
    }
    // Flag, then TREEFARM_ISOLATION, then what the run was started with.
    if let Some(mode) = isolation_flag {
        opts.isolation.mode = mode;
    } else if let Ok(v) = std::env::var("TREEFARM_ISOLATION") {
        opts.isolation.mode = crate::config::IsolationMode::parse(&v)
            .map_err(|e| InputError::new(format!("TREEFARM_ISOLATION: {e}")))?;
    }
    opts.isolation_active = isolation(&opts.isolation, quiet || json)?;
    // The budget is not frozen with the run: the flags, else the current
    // config (`run.max_cost`, `run.max_tokens`, TREEFARM_RUN_MAX_*), decide
    // it, so a run its budget stopped goes on with a larger one. What was
    // spent is in the journal and counts.
    opts.budget = budget_from(ctx.config.run.budget(), budget.max_cost, budget.max_tokens);
    let state = StateDir::new(ctx.repo.common_dir());
    let _lock = lock(&state, &record.run_id)?;
    eprintln!("treefarm: resuming run {}", record.run_id);
    let mut reporter = reporters(json, quiet);
    drive(opts, dir, record, &mut reporter, Mode::Run, &ctx, quiet)
}

pub fn merge(
    ctx: Ctx,
    run_id: Option<&str>,
    target: Option<String>,
    gate: Option<String>,
    json: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(t) = &target {
        check_target_namespace(t)?;
    }
    let Some((dir, record, mut opts)) = load_run(&ctx, run_id, false)? else {
        return Err(InputError::new("no treefarm run in this repository yet")
            .with_hint("start one with `treefarm run --no-merge`")
            .into());
    };
    if let Some(t) = target {
        if ctx.repo.branch_tip(&t).map_err(git_err)?.is_none() {
            let base = ctx.repo.resolve(&opts.base_commit).map_err(git_err)?;
            ctx.repo.ensure_branch(&t, base).map_err(git_err)?;
        }
        opts.target = t;
    }
    if let Some(g) = gate {
        opts.gate = Some(g).filter(|g| !g.trim().is_empty());
    }
    opts.no_merge = false;
    let state = StateDir::new(ctx.repo.common_dir());
    let _lock = lock(&state, &record.run_id)?;
    let mut record = record;
    record.options = opts.clone().into();
    let mut reporter = reporters(json, quiet);
    drive(
        opts,
        dir,
        record,
        &mut reporter,
        Mode::MergeOnly,
        &ctx,
        quiet,
    )
}
