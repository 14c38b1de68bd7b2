//! Repository layouts people already have (issue 9, point 8): each one goes
//! through `check`, `plan` and a full `run` with the scripted agent, run from
//! inside the layout, and git is the oracle for the result.
//!
//! - the main worktree;
//! - a linked worktree of a normal repository;
//! - a linked worktree of a bare repository (`worktree_dir` defaults to a
//!   sibling of the bare repository's worktrees; no checkout is "main");
//! - a path with spaces and non-ASCII characters;
//! - a repository with a submodule (not initialised in new worktrees unless
//!   `setup.submodules: true`);
//! - a shallow clone.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_exit, demo_agent_command, stderr, stdout_json, summary_ids, TestRepo};

fn specs() -> Vec<(&'static str, String)> {
    vec![
        (
            "SPEC-001-one.md",
            "# One\n\n**File**: `src/one.txt`\n".to_string(),
        ),
        (
            "SPEC-002-two.md",
            "# SPEC-002: Two\n\n### Files to Update\n- `src/two.txt` (the second file)\n"
                .to_string(),
        ),
    ]
}

fn origin() -> TestRepo {
    TestRepo::farm(
        &[("src/one.txt", "one\n"), ("src/two.txt", "two\n")],
        &specs(),
        "",
    )
}

fn tf_in(repo: &TestRepo, dir: &Path, args: &[&str]) -> Output {
    repo.treefarm()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn treefarm")
}

/// Clones `repo` into `to` with `extra` clone flags and sets an identity.
fn clone(repo: &TestRepo, to: &Path, extra: &[&str]) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    let src = format!("file://{}", repo.root.display());
    let to_s = to.to_str().expect("utf-8 path");
    let mut args = vec!["clone", "-q"];
    args.extend(extra);
    args.extend([src.as_str(), to_s]);
    repo.git_at(repo.tmp.path(), &args);
    repo.git_at(to, &["config", "user.name", "Test User"]);
    repo.git_at(to, &["config", "user.email", "user@example.com"]);
}

/// What the user has in `dir`: HEAD, branch, index, status.
fn snapshot(repo: &TestRepo, dir: &Path) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        repo.git_at(dir, &["rev-parse", "HEAD"]),
        repo.git_at(dir, &["symbolic-ref", "-q", "HEAD"]),
        repo.git_at(dir, &["ls-files", "-s"]),
        repo.git_at(dir, &["status", "--porcelain=v1", "--untracked-files=all"]),
    )
}

fn canonical(p: &Path) -> PathBuf {
    // The folder may not exist yet: canonicalise its parent.
    let parent = p
        .parent()
        .expect("parent")
        .canonicalize()
        .expect("canonical parent");
    parent.join(p.file_name().expect("name"))
}

/// `check`, `plan` and `run` from `dir`; worktrees must go to
/// `worktree_dir`; git proves both specs merged into `roadmap`, everything
/// pruned, and the user's checkout untouched.
fn full_cycle(repo: &TestRepo, dir: &Path, worktree_dir: &Path) {
    let before = snapshot(repo, dir);

    let out = tf_in(repo, dir, &["check", "--json"]);
    assert_exit(&out, 0);
    let report = stdout_json(&out);
    assert_eq!(report["independent"], true, "{report}");
    assert_eq!(report["specs"][1]["title"], "Two");
    assert_eq!(report["specs"][1]["files"][0], "src/two.txt");

    let out = tf_in(repo, dir, &["plan", "--json"]);
    assert_exit(&out, 0);
    let plan = stdout_json(&out);
    let want = canonical(worktree_dir);
    for s in plan["specs"].as_array().expect("specs") {
        let wt = PathBuf::from(s["worktree"].as_str().expect("worktree"));
        assert_eq!(wt.parent(), Some(want.as_path()), "{plan}");
    }

    let out = tf_in(repo, dir, &["run", "--json"]);
    assert_exit(&out, 0);
    let summary = common::json_summary(&out);
    let mut merged = summary_ids(&summary, "merged");
    merged.sort();
    assert_eq!(merged, ["001", "002"], "{}", stderr(&out));

    // git as the oracle.
    for (path, first) in [("src/one.txt", "one"), ("src/two.txt", "two")] {
        let text = repo.git_at(dir, &["show", &format!("roadmap:{path}")]);
        assert!(text.starts_with(first), "{path}: {text}");
        assert!(
            text.lines().count() > 1,
            "the agent's line reached roadmap: {text}"
        );
    }
    let worktrees = repo.git_at(dir, &["worktree", "list", "--porcelain"]);
    assert!(
        !worktrees.contains(want.to_str().expect("utf-8")),
        "merged worktrees are pruned:\n{worktrees}"
    );
    assert_eq!(repo.git_at(dir, &["branch", "--list", "treefarm/*"]), "");
    repo.git_at(dir, &["fsck", "--no-progress"]);
    assert_eq!(
        snapshot(repo, dir),
        before,
        "the user's checkout was touched"
    );
}

