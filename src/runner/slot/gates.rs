//! Gate runs — every gate of a run or of `treefarm merge`: the gate command
//! on a batch's prefix, in a warm gate worktree of the pool
//! (`git/gates.rs`), as its own process group with a timeout
//! (`merge.gate_timeout`: SIGTERM, `agent.kill_grace`, SIGKILL), stopped by
//! the first Ctrl-C, and — when the run is isolated — confined like an agent:
//! it runs the code of the branches under test. Several may run at once
//! (`merge.gate_jobs`), each in its own worktree; a cancellation (the planner
//! no longer needs the result) or a stop (a signal) kills the whole group
//! before the run is reported done, so its worktree is free for the next
//! gate.
//!
//! With `executor: slurm` and `slurm.gates: true` the gate is one batch
//! job instead ([`GateHost::Slurm`]): the same worktree (under
//! `worktree_dir`, shared with the nodes), environment, log, timeout and
//! sandbox, run by `treefarm agent-exec` on the node.
//!
//! A gate that cannot be run — its log, its worktree, its sandbox, its port
//! block, its shell or its job — is [`GateEnd::CouldNotRun`], not a failed
//! gate: no branch is at fault.

use std::io::{Read as _, Seek as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::git::{Oid, Repo};
use crate::isolation::{Policy, PolicyInputs, Sandbox};
use crate::merge_queue::GateRun;
use crate::runner::agent::executor::{AgentJob, Executor as _};
use crate::runner::agent::local::kill_group;
use crate::runner::agent::slurm::SlurmRunner;
use crate::runner::messages::{AgentEnd, AgentEvent, GateEnd, JobUpdate, LaneMsg, Stop};
use crate::runner::slot::ports::PortBlock;
use crate::state::RunOptions;

/// How long a cancelled or stopped gate's group gets between SIGTERM and
/// SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// How much of the end of a failed gate's log is searched for writes
/// isolation denied.
const DENIAL_SCAN: u64 = 1 << 20;

/// What a gate run needs besides the run's options.
pub struct GateJob {
    pub gate: GateRun,
    pub run_id: String,
    /// The log file (in the run's `logs/` folder).
    pub log: PathBuf,
    /// The gate run's own folder (its `TMPDIR` under isolation), removed
    /// when it ends.
    pub private_dir: PathBuf,
}

/// What a gate run gets besides its command, under either executor: its
/// environment, and under isolation its sandbox and the port block it
/// holds until it ends.
struct Prepared {
    env: Vec<(String, String)>,
    sandbox: Option<Sandbox>,
    _ports: Option<PortBlock>,
}

/// Where a gate runs: here, as its own process group, or (`slurm.gates`)
/// as a batch job of the run's Slurm side, whose job updates go to
/// `updates` (the dispatcher shows them).
pub enum GateHost {
    Local,
    Slurm {
        runner: Arc<SlurmRunner>,
        updates: mpsc::UnboundedSender<(u64, JobUpdate)>,
    },
}

/// Moves gate worktree `gate.slot` to the commit under test, runs the gate
/// command there (on `host`) with its output in `job.log`, and reports
/// [`LaneMsg::GateDone`].
pub async fn run_gate(
    opts: Arc<RunOptions>,
    job: GateJob,
    host: GateHost,
    mut cancel: oneshot::Receiver<()>,
    mut stop: watch::Receiver<Stop>,
) -> LaneMsg {
    let begun = Instant::now();
    let run = job.gate.run;
    let done = |end: GateEnd| LaneMsg::GateDone {
        run,
        end,
        elapsed_ms: begun.elapsed().as_millis() as u64,
    };
    if *stop.borrow_and_update() != Stop::Run {
        return done(GateEnd::Stopped);
    }
    let command = opts.gate.clone().unwrap_or_default();
    let log = match open_log(&job.log) {
        Ok(log) => log,
        Err(err) => {
            return done(GateEnd::CouldNotRun(format!(
                "failed to create the gate log `{}`: {err}",
                job.log.display()
            )))
        }
    };
    let worktree = {
        let opts = opts.clone();
        let slot = job.gate.slot.unwrap_or(0);
        let commit = job.gate.commit.clone();
        tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
            let oid = Oid::from_str(&commit).map_err(|e| format!("bad commit `{commit}`: {e}"))?;
            let _admin = crate::runner::slot::worktree_admin::worktree_admin();
            let repo = Repo::discover(&opts.repo_root).map_err(|e| crate::error::chain(&e))?;
            let wt = repo
                .warm_gate_worktree(slot, oid)
                .map_err(|e| crate::error::chain(&e))?;
            Ok(wt.path)
        })
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")))
    };
    let end = match worktree {
        Err(reason) => GateEnd::CouldNotRun(format!(
            "the gate worktree could not be moved to {}: {reason}",
            job.gate.commit
        )),
        Ok(dir) => match prepare(&opts, &job, &dir) {
            Err(cause) => GateEnd::CouldNotRun(cause),
            Ok(prepared) => match host {
                GateHost::Local => match local_command(&job, &command, &dir, log, &prepared) {
                    Err(cause) => GateEnd::CouldNotRun(cause),
                    Ok(cmd) => {
                        let policy = prepared.sandbox.as_ref().map(|s| &s.policy);
                        supervise(&opts, &job, &command, cmd, policy, &mut cancel, &mut stop).await
                    }
                },
                GateHost::Slurm { runner, updates } => {
                    drop(log);
                    let gate = GateAsJob {
                        opts: &opts,
                        job: &job,
                        command: &command,
                        dir: &dir,
                        runner: &runner,
                        updates: &updates,
                    };
                    gate.run(prepared, &mut cancel, &mut stop).await
                }
            },
        },
    };
    if let GateEnd::CouldNotRun(cause) = &end {
        write_note(
            &job.log,
            &format!("treefarm: the gate could not run: {cause}"),
        );
    }
    let _ = std::fs::remove_dir_all(&job.private_dir);
    done(end)
}

