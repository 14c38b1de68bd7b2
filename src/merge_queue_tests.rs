//! The planner driven by a simulated repository and gate: results arrive in
//! a random (seeded) order, the planner is saved and restored at random
//! points, and the outcome is checked against merging one branch at a time.

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

/// splitmix64: a tiny seeded generator, so a failing case replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Which sets of branches break the gate: any set holding a culprit, or
/// holding both branches of a semantic pair. Monotonic, so batching must
/// give the same result as merging one by one.
#[derive(Debug, Clone, Default)]
struct World {
    culprits: BTreeSet<String>,
    pairs: Vec<(String, String)>,
    conflicting: BTreeSet<String>,
}

impl World {
    fn fails(&self, content: &[String]) -> bool {
        let has = |b: &String| content.contains(b);
        content.iter().any(|b| self.culprits.contains(b))
            || self.pairs.iter().any(|(a, b)| has(a) && has(b))
    }

    /// Merging one branch at a time, gating each: (merged, refused, conflicted).
    fn sequential(&self, branches: &[String]) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut merged, mut refused, mut conflicted) = (vec![], vec![], vec![]);
        for b in branches {
            if self.conflicting.contains(b) {
                conflicted.push(b.clone());
                continue;
            }
            let mut with = merged.clone();
            with.push(b.clone());
            if self.fails(&with) {
                refused.push(b.clone());
            } else {
                merged = with;
            }
        }
        (merged, refused, conflicted)
    }
}

/// The repository and gate the runner would drive.
struct Sim {
    world: World,
    /// commit id → the branches it holds, in merge order.
    commits: HashMap<String, Vec<String>>,
    target: String,
    passed: HashSet<String>,
    next_commit: u64,
    gate_runs: usize,
    refused: Vec<String>,
    conflicted: Vec<String>,
    /// Move the target behind the planner's back before this many lands.
    race_before_land: Option<usize>,
    lands: usize,
    /// The gate asked for this many times (1-based) cannot run (a full
    /// disk); fixed from then on.
    break_gate_at: Option<usize>,
    gates_asked: usize,
    /// Between an `Action::Stop` and the resume that follows the fix.
    stopped: bool,
    stops: usize,
}

impl Sim {
    fn new(world: World) -> Sim {
        let mut commits = HashMap::new();
        commits.insert("root".to_string(), vec![]);
        Sim {
            world,
            commits,
            target: "root".into(),
            passed: HashSet::new(),
            next_commit: 0,
            gate_runs: 0,
            refused: vec![],
            conflicted: vec![],
            race_before_land: None,
            lands: 0,
            break_gate_at: None,
            gates_asked: 0,
            stopped: false,
            stops: 0,
        }
    }

    fn commit(&mut self, content: Vec<String>) -> String {
        self.next_commit += 1;
        let id = format!("c{}", self.next_commit);
        self.commits.insert(id.clone(), content);
        id
    }

    /// Does `action`; `Some(input)` is what the runner feeds back.
    fn perform(&mut self, action: &Action, gated: bool) -> Option<Input> {
        match action {
            Action::Build {
                batch,
                branches,
                onto,
            } => {
                let base = onto.clone().unwrap_or_else(|| self.target.clone());
                let mut content = self.commits[&base].clone();
                let mut results = vec![];
                for b in branches {
                    if self.world.conflicting.contains(b) {
                        results.push(Built::Conflicted {
                            branch: b.clone(),
                            paths: vec!["f".into()],
                        });
                        continue;
                    }
                    content.push(b.clone());
                    let commit = self.commit(content.clone());
                    results.push(Built::Merged {
                        branch: b.clone(),
                        commit,
                    });
                }
                Some(Input::Built {
                    batch: *batch,
                    base,
                    results,
                })
            }
            Action::Gate {
                batch,
                prefix,
                commit,
            } => {
                self.gates_asked += 1;
                if self.break_gate_at == Some(self.gates_asked) {
                    return Some(Input::GateCouldNotRun {
                        batch: *batch,
                        prefix: *prefix,
                        cause: "no space left on device".into(),
                    });
                }
                self.gate_runs += 1;
                let passed = !self.world.fails(&self.commits[commit]);
                if passed {
                    self.passed.insert(commit.clone());
                }
                Some(Input::Gated {
                    batch: *batch,
                    prefix: *prefix,
                    passed,
                    log: Some(format!("gate-{commit}.log")),
                    reason: None,
                })
            }
            Action::Land {
                batch, old, new, ..
            } => {
                self.lands += 1;
                if self.race_before_land == Some(self.lands) {
                    let mut content = self.commits[&self.target].clone();
                    content.push("outsider".into());
                    self.target = self.commit(content);
                }
                assert!(
                    !gated || new == old || self.passed.contains(new),
                    "landed untested commit {new}"
                );
                let moved = if self.target == *old {
                    self.target = new.clone();
                    true
                } else {
                    self.target == *new
                };
                Some(Input::Landed {
                    batch: *batch,
                    moved,
                })
            }
            Action::Refuse { branch, log, .. } => {
                assert!(log.is_some() || !gated, "refused `{branch}` without a log");
                self.refused.push(branch.clone());
                None
            }
            Action::Conflicted { branch, .. } => {
                self.conflicted.push(branch.clone());
                None
            }
            Action::Stop { branches, .. } => {
                assert!(!branches.is_empty(), "a stop holds the branches under test");
                self.stopped = true;
                self.stops += 1;
                None
            }
            Action::CancelGate { .. } | Action::Bisect { .. } => None,
        }
    }
}

