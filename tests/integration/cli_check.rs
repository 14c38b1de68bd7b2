//! `treefarm check` through the real binary: exit codes, the `--json` shape
//! of DESIGN.md, id selection, every rejected spec (exit 2, file and line,
//! nothing created), glob-aware overlaps and where config comes from.

use crate::common;

use common::{assert_exit, stderr, stdout, stdout_json, TestRepo};
use serde_json::{json, Value};

/// Three specs: 020 and 022 both write `src/http/retry.rs` (022 by glob), 021
/// and 023 are on their own.
fn overlapping_repo() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("src/http/retry.rs", "// retry\n"),
        ("src/a.rs", "// a\n"),
        ("README.md", "readme\n"),
    ]);
    repo.write_spec(
        "020",
        "retry",
        "title: Retry\nfiles:\n  - src/http/retry.rs\n  - src/a.rs\n",
        "Add retries.\n",
    );
    repo.write_spec("021", "docs", "title: Docs\nfiles: [docs/guide.md]\n", "");
    repo.write_spec("022", "http", "title: HTTP\nfiles: [\"src/http/**\"]\n", "");
    repo.write_spec("023", "readme", "title: Readme\nfiles: [README.md]\n", "");
    repo.commit_all("specs");
    repo
}

fn independent_repo() -> TestRepo {
    let repo = TestRepo::with_files(&[("src/a.rs", "// a\n")]);
    repo.write_spec(
        "020",
        "a",
        "title: Alpha\nfiles:\n  - src/a.rs\n  - \"src/http/**\"\n",
        "",
    );
    repo.write(
        "specs/SPEC-021-b.md",
        "# Beta\n\nTouches `src/a.rs` in prose only.\n\n**Files**:\n- `src/b.rs`\n",
    );
    repo.commit_all("specs");
    repo
}

fn ids(json: &Value) -> Vec<&str> {
    json["specs"]
        .as_array()
        .expect("specs is an array")
        .iter()
        .map(|s| s["id"].as_str().expect("id is a string"))
        .collect()
}

#[test]
fn independent_specs_exit_0_with_the_design_json_on_stdout_only() {
    let repo = independent_repo();
    let before = repo.footprint();
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "", "--json writes nothing human to stderr");
    assert_eq!(
        stdout_json(&out),
        json!({
            "independent": true,
            "specs": [
                {"id": "020", "title": "Alpha", "priority": 20,
                 "path": "specs/SPEC-020-a.md", "files": ["src/a.rs", "src/http/**"]},
                {"id": "021", "title": "Beta", "priority": 21,
                 "path": "specs/SPEC-021-b.md", "files": ["src/b.rs"]},
            ],
            "overlaps": [],
            "errors": [],
            "warnings": [],
            "invalid": [],
        })
    );
    assert_eq!(repo.footprint(), before, "check created something");
}

#[test]
fn human_check_writes_to_stderr_only() {
    let repo = independent_repo();
    let out = repo.tf(&["check"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "all 2 specs are independent\n");
}

#[test]
fn overlapping_specs_exit_3_with_pair_paths_and_reason() {
    let repo = overlapping_repo();
    let before = repo.footprint();
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 3);
    assert_eq!(stderr(&out), "");
    let json = stdout_json(&out);
    assert_eq!(json["independent"], false);
    assert_eq!(ids(&json), ["020", "021", "022", "023"]);
    let overlaps = json["overlaps"].as_array().expect("overlaps array");
    assert_eq!(overlaps.len(), 1, "{json:#}");
    let o = &overlaps[0];
    assert_eq!(
        (o["a"].as_str(), o["b"].as_str()),
        (Some("020"), Some("022"))
    );
    assert_eq!(o["paths"], json!(["src/http/retry.rs"]));
    let reason = o["reason"].as_str().expect("reason is a string");
    assert!(
        reason.contains("src/http/**") && reason.contains("src/http/retry.rs"),
        "{reason}"
    );
    assert_eq!(repo.footprint(), before, "check created something");

    let human = repo.tf(&["check"]);
    assert_exit(&human, 3);
    assert_eq!(stdout(&human), "");
    let text = stderr(&human);
    assert!(text.contains("020") && text.contains("022"), "{text}");
    assert!(text.contains("src/http/retry.rs"), "{text}");
    assert!(text.ends_with("4 specs, 1 overlap\n"), "{text}");
}

