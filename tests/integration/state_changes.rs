//! The journal's change log (`state.changes.jsonl` beside the snapshot
//! `state.json`) as its readers see it: a torn tail, a log of an older
//! snapshot beside a newer one, a snapshot with no log and a run of the
//! layout before the log all read as the record that was committed; and a
//! commit writes what changed, not the run.

use tempfile::TempDir;
use treefarm::state::{
    InstanceRecord, InstanceState, RunDir, RunRecord, RunState, StateDir, StateWriter,
};

const RUN_ID: &str = "20260101-000000-0000";

/// The latest run's record of `repo`, read as every reader reads it (the
/// snapshot and its change log): what a test checks mid-run or after a
/// crash, when `state.json` alone is the last snapshot.
fn journal_record(repo: &crate::common::TestRepo) -> RunRecord {
    let state = StateDir::new(&repo.root.join(".git"));
    let id = state.latest_run().expect("runs").expect("a run");
    state
        .open_run(&id)
        .and_then(|dir| dir.read_state())
        .expect("the journal reads")
}

/// [`journal_record`] as JSON.
pub(crate) fn journal(repo: &crate::common::TestRepo) -> serde_json::Value {
    serde_json::to_value(journal_record(repo)).expect("json")
}

/// Instance `id` of [`journal`].
pub(crate) fn journalled_instance(repo: &crate::common::TestRepo, id: &str) -> serde_json::Value {
    let record = journal_record(repo);
    let inst = record
        .instance(id)
        .unwrap_or_else(|| panic!("no instance {id} in run {}", record.run_id));
    serde_json::to_value(inst).expect("json")
}

fn run_dir(specs: usize) -> (TempDir, RunDir, RunRecord) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = StateDir::new(tmp.path())
        .create_run(RUN_ID)
        .expect("create run");
    let record = RunRecord {
        run_id: RUN_ID.into(),
        state: RunState::Running,
        coordinator_pid: std::process::id(),
        started_at_ms: 1,
        instances: (1..=specs)
            .map(|i| InstanceRecord {
                id: format!("{i:03}"),
                title: format!("spec number {i} with a title of some length"),
                branch: format!("treefarm/{i:03}"),
                worktree: format!("/tmp/worktrees/{i:03}"),
                ..InstanceRecord::default()
            })
            .collect(),
        ..RunRecord::default()
    };
    (tmp, dir, record)
}

fn set(record: &mut RunRecord, id: &str, state: InstanceState) {
    let inst = record.instance_mut(id).expect("instance");
    inst.state = state;
    inst.attempt += 1;
}

/// A run of `specs` instances whose writer made its first commit (a
/// compaction), then one commit per change in `changes`.
fn committed(
    specs: usize,
    changes: &[(&str, InstanceState)],
) -> (TempDir, RunDir, RunRecord, StateWriter) {
    let (tmp, dir, mut record) = run_dir(specs);
    let mut writer = dir.state_writer();
    writer.commit(&record).expect("first commit (compaction)");
    for (id, state) in changes {
        set(&mut record, id, *state);
        writer.commit(&record).expect("commit");
    }
    (tmp, dir, record, writer)
}

fn log_len(dir: &RunDir) -> u64 {
    std::fs::metadata(dir.changes_path()).map_or(0, |m| m.len())
}

#[test]
fn a_commit_appends_the_changed_instance_not_the_run() {
    let (_tmp, dir, mut record, mut writer) = committed(500, &[]);
    let snapshot = std::fs::metadata(dir.state_path()).expect("snapshot").len();
    let before = log_len(&dir);
    set(&mut record, "250", InstanceState::Running);
    writer.commit(&record).expect("commit");
    let grew = log_len(&dir) - before;
    let one = serde_json::to_vec(record.instance("250").expect("250"))
        .expect("json")
        .len() as u64;
    assert!(
        grew < one + 200,
        "one changed instance ({one} bytes) appended {grew} bytes (snapshot {snapshot})"
    );
    assert_eq!(
        std::fs::metadata(dir.state_path()).expect("snapshot").len(),
        snapshot,
        "the snapshot was rewritten"
    );
    assert_eq!(dir.read_state().expect("read"), record);
}

#[test]
fn a_growing_run_level_field_appends_what_was_added_not_the_field() {
    let (_tmp, dir, mut record, mut writer) = committed(500, &[]);
    let usage = |tokens| treefarm::agents::Usage {
        input_tokens: Some(tokens),
        output_tokens: Some(7),
        cost_usd: Some(0.25),
        model: Some("some-model".into()),
    };
    for i in 1..=400 {
        record.spending.record(&format!("{i:03}"), usage(i));
    }
    // Already large (400 specs' spending), written once here.
    writer.commit(&record).expect("commit");
    let before = log_len(&dir);
    record.spending.record("401", usage(401));
    writer.commit(&record).expect("commit");
    let grew = log_len(&dir) - before;
    let whole = serde_json::to_vec(&record.spending).expect("json").len() as u64;
    assert!(
        grew < 300,
        "one more spec's spending appended {grew} bytes (the field: {whole})"
    );
    assert_eq!(dir.read_state().expect("read"), record);
}

