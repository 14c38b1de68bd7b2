//! `merge.on_conflict: agent` in the run machine: a branch that conflicts
//! with the target goes back to its agent (a new attempt in its worktree,
//! prepared as `git merge <target>` leaves a conflict, with the resolution
//! prompt) instead of being kept for a human, up to
//! `merge.resolve_attempts` times. The instance stays `conflicted` with
//! `resolving` set until the agent starts (`running`); a resolution it
//! concluded makes it `succeeded` and queues it for merging again, anything
//! else leaves it `conflicted` and kept, its worktree as the agent left it.

use super::*;

impl RunMachine {
    /// Whether `id`'s conflict goes to its agent now.
    pub(super) fn may_hand_back(&mut self, id: &str) -> Result<bool, MachineError> {
        let limit = self.policy.resolve_attempts;
        let stopping = self.stopping();
        Ok(self.policy.resolve_by_agent && !stopping && self.inst(id)?.resolve_attempts < limit)
    }

    /// Hands `id`'s conflict to its agent: `resolving` is journalled before
    /// the instance task starts. Its agent starts like any other: in a free
    /// slot (its own port block) and as the concurrency window and the start
    /// interval allow; until then it waits (`resolves_waiting`, started by
    /// [`RunMachine::launch_resolves`]).
    pub(super) fn hand_back(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        now: u64,
    ) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        inst.resolving = true;
        inst.interrupted = false;
        let paths = inst.conflict_paths.clone();
        inst.reason = Some(format!(
            "its agent resolves the conflicts in {}",
            paths.join(", ")
        ));
        out.push(Action::Save);
        if !self.resolves_waiting.iter().any(|w| w == id) {
            self.resolves_waiting.push_back(id.to_string());
        }
        self.launch_resolves(out, now)
    }

    /// Starts the waiting resolve attempts, oldest first, while a slot is
    /// free and the window and the start interval let an agent start.
    pub(super) fn launch_resolves(
        &mut self,
        out: &mut Vec<Action>,
        now: u64,
    ) -> Result<(), MachineError> {
        while let Some(id) = self.resolves_waiting.front().cloned() {
            if self.stopping() || self.free_slots.is_empty() || self.room(now) == 0 {
                break;
            }
            self.resolves_waiting.pop_front();
            self.pacer.started(now);
            self.sync_pacing();
            self.start_resolve(out, &id)?;
        }
        Ok(())
    }

    /// The resolve attempt of `id` starts now.
    fn start_resolve(&mut self, out: &mut Vec<Action>, id: &str) -> Result<(), MachineError> {
        let inst = self.inst(id)?;
        let paths = inst.conflict_paths.clone();
        // Counted when the agent starts: a conflict only with branches not
        // landed yet is found clean by the preparation, and costs nothing.
        let (attempt, resolve_attempt) = (inst.attempt + 1, inst.resolve_attempts + 1);
        let start_commit = inst.start_commit.clone().unwrap_or_default();
        let preferred = inst.slot;
        // `launch_resolves` made sure a slot is free.
        let slot = self.claim_slot(preferred);
        self.inst(id)?.slot = Some(slot);
        out.push(Action::Save);
        out.push(Action::Emit(Event::Resolving {
            id: id.to_string(),
            attempt: resolve_attempt,
            paths,
        }));
        out.push(Action::Flush);
        out.push(Action::CrashPoint("resolving"));
        self.agents_in_flight += 1;
        out.push(Action::Launch(Launch {
            resolve: true,
            ..Launch::fresh(id.to_string(), slot, start_commit, attempt, false)
        }));
        Ok(())
    }

    /// `resume` (and `treefarm merge`): a resolve attempt journalled under
    /// way whose agent never started runs again.
    pub fn resume_resolve(&mut self, id: &str, now: u64) -> Result<Vec<Action>, MachineError> {
        let mut out = Vec::new();
        self.hand_back(&mut out, id, now)?;
        Ok(out)
    }

    /// The verdict of a resolve attempt.
    pub(super) fn on_resolved(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        verdict: Verdict,
        now: u64,
    ) -> Result<(), MachineError> {
        match verdict {
            Verdict::Succeeded(work) => {
                self.record_work(out, id, &work)?;
                let inst = self.inst(id)?;
                inst.resolving = false;
                inst.conflict_paths.clear();
                inst.reason = None;
                inst.merged_commit = None;
                self.advance(id, InstanceState::Succeeded, now)?;
                out.push(Action::Save);
                out.push(Action::Note(format!(
                    "{id}: no conflict with `{}` left; merging it again",
                    self.record.target()
                )));
                self.enqueue_merge(id);
            }
            Verdict::Failed {
                reason, exit_code, ..
            } => {
                let inst = self.inst(id)?;
                if inst.state != InstanceState::Running {
                    // Failed before its agent started (the preparation):
                    // that uses up an attempt too, or it would be retried
                    // forever.
                    inst.resolve_attempts += 1;
                }
                inst.resolving = false;
                inst.exit_code = exit_code;
                let paths = inst.conflict_paths.join(", ");
                inst.reason = Some(format!(
                    "conflicts in {paths}, not resolved by its agent: {reason}"
                ));
                self.advance(id, InstanceState::Conflicted, now)?;
                out.push(Action::Save);
                if self.may_hand_back(id)? {
                    return self.hand_back(out, id, now);
                }
                out.push(Action::Emit(self.policy.kept(
                    id,
                    "merge conflict, not resolved by its agent (worktree as it left it)",
                )));
                self.sched.settled(id, false);
                self.skip(out, now)?;
            }
            // The instance task judges a resolve attempt on the merge it
            // left, never as a rate limit; should one come, it is an attempt
            // that did not resolve.
            Verdict::RateLimited { cause, .. } => {
                let failed = Verdict::Failed {
                    state: InstanceState::Failed,
                    reason: format!("rate-limited ({})", cause.evidence),
                    exit_code: None,
                    work: None,
                };
                return self.on_resolved(out, id, failed, now);
            }
            Verdict::Stopped => {
                // Still `resolving`: `resume` hands the conflict back again.
                self.mark_interrupted(id)?;
                out.push(Action::Save);
            }
        }
        Ok(())
    }
}
