//! When each spec may start: a dependency DAG, a conflict graph (overlaps) and
//! a number of slots (DESIGN.md, Scheduling).
//!
//! A pending spec is *ready* when all its dependencies are merged. A spec is
//! *active* while its agent runs and until it is settled (merged, or given up
//! as failed, conflicted or refused). [`Scheduler::start_ready`] walks the
//! ready specs by `(priority, order)` and decides, for each:
//!
//! 1. **held** if it overlaps an active spec (including one started earlier in
//!    the same call): it waits;
//! 2. **deferred** if it overlaps a held spec ranked before it: it waits too,
//!    so that it cannot slip in and delay the held spec a second time once
//!    that one's blocker settles (no overtaking of a better-ranked spec that
//!    waits only on an overlap);
//! 3. otherwise it **starts** if a slot is free.
//!
//! Deferral reaches one step only (a spec overlapping a *deferred* spec may
//! start), so a chain of overlaps does not serialise the whole plan. The rule
//! is deterministic; [`plan_waves`] replays it, so a plan equals what a run
//! does when every spec merges.
//!
//! Work per event is proportional to the neighbourhood of the specs involved:
//! ready specs sit in an ordered set and a call stops as soon as the slots are
//! full.

use std::collections::{BTreeSet, HashMap};

/// One spec as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Lower runs first.
    pub priority: i64,
    /// Tie-breaker among equal priorities (usually the spec file order).
    pub order: usize,
    /// Ids of specs that must be merged first; ids outside the node set are
    /// treated as already satisfied.
    pub depends_on: Vec<String>,
}

impl From<&crate::spec::Spec> for Node {
    fn from(spec: &crate::spec::Spec) -> Node {
        Node {
            id: spec.id.clone(),
            priority: spec.priority,
            order: spec.order,
            depends_on: spec.depends_on.clone(),
        }
    }
}

/// Where a spec is in its life, as far as scheduling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Not started yet.
    Pending,
    /// Its agent runs; it holds a slot.
    Running,
    /// Its agent finished; it blocks overlapping specs until settled.
    AwaitingSettle,
    /// Merged: dependents may start.
    Merged,
    /// Settled without merging (failed, timed out, conflicted, refused).
    Failed,
    /// Never started: a dependency did not merge.
    Skipped,
}

/// Where a spec stood when an earlier coordinator stopped, for
/// [`Scheduler::restore`] (`resume`, `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Restored {
    /// Its agent runs (or will be re-attached): it holds a slot.
    Running,
    /// Its agent finished; its merge is pending.
    AwaitingSettle,
    /// It was settled: merged, or given up.
    Settled { merged: bool },
}

/// The live schedule of one run. Drive it with [`Scheduler::start_ready`],
/// [`Scheduler::agent_done`] and [`Scheduler::settled`].
#[derive(Debug, Clone)]
pub struct Scheduler {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    rank: Vec<(i64, usize, usize)>,
    state: Vec<NodeState>,
    /// Sorted, deduplicated overlap neighbours.
    conflicts: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    /// Dependencies not merged yet.
    unmet: Vec<usize>,
    /// Active (running or awaiting settle) overlap neighbours.
    active_neighbours: Vec<usize>,
    /// Pending specs whose dependencies are all merged, by rank.
    ready: BTreeSet<(i64, usize, usize)>,
    slots: usize,
    running: usize,
    active: usize,
    pending: usize,
    skipped: Vec<(String, String)>,
    /// Per-call marks for "overlaps a held spec", compared against `pass`.
    deferred_in_pass: Vec<u64>,
    pass: u64,
}

