//! The dispatcher: the one owner of a run's state. It starts instances as the
//! scheduler allows, hears from instance tasks and the merge task over one
//! channel, journals every transition before acting on it, merges one branch
//! at a time, prunes, and handles Ctrl-C (graceful, then kill).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::git::Repo;
use crate::merge::MergeResult;
use crate::report::events::AttemptResult;
use crate::report::{Event, Reporter, Summary};
use crate::runner::executor::{AgentEnd, AgentEvent, Stop};
use crate::runner::instance::{run_instance, InstanceMsg, Launch, Verdict, Work};
use crate::runner::journal::Journal;
use crate::runner::lane::{merge_one, plant_batch, prune_one};
use crate::runner::machine::RunMachine;
use crate::runner::messages::{Input, LaneMsg as Msg, Mode};
use crate::runner::options::RunOptions;
use crate::schedule::{Node, Scheduler};
use crate::state::{
    crash_point, now_ms, InstanceRecord, InstanceState, RunDir, RunRecord, RunState,
};

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
    pub(super) agents_in_flight: usize,
    pub(super) other_in_flight: usize,
    pub(super) stopping: bool,
    pub(super) killing: bool,
    /// What changed since the last journal write (group commit).
    pub(super) journal: Journal,
    pub(super) works: HashMap<String, Work>,
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
        let (stop_tx, _) = watch::channel(Stop::Run);
        let ranks = opts
            .specs
            .iter()
            .map(|s| (s.id.clone(), (s.priority, s.order)))
            .collect();
        let journal = Journal::new(dir.clone());
        Dispatcher {
            opts: opts.clone(),
            dir,
            m: RunMachine::new(record, sched, opts.instances, ranks),
            reporter,
            mode,
            tx,
            rx,
            inst_tx,
            inst_rx,
            stop_tx,
            agents_in_flight: 0,
            other_in_flight: 0,
            stopping: false,
            killing: false,
            journal,
            works: HashMap::new(),
        }
    }

    pub(super) fn inst(&mut self, id: &str) -> &mut InstanceRecord {
        self.m
            .record
            .instance_mut(id)
            .expect("every scheduled id has an instance record")
    }

    /// Records that the run's state changed. The journal is written by
    /// [`Dispatcher::flush`], once per turn of the loop (group commit) and
    /// always before anything is done that depends on the change.
    pub(super) fn save(&mut self) -> anyhow::Result<()> {
        self.journal.changed();
        Ok(())
    }

    /// Commits the journal: what changed is durable when this returns.
    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        self.journal.commit(&self.m.record)
    }

    /// Shows an event at once; it reaches `events.jsonl` at the next flush.
    fn emit(&mut self, event: Event) -> anyhow::Result<()> {
        let at_ms = now_ms();
        if !event.is_transient() {
            let value = crate::report::stamped(&event, at_ms).context("serialise event")?;
            self.journal.event(value);
        }
        self.reporter.event_at(&event, at_ms);
        Ok(())
    }

    /// Stopped by Ctrl-C while out: `resume` reruns it.
    fn mark_interrupted(&mut self, id: &str) {
        let inst = self.inst(id);
        inst.interrupted = true;
        inst.reason = Some(INTERRUPTED.into());
    }

    /// A note for people (recovery, signals), through the reporter.
    pub(super) fn note(&mut self, text: String) {
        self.reporter.note(&text);
    }

    /// Moves an instance along its lifecycle (checked by the machine).
    pub(super) fn set_state(&mut self, id: &str, state: InstanceState) -> anyhow::Result<()> {
        self.m.advance(id, state, now_ms())?;
        Ok(())
    }

    /// Runs the run to its end (or to an interruption) and returns the final
    /// record and summary.
    pub async fn drive(mut self) -> anyhow::Result<(RunRecord, Summary)> {
        self.m.record.state = RunState::Running;
        self.m.record.coordinator_pid = std::process::id();
        self.m.record.coordinator_start = crate::procfs::start_time(std::process::id());
        self.save()?;
        self.flush()?;
        self.reconcile().await?;

        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("install SIGINT handler")?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("install SIGHUP handler")?;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        loop {
            if !self.stopping {
                // Planting and pruning journal what they depend on first; a
                // merge computes while the journal is written below, and
                // journals its intent before the target ref moves.
                self.start_ready()?;
                self.start_merge()?;
                self.start_next_prune()?;
            }
            self.flush()?;
            if self.is_over() {
                break;
            }
            let input = tokio::select! {
                Some((id, msg)) = self.inst_rx.recv() => Input::Instance(id, msg),
                Some(msg) = self.rx.recv() => Input::Lane(msg),
                _ = sigint.recv() => Input::Signal("interrupt"),
                _ = sigterm.recv() => Input::Signal("terminate"),
                _ = sighup.recv() => Input::Signal("hangup"),
                _ = tick.tick() => Input::Tick,
            };
            self.handle(input)?;
            // Whatever else has arrived meanwhile joins this turn's journal
            // write, so a burst of agent events costs one fsync, not one each.
            for _ in 0..256 {
                if let Ok((id, msg)) = self.inst_rx.try_recv() {
                    self.handle(Input::Instance(id, msg))?;
                } else if let Ok(msg) = self.rx.try_recv() {
                    self.handle(Input::Lane(msg))?;
                } else {
                    break;
                }
            }
        }
        self.finish()
    }

    /// One thing that happened, handled; the journal is committed by the
    /// loop once per turn.
    fn handle(&mut self, input: Input) -> anyhow::Result<()> {
        match input {
            Input::Instance(id, msg) => self.on_instance(id, msg),
            Input::Lane(msg) => self.on_msg(msg),
            Input::Signal(name) => self.on_signal(name),
            Input::Tick => {
                self.reporter.refresh(&self.m.record, now_ms());
                Ok(())
            }
        }
    }

    fn is_over(&self) -> bool {
        if self.killing {
            return self.agents_in_flight == 0;
        }
        if self.stopping {
            return self.agents_in_flight == 0 && self.other_in_flight == 0;
        }
        self.agents_in_flight == 0
            && self.other_in_flight == 0
            && self.m.lane_idle()
            && (self.mode == Mode::MergeOnly || self.m.sched.is_finished())
    }

    fn on_signal(&mut self, name: &str) -> anyhow::Result<()> {
        if self.stopping {
            self.note(format!("second {name}: killing agents now"));
            self.killing = true;
            let _ = self.stop_tx.send(Stop::Kill);
        } else {
            self.note(format!(
                "{name}: stopping agents gracefully (again to kill); worktrees are kept"
            ));
            self.stopping = true;
            let _ = self.stop_tx.send(Stop::Graceful);
        }
        Ok(())
    }

    pub(super) fn take_skipped(&mut self) -> anyhow::Result<()> {
        for (id, reason) in self.m.take_skipped(now_ms())? {
            self.save()?;
            self.emit(Event::Skipped { id, reason })?;
        }
        Ok(())
    }

    fn start_ready(&mut self) -> anyhow::Result<()> {
        if self.mode == Mode::MergeOnly {
            return Ok(());
        }
        let ready = self.m.sched.start_ready();
        if ready.is_empty() {
            return Ok(());
        }
        let mut launches = Vec::new();
        for id in ready {
            let slot = self
                .m
                .take_slot()
                .expect("the scheduler never starts more than the free slots");
            self.set_state(&id, InstanceState::Creating)?;
            self.inst(&id).slot = Some(slot);
            launches.push(Launch {
                id,
                slot,
                start_commit: String::new(),
                attempt: 1,
                reattach: None,
                exited: None,
                setup: true,
                ended: None,
                terminating: None,
                timeout_left: None,
            });
        }
        // Journal `creating` before anything exists in git.
        self.save()?;
        self.flush()?;
        self.plant(launches, false);
        Ok(())
    }

    /// Creates branches and worktrees for a batch, in parallel, off the
    /// current target tip.
    pub(super) fn plant(&mut self, launches: Vec<Launch>, reuse: bool) {
        self.other_in_flight += 1;
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

    fn on_msg(&mut self, msg: Msg) -> anyhow::Result<()> {
        match msg {
            Msg::Planted(batch) => {
                self.other_in_flight -= 1;
                crash_point("after-plant");
                let mut launches = Vec::new();
                for (launch, result) in batch {
                    let id = launch.id.clone();
                    match result {
                        Ok(()) => {
                            let worktree = self.opts.worktree_for(&id).display().to_string();
                            let branch = crate::spec::branch_for(&id);
                            let fresh = self.inst(&id).state == InstanceState::Creating;
                            if fresh {
                                self.set_state(&id, InstanceState::Created)?;
                            }
                            self.inst(&id).start_commit = Some(launch.start_commit.clone());
                            self.save()?;
                            if fresh {
                                self.emit(Event::Planted {
                                    id: id.clone(),
                                    branch,
                                    worktree,
                                    start_commit: launch.start_commit.clone(),
                                })?;
                            }
                            if self.stopping {
                                self.release_slot(&id);
                                self.mark_interrupted(&id);
                                self.save()?;
                                continue;
                            }
                            launches.push(launch);
                        }
                        Err(reason) => {
                            self.release_slot(&id);
                            self.fail(&id, InstanceState::Failed, reason, None)?;
                        }
                    }
                }
                // `created` is journalled before any agent starts in them.
                self.flush()?;
                for launch in launches {
                    self.launch(launch);
                }
            }
            Msg::MergePrepared { id, new, tip, ack } => {
                self.set_state(&id, InstanceState::Merging)?;
                let inst = self.inst(&id);
                if tip.is_some() {
                    inst.tip = tip;
                }
                inst.merged_commit = Some(new);
                // The intent is durable before the target ref moves.
                self.save()?;
                self.flush()?;
                let _ = ack.send(());
            }
            Msg::Merged(id, result) => {
                self.other_in_flight -= 1;
                self.m.merging = None;
                match result {
                    Ok(MergeResult::Merged { commit }) | Ok(MergeResult::UpToDate { commit }) => {
                        self.on_merged(&id, commit)?
                    }
                    Ok(MergeResult::Conflicted { paths }) => {
                        let inst = self.inst(&id);
                        inst.conflict_paths = paths.clone();
                        inst.merged_commit = None;
                        inst.reason = Some(format!("conflicts in {}", paths.join(", ")));
                        self.set_state(&id, InstanceState::Conflicted)?;
                        self.save()?;
                        self.emit(Event::Conflicted {
                            id: id.clone(),
                            paths,
                        })?;
                        self.keep(&id, "merge conflict")?;
                        self.m.sched.settled(&id, false);
                        self.take_skipped()?;
                    }
                    Ok(MergeResult::Refused { reason, log }) => self.refuse(&id, reason, log)?,
                    Err(reason) => self.refuse(&id, reason, None)?,
                }
            }
            Msg::Pruned(id, result) => {
                self.other_in_flight -= 1;
                self.m.pruning = false;
                match result {
                    Ok(()) => {
                        self.set_state(&id, InstanceState::Pruned)?;
                        self.save()?;
                        self.emit(Event::Pruned { id })?;
                    }
                    Err(reason) => {
                        tracing::warn!(%id, %reason, "prune after merge failed");
                        self.keep(&id, &format!("merged, but not pruned: {reason}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn refuse(&mut self, id: &str, reason: String, log: Option<String>) -> anyhow::Result<()> {
        let inst = self.inst(id);
        inst.reason = Some(reason.clone());
        inst.merged_commit = None;
        self.set_state(id, InstanceState::Refused)?;
        self.save()?;
        self.emit(Event::Refused {
            id: id.to_string(),
            reason,
            log,
        })?;
        self.keep(id, "merge refused")?;
        self.m.sched.settled(id, false);
        self.take_skipped()
    }

    fn keep(&mut self, id: &str, reason: &str) -> anyhow::Result<()> {
        let branch = crate::spec::branch_for(id);
        let worktree = self.opts.worktree_for(id).display().to_string();
        self.emit(Event::Kept {
            id: id.to_string(),
            branch,
            worktree,
            reason: reason.to_string(),
        })
    }

    pub(super) fn on_merged(&mut self, id: &str, commit: String) -> anyhow::Result<()> {
        let inst = self.inst(id);
        inst.merged_commit = Some(commit.clone());
        self.set_state(id, InstanceState::Merged)?;
        self.save()?;
        self.emit(Event::Merged {
            id: id.to_string(),
            commit,
            strategy: self.opts.strategy,
        })?;
        self.m.sched.settled(id, true);
        if !self.opts.keep {
            self.start_prune(id);
        }
        Ok(())
    }

    pub(super) fn start_prune(&mut self, id: &str) {
        self.m.enqueue_prune(id);
    }

    /// Merges and prunes share one lane: removing a worktree rewrites git's
    /// worktree admin files, which a merge (checking for checkouts of the
    /// target) and a branch deletion read.
    fn start_next_prune(&mut self) -> anyhow::Result<()> {
        let Some(id) = self.m.next_prune() else {
            return Ok(());
        };
        // `merged` is durable before its worktree goes.
        self.flush()?;
        self.other_in_flight += 1;
        let opts = self.opts.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = prune_one(&opts, &id).map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Pruned(id, result));
        });
        Ok(())
    }

    fn release_slot(&mut self, id: &str) {
        self.m.release_slot(id);
    }

    fn launch(&mut self, launch: Launch) {
        self.agents_in_flight += 1;
        let opts = self.opts.clone();
        let dir = self.dir.clone();
        let run_id = self.m.record.run_id.clone();
        let tx = self.inst_tx.clone();
        let stop = self.stop_tx.subscribe();
        tokio::spawn(run_instance(opts, dir, run_id, launch, tx, stop));
    }

    fn on_instance(&mut self, id: String, msg: InstanceMsg) -> anyhow::Result<()> {
        match msg {
            InstanceMsg::AttemptStarting { attempt } => {
                let now = now_ms();
                let inst = self.inst(&id);
                inst.attempt = attempt;
                inst.pid = None;
                inst.pid_start = None;
                inst.exit_code = None;
                inst.deadline_ms = None;
                inst.ending = None;
                inst.kill_at_ms = None;
                inst.started_at_ms.get_or_insert(now);
                if attempt > 1 {
                    self.emit(Event::Retrying {
                        id: id.clone(),
                        attempt,
                    })?;
                }
            }
            InstanceMsg::Agent(AgentEvent::Started { pid, start_time }) => {
                let now = now_ms();
                let timeout_ms = self.opts.timeout_ms;
                self.set_state(&id, InstanceState::Running)?;
                let inst = self.inst(&id);
                inst.pid = Some(pid);
                inst.pid_start = Some(start_time);
                inst.started_at_ms.get_or_insert(now);
                inst.deadline_ms = timeout_ms.map(|t| now + t);
                let attempt = inst.attempt.max(1);
                inst.attempt = attempt;
                let slot = inst.slot.unwrap_or(0);
                self.save()?;
                let port = self.opts.port(slot);
                self.emit(Event::Started {
                    id,
                    attempt,
                    pid,
                    slot,
                    port,
                })?;
                self.journal.agent_started();
            }
            InstanceMsg::Agent(AgentEvent::Terminating { why, kill_at_ms }) => {
                let inst = self.inst(&id);
                inst.ending = Some(crate::runner::journal::ending_name(&why).to_string());
                inst.kill_at_ms = Some(kill_at_ms);
                self.save()?;
            }
            InstanceMsg::Agent(AgentEvent::Status(status)) => {
                let inst = self.inst(&id);
                inst.progress = status.progress;
                inst.message = status.message.clone();
                self.journal.progressed();
                self.emit(Event::Status {
                    id,
                    state: status.state,
                    progress: status.progress,
                    message: status.message,
                })?;
            }
            InstanceMsg::Exited {
                attempt,
                end,
                elapsed_ms,
            } => {
                let (result, code) = match &end {
                    AgentEnd::Exited(0) => (AttemptResult::Succeeded, Some(0)),
                    AgentEnd::Exited(c) => (AttemptResult::Failed, Some(*c)),
                    AgentEnd::Signaled(_) | AgentEnd::SpawnFailed(_) | AgentEnd::Unknown => {
                        (AttemptResult::Failed, None)
                    }
                    AgentEnd::TimedOut => (AttemptResult::TimedOut, None),
                    AgentEnd::IdleTimedOut => (AttemptResult::IdleTimeout, None),
                    AgentEnd::Stopped => (AttemptResult::Stopped, None),
                };
                let inst = self.inst(&id);
                inst.exit_code = code;
                inst.pid = None;
                inst.pid_start = None;
                inst.deadline_ms = None;
                inst.ending = None;
                inst.kill_at_ms = None;
                if matches!(end, AgentEnd::Stopped) {
                    inst.interrupted = true;
                    inst.reason = Some(INTERRUPTED.into());
                }
                let log = inst.log_path.clone();
                self.save()?;
                self.emit(Event::Exited {
                    id,
                    attempt,
                    result,
                    exit_code: code,
                    elapsed_ms,
                    log,
                })?;
            }
            InstanceMsg::Warning(message) => self.emit(Event::Warning { id, message })?,
            InstanceMsg::Done(verdict) => {
                self.agents_in_flight -= 1;
                self.release_slot(&id);
                self.on_verdict(&id, verdict)?;
            }
        }
        Ok(())
    }

    fn record_work(&mut self, id: &str, work: &Work) -> anyhow::Result<()> {
        let inst = self.inst(id);
        inst.tip = Some(work.tip.clone());
        inst.commits = work.commits;
        inst.changed_files = work.changed.clone();
        inst.scope_creep = work.scope_creep.clone();
        self.emit(Event::Committed {
            id: id.to_string(),
            commit: work.tip.clone(),
            auto: work.auto_commit.is_some(),
            commits: work.commits,
            files: work.changed.clone(),
        })?;
        if !work.scope_creep.is_empty() {
            self.emit(Event::ScopeCreep {
                id: id.to_string(),
                paths: work.scope_creep.clone(),
            })?;
        }
        self.works.insert(id.to_string(), work.clone());
        Ok(())
    }

    fn on_verdict(&mut self, id: &str, verdict: Verdict) -> anyhow::Result<()> {
        match verdict {
            Verdict::Succeeded(work) => {
                self.record_work(id, &work)?;
                self.set_state(id, InstanceState::Succeeded)?;
                self.save()?;
                self.m.sched.agent_done(id);
                if self.opts.no_merge {
                    self.m.sched.settled(id, true);
                    self.keep(id, "--no-merge: merge later with `treefarm merge`")?;
                } else {
                    self.enqueue_merge(id);
                }
            }
            Verdict::Failed {
                state,
                reason,
                exit_code,
                work,
            } => {
                if let Some(work) = &work {
                    self.record_work(id, work)?;
                }
                self.inst(id).exit_code = exit_code;
                self.m.sched.agent_done(id);
                self.fail(id, state, reason, None)?;
            }
            Verdict::Stopped => {
                // Stays `running` in the journal with the reason, so `resume`
                // reruns it in its worktree, keeping its partial work.
                self.mark_interrupted(id);
                self.save()?;
            }
        }
        Ok(())
    }

    fn fail(
        &mut self,
        id: &str,
        state: InstanceState,
        reason: String,
        _log: Option<String>,
    ) -> anyhow::Result<()> {
        self.inst(id).reason = Some(reason.clone());
        self.set_state(id, state)?;
        self.save()?;
        let log = self.inst(id).log_path.clone();
        self.emit(Event::Failed {
            id: id.to_string(),
            reason,
            log,
        })?;
        if self.opts.worktree_for(id).exists() {
            self.keep(id, "failed")?;
        }
        self.m.sched.settled(id, false);
        self.take_skipped()
    }

    pub(super) fn enqueue_merge(&mut self, id: &str) {
        self.m.enqueue_merge(id);
    }

    fn start_merge(&mut self) -> anyhow::Result<()> {
        let Some(id) = self.m.next_merge(self.mode == Mode::Run) else {
            return Ok(());
        };
        self.other_in_flight += 1;
        let opts = self.opts.clone();
        let dir = self.dir.clone();
        let tx = self.tx.clone();
        let run_id = self.m.record.run_id.clone();
        let subjects = self
            .works
            .get(&id)
            .map(|w| w.subjects.clone())
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let result = merge_one(&opts, &dir, &run_id, &id, &subjects, &tx)
                .map_err(|e| crate::error::chain(&e));
            let _ = tx.send(Msg::Merged(id, result));
        });
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<(RunRecord, Summary)> {
        let interrupted = self
            .m
            .ends_interrupted(self.stopping, self.mode == Mode::Run);
        let now = now_ms();
        self.m.record.state = if interrupted {
            RunState::Interrupted
        } else {
            RunState::Finished
        };
        self.m.record.finished_at_ms = Some(now);
        self.save()?;
        if interrupted {
            let run_id = self.m.record.run_id.clone();
            self.emit(Event::Interrupted {
                resume: format!("treefarm resume {run_id}"),
                run_id,
            })?;
        }
        let target_commit = Repo::discover(&self.opts.repo_root)
            .ok()
            .and_then(|r| r.branch_tip(&self.opts.target).ok().flatten())
            .map(|o| o.to_string());
        let summary =
            crate::report::summarize(&self.m.record, &self.opts.target, target_commit, now);
        self.dir
            .write_summary(&serde_json::to_value(&summary).context("serialise summary")?)
            .context("failed to write summary.json")?;
        self.emit(Event::Summary(Box::new(summary.clone())))?;
        self.flush()?;
        self.reporter.finish(&self.m.record, &summary);
        Ok((self.m.record, summary))
    }
}

/// The reason shown for an instance stopped by Ctrl-C (`interrupted` is the
/// field resume reads).
pub const INTERRUPTED: &str = "interrupted";
