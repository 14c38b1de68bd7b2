//! What treefarm does after an agent exits costs what the agent changed, not
//! the repository's size (issue 27): the scope audit diffs only the subtrees
//! that differ, and a sparse worktree left as planted is judged from a stamp
//! of its files, with no index read. Real `git` is the oracle.

use crate::common;

use common::{stderr, TestRepo};
use treefarm::git::{Oid, Repo};

/// A repository of three folders, a script, a link and a submodule gitlink,
/// with a spec declaring `a/**` and sparse worktrees on.
fn sparse_farm(agent: &str, extra: &str) -> TestRepo {
    let mut files: Vec<(String, String)> = vec![("tool.sh".into(), "#!/bin/sh\n".into())];
    files.extend(common::folders_of_files(&["a", "b", "c"], 20));
    let t = TestRepo::with_files(&files);
    t.write(
        "specs/SPEC-001-one.md",
        "---\ntitle: one\nfiles:\n  - a/**\n---\nChange a.\n",
    );
    t.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: {agent}\n{extra}worktree:\n  sparse: auto\n{}",
            common::allow_write_yaml(&[&t.records()])
        ),
    );
    t.commit_all("spec and config");
    t
}

/// `treefarm run ARGS` with its diagnostics at debug level, where the
/// collection says whether it needed a listing.
fn run_debug(t: &TestRepo, args: &[&str]) -> std::process::Output {
    let mut cmd = t.treefarm();
    cmd.env("TREEFARM_LOG", "treefarm=debug")
        .arg("run")
        .args(args);
    cmd.output().expect("spawn treefarm")
}

/// `sh <script>`: an agent running `body`, written beside the repository.
fn agent(t: &TestRepo, body: &str) -> String {
    let path = t.tmp.path().join("agent.sh");
    std::fs::write(&path, body).unwrap();
    format!("sh {}", path.display())
}

#[test]
fn an_untouched_sparse_worktree_is_collected_from_its_stamp_without_a_listing() {
    let t = sparse_farm("true", "  allow_unchanged: true\n");
    let out = run_debug(&t, &["--no-merge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unchanged since the agent started: no listing"),
        "the stamp decided: {err}"
    );
    let wt = t.worktree_dir().join("001");
    assert!(!wt.join("b").exists(), "the worktree is sparse");
    assert_eq!(
        t.git(&["rev-parse", "treefarm/001"]),
        t.git(&["rev-parse", "HEAD"]),
        "nothing was committed"
    );
    assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), "");
}

