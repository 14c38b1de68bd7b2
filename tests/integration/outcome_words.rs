//! One word for one outcome: how a spec ended is announced with the word
//! its state, the summary, `status` and the report use — in the live events
//! (human and `--json`), not `failed` for an agent that changed nothing or
//! ran out of time. Run on the defaults (isolation, the start interval).

use crate::common;

use std::process::Output;

use common::{events_of, stderr, stdout, summary_ids, TestRepo};

/// `treefarm <args>` with the configuration users get: the shared test
/// environment's isolation and start-interval overrides removed.
fn tf(repo: &TestRepo, args: &[&str]) -> Output {
    let mut cmd = repo.treefarm();
    cmd.env_remove("TREEFARM_ISOLATION")
        .env_remove("TREEFARM_AGENT_START_INTERVAL")
        .args(args);
    cmd.output().expect("spawn treefarm")
}

fn one_spec(directives: &str) -> TestRepo {
    TestRepo::farm(
        &[("README.md", "hi\n")],
        &[(
            "SPEC-001-x.md",
            common::spec_md("Nothing to do", &["a.txt"], &[], None, directives),
        )],
        "",
    )
}

/// The journalled events of the only run (the same events as `--json`).
fn journal(repo: &TestRepo) -> Vec<serde_json::Value> {
    std::fs::read_to_string(repo.only_run().join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect()
}

/// The words the live event lines of `id` start with (`  001  unchanged …`).
fn live_words<'a>(err: &'a str, id: &str) -> Vec<&'a str> {
    err.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(id)).then(|| words.next()).flatten()
        })
        .collect()
}

#[test]
fn an_unchanged_agent_is_announced_unchanged_not_failed() {
    // The agent exits 0 and changes nothing (a directive that does nothing,
    // so the scripted agent does not fall back to editing files).
    let repo = one_spec("sleep 0");
    let out = tf(&repo, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let words = live_words(&err, "001");
    assert!(words.contains(&"unchanged"), "{err}");
    assert!(!words.contains(&"failed"), "announced failed:\n{err}");
    assert!(
        err.contains("0 failed") && err.contains(", 1 unchanged"),
        "the totals use the same word:\n{err}"
    );

    let events = journal(&repo);
    let unchanged = events_of(&events, "unchanged", Some("001"));
    assert_eq!(unchanged.len(), 1, "{events:?}");
    assert!(unchanged[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("agent.allow_unchanged")));
    assert!(events_of(&events, "failed", Some("001")).is_empty());
    for kept in events_of(&events, "kept", Some("001")) {
        assert_eq!(kept["reason"], "unchanged", "{kept}");
    }
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .cloned()
        .or_else(|| {
            std::fs::read(repo.only_run().join("summary.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
        .expect("a summary");
    assert_eq!(summary_ids(&summary, "unchanged"), ["001"]);
    assert!(summary_ids(&summary, "failed").is_empty());

    // `status`, human and JSON.
    let status = tf(&repo, &["status"]);
    let text = format!("{}{}", stdout(&status), stderr(&status));
    assert!(text.contains("unchanged"), "{text}");
    assert!(!text.contains("failed"), "status says failed:\n{text}");
    assert_eq!(repo.status_json()["instances"][0]["state"], "unchanged");

    // The report: the spec's result and the totals.
    let html_path = repo.tmp.path().join("report.html");
    let report = tf(
        &repo,
        &["report", "--html", html_path.to_str().expect("utf-8 path")],
    );
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(&html_path).expect("report");
    assert!(html.contains("data-result=\"unchanged\""), "{html}");
    assert!(html.contains("data-total=\"unchanged\""));
    assert!(!html.contains("data-total=\"failed\""));
}

#[test]
fn a_timed_out_agent_is_announced_timed_out_not_failed() {
    let repo = one_spec("hang");
    let out = tf(&repo, &["run", "--json", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = common::json_events(&out);
    assert_eq!(events_of(&events, "timed_out", Some("001")).len(), 1);
    assert!(events_of(&events, "failed", Some("001")).is_empty());
    let summary = common::json_summary(&out);
    assert_eq!(summary_ids(&summary, "timed_out"), ["001"]);
    assert!(summary_ids(&summary, "failed").is_empty());
    for kept in events_of(&events, "kept", Some("001")) {
        assert_eq!(kept["reason"], "timed_out", "{kept}");
    }
}
