//! The MCP tools: their names, descriptions, annotations and the typed
//! arguments and results whose JSON Schemas (schemars) the tool list carries.
//!
//! Every result is a small JSON object: figures, states, ids and paths —
//! never a log or the HTML report itself. Outcomes of the domain (overlaps,
//! an invalid spec, a lock held by another run, a refusal by the recursion
//! guard) are fields of these results, never protocol errors.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The default bound of one `run_wait` call, in seconds.
pub(crate) const DEFAULT_WAIT_SECS: u64 = 45;
/// The longest `run_wait` call allowed, in seconds: clients time tool calls
/// out, and the model can always call again with the cursor.
pub(crate) const MAX_WAIT_SECS: u64 = 300;

// --- arguments ---------------------------------------------------------------

/// `check`: the overlap report of the specs.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckArgs {
    /// Specs by id (20, 020 and SPEC-020 are the same), path or file stem;
    /// empty = every spec.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Explain how this one spec was read instead (each declared path with
    /// its line and marker, and the mentioned paths that did not count).
    #[serde(default)]
    pub explain: Option<String>,
    /// Warnings count as errors.
    #[serde(default)]
    pub strict: bool,
}

/// `plan`: what a run would do; creates nothing.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanArgs {
    /// Spec ids; empty = every spec.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Agents running at once (default: config `instances`).
    #[serde(default)]
    pub instances: Option<usize>,
}

/// `run_start`: the options of `treefarm run`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunStartArgs {
    /// Spec ids; empty = every spec.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Agents running at once (default: config `instances`).
    #[serde(default)]
    pub instances: Option<usize>,
    /// Agent command run with `sh -c` in each worktree (default: config).
    #[serde(default)]
    pub agent: Option<String>,
    /// Integration branch (default: config `target`, `roadmap`).
    #[serde(default)]
    pub target: Option<String>,
    /// Where the target is created from when it does not exist.
    #[serde(default)]
    pub base: Option<String>,
    /// Per-attempt time limit, e.g. `30m`, `90s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Reruns of a failed agent in the same worktree.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Leave succeeded branches unmerged (merge later with the `merge` tool).
    #[serde(default)]
    pub no_merge: bool,
    /// Keep merged worktrees and branches.
    #[serde(default)]
    pub keep: bool,
    /// Command that must pass on each merged commit before the target moves.
    #[serde(default)]
    pub gate: Option<String>,
    /// Confine the agents: `auto`, `landlock` or `off`.
    #[serde(default)]
    pub isolation: Option<String>,
    /// Stop starting agents once they cost this many US dollars.
    #[serde(default)]
    pub max_cost: Option<f64>,
    /// Stop starting agents once they used this many tokens.
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// `run_wait`: follow a run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunWaitArgs {
    /// The run to follow.
    pub run_id: String,
    /// The `cursor` of the previous `run_wait` result (default 0: from the
    /// first event).
    #[serde(default)]
    pub cursor: u64,
    /// Return after at most this many seconds even while the run goes on
    /// (default 45, at most 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// Tools that name one run, or the latest.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunIdArgs {
    /// The run (default: the latest).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// `run_cancel`: stop a run, resumably.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunCancelArgs {
    /// The run to stop.
    pub run_id: String,
}

/// `resume`: continue an interrupted run.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeArgs {
    /// The run to continue (default: the latest unfinished one).
    #[serde(default)]
    pub run_id: Option<String>,
    /// Confine the agents: `auto`, `landlock` or `off` (default: as started).
    #[serde(default)]
    pub isolation: Option<String>,
    /// The budget from here on, in US dollars over all the run's resumes.
    #[serde(default)]
    pub max_cost: Option<f64>,
    /// The budget from here on, in tokens over all the run's resumes.
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// `merge`: merge a run's succeeded branches.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeArgs {
    /// The run whose branches to merge (default: the latest).
    #[serde(default)]
    pub run_id: Option<String>,
    /// Integration branch to merge into (default: the run's target).
    #[serde(default)]
    pub target: Option<String>,
    /// Command that must pass on the merged commit before the target moves.
    #[serde(default)]
    pub gate: Option<String>,
}

/// `prune`: remove what was merged.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PruneArgs {
    /// Only say what would be removed.
    #[serde(default)]
    pub dry_run: bool,
    /// Consider every run's worktrees and branches, not only the latest run's.
    #[serde(default)]
    pub all: bool,
    /// Also remove unmerged or dirty ones (their tips are archived first).
    #[serde(default)]
    pub force: bool,
}

/// `check_drafts`: one draft, as an agent writes it into the split's
/// scratch folder.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DraftInput {
    /// Its file name, `SPEC-<name>-<slug>.md` (`<name>` one word, unique
    /// among the drafts; other drafts name it in `depends_on`).
    pub name: String,
    /// Its Markdown in treefarm's spec format: front matter with `title`,
    /// `files`, `creates` (the paths among `files` that do not exist yet),
    /// optional `depends_on` and `shared`; the body is the worker's brief.
    pub text: String,
}

