//! Everything treefarm does with git, through libgit2 — the only module that
//! imports `git2`; the `git` binary is never run.
//!
//! All of it is synchronous. [`Repo`] holds paths only (no libgit2 handle), so
//! it is `Send + Sync`: each call opens its own `git2::Repository`, and
//! [`Repo::add_worktrees`] gives each of its threads its own.

mod commit;
mod error;
mod identity;
mod include;
pub mod layout;
mod listing;
mod merge;
mod repo;
mod sparse;
mod tree_merge;
mod worktree;

pub use error::GitError;
pub use git2::Oid;
pub use include::WORKTREE_INCLUDE;
pub use merge::{Advance, MergeStrategy, Prepared};
pub use repo::{init_submodules, CommitInfo, Repo};
pub use sparse::SparseRequest;
pub use worktree::{staging_admin, ScratchWorktree, WorktreeInfo, WorktreeRequest};
