//! The words the loop, the machine and the tasks share: what the run is
//! asked to do ([`Mode`]), what the loop hands the machine ([`Input`]) and
//! the machine answers ([`Action`]), what the blocking git lane reports
//! back ([`LaneMsg`]), what an instance task reports ([`InstanceMsg`],
//! ending in a [`Verdict`]) and what its executor reports ([`AgentEvent`],
//! ending in an [`AgentEnd`]). Data only: the machine imports its whole
//! vocabulary from here, never from the modules that do the work.

use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::merge::MergeResult;
use crate::merge_queue::Built;
use crate::merge_queue::{BatchId, GateRun};
use crate::report::Event;
use crate::state::InstanceState;

/// What the dispatcher's loop turns each wake-up into before handling it.
pub enum Input {
    /// From the task running instance `id`.
    Instance(String, InstanceMsg),
    /// From the git lane.
    Lane(LaneMsg),
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(Signal),
    /// The live view's timer.
    Tick,
    /// The machine's next deadline passed ([`crate::runner::machine::RunMachine::next_deadline`]):
    /// a backoff ended or the start interval let a start go.
    Wake,
}

/// A signal the coordinator handles: the first stops the agents
/// gracefully, the second kills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal went away).
    Hangup,
}

impl Signal {
    /// The word the notes use.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "interrupt",
            Signal::Terminate => "terminate",
            Signal::Hangup => "hangup",
        }
    }
}

/// What the dispatcher is asked to do with the run's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plant, run, merge (unless `no_merge`), prune: `run` and `resume`.
    Run,
    /// Only merge what succeeded (and retry what conflicted or was refused):
    /// `treefarm merge`.
    MergeOnly,
}

/// A planted batch: each launch with its worktree's outcome (the failure's
/// cause chain as text).
pub type Planted = Vec<(Launch, Result<(), String>)>;

/// How the lane waits for the acknowledgement of a merge's durable intent:
/// sent to the loop before the [`LaneMsg::MergePrepared`] it belongs to, and
/// answered when the machine says [`Action::Ack`].
pub type MergeAck = (String, oneshot::Sender<()>);

/// What the git lane reports back to the dispatcher.
pub enum LaneMsg {
    Planted(Planted),
    MergePrepared {
        id: String,
        new: String,
        /// The branch tip being merged: the journal's `tip`, by which `prune`
        /// recognises squash and rebase merges (the user may have committed
        /// to the branch since the agent ran).
        tip: Option<String>,
    },
    Merged(String, Result<MergeResult, String>),
    Pruned(String, Result<(), String>),
    /// A merge-queue batch was built (`base` and each branch's result), or
    /// could not be (the cause chain).
    Built {
        batch: BatchId,
        result: Result<BatchBuilt, String>,
    },
    /// A batch's compare-and-swap: `Ok(true)` the target holds the batch's
    /// tip, `Ok(false)` someone else moved the target.
    Landed {
        batch: BatchId,
        result: Result<bool, String>,
    },
    /// A gate run ended (see [`GateEnd`]).
    GateDone {
        run: u64,
        end: GateEnd,
        elapsed_ms: u64,
    },
}

/// How a gate run ended. Only `Passed` and `Failed` are a verdict on the
/// branches under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateEnd {
    Passed,
    /// The gate ran and said no: its exit status, a timeout, and a write
    /// isolation denied it, in words.
    Failed(String),
    /// The gate could not be run at all (its log, its worktree, its sandbox
    /// or its shell): no branch is at fault. The cause chain, in words.
    CouldNotRun(String),
    /// Stopped by the planner (no longer needed) or by a signal: no result.
    Stopped,
}

