//! `resume` after the coordinator died while agents were out: a live agent
//! is re-attached and waited for (never started twice), a dead one is run
//! again in its worktree with its partial work kept, a Ctrl-C'd one is rerun;
//! `status` shows the interrupted run, its orphaned agents and the command
//! to resume; the lock is taken over from a dead coordinator and refused to
//! a second one while the first lives.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{pid_alive, stderr, stdout, wait_until, CrashRepo};

/// One spec whose agent commits part of its work, leaves the rest
/// uncommitted, then (gated) waits for the test before it exits.
fn gated_spec() -> CrashRepo {
    CrashRepo::new(
        &[(
            "001",
            "src/a.txt",
            "write src/a.txt \"001 committed by the agent\"\ncommit \"agent 001: first part\"\nappend src/a.txt \"001 left uncommitted\"",
        )],
        1,
        &["001"],
    )
}

fn starts_of(crash: &CrashRepo, id: &str) -> usize {
    crash
        .recorded("starts")
        .iter()
        .filter(|l| l.split_whitespace().next() == Some(id))
        .count()
}

fn assert_merged_nothing_lost(crash: &CrashRepo, before: &str) {
    let repo = &crash.repo;
    let text = repo.git(&["show", "roadmap:src/a.txt"]);
    assert!(text.contains("001 committed by the agent"), "{text}");
    assert!(text.contains("001 left uncommitted"), "{text}");
    assert!(
        !crash.recorded("commits").is_empty(),
        "the commit hook recorded nothing"
    );
    assert_eq!(
        crash.lost_commits(),
        Vec::<String>::new(),
        "agent commits lost"
    );
    assert_eq!(repo.git(&["for-each-ref", "refs/heads/treefarm"]), "");
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");
    assert!(
        !repo.root.join(".git/treefarm/lock").exists(),
        "lock left behind"
    );
    assert_eq!(repo.main_snapshot(), before);
    assert_eq!(
        crash.agents_alive(),
        Vec::<u32>::new(),
        "agents still running"
    );
    assert_eq!(
        crate::state_changes::journal(&crash.repo)["state"],
        "finished"
    );
}

/// Crashes the coordinator once agent 001 is running and has done its work;
/// returns the journalled pid of the agent's process group.
fn crash_with_agent_out(crash: &CrashRepo) -> u32 {
    crash.run_crashing_at("agents-running");
    wait_until("agent 001 to finish its work", || {
        !crash.recorded("waiting").is_empty()
    });
    let inst = crate::state_changes::journalled_instance(&crash.repo, "001");
    assert_eq!(inst["state"], "running", "{inst}");
    let pid = inst["pid"].as_u64().expect("journalled agent pid") as u32;
    assert!(pid_alive(pid), "the agent must outlive its coordinator");
    pid
}

#[test]
fn resume_reattaches_to_an_agent_that_outlived_its_coordinator() {
    let crash = gated_spec();
    let before = crash.repo.main_snapshot();
    let pid = crash_with_agent_out(&crash);
    let run_id = crate::state_changes::journal(&crash.repo)["run_id"]
        .as_str()
        .expect("run id")
        .to_string();

    let status = crash
        .repo
        .treefarm()
        .arg("status")
        .output()
        .expect("status");
    let text = stdout(&status);
    assert!(
        text.contains(&format!("run {run_id}  interrupted")),
        "{text}"
    );
    assert!(text.contains("running"), "per-instance state:\n{text}");
    assert!(
        text.contains(&format!("agent pid {pid} still running")),
        "{text}"
    );
    assert!(
        text.contains(&format!("treefarm resume {run_id}")),
        "{text}"
    );

    let mut resume = crash
        .repo
        .treefarm()
        .arg("resume")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn resume");
    let mut err = BufReader::new(resume.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).expect("read resume stderr");
        assert!(n > 0, "resume ended without re-attaching:\n{seen}");
        seen.push_str(&line);
        if line.contains(&format!("agent pid {pid} is still running; re-attaching")) {
            break;
        }
    }
    // Re-attached: only now may the agent end.
    crash.release("001");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read resume stderr");
    let code = resume.wait().expect("wait resume");
    assert!(code.success(), "resume failed:\n{seen}{rest}");
    assert!(
        seen.contains("took over a stale lock from dead pid"),
        "{seen}"
    );
    assert_eq!(
        starts_of(&crash, "001"),
        1,
        "a live agent must not be started again"
    );
    assert_merged_nothing_lost(&crash, &before);
}

