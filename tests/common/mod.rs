//! Shared fixtures for the integration tests: real repositories made by real
//! `git` with pinned identities and dates and an isolated configuration.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// Environment applied to every `git` and `treefarm` process a test starts, so
/// that nothing from the machine's own configuration leaks in.
pub fn isolated_env(cmd: &mut Command, home: &Path) {
    cmd.env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("NO_COLOR", "1");
}

/// A throwaway repository: `root` is the main worktree, inside a temp dir that
/// also holds the sibling `<name>.treefarm` worktree folder and a private HOME.
pub struct TestRepo {
    pub tmp: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl TestRepo {
    /// An empty repository on branch `main`, no commits yet.
    pub fn empty() -> TestRepo {
        let tmp = tempfile::Builder::new()
            .prefix("treefarm-test")
            .tempdir()
            .expect("create temp dir");
        let root = tmp.path().join("repo");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&root).expect("mkdir repo");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let repo = TestRepo { tmp, root, home };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Test User"]);
        repo.git(&["config", "user.email", "user@example.com"]);
        repo
    }

    /// A repository with one commit holding `files` (path, contents).
    pub fn with_files(files: &[(&str, &str)]) -> TestRepo {
        let repo = TestRepo::empty();
        for (path, contents) in files {
            repo.write(path, contents);
        }
        repo.commit_all("initial");
        repo
    }

    /// Writes a file in the main worktree, creating parent folders.
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir parent");
        }
        std::fs::write(&path, contents).expect("write file");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).expect("read file")
    }

    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// A `git` command in the main worktree with the isolated environment.
    pub fn git_cmd(&self, args: &[&str]) -> Command {
        git_in(&self.root, &self.home, args)
    }

    /// Runs `git`, panics on failure, returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        run_ok(self.git_cmd(args))
    }

    /// Runs `git` in another directory (a worktree) with the same environment.
    pub fn git_at(&self, dir: &Path, args: &[&str]) -> String {
        run_ok(git_in(dir, &self.home, args))
    }

    /// The folder treefarm uses for worktrees by default: `../repo.treefarm`.
    pub fn worktree_dir(&self) -> PathBuf {
        self.tmp.path().join("repo.treefarm")
    }

    /// The `treefarm` binary, run in the repository with a cleared environment.
    pub fn treefarm(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_treefarm"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(&self.root);
        isolated_env(&mut cmd, &self.home);
        cmd
    }

    /// A snapshot of the main worktree's observable state: HEAD, index and
    /// status, to compare before and after treefarm ran.
    pub fn main_snapshot(&self) -> String {
        format!(
            "HEAD {}\nref {}\nindex {}\nstatus\n{}",
            self.git(&["rev-parse", "HEAD"]),
            self.git(&["symbolic-ref", "-q", "HEAD"]),
            self.git(&["ls-files", "-s"]),
            self.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        )
    }
}

pub fn git_in(dir: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(dir);
    isolated_env(&mut cmd, home);
    cmd
}

