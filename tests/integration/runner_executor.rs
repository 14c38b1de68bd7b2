//! The per-agent executor against real processes: exit codes, log, env,
//! status events, timeouts that leave no process of the group alive, stop
//! requests, and re-attaching to an agent a previous coordinator started.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use treefarm::procfs;
use treefarm::runner::{
    agent_command, kill_group, read_exit_code, run_agent, set_child_subreaper, wait_detached,
    AgentEnd, AgentEvent, AgentJob, Stop,
};

/// Upper bound for anything a test waits on; far above what any step needs.
const BOUND: Duration = Duration::from_secs(60);

struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        set_child_subreaper().expect("become child subreaper");
        let dir = tempfile::Builder::new()
            .prefix("treefarm-runner")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("work")).expect("mkdir work");
        Sandbox { dir }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn job(&self, command: &str) -> AgentJob {
        let run = self.dir.path().join("run");
        AgentJob {
            command: command.to_string(),
            cwd: self.work(),
            env: vec![("TREEFARM_SPEC_ID".into(), "020".into())],
            log_path: run.join("logs/020.log"),
            status_path: run.join("020.status.json"),
            exit_path: run.join("020.exit"),
            timeout: None,
            idle_timeout: None,
            grace: Duration::from_millis(300),
            sandbox: None,
        }
    }

    fn log(&self, job: &AgentJob) -> String {
        std::fs::read_to_string(&job.log_path).unwrap_or_default()
    }
}

/// Runs `job` to its end in the background and hands back the channels.
struct Running {
    events: mpsc::UnboundedReceiver<AgentEvent>,
    stop: watch::Sender<Stop>,
    handle: tokio::task::JoinHandle<AgentEnd>,
}

impl Running {
    fn start(job: AgentJob) -> Running {
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let handle = tokio::spawn(run_agent(job, tx, stop_rx));
        Running {
            events,
            stop,
            handle,
        }
    }

    async fn started(&mut self) -> (u32, u64) {
        match tokio::time::timeout(BOUND, self.events.recv()).await {
            Ok(Some(AgentEvent::Started { pid, start_time })) => (pid, start_time),
            other => panic!("expected Started first, got {other:?}"),
        }
    }

    async fn end(self) -> (AgentEnd, Vec<AgentEvent>) {
        let Running {
            mut events,
            stop,
            handle,
        } = self;
        let end = tokio::time::timeout(BOUND, handle)
            .await
            .expect("agent ended within the bound")
            .expect("executor task");
        drop(stop);
        let mut rest = Vec::new();
        while let Ok(event) = events.try_recv() {
            rest.push(event);
        }
        (end, rest)
    }
}

async fn run(job: AgentJob) -> (AgentEnd, Vec<AgentEvent>) {
    let mut running = Running::start(job);
    running.started().await;
    running.end().await
}

/// Waits until `path` holds a non-empty line and returns it trimmed.
async fn wait_for_file(path: &Path) -> String {
    let until = Instant::now() + BOUND;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().to_string();
            }
        }
        assert!(Instant::now() < until, "{} never appeared", path.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            found.push(pid);
        }
    }
    found
}

