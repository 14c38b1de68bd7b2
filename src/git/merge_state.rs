//! Handing a conflict back to the agent that wrote the branch
//! (`merge.on_conflict: agent`): its worktree is left exactly as
//! `git merge <target>` leaves a conflicted merge — markers in the files,
//! conflict stages in the index, `MERGE_HEAD` and `MERGE_MSG` written — and
//! afterwards [`Repo::resolution_outcome`] checks that the agent concluded
//! the merge with a commit.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{MergeOptions, Oid, Repository, RepositoryState};

use super::commit::{matches_tree, open_worktree};
use super::error::GitError;
use super::repo::{branch_tip_in, commits_between_in, CommitInfo};
use super::Repo;

/// A conflicted merge prepared in an agent's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandBack {
    /// The target tip merged in (`MERGE_HEAD`).
    pub target_tip: Oid,
    /// The branch tip the merge started from.
    pub branch_tip: Oid,
    /// The conflicted paths, sorted.
    pub paths: Vec<String>,
    /// The target's commits the branch lacks (the other side), oldest
    /// first: what the resolution prompt lists.
    pub other_side: Vec<CommitInfo>,
}

/// What [`Repo::hand_back_conflict`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandBackResult {
    /// The worktree now holds the conflicted merge.
    Prepared(HandBack),
    /// The branch merges cleanly with the target now; nothing was touched.
    NoConflict,
}

/// Whether the agent concluded the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The branch's new tip is a merge with the target, clean.
    Concluded { commit: Oid },
    /// Why not, in a sentence naming the branch or file.
    Unresolved { reason: String },
}

impl Repo {
    /// In `worktree` (on `branch`, clean), starts `git merge <target_branch>`
    /// the way git does when it conflicts. A worktree with uncommitted
    /// changes or a merge already in progress is an error naming it.
    pub fn hand_back_conflict(
        &self,
        worktree: &Path,
        branch: &str,
        target_branch: &str,
    ) -> Result<HandBackResult, GitError> {
        let wt = open_worktree(worktree)?;
        let at = || worktree.display().to_string();
        let head = wt
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| GitError::git("read HEAD of", at(), e))?;
        let head_tree = head
            .tree()
            .map_err(|e| GitError::git("read HEAD of", at(), e))?;
        if wt.state() != RepositoryState::Clean || !matches_tree(&wt, Some(&head_tree), worktree)? {
            return Err(GitError::WorktreeDirty {
                path: worktree.to_path_buf(),
            });
        }
        let target_tip =
            branch_tip_in(&wt, target_branch)?.ok_or_else(|| GitError::BranchNotFound {
                branch: target_branch.to_string(),
            })?;
        let target = wt
            .find_commit(target_tip)
            .map_err(|e| GitError::git("read commit", target_tip.to_string(), e))?;
        let pair = || format!("{target_branch}` into `{branch}");
        let trial = wt
            .merge_commits(&head, &target, None)
            .map_err(|e| GitError::git("merge", pair(), e))?;
        if !trial.has_conflicts() {
            return Ok(HandBackResult::NoConflict);
        }
        let reference = wt
            .find_reference(&format!("refs/heads/{target_branch}"))
            .map_err(|e| GitError::git("read branch", target_branch, e))?;
        let theirs = wt
            .reference_to_annotated_commit(&reference)
            .map_err(|e| GitError::git("read branch", target_branch, e))?;
        let mut checkout = CheckoutBuilder::new();
        checkout
            .safe()
            .allow_conflicts(true)
            .conflict_style_merge(true);
        wt.merge(
            &[&theirs],
            Some(&mut MergeOptions::new()),
            Some(&mut checkout),
        )
        .map_err(|e| GitError::git("merge", pair(), e))?;
        let paths = conflicted_paths(&wt, worktree)?;
        // libgit2 writes its own MERGE_MSG; git's names both branches and
        // lists the conflicts as comments.
        let mut message = format!("Merge branch '{target_branch}' into {branch}\n\n# Conflicts:\n");
        for path in &paths {
            message.push_str(&format!("#\t{path}\n"));
        }
        let msg_path = wt.path().join("MERGE_MSG");
        std::fs::write(&msg_path, message).map_err(|e| GitError::io("write", &msg_path, e))?;
        Ok(HandBackResult::Prepared(HandBack {
            target_tip,
            branch_tip: head.id(),
            paths,
            other_side: commits_between_in(&wt, head.id(), target_tip)?,
        }))
    }

    /// Whether the agent in `worktree` concluded the merge prepared by
    /// [`Repo::hand_back_conflict`]: no merge in progress, no conflict
    /// stages in the index, `branch`'s tip a commit with `hand_back.target_tip`
    /// as a parent, and no conflict markers left in the conflicted files.
    pub fn resolution_outcome(
        &self,
        worktree: &Path,
        branch: &str,
        hand_back: &HandBack,
    ) -> Result<Resolution, GitError> {
        let wt = open_worktree(worktree)?;
        let unresolved = |reason: String| Ok(Resolution::Unresolved { reason });
        if wt.state() == RepositoryState::Merge {
            return unresolved(format!(
                "the merge in `{}` was not concluded (`MERGE_HEAD` is still set)",
                worktree.display()
            ));
        }
        if !conflicted_paths(&wt, worktree)?.is_empty() {
            return unresolved(format!(
                "the index of `{}` still has conflicts",
                worktree.display()
            ));
        }
        let Some(tip) = branch_tip_in(&wt, branch)? else {
            return Err(GitError::BranchNotFound {
                branch: branch.to_string(),
            });
        };
        let commit = wt
            .find_commit(tip)
            .map_err(|e| GitError::git("read commit", tip.to_string(), e))?;
        if !commit.parent_ids().any(|p| p == hand_back.target_tip) {
            return unresolved(format!(
                "branch `{branch}` has no commit with the target ({}) as a parent",
                hand_back.target_tip
            ));
        }
        let tree = commit
            .tree()
            .map_err(|e| GitError::git("read tree of", tip.to_string(), e))?;
        for path in &hand_back.paths {
            let Ok(entry) = tree.get_path(Path::new(path)) else {
                continue; // resolved by deleting it
            };
            let Ok(blob) = wt.find_blob(entry.id()) else {
                continue; // not a file
            };
            if has_conflict_markers(blob.content()) {
                return unresolved(format!(
                    "`{path}` still has conflict markers in {tip} on branch `{branch}`"
                ));
            }
        }
        Ok(Resolution::Concluded { commit: tip })
    }
}