#[test]
fn resume_reruns_an_agent_that_died_while_nobody_watched_keeping_its_commits() {
    let crash = gated_spec();
    let before = crash.repo.main_snapshot();
    let pid = crash_with_agent_out(&crash);
    // The agent's whole group dies before it could finish (no exit code).
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert!(killed.success());
    wait_until("the agent's group to die", || !pid_alive(pid));
    let partial = crash.recorded("commits");
    assert_eq!(
        partial.len(),
        1,
        "the agent committed its first part before dying"
    );

    let status = stdout(
        &crash
            .repo
            .treefarm()
            .arg("status")
            .output()
            .expect("status"),
    );
    assert!(!status.contains("still running"), "{status}");

    crash.release("001");
    let out = crash.resume();
    assert!(out.status.success(), "resume failed:\n{}", stderr(&out));
    assert!(
        stderr(&out).contains("001: agent is gone without an exit code; running it again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(starts_of(&crash, "001"), 2, "the dead agent runs again");
    assert_merged_nothing_lost(&crash, &before);
    // The rerun started from the partial work, not from scratch.
    let first = &partial[0];
    let log = crash.repo.git(&["log", "--format=%H", "roadmap"]);
    assert!(
        log.lines().any(|c| c == first),
        "partial commit {first} not on roadmap"
    );
}

#[test]
fn resume_reruns_an_instance_stopped_by_ctrl_c() {
    let crash = gated_spec();
    let before = crash.repo.main_snapshot();
    let run = crash
        .repo
        .treefarm()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    wait_until("agent 001 to finish its work", || {
        !crash.recorded("waiting").is_empty()
    });
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupt.success());
    let out = run.wait_with_output().expect("wait run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted run exits 1:\n{}",
        stderr(&out)
    );
    let run_id = crate::state_changes::journal(&crash.repo)["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(
        crate::state_changes::journal(&crash.repo)["state"],
        "interrupted"
    );
    assert!(
        stderr(&out).contains(&format!("treefarm resume {run_id}")),
        "{}",
        stderr(&out)
    );
    let status = stdout(
        &crash
            .repo
            .treefarm()
            .arg("status")
            .output()
            .expect("status"),
    );
    assert!(
        status.contains("interrupted") && status.contains(&format!("treefarm resume {run_id}")),
        "{status}"
    );

    crash.release("001");
    let out = crash.resume();
    assert!(out.status.success(), "resume failed:\n{}", stderr(&out));
    assert_eq!(starts_of(&crash, "001"), 2, "the stopped agent runs again");
    assert_merged_nothing_lost(&crash, &before);
}

#[test]
fn resume_is_refused_while_the_coordinator_lives_naming_pid_and_run() {
    let crash = gated_spec();
    let mut run = crash
        .repo
        .treefarm()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    wait_until("agent 001 to finish its work", || {
        !crash.recorded("waiting").is_empty()
    });
    let run_id = crate::state_changes::journal(&crash.repo)["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    for args in [vec!["resume", run_id.as_str()], vec!["resume"]] {
        let out = crash.repo.treefarm().args(&args).output().expect("resume");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("pid {}", run.id())),
            "{args:?} must name the holder's pid: {err}"
        );
        assert!(
            err.contains(&run_id),
            "{args:?} must name the holder's run: {err}"
        );
    }
    crash.release("001");
    let status = run.wait().expect("wait run");
    assert!(status.success(), "the live run must finish undisturbed");
    assert_eq!(starts_of(&crash, "001"), 1);
}

#[test]
fn resume_after_a_crash_before_the_first_journal_write_cleans_the_lock() {
    let crash = gated_spec();
    crash.release("001");
    crash.run_crashing_at("state.tmp_written");
    assert!(crash.repo.root.join(".git/treefarm/lock").exists());
    let out = crash.resume();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("took over a stale lock from dead pid"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no unfinished run to resume"),
        "{}",
        stderr(&out)
    );
    assert!(!crash.repo.root.join(".git/treefarm/lock").exists());
    // Nothing was started, so a fresh run is not blocked by leftovers.
    assert_eq!(crash.repo.git(&["for-each-ref", "refs/heads/treefarm"]), "");
    let run = crash.repo.treefarm().arg("run").output().expect("run");
    assert!(run.status.success(), "{}", stderr(&run));
}
