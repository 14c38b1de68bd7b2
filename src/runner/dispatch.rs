//! The dispatcher: the one owner of a run's state. It starts instances as the
//! scheduler allows, hears from instance tasks and the merge task over one
//! channel, journals every transition before acting on it, merges one branch
//! at a time, prunes, and handles Ctrl-C (graceful, then kill).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::git::{Repo, WorktreeRequest};
use crate::merge::{self, Gate, MergeRequest, MergeResult};
use crate::report::{ConflictSummary, Event, Reporter, Summary};
use crate::runner::executor::{AgentEnd, AgentEvent, Stop};
use crate::runner::instance::{run_instance, InstanceMsg, Launch, Verdict, Work};
use crate::runner::machine::RunMachine;
use crate::runner::messages::{LaneMsg as Msg, Mode};
use crate::runner::options::RunOptions;
use crate::schedule::{Node, Restored, Scheduler};
use crate::state::{
    crash_point, now_ms, InstanceRecord, InstanceState, RunDir, RunRecord, RunState,
};

pub struct Dispatcher<'r> {
    opts: Arc<RunOptions>,
    dir: Arc<RunDir>,
    /// The run's record, scheduler, slots and queues.
    m: RunMachine,
    reporter: &'r mut dyn Reporter,
    mode: Mode,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    inst_tx: mpsc::UnboundedSender<(String, InstanceMsg)>,
    inst_rx: mpsc::UnboundedReceiver<(String, InstanceMsg)>,
    stop_tx: watch::Sender<Stop>,
    agents_in_flight: usize,
    other_in_flight: usize,
    stopping: bool,
    killing: bool,
    progress_dirty: bool,
    /// The record changed since the last journal write.
    dirty: bool,
    /// Events reported but not yet appended to `events.jsonl`.
    unjournalled: Vec<serde_json::Value>,
    /// An agent start is among the unjournalled changes (crash point).
    start_unjournalled: bool,
    works: HashMap<String, Work>,
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
            progress_dirty: false,
            dirty: false,
            unjournalled: Vec::new(),
            start_unjournalled: false,
            works: HashMap::new(),
        }
    }

    fn inst(&mut self, id: &str) -> &mut InstanceRecord {
        self.m
            .record
            .instance_mut(id)
            .expect("every scheduled id has an instance record")
    }

    /// Records that the run's state changed. The journal is written by
    /// [`Dispatcher::flush`], once per turn of the loop (group commit) and
    /// always before anything is done that depends on the change.
    fn save(&mut self) -> anyhow::Result<()> {
        self.dirty = true;
        Ok(())
    }

    /// Writes what changed: pending events with one fsync, then state.json
    /// atomically. A failure here is fatal: acting on a transition that is
    /// not journalled would break crash safety.
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.unjournalled.is_empty() {
            self.dir
                .append_events(&self.unjournalled)
                .context("failed to append to the event journal")?;
            self.unjournalled.clear();
        }
        if self.dirty || self.progress_dirty {
            self.dir
                .write_state(&self.m.record)
                .context("failed to journal the run state")?;
            self.dirty = false;
            self.progress_dirty = false;
        }
        if std::mem::take(&mut self.start_unjournalled) {
            crash_point("agents-running");
        }
        Ok(())
    }

    /// Shows an event at once; it reaches `events.jsonl` at the next flush.
    fn emit(&mut self, event: Event) -> anyhow::Result<()> {
        let at_ms = now_ms();
        if !event.is_transient() {
            let value = crate::report::stamped(&event, at_ms).context("serialise event")?;
            self.unjournalled.push(value);
        }
        self.reporter.event_at(&event, at_ms);
        Ok(())
    }

    /// Moves an instance along its lifecycle (checked by the machine).
    fn set_state(&mut self, id: &str, state: InstanceState) -> anyhow::Result<()> {
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
            tokio::select! {
                Some((id, msg)) = self.inst_rx.recv() => self.on_instance(id, msg)?,
                Some(msg) = self.rx.recv() => self.on_msg(msg)?,
                _ = sigint.recv() => self.on_signal("interrupt")?,
                _ = sigterm.recv() => self.on_signal("terminate")?,
                _ = sighup.recv() => self.on_signal("hangup")?,
                _ = tick.tick() => self.reporter.refresh(&self.m.record, now_ms()),
            }
            // Whatever else has arrived meanwhile joins this turn's journal
            // write, so a burst of agent events costs one fsync, not one each.
            for _ in 0..256 {
                if let Ok((id, msg)) = self.inst_rx.try_recv() {
                    self.on_instance(id, msg)?;
                } else if let Ok(msg) = self.rx.try_recv() {
                    self.on_msg(msg)?;
                } else {
                    break;
                }
            }
        }
        self.finish()
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
            eprintln!("treefarm: second {name}: killing agents now");
            self.killing = true;
            let _ = self.stop_tx.send(Stop::Kill);
        } else {
            eprintln!(
                "treefarm: {name}: stopping agents gracefully (again to kill); worktrees are kept"
            );
            self.stopping = true;
            let _ = self.stop_tx.send(Stop::Graceful);
        }
        Ok(())
    }

    /// Brings every instance recorded by an earlier coordinator back under
    /// control (resume, merge): the journal plus git say where each stands.
    async fn reconcile(&mut self) -> anyhow::Result<()> {
        self.clear_stale_git_locks()?;
        let instances = self.m.record.instances.clone();
        let mut replant = Vec::new();
        for inst in &instances {
            let id = inst.id.clone();
            let out = matches!(
                inst.state,
                InstanceState::Creating | InstanceState::Created | InstanceState::Running
            );
            if self.mode == Mode::Run && !out {
                // Settled or not started: nothing of it may still run.
                self.end_orphans(inst, None).await;
            }
            match inst.state {
                InstanceState::Pending => {}
                InstanceState::Skipped
                | InstanceState::Failed
                | InstanceState::TimedOut
                | InstanceState::Unchanged => self
                    .m
                    .sched
                    .restore(&id, Restored::Settled { merged: false }),
                InstanceState::Conflicted | InstanceState::Refused => {
                    if self.mode == Mode::MergeOnly {
                        self.m.sched.restore(&id, Restored::AwaitingSettle);
                        self.requeue_after_fix(&id).await?;
                    } else {
                        self.m
                            .sched
                            .restore(&id, Restored::Settled { merged: false });
                    }
                }
                InstanceState::Creating | InstanceState::Created | InstanceState::Running => {
                    if self.mode == Mode::MergeOnly {
                        // Still someone else's business; leave it alone.
                        self.m.sched.restore(&id, Restored::Running);
                        continue;
                    }
                    self.m.sched.restore(&id, Restored::Running);
                    let slot = self.m.claim_slot(inst.slot);
                    let mut interrupted = inst.reason.as_deref() == Some(INTERRUPTED);
                    let mut start_commit = inst.start_commit.clone().unwrap_or_default();
                    if inst.state == InstanceState::Creating {
                        // Killed while planting: the worktree may be half
                        // checked out (an agent committing `git add -A` there
                        // would delete files). No agent ran in it yet, so make
                        // it again, on the branch as it was created.
                        start_commit = self.discard_unfinished_plant(&id)?;
                    }
                    let mut live = if inst.state == InstanceState::Creating {
                        None
                    } else {
                        self.find_live_agent(inst)
                    };
                    // A termination the previous coordinator began (SIGTERM
                    // sent, SIGKILL pending) is finished on its deadline.
                    let ending = inst.ending.as_deref().map(ending_result);
                    let mut terminating = None;
                    if let (Some(why), Some((pid, start))) = (&ending, live) {
                        match why {
                            Some(why) => {
                                let kill_at = inst.kill_at_ms.unwrap_or_else(now_ms);
                                terminating = Some((why.clone(), kill_at));
                            }
                            None => {
                                // A stop (Ctrl-C) under way: end it, rerun.
                                let kill_at = inst.kill_at_ms.unwrap_or_else(now_ms);
                                let (_keep, stop) = watch::channel(Stop::Run);
                                crate::runner::executor::finish_termination(
                                    pid,
                                    start,
                                    kill_at,
                                    AgentEnd::Stopped,
                                    stop,
                                )
                                .await;
                                live = None;
                                interrupted = true;
                            }
                        }
                    }
                    // Anything else of this instance still running (what the
                    // agent left, a setup command) ends before anything
                    // starts in its worktree.
                    self.end_orphans(inst, live.map(|(pid, _)| pid)).await;
                    let ended = match (&ending, live) {
                        (Some(Some(why)), None) => Some(why.clone()),
                        _ => None,
                    };
                    if let Some(why) = &ended {
                        eprintln!(
                            "treefarm: {id}: agent {why} while treefarm was not running; its processes are ended"
                        );
                    }
                    let exited = if live.is_none()
                        && inst.state != InstanceState::Creating
                        && !interrupted
                        && ended.is_none()
                    {
                        // The wrapper records the exit code of the latest
                        // attempt (a new attempt removes the old file first).
                        crate::runner::executor::read_exit_record(&self.dir.exit_path(&id))
                    } else {
                        None
                    };
                    // The attempt the agent out there belongs to: the
                    // coordinator may have died before journalling its start.
                    let seen_attempt = match (live, exited) {
                        (Some((pid, _)), _) => crate::procfs::env_var(pid, "TREEFARM_ATTEMPT")
                            .and_then(|a| a.parse::<u32>().ok()),
                        (None, Some((_, attempt))) => attempt,
                        (None, None) => None,
                    };
                    let exited = exited.map(|(code, _)| code);
                    match (live, exited) {
                        (Some((pid, _)), _) => eprintln!(
                            "treefarm: {id}: agent pid {pid} is still running; re-attaching and waiting for it"
                        ),
                        (None, Some(code)) => eprintln!(
                            "treefarm: {id}: agent ended while treefarm was not running (exit code {code})"
                        ),
                        (None, None) if inst.state == InstanceState::Running => eprintln!(
                            "treefarm: {id}: agent is gone without an exit code; running it again in its worktree (partial work kept)"
                        ),
                        (None, None) => {}
                    }
                    let attempt = if live.is_some() || exited.is_some() || ended.is_some() {
                        inst.attempt.max(seen_attempt.unwrap_or(0)).max(1)
                    } else {
                        inst.attempt + 1
                    };
                    let inst_mut = self.inst(&id);
                    inst_mut.attempt = inst_mut.attempt.max(seen_attempt.unwrap_or(0));
                    inst_mut.slot = Some(slot);
                    inst_mut.reason = None;
                    replant.push(Launch {
                        id: id.clone(),
                        slot,
                        start_commit,
                        attempt,
                        reattach: live,
                        exited,
                        setup: inst.state != InstanceState::Running,
                        ended,
                        terminating,
                        timeout_left: inst
                            .deadline_ms
                            .map(|d| Duration::from_millis(d.saturating_sub(now_ms()))),
                    });
                }
                InstanceState::Succeeded => {
                    if self.opts.no_merge && self.mode == Mode::Run {
                        self.m
                            .sched
                            .restore(&id, Restored::Settled { merged: true });
                    } else {
                        self.m.sched.restore(&id, Restored::AwaitingSettle);
                        self.enqueue_merge(&id);
                    }
                }
                InstanceState::Merging => {
                    self.m.sched.restore(&id, Restored::AwaitingSettle);
                    if self.merge_landed(inst)? {
                        let commit = inst.merged_commit.clone().unwrap_or_default();
                        self.on_merged(&id, commit)?;
                    } else {
                        self.set_state(&id, InstanceState::Succeeded)?;
                        self.enqueue_merge(&id);
                    }
                }
                InstanceState::Merged => {
                    self.m
                        .sched
                        .restore(&id, Restored::Settled { merged: true });
                    if !self.opts.keep {
                        self.start_prune(&id);
                    }
                }
                InstanceState::Pruned => self
                    .m
                    .sched
                    .restore(&id, Restored::Settled { merged: true }),
            }
        }
        self.take_skipped()?;
        if !replant.is_empty() {
            self.save()?;
            self.flush()?;
            self.plant(replant, true);
        }
        Ok(())
    }

    /// A conflicted or refused branch the user fixed by hand: commit what they
    /// left and merge again.
    async fn requeue_after_fix(&mut self, id: &str) -> anyhow::Result<()> {
        let worktree = self.opts.worktree_for(id);
        if worktree.exists() {
            let wt = worktree.clone();
            let id2 = id.to_string();
            // What setup copied or linked in is not part of the fix.
            let placed = self.opts.setup_placed();
            tokio::task::spawn_blocking(move || {
                Repo::commit_all_except(
                    &wt,
                    &format!("treefarm: commit manual fixes for {id2}"),
                    &placed,
                )
            })
            .await
            .context("join commit task")?
            .with_context(|| {
                format!("failed to commit manual fixes in `{}`", worktree.display())
            })?;
        }
        self.set_state(id, InstanceState::Succeeded)?;
        let inst = self.inst(id);
        inst.conflict_paths.clear();
        inst.reason = None;
        inst.ended_at_ms = None;
        self.enqueue_merge(id);
        Ok(())
    }

    /// Removes the git lock files a coordinator killed in the middle of a ref
    /// update, branch deletion or auto-commit leaves behind (libgit2 writes
    /// `<file>.lock` and renames it over `<file>`; a kill in between leaves
    /// it, and every later update of that ref would fail). A lock some live
    /// process holds open is someone's update in progress and is left alone.
    fn clear_stale_git_locks(&self) -> anyhow::Result<()> {
        if self
            .m
            .record
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Pending)
        {
            return Ok(());
        }
        let repo = Repo::discover(&self.opts.repo_root)?;
        let common = repo.common_dir().to_path_buf();
        let common = common.canonicalize().unwrap_or(common);
        let mut candidates = vec![
            common
                .join("refs/heads")
                .join(format!("{}.lock", self.opts.target)),
            common.join("packed-refs.lock"),
        ];
        for inst in &self.m.record.instances {
            let branch = crate::runner::options::branch_for(&inst.id);
            candidates.push(common.join("refs/heads").join(format!("{branch}.lock")));
            if inst.agent_alive() {
                continue;
            }
            let admin = common.join("worktrees").join(&inst.id);
            candidates.push(admin.join("index.lock"));
            candidates.push(admin.join("HEAD.lock"));
        }
        candidates.retain(|p| p.symlink_metadata().is_ok());
        let held = crate::procfs::open_by_any_process(&candidates);
        for lock in candidates.iter().filter(|p| !held.contains(p)) {
            eprintln!(
                "treefarm: removing stale git lock `{}` left by the interrupted run",
                lock.display()
            );
            match std::fs::remove_file(lock) {
                // Gone meanwhile: a live git finished with it, so not stale.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.with_context(|| {
                    format!("failed to remove stale git lock `{}`", lock.display())
                })?,
            }
        }
        Ok(())
    }

    /// Ends every process group of `inst` (found by the run and spec ids in
    /// their environment) but the re-adopted agent's `keep`: whatever the
    /// agent or its setup command left running when the previous
    /// coordinator died. SIGTERM, then SIGKILL when the journalled deadline
    /// of an interrupted termination passes (else after `agent.kill_grace`).
    async fn end_orphans(&self, inst: &InstanceRecord, keep: Option<u32>) {
        let groups: Vec<u32> = crate::procfs::groups_with_env(&[
            ("TREEFARM_RUN_ID", &self.m.record.run_id),
            ("TREEFARM_SPEC_ID", &inst.id),
        ])
        .into_iter()
        .filter(|g| Some(*g) != keep)
        .collect();
        if groups.is_empty() {
            return;
        }
        let grace = match inst.kill_at_ms {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_millis(self.opts.grace_ms),
        };
        eprintln!(
            "treefarm: {}: ending process group(s) {groups:?} left by the interrupted run",
            inst.id
        );
        let kills: Vec<_> = groups
            .into_iter()
            .map(|g| tokio::spawn(crate::runner::executor::kill_group(g, grace)))
            .collect();
        for kill in kills {
            let _ = kill.await;
        }
    }

    /// The agent of `inst` if it is still alive: the journalled process (pid
    /// and start time, so a recycled pid is not mistaken for it), else an
    /// agent the previous coordinator started but died before journalling
    /// (found by its group and environment), so it is never run twice at once
    /// in one worktree.
    fn find_live_agent(&self, inst: &InstanceRecord) -> Option<(u32, u64)> {
        if let (Some(pid), Some(start)) = (inst.pid, inst.pid_start) {
            if crate::procfs::is_alive(pid, Some(start)) {
                return Some((pid, start));
            }
        }
        crate::procfs::group_leaders_with_env(&[
            ("TREEFARM_RUN_ID", &self.m.record.run_id),
            ("TREEFARM_SPEC_ID", &inst.id),
        ])
        .pop()
    }

    /// Removes what an interrupted planting of `id` left (a worktree and its
    /// admin entry, complete or not) and returns where its branch starts
    /// (empty: no branch yet, plant from the target tip). Only called for
    /// `creating` instances: nothing but treefarm has used that worktree.
    fn discard_unfinished_plant(&self, id: &str) -> anyhow::Result<String> {
        let repo = Repo::discover(&self.opts.repo_root)?;
        let path = self.opts.worktree_for(id);
        let registered = repo
            .worktrees()
            .map(|list| list.iter().any(|w| !w.is_main && w.name == id))
            .unwrap_or(true);
        if registered {
            if let Err(err) = repo.remove_worktree(std::path::Path::new(id), true) {
                tracing::debug!(%id, %err, "removing a half-made worktree entry directly");
            }
        }
        // An entry too incomplete for libgit2 to list or remove (killed while
        // libgit2 was writing it) still blocks a new worktree of that name.
        let admin = repo.common_dir().join("worktrees").join(id);
        let staging = crate::git::staging_admin(repo.common_dir(), id);
        if staging.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&staging).with_context(|| {
                format!(
                    "failed to remove the half-made worktree entry `{}`",
                    staging.display()
                )
            })?;
        }
        if admin.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&admin).with_context(|| {
                format!(
                    "failed to remove the half-made worktree entry `{}`",
                    admin.display()
                )
            })?;
        }
        if path.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&path).with_context(|| {
                format!(
                    "failed to remove the half-made worktree `{}`",
                    path.display()
                )
            })?;
        }
        let branch = crate::runner::options::branch_for(id);
        Ok(repo
            .branch_tip(&branch)?
            .map(|t| t.to_string())
            .unwrap_or_default())
    }

    /// Whether a merge journalled as `merging` reached the target before the
    /// previous coordinator died.
    fn merge_landed(&self, inst: &InstanceRecord) -> anyhow::Result<bool> {
        let Some(commit) = &inst.merged_commit else {
            return Ok(false);
        };
        let repo = Repo::discover(&self.opts.repo_root)?;
        let Some(tip) = repo.branch_tip(&self.opts.target)? else {
            return Ok(false);
        };
        let commit = repo.resolve(commit)?;
        Ok(tip == commit || repo.is_ancestor(commit, tip)?)
    }

    fn take_skipped(&mut self) -> anyhow::Result<()> {
        for (id, reason) in self.m.sched.take_skipped() {
            self.set_state(&id, InstanceState::Skipped)?;
            self.inst(&id).reason = Some(reason.clone());
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
    fn plant(&mut self, launches: Vec<Launch>, reuse: bool) {
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
                        .map(|l| (l, Err(format!("{err:#}"))))
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
                            let branch = crate::runner::options::branch_for(&id);
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
                                self.inst(&id).reason = Some(INTERRUPTED.into());
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
        let branch = crate::runner::options::branch_for(id);
        let worktree = self.opts.worktree_for(id).display().to_string();
        self.emit(Event::Kept {
            id: id.to_string(),
            branch,
            worktree,
            reason: reason.to_string(),
        })
    }

    fn on_merged(&mut self, id: &str, commit: String) -> anyhow::Result<()> {
        let inst = self.inst(id);
        inst.merged_commit = Some(commit.clone());
        self.set_state(id, InstanceState::Merged)?;
        self.save()?;
        self.emit(Event::Merged {
            id: id.to_string(),
            commit,
            strategy: format!("{:?}", self.opts.strategy).to_lowercase(),
        })?;
        self.m.sched.settled(id, true);
        if !self.opts.keep {
            self.start_prune(id);
        }
        Ok(())
    }

    fn start_prune(&mut self, id: &str) {
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
            let result = prune_one(&opts, &id).map_err(|e| format!("{e:#}"));
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
                self.start_unjournalled = true;
            }
            InstanceMsg::Agent(AgentEvent::Terminating { why, kill_at_ms }) => {
                let inst = self.inst(&id);
                inst.ending = Some(ending_name(&why).to_string());
                inst.kill_at_ms = Some(kill_at_ms);
                self.save()?;
            }
            InstanceMsg::Agent(AgentEvent::Status(status)) => {
                let inst = self.inst(&id);
                inst.progress = status.progress;
                inst.message = status.message.clone();
                self.progress_dirty = true;
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
                    AgentEnd::Exited(0) => ("succeeded", Some(0)),
                    AgentEnd::Exited(c) => ("failed", Some(*c)),
                    AgentEnd::Signaled(_) | AgentEnd::SpawnFailed(_) | AgentEnd::Unknown => {
                        ("failed", None)
                    }
                    AgentEnd::TimedOut => ("timed_out", None),
                    AgentEnd::IdleTimedOut => ("idle_timeout", None),
                    AgentEnd::Stopped => ("stopped", None),
                };
                let inst = self.inst(&id);
                inst.exit_code = code;
                inst.pid = None;
                inst.pid_start = None;
                inst.deadline_ms = None;
                inst.ending = None;
                inst.kill_at_ms = None;
                if matches!(end, AgentEnd::Stopped) {
                    inst.reason = Some(INTERRUPTED.into());
                }
                let log = inst.log_path.clone();
                self.save()?;
                self.emit(Event::Exited {
                    id,
                    attempt,
                    result: result.into(),
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
                let inst = self.inst(id);
                inst.reason = Some(INTERRUPTED.into());
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

    fn enqueue_merge(&mut self, id: &str) {
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
            let result =
                merge_one(&opts, &dir, &run_id, &id, &subjects, &tx).map_err(|e| format!("{e:#}"));
            let _ = tx.send(Msg::Merged(id, result));
        });
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<(RunRecord, Summary)> {
        let interrupted = self.stopping
            || self.m.record.instances.iter().any(|i| {
                !i.state.is_terminal()
                    && i.state != InstanceState::Succeeded
                    && i.state != InstanceState::Pending
            }) && self.mode == Mode::Run;
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
        let summary = summarize(&self.m.record, &self.opts, now);
        self.dir
            .write_summary(&serde_json::to_value(&summary).context("serialise summary")?)
            .context("failed to write summary.json")?;
        self.emit(Event::Summary(Box::new(summary.clone())))?;
        self.flush()?;
        self.reporter.finish(&self.m.record, &summary);
        Ok((self.m.record, summary))
    }
}

/// Journal reason of an instance stopped by Ctrl-C: resume reruns it.
pub const INTERRUPTED: &str = "interrupted";

/// How the journal names why an agent's group was being terminated.
fn ending_name(why: &AgentEnd) -> &'static str {
    match why {
        AgentEnd::TimedOut => "timed_out",
        AgentEnd::IdleTimedOut => "idle_timeout",
        _ => "stopped",
    }
}

/// The result a journalled termination stands for; `None` for a stop (the
/// attempt is rerun, as after Ctrl-C).
fn ending_result(name: &str) -> Option<AgentEnd> {
    match name {
        "timed_out" => Some(AgentEnd::TimedOut),
        "idle_timeout" => Some(AgentEnd::IdleTimedOut),
        _ => None,
    }
}

fn plant_batch(
    opts: &RunOptions,
    mut launches: Vec<Launch>,
    reuse: bool,
) -> anyhow::Result<Vec<(Launch, Result<(), String>)>> {
    let repo = Repo::discover(&opts.repo_root)?;
    let tip = repo
        .branch_tip(&opts.target)?
        .with_context(|| format!("target branch `{}` does not exist", opts.target))?;
    std::fs::create_dir_all(&opts.worktree_dir).with_context(|| {
        format!(
            "failed to create the worktree folder `{}`",
            opts.worktree_dir.display()
        )
    })?;
    let mut requests = Vec::new();
    for launch in &mut launches {
        if launch.start_commit.is_empty() {
            launch.start_commit = tip.to_string();
        }
        requests.push(WorktreeRequest {
            name: launch.id.clone(),
            path: opts.worktree_for(&launch.id),
            branch: crate::runner::options::branch_for(&launch.id),
            start: repo.resolve(&launch.start_commit)?,
            reuse,
            sparse: opts.sparse_for(&launch.id),
        });
    }
    let results = repo.add_worktrees(&requests);
    Ok(launches
        .into_iter()
        .zip(results)
        .map(|(l, r)| (l, r.map_err(|e| crate::error::chain(&e))))
        .collect())
}

fn merge_one(
    opts: &RunOptions,
    dir: &RunDir,
    run_id: &str,
    id: &str,
    subjects: &[String],
    tx: &mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<MergeResult> {
    let spec = opts
        .spec(id)
        .with_context(|| format!("spec `{id}` is not part of this run"))?;
    let branch = spec.branch();
    let subjects: Vec<String> =
        if subjects.is_empty() && opts.strategy == crate::config::Strategy::Squash {
            let repo = Repo::discover(&opts.repo_root)?;
            match (repo.branch_tip(&opts.target)?, repo.branch_tip(&branch)?) {
                (Some(t), Some(b)) => repo
                    .commits_between(t, b)?
                    .into_iter()
                    .map(|c| c.summary)
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            subjects.to_vec()
        };
    let message = merge::message(opts.strategy, id, &spec.title, &branch, &subjects, run_id);
    let gate_env = vec![
        ("TREEFARM_RUN_ID".to_string(), run_id.to_string()),
        ("TREEFARM_SPEC_ID".to_string(), id.to_string()),
        ("TREEFARM_BRANCH".to_string(), branch.clone()),
        ("TREEFARM_TARGET".to_string(), opts.target.clone()),
    ];
    let gate = opts
        .gate
        .as_deref()
        .filter(|g| !g.trim().is_empty())
        .map(|command| Gate {
            command,
            scratch_dir: opts.worktree_dir.clone(),
            log_path: dir.gate_log_path(id),
            env: &gate_env,
        });
    let request = MergeRequest {
        repo_root: &opts.repo_root,
        target: &opts.target,
        branch: &branch,
        strategy: opts.strategy,
        message,
        gate,
    };
    let tip = Repo::discover(&opts.repo_root)?
        .branch_tip(&branch)?
        .map(|t| t.to_string());
    merge::merge_branch(&request, |_old, new| {
        let (ack, done) = oneshot::channel();
        tx.send(Msg::MergePrepared {
            id: id.to_string(),
            new: new.to_string(),
            tip: tip.clone(),
            ack,
        })
        .map_err(|_| anyhow::anyhow!("dispatcher gone"))?;
        done.blocking_recv()
            .map_err(|_| anyhow::anyhow!("dispatcher did not journal the merge"))
    })
}

/// Removes a merged instance's worktree, then its branch.
pub fn prune_one(opts: &RunOptions, id: &str) -> anyhow::Result<()> {
    crash_point("before-prune");
    let repo = Repo::discover(&opts.repo_root)?;
    let worktree: PathBuf = opts.worktree_for(id);
    if worktree.exists() || repo.worktrees()?.iter().any(|w| w.name == id) {
        // A removal killed half-way (coordinator crash during prune) leaves
        // a worktree missing files: those are all in the merged branch, so
        // finishing the removal loses nothing. Anything else is kept.
        let interrupted_removal = worktree.exists()
            && Repo::is_dirty(&worktree).unwrap_or(false)
            && Repo::only_deletions(&worktree)?;
        repo.remove_worktree(&worktree, interrupted_removal)?;
    }
    crash_point("during-prune");
    let branch = crate::runner::options::branch_for(id);
    if repo.branch_tip(&branch)?.is_some() {
        repo.delete_branch(&branch)?;
    }
    Ok(())
}

/// The summary of a run from its record.
pub fn summarize(record: &RunRecord, opts: &RunOptions, now: u64) -> Summary {
    let mut s = Summary {
        run_id: record.run_id.clone(),
        state: format!("{:?}", record.state).to_lowercase(),
        target: opts.target.clone(),
        elapsed_ms: now.saturating_sub(record.started_at_ms),
        ..Summary::default()
    };
    s.target_commit = Repo::discover(&opts.repo_root)
        .ok()
        .and_then(|r| r.branch_tip(&opts.target).ok().flatten())
        .map(|o| o.to_string());
    for inst in &record.instances {
        let id = inst.id.clone();
        match inst.state {
            InstanceState::Merged | InstanceState::Pruned => s.merged.push(id),
            InstanceState::Succeeded => s.succeeded.push(id),
            InstanceState::Failed => s.failed.push(id),
            InstanceState::TimedOut => s.timed_out.push(id),
            InstanceState::Unchanged => s.unchanged.push(id),
            InstanceState::Conflicted => s.conflicted.push(ConflictSummary {
                id,
                paths: inst.conflict_paths.clone(),
            }),
            InstanceState::Refused => s.refused.push(id),
            InstanceState::Skipped => s.skipped.push(id),
            _ => s.pending.push(id),
        }
        if let Some(reason) = inst.reason.as_ref().filter(|_| inst.state.is_failure()) {
            s.reasons.insert(inst.id.clone(), reason.clone());
        }
    }
    s
}
