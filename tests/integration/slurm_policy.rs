//! Issue 24's "rate limits and budgets work the same on both executors",
//! against the real one-node cluster (`scripts/test-slurm.sh`): the agents
//! run as batch jobs and talk to the scripted model server on loopback (the
//! jobs run on this host), which refuses part of the traffic. The run reads
//! the refusals from the jobs' logs on shared storage as it does from a
//! local agent's: it backs off, retries without counting a failure, and a
//! token budget read from the jobs' usage files stops new submissions;
//! `resume` with a larger budget finishes.

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::common::{events_of, json_events, stderr, TestRepo};
use crate::support::ModelServer;

/// Tokens every scripted answer reports.
const USAGE: (u64, u64) = (101, 7);

/// A small client of the server (the one of `rate_limits_e2e`, trimmed):
/// one request; on an HTTP error it prints what Claude Code prints and
/// exits 1; else it adds the answer's tokens to the usage file, writes and
/// commits its declared file.
const AGENT: &str = r#"
import json, os, subprocess, sys, urllib.error, urllib.request
url = sys.argv[1].rstrip("/") + "/v1/messages"
# With a tool: the server answers (and refuses) only such "main" requests.
body = {"model": "scripted-model", "max_tokens": 64,
        "tools": [{"name": "Write", "description": "write a file", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": open(os.environ["TREEFARM_PROMPT_FILE"]).read()}]}
request = urllib.request.Request(url, data=json.dumps(body).encode(),
    headers={"content-type": "application/json", "x-api-key": "scripted-key",
             "anthropic-version": "2023-06-01"})
try:
    answer = json.load(urllib.request.urlopen(request, timeout=30))
except urllib.error.HTTPError as e:
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
json.dump(usage, open(usage_path, "w"))
path = open(os.environ["TREEFARM_FILES_FILE"]).read().split()[0]
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
open(path, "w").write("written for %s\n" % os.environ["TREEFARM_SPEC_ID"])
subprocess.run(["git", "add", path], check=True)
subprocess.run(["git", "commit", "-q", "-m", os.environ["TREEFARM_SPEC_ID"] + ": change"], check=True)
"#;

/// `n` independent specs whose agent (as a Slurm job: one CPU each, the
/// node has two) asks `server`; `extra` is appended to `treefarm.yaml`.
fn repo(n: usize, server: &ModelServer, agent_extra: &str, extra: &str) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let agent = repo.tmp.path().join("agent.py");
    std::fs::write(&agent, AGENT).expect("agent");
    repo.write(
        "treefarm.yaml",
        &format!(
            "executor: slurm\nslurm: {{cpus: 1, mem: 100M, poll: 1s, exit_grace: 3s}}\n\
             agent:\n  command: \"python3 {} {}\"\n  timeout: 60s\n  retries: 0\n{agent_extra}{extra}",
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

/// `treefarm ARGS` in `repo`, talking to the test cluster.
fn tf(repo: &TestRepo, args: &[&str]) -> Output {
    let mut cmd: Command = repo.treefarm();
    if let Some(conf) = std::env::var_os("SLURM_CONF") {
        cmd.env("SLURM_CONF", conf);
    }
    cmd.args(args).output().expect("spawn treefarm")
}

fn summary(events: &[Value]) -> Value {
    events_of(events, "summary", None)
        .pop()
        .expect("a summary event")
        .clone()
}

fn script(error_every: Value) -> Value {
    json!({
        "steps": [{"text": "done"}],
        "error_every": error_every,
        "usage": {"input_tokens": USAGE.0, "output_tokens": USAGE.1},
    })
}

/// 4 specs as jobs, the server refusing the first of every two requests
/// twice (429 with retry-after, then 529): two rate-limited attempts, each
/// backed off and submitted again as a new job, none counted as a failure;
/// everything merges.
#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn rate_limited_jobs_back_off_and_are_submitted_again_without_a_failure() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let tmp = tempfile::tempdir().expect("tempdir");
    let errors = json!([{"status": 429, "retry_after": 1}, {"status": 529}]);
    let server = ModelServer::start(
        &tmp.path().join("server"),
        &script(json!({"every": 2, "count": 2, "errors": errors})),
    );
    let repo = repo(
        4,
        &server,
        "  rate_limit:\n    max_backoff: 300ms\n    max_waits: 4\n",
        "",
    );
    let out = tf(&repo, &["run", "--json", "--instances", "2"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let s = summary(&events);
    assert_eq!(s["merged"].as_array().map(Vec::len), Some(4), "{s}");
    for kind in ["failed", "timed_out", "pending", "skipped"] {
        assert_eq!(s[kind], json!([]), "{kind}: {s}");
    }
    let limited = events_of(&events, "rate_limited", None);
    let mut kinds: Vec<&str> = limited.iter().filter_map(|e| e["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["overloaded", "too_many_requests"], "{limited:?}");
    for e in &limited {
        assert!(e["backoff_ms"].as_u64().is_some_and(|b| b <= 300), "{e}");
        let id = e["id"].as_str().expect("id");
        let attempt = e["attempt"].as_u64().expect("attempt");
        let exited = events_of(&events, "exited", Some(id));
        assert!(
            exited
                .iter()
                .any(|x| x["attempt"] == e["attempt"] && x["result"] == "rate_limited"),
            "{exited:?}"
        );
        assert!(
            exited
                .iter()
                .any(|x| x["attempt"].as_u64() > Some(attempt) && x["exit_code"] == 0),
            "{id} ran again after its rate-limited attempt {attempt}: {exited:?}"
        );
    }
    // One job per attempt: 4 first attempts and the 2 submitted again.
    assert_eq!(s["slurm"]["jobs"], 6, "{s}");
    assert_eq!(server.main_requests().len(), 4 + 2);
    assert_eq!(s["usage"]["total"]["input_tokens"], 4 * USAGE.0, "{s}");
    let files = repo.git(&["ls-tree", "-r", "--name-only", "roadmap", "out"]);
    assert_eq!(files.lines().count(), 4, "{files}");
}

/// `run.max_tokens` with jobs: the usage the jobs wrote stops new
/// submissions once the budget is reached (exit 1, the rest pending, no job
/// for it); `resume --max-tokens` with a larger one submits the rest and
/// merges, and the spending counts both coordinators.
#[test]
#[ignore = "needs the Slurm cluster: scripts/test-slurm.sh"]
fn a_token_budget_stops_submitting_jobs_and_resume_with_a_larger_one_finishes() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = ModelServer::start(&tmp.path().join("server"), &script(Value::Null));
    let repo = repo(4, &server, "", "run:\n  max_tokens: 200\n");
    let per_spec = USAGE.0 + USAGE.1;

    let out = tf(&repo, &["run", "--json", "--instances", "1"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let reached = events_of(&events, "budget_reached", None);
    assert_eq!(reached.len(), 1, "{events:?}");
    assert_eq!(reached[0]["budget"], "tokens");
    assert_eq!(reached[0]["spent"], (2 * per_spec) as f64);
    let s = summary(&events);
    assert_eq!(s["merged"], json!(["001", "002"]), "{s}");
    assert_eq!(s["pending"], json!(["003", "004"]), "{s}");
    assert_eq!(s["slurm"]["jobs"], 2, "no job for the pending specs: {s}");

    let done = tf(&repo, &["resume", "--json", "--max-tokens", "1000"]);
    assert_eq!(done.status.code(), Some(0), "stderr:\n{}", stderr(&done));
    let s = summary(&json_events(&done));
    assert_eq!(s["pending"], json!([]), "{s}");
    assert_eq!(s["usage"]["total"]["input_tokens"], 4 * USAGE.0, "{s}");
    assert_eq!(server.main_requests().len(), 4);
    let files = repo.git(&["ls-tree", "-r", "--name-only", "roadmap", "out"]);
    assert_eq!(files.lines().count(), 4, "{files}");
}
