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
//! - a shallow clone;
//! - `--target` naming another branch than the one checked out.
//!
//! Every layout is proven in every combination users can have (issue 21):
//! isolation as users get it (`auto`: Landlock where the kernel has it) and
//! `off`, crossed with the merge queue batching (`merge.batch: 8`, the
//! default) and merging one by one (`merge.batch: 1`).

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

/// One combination of the defaults a layout is proven in.
#[derive(Debug, Clone, Copy)]
struct Combo {
    /// `true`: the default isolation (`auto`); `false`: `--isolation off`.
    isolated: bool,
    /// `merge.batch`.
    batch: u32,
}

const COMBOS: [Combo; 4] = [
    Combo {
        isolated: true,
        batch: 8,
    },
    Combo {
        isolated: true,
        batch: 1,
    },
    Combo {
        isolated: false,
        batch: 8,
    },
    Combo {
        isolated: false,
        batch: 1,
    },
];

/// Runs `prove` once per combination, saying which one on failure.
fn each_combo(mut prove: impl FnMut(Combo)) {
    for combo in COMBOS {
        eprintln!("== layout in combination {combo:?}");
        prove(combo);
    }
}

fn origin(combo: Combo) -> TestRepo {
    TestRepo::farm(
        &[("src/one.txt", "one\n"), ("src/two.txt", "two\n")],
        &specs(),
        &format!("merge:\n  batch: {}\n", combo.batch),
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

/// The repository's common git directory, as git names it from `dir`.
fn common_dir(repo: &TestRepo, dir: &Path) -> PathBuf {
    let path = PathBuf::from(repo.git_at(dir, &["rev-parse", "--git-common-dir"]));
    if path.is_absolute() {
        path
    } else {
        dir.join(path)
    }
}

/// Whether the agents of the latest run (seen from `dir`) worked through
/// private git directories, which treefarm makes only for confined agents.
fn confined(repo: &TestRepo, dir: &Path) -> bool {
    let runs = common_dir(repo, dir).join("treefarm/runs");
    let mut ids: Vec<_> = std::fs::read_dir(&runs)
        .expect("runs folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("state.json").is_file())
        .collect();
    ids.sort();
    let last = ids.last().expect("a run");
    last.join("instances/001/git/HEAD").is_file()
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
fn full_cycle(repo: &TestRepo, dir: &Path, worktree_dir: &Path, combo: Combo) {
    full_cycle_into(repo, dir, worktree_dir, combo, "roadmap", &[]);
}

/// [`full_cycle`] into `target`, with `run_args` added to `run`.
fn full_cycle_into(
    repo: &TestRepo,
    dir: &Path,
    worktree_dir: &Path,
    combo: Combo,
    target: &str,
    run_args: &[&str],
) {
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

    let mut args = vec!["run", "--json"];
    args.extend(run_args);
    if !combo.isolated {
        args.extend(["--isolation", "off"]);
    }
    let out = tf_in(repo, dir, &args);
    assert_exit(&out, 0);
    let summary = common::json_summary(&out);
    let mut merged = summary_ids(&summary, "merged");
    merged.sort();
    assert_eq!(merged, ["001", "002"], "{}", stderr(&out));
    // The run was confined exactly when it should be: a confined agent's
    // git is the private directory of its instance.
    assert_eq!(
        confined(repo, dir),
        combo.isolated && common::landlock_available(),
        "isolation in force"
    );

    // git as the oracle.
    for (path, first) in [("src/one.txt", "one"), ("src/two.txt", "two")] {
        let text = repo.git_at(dir, &["show", &format!("{target}:{path}")]);
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
    each_combo(|combo| {
        let repo = origin(combo);
        full_cycle(&repo, &repo.root, &repo.worktree_dir(), combo);
    });
}

#[test]
fn linked_worktree_of_a_normal_repository() {
    each_combo(|combo| {
        let repo = origin(combo);
        let linked = repo.tmp.path().join("linked");
        repo.git(&[
            "worktree",
            "add",
            "-q",
            linked.to_str().expect("utf-8"),
            "-b",
            "side",
        ]);
        full_cycle(&repo, &linked, &repo.worktree_dir(), combo);
        // The main worktree is untouched as well.
        assert_eq!(repo.git(&["status", "--porcelain"]), "");
    });
}

#[test]
fn linked_worktree_of_a_bare_repository() {
    each_combo(|combo| {
        let repo = origin(combo);
        let project = repo.tmp.path().join("project");
        let bare = project.join("repo.git");
        clone(&repo, &bare, &["--bare"]);
        let main = project.join("main");
        repo.git_at(&bare, &["worktree", "add", "-q", "../main", "main"]);
        // `worktree_dir` defaults to a sibling of the worktrees: project/repo.treefarm.
        full_cycle(&repo, &main, &project.join("repo.treefarm"), combo);
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
    });
}

#[test]
fn path_with_spaces_and_non_ascii_characters() {
    each_combo(|combo| {
        let repo = origin(combo);
        let dir = repo.tmp.path().join("dir with spaces ü").join("répo ñ");
        clone(&repo, &dir, &[]);
        full_cycle(
            &repo,
            &dir,
            &repo.tmp.path().join("dir with spaces ü/répo ñ.treefarm"),
            combo,
        );
    });
}

/// A depth-1 clone of `repo` after a second commit (so that depth 1 really
/// cuts history) at `<tmp>/shallow`.
fn shallow_clone_of(repo: &TestRepo) -> PathBuf {
    repo.write("README", "more\n");
    repo.commit_all("second");
    let dir = repo.tmp.path().join("shallow");
    clone(repo, &dir, &["--depth", "1"]);
    assert_eq!(
        repo.git_at(&dir, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    dir
}

#[test]
fn shallow_clone() {
    each_combo(|combo| {
        let repo = origin(combo);
        let dir = shallow_clone_of(&repo);
        full_cycle(
            &repo,
            &dir,
            &repo.tmp.path().join("shallow.treefarm"),
            combo,
        );
    });
}

/// Issue 21: under isolation, importing the agent's commits from its private
/// git directory walked past the shallow boundary ("failed to walk
/// `treefarm/001`: object not found"), so every spec of a depth-1 CI
/// checkout failed. The agent's own git also reads its history there.
#[test]
fn shallow_clone_under_isolation_imports_the_agents_commits() {
    let repo = TestRepo::farm_with_wrapper(
        &[("src/one.txt", "one\n"), ("src/two.txt", "two\n")],
        &specs(),
        // The agent's own `git log` must see its history, boundary included.
        "git log --oneline >/dev/null || exit 7",
        "",
    );
    let dir = shallow_clone_of(&repo);
    let out = tf_in(&repo, &dir, &["run", "--json"]);
    assert_exit(&out, 0);
    let mut merged = summary_ids(&common::json_summary(&out), "merged");
    merged.sort();
    assert_eq!(merged, ["001", "002"], "{}", stderr(&out));
    assert_eq!(confined(&repo, &dir), common::landlock_available());
    // Each merge's second parent is the agent's own commit on the boundary.
    let log = repo.git_at(&dir, &["log", "--format=%P %s", "--merges", "roadmap"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    repo.git_at(&dir, &["fsck", "--no-progress"]);
}

#[test]
fn target_on_another_branch_than_the_checkout() {
    each_combo(|combo| {
        let repo = origin(combo);
        repo.git(&["branch", "release"]);
        let before_main = repo.git(&["rev-parse", "main"]);
        full_cycle_into(
            &repo,
            &repo.root,
            &repo.worktree_dir(),
            combo,
            "release",
            &["--target", "release"],
        );
        assert_eq!(repo.git(&["rev-parse", "main"]), before_main);
        assert!(
            repo.git(&["branch", "--list", "roadmap"]).is_empty(),
            "only the named target moves"
        );
    });
}

/// A repository with a submodule at `vendor/sub`; the agent records what it
/// sees there before doing the scripted work.
fn with_submodule(extra_config: &str, combo: Combo) -> TestRepo {
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
    let record = repo.records();
    repo.write(
        "treefarm.yaml",
        &format!(
            // The record folder is outside the worktree: named in
            // `isolation.allow_write`, as a user would.
            "agent:\n  command: ls -A vendor/sub > {}/$TREEFARM_SPEC_ID.txt; {}\n  timeout: 2m\n\
             {}merge:\n  batch: {}\n{extra_config}",
            record.display(),
            demo_agent_command(),
            common::allow_write_yaml(&[&record]),
            combo.batch,
        ),
    );
    repo.commit_all("with a submodule");
    repo
}

fn seen(repo: &TestRepo, id: &str) -> String {
    std::fs::read_to_string(repo.records().join(format!("{id}.txt"))).expect("agent ran")
}

#[test]
fn submodules_are_not_initialised_by_default() {
    each_combo(|combo| {
        let repo = with_submodule("", combo);
        full_cycle(&repo, &repo.root, &repo.worktree_dir(), combo);
        assert_eq!(seen(&repo, "001"), "", "vendor/sub is an empty folder");
        // The gitlink is unchanged on roadmap.
        assert_eq!(
            repo.git(&["rev-parse", "roadmap:vendor/sub"]),
            repo.git(&["rev-parse", "main:vendor/sub"])
        );
    });
}

#[test]
fn submodules_are_initialised_with_setup_submodules() {
    each_combo(|combo| {
        let repo = with_submodule("setup:\n  submodules: true\n", combo);
        full_cycle(&repo, &repo.root, &repo.worktree_dir(), combo);
        assert!(
            seen(&repo, "001").contains("lib.txt"),
            "{}",
            seen(&repo, "001")
        );
        assert!(seen(&repo, "002").contains("lib.txt"));
    });
}
