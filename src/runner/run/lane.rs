//! The lane: the blocking git work of a run — planting worktrees, merging a
//! branch, pruning a merged one. The dispatcher runs these on blocking
//! threads, one merge or prune at a time (they share git's worktree admin
//! files), and hears back through [`LaneMsg`].

use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use crate::git::{Advance, BatchItem, BatchMerge, GitError, Oid, Repo, WorktreeRequest};
use crate::merge::{self, MergeRequest, MergeResult};
use crate::merge_queue::Built;
use crate::runner::messages::{BatchBuilt, LaneMsg, Launch, MergeAck, Planted};
use crate::runner::slot::worktree_admin::{worktree_admin, worktree_admin_for_plant};
use crate::spec::branch_for;
use crate::state::crash_point;
use crate::state::RunOptions;

/// Why a lane job failed; each keeps its cause (the dispatcher records the
/// whole chain as the instance's reason).
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    #[error("target branch `{target}` does not exist")]
    NoTarget { target: String },
    #[error("failed to create the worktree folder `{}`", path.display())]
    WorktreeDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spec `{id}` is not part of this run")]
    UnknownSpec { id: String },
}

/// Creates the branches and worktrees of a batch (`reuse`: a resumed
/// instance's existing branch and worktree are taken as they are).
pub fn plant_batch(
    opts: &RunOptions,
    mut launches: Vec<Launch>,
    reuse: bool,
) -> Result<Planted, LaneError> {
    // After any prune or land waiting: they keep the worktrees few.
    let _admin = worktree_admin_for_plant();
    let repo = Repo::discover(&opts.repo_root)?;
    let tip = repo
        .branch_tip(&opts.target)?
        .ok_or_else(|| LaneError::NoTarget {
            target: opts.target.clone(),
        })?;
    std::fs::create_dir_all(&opts.worktree_dir).map_err(|source| LaneError::WorktreeDir {
        path: opts.worktree_dir.clone(),
        source,
    })?;
    let mut requests = Vec::new();
    for launch in &mut launches {
        if launch.start_commit.is_empty() {
            launch.start_commit = tip.to_string();
        }
        requests.push(WorktreeRequest {
            name: launch.id.clone(),
            path: opts.worktree_for(&launch.id),
            branch: crate::spec::branch_for(&launch.id),
            start: repo.resolve(&launch.start_commit)?,
            reuse,
            sparse: opts.sparse_for(&launch.id),
        });
    }
    let results = repo.add_worktrees(&requests);
    Ok(launches
        .into_iter()
        .zip(results)
        .map(|(l, r)| (l, r.map_err(|e| crate::error::chain(&e))))
        .collect())
}

/// Merges the branch of `id` into the target, ungated (a gated merge goes
/// through the merge queue); the target ref moves only after the dispatcher
/// acknowledged the journalled intent ([`LaneMsg::MergePrepared`]).
pub fn merge_one(
    opts: &RunOptions,
    run_id: &str,
    id: &str,
    subjects: &[String],
    tx: &mpsc::UnboundedSender<LaneMsg>,
    acks: &mpsc::UnboundedSender<MergeAck>,
) -> Result<MergeResult, LaneError> {
    let (branch, message) = merge_message(opts, run_id, id, subjects)?;
    let request = MergeRequest {
        repo_root: &opts.repo_root,
        target: &opts.target,
        branch: &branch,
        strategy: opts.strategy,
        message,
    };
    let tip = Repo::discover(&opts.repo_root)?
        .branch_tip(&branch)?
        .map(|t| t.to_string());
    let result = merge::merge_branch(&request, |_old, new| {
        let (ack, done) = oneshot::channel();
        let not_journalled = || merge::MergeError::NotJournalled {
            branch: branch.clone(),
        };
        acks.send((id.to_string(), ack))
            .map_err(|_| not_journalled())?;
        tx.send(LaneMsg::MergePrepared {
            id: id.to_string(),
            new: new.to_string(),
            tip: tip.clone(),
        })
        .map_err(|_| not_journalled())?;
        done.blocking_recv()
            .map_err(|_| merge::MergeError::NotJournalled {
                branch: branch.clone(),
            })
    })?;
    Ok(result)
}

