//! The journal's data: one [`RunRecord`] per run, holding one
//! [`InstanceRecord`] per spec, serialised as `runs/<run-id>/state.json`.
//!
//! Every optional field is `#[serde(default)]` and unknown fields are
//! ignored, so journals written by older or newer versions still load.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::RunOptions;

/// The lifecycle of one instance:
/// `pending → creating → created → running → succeeded | failed | timed_out |
/// unchanged → merging → merged | conflicted | refused → pruned`; `skipped`
/// when a dependency did not merge; `unchanged` when the agent exited 0 but
/// left no commit and no change (a failure unless `agent.allow_unchanged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    #[default]
    Pending,
    Creating,
    Created,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Merging,
    Merged,
    Conflicted,
    Refused,
    Skipped,
    Pruned,
    /// The agent exited 0 without a commit or a change.
    Unchanged,
}

impl InstanceState {
    /// True when the instance's outcome is decided and the coordinator has
    /// nothing left to run or merge for it. `merged` counts: pruning is
    /// clean-up and does not change the outcome. `succeeded` does not: it
    /// still waits for its merge (unless the run is `--no-merge`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            InstanceState::Failed
                | InstanceState::TimedOut
                | InstanceState::Unchanged
                | InstanceState::Merged
                | InstanceState::Conflicted
                | InstanceState::Refused
                | InstanceState::Skipped
                | InstanceState::Pruned
        )
    }

    /// True for the outcomes that make the run exit with code 1.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            InstanceState::Failed
                | InstanceState::TimedOut
                | InstanceState::Unchanged
                | InstanceState::Conflicted
                | InstanceState::Refused
                | InstanceState::Skipped
        )
    }

    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Creating => "creating",
            InstanceState::Created => "created",
            InstanceState::Running => "running",
            InstanceState::Succeeded => "succeeded",
            InstanceState::Failed => "failed",
            InstanceState::TimedOut => "timed_out",
            InstanceState::Merging => "merging",
            InstanceState::Merged => "merged",
            InstanceState::Conflicted => "conflicted",
            InstanceState::Refused => "refused",
            InstanceState::Skipped => "skipped",
            InstanceState::Pruned => "pruned",
            InstanceState::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a whole run. A record saying `running` whose coordinator is
/// dead is really interrupted: see [`RunRecord::effective_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Running,
    Finished,
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the journal knows about one instance (one spec in one run).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub spec_path: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub worktree: String,
    pub state: InstanceState,
    /// Stopped by Ctrl-C while out (planted or running): `resume` runs it
    /// again in its worktree. Its `reason` says `interrupted` for people.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub slot: Option<usize>,
    /// The agent's process (group leader) and its start time, so a recycled
    /// pid is never mistaken for it.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_start: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Unix time in milliseconds.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    pub message: Option<String>,
    /// The target tip the branch was created from.
    #[serde(default)]
    pub start_commit: Option<String>,
    /// The branch tip after the agent (and the auto-commit).
    #[serde(default)]
    pub tip: Option<String>,
    #[serde(default)]
    pub merged_commit: Option<String>,
    #[serde(default)]
    pub commits: usize,
    #[serde(default)]
    pub changed_files: Vec<String>,
    #[serde(default)]
    pub scope_creep: Vec<String>,
    /// What isolation refused the agent of an attempt that succeeded anyway
    /// (`write to /x denied by isolation …`); a failure says it in `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    #[serde(default)]
    pub conflict_paths: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub log_path: String,
    /// When the running attempt's `agent.timeout` expires (ms since the
    /// epoch), so a resumed coordinator keeps the same deadline.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// The agent's group was sent SIGTERM for this reason (`timed_out`,
    /// `idle_timeout`, `stopped`); SIGKILL is due at `kill_at_ms`. A
    /// resumed coordinator finishes that termination on time, and the
    /// attempt's result is the timeout.
    #[serde(default)]
    pub ending: Option<String>,
    #[serde(default)]
    pub kill_at_ms: Option<u64>,
    /// Its last attempt was rate-limited: it waits in its worktree for its
    /// backoff and starts again at this time (ms since the epoch), without
    /// the attempt counting against `agent.retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// `merge.on_conflict: agent`: the agent is running again to resolve
    /// the conflicted merge prepared in its worktree (`conflict_paths`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolving: bool,
    /// How many times its agent was handed a conflict to resolve.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolve_attempts: u32,
    /// `executor: slurm`: the batch job of its latest attempt (name, id once
    /// `sbatch` answered, last state and pending reason seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::slurm::JobRecord>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl InstanceRecord {
    /// True when the record names an agent process that is still alive
    /// (same pid and start time).
    pub fn agent_alive(&self) -> bool {
        match self.pid {
            Some(pid) => crate::procfs::is_alive(pid, self.pid_start),
            None => false,
        }
    }
}

