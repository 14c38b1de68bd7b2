//! The thin async edges: run `sbatch`, `squeue`, `scancel`, `scontrol` and
//! `sinfo` (tokio::process), hand their output to the pure parsers, and
//! count every call, so the run's summary can say what treefarm cost the
//! controller.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capacity::{sinfo_args, Capacity};
use super::config::SlurmConfig;
use super::error::SlurmError;
use super::job::{parse_parsable, sbatch_args, storage_check_args, Attempt, JobId, JobName};
use super::poll::min_job_age;
use super::queue::{parse_squeue, squeue_args, squeue_user_args, QueueSnapshot};

/// A Slurm client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlurmProgram {
    Sbatch,
    Squeue,
    Scancel,
    Scontrol,
    Sinfo,
}

impl SlurmProgram {
    pub fn name(self) -> &'static str {
        match self {
            SlurmProgram::Sbatch => "sbatch",
            SlurmProgram::Squeue => "squeue",
            SlurmProgram::Scancel => "scancel",
            SlurmProgram::Scontrol => "scontrol",
            SlurmProgram::Sinfo => "sinfo",
        }
    }
}

/// How many times each command ran (whether it succeeded or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    pub sbatch: u64,
    pub squeue: u64,
    pub scancel: u64,
    pub scontrol: u64,
    pub sinfo: u64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.sbatch + self.squeue + self.scancel + self.scontrol + self.sinfo
    }

    /// The calls made since `earlier` (counts only grow).
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts {
            sbatch: self.sbatch.saturating_sub(earlier.sbatch),
            squeue: self.squeue.saturating_sub(earlier.squeue),
            scancel: self.scancel.saturating_sub(earlier.scancel),
            scontrol: self.scontrol.saturating_sub(earlier.scontrol),
            sinfo: self.sinfo.saturating_sub(earlier.sinfo),
        }
    }
}

/// How long one command may take before treefarm gives up on it (a
/// controller that does not answer makes clients retry for a long time).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The Slurm client of one coordinator: runs the commands and counts them.
#[derive(Debug)]
pub struct Slurm {
    timeout: Duration,
    counts: [AtomicU64; 5],
}

impl Default for Slurm {
    fn default() -> Self {
        Slurm::new()
    }
}

