//! What a worktree looks like to git, as a value to compare: HEAD and every
//! path that differs from it (modified, added, deleted, untracked, ignored)
//! with the content it has. `split` takes one before and one after its agent
//! to see whether the agent changed anything outside its scratch folder.

use std::collections::BTreeMap;
use std::path::Path;

use super::commit::open_worktree;
use super::error::GitError;

/// HEAD and the changed paths of a worktree, each with its status bits and
/// the object id of its content (`None`: deleted or not a file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorktreeSnapshot {
    pub head: Option<git2::Oid>,
    pub changed: BTreeMap<String, (u32, Option<git2::Oid>)>,
}

impl WorktreeSnapshot {
    /// The paths whose state differs between `self` (before) and `after`,
    /// sorted; `HEAD` when HEAD moved.
    pub fn differences(&self, after: &WorktreeSnapshot) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.head != after.head {
            out.push("HEAD".to_string());
        }
        for (path, state) in &after.changed {
            if self.changed.get(path) != Some(state) {
                out.push(path.clone());
            }
        }
        for path in self.changed.keys() {
            if !after.changed.contains_key(path) {
                out.push(path.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The snapshot of the worktree at `worktree` (untracked and ignored files
/// included, folders listed file by file).
pub fn worktree_snapshot(worktree: &Path) -> Result<WorktreeSnapshot, GitError> {
    let repo = open_worktree(worktree)?;
    let subject = || worktree.display().to_string();
    let head = repo.head().ok().and_then(|h| h.target());
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(true)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(|e| GitError::git("read the status of", subject(), e))?;
    let mut changed = BTreeMap::new();
    for entry in statuses.iter() {
        let Some(path) = entry.path() else { continue };
        let file = worktree.join(path);
        let content = file
            .is_file()
            .then(|| git2::Oid::hash_file(git2::ObjectType::Blob, &file).ok())
            .flatten();
        changed.insert(path.to_string(), (entry.status().bits(), content));
    }
    Ok(WorktreeSnapshot { head, changed })
}
