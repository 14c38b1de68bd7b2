//! Merging a branch into the target without a checkout: the new commit is made
//! in memory and written to the object database unreferenced
//! ([`Repo::prepare_merge`]); the target ref then moves by compare-and-swap on
//! the tip that was read ([`Repo::advance_target`]) — never clobbering a ref
//! someone else moved — and any checkout of the target is kept in step.

use std::collections::BTreeSet;
use std::path::PathBuf;

use git2::build::CheckoutBuilder;
use git2::{Commit, ErrorCode, Index, Oid, Repository};

use super::commit::{matches_tree, open_worktree};
use super::error::GitError;
use super::identity::signature;
use super::repo::{branch_tip_in, commits_between_in, retry_ref_lock, Repo};

/// How a branch lands on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    /// A merge commit (parents: target tip, branch tip), even when a
    /// fast-forward were possible.
    Merge,
    /// One commit on the target tip with the merged tree.
    Squash,
    /// The branch's commits replayed on the target, authors kept.
    Rebase,
}

/// The outcome of [`Repo::prepare_merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// `new` is written but not referenced; move the target from `old` to it
    /// with [`Repo::advance_target`]. `old` is `Oid::zero()` when the target
    /// branch did not exist (then `new` is the branch tip).
    Ready { old: Oid, new: Oid },
    /// The merge conflicts on these paths (sorted); nothing was changed.
    Conflicted { paths: Vec<String> },
    /// The target already holds the branch's changes.
    UpToDate { tip: Oid },
}

/// The outcome of [`Repo::advance_target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    Moved,
    /// The target no longer points to `old` (`Oid::zero()`: it is gone);
    /// nothing was changed — prepare again.
    Raced {
        current: Oid,
    },
}

impl Repo {
    /// Computes the merge of `branch` into `target_branch` in memory.
    ///
    /// `message` is the merge or squash commit's message; rebase keeps each
    /// commit's own message, skips merge commits and commits whose changes the
    /// target already has (as `git rebase` does), and fast-forwards when the
    /// branch already starts from the target tip.
    pub fn prepare_merge(
        &self,
        target_branch: &str,
        branch: &str,
        strategy: MergeStrategy,
        message: &str,
    ) -> Result<Prepared, GitError> {
        let repo = self.open()?;
        let theirs_id = branch_tip_in(&repo, branch)?.ok_or_else(|| GitError::BranchNotFound {
            branch: branch.to_string(),
        })?;
        let Some(ours_id) = branch_tip_in(&repo, target_branch)? else {
            return Ok(Prepared::Ready {
                old: Oid::zero(),
                new: theirs_id,
            });
        };
        merge_onto(
            &repo,
            ours_id,
            theirs_id,
            strategy,
            message,
            &format!("{branch}` into `{target_branch}"),
        )
    }

    /// Moves `refs/heads/<target_branch>` from `old` to `new` by
    /// compare-and-swap (`old == Oid::zero()`: create it only if missing).
    ///
    /// Every worktree with the target checked out must be clean first (else a
    /// user-fixable error, nothing moved); after the move each is checked out
    /// at `new`, files and index. No other worktree is touched.
    pub fn advance_target(
        &self,
        target_branch: &str,
        old: Oid,
        new: Oid,
    ) -> Result<Advance, GitError> {
        let repo = self.open()?;
        let refname = format!("refs/heads/{target_branch}");
        let current = branch_tip_in(&repo, target_branch)?;
        if current.unwrap_or(Oid::zero()) != old {
            return Ok(Advance::Raced {
                current: current.unwrap_or(Oid::zero()),
            });
        }
        let old_tree = if old.is_zero() {
            None
        } else {
            Some(
                find_commit(&repo, old)?
                    .tree()
                    .map_err(|e| GitError::git("read tree of", old.to_string(), e))?,
            )
        };
        let checkouts: Vec<PathBuf> = self
            .worktrees()?
            .into_iter()
            .filter(|w| w.path_exists && w.branch.as_deref() == Some(target_branch))
            .map(|w| w.path)
            .collect();
        for path in &checkouts {
            let wt = open_worktree(path)?;
            if !matches_tree(&wt, old_tree.as_ref(), path)? {
                return Err(GitError::TargetDirty {
                    branch: target_branch.to_string(),
                    path: path.clone(),
                });
            }
        }

        let log = format!("treefarm: advance {target_branch}");
        let moved = retry_ref_lock(|| {
            if old.is_zero() {
                repo.reference(&refname, new, false, &log)
            } else {
                repo.reference_matching(&refname, new, true, old, &log)
            }
        });
        match moved {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::Modified | ErrorCode::NotFound | ErrorCode::Exists
                ) =>
            {
                let current = branch_tip_in(&repo, target_branch)?.unwrap_or(Oid::zero());
                return Ok(Advance::Raced { current });
            }
            Err(e) => return Err(GitError::git("move branch", target_branch, e)),
        }

