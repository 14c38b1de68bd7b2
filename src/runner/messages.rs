//! The messages between the dispatcher and the tasks it starts: what the
//! run is asked to do ([`Mode`]) and what the blocking git lane (plant,
//! merge, prune) reports back ([`LaneMsg`]). The instance tasks' messages
//! are [`crate::runner::instance::InstanceMsg`].

use tokio::sync::oneshot;

use crate::merge::MergeResult;
use crate::runner::instance::{InstanceMsg, Launch};

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
        ack: oneshot::Sender<()>,
    },
    Merged(String, Result<MergeResult, String>),
    Pruned(String, Result<(), String>),
}
