//! The coordinator lock: one holder per repository, named when refused;
//! a dead holder's lock is taken over; racing acquirers never both win.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use treefarm::state::{Lock, LockError, StateDir};

const CHILD_ENV: &str = "TREEFARM_TEST_LOCK_CHILD";

fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn write_lock(state: &StateDir, pid: u32, start: Option<u64>, run_id: &str) {
    std::fs::create_dir_all(state.path()).expect("mkdir");
    let json =
        serde_json::json!({"pid": pid, "start_time": start, "run_id": run_id, "since_ms": 1});
    std::fs::write(state.path().join("lock"), json.to_string()).expect("write lock");
}

#[test]
fn second_acquire_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    let (lock, stale) = Lock::acquire(&state, "run-a").expect("first");
    assert!(stale.is_none());
    let err = Lock::acquire(&state, "run-b").expect_err("second");
    match &err {
        LockError::Held {
            pid, run_id, path, ..
        } => {
            assert_eq!(*pid, std::process::id());
            assert_eq!(run_id, "run-a");
            assert_eq!(path, &state.path().join("lock"));
        }
        other => panic!("expected Held, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "another treefarm (pid {}, run run-a) holds the lock",
            std::process::id()
        )),
        "{shown}"
    );
    assert!(shown.contains("hint:"), "{shown}");
    let input = err.input_error().expect("user error");
    assert!(input.hint.is_some());

    drop(lock);
    assert!(
        !state.path().join("lock").exists(),
        "drop removes the lock file"
    );
    let (_again, stale) = Lock::acquire(&state, "run-c").expect("free again");
    assert!(stale.is_none(), "a released lock is not stale");
}

#[test]
fn lock_of_a_dead_pid_is_taken_over_and_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    let pid = dead_pid();
    write_lock(&state, pid, Some(12345), "run-dead");
    let (lock, stale) = Lock::acquire(&state, "run-new").expect("take over");
    let stale = stale.expect("reported");
    assert_eq!(stale.pid, pid);
    assert_eq!(stale.run_id, "run-dead");
    assert!(stale
        .to_string()
        .contains(&format!("dead pid {pid} (run run-dead)")));
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("lock")).expect("read"))
            .expect("json");
    assert_eq!(on_disk["pid"], std::process::id());
    assert_eq!(on_disk["run_id"], "run-new");
    assert_eq!(lock.holder().run_id, "run-new");
}

#[test]
fn lock_of_a_recycled_pid_is_stale() {
    // Our own pid, but a start time that is not ours: another process.
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    let start = treefarm::procfs::start_time(std::process::id()).expect("start");
    write_lock(&state, std::process::id(), Some(start + 1), "run-old");
    let (_lock, stale) = Lock::acquire(&state, "run-new").expect("take over");
    assert_eq!(stale.expect("stale").run_id, "run-old");
}

#[test]
fn hand_written_lock_of_a_live_process_is_honoured() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = sleeper.id();
    write_lock(&state, pid, treefarm::procfs::start_time(pid), "run-live");
    let result = Lock::acquire(&state, "run-new");
    sleeper.kill().expect("kill");
    sleeper.wait().expect("wait");
    match result {
        Err(LockError::Held {
            pid: held, run_id, ..
        }) => {
            assert_eq!(held, pid);
            assert_eq!(run_id, "run-live");
        }
        other => panic!("expected Held, got {other:?}"),
    }
}

#[test]
fn corrupt_lock_without_holder_is_taken_over() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    std::fs::create_dir_all(state.path()).expect("mkdir");
    std::fs::write(state.path().join("lock"), "{\"pid\": 12").expect("garbage");
    let (lock, stale) = Lock::acquire(&state, "run-new").expect("take over");
    assert!(stale.is_none());
    assert_eq!(lock.holder().pid, std::process::id());
}

#[test]
fn racing_threads_exactly_one_wins() {
    for round in 0..20 {
        let tmp = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(tmp.path());
        if round % 2 == 1 {
            write_lock(&state, dead_pid(), None, "run-dead");
        }
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|n| {
                let state = state.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    Lock::acquire(&state, &format!("run-{n}"))
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = &winners[0].0.holder().run_id;
        for r in &results {
            if let Err(LockError::Held { run_id, .. }) = r {
                assert_eq!(run_id, winner, "losers name the winner");
            } else if let Err(e) = r {
                panic!("unexpected error {e}");
            }
        }
        if round % 2 == 1 {
            assert!(winners[0].1.is_some(), "the winner took over the dead lock");
        }
    }
}

/// Runs in a child process (selected by `CHILD_ENV`): tries the lock at the
/// state dir given in the env, reports `won`/`held`, then holds whatever it
/// got until its stdin closes.
#[test]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let state = StateDir::new(Path::new(&dir));
    let mut line = String::new();
    // Straight to the stdout fd: `println!` is captured by the test harness.
    let report = |what: &str| {
        let mut out = std::io::stdout();
        writeln!(out, "CHILD:{what}").expect("report");
        out.flush().expect("flush");
    };
    report("ready");
    std::io::stdin().read_line(&mut line).expect("wait for go");
    let result = Lock::acquire(&state, &format!("run-{}", std::process::id()));
    match &result {
        Ok(_) => report("won"),
        Err(LockError::Held { .. }) => report("held"),
        Err(e) => report(&format!("error {e}")),
    }
    line.clear();
    let _ = std::io::stdin().read_line(&mut line);
}

fn child_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read child") > 0,
            "child ended early"
        );
        // The harness may print `test child_entry ... ` on the same line.
        if let Some((_, rest)) = line.trim().split_once("CHILD:") {
            return rest.to_string();
        }
    }
}

#[test]
fn racing_processes_exactly_one_wins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = StateDir::new(tmp.path());
    write_lock(&state, dead_pid(), None, "run-dead");
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "state_lock::child_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, tmp.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")))
        .collect();
    for r in &mut readers {
        assert_eq!(child_line(r), "ready");
    }
    for c in &mut children {
        c.stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("go");
    }
    let outcomes: Vec<String> = readers.iter_mut().map(child_line).collect();
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in &mut children {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "won").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "held").count(),
        3,
        "{outcomes:?}"
    );
    assert!(
        !state.path().join("lock").exists(),
        "the winner removed the lock on exit"
    );
}
