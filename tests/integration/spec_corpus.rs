//! A messy, realistic spec corpus (tests/fixtures/corpus: bold labels,
//! headings, annotations, reference lists, code blocks with paths, JSON
//! examples, tables, free-text priorities, foreign dependency ids,
//! duplicates, a directory spec, a template, a `.backup` file, team markers
//! in treefarm.yaml) read through `check --json` and `check --explain`: the
//! declared files of every spec are spelled out here.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{assert_exit, stderr, stdout, stdout_json, TestRepo};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy fixture");
        }
    }
}

/// The corpus in a fresh repository, plus one spec naming an absolute path
/// inside that repository (it cannot live in the fixture).
fn corpus() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("src/exec/pool.py", "# pool\n"),
        ("tests/exec/test_pool.py", "# t\n"),
    ]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    copy_dir(&fixture, &repo.root);
    let root = repo.root.canonicalize().expect("canonical root");
    repo.write(
        "specs/SPEC-035-absolute-inside.md",
        &format!(
            "# Absolute inside\n\n**File**: `{}/src/inside.rs`\n",
            root.display()
        ),
    );
    repo.commit_all("corpus");
    repo
}

/// What every valid spec declares, in declaration order.
fn expected() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        ("001", vec!["src/cli/main.rs"]),
        (
            "002",
            vec![
                "src/coord/runner.py",
                "src/coord/main.py",
                "src/coord/helpers.py",
                "src/coord/README.md",
            ],
        ),
        (
            "003",
            vec![
                "src/http/retry.rs",
                "tests/http_retry.rs",
                "src/http/client.rs",
                "src/http/mod.rs",
            ],
        ),
        (
            "004",
            vec![
                "src/exec/pool.py",
                "src/exec/worker.py",
                "tests/exec/test_pool.py",
                "src/exec/**",
            ],
        ),
        (
            "005",
            vec![
                "src/config/load.rs",
                "src/config/watch.rs",
                "src/config/mod.rs",
                "docs/config.md",
            ],
        ),
        ("006", vec!["src/health/mod.rs", "src/health/check.rs"]),
        (
            "007",
            vec![
                "src/parse.rs",
                "src/parser/mod.rs",
                "src/lexer.rs",
                "src/parser/lexer.rs",
            ],
        ),
        ("008", vec!["src/auth/cache.rs"]),
        ("009", vec!["src/metrics/export.rs"]),
        ("010", vec!["src/storage/s3.rs", "src/storage/mod.rs"]),
        ("011", vec!["src/lint.rs"]),
        ("012", vec!["src/stories/us010.rs", "src/stories/mod.rs"]),
        ("013", vec!["src/billing/export.rs"]),
        ("014", vec!["src/http/metrics.rs"]),
        ("015", vec!["src/parser/errors.py"]),
        ("016", vec!["Makefile", "scripts/test.sh"]),
        ("018", vec!["src/log.rs", "tests/log.rs"]),
        ("019", vec!["src/plugins/loader.rs", "src/plugins/api.rs"]),
        ("020", vec!["src/fm/one.rs", "src/fm/two.rs"]),
        ("021", vec!["src/yaml/spec.rs", "src/yaml/**"]),
        ("023", vec!["src/auth/login.rs", "src/auth/oauth.rs"]),
        ("026", vec!["src/http/request_id.rs"]),
        (
            "027",
            vec!["src/cache/lru.rs", "src/cache/mod.rs", "src/cache/stats.rs"],
        ),
        ("028", vec!["docs/guide/setup.md"]),
        ("029", vec!["src/team/style.rs"]),
        ("030", vec!["src/mixed/a.rs", "src/mixed/b.rs"]),
        ("031", vec!["src/bare/x.rs", "src/bare/y.rs"]),
        ("032", vec!["src/plugins/builtin/**"]),
        ("033", vec!["src/after/fm.rs"]),
        ("034", vec!["tests/**/*.py"]),
        ("035", vec!["src/inside.rs"]),
    ])
}

fn messages(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["message"].as_str().expect("message").to_string())
        .collect()
}

