//! `treefarm.yaml` and its environment overrides.
//!
//! Precedence: built-in defaults < the file (`<repo>/treefarm.yaml`, or an
//! explicit `--config` path) < `TREEFARM_*` environment variables < flags (the
//! command line applies those on top of [`Config::load`]'s result).
//!
//! Unknown keys in the file are errors naming the key, file and line; a bad
//! environment value is an error naming the variable. Other `TREEFARM_*`
//! variables (`TREEFARM_LOG`, the ones treefarm sets for agents) are not config
//! and are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::duration::parse_duration;
use crate::error::InputError;
use crate::spec::yaml::{position, yaml_fault};

/// The config file looked for in the repository root.
pub const CONFIG_FILE: &str = "treefarm.yaml";

/// Everything `treefarm.yaml` can set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where specs live, relative to the repository root.
    pub spec_dir: PathBuf,
    /// The integration branch finished specs merge into.
    pub target: String,
    /// The revision the target is created from when it does not exist.
    pub base: String,
    /// How many agents run at once (at least 1).
    pub instances: usize,
    /// `None`: `../<repo>.treefarm` beside the repository.
    pub worktree_dir: Option<PathBuf>,
    pub agent: AgentConfig,
    pub setup: SetupConfig,
    pub scope: ScopeMode,
    /// `TREEFARM_PORT` of slot `n` is `port_base + n * port_stride`.
    pub port_base: u16,
    pub port_stride: u16,
    pub overlap: OverlapConfig,
    pub merge: MergeConfig,
    /// Which files are specs and which labels declare files.
    pub spec: SpecConfig,
    /// Shape and disk budget of the worktrees.
    pub worktree: WorktreeConfig,
    /// Environment templates per slot: `{slot}`, `{cache}`, `{repo}`.
    pub slot_env: BTreeMap<String, String>,
    /// Budgets of a run (`run.max_cost`, `run.max_tokens`).
    pub run: RunConfig,
    /// Enforced isolation of the agents (`auto`, `landlock`, `off`, or a
    /// mapping with `mode`, `allow_write`, `allow_read`, `ports`).
    pub isolation: IsolationConfig,
    /// `treefarm mcp`, the MCP server (`mcp.allow_in_agent`).
    pub mcp: McpConfig,
    /// `treefarm split` (`split.rounds`, `split.min_specs`, `split.max_specs`).
    pub split: SplitConfig,
    /// Where the agents run: child processes of the coordinator (`local`),
    /// or one Slurm batch job per attempt (`slurm`).
    pub executor: ExecutorKind,
    /// The `slurm:` section: what each job asks for and how treefarm
    /// watches it (read only with `executor: slurm`, validated always).
    pub slurm: crate::slurm::SlurmConfig,
}

/// `executor:` — where the agents run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Child processes of the coordinator, on this machine.
    #[default]
    Local,
    /// One Slurm batch job per attempt (issue 24).
    Slurm,
}

impl ExecutorKind {
    /// `local` or `slurm`, any case (the environment and `--executor`).
    pub fn parse(v: &str) -> Result<ExecutorKind, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            _ => Err(format!("expected `local` or `slurm`, not `{}`", v.trim())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// `mcp:` — what the MCP server (`treefarm mcp`) allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Inside an agent that treefarm started (`TREEFARM_RUN_ID` set), let
    /// the tools `run_start`, `resume`, `merge` and `prune` act; by default
    /// they are refused, so runs never start runs without end.
    pub allow_in_agent: bool,
}

/// `split:` — how many rounds an agent gets to draft a valid split, and how
/// many specs a split may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Rounds of drafting and judging at most (at least 1).
    pub rounds: u32,
    pub min_specs: usize,
    pub max_specs: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            rounds: 3,
            min_specs: 1,
            max_specs: 20,
        }
    }
}

/// `run:` — limits on what one run (with its resumes) may spend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// US dollars: once the run's total cost reaches it, no new agent starts.
    pub max_cost: Option<Usd>,
    /// Input plus output tokens: once reached, no new agent starts.
    pub max_tokens: Option<u64>,
}

impl RunConfig {
    /// The runner's budget.
    pub fn budget(&self) -> crate::policy::Budget {
        crate::policy::Budget {
            max_cost: self.max_cost.map(|c| c.0),
            max_tokens: self.max_tokens,
        }
    }
}

/// An amount of US dollars (finite, not negative once validated). Compared
/// bit for bit so the config stays `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Usd(pub f64);

impl PartialEq for Usd {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Usd {}

/// `agent.rate_limit:` — what else marks an attempt rate-limited and how
/// long treefarm waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Regular expressions matched against each line of the log's tail.
    pub patterns: Vec<String>,
    /// Exit codes that mean "rate-limited" for this agent.
    pub exit_codes: Vec<i32>,
    /// Cap on one backoff (also on a retry-after the log reveals).
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Rate-limit waits per spec before it fails.
    pub max_waits: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            patterns: Vec::new(),
            exit_codes: Vec::new(),
            max_backoff: Duration::from_secs(300),
            max_waits: 10,
        }
    }
}

impl RateLimitConfig {
    /// The classifier's rules (patterns compiled).
    pub fn rules(&self) -> Result<crate::agents::RateLimitRules, String> {
        crate::agents::RateLimitRules::new(&self.patterns, &self.exit_codes)
    }
}

