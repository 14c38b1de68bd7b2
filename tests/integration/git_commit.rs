//! `treefarm::git` commits, dirtiness and history queries, checked against
//! real `git`.

use crate::common;

use common::TestRepo;
use treefarm::git::{GitError, Oid, Repo, WorktreeRequest};

fn oid(s: &str) -> Oid {
    Oid::from_str(s).unwrap()
}

/// A repository plus one linked worktree `020` on `treefarm/020`.
fn with_worktree() -> (TestRepo, Repo, std::path::PathBuf) {
    let t = TestRepo::with_files(&[
        ("keep.txt", "keep\n"),
        ("edit.txt", "before\n"),
        ("gone.txt", "bye\n"),
        (".gitignore", "*.log\ntarget/\n"),
    ]);
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("020");
    let req = WorktreeRequest {
        name: "020".into(),
        path: path.clone(),
        branch: "treefarm/020".into(),
        start: oid(&t.git(&["rev-parse", "HEAD"])),
        reuse: false,
        sparse: None,
    };
    repo.add_worktrees(&[req]).remove(0).unwrap();
    (t, repo, path)
}

#[test]
fn commit_all_stages_new_modified_and_deleted_but_not_ignored_files() {
    let (t, _repo, wt) = with_worktree();
    let before = t.main_snapshot();
    std::fs::write(wt.join("edit.txt"), "after\n").unwrap();
    std::fs::remove_file(wt.join("gone.txt")).unwrap();
    std::fs::create_dir_all(wt.join("new dir")).unwrap();
    std::fs::write(wt.join("new dir/new.txt"), "new\n").unwrap();
    std::fs::write(wt.join("debug.log"), "ignored\n").unwrap();
    std::fs::create_dir_all(wt.join("target")).unwrap();
    std::fs::write(wt.join("target/out"), "ignored\n").unwrap();

    let id = Repo::commit_all(&wt, "agent work")
        .unwrap()
        .expect("a commit");
    assert_eq!(t.git_at(&wt, &["rev-parse", "HEAD"]), id.to_string());
    assert_eq!(t.git(&["rev-parse", "treefarm/020"]), id.to_string());
    let changes = t.git_at(
        &wt,
        &["show", "--name-status", "--format=%s|%an <%ae>|%P", "HEAD"],
    );
    let parent = t.git(&["rev-parse", "main"]);
    assert_eq!(
        changes,
        format!("agent work|Test User <user@example.com>|{parent}\n\nM\tedit.txt\nD\tgone.txt\nA\tnew dir/new.txt")
    );
    assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), "");
    assert!(t
        .git_at(&wt, &["status", "--porcelain", "--ignored"])
        .contains("debug.log"));
    assert_eq!(Repo::commit_all(&wt, "again").unwrap(), None);
    assert_eq!(t.main_snapshot(), before);
}

#[test]
fn is_dirty_sees_tracked_changes_and_untracked_files_but_not_ignored_ones() {
    let (t, _repo, wt) = with_worktree();
    assert!(!Repo::is_dirty(&wt).unwrap());
    std::fs::write(wt.join("x.log"), "ignored").unwrap();
    assert!(!Repo::is_dirty(&wt).unwrap());
    std::fs::write(wt.join("untracked.txt"), "u").unwrap();
    assert!(Repo::is_dirty(&wt).unwrap());
    std::fs::remove_file(wt.join("untracked.txt")).unwrap();
    std::fs::write(wt.join("edit.txt"), "changed\n").unwrap();
    assert!(Repo::is_dirty(&wt).unwrap());
    t.git_at(&wt, &["add", "edit.txt"]);
    assert!(Repo::is_dirty(&wt).unwrap());
    t.git_at(&wt, &["commit", "-qm", "x"]);
    assert!(!Repo::is_dirty(&wt).unwrap());
    assert!(!Repo::is_dirty(&t.root).unwrap());
}

