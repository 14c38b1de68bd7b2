//! The scripted demo agent (`scripts/demo-agent.sh`) in real git
//! repositories: each directive does what it says, the default behaviour edits
//! the declared files, and `fail-once` fails exactly once per run.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{isolated_env, TestRepo};
use tokio::sync::{mpsc, watch};
use treefarm::procfs;
use treefarm::runner::{run_agent, set_child_subreaper, AgentEnd, AgentJob, AgentStatus, Stop};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-agent.sh")
}

/// Private folder for the status file and fail-once markers, outside the
/// repository like treefarm's run directory.
struct RunDir(tempfile::TempDir);

impl RunDir {
    fn new() -> RunDir {
        RunDir(tempfile::tempdir().expect("tempdir"))
    }

    fn status_path(&self) -> PathBuf {
        self.0.path().join("status.json")
    }

    fn status(&self) -> AgentStatus {
        let bytes = std::fs::read(self.status_path()).expect("status file");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("status file is valid JSON");
        AgentStatus::parse(&bytes).expect("status object")
    }
}

/// Runs the demo agent in the repository with `env`, as treefarm would.
fn demo(repo: &TestRepo, run: &RunDir, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(script()).current_dir(&repo.root);
    isolated_env(&mut cmd, &repo.home);
    cmd.env_remove("TREEFARM_DEMO_AGENT_SCRIPT")
        .env_remove("TREEFARM_SPEC_FILE")
        .env_remove("TREEFARM_FILES")
        .env("TREEFARM_SPEC_ID", "020")
        .env("TREEFARM_RUN_ID", "run-1")
        .env("TREEFARM_RUN_DIR", run.0.path())
        .env("TREEFARM_STATUS_FILE", run.status_path())
        .envs(env.iter().copied());
    cmd.output().expect("run demo agent")
}

