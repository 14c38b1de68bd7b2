//! `treefarm run` end to end on real repositories with real agent processes:
//! parallel specs, branches and worktrees, merging into the target, the JSON
//! Lines stream and the run directory, failures, retries, leftovers, scope
//! creep, and overlapping specs. Git is the oracle, and the user's own
//! checkout must come out untouched.

use crate::common;

use std::path::Path;

use common::{events_of, json_events, stderr, TestRepo};
use serde_json::Value;

/// A repository with `README.md`, the given config and specs, all committed.
fn repo_with(agent_extra: &str, extra: &str, specs: &[(&str, &str, &[&str], &str)]) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    repo.write_demo_config(agent_extra, extra);
    for (id, slug, files, directives) in specs {
        repo.write_listed_spec(id, slug, files, directives);
    }
    repo.commit_all("specs and config");
    repo
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn exit_code(out: &std::process::Output) -> i32 {
    out.status.code().expect("treefarm exited normally")
}

fn state_of<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no instance {id} in {state}"))
}

/// The worktree paths git knows about, as written by git.
fn worktree_paths(repo: &TestRepo) -> Vec<String> {
    repo.worktrees_porcelain()
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(str::to_string)
        .collect()
}

fn branch_exists(repo: &TestRepo, branch: &str) -> bool {
    !repo.git(&["branch", "--list", branch]).trim().is_empty()
}

/// Checks the invariants every finished run has: stdout is JSON Lines ending
/// with exactly one summary, `events.jsonl` holds the same non-transient
/// events in the same order, and `summary.json` is the summary event.
fn check_journal(repo: &TestRepo, events: &[Value]) -> std::path::PathBuf {
    let last = events.last().expect("at least one event");
    assert_eq!(
        last["event"], "summary",
        "the stream ends with a summary: {last}"
    );
    assert_eq!(events_of(events, "summary", None).len(), 1);
    assert_eq!(events[0]["event"], "run_started");
    let run_dir = repo.only_run();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(last["run_id"], run_id.as_str());
    let journal: Vec<Value> = std::fs::read_to_string(run_dir.join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("events.jsonl line is JSON"))
        .collect();
    let streamed: Vec<&Value> = events.iter().filter(|e| e["event"] != "status").collect();
    assert_eq!(
        journal.iter().collect::<Vec<_>>(),
        streamed,
        "events.jsonl holds the streamed events"
    );
    let mut summary = last.clone();
    summary.as_object_mut().unwrap().remove("event");
    assert_eq!(read_json(&run_dir.join("summary.json")), summary);
    run_dir
}

