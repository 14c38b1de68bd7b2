//! `treefarm prune`: remove what was merged, keep what was not.
//!
//! A `treefarm/<id>` branch is merged when its tip is in the target's history,
//! or when a run journal records it merged at that very tip (squash and rebase
//! leave no ancestry). Unmerged branches and dirty worktrees are kept unless
//! `--force`, and even then their tips are archived under
//! `refs/treefarm/archive/<id>` first. Branches of unfinished runs belong to
//! `resume` and are left alone unless `--all`. The folders of finished
//! splits (`splits/<id>/`) go too; a running split's stays.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use anyhow::Context as _;

use crate::cli::context::{git_err, Ctx};
use crate::error::ExitCode;
use crate::git::Oid;
use crate::state::{InstanceState, RunState, StateDir};

pub fn prune(
    ctx: &Ctx,
    dry_run: bool,
    all: bool,
    force: bool,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let repo = &ctx.repo;
    let state = StateDir::new(repo.common_dir());
    let mut targets: BTreeSet<String> = BTreeSet::new();
    targets.insert(ctx.config.target.clone());
    // branch -> tips recorded as merged; branch -> run that still owns it.
    let mut merged_tips: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut owned: HashMap<String, String> = HashMap::new();
    // branch -> the private git dir its isolated agent committed into. A run
    // killed after the agent exited but before treefarm published that work
    // has commits only there: they are published before the branch is
    // judged, so `--force` archives them like any other unmerged commit.
    let mut private: HashMap<String, std::path::PathBuf> = HashMap::new();
    for run_id in state.runs()? {
        let Ok(dir) = state.open_run(&run_id) else {
            continue;
        };
        let Ok(record) = dir.read_state() else {
            continue;
        };
        targets.insert(record.target().to_string());
        let unfinished = record.state != RunState::Finished;
        for inst in &record.instances {
            let git_dir = dir.instance_dir(&inst.id).join("git");
            if git_dir.join("HEAD").is_file() {
                private.insert(inst.branch.clone(), git_dir);
            }
            if matches!(inst.state, InstanceState::Merged | InstanceState::Pruned) {
                if let Some(tip) = &inst.tip {
                    merged_tips
                        .entry(inst.branch.clone())
                        .or_default()
                        .insert(tip.clone());
                }
            } else if unfinished && !inst.state.is_terminal() {
                owned.insert(inst.branch.clone(), run_id.clone());
            }
        }
    }
    let target_tips: Vec<Oid> = targets
        .iter()
        .filter_map(|t| repo.branch_tip(t).ok().flatten())
        .collect();

    let verb = if dry_run { "would remove" } else { "removed" };
    let worktrees = repo.worktrees().map_err(git_err)?;
    for wt in worktrees.iter().filter(|w| !w.is_main && !w.path_exists) {
        writeln!(
            err,
            "{verb} stale worktree entry `{}` ({} no longer exists)",
            wt.name,
            wt.path.display()
        )?;
    }
    if !dry_run {
        repo.prune_stale().map_err(git_err)?;
    }

    let mut kept = 0usize;
    let mut freed = 0u64;
    for (branch, mut tip) in repo.branches_with_prefix("treefarm/").map_err(git_err)? {
        // The temporary branches of a gate worktree or a split's throwaway
        // worktree while it is planted: not a spec's.
        if branch.starts_with("treefarm/gate-") || branch.starts_with("treefarm/split-") {
            continue;
        }
        let id = branch.trim_start_matches("treefarm/").to_string();
        let worktree = worktrees
            .iter()
            .find(|w| w.branch.as_deref() == Some(branch.as_str()) && !w.is_main && w.path_exists);
        if let (Some(run), false) = (owned.get(&branch), all) {
            writeln!(err, "kept    {branch}: run {run} is unfinished (`treefarm resume {run}`, or prune --all)")?;
            kept += 1;
            continue;
        }
        if let (Some(git_dir), Some(w), false) = (private.get(&branch), worktree, dry_run) {
            match crate::git::import_private_git(&w.path, &branch, git_dir) {
                Ok(Some(new_tip)) => {
                    writeln!(
                        err,
                        "published {branch}: the isolated agent's own commits, now at {new_tip}"
                    )?;
                    tip = new_tip;
                }
                Ok(None) => {}
                Err(e) => {
                    writeln!(
                        err,
                        "kept    {branch}: its isolated agent's commits in `{}` could not be published: {}",
                        git_dir.display(),
                        crate::error::chain(&e)
                    )?;
                    kept += 1;
                    continue;
                }
            }
        }
        let mut merged = merged_tips
            .get(&branch)
            .is_some_and(|tips| tips.contains(&tip.to_string()));
        for t in &target_tips {
            if merged {
                break;
            }
            merged = *t == tip || repo.is_ancestor(tip, *t).map_err(git_err)?;
        }
        let dirty = match worktree {
            Some(w) => crate::git::Repo::is_dirty(&w.path).map_err(git_err)?,
            None => false,
        };
        let why_kept = match (merged, dirty) {
            (true, false) => None,
            (true, true) => Some("merged, but its worktree has uncommitted changes"),
            (false, _) => Some("has commits not merged into the target"),
        };
        if let (Some(why), false) = (why_kept, force) {
            writeln!(
                err,
                "kept    {branch}: {why} (--force archives the tip and removes it)"
            )?;
            kept += 1;
            continue;
        }
        if dry_run {
            let how = if why_kept.is_some() {
                " (after archiving its tip)"
            } else {
                ""
            };
            writeln!(err, "{verb} {branch}{how}")?;
            continue;
        }
        if why_kept.is_some() {
            let archived = repo.archive(&id, tip).map_err(git_err)?;
            writeln!(err, "archived {branch} at {tip} as {archived}")?;
        }
        let size = worktree.map_or(0, |w| crate::disk::disk_usage(&w.path));
        crate::runner::run::lane::remove_worktree_and_branch(
            repo,
            worktree.map(|w| w.path.as_path()),
            &branch,
            force,
        )
        .map_err(git_err)?;
        freed += size;
        writeln!(
            err,
            "{verb} {branch}{}",
            if worktree.is_some() {
                format!(
                    " and its worktree ({})",
                    crate::policy::reserve::human_bytes(size)
                )
            } else {
                String::new()
            }
        )?;
    }
    freed += prune_gate_pool(repo, &state, dry_run, verb, err)?;
    freed += prune_splits(repo, &state, dry_run, verb, err)?;
    if freed > 0 {
        writeln!(
            err,
            "freed {} of disk",
            crate::policy::reserve::human_bytes(freed)
        )?;
    }
    if kept > 0 {
        writeln!(err, "{kept} branch(es) kept")?;
    }
    Ok(ExitCode::Success)
}

