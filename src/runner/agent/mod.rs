//! One agent's life, from its planted worktree to its verdict.
//!
//! - `instance`: the instance task — setup, attempts with retries, commit
//!   and scope audit, the verdict.
//! - `audit`: what an attempt left on its branch, audited against the
//!   spec's declared files.
//! - `executor`: the executor seam ([`executor::Executor`]) and the local
//!   backend's handle on it ([`executor::Local`]).
//! - `job`: the agent's job — command, environment, prompt, sandbox.
//! - `setup`: `setup.copy`, `setup.link` and `setup.command` in a fresh
//!   worktree.
//! - `local`: the local backend — a process group under the exit-file
//!   wrapper, supervised to its end.
//! - `slurm`: the Slurm backend — one batch job per attempt running
//!   `agent-exec`, one shared `squeue` poller per run, judged by the exit
//!   file.
//! - `process`: process-group primitives (subreaper, group liveness).
//! - `status_file`: the agent's optional status JSON.
//! - `exec`: `treefarm agent-exec`, the entry point a batch job runs: the
//!   local backend's start of one agent (sandbox applied before `exec`),
//!   on whatever machine the job landed, from a job file.
//! - `handback`: the conflict hand-back — preparing and judging the
//!   attempt in which the agent resolves a conflicted merge.

pub mod audit;
pub mod exec;
pub mod executor;
pub mod handback;
pub mod instance;
pub mod job;
pub mod local;
pub mod process;
pub mod setup;
pub mod slurm;
pub mod status_file;
