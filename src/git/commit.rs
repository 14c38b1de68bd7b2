//! Work inside one worktree: is it dirty, and commit everything in it.
//!
//! These are associated functions taking the worktree's path, because the
//! runner calls them for a worktree it knows by path, from any thread.

use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, ErrorCode, FileMode, Index, Oid, Repository, Tree};

use super::error::GitError;
use super::repo::Repo;
use super::stamp::WorktreeStamp;
use super::stamped::StampedChanges;

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
        Repo::worktree_changes(worktree, placed)?.commit(message)
    }

    /// What differs in `worktree` (untracked files at `placed` paths left
    /// out): the one listing that committing and the dirtiness checks read
    /// after an agent exits. The worktree's index is read here, once.
    pub fn worktree_changes(
        worktree: &Path,
        placed: &[String],
    ) -> Result<WorktreeChanges, GitError> {
        Repo::worktree_changes_since(worktree, placed, None)
    }

    /// [`Repo::worktree_changes`], except that with a `stamp` (taken on the
    /// clean worktree before its agent started) what differs is read from
    /// the paths that moved since — no index read, no diff of every tracked
    /// file — unless something unusual needs the full listing.
    pub fn worktree_changes_since(
        worktree: &Path,
        placed: &[String],
        stamp: Option<&WorktreeStamp>,
    ) -> Result<WorktreeChanges, GitError> {
        let _span =
            tracing::debug_span!("worktree_changes", worktree = %worktree.display()).entered();
        // An index lagging treefarm's own commit would list that commit's
        // changes reversed.
        super::index_lag::settle(worktree)?;
        if let Some(stamp) = stamp {
            match super::stamped::read(worktree, placed, stamp) {
                Some(changes) => {
                    match changes.paths().count() {
                        0 => tracing::debug!("unchanged since the agent started: no listing"),
                        n => tracing::debug!(staged = n, "read from the stamp: no listing"),
                    }
                    return Ok(WorktreeChanges {
                        worktree: worktree.to_path_buf(),
                        listing: Listing::Stamped(changes),
                    });
                }
                None => tracing::debug!("not readable from the stamp: full listing"),
            }
        }
        let repo = open_worktree(worktree)?;
        let index = repo
            .index()
            .map_err(|e| GitError::git("read the index of", worktree.display().to_string(), e))?;
        let unstaged = unstaged_changes(&repo, &index, worktree, placed)?;
        Ok(WorktreeChanges {
            worktree: worktree.to_path_buf(),
            listing: Listing::Full(FullListing {
                repo,
                index,
                unstaged,
            }),
        })
    }

    /// Whether `worktree` has staged or unstaged changes to tracked files, or
    /// untracked files that are not ignored.
    pub fn is_dirty(worktree: &Path) -> Result<bool, GitError> {
        Repo::is_dirty_except(worktree, &[])
    }

    /// [`Repo::is_dirty`], not counting untracked files at (or under) a
    /// `placed` path (see [`Repo::commit_all_except`]).
    pub fn is_dirty_except(worktree: &Path, placed: &[String]) -> Result<bool, GitError> {
        Repo::worktree_changes(worktree, placed)?.is_dirty()
    }
}

/// What differs in a worktree after its agent exits: each path whose file
/// differs from the index, read by one diff of the index against the files
/// on disk that never looks on disk for a sparse checkout's unmaterialised
/// entries — with the repository and index it was read from, so that
/// committing it reads neither again.
pub struct WorktreeChanges {
    worktree: PathBuf,
    listing: Listing,
}

/// How the changes were read.
enum Listing {
    /// From what moved since the worktree's [`WorktreeStamp`] (nothing, when
    /// the agent left it as it was).
    Stamped(StampedChanges),
    /// By a diff of the index against the files on disk.
    Full(FullListing),
}

/// The full listing: the repository, its index and what differs.
struct FullListing {
    repo: Repository,
    index: Index,
    unstaged: Vec<Unstaged>,
}

/// One path whose file differs from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unstaged {
    path: PathBuf,
    /// There is something at the path (modified, new, type changed); else
    /// the tracked file is gone.
    on_disk: bool,
    /// A submodule (gitlink): staged like git does, but not "dirty" — what
    /// moves inside a submodule is not the agent's change to this worktree.
    submodule: bool,
}

