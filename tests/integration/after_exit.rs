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
    debug_run(t, args).output().expect("spawn treefarm")
}

/// The command of [`run_debug`], for more environment.
fn debug_run(t: &TestRepo, args: &[&str]) -> std::process::Command {
    let mut cmd = t.treefarm();
    cmd.env("TREEFARM_LOG", "treefarm=debug")
        .arg("run")
        .args(args);
    cmd
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

/// Two specs on the defaults (isolation, queue), `a/**` and `b/**`, sparse,
/// whose agents each change a file of their folder and both append to the
/// root's `tool.sh` (undeclared: `scope: warn`), so that whichever merges
/// second conflicts and is kept.
fn two_spec_farm() -> (TestRepo, String) {
    let t = sparse_farm("true", "");
    t.write(
        "specs/SPEC-002-two.md",
        "---\ntitle: two\nfiles:\n  - b/**\n---\nChange b.\n",
    );
    t.commit_all("second spec");
    let agent = two_agents(&t, "");
    (t, agent)
}

/// The agents of [`two_spec_farm`], `first` run before anything else.
fn two_agents(t: &TestRepo, first: &str) -> String {
    // Each waits for the other to start (the stagger would let the first
    // merge before the second is planted, from its merge).
    let r = t.records().display().to_string();
    agent(
        t,
        &format!(
            "set -e\n{first}touch {r}/started-$TREEFARM_SPEC_ID\ni=0\nwhile [ ! -e {r}/started-001 ] || [ ! -e {r}/started-002 ]; do sleep 0.1; i=$((i+1)); [ $i -lt 300 ]; done\nd=a; [ \"$TREEFARM_SPEC_ID\" = 002 ] && d=b\necho \"more $TREEFARM_SPEC_ID\" >> $d/f1.txt\necho \"$TREEFARM_SPEC_ID\" >> tool.sh\n"
        ),
    )
}

/// Which of [`two_spec_farm`]'s specs ended conflicted, the other merged
/// and pruned (whichever merged first).
fn the_conflicted(t: &TestRepo, err: &str) -> &'static str {
    let state = |id: &str| t.instance(id)["state"].as_str().unwrap().to_string();
    match (state("001").as_str(), state("002").as_str()) {
        ("pruned", "conflicted") => "002",
        ("conflicted", "pruned") => "001",
        other => panic!("one merged, one conflicted: {other:?}\n{err}"),
    }
}

/// `git status --porcelain` of worktree `id` is empty and its HEAD is the
/// commit treefarm made of its agent's leftovers: the index is in line with
/// the branch, no change shows staged in reverse.
fn assert_kept_in_line(t: &TestRepo, id: &str, err: &str) {
    let wt = t.worktree_dir().join(id);
    assert!(wt.is_dir(), "{id} kept: {err}");
    assert_eq!(t.git_at(&wt, &["status", "--porcelain"]), "", "{id}: {err}");
    assert!(
        t.git_at(&wt, &["log", "-1", "--format=%s"])
            .starts_with("treefarm: commit changes"),
        "{id}: {err}"
    );
    assert!(
        !t.root
            .join(".git/worktrees")
            .join(id)
            .join("treefarm-index-lags")
            .exists(),
        "{id}: {err}"
    );
}

