//! The run machine: the run's record, the scheduler, the slots and the merge
//! and prune queues. Synchronous and pure: no I/O, no tokio, no git. Each
//! input goes through [`RunMachine::handle`], which returns the
//! [`Action`]s the dispatcher's loop (`dispatch.rs`) performs;
//! [`RunMachine::start`], [`RunMachine::restore`] and
//! [`RunMachine::finish`] decide what starts, what `resume` restores and
//! how the run ends.
//!
//! It is the only writer of an instance's state: every move goes through
//! [`RunMachine::advance`], which checks it against the lifecycle in
//! docs/DESIGN.md ("State") and refuses any other.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;

use thiserror::Error;

mod conflict;
mod paced;
mod queue;

use crate::config::Strategy;
use crate::merge::MergeResult;
use crate::policy::pacing::{Pacer, PacingPolicy};
use crate::policy::Budget;
use crate::report::events::AttemptResult;
use crate::report::Event;
use crate::runner::messages::{
    Action, AgentEnd, AgentEvent, AgentHandle, Input, InstanceMsg, LaneMsg, Launch, Mode, Planted,
    Signal, Start, Stop, Verdict, Work,
};
use crate::schedule::{Restored, Scheduler};
use crate::state::{slot_port, RunOptions};
use crate::state::{InstanceRecord, InstanceState, RunRecord, RunState};

/// What `recover.rs` found for an instance the journal shows out
/// (creating, created, running) when a run is resumed.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The slot it claimed.
    pub slot: usize,
    /// Where its branch starts (made again after a half-made plant).
    pub start_commit: String,
    /// Its agent still runs: the executor's handle on it.
    pub live: Option<AgentHandle>,
    /// A termination finished while no coordinator ran: its reason.
    pub ended: Option<AgentEnd>,
    /// A termination under way: its reason and SIGKILL deadline.
    pub terminating: Option<(AgentEnd, u64)>,
    /// The agent ended with this exit code (its exit file).
    pub exited: Option<i32>,
    /// The attempt the agent out there belongs to, if it says.
    pub seen_attempt: Option<u32>,
}

/// The reason shown for an instance stopped by Ctrl-C (`interrupted` is the
/// field resume reads).
pub const INTERRUPTED: &str = "interrupted";

/// The run options the machine decides from (data only).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `--no-merge`: a succeeded branch is kept, not queued for the lane.
    pub no_merge: bool,
    /// `--keep`: a merged instance is not pruned.
    pub keep: bool,
    /// For the `merged` event.
    pub strategy: Strategy,
    /// An agent's deadline after its start.
    pub timeout_ms: Option<u64>,
    pub port_base: u16,
    pub port_stride: u16,
    /// Where the worktrees are (`<worktree_dir>/<id>`).
    pub worktree_dir: PathBuf,
    /// `agent.retries`: what a resumed spec that was rate-limited before
    /// still has (its rate-limited attempts used none).
    pub retries: u32,
    /// The merge queue's planner settings; `None`: one branch at a time on
    /// the lane (`merge.batch: 1`, one gate job).
    pub queue: Option<crate::merge_queue::QueueConfig>,
    /// `merge.on_conflict: agent`: a conflicted branch goes back to its agent.
    pub resolve_by_agent: bool,
    /// `merge.resolve_attempts`.
    pub resolve_attempts: u32,
    /// Where gate runs write their logs (the run's `logs/` folder).
    pub gate_logs: PathBuf,
}

impl Policy {
    pub fn from_options(opts: &RunOptions) -> Policy {
        Policy {
            no_merge: opts.no_merge,
            keep: opts.keep,
            strategy: opts.strategy,
            timeout_ms: opts.timeout_ms,
            port_base: opts.port_base,
            port_stride: opts.port_stride,
            worktree_dir: opts.worktree_dir.clone(),
            retries: opts.retries,
            queue: opts.queue.planner(opts.gate.is_some()),
            resolve_by_agent: opts.queue.on_conflict == crate::config::OnConflict::Agent,
            resolve_attempts: opts.queue.resolve_attempts.max(1),
            gate_logs: PathBuf::new(),
        }
    }

    fn worktree(&self, id: &str) -> PathBuf {
        self.worktree_dir.join(id)
    }

    /// The `kept` event of `id`'s branch and worktree.
    pub fn kept(&self, id: &str, reason: &str) -> Event {
        Event::Kept {
            id: id.to_string(),
            branch: crate::spec::branch_for(id),
            worktree: self.worktree(id).display().to_string(),
            reason: reason.to_string(),
        }
    }
}

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
    #[error("instance `{id}` was scheduled with no free slot")]
    NoFreeSlot { id: String },
    #[error("instance `{id}` is {state:?}: reconciled by recover.rs, not restored")]
    NotRestorable { id: String, state: InstanceState },
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
        // `conflicted`: the agent resolving a conflict did not conclude it.
        Running => agent_end || to == Conflicted,
        // Up to date or conflicting is known before the intent is journalled.
        Succeeded => matches!(to, Merging | Merged | Conflicted | Refused),
        // Back to `succeeded`: resume found the target ref never moved.
        Merging => matches!(to, Merged | Conflicted | Refused | Succeeded),
        // `treefarm merge` after a manual fix; `running`: the agent
        // resolves the conflict (`merge.on_conflict: agent`).
        Conflicted => matches!(to, Succeeded | Running),
        Refused => to == Succeeded,
        Merged => to == Pruned,
        Failed | TimedOut | Unchanged | Skipped | Pruned => false,
    }
}

/// The run's record and everything the scheduling of a run decides from.
pub struct RunMachine {
    /// The journal's content. Instance states change only through
    /// [`RunMachine::advance`].
    record: RunRecord,
    sched: Scheduler,
    /// Slot numbers not held by a planted or running instance.
    free_slots: BTreeSet<usize>,
    /// Branches waiting for the merge lane, in (priority, order, id) order.
    merge_queue: BTreeSet<(i64, usize, String)>,
    /// Merged instances waiting for their worktree and branch removal.
    prune_queue: VecDeque<String>,
    /// (priority, order) of every spec of the run.
    ranks: HashMap<String, (i64, usize)>,
    /// The instance the lane is merging.
    merging: Option<String>,
    /// The lane is pruning.
    pruning: bool,
    /// The run options decisions depend on.
    policy: Policy,
    /// Where the signals have taken the run: `Run` until the first,
    /// `Graceful` after it, `Kill` after the second.
    stop: Stop,
    /// Instance tasks started and not yet done.
    agents_in_flight: usize,
    /// Lane jobs (plant, merge, prune) started and not yet reported.
    other_in_flight: usize,
    /// What each succeeded agent committed (the merge's commit subjects).
    works: HashMap<String, Work>,
    /// Rate-limit pacing: the concurrency window, the start gate, each
    /// spec's waits and every backoff (mirrored into `record.pacing`).
    pacer: Pacer,
    /// `run.max_cost` / `run.max_tokens` as this coordinator enforces them.
    budget: Budget,
    /// Specs waiting out a rate-limit backoff in their worktree (they keep
    /// their slot).
    waiting: BTreeMap<String, Waiting>,
    /// Agents `resume` runs again, planted and waiting for room in the
    /// concurrency window and the start interval (they keep their slot).
    held: VecDeque<Launch>,
    /// Of the launches `resume` replants, those that start an agent (the
    /// others re-attach or judge one that already ended).
    hold_after_plant: BTreeSet<String>,
    /// Specs started again after a rate limit: their next attempt is not a
    /// retry (no `retrying` event; the `rate_limited` event said it).
    relaunched: BTreeSet<String>,
    /// Conflicts handed back to their agents, waiting for a free slot and
    /// room in the window (`merge.on_conflict: agent`).
    resolves_waiting: VecDeque<String>,
    /// The lane runs a merge-queue job (build or land).
    queue_lane: bool,
    /// Merge-queue jobs waiting for the lane, in the planner's order.
    lane_jobs: VecDeque<Action>,
    /// Gate worktree slots not running a gate.
    gate_slots: BTreeSet<usize>,
    /// When each plant under way was decided (the start interval and the
    /// window let it go): its `planted` event says how long it took, so the
    /// report tells waiting for the start gate from planting.
    plant_began: HashMap<String, u64>,
    /// Instances `succeeded` or `merging`: their worktrees wait for the
    /// lane (kept by [`RunMachine::advance`], the only state change).
    awaiting_merge: usize,
    /// How many worktrees may wait for the lane (to merge or to be pruned)
    /// before fresh specs wait instead: see [`RunMachine::lane_room`].
    lane_bound: usize,
    /// Instances whose worktree stays now that they reached a state: its
    /// index must be in line with its branch (`git/index_lag.rs`); the
    /// loop settles them ([`RunMachine::take_settles`]).
    settles: Vec<String>,
}

/// A rate-limited spec waiting to start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    retry_at_ms: u64,
    /// The attempt that was rate-limited.
    attempt: u32,
    /// The retries it still has.
    retries_left: u32,
}

