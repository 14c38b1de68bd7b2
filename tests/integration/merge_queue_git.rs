//! The git side of the merge queue, with real `git` as the oracle: batches
//! built in memory equal merging one by one, warm gate worktrees move by
//! checking out only what differs, and a conflict handed back to the agent
//! looks exactly like `git merge <target>` left it.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::TestRepo;
use treefarm::git::{
    BatchItem, BatchMerge, HandBackResult, MergeStrategy, Oid, Prepared, Repo, Resolution,
};

fn oid(s: &str) -> Oid {
    Oid::from_str(s.trim()).unwrap()
}

/// main: a.txt (five lines), b.txt, c.txt; `roadmap` at main; branches
/// b1..b5 from main: b1 edits a.txt line 1, b2 adds d.txt (two commits), b3
/// edits a.txt line 5 (a content merge with b1), b4 edits a.txt line 1
/// differently from b1 (conflicts once b1 is in), b5 edits c.txt; `roadmap`
/// then gains one commit of its own (e.txt).
fn five_branches() -> TestRepo {
    let t = TestRepo::with_files(&[
        ("a.txt", "one\ntwo\nthree\nfour\nfive\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    let edit = |branch: &str, file: &str, contents: &str, msg: &str| {
        t.git(&["checkout", "-q", branch]);
        t.write(file, contents);
        t.commit_all(msg);
    };
    for b in ["b1", "b2", "b3", "b4", "b5"] {
        t.git(&["branch", b, "main"]);
    }
    t.git(&["branch", "roadmap", "main"]);
    edit(
        "b1",
        "a.txt",
        "ONE\ntwo\nthree\nfour\nfive\n",
        "b1: shout one",
    );
    edit("b2", "d.txt", "d\n", "b2: add d");
    edit("b2", "d.txt", "d\nd\n", "b2: grow d");
    edit(
        "b3",
        "a.txt",
        "one\ntwo\nthree\nfour\nFIVE\n",
        "b3: shout five",
    );
    edit(
        "b4",
        "a.txt",
        "uno\ntwo\nthree\nfour\nfive\n",
        "b4: one in spanish",
    );
    edit("b5", "c.txt", "c5\n", "b5: edit c");
    edit("roadmap", "e.txt", "e\n", "roadmap: add e");
    t.git(&["checkout", "-q", "main"]);
    t
}

/// `(tree, parent count, non-first parents)` for each first-parent commit
/// from `tip` down to (excluding) `base`.
fn shape(t: &TestRepo, base: &str, tip: &str) -> Vec<(String, usize, Vec<String>)> {
    let list = t.git(&[
        "rev-list",
        "--first-parent",
        "--format=%T %P",
        "--no-commit-header",
        &format!("{base}..{tip}"),
    ]);
    list.lines()
        .map(|line| {
            let mut parts = line.split(' ').map(str::to_string);
            let tree = parts.next().unwrap();
            let parents: Vec<String> = parts.collect();
            (tree, parents.len(), parents[1..].to_vec())
        })
        .collect()
}

/// Merges `branches` one by one into `roadmap` with real git in the main
/// worktree; returns the ones that conflicted with their conflicted paths.
fn git_one_by_one(
    t: &TestRepo,
    branches: &[&str],
    strategy: MergeStrategy,
) -> Vec<(String, String)> {
    let mut conflicted = vec![];
    t.git(&["checkout", "-q", "roadmap"]);
    for b in branches {
        let ok = match strategy {
            MergeStrategy::Merge => t
                .git_cmd(&["merge", "-q", "--no-ff", "-m", &format!("merge {b}"), b])
                .output()
                .unwrap()
                .status
                .success(),
            MergeStrategy::Squash => {
                let ok = t
                    .git_cmd(&["merge", "-q", "--squash", b])
                    .output()
                    .unwrap()
                    .status
                    .success();
                if ok {
                    t.git(&["commit", "-q", "-m", &format!("squash {b}")]);
                }
                ok
            }
            MergeStrategy::Rebase => {
                let tmp = format!("{b}-replay");
                t.git(&["branch", "-f", &tmp, b]);
                let ok = t
                    .git_cmd(&["rebase", "-q", "roadmap", &tmp])
                    .output()
                    .unwrap()
                    .status
                    .success();
                if ok {
                    t.git(&["checkout", "-q", "roadmap"]);
                    t.git(&["merge", "-q", "--ff-only", &tmp]);
                }
                ok
            }
        };
        if !ok {
            let paths = t.git(&["diff", "--name-only", "--diff-filter=U"]);
            conflicted.push((b.to_string(), paths));
            match strategy {
                MergeStrategy::Merge => t.git(&["merge", "--abort"]),
                MergeStrategy::Squash => t.git(&["reset", "-q", "--hard"]),
                MergeStrategy::Rebase => t.git(&["rebase", "--abort"]),
            };
            t.git(&["checkout", "-q", "roadmap"]);
        }
    }
    conflicted
}

fn batch_matches_one_by_one(strategy: MergeStrategy) {
    let t = five_branches();
    let repo = Repo::discover(&t.root).unwrap();
    let order = ["b1", "b2", "b3", "b4", "b5"];
    let items: Vec<BatchItem> = order
        .iter()
        .map(|b| BatchItem {
            branch: b.to_string(),
            message: match strategy {
                MergeStrategy::Merge => format!("merge {b}"),
                MergeStrategy::Squash => format!("squash {b}"),
                MergeStrategy::Rebase => String::new(),
            },
        })
        .collect();
    let base = t.git(&["rev-parse", "roadmap"]);
    let build = repo.build_batch("roadmap", None, &items, strategy).unwrap();
    assert_eq!(build.base, oid(&base));
    assert_eq!(t.git(&["rev-parse", "roadmap"]), base, "nothing referenced");

    let conflicted = git_one_by_one(&t, &order, strategy);
    assert_eq!(
        conflicted,
        vec![("b4".to_string(), "a.txt".to_string())],
        "git's own one-by-one outcome"
    );
    let ours: Vec<(String, String)> = build
        .merges
        .iter()
        .filter_map(|m| match m {
            BatchMerge::Conflicted { branch, paths } => Some((branch.clone(), paths.join("\n"))),
            BatchMerge::Merged { .. } => None,
        })
        .collect();
    assert_eq!(ours, conflicted, "{strategy:?}: the same branch conflicts");

    let tip = build.tip().to_string();
    assert_eq!(
        shape(&t, &base, &tip),
        shape(&t, &base, "roadmap"),
        "{strategy:?}: same trees and parents as git one by one"
    );
    // Each merged branch's commit is the batch tip right after it.
    let merged: Vec<Oid> = build
        .merges
        .iter()
        .filter_map(|m| match m {
            BatchMerge::Merged { commit, .. } => Some(*commit),
            BatchMerge::Conflicted { .. } => None,
        })
        .collect();
    assert_eq!(merged.last().copied(), Some(build.tip()));
    for pair in merged.windows(2) {
        assert!(t
            .git_cmd(&[
                "merge-base",
                "--is-ancestor",
                &pair[0].to_string(),
                &pair[1].to_string()
            ])
            .status()
            .unwrap()
            .success());
    }
}

#[test]
fn batch_of_merges_equals_git_merging_one_by_one() {
    batch_matches_one_by_one(MergeStrategy::Merge);
}

#[test]
fn batch_of_squashes_equals_git_squashing_one_by_one() {
    batch_matches_one_by_one(MergeStrategy::Squash);
}

#[test]
fn batch_of_rebases_equals_git_rebasing_one_by_one() {
    batch_matches_one_by_one(MergeStrategy::Rebase);
}

#[test]
fn batch_stacked_on_another_batch_equals_one_batch() {
    let t = five_branches();
    let repo = Repo::discover(&t.root).unwrap();
    let item = |b: &str| BatchItem {
        branch: b.to_string(),
        message: format!("merge {b}"),
    };
    let all: Vec<BatchItem> = ["b1", "b2", "b3", "b5"].iter().map(|b| item(b)).collect();
    let whole = repo
        .build_batch("roadmap", None, &all, MergeStrategy::Merge)
        .unwrap();
    let first = repo
        .build_batch("roadmap", None, &all[..2], MergeStrategy::Merge)
        .unwrap();
    let second = repo
        .build_batch(
            "roadmap",
            Some(first.tip()),
            &all[2..],
            MergeStrategy::Merge,
        )
        .unwrap();
    assert_eq!(second.base, first.tip());
    let base = t.git(&["rev-parse", "roadmap"]);
    assert_eq!(
        shape(&t, &base, &second.tip().to_string()),
        shape(&t, &base, &whole.tip().to_string())
    );
}

#[test]
fn batch_names_a_missing_branch() {
    let t = five_branches();
    let repo = Repo::discover(&t.root).unwrap();
    let items = [BatchItem {
        branch: "nope".into(),
        message: "m".into(),
    }];
    let err = repo
        .build_batch("roadmap", None, &items, MergeStrategy::Merge)
        .unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}

// ---- warm gate worktrees ----

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn gate_worktree_moves_by_the_difference_and_keeps_build_output() {
    let t = TestRepo::with_files(&[
        (".gitignore", "target/\n"),
        ("keep.txt", "unchanged\n"),
        ("src/lib.rs", "fn a() {}\n"),
        ("src/old.rs", "old\n"),
    ]);
    let c1 = t.git(&["rev-parse", "HEAD"]);
    t.write("src/lib.rs", "fn a() {}\nfn b() {}\n");
    t.write("src/new.rs", "new\n");
    t.git(&["rm", "-q", "src/old.rs"]);
    t.commit_all("second");
    let c2 = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();

    let gate = repo.warm_gate_worktree(0, oid(&c1)).unwrap();
    assert!(gate.fresh);
    let common = PathBuf::from(t.git(&["rev-parse", "--git-common-dir"]));
    let common = if common.is_absolute() {
        common
    } else {
        t.root.join(common)
    };
    assert_eq!(
        std::fs::canonicalize(&gate.path).unwrap(),
        std::fs::canonicalize(common.join("treefarm/gates/0")).unwrap()
    );
    assert_eq!(t.git_at(&gate.path, &["rev-parse", "HEAD"]), c1);
    assert_eq!(t.git_at(&gate.path, &["status", "--porcelain"]), "");

    // What a gate leaves behind: build output, a stray file, a tracked file
    // it rewrote, one it deleted.
    std::fs::create_dir_all(gate.path.join("target/debug")).unwrap();
    std::fs::write(gate.path.join("target/debug/app.o"), "object").unwrap();
    std::fs::write(gate.path.join("notes.txt"), "scratch").unwrap();
    std::fs::write(gate.path.join("src/lib.rs"), "garbage").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(gate.path.join("keep.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let keep_before = mtime(&gate.path.join("keep.txt"));
    std::fs::remove_file(gate.path.join("src/old.rs")).unwrap();

    let moved = repo.warm_gate_worktree(0, oid(&c2)).unwrap();
    assert!(!moved.fresh);
    assert_eq!(moved.path, gate.path);
    assert_eq!(t.git_at(&gate.path, &["rev-parse", "HEAD"]), c2);
    assert_eq!(
        t.git_at(&gate.path, &["status", "--porcelain"]),
        "?? notes.txt",
        "tracked files exactly as in the commit"
    );
    assert_eq!(
        t.git_at(&gate.path, &["ls-files"]),
        t.git(&["ls-tree", "-r", "--name-only", &c2])
    );
    assert_eq!(
        std::fs::read_to_string(gate.path.join("src/lib.rs")).unwrap(),
        "fn a() {}\nfn b() {}\n"
    );
    assert!(!gate.path.join("src/old.rs").exists());
    assert_eq!(
        std::fs::read_to_string(gate.path.join("target/debug/app.o")).unwrap(),
        "object",
        "build output survives"
    );
    assert_eq!(
        mtime(&gate.path.join("keep.txt")),
        keep_before,
        "unchanged file not rewritten"
    );

    // Back again, and a second slot beside it.
    repo.warm_gate_worktree(0, oid(&c1)).unwrap();
    assert_eq!(
        t.git_at(&gate.path, &["status", "--porcelain"]),
        "?? notes.txt"
    );
    assert_eq!(t.git_at(&gate.path, &["rev-parse", "HEAD"]), c1);
    let other = repo.warm_gate_worktree(1, oid(&c2)).unwrap();
    assert!(other.fresh);
    let listed = t.git(&["worktree", "list", "--porcelain"]);
    assert!(listed.contains("treefarm/gates/0"), "{listed}");
    assert!(listed.contains("treefarm/gates/1"), "{listed}");
    assert!(
        t.git(&["branch", "--list", "treefarm/*"]).is_empty(),
        "no branch left"
    );

    repo.remove_gate_worktree(1).unwrap();
    repo.remove_gate_worktree(1).unwrap();
    assert!(!other.path.exists());
    assert!(!t
        .git(&["worktree", "list", "--porcelain"])
        .contains("treefarm/gates/1"));
}

#[test]
fn broken_gate_worktree_is_planted_again() {
    let t = TestRepo::with_files(&[("a.txt", "a\n")]);
    let head = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();
    let gate = repo.warm_gate_worktree(0, oid(&head)).unwrap();
    // Its admin entry pruned away by someone else.
    let common = repo.common_dir().to_path_buf();
    std::fs::remove_dir_all(common.join("worktrees/gate-pool-0")).unwrap();
    // And the temporary branch of a planting that was killed half-way.
    t.git(&["branch", "treefarm/gate-pool-0", "HEAD"]);
    let again = repo.warm_gate_worktree(0, oid(&head)).unwrap();
    assert!(again.fresh);
    assert_eq!(t.git_at(&gate.path, &["status", "--porcelain"]), "");
    assert_eq!(t.git_at(&gate.path, &["rev-parse", "HEAD"]), head);
    assert!(t.git(&["branch", "--list", "treefarm/*"]).is_empty());
}

#[test]
fn gate_worktree_whose_move_was_killed_is_planted_again() {
    // Killed while moving to a commit that adds `bad.txt`: the file is on
    // disk but HEAD still names the old commit, so to the next move it
    // would be untracked, and kept. The marker left behind says the move
    // did not finish: the worktree is planted again, without it.
    let t = TestRepo::with_files(&[("a.txt", "a\n")]);
    let head = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();
    let gate = repo.warm_gate_worktree(0, oid(&head)).unwrap();
    std::fs::write(gate.path.join("bad.txt"), "half-written\n").unwrap();
    let marker = repo.common_dir().join("treefarm/gates/0.moving");
    std::fs::write(&marker, "0000\n").unwrap();
    let again = repo.warm_gate_worktree(0, oid(&head)).unwrap();
    assert!(again.fresh);
    assert!(!gate.path.join("bad.txt").exists());
    assert!(!marker.exists());
    assert_eq!(t.git_at(&gate.path, &["status", "--porcelain"]), "");
    // A move that finished leaves no marker and keeps untracked output.
    std::fs::write(gate.path.join("build.out"), "cached\n").unwrap();
    let moved = repo.warm_gate_worktree(0, oid(&head)).unwrap();
    assert!(!moved.fresh && gate.path.join("build.out").exists());
    assert!(!marker.exists());
}

// ---- conflict hand-back ----

/// Twin-able repository: `roadmap` and `treefarm/020` both edit a.txt line 2
/// and b.txt differently; c.txt only on the branch.
fn conflicting() -> TestRepo {
    let t = TestRepo::with_files(&[("a.txt", "1\n2\n3\n"), ("b.txt", "b\n"), ("c.txt", "c\n")]);
    t.git(&["branch", "roadmap"]);
    t.git(&["checkout", "-q", "-b", "treefarm/020"]);
    t.write("a.txt", "1\ntwo (branch)\n3\n");
    t.write("b.txt", "b branch\n");
    t.write("c.txt", "c branch\n");
    t.commit_all("branch work");
    t.git(&["checkout", "-q", "roadmap"]);
    t.write("a.txt", "1\ntwo (target)\n3\n");
    t.write("b.txt", "b target\n");
    t.commit_all("target work");
    t.git(&["checkout", "-q", "treefarm/020"]);
    t
}

fn merge_state(t: &TestRepo) -> String {
    let git_dir = PathBuf::from(t.git(&["rev-parse", "--absolute-git-dir"]));
    let read =
        |f: &str| std::fs::read_to_string(git_dir.join(f)).unwrap_or_else(|_| format!("<no {f}>"));
    format!(
        "unmerged\n{}\nstatus\n{}\nMERGE_HEAD {}MERGE_MSG\n{}\na.txt\n{}b.txt\n{}c.txt\n{}",
        t.git(&["ls-files", "-u"]),
        t.git(&["status", "--porcelain"]),
        read("MERGE_HEAD"),
        read("MERGE_MSG"),
        t.read("a.txt"),
        t.read("b.txt"),
        t.read("c.txt"),
    )
}

#[test]
fn hand_back_leaves_the_worktree_as_git_merge_does() {
    let ours = conflicting();
    let twin = conflicting();
    assert_eq!(
        ours.git(&["rev-parse", "roadmap", "treefarm/020"]),
        twin.git(&["rev-parse", "roadmap", "treefarm/020"]),
        "twins are identical"
    );
    let out = twin.git_cmd(&["merge", "roadmap"]).output().unwrap();
    assert!(!out.status.success(), "git merge conflicts");

    let repo = Repo::discover(&ours.root).unwrap();
    let result = repo
        .hand_back_conflict(&ours.root, "treefarm/020", "roadmap")
        .unwrap();
    let HandBackResult::Prepared(hand_back) = result else {
        panic!("expected a conflict, got {result:?}");
    };
    assert_eq!(
        hand_back.paths,
        vec!["a.txt".to_string(), "b.txt".to_string()]
    );
    assert_eq!(
        hand_back.target_tip,
        oid(&ours.git(&["rev-parse", "roadmap"]))
    );
    let expected = merge_state(&twin);
    assert!(expected.contains("<<<<<<< HEAD"), "{expected}");
    assert_eq!(merge_state(&ours), expected);

    // Not concluded yet.
    let outcome = repo
        .resolution_outcome(&ours.root, "treefarm/020", &hand_back)
        .unwrap();
    assert!(
        matches!(&outcome, Resolution::Unresolved { reason } if reason.contains("MERGE_HEAD")),
        "{outcome:?}"
    );
    // Resolved and committed as an agent would.
    ours.write("a.txt", "1\ntwo (both)\n3\n");
    ours.write("b.txt", "b both\n");
    ours.git(&["add", "-A"]);
    ours.git(&["commit", "-q", "--no-edit"]);
    let tip = oid(&ours.git(&["rev-parse", "HEAD"]));
    assert_eq!(
        repo.resolution_outcome(&ours.root, "treefarm/020", &hand_back)
            .unwrap(),
        Resolution::Concluded { commit: tip }
    );
    // The resolved branch now merges cleanly with every strategy, landing
    // the agent's resolution (rebase fast-forwards over the merge).
    for strategy in [
        MergeStrategy::Merge,
        MergeStrategy::Squash,
        MergeStrategy::Rebase,
    ] {
        let prepared = repo
            .prepare_merge("roadmap", "treefarm/020", strategy, "land")
            .unwrap();
        let Prepared::Ready { new, .. } = prepared else {
            panic!("{strategy:?}: {prepared:?}");
        };
        assert_eq!(
            ours.git(&["rev-parse", &format!("{new}^{{tree}}")]),
            ours.git(&["rev-parse", "HEAD^{tree}"]),
            "{strategy:?}"
        );
    }
}

#[test]
fn markers_committed_are_not_a_resolution() {
    let t = conflicting();
    let repo = Repo::discover(&t.root).unwrap();
    let HandBackResult::Prepared(hand_back) = repo
        .hand_back_conflict(&t.root, "treefarm/020", "roadmap")
        .unwrap()
    else {
        panic!("expected a conflict");
    };
    t.write("a.txt", "1\ntwo (both)\n3\n");
    t.git(&["add", "-A"]); // b.txt still has its markers
    t.git(&["commit", "-q", "--no-edit"]);
    let outcome = repo
        .resolution_outcome(&t.root, "treefarm/020", &hand_back)
        .unwrap();
    assert!(
        matches!(&outcome, Resolution::Unresolved { reason } if reason.contains("`b.txt`")),
        "{outcome:?}"
    );
}

#[test]
fn giving_up_on_the_merge_is_not_a_resolution() {
    let t = conflicting();
    let repo = Repo::discover(&t.root).unwrap();
    let HandBackResult::Prepared(hand_back) = repo
        .hand_back_conflict(&t.root, "treefarm/020", "roadmap")
        .unwrap()
    else {
        panic!("expected a conflict");
    };
    t.git(&["merge", "--abort"]);
    t.write("c.txt", "something else\n");
    t.commit_all("not a merge");
    let outcome = repo
        .resolution_outcome(&t.root, "treefarm/020", &hand_back)
        .unwrap();
    assert!(
        matches!(&outcome, Resolution::Unresolved { reason } if reason.contains("as a parent")),
        "{outcome:?}"
    );
}

#[test]
fn hand_back_refuses_a_dirty_worktree_and_skips_a_clean_merge() {
    let t = conflicting();
    let repo = Repo::discover(&t.root).unwrap();
    t.write("c.txt", "uncommitted\n");
    let err = repo
        .hand_back_conflict(&t.root, "treefarm/020", "roadmap")
        .unwrap_err();
    assert!(err.to_string().contains("uncommitted changes"), "{err}");
    assert_eq!(t.read("c.txt"), "uncommitted\n", "nothing touched");

    t.git(&["checkout", "-q", "--", "c.txt"]);
    t.git(&["checkout", "-q", "-b", "clean", "main"]);
    t.write("z.txt", "z\n");
    t.commit_all("unrelated");
    let before = t.main_snapshot();
    assert_eq!(
        repo.hand_back_conflict(&t.root, "clean", "roadmap")
            .unwrap(),
        HandBackResult::NoConflict
    );
    assert_eq!(t.main_snapshot(), before);
}

#[test]
fn conflict_markers_are_recognised() {
    use treefarm::git::has_conflict_markers;
    assert!(has_conflict_markers(
        b"a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> roadmap\n"
    ));
    assert!(has_conflict_markers(b">>>>>>>\n"));
    assert!(!has_conflict_markers(
        b"title\n=======\n<<<<<<<<<< not one\n"
    ));
}

#[test]
fn gate_in_a_warm_worktree_finds_the_last_build_output() {
    let t = TestRepo::with_files(&[(".gitignore", "target/\n"), ("a.txt", "1\n")]);
    let c1 = t.git(&["rev-parse", "HEAD"]);
    t.write("a.txt", "2\n");
    t.commit_all("two");
    let c2 = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();
    let logs = t.tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // A "build" that is incremental when its output is still there.
    let command = "if [ -f target/built ]; then echo incremental; else echo from-scratch; \
                   mkdir -p target && touch target/built; fi; \
                   test \"$(git rev-parse HEAD)\" = \"$TREEFARM_GATE_COMMIT\" && grep -q . a.txt";
    let mut seen = vec![];
    for (n, commit) in [&c1, &c2].into_iter().enumerate() {
        let warm = repo.warm_gate_worktree(0, oid(commit)).unwrap();
        // The gate command as the queue runs it: `sh -c` in the worktree.
        let log = logs.join(format!("gate-{n}.log"));
        let out = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(&warm.path)
            .env("TREEFARM_GATE_COMMIT", commit)
            .output()
            .unwrap();
        std::fs::write(&log, &out.stdout).unwrap();
        assert!(out.status.success(), "gate passes on {commit}");
        seen.push(std::fs::read_to_string(&log).unwrap().trim().to_string());
    }
    assert_eq!(seen, ["from-scratch", "incremental"]);
}

#[test]
fn a_merge_nobody_accounts_for_is_aborted_back_to_head() {
    // What a preparation killed half-way leaves: a merge in progress.
    let t = conflicting();
    let head = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();
    let result = repo
        .hand_back_conflict(&t.root, "treefarm/020", "roadmap")
        .unwrap();
    assert!(matches!(result, HandBackResult::Prepared(_)));
    assert!(Repo::merge_in_progress(&t.root).unwrap());
    Repo::abort_merge(&t.root).unwrap();
    assert!(!Repo::merge_in_progress(&t.root).unwrap());
    assert_eq!(t.git(&["status", "--porcelain"]), "");
    assert_eq!(t.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(t.read("a.txt"), "1\ntwo (branch)\n3\n");
    // And it can be handed back again.
    let again = repo
        .hand_back_conflict(&t.root, "treefarm/020", "roadmap")
        .unwrap();
    assert!(matches!(again, HandBackResult::Prepared(_)));
}
