//! `treefarm.yaml` + environment: defaults, precedence, errors with their
//! file:line or variable, `init` never overwriting.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::TestRepo;
use treefarm::config::{
    default_config_yaml, init, parse_duration, CommitMode, Config, ConfigError, ScopeMode, Strategy,
};
use treefarm::InputError;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn message(err: ConfigError) -> String {
    InputError::from(err).to_string()
}

#[test]
fn defaults_without_a_file() {
    let repo = TestRepo::with_files(&[("README.md", "x")]);
    let (config, file) = Config::load(&repo.root, None, Vec::new()).expect("load");
    assert_eq!(file, None);
    assert_eq!(config, Config::default());
    assert_eq!(config.spec_dir, Path::new("specs"));
    assert_eq!(config.target, "roadmap");
    assert_eq!(config.base, "HEAD");
    assert_eq!(config.instances, 3);
    assert_eq!(config.worktree_dir, None);
    assert_eq!(config.agent.kill_grace, Duration::from_secs(5));
    assert_eq!(config.agent.commit, CommitMode::Auto);
    assert_eq!(config.scope, ScopeMode::Warn);
    assert_eq!((config.port_base, config.port_stride), (20000, 10));
    assert!(config.merge.auto);
    assert_eq!(config.merge.strategy, Strategy::Merge);
}