#[test]
fn parallel_specs_run_side_by_side_merge_and_leave_main_untouched() {
    let repo = repo_with(
        "",
        "instances: 3\n",
        &[
            ("001", "alpha", &["src/alpha.txt"], ""),
            ("002", "beta", &["src/beta.txt"], ""),
            ("003", "gamma", &["docs/gamma.md"], ""),
        ],
    );
    // Each agent waits until all three have started: only a truly parallel
    // run gets past the rendezvous before the 20 s timeout.
    let rdv = repo.records().join("rendezvous");
    std::fs::create_dir_all(&rdv).unwrap();
    let agent = repo.tmp.path().join("rdv-agent.sh");
    std::fs::write(
        &agent,
        format!(
            "touch '{rdv}'/\"$TREEFARM_SPEC_ID\"\n\
             i=0\n\
             while [ \"$(ls '{rdv}' | wc -l)\" -lt 3 ]; do\n\
               i=$((i+1)); [ $i -gt 1000 ] && {{ echo alone; exit 9; }}\n\
               sleep 0.02\n\
             done\n\
             echo rendezvous-ok\n\
             exec {demo}\n",
            rdv = rdv.display(),
            demo = common::demo_agent_command()
        ),
    )
    .unwrap();
    let before = repo.main_snapshot();
    let main_head = repo.git(&["rev-parse", "main"]);

    let out = repo
        .treefarm()
        .args(["run", "--json", "--agent"])
        .arg(format!("sh '{}'", agent.display()))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let run_dir = check_journal(&repo, &events);

    // Every spec planted on its own branch off the target, started, merged.
    for id in ["001", "002", "003"] {
        let planted = events_of(&events, "planted", Some(id));
        assert_eq!(planted.len(), 1, "{id} planted once");
        assert_eq!(planted[0]["branch"], format!("treefarm/{id}"));
        assert_eq!(planted[0]["start_commit"], main_head.as_str());
        assert_eq!(events_of(&events, "started", Some(id)).len(), 1);
        assert_eq!(events_of(&events, "merged", Some(id)).len(), 1);
        assert_eq!(events_of(&events, "pruned", Some(id)).len(), 1);
        let log = std::fs::read_to_string(run_dir.join("logs").join(format!("{id}.log")))
            .expect("instance log");
        assert!(log.contains("rendezvous-ok"), "{id} log: {log}");
        assert!(
            log.contains(&format!("spec {id}")),
            "demo agent output in log: {log}"
        );
    }
    let summary = events.last().unwrap();
    assert_eq!(summary["merged"], serde_json::json!(["001", "002", "003"]));
    assert_eq!(summary["failed"], serde_json::json!([]));
    let roadmap = repo.git(&["rev-parse", "roadmap"]);
    assert_eq!(summary["target_commit"], roadmap.as_str());

    // Git: the target holds all three, main does not move, nothing is left.
    for (path, id) in [
        ("src/alpha.txt", "001"),
        ("src/beta.txt", "002"),
        ("docs/gamma.md", "003"),
    ] {
        let content = repo.git(&["show", &format!("roadmap:{path}")]);
        assert_eq!(content, format!("treefarm demo: {id}"));
    }
    repo.git(&["merge-base", "--is-ancestor", &main_head, "roadmap"]);
    assert_eq!(repo.git(&["rev-parse", "main"]), main_head);
    assert_eq!(repo.main_snapshot(), before, "main checkout untouched");
    assert_eq!(
        worktree_paths(&repo).len(),
        1,
        "{}",
        repo.worktrees_porcelain()
    );
    assert_eq!(repo.git(&["branch", "--list", "treefarm/*"]), "");
    assert!(!repo.root.join("src").exists(), "nothing written into main");

    // The run is finished in `status --json`, every instance pruned.
    let status = repo.status_json();
    assert_eq!(status["state"], "finished");
    for id in ["001", "002", "003"] {
        let inst = state_of(&status, id);
        assert_eq!(inst["state"], "pruned", "{inst}");
        assert_eq!(inst["attempt"], 1);
        assert_eq!(inst["exit_code"], 0);
        assert!(inst["elapsed_ms"].is_u64());
    }
    let state = read_json(&run_dir.join("state.json"));
    assert_eq!(state["state"], "finished");
}