#[test]
fn the_log_compacts_into_the_snapshot_as_it_outgrows_it() {
    let (_tmp, dir, mut record, mut writer) = committed(20, &[]);
    let mut compactions = 0;
    let mut last = log_len(&dir);
    for round in 0..200 {
        let id = format!("{:03}", round % 20 + 1);
        set(&mut record, &id, InstanceState::Running);
        writer.commit(&record).expect("commit");
        let len = log_len(&dir);
        if len < last {
            compactions += 1;
        }
        last = len;
        let snapshot = std::fs::metadata(dir.state_path()).expect("snapshot").len();
        // Bounded: never more than the snapshot plus one commit.
        assert!(
            len <= snapshot + 4096,
            "log {len} beside a snapshot of {snapshot}"
        );
        assert_eq!(dir.read_state().expect("read"), record, "round {round}");
    }
    assert!(compactions >= 2, "{compactions} compactions in 200 commits");
}

#[test]
fn a_torn_last_line_is_ignored_and_the_next_writer_drops_it() {
    let (_tmp, dir, mut record, mut writer) = committed(5, &[("002", InstanceState::Running)]);
    let before = record.clone();
    set(&mut record, "003", InstanceState::Running);
    writer.commit(&record).expect("commit");
    // A kill mid-append: the last line lost its second half.
    let log = std::fs::read(dir.changes_path()).expect("log");
    let last_start = log[..log.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("two lines")
        + 1;
    let torn = last_start + (log.len() - last_start) / 2;
    std::fs::write(dir.changes_path(), &log[..torn]).expect("tear");
    assert_eq!(dir.read_state().expect("read"), before);

    // The next coordinator starts from what it read; its first commit
    // leaves no torn line behind, and what it appends reads back.
    let mut resumed = dir.read_state().expect("read");
    let mut writer = dir.state_writer();
    writer
        .commit(&resumed)
        .expect("first commit of the next writer");
    let log = std::fs::read(dir.changes_path()).expect("log");
    assert!(log.ends_with(b"\n"), "torn tail kept");
    set(&mut resumed, "004", InstanceState::Failed);
    writer.commit(&resumed).expect("commit");
    assert_eq!(dir.read_state().expect("read"), resumed);
}

#[test]
fn a_log_of_an_older_snapshot_is_not_replayed() {
    let (_tmp, dir, mut record, mut writer) = committed(5, &[("001", InstanceState::Running)]);
    let stale_log = std::fs::read(dir.changes_path()).expect("log");
    // Commits until a compaction writes a new snapshot (the log shrinks).
    let mut last = log_len(&dir);
    loop {
        set(&mut record, "001", InstanceState::Merged);
        writer.commit(&record).expect("commit");
        if log_len(&dir) < last {
            break;
        }
        last = log_len(&dir);
    }
    // A crash between the snapshot's rename and the new log: the old log,
    // which says 001 is running, lies beside the newer snapshot.
    std::fs::write(dir.changes_path(), &stale_log).expect("put the old log back");
    let read = dir.read_state().expect("read");
    assert_eq!(read, record);
    assert_eq!(
        read.instance("001").expect("001").state,
        InstanceState::Merged
    );
}

#[test]
fn a_snapshot_with_no_log_reads_whole() {
    let (_tmp, dir, mut record) = run_dir(3);
    set(&mut record, "001", InstanceState::Running);
    // The first commit is a compaction: the change is in the snapshot.
    dir.state_writer().commit(&record).expect("first commit");
    // A crash after the snapshot, before its log was made.
    std::fs::remove_file(dir.changes_path()).expect("remove log");
    assert_eq!(dir.read_state().expect("read"), record);
}

#[test]
fn a_run_that_ended_leaves_the_whole_record_in_state_json() {
    let (_tmp, dir, mut record, mut writer) = committed(3, &[("001", InstanceState::Merged)]);
    record.state = RunState::Finished;
    record.finished_at_ms = Some(9);
    writer.commit(&record).expect("last commit");
    assert!(!dir.changes_path().exists(), "log left after the run ended");
    let text = std::fs::read(dir.state_path()).expect("state.json");
    let alone: RunRecord = serde_json::from_slice(&text).expect("json");
    assert_eq!(alone, record);
}

#[test]
fn an_old_layout_run_reads_unchanged() {
    let (_tmp, dir, _) = run_dir(0);
    // `state.json` alone, as every treefarm before the change log wrote it.
    let old = serde_json::json!({
        "run_id": RUN_ID,
        "state": "interrupted",
        "coordinator_pid": 1,
        "started_at_ms": 5,
        "instances": [
            {"id": "001", "state": "merged", "attempt": 1},
            {"id": "002", "state": "running", "attempt": 2, "pid": 42}
        ]
    });
    std::fs::write(
        dir.state_path(),
        serde_json::to_vec_pretty(&old).expect("json"),
    )
    .expect("write");
    let read = dir.read_state().expect("read");
    assert_eq!(read.state, RunState::Interrupted);
    assert_eq!(read.instances.len(), 2);
    assert_eq!(read.instance("002").expect("002").pid, Some(42));
    assert_eq!(
        read.instance("001").expect("001").state,
        InstanceState::Merged
    );
}

#[test]
fn a_corrupt_line_before_the_last_is_an_error_naming_the_log() {
    let (_tmp, dir, _, _) = committed(
        3,
        &[
            ("001", InstanceState::Running),
            ("002", InstanceState::Running),
        ],
    );
    let log = String::from_utf8(std::fs::read(dir.changes_path()).expect("log")).expect("utf8");
    let mut lines: Vec<&str> = log.lines().collect();
    lines[1] = "{\"run\": oops";
    std::fs::write(dir.changes_path(), lines.join("\n") + "\n").expect("write");
    let err = dir.read_state().expect_err("corrupt");
    let shown = format!("{err:#}");
    assert!(
        shown.contains(&dir.changes_path().display().to_string()),
        "{shown}"
    );
}
