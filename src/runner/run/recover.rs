//! Recovery: what `resume` and `treefarm merge` do first. The journal of
//! the previous coordinator, git (half-made worktrees, stale lock files,
//! merges that landed) and the processes still out there (agents to
//! re-attach, orphans to end) are reconciled into the machine's state and
//! the launches that continue the run.

use std::time::Duration;

use tokio::sync::watch;

use crate::git::{layout, Repo};
use crate::runner::agent::executor::Executor;
use crate::runner::agent::local::Local;
use crate::runner::agent::slurm::read_intent;
use crate::runner::error::RunnerError;
use crate::runner::machine::Found;
use crate::runner::messages::{ending_result, AgentEnd, AgentHandle, Mode, Stop};
use crate::runner::run::dispatch::{Dispatcher, INTERRUPTED};
use crate::schedule::Restored;
use crate::slurm::JobName;
use crate::state::{now_ms, InstanceRecord, InstanceState};

impl Dispatcher<'_> {
    /// Brings every instance recorded by an earlier coordinator back under
    /// control (resume, merge): the journal plus git say where each stands.
    pub(super) async fn reconcile(&mut self) -> Result<(), RunnerError> {
        self.clear_stale_git_locks()?;
        self.settle_lagging_indexes();
        let instances = self.m.record().instances.clone();
        let (jobs, cancelled) = self.find_jobs(&instances).await;
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
                InstanceState::Conflicted if inst.resolving => {
                    // A conflict handed back to the agent, whose attempt
                    // never started: hand it back again.
                    self.m.reschedule(&id, Restored::AwaitingSettle);
                    let actions = self.m.resume_resolve(&id, now_ms())?;
                    self.perform(actions)?;
                }
                InstanceState::Conflicted | InstanceState::Refused => {
                    if self.mode == Mode::MergeOnly {
                        self.m.reschedule(&id, Restored::AwaitingSettle);
                        self.requeue_after_fix(&id).await?;
                    } else {
                        self.m.reschedule(&id, Restored::Settled { merged: false });
                    }
                }
                InstanceState::Creating | InstanceState::Created | InstanceState::Running => {
                    if self.mode == Mode::MergeOnly {
                        // Still someone else's business; leave it alone.
                        self.m.reschedule(&id, Restored::Running);
                        continue;
                    }
                    self.m.reschedule(&id, Restored::Running);
                    let slot = self.m.claim_slot(inst.slot);
                    // A journal written before the field: the reason text.
                    let mut interrupted = inst.interrupted
                        || inst.reason.as_deref() == Some(INTERRUPTED)
                        || cancelled.contains(&id);
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
                    } else if self.slurm.is_some() {
                        jobs.get(&id).cloned()
                    } else {
                        self.find_live_agent(inst)
                            .map(|(pid, start)| AgentHandle::Process(pid, start))
                    };
                    // A termination the previous coordinator began (SIGTERM
                    // sent, SIGKILL pending) is finished on its deadline.
                    let ending = inst.ending.as_deref().map(ending_result);
                    let mut terminating = None;
                    if let (Some(why), Some(handle)) = (&ending, &live) {
                        match why {
                            Some(why) => {
                                let kill_at = inst.kill_at_ms.unwrap_or_else(now_ms);
                                terminating = Some((why.clone(), kill_at));
                            }
                            None => {
                                // A stop (Ctrl-C) under way: end it, rerun.
                                // (A Slurm job was cancelled again, with the
                                // others, by `find_jobs`.)
                                if let AgentHandle::Process(pid, start) = handle {
                                    let kill_at = inst.kill_at_ms.unwrap_or_else(now_ms);
                                    let (_keep, stop) = watch::channel(Stop::Run);
                                    Local
                                        .finish_termination(
                                            (*pid, *start),
                                            kill_at,
                                            AgentEnd::Stopped,
                                            stop,
                                        )
                                        .await;
                                }
                                live = None;
                                interrupted = true;
                            }
                        }
                    }
                    // Anything else of this instance still running (what the
                    // agent left, a setup command) ends before anything
                    // starts in its worktree.
                    let keep = match &live {
                        Some(AgentHandle::Process(pid, _)) => Some(*pid),
                        _ => None,
                    };
                    self.end_orphans(inst, keep).await;
                    let ended = match (&ending, &live) {
                        (Some(Some(why)), None) => Some(why.clone()),
                        _ => None,
                    };
                    let exited = if live.is_none()
                        && inst.state != InstanceState::Creating
                        && !interrupted
                        && ended.is_none()
                    {
                        // The wrapper records the exit code of the latest
                        // attempt (a new attempt removes the old file first).
                        Local.exit_record(&self.dir.exit_path(&id))
                    } else {
                        None
                    };
                    // The attempt the agent out there belongs to: the
                    // coordinator may have died before journalling its start.
                    let seen_attempt = match (&live, exited) {
                        (Some(AgentHandle::Process(pid, _)), _) => {
                            crate::procfs::env_var(*pid, "TREEFARM_ATTEMPT")
                                .and_then(|a| a.parse::<u32>().ok())
                        }
                        (Some(AgentHandle::Job { name, .. }), _) => {
                            JobName::parse(name).map(|n| n.number)
                        }
                        (None, Some((_, attempt))) => attempt,
                        (None, None) => None,
                    };
                    let exited = exited.map(|(code, _)| code);
                    let found = Found {
                        slot,
                        start_commit,
                        live,
                        ended,
                        terminating,
                        exited,
                        seen_attempt,
                    };
                    let (launch, actions) = self.m.resume_out(&id, found, now_ms())?;
                    self.perform(actions)?;
                    replant.push(launch);
                }
                InstanceState::Pending
                | InstanceState::Skipped
                | InstanceState::Failed
                | InstanceState::TimedOut
                | InstanceState::Unchanged
                | InstanceState::Succeeded
                | InstanceState::Merging
                | InstanceState::Merged
                | InstanceState::Pruned => {
                    // Only a merge under way needs git's word.
                    let landed = inst.state == InstanceState::Merging && self.merge_landed(inst)?;
                    let actions = self.m.restore(&id, self.mode, landed, now_ms())?;
                    self.perform(actions)?;
                }
            }
        }
        self.take_skipped()?;
        self.end_orphan_gates().await;
        let actions = self.m.resume_queue(now_ms())?;
        self.perform(actions)?;
        let actions = self.m.replant(replant);
        self.perform(actions)
    }

    /// Ends the merge-queue gate runs a previous coordinator left (found by
    /// the run id and `TREEFARM_GATE` in their environment): the planner
    /// runs again whatever it still needs. A gate run as a Slurm job
    /// (`slurm.gates`) is not swept here even on the coordinator's host: it
    /// was cancelled through Slurm when the dispatcher started.
    async fn end_orphan_gates(&mut self) {
        let groups: Vec<u32> = crate::procfs::groups_with_env(&[
            ("TREEFARM_RUN_ID", &self.m.record().run_id),
            ("TREEFARM_GATE", "1"),
        ])
        .into_iter()
        .filter(|g| !self.is_slurm_job(*g))
        .collect();
        if groups.is_empty() {
            return;
        }
        self.note(format!(
            "ending gate process group(s) {groups:?} left by the interrupted run"
        ));
        let grace = Duration::from_millis(self.opts.grace_ms);
        for group in groups {
            crate::runner::agent::local::kill_group(group, grace).await;
        }
    }

    /// A conflicted or refused branch the user fixed by hand: commit what they
    /// left and merge again.
    async fn requeue_after_fix(&mut self, id: &str) -> Result<(), RunnerError> {
        let worktree = self.opts.worktree_for(id);
        if worktree.exists() && Repo::merge_in_progress(&worktree).unwrap_or(false) {
            // A conflict its agent did not resolve: its markers are never
            // committed for the user.
            self.note(format!(
                "{id}: a merge is in progress in `{}`; conclude it (`git commit`) or abort it (`git merge --abort`), then run `treefarm merge` again",
                worktree.display()
            ));
            self.m.leave_unmerged(id);
            return Ok(());
        }
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
            .map_err(|source| RunnerError::Join {
                worktree: worktree.clone(),
                source,
            })?
            .map_err(|source| RunnerError::CommitFixes {
                worktree: worktree.clone(),
                source,
            })?;
        }
        self.m.requeue_fixed(id, now_ms())?;
        Ok(())
    }

    /// Removes the git lock files a coordinator killed in the middle of a ref
    /// update, branch deletion or auto-commit leaves behind (libgit2 writes
    /// `<file>.lock` and renames it over `<file>`; a kill in between leaves
    /// it, and every later update of that ref would fail). A lock some live
    /// process holds open is someone's update in progress and is left alone.
    fn clear_stale_git_locks(&mut self) -> Result<(), RunnerError> {
        if self
            .m
            .record()
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
            layout::branch_lock(&common, &self.opts.target),
            layout::packed_refs_lock(&common),
        ];
        for inst in &self.m.record().instances {
            let branch = crate::spec::branch_for(&inst.id);
            candidates.push(layout::branch_lock(&common, &branch));
            if inst.agent_alive() {
                continue;
            }
            candidates.extend(layout::worktree_locks(&common, &inst.id));
            candidates.extend(layout::merge_state_locks(&common, &inst.id));
        }
        // The gate pool's worktrees: a kill while one was moved leaves its
        // HEAD or index lock; a kill while one was planted, its temporary
        // branch's lock — possibly before its folder or admin entry exists,
        // so those are looked for by name.
        for slot in repo.gate_pool_slots() {
            candidates.extend(layout::worktree_locks(
                &common,
                &crate::git::gate_admin_name(slot),
            ));
        }
        candidates.extend(layout::gate_pool_branch_locks(&common));
        candidates.retain(|p| p.symlink_metadata().is_ok());
        let held = crate::procfs::open_by_any_process(&candidates);
        for lock in candidates.iter().filter(|p| !held.contains(p)) {
            self.note(format!(
                "removing stale git lock `{}` left by the interrupted run",
                lock.display()
            ));
            match std::fs::remove_file(lock) {
                // Gone meanwhile: a live git finished with it, so not stale.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(|source| RunnerError::Remove {
                    what: "the stale git lock",
                    path: lock.clone(),
                    source,
                })?,
            }
        }
        Ok(())
    }

    /// Brings in line the index of every worktree the killed coordinator
    /// committed in but left lagging (`git/index_lag.rs`), so that a kept
    /// worktree reads as git would have it — before anything lists one.
    /// (`treefarm merge` leaves them: a run may still hold them.) A failure
    /// is said and left: whatever reads that worktree later settles first.
    fn settle_lagging_indexes(&mut self) {
        if self.mode != Mode::Run {
            return;
        }
        let settled = Repo::discover(&self.opts.repo_root).and_then(|r| r.settle_lagging_indexes());
        if let Err(e) = settled {
            self.note(format!(
                "cannot bring a worktree's index in line with its branch: {}",
                crate::error::chain(&e)
            ));
        }
    }

    /// Ends every process group of `inst` (found by the run and spec ids in
    /// their environment) but the re-adopted agent's `keep`: whatever the
    /// agent or its setup command left running when the previous
    /// coordinator died. SIGTERM, then SIGKILL when the journalled deadline
    /// of an interrupted termination passes (else after `agent.kill_grace`).
    async fn end_orphans(&mut self, inst: &InstanceRecord, keep: Option<u32>) {
        let groups: Vec<u32> = crate::procfs::groups_with_env(&[
            ("TREEFARM_RUN_ID", &self.m.record().run_id),
            ("TREEFARM_SPEC_ID", &inst.id),
        ])
        .into_iter()
        .filter(|g| Some(*g) != keep && !self.is_slurm_job(*g))
        .collect();
        if groups.is_empty() {
            return;
        }
        let grace = match inst.kill_at_ms {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_millis(self.opts.grace_ms),
        };
        self.note(format!(
            "{}: ending process group(s) {groups:?} left by the interrupted run",
            inst.id
        ));
        let kills: Vec<_> = groups
            .into_iter()
            .map(|g| tokio::spawn(crate::runner::agent::local::kill_group(g, grace)))
            .collect();
        for kill in kills {
            let _ = kill.await;
        }
    }

    /// Whether process group `pgid` is the agent of one of this run's Slurm
    /// jobs (on a node that is also the coordinator's host, it carries the
    /// run's environment too): its job name, which Slurm sets in every
    /// process of the job, is the run's. Those are followed through Slurm,
    /// never swept as orphans.
    fn is_slurm_job(&self, pgid: u32) -> bool {
        let prefix = format!("treefarm:{}:", self.m.record().run_id);
        crate::procfs::env_var(pgid, "SLURM_JOB_NAME").is_some_and(|name| name.starts_with(&prefix))
    }

    /// `executor: slurm`: the live job of each instance still out, by spec
    /// id — found by the name in its intent file (written before `sbatch`)
    /// or the journal, in one `squeue` call. Jobs a killed coordinator was
    /// stopping (Ctrl-C) are cancelled again, in one `scancel` call, and
    /// returned apart: their attempts run again.
    async fn find_jobs(
        &mut self,
        instances: &[InstanceRecord],
    ) -> (
        std::collections::HashMap<String, AgentHandle>,
        std::collections::HashSet<String>,
    ) {
        let mut found = std::collections::HashMap::new();
        let mut stopped = std::collections::HashSet::new();
        let Some(slurm) = self.slurm.clone() else {
            return (found, stopped);
        };
        let mut names: Vec<(String, JobName)> = Vec::new();
        for inst in instances.iter().filter(|i| {
            self.mode == Mode::Run
                && matches!(i.state, InstanceState::Created | InstanceState::Running)
        }) {
            let intent = read_intent(&self.dir.instance_dir(&inst.id)).map(|(n, _)| n);
            let journalled = inst.job.as_ref().and_then(|j| JobName::parse(&j.name));
            for name in intent.into_iter().chain(journalled) {
                if !names.iter().any(|(_, n)| *n == name) {
                    names.push((inst.id.clone(), name));
                }
            }
        }
        if names.is_empty() {
            return (found, stopped);
        }
        let all: Vec<JobName> = names.iter().map(|(_, n)| n.clone()).collect();
        let snapshot = match slurm.lookup(&all).await {
            Ok(s) => s,
            Err(err) => {
                // Without the queue nothing can be told apart: follow every
                // named job (the poller finds out), never submit a second.
                self.note(format!(
                    "cannot ask Slurm which jobs of the run are left ({err}); following them by name"
                ));
                crate::slurm::QueueSnapshot::default()
            }
        };
        let mut cancel = Vec::new();
        for (id, name) in names {
            let text = name.to_string();
            let Some(row) = snapshot
                .rows
                .iter()
                .filter(|r| r.name == text)
                .max_by_key(|r| r.id)
            else {
                continue;
            };
            if row.state.is_finished() {
                continue;
            }
            let inst = instances.iter().find(|i| i.id == id);
            let stopping = inst
                .and_then(|i| i.ending.as_deref())
                .is_some_and(|e| ending_result(e).is_none());
            if stopping {
                self.note(format!(
                    "{id}: cancelling Slurm job {} ({text}), which the interrupted run was stopping",
                    row.id
                ));
                cancel.push(row.id);
                stopped.insert(id);
                continue;
            }
            // The newest attempt's job wins.
            let newer = match found.get(&id) {
                Some(AgentHandle::Job { name: old, .. }) => {
                    JobName::parse(old).is_some_and(|old| old.number < name.number)
                }
                _ => true,
            };
            if newer {
                found.insert(
                    id,
                    AgentHandle::Job {
                        name: text,
                        id: Some(row.id.0),
                    },
                );
            }
        }
        slurm.cancel_now(&cancel).await;
        (found, stopped)
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
            ("TREEFARM_RUN_ID", &self.m.record().run_id),
            ("TREEFARM_SPEC_ID", &inst.id),
        ])
        .pop()
    }

    /// Removes what an interrupted planting of `id` left (a worktree and its
    /// admin entry, complete or not) and returns where its branch starts
    /// (empty: no branch yet, plant from the target tip). Only called for
    /// `creating` instances: nothing but treefarm has used that worktree.
    fn discard_unfinished_plant(&self, id: &str) -> Result<String, RunnerError> {
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
        let admin = layout::worktree_admin(repo.common_dir(), id);
        let staging = crate::git::staging_admin(repo.common_dir(), id);
        for (what, leftover) in [
            ("the half-made worktree entry", &staging),
            ("the half-made worktree entry", &admin),
            ("the half-made worktree", &path),
        ] {
            if leftover.symlink_metadata().is_ok() {
                std::fs::remove_dir_all(leftover).map_err(|source| RunnerError::Remove {
                    what,
                    path: leftover.clone(),
                    source,
                })?;
            }
        }
        let branch = crate::spec::branch_for(id);
        Ok(repo
            .branch_tip(&branch)?
            .map(|t| t.to_string())
            .unwrap_or_default())
    }

    /// Whether a merge journalled as `merging` reached the target before the
    /// previous coordinator died.
    fn merge_landed(&self, inst: &InstanceRecord) -> Result<bool, RunnerError> {
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
}
