//! Process groups on Linux: signal a whole group, tell whether any live
//! process is left in it, reap our zombie members, and become a child
//! subreaper so an agent's orphaned grandchildren stay in reach.
//!
//! Every agent runs as the leader of its own process group (pgid == leader
//! pid), so "the agent and everything it started" is exactly that group —
//! unless a descendant deliberately moves to another group or session, which
//! nothing short of cgroups could follow.

use std::io;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, Pid};

/// How often group emptiness is re-checked while waiting for a group to die.
/// Only the termination path polls; a normal exit is noticed through the
/// child's own exit notification.
pub(crate) const GROUP_POLL: Duration = Duration::from_millis(10);

/// Marks this process as a child subreaper (`PR_SET_CHILD_SUBREAPER`): a
/// process orphaned anywhere below us is reparented to us instead of to init,
/// so it can still be signalled through its group and reaped by
/// [`reap_group`]. Process-wide; call it once at startup, before agents run.
pub fn set_child_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// The group id as a nix `Pid`, or `None` for ids that must never be
/// signalled: 0 and 1 mean "our own group" / init to `killpg`, and our own
/// group would take the coordinator down with the agent.
fn target(pgid: u32) -> Option<Pid> {
    let raw = i32::try_from(pgid).ok()?;
    if raw <= 1 || Pid::from_raw(raw) == getpgrp() {
        return None;
    }
    Some(Pid::from_raw(raw))
}

/// Sends `signal` to every process of group `pgid`. `Ok(false)` when the group
/// no longer exists (or `pgid` is one we refuse to signal).
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
    let Some(pg) = target(pgid) else {
        return Ok(false);
    };
    match killpg(pg, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(err) => Err(io::Error::from(err)),
    }
}

/// True while group `pgid` holds at least one live (non-zombie) process.
///
/// `killpg(pgid, 0)` answering `ESRCH` settles it cheaply. Otherwise the
/// members may all be zombies waiting for a parent that is not us (or an init
/// that never reaps, as in some containers), so `/proc` is consulted.
pub fn group_alive(pgid: u32) -> bool {
    let Some(pg) = target(pgid) else {
        return false;
    };
    match killpg(pg, None) {
        Err(Errno::ESRCH) => false,
        _ => live_members(pgid) > 0,
    }
}

/// Number of live (non-zombie) processes whose process group is `pgid`.
fn live_members(pgid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // Without /proc we cannot look closer; assume alive so callers keep
        // escalating instead of declaring victory.
        return 1;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(stat_state_and_pgrp(pid), Some((state, pgrp)) if pgrp == pgid && state != 'Z' && state != 'X'))
        .count()
}

/// State letter and process group of `pid` from `/proc/<pid>/stat` (fields 3
/// and 5). Fields are counted from the last `)` because the command name may
/// contain spaces and parentheses.
fn stat_state_and_pgrp(pid: &u32) -> Option<(char, u32)> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Reaps every exited child of ours in group `pgid` without blocking: the
/// agent's orphans that were reparented to us as subreaper.
///
/// Must only run once the group leader's own exit status has been collected
/// by whoever owns it (tokio's `Child::wait`), or this would steal it.
pub fn reap_group(pgid: u32) {
    let Some(pg) = target(pgid) else {
        return;
    };
    let group = Pid::from_raw(-pg.as_raw());
    loop {
        match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            // ECHILD: no child of ours left in the group.
            Err(_) => break,
        }
    }
}
