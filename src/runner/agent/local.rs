//! The local executor, [`Local`]: runs one agent to
//! its end — spawn it in its own process group with its output appended to
//! the instance log, follow its status file, enforce the timeout, idle
//! watchdog and stop requests, and leave no process of its group behind.
//!
//! The agent command runs under a tiny `sh` wrapper (see [`WRAPPER`]) that
//! writes the agent's exit code to a file when it ends, so a coordinator that
//! was killed meanwhile can learn the outcome later with [`wait_detached`].
//! The log file is written by the agent directly (no pipe through us) for the
//! same reason: output keeps flowing if the coordinator dies.

use std::future::{pending, Future};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use super::executor::{AgentJob, Executor};
use super::process;
use super::status_file::StatusWatch;
use crate::procfs;
use crate::runner::messages::{AgentEnd, AgentEvent, Stop};

/// The local backend: each attempt a process group on this machine, under
/// the `sh` wrapper that writes the exit file (its `WRAPPER`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Executor for Local {
    type Handle = (u32, u64);

    fn spawn(
        &self,
        job: AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send {
        run_agent(job, events, stop)
    }

    fn reattach(
        &self,
        (pid, start_time): (u32, u64),
        job: &AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send {
        let job = job.clone();
        async move { wait_detached(pid, start_time, &job.exit_path, &job, events, stop).await }
    }

    fn finish_termination(
        &self,
        (pid, start_time): (u32, u64),
        kill_at_ms: u64,
        why: AgentEnd,
        stop: watch::Receiver<Stop>,
    ) -> impl Future<Output = AgentEnd> + Send {
        finish_termination(pid, start_time, kill_at_ms, why, stop)
    }

    fn cancel(&self, (pgid, _): (u32, u64), grace: Duration) -> impl Future<Output = bool> + Send {
        kill_group(pgid, grace)
    }

    fn exit_record(&self, exit_path: &Path) -> Option<(i32, Option<u32>)> {
        read_exit_record(exit_path)
    }
}

/// Why an agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to create folder `{path}` for the agent's log and status files")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open log file `{path}`")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove stale file `{path}` from an earlier attempt")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to confine the agent with Landlock")]
    Sandbox(#[from] crate::isolation::SandboxError),
    #[error("failed to start the agent in `{cwd}`")]
    Spawn {
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The wrapper every agent runs under, as `sh -c WRAPPER treefarm-agent
/// COMMAND EXIT_PATH`. It stays in the agent's process group (it is the
/// leader) and records the exit code with a rename, so a reader never sees a
/// half-written file.
///
/// The `trap` makes the wrapper outlive a group-wide SIGTERM until the agent
/// itself has ended, so the code is recorded even then; POSIX defers a trap
/// while a foreground command runs. Trapped (not ignored) signals are reset to
/// their default in the agent, so the agent sees SIGTERM normally. SIGKILL
/// still ends the wrapper at once, and so does a SIGTERM in the instant
/// before the wrapper has set its trap; then no code is recorded, which only
/// matters to [`wait_detached`] (it reports [`AgentEnd::Unknown`]).
pub const WRAPPER: &str = r#"trap ':' TERM INT HUP
sh -c "$1"
code=$?
printf '%s\n%s\n' "$code" "${TREEFARM_ATTEMPT:-}" > "$2.tmp" && mv -f "$2.tmp" "$2"
exit "$code""#;

/// `$0` of the wrapper shell, as seen in `ps`.
const WRAPPER_NAME: &str = "treefarm-agent";

/// How often the status file and log are looked at (display and idle
/// watchdog only; exits are noticed without polling).
const STATUS_POLL: Duration = Duration::from_millis(200);
/// How often a re-attached (not our child) agent's liveness is checked.
const DETACHED_POLL: Duration = Duration::from_millis(50);
/// Longest grace for the clean-up of background processes an agent left
/// running after it exited on its own.
const CLEANUP_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for a SIGKILLed group to disappear before giving up
/// (only a process stuck in uninterruptible sleep takes this long).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The fully configured command for `job` — `sh -c WRAPPER` in `cwd`, its own
/// process group, stdin from `/dev/null`, stdout and stderr appended to the
/// log — after creating the folders and log and removing a stale status and
/// exit file. [`run_agent`] uses it; it is public so tests and tools can start
/// an agent exactly as the executor would.
pub fn agent_command(job: &AgentJob) -> Result<std::process::Command, SpawnError> {
    for path in [&job.log_path, &job.status_path, &job.exit_path] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SpawnError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
    }
    for path in [&job.status_path, &job.exit_path] {
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(SpawnError::RemoveStale {
                    path: path.clone(),
                    source: err,
                })
            }
            _ => {}
        }
    }
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&job.log_path)
            .map_err(|source| SpawnError::OpenLog {
                path: job.log_path.clone(),
                source,
            })
    };
    let (stdout, stderr) = (open_log()?, open_log()?);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg(WRAPPER_NAME)
        .arg(&job.command)
        .arg(&job.exit_path)
        .current_dir(&job.cwd)
        // Set before `job.env` so an explicit entry there wins.
        .env("TREEFARM_STATUS_FILE", &job.status_path)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(sandbox) = &job.sandbox {
        let ruleset = sandbox.ruleset()?;
        // SAFETY: the closure only makes two async-signal-safe system calls
        // on a descriptor opened before the fork (see `isolation::sandbox`).
        unsafe {
            cmd.pre_exec(move || crate::isolation::Sandbox::restrict_in_child(&ruleset));
        }
    }
    Ok(cmd)
}

