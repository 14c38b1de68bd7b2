//! The dispatcher's loop: turns what happened (instance messages, lane
//! reports, signals, the tick) into an [`Input`], lets the
//! [`RunMachine`] decide, and performs the [`Action`]s it returns: journal
//! marks and commits, events, notes, stop requests, and the tasks it
//! spawns (instances; plant, merge and prune on the lane).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::git::Repo;
use crate::report::{Event, Reporter, Summary};
use crate::runner::agent::instance::run_instance;
use crate::runner::agent::slurm::{describe_gate_job, SlurmRunner};
use crate::runner::error::RunnerError;
use crate::runner::machine::{Policy, RunMachine};
use crate::runner::messages::{
    Action, AgentEvent, Input, InstanceMsg, JobIntent, JobUpdate, LaneMsg as Msg, Launch, MergeAck,
    Mode, Signal, Stop,
};
use crate::runner::run::journal::Journal;
use crate::runner::run::lane::{build_batch, land_batch, merge_one, plant_batch, prune_one};
use crate::runner::slot::gates::{run_gate, GateHost, GateJob};
use crate::schedule::{Node, Scheduler};
use crate::state::RunOptions;
use crate::state::{crash_point, now_ms, RunDir, RunRecord};

pub struct Dispatcher<'r> {
    pub(super) opts: Arc<RunOptions>,
    pub(super) dir: Arc<RunDir>,
    /// The run's record, scheduler, slots and queues.
    pub(super) m: RunMachine,
    pub(super) reporter: &'r mut dyn Reporter,
    pub(super) mode: Mode,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) rx: mpsc::UnboundedReceiver<Msg>,
    pub(super) inst_tx: mpsc::UnboundedSender<(String, InstanceMsg)>,
    pub(super) inst_rx: mpsc::UnboundedReceiver<(String, InstanceMsg)>,
    pub(super) stop_tx: watch::Sender<Stop>,
    /// What changed since the last journal write (group commit).
    pub(super) journal: Journal,
    /// How to cancel each merge-queue gate run going on.
    pub(super) gate_cancels: HashMap<u64, oneshot::Sender<()>>,
    /// The lane's merges waiting for the acknowledgement of their durable
    /// intent (`Action::Ack`), by instance.
    pub(super) ack_tx: mpsc::UnboundedSender<MergeAck>,
    pub(super) ack_rx: mpsc::UnboundedReceiver<MergeAck>,
    pub(super) merge_acks: HashMap<String, oneshot::Sender<()>>,
    /// `executor: slurm`: the run's Slurm side (started by `drive`); none:
    /// the local executor.
    pub(super) slurm: Option<Arc<SlurmRunner>>,
    /// The Slurm calls and polls already added to the record, so each
    /// commit journals only the new ones (a `kill -9` loses none that were
    /// committed).
    slurm_counted: (crate::slurm::CallCounts, u64),
    /// What the gate runs' Slurm jobs (`slurm.gates`) report, shown as
    /// notes when it changes.
    gate_jobs: GateJobs,
    /// `executor: slurm`: each attempt's job intent, journalled and
    /// committed before its `sbatch` may run.
    intents: Option<mpsc::UnboundedReceiver<JobIntent>>,
}

/// The gate jobs' updates (`slurm.gates`), and the last shown of each.
struct GateJobs {
    tx: mpsc::UnboundedSender<(u64, JobUpdate)>,
    rx: mpsc::UnboundedReceiver<(u64, JobUpdate)>,
    shown: HashMap<u64, JobUpdate>,
}

