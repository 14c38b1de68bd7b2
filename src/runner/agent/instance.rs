//! One instance's life between planting and its verdict: setup, the agent
//! (with retries, or re-attached after a coordinator crash), then committing
//! leftovers and auditing the changed files. Talks to the dispatcher only
//! through messages.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::config::{CommitMode, ScopeMode};
use crate::git::{Repo, WorktreeStamp};
use crate::runner::agent::audit::{collect_work_since, private_git_dir};
use crate::runner::agent::executor::{AgentJob, Executor};
use crate::runner::agent::job::agent_job;
use crate::runner::agent::local::Local;
use crate::runner::agent::setup::{setup, SetupFailure};
use crate::runner::agent::slurm::{JobHandle, SlurmRunner};
use crate::runner::messages::{
    AgentEnd, AgentHandle, InstanceMsg, Launch, Start, Stop, Verdict, Work,
};
use crate::runner::slot::shared_git;
use crate::spec::Spec;
use crate::state::RunOptions;
use crate::state::{InstanceState, RunDir};

/// One instance task: `Task::prepare` the worktree and the agent's job,
/// run `Task::attempts` (re-attached, judged or fresh, with retries),
/// then `Task::verdict`. It talks to the dispatcher only through `tx`.
pub async fn run_instance(
    opts: Arc<RunOptions>,
    dir: Arc<RunDir>,
    run_id: String,
    launch: Launch,
    tx: mpsc::UnboundedSender<(String, InstanceMsg)>,
    stop: watch::Receiver<Stop>,
    slurm: Option<Arc<SlurmRunner>>,
) {
    let id = launch.id.clone();
    let Some(spec) = opts.spec(&id).cloned() else {
        let _ = tx.send((
            id.clone(),
            InstanceMsg::Done(Verdict::failed_early(format!(
                "spec `{id}` is not part of this run"
            ))),
        ));
        return;
    };
    let task = Task {
        worktree: opts.worktree_for(&id),
        common_dir: Repo::discover(&opts.repo_root)
            .map(|r| r.common_dir().to_path_buf())
            .unwrap_or_else(|_| opts.repo_root.join(".git")),
        git_dir: private_git_dir(&dir, &id),
        opts,
        dir,
        id,
        spec,
        launch,
        tx,
        stop,
        slurm,
        stamp: std::sync::Mutex::new(None),
    };
    // Held until the instance ends, so no other instance gets the same block.
    let (_ports, port, moved) = probe_ports(&task.opts, &task.launch);
    let verdict = match task.prepare(&run_id, port, moved).await {
        Ok(job) => {
            let outcome = task.attempts(&job).await;
            task.verdict(&job, outcome).await
        }
        Err(verdict) => verdict,
    };
    task.send(InstanceMsg::Done(verdict));
}

/// What one instance task works with.
struct Task {
    opts: Arc<RunOptions>,
    dir: Arc<RunDir>,
    id: String,
    spec: Spec,
    launch: Launch,
    worktree: std::path::PathBuf,
    /// The repository's common git dir (its shared config is watched).
    common_dir: std::path::PathBuf,
    /// The agent's private git directory under isolation.
    git_dir: std::path::PathBuf,
    tx: mpsc::UnboundedSender<(String, InstanceMsg)>,
    stop: watch::Receiver<Stop>,
    /// `executor: slurm`: the run's Slurm side; none: the local executor.
    slurm: Option<Arc<SlurmRunner>>,
    /// The clean worktree as the first attempt found it (see
    /// [`stamp_eligible`]): after the agent exits, nothing to list when
    /// nothing moved. Cleared before any later attempt.
    stamp: std::sync::Mutex<Option<WorktreeStamp>>,
}

/// A live agent to re-attach to: its handle, the termination an earlier
/// coordinator began (reason, SIGKILL due), what is left of its timeout.
type Resumed = (
    AgentHandle,
    Option<(AgentEnd, u64)>,
    Option<std::time::Duration>,
);

