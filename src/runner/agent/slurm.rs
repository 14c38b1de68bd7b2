//! The Slurm executor: each agent attempt is one batch job running
//! `treefarm agent-exec --job FILE` (the local executor's own agent
//! command, Landlock applied inside the job), followed by one shared poller
//! per run and judged by the exit file the job leaves on shared storage.
//!
//! - [`SlurmRunner`]: the run's side — the counted Slurm client, the one
//!   `squeue` poller that serves every job of the run (batched by name,
//!   backing off while nothing changes, never above the controller's
//!   `MinJobAge`), and the batching of cancels (a Ctrl-C is one `scancel`
//!   call for all jobs).
//! - [`SlurmAttempt`]: one attempt's job ([`Executor`]): written beside the
//!   attempt (job file, script), its name journalled and committed before
//!   `sbatch` (the intent; its id after), submitted, followed through `pending` (the
//!   reason; one that never clears cancels it) and `running` (the
//!   timeout's clock starts here), stopped with `scancel` (signal, grace,
//!   cancel), and judged from the exit file (`exit_grace` for shared file
//!   systems), with Slurm's state as the reason when the job was lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};

use super::exec::write_job_file;
use super::executor::{AgentJob, Executor};
use super::local::read_exit_record;
use super::status_file::StatusWatch;
use crate::runner::messages::{AgentEnd, AgentEvent, JobIntent, JobUpdate, Stop};
use crate::slurm::{
    classify, Attempt, CallCounts, JobId, JobName, JobRow, JobState, PollInterval, Slurm,
    SlurmConfig,
};

/// How long cancels are gathered before the one `scancel` that sends them
/// (every instance hears a Ctrl-C at once).
const CANCEL_GATHER: Duration = Duration::from_millis(100);
/// How often the exit file is looked for after the job left the queue.
const EXIT_POLL: Duration = Duration::from_millis(200);
/// How often the status file and the log are looked at while the job runs.
const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long a job Slurm lost is watched for its requeue (`requeue: true`)
/// before it is judged as ended.
const REQUEUE_WAIT: Duration = Duration::from_secs(60);
/// How long a cancelled job may take to leave `RUNNING` before treefarm
/// stops waiting for it (Slurm's own `KillWait` is 30 s by default).
const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// What the poller last saw of one job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seen {
    /// Not asked about yet.
    #[default]
    NotYet,
    /// Listed by `squeue` (pending, running or ended less than `MinJobAge`
    /// ago).
    Listed(JobRow),
    /// Asked about and not listed: it left the queue (or never entered it).
    Gone,
}

/// A cancel the poller sends, gathered with the others of the same kind.
#[derive(Debug, Clone, Copy)]
enum CancelReq {
    /// `scancel --signal=TERM --full`: the agent is asked to end.
    Term(JobId),
    /// `scancel`: the job is ended.
    Kill(JobId),
}

/// The Slurm side of one run: the client (every call counted), the shared
/// poller and the cancel batcher. One per coordinator.
#[derive(Debug)]
pub struct SlurmRunner {
    run_id: String,
    config: SlurmConfig,
    client: Slurm,
    polls: AtomicU64,
    /// The jobs being followed, by name, and what the poller last saw.
    watched: Mutex<HashMap<String, watch::Sender<Seen>>>,
    /// A job was added: poll soon.
    wake: Arc<Notify>,
    cancels: mpsc::UnboundedSender<CancelReq>,
    /// Where each attempt's job intent goes to be journalled before
    /// `sbatch` (the dispatcher holds the other end).
    intents: mpsc::UnboundedSender<JobIntent>,
    /// The `treefarm` each job runs on its node ([`treefarm_on_nodes`]).
    exe: PathBuf,
}

