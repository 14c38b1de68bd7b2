//! insta snapshots of what people read: `check`, `plan` and `status` of a
//! finished run. Paths, commit ids, run ids, pids, times and durations are
//! redacted, so a snapshot changes only when the output's shape does
//! (after a deliberate change: `INSTA_UPDATE=always cargo test --test
//! integration cli_snapshots::`, then review the diff).

use crate::common;

use common::{assert_exit, spec_md, stderr, stdout, TestRepo};

/// Two independent specs and one overlapping the first.
fn repo() -> TestRepo {
    TestRepo::farm(
        &[("src/a.rs", "// a\n"), ("docs/b.md", "b\n")],
        &[
            (
                "SPEC-001-alpha.md",
                spec_md("alpha", &["src/a.rs"], &[], Some(1), ""),
            ),
            (
                "SPEC-002-beta.md",
                spec_md("beta", &["docs/b.md"], &[], Some(2), ""),
            ),
            (
                "SPEC-003-gamma.md",
                spec_md("gamma", &["src/a.rs", "src/c.rs"], &[], Some(3), ""),
            ),
        ],
        "",
    )
}

/// Replaces what differs from one machine or run to the next.
fn redact(repo: &TestRepo, text: &str) -> String {
    let tmp = repo
        .tmp
        .path()
        .canonicalize()
        .expect("canonical temp dir")
        .display()
        .to_string();
    let text = text
        .replace(&tmp, "[TMP]")
        .replace(&repo.tmp.path().display().to_string(), "[TMP]");
    let rules: &[(&str, &str)] = &[
        (r"\b\d{8}-\d{6}-[0-9a-f]{4}\b", "[RUN]"),
        (r"\b[0-9a-f]{7,40}\b", "[COMMIT]"),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "[TIME]"),
        (r"\b\d+(\.\d)?s\b", "[DUR]"),
        (r"\b\d+m\d{2}s\b", "[DUR]"),
        (r"pid \d+", "pid [PID]"),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b", "[SIZE]"),
        // Column widths follow the redacted values (a 0.4s or a 12.3s
        // elapsed time): padding is not part of the snapshot.
        (r"  +", "  "),
    ];
    let mut out = text;
    for (pattern, with) in rules {
        out = regex::Regex::new(pattern)
            .expect("redaction pattern")
            .replace_all(&out, *with)
            .into_owned();
    }
    out
}

#[test]
fn check_output() {
    let repo = repo();
    let out = repo.tf(&["check"]);
    let text = format!("{}--- stderr\n{}", stdout(&out), stderr(&out));
    insta::assert_snapshot!("check", redact(&repo, &text));
}

#[test]
fn plan_output() {
    let repo = repo();
    let out = repo.tf(&["plan"]);
    assert_exit(&out, 0);
    let text = format!("{}--- stderr\n{}", stdout(&out), stderr(&out));
    insta::assert_snapshot!("plan", redact(&repo, &text));
}

#[test]
fn status_output_after_a_run() {
    let repo = repo();
    let out = repo.tf(&["run", "-q"]);
    assert_exit(&out, 0);
    let out = repo.tf(&["status"]);
    assert_exit(&out, 0);
    let text = format!("{}--- stderr\n{}", stdout(&out), stderr(&out));
    insta::assert_snapshot!("status", redact(&repo, &text));
}
