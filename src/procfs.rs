//! Process identity on Linux: a pid plus its start time (from `/proc`), so
//! that a recycled pid is never mistaken for the process we recorded.

use std::path::Path;

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or `None` when no such process exists.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')',
    // so fields are counted from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; start time is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The one-letter state of `pid` (`R`, `S`, `Z`, …), or `None` when gone.
pub fn state(pid: u32) -> Option<char> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// True when `pid` is a live (not zombie) process that started at
/// `start_time`; with `start_time` of `None`, any live process with that pid.
pub fn is_alive(pid: u32, start_time_ticks: Option<u64>) -> bool {
    match (self::start_time(pid), self::state(pid)) {
        (Some(_), Some('Z')) | (None, _) | (_, None) => false,
        (Some(actual), Some(_)) => start_time_ticks.is_none_or(|want| want == actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id();
        let start = start_time(pid).expect("own start time");
        assert!(is_alive(pid, Some(start)));
        assert!(
            !is_alive(pid, Some(start + 1)),
            "a different start time is another process"
        );
    }

    #[test]
    fn exited_process_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!is_alive(pid, None));
    }
}