/// How the attempts ended, for the verdict.
struct Outcome {
    /// The last attempt's end; `None` when none ran and none was found.
    last: Option<AgentEnd>,
    /// An exit 0 that left no commit and no change, not allowed.
    unchanged: bool,
    /// The attempt that was rate-limited, and why: the machine decides.
    rate_limited: Option<(u32, crate::agents::RateLimited)>,
    /// The last attempt this launch may run.
    max_attempt: u32,
}

impl Task {
    fn send(&self, msg: InstanceMsg) {
        let _ = self.tx.send((self.id.clone(), msg));
    }

    /// Runs `f` on a blocking thread with clones of the options, the spec,
    /// the worktree and the start commit.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RunOptions, &RunDir, &Spec, &Path, &str) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let (opts, dir, spec) = (self.opts.clone(), self.dir.clone(), self.spec.clone());
        let (wt, start) = (self.worktree.clone(), self.launch.start_commit.clone());
        tokio::task::spawn_blocking(move || f(&opts, &dir, &spec, &wt, &start)).await
    }

    /// The agent's job, then what must be in place before a fresh attempt:
    /// a resolve attempt's merge state, the private git directory, `setup`.
    /// `Err` is the verdict when the instance ends before any attempt.
    async fn prepare(
        &self,
        run_id: &str,
        port: u32,
        moved: Option<String>,
    ) -> Result<AgentJob, Verdict> {
        let (opts, launch) = (&self.opts, &self.launch);
        let job = agent_job(
            opts,
            &self.dir,
            run_id,
            &self.spec,
            &self.worktree,
            launch,
            port,
        );
        if let (Ok(job), Some(message)) = (&job, moved) {
            note(job, &message);
        }
        let mut job = job.map_err(Verdict::failed_early)?;
        // A resolve attempt's merge state is handed to the worktree unless
        // its agent is still out there or left an exit code (a termination
        // found ended is prepared again, as it always was).
        let handed_back = matches!(
            launch.start,
            Start::Reattach { .. } | Start::Ended(AgentEnd::Exited(_))
        );
        if launch.resolve && !handed_back {
            let prepared = self
                .blocking(|opts, dir, spec, wt, _| {
                    crate::runner::agent::handback::prepare(opts, dir, spec, wt)
                })
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")));
            match prepared {
                Ok(crate::runner::agent::handback::Prepared::Agent(env)) => job.env.extend(env),
                Ok(crate::runner::agent::handback::Prepared::Clean) => {
                    return Err(self
                        .blocking(|opts, _, spec, wt, start| {
                            crate::runner::agent::handback::concluded(opts, spec, wt, start)
                        })
                        .await
                        .unwrap_or(Verdict::Stopped));
                }
                Err(reason) => return Err(Verdict::failed_early(reason)),
            }
        }
        if launch.is_fresh() && !launch.resolve {
            private_git(opts, &self.worktree, &self.spec.branch(), &self.git_dir)
                .map_err(Verdict::failed_early)?;
        }
        if launch.start == (Start::Fresh { setup: true }) {
            match setup(opts, &self.worktree, &job, self.stop.clone()).await {
                Ok(()) => {}
                Err(SetupFailure::Stopped) => return Err(Verdict::Stopped),
                Err(SetupFailure::Failed(reason)) => return Err(Verdict::failed_early(reason)),
            }
        }
        Ok(job)
    }

    /// The agent, re-attached or fresh, then retries, until an attempt
    /// succeeds, is rate-limited (the machine decides the backoff), is
    /// stopped, or the attempts are used up.
    async fn attempts(&self, job: &AgentJob) -> Outcome {
        let (opts, launch) = (&self.opts, &self.launch);
        let mut last = match &launch.start {
            Start::Ended(end) => Some(end.clone()),
            _ => None,
        };
        // An exit recorded while no coordinator watched is the result of
        // attempt `launch.attempt`: the next one, if any, is a retry like
        // any other.
        let mut attempt = if last.is_some() {
            launch.attempt.max(1) + 1
        } else {
            launch.attempt
        };
        // The live agent a previous coordinator left, followed by the first
        // turn of the loop only.
        let mut reattach = match &launch.start {
            Start::Reattach {
                handle,
                terminating,
                timeout_left,
            } => Some((handle.clone(), terminating.clone(), *timeout_left)),
            _ => None,
        };
        let max_attempt = max_attempt(opts, launch);
        // An exit 0 that left no commit and no change (`unchanged`) counts as
        // a failed attempt unless `agent.allow_unchanged`.
        let mut unchanged = false;
        // Where the attempt's own lines start in the (appended) log.
        let mut log_from = 0;
        let rules = opts.rate_limit.rules().unwrap_or_default();
        let mut rate_limited = None;
        // The last attempt's classification, when made as it exited.
        let mut limited: Option<crate::agents::RateLimited> = None;
        let mut attempts_run = 0;
        loop {
            if matches!(last, Some(AgentEnd::Exited(0))) {
                unchanged = !opts.allow_unchanged
                    && !launch.resolve
                    && self
                        .blocking({
                            let (stamp, git_dir) = (self.stamp(), self.git_dir.clone());
                            move |opts, _, spec, wt, start| {
                                left_nothing(opts, spec, wt, start, &git_dir, stamp.as_ref())
                            }
                        })
                        .await
                        .unwrap_or(false);
                if !unchanged {
                    break;
                }
            }
            // A rate-limited attempt goes back to the machine, which decides
            // the backoff and the pace; it uses no retry.
            if let Some(AgentEnd::Exited(code)) = last {
                if *self.stop.borrow() == Stop::Run {
                    let cause = match limited.take() {
                        Some(cause) => Some(cause),
                        None => classify_attempt(opts, &rules, job, code, log_from),
                    };
                    if let Some(cause) = cause {
                        rate_limited = Some((attempt - 1, cause));
                        break;
                    }
                }
            }
            if last.is_some() {
                // A previous attempt failed.
                // A job that can never start would wait again: no retry.
                let final_end = is_stop(&last) || matches!(last, Some(AgentEnd::NeverStarts(_)));
                if *self.stop.borrow() != Stop::Run || attempt > max_attempt || final_end {
                    break;
                }
            }
            let resumed = reattach.take();
            if resumed.is_none() {
                log_from = std::fs::metadata(&job.log_path).map_or(0, |m| m.len());
            }
            let stamp = if resumed.is_none() && attempts_run == 0 && stamp_eligible(opts, launch) {
                self.blocking(|_, _, _, wt, _| {
                    let _span = tracing::debug_span!("stamp_worktree").entered();
                    WorktreeStamp::take(wt)
                })
                .await
                .ok()
                .flatten()
            } else {
                None
            };
            self.set_stamp(stamp);
            let (end, elapsed_ms) = self.attempt(job, attempt, resumed).await;
            // Classified now for the `exited` event; an exit 0 only once it
            // is known to have left nothing (above).
            limited = match end {
                AgentEnd::Exited(code) if code != 0 && *self.stop.borrow() == Stop::Run => {
                    classify_attempt(opts, &rules, job, code, log_from)
                }
                _ => None,
            };
            self.ended(attempt, &end, elapsed_ms, limited.is_some());
            attempts_run += 1;
            last = Some(end);
            attempt += 1;
        }
        if attempts_run == 0 {
            // Judged on an exit found by `resume`: what it spent still counts.
            if let Some(usage) = crate::agents::read_usage(&self.dir.instance_dir(&self.id)) {
                self.send(InstanceMsg::Usage(usage));
            }
        }
        Outcome {
            last,
            unchanged,
            rate_limited,
            max_attempt,
        }
    }

    /// One attempt through the executor: finishing a termination an earlier
    /// coordinator began, re-attached to a live agent, or spawned fresh. Its
    /// events are forwarded to the dispatcher as they come.
    async fn attempt(
        &self,
        job: &AgentJob,
        attempt: u32,
        resumed: Option<Resumed>,
    ) -> (AgentEnd, u64) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let forward_tx = self.tx.clone();
        let forward_id = self.id.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                let _ = forward_tx.send((forward_id.clone(), InstanceMsg::Agent(ev)));
            }
        });
        let begun = Instant::now();
        shared_git::agent_starting(&self.common_dir, &self.id);
        let stop = self.stop.clone();
        let end = match &self.slurm {
            Some(slurm) => {
                let exec = slurm.attempt(&self.spec, attempt, self.launch.resolve);
                let handle = |h: AgentHandle| JobHandle {
                    name: exec.name().clone(),
                    id: match h {
                        AgentHandle::Job { id, .. } => id.map(crate::slurm::JobId),
                        AgentHandle::Process(..) => None,
                    },
                };
                self.run_attempt(&exec, job, attempt, resumed, handle, ev_tx, stop)
                    .await
            }
            None => {
                let handle = |h: AgentHandle| match h {
                    AgentHandle::Process(pid, start) => (pid, start),
                    AgentHandle::Job { .. } => (0, 0),
                };
                self.run_attempt(&Local, job, attempt, resumed, handle, ev_tx, stop)
                    .await
            }
        };
        if let Some(warning) = shared_git::agent_ended(&self.common_dir, &self.id) {
            self.send(InstanceMsg::Warning(warning));
        }
        let _ = forward.await;
        (end, begun.elapsed().as_millis() as u64)
    }

    /// One attempt on executor `exec`: finishing a termination, re-attached
    /// (`handle` turns the launch's handle into the executor's) or fresh.
    #[allow(clippy::too_many_arguments)]
    async fn run_attempt<E: Executor>(
        &self,
        exec: &E,
        job: &AgentJob,
        attempt: u32,
        resumed: Option<Resumed>,
        handle: impl Fn(AgentHandle) -> E::Handle,
        ev_tx: mpsc::UnboundedSender<crate::runner::messages::AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> AgentEnd {
        match resumed {
            Some((h, Some((why, kill_at_ms)), _)) => {
                exec.finish_termination(handle(h), kill_at_ms, why, stop)
                    .await
            }
            Some((h, None, timeout_left)) => {
                let mut job = job.clone();
                if let Some(left) = timeout_left {
                    job.timeout = Some(left);
                }
                exec.reattach(handle(h), &job, ev_tx, stop).await
            }
            None => {
                self.send(InstanceMsg::AttemptStarting { attempt });
                // The wrapper records it beside the exit code, so a resume
                // knows which attempt a recorded exit belongs to.
                let mut job = job.clone();
                job.env
                    .push(("TREEFARM_ATTEMPT".into(), attempt.to_string()));
                exec.spawn(job, ev_tx, stop).await
            }
        }
    }

    /// Reports an attempt's end: the `exited` message, then what the agent
    /// has spent so far.
    fn ended(&self, attempt: u32, end: &AgentEnd, elapsed_ms: u64, rate_limited: bool) {
        self.send(InstanceMsg::Exited {
            attempt,
            end: end.clone(),
            elapsed_ms,
            rate_limited,
        });
        crate::state::crash_point("after-exit");
        if let Some(usage) = crate::agents::read_usage(&self.dir.instance_dir(&self.id)) {
            self.send(InstanceMsg::Usage(usage));
        }
    }

    /// The verdict on the attempts: a resolve attempt is judged on the
    /// merge; a rate-limited one goes back to the machine; otherwise the
    /// branch is committed and audited (a failure's partial work kept).
    async fn verdict(&self, job: &AgentJob, outcome: Outcome) -> Verdict {
        let opts = &self.opts;
        let Outcome {
            last,
            unchanged,
            rate_limited,
            max_attempt,
        } = outcome;
        if self.launch.resolve {
            // Judged on the merge, never committed for: markers stay as left.
            return match last {
                Some(AgentEnd::Stopped) | None => Verdict::Stopped,
                Some(end) => {
                    let code = match end {
                        AgentEnd::Exited(code) => Some(code),
                        _ => None,
                    };
                    self.blocking(move |opts, dir, spec, wt, _| {
                        crate::runner::agent::handback::judge(opts, dir, spec, wt, code)
                    })
                    .await
                    .unwrap_or(Verdict::Stopped)
                }
            };
        }
        if let Some((attempt_no, cause)) = rate_limited {
            let retries_left = max_attempt.saturating_sub(attempt_no);
            return Verdict::RateLimited {
                attempt: attempt_no,
                cause,
                retries_left,
            };
        }
        let verdict = match last {
            Some(AgentEnd::Exited(0)) if unchanged => Verdict::Failed {
                state: InstanceState::Unchanged,
                reason: "the agent exited 0 but left no commit and no change \
                         (agent.allow_unchanged: true accepts that)"
                    .to_string(),
                exit_code: Some(0),
                work: None,
            },
            Some(AgentEnd::Exited(0)) => match self.collect().await {
                Ok(Ok(work)) => judge(opts, work),
                Ok(Err(reason)) => Verdict::Failed {
                    state: InstanceState::Failed,
                    reason,
                    exit_code: Some(0),
                    work: None,
                },
                Err(join) => Verdict::Failed {
                    state: InstanceState::Failed,
                    reason: format!("internal error while committing: {join}"),
                    exit_code: Some(0),
                    work: None,
                },
            },
            Some(AgentEnd::Stopped) => Verdict::Stopped,
            Some(end) => {
                let (state, mut reason, code) = describe_failure(&end, opts);
                if let Some(denied) = denials(job) {
                    reason = format!("{reason}; {denied}");
                }
                // Keep what the agent did: commit leftovers on its branch so
                // a failed instance's partial work is never lost to a later
                // prune.
                let work = if opts.commit == CommitMode::Auto {
                    self.collect().await.ok().and_then(Result::ok)
                } else {
                    None
                };
                Verdict::Failed {
                    state,
                    reason,
                    exit_code: code,
                    work,
                }
            }
            None => Verdict::Stopped,
        };
        if matches!(verdict, Verdict::Succeeded(_)) {
            // It got by without it, but the user should learn what to allow.
            if let Some(denied) = denials(job) {
                note(job, &denied);
                self.send(InstanceMsg::Denied(denied));
            }
        }
        verdict
    }

    /// Commits leftovers and audits the branch, on a blocking thread.
    async fn collect(&self) -> Result<Result<Work, String>, tokio::task::JoinError> {
        let (stamp, git_dir) = (self.stamp(), self.git_dir.clone());
        self.blocking(move |opts, _, spec, wt, start| {
            collect(opts, spec, wt, start, &git_dir, stamp.as_ref())
        })
        .await
    }

    /// A copy of the stamp of the clean worktree, if one was taken.
    fn stamp(&self) -> Option<WorktreeStamp> {
        self.stamp.lock().ok().and_then(|s| s.clone())
    }

    fn set_stamp(&self, stamp: Option<WorktreeStamp>) {
        if let Ok(mut s) = self.stamp.lock() {
            *s = stamp;
        }
    }
}

