//! `check --format dot|mermaid` and `plan --format dot|mermaid` through the
//! real binary: the graph on stdout, exit codes like `check`, and DOT that
//! Graphviz's `dot` accepts (where installed).

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{stderr, stdout, TestRepo};

/// 020 and 022 overlap on src/http/retry.rs; 023 depends on 020; 021 alone.
fn repo() -> TestRepo {
    let repo = TestRepo::with_files(&[("src/http/retry.rs", "// r\n"), ("README.md", "r\n")]);
    repo.write_spec(
        "020",
        "retry",
        "title: Retry \"now\"\nfiles: [src/http/retry.rs]\n",
        "",
    );
    repo.write_spec("021", "docs", "title: Docs\nfiles: [docs/guide.md]\n", "");
    repo.write_spec("022", "http", "title: HTTP\nfiles: [\"src/http/**\"]\n", "");
    repo.write_spec(
        "023",
        "readme",
        "title: Readme\nfiles: [README.md]\ndepends_on: [\"020\"]\n",
        "",
    );
    repo.commit_all("specs");
    repo
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// Renders `dot_text` with Graphviz into SVG; `None` when `dot` is absent.
fn graphviz(dot_text: &str) -> Option<String> {
    if !which("dot") {
        println!(
            "SKIPPED: graphviz `dot` is not installed (scripts/install-chromium.sh installs it)"
        );
        return None;
    }
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dot");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot_text.as_bytes())
        .expect("feed dot");
    let out = child.wait_with_output().expect("dot output");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dot rejected the graph: {}\n{dot_text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_dot_is_the_overlap_graph_and_exits_3_on_overlaps() {
    let repo = repo();
    let out = repo.tf(&["check", "--format", "dot"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.starts_with("graph treefarm {\n"), "{dot}");
    assert!(
        dot.contains("\"020\" -- \"022\" [label=\"src/http/retry.rs\""),
        "{dot}"
    );
    assert!(dot.contains("\"020\" -- \"023\" [dir=forward"), "{dot}");
    assert!(dot.contains("Retry \\\"now\\\""), "{dot}");
    assert!(!dot.contains("cluster"), "check has no waves");
    assert_eq!(stderr(&out), "4 spec(s), 1 overlap(s)\n");
    if let Some(svg) = graphviz(&dot) {
        assert!(svg.contains("<svg"), "{svg}");
        for id in ["020", "021", "022", "023"] {
            assert!(svg.contains(&format!("<title>{id}</title>")), "{id} drawn");
        }
        assert!(svg.contains("src/http/retry.rs"), "edge label drawn");
    }
}

#[test]
fn check_dot_with_an_invalid_spec_graphs_the_valid_ones_and_exits_2() {
    let repo = repo();
    repo.write_spec("024", "bad", "title: Bad\nfiles: [/etc/passwd]\n", "");
    repo.commit_all("an invalid spec");
    let out = repo.tf(&["check", "--format", "mermaid"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let graph = stdout(&out);
    assert!(graph.contains("020") && graph.contains("023"), "{graph}");
    assert!(
        !graph.contains("024"),
        "the invalid spec is not drawn: {graph}"
    );
    assert!(
        err.contains("/etc/passwd"),
        "the diagnostic names the path: {err}"
    );
    assert!(err.contains("4 spec(s), 1 overlap(s)"), "{err}");
    assert!(
        err.contains("1 invalid spec(s) left out of the graph"),
        "{err}"
    );
}

#[test]
fn plan_dot_and_mermaid_show_the_waves() {
    let repo = repo();
    let out = repo.tf(&["plan", "--format", "dot", "--instances", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dot = stdout(&out);
    let json = repo.tf(&["plan", "--json", "--instances", "2"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan json");
    let waves = plan["waves"].as_array().expect("waves");
    for (i, wave) in waves.iter().enumerate() {
        let cluster = format!("subgraph cluster_wave{} {{", i + 1);
        let start = dot
            .find(&cluster)
            .unwrap_or_else(|| panic!("{cluster}\n{dot}"));
        let body = &dot[start..start + dot[start..].find("  }\n").expect("cluster end")];
        for id in wave.as_array().expect("wave") {
            let id = id.as_str().expect("id");
            assert!(
                body.contains(&format!("\"{id}\" [")),
                "{id} in wave {}",
                i + 1
            );
        }
    }
    assert!(
        stderr(&out).starts_with("plan: 4 spec(s) in "),
        "{}",
        stderr(&out)
    );
    if let Some(svg) = graphviz(&dot) {
        assert!(svg.contains("wave 1"), "clusters drawn");
    }

    let out = repo.tf(&["plan", "--format", "mermaid", "--instances", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let m = stdout(&out);
    assert!(m.starts_with("flowchart LR\n"), "{m}");
    assert_eq!(m.matches("  subgraph wave").count(), waves.len(), "{m}");
    assert!(m.contains("---|\"src/http/retry.rs\"|"), "{m}");
    assert!(m.contains("-.->|before|"), "{m}");
    assert!(m.contains("020: Retry #quot;now#quot;"), "{m}");
}

#[test]
fn format_json_is_json_and_conflicts_with_the_json_flag() {
    let repo = repo();
    let a = repo.tf(&["check", "--format", "json"]);
    let b = repo.tf(&["check", "--json"]);
    assert_eq!(stdout(&a), stdout(&b));
    assert_eq!(a.status.code(), Some(3));
    let both = repo.tf(&["check", "--json", "--format", "dot"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let text = repo.tf(&["plan", "--format", "text"]);
    assert!(stdout(&text).is_empty());
    assert!(stderr(&text).contains("WAVE"), "{}", stderr(&text));
}
