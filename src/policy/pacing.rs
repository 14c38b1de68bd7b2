//! How fast agents may start, as data: the backoff after a rate-limited
//! attempt, the congestion window that bounds how many agents run, the
//! per-spec count of rate-limit waits, and the interval between starts.
//!
//! Pure and synchronous: times are Unix milliseconds handed in by the
//! caller, randomness comes from a seeded generator stored in the state, and
//! every type is serde so the runner can journal it and a resumed run picks
//! up where the last one stopped. The runner's state machine owns one
//! [`Pacer`] and feeds it what happened; the pacer answers what to do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agents::RateLimited;

/// The first exponential backoff step when the log reveals no retry-after.
pub const BASE_BACKOFF: Duration = Duration::from_secs(5);

/// SplitMix64: a tiny, well-known generator whose whole state is one `u64`,
/// so it serialises into the journal as a number and a resumed run draws
/// the same jitter sequence (a crate's RNG would not journal portably).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitterRng {
    state: u64,
}

impl JitterRng {
    pub fn seeded(seed: u64) -> Self {
        JitterRng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

/// The backoff after the `wait`-th rate limit of a spec (0-based): the
/// retry-after the log revealed, else `base * 2^wait` with "equal jitter"
/// (half fixed, half random, so waits still grow); both capped by `max`.
pub fn backoff(
    wait: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
    rng: &mut JitterRng,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(max);
    }
    let exp = base
        .checked_mul(1u32.checked_shl(wait.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
    let half = ms / 2;
    Duration::from_millis(half + rng.below_or_eq(ms - half))
}

/// The congestion window: how many agents may run at once. A rate-limited
/// attempt halves it (at least 1); an agent finishing without one grows it
/// by one, up to `max` (the configured `instances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyWindow {
    limit: usize,
    max: usize,
}

impl ConcurrencyWindow {
    /// A full window of `instances` (at least 1).
    pub fn new(instances: usize) -> Self {
        let max = instances.max(1);
        ConcurrencyWindow { limit: max, max }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// May another agent start while `running` run?
    pub fn allows(&self, running: usize) -> bool {
        running < self.limit
    }

    pub fn on_rate_limited(&mut self) {
        self.limit = (self.limit / 2).max(1);
    }

    pub fn on_clean_finish(&mut self) {
        self.limit = (self.limit + 1).min(self.max);
    }
}

/// Minimum time between two agent starts (`agent.start_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartGate {
    interval_ms: u64,
    last_start_ms: Option<u64>,
}

impl StartGate {
    pub fn new(interval: Duration) -> Self {
        StartGate {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_start_ms: None,
        }
    }

    /// The earliest time the next agent may start.
    pub fn next_start_ms(&self) -> u64 {
        self.last_start_ms
            .map_or(0, |t| t.saturating_add(self.interval_ms))
    }

    pub fn may_start(&self, now_ms: u64) -> bool {
        now_ms >= self.next_start_ms()
    }

    /// `agent.start_interval` in milliseconds (0: starts are not spaced).
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    pub fn started(&mut self, now_ms: u64) {
        self.last_start_ms = Some(now_ms);
    }

    /// The interval of the policy a resumed run continues with, keeping
    /// when the last agent started.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval_ms = StartGate::new(interval).interval_ms;
    }
}

/// One backoff, as the live view, `status` and the summary show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffRecord {
    pub spec: String,
    /// 1-based: the spec's n-th rate-limit wait.
    pub wait: u32,
    pub at_ms: u64,
    pub delay_ms: u64,
    /// The window after this rate limit halved it.
    pub limit: usize,
    pub cause: RateLimited,
    /// The attempt that was rate-limited (0 in journals that did not say).
    #[serde(default)]
    pub attempt: u32,
}

/// What to do with a rate-limited spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Requeue it (the attempt does not count against `agent.retries`);
    /// it may start again at `retry_at_ms`.
    Requeue { retry_at_ms: u64, delay_ms: u64 },
    /// `agent.rate_limit.max_waits` is used up: the spec fails.
    GiveUp { reason: String },
}

/// The pacing policy from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacingPolicy {
    pub instances: usize,
    #[serde(with = "ms")]
    pub start_interval: Duration,
    #[serde(with = "ms")]
    pub max_backoff: Duration,
    pub max_waits: u32,
}

/// Everything pacing remembers during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacer {
    pub policy: PacingPolicy,
    pub window: ConcurrencyWindow,
    pub gate: StartGate,
    rng: JitterRng,
    /// Rate-limit waits so far, per spec id.
    waits: BTreeMap<String, u32>,
    /// Every backoff, oldest first.
    pub backoffs: Vec<BackoffRecord>,
}

