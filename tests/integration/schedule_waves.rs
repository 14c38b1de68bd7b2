//! `plan_waves` and the live `Scheduler`: priorities, dependencies, overlaps,
//! slots, failures.

use treefarm::schedule::{plan_waves, Node, NodeState, Scheduler};

fn node(id: &str, priority: i64, deps: &[&str]) -> Node {
    Node {
        id: id.to_owned(),
        priority,
        order: 0,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

/// Nodes in file order: `order` is the position.
fn nodes(list: &[(&str, i64, &[&str])]) -> Vec<Node> {
    list.iter()
        .enumerate()
        .map(|(i, (id, p, deps))| Node {
            order: i,
            ..node(id, *p, deps)
        })
        .collect()
}

fn conflicts(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn waves(n: Vec<Node>, c: &[(&str, &str)], instances: usize) -> Vec<Vec<String>> {
    plan_waves(n, &conflicts(c), instances)
}

#[test]
fn no_specs_no_waves() {
    assert!(waves(Vec::new(), &[], 3).is_empty());
}

#[test]
fn a_single_spec_is_a_plan() {
    assert_eq!(waves(nodes(&[("020", 20, &[])]), &[], 3), [["020"]]);
}

#[test]
fn priority_orders_within_and_across_waves() {
    let n = nodes(&[
        ("d", 40, &[]),
        ("b", 20, &[]),
        ("a", 10, &[]),
        ("c", 30, &[]),
        ("e", 20, &[]),
    ]);
    assert_eq!(
        waves(n, &[], 2),
        [vec!["a", "b"], vec!["e", "c"], vec!["d"]]
    );
}

#[test]
fn ties_break_on_order() {
    let n = nodes(&[("x", 1, &[]), ("y", 1, &[]), ("z", 1, &[])]);
    assert_eq!(waves(n, &[], 3), [["x", "y", "z"]]);
}

#[test]
fn dependencies_start_after_merge() {
    let n = nodes(&[
        ("010", 10, &[]),
        ("020", 20, &["010"]),
        ("030", 30, &["020", "outside"]),
        ("040", 40, &[]),
    ]);
    assert_eq!(
        waves(n, &[], 3),
        [vec!["010", "040"], vec!["020"], vec!["030"]]
    );
}

#[test]
fn overlaps_force_later_waves() {
    // The DESIGN.md example: 022 overlaps 020.
    let n = nodes(&[
        ("020", 20, &[]),
        ("021", 21, &[]),
        ("022", 22, &[]),
        ("023", 23, &[]),
    ]);
    assert_eq!(
        waves(n, &[("020", "022")], 3),
        [vec!["020", "021", "023"], vec!["022"]]
    );
}

#[test]
fn instances_limit_each_wave() {
    let n: Vec<Node> = (0..7).map(|i| node(&format!("{i}"), i, &[])).collect();
    let w = waves(n, &[], 3);
    assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(
        waves(nodes(&[("a", 1, &[]), ("b", 2, &[])]), &[], 0),
        [["a"], ["b"]]
    );
}

#[test]
fn chain_of_overlaps_stays_parallel() {
    // 1-2-3-4-5-6: a path of overlaps runs in three waves, not six.
    let n: Vec<Node> = (1..=6).map(|i| node(&format!("{i}"), i, &[])).collect();
    let c = [("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"), ("5", "6")];
    let w = waves(n, &c, 6);
    assert_eq!(w, [vec!["1", "4"], vec!["2", "5"], vec!["3", "6"]]);
}

#[test]
fn worse_spec_does_not_overtake_a_held_better_one() {
    // a runs; b (better than c) overlaps a and waits; c overlaps b only.
    // c must not start before b, or b would wait a second time.
    let n = nodes(&[("a", 1, &[]), ("b", 2, &[]), ("c", 3, &[]), ("d", 4, &[])]);
    let c = conflicts(&[("a", "b"), ("b", "c")]);
    let mut s = Scheduler::new(n, &c, 3);
    assert_eq!(s.start_ready(), ["a", "d"]);
    s.agent_done("a");
    assert!(s.start_ready().is_empty(), "b is held, c deferred behind b");
    s.settled("a", true);
    assert_eq!(s.start_ready(), ["b"]);
    assert_eq!(s.state_of("c"), Some(NodeState::Pending));
    s.agent_done("b");
    s.settled("b", true);
    assert_eq!(s.start_ready(), ["c"]);
}

#[test]
fn overlapped_spec_starts_after_settle_not_agent_exit() {
    let n = nodes(&[("a", 1, &[]), ("b", 2, &[])]);
    let mut s = Scheduler::new(n, &conflicts(&[("a", "b")]), 2);
    assert_eq!(s.start_ready(), ["a"]);
    s.agent_done("a");
    assert_eq!(s.state_of("a"), Some(NodeState::AwaitingSettle));
    assert!(s.start_ready().is_empty());
    assert!(!s.is_finished());
    s.settled("a", false);
    assert_eq!(
        s.start_ready(),
        ["b"],
        "a failed, but b does not depend on it"
    );
    s.agent_done("b");
    s.settled("b", true);
    assert!(s.is_finished());
    assert!(s.take_skipped().is_empty());
}

#[test]
fn free_slot_after_agent_exit_goes_to_the_next_ready_spec() {
    let n = nodes(&[("a", 1, &[]), ("b", 2, &[]), ("c", 3, &[])]);
    let mut s = Scheduler::new(n, &conflicts(&[("a", "b")]), 1);
    assert_eq!(s.start_ready(), ["a"]);
    s.agent_done("a");
    // b is held by unsettled a; c takes the free slot, and b is not deferred
    // by c because c ranks after it.
    assert_eq!(s.start_ready(), ["c"]);
    s.settled("a", true);
    assert!(s.start_ready().is_empty(), "the only slot is c's");
    s.agent_done("c");
    assert_eq!(s.start_ready(), ["b"]);
}

#[test]
fn failed_dependency_skips_dependents_transitively() {
    let n = nodes(&[
        ("020", 20, &[]),
        ("021", 21, &["020"]),
        ("022", 22, &["021"]),
        ("023", 23, &[]),
        ("024", 24, &["022", "023"]),
    ]);
    let mut s = Scheduler::new(n, &[], 3);
    assert_eq!(s.start_ready(), ["020", "023"]);
    s.agent_done("020");
    s.settled("020", false);
    let skipped = s.take_skipped();
    let ids: Vec<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["021", "022", "024"]);
    assert_eq!(skipped[0].1, "dependency 020 failed");
    assert!(skipped[1].1.contains("021") && skipped[1].1.contains("020 failed"));
    assert_eq!(s.state_of("024"), Some(NodeState::Skipped));
    assert!(s.take_skipped().is_empty());
    assert!(!s.is_finished());
    s.agent_done("023");
    s.settled("023", true);
    assert!(s.start_ready().is_empty());
    assert!(s.is_finished());
}

#[test]
fn dependency_cycle_does_not_hang() {
    let n = nodes(&[("a", 1, &["b"]), ("b", 2, &["a"]), ("c", 3, &[])]);
    assert_eq!(waves(n.clone(), &[], 3), [["c"]]);
    let mut s = Scheduler::new(n, &[], 3);
    assert_eq!(s.start_ready(), ["c"]);
    s.settled("c", true);
    assert!(s.start_ready().is_empty());
    assert_eq!(s.take_skipped().len(), 2);
    assert!(s.is_finished());
}

#[test]
fn plan_matches_a_run_where_everything_merges() {
    let n: Vec<Node> = (0..40)
        .map(|i| Node {
            id: format!("{i:03}"),
            priority: (i * 7 % 11) as i64,
            order: i,
            depends_on: if i % 5 == 4 {
                vec![format!("{:03}", i - 3)]
            } else {
                Vec::new()
            },
        })
        .collect();
    let c: Vec<(String, String)> = (0..40)
        .filter(|i| i % 3 == 0)
        .map(|i| (format!("{i:03}"), format!("{:03}", (i * 13 + 5) % 40)))
        .collect();
    let planned = plan_waves(n.clone(), &c, 4);
    let mut s = Scheduler::new(n, &c, 4);
    let mut ran = Vec::new();
    loop {
        let wave = s.start_ready();
        if wave.is_empty() {
            break;
        }
        // Agents end in reverse order, settles come in start order.
        for id in wave.iter().rev() {
            s.agent_done(id);
        }
        for id in &wave {
            s.settled(id, true);
        }
        ran.push(wave);
    }
    assert!(s.is_finished());
    assert_eq!(planned, ran);
    assert_eq!(planned.iter().map(Vec::len).sum::<usize>(), 40);
    // Nothing in a wave overlaps anything else in it.
    for wave in &planned {
        for (a, b) in &c {
            assert!(
                !(wave.contains(a) && wave.contains(b)),
                "{a} {b} in {wave:?}"
            );
        }
    }
}

#[test]
fn restore_puts_specs_back_as_the_journal_says() {
    use treefarm::schedule::Restored;
    let n = nodes(&[
        ("a", 1, &[]),
        ("b", 2, &["a"]),
        ("c", 3, &[]),
        ("d", 4, &[]),
        ("e", 5, &["d"]),
        ("f", 6, &[]),
    ]);
    let mut s = Scheduler::new(n, &conflicts(&[("c", "f")]), 2);
    s.restore("a", Restored::Settled { merged: true });
    s.restore("c", Restored::AwaitingSettle);
    s.restore("d", Restored::Settled { merged: false });
    s.restore("e", Restored::Settled { merged: false });
    assert_eq!(s.state_of("c"), Some(NodeState::AwaitingSettle));
    let skipped = s.take_skipped();
    assert_eq!(
        skipped,
        [("e".to_string(), "dependency d failed".to_string())]
    );
    // b's dependency is merged; f is held by the unsettled c.
    assert_eq!(s.start_ready(), ["b"]);
    s.restore("b", Restored::Running);
    s.settled("c", true);
    assert_eq!(s.start_ready(), ["f"]);
    s.settled("b", true);
    s.settled("f", true);
    assert!(s.is_finished());
}