impl WorktreeChanges {
    /// The paths whose files differ from the index, in git's order.
    pub fn paths(&self) -> Box<dyn Iterator<Item = &Path> + '_> {
        match &self.listing {
            Listing::Stamped(changes) => Box::new(changes.paths()),
            Listing::Full(l) => Box::new(l.unstaged.iter().map(|c| c.path.as_path())),
        }
    }

    /// Whether these changes were read from the worktree's stamp (what
    /// moved since the agent started), not by a full listing.
    pub fn read_from_stamp(&self) -> bool {
        matches!(self.listing, Listing::Stamped(_))
    }

    /// Unstaged changes or untracked files (submodules aside), else staged
    /// changes or a conflict in the index.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        let l = match &self.listing {
            Listing::Stamped(changes) => return Ok(changes.is_dirty()),
            Listing::Full(l) => l,
        };
        if l.unstaged.iter().any(|c| !c.submodule) || l.index.has_conflicts() {
            return Ok(true);
        }
        let tree = head_tree(&l.repo, &self.worktree)?;
        differs_from_index(&l.repo, tree.as_ref(), &l.index, &self.worktree)
    }

    /// Stages these changes — and nothing else: the listing already says
    /// what differs, so no file the agent left alone is read again — and
    /// commits the index on HEAD. `None` when the tree equals HEAD's. The
    /// signature comes from the repository config (`user.name`,
    /// `user.email`), else `treefarm <treefarm@localhost>`.
    pub fn commit(self, message: &str) -> Result<Option<Oid>, GitError> {
        let _span = tracing::debug_span!("commit_leftovers").entered();
        let mut l = match self.listing {
            Listing::Stamped(changes) => return changes.commit(&self.worktree, message),
            Listing::Full(l) => l,
        };
        let at = || self.worktree.display().to_string();
        if !l.unstaged.is_empty() {
            // What `git_index_add_all` does for each path of its diff: add
            // what exists, remove what does not.
            for change in &l.unstaged {
                if change.on_disk {
                    l.index.add_path(&change.path)
                } else {
                    l.index.remove_path(&change.path)
                }
                .map_err(|e| GitError::git("stage changes in", at(), e))?;
            }
            l.index
                .write()
                .map_err(|e| GitError::git("stage changes in", at(), e))?;
        }
        let repo = &l.repo;
        // With the tree cache the plant wrote, only the folders staged
        // above are built again.
        let tree_id = l
            .index
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
        let sig = super::identity::signature(repo)?;
        let parents: Vec<_> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(|e| GitError::git("commit in", at(), e))?;
        Ok(Some(id))
    }
}

/// HEAD's tree, `None` on an unborn branch.
fn head_tree<'r>(repo: &'r Repository, worktree: &Path) -> Result<Option<Tree<'r>>, GitError> {
    match repo.head() {
        Ok(head) => Ok(Some(head.peel_to_tree().map_err(|e| {
            GitError::git("read HEAD of", worktree.display().to_string(), e)
        })?)),
        Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
            Ok(None)
        }
        Err(e) => Err(GitError::git(
            "read HEAD of",
            worktree.display().to_string(),
            e,
        )),
    }
}

/// Whether `index` differs from `tree` (an empty tree when `None`).
fn differs_from_index(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    index: &Index,
    worktree: &Path,
) -> Result<bool, GitError> {
    let staged = repo
        .diff_tree_to_index(tree, Some(index), None)
        .map_err(|e| GitError::git("diff the index of", worktree.display().to_string(), e))?;
    Ok(staged.deltas().len() > 0)
}

/// The paths whose files differ from `index`: one diff of the index against
/// the files on disk, untracked folders listed file by file, ignored files
/// left out — the diff `git_index_add_all` makes — minus the untracked files
/// at `placed` paths and minus a sparse checkout's unmaterialised entries
/// (skip-worktree entries with no file, which are not deletions). Only the
/// deltas are read: no patch is made, so no attribute is looked up for a
/// path that did not change, and the skip-worktree entries cost a lookup in
/// the index in memory, not a `stat`.
fn unstaged_changes(
    repo: &Repository,
    index: &Index,
    worktree: &Path,
    placed: &[String],
) -> Result<Vec<Unstaged>, GitError> {
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_typechange(true)
        .include_ignored(false);
    let diff = repo
        .diff_index_to_workdir(Some(index), Some(&mut opts))
        .map_err(|e| GitError::git("diff the files of", worktree.display().to_string(), e))?;
    let mut out = Vec::new();
    for delta in diff.deltas() {
        let old = delta.old_file();
        let new = delta.new_file();
        let Some(path) = old.path().or_else(|| new.path()) else {
            continue;
        };
        match delta.status() {
            Delta::Untracked if super::stamped::is_placed(path, placed) => continue,
            Delta::Deleted if is_skip_worktree(index, path) => continue,
            _ => {}
        }
        out.push(Unstaged {
            path: path.to_path_buf(),
            on_disk: new.exists(),
            submodule: old.mode() == FileMode::Commit || new.mode() == FileMode::Commit,
        });
    }
    Ok(out)
}

