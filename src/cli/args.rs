//! The command line, declared with clap's derive API.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the run finished but some instance failed, timed out, conflicted,
       was refused by the gate or was skipped
  2    bad input (usage, config, spec, repository state); nothing was created
  3    `check` found overlapping specs
  101  internal error

Environment: TREEFARM_LOG sets the diagnostics filter (e.g. `debug`);
config keys can be set as TREEFARM_<KEY_PATH> (TREEFARM_INSTANCES,
TREEFARM_AGENT_COMMAND, TREEFARM_MERGE_STRATEGY, ...); NO_COLOR disables colour.";

/// Run several coding agents on one repository, one git worktree each, and
/// merge their work into an integration branch.
#[derive(Debug, Parser)]
#[command(name = "treefarm", version, about, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Config file (default: treefarm.yaml at the repository root).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write treefarm.yaml and an example spec (never overwrites).
    Init {
        /// Agent preset: claude-code (default), codex, aider or gemini.
        #[arg(long, value_name = "PRESET")]
        agent: Option<String>,
    },
    /// Parse specs and report overlapping ones (exit 2 when a checked spec
    /// is invalid, else 3 when any overlap, else 0).
    Check {
        /// Specs by id (20, 020 and SPEC-020 are the same), file path or file
        /// stem; none = every spec.
        ids: Vec<String>,
        /// JSON on stdout (same as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format: a table on stderr, or JSON, Graphviz DOT or
        /// Mermaid of the overlap graph on stdout.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
        /// Warnings count as errors (exit 2).
        #[arg(long)]
        strict: bool,
        /// Show how one spec was read: each declared path with its line and
        /// marker, and every mentioned path that did not count, and why.
        #[arg(long, value_name = "SPEC")]
        explain: Option<String>,
    },
    /// Show what `run` would do: waves, branches, worktrees. Creates nothing.
    Plan {
        /// Spec ids (20, 020 and SPEC-020 are the same); none = every spec.
        ids: Vec<String>,
        /// Agents running at once (default: config `instances`, 3).
        #[arg(long, value_name = "N")]
        instances: Option<usize>,
        /// JSON on stdout (same as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format: a table on stderr, or JSON, Graphviz DOT or
        /// Mermaid of the waves and the overlap graph on stdout.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
    },
    /// Plant worktrees, run the agent in each, merge and prune.
    Run(RunCommand),
    /// Have an agent split one request into specs, judged by `check`; exit
    /// codes as `check` (0 independent, 3 overlaps, 2 still invalid), 1 the
    /// agent failed.
    Split(SplitArgs),
    /// Show a run's state (default: the latest run), from any terminal.
    Status {
        /// The run to show (default: the latest).
        run_id: Option<String>,
        /// The run's state as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Refresh until the run is over.
        #[arg(long)]
        watch: bool,
    },
    /// Merge the succeeded branches of a run into the target.
    Merge {
        /// The run whose branches to merge (default: the latest).
        run_id: Option<String>,
        /// Integration branch to merge into (default: the run's target).
        #[arg(long, value_name = "BRANCH")]
        target: Option<String>,
        /// Command that must pass on the merged commit before the target moves.
        #[arg(long, value_name = "CMD")]
        gate: Option<String>,
        /// JSON Lines events on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove merged worktrees and branches and stale worktree entries.
    Prune {
        /// Show what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also consider worktrees and branches of every run, not only the latest.
        #[arg(long)]
        all: bool,
        /// Also remove unmerged or dirty ones (their tips are archived first).
        #[arg(long)]
        force: bool,
    },
    /// Continue an interrupted run (default: the latest unfinished one).
    Resume {
        /// The run to continue (default: the latest unfinished one).
        run_id: Option<String>,
        /// JSON Lines events on stdout.
        #[arg(long)]
        json: bool,
        /// Confine the agents: auto, landlock or off (default: as the run
        /// was started, or TREEFARM_ISOLATION).
        #[arg(long, value_name = "MODE", value_parser = crate::config::IsolationMode::parse)]
        isolation: Option<crate::config::IsolationMode>,
        /// The budget from here on, in US dollars spent by the run's agents
        /// over all its resumes (default: config `run.max_cost`).
        #[arg(long, value_name = "USD", value_parser = crate::config::parse_cost)]
        max_cost: Option<f64>,
        /// The budget from here on, in tokens used by the run's agents over
        /// all its resumes (default: config `run.max_tokens`).
        #[arg(long, value_name = "N")]
        max_tokens: Option<u64>,
    },
    /// The whole cycle on a throwaway repository with the bundled scripted agent.
    Demo {
        /// Keep the throwaway repository and print its path.
        #[arg(long)]
        keep: bool,
        /// Keep the deliberate conflict intact for a person
        /// (`merge.on_conflict: keep`) instead of handing it back to the agent.
        #[arg(long)]
        keep_conflict: bool,
    },
    /// Write a run's HTML report: timeline, overlap graph, per-spec details.
    Report {
        /// The run to report on (default: the latest).
        run_id: Option<String>,
        /// Where to write it (default: summary.html in the run's directory).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Open the report in the default browser afterwards.
        #[arg(long)]
        open: bool,
    },
    /// Serve the Model Context Protocol on stdio, so an agent can check,
    /// run, follow, merge and prune with tool calls.
    Mcp {
        /// Print the configuration a client CLI needs to start this server
        /// and call its tools without a prompt, then exit.
        #[arg(long, value_enum, value_name = "CLIENT")]
        print_config: Option<crate::mcp::Client>,
    },
    /// The entry point of a Slurm job (internal): run the agent of a job
    /// file as the local executor would, sandbox applied here.
    #[command(hide = true)]
    AgentExec {
        /// The attempt's job file, written by the coordinator.
        #[arg(long, value_name = "FILE")]
        job: PathBuf,
    },
    /// Print a shell completion script (e.g. `treefarm completions bash`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff), or write every page into a folder.
    Man {
        /// Write treefarm.1 and treefarm-<command>.1 into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What `check` and `plan` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people, on stderr.
    Text,
    /// The JSON of DESIGN.md, on stdout.
    Json,
    /// Graphviz DOT, on stdout (pipe into `dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart, on stdout (renders in GitHub Markdown).
    Mermaid,
}

/// Shells `treefarm completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

/// `run`: its arguments, or a request to split first.
#[derive(Debug, Clone, Args)]
pub struct RunCommand {
    #[command(flatten)]
    pub args: RunArgs,
    /// Split the request in FILE into specs first (as `treefarm split --from
    /// FILE --write`), then run the new specs when the split is valid.
    #[arg(long, value_name = "FILE", conflicts_with = "ids")]
    pub from: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Spec ids (20, 020 and SPEC-020 are the same); none = every spec.
    pub ids: Vec<String>,

    /// Agents running at once (default: config `instances`, 3).
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    /// Agent command, run with `sh -c` in each worktree; placeholders {id}
    /// {spec} {worktree} {branch} {target}.
    #[arg(long, value_name = "CMD")]
    pub agent: Option<String>,
    /// Integration branch (default `roadmap`).
    #[arg(long, value_name = "BRANCH")]
    pub target: Option<String>,
    /// Where the target is created from when it does not exist (default HEAD).
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Per-attempt time limit, e.g. 30m, 90s.
    #[arg(long, value_name = "DUR", value_parser = crate::config::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Reruns of a failed agent in the same worktree.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Leave succeeded branches unmerged (merge later with `treefarm merge`).
    #[arg(long)]
    pub no_merge: bool,
    /// Keep merged worktrees and branches.
    #[arg(long)]
    pub keep: bool,
    /// Command that must pass on each merged commit before the target moves.
    #[arg(long, value_name = "CMD")]
    pub gate: Option<String>,
    /// JSON Lines events on stdout.
    #[arg(long)]
    pub json: bool,
    /// Confine the agents: auto (Landlock where the kernel has it), landlock
    /// (or refuse to run) or off (default: config `isolation`, auto).
    #[arg(long, value_name = "MODE", value_parser = crate::config::IsolationMode::parse)]
    pub isolation: Option<crate::config::IsolationMode>,
    /// Where the agents run: local or slurm (default: config `executor`,
    /// local); with slurm, config `slurm.gates: true` runs the merge-queue
    /// gates as jobs too.
    #[arg(long, value_name = "KIND", value_parser = crate::config::ExecutorKind::parse)]
    pub executor: Option<crate::config::ExecutorKind>,
    /// Stop starting agents once the run's agents cost this many US dollars
    /// (default: config `run.max_cost`).
    #[arg(long, value_name = "USD", value_parser = crate::config::parse_cost)]
    pub max_cost: Option<f64>,
    /// Stop starting agents once the run's agents used this many tokens
    /// (default: config `run.max_tokens`).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    /// The request to split (or `--from FILE`).
    #[arg(value_name = "REQUEST", required_unless_present = "from")]
    pub request: Option<String>,
    /// Read the request from FILE (`-`: stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "request")]
    pub from: Option<PathBuf>,
    /// Agent command, run with `sh -c` in the throwaway worktree (default:
    /// config `agent.command` or `agent.preset`).
    #[arg(long, value_name = "CMD", conflicts_with = "preset")]
    pub agent: Option<String>,
    /// A bundled agent: claude-code, codex, aider or gemini.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Rounds of drafting and judging at most (default: config
    /// `split.rounds`, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Fewest specs wanted (default: config `split.min_specs`, 1).
    #[arg(long, value_name = "N")]
    pub min_specs: Option<usize>,
    /// Most specs wanted (default: config `split.max_specs`, 20).
    #[arg(long, value_name = "N")]
    pub max_specs: Option<usize>,
    /// Add the specs to the spec folder (never overwriting); without it,
    /// only show them and where the drafts are kept.
    #[arg(long)]
    pub write: bool,
    /// Write the specs, then run them (`treefarm run` on the new ids).
    #[arg(long)]
    pub run: bool,
    /// The result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Confine the agent: auto, landlock or off (default: config `isolation`).
    #[arg(long, value_name = "MODE", value_parser = crate::config::IsolationMode::parse)]
    pub isolation: Option<crate::config::IsolationMode>,
}
