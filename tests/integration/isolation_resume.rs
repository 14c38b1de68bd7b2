//! Isolation across a coordinator crash: what an isolated agent committed in
//! its private git directory reaches `treefarm/<id>` and the target after
//! `resume` — whether the agent had already exited (its commits waiting in
//! the private directory) or was still running and is re-attached. Also:
//! `auto` is Landlock here and agents are told (`IS_SANDBOX=1`), and
//! `landlock` without kernel support is refused before anything exists.

use crate::common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, wait_until, TestRepo};

/// One spec (001, `src/a.txt`) whose agent is `body` (sh) run in its
/// worktree; `record` is a folder outside the repository the test reads.
fn farm(body: &str) -> (TestRepo, PathBuf) {
    let repo = TestRepo::with_files(&[("src/a.txt", "a0\n")]);
    let record = repo.tmp.path().join("record");
    std::fs::create_dir_all(&record).expect("mkdir record");
    let agent = repo.tmp.path().join("agent.sh");
    std::fs::write(
        &agent,
        format!("set -eu\ncd \"$TREEFARM_WORKTREE\"\n{body}\n"),
    )
    .expect("agent");
    repo.write(
        "specs/SPEC-001-work.md",
        "---\ntitle: Work\nfiles: [src/a.txt]\n---\n# Work\n\nDo it.\n",
    );
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh {}\n  timeout: 2m\n  kill_grace: 1s\n  env:\n    RECORD: {}\n",
            agent.display(),
            record.display()
        ),
    );
    repo.commit_all("initial");
    (repo, record)
}

fn run_crashing(repo: &TestRepo, point: &str) {
    repo.tf_crashing(&["run", "--isolation", "landlock"], point);
}

fn resume(repo: &TestRepo) {
    let out = repo
        .treefarm()
        .args(["resume", "--isolation", "landlock"])
        .output()
        .expect("spawn resume");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

fn assert_landed(repo: &TestRepo) {
    let subjects = repo.git(&["log", "--format=%s", "roadmap"]);
    assert!(
        subjects.contains("001: committed by the agent"),
        "{subjects}"
    );
    assert_eq!(
        repo.show("roadmap", "src/a.txt"),
        "a0\nagent commit\nleft uncommitted"
    );
    assert_eq!(repo.git(&["for-each-ref", "refs/heads/treefarm"]), "");
    let fsck = common::run_ok(repo.git_cmd(&["fsck", "--no-progress", "--no-dangling"]));
    assert_eq!(fsck, "");
}

const WORK: &str = r#"echo "agent commit" >> src/a.txt
git commit -qam "001: committed by the agent"
echo "left uncommitted" >> src/a.txt"#;

#[test]
fn commits_of_an_agent_that_exited_while_the_coordinator_was_dead_are_imported() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, _) = farm(WORK);
    run_crashing(&repo, "after-exit");
    // Not yet published: the commit sits in the private git directory.
    let tip = repo.git(&["log", "--format=%s", "-1", "treefarm/001"]);
    assert_eq!(tip, "initial");
    resume(&repo);
    assert_landed(&repo);
}

#[test]
fn prune_force_archives_commits_left_in_a_private_git_dir_by_a_killed_run() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, _) = farm(WORK);
    run_crashing(&repo, "after-exit");
    assert_eq!(
        repo.git(&["log", "--format=%s", "-1", "treefarm/001"]),
        "initial"
    );
    // No resume: the user gives up on the run and prunes it by force. The
    // agent's commit must be published first, then archived, never lost.
    let out = repo.tf(&["prune", "--all", "--force"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published treefarm/001"), "{err}");
    assert_eq!(
        repo.git(&["log", "--format=%s", "-1", "refs/treefarm/archive/001"]),
        "001: committed by the agent"
    );
    assert_eq!(repo.git(&["for-each-ref", "refs/heads/treefarm"]), "");
    let fsck = common::run_ok(repo.git_cmd(&["fsck", "--no-progress", "--no-dangling"]));
    assert_eq!(fsck, "");
}

#[test]
fn commits_of_a_reattached_agent_are_imported() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, record) = farm(&format!(
        "{WORK}\n: > \"$TREEFARM_RUN_DIR/instances/001/waiting\"\nwhile [ ! -e \"$RECORD/go\" ]; do sleep 0.05; done"
    ));
    run_crashing(&repo, "agents-running");
    let waiting = |repo: &TestRepo| -> bool {
        let runs = repo.runs_dir();
        std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("instances/001/waiting").exists())
    };
    wait_until("the agent to commit and wait", || waiting(&repo));
    std::fs::write(record.join("go"), "").expect("go");
    resume(&repo);
    assert_landed(&repo);
}

