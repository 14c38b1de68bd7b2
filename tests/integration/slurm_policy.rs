//! Issue 24's "rate limits and budgets work the same on both executors",
//! against the real one-node cluster (`scripts/test-slurm.sh`): the agents
//! run as batch jobs and talk to the scripted model server on loopback (the
//! jobs run on this host), which refuses part of the traffic. The run reads
//! the refusals from the jobs' logs on shared storage as it does from a
//! local agent's: it backs off, retries without counting a failure, and a
//! token budget read from the jobs' usage files stops new submissions;
//! `resume` with a larger budget finishes.

use serde_json::{json, Value};

use crate::common::{events_of, json_events, stderr};
use crate::rate_limits_e2e::{repo, script, USAGE};
use crate::slurm_run::{run as tf, SLURM};
use crate::support::ModelServer;

fn summary(events: &[Value]) -> Value {
    events_of(events, "summary", None)
        .pop()
        .expect("a summary event")
        .clone()
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
        SLURM,
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
    let repo = repo(4, &server, "", &format!("{SLURM}run:\n  max_tokens: 200\n"));
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
