//! Issue 15 end to end: a real `treefarm run` whose agents talk to the
//! scripted model server (`tests/support/model_server.py`) over the
//! Anthropic Messages wire format, while the server rate-limits part of the
//! traffic (429 with and without `retry-after`, 529 overloaded). The run
//! backs off, the concurrency limit drops and recovers (read from the
//! `--json` events), every spec merges and no rate-limited attempt counts
//! as a failure (`agent.retries: 0`). Then budgets: a run stopped by
//! `run.max_tokens` leaves the rest pending, `resume` with a larger budget
//! finishes it and the spending counts both runs.
//!
//! The agent is a small Python client (`AGENT` below) that asks the server
//! once, prints what Claude Code prints when it gives up on an API error
//! (`API Error: 429 {...}`, and the `retry-after` it was given), writes its
//! declared file, commits it, and adds the answer's tokens to `usage.json`
//! as the preset wrappers do.

use crate::common;
use crate::support;

use std::process::Output;

use common::{events_of, json_events, stderr, TestRepo};
use serde_json::{json, Value};
use support::ModelServer;

/// Tokens every scripted answer reports.
pub(crate) const USAGE: (u64, u64) = (101, 7);

const AGENT: &str = r#"
import json, os, subprocess, sys, urllib.error, urllib.request

url = sys.argv[1].rstrip("/") + "/v1/messages"
prompt = open(os.environ["TREEFARM_PROMPT_FILE"]).read()
body = {
    "model": "scripted-model",
    "max_tokens": 1024,
    "tools": [{"name": "Write", "description": "write a file",
               "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": prompt}],
}
request = urllib.request.Request(
    url, data=json.dumps(body).encode(),
    headers={"content-type": "application/json", "x-api-key": "scripted-key",
             "anthropic-version": "2023-06-01"})
try:
    answer = json.load(urllib.request.urlopen(request, timeout=30))
except urllib.error.HTTPError as e:
    # What Claude Code prints when it gives up on an API error.
    print("API Error: %d %s" % (e.code, e.read().decode()), flush=True)
    if e.headers.get("retry-after"):
        print("retry-after: %s" % e.headers["retry-after"], flush=True)
    sys.exit(1)
usage_path = os.environ["TREEFARM_USAGE_FILE"]
try:
    usage = json.load(open(usage_path))
except (OSError, ValueError):
    usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
got = answer.get("usage", {})
usage["input_tokens"] += got.get("input_tokens", 0)
usage["output_tokens"] += got.get("output_tokens", 0)
usage["cost_usd"] += (got.get("input_tokens", 0) + got.get("output_tokens", 0)) * 1e-5
usage["model"] = answer.get("model")
json.dump(usage, open(usage_path, "w"))
path = open(os.environ["TREEFARM_FILES_FILE"]).read().split()[0]
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
open(path, "w").write("written for %s\n" % os.environ["TREEFARM_SPEC_ID"])
subprocess.run(["git", "add", path], check=True)
subprocess.run(["git", "commit", "-q", "-m", os.environ["TREEFARM_SPEC_ID"] + ": change"], check=True)
print("done", flush=True)
"#;

/// A repository with `n` independent specs, the agent above pointed at
/// `server`, and `extra` appended to `treefarm.yaml`.
pub(crate) fn repo(n: usize, server: &ModelServer, agent_extra: &str, extra: &str) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let agent = repo.tmp.path().join("agent.py");
    std::fs::write(&agent, AGENT).expect("agent");
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: \"python3 {} {}\"\n  timeout: 60s\n  retries: 0\n{agent_extra}{extra}",
            agent.display(),
            server.url()
        ),
    );
    for i in 1..=n {
        repo.write_listed_spec(
            &format!("{i:03}"),
            "paced",
            &[&format!("out/{i:03}.txt")],
            "",
        );
    }
    repo.commit_all("specs and config");
    repo
}

pub(crate) fn script(error_every: Value) -> Value {
    json!({
        "steps": [{"text": "done"}],
        "error_every": error_every,
        "usage": {"input_tokens": USAGE.0, "output_tokens": USAGE.1},
    })
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("treefarm exited normally")
}

fn summary(events: &[Value]) -> &Value {
    events_of(events, "summary", None)
        .pop()
        .expect("a summary event")
}