/// The last attempt a launch may run: `1 + retries` in all. An attempt that
/// was re-attached or whose result was found on resume is one of them (a
/// resume grants no extra retries); an interrupted attempt run again from
/// scratch does not use up a retry. After a rate-limited attempt, the
/// machine says what is left.
fn max_attempt(opts: &RunOptions, launch: &Launch) -> u32 {
    match launch.retries_left {
        // One attempt at resolving a conflict.
        _ if launch.resolve => launch.attempt.max(1),
        Some(left) => launch.attempt.max(1) + left,
        None if !launch.is_fresh() => (1 + opts.retries).max(launch.attempt),
        None => launch.attempt.max(1) + opts.retries,
    }
}

/// How much of the log's end is read to classify an attempt.
const TAIL_BYTES: u64 = 256 * 1024;

/// Whether the attempt that exited with `code` was rate-limited: its log
/// from `from` (where the attempt's lines start) or, for an attempt found
/// ended by `resume`, the log's end, against the preset's signals and
/// `agent.rate_limit`.
fn classify_attempt(
    opts: &RunOptions,
    rules: &crate::agents::RateLimitRules,
    job: &AgentJob,
    code: i32,
    from: u64,
) -> Option<crate::agents::RateLimited> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(&job.log_path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = from.max(len.saturating_sub(TAIL_BYTES)).min(len);
    file.seek(std::io::SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    crate::agents::classify_rate_limit(
        opts.agent_preset.as_deref(),
        rules,
        Some(code),
        crate::agents::log_tail(&text),
    )
}

/// Before a fresh agent start: under isolation, the private git directory
/// the agent's git works in (publishing what an earlier attempt left there);
/// without, only that publishing, so nothing committed under isolation is
/// lost when a run is resumed with `--isolation off`.
fn private_git(
    opts: &RunOptions,
    worktree: &Path,
    branch: &str,
    git_dir: &Path,
) -> Result<(), String> {
    // The agent's git must find the index in line with its branch.
    crate::git::settle_index(worktree).map_err(|e| crate::error::chain(&e))?;
    let result = if opts.isolation_active.is_some() {
        crate::git::prepare_private_git(worktree, branch, git_dir)
    } else {
        crate::git::import_private_git(worktree, branch, git_dir).map(|_| ())
    };
    result.map_err(|e| format!("isolation: {}", crate::error::chain(&e)))
}

/// Publishes the private git directory's branch, then [`collect_work_since`].
fn collect(
    opts: &RunOptions,
    spec: &Spec,
    worktree: &Path,
    start: &str,
    git_dir: &Path,
    stamp: Option<&WorktreeStamp>,
) -> Result<Work, String> {
    import(spec, worktree, git_dir)?;
    collect_work_since(opts, spec, worktree, start, stamp)
}

/// Publishes the private git directory's branch (a second call is a no-op).
fn import(spec: &Spec, worktree: &Path, git_dir: &Path) -> Result<(), String> {
    let _span = tracing::debug_span!("import_private_git", spec = %spec.id).entered();
    crate::git::import_private_git(worktree, &spec.branch(), git_dir)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "failed to import the commits of the isolated agent: {}",
                crate::error::chain(&e)
            )
        })
}

