//! Bad input and faults at run time (issue 11): a target inside treefarm's
//! branch namespace, racing worktree creation, big declarations, and causes
//! (such as a full disk) reaching the user.

mod common;

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
    let big = "x".repeat(4 << 20);
    let repo = TestRepo::farm(
        &[("src/a.txt", "a\n"), ("data/big.bin", big.as_str())],
        &[(
            "SPEC-001-a.md",
            "# A\n\n**File**: `src/a.txt`\n".to_string(),
        )],
        "",
    );
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
        summary["reasons"]["001"].as_str().unwrap_or("").contains(cause),
        "{summary}"
    );
    let run = repo.t1_only_run();
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json");
    assert!(text.contains(cause), "{text}");
}
