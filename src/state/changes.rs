//! The change log beside `state.json`: what a commit changed, appended as
//! one line, so a journal write costs what the event changed and not the
//! size of the run (DESIGN.md, State).
//!
//! ```text
//! state.json          the snapshot: a whole RunRecord, written atomically
//! state.changes.jsonl line 1: the header naming the snapshot it follows
//!                     (its length and CRC-32); then one line per commit:
//!                     {"run": {field: RFC 6902 patch of what changed},
//!                      "instances": [whole records that changed]}
//! ```
//!
//! A log applies only to the exact snapshot its header names, so a crash
//! anywhere in a compaction (new snapshot renamed, old log still there)
//! can neither replay a stale log nor lose a committed change. A last line
//! without its newline (a kill mid-append) is ignored by readers; the next
//! writer starts a new log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::atomic::{to_json, write_atomic};
use super::error::StateError;
use super::record::{InstanceRecord, RunRecord, RunState};
use crate::hooks::{crash_point, inject_write_error, injected_disk_full, CRASH_AT_ENV};

/// The change log's file name, beside `state.json`.
pub(crate) const LOG_FILE: &str = "state.changes.jsonl";

/// The log's first line: which snapshot it follows.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    /// Counts compactions of this run's journal (for people; the snapshot is
    /// named by its length and checksum).
    generation: u64,
    base_len: u64,
    base_crc32: u32,
}

impl Header {
    fn of(generation: u64, snapshot: &[u8]) -> Header {
        Header {
            generation,
            base_len: snapshot.len() as u64,
            base_crc32: crc32fast::hash(snapshot),
        }
    }

    fn names(&self, snapshot: &[u8]) -> bool {
        self.base_len == snapshot.len() as u64 && self.base_crc32 == crc32fast::hash(snapshot)
    }
}

/// One commit's changes.
#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    run: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    instances: Vec<InstanceRecord>,
}

/// The run-level fields (everything but `options`, written once per
/// snapshot, and `instances`) as JSON values: a commit writes, for each
/// field that changed, a patch from its last value — so a field that grows
/// with the run (the merge queue's commits, the spending per spec) costs
/// what was added, not its size. A field added to [`RunRecord`] must be
/// listed here and in [`apply_run_field`] (the test
/// `head_lists_every_run_level_field` fails otherwise).
fn head(run: &RunRecord) -> Result<Vec<(&'static str, serde_json::Value)>, serde_json::Error> {
    run_fields(run, &mut |_, field| field.to_value())
}

