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
    /// other, starting from the target tip `base`, in the order asked for.
    Built {
        batch: BatchId,
        base: String,
        results: Vec<Built>,
    },
    /// The gate on a prefix of a batch finished (or could not start: failed).
    Gated {
        batch: BatchId,
        prefix: usize,
        passed: bool,
        log: Option<String>,
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
    /// Merge these branches in memory, in this order, on the target tip.
    Build {
        batch: BatchId,
        branches: Vec<String>,
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
    Building { branches: Vec<String> },
    /// Prefix `good` passes (0: the target itself), prefix `bad` fails
    /// (`None`: not known yet); `testing` are the prefixes under test.
    Gating {
        good: usize,
        bad: Option<usize>,
        bad_log: Option<String>,
        testing: BTreeSet<usize>,
    },
    /// Waiting for [`Input::Landed`] of the first `prefix` members.
    Landing { prefix: usize },
}

/// The batch being built, gated or landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Batch {
    id: BatchId,
    base: String,
    members: Vec<Member>,
    phase: Phase,
    /// Gate runs started for this batch (cancelled ones included).
    gate_runs: usize,
}

/// The queue: branches waiting, and at most one batch in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeQueue {
    config: QueueConfig,
    waiting: VecDeque<String>,
    next_batch: BatchId,
    current: Option<Batch>,
    /// Per finished batch: its size when built and its gate runs.
    history: Vec<BatchStats>,
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
}