#[test]
fn ids_match_with_or_without_prefix_and_leading_zeros() {
    let repo = overlapping_repo();
    for arg in ["20", "020", "SPEC-020"] {
        let out = repo.tf(&["check", "--json", arg]);
        assert_exit(&out, 0);
        assert_eq!(ids(&stdout_json(&out)), ["020"], "selected by `{arg}`");
    }
    // Leaving 022 out leaves nothing to overlap with.
    let out = repo.tf(&["check", "--json", "SPEC-020", "21", "0023"]);
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(ids(&json), ["020", "021", "023"]);
    assert_eq!(json["independent"], true);
    // Selecting both sides of the overlap finds it again.
    let out = repo.tf(&["check", "--json", "22", "20"]);
    assert_exit(&out, 3);
}

#[test]
fn unknown_id_exits_2_naming_it() {
    let repo = overlapping_repo();
    let before = repo.footprint();
    let out = repo.tf(&["check", "20", "SPEC-099"]);
    assert_exit(&out, 2);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains("`SPEC-099`"), "{err}");
    assert!(!err.contains("`20`"), "the known id is not blamed: {err}");
    assert_eq!(repo.footprint(), before);
}

/// A rejected spec set: the files to write (in a repository with one commit)
/// and what stderr must contain.
struct BadInput {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    expect: Vec<&'static str>,
}

fn bad(name: &'static str, files: &[(&'static str, &[u8])], expect: &[&'static str]) -> BadInput {
    BadInput {
        name,
        files: files.iter().map(|(p, c)| (*p, c.to_vec())).collect(),
        expect: expect.to_vec(),
    }
}

