//! Work inside one worktree: is it dirty, and commit everything in it.
//!
//! These are associated functions taking the worktree's path, because the
//! runner calls them for a worktree it knows by path, from any thread.

use std::path::{Path, PathBuf};

use git2::{DiffOptions, ErrorCode, IndexAddOption, Oid, Repository, Signature, Tree};

use super::error::GitError;
use super::repo::Repo;

impl Repo {
    /// Stages everything in `worktree` — new, modified and deleted files,
    /// respecting `.gitignore` — and commits it on its HEAD. `None` when there
    /// is nothing to commit. The signature comes from the repository config
    /// (`user.name`, `user.email`), else `treefarm <treefarm@localhost>`.
    pub fn commit_all(worktree: &Path, message: &str) -> Result<Option<Oid>, GitError> {
        Repo::commit_all_except(worktree, message, &[])
    }

    /// [`Repo::commit_all`], except that no untracked file at (or under) a
    /// `placed` path is staged: what treefarm's setup copied or linked into
    /// the worktree (`.env`, a `data` link) is not the agent's work, and must
    /// never reach the branch or the target.
    pub fn commit_all_except(
        worktree: &Path,
        message: &str,
        placed: &[String],
    ) -> Result<Option<Oid>, GitError> {
        let repo = open_worktree(worktree)?;
        let at = || worktree.display().to_string();
        let sparse = super::sparse::unmaterialised(&repo)?;
        let mut index = repo
            .index()
            .map_err(|e| GitError::git("read the index of", at(), e))?;
        // Tracked paths are left to `update_all` below, so only new files
        // at placed paths are skipped.
        let tracked: Vec<PathBuf> = if placed.is_empty() {
            Vec::new()
        } else {
            index
                .iter()
                .map(|entry| PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned()))
                .filter(|path| is_placed(path, placed))
                .collect()
        };
        // A sparse checkout's unmaterialised files are not deletions.
        let unmaterialised = |path: &Path| sparse.contains(path.as_os_str().as_encoded_bytes());
        let mut skip_placed = |path: &Path, _: &[u8]| -> i32 {
            i32::from(
                (is_placed(path, placed) && !tracked.iter().any(|t| t == path))
                    || unmaterialised(path),
            )
        };
        index
            .add_all(
                ["*"],
                IndexAddOption::DEFAULT,
                Some(&mut skip_placed as &mut git2::IndexMatchedPath<'_>),
            )
            .and_then(|()| {
                let mut keep_sparse =
                    |path: &Path, _: &[u8]| -> i32 { i32::from(unmaterialised(path)) };
                index.update_all(
                    ["*"],
                    Some(&mut keep_sparse as &mut git2::IndexMatchedPath<'_>),
                )
            })
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
        Repo::is_dirty_except(worktree, &[])
    }

    /// [`Repo::is_dirty`], not counting untracked files at (or under) a
    /// `placed` path (see [`Repo::commit_all_except`]).
    pub fn is_dirty_except(worktree: &Path, placed: &[String]) -> Result<bool, GitError> {
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
        Ok(!matches_tree_except(
            &repo,
            head_tree.as_ref(),
            worktree,
            placed,
        )?)
    }
}

impl Repo {
    /// Whether every difference between `worktree` and its HEAD is a deleted
    /// file (nothing modified, added or untracked): what a removal killed
    /// half-way leaves. Removing such a worktree loses nothing HEAD lacks.
    /// False when the worktree cannot be read as one.
    pub fn only_deletions(worktree: &Path) -> Result<bool, GitError> {
        let Ok(repo) = open_worktree(worktree) else {
            return Ok(false);
        };
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo
            .statuses(Some(&mut opts))
            .map_err(|e| GitError::git("read the status of", worktree.display().to_string(), e))?;
        let deleted = git2::Status::WT_DELETED | git2::Status::INDEX_DELETED;
        Ok(statuses
            .iter()
            .all(|entry| deleted.contains(entry.status())))
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
    matches_tree_except(repo, tree, worktree, &[])
}

/// [`matches_tree`], ignoring untracked files at (or under) `placed` paths.
fn matches_tree_except(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    worktree: &Path,
    placed: &[String],
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
    let sparse = super::sparse::unmaterialised(repo)?;
    Ok(unstaged.deltas().all(|delta| {
        let path = || delta.old_file().path_bytes().unwrap_or_default();
        (delta.status() == git2::Delta::Deleted && sparse.contains(path()))
            || (delta.status() == git2::Delta::Untracked
                && delta
                    .new_file()
                    .path()
                    .is_some_and(|path| is_placed(path, placed)))
    }))
}

/// Whether `path` (relative to the worktree root) is one of `placed` or
/// inside one of them.
fn is_placed(path: &Path, placed: &[String]) -> bool {
    placed.iter().any(|p| {
        let p = p.trim_start_matches("./").trim_end_matches('/');
        !p.is_empty() && path.starts_with(p)
    })
}

/// The committer (and squash author) identity: the config's, else treefarm's.
pub(crate) fn signature(repo: &Repository) -> Result<Signature<'static>, GitError> {
    match repo.signature() {
        Ok(sig) => Ok(sig),
        Err(_) => Signature::now("treefarm", "treefarm@localhost")
            .map_err(|e| GitError::git("make signature for", "treefarm", e)),
    }
}
