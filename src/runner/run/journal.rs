//! The run's journal with group commit: changes and events of one turn of
//! the dispatcher's loop are written together — the pending events with one
//! fsync of `events.jsonl`, then the record's changes with one fsync of the
//! change log (or, when it is due, a compaction into `state.json`; see
//! `state::StateWriter`) — and always before anything is done that depends
//! on them.

use std::sync::Arc;

use crate::runner::error::RunnerError;
use crate::state::{crash_point, RunDir, RunRecord, StateWriter};

/// What the dispatcher has changed since the last commit.
pub struct Journal {
    dir: Arc<RunDir>,
    /// Appends the record's changes; its first commit is a compaction.
    state: StateWriter,
    /// The record changed since the last write.
    dirty: bool,
    /// Only the progress of an agent changed (written, but not a transition).
    progress_dirty: bool,
    /// Events reported but not yet appended to `events.jsonl`.
    unjournalled: Vec<serde_json::Value>,
    /// An agent start is among the unjournalled changes (crash point).
    start_unjournalled: bool,
}

impl Journal {
    pub fn new(dir: Arc<RunDir>) -> Journal {
        Journal {
            state: dir.state_writer(),
            dir,
            dirty: false,
            progress_dirty: false,
            unjournalled: Vec::new(),
            start_unjournalled: false,
        }
    }

    /// The record changed: the next commit writes it.
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// An agent's progress changed: the next commit writes the record.
    pub fn progressed(&mut self) {
        self.progress_dirty = true;
    }

    /// An agent start waits for the next commit (the `agents-running` crash
    /// point fires once it is durable).
    pub fn agent_started(&mut self) {
        self.start_unjournalled = true;
    }

    /// An event (stamped) for `events.jsonl`, appended at the next commit.
    pub fn event(&mut self, value: serde_json::Value) {
        self.unjournalled.push(value);
    }

    /// Writes what changed: pending events with one fsync, then the
    /// record's changes (the instances it handed out since the last commit,
    /// the run-level fields that changed) with one more. A failure here is fatal: acting on a transition that is
    /// not journalled would break crash safety.
    pub fn commit(&mut self, record: &RunRecord) -> Result<(), RunnerError> {
        if !self.unjournalled.is_empty() {
            self.dir
                .append_events(&self.unjournalled)
                .map_err(RunnerError::AppendEvents)?;
            self.unjournalled.clear();
        }
        if self.dirty || self.progress_dirty {
            self.state.commit(record).map_err(RunnerError::WriteState)?;
            self.dirty = false;
            self.progress_dirty = false;
        }
        if std::mem::take(&mut self.start_unjournalled) {
            crash_point("agents-running");
        }
        Ok(())
    }
}