fn bad_inputs() -> Vec<BadInput> {
    const OK: (&str, &[u8]) = ("specs/SPEC-001-ok.md", b"# Ok\n\n**File**: `src/ok.rs`\n");
    vec![
        bad(
            "absolute path",
            &[
                OK,
                (
                    "specs/SPEC-002-abs.md",
                    b"---\ntitle: Abs\nfiles:\n  - src/b.rs\n  - /etc/passwd\n---\n",
                ),
            ],
            &["specs/SPEC-002-abs.md:5:", "absolute path `/etc/passwd`"],
        ),
        bad(
            "`..` escaping the repository",
            &[
                OK,
                (
                    "specs/SPEC-002-up.md",
                    b"# Up\n\n**Files**:\n- `src/b.rs`\n- `src/../../outside.rs`\n",
                ),
            ],
            &[
                "specs/SPEC-002-up.md:5:",
                "`src/../../outside.rs`",
                "escapes the repository",
            ],
        ),
        bad(
            "path under .git",
            &[
                OK,
                (
                    "specs/SPEC-002-git.md",
                    b"---\nfiles: [.git/hooks/pre-commit]\n---\n",
                ),
            ],
            &[
                "specs/SPEC-002-git.md:2:",
                "`.git/hooks/pre-commit`",
                "`.git`",
            ],
        ),
        bad(
            "invalid glob",
            &[
                OK,
                (
                    "specs/SPEC-002-glob.md",
                    b"# Glob\n\n**File**: `src/[ab.rs`\n",
                ),
            ],
            &["specs/SPEC-002-glob.md:3:", "invalid glob `src/[ab.rs`"],
        ),
        bad(
            "no declared files",
            &[
                OK,
                (
                    "specs/SPEC-002-empty.md",
                    b"# Empty\n\nMentions `src/a.rs` in prose, declares nothing.\n",
                ),
            ],
            &["specs/SPEC-002-empty.md", "declares no files"],
        ),
        bad(
            "duplicate ids",
            &[
                OK,
                (
                    "specs/SPEC-002-x.md",
                    b"---\nid: \"001\"\nfiles: [b.rs]\n---\n",
                ),
                ("specs/SPEC-003-z.md", b"# Z\n\n**File**: `src/z.rs`\n"),
            ],
            &[
                "duplicate spec id `001`",
                "specs/SPEC-001-ok.md",
                "specs/SPEC-002-x.md",
            ],
        ),
        bad(
            "unknown dependency",
            &[
                OK,
                (
                    "specs/SPEC-002-dep.md",
                    b"# Dep\n\n**File**: `b.rs`\n**Depends on**: SPEC-001, SPEC-042\n",
                ),
            ],
            &["specs/SPEC-002-dep.md:4:", "unknown spec `SPEC-042`"],
        ),
        bad(
            "dependency on an invalid spec",
            &[
                OK,
                (
                    "specs/SPEC-002-dep.md",
                    b"# Dep\n\n**File**: `b.rs`\n**Depends on**: SPEC-003\n",
                ),
                ("specs/SPEC-003-nofiles.md", b"# No files\n"),
            ],
            &[
                "specs/SPEC-002-dep.md:4:",
                "depends on `003`, which is invalid (specs/SPEC-003-nofiles.md)",
                "specs/SPEC-003-nofiles.md: spec `003` declares no files",
            ],
        ),
        bad(
            "dependency on a duplicated id",
            &[
                OK,
                (
                    "specs/SPEC-002-dep.md",
                    b"# Dep\n\n**File**: `b.rs`\n**Depends on**: SPEC-003\n",
                ),
                ("specs/SPEC-003-a.md", b"# A\n\n**File**: `c.rs`\n"),
                ("specs/SPEC-003-b.md", b"# B\n\n**File**: `d.rs`\n"),
            ],
            &[
                "specs/SPEC-002-dep.md:4:",
                "spec id `SPEC-003` is used by 2",
            ],
        ),
        bad(
            "self dependency",
            &[
                OK,
                (
                    "specs/SPEC-002-self.md",
                    b"# Self\n\n**File**: `b.rs`\n**Depends on**: SPEC-002\n",
                ),
            ],
            &["specs/SPEC-002-self.md:4:", "depends on itself"],
        ),
        bad(
            "dependency cycle",
            &[
                (
                    "specs/SPEC-001-a.md",
                    b"---\nfiles: [a.rs]\ndepends_on: [SPEC-003]\n---\n",
                ),
                (
                    "specs/SPEC-002-b.md",
                    b"---\nfiles: [b.rs]\ndepends_on: [\"1\"]\n---\n",
                ),
                (
                    "specs/SPEC-003-c.md",
                    b"---\nfiles: [c.rs]\ndepends_on: [\"002\"]\n---\n",
                ),
            ],
            &[
                "specs/SPEC-001-a.md:3:",
                "cycle",
                "001 -> 003 -> 002 -> 001",
            ],
        ),
        bad(
            "malformed front matter",
            &[
                OK,
                (
                    "specs/SPEC-002-yaml.md",
                    b"---\ntitle: Broken\nfiles: [a.rs\n---\nbody\n",
                ),
            ],
            &["specs/SPEC-002-yaml.md:", "malformed front matter"],
        ),
        bad(
            "front matter never closed",
            &[
                OK,
                ("specs/SPEC-002-open.md", b"---\nfiles: [a.rs]\n\nbody\n"),
            ],
            &["specs/SPEC-002-open.md:1:", "never closed"],
        ),
        bad(
            "unknown front matter field",
            &[
                OK,
                (
                    "specs/SPEC-002-field.md",
                    b"---\nfiles: [a.rs]\nfilez: [b.rs]\n---\n",
                ),
            ],
            &["specs/SPEC-002-field.md:3:", "unknown field `filez`"],
        ),
        bad(
            "malformed yaml spec",
            &[OK, ("specs/SPEC-002-y.yaml", b"title: Y\nfiles: {a.rs\n")],
            &["specs/SPEC-002-y.yaml:", "malformed yaml spec"],
        ),
        bad(
            "not UTF-8",
            &[
                OK,
                (
                    "specs/SPEC-002-bin.md",
                    b"# Bin\n\n**File**: `b.rs`\n\xff\xfe\n",
                ),
            ],
            &["specs/SPEC-002-bin.md", "not valid UTF-8", "line 4"],
        ),
    ]
}

