//! treefarm — a git-worktree isolation coordinator.
//!
//! Arrows point down (DESIGN.md, "Source layout"; `tests/integration/house.rs`
//! keeps them so). From the bottom: the leaves `error`, `hooks`, `procfs`,
//! `disk` → `spec`, `agents` (what users write, what agents report) →
//! `policy`, `merge_queue`, `overlap`, `schedule` (pure decisions as data) →
//! `config`, `isolation` → `git` (the only module that touches git2) →
//! `state` (journal, lock), `merge` → `report` (human and JSON output) →
//! `slurm` (the second executor's vocabulary) → `runner` (the only async
//! code) → `split`, `cli` (clap and the commands) and `mcp` (the same
//! commands as Model Context Protocol tools).

pub mod agents;
pub mod cli;
pub mod config;
pub mod disk;
pub mod duration;
pub mod error;
pub mod git;
pub mod hooks;
pub mod isolation;
pub mod mcp;
pub mod merge;
pub mod merge_queue;
pub mod overlap;
pub mod policy;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod slurm;
pub mod spec;
pub mod split;
pub mod state;

pub use error::{exit_code_for, ExitCode, InputError};