fn statuses(events: &[AgentEvent]) -> Vec<Option<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Status(s) => Some(s.progress),
            AgentEvent::Started { .. } | AgentEvent::Terminating { .. } | AgentEvent::Job(_) => {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_zero_is_success_and_output_goes_to_the_log() {
    let sb = Sandbox::new();
    let job = sb.job("echo to-stdout; echo to-stderr >&2");
    let (end, _) = run(job.clone()).await;
    assert_eq!(end, AgentEnd::Exited(0));
    assert!(end.success());
    let log = sb.log(&job);
    assert!(
        log.contains("to-stdout") && log.contains("to-stderr"),
        "log: {log:?}"
    );
    assert_eq!(read_exit_code(&job.exit_path), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonzero_exit_code_is_reported_and_recorded() {
    let sb = Sandbox::new();
    let job = sb.job("exit 3");
    let (end, _) = run(job.clone()).await;
    assert_eq!(end, AgentEnd::Exited(3));
    assert_eq!(end.exit_code(), Some(3));
    assert_eq!(read_exit_code(&job.exit_path), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_is_appended_across_attempts() {
    let sb = Sandbox::new();
    let job = sb.job("echo attempt");
    run(job.clone()).await;
    run(job.clone()).await;
    assert_eq!(sb.log(&job).matches("attempt").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_by_a_signal_is_signaled() {
    let sb = Sandbox::new();
    let (end, _) = run(sb.job("kill -9 $$")).await;
    assert_eq!(end, AgentEnd::Signaled(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_cwd_reach_the_agent() {
    let sb = Sandbox::new();
    let job = sb.job(r#"echo "id=$TREEFARM_SPEC_ID status=$TREEFARM_STATUS_FILE cwd=$(pwd)""#);
    let (end, _) = run(job.clone()).await;
    assert_eq!(end, AgentEnd::Exited(0));
    let log = sb.log(&job);
    assert!(log.contains("id=020"), "log: {log}");
    assert!(
        log.contains(&format!("status={}", job.status_path.display())),
        "log: {log}"
    );
    assert!(
        log.contains(&format!("cwd={}", sb.work().display())),
        "log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_worktree_is_a_spawn_failure() {
    let sb = Sandbox::new();
    let mut job = sb.job("true");
    job.cwd = sb.dir.path().join("no-such-worktree");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop, stop_rx) = watch::channel(Stop::Run);
    let end = run_agent(job, tx, stop_rx).await;
    match end {
        AgentEnd::SpawnFailed(msg) => assert!(msg.contains("no-such-worktree"), "{msg}"),
        other => panic!("expected SpawnFailed, got {other:?}"),
    }
    assert!(
        rx.try_recv().is_err(),
        "no Started event for an agent that never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_become_events_and_garbage_is_ignored() {
    let sb = Sandbox::new();
    let ack = sb.dir.path().join("ack");
    let job = sb.job(&format!(
        r#"printf '{{"state":"working","progress":10,"message":"first"}}' > "$TREEFARM_STATUS_FILE"
           while [ ! -e '{ack}' ]; do sleep 0.01; done
           printf 'not json' > "$TREEFARM_STATUS_FILE"
           printf '{{"state":"done","progress":100,"message":"last"}}' > "$TREEFARM_STATUS_FILE""#,
        ack = ack.display()
    ));
    let mut running = Running::start(job);
    running.started().await;
    match tokio::time::timeout(BOUND, running.events.recv()).await {
        Ok(Some(AgentEvent::Status(s))) => {
            assert_eq!(s.progress, Some(10));
            assert_eq!(s.message.as_deref(), Some("first"));
        }
        other => panic!("expected the first status, got {other:?}"),
    }
    std::fs::write(&ack, "").expect("write ack");
    let (end, rest) = running.end().await;
    assert_eq!(end, AgentEnd::Exited(0));
    // The last status is written just before the exit and still delivered.
    assert_eq!(statuses(&rest), vec![Some(100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_a_term_ignoring_agent_and_its_grandchild() {
    let sb = Sandbox::new();
    let mut job = sb.job(
        "trap '' TERM; echo $$ > agent.pid; \
         (trap '' TERM; exec sleep 1000) & echo $! > grandchild.pid; \
         while :; do sleep 1; done",
    );
    // Long enough for the pids to be read while the processes live.
    job.timeout = Some(Duration::from_secs(4));
    job.grace = Duration::from_millis(300);
    let mut running = Running::start(job);
    let (leader, leader_start) = running.started().await;
    let mut pids = vec![(leader, leader_start)];
    for name in ["agent.pid", "grandchild.pid"] {
        let pid: u32 = wait_for_file(&sb.work().join(name))
            .await
            .parse()
            .expect("pid");
        let start = procfs::start_time(pid).expect("alive before the timeout");
        pids.push((pid, start));
    }
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::TimedOut);
    for (pid, start) in pids {
        assert!(
            !procfs::is_alive(pid, Some(start)),
            "pid {pid} survived the timeout"
        );
    }
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_process_left_after_a_normal_exit_is_killed() {
    let sb = Sandbox::new();
    let job = sb.job(
        "(trap '' TERM; exec sleep 1000) & echo $! > grandchild.pid; \
         while [ ! -e ack ]; do sleep 0.01; done; exit 0",
    );
    let mut running = Running::start(job);
    let (leader, _) = running.started().await;
    let pid: u32 = wait_for_file(&sb.work().join("grandchild.pid"))
        .await
        .parse()
        .expect("pid");
    let start = Some(procfs::start_time(pid).expect("grandchild alive"));
    std::fs::write(sb.work().join("ack"), "").expect("ack");
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::Exited(0));
    assert!(
        !procfs::is_alive(pid, start),
        "grandchild survived its agent"
    );
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_fires_for_a_silent_agent() {
    let sb = Sandbox::new();
    let mut job = sb.job("echo one line; sleep 1000");
    job.idle_timeout = Some(Duration::from_millis(400));
    job.timeout = Some(BOUND);
    let mut running = Running::start(job);
    let (leader, _) = running.started().await;
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::IdleTimedOut);
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_spares_an_agent_that_keeps_logging() {
    let sb = Sandbox::new();
    let mut job = sb.job("i=0; while [ $i -lt 20 ]; do echo tick $i; sleep 0.1; i=$((i+1)); done");
    job.idle_timeout = Some(Duration::from_millis(1500));
    let (end, _) = run(job).await;
    assert_eq!(end, AgentEnd::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_spares_an_agent_that_keeps_updating_its_status() {
    let sb = Sandbox::new();
    let mut job = sb.job(
        r#"i=0; while [ $i -lt 20 ]; do
             printf '{"progress":%s}' $((i * 5)) > "$TREEFARM_STATUS_FILE"; sleep 0.1; i=$((i+1))
           done"#,
    );
    job.idle_timeout = Some(Duration::from_millis(1500));
    let (end, _) = run(job).await;
    assert_eq!(end, AgentEnd::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_terminates_the_group_and_the_wrapper_records_the_code() {
    let sb = Sandbox::new();
    let job = sb.job("echo > ready; exec sleep 1000");
    let exit_path = job.exit_path.clone();
    let mut running = Running::start(job);
    let (leader, _) = running.started().await;
    // The agent runs, so the wrapper has set its trap: a SIGTERM in the
    // wrapper's first instants would end it before it can record a code.
    wait_for_file(&sb.work().join("ready")).await;
    running.stop.send(Stop::Graceful).expect("send stop");
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::Stopped);
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
    // The wrapper outlives SIGTERM until the agent is gone: 128 + SIGTERM.
    assert_eq!(read_exit_code(&exit_path), Some(143));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stop_does_not_wait_for_the_grace_period() {
    let sb = Sandbox::new();
    let mut job = sb.job("trap '' TERM; while :; do sleep 1; done");
    job.grace = Duration::from_secs(3600);
    let mut running = Running::start(job);
    let (leader, _) = running.started().await;
    running.stop.send(Stop::Kill).expect("send stop");
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::Stopped);
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_escalates_a_graceful_stop_under_way() {
    let sb = Sandbox::new();
    let mut job = sb
        .job("trap 'echo term > got-term' TERM; echo > ready; while :; do sleep 1 & wait $!; done");
    job.grace = Duration::from_secs(3600);
    let mut running = Running::start(job);
    let (leader, _) = running.started().await;
    // A SIGTERM before the trap is set would simply end the agent.
    wait_for_file(&sb.work().join("ready")).await;
    running.stop.send(Stop::Graceful).expect("send graceful");
    wait_for_file(&sb.work().join("got-term")).await;
    running.stop.send(Stop::Kill).expect("send kill");
    let (end, _) = running.end().await;
    assert_eq!(end, AgentEnd::Stopped);
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_requested_before_the_start_starts_nothing() {
    let sb = Sandbox::new();
    let job = sb.job("echo should-not-run");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop, stop_rx) = watch::channel(Stop::Graceful);
    assert_eq!(run_agent(job.clone(), tx, stop_rx).await, AgentEnd::Stopped);
    assert!(rx.try_recv().is_err());
    assert!(!sb.log(&job).contains("should-not-run"));
}

/// Starts `job` the way the executor does, then forgets the handle, as a
/// coordinator that died would.
fn spawn_detached(job: &AgentJob) -> (u32, u64) {
    let child = agent_command(job).expect("command").spawn().expect("spawn");
    let pid = child.id();
    let start = procfs::start_time(pid).expect("start time");
    drop(child);
    (pid, start)
}

async fn attach(pid: u32, start: u64, job: &AgentJob) -> AgentEnd {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_stop, stop_rx) = watch::channel(Stop::Run);
    tokio::time::timeout(
        BOUND,
        wait_detached(pid, start, &job.exit_path, job, tx, stop_rx),
    )
    .await
    .expect("wait_detached ended within the bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_detached_returns_the_code_of_a_running_agent() {
    let sb = Sandbox::new();
    let job = sb.job("sleep 0.3; exit 7");
    let (pid, start) = spawn_detached(&job);
    assert_eq!(attach(pid, start, &job).await, AgentEnd::Exited(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_detached_on_an_agent_that_already_ended() {
    let sb = Sandbox::new();
    let job = sb.job("exit 5");
    let (pid, start) = spawn_detached(&job);
    wait_for_file(&job.exit_path).await;
    assert_eq!(attach(pid, start, &job).await, AgentEnd::Exited(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_detached_enforces_the_timeout_on_the_whole_group() {
    let sb = Sandbox::new();
    let mut job =
        sb.job("trap '' TERM; (trap '' TERM; exec sleep 1000) & while :; do sleep 1; done");
    job.timeout = Some(Duration::from_millis(300));
    job.grace = Duration::from_millis(200);
    let (pid, start) = spawn_detached(&job);
    assert_eq!(attach(pid, start, &job).await, AgentEnd::TimedOut);
    assert_eq!(live_group_members(pid), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_detached_without_exit_file_is_unknown() {
    let sb = Sandbox::new();
    let job = sb.job("sleep 1000");
    let (pid, start) = spawn_detached(&job);
    let waiter = {
        let job = job.clone();
        tokio::spawn(async move { attach(pid, start, &job).await })
    };
    // Killed from outside while "no coordinator" watched: nothing records a code.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("killpg");
    assert_eq!(waiter.await.expect("task"), AgentEnd::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_detached_never_signals_a_reused_pid() {
    let sb = Sandbox::new();
    let mut job = sb.job("true");
    job.timeout = Some(Duration::ZERO);
    // Our own pid with another start time: a recycled pid, not the agent.
    let me = std::process::id();
    let wrong_start = procfs::start_time(me).expect("own start") + 1;
    assert_eq!(attach(me, wrong_start, &job).await, AgentEnd::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_group_ends_a_foreign_term_ignoring_group() {
    let _sb = Sandbox::new();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "trap '' TERM; (exec sleep 1000) & sleep 1000"])
        .process_group(0);
    let child = cmd.spawn().expect("spawn");
    let pgid = child.id();
    drop(child);
    assert!(kill_group(pgid, Duration::from_millis(200)).await);
    assert_eq!(live_group_members(pgid), Vec::<u32>::new());
}

/// Measures how long `run_agent` takes to return after the agent's command
/// ends (`true`): from the command's last timestamp to our return, which
/// includes the wrapper's own tail (recording the exit code). Run with
/// `cargo test --test integration runner_executor:: -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints timings"]
async fn measure_exit_to_return_delay() {
    let sb = Sandbox::new();
    let ended_ns = |sb: &Sandbox| -> u128 {
        std::fs::read_to_string(sb.work().join("ended"))
            .expect("timestamp")
            .trim()
            .parse()
            .expect("ns")
    };
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    };
    let mut exit_to_return = Vec::new();
    let mut baseline = Vec::new();
    let mut total = Vec::new();
    for _ in 0..20 {
        let job = sb.job("date +%s%N > ended; true");
        // Baseline: the same wrapper under a blocking std `wait`, i.e. the
        // wrapper's own tail with no async machinery at all.
        agent_command(&job)
            .expect("command")
            .status()
            .expect("status");
        baseline.push(Duration::from_nanos((now_ns() - ended_ns(&sb)) as u64));
        let began = Instant::now();
        let (end, _) = run(job).await;
        let returned = now_ns();
        total.push(began.elapsed());
        assert_eq!(end, AgentEnd::Exited(0));
        exit_to_return.push(Duration::from_nanos((returned - ended_ns(&sb)) as u64));
    }
    baseline.sort();
    exit_to_return.sort();
    total.sort();
    eprintln!(
        "command end -> run_agent returned: median {:?} (min {:?}, max {:?}); \
         same wrapper under blocking std wait: median {:?}; whole run_agent: median {:?}",
        exit_to_return[10], exit_to_return[0], exit_to_return[19], baseline[10], total[10]
    );
}
