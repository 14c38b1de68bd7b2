//! Per-slot resources: what each of the `instances` slots holds beside its
//! worktree.
//!
//! - `ports`: the block of free ports probed for a slot.
//! - `caches`: warm per-slot caches (`slot_env`) under the user's cache dir.
//! - `gates`: gate runs (merge-queue checks) in warm gate worktrees.
//! - `shared_git`: the guard on the git config that worktrees share.
//! - `worktree_admin`: the lock on git's worktree admin files.

pub mod caches;
pub mod gates;
pub mod ports;
pub mod shared_git;
pub mod worktree_admin;
