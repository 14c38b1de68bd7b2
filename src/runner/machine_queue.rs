//! The merge queue's side of the run machine (`merge.batch` above 1 or
//! `merge.gate_jobs` above 1): ready branches go to the planner
//! (`merge_queue.rs`) in priority order, and its actions become lane jobs
//! (build a batch, land it), gate runs in the warm gate worktrees, and
//! instance outcomes. The planner's state lives in the record
//! (`RunRecord::merge_queue`), so every change to it is journalled in the
//! same write as the instance states and events it comes with; a land is
//! flushed (instances `merging`, with their merge commits) before the lane
//! moves the target.

use super::*;
use crate::merge_queue::{self as mq, Built, GateResult, GateRun, QueueRecord};
use crate::runner::lane::BatchBuilt;

impl RunMachine {
    fn q(&mut self) -> &mut QueueRecord {
        self.record
            .merge_queue
            .as_mut()
            .expect("the queue record exists whenever the policy has a queue")
    }

    /// Nothing queued, built, gated or landed by the merge queue.
    pub(super) fn queue_idle(&self) -> bool {
        let idle = match (&self.policy.queue, &self.record.merge_queue) {
            (Some(_), Some(q)) => q.planner.is_idle() && q.gates.is_empty(),
            _ => true,
        };
        idle && !self.queue_lane && self.lane_jobs.is_empty()
    }

    /// Gate runs going on now (for the live view and tests).
    pub fn gates_running(&self) -> usize {
        self.record
            .merge_queue
            .as_ref()
            .map_or(0, |q| q.gates.iter().filter(|g| g.slot.is_some()).count())
    }

    /// The longest priority-ordered prefix of the branches waiting to merge
    /// that may merge now (with `wait_for_ranked`, none may while an
    /// instance ranked before it is still planted or run), taken off the
    /// wait list.
    fn ready_prefix(&mut self, wait_for_ranked: bool) -> Vec<String> {
        let mut ready = Vec::new();
        while let Some(next) = self.merge_queue.first().cloned() {
            if wait_for_ranked && self.ranked_before_in_flight((next.0, next.1)) {
                break;
            }
            self.merge_queue.remove(&next);
            ready.push(next.2);
        }
        ready
    }

    /// `start`'s part for the queue: hands the ready branches to the
    /// planner, starts the gates that have a free worktree, and gives the
    /// lane its next job (a land after the flush that makes `merging`
    /// durable).
    pub(super) fn start_queue(
        &mut self,
        out: &mut Vec<Action>,
        run: bool,
        now: u64,
    ) -> Result<(), MachineError> {
        let ready = self.ready_prefix(run);
        if !ready.is_empty() {
            let actions = self.q().planner.handle(mq::Input::Ready(ready));
            self.apply(out, actions, now)?;
            out.push(Action::Save);
        }
        self.start_gates(out, now);
        if !self.queue_lane && self.merging.is_none() && !self.pruning {
            if let Some(job) = self.lane_jobs.pop_front() {
                self.queue_lane = true;
                self.other_in_flight += 1;
                if matches!(job, Action::LandBatch { .. }) {
                    out.push(Action::Save);
                    out.push(Action::Flush);
                    out.push(Action::CrashPoint("before-land"));
                }
                out.push(job);
            }
        }
        Ok(())
    }

    /// Starts waiting gate runs in free gate worktrees: journalled as
    /// started, then run.
    fn start_gates(&mut self, out: &mut Vec<Action>, now: u64) {
        loop {
            let Some(at) = self
                .record
                .merge_queue
                .as_ref()
                .and_then(|q| q.gates.iter().position(|g| g.slot.is_none()))
            else {
                return;
            };
            let Some(slot) = self.gate_slots.pop_first() else {
                return;
            };
            let gate = &mut self.q().gates[at];
            gate.slot = Some(slot);
            gate.started_at_ms = Some(now);
            let gate = gate.clone();
            self.other_in_flight += 1;
            out.push(Action::Save);
            out.push(Action::Emit(Event::GateStarted {
                batch: gate.batch,
                prefix: gate.prefix,
                commit: gate.commit.clone(),
                ids: gate.ids.clone(),
                log: gate.log.clone(),
            }));
            out.push(Action::Flush);
            out.push(Action::RunGate(gate));
            out.push(Action::CrashPoint("gate-started"));
        }
    }