/// What the machine decided, for the dispatcher's loop to perform in order
/// ([`crate::runner::machine::RunMachine::handle`]).
#[derive(Debug)]
pub enum Action {
    /// The record changed: the next journal commit writes it.
    Save,
    /// An agent's progress changed (written with the next commit).
    Progressed,
    /// An agent started (the `agents-running` crash point fires once the
    /// commit carrying it is durable).
    AgentStarted,
    /// Commit the journal now: what follows depends on it being durable.
    Flush,
    /// Show an event (journalled at the next commit unless transient).
    Emit(Event),
    /// Emit the event only when the path exists (a worktree kept for the
    /// user after a failure, if the failure left one).
    EmitIfExists(PathBuf, Event),
    /// A note for people, through the reporter.
    Note(String),
    /// Tell every running agent to stop.
    Stop(Stop),
    /// A test crash point (`TREEFARM_CRASH_AT`).
    CrashPoint(&'static str),
    /// Start the instance task (setup, agent, verdict) in a planted
    /// worktree.
    Launch(Launch),
    /// Plant a batch on the lane (`reuse`: worktrees that may exist).
    Plant { launches: Vec<Launch>, reuse: bool },
    /// Merge `id`'s branch on the lane (`subjects`: its commits' subjects,
    /// for the commit message).
    Merge { id: String, subjects: Vec<String> },
    /// Remove `id`'s worktree and branch on the lane.
    Prune(String),
    /// Acknowledge to the lane that `id`'s merge intent is durable: the
    /// target ref may move. (The lane's waiting end stays in the loop,
    /// [`MergeAck`]; the machine only names the merge.)
    Ack(String),
    /// Log that pruning a merged instance failed (it is kept).
    PruneFailed { id: String, reason: String },
    /// Redraw the live view.
    Refresh,
    /// Build a merge-queue batch on the lane: `ids`' branches merged in
    /// memory one on top of the other, on the target tip or on `onto`.
    BuildBatch {
        batch: BatchId,
        ids: Vec<String>,
        onto: Option<String>,
    },
    /// Move the target from `old` to `new` (a gated batch tip) on the lane;
    /// the journal already says the branches are merging.
    LandBatch {
        batch: BatchId,
        old: String,
        new: String,
    },
    /// Run the gate in warm gate worktree `slot` at the run's `commit`.
    RunGate(GateRun),
    /// Stop gate run `run` (its process group is killed).
    CancelGate(u64),
    /// Keep the log of the gate run that refused `id` as its gate log.
    KeepGateLog { id: String, log: String },
}

/// What the dispatcher hears from an instance task.
#[derive(Debug)]
pub enum InstanceMsg {
    Agent(AgentEvent),
    AttemptStarting {
        attempt: u32,
    },
    Exited {
        attempt: u32,
        end: AgentEnd,
        elapsed_ms: u64,
        /// Its exit and log tail say the provider refused it (a non-zero
        /// exit; see `Verdict::RateLimited`).
        rate_limited: bool,
    },
    /// Something to report that fails nothing (e.g. the agent changed the
    /// shared git config).
    Warning(String),
    /// What isolation refused the agent, which succeeded anyway: part of
    /// its result (warning event, `status`, summary, report).
    Denied(String),
    Done(Verdict),
    /// What the agent has spent so far: its wrapper's `usage.json`, read
    /// after each attempt (it covers every attempt of the spec).
    Usage(crate::agents::Usage),
}

/// How an instance ended, after retries, committing and auditing.
#[derive(Debug)]
pub enum Verdict {
    Succeeded(Work),
    Failed {
        state: InstanceState,
        reason: String,
        exit_code: Option<i32>,
        work: Option<Work>,
    },
    /// Stopped by Ctrl-C (or a dying coordinator): resumable.
    Stopped,
    /// Attempt `attempt` was rate-limited (its exit and log tail matched a
    /// signal): the machine decides the backoff. It used no retry;
    /// `retries_left` are the retries still to use.
    RateLimited {
        attempt: u32,
        cause: crate::agents::RateLimited,
        retries_left: u32,
    },
}

impl Verdict {
    /// Failed before the agent produced anything.
    pub(crate) fn failed_early(reason: String) -> Verdict {
        Verdict::Failed {
            state: InstanceState::Failed,
            reason,
            exit_code: None,
            work: None,
        }
    }
}

/// What the branch holds after the agent.
#[derive(Debug, Clone, Default)]
pub struct Work {
    pub tip: String,
    pub auto_commit: Option<String>,
    pub commits: usize,
    pub subjects: Vec<String>,
    pub changed: Vec<String>,
    pub scope_creep: Vec<String>,
}

/// How an instance task begins (`resume` finds which; a plain start is
/// always [`Start::Fresh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new attempt; run `setup` first unless the instance was set up
    /// before (a resumed `running` instance, a retry, a resolve attempt).
    Fresh { setup: bool },
    /// A live agent left by a previous coordinator: re-attach and follow it.
    Reattach {
        /// The executor's handle on it.
        handle: AgentHandle,
        /// An earlier coordinator was terminating it for this reason;
        /// SIGKILL is due at the given time (ms since the epoch). Finished
        /// on time; the reason is the result.
        terminating: Option<(AgentEnd, u64)>,
        /// What is left of the attempt's timeout.
        timeout_left: Option<std::time::Duration>,
    },
    /// The attempt already ended while no coordinator watched: its exit
    /// code (from its exit file), or the reason of a termination an earlier
    /// coordinator began and whose group is gone now. Go straight to
    /// judging it.
    Ended(AgentEnd),
}