/// Each run-level field of `run`, named, through `f` (with the field's
/// position): the one list of them, for [`head`] and the writer's checksums.
fn run_fields<T>(
    run: &RunRecord,
    f: &mut impl FnMut(usize, &dyn FieldValue) -> Result<T, serde_json::Error>,
) -> Result<Vec<(&'static str, T)>, serde_json::Error> {
    let fields: [(&'static str, &dyn FieldValue); 11] = [
        ("run_id", &run.run_id),
        ("state", &run.state),
        ("coordinator_pid", &run.coordinator_pid),
        ("coordinator_start", &run.coordinator_start),
        ("started_at_ms", &run.started_at_ms),
        ("finished_at_ms", &run.finished_at_ms),
        ("pacing", &run.pacing),
        ("spending", &run.spending),
        ("budget_reached", &run.budget_reached),
        ("merge_queue", &run.merge_queue),
        ("slurm", &run.slurm),
    ];
    fields
        .into_iter()
        .enumerate()
        .map(|(i, (name, field))| Ok((name, f(i, field)?)))
        .collect()
}

/// A run-level field's value, to turn into JSON or to checksum.
trait FieldValue {
    fn to_value(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// A 64-bit hash (SipHash) of the value's JSON and its length,
    /// computed as it is written (nothing built in memory): a commit diffs
    /// only the fields whose hash changed, so a field that grows with the
    /// run (the merge queue's commits) costs a pass over its bytes when it
    /// did not change, not a tree of values and a diff.
    fn digest(&self) -> Result<(u64, u64), serde_json::Error>;
}

impl<T: Serialize> FieldValue for T {
    fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    fn digest(&self) -> Result<(u64, u64), serde_json::Error> {
        use std::hash::Hasher;
        struct Digest(std::hash::DefaultHasher, u64);
        impl Write for Digest {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf);
                self.1 += buf.len() as u64;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut digest = Digest(std::hash::DefaultHasher::new(), 0);
        serde_json::to_writer(&mut digest, self)?;
        Ok((digest.0.finish(), digest.1))
    }
}

/// The digest of each run-level field (see [`FieldValue::digest`]).
fn head_digest(run: &RunRecord) -> Result<Vec<(u64, u64)>, serde_json::Error> {
    Ok(run_fields(run, &mut |_, field| field.digest())?
        .into_iter()
        .map(|(_, crc)| crc)
        .collect())
}

/// Sets one run-level field from a log line. A field this version does not
/// know (written by a newer one) is ignored, as in `state.json`.
fn apply_run_field(
    run: &mut RunRecord,
    key: &str,
    value: serde_json::Value,
) -> Result<(), serde_json::Error> {
    use serde_json::from_value as v;
    match key {
        "run_id" => run.run_id = v(value)?,
        "state" => run.state = v(value)?,
        "coordinator_pid" => run.coordinator_pid = v(value)?,
        "coordinator_start" => run.coordinator_start = v(value)?,
        "started_at_ms" => run.started_at_ms = v(value)?,
        "finished_at_ms" => run.finished_at_ms = v(value)?,
        "pacing" => run.pacing = v(value)?,
        "spending" => run.spending = v(value)?,
        "budget_reached" => run.budget_reached = v(value)?,
        "merge_queue" => run.merge_queue = v(value)?,
        "slurm" => run.slurm = v(value)?,
        _ => {}
    }
    Ok(())
}

/// The record journalled in `dir`: the snapshot `state.json`, plus the
/// change log when its header names that snapshot. A log that names another
/// snapshot (a compaction was under way, or a reader raced one) is re-read;
/// if the snapshot did not change meanwhile the log is stale and ignored.
pub(crate) fn read(state_path: &Path, log_path: &Path) -> Result<RunRecord, StateError> {
    let mut snapshot = fs::read(state_path).map_err(|e| StateError::io("read", state_path, e))?;
    for _ in 0..3 {
        let log = match fs::read(log_path) {
            Ok(log) => log,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return parse_snapshot(state_path, &snapshot)
            }
            Err(e) => return Err(StateError::io("read", log_path, e)),
        };
        let mut lines = complete_lines(&log);
        let header = lines
            .next()
            .and_then(|line| serde_json::from_slice::<Header>(line).ok());
        if header.is_some_and(|h| h.names(&snapshot)) {
            let mut run = parse_snapshot(state_path, &snapshot)?;
            apply(&mut run, lines, log_path)?;
            return Ok(run);
        }
        // The writer may have compacted between our two reads: if the
        // snapshot changed, read both again.
        let again = fs::read(state_path).map_err(|e| StateError::io("read", state_path, e))?;
        if again == snapshot {
            break;
        }
        snapshot = again;
    }
    parse_snapshot(state_path, &snapshot)
}

fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<RunRecord, StateError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StateError::corrupt(
            path,
            e,
            Some(format!(
                "the history of the run is in `{}`; move the corrupt file aside to start over",
                path.with_file_name("events.jsonl").display()
            )),
        )
    })
}

