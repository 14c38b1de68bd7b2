//! Building a merge-queue batch: several branches merged in memory one on top
//! of the other, starting from the target tip, each exactly as
//! [`Repo::prepare_merge`] would merge it into a target that already holds
//! the ones before — so landing the batch's last commit gives the same
//! history as merging them one by one. Nothing is referenced: the commits
//! wait in the object database for the gate and the compare-and-swap.

use git2::Oid;

use super::error::GitError;
use super::merge::{merge_onto, MergeStrategy, Prepared};
use super::repo::{branch_tip_in, Repo};

/// One branch to merge into a batch, with its merge (or squash) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub branch: String,
    pub message: String,
}

/// How one branch fared in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchMerge {
    /// Merged; `commit` is the batch's tip with it (the previous tip when
    /// the branch brought nothing new).
    Merged { branch: String, commit: Oid },
    /// It conflicts with the target plus the branches merged before it; it
    /// left the batch and the next branch merges on the previous tip.
    Conflicted { branch: String, paths: Vec<String> },
}

/// A built batch: the target tip it starts from (`Oid::zero()` when the
/// target branch does not exist yet) and each branch's result, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchBuild {
    pub base: Oid,
    pub merges: Vec<BatchMerge>,
}

impl BatchBuild {
    /// The batch's last commit: what the gate tests and the target moves to.
    pub fn tip(&self) -> Oid {
        self.merges
            .iter()
            .rev()
            .find_map(|m| match m {
                BatchMerge::Merged { commit, .. } => Some(*commit),
                BatchMerge::Conflicted { .. } => None,
            })
            .unwrap_or(self.base)
    }
}

impl Repo {
    /// Merges `items` in order onto the tip of `target_branch` — or onto
    /// `onto`, the unlanded tip of the batch before (a speculative batch) —
    /// in memory. A branch that does not exist is an error naming it;
    /// nothing is referenced or checked out.
    pub fn build_batch(
        &self,
        target_branch: &str,
        onto: Option<Oid>,
        items: &[BatchItem],
        strategy: MergeStrategy,
    ) -> Result<BatchBuild, GitError> {
        let repo = self.open()?;
        let base = match onto {
            Some(commit) => commit,
            None => branch_tip_in(&repo, target_branch)?.unwrap_or(Oid::zero()),
        };
        let mut tip = base;
        let mut merges = Vec::with_capacity(items.len());
        for item in items {
            let theirs =
                branch_tip_in(&repo, &item.branch)?.ok_or_else(|| GitError::BranchNotFound {
                    branch: item.branch.clone(),
                })?;
            let prepared = if tip.is_zero() {
                Prepared::Ready {
                    old: tip,
                    new: theirs,
                }
            } else {
                merge_onto(
                    &repo,
                    tip,
                    theirs,
                    strategy,
                    &item.message,
                    &format!("{}` into the batch on `{target_branch}", item.branch),
                )?
            };
            match prepared {
                Prepared::Ready { new, .. } => tip = new,
                Prepared::UpToDate { .. } => {}
                Prepared::Conflicted { paths } => {
                    merges.push(BatchMerge::Conflicted {
                        branch: item.branch.clone(),
                        paths,
                    });
                    continue;
                }
            }
            merges.push(BatchMerge::Merged {
                branch: item.branch.clone(),
                commit: tip,
            });
        }
        Ok(BatchBuild { base, merges })
    }
}