/// 8 specs, 4 at once, against a server that refuses the first of every two
/// requests four times (429 with retry-after, 529, 429 without, 529): the
/// run backs off and adapts, and everything merges without a retry.
#[test]
fn eight_specs_through_a_rate_limiting_server_all_merge_without_a_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let errors = json!([
        {"status": 429, "retry_after": 1},
        {"status": 529},
        {"status": 429},
        {"status": 529},
    ]);
    let server = ModelServer::start(
        &tmp.path().join("server"),
        &script(json!({"every": 2, "count": 4, "errors": errors})),
    );
    let repo = repo(
        8,
        &server,
        "  start_interval: 20ms\n  rate_limit:\n    max_backoff: 300ms\n    max_waits: 4\n",
        "",
    );
    let out = repo
        .treefarm()
        // The test environment sets 0; this run spaces its starts.
        .env("TREEFARM_AGENT_START_INTERVAL", "20ms")
        .args(["run", "--json", "--instances", "4"])
        .output()
        .expect("run");
    let events = json_events(&out);
    assert_eq!(code(&out), 0, "stderr:\n{}", stderr(&out));

    // Every spec merged; nothing failed or was retried for a failure.
    let s = summary(&events);
    assert_eq!(s["merged"].as_array().map(Vec::len), Some(8), "{s}");
    assert!(events_of(&events, "failed", None).is_empty());
    for kind in ["failed", "timed_out", "pending", "skipped"] {
        assert_eq!(s[kind], json!([]), "{kind}: {s}");
    }

    // The four refusals were four rate-limited attempts, each of the
    // expected kind, each backed off (capped by max_backoff) and retried.
    let limited = events_of(&events, "rate_limited", None);
    assert!(
        events_of(&events, "exited", None)
            .iter()
            .all(|x| x["result"] == "succeeded" || x["result"] == "rate_limited"),
        "no attempt failed: {events:?}"
    );
    let kinds: Vec<&str> = limited.iter().filter_map(|e| e["kind"].as_str()).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "overloaded",
            "overloaded",
            "too_many_requests",
            "too_many_requests"
        ],
        "{limited:?}"
    );
    let with_retry_after: Vec<_> = limited
        .iter()
        .filter(|e| e["retry_after_ms"] == 1000)
        .collect();
    assert_eq!(with_retry_after.len(), 1, "{limited:?}");
    for e in &limited {
        let backoff = e["backoff_ms"].as_u64().expect("backoff_ms");
        assert!(backoff <= 300, "capped by max_backoff: {e}");
        assert!(
            e["signal"]
                .as_str()
                .is_some_and(|s| s.starts_with("API Error: ")),
            "{e}"
        );
        let id = e["id"].as_str().expect("id");
        // Its `exited` event says so: not a failed attempt.
        assert!(
            events_of(&events, "exited", Some(id))
                .iter()
                .any(|x| x["attempt"] == e["attempt"]
                    && x["result"] == "rate_limited"
                    && x["exit_code"] == 1),
            "{e}"
        );
        // The spec started again: a later attempt of it exited 0.
        let attempt = e["attempt"].as_u64().expect("attempt");
        assert!(
            events_of(&events, "exited", Some(id))
                .iter()
                .any(|x| x["attempt"].as_u64() > Some(attempt) && x["exit_code"] == 0),
            "{id} ran again after its rate-limited attempt {attempt}"
        );
    }
    assert_eq!(server.main_requests().len(), 8 + 4);

    // The window dropped (halved from 4) and grew again after its last drop.
    common::window_dropped_and_recovered(&events, 4);

    // The summary shows the backoffs, the limit and the usage.
    assert_eq!(s["backoffs"].as_array().map(Vec::len), Some(4), "{s}");
    assert_eq!(s["concurrency"]["max"], 4);
    assert_eq!(s["usage"]["total"]["input_tokens"], 8 * USAGE.0);
    assert_eq!(s["usage"]["total"]["output_tokens"], 8 * USAGE.1);
    // Every branch landed on roadmap.
    let files = repo.git(&["ls-tree", "-r", "--name-only", "roadmap", "out"]);
    assert_eq!(files.lines().count(), 8, "{files}");

    // So does the run's HTML report.
    let report = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("report: ").map(str::to_string))
        .expect("the run names its report");
    let html = std::fs::read_to_string(&report).expect("report");
    let pacing = html
        .split("<ul class=\"pacing\" id=\"pacing\">")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("a pacing section");
    assert_eq!(pacing.matches(" waited ").count(), 4, "{pacing}");

    // `status` shows the limit and every backoff.
    let status = repo.treefarm().arg("status").output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("rate-limit backoff(s)"), "{text}");
    assert_eq!(text.matches(" waited ").count(), 4, "{text}");
}