/// The gate's environment and, under isolation, its sandbox (and port
/// block); `Err`: why it cannot run.
fn prepare(opts: &RunOptions, job: &GateJob, dir: &Path) -> Result<Prepared, String> {
    let mut env: Vec<(String, String)> = vec![
        ("TREEFARM_RUN_ID".into(), job.run_id.clone()),
        ("TREEFARM_TARGET".into(), opts.target.clone()),
        ("TREEFARM_GATE".into(), "1".into()),
        ("TREEFARM_GATE_COMMIT".into(), job.gate.commit.clone()),
        ("TREEFARM_GATE_BATCH".into(), job.gate.batch.to_string()),
        ("TREEFARM_GATE_PREFIX".into(), job.gate.prefix.to_string()),
        // Not `TREEFARM_SPEC_ID`: a gate is no instance's process (resume
        // finds an instance's processes by it).
        ("TREEFARM_SPEC_IDS".into(), job.gate.ids.join(" ")),
    ];
    let Some(active) = opts.isolation_active else {
        return Ok(Prepared {
            env,
            sandbox: None,
            _ports: None,
        });
    };
    let tmp = job.private_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| {
        format!(
            "failed to create the gate's temporary folder `{}`: {e}",
            tmp.display()
        )
    })?;
    // The gate's own port block, above every slot's block (a gate runs
    // beside the agents); `TREEFARM_PORT` names it, and under
    // `isolation.ports` it is all the gate may bind.
    let size = u32::from(opts.port_stride.max(1));
    let slot = opts.instances + job.gate.slot.unwrap_or(0);
    let ports = crate::runner::slot::ports::claim(opts.port(slot), size, opts.spare_ports_from())
        .ok_or_else(|| {
        format!(
            "no free block of {size} ports for the gate (from port {})",
            opts.port(slot)
        )
    })?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    // The gate inherits treefarm's environment (the variables that move
    // tool state among it); it runs no agent CLI, so none's state is
    // created for it.
    let inherited: Vec<(String, String)> = std::env::vars().collect();
    let policy = Policy::new(&PolicyInputs {
        worktree: dir,
        instance_dir: &job.private_dir,
        home: home.as_deref(),
        repo_root: &opts.repo_root,
        allow_write: &opts.isolation.allow_write,
        allow_read: &opts.isolation.allow_read,
        cli: None,
        env: &inherited,
        extra: Vec::new(),
        ports: active.ports.then_some((ports.start, ports.size)),
    });
    env.push(("TREEFARM_PORT".into(), ports.start.to_string()));
    env.push(("TMPDIR".into(), tmp.display().to_string()));
    env.push(("TREEFARM_ISOLATED".into(), "1".into()));
    Ok(Prepared {
        env,
        sandbox: Some(Sandbox {
            abi: active.abi,
            policy,
        }),
        _ports: Some(ports),
    })
}