impl RunMachine {
    pub fn new(
        record: RunRecord,
        sched: Scheduler,
        slots: usize,
        ranks: HashMap<String, (i64, usize)>,
        policy: Policy,
    ) -> RunMachine {
        let mut record = record;
        if let Some(config) = policy.queue {
            // A journalled queue takes this coordinator's settings: `treefarm
            // merge --gate` after `run --no-merge` gates what it lands.
            record
                .merge_queue
                .get_or_insert_with(|| crate::merge_queue::QueueRecord::new(config))
                .planner
                .reconfigure(config);
        }
        let gate_jobs = policy.queue.map_or(0, |q| q.gate_jobs.max(1));
        let awaiting_merge = record
            .instances
            .iter()
            .filter(|i| awaits_merge(i.state))
            .count();
        RunMachine {
            record,
            sched,
            free_slots: (0..slots).collect(),
            merge_queue: BTreeSet::new(),
            prune_queue: VecDeque::new(),
            ranks,
            merging: None,
            pruning: false,
            policy,
            stop: Stop::Run,
            agents_in_flight: 0,
            other_in_flight: 0,
            works: HashMap::new(),
            pacer: Pacer::new(
                PacingPolicy {
                    instances: slots,
                    start_interval: std::time::Duration::ZERO,
                    max_backoff: crate::config::RateLimitConfig::default().max_backoff,
                    max_waits: crate::config::RateLimitConfig::default().max_waits,
                },
                0,
            ),
            budget: Budget::default(),
            waiting: BTreeMap::new(),
            held: VecDeque::new(),
            hold_after_plant: BTreeSet::new(),
            relaunched: BTreeSet::new(),
            resolves_waiting: VecDeque::new(),
            queue_lane: false,
            lane_jobs: VecDeque::new(),
            gate_slots: (0..gate_jobs).collect(),
            plant_began: HashMap::new(),
            awaiting_merge,
            lane_bound: 2 * slots.max(1),
            settles: Vec::new(),
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
        let from = std::mem::replace(&mut inst.state, to);
        if to.is_terminal() || to == InstanceState::Succeeded {
            inst.ended_at_ms.get_or_insert(now);
        }
        if keeps_worktree(to, &self.policy) {
            self.settles.push(id.to_string());
        }
        if awaits_merge(from) {
            self.awaiting_merge -= 1;
        }
        if awaits_merge(to) {
            self.awaiting_merge += 1;
        }
        Ok(())
    }

    /// How many fresh specs may start as far as the lane is concerned:
    /// while `lane_bound` (twice the instances) worktrees wait to be merged
    /// or pruned, none. The lane (merges and prunes, one at a time) is
    /// slower than agents that finish at once; without a bound their
    /// worktrees pile up by the hundred, costing disk, and every listing of
    /// worktrees and branches (each plant, land and branch deletion) costs
    /// in proportion. Those worktrees drain without new starts — a merge
    /// never waits for a pending spec, a prune for anything — except while
    /// the merge queue is stopped, when there is no bound.
    fn lane_room(&self) -> usize {
        if self.policy.no_merge || self.queue_stopped().is_some() {
            return usize::MAX;
        }
        let waiting = self.awaiting_merge + self.prune_queue.len() + usize::from(self.pruning);
        self.lane_bound.saturating_sub(waiting)
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
    pub fn ends_interrupted(&self, stopped: bool, mode: Mode) -> bool {
        let run = mode == Mode::Run;
        stopped
            || run
                && self.record.instances.iter().any(|i| {
                    !i.state.is_terminal()
                        && i.state != InstanceState::Succeeded
                        && i.state != InstanceState::Pending
                        // A conflict handed back whose agent has not run.
                        || i.resolving
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
    /// run (one that will not run again in this coordinator, `interrupted`,
    /// holds nothing back).
    fn ranked_before_in_flight(&self, rank: (i64, usize)) -> bool {
        self.record.instances.iter().any(|inst| {
            matches!(
                inst.state,
                InstanceState::Creating | InstanceState::Created | InstanceState::Running
            ) && !inst.interrupted
                && self.ranks.get(&inst.id).is_some_and(|r| *r < rank)
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
        if self.merging.is_some() || self.pruning || self.queue_lane {
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
            && self.queue_idle()
    }

    /// Branches waiting for a merge (read by the tests).
    #[cfg(test)]
    pub fn merges_waiting(&self) -> usize {
        self.merge_queue.len()
    }

    /// Instances waiting for pruning (read by the tests).
    #[cfg(test)]
    pub fn prunes_waiting(&self) -> usize {
        self.prune_queue.len()
    }
}

/// Whether an instance that reaches `state` keeps its worktree, with what
/// its agent left committed: everything after an agent ran but a merge to
/// be pruned, or a success `--no-merge` keeps, or a merge `--keep` keeps.
fn keeps_worktree(state: InstanceState, policy: &Policy) -> bool {
    match state {
        InstanceState::Failed
        | InstanceState::TimedOut
        | InstanceState::Conflicted
        | InstanceState::Refused => true,
        InstanceState::Succeeded => policy.no_merge,
        InstanceState::Merged => policy.keep,
        _ => false,
    }
}

/// A worktree in this state waits for the lane to merge it.
fn awaits_merge(state: InstanceState) -> bool {
    matches!(state, InstanceState::Succeeded | InstanceState::Merging)
}

/// The decisions: each input turned into the actions the loop performs, in
/// order. Instance state changes here, never in the loop.
impl RunMachine {
    /// Handles one thing that happened at `now` and returns what to do
    /// about it. An `Err` is a bug in the runner (an illegal move).
    pub fn handle(&mut self, input: Input, now: u64) -> Result<Vec<Action>, MachineError> {
        let mut out = Vec::new();
        match input {
            Input::Instance(id, msg) => self.on_instance(&mut out, id, msg, now)?,
            Input::Lane(msg) => self.on_lane(&mut out, msg, now)?,
            Input::Signal(signal) => self.on_signal(&mut out, signal),
            Input::Tick => out.push(Action::Refresh),
            // A backoff ended or the start interval passed: `start` decides.
            Input::Wake => {}
        }
        Ok(out)
    }

    /// What may start now, unless stopping: the specs the scheduler lets
    /// start (marked `creating` in their slots and journalled before the
    /// plant: nothing exists in git yet), then the next merge, then the
    /// next prune (after a flush: `merged` is durable before the worktree
    /// goes). `run`: `run` or `resume`, not `treefarm merge` (which plants
    /// nothing and does not wait for ranked instances).
    pub fn start(&mut self, mode: Mode, now: u64) -> Result<Vec<Action>, MachineError> {
        let run = mode == Mode::Run;
        let mut out = Vec::new();
        if self.stopping() {
            return Ok(out);
        }
        if run {
            self.check_budget(&mut out);
        }
        let may_start = run && !self.no_new_starts();
        if may_start {
            self.relaunch_due(&mut out, now)?;
            self.launch_held(&mut out, now);
        }
        // `treefarm merge` hands conflicts back too (budgets are for runs).
        if !run || !self.no_new_starts() {
            self.launch_resolves(&mut out, now)?;
        }
        let ready = if may_start {
            let room = self.room(now).min(self.lane_room());
            self.sched.start_ready_up_to(room)
        } else {
            Vec::new()
        };
        if !ready.is_empty() {
            self.pacer.started(now);
            self.sync_pacing();
        }
        if !ready.is_empty() {
            let mut launches = Vec::new();
            for id in ready {
                let slot = self
                    .take_slot()
                    .ok_or_else(|| MachineError::NoFreeSlot { id: id.clone() })?;
                self.advance(&id, InstanceState::Creating, now)?;
                self.inst(&id)?.slot = Some(slot);
                self.plant_began.insert(id.clone(), now);
                launches.push(Launch::fresh(id, slot, String::new(), 1, true));
            }
            out.push(Action::Save);
            out.push(Action::Flush);
            self.other_in_flight += 1;
            out.push(Action::Plant {
                launches,
                reuse: false,
            });
        }
        if self.policy.queue.is_some() {
            self.start_queue(&mut out, mode, now)?;
        } else if let Some(id) = self.next_merge(run) {
            self.other_in_flight += 1;
            let subjects = self
                .works
                .get(&id)
                .map(|w| w.subjects.clone())
                .unwrap_or_default();
            out.push(Action::Merge { id, subjects });
        }
        if let Some(id) = self.next_prune() {
            out.push(Action::Flush);
            self.other_in_flight += 1;
            out.push(Action::Prune(id));
        }
        Ok(out)
    }

    /// `resume` and `treefarm merge`: puts an instance the journal shows
    /// settled, succeeded or merging back into the scheduler and the lane's
    /// queues. `landed` (only read for `merging`): git shows the merge in
    /// the target (recover.rs probes it); then it is recorded merged, else
    /// it goes back to `succeeded` and is merged again. `run`: not
    /// `treefarm merge`. Instances still out (creating, created, running)
    /// and conflicted or refused ones are recover.rs's: an error here.
    pub fn restore(
        &mut self,
        id: &str,
        mode: Mode,
        landed: bool,
        now: u64,
    ) -> Result<Vec<Action>, MachineError> {
        let run = mode == Mode::Run;
        use InstanceState::*;
        let mut out = Vec::new();
        let state = self.inst(id)?.state;
        match state {
            Pending => {}
            Skipped | Failed | TimedOut | Unchanged => {
                self.sched.restore(id, Restored::Settled { merged: false })
            }
            Succeeded => {
                if self.policy.no_merge && run {
                    self.sched.restore(id, Restored::Settled { merged: true });
                } else {
                    self.sched.restore(id, Restored::AwaitingSettle);
                    self.enqueue_merge(id);
                }
            }
            Merging => {
                self.sched.restore(id, Restored::AwaitingSettle);
                if landed {
                    let commit = self.inst(id)?.merged_commit.clone().unwrap_or_default();
                    self.on_merged(&mut out, id, commit, now)?;
                } else {
                    self.advance(id, Succeeded, now)?;
                    self.enqueue_merge(id);
                }
            }
            Merged => {
                self.sched.restore(id, Restored::Settled { merged: true });
                if !self.policy.keep {
                    self.enqueue_prune(id);
                }
            }
            Pruned => self.sched.restore(id, Restored::Settled { merged: true }),
            Creating | Created | Running | Conflicted | Refused => {
                return Err(MachineError::NotRestorable {
                    id: id.to_string(),
                    state,
                })
            }
        }
        Ok(out)
    }

    /// `resume`: how an instance the journal shows out continues, from what
    /// `recover.rs` found: re-attached to its live agent, judged on its
    /// exit code or ended termination (same attempt), or run again (next
    /// attempt; `setup` again unless it was running). Notes say which.
    pub fn resume_out(
        &mut self,
        id: &str,
        found: Found,
        now: u64,
    ) -> Result<(Launch, Vec<Action>), MachineError> {
        let mut out = Vec::new();
        let inst = self.inst(id)?;
        let (state, attempt, deadline_ms) = (inst.state, inst.attempt, inst.deadline_ms);
        let resolve = inst.resolving;
        if let Some(why) = &found.ended {
            out.push(Action::Note(format!(
                "{id}: agent {why} while treefarm was not running; its processes are ended"
            )));
        }
        match (&found.live, found.exited) {
            (Some(AgentHandle::Process(pid, _)), _) => out.push(Action::Note(format!(
                "{id}: agent pid {pid} is still running; re-attaching and waiting for it"
            ))),
            (Some(AgentHandle::Job { name, id: job }), _) => out.push(Action::Note(format!(
                "{id}: Slurm job {} ({name}) is still queued or running; re-attaching and following it",
                job.map_or("of unknown id".to_string(), |j| j.to_string())
            ))),
            (None, Some(code)) => out.push(Action::Note(format!(
                "{id}: agent ended while treefarm was not running (exit code {code})"
            ))),
            (None, None) if state == InstanceState::Running => out.push(Action::Note(format!(
                "{id}: agent is gone without an exit code; running it again in its worktree (partial work kept)"
            ))),
            (None, None) => {}
        }
        let seen = found.seen_attempt.unwrap_or(0);
        let next = if found.live.is_some() || found.exited.is_some() || found.ended.is_some() {
            attempt.max(seen).max(1)
        } else {
            attempt + 1
        };
        let judged = found.live.is_some() || found.exited.is_some() || found.ended.is_some();
        // The judged attempt, if it is the rate-limited one, is counted
        // once more when it is classified again.
        let waits = self.pacer.waits(id).saturating_sub(u32::from(
            self.pacer.last_limited_attempt(id) == Some(next) && next > 0,
        ));
        let retries_left =
            (judged && waits > 0).then(|| (1 + self.policy.retries + waits).saturating_sub(next));
        let inst = self.inst(id)?;
        inst.attempt = inst.attempt.max(seen);
        inst.slot = Some(found.slot);
        inst.reason = None;
        inst.interrupted = false;
        inst.retry_at_ms = None;
        // What `recover` found is one of: a live agent (maybe being
        // terminated), an ended termination, an exit code, or nothing.
        let start = match (found.live, found.ended, found.exited) {
            (Some(handle), _, _) => Start::Reattach {
                handle,
                terminating: found.terminating,
                timeout_left: deadline_ms
                    .map(|d| std::time::Duration::from_millis(d.saturating_sub(now))),
            },
            (None, Some(why), _) => Start::Ended(why),
            (None, None, Some(code)) => Start::Ended(AgentEnd::Exited(code)),
            (None, None, None) => Start::Fresh {
                setup: state != InstanceState::Running,
            },
        };
        let launch = Launch {
            id: id.to_string(),
            slot: found.slot,
            start_commit: found.start_commit,
            attempt: next,
            start,
            retries_left,
            resolve,
        };
        Ok((launch, out))
    }

    /// `treefarm merge`: a conflicted or refused branch whose fix is
    /// committed goes back to `succeeded` and is queued for merging again.
    pub fn requeue_fixed(&mut self, id: &str, now: u64) -> Result<(), MachineError> {
        self.advance(id, InstanceState::Succeeded, now)?;
        let inst = self.inst(id)?;
        inst.conflict_paths.clear();
        inst.reason = None;
        inst.ended_at_ms = None;
        self.enqueue_merge(id);
        Ok(())
    }

    /// `resume`: the instances still out are planted again (worktrees that
    /// exist are reused), after the journal holds what reconciling changed.
    pub fn replant(&mut self, launches: Vec<Launch>) -> Vec<Action> {
        if launches.is_empty() {
            return Vec::new();
        }
        // Agents started again go through the concurrency window and the
        // start interval like any start (`on_planted` holds them).
        self.hold_after_plant = launches
            .iter()
            .filter(|l| l.is_fresh())
            .map(|l| l.id.clone())
            .collect();
        self.other_in_flight += 1;
        vec![
            Action::Save,
            Action::Flush,
            Action::Plant {
                launches,
                reuse: true,
            },
        ]
    }

    /// The loop ended: the run is `finished`, or `interrupted` (for
    /// `resume`, with its event) when stopped or an instance is still out.
    /// `run`: not `treefarm merge`.
    pub fn finish(&mut self, mode: Mode, now: u64) -> Vec<Action> {
        let run = mode == Mode::Run;
        // A merge queue stopped by a gate that could not run: `resume`
        // gates its branches again.
        let stopped =
            self.stopping() || run && self.budget_left() || self.queue_stopped().is_some();
        let interrupted = self.ends_interrupted(stopped, mode);
        self.record.state = if interrupted {
            RunState::Interrupted
        } else {
            RunState::Finished
        };
        self.record.finished_at_ms = Some(now);
        let mut out = vec![Action::Save];
        if interrupted {
            let run_id = self.record.run_id.clone();
            out.push(Action::Emit(Event::Interrupted {
                resume: format!("treefarm resume {run_id}"),
                run_id,
            }));
        }
        out
    }

    /// The budget is reached or the merge queue stopped (a gate could not
    /// run): no new agent starts, running ones finish; `resume` goes on.
    pub(super) fn no_new_starts(&self) -> bool {
        self.record.budget_reached.is_some() || self.queue_stopped().is_some()
    }

    /// The instances that reached a state in which their worktree stays
    /// (see `keeps_worktree`) since the last call.
    pub fn take_settles(&mut self) -> Vec<String> {
        std::mem::take(&mut self.settles)
    }

    /// The run's record, as the journal writes it and the reporters show it.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The commit subjects of what `id`'s agent committed (for the merge
    /// commit's message).
    pub fn subjects_of(&self, id: &str) -> Vec<String> {
        self.works
            .get(id)
            .map(|w| w.subjects.clone())
            .unwrap_or_default()
    }

    /// Adds this coordinator's Slurm calls (and `squeue` polls) to the run's
    /// (`executor: slurm` only).
    pub fn count_slurm_calls(&mut self, calls: crate::slurm::CallCounts, polls: u64) {
        if let Some(run) = &mut self.record.slurm {
            run.calls.sbatch += calls.sbatch;
            run.calls.squeue += calls.squeue;
            run.calls.scancel += calls.scancel;
            run.calls.scontrol += calls.scontrol;
            run.calls.sinfo += calls.sinfo;
            run.polls += polls;
        }
    }

    /// The record, once the run is over.
    pub fn into_record(self) -> RunRecord {
        self.record
    }

    /// This coordinator takes the run over: `running`, under its pid (and
    /// `/proc` start time, so a successor can tell it from a recycled pid).
    pub fn take_over(&mut self, pid: u32, start_time: Option<u64>) {
        self.record.state = RunState::Running;
        self.record.coordinator_pid = pid;
        self.record.coordinator_start = start_time;
    }

    /// `resume`, `treefarm merge`: where the scheduler puts an instance the
    /// journal shows, before the machine decides how it continues.
    pub fn reschedule(&mut self, id: &str, how: Restored) {
        self.sched.restore(id, how);
    }

    /// `treefarm merge`: a branch whose hand-made fix is not concluded
    /// stays settled and unmerged (its dependents are not started).
    pub fn leave_unmerged(&mut self, id: &str) {
        self.sched.settled(id, false);
    }

    /// A signal asked the run to stop (gracefully, or a second one: kill).
    fn stopping(&self) -> bool {
        self.stop != Stop::Run
    }

    /// A second signal: agents are killed.
    fn killing(&self) -> bool {
        self.stop == Stop::Kill
    }

    /// True when the loop may end: nothing in flight, and (unless stopped)
    /// nothing left to start, merge or prune.
    pub fn is_over(&self, mode: Mode) -> bool {
        let merge_only = mode == Mode::MergeOnly;
        if self.killing() {
            return self.agents_in_flight == 0;
        }
        if self.stopping() {
            return self.agents_in_flight == 0 && self.other_in_flight == 0;
        }
        if self.no_new_starts() {
            // Running agents finish and merge (or wait for `resume`, with
            // the merge queue stopped); nothing else starts.
            return self.agents_in_flight == 0 && self.other_in_flight == 0 && self.lane_idle();
        }
        self.agents_in_flight == 0
            && self.other_in_flight == 0
            && self.lane_idle()
            && self.resolves_waiting.is_empty()
            && (merge_only || self.sched.is_finished())
    }

    fn on_signal(&mut self, out: &mut Vec<Action>, signal: Signal) {
        let name = signal.name();
        if self.stopping() {
            out.push(Action::Note(format!("second {name}: killing agents now")));
            self.stop = Stop::Kill;
            out.push(Action::Stop(Stop::Kill));
        } else {
            out.push(Action::Note(format!(
                "{name}: stopping agents gracefully (again to kill); worktrees are kept"
            )));
            self.stop = Stop::Graceful;
            out.push(Action::Stop(Stop::Graceful));
            // Held for the window, never started: `resume` runs them.
            for launch in std::mem::take(&mut self.held) {
                if let Some(inst) = self.record.instance_mut(&launch.id) {
                    inst.interrupted = true;
                    inst.reason = Some(INTERRUPTED.into());
                }
                out.push(Action::Save);
            }
        }
    }

    /// Stopped by Ctrl-C while out: `resume` reruns it.
    fn mark_interrupted(&mut self, id: &str) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        inst.interrupted = true;
        inst.reason = Some(INTERRUPTED.into());
        Ok(())
    }

    /// Marks the specs the scheduler skipped and emits their events.
    pub fn skip(&mut self, out: &mut Vec<Action>, now: u64) -> Result<(), MachineError> {
        for (id, reason) in self.take_skipped(now)? {
            out.push(Action::Save);
            out.push(Action::Emit(Event::Skipped { id, reason }));
        }
        Ok(())
    }

    fn on_instance(
        &mut self,
        out: &mut Vec<Action>,
        id: String,
        msg: InstanceMsg,
        now: u64,
    ) -> Result<(), MachineError> {
        match msg {
            InstanceMsg::AttemptStarting { attempt } => {
                let inst = self.inst(&id)?;
                inst.attempt = attempt;
                inst.pid = None;
                inst.pid_start = None;
                inst.exit_code = None;
                inst.deadline_ms = None;
                inst.ending = None;
                inst.kill_at_ms = None;
                inst.started_at_ms.get_or_insert(now);
                // A resolve attempt was announced by its `resolving` event;
                // a start after a rate limit is not a retry either.
                let resolving = inst.resolving;
                if attempt > 1 && !self.relaunched.remove(&id) && !resolving {
                    out.push(Action::Emit(Event::Retrying { id, attempt }));
                }
            }
            InstanceMsg::Agent(AgentEvent::Started { pid, start_time }) => {
                let timeout_ms = self.policy.timeout_ms;
                // A resolve attempt is counted as its agent starts, in the
                // journal write that makes it `running`: counted at
                // `AttemptStarting`, another instance's write could journal
                // the count while it is still `conflicted`, and a kill then
                // made `resume` hand it back and count it again. A re-attached
                // agent (already `running`) is the same attempt.
                let counted = self.inst(&id)?.state == InstanceState::Running;
                self.advance(&id, InstanceState::Running, now)?;
                let inst = self.inst(&id)?;
                if inst.resolving && !counted {
                    inst.resolve_attempts += 1;
                }
                // A Slurm job's agent has no process here (pid 0).
                inst.pid = (pid != 0).then_some(pid);
                inst.pid_start = (pid != 0).then_some(start_time);
                inst.started_at_ms.get_or_insert(now);
                inst.deadline_ms = timeout_ms.map(|t| now + t);
                let attempt = inst.attempt.max(1);
                inst.attempt = attempt;
                let slot = inst.slot.unwrap_or(0);
                out.push(Action::Save);
                let port = slot_port(self.policy.port_base, self.policy.port_stride, slot);
                out.push(Action::Emit(Event::Started {
                    id,
                    attempt,
                    pid,
                    slot,
                    port,
                }));
                out.push(Action::AgentStarted);
            }
            InstanceMsg::Agent(AgentEvent::Terminating { why, kill_at_ms }) => {
                let inst = self.inst(&id)?;
                inst.ending = Some(crate::runner::messages::ending_name(&why).to_string());
                inst.kill_at_ms = Some(kill_at_ms);
                out.push(Action::Save);
            }
            InstanceMsg::Agent(AgentEvent::Job(update)) => {
                let inst = self.inst(&id)?;
                let job = inst.job.get_or_insert_with(Default::default);
                if job.name != update.name {
                    *job = crate::slurm::JobRecord {
                        name: update.name.clone(),
                        ..Default::default()
                    };
                }
                job.id = update.id.or(job.id);
                let pending =
                    |s: &Option<String>| matches!(s.as_deref(), Some("PENDING" | "REQUEUED"));
                if pending(&update.state) {
                    if !pending(&job.state) || job.reason != update.reason {
                        job.pending_since_ms = Some(now);
                    }
                } else {
                    job.pending_since_ms = None;
                }
                if update.state.is_some() {
                    job.state = update.state.clone();
                }
                job.reason = update.reason.clone().filter(|_| pending(&update.state));
                out.push(Action::Save);
                out.push(Action::Emit(Event::Job {
                    id,
                    name: update.name,
                    job_id: update.id,
                    state: update.state,
                    reason: update.reason,
                }));
            }
            InstanceMsg::Agent(AgentEvent::Status(status)) => {
                let inst = self.inst(&id)?;
                inst.progress = status.progress;
                inst.message = status.message.clone();
                out.push(Action::Progressed);
                out.push(Action::Emit(Event::Status {
                    id,
                    state: status.state,
                    progress: status.progress,
                    message: status.message,
                }));
            }
            InstanceMsg::Exited {
                attempt,
                end,
                elapsed_ms,
                rate_limited,
            } => {
                let (result, code) = attempt_result(&end);
                let result = if rate_limited {
                    AttemptResult::RateLimited
                } else {
                    result
                };
                let inst = self.inst(&id)?;
                inst.exit_code = code;
                inst.pid = None;
                inst.pid_start = None;
                inst.deadline_ms = None;
                inst.ending = None;
                inst.kill_at_ms = None;
                if matches!(end, AgentEnd::Stopped) {
                    inst.interrupted = true;
                    inst.reason = Some(INTERRUPTED.into());
                }
                let log = inst.log_path.clone();
                out.push(Action::Save);
                out.push(Action::Emit(Event::Exited {
                    id,
                    attempt,
                    result,
                    exit_code: code,
                    elapsed_ms,
                    log,
                }));
            }
            InstanceMsg::Warning(message) => out.push(Action::Emit(Event::Warning { id, message })),
            InstanceMsg::Denied(message) => {
                self.inst(&id)?.denied = Some(message.clone());
                out.push(Action::Save);
                out.push(Action::Emit(Event::Warning { id, message }));
            }
            InstanceMsg::Done(verdict) => {
                self.agents_in_flight = self.agents_in_flight.saturating_sub(1);
                self.release_slot(&id);
                self.on_verdict(out, &id, verdict, now)?;
            }
            InstanceMsg::Usage(usage) => {
                self.record.spending.record(&id, usage.clone());
                out.push(Action::Save);
                out.push(Action::Emit(Event::Usage { id, usage }));
                self.check_budget(out);
            }
        }
        Ok(())
    }

    fn record_work(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        work: &Work,
    ) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        inst.tip = Some(work.tip.clone());
        inst.commits = work.commits;
        inst.changed_files = work.changed.clone();
        inst.scope_creep = work.scope_creep.clone();
        out.push(Action::Emit(Event::Committed {
            id: id.to_string(),
            commit: work.tip.clone(),
            auto: work.auto_commit.is_some(),
            commits: work.commits,
            files: work.changed.clone(),
        }));
        if !work.scope_creep.is_empty() {
            out.push(Action::Emit(Event::ScopeCreep {
                id: id.to_string(),
                paths: work.scope_creep.clone(),
            }));
        }
        self.works.insert(id.to_string(), work.clone());
        Ok(())
    }

    fn on_verdict(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        verdict: Verdict,
        now: u64,
    ) -> Result<(), MachineError> {
        if matches!(verdict, Verdict::Succeeded(_) | Verdict::Failed { .. }) {
            self.finished_clean(out);
        }
        if self.inst(id)?.resolving {
            return self.on_resolved(out, id, verdict, now);
        }
        match verdict {
            Verdict::RateLimited {
                attempt,
                cause,
                retries_left,
            } => self.on_rate_limited(out, id, attempt, cause, retries_left, now)?,
            Verdict::Succeeded(work) => {
                self.record_work(out, id, &work)?;
                self.advance(id, InstanceState::Succeeded, now)?;
                out.push(Action::Save);
                self.sched.agent_done(id);
                if self.policy.no_merge {
                    self.sched.settled(id, true);
                    out.push(Action::Emit(
                        self.policy
                            .kept(id, "--no-merge: merge later with `treefarm merge`"),
                    ));
                } else {
                    self.enqueue_merge(id);
                }
            }
            Verdict::Failed {
                state,
                reason,
                exit_code,
                work,
            } => {
                if let Some(work) = &work {
                    self.record_work(out, id, work)?;
                }
                self.inst(id)?.exit_code = exit_code;
                self.sched.agent_done(id);
                self.fail(out, id, state, reason, now)?;
            }
            Verdict::Stopped => {
                // Stays `running` in the journal with the reason, so `resume`
                // reruns it in its worktree, keeping its partial work.
                self.mark_interrupted(id)?;
                out.push(Action::Save);
            }
        }
        Ok(())
    }

    /// `id` ended in `state` (failed, timed out, unchanged) for `reason`.
    fn fail(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        state: InstanceState,
        reason: String,
        now: u64,
    ) -> Result<(), MachineError> {
        self.inst(id)?.reason = Some(reason.clone());
        self.advance(id, state, now)?;
        out.push(Action::Save);
        let log = self.inst(id)?.log_path.clone();
        let id_ = id.to_string();
        // Announced with the word the summary and `status` show.
        out.push(Action::Emit(match state {
            InstanceState::TimedOut => Event::TimedOut {
                id: id_,
                reason,
                log,
            },
            InstanceState::Unchanged => Event::Unchanged {
                id: id_,
                reason,
                log,
            },
            _ => Event::Failed {
                id: id_,
                reason,
                log,
            },
        }));
        out.push(Action::EmitIfExists(
            self.policy.worktree(id),
            self.policy.kept(id, state.as_str()),
        ));
        self.sched.settled(id, false);
        self.skip(out, now)
    }

    fn on_lane(
        &mut self,
        out: &mut Vec<Action>,
        msg: LaneMsg,
        now: u64,
    ) -> Result<(), MachineError> {
        match msg {
            LaneMsg::Planted(batch) => self.on_planted(out, batch, now)?,
            LaneMsg::MergePrepared { id, new, tip } => {
                self.advance(&id, InstanceState::Merging, now)?;
                let inst = self.inst(&id)?;
                if tip.is_some() {
                    inst.tip = tip;
                }
                inst.merged_commit = Some(new);
                // The intent is durable before the target ref moves.
                out.push(Action::Save);
                out.push(Action::Flush);
                out.push(Action::Ack(id));
            }
            LaneMsg::Merged(id, result) => {
                self.other_in_flight = self.other_in_flight.saturating_sub(1);
                self.merging = None;
                match result {
                    Ok(MergeResult::Merged { commit }) | Ok(MergeResult::UpToDate { commit }) => {
                        self.on_merged(out, &id, commit, now)?
                    }
                    Ok(MergeResult::Conflicted { paths }) => {
                        self.conflicted(out, &id, paths, now)?
                    }
                    Ok(MergeResult::Refused { reason, log }) => {
                        self.refuse(out, &id, reason, log, now)?
                    }
                    Err(reason) => self.refuse(out, &id, reason, None, now)?,
                }
            }
            LaneMsg::Built { batch, result } => self.on_built(out, batch, result, now)?,
            LaneMsg::Landed { batch, result } => self.on_landed(out, batch, result, now)?,
            LaneMsg::GateDone {
                run,
                end,
                elapsed_ms,
            } => self.on_gate_done(out, run, end, elapsed_ms, now)?,
            LaneMsg::Pruned(id, result) => {
                self.other_in_flight = self.other_in_flight.saturating_sub(1);
                self.pruning = false;
                match result {
                    Ok(()) => {
                        self.advance(&id, InstanceState::Pruned, now)?;
                        out.push(Action::Save);
                        out.push(Action::Emit(Event::Pruned { id }));
                    }
                    Err(reason) => {
                        // Kept: what a removal under way left is settled.
                        self.settles.push(id.clone());
                        out.push(Action::PruneFailed {
                            id: id.clone(),
                            reason: reason.clone(),
                        });
                        out.push(Action::Emit(
                            self.policy
                                .kept(&id, &format!("merged, but not pruned: {reason}")),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn on_planted(
        &mut self,
        out: &mut Vec<Action>,
        batch: Planted,
        now: u64,
    ) -> Result<(), MachineError> {
        self.other_in_flight = self.other_in_flight.saturating_sub(1);
        out.push(Action::CrashPoint("after-plant"));
        let mut launches = Vec::new();
        for (launch, result) in batch {
            let id = launch.id.clone();
            match result {
                Ok(()) => {
                    let fresh = self.inst(&id)?.state == InstanceState::Creating;
                    if fresh {
                        self.advance(&id, InstanceState::Created, now)?;
                    }
                    self.inst(&id)?.start_commit = Some(launch.start_commit.clone());
                    out.push(Action::Save);
                    let began = self.plant_began.remove(&id);
                    if fresh {
                        out.push(Action::Emit(Event::Planted {
                            id: id.clone(),
                            branch: crate::spec::branch_for(&id),
                            worktree: self.policy.worktree(&id).display().to_string(),
                            start_commit: launch.start_commit.clone(),
                            plant_ms: began.map(|t| now.saturating_sub(t)),
                        }));
                    }
                    // A budget reached while it was planted: it does not
                    // start either (`resume` runs it).
                    if self.stopping() || self.no_new_starts() {
                        self.release_slot(&id);
                        self.mark_interrupted(&id)?;
                        out.push(Action::Save);
                        continue;
                    }
                    if self.hold_after_plant.remove(&id) {
                        self.held.push_back(launch);
                        continue;
                    }
                    launches.push(launch);
                }
                Err(reason) => {
                    self.plant_began.remove(&id);
                    self.release_slot(&id);
                    self.fail(out, &id, InstanceState::Failed, reason, now)?;
                }
            }
        }
        // `created` is journalled before any agent starts in them.
        out.push(Action::Flush);
        for launch in launches {
            self.agents_in_flight += 1;
            out.push(Action::Launch(launch));
        }
        self.launch_held(out, now);
        Ok(())
    }

    /// `id`'s branch conflicts with the target: kept for a human, or
    /// handed back to its agent (`merge.on_conflict: agent`).
    fn conflicted(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        paths: Vec<String>,
        now: u64,
    ) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        inst.conflict_paths = paths.clone();
        inst.merged_commit = None;
        inst.reason = Some(format!("conflicts in {}", paths.join(", ")));
        self.advance(id, InstanceState::Conflicted, now)?;
        out.push(Action::Save);
        out.push(Action::Emit(Event::Conflicted {
            id: id.to_string(),
            paths,
        }));
        if self.may_hand_back(id)? {
            return self.hand_back(out, id, now);
        }
        out.push(Action::Emit(self.policy.kept(id, "merge conflict")));
        self.sched.settled(id, false);
        self.skip(out, now)
    }

    fn refuse(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        reason: String,
        log: Option<String>,
        now: u64,
    ) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        inst.reason = Some(reason.clone());
        inst.merged_commit = None;
        self.advance(id, InstanceState::Refused, now)?;
        out.push(Action::Save);
        out.push(Action::Emit(Event::Refused {
            id: id.to_string(),
            reason,
            log,
        }));
        out.push(Action::Emit(self.policy.kept(id, "merge refused")));
        self.sched.settled(id, false);
        self.skip(out, now)
    }

    /// `id`'s branch is in the target at `commit`: recorded, and queued for
    /// pruning unless `--keep`.
    fn on_merged(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        commit: String,
        now: u64,
    ) -> Result<(), MachineError> {
        self.inst(id)?.merged_commit = Some(commit.clone());
        self.advance(id, InstanceState::Merged, now)?;
        // Its merge commit in its batch is read only by a land of a branch
        // still `succeeded`: kept past the merge, the journalled queue
        // would grow with the run, and every journal commit costs its size.
        if let Some(queue) = self.record.merge_queue.as_mut() {
            queue.commits.remove(id);
        }
        out.push(Action::Save);
        out.push(Action::Emit(Event::Merged {
            id: id.to_string(),
            commit,
            strategy: self.policy.strategy,
        }));
        self.sched.settled(id, true);
        if !self.policy.keep {
            self.enqueue_prune(id);
        }
        Ok(())
    }
}

/// An attempt's result and exit code from how its agent ended.
fn attempt_result(end: &AgentEnd) -> (AttemptResult, Option<i32>) {
    match end {
        AgentEnd::Exited(0) => (AttemptResult::Succeeded, Some(0)),
        AgentEnd::Exited(c) => (AttemptResult::Failed, Some(*c)),
        AgentEnd::Signaled(_)
        | AgentEnd::SpawnFailed(_)
        | AgentEnd::Unknown
        | AgentEnd::JobLost(_)
        | AgentEnd::NeverStarts(_) => (AttemptResult::Failed, None),
        AgentEnd::TimedOut => (AttemptResult::TimedOut, None),
        AgentEnd::IdleTimedOut => (AttemptResult::IdleTimeout, None),
        AgentEnd::Stopped => (AttemptResult::Stopped, None),
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
        RunMachine::new(record, sched, slots, ranks, Policy::default())
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
        assert!(!m.ends_interrupted(false, Mode::Run));
        assert!(m.ends_interrupted(true, Mode::Run));
        walk(&mut m, "a", &[Creating, Created, Running]);
        assert!(m.ends_interrupted(false, Mode::Run));
        // `treefarm merge` leaves running instances to their run.
        assert!(!m.ends_interrupted(false, Mode::MergeOnly));
        walk(&mut m, "a", &[Succeeded]);
        assert!(!m.ends_interrupted(false, Mode::Run));
        walk(&mut m, "a", &[Merging]);
        assert!(m.ends_interrupted(false, Mode::Run));
        walk(&mut m, "a", &[Merged, Pruned]);
        walk(&mut m, "b", &[Skipped]);
        assert!(!m.ends_interrupted(false, Mode::Run));
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

/// The machine's handlers driven with inputs: the actions and states that
/// come out, with no process, no git and no journal.
#[cfg(test)]
mod handle_tests {
    use super::*;
    use crate::runner::messages::AgentStatus;
    use crate::runner::messages::Launch;
    use crate::schedule::Node;
    use crate::state::RunState;
    use InstanceState::*;

    /// `ids` in rank order; `deps`: (id, what it depends on).
    pub(super) fn machine(
        ids: &[&str],
        deps: &[(&str, &str)],
        slots: usize,
        policy: Policy,
    ) -> RunMachine {
        let record = RunRecord {
            run_id: "r".into(),
            state: RunState::Running,
            instances: ids
                .iter()
                .map(|id| InstanceRecord {
                    id: id.to_string(),
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
                depends_on: deps
                    .iter()
                    .filter(|(d, _)| d == id)
                    .map(|(_, on)| on.to_string())
                    .collect(),
            })
            .collect();
        let ranks = nodes
            .iter()
            .map(|n| (n.id.clone(), (n.priority, n.order)))
            .collect();
        let sched = Scheduler::new(nodes, &[], slots);
        RunMachine::new(record, sched, slots, ranks, policy)
    }

    fn policy() -> Policy {
        Policy {
            timeout_ms: Some(1_000),
            port_base: 4000,
            port_stride: 10,
            worktree_dir: PathBuf::from("/wt"),
            ..Default::default()
        }
    }

    /// A short name per action, to compare sequences.
    fn tags(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Emit(e) | Action::EmitIfExists(_, e) => {
                    let name = format!("{e:?}");
                    let name = name.split([' ', '(']).next().unwrap_or_default();
                    let prefix = if matches!(a, Action::Emit(_)) {
                        "emit"
                    } else {
                        "emit-if-exists"
                    };
                    format!("{prefix} {}", name.to_lowercase())
                }
                Action::Launch(l) => format!("launch {}", l.id),
                Action::Stop(s) => format!("stop {s:?}").to_lowercase(),
                Action::CrashPoint(p) => format!("crash-point {p}"),
                Action::Note(_) => "note".into(),
                Action::Ack(_) => "ack".into(),
                Action::Plant { launches, .. } => {
                    let ids: Vec<&str> = launches.iter().map(|l| l.id.as_str()).collect();
                    format!("plant {}", ids.join(" "))
                }
                Action::Merge { id, .. } => format!("merge {id}"),
                Action::Prune(id) => format!("prune {id}"),
                Action::PruneFailed { id, .. } => format!("prune-failed {id}"),
                other => format!("{other:?}").to_lowercase(),
            })
            .collect()
    }

    fn state(m: &RunMachine, id: &str) -> InstanceState {
        m.record.instance(id).unwrap().state
    }

    /// Takes the scheduler's ready specs as the loop does and marks them
    /// `creating` in their slots.
    fn start(m: &mut RunMachine) -> Vec<Launch> {
        let mut actions = m.start(Mode::Run, 1).unwrap();
        let Some(Action::Plant { launches, reuse }) = actions.pop() else {
            panic!("{actions:?}")
        };
        assert!(!reuse);
        launches
            .into_iter()
            .map(|l| Launch {
                start_commit: "c0".into(),
                ..l
            })
            .collect()
    }

    fn planted(m: &mut RunMachine, ok: &[Launch], now: u64) -> Vec<Action> {
        let batch = ok.iter().map(|l| (l.clone(), Ok(()))).collect();
        m.handle(Input::Lane(LaneMsg::Planted(batch)), now).unwrap()
    }

    fn msg(m: &mut RunMachine, id: &str, msg: InstanceMsg, now: u64) -> Vec<Action> {
        m.handle(Input::Instance(id.into(), msg), now).unwrap()
    }

    fn work(tip: &str) -> Work {
        Work {
            tip: tip.into(),
            commits: 1,
            subjects: vec!["do it".into()],
            changed: vec!["src/a.rs".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_first_signal_stops_gracefully_and_a_second_kills() {
        let mut m = machine(&["a"], &[], 1, policy());
        let first = m.handle(Input::Signal(Signal::Interrupt), 1).unwrap();
        assert_eq!(tags(&first), ["note", "stop graceful"]);
        assert_eq!(m.stop, Stop::Graceful);
        let Action::Note(text) = &first[0] else {
            panic!("{first:?}")
        };
        assert!(text.starts_with("interrupt:"), "{text}");
        let second = m.handle(Input::Signal(Signal::Terminate), 2).unwrap();
        assert_eq!(tags(&second), ["note", "stop kill"]);
        assert_eq!(m.stop, Stop::Kill);
        // Killing waits for the agents only; stopping for the lane too.
        m.other_in_flight = 1;
        assert!(m.is_over(Mode::Run));
        m.agents_in_flight = 1;
        assert!(!m.is_over(Mode::Run));
    }

    #[test]
    fn what_may_start_is_journalled_before_it_is_planted_and_one_lane_job_runs() {
        let mut m = machine(&["a", "b", "c"], &[("c", "a")], 1, policy());
        let actions = m.start(Mode::Run, 3).unwrap();
        assert_eq!(tags(&actions), ["save", "flush", "plant a"]);
        let a = m.record.instance("a").unwrap();
        assert_eq!((a.state, a.slot), (Creating, Some(0)));
        assert_eq!(m.other_in_flight, 1);
        // No slot left: nothing more starts.
        assert!(m.start(Mode::Run, 4).unwrap().is_empty());
        // `treefarm merge` plants nothing; a queued merge goes to the lane
        // with its commit subjects, and holds the prune back.
        let mut m = machine(&["a", "b"], &[], 2, policy());
        walk_to_succeeded(&mut m, "b");
        m.works.insert("b".into(), work("t"));
        m.enqueue_merge("b");
        m.enqueue_prune("a");
        let actions = m.start(Mode::MergeOnly, 5).unwrap();
        assert_eq!(tags(&actions), ["merge b"]);
        let Action::Merge { subjects, .. } = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(subjects, &["do it"]);
        assert!(m.start(Mode::MergeOnly, 6).unwrap().is_empty());
        m.merging = None;
        assert_eq!(
            tags(&m.start(Mode::MergeOnly, 7).unwrap()),
            ["flush", "prune a"]
        );
        assert_eq!(m.other_in_flight, 2);
    }

    #[test]
    fn a_run_finishes_or_ends_interrupted_with_the_resume_command() {
        let mut m = machine(&["a"], &[], 1, policy());
        assert_eq!(tags(&m.finish(Mode::Run, 9)), ["save"]);
        assert_eq!(m.record.state, RunState::Finished);
        assert_eq!(m.record.finished_at_ms, Some(9));
        m.handle(Input::Signal(Signal::Interrupt), 10).unwrap();
        let actions = m.finish(Mode::Run, 11);
        assert_eq!(tags(&actions), ["save", "emit interrupted"]);
        let Action::Emit(Event::Interrupted { resume, run_id }) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (resume.as_str(), run_id.as_str()),
            ("treefarm resume r", "r")
        );
        assert_eq!(m.record.state, RunState::Interrupted);
    }

    #[test]
    fn resume_restores_settled_succeeded_and_merging_instances() {
        let mut m = machine(&["a", "b", "c", "d", "e"], &[], 2, policy());
        walk_to_succeeded(&mut m, "a");
        for id in ["b", "c"] {
            walk_to_succeeded(&mut m, id);
            m.advance(id, Merging, 2).unwrap();
            m.inst(id).unwrap().merged_commit = Some(format!("m-{id}"));
        }
        walk_to_succeeded(&mut m, "d");
        m.advance("d", Merged, 3).unwrap();
        m.advance("e", Skipped, 3).unwrap();
        assert!(m.restore("a", Mode::Run, false, 5).unwrap().is_empty());
        // The ref moved before the kill: recorded merged, pruned next.
        let landed = m.restore("b", Mode::Run, true, 5).unwrap();
        assert_eq!(tags(&landed), ["save", "emit merged"]);
        assert_eq!(state(&m, "b"), Merged);
        // It never moved: merged again.
        assert!(m.restore("c", Mode::Run, false, 5).unwrap().is_empty());
        let c = m.record.instance("c").unwrap();
        assert_eq!(
            (c.state, c.merged_commit.as_deref()),
            (Succeeded, Some("m-c"))
        );
        assert!(m.restore("d", Mode::Run, false, 5).unwrap().is_empty());
        assert!(m.restore("e", Mode::Run, false, 5).unwrap().is_empty());
        assert_eq!(m.merges_waiting(), 2);
        assert_eq!(m.prunes_waiting(), 2);
        // Out or waiting for a fix: recover.rs's.
        let mut m = machine(&["a"], &[], 1, policy());
        m.advance("a", Creating, 1).unwrap();
        assert!(matches!(
            m.restore("a", Mode::Run, false, 2),
            Err(MachineError::NotRestorable { .. })
        ));
    }

    #[test]
    fn resume_with_no_merge_keeps_succeeded_branches_settled() {
        let mut m = machine(
            &["a"],
            &[],
            1,
            Policy {
                no_merge: true,
                ..policy()
            },
        );
        walk_to_succeeded(&mut m, "a");
        m.restore("a", Mode::Run, false, 5).unwrap();
        assert_eq!(m.merges_waiting(), 0);
        // `treefarm merge` merges it.
        let mut m = machine(
            &["a"],
            &[],
            1,
            Policy {
                no_merge: true,
                ..policy()
            },
        );
        walk_to_succeeded(&mut m, "a");
        m.restore("a", Mode::MergeOnly, false, 5).unwrap();
        assert_eq!(m.merges_waiting(), 1);
    }

    fn out_instance(state: InstanceState) -> RunMachine {
        let mut m = machine(&["a"], &[], 1, policy());
        for to in [Creating, Created, Running] {
            m.advance("a", to, 1).unwrap();
            if to == state {
                break;
            }
        }
        let a = m.inst("a").unwrap();
        a.attempt = 1;
        a.deadline_ms = Some(1_000);
        a.interrupted = true;
        a.reason = Some(INTERRUPTED.into());
        m
    }

    #[test]
    fn resume_reattaches_a_live_agent_in_the_same_attempt() {
        let mut m = out_instance(Running);
        let found = Found {
            slot: 0,
            start_commit: "c".into(),
            live: Some(AgentHandle::Process(7, 70)),
            seen_attempt: Some(2),
            ..Default::default()
        };
        let (launch, actions) = m.resume_out("a", found, 400).unwrap();
        assert_eq!(tags(&actions), ["note"]);
        assert_eq!(
            (launch.attempt, launch.start),
            (
                2,
                Start::Reattach {
                    handle: AgentHandle::Process(7, 70),
                    terminating: None,
                    timeout_left: Some(std::time::Duration::from_millis(600)),
                }
            )
        );
        let a = m.record.instance("a").unwrap();
        assert_eq!(
            (a.attempt, a.slot, a.interrupted, a.reason.as_deref()),
            (2, Some(0), false, None)
        );
    }

    #[test]
    fn resume_judges_an_ended_agent_and_reruns_a_vanished_one() {
        let mut m = out_instance(Running);
        let found = Found {
            exited: Some(3),
            ..Default::default()
        };
        let (launch, actions) = m.resume_out("a", found, 5).unwrap();
        let Action::Note(text) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(text.contains("exit code 3"), "{text}");
        assert_eq!(
            (launch.attempt, launch.start),
            (1, Start::Ended(AgentEnd::Exited(3)))
        );
        // Gone without a trace: the next attempt, in its worktree.
        let mut m = out_instance(Running);
        let (launch, actions) = m.resume_out("a", Found::default(), 5).unwrap();
        assert_eq!(tags(&actions), ["note"]);
        assert_eq!(
            (launch.attempt, launch.start),
            (2, Start::Fresh { setup: false })
        );
        // Killed while planting: planted again, set up, no note.
        let mut m = out_instance(Creating);
        let (launch, actions) = m.resume_out("a", Found::default(), 5).unwrap();
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(launch.start, Start::Fresh { setup: true });
        // A timeout whose termination finished meanwhile: judged as such.
        let mut m = out_instance(Running);
        let found = Found {
            ended: Some(AgentEnd::TimedOut),
            ..Default::default()
        };
        let (launch, actions) = m.resume_out("a", found, 5).unwrap();
        let Action::Note(text) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(text.contains("while treefarm was not running"), "{text}");
        assert_eq!(launch.attempt, 1);
        assert_eq!(launch.start, Start::Ended(AgentEnd::TimedOut));
    }

    #[test]
    fn a_fixed_branch_is_merged_again_and_resumed_instances_are_replanted() {
        let mut m = machine(&["a"], &[], 1, policy());
        walk_to_succeeded(&mut m, "a");
        m.advance("a", Conflicted, 2).unwrap();
        let a = m.inst("a").unwrap();
        a.conflict_paths = vec!["x".into()];
        a.reason = Some("conflicts in x".into());
        m.requeue_fixed("a", 3).unwrap();
        let a = m.record.instance("a").unwrap();
        assert_eq!(
            (a.state, a.reason.as_deref(), a.ended_at_ms),
            (Succeeded, None, None)
        );
        assert!(a.conflict_paths.is_empty());
        assert_eq!(m.next_merge(false), Some("a".into()));

        let mut m = machine(&["a"], &[], 1, policy());
        assert!(m.replant(Vec::new()).is_empty());
        let launch = Launch::fresh("a".into(), 0, "c".into(), 2, false);
        let actions = m.replant(vec![launch]);
        assert_eq!(tags(&actions), ["save", "flush", "plant a"]);
        assert!(matches!(actions[2], Action::Plant { reuse: true, .. }));
        assert_eq!(m.other_in_flight, 1);
    }

    #[test]
    fn nothing_starts_while_stopping() {
        let mut m = machine(&["a"], &[], 1, policy());
        m.handle(Input::Signal(Signal::Hangup), 1).unwrap();
        assert!(m.start(Mode::Run, 2).unwrap().is_empty());
        assert_eq!(state(&m, "a"), Pending);
    }

    fn walk_to_succeeded(m: &mut RunMachine, id: &str) {
        for to in [Creating, Created, Running, Succeeded] {
            m.advance(id, to, 1).unwrap();
        }
    }

    #[test]
    fn fresh_specs_wait_while_twice_the_instances_wait_for_the_lane() {
        for no_merge in [false, true] {
            let mut m = machine(
                &["a", "b", "c"],
                &[],
                1,
                Policy {
                    no_merge,
                    ..policy()
                },
            );
            // `a` and `b` taken from the scheduler as a run would, and
            // succeeded: two worktrees (twice the one instance) wait.
            for id in ["a", "b"] {
                assert_eq!(m.sched.start_ready_up_to(1), [id]);
                walk_to_succeeded(&mut m, id);
                m.sched.agent_done(id);
            }
            let plants = |actions: Vec<Action>| {
                tags(&actions)
                    .into_iter()
                    .filter(|t| t.starts_with("plant"))
                    .collect::<Vec<_>>()
            };
            if no_merge {
                // Kept, not merged: nothing waits for the lane.
                assert_eq!(plants(m.start(Mode::Run, 2).unwrap()), ["plant c"]);
                continue;
            }
            assert!(plants(m.start(Mode::Run, 2).unwrap()).is_empty());
            m.advance("a", Merging, 3).unwrap();
            assert!(plants(m.start(Mode::Run, 3).unwrap()).is_empty());
            m.advance("a", Merged, 4).unwrap();
            m.enqueue_prune("a");
            assert!(plants(m.start(Mode::Run, 4).unwrap()).is_empty());
            // The prune is under way (`start` took it); once done, room.
            m.pruning = false;
            m.advance("a", Pruned, 5).unwrap();
            assert_eq!(plants(m.start(Mode::Run, 5).unwrap()), ["plant c"]);
        }
    }

    #[test]
    fn a_tick_only_refreshes() {
        let mut m = machine(&["a"], &[], 1, policy());
        assert_eq!(tags(&m.handle(Input::Tick, 1).unwrap()), ["refresh"]);
    }

    #[test]
    fn a_planted_batch_is_journalled_before_its_agents_launch() {
        let mut m = machine(&["a", "b"], &[], 2, policy());
        let launches = start(&mut m);
        assert_eq!(launches.len(), 2);
        let actions = planted(&mut m, &launches, 5);
        assert_eq!(
            tags(&actions),
            [
                "crash-point after-plant",
                "save",
                "emit planted",
                "save",
                "emit planted",
                "flush",
                "launch a",
                "launch b"
            ]
        );
        assert_eq!(state(&m, "a"), Created);
        assert_eq!(
            m.record.instance("b").unwrap().start_commit.as_deref(),
            Some("c0")
        );
        let Action::Emit(Event::Planted { worktree, .. }) = &actions[2] else {
            panic!("{actions:?}")
        };
        assert_eq!(worktree, "/wt/a");
        assert_eq!((m.agents_in_flight, m.other_in_flight), (2, 0));
    }

    #[test]
    fn a_plant_that_fails_fails_the_instance_and_skips_its_dependents() {
        let mut m = machine(&["a", "b"], &[("b", "a")], 2, policy());
        let launches = start(&mut m);
        assert_eq!(launches.len(), 1);
        let batch = vec![(launches[0].clone(), Err("disk full".to_string()))];
        let actions = m.handle(Input::Lane(LaneMsg::Planted(batch)), 7).unwrap();
        assert_eq!(
            tags(&actions),
            [
                "crash-point after-plant",
                "save",
                "emit failed",
                "emit-if-exists kept",
                "save",
                "emit skipped",
                "flush"
            ]
        );
        assert_eq!(state(&m, "a"), Failed);
        assert_eq!(
            m.record.instance("a").unwrap().reason.as_deref(),
            Some("disk full")
        );
        assert_eq!(state(&m, "b"), Skipped);
        // The slot is free again.
        assert_eq!(m.take_slot(), Some(0));
    }

    #[test]
    fn planted_while_stopping_is_interrupted_not_launched() {
        let mut m = machine(&["a"], &[], 1, policy());
        let launches = start(&mut m);
        m.handle(Input::Signal(Signal::Interrupt), 2).unwrap();
        let actions = planted(&mut m, &launches, 3);
        assert!(!tags(&actions).iter().any(|t| t.starts_with("launch")));
        let a = m.record.instance("a").unwrap();
        assert_eq!(a.state, Created);
        assert!(a.interrupted);
        assert_eq!(a.reason.as_deref(), Some(INTERRUPTED));
        assert_eq!(m.agents_in_flight, 0);
        assert_eq!(m.take_slot(), Some(0));
    }

    #[test]
    fn an_agent_runs_succeeds_and_queues_its_merge() {
        let mut m = machine(&["a"], &[], 1, policy());
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        let starting = msg(&mut m, "a", InstanceMsg::AttemptStarting { attempt: 1 }, 10);
        assert!(starting.is_empty(), "{starting:?}");
        let started = msg(
            &mut m,
            "a",
            InstanceMsg::Agent(AgentEvent::Started {
                pid: 42,
                start_time: 9,
            }),
            11,
        );
        assert_eq!(tags(&started), ["save", "emit started", "agentstarted"]);
        let Action::Emit(Event::Started { port, slot, .. }) = &started[1] else {
            panic!("{started:?}")
        };
        assert_eq!((*slot, *port), (0, 4000));
        let a = m.record.instance("a").unwrap();
        assert_eq!(
            (a.state, a.pid, a.deadline_ms),
            (Running, Some(42), Some(1_011))
        );
        assert_eq!(a.started_at_ms, Some(10));

        let status = msg(
            &mut m,
            "a",
            InstanceMsg::Agent(AgentEvent::Status(AgentStatus {
                state: None,
                progress: Some(50),
                message: Some("half".into()),
            })),
            12,
        );
        assert_eq!(tags(&status), ["progressed", "emit status"]);
        assert_eq!(m.record.instance("a").unwrap().progress, Some(50));

        let exited = msg(
            &mut m,
            "a",
            InstanceMsg::Exited {
                attempt: 1,
                end: AgentEnd::Exited(0),
                elapsed_ms: 3,
                rate_limited: false,
            },
            13,
        );
        assert_eq!(tags(&exited), ["save", "emit exited"]);
        let a = m.record.instance("a").unwrap();
        assert_eq!((a.exit_code, a.pid), (Some(0), None));

        let done = msg(
            &mut m,
            "a",
            InstanceMsg::Done(Verdict::Succeeded(work("t1"))),
            14,
        );
        assert_eq!(tags(&done), ["emit committed", "save"]);
        let a = m.record.instance("a").unwrap();
        assert_eq!((a.state, a.tip.as_deref()), (Succeeded, Some("t1")));
        assert_eq!(a.ended_at_ms, Some(14));
        assert_eq!(m.agents_in_flight, 0);
        assert_eq!(m.works["a"].subjects, ["do it"]);
        assert_eq!(m.take_slot(), Some(0));
        assert_eq!(m.next_merge(true), Some("a".into()));
    }

    #[test]
    fn a_retry_and_a_termination_are_recorded() {
        let mut m = machine(&["a"], &[], 1, policy());
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        m.inst("a").unwrap().exit_code = Some(1);
        let retry = msg(&mut m, "a", InstanceMsg::AttemptStarting { attempt: 2 }, 6);
        assert_eq!(tags(&retry), ["emit retrying"]);
        let a = m.record.instance("a").unwrap();
        assert_eq!((a.attempt, a.exit_code), (2, None));
        let term = msg(
            &mut m,
            "a",
            InstanceMsg::Agent(AgentEvent::Terminating {
                why: AgentEnd::TimedOut,
                kill_at_ms: 99,
            }),
            7,
        );
        assert_eq!(tags(&term), ["save"]);
        assert_eq!(m.record.instance("a").unwrap().kill_at_ms, Some(99));
        assert!(m.record.instance("a").unwrap().ending.is_some());
        let warn = msg(&mut m, "a", InstanceMsg::Warning("config".into()), 8);
        assert_eq!(tags(&warn), ["emit warning"]);
    }

    #[test]
    fn a_stopped_agent_stays_running_and_interrupted_for_resume() {
        let mut m = machine(&["a"], &[], 1, policy());
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        let started = AgentEvent::Started {
            pid: 1,
            start_time: 1,
        };
        msg(&mut m, "a", InstanceMsg::Agent(started), 6);
        let exited = msg(
            &mut m,
            "a",
            InstanceMsg::Exited {
                attempt: 1,
                end: AgentEnd::Stopped,
                elapsed_ms: 1,
                rate_limited: false,
            },
            7,
        );
        let Action::Emit(Event::Exited { result, .. }) = &exited[1] else {
            panic!("{exited:?}")
        };
        assert_eq!(*result, AttemptResult::Stopped);
        let done = msg(&mut m, "a", InstanceMsg::Done(Verdict::Stopped), 8);
        assert_eq!(tags(&done), ["save"]);
        let a = m.record.instance("a").unwrap();
        assert_eq!(a.state, Running);
        assert!(a.interrupted);
        assert!(m.ends_interrupted(false, Mode::Run));
    }

    #[test]
    fn a_failed_agent_keeps_its_work_and_worktree_and_skips_dependents() {
        let mut m = machine(&["a", "b"], &[("b", "a")], 2, policy());
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        let verdict = Verdict::Failed {
            state: TimedOut,
            reason: "timed out".into(),
            exit_code: None,
            work: Some(work("t2")),
        };
        let done = msg(&mut m, "a", InstanceMsg::Done(verdict), 9);
        assert_eq!(
            tags(&done),
            [
                "emit committed",
                "save",
                "emit timedout",
                "emit-if-exists kept",
                "save",
                "emit skipped"
            ]
        );
        let Action::EmitIfExists(path, Event::Kept { reason, .. }) = &done[3] else {
            panic!("{done:?}")
        };
        assert_eq!(path, &PathBuf::from("/wt/a"));
        // One word for the outcome: timed out, not failed.
        assert_eq!(reason, "timed_out");
        assert_eq!(state(&m, "a"), TimedOut);
        assert_eq!(m.record.instance("a").unwrap().tip.as_deref(), Some("t2"));
        assert_eq!(state(&m, "b"), Skipped);
        assert!(m.lane_idle());
    }

    #[test]
    fn no_merge_keeps_a_succeeded_branch_instead_of_queueing_it() {
        let mut m = machine(
            &["a"],
            &[],
            1,
            Policy {
                no_merge: true,
                ..policy()
            },
        );
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        let done = msg(
            &mut m,
            "a",
            InstanceMsg::Done(Verdict::Succeeded(work("t"))),
            6,
        );
        assert_eq!(tags(&done), ["emit committed", "save", "emit kept"]);
        assert!(m.lane_idle());
        assert!(m.sched.is_finished());
    }

    /// `a` planted, run and succeeded, its merge taken by the lane.
    fn merging(policy: Policy, deps: &[(&str, &str)]) -> RunMachine {
        let mut m = machine(&["a", "b"], deps, 2, policy);
        let launches = start(&mut m);
        planted(&mut m, &launches, 5);
        msg(
            &mut m,
            "a",
            InstanceMsg::Done(Verdict::Succeeded(work("t"))),
            6,
        );
        assert_eq!(m.next_merge(false), Some("a".into()));
        m.other_in_flight += 1;
        m
    }

    #[test]
    fn the_merge_intent_is_flushed_before_the_lane_is_acknowledged() {
        let mut m = merging(policy(), &[]);
        let prepared = LaneMsg::MergePrepared {
            id: "a".into(),
            new: "m1".into(),
            tip: Some("t9".into()),
        };
        let actions = m.handle(Input::Lane(prepared), 7).unwrap();
        assert_eq!(tags(&actions), ["save", "flush", "ack"]);
        assert!(matches!(&actions[2], Action::Ack(id) if id == "a"));
        let a = m.record.instance("a").unwrap();
        assert_eq!(a.state, Merging);
        assert_eq!(
            (a.merged_commit.as_deref(), a.tip.as_deref()),
            (Some("m1"), Some("t9"))
        );
    }

    #[test]
    fn a_merged_branch_is_queued_for_pruning_unless_kept() {
        for keep in [false, true] {
            let mut m = merging(Policy { keep, ..policy() }, &[]);
            let merged = LaneMsg::Merged(
                "a".into(),
                Ok(MergeResult::Merged {
                    commit: "m1".into(),
                }),
            );
            let actions = m.handle(Input::Lane(merged), 8).unwrap();
            assert_eq!(tags(&actions), ["save", "emit merged"]);
            assert_eq!(state(&m, "a"), Merged);
            assert_eq!((m.merging.as_deref(), m.other_in_flight), (None, 0));
            assert_eq!(m.prunes_waiting(), usize::from(!keep));
        }
        let mut m = merging(policy(), &[]);
        m.handle(
            Input::Lane(LaneMsg::Merged(
                "a".into(),
                Ok(MergeResult::Merged { commit: "m".into() }),
            )),
            8,
        )
        .unwrap();
        assert_eq!(m.next_prune(), Some("a".into()));
        m.other_in_flight += 1;
        let pruned = m
            .handle(Input::Lane(LaneMsg::Pruned("a".into(), Ok(()))), 9)
            .unwrap();
        assert_eq!(tags(&pruned), ["save", "emit pruned"]);
        assert_eq!(state(&m, "a"), Pruned);
        assert!(!m.pruning);
    }

    #[test]
    fn a_prune_that_fails_keeps_the_merged_instance() {
        let mut m = merging(policy(), &[]);
        let merged = LaneMsg::Merged("a".into(), Ok(MergeResult::UpToDate { commit: "m".into() }));
        m.handle(Input::Lane(merged), 8).unwrap();
        m.next_prune().unwrap();
        let failed = LaneMsg::Pruned("a".into(), Err("busy".into()));
        let actions = m.handle(Input::Lane(failed), 9).unwrap();
        assert_eq!(tags(&actions), ["prune-failed a", "emit kept"]);
        assert_eq!(m.take_settles(), ["a"], "kept: settled");
        assert_eq!(state(&m, "a"), Merged);
        assert!(m.lane_idle());
    }

    #[test]
    fn a_conflict_or_refusal_keeps_the_branch_and_skips_dependents() {
        let conflict = Ok(MergeResult::Conflicted {
            paths: vec!["x".into(), "y".into()],
        });
        let refused = Ok(MergeResult::Refused {
            reason: "gate failed".into(),
            log: Some("gate.log".into()),
        });
        let broken = Err("no target".to_string());
        for (result, end, reason) in [
            (conflict, Conflicted, "conflicts in x, y"),
            (refused, Refused, "gate failed"),
            (broken, Refused, "no target"),
        ] {
            let mut m = merging(policy(), &[("b", "a")]);
            let actions = m
                .handle(Input::Lane(LaneMsg::Merged("a".into(), result)), 8)
                .unwrap();
            let tags = tags(&actions);
            assert_eq!(
                tags[..2],
                ["save".to_string(), format!("emit {end:?}").to_lowercase()]
            );
            assert_eq!(tags[2..], ["emit kept", "save", "emit skipped"]);
            let a = m.record.instance("a").unwrap();
            assert_eq!((a.state, a.reason.as_deref()), (end, Some(reason)));
            assert_eq!(a.merged_commit, None);
            assert_eq!(state(&m, "b"), Skipped);
            // The kept worktree's index is brought in line; nothing of the
            // skipped one ever ran.
            assert_eq!(m.take_settles(), ["a"]);
        }
    }

    #[test]
    fn the_worktrees_that_stay_are_settled_and_those_merged_and_pruned_are_not() {
        let through = |policy: Policy, path: &[InstanceState]| {
            let mut m = machine(&["a"], &[], 1, policy);
            walk_to_succeeded(&mut m, "a");
            for to in path {
                m.advance("a", *to, 2).unwrap();
            }
            m.take_settles()
        };
        let none: [&str; 0] = [];
        assert_eq!(through(policy(), &[Merging, Merged, Pruned]), none);
        assert_eq!(through(policy(), &[]), none, "awaiting its merge");
        let keep = Policy {
            keep: true,
            ..policy()
        };
        assert_eq!(through(keep, &[Merging, Merged]), ["a"]);
        let no_merge = Policy {
            no_merge: true,
            ..policy()
        };
        assert_eq!(through(no_merge, &[]), ["a"]);
        let mut m = machine(&["a"], &[], 1, policy());
        for to in [Creating, Created, Running, Failed] {
            m.advance("a", to, 1).unwrap();
        }
        assert_eq!(m.take_settles(), ["a"]);
        assert!(m.take_settles().is_empty(), "taken once");
    }

    #[test]
    fn an_illegal_move_from_an_input_is_an_error_not_a_change() {
        let mut m = machine(&["a"], &[], 1, policy());
        // A merge result for an instance that never ran.
        let merged = LaneMsg::Merged("a".into(), Ok(MergeResult::Merged { commit: "m".into() }));
        let err = m.handle(Input::Lane(merged), 1).unwrap_err();
        assert!(matches!(err, MachineError::IllegalMove { .. }), "{err}");
        assert_eq!(state(&m, "a"), Pending);
    }
}
