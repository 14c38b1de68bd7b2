//! How often to ask `squeue`: `slurm.poll` after any change, doubling while
//! nothing changes (a cluster's controller serves every user; a quiet run
//! should cost it little), up to a ceiling that stays below the
//! controller's `MinJobAge`, the time a finished job stays visible to
//! `squeue` — so a job that ends right after one poll is still listed at
//! the next.

use std::time::Duration;

/// The longest interval treefarm waits between two polls, whatever the
/// controller allows: a change is seen within a minute.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `MinJobAge` from `scontrol show config` (a line `MinJobAge = 300 sec`).
pub fn min_job_age(show_config: &str) -> Result<Duration, String> {
    let line = show_config
        .lines()
        .find(|l| l.split_whitespace().next() == Some("MinJobAge"))
        .ok_or_else(|| "no `MinJobAge` line".to_string())?;
    let value = line
        .split_once('=')
        .map(|(_, v)| v.trim())
        .ok_or_else(|| format!("no `=` in `{line}`"))?;
    let secs = value.strip_suffix("sec").unwrap_or(value).trim();
    secs.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{line}`: MinJobAge is not a number of seconds"))
}

/// The interval before the next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollInterval {
    base: Duration,
    ceiling: Duration,
    current: Duration,
}

impl PollInterval {
    /// `base` is `slurm.poll`; `min_job_age` what the controller said (none:
    /// not known, and [`MAX_BACKOFF`] bounds it). The ceiling is half of
    /// `MinJobAge` — room for a slow `squeue` — and `base` never exceeds it.
    pub fn new(base: Duration, min_job_age: Option<Duration>) -> PollInterval {
        let ceiling = match min_job_age {
            Some(age) => MAX_BACKOFF.min(age / 2),
            None => MAX_BACKOFF,
        }
        .max(Duration::from_secs(1));
        let base = base.min(ceiling);
        PollInterval {
            base,
            ceiling,
            current: base,
        }
    }

    /// The wait before the next poll.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The highest the wait can go.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// After a poll: back to `base` when something changed, else twice the
    /// last wait, up to the ceiling. Returns the new wait.
    pub fn after_poll(&mut self, changed: bool) -> Duration {
        self.current = if changed {
            self.base
        } else {
            self.current.saturating_mul(2).min(self.ceiling)
        };
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As `scontrol show config` prints it (Slurm 22.05, lines trimmed).
    const SHOW_CONFIG: &str = "\
Configuration data as of 2026-12-06T21:57:40
MailProg                = /usr/bin/mail
MaxJobCount             = 10000
MinJobAge               = 300 sec
MpiDefault              = none
";

    #[test]
    fn min_job_age_is_read_from_show_config() {
        assert_eq!(min_job_age(SHOW_CONFIG), Ok(Duration::from_secs(300)));
        assert_eq!(min_job_age("MinJobAge = 2"), Ok(Duration::from_secs(2)));
        assert!(min_job_age("MaxJobCount = 1").is_err());
        assert!(min_job_age("MinJobAge = soon").is_err());
    }

    #[test]
    fn backs_off_while_nothing_changes_and_resets_on_change() {
        let mut p = PollInterval::new(Duration::from_secs(5), Some(Duration::from_secs(300)));
        assert_eq!(p.current(), Duration::from_secs(5));
        let waits: Vec<u64> = (0..6).map(|_| p.after_poll(false).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert_eq!(p.after_poll(true), Duration::from_secs(5));
    }

    #[test]
    fn never_above_half_the_controllers_min_job_age() {
        let age = Duration::from_secs(30);
        let mut p = PollInterval::new(Duration::from_secs(5), Some(age));
        for _ in 0..10 {
            assert!(p.after_poll(false) <= age / 2);
        }
        assert_eq!(p.current(), Duration::from_secs(15));
        // A base above the ceiling is brought down to it.
        let p = PollInterval::new(Duration::from_secs(120), Some(Duration::from_secs(10)));
        assert_eq!(p.current(), Duration::from_secs(5));
        assert!(p.current() < Duration::from_secs(10));
        // Unknown MinJobAge: the fixed ceiling.
        assert_eq!(
            PollInterval::new(Duration::from_secs(5), None).ceiling(),
            MAX_BACKOFF
        );
    }
}
