//! Bad input and faults at run time (issue 11): a target inside treefarm's
//! branch namespace, racing worktree creation, big declarations, and causes
//! (such as a full disk) reaching the user.

mod common;

use common::{stderr, TestRepo};

fn farm_one() -> TestRepo {
    TestRepo::farm(
        &[("src/a.txt", "a\n")],
        &[(
            "SPEC-001-a.md",
            "# A\n\n**File**: `src/a.txt`\n".to_string(),
        )],
        "",
    )
}

#[test]
fn target_in_treefarm_namespace_or_a_spec_branch_is_refused_before_anything_is_created() {
    let repo = farm_one();
    let refs = repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    for target in ["treefarm/001", "treefarm/other", "treefarm"] {
        let out = repo.tf(&["run", "--target", target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(stderr(&out).contains(target), "{}", stderr(&out));
        assert_eq!(
            repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            refs,
            "{target}: refs changed"
        );
        assert!(!repo.root.join(".git/treefarm/runs").exists());
        assert!(!repo.worktree_dir().join("001").exists());
    }
    let out = repo.tf(&["merge", "--target", "treefarm/001"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("namespace"), "{}", stderr(&out));
    assert_eq!(
        repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        refs
    );
}
