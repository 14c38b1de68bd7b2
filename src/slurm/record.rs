//! What the journal keeps of the Slurm side of a run: each attempt's job
//! ([`JobRecord`], in its instance's record) and the run's `slurm:` settings
//! with the calls made so far ([`SlurmRun`], in the run's record). Data only.

use serde::{Deserialize, Serialize};

/// One attempt's Slurm batch job, as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobRecord {
    /// `treefarm:<run>:<spec>:<kind><n>`, unique to the attempt: the name
    /// a job submitted just before a crash is found by.
    pub name: String,
    /// The job id `sbatch --parsable` answered; none while the submission
    /// is under way.
    #[serde(default)]
    pub id: Option<u64>,
    /// Slurm's last state for it (`PENDING`, `RUNNING`, `COMPLETED`, …).
    #[serde(default)]
    pub state: Option<String>,
    /// Why it is pending (Slurm's reason), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was first seen pending with its current reason (ms since
    /// the epoch), for `pending 3m: Resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since_ms: Option<u64>,
}

impl JobRecord {
    /// `RUNNING`, or `pending 3m: Resources` (at `now_ms`).
    pub fn describe(&self, now_ms: u64) -> String {
        let state = self.state.as_deref().unwrap_or("SUBMITTING");
        match (state, self.pending_since_ms) {
            ("PENDING" | "REQUEUED", Some(since)) => {
                let secs = now_ms.saturating_sub(since) / 1000;
                let age = if secs >= 3600 {
                    format!("{}h", secs / 3600)
                } else if secs >= 60 {
                    format!("{}m", secs / 60)
                } else {
                    format!("{secs}s")
                };
                match &self.reason {
                    Some(reason) => format!("pending {age}: {reason}"),
                    None => format!("pending {age}"),
                }
            }
            (state, _) => state.to_string(),
        }
    }
}

/// The Slurm side of a run (`executor: slurm`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SlurmRun {
    pub config: super::SlurmConfig,
    /// Every `sbatch`, `squeue`, `scancel`, `scontrol` and `sinfo` call of
    /// the run's coordinators.
    #[serde(default)]
    pub calls: super::CallCounts,
    /// How many times the shared poller asked `squeue` (one call each).
    #[serde(default)]
    pub polls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_job_says_for_how_long_and_why() {
        let mut job = JobRecord {
            name: "treefarm:r1:020:a1".into(),
            id: Some(42),
            state: Some("PENDING".into()),
            reason: Some("Resources".into()),
            pending_since_ms: Some(1_000),
        };
        assert_eq!(
            job.describe(1_000 + 3 * 60_000 + 5_000),
            "pending 3m: Resources"
        );
        assert_eq!(job.describe(1_000 + 12_000), "pending 12s: Resources");
        assert_eq!(job.describe(1_000 + 2 * 3_600_000), "pending 2h: Resources");
        job.reason = None;
        assert_eq!(job.describe(1_000), "pending 0s");
        job.state = Some("RUNNING".into());
        job.pending_since_ms = None;
        assert_eq!(job.describe(99_000), "RUNNING");
        job.state = None;
        assert_eq!(job.describe(0), "SUBMITTING");
    }
}