/// `check_drafts`: judge drafts as `treefarm split` judges a round.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckDraftsArgs {
    /// The drafts of the split.
    pub drafts: Vec<DraftInput>,
    /// The fewest specs the split may have (default: config `split.min_specs`).
    #[serde(default)]
    pub min_specs: Option<usize>,
    /// The most specs the split may have (default: config `split.max_specs`).
    #[serde(default)]
    pub max_specs: Option<usize>,
}

// --- results -----------------------------------------------------------------

/// Why a tool that starts, merges or prunes runs was not allowed here.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct Refusal {
    /// What happened and why.
    pub reason: String,
    /// The config key that allows it.
    pub config_key: String,
}

/// The live coordinator that holds the repository's lock.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct LockHeld {
    pub run_id: String,
    pub pid: u32,
}

/// The result of a command the server ran in-process (`check`, `plan`,
/// `status`, `prune`).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CommandResult {
    /// The command's exit code (0 success, 2 bad input, 3 overlaps found).
    pub exit_code: u8,
    /// What the exit code means here, in a few words.
    pub outcome: String,
    /// The error or the command's own lines for people, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command's `--json` object (DESIGN.md), when it produced one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Set when the recursion guard refused the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// The result of `run_start`, `resume` and `merge`: a detached `treefarm`
/// process that outlives this server.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub(crate) struct StartResult {
    /// True when the process took the run's lock and works on; follow it
    /// with `run_wait`.
    pub started: bool,
    /// The run it works on, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The detached process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its exit code when it already ended (0: nothing left to do; 2: bad
    /// input, see `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The process's stderr (its human output), a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Why it did not start, or the end of its output when it ended at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Another run holds the repository's lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_held_by: Option<LockHeld>,
    /// Set when the recursion guard refused the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// An error or warning of `check_drafts`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DraftFinding {
    /// The draft it is about, by its name as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    /// The file it is about: a draft's name, or an existing spec's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line in that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The id of the spec it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Two specs that may touch the same files: valid, but they run in sequence.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DraftOverlap {
    /// A spec id (a draft's given id, or an existing spec's).
    pub a: String,
    /// The other spec id.
    pub b: String,
    /// The draft behind `a`, by name (none for an existing spec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_draft: Option<String>,
    /// The draft behind `b`, by name (none for an existing spec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_draft: Option<String>,
    pub paths: Vec<String>,
    pub reason: String,
}

/// The result of `check_drafts`: the verdict one round of `treefarm split`
/// would give.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub(crate) struct DraftsResult {
    /// True when the split could be written (exit 0 or 3).
    pub valid: bool,
    /// 0 independent, 3 valid with overlaps that run in sequence, 2 invalid.
    pub exit_code: u8,
    /// What the exit code means here, with the cost ("4 specs, 3 waves").
    pub outcome: String,
    /// "N specs, M waves", when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// The drafts with the ids and file names treefarm would give them.
    pub specs: Vec<crate::cli::split::PlannedSpec>,
    pub errors: Vec<DraftFinding>,
    pub warnings: Vec<DraftFinding>,
    pub overlaps: Vec<DraftOverlap>,
    /// The plan of the drafts (their ids), when valid.
    pub waves: Vec<Vec<String>>,
    /// The `DIAGNOSTICS.md` text `treefarm split` would hand its agent.
    pub diagnostics: String,
    /// Why the drafts could not be judged at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One spec of a run, as `run_wait` shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct InstanceBrief {
    pub id: String,
    /// `pending`, `running`, `succeeded`, `merged`, `failed`, ...
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The agent's own status message, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The result of `run_wait`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WaitResult {
    pub run_id: String,
    /// True while a coordinator (run, resume or merge) works on the run.
    pub active: bool,
    /// `running`, `finished` or `interrupted` (`starting` before the
    /// journal exists, `unknown` for no such run).
    pub state: String,
    /// Every spec's state.
    pub instances: Vec<InstanceBrief>,
    /// The run's events since the cursor (`events.jsonl`; long strings cut).
    pub events: Vec<Value>,
    /// Pass this back as `cursor` to get only newer events.
    pub cursor: u64,
    /// More events wait past the cursor: call again at once.
    pub more_events: bool,
    /// The wait ended at its bound while the run went on.
    pub timed_out: bool,
    /// An error reading the run, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The result of `run_cancel`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CancelResult {
    pub run_id: String,
    /// True when the run's coordinator was sent SIGINT (a first Ctrl-C).
    pub signalled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// True when the coordinator ended within the call; the run is then
    /// `interrupted` and `resume` continues it.
    pub stopped: bool,
    pub message: String,
}

