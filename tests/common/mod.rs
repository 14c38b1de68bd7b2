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

// --- t4 helpers ---

/// The exit code of a finished process; panics if a signal killed it.
pub fn exit_code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status))
}

/// stdout parsed as one JSON document.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// Panics with both streams unless the process exited with `code`.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

impl TestRepo {
    /// Runs `treefarm args..` in the repository and returns its output.
    pub fn tf(&self, args: &[&str]) -> Output {
        self.treefarm().args(args).output().expect("spawn treefarm")
    }

    /// A Markdown spec `specs/SPEC-<id>-<slug>.md` with front matter.
    pub fn write_spec(&self, id: &str, slug: &str, front_matter: &str, body: &str) {
        self.write(
            &format!("specs/SPEC-{id}-{slug}.md"),
            &format!("---\n{front_matter}---\n{body}"),
        );
    }

    /// Everything treefarm could create or change, as text: every ref, the
    /// worktree list, the state directory, the worktree folder beside the
    /// repository, and the main worktree's HEAD, index and status. Equal
    /// before and after a command means it created nothing.
    pub fn footprint(&self) -> String {
        let common = self.git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
        let state = Path::new(&common).join("treefarm");
        format!(
            "refs\n{}\nworktrees\n{}\nstate dir exists: {}\nworktree dir exists: {}\n{}",
            self.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            self.git(&["worktree", "list", "--porcelain"]),
            state.exists(),
            self.worktree_dir().exists(),
            self.main_snapshot_or_unborn(),
        )
    }

    /// [`TestRepo::main_snapshot`], also in a repository without commits.
    pub fn main_snapshot_or_unborn(&self) -> String {
        let head = self
            .git_cmd(&["rev-parse", "-q", "--verify", "HEAD"])
            .output()
            .expect("spawn git");
        if head.status.success() {
            self.main_snapshot()
        } else {
            format!(
                "unborn HEAD\nstatus\n{}",
                self.git(&["status", "--porcelain=v1", "--untracked-files=all"])
            )
        }
    }

    /// The local branches, sorted.
    pub fn branches(&self) -> Vec<String> {
        let list = self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads"]);
        let mut names: Vec<String> = list.lines().map(str::to_owned).collect();
        names.sort();
        names
    }
}
