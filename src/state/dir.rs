//! The on-disk layout under `<git-common-dir>/treefarm/` and the durable
//! writes that keep it consistent across a `kill -9`:
//!
//! ```text
//! lock
//! runs/<run-id>/state.json        the snapshot, atomic: tmp + fsync + rename + fsync(dir)
//! runs/<run-id>/state.changes.jsonl  commits since the snapshot, one line each + fsync
//! runs/<run-id>/events.jsonl      one JSON line per event, O_APPEND + fsync
//! runs/<run-id>/summary.json      atomic like state.json
//! runs/<run-id>/logs/<id>.log
//! runs/<run-id>/instances/<id>/{status.json,exit_code,prompt.md,gate.log}
//! ```

use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::InputError;

use super::atomic::{sync_dir, to_json, write_atomic};
use super::changes::{self, remove_log, StateWriter, LOG_FILE};
use super::error::StateError;
use super::record::{RunRecord, RunState};
use crate::hooks::{inject_write_error, injected_disk_full};

const RUNS: &str = "runs";
const STATE_FILE: &str = "state.json";
const SUMMARY_FILE: &str = "summary.json";
const EVENTS_FILE: &str = "events.jsonl";

/// `<git-common-dir>/treefarm`: the lock and every run's journal.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory of the repository whose common git dir is
    /// `common_dir`. Nothing is created until a run or the lock needs it.
    pub fn new(common_dir: &Path) -> StateDir {
        StateDir {
            root: common_dir.join("treefarm"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<state>/lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// `<state>/runs`.
    pub fn runs_path(&self) -> PathBuf {
        self.root.join(RUNS)
    }

    /// A fresh run id, `YYYYMMDD-HHMMSS-xxxx` (UTC), where `xxxx` is four hex
    /// digits: the millisecond in its high bits (so ids sort by creation time)
    /// and random low bits (so two processes rarely pick the same one). The
    /// id sorts after every existing run and names no existing directory.
    pub fn new_run_id(&self) -> String {
        let now = time::OffsetDateTime::now_utc();
        let suffix = (u32::from(now.millisecond()) << 6) | (random_u32() & 0x3f);
        let mut id = format!("{}-{suffix:04x}", format_stamp(now.unix_timestamp()));
        if let Some(last) = self.runs().unwrap_or_default().pop() {
            if id.as_str() <= last.as_str() {
                // Same millisecond as the newest run, or a clock that went
                // backwards: follow the newest run so the order on disk
                // stays the order of creation.
                id = next_after(&last);
            }
        }
        while self.runs_path().join(&id).exists() {
            id = next_after(&id);
        }
        id
    }

    /// Creates `runs/<run_id>/` (with `logs/` and `instances/`). Fails if the
    /// run already exists, so two coordinators never share a run directory.
    pub fn create_run(&self, run_id: &str) -> Result<RunDir, StateError> {
        let runs = self.runs_path();
        validate_run_id(run_id, &runs)?;
        create_dir_all(&runs)?;
        let path = runs.join(run_id);
        fs::create_dir(&path).map_err(|e| StateError::io("create", &path, e))?;
        create_dir_all(&path.join("logs"))?;
        create_dir_all(&path.join("instances"))?;
        // The run directory itself must survive a crash, or the lock would
        // name a run nobody can find.
        sync_dir(&runs)?;
        sync_dir(&self.root)?;
        Ok(RunDir {
            path,
            run_id: run_id.to_string(),
        })
    }

    /// The existing run `run_id`; an unknown id is a user error listing the
    /// most recent ids.
    pub fn open_run(&self, run_id: &str) -> Result<RunDir, StateError> {
        let runs = self.runs_path();
        validate_run_id(run_id, &runs)?;
        let path = runs.join(run_id);
        if path.is_dir() {
            return Ok(RunDir {
                path,
                run_id: run_id.to_string(),
            });
        }
        let known = self.runs()?;
        let hint = if known.is_empty() {
            "no run has been recorded in this repository yet; start one with `treefarm run`"
                .to_string()
        } else {
            let recent: Vec<&str> = known.iter().rev().take(5).map(String::as_str).collect();
            format!("recent runs (newest first): {}", recent.join(", "))
        };
        Err(StateError::UnknownRun {
            run_id: run_id.to_string(),
            source: InputError::new(format!("no run `{run_id}` in `{}`", runs.display()))
                .with_hint(hint),
            path,
        })
    }

    /// Every run id, oldest first (ids sort by creation time).
    pub fn runs(&self) -> Result<Vec<String>, StateError> {
        let runs = self.runs_path();
        let entries = match fs::read_dir(&runs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("list", &runs, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("list", &runs, e))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                if !name.starts_with('.') {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The newest run id with a journal, if any. A run killed before its
    /// first `state.json` was written started nothing and is skipped.
    pub fn latest_run(&self) -> Result<Option<String>, StateError> {
        Ok(self
            .runs()?
            .into_iter()
            .rev()
            .find(|id| self.runs_path().join(id).join(STATE_FILE).exists()))
    }

    /// The newest run that did not finish: its record says `interrupted`, or
    /// `running` while its coordinator (pid and start time) is dead. Runs
    /// without a `state.json` (killed before the first write) are skipped; a
    /// corrupt one is an error naming it.
    pub fn latest_unfinished(&self) -> Result<Option<String>, StateError> {
        for id in self.runs()?.into_iter().rev() {
            let dir = RunDir {
                path: self.runs_path().join(&id),
                run_id: id.clone(),
            };
            if !dir.state_path().exists() {
                continue;
            }
            let record = dir.read_state()?;
            if record.effective_state() == RunState::Interrupted {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

/// One run's directory, `runs/<run-id>/`.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    run_id: String,
}

impl RunDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// `runs/<run-id>/state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    /// `runs/<run-id>/events.jsonl`.
    pub fn events_path(&self) -> PathBuf {
        self.path.join(EVENTS_FILE)
    }

    /// `runs/<run-id>/summary.json`.
    pub fn summary_path(&self) -> PathBuf {
        self.path.join(SUMMARY_FILE)
    }

    /// `runs/<run-id>/logs/<id>.log`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.path.join("logs").join(format!("{id}.log"))
    }

    /// `runs/<run-id>/instances/<id>/`, created if missing (best effort: a
    /// failure shows up as a clear error when the first file is written
    /// there; use [`RunDir::create_instance_dir`] to get it now).
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        let dir = self.path.join("instances").join(id);
        if !dir.is_dir() {
            let _ = fs::create_dir_all(&dir);
        }
        dir
    }

    /// Like [`RunDir::instance_dir`], reporting a failure to create it.
    pub fn create_instance_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        let dir = self.path.join("instances").join(id);
        create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The agent's status file (`TREEFARM_STATUS_FILE`).
    pub fn status_path(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("status.json")
    }

    /// Where the runner records the agent's exit code as soon as it is known.
    pub fn exit_path(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("exit_code")
    }

    /// The declared paths and globs of instance `id`, one per line
    /// (`TREEFARM_FILES_FILE`).
    pub fn files_path(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("files.txt")
    }

    /// The prompt given to the agent.
    pub fn prompt_path(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("prompt.md")
    }

    /// The output of the merge gate for this instance.
    pub fn gate_log_path(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("gate.log")
    }

    /// `runs/<run-id>/state.changes.jsonl`: the commits since the snapshot.
    pub fn changes_path(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    /// Writes the whole record as the snapshot `state.json`, durably and
    /// atomically (`state.json.tmp` written and fsynced, renamed over
    /// `state.json`, the directory fsynced), then removes the change log it
    /// supersedes. On any error the previous journal is intact and the tmp
    /// file is removed. A run's coordinator writes through a
    /// [`StateWriter`] instead ([`RunDir::state_writer`]).
    pub fn write_state(&self, run: &RunRecord) -> Result<(), StateError> {
        let path = self.state_path();
        let bytes = to_json(run, &path)?;
        write_atomic(&path, &bytes, inject_write_error("state"), "state")?;
        remove_log(&self.changes_path())
    }

    /// The writer of this run's record: each commit appends what changed to
    /// the change log, compacting into `state.json` as it grows.
    pub fn state_writer(&self) -> StateWriter {
        StateWriter::new(self.state_path())
    }

    /// The run's record: the snapshot `state.json` plus the commits of the
    /// change log that follows it (the one way to read a journal). A corrupt
    /// file is an error naming it.
    pub fn read_state(&self) -> Result<RunRecord, StateError> {
        changes::read(&self.state_path(), &self.changes_path())
    }

    /// Appends one event as one JSON line (`O_APPEND`, then fsync). If a
    /// previous crash left a partial last line, it is terminated first so the
    /// new event stays parseable.
    pub fn append_event(&self, event: &serde_json::Value) -> Result<(), StateError> {
        self.append_events(std::slice::from_ref(event))
    }

    /// Appends several events with one write and one fsync (group commit).
    pub fn append_events(&self, events: &[serde_json::Value]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        let path = self.events_path();
        let mut line = Vec::new();
        for event in events {
            serde_json::to_writer(&mut line, event).map_err(|source| StateError::Serialize {
                path: path.clone(),
                source,
            })?;
            line.push(b'\n');
        }
        let mut write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)?;
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(len - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    line.insert(0, b'\n');
                }
            }
            if inject_write_error("events") {
                return Err(injected_disk_full());
            }
            // One write call: O_APPEND makes it land whole at the end.
            file.write_all(&line)?;
            file.sync_data()
        };
        write().map_err(|e| StateError::io("append to", &path, e))
    }

    /// Reads `events.jsonl`. A truncated last line (a crash mid-append) is
    /// skipped; a corrupt line elsewhere is an error naming the file.
    pub fn read_events(&self) -> Result<Vec<serde_json::Value>, StateError> {
        let path = self.events_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("read", &path, e)),
        };
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut events = Vec::with_capacity(lines.len());
        for (n, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(event) => events.push(event),
                Err(_) if n + 1 == lines.len() && !complete => {}
                // A line cut short by a crash and then terminated by the
                // next append: skip it, it never was a whole event.
                Err(e) if e.is_eof() => {}
                Err(e) => {
                    return Err(StateError::corrupt(
                        &path,
                        e,
                        Some(format!("line {} is not a JSON event", n + 1)),
                    ))
                }
            }
        }
        Ok(events)
    }

    /// Writes `summary.json` atomically, like [`RunDir::write_state`].
    pub fn write_summary(&self, summary: &serde_json::Value) -> Result<(), StateError> {
        let path = self.summary_path();
        let bytes = to_json(summary, &path)?;
        write_atomic(&path, &bytes, inject_write_error("summary"), "summary")
    }
}

