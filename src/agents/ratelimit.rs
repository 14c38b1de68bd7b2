//! Is this attempt's end a rate limit? A pure classifier over the agent's
//! exit code and the tail of its log, per preset (what each real CLI prints
//! when the provider answers 429, 529/overloaded or "quota exceeded", as
//! recorded from the real CLIs against the scripted model server in
//! `tests/fixtures/agent-output/`), plus `agent.rate_limit.patterns` and
//! `.exit_codes` from the config; and the `retry-after` the log reveals.
//!
//! Only an attempt that did not succeed can be rate-limited: a CLI that
//! retried past a 429 and finished did its work. With a non-zero exit any
//! line of the tail counts; after an exit 0 only the log's last three lines
//! do (aider exits 0 after giving up on a rate limit, its attempt then ends
//! `unchanged`). The preset patterns
//! are anchored to the lines the wrappers and CLIs print for API errors, not
//! to words an agent might say about a spec that is itself about rate
//! limits.

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How much of the log's end is looked at.
pub const LOG_TAIL_LINES: usize = 60;

/// After an exit 0, how many of the last non-blank lines may hold the
/// signal (aider's give-up block is three lines).
const EXIT_0_LINES: usize = 3;

/// What the provider said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKind {
    /// HTTP 429 / "rate limit".
    TooManyRequests,
    /// HTTP 529 / 503 "overloaded".
    Overloaded,
    /// A quota or usage limit (plan, billing, daily cap).
    Quota,
    /// A configured pattern or exit code matched.
    Configured,
}

impl RateLimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitKind::TooManyRequests => "rate limited (429)",
            RateLimitKind::Overloaded => "overloaded",
            RateLimitKind::Quota => "quota or usage limit",
            RateLimitKind::Configured => "rate limited (configured signal)",
        }
    }
}

/// A rate-limited attempt: why, the log line that said so, and the wait the
/// provider asked for when the log reveals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimited {
    pub kind: RateLimitKind,
    /// The matching log line (trimmed), or `exit code N`.
    pub evidence: String,
    #[serde(default, with = "opt_ms")]
    pub retry_after: Option<Duration>,
}

/// `agent.rate_limit.patterns` (regular expressions, matched per line of the
/// log tail) and `.exit_codes`.
#[derive(Debug, Clone, Default)]
pub struct RateLimitRules {
    pub patterns: Vec<Regex>,
    pub exit_codes: Vec<i32>,
}

impl RateLimitRules {
    /// Compiles the configured patterns; the error names the bad one.
    pub fn new(patterns: &[String], exit_codes: &[i32]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("invalid pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(RateLimitRules {
            patterns,
            exit_codes: exit_codes.to_vec(),
        })
    }
}

/// One preset's known signals: a line pattern and what it means.
struct Signal {
    re: &'static str,
    kind: RateLimitKind,
}

