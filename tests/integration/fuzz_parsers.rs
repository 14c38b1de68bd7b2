//! Arbitrary input never panics the parsers: only `Ok` or `Err`. The case
//! count is modest by default; set PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use treefarm::config::Config;
use treefarm::spec::{normalize_path, parse_spec, parse_spec_with, ParseOptions};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

/// Spec-shaped text: front matter fences, markers, bullets, fences, YAML bits.
fn spec_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "---\n",
        "...\n",
        "**Files**:\n",
        "**File**: ",
        "**Files:**",
        "**Depends on**: ",
        "**Priority**: ",
        "- ",
        "* ",
        "+ ",
        "  - ",
        "`",
        "```",
        "~~~",
        "\n",
        "\r\n",
        "# ",
        "src/a.rs",
        "../",
        "/",
        ".git/",
        "[",
        "{",
        "}",
        "**",
        "SPEC-",
        "0",
        "id: ",
        "files: ",
        "[a, b]",
        "depends_on: ",
        "priority: ",
        "body: |\n  ",
        "&a ",
        "*a",
        "!tag ",
        ": ",
        "\u{feff}",
        "é",
        "\t",
        // The widened grammar (issue 9).
        "### Files to Update\n",
        "## Affected Files\n",
        "## References\n",
        "### File: ",
        "**Code References**:\n",
        "**Location**: ",
        "**Test File(s)**:",
        "**Implementation Files:**\n",
        "**Files to Move**:\n",
        " -> ",
        " (NEW - 150 lines)",
        " - Main coordinator",
        ":Symbol",
        "| ",
        " |",
        "|---|---|\n",
        "US-035 must be complete first",
        "High",
        "PRIORITY 10 (US-010)",
        "\0",
        " ",
        "/abs/",
        "(",
        ")",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

/// A body line: a list/table/indent prefix, a marker or prose, and maybe
/// one backticked path (never on a heading, priority or dependency line).
fn grammar_line() -> impl Strategy<Value = (String, Option<&'static str>)> {
    let prefix = prop::sample::select(vec!["", "- ", "* ", "  - ", "    ", "1. ", "| "]);
    let label = prop::sample::select(vec![
        "",
        "**Files**: ",
        "**File:** ",
        "**Test File(s)**: ",
        "**Location**: ",
        "**Files to Move**: ",
        "**Code References**: ",
        "**Related**: ",
        "**Note**: ",
        "Prose mentions ",
        "**Files**:",
        "**Documentation**:",
    ]);
    let heading = prop::sample::select(vec![
        "### Files to Update",
        "## Affected Files",
        "## References",
        "## See also",
        "## Notes",
        "```",
        "~~~",
        "",
    ]);
    let path = prop::option::of(prop::sample::select(vec![
        "src/a.rs",
        "b/c.py",
        "x.md",
        "src/",
        "tests/**/*.rs",
        "/abs/x.rs",
        "../up.rs",
        "src/[bad.rs",
        "with space.rs",
        "p.py:Sym",
        ".git/x",
        "a (b).rs",
    ]));
    let tail = prop::sample::select(vec![
        "",
        " (NEW)",
        " - helper",
        ": note",
        " -> `moved/to.rs`",
    ]);
    prop_oneof![
        (prefix, label, path, tail).prop_map(|(p, l, path, t)| match path {
            Some(x) => (format!("{p}{l}`{x}`{t}"), Some(x)),
            None => (format!("{p}{l}{t}"), None),
        }),
        heading.prop_map(|h| (h.to_string(), None)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Every backticked path of a body is declared, reported as mentioned
    /// (with its line and a reason), or an error naming its line; every
    /// declaration remembers its line and marker.
    #[test]
    fn every_path_is_declared_mentioned_or_an_error_with_a_line(
        lines in prop::collection::vec(grammar_line(), 1..30)
    ) {
        let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
        let parsed = parse_spec_with("specs/SPEC-001-x.md", text.as_bytes(), &ParseOptions::default());
        let n = lines.len();
        for d in &parsed.raw.files {
            prop_assert!(d.line >= 1 && d.line <= n, "line {} of {n}: {text}", d.line);
            prop_assert!(!d.marker.is_empty(), "no marker for {}: {text}", d.value);
            prop_assert_eq!(&d.file, "specs/SPEC-001-x.md");
        }
        for m in &parsed.raw.mentions {
            prop_assert!(m.line >= 1 && m.line <= n && !m.reason.is_empty(), "{m:?}");
        }
        for (i, (_, path)) in lines.iter().enumerate() {
            let Some(path) = path else { continue };
            // Backticked text with spaces or parentheses is not a path at all
            // (issue 9); it is reported only where it stood for a declaration.
            let phrase = path.contains([' ', '(']);
            let line = i + 1;
            let declared = normalize_path(path)
                .map(|v| parsed.raw.files.iter().any(|d| d.value == v))
                .unwrap_or(false);
            let mentioned = parsed
                .raw
                .mentions
                .iter()
                .any(|m| m.line == line && m.value == *path);
            let error = parsed
                .problems
                .iter()
                .any(|(_, e)| e.location().1 == Some(line));
            prop_assert!(
                declared || mentioned || error || phrase,
                "line {line} `{path}` is unaccounted for in:\n{text}\nfiles {:?}\nmentions {:?}",
                parsed.raw.files,
                parsed.raw.mentions
            );
        }
    }

    #[test]
    fn parse_spec_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_spec("specs/SPEC-001-x.md", &bytes);
        let _ = parse_spec("specs/x.yaml", &bytes);
    }

    #[test]
    fn parse_spec_never_panics_on_spec_like_text(text in spec_like()) {
        let _ = parse_spec("specs/SPEC-001-x.md", text.as_bytes());
        let _ = parse_spec("specs/SPEC-001-x.yml", text.as_bytes());
    }

    #[test]
    fn config_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Config::parse("treefarm.yaml", &bytes);
    }

    #[test]
    fn config_parse_never_panics_on_yaml_like_text(text in spec_like()) {
        let _ = Config::parse("treefarm.yaml", text.as_bytes());
    }
}
