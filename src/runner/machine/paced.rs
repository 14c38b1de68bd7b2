//! The run machine's pacing decisions (issue 15): which rate-limited specs
//! start again when, how many agents the concurrency window and the start
//! interval let start, and when the budget stops new starts. Pure like the
//! rest of the machine: `now` is handed in, the loop sleeps until
//! [`RunMachine::next_deadline`].

use crate::agents::RateLimited;
use crate::policy::pacing::{Decision, Pacer, PacingPolicy};
use crate::policy::{Budget, BudgetReached};
use crate::report::Event;
use crate::runner::messages::{Action, Launch};
use crate::state::InstanceState;

use super::{MachineError, RunMachine, Waiting};

impl RunMachine {
    /// The run's pacing policy and this coordinator's budget. A resumed
    /// run continues the journalled pacer (window, waits, backoffs, jitter)
    /// with the policy of its options; the budget is decided again (the
    /// flags or the current config), and whether it is reached too.
    pub fn set_pacing(&mut self, policy: PacingPolicy, budget: Budget) {
        self.pacer = match self.record.pacing.take() {
            Some(mut pacer) => {
                pacer.policy = policy;
                pacer.gate.set_interval(policy.start_interval);
                pacer
            }
            None => Pacer::new(policy, seed_of(&self.record.run_id)),
        };
        self.budget = budget;
        self.record.budget_reached = None;
        self.sync_pacing();
    }

    /// The journal carries the pacer.
    pub(super) fn sync_pacing(&mut self) {
        self.record.pacing = Some(self.pacer.clone());
    }

    /// Agents planted, set up or running, not waiting out a backoff.
    fn active_agents(&self) -> usize {
        self.record
            .instances
            .iter()
            .filter(|i| {
                matches!(
                    i.state,
                    InstanceState::Creating | InstanceState::Created | InstanceState::Running
                ) && !i.interrupted
                    && !self.waiting.contains_key(&i.id)
                    && !self.held.iter().any(|l| l.id == i.id)
            })
            .count()
    }

    /// Starts the agents `resume` holds (planted, in their worktrees) as far
    /// as the window and the start interval allow, in the order resume
    /// found them.
    pub(super) fn launch_held(&mut self, out: &mut Vec<Action>, now: u64) {
        if self.stopping() || self.no_new_starts() {
            return;
        }
        while !self.held.is_empty() && self.room(now) > 0 {
            let Some(launch) = self.held.pop_front() else {
                break;
            };
            self.pacer.started(now);
            self.sync_pacing();
            self.agents_in_flight += 1;
            out.push(Action::Launch(launch));
        }
    }

    /// How many agents may start now: what the concurrency window leaves,
    /// one at a time while `agent.start_interval` spaces starts.
    pub(super) fn room(&self, now: u64) -> usize {
        let active = self.active_agents();
        if !self.pacer.may_start(active, now) {
            return 0;
        }
        if self.pacer.gate.interval_ms() == 0 {
            self.pacer.window.limit() - active
        } else {
            1
        }
    }

