//! Collecting an agent's work (issue 27): `Repo::commit_all_except` stages
//! only what changed — one listing of the worktree — and commits exactly what
//! `git add -A` would, in a sparse and in a full worktree, directly and
//! through a real run with isolation on. Real `git` is the oracle.

use crate::common;

use std::path::{Path, PathBuf};

use common::{stderr, TestRepo};
use treefarm::git::{Oid, Repo, SparseRequest, WorktreeRequest, WorktreeStamp};

/// Every kind of change an agent can leave behind, as a shell script run in
/// the worktree: added, modified, deleted, renamed, executable bit, symlink
/// retargeted and added, a file in a new folder, an ignored file, a file in
/// a folder a sparse checkout does not materialise (`c/`), and what setup
/// would have placed (`.env`, `data/`). The submodule `sub` is left alone.
const CHANGES: &str = r#"set -e
echo changed >> edit.txt
echo cone >> a/f1.txt
rm gone.txt
mv a/old.txt a/renamed.txt
chmod +x tool.sh
ln -sf edit.txt link
ln -s keep.txt newlink
mkdir -p newdir/deep && echo n > newdir/deep/f.txt
echo log > debug.log
mkdir -p c/outside && echo o > c/outside/created.txt
echo secret > .env
mkdir -p data && echo d > data/x.bin
"#;

/// What setup placed in the worktree (`setup.copy` / `setup.link`).
fn placed() -> Vec<String> {
    vec![".env".into(), "data".into()]
}

/// The git pathspec of `git add` that leaves out what [`placed`] names.
const ORACLE_ADD: &str = "git add -A --sparse -- . ':(exclude).env' ':(exclude)data'";

/// A repository with root files, a symlink, a script, folders `a`, `b`, `c`
/// of files, an ignore file and a submodule gitlink (never checked out).
fn collect_repo() -> TestRepo {
    let mut files: Vec<(String, String)> = vec![
        ("keep.txt".into(), "keep\n".into()),
        ("edit.txt".into(), "before\n".into()),
        ("gone.txt".into(), "bye\n".into()),
        ("tool.sh".into(), "#!/bin/sh\n".into()),
        (".gitignore".into(), "*.log\n".into()),
        ("a/old.txt".into(), "old\n".into()),
        (
            ".gitmodules".into(),
            "[submodule \"sub\"]\n\tpath = sub\n\turl = ./nowhere\n".into(),
        ),
    ];
    files.extend(common::folders_of_files(&["a", "b", "c"], 30));
    let repo = TestRepo::with_files(&files);
    std::os::unix::fs::symlink("keep.txt", repo.root.join("link")).unwrap();
    repo.git(&["add", "link"]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{head},sub"),
    ]);
    repo.git(&["commit", "-q", "-m", "link and submodule"]);
    repo
}

/// A linked worktree `name` of `repo` at HEAD, sparse on `a/**` or whole.
fn plant(t: &TestRepo, name: &str, sparse: bool) -> PathBuf {
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join(name);
    let req = WorktreeRequest {
        name: name.into(),
        path: path.clone(),
        branch: format!("treefarm/{name}"),
        start: Oid::from_str(&t.git(&["rev-parse", "HEAD"])).unwrap(),
        reuse: false,
        sparse: sparse.then(|| SparseRequest {
            declared: vec!["a/**".into()],
            include: Vec::new(),
            exact: false,
        }),
    };
    repo.add_worktrees(&[req]).remove(0).unwrap();
    path
}