/// The lines of `log` that end with a newline: a last line cut short by a
/// crash mid-append never was a commit.
fn complete_lines(log: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = log.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    log[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

/// Applies the log's commits in order. The last complete line may still be
/// garbage after a power loss (the file grew, its data never reached the
/// disk) and is then ignored; a bad line before it is corruption.
fn apply<'a>(
    run: &mut RunRecord,
    lines: impl Iterator<Item = &'a [u8]>,
    log_path: &Path,
) -> Result<(), StateError> {
    let mut index: std::collections::HashMap<String, usize> = run
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| (inst.id.clone(), i))
        .collect();
    // The run-level fields as JSON, made when a line first patches one and
    // set back on the record at the end.
    let mut fields: Option<Vec<(&'static str, serde_json::Value)>> = None;
    let mut patched = std::collections::BTreeSet::new();
    let mut lines = lines.enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let last = lines.peek().is_none();
        let delta = match serde_json::from_slice::<Delta>(line) {
            Ok(delta) => delta,
            Err(_) if last => break,
            Err(e) => return Err(corrupt_line(log_path, n, e.to_string())),
        };
        for (key, patch) in delta.run {
            let values = match &mut fields {
                Some(values) => values,
                None => {
                    fields.insert(head(run).map_err(|e| corrupt_line(log_path, n, e.to_string()))?)
                }
            };
            // A field this version does not know (a newer writer's) is
            // ignored, as in `state.json`.
            let Some((name, value)) = values.iter_mut().find(|(k, _)| *k == key) else {
                continue;
            };
            let patch: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| corrupt_line(log_path, n, e.to_string()))?;
            json_patch::patch(value, &patch)
                .map_err(|e| corrupt_line(log_path, n, e.to_string()))?;
            patched.insert(*name);
        }
        for inst in delta.instances {
            match index.get(&inst.id) {
                Some(&i) => run.instances[i] = inst,
                None => {
                    index.insert(inst.id.clone(), run.instances.len());
                    run.instances.push(inst);
                }
            }
        }
    }
    for (key, value) in fields.into_iter().flatten() {
        if patched.contains(key) {
            apply_run_field(run, key, value).map_err(|e| {
                corrupt_line(log_path, 0, format!("`{key}` after its patches: {e}"))
            })?;
        }
    }
    Ok(())
}

fn corrupt_line(log_path: &Path, n: usize, error: String) -> StateError {
    StateError::corrupt_text(
        log_path,
        error,
        Some(format!(
            "line {} is not a journal commit; move `{}` aside to read the run as of its last snapshot (`state.json`)",
            n + 2,
            log_path.display()
        )),
    )
}

/// Writes the record of one run as it changes: each commit appends what
/// changed to the change log with one fsync; when the log outgrows the
/// snapshot (or the run ended, or instances were added) the commit is a
/// compaction instead: a new snapshot, then a new log naming it. The
/// first commit of a writer is always a compaction, so a resumed run starts
/// from a snapshot of what it read and any torn tail is gone.
#[derive(Debug)]
pub struct StateWriter {
    state_path: PathBuf,
    log_path: PathBuf,
    /// The open log and the length of its complete lines; `None` before the
    /// first compaction and after the last (the run ended).
    log: Option<(File, u64)>,
    base_len: u64,
    generation: u64,
    /// The touch clock of the record at the last commit.
    seen: u64,
    instances: usize,
    head: Vec<(&'static str, serde_json::Value)>,
    /// The digest of each of `head`'s values, as JSON.
    head_digest: Vec<(u64, u64)>,
}

impl StateWriter {
    pub(crate) fn new(state_path: PathBuf) -> StateWriter {
        StateWriter {
            log_path: state_path.with_file_name(LOG_FILE),
            state_path,
            log: None,
            base_len: 0,
            generation: 0,
            seen: 0,
            instances: 0,
            head: Vec::new(),
            head_digest: Vec::new(),
        }
    }

    /// Makes `run` durable: appended as a change, or compacted. `run` is
    /// the same record at every commit, changed in between (instances only
    /// through [`RunRecord::instance_mut`]).
    pub fn commit(&mut self, run: &RunRecord) -> Result<(), StateError> {
        let compact = match &self.log {
            None => true,
            Some((_, len)) => {
                *len > self.base_len
                    || run.instances.len() != self.instances
                    || run.state != RunState::Running
                    // Another record than the one last committed (its
                    // clock went back): its stamps say nothing.
                    || run.touched.clock() < self.seen
            }
        };
        if compact {
            #[cfg(debug_assertions)]
            self.check_untouched(run);
            self.compact(run)
        } else {
            self.append(run)
        }
    }

