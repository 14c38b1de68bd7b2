//! `executor: slurm` at `run`: everything checked against the cluster before
//! anything of the run is created — the client commands on `PATH`, every
//! spec's request against the nodes (`sinfo`), and `worktree_dir` shared
//! with the nodes and the nodes' `treefarm` of this version (one short real
//! job). The executor itself is
//! `runner::agent::slurm`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::InputError;
use crate::runner::agent::slurm::treefarm_on_nodes;
use crate::slurm::{
    check_reply, Capacity, JobKind, JobName, Refusal, Request, Slurm, SlurmConfig, SlurmError,
    STORAGE_CHECK,
};
use crate::spec::Spec;

/// The client commands the executor runs.
const PROGRAMS: [&str; 4] = ["sbatch", "squeue", "scancel", "sinfo"];

/// How long the storage check job may take to start and end (`sbatch
/// --wait`): it asks for one CPU for one minute, so only a full cluster
/// makes it wait.
const CHECK_DEADLINE: Duration = Duration::from_secs(120);

/// Between two looks at the check job.
const CHECK_POLL: Duration = Duration::from_millis(500);

/// Checks `executor: slurm` for `specs` (see the module header); the
/// Slurm calls it made, counted in the run's. `run_id` names the check's
/// job.
pub(crate) fn check(
    config: &Config,
    specs: &[Spec],
    worktree_dir: &Path,
    run_id: &str,
) -> anyhow::Result<crate::slurm::CallCounts> {
    check_programs(std::env::var_os("PATH").as_deref(), worktree_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let slurm = Slurm::new();
        check_requests(&slurm, config, specs).await?;
        check_storage(&config.slurm, worktree_dir, run_id).await?;
        let mut calls = slurm.counts();
        // The storage check: one `sbatch --wait`.
        calls.sbatch += 1;
        Ok(calls)
    })
}

/// `sbatch` and the other client commands are on `PATH`.
fn check_programs(path: Option<&std::ffi::OsStr>, cwd: &Path) -> Result<(), InputError> {
    for program in PROGRAMS {
        if crate::agents::find_program(program, path, cwd).is_none() {
            return Err(InputError::new(format!(
                "executor `slurm` needs `{program}` on PATH, and it is not there"
            ))
            .with_hint("install Slurm's client commands (Debian: slurm-client) on this machine, or run with `executor: local`"));
        }
    }
    Ok(())
}

/// Every spec's request (the run's `slurm:` with the spec's override) fits
/// some node of its partition; else the spec, its file and the figures.
async fn check_requests(slurm: &Slurm, config: &Config, specs: &[Spec]) -> anyhow::Result<()> {
    let capacity = slurm.capacity().await.map_err(unreachable_cluster)?;
    for spec in specs {
        let merged = match &spec.slurm {
            Some(o) => config.slurm.with_override(o),
            None => config.slurm.clone(),
        };
        let key = format!("spec {} ({}): slurm", spec.id, spec.rel_path);
        merged.validate(&key)?;
        if let Err(refusal) = capacity.check(&Request::of(&merged, config.agent.timeout)) {
            return Err(InputError::new(format!(
                "spec {} ({}): {refusal}",
                spec.id, spec.rel_path
            ))
            .with_hint(refusal.hint())
            .into());
        }
    }
    check_gate_request(&capacity, config)?;
    Ok(())
}

/// With `slurm.gates` and a gate, the gate jobs' request (the run's
/// `slurm:`, `--time` from `merge.gate_timeout`) fits some node too: a
/// gate job that could never start would stop the queue only once the
/// first branch is ready.
fn check_gate_request(capacity: &Capacity, config: &Config) -> Result<(), InputError> {
    if !config.slurm.gates || config.merge.gate.trim().is_empty() {
        return Ok(());
    }
    let request = Request::of(&config.slurm, config.merge.gate_timeout);
    capacity.check(&request).map_err(|refusal| {
        let hint = match refusal {
            Refusal::TooLong { .. } => "lower `merge.gate_timeout` (a gate job's time limit is it plus 5 minutes unless `slurm.time` is set), or choose a partition with a longer limit",
            _ => refusal.hint(),
        };
        InputError::new(format!("slurm.gates: the merge-queue gate's jobs: {refusal}"))
            .with_hint(hint)
    })
}

