//! Where git keeps things inside the common git directory: the paths the
//! runner needs to recover from a kill (lock files a killed ref update
//! leaves, a linked worktree's admin entry). Only `git/` knows this layout.

use std::path::{Path, PathBuf};

/// The admin entry of the linked worktree `name`: `<common>/worktrees/<name>`.
pub fn worktree_admin(common: &Path, name: &str) -> PathBuf {
    common.join("worktrees").join(name)
}

/// The lock file of an update of branch `branch` (`refs/heads/<branch>.lock`).
pub fn branch_lock(common: &Path, branch: &str) -> PathBuf {
    common.join("refs/heads").join(format!("{branch}.lock"))
}

/// The lock files of the gate pool's temporary branches
/// (`treefarm/gate-pool-<n>`) that exist, found by name: a kill while a
/// gate worktree was planted can leave one before the worktree's folder or
/// admin entry exists.
pub fn gate_pool_branch_locks(common: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(common.join("refs/heads/treefarm")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gate-pool-") && n.ends_with(".lock"))
        })
        .collect()
}

/// The lock file of a rewrite of `packed-refs` (a branch deletion).
pub fn packed_refs_lock(common: &Path) -> PathBuf {
    common.join("packed-refs.lock")
}

/// The lock files of the linked worktree `name`'s index and HEAD (an
/// auto-commit in it).
pub fn worktree_locks(common: &Path, name: &str) -> [PathBuf; 2] {
    let admin = worktree_admin(common, name);
    [admin.join("index.lock"), admin.join("HEAD.lock")]
}

/// The lock files of the merge state a conflict hand-back
/// (`merge.on_conflict: agent`) writes in the linked worktree `name`'s admin
/// folder; a coordinator killed while writing it leaves them behind.
pub fn merge_state_locks(common: &Path, name: &str) -> [PathBuf; 4] {
    let admin = worktree_admin(common, name);
    ["MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "ORIG_HEAD"].map(|f| admin.join(format!("{f}.lock")))
}

/// Whether git accepts `name` as a branch name (libgit2's rules: no `..`,
/// spaces, control characters, `~^:?*[\`, leading `-`, trailing `/` or
/// `.lock`, ...).
pub fn is_valid_branch_name(name: &str) -> bool {
    git2::Branch::name_is_valid(name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git() {
        for ok in ["roadmap", "team/roadmap", "v1.2"] {
            assert!(is_valid_branch_name(ok), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "a/", "a.lock", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad}");
        }
    }

    #[test]
    fn paths_are_where_git_keeps_them() {
        let c = Path::new("/r/.git");
        assert_eq!(worktree_admin(c, "020"), Path::new("/r/.git/worktrees/020"));
        assert_eq!(
            branch_lock(c, "treefarm/020"),
            Path::new("/r/.git/refs/heads/treefarm/020.lock")
        );
        assert_eq!(packed_refs_lock(c), Path::new("/r/.git/packed-refs.lock"));
        assert_eq!(
            worktree_locks(c, "020"),
            [
                PathBuf::from("/r/.git/worktrees/020/index.lock"),
                PathBuf::from("/r/.git/worktrees/020/HEAD.lock")
            ]
        );
    }
}