    fn append(&mut self, run: &RunRecord) -> Result<(), StateError> {
        let fail = |e| serialize_error(&self.log_path, e);
        let digests = head_digest(run).map_err(fail)?;
        // The fields whose JSON changed, as values; the others keep theirs.
        let changed = run_fields(run, &mut |i, field| {
            if self.head_digest.get(i) == Some(&digests[i]) {
                Ok(None)
            } else {
                field.to_value().map(Some)
            }
        })
        .map_err(fail)?;
        let mut line = Vec::with_capacity(1024);
        line.extend_from_slice(b"{\"run\":{");
        let mut first = true;
        for ((key, value), (_, old)) in changed.iter().zip(&self.head) {
            let Some(value) = value else {
                continue;
            };
            let patch = json_patch::diff(old, value);
            if patch.0.is_empty() {
                continue;
            }
            if !first {
                line.push(b',');
            }
            first = false;
            line.push(b'"');
            line.extend_from_slice(key.as_bytes());
            line.extend_from_slice(b"\":");
            serde_json::to_writer(&mut line, &patch)
                .map_err(|e| serialize_error(&self.log_path, e))?;
        }
        line.extend_from_slice(b"},\"instances\":[");
        for (n, i) in run.touched.since(self.seen).enumerate() {
            if n > 0 {
                line.push(b',');
            }
            serde_json::to_writer(&mut line, &run.instances[i])
                .map_err(|e| serialize_error(&self.log_path, e))?;
        }
        line.extend_from_slice(b"]}\n");

        let Some((file, len)) = self.log.as_mut() else {
            return self.compact(run);
        };
        let appended = (|| -> io::Result<()> {
            // A failed append may have left part of a line: cut it off so
            // the log holds whole commits only.
            if file.metadata()?.len() != *len {
                file.set_len(*len)?;
            }
            if inject_write_error("state") {
                file.write_all(&line[..line.len() / 2])?;
                return Err(injected_disk_full());
            }
            if crash_points_armed() {
                // Two writes, so a kill can land between them: a torn line.
                let half = line.len() / 2;
                file.write_all(&line[..half])?;
                crash_point("journal.mid_append");
                file.write_all(&line[half..])?;
            } else {
                file.write_all(&line)?;
            }
            file.sync_data()
        })();
        appended.map_err(|e| StateError::io("append to", &self.log_path, e))?;
        *len += line.len() as u64;
        crash_point("journal.appended");
        self.seen = run.touched.clock();
        for ((_, value), (_, old)) in changed.into_iter().zip(self.head.iter_mut()) {
            if let Some(value) = value {
                *old = value;
            }
        }
        self.head_digest = digests;
        Ok(())
    }

    /// Debug builds, before a compaction replaces the journal: every
    /// instance not handed out by [`RunRecord::instance_mut`] since the last
    /// commit must be as the journal (snapshot and log, read back) has it.
    /// One changed some other way was never appended, and a crash before
    /// this compaction would have lost the change: panics naming it. Costs
    /// one read of the journal per compaction (amortised: a few bytes read
    /// per byte appended).
    #[cfg(debug_assertions)]
    fn check_untouched(&self, run: &RunRecord) {
        if self.log.is_none() || run.touched.clock() < self.seen {
            return;
        }
        let journal = match read(&self.state_path, &self.log_path) {
            Ok(journal) => journal,
            // Unreadable here means unreadable for `resume` too, which
            // reports it; this check is about what a commit left out.
            Err(_) => return,
        };
        if let Some(id) = changed_unjournalled(&journal, run, self.seen) {
            panic!(
                "instance `{id}` of run `{}` changed without RunRecord::instance_mut: \
                 the journal ({}) does not have the change; change instances only through it",
                run.run_id,
                self.log_path.display()
            );
        }
    }