impl SlurmRunner {
    /// Starts the poller and the cancel batcher of run `run_id` (on the
    /// current tokio runtime); `MinJobAge` is asked once, for the back-off's
    /// ceiling. The receiver is where each attempt's [`JobIntent`] arrives:
    /// its `sbatch` waits until the intent is answered (journalled).
    pub async fn start(
        run_id: &str,
        config: SlurmConfig,
    ) -> (Arc<SlurmRunner>, mpsc::UnboundedReceiver<JobIntent>) {
        let (cancels, cancel_rx) = mpsc::unbounded_channel();
        let (intents, intent_rx) = mpsc::unbounded_channel();
        let exe = treefarm_on_nodes(&config);
        let runner = Arc::new(SlurmRunner {
            run_id: run_id.to_string(),
            config,
            client: Slurm::new(),
            polls: AtomicU64::new(0),
            watched: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            cancels,
            intents,
            exe,
        });
        let min_job_age = match runner.client.min_job_age().await {
            Ok(age) => Some(age),
            Err(err) => {
                tracing::warn!(%err, "cannot read the controller's MinJobAge; polling at most every minute");
                None
            }
        };
        let interval = PollInterval::new(runner.config.poll, min_job_age);
        tokio::spawn(poll_loop(Arc::downgrade(&runner), interval));
        tokio::spawn(cancel_loop(Arc::downgrade(&runner), cancel_rx));
        (runner, intent_rx)
    }

    /// The calls made so far, and the polls among them.
    pub fn counts(&self) -> (CallCounts, u64) {
        (self.client.counts(), self.polls.load(Ordering::Relaxed))
    }

    /// The jobs named `names`, in one `squeue` call (recovery).
    pub async fn lookup(
        &self,
        names: &[JobName],
    ) -> Result<crate::slurm::QueueSnapshot, crate::slurm::SlurmError> {
        self.client.queue(names).await
    }

    /// Cancels `ids` at once, in one `scancel` call (recovery).
    pub async fn cancel_now(&self, ids: &[JobId]) {
        if let Err(err) = self.client.cancel(ids).await {
            tracing::warn!(%err, "scancel failed");
        }
    }

    /// Follows job `name`: what the poller sees of it, from its next poll.
    fn watch(&self, name: &JobName) -> watch::Receiver<Seen> {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut rx = watched
            .entry(name.to_string())
            .or_insert_with(|| watch::channel(Seen::NotYet).0)
            .subscribe();
        drop(watched);
        // What is known already counts as news to this follower.
        rx.mark_changed();
        self.wake.notify_one();
        rx
    }

    fn unwatch(&self, name: &JobName) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.remove(&name.to_string());
    }

    fn cancel(&self, req: CancelReq) {
        let _ = self.cancels.send(req);
    }

    /// Whether merge-queue gates run as batch jobs too (`slurm.gates`).
    pub fn runs_gates(&self) -> bool {
        self.config.gates
    }

    /// Gate run `run`'s job (the run's `slurm:` settings; no spec's
    /// override applies to a gate).
    pub fn gate(self: &Arc<Self>, run: u64) -> SlurmAttempt {
        SlurmAttempt {
            runner: self.clone(),
            name: JobName::gate(&self.run_id, u32::try_from(run).unwrap_or(u32::MAX).max(1)),
            config: self.config.clone(),
        }
    }

    /// Cancels, in one `scancel` call, the gate jobs of this run that are
    /// still queued or running — a killed coordinator's, found by their
    /// names in one `squeue` call of the user's jobs; the ids cancelled.
    /// (The queue gates again whatever it still needs.) Without
    /// `slurm.gates` there are none, and nothing is asked.
    pub async fn cancel_gates_left(&self) -> Result<Vec<JobId>, crate::slurm::SlurmError> {
        if !self.config.gates {
            return Ok(Vec::new());
        }
        let left = self.client.user_jobs().await?.live_gates(&self.run_id);
        self.client.cancel(&left).await?;
        Ok(left)
    }

    /// One attempt of `spec` (`resolve`: a conflict hand-back), with the
    /// spec's own `slurm:` settings.
    pub fn attempt(
        self: &Arc<Self>,
        spec: &crate::spec::Spec,
        number: u32,
        resolve: bool,
    ) -> SlurmAttempt {
        let kind = if resolve {
            crate::slurm::JobKind::Resolve
        } else {
            crate::slurm::JobKind::Attempt
        };
        let config = match &spec.slurm {
            Some(o) => self.config.with_override(o),
            None => self.config.clone(),
        };
        SlurmAttempt {
            runner: self.clone(),
            name: JobName::new(&self.run_id, &spec.id, kind, number.max(1)),
            config,
        }
    }
}

