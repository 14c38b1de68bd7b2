//! Every gate takes one path — the merge queue's: its own process group,
//! `merge.gate_timeout`, stopped by the first Ctrl-C — also with
//! `merge.batch: 1` and in `treefarm merge --gate`; and a gate that cannot
//! run at all is no verdict on any branch: the queue stops, nothing is
//! refused or merged, and `resume` gates the branches again once the cause
//! is fixed. Real `git` is the oracle.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{json_events, json_summary, stderr, summary_ids, TestRepo};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The gates write their pid to `~/gate-state`, which they may write under
/// isolation because it is named in `isolation.allow_write`.
const GATE_STATE: &str = "isolation:\n  allow_write: [~/gate-state]\n";

/// `~/gate-state/gate.pid`, its folder created.
fn pid_path(repo: &TestRepo) -> PathBuf {
    let dir = repo.home.join("gate-state");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("gate.pid")
}

/// Specs 010 and 020, each adding its own file.
fn two_spec_farm(extra_config: &str) -> TestRepo {
    crate::merge_gate::alpha_beta_farm(2, &format!("{GATE_STATE}{extra_config}"))
}

/// A treefarm command in the background, its output in files.
struct Background {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    fn start(repo: &TestRepo, args: &[&str]) -> Background {
        let out = repo.tmp.path().join("bg.out");
        let err = repo.tmp.path().join("bg.err");
        let child = repo
            .treefarm()
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .expect("start treefarm");
        Background { child, out, err }
    }

    /// Waits up to `secs` for the exit; kills it (and fails) past that.
    fn wait(mut self, secs: u64) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (
                    status.code().unwrap_or(-1),
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default(),
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "treefarm did not exit within {secs}s; stderr:\n{}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pid a gate wrote to `path` once it started (waits for the write).
fn gate_pid(path: &Path) -> i32 {
    let mut pid = None;
    common::wait_until_within(60, "the gate to start", || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        pid.is_some()
    });
    pid.expect("waited for it")
}

fn alive(pid: i32) -> bool {
    !common::pid_dead(pid as u32)
}

/// Ctrl-C four seconds into a `sleep 40` gate stops the run within a few
/// seconds, kills the gate's process group and merges nothing.
fn ctrl_c_during_a_sleeping_gate(repo: &TestRepo, args: &[&str]) {
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let pid_file = pid_path(repo);
    let gate = format!("echo $$ > {}; sleep 40", pid_file.display());
    let mut args = args.to_vec();
    args.extend(["--gate", &gate]);
    let run = Background::start(repo, &args);
    let pid = gate_pid(&pid_file);
    assert!(alive(pid));
    let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid))).expect("the gate's group");
    assert_eq!(pgid, Pid::from_raw(pid), "the gate leads its own group");
    // With the stagger, 020 may not be planted yet when 010's gate starts
    // (`merge.batch: 1` gates each branch as it finishes): the signal comes
    // once both branches exist, so the run has both to keep.
    common::wait_until_within(60, "both branches to be planted", || {
        repo.treefarm_branches().len() == 2
    });
    kill(Pid::from_raw(run.child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let signalled = Instant::now();
    let (code, _out, err) = run.wait(20);
    let took = signalled.elapsed();
    eprintln!("Ctrl-C to exit: {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "Ctrl-C took {took:?} to stop the gate"
    );
    assert_ne!(
        code, 0,
        "an interrupted merge is no success; stderr:\n{err}"
    );
    assert!(!alive(pid), "the gate outlived the run");
    // git: the target did not move, the branches are kept.
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), roadmap_before);
    assert_eq!(repo.treefarm_branches(), ["treefarm/010", "treefarm/020"]);
    // The branch under the gate is still `succeeded` (the gate is run
    // again by `resume`); nothing was merged or refused.
    assert_eq!(repo.instance("010")["state"], "succeeded", "{err}");
    for id in ["010", "020"] {
        let state = repo.instance(id)["state"].clone();
        assert!(state != "merged" && state != "refused", "{id} {state}");
    }
}

/// Regression: with `merge.batch: 1` the gate ran through `merge.rs` with
/// no process group: Ctrl-C four seconds into `sleep 40` waited 38 s, then
/// merged the branch anyway.
#[test]
fn sigint_during_a_sleep_40_gate_with_merge_batch_1_stops_within_seconds_and_merges_nothing() {
    let repo = two_spec_farm("merge:\n  batch: 1\n");
    ctrl_c_during_a_sleeping_gate(&repo, &["run"]);
}

