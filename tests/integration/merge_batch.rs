//! End-to-end: merging a batch — a conflict in the middle leaves the target,
//! the branch and the worktree as they were; dependencies and overlaps make
//! later specs start from a target that already holds the earlier merges.

use crate::common;

use common::*;

/// Index of the first event of `kind` about `id`.
fn event_pos(events: &[serde_json::Value], kind: &str, id: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == kind && e["id"] == id)
        .unwrap_or_else(|| panic!("no `{kind}` event for {id} in {events:#?}"))
}

#[test]
fn conflict_in_the_middle_of_three_keeps_branch_and_worktree_and_merges_the_others() {
    // 010 and 020 both write the undeclared `shared.txt`, so they run side by
    // side and the second to merge conflicts. The agent wrapper orders the
    // merges by waiting on events, not time: 010 starts working once 020's
    // branch is planted (with the stagger, 020 could otherwise be planted on
    // a roadmap that already holds 010, and not conflict), 020 once 010 is
    // on roadmap, 030 once the journal records 020 conflicted.
    let a = spec_md(
        "Alpha",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt a\nwrite shared.txt from-010\ncommit \"alpha\"",
    );
    let b = spec_md(
        "Beta",
        &["b.txt"],
        &[],
        Some(20),
        "write b.txt b\nwrite shared.txt from-020\ncommit \"beta\"",
    );
    let c = spec_md(
        "Gamma",
        &["c.txt"],
        &[],
        Some(30),
        "write c.txt c\ncommit \"gamma\"",
    );
    // The shared repository is read through its own git directory: under
    // isolation the agent's git is a private directory whose other refs are
    // a snapshot taken at plant time.
    let wrapper = r#"
# The journal: the snapshot and the change log beside it.
state="$TREEFARM_RUN_DIR/state.json $TREEFARM_RUN_DIR/state.changes.jsonl"
shared="$TREEFARM_RUN_DIR/../../.."
case "$TREEFARM_SPEC_ID" in
010) until git --git-dir="$shared" rev-parse -q --verify refs/heads/treefarm/020 >/dev/null; do sleep 0.05; done ;;
020) until git --git-dir="$shared" cat-file -e roadmap:a.txt 2>/dev/null; do sleep 0.05; done ;;
030) until cat $state 2>/dev/null | grep -q '"state": *"conflicted"'; do sleep 0.05; done ;;
esac"#;
    let repo = TestRepo::farm_with_wrapper(
        &[("README.md", "readme\n")],
        &[
            ("SPEC-010-a.md", a),
            ("SPEC-020-b.md", b),
            ("SPEC-030-c.md", c),
        ],
        wrapper,
        "",
    );
    let before = repo.main_snapshot();
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["010", "030"], "{summary}");
    assert_eq!(
        summary["conflicted"],
        serde_json::json!([{"id": "020", "paths": ["shared.txt"]}])
    );
    let events = json_events(&out);
    assert!(event_pos(&events, "merged", "010") < event_pos(&events, "conflicted", "020"));
    assert!(event_pos(&events, "conflicted", "020") < event_pos(&events, "merged", "030"));

    // Target: 010's merge then 030's, directly on top of each other; nothing
    // of 020 in it.
    let line = repo.first_parent_subjects("roadmap");
    assert_eq!(line.len(), 3, "{line:?}");
    assert!(
        line[0].contains("SPEC-030") && line[1].contains("SPEC-010"),
        "{line:?}"
    );
    assert_eq!(repo.show("roadmap", "shared.txt"), "from-010");
    assert!(!repo
        .git_cmd(&["cat-file", "-e", "roadmap:b.txt"])
        .output()
        .unwrap()
        .status
        .success());

    // 020: journal, branch and worktree kept with its commit.
    let inst = repo.instance("020");
    assert_eq!(inst["state"], "conflicted");
    assert_eq!(inst["conflict_paths"], serde_json::json!(["shared.txt"]));
    let tip = inst["tip"].as_str().unwrap().to_string();
    assert_eq!(repo.treefarm_branches(), ["treefarm/020"]);
    assert_eq!(repo.git(&["rev-parse", "treefarm/020"]), tip);
    assert_eq!(repo.git(&["log", "-1", "--format=%s", &tip]), "beta");
    assert!(!repo.is_ancestor(&tip, "roadmap"));
    let wt = repo.worktree_dir().join("020");
    assert!(repo.worktree_paths().contains(&wt.canonicalize().unwrap()));
    assert_eq!(repo.git_at(&wt, &["status", "--porcelain"]), "");
    assert_eq!(repo.git_at(&wt, &["rev-parse", "HEAD"]), tip);
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn dependent_starts_after_its_dependency_merged_from_a_target_holding_it() {
    let a = spec_md(
        "Base layer",
        &["a.txt"],
        &[],
        Some(10),
        "write a.txt a\ncommit \"a\"",
    );
    let b = spec_md(
        "Upper layer",
        &["b.txt"],
        &["\"010\""],
        Some(5),
        "write b.txt b\ncommit \"b\"",
    );
    let repo = TestRepo::farm(
        &[("README.md", "r\n")],
        &[("SPEC-010-a.md", a), ("SPEC-020-b.md", b)],
        "",
    );
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert!(event_pos(&events, "merged", "010") < event_pos(&events, "planted", "020"));
    let merged_010 = repo.instance("010")["merged_commit"]
        .as_str()
        .unwrap()
        .to_string();
    let start_020 = repo.instance("020")["start_commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        repo.is_ancestor(&merged_010, &start_020),
        "020 did not start from a target holding 010"
    );
    let planted = &events[event_pos(&events, "planted", "020")];
    assert_eq!(planted["start_commit"], start_020.as_str());
    // 020's own commit sits on top of 010's merge.
    assert_eq!(repo.show("roadmap", "a.txt"), "a");
    assert_eq!(repo.show("roadmap", "b.txt"), "b");
}

