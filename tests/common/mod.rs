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

// --- t2 helpers ---

/// The scripted agent of the source tree, as an `agent.command`.
pub fn demo_agent_command() -> String {
    format!("sh {}/scripts/demo-agent.sh", env!("CARGO_MANIFEST_DIR"))
}

/// A Markdown spec with front matter: `files`, optional `depends_on` and
/// `priority`, and the demo agent's directives.
pub fn spec_md(
    title: &str,
    files: &[&str],
    depends_on: &[&str],
    priority: Option<i64>,
    directives: &str,
) -> String {
    let mut s = format!("---\ntitle: {title}\nfiles: [{}]\n", files.join(", "));
    if !depends_on.is_empty() {
        s.push_str(&format!("depends_on: [{}]\n", depends_on.join(", ")));
    }
    if let Some(p) = priority {
        s.push_str(&format!("priority: {p}\n"));
    }
    s.push_str(&format!(
        "---\n# {title}\n\nDo the work.\n\n```demo-agent\n{directives}\n```\n"
    ));
    s
}

/// The events of `run --json` / `merge --json` (stdout, JSON Lines).
pub fn json_events(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The `summary` event, which must be the last one.
pub fn json_summary(out: &Output) -> serde_json::Value {
    let events = json_events(out);
    let last = events
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no events; stderr:\n{}", stderr(out)));
    assert_eq!(
        last["event"], "summary",
        "last event is not the summary: {last}"
    );
    last
}

/// The ids listed under `key` in a summary (`merged`, `refused`, …; for
/// `conflicted` the `id` of each entry).
pub fn summary_ids(summary: &serde_json::Value, key: &str) -> Vec<String> {
    summary[key]
        .as_array()
        .unwrap_or_else(|| panic!("summary has no `{key}` list: {summary}"))
        .iter()
        .map(|v| {
            v.get("id")
                .unwrap_or(v)
                .as_str()
                .expect("id is a string")
                .to_string()
        })
        .collect()
}

impl TestRepo {
    /// A repository whose first commit holds `files`, the given specs
    /// (`(file name under specs/, contents)`) and a `treefarm.yaml` running
    /// the demo agent, plus `extra_config` lines.
    pub fn farm(files: &[(&str, &str)], specs: &[(&str, String)], extra_config: &str) -> TestRepo {
        TestRepo::farm_inner(files, specs, None, extra_config)
    }

    /// Like [`TestRepo::farm`], the agent being a shell script (in the temp
    /// dir, outside the repository) that runs `wrapper_body` then execs the
    /// scripted agent.
    pub fn farm_with_wrapper(
        files: &[(&str, &str)],
        specs: &[(&str, String)],
        wrapper_body: &str,
        extra_config: &str,
    ) -> TestRepo {
        TestRepo::farm_inner(files, specs, Some(wrapper_body), extra_config)
    }

    fn farm_inner(
        files: &[(&str, &str)],
        specs: &[(&str, String)],
        wrapper_body: Option<&str>,
        extra_config: &str,
    ) -> TestRepo {
        let repo = TestRepo::empty();
        let agent_command = match wrapper_body {
            None => demo_agent_command(),
            Some(body) => {
                let path = repo.tmp.path().join("agent-wrapper.sh");
                let script = format!(
                    "#!/bin/sh\nDEMO_AGENT='{}/scripts/demo-agent.sh'\n{body}\nexec sh \"$DEMO_AGENT\"\n",
                    env!("CARGO_MANIFEST_DIR")
                );
                std::fs::write(&path, script).expect("write agent wrapper");
                format!("sh {}", path.display())
            }
        };
        for (path, contents) in files {
            repo.write(path, contents);
        }
        for (name, contents) in specs {
            repo.write(&format!("specs/{name}"), contents);
        }
        repo.write(
            "treefarm.yaml",
            &format!(
                "agent:\n  command: {agent_command}\n  timeout: 2m\n  kill_grace: 1s\n{extra_config}"
            ),
        );
        repo.commit_all("initial");
        repo
    }

    /// `treefarm <args>`, returning its output whatever the exit code.
    pub fn tf(&self, args: &[&str]) -> Output {
        self.treefarm().args(args).output().expect("spawn treefarm")
    }

    /// The journal (`state.json`) of the only (or latest) run.
    pub fn run_state(&self) -> serde_json::Value {
        let runs = self.runs_dir();
        let mut ids: Vec<String> = std::fs::read_dir(&runs)
            .expect("read runs dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        ids.sort();
        let last = ids.last().expect("at least one run");
        let text =
            std::fs::read_to_string(runs.join(last).join("state.json")).expect("read state.json");
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join(".git/treefarm/runs")
    }

    /// The journalled record of instance `id` in the latest run.
    pub fn instance(&self, id: &str) -> serde_json::Value {
        let state = self.run_state();
        state["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no instance {id} in {state}"))
    }

    /// `git branch --list 'treefarm/*'`, names only.
    pub fn treefarm_branches(&self) -> Vec<String> {
        let out = self.git(&[
            "branch",
            "--list",
            "treefarm/*",
            "--format=%(refname:short)",
        ]);
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The `worktree` paths of `git worktree list --porcelain`.
    pub fn worktree_paths(&self) -> Vec<PathBuf> {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(PathBuf::from)
            .collect()
    }

    /// First-parent subjects of `rev`, newest first.
    pub fn first_parent_subjects(&self, rev: &str) -> Vec<String> {
        self.git(&["log", "--first-parent", "--format=%s", rev])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `git show rev:path`.
    pub fn show(&self, rev: &str, path: &str) -> String {
        self.git(&["show", &format!("{rev}:{path}")])
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub fn is_ancestor(&self, a: &str, b: &str) -> bool {
        self.git_cmd(&["merge-base", "--is-ancestor", a, b])
            .status()
            .expect("spawn git")
            .success()
    }
}
