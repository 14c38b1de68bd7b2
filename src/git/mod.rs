//! Everything treefarm does with git, through libgit2 — the only module that
//! imports `git2`; the `git` binary is never run.
//!
//! All of it is synchronous. [`Repo`] holds paths only (no libgit2 handle), so
//! it is `Send + Sync`: each call opens its own `git2::Repository`, and
//! [`Repo::add_worktrees`] gives each of its threads its own.

mod admin;
mod batch;
mod commit;
mod error;
mod filters;
mod gates;
mod identity;
mod include;
mod index_lag;
pub mod layout;
mod listing;
mod merge;
mod merge_state;
mod private_git;
mod repo;
mod snapshot;
mod sparse;
mod stamp;
mod stamped;
mod tree_merge;
mod worktree;

pub use admin::staging_admin;
pub use batch::{BatchBuild, BatchItem, BatchMerge};
pub use error::GitError;
pub use gates::{gate_admin_name, GateWorktree, GATES_DIR};
pub use git2::Oid;
pub use include::WORKTREE_INCLUDE;
pub use index_lag::{settle as settle_index, settle_all as settle_all_indexes};
pub use merge::{Advance, MergeStrategy, Prepared};
pub use merge_state::{
    has_conflict_markers, share_merge_state, take_merge_state, HandBack, HandBackResult, Resolution,
};
pub use private_git::{import_private_git, prepare_private_git, private_branch_moved};
pub use repo::{init_submodules, CommitInfo, Repo};
pub use snapshot::{worktree_snapshot, WorktreeSnapshot};
pub use sparse::SparseRequest;
pub use stamp::WorktreeStamp;
pub use worktree::{ScratchWorktree, WorktreeInfo, WorktreeRequest};