/// `spec:` — how specs are found and read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecConfig {
    /// Extra labels that declare files (`**Touches**:`, `## Scope`).
    pub markers: Vec<String>,
    /// Extra labels that only refer to files (never declare).
    pub reference_markers: Vec<String>,
    /// Globs on names inside `spec_dir` that are specs (replace the default
    /// `SPEC-*.md`, `*.yaml`, `*.yml`, `SPEC-*/`).
    pub include: Vec<String>,
    /// Globs on names inside `spec_dir` that are never specs.
    pub exclude: Vec<String>,
}

impl SpecConfig {
    /// The loader's options.
    pub fn load_options(&self) -> crate::spec::LoadOptions {
        crate::spec::LoadOptions {
            rules: crate::spec::MarkerRules {
                markers: self.markers.clone(),
                reference_markers: self.reference_markers.clone(),
            },
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spec_dir: PathBuf::from("specs"),
            target: "roadmap".to_string(),
            base: "HEAD".to_string(),
            instances: 3,
            worktree_dir: None,
            agent: AgentConfig::default(),
            setup: SetupConfig::default(),
            scope: ScopeMode::Warn,
            port_base: 20000,
            port_stride: 10,
            overlap: OverlapConfig::default(),
            merge: MergeConfig::default(),
            spec: SpecConfig::default(),
            worktree: WorktreeConfig::default(),
            slot_env: BTreeMap::new(),
            run: RunConfig::default(),
            isolation: IsolationConfig::default(),
            mcp: McpConfig::default(),
            split: SplitConfig::default(),
            executor: ExecutorKind::Local,
            slurm: crate::slurm::SlurmConfig::default(),
        }
    }
}

/// `worktree:` — which part of the tree each worktree materialises, and the
/// free space kept on `worktree_dir`'s file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorktreeConfig {
    pub sparse: SparseMode,
    /// With `sparse: auto`, also materialise these paths or globs.
    pub sparse_include: Vec<String>,
    /// Free space left untouched: `5%` of what is free, or a size (`2G`).
    pub reserve: String,
}

impl Default for WorktreeConfig {
    fn default() -> Self {
        WorktreeConfig {
            sparse: SparseMode::default(),
            sparse_include: Vec::new(),
            reserve: "5%".to_string(),
        }
    }
}

/// `worktree.sparse`: `off`, `auto`, or a list of globs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SparseMode {
    Word(SparseWord),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for SparseMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SparseMode;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`off`, `auto` or a list of globs")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SparseMode, E> {
                match v {
                    "off" => Ok(SparseMode::Word(SparseWord::Off)),
                    "auto" => Ok(SparseMode::Word(SparseWord::Auto)),
                    _ => Err(E::custom(format!(
                        "unknown value `{v}`, expected `off`, `auto` or a list of globs"
                    ))),
                }
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SparseMode, A::Error> {
                let mut globs = Vec::new();
                while let Some(g) = seq.next_element::<String>()? {
                    globs.push(g);
                }
                Ok(SparseMode::List(globs))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseWord {
    Off,
    Auto,
}

impl Default for SparseMode {
    fn default() -> Self {
        SparseMode::Word(SparseWord::Off)
    }
}

/// How the agent is started and supervised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Shell command, run with `sh -c` in the worktree; placeholders `{id}`,
    /// `{spec}`, `{worktree}`, `{branch}`, `{target}`.
    pub command: Option<String>,
    /// `claude-code`, `codex`, `aider` or `gemini` (checked where presets live).
    pub preset: Option<String>,
    pub model: Option<String>,
    pub extra_args: Vec<String>,
    pub prompt_template: Option<String>,
    #[serde(with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL on timeout.
    #[serde(with = "duration")]
    pub kill_grace: Duration,
    /// Rate-limit signals, backoff cap and wait bound.
    pub rate_limit: RateLimitConfig,
    /// Minimum time between two agent starts (default 1s).
    #[serde(with = "duration")]
    pub start_interval: Duration,
    pub retries: u32,
    pub commit: CommitMode,
    pub env: BTreeMap<String, String>,
    /// `Name <email>` the agent commits as (`GIT_AUTHOR_*`/`GIT_COMMITTER_*`);
    /// default: the user's configured git identity, else
    /// `treefarm agent <agent@treefarm>`. Empty means the default, as it
    /// does for `TREEFARM_AGENT_GIT_IDENTITY`.
    #[serde(deserialize_with = "empty_as_none")]
    pub git_identity: Option<String>,
    /// Commands a preset lets its CLI run besides `git add`/`git commit`
    /// where the CLI needs an allow-list (Claude Code as root), e.g. `cargo test`.
    pub allowed_commands: Vec<String>,
    /// True: an agent that exits 0 leaving no commit and no change succeeds
    /// (default: its result is `unchanged`, a failed attempt).
    pub allow_unchanged: bool,
    /// The prompt for resolving a conflict with the target
    /// (`merge.on_conflict: agent`); default
    /// [`crate::agents::DEFAULT_RESOLVE_PROMPT_TEMPLATE`].
    pub resolve_prompt_template: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            command: None,
            preset: None,
            model: None,
            extra_args: Vec::new(),
            prompt_template: None,
            timeout: None,
            idle_timeout: None,
            kill_grace: Duration::from_secs(5),
            rate_limit: RateLimitConfig::default(),
            start_interval: Duration::from_secs(1),
            retries: 0,
            commit: CommitMode::Auto,
            env: BTreeMap::new(),
            git_identity: None,
            allowed_commands: Vec::new(),
            allow_unchanged: false,
            resolve_prompt_template: None,
        }
    }
}