fn create_dir_all(path: &Path) -> Result<(), StateError> {
    fs::create_dir_all(path).map_err(|e| StateError::io("create", path, e))
}

/// Run ids become directory names: refuse anything that could name another
/// directory.
fn validate_run_id(run_id: &str, runs: &Path) -> Result<(), StateError> {
    let ok = !run_id.is_empty()
        && !run_id.starts_with('.')
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(StateError::UnknownRun {
        run_id: run_id.to_string(),
        path: runs.join(run_id),
        source: InputError::new(format!("`{run_id}` is not a run id")).with_hint(
            "run ids look like `20261120-214800-3f2a`; `treefarm status` shows the latest",
        ),
    })
}

/// The smallest id of our shape that sorts after `id`: the hex suffix plus
/// one, or `id` with `-1` appended when the suffix cannot grow.
fn next_after(id: &str) -> String {
    match id.rsplit_once('-') {
        Some((prefix, hex)) if hex.len() == 4 => match u32::from_str_radix(hex, 16) {
            Ok(n) if n < 0xffff => format!("{prefix}-{:04x}", n + 1),
            _ => format!("{id}-1"),
        },
        _ => format!("{id}-1"),
    }
}

fn format_stamp(unix_seconds: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Random bits without a new dependency: std's per-process random hash keys
/// mixed with the pid and the clock.
fn random_u32() -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 16) as u32
}