/// What the journal knows about one run: written atomically to
/// `runs/<run-id>/state.json` at every transition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub state: RunState,
    pub coordinator_pid: u32,
    #[serde(default)]
    pub coordinator_start: Option<u64>,
    pub started_at_ms: u64,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    /// What the run was asked to do (target, base commit, agent command,
    /// instances, strategy, timeouts, the specs, …), so that `resume` and
    /// `merge` continue identically.
    #[serde(default)]
    pub options: JournalledOptions,
    #[serde(default)]
    pub instances: Vec<InstanceRecord>,
    /// Rate-limit pacing: the concurrency window, the start gate, each
    /// spec's rate-limit waits and every backoff (none in older journals).
    #[serde(default)]
    pub pacing: Option<crate::policy::Pacer>,
    /// What the agents spent, per spec (their `usage.json`), over this run
    /// and every resume of it.
    #[serde(default)]
    pub spending: crate::policy::Spending,
    /// The budget (`run.max_cost`, `run.max_tokens`) that stopped new
    /// starts, while it does.
    #[serde(default)]
    pub budget_reached: Option<crate::policy::BudgetReached>,
    /// The merge queue (`merge.batch` above 1 or `merge.gate_jobs` above
    /// 1): the planner's state, the batches' commits and the gate runs, so
    /// `resume` continues it without losing a merge or landing an untested
    /// commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_queue: Option<crate::merge_queue::QueueRecord>,
    /// `executor: slurm`: what each job asks for (the `slurm:` section as
    /// the run started) and the Slurm calls made so far, over every resume.
    /// None: the local executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::slurm::SlurmRun>,
    /// Which instances [`RunRecord::instance_mut`] handed out, so a journal
    /// commit writes those alone: change an instance only through it.
    #[serde(skip)]
    pub touched: crate::state::Touched,
    /// Where each instance is in `instances`, by id: the runner looks
    /// instances up by id several times per event, and a scan would make
    /// each lookup cost the size of the run.
    #[serde(skip)]
    pub index: IdIndex,
}

/// Instance ids to their position in [`RunRecord::instances`]: a hint,
/// checked on every use (the vector is public and may have been changed
/// behind it) and rebuilt by a mutable lookup that misses. Not part of the
/// record's JSON, and ignored by its equality.
#[derive(Debug, Clone, Default)]
pub struct IdIndex(std::collections::HashMap<String, usize>);

impl PartialEq for IdIndex {
    fn eq(&self, _: &IdIndex) -> bool {
        true
    }
}

impl IdIndex {
    /// The position of `id`, when the hint is right.
    fn find(&self, instances: &[InstanceRecord], id: &str) -> Option<usize> {
        self.0
            .get(id)
            .copied()
            .filter(|&i| instances.get(i).is_some_and(|inst| inst.id == id))
    }

    fn rebuild(&mut self, instances: &[InstanceRecord]) {
        self.0.clear();
        for (i, inst) in instances.iter().enumerate() {
            self.0.entry(inst.id.clone()).or_insert(i);
        }
    }
}

/// The journal's `options`: what this version reads, or — from a journal
/// written by a treefarm whose options it cannot read — the JSON as found,
/// kept unchanged so that rewriting the record never loses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JournalledOptions {
    Known(Box<RunOptions>),
    Foreign(serde_json::Value),
}

impl Default for JournalledOptions {
    fn default() -> Self {
        JournalledOptions::Foreign(serde_json::Value::Null)
    }
}

impl From<RunOptions> for JournalledOptions {
    fn from(opts: RunOptions) -> Self {
        JournalledOptions::Known(Box::new(opts))
    }
}

impl RunRecord {
    /// The run's options, when this version can read them.
    pub fn opts(&self) -> Option<&RunOptions> {
        match &self.options {
            JournalledOptions::Known(opts) => Some(opts),
            JournalledOptions::Foreign(_) => None,
        }
    }

    /// The branch the run merges into (empty when the options are foreign).
    pub fn target(&self) -> &str {
        self.opts().map_or("", |o| o.target.as_str())
    }

    /// The commit the run's branches start from (empty when foreign).
    pub fn base_commit(&self) -> &str {
        self.opts().map_or("", |o| o.base_commit.as_str())
    }

    /// `--no-merge`: succeeded branches are kept, not merged.
    pub fn no_merge(&self) -> bool {
        self.opts().is_some_and(|o| o.no_merge)
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceRecord> {
        match self.index.find(&self.instances, id) {
            Some(i) => self.instances.get(i),
            None => self.instances.iter().find(|i| i.id == id),
        }
    }

    /// The instance `id`, to change: the next journal commit writes it.
    pub fn instance_mut(&mut self, id: &str) -> Option<&mut InstanceRecord> {
        let index = match self.index.find(&self.instances, id) {
            Some(i) => i,
            None => {
                self.index.rebuild(&self.instances);
                self.index.find(&self.instances, id)?
            }
        };
        self.touched.mark(index);
        self.instances.get_mut(index)
    }

    /// True when the coordinator process recorded here (pid and start time)
    /// is still alive.
    pub fn coordinator_alive(&self) -> bool {
        crate::procfs::is_alive(self.coordinator_pid, self.coordinator_start)
    }

    /// The state as the user should see it: `interrupted` when the record
    /// says `running` but its coordinator is gone (killed, crashed, reboot).
    pub fn effective_state(&self) -> RunState {
        match self.state {
            RunState::Running if !self.coordinator_alive() => RunState::Interrupted,
            state => state,
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every `*_ms` field.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
