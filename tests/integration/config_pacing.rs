//! The issue-15 config keys: `agent.rate_limit.*`, `agent.start_interval`,
//! `run.max_cost`, `run.max_tokens` — defaults, the file, the environment,
//! and the errors naming the key or variable.

use std::time::Duration;

use treefarm::config::{Config, ConfigError, Usd};

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse("treefarm.yaml", yaml.as_bytes())
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.agent.start_interval, Duration::from_secs(1));
    assert_eq!(c.agent.rate_limit.max_backoff, Duration::from_secs(300));
    assert_eq!(c.agent.rate_limit.max_waits, 10);
    assert!(c.agent.rate_limit.patterns.is_empty());
    assert!(c.agent.rate_limit.exit_codes.is_empty());
    assert_eq!(c.run.max_cost, None);
    assert_eq!(c.run.max_tokens, None);
    assert!(!c.run.budget().is_limited());
}

#[test]
fn the_file_sets_every_key() {
    let c = parse(
        "agent:\n  start_interval: 250ms\n  rate_limit:\n    patterns: ['^my-cli: throttled', 'slow, down']\n    \
         exit_codes: [75]\n    max_backoff: 2m\n    max_waits: 3\nrun:\n  max_cost: 12.5\n  max_tokens: 2000000\n",
    )
    .expect("valid config");
    assert_eq!(c.agent.start_interval, Duration::from_millis(250));
    assert_eq!(
        c.agent.rate_limit.patterns,
        vec!["^my-cli: throttled".to_string(), "slow, down".to_string()]
    );
    assert_eq!(c.agent.rate_limit.exit_codes, vec![75]);
    assert_eq!(c.agent.rate_limit.max_backoff, Duration::from_secs(120));
    assert_eq!(c.agent.rate_limit.max_waits, 3);
    assert_eq!(c.run.max_cost, Some(Usd(12.5)));
    assert_eq!(c.run.max_tokens, Some(2_000_000));
    let budget = c.run.budget();
    assert_eq!(budget.max_cost, Some(12.5));
    let rules = c.agent.rate_limit.rules().expect("patterns compile");
    assert_eq!(rules.patterns.len(), 2);
}

#[test]
fn bad_values_name_the_key_and_line() {
    let err = parse("instances: 2\nagent:\n  rate_limit:\n    patterns: ['(unclosed']\n")
        .expect_err("bad regex");
    let msg = err.to_string();
    assert!(msg.contains("treefarm.yaml:4"), "{msg}");
    assert!(msg.contains("agent.rate_limit.patterns"), "{msg}");
    assert!(msg.contains("(unclosed"), "{msg}");

    let msg = parse("run:\n  max_cost: -1\n")
        .expect_err("negative")
        .to_string();
    assert!(
        msg.contains("treefarm.yaml:2") && msg.contains("run.max_cost"),
        "{msg}"
    );

    let err = parse("run:\n  max_costs: 1\n").expect_err("unknown key");
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key.contains("max_costs")),
        "{err:?}"
    );
    let err = parse("agent:\n  rate_limit:\n    max_wait: 1\n").expect_err("unknown key");
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key.contains("max_wait")),
        "{err:?}"
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let mut c = parse("agent:\n  start_interval: 5s\nrun:\n  max_tokens: 10\n").expect("config");
    c.apply_env(env(&[
        ("TREEFARM_AGENT_START_INTERVAL", "0"),
        (
            "TREEFARM_AGENT_RATE_LIMIT_PATTERNS",
            "first, with comma\n^second$\n",
        ),
        ("TREEFARM_AGENT_RATE_LIMIT_EXIT_CODES", "75, 76"),
        ("TREEFARM_AGENT_RATE_LIMIT_MAX_BACKOFF", "90s"),
        ("TREEFARM_AGENT_RATE_LIMIT_MAX_WAITS", "4"),
        ("TREEFARM_RUN_MAX_COST", "$3.25"),
        ("TREEFARM_RUN_MAX_TOKENS", ""),
    ]))
    .expect("valid env");
    assert_eq!(c.agent.start_interval, Duration::ZERO);
    assert_eq!(
        c.agent.rate_limit.patterns,
        vec!["first, with comma".to_string(), "^second$".to_string()]
    );
    assert_eq!(c.agent.rate_limit.exit_codes, vec![75, 76]);
    assert_eq!(c.agent.rate_limit.max_backoff, Duration::from_secs(90));
    assert_eq!(c.agent.rate_limit.max_waits, 4);
    assert_eq!(c.run.max_cost, Some(Usd(3.25)));
    assert_eq!(c.run.max_tokens, None, "empty unsets the file's value");
}

#[test]
fn bad_environment_values_name_the_variable() {
    for (var, value) in [
        ("TREEFARM_AGENT_RATE_LIMIT_PATTERNS", "ok\n[broken"),
        ("TREEFARM_AGENT_RATE_LIMIT_EXIT_CODES", "75,x"),
        ("TREEFARM_AGENT_RATE_LIMIT_MAX_BACKOFF", "soon"),
        ("TREEFARM_AGENT_RATE_LIMIT_MAX_WAITS", "-1"),
        ("TREEFARM_AGENT_START_INTERVAL", "later"),
        ("TREEFARM_RUN_MAX_COST", "-2"),
        ("TREEFARM_RUN_MAX_COST", "NaN"),
        ("TREEFARM_RUN_MAX_TOKENS", "1.5"),
    ] {
        let mut c = Config::default();
        let err = c.apply_env(env(&[(var, value)])).expect_err(var);
        let msg = err.to_string();
        assert!(msg.contains(var), "{var}={value:?}: {msg}");
        assert!(
            err.hint().is_some_and(|h| h.contains(var)),
            "{var}: {:?}",
            err.hint()
        );
    }
}