#[test]
fn failed_dependency_skips_dependents_transitively_and_independents_still_merge() {
    let a = spec_md("Fails", &["a.txt"], &[], Some(10), "write a.txt a\nexit 3");
    let b = spec_md(
        "Needs a",
        &["b.txt"],
        &["\"010\""],
        Some(20),
        "write b.txt b\ncommit b",
    );
    let c = spec_md(
        "Needs b",
        &["c.txt"],
        &["\"020\""],
        Some(30),
        "write c.txt c\ncommit c",
    );
    let d = spec_md(
        "Alone",
        &["d.txt"],
        &[],
        Some(40),
        "write d.txt d\ncommit d",
    );
    let repo = TestRepo::farm(
        &[("README.md", "r\n")],
        &[
            ("SPEC-010-a.md", a),
            ("SPEC-020-b.md", b),
            ("SPEC-030-c.md", c),
            ("SPEC-040-d.md", d),
        ],
        "",
    );
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "failed"), ["010"]);
    assert_eq!(summary_ids(&summary, "skipped"), ["020", "030"]);
    assert_eq!(summary_ids(&summary, "merged"), ["040"]);
    let events = json_events(&out);
    let reason = |id: &str| {
        events[event_pos(&events, "skipped", id)]["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("020").contains("010"), "{}", reason("020"));
    assert!(reason("030").contains("020"), "{}", reason("030"));
    for id in ["020", "030"] {
        assert_eq!(repo.instance(id)["state"], "skipped");
        assert!(repo.instance(id)["reason"]
            .as_str()
            .unwrap()
            .contains("failed"));
        assert!(
            !events
                .iter()
                .any(|e| e["event"] == "planted" && e["id"] == id),
            "{id} was planted"
        );
        assert!(!repo.worktree_dir().join(id).exists());
    }
    // The failed one is kept for inspection; nothing of it or its dependents
    // reached the target.
    assert_eq!(repo.treefarm_branches(), ["treefarm/010"]);
    assert!(repo.worktree_dir().join("010").exists());
    assert_eq!(repo.first_parent_subjects("roadmap").len(), 2);
}

#[test]
fn overlapping_specs_run_in_turn_the_second_from_the_first_merge() {
    let a = spec_md(
        "First edit",
        &["shared.txt"],
        &[],
        Some(10),
        "append shared.txt from-010\ncommit first",
    );
    let b = spec_md(
        "Second edit",
        &["shared.txt"],
        &[],
        Some(20),
        "append shared.txt from-020\ncommit second",
    );
    let repo = TestRepo::farm(
        &[("shared.txt", "base\n")],
        &[("SPEC-010-a.md", a), ("SPEC-020-b.md", b)],
        "",
    );
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert!(event_pos(&events, "merged", "010") < event_pos(&events, "planted", "020"));
    let merged_010 = repo.instance("010")["merged_commit"]
        .as_str()
        .unwrap()
        .to_string();
    let start_020 = repo.instance("020")["start_commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(repo.is_ancestor(&merged_010, &start_020));
    assert_eq!(
        repo.show("roadmap", "shared.txt"),
        "base\nfrom-010\nfrom-020"
    );
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010", "020"]);
    assert!(repo.treefarm_branches().is_empty());
}
