//! Crash recovery faults (issue 11): an exit recorded while the coordinator
//! was dead is that attempt's result; process groups of an interrupted
//! timeout are ended on time by `resume` before anything else starts in
//! their worktree; a half-made worktree entry left by a kill while planting
//! is finished or discarded.

mod common;

use common::{pid_alive, stderr, wait_until, CrashRepo};

fn run_dir(crash: &CrashRepo) -> std::path::PathBuf {
    let runs = crash.repo.root.join(".git/treefarm/runs");
    std::fs::read_dir(&runs)
        .expect("runs folder")
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("one run")
        .path()
}

fn starts_of(crash: &CrashRepo, id: &str) -> usize {
    crash
        .recorded("starts")
        .iter()
        .filter(|l| l.split_whitespace().next() == Some(id))
        .count()
}

/// Crashes the coordinator once the gated agent 001 runs, lets the agent end
/// with `exit 7` while nobody watches, and waits until its wrapper recorded
/// the code.
fn agent_fails_while_coordinator_dead(retries: u32) -> CrashRepo {
    let crash = CrashRepo::new(&[("001", "src/a.txt", "exit 7")], 1, &["001"]);
    if retries > 0 {
        let config = crash.repo.read("treefarm.yaml");
        let config = config.replacen("agent:\n", &format!("agent:\n  retries: {retries}\n"), 1);
        crash.repo.write("treefarm.yaml", &config);
        crash.repo.commit_all("retries");
    }
    crash.run_crashing_at("agents-running");
    wait_until("agent 001 to wait", || !crash.recorded("waiting").is_empty());
    crash.release("001");
    let exit_file = run_dir(&crash).join("instances/001/exit_code");
    wait_until("the wrapper to record the exit code", || {
        std::fs::read_to_string(&exit_file).is_ok_and(|s| s.trim() == "7")
    });
    crash
}

#[test]
fn failed_agent_is_not_run_again_when_its_exit_was_recorded_while_coordinator_dead() {
    let crash = agent_fails_while_coordinator_dead(0);
    let out = crash.resume();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(starts_of(&crash, "001"), 1, "agent ran again:\n{}", stderr(&out));
    let inst = crash.instance_json("001");
    assert_eq!(inst["state"], "failed", "{inst}");
    assert_eq!(inst["exit_code"], 7, "{inst}");
    assert!(
        !stderr(&out).contains("started attempt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exit_recorded_while_coordinator_dead_counts_as_an_attempt_for_retries() {
    let crash = agent_fails_while_coordinator_dead(1);
    let out = crash.resume();
    // Attempt 2 runs (once), fails the same way.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(starts_of(&crash, "001"), 2, "{}", stderr(&out));
    let inst = crash.instance_json("001");
    assert_eq!(inst["attempt"], 2, "{inst}");
    assert_eq!(inst["state"], "failed", "{inst}");
    let _ = pid_alive;
}