/// Whether the worktree is known clean when the first attempt starts, so
/// that a [`WorktreeStamp`] of it stands for "nothing to commit": a fresh
/// plant (first attempt, not resumed, not a resolve attempt) in which setup
/// put nothing — no copied or linked file, no command, no submodules, any of
/// which could change tracked files — and a sparse worktree, where the
/// stamp's walk of the materialised files is much cheaper than reading an
/// index of every tracked file (in a full checkout the two cost the same).
fn stamp_eligible(opts: &RunOptions, launch: &Launch) -> bool {
    launch.start == (Start::Fresh { setup: true })
        && launch.attempt == 1
        && !launch.resolve
        && launch.retries_left.is_none()
        && opts.setup_placed().is_empty()
        && opts.setup.command.trim().is_empty()
        && !opts.setup.submodules
        && opts.sparse_for(&launch.id).is_some()
}

/// What isolation denied the agent, read from its log (sandboxed jobs only).
fn denials(job: &AgentJob) -> Option<String> {
    let sandbox = job.sandbox.as_ref()?;
    let log = std::fs::read(&job.log_path).ok()?;
    // The tail is where an agent that gave up says why.
    let tail = &log[log.len().saturating_sub(1 << 20)..];
    let found = crate::isolation::denials(&String::from_utf8_lossy(tail), &sandbox.policy);
    crate::isolation::denial_summary(&found)
}