/// The signals of `preset` (`None`: a custom command), most specific first.
/// Every preset also gets the generic ones.
fn signals(preset: Option<&str>) -> &'static [(Regex, RateLimitKind)] {
    static CLAUDE: OnceLock<Vec<(Regex, RateLimitKind)>> = OnceLock::new();
    static CODEX: OnceLock<Vec<(Regex, RateLimitKind)>> = OnceLock::new();
    static GEMINI: OnceLock<Vec<(Regex, RateLimitKind)>> = OnceLock::new();
    static AIDER: OnceLock<Vec<(Regex, RateLimitKind)>> = OnceLock::new();
    static GENERIC: OnceLock<Vec<(Regex, RateLimitKind)>> = OnceLock::new();
    use RateLimitKind::*;
    let build = |own: &[Signal]| -> Vec<(Regex, RateLimitKind)> {
        own.iter()
            .chain(GENERIC_SIGNALS)
            .map(|s| (Regex::new(s.re).expect("built-in pattern compiles"), s.kind))
            .collect()
    };
    match preset {
        // Claude Code: the wrapper's `api error: status N` line (from the
        // result event) and the CLI's own "API Error: ..." text.
        Some("claude-code") => CLAUDE.get_or_init(|| {
            build(&[
                Signal {
                    re: r"(?i)API Error: .*(usage limit|quota)|usage limit reached",
                    kind: Quota,
                },
                Signal {
                    re: r"^\[Claude Code\] api error: status 429\b",
                    kind: TooManyRequests,
                },
                Signal {
                    re: r"^\[Claude Code\] api error: status (529|503)\b",
                    kind: Overloaded,
                },
                Signal {
                    re: r"API Error: Request rejected \(429\)",
                    kind: TooManyRequests,
                },
                Signal {
                    re: r"API Error: 529\b|overloaded_error",
                    kind: Overloaded,
                },
            ])
        }),
        // Codex CLI: `turn.failed` / `error` events, as the wrapper prints them.
        Some("codex") => CODEX.get_or_init(|| {
            build(&[
                Signal {
                    re: r"^\[Codex CLI\] (turn\.failed|error) .*(?i:quota exceeded|insufficient_quota)",
                    kind: Quota,
                },
                Signal {
                    re: r"^\[Codex CLI\] (turn\.failed|error) .*429 Too Many Requests",
                    kind: TooManyRequests,
                },
                Signal {
                    re: r"^\[Codex CLI\] (turn\.failed|error) .*(?i:overloaded|503 Service Unavailable)",
                    kind: Overloaded,
                },
            ])
        }),
        // Gemini CLI: its error classes on stderr (`RetryableQuotaError` is
        // a 429 it gave up retrying, `TerminalQuotaError` a daily or plan
        // quota) and the result event's advice, as the wrapper prints it.
        Some("gemini") => GEMINI.get_or_init(|| {
            build(&[
                Signal {
                    re: r"TerminalQuotaError",
                    kind: Quota,
                },
                // Gemini CLI calls a 503 a RetryableQuotaError too: the
                // overload line is the more specific.
                Signal {
                    re: r"(?i)failed with status (503|529)\b|model is overloaded",
                    kind: Overloaded,
                },
                // A per-minute quota is a rate limit: Gemini CLI retries it.
                Signal {
                    re: r"RetryableQuotaError|^\[Gemini CLI\] result: error .*Please wait and try again later|failed with status 429\b",
                    kind: TooManyRequests,
                },
            ])
        }),
        // aider (through litellm): the exception names.
        Some("aider") => AIDER.get_or_init(|| {
            build(&[
                // aider wraps litellm's message: "... You exceeded your" /
                // "current quota ..." arrive on two lines.
                Signal {
                    re: r"(?i)exceeded your current quota|^current quota\b|insufficient_quota",
                    kind: Quota,
                },
                Signal {
                    re: r"litellm\.RateLimitError|RateLimitError:|The API provider has rate limited you",
                    kind: TooManyRequests,
                },
                Signal {
                    re: r"(?i)litellm\.(InternalServerError|ServiceUnavailableError).*overloaded",
                    kind: Overloaded,
                },
            ])
        }),
        _ => GENERIC.get_or_init(|| build(&[])),
    }
}

/// What any agent CLI or API client commonly prints.
const GENERIC_SIGNALS: &[Signal] = &[
    Signal {
        re: r"(?i)\b(quota exceeded|exceeded your (current )?quota|usage limit (reached|exceeded)|insufficient_quota)\b",
        kind: RateLimitKind::Quota,
    },
    Signal {
        re: r"(?i)\b429\b.*too many requests|too many requests.*\b429\b|rate[ _-]?limit(ed)?[ _-]?(error|exceeded|reached)|rate_limit_error",
        kind: RateLimitKind::TooManyRequests,
    },
    Signal {
        re: r"(?i)overloaded_error|\b529\b.*overloaded|server is overloaded",
        kind: RateLimitKind::Overloaded,
    },
];

/// The last [`LOG_TAIL_LINES`] lines of `log`.
pub fn log_tail(log: &str) -> &str {
    let body = log.strip_suffix('\n').unwrap_or(log);
    match body.rmatch_indices('\n').nth(LOG_TAIL_LINES - 1) {
        Some((i, _)) => &log[i + 1..],
        None => log,
    }
}

/// Classifies an attempt's end: `exit_code` (`None`: killed by a signal,
/// never a rate limit) and the tail of its log ([`log_tail`]).
pub fn classify(
    preset: Option<&str>,
    rules: &RateLimitRules,
    exit_code: Option<i32>,
    tail: &str,
) -> Option<RateLimited> {
    let code = exit_code?;
    let retry_after = retry_after(tail);
    let lines = tail.lines().rev().map(str::trim).filter(|l| !l.is_empty());
    // The most specific signal wins (configured patterns, then the preset's
    // own in their order, then the generic ones): a quota the CLI names says
    // more than the 429 it came as. Among equals, the last line: the error
    // the CLI gave up on.
    let mut best: Option<(usize, RateLimited)> = None;
    let window = if code == 0 { EXIT_0_LINES } else { usize::MAX };
    for line in lines.take(window) {
        let rank = if rules.patterns.iter().any(|re| re.is_match(line)) {
            Some((0, RateLimitKind::Configured))
        } else {
            signals(preset)
                .iter()
                .position(|(re, _)| re.is_match(line))
                .map(|i| (i + 1, signals(preset)[i].1))
        };
        let Some((rank, kind)) = rank else { continue };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                RateLimited {
                    kind,
                    evidence: line.to_string(),
                    retry_after,
                },
            ));
        }
    }
    if let Some((_, hit)) = best {
        return Some(hit);
    }
    rules.exit_codes.contains(&code).then(|| RateLimited {
        kind: RateLimitKind::Configured,
        evidence: format!("exit code {code}"),
        retry_after,
    })
}