/// Runs a command, panics with its output when it fails, returns trimmed stdout.
pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("spawn command");
    assert!(
        out.status.success(),
        "command {:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// --- t3 helpers ---

/// A repository set up for crash tests: specs driven by the scripted agent
/// (through a wrapper that records every start and exit), a `post-commit`
/// hook that records every commit an agent makes with `git commit`, and a
/// `treefarm.yaml` with `instances`.
pub struct CrashRepo {
    pub repo: TestRepo,
    /// `(id, file, demo-agent directives)` of every spec.
    pub specs: Vec<(String, String)>,
}

/// Where the crash fixtures record what agents did, outside the repository.
pub fn crash_record_dir(repo: &TestRepo) -> PathBuf {
    repo.tmp.path().join("record")
}

impl CrashRepo {
    /// `specs`: `(id, declared file, demo-agent directives)`. An agent whose
    /// id `gated` lists does its work, notes itself in `<record>/waiting`,
    /// then waits for `<record>/go-<id>` before it exits.
    pub fn new(specs: &[(&str, &str, &str)], instances: usize, gated: &[&str]) -> CrashRepo {
        let mut files: Vec<(String, String)> = vec![("README.md".into(), "# crash test\n".into())];
        for (id, file, directives) in specs {
            files.push((file.to_string(), format!("{id} original\n")));
            files.push((
                format!("specs/SPEC-{id}-work.md"),
                format!("# Work {id}\n\n**File**: `{file}`\n\n```demo-agent\n{directives}\n```\n"),
            ));
        }
        let file_refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let repo = TestRepo::with_files(&file_refs);
        let record = crash_record_dir(&repo);
        std::fs::create_dir_all(&record).expect("mkdir record");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-agent.sh");
        let gated_ids = gated.join(" ");
        let agent = format!(
            "#!/bin/sh\n\
             rec='{rec}'\n\
             echo \"$TREEFARM_SPEC_ID $$\" >> \"$rec/starts\"\n\
             sh '{script}'\n\
             code=$?\n\
             for g in {gated_ids}; do\n\
               if [ \"$g\" = \"$TREEFARM_SPEC_ID\" ]; then\n\
                 echo \"$TREEFARM_SPEC_ID $$\" >> \"$rec/waiting\"\n\
                 while [ ! -e \"$rec/go-$g\" ]; do sleep 0.02; done\n\
               fi\n\
             done\n\
             echo \"$TREEFARM_SPEC_ID $code\" >> \"$rec/exits\"\n\
             exit $code\n",
            rec = record.display(),
            script = script.display(),
        );
        std::fs::write(record.join("agent.sh"), agent).expect("write agent wrapper");
        let hook = repo.root.join(".git/hooks/post-commit");
        std::fs::create_dir_all(hook.parent().expect("hooks dir")).expect("mkdir hooks");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ngit rev-parse HEAD >> '{}/commits'\n",
                record.display()
            ),
        )
        .expect("write hook");
        let mut perms = std::fs::metadata(&hook).expect("hook").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&hook, perms).expect("chmod hook");
        repo.write(
            "treefarm.yaml",
            &format!(
                "agent:\n  command: sh '{}'\n  timeout: 2m\n  kill_grace: 2s\ninstances: {instances}\n",
                record.join("agent.sh").display()
            ),
        );
        repo.commit_all("treefarm config");
        // Commits made so far (fixtures) are not agent commits.
        let _ = std::fs::remove_file(record.join("commits"));
        CrashRepo {
            specs: specs
                .iter()
                .map(|(id, file, _)| (id.to_string(), file.to_string()))
                .collect(),
            repo,
        }
    }

    pub fn record(&self) -> PathBuf {
        crash_record_dir(&self.repo)
    }

    /// Lines of a record file (`starts`, `exits`, `commits`), empty if none.
    pub fn recorded(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.record().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Lets the gated agent `id` go on.
    pub fn release(&self, id: &str) {
        std::fs::write(self.record().join(format!("go-{id}")), "").expect("write go file");
    }

    /// `treefarm run` killed at `point` (`TREEFARM_CRASH_AT`); asserts it
    /// really died of SIGKILL there.
    pub fn run_crashing_at(&self, point: &str) -> Output {
        let out = self
            .repo
            .treefarm()
            .args(["run"])
            .env("TREEFARM_CRASH_AT", point)
            .output()
            .expect("spawn treefarm run");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "treefarm run should have been SIGKILLed at `{point}`, got {}\nstderr:\n{}",
            out.status,
            stderr(&out)
        );
        out
    }

    pub fn resume(&self) -> Output {
        self.repo
            .treefarm()
            .arg("resume")
            .output()
            .expect("spawn treefarm resume")
    }

    /// Everything a second `resume` must leave identical: every ref, the
    /// worktree list, the main worktree.
    pub fn git_state(&self) -> String {
        format!(
            "{}\n--\n{}\n--\n{}",
            self.repo
                .git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            self.repo.git(&["worktree", "list", "--porcelain"]),
            self.repo.main_snapshot()
        )
    }

    /// Every commit an agent made is reachable from `roadmap`, a
    /// `treefarm/*` branch or an archive ref; returns the unreachable ones.
    pub fn lost_commits(&self) -> Vec<String> {
        let tips: Vec<String> = self
            .repo
            .git(&[
                "for-each-ref",
                "--format=%(refname)",
                "refs/heads/roadmap",
                "refs/heads/treefarm",
                "refs/treefarm",
            ])
            .lines()
            .map(str::to_string)
            .collect();
        self.recorded("commits")
            .into_iter()
            .filter(|c| {
                !tips.iter().any(|t| {
                    self.repo
                        .git_cmd(&["merge-base", "--is-ancestor", c, t])
                        .status()
                        .expect("git merge-base")
                        .success()
                })
            })
            .collect()
    }

    /// The agent wrapper processes recorded in `starts` that are still alive.
    pub fn agents_alive(&self) -> Vec<u32> {
        self.recorded("starts")
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(*pid))
            .collect()
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl CrashRepo {
    /// The journal (`state.json`) of the only run in the repository.
    pub fn state_json(&self) -> serde_json::Value {
        let runs = self.repo.root.join(".git/treefarm/runs");
        let run = std::fs::read_dir(&runs)
            .expect("runs folder")
            .flatten()
            .find(|e| e.path().is_dir())
            .expect("one run");
        let bytes = std::fs::read(run.path().join("state.json")).expect("state.json");
        serde_json::from_slice(&bytes).expect("state.json is JSON")
    }

    /// The journal's record of instance `id`.
    pub fn instance_json(&self, id: &str) -> serde_json::Value {
        self.state_json()["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .expect("instance in journal")
    }
}

/// Polls `done` until it holds: waiting on the event a test means (a file,
/// a journal state, a process gone), bounded so a broken product fails the
/// test instead of hanging it.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// True while `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}