/// Removes the merge queue's warm gate worktrees (kept across runs for
/// incremental gate builds), unless a run whose coordinator is alive may be
/// using them. Returns the bytes freed.
fn prune_gate_pool(
    repo: &crate::git::Repo,
    state: &StateDir,
    dry_run: bool,
    verb: &str,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    let slots = repo.gate_pool_slots();
    if slots.is_empty() {
        return Ok(0);
    }
    let busy = state.runs()?.into_iter().find(|run_id| {
        state
            .open_run(run_id)
            .and_then(|dir| dir.read_state())
            .is_ok_and(|r| r.state == RunState::Running && r.coordinator_alive())
    });
    if let Some(run) = busy {
        writeln!(
            err,
            "kept    the gate worktrees: run {run} is running and may be using them"
        )?;
        return Ok(0);
    }
    let mut freed = 0;
    for slot in slots {
        let path = repo.gate_worktree_path(slot);
        let size = crate::disk::disk_usage(&path);
        if !dry_run {
            repo.remove_gate_worktree(slot).map_err(git_err)?;
            freed += size;
        }
        writeln!(
            err,
            "{verb} gate worktree `{}` ({})",
            path.display(),
            crate::policy::reserve::human_bytes(size)
        )?;
    }
    Ok(freed)
}

/// Removes the folders of finished splits, `splits/<id>/` (the drafts and
/// diagnostics `split` kept, its logs, the agent's private folder with an
/// aider conversation), and the throwaway worktree a killed split left
/// behind; a split whose `treefarm split` still runs is left alone. The
/// specs a split wrote are in the spec folder, not here. Returns the bytes
/// freed.
fn prune_splits(
    repo: &crate::git::Repo,
    state: &StateDir,
    dry_run: bool,
    verb: &str,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    let Ok(entries) = std::fs::read_dir(state.path().join("splits")) else {
        return Ok(0);
    };
    let mut dirs: Vec<std::path::PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut freed = 0;
    let mut left_worktree = false;
    for dir in dirs {
        let id = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if crate::cli::split::split_running(&dir) {
            writeln!(
                err,
                "kept    split {id}: its `treefarm split` is still running"
            )?;
            continue;
        }
        let worktree = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("split-") || name.starts_with("gate-")
            });
        let size = crate::disk::disk_usage(&dir);
        if !dry_run {
            std::fs::remove_dir_all(&dir).with_context(|| {
                format!("failed to remove the split folder `{}`", dir.display())
            })?;
            freed += size;
            left_worktree |= worktree;
        }
        writeln!(
            err,
            "{verb} split {id}{} ({})",
            if worktree {
                " and the throwaway worktree it left"
            } else {
                ""
            },
            crate::policy::reserve::human_bytes(size)
        )?;
    }
    if left_worktree {
        // The removed worktree's admin entry is stale now.
        repo.prune_stale().map_err(git_err)?;
    }
    Ok(freed)
}
