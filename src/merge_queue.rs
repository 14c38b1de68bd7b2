//! The merge queue's planner: which branches to merge together, which
//! commits to gate, what to land and whom to refuse — data in, actions out,
//! no git, no processes, no clock.
//!
//! Branches arrive in priority order ([`Input::Ready`]). The planner takes the
//! first `batch` of them, asks for their merges to be built one on top of the
//! other ([`Action::Build`]; a branch that conflicts leaves the batch at once),
//! gates the batch's last commit, and on success lands the whole batch with
//! one compare-and-swap ([`Action::Land`]). When the gate fails it bisects
//! bors-style: it keeps the longest prefix known to pass (`good`, at first the
//! empty prefix: the target itself) and the shortest known to fail (`bad`, at
//! first the whole batch) and gates prefixes in between — the middle one with
//! one gate job, `J` evenly spaced ones at once with `J` gate jobs — until
//! they are adjacent. Prefix `good` lands, branch `bad` is the culprit and is
//! refused, and the branches after it go back to the front of the queue, to be
//! merged again on the new target. Since `good` always passes and `bad` always
//! fails, the culprit is found even when failures are not monotonic, and a
//! semantic conflict (two branches that pass alone but fail together) refuses
//! the later of the two.
//!
//! With gate jobs to spare, the next batch is built speculatively on the
//! first batch's unlanded tip while the first is under test, and its tip is
//! gated at once; it lands right after the first, or is given up (its
//! branches queued again) when the first does not land whole.
//!
//! A gate that could not run at all ([`Input::GateCouldNotRun`]: its log,
//! worktree, sandbox or shell failed) says nothing about the branches: the
//! queue stops ([`Action::Stop`]) with the prefix still under test, decides
//! nothing more — no gate, no land, no refusal — and [`MergeQueue::resume`]
//! (after the cause is fixed) gates it again.
//!
//! Outcomes ([`Action::Conflicted`], [`Action::Refuse`], [`Action::Stop`])
//! must be journalled in the same write as the state that emitted them.
//!
//! The planner is the only owner of the queue's state and is serialisable:
//! the runner journals it after every [`MergeQueue::handle`], and after a
//! crash [`MergeQueue::resume`] re-issues whatever was in flight (builds and
//! gates are rerun, a land is redone or found done by its compare-and-swap).
//! Only a commit whose gate passed is ever in an [`Action::Land`].

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// How the queue batches and gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// `merge.batch`: at most this many branches per batch (1 = one by one).
    pub batch: usize,
    /// `merge.gate_jobs`: how many gates may run at once.
    pub gate_jobs: usize,
    /// Whether a gate command is configured; without one a built batch lands
    /// at once.
    pub gated: bool,
}

/// A batch's number, unique within a queue.
pub type BatchId = u64;

/// What happened, fed to [`MergeQueue::handle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// These branches are ready to merge, in priority order, after the ones
    /// already queued.
    Ready(Vec<String>),
    /// The merges of [`Action::Build`] were made in memory, one on top of the
    /// other, starting from `base` (the target tip, or the `onto` asked for),
    /// in the order asked for.
    Built {
        batch: BatchId,
        base: String,
        results: Vec<Built>,
    },
    /// The gate on a prefix of a batch ran to its verdict; `reason`: why it
    /// failed, in words (its exit status, a timeout, a denied write).
    Gated {
        batch: BatchId,
        prefix: usize,
        passed: bool,
        log: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// The gate on a prefix of a batch could not be run (`cause`: why):
    /// no verdict. The queue stops until [`MergeQueue::resume`].
    GateCouldNotRun {
        batch: BatchId,
        prefix: usize,
        cause: String,
    },
    /// The compare-and-swap of an [`Action::Land`] was done. `moved` is true
    /// when the target went from `old` to `new` — also when it was found at
    /// `new` already, after a crash — and false when someone else moved it.
    Landed { batch: BatchId, moved: bool },
}