#[test]
fn the_design_example_parses() {
    let text = r#"
spec_dir: specs
target: roadmap
base: HEAD
instances: 3
worktree_dir: ../myrepo.treefarm
agent:
  command: claude -p "$(cat {spec})" --dangerously-skip-permissions
  timeout: 30m
  idle_timeout: 10m
  retries: 0
  commit: auto
  env: {}
setup: { copy: [.env], link: [], command: "" }
scope: warn
port_base: 20000
port_stride: 10
overlap: { ignore: [Cargo.lock] }
merge: { strategy: merge, gate: "", auto: true }
"#;
    let config = Config::parse("treefarm.yaml", text.as_bytes()).expect("parse");
    assert_eq!(config.agent.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(config.agent.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(config.setup.copy, [".env"]);
    assert_eq!(config.overlap.ignore, ["Cargo.lock"]);
    assert_eq!(
        config.worktree_dir.as_deref(),
        Some(Path::new("../myrepo.treefarm"))
    );
}

#[test]
fn durations_accept_strings_and_seconds_and_serialise_as_strings() {
    let config = Config::parse(
        "t.yaml",
        b"agent:\n  timeout: 90\n  idle_timeout: '1h 5m'\n  kill_grace: 500ms\n",
    )
    .expect("parse");
    assert_eq!(config.agent.timeout, Some(Duration::from_secs(90)));
    assert_eq!(config.agent.idle_timeout, Some(Duration::from_secs(3900)));
    assert_eq!(config.agent.kill_grace, Duration::from_millis(500));
    let yaml = serde_yaml::to_string(&config).expect("serialise");
    assert!(yaml.contains("timeout: 1m 30s"), "{yaml}");
    let back = Config::parse("t.yaml", yaml.as_bytes()).expect("round trip");
    assert_eq!(back, config);

    assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration(" 90 "), Ok(Duration::from_secs(90)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-5").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn file_then_env_precedence() {
    let repo = TestRepo::with_files(&[(
        "treefarm.yaml",
        "instances: 5\ntarget: integration\nscope: fail\nagent:\n  command: file-agent\n  retries: 2\n",
    )]);
    let (config, file) = Config::load(
        &repo.root,
        None,
        env(&[
            ("TREEFARM_INSTANCES", "7"),
            ("TREEFARM_AGENT_COMMAND", "env-agent {id}"),
            ("TREEFARM_MERGE_STRATEGY", "squash"),
            ("TREEFARM_MERGE_AUTO", "false"),
            ("TREEFARM_AGENT_TIMEOUT", "45m"),
            ("HOME", "/elsewhere"),
        ]),
    )
    .expect("load");
    assert_eq!(file, Some(repo.root.join("treefarm.yaml")));
    assert_eq!(config.instances, 7, "env beats file");
    assert_eq!(config.agent.command.as_deref(), Some("env-agent {id}"));
    assert_eq!(config.target, "integration", "file beats default");
    assert_eq!(config.scope, ScopeMode::Fail);
    assert_eq!(config.agent.retries, 2);
    assert_eq!(config.merge.strategy, Strategy::Squash);
    assert!(!config.merge.auto);
    assert_eq!(config.agent.timeout, Some(Duration::from_secs(2700)));
}

#[test]
fn every_documented_env_var_applies() {
    let mut config = Config::default();
    config
        .apply_env(env(&[
            ("TREEFARM_SPEC_DIR", "docs/architecture/specs"),
            ("TREEFARM_TARGET", "t"),
            ("TREEFARM_BASE", "main"),
            ("TREEFARM_WORKTREE_DIR", "/tmp/wt"),
            ("TREEFARM_AGENT_PRESET", "codex"),
            ("TREEFARM_AGENT_MODEL", "m"),
            ("TREEFARM_AGENT_IDLE_TIMEOUT", "2m"),
            ("TREEFARM_AGENT_KILL_GRACE", "1"),
            ("TREEFARM_AGENT_COMMIT", "off"),
            ("TREEFARM_SCOPE", "off"),
            ("TREEFARM_PORT_BASE", "30000"),
            ("TREEFARM_PORT_STRIDE", "2"),
            ("TREEFARM_MERGE_GATE", "cargo test"),
            ("TREEFARM_SETUP_COMMAND", "make setup"),
            ("TREEFARM_MERGE_STRATEGY", "rebase"),
        ]))
        .expect("apply");
    assert_eq!(config.spec_dir, Path::new("docs/architecture/specs"));
    assert_eq!(
        (config.target.as_str(), config.base.as_str()),
        ("t", "main")
    );
    assert_eq!(config.worktree_dir.as_deref(), Some(Path::new("/tmp/wt")));
    assert_eq!(config.agent.preset.as_deref(), Some("codex"));
    assert_eq!(config.agent.model.as_deref(), Some("m"));
    assert_eq!(config.agent.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(config.agent.kill_grace, Duration::from_secs(1));
    assert_eq!(config.agent.commit, CommitMode::Off);
    assert_eq!(config.scope, ScopeMode::Off);
    assert_eq!((config.port_base, config.port_stride), (30000, 2));
    assert_eq!(config.merge.gate, "cargo test");
    assert_eq!(config.setup.command, "make setup");
    assert_eq!(config.merge.strategy, Strategy::Rebase);
}

#[test]
fn non_config_treefarm_vars_are_ignored() {
    let mut config = Config::default();
    config
        .apply_env(env(&[
            ("TREEFARM_LOG", "debug"),
            ("TREEFARM_SPEC_ID", "020"),
            ("TREEFARM_CRASH_AT", "merge"),
            ("TREEFARM_PORT", "not-a-number"),
            ("TREEFARM_SLOT", "x"),
        ]))
        .expect("ignored");
    assert_eq!(config, Config::default());
}

#[test]
fn bad_env_value_names_the_variable() {
    let repo = TestRepo::with_files(&[("README.md", "x")]);
    for (var, value) in [
        ("TREEFARM_INSTANCES", "many"),
        ("TREEFARM_INSTANCES", "0"),
        ("TREEFARM_PORT_BASE", "70000"),
        ("TREEFARM_AGENT_TIMEOUT", "soon"),
        ("TREEFARM_SCOPE", "loud"),
        ("TREEFARM_MERGE_AUTO", "maybe"),
    ] {
        let err = Config::load(&repo.root, None, env(&[(var, value)])).expect_err(var);
        let msg = message(err);
        assert!(
            msg.contains(var) && msg.contains(value),
            "{var}={value}: {msg}"
        );
    }
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let repo = TestRepo::with_files(&[(
        "treefarm.yaml",
        "# comment\ntarget: roadmap\n\nagnet:\n  command: x\n",
    )]);
    let msg = message(Config::load(&repo.root, None, Vec::new()).expect_err("unknown key"));
    assert!(
        msg.starts_with("treefarm.yaml:4:1: unknown key `agnet`"),
        "{msg}"
    );
    assert!(
        msg.contains("hint: known keys here are spec_dir, target"),
        "{msg}"
    );
}

#[test]
fn unknown_nested_key_has_its_path() {
    let err =
        Config::parse("treefarm.yaml", b"agent:\n  command: x\n  modle: y\n").expect_err("unknown");
    let msg = message(err);
    assert!(
        msg.starts_with("treefarm.yaml:3:3: unknown key `agent.modle`"),
        "{msg}"
    );
    assert!(msg.contains("model"), "{msg}");
}

#[test]
fn bad_values_in_the_file_are_located() {
    let msg = message(Config::parse("treefarm.yaml", b"target: x\ninstances: 0\n").expect_err("0"));
    assert!(
        msg.starts_with("treefarm.yaml:2: `instances` must be at least 1"),
        "{msg}"
    );
    let msg = message(Config::parse("treefarm.yaml", b"scope: loud\n").expect_err("enum"));
    assert!(msg.starts_with("treefarm.yaml:1:"), "{msg}");
    assert!(msg.contains("loud"), "{msg}");
    let msg = message(
        Config::parse("treefarm.yaml", b"agent:\n  timeout: soon\n").expect_err("duration"),
    );
    assert!(msg.starts_with("treefarm.yaml:2:"), "{msg}");
    let msg = message(Config::parse("treefarm.yaml", b"target: [\n").expect_err("syntax"));
    assert!(msg.starts_with("treefarm.yaml:"), "{msg}");
    let msg = message(Config::parse("treefarm.yaml", b"target: \xff\n").expect_err("utf8"));
    assert!(msg.contains("byte offset 8"), "{msg}");
}

#[test]
fn explicit_config_must_exist() {
    let repo = TestRepo::with_files(&[("other.yaml", "instances: 9\n")]);
    let missing = repo.root.join("nope.yaml");
    let msg = message(Config::load(&repo.root, Some(&missing), Vec::new()).expect_err("missing"));
    assert!(
        msg.contains("nope.yaml") && msg.contains("does not exist"),
        "{msg}"
    );
    let explicit = repo.root.join("other.yaml");
    let (config, file) = Config::load(&repo.root, Some(&explicit), Vec::new()).expect("load");
    assert_eq!(config.instances, 9);
    assert_eq!(file, Some(explicit));
}

#[test]
fn empty_or_comment_only_file_gives_defaults() {
    assert_eq!(Config::parse("t", b"").expect("empty"), Config::default());
    assert_eq!(
        Config::parse("t", b"# nothing\n").expect("comments"),
        Config::default()
    );
}

#[test]
fn default_config_yaml_parses_and_lists_every_key() {
    let text = default_config_yaml(None);
    let config = Config::parse("treefarm.yaml", text.as_bytes()).expect("parses");
    assert!(config
        .agent
        .command
        .as_deref()
        .unwrap_or("")
        .contains("{spec}"));
    assert_eq!(config.agent.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(config.overlap.ignore, ["Cargo.lock"]);
    for key in [
        "spec_dir:",
        "target:",
        "base:",
        "instances:",
        "worktree_dir:",
        "agent:",
        "command:",
        "preset",
        "timeout:",
        "idle_timeout:",
        "kill_grace:",
        "retries:",
        "commit:",
        "env:",
        "setup:",
        "scope:",
        "port_base:",
        "port_stride:",
        "overlap:",
        "merge:",
        "strategy",
        "gate",
        "auto",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
    let with_preset = default_config_yaml(Some("claude-code"));
    let config = Config::parse("treefarm.yaml", with_preset.as_bytes()).expect("parses");
    assert_eq!(config.agent.preset.as_deref(), Some("claude-code"));
    assert_eq!(config.agent.command, None);
}

#[test]
fn init_writes_then_never_overwrites() {
    let repo = TestRepo::with_files(&[("README.md", "x")]);
    let first = init(&repo.root, None).expect("init");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(_, created)| *created), "{first:?}");
    let example = repo.root.join("specs/SPEC-001-example.md");
    assert!(example.is_file());
    // What init writes must load.
    let set = treefarm::spec::load_specs(&repo.root, Path::new("specs")).expect("example loads");
    assert_eq!(set.specs[0].id, "001");
    assert_eq!(set.specs[0].files, ["README.md"]);

    repo.write("treefarm.yaml", "instances: 4\n");
    let second = init(&repo.root, Some("codex")).expect("init again");
    assert!(second.iter().all(|(_, created)| !*created), "{second:?}");
    assert_eq!(repo.read("treefarm.yaml"), "instances: 4\n");
}

/// The first ```yaml block after `heading` in a document of the repository.
fn config_example(doc: &str, heading: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).expect("read the document");
    let from = text.find(heading).expect("the config heading");
    let block = text[from..]
        .split_once("```yaml\n")
        .expect("a yaml block")
        .1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_string()
}

#[test]
fn guide_and_design_config_examples_are_valid_configs() {
    // Merges of several features once left the examples malformed (agent
    // keys under `setup:`, `setup` twice); the examples are the contract.
    // The guide's configuration reference holds what the README used to.
    for (doc, heading) in [
        ("docs/guide/src/configuration.md", "# Config"),
        ("docs/DESIGN.md", "## Config"),
    ] {
        let yaml = config_example(doc, heading);
        if let Err(e) = treefarm::config::Config::parse(doc, yaml.as_bytes()) {
            panic!("the config example of {doc} does not load: {e}\n{yaml}");
        }
    }
}
