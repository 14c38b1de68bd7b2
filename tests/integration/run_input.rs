//! Bad input to `treefarm run` exits 2 before anything exists: no branch,
//! no target, no worktree, no run journal, and the main checkout untouched.

use crate::common;

use common::{stderr, TestRepo};

fn repo_with_spec(config: Option<&str>) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    if let Some(yaml) = config {
        repo.write("treefarm.yaml", yaml);
    }
    repo.write_listed_spec("001", "one", &["one.txt"], "");
    repo.write_listed_spec("002", "two", &["two.txt"], "");
    repo.commit_all("specs");
    repo
}

/// Everything a run could have created, to compare before and after.
fn footprint(repo: &TestRepo) -> String {
    format!(
        "{}\n--\n{}\n--\n{}\n--\ntreefarm dir: {}\nworktree dir: {}",
        repo.main_snapshot(),
        repo.refs(),
        repo.worktrees_porcelain(),
        repo.run_ids().join(","),
        repo.worktree_dir().exists()
    )
}

/// Runs `treefarm run ARGS`, expects exit 2 with nothing created, returns
/// stderr.
fn refused(repo: &TestRepo, args: &[&str]) -> String {
    let before = footprint(repo);
    let out = repo.treefarm().arg("run").args(args).output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{err}",
        common::stdout(&out)
    );
    assert_eq!(
        footprint(repo),
        before,
        "nothing was created; stderr:\n{err}"
    );
    assert!(
        repo.git(&["branch", "--list", "roadmap"]).is_empty(),
        "the target was not created"
    );
    err
}

#[test]
fn no_agent_configured_exits_2_and_creates_nothing() {
    let repo = repo_with_spec(None);
    let err = refused(&repo, &[]);
    assert!(err.contains("no agent configured"), "{err}");
    assert!(!repo.root.join(".git/treefarm/runs").exists());
}

#[test]
fn missing_agent_program_exits_2_and_creates_nothing() {
    let repo = repo_with_spec(None);
    let err = refused(&repo, &["--agent", "/nonexistent/x --flag"]);
    assert!(err.contains("/nonexistent/x"), "names the program:\n{err}");

    // Also from the config file, and for a bare name not on PATH.
    let repo = repo_with_spec(Some("agent:\n  command: no-such-agent-program-t1 {spec}\n"));
    let err = refused(&repo, &["--json"]);
    assert!(
        err.contains("no-such-agent-program-t1"),
        "names the program:\n{err}"
    );
}

#[test]
fn leftover_branch_from_an_earlier_run_exits_2_naming_it() {
    let repo = repo_with_spec(Some(&format!(
        "agent:\n  command: \"{}\"\n",
        common::demo_agent_command()
    )));
    repo.git(&["branch", "treefarm/002"]);
    let err = refused(&repo, &[]);
    assert!(err.contains("treefarm/002"), "names the branch:\n{err}");
    assert!(!err.contains("treefarm/001"), "{err}");
}

#[test]
fn leftover_worktree_path_from_an_earlier_run_exits_2_naming_it() {
    let repo = repo_with_spec(Some(&format!(
        "agent:\n  command: \"{}\"\n",
        common::demo_agent_command()
    )));
    let leftover = repo.worktree_dir().join("001");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("precious.txt"), "keep me\n").unwrap();
    let err = refused(&repo, &[]);
    assert!(
        err.contains(&leftover.display().to_string()),
        "names the path:\n{err}"
    );
    assert_eq!(
        std::fs::read_to_string(leftover.join("precious.txt")).unwrap(),
        "keep me\n",
        "the leftover is not touched"
    );
}

#[test]
fn unknown_spec_id_exits_2_and_creates_nothing() {
    let repo = repo_with_spec(Some(&format!(
        "agent:\n  command: \"{}\"\n",
        common::demo_agent_command()
    )));
    let err = refused(&repo, &["999"]);
    assert!(err.contains("999"), "names the id:\n{err}");
}