fn sh(t: &TestRepo, dir: &Path, script: &str) -> String {
    let cmd = common::git_in(dir, &t.home, &[]);
    let mut sh = std::process::Command::new("sh");
    sh.current_dir(dir).arg("-c").arg(script);
    // The same isolated git environment as `TestRepo::git`.
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh.output().expect("run sh");
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn commit_all_except_commits_what_git_add_all_would_in_sparse_and_full_worktrees() {
    for sparse in [true, false] {
        let t = collect_repo();
        let ours = plant(&t, "001", sparse);
        let theirs = plant(&t, "002", sparse);
        assert_eq!(ours.join("b").exists(), !sparse, "sparse: {sparse}");
        for wt in [&ours, &theirs] {
            sh(&t, wt, CHANGES);
        }

        assert!(Repo::is_dirty_except(&ours, &placed()).unwrap());
        let listed = Repo::worktree_changes(&ours, &placed()).unwrap();
        let mut paths: Vec<String> = listed.paths().map(|p| p.display().to_string()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "a/f1.txt",
                "a/old.txt",
                "a/renamed.txt",
                "c/outside/created.txt",
                "edit.txt",
                "gone.txt",
                "link",
                "newdir/deep/f.txt",
                "newlink",
                "tool.sh",
            ],
            "sparse: {sparse}: only the changed paths are listed"
        );
        let id = Repo::commit_all_except(&ours, "agent work", &placed())
            .unwrap()
            .expect("a commit");
        let tree = t.git_at(&ours, &["rev-parse", &format!("{id}^{{tree}}")]);
        let oracle = sh(&t, &theirs, &format!("{ORACLE_ADD}\ngit write-tree"));
        assert_eq!(tree, oracle, "sparse: {sparse}: the tree git would commit");
        assert_eq!(
            t.git_at(&ours, &["ls-tree", &id.to_string(), "b/f0.txt", "link", "sub", "tool.sh"]),
            format!(
                "100644 blob {}\tb/f0.txt\n120000 blob {}\tlink\n160000 commit {}\tsub\n100755 blob {}\ttool.sh",
                t.git(&["rev-parse", "HEAD:b/f0.txt"]),
                sh(&t, &t.root, "printf edit.txt | git hash-object --stdin"),
                t.git(&["rev-parse", "HEAD:sub"]),
                t.git(&["rev-parse", "HEAD:tool.sh"]),
            ),
            "sparse: {sparse}: the script became executable, the link moved, the rest stayed"
        );
        // Git sees nothing left but the ignored and the placed files, and
        // no unmaterialised file became a deletion.
        assert_eq!(
            t.git_at(&ours, &["status", "--porcelain"]),
            "?? .env\n?? data/",
            "sparse: {sparse}"
        );
        assert!(!Repo::is_dirty_except(&ours, &placed()).unwrap());
        assert_eq!(
            Repo::commit_all_except(&ours, "again", &placed()).unwrap(),
            None
        );
    }
}

