//! treefarm — a git-worktree isolation coordinator.
//!
//! The module tree follows the pipeline: `spec` (parse, validate) →
//! `overlap` / `schedule` (pure) → `git` (the only module that touches git2) →
//! `runner` (the only async code) → `merge` → `state` (journal, lock) →
//! `report` (human and JSON output) → `cli` (clap and the commands) and `mcp`
//! (the same commands as Model Context Protocol tools).

pub mod agents;
pub mod cli;
pub mod config;
pub mod error;
pub mod git;
pub mod isolation;
pub mod mcp;
pub mod merge;
pub mod merge_queue;
pub mod overlap;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod slurm;
pub mod spec;
pub mod split;
pub mod state;

pub use error::{exit_code_for, ExitCode, InputError};
