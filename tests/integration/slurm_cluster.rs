//! The Slurm vocabulary (`treefarm::slurm`) against a real one-node Slurm
//! cluster: submit and find a job, pending reasons as the controller gives
//! them, an impossible request refused before `sbatch`, one `scancel` for
//! many jobs, a node set down and resumed. No fake `sbatch`: the real
//! client commands talk to the real slurmctld and slurmd.
//!
//! Ignored by default (they need the cluster); `scripts/test-slurm.sh`
//! starts it with `scripts/slurm-cluster.sh`, runs them with `--ignored` and
//! stops it. They take the cluster one at a time (one test fills the node,
//! another sets it down), and every job a test submits is cancelled when
//! the test ends, passed or not.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use treefarm::slurm::{
    classify, Attempt, Capacity, JobId, JobKind, JobName, JobState, MemSize, Pending, PollInterval,
    QueueSnapshot, Refusal, Request, Slurm, SlurmConfig, SlurmError,
};

/// One test on the cluster at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

pub(crate) fn take_cluster() -> MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the controller gets to reach a state the test waits for: a
/// scheduling pass on an idle one-node cluster takes well under a second.
const WAIT: Duration = Duration::from_secs(30);

/// A test's jobs, its directory and its run id (unique to this process and
/// test, so leftovers of an earlier run never match its names).
struct Bench {
    dir: TempDir,
    run: String,
    slurm: Slurm,
    submitted: Vec<JobId>,
    _cluster: MutexGuard<'static, ()>,
}

impl Bench {
    fn new(test: &str) -> Bench {
        let cluster = take_cluster();
        Bench {
            dir: TempDir::new().expect("tempdir"),
            run: format!("t{}-{test}", std::process::id()),
            slurm: Slurm::new(),
            submitted: Vec::new(),
            _cluster: cluster,
        }
    }

    fn name(&self, spec: &str) -> JobName {
        JobName::new(&self.run, spec, JobKind::Attempt, 1)
    }

