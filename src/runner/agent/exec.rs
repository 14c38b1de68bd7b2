//! `treefarm agent-exec --job FILE`: the entry point a batch job runs on
//! its node. It reads the attempt's [`AgentJob`] (written beside the job by
//! the coordinator, sandbox policy included) and starts the agent with the
//! local backend's own [`agent_command`] — the same process group, `sh`
//! wrapper and atomic exit file, status file, log and environment, and the
//! Landlock ruleset built and applied here, before `exec` — then waits for
//! it, forwarding SIGTERM, SIGINT and SIGUSR2 to the agent's group (Slurm
//! signals the batch shell before its time limit and on `scancel`). The
//! exit file, not this process's status, is what decides the attempt.

use std::path::{Path, PathBuf};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::executor::AgentJob;
use super::local::{agent_command, SpawnError};

/// Why `agent-exec` could not run its agent.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot read the job file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the job file `{path}` is not an agent job")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the job file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to start the agent in `{cwd}`")]
    Start {
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to wait for the agent")]
    Wait(#[source] std::io::Error),
}

/// Writes `job` as the job file at `path` (write, then rename: a job that
/// starts at once never reads half of it).
pub fn write_job_file(job: &AgentJob, path: &Path) -> Result<(), ExecError> {
    let write = |source| ExecError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(job)
        .map_err(std::io::Error::from)
        .map_err(write)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)
}

/// Runs the agent of the job file `path` to its end; the wrapper's exit
/// code (the agent's, or 128 + the signal that ended the wrapper).
pub fn agent_exec(path: &Path) -> Result<i32, ExecError> {
    let text = std::fs::read(path).map_err(|source| ExecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let job: AgentJob = serde_json::from_slice(&text).map_err(|source| ExecError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let cmd = agent_command(&job)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExecError::Wait)?;
    runtime.block_on(supervise(cmd, &job.cwd))
}

async fn supervise(cmd: std::process::Command, cwd: &Path) -> Result<i32, ExecError> {
    // Listening before the spawn: a signal in between is not lost.
    let mut term = signal(SignalKind::terminate()).map_err(ExecError::Wait)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ExecError::Wait)?;
    let mut usr2 = signal(SignalKind::user_defined2()).map_err(ExecError::Wait)?;
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| ExecError::Start {
            cwd: cwd.to_path_buf(),
            source,
        })?;
    // The wrapper leads its own group (`process_group(0)`): its pid is the
    // group's id.
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let forward = |sig: Signal| {
        if let Some(group) = group {
            // The group may have ended already; nothing to forward then.
            let _ = killpg(group, sig);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(ExecError::Wait)?;
                use std::os::unix::process::ExitStatusExt;
                return Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
            }
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
            _ = usr2.recv() => forward(Signal::SIGUSR2),
        }
    }
}