/// The same for `treefarm merge --gate` after `run --no-merge`.
#[test]
fn sigint_during_a_sleep_40_gate_of_treefarm_merge_stops_within_seconds_and_merges_nothing() {
    let repo = two_spec_farm("merge:\n  batch: 1\n");
    let out = repo.tf(&["run", "--no-merge"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    ctrl_c_during_a_sleeping_gate(&repo, &["merge"]);
    // And the merge can be done again, to the end.
    let out = repo.tf(&["merge", "--json", "--gate", "true"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(repo.show("roadmap", "a.txt"), "alpha");
    assert_eq!(repo.show("roadmap", "b.txt"), "beta");
}

#[test]
fn a_gate_past_merge_gate_timeout_is_killed_and_refuses_the_branch() {
    let repo = two_spec_farm("merge:\n  batch: 1\n  gate_timeout: 1s\n");
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let pid_file = pid_path(&repo);
    // Only 010's gate hangs.
    let gate = format!(
        "if [ \"$TREEFARM_SPEC_IDS\" = 010 ]; then echo $$ > {}; sleep 60; fi",
        pid_file.display()
    );
    let begun = Instant::now();
    let out = repo.tf(&["run", "--json", "--gate", &gate]);
    assert!(
        begun.elapsed() < Duration::from_secs(30),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "refused"), ["010"]);
    assert_eq!(summary_ids(&summary, "merged"), ["020"]);
    let reason = repo.instance("010")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("timed out after 1s"), "{reason}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the timed-out gate is still running");
    // git: only 020 landed.
    assert!(repo.is_ancestor(&roadmap_before, "roadmap"));
    assert_eq!(repo.show("roadmap", "b.txt"), "beta");
    assert!(
        repo.git_cmd(&["cat-file", "-e", "roadmap:a.txt"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
}

/// Regression: a gate whose worktree could not be made (here the gate pool
/// folder is a file) counted as a failed gate: the queue bisected and
/// refused the first branch it tested, although no branch was at fault.
#[test]
fn a_gate_that_could_not_run_refuses_nothing_and_resume_gates_again() {
    // 010 commits only once 020 has: both are done when the first gate
    // would run (with the stagger 020 could otherwise still be pending when
    // the queue stops, and rightly never start).
    let specs: Vec<(String, String)> = [
        ("010", "alpha", "a", "wait-event committed 020\n"),
        ("020", "beta", "b", ""),
    ]
    .iter()
    .enumerate()
    .map(|(n, (id, word, file, wait))| {
        let spec = common::spec_md(
            &format!("Add {word}"),
            &[&format!("{file}.txt")],
            &[],
            Some(10 * (n as i64 + 1)),
            &format!("write {file}.txt {word}\n{wait}commit \"{word}\""),
        );
        (format!("SPEC-{id}-{file}.md"), spec)
    })
    .collect();
    let specs: Vec<(&str, String)> = specs.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let repo = TestRepo::farm(&[("README.md", "readme\n")], &specs, GATE_STATE);
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let pool = repo.root.join(".git/treefarm/gates");
    std::fs::create_dir_all(pool.parent().unwrap()).unwrap();
    std::fs::write(&pool, "not a folder\n").unwrap();

    let out = repo.tf(&["run", "--json", "--gate", "true"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for never in ["gate_failed", "bisect", "refused", "merged"] {
        assert!(!kinds.contains(&never), "{never} in {kinds:?}");
    }
    let broken = events
        .iter()
        .find(|e| e["event"] == "gate_could_not_run")
        .unwrap_or_else(|| panic!("no gate_could_not_run in {kinds:?}"));
    let cause = broken["cause"].as_str().unwrap();
    assert!(cause.contains(".git/treefarm/gates"), "{cause}");
    assert!(
        broken["hint"].as_str().unwrap().contains("treefarm resume"),
        "{broken}"
    );
    let summary = json_summary(&out);
    assert_eq!(summary["state"], "interrupted");
    assert_eq!(summary_ids(&summary, "succeeded"), ["010", "020"]);
    for id in ["010", "020"] {
        let reason = summary["reasons"][id].as_str().unwrap_or_default();
        assert!(reason.contains("could not run"), "{summary}");
    }
    for id in ["010", "020"] {
        let inst = repo.instance(id);
        assert_eq!(inst["state"], "succeeded");
        let reason = inst["reason"].as_str().unwrap();
        assert!(reason.contains("could not run"), "{reason}");
    }
    // `status` shows the cause too.
    let status = repo.tf(&["status"]);
    assert!(
        common::stdout(&status).contains("could not run"),
        "{}",
        common::stdout(&status)
    );
    // The report too.
    let html = repo.tmp.path().join("report.html");
    let report = repo.tf(&["report", "--html", html.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("could not run"), "report without the cause");
    // git: nothing merged, nothing refused, both branches kept.
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), roadmap_before);
    assert_eq!(repo.treefarm_branches(), ["treefarm/010", "treefarm/020"]);

    // Fixed: `resume` gates them again, and both merge.
    std::fs::remove_file(&pool).unwrap();
    let out = repo.tf(&["resume", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["010", "020"]);
    assert_eq!(repo.show("roadmap", "a.txt"), "alpha");
    assert_eq!(repo.show("roadmap", "b.txt"), "beta");
    assert!(repo.is_ancestor(&roadmap_before, "roadmap"));
    for id in ["010", "020"] {
        assert!(
            repo.instance(id)["reason"].is_null(),
            "{}",
            repo.instance(id)
        );
    }
}
