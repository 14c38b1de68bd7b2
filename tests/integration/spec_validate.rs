//! Bad specs: every rejected input names the file and line at fault, the
//! offending value, and converts to an `InputError` (exit code 2).

use crate::common;

use std::path::Path;

use common::TestRepo;
use treefarm::spec::{load_specs, parse_spec, parse_spec_with, Level, ParseOptions, SpecError};
use treefarm::{ExitCode, InputError};

/// The full user-facing text (message and hint) of a parse failure.
fn parse_err(name: &str, text: &[u8]) -> String {
    let err = parse_spec(name, text).expect_err("should be rejected");
    InputError::from(err).to_string()
}

/// Loads `specs/` of a fresh repository holding `files`, expecting failure.
fn load_err(files: &[(&str, &str)]) -> String {
    let repo = TestRepo::with_files(files);
    let err = load_specs(&repo.root, Path::new("specs")).expect_err("should be rejected");
    let input = InputError::from(err);
    // Bad specs are bad input: exit code 2 through anyhow.
    let any = anyhow::Error::new(input.clone());
    assert_eq!(treefarm::exit_code_for(&any), ExitCode::BadInput);
    input.to_string()
}

fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "expected `{n}` in:\n{text}");
    }
}

#[test]
fn absolute_path_names_file_and_line() {
    let msg = parse_err(
        "specs/SPEC-020-retry.md",
        b"# Retry\n\n**Files**:\n- `src/a.rs`\n\n\n- `/etc/passwd`\n",
    );
    assert_has(
        &msg,
        &["specs/SPEC-020-retry.md:7: absolute path `/etc/passwd` in files"],
    );
}

#[test]
fn dotdot_escaping_the_repo_is_rejected() {
    let msg = parse_err("specs/SPEC-1-a.md", b"**File**: `../outside.rs`\n");
    assert_has(
        &msg,
        &[
            "specs/SPEC-1-a.md:1:",
            "`../outside.rs`",
            "escapes the repository",
        ],
    );
    let msg = parse_err("specs/SPEC-1-a.md", b"**File**: `a/../../b`\n");
    assert_has(&msg, &["escapes the repository"]);
}

#[test]
fn git_dir_is_rejected() {
    for p in [".git", ".git/config", "sub/.git/hooks/x", "./.git/"] {
        let text = format!("**File**: `{p}`\n");
        let msg = parse_err("specs/SPEC-1-a.md", text.as_bytes());
        assert_has(&msg, &["specs/SPEC-1-a.md:1:", p, "inside `.git`"]);
    }
}

#[test]
fn invalid_glob_is_rejected() {
    let msg = parse_err("specs/SPEC-1-a.md", b"# x\n**Files**:\n- `src/[ab.rs`\n");
    assert_has(
        &msg,
        &["specs/SPEC-1-a.md:3: invalid glob `src/[ab.rs` in files"],
    );
    let msg = parse_err("specs/SPEC-1-a.md", b"---\nfiles:\n  - 'src/{a,b'\n---\n");
    assert_has(&msg, &["specs/SPEC-1-a.md:3: invalid glob"]);
}

#[test]
fn spec_without_files_has_a_hint() {
    let msg = parse_err("specs/SPEC-1-a.md", b"# Nothing declared\nEdit src/a.rs.\n");
    assert_has(
        &msg,
        &[
            "specs/SPEC-1-a.md",
            "declares no files",
            "hint: add a **Files**: list",
        ],
    );
}

#[test]
fn unknown_front_matter_field_names_field_file_and_line() {
    let msg = parse_err(
        "specs/SPEC-1-a.md",
        b"---\ntitle: x\nfiles: [a]\nowner: me\n---\nbody\n",
    );
    assert_has(
        &msg,
        &[
            "specs/SPEC-1-a.md:4: unknown field `owner`",
            "hint: known fields",
        ],
    );
}

#[test]
fn unknown_yaml_spec_field() {
    let msg = parse_err("specs/x.yaml", b"files: [a]\n\nfilez: [b]\n");
    assert_has(&msg, &["specs/x.yaml:3: unknown field `filez`"]);
}

#[test]
fn malformed_front_matter_has_file_line_col_offset_by_the_fence() {
    let msg = parse_err("specs/SPEC-1-a.md", b"---\ntitle: x\nfiles: [a\n---\n");
    // The YAML error is past line 3 of the file (line 2 of the YAML).
    let err = parse_spec("specs/SPEC-1-a.md", b"---\ntitle: x\nfiles: [a\n---\n").expect_err("bad");
    match err {
        SpecError::Yaml { line, column, .. } => {
            assert!(line >= 3, "line {line} must count the opening fence");
            assert!(column > 0);
        }
        other => panic!("expected a yaml error, got {other:?}"),
    }
    assert_has(&msg, &["specs/SPEC-1-a.md:", "malformed front matter"]);

    let msg = parse_err("specs/SPEC-1-a.md", b"---\ntitle: [\n");
    assert_has(
        &msg,
        &["specs/SPEC-1-a.md:1: front matter opened with `---` is never closed"],
    );
}

#[test]
fn malformed_yaml_spec() {
    let msg = parse_err("specs/t.yaml", b"files:\n  - a\n bad: : :\n");
    assert_has(&msg, &["specs/t.yaml:", "malformed yaml spec"]);
    let msg = parse_err("specs/t.yaml", b"- just\n- a list\n");
    assert_has(&msg, &["specs/t.yaml:1:", "malformed yaml spec"]);
}