/// What happens to uncommitted changes when the agent exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitMode {
    /// Commit them.
    #[default]
    Auto,
    /// Leave them; the instance fails if there are any.
    Off,
}

/// Per-worktree preparation before the agent starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SetupConfig {
    /// Untracked files copied from the main worktree (`.env`).
    pub copy: Vec<String>,
    /// Paths symlinked to the main worktree's (`data/`).
    pub link: Vec<String>,
    /// Run in the worktree before the agent; empty = none.
    pub command: String,
    /// Initialise and check out submodules in each new worktree (default
    /// false: their folders stay empty, as after `git worktree add`).
    pub submodules: bool,
}

/// What to do when an agent changed files it did not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMode {
    #[default]
    Warn,
    Fail,
    Off,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlapConfig {
    /// Paths and globs that never make two specs overlap.
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    pub strategy: Strategy,
    /// Command run on the merged commit before the target moves; empty = none.
    pub gate: String,
    /// Merge finished specs during `run` (else only `treefarm merge`).
    pub auto: bool,
    /// The merge queue: at most this many ready branches merged and gated
    /// together (at least 1; 1 = one at a time).
    pub batch: usize,
    /// Gates run at once, each in its own warm worktree (1 up to the number
    /// of cores); above 1 a failing batch is bisected speculatively.
    pub gate_jobs: usize,
    /// How long one gate run may take: then SIGTERM to its process group,
    /// `agent.kill_grace`, SIGKILL, and the gate counts as failed. `null`:
    /// no limit.
    #[serde(with = "opt_duration")]
    pub gate_timeout: Option<Duration>,
    /// What happens to a branch that conflicts with the target.
    pub on_conflict: OnConflict,
    /// With `on_conflict: agent`, how many times the agent may try (at least 1).
    pub resolve_attempts: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            strategy: Strategy::Merge,
            gate: String::new(),
            auto: true,
            batch: 8,
            gate_jobs: 1,
            gate_timeout: Some(DEFAULT_GATE_TIMEOUT),
            on_conflict: OnConflict::Keep,
            resolve_attempts: 1,
        }
    }
}

/// `merge.gate_timeout` by default: a gate that hangs must not hang the run.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// `merge.on_conflict`: what happens to a branch that conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// It is `conflicted` and kept for a human.
    #[default]
    Keep,
    /// Its agent gets the conflicted merge in its worktree to resolve.
    Agent,
}

/// The most gate jobs `merge.gate_jobs` may ask for: the number of cores.
pub fn max_gate_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Checks `merge.gate_jobs` against the cores; the error is the message.
fn check_gate_jobs(n: usize) -> Result<(), String> {
    let max = max_gate_jobs();
    if n == 0 || n > max {
        return Err(format!("must be between 1 and the number of cores ({max})"));
    }
    Ok(())
}

/// How a finished branch lands on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// A no-fast-forward merge commit.
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl Strategy {
    /// The name in `treefarm.yaml` and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Merge => "merge",
            Strategy::Squash => "squash",
            Strategy::Rebase => "rebase",
        }
    }
}

/// `isolation:` — what confines each agent (see README, Isolation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IsolationConfig {
    pub mode: IsolationMode,
    /// More paths the agent may write (`~/` is the home folder; relative
    /// paths are from the repository root).
    pub allow_write: Vec<String>,
    /// Credential stores the agent may read after all (`~/` is the home
    /// folder; relative paths are from the repository root): each entry
    /// takes a path out of the read denials (see `isolation::DENY_READ`).
    pub allow_read: Vec<String>,
    /// Confine TCP `bind` to the instance's port block; `None`: on where the
    /// kernel can (Landlock ABI 4 or later).
    pub ports: Option<bool>,
}

/// `isolation.mode` (or `isolation: <mode>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    /// Landlock where the kernel supports it, else off (said at run start).
    #[default]
    Auto,
    /// Landlock, or refuse to run.
    Landlock,
    Off,
}

impl IsolationMode {
    /// `auto`, `landlock` or `off` (flags and environment).
    pub fn parse(v: &str) -> Result<IsolationMode, String> {
        match v.trim() {
            "auto" => Ok(IsolationMode::Auto),
            "landlock" => Ok(IsolationMode::Landlock),
            "off" => Ok(IsolationMode::Off),
            other => Err(format!(
                "unknown isolation `{other}`, expected `auto`, `landlock` or `off`"
            )),
        }
    }
}

/// The mapping form of `isolation:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IsolationFields {
    #[serde(default)]
    mode: IsolationMode,
    #[serde(default)]
    allow_write: Vec<String>,
    #[serde(default)]
    allow_read: Vec<String>,
    #[serde(default)]
    ports: Option<bool>,
}

