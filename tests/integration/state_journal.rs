//! The run journal: atomic state writes, run ids, finding runs to resume,
//! events.

use std::collections::HashSet;

use serde_json::json;
use tempfile::TempDir;
use treefarm::state::{
    now_ms, InstanceRecord, InstanceState, JournalledOptions, RunOptions, RunRecord, RunState,
    StateDir,
};

fn state_dir() -> (TempDir, StateDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let state = StateDir::new(tmp.path());
    (tmp, state)
}

fn record(run_id: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        state: RunState::Running,
        coordinator_pid: std::process::id(),
        coordinator_start: treefarm::procfs::start_time(std::process::id()),
        started_at_ms: now_ms(),
        options: RunOptions {
            target: "roadmap".into(),
            base_commit: "0123abcd".into(),
            agent_command: "sh -c true".into(),
            instances: 3,
            ..RunOptions::default()
        }
        .into(),
        instances: vec![InstanceRecord {
            id: "020".into(),
            title: "retry".into(),
            branch: "treefarm/020".into(),
            worktree: "/tmp/wt/020".into(),
            state: InstanceState::Running,
            attempt: 1,
            slot: Some(0),
            changed_files: vec!["src/a.rs".into()],
            ..InstanceRecord::default()
        }],
        ..RunRecord::default()
    }
}

#[test]
fn state_roundtrips_through_write_and_read() {
    let (_tmp, state) = state_dir();
    let id = state.new_run_id();
    let run = state.create_run(&id).expect("create run");
    let mut rec = record(&id);
    run.write_state(&rec).expect("write");
    assert_eq!(run.read_state().expect("read"), rec);

    rec.instance_mut("020").expect("instance").state = InstanceState::Succeeded;
    run.write_state(&rec).expect("rewrite");
    let back = run.read_state().expect("reread");
    assert_eq!(
        back.instance("020").expect("instance").state,
        InstanceState::Succeeded
    );
    assert!(
        !run.path().join("state.json.tmp").exists(),
        "no tmp file left behind"
    );
    assert_eq!(run.run_id(), id);
    assert!(run.path().starts_with(state.path()));
    assert!(state.path().ends_with("treefarm"));
}

#[test]
fn older_journal_without_optional_fields_loads() {
    let (_tmp, state) = state_dir();
    let run = state
        .create_run("20260101-000000-0000")
        .expect("create run");
    std::fs::write(
        run.path().join("state.json"),
        r#"{"run_id": "20260101-000000-0000", "state": "finished", "coordinator_pid": 1,
            "started_at_ms": 5, "some_future_field": true,
            "instances": [{"id": "020", "state": "timed_out"}]}"#,
    )
    .expect("write old journal");
    let rec = run.read_state().expect("read old journal");
    assert_eq!(rec.state, RunState::Finished);
    assert_eq!(rec.instances[0].state, InstanceState::TimedOut);
    assert_eq!(rec.instances[0].progress, None);
}

#[test]
fn corrupt_state_is_an_error_naming_the_file() {
    let (_tmp, state) = state_dir();
    let run = state
        .create_run("20260101-000000-0000")
        .expect("create run");
    std::fs::write(run.path().join("state.json"), "{\"run_id\": ").expect("write garbage");
    let err = run.read_state().expect_err("corrupt");
    let shown = format!("{:#}", anyhow::Error::from(err));
    assert!(shown.contains("corrupt state file"), "{shown}");
    assert!(
        shown.contains(&run.path().join("state.json").display().to_string()),
        "{shown}"
    );
    assert!(shown.contains("hint:"), "{shown}");
}

