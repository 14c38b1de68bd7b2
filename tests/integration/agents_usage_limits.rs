//! What the real agent CLIs print, recorded against the scripted model
//! server (`tests/fixtures/agent-output/`, see its README), fed back through
//! the bundled wrappers and treefarm's classifier:
//!
//! - usage: each wrapper, given the CLI's recorded machine-readable output
//!   (a stand-in program prints it), writes `usage.json` with the figures
//!   the server sent (101 input and 7 output tokens per answer), adds a
//!   second attempt to the first, and keeps the human-readable log;
//! - rate limits: every recorded 429 / 529 / quota ending is classified as
//!   such, with its kind, and no successful run is;
//! - a real `treefarm run` with a Claude Code stand-in: the summary,
//!   `status`, `status --json` and the run report show each spec's usage
//!   and the total;
//! - the scripted server's usage figures and part-time rate limiting.

use crate::common;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use treefarm::agents::{
    classify_rate_limit, log_tail, materialize_wrapper, preset, preset_command, RateLimitKind,
    RateLimitRules,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-output")
        .join(name)
}

/// The environment variable naming each preset's program.
fn bin_var(preset: &str) -> &'static str {
    match preset {
        "claude-code" => "TREEFARM_CLAUDE_BIN",
        "codex" => "TREEFARM_CODEX_BIN",
        "gemini" => "TREEFARM_GEMINI_BIN",
        "aider" => "TREEFARM_AIDER_BIN",
        other => panic!("no preset {other}"),
    }
}

struct Attempt {
    log: String,
    usage: Option<Value>,
}

