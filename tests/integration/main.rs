//! The integration tests, one binary (one link, one process start) with a
//! module per area. `common` holds the helpers every area shares;
//! `support` is the scripted model server of the agent tests, beside
//! `model_server.py` in tests/support/.

mod common;
#[path = "../support/mod.rs"]
mod support;

mod agents_e2e;
mod agents_program;
mod agents_support;
mod agents_usage_limits;
mod agents_wrappers;
mod big_repos;
mod cli_check;
mod cli_graph;
mod cli_help;
mod cli_init;
mod cli_live;
mod cli_plan;
mod cli_report;
mod cli_snapshots;
mod config_load;
mod config_merge_queue;
mod config_pacing;
mod crash_journal;
mod crash_points;
mod demo_agent;
mod fuzz_parsers;
mod gate_paths;
mod git_bench;
mod git_commit;
mod git_merge;
mod git_tree_merge;
mod git_worktrees;
mod isolation_escape;
mod isolation_gates;
mod isolation_resume;
mod layouts;
mod merge_batch;
mod merge_command;
mod merge_gate;
mod merge_queue_e2e;
mod merge_queue_git;
mod merge_strategies;
mod merge_target_checkout;
mod overlap_pairs;
mod overlap_scale;
mod prune_cli;
mod rate_limits_e2e;
mod real_agents;
mod resume_agents;
mod resume_faults;
mod run_agents;
mod run_cycle;
mod run_faults;
mod run_input;
mod run_signals;
mod runner_executor;
mod schedule_waves;
mod spec_corpus;
mod spec_hostile_input;
mod spec_parse;
mod spec_validate;
mod state_crash;
mod state_journal;
mod state_lock;
mod torture;
