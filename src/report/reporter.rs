//! What consumes a run's events ([`Reporter`]), the JSON Lines reporter
//! behind `--json`, and a fan-out to several reporters.

use std::io::Write;
use std::path::Path;

use super::events::{Event, Summary};
use crate::state::RunRecord;

/// Something that consumes a run's events.
pub trait Reporter: Send {
    fn event(&mut self, event: &Event);
    /// The event with the time it was journalled at (`at_ms`, Unix ms), so
    /// that `--json` and `events.jsonl` carry the same stamp.
    fn event_at(&mut self, event: &Event, _at_ms: u64) {
        self.event(event);
    }
    /// Called on a timer while the run is live, to redraw progress.
    fn refresh(&mut self, _run: &RunRecord, _now_ms: u64) {}
    /// Called once at the end, after the `summary` event.
    fn finish(&mut self, _run: &RunRecord, _summary: &Summary) {}
    /// A note for people about what the coordinator does (recovery,
    /// signals): not an event, not in `--json`, silent with `-q`.
    fn note(&mut self, _text: &str) {}
}

/// `--json`: every event as one JSON line on the given writer (stdout).
pub struct JsonLinesReporter {
    out: Box<dyn Write + Send>,
}

impl JsonLinesReporter {
    pub fn new(out: Box<dyn Write + Send>) -> JsonLinesReporter {
        JsonLinesReporter { out }
    }
}

impl Reporter for JsonLinesReporter {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    fn event_at(&mut self, event: &Event, at_ms: u64) {
        if let Ok(value) = stamped(event, at_ms) {
            let _ = writeln!(self.out, "{value}");
            let _ = self.out.flush();
        }
    }
}

/// The event as JSON with its `at_ms`, as journalled and streamed. The
/// `summary` event is left as is: it is also `summary.json`, and the run
/// record holds when the run finished.
pub fn stamped(event: &Event, at_ms: u64) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(event)?;
    if let (Some(obj), false) = (value.as_object_mut(), matches!(event, Event::Summary(_))) {
        obj.insert("at_ms".into(), at_ms.into());
    }
    Ok(value)
}

/// Several reporters fed the same events.
#[derive(Default)]
pub struct Reporters(pub Vec<Box<dyn Reporter>>);

impl Reporter for Reporters {
    fn event(&mut self, event: &Event) {
        for r in &mut self.0 {
            r.event(event);
        }
    }
    fn event_at(&mut self, event: &Event, at_ms: u64) {
        for r in &mut self.0 {
            r.event_at(event, at_ms);
        }
    }
    fn refresh(&mut self, run: &RunRecord, now_ms: u64) {
        for r in &mut self.0 {
            r.refresh(run, now_ms);
        }
    }
    fn finish(&mut self, run: &RunRecord, summary: &Summary) {
        for r in &mut self.0 {
            r.finish(run, summary);
        }
    }
    fn note(&mut self, text: &str) {
        for r in &mut self.0 {
            r.note(text);
        }
    }
}

/// The last `n` lines of a (log) file, lossily decoded; empty when unreadable.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
