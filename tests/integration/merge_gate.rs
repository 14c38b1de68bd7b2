//! End-to-end: the merge gate runs on the exact merged commit in a scratch
//! worktree; a failing gate refuses the merge and keeps the branch; a target
//! moved meanwhile (here by the gate itself) is merged again, never clobbered.

use crate::common;

use common::*;

/// These tests are about the gate of one branch at a time in a scratch
/// worktree: `merge.batch: 1` (the merge queue's gates are covered in
/// `merge_queue_e2e`).
const ONE_BY_ONE: &str = "merge:\n  batch: 1\n";

fn one_spec_farm(extra_config: &str) -> TestRepo {
    let a = spec_md(
        "Add alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt alpha\ncommit \"alpha\"",
    );
    TestRepo::farm(
        &[("README.md", "readme\n")],
        &[("SPEC-010-a.md", a)],
        extra_config,
    )
}

/// Nothing left of the gate's scratch worktrees: no admin entry, no branch,
/// no folder.
fn assert_no_scratch(repo: &TestRepo) {
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(
        !list.contains("gate"),
        "scratch worktree left behind:\n{list}"
    );
    assert!(!repo
        .root
        .join(".git/worktrees")
        .read_dir()
        .map(|d| d
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("gate")))
        .unwrap_or(false));
    assert!(
        repo.treefarm_branches().iter().all(|b| !b.contains("gate")),
        "{:?}",
        repo.treefarm_branches()
    );
    // Wherever the scratch worktrees go under the worktree folder, none is
    // left (an empty holder folder is harmless).
    let mut leftovers = Vec::new();
    for entry in repo
        .worktree_dir()
        .read_dir()
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("gate") {
            let inner: Vec<_> = entry
                .path()
                .read_dir()
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if !entry.path().is_dir() || name.starts_with("gate-") || !inner.is_empty() {
                leftovers.push((entry.path(), inner));
            }
        }
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn failing_gate_refuses_the_merge_keeps_the_branch_and_saves_the_gate_log() {
    let repo = one_spec_farm(ONE_BY_ONE);
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.tf(&[
        "run",
        "--json",
        "--gate",
        "echo gate-says-no; cat a.txt; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "refused"), ["010"]);
    assert_eq!(summary_ids(&summary, "merged"), Vec::<String>::new());

    assert_eq!(
        repo.git(&["rev-parse", "roadmap"]),
        roadmap_before,
        "refused merge moved the target"
    );
    let inst = repo.instance("010");
    assert_eq!(inst["state"], "refused");
    assert!(inst["reason"].as_str().unwrap().contains("gate"), "{inst}");
    assert_eq!(repo.treefarm_branches(), ["treefarm/010"]);
    assert_eq!(
        repo.git(&["rev-parse", "treefarm/010"]),
        inst["tip"].as_str().unwrap()
    );
    let wt = repo.worktree_dir().join("010");
    assert_eq!(
        repo.worktree_paths(),
        [
            repo.root.canonicalize().unwrap(),
            wt.canonicalize().unwrap()
        ]
    );

    // The gate log is in the run directory, named by the refused event, and
    // shows the gate ran on the merged tree.
    let refused = json_events(&out)
        .into_iter()
        .find(|e| e["event"] == "refused")
        .unwrap();
    let log_path = std::path::PathBuf::from(
        refused["log"]
            .as_str()
            .expect("refused event names the gate log"),
    );
    let run_dir = repo.runs_dir().join(summary["run_id"].as_str().unwrap());
    assert!(
        log_path.starts_with(&run_dir),
        "{} not in {}",
        log_path.display(),
        run_dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(&log_path).unwrap(),
        "gate-says-no\nalpha\n"
    );
    assert_no_scratch(&repo);
}

#[test]
fn passing_gate_sees_the_exact_merged_commit_and_the_merge_lands() {
    let b = spec_md(
        "Add beta",
        &["b.txt"],
        &[],
        Some(20),
        "write b.txt beta\ncommit \"beta\"",
    );
    let a = spec_md(
        "Add alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt alpha\ncommit \"alpha\"",
    );
    let repo = TestRepo::farm(
        &[("README.md", "readme\n")],
        &[("SPEC-010-a.md", a), ("SPEC-020-b.md", b)],
        ONE_BY_ONE,
    );
    let seen = repo.tmp.path().join("gate-seen");
    // The scratch worktree is checked out at the commit it is told about,
    // with the spec's file in it and a clean status.
    let gate = format!(
        "test \"$(git rev-parse HEAD)\" = \"$TREEFARM_GATE_COMMIT\" && test -z \"$(git status --porcelain)\" && \
         test -f \"$(echo $TREEFARM_SPEC_ID | sed 's/010/a/;s/020/b/').txt\" && \
         echo \"$TREEFARM_SPEC_ID $TREEFARM_GATE_COMMIT $(pwd)\" >> {}",
        seen.display()
    );
    let out = repo.tf(&["run", "--json", "--gate", &gate]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let seen = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 2, "{seen}");
    let merges: Vec<String> = repo
        .git(&["rev-list", "--first-parent", "--max-count=2", "roadmap"])
        .lines()
        .map(str::to_string)
        .collect();
    // In merge order, the gate saw exactly the commit that became the tip.
    for (line, merge) in lines.iter().zip(merges.iter().rev()) {
        let mut parts = line.split(' ');
        let id = parts.next().unwrap();
        assert_eq!(parts.next().unwrap(), merge);
        assert_eq!(repo.instance(id)["merged_commit"], merge.as_str());
        let dir = parts.next().unwrap();
        assert!(
            !std::path::Path::new(dir).exists(),
            "scratch worktree {dir} not removed"
        );
        assert!(
            !std::path::Path::new(dir).starts_with(&repo.root),
            "gate ran inside the user's tree: {dir}"
        );
    }
    assert_no_scratch(&repo);
    assert!(repo.treefarm_branches().is_empty());
}

#[test]
fn target_moved_by_someone_else_during_the_gate_is_merged_again_not_clobbered() {
    let repo = one_spec_farm(ONE_BY_ONE);
    let marker = repo.tmp.path().join("moved-once");
    let seen = repo.tmp.path().join("gate-seen");
    // First gate run: someone else commits to roadmap (a new file) behind
    // treefarm's back, then the gate passes.
    let gate = format!(
        "echo \"$TREEFARM_GATE_COMMIT\" >> {seen}; \
         if [ ! -e {marker} ]; then : > {marker}; \
           t=$(git rev-parse refs/heads/roadmap) && \
           blob=$(echo foreign | git hash-object -w --stdin) && \
           tree=$( (git ls-tree \"$t\"; printf '100644 blob %s\\tforeign.txt\\n' \"$blob\") | git mktree) && \
           c=$(git commit-tree -p \"$t\" -m 'foreign commit' \"$tree\") && \
           git update-ref refs/heads/roadmap \"$c\" \"$t\" || exit 9; \
         fi",
        seen = seen.display(),
        marker = marker.display()
    );
    let out = repo.tf(&["run", "--json", "--gate", &gate]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(marker.exists(), "the gate never moved the target");

    let line = repo.first_parent_subjects("roadmap");
    assert_eq!(line.len(), 3, "{line:?}");
    assert!(line[0].contains("SPEC-010"), "{line:?}");
    assert_eq!(
        line[1], "foreign commit",
        "the foreign commit was clobbered: {line:?}"
    );
    assert_eq!(repo.show("roadmap", "foreign.txt"), "foreign");
    assert_eq!(repo.show("roadmap", "a.txt"), "alpha");
    // The gate ran again on the recomputed merge, which is what landed.
    let seen = std::fs::read_to_string(&seen).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[1], repo.git(&["rev-parse", "roadmap"]));
    assert_eq!(repo.instance("010")["merged_commit"], seen[1]);
    assert_no_scratch(&repo);
}