/// Runs `job` to its end. Sends [`AgentEvent::Started`] once spawned, then
/// [`AgentEvent::Status`] whenever the status file changes (a last look is
/// taken after the agent ends, so its final status is never missed).
///
/// The exit is noticed as soon as the kernel reports it. Timeout, idle
/// timeout and [`Stop::Graceful`] SIGTERM the whole group, wait up to
/// `grace`, then SIGKILL it; [`Stop::Kill`] SIGKILLs at once. After the agent
/// exits on its own, whatever it left running in its group is terminated the
/// same way (short grace). Grandchildren orphaned by the agent are reaped here
/// when [`set_child_subreaper`](super::process::set_child_subreaper) was
/// called.
///
/// Dropping the returned future leaves the agent running, as if the
/// coordinator had died; [`wait_detached`] can pick it up again.
pub async fn run_agent(
    job: AgentJob,
    events: mpsc::UnboundedSender<AgentEvent>,
    mut stop: watch::Receiver<Stop>,
) -> AgentEnd {
    if *stop.borrow_and_update() != Stop::Run {
        return AgentEnd::Stopped;
    }
    let std_cmd = match agent_command(&job) {
        Ok(cmd) => cmd,
        Err(err) => return AgentEnd::SpawnFailed(crate::error::chain(&err)),
    };
    let mut cmd = tokio::process::Command::from(std_cmd);
    // The group is ours to end (all of it, not just the leader); a dropped
    // handle must not kill only the wrapper.
    cmd.kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            let err = SpawnError::Spawn {
                cwd: job.cwd.clone(),
                source,
            };
            return AgentEnd::SpawnFailed(crate::error::chain(&err));
        }
    };
    let Some(pid) = child.id() else {
        // Only after the child was awaited does tokio forget the pid.
        return AgentEnd::SpawnFailed("the agent's pid is unknown".to_string());
    };
    // The child cannot have been reaped yet (nothing awaited it), so its
    // /proc entry exists even if it already exited.
    let start_time = procfs::start_time(pid).unwrap_or(0);
    let _ = events.send(AgentEvent::Started { pid, start_time });

    let mut leader = Leader::Child {
        wait: Some(Box::pin(child.wait())),
        status: None,
    };
    if let Some(end) = supervise(pid, &job, &mut leader, &events, &mut stop).await {
        return end;
    }
    match leader {
        Leader::Child {
            status: Some(Ok(status)),
            ..
        } => end_from_status(status),
        // tokio failed to collect the status; the wrapper may still have
        // recorded it.
        _ => end_from_exit_file(&job.exit_path),
    }
}