    /// Starts again, in their worktrees, the rate-limited specs whose
    /// backoff is over, earliest first, as far as the window and the start
    /// interval allow.
    pub(super) fn relaunch_due(
        &mut self,
        out: &mut Vec<Action>,
        now: u64,
    ) -> Result<(), MachineError> {
        let mut due: Vec<(u64, (i64, usize), String)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.retry_at_ms <= now)
            .map(|(id, w)| (w.retry_at_ms, self.rank(id), id.clone()))
            .collect();
        due.sort();
        for (_, _, id) in due {
            if self.room(now) == 0 {
                break;
            }
            let Some(w) = self.waiting.remove(&id) else {
                continue;
            };
            let inst = self.inst(&id)?;
            inst.retry_at_ms = None;
            let slot = inst.slot.unwrap_or(0);
            let start_commit = inst.start_commit.clone().unwrap_or_default();
            self.pacer.started(now);
            self.sync_pacing();
            self.agents_in_flight += 1;
            self.relaunched.insert(id.clone());
            out.push(Action::Save);
            out.push(Action::Launch(Launch {
                retries_left: Some(w.retries_left),
                ..Launch::fresh(id, slot, start_commit, w.attempt + 1, false)
            }));
        }
        Ok(())
    }

    /// When the loop must wake up even if nothing happens: a backoff ends,
    /// or the start interval lets a waiting start go. `None`: only an event
    /// can change what starts.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        if self.stopping() || self.no_new_starts() {
            return None;
        }
        let backoff = self
            .waiting
            .values()
            .map(|w| w.retry_at_ms)
            .filter(|t| *t > now)
            .min();
        let gate = self.pacer.gate.next_start_ms();
        let gated = gate > now
            && (!self.waiting.is_empty()
                || !self.held.is_empty()
                || !self.resolves_waiting.is_empty()
                || self.sched.has_ready());
        match (backoff, gated.then_some(gate)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Specs waiting out a backoff (or held for the window after `resume`)
    /// when the budget stops new starts: marked interrupted (they hold no merge back), so `resume` runs them again.
    /// (A Ctrl-C leaves them as they are: their rate-limited exit and
    /// `retry_at_ms` are in the journal, and `resume` judges that attempt
    /// again and keeps its backoff.)
    pub(super) fn park_waiting(&mut self, out: &mut Vec<Action>) {
        let mut ids: Vec<String> = std::mem::take(&mut self.waiting).into_keys().collect();
        ids.extend(std::mem::take(&mut self.held).into_iter().map(|l| l.id));
        for id in ids {
            if let Some(inst) = self.record.instance_mut(&id) {
                inst.retry_at_ms = None;
                inst.interrupted = true;
                inst.reason = Some(super::INTERRUPTED.into());
            }
            out.push(Action::Save);
        }
    }

    /// Once the spending reaches the budget: recorded, said, and no new
    /// agent starts (running ones finish and merge).
    pub(super) fn check_budget(&mut self, out: &mut Vec<Action>) {
        if self.record.budget_reached.is_some() {
            return;
        }
        let Some(reached) = self.budget.reached(&self.record.spending) else {
            return;
        };
        let (budget, limit, spent) = match &reached {
            BudgetReached::Cost { limit, spent } => ("cost", *limit, *spent),
            BudgetReached::Tokens { limit, spent } => ("tokens", *limit as f64, *spent as f64),
        };
        let message = format!(
            "{reached}; no new agent starts, running ones finish; `treefarm resume` with a larger budget (--max-cost, --max-tokens or run.* in treefarm.yaml) continues"
        );
        self.record.budget_reached = Some(reached);
        out.push(Action::Save);
        out.push(Action::Emit(Event::BudgetReached {
            budget: budget.to_string(),
            limit,
            spent,
            message,
        }));
        self.park_waiting(out);
    }

    /// The budget stopped the run with specs left for `resume`.
    pub(super) fn budget_left(&self) -> bool {
        self.record.budget_reached.is_some()
            && self.record.instances.iter().any(|i| {
                i.state == InstanceState::Pending || (i.interrupted && !i.state.is_terminal())
            })
    }

    /// An agent finished without a rate limit: the window grows by one.
    pub(super) fn finished_clean(&mut self, out: &mut Vec<Action>) {
        let before = self.pacer.window.limit();
        self.pacer.finished_clean();
        self.sync_pacing();
        self.window_changed(out, before);
    }

    fn window_changed(&self, out: &mut Vec<Action>, before: usize) {
        let limit = self.pacer.window.limit();
        if limit != before {
            out.push(Action::Emit(Event::Concurrency {
                limit,
                max: self.pacer.window.max(),
            }));
        }
    }

    /// Attempt `attempt` of `id` was rate-limited: the window halves, and
    /// the spec waits in its worktree (keeping its slot) for its backoff,
    /// or fails past `agent.rate_limit.max_waits`. The attempt used no
    /// retry.
    pub(super) fn on_rate_limited(
        &mut self,
        out: &mut Vec<Action>,
        id: &str,
        attempt: u32,
        cause: RateLimited,
        retries_left: u32,
        now: u64,
    ) -> Result<(), MachineError> {
        let before = self.pacer.window.limit();
        let (verdict, fresh) = self
            .pacer
            .rate_limited_attempt(id, attempt, cause.clone(), now);
        self.sync_pacing();
        match verdict {
            Decision::Requeue {
                retry_at_ms,
                delay_ms,
            } => {
                if fresh {
                    out.push(Action::Emit(Event::RateLimited {
                        id: id.to_string(),
                        attempt,
                        kind: cause.kind,
                        signal: cause.evidence.clone(),
                        retry_after_ms: cause
                            .retry_after
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        backoff_ms: delay_ms,
                        wait: self.pacer.waits(id),
                    }));
                }
                self.window_changed(out, before);
                let (stopping, budget) = (self.stopping(), self.no_new_starts());
                let inst = self.inst(id)?;
                if budget {
                    inst.interrupted = true;
                    inst.reason = Some(super::INTERRUPTED.into());
                } else {
                    inst.retry_at_ms = Some(retry_at_ms);
                    if let Some(slot) = inst.slot {
                        self.free_slots.remove(&slot);
                    }
                }
                if !budget && !stopping {
                    self.waiting.insert(
                        id.to_string(),
                        Waiting {
                            retry_at_ms,
                            attempt,
                            retries_left,
                        },
                    );
                }
                out.push(Action::Save);
            }
            Decision::GiveUp { reason } => {
                self.window_changed(out, before);
                self.sched.agent_done(id);
                self.fail(out, id, InstanceState::Failed, reason, now)?;
            }
        }
        Ok(())
    }
}