impl Launch {
    /// A launch starting a new attempt, with no retries decided by the
    /// machine and no conflict to resolve.
    pub fn fresh(
        id: String,
        slot: usize,
        start_commit: String,
        attempt: u32,
        setup: bool,
    ) -> Launch {
        Launch {
            id,
            slot,
            start_commit,
            attempt,
            start: Start::Fresh { setup },
            retries_left: None,
            resolve: false,
        }
    }

    /// Whether this launch starts a new attempt (not re-attached, not
    /// already ended).
    pub fn is_fresh(&self) -> bool {
        matches!(self.start, Start::Fresh { .. })
    }
}

/// Where an instance starts.
#[derive(Debug, Clone)]
pub struct Launch {
    pub id: String,
    pub slot: usize,
    pub start_commit: String,
    /// The number of the next attempt.
    pub attempt: u32,
    /// How the instance task begins: a new attempt, a live agent to
    /// re-attach to, or an attempt whose end is already known.
    pub start: Start,
    /// Set when the spec starts again after a rate-limited attempt: the
    /// retries it has left (rate-limited attempts use none up).
    pub retries_left: Option<u32>,
    /// `merge.on_conflict: agent`: the agent resolves the conflicted merge
    /// prepared in its worktree (`runner/agent/handback.rs`), one attempt.
    pub resolve: bool,
}

/// What identifies a running attempt across a coordinator crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentHandle {
    /// The local executor: the process group leader's pid and its `/proc`
    /// start time.
    Process(u32, u64),
    /// The Slurm executor: the attempt's batch job, by its name (unique to
    /// run, spec and attempt) and its id when `sbatch` answered before the
    /// crash.
    Job { name: String, id: Option<u64> },
}

/// What the Slurm executor learnt about an attempt's batch job: its name
/// (known before `sbatch`), then its id, then each state Slurm reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    pub name: String,
    pub id: Option<u64>,
    /// Slurm's state name (`PENDING`, `RUNNING`, …); none before the first
    /// `squeue` that lists it.
    pub state: Option<String>,
    /// The pending reason, while pending.
    pub reason: Option<String>,
}

/// An attempt's Slurm job about to be submitted: its name, which the
/// dispatcher journals (and commits) as the instance's `job` before it
/// answers `durable` — only then does `sbatch` run, so a coordinator killed
/// at any point leaves a journal that names every job it may have
/// submitted.
#[derive(Debug)]
pub struct JobIntent {
    /// The instance (spec id).
    pub id: String,
    /// The job's name (`treefarm:<run>:<spec>:<kind><n>`).
    pub name: String,
    pub durable: tokio::sync::oneshot::Sender<()>,
}

