//! `executor: slurm` at the front door, and the entry point its jobs will
//! run (`treefarm agent-exec`, confined inside a real job): the `executor` key, its variable and
//! flag, the `slurm:` section and a spec's `slurm:` override, and the checks
//! `run` makes before anything is created — `sbatch` on PATH, a request no
//! node can meet, `worktree_dir` shared with the jobs (the runs themselves
//! are `slurm_run`'s).
//!
//! The tests marked `#[ignore]` need the real one-node cluster:
//! `scripts/test-slurm.sh` starts it, runs them with `--ignored` and stops
//! it. They take the cluster one at a time with `slurm_cluster`'s tests.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use treefarm::config::{Config, ExecutorKind};
use treefarm::isolation::{kernel_abi, Policy, PolicyInputs, Sandbox};
use treefarm::runner::{write_job_file, AgentJob};
use treefarm::slurm::Slurm;

use crate::common::{assert_exit, spec_md, stderr, TestRepo};

/// `treefarm run` in `repo` with the cluster's `SLURM_CONF` (the fixture
/// clears the environment but for PATH).
fn run_slurm(repo: &TestRepo, extra: &[&str]) -> Output {
    let mut cmd: Command = repo.treefarm();
    if let Some(conf) = std::env::var_os("SLURM_CONF") {
        cmd.env("SLURM_CONF", conf);
    }
    cmd.arg("run").args(extra).output().expect("spawn treefarm")
}

/// Two specs; the second with `slurm_front` as its front matter's `slurm:`.
fn farm(slurm_front: &str, config: &str) -> TestRepo {
    let one = spec_md("one", &["a.txt"], &[], None, "write a.txt one");
    let two = spec_md("two", &["b.txt"], &[], None, "write b.txt two").replacen(
        "---\n",
        &format!("---\nslurm: {slurm_front}\n"),
        1,
    );
    TestRepo::farm(
        &[("README.md", "x\n")],
        &[("SPEC-001-one.md", one), ("SPEC-002-two.md", two)],
        config,
    )
}

/// Nothing of a run exists: no branch but `main`, no run journal, no
/// worktree folder (the storage check removes what it made).
pub(crate) fn assert_nothing_created(repo: &TestRepo) {
    assert_eq!(
        repo.git(&["for-each-ref", "--format=%(refname)", "refs/heads"]),
        "refs/heads/main"
    );
    assert!(!repo.runs_dir().exists(), "a run journal was created");
    assert!(
        !repo.worktree_dir().exists(),
        "`{}` was left behind",
        repo.worktree_dir().display()
    );
}

#[test]
fn executor_is_local_by_default_and_set_by_file_then_environment() {
    assert_eq!(Config::default().executor, ExecutorKind::Local);
    let mut config = Config::parse("treefarm.yaml", b"executor: slurm\n").expect("parses");
    assert_eq!(config.executor, ExecutorKind::Slurm);
    config
        .apply_env([("TREEFARM_EXECUTOR".to_string(), "Local".to_string())])
        .expect("applies");
    assert_eq!(config.executor, ExecutorKind::Local);
    let err = config
        .apply_env([("TREEFARM_EXECUTOR".to_string(), "k8s".to_string())])
        .expect_err("k8s is no executor");
    assert!(err.to_string().contains("TREEFARM_EXECUTOR"), "{err}");
    let err = Config::parse("treefarm.yaml", b"executor: pbs\n").expect_err("pbs is no executor");
    assert!(err.to_string().contains("pbs"), "{err}");
}

#[test]
fn slurm_section_with_an_owned_flag_is_refused_naming_file_line_and_key() {
    let text = b"instances: 2\nslurm:\n  cpus: 2\n  extra_args: [\"--job-name=mine\"]\n";
    let err = Config::parse("treefarm.yaml", text).expect_err("owned flag");
    let input: treefarm::error::InputError = err.into();
    assert!(
        input
            .message
            .starts_with("treefarm.yaml:4: slurm.extra_args: `--job-name=mine`"),
        "{input}"
    );
    assert!(
        input.hint.as_deref().unwrap_or("").contains("remove it"),
        "{input}"
    );
    let err = Config::parse("treefarm.yaml", b"slurm: {cpu: 2}\n").expect_err("unknown key");
    assert!(err.to_string().contains("slurm.cpu"), "{err}");
}

