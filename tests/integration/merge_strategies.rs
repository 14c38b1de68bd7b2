//! End-to-end: each `merge.strategy` lands finished branches on `roadmap` the
//! way git users expect, without touching the main worktree, then prunes.

use crate::common;

use common::*;

/// Two independent specs, two commits each, by an agent with its own author.
fn two_spec_farm(strategy: &str) -> TestRepo {
    let alpha = spec_md(
        "Add alpha",
        &["alpha.txt"],
        &[],
        Some(10),
        "write alpha.txt one\ncommit \"alpha: first\"\nappend alpha.txt two\ncommit \"alpha: second\"",
    );
    let beta = spec_md(
        "Add beta",
        &["beta.txt"],
        &[],
        Some(20),
        "write beta.txt one\ncommit \"beta: first\"\nappend beta.txt two\ncommit \"beta: second\"",
    );
    TestRepo::farm(
        &[("README.md", "readme\n")],
        &[("SPEC-010-alpha.md", alpha), ("SPEC-020-beta.md", beta)],
        &format!(
            "  env:\n    GIT_AUTHOR_NAME: Agent Smith\n    GIT_AUTHOR_EMAIL: agent@example.com\nmerge:\n  strategy: {strategy}\n"
        ),
    )
}

fn parents(repo: &TestRepo, rev: &str) -> Vec<String> {
    let line = repo.git(&["rev-list", "--parents", "-n1", rev]);
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Runs, checks the common outcome (exit 0, both merged and pruned, main
/// worktree untouched) and returns the base commit.
fn run_ok_and_pruned(repo: &TestRepo) -> String {
    let base = repo.git(&["rev-parse", "HEAD"]);
    let before = repo.main_snapshot();
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    let mut merged = summary_ids(&summary, "merged");
    merged.sort();
    assert_eq!(merged, ["010", "020"]);
    assert_eq!(
        summary["target_commit"],
        repo.git(&["rev-parse", "roadmap"])
    );
    assert_eq!(repo.main_snapshot(), before, "the main worktree changed");
    assert!(
        repo.treefarm_branches().is_empty(),
        "{:?}",
        repo.treefarm_branches()
    );
    assert_eq!(repo.worktree_paths(), [repo.root.canonicalize().unwrap()]);
    for id in ["010", "020"] {
        assert_eq!(repo.instance(id)["state"], "pruned");
        assert!(!repo.worktree_dir().join(id).exists());
    }
    assert_eq!(repo.show("roadmap", "alpha.txt"), "one\ntwo");
    assert_eq!(repo.show("roadmap", "beta.txt"), "one\ntwo");
    base
}

#[test]
fn merge_strategy_makes_a_no_ff_merge_commit_naming_the_spec() {
    let repo = two_spec_farm("merge");
    let base = run_ok_and_pruned(&repo);

    // Two merge commits on the first-parent line, then the base.
    let line: Vec<String> = repo
        .git(&["rev-list", "--first-parent", "roadmap"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(line.len(), 3, "{line:?}");
    assert_eq!(line[2], base);
    for merge in &line[..2] {
        let ps = parents(&repo, merge);
        assert_eq!(ps.len(), 2, "not a no-ff merge commit: {merge}");
        let message = repo.git(&["log", "-1", "--format=%B", merge]);
        let id = if message.contains("Add alpha") {
            "010"
        } else {
            "020"
        };
        assert!(message.contains(&format!("SPEC-{id}")), "{message}");
        // The second parent is the branch tip the agent left.
        assert_eq!(ps[1], repo.instance(id)["tip"].as_str().unwrap());
        assert_eq!(
            repo.git(&["log", "-1", "--format=%s", &ps[1]]),
            format!("{}: second", if id == "010" { "alpha" } else { "beta" })
        );
    }
    let titles: Vec<String> = line[..2]
        .iter()
        .map(|c| repo.git(&["log", "-1", "--format=%s", c]))
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("Add alpha") && t.contains("010")),
        "{titles:?}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.contains("Add beta") && t.contains("020")),
        "{titles:?}"
    );
    // Branch commits keep their author.
    let authors = repo.git(&[
        "log",
        "--no-merges",
        "--format=%an <%ae>",
        &format!("{base}..roadmap"),
    ]);
    assert_eq!(authors.lines().count(), 4);
    assert!(
        authors
            .lines()
            .all(|a| a == "Agent Smith <agent@example.com>"),
        "{authors}"
    );
}

#[test]
fn squash_strategy_makes_one_single_parent_commit_per_spec_listing_its_commits() {
    let repo = two_spec_farm("squash");
    let base = run_ok_and_pruned(&repo);

    let line: Vec<String> = repo
        .git(&["rev-list", "roadmap"])
        .lines()
        .map(str::to_string)
        .collect();
    // Nothing but the two squash commits on top of the base: the branch
    // commits are not in roadmap's history.
    assert_eq!(line.len(), 3, "{line:?}");
    assert_eq!(line[2], base);
    for commit in &line[..2] {
        assert_eq!(parents(&repo, commit).len(), 1);
        let message = repo.git(&["log", "-1", "--format=%B", commit]);
        let (id, title, prefix) = if message.contains("Add alpha") {
            ("010", "Add alpha", "alpha")
        } else {
            ("020", "Add beta", "beta")
        };
        let subject = message.lines().next().unwrap();
        assert!(subject.contains(title) && subject.contains(id), "{message}");
        assert!(message.contains(&format!("{prefix}: first")), "{message}");
        assert!(message.contains(&format!("{prefix}: second")), "{message}");
        // Exactly this spec's file changed.
        let files = repo.git(&["diff-tree", "--no-commit-id", "--name-only", "-r", commit]);
        assert_eq!(files, format!("{prefix}.txt"));
    }
}

#[test]
fn rebase_strategy_replays_branch_commits_linearly_keeping_authors() {
    let repo = two_spec_farm("rebase");
    let base = run_ok_and_pruned(&repo);

    assert_eq!(
        repo.git(&["rev-list", "--min-parents=2", "roadmap"]),
        "",
        "rebase must not create merge commits"
    );
    let range = format!("{base}..roadmap");
    let subjects = repo.git(&["log", "--reverse", "--format=%s", &range]);
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    // Each branch's commits stay in order, whichever branch landed first.
    let pos = |s: &str| {
        subjects
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("{s} missing: {subjects:?}"))
    };
    assert!(pos("alpha: first") < pos("alpha: second"));
    assert!(pos("beta: first") < pos("beta: second"));
    let authors = repo.git(&["log", "--format=%an <%ae>", &range]);
    assert!(
        authors
            .lines()
            .all(|a| a == "Agent Smith <agent@example.com>"),
        "{authors}"
    );
    // The branch that landed second was replayed: its commits are new ones
    // on top of the first branch, with the original messages.
    let first_parent_chain = repo.git(&["rev-list", "--first-parent", &range]);
    assert_eq!(
        first_parent_chain.lines().count(),
        4,
        "history is not linear"
    );
}
