//! A run as a story in time: one row per spec with bars for waiting,
//! planting, each agent attempt, commit, waiting to merge and the merge
//! itself (gate included), built from the journal's events (`events.jsonl`,
//! each stamped with `at_ms`) and `state.json`. Pure: data in, data out.
//!
//! Two moments the journal does not record are inferred:
//! - planting starts with the last event that could have freed the spec
//!   (run start, an exit, a commit, a merge outcome, …) before its `planted`;
//! - the merge lane is serial, so a merge starts when its branch is ready and
//!   the previous merge outcome is journalled.

use std::collections::HashMap;

use serde_json::Value;

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
            | "merged"
            | "conflicted"
            | "refused"
            | "skipped"
    )
}

#[derive(Default)]
struct Seen {
    planting_from: Option<u64>,
    planted: Option<u64>,
    /// (attempt, start, end, result)
    attempts: Vec<(u32, u64, Option<u64>, String)>,
    committed: Option<(u64, String)>,
    outcome: Option<(&'static str, u64, String)>,
    marks: Vec<Mark>,
    wave: Option<usize>,
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
    let mut merge_order: Vec<String> = Vec::new();
    let mut merge_starts: HashMap<String, u64> = HashMap::new();
    for e in events {
        let k = kind(e);
        let t = at(e).unwrap_or(last_trigger);
        if let Some(spec) = id(e) {
            let s = seen.entry(spec).or_default();
            match k {
                "planted" if s.planted.is_none() => {
                    s.planting_from = Some(last_trigger.min(t));
                    s.planted = Some(t);
                    // Specs started by the same trigger form a wave.
                    if wave_trigger != Some(last_trigger) {
                        wave += 1;
                        wave_trigger = Some(last_trigger);
                    }
                    s.wave = Some(wave);
                }
                "started" => {
                    let n = e.get("attempt").and_then(Value::as_u64).unwrap_or(1) as u32;
                    if !s.attempts.iter().any(|a| a.0 == n) {
                        s.attempts.push((n, t, None, String::new()));
                    }
                }
                "exited" => {
                    let n = e.get("attempt").and_then(Value::as_u64).unwrap_or(1) as u32;
                    let elapsed = e.get("elapsed_ms").and_then(Value::as_u64).unwrap_or(0);
                    let result = e
                        .get("result")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    match s.attempts.iter_mut().find(|a| a.0 == n) {
                        Some(a) => {
                            a.2 = Some(t);
                            a.3 = result;
                        }
                        None => {
                            s.attempts
                                .push((n, t.saturating_sub(elapsed), Some(t), result));
                        }
                    }
                }
                "committed" => {
                    let files = e.get("files").and_then(Value::as_array).map_or(0, Vec::len);
                    let commits = e.get("commits").and_then(Value::as_u64).unwrap_or(0);
                    s.committed = Some((t, format!("{commits} commit(s), {files} file(s)")));
                }
                "merged" | "conflicted" | "refused" => {
                    let (bar, label) = match k {
                        "merged" => ("merged", "merged".to_string()),
                        "conflicted" => (
                            "conflicted",
                            format!("conflict: {}", join_strs(e.get("paths"))),
                        ),
                        _ => (
                            "refused",
                            format!(
                                "refused: {}",
                                e.get("reason").and_then(Value::as_str).unwrap_or("")
                            ),
                        ),
                    };
                    if s.outcome.is_none() {
                        let ready = s
                            .committed
                            .as_ref()
                            .map(|c| c.0)
                            .or_else(|| s.attempts.iter().filter_map(|a| a.2).max())
                            .unwrap_or(run_start);
                        merge_starts.insert(spec.to_string(), ready.max(merge_lane_free).min(t));
                        s.outcome = Some((bar, t, label));
                        merge_order.push(spec.to_string());
                    }
                    merge_lane_free = t;
                }
                "failed" | "skipped" | "kept" => {
                    let label = e
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!("{k}: {r}"))
                        .unwrap_or_else(|| k.to_string());
                    let mark_kind = match k {
                        "failed" => "failed",
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

    let rows = record
        .instances
        .iter()
        .map(|inst| {
            let s = seen.remove(inst.id.as_str()).unwrap_or_default();
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
            let first_attempt = s.attempts.iter().map(|a| a.1).min();
            if let Some(from) = s.planting_from {
                push(BarKind::Waiting, run_start, from, "waiting".into());
                let to = first_attempt.unwrap_or(s.planted.unwrap_or(from)).max(from);
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
            let mut agent_ms = 0;
            let mut last_end = None;
            let mut attempts = s.attempts.clone();
            attempts.sort_by_key(|a| a.0);
            for (n, start, end, result) in &attempts {
                let end = end.unwrap_or(end_ms);
                agent_ms += end.saturating_sub(*start);
                let ok = result == "succeeded";
                let shown = if result.is_empty() { "running" } else { result };
                push(
                    if ok {
                        BarKind::Attempt
                    } else {
                        BarKind::AttemptFailed
                    },
                    *start,
                    end,
                    format!("agent attempt {n}: {shown}"),
                );
                last_end = Some(end);
            }
            if let (Some((t, label)), Some(from)) = (&s.committed, last_end) {
                push(BarKind::Commit, from, *t, format!("commit: {label}"));
            }
            if let Some((outcome, t, label)) = &s.outcome {
                let ready = s.committed.as_ref().map(|c| c.0).or(last_end);
                let start = merge_starts.get(&inst.id).copied().unwrap_or(*t);
                if let Some(ready) = ready {
                    push(BarKind::MergeWait, ready, start, "waiting to merge".into());
                }
                let kind = match *outcome {
                    "merged" => BarKind::Merge,
                    "conflicted" => BarKind::Conflict,
                    _ => BarKind::Refused,
                };
                push(kind, start, *t, label.clone());
            } else if let (Some((t, _)), true) =
                (&s.committed, inst.state == InstanceState::Succeeded)
            {
                // Succeeded and waiting for a merge that has not happened.
                push(BarKind::MergeWait, *t, end_ms, "waiting to merge".into());
            }
            let merge_order = merge_order
                .iter()
                .position(|m| m == &inst.id)
                .map(|p| p + 1);
            Row {
                id: inst.id.clone(),
                wave: s.wave,
                merge_order,
                bars,
                marks: s.marks,
                agent_ms,
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

fn join_strs(v: Option<&Value>) -> String {
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
    fn journals_without_times_fall_back_to_the_record() {
        let mut rec = record(&["a"]);
        rec.instances[0].started_at_ms = Some(2000);
        rec.instances[0].ended_at_ms = Some(5000);
        let t = build(&rec, &[json!({"event": "planted", "id": "a"})], 0);
        assert!(!t.timed_events);
        assert_eq!(t.rows[0].agent_ms, 3000);
    }
}