/// Re-attaches to an agent started by an earlier coordinator (not our child):
/// polls its liveness by pid and start time, then reads its exit code from
/// `exit_path` (missing: [`AgentEnd::Unknown`]). `job.timeout` and
/// `job.idle_timeout` count from now; stop requests and timeouts signal its
/// process group (pgid == `pid`), exactly as [`run_agent`] does. No
/// [`AgentEvent::Started`] is sent.
///
/// When `pid` now belongs to another process (different start time), the
/// agent is long gone and nothing is signalled.
pub async fn wait_detached(
    pid: u32,
    start_time: u64,
    exit_path: &Path,
    job: &AgentJob,
    events: mpsc::UnboundedSender<AgentEvent>,
    mut stop: watch::Receiver<Stop>,
) -> AgentEnd {
    if procfs::start_time(pid).is_some_and(|actual| actual != start_time) {
        // The pid was reused. The kernel never hands out a pid that is still
        // some group's id, so the agent's group is empty as well.
        return end_from_exit_file(exit_path);
    }
    let mut leader = Leader::Foreign {
        pid,
        start_time: Some(start_time),
        ended: false,
    };
    let requested = *stop.borrow_and_update();
    let forced = if requested == Stop::Run {
        supervise(pid, job, &mut leader, &events, &mut stop).await
    } else {
        terminate(pid, requested, job.grace, &mut leader, &mut stop).await;
        Some(AgentEnd::Stopped)
    };
    forced.unwrap_or_else(|| end_from_exit_file(exit_path))
}

/// Milliseconds since the Unix epoch, `after` from now.
fn epoch_ms_after(after: Duration) -> u64 {
    (std::time::SystemTime::now() + after)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Finishes a termination an earlier coordinator began (SIGTERM sent, it
/// died before SIGKILL): waits for the group of `pid` (its leader alive,
/// same start time) to empty until `kill_at` (ms since the epoch), then
/// SIGKILLs it, and reports `why`. A stop request escalates as usual.
pub async fn finish_termination(
    pid: u32,
    start_time: u64,
    kill_at_ms: u64,
    why: AgentEnd,
    mut stop: watch::Receiver<Stop>,
) -> AgentEnd {
    let mut leader = Leader::Foreign {
        pid,
        start_time: Some(start_time),
        ended: false,
    };
    let now = epoch_ms_after(Duration::ZERO);
    let grace = Duration::from_millis(kill_at_ms.saturating_sub(now));
    let how = if grace.is_zero() {
        Stop::Kill
    } else {
        Stop::Graceful
    };
    terminate(pid, how, grace, &mut leader, &mut stop).await;
    why
}

/// Ends process group `pgid` without a child handle (e.g. leftovers found on
/// resume): SIGTERM, up to `grace` for it to empty, SIGKILL. True when no
/// live process of the group remains.
pub async fn kill_group(pgid: u32, grace: Duration) -> bool {
    let mut leader = Leader::Foreign {
        pid: pgid,
        start_time: None,
        ended: false,
    };
    // Nobody else can stop this; the sender only has to stay alive.
    let (_keep, mut stop) = watch::channel(Stop::Run);
    terminate(pgid, Stop::Graceful, grace, &mut leader, &mut stop).await;
    !process::group_alive(pgid)
}

/// The agent's group leader, as far as the executor can observe it.
enum Leader<'a> {
    /// Our child: its exit is reported by tokio (pidfd or SIGCHLD), at once.
    Child {
        wait: Option<Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send + 'a>>>,
        status: Option<io::Result<ExitStatus>>,
    },
    /// Someone else's child: liveness is polled through `/proc`.
    Foreign {
        pid: u32,
        start_time: Option<u64>,
        ended: bool,
    },
}

impl Leader<'_> {
    fn has_ended(&self) -> bool {
        match self {
            Leader::Child { wait, .. } => wait.is_none(),
            Leader::Foreign { ended, .. } => *ended,
        }
    }

    /// Resolves when the leader ends (never, once it has). Cancel safe:
    /// tokio's `Child::wait` is, and the foreign poll keeps no state.
    async fn ended(&mut self) {
        match self {
            Leader::Child { wait, status } => {
                let result = match wait.as_mut() {
                    Some(fut) => fut.await,
                    None => return pending().await,
                };
                *status = Some(result);
                *wait = None;
            }
            Leader::Foreign {
                pid,
                start_time,
                ended,
            } => {
                if *ended {
                    return pending().await;
                }
                while procfs::is_alive(*pid, *start_time) {
                    sleep(DETACHED_POLL).await;
                }
                *ended = true;
            }
        }
    }
}

