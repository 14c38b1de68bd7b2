//! Runs the server starts and follows: `run_start`, `resume` and `merge`
//! start this very binary as a detached process (its own session, stdin
//! from /dev/null, stdout discarded — its events are in the journal —,
//! stderr into a log file), so the run outlives the client and the server,
//! and is the same code path a user gets from the command line.
//! `run_wait` reads the run's journal from a cursor; `run_cancel` sends the
//! run's coordinator SIGINT, a first Ctrl-C.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::state::{Lock, StateDir};

use super::tools::{InstanceBrief, LockHeld, StartResult};

/// How long a started process may take to hold the lock (or end) before
/// `run_start` answers anyway: validation, preset checks and the journal's
/// first write take milliseconds, so this is only a bound.
const START_BOUND: Duration = Duration::from_secs(10);
/// How often a started process and a followed run are looked at.
const POLL: Duration = Duration::from_millis(25);
/// The most events one `run_wait` returns; more wait past the cursor.
pub(crate) const MAX_EVENTS: usize = 50;
/// Strings in events longer than this are cut (a failure's log tail).
const MAX_STRING: usize = 400;
/// The end of a process's log returned when it ended at once.
const LOG_TAIL: usize = 2000;

/// The live coordinator holding the lock of `state`, if any.
pub(crate) fn lock_holder(state: &StateDir) -> Option<LockHeld> {
    Lock::holder_of(state).map(|h| LockHeld {
        run_id: h.run_id,
        pid: h.pid,
    })
}

/// Starts `treefarm <args>` detached and waits until it holds the lock (its
/// run id is then known) or ends. `root` is the repository; the log goes
/// under `<state>/mcp/`.
pub(crate) fn start_detached(
    exe: &Path,
    state: &StateDir,
    config: Option<&Path>,
    root: &Path,
    kind: &str,
    args: &[String],
) -> std::io::Result<StartResult> {
    if let Some(held) = lock_holder(state) {
        return Ok(StartResult {
            message: Some(format!(
                "another treefarm (pid {}, run {}) holds the lock; wait for it with run_wait, \
                 or stop it with run_cancel",
                held.pid, held.run_id
            )),
            lock_held_by: Some(held),
            ..StartResult::default()
        });
    }
    let log_path = new_log(state, kind)?;
    let log = File::create(&log_path)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-C").arg(root);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg(kind)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the
    // parent; it makes the run its own session, so neither a signal to the
    // client's process group nor the end of its terminal reaches it.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let log_text = Some(log_path.display().to_string());
    let deadline = Instant::now() + START_BOUND;
    let result = loop {
        if let Some(status) = child.try_wait()? {
            let tail = tail_of(&log_path);
            let held = lock_holder(state);
            break StartResult {
                started: false,
                pid: Some(pid),
                exit_code: Some(status.code().unwrap_or(-1)),
                run_id: run_id_in(&tail),
                log: log_text,
                message: Some(tail),
                lock_held_by: held,
                ..StartResult::default()
            };
        }
        // The lock names the run before its journal exists: answer once
        // `state.json` is there, so `run_wait` and `status` find the run.
        let holder = Lock::holder_of(state).filter(|h| h.pid == pid && !h.run_id.is_empty());
        if let Some(h) = holder.filter(|h| journalled(state, &h.run_id)) {
            break StartResult {
                started: true,
                run_id: Some(h.run_id),
                pid: Some(pid),
                log: log_text,
                ..StartResult::default()
            };
        }
        if Instant::now() >= deadline {
            break StartResult {
                started: true,
                pid: Some(pid),
                log: log_text,
                message: Some(format!(
                    "the process has not taken the lock after {}s; see its log",
                    START_BOUND.as_secs()
                )),
                ..StartResult::default()
            };
        }
        std::thread::sleep(POLL);
    };
    reap_later(child);
    Ok(result)
}

/// True once `runs/<run_id>/state.json` exists.
fn journalled(state: &StateDir, run_id: &str) -> bool {
    state.runs_path().join(run_id).join("state.json").is_file()
}

