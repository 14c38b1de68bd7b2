//! Enforced isolation of agents: what an agent may write (its worktree, its
//! instance folder, a private `TMPDIR`, tool caches, `isolation.allow_write`),
//! which TCP ports it may bind (its own block), enforced with Landlock on the
//! agent's process and everything it starts; and, after the agent, which of
//! its failures were isolation saying no.
//!
//! The git side — a private git directory so that `git commit` works without
//! write access to the shared `.git` — lives in `git::private_git`.

mod denials;
mod policy;
mod sandbox;

pub use denials::{denial_summary, denied_writes};
pub use policy::{resolve, Active, IsolationError, Policy, PolicyInputs, TOOL_STATE};
pub use sandbox::{kernel_abi, Sandbox, SandboxError};
