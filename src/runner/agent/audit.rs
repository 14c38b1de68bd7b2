//! What an attempt left on its branch: leftovers committed (or refused),
//! the commits and changed paths since the start, and the scope audit of
//! those paths against the spec's declared files. Shared by the instance
//! task and the conflict hand-back.

use std::path::Path;

use globset::GlobSetBuilder;

use crate::config::{CommitMode, ScopeMode};
use crate::git::{Repo, WorktreeStamp};
use crate::runner::messages::Work;
use crate::spec::Spec;
use crate::state::{RunDir, RunOptions};

/// `<instance dir>/git`: the agent's private git directory under isolation.
pub(crate) fn private_git_dir(dir: &RunDir, id: &str) -> std::path::PathBuf {
    dir.instance_dir(id).join("git")
}

/// Commits leftovers (or refuses them with `commit: off`), then reads what the
/// branch holds since `start` and audits it against the declared files.
pub fn collect_work(
    opts: &RunOptions,
    spec: &Spec,
    worktree: &Path,
    start: &str,
) -> Result<Work, String> {
    collect_work_since(opts, spec, worktree, start, None)
}

/// [`collect_work`], with the stamp of the clean worktree taken before its
/// agent started (see [`WorktreeStamp`]): when nothing moved since, no
/// index is read and no file listed. One listing serves the leftover
/// commit (or the `commit: off` check); the audit reads the branch.
pub fn collect_work_since(
    opts: &RunOptions,
    spec: &Spec,
    worktree: &Path,
    start: &str,
    stamp: Option<&WorktreeStamp>,
) -> Result<Work, String> {
    let _span = tracing::debug_span!("collect_work", spec = %spec.id).entered();
    let branch = spec.branch();
    // What setup copied or linked in is not the agent's work.
    let placed = opts.setup_placed();
    let changes = Repo::worktree_changes_since(worktree, &placed, stamp).map_err(|e| {
        format!(
            "failed to read the status of `{}`: {}",
            worktree.display(),
            crate::error::chain(&e)
        )
    })?;
    let auto_commit = match opts.commit {
        CommitMode::Auto => changes
            .commit(&format!(
                "treefarm: commit changes left uncommitted by the agent for {}",
                spec.id
            ))
            .map_err(|e| {
                format!(
                    "failed to commit leftovers in `{}`: {}",
                    worktree.display(),
                    crate::error::chain(&e)
                )
            })?
            .map(|oid| oid.to_string()),
        CommitMode::Off => {
            let dirty = changes.is_dirty().map_err(|e| {
                format!(
                    "failed to read the status of `{}`: {}",
                    worktree.display(),
                    crate::error::chain(&e)
                )
            })?;
            if dirty {
                return Err(format!(
                    "the agent left uncommitted changes in `{}` (agent.commit: off)",
                    worktree.display()
                ));
            }
            None
        }
    };
    let repo = Repo::discover(&opts.repo_root).map_err(|e| crate::error::chain(&e))?;
    let tip = repo
        .branch_tip(&branch)
        .map_err(|e| crate::error::chain(&e))?
        .ok_or_else(|| format!("branch `{branch}` disappeared"))?;
    let start_oid = repo.resolve(start).map_err(|e| crate::error::chain(&e))?;
    let commits = repo
        .commits_between(start_oid, tip)
        .map_err(|e| crate::error::chain(&e))?;
    let changed = {
        let _span = tracing::debug_span!("scope_audit").entered();
        repo.diff_paths(start_oid, tip)
            .map_err(|e| crate::error::chain(&e))?
    };
    let scope_creep = if opts.scope == ScopeMode::Off {
        Vec::new()
    } else {
        undeclared(spec, &changed)
    };
    Ok(Work {
        tip: tip.to_string(),
        auto_commit,
        commits: commits.len(),
        subjects: commits.into_iter().map(|c| c.summary).collect(),
        changed,
        scope_creep,
    })
}

/// The changed paths that no declared (or shared) path or glob covers.
pub fn undeclared(spec: &Spec, changed: &[String]) -> Vec<String> {
    let mut set = GlobSetBuilder::new();
    for pattern in spec.files.iter().chain(&spec.shared) {
        if let Ok(glob) = crate::spec::compile_glob(pattern) {
            set.add(glob);
        }
    }
    let Ok(set) = set.build() else {
        return Vec::new();
    };
    changed
        .iter()
        .filter(|p| !set.is_match(p.as_str()))
        .cloned()
        .collect()
}