/// `id`'s branch and the message of its merge commit (`subjects`: its
/// commits' subjects; for a squash without them, read from git).
fn merge_message(
    opts: &RunOptions,
    run_id: &str,
    id: &str,
    subjects: &[String],
) -> Result<(String, String), LaneError> {
    let spec = opts
        .spec(id)
        .ok_or_else(|| LaneError::UnknownSpec { id: id.to_string() })?;
    let branch = spec.branch();
    let subjects: Vec<String> =
        if subjects.is_empty() && opts.strategy == crate::config::Strategy::Squash {
            let repo = Repo::discover(&opts.repo_root)?;
            match (repo.branch_tip(&opts.target)?, repo.branch_tip(&branch)?) {
                (Some(t), Some(b)) => repo
                    .commits_between(t, b)?
                    .into_iter()
                    .map(|c| c.summary)
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            subjects.to_vec()
        };
    let message = merge::message(opts.strategy, id, &spec.title, &branch, &subjects, run_id);
    Ok((branch, message))
}

/// Builds merge-queue batch `ids` in memory (`git/batch.rs`): each branch
/// merged on top of the one before, with the message merging it alone would
/// get, on the target tip or on `onto`. Returns the base and each branch's
/// result, named by spec id.
pub fn build_batch(
    opts: &RunOptions,
    run_id: &str,
    ids: &[(String, Vec<String>)],
    onto: Option<&str>,
) -> Result<BatchBuilt, LaneError> {
    let repo = Repo::discover(&opts.repo_root)?;
    let mut items = Vec::with_capacity(ids.len());
    let mut by_branch = std::collections::HashMap::new();
    let mut tips = Vec::with_capacity(ids.len());
    for (id, subjects) in ids {
        let (branch, message) = merge_message(opts, run_id, id, subjects)?;
        if let Some(tip) = repo.branch_tip(&branch)? {
            tips.push((id.clone(), tip.to_string()));
        }
        by_branch.insert(branch.clone(), id.clone());
        items.push(BatchItem { branch, message });
    }
    let onto = onto.map(|c| repo.resolve(c)).transpose()?;
    let build = repo.build_batch(
        &opts.target,
        onto,
        &items,
        merge::git_strategy(opts.strategy),
    )?;
    let id_of = |branch: &str| by_branch.get(branch).cloned().unwrap_or_default();
    let results = build
        .merges
        .into_iter()
        .map(|m| match m {
            BatchMerge::Merged { branch, commit } => Built::Merged {
                branch: id_of(&branch),
                commit: commit.to_string(),
            },
            BatchMerge::Conflicted { branch, paths } => Built::Conflicted {
                branch: id_of(&branch),
                paths,
            },
        })
        .collect();
    Ok(BatchBuilt {
        base: build.base.to_string(),
        results,
        tips,
    })
}

/// Lands a gated batch: moves the target from `old` to `new` by
/// compare-and-swap. `Ok(true)` when the target holds `new` — also when it
/// already did (a land redone after a crash) — `Ok(false)` when someone
/// else moved it. The journal says the branches are merging before this
/// runs.
pub fn land_batch(opts: &RunOptions, old: &str, new: &str) -> Result<bool, LaneError> {
    let _admin = worktree_admin();
    let repo = Repo::discover(&opts.repo_root)?;
    let old = Oid::from_str(old).map_err(|e| GitError::git("read commit", old, e))?;
    let new = Oid::from_str(new).map_err(|e| GitError::git("read commit", new, e))?;
    if let Some(tip) = repo.branch_tip(&opts.target)? {
        if tip == new || (!new.is_zero() && repo.is_ancestor(new, tip)?) {
            return Ok(true);
        }
    }
    crash_point("before-ref-update");
    match repo.advance_target(&opts.target, old, new)? {
        Advance::Moved => Ok(true),
        Advance::Raced { current } => {
            tracing::info!(target_branch = %opts.target, %current, "target moved meanwhile; merging the batch again");
            Ok(false)
        }
    }
}

/// Removes a merged instance's worktree, then its branch.
pub fn prune_one(opts: &RunOptions, id: &str) -> Result<(), LaneError> {
    let _admin = worktree_admin();
    crash_point("before-prune");
    let repo = Repo::discover(&opts.repo_root)?;
    let worktree: PathBuf = opts.worktree_for(id);
    let present = worktree.exists() || repo.worktrees()?.iter().any(|w| w.name == id);
    let branch = branch_for(id);
    let at = present.then_some(worktree.as_path());
    match remove_worktree_and_branch(&repo, at, &branch, false) {
        // A removal killed half-way (coordinator crash during prune) leaves
        // a worktree missing files: those are all in the merged branch, so
        // finishing the removal loses nothing. Anything else is kept. (Asked
        // only when the worktree is found dirty: the status scan of a clean
        // one is the removal's own, not done twice.)
        Err(GitError::WorktreeDirty { .. }) if Repo::only_deletions(&worktree)? => {
            remove_worktree_and_branch(&repo, at, &branch, true)?
        }
        other => other?,
    }
    Ok(())
}

/// The removal step of pruning, for the lane and `treefarm prune` alike:
/// the worktree (if any; `force` also removes one with changes), then the
/// branch. Whether to prune at all is the caller's decision (merged and
/// clean, or `--force` after archiving the tip).
pub fn remove_worktree_and_branch(
    repo: &Repo,
    worktree: Option<&Path>,
    branch: &str,
    force: bool,
) -> Result<(), GitError> {
    if let Some(worktree) = worktree {
        repo.remove_worktree(worktree, force)?;
    }
    crash_point("during-prune");
    if repo.branch_tip(branch)?.is_some() {
        repo.delete_branch(branch)?;
    }
    Ok(())
}