#[test]
fn run_ids_are_unique_and_sort_in_creation_order() {
    let (_tmp, state) = state_dir();
    let mut created = Vec::new();
    for _ in 0..200 {
        let id = state.new_run_id();
        state.create_run(&id).expect("create run");
        created.push(id);
    }
    let unique: HashSet<&String> = created.iter().collect();
    assert_eq!(unique.len(), created.len(), "ids are unique");
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(sorted, created, "ids sort in creation order");
    assert_eq!(state.runs().expect("runs"), created);
    // A run folder without a journal (its coordinator died before the first
    // write) is not a run `status` can show: the latest one with a journal is.
    assert_eq!(state.latest_run().expect("latest"), None);
    let journalled = &created[created.len() - 2];
    state
        .open_run(journalled)
        .expect("open run")
        .write_state(&record(journalled))
        .expect("write state");
    assert_eq!(
        state.latest_run().expect("latest").as_ref(),
        Some(journalled)
    );
    let first = &created[0];
    assert_eq!(first.len(), "20261120-214800-3f2a".len(), "{first}");
    assert!(
        first.as_bytes()[8] == b'-' && first.as_bytes()[15] == b'-',
        "{first}"
    );
}

#[test]
fn creating_an_existing_run_fails() {
    let (_tmp, state) = state_dir();
    state.create_run("20260101-000000-0000").expect("first");
    assert!(state.create_run("20260101-000000-0000").is_err());
}

#[test]
fn unknown_run_is_a_user_error_listing_recent_runs() {
    let (_tmp, state) = state_dir();
    state.create_run("20260101-000000-0000").expect("create");
    state.create_run("20260102-000000-0000").expect("create");
    let err = state.open_run("20990101-000000-0000").expect_err("unknown");
    assert!(err.is_user_error());
    let err = anyhow::Error::from(err);
    assert_eq!(treefarm::exit_code_for(&err), treefarm::ExitCode::BadInput);
    let shown = format!("{err:#}");
    assert!(
        shown.contains("unknown run `20990101-000000-0000`"),
        "{shown}"
    );
    assert!(
        shown.contains("20260102-000000-0000, 20260101-000000-0000"),
        "{shown}"
    );

    let err = state.open_run("../escape").expect_err("not an id");
    assert!(err.is_user_error());
    assert!(state.open_run("20260101-000000-0000").is_ok());
}

#[test]
fn latest_unfinished_finds_interrupted_or_dead_coordinator_runs() {
    let (_tmp, state) = state_dir();
    assert_eq!(state.latest_unfinished().expect("empty"), None);

    let dead = {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    };
    let write = |id: &str, run_state: RunState, pid: u32| {
        let mut rec = record(id);
        rec.state = run_state;
        rec.coordinator_pid = pid;
        rec.coordinator_start = treefarm::procfs::start_time(pid);
        state
            .create_run(id)
            .expect("create")
            .write_state(&rec)
            .expect("write");
    };
    write("20260101-000000-0001", RunState::Interrupted, dead);
    assert_eq!(
        state.latest_unfinished().expect("one").as_deref(),
        Some("20260101-000000-0001")
    );
    write("20260101-000000-0002", RunState::Running, dead);
    assert_eq!(
        state.latest_unfinished().expect("dead").as_deref(),
        Some("20260101-000000-0002")
    );
    // Newer runs that are finished, or running with a live coordinator, or
    // never journalled are not resumable.
    write("20260101-000000-0003", RunState::Finished, dead);
    write(
        "20260101-000000-0004",
        RunState::Running,
        std::process::id(),
    );
    state.create_run("20260101-000000-0005").expect("empty run");
    assert_eq!(
        state.latest_unfinished().expect("skip"),
        Some("20260101-000000-0002".to_string())
    );
}

#[test]
fn events_append_one_line_each_and_survive_a_torn_last_line() {
    let (_tmp, state) = state_dir();
    let run = state.create_run("20260101-000000-0000").expect("create");
    run.append_event(&json!({"event": "planted", "id": "020"}))
        .expect("append");
    // A crash in the middle of an append leaves a partial line.
    let path = run.path().join("events.jsonl");
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"event\": \"star");
    std::fs::write(&path, &text).expect("tear");
    assert_eq!(run.read_events().expect("torn").len(), 1);
    run.append_event(&json!({"event": "started", "id": "020"}))
        .expect("append after tear");
    let events = run.read_events().expect("read");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["event"], "started");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.ends_with("\"id\":\"020\"}\n"), "{text}");
}

