//! The executor seam: where and how one attempt of an agent runs. The
//! instance task and resume speak only these verbs — spawn an attempt and
//! follow it to its end, re-attach to one a crashed coordinator left
//! running, finish a termination an earlier coordinator began, cancel a
//! whole attempt, read the exit record it left — so a second backend (a
//! batch scheduler such as Slurm, then Kubernetes) implements [`Executor`]
//! beside [`super::local::Local`] without touching the retry loop, the machine or the
//! journal.
//!
//! What every backend shares is the attempt's files ([`AgentJob`]: log,
//! status file, exit file), all on storage the coordinator can read.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::runner::messages::{AgentEnd, AgentEvent, Stop};

/// Everything needed to run one agent once. Serialisable: a batch job
/// reads it from the job file `agent-exec` is given.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentJob {
    /// The already-substituted shell command, run as `sh -c command`.
    pub command: String,
    /// Working directory: the instance's worktree.
    pub cwd: PathBuf,
    /// Added to the inherited environment (`TREEFARM_*` and configured env).
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here; created with its parent folders.
    pub log_path: PathBuf,
    /// Exported as `TREEFARM_STATUS_FILE` (unless `env` sets it); a stale one
    /// from an earlier attempt is removed before the agent starts.
    pub status_path: PathBuf,
    /// Written by the wrapper shell with the agent's exit code when it ends;
    /// a stale one is removed before the agent starts.
    pub exit_path: PathBuf,
    pub timeout: Option<Duration>,
    /// No log growth and no status-file write for this long counts as a
    /// timeout.
    pub idle_timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL to the agent's process group.
    pub grace: Duration,
    /// Landlock confinement of the agent and all it starts; `None`: none.
    pub sandbox: Option<crate::isolation::Sandbox>,
}

/// One backend that runs agent attempts. Every method reports through the
/// same [`AgentEvent`]s and ends in the same [`AgentEnd`]; `stop` carries
/// the dispatcher's stop requests (graceful, then kill).
pub trait Executor: Send + Sync {
    /// What identifies a running attempt across a coordinator crash (journalled
    /// at [`AgentEvent::Started`]): for the local backend, the process group leader's
    /// pid and its `/proc` start time.
    type Handle: Clone + Send + Sync;

    /// Starts one attempt and follows it to its end: timeout, idle watchdog,
    /// stop requests, and nothing of it left behind.
    fn spawn(
        &self,
        job: AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send;

    /// Follows an attempt a previous coordinator started (and that is still
    /// running) to its end, as [`Executor::spawn`] would have.
    fn reattach(
        &self,
        handle: Self::Handle,
        job: &AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send;

    /// Finishes the termination of an attempt that an earlier coordinator
    /// began for `why` (the hard kill is due at `kill_at_ms`, ms since the
    /// epoch); `why` is the attempt's result.
    fn finish_termination(
        &self,
        handle: Self::Handle,
        kill_at_ms: u64,
        why: AgentEnd,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send;

    /// Cancels a whole attempt: asks it to end, waits `grace`, then forces
    /// it. True when nothing of it is left.
    fn cancel(&self, handle: Self::Handle, grace: Duration) -> impl Future<Output = bool> + Send;

    /// The exit code (and the attempt, when recorded) an attempt left in its
    /// exit file, read by `resume`.
    fn exit_record(&self, exit_path: &Path) -> Option<(i32, Option<u32>)>;
}
