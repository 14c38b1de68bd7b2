//! A run as a story in time: one row per spec with bars for waiting,
//! planting, each agent attempt, commit, waiting to merge and the merge
//! itself (gate included), built from the journal's events (`events.jsonl`,
//! each stamped with `at_ms`) and `state.json`. Pure: data in, data out.
//!
//! Planting starts when the start interval and the concurrency window let
//! the spec go: its `planted` event carries how long the plant took
//! (`plant_ms`); the time before is waiting, and the part of it after the
//! spec could have started (the last event that could have freed it: run
//! start, an exit, a commit, a merge outcome, …) is waiting for the start
//! gate. Two moments the journal does not record are inferred:
//! - for journals without `plant_ms`, planting starts with that last event;
//! - the merge lane is serial, so a merge starts when its branch is ready and
//!   the previous merge outcome is journalled.

use std::collections::HashMap;

use serde_json::Value;

use crate::report::human::format_duration;
use crate::state::{InstanceState, RunRecord};

/// What a bar stands for. The names are the `data-kind` of the HTML bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Waiting,
    Planting,
    /// One agent attempt that succeeded.
    Attempt,
    /// One agent attempt that failed or timed out.
    AttemptFailed,
    Commit,
    MergeWait,
    Merge,
    Conflict,
    Refused,
}

impl BarKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BarKind::Waiting => "waiting",
            BarKind::Planting => "planting",
            BarKind::Attempt => "attempt",
            BarKind::AttemptFailed => "attempt-failed",
            BarKind::Commit => "commit",
            BarKind::MergeWait => "merge-wait",
            BarKind::Merge => "merge",
            BarKind::Conflict => "conflict",
            BarKind::Refused => "refused",
        }
    }
}

/// One span of time in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    pub start_ms: u64,
    pub end_ms: u64,
    /// What a hover shows besides the times.
    pub label: String,
}

/// A moment in a row with no duration (failed, skipped, kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub kind: &'static str,
    pub at_ms: u64,
    pub label: String,
}

/// One spec's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    /// 1-based wave: specs planted by the same trigger share a wave.
    pub wave: Option<usize>,
    /// 1-based position in the merge lane (merged, conflicted or refused).
    pub merge_order: Option<usize>,
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
    /// Sum of the agent attempts' durations.
    pub agent_ms: u64,
}

/// The whole run in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub start_ms: u64,
    pub end_ms: u64,
    pub rows: Vec<Row>,
    /// False for journals written before events carried `at_ms`: the bars
    /// then come from `state.json` alone (one bar per spec).
    pub timed_events: bool,
}

impl Timeline {
    pub fn wall_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    pub fn agent_ms(&self) -> u64 {
        self.rows.iter().map(|r| r.agent_ms).sum()
    }
}

fn kind(e: &Value) -> &str {
    e.get("event").and_then(Value::as_str).unwrap_or("")
}

fn id(e: &Value) -> Option<&str> {
    e.get("id").and_then(Value::as_str)
}

fn at(e: &Value) -> Option<u64> {
    e.get("at_ms").and_then(Value::as_u64)
}

/// Events that can free a slot or satisfy a dependency, and so start a spec.
fn can_trigger(kind: &str) -> bool {
    matches!(
        kind,
        "run_started"
            | "exited"
            | "committed"
            | "failed"
            | "timed_out"
            | "unchanged"
            | "merged"
            | "conflicted"
            | "refused"
            | "skipped"
    )
}

/// One spec's events as they come: the bars after planting are built in
/// journal order, so a conflict handed back to the agent shows its resolve
/// attempt, commit and second merge after the first outcome.
#[derive(Default)]
struct Seen {
    /// The last event that could have freed the spec before it was planted.
    ready_from: Option<u64>,
    planting_from: Option<u64>,
    planted: Option<u64>,
    first_attempt: Option<u64>,
    /// The attempt under way: (number, start).
    open: Option<(u32, u64)>,
    /// The next attempt resolves a conflict (`resolving` event).
    resolving: bool,
    /// End of the last attempt.
    last_end: Option<u64>,
    /// Committed and waiting for the merge lane since then.
    ready: Option<u64>,
    bars: Vec<Bar>,
    marks: Vec<Mark>,
    wave: Option<usize>,
    agent_ms: u64,
    /// Position of its last merge outcome among all merge outcomes.
    last_outcome: Option<usize>,
}