#[test]
fn summary_is_written_atomically() {
    let (_tmp, state) = state_dir();
    let run = state.create_run("20260101-000000-0000").expect("create");
    run.write_summary(&json!({"merged": ["020"]}))
        .expect("summary");
    let text = std::fs::read_to_string(run.path().join("summary.json")).expect("read");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["merged"][0], "020");
    assert!(!run.path().join("summary.json.tmp").exists());
}

#[test]
fn per_instance_paths_live_in_the_run_directory() {
    let (_tmp, state) = state_dir();
    let run = state.create_run("20260101-000000-0000").expect("create");
    let dir = run.instance_dir("020");
    assert!(dir.is_dir());
    assert_eq!(dir, run.path().join("instances/020"));
    assert_eq!(run.status_path("020"), dir.join("status.json"));
    assert_eq!(run.exit_path("020"), dir.join("exit_code"));
    assert_eq!(run.prompt_path("020"), dir.join("prompt.md"));
    assert_eq!(run.gate_log_path("020"), dir.join("gate.log"));
    assert_eq!(run.log_path("020"), run.path().join("logs/020.log"));
    assert!(run.path().join("logs").is_dir());
}

#[test]
fn instance_states_serialise_snake_case() {
    assert_eq!(
        serde_json::to_string(&InstanceState::TimedOut).expect("json"),
        "\"timed_out\""
    );
    assert_eq!(InstanceState::TimedOut.as_str(), "timed_out");
    assert_eq!(
        serde_json::to_string(&RunState::Interrupted).expect("json"),
        "\"interrupted\""
    );
    assert!(InstanceState::Conflicted.is_terminal());
    assert!(!InstanceState::Succeeded.is_terminal());
    assert!(!InstanceState::Running.is_terminal());
}

#[test]
fn a_journal_of_the_previous_layout_reads_its_options_typed() {
    // Before the options were typed, `state.json` held copies of target,
    // base commit, repo root, no_merge and keep beside an untyped `options`
    // object with the same fields: such a journal must still resume.
    let (_tmp, state) = state_dir();
    let id = state.new_run_id();
    let run = state.create_run(&id).expect("create run");
    let rec = record(&id);
    let mut old = serde_json::to_value(&rec).expect("serialise");
    let fields = old.as_object_mut().expect("an object");
    fields.insert("target".into(), json!("roadmap"));
    fields.insert("base_commit".into(), json!("0123abcd"));
    fields.insert("repo_root".into(), json!("/repo"));
    fields.insert("no_merge".into(), json!(false));
    fields.insert("keep".into(), json!(true));
    std::fs::write(
        run.path().join("state.json"),
        serde_json::to_vec(&old).expect("json"),
    )
    .expect("write old journal");
    let back = run.read_state().expect("read old journal");
    assert_eq!(back, rec);
    assert_eq!((back.target(), back.base_commit()), ("roadmap", "0123abcd"));
    assert_eq!(back.opts().map(|o| o.instances), Some(3));
}

#[test]
fn options_this_version_cannot_read_are_kept_unchanged_when_the_journal_is_rewritten() {
    let (_tmp, state) = state_dir();
    let id = state.new_run_id();
    let run = state.create_run(&id).expect("create run");
    let foreign = json!({"agent": "sh -c true", "instances": "three", "future": [1, 2]});
    let mut rec = record(&id);
    rec.options = JournalledOptions::Foreign(foreign.clone());
    run.write_state(&rec).expect("write");
    let mut back = run.read_state().expect("a foreign journal still reads");
    assert!(
        back.opts().is_none(),
        "not readable as this version's options"
    );
    assert_eq!(back.target(), "");
    back.instance_mut("020").expect("instance").state = InstanceState::Failed;
    run.write_state(&back).expect("rewrite");
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.path().join("state.json")).expect("read"))
            .expect("json");
    assert_eq!(
        raw["options"], foreign,
        "the foreign options survive a rewrite"
    );
}