        for path in &checkouts {
            if let Err(e) = sync_checkout(path, old_tree.as_ref(), new, target_branch) {
                // Put the ref back (only if still ours) so the checkout stays
                // consistent with its branch.
                if !old.is_zero() {
                    let _ =
                        repo.reference_matching(&refname, old, true, new, "treefarm: undo advance");
                }
                return Err(e);
            }
        }
        Ok(Advance::Moved)
    }
}

/// Brings a clean checkout of the target (verified against `old_tree`) to
/// `new`. HEAD already resolves to `new`, so libgit2's baseline is `new`: a
/// forced checkout writes every file that differs and removes files that are
/// in the index but not in `new` — safe because the worktree was just verified
/// to equal `old_tree`, with no untracked file in the way.
fn sync_checkout(
    path: &std::path::Path,
    old_tree: Option<&git2::Tree<'_>>,
    new: Oid,
    target_branch: &str,
) -> Result<(), GitError> {
    let wt = open_worktree(path)?;
    if !matches_tree(&wt, old_tree, path)? {
        return Err(GitError::TargetDirty {
            branch: target_branch.to_string(),
            path: path.to_path_buf(),
        });
    }
    let commit = find_commit(&wt, new)?;
    let mut opts = CheckoutBuilder::new();
    opts.force().remove_untracked(false).remove_ignored(false);
    wt.checkout_tree(commit.as_object(), Some(&mut opts))
        .map_err(|e| {
            GitError::git(
                "update the checkout of the target at",
                path.display().to_string(),
                e,
            )
        })
}