/// Watches a running agent until it ends on its own (`None`, after cleaning
/// up its group) or is ended by timeout, idle watchdog or stop (`Some(end)`,
/// after the whole group is gone).
async fn supervise(
    pgid: u32,
    job: &AgentJob,
    leader: &mut Leader<'_>,
    events: &mpsc::UnboundedSender<AgentEvent>,
    stop: &mut watch::Receiver<Stop>,
) -> Option<AgentEnd> {
    let started = Instant::now();
    let deadline = job.timeout.map(|t| started + t);
    let mut activity = Activity::new(job);
    let period = job.idle_timeout.map_or(STATUS_POLL, |idle| {
        (idle / 4).clamp(Duration::from_millis(10), STATUS_POLL)
    });
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop_open = true;

    let forced = loop {
        tokio::select! {
            // An exit wins over a timeout that fires in the same instant.
            biased;
            () = leader.ended() => break None,
            () = sleep_until(deadline.unwrap_or(started)), if deadline.is_some() => {
                break Some((AgentEnd::TimedOut, Stop::Graceful));
            }
            changed = stop.changed(), if stop_open => match changed {
                // The sender is gone: nobody can ask for a stop any more.
                Err(_) => stop_open = false,
                Ok(()) => match *stop.borrow_and_update() {
                    Stop::Run => {}
                    how => break Some((AgentEnd::Stopped, how)),
                },
            },
            _ = tick.tick() => {
                activity.observe(events);
                if job.idle_timeout.is_some_and(|idle| activity.last.elapsed() >= idle) {
                    break Some((AgentEnd::IdleTimedOut, Stop::Graceful));
                }
            }
        }
    };

    match &forced {
        None => {
            // Reported without delay when the agent left nothing behind:
            // two syscalls, no waiting.
            process::reap_group(pgid);
            if process::group_alive(pgid) {
                tracing::debug!(pgid, "agent left processes running; terminating them");
                let grace = job.grace.min(CLEANUP_GRACE);
                terminate(pgid, Stop::Graceful, grace, leader, stop).await;
            }
        }
        Some((end, how)) => {
            tracing::debug!(pgid, %end, "ending agent process group");
            let grace = if *how == Stop::Kill {
                Duration::ZERO
            } else {
                job.grace
            };
            let _ = events.send(AgentEvent::Terminating {
                why: end.clone(),
                kill_at_ms: epoch_ms_after(grace),
            });
            terminate(pgid, *how, job.grace, leader, stop).await;
        }
    }
    activity.observe(events);
    forced.map(|(end, _)| end)
}

/// Signs of life: log growth and status-file writes.
struct Activity {
    status: StatusWatch,
    log_path: PathBuf,
    log_len: Option<u64>,
    last: Instant,
}

impl Activity {
    fn new(job: &AgentJob) -> Activity {
        Activity {
            status: StatusWatch::new(&job.status_path),
            log_path: job.log_path.clone(),
            log_len: file_len(&job.log_path),
            last: Instant::now(),
        }
    }