/// A stamp of the freshly planted `worktree`, taken once no file is as
/// new as the file system's clock (the stamp refuses those).
fn stamp_of(worktree: &Path) -> WorktreeStamp {
    for _ in 0..200 {
        if let Some(stamp) = WorktreeStamp::take(worktree) {
            return stamp;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no stamp of {} in 2 s", worktree.display());
}

/// With the stamp of the fresh sparse plant, the changes are read from the
/// paths that moved — no index read — and committed as `git add -A` then
/// `git commit` would: the same tree, and an index git finds up to date
/// (same entries, modes and skip-worktree bits as git's own, and stat data
/// `git diff-files` accepts without refreshing). What the stamp cannot
/// vouch for falls back to the full listing, with the same outcome: the
/// agent staged something, attributes appeared, a file became a folder.
#[test]
fn changes_read_from_a_stamp_are_committed_and_staged_as_git_would() {
    let cases = [
        ("from the stamp", "", true),
        ("the agent staged", "git add edit.txt\n", false),
        ("attributes", "echo '*.txt text' > .gitattributes\n", false),
        (
            "file to folder",
            "rm keep.txt && mkdir keep.txt && echo in > keep.txt/in\n",
            false,
        ),
        ("only touched", "", true),
    ];
    for (case, extra, stamped) in cases {
        let t = collect_repo();
        let ours = plant(&t, "001", true);
        let theirs = plant(&t, "002", true);
        let stamp = stamp_of(&ours);
        let script = if case == "only touched" {
            "touch edit.txt a/f1.txt && chmod +x tool.sh && chmod -x tool.sh\n".to_string()
        } else {
            format!("{CHANGES}{extra}")
        };
        for wt in [&ours, &theirs] {
            sh(&t, wt, &script);
        }
        let changes = Repo::worktree_changes_since(&ours, &placed(), Some(&stamp)).unwrap();
        assert_eq!(changes.read_from_stamp(), stamped, "{case}");
        let dirty = case != "only touched";
        assert_eq!(changes.is_dirty().unwrap(), dirty, "{case}");
        let committed = changes.commit("agent work").unwrap();
        assert_eq!(committed.is_some(), dirty, "{case}");
        let marker = lag_marker(&t, "001");
        if stamped && dirty {
            // The index lags the commit, marked, until the worktree turns
            // out to stay: then it is brought in line.
            assert!(marker.is_file(), "{case}: marked");
            assert_ne!(
                t.git_at(&ours, &["diff", "--cached", "--name-only"]),
                "",
                "{case}: the index still holds HEAD's parent"
            );
            treefarm::git::settle_index(&ours).unwrap();
        }
        assert!(!marker.exists(), "{case}: no lag left");
        let oracle = sh(&t, &theirs, &format!("{ORACLE_ADD}\ngit write-tree"));
        assert_eq!(
            t.git_at(&ours, &["rev-parse", "HEAD^{tree}"]),
            oracle,
            "{case}: the tree git would commit"
        );
        // The index, as git reads it with no refresh: every entry (mode,
        // blob, skip-worktree bit) as git's own, none with stale stat data.
        assert_eq!(
            t.git_at(&ours, &["ls-files", "--stage", "-t"]),
            t.git_at(&theirs, &["ls-files", "--stage", "-t"]),
            "{case}: the index git would write"
        );
        // Stat data: only what was staged from the stamp is vouched for. The
        // full listing's index write (libgit2) smudges racily clean entries
        // for git to look at again, and a file only touched keeps its old
        // stat until git refreshes, as after a `touch` in any checkout.
        if case == "from the stamp" {
            assert_eq!(t.git_at(&ours, &["diff-files", "--name-only"]), "");
        }
        assert_eq!(
            t.git_at(&ours, &["diff", "--cached", "--name-only"]),
            "",
            "{case}"
        );
        let left = if case == "only touched" {
            ""
        } else {
            "?? .env\n?? data/"
        };
        assert_eq!(t.git_at(&ours, &["status", "--porcelain"]), left, "{case}");
        assert_eq!(
            Repo::worktree_changes_since(&ours, &placed(), Some(&stamp))
                .unwrap()
                .commit("again")
                .unwrap(),
            None,
            "{case}: nothing left to commit"
        );
    }
}

/// Committing from a stamp vouches the worktree clean; removing it then
/// needs no listing while it is exactly as committed, and a change made
/// after the commit (or a file added) still keeps it from being removed.
#[test]
fn a_worktree_committed_from_its_stamp_is_removed_only_while_untouched_since() {
    for after in ["", "echo later >> edit.txt\n", "echo new > a/later.txt\n"] {
        let t = collect_repo();
        let wt = plant(&t, "001", true);
        let stamp = stamp_of(&wt);
        sh(&t, &wt, "echo changed >> edit.txt\necho new > a/new.txt\n");
        let changes = Repo::worktree_changes_since(&wt, &[], Some(&stamp)).unwrap();
        assert!(changes.read_from_stamp());
        assert!(changes.commit("agent work").unwrap().is_some());
        if !after.is_empty() {
            sh(&t, &wt, after);
        }
        let repo = Repo::discover(&t.root).unwrap();
        let removed = repo.remove_worktree(&wt, false);
        if after.is_empty() {
            removed.unwrap();
            assert!(!wt.exists());
        } else {
            assert!(
                matches!(removed, Err(treefarm::git::GitError::WorktreeDirty { .. })),
                "{after}: {removed:?}"
            );
            assert!(wt.join("edit.txt").exists(), "{after}: kept");
            // Kept, its index in line with its branch: only the later
            // change shows.
            assert!(!lag_marker(&t, "001").exists(), "{after}");
            let later = if after.contains("edit.txt") {
                "M edit.txt" // (trimmed: " M")
            } else {
                "?? a/later.txt"
            };
            assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), later, "{after}");
        }
    }
}

