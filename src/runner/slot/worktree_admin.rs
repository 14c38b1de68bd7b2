//! The process-wide lock on git's worktree admin files, shared by the lane
//! (plant, prune, land) and the gate runs that prepare warm worktrees
//! beside it.

/// Held while git's worktree admin files are written: planting, pruning,
/// landing (it reads the checkouts of the target) and the merge queue's
/// gates preparing their warm worktrees, which run beside the lane.
static WORKTREE_ADMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`WORKTREE_ADMIN`] (a panic elsewhere while holding it leaves
/// nothing half-done that the next holder could not handle).
pub fn worktree_admin() -> std::sync::MutexGuard<'static, ()> {
    WORKTREE_ADMIN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