impl<'de> Deserialize<'de> for IsolationConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IsolationConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "`auto`, `landlock`, `off` or a mapping with `mode`, `allow_write`, `allow_read`, `ports`",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IsolationConfig, E> {
                Ok(IsolationConfig {
                    mode: IsolationMode::parse(v).map_err(E::custom)?,
                    ..IsolationConfig::default()
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<IsolationConfig, A::Error> {
                let fields = IsolationFields::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(IsolationConfig {
                    mode: fields.mode,
                    allow_write: fields.allow_write,
                    allow_read: fields.allow_read,
                    ports: fields.ports,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An error in `treefarm.yaml` or a `TREEFARM_*` variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{}` does not exist", path.display())]
    MissingFile { path: PathBuf },

    #[error("failed to read config file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: not valid UTF-8 at byte offset {offset} (line {line})")]
    NotUtf8 {
        file: String,
        offset: usize,
        line: usize,
    },

    #[error("{pos}: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        /// `{file}:{line}:{column}`, precomputed for the message.
        pos: String,
        message: String,
    },

    #[error("{pos}: unknown key `{key}`")]
    UnknownKey {
        file: String,
        line: usize,
        column: usize,
        pos: String,
        /// Dotted path: `agnet` or `agent.modle`.
        key: String,
        /// The keys allowed where it was found.
        known: Vec<String>,
    },

    #[error("{file}:{line}: `{key}` {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },

    /// A section whose own validation names the key (`slurm:`).
    #[error("{file}:{line}: {message}")]
    Section {
        file: String,
        line: usize,
        message: String,
        hint: Option<String>,
    },

    #[error("invalid value `{value}` in environment variable {var}: {message}")]
    BadEnv {
        var: String,
        value: String,
        message: String,
    },
}

impl ConfigError {
    /// What to do about it, when that is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::MissingFile { .. } => {
                Some("check the `--config` path, or run `treefarm init` to write one".into())
            }
            ConfigError::NotUtf8 { .. } => Some("save the file as UTF-8".into()),
            ConfigError::UnknownKey { known, .. } if !known.is_empty() => {
                Some(format!("known keys here are {}", known.join(", ")))
            }
            ConfigError::BadEnv { var, .. } => Some(format!("fix or unset {var}")),
            ConfigError::Section { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

impl From<ConfigError> for InputError {
    fn from(err: ConfigError) -> Self {
        let mut message = err.to_string();
        if let Some(source) = std::error::Error::source(&err) {
            message = format!("{message}: {source}");
        }
        let input = InputError::new(message);
        match err.hint() {
            Some(hint) => input.with_hint(hint),
            None => input,
        }
    }
}

pub(crate) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration in YAML: a humantime string or a number of seconds.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a duration such as `30m`, `1h 5m`, `500ms` or a number of seconds")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("negative duration `{v}`")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(|_| E::custom(format!("invalid duration `{v}`")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}

mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

mod opt_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    struct OptVisitor;

    impl<'de> serde::de::Visitor<'de> for OptVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            DurationVisitor.expecting(f)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(DurationVisitor).map(Some)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            DurationVisitor.visit_u64(v).map(Some)
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            DurationVisitor.visit_i64(v).map(Some)
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            DurationVisitor.visit_f64(v).map(Some)
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            DurationVisitor.visit_str(v).map(Some)
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(OptVisitor)
    }
}

/// File line (1-based) of the first line whose key is `key` at any depth;
/// used to locate values serde accepted but treefarm rejects.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map_or(1, |i| i + 1)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `--max-cost`: an amount of US dollars (`5`, `2.50`, `$2.50`).
pub fn parse_cost(v: &str) -> Result<f64, String> {
    let cost: f64 =
        v.trim().trim_start_matches('$').parse().map_err(|_| {
            format!("expected an amount of US dollars, e.g. `5` or `2.50`, not `{v}`")
        })?;
    check_cost(cost)?;
    Ok(cost)
}

/// A budget in dollars must be a finite amount, not negative.
fn check_cost(cost: f64) -> Result<(), String> {
    if cost.is_finite() && cost >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "must be an amount of US dollars of at least 0, not `{cost}`"
        ))
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.trim().is_empty()).then(|| v.to_string())
}

/// An optional string where an empty one means unset.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.as_deref().and_then(non_empty))
}

/// The environment variables that are config, in the order of the docs.
pub const ENV_VARS: &[&str] = &[
    "TREEFARM_SPEC_DIR",
    "TREEFARM_TARGET",
    "TREEFARM_BASE",
    "TREEFARM_INSTANCES",
    "TREEFARM_WORKTREE_DIR",
    "TREEFARM_AGENT_COMMAND",
    "TREEFARM_AGENT_PRESET",
    "TREEFARM_AGENT_MODEL",
    "TREEFARM_AGENT_TIMEOUT",
    "TREEFARM_AGENT_IDLE_TIMEOUT",
    "TREEFARM_AGENT_KILL_GRACE",
    "TREEFARM_AGENT_RETRIES",
    "TREEFARM_AGENT_RATE_LIMIT_PATTERNS",
    "TREEFARM_AGENT_RATE_LIMIT_EXIT_CODES",
    "TREEFARM_AGENT_RATE_LIMIT_MAX_BACKOFF",
    "TREEFARM_AGENT_RATE_LIMIT_MAX_WAITS",
    "TREEFARM_AGENT_START_INTERVAL",
    "TREEFARM_RUN_MAX_COST",
    "TREEFARM_RUN_MAX_TOKENS",
    "TREEFARM_AGENT_COMMIT",
    "TREEFARM_SCOPE",
    "TREEFARM_PORT_BASE",
    "TREEFARM_PORT_STRIDE",
    "TREEFARM_MERGE_STRATEGY",
    "TREEFARM_MERGE_GATE",
    "TREEFARM_MERGE_AUTO",
    "TREEFARM_SETUP_COMMAND",
    "TREEFARM_WORKTREE_SPARSE",
    "TREEFARM_WORKTREE_RESERVE",
    "TREEFARM_ISOLATION",
    "TREEFARM_SPLIT_ROUNDS",
    "TREEFARM_SPLIT_MIN_SPECS",
    "TREEFARM_SPLIT_MAX_SPECS",
    "TREEFARM_AGENT_GIT_IDENTITY",
    "TREEFARM_AGENT_ALLOW_UNCHANGED",
    "TREEFARM_MERGE_BATCH",
    "TREEFARM_MERGE_GATE_JOBS",
    "TREEFARM_MERGE_GATE_TIMEOUT",
    "TREEFARM_MERGE_ON_CONFLICT",
    "TREEFARM_MERGE_RESOLVE_ATTEMPTS",
    "TREEFARM_AGENT_RESOLVE_PROMPT_TEMPLATE",
    "TREEFARM_MCP_ALLOW_IN_AGENT",
    "TREEFARM_EXECUTOR",
];

impl Config {
    /// Loads the config: defaults, then the file, then `env`.
    ///
    /// The file is `explicit` when given (it must exist; a relative path is
    /// taken as is, i.e. from the current directory), else
    /// `<repo_root>/treefarm.yaml` when present. Returns the config and the
    /// file used, if any.
    pub fn load(
        repo_root: &Path,
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let file = match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::MissingFile {
                        path: path.to_path_buf(),
                    });
                }
                Some(path.to_path_buf())
            }
            None => {
                let default = repo_root.join(CONFIG_FILE);
                default.is_file().then_some(default)
            }
        };
        let mut config = match &file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let name = path
                    .strip_prefix(repo_root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| path.display().to_string());
                Config::parse(&name, &bytes)?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok((config, file))
    }

    /// Parses the text of a config file; `file` names it in messages.
    /// Arbitrary bytes never panic. Empty or comment-only text gives the
    /// defaults.
    pub fn parse(file: &str, text: &[u8]) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(text).map_err(|e| ConfigError::NotUtf8 {
            file: file.to_string(),
            offset: e.valid_up_to(),
            line: crate::spec::line_of_offset(text, e.valid_up_to()),
        })?;
        let config: Option<Config> = serde_yaml::from_str(text).map_err(|e| {
            let fault = yaml_fault(&e, 0);
            let pos = position(file, fault.line, fault.column);
            match fault.unknown_field {
                Some((key, expected)) => {
                    // serde_yaml prefixes the path of nested keys: `agent: unknown field`.
                    let prefix = fault
                        .message
                        .split_once("unknown field")
                        .map(|(p, _)| p.trim().trim_end_matches(':').trim())
                        .unwrap_or("");
                    let key = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    let known = expected
                        .split(',')
                        .map(|k| k.trim().trim_start_matches("or ").trim().trim_matches('`'))
                        .flat_map(|k| k.split(" or "))
                        .map(|k| k.trim().trim_matches('`').to_string())
                        .filter(|k| !k.is_empty())
                        .collect();
                    ConfigError::UnknownKey {
                        file: file.to_string(),
                        line: fault.line,
                        column: fault.column,
                        pos,
                        key,
                        known,
                    }
                }
                None => ConfigError::Yaml {
                    file: file.to_string(),
                    line: fault.line,
                    column: fault.column,
                    pos,
                    message: fault.message,
                },
            }
        })?;
        let config = config.unwrap_or_default();
        config.validate(file, text)?;
        Ok(config)
    }