/// The marker of a lagging index in the admin folder of worktree `name`.
fn lag_marker(t: &TestRepo, name: &str) -> std::path::PathBuf {
    t.root
        .join(".git/worktrees")
        .join(name)
        .join("treefarm-index-lags")
}

/// An index left lagging by a process that is gone (only its marker says
/// so) is brought in line from the commit's trees: what git reads then is
/// its own index after `git add -A` (stat data aside: git looks at those
/// files' content once), and an entry staged since is left as it is.
#[test]
fn an_index_lagging_after_a_kill_is_brought_in_line_from_its_marker() {
    for staged_since in [false, true] {
        let t = collect_repo();
        let ours = plant(&t, "001", true);
        let theirs = plant(&t, "002", true);
        let stamp = stamp_of(&ours);
        for wt in [&ours, &theirs] {
            sh(&t, wt, CHANGES);
        }
        let changes = Repo::worktree_changes_since(&ours, &placed(), Some(&stamp)).unwrap();
        assert!(changes.read_from_stamp());
        changes.commit("agent work").unwrap().unwrap();
        // What a kill leaves: the marker, and an index this process must
        // not know about. A copy of the worktree's admin folder under
        // another name stands for the worktree as another process finds it.
        let marker = lag_marker(&t, "001");
        let commit = std::fs::read_to_string(&marker).unwrap();
        assert_eq!(commit.trim(), t.git_at(&ours, &["rev-parse", "HEAD"]));
        let kept = t.tmp.path().join("kept");
        copy_worktree(&t, &ours, "001", &kept);
        if staged_since {
            sh(&t, &kept, "echo staged > edit.txt\ngit add edit.txt\n");
        }
        let before = t.git_at(&kept, &["ls-files", "--stage", "edit.txt"]);
        treefarm::git::settle_index(&kept).unwrap();
        assert!(!lag_marker(&t, "kept").exists(), "{staged_since}");
        sh(&t, &theirs, ORACLE_ADD);
        if staged_since {
            assert_eq!(
                t.git_at(&kept, &["ls-files", "--stage", "edit.txt"]),
                before,
                "staged since: left"
            );
            continue;
        }
        assert_eq!(
            t.git_at(&kept, &["ls-files", "--stage", "-t"]),
            t.git_at(&theirs, &["ls-files", "--stage", "-t"]),
            "the index git would write"
        );
        assert_eq!(t.git_at(&kept, &["diff", "--cached", "--name-only"]), "");
        assert_eq!(
            t.git_at(&kept, &["status", "--porcelain"]),
            "?? .env\n?? data/"
        );
    }
}

/// Copies linked worktree `from` (files and admin folder `from_name`) to
/// `to`, registered as a worktree of the same repository named like `to`'s
/// last component, as `git worktree` would have made it.
fn copy_worktree(t: &TestRepo, from: &Path, from_name: &str, to: &Path) {
    let admin = t.root.join(".git/worktrees");
    let to_admin = admin.join(to.file_name().expect("a named folder"));
    for (src, dst) in [
        (from.to_path_buf(), to.to_path_buf()),
        (admin.join(from_name), to_admin.clone()),
    ] {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dst)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cp -a {} {}",
            src.display(),
            dst.display()
        );
    }
    std::fs::write(to.join(".git"), format!("gitdir: {}\n", to_admin.display())).unwrap();
    std::fs::write(
        to_admin.join("gitdir"),
        format!("{}\n", to.join(".git").display()),
    )
    .unwrap();
}