#[test]
fn an_untouched_sparse_worktree_still_fails_as_unchanged_without_allow_unchanged() {
    let t = sparse_farm("true", "  retries: 0\n");
    let out = run_debug(&t, &["--no-merge"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(t.instance("001")["state"], "unchanged", "{}", stderr(&out));
}

/// A rewrite that keeps the size and puts the modification time back moves
/// the change time, which the stamp compares: the rewrite is committed.
#[test]
fn a_same_size_rewrite_with_its_old_mtime_is_still_committed() {
    let t = sparse_farm("true", "");
    let agent = agent(
        &t,
        "set -e\ntouch -r a/f1.txt \"$TMPDIR/when\"\nprintf 'a 9\\n' > a/f1.txt\n\
         touch -r \"$TMPDIR/when\" a/f1.txt\n",
    );
    let out = run_debug(&t, &["--no-merge", "--agent", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wt = t.worktree_dir().join("001");
    assert_eq!(t.show("treefarm/001", "a/f1.txt"), "a 9");
    assert_eq!(
        t.git_at(&wt, &["log", "-1", "--format=%s"]),
        "treefarm: commit changes left uncommitted by the agent for 001"
    );
    assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), "");
    assert!(
        !stderr(&out).contains("unchanged since the agent started"),
        "{}",
        stderr(&out)
    );
}

/// An agent that changed a file and added one, on the defaults (isolation,
/// the queue): its work is read from the stamp — no listing of the index of
/// every tracked file — committed, merged, and its worktree pruned with no
/// listing either, since nothing moved after treefarm's commit.
#[test]
fn a_changed_sparse_worktree_is_committed_from_its_stamp_and_pruned_without_a_listing() {
    let t = sparse_farm("true", "");
    let agent = agent(&t, "set -e\necho more >> a/f1.txt\necho new > a/new.txt\n");
    let out = run_debug(&t, &["--agent", &agent]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("read from the stamp: no listing"), "{err}");
    assert!(
        err.contains("clean since treefarm committed in it: no listing"),
        "{err}"
    );
    assert_eq!(t.instance("001")["state"], "pruned", "{err}");
    assert!(!t.worktree_dir().join("001").exists(), "{err}");
    assert_eq!(t.show("roadmap", "a/new.txt"), "new");
    assert!(t.show("roadmap", "a/f1.txt").ends_with("more"));
}

/// `Repo::diff_paths` (the scope audit's paths) against `git diff
/// --name-only --no-renames`: added, modified, deleted, a file that became a
/// folder and a folder that became a file, the executable bit, a symlink, a
/// submodule moved, a file in a new folder — and nothing when equal.
#[test]
fn diff_paths_lists_what_git_diff_name_only_lists() {
    let t = TestRepo::with_files(&[
        ("keep/a.txt", "a\n"),
        ("keep/deep/b.txt", "b\n"),
        ("edit.txt", "before\n"),
        ("gone.txt", "bye\n"),
        ("tool.sh", "#!/bin/sh\n"),
        ("was_file", "f\n"),
        ("was_dir/x.txt", "x\n"),
        ("was_dir/y/z.txt", "z\n"),
    ]);
    std::os::unix::fs::symlink("edit.txt", t.root.join("link")).unwrap();
    t.git(&["add", "link"]);
    let head = t.git(&["rev-parse", "HEAD"]);
    t.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{head},sub"),
    ]);
    t.git(&["commit", "-q", "-m", "link and submodule"]);
    let from = t.git(&["rev-parse", "HEAD"]);
    t.write("edit.txt", "after\n");
    t.git(&["rm", "-q", "gone.txt", "was_file"]);
    t.git(&["rm", "-q", "-r", "was_dir"]);
    t.write("was_file/inside.txt", "now a folder\n");
    t.write("was_dir", "now a file\n");
    t.write("new/deeper/c.txt", "c\n");
    t.git(&["update-index", "--chmod=+x", "tool.sh"]);
    std::fs::remove_file(t.root.join("link")).unwrap();
    std::os::unix::fs::symlink("tool.sh", t.root.join("link")).unwrap();
    t.git(&["update-index", "--cacheinfo", &format!("160000,{from},sub")]);
    t.git(&["add", "-A"]);
    t.git(&["commit", "-q", "-m", "everything"]);
    let to = t.git(&["rev-parse", "HEAD"]);

    let repo = Repo::discover(&t.root).unwrap();
    let oid = |s: &str| Oid::from_str(s).unwrap();
    let ours = repo.diff_paths(oid(&from), oid(&to)).unwrap();
    let mut git: Vec<String> = t
        .git(&["diff", "--name-only", "--no-renames", &from, &to])
        .lines()
        .map(str::to_string)
        .collect();
    git.sort();
    assert_eq!(ours, git);
    assert!(!ours.iter().any(|p| p.starts_with("keep/")));
    assert!(repo.diff_paths(oid(&to), oid(&to)).unwrap().is_empty());
    let back = repo.diff_paths(oid(&to), oid(&from)).unwrap();
    assert_eq!(back, git, "the same paths either way");
}

/// The planted sparse index carries a valid tree cache (git's `TREE`
/// extension) whose root is HEAD's tree: marking entries skip-worktree and
/// checking files out invalidate it, so the plant rebuilds it, and the
/// leftover commit then builds only the folders that changed.
#[test]
fn a_planted_sparse_index_caches_heads_tree() {
    let t = sparse_farm("true", "");
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("001");
    let req = treefarm::git::WorktreeRequest {
        name: "001".into(),
        path: path.clone(),
        branch: "treefarm/001".into(),
        start: Oid::from_str(&t.git(&["rev-parse", "HEAD"])).unwrap(),
        reuse: false,
        sparse: Some(treefarm::git::SparseRequest {
            declared: vec!["a/**".into()],
            include: Vec::new(),
            exact: false,
        }),
    };
    repo.add_worktrees(&[req]).remove(0).unwrap();
    assert!(!path.join("b").exists(), "the worktree is sparse");
    let index = std::fs::read(t.git_at(&path, &["rev-parse", "--git-path", "index"]))
        .or_else(|_| {
            std::fs::read(path.join(t.git_at(&path, &["rev-parse", "--git-path", "index"])))
        })
        .unwrap();
    // The extension: "TREE", a 4-byte length, then the root entry: an empty
    // path, NUL, "<entry count> <subtrees>\n" and, when valid, its tree id.
    let at = index
        .windows(4)
        .position(|w| w == b"TREE")
        .expect("a TREE extension");
    let root = &index[at + 8..];
    assert_eq!(root[0], 0, "the root entry has an empty path");
    let nl = root.iter().position(|&b| b == b'\n').unwrap();
    let counts = String::from_utf8_lossy(&root[1..nl]).to_string();
    assert!(!counts.starts_with('-'), "root cache valid: {counts}");
    let id: String = root[nl + 1..nl + 21]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, t.git(&["rev-parse", "HEAD^{tree}"]));
    assert_eq!(t.git_at(&path, &["status", "--porcelain"]), "");
}