#[test]
fn spec_slurm_override_with_a_run_wide_key_fails_check_naming_the_spec_file() {
    for (front, expected) in [
        (
            "{cpus: 1, poll: 5s}",
            "specs/SPEC-002-two.md:2: spec 002: slurm: unknown field `poll`",
        ),
        (
            "{extra_args: [-J, x]}",
            "specs/SPEC-002-two.md:2: spec 002: slurm.extra_args: `-J` sets `--job-name`",
        ),
    ] {
        let out = farm(front, "").tf(&["check"]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(expected), "{front}: {err}");
    }
}

#[test]
fn executor_slurm_without_sbatch_on_path_is_refused_before_anything_is_created() {
    let repo = farm("{cpus: 1}", "");
    let empty = repo.tmp.path().join("empty-bin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    // The agent command is `sh …`: PATH keeps `sh` reachable through a link
    // in a folder that holds nothing else (no Slurm commands).
    std::os::unix::fs::symlink("/bin/sh", empty.join("sh")).expect("link sh");
    let out = repo
        .treefarm()
        .env("PATH", &empty)
        .args(["run", "--executor", "slurm"])
        .output()
        .expect("spawn");
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("executor `slurm` needs `sbatch` on PATH"),
        "{err}"
    );
    assert_nothing_created(&repo);
    // The local executor is the default and still takes the same run.
    let out = repo
        .treefarm()
        .env("PATH", &empty)
        .arg("run")
        .output()
        .expect("spawn");
    assert!(!stderr(&out).contains("sbatch"), "{}", stderr(&out));
}

/// The most CPUs any node of the default partition has, as `sinfo` says.
fn largest_node_cpus() -> u32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let capacity = runtime
        .block_on(Slurm::new().capacity())
        .expect("sinfo answers (is the cluster up? scripts/slurm-cluster.sh start)");
    crate::slurm_cluster::largest_node(&capacity).1
}

/// The names of the jobs `squeue` lists (all users, all states).
fn queued_names() -> Vec<String> {
    crate::slurm_run::queued_jobs()
        .into_iter()
        .map(|(_, _, name)| name)
        .collect()
}

#[test]
#[ignore = "needs the real Slurm cluster: scripts/test-slurm.sh"]
fn an_impossible_request_is_refused_before_anything_is_submitted() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let too_many = largest_node_cpus() + 1;
    let repo = farm(&format!("{{cpus: {too_many}}}"), "executor: slurm\n");
    let before = queued_names();
    let out = run_slurm(&repo, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "spec 002 (specs/SPEC-002-two.md): no node of partition `debug` has {too_many} CPUs: the largest has {} CPUs",
            too_many - 1
        )),
        "{err}"
    );
    assert!(err.contains("hint: lower `slurm.cpus`"), "{err}");
    let new: Vec<String> = queued_names()
        .into_iter()
        .filter(|n| !before.contains(n) && n.starts_with("treefarm:"))
        .collect();
    assert!(new.is_empty(), "jobs were submitted: {new:?}");
    assert_nothing_created(&repo);
}

#[test]
#[ignore = "needs the real Slurm cluster: scripts/test-slurm.sh"]
fn a_worktree_dir_the_jobs_cannot_see_is_refused_with_the_reason() {
    // On a one-node cluster every path is shared; a job running as another
    // user (`--uid`, root only) in a folder only root may enter is a job
    // that cannot see the coordinator's marker — the same as a node
    // without the mount.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: `sbatch --uid` needs root to make a job that cannot see the folder");
        return;
    }
    let _cluster = crate::slurm_cluster::take_cluster();
    let private = tempfile::TempDir::new().expect("tempdir");
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod 700");
    let worktrees = private.path().join("worktrees");
    let config = format!(
        "executor: slurm\nworktree_dir: {}\nslurm: {{extra_args: [\"--uid=nobody\"], exit_grace: 1s}}\n",
        worktrees.display()
    );
    let repo = farm("{cpus: 1}", &config);
    let out = run_slurm(&repo, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "worktree_dir `{}` is not shared with the Slurm nodes (the check job failed",
            worktrees.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: set `worktree_dir` to a folder on a file system every node mounts"),
        "{err}"
    );
    assert!(
        !worktrees.exists(),
        "the check left `{}`",
        worktrees.display()
    );
    assert_nothing_created(&repo);
}