/// The instance's port block: its slot's own when free, else a spare one
/// (and what to say about the move). A re-attached agent already listens on
/// its block: no probe.
fn probe_ports(
    opts: &RunOptions,
    launch: &Launch,
) -> (
    Option<crate::runner::slot::ports::PortBlock>,
    u32,
    Option<String>,
) {
    let own = opts.port(launch.slot);
    if matches!(launch.start, Start::Reattach { .. }) {
        return (None, own, None);
    }
    let slot = launch.slot;
    match crate::runner::slot::ports::claim(own, u32::from(opts.port_stride), opts.spare_ports_from()) {
        None => (
            None,
            own,
            Some(format!(
                "slot {slot}'s port block at {own} is in use and no spare block is free; TREEFARM_PORT={own} anyway"
            )),
        ),
        Some(block) => {
            let (start, end) = (block.start, block.start + block.size - 1);
            let message = block.moved_from.map(|(own, taken)| {
                format!(
                    "port {taken} of slot {slot}'s block {own}-{} is in use; TREEFARM_PORT={start} (block {start}-{end})",
                    own + block.size - 1
                )
            });
            (Some(block), start, message)
        }
    }
}

/// Says something about the instance in its log (and the diagnostics).
fn note(job: &AgentJob, message: &str) {
    use std::io::Write as _;
    tracing::warn!("{message}");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&job.log_path)
        .and_then(|mut f| writeln!(f, "treefarm: {message}"));
}

