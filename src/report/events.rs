//! The events a run emits. The human reporter, `--json` and the journal's
//! `events.jsonl` are all the same events; `--json` is them serialised.

use serde::Serialize;

use crate::config::Strategy;
use crate::state::RunState;

/// How one attempt of an agent ended (`exited` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Succeeded,
    Failed,
    TimedOut,
    IdleTimeout,
    /// Stopped by Ctrl-C; `resume` runs the attempt again.
    Stopped,
    /// The provider refused it (429, overloaded, quota): not a failure, no
    /// retry used; a `rate_limited` event follows.
    RateLimited,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Succeeded => "succeeded",
            AttemptResult::Failed => "failed",
            AttemptResult::TimedOut => "timed_out",
            AttemptResult::IdleTimeout => "idle_timeout",
            AttemptResult::Stopped => "stopped",
            AttemptResult::RateLimited => "rate_limited",
        }
    }
}

/// One thing that happened in a run, as written to `events.jsonl` and to
/// stdout with `--json` (`{"event": "<kind>", ...}`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        target: String,
        base: String,
        instances: usize,
        specs: Vec<String>,
    },
    Planted {
        id: String,
        branch: String,
        worktree: String,
        start_commit: String,
        /// How long the plant took (worktree, branch, setup), from the
        /// moment the start interval and the window let it go: the time
        /// before that was spent waiting, and the report shows it so.
        #[serde(skip_serializing_if = "Option::is_none")]
        plant_ms: Option<u64>,
    },
    Started {
        id: String,
        attempt: u32,
        pid: u32,
        slot: usize,
        port: u32,
    },
    /// `executor: slurm`: the attempt's batch job was named (before
    /// `sbatch`), got its id, or changed state (`reason`: why it is pending).
    Job {
        id: String,
        name: String,
        job_id: Option<u64>,
        state: Option<String>,
        reason: Option<String>,
    },
    Status {
        id: String,
        state: Option<String>,
        progress: Option<u8>,
        message: Option<String>,
    },
    Exited {
        id: String,
        attempt: u32,
        result: AttemptResult,
        exit_code: Option<i32>,
        elapsed_ms: u64,
        log: String,
    },
    Retrying {
        id: String,
        attempt: u32,
    },
    Committed {
        id: String,
        commit: String,
        /// True when treefarm committed leftovers the agent did not commit.
        auto: bool,
        commits: usize,
        files: Vec<String>,
    },
    ScopeCreep {
        id: String,
        paths: Vec<String>,
    },
    /// The spec failed (the agent, its plant or setup, the scope audit).
    /// Each way a spec ends is announced with the word its state, the
    /// summary and the report use: `failed`, `timed_out`, `unchanged`.
    Failed {
        id: String,
        reason: String,
        log: String,
    },
    /// The agent ran out of time (`agent.timeout`, `agent.idle_timeout`).
    TimedOut {
        id: String,
        reason: String,
        log: String,
    },
    /// The agent exited 0 but left no commit and no change (not accepted
    /// unless `agent.allow_unchanged`).
    Unchanged {
        id: String,
        reason: String,
        log: String,
    },
    Merged {
        id: String,
        commit: String,
        strategy: Strategy,
    },
    Conflicted {
        id: String,
        paths: Vec<String>,
    },
    Refused {
        id: String,
        reason: String,
        log: Option<String>,
    },
    Skipped {
        id: String,
        reason: String,
    },
    Pruned {
        id: String,
    },
    Kept {
        id: String,
        branch: String,
        worktree: String,
        reason: String,
    },
    Interrupted {
        run_id: String,
        resume: String,
    },
    /// Something the user should know that fails nothing, e.g. an agent
    /// changed the shared `.git/config` or `hooks/`.
    Warning {
        id: String,
        message: String,
    },
    Summary(Box<Summary>),
    /// An attempt was rate-limited (its exit and log tail matched a signal):
    /// it used no retry; the spec starts again in its worktree after
    /// `backoff_ms` (its `wait`-th rate-limit wait), or fails past
    /// `agent.rate_limit.max_waits`.
    RateLimited {
        id: String,
        attempt: u32,
        kind: crate::agents::RateLimitKind,
        /// The log line (or `exit code N`) that said so.
        signal: String,
        /// The wait the log asked for (`retry-after`), if it said.
        retry_after_ms: Option<u64>,
        backoff_ms: u64,
        wait: u32,
    },
    /// How many agents may run at once changed (halved by a rate limit,
    /// grown by one by a clean finish, up to `max`: `instances`).
    Concurrency {
        limit: usize,
        max: usize,
    },
    /// What a spec's agent spent so far (its wrapper's `usage.json`).
    Usage {
        id: String,
        usage: crate::agents::Usage,
    },
    /// `run.max_cost` or `run.max_tokens` is reached: no new agent starts,
    /// running ones finish; the rest stay pending for `resume`.
    BudgetReached {
        /// `cost` or `tokens`.
        budget: String,
        limit: f64,
        spent: f64,
        message: String,
    },
    /// The merge queue built a batch: these branches merged in memory one
    /// on top of the other from `base` (conflicting ones left it), `tip`
    /// is what the gate tests and the target moves to.
    Batch {
        batch: u64,
        ids: Vec<String>,
        base: String,
        tip: String,
    },
    /// A gate run started on the batch's first `prefix` branches merged.
    GateStarted {
        batch: u64,
        prefix: usize,
        commit: String,
        ids: Vec<String>,
        log: String,
    },
    GatePassed {
        batch: u64,
        prefix: usize,
        commit: String,
        elapsed_ms: u64,
        log: String,
    },
    GateFailed {
        batch: u64,
        prefix: usize,
        commit: String,
        elapsed_ms: u64,
        log: String,
        /// How it failed: exit status or timeout, and writes isolation
        /// denied it.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A gate could not be run at all (its log, worktree, sandbox or
    /// shell): no verdict on `ids`, which stay `succeeded`; the merge queue
    /// stops and the run ends `interrupted` (`hint`: what to do).
    GateCouldNotRun {
        batch: u64,
        prefix: usize,
        commit: String,
        ids: Vec<String>,
        elapsed_ms: u64,
        log: String,
        cause: String,
        hint: String,
    },
    /// The batch's gate failed: the culprit is among the branches after
    /// prefix `good` up to prefix `bad`.
    Bisect {
        batch: u64,
        good: usize,
        bad: usize,
    },
    /// A conflicted branch is handed back to its agent
    /// (`merge.on_conflict: agent`), attempt `attempt` of the resolution.
    Resolving {
        id: String,
        attempt: u32,
        paths: Vec<String>,
    },
}

