//! End-to-end: pruning after a merge, `--keep`, and `treefarm prune` —
//! merged leftovers go, unmerged work and dirty worktrees stay unless
//! `--force`, which archives the tip first.

use crate::common;

use common::*;

fn two_specs(extra_config: &str) -> TestRepo {
    let a = spec_md(
        "Alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt a\ncommit alpha",
    );
    let b = spec_md(
        "Beta",
        &["b.txt"],
        &[],
        Some(20),
        "write b.txt b\ncommit beta",
    );
    TestRepo::farm(
        &[("README.md", "readme\n")],
        &[("SPEC-010-a.md", a), ("SPEC-020-b.md", b)],
        extra_config,
    )
}

/// Everything prune could change, as git and the file system see it.
fn git_state(repo: &TestRepo) -> String {
    let mut dirs: Vec<String> = repo
        .worktree_dir()
        .read_dir()
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let admin: Vec<String> = repo
        .root
        .join(".git/worktrees")
        .read_dir()
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!(
        "refs\n{}\nworktrees\n{}\ndirs {dirs:?}\nadmin {admin:?}\n{}",
        repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        repo.git(&["worktree", "list", "--porcelain"]),
        repo.main_snapshot()
    )
}

fn prune(repo: &TestRepo, args: &[&str]) -> String {
    let mut all = vec!["prune"];
    all.extend_from_slice(args);
    let out = repo.tf(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "prune {args:?}: stderr:\n{}",
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn keep_keeps_merged_worktrees_then_dry_run_changes_nothing_then_prune_removes_them() {
    let repo = two_specs("");
    let out = repo.tf(&["run", "--keep", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010", "020"]);
    assert_eq!(repo.treefarm_branches(), ["treefarm/010", "treefarm/020"]);
    assert_eq!(repo.worktree_paths().len(), 3);
    assert_eq!(repo.instance("010")["state"], "merged");
    assert!(!json_events(&out).iter().any(|e| e["event"] == "pruned"));

    let before = git_state(&repo);
    let said = prune(&repo, &["--dry-run"]);
    assert_eq!(git_state(&repo), before, "--dry-run changed something");
    assert!(
        said.contains("treefarm/010") && said.contains("treefarm/020"),
        "{said}"
    );

    prune(&repo, &[]);
    assert!(repo.treefarm_branches().is_empty());
    assert_eq!(repo.worktree_paths(), [repo.root.canonicalize().unwrap()]);
    assert!(!repo.worktree_dir().join("010").exists());
    assert!(
        repo.git(&["for-each-ref", "refs/treefarm/archive"])
            .is_empty(),
        "merged work needs no archive"
    );
}

#[test]
fn unmerged_and_dirty_are_kept_without_force_and_archived_with_force() {
    let repo = two_specs("");
    // 010 merged but kept, then dirtied; 020 never merged.
    let out = repo.tf(&["run", "--keep", "--json", "--", "010"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let out = repo.tf(&["run", "--no-merge", "--json", "--", "020"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let wt10 = repo.worktree_dir().join("010");
    let wt20 = repo.worktree_dir().join("020");
    std::fs::write(wt10.join("a.txt"), "uncommitted\n").unwrap();
    let tip10 = repo.git(&["rev-parse", "treefarm/010"]);
    let tip20 = repo.git(&["rev-parse", "treefarm/020"]);
    assert!(repo.is_ancestor(&tip10, "roadmap"));
    assert!(!repo.is_ancestor(&tip20, "roadmap"));

    let before = git_state(&repo);
    let said = prune(&repo, &[]);
    assert_eq!(
        git_state(&repo),
        before,
        "prune without --force removed work:\n{said}"
    );
    assert!(
        said.contains("kept") && said.contains("treefarm/010") && said.contains("treefarm/020"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(wt10.join("a.txt")).unwrap(),
        "uncommitted\n"
    );

    let said = prune(&repo, &["--force", "--dry-run"]);
    assert_eq!(
        git_state(&repo),
        before,
        "--force --dry-run changed something:\n{said}"
    );

    prune(&repo, &["--force"]);
    assert!(repo.treefarm_branches().is_empty());
    assert_eq!(repo.worktree_paths(), [repo.root.canonicalize().unwrap()]);
    assert!(!wt10.exists() && !wt20.exists());
    assert_eq!(repo.git(&["rev-parse", "refs/treefarm/archive/020"]), tip20);
    assert_eq!(repo.git(&["rev-parse", "refs/treefarm/archive/010"]), tip10);
    assert_eq!(
        repo.git(&["log", "-1", "--format=%s", "refs/treefarm/archive/020"]),
        "beta"
    );
}

#[test]
fn stale_admin_entry_of_a_hand_deleted_worktree_is_pruned_and_unmerged_branch_kept() {
    let repo = two_specs("");
    let out = repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let wt = repo.worktree_dir().join("010");
    std::fs::remove_dir_all(&wt).unwrap();
    assert!(repo
        .git(&["worktree", "list", "--porcelain"])
        .contains("prunable"));
    let tip = repo.git(&["rev-parse", "treefarm/010"]);

    let said = prune(&repo, &["--dry-run"]);
    assert!(
        repo.git(&["worktree", "list", "--porcelain"])
            .contains("prunable"),
        "--dry-run pruned: {said}"
    );
    assert!(said.contains("stale"), "{said}");

    prune(&repo, &[]);
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("prunable"), "{list}");
    assert_eq!(repo.worktree_paths().len(), 2, "{list}");
    // The branch holds unmerged commits: kept, untouched.
    assert_eq!(repo.treefarm_branches(), ["treefarm/010", "treefarm/020"]);
    assert_eq!(repo.git(&["rev-parse", "treefarm/010"]), tip);
}

#[test]
fn squash_merged_branches_are_recognised_as_merged_through_the_journal() {
    let repo = two_specs("merge:\n  strategy: squash\n");
    let out = repo.tf(&["run", "--keep", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let tip10 = repo.git(&["rev-parse", "treefarm/010"]);
    assert!(
        !repo.is_ancestor(&tip10, "roadmap"),
        "squash left ancestry?"
    );

    // A commit added after the squash is not merged: that branch stays.
    let wt20 = repo.worktree_dir().join("020");
    std::fs::write(wt20.join("b.txt"), "later\n").unwrap();
    repo.git_at(&wt20, &["commit", "-qam", "later work"]);
    let tip20 = repo.git(&["rev-parse", "treefarm/020"]);

    let said = prune(&repo, &[]);
    assert_eq!(repo.treefarm_branches(), ["treefarm/020"], "{said}");
    assert!(!repo.worktree_dir().join("010").exists());
    assert!(wt20.exists());
    assert_eq!(repo.git(&["rev-parse", "treefarm/020"]), tip20);
    assert!(repo
        .git(&["for-each-ref", "refs/treefarm/archive"])
        .is_empty());
}

#[test]
fn squash_merged_branch_with_commits_added_before_merge_is_recognised_as_merged() {
    let repo = two_specs("merge:\n  strategy: squash\n");
    let out = repo.tf(&["run", "--no-merge", "--keep", "--json", "--", "010"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    // The user polishes the branch before merging it.
    let wt = repo.worktree_dir().join("010");
    std::fs::write(wt.join("a.txt"), "polished\n").unwrap();
    repo.git_at(&wt, &["commit", "-qam", "polish"]);
    let tip = repo.git(&["rev-parse", "treefarm/010"]);

    let out = repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(repo.show("roadmap", "a.txt"), "polished");
    assert_eq!(
        repo.treefarm_branches(),
        ["treefarm/010"],
        "--keep of the run applies to its merge"
    );
    assert_eq!(
        repo.instance("010")["tip"],
        tip.as_str(),
        "the journal must name the tip that was merged"
    );

    let said = prune(&repo, &[]);
    assert!(
        repo.treefarm_branches().is_empty(),
        "squash-merged branch kept:\n{said}"
    );
    assert!(!wt.exists());
}
