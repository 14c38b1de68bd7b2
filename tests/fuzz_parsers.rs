//! Arbitrary input never panics the parsers: only `Ok` or `Err`. The case
//! count is modest by default; set PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use treefarm::config::Config;
use treefarm::spec::parse_spec;

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
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

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