/// Committed from its stamp, a sparse worktree's index lags the commit
/// (`git/index_lag.rs`) until the worktree turns out to stay: conflicted,
/// `--no-merge`, or failed, each worktree kept reads as git has it.
#[test]
fn kept_sparse_worktrees_committed_from_their_stamp_read_as_git_has_them() {
    let (t, command) = two_spec_farm();
    let out = run_debug(&t, &["--agent", &command]);
    let err = stderr(&out);
    assert!(err.contains("read from the stamp: no listing"), "{err}");
    let kept = the_conflicted(&t, &err);
    assert_kept_in_line(&t, kept, &err);

    let (t, command) = two_spec_farm();
    let out = run_debug(&t, &["--agent", &command, "--no-merge"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for id in ["001", "002"] {
        assert_eq!(t.instance(id)["state"], "succeeded", "{err}");
        assert_kept_in_line(&t, id, &err);
    }

    let t = sparse_farm("true", "");
    let failing = agent(&t, "echo more >> a/f1.txt\nexit 3\n");
    let out = run_debug(&t, &["--agent", &failing]);
    let err = stderr(&out);
    assert_eq!(t.instance("001")["state"], "failed", "{err}");
    assert!(err.contains("read from the stamp: no listing"), "{err}");
    assert_kept_in_line(&t, "001", &err);
    let tip = t.git(&["show", "treefarm/001:a/f1.txt"]);
    assert!(tip.ends_with("more"), "the leftovers on the branch: {tip}");
}

/// A coordinator killed right after committing from a stamp — before the
/// lag was marked (`stamped-commit`: the resumed collection lists the
/// worktree in full, which stages what the commit holds and commits
/// nothing more), after (`index-lags`: the resumed run brings the index in
/// line from the marker), or once the spec was journalled conflicted but
/// before its index was settled (`before-settle`: nothing in the resumed
/// run touches it again but the settling of every marked worktree) —
/// loses nothing: the work merges once, and a worktree that stays reads as
/// git has it.
#[test]
fn a_kill_while_an_index_lags_its_commit_loses_nothing() {
    for point in ["stamped-commit", "index-lags", "before-settle"] {
        let (t, command) = two_spec_farm();
        t.tf_crashing(&["run", "--agent", &command], point);
        let err = stderr(&t.tf(&["resume"]));
        let kept = the_conflicted(&t, &format!("{point}: {err}"));
        assert_kept_in_line(&t, kept, &format!("{point}: {err}"));
        let merged = if kept == "001" { "002" } else { "001" };
        let dir = if merged == "001" { "a" } else { "b" };
        assert!(
            t.show("roadmap", &format!("{dir}/f1.txt"))
                .ends_with(&format!("more {merged}")),
            "{point}: {err}"
        );
        // One commit of the leftovers each: none made twice.
        for (id, branch) in [
            (merged, "roadmap".to_string()),
            (kept, format!("treefarm/{kept}")),
        ] {
            let subjects = t.git(&["log", "--format=%s", &branch]);
            let made = subjects
                .lines()
                .filter(|s| s.starts_with("treefarm: commit changes") && s.ends_with(id))
                .count();
            assert_eq!(made, 1, "{point} {id}: {subjects}");
        }
    }
}

/// While the run goes on, a conflicted worktree's index is in line with its
/// branch as soon as the spec is conflicted — not only when the run ends: a
/// third spec's agent holds the run open until the test has looked.
#[test]
fn a_worktree_kept_conflicted_reads_as_git_has_it_while_the_run_goes_on() {
    let (t, _) = two_spec_farm();
    t.write(
        "specs/SPEC-003-three.md",
        "---\ntitle: three\nfiles:\n  - c/**\n---\nChange c.\n",
    );
    t.commit_all("third spec");
    let release = t.records().join("release");
    let command = two_agents(
        &t,
        &format!(
            "if [ \"$TREEFARM_SPEC_ID\" = 003 ]; then\n  i=0; while [ ! -e {} ]; do sleep 0.1; i=$((i+1)); [ $i -lt 600 ]; done\n  echo three >> c/f1.txt; exit 0\nfi\n",
            release.display()
        ),
    );
    let child = t
        .treefarm()
        .args(["run", "--agent", &command])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn treefarm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // As `status --json` reads the live run's journal.
    let state = |id: &str| {
        let out = t.tf(&["status", "--json"]);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        json["instances"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["id"] == id))
            .and_then(|i| i["state"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let kept = loop {
        if let Some(id) = ["001", "002"]
            .into_iter()
            .find(|id| state(id) == "conflicted")
        {
            break id;
        }
        if std::time::Instant::now() > deadline {
            std::fs::write(&release, "").unwrap();
            let out = child.wait_with_output().expect("wait for treefarm");
            panic!("no spec conflicted in 60 s: {}", stderr(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Settled off the loop, right after the state: a moment, not the run.
    let wt = t.worktree_dir().join(kept);
    let mut status = String::from("(not read)");
    for _ in 0..100 {
        status = t.git_at(&wt, &["status", "--porcelain"]);
        if status.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let running = state("003");
    std::fs::write(&release, "").unwrap();
    let out = child.wait_with_output().expect("wait for treefarm");
    let err = stderr(&out);
    assert!(
        !["merged", "pruned"].contains(&running.as_str()),
        "the run was still going on (003 {running}): {err}"
    );
    assert_eq!(status, "", "{kept} conflicted, mid-run: {err}");
    assert_kept_in_line(&t, kept, &err);
    assert_eq!(t.instance("003")["state"], "pruned", "{err}");
}

/// A lag that cannot be marked (a full disk, injected) is not left: the
/// index is written at once — a coordinator killed right after, before any
/// settle, leaves the kept worktree in line with no marker to go by.
#[test]
fn a_lag_that_cannot_be_marked_is_written_at_once() {
    let t = sparse_farm("true", "");
    let command = agent(&t, "set -e\necho more >> a/f1.txt\necho new > a/new.txt\n");
    let out = debug_run(&t, &["--no-merge", "--agent", &command])
        .env("TREEFARM_INJECT_WRITE_ERROR", "index-lag")
        .env("TREEFARM_CRASH_AT", "before-settle")
        .output()
        .expect("spawn treefarm");
    let err = stderr(&out);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "killed at before-settle: {err}"
    );
    assert!(err.contains("read from the stamp: no listing"), "{err}");
    assert!(
        err.contains("cannot mark the index lagging: written now")
            && err.contains("No space left on device"),
        "{err}"
    );
    assert_kept_in_line(&t, "001", &err);
    let out = t.tf(&["resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_kept_in_line(&t, "001", &stderr(&out));
}
