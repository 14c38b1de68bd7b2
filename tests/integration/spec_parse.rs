//! Parsing spec files: every marker form, front matter, YAML specs, ids,
//! priorities, and what is NOT a declaration (prose, code blocks).

use crate::common;

use std::path::Path;

use common::TestRepo;
use treefarm::spec::{id_from_file_name, id_key, load_specs, parse_spec, RawSpec, SpecSet};

fn parse(name: &str, text: &str) -> RawSpec {
    parse_spec(name, text.as_bytes()).unwrap_or_else(|e| panic!("{name} should parse: {e}"))
}

fn files(raw: &RawSpec) -> Vec<&str> {
    raw.files.iter().map(|d| d.value.as_str()).collect()
}

fn load(files: &[(&str, &str)]) -> (TestRepo, SpecSet) {
    let repo = TestRepo::with_files(files);
    let set = load_specs(&repo.root, Path::new("specs"))
        .unwrap_or_else(|e| panic!("specs should load: {e}"));
    (repo, set)
}

#[test]
fn id_key_normalises_prefix_zeros_and_case() {
    for s in ["20", "020", "SPEC-020", "spec-20", " Spec-0020 "] {
        assert_eq!(id_key(s), "20", "{s}");
    }
    assert_eq!(id_key("000"), "0");
    assert_eq!(id_key("SPEC-Auth"), "auth");
    assert_eq!(id_key("010a"), "010a");
}

#[test]
fn id_from_file_name_takes_text_between_spec_and_dash() {
    assert_eq!(
        id_from_file_name("SPEC-020-retry.md").as_deref(),
        Some("020")
    );
    assert_eq!(id_from_file_name("specs/SPEC-7.md").as_deref(), Some("7"));
    assert_eq!(id_from_file_name("SPEC-031-x.yaml").as_deref(), Some("031"));
    assert_eq!(id_from_file_name("retry.yml").as_deref(), Some("retry"));
    assert_eq!(id_from_file_name("SPEC-.md"), None);
}

#[test]
fn file_marker_inline_backticked() {
    let raw = parse(
        "specs/SPEC-020-a.md",
        "# A\n\n**File**: `src/http/retry.rs`\n",
    );
    assert_eq!(files(&raw), ["src/http/retry.rs"]);
    assert_eq!(raw.files[0].line, 3);
    assert_eq!(raw.id, "020");
    assert_eq!(raw.title, "A");
}