impl Slurm {
    pub fn new() -> Slurm {
        Slurm {
            timeout: DEFAULT_TIMEOUT,
            counts: Default::default(),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Slurm {
        self.timeout = timeout;
        self
    }

    /// The calls so far.
    pub fn counts(&self) -> CallCounts {
        let n = |p: SlurmProgram| self.counts[p as usize].load(Ordering::Relaxed);
        CallCounts {
            sbatch: n(SlurmProgram::Sbatch),
            squeue: n(SlurmProgram::Squeue),
            scancel: n(SlurmProgram::Scancel),
            scontrol: n(SlurmProgram::Scontrol),
            sinfo: n(SlurmProgram::Sinfo),
        }
    }

    /// Submits one attempt; its job id.
    pub async fn submit(
        &self,
        config: &SlurmConfig,
        attempt: &Attempt<'_>,
    ) -> Result<JobId, SlurmError> {
        let args = sbatch_args(config, attempt);
        let out = self.run(SlurmProgram::Sbatch, args.clone(), &[]).await?;
        parse_parsable(&out).map_err(|what| SlurmError::Parse {
            command: command_line(SlurmProgram::Sbatch, &args),
            line: out.trim().to_string(),
            what,
        })
    }

    /// Runs the storage check (see [`storage_check_args`]) to its end; its
    /// job id. A job that failed is [`SlurmError::Failed`] with an empty
    /// stderr; a refused submission has `sbatch`'s reason there.
    pub async fn submit_storage_check(
        &self,
        config: &SlurmConfig,
        name: &JobName,
        marker: &std::path::Path,
        reply: &std::path::Path,
        treefarm: &std::path::Path,
    ) -> Result<JobId, SlurmError> {
        let args = storage_check_args(config, name, marker, reply, treefarm);
        let out = self.run(SlurmProgram::Sbatch, args.clone(), &[]).await?;
        parse_parsable(&out).map_err(|what| SlurmError::Parse {
            command: command_line(SlurmProgram::Sbatch, &args),
            line: out.trim().to_string(),
            what,
        })
    }

    /// The jobs named `names` of this user, in one `squeue` call (none when
    /// `names` is empty).
    pub async fn queue(&self, names: &[JobName]) -> Result<QueueSnapshot, SlurmError> {
        if names.is_empty() {
            return Ok(QueueSnapshot::default());
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        self.squeue(squeue_args(names, uid)).await
    }

    /// Every job of this user, whatever its name, in one `squeue` call.
    pub async fn user_jobs(&self) -> Result<QueueSnapshot, SlurmError> {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        self.squeue(squeue_user_args(uid)).await
    }

    async fn squeue(&self, args: Vec<OsString>) -> Result<QueueSnapshot, SlurmError> {
        // UTC and Slurm's standard time format, whatever the user's
        // environment says, so start times parse to instants.
        let env = [("TZ", "UTC"), ("SLURM_TIME_FORMAT", "standard")];
        let out = self.run(SlurmProgram::Squeue, args.clone(), &env).await?;
        let rows = parse_squeue(&out).map_err(|(line, what)| SlurmError::Parse {
            command: command_line(SlurmProgram::Squeue, &args),
            line,
            what,
        })?;
        Ok(QueueSnapshot { rows })
    }

    /// Cancels `ids` in one `scancel` call (none when `ids` is empty). Jobs
    /// that already ended are no error.
    pub async fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let args = ids
            .iter()
            .map(|id| OsString::from(id.to_string()))
            .collect();
        self.run(SlurmProgram::Scancel, args, &[]).await.map(drop)
    }

    /// Sends `signal` (`TERM`) to `ids` — the batch shell and every step
    /// (`--full`) — in one `scancel` call, without cancelling them: the
    /// graceful half of a stop.
    pub async fn signal(&self, ids: &[JobId], signal: &str) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args: Vec<OsString> = vec![format!("--signal={signal}").into(), "--full".into()];
        args.extend(ids.iter().map(|id| OsString::from(id.to_string())));
        self.run(SlurmProgram::Scancel, args, &[]).await.map(drop)
    }

    /// Cancels the jobs named `name` of any user, in one `scancel` call (a
    /// job whose id treefarm never learnt).
    pub async fn cancel_named(&self, name: &JobName) -> Result<(), SlurmError> {
        let args = vec![OsString::from(format!("--name={name}"))];
        self.run(SlurmProgram::Scancel, args, &[]).await.map(drop)
    }

    /// The controller's `MinJobAge` (`scontrol show config`).
    pub async fn min_job_age(&self) -> Result<Duration, SlurmError> {
        let args = vec!["show".into(), "config".into()];
        let out = self.run(SlurmProgram::Scontrol, args.clone(), &[]).await?;
        min_job_age(&out).map_err(|what| SlurmError::Parse {
            command: command_line(SlurmProgram::Scontrol, &args),
            line: "MinJobAge".to_string(),
            what,
        })
    }

    /// The partitions and their nodes (`sinfo`).
    pub async fn capacity(&self) -> Result<Capacity, SlurmError> {
        let args = sinfo_args();
        let out = self.run(SlurmProgram::Sinfo, args.clone(), &[]).await?;
        Capacity::parse(&out).map_err(|(line, what)| SlurmError::Parse {
            command: command_line(SlurmProgram::Sinfo, &args),
            line,
            what,
        })
    }

    /// Any `scontrol` call (`update nodename=… state=down`, `show job 42`);
    /// its stdout.
    pub async fn scontrol(&self, args: &[&str]) -> Result<String, SlurmError> {
        let args = args.iter().map(OsString::from).collect();
        self.run(SlurmProgram::Scontrol, args, &[]).await
    }

    /// Runs one command, counted; its stdout on success.
    async fn run(
        &self,
        program: SlurmProgram,
        args: Vec<OsString>,
        env: &[(&str, &str)],
    ) -> Result<String, SlurmError> {
        self.counts[program as usize].fetch_add(1, Ordering::Relaxed);
        let command = command_line(program, &args);
        let mut cmd = tokio::process::Command::new(program.name());
        cmd.args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| SlurmError::Spawn {
            command: command.clone(),
            source,
        })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| SlurmError::TimedOut {
                command: command.clone(),
                after: self.timeout,
            })?
            .map_err(|source| SlurmError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(SlurmError::Failed {
                command,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `program arg arg …`, quoted as a shell would need, for messages.
fn command_line(program: SlurmProgram, args: &[OsString]) -> String {
    let mut line = program.name().to_string();
    for a in args {
        line.push(' ');
        line.push_str(&crate::agents::shell_quote(&a.to_string_lossy()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_index_by_program() {
        let slurm = Slurm::new();
        for p in [
            SlurmProgram::Sbatch,
            SlurmProgram::Squeue,
            SlurmProgram::Scancel,
            SlurmProgram::Scontrol,
            SlurmProgram::Sinfo,
        ] {
            slurm.counts[p as usize].fetch_add(1 + p as u64, Ordering::Relaxed);
        }
        let c = slurm.counts();
        assert_eq!(
            (c.sbatch, c.squeue, c.scancel, c.scontrol, c.sinfo),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(c.total(), 15);
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = command_line(
            SlurmProgram::Squeue,
            &["--format=%i|%T".into(), "--name=a".into()],
        );
        assert_eq!(line, "squeue '--format=%i|%T' --name=a");
    }
}
