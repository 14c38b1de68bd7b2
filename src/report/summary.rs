//! The summary of a run (the `summary` event and `summary.json`), built
//! from its record.

use crate::report::{ConflictSummary, Summary};
use crate::state::{InstanceState, RunRecord};

/// The summary of a run from its record.
///
/// `target_commit` is the target's tip as the run ends.
pub fn summarize(
    record: &RunRecord,
    target: &str,
    target_commit: Option<String>,
    now: u64,
) -> Summary {
    let mut s = Summary {
        run_id: record.run_id.clone(),
        state: record.state,
        target: target.to_string(),
        target_commit,
        elapsed_ms: now.saturating_sub(record.started_at_ms),
        ..Summary::default()
    };
    for inst in &record.instances {
        let id = inst.id.clone();
        match inst.state {
            InstanceState::Merged | InstanceState::Pruned => s.merged.push(id),
            InstanceState::Succeeded => s.succeeded.push(id),
            InstanceState::Failed => s.failed.push(id),
            InstanceState::TimedOut => s.timed_out.push(id),
            InstanceState::Unchanged => s.unchanged.push(id),
            InstanceState::Conflicted => s.conflicted.push(ConflictSummary {
                id,
                paths: inst.conflict_paths.clone(),
            }),
            InstanceState::Refused => s.refused.push(id),
            InstanceState::Skipped => s.skipped.push(id),
            _ => s.pending.push(id),
        }
        // A `succeeded` branch with a reason was held back (a merge queue
        // stopped by a gate that could not run): it did not merge either.
        let held = inst.state == InstanceState::Succeeded;
        if let Some(reason) = inst
            .reason
            .as_ref()
            .filter(|_| inst.state.is_failure() || held)
        {
            s.reasons.insert(inst.id.clone(), reason.clone());
        }
        if let Some(denied) = &inst.denied {
            s.denied.insert(inst.id.clone(), denied.clone());
        }
    }
    let per_spec: Vec<_> = record
        .spending
        .per_spec
        .iter()
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect();
    s.usage = crate::report::usage::usage_json(&per_spec);
    if let Some(pacing) = &record.pacing {
        s.concurrency = Some(crate::report::events::ConcurrencySummary {
            limit: pacing.window.limit(),
            max: pacing.window.max(),
        });
        s.backoffs = pacing.backoffs.clone();
    }
    s.budget_reached = record.budget_reached.clone();
    s.slurm = record
        .slurm
        .as_ref()
        .map(|run| crate::report::events::SlurmSummary {
            calls: run.calls,
            total_calls: run.calls.total(),
            polls: run.polls,
            jobs: run.calls.sbatch.saturating_sub(1),
        });
    s
}