impl Pacer {
    pub fn new(policy: PacingPolicy, seed: u64) -> Self {
        Pacer {
            window: ConcurrencyWindow::new(policy.instances),
            gate: StartGate::new(policy.start_interval),
            rng: JitterRng::seeded(seed),
            waits: BTreeMap::new(),
            backoffs: Vec::new(),
            policy,
        }
    }

    /// May an agent start now, with `running` agents running?
    pub fn may_start(&self, running: usize, now_ms: u64) -> bool {
        self.window.allows(running) && self.gate.may_start(now_ms)
    }

    /// An agent started.
    pub fn started(&mut self, now_ms: u64) {
        self.gate.started(now_ms);
    }

    /// An agent finished without a rate limit (whatever its result).
    pub fn finished_clean(&mut self) {
        self.window.on_clean_finish();
    }

    pub fn waits(&self, spec: &str) -> u32 {
        self.waits.get(spec).copied().unwrap_or(0)
    }

    /// `spec`'s attempt ended rate-limited at `now_ms`: halve the window and
    /// either requeue it after a backoff or, past `max_waits`, give up.
    pub fn rate_limited(&mut self, spec: &str, cause: RateLimited, now_ms: u64) -> Decision {
        self.window.on_rate_limited();
        let done = self.waits(spec);
        if done >= self.policy.max_waits {
            return Decision::GiveUp {
                reason: format!(
                    "{} after {done} rate-limit wait(s) (agent.rate_limit.max_waits = {}): {}",
                    cause.kind.as_str(),
                    self.policy.max_waits,
                    cause.evidence
                ),
            };
        }
        let delay = backoff(
            done,
            cause.retry_after,
            BASE_BACKOFF,
            self.policy.max_backoff,
            &mut self.rng,
        );
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.waits.insert(spec.to_string(), done + 1);
        self.backoffs.push(BackoffRecord {
            spec: spec.to_string(),
            wait: done + 1,
            at_ms: now_ms,
            delay_ms,
            limit: self.window.limit(),
            cause,
            attempt: 0,
        });
        Decision::Requeue {
            retry_at_ms: now_ms.saturating_add(delay_ms),
            delay_ms,
        }
    }
}

impl Pacer {
    /// The attempt of `spec` the latest backoff was for (0: not recorded).
    pub fn last_limited_attempt(&self, spec: &str) -> Option<u32> {
        self.backoffs
            .iter()
            .rev()
            .find(|b| b.spec == spec)
            .map(|b| b.attempt)
    }

    /// Attempt `attempt` of `spec` ended rate-limited at `now_ms`: as
    /// [`Pacer::rate_limited`], recording the attempt with the backoff.
    /// The same attempt reported again (a resumed run judging an exit the
    /// earlier coordinator already paced) keeps its backoff and does not
    /// halve the window twice; the flag says whether it was new.
    pub fn rate_limited_attempt(
        &mut self,
        spec: &str,
        attempt: u32,
        cause: RateLimited,
        now_ms: u64,
    ) -> (Decision, bool) {
        if let Some(last) = self
            .backoffs
            .iter()
            .rev()
            .find(|b| b.spec == spec)
            .filter(|b| attempt > 0 && b.attempt == attempt)
        {
            let retry_at_ms = last.at_ms.saturating_add(last.delay_ms);
            return (
                Decision::Requeue {
                    retry_at_ms,
                    delay_ms: retry_at_ms.saturating_sub(now_ms),
                },
                false,
            );
        }
        let decision = self.rate_limited(spec, cause, now_ms);
        if let (Decision::Requeue { .. }, Some(last)) = (&decision, self.backoffs.last_mut()) {
            last.attempt = attempt;
        }
        (decision, true)
    }
}

mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::RateLimitKind;
    use proptest::prelude::*;

    fn cause(retry_after: Option<Duration>) -> RateLimited {
        RateLimited {
            kind: RateLimitKind::TooManyRequests,
            evidence: "[Claude Code] api error: status 429 rate_limit_error".into(),
            retry_after,
        }
    }

    fn policy(instances: usize, max_waits: u32) -> PacingPolicy {
        PacingPolicy {
            instances,
            start_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_waits,
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let mut rng = JitterRng::seeded(7);
        let max = Duration::from_secs(60);
        let base = Duration::from_secs(5);
        let s = Duration::from_secs;
        assert_eq!(backoff(3, Some(s(2)), base, max, &mut rng), s(2));
        assert_eq!(backoff(0, Some(s(600)), base, max, &mut rng), max);
    }

    #[test]
    fn exponential_backoff_with_jitter_grows_and_is_capped() {
        let mut rng = JitterRng::seeded(42);
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        for wait in 0..40 {
            let d = backoff(wait, None, base, max, &mut rng);
            let full = base
                .checked_mul(1u32.checked_shl(wait.min(31)).unwrap_or(u32::MAX))
                .unwrap_or(max)
                .min(max);
            assert!(d <= full && d >= full / 2, "wait {wait}: {d:?} vs {full:?}");
        }
        // The same seed draws the same jitter: a resumed run repeats it.
        let draw = |seed| {
            let mut rng = JitterRng::seeded(seed);
            (0..5)
                .map(|w| backoff(w, None, base, max, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn the_window_halves_and_grows_back() {
        let mut w = ConcurrencyWindow::new(8);
        assert_eq!(w.limit(), 8);
        w.on_rate_limited();
        assert_eq!(w.limit(), 4);
        w.on_rate_limited();
        w.on_rate_limited();
        w.on_rate_limited();
        assert_eq!(w.limit(), 1);
        assert!(w.allows(0) && !w.allows(1));
        for _ in 0..20 {
            w.on_clean_finish();
        }
        assert_eq!(w.limit(), 8);
    }

    #[test]
    fn start_gate_spaces_starts() {
        let mut g = StartGate::new(Duration::from_secs(1));
        assert!(g.may_start(0));
        g.started(10_000);
        assert!(!g.may_start(10_999));
        assert!(g.may_start(11_000));
        assert_eq!(g.next_start_ms(), 11_000);
        let mut g = StartGate::new(Duration::ZERO);
        g.started(5);
        assert!(g.may_start(5));
    }

    #[test]
    fn max_waits_bounds_the_waits_and_gives_a_reason() {
        let mut p = Pacer::new(policy(4, 2), 1);
        let v = p.rate_limited("020", cause(Some(Duration::from_secs(3))), 1_000);
        assert_eq!(
            v,
            Decision::Requeue {
                retry_at_ms: 4_000,
                delay_ms: 3_000
            }
        );
        assert!(matches!(
            p.rate_limited("020", cause(None), 5_000),
            Decision::Requeue { .. }
        ));
        // Another spec has its own count.
        assert!(matches!(
            p.rate_limited("021", cause(None), 5_000),
            Decision::Requeue { .. }
        ));
        match p.rate_limited("020", cause(None), 9_000) {
            Decision::GiveUp { reason } => {
                assert!(reason.contains("after 2 rate-limit wait(s)"), "{reason}");
                assert!(reason.contains("max_waits = 2"), "{reason}");
                assert!(reason.contains("status 429"), "{reason}");
            }
            v => panic!("expected to give up: {v:?}"),
        }
        assert_eq!(p.backoffs.len(), 3);
        assert_eq!(p.backoffs[0].limit, 2);
        assert_eq!(p.waits("020"), 2);
    }

    #[test]
    fn the_pacer_round_trips_through_json_mid_run() {
        let mut p = Pacer::new(policy(3, 5), 99);
        p.started(1_000);
        p.rate_limited("001", cause(None), 2_000);
        let json = serde_json::to_string(&p).expect("serialize");
        let mut back: Pacer = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, p);
        // And it continues identically: same jitter, same window.
        let a = p.rate_limited("001", cause(None), 3_000);
        let b = back.rate_limited("001", cause(None), 3_000);
        assert_eq!(a, b);
    }

    /// What a simulated run saw.
    struct Simulated {
        lowest: usize,
        after_last_drop: usize,
        last: usize,
        backoffs: usize,
        starts: Vec<u64>,
        done: Vec<String>,
    }

    /// A whole run, simulated: `specs` specs, 4 instances, attempts of 10s,
    /// a provider that rate-limits half the attempts started in its first
    /// 60s (seeded). The pacer alone decides when specs start.
    fn simulate(seed: u64, specs: usize) -> Simulated {
        let mut provider = JitterRng::seeded(seed);
        let mut p = Pacer::new(policy(4, 10), seed);
        let mut queue: Vec<(String, u64)> = (1..=specs).map(|i| (format!("{i:03}"), 0)).collect();
        let mut running: Vec<(String, u64, bool)> = Vec::new(); // id, ends at, limited
        let mut sim = Simulated {
            lowest: p.window.limit(),
            after_last_drop: p.window.limit(),
            last: 0,
            backoffs: 0,
            starts: Vec::new(),
            done: Vec::new(),
        };
        let mut now = 0u64;
        while sim.done.len() < specs {
            assert!(
                now < 3_600_000,
                "the run did not finish in an hour (seed {seed})"
            );
            running.sort_by_key(|r| r.1);
            while running.first().is_some_and(|r| r.1 <= now) {
                let (id, _, limited) = running.remove(0);
                if limited {
                    let cause = RateLimited {
                        kind: RateLimitKind::TooManyRequests,
                        evidence: "429".into(),
                        retry_after: None,
                    };
                    match p.rate_limited(&id, cause, now) {
                        Decision::Requeue { retry_at_ms, .. } => queue.push((id, retry_at_ms)),
                        Decision::GiveUp { reason } => {
                            panic!("{id} gave up: {reason} (seed {seed})")
                        }
                    }
                    sim.lowest = sim.lowest.min(p.window.limit());
                    sim.after_last_drop = p.window.limit();
                } else {
                    p.finished_clean();
                    sim.done.push(id);
                }
            }
            while let Some(i) = queue.iter().position(|(_, at)| *at <= now) {
                if !p.may_start(running.len(), now) {
                    break;
                }
                let (id, _) = queue.remove(i);
                p.started(now);
                sim.starts.push(now);
                let limited = now < 60_000 && provider.below_or_eq(1) == 0;
                running.push((id, now + 10_000, limited));
            }
            now += 100;
        }
        sim.last = p.window.limit();
        sim.backoffs = p.backoffs.len();
        sim
    }

    fn seed() -> u64 {
        let seed = std::env::var("TREEFARM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0015);
        println!("seed {seed} (set TREEFARM_TEST_SEED to repeat)");
        seed
    }

    /// 8 specs through a provider that rate-limits half the early attempts:
    /// every spec finishes once, none gives up, the window drops and grows
    /// again after the last rate limit, starts are a start interval apart.
    #[test]
    fn eight_specs_through_a_rate_limiting_provider_all_finish() {
        let base = seed();
        for seed in base..base + 32 {
            let sim = simulate(seed, 8);
            let mut done = sim.done.clone();
            done.sort();
            done.dedup();
            assert_eq!(done.len(), 8, "each spec finished once (seed {seed})");
            if sim.backoffs > 0 {
                assert!(sim.lowest < 4, "the window dropped (seed {seed})");
                assert!(
                    sim.last > sim.after_last_drop || sim.last == 4,
                    "it grew back (seed {seed})"
                );
            }
            for pair in sim.starts.windows(2) {
                assert!(pair[1] - pair[0] >= 1_000, "starts {pair:?} (seed {seed})");
            }
        }
    }

    /// With enough clean finishes after the provider calms down, the window
    /// is full again.
    #[test]
    fn the_window_is_full_again_once_the_provider_calms_down() {
        let base = seed();
        for seed in base..base + 16 {
            let sim = simulate(seed, 24);
            assert_eq!(sim.last, 4, "seed {seed}");
            assert_eq!(sim.done.len(), 24, "seed {seed}");
        }
    }

    #[derive(Debug, Clone)]
    enum Event {
        RateLimited,
        CleanFinish,
    }

    proptest! {
        /// Whatever happens, the window stays within 1..=instances, a rate
        /// limit never grows it and a clean finish never shrinks it; after
        /// `instances` clean finishes it is full again.
        #[test]
        fn window_stays_in_bounds(
            instances in 1usize..64,
            events in proptest::collection::vec(
                prop_oneof![Just(Event::RateLimited), Just(Event::CleanFinish)], 0..200),
        ) {
            let mut w = ConcurrencyWindow::new(instances);
            for e in &events {
                let before = w.limit();
                match e {
                    Event::RateLimited => {
                        w.on_rate_limited();
                        prop_assert!(w.limit() <= before);
                        prop_assert_eq!(w.limit(), (before / 2).max(1));
                    }
                    Event::CleanFinish => {
                        w.on_clean_finish();
                        prop_assert!(w.limit() >= before);
                        prop_assert!(w.limit() <= before + 1);
                    }
                }
                prop_assert!(w.limit() >= 1 && w.limit() <= instances);
            }
            for _ in 0..instances {
                w.on_clean_finish();
            }
            prop_assert_eq!(w.limit(), instances);
        }

        /// Backoff is within [full/2, full] of the capped exponential, never
        /// above the cap, for any seed.
        #[test]
        fn backoff_in_bounds(seed: u64, wait in 0u32..100, max_s in 1u64..3600) {
            let mut rng = JitterRng::seeded(seed);
            let max = Duration::from_secs(max_s);
            let d = backoff(wait, None, BASE_BACKOFF, max, &mut rng);
            prop_assert!(d <= max);
            let full = BASE_BACKOFF
                .checked_mul(1u32.checked_shl(wait.min(31)).unwrap_or(u32::MAX))
                .unwrap_or(max)
                .min(max);
            prop_assert!(d >= full / 2);
        }
    }
}