#[test]
fn corpus_check_json_declares_exactly_the_expected_files() {
    let repo = corpus();
    let out = repo.tf(&["check", "--json"]);
    // Two specs are invalid: the whole report still comes, and CI fails.
    assert_exit(&out, 2);
    assert_eq!(stderr(&out), "");
    let report = stdout_json(&out);
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dup_files = Vec::new();
    for s in report["specs"].as_array().expect("specs") {
        let id = s["id"].as_str().expect("id").to_string();
        let files: Vec<String> = s["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f.as_str().expect("path").to_string())
            .collect();
        if id == "022" {
            dup_files.push(files);
        } else {
            assert!(got.insert(id.clone(), files).is_none(), "{id} twice");
        }
    }
    let mut want: BTreeMap<String, Vec<String>> = expected()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    // 013 depends on an unknown spec, which `plan` and `run` refuse: so
    // does `check`. What it declares is still read (its explanation).
    let e013 = repo.tf(&["check", "--json", "--explain", "013"]);
    assert_exit(&e013, 2);
    let declared: Vec<String> = stdout_json(&e013)["declared"]
        .as_array()
        .expect("declared")
        .iter()
        .map(|d| d["value"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(Some(&declared), want.get("013"));
    want.remove("013");
    assert_eq!(got, want);
    // Both duplicates are selected (every spec is), so they would share a
    // branch: invalid, as `plan` and `run` say.
    assert!(dup_files.is_empty(), "{dup_files:?}");
    assert!(
        got.len() >= 29,
        "the corpus has at least 29 valid specs: {}",
        got.len()
    );

    // Templates, backups, README.md and other files are not specs.
    let paths = serde_json::to_string(&report).expect("json");
    for ignored in [
        "SPEC-template",
        "SPEC-024-old",
        "specs/README.md",
        "notes.txt",
        "not/a/spec.rs",
    ] {
        assert!(!paths.contains(ignored), "{ignored} was read as a spec");
    }

    let invalid: Vec<&str> = report["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .map(|i| i["path"].as_str().expect("path"))
        .collect();
    let mut invalid = invalid;
    invalid.sort_unstable();
    assert_eq!(
        invalid,
        [
            "specs/SPEC-013-foreign-dependency.md",
            "specs/SPEC-017-absolute-outside.md",
            "specs/SPEC-022-dup-a.md",
            "specs/SPEC-022-dup-b.md",
            "specs/SPEC-025-no-files.md"
        ]
    );
    let errors = &report["errors"];
    assert_eq!(errors[0]["file"], "specs/SPEC-017-absolute-outside.md");
    assert_eq!(errors[0]["line"], 4);
    assert_eq!(errors[0]["level"], "error");
    assert!(errors[0]["hint"].is_string());
    let error_messages = messages(&report, "errors");
    let has_error = |needle: &str| error_messages.iter().any(|w| w.contains(needle));
    assert!(has_error("declares no files"), "{error_messages:?}");
    assert!(has_error("duplicate spec id `022`"), "{error_messages:?}");
    assert!(
        has_error("depends on unknown spec `US-035`"),
        "{error_messages:?}"
    );

    let warnings = messages(&report, "warnings");
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(has("made relative: `src/inside.rs`"), "{warnings:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    // Priorities as people write them; dependencies with prose around them.
    let spec = |id: &str| {
        report["specs"]
            .as_array()
            .expect("specs")
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .expect("spec present")
    };
    assert_eq!(spec("004")["priority"], 2, "High");
    assert_eq!(spec("011")["priority"], 4, "low");
    assert_eq!(spec("012")["priority"], 10, "PRIORITY 10 (US-010)");
    assert_eq!(spec("020")["priority"], 3, "medium");
    assert_eq!(spec("026")["title"], "Add request ids", "id prefix dropped");
    assert_eq!(
        spec("023")["path"],
        "specs/SPEC-023-auth",
        "a directory spec"
    );

    // The overlap report of the valid specs is still computed.
    let overlaps = report["overlaps"].as_array().expect("overlaps");
    assert!(
        overlaps.iter().any(|o| o["a"] == "004" && o["b"] == "034"),
        "{overlaps:?}"
    );
}

fn explain(repo: &TestRepo, id: &str) -> Value {
    let out = repo.tf(&["check", "--json", "--explain", id]);
    assert_exit(&out, 0);
    stdout_json(&out)
}

#[test]
fn explain_traces_every_declared_path_and_every_ignored_mention() {
    let repo = corpus();
    let e = explain(&repo, "008");
    assert_eq!(e["valid"], true);
    assert_eq!(e["declared"].as_array().expect("declared").len(), 1);
    assert_eq!(e["declared"][0]["value"], "src/auth/cache.rs");
    assert_eq!(e["declared"][0]["line"], 4);
    assert_eq!(e["declared"][0]["marker"], "Files");
    assert_eq!(e["declared"][0]["file"], "specs/SPEC-008-references.md");
    let mentioned: Vec<(String, u64, String)> = e["mentioned"]
        .as_array()
        .expect("mentioned")
        .iter()
        .map(|m| {
            (
                m["value"].as_str().expect("v").to_string(),
                m["line"].as_u64().expect("line"),
                m["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    let values: Vec<&str> = mentioned.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        values,
        [
            "src/auth/token.rs",
            "src/auth/session.rs:Session",
            "docs/auth.md",
            "src/auth/legacy.rs",
            "src/auth/old_cache.rs"
        ]
    );
    assert!(
        mentioned.iter().all(|m| m.2.contains("reference")),
        "{mentioned:?}"
    );
    assert_eq!(mentioned[2].1, 11);

    // Code blocks (a JSON example, a fenced marker) never declare.
    let e = explain(&repo, "SPEC-009");
    let reasons: Vec<(&str, &str)> = e["mentioned"]
        .as_array()
        .expect("mentioned")
        .iter()
        .map(|m| {
            (
                m["value"].as_str().expect("v"),
                m["reason"].as_str().expect("r"),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("src/metrics/config.json", "inside a code block"),
            ("src/metrics/other.rs", "inside a code block"),
            ("src/metrics/in_fence.rs", "inside a code block"),
        ]
    );

    // `:Symbol`, spaces and parentheses are not paths.
    let e = explain(&repo, "015");
    assert_eq!(e["mentioned"][0]["value"], "src/parser.py:Parser");
    assert!(e["mentioned"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("code reference"));
    let e = explain(&repo, "016");
    let values: Vec<&str> = e["mentioned"]
        .as_array()
        .expect("m")
        .iter()
        .map(|m| m["value"].as_str().expect("v"))
        .collect();
    assert_eq!(values, ["make test (unit)", "docs/user guide.md"]);

    // A directory spec: each path names the file that declared it.
    let e = explain(&repo, "SPEC-023-auth");
    let declared: Vec<(&str, &str, u64, &str)> = e["declared"]
        .as_array()
        .expect("declared")
        .iter()
        .map(|d| {
            (
                d["value"].as_str().expect("v"),
                d["file"].as_str().expect("f"),
                d["line"].as_u64().expect("l"),
                d["marker"].as_str().expect("m"),
            )
        })
        .collect();
    assert_eq!(
        declared,
        [
            (
                "src/auth/login.rs",
                "specs/SPEC-023-auth/README.md",
                4,
                "Files"
            ),
            (
                "src/auth/oauth.rs",
                "specs/SPEC-023-auth/design.md",
                4,
                "Files to Create"
            ),
        ]
    );

    // Team markers from treefarm.yaml.
    let e = explain(&repo, "029");
    assert_eq!(e["declared"][0]["marker"], "Touches");
    assert_eq!(e["mentioned"][0]["value"], "src/team/history.rs");
}

#[test]
fn explain_for_people_and_for_an_invalid_spec() {
    let repo = corpus();
    let out = repo.tf(&["check", "--explain", "005"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert!(
        text.contains("spec 005 (specs/SPEC-005-heading-lists.md, valid): Config reload"),
        "{text}"
    );
    assert!(
        text.contains(
            "src/config/load.rs      specs/SPEC-005-heading-lists.md:9  by Files to Update"
        ),
        "{text}"
    );
    assert!(
        text.contains("src/config/not_this.rs  line 17  prose, not a marker"),
        "{text}"
    );

    let out = repo.tf(&["check", "--explain", "017"]);
    assert_exit(&out, 2);
    let text = stderr(&out);
    assert!(text.contains("INVALID"), "{text}");
    assert!(
        text.contains(
            "error: specs/SPEC-017-absolute-outside.md:4: absolute path `/etc/app/config.yaml`"
        ),
        "{text}"
    );
}

#[test]
fn selecting_specs_by_id_path_and_stem_and_exit_codes() {
    let repo = corpus();
    let before = repo.footprint();
    let json = |args: &[&str], code: i32| {
        let out = repo.tf(args);
        assert_exit(&out, code);
        stdout_json(&out)
    };
    let ids = |v: &Value| -> Vec<String> {
        v["specs"]
            .as_array()
            .expect("specs")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    };
    // By path from the root, path inside spec_dir, stem, and id forms.
    let v = json(
        &[
            "check",
            "--json",
            "specs/SPEC-022-dup-a.md",
            "SPEC-001-cli-entry",
            "SPEC-003",
            "6",
        ],
        0,
    );
    assert_eq!(ids(&v), ["001", "003", "006", "022"]);
    assert_eq!(v["errors"], serde_json::json!([]));
    // Both files of one id selected would share a branch: `plan` refuses
    // them, and `check` says so too.
    let v = json(
        &[
            "check",
            "--json",
            "specs/SPEC-022-dup-a.md",
            "SPEC-022-dup-b.md",
            "001",
        ],
        2,
    );
    assert_eq!(ids(&v), ["001"]);
    assert_exit(
        &repo.tf(&[
            "plan",
            "specs/SPEC-022-dup-a.md",
            "SPEC-022-dup-b.md",
            "001",
        ]),
        2,
    );

    // An invalid spec that is not selected cannot fail the command.
    let out = repo.tf(&["plan", "001", "003"]);
    assert_exit(&out, 0);
    // A selected invalid spec: exit 2, nothing created.
    let out = repo.tf(&["plan", "001", "017"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("absolute path `/etc/app/config.yaml`"),
        "{}",
        stderr(&out)
    );

    // A duplicated id, once used, is an error listing every file.
    let out = repo.tf(&["check", "022"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("specs/SPEC-022-dup-a.md")
            && err.contains("specs/SPEC-022-dup-b.md")
            && err.contains("by its path"),
        "{err}"
    );

    // An unknown dependency: an error of the spec for check, plan and run.
    let v = json(&["check", "--json", "013"], 2);
    assert_eq!(v["errors"][0]["line"], 3);
    assert_eq!(v["invalid"][0]["id"], "013");
    for cmd in ["plan", "run"] {
        let out = repo.tf(&[cmd, "013", "--agent", "true"][..if cmd == "plan" { 2 } else { 4 }]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("unknown spec `US-035`"),
            "{}",
            stderr(&out)
        );
    }
    // Valid specs overlapping: 3.
    let out = repo.tf(&["check", "004", "034"]);
    assert_exit(&out, 3);
    assert_eq!(repo.footprint(), before, "check/plan/run created something");
}

#[test]
fn spec_include_and_exclude_globs_override_the_defaults() {
    let repo = TestRepo::with_files(&[
        ("specs/auth.spec.md", "# Auth\n\n**File**: `src/auth.rs`\n"),
        ("specs/SPEC-001-a.md", "# A\n\n**File**: `src/a.rs`\n"),
        (
            "specs/SPEC-002-draft.md",
            "# Draft\n\n**File**: `src/d.rs`\n",
        ),
        ("specs/notes.md", "# Notes\n\n**File**: `src/n.rs`\n"),
        (
            "treefarm.yaml",
            "spec:\n  include: ['*.spec.md', 'SPEC-*.md']\n  exclude: ['*-draft.md']\n",
        ),
    ]);
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    let report = stdout_json(&out);
    let ids: Vec<&str> = report["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    // `auth.spec.md` takes its id from the stem; the draft and notes are out.
    assert_eq!(ids, ["001", "auth.spec"]);
}

#[test]
fn a_duplicated_id_named_in_depends_on_is_an_error_of_the_dependent() {
    let repo = TestRepo::with_files(&[
        ("specs/SPEC-001-a.md", "# A\n\n**File**: `src/a.rs`\n"),
        ("specs/SPEC-001-b.md", "# B\n\n**File**: `src/b.rs`\n"),
        (
            "specs/SPEC-002-c.md",
            "# C\n\n**File**: `src/c.rs`\n**Depends on**: SPEC-001\n",
        ),
        ("specs/SPEC-003-d.md", "# D\n\n**File**: `src/d.rs`\n"),
    ]);
    let out = repo.tf(&["check", "--json", "002", "003"]);
    assert_exit(&out, 2);
    let report = stdout_json(&out);
    let errors = messages(&report, "errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("specs/SPEC-002-c.md:4:")
            && errors[0].contains("specs/SPEC-001-a.md")
            && errors[0].contains("specs/SPEC-001-b.md"),
        "{errors:?}"
    );
    assert_eq!(report["invalid"][0]["path"], "specs/SPEC-002-c.md");
    assert_exit(&repo.tf(&["plan", "002", "003"]), 2);
    // Specs not involved still plan.
    assert_exit(&repo.tf(&["plan", "003", "specs/SPEC-001-a.md"]), 0);
}