/// One branch's merge inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Built {
    /// Merged; `commit` is the batch's tip with this branch (it equals the
    /// previous tip when the branch had nothing new).
    Merged { branch: String, commit: String },
    /// The branch conflicts with the target plus the branches before it.
    Conflicted { branch: String, paths: Vec<String> },
}

/// What the runner must do (or show) next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Merge these branches in memory, in this order, on the target tip —
    /// or, for a speculative batch, on `onto`, the tip of the batch before.
    Build {
        batch: BatchId,
        branches: Vec<String>,
        onto: Option<String>,
    },
    /// Run the gate on `commit`, the batch's first `prefix` branches merged.
    Gate {
        batch: BatchId,
        prefix: usize,
        commit: String,
    },
    /// The result of this gate is no longer needed; stop it if it runs.
    CancelGate { batch: BatchId, prefix: usize },
    /// Bisection narrowed the culprit to the branches after prefix `good`
    /// up to prefix `bad` (for display and the journal's readers).
    Bisect {
        batch: BatchId,
        good: usize,
        bad: usize,
    },
    /// Move the target from `old` to `new` by compare-and-swap; `new` passed
    /// the gate (or no gate is configured). The branches are then merged.
    Land {
        batch: BatchId,
        old: String,
        new: String,
        branches: Vec<String>,
    },
    /// The branch conflicts: keep it (or hand it to its agent).
    Conflicted { branch: String, paths: Vec<String> },
    /// The branch broke the gate: keep it, with the gate's log.
    Refuse {
        branch: String,
        reason: String,
        log: Option<String>,
    },
    /// A gate could not run: the queue decides nothing more until resumed.
    /// `branches`: every branch it holds (in batches and waiting), which
    /// stay unmerged and unjudged.
    Stop {
        batch: BatchId,
        prefix: usize,
        cause: String,
        branches: Vec<String>,
    },
}

/// One branch merged into a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    branch: String,
    commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// Waiting for [`Input::Built`].
    Building,
    /// Prefix `good` passes (0: the batch's base), prefix `bad` fails
    /// (`None`: not known yet); `testing` are the prefixes under test.
    Gating {
        good: usize,
        bad: Option<usize>,
        bad_log: Option<String>,
        /// Why prefix `bad`'s gate failed (absent in older journals).
        #[serde(default)]
        bad_reason: Option<String>,
        testing: BTreeSet<usize>,
    },
    /// Waiting for [`Input::Landed`] of the first `prefix` members.
    Landing { prefix: usize },
}

/// A batch being built, gated or landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Batch {
    id: BatchId,
    /// Every branch taken into the batch, in priority order.
    branches: Vec<String>,
    /// `Some(commit)`: a speculative batch stacked on the tip of the batch
    /// before it, not yet landed.
    onto: Option<String>,
    base: String,
    members: Vec<Member>,
    /// Conflicts found while stacked: reported once the batch is first in
    /// line (its base is then the target), dropped if it is given up.
    held_conflicts: Vec<(String, Vec<String>)>,
    phase: Phase,
    /// Gate runs started for this batch (cancelled ones included).
    gate_runs: usize,
}

impl Batch {
    fn testing(&self) -> usize {
        match &self.phase {
            Phase::Gating { testing, .. } => testing.len(),
            _ => 0,
        }
    }

    fn gate(&mut self, prefix: usize, out: &mut Vec<Action>) {
        self.gate_runs += 1;
        out.push(Action::Gate {
            batch: self.id,
            prefix,
            commit: self.members[prefix - 1].commit.clone(),
        });
    }
}

/// The queue: branches waiting, the batch first in line and, with more than
/// one gate job, a speculative batch stacked on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeQueue {
    config: QueueConfig,
    waiting: VecDeque<String>,
    next_batch: BatchId,
    /// At most two: `[0]` lands on the target, `[1]` is stacked on `[0]`'s tip.
    batches: Vec<Batch>,
    /// Per finished batch: its size when built and its gate runs.
    history: Vec<BatchStats>,
    /// Why the queue stopped (a gate that could not run), until resumed.
    #[serde(default)]
    stopped: Option<String>,
}

