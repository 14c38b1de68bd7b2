//! The run machine: the run's record, the scheduler, the slots and the merge
//! and prune queues. Synchronous and pure: no I/O, no tokio, no git. The
//! dispatcher (`dispatch.rs`) asks it what to do next and performs it.
//!
//! It is the only writer of an instance's state: every move goes through
//! [`RunMachine::advance`], which checks it against the lifecycle in
//! docs/DESIGN.md ("State") and refuses any other.

use std::collections::{BTreeSet, HashMap, VecDeque};

use thiserror::Error;

use crate::schedule::Scheduler;
use crate::state::{InstanceRecord, InstanceState, RunRecord};

/// A move the lifecycle does not allow: a bug in the runner, reported with
/// the instance it concerns rather than acted upon.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MachineError {
    #[error("instance `{id}`: illegal state change {from:?} -> {to:?}")]
    IllegalMove {
        id: String,
        from: InstanceState,
        to: InstanceState,
    },
    #[error("instance `{id}` has no record in this run")]
    UnknownInstance { id: String },
}

/// True when an instance may move from `from` to `to`.
///
/// The forward path is `pending → creating → created → running →
/// succeeded | failed | timed_out | unchanged → merging → merged |
/// conflicted | refused → pruned`; `pending → skipped` when a dependency
/// failed. The backward moves are the ones `resume` and `treefarm merge`
/// take: a merge whose ref never moved goes back to `succeeded`, and so does
/// a conflicted or refused branch the user fixed by hand. Staying put is
/// always allowed (a replanted or retried instance keeps its state).
pub fn allowed(from: InstanceState, to: InstanceState) -> bool {
    use InstanceState::*;
    if from == to {
        return true;
    }
    let agent_end = matches!(to, Succeeded | Failed | TimedOut | Unchanged);
    match from {
        Pending => matches!(to, Creating | Skipped),
        // A plant that failed fails the instance.
        Creating => matches!(to, Created | Failed),
        // An agent that ended while no coordinator ran (resume) is judged
        // without a `running` in between; a setup failure fails it.
        Created => to == Running || agent_end,
        Running => agent_end,
        // Up to date or conflicting is known before the intent is journalled.
        Succeeded => matches!(to, Merging | Merged | Conflicted | Refused),
        // Back to `succeeded`: resume found the target ref never moved.
        Merging => matches!(to, Merged | Conflicted | Refused | Succeeded),
        // `treefarm merge` after a manual fix.
        Conflicted | Refused => to == Succeeded,
        Merged => to == Pruned,
        Failed | TimedOut | Unchanged | Skipped | Pruned => false,
    }
}

/// The run's record and everything the scheduling of a run decides from.
pub struct RunMachine {
    /// The journal's content. Instance states change only through
    /// [`RunMachine::advance`].
    pub record: RunRecord,
    pub sched: Scheduler,
    /// Slot numbers not held by a planted or running instance.
    free_slots: BTreeSet<usize>,
    /// Branches waiting for the merge lane, in (priority, order, id) order.
    merge_queue: BTreeSet<(i64, usize, String)>,
    /// Merged instances waiting for their worktree and branch removal.
    prune_queue: VecDeque<String>,
    /// (priority, order) of every spec of the run.
    ranks: HashMap<String, (i64, usize)>,
    /// The instance the lane is merging.
    pub merging: Option<String>,
    /// The lane is pruning.
    pub pruning: bool,
}

impl RunMachine {
    pub fn new(
        record: RunRecord,
        sched: Scheduler,
        slots: usize,
        ranks: HashMap<String, (i64, usize)>,
    ) -> RunMachine {
        RunMachine {
            record,
            sched,
            free_slots: (0..slots).collect(),
            merge_queue: BTreeSet::new(),
            prune_queue: VecDeque::new(),
            ranks,
            merging: None,
            pruning: false,
        }
    }

    /// The record of `id` (scheduled ids always have one).
    pub fn inst(&mut self, id: &str) -> Result<&mut InstanceRecord, MachineError> {
        self.record
            .instance_mut(id)
            .ok_or_else(|| MachineError::UnknownInstance { id: id.to_string() })
    }

