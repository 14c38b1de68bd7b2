//! Fault injection: a real `treefarm run` on a real repository SIGKILLs
//! itself at each phase (`TREEFARM_CRASH_AT`), then `treefarm resume` must
//! finish the job with nothing lost, and a second `resume` must change
//! nothing. Git is the oracle: every commit an agent made (recorded by a
//! `post-commit` hook) is reachable, every spec's work is on `roadmap`, no
//! worktree, admin entry, branch or lock is left, the main worktree is
//! untouched.

use crate::common;

use common::{stderr, CrashRepo};

/// Three independent specs on two slots, so there are two planting batches
/// and three merges. Each agent commits once and leaves one change
/// uncommitted (treefarm's auto-commit must keep it).
fn three_specs() -> CrashRepo {
    let spec = |id: &'static str, file: &'static str| {
        (
            id,
            file,
            Box::leak(
                format!(
                    "write {file} \"{id} committed by the agent\"\ncommit \"agent {id}: first part\"\nappend {file} \"{id} left uncommitted\""
                )
                .into_boxed_str(),
            ) as &str,
        )
    };
    CrashRepo::new(
        &[
            spec("001", "src/a.txt"),
            spec("002", "src/b.txt"),
            spec("003", "src/c.txt"),
        ],
        2,
        &[],
    )
}

/// What every crash test checks once `resume` is done.
fn assert_finished_with_nothing_lost(crash: &CrashRepo, before: &str) {
    let repo = &crash.repo;
    for (id, file) in &crash.specs {
        let text = repo.git(&["show", &format!("roadmap:{file}")]);
        assert!(
            text.contains(&format!("{id} committed by the agent"))
                && text.contains(&format!("{id} left uncommitted")),
            "roadmap's {file} lacks the work of {id}:\n{text}"
        );
    }
    // No agent committed a half-made checkout: every file of the base is
    // still on roadmap.
    let base_files = repo.git(&["ls-tree", "-r", "--name-only", "main"]);
    let final_files = repo.git(&["ls-tree", "-r", "--name-only", "roadmap"]);
    for path in base_files.lines() {
        assert!(
            final_files.lines().any(|p| p == path),
            "{path} vanished from roadmap:\n{final_files}"
        );
    }
    let lost = crash.lost_commits();
    assert!(
        lost.is_empty(),
        "agent commits unreachable after resume: {lost:?}"
    );
    assert!(
        !crash.recorded("commits").is_empty(),
        "the commit hook recorded nothing"
    );
    let branches = repo.git(&["for-each-ref", "--format=%(refname)", "refs/heads/treefarm"]);
    assert_eq!(branches, "", "merged branches must be pruned");
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees.matches("worktree ").count(),
        1,
        "only the main worktree may remain:\n{worktrees}"
    );
    assert!(
        !worktrees.contains("prunable"),
        "stale admin entry:\n{worktrees}"
    );
    assert!(!repo.worktree_dir().join("001").exists());
    assert!(
        !repo.root.join(".git/treefarm/lock").exists(),
        "lock left behind"
    );
    assert_eq!(repo.main_snapshot(), before, "the main worktree changed");
    assert_eq!(
        crash.agents_alive(),
        Vec::<u32>::new(),
        "agents still running after resume"
    );
    let status = repo
        .treefarm()
        .args(["status", "--json"])
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(json["state"], "finished", "{json}");
    for inst in json["instances"].as_array().expect("instances") {
        assert_eq!(inst["state"], "pruned", "{json}");
    }
}

/// Crash at `point`, check `status` says interrupted with the resume command,
/// resume, check the outcome, resume again and check nothing changed.
fn crash_and_resume(crash: &CrashRepo, point: &str) {
    crash_tamper_and_resume(crash, point, |_| {});
}

