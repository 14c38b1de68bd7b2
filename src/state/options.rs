//! What a run was asked to do, frozen at its start and stored in the journal
//! (`state.json`'s `options`), so that `resume` and `merge` continue with
//! exactly the same settings and spec contents even if the files changed
//! since.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{CommitMode, ScopeMode, SetupConfig, SparseMode, SparseWord, Strategy};
use crate::git::SparseRequest;

use crate::spec::Spec;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub repo_root: PathBuf,
    pub target: String,
    pub base_commit: String,
    pub worktree_dir: PathBuf,
    pub instances: usize,
    /// The agent command with placeholders still in it.
    pub agent_command: String,
    /// Extra environment for the agent (config `agent.env`, preset options).
    pub agent_env: Vec<(String, String)>,
    pub prompt_template: Option<String>,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub grace_ms: u64,
    pub retries: u32,
    pub commit: CommitMode,
    pub scope: ScopeMode,
    pub setup: SetupConfig,
    pub port_base: u16,
    pub port_stride: u16,
    pub strategy: Strategy,
    pub gate: Option<String>,
    pub no_merge: bool,
    pub keep: bool,
    /// The specs as the run saw them, in priority order (a snapshot: later
    /// edits of the files do not change a run that is resumed).
    pub specs: Vec<Spec>,
    /// Pairs of overlapping spec ids.
    pub conflicts: Vec<(String, String)>,
    /// `worktree.sparse` and `worktree.sparse_include`.
    #[serde(default)]
    pub sparse: SparseMode,
    #[serde(default)]
    pub sparse_include: Vec<String>,
    /// `slot_env` templates and the `{cache}` folder they expand with.
    #[serde(default)]
    pub slot_env: BTreeMap<String, String>,
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// What `.worktreeinclude` selected at the start of the run (relative
    /// paths of gitignored files in the main worktree).
    #[serde(default)]
    pub worktree_include: Vec<PathBuf>,
    /// `isolation` as configured (the journal keeps the request; whether
    /// Landlock is available is decided again by each coordinator).
    #[serde(default)]
    pub isolation: crate::config::IsolationConfig,
    /// The isolation this coordinator enforces (see
    /// [`crate::isolation::resolve`]); `None`: agents run unconfined.
    #[serde(skip)]
    pub isolation_active: Option<crate::isolation::Active>,
    /// `(name, email)` every agent commits as (`GIT_AUTHOR_*`,
    /// `GIT_COMMITTER_*`); none in journals of older versions.
    #[serde(default)]
    pub git_identity: Option<(String, String)>,
    /// `agent.allow_unchanged`: exiting 0 with no commit and no change is a
    /// success rather than the result `unchanged`.
    #[serde(default)]
    pub allow_unchanged: bool,
    /// `agent.preset`, whose known rate-limit signals classify an attempt's
    /// end (`None`: a custom command; only the generic signals).
    #[serde(default)]
    pub agent_preset: Option<String>,
    /// `agent.rate_limit` (patterns, exit codes, max backoff, max waits).
    #[serde(default)]
    pub rate_limit: crate::config::RateLimitConfig,
    /// `agent.start_interval` in milliseconds: the least time between two
    /// agent starts.
    #[serde(default = "default_start_interval_ms")]
    pub start_interval_ms: u64,
    /// `run.max_cost` / `run.max_tokens` as this coordinator enforces them:
    /// `resume` takes them from its flags or the current config (see
    /// `cli::run::resume`), so a run stopped by its budget continues with a
    /// larger one.
    #[serde(default)]
    pub budget: crate::policy::Budget,
    /// `merge.batch`, `merge.gate_jobs`, `merge.on_conflict`,
    /// `merge.resolve_attempts` and `agent.resolve_prompt_template`.
    #[serde(default)]
    pub queue: QueueOptions,
}

fn default_start_interval_ms() -> u64 {
    1000
}

/// How the merge queue batches, gates and resolves (see `merge_queue.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueOptions {
    pub batch: usize,
    pub gate_jobs: usize,
    /// `merge.gate_timeout` (`None`: no limit; a journal without it gets
    /// the default).
    pub gate_timeout_ms: Option<u64>,
    pub on_conflict: crate::config::OnConflict,
    pub resolve_attempts: u32,
    pub resolve_prompt_template: Option<String>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        let merge = crate::config::MergeConfig::default();
        QueueOptions {
            batch: merge.batch,
            gate_jobs: merge.gate_jobs,
            gate_timeout_ms: merge.gate_timeout.map(|d| d.as_millis() as u64),
            on_conflict: merge.on_conflict,
            resolve_attempts: merge.resolve_attempts,
            resolve_prompt_template: None,
        }
    }
}