/// The last event of a run, also written to `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub state: RunState,
    pub target: String,
    pub target_commit: Option<String>,
    pub merged: Vec<String>,
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
    pub timed_out: Vec<String>,
    /// The agent exited 0 but left no commit and no change.
    pub unchanged: Vec<String>,
    pub conflicted: Vec<ConflictSummary>,
    pub refused: Vec<String>,
    pub skipped: Vec<String>,
    pub pending: Vec<String>,
    pub elapsed_ms: u64,
    /// Why each instance that did not merge ended as it did, with the full
    /// cause chain (`id -> reason`). Boxed: it keeps [`Event`] small.
    pub reasons: Box<std::collections::BTreeMap<String, String>>,
    /// What isolation refused the agents that succeeded anyway (`id ->
    /// denials`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub denied: std::collections::BTreeMap<String, String>,
    /// `{"total": {...}, "per_spec": {...}}` from the agents' `usage.json`
    /// (over every resume of the run); `null` when none reported.
    pub usage: serde_json::Value,
    /// The concurrency limit as the run ended, and its maximum.
    pub concurrency: Option<ConcurrencySummary>,
    /// Every rate-limit backoff, oldest first.
    pub backoffs: Vec<crate::policy::pacing::BackoffRecord>,
    /// The budget that stopped new starts, if one did.
    pub budget_reached: Option<crate::policy::BudgetReached>,
    /// `executor: slurm`: the Slurm calls of the run (every coordinator,
    /// the start-up checks included) and the `squeue` polls among them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSummary>,
}

/// What the run cost the Slurm controller.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmSummary {
    pub calls: crate::slurm::CallCounts,
    pub total_calls: u64,
    /// Poller turns (one `squeue` each, for all the run's jobs).
    pub polls: u64,
    /// Jobs submitted (`sbatch` calls less the storage check).
    pub jobs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConcurrencySummary {
    pub limit: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConflictSummary {
    pub id: String,
    pub paths: Vec<String>,
}

impl Event {
    /// The spec id the event is about, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Event::Planted { id, .. }
            | Event::Started { id, .. }
            | Event::Status { id, .. }
            | Event::Job { id, .. }
            | Event::Exited { id, .. }
            | Event::Retrying { id, .. }
            | Event::Committed { id, .. }
            | Event::ScopeCreep { id, .. }
            | Event::Failed { id, .. }
            | Event::TimedOut { id, .. }
            | Event::Unchanged { id, .. }
            | Event::Merged { id, .. }
            | Event::Conflicted { id, .. }
            | Event::Refused { id, .. }
            | Event::Skipped { id, .. }
            | Event::Pruned { id }
            | Event::Kept { id, .. }
            | Event::Warning { id, .. }
            | Event::RateLimited { id, .. }
            | Event::Usage { id, .. }
            | Event::Resolving { id, .. } => Some(id),
            Event::RunStarted { .. }
            | Event::Interrupted { .. }
            | Event::Summary(_)
            | Event::Concurrency { .. }
            | Event::BudgetReached { .. }
            | Event::Batch { .. }
            | Event::GateStarted { .. }
            | Event::GatePassed { .. }
            | Event::GateFailed { .. }
            | Event::GateCouldNotRun { .. }
            | Event::Bisect { .. } => None,
        }
    }

    /// Status updates are shown live but not journalled: they change often and
    /// the status file itself holds the latest one.
    pub fn is_transient(&self) -> bool {
        matches!(self, Event::Status { .. })
    }
}