/// Runs preset `name`'s wrapper with a stand-in CLI that prints `output`
/// (a recorded CLI stdout) and exits `code`, `times` times in one instance
/// directory; returns the log of the last attempt and usage.json.
fn run_wrapper(
    name: &str,
    output: &Path,
    code: i32,
    times: usize,
    usage_env: bool,
    model: Option<&str>,
) -> Attempt {
    let tmp = tempfile::tempdir().expect("tempdir");
    let worktree = tmp.path().join("worktree");
    let instance = tmp.path().join("run/instances/020");
    std::fs::create_dir_all(&worktree).expect("worktree");
    std::fs::create_dir_all(&instance).expect("instance dir");
    let prompt = tmp.path().join("prompt.md");
    std::fs::write(&prompt, "Write a greeting.\n").expect("prompt");
    let fake = tmp.path().join("fake-cli");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncat >/dev/null\ncat '{}'\nexit {code}\n",
            output.display()
        ),
    )
    .expect("fake");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let wrapper = materialize_wrapper(preset(name).expect("preset"), &tmp.path().join("run"))
        .expect("materialize");
    let mut log = String::new();
    for _ in 0..times {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(preset_command(&wrapper))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", tmp.path())
            .env("TMPDIR", tmp.path())
            .env(bin_var(name), &fake)
            .env("TREEFARM_WORKTREE", &worktree)
            .env("TREEFARM_PROMPT_FILE", &prompt)
            .env("TREEFARM_FILES", "greet.txt")
            .env("TREEFARM_SPEC_ID", "020")
            .env("TREEFARM_STATUS_FILE", instance.join("status.json"))
            .current_dir(&worktree)
            .stdin(Stdio::null());
        if usage_env {
            cmd.env("TREEFARM_USAGE_FILE", instance.join("usage.json"));
        }
        if let Some(model) = model {
            cmd.env("TREEFARM_AGENT_MODEL", model);
        }
        let out = cmd.output().expect("run wrapper");
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
    }
    let usage = std::fs::read(instance.join("usage.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("usage.json is JSON"));
    Attempt { log, usage }
}

/// (preset, recorded stdout, model expected in usage.json, cost after one
/// attempt, a line the readable log keeps)
const SUCCESSES: &[(&str, &str, &str, Option<f64>, &str)] = &[
    (
        "claude-code",
        "claude-code-success.jsonl",
        "claude-scripted-1",
        Some(0.000544),
        "[Claude Code] result: success after 1 turn(s): done",
    ),
    (
        "codex",
        "codex-success.jsonl",
        "scripted-model",
        None,
        "[Codex CLI] says: done",
    ),
    (
        "gemini",
        "gemini-success.jsonl",
        "scripted-model",
        None,
        "[Gemini CLI] result: success",
    ),
    (
        "aider",
        "aider-success.txt",
        "openai/scripted-model",
        // aider prints the cost rounded to cents: 101 * 0.001 + 7 * 0.002.
        Some(0.12),
        "Tokens: 101 sent, 7 received. Cost: $0.12 message, $0.12 session.",
    ),
];

#[test]
fn each_wrapper_writes_the_clis_own_usage_figures() {
    for &(name, output, model, cost, keeps) in SUCCESSES {
        // Codex prints no model in its events: the configured one is used.
        let configured = (name == "codex").then_some("scripted-model");
        let one = run_wrapper(name, &fixture(output), 0, 1, true, configured);
        let usage = one
            .usage
            .unwrap_or_else(|| panic!("{name}: no usage.json\n{}", one.log));
        assert_eq!(usage["input_tokens"], 101, "{name}: {usage}");
        assert_eq!(usage["output_tokens"], 7, "{name}: {usage}");
        assert_eq!(usage["model"], model, "{name}: {usage}");
        assert_eq!(usage["attempts"], 1, "{name}: {usage}");
        match cost {
            Some(c) => assert!(
                (usage["cost_usd"].as_f64().expect("cost") - c).abs() < 1e-9,
                "{name}: {usage}"
            ),
            None => assert!(usage["cost_usd"].is_null(), "{name}: {usage}"),
        }
        assert!(
            one.log.contains(keeps),
            "{name}: log lost {keeps:?}:\n{}",
            one.log
        );
        // The report and status read the same file.
        let parsed: treefarm::agents::Usage =
            serde_json::from_value(usage.clone()).expect("the report reads it");
        assert_eq!(parsed.tokens(), 108, "{name}");
    }
}

#[test]
fn a_second_attempt_adds_to_the_first() {
    for &(name, output, _, cost, _) in SUCCESSES {
        // Without TREEFARM_USAGE_FILE: usage.json beside the status file.
        let two = run_wrapper(name, &fixture(output), 0, 2, false, None);
        let usage = two.usage.unwrap_or_else(|| panic!("{name}: no usage.json"));
        assert_eq!(usage["input_tokens"], 202, "{name}: {usage}");
        assert_eq!(usage["output_tokens"], 14, "{name}: {usage}");
        assert_eq!(usage["attempts"], 2, "{name}: {usage}");
        if let Some(c) = cost {
            assert!(
                (usage["cost_usd"].as_f64().expect("cost") - 2.0 * c).abs() < 1e-9,
                "{name}: {usage}"
            );
        }
    }
}

/// (preset, recorded log, the real CLI's exit code, expected kind)
const LIMITED: &[(&str, &str, i32, RateLimitKind)] = &[
    (
        "claude-code",
        "claude-code-429.log",
        1,
        RateLimitKind::TooManyRequests,
    ),
    (
        "claude-code",
        "claude-code-429-retry-after.log",
        1,
        RateLimitKind::TooManyRequests,
    ),
    (
        "claude-code",
        "claude-code-529-overloaded.log",
        1,
        RateLimitKind::Overloaded,
    ),
    (
        "claude-code",
        "claude-code-usage-limit.log",
        1,
        RateLimitKind::Quota,
    ),
    ("codex", "codex-429.log", 1, RateLimitKind::TooManyRequests),
    (
        "codex",
        "codex-429-retry-after.log",
        1,
        RateLimitKind::TooManyRequests,
    ),
    ("codex", "codex-quota.log", 1, RateLimitKind::Quota),
    (
        "gemini",
        "gemini-429.log",
        173,
        RateLimitKind::TooManyRequests,
    ),
    // A per-minute quota: Gemini CLI itself calls it retryable.
    (
        "gemini",
        "gemini-quota.log",
        173,
        RateLimitKind::TooManyRequests,
    ),
    (
        "gemini",
        "gemini-503-overloaded.log",
        247,
        RateLimitKind::Overloaded,
    ),
    // aider gives up on a rate limit and exits 0 (the attempt is unchanged).
    ("aider", "aider-429.log", 0, RateLimitKind::TooManyRequests),
    ("aider", "aider-quota.log", 0, RateLimitKind::Quota),
];

#[test]
fn every_recorded_rate_limit_is_detected_with_its_kind() {
    let rules = RateLimitRules::default();
    for &(name, log, code, kind) in LIMITED {
        let text = std::fs::read_to_string(fixture(log)).expect("fixture");
        let hit = classify_rate_limit(Some(name), &rules, Some(code), log_tail(&text))
            .unwrap_or_else(|| panic!("{log}: not detected"));
        assert_eq!(hit.kind, kind, "{log}: {hit:?}");
        assert!(text.contains(&hit.evidence), "{log}: {hit:?}");
        // Killed by a signal: never a rate limit.
        assert_eq!(
            classify_rate_limit(Some(name), &rules, None, &text),
            None,
            "{log}"
        );
    }
}

#[test]
fn a_custom_command_gets_the_generic_signals() {
    let rules = RateLimitRules::default();
    for log in ["claude-code-429.log", "codex-quota.log"] {
        let text = std::fs::read_to_string(fixture(log)).expect("fixture");
        assert!(
            classify_rate_limit(None, &rules, Some(1), &text).is_some(),
            "{log}"
        );
    }
}

#[test]
fn no_successful_run_is_a_rate_limit_even_when_it_fails_later() {
    let rules = RateLimitRules::default();
    for &(name, output, _, _, _) in SUCCESSES {
        let run = run_wrapper(name, &fixture(output), 1, 1, true, None);
        assert_eq!(
            classify_rate_limit(Some(name), &rules, Some(1), log_tail(&run.log)),
            None,
            "{name}:\n{}",
            run.log
        );
    }
}

/// One Anthropic Messages request of a scripted conversation (it has tools).
fn main_request(port: u16) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = support::post(
        port,
        "/v1/messages",
        &serde_json::json!({"model": "claude-x", "max_tokens": 10,
            "tools": [{"name": "Read", "input_schema": {}}],
            "messages": [{"role": "user", "content": "Write a greeting."}]}),
    );
    (
        status,
        headers,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[test]
fn the_server_reports_scripted_usage_and_rate_limits_part_of_its_traffic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = support::ModelServer::start(
        tmp.path(),
        &serde_json::json!({
            "steps": [{"text": "done"}],
            "errors": [{"status": 529}],
            "error_every": {"every": 2, "count": 3, "error": {"status": 429, "retry_after": 4}},
            "usage": {"input_tokens": 101, "output_tokens": 7},
        }),
    );
    let statuses: Vec<u16> = (0..9)
        .map(|_| {
            let (status, headers, body) = main_request(server.port);
            match status {
                429 => {
                    assert!(headers.contains(&("retry-after".into(), "4".into())));
                    assert_eq!(body["error"]["type"], "rate_limit_error");
                }
                529 => assert_eq!(body["error"]["type"], "overloaded_error"),
                200 => {
                    assert_eq!(body["usage"]["input_tokens"], 101);
                    assert_eq!(body["usage"]["output_tokens"], 7);
                }
                other => panic!("unexpected status {other}"),
            }
            status
        })
        .collect();
    assert_eq!(statuses, [529, 429, 200, 429, 200, 429, 200, 200, 200]);
    // Every answer with figures is recorded, attributed to its spec (none
    // here: the prompt names no worktree).
    let answers = server.answers();
    assert_eq!(answers.len(), 5);
    assert!(answers
        .iter()
        .all(|a| a["input_tokens"] == 101 && a["main"] == true));
}

/// A `claude` stand-in: prints Claude Code's recorded success events and
/// writes the declared file (treefarm commits it).
fn fake_claude(dir: &Path) -> PathBuf {
    let path = dir.join("claude");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncat >/dev/null\ncat '{}'\nmkdir -p src && echo hi > src/a.txt\n",
            fixture("claude-code-success.jsonl").display()
        ),
    )
    .expect("fake claude");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn status_the_summary_and_the_report_show_what_the_agents_spent() {
    let repo = common::TestRepo::with_files(&[("README.md", "hi\n")]);
    for id in ["001", "002"] {
        // Both declare what the stand-in writes: they run one after the other.
        repo.write(
            &format!("specs/SPEC-{id}-x.md"),
            &format!("# Task {id}\n\nDo it.\n\n**Files**:\n- `src/a.txt`\n"),
        );
    }
    repo.write(
        "treefarm.yaml",
        "agent:\n  preset: claude-code\n  timeout: 1m\n",
    );
    repo.commit_all("specs");
    let bin = tempfile::tempdir().expect("bin dir");
    let fake = fake_claude(bin.path());
    let out = repo
        .treefarm()
        .env("TREEFARM_CLAUDE_BIN", &fake)
        .args(["run", "--instances", "1", "--no-merge"])
        .output()
        .expect("run");
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let expected = "usage: 202 in / 14 out, $0.0011 (001: 101 in / 7 out, $0.0005; \
                    002: 101 in / 7 out, $0.0005)";
    assert!(err.contains(expected), "summary:\n{err}");

    let status = repo.tf(&["status"]);
    assert!(
        common::stdout(&status).contains(expected),
        "{}",
        common::stdout(&status)
    );
    let json = common::stdout_json(&repo.tf(&["status", "--json"]));
    assert_eq!(json["usage"]["total"]["input_tokens"], 202, "{json}");
    assert_eq!(json["usage"]["per_spec"]["001"]["output_tokens"], 7);
    assert_eq!(
        json["usage"]["per_spec"]["002"]["model"],
        "claude-scripted-1"
    );

    // The run report, written at the end of the run.
    let report = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report path:\n{err}"));
    let html = std::fs::read_to_string(report.trim()).expect("report");
    let per_spec = "usage: model claude-scripted-1, 101 input tokens, 7 output tokens, $0.0005";
    assert_eq!(html.matches(per_spec).count(), 2, "per spec");
}