#[test]
fn files_marker_list_backticked_bare_and_comments() {
    let text = "\
# T
**Files**:
- `src/http/client.rs`
- src/http/**
* `tests/a.rs` — the test
+ `docs/x-y.v2.md` (new)

Then prose with `src/not_declared.rs`.
- src/after_prose.rs
";
    let raw = parse("SPEC-1-a.md", text);
    assert_eq!(
        files(&raw),
        [
            "src/http/client.rs",
            "src/http/**",
            "tests/a.rs",
            "docs/x-y.v2.md"
        ]
    );
    assert_eq!(
        raw.files.iter().map(|d| d.line).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
}

#[test]
fn files_to_create_modify_variants_and_colon_inside_bold() {
    let text = "\
**Files to Create/Modify**:
- `a.rs`
**Files to Modify**:
- b.rs
**files to create**:
- `c.rs`
**Files:**
- d.rs
**FILE:** `e.rs`, `f.rs`
**Files**: g.rs, h.rs
";
    let raw = parse("SPEC-1-a.md", text);
    assert_eq!(
        files(&raw),
        ["a.rs", "b.rs", "c.rs", "d.rs", "e.rs", "f.rs", "g.rs", "h.rs"]
    );
}

#[test]
fn bold_without_colon_is_not_a_marker() {
    let raw = parse_spec("SPEC-1-a.md", b"**Files** are listed below\n- `a.rs`\n");
    assert!(raw.is_err(), "no marker, no files: {raw:?}");
}

#[test]
fn prose_paths_are_not_declarations() {
    let text = "# T\n\nEdit src/main.rs and `src/lib.rs` please.\n\n**File**: `src/x.rs`\n";
    assert_eq!(files(&parse("SPEC-1-a.md", text)), ["src/x.rs"]);
}

#[test]
fn code_block_paths_and_markers_are_not_declarations() {
    let text = "\
# T
```markdown
**Files**:
- `src/in_fence.rs`
**File**: `src/in_fence2.rs`
```
~~~~
**File**: `src/tilde.rs`
~~~~
**File**: `src/real.rs`
";
    assert_eq!(files(&parse("SPEC-1-a.md", text)), ["src/real.rs"]);
}

#[test]
fn nested_bullets_are_comments() {
    let text = "**Files**:\n- `a.rs`\n  - explains a\n  more text\n- `b.rs`\n";
    assert_eq!(files(&parse("SPEC-1-a.md", text)), ["a.rs", "b.rs"]);
}

#[test]
fn depends_on_and_priority_markers() {
    let text = "**File**: `a.rs`\n**Depends on**: SPEC-012, SPEC-013\n**Priority**: 7\n";
    let raw = parse("SPEC-020-a.md", text);
    let deps: Vec<_> = raw.depends_on.iter().map(|d| d.value.as_str()).collect();
    assert_eq!(deps, ["SPEC-012", "SPEC-013"]);
    assert_eq!(raw.priority, Some(7));
}

#[test]
fn front_matter_fields_and_markers_combine() {
    let text = "\
---
id: '020'
title: Retry
priority: 5
files: [src/a.rs, ./src/b.rs]
shared: [Cargo.lock]
depends_on: [12]
---
# Heading is not the title
**Files**:
- `src/b.rs`
- src/c/
";
    let raw = parse("specs/SPEC-999-x.md", text);
    assert_eq!(raw.id, "020");
    assert_eq!(raw.title, "Retry");
    assert_eq!(raw.priority, Some(5));
    assert_eq!(files(&raw), ["src/a.rs", "src/b.rs", "src/c/**"]);
    assert_eq!(raw.shared[0].value, "Cargo.lock");
    assert_eq!(raw.depends_on[0].value, "12");
    assert!(
        raw.body.starts_with("# Heading"),
        "body without front matter: {:?}",
        raw.body
    );
    // `files:` is on line 5 of the file.
    assert_eq!(raw.files[0].line, 5);
    assert_eq!(raw.files[2].line, 12);
}

#[test]
fn numeric_id_keeps_leading_zeros_and_spec_prefix_is_dropped() {
    let raw = parse("SPEC-x.md", "---\nid: 020\nfiles: [a]\n---\n");
    assert_eq!(raw.id, "020");
    let raw = parse("x.yaml", "id: SPEC-031\nfiles: [a]\n");
    assert_eq!(raw.id, "031");
}

#[test]
fn yaml_spec_with_body_and_default_id() {
    let text = "title: Y\nfiles:\n  - src/y.rs\ndepends_on: [SPEC-001]\nbody: |\n  do it\n";
    let raw = parse("specs/SPEC-044-y.yaml", text);
    assert_eq!(raw.id, "044");
    assert_eq!(raw.title, "Y");
    assert_eq!(files(&raw), ["src/y.rs"]);
    assert_eq!(raw.files[0].line, 3);
    assert_eq!(raw.body, "do it\n");
    let raw = parse("specs/plain.yml", "files: a.rs\ninstructions: go\n");
    assert_eq!(raw.id, "plain");
    assert_eq!(raw.body, "go");
    assert_eq!(files(&raw), ["a.rs"]);
}

#[test]
fn title_falls_back_to_heading_then_id() {
    assert_eq!(
        parse("SPEC-3-a.md", "**File**: `a`\n# Late\n").title,
        "Late"
    );
    assert_eq!(parse("SPEC-3-a.md", "**File**: `a`\n").title, "3");
}

#[test]
fn paths_normalise_dot_slash_and_inner_dotdot() {
    let raw = parse(
        "SPEC-1-a.md",
        "**Files**:\n- ./src//a.rs\n- src/x/../b.rs\n- docs/\n",
    );
    assert_eq!(files(&raw), ["src/a.rs", "src/b.rs", "docs/**"]);
}

#[test]
fn crlf_and_bom_are_accepted() {
    let text = "\u{feff}---\r\ntitle: W\r\n---\r\n**Files**:\r\n- `a.rs`\r\n";
    let raw = parse("SPEC-5-w.md", text);
    assert_eq!(raw.title, "W");
    assert_eq!(files(&raw), ["a.rs"]);
    assert_eq!(raw.files[0].line, 5);
}

#[test]
fn load_ignores_non_spec_files_and_sorts_by_priority() {
    let (_repo, set) = load(&[
        ("specs/README.md", "# not a spec, no files\n"),
        ("specs/notes.txt", "nothing"),
        ("specs/SPEC-020-b.md", "**File**: `b.rs`\n"),
        (
            "specs/SPEC-003-a.md",
            "**File**: `a.rs`\n**Priority**: 50\n",
        ),
        ("specs/SPEC-alpha-c.md", "**File**: `c.rs`\n"),
        ("specs/SPEC-beta-d.md", "**File**: `d.rs`\n"),
        ("specs/task.yaml", "files: [e.rs]\npriority: 1\n"),
    ]);
    let ids: Vec<_> = set.specs.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["task", "020", "003", "alpha", "beta"]);
    let alpha = set.get("alpha").expect("alpha");
    assert_eq!(alpha.priority, 1_000_000 + alpha.order as i64);
    assert_eq!(set.get("SPEC-20").expect("20").priority, 20);
    assert_eq!(set.get("020").expect("020").rel_path, "specs/SPEC-020-b.md");
    assert!(set.get("020").expect("020").path.is_absolute());
}

#[test]
fn dependencies_resolve_to_real_ids() {
    let (_repo, set) = load(&[
        ("specs/SPEC-012-a.md", "**File**: `a.rs`\n"),
        ("specs/SPEC-013-b.md", "**File**: `b.rs`\n"),
        (
            "specs/SPEC-020-c.md",
            "**File**: `c.rs`\n**Depends on**: 12, SPEC-013-b.md\n",
        ),
    ]);
    assert_eq!(set.get("20").expect("20").depends_on, ["012", "013"]);
}

#[test]
fn select_matches_any_id_form_dedups_and_sorts() {
    let (_repo, set) = load(&[
        ("specs/SPEC-010-a.md", "**File**: `a.rs`\n"),
        ("specs/SPEC-020-b.md", "**File**: `b.rs`\n"),
        ("specs/SPEC-030-c.md", "**File**: `c.rs`\n"),
    ]);
    let ids = |v: Vec<&treefarm::spec::Spec>| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let all = set.select(&[]).expect("all");
    assert_eq!(ids(all), ["010", "020", "030"]);
    let some = set
        .select(&["SPEC-030".into(), "10".into(), "010".into()])
        .expect("some");
    assert_eq!(ids(some), ["010", "030"]);
    let err = set.select(&["99".into()]).expect_err("unknown");
    let input: treefarm::InputError = err.into();
    assert!(input.message.contains("`99`"), "{input}");
    assert!(
        input
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("010, 020, 030"),
        "{input}"
    );
}

#[test]
fn the_crate_example_specs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = load_specs(root, Path::new("specs")).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = set.specs.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["010", "020", "030", "040", "050"]);
    let readme_users: Vec<_> = set
        .specs
        .iter()
        .filter(|s| s.files.iter().any(|f| f == "README.md"))
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        readme_users,
        ["020", "030"],
        "exactly one deliberate overlap pair"
    );
    assert_eq!(set.get("040").expect("040").depends_on, ["010"]);
    assert_eq!(set.get("050").expect("050").depends_on, ["020"]);
    assert_eq!(set.get("010").expect("010").shared, ["Cargo.lock"]);
    for spec in &set.specs {
        assert!(
            spec.body.contains("```demo-agent") || spec.body.contains("  ```demo-agent"),
            "{} has demo-agent instructions",
            spec.id
        );
    }
}

/// Issue 10, point 6: `# SPEC-<id>: Title` and `# <id>: Title` give `Title`.
#[test]
fn heading_with_the_spec_id_gives_the_title_after_it() {
    let title = |name: &str, text: &str| parse(name, text).title;
    assert_eq!(
        title("SPEC-501-x.md", "# SPEC-501: Add X\n**File**: `a.rs`\n"),
        "Add X"
    );
    assert_eq!(
        title("SPEC-501-x.md", "# 501: Add X\n**File**: `a.rs`\n"),
        "Add X"
    );
    assert_eq!(
        title("SPEC-501-x.md", "# spec-0501: Add X\n**File**: `a.rs`\n"),
        "Add X"
    );
    // Another colon in a title stays.
    assert_eq!(
        title("SPEC-501-x.md", "# Retry: backoff\n**File**: `a.rs`\n"),
        "Retry: backoff"
    );
    assert_eq!(
        title(
            "SPEC-501-x.md",
            "---\ntitle: 'SPEC-501: From front matter'\n---\n**File**: `a.rs`\n"
        ),
        "From front matter"
    );
}

/// Issue 9, point 3: `**Depends on**:` takes the ids and ignores the prose.
#[test]
fn depends_on_takes_ids_out_of_prose() {
    let deps = |text: &str| -> Vec<String> {
        parse(
            "SPEC-050-x.md",
            &format!("**File**: `a.rs`\n**Depends on**: {text}\n"),
        )
        .depends_on
        .into_iter()
        .map(|d| d.value)
        .collect()
    };
    assert_eq!(deps("US-035 must be complete first"), ["US-035"]);
    assert_eq!(
        deps("SPEC-003 (retry policy) and 011, once merged"),
        ["SPEC-003", "011"]
    );
    assert_eq!(deps("[SPEC-021](SPEC-021-yaml.yaml)"), ["SPEC-021"]);
    assert_eq!(deps("None"), Vec::<String>::new());
    assert_eq!(deps("Phase 2 of the rollout, SPEC-012"), ["SPEC-012"]);
    assert_eq!(deps("spec 12 and 13"), ["12", "13"]);
}

/// Issue 9, point 2: labels as people write them; references never count.
#[test]
fn bold_labels_as_people_write_them() {
    let text = "\
**Files Modified**: `a.rs`
**Key Files**:
- `b.rs`
**File Location**: `c/`
- **Target File**: `d.rs`
**Related Files**:
- `not1.rs`
**See also**: `not2.rs`
**Status**: `not3.rs`
**Files Affected:** `e.rs`
";
    let raw = parse("SPEC-1-a.md", text);
    assert_eq!(files(&raw), ["a.rs", "b.rs", "c/**", "d.rs", "e.rs"]);
    let markers: Vec<&str> = raw.files.iter().map(|d| d.marker.as_str()).collect();
    assert_eq!(
        markers,
        [
            "Files Modified",
            "Key Files",
            "File Location",
            "Target File",
            "Files Affected"
        ]
    );
    let mentioned: Vec<&str> = raw.mentions.iter().map(|m| m.value.as_str()).collect();
    assert_eq!(mentioned, ["not1.rs", "not2.rs", "not3.rs"]);
}