impl Scheduler {
    /// A scheduler for `nodes` with `instances` slots (0 is read as 1).
    /// Conflicts naming unknown ids, or a node twice, are ignored.
    pub fn new(nodes: Vec<Node>, conflicts: &[(String, String)], instances: usize) -> Scheduler {
        let n = nodes.len();
        let mut index = HashMap::with_capacity(n);
        for (i, node) in nodes.iter().enumerate() {
            index.entry(node.id.clone()).or_insert(i);
        }
        let mut adjacency = vec![Vec::new(); n];
        for (a, b) in conflicts {
            if let (Some(&a), Some(&b)) = (index.get(a), index.get(b)) {
                if a != b {
                    adjacency[a].push(b);
                    adjacency[b].push(a);
                }
            }
        }
        for list in &mut adjacency {
            list.sort_unstable();
            list.dedup();
        }
        let mut dependents = vec![Vec::new(); n];
        let mut unmet = vec![0; n];
        for (i, node) in nodes.iter().enumerate() {
            let mut deps: Vec<usize> = node
                .depends_on
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect();
            deps.sort_unstable();
            deps.dedup();
            unmet[i] = deps.len();
            for d in deps {
                dependents[d].push(i);
            }
        }
        let rank: Vec<(i64, usize, usize)> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.priority, node.order, i))
            .collect();
        let ready = (0..n).filter(|&i| unmet[i] == 0).map(|i| rank[i]).collect();
        Scheduler {
            ids: nodes.into_iter().map(|node| node.id).collect(),
            index,
            rank,
            state: vec![NodeState::Pending; n],
            conflicts: adjacency,
            dependents,
            unmet,
            active_neighbours: vec![0; n],
            ready,
            slots: instances.max(1),
            running: 0,
            active: 0,
            pending: n,
            skipped: Vec::new(),
            deferred_in_pass: vec![0; n],
            pass: 0,
        }
    }

    /// The ids to start now, best-ranked first; they are marked running.
    ///
    /// When nothing is active and nothing can ever become ready (only
    /// possible with a dependency cycle, which spec validation rejects), the
    /// remaining specs are skipped so that the run ends.
    pub fn start_ready(&mut self) -> Vec<String> {
        self.start_ready_up_to(usize::MAX)
    }

    /// As [`Scheduler::start_ready`], starting at most `max` (the runner's
    /// concurrency window and start interval may allow fewer than the free
    /// slots).
    pub fn start_ready_up_to(&mut self, max: usize) -> Vec<String> {
        let mut started = Vec::new();
        if self.running < self.slots && !self.ready.is_empty() && max > 0 {
            self.pass += 1;
            let mut chosen = Vec::new();
            for &(_, _, i) in &self.ready {
                if self.running + chosen.len() >= self.slots || chosen.len() >= max {
                    break;
                }
                if self.active_neighbours[i] > 0 {
                    // Held: claim the neighbourhood against worse-ranked specs.
                    for &j in &self.conflicts[i] {
                        self.deferred_in_pass[j] = self.pass;
                    }
                } else if self.deferred_in_pass[i] != self.pass {
                    chosen.push(i);
                    for &j in &self.conflicts[i] {
                        self.active_neighbours[j] += 1;
                    }
                }
            }
            for i in chosen {
                self.ready.remove(&self.rank[i]);
                self.state[i] = NodeState::Running;
                self.running += 1;
                self.active += 1;
                self.pending -= 1;
                started.push(self.ids[i].clone());
            }
        }
        if started.is_empty() && self.active == 0 && self.ready.is_empty() && self.pending > 0 {
            self.skip_unreachable();
        }
        started
    }

    /// The agent of `id` finished: its slot is free, but it still blocks the
    /// specs it overlaps until [`Scheduler::settled`].
    pub fn agent_done(&mut self, id: &str) {
        if let Some(i) = self.lookup(id, NodeState::Running) {
            self.state[i] = NodeState::AwaitingSettle;
            self.running -= 1;
        }
    }

    /// `id` is settled: merged, or given up (`merged == false`: failed,
    /// conflicted, refused). Either way it stops blocking overlapping specs;
    /// if it did not merge, every spec depending on it, transitively, is
    /// skipped (see [`Scheduler::take_skipped`]). Settling a running spec
    /// also frees its slot.
    pub fn settled(&mut self, id: &str, merged: bool) {
        let Some(&i) = self.index.get(id) else {
            return;
        };
        match self.state[i] {
            NodeState::Running => self.running -= 1,
            NodeState::AwaitingSettle => {}
            _ => return,
        }
        self.active -= 1;
        for &j in &self.conflicts[i] {
            self.active_neighbours[j] -= 1;
        }
        if merged {
            self.state[i] = NodeState::Merged;
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                self.unmet[d] -= 1;
                if self.unmet[d] == 0 && self.state[d] == NodeState::Pending {
                    self.ready.insert(self.rank[d]);
                }
            }
        } else {
            self.state[i] = NodeState::Failed;
            self.skip_dependents(i);
        }
    }

    /// Puts a pending spec back where a journal says it stood, with the
    /// same effects as the events that led there: a restored running spec
    /// holds a slot, an unmerged settle skips its dependents (reported by
    /// [`Scheduler::take_skipped`]). Specs that are not pending are left
    /// alone, so restoring a spec that was already skipped is harmless.
    pub fn restore(&mut self, id: &str, restored: Restored) {
        let Some(i) = self.lookup(id, NodeState::Pending) else {
            return;
        };
        self.ready.remove(&self.rank[i]);
        self.pending -= 1;
        self.state[i] = NodeState::Running;
        self.running += 1;
        self.activate(i);
        match restored {
            Restored::Running => {}
            Restored::AwaitingSettle => self.agent_done(id),
            Restored::Settled { merged } => self.settled(id, merged),
        }
    }

    /// Specs skipped since the last call, with the reason, in the order they
    /// were skipped.
    pub fn take_skipped(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.skipped)
    }

    /// Some spec could start if a slot were free.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Nothing is pending, running or awaiting settle.
    pub fn is_finished(&self) -> bool {
        self.pending == 0 && self.active == 0
    }

    /// The state of `id`, if it is one of the nodes.
    pub fn state_of(&self, id: &str) -> Option<NodeState> {
        self.index.get(id).map(|&i| self.state[i])
    }

    /// Marks `i` active: it blocks its overlap neighbours until settled.
    fn activate(&mut self, i: usize) {
        self.active += 1;
        for &j in &self.conflicts[i] {
            self.active_neighbours[j] += 1;
        }
    }

    fn lookup(&self, id: &str, state: NodeState) -> Option<usize> {
        self.index
            .get(id)
            .copied()
            .filter(|&i| self.state[i] == state)
    }

    fn skip(&mut self, i: usize, reason: String) {
        self.state[i] = NodeState::Skipped;
        self.pending -= 1;
        self.ready.remove(&self.rank[i]);
        self.skipped.push((self.ids[i].clone(), reason));
    }

    /// Skips every pending spec that depends on `failed`, transitively.
    fn skip_dependents(&mut self, failed: usize) {
        let mut stack: Vec<(usize, usize)> = self.dependents[failed]
            .iter()
            .rev()
            .map(|&d| (d, failed))
            .collect();
        while let Some((d, because)) = stack.pop() {
            if self.state[d] != NodeState::Pending {
                continue;
            }
            let reason = if because == failed {
                format!("dependency {} failed", self.ids[failed])
            } else {
                format!(
                    "dependency {} was skipped ({} failed)",
                    self.ids[because], self.ids[failed]
                )
            };
            self.skip(d, reason);
            stack.extend(self.dependents[d].iter().rev().map(|&e| (e, d)));
        }
    }

    /// Skips the pending specs that can never start (a dependency cycle).
    fn skip_unreachable(&mut self) {
        let stuck: Vec<usize> = (0..self.ids.len())
            .filter(|&i| self.state[i] == NodeState::Pending)
            .collect();
        for i in stuck {
            self.skip(i, "dependencies can never be met (cycle)".to_owned());
        }
    }
}

/// The waves a run would start when every spec merges: wave `k` is what
/// [`Scheduler::start_ready`] returns once all of wave `k - 1` are done and
/// merged. No specs give no waves; specs in a dependency cycle are left out.
pub fn plan_waves(
    nodes: Vec<Node>,
    conflicts: &[(String, String)],
    instances: usize,
) -> Vec<Vec<String>> {
    let mut scheduler = Scheduler::new(nodes, conflicts, instances);
    let mut waves = Vec::new();
    loop {
        let wave = scheduler.start_ready();
        if wave.is_empty() {
            break;
        }
        for id in &wave {
            scheduler.agent_done(id);
            scheduler.settled(id, true);
        }
        waves.push(wave);
    }
    waves
}