    /// Checks what serde's types do not.
    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            file: file.to_string(),
            line: key_line(text, key.rsplit('.').next().unwrap_or(key)),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.instances == 0 {
            return Err(invalid("instances", "must be at least 1"));
        }
        if let Err(message) = self.agent.rate_limit.rules() {
            return Err(invalid("agent.rate_limit.patterns", &message));
        }
        if let Some(Usd(cost)) = self.run.max_cost {
            if let Err(message) = check_cost(cost) {
                return Err(invalid("run.max_cost", &message));
            }
        }
        if self.split.rounds == 0 {
            return Err(invalid("split.rounds", "must be at least 1"));
        }
        if self.split.min_specs > self.split.max_specs {
            return Err(invalid(
                "split.min_specs",
                "must not exceed `split.max_specs`",
            ));
        }
        if self.spec_dir.as_os_str().is_empty() {
            return Err(invalid("spec_dir", "must not be empty"));
        }
        if self.target.trim().is_empty() {
            return Err(invalid("target", "must not be empty"));
        }
        if self.base.trim().is_empty() {
            return Err(invalid("base", "must not be empty"));
        }
        if let Err(message) = crate::policy::reserve::Reserve::parse(&self.worktree.reserve) {
            return Err(invalid("worktree.reserve", &message));
        }
        if let Some(key) = self.slot_env.keys().find(|k| !valid_env_name(k)) {
            return Err(invalid(
                "slot_env",
                &format!("`{key}` is not a valid environment variable name"),
            ));
        }
        if let Some(identity) = &self.agent.git_identity {
            if crate::agents::parse_identity(identity).is_none() {
                return Err(invalid(
                    "agent.git_identity",
                    "expected `Name <email>`, e.g. `treefarm agent <agent@treefarm>`",
                ));
            }
        }
        if self.merge.batch == 0 {
            return Err(invalid("merge.batch", "must be at least 1"));
        }
        if let Err(message) = check_gate_jobs(self.merge.gate_jobs) {
            return Err(invalid("merge.gate_jobs", &message));
        }
        if self.merge.resolve_attempts == 0 {
            return Err(invalid("merge.resolve_attempts", "must be at least 1"));
        }
        if let Some(template) = &self.agent.resolve_prompt_template {
            if let Err(err) = crate::agents::check_resolve_template(template) {
                return Err(invalid("agent.resolve_prompt_template", &err.message));
            }
        }
        if let Err(err) = self.slurm.validate("slurm") {
            // The message starts with the key at fault: `slurm.extra_args: …`.
            let key = err.message.split_once(':').map_or("slurm", |(k, _)| k);
            return Err(ConfigError::Section {
                file: file.to_string(),
                line: key_line(text, key.rsplit('.').next().unwrap_or(key)),
                message: err.message.clone(),
                hint: err.hint.clone(),
            });
        }
        Ok(())
    }

    /// Applies the `TREEFARM_*` config variables of `env`; other variables are
    /// ignored. An empty value clears an optional setting.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (var, value) in env {
            if !ENV_VARS.contains(&var.as_str()) {
                continue;
            }
            self.apply_one(&var, &value)
                .map_err(|message| ConfigError::BadEnv {
                    var: var.clone(),
                    value: value.clone(),
                    message,
                })?;
        }
        Ok(())
    }

    fn apply_one(&mut self, var: &str, v: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
            v.trim()
                .parse::<T>()
                .map_err(|_| format!("expected {what}"))
        }
        fn required(v: &str) -> Result<String, String> {
            non_empty(v).ok_or_else(|| "must not be empty".to_string())
        }
        fn opt_duration(v: &str) -> Result<Option<Duration>, String> {
            if v.trim().is_empty() {
                Ok(None)
            } else {
                parse_duration(v).map(Some)
            }
        }
        match var {
            "TREEFARM_SPEC_DIR" => self.spec_dir = PathBuf::from(required(v)?),
            "TREEFARM_TARGET" => self.target = required(v)?,
            "TREEFARM_BASE" => self.base = required(v)?,
            "TREEFARM_INSTANCES" => {
                let n: usize = num(v, "a whole number of at least 1")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.instances = n;
            }
            "TREEFARM_WORKTREE_DIR" => self.worktree_dir = non_empty(v).map(PathBuf::from),
            "TREEFARM_AGENT_COMMAND" => self.agent.command = non_empty(v),
            "TREEFARM_AGENT_PRESET" => self.agent.preset = non_empty(v),
            "TREEFARM_AGENT_MODEL" => self.agent.model = non_empty(v),
            "TREEFARM_AGENT_TIMEOUT" => self.agent.timeout = opt_duration(v)?,
            "TREEFARM_AGENT_IDLE_TIMEOUT" => self.agent.idle_timeout = opt_duration(v)?,
            "TREEFARM_AGENT_KILL_GRACE" => self.agent.kill_grace = parse_duration(v)?,
            "TREEFARM_AGENT_RETRIES" => self.agent.retries = num(v, "a whole number")?,
            // One regular expression per line (a pattern may hold commas).
            "TREEFARM_AGENT_RATE_LIMIT_PATTERNS" => {
                let patterns: Vec<String> = v
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                crate::agents::RateLimitRules::new(&patterns, &[])?;
                self.agent.rate_limit.patterns = patterns;
            }
            "TREEFARM_AGENT_RATE_LIMIT_EXIT_CODES" => {
                self.agent.rate_limit.exit_codes = v
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| num(c, "exit codes separated by commas, e.g. `75,76`"))
                    .collect::<Result<_, _>>()?;
            }
            "TREEFARM_AGENT_RATE_LIMIT_MAX_BACKOFF" => {
                self.agent.rate_limit.max_backoff = parse_duration(v)?
            }
            "TREEFARM_AGENT_RATE_LIMIT_MAX_WAITS" => {
                self.agent.rate_limit.max_waits = num(v, "a whole number")?
            }
            "TREEFARM_AGENT_START_INTERVAL" => self.agent.start_interval = parse_duration(v)?,
            "TREEFARM_RUN_MAX_COST" => {
                self.run.max_cost = match non_empty(v) {
                    None => None,
                    Some(v) => {
                        let cost: f64 = num(
                            v.trim().trim_start_matches('$'),
                            "an amount of US dollars, e.g. `5` or `2.50`",
                        )?;
                        check_cost(cost)?;
                        Some(Usd(cost))
                    }
                }
            }
            "TREEFARM_SPLIT_ROUNDS" => {
                self.split.rounds = num(v, "a whole number of at least 1")?;
                if self.split.rounds == 0 {
                    return Err("must be at least 1".into());
                }
            }
            "TREEFARM_SPLIT_MIN_SPECS" => self.split.min_specs = num(v, "a whole number")?,
            "TREEFARM_SPLIT_MAX_SPECS" => self.split.max_specs = num(v, "a whole number")?,
            "TREEFARM_RUN_MAX_TOKENS" => {
                self.run.max_tokens = match non_empty(v) {
                    None => None,
                    Some(v) => Some(num(&v, "a whole number of tokens")?),
                }
            }
            "TREEFARM_AGENT_COMMIT" => {
                self.agent.commit = match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => CommitMode::Auto,
                    "off" => CommitMode::Off,
                    _ => return Err("expected `auto` or `off`".into()),
                }
            }
            "TREEFARM_SCOPE" => {
                self.scope = match v.trim().to_ascii_lowercase().as_str() {
                    "warn" => ScopeMode::Warn,
                    "fail" => ScopeMode::Fail,
                    "off" => ScopeMode::Off,
                    _ => return Err("expected `warn`, `fail` or `off`".into()),
                }
            }
            "TREEFARM_PORT_BASE" => self.port_base = num(v, "a port number (0-65535)")?,
            "TREEFARM_PORT_STRIDE" => self.port_stride = num(v, "a number (0-65535)")?,
            "TREEFARM_MERGE_STRATEGY" => {
                self.merge.strategy = match v.trim().to_ascii_lowercase().as_str() {
                    "merge" => Strategy::Merge,
                    "squash" => Strategy::Squash,
                    "rebase" => Strategy::Rebase,
                    _ => return Err("expected `merge`, `squash` or `rebase`".into()),
                }
            }
            "TREEFARM_MERGE_GATE" => self.merge.gate = v.to_string(),
            "TREEFARM_EXECUTOR" => self.executor = ExecutorKind::parse(v)?,
            "TREEFARM_MCP_ALLOW_IN_AGENT" => {
                self.mcp.allow_in_agent =
                    parse_bool(v).ok_or_else(|| "expected `true` or `false`".to_string())?
            }
            "TREEFARM_MERGE_AUTO" => {
                self.merge.auto =
                    parse_bool(v).ok_or_else(|| "expected `true` or `false`".to_string())?
            }
            "TREEFARM_SETUP_COMMAND" => self.setup.command = v.to_string(),
            "TREEFARM_WORKTREE_SPARSE" => {
                self.worktree.sparse = match v.trim().to_ascii_lowercase().as_str() {
                    "off" | "" => SparseMode::Word(SparseWord::Off),
                    "auto" => SparseMode::Word(SparseWord::Auto),
                    _ => SparseMode::List(
                        v.split(',')
                            .map(|g| g.trim().to_string())
                            .filter(|g| !g.is_empty())
                            .collect(),
                    ),
                }
            }
            "TREEFARM_WORKTREE_RESERVE" => {
                crate::policy::reserve::Reserve::parse(v)?;
                self.worktree.reserve = v.trim().to_string();
            }
            "TREEFARM_ISOLATION" => self.isolation.mode = IsolationMode::parse(v)?,
            "TREEFARM_AGENT_GIT_IDENTITY" => {
                self.agent.git_identity = non_empty(v);
                if let Some(identity) = &self.agent.git_identity {
                    if crate::agents::parse_identity(identity).is_none() {
                        return Err("expected `Name <email>`".into());
                    }
                }
            }
            "TREEFARM_AGENT_ALLOW_UNCHANGED" => {
                self.agent.allow_unchanged =
                    parse_bool(v).ok_or_else(|| "expected `true` or `false`".to_string())?
            }
            "TREEFARM_MERGE_BATCH" => {
                let n: usize = num(v, "a whole number of at least 1")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.merge.batch = n;
            }
            "TREEFARM_MERGE_GATE_JOBS" => {
                let n: usize = num(v, "a whole number of at least 1")?;
                check_gate_jobs(n)?;
                self.merge.gate_jobs = n;
            }
            "TREEFARM_MERGE_GATE_TIMEOUT" => self.merge.gate_timeout = opt_duration(v)?,
            "TREEFARM_MERGE_ON_CONFLICT" => {
                self.merge.on_conflict = match v.trim().to_ascii_lowercase().as_str() {
                    "keep" => OnConflict::Keep,
                    "agent" => OnConflict::Agent,
                    _ => return Err("expected `keep` or `agent`".into()),
                }
            }
            "TREEFARM_MERGE_RESOLVE_ATTEMPTS" => {
                let n: u32 = num(v, "a whole number of at least 1")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.merge.resolve_attempts = n;
            }
            "TREEFARM_AGENT_RESOLVE_PROMPT_TEMPLATE" => {
                if let Some(template) = non_empty(v) {
                    crate::agents::check_resolve_template(&template).map_err(|e| e.message)?;
                }
                self.agent.resolve_prompt_template = non_empty(v);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The commented `treefarm.yaml` that `treefarm init` writes: every key, with
/// the example values of the design. With a preset, `agent.preset` replaces
/// `agent.command`.
pub fn default_config_yaml(agent_preset: Option<&str>) -> String {
    let agent_line = match agent_preset {
        Some(preset) => format!(
            "  # A bundled wrapper for a known agent CLI: claude-code, codex, aider, gemini.\n  \
             preset: {preset}\n  \
             # Or any shell command instead (placeholders {{id}} {{spec}} {{worktree}} {{branch}} {{target}}):\n  \
             # command: ./my-agent.sh {{spec}} {{worktree}}\n"
        ),
        None => "  # Run with `sh -c` in each worktree. Placeholders: {id} {spec} {worktree} {branch} {target}.\n  \
                 # Or use a bundled wrapper instead: preset: claude-code | codex | aider | gemini\n  \
                 command: claude -p \"$(cat {spec})\" --dangerously-skip-permissions\n"
            .to_string(),
    };
    format!(
        r#"# treefarm.yaml — every key is optional; flags override TREEFARM_* variables,
# which override this file (e.g. TREEFARM_INSTANCES=4, TREEFARM_AGENT_TIMEOUT=1h).

# Where the specs live (SPEC-<id>-<slug>.md, or *.yaml), relative to the repository.
spec_dir: specs
# Integration branch finished specs are merged into; created from `base` if missing.
target: roadmap
base: HEAD
# How many agents run side by side.
instances: 3
# Where worktrees go; default: ../<repo-name>.treefarm beside the repository.
# worktree_dir: ../myrepo.treefarm

agent:
{agent_line}  # model: ""            # passed to presets that take a model
  # extra_args: []       # appended to the preset's command line
  # Durations: 30m, 1h 5m, 500ms, or a number of seconds.
  timeout: 30m           # SIGTERM to the agent's process group, then SIGKILL
  idle_timeout: 10m      # no output and no status update for this long = timeout
  kill_grace: 5s         # between SIGTERM and SIGKILL
  retries: 0             # reruns in the same worktree after a failure
  commit: auto           # auto: commit what the agent left; off: leftovers fail the instance
  env: {{}}                # extra environment for the agent
  # git_identity: "Name <email>"  # who agents commit as; default: your git identity
  # allowed_commands: []  # e.g. [cargo test]: allowed besides git add/commit where a CLI needs a list
  # allow_unchanged: false  # true: exiting 0 with no commit and no change is a success

# Per worktree, before the agent starts: copy untracked files (e.g. [.env]),
# symlink shared folders (e.g. [data]), run a command (its failure fails the instance).
setup: {{ copy: [], link: [], command: "" }}

# Files changed but not declared by the spec: warn | fail | off.
scope: warn

# TREEFARM_PORT for slot n is port_base + n * port_stride.
port_base: 20000
port_stride: 10

# Paths that never make two specs overlap.
overlap: {{ ignore: [Cargo.lock] }}

# strategy: merge (no-ff merge commit) | squash | rebase.
# gate: a command run on the merged commit before the target moves (e.g. cargo test).
# auto: merge during `run`; false leaves it to `treefarm merge`.
merge: {{ strategy: merge, gate: "", auto: true }}
# Merge queue: batch: ready branches merged and gated together, bisected on failure
# (1 = one at a time); gate_jobs: gates at once, up to the number of cores;
# on_conflict: keep | agent (the agent resolves the conflicted merge itself,
# up to resolve_attempts times, prompted by agent.resolve_prompt_template).
# gate_timeout: one gate run's limit (SIGTERM, agent.kill_grace, SIGKILL; null: none).
# merge: {{ batch: 8, gate_jobs: 1, gate_timeout: 1h, on_conflict: keep, resolve_attempts: 1 }}

# Specs: extra labels that declare files (e.g. ["Touches", "Scope"]) or only
# refer to them; include/exclude are globs on names inside spec_dir.
# spec: {{ markers: [], reference_markers: [], include: [], exclude: [] }}
# Worktree shape and disk budget. sparse: off (whole tree), auto (the directories
# of each spec's declared files plus sparse_include), or a list of globs. The run
# refuses to start when the worktrees would not fit in the free space minus reserve.
worktree: {{ sparse: off, sparse_include: [], reserve: "5%" }}

# Per-slot environment; {{slot}}, {{cache}} (a cache folder for this repository that
# outlives worktrees) and {{repo}}. E.g. CARGO_TARGET_DIR: "{{cache}}/slot-{{slot}}/target"
slot_env: {{}}

# Where the agents run: local (child processes here) | slurm (one batch job per
# attempt running `treefarm agent-exec`; worktree_dir must be on storage the
# nodes share, at the same path, and treefarm of this version at this path or at
# slurm.treefarm — both checked before the run starts; gates: true runs the
# merge-queue gates as jobs too).
# executor: local
# slurm: {{ partition: debug, cpus: 2, mem: 4G, time: 2h, extra_args: [], requeue: false, poll: 5s, exit_grace: 30s, gates: false }}
"#
    )
}

/// The example spec `treefarm init` writes.
const EXAMPLE_SPEC: &str = r#"---
title: Example — add a greeting to the README
priority: 1
files:
  - README.md
---
# Example — add a greeting to the README

One spec is one unit of work for one agent, in its own worktree and branch.
Declare every file the agent may touch: in the front matter above (`files:`),
or with markers in the body such as

**Files**:
- `README.md`

Paths mentioned anywhere else (like `src/main.rs` in this sentence) are not
declarations. Globs work (`src/http/**`), and a trailing `/` means the whole
folder. Other fields: `id`, `priority`, `depends_on: [SPEC-002]`,
`shared: [Cargo.lock]`.

## Instructions

Add a line "Hello from treefarm" at the end of README.md and commit.
"#;

/// Writes `treefarm.yaml` and `specs/SPEC-001-example.md` under `repo_root`,
/// never overwriting: each path comes back with `true` when created, `false`
/// when it already existed and was left alone.
pub fn init(
    repo_root: &Path,
    agent_preset: Option<&str>,
) -> Result<Vec<(PathBuf, bool)>, ConfigError> {
    let files = [
        (
            repo_root.join(CONFIG_FILE),
            default_config_yaml(agent_preset),
        ),
        (
            repo_root.join("specs").join("SPEC-001-example.md"),
            EXAMPLE_SPEC.to_string(),
        ),
    ];
    let mut out = Vec::new();
    for (path, contents) in files {
        let created = write_new(&path, &contents)?;
        out.push((path, created));
    }
    Ok(out)
}

/// Creates `path` with `contents` unless it exists; `Ok(false)` when it did.
fn write_new(path: &Path, contents: &str) -> Result<bool, ConfigError> {
    use std::io::Write;
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    file.write_all(contents.as_bytes()).map_err(err)?;
    Ok(true)
}

/// Whether `name` can be an environment variable name (a `slot_env` key).
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_start_with_a_letter_or_underscore() {
        assert!(valid_env_name("_A1") && !valid_env_name("1A") && !valid_env_name("A-B"));
    }
}
