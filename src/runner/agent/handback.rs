//! `merge.on_conflict: agent`: an instance task run to resolve a conflict.
//! Before its agent starts, the worktree is prepared as `git merge <target>`
//! leaves a conflicted merge (`git/merge_state.rs`) and the resolution prompt
//! is written; what was prepared is kept in `resolve.json` in the instance's
//! folder, so a resumed run judges the same merge. Afterwards the agent
//! concluded the merge (its branch is queued again) or did not (the branch
//! is `conflicted` and kept as it is, markers and all: nothing is committed
//! for it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agents::{render_resolve_prompt, resolve_env, ResolveContext};
use crate::git::{
    import_private_git, prepare_private_git, private_branch_moved, share_merge_state,
    take_merge_state, HandBack, HandBackResult, Oid, Repo, Resolution,
};
use crate::runner::agent::audit::{collect_work, private_git_dir};
use crate::runner::messages::Verdict;
use crate::spec::Spec;
use crate::state::RunOptions;
use crate::state::{InstanceState, RunDir};

/// What the preparation decided.
pub enum Prepared {
    /// Run the agent with this environment on top of its usual one.
    Agent(Vec<(String, String)>),
    /// The branch merges cleanly with the target now: nothing to resolve.
    Clean,
}

/// The conflicted merge handed to the agent, as kept in `resolve.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    target_tip: String,
    branch_tip: String,
    paths: Vec<String>,
}

fn kept_path(dir: &RunDir, id: &str) -> PathBuf {
    dir.instance_dir(id).join("resolve.json")
}

fn resolve_prompt_path(dir: &RunDir, id: &str) -> PathBuf {
    dir.instance_dir(id).join("resolve-prompt.md")
}

/// Prepares `spec`'s worktree for a resolve attempt: the conflicted merge
/// (unless one is in progress already: an attempt resumed or repeated) and
/// the resolution prompt, whose path and the conflicted files go in the
/// agent's environment (`TREEFARM_MODE=resolve`).
pub fn prepare(
    opts: &RunOptions,
    dir: &RunDir,
    spec: &Spec,
    worktree: &Path,
) -> Result<Prepared, String> {
    let chain = |e: crate::git::GitError| crate::error::chain(&e);
    // The merge is prepared on an index in line with the branch.
    crate::git::settle_index(worktree).map_err(chain)?;
    let repo = Repo::discover(&opts.repo_root).map_err(chain)?;
    let branch = spec.branch();
    // An isolated agent's git works in its private git directory: what it
    // holds is taken first, as after an attempt (its commits published, its
    // index and merge state made the worktree's), so the worktree says
    // where the agent's git stands — a merge the agent concluded while
    // nobody watched is concluded. A hand-back noted but killed before it
    // was shared with the private directory (no merge there, nothing
    // committed there) is shared first: the worktree's conflicted index is
    // the truth, not the private clean one the import would copy over it.
    // Then the private directory is made current and handed the merge.
    let git_dir = private_git_dir(dir, &spec.id);
    let isolated = opts.isolation_active.is_some();
    if isolated {
        let noted_merge =
            Repo::merge_in_progress(worktree).map_err(chain)? && kept_path(dir, &spec.id).is_file();
        if noted_merge
            && git_dir.join("HEAD").is_file()
            && !git_dir.join("MERGE_HEAD").is_file()
            && !private_branch_moved(&branch, &git_dir)
        {
            share_merge_state(worktree, &git_dir).map_err(chain)?;
        }
        import_private_git(worktree, &branch, &git_dir).map_err(chain)?;
        if git_dir.join("HEAD").is_file() {
            take_merge_state(worktree, &git_dir).map_err(chain)?;
        }
        prepare_private_git(worktree, &branch, &git_dir).map_err(chain)?;
    }
    let in_progress = Repo::merge_in_progress(worktree).map_err(chain)?;
    let noted = kept_path(dir, &spec.id).is_file();
    let resume = in_progress && noted;
    if !resume {
        // A hand-back killed before it was noted, or what an attempt that
        // gave up left: back to the branch tip (tracked files; the branch's
        // commits are all there), and hand the conflict back afresh.
        let dirty = Repo::is_dirty_except(worktree, &opts.setup_placed()).map_err(chain)?;
        if in_progress || dirty {
            Repo::abort_merge(worktree).map_err(chain)?;
        }
        if noted {
            let stale = kept_path(dir, &spec.id);
            std::fs::remove_file(&stale)
                .map_err(|e| format!("failed to remove `{}`: {e}", stale.display()))?;
        }
    }
    let (paths, commits) = if resume {
        let kept = read_kept(dir, &spec.id)?;
        (kept.paths, Vec::new())
    } else {
        match repo
            .hand_back_conflict(worktree, &branch, &opts.target)
            .map_err(chain)?
        {
            HandBackResult::NoConflict => return Ok(Prepared::Clean),
            HandBackResult::Prepared(hand_back) => {
                let kept = Kept {
                    target_tip: hand_back.target_tip.to_string(),
                    branch_tip: hand_back.branch_tip.to_string(),
                    paths: hand_back.paths.clone(),
                };
                let path = kept_path(dir, &spec.id);
                let text = serde_json::to_string_pretty(&kept).map_err(|e| e.to_string())?;
                std::fs::write(&path, text)
                    .map_err(|e| format!("failed to write `{}`: {e}", path.display()))?;
                // Killed here: the hand-back is noted but not yet shared with
                // an isolated agent's private git directory.
                crate::state::crash_point("resolve-noted");
                let commits = hand_back
                    .other_side
                    .iter()
                    .map(|c| format!("{} {}", &c.id.to_string()[..7], c.summary))
                    .collect();
                (hand_back.paths, commits)
            }
        }
    };
    if isolated {
        share_merge_state(worktree, &git_dir).map_err(chain)?;
    }
    let prompt = render_resolve_prompt(
        opts.queue.resolve_prompt_template.as_deref(),
        &ResolveContext {
            task: opts.prompt_context(spec, &branch, worktree),
            conflicts: &paths,
            commits: &commits,
        },
    )
    .map_err(|e| crate::error::chain(&e))?;
    let prompt_path = resolve_prompt_path(dir, &spec.id);
    std::fs::write(&prompt_path, prompt)
        .map_err(|e| format!("failed to write `{}`: {e}", prompt_path.display()))?;
    let mut env = resolve_env(&paths);
    env.push((
        crate::agents::ENV_PROMPT_FILE.to_string(),
        prompt_path.display().to_string(),
    ));
    Ok(Prepared::Agent(env))
}

