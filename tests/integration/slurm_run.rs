//! `executor: slurm` end to end against the real one-node cluster (started
//! by `scripts/test-slurm.sh`), git as the oracle: every agent attempt is a
//! batch job running `treefarm agent-exec`, followed by one shared `squeue`
//! poller and judged by its exit file — jobs that queue behind each other
//! (`Resources`, `Priority`), a coordinator killed while jobs run and
//! resumed (same job ids, no second job), a kill between `sbatch` and the
//! journal, a timeout, Ctrl-C, a node set down under a running job, and
//! isolation inside the job.
//!
//! The tests take the cluster one at a time (`slurm_cluster::take_cluster`).

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::common::{assert_exit, spec_md, stderr, stdout, wait_until_within, TestRepo};

/// The `slurm:` section every test starts from: one CPU and a little
/// memory per job (the node has 2 CPUs, so two run at once), quick polls,
/// a short exit grace.
pub(crate) const SLURM: &str =
    "executor: slurm\nslurm: {cpus: 1, mem: 100M, poll: 1s, exit_grace: 3s}\n";

/// `count` specs, each writing its own file after `directives`.
fn farm(count: usize, directives: &str, config: &str) -> TestRepo {
    let specs: Vec<(String, String)> = (1..=count)
        .map(|n| {
            let file = format!("f{n}.txt");
            (
                format!("SPEC-{n:03}-s{n}.md"),
                spec_md(
                    &format!("s{n}"),
                    &[&file],
                    &[],
                    None,
                    &format!("{directives}\nwrite {file} spec {n}"),
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, String)> = specs.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    TestRepo::farm(&[("README.md", "x\n")], &refs, config)
}

/// A `treefarm` command in `repo` that talks to the test cluster.
fn tf(repo: &TestRepo) -> Command {
    let mut cmd = repo.treefarm();
    if let Some(conf) = std::env::var_os("SLURM_CONF") {
        cmd.env("SLURM_CONF", conf);
    }
    cmd
}

pub(crate) fn run(repo: &TestRepo, args: &[&str]) -> Output {
    tf(repo).args(args).output().expect("spawn treefarm")
}

/// The run started in the background (`--json`: its events on stdout).
fn spawn(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> Child {
    tf(repo)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn treefarm")
}

/// Every job `squeue` lists (all users, all states still listed): id,
/// state and name each.
pub(crate) fn queued_jobs() -> Vec<(u64, String, String)> {
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%T|%j"])
        .output()
        .expect("squeue");
    assert!(
        out.status.success(),
        "squeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let (id, state, name) = (f.next()?, f.next()?, f.next()?);
            Some((id.parse().ok()?, state.to_string(), name.to_string()))
        })
        .collect()
}

/// The jobs of run `run_id` (see [`queued_jobs`]).
fn jobs_of(run_id: &str) -> Vec<(u64, String, String)> {
    let prefix = format!("treefarm:{run_id}:");
    queued_jobs()
        .into_iter()
        .filter(|(_, _, name)| name.starts_with(&prefix))
        .collect()
}

/// The jobs of the run not ended yet.
fn live_jobs(run_id: &str) -> Vec<(u64, String, String)> {
    jobs_of(run_id)
        .into_iter()
        .filter(|(_, s, _)| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "REQUEUED"
            )
        })
        .collect()
}

/// The run id of the repository's only run, once its journal exists.
fn run_id_of(repo: &TestRepo) -> String {
    wait_until_within(60, "the run's journal", || !repo.run_ids().is_empty());
    repo.run_ids().pop().expect("a run")
}

/// Spec id -> its journalled job (`job` of `status --json`).
fn status_jobs(repo: &TestRepo) -> Vec<(String, Value)> {
    let out = run(repo, &["status", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    v["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| (i["id"].as_str().unwrap_or("").to_string(), i["job"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every spec merged: its file on `roadmap` (the target) says so.
fn assert_all_merged(repo: &TestRepo, count: usize) {
    for n in 1..=count {
        assert_eq!(
            repo.show("roadmap", &format!("f{n}.txt")),
            format!("spec {n}"),
            "spec {n} is not merged"
        );
    }
}

/// The `job` events of a `--json` run's stdout.
fn job_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "job")
        .collect()
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn eight_specs_queue_as_jobs_visibly_pending_and_all_merge() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(8, "sleep 2", &format!("instances: 8\n{SLURM}"));
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 0);
    assert_all_merged(&repo, 8);
    let text = stdout(&out);
    let events = job_events(&text);
    // Only two fit on the node at once: the others waited, the head of the
    // queue for `Resources`, those behind it for `Priority`.
    let reasons: BTreeSet<String> = events
        .iter()
        .filter(|e| e["state"] == "PENDING")
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect();
    assert!(
        reasons.contains("Resources"),
        "pending reasons: {reasons:?}\n{text}"
    );
    assert!(
        reasons.contains("Priority"),
        "pending reasons: {reasons:?}\n{text}"
    );
    // One job per spec, each with its id, each run.
    let ids: BTreeSet<u64> = events.iter().filter_map(|e| e["job_id"].as_u64()).collect();
    assert_eq!(ids.len(), 8, "job ids: {ids:?}");
    let summary = crate::common::json_summary(&out);
    assert_eq!(summary["slurm"]["jobs"], 8, "{summary}");
    assert_eq!(
        summary["slurm"]["calls"]["sbatch"], 9,
        "8 jobs and the storage check: {summary}"
    );
    // One batched squeue per poll, never one per job.
    assert_eq!(
        summary["slurm"]["calls"]["squeue"], summary["slurm"]["polls"],
        "{summary}"
    );
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    let states: BTreeSet<String> = jobs_of(&run_id)
        .into_iter()
        .filter(|(_, _, n)| !n.ends_with(":storage:c1"))
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(states, BTreeSet::from(["COMPLETED".to_string()]));
    // The report's spec rows name each job.
    let html = std::fs::read_to_string(repo.only_run().join("summary.html")).expect("report");
    for id in &ids {
        assert!(
            html.contains(&format!("job {id} COMPLETED")),
            "job {id} not in the report"
        );
    }
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_coordinator_killed_while_jobs_run_resumes_following_the_same_jobs() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(3, "sleep 8", &format!("instances: 3\n{SLURM}"));
    let mut child = spawn(&repo, &["run", "--json"], &[]);
    let run_id = run_id_of(&repo);
    // Two running, one pending: all three submitted and journalled.
    wait_until_within(60, "three journalled job ids", || {
        status_jobs(&repo)
            .iter()
            .filter(|(_, j)| j["id"].is_u64())
            .count()
            == 3
    });
    child.kill().expect("kill -9 the coordinator");
    let _ = child.wait();
    // The killed coordinator's Slurm calls were journalled as it went: its
    // three submissions (and the storage check's) are counted.
    let status: Value =
        serde_json::from_str(&stdout(&run(&repo, &["status", "--json"]))).expect("status json");
    assert!(
        status["slurm"]["calls"]["sbatch"].as_u64() >= Some(4),
        "{}",
        status["slurm"]
    );
    // `status` of the interrupted run shows each job as last seen.
    let text = stdout(&run(&repo, &["status"]));
    for (_, job) in status_jobs(&repo) {
        let id = job["id"].as_u64().expect("journalled id");
        assert!(
            text.contains(&format!("job {id} ")),
            "job {id} not in status:\n{text}"
        );
    }
    let before: BTreeSet<u64> = jobs_of(&run_id).into_iter().map(|(id, _, _)| id).collect();
    let journalled: BTreeSet<u64> = status_jobs(&repo)
        .iter()
        .filter_map(|(_, j)| j["id"].as_u64())
        .collect();
    let out = run(&repo, &["resume", "--json"]);
    assert_exit(&out, 0);
    assert_all_merged(&repo, 3);
    let after: BTreeSet<u64> = jobs_of(&run_id).into_iter().map(|(id, _, _)| id).collect();
    // No job was submitted again: the same ones, followed to their end.
    assert_eq!(before, after, "jobs before the kill and after the resume");
    let now: BTreeSet<u64> = status_jobs(&repo)
        .iter()
        .filter_map(|(_, j)| j["id"].as_u64())
        .collect();
    assert_eq!(journalled, now, "the job ids in status --json changed");
    assert!(
        stderr(&out).is_empty() || !stderr(&out).contains("error"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_kill_between_sbatch_and_the_journal_finds_the_job_by_name() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let (repo, run_id) = one_spec_crashed_at("sleep 3", "slurm-submitted");
    let submitted = jobs_of(&run_id);
    let agents: Vec<_> = submitted
        .iter()
        .filter(|(_, _, n)| n.ends_with(":a1"))
        .collect();
    assert_eq!(
        agents.len(),
        1,
        "one job submitted before the crash: {submitted:?}"
    );
    // The journal never learnt its id.
    let (_, job) = status_jobs(&repo).pop().expect("one instance");
    assert!(job["id"].is_null(), "the id was journalled: {job}");
    let after = resume_one_spec(&repo, &run_id);
    assert_eq!(after.len(), 1, "a second job was submitted: {after:?}");
    assert_eq!(after[0].0, agents[0].0, "{after:?}");
}

/// One spec (`directives`) run until crash point `point` fired; the repo
/// and the run id.
fn one_spec_crashed_at(directives: &str, point: &str) -> (TestRepo, String) {
    let repo = farm(1, directives, &format!("instances: 1\n{SLURM}"));
    let out = tf(&repo)
        .args(["run", "--json"])
        .env("TREEFARM_CRASH_AT", point)
        .output()
        .expect("spawn");
    assert!(
        !out.status.success(),
        "the crash point {point} did not fire"
    );
    let run_id = repo.run_ids().pop().expect("a run");
    (repo, run_id)
}

/// The run's jobs but the storage check.
fn spec_jobs_of(run_id: &str) -> Vec<(u64, String, String)> {
    jobs_of(run_id)
        .into_iter()
        .filter(|(_, _, n)| !n.ends_with(":storage:c1"))
        .collect()
}

/// `resume` of a one-spec run to its merge; the run's jobs after it (the
/// journalled job id is among them).
fn resume_one_spec(repo: &TestRepo, run_id: &str) -> Vec<(u64, String, String)> {
    let out = run(repo, &["resume", "--json"]);
    assert_exit(&out, 0);
    assert_all_merged(repo, 1);
    let after = spec_jobs_of(run_id);
    let (_, job) = status_jobs(repo).pop().expect("one instance");
    assert!(
        after
            .iter()
            .any(|(id, _, _)| job["id"].as_u64() == Some(*id)),
        "journalled {job}, in squeue {after:?}"
    );
    after
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_kill_between_the_journalled_intent_and_sbatch_submits_one_job_on_resume() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let (repo, run_id) = one_spec_crashed_at("sleep 1", "slurm-intent");
    // The journal names the job; nothing was submitted.
    let (spec, job) = status_jobs(&repo).pop().expect("one instance");
    assert_eq!(
        job["name"].as_str(),
        Some(format!("treefarm:{run_id}:{spec}:a1").as_str()),
        "the intent was not journalled: {job}"
    );
    assert!(job["id"].is_null(), "{job}");
    let submitted = spec_jobs_of(&run_id);
    assert!(
        submitted.is_empty(),
        "submitted before the crash: {submitted:?}"
    );
    let after = resume_one_spec(&repo, &run_id);
    assert_eq!(after.len(), 1, "one job, never two: {after:?}");
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_timeout_cancels_the_job() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(1, "hang", &format!("instances: 1\n{SLURM}"));
    repo.write(
        "treefarm.yaml",
        &repo
            .read("treefarm.yaml")
            .replace("timeout: 2m", "timeout: 4s"),
    );
    repo.commit_all("short timeout");
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    let summary = crate::common::json_summary(&out);
    assert_eq!(
        summary["timed_out"],
        serde_json::json!(["001"]),
        "{summary}"
    );
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    assert!(live_jobs(&run_id).is_empty(), "{:?}", jobs_of(&run_id));
    let states: Vec<String> = jobs_of(&run_id)
        .into_iter()
        .filter(|(_, _, n)| n.ends_with(":a1"))
        .map(|(_, s, _)| s)
        .collect();
    // `scancel --signal=TERM` ended the hanging agent (its job FAILED with
    // the agent's 143), or the cancel after the grace did: either way long
    // before its `--time`.
    assert!(
        states == ["FAILED"] || states == ["CANCELLED"],
        "the job was not ended by treefarm: {states:?}"
    );
    assert!(
        summary["slurm"]["calls"]["scancel"].as_u64() >= Some(1),
        "{summary}"
    );
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn ctrl_c_leaves_no_job_of_the_run_in_the_queue() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(4, "hang", &format!("instances: 4\n{SLURM}"));
    let child = spawn(&repo, &["run", "--json"], &[]);
    let run_id = run_id_of(&repo);
    wait_until_within(60, "two running jobs", || {
        live_jobs(&run_id)
            .iter()
            .filter(|(_, s, _)| s == "RUNNING")
            .count()
            == 2
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    // An interrupted run exits 1 (resumable).
    assert_exit(&out, 1);
    wait_until_within(60, "no job of the run left", || {
        live_jobs(&run_id).is_empty()
    });
    let summary = crate::common::json_summary(&out);
    // Pending and running alike, in one `scancel` call (the storage check
    // needs none).
    assert_eq!(summary["slurm"]["calls"]["scancel"], 1, "{summary}");
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn isolation_inside_the_job_blocks_the_escape_agent() {
    if !crate::common::landlock_available() {
        eprintln!("SKIPPED: the kernel has no Landlock, nothing to confine with");
        return;
    }
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(1, "", &format!("instances: 1\n{SLURM}"));
    let outside = repo.tmp.path().join("outside.txt");
    let spec = spec_md(
        "s1",
        &["f1.txt"],
        &[],
        None,
        &format!("write f1.txt spec 1\nwrite {} escaped", outside.display()),
    );
    repo.write("specs/SPEC-001-s1.md", &spec);
    repo.commit_all("escape");
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    assert!(
        !outside.exists(),
        "the agent escaped to `{}`",
        outside.display()
    );
    let summary = crate::common::json_summary(&out);
    let reason = summary["reasons"]["001"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("denied by isolation"), "{reason}");
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_node_set_down_under_a_running_job_fails_it_as_node_fail_then_it_is_retried_and_merges() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(1, "sleep 6", &format!("instances: 1\n{SLURM}"));
    repo.write(
        "treefarm.yaml",
        &repo
            .read("treefarm.yaml")
            .replace("kill_grace: 1s", "kill_grace: 1s\n  retries: 1"),
    );
    repo.commit_all("one retry");
    let (child, run_id, up) = run_then_down_the_node(&repo);
    // The coordinator sees the job lost with its node and submits the
    // retry, which waits for a node; then the node comes back.
    wait_until_within(60, "the retry's job", || {
        status_jobs(&repo)
            .iter()
            .any(|(_, j)| j["name"].as_str().is_some_and(|n| n.ends_with(":a2")))
    });
    drop(up);
    let out = child.wait_with_output().expect("wait");
    assert_exit(&out, 0);
    assert_all_merged(&repo, 1);
    let text = stdout(&out);
    let events = job_events(&text);
    // The first attempt's end is Slurm's word for it.
    assert!(
        events
            .iter()
            .any(|e| e["state"] == "NODE_FAIL"
                && e["name"].as_str().is_some_and(|n| n.ends_with(":a1"))),
        "no NODE_FAIL for the first job:\n{text}"
    );
    let names: BTreeSet<String> = jobs_of(&run_id).into_iter().map(|(_, _, n)| n).collect();
    assert!(
        names.iter().any(|n| n.ends_with(":a2")),
        "the spec was not retried as a second job: {names:?}"
    );
}

/// Starts `run --json` in `repo`, waits for its job to run, then sets the
/// node down under it: the coordinator, the run id, and the guard that
/// brings the node back.
fn run_then_down_the_node(repo: &TestRepo) -> (Child, String, NodeUp) {
    let child = spawn(repo, &["run", "--json"], &[]);
    let run_id = run_id_of(repo);
    wait_until_within(60, "the job running", || {
        live_jobs(&run_id).iter().any(|(_, s, _)| s == "RUNNING")
    });
    let node = node_name();
    let up = NodeUp(node.clone());
    scontrol(&[
        "update",
        &format!("nodename={node}"),
        "state=down",
        "reason=test",
    ]);
    (child, run_id, up)
}

/// The cluster's one node.
fn node_name() -> String {
    let out = Command::new("sinfo")
        .args(["--noheader", "--format=%N"])
        .output()
        .expect("sinfo");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("a node")
        .trim()
        .to_string()
}

fn scontrol(args: &[&str]) {
    let out = Command::new("scontrol")
        .args(args)
        .output()
        .expect("scontrol");
    assert!(
        out.status.success(),
        "scontrol {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Brings the node back when dropped (even when the test fails), and waits
/// until it takes jobs again.
struct NodeUp(String);

impl Drop for NodeUp {
    fn drop(&mut self) {
        let node = format!("nodename={}", self.0);
        let _ = Command::new("scontrol")
            .args(["update", &node, "state=resume"])
            .output();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let out = Command::new("sinfo")
                .args(["--noheader", "--format=%T"])
                .output();
            if out.is_ok_and(|o| {
                let s = String::from_utf8_lossy(&o.stdout);
                s.lines()
                    .all(|l| matches!(l.trim(), "idle" | "mixed" | "allocated"))
            }) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_conflict_handed_back_to_its_agent_is_resolved_in_a_job_and_merged() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // Both specs also write `shared.txt`: the second to merge conflicts and
    // its agent, asked again (`TREEFARM_MODE=resolve`), resolves it.
    let wrapper = "if [ \"$TREEFARM_MODE\" = resolve ]; then\n\
           printf 'resolved\\n' > shared.txt && git add shared.txt && git commit -q --no-edit || exit 3\n\
           exit 0\n\
         fi";
    let specs: Vec<(String, String)> = (1..=2)
        .map(|n| {
            (
                format!("SPEC-{n:03}-s{n}.md"),
                spec_md(
                    &format!("s{n}"),
                    &[&format!("f{n}.txt")],
                    &[],
                    None,
                    &format!(
                        "write f{n}.txt spec {n}\nwrite shared.txt from {n}\ncommit \"work {n}\""
                    ),
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, String)> = specs.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let repo = TestRepo::farm_with_wrapper(
        &[("README.md", "x\n"), ("shared.txt", "base\n")],
        &refs,
        wrapper,
        &format!("instances: 2\nmerge:\n  on_conflict: agent\n{SLURM}"),
    );
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 0);
    assert_all_merged(&repo, 2);
    assert_eq!(repo.show("roadmap", "shared.txt").trim(), "resolved");
    let summary = crate::common::json_summary(&out);
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    let resolves: Vec<String> = jobs_of(&run_id)
        .into_iter()
        .map(|(_, _, n)| n)
        .filter(|n| n.rsplit(':').next().is_some_and(|k| k.starts_with('r')))
        .collect();
    assert_eq!(resolves.len(), 1, "one hand-back job: {resolves:?}");
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn with_requeue_a_job_slurm_requeues_is_followed_not_submitted_again() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let config = SLURM.replace("exit_grace: 3s}", "exit_grace: 3s, requeue: true}");
    let repo = farm(1, "sleep 6", &format!("instances: 1\n{config}"));
    let (child, run_id, up) = run_then_down_the_node(&repo);
    wait_until_within(60, "Slurm to requeue the job", || {
        live_jobs(&run_id)
            .iter()
            .any(|(_, s, n)| n.ends_with(":a1") && matches!(s.as_str(), "PENDING" | "REQUEUED"))
    });
    drop(up);
    // Slurm holds a requeued job back for two minutes (`BeginTime`); the
    // test lets it start at once, as an administrator could.
    let (id, _, _) = live_jobs(&run_id).pop().expect("the requeued job");
    scontrol(&["update", &format!("jobid={id}"), "starttime=now"]);
    let out = child.wait_with_output().expect("wait");
    assert_exit(&out, 0);
    assert_all_merged(&repo, 1);
    let names: Vec<String> = jobs_of(&run_id)
        .into_iter()
        .map(|(_, _, n)| n)
        .filter(|n| !n.ends_with(":storage:c1"))
        .collect();
    assert_eq!(names.len(), 1, "a second job was submitted: {names:?}");
}

/// A one-spec farm with no retry, the spec's front matter asking
/// `spec_slurm` besides the run's `slurm:` (the storage check, which runs
/// with the run's settings only, is not held up by it).
fn one_spec_no_retry(spec_slurm: &str) -> TestRepo {
    let repo = farm(1, "", &format!("instances: 1\n{SLURM}"));
    let spec = repo.read("specs/SPEC-001-s1.md").replacen(
        "---\n",
        &format!("---\nslurm: {spec_slurm}\n"),
        1,
    );
    repo.write("specs/SPEC-001-s1.md", &spec);
    repo.write(
        "treefarm.yaml",
        &repo
            .read("treefarm.yaml")
            .replace("kill_grace: 1s", "kill_grace: 1s\n  retries: 0"),
    );
    repo.commit_all("no retry");
    repo
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_job_pending_for_a_reason_that_never_clears_is_cancelled_and_the_spec_fails_with_the_fix() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // Three tasks of one CPU on a two-CPU node: `sbatch` accepts it (the
    // start-up check reads `cpus`, not `--ntasks`) and Slurm leaves it
    // pending with `PartitionConfig` for ever.
    let repo = one_spec_no_retry("{extra_args: [\"--ntasks=3\"]}");
    // Retries allowed: a job that can never start is still not submitted
    // again (the same request would wait for ever again).
    repo.write(
        "treefarm.yaml",
        &repo
            .read("treefarm.yaml")
            .replace("retries: 0", "retries: 2"),
    );
    repo.commit_all("retries allowed");
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    let summary = crate::common::json_summary(&out);
    assert_eq!(summary["failed"], serde_json::json!(["001"]), "{summary}");
    let reason = summary["reasons"]["001"].as_str().unwrap_or("").to_string();
    assert!(
        reason.contains("can never start (PartitionConfig)")
            && reason.contains("lower `slurm.cpus`"),
        "{reason}"
    );
    assert_eq!(summary["slurm"]["jobs"], 1, "submitted once: {summary}");
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    assert!(live_jobs(&run_id).is_empty(), "{:?}", jobs_of(&run_id));
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_job_pending_longer_than_max_pending_is_cancelled_and_the_spec_fails() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // Held back for an hour (`BeginTime`, a reason that clears by itself).
    let repo = one_spec_no_retry("{extra_args: [\"--begin=now+1hour\"]}");
    repo.write(
        "treefarm.yaml",
        &repo
            .read("treefarm.yaml")
            .replace("exit_grace: 3s}", "exit_grace: 3s, max_pending: 2s}"),
    );
    repo.commit_all("max_pending");
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    let summary = crate::common::json_summary(&out);
    let reason = summary["reasons"]["001"].as_str().unwrap_or("").to_string();
    assert!(
        reason.contains("was pending for longer than slurm.max_pending (2s): BeginTime"),
        "{reason}"
    );
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    assert!(live_jobs(&run_id).is_empty(), "{:?}", jobs_of(&run_id));
}

/// [`SLURM`] with the merge queue's gates run as jobs too.
const SLURM_GATES: &str =
    "executor: slurm\nslurm: {cpus: 1, mem: 100M, poll: 1s, exit_grace: 3s, gates: true}\n";

/// The `merge:` section of a test: `gate` as a YAML single-quoted string.
fn merge_gate(gate: &str, more: &str) -> String {
    format!("merge:\n  gate: '{}'\n{more}", gate.replace('\'', "''"))
}

/// The events of a `--json` run's stdout named `name`.
fn events_named(text: &str, name: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

/// The gate jobs of run `run_id` that `squeue` lists.
fn gate_jobs_of(run_id: &str) -> Vec<(u64, String, String)> {
    let prefix = format!("treefarm:{run_id}:gate:");
    jobs_of(run_id)
        .into_iter()
        .filter(|(_, _, n)| n.starts_with(&prefix))
        .collect()
}

/// The files on the target branch.
fn target_files(repo: &TestRepo) -> BTreeSet<String> {
    repo.git(&["ls-tree", "--name-only", "roadmap"])
        .lines()
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn gates_as_jobs_pass_one_branch_and_refuse_the_other() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // The gate passes only inside a Slurm job, and refuses spec 2's file.
    let gate = r#"test -n "$SLURM_JOB_ID" && test ! -e f2.txt"#;
    let repo = farm(
        2,
        "sleep 1",
        &format!("instances: 2\n{SLURM_GATES}{}", merge_gate(gate, "")),
    );
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    let files = target_files(&repo);
    assert!(files.contains("f1.txt"), "spec 1 not merged: {files:?}");
    assert!(!files.contains("f2.txt"), "spec 2 merged: {files:?}");
    assert_eq!(repo.show("roadmap", "f1.txt"), "spec 1");
    let text = stdout(&out);
    let gates = events_named(&text, "gate_started").len();
    assert!(
        !events_named(&text, "gate_passed").is_empty()
            && !events_named(&text, "gate_failed").is_empty(),
        "a gate passed and one failed:\n{text}"
    );
    assert!(
        events_named(&text, "gate_could_not_run").is_empty(),
        "{text}"
    );
    // Each gate run was one job, counted with the agents' and the check's.
    let summary = crate::common::json_summary(&out);
    assert_eq!(
        summary["slurm"]["calls"]["sbatch"].as_u64(),
        Some(2 + 1 + gates as u64),
        "2 agents, the storage check and {gates} gate job(s): {summary}"
    );
    // One batched squeue per poll, and one at the start that looks for a
    // killed coordinator's gate jobs.
    assert_eq!(
        summary["slurm"]["calls"]["squeue"].as_u64(),
        summary["slurm"]["polls"].as_u64().map(|p| p + 1),
        "{summary}"
    );
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    let jobs = gate_jobs_of(&run_id);
    assert_eq!(jobs.len(), gates, "gate jobs in squeue: {jobs:?}");
    assert!(
        jobs.iter()
            .all(|(_, s, _)| s == "COMPLETED" || s == "FAILED"),
        "{jobs:?}"
    );
    assert!(live_jobs(&run_id).is_empty(), "{:?}", live_jobs(&run_id));
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_gate_job_the_queue_no_longer_needs_is_cancelled() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // Spec 1 ends first; its batch's gate fails after a while. Spec 2 ends
    // meanwhile and is stacked on it (two gate jobs): its gate would run
    // for ten minutes, but once spec 1's gate failed its result is no
    // longer needed. Spec 2 alone then passes.
    let gate = "if test -e f2.txt; then test -e f1.txt && sleep 600; exit 0; fi; \
                sleep 8; test ! -e f1.txt";
    let specs = [
        (
            "SPEC-001-s1.md",
            spec_md("s1", &["f1.txt"], &[], None, "write f1.txt spec 1"),
        ),
        (
            "SPEC-002-s2.md",
            spec_md("s2", &["f2.txt"], &[], None, "sleep 4\nwrite f2.txt spec 2"),
        ),
    ];
    let refs: Vec<(&str, String)> = specs.iter().map(|(n, s)| (*n, s.clone())).collect();
    let repo = TestRepo::farm(
        &[("README.md", "x\n")],
        &refs,
        &format!(
            "instances: 2\n{SLURM_GATES}{}",
            merge_gate(gate, "  gate_jobs: 2\n  gate_timeout: 3m\n")
        ),
    );
    let out = run(&repo, &["run", "--json"]);
    assert_exit(&out, 1);
    let files = target_files(&repo);
    assert!(files.contains("f2.txt"), "spec 2 not merged: {files:?}");
    assert!(!files.contains("f1.txt"), "spec 1 merged: {files:?}");
    let summary = crate::common::json_summary(&out);
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    let jobs = gate_jobs_of(&run_id);
    assert!(
        jobs.iter().any(|(_, s, _)| s == "CANCELLED"),
        "no gate job was cancelled: {jobs:?}\n{}",
        stdout(&out)
    );
    assert!(live_jobs(&run_id).is_empty(), "{:?}", live_jobs(&run_id));
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_coordinator_killed_while_a_gate_job_runs_resumes_without_it() {
    let _cluster = crate::slurm_cluster::take_cluster();
    // The first coordinator's gate job hangs (the job gets its environment);
    // the resumed one's passes.
    let gate = r#"sleep "${TF_TEST_GATE_SLEEP:-0}""#;
    let repo = farm(
        2,
        "sleep 1",
        &format!("instances: 2\n{SLURM_GATES}{}", merge_gate(gate, "")),
    );
    let mut child = spawn(&repo, &["run", "--json"], &[("TF_TEST_GATE_SLEEP", "600")]);
    let run_id = run_id_of(&repo);
    wait_until_within(120, "a running gate job", || {
        gate_jobs_of(&run_id).iter().any(|(_, s, _)| s == "RUNNING")
    });
    let hung: Vec<u64> = gate_jobs_of(&run_id)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    child.kill().expect("kill -9 the coordinator");
    let _ = child.wait();
    let out = run(&repo, &["resume", "--json"]);
    assert_exit(&out, 0);
    assert_all_merged(&repo, 2);
    // The dead coordinator's gate job was cancelled, not waited for, and
    // not swept as a local orphan: Slurm says CANCELLED.
    let jobs = gate_jobs_of(&run_id);
    for id in &hung {
        let state = jobs
            .iter()
            .find(|(j, _, _)| j == id)
            .map(|(_, s, _)| s.as_str());
        assert_eq!(state, Some("CANCELLED"), "gate job {id}: {jobs:?}");
    }
    assert!(
        jobs.iter()
            .any(|(id, s, _)| !hung.contains(id) && s == "COMPLETED"),
        "the resumed queue gated again as a job: {jobs:?}"
    );
    assert!(live_jobs(&run_id).is_empty(), "{:?}", live_jobs(&run_id));
}

#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_treefarm_path_the_nodes_cannot_run_is_refused_before_anything_is_submitted() {
    use std::os::unix::fs::PermissionsExt as _;
    let _cluster = crate::slurm_cluster::take_cluster();
    // A path with nothing there, and a treefarm of another version.
    let other = tempfile::TempDir::new().expect("tempdir");
    let older = other.path().join("treefarm");
    std::fs::write(&older, "#!/bin/sh\necho treefarm 0.0.1\n").expect("write");
    std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let missing = other.path().join("bin/treefarm");
    for (path, answer) in [(&missing, "not found"), (&older, "`treefarm 0.0.1`")] {
        let repo = farm(
            1,
            "sleep 1",
            &format!(
                "executor: slurm\nslurm: {{cpus: 1, mem: 100M, exit_grace: 3s, treefarm: {}}}\n",
                path.display()
            ),
        );
        let before: BTreeSet<u64> = queued_jobs().into_iter().map(|(id, _, _)| id).collect();
        let out = run(&repo, &["run"]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "the Slurm nodes cannot run treefarm at `{}` (slurm.treefarm): `--version` there answered",
                path.display()
            )) && err.contains(answer),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "hint: install treefarm {} at that path on every node",
                env!("CARGO_PKG_VERSION")
            )),
            "{err}"
        );
        // Only the check's own job ran.
        let new: Vec<String> = queued_jobs()
            .into_iter()
            .filter(|(id, _, _)| !before.contains(id))
            .map(|(_, _, name)| name)
            .collect();
        assert!(
            new.len() == 1 && new[0].ends_with(":storage:c1"),
            "jobs submitted: {new:?}"
        );
        crate::slurm_executor::assert_nothing_created(&repo);
    }
}