/// Every rejected spec set makes `plan` and `run` exit 2 with a message
/// naming the file (and line), and none of them creates anything. `check`
/// (issue 9) reports the same problems per spec without blocking the valid
/// ones, as errors (exit 2): a check that passes means `plan` and `run`
/// accept the specs (issue 21: an unknown dependency, a dependency on an
/// invalid spec, a duplicated id in use were warnings for `check` only);
/// with `--json` they are under `"errors"` on stdout.
#[test]
fn bad_specs_exit_2_naming_file_and_line_and_create_nothing() {
    for case in bad_inputs() {
        let repo = TestRepo::with_files(&[("src/ok.rs", "// ok\n")]);
        for (path, contents) in &case.files {
            let full = repo.root.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, contents).expect("write spec");
        }
        repo.commit_all("specs");
        let before = repo.footprint();
        for args in [&["plan"][..], &["run", "--agent", "true"], &["check"]] {
            let out = repo.tf(args);
            assert_exit(&out, 2);
            assert_eq!(stdout(&out), "", "{}: {args:?}", case.name);
            let err = stderr(&out);
            for fragment in &case.expect {
                assert!(
                    err.contains(fragment),
                    "{}: {args:?}: stderr lacks {fragment:?}:\n{err}",
                    case.name
                );
            }
            assert_eq!(
                repo.footprint(),
                before,
                "{}: {args:?} created something",
                case.name
            );
        }
        let out = repo.tf(&["check", "--json"]);
        assert_exit(&out, 2);
        assert_eq!(stderr(&out), "", "{}: --json is quiet on stderr", case.name);
        let report = stdout_json(&out);
        let listed = serde_json::to_string(&report["errors"]).expect("json");
        for fragment in &case.expect {
            let fragment = serde_json::to_string(fragment).expect("json");
            let fragment = fragment.trim_matches('"');
            assert!(
                listed.contains(fragment),
                "{}: errors lack {fragment:?}: {listed}",
                case.name
            );
        }
        let valid = match case.name {
            "dependency cycle" => None,
            "duplicate ids" => Some("003"),
            _ => Some("001"),
        };
        if let Some(valid) = valid {
            assert!(
                ids(&report).contains(&valid),
                "{}: the valid spec is still checked: {report}",
                case.name
            );
        }
        // `check` and `plan` agree on every selection: each spec alone
        // (by path) and the valid one alone.
        for (path, _) in &case.files {
            let check = repo.tf(&["check", path]);
            let plan = repo.tf(&["plan", path]);
            assert_eq!(
                check.status.code(),
                plan.status.code(),
                "{}: check and plan of {path} disagree:\n{}\n{}",
                case.name,
                stderr(&check),
                stderr(&plan)
            );
        }
        if let Some(valid) = valid {
            assert_exit(&repo.tf(&["check", valid]), 0);
            assert_exit(&repo.tf(&["plan", valid]), 0);
        }
        assert_eq!(repo.footprint(), before, "{}: check --json", case.name);
    }
}

#[test]
fn globs_overlap_through_a_tracked_file_they_both_match() {
    let repo = TestRepo::with_files(&[("src/net/mod.rs", "// net\n")]);
    repo.write_spec("001", "a", "files: [\"src/**/mod.rs\"]\n", "");
    repo.write_spec("002", "b", "files: [\"src/net/*.rs\"]\n", "");
    repo.commit_all("specs");
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 3);
    let json = stdout_json(&out);
    let o = &json["overlaps"][0];
    assert_eq!(
        (o["a"].as_str(), o["b"].as_str()),
        (Some("001"), Some("002"))
    );
    assert_eq!(o["paths"], json!(["src/net/mod.rs"]));
    assert_eq!(o["kind"], "globs_share_tracked_file");
    let reason = o["reason"].as_str().expect("reason");
    assert!(!reason.contains("may overlap"), "a sure overlap: {reason}");
}

#[test]
fn globs_with_disjoint_prefixes_and_no_tracked_match_are_independent() {
    let repo = TestRepo::with_files(&[("src/net/mod.rs", "// net\n")]);
    repo.write_spec("001", "a", "files: [\"src/gen/a/**\"]\n", "");
    repo.write_spec(
        "002",
        "b",
        "files: [\"src/gen/b/*.rs\", \"src/gen/ab/**\"]\n",
        "",
    );
    repo.commit_all("specs");
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out)["overlaps"], json!([]));
}