#[test]
fn no_merge_keeps_each_branch_and_worktree_off_the_target() {
    let repo = repo_with(
        "",
        "",
        &[
            ("010", "one", &["one.txt"], ""),
            ("011", "two", &["two.txt"], ""),
        ],
    );
    let before = repo.main_snapshot();
    let main_head = repo.git(&["rev-parse", "main"]);

    let out = repo
        .treefarm()
        .args(["run", "--no-merge", "--json"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    check_journal(&repo, &events);
    assert!(events_of(&events, "merged", None).is_empty());
    let summary = events.last().unwrap();
    assert_eq!(summary["succeeded"], serde_json::json!(["010", "011"]));

    // The target was created from HEAD and did not move.
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), main_head);
    let wts = repo.worktrees_porcelain();
    for (id, file) in [("010", "one.txt"), ("011", "two.txt")] {
        let path = repo.worktree_dir().join(id);
        assert!(
            wts.contains(&format!("worktree {}\n", path.display()))
                && wts.contains(&format!("branch refs/heads/treefarm/{id}")),
            "{id} in worktree list:\n{wts}"
        );
        assert_eq!(
            repo.git(&["rev-parse", &format!("treefarm/{id}^")]),
            main_head,
            "{id}'s one commit sits on the target tip"
        );
        assert_eq!(
            repo.git(&["show", &format!("treefarm/{id}:{file}")]),
            format!("treefarm demo: {id}")
        );
        assert_eq!(
            repo.git_at(&path, &["status", "--porcelain", "--untracked-files=all"]),
            ""
        );
        assert_eq!(
            repo.git_at(&path, &["symbolic-ref", "HEAD"]),
            format!("refs/heads/treefarm/{id}")
        );
    }
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn single_spec_is_a_valid_run() {
    let repo = repo_with("", "", &[("7", "solo", &["solo.txt"], "")]);
    let before = repo.main_snapshot();
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    check_journal(&repo, &events);
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["7"]));
    assert_eq!(repo.git(&["show", "roadmap:solo.txt"]), "treefarm demo: 7");
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn overlapping_specs_run_one_after_the_other_from_a_target_holding_the_first() {
    let repo = repo_with(
        "",
        "instances: 3\n",
        &[
            (
                "001",
                "first",
                &["shared.txt"],
                "append shared.txt one\ncommit first",
            ),
            (
                "002",
                "second",
                &["shared.txt", "second.txt"],
                "append shared.txt two\nwrite second.txt two\ncommit second",
            ),
        ],
    );
    let before = repo.main_snapshot();
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    check_journal(&repo, &events);

    let pos = |kind: &str, id: &str| {
        events
            .iter()
            .position(|e| e["event"] == kind && e["id"] == id)
            .unwrap_or_else(|| panic!("no {kind} event for {id}"))
    };
    assert!(
        pos("merged", "001") < pos("planted", "002"),
        "002 is planted only after 001 merged"
    );
    let merged_first = events_of(&events, "merged", Some("001"))[0]["commit"].clone();
    assert_eq!(
        events_of(&events, "planted", Some("002"))[0]["start_commit"],
        merged_first,
        "002 starts from the target holding 001's merge"
    );
    assert_eq!(repo.git(&["show", "roadmap:shared.txt"]), "one\ntwo");
    assert!(events_of(&events, "conflicted", None).is_empty());
    assert_eq!(
        events.last().unwrap()["merged"],
        serde_json::json!(["001", "002"])
    );
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn failing_agent_fails_with_exit_1_shows_the_log_tail_and_keeps_its_worktree() {
    let repo = repo_with(
        "",
        "",
        &[
            (
                "020",
                "broken",
                &["broken.txt"],
                "write broken.txt half-done\ncommit partial\nexit 3",
            ),
            ("021", "fine", &["fine.txt"], ""),
        ],
    );
    let before = repo.main_snapshot();
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), 1, "stderr:\n{err}");
    let events = json_events(&out);
    let run_dir = check_journal(&repo, &events);

    let exited = events_of(&events, "exited", Some("020"));
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["result"], "failed");
    assert_eq!(exited[0]["exit_code"], 3);
    let failed = events_of(&events, "failed", Some("020"));
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("code 3"),
        "{}",
        failed[0]
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["failed"], serde_json::json!(["020"]));
    assert_eq!(
        summary["merged"],
        serde_json::json!(["021"]),
        "the other spec still merges"
    );

    // The tail of the log is shown on stderr.
    let log = std::fs::read_to_string(run_dir.join("logs/020.log")).unwrap();
    assert!(log.contains("demo-agent: exit 3"), "log: {log}");
    assert!(
        err.contains("demo-agent: exit 3"),
        "log tail on stderr:\n{err}"
    );

    let state = read_json(&run_dir.join("state.json"));
    let inst = state_of(&state, "020");
    assert_eq!(inst["state"], "failed");
    assert_eq!(inst["exit_code"], 3);
    let status = repo.status_json();
    assert_eq!(state_of(&status, "020")["state"], "failed");

    // Worktree and branch kept, with the partial work committed.
    let wt = repo.worktree_dir().join("020");
    assert!(worktree_paths(&repo).contains(&wt.display().to_string()));
    assert!(branch_exists(&repo, "treefarm/020"));
    assert_eq!(repo.git(&["show", "treefarm/020:broken.txt"]), "half-done");
    let merged = repo
        .git_cmd(&["cat-file", "-e", "roadmap:broken.txt"])
        .output()
        .unwrap();
    assert!(!merged.status.success(), "the failed spec is not merged");
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn fail_once_then_success_on_the_retry() {
    let repo = repo_with(
        "  retries: 1\n",
        "",
        &[(
            "030",
            "flaky",
            &["flaky.txt"],
            "write flaky.txt attempt\nfail-once 5\ncommit flaky",
        )],
    );
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let run_dir = check_journal(&repo, &events);
    let exited = events_of(&events, "exited", Some("030"));
    assert_eq!(exited.len(), 2, "{exited:?}");
    assert_eq!(
        (exited[0]["attempt"].clone(), exited[0]["exit_code"].clone()),
        (1.into(), 5.into())
    );
    assert_eq!(
        (exited[1]["attempt"].clone(), exited[1]["exit_code"].clone()),
        (2.into(), 0.into())
    );
    let retrying = events_of(&events, "retrying", Some("030"));
    assert_eq!(retrying.len(), 1);
    assert_eq!(retrying[0]["attempt"], 2);
    assert_eq!(events_of(&events, "started", Some("030")).len(), 2);
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["030"]));
    assert_eq!(repo.git(&["show", "roadmap:flaky.txt"]), "attempt");
    let log = std::fs::read_to_string(run_dir.join("logs/030.log")).unwrap();
    assert!(
        log.contains("fail-once: failing with 5") && log.contains("fail-once: failed before"),
        "the log holds both attempts: {log}"
    );
    assert_eq!(state_of(&repo.status_json(), "030")["attempt"], 2);
}

