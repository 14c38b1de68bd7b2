//! The Slurm vocabulary of the future `executor: slurm` (issue 24): what
//! treefarm asks of `sbatch`, `squeue`, `scancel`, `scontrol` and `sinfo`,
//! and what it makes of their answers; the executor itself is
//! `runner::agent::slurm`.
//!
//! - `config` — the `slurm:` section ([`SlurmConfig`]), its validation (the
//!   `sbatch` flags treefarm owns are refused in `extra_args`) and the
//!   per-spec override merge.
//! - `job` — the job name of one attempt (and its inverse) and the `sbatch`
//!   argv that submits it.
//! - `queue` — one batched `squeue` call for every job of a run, and its
//!   parse.
//! - `reason` — pending reasons: those that clear by themselves, and those
//!   that never do (with the fix).
//! - `poll` — the poll interval: backs off while nothing changes, never
//!   above the controller's `MinJobAge`.
//! - `capacity` — the largest node of each partition, so that a request no
//!   node can meet is refused before anything is submitted.
//! - `timefmt` — Slurm's time formats (`--time`, `sinfo`'s limits).
//! - `record` — what the journal keeps of a run's jobs and calls.
//! - `command` — the thin async edges that run the commands, each call
//!   counted.
//!
//! Everything but `command` is pure: text in, data out.

mod capacity;
mod command;
mod config;
mod error;
mod job;
mod poll;
mod queue;
mod reason;
mod record;
mod timefmt;

pub use capacity::{sinfo_args, Capacity, NodeSize, Partition, Refusal, Request};
pub use command::{CallCounts, Slurm, SlurmProgram, DEFAULT_TIMEOUT};
pub use config::{MemSize, OwnedFlag, Owner, SlurmConfig, SlurmOverride, OWNED_FLAGS, TIME_MARGIN};
pub use error::SlurmError;
pub use job::{
    check_reply, parse_parsable, sbatch_args, storage_check_args, Attempt, JobId, JobKind, JobName,
    GATE, SIGNAL_LEAD, STORAGE_CHECK,
};
pub use poll::{min_job_age, PollInterval, MAX_BACKOFF};
pub use queue::{parse_squeue, squeue_args, squeue_user_args, JobRow, JobState, QueueSnapshot};
pub use reason::{classify, Pending};
pub use record::{JobRecord, SlurmRun};
pub use timefmt::{format_time_limit, parse_time_limit};