#[test]
#[ignore = "needs the real Slurm cluster: scripts/test-slurm.sh"]
fn a_valid_slurm_setup_passes_every_check_with_one_storage_job_then_runs() {
    let _cluster = crate::slurm_cluster::take_cluster();
    let repo = farm(
        "{cpus: 1}",
        "slurm: {exit_grace: 5s, mem: 100M, poll: 1s}\n",
    );
    let before = queued_names();
    let out = run_slurm(&repo, &["--executor", "slurm"]);
    assert_exit(&out, 0);
    // The storage check ran as one real job, named for the check.
    let checks: Vec<String> = queued_names()
        .into_iter()
        .filter(|n| !before.contains(n) && n.ends_with(":storage:c1"))
        .collect();
    assert_eq!(
        checks.len(),
        1,
        "expected one storage check job: {checks:?}"
    );
    assert_eq!(repo.show("roadmap", "a.txt").trim(), "one");
    assert_eq!(repo.show("roadmap", "b.txt").trim(), "two");
}

/// Submits `script` (`sh`) with `sbatch --parsable --wait` and returns
/// when the job ended, whatever its status.
fn sbatch_wait(script: &Path, log: &Path) {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg("--wait")
        .arg("--time=2")
        .arg("--job-name=treefarm-test:agent-exec")
        .arg(format!("--output={}", log.display()))
        .arg(script)
        .output()
        .expect("sbatch");
    // `--wait` exits with the job's status: the agent's failure is the
    // test's to judge from the files, not sbatch's.
    assert!(
        out.status.success() || !out.stdout.is_empty(),
        "sbatch did not submit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs the real Slurm cluster: scripts/test-slurm.sh"]
fn agent_exec_in_a_job_confines_the_agent_and_writes_the_exit_file() {
    if !crate::common::landlock_available() {
        eprintln!("SKIPPED: the kernel has no Landlock, nothing to confine with");
        return;
    }
    let _cluster = crate::slurm_cluster::take_cluster();
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let worktree = tmp.path().join("worktree");
    let instance = tmp.path().join("instance");
    let outside = tmp.path().join("outside");
    for dir in [&worktree, &instance, &outside] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let escape = outside.join("escaped.txt");
    let policy = Policy::new(&PolicyInputs {
        worktree: &worktree,
        instance_dir: &instance,
        home: None,
        repo_root: tmp.path(),
        allow_write: &[],
        allow_read: &[],
        cli: None,
        env: &[],
        extra: Vec::new(),
        ports: None,
    });
    let job = AgentJob {
        command: format!(
            "echo inside > inside.txt; if echo out > '{}'; then exit 0; else exit 7; fi",
            escape.display()
        ),
        cwd: worktree.clone(),
        env: vec![("TREEFARM_ATTEMPT".into(), "1".into())],
        log_path: instance.join("agent.log"),
        status_path: instance.join("status.json"),
        exit_path: instance.join("exit"),
        timeout: None,
        idle_timeout: None,
        grace: Duration::from_secs(1),
        sandbox: Some(Sandbox {
            abi: kernel_abi().expect("Landlock ABI"),
            policy,
        }),
    };
    let job_file = tmp.path().join("job.json");
    write_job_file(&job, &job_file).expect("write job file");
    let script = tmp.path().join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' agent-exec --job '{}'\n",
            env!("CARGO_BIN_EXE_treefarm"),
            job_file.display()
        ),
    )
    .expect("write job script");
    sbatch_wait(&script, &tmp.path().join("job.log"));

    // The exit file, written by the wrapper inside the job, says 7: the
    // write outside the worktree was refused by the kernel in the job.
    let exit = std::fs::read_to_string(instance.join("exit")).expect("the job wrote the exit file");
    assert_eq!(exit, "7\n1\n", "exit file");
    assert!(
        !escape.exists(),
        "the agent escaped to `{}`",
        escape.display()
    );
    assert_eq!(
        std::fs::read_to_string(worktree.join("inside.txt")).expect("inside write"),
        "inside\n"
    );
    let log = std::fs::read_to_string(instance.join("agent.log")).expect("agent log");
    assert!(log.contains("Permission denied"), "agent log: {log}");
}
