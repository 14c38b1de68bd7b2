//! The only async code: a dispatcher that owns what the user sees, and one
//! task per running agent that talks to it over channels. Four rooms and
//! the words they share:
//!
//! - `run/`: the loop and its journal — start a run (`imp`), the `select!`
//!   loop that performs the machine's actions (`dispatch`), group commit
//!   (`journal`), the blocking git lane (`lane`), resume (`recover`).
//! - `machine`: the decisions — a synchronous state machine, the only
//!   writer of instance states, unit-tested without processes or git.
//! - `agent/`: one agent's life — the instance task (`instance`), the
//!   executor seam and its local backend (`executor`, `local`), process
//!   groups (`process`), the status file (`status_file`), the conflict
//!   hand-back (`handback`).
//! - `slot/`: per-slot resources — port blocks (`ports`), warm caches
//!   (`caches`), gate runs in warm gate worktrees (`gates`), the shared git
//!   config guard (`shared_git`), the worktree admin lock (`worktree_admin`).
//! - `messages`: what the loop, the machine and the tasks say to each
//!   other; `error`: what can stop the coordinator.
//!
//! What a run was asked to do, frozen in its journal, is
//! [`crate::state::RunOptions`]; the pacing, budget and disk policies it
//! applies are in [`crate::policy`].

pub(crate) mod agent;
pub(crate) mod error;
pub(crate) mod machine;
pub(crate) mod messages;
pub(crate) mod run;
pub(crate) mod slot;

pub use agent::exec::{agent_exec, write_job_file, ExecError};
pub use agent::executor::{AgentJob, Executor};
pub use agent::local::{
    agent_command, kill_group, read_exit_code, run_agent, wait_detached, Local, SpawnError,
};
pub use agent::process::set_child_subreaper;
pub use error::RunnerError;
pub use messages::{AgentEnd, AgentEvent, AgentStatus, Stop};