#[test]
fn auto_is_landlock_here_and_the_agent_is_told() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, record) = farm(
        "printf '%s %s\\n' \"${IS_SANDBOX:-unset}\" \"${TREEFARM_ISOLATED:-unset}\" > \"$TREEFARM_RUN_DIR/instances/001/told\"\nif sh -c ': > \"$RECORD/escape\"' 2>/dev/null; then echo escaped; fi\necho x >> src/a.txt",
    );
    let out = repo
        .treefarm()
        .arg("run")
        .env_remove("TREEFARM_ISOLATION")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let run = repo.run_state()["run_id"].as_str().expect("id").to_string();
    let told = std::fs::read_to_string(repo.runs_dir().join(run).join("instances/001/told"))
        .expect("told");
    assert_eq!(told, "1 1\n");
    assert!(!record.join("escape").exists(), "auto must confine");

    // Off: nothing is said, nothing confined.
    let (repo, record) =
        farm("printf '%s\\n' \"${IS_SANDBOX:-unset}\" > \"$RECORD/told\"\necho x >> src/a.txt");
    let out = repo.tf(&["run", "--isolation", "off"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(record.join("told")).expect("told"),
        "unset\n"
    );
}

#[test]
fn a_bad_isolation_value_is_refused_before_anything_is_created() {
    let (repo, _) = farm("true");
    let out = repo.tf(&["run", "--isolation", "sandbox"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = repo
        .treefarm()
        .arg("run")
        .env("TREEFARM_ISOLATION", "jail")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TREEFARM_ISOLATION"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&repo.runs_dir()).exists());
    assert_eq!(repo.git(&["branch", "--list", "roadmap"]), "");
}

#[test]
fn without_landlock_auto_says_so_and_landlock_is_refused() {
    let (repo, _) = farm("echo x >> src/a.txt");
    let out = repo
        .treefarm()
        .args(["run", "--isolation", "landlock"])
        .env("TREEFARM_TEST_NO_LANDLOCK", "1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("isolation: landlock was asked for, but the kernel has no Landlock"),
        "{}",
        stderr(&out)
    );
    assert!(!repo.runs_dir().exists());
    assert_eq!(repo.git(&["branch", "--list", "roadmap"]), "");

    let out = repo
        .treefarm()
        .args(["run", "--isolation", "auto"])
        .env("TREEFARM_TEST_NO_LANDLOCK", "1")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("isolation is off"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", stderr(&out));
    assert!(
        lines[0].contains("the kernel has no Landlock"),
        "{}",
        lines[0]
    );
}

#[test]
fn isolation_config_takes_a_word_or_a_mapping_and_names_bad_keys() {
    use treefarm::config::{Config, IsolationMode};
    let cfg = Config::parse("treefarm.yaml", b"isolation: off\n").expect("word");
    assert_eq!(cfg.isolation.mode, IsolationMode::Off);
    let cfg = Config::parse(
        "treefarm.yaml",
        b"isolation:\n  mode: landlock\n  allow_write: [~/.m2, out]\n  ports: false\n",
    )
    .expect("mapping");
    assert_eq!(cfg.isolation.mode, IsolationMode::Landlock);
    assert_eq!(cfg.isolation.allow_write, vec!["~/.m2", "out"]);
    assert_eq!(cfg.isolation.ports, Some(false));
    assert_eq!(Config::default().isolation.mode, IsolationMode::Auto);
    let err = Config::parse("treefarm.yaml", b"isolation:\n  mdoe: off\n").unwrap_err();
    assert!(err.to_string().contains("mdoe"), "{err}");
    let err = Config::parse("treefarm.yaml", b"isolation: jail\n").unwrap_err();
    assert!(err.to_string().contains("jail"), "{err}");
}

#[test]
fn a_sparse_worktree_commits_under_isolation_without_losing_the_unmaterialised_files() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let repo = TestRepo::with_files(&[("src/a.txt", "a0\n"), ("other/b.txt", "b0\n")]);
    let agent = repo.tmp.path().join("agent.sh");
    std::fs::write(
        &agent,
        "set -eu\ncd \"$TREEFARM_WORKTREE\"\nme=\"$TREEFARM_RUN_DIR/instances/001\"\nls > \"$me/ls\"\ngit status --porcelain > \"$me/status\"\necho a1 >> src/a.txt\ngit commit -qam \"001: sparse\"\ngit status --porcelain >> \"$me/status\"\n",
    )
    .expect("agent");
    repo.write(
        "specs/SPEC-001-work.md",
        "---\ntitle: Work\nfiles: [src/a.txt]\n---\n# Work\n\nDo it.\n",
    );
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh {}\nworktree:\n  sparse: auto\n",
            agent.display()
        ),
    );
    repo.commit_all("initial");
    let out = repo.tf(&["run", "--isolation", "landlock"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let run = repo.run_state()["run_id"].as_str().expect("id").to_string();
    let me = repo.runs_dir().join(run).join("instances/001");
    let ls = std::fs::read_to_string(me.join("ls")).expect("ls");
    assert!(
        !ls.contains("other"),
        "sparse: other/ is not materialised: {ls}"
    );
    let status = std::fs::read_to_string(me.join("status")).expect("status");
    assert_eq!(status, "", "the agent's git sees a clean sparse worktree");
    assert_eq!(repo.show("roadmap", "src/a.txt"), "a0\na1");
    assert_eq!(repo.show("roadmap", "other/b.txt"), "b0");
    assert!(repo
        .git(&["log", "--format=%s", "roadmap"])
        .contains("001: sparse"));
}

/// An isolated agent that staged work and gave up before committing: its
/// git wrote the staged blobs into its private store, and its index (which
/// becomes the worktree's) names them. They are published with it, so the
/// leftovers are committed (a failed attempt's work is kept on its branch)
/// and the repository stays whole: `git fsck` clean, `git status` clean in
/// the kept worktree — full and sparse (the torture test found it with a
/// sparse `git add -A` that staged what it could and failed).
#[test]
fn work_an_isolated_agent_staged_and_never_committed_is_kept_whole() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    for sparse in [false, true] {
        let (repo, _) = farm(
            "echo staged >> src/a.txt\necho new > src/new.txt\ngit add src/a.txt src/new.txt\nexit 3",
        );
        repo.write("other/b.txt", "b\n");
        let config = std::fs::read_to_string(repo.root.join("treefarm.yaml")).unwrap();
        let layout = if sparse {
            "worktree:\n  sparse: auto\n"
        } else {
            ""
        };
        repo.write("treefarm.yaml", &format!("{config}  retries: 0\n{layout}"));
        repo.commit_all("config");
        let out = repo
            .treefarm()
            .args(["run", "--isolation", "landlock"])
            .output()
            .expect("spawn treefarm");
        let err = stderr(&out);
        assert_eq!(repo.instance("001")["state"], "failed", "{err}");
        let wt = repo.worktree_dir().join("001");
        assert_eq!(wt.join("other").exists(), !sparse, "sparse: {sparse}");
        assert_eq!(repo.show("treefarm/001", "src/new.txt"), "new", "{err}");
        assert_eq!(repo.show("treefarm/001", "src/a.txt"), "a0\nstaged");
        assert_eq!(
            repo.git_at(&wt, &["status", "--short"]),
            "",
            "sparse: {sparse}"
        );
        let fsck = common::run_ok(repo.git_cmd(&["fsck", "--no-progress", "--no-dangling"]));
        assert_eq!(fsck, "", "sparse: {sparse}");
    }
}