/// Whether the index entry at `path` carries the skip-worktree bit.
fn is_skip_worktree(index: &Index, path: &Path) -> bool {
    index
        .get_path(path, 0)
        .is_some_and(|entry| entry.flags_extended & super::sparse::SKIP_WORKTREE != 0)
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
/// with no untracked, non-ignored file (an empty `tree` when `None`);
/// submodules are not looked into.
pub(crate) fn matches_tree(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    worktree: &Path,
) -> Result<bool, GitError> {
    let index = repo
        .index()
        .map_err(|e| GitError::git("read the index of", worktree.display().to_string(), e))?;
    if index.has_conflicts() || differs_from_index(repo, tree, &index, worktree)? {
        return Ok(false);
    }
    Ok(unstaged_changes(repo, &index, worktree, &[])?
        .iter()
        .all(|c| c.submodule))
}

impl Repo {
    /// The paths that differ between the trees of commits `from` and `to`,
    /// sorted and deduplicated — the paths of `git diff --name-only from to`
    /// (no rename detection; a path whose type changed once) — read by
    /// walking both trees together and skipping every subtree whose id is
    /// the same on both sides, so that the scope audit after an agent exits
    /// costs what the agent changed, not the repository's size.
    pub fn diff_paths(&self, from: Oid, to: Oid) -> Result<Vec<String>, GitError> {
        let repo = self.open()?;
        changed_paths_between(&repo, from, to)
    }
}

/// [`Repo::diff_paths`] in an open repository.
fn changed_paths_between(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<String>, GitError> {
    let mut paths = Vec::new();
    if from == to {
        return Ok(paths);
    }
    let tree_of = |id: Oid| {
        repo.find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::git("read the tree of commit", id.to_string(), e))
    };
    let (old, new) = (tree_of(from)?, tree_of(to)?);
    diff_trees(repo, Some(&old), Some(&new), "", &mut paths)?;
    paths.sort_unstable();
    paths.dedup();
    Ok(paths)
}

/// One side of a tree entry: its id and mode.
type Side = Option<(Oid, i32)>;

/// Adds to `out` every path under `prefix` that differs between `old` and
/// `new` (a missing tree is empty); equal subtrees are never opened.
fn diff_trees(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: Option<&Tree<'_>>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<(), GitError> {
    let mut sides: std::collections::BTreeMap<Vec<u8>, (Side, Side)> =
        std::collections::BTreeMap::new();
    for (tree, is_new) in [(old, false), (new, true)] {
        for entry in tree.into_iter().flat_map(|t| t.iter()) {
            let slot = sides.entry(entry.name_bytes().to_vec()).or_default();
            let side = Some((entry.id(), entry.filemode()));
            if is_new {
                slot.1 = side;
            } else {
                slot.0 = side;
            }
        }
    }
    let is_tree = |side: Side| side.is_some_and(|(_, mode)| mode == i32::from(FileMode::Tree));
    for (name, (o, n)) in sides {
        if o == n {
            continue;
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(&name));
        // A file (or link, or submodule) on either side is a changed path;
        // a folder on either side is opened for the paths under it.
        if (o.is_some() && !is_tree(o)) || (n.is_some() && !is_tree(n)) {
            out.push(path.clone());
        }
        let subtree = |side: Side| -> Result<Option<Tree<'_>>, GitError> {
            match side {
                Some((id, _)) if is_tree(side) => repo
                    .find_tree(id)
                    .map(Some)
                    .map_err(|e| GitError::git("read tree", path.clone(), e)),
                _ => Ok(None),
            }
        };
        let (ot, nt) = (subtree(o)?, subtree(n)?);
        if ot.is_some() || nt.is_some() {
            diff_trees(repo, ot.as_ref(), nt.as_ref(), &format!("{path}/"), out)?;
        }
    }
    Ok(())
}
