//! `treefarm report` on the demo's run through the real binary: the HTML is
//! well-formed (parsed as XML), has one timeline row per spec, and its bars
//! follow the journalled events; headless Chromium renders it (skipped with a
//! message where Chromium is not installed) into a screenshot that is not
//! blank and shows one row tab per spec.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::stderr;
use serde_json::Value;
use tempfile::TempDir;

/// `treefarm demo --keep` (on the defaults) with its temp folder inside
/// `tmp`; returns the kept repository and the report path the demo printed
/// last.
fn demo(tmp: &TempDir) -> (PathBuf, PathBuf, Output) {
    let (repo, out) = crate::demo_story::demo(tmp, &[]);
    let err = stderr(&out);
    assert!(err.ends_with('\n'), "{err}");
    let last = err.lines().last().expect("demo printed something");
    let report = PathBuf::from(
        last.strip_prefix("report: ")
            .unwrap_or_else(|| panic!("the demo ends with its report path, not {last:?}")),
    );
    assert!(report.is_file(), "{}", report.display());
    (repo, report, out)
}

fn events(report: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(report.with_file_name("events.jsonl")).expect("events");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect()
}

/// The bar kinds the journalled events of `id` imply, in order, with the
/// time each such bar must end at (`None`: ends at a later bar's start).
fn expected_bars(events: &[Value], id: &str) -> Vec<(String, Option<u64>)> {
    let mut bars = Vec::new();
    for e in events.iter().filter(|e| e["id"] == id) {
        let at = e["at_ms"].as_u64().expect("every event has at_ms");
        match e["event"].as_str().expect("event kind") {
            "planted" => {
                bars.push(("waiting".to_string(), None));
                bars.push(("planting".to_string(), None));
            }
            "exited" => {
                let kind = if e["result"] == "succeeded" {
                    "attempt"
                } else {
                    "attempt-failed"
                };
                bars.push((kind.to_string(), Some(at)));
            }
            "committed" => bars.push(("commit".to_string(), Some(at))),
            "merged" => {
                bars.push(("merge-wait".to_string(), None));
                bars.push(("merge".to_string(), Some(at)));
            }
            "conflicted" => {
                bars.push(("merge-wait".to_string(), None));
                bars.push(("conflict".to_string(), Some(at)));
            }
            "refused" => {
                bars.push(("merge-wait".to_string(), None));
                bars.push(("refused".to_string(), Some(at)));
            }
            _ => {}
        }
    }
    bars
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> lacks {name}", node.tag_name().name()))
}

fn has_class(node: roxmltree::Node, class: &str) -> bool {
    node.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|c| c == class))
}

