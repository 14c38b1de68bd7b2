//! End-to-end: with `merge.batch: 1` the merge gate runs on the exact merged
//! commit of each branch, on the one gate path every gate takes (the merge
//! queue's warm gate worktree, its own process group); a failing gate
//! refuses the merge and keeps the branch; a target moved meanwhile (here by
//! the gate itself) is merged again, never clobbered.

use crate::common;

use common::*;

/// These tests are about the gate of one branch at a time: `merge.batch: 1`
/// (batches of several are covered in `merge_queue_e2e`).
const ONE_BY_ONE: &str = "merge:\n  batch: 1\n";

/// The gates record what they saw in `~/gate-state`, which they may write
/// under isolation because it is named in `isolation.allow_write`, as a user
/// would name it.
const GATE_STATE: &str = "isolation:\n  allow_write: [~/gate-state]\n";

/// `~/gate-state`, created.
fn gate_state(repo: &TestRepo) -> std::path::PathBuf {
    let dir = repo.home.join("gate-state");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Spec 010 (writes `a.txt` = alpha) and, with `count` 2, spec 020
/// (`b.txt` = beta), in priority order; the gate tests use them.
pub(crate) fn alpha_beta_farm(count: usize, extra_config: &str) -> TestRepo {
    let specs: Vec<(String, String)> = [("010", "alpha", "a"), ("020", "beta", "b")]
        .iter()
        .take(count)
        .enumerate()
        .map(|(n, (id, word, file))| {
            let spec = spec_md(
                &format!("Add {word}"),
                &[&format!("{file}.txt")],
                &[],
                Some(10 * (n as i64 + 1)),
                &format!("write {file}.txt {word}\ncommit \"{word}\""),
            );
            (format!("SPEC-{id}-{file}.md"), spec)
        })
        .collect();
    let specs: Vec<(&str, String)> = specs.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    TestRepo::farm(&[("README.md", "readme\n")], &specs, extra_config)
}

fn one_spec_farm(extra_config: &str) -> TestRepo {
    alpha_beta_farm(1, extra_config)
}

/// The gate pool's worktree, where every gate runs (kept across runs for
/// incremental builds; `prune` removes it).
fn gate_worktree(repo: &TestRepo) -> std::path::PathBuf {
    repo.root.join(".git/treefarm/gates/0")
}

/// No worktree but the user's, the gate pool's and `kept` (no scratch
/// worktree anywhere), and no branch but `treefarm/<kept>`.
fn assert_only_the_gate_pool(repo: &TestRepo, kept: &[&str]) {
    let mut expected = vec![
        repo.root.canonicalize().unwrap(),
        gate_worktree(repo).canonicalize().unwrap(),
    ];
    expected.extend(
        kept.iter()
            .map(|id| repo.worktree_dir().join(id).canonicalize().unwrap()),
    );
    let mut found = repo.worktree_paths();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{}", repo.worktrees_porcelain());
    let branches: Vec<String> = kept.iter().map(|id| format!("treefarm/{id}")).collect();
    assert_eq!(repo.treefarm_branches(), branches);
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
    assert_eq!(
        repo.git(&["rev-parse", "treefarm/010"]),
        inst["tip"].as_str().unwrap()
    );
    assert_only_the_gate_pool(&repo, &["010"]);

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
}

#[test]
fn passing_gate_sees_the_exact_merged_commit_and_the_merge_lands() {
    let repo = alpha_beta_farm(2, &format!("{ONE_BY_ONE}{GATE_STATE}"));
    let seen = gate_state(&repo).join("gate-seen");
    // The gate worktree is checked out at the commit it is told about, with
    // the spec's file in it and a clean status; with batches of one,
    // `TREEFARM_SPEC_IDS` names one spec.
    let gate = format!(
        "test \"$(git rev-parse HEAD)\" = \"$TREEFARM_GATE_COMMIT\" && test -z \"$(git status --porcelain)\" && \
         test -f \"$(echo $TREEFARM_SPEC_IDS | sed 's/010/a/;s/020/b/').txt\" && \
         echo \"$TREEFARM_SPEC_IDS $TREEFARM_GATE_COMMIT $(pwd)\" >> {}",
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
        let dir = std::path::Path::new(parts.next().unwrap());
        assert_eq!(
            dir.canonicalize().unwrap(),
            gate_worktree(&repo).canonicalize().unwrap(),
            "the gate ran elsewhere than in the gate pool"
        );
    }
    assert_only_the_gate_pool(&repo, &[]);
}

#[test]
fn target_moved_by_someone_else_during_the_gate_is_merged_again_not_clobbered() {
    // The gate moves the shared refs itself: under isolation it may only
    // because the test names the stores it writes in `isolation.allow_write`
    // (a gate may not write the repository otherwise), with its own record.
    let repo = one_spec_farm(&format!(
        "{ONE_BY_ONE}isolation:\n  allow_write: [~/gate-state, .git/objects, .git/refs, .git/logs]\n"
    ));
    let marker = gate_state(&repo).join("moved-once");
    let seen = gate_state(&repo).join("gate-seen");
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
    assert_only_the_gate_pool(&repo, &[]);
}