/// The agent of the run test: makes [`CHANGES`], then records the tree
/// `git add -A --sparse` makes of them, in a copy of its index (so the
/// worktree is left for treefarm to commit).
const AGENT: &str = r#"out="$RECORDS/oracle-$TREEFARM_SPEC_ID"; mkdir -p "$out"
CHANGES
cp "$(git rev-parse --git-path index)" "$TMPDIR/oracle-index"
GIT_INDEX_FILE="$TMPDIR/oracle-index" git add -A --sparse
GIT_INDEX_FILE="$TMPDIR/oracle-index" git write-tree > "$out/tree"
"#;

#[test]
fn a_run_with_isolation_commits_the_agents_leftovers_as_git_add_all_would() {
    for sparse in ["auto", "off"] {
        let t = collect_repo();
        t.write(
            "specs/SPEC-001-one.md",
            "---\ntitle: one\nfiles:\n  - a/**\n---\nChange a.\n",
        );
        t.write(
            "treefarm.yaml",
            &format!(
                "worktree:\n  sparse: {sparse}\n{}",
                common::allow_write_yaml(&[&t.records()])
            ),
        );
        t.commit_all("spec and config");
        let agent = t.tmp.path().join("agent.sh");
        let script = AGENT.replace("CHANGES", CHANGES.trim_start_matches("set -e\n"));
        std::fs::write(
            &agent,
            format!("set -e\nRECORDS='{}'\n{script}", t.records().display()),
        )
        .unwrap();
        let out = t.tf(&[
            "run",
            "--no-merge",
            "--agent",
            &format!("sh {}", agent.display()),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sparse: {sparse}: {}",
            stderr(&out)
        );
        let wt = t.worktree_dir().join("001");
        assert_eq!(wt.join("b").exists(), sparse == "off");
        let oracle = std::fs::read_to_string(t.records().join("oracle-001/tree")).unwrap();
        assert_eq!(
            t.git_at(&wt, &["rev-parse", "HEAD^{tree}"]),
            oracle.trim(),
            "sparse: {sparse}: treefarm committed the tree git would"
        );
        assert_eq!(
            t.git_at(&wt, &["log", "-1", "--format=%s"]),
            "treefarm: commit changes left uncommitted by the agent for 001"
        );
        assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), "");
    }
}

/// Pruning deletes a branch without libgit2's `git_branch_delete`, which
/// opens every worktree per deletion: still refused while a worktree has the
/// branch checked out, and its `branch.<name>.*` config goes with it.
#[test]
fn delete_branch_refuses_a_checked_out_branch_and_drops_its_config_like_git() {
    let t = collect_repo();
    let repo = Repo::discover(&t.root).unwrap();
    let wt = plant(&t, "001", false);
    t.git(&["config", "branch.treefarm/001.description", "work"]);
    t.git(&["config", "branch.other.description", "kept"]);
    let refused = repo.delete_branch("treefarm/001").unwrap_err();
    assert!(
        treefarm::error::chain(&refused).contains("current HEAD of a worktree"),
        "{}",
        treefarm::error::chain(&refused)
    );
    assert!(t
        .git(&["branch", "--list", "treefarm/001"])
        .contains("treefarm/001"));
    t.git(&["worktree", "remove", "--force", wt.to_str().unwrap()]);
    repo.delete_branch("treefarm/001").unwrap();
    assert_eq!(t.git(&["branch", "--list", "treefarm/001"]), "");
    assert_eq!(
        t.git(&["config", "--get-regexp", "^branch\\."]),
        "branch.other.description kept"
    );
    // Gone already: nothing to do, no error.
    repo.delete_branch("treefarm/001").unwrap();
    // The main worktree's branch is refused too.
    assert!(repo.delete_branch("main").is_err());
}