impl<'r> Dispatcher<'r> {
    pub fn new(
        opts: Arc<RunOptions>,
        dir: Arc<RunDir>,
        record: RunRecord,
        reporter: &'r mut dyn Reporter,
        mode: Mode,
    ) -> Dispatcher<'r> {
        let nodes = opts.specs.iter().map(Node::from).collect();
        let sched = Scheduler::new(nodes, &opts.conflicts, opts.instances);
        let (tx, rx) = mpsc::unbounded_channel();
        let (inst_tx, inst_rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (stop_tx, _) = watch::channel(Stop::Run);
        let ranks = opts
            .specs
            .iter()
            .map(|s| (s.id.clone(), (s.priority, s.order)))
            .collect();
        let journal = Journal::new(dir.clone());
        let mut policy = Policy::from_options(&opts);
        policy.gate_logs = dir.path().join("logs");
        let mut m = RunMachine::new(record, sched, opts.instances, ranks, policy);
        m.set_pacing(opts.pacing_policy(), opts.budget);
        Dispatcher {
            opts: opts.clone(),
            dir,
            m,
            reporter,
            mode,
            tx,
            rx,
            inst_tx,
            inst_rx,
            stop_tx,
            journal,
            gate_cancels: HashMap::new(),
            ack_tx,
            ack_rx,
            merge_acks: HashMap::new(),
            slurm: None,
            slurm_counted: Default::default(),
            gate_jobs: {
                let (tx, rx) = mpsc::unbounded_channel();
                GateJobs {
                    tx,
                    rx,
                    shown: HashMap::new(),
                }
            },
            intents: None,
        }
    }

    /// Records that the run's state changed. The journal is written by
    /// [`Dispatcher::flush`], once per turn of the loop (group commit) and
    /// always before anything is done that depends on the change.
    pub(super) fn save(&mut self) -> Result<(), RunnerError> {
        self.journal.changed();
        Ok(())
    }

    /// Commits the journal: what changed is durable when this returns.
    pub(super) fn flush(&mut self) -> Result<(), RunnerError> {
        self.count_slurm_calls();
        self.journal.commit(self.m.record())
    }

    /// Adds the Slurm calls and polls made since the last time to the
    /// record, to be journalled with the next commit.
    fn count_slurm_calls(&mut self) {
        let Some(slurm) = &self.slurm else { return };
        let (calls, polls) = slurm.counts();
        let (counted, counted_polls) = self.slurm_counted;
        let new = calls.since(&counted);
        let new_polls = polls.saturating_sub(counted_polls);
        if new.total() == 0 && new_polls == 0 {
            return;
        }
        self.m.count_slurm_calls(new, new_polls);
        self.slurm_counted = (calls, polls);
        self.journal.changed();
    }

    /// Shows an event at once; it reaches `events.jsonl` at the next flush.
    fn emit(&mut self, event: Event) -> Result<(), RunnerError> {
        let at_ms = now_ms();
        if !event.is_transient() {
            let value =
                crate::report::stamped(&event, at_ms).map_err(|source| RunnerError::Serialise {
                    what: "event",
                    source,
                })?;
            self.journal.event(value);
        }
        self.reporter.event_at(&event, at_ms);
        Ok(())
    }

    /// A note for people (recovery, signals), through the reporter.
    pub(super) fn note(&mut self, text: String) {
        self.reporter.note(&text);
    }