/// The gate's command here, in worktree `dir`: its environment, its own
/// process group, its log and, under isolation, its sandbox (applied
/// between `fork` and `exec`).
fn local_command(
    job: &GateJob,
    command: &str,
    dir: &Path,
    log: std::fs::File,
    prepared: &Prepared,
) -> Result<std::process::Command, String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    let out = log
        .try_clone()
        .map_err(|e| format!("failed to open the gate log `{}`: {e}", job.log.display()))?;
    cmd.stdout(out).stderr(log);
    if let Some(sandbox) = &prepared.sandbox {
        let ruleset = sandbox.ruleset().map_err(|e| crate::error::chain(&e))?;
        // SAFETY: the closure only makes two async-signal-safe system calls
        // on a descriptor opened before the fork (see `isolation::sandbox`).
        unsafe {
            cmd.pre_exec(move || Sandbox::restrict_in_child(&ruleset));
        }
    }
    Ok(cmd)
}

/// Starts the gate and waits for its end, its timeout, a cancellation or a
/// stop; whatever it left running in its group goes with it.
async fn supervise(
    opts: &RunOptions,
    job: &GateJob,
    command: &str,
    cmd: std::process::Command,
    policy: Option<&Policy>,
    cancel: &mut oneshot::Receiver<()>,
    stop: &mut watch::Receiver<Stop>,
) -> GateEnd {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            return GateEnd::CouldNotRun(format!("gate `{command}` could not be started: {err}"))
        }
    };
    let pgid = child.id().unwrap_or(0);
    let timeout = opts.gate_timeout();
    let expired = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let grace = Duration::from_millis(opts.grace_ms);
    tokio::select! {
        status = child.wait() => {
            kill_group(pgid, CANCEL_GRACE).await;
            match status {
                Ok(s) if s.success() => GateEnd::Passed,
                Ok(s) => failed(job, command, &format!("failed ({s})"), policy),
                Err(err) => GateEnd::CouldNotRun(format!(
                    "the exit status of gate `{command}` was lost: {err}"
                )),
            }
        }
        _ = expired => {
            kill_group(pgid, grace).await;
            let _ = child.wait().await;
            timed_out(opts, job, command, policy)
        }
        _ = cancel => {
            kill_group(pgid, CANCEL_GRACE).await;
            let _ = child.wait().await;
            GateEnd::Stopped
        }
        _ = stopped(stop) => {
            kill_group(pgid, CANCEL_GRACE).await;
            let _ = child.wait().await;
            GateEnd::Stopped
        }
    }
}

/// A gate that ran longer than `merge.gate_timeout` (and was ended): a
/// note in its log, and a failure.
fn timed_out(opts: &RunOptions, job: &GateJob, command: &str, policy: Option<&Policy>) -> GateEnd {
    let limit = crate::config::format_duration(opts.gate_timeout().unwrap_or_default());
    write_note(
        &job.log,
        &format!("treefarm: the gate timed out after {limit} (merge.gate_timeout)"),
    );
    failed(
        job,
        command,
        &format!("timed out after {limit} (merge.gate_timeout)"),
        policy,
    )
}

/// A gate run as one batch job (`slurm.gates: true`): the same command,
/// environment, log and sandbox as [`local_command`], written as an agent
/// job that `treefarm agent-exec` runs on the node (the one in-job entry
/// point, Landlock applied there), submitted and followed by the Slurm
/// executor — the shared poller, pending reasons, a reason that never
/// clears, the timeout's clock from `RUNNING`, the batched `scancel` — and
/// judged by the exit file it leaves in the gate run's own folder.
struct GateAsJob<'a> {
    opts: &'a RunOptions,
    job: &'a GateJob,
    command: &'a str,
    dir: &'a Path,
    runner: &'a Arc<SlurmRunner>,
    updates: &'a mpsc::UnboundedSender<(u64, JobUpdate)>,
}

