//! The messages between the dispatcher and the tasks it starts: what the
//! run is asked to do ([`Mode`]) and what the blocking git lane (plant,
//! merge, prune) reports back ([`LaneMsg`]). The instance tasks' messages
//! are [`crate::runner::instance::InstanceMsg`].

use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::merge::MergeResult;
use crate::merge_queue::{BatchId, GateRun};
use crate::report::Event;
use crate::runner::executor::Stop;
use crate::runner::instance::{InstanceMsg, Launch};
use crate::runner::lane::BatchBuilt;

/// What the dispatcher's loop turns each wake-up into before handling it.
pub enum Input {
    /// From the task running instance `id`.
    Instance(String, InstanceMsg),
    /// From the git lane.
    Lane(LaneMsg),
    /// SIGINT, SIGTERM or SIGHUP (`interrupt`, `terminate`, `hangup`).
    Signal(&'static str),
    /// The live view's timer.
    Tick,
    /// The machine's next deadline passed ([`crate::runner::machine::RunMachine::next_deadline`]):
    /// a backoff ended or the start interval let a start go.
    Wake,
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