impl Seen {
    fn push(&mut self, kind: BarKind, start: u64, end: u64, label: String) {
        if end >= start {
            self.bars.push(Bar {
                kind,
                start_ms: start,
                end_ms: end,
                label,
            });
        }
    }

    fn attempt(&mut self, n: u32, start: u64, end: u64, result: &str) {
        self.agent_ms += end.saturating_sub(start);
        self.first_attempt.get_or_insert(start);
        let what = if std::mem::take(&mut self.resolving) {
            "resolve attempt"
        } else {
            "agent attempt"
        };
        let shown = if result.is_empty() { "running" } else { result };
        let kind = if result == "succeeded" {
            BarKind::Attempt
        } else {
            BarKind::AttemptFailed
        };
        self.push(kind, start, end, format!("{what} {n}: {shown}"));
        self.last_end = Some(end);
    }
}

/// Builds the timeline of `record` from its journalled `events`. `now_ms`
/// closes the bars of a run that has not finished.
pub fn build(record: &RunRecord, events: &[Value], now_ms: u64) -> Timeline {
    let timed_events = events.iter().any(|e| at(e).is_some());
    let run_start = events
        .iter()
        .find(|e| kind(e) == "run_started")
        .and_then(at)
        .unwrap_or(record.started_at_ms);
    let last_event = events.iter().filter_map(at).max().unwrap_or(run_start);
    let end_ms = record
        .finished_at_ms
        .unwrap_or_else(|| last_event.max(now_ms))
        .max(last_event)
        .max(run_start);
    if !timed_events {
        return from_record(record, run_start, end_ms);
    }

    let mut seen: HashMap<&str, Seen> = HashMap::new();
    let mut last_trigger = run_start;
    let mut wave = 0usize;
    let mut wave_trigger: Option<u64> = None;
    let mut merge_lane_free = run_start;
    let mut outcomes = 0usize;
    for e in events {
        let k = kind(e);
        let t = at(e).unwrap_or(last_trigger);
        if let Some(spec) = id(e) {
            let s = seen.entry(spec).or_default();
            let attempt_no = e.get("attempt").and_then(Value::as_u64).unwrap_or(1) as u32;
            match k {
                "planted" if s.planted.is_none() => {
                    let ready = last_trigger.min(t);
                    let began = e
                        .get("plant_ms")
                        .and_then(Value::as_u64)
                        .map(|ms| t.saturating_sub(ms).max(ready));
                    s.ready_from = Some(ready);
                    s.planting_from = Some(began.unwrap_or(ready));
                    s.planted = Some(t);
                    // Specs started by the same trigger form a wave.
                    if wave_trigger != Some(last_trigger) {
                        wave += 1;
                        wave_trigger = Some(last_trigger);
                    }
                    s.wave = Some(wave);
                }
                // A start journalled again (resume) keeps the first one.
                "started" if s.open.is_none_or(|o| o.0 != attempt_no) => {
                    s.open = Some((attempt_no, t));
                }
                "resolving" => s.resolving = true,
                "exited" => {
                    let elapsed = e.get("elapsed_ms").and_then(Value::as_u64).unwrap_or(0);
                    let result = e.get("result").and_then(Value::as_str).unwrap_or("");
                    let start = match s.open.take() {
                        Some((n, start)) if n == attempt_no => start,
                        _ => t.saturating_sub(elapsed),
                    };
                    s.attempt(attempt_no, start, t, result);
                }
                "committed" => {
                    let files = e.get("files").and_then(Value::as_array).map_or(0, Vec::len);
                    let commits = e.get("commits").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(from) = s.last_end {
                        s.push(
                            BarKind::Commit,
                            from,
                            t,
                            format!("commit: {commits} commit(s), {files} file(s)"),
                        );
                    }
                    s.ready = Some(t);
                }
                "merged" | "conflicted" | "refused" => {
                    let (kind, label) = match k {
                        "merged" => (BarKind::Merge, "merged".to_string()),
                        "conflicted" => (
                            BarKind::Conflict,
                            format!("conflict: {}", join_strs(e.get("paths"))),
                        ),
                        _ => (
                            BarKind::Refused,
                            format!(
                                "refused: {}",
                                e.get("reason").and_then(Value::as_str).unwrap_or("")
                            ),
                        ),
                    };
                    // The merge lane is serial: a merge starts when its
                    // branch is ready and the previous outcome is in.
                    let ready = s.ready.take().or(s.last_end);
                    let start = ready.unwrap_or(run_start).max(merge_lane_free).min(t);
                    if let Some(ready) = ready {
                        s.push(BarKind::MergeWait, ready, start, "waiting to merge".into());
                    }
                    s.push(kind, start, t, label);
                    outcomes += 1;
                    s.last_outcome = Some(outcomes);
                    merge_lane_free = t;
                }
                "failed" | "timed_out" | "unchanged" | "skipped" | "kept" => {
                    let label = e
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!("{k}: {r}"))
                        .unwrap_or_else(|| k.to_string());
                    let mark_kind = match k {
                        "failed" => "failed",
                        "timed_out" => "timed_out",
                        "unchanged" => "unchanged",
                        "skipped" => "skipped",
                        _ => "kept",
                    };
                    s.marks.push(Mark {
                        kind: mark_kind,
                        at_ms: t,
                        label,
                    });
                }
                _ => {}
            }
        }
        if can_trigger(k) {
            last_trigger = t;
        }
    }

    // The merge order: specs by their last merge outcome.
    let mut last_outcomes: Vec<(usize, &str)> = seen
        .iter()
        .filter_map(|(id, s)| s.last_outcome.map(|o| (o, *id)))
        .collect();
    last_outcomes.sort_unstable();
    let merge_order = |id: &str| {
        last_outcomes
            .iter()
            .position(|(_, m)| *m == id)
            .map(|p| p + 1)
    };

    let rows = record
        .instances
        .iter()
        .map(|inst| {
            let mut s = seen.remove(inst.id.as_str()).unwrap_or_default();
            let mut bars = Vec::new();
            let mut push = |kind: BarKind, start: u64, end: u64, label: String| {
                if end >= start {
                    bars.push(Bar {
                        kind,
                        start_ms: start,
                        end_ms: end,
                        label,
                    });
                }
            };
            if let Some(from) = s.planting_from {
                let ready = s.ready_from.unwrap_or(from).max(run_start);
                push(
                    BarKind::Waiting,
                    run_start,
                    from,
                    waiting_label(from.saturating_sub(run_start), from.saturating_sub(ready)),
                );
                let to = s
                    .first_attempt
                    .or(s.open.map(|o| o.1))
                    .unwrap_or(s.planted.unwrap_or(from))
                    .max(from);
                push(
                    BarKind::Planting,
                    from,
                    to,
                    "planting (worktree, branch, setup)".into(),
                );
            } else if !s.marks.is_empty() || inst.state == InstanceState::Pending {
                // Never planted: it waited for the whole of its life.
                let until = s.marks.first().map_or(end_ms, |m| m.at_ms);
                push(BarKind::Waiting, run_start, until, "waiting".into());
            }
            // An attempt still under way ends with the run's view.
            if let Some((n, start)) = s.open.take() {
                s.attempt(n, start, end_ms, "");
            } else if let (Some(t), true) = (s.ready, inst.state == InstanceState::Succeeded) {
                // Succeeded and waiting for a merge that has not happened.
                s.push(BarKind::MergeWait, t, end_ms, "waiting to merge".into());
            }
            bars.append(&mut s.bars);
            Row {
                id: inst.id.clone(),
                wave: s.wave,
                merge_order: merge_order(&inst.id),
                bars,
                marks: s.marks,
                agent_ms: s.agent_ms,
            }
        })
        .collect();
    Timeline {
        start_ms: run_start,
        end_ms,
        rows,
        timed_events,
    }
}