#[test]
fn main_worktree() {
    let repo = origin();
    full_cycle(&repo, &repo.root, &repo.worktree_dir());
}

#[test]
fn linked_worktree_of_a_normal_repository() {
    let repo = origin();
    let linked = repo.tmp.path().join("linked");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        linked.to_str().expect("utf-8"),
        "-b",
        "side",
    ]);
    full_cycle(&repo, &linked, &repo.worktree_dir());
    // The main worktree is untouched as well.
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn linked_worktree_of_a_bare_repository() {
    let repo = origin();
    let project = repo.tmp.path().join("project");
    let bare = project.join("repo.git");
    clone(&repo, &bare, &["--bare"]);
    let main = project.join("main");
    repo.git_at(&bare, &["worktree", "add", "-q", "../main", "main"]);
    // `worktree_dir` defaults to a sibling of the worktrees: project/repo.treefarm.
    full_cycle(&repo, &main, &project.join("repo.treefarm"));
    // A second checkout of the same bare repository sees the result.
    repo.git_at(&bare, &["worktree", "add", "-q", "../other", "roadmap"]);
    let text = std::fs::read_to_string(project.join("other/src/one.txt")).expect("read");
    assert!(text.lines().count() > 1, "{text}");

    // Run in the bare repository itself: which layout, and what to do.
    let out = tf_in(&repo, &bare, &["check"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("bare repository") && err.contains("hint:") && err.contains("worktree"),
        "{err}"
    );
}

#[test]
fn path_with_spaces_and_non_ascii_characters() {
    let repo = origin();
    let dir = repo.tmp.path().join("dir with spaces ü").join("répo ñ");
    clone(&repo, &dir, &[]);
    full_cycle(
        &repo,
        &dir,
        &repo.tmp.path().join("dir with spaces ü/répo ñ.treefarm"),
    );
}

#[test]
fn shallow_clone() {
    let repo = origin();
    // Some history, so that depth 1 really cuts it.
    repo.write("README", "more\n");
    repo.commit_all("second");
    let dir = repo.tmp.path().join("shallow");
    clone(&repo, &dir, &["--depth", "1"]);
    assert_eq!(
        repo.git_at(&dir, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    full_cycle(&repo, &dir, &repo.tmp.path().join("shallow.treefarm"));
}

/// A repository with a submodule at `vendor/sub`; the agent records what it
/// sees there before doing the scripted work.
fn with_submodule(extra_config: &str) -> TestRepo {
    let repo = TestRepo::with_files(&[("src/one.txt", "one\n"), ("src/two.txt", "two\n")]);
    let sub = repo.tmp.path().join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir sub");
    repo.git_at(&sub, &["init", "-q", "-b", "main"]);
    std::fs::write(sub.join("lib.txt"), "lib\n").expect("write");
    repo.git_at(&sub, &["add", "-A"]);
    repo.git_at(
        &sub,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "lib",
        ],
    );
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub.to_str().expect("utf-8"),
        "vendor/sub",
    ]);
    for (name, text) in specs() {
        repo.write(&format!("specs/{name}"), &text);
    }
    let record = repo.tmp.path().join("seen");
    std::fs::create_dir_all(&record).expect("mkdir");
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: ls -A vendor/sub > {}/$TREEFARM_SPEC_ID.txt; {}\n  timeout: 2m\n{extra_config}",
            record.display(),
            demo_agent_command()
        ),
    );
    repo.commit_all("with a submodule");
    repo
}

fn seen(repo: &TestRepo, id: &str) -> String {
    std::fs::read_to_string(repo.tmp.path().join("seen").join(format!("{id}.txt")))
        .expect("agent ran")
}

#[test]
fn submodules_are_not_initialised_by_default() {
    let repo = with_submodule("");
    full_cycle(&repo, &repo.root, &repo.worktree_dir());
    assert_eq!(seen(&repo, "001"), "", "vendor/sub is an empty folder");
    // The gitlink is unchanged on roadmap.
    assert_eq!(
        repo.git(&["rev-parse", "roadmap:vendor/sub"]),
        repo.git(&["rev-parse", "main:vendor/sub"])
    );
}

#[test]
fn submodules_are_initialised_with_setup_submodules() {
    let repo = with_submodule("setup:\n  submodules: true\n");
    full_cycle(&repo, &repo.root, &repo.worktree_dir());
    assert!(
        seen(&repo, "001").contains("lib.txt"),
        "{}",
        seen(&repo, "001")
    );
    assert!(seen(&repo, "002").contains("lib.txt"));
}