    /// Runs the run to its end (or to an interruption) and returns the final
    /// record and summary.
    pub async fn drive(mut self) -> Result<(RunRecord, Summary), RunnerError> {
        self.m.take_over(
            std::process::id(),
            crate::procfs::start_time(std::process::id()),
        );
        self.save()?;
        self.flush()?;
        if let Some(run) = &self.m.record().slurm {
            let run_id = self.m.record().run_id.clone();
            let (slurm, intents) = SlurmRunner::start(&run_id, run.config.clone()).await;
            self.intents = Some(intents);
            // A killed coordinator's gate jobs: nobody waits for their
            // result (the queue gates again what it still needs).
            match slurm.cancel_gates_left().await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => self.note(format!(
                    "cancelled Slurm gate job(s) {ids:?} left by the interrupted run"
                )),
                Err(err) => self.note(format!(
                    "cannot cancel the gate jobs the interrupted run left ({err}); cancel them yourself: scancel --name=treefarm:{run_id}:gate:<n>"
                )),
            }
            self.slurm = Some(slurm);
        }
        self.reconcile().await?;

        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|source| RunnerError::Signal {
                signal: "SIGINT",
                source,
            })?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| RunnerError::Signal {
                signal: "SIGTERM",
                source,
            })?;
        let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|source| RunnerError::Signal {
                signal: "SIGHUP",
                source,
            })?;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        loop {
            // Planting and pruning journal what they depend on first; a
            // merge computes while the journal is written below, and
            // journals its intent before the target ref moves.
            let start = self.m.start(self.mode, now_ms())?;
            self.perform(start)?;
            self.flush()?;
            if self.m.is_over(self.mode) {
                break;
            }
            // A backoff ending or the start interval passing wakes the loop
            // (no polling: nothing else would).
            let deadline = self.m.next_deadline(now_ms());
            let wait = Duration::from_millis(deadline.unwrap_or(0).saturating_sub(now_ms()));
            let input = tokio::select! {
                Some((id, msg)) = self.inst_rx.recv() => Input::Instance(id, msg),
                Some(msg) = self.rx.recv() => self.lane_input(msg),
                Some((run, update)) = self.gate_jobs.rx.recv() => {
                    self.gate_job(run, update);
                    continue;
                }
                Some(intent) = next_intent(&mut self.intents) => {
                    self.job_intent(intent)?;
                    continue;
                }
                _ = sigint.recv() => Input::Signal(Signal::Interrupt),
                _ = sigterm.recv() => Input::Signal(Signal::Terminate),
                _ = sighup.recv() => Input::Signal(Signal::Hangup),
                _ = tick.tick() => Input::Tick,
                _ = tokio::time::sleep(wait), if deadline.is_some() => Input::Wake,
            };
            self.handle(input)?;
            // Whatever else has arrived meanwhile joins this turn's journal
            // write, so a burst of agent events costs one fsync, not one each.
            for _ in 0..256 {
                if let Ok((id, msg)) = self.inst_rx.try_recv() {
                    self.handle(Input::Instance(id, msg))?;
                } else if let Ok(msg) = self.rx.try_recv() {
                    let input = self.lane_input(msg);
                    self.handle(input)?;
                } else {
                    break;
                }
            }
        }
        self.finish()
    }

    /// A lane report as the machine's input; a gate that ended needs no
    /// way to cancel it any more.
    fn lane_input(&mut self, msg: Msg) -> Input {
        if let Msg::GateDone { run, .. } = &msg {
            self.gate_cancels.remove(run);
            self.gate_jobs.shown.remove(run);
        }
        Input::Lane(msg)
    }

    /// An attempt's job is about to be submitted: its name is journalled
    /// as the instance's `job` and committed, then `sbatch` may run. What
    /// the instance sent before (its attempt starting) is handled first.
    fn job_intent(&mut self, intent: JobIntent) -> Result<(), RunnerError> {
        while let Ok((id, msg)) = self.inst_rx.try_recv() {
            self.handle(Input::Instance(id, msg))?;
        }
        let update = JobUpdate {
            name: intent.name,
            id: None,
            state: None,
            reason: None,
        };
        self.handle(Input::Instance(
            intent.id,
            InstanceMsg::Agent(AgentEvent::Job(update)),
        ))?;
        self.flush()?;
        let _ = intent.durable.send(());
        Ok(())
    }

    /// A gate run's Slurm job changed: shown when a person would see a
    /// difference (submitted, pending and why, running).
    fn gate_job(&mut self, run: u64, update: JobUpdate) {
        if self.gate_jobs.shown.get(&run) == Some(&update) {
            return;
        }
        let text = describe_gate_job(run, &update);
        self.gate_jobs.shown.insert(run, update);
        if let Some(text) = text {
            self.note(text);
        }
    }

    /// One thing that happened: the machine decides, the loop performs;
    /// the journal is committed by the loop once per turn (and wherever an
    /// action asks for it).
    fn handle(&mut self, input: Input) -> Result<(), RunnerError> {
        let actions = self.m.handle(input, now_ms())?;
        self.perform(actions)
    }

    /// Performs the machine's actions, in order.
    pub(super) fn perform(&mut self, actions: Vec<Action>) -> Result<(), RunnerError> {
        for action in actions {
            match action {
                Action::Save => self.journal.changed(),
                Action::Progressed => self.journal.progressed(),
                Action::AgentStarted => self.journal.agent_started(),
                Action::Flush => self.flush()?,
                Action::Emit(event) => self.emit(event)?,
                Action::EmitIfExists(path, event) => {
                    if path.exists() {
                        self.emit(event)?;
                    }
                }
                Action::Note(text) => self.note(text),
                Action::Stop(stop) => {
                    let _ = self.stop_tx.send(stop);
                }
                Action::CrashPoint(name) => crash_point(name),
                Action::Launch(launch) => self.launch(launch),
                Action::Plant { launches, reuse } => self.spawn_plant(launches, reuse),
                Action::Merge { id, subjects } => self.spawn_merge(id, subjects),
                Action::Prune(id) => self.spawn_prune(id),
                Action::Ack(id) => {
                    // The lane registered its waiting end before it sent
                    // the `MergePrepared` this answers.
                    while let Ok((waiting, ack)) = self.ack_rx.try_recv() {
                        self.merge_acks.insert(waiting, ack);
                    }
                    if let Some(ack) = self.merge_acks.remove(&id) {
                        let _ = ack.send(());
                    }
                }
                Action::PruneFailed { id, reason } => {
                    tracing::warn!(%id, %reason, "prune after merge failed");
                }
                Action::Refresh => self.reporter.refresh(self.m.record(), now_ms()),
                Action::BuildBatch { batch, ids, onto } => self.spawn_build(batch, ids, onto),
                Action::LandBatch { batch, old, new } => self.spawn_land(batch, old, new),
                Action::RunGate(gate) => self.spawn_gate(gate),
                Action::CancelGate(run) => {
                    if let Some(cancel) = self.gate_cancels.remove(&run) {
                        let _ = cancel.send(());
                    }
                }
                Action::KeepGateLog { id, log } => {
                    let kept = self.dir.gate_log_path(&id);
                    if let Some(parent) = kept.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    if let Err(err) = std::fs::copy(&log, &kept) {
                        tracing::warn!(%id, %log, %err, "cannot keep the gate log of a refused branch");
                    }
                }
            }
        }
        for id in self.m.take_settles() {
            self.spawn_settle(id);
        }
        Ok(())
    }

    pub(super) fn take_skipped(&mut self) -> Result<(), RunnerError> {
        let mut actions = Vec::new();
        self.m.skip(&mut actions, now_ms())?;
        self.perform(actions)
    }

    /// Plants on the lane (the machine counted it in flight).
    fn spawn_plant(&mut self, launches: Vec<Launch>, reuse: bool) {
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = plant_batch(&opts, launches.clone(), reuse);
            let msg = match result {
                Ok(done) => Msg::Planted(done),
                Err(err) => Msg::Planted(
                    launches
                        .into_iter()
                        .map(|l| (l, Err(crate::error::chain(&err))))
                        .collect(),
                ),
            };
            let _ = tx.send(msg);
        });
    }

    /// Prunes on the lane (the machine counted it in flight, after the
    /// flush that makes `merged` durable).
    fn spawn_prune(&mut self, id: String) {
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = prune_one(&opts, &id).map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Pruned(id, result));
        });
    }

    /// Brings the index of a worktree that stays in line with its branch
    /// (`git/index_lag.rs`), off the loop: nothing waits for it, and
    /// whatever reads that worktree next settles first anyway.
    fn spawn_settle(&mut self, id: String) {
        let worktree = self.opts.worktree_for(&id);
        tokio::task::spawn_blocking(move || {
            crash_point("before-settle");
            if let Err(e) = crate::git::settle_index(&worktree) {
                tracing::warn!(%id, error = %crate::error::chain(&e), "cannot bring the worktree's index in line with its branch");
            }
        });
    }

    /// Starts an instance task (the machine counted it in flight).
    fn launch(&mut self, launch: Launch) {
        let opts = self.opts.clone();
        let dir = self.dir.clone();
        let run_id = self.m.record().run_id.clone();
        let tx = self.inst_tx.clone();
        let stop = self.stop_tx.subscribe();
        let slurm = self.slurm.clone();
        tokio::spawn(run_instance(opts, dir, run_id, launch, tx, stop, slurm));
    }

    /// Merges on the lane (the machine counted it in flight); the merge
    /// computes while the journal is written and waits for the
    /// acknowledgement of its durable intent before the ref moves.
    fn spawn_merge(&mut self, id: String, subjects: Vec<String>) {
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        let acks = self.ack_tx.clone();
        let run_id = self.m.record().run_id.clone();
        tokio::task::spawn_blocking(move || {
            let result = merge_one(&opts, &run_id, &id, &subjects, &tx, &acks)
                .map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Merged(id, result));
        });
    }

    /// Builds a merge-queue batch on the lane (the machine counted it in
    /// flight).
    fn spawn_build(&mut self, batch: u64, ids: Vec<String>, onto: Option<String>) {
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        let run_id = self.m.record().run_id.clone();
        let items: Vec<(String, Vec<String>)> = ids
            .into_iter()
            .map(|id| {
                let subjects = self.m.subjects_of(&id);
                (id, subjects)
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let result = build_batch(&opts, &run_id, &items, onto.as_deref())
                .map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Built { batch, result });
        });
    }

    /// Lands a batch on the lane, after the flush that journalled its
    /// branches as merging.
    fn spawn_land(&mut self, batch: u64, old: String, new: String) {
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = land_batch(&opts, &old, &new).map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Landed { batch, result });
        });
    }

    /// Runs a gate in its warm gate worktree (the machine counted it in
    /// flight), here or as a Slurm job (`slurm.gates`); a signal or
    /// [`Action::CancelGate`] stops it.
    fn spawn_gate(&mut self, gate: crate::merge_queue::GateRun) {
        let (cancel, cancelled) = oneshot::channel();
        self.gate_cancels.insert(gate.run, cancel);
        let job = GateJob {
            log: std::path::PathBuf::from(&gate.log),
            private_dir: self
                .dir
                .path()
                .join("gates")
                .join(format!("{:03}", gate.run)),
            gate,
            run_id: self.m.record().run_id.clone(),
        };
        let host = match &self.slurm {
            Some(runner) if runner.runs_gates() => GateHost::Slurm {
                runner: runner.clone(),
                updates: self.gate_jobs.tx.clone(),
            },
            _ => GateHost::Local,
        };
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        let stop = self.stop_tx.subscribe();
        tokio::spawn(async move {
            let msg = run_gate(opts, job, host, cancelled, stop).await;
            let _ = tx.send(msg);
        });
    }

    fn finish(mut self) -> Result<(RunRecord, Summary), RunnerError> {
        let now = now_ms();
        let end = self.m.finish(self.mode, now);
        self.perform(end)?;
        // What still lags belongs to a worktree that stays (a success the
        // stopped queue never merged, a settle still under way).
        crate::git::settle_all_indexes();
        self.count_slurm_calls();
        let target_commit = Repo::discover(&self.opts.repo_root)
            .ok()
            .and_then(|r| r.branch_tip(&self.opts.target).ok().flatten())
            .map(|o| o.to_string());
        let summary =
            crate::report::summarize(self.m.record(), &self.opts.target, target_commit, now);
        self.dir
            .write_summary(&serde_json::to_value(&summary).map_err(|source| {
                RunnerError::Serialise {
                    what: "summary",
                    source,
                }
            })?)
            .map_err(RunnerError::WriteSummary)?;
        self.emit(Event::Summary(Box::new(summary.clone())))?;
        self.flush()?;
        self.reporter.finish(self.m.record(), &summary);
        Ok((self.m.into_record(), summary))
    }
}

/// The next job intent; never, without a Slurm side.
async fn next_intent(rx: &mut Option<mpsc::UnboundedReceiver<JobIntent>>) -> Option<JobIntent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub use crate::runner::machine::INTERRUPTED;