fn is_stop(end: &Option<AgentEnd>) -> bool {
    matches!(end, Some(AgentEnd::Stopped))
}

fn describe_failure(end: &AgentEnd, opts: &RunOptions) -> (InstanceState, String, Option<i32>) {
    let fmt = |ms: Option<u64>| {
        ms.map(|m| humantime::format_duration(std::time::Duration::from_millis(m)).to_string())
            .unwrap_or_default()
    };
    match end {
        AgentEnd::Exited(code) => (
            InstanceState::Failed,
            format!("agent exited with code {code}"),
            Some(*code),
        ),
        AgentEnd::Signaled(sig) => (
            InstanceState::Failed,
            format!("agent was killed by signal {sig}"),
            None,
        ),
        AgentEnd::TimedOut => (
            InstanceState::TimedOut,
            format!("agent timed out after {}", fmt(opts.timeout_ms)),
            None,
        ),
        AgentEnd::IdleTimedOut => (
            InstanceState::TimedOut,
            format!(
                "agent was idle (no output, no status update) for {}",
                fmt(opts.idle_timeout_ms)
            ),
            None,
        ),
        AgentEnd::Stopped => (InstanceState::Failed, "agent was stopped".into(), None),
        AgentEnd::Unknown => (
            InstanceState::Failed,
            "agent ended while treefarm was not running and left no exit code".into(),
            None,
        ),
        AgentEnd::SpawnFailed(e) | AgentEnd::NeverStarts(e) => (
            InstanceState::Failed,
            format!("agent could not be started: {e}"),
            None,
        ),
        AgentEnd::JobLost(what) => (
            InstanceState::Failed,
            format!("agent's Slurm job {what}"),
            None,
        ),
    }
}