impl GateAsJob<'_> {
    async fn run(
        &self,
        prepared: Prepared,
        cancel: &mut oneshot::Receiver<()>,
        stop: &mut watch::Receiver<Stop>,
    ) -> GateEnd {
        let Prepared {
            env,
            sandbox,
            _ports,
        } = prepared;
        let policy = sandbox.as_ref().map(|s| s.policy.clone());
        let agent_job = AgentJob {
            command: self.command.to_string(),
            cwd: self.dir.to_path_buf(),
            env,
            log_path: self.job.log.clone(),
            status_path: self.job.private_dir.join("status.json"),
            exit_path: self.job.private_dir.join("exit_code"),
            timeout: self.opts.gate_timeout(),
            idle_timeout: None,
            grace: Duration::from_millis(self.opts.grace_ms),
            sandbox,
        };
        let exec = self.runner.gate(self.job.gate.run);
        let name = exec.name().clone();
        // A cancel (the queue no longer needs the result) or a stop (a
        // signal) ends the job at once, in the run's batched `scancel`.
        let (end_tx, end_rx) = watch::channel(Stop::Run);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let follow = exec.spawn(agent_job, ev_tx, end_rx);
        tokio::pin!(follow);
        let mut asked = false;
        let end = loop {
            tokio::select! {
                end = &mut follow => break end,
                Some(event) = ev_rx.recv() => {
                    if let AgentEvent::Job(update) = event {
                        let _ = self.updates.send((self.job.gate.run, update));
                    }
                }
                _ = &mut *cancel, if !asked => {
                    asked = true;
                    let _ = end_tx.send(Stop::Kill);
                }
                _ = stopped(stop), if !asked => {
                    asked = true;
                    let _ = end_tx.send(Stop::Kill);
                }
            }
        };
        while let Ok(AgentEvent::Job(update)) = ev_rx.try_recv() {
            let _ = self.updates.send((self.job.gate.run, update));
        }
        let policy = policy.as_ref();
        match end {
            AgentEnd::Exited(0) => GateEnd::Passed,
            AgentEnd::Exited(code) => failed(
                self.job,
                self.command,
                &format!("failed (exit status: {code})"),
                policy,
            ),
            AgentEnd::Signaled(sig) => failed(
                self.job,
                self.command,
                &format!("failed (signal: {sig})"),
                policy,
            ),
            AgentEnd::TimedOut | AgentEnd::IdleTimedOut => {
                timed_out(self.opts, self.job, self.command, policy)
            }
            AgentEnd::Stopped => GateEnd::Stopped,
            AgentEnd::SpawnFailed(why) | AgentEnd::JobLost(why) | AgentEnd::NeverStarts(why) => {
                self.could_not_run(&name, &why)
            }
            AgentEnd::Unknown => self.could_not_run(&name, "it ended without an exit code"),
        }
    }

    /// A gate job that did not run the gate to an exit code: no branch is
    /// at fault. What the job itself printed (`agent-exec`'s own errors)
    /// joins the gate's log.
    fn could_not_run(&self, name: &crate::slurm::JobName, why: &str) -> GateEnd {
        let out = self.job.private_dir.join(format!("job-{}.out", name.tag()));
        if let Ok(text) = std::fs::read_to_string(&out) {
            if !text.trim().is_empty() {
                write_note(
                    &self.job.log,
                    &format!(
                        "treefarm: the Slurm job `{name}` printed:\n{}",
                        text.trim_end()
                    ),
                );
            }
        }
        GateEnd::CouldNotRun(format!("its Slurm job `{name}`: {why}"))
    }
}

/// A failed gate, in words: how it ended, and every read or write isolation
/// denied it (from its log) — a denial is often why a gate fails.
fn failed(job: &GateJob, command: &str, how: &str, policy: Option<&Policy>) -> GateEnd {
    let mut reason = format!("gate `{command}` {how}");
    if let Some(policy) = policy {
        let denied = crate::isolation::denials(&log_tail(&job.log), policy);
        if let Some(summary) = crate::isolation::denial_summary(&denied) {
            // The summary is worded for agents.
            let summary = summary.replace("the agent needs", "the gate needs");
            reason.push_str(&format!("; {summary}"));
        }
    }
    GateEnd::Failed(reason)
}

/// The last [`DENIAL_SCAN`] bytes of the log, lossily decoded.
fn log_tail(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(std::io::SeekFrom::Start(len.saturating_sub(DENIAL_SCAN)));
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Resolves once the run is asked to stop.
async fn stopped(stop: &mut watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::Run {
            return;
        }
        if stop.changed().await.is_err() {
            // The dispatcher is gone: nobody waits for this gate.
            return;
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)
}

fn write_note(path: &Path, text: &str) {
    use std::io::Write as _;
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{text}"));
}