fn log_messages(repo: &TestRepo) -> Vec<String> {
    repo.git(&["log", "--format=%s"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn directives_write_append_commit_and_report_status() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let out = demo(
        &repo,
        &run,
        &[(
            "TREEFARM_DEMO_AGENT_SCRIPT",
            "# a comment\n\
             write src/new/file.rs \"fn a()  {}\"\n\
             append README.md more\n\
             status 60 \"half \\\"way\\\" there\"\n\
             commit \"feat: add file\"\n\
             touch notes/undeclared.txt\n",
        )],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(repo.read("src/new/file.rs"), "fn a()  {}\n");
    assert_eq!(repo.read("README.md"), "hello\nmore\n");
    assert_eq!(log_messages(&repo), ["feat: add file", "initial"]);
    // Touched after the commit: left uncommitted, for treefarm's auto-commit.
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
        "?? notes/undeclared.txt"
    );
    let status = run.status();
    assert_eq!(status.state.as_deref(), Some("done"));
    assert_eq!(status.progress, Some(100));
    let stdout = common::stdout(&out);
    assert!(stdout.contains("status 60"), "stdout: {stdout}");
}

#[test]
fn no_directives_edits_each_literal_declared_path_and_commits() {
    let repo = TestRepo::with_files(&[("src/a.rs", "// a\n")]);
    let run = RunDir::new();
    let out = demo(
        &repo,
        &run,
        &[("TREEFARM_FILES", "src/a.rs\nsrc/http/**\ndocs/new.md\n")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(repo.read("src/a.rs"), "// a\ntreefarm demo: 020\n");
    assert_eq!(repo.read("docs/new.md"), "treefarm demo: 020\n");
    assert!(
        !repo.root.join("src/http").exists(),
        "globs are not files to edit"
    );
    assert_eq!(log_messages(&repo), ["treefarm demo: 020", "initial"]);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(run.status().state.as_deref(), Some("done"));
}

#[test]
fn directives_come_from_the_specs_demo_agent_block() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let spec = run.0.path().join("SPEC-020-x.md");
    std::fs::write(
        &spec,
        "# Title\n\nProse mentioning write other.txt nothing.\n\n\
         ```sh\nwrite wrong.txt no\n```\n\n\
         ```demo-agent\nwrite from-spec.txt yes\ncommit \"from spec\"\n```\n\n\
         ```\nwrite after.txt no\n```\n",
    )
    .expect("write spec");
    let spec = spec.to_str().expect("utf-8 path");
    let out = demo(&repo, &run, &[("TREEFARM_SPEC_FILE", spec)]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(repo.read("from-spec.txt"), "yes\n");
    for absent in ["wrong.txt", "after.txt", "other.txt"] {
        assert!(
            !repo.root.join(absent).exists(),
            "{absent} must not be written"
        );
    }
    assert_eq!(log_messages(&repo), ["from spec", "initial"]);
}

#[test]
fn fail_once_fails_the_first_attempt_only() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let script = "append README.md first\nfail-once 3\nappend README.md second\ncommit done\n";
    let env = [("TREEFARM_DEMO_AGENT_SCRIPT", script)];

    let first = demo(&repo, &run, &env);
    assert_eq!(first.status.code(), Some(3), "{}", common::stderr(&first));
    assert_eq!(repo.read("README.md"), "hello\nfirst\n");
    assert_eq!(run.status().state.as_deref(), Some("failed"));

    let second = demo(&repo, &run, &env);
    assert!(second.status.success(), "{}", common::stderr(&second));
    assert_eq!(repo.read("README.md"), "hello\nfirst\nfirst\nsecond\n");
    assert_eq!(log_messages(&repo), ["done", "initial"]);
}

#[test]
fn exit_directive_sets_the_code_and_stops_there() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let out = demo(
        &repo,
        &run,
        &[("TREEFARM_DEMO_AGENT_SCRIPT", "exit 4\nwrite never.txt x\n")],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(!repo.root.join("never.txt").exists());
}

#[test]
fn unknown_directive_is_an_error_naming_the_line() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let out = demo(
        &repo,
        &run,
        &[("TREEFARM_DEMO_AGENT_SCRIPT", "sleep 0\nfrobnicate x\n")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("frobnicate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_term_ignoring_agent_with_grandchild_times_out_and_dies() {
    set_child_subreaper().expect("subreaper");
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let run = RunDir::new();
    let pid_file = run.0.path().join("grandchild.pid");
    let job = AgentJob {
        command: format!("sh '{}'", script().display()),
        cwd: repo.root.clone(),
        env: vec![
            ("TREEFARM_SPEC_ID".into(), "020".into()),
            (
                "TREEFARM_DEMO_AGENT_SCRIPT".into(),
                "ignore-term\ngrandchild 1000\nstatus 50 \"hanging\"\nhang\n".into(),
            ),
            (
                "TREEFARM_GRANDCHILD_PID_FILE".into(),
                pid_file.display().to_string(),
            ),
        ],
        log_path: run.0.path().join("020.log"),
        status_path: run.status_path(),
        exit_path: run.0.path().join("020.exit"),
        timeout: Some(Duration::from_secs(5)),
        idle_timeout: None,
        grace: Duration::from_millis(300),
        sandbox: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop, stop_rx) = watch::channel(Stop::Run);
    let agent = tokio::spawn(run_agent(job.clone(), tx, stop_rx));

    // The "hanging" status is written after the grandchild's pid file.
    let mut seen_hanging = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
        if let treefarm::runner::AgentEvent::Status(s) = event {
            if s.message.as_deref() == Some("hanging") {
                seen_hanging = true;
                break;
            }
        }
    }
    assert!(
        seen_hanging,
        "the agent reported its status before the timeout"
    );
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .expect("grandchild pid file")
        .trim()
        .parse()
        .expect("pid");
    let start = procfs::start_time(grandchild).expect("grandchild alive");

    let end = tokio::time::timeout(Duration::from_secs(60), agent)
        .await
        .expect("ended")
        .expect("task");
    assert_eq!(end, AgentEnd::TimedOut);
    assert!(
        !procfs::is_alive(grandchild, Some(start)),
        "grandchild survived"
    );
    let log = std::fs::read_to_string(&job.log_path).expect("log");
    assert!(log.contains("demo-agent: ignoring SIGTERM"), "log: {log}");
}
