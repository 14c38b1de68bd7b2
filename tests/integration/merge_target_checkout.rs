//! End-to-end: the target branch checked out in the user's main worktree —
//! kept in step when clean, the merge refused (and nothing touched) when dirty.

use crate::common;

use common::*;

fn farm_on_roadmap() -> TestRepo {
    let a = spec_md(
        "Add alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt alpha\ncommit \"alpha\"",
    );
    let b = spec_md(
        "Drop old, edit readme",
        &["old.txt", "README.md"],
        &[],
        Some(20),
        "append README.md more\ncommit \"beta\"",
    );
    // 020's agent also deletes a tracked file, so the checkout must remove it.
    let wrapper = r#"[ "$TREEFARM_SPEC_ID" = 020 ] && git rm -q old.txt"#;
    let repo = TestRepo::farm_with_wrapper(
        &[("README.md", "readme\n"), ("old.txt", "old\n")],
        &[("SPEC-010-a.md", a), ("SPEC-020-b.md", b)],
        wrapper,
        "",
    );
    repo.git(&["checkout", "-q", "-b", "roadmap"]);
    repo
}

#[test]
fn clean_checkout_of_the_target_follows_the_new_tip() {
    let repo = farm_on_roadmap();
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010", "020"]);

    let tip = repo.git(&["rev-parse", "roadmap"]);
    assert_eq!(repo.first_parent_subjects("roadmap").len(), 3);
    assert_eq!(repo.git(&["symbolic-ref", "HEAD"]), "refs/heads/roadmap");
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), tip);
    assert_eq!(
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        ""
    );
    // Files and index are those of the new tip.
    assert_eq!(repo.read("a.txt"), "alpha\n");
    assert_eq!(repo.read("README.md"), "readme\nmore\n");
    assert!(
        !repo.root.join("old.txt").exists(),
        "deleted file left in the checkout"
    );
    assert_eq!(
        repo.git(&["write-tree"]),
        repo.git(&["rev-parse", "roadmap^{tree}"])
    );
}

#[test]
fn dirty_checkout_of_the_target_refuses_the_merge_and_keeps_the_users_change() {
    let repo = farm_on_roadmap();
    let tip_before = repo.git(&["rev-parse", "roadmap"]);
    repo.write("README.md", "my own uncommitted edit\n");
    let before = repo.main_snapshot();

    let out = repo.tf(&["run", "--json", "--", "010"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "refused"), ["010"]);
    assert_eq!(
        repo.git(&["rev-parse", "roadmap"]),
        tip_before,
        "the ref moved"
    );
    assert_eq!(
        repo.main_snapshot(),
        before,
        "the user's tree or index changed"
    );
    assert_eq!(repo.read("README.md"), "my own uncommitted edit\n");
    assert!(!repo.root.join("a.txt").exists());

    // The error says which checkout is in the way, in the journal and on
    // stderr.
    let reason = repo.instance("010")["reason"].as_str().unwrap().to_string();
    let root = repo.root.canonicalize().unwrap().display().to_string();
    assert!(
        reason.contains("uncommitted changes") && reason.contains(&root),
        "{reason}"
    );
    assert!(stderr(&out).contains(&root), "{}", stderr(&out));
    assert_eq!(repo.treefarm_branches(), ["treefarm/010"]);

    // Stash, merge the refused branch, unstash: the change comes back on top.
    repo.git(&["stash", "-q"]);
    let out = repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010"]);
    assert_eq!(repo.read("a.txt"), "alpha\n");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    repo.git(&["stash", "pop", "-q"]);
    assert_eq!(repo.read("README.md"), "my own uncommitted edit\n");
    assert!(repo.treefarm_branches().is_empty());
}
