//! Test hooks that simulate the failures crash safety is about: a `kill -9`
//! at a named phase (`TREEFARM_CRASH_AT`) and a full disk while writing a
//! journal file (`TREEFARM_INJECT_WRITE_ERROR`).
//!
//! Both variables are read once per process and cached, so a hook left in a
//! hot path costs one atomic load when unset.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Environment variable naming the crash point at which the process kills
/// itself with `SIGKILL`.
pub const CRASH_AT_ENV: &str = "TREEFARM_CRASH_AT";

/// Environment variable naming the journal writes that fail as if the disk
/// were full: a comma-separated list of `state`, `summary`, `events`.
pub const INJECT_WRITE_ERROR_ENV: &str = "TREEFARM_INJECT_WRITE_ERROR";

/// Kills this process with `SIGKILL` when `TREEFARM_CRASH_AT` names this
/// point, simulating `kill -9` at that phase. Does nothing otherwise.
///
/// `TREEFARM_CRASH_AT=name` crashes the first time `name` is reached;
/// `name#N` the N-th time (e.g. `state.renamed#5`: during the fifth journal
/// write), so a test can reach every occurrence of a phase.
///
/// Names used by the state module itself: `state.tmp_written` (state.json.tmp
/// fully written and synced, not yet renamed), `state.renamed` (renamed, the
/// directory not yet synced), and `summary.tmp_written` / `summary.renamed`
/// likewise for summary.json.
pub fn crash_point(name: &str) {
    static CRASH_AT: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let wanted = CRASH_AT.get_or_init(|| {
        let value = std::env::var(CRASH_AT_ENV).ok().filter(|v| !v.is_empty())?;
        Some(match value.rsplit_once('#') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (value, 1),
        })
    });
    let Some((point, nth)) = wanted else {
        return;
    };
    if point != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *nth {
        return;
    }
    tracing::debug!(
        crash_point = name,
        "crash point reached, killing self with SIGKILL"
    );
    // SIGKILL cannot be caught: the process ends on the way back from the
    // syscall, with no destructor, flush or atexit running.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    // Unreachable in practice; never continue past a crash point.
    loop {
        std::thread::park();
    }
}

/// True when `TREEFARM_INJECT_WRITE_ERROR` lists `target` (`state`,
/// `summary`, `events` or `index-lag`, the marker of a lagging index).
pub(crate) fn inject_write_error(target: &str) -> bool {
    static INJECT: OnceLock<Vec<String>> = OnceLock::new();
    INJECT
        .get_or_init(|| {
            std::env::var(INJECT_WRITE_ERROR_ENV)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        })
        .iter()
        .any(|t| t == target)
}

/// The error an injected write failure reports: the one a full disk gives.
pub(crate) fn injected_disk_full() -> std::io::Error {
    std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32)
}
