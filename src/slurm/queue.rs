//! One `squeue` call for every job of a run, and its parse.
//!
//! Jobs are asked for by name (`--name=a,b,…`), not by id: a name is known
//! before `sbatch` answers (so a job submitted just before a crash is found),
//! and `squeue --jobs` fails outright when one of the ids has left the
//! queue, while an absent name is simply not listed. `--states=all` keeps
//! the jobs that ended less than `MinJobAge` ago; a job asked for and not
//! listed has left the queue ([`QueueSnapshot::find`] answers `None`).
//!
//! The reason comes last in each line because it is free text (`squeue`
//! prints a reason's description when the controller set one, e.g. `Nodes
//! required for job are DOWN, DRAINED or reserved …`).

use std::ffi::OsString;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::job::{JobId, JobKind, JobName};

/// The `--format` of [`squeue_args`]: id, state, start time, name, reason.
const FORMAT: &str = "--format=%i|%T|%S|%j|%r";

/// The `squeue` argv (without the program) that lists the jobs `names` of
/// user `uid`, finished ones included. Run it with `TZ=UTC` and
/// `SLURM_TIME_FORMAT=standard` so start times read as UTC (the edge in
/// `command` does).
pub fn squeue_args(names: &[JobName], uid: u32) -> Vec<OsString> {
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "--noheader".into(),
        "--states=all".into(),
        format!("--user={uid}").into(),
        format!("--name={list}").into(),
        FORMAT.into(),
    ]
}

/// The `squeue` argv that lists every job of user `uid`, whatever its
/// name, finished ones included (recovery looks for a run's gate jobs by
/// their name's prefix; run it as [`squeue_args`]).
pub fn squeue_user_args(uid: u32) -> Vec<OsString> {
    vec![
        "--noheader".into(),
        "--states=all".into(),
        format!("--user={uid}").into(),
        FORMAT.into(),
    ]
}

/// A job's state, as `squeue --format=%T` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    /// Requeued and waiting to run again (`REQUEUED`, `REQUEUE_HOLD`,
    /// `REQUEUE_FED`): pending once more.
    Requeued,
    Configuring,
    Running,
    Suspended,
    Completing,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    /// Any other state this version of Slurm names (`STAGE_OUT`, `SIGNALING`,
    /// `RESIZING`, `STOPPED`, `SPECIAL_EXIT`, `REVOKED`, …), verbatim.
    Other(String),
}

impl JobState {
    pub fn parse(text: &str) -> JobState {
        match text.trim() {
            "PENDING" => JobState::Pending,
            "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" => JobState::Requeued,
            "CONFIGURING" => JobState::Configuring,
            "RUNNING" => JobState::Running,
            "SUSPENDED" => JobState::Suspended,
            "COMPLETING" => JobState::Completing,
            "COMPLETED" => JobState::Completed,
            "CANCELLED" => JobState::Cancelled,
            "FAILED" => JobState::Failed,
            "TIMEOUT" => JobState::Timeout,
            "NODE_FAIL" => JobState::NodeFail,
            "PREEMPTED" => JobState::Preempted,
            "BOOT_FAIL" => JobState::BootFail,
            "DEADLINE" => JobState::Deadline,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            other => JobState::Other(other.to_string()),
        }
    }