struct Outcome {
    merged: Vec<String>,
    refused: Vec<String>,
    conflicted: Vec<String>,
    gate_runs: usize,
    history: Vec<BatchStats>,
    stops: usize,
}

/// Runs the queue to completion. `crash_percent`: chance, at each step, to
/// restore the planner from its last saved state (losing every action in
/// flight, possibly after performing one).
fn drive(
    config: QueueConfig,
    world: World,
    branches: &[String],
    seed: u64,
    crash_percent: u64,
    race_before_land: Option<usize>,
) -> Outcome {
    drive_with(
        config,
        world,
        branches,
        seed,
        crash_percent,
        Faults {
            race_before_land,
            break_gate_at: None,
        },
        false,
    )
}

/// What goes wrong besides the gate's verdicts.
#[derive(Default)]
struct Faults {
    /// Move the target behind the planner's back before this many lands.
    race_before_land: Option<usize>,
    /// The gate asked for this many times cannot run.
    break_gate_at: Option<usize>,
}

fn drive_with(
    config: QueueConfig,
    world: World,
    branches: &[String],
    seed: u64,
    crash_percent: u64,
    faults: Faults,
    restore_every_step: bool,
) -> Outcome {
    let mut rng = Rng(seed);
    let mut sim = Sim::new(world);
    sim.race_before_land = faults.race_before_land;
    sim.break_gate_at = faults.break_gate_at;
    let mut queue = MergeQueue::new(config);
    let mut pending: Vec<Action> = vec![];
    // Branches become ready in priority order, in a few groups.
    let mut rest = branches.to_vec();
    // Outcomes are recorded in the same journal write as the state that
    // produced them; only work can be lost in a crash.
    let take = |sim: &mut Sim, actions: Vec<Action>, pending: &mut Vec<Action>| {
        for a in actions {
            // A stopped queue decides nothing: no gate, build, land or
            // refusal until it is resumed.
            assert!(
                !(sim.stopped
                    && matches!(
                        a,
                        Action::Gate { .. }
                            | Action::Build { .. }
                            | Action::Land { .. }
                            | Action::Refuse { .. }
                    )),
                "{a:?} decided while stopped (seed {seed})"
            );
            match a {
                Action::Refuse { .. }
                | Action::Conflicted { .. }
                | Action::Bisect { .. }
                | Action::Stop { .. } => {
                    sim.perform(&a, config.gated);
                    if matches!(a, Action::Stop { .. }) {
                        // The runner stops the other gates: their results
                        // are lost, the planner asks again on resume.
                        pending.retain(|p| !matches!(p, Action::Gate { .. }));
                    }
                }
                _ => pending.push(a),
            }
        }
    };
    let mut journal = serde_json::to_string(&queue).expect("serialise");
    for step in 0.. {
        assert!(step < 100_000, "no progress (seed {seed})");
        if !rest.is_empty() && (pending.is_empty() || rng.chance(20)) {
            let count = 1 + rng.below(rest.len());
            let group: Vec<String> = rest.drain(..count).collect();
            let actions = queue.handle(Input::Ready(group));
            take(&mut sim, actions, &mut pending);
            journal = serde_json::to_string(&queue).expect("serialise");
            continue;
        }
        if pending.is_empty() && queue.stopped().is_some() {
            // The user fixed the cause and resumed.
            sim.stopped = false;
            let actions = queue.resume();
            take(&mut sim, actions, &mut pending);
            journal = serde_json::to_string(&queue).expect("serialise");
            continue;
        }
        if pending.is_empty() {
            assert!(queue.is_idle(), "stalled with work queued (seed {seed})");
            break;
        }
        let action = pending.remove(rng.below(pending.len()));
        if let Action::CancelGate { batch, prefix } = &action {
            pending.retain(|a| {
                !matches!(a, Action::Gate { batch: b, prefix: p, .. } if b == batch && p == prefix)
            });
        }
        let input = sim.perform(&action, config.gated);
        if rng.chance(crash_percent) {
            // Killed: whatever was in flight is lost; resume from the journal.
            queue = serde_json::from_str(&journal).expect("restore");
            pending.clear();
            sim.stopped = false;
            let actions = queue.resume();
            take(&mut sim, actions, &mut pending);
            journal = serde_json::to_string(&queue).expect("serialise");
            continue;
        }
        if let Some(input) = input {
            let actions = queue.handle(input);
            take(&mut sim, actions, &mut pending);
            journal = serde_json::to_string(&queue).expect("serialise");
        }
        if restore_every_step {
            // Killed just after the journal write: restore and redo what
            // was in flight.
            queue = serde_json::from_str(&journal).expect("restore");
            pending.clear();
            sim.stopped = false;
            let actions = queue.resume();
            take(&mut sim, actions, &mut pending);
            journal = serde_json::to_string(&queue).expect("serialise");
        }
    }
    Outcome {
        merged: sim.commits[&sim.target]
            .iter()
            .filter(|b| *b != "outsider")
            .cloned()
            .collect(),
        refused: sim.refused,
        conflicted: sim.conflicted,
        gate_runs: sim.gate_runs,
        history: queue.history().to_vec(),
        stops: sim.stops,
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("b{i:02}")).collect()
}

