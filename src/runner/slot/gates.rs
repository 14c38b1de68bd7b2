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
//! A gate that cannot be run — its log, its worktree, its sandbox, its port
//! block or its shell — is [`GateEnd::CouldNotRun`], not a failed gate: no
//! branch is at fault.

use std::io::{Read as _, Seek as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::git::{Oid, Repo};
use crate::isolation::{Policy, PolicyInputs, Sandbox};
use crate::merge_queue::GateRun;
use crate::runner::agent::local::kill_group;
use crate::runner::messages::{GateEnd, LaneMsg, Stop};
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

/// A gate ready to start: its command and, under isolation, its sandbox and
/// the port block it holds until it ends.
struct Prepared {
    cmd: std::process::Command,
    policy: Option<Policy>,
    _ports: Option<PortBlock>,
}

/// Moves gate worktree `gate.slot` to the commit under test, runs the gate
/// command there with its output in `job.log`, and reports
/// [`LaneMsg::GateDone`].
pub async fn run_gate(
    opts: Arc<RunOptions>,
    job: GateJob,
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
        Ok(dir) => match prepare(&opts, &job, &command, &dir, log) {
            Err(cause) => GateEnd::CouldNotRun(cause),
            Ok(prepared) => {
                supervise(&opts, &job, &command, prepared, &mut cancel, &mut stop).await
            }
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

/// The gate's command in worktree `dir`, with its environment, its own
/// process group and, under isolation, its sandbox; `Err`: why it cannot
/// run.
fn prepare(
    opts: &RunOptions,
    job: &GateJob,
    command: &str,
    dir: &Path,
    log: std::fs::File,
) -> Result<Prepared, String> {
    let ids = job.gate.ids.join(" ");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("TREEFARM_RUN_ID", &job.run_id)
        .env("TREEFARM_TARGET", &opts.target)
        .env("TREEFARM_GATE", "1")
        .env("TREEFARM_GATE_COMMIT", &job.gate.commit)
        .env("TREEFARM_GATE_BATCH", job.gate.batch.to_string())
        .env("TREEFARM_GATE_PREFIX", job.gate.prefix.to_string())
        // Not `TREEFARM_SPEC_ID`: a gate is no instance's process (resume
        // finds an instance's processes by it).
        .env("TREEFARM_SPEC_IDS", &ids)
        .stdin(Stdio::null())
        .process_group(0);
    let out = log
        .try_clone()
        .map_err(|e| format!("failed to open the gate log `{}`: {e}", job.log.display()))?;
    cmd.stdout(out).stderr(log);
    let Some(active) = opts.isolation_active else {
        return Ok(Prepared {
            cmd,
            policy: None,
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
    let env: Vec<(String, String)> = std::env::vars().collect();
    let policy = Policy::new(&PolicyInputs {
        worktree: dir,
        instance_dir: &job.private_dir,
        home: home.as_deref(),
        repo_root: &opts.repo_root,
        allow_write: &opts.isolation.allow_write,
        allow_read: &opts.isolation.allow_read,
        cli: None,
        env: &env,
        extra: Vec::new(),
        ports: active.ports.then_some((ports.start, ports.size)),
    });
    let sandbox = Sandbox {
        abi: active.abi,
        policy: policy.clone(),
    };
    let ruleset = sandbox.ruleset().map_err(|e| crate::error::chain(&e))?;
    cmd.env("TREEFARM_PORT", ports.start.to_string())
        .env("TMPDIR", &tmp)
        .env("TREEFARM_ISOLATED", "1");
    // SAFETY: the closure only makes two async-signal-safe system calls on
    // a descriptor opened before the fork (see `isolation::sandbox`).
    unsafe {
        cmd.pre_exec(move || Sandbox::restrict_in_child(&ruleset));
    }
    Ok(Prepared {
        cmd,
        policy: Some(policy),
        _ports: Some(ports),
    })
}

/// Starts the gate and waits for its end, its timeout, a cancellation or a
/// stop; whatever it left running in its group goes with it.
async fn supervise(
    opts: &RunOptions,
    job: &GateJob,
    command: &str,
    prepared: Prepared,
    cancel: &mut oneshot::Receiver<()>,
    stop: &mut watch::Receiver<Stop>,
) -> GateEnd {
    let Prepared {
        cmd,
        policy,
        _ports,
    } = prepared;
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
                Ok(s) => failed(job, command, &format!("failed ({s})"), policy.as_ref()),
                Err(err) => GateEnd::CouldNotRun(format!(
                    "the exit status of gate `{command}` was lost: {err}"
                )),
            }
        }
        _ = expired => {
            kill_group(pgid, grace).await;
            let _ = child.wait().await;
            let limit = crate::config::format_duration(timeout.unwrap_or_default());
            write_note(
                &job.log,
                &format!("treefarm: the gate timed out after {limit} (merge.gate_timeout)"),
            );
            failed(
                job,
                command,
                &format!("timed out after {limit} (merge.gate_timeout)"),
                policy.as_ref(),
            )
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
