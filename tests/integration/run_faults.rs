//! Bad input and faults at run time (issue 11): a target inside treefarm's
//! branch namespace, racing worktree creation, big declarations, and causes
//! (such as a full disk) reaching the user.

use crate::common;

use common::{stderr, TestRepo};

fn farm_one() -> TestRepo {
    TestRepo::farm(
        &[("src/a.txt", "a\n")],
        &[(
            "SPEC-001-a.md",
            "# A\n\n**File**: `src/a.txt`\n".to_string(),
        )],
        "",
    )
}

#[test]
fn target_in_treefarm_namespace_or_a_spec_branch_is_refused_before_anything_is_created() {
    let repo = farm_one();
    let refs = repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    for target in ["treefarm/001", "treefarm/other", "treefarm"] {
        let out = repo.tf(&["run", "--target", target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(stderr(&out).contains(target), "{}", stderr(&out));
        assert_eq!(
            repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            refs,
            "{target}: refs changed"
        );
        assert!(!repo.root.join(".git/treefarm/runs").exists());
        assert!(!repo.worktree_dir().join("001").exists());
    }
    let out = repo.tf(&["merge", "--target", "treefarm/001"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("namespace"), "{}", stderr(&out));
    assert_eq!(
        repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        refs
    );
}

/// Mounts a tmpfs of `size` at `dir`; `None` (with a message) where the
/// machine does not allow it.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<TmpfsGuard> {
    std::fs::create_dir_all(dir).expect("mkdir mount point");
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(TmpfsGuard(dir.to_path_buf())),
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(err) => {
            eprintln!("skipped: cannot run mount ({err})");
            None
        }
    }
}

struct TmpfsGuard(std::path::PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn disk_full_cause_reaches_terminal_summary_and_json() {
    // The worktree itself fits (the disk budget lets the run start), but the
    // untracked 4 MiB file that `setup.copy` puts into it does not: a real
    // ENOSPC on a real 1 MiB tmpfs, after the worktree exists.
    let repo = TestRepo::farm(
        &[("src/a.txt", "a\n"), (".gitignore", "data/\n")],
        &[(
            "SPEC-001-a.md",
            "# A\n\n**File**: `src/a.txt`\n".to_string(),
        )],
        "setup:\n  copy: [data/big.bin]\n",
    );
    repo.write("data/big.bin", &"x".repeat(4 << 20));
    let full = repo.tmp.path().join("full");
    let Some(_mount) = mount_tmpfs(&full, "1m") else {
        return;
    };
    let config = repo.read("treefarm.yaml");
    repo.write(
        "treefarm.yaml",
        &format!("{config}worktree_dir: {}\n", full.display()),
    );
    repo.commit_all("worktrees on a full disk");
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let cause = "No space left on device";
    assert!(stderr(&out).contains(cause), "terminal:\n{}", stderr(&out));
    let events = common::json_events(&out);
    let failed = events
        .iter()
        .find(|e| e["event"] == "failed")
        .expect("a failed event");
    assert!(
        failed["reason"].as_str().unwrap_or("").contains(cause),
        "{failed}"
    );
    let summary = common::json_summary(&out);
    assert!(
        summary["reasons"]["001"]
            .as_str()
            .unwrap_or("")
            .contains(cause),
        "{summary}"
    );
    let run = repo.only_run();
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json");
    assert!(text.contains(cause), "{text}");
}

/// A YAML spec declaring `n` paths (every tenth a glob).
fn big_spec(n: usize) -> String {
    let mut text = String::from("title: big\nfiles:\n");
    for i in 0..n {
        if i % 10 == 0 {
            text.push_str(&format!("  - \"gen/d{i}/**/*.rs\"\n"));
        } else {
            text.push_str(&format!("  - src/d{}/file_{i}.rs\n", i % 100));
        }
    }
    text
}

#[test]
fn check_is_near_linear_in_the_paths_one_spec_declares() {
    // Quadratic parsing took 11 s for 10k paths in a debug build (48 s for
    // 100k in release); linear work takes well under a second here.
    let repo = TestRepo::farm(
        &[("README.md", "x\n")],
        &[
            ("SPEC-001-big.yaml", big_spec(100_000)),
            (
                "SPEC-002-small.yaml",
                "files:\n  - other/x.rs\n".to_string(),
            ),
        ],
        "",
    );
    let started = std::time::Instant::now();
    let out = repo.tf(&["check"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eprintln!("check of one spec with 100k paths: {took:?}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "check took {took:?} for 100k paths"
    );
}

#[test]
fn huge_declared_list_goes_to_treefarm_files_file_without_e2big() {
    let agent = "printf '%s' \"${TREEFARM_FILES-UNSET}\" | head -c 5 > \"$RECORDS/env-$TREEFARM_SPEC_ID\"; \
                 cp \"$TREEFARM_FILES_FILE\" \"$RECORDS/list-$TREEFARM_SPEC_ID\"; \
                 echo done >> src/a.txt; git add -A; git commit -qm \"agent $TREEFARM_SPEC_ID\"";
    let repo = TestRepo::farm(
        &[("src/a.txt", "a\n"), ("src/b.txt", "b\n")],
        &[
            ("SPEC-001-big.yaml", {
                let mut s = big_spec(20_000);
                s.push_str("  - src/a.txt\n");
                s
            }),
            ("SPEC-002-small.yaml", "files:\n  - src/b.txt\n".to_string()),
        ],
        "",
    );
    let config = repo.read("treefarm.yaml");
    let config = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("command:") {
                let agent = agent.replace("$RECORDS", &repo.records().display().to_string());
                format!("  command: {}", serde_json::to_string(&agent).unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    repo.write(
        "treefarm.yaml",
        &format!("{config}\nmerge:\n  auto: false\n"),
    );
    repo.commit_all("agent");
    let out = repo.tf(&["run", "001", "--no-merge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = repo.records();
    assert_eq!(
        std::fs::read_to_string(run.join("env-001")).unwrap(),
        "UNSET",
        "a list over the limit is not put in the environment"
    );
    let list = std::fs::read_to_string(run.join("list-001")).unwrap();
    assert_eq!(list.lines().count(), 20_001);
    assert!(list.lines().any(|l| l == "src/a.txt"));
}

#[test]
fn small_declared_list_is_in_both_treefarm_files_and_its_file() {
    let agent = "printf '%s\\n' \"$TREEFARM_FILES\" > \"$RECORDS/env-$TREEFARM_SPEC_ID\"; \
                 cp \"$TREEFARM_FILES_FILE\" \"$RECORDS/list-$TREEFARM_SPEC_ID\"";
    let repo = TestRepo::farm(
        &[("src/b.txt", "b\n")],
        &[(
            "SPEC-002-small.yaml",
            "files:\n  - src/b.txt\n  - \"src/c/**\"\n".to_string(),
        )],
        // The agent only reports what it was given; it changes nothing.
        "  allow_unchanged: true\n",
    );
    let config = repo.read("treefarm.yaml");
    let config = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("command:") {
                let agent = agent.replace("$RECORDS", &repo.records().display().to_string());
                format!("  command: {}", serde_json::to_string(&agent).unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    repo.write("treefarm.yaml", &format!("{config}\n"));
    repo.commit_all("agent");
    let out = repo.tf(&["run", "--no-merge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = repo.records();
    let env = std::fs::read_to_string(run.join("env-002")).unwrap();
    let list = std::fs::read_to_string(run.join("list-002")).unwrap();
    assert_eq!(env, "src/b.txt\nsrc/c/**\n");
    assert_eq!(env, list);
}

/// Admin entries half made by someone else (a `git worktree add` in
/// progress): libgit2 lists some of them anyway when two are adjacent.
fn half_made_entries(repo: &TestRepo) {
    for (i, file) in ["commondir", "gitdir", "HEAD", "commondir", "gitdir", "HEAD"]
        .iter()
        .enumerate()
    {
        let admin = repo.root.join(format!(".git/worktrees/zz-half-{i}"));
        std::fs::create_dir_all(&admin).expect("mkdir admin");
        std::fs::write(admin.join(file), "x\n").expect("write half entry");
    }
}

#[test]
fn listing_worktrees_beside_half_made_entries_is_no_error_for_plant_or_merge() {
    let specs: Vec<(String, String)> = (1..=4)
        .map(|i| {
            (
                format!("SPEC-00{i}-w.md"),
                format!("# W{i}\n\n**File**: `src/f{i}.txt`\n"),
            )
        })
        .collect();
    let spec_refs: Vec<(&str, String)> =
        specs.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let repo = TestRepo::farm(
        &[
            ("src/f1.txt", "1\n"),
            ("src/f2.txt", "2\n"),
            ("src/f3.txt", "3\n"),
            ("src/f4.txt", "4\n"),
        ],
        &spec_refs,
        "",
    );
    half_made_entries(&repo);
    let out = repo.tf(&["run", "--instances", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = common::json_summary(&out);
    assert_eq!(
        common::summary_ids(&summary, "merged"),
        vec!["001", "002", "003", "004"],
        "{summary}"
    );
}

#[test]
fn plant_failure_keeps_libgit2_cause_in_the_reason() {
    // A file where the worktree folder must go: the cause ("file exists" or
    // "not a directory") must be in the reason, not only "failed to create".
    let repo = farm_one();
    let wt_root = repo.tmp.path().join("wt-is-a-file");
    std::fs::write(&wt_root, "not a folder\n").expect("write");
    let config = repo.read("treefarm.yaml");
    repo.write(
        "treefarm.yaml",
        &format!("{config}worktree_dir: {}\n", wt_root.display()),
    );
    repo.commit_all("worktree_dir is a file");
    let out = repo.tf(&["run", "--json"]);
    let text = stderr(&out);
    let failed = common::json_events(&out)
        .into_iter()
        .find(|e| e["event"] == "failed");
    if let Some(failed) = failed {
        let reason = failed["reason"].as_str().unwrap_or("").to_lowercase();
        assert!(
            reason.contains("exists") || reason.contains("not a directory"),
            "{reason}"
        );
    } else {
        assert!(
            text.to_lowercase().contains("file exists") || text.contains("Not a directory"),
            "{text}"
        );
    }
}