/// One spec in the report's figures.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SpecFigures {
    pub id: String,
    /// `merged`, `failed`, `conflicted`, ...
    pub result: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub commits: usize,
    /// Changed files outside the declared ones.
    pub scope_creep: Vec<String>,
    pub conflict_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of `report`.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub(crate) struct ReportResult {
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The HTML report's path (open it in a browser).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_ms: Option<u64>,
    /// Agent time / wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    pub specs: Vec<SpecFigures>,
}

// --- the list ----------------------------------------------------------------

/// Every tool the server offers, in the order of a run's life.
pub(crate) fn tools() -> Vec<Tool> {
    vec![
        tool::<CheckArgs, CommandResult>(
            "check",
            "Check the specs: which overlap (may touch the same files), and every error \
             or warning. exit_code 0 independent, 3 overlaps, 2 a spec is invalid; \
             `json` is `treefarm check --json`.",
            Kind::ReadOnly,
        ),
        tool::<PlanArgs, CommandResult>(
            "plan",
            "What a run would do: waves of specs run side by side, branches and worktree \
             paths. Creates nothing.",
            Kind::ReadOnly,
        ),
        tool::<CheckDraftsArgs, DraftsResult>(
            "check_drafts",
            "Judge a split's drafts given inline (SPEC-<name>-<slug>.md with creates:) as \
             `treefarm split` judges a round: ids and file names treefarm would give, \
             errors and warnings by draft, overlaps, the plan. exit_code 0 independent, \
             3 overlaps, 2 invalid. Writes nothing.",
            Kind::ReadOnly,
        ),
        tool::<RunStartArgs, StartResult>(
            "run_start",
            "Start `treefarm run` detached (one worktree and agent per spec, then merge) and \
             return its run_id at once; follow it with run_wait. It outlives this server.",
            Kind::Starts,
        ),
        tool::<RunWaitArgs, WaitResult>(
            "run_wait",
            "Wait (default 45 s) for a run to end; returns every spec's state and the run's \
             events since `cursor`. Call again with the returned cursor while `active`.",
            Kind::ReadOnly,
        ),
        tool::<RunIdArgs, CommandResult>(
            "status",
            "A run's state now (default: the latest run): every spec's state, usage, \
             pacing; `json` is `treefarm status --json`.",
            Kind::ReadOnly,
        ),
        tool::<RunCancelArgs, CancelResult>(
            "run_cancel",
            "Stop a run like a first Ctrl-C: agents are stopped, finished work is kept, \
             and the run stays resumable with the resume tool.",
            Kind::Changes,
        ),
        tool::<ResumeArgs, StartResult>(
            "resume",
            "Continue an interrupted run, detached (default: the latest unfinished one); \
             follow it with run_wait.",
            Kind::Starts,
        ),
        tool::<MergeArgs, StartResult>(
            "merge",
            "Merge a run's succeeded branches into its target (e.g. after no_merge or a \
             manual fix), detached; follow it with run_wait.",
            Kind::Starts,
        ),
        tool::<RunIdArgs, ReportResult>(
            "report",
            "Write a run's HTML report and return its figures (wall and agent time, \
             speed-up, each spec's result) and the report's path.",
            Kind::Changes,
        ),
        tool::<PruneArgs, CommandResult>(
            "prune",
            "Remove merged worktrees and branches; unmerged or dirty ones are kept unless \
             force (their tips are archived first).",
            Kind::Destructive,
        ),
    ]
}

/// What a tool does to the repository, for its annotations.
enum Kind {
    ReadOnly,
    /// Writes files treefarm owns (a report, a signal to its own run).
    Changes,
    /// Starts processes that create worktrees, run agents and move branches.
    Starts,
    /// Removes worktrees and branches.
    Destructive,
}

fn tool<A: JsonSchema + 'static, R: JsonSchema + 'static>(
    name: &'static str,
    description: &'static str,
    kind: Kind,
) -> Tool {
    let annotations = match kind {
        Kind::ReadOnly => ToolAnnotations::new().read_only(true),
        Kind::Changes => ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .open_world(false),
        Kind::Starts => ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .open_world(true),
        Kind::Destructive => ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .open_world(false),
    };
    Tool::new(name, description, schema_of::<A>())
        .with_raw_output_schema(schema_of::<R>())
        .with_annotations(annotations)
}

/// The JSON Schema of `T` as the object MCP carries.
fn schema_of<T: JsonSchema>() -> Arc<JsonObject> {
    let schema = schemars::schema_for!(T);
    match serde_json::to_value(schema) {
        Ok(Value::Object(map)) => Arc::new(map),
        // schemars always renders a struct's schema as an object.
        _ => Arc::new(JsonObject::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_input_and_output_schema() {
        for tool in tools() {
            assert_eq!(tool.input_schema.get("type"), Some(&Value::from("object")));
            let out = tool.output_schema.expect("every tool has an output schema");
            assert_eq!(
                out.get("type"),
                Some(&Value::from("object")),
                "{}",
                tool.name
            );
        }
    }
}
