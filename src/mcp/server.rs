//! The server: `tools/list` and `tools/call` over rmcp's stdio transport.
//!
//! Each tool calls the command the CLI runs (`check`, `plan`, `status`,
//! `prune` and `report` in-process with buffers as their output sinks;
//! `check_drafts` through the judging of `treefarm split`'s rounds;
//! `run`, `resume` and `merge` as a detached `treefarm` process, see
//! [`super::runs`]), so a tool and its command never disagree. Blocking work
//! (git, the journal) runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::cli::Ctx;
use crate::error::ExitCode;
use crate::state::StateDir;

use super::guard;
use super::runs;
use super::tools::{
    self, CancelResult, CheckArgs, CheckDraftsArgs, CommandResult, DraftFinding, DraftOverlap,
    DraftsResult, MergeArgs, PlanArgs, PruneArgs, ReportResult, ResumeArgs, RunCancelArgs,
    RunIdArgs, RunStartArgs, RunWaitArgs, SpecFigures, StartResult, WaitResult,
};

/// How long `run_cancel` waits for the coordinator to stop its agents and
/// end (it stops them gracefully: SIGTERM, then the kill grace).
const CANCEL_BOUND: Duration = Duration::from_secs(30);
/// How often `run_wait` looks at the journal.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// What every tool needs: where the repository is (`-C DIR`), the
/// `--config` file, and this binary, to start runs with.
#[derive(Debug, Clone)]
pub(crate) struct TreefarmServer {
    start: PathBuf,
    config: Option<PathBuf>,
    exe: PathBuf,
}

impl TreefarmServer {
    pub(crate) fn new(start: PathBuf, config: Option<PathBuf>, exe: PathBuf) -> Self {
        TreefarmServer { start, config, exe }
    }

    fn load(&self) -> anyhow::Result<Ctx> {
        Ctx::load(&self.start, self.config.as_deref())
    }

    /// The repository with its config, or with the defaults when the config
    /// is broken (reading a run's journal needs no valid config).
    fn load_lenient(&self) -> anyhow::Result<Ctx> {
        self.load().or_else(|_| Ctx::load_repo_only(&self.start))
    }
}

