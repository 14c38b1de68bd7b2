//! The merge queue's side of the run machine (`merge.batch` above 1 or
//! `merge.gate_jobs` above 1): ready branches go to the planner
//! (`merge_queue.rs`) in priority order, and its actions become lane jobs
//! (build a batch, land it), gate runs in the warm gate worktrees, and
//! instance outcomes. The planner's state lives in the record
//! (`RunRecord::merge_queue`), so every change to it is journalled in the
//! same write as the instance states and events it comes with; a land is
//! flushed (instances `merging`, with their merge commits) before the lane
//! moves the target. A gate that could not run stops the queue: its
//! branches stay `succeeded` with the cause as their reason, the other gates
//! are stopped, and the run ends `interrupted` for `resume` to gate again.

use super::*;
use crate::merge_queue::{self as mq, Built, GateResult, GateRun, QueueRecord};
use crate::runner::messages::{BatchBuilt, GateEnd};

/// The reason a branch held by a stopped queue shows (then the cause).
const QUEUE_STOPPED: &str = "not merged: the merge queue stopped because a gate could not run";

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
            (Some(_), Some(q)) => {
                (q.planner.is_idle() || q.planner.stopped().is_some()) && q.gates.is_empty()
            }
            _ => true,
        };
        idle && !self.queue_lane && self.lane_jobs.is_empty()
    }

    /// Why the merge queue stopped (a gate that could not run), if it did:
    /// the run ends `interrupted`, for `resume`.
    pub fn queue_stopped(&self) -> Option<&str> {
        self.record
            .merge_queue
            .as_ref()
            .and_then(|q| q.planner.stopped())
    }

    /// Gate runs going on now (read by the tests).
    #[cfg(test)]
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
        mode: Mode,
        now: u64,
    ) -> Result<(), MachineError> {
        let ready = self.ready_prefix(mode == Mode::Run);
        if !ready.is_empty() {
            // Branches that arrive while the queue is stopped wait with its
            // cause as their reason.
            if let Some(cause) = self.queue_stopped().map(str::to_string) {
                for id in &ready {
                    self.inst(id)?.reason = Some(format!("{QUEUE_STOPPED}: {cause}"));
                    // It waits for a resume: its worktree stays till then.
                    self.settles.push(id.clone());
                }
            }
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
            // Its branches wait for the gate, which takes long enough for
            // someone to look into their worktrees meanwhile.
            self.settles.extend(gate.ids.iter().cloned());
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
                        .join(format!("gate-{run:03}-batch-{batch}-prefix-{prefix}.log"))
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
                mq::Action::Stop {
                    batch,
                    prefix,
                    cause,
                    branches,
                } => self.stop_queue(out, batch, prefix, &cause, &branches)?,
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

    /// The planner stopped: every branch it holds shows the cause, the
    /// other gates are stopped (the planner keeps their prefixes under test
    /// for `resume`), and nothing more starts.
    fn stop_queue(
        &mut self,
        out: &mut Vec<Action>,
        batch: mq::BatchId,
        prefix: usize,
        cause: &str,
        branches: &[String],
    ) -> Result<(), MachineError> {
        for id in branches {
            let inst = self.inst(id)?;
            if inst.state == InstanceState::Succeeded {
                inst.reason = Some(format!("{QUEUE_STOPPED}: {cause}"));
                self.settles.push(id.clone());
            }
        }
        let q = self.q();
        q.gates.retain(|g| g.slot.is_some());
        let mut cancels = Vec::new();
        for gate in q.gates.iter_mut().filter(|g| !g.cancelled) {
            gate.cancelled = true;
            cancels.push(gate.run);
        }
        out.extend(cancels.into_iter().map(Action::CancelGate));
        out.push(Action::Note(format!(
            "merge queue stopped: the gate on batch {batch} prefix {prefix} could not run: {cause}; no new agent starts, running ones finish; {}",
            resume_hint(&self.record.run_id)
        )));
        // Agents waiting for a start are left for `resume`, as when the
        // budget is reached.
        self.park_waiting(out);
        out.push(Action::Save);
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
                    self.record.target()
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

    /// A gate run ended. A cancelled or stopped one frees its worktree only
    /// (the planner keeps waiting for it; `resume` runs it again); one that
    /// could not run stops the queue; otherwise the planner learns the
    /// verdict.
    pub(super) fn on_gate_done(
        &mut self,
        out: &mut Vec<Action>,
        run: u64,
        end: GateEnd,
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
        let (passed, reason) = match end {
            _ if gate.cancelled => return Ok(()),
            GateEnd::Stopped => return Ok(()),
            GateEnd::CouldNotRun(cause) => {
                out.push(Action::Emit(Event::GateCouldNotRun {
                    batch: gate.batch,
                    prefix: gate.prefix,
                    commit: gate.commit.clone(),
                    ids: gate.ids.clone(),
                    elapsed_ms,
                    log: gate.log.clone(),
                    cause: cause.clone(),
                    hint: resume_hint(&self.record.run_id),
                }));
                let actions = self.q().planner.handle(mq::Input::GateCouldNotRun {
                    batch: gate.batch,
                    prefix: gate.prefix,
                    cause,
                });
                self.apply(out, actions, now)?;
                out.push(Action::Flush);
                return Ok(());
            }
            GateEnd::Passed => (true, None),
            GateEnd::Failed(reason) => (false, Some(reason)),
        };
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
                reason: reason.clone(),
            }
        }));
        let actions = self.q().planner.handle(mq::Input::Gated {
            batch,
            prefix,
            passed,
            log: Some(log),
            reason,
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
        // A stop's cause is taken as fixed: its branches lose the reason
        // it gave them, and its gate is asked for again.
        if q.planner.stopped().is_some() {
            for id in q.planner.held() {
                let inst = self.inst(&id)?;
                if inst
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(QUEUE_STOPPED))
                {
                    inst.reason = None;
                }
            }
        }
        let actions = self.q().planner.resume();
        self.apply(&mut out, actions, now)?;
        out.push(Action::Save);
        Ok(out)
    }
}