#[test]
fn non_utf8_names_byte_offset() {
    let mut bytes = b"**File**: `a.rs`\n".to_vec();
    bytes.extend([0xff, 0xfe]);
    let msg = parse_err("specs/SPEC-1-a.md", &bytes);
    assert_has(
        &msg,
        &["specs/SPEC-1-a.md: not valid UTF-8 at byte offset 17"],
    );
}

#[test]
fn bad_priority_names_value_and_line() {
    // Issue 9: an unreadable priority is a warning (the default applies), not
    // an error; `high` is now a word with an order.
    let warning = |text: &[u8]| {
        let parsed = parse_spec_with("specs/SPEC-1-a.md", text, &ParseOptions::default());
        assert!(parsed.is_valid(), "a priority never invalidates a spec");
        assert_eq!(parsed.raw.priority, None);
        let (level, err) = &parsed.problems[0];
        assert_eq!(*level, Level::Warning);
        err.to_string()
    };
    let msg = warning(b"**File**: `a`\n**Priority**: whenever\n");
    assert_has(&msg, &["specs/SPEC-1-a.md:2: invalid priority `whenever`"]);
    let msg = warning(b"---\nfiles: [a]\npriority: soon\n---\n");
    assert_has(&msg, &["specs/SPEC-1-a.md:3: invalid priority `soon`"]);
    let raw = parse_spec("specs/SPEC-1-a.md", b"**File**: `a`\n**Priority**: high\n").expect("ok");
    assert_eq!(raw.priority, Some(2));
}

#[test]
fn bad_id_is_rejected() {
    let msg = parse_err("specs/SPEC-1-a.md", b"---\nid: a/b\nfiles: [a]\n---\n");
    assert_has(&msg, &["specs/SPEC-1-a.md:2: invalid spec id `a/b`"]);
}

#[test]
fn self_dependency_is_rejected() {
    let msg = parse_err(
        "specs/SPEC-020-a.md",
        b"**File**: `a`\n**Depends on**: SPEC-20\n",
    );
    assert_has(
        &msg,
        &["specs/SPEC-020-a.md:2: spec `020` depends on itself"],
    );
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let msg = parse_err(
        "specs/SPEC-1-a.md",
        b"**Files**:\n- /abs\n- ../up\n- .git/x\n",
    );
    assert_has(
        &msg,
        &[
            "3 errors",
            ":2: absolute path",
            ":3: path `../up`",
            ":4: path `.git/x`",
        ],
    );
}

#[test]
fn duplicate_ids_name_both_files() {
    let msg = load_err(&[
        ("specs/SPEC-020-a.md", "**File**: `a`\n"),
        ("specs/SPEC-20-b.md", "**File**: `b`\n"),
    ]);
    assert_has(
        &msg,
        &[
            "duplicate spec id",
            "specs/SPEC-020-a.md",
            "specs/SPEC-20-b.md",
        ],
    );
}

#[test]
fn unknown_dependency_is_named() {
    let msg = load_err(&[(
        "specs/SPEC-020-a.md",
        "**File**: `a`\n\n**Depends on**: SPEC-099\n",
    )]);
    assert_has(
        &msg,
        &[
            "specs/SPEC-020-a.md:3: spec `020` depends on unknown spec `SPEC-099`",
            "known spec ids: 020",
        ],
    );
}

#[test]
fn dependency_cycle_is_printed() {
    let msg = load_err(&[
        (
            "specs/SPEC-020-a.md",
            "**File**: `a`\n**Depends on**: 021\n",
        ),
        (
            "specs/SPEC-021-b.md",
            "---\nfiles: [b]\ndepends_on: ['020']\n---\n",
        ),
    ]);
    assert_has(
        &msg,
        &["specs/SPEC-020-a.md:2: dependency cycle: 020 -> 021 -> 020"],
    );
}

#[test]
fn longer_cycle_and_other_errors_together() {
    let msg = load_err(&[
        ("specs/SPEC-001-a.md", "**File**: `a`\n**Depends on**: 3\n"),
        ("specs/SPEC-002-b.md", "**File**: `b`\n**Depends on**: 1\n"),
        ("specs/SPEC-003-c.md", "**File**: `c`\n**Depends on**: 2\n"),
        ("specs/SPEC-004-d.md", "no files here\n"),
    ]);
    assert_has(
        &msg,
        &[
            "dependency cycle: 001 -> 003 -> 002 -> 001",
            "SPEC-004-d.md",
            "declares no files",
        ],
    );
}

#[test]
fn missing_spec_dir_hints_init() {
    let repo = TestRepo::with_files(&[("README.md", "x")]);
    let err = load_specs(&repo.root, Path::new("docs/architecture/specs")).expect_err("missing");
    let msg = InputError::from(err).to_string();
    assert_has(
        &msg,
        &[
            "spec directory `docs/architecture/specs` does not exist",
            "hint: run `treefarm init`",
        ],
    );
}

#[test]
fn older_layout_and_absolute_spec_dir_work() {
    let repo =
        TestRepo::with_files(&[("docs/architecture/specs/SPEC-001-a.md", "**File**: `a`\n")]);
    let set = load_specs(&repo.root, Path::new("docs/architecture/specs")).expect("loads");
    assert_eq!(
        set.specs[0].rel_path,
        "docs/architecture/specs/SPEC-001-a.md"
    );
    let abs = repo.root.join("docs/architecture/specs");
    let set = load_specs(&repo.root, &abs).expect("loads");
    assert_eq!(
        set.specs[0].rel_path,
        "docs/architecture/specs/SPEC-001-a.md"
    );
}