/// What one batch cost, for reports and the gate-run bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStats {
    pub batch: BatchId,
    /// Branches merged into the batch (conflicted ones excluded).
    pub size: usize,
    pub gate_runs: usize,
    /// Whether a culprit was refused from it.
    pub refused: bool,
    /// A speculative batch given up because the batch below it did not land
    /// whole; its branches were queued again.
    pub discarded: bool,
}

/// The most gate runs a batch of `size` branches may cost when one of its
/// branches is refused: `1 + 2·⌈log₂ size⌉`.
pub fn gate_run_bound(size: usize) -> usize {
    let log2_ceil = usize::BITS - size.max(1).saturating_sub(1).leading_zeros();
    1 + 2 * log2_ceil as usize
}

/// What the first batch's step decided.
enum Step {
    /// Look again (the first batch changed).
    Again,
    /// Wait for an input.
    Wait,
}

impl MergeQueue {
    /// An empty queue. `batch` and `gate_jobs` below 1 count as 1.
    pub fn new(config: QueueConfig) -> MergeQueue {
        MergeQueue {
            config: QueueConfig {
                batch: config.batch.max(1),
                gate_jobs: config.gate_jobs.max(1),
                gated: config.gated,
            },
            waiting: VecDeque::new(),
            next_batch: 1,
            batches: Vec::new(),
            history: Vec::new(),
            stopped: None,
        }
    }

    /// Why the queue stopped (a gate that could not run); `None` while it
    /// goes on.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Every branch the queue holds: in its batches, then waiting.
    pub fn held(&self) -> Vec<String> {
        self.batches
            .iter()
            .flat_map(|b| b.branches.iter().cloned())
            .chain(self.waiting.iter().cloned())
            .collect()
    }

    /// Takes new settings (a `treefarm merge` with another gate, or
    /// another `merge.batch`): they apply from the next decision on; a land
    /// already decided stands. `batch` and `gate_jobs` below 1 count as 1.
    pub fn reconfigure(&mut self, config: QueueConfig) {
        self.config = QueueConfig {
            batch: config.batch.max(1),
            gate_jobs: config.gate_jobs.max(1),
            gated: config.gated,
        };
    }

