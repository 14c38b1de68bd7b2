//! Why a job is pending, and whether that can change by itself.
//!
//! Most reasons clear as the cluster moves (`Resources`, `Priority`,
//! `Dependency`, `BeginTime`, a down node, a group limit of the account or
//! QOS); `slurm.max_pending` bounds the wait for those. A few never clear:
//! the job asks what its partition, account or QOS can never give, and
//! `sbatch` accepted it anyway (with `EnforcePartLimits=NO`, Slurm's
//! default, a job asking more CPUs than any node has is queued and left
//! pending with `PartitionConfig` forever). For those treefarm cancels the
//! job and fails the spec with the fix.
//!
//! An unknown reason counts as one that can clear: cancelling a job that
//! would have run is worse than waiting for `max_pending`.

use serde::{Deserialize, Serialize};

/// A pending job's prospects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pending", rename_all = "snake_case")]
pub enum Pending {
    /// It may still start; `reason` as Slurm gave it.
    CanClear { reason: String },
    /// It never will; `fix` says what to change.
    Never { reason: String, fix: String },
}

impl Pending {
    pub fn reason(&self) -> &str {
        match self {
            Pending::CanClear { reason } | Pending::Never { reason, .. } => reason,
        }
    }

    pub fn never_clears(&self) -> bool {
        matches!(self, Pending::Never { .. })
    }
}

/// The reasons that never clear, each with its fix.
const NEVER: &[(&str, &str)] = &[
    (
        "PartitionConfig",
        "the job asks more than any node of its partition has (CPUs, memory, GPUs or nodes): lower `slurm.cpus` or `slurm.mem`, or choose a partition with bigger nodes in `slurm.partition` (`sinfo -N -o '%P %N %c %m'` lists them)",
    ),
    (
        "PartitionTimeLimit",
        "the job's time limit is above its partition's: lower `slurm.time` (by default the agent timeout plus 5 minutes), or choose a partition that allows it (`sinfo -o '%P %l'` lists the limits)",
    ),
    (
        "BadConstraints",
        "no node can meet the job's constraints: check `--constraint`, `--gres` and the like in `slurm.extra_args` against `sinfo -o '%N %f %G'`",
    ),
    (
        "InvalidAccount",
        "`slurm.account` is not an account you may charge: `sacctmgr show associations user=$USER format=account` lists yours",
    ),
    (
        "InvalidQOS",
        "`slurm.qos` is not a QOS you may use: `sacctmgr show associations user=$USER format=qos` lists yours",
    ),
    (
        "DependencyNeverSatisfied",
        "a job this one depends on ended in a way that fails the dependency: treefarm sets none and refuses `--dependency` in `slurm.extra_args`, so the cluster added it (a job_submit rule): ask its administrators",
    ),
];

/// A per-job limit of a QOS or an association (`QOSMaxCpuPerJobLimit`,
/// `AssocMaxWallDurationPerJobLimit`, `QOSMinCpuNotSatisfied`, …): the
/// request itself breaks it, so waiting cannot help. Per-user and group
/// limits (`QOSMaxJobsPerUserLimit`, `AssocGrpCpuLimit`) clear as other jobs
/// end.
fn per_job_limit(reason: &str) -> bool {
    let qos_or_assoc = ["QOS", "Assoc"].iter().find_map(|p| reason.strip_prefix(p));
    match qos_or_assoc {
        Some(rest) => {
            (rest.starts_with("Max") && rest.contains("PerJob")) || rest.starts_with("Min")
        }
        None => false,
    }
}

/// Classifies the reason `squeue` printed for a pending job.
pub fn classify(reason: &str) -> Pending {
    let reason = reason.trim();
    // `squeue` may print a description after the code (`ReqNodeNotAvail,
    // UnavailableNodes:n1`): the code is what comes before the comma.
    let code = reason.split([',', ' ']).next().unwrap_or(reason);
    if let Some((_, fix)) = NEVER.iter().find(|(name, _)| *name == code) {
        return Pending::Never {
            reason: reason.to_string(),
            fix: (*fix).to_string(),
        };
    }
    if per_job_limit(code) {
        return Pending::Never {
            reason: reason.to_string(),
            fix: format!(
                "the request breaks a per-job limit of its QOS or account (`{code}`): lower `slurm.cpus`, `slurm.mem` or `slurm.time`, or choose another `slurm.qos` (`sacctmgr show qos` lists the limits)"
            ),
        };
    }
    Pending::CanClear {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_clear_by_themselves() {
        for r in [
            "Resources",
            "Priority",
            "Dependency",
            "BeginTime",
            "JobHeldUser",
            "JobHeldAdmin",
            "NodeDown",
            "PartitionDown",
            "PartitionNodeLimit",
            "ReqNodeNotAvail, UnavailableNodes:vm",
            "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions",
            "Licenses",
            "Reservation",
            "QOSMaxJobsPerUserLimit",
            "QOSGrpCpuLimit",
            "AssocGrpJobsLimit",
            "AssocMaxJobsLimit",
            "None",
            "SomethingNewInSlurm99",
        ] {
            let p = classify(r);
            assert!(!p.never_clears(), "{r}: {p:?}");
            assert_eq!(p.reason(), r);
        }
    }

    #[test]
    fn reasons_that_never_clear_come_with_a_fix() {
        for r in [
            "PartitionConfig",
            "PartitionTimeLimit",
            "BadConstraints",
            "InvalidAccount",
            "InvalidQOS",
            "DependencyNeverSatisfied",
            "QOSMaxCpuPerJobLimit",
            "QOSMaxWallDurationPerJobLimit",
            "AssocMaxNodePerJobLimit",
            "QOSMinCpuNotSatisfied",
        ] {
            match classify(r) {
                Pending::Never { reason, fix } => {
                    assert_eq!(reason, r);
                    assert!(
                        fix.contains("slurm.") || fix.contains("sacctmgr"),
                        "{r}: {fix}"
                    );
                }
                other => panic!("{r} should never clear: {other:?}"),
            }
        }
    }

    #[test]
    fn the_fix_for_too_many_cpus_names_the_key() {
        let Pending::Never { fix, .. } = classify("PartitionConfig") else {
            panic!("PartitionConfig never clears");
        };
        assert!(fix.contains("`slurm.cpus`"), "{fix}");
    }
}