/// What an executor reports while the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent's process (the wrapper shell, also its process group id)
    /// started; `start_time` is its `/proc` start time for a re-attach
    /// ([`crate::runner::agent::executor::Executor::reattach`]).
    Started { pid: u32, start_time: u64 },
    /// The status file changed to a new, parseable status.
    Status(AgentStatus),
    /// The group was sent SIGTERM because of `why` (a timeout, the idle
    /// watchdog or a stop request); SIGKILL follows at `kill_at_ms` (ms since
    /// the epoch) unless it empties first. Journalled, so a coordinator
    /// killed meanwhile leaves a successor the same deadline.
    Terminating { why: AgentEnd, kill_at_ms: u64 },
    /// The attempt's Slurm job: about to be submitted (name only: the
    /// durable intent), submitted (its id), or in a new state.
    Job(JobUpdate),
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnd {
    /// Exited on its own with this code.
    Exited(i32),
    /// Died from this signal. An agent shell reporting status 128+N (N a
    /// standard signal, 1–31) is read as signal N, the shell convention.
    Signaled(i32),
    /// `timeout` elapsed; the group was terminated.
    TimedOut,
    /// No output and no status update for `idle_timeout`; the group was
    /// terminated.
    IdleTimedOut,
    /// Ended on a [`Stop`] request.
    Stopped,
    /// A re-attached agent ended without leaving an exit code (killed from
    /// outside while no coordinator watched it). Counts as a failure.
    Unknown,
    /// The agent could not be started; the message names what failed.
    SpawnFailed(String),
    /// Its Slurm job ended without the agent's own exit code (node failure,
    /// preemption, out of memory, …): Slurm's state name, and what it means.
    JobLost(String),
    /// Its Slurm job can never start (a pending reason that never clears,
    /// such as `PartitionConfig`): the reason and its fix. Not retried: the
    /// same request would wait for ever again.
    NeverStarts(String),
}

impl AgentEnd {
    /// True only for exit code 0: the exit code decides.
    pub fn success(&self) -> bool {
        matches!(self, AgentEnd::Exited(0))
    }

    /// The exit code, when the agent exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            AgentEnd::Exited(code) => Some(*code),
            _ => None,
        }
    }
}

impl std::fmt::Display for AgentEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentEnd::Exited(code) => write!(f, "exited with code {code}"),
            AgentEnd::Signaled(sig) => match nix::sys::signal::Signal::try_from(*sig) {
                Ok(signal) => write!(f, "killed by signal {sig} ({})", signal.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            AgentEnd::TimedOut => f.write_str("timed out"),
            AgentEnd::IdleTimedOut => f.write_str("timed out (idle: no output or status update)"),
            AgentEnd::Stopped => f.write_str("stopped"),
            AgentEnd::Unknown => f.write_str("ended without leaving an exit code"),
            AgentEnd::SpawnFailed(msg) => write!(f, "failed to start: {msg}"),
            AgentEnd::JobLost(what) => write!(f, "its Slurm job {what}"),
            AgentEnd::NeverStarts(what) => write!(f, "failed to start: {what}"),
        }
    }
}

/// A stop request, sent through a `tokio::sync::watch` channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    /// Keep running (the channel's initial value).
    #[default]
    Run,
    /// SIGTERM the group, grace period, SIGKILL.
    Graceful,
    /// SIGKILL the group at once (also escalates a graceful stop under way).
    Kill,
}

/// A batch built on the lane.
#[derive(Debug, Clone)]
pub struct BatchBuilt {
    /// The commit the batch starts from.
    pub base: String,
    /// Each branch's merge, by spec id, in order.
    pub results: Vec<Built>,
    /// Spec id -> the branch tip merged (the journal's `tip`, by which
    /// `prune` recognises squash and rebase merges).
    pub tips: Vec<(String, String)>,
}

/// How the journal names why an agent's group was being terminated.
pub fn ending_name(why: &AgentEnd) -> &'static str {
    match why {
        AgentEnd::TimedOut => "timed_out",
        AgentEnd::IdleTimedOut => "idle_timeout",
        _ => "stopped",
    }
}

/// The result a journalled termination stands for; `None` for a stop (the
/// attempt is rerun, as after Ctrl-C).
pub fn ending_result(name: &str) -> Option<AgentEnd> {
    match name {
        "timed_out" => Some(AgentEnd::TimedOut),
        "idle_timeout" => Some(AgentEnd::IdleTimedOut),
        _ => None,
    }
}

/// What an agent last said about itself. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentStatus {
    pub state: Option<String>,
    /// 0–100; larger numbers are clamped to 100.
    pub progress: Option<u8>,
    pub message: Option<String>,
}