    /// Polls both files once, forwarding a changed status.
    fn observe(&mut self, events: &mpsc::UnboundedSender<AgentEvent>) {
        let poll = self.status.poll();
        if let Some(status) = poll.status {
            let _ = events.send(AgentEvent::Status(status));
        }
        let len = file_len(&self.log_path);
        if poll.touched || len != self.log_len {
            self.log_len = len;
            self.last = Instant::now();
        }
    }
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Ends every process of group `pgid`: SIGTERM (or SIGKILL for
/// [`Stop::Kill`]), up to `grace` for the group to empty, then SIGKILL. A
/// [`Stop::Kill`] arriving during the grace escalates at once. Returns when
/// no live process of the group is left (or, stuck processes aside, shortly
/// after SIGKILL).
async fn terminate(
    pgid: u32,
    how: Stop,
    grace: Duration,
    leader: &mut Leader<'_>,
    stop: &mut watch::Receiver<Stop>,
) {
    let mut killed_at = None;
    let mut stop_open = true;
    let send = |signal: Signal| {
        if let Err(err) = process::signal_group(pgid, signal) {
            tracing::warn!(pgid, %err, "failed to send {} to the agent's process group", signal.as_str());
        }
    };
    if how == Stop::Kill {
        send(Signal::SIGKILL);
        killed_at = Some(Instant::now());
    } else {
        send(Signal::SIGTERM);
    }
    let grace_end = Instant::now() + grace;
    let mut tick = tokio::time::interval(process::GROUP_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Zombies count as group members until reaped; ours (orphans handed
        // to us as subreaper) may only be reaped once tokio has the leader's
        // status.
        if leader.has_ended() {
            process::reap_group(pgid);
            if !process::group_alive(pgid) {
                return;
            }
        }
        if killed_at.is_some_and(|at: Instant| at.elapsed() >= KILL_WAIT) {
            tracing::warn!(
                pgid,
                "processes of the agent's group survived SIGKILL; giving up on them"
            );
            return;
        }
        let leader_running = !leader.has_ended();
        tokio::select! {
            biased;
            () = leader.ended(), if leader_running => {}
            () = sleep_until(grace_end), if killed_at.is_none() => {
                send(Signal::SIGKILL);
                killed_at = Some(Instant::now());
            }
            changed = stop.changed(), if stop_open && killed_at.is_none() => match changed {
                Err(_) => stop_open = false,
                Ok(()) => {
                    if *stop.borrow_and_update() == Stop::Kill {
                        send(Signal::SIGKILL);
                        killed_at = Some(Instant::now());
                    }
                }
            },
            _ = tick.tick() => {}
        }
    }
}

/// The end reported by the wrapper's own exit status.
fn end_from_status(status: ExitStatus) -> AgentEnd {
    match (status.signal(), status.code()) {
        (Some(sig), _) => AgentEnd::Signaled(sig),
        (None, Some(code)) => end_from_code(code),
        (None, None) => AgentEnd::Unknown,
    }
}

/// Shell convention: status 128+N means "killed by signal N".
fn end_from_code(code: i32) -> AgentEnd {
    if (129..=128 + 31).contains(&code) {
        AgentEnd::Signaled(code - 128)
    } else {
        AgentEnd::Exited(code)
    }
}

/// The code recorded by the wrapper, read as [`end_from_code`] does.
fn end_from_exit_file(path: &Path) -> AgentEnd {
    read_exit_code(path).map_or(AgentEnd::Unknown, end_from_code)
}

/// The exit code the wrapper recorded at `path`, if any.
pub fn read_exit_code(path: &Path) -> Option<i32> {
    read_exit_record(path).map(|(code, _)| code)
}

/// The exit code the wrapper recorded at `path` and the attempt it belongs
/// to (`TREEFARM_ATTEMPT` of the agent, on the second line) when known.
pub fn read_exit_record(path: &Path) -> Option<(i32, Option<u32>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let code = lines.next()?.trim().parse().ok()?;
    let attempt = lines.next().and_then(|l| l.trim().parse().ok());
    Some((code, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_signal_codes_read_as_signals() {
        assert_eq!(end_from_code(0), AgentEnd::Exited(0));
        assert_eq!(end_from_code(128), AgentEnd::Exited(128));
        assert_eq!(end_from_code(137), AgentEnd::Signaled(9));
        assert_eq!(end_from_code(143), AgentEnd::Signaled(15));
        assert_eq!(end_from_code(255), AgentEnd::Exited(255));
    }

    #[test]
    fn exit_record_names_its_attempt_when_the_wrapper_knew_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exit_code");
        std::fs::write(&path, "3\n2\n").expect("write");
        assert_eq!(read_exit_record(&path), Some((3, Some(2))));
        assert_eq!(read_exit_code(&path), Some(3));
        std::fs::write(&path, "7\n\n").expect("write");
        assert_eq!(read_exit_record(&path), Some((7, None)));
        std::fs::write(&path, "0\n").expect("write");
        assert_eq!(read_exit_record(&path), Some((0, None)));
    }

    #[test]
    fn display_names_the_signal() {
        assert_eq!(
            AgentEnd::Signaled(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