/// The wait the provider asked for, as the log reveals it: a `retry-after`
/// header or field (`retry-after: 30`, `"retry_after": 2.5`), Google's
/// `retryDelay: "43s"` / "Please retry in 43.2s", or "try again in 20s".
/// The last one in the tail wins.
pub fn retry_after(tail: &str) -> Option<Duration> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r#"(?i)(?:retry[-_ ]?after|retrydelay)["']?\s*[:=]?\s*["']?(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|minutes?)?\b|(?:please retry|try again) in (\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|minutes?)\b"#,
        )
        .expect("built-in pattern compiles")
    });
    let caps = re.captures_iter(tail).last()?;
    let (num, unit) = match (caps.get(1), caps.get(3)) {
        (Some(n), _) => (n.as_str(), caps.get(2).map(|u| u.as_str())),
        (None, Some(n)) => (n.as_str(), caps.get(4).map(|u| u.as_str())),
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    let secs = match unit.map(str::to_ascii_lowercase).as_deref() {
        Some("ms") => value / 1000.0,
        Some("m" | "min" | "minute" | "minutes") => value * 60.0,
        _ => value,
    };
    Duration::try_from_secs_f64(secs).ok()
}

mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> RateLimitRules {
        RateLimitRules::default()
    }

    #[test]
    fn an_exit_0_counts_only_when_the_signal_ends_the_log() {
        let log = "[Claude Code] api error: status 429 rate_limit_error\n[Claude Code] says: a\n\
                   [Claude Code] says: b\n[Claude Code] result: success\n";
        assert_eq!(classify(Some("claude-code"), &none(), Some(0), log), None);
        assert_eq!(classify(Some("claude-code"), &none(), None, log), None);
        assert!(classify(Some("claude-code"), &none(), Some(1), log).is_some());
        let gave_up = "[Claude Code] says: done\n[Claude Code] api error: status 429 x\n\n";
        assert!(classify(Some("claude-code"), &none(), Some(0), gave_up).is_some());
        let long_ago = "[Claude Code] api error: status 429 x\na\nb\nc\n";
        assert_eq!(
            classify(Some("claude-code"), &none(), Some(0), long_ago),
            None
        );
    }

    #[test]
    fn an_agent_talking_about_rate_limits_is_not_rate_limited() {
        let log = "[Codex CLI] says: I added a rate limit to the client\n\
                   [Codex CLI] command ended: exit 1 cargo test rate_limit\n";
        assert_eq!(classify(Some("codex"), &none(), Some(1), log), None);
        assert_eq!(classify(None, &none(), Some(1), log), None);
    }

    #[test]
    fn configured_patterns_and_exit_codes() {
        let rules = RateLimitRules::new(&["^my-agent: slow down".into()], &[75]).expect("rules");
        let hit =
            classify(None, &rules, Some(3), "ok\nmy-agent: slow down please\n").expect("pattern");
        assert_eq!(hit.kind, RateLimitKind::Configured);
        assert_eq!(hit.evidence, "my-agent: slow down please");
        let hit = classify(None, &rules, Some(75), "nothing\n").expect("exit code");
        assert_eq!(hit.evidence, "exit code 75");
        assert_eq!(classify(None, &rules, Some(74), "nothing\n"), None);
        assert!(RateLimitRules::new(&["(".into()], &[])
            .unwrap_err()
            .contains("`(`"));
    }

    #[test]
    fn retry_after_forms() {
        let cases = [
            ("retry-after: 30", 30_000),
            ("\"retry_after\": 2.5", 2_500),
            ("Retry-After: 2", 2_000),
            ("\"retryDelay\": \"43s\"", 43_000),
            ("Please retry in 43.2s.", 43_200),
            ("try again in 2 minutes", 120_000),
            ("retry after 500ms", 500),
        ];
        for (text, ms) in cases {
            assert_eq!(retry_after(text), Some(Duration::from_millis(ms)), "{text}");
        }
        assert_eq!(retry_after("try again in a moment"), None);
        assert_eq!(
            retry_after("retry-after: 1\nretry-after: 9\n"),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        let log: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(&log);
        assert!(tail.ends_with("line 199\n"));
        assert!(!tail.contains("line 100\n"));
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert_eq!(log_tail("a\nb"), "a\nb");
    }

    #[test]
    fn rate_limited_round_trips_through_json() {
        let r = RateLimited {
            kind: RateLimitKind::Overloaded,
            evidence: "x".into(),
            retry_after: Some(Duration::from_millis(1500)),
        };
        let json = serde_json::to_string(&r).expect("serialize");
        assert!(json.contains("\"retry_after\":1500"), "{json}");
        assert_eq!(
            serde_json::from_str::<RateLimited>(&json).expect("parse"),
            r
        );
    }
}