impl QueueOptions {
    pub fn from_config(cfg: &crate::config::Config) -> QueueOptions {
        QueueOptions {
            batch: cfg.merge.batch,
            gate_jobs: cfg.merge.gate_jobs,
            gate_timeout_ms: cfg.merge.gate_timeout.map(|d| d.as_millis() as u64),
            on_conflict: cfg.merge.on_conflict,
            resolve_attempts: cfg.merge.resolve_attempts,
            resolve_prompt_template: cfg.agent.resolve_prompt_template.clone(),
        }
    }

    /// The planner's settings, or `None` for `merge.batch: 1` with one gate
    /// job and no gate: each branch merged on its own on the lane. Every
    /// gated merge goes through the queue (with `merge.batch: 1`, batches
    /// of one), so every gate runs on the queue's one gate path: its own
    /// process group, `merge.gate_timeout`, stopped by the first Ctrl-C,
    /// confined like an agent.
    pub fn planner(&self, gated: bool) -> Option<crate::merge_queue::QueueConfig> {
        (gated || self.batch > 1 || self.gate_jobs > 1).then_some(crate::merge_queue::QueueConfig {
            batch: self.batch,
            gate_jobs: self.gate_jobs,
            gated,
        })
    }
}

impl RunOptions {
    /// What the prompt templates are told about `spec` on `branch` in
    /// `worktree` (its own prompt and a resolve attempt's).
    pub fn prompt_context<'a>(
        &'a self,
        spec: &'a Spec,
        branch: &'a str,
        worktree: &'a std::path::Path,
    ) -> crate::agents::PromptContext<'a> {
        crate::agents::PromptContext {
            id: &spec.id,
            title: &spec.title,
            body: &spec.body,
            files: &spec.files,
            branch,
            target: &self.target,
            worktree,
        }
    }

    pub fn spec(&self, id: &str) -> Option<&Spec> {
        self.specs.iter().find(|s| s.id == id)
    }

    pub fn worktree_for(&self, id: &str) -> PathBuf {
        self.worktree_dir.join(id)
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// One gate run's limit (`merge.gate_timeout`).
    pub fn gate_timeout(&self) -> Option<Duration> {
        self.queue.gate_timeout_ms.map(Duration::from_millis)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout_ms.map(Duration::from_millis)
    }

    /// What setup copies or links into each worktree: never the agent's work,
    /// so never auto-committed nor counted as leftovers.
    pub fn setup_placed(&self) -> Vec<String> {
        self.setup
            .copy
            .iter()
            .chain(&self.setup.link)
            .cloned()
            .chain(
                self.worktree_include
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned()),
            )
            .collect()
    }

    /// The sparse shape of `id`'s worktree; `None`: the whole tree.
    pub fn sparse_for(&self, id: &str) -> Option<SparseRequest> {
        self.spec(id)
            .and_then(|spec| sparse_request(&self.sparse, &self.sparse_include, spec))
    }

    /// The first port above every slot's own block, where spare blocks go.
    pub fn spare_ports_from(&self) -> u32 {
        self.port(self.instances)
    }

    /// The pacing policy of the run (`instances`, `agent.start_interval`,
    /// `agent.rate_limit.max_backoff` and `.max_waits`).
    pub fn pacing_policy(&self) -> crate::policy::PacingPolicy {
        crate::policy::PacingPolicy {
            instances: self.instances,
            start_interval: Duration::from_millis(self.start_interval_ms),
            max_backoff: self.rate_limit.max_backoff,
            max_waits: self.rate_limit.max_waits,
        }
    }

    pub fn port(&self, slot: usize) -> u32 {
        slot_port(self.port_base, self.port_stride, slot)
    }
}

/// The first port of `slot`'s block.
pub fn slot_port(base: u16, stride: u16, slot: usize) -> u32 {
    u32::from(base) + slot as u32 * u32::from(stride)
}

/// What `worktree.sparse` asks for `spec`'s worktree; `None`: the whole tree.
pub fn sparse_request(mode: &SparseMode, include: &[String], spec: &Spec) -> Option<SparseRequest> {
    let declared: Vec<String> = spec.files.iter().chain(&spec.shared).cloned().collect();
    match mode {
        SparseMode::Word(SparseWord::Off) => None,
        SparseMode::Word(SparseWord::Auto) => Some(SparseRequest {
            declared,
            include: include.to_vec(),
            exact: false,
        }),
        SparseMode::List(globs) => Some(SparseRequest {
            declared,
            include: globs.clone(),
            exact: true,
        }),
    }
}