/// A marker the coordinator writes in `worktree_dir` is seen by a job, and
/// the job's reply beside it is seen here (within `exit_grace`).
async fn check_storage(
    config: &SlurmConfig,
    worktree_dir: &Path,
    run_id: &str,
) -> anyhow::Result<()> {
    let created_dir = !worktree_dir.exists();
    std::fs::create_dir_all(worktree_dir).map_err(|e| {
        InputError::new(format!(
            "cannot create worktree_dir `{}`: {e}",
            worktree_dir.display()
        ))
        .with_hint("set `worktree_dir` to a writable folder on storage the nodes share")
    })?;
    let marker = worktree_dir.join(format!(".treefarm-storage-{run_id}"));
    let reply = worktree_dir.join(format!(".treefarm-storage-{run_id}.seen"));
    let partial = reply.with_extension("partial");
    let result = async {
        std::fs::write(&marker, run_id).map_err(|e| {
            InputError::new(format!("cannot write `{}`: {e}", marker.display()))
                .with_hint("`worktree_dir` must be writable")
        })?;
        storage_job(config, worktree_dir, &marker, &reply, run_id).await
    }
    .await;
    for file in [&marker, &reply, &partial] {
        let _ = std::fs::remove_file(file);
    }
    if created_dir {
        let _ = std::fs::remove_dir(worktree_dir);
    }
    result
}

async fn storage_job(
    config: &SlurmConfig,
    worktree_dir: &Path,
    marker: &Path,
    reply: &Path,
    run_id: &str,
) -> anyhow::Result<()> {
    let name = JobName::new(run_id, STORAGE_CHECK, JobKind::Check, 1);
    let treefarm = treefarm_on_nodes(config);
    let waiting = Slurm::new().with_timeout(CHECK_DEADLINE);
    let ran = match waiting
        .submit_storage_check(config, &name, marker, reply, &treefarm)
        .await
    {
        Ok(id) => format!("job {id} ended"),
        Err(SlurmError::Failed { stderr, status, .. }) if stderr.trim().is_empty() => {
            format!("the check job failed ({status})")
        }
        Err(SlurmError::TimedOut { .. }) => {
            let _ = Slurm::new().cancel_named(&name).await;
            return Err(InputError::new(format!(
                "the storage check job `{name}` did not end within {} (cancelled)",
                humantime::format_duration(CHECK_DEADLINE)
            ))
            .with_hint("the cluster is full or the partition is down (`squeue`, `sinfo`); try again when a CPU is free")
            .into());
        }
        Err(other) => return Err(unreachable_cluster(other).into()),
    };
    // Shared file systems may publish the job's file late.
    let grace_end = Instant::now() + config.exit_grace;
    while !reply.exists() {
        if Instant::now() >= grace_end {
            return Err(InputError::new(format!(
                "worktree_dir `{}` is not shared with the Slurm nodes ({ran}): the job did not find `{}`, which treefarm wrote here, or its answer `{}` did not appear here within slurm.exit_grace ({})",
                worktree_dir.display(),
                marker.display(),
                file_name(reply).display(),
                humantime::format_duration(config.exit_grace),
            ))
            .with_hint("set `worktree_dir` to a folder on a file system every node mounts at the same path (NFS, Lustre, …), readable and writable by the jobs' user")
            .into());
        }
        tokio::time::sleep(CHECK_POLL).await;
    }
    let text = std::fs::read_to_string(reply).unwrap_or_default();
    check_version(&treefarm, config.treefarm.is_some(), check_reply(&text))?;
    Ok(())
}

/// The version of this treefarm, as `treefarm --version` prints it.
fn own_version() -> String {
    format!("treefarm {}", env!("CARGO_PKG_VERSION"))
}

