//! Merging one finished branch into the target: in memory, then the target
//! ref moves by compare-and-swap. Never a checkout of the user's tree, never
//! a half-applied merge. Ungated only: every gated merge goes through the
//! merge queue, whose gates (`runner/slot/gates.rs`) are process groups with a
//! timeout, stoppable and confined.

use std::path::Path;

use crate::config::Strategy;
use crate::git::{Advance, GitError, MergeStrategy, Oid, Prepared, Repo};

/// Why a merge could not even be decided (a conflict is a [`MergeResult`],
/// not an error). Each keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Git(#[from] GitError),
    /// The intent to move the target could not be made durable: the ref
    /// is not moved.
    #[error("the merge of `{branch}` was not journalled; the target was not moved")]
    NotJournalled { branch: String },
    #[error(
        "target `{target}` kept moving while merging `{branch}`; gave up after {attempts} attempts"
    )]
    KeptMoving {
        target: String,
        branch: String,
        attempts: usize,
    },
}

/// How a merge attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeResult {
    /// The target now holds the branch; `commit` is the new target tip.
    Merged {
        commit: String,
    },
    /// The branch had nothing the target lacks.
    UpToDate {
        commit: String,
    },
    Conflicted {
        paths: Vec<String>,
    },
    /// The target could not be moved safely.
    Refused {
        reason: String,
        log: Option<String>,
    },
}

/// What to merge and how.
pub struct MergeRequest<'a> {
    pub repo_root: &'a Path,
    pub target: &'a str,
    pub branch: &'a str,
    pub strategy: Strategy,
    pub message: String,
}

/// The git side's name for a merge strategy.
pub fn git_strategy(s: Strategy) -> MergeStrategy {
    match s {
        Strategy::Merge => MergeStrategy::Merge,
        Strategy::Squash => MergeStrategy::Squash,
        Strategy::Rebase => MergeStrategy::Rebase,
    }
}

/// Merges `req.branch` into `req.target`. `before_move(old, new)` is called
/// once the merged commit exists, before the ref moves:
/// the journal records the intent there, so a crash after it can be
/// reconciled. A target moved by someone else meanwhile means recompute.
pub fn merge_branch(
    req: &MergeRequest<'_>,
    mut before_move: impl FnMut(Oid, Oid) -> Result<(), MergeError>,
) -> Result<MergeResult, MergeError> {
    const MAX_RACES: usize = 20;
    let repo = Repo::discover(req.repo_root)?;
    for _ in 0..MAX_RACES {
        let (old, new) = match repo.prepare_merge(
            req.target,
            req.branch,
            git_strategy(req.strategy),
            &req.message,
        )? {
            Prepared::Ready { old, new } => (old, new),
            Prepared::Conflicted { paths } => return Ok(MergeResult::Conflicted { paths }),
            Prepared::UpToDate { tip } => {
                return Ok(MergeResult::UpToDate {
                    commit: tip.to_string(),
                })
            }
        };
        before_move(old, new)?;
        crate::state::crash_point("before-ref-update");
        match repo.advance_target(req.target, old, new) {
            Ok(Advance::Moved) => {
                return Ok(MergeResult::Merged {
                    commit: new.to_string(),
                })
            }
            Ok(Advance::Raced { current }) => {
                tracing::info!(target_branch = req.target, %current, "target moved meanwhile; merging again");
                continue;
            }
            Err(err) if err.is_user_fixable() => {
                return Ok(MergeResult::Refused {
                    reason: crate::error::chain(&err),
                    log: None,
                })
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(MergeError::KeptMoving {
        target: req.target.to_string(),
        branch: req.branch.to_string(),
        attempts: MAX_RACES,
    })
}

/// The commit message for a spec's merge under each strategy.
pub fn message(
    strategy: Strategy,
    id: &str,
    title: &str,
    branch: &str,
    subjects: &[String],
    run_id: &str,
) -> String {
    match strategy {
        Strategy::Merge => {
            format!("Merge {branch}: {title} (SPEC-{id})\n\ntreefarm run {run_id}\n")
        }
        Strategy::Squash => {
            let mut m =
                format!("{title} (SPEC-{id})\n\nSquashed from {branch}, treefarm run {run_id}:\n");
            for s in subjects {
                m.push_str(&format!("- {s}\n"));
            }
            m
        }
        Strategy::Rebase => String::new(),
    }
}
