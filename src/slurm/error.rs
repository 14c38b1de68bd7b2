//! What can go wrong between treefarm and Slurm: a command that could not
//! start, failed or printed what treefarm cannot read; a `slurm:` setting
//! that cannot work; a request no node can meet.

use std::time::Duration;

use super::capacity::Refusal;
use crate::error::InputError;

/// A Slurm command's failure names the command line and keeps its stderr; a
/// configuration or request problem is an [`InputError`] (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The program could not be started (not installed, not on `PATH`).
    #[error("cannot run `{command}`: {source}\nhint: is Slurm installed and on PATH? `scripts/slurm-cluster.sh start` starts a one-node cluster here")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}): {}", stderr_or_none(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    /// The command did not answer in time (a controller that does not
    /// respond makes every client command wait).
    #[error("`{command}` did not answer within {}\nhint: is slurmctld up? `scontrol ping` says", humantime::format_duration(*.after))]
    TimedOut { command: String, after: Duration },
    /// The command succeeded but printed something treefarm cannot read.
    #[error("cannot read the output of `{command}`: {what} in `{line}`")]
    Parse {
        command: String,
        line: String,
        what: String,
    },
    /// A `slurm:` setting, or a request no node can meet.
    #[error(transparent)]
    Input(#[from] InputError),
}

fn stderr_or_none(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        "no message on stderr".to_string()
    } else {
        trimmed.to_string()
    }
}

impl From<Refusal> for SlurmError {
    fn from(r: Refusal) -> SlurmError {
        SlurmError::Input(r.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_names_its_command_line_and_stderr() {
        let err = SlurmError::Failed {
            command: "sbatch --parsable --partition=gpu job.sh".into(),
            status: "exit status: 1".into(),
            stderr: "sbatch: error: invalid partition specified: gpu\n".into(),
        };
        assert_eq!(
            err.to_string(),
            "`sbatch --parsable --partition=gpu job.sh` failed (exit status: 1): sbatch: error: invalid partition specified: gpu"
        );
        let silent = SlurmError::Failed {
            command: "scancel 1".into(),
            status: "exit status: 1".into(),
            stderr: String::new(),
        };
        assert!(
            silent.to_string().ends_with("no message on stderr"),
            "{silent}"
        );
    }
}