fn config(batch: usize, gate_jobs: usize) -> QueueConfig {
    QueueConfig {
        batch,
        gate_jobs,
        gated: true,
    }
}

fn world(culprits: &[&str], pairs: &[(&str, &str)], conflicting: &[&str]) -> World {
    World {
        culprits: culprits.iter().map(|s| s.to_string()).collect(),
        pairs: pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        conflicting: conflicting.iter().map(|s| s.to_string()).collect(),
    }
}

fn check_against_sequential(world: &World, branches: &[String], out: &Outcome) {
    let (merged, refused, conflicted) = world.sequential(branches);
    assert_eq!(out.merged, merged, "merged in priority order");
    let sorted = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&out.refused), sorted(&refused), "refused");
    assert_eq!(sorted(&out.conflicted), sorted(&conflicted), "conflicted");
    assert_eq!(
        out.merged.len() + out.refused.len() + out.conflicted.len(),
        branches.len(),
        "every branch ends exactly once"
    );
}

fn check_bound(out: &Outcome) {
    for stats in &out.history {
        let allowed = if stats.refused && !stats.discarded {
            gate_run_bound(stats.size)
        } else {
            1
        };
        assert!(
            stats.gate_runs <= allowed,
            "batch {} of {} cost {} gate runs, bound {allowed}",
            stats.batch,
            stats.size,
            stats.gate_runs
        );
    }
}

#[test]
fn bound_formula() {
    assert_eq!(gate_run_bound(1), 1);
    assert_eq!(gate_run_bound(2), 3);
    assert_eq!(gate_run_bound(3), 5);
    assert_eq!(gate_run_bound(8), 7);
    assert_eq!(gate_run_bound(9), 9);
    assert_eq!(gate_run_bound(16), 9);
}

#[test]
fn all_good_is_one_gate_run_and_one_land() {
    let branches = names(16);
    let mut queue = MergeQueue::new(config(16, 1));
    let actions = queue.handle(Input::Ready(branches.clone()));
    assert_eq!(
        actions,
        vec![Action::Build {
            batch: 1,
            branches: branches.clone(),
            onto: None,
        }]
    );
    let results = branches
        .iter()
        .enumerate()
        .map(|(i, b)| Built::Merged {
            branch: b.clone(),
            commit: format!("c{i}"),
        })
        .collect();
    let actions = queue.handle(Input::Built {
        batch: 1,
        base: "root".into(),
        results,
    });
    assert_eq!(
        actions,
        vec![Action::Gate {
            batch: 1,
            prefix: 16,
            commit: "c15".into()
        }]
    );
    let actions = queue.handle(Input::Gated {
        batch: 1,
        prefix: 16,
        passed: true,
        log: None,
        reason: None,
    });
    assert_eq!(
        actions,
        vec![Action::Land {
            batch: 1,
            old: "root".into(),
            new: "c15".into(),
            branches: branches.clone()
        }]
    );
    assert!(queue
        .handle(Input::Landed {
            batch: 1,
            moved: true
        })
        .is_empty());
    assert!(queue.is_idle());
}