fn judge(opts: &RunOptions, work: Work) -> Verdict {
    if opts.scope == ScopeMode::Fail && !work.scope_creep.is_empty() {
        return Verdict::Failed {
            state: InstanceState::Failed,
            reason: format!(
                "scope creep (scope: fail): changed undeclared files {}",
                work.scope_creep.join(", ")
            ),
            exit_code: Some(0),
            work: Some(work),
        };
    }
    Verdict::Succeeded(work)
}

/// True when the branch still points at `start` and the worktree holds no
/// change (besides what setup placed): the agent did nothing. False when
/// that cannot be read (committing and auditing will then say why). What
/// the isolated agent committed in its private directory is published
/// first, so its commits count; with a stamp of the clean worktree that
/// nothing moved since, no index is read.
fn left_nothing(
    opts: &RunOptions,
    spec: &Spec,
    worktree: &Path,
    start: &str,
    git_dir: &Path,
    stamp: Option<&WorktreeStamp>,
) -> bool {
    let _span = tracing::debug_span!("left_nothing", spec = %spec.id).entered();
    if import(spec, worktree, git_dir).is_err() {
        return false;
    }
    let unchanged = || -> Result<bool, crate::git::GitError> {
        let repo = Repo::discover(&opts.repo_root)?;
        let tip = repo.branch_tip(&spec.branch())?;
        if tip != Some(repo.resolve(start)?) {
            return Ok(false);
        }
        let changes = Repo::worktree_changes_since(worktree, &opts.setup_placed(), stamp)?;
        Ok(!changes.is_dirty()?)
    };
    unchanged().unwrap_or(false)
}