    /// Slurm's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Requeued => "REQUEUED",
            JobState::Configuring => "CONFIGURING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Cancelled => "CANCELLED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Preempted => "PREEMPTED",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Other(s) => s,
        }
    }

    /// Waiting to start (again).
    pub fn is_pending(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Requeued)
    }

    /// Ended: the job will not run again by itself (a requeue shows as a
    /// new `PENDING`/`REQUEUED`, with the same id).
    pub fn is_finished(&self) -> bool {
        match self {
            JobState::Completed
            | JobState::Cancelled
            | JobState::Failed
            | JobState::Timeout
            | JobState::NodeFail
            | JobState::Preempted
            | JobState::BootFail
            | JobState::Deadline
            | JobState::OutOfMemory => true,
            JobState::Other(s) => matches!(s.as_str(), "SPECIAL_EXIT" | "REVOKED"),
            _ => false,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `squeue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: JobId,
    pub state: JobState,
    /// When it started, or (pending) when the scheduler expects it to, in
    /// seconds since the Unix epoch; none while Slurm does not know.
    pub start: Option<i64>,
    pub name: String,
    /// Why it is pending (or why it ended); none when Slurm says `None`.
    pub reason: Option<String>,
}

/// Parses `squeue` output in the [`squeue_args`] format; on failure, the
/// line and what is wrong with it.
pub fn parse_squeue(stdout: &str) -> Result<Vec<JobRow>, (String, String)> {
    let mut rows = Vec::new();
    for line in stdout.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| (line.to_string(), what.to_string());
        let mut fields = line.splitn(5, '|');
        let (Some(id), Some(state), Some(start), Some(name), Some(reason)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(bad("expected 5 fields separated by `|`"));
        };
        let id = id
            .trim()
            .parse::<u64>()
            .map(JobId)
            .map_err(|_| bad("the job id is not a number"))?;
        let start = match start.trim() {
            "N/A" | "Unknown" | "None" | "" => None,
            t => {
                Some(parse_utc(t).ok_or_else(|| bad("the start time is not YYYY-MM-DDTHH:MM:SS"))?)
            }
        };
        let reason = match reason.trim() {
            "None" | "" => None,
            r => Some(r.to_string()),
        };
        rows.push(JobRow {
            id,
            state: JobState::parse(state),
            start,
            name: name.to_string(),
            reason,
        });
    }
    Ok(rows)
}

/// `YYYY-MM-DDTHH:MM:SS` (Slurm's standard format) read as UTC, in seconds
/// since the epoch.
fn parse_utc(text: &str) -> Option<i64> {
    let (date, clock) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (c.next()??, c.next()??, c.next()??);
    if d.next().is_some() || c.next().is_some() {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let clock = time::Time::from_hms(hour, minute, second).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// What one poll saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub rows: Vec<JobRow>,
}

impl QueueSnapshot {
    /// The job named `name`, or `None` when it has left the queue (or was
    /// never submitted). When several jobs carry the name (a second
    /// submission), the newest one still active, else the newest.
    pub fn find(&self, name: &JobName) -> Option<&JobRow> {
        let name = name.to_string();
        let mut named: Vec<&JobRow> = self.rows.iter().filter(|r| r.name == name).collect();
        named.sort_by_key(|r| (!r.state.is_finished(), r.id));
        named.last().copied()
    }

    /// The gate jobs of run `run` that have not ended (recovery cancels
    /// what a killed coordinator left; the queue gates again).
    pub fn live_gates(&self, run: &str) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self
            .rows
            .iter()
            .filter(|r| !r.state.is_finished())
            .filter(|r| {
                JobName::parse(&r.name).is_some_and(|n| n.kind == JobKind::Gate && n.run == run)
            })
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    /// Whether anything a user would see changed since `before`: a job
    /// appeared, left, or changed state or reason. (A pending job's
    /// expected start moves with every scheduler pass; that is no change.)
    pub fn changed_since(&self, before: &QueueSnapshot) -> bool {
        let key = |s: &QueueSnapshot| {
            let mut k: Vec<(JobId, JobState, Option<String>)> = s
                .rows
                .iter()
                .map(|r| (r.id, r.state.clone(), r.reason.clone()))
                .collect();
            k.sort_by_key(|(id, _, _)| *id);
            k
        };
        key(self) != key(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::job::JobKind;

    // Lines as the one-node cluster printed them (Slurm 22.05).
    const SAMPLE: &str = "\
16|PENDING|N/A|treefarm:r1:020:a1|None
9|PENDING|N/A|treefarm:r1:030:a1|Resources
10|PENDING|N/A|treefarm:r1:040:a1|Priority
2|PENDING|N/A|treefarm:r1:050:a1|PartitionConfig
8|RUNNING|2026-12-06T21:57:09|treefarm:r1:010:a1|None
13|NODE_FAIL|2026-12-06T21:57:46|treefarm:r1:060:a1|NodeDown
15|PENDING|N/A|treefarm:r1:070:a1|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions
";

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect()
    }

    fn name(spec: &str) -> JobName {
        JobName::new("r1", spec, JobKind::Attempt, 1)
    }

    #[test]
    fn the_live_gate_jobs_of_a_run_are_told_apart_by_name() {
        let rows = parse_squeue(
            "\
20|RUNNING|2026-12-06T21:57:46|treefarm:r1:gate:3|None
21|PENDING|N/A|treefarm:r1:gate:4|Resources
22|COMPLETED|2026-12-06T21:57:46|treefarm:r1:gate:2|None
23|RUNNING|2026-12-06T21:57:46|treefarm:r2:gate:1|None
24|RUNNING|2026-12-06T21:57:46|treefarm:r1:gate:a1|None
25|RUNNING|2026-12-06T21:57:46|gate|None
",
        )
        .expect("parse");
        let snapshot = QueueSnapshot { rows };
        assert_eq!(snapshot.live_gates("r1"), [JobId(20), JobId(21)]);
        assert_eq!(snapshot.live_gates("r2"), [JobId(23)]);
        assert_eq!(
            strings(squeue_user_args(7)),
            [
                "--noheader",
                "--states=all",
                "--user=7",
                "--format=%i|%T|%S|%j|%r"
            ]
        );
    }

    #[test]
    fn the_argv_asks_for_every_name_at_once() {
        assert_eq!(
            strings(squeue_args(&[name("010"), name("020")], 1000)),
            [
                "--noheader",
                "--states=all",
                "--user=1000",
                "--name=treefarm:r1:010:a1,treefarm:r1:020:a1",
                "--format=%i|%T|%S|%j|%r",
            ]
        );
    }

    #[test]
    fn rows_parse_with_states_times_and_free_text_reasons() {
        let rows = parse_squeue(SAMPLE).expect("parses");
        assert_eq!(rows.len(), 7);
        assert_eq!(rows[0].id, JobId(16));
        assert_eq!(rows[0].reason, None);
        assert_eq!(rows[0].start, None);
        assert_eq!(rows[1].reason.as_deref(), Some("Resources"));
        assert_eq!(rows[4].state, JobState::Running);
        // 2026-12-06T21:57:09Z
        assert_eq!(rows[4].start, Some(1_796_594_229));
        assert_eq!(rows[5].state, JobState::NodeFail);
        assert!(rows[5].state.is_finished());
        assert_eq!(
            rows[6].reason.as_deref(),
            Some("Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions")
        );
    }

    #[test]
    fn jobs_that_left_the_queue_are_absent_not_errors() {
        let snap = QueueSnapshot {
            rows: parse_squeue(SAMPLE).expect("parses"),
        };
        assert_eq!(snap.find(&name("010")).map(|r| r.id), Some(JobId(8)));
        assert_eq!(snap.find(&name("999")), None);
        assert_eq!(parse_squeue(""), Ok(Vec::new()));
    }

    #[test]
    fn a_second_job_of_the_same_name_prefers_the_active_one() {
        let snap = QueueSnapshot {
            rows: parse_squeue(
                "5|RUNNING|2026-12-06T21:57:09|treefarm:r1:020:a1|None\n\
                 7|CANCELLED|2026-12-06T21:58:09|treefarm:r1:020:a1|None\n",
            )
            .expect("parses"),
        };
        assert_eq!(snap.find(&name("020")).map(|r| r.id), Some(JobId(5)));
    }

    #[test]
    fn malformed_lines_are_named() {
        for bad in [
            "x|PENDING|N/A|n|None",
            "1|PENDING|N/A",
            "1|RUNNING|yesterday|n|None",
            "1|RUNNING|2026-13-01T00:00:00|n|None",
        ] {
            let (line, _) = parse_squeue(bad).expect_err(bad);
            assert_eq!(line, bad);
        }
    }

    #[test]
    fn states_round_trip_and_classify() {
        for s in [
            "PENDING",
            "CONFIGURING",
            "RUNNING",
            "SUSPENDED",
            "COMPLETING",
            "COMPLETED",
            "CANCELLED",
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
            "OUT_OF_MEMORY",
            "STAGE_OUT",
        ] {
            assert_eq!(JobState::parse(s).as_str(), s);
        }
        assert!(JobState::parse("REQUEUE_HOLD").is_pending());
        assert!(!JobState::parse("RUNNING").is_finished());
        assert!(!JobState::parse("COMPLETING").is_finished());
        assert!(JobState::parse("SPECIAL_EXIT").is_finished());
    }

    #[test]
    fn a_moving_start_estimate_is_no_change_a_new_reason_is() {
        let a = QueueSnapshot {
            rows: parse_squeue("9|PENDING|2026-12-06T22:00:00|n|Priority\n").expect("parses"),
        };
        let later = QueueSnapshot {
            rows: parse_squeue("9|PENDING|2026-12-06T22:05:00|n|Priority\n").expect("parses"),
        };
        let reason = QueueSnapshot {
            rows: parse_squeue("9|PENDING|2026-12-06T22:05:00|n|Resources\n").expect("parses"),
        };
        assert!(!later.changed_since(&a));
        assert!(reason.changed_since(&a));
        assert!(QueueSnapshot::default().changed_since(&a));
    }
}