/// Parses the report strictly and checks its timeline against the journal
/// next to it: one row per spec of `state.json`, each row's bars in the order
/// and at the times of its events, the merge order that of the merge
/// outcomes. Returns the spec ids.
fn check_timeline(report: &Path, html: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse_with_options(
        html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"));
    let state: Value = serde_json::from_slice(
        &std::fs::read(report.with_file_name("state.json")).expect("state.json"),
    )
    .expect("state json");
    let spec_ids: Vec<&str> = state["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();

    let timeline = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("timeline"))
        .expect("a #timeline");
    let rows: Vec<_> = timeline
        .descendants()
        .filter(|n| has_class(*n, "row"))
        .collect();
    let mut row_ids: Vec<&str> = rows.iter().map(|r| attr(*r, "data-id")).collect();
    row_ids.sort_unstable();
    let mut want = spec_ids.clone();
    want.sort_unstable();
    assert_eq!(row_ids, want, "one timeline row per spec");

    let events = events(report);
    let mut merge_orders = Vec::new();
    for row in &rows {
        let id = attr(*row, "data-id");
        let bars: Vec<(String, u64, u64)> = row
            .descendants()
            .filter(|n| has_class(*n, "bar"))
            .map(|b| {
                (
                    attr(b, "data-kind").to_string(),
                    attr(b, "data-start").parse().expect("start"),
                    attr(b, "data-end").parse().expect("end"),
                )
            })
            .collect();
        let expected = expected_bars(&events, id);
        let kinds: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(kinds, want, "{id}: bars follow the events");
        for (bar, (kind, end)) in bars.iter().zip(&expected) {
            assert!(bar.1 <= bar.2, "{id}: {kind} starts before it ends");
            if let Some(end) = end {
                assert_eq!(bar.2, *end, "{id}: {kind} ends at its event");
            }
        }
        for pair in bars.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{id}: bars in time order: {bars:?}");
            assert!(pair[0].2 <= pair[1].2 + 1, "{id}: {bars:?}");
        }
        // Planting starts when the plant began (`planted` minus `plant_ms`),
        // not when the spec could have started: the time the start gate held
        // it back is waiting.
        if let Some(planted) = events
            .iter()
            .find(|e| e["id"] == id && e["event"] == "planted")
        {
            let at = planted["at_ms"].as_u64().expect("at_ms");
            let plant_ms = planted["plant_ms"]
                .as_u64()
                .expect("planted says how long the plant took");
            let planting = bars
                .iter()
                .find(|b| b.0 == "planting")
                .expect("a planting bar");
            assert!(
                planting.1 >= at - plant_ms && planting.1 <= at,
                "{id}: planting from {} but the plant began at {}",
                planting.1,
                at - plant_ms
            );
        }
        merge_orders.push((attr(*row, "data-merge-order").to_string(), id));
    }
    // The merge order is the order of the specs' last merge outcomes in
    // the journal (a conflict handed back is followed by a merge).
    let mut outcomes: Vec<&str> = Vec::new();
    for e in events.iter().filter(|e| {
        matches!(
            e["event"].as_str(),
            Some("merged" | "conflicted" | "refused")
        )
    }) {
        let id = e["id"].as_str().expect("id");
        outcomes.retain(|o| *o != id);
        outcomes.push(id);
    }
    let by_order: HashMap<String, &str> = merge_orders.into_iter().collect();
    for (i, id) in outcomes.iter().enumerate() {
        assert_eq!(
            by_order.get(&(i + 1).to_string()),
            Some(id),
            "merge #{}",
            i + 1
        );
    }

    spec_ids.iter().map(|s| s.to_string()).collect()
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse_with_options(
        html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"))
}

#[test]
fn demo_report_is_well_formed_with_one_row_per_spec_and_bars_in_event_order() {
    let tmp = TempDir::new().expect("tmp");
    let (repo, report, _) = demo(&tmp);
    let html = std::fs::read_to_string(&report).expect("read report");
    // Self-contained: nothing is loaded from anywhere.
    for needle in [
        " src=",
        "<link",
        "url(http",
        "@import",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !html.contains(needle),
            "the report loads something: {needle}"
        );
    }
    assert_eq!(check_timeline(&report, &html).len(), 5);
    let doc = parse(&html);
    // The conflict, its hand-back and the scope creep are there: 050
    // conflicted on docs/guide.md, which it changed without declaring it,
    // its agent resolved it, and it merged.
    let section = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("spec-050"))
        .expect("a section for 050");
    assert_eq!(attr(section, "data-result"), "merged");
    // 040 and 050 were freed with 030 by the first batch, and the one-second
    // start interval let them go one by one: that shows as waiting.
    for id in ["040", "050"] {
        let waiting = doc
            .descendants()
            .find(|n| has_class(*n, "row") && n.attribute("data-id") == Some(id))
            .and_then(|r| r.descendants().find(|b| has_class(*b, "bar")))
            .expect("a first bar");
        assert_eq!(attr(waiting, "data-kind"), "waiting");
        assert!(
            attr(waiting, "data-label").contains("for the start gate"),
            "{id}: {}",
            attr(waiting, "data-label")
        );
    }
    let row_050: Vec<String> = doc
        .descendants()
        .find(|n| has_class(*n, "row") && n.attribute("data-id") == Some("050"))
        .expect("row 050")
        .descendants()
        .filter(|n| has_class(*n, "bar"))
        .map(|b| attr(b, "data-kind").to_string())
        .collect();
    assert_eq!(
        row_050,
        [
            "waiting",
            "planting",
            "attempt",
            "commit",
            "merge-wait",
            "conflict",
            "attempt",
            "commit",
            "merge-wait",
            "merge"
        ]
    );
    let undeclared: Vec<&str> = section
        .descendants()
        .filter(|n| has_class(*n, "undeclared"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(undeclared, ["docs/guide.md (undeclared)"]);
    // The overlap graph: five nodes coloured by result, the overlap edge.
    let nodes: Vec<_> = doc
        .descendants()
        .filter(|n| has_class(*n, "node"))
        .collect();
    assert_eq!(nodes.len(), 5);
    assert!(doc
        .descendants()
        .any(|n| has_class(n, "overlap") && n.attribute("data-a") == Some("020")));
    // Relative links into the run directory that exist.
    for a in doc.descendants().filter(|n| n.has_tag_name("a")) {
        let href = attr(a, "href");
        if !href.starts_with('#') {
            assert!(!href.contains("://"), "relative link: {href}");
            assert!(report.with_file_name(href).exists(), "{href}");
        }
    }
    // Totals.
    let total = |key: &str| {
        doc.descendants()
            .find(|n| n.attribute("data-total") == Some(key))
            .and_then(|n| n.descendants().find(|d| d.has_tag_name("b")))
            .and_then(|b| b.text())
            .unwrap_or_else(|| panic!("total {key}"))
            .to_string()
    };
    assert_eq!(total("merged"), "5");
    assert_eq!(total("kept"), "0");
    assert!(total("speedup").ends_with('x'));

    // `treefarm report` rewrites it on demand, elsewhere, with usage.
    std::fs::write(
        report
            .parent()
            .expect("run dir")
            .join("instances/010/usage.json"),
        r#"{"input_tokens": 1200, "output_tokens": 345, "cost_usd": 0.0125, "model": "m-1"}"#,
    )
    .expect("usage");
    let out_file = tmp.path().join("elsewhere.html");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treefarm"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(&repo);
    common::isolated_env(&mut cmd, &tmp.path().join("home"));
    let out = cmd
        .args(["report", "--html"])
        .arg(&out_file)
        .output()
        .expect("report");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("report: {}\n", out_file.display()));
    let again = std::fs::read_to_string(&out_file).expect("read");
    assert!(again.contains("1200 input tokens"), "usage shown");
    assert!(again.contains("$0.0125"));
    assert!(again.contains("file:///"), "absolute links from elsewhere");
}

/// Chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn headless(chromium: &Path, tmp: &Path, extra: &[&str], url: &str) -> Output {
    let profile = TempDir::new_in(tmp).expect("profile dir");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .env("HOME", tmp);
    cmd.output().expect("run chromium")
}

#[test]
fn chromium_renders_the_report_with_one_row_per_spec() {
    let Some(chromium) = chromium() else {
        println!("SKIPPED: chromium is not installed (scripts/install-chromium.sh installs it)");
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let (_, report, _) = demo(&tmp);
    let url = format!("file://{}", report.display());

    // The script ran: it counts the rows it found into data-rows.
    let dom = headless(&chromium, tmp.path(), &["--dump-dom"], &url);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("data-rows=\"5\""),
        "the report's script ran and saw 5 rows: {}\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );

    let shot = tmp.path().join("shot.png");
    let out = headless(
        &chromium,
        tmp.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
        ],
        &url,
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("open png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let (w, h) = (info.width as usize, info.height as usize);
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * channels;
        [buf[i], buf[i + 1], buf[i + 2]]
    };
    // Not blank: many pixels are not the background, in many colours.
    let mut colors = std::collections::HashSet::new();
    let mut inked = 0usize;
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            let p = px(x, y);
            colors.insert(p);
            if p != [255, 255, 255] {
                inked += 1;
            }
        }
    }
    let sampled = (w / 2) * (h / 2);
    assert!(inked * 50 > sampled, "mostly blank: {inked} of {sampled}");
    assert!(colors.len() > 20, "only {} colours", colors.len());

    // Count the row tabs: runs of the tab colour down the column where it
    // first appears.
    let tab = treefarm::report::html::ROW_TAB_COLOR;
    let (tx, _) = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .find(|&(x, y)| px(x, y) == tab)
        .expect("the row tab colour is on screen");
    let x = tx + 2;
    let mut runs = 0;
    let mut inside = false;
    for y in 0..h {
        let on = px(x, y) == tab;
        if on && !inside {
            runs += 1;
        }
        inside = on;
    }
    assert_eq!(runs, 5, "one drawn row per spec");
}

#[test]
fn report_of_a_run_with_a_retry_and_a_refused_merge_follows_its_journal() {
    // 001 fails once, then succeeds on its retry and merges; 002 writes a
    // file the gate refuses.
    let specs = [
        (
            "SPEC-001-retry.md",
            "# Retry\n\n**Files**:\n- `a.txt`\n\n```demo-agent\nfail-once 3\nwrite a.txt a\ncommit \"a\"\n```\n".to_string(),
        ),
        (
            "SPEC-002-refused.md",
            "# Refused\n\n**Files**:\n- `refuse.txt`\n\n```demo-agent\nwrite refuse.txt no\ncommit \"refuse\"\n```\n".to_string(),
        ),
    ];
    let repo = common::TestRepo::farm(
        &[("README.md", "r\n")],
        &specs,
        "  retries: 1\nmerge:\n  gate: test ! -e refuse.txt\n",
    );
    let out = repo.tf(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let report = PathBuf::from(
        err.lines()
            .last()
            .and_then(|l| l.strip_prefix("report: "))
            .unwrap_or_else(|| panic!("run ends with its report path:\n{err}")),
    );
    let html = std::fs::read_to_string(&report).expect("read report");
    assert_eq!(check_timeline(&report, &html), ["001", "002"]);
    let doc = parse(&html);
    let kinds = |id: &str| -> Vec<String> {
        doc.descendants()
            .find(|n| has_class(*n, "row") && n.attribute("data-id") == Some(id))
            .expect("row")
            .descendants()
            .filter(|n| has_class(*n, "bar"))
            .map(|b| attr(b, "data-kind").to_string())
            .collect()
    };
    assert_eq!(
        kinds("001"),
        [
            "waiting",
            "planting",
            "attempt-failed",
            "attempt",
            "commit",
            "merge-wait",
            "merge"
        ]
    );
    assert_eq!(kinds("002").last().map(String::as_str), Some("refused"));
    let section = |id: &str| {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(&format!("spec-{id}")[..]))
            .expect("section")
    };
    assert_eq!(attr(section("002"), "data-result"), "refused");
    let text: String = section("002")
        .descendants()
        .filter_map(|n| n.text())
        .collect();
    assert!(text.contains("gate: refused"), "{text}");
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("a") && n.attribute("href") == Some("instances/002/gate.log")),
        "links the gate log"
    );
    let s1: String = section("001")
        .descendants()
        .filter_map(|n| n.text())
        .collect();
    assert!(
        s1.contains("2 attempt(s)") && s1.contains("gate: passed"),
        "{s1}"
    );
}