/// Waits for `child` on a thread of its own so it leaves no zombie while
/// this server lives; when the server ends first, init adopts it.
fn reap_later(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("mcp-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// A new, unused log file `<state>/mcp/<kind>-<unix ms>.log`.
fn new_log(state: &StateDir, kind: &str) -> std::io::Result<PathBuf> {
    let dir = state.path().join("mcp");
    fs::create_dir_all(&dir)?;
    let now = crate::state::now_ms();
    for n in 0..1000u32 {
        let path = dir.join(format!("{kind}-{now}-{n}.log"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free log name in `{}`",
        dir.display()
    )))
}

/// The end of a log file (at most [`LOG_TAIL`] bytes), as text.
fn tail_of(path: &Path) -> String {
    let Ok(text) = fs::read(path) else {
        return String::new();
    };
    let start = text.len().saturating_sub(LOG_TAIL);
    String::from_utf8_lossy(&text[start..]).trim().to_string()
}

/// The run id a process printed (`resuming run X`, `run X is already
/// finished`), for a process that ended before it was seen holding the lock.
fn run_id_in(log: &str) -> Option<String> {
    let re = regex::Regex::new(r"\b(\d{8}-\d{6}-[0-9a-f]{4,})\b").ok()?;
    re.captures(log).map(|c| c[1].to_string())
}

/// True while a live coordinator works on `run_id`: the lock holder, or a
/// journal that is `running` under a live coordinator.
pub(crate) fn is_active(state: &StateDir, run_id: &str) -> bool {
    if lock_holder(state).is_some_and(|h| h.run_id == run_id) {
        return true;
    }
    state
        .open_run(run_id)
        .and_then(|d| d.read_state())
        .is_ok_and(|r| {
            r.state == crate::state::RunState::Running
                && crate::procfs::is_alive(r.coordinator_pid, r.coordinator_start)
        })
}

/// The complete events of `events.jsonl` from byte offset `cursor`: at most
/// `max`, each with long strings cut, and the offset after the last one.
/// A line still being written is left for the next call.
pub(crate) fn events_since(
    path: &Path,
    cursor: u64,
    max: usize,
) -> std::io::Result<(Vec<Value>, u64, bool)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, false)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // A cursor past the end (a journal another run rewrote) starts over.
    let cursor = if cursor > len { 0 } else { cursor };
    file.seek(SeekFrom::Start(cursor))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut events = Vec::new();
    let mut offset = cursor;
    let mut rest = bytes.as_slice();
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if events.len() == max {
            return Ok((events, offset, true));
        }
        let line = &rest[..end];
        if let Ok(mut event) = serde_json::from_slice::<Value>(line) {
            cut_strings(&mut event);
            events.push(event);
        }
        offset += end as u64 + 1;
        rest = &rest[end + 1..];
    }
    Ok((events, offset, false))
}

/// Cuts every string in `value` longer than [`MAX_STRING`] bytes.
fn cut_strings(value: &mut Value) {
    match value {
        Value::String(s) if s.len() > MAX_STRING => {
            let mut end = MAX_STRING;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str(" …");
        }
        Value::Array(items) => items.iter_mut().for_each(cut_strings),
        Value::Object(map) => map.values_mut().for_each(cut_strings),
        _ => {}
    }
}

/// Every spec's state from a `status --json` object.
pub(crate) fn briefs(status: &Value) -> Vec<InstanceBrief> {
    let Some(list) = status.get("instances").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|i| {
            let text = |k: &str| i.get(k).and_then(Value::as_str).map(str::to_string);
            let mut message = text("message").or_else(|| text("reason"));
            if let Some(m) = &mut message {
                let mut v = Value::String(std::mem::take(m));
                cut_strings(&mut v);
                *m = v.as_str().unwrap_or_default().to_string();
            }
            InstanceBrief {
                id: text("id").unwrap_or_default(),
                state: text("state").unwrap_or_default(),
                attempt: i.get("attempt").and_then(Value::as_u64),
                exit_code: i.get("exit_code").and_then(Value::as_i64),
                message,
            }
        })
        .collect()
}

/// Sends SIGINT to the coordinator working on `run_id` (a first Ctrl-C:
/// agents are stopped and the run is left `interrupted`, resumable) and
/// waits up to `bound` for it to end. Returns the pid signalled and whether
/// it ended; `None` when no live coordinator works on the run.
pub(crate) fn interrupt(state: &StateDir, run_id: &str, bound: Duration) -> Option<(u32, bool)> {
    let (pid, start) = match Lock::holder_of(state).filter(|h| h.run_id == run_id) {
        Some(h) => (h.pid, h.start_time),
        None => {
            let record = state.open_run(run_id).ok()?.read_state().ok()?;
            let alive = record.state == crate::state::RunState::Running
                && crate::procfs::is_alive(record.coordinator_pid, record.coordinator_start);
            if !alive {
                return None;
            }
            (record.coordinator_pid, record.coordinator_start)
        }
    };
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGINT).ok()?;
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !crate::procfs::is_alive(pid, start) {
            return Some((pid, true));
        }
        std::thread::sleep(POLL);
    }
    Some((pid, !crate::procfs::is_alive(pid, start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_since_leaves_a_partial_line_and_resumes_at_the_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":").expect("write");
        let (events, cursor, more) = events_since(&path, 0, 10).expect("read");
        assert_eq!(events.len(), 2);
        assert!(!more);
        assert_eq!(cursor, 28);
        let (events, cursor2, _) = events_since(&path, cursor, 10).expect("read");
        assert!(events.is_empty());
        assert_eq!(cursor2, cursor);
        let (events, cursor3, more) = events_since(&path, 0, 1).expect("read");
        assert_eq!((events.len(), cursor3, more), (1, 14, true));
    }

    #[test]
    fn long_strings_are_cut() {
        let mut v = serde_json::json!({"tail": "é".repeat(500), "n": 1});
        cut_strings(&mut v);
        let s = v["tail"].as_str().expect("string");
        assert!(s.len() <= MAX_STRING + 4 && s.ends_with('…'), "{}", s.len());
    }

    #[test]
    fn a_run_id_is_found_in_a_log() {
        assert_eq!(
            run_id_in("treefarm: run 20261206-193000-1a2b is already finished").as_deref(),
            Some("20261206-193000-1a2b")
        );
        assert_eq!(run_id_in("error: no agent configured"), None);
    }
}