/// `run.max_tokens` stops new starts once reached: the run exits 1 naming
/// the budget and the figures, the rest stays pending; `resume` under the
/// same budget stops again at once, with a larger one (`--max-tokens`) it
/// finishes, and the spending counts both coordinators.
#[test]
fn a_budget_stop_leaves_the_rest_pending_and_resume_with_a_larger_budget_finishes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = ModelServer::start(&tmp.path().join("server"), &script(Value::Null));
    let repo = repo(4, &server, "", "run:\n  max_tokens: 200\n");
    let per_spec = USAGE.0 + USAGE.1;

    let out = repo
        .treefarm()
        .args(["run", "--json", "--instances", "1"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let reached = events_of(&events, "budget_reached", None);
    assert_eq!(reached.len(), 1, "{events:?}");
    assert_eq!(reached[0]["budget"], "tokens");
    assert_eq!(reached[0]["limit"], 200.0);
    assert_eq!(reached[0]["spent"], (2 * per_spec) as f64);
    let message = reached[0]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!(
            "{} tokens spent of run.max_tokens 200",
            2 * per_spec
        )),
        "{message}"
    );
    let s = summary(&events);
    assert_eq!(s["merged"], json!(["001", "002"]), "{s}");
    assert_eq!(s["pending"], json!(["003", "004"]), "{s}");
    assert_eq!(s["state"], "interrupted");
    assert_eq!(s["usage"]["total"]["input_tokens"], 2 * USAGE.0);
    assert_eq!(
        events_of(&events, "planted", None).len(),
        2,
        "no third start"
    );

    // The same budget: nothing starts, it says why, exit 1.
    let again = repo.treefarm().args(["resume"]).output().expect("resume");
    assert_eq!(code(&again), 1, "stderr:\n{}", stderr(&again));
    assert!(
        stderr(&again).contains("token budget reached"),
        "{}",
        stderr(&again)
    );
    assert_eq!(server.main_requests().len(), 2);

    // A larger budget on the command line: the rest runs and merges.
    let done = repo
        .treefarm()
        .args(["resume", "--json", "--max-tokens", "1000"])
        .output()
        .expect("resume");
    assert_eq!(code(&done), 0, "stderr:\n{}", stderr(&done));
    let events = json_events(&done);
    let s = summary(&events);
    assert_eq!(s["pending"], json!([]), "{s}");
    assert_eq!(s["state"], "finished");
    assert!(s["budget_reached"].is_null(), "{s}");
    // Both coordinators' spending: four specs' worth.
    assert_eq!(s["usage"]["total"]["input_tokens"], 4 * USAGE.0);
    assert_eq!(s["usage"]["total"]["output_tokens"], 4 * USAGE.1);
    assert_eq!(server.main_requests().len(), 4);
    let files = repo.git(&["ls-tree", "-r", "--name-only", "roadmap", "out"]);
    assert_eq!(files.lines().count(), 4, "{files}");
}

/// A provider that never stops refusing: past `agent.rate_limit.max_waits`
/// the spec fails, and its reason names the limit and the last signal.
#[test]
fn past_max_waits_a_spec_fails_naming_the_limit_and_the_signal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut script = script(Value::Null);
    script["always_error"] = json!({"status": 529});
    let server = ModelServer::start(&tmp.path().join("server"), &script);
    let repo = repo(
        1,
        &server,
        "  rate_limit:\n    max_backoff: 50ms\n    max_waits: 2\n",
        "",
    );
    let out = repo
        .treefarm()
        .args(["run", "--json"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert_eq!(events_of(&events, "rate_limited", None).len(), 2);
    assert_eq!(
        server.main_requests().len(),
        3,
        "two waits, then it gave up"
    );
    let failed = events_of(&events, "failed", Some("001"));
    let reason = failed[0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("overloaded after 2 rate-limit wait(s) (agent.rate_limit.max_waits = 2): API Error: 529"),
        "{reason}"
    );
}

/// Ctrl-C while a spec waits out its backoff: the run stops at once (the
/// spec is `interrupted`), and `resume` judges the rate-limited attempt
/// again from its exit file: same backoff, no second wait counted, no retry
/// used, and it merges.
#[test]
fn ctrl_c_during_a_backoff_then_resume_keeps_the_backoff_and_merges() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut script = script(Value::Null);
    script["errors"] = json!([{"status": 429, "retry_after": 1}]);
    let server = ModelServer::start(&tmp.path().join("server"), &script);
    let repo = repo(1, &server, "  rate_limit:\n    max_backoff: 1s\n", "");
    let mut child = repo
        .treefarm()
        .args(["run", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Wait for the event itself, then interrupt.
    let limited = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("\"event\":\"rate_limited\""))
        .expect("a rate_limited event");
    let limited: Value = serde_json::from_str(&limited).expect("JSON");
    assert_eq!(limited["retry_after_ms"], 1000);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("\"event\":\"interrupted\"")),
        "{rest:?}"
    );
    assert_eq!(server.main_requests().len(), 1, "nothing started again");

    let out = repo
        .treefarm()
        .args(["resume", "--json"])
        .output()
        .expect("resume");
    assert_eq!(code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert!(
        events_of(&events, "rate_limited", None).is_empty(),
        "{events:?}"
    );
    let s = summary(&events);
    assert_eq!(s["merged"], json!(["001"]), "{s}");
    assert_eq!(s["backoffs"].as_array().map(Vec::len), Some(1), "{s}");
    // The next attempt waited out the journalled backoff.
    let started = events_of(&events, "started", Some("001"));
    assert_eq!(started[0]["attempt"], 2, "{started:?}");
    let resumed_at = started[0]["at_ms"].as_u64().expect("at_ms");
    let due = limited["at_ms"].as_u64().expect("at_ms") + 1000;
    assert!(
        resumed_at >= due,
        "started at {resumed_at}, backoff until {due}\n{}",
        stderr(&out)
    );
    assert_eq!(server.main_requests().len(), 2);
}