#[test]
fn sixteen_with_one_culprit_stay_within_nine_gate_runs() {
    for jobs in 1..=4 {
        for culprit in 0..16 {
            let branches = names(16);
            let w = world(&[&branches[culprit]], &[], &[]);
            let runs = {
                let mut q = MergeQueue::new(config(16, jobs));
                let mut sim = Sim::new(w.clone());
                let mut pending = q.handle(Input::Ready(branches.clone()));
                while let Some(a) = pending.pop() {
                    if let Some(input) = sim.perform(&a, true) {
                        pending.extend(q.handle(input));
                    }
                }
                assert_eq!(sim.refused, vec![branches[culprit].clone()]);
                assert_eq!(sim.commits[&sim.target].len(), 15);
                sim.gate_runs
            };
            assert!(
                runs <= 9,
                "culprit {culprit}, {jobs} jobs: {runs} gate runs"
            );
        }
    }
}

#[test]
fn with_two_gate_jobs_the_next_batch_is_built_and_gated_on_the_first() {
    let branches = names(16);
    let mut queue = MergeQueue::new(config(8, 2));
    let mut sim = Sim::new(World::default());
    let mut log = vec![];
    let mut pending = queue.handle(Input::Ready(branches.clone()));
    while !pending.is_empty() {
        let action = pending.remove(0);
        log.push(action.clone());
        if let Some(input) = sim.perform(&action, true) {
            pending.extend(queue.handle(input));
        }
    }
    let kinds: Vec<String> = log
        .iter()
        .map(|a| match a {
            Action::Build { batch, onto, .. } => {
                format!("build{batch}{}", if onto.is_some() { "+" } else { "" })
            }
            Action::Gate { batch, prefix, .. } => format!("gate{batch}/{prefix}"),
            Action::Land { batch, .. } => format!("land{batch}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        // Batch 2 is built on batch 1's tip while batch 1 is under test, and
        // its gate is asked for (when its build returns) before batch 1 lands.
        ["build1", "gate1/8", "build2+", "land1", "gate2/8", "land2"]
    );
    assert_eq!(sim.gate_runs, 2);
    assert_eq!(sim.commits[&sim.target], branches);
}

#[test]
fn a_stacked_batch_is_given_up_when_the_first_fails() {
    let branches = names(16);
    // b10 conflicts only with b03, which is refused: not conflicted after all.
    let w = world(&["b03"], &[], &[]);
    let mut queue = MergeQueue::new(config(8, 2));
    let mut sim = Sim::new(w.clone());
    let mut pending = queue.handle(Input::Ready(branches.clone()));
    while !pending.is_empty() {
        let action = pending.remove(0);
        if let Action::Build { onto: Some(_), .. } = &action {
            sim.world.conflicting.insert("b10".into());
        } else if let Action::Build { .. } = &action {
            sim.world.conflicting.remove("b10");
        }
        if let Some(input) = sim.perform(&action, true) {
            pending.extend(queue.handle(input));
        }
    }
    let history = queue.history();
    assert!(history.iter().any(|s| s.discarded), "{history:?}");
    assert_eq!(sim.refused, ["b03"]);
    assert!(
        sim.conflicted.is_empty(),
        "held conflict dropped with its batch"
    );
    let mut merged = branches.clone();
    merged.retain(|b| b != "b03");
    assert_eq!(sim.commits[&sim.target], merged);
}

#[test]
fn semantic_conflict_refuses_the_later_branch() {
    let branches = names(6);
    let w = world(&[], &[("b01", "b04")], &[]);
    for jobs in 1..=3 {
        let out = drive(config(8, jobs), w.clone(), &branches, 7, 0, None);
        assert_eq!(out.refused, vec!["b04".to_string()]);
        check_against_sequential(&w, &branches, &out);
    }
}

#[test]
fn conflicting_branch_leaves_the_batch_at_once() {
    let mut queue = MergeQueue::new(config(8, 1));
    queue.handle(Input::Ready(names(3)));
    let actions = queue.handle(Input::Built {
        batch: 1,
        base: "root".into(),
        results: vec![
            Built::Merged {
                branch: "b00".into(),
                commit: "c0".into(),
            },
            Built::Conflicted {
                branch: "b01".into(),
                paths: vec!["a.txt".into()],
            },
            Built::Merged {
                branch: "b02".into(),
                commit: "c2".into(),
            },
        ],
    });
    assert_eq!(
        actions,
        vec![
            Action::Conflicted {
                branch: "b01".into(),
                paths: vec!["a.txt".into()]
            },
            Action::Gate {
                batch: 1,
                prefix: 2,
                commit: "c2".into()
            }
        ]
    );
}

#[test]
fn batch_of_one_is_todays_one_by_one() {
    let branches = names(5);
    let w = world(&["b02"], &[], &[]);
    let out = drive(config(1, 1), w.clone(), &branches, 3, 0, None);
    check_against_sequential(&w, &branches, &out);
    assert_eq!(out.gate_runs, 5);
    assert!(out.history.iter().all(|s| s.size == 1));
}

#[test]
fn no_gate_lands_every_built_batch() {
    let branches = names(10);
    let w = world(&[], &[], &["b03"]);
    let mut cfg = config(4, 1);
    cfg.gated = false;
    let out = drive(cfg, w.clone(), &branches, 11, 0, None);
    assert_eq!(out.gate_runs, 0);
    check_against_sequential(&w, &branches, &out);
}

#[test]
fn a_raced_land_is_built_again_on_the_new_target() {
    let branches = names(6);
    let w = world(&["b02"], &[], &[]);
    for race in 1..=3 {
        let out = drive(config(8, 2), w.clone(), &branches, 5, 0, Some(race));
        check_against_sequential(&w, &branches, &out);
    }
}

#[test]
fn late_and_duplicate_inputs_are_ignored() {
    let mut queue = MergeQueue::new(config(8, 1));
    queue.handle(Input::Ready(names(2)));
    queue.handle(Input::Ready(names(2)));
    assert_eq!(queue.waiting().count(), 0, "both in the batch being built");
    let before = queue.clone();
    assert!(queue
        .handle(Input::Gated {
            batch: 1,
            prefix: 2,
            passed: true,
            log: None,
            reason: None,
        })
        .is_empty());
    assert!(queue
        .handle(Input::Landed {
            batch: 9,
            moved: true
        })
        .is_empty());
    assert_eq!(queue, before);
}

/// Restores the planner from its journal after every single step of a
/// scenario, performing the actions of the restored copy only, and checks
/// the same outcome.
#[test]
fn restore_at_every_step() {
    let branches = names(9);
    let w = world(&["b05"], &[("b01", "b07")], &["b03"]);
    for jobs in 1..=3 {
        let out = drive_with(
            config(8, jobs),
            w.clone(),
            &branches,
            99,
            0,
            Faults::default(),
            true,
        );
        check_against_sequential(&w, &branches, &out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random culprit positions, semantic pairs, conflicts, batch caps,
    /// gate jobs and result orders: same outcome as one by one, and each
    /// batch within the gate-run bound.
    #[test]
    fn bisection_finds_culprits_within_the_bound(
        n in 1usize..=16,
        jobs in 1usize..=4,
        cap in 1usize..=16,
        (culprit_a, culprit_b) in any::<(u16, u16)>(),
        pair in proptest::option::of((0usize..16, 0usize..16)),
        (conflict_a, conflict_b, conflict_c) in any::<(u16, u16, u16)>(),
        seed in any::<u64>(),
    ) {
        let branches = names(n);
        // About one branch in four is a culprit, one in eight conflicts.
        let pick = |bits: u16| -> BTreeSet<String> {
            (0..n).filter(|i| bits & (1 << i) != 0).map(|i| branches[i].clone()).collect()
        };
        let mut w = World {
            culprits: pick(culprit_a & culprit_b),
            conflicting: pick(conflict_a & conflict_b & conflict_c),
            pairs: vec![],
        };
        if let Some((a, b)) = pair {
            if a < n && b < n && a != b {
                w.pairs.push((branches[a.min(b)].clone(), branches[a.max(b)].clone()));
            }
        }
        eprintln!("seed {seed}");
        let out = drive(config(cap, jobs), w.clone(), &branches, seed, 0, None);
        check_against_sequential(&w, &branches, &out);
        check_bound(&out);
    }

    /// The same with the planner restored from its journal at random steps
    /// (and inputs lost): never an untested land, never a lost branch.
    #[test]
    fn restore_anywhere_loses_nothing(
        n in 1usize..=12,
        jobs in 1usize..=4,
        cap in 1usize..=8,
        culprit in proptest::option::of(0usize..12),
        seed in any::<u64>(),
        crash in 5u64..60,
        every_step in any::<bool>(),
    ) {
        let branches = names(n);
        let mut w = World::default();
        if let Some(c) = culprit.filter(|&c| c < n) {
            w.culprits.insert(branches[c].clone());
        }
        eprintln!("seed {seed}");
        let out = drive_with(config(cap, jobs), w.clone(), &branches, seed, crash, Faults::default(), every_step);
        check_against_sequential(&w, &branches, &out);
    }

    /// Regression (a gate that cannot run is not a failed gate): whichever
    /// gate run cannot run — a full disk, a log that cannot be created —
    /// the queue stops without refusing or landing anything, and once
    /// resumed the outcome is that of merging one by one.
    #[test]
    fn a_gate_that_could_not_run_refuses_nobody(
        n in 1usize..=12,
        jobs in 1usize..=4,
        cap in 1usize..=8,
        culprit in proptest::option::of(0usize..12),
        break_at in 1usize..=6,
        seed in any::<u64>(),
        crash in prop_oneof![Just(0u64), 5u64..40],
    ) {
        let branches = names(n);
        let mut w = World::default();
        if let Some(c) = culprit.filter(|&c| c < n) {
            w.culprits.insert(branches[c].clone());
        }
        eprintln!("seed {seed}");
        let faults = Faults { race_before_land: None, break_gate_at: Some(break_at) };
        let out = drive_with(config(cap, jobs), w.clone(), &branches, seed, crash, faults, false);
        check_against_sequential(&w, &branches, &out);
        prop_assert!(out.stops <= 1);
    }
}

#[test]
fn a_gate_that_could_not_run_stops_the_queue_until_resumed() {
    let mut queue = MergeQueue::new(config(8, 1));
    queue.handle(Input::Ready(names(3)));
    let built = queue.handle(Input::Built {
        batch: 1,
        base: "root".into(),
        results: names(3)
            .into_iter()
            .enumerate()
            .map(|(i, branch)| Built::Merged {
                branch,
                commit: format!("c{i}"),
            })
            .collect(),
    });
    assert!(
        matches!(built[..], [Action::Gate { prefix: 3, .. }]),
        "{built:?}"
    );
    let stopped = queue.handle(Input::GateCouldNotRun {
        batch: 1,
        prefix: 3,
        cause: "failed to create the gate log".into(),
    });
    assert_eq!(
        stopped,
        [Action::Stop {
            batch: 1,
            prefix: 3,
            cause: "failed to create the gate log".into(),
            branches: names(3),
        }]
    );
    assert_eq!(queue.stopped(), Some("failed to create the gate log"));
    // New branches wait; nothing is decided.
    assert!(queue.handle(Input::Ready(vec!["later".into()])).is_empty());
    // The journal keeps the stop (and an old journal without it reads).
    let saved = serde_json::to_string(&queue).unwrap();
    let mut restored: MergeQueue = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored.stopped(), queue.stopped());
    let mut old: serde_json::Value = serde_json::from_str(&saved).unwrap();
    old.as_object_mut().unwrap().remove("stopped");
    let old: MergeQueue = serde_json::from_value(old).unwrap();
    assert_eq!(old.stopped(), None);
    // Resumed: the same prefix is gated again.
    let again = restored.resume();
    assert!(
        matches!(
            again[..],
            [Action::Gate {
                batch: 1,
                prefix: 3,
                ..
            }]
        ),
        "{again:?}"
    );
    assert_eq!(restored.stopped(), None);
}

#[test]
fn a_failed_gate_s_reason_is_in_the_refusal() {
    let mut queue = MergeQueue::new(config(1, 1));
    queue.handle(Input::Ready(names(1)));
    queue.handle(Input::Built {
        batch: 1,
        base: "root".into(),
        results: vec![Built::Merged {
            branch: "b00".into(),
            commit: "c0".into(),
        }],
    });
    let out = queue.handle(Input::Gated {
        batch: 1,
        prefix: 1,
        passed: false,
        log: Some("gate.log".into()),
        reason: Some("write to /tmp/x denied by isolation".into()),
    });
    let Some(Action::Refuse { reason, .. }) = out.first() else {
        panic!("{out:?}");
    };
    assert!(
        reason.ends_with(": write to /tmp/x denied by isolation"),
        "{reason}"
    );
}