/// The files of a merge in progress besides the index, in a git directory.
const MERGE_FILES: [&str; 3] = ["MERGE_HEAD", "MERGE_MSG", "MERGE_MODE"];

/// An isolated agent's git works in its private git directory: hands it the
/// conflicted merge [`Repo::hand_back_conflict`] prepared in `worktree`'s
/// own git directory (its index, with the conflict stages, and
/// `MERGE_HEAD`, `MERGE_MSG`, `MERGE_MODE`).
pub fn share_merge_state(worktree: &Path, git_dir: &Path) -> Result<(), GitError> {
    let admin = open_worktree(worktree)?.path().to_path_buf();
    copy_merge_files(&admin, git_dir, true)
}

/// After an isolated agent (and `import_private_git`, which makes its
/// index the worktree's): the merge state of its private git directory
/// becomes the worktree's — gone when it concluded the merge, still there
/// when it did not.
pub fn take_merge_state(worktree: &Path, git_dir: &Path) -> Result<(), GitError> {
    let admin = open_worktree(worktree)?.path().to_path_buf();
    copy_merge_files(git_dir, &admin, false)
}

fn copy_merge_files(from: &Path, to: &Path, index: bool) -> Result<(), GitError> {
    let names = MERGE_FILES.iter().chain(index.then_some(&"index"));
    for name in names {
        let (src, dst) = (from.join(name), to.join(name));
        if src.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| GitError::io("copy", &src, e))?;
        } else if let Err(e) = std::fs::remove_file(&dst) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(GitError::io("remove", &dst, e));
            }
        }
    }
    Ok(())
}

impl Repo {
    /// Gives up a merge in progress in `worktree` that nobody can account
    /// for (its preparation was killed half-way): the index and tracked
    /// files back to HEAD, the merge state removed. Untracked files stay.
    pub fn abort_merge(worktree: &Path) -> Result<(), GitError> {
        let wt = open_worktree(worktree)?;
        let at = || worktree.display().to_string();
        let head = wt
            .head()
            .and_then(|h| h.peel(git2::ObjectType::Commit))
            .map_err(|e| GitError::git("read HEAD of", at(), e))?;
        wt.reset(&head, git2::ResetType::Hard, None)
            .map_err(|e| GitError::git("reset", at(), e))?;
        wt.cleanup_state()
            .map_err(|e| GitError::git("end the merge in", at(), e))
    }

    /// Whether `worktree` has a merge in progress (`MERGE_HEAD` set), as
    /// [`Repo::hand_back_conflict`] leaves it until the merge is concluded
    /// or aborted.
    pub fn merge_in_progress(worktree: &Path) -> Result<bool, GitError> {
        Ok(open_worktree(worktree)?.state() == RepositoryState::Merge)
    }
}

/// Whether `text` has a line git writes around a conflict.
pub fn has_conflict_markers(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        ["<<<<<<<", ">>>>>>>", "|||||||"].iter().any(|m| {
            line.starts_with(m.as_bytes()) && matches!(line.get(7), None | Some(b' ') | Some(b'\r'))
        })
    })
}

/// The paths with conflict stages in the worktree's index, sorted.
fn conflicted_paths(wt: &Repository, worktree: &Path) -> Result<Vec<String>, GitError> {
    let at = || worktree.display().to_string();
    let index = wt
        .index()
        .map_err(|e| GitError::git("read the index of", at(), e))?;
    let mut paths = std::collections::BTreeSet::new();
    let conflicts = index
        .conflicts()
        .map_err(|e| GitError::git("read the conflicts of", at(), e))?;
    for conflict in conflicts {
        let conflict = conflict.map_err(|e| GitError::git("read the conflicts of", at(), e))?;
        if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
            paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}
