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
        .env("NO_COLOR", "1")
        // Isolation is the default (`auto`: Landlock where the kernel has
        // it) and so is the merge queue: nothing here turns them off. The
        // stagger stays on too; its interval is shortened from the default
        // 1s (`config_pacing` proves the default value) so that a test of
        // five specs does not wait four seconds — the start gate, the
        // window and the pacer still run as users get them.
        .env_remove("TREEFARM_ISOLATION")
        .env("TREEFARM_AGENT_START_INTERVAL", "100ms");
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
    pub fn with_files<P: AsRef<str>, C: AsRef<str>>(files: &[(P, C)]) -> TestRepo {
        let repo = TestRepo::empty();
        for (path, contents) in files {
            repo.write(path.as_ref(), contents.as_ref());
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

/// Whether a run with the default `isolation: auto` confines its agents
/// here. The binary itself decides: `--isolation landlock` is refused (exit
/// 2) without kernel support, which is what this probe looks at.
pub fn landlock_available() -> bool {
    let repo = TestRepo::with_files(&[("a.txt", "a\n")]);
    let out = repo.tf(&["run", "--isolation", "landlock", "nothing-matches"]);
    !stderr(&out).contains("isolation: landlock was asked for")
}

/// `isolation.allow_write` naming `paths`, as `treefarm.yaml` lines: the
/// folders outside every worktree where a test's scripted agents record what
/// they saw (a user names such a folder the same way).
pub fn allow_write_yaml(paths: &[&Path]) -> String {
    let mut yaml = String::from("isolation:\n  allow_write:\n");
    for path in paths {
        yaml.push_str(&format!("    - '{}'\n", path.display()));
    }
    yaml
}

/// The scripted agent of the source tree, as an `agent.command` (its path
/// quoted: the checkout may have spaces in it).
pub fn demo_agent_command() -> String {
    format!("sh '{}/scripts/demo-agent.sh'", env!("CARGO_MANIFEST_DIR"))
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

/// The events of `run --json` / `merge --json` (stdout, JSON Lines); panics
/// on any line that is not a JSON object with an `event`.
pub fn json_events(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert!(v["event"].is_string(), "event without `event`: {line}");
            v
        })
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
    /// scripted agent; `$RECORDS` in the body is [`TestRepo::records`].
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
                    "#!/bin/sh\nDEMO_AGENT='{}/scripts/demo-agent.sh'\nRECORDS='{}'\n{body}\nexec sh \"$DEMO_AGENT\"\n",
                    env!("CARGO_MANIFEST_DIR"),
                    repo.records().display()
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
        let allow = if extra_config.contains("isolation:") {
            String::new()
        } else {
            allow_write_yaml(&[&repo.records()])
        };
        repo.write(
            "treefarm.yaml",
            &format!(
                "agent:\n  command: {agent_command}\n  timeout: 2m\n  kill_grace: 1s\n{extra_config}{allow}"
            ),
        );
        repo.commit_all("initial");
        repo
    }

    /// `treefarm <args>` with `TREEFARM_CRASH_AT=<point>`: it must end
    /// killed there (SIGKILL).
    pub fn tf_crashing(&self, args: &[&str], point: &str) -> Output {
        let out = self
            .treefarm()
            .args(args)
            .env("TREEFARM_CRASH_AT", point)
            .output()
            .expect("spawn treefarm");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "treefarm {args:?} should have been SIGKILLed at `{point}`, got {}\nstderr:\n{}",
            out.status,
            stderr(&out)
        );
        out
    }

    /// `treefarm <args>`, returning its output whatever the exit code.
    pub fn tf(&self, args: &[&str]) -> Output {
        self.treefarm().args(args).output().expect("spawn treefarm")
    }

    /// The journal (`state.json`) of the only (or latest) run.
    pub fn run_state(&self) -> serde_json::Value {
        let ids = self.run_ids();
        let last = ids.last().expect("at least one run");
        let text = std::fs::read_to_string(self.runs_dir().join(last).join("state.json"))
            .expect("read state.json");
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

// Driving `treefarm run` end to end: specs with demo-agent directives, the
// config file, the JSON Lines output, the run directory, and waiting on files
// and processes with generous upper bounds (never sleeping to synchronise).

impl TestRepo {
    /// Writes `specs/SPEC-<id>-<slug>.md` declaring `files`, with `directives`
    /// as its ```demo-agent block (none when empty).
    pub fn write_listed_spec(&self, id: &str, slug: &str, files: &[&str], directives: &str) {
        let mut text = format!("# Spec {id} {slug}\n\nDo the {slug} work.\n\n**Files**:\n");
        for f in files {
            text.push_str(&format!("- `{f}`\n"));
        }
        if !directives.is_empty() {
            text.push_str(&format!("\n```demo-agent\n{directives}\n```\n"));
        }
        self.write(&format!("specs/SPEC-{id}-{slug}.md"), &text);
    }

    /// The run ids recorded so far, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.runs_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The only run recorded so far.
    pub fn only_run(&self) -> PathBuf {
        let ids = self.run_ids();
        assert_eq!(ids.len(), 1, "expected exactly one run, found {ids:?}");
        self.runs_dir().join(&ids[0])
    }

    /// Every ref in the repository with its target, for "nothing was created".
    pub fn refs(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    /// `git worktree list --porcelain`, paths as given.
    pub fn worktrees_porcelain(&self) -> String {
        self.git(&["worktree", "list", "--porcelain"])
    }

    /// `treefarm status --json` parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self
            .treefarm()
            .args(["status", "--json"])
            .output()
            .expect("run status");
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

/// The events of kind `kind` (optionally for spec `id`).
pub fn events_of<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
    id: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == kind && id.is_none_or(|id| e["id"] == id))
        .collect()
}

/// Polls `cond` every 20 ms until it holds; panics after `secs` seconds with
/// `what`.
pub fn wait_until_within(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// True when no live process has `pid`: gone, or a zombie nobody reaped.
pub fn pid_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

/// Reads a pid written by an agent (waiting for the file to appear).
pub fn read_pid(path: &Path, secs: u64) -> u32 {
    wait_until_within(secs, &format!("pid file {}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

impl TestRepo {
    /// Writes `treefarm.yaml`: the demo agent with a 300 ms kill grace and a
    /// 20 s timeout (so a bug cannot hang a test) unless `agent_extra` (lines
    /// already indented under `agent:`) sets its own; then top-level `extra`.
    pub fn write_demo_config(&self, agent_extra: &str, extra: &str) {
        let mut agent = format!("  command: \"{}\"\n", demo_agent_command());
        if !agent_extra.contains("  timeout:") {
            agent.push_str("  timeout: 20s\n");
        }
        if !agent_extra.contains("  kill_grace:") {
            agent.push_str("  kill_grace: 300ms\n");
        }
        let mut yaml = format!("agent:\n{agent}{agent_extra}{extra}");
        if !extra.contains("isolation:") {
            yaml.push_str(&allow_write_yaml(&[&self.records()]));
        }
        self.write("treefarm.yaml", &yaml);
    }

    /// A folder outside every worktree where a test's scripted agents (and
    /// setup commands) record what they saw; the configs the fixtures write
    /// name it in `isolation.allow_write`, as a user names such a folder.
    pub fn records(&self) -> PathBuf {
        let path = self.tmp.path().join("records");
        std::fs::create_dir_all(&path).expect("mkdir records");
        path
    }
}

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
                "agent:\n  command: sh '{}'\n  timeout: 2m\n  kill_grace: 2s\ninstances: {instances}\n{}",
                record.join("agent.sh").display(),
                allow_write_yaml(&[&record]),
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
        self.repo.tf_crashing(&["run"], point)
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
            .filter(|pid| pid_alive(*pid))
            .collect()
    }
}

/// Polls `done` until it holds: waiting on the event a test means (a file,
/// a journal state, a process gone), bounded so a broken product fails the
/// test instead of hanging it.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_within(60, what, done);
}

/// True while `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    !pid_dead(pid)
}

/// The limits of a run's `concurrency` events (issue 15): each of `max`,
/// the first a halving of `max` (the first rate limit), and the window grew
/// again after its last drop. Returns the limits.
pub fn window_dropped_and_recovered(events: &[serde_json::Value], max: u64) -> Vec<u64> {
    let limits: Vec<u64> = events_of(events, "concurrency", None)
        .iter()
        .map(|e| {
            assert_eq!(e["max"], max, "{e}");
            e["limit"].as_u64().expect("limit")
        })
        .collect();
    assert_eq!(limits.first(), Some(&(max / 2)), "{limits:?}");
    let last_drop = (1..limits.len())
        .rev()
        .find(|&i| limits[i] < limits[i - 1])
        .unwrap_or(0);
    assert!(
        limits[last_drop + 1..]
            .iter()
            .any(|l| *l > limits[last_drop]),
        "recovered after the last drop: {limits:?}"
    );
    limits
}

/// `per` files in each of `dirs` (`a/f0.txt` holding `a 0`, …): the folders
/// of a repository that sparse and collection tests narrow down to one.
pub fn folders_of_files(dirs: &[&str], per: usize) -> Vec<(String, String)> {
    dirs.iter()
        .flat_map(|d| (0..per).map(move |i| (format!("{d}/f{i}.txt"), format!("{d} {i}\n"))))
        .collect()
}