/// The jitter seed of a run: from its id, so a run's backoffs do not depend
/// on when it started and two runs draw different jitter.
fn seed_of(run_id: &str) -> u64 {
    run_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agents::{RateLimitKind, Usage};
    use crate::merge::MergeResult;
    use crate::runner::machine::Policy;
    use crate::runner::messages::AgentEvent;
    use crate::runner::messages::{Input, LaneMsg, Mode, Start};
    use crate::runner::messages::{InstanceMsg, Verdict, Work};
    use crate::state::{RunRecord, RunState};

    /// The machine of `handle_tests` (keeping merged worktrees, one
    /// retry), paced by `policy` under `budget`.
    fn machine(ids: &[&str], slots: usize, policy: PacingPolicy, budget: Budget) -> RunMachine {
        let mut m = crate::runner::machine::handle_tests::machine(
            ids,
            &[],
            slots,
            Policy {
                keep: true,
                retries: 1,
                ..Default::default()
            },
        );
        m.set_pacing(policy, budget);
        m
    }

    /// As [`machine`], continuing from `record` (a resumed run's journal).
    fn machine_from(
        record: RunRecord,
        slots: usize,
        policy: PacingPolicy,
        budget: Budget,
    ) -> RunMachine {
        let ids: Vec<&str> = record.instances.iter().map(|i| i.id.as_str()).collect();
        let mut m = machine(&ids, slots, policy, Budget::default());
        m.record = record;
        m.set_pacing(policy, budget);
        m
    }

    fn pacing(instances: usize, interval_ms: u64, max_waits: u32) -> PacingPolicy {
        PacingPolicy {
            instances,
            start_interval: Duration::from_millis(interval_ms),
            max_backoff: Duration::from_secs(10),
            max_waits,
        }
    }

    fn cause(retry_after_ms: Option<u64>) -> RateLimited {
        RateLimited {
            kind: RateLimitKind::TooManyRequests,
            evidence: "[Claude Code] api error: status 429 rate_limit_error".into(),
            retry_after: retry_after_ms.map(Duration::from_millis),
        }
    }

    fn work() -> Work {
        Work {
            tip: "t".into(),
            commits: 1,
            subjects: vec!["do it".into()],
            changed: vec!["f".into()],
            ..Default::default()
        }
    }

    /// The ids `start` plants at `now` (the loop's turn), planted at once.
    fn start_at(m: &mut RunMachine, now: u64) -> Vec<String> {
        let actions = m.start(Mode::Run, now).expect("start");
        let mut ids = Vec::new();
        for a in actions {
            match a {
                Action::Plant { launches, .. } => {
                    let batch = launches
                        .into_iter()
                        .map(|l| {
                            ids.push(l.id.clone());
                            (
                                Launch {
                                    start_commit: "c0".into(),
                                    ..l
                                },
                                Ok(()),
                            )
                        })
                        .collect();
                    m.handle(Input::Lane(LaneMsg::Planted(batch)), now)
                        .expect("planted");
                }
                Action::Launch(l) => ids.push(format!("relaunch {} attempt {}", l.id, l.attempt)),
                _ => {}
            }
        }
        for id in &ids {
            if !id.starts_with("relaunch") {
                msg(m, id, agent_started(), now);
            }
        }
        ids
    }

    fn agent_started() -> InstanceMsg {
        InstanceMsg::Agent(AgentEvent::Started {
            pid: 42,
            start_time: 1,
        })
    }

    fn msg(m: &mut RunMachine, id: &str, msg: InstanceMsg, now: u64) -> Vec<Action> {
        m.handle(Input::Instance(id.into(), msg), now)
            .expect("handle")
    }

    fn rate_limited(
        m: &mut RunMachine,
        id: &str,
        attempt: u32,
        after: Option<u64>,
        now: u64,
    ) -> Vec<Action> {
        msg(
            m,
            id,
            InstanceMsg::Done(Verdict::RateLimited {
                attempt,
                cause: cause(after),
                retries_left: 1,
            }),
            now,
        )
    }

    fn events(actions: &[Action]) -> Vec<&Event> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn limits(actions: &[Action]) -> Vec<usize> {
        events(actions)
            .into_iter()
            .filter_map(|e| match e {
                Event::Concurrency { limit, .. } => Some(*limit),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_rate_limited_attempt_is_requeued_after_its_backoff_without_a_retry() {
        let mut m = machine(&["a", "b"], 2, pacing(2, 0, 3), Budget::default());
        assert_eq!(start_at(&mut m, 0), ["a", "b"]);
        let out = rate_limited(&mut m, "a", 1, Some(2_000), 100);
        let ev = events(&out);
        assert!(
            matches!(ev[0], Event::RateLimited { id, attempt: 1, backoff_ms: 2_000, wait: 1, retry_after_ms: Some(2_000), .. } if id == "a"),
            "{ev:?}"
        );
        assert_eq!(limits(&out), [1]);
        // Not failed, not a retry: it waits in its worktree, slot kept.
        let a = m.record.instance("a").expect("a");
        assert_eq!(a.state, InstanceState::Running);
        assert_eq!(a.retry_at_ms, Some(2_100));
        assert_eq!(a.reason, None);
        assert!(!m.free_slots.contains(&a.slot.expect("slot")));
        assert_eq!(m.next_deadline(100), Some(2_100));
        assert!(start_at(&mut m, 2_000).is_empty(), "backoff not over");
        // Due, but the halved window (1) is taken by `b`: no wake-up needed
        // until something ends.
        assert!(start_at(&mut m, 2_100).is_empty());
        assert_eq!(m.next_deadline(2_100), None);
        let out = msg(
            &mut m,
            "b",
            InstanceMsg::Done(Verdict::Succeeded(work())),
            2_200,
        );
        assert_eq!(limits(&out), [2], "a clean finish grows the window");
        let actions = m.start(Mode::Run, 2_300).expect("start");
        let launch = actions
            .iter()
            .find_map(|a| match a {
                Action::Launch(l) => Some(l),
                _ => None,
            })
            .expect("relaunched");
        assert_eq!(
            (
                launch.id.as_str(),
                launch.attempt,
                &launch.start,
                launch.retries_left
            ),
            ("a", 2, &Start::Fresh { setup: false }, Some(1)),
            "next attempt in the same worktree, its retry unused"
        );
        assert_eq!(m.record.instance("a").expect("a").retry_at_ms, None);
        assert_eq!(m.agents_in_flight, 1);
        // Journalled: the backoff and the window.
        let pacing = m.record.pacing.as_ref().expect("pacing");
        assert_eq!(pacing.backoffs.len(), 1);
        assert_eq!(pacing.backoffs[0].attempt, 1);
    }

    #[test]
    fn the_window_halves_on_each_rate_limit_and_grows_back_by_one_per_clean_finish() {
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut m = machine(&ids, 8, pacing(8, 0, 5), Budget::default());
        assert_eq!(start_at(&mut m, 0).len(), 8);
        let mut seen = Vec::new();
        for (n, id) in ["a", "b", "c", "d"].iter().enumerate() {
            seen.extend(limits(&rate_limited(&mut m, id, 1, None, 10 + n as u64)));
        }
        assert_eq!(
            seen,
            [4, 2, 1],
            "halved, at least 1 (no event when it stays 1)"
        );
        assert_eq!(m.pacer.window.limit(), 1);
        // Four still run: nothing may start, whatever is due.
        assert_eq!(m.room(1_000_000), 0);
        let mut seen = Vec::new();
        for id in ["e", "f", "g", "h"] {
            let out = msg(
                &mut m,
                id,
                InstanceMsg::Done(Verdict::Succeeded(work())),
                100,
            );
            seen.extend(limits(&out));
        }
        assert_eq!(seen, [2, 3, 4, 5]);
        // Backoffs of 5s base, jittered, capped at 10s: all due by 20s.
        let relaunched = start_at(&mut m, 20_000);
        assert_eq!(relaunched.len(), 4, "{relaunched:?}");
        for id in ["a", "b", "c", "d"] {
            msg(
                &mut m,
                id,
                InstanceMsg::Done(Verdict::Succeeded(work())),
                20_100,
            );
        }
        assert_eq!(m.pacer.window.limit(), 8, "full again, up to `instances`");
    }

    #[test]
    fn the_start_interval_spaces_agent_starts() {
        let mut m = machine(&["a", "b", "c"], 3, pacing(3, 1_000, 3), Budget::default());
        assert_eq!(start_at(&mut m, 5_000), ["a"]);
        assert_eq!(m.next_deadline(5_000), Some(6_000));
        assert!(start_at(&mut m, 5_999).is_empty());
        assert_eq!(start_at(&mut m, 6_000), ["b"]);
        assert_eq!(start_at(&mut m, 7_000), ["c"]);
        // Nothing left to start: no wake-up.
        assert_eq!(m.next_deadline(7_000), None);
    }

    #[test]
    fn past_max_waits_the_spec_fails_naming_the_limit_and_the_signal() {
        let mut m = machine(&["a"], 1, pacing(1, 0, 1), Budget::default());
        start_at(&mut m, 0);
        rate_limited(&mut m, "a", 1, Some(50), 10);
        assert_eq!(start_at(&mut m, 60), ["relaunch a attempt 2"]);
        let out = rate_limited(&mut m, "a", 2, None, 100);
        let a = m.record.instance("a").expect("a");
        assert_eq!(a.state, InstanceState::Failed);
        let reason = a.reason.clone().expect("reason");
        assert!(
            reason.contains("agent.rate_limit.max_waits = 1"),
            "{reason}"
        );
        assert!(reason.contains("status 429"), "{reason}");
        assert!(
            events(&out)
                .iter()
                .any(|e| matches!(e, Event::Failed { reason: r, .. } if *r == reason)),
            "{out:?}"
        );
        assert!(m.is_over(Mode::Run));
    }

    #[test]
    fn the_budget_stops_new_starts_and_leaves_the_rest_pending() {
        let budget = Budget {
            max_cost: None,
            max_tokens: Some(100),
        };
        let mut m = machine(&["a", "b", "c"], 1, pacing(1, 0, 3), budget);
        assert_eq!(start_at(&mut m, 0), ["a"]);
        let usage = Usage {
            input_tokens: Some(120),
            output_tokens: Some(5),
            cost_usd: Some(0.01),
            model: None,
        };
        let out = msg(&mut m, "a", InstanceMsg::Usage(usage), 10);
        let reached = events(&out)
            .into_iter()
            .find_map(|e| match e {
                Event::BudgetReached {
                    budget,
                    limit,
                    spent,
                    message,
                } => Some((budget.clone(), *limit, *spent, message.clone())),
                _ => None,
            })
            .expect("budget_reached");
        assert_eq!(
            (reached.0.as_str(), reached.1, reached.2),
            ("tokens", 100.0, 125.0)
        );
        assert!(reached.3.contains("run.max_tokens 100"), "{}", reached.3);
        // The running agent finishes and merges; nothing else starts.
        msg(
            &mut m,
            "a",
            InstanceMsg::Done(Verdict::Succeeded(work())),
            20,
        );
        let actions = m.start(Mode::Run, 30).expect("start");
        assert!(
            actions.iter().all(|a| !matches!(a, Action::Plant { .. })),
            "{actions:?}"
        );
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Merge { id, .. } if id == "a")));
        m.handle(
            Input::Lane(LaneMsg::Merged(
                "a".into(),
                Ok(MergeResult::Merged { commit: "m".into() }),
            )),
            40,
        )
        .expect("merged");
        assert!(m.is_over(Mode::Run), "over with specs left");
        assert_eq!(m.next_deadline(40), None);
        m.finish(Mode::Run, 50);
        assert_eq!(m.record.state, RunState::Interrupted, "resumable");
        let states: Vec<_> = m.record.instances.iter().map(|i| i.state).collect();
        assert_eq!(
            states,
            [
                InstanceState::Merged,
                InstanceState::Pending,
                InstanceState::Pending
            ]
        );
        let summary = crate::report::summarize(&m.record, "roadmap", None, 60);
        assert_eq!(summary.pending, ["b", "c"]);
        assert!(summary.budget_reached.is_some());
        assert_eq!(summary.usage["total"]["input_tokens"], 120);
    }

    #[test]
    fn a_resumed_run_counts_what_was_spent_and_keeps_its_window() {
        let budget = |tokens| Budget {
            max_cost: None,
            max_tokens: Some(tokens),
        };
        let mut first = machine(&["a", "b"], 2, pacing(2, 0, 3), budget(100));
        start_at(&mut first, 0);
        rate_limited(&mut first, "b", 1, Some(10), 5);
        let spent = Usage {
            input_tokens: Some(150),
            output_tokens: Some(0),
            cost_usd: None,
            model: None,
        };
        msg(&mut first, "a", InstanceMsg::Usage(spent), 6);
        assert!(first.record.budget_reached.is_some());
        // The journal as the next coordinator reads it.
        let json = serde_json::to_string(&first.record).expect("serialise");
        let record: RunRecord = serde_json::from_str(&json).expect("parse");
        assert_eq!(record.spending.total().tokens(), 150);

        // The same budget: reached again before anything starts.
        let mut again = machine_from(record.clone(), 2, pacing(2, 0, 3), budget(100));
        let actions = again.start(Mode::Run, 100).expect("start");
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Emit(Event::BudgetReached { .. }))));
        assert!(actions.iter().all(|a| !matches!(a, Action::Plant { .. })));

        // A larger budget: it goes on, counting the 150 already spent.
        let mut larger = machine_from(record, 2, pacing(2, 0, 3), budget(200));
        assert_eq!(larger.record.budget_reached, None);
        assert_eq!(larger.pacer.window.limit(), 1, "the window is journalled");
        assert_eq!(larger.pacer.waits("b"), 1);
        let more = Usage {
            input_tokens: Some(60),
            ..Default::default()
        };
        let out = msg(&mut larger, "b", InstanceMsg::Usage(more), 200);
        match events(&out).last() {
            Some(Event::BudgetReached { spent, .. }) => assert_eq!(*spent, 210.0),
            other => panic!("{other:?}"),
        }
    }

    /// `resume` judging attempts from exit files: the retries left count
    /// the rate-limited attempts as none, the judged one included once.
    #[test]
    fn resume_gives_a_rate_limited_spec_back_its_retries() {
        use crate::runner::machine::Found;
        let mut m = machine(&["a", "b"], 2, pacing(2, 0, 3), Budget::default());
        start_at(&mut m, 0);
        m.inst("a").expect("a").attempt = 1;
        rate_limited(&mut m, "a", 1, None, 10);
        let record = m.record.clone();
        let mut resumed = machine_from(record, 2, pacing(2, 0, 3), Budget::default());
        let found = |attempt| Found {
            slot: 0,
            start_commit: "c0".into(),
            exited: Some(1),
            seen_attempt: Some(attempt),
            ..Found::default()
        };
        // Its exit file is the rate-limited attempt 1: judged again with the
        // task's own bound (1 + retries), as no earlier wait is to give back;
        // classified again, it keeps its retry.
        let (launch, _) = resumed.resume_out("a", found(1), 100).expect("resume");
        assert_eq!((launch.attempt, launch.retries_left), (1, None));
        // A later attempt 2 failed for real: attempt 1's wait is given back.
        resumed.inst("a").expect("a").attempt = 2;
        let (launch, _) = resumed.resume_out("a", found(2), 100).expect("resume");
        assert_eq!((launch.attempt, launch.retries_left), (2, Some(1)));
        // Never rate-limited: the resume decides as before.
        let (launch, _) = resumed.resume_out("b", found(1), 100).expect("resume");
        assert_eq!(launch.retries_left, None);
    }

    #[test]
    fn the_same_rate_limited_attempt_judged_again_on_resume_keeps_its_backoff() {
        let mut m = machine(&["a", "b"], 2, pacing(2, 0, 3), Budget::default());
        start_at(&mut m, 0);
        rate_limited(&mut m, "a", 1, Some(1_000), 10);
        let record = m.record.clone();
        let mut resumed = machine_from(record, 2, pacing(2, 0, 3), Budget::default());
        resumed.agents_in_flight = 1;
        let out = rate_limited(&mut resumed, "a", 1, Some(1_000), 500);
        assert!(events(&out).is_empty(), "no second event: {out:?}");
        assert_eq!(resumed.pacer.window.limit(), 1, "not halved twice");
        assert_eq!(
            resumed.record.instance("a").expect("a").retry_at_ms,
            Some(1_010)
        );
    }

    #[test]
    fn a_start_after_a_rate_limit_is_not_announced_as_a_retry() {
        let mut m = machine(&["a"], 1, pacing(1, 0, 3), Budget::default());
        start_at(&mut m, 0);
        rate_limited(&mut m, "a", 1, Some(1_000), 10);
        assert_eq!(start_at(&mut m, 1_010), ["relaunch a attempt 2"]);
        let out = msg(
            &mut m,
            "a",
            InstanceMsg::AttemptStarting { attempt: 2 },
            1_010,
        );
        assert!(events(&out).is_empty(), "no `retrying`: {out:?}");
        // A real retry of the same spec later still says so.
        let out = msg(
            &mut m,
            "a",
            InstanceMsg::AttemptStarting { attempt: 3 },
            2_000,
        );
        assert!(
            matches!(events(&out)[..], [Event::Retrying { attempt: 3, .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn agents_resume_runs_again_wait_for_the_window_and_the_start_interval() {
        use crate::runner::machine::Found;
        // Rate limits had halved the window of 4 to 1; then the coordinator
        // died with a, b and c out and their agents gone.
        let mut m = machine(&["a", "b", "c"], 4, pacing(4, 0, 3), Budget::default());
        assert_eq!(start_at(&mut m, 0), ["a", "b", "c"]);
        let mut record = m.record.clone();
        let pacer = record.pacing.as_mut().expect("pacing");
        pacer.window.on_rate_limited();
        pacer.window.on_rate_limited();
        assert_eq!(pacer.window.limit(), 1);
        let mut resumed = machine_from(record, 4, pacing(4, 50, 3), Budget::default());
        let mut launches = Vec::new();
        for (slot, id) in ["a", "b", "c"].into_iter().enumerate() {
            let found = Found {
                slot,
                start_commit: "c0".into(),
                ..Found::default()
            };
            launches.push(resumed.resume_out(id, found, 100).expect("resume").0);
        }
        resumed.replant(launches.clone());
        let planted = launches.into_iter().map(|l| (l, Ok(()))).collect();
        let out = resumed
            .handle(Input::Lane(LaneMsg::Planted(planted)), 100)
            .expect("planted");
        let launched = |out: &[Action]| -> Vec<String> {
            out.iter()
                .filter_map(|a| match a {
                    Action::Launch(l) => Some(l.id.clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(launched(&out), ["a"], "the window of 1 lets one start");
        assert_eq!(resumed.agents_in_flight, 1);
        msg(&mut resumed, "a", agent_started(), 100);
        msg(
            &mut resumed,
            "a",
            InstanceMsg::Done(Verdict::Succeeded(work())),
            120,
        );
        // The window grew to 2, but the start interval (50 ms after a's
        // start at 100) spaces the starts.
        assert_eq!(resumed.pacer.window.limit(), 2);
        assert!(launched(&resumed.start(Mode::Run, 120).expect("start")).is_empty());
        assert_eq!(resumed.next_deadline(120), Some(150));
        assert_eq!(
            launched(&resumed.start(Mode::Run, 150).expect("start")),
            ["b"]
        );
        assert!(launched(&resumed.start(Mode::Run, 160).expect("start")).is_empty());
        assert_eq!(resumed.next_deadline(160), Some(200));
        assert_eq!(
            launched(&resumed.start(Mode::Run, 200).expect("start")),
            ["c"]
        );
    }

    #[test]
    fn a_stop_marks_the_agents_resume_held_back_interrupted() {
        use crate::runner::machine::Found;
        let mut m = machine(&["a", "b"], 2, pacing(1, 0, 3), Budget::default());
        start_at(&mut m, 0);
        let record = m.record.clone();
        let mut resumed = machine_from(record, 2, pacing(1, 0, 3), Budget::default());
        let launches: Vec<Launch> = ["a", "b"]
            .into_iter()
            .enumerate()
            .map(|(slot, id)| {
                let found = Found {
                    slot,
                    start_commit: "c0".into(),
                    ..Found::default()
                };
                resumed.resume_out(id, found, 10).expect("resume").0
            })
            .collect();
        resumed.replant(launches.clone());
        let planted = launches.into_iter().map(|l| (l, Ok(()))).collect();
        resumed
            .handle(Input::Lane(LaneMsg::Planted(planted)), 10)
            .expect("planted");
        resumed
            .handle(
                Input::Signal(crate::runner::messages::Signal::Interrupt),
                20,
            )
            .expect("signal");
        let b = resumed.record.instance("b").expect("b");
        assert!(b.interrupted, "held, never started: resume runs it");
        assert!(!resumed.record.instance("a").expect("a").interrupted);
    }
}