#[test]
fn history_queries_match_git() {
    let (t, repo, wt) = with_worktree();
    let base = repo.resolve("HEAD").unwrap();
    assert_eq!(base, repo.resolve("main").unwrap());
    std::fs::write(wt.join("edit.txt"), "one\n").unwrap();
    let c1 = Repo::commit_all(&wt, "first change\n\nbody")
        .unwrap()
        .unwrap();
    t.git_at(&wt, &["mv", "keep.txt", "kept.txt"]);
    t.git_at(
        &wt,
        &[
            "commit",
            "-qm",
            "rename",
            "--author",
            "Alice <alice@example.com>",
        ],
    );
    let c2 = oid(&t.git_at(&wt, &["rev-parse", "HEAD"]));

    assert_eq!(repo.branch_tip("treefarm/020").unwrap(), Some(c2));
    assert_eq!(repo.branch_tip("nope").unwrap(), None);
    assert!(repo.is_ancestor(base, c2).unwrap());
    assert!(!repo.is_ancestor(c2, base).unwrap());
    assert!(repo.is_ancestor(c1, c1).unwrap());

    let commits = repo.commits_between(base, c2).unwrap();
    let got: Vec<_> = commits
        .iter()
        .map(|c| (c.id, c.summary.as_str(), c.author.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (c1, "first change", "Test User <user@example.com>"),
            (c2, "rename", "Alice <alice@example.com>"),
        ]
    );

    let changed = repo.diff_paths(base, c2).unwrap();
    assert_eq!(changed, vec!["edit.txt", "keep.txt", "kept.txt"]);
    let git_changed = t.git(&[
        "diff",
        "--name-only",
        "--no-renames",
        &base.to_string(),
        &c2.to_string(),
    ]);
    assert_eq!(changed.join("\n"), git_changed);

    let tracked = repo.tracked_files(c2).unwrap();
    assert_eq!(
        tracked.join("\n"),
        t.git(&["ls-tree", "-r", "--name-only", &c2.to_string()])
    );

    let err = repo.resolve("no-such-rev").unwrap_err();
    assert!(matches!(err, GitError::UnknownRevision { .. }), "{err:?}");
    assert!(err.is_user_fixable());
    assert!(err.to_string().contains("`no-such-rev`"), "{err}");
}

#[test]
fn ensure_branch_creates_once_and_reports_an_existing_tip() {
    let t = TestRepo::with_files(&[("a", "a")]);
    let repo = Repo::discover(&t.root).unwrap();
    let head = repo.resolve("HEAD").unwrap();
    assert_eq!(repo.ensure_branch("roadmap", head).unwrap(), None);
    assert_eq!(t.git(&["rev-parse", "roadmap"]), head.to_string());
    t.write("b", "b");
    t.commit_all("second");
    let second = repo.resolve("HEAD").unwrap();
    assert_eq!(repo.ensure_branch("roadmap", second).unwrap(), Some(head));
    assert_eq!(t.git(&["rev-parse", "roadmap"]), head.to_string());
    assert!(matches!(
        repo.ensure_branch("bad..name", head),
        Err(GitError::InvalidBranchName { .. })
    ));
}

#[test]
fn tracked_files_lists_forty_thousand_files_quickly() {
    let t = TestRepo::with_files(&[("seed", "x")]);
    // Build a big tree with plumbing: one blob, 40 dirs of 1000 entries.
    let blob = t.git(&["hash-object", "-w", "seed"]);
    let mut top = String::new();
    for d in 0..40 {
        let entries: String = (0..1000)
            .map(|f| format!("100644 blob {blob}\tf{f:04}.rs\n"))
            .collect();
        let mut cmd = t.git_cmd(&["mktree"]);
        let tree = pipe(&mut cmd, &entries);
        top.push_str(&format!("040000 tree {tree}\td{d:02}\n"));
    }
    let tree = pipe(&mut t.git_cmd(&["mktree"]), &top);
    let commit = t.git(&["commit-tree", &tree, "-m", "big"]);
    let repo = Repo::discover(&t.root).unwrap();
    let started = std::time::Instant::now();
    let files = repo.tracked_files(oid(&commit)).unwrap();
    let took = started.elapsed();
    assert_eq!(files.len(), 40_000);
    assert_eq!(files[0], "d00/f0000.rs");
    assert!(files.windows(2).all(|w| w[0] < w[1]));
    eprintln!("tracked_files(40k) took {took:?}");
}

fn pipe(cmd: &mut std::process::Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
