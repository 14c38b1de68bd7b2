//! The merged tree treefarm computes (its trivial tree merge, or libgit2's
//! full merge when that is needed) equals the tree `git merge-tree
//! --write-tree` computes for the same two commits, across the shapes of
//! change two branches make: disjoint folders, the same folder, deletions,
//! additions on both sides, a folder emptied from both sides, a file changed
//! on both sides in different places, and a real conflict.

use crate::common;

use common::TestRepo;
use treefarm::git::{MergeStrategy, Prepared, Repo};

/// A step on one side: write (Some) or delete (None) a file.
type Change<'a> = (&'a str, Option<&'a str>);

fn apply(t: &TestRepo, branch: &str, changes: &[Change<'_>]) {
    t.git(&["checkout", "-q", branch]);
    for (path, contents) in changes {
        match contents {
            Some(text) => t.write(path, text),
            None => {
                t.git(&["rm", "-q", path]);
            }
        }
    }
    t.commit_all(&format!("changes on {branch}"));
}

/// Runs one scenario: `target` and `branch` both start from the same base and
/// get their changes; returns (treefarm's prepared outcome, git's merged tree
/// or None on conflict).
fn scenario(target: &[Change<'_>], branch: &[Change<'_>]) -> (Prepared, Option<String>, TestRepo) {
    let t = TestRepo::with_files(&[
        ("README.md", "readme\n"),
        ("src/a.rs", "a1\na2\na3\na4\na5\na6\n"),
        ("src/b.rs", "b\n"),
        ("src/deep/x.rs", "x\n"),
        ("docs/one.md", "one\n"),
        ("docs/two.md", "two\n"),
        ("lib/keep.txt", "keep\n"),
    ]);
    t.git(&["branch", "roadmap"]);
    t.git(&["branch", "feature"]);
    apply(&t, "roadmap", target);
    apply(&t, "feature", branch);
    t.git(&["checkout", "-q", "main"]);
    let repo = Repo::discover(&t.root).expect("discover");
    let prepared = repo
        .prepare_merge("roadmap", "feature", MergeStrategy::Merge, "merge feature")
        .expect("prepare merge");
    let out = t
        .git_cmd(&["merge-tree", "--write-tree", "roadmap", "feature"])
        .output()
        .expect("git merge-tree");
    let git_tree = out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    (prepared, git_tree, t)
}

fn tree_of(t: &TestRepo, commit: &str) -> String {
    t.git(&["rev-parse", &format!("{commit}^{{tree}}")])
}

fn assert_same_tree_as_git(target: &[Change<'_>], branch: &[Change<'_>]) {
    let (prepared, git_tree, t) = scenario(target, branch);
    let git_tree = git_tree.expect("git merges this cleanly");
    match prepared {
        Prepared::Ready { new, .. } => {
            assert_eq!(
                tree_of(&t, &new.to_string()),
                git_tree,
                "merged tree differs from git's"
            );
            let parents = t.git(&["rev-list", "--parents", "-n1", &new.to_string()]);
            assert_eq!(
                parents.split(' ').count(),
                3,
                "a merge commit has two parents"
            );
        }
        other => panic!("expected a clean merge, got {other:?}"),
    }
}

#[test]
fn disjoint_folders() {
    assert_same_tree_as_git(
        &[("docs/one.md", Some("one, edited\n"))],
        &[
            ("src/b.rs", Some("b, edited\n")),
            ("src/new.rs", Some("new\n")),
        ],
    );
}

#[test]
fn same_folder_different_files_and_nested_folders() {
    assert_same_tree_as_git(
        &[
            ("src/b.rs", Some("b by target\n")),
            ("src/deep/y.rs", Some("y\n")),
        ],
        &[
            ("src/deep/x.rs", Some("x by branch\n")),
            ("src/c.rs", Some("c\n")),
        ],
    );
}

#[test]
fn deletion_on_one_side_addition_on_the_other() {
    assert_same_tree_as_git(
        &[("docs/two.md", None)],
        &[("docs/three.md", Some("three\n")), ("lib/keep.txt", None)],
    );
}

#[test]
fn identical_changes_on_both_sides() {
    assert_same_tree_as_git(
        &[
            ("src/same.rs", Some("same\n")),
            ("README.md", Some("both\n")),
        ],
        &[
            ("src/same.rs", Some("same\n")),
            ("README.md", Some("both\n")),
        ],
    );
}

#[test]
fn folder_emptied_from_both_sides_disappears() {
    assert_same_tree_as_git(&[("docs/one.md", None)], &[("docs/two.md", None)]);
}

#[test]
fn same_file_changed_in_different_places_is_content_merged() {
    assert_same_tree_as_git(
        &[("src/a.rs", Some("a1 target\na2\na3\na4\na5\na6\n"))],
        &[("src/a.rs", Some("a1\na2\na3\na4\na5\na6 branch\n"))],
    );
}

#[test]
fn a_real_conflict_is_reported_with_its_path() {
    let (prepared, git_tree, _t) = scenario(
        &[("src/b.rs", Some("target\n"))],
        &[
            ("src/b.rs", Some("branch\n")),
            ("docs/one.md", Some("fine\n")),
        ],
    );
    assert_eq!(git_tree, None, "git reports a conflict too");
    assert_eq!(
        prepared,
        Prepared::Conflicted {
            paths: vec!["src/b.rs".to_string()]
        }
    );
}