/// What to do after a gate could not run.
fn resume_hint(run_id: &str) -> String {
    format!("fix the cause, then `treefarm resume {run_id}` gates the branches again")
}

/// The queue's decisions driven with inputs: the actions and states that
/// come out, with no lane, no gate process and no journal.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Node, Restored};
    use crate::state::RunState;
    use InstanceState::*;

    /// `ids` in rank order, each `succeeded` and waiting to merge.
    fn queued(ids: &[&str], gate_jobs: usize, resolve: bool) -> RunMachine {
        let record = RunRecord {
            run_id: "r".into(),
            state: RunState::Running,
            options: crate::state::RunOptions {
                target: "roadmap".into(),
                ..Default::default()
            }
            .into(),
            instances: ids
                .iter()
                .map(|id| InstanceRecord {
                    id: id.to_string(),
                    state: Succeeded,
                    slot: Some(0),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let nodes: Vec<Node> = ids
            .iter()
            .enumerate()
            .map(|(order, id)| Node {
                id: id.to_string(),
                priority: 1,
                order,
                depends_on: Vec::new(),
            })
            .collect();
        let ranks = nodes
            .iter()
            .map(|n| (n.id.clone(), (n.priority, n.order)))
            .collect();
        let mut sched = Scheduler::new(nodes, &[], 2);
        let policy = Policy {
            queue: Some(mq::QueueConfig {
                batch: 8,
                gate_jobs,
                gated: true,
            }),
            resolve_by_agent: resolve,
            resolve_attempts: 1,
            gate_logs: PathBuf::from("/run/logs"),
            worktree_dir: PathBuf::from("/wt"),
            ..Default::default()
        };
        for id in ids {
            sched.restore(id, Restored::AwaitingSettle);
        }
        let mut m = RunMachine::new(record, sched, 2, ranks, policy);
        for id in ids {
            m.enqueue_merge(id);
        }
        m
    }

    fn tags(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Emit(e) => {
                    let name = format!("{e:?}");
                    format!("emit {}", name.split([' ', '(']).next().unwrap_or_default())
                }
                Action::BuildBatch { batch, ids, .. } => format!("build {batch} {}", ids.join(" ")),
                Action::LandBatch { batch, new, .. } => format!("land {batch} {new}"),
                Action::RunGate(g) => {
                    format!("gate {} prefix {} slot {:?}", g.batch, g.prefix, g.slot)
                }
                Action::CancelGate(run) => format!("cancel {run}"),
                Action::KeepGateLog { id, .. } => format!("keep-log {id}"),
                Action::CrashPoint(p) => format!("crash-point {p}"),
                Action::Launch(l) => format!("launch {} resolve {}", l.id, l.resolve),
                Action::Note(_) => "note".into(),
                Action::Prune(id) => format!("prune {id}"),
                other => format!("{other:?}").to_lowercase(),
            })
            .collect()
    }

    fn lane(m: &mut RunMachine, msg: LaneMsg) -> Vec<String> {
        tags(&m.handle(Input::Lane(msg), 10).unwrap())
    }

    fn built(batch: u64, merged: &[&str], conflicted: &[&str]) -> LaneMsg {
        let mut results: Vec<Built> = merged
            .iter()
            .map(|id| Built::Merged {
                branch: id.to_string(),
                commit: format!("m-{id}"),
            })
            .collect();
        results.extend(conflicted.iter().map(|id| Built::Conflicted {
            branch: id.to_string(),
            paths: vec!["x.txt".into()],
        }));
        LaneMsg::Built {
            batch,
            result: Ok(BatchBuilt {
                base: "b0".into(),
                results,
                tips: Vec::new(),
            }),
        }
    }

    fn gate_done(run: u64, passed: bool) -> LaneMsg {
        LaneMsg::GateDone {
            run,
            end: if passed {
                GateEnd::Passed
            } else {
                GateEnd::Failed("gate `x` failed (exit status: 1)".into())
            },
            elapsed_ms: 5,
        }
    }

    fn state(m: &RunMachine, id: &str) -> InstanceState {
        m.record.instance(id).unwrap().state
    }

    #[test]
    fn a_ready_prefix_is_built_gated_once_and_landed_after_the_flush() {
        let mut m = queued(&["a", "b", "c"], 1, false);
        let start = tags(&m.start(Mode::MergeOnly, 1).unwrap());
        assert_eq!(start, ["save", "build 1 a b c"]);
        assert!(m.queue_lane && !m.lane_idle());
        // Nothing else on the lane while it builds.
        assert_eq!(m.next_prune(), None);
        assert_eq!(
            lane(&mut m, built(1, &["a", "b", "c"], &[])),
            ["emit Batch", "save", "flush", "crash-point batch-built"]
        );
        assert_eq!(
            tags(&m.start(Mode::MergeOnly, 11).unwrap()),
            [
                "save",
                "emit GateStarted",
                "flush",
                "gate 1 prefix 3 slot Some(0)",
                "crash-point gate-started"
            ]
        );
        assert_eq!(m.gates_running(), 1);
        // Their worktrees stay while the gate runs: settled.
        assert_eq!(m.take_settles(), ["a", "b", "c"]);
        assert_eq!(
            lane(&mut m, gate_done(1, true)),
            [
                "save",
                "emit GatePassed",
                "save",
                "flush",
                "crash-point gate-passed"
            ]
        );
        // Every branch is merging, at its own merge commit, before the land.
        for id in ["a", "b", "c"] {
            let inst = m.record.instance(id).unwrap();
            assert_eq!(
                (inst.state, inst.merged_commit.clone()),
                (Merging, Some(format!("m-{id}")))
            );
        }
        assert_eq!(
            tags(&m.start(Mode::MergeOnly, 12).unwrap()),
            ["save", "flush", "crash-point before-land", "land 1 m-c"]
        );
        let landed = lane(
            &mut m,
            LaneMsg::Landed {
                batch: 1,
                result: Ok(true),
            },
        );
        assert_eq!(landed.iter().filter(|t| *t == "emit Merged").count(), 3);
        for id in ["a", "b", "c"] {
            assert_eq!(state(&m, id), Merged);
        }
        assert_eq!(m.prunes_waiting(), 3);
        let queue = m.record.merge_queue.as_ref().unwrap();
        assert_eq!(queue.results.len(), 1);
        // A merged branch's batch commit is in its record, not kept in the
        // queue's (which would grow with the run).
        assert!(queue.commits.is_empty(), "{:?}", queue.commits);
        assert_eq!(m.other_in_flight, 0);
        assert_eq!(m.next_prune(), Some("a".into()));
    }

    #[test]
    fn a_failing_gate_is_bisected_and_the_culprit_refused_with_its_log() {
        let mut m = queued(&["a", "b"], 1, false);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a", "b"], &[]));
        m.start(Mode::MergeOnly, 2).unwrap();
        let failed = lane(&mut m, gate_done(1, false));
        assert!(
            failed.contains(&"emit GateFailed".to_string()),
            "{failed:?}"
        );
        assert!(failed.contains(&"emit Bisect".to_string()), "{failed:?}");
        let start = tags(&m.start(Mode::MergeOnly, 3).unwrap());
        assert!(
            start.contains(&"gate 1 prefix 1 slot Some(0)".to_string()),
            "{start:?}"
        );
        let passed = lane(&mut m, gate_done(2, true));
        assert!(passed.contains(&"emit Refused".to_string()), "{passed:?}");
        assert!(passed.contains(&"keep-log b".to_string()), "{passed:?}");
        let b = m.record.instance("b").unwrap();
        assert_eq!(b.state, Refused);
        let reason = b.reason.clone().unwrap();
        assert!(
            reason.contains("/run/logs/gate-001-batch-1-prefix-2.log"),
            "{reason}"
        );
        assert_eq!(state(&m, "a"), Merging);
    }

    #[test]
    fn a_gate_stopped_by_a_signal_is_run_again_on_resume() {
        let mut m = queued(&["a"], 1, false);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a"], &[]));
        m.start(Mode::MergeOnly, 2).unwrap();
        m.handle(Input::Signal(crate::runner::messages::Signal::Interrupt), 3)
            .unwrap();
        let stopped = lane(
            &mut m,
            LaneMsg::GateDone {
                run: 1,
                end: GateEnd::Stopped,
                elapsed_ms: 1,
            },
        );
        assert_eq!(stopped, ["save"]);
        assert!(m.is_over(Mode::Run));
        // The journal still has the prefix under test: a new coordinator
        // gates it again.
        let record = m.record.clone();
        let mut again = queued(&["a"], 1, false);
        again.record = record;
        let actions = tags(&again.resume_queue(4).unwrap());
        assert_eq!(actions, ["save"]);
        let start = tags(&again.start(Mode::MergeOnly, 5).unwrap());
        assert!(
            start.contains(&"gate 1 prefix 1 slot Some(0)".to_string()),
            "{start:?}"
        );
    }

    #[test]
    fn a_resolve_attempt_that_fails_before_its_agent_starts_is_counted() {
        // Regression: such a failure handed the conflict back again and
        // again, forever.
        let mut m = queued(&["a", "b"], 1, true);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a"], &["b"]));
        let verdict = Verdict::Failed {
            state: Failed,
            reason: "preparation failed".into(),
            exit_code: None,
            work: None,
        };
        let out = tags(
            &m.handle(Input::Instance("b".into(), InstanceMsg::Done(verdict)), 3)
                .unwrap(),
        );
        assert!(!out.iter().any(|t| t.starts_with("launch")), "{out:?}");
        let b = m.record.instance("b").unwrap();
        assert_eq!(
            (b.state, b.resolving, b.resolve_attempts),
            (Conflicted, false, 1)
        );
    }

    #[test]
    fn a_conflict_goes_to_its_agent_once_then_is_kept() {
        let mut m = queued(&["a", "b"], 1, true);
        m.start(Mode::MergeOnly, 1).unwrap();
        let out = lane(&mut m, built(1, &["a"], &["b"]));
        assert!(
            out.windows(4).any(|w| w
                == [
                    "emit Resolving",
                    "flush",
                    "crash-point resolving",
                    "launch b resolve true"
                ]),
            "{out:?}"
        );
        let b = m.record.instance("b").unwrap();
        assert!(b.resolving && b.state == Conflicted && b.resolve_attempts == 0);
        start_resolving_agent(&mut m, "b", 2);
        assert_eq!(m.record.instance("b").unwrap().resolve_attempts, 1);
        let verdict = Verdict::Failed {
            state: Conflicted,
            reason: "markers left".into(),
            exit_code: Some(0),
            work: None,
        };
        let out = tags(
            &m.handle(Input::Instance("b".into(), InstanceMsg::Done(verdict)), 3)
                .unwrap(),
        );
        // One attempt allowed: kept, not handed back again.
        assert!(!out.iter().any(|t| t.starts_with("launch")), "{out:?}");
        assert!(out.contains(&"emit Kept".to_string()), "{out:?}");
        let b = m.record.instance("b").unwrap();
        assert!(!b.resolving && b.state == Conflicted);
        assert!(b.reason.clone().unwrap().contains("markers left"));
    }

    /// The instance task's messages as a resolving agent of `id` starts.
    fn start_resolving_agent(m: &mut RunMachine, id: &str, attempt: u32) {
        for msg in [
            InstanceMsg::AttemptStarting { attempt },
            InstanceMsg::Agent(AgentEvent::Started {
                pid: 4242,
                start_time: 1,
            }),
        ] {
            m.handle(Input::Instance(id.into(), msg), 2).unwrap();
        }
    }

    /// Regression: a resolve attempt was counted at `AttemptStarting`, while
    /// the instance was still `conflicted`; journalled so by another
    /// instance's write and killed there, `resume` handed the conflict back
    /// again and counted the attempt twice (`resolve_attempts == 2`).
    #[test]
    fn a_resolve_attempt_journalled_before_its_agent_started_is_counted_once() {
        let mut m = queued(&["a", "b"], 1, true);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a"], &["b"]));
        m.handle(
            Input::Instance("b".into(), InstanceMsg::AttemptStarting { attempt: 2 }),
            2,
        )
        .unwrap();
        // What a journal write now holds, as `resume` reads it.
        let b = m.record.instance("b").unwrap();
        assert_eq!(
            (b.state, b.resolving, b.resolve_attempts),
            (Conflicted, true, 0)
        );
        m.resume_resolve("b", 3).unwrap();
        start_resolving_agent(&mut m, "b", 2);
        let b = m.record.instance("b").unwrap();
        assert_eq!((b.state, b.resolve_attempts), (Running, 1));
        // Its agent re-attached after another kill: the same attempt.
        m.handle(
            Input::Instance(
                "b".into(),
                InstanceMsg::Agent(AgentEvent::Started {
                    pid: 4242,
                    start_time: 1,
                }),
            ),
            4,
        )
        .unwrap();
        assert_eq!(m.record.instance("b").unwrap().resolve_attempts, 1);
    }

    #[test]
    fn a_conflict_handed_back_waits_for_a_free_slot() {
        // One slot left: the other is held by an agent still running.
        let mut m = queued(&["a", "b", "c"], 1, true);
        m.free_slots.retain(|s| *s == 0);
        m.start(Mode::MergeOnly, 1).unwrap();
        let out = lane(&mut m, built(1, &["a"], &["b", "c"]));
        let launched: Vec<&String> = out.iter().filter(|t| t.starts_with("launch")).collect();
        assert_eq!(launched, ["launch b resolve true"], "{out:?}");
        let c = m.record.instance("c").unwrap();
        assert!(c.resolving && c.state == Conflicted, "c waits, journalled");
        assert!(
            !m.is_over(Mode::MergeOnly),
            "the run waits for c's resolve attempt"
        );
        assert!(
            tags(&m.start(Mode::MergeOnly, 11).unwrap())
                .iter()
                .all(|t| !t.starts_with("launch")),
            "no slot yet"
        );
        // b's attempt ends (failed before its agent started): its slot is
        // free again and c's agent starts in it.
        let verdict = Verdict::Failed {
            state: Failed,
            reason: "preparation failed".into(),
            exit_code: None,
            work: None,
        };
        m.handle(Input::Instance("b".into(), InstanceMsg::Done(verdict)), 12)
            .unwrap();
        let out = tags(&m.start(Mode::MergeOnly, 13).unwrap());
        assert!(
            out.contains(&"launch c resolve true".to_string()),
            "{out:?}"
        );
    }

    /// Regression (a gate that cannot run is not a failed gate): the log
    /// could not be created, and the queue bisected and refused `a`.
    #[test]
    fn a_gate_that_could_not_run_stops_the_queue_and_refuses_nobody() {
        let mut m = queued(&["a", "b", "c"], 2, false);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a", "b", "c"], &[]));
        m.start(Mode::MergeOnly, 2).unwrap();
        assert_eq!(m.gates_running(), 1);
        let out = lane(
            &mut m,
            LaneMsg::GateDone {
                run: 1,
                end: GateEnd::CouldNotRun("failed to create the gate log `/x`: disk full".into()),
                elapsed_ms: 1,
            },
        );
        assert!(out.contains(&"emit GateCouldNotRun".to_string()), "{out:?}");
        for never in ["emit GateFailed", "emit Bisect", "emit Refused"] {
            assert!(!out.contains(&never.to_string()), "{out:?}");
        }
        for id in ["a", "b", "c"] {
            let inst = m.record.instance(id).unwrap();
            assert_eq!(inst.state, Succeeded);
            let reason = inst.reason.clone().unwrap();
            assert!(
                reason.contains("could not run") && reason.contains("disk full"),
                "{reason}"
            );
        }
        assert!(m.queue_stopped().unwrap().contains("disk full"));
        // Nothing more starts; the run is over and ends interrupted.
        let start = tags(&m.start(Mode::MergeOnly, 3).unwrap());
        assert!(
            start
                .iter()
                .all(|t| !t.starts_with("gate") && !t.starts_with("land")),
            "{start:?}"
        );
        assert!(m.is_over(Mode::MergeOnly));
        m.finish(Mode::MergeOnly, 4);
        assert_eq!(m.record.state, crate::state::RunState::Interrupted);
        // `resume`: the reasons go, the same prefix is gated again.
        let record = m.record.clone();
        let mut again = queued(&["a", "b", "c"], 2, false);
        again.record = record;
        again.resume_queue(5).unwrap();
        assert_eq!(again.queue_stopped(), None);
        assert!(again.record.instance("a").unwrap().reason.is_none());
        let start = tags(&again.start(Mode::MergeOnly, 6).unwrap());
        assert!(
            start.contains(&"gate 1 prefix 3 slot Some(0)".to_string()),
            "{start:?}"
        );
    }

    #[test]
    fn a_stop_cancels_the_other_gates_running() {
        let mut m = queued(&["a", "b", "c", "d"], 2, false);
        m.start(Mode::MergeOnly, 1).unwrap();
        lane(&mut m, built(1, &["a", "b", "c", "d"], &[]));
        m.start(Mode::MergeOnly, 2).unwrap();
        lane(&mut m, gate_done(1, false));
        // Bisection with two gate jobs: two prefixes under test at once.
        m.start(Mode::MergeOnly, 3).unwrap();
        assert_eq!(m.gates_running(), 2);
        let runs: Vec<u64> = m
            .record
            .merge_queue
            .as_ref()
            .unwrap()
            .gates
            .iter()
            .map(|g| g.run)
            .collect();
        let out = lane(
            &mut m,
            LaneMsg::GateDone {
                run: runs[0],
                end: GateEnd::CouldNotRun("sh: not found".into()),
                elapsed_ms: 1,
            },
        );
        assert!(out.contains(&format!("cancel {}", runs[1])), "{out:?}");
        // The cancelled one ends; the planner is not told (resume asks
        // again), and nothing is refused.
        let out = lane(
            &mut m,
            LaneMsg::GateDone {
                run: runs[1],
                end: GateEnd::Stopped,
                elapsed_ms: 1,
            },
        );
        assert_eq!(out, ["save"]);
        assert!(m.is_over(Mode::MergeOnly));
        for id in ["a", "b", "c", "d"] {
            assert_eq!(state(&m, id), Succeeded);
        }
    }
}