#[test]
fn nested_glob_prefixes_overlap_conservatively() {
    let repo = TestRepo::with_files(&[("src/lib.rs", "// lib\n")]);
    repo.write_spec("001", "a", "files: [\"src/new/**\"]\n", "");
    repo.write_spec("002", "b", "files: [\"src/new/*.rs\"]\n", "");
    repo.commit_all("specs");
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 3);
    let json = stdout_json(&out);
    assert_eq!(
        json["overlaps"].as_array().map(Vec::len),
        Some(1),
        "{json:#}"
    );
    let o = &json["overlaps"][0];
    assert_eq!(o["kind"], "nested_prefixes");
    let reason = o["reason"].as_str().expect("reason");
    assert!(
        reason.contains("may overlap"),
        "reported as conservative: {reason}"
    );
    assert!(reason.contains("`src/new/`"), "{reason}");
}

#[test]
fn shared_paths_do_not_make_an_overlap() {
    let repo = TestRepo::with_files(&[("Cargo.lock", "# lock\n")]);
    repo.write_spec("001", "a", "files: [a.rs]\nshared: [Cargo.lock]\n", "");
    repo.write_spec("002", "b", "files: [b.rs]\nshared: [Cargo.lock]\n", "");
    repo.commit_all("specs");
    assert_exit(&repo.tf(&["check"]), 0);

    // The same paths declared as files do overlap.
    repo.write_spec("001", "a", "files: [a.rs, Cargo.lock]\n", "");
    repo.write_spec("002", "b", "files: [b.rs, Cargo.lock]\n", "");
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 3);
    assert_eq!(
        stdout_json(&out)["overlaps"][0]["paths"],
        json!(["Cargo.lock"])
    );
}

#[test]
fn config_overlap_ignore_is_honoured() {
    let repo = TestRepo::with_files(&[("Cargo.lock", "# lock\n")]);
    repo.write_spec("001", "a", "files: [a.rs, Cargo.lock]\n", "");
    repo.write_spec("002", "b", "files: [b.rs, Cargo.lock, \"gen/**\"]\n", "");
    repo.write_spec("003", "c", "files: [gen/x.rs]\n", "");
    repo.commit_all("specs");
    assert_exit(&repo.tf(&["check"]), 3);
    repo.write(
        "treefarm.yaml",
        "overlap:\n  ignore: [Cargo.lock, \"gen/**\"]\n",
    );
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out)["independent"], true);
}

#[test]
fn spec_dir_in_the_older_layout_works_when_configured() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    repo.write(
        "docs/architecture/specs/SPEC-007-old.md",
        "# Old layout\n\n**Files to Create/Modify**:\n- `src/old.rs`\n",
    );
    repo.write("treefarm.yaml", "spec_dir: docs/architecture/specs\n");
    repo.commit_all("old layout");
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(ids(&json), ["007"]);
    assert_eq!(
        json["specs"][0]["path"],
        "docs/architecture/specs/SPEC-007-old.md"
    );
    assert_eq!(json["specs"][0]["title"], "Old layout");
}

#[test]
fn unknown_config_key_exits_2_naming_key_file_and_line() {
    let repo = independent_repo();
    repo.write(
        "treefarm.yaml",
        "target: roadmap\nagent:\n  timeout: 5m\n  comand: claude\n",
    );
    let before = repo.footprint();
    for args in [&["check"][..], &["plan"], &["run"]] {
        let out = repo.tf(args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("treefarm.yaml:4:"), "{args:?}: {err}");
        assert!(err.contains("`agent.comand`"), "{args:?}: {err}");
        assert_eq!(repo.footprint(), before, "{args:?} created something");
    }
}

#[test]
fn env_spec_dir_overrides_the_file() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    repo.write("a/SPEC-001-a.md", "**File**: `a.rs`\n");
    repo.write("b/SPEC-002-b.md", "**File**: `b.rs`\n");
    repo.write("treefarm.yaml", "spec_dir: a\n");
    repo.commit_all("two spec dirs");
    let out = repo.tf(&["check", "--json"]);
    assert_eq!(ids(&stdout_json(&out)), ["001"]);
    let out = repo
        .treefarm()
        .args(["check", "--json"])
        .env("TREEFARM_SPEC_DIR", "b")
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert_eq!(ids(&stdout_json(&out)), ["002"]);
}

