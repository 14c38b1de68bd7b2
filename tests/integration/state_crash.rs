//! Crash safety: a `kill -9` at a named phase (`TREEFARM_CRASH_AT`) and a
//! full disk (`TREEFARM_INJECT_WRITE_ERROR`) never damage the journal. Each
//! case runs in a child process (this test binary re-executed), since both
//! hooks are read once per process.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use treefarm::state::{crash_point, InstanceRecord, InstanceState, RunRecord, RunState, StateDir};

const MODE_ENV: &str = "TREEFARM_TEST_CRASH_MODE";
const DIR_ENV: &str = "TREEFARM_TEST_CRASH_DIR";
const RUN_ID: &str = "20260101-000000-0000";

fn record(state: InstanceState) -> RunRecord {
    RunRecord {
        run_id: RUN_ID.into(),
        state: RunState::Running,
        coordinator_pid: std::process::id(),
        started_at_ms: 1,
        instances: vec![InstanceRecord {
            id: "020".into(),
            state,
            ..InstanceRecord::default()
        }],
        ..RunRecord::default()
    }
}

/// The child side, selected by `MODE_ENV`; a no-op in a normal test run.
#[test]
fn child_entry() {
    let (Ok(mode), Ok(dir)) = (std::env::var(MODE_ENV), std::env::var(DIR_ENV)) else {
        return;
    };
    let dir = Path::new(&dir);
    let run = StateDir::new(dir).open_run(RUN_ID).expect("open run");
    match mode.as_str() {
        "phase" => {
            std::fs::write(dir.join("before"), "").expect("marker");
            crash_point("test.phase");
            std::fs::write(dir.join("after"), "").expect("marker");
        }
        "write_state" => {
            run.write_state(&record(InstanceState::Merged))
                .expect("write state");
            std::fs::write(dir.join("after"), "").expect("marker");
        }
        "inject" => {
            let err = run
                .write_state(&record(InstanceState::Merged))
                .expect_err("injected");
            std::fs::write(dir.join("error"), format!("{:#}", anyhow::Error::from(err)))
                .expect("report");
        }
        other => panic!("unknown mode {other}"),
    }
}

fn run_child(dir: &Path, mode: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "state_crash::child_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE_ENV, mode)
    .env(DIR_ENV, dir)
    .env_remove("TREEFARM_CRASH_AT")
    .env_remove("TREEFARM_INJECT_WRITE_ERROR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run child")
}

fn prepared() -> (tempfile::TempDir, treefarm::state::RunDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = StateDir::new(tmp.path())
        .create_run(RUN_ID)
        .expect("create run");
    run.write_state(&record(InstanceState::Running))
        .expect("initial state");
    (tmp, run)
}

#[test]
fn crash_point_kills_the_process_with_sigkill() {
    let (tmp, _run) = prepared();
    let out = run_child(tmp.path(), "phase", &[("TREEFARM_CRASH_AT", "test.phase")]);
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert!(tmp.path().join("before").exists());
    assert!(
        !tmp.path().join("after").exists(),
        "nothing runs after the crash point"
    );
}

#[test]
fn crash_point_with_another_name_does_nothing() {
    let (tmp, _run) = prepared();
    let out = run_child(tmp.path(), "phase", &[("TREEFARM_CRASH_AT", "other.phase")]);
    assert!(out.status.success(), "{out:?}");
    assert!(tmp.path().join("after").exists());
}

#[test]
fn kill_before_rename_keeps_the_previous_state() {
    let (tmp, run) = prepared();
    let out = run_child(
        tmp.path(),
        "write_state",
        &[("TREEFARM_CRASH_AT", "state.tmp_written")],
    );
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let rec = run.read_state().expect("previous state readable");
    assert_eq!(rec.instances[0].state, InstanceState::Running);
}

#[test]
fn kill_after_rename_keeps_the_new_state() {
    let (tmp, run) = prepared();
    let out = run_child(
        tmp.path(),
        "write_state",
        &[("TREEFARM_CRASH_AT", "state.renamed")],
    );
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let rec = run.read_state().expect("new state readable");
    assert_eq!(rec.instances[0].state, InstanceState::Merged);
    assert!(!tmp.path().join("after").exists());
}

#[test]
fn disk_full_while_writing_state_keeps_the_previous_state() {
    let (tmp, run) = prepared();
    let before = std::fs::read(run.path().join("state.json")).expect("read");
    let out = run_child(
        tmp.path(),
        "inject",
        &[("TREEFARM_INJECT_WRITE_ERROR", "state")],
    );
    assert!(out.status.success(), "{out:?}");
    let shown = std::fs::read_to_string(tmp.path().join("error")).expect("error report");
    let tmp_path = run.path().join("state.json.tmp");
    assert!(
        shown.contains(&format!(
            "failed to write `{}`: No space left on device",
            run.path().join("state.json").display()
        )),
        "{shown}"
    );
    assert!(shown.contains("\nhint: free some space"), "{shown}");
    assert_eq!(
        std::fs::read(run.path().join("state.json")).expect("read"),
        before,
        "previous state intact"
    );
    assert!(!tmp_path.exists(), "tmp removed");
    assert_eq!(
        run.read_state().expect("readable").instances[0].state,
        InstanceState::Running
    );
}