    fn compact(&mut self, run: &RunRecord) -> Result<(), StateError> {
        let bytes = to_json(run, &self.state_path)?;
        let head = head(run).map_err(|e| serialize_error(&self.state_path, e))?;
        let head_digest = head_digest(run).map_err(|e| serialize_error(&self.state_path, e))?;
        // The old log stays until the new snapshot is durable; from the
        // rename on it names another snapshot and readers ignore it.
        self.log = None;
        write_atomic(
            &self.state_path,
            &bytes,
            inject_write_error("state"),
            "state",
        )?;
        crash_point("journal.snapshot_written");
        if run.state != RunState::Running {
            // The run ended: the snapshot is the whole record, and a reader
            // that only knows `state.json` reads it complete.
            remove_log(&self.log_path)?;
        } else {
            self.generation += 1;
            let mut header = serde_json::to_vec(&Header::of(self.generation, &bytes))
                .map_err(|e| serialize_error(&self.log_path, e))?;
            header.push(b'\n');
            write_atomic(
                &self.log_path,
                &header,
                inject_write_error("state"),
                "journal",
            )?;
            let file = OpenOptions::new()
                .append(true)
                .open(&self.log_path)
                .map_err(|e| StateError::io("open", &self.log_path, e))?;
            self.log = Some((file, header.len() as u64));
        }
        self.base_len = bytes.len() as u64;
        self.seen = run.touched.clock();
        self.instances = run.instances.len();
        self.head = head;
        self.head_digest = head_digest;
        Ok(())
    }
}

/// The first instance of `run` that was not handed out for change since
/// the touch clock `seen` and yet differs from the journalled record
/// `journal` (compared as the journal would read it back: through its JSON).
/// Instances the journal does not have yet (added since) are not compared.
#[cfg(any(debug_assertions, test))]
fn changed_unjournalled(journal: &RunRecord, run: &RunRecord, seen: u64) -> Option<String> {
    let touched: std::collections::HashSet<usize> = run.touched.since(seen).collect();
    let journalled: std::collections::HashMap<&str, &InstanceRecord> = journal
        .instances
        .iter()
        .map(|inst| (inst.id.as_str(), inst))
        .collect();
    let as_read = |inst: &InstanceRecord| {
        serde_json::to_string(inst)
            .and_then(|text| serde_json::from_str::<InstanceRecord>(&text))
            .and_then(serde_json::to_value)
            .ok()
    };
    run.instances
        .iter()
        .enumerate()
        .filter(|(i, _)| !touched.contains(i))
        .find_map(|(_, inst)| {
            let on_disk = journalled.get(inst.id.as_str())?;
            (as_read(inst) != serde_json::to_value(on_disk).ok()).then(|| inst.id.clone())
        })
}

fn serialize_error(path: &Path, source: serde_json::Error) -> StateError {
    StateError::Serialize {
        path: path.to_path_buf(),
        source,
    }
}

/// True when a test armed a crash point (`TREEFARM_CRASH_AT`): appends are
/// then written in two halves so a kill can tear a line.
fn crash_points_armed() -> bool {
    static ARMED: OnceLock<bool> = OnceLock::new();
    *ARMED.get_or_init(|| std::env::var_os(CRASH_AT_ENV).is_some_and(|v| !v.is_empty()))
}

/// Removes the change log, if any (a snapshot written whole makes it stale).
pub(crate) fn remove_log(log_path: &Path) -> Result<(), StateError> {
    match fs::remove_file(log_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io("remove", log_path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InstanceState;

    fn record(n: usize) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            instances: (0..n)
                .map(|i| InstanceRecord {
                    id: format!("{i:03}"),
                    ..InstanceRecord::default()
                })
                .collect(),
            ..RunRecord::default()
        }
    }

    #[test]
    fn head_lists_every_run_level_field() {
        let mut run = record(1);
        run.merge_queue = Some(crate::merge_queue::QueueRecord::new(
            crate::merge_queue::QueueConfig {
                batch: 2,
                gate_jobs: 1,
                gated: false,
            },
        ));
        // Optional fields left out of the JSON when absent: present here.
        run.slurm = Some(crate::slurm::SlurmRun::default());
        run.budget_reached = None;
        let value = serde_json::to_value(&run).expect("json");
        let mut fields: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "options" | "instances" | "budget_reached"))
            .collect();
        fields.push("budget_reached");
        fields.sort_unstable();
        let mut listed: Vec<&str> = head(&run).expect("head").iter().map(|(k, _)| *k).collect();
        listed.sort_unstable();
        assert_eq!(fields, listed);
        // And each listed field is applied back.
        for (key, value) in head(&run).expect("head") {
            let mut back = RunRecord::default();
            apply_run_field(&mut back, key, value.clone()).expect("apply");
            let again = head(&back).expect("head");
            assert_eq!(
                again.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
                Some(&value),
                "{key}"
            );
        }
    }

    #[test]
    fn touched_lists_what_was_handed_out_since() {
        let mut run = record(4);
        let seen = run.touched.clock();
        run.instance_mut("002").expect("002").state = InstanceState::Running;
        run.instance_mut("000").expect("000").attempt = 1;
        assert_eq!(run.touched.since(seen).collect::<Vec<_>>(), [0, 2]);
        let seen = run.touched.clock();
        assert_eq!(run.touched.since(seen).count(), 0);
    }

    #[test]
    fn an_instance_changed_without_instance_mut_is_found() {
        let journal = record(3);
        let mut run = journal.clone();
        let seen = run.touched.clock();
        run.instance_mut("000").expect("000").attempt = 2;
        assert_eq!(changed_unjournalled(&journal, &run, seen), None);
        run.instances[1].attempt = 5;
        assert_eq!(
            changed_unjournalled(&journal, &run, seen).as_deref(),
            Some("001")
        );
    }

    /// A running record of `n` instances, journalled once (a compaction)
    /// in a fresh folder.
    fn running_journal(n: usize) -> (tempfile::TempDir, StateWriter, RunRecord) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = StateWriter::new(dir.path().join("state.json"));
        let mut run = record(n);
        run.state = RunState::Running;
        writer.commit(&run).expect("first commit: a compaction");
        (dir, writer, run)
    }

    /// The writer's debug check fires: a change made behind
    /// `instance_mut`'s back is not in the appended line, and the next
    /// compaction (here: the run ending) panics naming the instance.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "instance `002` of run `r` changed without RunRecord::instance_mut")]
    fn the_writer_panics_at_compaction_on_an_unjournalled_change() {
        let (_dir, mut writer, mut run) = running_journal(3);
        run.instance_mut("000").expect("000").attempt = 1;
        writer.commit(&run).expect("an append");
        run.instances[2].attempt = 7;
        writer.commit(&run).expect("an append without the change");
        run.state = RunState::Finished;
        let _ = writer.commit(&run);
    }

    #[test]
    fn the_writer_accepts_changes_made_through_instance_mut() {
        let (dir, mut writer, mut run) = running_journal(3);
        run.instance_mut("002").expect("002").attempt = 7;
        writer.commit(&run).expect("append");
        run.state = RunState::Finished;
        writer.commit(&run).expect("final compaction");
        let back = read(&dir.path().join("state.json"), &dir.path().join(LOG_FILE)).expect("read");
        assert_eq!(back.instances[2].attempt, 7);
    }

    /// A run-level field is appended when its JSON changed, and only then
    /// (its digest decides): the merge queue's commits, growing, are read
    /// back whole; a commit that changed nothing else writes no patch.
    #[test]
    fn run_level_fields_are_appended_when_they_change_only() {
        let (dir, mut writer, mut run) = running_journal(2);
        let log = dir.path().join(LOG_FILE);
        run.merge_queue = Some(crate::merge_queue::QueueRecord::new(
            crate::merge_queue::QueueConfig {
                batch: 2,
                gate_jobs: 1,
                gated: false,
            },
        ));
        writer.commit(&run).expect("the queue appended");
        for i in 0..3 {
            let queue = run.merge_queue.as_mut().expect("queue");
            queue.commits.insert(format!("{i:03}"), format!("c{i}"));
            writer.commit(&run).expect("append");
        }
        run.instance_mut("001").expect("001").attempt = 3;
        writer.commit(&run).expect("append");
        let text = std::fs::read_to_string(&log).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[1..5].iter().all(|l| l.contains("merge_queue")),
            "{text}"
        );
        assert!(lines[5].starts_with("{\"run\":{}"), "{text}");
        let back = read(&dir.path().join("state.json"), &log).expect("read");
        assert_eq!(back, run);
    }

    #[test]
    fn complete_lines_drop_a_torn_tail() {
        let lines: Vec<&[u8]> = complete_lines(b"a\nb\nc").collect();
        assert_eq!(lines, [b"a".as_slice(), b"b".as_slice()]);
        assert_eq!(complete_lines(b"abc").count(), 0);
    }
}
