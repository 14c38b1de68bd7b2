//! Hostile spec input (issue 11, points 5 and 6): found at input validation,
//! before any branch or worktree exists. One regression test per defect.

use crate::common;

use common::{assert_exit, stderr, stdout_json, TestRepo};

const OK: (&str, &str) = ("specs/SPEC-001-ok.md", "# Ok\n\n**File**: `src/ok.rs`\n");

fn repo_with(files: &[(&str, &[u8])]) -> TestRepo {
    let repo = TestRepo::with_files(&[("src/ok.rs", "// ok\n"), OK]);
    for (path, bytes) in files {
        let full = repo.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, bytes).expect("write");
    }
    repo.commit_all("specs");
    repo
}

/// `run` of every spec and of the bad one alone exits 2 naming `fragments`
/// and creates nothing; the valid spec alone still plans.
fn rejected_before_anything_is_created(repo: &TestRepo, bad_id: &str, fragments: &[&str]) {
    let before = repo.footprint();
    for args in [
        &["run", "--agent", "true"][..],
        &["run", "--agent", "true", bad_id],
    ] {
        let out = repo.tf(args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        for f in fragments {
            assert!(err.contains(f), "{args:?}: stderr lacks {f:?}:\n{err}");
        }
        assert_eq!(repo.footprint(), before, "{args:?} created something");
    }
    let out = repo.tf(&["plan", "001"]);
    assert_exit(&out, 0);
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 2);
    let report = stdout_json(&out);
    assert!(
        report["invalid"].to_string().contains(bad_id),
        "{bad_id} listed invalid: {report}"
    );
    assert_eq!(
        report["specs"][0]["id"], "001",
        "the valid spec is still checked"
    );
}

#[test]
fn spec_symlink_to_a_file_outside_the_repository_is_refused() {
    let repo = repo_with(&[]);
    let outside = repo.tmp.path().join("outside.md");
    std::fs::write(&outside, "# Outside\n\n**File**: `src/evil.rs`\n").expect("write");
    std::os::unix::fs::symlink(&outside, repo.root.join("specs/SPEC-002-link.md"))
        .expect("symlink");
    rejected_before_anything_is_created(
        &repo,
        "002",
        &["specs/SPEC-002-link.md", "outside the repository"],
    );
}

#[test]
fn spec_symlink_inside_the_repository_is_followed() {
    let repo = repo_with(&[("docs/real.md", b"# Real\n\n**File**: `src/real.rs`\n")]);
    std::os::unix::fs::symlink("../docs/real.md", repo.root.join("specs/SPEC-002-link.md"))
        .expect("symlink");
    let out = repo.tf(&["check", "--json", "002"]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out)["specs"][0]["files"][0], "src/real.rs");
}

#[test]
fn dangling_spec_symlink_is_a_diagnostic_not_silently_skipped() {
    let repo = repo_with(&[]);
    std::os::unix::fs::symlink("gone.md", repo.root.join("specs/SPEC-002-gone.md"))
        .expect("symlink");
    rejected_before_anything_is_created(&repo, "002", &["specs/SPEC-002-gone.md", "dangling"]);
}

#[test]
fn looping_spec_symlink_is_a_diagnostic_not_silently_skipped() {
    let repo = repo_with(&[]);
    let a = repo.root.join("specs/SPEC-002-loop.md");
    let b = repo.root.join("specs/loop-b.md");
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    rejected_before_anything_is_created(&repo, "002", &["specs/SPEC-002-loop.md", "loop"]);
}

#[test]
fn nul_byte_in_title_is_rejected_before_the_branch_exists() {
    let repo = repo_with(&[(
        "specs/SPEC-002-nul.md",
        b"# Ti\0tle\n\n**File**: `src/b.rs`\n",
    )]);
    rejected_before_anything_is_created(
        &repo,
        "002",
        &["specs/SPEC-002-nul.md:1:", "NUL byte in the title"],
    );
}

#[test]
fn nul_byte_in_body_is_rejected_before_the_branch_exists() {
    let repo = repo_with(&[(
        "specs/SPEC-002-nul.md",
        b"# Title\n\n**File**: `src/b.rs`\n\nDo \0 this.\n",
    )]);
    rejected_before_anything_is_created(
        &repo,
        "002",
        &["specs/SPEC-002-nul.md:5:", "NUL byte in the body"],
    );
}

#[test]
fn nul_byte_in_declared_path_is_rejected_before_the_branch_exists() {
    let repo = repo_with(&[(
        "specs/SPEC-002-nul.md",
        b"# Title\n\n**File**: `src/b\0.rs`\n",
    )]);
    rejected_before_anything_is_created(
        &repo,
        "002",
        &["specs/SPEC-002-nul.md:3:", "NUL byte in a declared path"],
    );
}

#[test]
fn newline_in_declared_path_is_rejected_before_the_branch_exists() {
    let repo = repo_with(&[(
        "specs/SPEC-002-nl.md",
        b"---\nfiles: [\"src/a\\nb.rs\"]\n---\n# Title\n",
    )]);
    rejected_before_anything_is_created(
        &repo,
        "002",
        &["specs/SPEC-002-nl.md:2:", "contains a line break"],
    );
}

#[test]
fn scalar_files_42_is_a_diagnostic_not_the_path_42() {
    let repo = repo_with(&[("specs/SPEC-002-num.md", b"---\nfiles: 42\n---\n# Title\n")]);
    rejected_before_anything_is_created(
        &repo,
        "002",
        &[
            "specs/SPEC-002-num.md:2:",
            "`files` must be a list of strings",
        ],
    );
    // A string where a list is expected is read as a list of one, with a warning.
    let repo = repo_with(&[(
        "specs/SPEC-002-one.md",
        b"---\nfiles: src/one.rs\n---\n# Title\n",
    )]);
    let out = repo.tf(&["check", "--json", "002"]);
    assert_exit(&out, 0);
    let report = stdout_json(&out);
    assert_eq!(report["specs"][0]["files"][0], "src/one.rs");
    assert!(report["warnings"][0]["message"]
        .as_str()
        .expect("message")
        .contains("read as a list of one"));
}
