//! Work inside one worktree: is it dirty, and commit everything in it.
//!
//! These are associated functions taking the worktree's path, because the
//! runner calls them for a worktree it knows by path, from any thread.

use std::path::Path;

use git2::{DiffOptions, ErrorCode, IndexAddOption, Oid, Repository, Signature, Tree};

use super::error::GitError;
use super::repo::Repo;

impl Repo {
    /// Stages everything in `worktree` — new, modified and deleted files,
    /// respecting `.gitignore` — and commits it on its HEAD. `None` when there
    /// is nothing to commit. The signature comes from the repository config
    /// (`user.name`, `user.email`), else `treefarm <treefarm@localhost>`.
    pub fn commit_all(worktree: &Path, message: &str) -> Result<Option<Oid>, GitError> {
        let repo = open_worktree(worktree)?;
        let at = || worktree.display().to_string();
        let mut index = repo
            .index()
            .map_err(|e| GitError::git("read the index of", at(), e))?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .and_then(|()| index.update_all(["*"], None))
            .and_then(|()| index.write())
            .map_err(|e| GitError::git("stage changes in", at(), e))?;
        let tree_id = index
            .write_tree()
            .map_err(|e| GitError::git("write tree in", at(), e))?;
        let parent = match repo.head() {
            Ok(head) => Some(
                head.peel_to_commit()
                    .map_err(|e| GitError::git("read HEAD of", at(), e))?,
            ),
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
                None
            }
            Err(e) => return Err(GitError::git("read HEAD of", at(), e)),
        };
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| GitError::git("read tree in", at(), e))?;
        let sig = signature(&repo)?;
        let parents: Vec<_> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(|e| GitError::git("commit in", at(), e))?;
        Ok(Some(id))
    }

    /// Whether `worktree` has staged or unstaged changes to tracked files, or
    /// untracked files that are not ignored.
    pub fn is_dirty(worktree: &Path) -> Result<bool, GitError> {
        let repo = open_worktree(worktree)?;
        let head_tree = match repo.head() {
            Ok(head) => {
                Some(head.peel_to_tree().map_err(|e| {
                    GitError::git("read HEAD of", worktree.display().to_string(), e)
                })?)
            }
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
                None
            }
            Err(e) => {
                return Err(GitError::git(
                    "read HEAD of",
                    worktree.display().to_string(),
                    e,
                ))
            }
        };
        Ok(!matches_tree(&repo, head_tree.as_ref(), worktree)?)
    }
}

/// Opens the repository of one worktree (main or linked) at its root.
pub(crate) fn open_worktree(worktree: &Path) -> Result<Repository, GitError> {
    Repository::open(worktree)
        .map_err(|e| GitError::git("open worktree", worktree.display().to_string(), e))
}

/// Whether the worktree's index equals `tree` and its files equal the index,
/// with no untracked, non-ignored file (an empty `tree` when `None`).
pub(crate) fn matches_tree(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    worktree: &Path,
) -> Result<bool, GitError> {
    let at = || worktree.display().to_string();
    let index = repo
        .index()
        .map_err(|e| GitError::git("read the index of", at(), e))?;
    if index.has_conflicts() {
        return Ok(false);
    }
    let staged = repo
        .diff_tree_to_index(tree, Some(&index), None)
        .map_err(|e| GitError::git("diff the index of", at(), e))?;
    if staged.deltas().len() > 0 {
        return Ok(false);
    }
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .ignore_submodules(true);
    let unstaged = repo
        .diff_index_to_workdir(Some(&index), Some(&mut opts))
        .map_err(|e| GitError::git("diff the files of", at(), e))?;
    Ok(unstaged.deltas().len() == 0)
}

/// The committer (and squash author) identity: the config's, else treefarm's.
pub(crate) fn signature(repo: &Repository) -> Result<Signature<'static>, GitError> {
    match repo.signature() {
        Ok(sig) => Ok(sig),
        Err(_) => Signature::now("treefarm", "treefarm@localhost")
            .map_err(|e| GitError::git("make signature for", "treefarm", e)),
    }
}