    /// True when nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.batches.is_empty() && self.waiting.is_empty()
    }

    /// Branches waiting for a batch, in order.
    pub fn waiting(&self) -> impl Iterator<Item = &str> {
        self.waiting.iter().map(String::as_str)
    }

    /// The batches in flight, first in line first: id, branches and the
    /// prefixes under test, for the live display.
    pub fn in_flight(&self) -> Vec<(BatchId, Vec<&str>, Vec<usize>)> {
        self.batches
            .iter()
            .map(|b| {
                let testing = match &b.phase {
                    Phase::Gating { testing, .. } => testing.iter().copied().collect(),
                    _ => vec![],
                };
                (
                    b.id,
                    b.branches.iter().map(String::as_str).collect(),
                    testing,
                )
            })
            .collect()
    }

    /// Every branch taken into batch `batch` (empty for an unknown batch).
    pub fn batch_branches(&self, batch: BatchId) -> Vec<String> {
        self.batches
            .iter()
            .find(|b| b.id == batch)
            .map(|b| b.branches.clone())
            .unwrap_or_default()
    }

    /// The branches merged in batch `batch`'s first `prefix` members.
    pub fn prefix_branches(&self, batch: BatchId, prefix: usize) -> Vec<String> {
        self.batches
            .iter()
            .find(|b| b.id == batch)
            .map(|b| {
                b.members
                    .iter()
                    .take(prefix)
                    .map(|m| m.branch.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What each finished batch cost.
    pub fn history(&self) -> &[BatchStats] {
        &self.history
    }

    /// Takes one input and returns what to do next. Inputs for an unknown
    /// batch or a prefix no longer under test (late or duplicate) are ignored.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Ready(branches) => {
                for branch in branches {
                    if !self.knows(&branch) {
                        self.waiting.push_back(branch);
                    }
                }
            }
            Input::Built {
                batch,
                base,
                results,
            } => self.built(batch, base, results, &mut out),
            Input::Gated {
                batch,
                prefix,
                passed,
                log,
                reason,
            } => self.gated(batch, prefix, passed, log, reason, &mut out),
            Input::GateCouldNotRun {
                batch,
                prefix,
                cause,
            } => self.could_not_run(batch, prefix, cause, &mut out),
            Input::Landed { batch, moved } => {
                if self.batches.first().is_some_and(|b| b.id == batch) {
                    self.landed(moved, &mut out);
                }
            }
        }
        self.advance(&mut out);
        out
    }

    /// After a restore: the actions that were in flight when the state was
    /// saved, to be done again (a build or gate whose result was lost is
    /// redone; a land is redone and its compare-and-swap finds whether it had
    /// already happened).
    pub fn resume(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        // Resumed: the cause of a stop is taken as fixed; its gate is
        // among those asked for again.
        self.stopped = None;
        for batch in &mut self.batches {
            match &batch.phase {
                Phase::Building => out.push(Action::Build {
                    batch: batch.id,
                    branches: batch.branches.clone(),
                    onto: batch.onto.clone(),
                }),
                Phase::Gating { testing, .. } => {
                    let again: Vec<usize> = testing.iter().copied().collect();
                    for prefix in again {
                        batch.gate(prefix, &mut out);
                    }
                }
                Phase::Landing { prefix } => out.push(land_action(batch, *prefix)),
            }
        }
        self.advance(&mut out);
        out
    }

    fn knows(&self, branch: &str) -> bool {
        self.waiting.iter().any(|b| b == branch)
            || self
                .batches
                .iter()
                .any(|batch| batch.branches.iter().any(|b| b == branch))
    }

    fn built(&mut self, id: BatchId, base: String, results: Vec<Built>, out: &mut Vec<Action>) {
        let Some(at) = self.batches.iter().position(|b| b.id == id) else {
            return;
        };
        let batch = &mut self.batches[at];
        if batch.phase != Phase::Building {
            return;
        }
        let mut asked: Vec<String> = batch.branches.clone();
        batch.base = base;
        batch.members.clear();
        for result in results {
            let branch = match &result {
                Built::Merged { branch, .. } | Built::Conflicted { branch, .. } => branch.clone(),
            };
            let Some(pos) = asked.iter().position(|b| *b == branch) else {
                continue; // not asked for: ignore rather than land it
            };
            asked.remove(pos);
            match result {
                Built::Merged { branch, commit } => batch.members.push(Member { branch, commit }),
                Built::Conflicted { branch, paths } if at == 0 => {
                    // It left the batch: it may be queued again later.
                    batch.branches.retain(|b| *b != branch);
                    out.push(Action::Conflicted { branch, paths })
                }
                Built::Conflicted { branch, paths } => batch.held_conflicts.push((branch, paths)),
            }
        }
        batch.phase = Phase::Gating {
            good: 0,
            bad: None,
            bad_log: None,
            bad_reason: None,
            testing: BTreeSet::new(),
        };
        if !asked.is_empty() {
            // The build skipped some: they go back to the queue's front (and
            // a batch stacked on this one is given up: its order is wrong).
            batch.branches.retain(|b| !asked.contains(b));
            self.discard_stacked(at + 1, out);
            for branch in asked.into_iter().rev() {
                self.waiting.push_front(branch);
            }
        }
    }

    fn gated(
        &mut self,
        id: BatchId,
        prefix: usize,
        passed: bool,
        log: Option<String>,
        reason: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let Some(at) = self.batches.iter().position(|b| b.id == id) else {
            return;
        };
        let batch = &mut self.batches[at];
        let Phase::Gating {
            good,
            bad,
            bad_log,
            bad_reason,
            testing,
        } = &mut batch.phase
        else {
            return;
        };
        if !testing.remove(&prefix) {
            return;
        }
        if passed {
            *good = (*good).max(prefix);
        } else if bad.is_none_or(|b| prefix < b) {
            *bad = Some(prefix);
            *bad_log = log;
            *bad_reason = reason;
        }
        let (good, bad) = (*good, *bad);
        let obsolete: Vec<usize> = testing
            .iter()
            .copied()
            .filter(|&p| p <= good || bad.is_some_and(|b| p >= b))
            .collect();
        for p in obsolete {
            testing.remove(&p);
            out.push(Action::CancelGate {
                batch: id,
                prefix: p,
            });
        }
        if bad.is_some() {
            // This batch will not land whole: whatever is stacked on its tip
            // has the wrong base.
            self.discard_stacked(at + 1, out);
        }
    }

    /// A gate under test could not run: the queue stops, the prefix stays
    /// under test (so `resume` gates it again). Only the first cause is
    /// kept; a late input is ignored.
    fn could_not_run(&mut self, id: BatchId, prefix: usize, cause: String, out: &mut Vec<Action>) {
        let under_test = self.batches.iter().any(|b| {
            b.id == id
                && matches!(&b.phase, Phase::Gating { testing, .. } if testing.contains(&prefix))
        });
        if !under_test || self.stopped.is_some() {
            return;
        }
        self.stopped = Some(cause.clone());
        out.push(Action::Stop {
            batch: id,
            prefix,
            cause,
            branches: self.held(),
        });
    }

    /// The first batch's land is done (`moved`) or lost to a race.
    fn landed(&mut self, moved: bool, out: &mut Vec<Action>) {
        let Phase::Landing { prefix } = self.batches[0].phase else {
            return;
        };
        let whole = moved && prefix == self.batches[0].members.len();
        if !whole {
            self.discard_stacked(1, out);
        }
        let batch = self.batches.remove(0);
        if !moved {
            // The target moved under us: merge the landed part again on top
            // (the rest is already back in the queue).
            for member in batch.members[..prefix].iter().rev() {
                self.waiting.push_front(member.branch.clone());
            }
        }
        self.finish(&batch, prefix < batch.members.len(), false);
        if let Some(next) = self.batches.first_mut() {
            // Promoted: its base is now the target.
            next.onto = None;
            for (branch, paths) in next.held_conflicts.drain(..) {
                next.branches.retain(|b| *b != branch);
                out.push(Action::Conflicted { branch, paths });
            }
        }
    }

    fn finish(&mut self, batch: &Batch, refused: bool, discarded: bool) {
        self.history.push(BatchStats {
            batch: batch.id,
            size: batch.members.len(),
            gate_runs: batch.gate_runs,
            refused,
            discarded,
        });
    }

    /// Gives up the batches from `from` on: their gates are cancelled and
    /// their branches go back to the queue's front, in order.
    fn discard_stacked(&mut self, from: usize, out: &mut Vec<Action>) {
        while self.batches.len() > from {
            let batch = self.batches.pop().expect("checked length");
            if let Phase::Gating { testing, .. } = &batch.phase {
                for &prefix in testing {
                    out.push(Action::CancelGate {
                        batch: batch.id,
                        prefix,
                    });
                }
            }
            for branch in batch.branches.iter().rev() {
                self.waiting.push_front(branch.clone());
            }
            self.finish(&batch, false, true);
        }
    }

    fn start_batch(&mut self, onto: Option<String>, out: &mut Vec<Action>) {
        let take = self.config.batch.min(self.waiting.len());
        let branches: Vec<String> = self.waiting.drain(..take).collect();
        let id = self.next_batch;
        self.next_batch += 1;
        out.push(Action::Build {
            batch: id,
            branches: branches.clone(),
            onto: onto.clone(),
        });
        self.batches.push(Batch {
            id,
            branches,
            onto,
            base: String::new(),
            members: Vec::new(),
            held_conflicts: Vec::new(),
            phase: Phase::Building,
            gate_runs: 0,
        });
    }

    /// Moves the batches in flight forward, or starts the next one.
    fn advance(&mut self, out: &mut Vec<Action>) {
        if self.stopped.is_some() {
            return;
        }
        loop {
            if self.batches.is_empty() {
                if !self.waiting.is_empty() {
                    self.start_batch(None, out);
                }
                return;
            }
            match self.step_first(out) {
                Step::Again => continue,
                Step::Wait => break,
            }
        }
        self.step_stacked(out);
    }

    /// Gates, bisects, lands or refuses in the first batch.
    fn step_first(&mut self, out: &mut Vec<Action>) -> Step {
        let gated = self.config.gated;
        let jobs = self.config.gate_jobs;
        let batch = &mut self.batches[0];
        let n = batch.members.len();
        if n == 0 && batch.phase != Phase::Building {
            let batch = self.batches.remove(0);
            self.finish(&batch, false, false);
            return Step::Again;
        }
        let Phase::Gating {
            good,
            bad,
            bad_log,
            bad_reason,
            testing,
        } = &mut batch.phase
        else {
            return Step::Wait;
        };
        if !testing.is_empty() {
            return Step::Wait;
        }
        let bad_now = match *bad {
            None if *good == n || !gated || batch.members[n - 1].commit == batch.base => {
                batch.phase = Phase::Landing { prefix: n };
                out.push(land_action(batch, n));
                return Step::Wait;
            }
            None => {
                testing.insert(n);
                batch.gate(n, out);
                return Step::Wait;
            }
            Some(b) => b,
        };
        let good_now = *good;
        if bad_now - good_now <= 1 {
            let log = bad_log.take();
            let why = bad_reason
                .take()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let culprit = &batch.members[bad_now - 1];
            let after = if bad_now >= 2 {
                format!(" on top of `{}`", batch.members[bad_now - 2].branch)
            } else {
                String::new()
            };
            out.push(Action::Refuse {
                branch: culprit.branch.clone(),
                reason: format!(
                    "the gate fails on {} once `{}` is merged{after}, and passes without it{why}",
                    culprit.commit, culprit.branch
                ),
                log,
            });
            let rest: Vec<String> = batch.members[bad_now..]
                .iter()
                .map(|m| m.branch.clone())
                .collect();
            batch.phase = Phase::Landing { prefix: good_now };
            if good_now > 0 {
                out.push(land_action(batch, good_now));
            }
            self.discard_stacked(1, out);
            for branch in rest.into_iter().rev() {
                self.waiting.push_front(branch);
            }
            if good_now > 0 {
                return Step::Wait;
            }
            self.landed(true, out); // nothing to land: the batch is done
            return Step::Again;
        }
        // Bisect: gate up to J prefixes evenly spaced strictly between.
        out.push(Action::Bisect {
            batch: batch.id,
            good: good_now,
            bad: bad_now,
        });
        let span = bad_now - good_now;
        let width = jobs.min(span - 1);
        let mut points = BTreeSet::new();
        for i in 1..=width {
            // i/(width+1) of the way, rounded to the nearest prefix.
            let p = good_now + (2 * i * span + width + 1) / (2 * (width + 1));
            points.insert(p.clamp(good_now + 1, bad_now - 1));
        }
        let known_good = points
            .iter()
            .copied()
            .filter(|&p| batch.members[p - 1].commit == batch.base)
            .max()
            .unwrap_or(good_now);
        *good = known_good;
        testing.extend(points.into_iter().filter(|&p| p > known_good));
        if testing.is_empty() {
            return Step::Again;
        }
        let ids: Vec<usize> = testing.iter().copied().collect();
        for p in ids {
            batch.gate(p, out);
        }
        Step::Wait
    }

    /// With gate jobs to spare, builds the next batch on the tip of the first
    /// while the first is gated or landed whole, and gates its tip.
    fn step_stacked(&mut self, out: &mut Vec<Action>) {
        if !self.config.gated || self.config.gate_jobs < 2 {
            return;
        }
        let first = &self.batches[0];
        let n = first.members.len();
        let whole = match first.phase {
            Phase::Gating { bad: None, .. } => n > 0,
            Phase::Landing { prefix } => prefix == n && n > 0,
            _ => false,
        };
        if !whole {
            return;
        }
        if self.batches.len() == 1 {
            if !self.waiting.is_empty() {
                let onto = first.members[n - 1].commit.clone();
                self.start_batch(Some(onto), out);
            }
            return;
        }
        let busy: usize = self.batches.iter().map(Batch::testing).sum();
        let stacked = &mut self.batches[1];
        let m = stacked.members.len();
        let Phase::Gating {
            good,
            bad: None,
            testing,
            ..
        } = &mut stacked.phase
        else {
            return;
        };
        if m == 0 || *good == m || !testing.is_empty() {
            return;
        }
        if stacked.members[m - 1].commit == stacked.base {
            *good = m;
            return;
        }
        if busy < self.config.gate_jobs {
            testing.insert(m);
            stacked.gate(m, out);
        }
    }
}