#[test]
fn dash_c_runs_from_anywhere_and_config_flag_picks_the_file() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    repo.write("a/SPEC-001-a.md", "**File**: `a.rs`\n");
    repo.write("b/SPEC-002-b.md", "**File**: `b.rs`\n");
    repo.write("treefarm.yaml", "spec_dir: a\n");
    repo.commit_all("two spec dirs");
    let elsewhere = repo.tmp.path();
    let root = repo.root.to_str().expect("utf-8 path");

    let out = repo
        .treefarm()
        .current_dir(elsewhere)
        .args(["-C", root, "check", "--json"])
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert_eq!(ids(&stdout_json(&out)), ["001"]);

    // A subdirectory of the repository finds the root too.
    let out = repo
        .treefarm()
        .current_dir(repo.root.join("b"))
        .args(["check", "--json"])
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert_eq!(ids(&stdout_json(&out)), ["001"]);

    // --config replaces treefarm.yaml, wherever the file is.
    let cfg = elsewhere.join("other.yaml");
    std::fs::write(&cfg, "spec_dir: b\n").expect("write config");
    let out = repo
        .treefarm()
        .current_dir(elsewhere)
        .args(["-C", root, "--config"])
        .arg(&cfg)
        .args(["check", "--json"])
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert_eq!(ids(&stdout_json(&out)), ["002"]);

    // Outside any repository: bad input.
    let out = repo
        .treefarm()
        .current_dir(elsewhere)
        .args(["check"])
        .output()
        .expect("spawn");
    assert_exit(&out, 2);

    // An unknown key in the --config file is named with that file.
    std::fs::write(&cfg, "spec_dir: b\nbogus: 1\n").expect("write config");
    let out = repo
        .treefarm()
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .output()
        .expect("spawn");
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:2:", cfg.display())) && err.contains("`bogus`"),
        "{err}"
    );
}

#[test]
fn the_same_spec_named_twice_is_selected_once() {
    let repo = overlapping_repo();
    let out = repo.tf(&["check", "--json", "20", "020", "SPEC-020"]);
    assert_exit(&out, 0);
    assert_eq!(ids(&stdout_json(&out)), ["020"]);
}

#[test]
fn a_repository_without_commits_is_bad_input() {
    let repo = TestRepo::empty();
    repo.write("specs/SPEC-001-a.md", "**File**: `a.rs`\n");
    let before = repo.footprint();
    for args in [&["check"][..], &["plan"], &["run", "--agent", "true"]] {
        let out = repo.tf(args);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("hint:"), "{args:?}: {}", stderr(&out));
        assert_eq!(repo.footprint(), before, "{args:?} created something");
    }
}

/// Issue 21: `depends_on: ["999"]` (no such spec) — `check` warned and
/// exited 0 while `plan` exited 2. Now both refuse it, and `check` still
/// reports the other spec, for people and with `--json`.
#[test]
fn check_exits_2_on_an_unknown_dependency_that_plan_refuses() {
    let repo = TestRepo::with_files(&[
        (
            "specs/SPEC-001-dep.md",
            "---\nfiles: [a.rs]\ndepends_on: [\"999\"]\n---\n# Dep\n",
        ),
        ("specs/SPEC-002-ok.md", "# Ok\n\n**File**: `b.rs`\n"),
    ]);
    let plan = repo.tf(&["plan"]);
    assert_exit(&plan, 2);
    let check = repo.tf(&["check"]);
    assert_exit(&check, 2);
    let err = stderr(&check);
    assert!(
        err.contains("error: specs/SPEC-001-dep.md:3: spec `001` depends on unknown spec `999`"),
        "{err}"
    );
    let json = repo.tf(&["check", "--json"]);
    assert_exit(&json, 2);
    let report = stdout_json(&json);
    assert_eq!(ids(&report), ["002"], "the other spec is still checked");
    assert_eq!(report["invalid"][0]["id"], "001");
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["warnings"], json!([]));
    // Each alone: check and plan agree.
    assert_exit(&repo.tf(&["check", "001"]), 2);
    assert_exit(&repo.tf(&["plan", "001"]), 2);
    assert_exit(&repo.tf(&["check", "002"]), 0);
    assert_exit(&repo.tf(&["plan", "002"]), 0);
}