/// What a waiting bar of `total` ms says, `gate` ms of which came after the
/// spec could have started (the start interval or the concurrency window
/// held it back).
fn waiting_label(total: u64, gate: u64) -> String {
    if gate == 0 {
        return "waiting".into();
    }
    let before = total.saturating_sub(gate);
    let turn = if before > 0 {
        format!(
            "{} for its turn (dependencies, overlaps, a slot), then ",
            format_duration(before)
        )
    } else {
        String::new()
    };
    format!(
        "waiting {}: {turn}{} for the start gate (agent.start_interval, the concurrency window)",
        format_duration(total),
        format_duration(gate)
    )
}

/// A JSON list of strings as `a, b, c` (missing or empty: ``).
pub(crate) fn join_strs(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A journal without event times: one bar per spec from its start to its end.
fn from_record(record: &RunRecord, start_ms: u64, end_ms: u64) -> Timeline {
    let rows = record
        .instances
        .iter()
        .map(|inst| {
            let mut bars = Vec::new();
            let mut agent_ms = 0;
            if let Some(s) = inst.started_at_ms {
                let e = inst.ended_at_ms.unwrap_or(end_ms);
                agent_ms = e.saturating_sub(s);
                bars.push(Bar {
                    kind: BarKind::Waiting,
                    start_ms: start_ms.min(s),
                    end_ms: s,
                    label: "waiting".into(),
                });
                bars.push(Bar {
                    kind: if inst.state.is_failure() {
                        BarKind::AttemptFailed
                    } else {
                        BarKind::Attempt
                    },
                    start_ms: s,
                    end_ms: e.max(s),
                    label: format!("{} (attempts: {})", inst.state, inst.attempt),
                });
            }
            Row {
                id: inst.id.clone(),
                wave: None,
                merge_order: None,
                bars,
                marks: Vec::new(),
                agent_ms,
            }
        })
        .collect();
    Timeline {
        start_ms,
        end_ms,
        rows,
        timed_events: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InstanceRecord;
    use serde_json::json;

    fn record(ids: &[&str]) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            started_at_ms: 1000,
            finished_at_ms: Some(9000),
            instances: ids
                .iter()
                .map(|id| InstanceRecord {
                    id: id.to_string(),
                    state: InstanceState::Pruned,
                    ..InstanceRecord::default()
                })
                .collect(),
            ..RunRecord::default()
        }
    }

    #[test]
    fn bars_follow_the_events_and_the_merge_lane_is_serial() {
        let events = vec![
            json!({"event": "run_started", "at_ms": 1000}),
            json!({"event": "planted", "id": "a", "at_ms": 1100}),
            json!({"event": "planted", "id": "b", "at_ms": 1150}),
            json!({"event": "started", "id": "a", "attempt": 1, "at_ms": 1200}),
            json!({"event": "started", "id": "b", "attempt": 1, "at_ms": 1200}),
            json!({"event": "exited", "id": "a", "attempt": 1, "result": "failed", "elapsed_ms": 800, "at_ms": 2000}),
            json!({"event": "retrying", "id": "a", "attempt": 2, "at_ms": 2000}),
            json!({"event": "started", "id": "a", "attempt": 2, "at_ms": 2100}),
            json!({"event": "exited", "id": "b", "attempt": 1, "result": "succeeded", "elapsed_ms": 1800, "at_ms": 3000}),
            json!({"event": "committed", "id": "b", "commits": 1, "files": ["x"], "at_ms": 3100}),
            json!({"event": "exited", "id": "a", "attempt": 2, "result": "succeeded", "elapsed_ms": 1000, "at_ms": 3100}),
            json!({"event": "committed", "id": "a", "commits": 1, "files": ["y"], "at_ms": 3200}),
            json!({"event": "merged", "id": "b", "at_ms": 4000}),
            json!({"event": "conflicted", "id": "a", "paths": ["y"], "at_ms": 4500}),
            json!({"event": "planted", "id": "c", "at_ms": 4600}),
        ];
        let t = build(&record(&["a", "b", "c"]), &events, 0);
        let kinds =
            |i: usize| -> Vec<&str> { t.rows[i].bars.iter().map(|b| b.kind.as_str()).collect() };
        assert_eq!(
            kinds(0),
            [
                "waiting",
                "planting",
                "attempt-failed",
                "attempt",
                "commit",
                "merge-wait",
                "conflict"
            ]
        );
        assert_eq!(
            kinds(1),
            [
                "waiting",
                "planting",
                "attempt",
                "commit",
                "merge-wait",
                "merge"
            ]
        );
        // b merged first: a waits for the lane until b's merge is journalled.
        let a_merge = t.rows[0].bars.last().expect("bar");
        assert_eq!((a_merge.start_ms, a_merge.end_ms), (4000, 4500));
        assert_eq!(t.rows[1].merge_order, Some(1));
        assert_eq!(t.rows[0].merge_order, Some(2));
        assert_eq!(
            (t.rows[0].wave, t.rows[1].wave, t.rows[2].wave),
            (Some(1), Some(1), Some(2))
        );
        // c was planted after the conflict freed the lane.
        assert_eq!(t.rows[2].bars[1].start_ms, 4500);
        assert_eq!(t.agent_ms(), 800 + 1000 + 1800);
        assert_eq!(t.wall_ms(), 8000);
    }

    #[test]
    fn time_held_back_by_the_start_gate_is_waiting_not_planting() {
        // Both freed by the run's start; b's plant was let go a second
        // later by the start interval and took 100 ms.
        let events = vec![
            json!({"event": "run_started", "at_ms": 1000}),
            json!({"event": "planted", "id": "a", "plant_ms": 80, "at_ms": 1080}),
            json!({"event": "started", "id": "a", "attempt": 1, "at_ms": 1100}),
            json!({"event": "planted", "id": "b", "plant_ms": 100, "at_ms": 2100}),
            json!({"event": "started", "id": "b", "attempt": 1, "at_ms": 2120}),
        ];
        let t = build(&record(&["a", "b"]), &events, 0);
        let bars = |i: usize| -> Vec<(&str, u64, u64)> {
            t.rows[i]
                .bars
                .iter()
                .map(|b| (b.kind.as_str(), b.start_ms, b.end_ms))
                .collect()
        };
        assert_eq!(
            bars(1)[..2],
            [("waiting", 1000, 2000), ("planting", 2000, 2120)]
        );
        assert!(
            t.rows[1].bars[0].label.contains("1.0s for the start gate"),
            "{}",
            t.rows[1].bars[0].label
        );
        assert_eq!(
            bars(0)[..2],
            [("waiting", 1000, 1000), ("planting", 1000, 1100)]
        );
        assert_eq!(t.rows[0].bars[0].label, "waiting");
        // A journal from before `plant_ms`: planting from the trigger.
        let mut old = events.clone();
        for e in &mut old {
            e.as_object_mut().expect("object").remove("plant_ms");
        }
        let t = build(&record(&["a", "b"]), &old, 0);
        assert_eq!(t.rows[1].bars[1].start_ms, 1000);
    }

    #[test]
    fn a_conflict_handed_back_shows_the_resolve_attempt_and_the_second_merge() {
        let events = vec![
            json!({"event": "run_started", "at_ms": 1000}),
            json!({"event": "planted", "id": "a", "plant_ms": 50, "at_ms": 1050}),
            json!({"event": "started", "id": "a", "attempt": 1, "at_ms": 1100}),
            json!({"event": "exited", "id": "a", "attempt": 1, "result": "succeeded", "elapsed_ms": 900, "at_ms": 2000}),
            json!({"event": "committed", "id": "a", "commits": 1, "files": ["g"], "at_ms": 2100}),
            json!({"event": "conflicted", "id": "a", "paths": ["g"], "at_ms": 2300}),
            json!({"event": "resolving", "id": "a", "attempt": 1, "paths": ["g"], "at_ms": 2300}),
            json!({"event": "started", "id": "a", "attempt": 2, "at_ms": 2400}),
            json!({"event": "exited", "id": "a", "attempt": 2, "result": "succeeded", "elapsed_ms": 100, "at_ms": 2500}),
            json!({"event": "committed", "id": "a", "commits": 2, "files": ["g"], "at_ms": 2600}),
            json!({"event": "merged", "id": "a", "at_ms": 2900}),
        ];
        let t = build(&record(&["a"]), &events, 0);
        let row = &t.rows[0];
        let kinds: Vec<&str> = row.bars.iter().map(|b| b.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "waiting",
                "planting",
                "attempt",
                "commit",
                "merge-wait",
                "conflict",
                "attempt",
                "commit",
                "merge-wait",
                "merge"
            ]
        );
        assert_eq!(row.bars[6].label, "resolve attempt 2: succeeded");
        assert_eq!((row.bars[9].start_ms, row.bars[9].end_ms), (2600, 2900));
        assert_eq!(row.agent_ms, 900 + 100);
        assert_eq!(row.merge_order, Some(1));
    }

    #[test]
    fn journals_without_times_fall_back_to_the_record() {
        let mut rec = record(&["a"]);
        rec.instances[0].started_at_ms = Some(2000);
        rec.instances[0].ended_at_ms = Some(5000);
        let t = build(&rec, &[json!({"event": "planted", "id": "a"})], 0);
        assert!(!t.timed_events);
        assert_eq!(t.rows[0].agent_ms, 3000);
    }
}