/// The shared poller: one `squeue` for every followed job per turn; the
/// wait doubles while nothing changes (up to the ceiling below
/// `MinJobAge`) and starts again at `slurm.poll` after any change or a new
/// job. Ends with the run (its runner dropped).
async fn poll_loop(runner: std::sync::Weak<SlurmRunner>, mut interval: PollInterval) {
    loop {
        let Some(r) = runner.upgrade() else { return };
        let names: Vec<JobName> = {
            let watched = r.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched.keys().filter_map(|n| JobName::parse(n)).collect()
        };
        let mut wait = interval.current();
        if !names.is_empty() {
            r.polls.fetch_add(1, Ordering::Relaxed);
            match r.client.queue(&names).await {
                Ok(snapshot) => {
                    let mut changed = false;
                    let watched = r.watched.lock().unwrap_or_else(|p| p.into_inner());
                    for name in &names {
                        let Some(tx) = watched.get(&name.to_string()) else {
                            continue;
                        };
                        let text = name.to_string();
                        let seen = snapshot
                            .rows
                            .iter()
                            .filter(|row| row.name == text)
                            .max_by_key(|row| row.id)
                            .cloned()
                            .map_or(Seen::Gone, Seen::Listed);
                        changed |= tx.send_if_modified(|old| {
                            if *old == seen {
                                false
                            } else {
                                *old = seen;
                                true
                            }
                        });
                    }
                    wait = interval.after_poll(changed);
                }
                Err(err) => {
                    tracing::warn!(%err, "squeue failed; asking again later");
                    wait = interval.after_poll(false);
                }
            }
        }
        let notify = r.wake.clone();
        drop(r);
        tokio::select! {
            () = sleep(wait) => {}
            () = notify.notified() => {
                // A new job: see it soon, then back off again.
                interval.after_poll(true);
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Gathers cancels for [`CANCEL_GATHER`] and sends each kind in one
/// `scancel` call.
async fn cancel_loop(
    runner: std::sync::Weak<SlurmRunner>,
    mut rx: mpsc::UnboundedReceiver<CancelReq>,
) {
    while let Some(first) = rx.recv().await {
        sleep(CANCEL_GATHER).await;
        let mut reqs = vec![first];
        while let Ok(req) = rx.try_recv() {
            reqs.push(req);
        }
        let Some(r) = runner.upgrade() else { return };
        let mut term: Vec<JobId> = Vec::new();
        let mut kill: Vec<JobId> = Vec::new();
        for req in reqs {
            match req {
                CancelReq::Term(id) => term.push(id),
                CancelReq::Kill(id) => kill.push(id),
            }
        }
        kill.sort();
        kill.dedup();
        term.retain(|id| !kill.contains(id));
        term.sort();
        term.dedup();
        if let Err(err) = r.client.signal(&term, "TERM").await {
            tracing::warn!(%err, "scancel --signal=TERM failed");
        }
        if let Err(err) = r.client.cancel(&kill).await {
            tracing::warn!(%err, "scancel failed");
        }
    }
}

/// The `treefarm` the jobs run on their nodes: `slurm.treefarm`, else
/// this coordinator's own executable (at the same path on the nodes).
pub fn treefarm_on_nodes(config: &SlurmConfig) -> PathBuf {
    config
        .treefarm
        .clone()
        .unwrap_or_else(|| std::env::current_exe().unwrap_or_else(|_| PathBuf::from("treefarm")))
}

/// What a person is told of gate run `run`'s job when it changes:
/// submitted, pending (and why), running; none for the rest (the gate's
/// own result says how it ended).
pub fn describe_gate_job(run: u64, update: &JobUpdate) -> Option<String> {
    let id = update.id?;
    let what = match (update.state.as_deref(), &update.reason) {
        (None, _) => "submitted".to_string(),
        (Some("PENDING" | "REQUEUED"), Some(reason)) => format!("pending: {reason}"),
        (Some("PENDING" | "REQUEUED"), None) => "pending".to_string(),
        (Some("RUNNING"), _) => "running".to_string(),
        _ => return None,
    };
    Some(format!("gate run {run}: Slurm job {id} {what}"))
}

/// One attempt's batch job.
#[derive(Debug, Clone)]
pub struct SlurmAttempt {
    runner: Arc<SlurmRunner>,
    name: JobName,
    /// The run's `slurm:` with the spec's override.
    config: SlurmConfig,
}

/// The Slurm executor's handle on an attempt: its job's name, and its id
/// once known.
#[derive(Debug, Clone)]
pub struct JobHandle {
    pub name: JobName,
    pub id: Option<JobId>,
}

/// The file beside an attempt in which builds before the journalled intent
/// named its job before `sbatch` (and its id after). Only read: a run such
/// a build left is resumed with its jobs found.
pub fn intent_path(instance_dir: &Path) -> PathBuf {
    instance_dir.join("slurm-job")
}

/// The job named in the intent file of `instance_dir` (see
/// [`intent_path`]), and its id when it was written after `sbatch`
/// answered.
pub fn read_intent(instance_dir: &Path) -> Option<(JobName, Option<JobId>)> {
    let text = std::fs::read_to_string(intent_path(instance_dir)).ok()?;
    let mut lines = text.lines();
    let name = JobName::parse(lines.next()?.trim())?;
    let id = lines.next().and_then(|l| l.trim().parse().ok()).map(JobId);
    Some((name, id))
}

impl Executor for SlurmAttempt {
    type Handle = JobHandle;

    fn spawn(
        &self,
        job: AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl std::future::Future<Output = AgentEnd> + Send {
        let this = self.clone();
        async move { this.submit_and_follow(job, events, stop).await }
    }

    fn reattach(
        &self,
        handle: JobHandle,
        job: &AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> impl std::future::Future<Output = AgentEnd> + Send {
        let this = self.clone();
        let job = job.clone();
        async move {
            let follow = Follow::new(&this, handle.id, &job, events, stop);
            follow.run().await
        }
    }

    fn finish_termination(
        &self,
        handle: JobHandle,
        kill_at_ms: u64,
        why: AgentEnd,
        _stop: watch::Receiver<Stop>,
    ) -> impl std::future::Future<Output = AgentEnd> + Send {
        let this = self.clone();
        async move {
            let now = crate::state::now_ms();
            sleep(Duration::from_millis(kill_at_ms.saturating_sub(now))).await;
            this.cancel(handle, Duration::ZERO).await;
            why
        }
    }

    fn cancel(
        &self,
        handle: JobHandle,
        grace: Duration,
    ) -> impl std::future::Future<Output = bool> + Send {
        let this = self.clone();
        async move {
            let mut rx = this.runner.watch(&handle.name);
            let id = match handle.id {
                Some(id) => Some(id),
                None => first_id(&mut rx).await,
            };
            let Some(id) = id else {
                this.runner.unwatch(&handle.name);
                return true;
            };
            if !grace.is_zero() {
                this.runner.cancel(CancelReq::Term(id));
                let _ = tokio::time::timeout(grace, ended(&mut rx)).await;
            }
            this.runner.cancel(CancelReq::Kill(id));
            let gone = tokio::time::timeout(CANCEL_WAIT, ended(&mut rx))
                .await
                .is_ok();
            this.runner.unwatch(&handle.name);
            gone
        }
    }

    fn exit_record(&self, exit_path: &Path) -> Option<(i32, Option<u32>)> {
        read_exit_record(exit_path)
    }
}

/// The job's id, from the poller's next answers (none: not in the queue).
async fn first_id(rx: &mut watch::Receiver<Seen>) -> Option<JobId> {
    loop {
        match &*rx.borrow_and_update() {
            Seen::Listed(row) => return Some(row.id),
            Seen::Gone => return None,
            Seen::NotYet => {}
        }
        rx.changed().await.ok()?;
    }
}

/// Resolves when the job has ended or left the queue.
async fn ended(rx: &mut watch::Receiver<Seen>) {
    loop {
        match &*rx.borrow_and_update() {
            Seen::Listed(row) if row.state.is_finished() => return,
            Seen::Gone => return,
            _ => {}
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl SlurmAttempt {
    /// The job's name (unique to run, spec and attempt).
    pub fn name(&self) -> &JobName {
        &self.name
    }

    async fn submit_and_follow(
        &self,
        job: AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        mut stop: watch::Receiver<Stop>,
    ) -> AgentEnd {
        if *stop.borrow_and_update() != Stop::Run {
            return AgentEnd::Stopped;
        }
        let id = match self.submit(&job, &events).await {
            Ok(id) => id,
            Err(end) => return end,
        };
        Follow::new(self, Some(id), &job, events, stop).run().await
    }

    /// The job's name made durable before `sbatch`: an attempt's is
    /// journalled as its instance's `job` and committed (the dispatcher
    /// answers once it is); a gate run's is only shown — a killed
    /// coordinator's gate jobs are found by their names' prefix and
    /// cancelled, never followed.
    async fn journal_intent(
        &self,
        events: &mpsc::UnboundedSender<AgentEvent>,
    ) -> Result<(), AgentEnd> {
        if self.name.kind == crate::slurm::JobKind::Gate {
            let _ = events.send(AgentEvent::Job(JobUpdate {
                name: self.name.to_string(),
                id: None,
                state: None,
                reason: None,
            }));
            return Ok(());
        }
        let (durable, journalled) = oneshot::channel();
        let intent = JobIntent {
            id: self.name.spec.clone(),
            name: self.name.to_string(),
            durable,
        };
        let gone = || {
            AgentEnd::SpawnFailed(format!(
                "the run ended before the intent to submit `{}` was journalled; nothing was submitted",
                self.name
            ))
        };
        self.runner.intents.send(intent).map_err(|_| gone())?;
        journalled.await.map_err(|_| gone())?;
        crate::state::crash_point("slurm-intent");
        Ok(())
    }

    /// Writes the job's files beside the attempt, journals the intent, runs
    /// `sbatch`, records the id. `Err`: the attempt's end (it could not be
    /// submitted).
    async fn submit(
        &self,
        job: &AgentJob,
        events: &mpsc::UnboundedSender<AgentEvent>,
    ) -> Result<JobId, AgentEnd> {
        let failed = |what: String| AgentEnd::SpawnFailed(what);
        let instance_dir = job
            .exit_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        std::fs::create_dir_all(&instance_dir)
            .map_err(|e| failed(format!("cannot create `{}`: {e}", instance_dir.display())))?;
        // The job removes them too; removed here first so that no stale exit
        // file from an earlier attempt is read as this one's.
        for path in [&job.exit_path, &job.status_path] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(failed(format!(
                        "cannot remove the stale `{}`: {e}",
                        path.display()
                    )));
                }
                _ => {}
            }
        }
        let tag = self.name.tag();
        let job_file = instance_dir.join(format!("job-{tag}.json"));
        let script = instance_dir.join(format!("job-{tag}.sh"));
        let output = instance_dir.join(format!("job-{tag}.out"));
        write_job_file(job, &job_file).map_err(|e| failed(crate::error::chain(&e)))?;
        let quote = |p: &Path| crate::agents::shell_quote(&p.to_string_lossy());
        let text = format!(
            "#!/bin/sh\n# treefarm: {} — the agent, as the local executor runs it\nexec {} agent-exec --job {}\n",
            self.name,
            quote(&self.runner.exe),
            quote(&job_file)
        );
        std::fs::write(&script, text)
            .map_err(|e| failed(format!("cannot write `{}`: {e}", script.display())))?;
        self.journal_intent(events).await?;
        let attempt = Attempt {
            name: &self.name,
            script: &script,
            workdir: &job.cwd,
            log: &output,
            agent_timeout: job.timeout,
        };
        let id = self
            .runner
            .client
            .submit(&self.config, &attempt)
            .await
            .map_err(|e| {
                failed(format!(
                    "sbatch refused the job: {}",
                    crate::error::chain(&e)
                ))
            })?;
        crate::state::crash_point("slurm-submitted");
        let _ = events.send(AgentEvent::Job(JobUpdate {
            name: self.name.to_string(),
            id: Some(id.0),
            state: None,
            reason: None,
        }));
        Ok(id)
    }
}

/// Following one job to its end.
struct Follow<'a> {
    attempt: &'a SlurmAttempt,
    id: Option<JobId>,
    job: &'a AgentJob,
    events: mpsc::UnboundedSender<AgentEvent>,
    stop: watch::Receiver<Stop>,
}

impl<'a> Follow<'a> {
    fn new(
        attempt: &'a SlurmAttempt,
        id: Option<JobId>,
        job: &'a AgentJob,
        events: mpsc::UnboundedSender<AgentEvent>,
        stop: watch::Receiver<Stop>,
    ) -> Follow<'a> {
        Follow {
            attempt,
            id,
            job,
            events,
            stop,
        }
    }

    fn report(&self, row: &JobRow) {
        let _ = self.events.send(AgentEvent::Job(JobUpdate {
            name: self.attempt.name.to_string(),
            id: Some(row.id.0),
            state: Some(row.state.as_str().to_string()),
            reason: row.reason.clone().filter(|_| row.state.is_pending()),
        }));
    }

    async fn run(mut self) -> AgentEnd {
        let runner = self.attempt.runner.clone();
        let mut rx = runner.watch(&self.attempt.name);
        let end = self.follow(&mut rx).await;
        runner.unwatch(&self.attempt.name);
        end
    }

    async fn follow(&mut self, rx: &mut watch::Receiver<Seen>) -> AgentEnd {
        let max_pending = self.attempt.config.max_pending;
        let mut last: Option<JobRow> = None;
        let mut started = false;
        let mut deadline: Option<Instant> = None;
        let mut pending_since = Instant::now();
        let mut status = StatusWatch::new(&self.job.status_path);
        let mut activity = Instant::now();
        let mut log_len = file_len(&self.job.log_path);
        let mut tick = tokio::time::interval(STATUS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_open = true;
        let mut requeue_until: Option<Instant> = None;
        let forced: Option<(AgentEnd, Stop)> = loop {
            tokio::select! {
                biased;
                changed = rx.changed() => {
                    if changed.is_err() {
                        break Some((AgentEnd::SpawnFailed("the Slurm poller stopped".into()), Stop::Kill));
                    }
                    let seen = rx.borrow_and_update().clone();
                    match seen {
                        Seen::NotYet => {}
                        Seen::Gone => break None,
                        Seen::Listed(row) => {
                            self.id = Some(row.id);
                            if last.as_ref() != Some(&row) {
                                if !last.as_ref().is_some_and(|l| l.state.is_pending()) && row.state.is_pending() {
                                    pending_since = Instant::now();
                                }
                                self.report(&row);
                            }
                            let running = matches!(row.state, JobState::Running | JobState::Completing);
                            if running && !started {
                                started = true;
                                activity = Instant::now();
                                let _ = self.events.send(AgentEvent::Started { pid: 0, start_time: 0 });
                                deadline = self.job.timeout.map(|t| Instant::now() + t);
                            }
                            if row.state.is_pending() {
                                // A requeued job runs again: its clock too.
                                started = false;
                                deadline = None;
                                let pending = classify(row.reason.as_deref().unwrap_or(""));
                                if let crate::slurm::Pending::Never { reason, fix } = pending {
                                    last = Some(row);
                                    break Some((AgentEnd::NeverStarts(format!(
                                        "Slurm job {} can never start ({reason}): {fix}",
                                        self.id.map_or(String::new(), |i| i.to_string())
                                    )), Stop::Kill));
                                }
                            }
                            let finished = row.state.is_finished();
                            // With `requeue: true` Slurm may bring a job it
                            // lost back as pending (same id): wait for that
                            // before judging it, never submit a second.
                            let requeuable = self.attempt.config.requeue
                                && matches!(row.state, JobState::NodeFail | JobState::Preempted | JobState::BootFail);
                            last = Some(row);
                            if finished && requeuable {
                                requeue_until.get_or_insert_with(|| Instant::now() + REQUEUE_WAIT);
                            } else if finished {
                                break None;
                            } else {
                                requeue_until = None;
                            }
                        }
                    }
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    break Some((AgentEnd::TimedOut, Stop::Graceful));
                }
                changed = self.stop.changed(), if stop_open => match changed {
                    Err(_) => stop_open = false,
                    Ok(()) => match *self.stop.borrow_and_update() {
                        Stop::Run => {}
                        how => break Some((AgentEnd::Stopped, how)),
                    },
                },
                _ = tick.tick() => {
                    if requeue_until.is_some_and(|t| Instant::now() >= t) {
                        break None;
                    }
                    if started {
                        let poll = status.poll();
                        if let Some(s) = poll.status {
                            let _ = self.events.send(AgentEvent::Status(s));
                        }
                        let len = file_len(&self.job.log_path);
                        if poll.touched || len != log_len {
                            log_len = len;
                            activity = Instant::now();
                        }
                        if self.job.idle_timeout.is_some_and(|idle| activity.elapsed() >= idle) {
                            break Some((AgentEnd::IdleTimedOut, Stop::Graceful));
                        }
                    } else if let (Some(max), Some(row)) = (max_pending, &last) {
                        if row.state.is_pending() && pending_since.elapsed() >= max {
                            break Some((AgentEnd::SpawnFailed(format!(
                                "Slurm job {} was pending for longer than slurm.max_pending ({}): {}",
                                row.id,
                                humantime::format_duration(max),
                                row.reason.as_deref().unwrap_or("no reason given")
                            )), Stop::Kill));
                        }
                    }
                }
            }
        };
        if let Some((end, how)) = forced {
            self.terminate(rx, &end, how).await;
            return end;
        }
        let end = self.judge(last.as_ref()).await;
        // A last look: the agent's final status is never missed.
        if let Some(s) = status.poll().status {
            let _ = self.events.send(AgentEvent::Status(s));
        }
        end
    }

    /// Ends the job, journalled first (the `Terminating` event, so a
    /// successor cancels it again). A stop (Ctrl-C) is one plain `scancel`
    /// for every job of the run at once — Slurm itself sends `TERM`, then
    /// `KILL` after its `KillWait`; a timeout sends `TERM` to the batch
    /// shell and the agent, waits `agent.kill_grace`, then cancels.
    async fn terminate(&mut self, rx: &mut watch::Receiver<Seen>, why: &AgentEnd, how: Stop) {
        let grace = if how == Stop::Kill || *why == AgentEnd::Stopped {
            Duration::ZERO
        } else {
            self.job.grace
        };
        let _ = self.events.send(AgentEvent::Terminating {
            why: why.clone(),
            kill_at_ms: crate::state::now_ms() + grace.as_millis() as u64,
        });
        let runner = &self.attempt.runner;
        let Some(id) = self.id else {
            // Not listed yet: cancel it by name (one call).
            let _ = runner.client.cancel_named(&self.attempt.name).await;
            return;
        };
        if !grace.is_zero() {
            runner.cancel(CancelReq::Term(id));
            let escalate = async {
                loop {
                    if self.stop.changed().await.is_err() {
                        return std::future::pending::<()>().await;
                    }
                    if *self.stop.borrow_and_update() != Stop::Run {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(grace, ended(rx)) => {}
                () = escalate => {}
            }
        }
        runner.cancel(CancelReq::Kill(id));
        let _ = tokio::time::timeout(CANCEL_WAIT, ended(rx)).await;
    }

    /// The attempt's end once its job left `RUNNING`: the exit file (given
    /// `exit_grace` to appear), else Slurm's last state as the reason.
    async fn judge(&self, last: Option<&JobRow>) -> AgentEnd {
        let grace_end = Instant::now() + self.attempt.config.exit_grace;
        let record = loop {
            if let Some((code, _)) = read_exit_record(&self.job.exit_path) {
                break Some(code);
            }
            if Instant::now() >= grace_end {
                break None;
            }
            sleep(EXIT_POLL).await;
        };
        let lost_state = last
            .map(|r| &r.state)
            .filter(|s| {
                matches!(
                    s,
                    JobState::NodeFail
                        | JobState::Preempted
                        | JobState::OutOfMemory
                        | JobState::BootFail
                        | JobState::Deadline
                        | JobState::Timeout
                )
            })
            .map(|s| s.as_str().to_string());
        match (record, lost_state) {
            // Killed by a signal when Slurm lost the job: Slurm's word.
            (Some(code), Some(state)) if code > 128 => AgentEnd::JobLost(format!(
                "ended as {state} (the agent was killed, exit {code})"
            )),
            (Some(code), _) if (129..=128 + 31).contains(&code) => AgentEnd::Signaled(code - 128),
            (Some(code), _) => AgentEnd::Exited(code),
            (None, state) => {
                let state = state
                    .or_else(|| last.map(|r| r.state.as_str().to_string()))
                    .unwrap_or_else(|| "not listed by squeue".to_string());
                AgentEnd::JobLost(format!(
                    "ended ({state}) without an exit file within slurm.exit_grace ({}); its output is in {}",
                    humantime::format_duration(self.attempt.config.exit_grace),
                    self.job
                        .exit_path
                        .parent()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                ))
            }
        }
    }
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: Option<u64>, state: Option<&str>, reason: Option<&str>) -> JobUpdate {
        JobUpdate {
            name: "treefarm:r1:gate:3".into(),
            id,
            state: state.map(String::from),
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn an_older_builds_intent_file_still_names_its_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_intent(dir.path()), None);
        std::fs::write(intent_path(dir.path()), "treefarm:r1:020:a2\n").expect("write");
        let name = JobName::new("r1", "020", crate::slurm::JobKind::Attempt, 2);
        assert_eq!(read_intent(dir.path()), Some((name.clone(), None)));
        std::fs::write(intent_path(dir.path()), "treefarm:r1:020:a2\n42\n").expect("write");
        assert_eq!(read_intent(dir.path()), Some((name, Some(JobId(42)))));
    }

    #[test]
    fn a_gate_jobs_note_says_where_it_stands_and_why_it_waits() {
        assert_eq!(describe_gate_job(3, &update(None, None, None)), None);
        assert_eq!(
            describe_gate_job(3, &update(Some(42), None, None)).as_deref(),
            Some("gate run 3: Slurm job 42 submitted")
        );
        assert_eq!(
            describe_gate_job(3, &update(Some(42), Some("PENDING"), Some("Resources"))).as_deref(),
            Some("gate run 3: Slurm job 42 pending: Resources")
        );
        assert_eq!(
            describe_gate_job(3, &update(Some(42), Some("RUNNING"), None)).as_deref(),
            Some("gate run 3: Slurm job 42 running")
        );
        // How it ended is the gate's own result.
        assert_eq!(
            describe_gate_job(3, &update(Some(42), Some("COMPLETED"), None)),
            None
        );
    }
}