    /// Turns the planner's actions into the machine's.
    fn apply(
        &mut self,
        out: &mut Vec<Action>,
        actions: Vec<mq::Action>,
        now: u64,
    ) -> Result<(), MachineError> {
        for action in actions {
            match action {
                mq::Action::Build {
                    batch,
                    branches,
                    onto,
                } => self.lane_jobs.push_back(Action::BuildBatch {
                    batch,
                    ids: branches,
                    onto,
                }),
                mq::Action::Gate {
                    batch,
                    prefix,
                    commit,
                } => {
                    let logs = self.policy.gate_logs.clone();
                    let q = self.q();
                    q.gate_runs += 1;
                    let run = q.gate_runs;
                    let ids = q.planner.prefix_branches(batch, prefix);
                    let log = logs
                        .join(format!("{run:03}-batch-{batch}-prefix-{prefix}.log"))
                        .display()
                        .to_string();
                    q.gates.push(GateRun {
                        run,
                        batch,
                        prefix,
                        commit,
                        ids,
                        log,
                        slot: None,
                        started_at_ms: None,
                        cancelled: false,
                    });
                }
                mq::Action::CancelGate { batch, prefix } => {
                    let q = self.q();
                    if let Some(at) = q
                        .gates
                        .iter()
                        .position(|g| g.batch == batch && g.prefix == prefix && !g.cancelled)
                    {
                        if q.gates[at].slot.is_none() {
                            q.gates.remove(at);
                        } else {
                            q.gates[at].cancelled = true;
                            out.push(Action::CancelGate(q.gates[at].run));
                        }
                    }
                }
                mq::Action::Bisect { batch, good, bad } => {
                    out.push(Action::Emit(Event::Bisect { batch, good, bad }))
                }
                mq::Action::Land {
                    batch,
                    old,
                    new,
                    branches,
                } => {
                    for id in &branches {
                        if self.inst(id)?.state != InstanceState::Succeeded {
                            // Found landed by resume already.
                            continue;
                        }
                        let commit = self.q().commits.get(id).cloned();
                        self.inst(id)?.merged_commit = commit;
                        self.advance(id, InstanceState::Merging, now)?;
                    }
                    self.q().landing.insert(batch, branches);
                    out.push(Action::Save);
                    self.lane_jobs
                        .push_back(Action::LandBatch { batch, old, new });
                }
                mq::Action::Conflicted { branch, paths } => {
                    if self.inst(&branch)?.state == InstanceState::Succeeded {
                        self.conflicted(out, &branch, paths, now)?;
                    }
                }
                mq::Action::Refuse {
                    branch,
                    reason,
                    log,
                } => {
                    if self.inst(&branch)?.state == InstanceState::Succeeded {
                        let reason = match &log {
                            Some(log) => format!("{reason} (gate log: {log})"),
                            None => reason,
                        };
                        self.refuse(out, &branch, reason, log.clone(), now)?;
                        if let Some(log) = log {
                            out.push(Action::KeepGateLog { id: branch, log });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The lane built a batch (or could not: its branches are refused).
    pub(super) fn on_built(
        &mut self,
        out: &mut Vec<Action>,
        batch: mq::BatchId,
        result: Result<BatchBuilt, String>,
        now: u64,
    ) -> Result<(), MachineError> {
        self.other_in_flight = self.other_in_flight.saturating_sub(1);
        self.queue_lane = false;
        let (base, results) = match result {
            Ok(built) => {
                for (id, tip) in built.tips {
                    if self.inst(&id)?.state == InstanceState::Succeeded {
                        self.inst(&id)?.tip = Some(tip);
                    }
                }
                (built.base, built.results)
            }
            Err(reason) => {
                // Refused here; the planner drops them as conflicted, which
                // `apply` ignores for instances no longer waiting.
                let ids = self.q().planner.batch_branches(batch);
                for id in &ids {
                    if self.inst(id)?.state == InstanceState::Succeeded {
                        self.refuse(out, id, reason.clone(), None, now)?;
                    }
                }
                let results = ids
                    .into_iter()
                    .map(|branch| Built::Conflicted {
                        branch,
                        paths: Vec::new(),
                    })
                    .collect();
                (String::new(), results)
            }
        };
        let mut merged = Vec::new();
        let mut tip = base.clone();
        for result in &results {
            if let Built::Merged { branch, commit } = result {
                self.q().commits.insert(branch.clone(), commit.clone());
                merged.push(branch.clone());
                tip = commit.clone();
            }
        }
        if !merged.is_empty() {
            out.push(Action::Emit(Event::Batch {
                batch,
                ids: merged,
                base: base.clone(),
                tip,
            }));
        }
        let actions = self.q().planner.handle(mq::Input::Built {
            batch,
            base,
            results,
        });
        self.apply(out, actions, now)?;
        out.push(Action::Save);
        out.push(Action::Flush);
        out.push(Action::CrashPoint("batch-built"));
        Ok(())
    }

    /// The lane's compare-and-swap of a batch is done: its branches are
    /// merged, back in the queue (the target moved meanwhile), or refused
    /// (the target could not be moved, e.g. a dirty checkout of it).
    pub(super) fn on_landed(
        &mut self,
        out: &mut Vec<Action>,
        batch: mq::BatchId,
        result: Result<bool, String>,
        now: u64,
    ) -> Result<(), MachineError> {
        self.other_in_flight = self.other_in_flight.saturating_sub(1);
        self.queue_lane = false;
        let ids = self.q().landing.remove(&batch).unwrap_or_default();
        let moved = match result {
            Ok(true) => {
                for id in &ids {
                    if self.inst(id)?.state == InstanceState::Merging {
                        let commit = self.inst(id)?.merged_commit.clone().unwrap_or_default();
                        self.on_merged(out, id, commit, now)?;
                    }
                }
                true
            }
            Ok(false) => {
                for id in &ids {
                    if self.inst(id)?.state == InstanceState::Merging {
                        self.inst(id)?.merged_commit = None;
                        self.advance(id, InstanceState::Succeeded, now)?;
                    }
                }
                out.push(Action::Note(format!(
                    "target `{}` moved meanwhile; merging batch {batch} again",
                    self.record.target
                )));
                false
            }
            Err(reason) => {
                for id in &ids {
                    if self.inst(id)?.state == InstanceState::Merging {
                        self.refuse(out, id, reason.clone(), None, now)?;
                    }
                }
                true
            }
        };
        let actions = self.q().planner.handle(mq::Input::Landed { batch, moved });
        self.apply(out, actions, now)?;
        out.push(Action::Save);
        Ok(())
    }

    /// A gate run ended. A cancelled one frees its worktree only; one
    /// stopped by a signal leaves the planner waiting for it (`resume` runs
    /// it again); otherwise the planner learns the result.
    pub(super) fn on_gate_done(
        &mut self,
        out: &mut Vec<Action>,
        run: u64,
        passed: bool,
        cancelled: bool,
        elapsed_ms: u64,
        now: u64,
    ) -> Result<(), MachineError> {
        self.other_in_flight = self.other_in_flight.saturating_sub(1);
        let q = self.q();
        let Some(at) = q.gates.iter().position(|g| g.run == run) else {
            return Ok(());
        };
        let gate = q.gates.remove(at);
        if let Some(slot) = gate.slot {
            self.gate_slots.insert(slot);
        }
        out.push(Action::Save);
        if gate.cancelled || cancelled {
            return Ok(());
        }
        self.q().results.push(GateResult {
            run,
            batch: gate.batch,
            prefix: gate.prefix,
            commit: gate.commit.clone(),
            passed,
            elapsed_ms,
            log: gate.log.clone(),
        });
        let (batch, prefix, commit, log) = (gate.batch, gate.prefix, gate.commit, gate.log);
        out.push(Action::Emit(if passed {
            Event::GatePassed {
                batch,
                prefix,
                commit,
                elapsed_ms,
                log: log.clone(),
            }
        } else {
            Event::GateFailed {
                batch,
                prefix,
                commit,
                elapsed_ms,
                log: log.clone(),
            }
        }));
        let actions = self.q().planner.handle(mq::Input::Gated {
            batch,
            prefix,
            passed,
            log: Some(log),
        });
        self.apply(out, actions, now)?;
        if passed {
            out.push(Action::Flush);
            out.push(Action::CrashPoint("gate-passed"));
        }
        Ok(())
    }

    /// `resume` and `treefarm merge`: the queue continues from its journal.
    /// Gate runs of the previous coordinator are gone (recover.rs ended
    /// their groups); the planner asks again for whatever was in flight —
    /// builds and gates are redone, a land is redone and its
    /// compare-and-swap finds whether it had happened.
    pub fn resume_queue(&mut self, now: u64) -> Result<Vec<Action>, MachineError> {
        let mut out = Vec::new();
        if self.policy.queue.is_none() || self.record.merge_queue.is_none() {
            return Ok(out);
        }
        let q = self.q();
        q.gates.clear();
        q.landing.clear();
        let actions = q.planner.resume();
        self.apply(&mut out, actions, now)?;
        out.push(Action::Save);
        Ok(out)
    }
}
