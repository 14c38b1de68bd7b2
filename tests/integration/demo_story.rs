//! `treefarm demo` tells the same story every time, on the defaults users
//! get (isolation on where the kernel has Landlock, the merge queue, the
//! one-second start interval): 010 and 020 go through the merge queue in
//! one batch, 030 and 040 in the next, 050 — which strays into 030's
//! `docs/guide.md` — conflicts with 030's guide on `roadmap`, is handed back
//! to its agent, which resolves it, and merges. With `--keep-conflict` the
//! conflict is kept intact instead. The demo's agents wait for journalled
//! events, never for time; git is the oracle of what landed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::stderr;
use tempfile::TempDir;

/// Runs `treefarm demo --keep <extra>` with its temp folder inside `tmp`,
/// with the defaults: unlike the shared test environment, isolation and
/// the start interval are left to the demo's configuration. Returns the
/// kept repository.
pub(crate) fn demo(tmp: &TempDir, extra: &[&str]) -> (PathBuf, Output) {
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir home");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treefarm"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", tmp.path())
        .current_dir(tmp.path())
        .args(["demo", "--keep"])
        .args(extra);
    common::isolated_env(&mut cmd, &home);
    cmd.env_remove("TREEFARM_ISOLATION")
        .env_remove("TREEFARM_AGENT_START_INTERVAL");
    let out = cmd.output().expect("run treefarm demo");
    let err = stderr(&out);
    assert!(out.status.success(), "demo failed:\n{err}");
    let repo = err
        .lines()
        .find_map(|l| l.strip_prefix("kept the demo repository: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("the demo names the kept repository:\n{err}"));
    (repo, out)
}

/// The lines between the story's heading and its end.
fn story(err: &str) -> Vec<&str> {
    err.lines()
        .skip_while(|l| *l != "== the story, from the run's journal:")
        .skip(1)
        .take_while(|l| *l != "== end of the story")
        .map(str::trim)
        .collect()
}

fn git(repo: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(repo);
    common::isolated_env(&mut cmd, &repo.join("..").join("git-home"));
    let out = cmd.output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// The speed-up the demo prints, e.g. `parallel speed-up 1.54x`.
fn speedup(err: &str) -> f64 {
    let line = err
        .lines()
        .find(|l| l.contains("parallel speed-up"))
        .unwrap_or_else(|| panic!("the demo prints its speed-up:\n{err}"));
    line.rsplit(' ')
        .next()
        .and_then(|s| s.strip_suffix('x'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a speed-up figure in {line:?}"))
}

/// Whether the demo's agents ran confined: an isolated agent's git works in
/// a private git directory in its instance folder, made only under
/// isolation (and the run says when isolation is off).
fn isolated(repo: &Path, err: &str) -> bool {
    let runs = repo.join(".git/treefarm/runs");
    let run = std::fs::read_dir(&runs)
        .expect("runs")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    let private = ["010", "020", "030", "040", "050"]
        .iter()
        .all(|id| run.join("instances").join(id).join("git").is_dir());
    private && !err.contains("isolation is off")
}

/// The story up to 050's conflict, with or without `--keep-conflict`.
const UNTIL_THE_CONFLICT: [&str; 8] = [
    "merge queue batch 1: 010, 020",
    "010 merged",
    "020 merged",
    "merge queue batch 2: 030, 040",
    "030 merged",
    "040 merged",
    "050 changed files it did not declare: docs/guide.md",
    "050 conflicted in docs/guide.md",
];

#[test]
fn demo_hands_050s_conflict_back_to_its_agent_and_every_spec_merges() {
    let tmp = TempDir::new().expect("tmp");
    let (repo, out) = demo(&tmp, &[]);
    let err = stderr(&out);
    assert_eq!(story(&err)[..8], UNTIL_THE_CONFLICT, "{err}");
    assert_eq!(
        story(&err)[8..],
        [
            "050 handed back to its agent (resolve attempt 1)",
            "050 resolved by its agent",
            "050 changed files it did not declare: docs/guide.md",
            "merge queue batch 4: 050",
            "050 merged",
        ],
        "{err}"
    );
    assert!(
        err.contains("demo: every spec merged; 050's conflict was handed back to its agent"),
        "{err}"
    );
    assert_eq!(
        isolated(&repo, &err),
        common::landlock_available(),
        "isolation as users get it"
    );
    assert!(speedup(&err) > 1.0, "parallel agents pay off:\n{err}");
    // The split step: round 1's mistakes named, round 2 valid and
    // independent, nothing written into the demo's specs.
    assert!(
        err.contains("split: round 1: 2 drafts, 1 error,")
            && err.contains("split: round 2: 2 drafts, 0 errors, 0 overlaps")
            && err.contains("split: independent: 2 specs, 1 wave after 2 rounds"),
        "{err}"
    );
    assert!(
        !git(&repo, &["ls-tree", "-r", "--name-only", "roadmap", "specs"]).contains("SPEC-051"),
        "the split wrote nothing"
    );

    // Git: every spec merged into `roadmap`, in the queue's order, 050 last
    // with its agent's resolution of the guide (both sides, no markers).
    let subjects = git(&repo, &["log", "--first-parent", "--format=%s", "roadmap"]);
    let merged: Vec<&str> = subjects
        .lines()
        .filter_map(|s| s.strip_prefix("Merge treefarm/"))
        .map(|s| &s[..3])
        .collect();
    assert_eq!(merged, ["050", "040", "030", "020", "010"], "{subjects}");
    let guide = git(&repo, &["show", "roadmap:docs/guide.md"]);
    assert!(guide.contains("## Retries"), "030's guide: {guide}");
    assert!(
        guide.contains("See CHANGELOG.md for what changed."),
        "050's line: {guide}"
    );
    for marker in ["<<<<<<<", "=======", ">>>>>>>"] {
        assert!(!guide.contains(marker), "no conflict marker: {guide}");
    }
    // 050's resolution is a merge of `roadmap` (with 030's guide) into its
    // branch, concluded by its agent.
    let parents = git(&repo, &["log", "-1", "--format=%P", "roadmap^2"]);
    assert_eq!(parents.split(' ').count(), 2, "050's branch tip is a merge");
    // All merged, all pruned: no branch or worktree left.
    assert_eq!(git(&repo, &["branch", "--list", "treefarm/*"]), "");
    let worktrees = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "{worktrees}"
    );
}

#[test]
fn demo_keep_conflict_keeps_050_intact_and_merges_the_rest() {
    let tmp = TempDir::new().expect("tmp");
    let (repo, out) = demo(&tmp, &["--keep-conflict"]);
    let err = stderr(&out);
    assert_eq!(story(&err)[..8], UNTIL_THE_CONFLICT, "{err}");
    assert_eq!(story(&err)[8..], ["050 kept: merge conflict"], "{err}");
    let subjects = git(&repo, &["log", "--first-parent", "--format=%s", "roadmap"]);
    assert!(!subjects.contains("treefarm/050"), "{subjects}");
    assert_eq!(
        git(&repo, &["show", "roadmap:docs/guide.md"]),
        "# Guide\n\nHow to use the demo service.\n## Retries"
    );
    // Kept intact: the branch holds 050's work, its worktree is clean.
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "treefarm/050"]),
        "changelog: retries"
    );
    let worktree = repo.with_file_name("demo-repo.treefarm").join("050");
    assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
}
