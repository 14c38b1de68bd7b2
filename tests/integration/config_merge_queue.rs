//! The merge queue's config keys: defaults, file, `TREEFARM_*` variables and
//! validation naming the key.

use treefarm::config::Config;

#[test]
fn merge_queue_keys_have_defaults_env_and_validation() {
    use treefarm::config::OnConflict;
    let config = Config::parse("treefarm.yaml", b"").expect("defaults");
    assert_eq!(config.merge.batch, 8);
    assert_eq!(config.merge.gate_jobs, 1);
    assert_eq!(config.merge.on_conflict, OnConflict::Keep);
    assert_eq!(config.merge.resolve_attempts, 1);
    assert_eq!(config.agent.resolve_prompt_template, None);

    let text = "merge:\n  batch: 1\n  on_conflict: agent\n  resolve_attempts: 3\nagent:\n  resolve_prompt_template: \"fix {conflicts} against {target}\"\n";
    let config = Config::parse("treefarm.yaml", text.as_bytes()).expect("parse");
    assert_eq!(config.merge.batch, 1);
    assert_eq!(config.merge.on_conflict, OnConflict::Agent);
    assert_eq!(config.merge.resolve_attempts, 3);

    for (text, key, line) in [
        ("merge:\n  batch: 0\n", "merge.batch", 2),
        ("merge:\n  gate_jobs: 0\n", "merge.gate_jobs", 2),
        ("merge:\n  gate_jobs: 100000\n", "merge.gate_jobs", 2),
        (
            "merge:\n  resolve_attempts: 0\n",
            "merge.resolve_attempts",
            2,
        ),
        (
            "agent:\n  resolve_prompt_template: \"{files}\"\n",
            "agent.resolve_prompt_template",
            2,
        ),
    ] {
        let err = Config::parse("treefarm.yaml", text.as_bytes()).expect_err(text);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("treefarm.yaml:{line}: `{key}`")),
            "{text}: {msg}"
        );
    }
    let err = Config::parse("treefarm.yaml", b"merge:\n  on_conflict: ask\n").expect_err("enum");
    assert!(err.to_string().contains("on_conflict"), "{err}");

    let mut config = Config::default();
    config
        .apply_env([
            ("TREEFARM_MERGE_BATCH".to_string(), "3".to_string()),
            ("TREEFARM_MERGE_GATE_JOBS".to_string(), "1".to_string()),
            (
                "TREEFARM_MERGE_ON_CONFLICT".to_string(),
                "agent".to_string(),
            ),
            (
                "TREEFARM_MERGE_RESOLVE_ATTEMPTS".to_string(),
                "2".to_string(),
            ),
            (
                "TREEFARM_AGENT_RESOLVE_PROMPT_TEMPLATE".to_string(),
                "resolve {conflicts}".to_string(),
            ),
        ])
        .expect("env");
    assert_eq!(config.merge.batch, 3);
    assert_eq!(config.merge.on_conflict, OnConflict::Agent);
    assert_eq!(config.merge.resolve_attempts, 2);
    assert_eq!(
        config.agent.resolve_prompt_template.as_deref(),
        Some("resolve {conflicts}")
    );
    for (var, value) in [
        ("TREEFARM_MERGE_BATCH", "0"),
        ("TREEFARM_MERGE_GATE_JOBS", "100000"),
        ("TREEFARM_MERGE_ON_CONFLICT", "maybe"),
        ("TREEFARM_MERGE_RESOLVE_ATTEMPTS", "0"),
        ("TREEFARM_AGENT_RESOLVE_PROMPT_TEMPLATE", "{nope}"),
    ] {
        let err = Config::default()
            .apply_env([(var.to_string(), value.to_string())])
            .expect_err(var);
        assert!(err.to_string().contains(var), "{err}");
    }
}