/// Merges commit `theirs_id` onto commit `ours_id` in memory with `strategy`
/// (see [`Repo::prepare_merge`]); `pair` names the two in messages
/// (``branch` into `target``). The result's `old` is `ours_id`.
pub(crate) fn merge_onto(
    repo: &Repository,
    ours_id: Oid,
    theirs_id: Oid,
    strategy: MergeStrategy,
    message: &str,
    pair: &str,
) -> Result<Prepared, GitError> {
    if is_ancestor_in(repo, theirs_id, ours_id, pair)? {
        return Ok(Prepared::UpToDate { tip: ours_id });
    }
    let ours = find_commit(repo, ours_id)?;
    let theirs = find_commit(repo, theirs_id)?;
    let name = || pair.to_string();
    match strategy {
        MergeStrategy::Merge | MergeStrategy::Squash => {
            let tree_id = match trivial_merge_of(repo, &ours, &theirs)
                .map_err(|e| GitError::git("merge", name(), e))?
            {
                Some(tree_id) => tree_id,
                None => {
                    let mut index = repo
                        .merge_commits(&ours, &theirs, None)
                        .map_err(|e| GitError::git("merge", name(), e))?;
                    if index.has_conflicts() {
                        return Ok(Prepared::Conflicted {
                            paths: conflict_paths(&index)?,
                        });
                    }
                    index
                        .write_tree_to(repo)
                        .map_err(|e| GitError::git("write merged tree of", name(), e))?
                }
            };
            if strategy == MergeStrategy::Squash && tree_id == ours.tree_id() {
                return Ok(Prepared::UpToDate { tip: ours_id });
            }
            let tree = repo
                .find_tree(tree_id)
                .map_err(|e| GitError::git("read merged tree of", name(), e))?;
            let sig = signature(repo)?;
            let parents: Vec<&Commit<'_>> = match strategy {
                MergeStrategy::Merge => vec![&ours, &theirs],
                _ => vec![&ours],
            };
            let new = repo
                .commit(None, &sig, &sig, message, &tree, &parents)
                .map_err(|e| GitError::git("write merge commit of", name(), e))?;
            Ok(Prepared::Ready { old: ours_id, new })
        }
        MergeStrategy::Rebase => {
            if is_ancestor_in(repo, ours_id, theirs_id, pair)? {
                return Ok(Prepared::Ready {
                    old: ours_id,
                    new: theirs_id,
                });
            }
            let base = repo
                .merge_base(ours_id, theirs_id)
                .map_err(|e| GitError::git("find the merge base of", name(), e))?;
            let sig = signature(repo)?;
            let mut onto = ours;
            for info in commits_between_in(repo, base, theirs_id)? {
                let pick = find_commit(repo, info.id)?;
                if pick.parent_count() > 1 {
                    continue;
                }
                let mut index = repo
                    .cherrypick_commit(&pick, &onto, 0, None)
                    .map_err(|e| GitError::git("replay commit", info.id.to_string(), e))?;
                if index.has_conflicts() {
                    return Ok(Prepared::Conflicted {
                        paths: conflict_paths(&index)?,
                    });
                }
                let tree_id = index
                    .write_tree_to(repo)
                    .map_err(|e| GitError::git("write replayed tree of", info.id.to_string(), e))?;
                if tree_id == onto.tree_id() {
                    continue;
                }
                let tree = repo
                    .find_tree(tree_id)
                    .map_err(|e| GitError::git("read replayed tree of", info.id.to_string(), e))?;
                let message = String::from_utf8_lossy(pick.message_bytes()).into_owned();
                let id = repo
                    .commit(None, &pick.author(), &sig, &message, &tree, &[&onto])
                    .map_err(|e| {
                        GitError::git("write replayed commit of", info.id.to_string(), e)
                    })?;
                onto = find_commit(repo, id)?;
            }
            if onto.id() == ours_id {
                return Ok(Prepared::UpToDate { tip: ours_id });
            }
            Ok(Prepared::Ready {
                old: ours_id,
                new: onto.id(),
            })
        }
    }
}

fn is_ancestor_in(repo: &Repository, ancestor: Oid, of: Oid, pair: &str) -> Result<bool, GitError> {
    if ancestor == of {
        return Ok(true);
    }
    repo.graph_descendant_of(of, ancestor)
        .map_err(|e| GitError::git("compare the commits of", pair.to_string(), e))
}

/// The fast path of a merge: a single merge base and a trivial tree merge
/// (see `tree_merge`); `None` sends the caller to libgit2's full merge.
fn trivial_merge_of(
    repo: &Repository,
    ours: &Commit<'_>,
    theirs: &Commit<'_>,
) -> Result<Option<Oid>, git2::Error> {
    let bases = match repo.merge_bases(ours.id(), theirs.id()) {
        Ok(bases) => bases,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let [base] = bases.iter().collect::<Vec<_>>()[..] else {
        return Ok(None);
    };
    let base_tree = repo.find_commit(*base)?.tree()?;
    super::tree_merge::trivial_merge(repo, Some(&base_tree), &ours.tree()?, &theirs.tree()?)
}

fn find_commit(repo: &Repository, id: Oid) -> Result<Commit<'_>, GitError> {
    repo.find_commit(id)
        .map_err(|e| GitError::git("read commit", id.to_string(), e))
}

/// Every path with a conflict in an in-memory merge index, sorted.
fn conflict_paths(index: &Index) -> Result<Vec<String>, GitError> {
    let mut paths = BTreeSet::new();
    let conflicts = index
        .conflicts()
        .map_err(|e| GitError::git("read conflicts of", "merge", e))?;
    for conflict in conflicts {
        let conflict = conflict.map_err(|e| GitError::git("read conflicts of", "merge", e))?;
        for entry in [conflict.ancestor, conflict.our, conflict.their]
            .into_iter()
            .flatten()
        {
            paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}
