//! Enforced isolation of agents: what an agent may write (its worktree, its
//! instance folder, a private `TMPDIR`, tool state, `isolation.allow_write`),
//! what it may not read (other tools' credential stores, less
//! `isolation.allow_read`),
//! which TCP ports it may bind (its own block), enforced with Landlock on the
//! agent's process and everything it starts; and, after the agent, which of
//! its failures were isolation saying no.
//!
//! The git side — a private git directory so that `git commit` works without
//! write access to the shared `.git` — lives in `git::private_git`.

mod denials;
mod policy;
mod sandbox;
mod state;

pub use denials::{denial_summary, denials, Denial};
pub use policy::{
    read_rules, resolve, Active, IsolationError, Listing, Policy, PolicyInputs, ReadRules,
    DENY_READ,
};
pub use sandbox::{kernel_abi, Sandbox, SandboxError};
pub use state::{cli_of, prepare_tool_state, tool_state, ToolState};