/// The most gate runs a batch of `size` branches may cost when one of its
/// branches is refused: `1 + 2·⌈log₂ size⌉`.
pub fn gate_run_bound(size: usize) -> usize {
    let log2_ceil = usize::BITS - size.max(1).saturating_sub(1).leading_zeros();
    1 + 2 * log2_ceil as usize
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
            current: None,
            history: Vec::new(),
        }
    }

    /// True when nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.waiting.is_empty()
    }

    /// Branches waiting for a batch, in order.
    pub fn waiting(&self) -> impl Iterator<Item = &str> {
        self.waiting.iter().map(String::as_str)
    }

    /// The batch in flight: its id, its branches (or those being built) and
    /// the prefixes under test, for the live display.
    pub fn in_flight(&self) -> Option<(BatchId, Vec<&str>, Vec<usize>)> {
        let batch = self.current.as_ref()?;
        let (branches, testing) = match &batch.phase {
            Phase::Building { branches } => (branches.iter().map(String::as_str).collect(), vec![]),
            Phase::Gating { testing, .. } => (
                batch.members.iter().map(|m| m.branch.as_str()).collect(),
                testing.iter().copied().collect(),
            ),
            Phase::Landing { .. } => (
                batch.members.iter().map(|m| m.branch.as_str()).collect(),
                vec![],
            ),
        };
        Some((batch.id, branches, testing))
    }

    /// What each finished batch cost.
    pub fn history(&self) -> &[BatchStats] {
        &self.history
    }

    /// Takes one input and returns what to do next. Inputs for another batch
    /// or a prefix no longer under test (late or duplicate) are ignored.
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
            } => self.gated(batch, prefix, passed, log, &mut out),
            Input::Landed { batch, moved } => self.landed(batch, moved),
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
        if let Some(batch) = &self.current {
            match &batch.phase {
                Phase::Building { branches } => out.push(Action::Build {
                    batch: batch.id,
                    branches: branches.clone(),
                }),
                Phase::Gating { testing, .. } => {
                    let again: Vec<usize> = testing.iter().copied().collect();
                    for prefix in again {
                        out.push(self.gate_action(prefix));
                    }
                    if let Some(batch) = &mut self.current {
                        batch.gate_runs += out.len();
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
                .current
                .as_ref()
                .is_some_and(|batch| match &batch.phase {
                    Phase::Building { branches } => branches.iter().any(|b| b == branch),
                    _ => batch.members.iter().any(|m| m.branch == branch),
                })
    }

    fn built(&mut self, id: BatchId, base: String, results: Vec<Built>, out: &mut Vec<Action>) {
        let Some(batch) = self.current.as_mut().filter(|b| b.id == id) else {
            return;
        };
        let Phase::Building { branches } = &batch.phase else {
            return;
        };
        let mut asked: Vec<String> = branches.clone();
        batch.base = base;
        batch.members.clear();
        for result in results {
            let branch = match &result {
                Built::Merged { branch, .. } | Built::Conflicted { branch, .. } => branch.clone(),
            };
            let Some(at) = asked.iter().position(|b| *b == branch) else {
                continue; // not asked for: ignore rather than land it
            };
            asked.remove(at);
            match result {
                Built::Merged { branch, commit } => batch.members.push(Member { branch, commit }),
                Built::Conflicted { branch, paths } => {
                    out.push(Action::Conflicted { branch, paths })
                }
            }
        }
        // Branches the build did not report go back to the queue's front.
        for branch in asked.into_iter().rev() {
            self.waiting.push_front(branch);
        }
        let batch = self.current.as_mut().expect("checked above");
        batch.phase = Phase::Gating {
            good: 0,
            bad: None,
            bad_log: None,
            testing: BTreeSet::new(),
        };
    }

    fn gated(
        &mut self,
        id: BatchId,
        prefix: usize,
        passed: bool,
        log: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let Some(batch) = self.current.as_mut().filter(|b| b.id == id) else {
            return;
        };
        let Phase::Gating {
            good,
            bad,
            bad_log,
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
    }

    fn landed(&mut self, id: BatchId, moved: bool) {
        let Some(batch) = self.current.as_ref().filter(|b| b.id == id) else {
            return;
        };
        let Phase::Landing { prefix } = batch.phase else {
            return;
        };
        let batch = self.current.take().expect("checked above");
        let refused = prefix < batch.members.len();
        if !moved {
            // The target moved under us: merge the landed part again on top
            // (the rest is already back in the queue).
            for member in batch.members[..prefix].iter().rev() {
                self.waiting.push_front(member.branch.clone());
            }
        }
        self.history.push(BatchStats {
            batch: batch.id,
            size: batch.members.len(),
            gate_runs: batch.gate_runs,
            refused,
        });
    }

    /// Moves the batch in flight forward, or starts the next one.
    fn advance(&mut self, out: &mut Vec<Action>) {
        loop {
            let Some(batch) = &mut self.current else {
                if self.waiting.is_empty() {
                    return;
                }
                let take = self.config.batch.min(self.waiting.len());
                let branches: Vec<String> = self.waiting.drain(..take).collect();
                let id = self.next_batch;
                self.next_batch += 1;
                out.push(Action::Build {
                    batch: id,
                    branches: branches.clone(),
                });
                self.current = Some(Batch {
                    id,
                    base: String::new(),
                    members: Vec::new(),
                    phase: Phase::Building { branches },
                    gate_runs: 0,
                });
                return;
            };
            let Phase::Gating {
                good,
                bad,
                bad_log,
                testing,
            } = &mut batch.phase
            else {
                return;
            };
            let n = batch.members.len();
            if n == 0 {
                self.history.push(BatchStats {
                    batch: batch.id,
                    size: 0,
                    gate_runs: batch.gate_runs,
                    refused: false,
                });
                self.current = None;
                continue;
            }
            if !testing.is_empty() {
                return;
            }
            // A prefix whose commit is the target itself passes untested.
            let unchanged = |p: usize| p == 0 || batch.members[p - 1].commit == batch.base;
            let bad_now = match *bad {
                None if *good == n || !self.config.gated || unchanged(n) => {
                    batch.phase = Phase::Landing { prefix: n };
                    out.push(land_action(batch, n));
                    return;
                }
                None => {
                    let commit = batch.members[n - 1].commit.clone();
                    testing.insert(n);
                    batch.gate_runs += 1;
                    out.push(Action::Gate {
                        batch: batch.id,
                        prefix: n,
                        commit,
                    });
                    return;
                }
                Some(b) => b,
            };
            if bad_now - *good <= 1 {
                let (good, log) = (*good, bad_log.take());
                let culprit = &batch.members[bad_now - 1];
                let after = if bad_now >= 2 {
                    format!(" on top of `{}`", batch.members[bad_now - 2].branch)
                } else {
                    String::new()
                };
                out.push(Action::Refuse {
                    branch: culprit.branch.clone(),
                    reason: format!(
                        "the gate fails on {} once `{}` is merged{after}, and passes without it",
                        culprit.commit, culprit.branch
                    ),
                    log,
                });
                for member in batch.members[bad_now..].iter().rev() {
                    self.waiting.push_front(member.branch.clone());
                }
                batch.phase = Phase::Landing { prefix: good };
                if good > 0 {
                    out.push(land_action(batch, good));
                    return;
                }
                // Nothing to land: the batch is done.
                self.landed(batch_id(&self.current), true);
                continue;
            }
            // Bisect: gate up to J prefixes evenly spaced strictly between.
            out.push(Action::Bisect {
                batch: batch.id,
                good: *good,
                bad: bad_now,
            });
            let span = bad_now - *good;
            let width = self.config.gate_jobs.min(span - 1);
            let mut points = BTreeSet::new();
            for i in 1..=width {
                // i/(width+1) of the way, rounded to the nearest prefix.
                let p = *good + (2 * i * span + width + 1) / (2 * (width + 1));
                points.insert(p.clamp(*good + 1, bad_now - 1));
            }
            let mut known_good = *good;
            for p in points {
                if unchanged(p) {
                    known_good = known_good.max(p);
                    continue;
                }
                testing.insert(p);
            }
            if known_good > *good {
                *good = known_good;
                testing.retain(|&p| p > known_good);
            }
            if testing.is_empty() {
                continue;
            }
            let ids: Vec<usize> = testing.iter().copied().collect();
            batch.gate_runs += ids.len();
            for p in ids {
                let batch = self.current.as_ref().expect("in flight");
                out.push(Action::Gate {
                    batch: batch.id,
                    prefix: p,
                    commit: batch.members[p - 1].commit.clone(),
                });
            }
            return;
        }
    }

    fn gate_action(&self, prefix: usize) -> Action {
        let batch = self.current.as_ref().expect("gating a batch");
        Action::Gate {
            batch: batch.id,
            prefix,
            commit: batch.members[prefix - 1].commit.clone(),
        }
    }
}

fn batch_id(current: &Option<Batch>) -> BatchId {
    current.as_ref().map_or(0, |b| b.id)
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

#[cfg(test)]
#[path = "merge_queue_tests.rs"]
mod tests;