fn read_kept(dir: &RunDir, id: &str) -> Result<Kept, String> {
    let path = kept_path(dir, id);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "a merge is in progress but `{}` does not say which: {e}",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// The verdict of a resolve attempt whose agent ended with `exit_code`
/// (`None`: it did not exit on its own): `succeeded` when it concluded the
/// merge (what the branch holds is collected as after a task), else a
/// failure the machine records as `conflicted`. Nothing is committed for
/// an unresolved merge.
pub fn judge(
    opts: &RunOptions,
    dir: &RunDir,
    spec: &Spec,
    worktree: &Path,
    exit_code: Option<i32>,
) -> Verdict {
    let unresolved = |reason: String| Verdict::Failed {
        state: InstanceState::Conflicted,
        reason,
        exit_code,
        work: None,
    };
    if exit_code != Some(0) {
        let how = exit_code.map_or("did not finish".to_string(), |c| format!("exited {c}"));
        return unresolved(format!("the agent resolving the conflicts {how}"));
    }
    let kept = match read_kept(dir, &spec.id) {
        Ok(kept) => kept,
        Err(reason) => return unresolved(reason),
    };
    let oid =
        |s: &str| Oid::from_str(s).map_err(|e| format!("bad commit `{s}` in resolve.json: {e}"));
    // What the branch brings is judged on top of the target it merged:
    // the target's own commits and files are neither its work nor scope
    // creep (nor subjects of its merge commit).
    let merged_target = kept.target_tip.clone();
    let hand_back = match (oid(&kept.target_tip), oid(&kept.branch_tip)) {
        (Ok(target_tip), Ok(branch_tip)) => HandBack {
            target_tip,
            branch_tip,
            paths: kept.paths,
            other_side: Vec::new(),
        },
        (Err(reason), _) | (_, Err(reason)) => return unresolved(reason),
    };
    let git_dir = private_git_dir(dir, &spec.id);
    let outcome = (|| {
        if opts.isolation_active.is_some() {
            import_private_git(worktree, &spec.branch(), &git_dir)?;
            take_merge_state(worktree, &git_dir)?;
        }
        Repo::discover(&opts.repo_root)?.resolution_outcome(worktree, &spec.branch(), &hand_back)
    })();
    match outcome {
        Ok(Resolution::Concluded { .. }) => concluded(opts, spec, worktree, &merged_target),
        Ok(Resolution::Unresolved { reason }) => unresolved(reason),
        Err(err) => unresolved(crate::error::chain(&err)),
    }
}

/// The merge merges cleanly now, or the agent concluded it: the branch's
/// work, collected as after a task.
pub fn concluded(opts: &RunOptions, spec: &Spec, worktree: &Path, start: &str) -> Verdict {
    match collect_work(opts, spec, worktree, start) {
        Ok(work) => Verdict::Succeeded(work),
        Err(reason) => Verdict::Failed {
            state: InstanceState::Conflicted,
            reason,
            exit_code: Some(0),
            work: None,
        },
    }
}