/// Like [`crash_and_resume`], with `tamper` applied to the repository between
/// the crash and the resume (to reproduce what a kill inside libgit2 leaves).
fn crash_tamper_and_resume(crash: &CrashRepo, point: &str, tamper: impl FnOnce(&CrashRepo)) {
    let repo = &crash.repo;
    let before = repo.main_snapshot();
    crash.run_crashing_at(point);
    tamper(crash);

    let status = repo.treefarm().arg("status").output().expect("status");
    let text = format!("{}{}", common::stdout(&status), stderr(&status));
    assert!(
        text.contains("interrupted"),
        "status after a crash at {point}:\n{text}"
    );
    assert!(
        text.contains("treefarm resume "),
        "status must show the resume command:\n{text}"
    );

    let out = crash.resume();
    assert!(
        out.status.success(),
        "resume after a crash at {point} failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("took over a stale lock from dead pid"),
        "resume must report the stale lock it took over:\n{}",
        stderr(&out)
    );
    assert_finished_with_nothing_lost(crash, &before);
    // No agent was run twice: each finished on its first (and only) start.
    let mut starts: Vec<String> = crash
        .recorded("starts")
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    starts.sort();
    assert_eq!(
        starts,
        ["001", "002", "003"],
        "every agent runs exactly once"
    );

    let settled = crash.git_state();
    let again = crash.resume();
    assert!(
        again.status.success(),
        "second resume failed: {}",
        stderr(&again)
    );
    assert_eq!(
        crash.git_state(),
        settled,
        "a second resume changed something"
    );
}

#[test]
fn crash_after_plant_before_journalled_created() {
    crash_and_resume(&three_specs(), "after-plant");
}

#[test]
fn crash_inside_plant_between_branch_and_worktree() {
    crash_and_resume(&three_specs(), "plant-branch-created");
}

#[test]
fn crash_right_after_an_agent_start_is_journalled() {
    crash_and_resume(&three_specs(), "agents-running");
}

#[test]
fn crash_after_agent_exit_before_commit_and_audit() {
    crash_and_resume(&three_specs(), "after-exit");
}

#[test]
fn crash_with_merge_journalled_but_ref_not_moved() {
    crash_and_resume(&three_specs(), "before-ref-update");
}

#[test]
fn crash_on_second_merge_after_first_landed() {
    crash_and_resume(&three_specs(), "before-ref-update#2");
}

#[test]
fn crash_during_prune_worktree_removed_branch_not_deleted() {
    crash_and_resume(&three_specs(), "during-prune");
}

#[test]
fn crash_after_second_batch_planted() {
    crash_and_resume(&three_specs(), "after-plant#2");
}

/// A kill inside libgit2's worktree checkout leaves a registered worktree
/// with missing files and no index; its instance is journalled `creating`.
/// Reusing it would let the agent's `git add -A` commit the missing files as
/// deleted: resume must plant it again.
#[test]
fn crash_mid_checkout_replants_the_half_made_worktree() {
    let crash = three_specs();
    crash_tamper_and_resume(&crash, "after-plant", |crash| {
        let wt = crash.repo.worktree_dir().join("001");
        assert!(
            wt.join("README.md").exists(),
            "worktree 001 was planted before the crash"
        );
        std::fs::remove_file(wt.join("README.md")).expect("remove a checked-out file");
        std::fs::remove_dir_all(wt.join("specs")).expect("remove checked-out files");
        let _ = std::fs::remove_file(crash.repo.root.join(".git/worktrees/001/index"));
    });
}

/// A kill inside libgit2's ref update leaves `refs/heads/roadmap.lock`;
/// nobody holds it open, so resume removes it and the merge goes through
/// instead of being refused forever.
#[test]
fn crash_mid_ref_update_leaves_a_stale_ref_lock_that_resume_clears() {
    let crash = three_specs();
    crash_tamper_and_resume(&crash, "before-ref-update", |crash| {
        std::fs::write(crash.repo.root.join(".git/refs/heads/roadmap.lock"), "")
            .expect("write lock");
    });
    assert!(!crash
        .repo
        .root
        .join(".git/refs/heads/roadmap.lock")
        .exists());
}

/// A kill in the middle of removing a merged worktree leaves it missing
/// files (dirty, but only by deletions, all of them in the merged branch):
/// resume finishes the prune instead of keeping it forever.
#[test]
fn crash_mid_worktree_removal_is_finished_by_resume() {
    let crash = three_specs();
    crash_tamper_and_resume(&crash, "before-prune", |crash| {
        let wt = crash.repo.worktree_dir().join("001");
        std::fs::remove_dir_all(wt.join("src")).expect("remove part of the worktree");
        std::fs::remove_file(wt.join("README.md")).expect("remove part of the worktree");
    });
}