/// The nodes' `treefarm` (`path`; `configured`: set by `slurm.treefarm`)
/// answered `answer` to `--version` in the storage check: the same version
/// as this coordinator's, else exit 2 naming the path, the answer and the
/// fix (every job runs it: a missing or different one would fail each
/// attempt obscurely).
fn check_version(path: &Path, configured: bool, answer: Option<String>) -> Result<(), InputError> {
    let own = own_version();
    let answer = answer.unwrap_or_default();
    if answer.lines().next().map(str::trim) == Some(own.as_str()) {
        return Ok(());
    }
    let said = if answer.is_empty() {
        "nothing".to_string()
    } else {
        format!("`{}`", answer.lines().collect::<Vec<_>>().join(" / "))
    };
    let whose = if configured {
        "slurm.treefarm"
    } else {
        "this coordinator's own path (slurm.treefarm not set)"
    };
    Err(InputError::new(format!(
        "the Slurm nodes cannot run treefarm at `{}` ({whose}): `--version` there answered {said}, not `{own}`",
        path.display()
    ))
    .with_hint(format!(
        "install {own} at that path on every node (each job runs it), or set `slurm.treefarm` to where it is on the nodes"
    )))
}

fn file_name(path: &Path) -> PathBuf {
    path.file_name().map(PathBuf::from).unwrap_or_default()
}

/// A Slurm command that failed before any job: exit 2 with its message
/// (the controller is down, or a setting is refused by `sbatch`).
fn unreachable_cluster(err: SlurmError) -> InputError {
    match err {
        SlurmError::Input(input) => input,
        other => InputError::new(format!("executor `slurm`: {other}")).with_hint(
            "check that the controller answers (`scontrol ping`) and that the `slurm:` settings are accepted by `sbatch`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_job_no_partition_would_start_is_refused_naming_the_gate_timeout() {
        let capacity =
            Capacity::parse("debug*|n1|2|24105|infinite\nshort|n1|2|24105|1:00\n").expect("sinfo");
        let mut config = Config::default();
        config.merge.gate = "make check".into();
        config.merge.gate_timeout = Some(Duration::from_secs(3600));
        config.slurm.partition = Some("short".into());
        // Gates on the coordinator: nothing to check.
        check_gate_request(&capacity, &config).expect("gates are local");
        config.slurm.gates = true;
        let err = check_gate_request(&capacity, &config).expect_err("an hour on `short`");
        assert!(
            err.message.starts_with(
                "slurm.gates: the merge-queue gate's jobs: a time limit of 65 minutes"
            ),
            "{}",
            err.message
        );
        assert!(err
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("merge.gate_timeout")));
        config.merge.gate_timeout = None;
        config.slurm.time = Some(Duration::from_secs(60));
        check_gate_request(&capacity, &config).expect("one minute fits");
        config.merge.gate = String::new();
        config.slurm.cpus = Some(64);
        check_gate_request(&capacity, &config).expect("no gate, no gate job");
    }

    #[test]
    fn the_nodes_treefarm_must_be_this_version() {
        let path = Path::new("/opt/tf/treefarm");
        check_version(path, true, Some(own_version())).expect("same version");
        let err = check_version(
            path,
            true,
            Some("sh: 1: /opt/tf/treefarm: not found".into()),
        )
        .expect_err("missing");
        assert!(
            err.message.contains("`/opt/tf/treefarm` (slurm.treefarm)"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("sh: 1: /opt/tf/treefarm: not found"),
            "{}",
            err.message
        );
        assert!(err
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("slurm.treefarm")));
        let err = check_version(path, false, Some("treefarm 0.0.1".into())).expect_err("older");
        assert!(err.message.contains("`treefarm 0.0.1`"), "{}", err.message);
        assert!(
            err.message.contains("slurm.treefarm not set"),
            "{}",
            err.message
        );
        let err = check_version(path, true, None).expect_err("no answer");
        assert!(err.message.contains("answered nothing"), "{}", err.message);
    }
}