impl ServerHandler for TreefarmServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("treefarm", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "treefarm runs one coding agent per spec, each in its own git worktree, and \
                 merges their branches. Typical use: check, then run_start, then run_wait \
                 (with the returned cursor) until active is false, then report.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        tools::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let token = context
            .meta
            .get_progress_token()
            .or_else(|| request.meta.as_ref().and_then(|m| m.get_progress_token()));
        let name = request.name.as_ref();
        let result = match name {
            "check" => self.blocking(parse::<CheckArgs>(args)?, Self::check).await,
            "plan" => self.blocking(parse::<PlanArgs>(args)?, Self::plan).await,
            "check_drafts" => {
                self.blocking(parse::<CheckDraftsArgs>(args)?, Self::check_drafts)
                    .await
            }
            "run_start" => {
                self.blocking(parse::<RunStartArgs>(args)?, Self::run_start)
                    .await
            }
            "run_wait" => {
                let args = parse::<RunWaitArgs>(args)?;
                to_result(&self.run_wait(args, token, &context).await)
            }
            "status" => self.blocking(parse::<RunIdArgs>(args)?, Self::status).await,
            "run_cancel" => {
                self.blocking(parse::<RunCancelArgs>(args)?, Self::run_cancel)
                    .await
            }
            "resume" => {
                self.blocking(parse::<ResumeArgs>(args)?, Self::resume)
                    .await
            }
            "merge" => self.blocking(parse::<MergeArgs>(args)?, Self::merge).await,
            "report" => self.blocking(parse::<RunIdArgs>(args)?, Self::report).await,
            "prune" => self.blocking(parse::<PruneArgs>(args)?, Self::prune).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{other}`; tools/list names the tools"),
                    None,
                ))
            }
        };
        Ok(result?.into())
    }
}

/// The arguments of a call as `A`; arguments that do not fit the input
/// schema are the client's error (invalid params).
fn parse<A: DeserializeOwned>(args: Value) -> Result<A, ErrorData> {
    serde_json::from_value(args)
        .map_err(|e| ErrorData::invalid_params(format!("invalid arguments: {e}"), None))
}

/// A structured result with its text copy.
fn to_result<R: Serialize>(value: &R) -> Result<CallToolResult, ErrorData> {
    let value = serde_json::to_value(value)
        .map_err(|e| ErrorData::internal_error(format!("cannot serialise a result: {e}"), None))?;
    Ok(CallToolResult::structured(value))
}

/// The exit code of a failed command and its error as one message.
fn failure(err: &anyhow::Error) -> (u8, String) {
    (crate::exit_code_for(err).code(), format!("{err:#}"))
}

/// What the exit code of a failed command means.
fn failure_outcome(code: u8) -> &'static str {
    if code == ExitCode::BadInput.code() {
        "bad input"
    } else {
        "internal error"
    }
}

/// Text a command wrote for people, trimmed; `None` when empty.
fn text_of(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn command_result(
    outcome: anyhow::Result<ExitCode>,
    out: &[u8],
    err: &[u8],
    meaning: fn(ExitCode) -> &'static str,
) -> CommandResult {
    match outcome {
        Ok(code) => CommandResult {
            exit_code: code.code(),
            outcome: meaning(code).to_string(),
            message: text_of(err),
            json: serde_json::from_slice(out).ok(),
            refused: None,
        },
        Err(e) => {
            let (code, message) = failure(&e);
            CommandResult {
                exit_code: code,
                outcome: failure_outcome(code).into(),
                message: Some(message),
                json: None,
                refused: None,
            }
        }
    }
}

fn plain_meaning(code: ExitCode) -> &'static str {
    match code {
        ExitCode::Success => "ok",
        ExitCode::Failed => "some instance failed",
        ExitCode::BadInput => "bad input",
        ExitCode::Overlaps => "overlaps",
        ExitCode::Internal => "internal error",
    }
}

fn check_meaning(code: ExitCode) -> &'static str {
    match code {
        ExitCode::Success => "independent: no spec overlaps another",
        ExitCode::Overlaps => "overlaps: some specs may touch the same files (see json.overlaps)",
        ExitCode::BadInput => "invalid: a checked spec has an error (see json.errors)",
        other => plain_meaning(other),
    }
}

impl TreefarmServer {
    /// Runs `f` on the blocking pool and returns its structured result.
    async fn blocking<A, R>(
        &self,
        args: A,
        f: fn(&TreefarmServer, A) -> R,
    ) -> Result<CallToolResult, ErrorData>
    where
        A: Send + 'static,
        R: Serialize + Send + 'static,
    {
        let this = self.clone();
        let value = tokio::task::spawn_blocking(move || f(&this, args))
            .await
            .map_err(|e| ErrorData::internal_error(format!("a tool panicked: {e}"), None))?;
        to_result(&value)
    }

    fn check(&self, args: CheckArgs) -> CommandResult {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = crate::cli::check::CheckOptions {
            ids: args.ids,
            json: true,
            strict: args.strict,
            explain: args.explain,
        };
        let outcome = self
            .load()
            .and_then(|ctx| crate::cli::check::check(&ctx, &opts, &mut out, &mut err));
        command_result(outcome, &out, &err, check_meaning)
    }

    fn plan(&self, args: PlanArgs) -> CommandResult {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = self.load().and_then(|mut ctx| {
            if let Some(n) = args.instances {
                ctx.config.instances = n;
            }
            crate::cli::commands::plan(&ctx, &args.ids, true, &mut out, &mut err)
        });
        command_result(outcome, &out, &err, plain_meaning)
    }

    fn check_drafts(&self, args: CheckDraftsArgs) -> DraftsResult {
        let drafts: Vec<(String, String)> =
            args.drafts.into_iter().map(|d| (d.name, d.text)).collect();
        let judged = self.load().and_then(|ctx| {
            let limits = crate::split::SplitLimits {
                min_specs: args.min_specs.unwrap_or(ctx.config.split.min_specs),
                max_specs: args.max_specs.unwrap_or(ctx.config.split.max_specs),
            };
            crate::cli::split::judge_inline(&ctx, &drafts, limits)
        });
        let (judged, diagnostics) = match judged {
            Ok(done) => done,
            Err(e) => {
                let (code, message) = failure(&e);
                return DraftsResult {
                    exit_code: code,
                    outcome: failure_outcome(code).into(),
                    message: Some(message),
                    ..DraftsResult::default()
                };
            }
        };
        let f = &judged.findings;
        let code = crate::cli::split::verdict(f);
        let cost = crate::cli::split::cost(judged.specs.len(), f.waves.len());
        let given: Vec<&str> = drafts.iter().map(|(name, _)| name.as_str()).collect();
        let draft_of_id = |id: &str| {
            judged
                .specs
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.draft.clone())
        };
        let finding = |d: &crate::spec::Diagnostic| DraftFinding {
            draft: d
                .file
                .iter()
                .chain(&d.spec_path)
                .find(|p| given.contains(&p.as_str()))
                .cloned()
                .or_else(|| d.spec.as_deref().and_then(draft_of_id)),
            file: d.file.clone(),
            line: d.line,
            spec: d.spec.clone(),
            message: d.message.clone(),
            hint: d.hint.clone(),
        };
        DraftsResult {
            valid: code != ExitCode::BadInput,
            exit_code: code.code(),
            outcome: match code {
                ExitCode::Success => format!("independent: {cost}"),
                ExitCode::Overlaps => {
                    format!("valid with overlaps that run in sequence: {cost} (see overlaps)")
                }
                _ => "invalid: the split has errors (see errors)".to_string(),
            },
            cost: (code != ExitCode::BadInput).then_some(cost),
            specs: judged.specs.clone(),
            errors: f.errors.iter().map(finding).collect(),
            warnings: f.warnings.iter().map(finding).collect(),
            overlaps: f
                .overlaps
                .iter()
                .map(|o| DraftOverlap {
                    a_draft: draft_of_id(&o.a),
                    b_draft: draft_of_id(&o.b),
                    a: o.a.clone(),
                    b: o.b.clone(),
                    paths: o.paths.clone(),
                    reason: o.reason.clone(),
                })
                .collect(),
            waves: f.waves.clone(),
            diagnostics,
            message: None,
        }
    }

    fn status(&self, args: RunIdArgs) -> CommandResult {
        let mut out = Vec::new();
        let outcome = Ctx::load_repo_only(&self.start).and_then(|ctx| {
            crate::cli::commands::status(&ctx, args.run_id.as_deref(), true, false, &mut out)
        });
        command_result(outcome, &out, &[], plain_meaning)
    }

    fn prune(&self, args: PruneArgs) -> CommandResult {
        let ctx = match self.load() {
            Ok(ctx) => ctx,
            Err(e) => return command_result(Err(e), &[], &[], plain_meaning),
        };
        if let Some(refused) = guard::refusal_here("prune", ctx.config.mcp.allow_in_agent) {
            return CommandResult {
                exit_code: ExitCode::BadInput.code(),
                outcome: "refused".into(),
                message: Some(refused.reason.clone()),
                json: None,
                refused: Some(refused),
            };
        }
        let mut err = Vec::new();
        let outcome = crate::cli::prune::prune(&ctx, args.dry_run, args.all, args.force, &mut err);
        command_result(outcome, &[], &err, plain_meaning)
    }

    fn report(&self, args: RunIdArgs) -> ReportResult {
        let outcome = self.load_lenient().and_then(|ctx| {
            let (_, dir) = crate::cli::commands::open_run_or_latest(&ctx, args.run_id.as_deref())?;
            crate::cli::report::write_report_with(&dir, &ctx.config.overlap.ignore, None)
        });
        match outcome {
            Ok((path, report)) => {
                let wall = report.timeline.as_ref().map(|t| t.wall_ms());
                let agent = report.timeline.as_ref().map(|t| t.agent_ms());
                let speedup = match (wall, agent) {
                    (Some(w), Some(a)) if w > 0 => {
                        Some((a as f64 / w as f64 * 100.0).round() / 100.0)
                    }
                    _ => None,
                };
                ReportResult {
                    exit_code: 0,
                    message: None,
                    run_id: Some(report.run_id),
                    state: Some(report.state),
                    html: Some(path.display().to_string()),
                    target: Some(report.target),
                    target_commit: report.target_commit,
                    wall_ms: wall,
                    agent_ms: agent,
                    speedup,
                    specs: report
                        .specs
                        .into_iter()
                        .map(|s| SpecFigures {
                            id: s.id,
                            result: s.result,
                            attempts: s.attempts,
                            duration_ms: s.duration_ms,
                            commits: s.commits,
                            scope_creep: s.scope_creep,
                            conflict_paths: s.conflict_paths,
                            reason: s.reason,
                        })
                        .collect(),
                }
            }
            Err(e) => {
                let (code, message) = failure(&e);
                ReportResult {
                    exit_code: code,
                    message: Some(message),
                    ..ReportResult::default()
                }
            }
        }
    }

    /// Starts `treefarm <kind> <args>` detached after the recursion guard.
    fn start(&self, kind: &str, args: Vec<String>) -> StartResult {
        let ctx = match self.load() {
            Ok(ctx) => ctx,
            Err(e) => {
                let (code, message) = failure(&e);
                return StartResult {
                    exit_code: Some(code.into()),
                    message: Some(message),
                    ..StartResult::default()
                };
            }
        };
        let tool = match kind {
            "run" => "run_start",
            other => other,
        };
        if let Some(refused) = guard::refusal_here(tool, ctx.config.mcp.allow_in_agent) {
            return StartResult {
                message: Some(refused.reason.clone()),
                refused: Some(refused),
                ..StartResult::default()
            };
        }
        let state = StateDir::new(ctx.repo.common_dir());
        let config = self.config.as_deref().map(|c| absolute(&self.start, c));
        runs::start_detached(
            &self.exe,
            &state,
            config.as_deref(),
            ctx.root(),
            kind,
            &args,
        )
        .unwrap_or_else(|e| StartResult {
            exit_code: Some(ExitCode::Internal.code().into()),
            message: Some(format!("failed to start `treefarm {kind}`: {e}")),
            ..StartResult::default()
        })
    }

    fn run_start(&self, a: RunStartArgs) -> StartResult {
        let mut args = flags(vec![
            ("instances", a.instances.map(|v| v.to_string())),
            ("agent", a.agent),
            ("target", a.target),
            ("base", a.base),
            ("timeout", a.timeout),
            ("retries", a.retries.map(|v| v.to_string())),
            ("gate", a.gate),
            ("isolation", a.isolation),
            ("max-cost", a.max_cost.map(|v| v.to_string())),
            ("max-tokens", a.max_tokens.map(|v| v.to_string())),
        ]);
        if a.no_merge {
            args.push("--no-merge".into());
        }
        if a.keep {
            args.push("--keep".into());
        }
        self.start("run", with_positionals(args, a.ids))
    }

    fn resume(&self, a: ResumeArgs) -> StartResult {
        let args = flags(vec![
            ("isolation", a.isolation),
            ("max-cost", a.max_cost.map(|v| v.to_string())),
            ("max-tokens", a.max_tokens.map(|v| v.to_string())),
        ]);
        self.start("resume", with_positionals(args, a.run_id))
    }

    fn merge(&self, a: MergeArgs) -> StartResult {
        let args = flags(vec![("target", a.target), ("gate", a.gate)]);
        self.start("merge", with_positionals(args, a.run_id))
    }

    fn run_cancel(&self, a: RunCancelArgs) -> CancelResult {
        let state = match self.load_lenient() {
            Ok(ctx) => StateDir::new(ctx.repo.common_dir()),
            Err(e) => {
                return CancelResult {
                    run_id: a.run_id,
                    signalled: false,
                    pid: None,
                    stopped: false,
                    message: format!("{e:#}"),
                }
            }
        };
        match runs::interrupt(&state, &a.run_id, CANCEL_BOUND) {
            Some((pid, stopped)) => CancelResult {
                message: if stopped {
                    format!("run {} stopped (pid {pid}); resume continues it", a.run_id)
                } else {
                    format!(
                        "pid {pid} was sent SIGINT and is still stopping its agents; \
                         follow it with run_wait"
                    )
                },
                run_id: a.run_id,
                signalled: true,
                pid: Some(pid),
                stopped,
            },
            None => CancelResult {
                message: format!(
                    "no live coordinator works on run {}; nothing to stop",
                    a.run_id
                ),
                run_id: a.run_id,
                signalled: false,
                pid: None,
                stopped: false,
            },
        }
    }

    /// One look at the run: its state and instances, the events since
    /// `cursor`, whether a coordinator still works on it.
    fn look(&self, run_id: &str, cursor: u64) -> WaitResult {
        let mut result = WaitResult {
            run_id: run_id.to_string(),
            active: false,
            state: "starting".into(),
            instances: Vec::new(),
            events: Vec::new(),
            cursor,
            more_events: false,
            timed_out: false,
            message: None,
        };
        let ctx = match Ctx::load_repo_only(&self.start) {
            Ok(ctx) => ctx,
            Err(e) => {
                result.message = Some(format!("{e:#}"));
                return result;
            }
        };
        let state = StateDir::new(ctx.repo.common_dir());
        let dir = match state.open_run(run_id) {
            Ok(dir) => dir,
            // Locked but not journalled yet: the run is starting.
            Err(_) if runs::is_active(&state, run_id) => {
                result.active = true;
                return result;
            }
            Err(e) => {
                result.state = "unknown".into();
                result.message = Some(e.to_string());
                return result;
            }
        };
        result.active = runs::is_active(&state, run_id);
        if let Ok(record) = dir.read_state() {
            let mut record = record;
            crate::report::status::apply_live_status(&mut record, &dir);
            let status = crate::report::status::status_json(&record, crate::state::now_ms());
            if let Some(s) = status.get("state").and_then(Value::as_str) {
                result.state = s.to_string();
            }
            result.instances = runs::briefs(&status);
        }
        match runs::events_since(&dir.events_path(), cursor, runs::MAX_EVENTS) {
            Ok((events, next, more)) => {
                result.events = events;
                result.cursor = next;
                result.more_events = more;
            }
            Err(e) => result.message = Some(format!("failed to read the events: {e}")),
        }
        result
    }

    async fn run_wait(
        &self,
        args: RunWaitArgs,
        token: Option<ProgressToken>,
        context: &RequestContext<RoleServer>,
    ) -> WaitResult {
        let bound = Duration::from_secs(
            args.timeout_seconds
                .unwrap_or(tools::DEFAULT_WAIT_SECS)
                .min(tools::MAX_WAIT_SECS),
        );
        let deadline = Instant::now() + bound;
        let mut seen = args.cursor;
        let mut progress = 0u64;
        loop {
            let this = self.clone();
            let run_id = args.run_id.clone();
            let cursor = args.cursor;
            let look = tokio::task::spawn_blocking(move || this.look(&run_id, cursor)).await;
            let mut look = match look {
                Ok(look) => look,
                Err(e) => {
                    let mut r = self.look(&args.run_id, args.cursor);
                    r.message = Some(format!("a look at the run failed: {e}"));
                    return r;
                }
            };
            if look.cursor > seen {
                seen = look.cursor;
                progress += 1;
                if let Some(token) = &token {
                    notify(&context.peer, token, progress, &look).await;
                }
            }
            // run_start answers once the process holds the lock, so a run
            // nobody works on is over (or was never started).
            let done = !look.active;
            let unknown = look.message.is_some() && look.instances.is_empty();
            if done || unknown || look.more_events || context.ct.is_cancelled() {
                return look;
            }
            if Instant::now() >= deadline {
                look.timed_out = true;
                return look;
            }
            tokio::select! {
                _ = tokio::time::sleep(WAIT_POLL) => {}
                _ = context.ct.cancelled() => {}
            }
        }
    }
}

/// A progress notification: how many specs are done, and the newest state.
async fn notify(peer: &Peer<RoleServer>, token: &ProgressToken, progress: u64, look: &WaitResult) {
    let done = look
        .instances
        .iter()
        .filter(|i| {
            matches!(
                i.state.as_str(),
                "merged"
                    | "pruned"
                    | "failed"
                    | "timed_out"
                    | "unchanged"
                    | "conflicted"
                    | "refused"
                    | "skipped"
            )
        })
        .count();
    let latest = look
        .events
        .last()
        .and_then(|e| {
            let event = e.get("event")?.as_str()?;
            Some(match e.get("id").and_then(Value::as_str) {
                Some(id) => format!("{event} {id}"),
                None => event.to_string(),
            })
        })
        .unwrap_or_default();
    let message = format!(
        "{done}/{} specs done; {}{}",
        look.instances.len(),
        look.state,
        if latest.is_empty() {
            String::new()
        } else {
            format!("; last event: {latest}")
        }
    );
    let param =
        ProgressNotificationParam::new(token.clone(), progress as f64).with_message(message);
    if let Err(e) = peer.notify_progress(param).await {
        tracing::debug!("progress notification not sent: {e}");
    }
}

/// `--name value` for every flag that has a value.
fn flags(pairs: Vec<(&str, Option<String>)>) -> Vec<String> {
    pairs
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| [format!("--{name}"), v]))
        .flatten()
        .collect()
}

/// `args`, then the positional arguments after `--`, so that an id never
/// reads as a flag.
fn with_positionals(
    mut args: Vec<String>,
    positionals: impl IntoIterator<Item = String>,
) -> Vec<String> {
    args.push("--".into());
    args.extend(positionals);
    args
}

/// `path` made absolute against `base` (the child runs with `-C root`).
fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
