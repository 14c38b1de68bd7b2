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

/// The live process-group leaders whose environment holds every `(name,
/// value)` of `env`, with their start times, oldest first. This finds an
/// agent (its wrapper leads its own group and carries `TREEFARM_RUN_ID` and
/// `TREEFARM_SPEC_ID`) that a coordinator started but died before
/// journalling. Only processes whose `/proc/<pid>/environ` we may read (our
/// own user's) are seen.
pub fn group_leaders_with_env(env: &[(&str, &str)]) -> Vec<(u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted: Vec<Vec<u8>> = env
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields from 3 on: state (3), ppid (4), pgrp (5), …, start time (22).
        let (Some(state), Some(pgrp), Some(start)) =
            (fields.first(), fields.get(2), fields.get(22 - 3))
        else {
            continue;
        };
        if *state == "Z" || pgrp.parse::<u32>().ok() != Some(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if wanted.iter().all(|w| vars.contains(&w.as_slice())) {
            if let Ok(start) = start.parse() {
                found.push((pid, start));
            }
        }
    }
    found.sort_by_key(|(_, start)| *start);
    found
}

/// Those of `paths` that some live process has open (as seen in
/// `/proc/<pid>/fd`; only our own user's processes are visible). A git lock
/// file (`*.lock`) is held open by whoever is writing it, so one nobody has
/// open was left by a process that died mid-update.
pub fn open_by_any_process(paths: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut open = Vec::new();
    if paths.is_empty() {
        return open;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return open;
    };
    for proc_entry in procs.flatten() {
        if !proc_entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if paths.contains(&target) && !open.contains(&target) {
                    open.push(target);
                }
            }
        }
    }
    open
}

/// True when this process runs with effective uid 0 (`/proc/self` belongs
/// to the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
    fn group_leader_is_found_by_its_environment() {
        use std::os::unix::process::CommandExt;
        let marker = format!("group-leader-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("TREEFARM_PROCFS_TEST", &marker)
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        // Until the child has exec'd, /proc shows the parent's environment:
        // wait for the exec itself, not for some time.
        let environ = Path::new("/proc")
            .join(child.id().to_string())
            .join("environ");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read(&environ)
            .map(|e| e.windows(marker.len()).any(|w| w == marker.as_bytes()))
            .unwrap_or(false)
        {
            assert!(std::time::Instant::now() < deadline, "child never exec'd");
            std::thread::yield_now();
        }
        let found = group_leaders_with_env(&[("TREEFARM_PROCFS_TEST", &marker)]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, child.id());
        assert!(group_leaders_with_env(&[("TREEFARM_PROCFS_TEST", "no such value")]).is_empty());
    }

    #[test]
    fn an_open_file_is_seen_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = dir
            .path()
            .canonicalize()
            .expect("canonical")
            .join("held.lock");
        let left = dir
            .path()
            .canonicalize()
            .expect("canonical")
            .join("left.lock");
        let file = std::fs::File::create(&held).expect("create held");
        std::fs::write(&left, "").expect("create left");
        let open = open_by_any_process(&[held.clone(), left.clone()]);
        drop(file);
        assert_eq!(open, vec![held.clone()]);
        // Another test's fork may hold a copy of the descriptor until its
        // exec closes it: wait for nobody to hold it, within a bound.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !open_by_any_process(std::slice::from_ref(&held)).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "`{}` still seen open after it was closed",
                held.display()
            );
            std::thread::yield_now();
        }
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
