//! Gate runs of the merge queue: the gate command on a batch's prefix, in a
//! warm gate worktree of the pool (`git/gates.rs`), as a cancellable process
//! group. Several may run at once (`merge.gate_jobs`), each in its own
//! worktree; a cancellation (the planner no longer needs the result) or a
//! stop (a signal) kills the whole group before the run is reported done, so
//! its worktree is free for the next gate.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::git::{Oid, Repo};
use crate::merge_queue::GateRun;
use crate::runner::executor::{kill_group, Stop};
use crate::runner::messages::LaneMsg;
use crate::state::RunOptions;

/// How long a cancelled gate's group gets between SIGTERM and SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// What a gate run needs besides the run's options.
pub struct GateJob {
    pub gate: GateRun,
    pub run_id: String,
    /// The log file (in the run's `logs/` folder).
    pub log: PathBuf,
}

/// Moves gate worktree `gate.slot` to the commit under test, runs the gate
/// command there with its output in `job.log`, and reports
/// [`LaneMsg::GateDone`]. A failure to prepare the worktree or to start the
/// command is a failed gate, with the reason in the log.
pub async fn run_gate(
    opts: Arc<RunOptions>,
    job: GateJob,
    mut cancel: oneshot::Receiver<()>,
    mut stop: watch::Receiver<Stop>,
) -> LaneMsg {
    let begun = Instant::now();
    let run = job.gate.run;
    let done = |passed: bool, cancelled: bool| LaneMsg::GateDone {
        run,
        passed,
        cancelled,
        elapsed_ms: begun.elapsed().as_millis() as u64,
    };
    if *stop.borrow_and_update() != Stop::Run {
        return done(false, true);
    }
    let command = opts.gate.clone().unwrap_or_default();
    let log = match open_log(&job.log) {
        Ok(log) => log,
        Err(err) => {
            tracing::warn!(log = %job.log.display(), %err, "cannot create the gate log");
            return done(false, false);
        }
    };
    let prepared = {
        let opts = opts.clone();
        let slot = job.gate.slot.unwrap_or(0);
        let commit = job.gate.commit.clone();
        tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
            let oid = Oid::from_str(&commit).map_err(|e| format!("bad commit `{commit}`: {e}"))?;
            let _admin = crate::runner::lane::worktree_admin();
            let repo = Repo::discover(&opts.repo_root).map_err(|e| crate::error::chain(&e))?;
            let wt = repo
                .warm_gate_worktree(slot, oid)
                .map_err(|e| crate::error::chain(&e))?;
            Ok(wt.path)
        })
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")))
    };
    let dir = match prepared {
        Ok(dir) => dir,
        Err(reason) => {
            write_note(
                &job.log,
                &format!("treefarm: gate worktree not ready: {reason}"),
            );
            return done(false, false);
        }
    };
    let ids = job.gate.ids.join(" ");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(&dir)
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
    match log.try_clone() {
        Ok(out) => {
            cmd.stdout(out).stderr(log);
        }
        Err(_) => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            write_note(
                &job.log,
                &format!("treefarm: gate `{command}` could not be started: {err}"),
            );
            return done(false, false);
        }
    };
    let pgid = child.id().unwrap_or(0);
    tokio::select! {
        status = child.wait() => {
            let passed = status.is_ok_and(|s| s.success());
            // Whatever the gate left running in its group goes with it.
            kill_group(pgid, CANCEL_GRACE).await;
            done(passed, false)
        }
        _ = &mut cancel => {
            kill_group(pgid, CANCEL_GRACE).await;
            let _ = child.wait().await;
            done(false, true)
        }
        _ = stopped(&mut stop) => {
            kill_group(pgid, CANCEL_GRACE).await;
            let _ = child.wait().await;
            done(false, true)
        }
    }
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

fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)
}

fn write_note(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{text}"));
}