    /// A job script for `spec` running `body` (sh).
    fn script(&self, spec: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{spec}.sh"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write job script");
        let mut perms = std::fs::metadata(&path).expect("script").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod job script");
        path
    }

    fn log(&self, spec: &str) -> PathBuf {
        self.dir.path().join(format!("{spec}.log"))
    }

    /// Submits `spec` running `body` with `config`, through the edge.
    async fn submit(&mut self, spec: &str, body: &str, config: &SlurmConfig) -> JobId {
        self.try_submit(spec, body, config)
            .await
            .unwrap_or_else(|e| panic!("submit {spec}: {e}"))
    }

    async fn try_submit(
        &mut self,
        spec: &str,
        body: &str,
        config: &SlurmConfig,
    ) -> Result<JobId, SlurmError> {
        let name = self.name(spec);
        let script = self.script(spec, body);
        let log = self.log(spec);
        let attempt = Attempt {
            name: &name,
            script: &script,
            workdir: self.dir.path(),
            log: &log,
            agent_timeout: None,
        };
        let id = self.slurm.submit(config, &attempt).await?;
        self.submitted.push(id);
        Ok(id)
    }

    /// Polls one batched `squeue` for `names` until `done` holds; the
    /// snapshot that satisfied it. Panics after [`WAIT`] with the last one.
    async fn wait_for(
        &self,
        names: &[JobName],
        what: &str,
        done: impl Fn(&QueueSnapshot) -> bool,
    ) -> QueueSnapshot {
        let deadline = Instant::now() + WAIT;
        loop {
            let snap = self.slurm.queue(names).await.expect("squeue");
            if done(&snap) {
                return snap;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; squeue said: {:#?}",
                snap.rows
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn capacity(&self) -> Capacity {
        self.slurm.capacity().await.expect("sinfo")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.submitted.is_empty() {
            return;
        }
        let ids: Vec<String> = self.submitted.iter().map(ToString::to_string).collect();
        // Best effort, also while a failing test unwinds: the next test must
        // find the node free.
        let _ = std::process::Command::new("scancel").args(&ids).status();
    }
}

/// The default partition's largest node: its name and CPU count.
pub(crate) fn largest_node(cap: &Capacity) -> (String, u32, MemSize) {
    let partition = cap
        .partitions
        .iter()
        .find(|p| p.default)
        .expect("the cluster has a default partition");
    let node = partition
        .nodes
        .iter()
        .max_by_key(|n| n.cpus)
        .expect("the default partition has a node");
    (node.name.clone(), node.cpus, node.mem)
}

fn reason_of(snap: &QueueSnapshot, name: &JobName) -> Option<String> {
    snap.find(name).and_then(|r| r.reason.clone())
}

fn state_of(snap: &QueueSnapshot, name: &JobName) -> Option<JobState> {
    snap.find(name).map(|r| r.state.clone())
}

fn cpus(n: u32) -> SlurmConfig {
    SlurmConfig {
        cpus: Some(n),
        ..SlurmConfig::default()
    }
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn a_submitted_job_runs_in_its_worktree_and_one_squeue_finds_it_by_name() {
    let mut b = Bench::new("submit");
    let out = b.dir.path().join("out.txt");
    let body = format!("echo \"$SLURM_JOB_ID $PWD\" > '{}'", out.display());
    let id = b.submit("010", &body, &SlurmConfig::default()).await;
    let name = b.name("010");
    // A name that was never submitted is simply absent from the answer.
    let never = b.name("999");
    let names = [name.clone(), never.clone()];
    let snap = b
        .wait_for(&names, "the job to complete", |s| {
            state_of(s, &name) == Some(JobState::Completed)
        })
        .await;
    assert_eq!(snap.find(&name).map(|r| r.id), Some(id));
    assert!(snap.find(&never).is_none());
    assert!(snap.find(&name).and_then(|r| r.start).is_some(), "{snap:?}");
    // The job ran with --chdir in the directory given, under its own id.
    let written = std::fs::read_to_string(&out).expect("the job wrote its file");
    assert_eq!(
        written.trim(),
        format!("{id} {}", b.dir.path().display()),
        "job id and working directory"
    );
    assert!(b.log("010").exists(), "--output names the job's log");
    let counts = b.slurm.counts();
    assert_eq!(counts.sbatch, 1);
    assert!(counts.squeue >= 1);
    assert_eq!(counts.scancel, 0);
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn pending_reasons_are_classified_as_the_controller_gives_them() {
    let mut b = Bench::new("reasons");
    let cap = b.capacity().await;
    let (_, n, _) = largest_node(&cap);
    // A fills the node; B waits for it (head of the queue: Resources), C
    // behind B (Priority); D asks more CPUs than the node has, which sbatch
    // accepts (PartitionConfig); E asks more time than partition `short`
    // allows (PartitionTimeLimit).
    b.submit("a", "sleep 300", &cpus(n)).await;
    b.submit("b", "sleep 300", &cpus(n)).await;
    b.submit("c", "sleep 300", &cpus(n)).await;
    b.submit("d", "sleep 300", &cpus(n + 1)).await;
    let too_long = SlurmConfig {
        partition: Some("short".into()),
        time: Some(Duration::from_secs(5 * 60)),
        ..SlurmConfig::default()
    };
    b.submit("e", "true", &too_long).await;
    let [a, bb, c, d, e] = ["a", "b", "c", "d", "e"].map(|s| b.name(s));
    let names = [a.clone(), bb.clone(), c.clone(), d.clone(), e.clone()];
    let snap = b
        .wait_for(
            &names,
            "Resources, Priority, PartitionConfig, PartitionTimeLimit",
            |s| {
                state_of(s, &a) == Some(JobState::Running)
                    && reason_of(s, &bb).as_deref() == Some("Resources")
                    && reason_of(s, &c).as_deref() == Some("Priority")
                    && reason_of(s, &d).as_deref() == Some("PartitionConfig")
                    && reason_of(s, &e).as_deref() == Some("PartitionTimeLimit")
            },
        )
        .await;
    for (name, never) in [(&bb, false), (&c, false), (&d, true), (&e, true)] {
        let reason = reason_of(&snap, name).expect("a pending reason");
        assert_eq!(classify(&reason).never_clears(), never, "{reason}");
    }
    let Pending::Never { fix, .. } = classify("PartitionConfig") else {
        panic!("PartitionConfig never clears");
    };
    assert!(fix.contains("slurm.cpus"), "{fix}");

    // Free the node for what follows.
    let first_five: Vec<JobId> = snap.rows.iter().map(|r| r.id).collect();
    b.slurm.cancel(&first_five).await.expect("scancel");

    // A dependency on a job that failed: treefarm refuses `--dependency`
    // in extra_args, so the pair goes through sbatch directly.
    let dep = SlurmConfig {
        extra_args: vec!["--dependency=afterok:1".into()],
        ..SlurmConfig::default()
    };
    assert!(dep.validate("slurm").is_err(), "--dependency is treefarm's");
    let failing = raw_sbatch(&b, "f", &[], "exit 1");
    b.submitted.push(failing);
    let waiting = raw_sbatch(
        &b,
        "g",
        &[&format!("--dependency=afterok:{failing}")],
        "true",
    );
    b.submitted.push(waiting);
    let g = b.name("g");
    let snap = b
        .wait_for(std::slice::from_ref(&g), "DependencyNeverSatisfied", |s| {
            reason_of(s, &g).as_deref() == Some("DependencyNeverSatisfied")
        })
        .await;
    assert!(classify(&reason_of(&snap, &g).expect("reason")).never_clears());
    // Every poll above was one squeue call for all the jobs it asked about.
    let counts = b.slurm.counts();
    assert_eq!(counts.sbatch, 5);
    assert!(counts.squeue >= 2);
}

/// Submits straight through `sbatch` (for what treefarm itself never asks).
fn raw_sbatch(b: &Bench, spec: &str, extra: &[&str], body: &str) -> JobId {
    let script = b.script(spec, body);
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--job-name={}", b.name(spec)))
        .arg(format!("--output={}", b.log(spec).display()))
        .arg(format!("--chdir={}", b.dir.path().display()))
        .args(extra)
        .arg(&script)
        .output()
        .expect("run sbatch");
    assert!(
        out.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    treefarm::slurm::parse_parsable(&String::from_utf8_lossy(&out.stdout)).expect("a job id")
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn a_request_no_node_can_meet_is_refused_before_sbatch() {
    let b = Bench::new("impossible");
    let cap = b.capacity().await;
    let (node, n, mem) = largest_node(&cap);
    // What the node has fits.
    let fits = SlurmConfig {
        cpus: Some(n),
        mem: Some(mem),
        ..SlurmConfig::default()
    };
    cap.check(&Request::of(&fits, None))
        .expect("the node's own size fits");
    // One CPU more does not, and the refusal names the figures.
    let refusal = cap
        .check(&Request::of(&cpus(n + 1), None))
        .expect_err("more CPUs than the node");
    let text = refusal.to_string();
    assert!(
        text.contains(&format!("has {} CPUs:", n + 1))
            && text.contains(&format!("the largest has {n} CPUs (node {node})")),
        "{text}"
    );
    let more_mem = SlurmConfig {
        mem: Some(MemSize {
            megabytes: mem.megabytes + 1,
        }),
        ..SlurmConfig::default()
    };
    let refusal = cap
        .check(&Request::of(&more_mem, None))
        .expect_err("more memory than the node");
    assert!(
        refusal
            .to_string()
            .contains(&format!("the most memory is {mem}")),
        "{refusal}"
    );
    // Partition `short` allows one minute; an agent timeout of ten does not
    // fit, and an unknown partition is named.
    let short = SlurmConfig {
        partition: Some("short".into()),
        ..SlurmConfig::default()
    };
    let refusal = cap
        .check(&Request::of(&short, Some(Duration::from_secs(600))))
        .expect_err("15 minutes in a 1-minute partition");
    assert!(matches!(refusal, Refusal::TooLong { .. }), "{refusal:?}");
    let nowhere = SlurmConfig {
        partition: Some("no-such-partition".into()),
        ..SlurmConfig::default()
    };
    let refusal = cap
        .check(&Request::of(&nowhere, None))
        .expect_err("unknown");
    assert!(
        refusal.to_string().contains("`no-such-partition`"),
        "{refusal}"
    );
    // Only sinfo ran: nothing was submitted.
    let counts = b.slurm.counts();
    assert_eq!((counts.sinfo, counts.sbatch), (1, 0));
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn what_sbatch_refuses_comes_back_with_the_command_and_its_stderr() {
    let mut b = Bench::new("refused");
    let cap = b.capacity().await;
    let (_, _, mem) = largest_node(&cap);
    // Past the capacity check (which would refuse both first), straight to
    // sbatch: more memory than the node has, and a partition that does not
    // exist, are refused by sbatch itself.
    let more_mem = SlurmConfig {
        mem: Some(MemSize {
            megabytes: mem.megabytes + 1,
        }),
        ..SlurmConfig::default()
    };
    let nowhere = SlurmConfig {
        partition: Some("no-such-partition".into()),
        ..SlurmConfig::default()
    };
    for (config, stderr) in [
        (&more_mem, "Requested node configuration is not available"),
        (&nowhere, "Invalid partition name specified"),
    ] {
        let err = b.try_submit("x", "true", config).await.expect_err(stderr);
        let text = err.to_string();
        assert!(
            matches!(err, SlurmError::Failed { .. })
                && text.starts_with("`sbatch --parsable ")
                && text.contains(stderr),
            "{text}"
        );
    }
    assert_eq!(b.slurm.counts().sbatch, 2);
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn one_scancel_cancels_every_job_of_the_run() {
    let mut b = Bench::new("cancel");
    let mut ids = Vec::new();
    for spec in ["a", "b", "c"] {
        ids.push(b.submit(spec, "sleep 300", &SlurmConfig::default()).await);
    }
    let names = ["a", "b", "c"].map(|s| b.name(s));
    b.wait_for(&names, "all three queued", |s| {
        names.iter().all(|n| s.find(n).is_some())
    })
    .await;
    b.slurm.cancel(&ids).await.expect("scancel");
    assert_eq!(b.slurm.counts().scancel, 1, "one call for three jobs");
    let snap = b
        .wait_for(&names, "all three cancelled", |s| {
            names
                .iter()
                .all(|n| state_of(s, n) == Some(JobState::Cancelled))
        })
        .await;
    let mut seen: Vec<JobId> = snap.rows.iter().map(|r| r.id).collect();
    seen.sort();
    assert_eq!(seen, ids);
    // Cancelling jobs that already ended is no error; no ids, no call.
    b.slurm.cancel(&ids).await.expect("scancel of ended jobs");
    b.slurm.cancel(&[]).await.expect("nothing to cancel");
    assert_eq!(b.slurm.counts().scancel, 2);
}

/// Sets the node back to service when a test that took it down ends.
struct NodeBack<'a> {
    node: &'a str,
}

impl Drop for NodeBack<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scontrol")
            .args(["update", &format!("nodename={}", self.node), "state=resume"])
            // Refused (and harmless) when the test resumed the node itself.
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn node_state(slurm: &Slurm, node: &str) -> String {
    let shown = slurm
        .scontrol(&["show", "node", node])
        .await
        .expect("scontrol show node");
    shown
        .split_whitespace()
        .find_map(|w| w.strip_prefix("State="))
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn a_node_set_down_fails_or_requeues_its_jobs_and_resume_runs_the_waiting_one() {
    let mut b = Bench::new("nodedown");
    let cap = b.capacity().await;
    let (node, _, _) = largest_node(&cap);
    let requeue = SlurmConfig {
        requeue: true,
        ..SlurmConfig::default()
    };
    let kept = b.submit("kept", "sleep 300", &SlurmConfig::default()).await;
    let requeued = b.submit("requeued", "sleep 300", &requeue).await;
    let (kept_name, requeued_name) = (b.name("kept"), b.name("requeued"));
    let both = [kept_name.clone(), requeued_name.clone()];
    b.wait_for(&both, "both jobs running", |s| {
        both.iter()
            .all(|n| state_of(s, n) == Some(JobState::Running))
    })
    .await;

    let _back = NodeBack { node: &node };
    b.slurm
        .scontrol(&[
            "update",
            &format!("nodename={node}"),
            "state=down",
            "reason=treefarm-test",
        ])
        .await
        .expect("scontrol update state=down");
    // --no-requeue (treefarm's default): the job fails with the node;
    // --requeue: the same job id waits to run again.
    let snap = b
        .wait_for(&both, "NODE_FAIL and a requeue", |s| {
            state_of(s, &kept_name) == Some(JobState::NodeFail)
                && state_of(s, &requeued_name).is_some_and(|st| st.is_pending())
        })
        .await;
    assert_eq!(snap.find(&kept_name).map(|r| r.id), Some(kept));
    assert_eq!(
        reason_of(&snap, &kept_name).as_deref(),
        Some("NodeDown"),
        "the reason of a job whose node went down"
    );
    assert_eq!(snap.find(&requeued_name).map(|r| r.id), Some(requeued));
    assert!(node_state(&b.slurm, &node).await.starts_with("DOWN"));

    // A job submitted while the node is down waits, for a reason that can
    // clear.
    let out = b.dir.path().join("after-resume.txt");
    b.submit(
        "late",
        &format!("echo ran > '{}'", out.display()),
        &SlurmConfig::default(),
    )
    .await;
    let late = b.name("late");
    let snap = b
        .wait_for(
            std::slice::from_ref(&late),
            "the late job pending with a reason",
            |s| state_of(s, &late) == Some(JobState::Pending) && reason_of(s, &late).is_some(),
        )
        .await;
    let reason = reason_of(&snap, &late).expect("reason");
    assert!(!classify(&reason).never_clears(), "{reason}");

    b.slurm
        .scontrol(&["update", &format!("nodename={node}"), "state=resume"])
        .await
        .expect("scontrol update state=resume");
    b.wait_for(
        std::slice::from_ref(&late),
        "the late job to run after resume",
        |s| state_of(s, &late) == Some(JobState::Completed),
    )
    .await;
    assert_eq!(std::fs::read_to_string(&out).expect("it ran").trim(), "ran");
    let state = node_state(&b.slurm, &node).await;
    assert!(!state.starts_with("DOWN"), "{state}");
}

#[tokio::test]
#[ignore = "needs the one-node Slurm cluster: scripts/test-slurm.sh"]
async fn the_poll_interval_stays_below_the_controllers_min_job_age() {
    let b = Bench::new("minjobage");
    let age = b.slurm.min_job_age().await.expect("scontrol show config");
    // The oracle: the configuration file the controller read.
    let conf = std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/slurm/slurm.conf"));
    let written = configured_min_job_age(&conf);
    assert_eq!(age, Duration::from_secs(written));
    let mut poll = PollInterval::new(SlurmConfig::default().poll, Some(age));
    for _ in 0..20 {
        assert!(poll.after_poll(false) <= age / 2);
    }
    assert_eq!(b.slurm.counts().scontrol, 1);
}

fn configured_min_job_age(conf: &Path) -> u64 {
    let text =
        std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("read {}: {e}", conf.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("MinJobAge="))
        .map(|v| v.trim().parse().expect("a number"))
        // Slurm's default when the file does not say.
        .unwrap_or(300)
}