    /// Moves `id` to `to` if the lifecycle allows it; an outcome (or
    /// `succeeded`) stamps `ended_at_ms` with `now` the first time.
    pub fn advance(&mut self, id: &str, to: InstanceState, now: u64) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        if !allowed(inst.state, to) {
            return Err(MachineError::IllegalMove {
                id: id.to_string(),
                from: inst.state,
                to,
            });
        }
        inst.state = to;
        if to.is_terminal() || to == InstanceState::Succeeded {
            inst.ended_at_ms.get_or_insert(now);
        }
        Ok(())
    }

    /// Marks `skipped` (with the reason) every spec the scheduler skipped
    /// since the last call because something it depends on did not merge;
    /// returns them for the `skipped` events.
    pub fn take_skipped(&mut self, now: u64) -> Result<Vec<(String, String)>, MachineError> {
        let skipped = self.sched.take_skipped();
        for (id, reason) in &skipped {
            self.advance(id, InstanceState::Skipped, now)?;
            self.inst(id)?.reason = Some(reason.clone());
        }
        Ok(skipped)
    }

    /// Whether the run ends `interrupted` (for `resume`) rather than
    /// `finished`: stopped by a signal, or — a run, not `treefarm merge` —
    /// an instance is still being planted, run or merged (neither settled,
    /// nor `succeeded`, nor `pending`).
    pub fn ends_interrupted(&self, stopped: bool, run: bool) -> bool {
        stopped
            || run
                && self.record.instances.iter().any(|i| {
                    !i.state.is_terminal()
                        && i.state != InstanceState::Succeeded
                        && i.state != InstanceState::Pending
                })
    }

    /// Takes the lowest free slot.
    pub fn take_slot(&mut self) -> Option<usize> {
        self.free_slots.pop_first()
    }

    /// Takes `preferred` when it is free, else the lowest free slot, else
    /// slot 0 (resume re-attaching more instances than slots, which the
    /// journal of a smaller `--instances` can hold).
    pub fn claim_slot(&mut self, preferred: Option<usize>) -> usize {
        let slot = preferred
            .filter(|s| self.free_slots.contains(s))
            .or_else(|| self.free_slots.iter().next().copied())
            .unwrap_or(0);
        self.free_slots.remove(&slot);
        slot
    }

    /// Gives back the slot `id` held.
    pub fn release_slot(&mut self, id: &str) {
        if let Some(slot) = self.record.instance(id).and_then(|i| i.slot) {
            self.free_slots.insert(slot);
        }
    }

    fn rank(&self, id: &str) -> (i64, usize) {
        self.ranks
            .get(id)
            .copied()
            .unwrap_or((i64::MAX, usize::MAX))
    }

    /// Queues `id` for the merge lane.
    pub fn enqueue_merge(&mut self, id: &str) {
        let (priority, order) = self.rank(id);
        self.merge_queue.insert((priority, order, id.to_string()));
    }

    /// Queues `id` for pruning.
    pub fn enqueue_prune(&mut self, id: &str) {
        self.prune_queue.push_back(id.to_string());
    }

    /// True when an instance ranked before `rank` is still being planted or
    /// run.
    fn ranked_before_in_flight(&self, rank: (i64, usize)) -> bool {
        self.record.instances.iter().any(|inst| {
            matches!(
                inst.state,
                InstanceState::Creating | InstanceState::Created | InstanceState::Running
            ) && self.ranks.get(&inst.id).is_some_and(|r| *r < rank)
        })
    }

    /// The next branch for the merge lane, taken off the queue and marked as
    /// merging; `None` while the lane is busy or nothing may merge yet.
    ///
    /// Priority order: with `wait_for_ranked` (a run, not `treefarm merge`)
    /// a branch waits while an instance ranked before it is still being
    /// planted or run, so the target's history, and which of two conflicting
    /// branches lands, do not depend on timing. Pending instances do not hold
    /// it back (one may be waiting for this merge).
    pub fn next_merge(&mut self, wait_for_ranked: bool) -> Option<String> {
        if self.merging.is_some() || self.pruning {
            return None;
        }
        let next = self.merge_queue.first().cloned()?;
        if wait_for_ranked && self.ranked_before_in_flight((next.0, next.1)) {
            return None;
        }
        self.merge_queue.remove(&next);
        let (_, _, id) = next;
        self.merging = Some(id.clone());
        Some(id)
    }

    /// The next instance to prune, marked as pruning; `None` while the lane
    /// is busy. Merges and prunes share one lane: removing a worktree
    /// rewrites git's worktree admin files, which a merge (checking for
    /// checkouts of the target) and a branch deletion read.
    pub fn next_prune(&mut self) -> Option<String> {
        if self.merging.is_some() || self.pruning {
            return None;
        }
        let id = self.prune_queue.pop_front()?;
        self.pruning = true;
        Some(id)
    }

    /// Nothing queued for the lane and the lane idle.
    pub fn lane_idle(&self) -> bool {
        self.merging.is_none()
            && !self.pruning
            && self.merge_queue.is_empty()
            && self.prune_queue.is_empty()
    }

    /// Branches waiting for a merge.
    pub fn merges_waiting(&self) -> usize {
        self.merge_queue.len()
    }

    /// Instances waiting for pruning.
    pub fn prunes_waiting(&self) -> usize {
        self.prune_queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Node;
    use crate::state::RunState;
    use InstanceState::*;

    const ALL: [InstanceState; 14] = [
        Pending, Creating, Created, Running, Succeeded, Failed, TimedOut, Merging, Merged,
        Conflicted, Refused, Skipped, Pruned, Unchanged,
    ];

    fn machine(ids: &[(&str, i64)], slots: usize) -> RunMachine {
        let record = RunRecord {
            run_id: "r".into(),
            state: RunState::Running,
            instances: ids
                .iter()
                .map(|(id, _)| InstanceRecord {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let nodes: Vec<Node> = ids
            .iter()
            .enumerate()
            .map(|(order, (id, priority))| Node {
                id: id.to_string(),
                priority: *priority,
                order,
                depends_on: Vec::new(),
            })
            .collect();
        let ranks = nodes
            .iter()
            .map(|n| (n.id.clone(), (n.priority, n.order)))
            .collect();
        let sched = Scheduler::new(nodes, &[], slots);
        RunMachine::new(record, sched, slots, ranks)
    }

    fn walk(m: &mut RunMachine, id: &str, path: &[InstanceState]) {
        for (n, to) in path.iter().enumerate() {
            m.advance(id, *to, n as u64 + 10)
                .unwrap_or_else(|e| panic!("step {n}: {e}"));
        }
    }

    #[test]
    fn the_forward_path_is_allowed_and_stamps_the_end_once() {
        let mut m = machine(&[("a", 1)], 1);
        walk(
            &mut m,
            "a",
            &[
                Creating, Created, Running, Succeeded, Merging, Merged, Pruned,
            ],
        );
        let inst = m.record.instance("a").unwrap();
        assert_eq!(inst.state, Pruned);
        // Stamped at `succeeded` (step 3), not moved by the later moves.
        assert_eq!(inst.ended_at_ms, Some(13));
    }

    #[test]
    fn every_outcome_of_an_agent_is_reachable_from_running() {
        for end in [Succeeded, Failed, TimedOut, Unchanged] {
            let mut m = machine(&[("a", 1)], 1);
            walk(&mut m, "a", &[Creating, Created, Running, end]);
            assert!(m.record.instance("a").unwrap().ended_at_ms.is_some());
        }
    }

    #[test]
    fn settled_states_are_final() {
        for from in [Failed, TimedOut, Unchanged, Skipped, Pruned] {
            for to in ALL {
                assert_eq!(allowed(from, to), from == to, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn an_illegal_move_is_refused_and_names_the_instance() {
        let mut m = machine(&[("a", 1)], 1);
        let err = m.advance("a", Merged, 1).unwrap_err();
        assert_eq!(
            err,
            MachineError::IllegalMove {
                id: "a".into(),
                from: Pending,
                to: Merged
            }
        );
        assert!(err.to_string().contains("`a`"), "{err}");
        // Nothing changed.
        assert_eq!(m.record.instance("a").unwrap().state, Pending);
        assert_eq!(
            m.advance("nope", Creating, 1).unwrap_err(),
            MachineError::UnknownInstance { id: "nope".into() }
        );
    }

    /// The moves `resume` and `treefarm merge` take from each journalled
    /// state (see `Dispatcher::reconcile`).
    #[test]
    fn the_paths_resume_takes_are_allowed() {
        // Killed while planting: planted again, then run or failed.
        assert!(allowed(Creating, Created));
        assert!(allowed(Creating, Failed));
        // Planted, agent ended while no coordinator ran: judged at once.
        for end in [Succeeded, Failed, TimedOut, Unchanged] {
            assert!(allowed(Created, end));
            assert!(allowed(Running, end));
        }
        // Re-attached or rerun: stays where it was.
        assert!(allowed(Running, Running));
        assert!(allowed(Created, Created));
        // A merge whose ref never moved is merged again; one that landed is
        // recorded merged.
        assert!(allowed(Merging, Succeeded));
        assert!(allowed(Merging, Merged));
        // Fixed by hand, merged by `treefarm merge`.
        assert!(allowed(Conflicted, Succeeded));
        assert!(allowed(Refused, Succeeded));
        // Merged before the kill, pruned after.
        assert!(allowed(Merged, Pruned));
        // Nothing goes back to `pending` or `creating`.
        for from in ALL {
            if from != Pending {
                assert!(!allowed(from, Pending), "{from:?}");
            }
            if !matches!(from, Pending | Creating) {
                assert!(!allowed(from, Creating), "{from:?}");
            }
        }
    }

    #[test]
    fn a_failed_dependency_skips_its_dependents_with_a_reason() {
        let mut m = machine(&[("a", 1), ("b", 2)], 2);
        // `b` depends on `a`.
        let nodes = vec![
            Node {
                id: "a".into(),
                priority: 1,
                order: 0,
                depends_on: Vec::new(),
            },
            Node {
                id: "b".into(),
                priority: 2,
                order: 1,
                depends_on: vec!["a".into()],
            },
        ];
        m.sched = Scheduler::new(nodes, &[], 2);
        assert_eq!(m.sched.start_ready(), vec!["a".to_string()]);
        walk(&mut m, "a", &[Creating, Created, Running, Failed]);
        assert!(m.take_skipped(50).unwrap().is_empty());
        m.sched.agent_done("a");
        m.sched.settled("a", false);
        let skipped = m.take_skipped(60).unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, "b");
        let b = m.record.instance("b").unwrap();
        assert_eq!(b.state, Skipped);
        assert_eq!(b.reason.as_deref(), Some(skipped[0].1.as_str()));
        assert!(skipped[0].1.contains('a'), "{}", skipped[0].1);
        assert_eq!(b.ended_at_ms, Some(60));
    }

    #[test]
    fn a_run_ends_interrupted_when_stopped_or_an_instance_is_still_out() {
        let mut m = machine(&[("a", 1), ("b", 2)], 2);
        // Nothing started yet (pending) or waiting for a merge: finished.
        assert!(!m.ends_interrupted(false, true));
        assert!(m.ends_interrupted(true, true));
        walk(&mut m, "a", &[Creating, Created, Running]);
        assert!(m.ends_interrupted(false, true));
        // `treefarm merge` leaves running instances to their run.
        assert!(!m.ends_interrupted(false, false));
        walk(&mut m, "a", &[Succeeded]);
        assert!(!m.ends_interrupted(false, true));
        walk(&mut m, "a", &[Merging]);
        assert!(m.ends_interrupted(false, true));
        walk(&mut m, "a", &[Merged, Pruned]);
        walk(&mut m, "b", &[Skipped]);
        assert!(!m.ends_interrupted(false, true));
    }

    #[test]
    fn slots_are_taken_lowest_first_and_given_back() {
        let mut m = machine(&[("a", 1), ("b", 2)], 2);
        assert_eq!(m.take_slot(), Some(0));
        m.inst("a").unwrap().slot = Some(0);
        assert_eq!(m.take_slot(), Some(1));
        assert_eq!(m.take_slot(), None);
        m.release_slot("a");
        assert_eq!(m.take_slot(), Some(0));
    }

    #[test]
    fn resume_claims_the_journalled_slot_when_free() {
        let mut m = machine(&[("a", 1), ("b", 2)], 3);
        assert_eq!(m.claim_slot(Some(2)), 2);
        // Taken already: the lowest free one.
        assert_eq!(m.claim_slot(Some(2)), 0);
        assert_eq!(m.claim_slot(None), 1);
        // None left (a journal of more instances than slots): slot 0.
        assert_eq!(m.claim_slot(Some(1)), 0);
    }

    #[test]
    fn merges_go_in_priority_order_and_wait_for_ranked_instances_in_flight() {
        let mut m = machine(&[("a", 1), ("b", 2), ("c", 3)], 3);
        walk(&mut m, "a", &[Creating, Created, Running]);
        for id in ["b", "c"] {
            walk(&mut m, id, &[Creating, Created, Running, Succeeded]);
        }
        m.enqueue_merge("c");
        m.enqueue_merge("b");
        // `a` ranks before both and is still running.
        assert_eq!(m.next_merge(true), None);
        // `treefarm merge` does not wait.
        assert_eq!(m.next_merge(false), Some("b".into()));
        // One merge at a time.
        assert_eq!(m.next_merge(false), None);
        m.merging = None;
        walk(&mut m, "a", &[Failed]);
        assert_eq!(m.next_merge(true), Some("c".into()));
        m.merging = None;
        assert!(m.lane_idle());
    }

    #[test]
    fn merges_and_prunes_share_one_lane() {
        let mut m = machine(&[("a", 1), ("b", 2)], 2);
        m.enqueue_prune("a");
        m.enqueue_merge("b");
        assert_eq!(m.next_prune(), Some("a".into()));
        assert_eq!(m.next_merge(false), None);
        m.pruning = false;
        assert_eq!(m.next_merge(false), Some("b".into()));
        assert_eq!(m.next_prune(), None);
        assert_eq!(m.merges_waiting(), 0);
        assert_eq!(m.prunes_waiting(), 0);
    }
}
