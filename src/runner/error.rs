//! What can stop a run's coordinator: the journal cannot be written, the
//! runtime or a signal handler cannot be set up, recovery cannot put git
//! back in order, or the machine refuses a move (a bug). Each carries the
//! file, branch or instance at fault and its cause.

use std::path::PathBuf;

use thiserror::Error;

use crate::git::GitError;
use crate::runner::machine::MachineError;
use crate::state::StateError;

#[derive(Debug, Error)]
pub enum RunnerError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("failed to append to the event journal")]
    AppendEvents(#[source] StateError),
    #[error("failed to journal the run state")]
    WriteState(#[source] StateError),
    #[error("failed to write summary.json")]
    WriteSummary(#[source] StateError),
    #[error("failed to serialise the {what}")]
    Serialise {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to install the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("failed to commit manual fixes in `{}`", worktree.display())]
    CommitFixes {
        worktree: PathBuf,
        #[source]
        source: GitError,
    },
    #[error("the task committing manual fixes in `{}` did not finish", worktree.display())]
    Join {
        worktree: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("failed to remove {what} `{}`", path.display())]
    Remove {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