#[test]
fn exhausted_retries_fail_the_instance() {
    let repo = repo_with(
        "  retries: 2\n",
        "",
        &[("031", "hopeless", &["h.txt"], "exit 4")],
    );
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    check_journal(&repo, &events);
    let exited = events_of(&events, "exited", Some("031"));
    let attempts: Vec<(Value, Value)> = exited
        .iter()
        .map(|e| (e["attempt"].clone(), e["exit_code"].clone()))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1.into(), 4.into()),
            (2.into(), 4.into()),
            (3.into(), 4.into())
        ]
    );
    assert_eq!(events.last().unwrap()["failed"], serde_json::json!(["031"]));
    let inst = state_of(&repo.status_json(), "031").clone();
    assert_eq!(inst["state"], "failed");
    assert_eq!(inst["attempt"], 3);
    assert_eq!(inst["exit_code"], 4);
    assert!(branch_exists(&repo, "treefarm/031"));
}

#[test]
fn uncommitted_leftovers_are_auto_committed_on_the_branch() {
    let repo = repo_with(
        "",
        "",
        &[(
            "040",
            "messy",
            &["messy.txt", "README.md"],
            "write messy.txt left-behind\nappend README.md edited",
        )],
    );
    let out = repo
        .treefarm()
        .args(["run", "--json", "--no-merge"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let committed = events_of(&events, "committed", Some("040"));
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0]["auto"], true);
    let tip = repo.git(&["rev-parse", "treefarm/040"]);
    assert_eq!(committed[0]["commit"], tip.as_str());
    assert!(
        repo.git(&["log", "-1", "--format=%s", "treefarm/040"])
            .contains("uncommitted"),
        "an auto-commit on the branch"
    );
    assert_eq!(
        repo.git(&["rev-parse", "treefarm/040^"]),
        repo.git(&["rev-parse", "roadmap"])
    );
    let mut files: Vec<String> = repo
        .git(&["diff", "--name-only", "roadmap", "treefarm/040"])
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    assert_eq!(files, ["README.md", "messy.txt"]);
    let wt = repo.worktree_dir().join("040");
    assert_eq!(
        repo.git_at(&wt, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
}

#[test]
fn commit_off_with_leftovers_fails_the_instance() {
    let repo = repo_with(
        "  commit: \"off\"\n",
        "",
        &[(
            "041",
            "messy",
            &["messy.txt"],
            "write messy.txt left-behind",
        )],
    );
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let failed = events_of(&events, "failed", Some("041"));
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("uncommitted"),
        "{}",
        failed[0]
    );
    assert!(events_of(&events, "merged", None).is_empty());
    // Nothing was committed for the agent; the leftovers wait in the worktree.
    assert_eq!(repo.git(&["rev-parse", "treefarm/041"]), roadmap_before);
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), roadmap_before);
    let wt = repo.worktree_dir().join("041");
    assert_eq!(
        repo.git_at(&wt, &["status", "--porcelain", "--untracked-files=all"]),
        "?? messy.txt"
    );
}

#[test]
fn scope_creep_is_reported_with_the_path_and_still_merges_under_warn() {
    let repo = repo_with(
        "",
        "",
        &[(
            "050",
            "creepy",
            &["src/declared.rs"],
            "write src/declared.rs ok\ntouch notes/undeclared.txt\ncommit creep",
        )],
    );
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), 0, "stderr:\n{err}");
    let events = json_events(&out);
    let creep = events_of(&events, "scope_creep", Some("050"));
    assert_eq!(creep.len(), 1, "{events:?}");
    assert_eq!(
        creep[0]["paths"],
        serde_json::json!(["notes/undeclared.txt"])
    );
    let pos = |kind: &str| events.iter().position(|e| e["event"] == kind).unwrap();
    assert!(
        pos("scope_creep") < pos("merged"),
        "reported before the merge"
    );
    assert!(
        err.contains("notes/undeclared.txt"),
        "stderr names the path:\n{err}"
    );
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["050"]));
}

#[test]
fn scope_fail_fails_the_instance_and_merges_nothing() {
    let repo = repo_with(
        "",
        "scope: fail\n",
        &[(
            "051",
            "creepy",
            &["src/declared.rs"],
            "write src/declared.rs ok\ntouch notes/undeclared.txt\ncommit creep",
        )],
    );
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert_eq!(
        events_of(&events, "scope_creep", Some("051"))[0]["paths"],
        serde_json::json!(["notes/undeclared.txt"])
    );
    let failed = events_of(&events, "failed", Some("051"));
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["reason"]
        .as_str()
        .unwrap()
        .contains("notes/undeclared.txt"));
    assert!(events_of(&events, "merged", None).is_empty());
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), roadmap_before);
    assert!(branch_exists(&repo, "treefarm/051"), "branch kept");
}
