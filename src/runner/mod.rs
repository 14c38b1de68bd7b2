//! The only async code: a dispatcher that owns what the user sees, and one
//! executor per running agent that talks to it over channels.
//!
//! `imp` starts the runtime and drives a run; `dispatch` is the loop (turns
//! what happened into an `Input`, handles it, commits the `journal` once per
//! turn, starts what may start); `machine` holds the run's record,
//! scheduler, slots and queues and is the only writer of instance states;
//! `lane` is the blocking git work (plant, merge, prune); `recover` brings
//! an interrupted run back under control; `messages` holds what the tasks
//! send. `instance` drives one spec from setup to verdict; `executor` runs
//! one agent (process group, log, status file, timeouts); `process` holds
//! the process-group primitives; `status_file` parses the agent's optional
//! status JSON (what a run was asked to do, frozen in its journal, is
//! [`crate::state::RunOptions`]); `disk` the disk budget, `ports` probed port blocks, `slots`
//! per-slot caches.

pub mod dispatch;
pub mod error;
pub mod executor;
pub mod gates;
pub mod imp;
pub mod instance;
pub mod journal;
pub mod lane;
pub mod machine;
pub mod messages;
pub mod ports;
pub mod process;
pub mod recover;
pub mod resolve;
pub mod shared_git;
pub mod slots;
pub mod status_file;

pub use error::RunnerError;
pub use executor::{
    agent_command, kill_group, read_exit_code, run_agent, wait_detached, AgentEnd, AgentEvent,
    AgentJob, SpawnError, Stop,
};
pub use process::set_child_subreaper;
pub use status_file::AgentStatus;
