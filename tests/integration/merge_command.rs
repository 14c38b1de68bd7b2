//! End-to-end: `run --no-merge` leaves every finished branch for later;
//! `treefarm merge` merges (and prunes) them, and merges again a conflicted or
//! refused branch once the user fixed it in its worktree.

use crate::common;

use common::*;

fn three_specs() -> TestRepo {
    // 010 and 030 both write the undeclared `shared.txt`: whichever merges
    // second conflicts, and `treefarm merge` goes in priority order.
    let a = spec_md(
        "Alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt a\nwrite shared.txt from-010\ncommit alpha",
    );
    let b = spec_md(
        "Beta",
        &["b.txt"],
        &[],
        Some(20),
        "write b.txt b\ncommit beta",
    );
    let c = spec_md(
        "Gamma",
        &["c.txt"],
        &[],
        Some(30),
        "write c.txt c\nwrite shared.txt from-030\ncommit gamma",
    );
    TestRepo::farm(
        &[("README.md", "readme\n")],
        &[
            ("SPEC-010-a.md", a),
            ("SPEC-020-b.md", b),
            ("SPEC-030-c.md", c),
        ],
        "",
    )
}

#[test]
fn no_merge_then_merge_then_fix_conflict_by_hand_then_merge_again() {
    let repo = three_specs();
    let base = repo.git(&["rev-parse", "HEAD"]);
    let before = repo.main_snapshot();

    let out = repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        summary_ids(&json_summary(&out), "succeeded"),
        ["010", "020", "030"]
    );
    assert_eq!(
        repo.git(&["rev-parse", "roadmap"]),
        base,
        "--no-merge moved the target"
    );
    assert_eq!(
        repo.treefarm_branches(),
        ["treefarm/010", "treefarm/020", "treefarm/030"]
    );
    assert_eq!(repo.worktree_paths().len(), 4);

    // First `merge`: priority order, so 030 is the one that conflicts.
    let out = repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["010", "020"]);
    assert_eq!(
        summary["conflicted"],
        serde_json::json!([{"id": "030", "paths": ["shared.txt"]}])
    );
    assert_eq!(
        repo.treefarm_branches(),
        ["treefarm/030"],
        "merged branches not pruned"
    );
    let wt = repo.worktree_dir().join("030");
    assert_eq!(
        repo.worktree_paths(),
        [
            repo.root.canonicalize().unwrap(),
            wt.canonicalize().unwrap()
        ]
    );
    assert!(!repo.worktree_dir().join("010").exists());
    let after_first = repo.git(&["rev-parse", "roadmap"]);
    assert_eq!(repo.first_parent_subjects("roadmap").len(), 3);

    // The user resolves it in the worktree: merge roadmap, pick a side.
    let merged = git_in(&wt, &repo.home, &["merge", "roadmap"])
        .output()
        .unwrap();
    assert!(
        !merged.status.success(),
        "git merge roadmap should conflict"
    );
    std::fs::write(wt.join("shared.txt"), "resolved\n").unwrap();
    repo.git_at(&wt, &["add", "shared.txt"]);
    repo.git_at(&wt, &["commit", "-q", "--no-edit"]);
    let fixed_tip = repo.git_at(&wt, &["rev-parse", "HEAD"]);

    let out = repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        summary_ids(&json_summary(&out), "merged"),
        ["010", "020", "030"]
    );
    assert_eq!(repo.git(&["rev-parse", "roadmap^1"]), after_first);
    assert_eq!(repo.git(&["rev-parse", "roadmap^2"]), fixed_tip);
    assert_eq!(repo.show("roadmap", "shared.txt"), "resolved");
    assert_eq!(repo.show("roadmap", "c.txt"), "c");
    assert!(repo.treefarm_branches().is_empty());
    assert_eq!(repo.worktree_paths(), [repo.root.canonicalize().unwrap()]);
    assert_eq!(repo.instance("030")["state"], "pruned");
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn refused_branch_fixed_in_its_worktree_without_committing_merges_on_the_next_merge() {
    let a = spec_md(
        "Alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt a\ncommit alpha",
    );
    let repo = TestRepo::farm(&[("README.md", "readme\n")], &[("SPEC-010-a.md", a)], "");
    let gate = "test -f approved.txt";
    let out = repo.tf(&["run", "--json", "--gate", gate]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "refused"), ["010"]);
    let base = repo.git(&["rev-parse", "roadmap"]);

    // Still refused while nothing changed.
    let out = repo.tf(&["merge", "--json", "--gate", gate]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "refused"), ["010"]);
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), base);

    // The fix is left uncommitted in the worktree: `merge` commits it.
    let wt = repo.worktree_dir().join("010");
    std::fs::write(wt.join("approved.txt"), "yes\n").unwrap();
    let out = repo.tf(&["merge", "--json", "--gate", gate]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010"]);
    assert_eq!(repo.show("roadmap", "approved.txt"), "yes");
    assert_eq!(repo.show("roadmap", "a.txt"), "a");
    assert_eq!(repo.git(&["rev-parse", "roadmap^1"]), base);
    assert!(repo.treefarm_branches().is_empty());
    assert!(!wt.exists());
}
