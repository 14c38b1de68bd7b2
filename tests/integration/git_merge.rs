//! `treefarm::git` in-memory merges and the compare-and-swap of the target,
//! checked against real `git`.

use crate::common;

use std::path::PathBuf;

use common::TestRepo;
use treefarm::git::{Advance, GitError, MergeStrategy, Oid, Prepared, Repo, WorktreeRequest};

fn oid(s: &str) -> Oid {
    Oid::from_str(s).unwrap()
}

/// main with a.txt / b.txt / c.txt, `roadmap` at main, and worktrees for
/// `treefarm/<id>` for each id.
fn setup(ids: &[&str]) -> (TestRepo, Repo, Vec<PathBuf>) {
    let t = TestRepo::with_files(&[
        ("a.txt", "a1\na2\na3\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    let repo = Repo::discover(&t.root).unwrap();
    let head = repo.resolve("HEAD").unwrap();
    repo.ensure_branch("roadmap", head).unwrap();
    let reqs: Vec<_> = ids
        .iter()
        .map(|id| WorktreeRequest {
            name: id.to_string(),
            path: t.worktree_dir().join(id),
            branch: format!("treefarm/{id}"),
            start: head,
            reuse: false,
            sparse: None,
        })
        .collect();
    for r in repo.add_worktrees(&reqs) {
        r.unwrap();
    }
    let paths = reqs.into_iter().map(|r| r.path).collect();
    (t, repo, paths)
}

fn commit_in(
    t: &TestRepo,
    wt: &std::path::Path,
    file: &str,
    contents: &str,
    message: &str,
    author: &str,
) -> Oid {
    std::fs::write(wt.join(file), contents).unwrap();
    t.git_at(wt, &["add", "-A"]);
    t.git_at(wt, &["commit", "-qm", message, "--author", author]);
    oid(&t.git_at(wt, &["rev-parse", "HEAD"]))
}

fn merge(repo: &Repo, branch: &str, strategy: MergeStrategy, message: &str) -> Prepared {
    let prepared = repo
        .prepare_merge("roadmap", branch, strategy, message)
        .unwrap();
    if let Prepared::Ready { old, new } = prepared {
        assert_eq!(
            repo.advance_target("roadmap", old, new).unwrap(),
            Advance::Moved
        );
    }
    prepared
}

#[test]
fn merge_strategy_makes_no_ff_merge_commits() {
    let (t, repo, wts) = setup(&["020", "021"]);
    let before = t.main_snapshot();
    let b20 = commit_in(
        &t,
        &wts[0],
        "b.txt",
        "b20\n",
        "edit b",
        "Alice <alice@example.com>",
    );
    let b21 = commit_in(
        &t,
        &wts[1],
        "c.txt",
        "c21\n",
        "edit c",
        "Bob <bob@example.com>",
    );
    let start = t.git(&["rev-parse", "roadmap"]);

    merge(&repo, "treefarm/020", MergeStrategy::Merge, "merge 020");
    let after_first = t.git(&["rev-parse", "roadmap"]);
    merge(&repo, "treefarm/021", MergeStrategy::Merge, "merge 021");

    assert_eq!(
        t.git(&["log", "--first-parent", "--format=%s", "roadmap"]),
        "merge 021\nmerge 020\ninitial"
    );
    let cat = t.git(&["cat-file", "-p", "roadmap"]);
    assert!(
        cat.contains(&format!("parent {after_first}\nparent {b21}")),
        "{cat}"
    );
    assert!(
        cat.contains("committer Test User <user@example.com>"),
        "{cat}"
    );
    let cat = t.git(&["cat-file", "-p", &after_first]);
    assert!(
        cat.contains(&format!("parent {start}\nparent {b20}")),
        "{cat}"
    );
    assert_eq!(t.git(&["show", "roadmap:b.txt"]), "b20");
    assert_eq!(t.git(&["show", "roadmap:c.txt"]), "c21");
    assert_eq!(t.main_snapshot(), before);

    // Nothing new on the branch: up to date, nothing moves.
    let tip = oid(&t.git(&["rev-parse", "roadmap"]));
    assert_eq!(
        repo.prepare_merge("roadmap", "treefarm/020", MergeStrategy::Merge, "again")
            .unwrap(),
        Prepared::UpToDate { tip }
    );
}

#[test]
fn squash_strategy_makes_one_commit_on_the_target() {
    let (t, repo, wts) = setup(&["020"]);
    commit_in(
        &t,
        &wts[0],
        "b.txt",
        "b1\n",
        "one",
        "Alice <alice@example.com>",
    );
    commit_in(
        &t,
        &wts[0],
        "c.txt",
        "c2\n",
        "two",
        "Alice <alice@example.com>",
    );
    let start = t.git(&["rev-parse", "roadmap"]);
    merge(
        &repo,
        "treefarm/020",
        MergeStrategy::Squash,
        "SPEC-020: thing\n\n- one\n- two\n",
    );
    let cat = t.git(&["cat-file", "-p", "roadmap"]);
    assert_eq!(cat.matches("parent ").count(), 1, "{cat}");
    assert!(cat.contains(&format!("parent {start}")), "{cat}");
    assert_eq!(
        t.git(&["log", "-1", "--format=%B", "roadmap"]),
        "SPEC-020: thing\n\n- one\n- two"
    );
    assert_eq!(t.git(&["diff", "--stat", "roadmap", "treefarm/020"]), "");
}

#[test]
fn rebase_strategy_replays_commits_keeping_authors() {
    let (t, repo, wts) = setup(&["020", "021"]);
    commit_in(
        &t,
        &wts[0],
        "a.txt",
        "a1\na2\na3\na4\n",
        "first",
        "Alice <alice@example.com>",
    );
    commit_in(
        &t,
        &wts[0],
        "b.txt",
        "b-new\n",
        "second",
        "Carol <carol@example.com>",
    );
    commit_in(
        &t,
        &wts[1],
        "c.txt",
        "c-new\n",
        "other",
        "Bob <bob@example.com>",
    );
    // 021 lands first, so 020 must really be replayed.
    merge(&repo, "treefarm/021", MergeStrategy::Rebase, "unused");
    assert_eq!(
        t.git(&["rev-parse", "roadmap"]),
        t.git(&["rev-parse", "treefarm/021"]),
        "fast-forward"
    );
    merge(&repo, "treefarm/020", MergeStrategy::Rebase, "unused");

    assert_eq!(
        t.git(&["log", "--format=%s|%an|%cn|%P", "roadmap"])
            .lines()
            .map(|l| l.rsplit_once('|').unwrap().0.to_string())
            .collect::<Vec<_>>(),
        vec![
            "second|Carol|Test User",
            "first|Alice|Test User",
            "other|Bob|Test Committer",
            "initial|Test Author|Test Committer"
        ]
    );
    assert_eq!(t.git(&["rev-list", "--merges", "roadmap"]), "");
    assert_eq!(t.git(&["show", "roadmap:a.txt"]), "a1\na2\na3\na4");
    assert_eq!(t.git(&["show", "roadmap:b.txt"]), "b-new");
    assert_eq!(t.git(&["show", "roadmap:c.txt"]), "c-new");
}

#[test]
fn conflict_leaves_the_target_unchanged_and_lists_paths() {
    for strategy in [
        MergeStrategy::Merge,
        MergeStrategy::Squash,
        MergeStrategy::Rebase,
    ] {
        let (t, repo, wts) = setup(&["020", "021"]);
        commit_in(&t, &wts[0], "a.txt", "a1\nX\na3\n", "x", "A <a@x>");
        commit_in(&t, &wts[0], "b.txt", "bx\n", "x", "A <a@x>");
        commit_in(&t, &wts[1], "a.txt", "a1\nY\na3\n", "y", "B <b@x>");
        commit_in(&t, &wts[1], "b.txt", "by\n", "y", "B <b@x>");
        merge(&repo, "treefarm/020", strategy, "m");
        let tip = t.git(&["rev-parse", "roadmap"]);
        let prepared = repo
            .prepare_merge("roadmap", "treefarm/021", strategy, "m")
            .unwrap();
        let expected = match strategy {
            // Rebase stops at the first conflicting step.
            MergeStrategy::Rebase => vec!["a.txt".to_string()],
            _ => vec!["a.txt".to_string(), "b.txt".to_string()],
        };
        assert_eq!(
            prepared,
            Prepared::Conflicted { paths: expected },
            "{strategy:?}"
        );
        assert_eq!(t.git(&["rev-parse", "roadmap"]), tip);
        assert_eq!(t.git_at(&wts[1], &["status", "--porcelain"]), "");
    }
}

#[test]
fn a_target_moved_by_someone_else_is_raced_not_clobbered() {
    let (t, repo, wts) = setup(&["020"]);
    commit_in(&t, &wts[0], "b.txt", "b20\n", "edit b", "A <a@x>");
    let Prepared::Ready { old, new } = repo
        .prepare_merge("roadmap", "treefarm/020", MergeStrategy::Merge, "m")
        .unwrap()
    else {
        panic!("expected ready");
    };
    // Someone commits on roadmap in between.
    let tree = t.git(&["rev-parse", "roadmap^{tree}"]);
    let theirs = t.git(&["commit-tree", &tree, "-p", "roadmap", "-m", "someone else"]);
    t.git(&["update-ref", "refs/heads/roadmap", &theirs]);

    assert_eq!(
        repo.advance_target("roadmap", old, new).unwrap(),
        Advance::Raced {
            current: oid(&theirs)
        }
    );
    assert_eq!(t.git(&["rev-parse", "roadmap"]), theirs);
    // Prepared again, it lands on top of the other commit.
    merge(&repo, "treefarm/020", MergeStrategy::Merge, "m2");
    assert_eq!(t.git(&["rev-parse", "roadmap^1"]), theirs);
}

#[test]
fn a_clean_checkout_of_the_target_is_updated() {
    let (t, repo, wts) = setup(&["020"]);
    t.git(&["checkout", "-q", "roadmap"]);
    std::fs::write(t.root.join("ignored.log"), "x").unwrap();
    t.write(".git/info/exclude", "*.log\n");
    commit_in(&t, &wts[0], "b.txt", "b20\n", "edit b", "A <a@x>");
    t.git_at(&wts[0], &["rm", "-q", "c.txt"]);
    std::fs::create_dir_all(wts[0].join("new")).unwrap();
    commit_in(&t, &wts[0], "new/d.txt", "d\n", "add d, rm c", "A <a@x>");

    merge(&repo, "treefarm/020", MergeStrategy::Merge, "merge 020");
    assert_eq!(t.git(&["symbolic-ref", "HEAD"]), "refs/heads/roadmap");
    assert_eq!(t.read("b.txt"), "b20\n");
    assert_eq!(t.read("new/d.txt"), "d\n");
    assert!(!t.root.join("c.txt").exists());
    assert_eq!(
        t.git(&["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    assert!(t.root.join("ignored.log").exists());
    assert_eq!(t.git(&["diff", "HEAD", "--stat"]), "");
}

#[test]
fn a_dirty_checkout_of_the_target_refuses_the_move() {
    let (t, repo, wts) = setup(&["020"]);
    let roadmap_wt = t.worktree_dir().join("roadmap checkout");
    t.git(&[
        "worktree",
        "add",
        "-q",
        roadmap_wt.to_str().unwrap(),
        "roadmap",
    ]);
    std::fs::write(roadmap_wt.join("a.txt"), "my edit\n").unwrap();
    commit_in(&t, &wts[0], "b.txt", "b20\n", "edit b", "A <a@x>");
    let tip = t.git(&["rev-parse", "roadmap"]);

    let Prepared::Ready { old, new } = repo
        .prepare_merge("roadmap", "treefarm/020", MergeStrategy::Merge, "m")
        .unwrap()
    else {
        panic!("expected ready");
    };
    let err = repo.advance_target("roadmap", old, new).unwrap_err();
    assert!(matches!(err, GitError::TargetDirty { .. }), "{err:?}");
    assert!(err.is_user_fixable());
    let msg = err.to_string();
    assert!(
        msg.contains("target branch `roadmap` is checked out at"),
        "{msg}"
    );
    assert!(msg.contains("roadmap checkout"), "{msg}");
    assert_eq!(
        err.hint().unwrap(),
        "commit or stash them, or use another --target"
    );
    assert_eq!(t.git(&["rev-parse", "roadmap"]), tip);
    assert_eq!(
        std::fs::read_to_string(roadmap_wt.join("a.txt")).unwrap(),
        "my edit\n"
    );

    // Once clean, the linked checkout follows the move.
    t.git_at(&roadmap_wt, &["checkout", "--", "a.txt"]);
    assert_eq!(
        repo.advance_target("roadmap", old, new).unwrap(),
        Advance::Moved
    );
    assert_eq!(
        std::fs::read_to_string(roadmap_wt.join("b.txt")).unwrap(),
        "b20\n"
    );
    assert_eq!(t.git_at(&roadmap_wt, &["status", "--porcelain"]), "");
}

#[test]
fn a_missing_target_is_created_from_the_branch() {
    let (t, repo, wts) = setup(&["020"]);
    let tip = commit_in(&t, &wts[0], "b.txt", "b20\n", "edit b", "A <a@x>");
    let prepared = repo
        .prepare_merge("integration", "treefarm/020", MergeStrategy::Merge, "m")
        .unwrap();
    assert_eq!(
        prepared,
        Prepared::Ready {
            old: Oid::zero(),
            new: tip
        }
    );
    assert_eq!(
        repo.advance_target("integration", Oid::zero(), tip)
            .unwrap(),
        Advance::Moved
    );
    assert_eq!(t.git(&["rev-parse", "integration"]), tip.to_string());
    assert_eq!(
        repo.advance_target("integration", Oid::zero(), tip)
            .unwrap(),
        Advance::Raced { current: tip }
    );
}