fn land_action(batch: &Batch, prefix: usize) -> Action {
    Action::Land {
        batch: batch.id,
        old: batch.base.clone(),
        new: batch.members[prefix - 1].commit.clone(),
        branches: batch.members[..prefix]
            .iter()
            .map(|m| m.branch.clone())
            .collect(),
    }
}

/// The queue as a run journals it: the planner, the commit each branch got
/// in its batch, the gate runs waiting or running and what the finished ones
/// found. Written in the same journal write as the instance states and
/// events its changes come with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub planner: MergeQueue,
    /// Branch (spec id) -> its merge commit in the batch it was built in.
    #[serde(default)]
    pub commits: std::collections::BTreeMap<String, String>,
    /// Batch -> the branches it lands, while its land is under way.
    #[serde(default)]
    pub landing: std::collections::BTreeMap<BatchId, Vec<String>>,
    /// Gate runs asked for and not finished, in the order asked.
    #[serde(default)]
    pub gates: Vec<GateRun>,
    /// Every finished gate run, in order.
    #[serde(default)]
    pub results: Vec<GateResult>,
    /// Gate runs numbered so far (each has its own log).
    #[serde(default)]
    pub gate_runs: u64,
}

impl QueueRecord {
    pub fn new(config: QueueConfig) -> QueueRecord {
        QueueRecord {
            planner: MergeQueue::new(config),
            commits: Default::default(),
            landing: Default::default(),
            gates: Vec::new(),
            results: Vec::new(),
            gate_runs: 0,
        }
    }
}

/// One gate run: waiting for a gate worktree (`slot: None`) or running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRun {
    /// Its number in the run (names its log).
    pub run: u64,
    pub batch: BatchId,
    pub prefix: usize,
    pub commit: String,
    /// The branches merged in the commit under test.
    pub ids: Vec<String>,
    pub log: String,
    #[serde(default)]
    pub slot: Option<usize>,
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// The planner no longer needs it; it is being stopped.
    #[serde(default)]
    pub cancelled: bool,
}

/// What a finished gate run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateResult {
    pub run: u64,
    pub batch: BatchId,
    pub prefix: usize,
    pub commit: String,
    pub passed: bool,
    pub elapsed_ms: u64,
    pub log: String,
}

#[cfg(test)]
#[path = "merge_queue_tests.rs"]
mod tests;
