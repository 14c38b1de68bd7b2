//! The embedded agent wrappers, run the way treefarm runs them (`sh -c` in a
//! real worktree, the TREEFARM_* environment set) against the faithful fake
//! CLIs in tests/fakes, which refuse the flags the real CLIs would refuse.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{isolated_env, TestRepo};
use treefarm::agents::{
    materialize_wrapper, preset, preset_command, preset_env, render_prompt, PromptContext,
};

const FAKES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes");
const SPEC_BODY: &str = "Add retries to the HTTP client.\n";

/// A repository with one instance planted: worktree, branch, run directory.
struct Instance {
    repo: TestRepo,
    worktree: PathBuf,
    run_dir: PathBuf,
    spec_file: PathBuf,
    prompt_file: PathBuf,
    status_file: PathBuf,
    record: PathBuf,
    files: Vec<String>,
}

fn plant() -> Instance {
    let repo = TestRepo::with_files(&[
        ("src/lib.rs", "pub fn f() {}\n"),
        (
            "specs/SPEC-020-retry.md",
            "# Retry\n\nAdd retries to the HTTP client.\n",
        ),
    ]);
    std::fs::create_dir_all(repo.worktree_dir()).expect("mkdir worktree dir");
    let worktree = repo.worktree_dir().join("020");
    let wt = worktree.to_str().expect("utf-8 path");
    repo.git(&["worktree", "add", "-q", "-b", "treefarm/020", wt, "main"]);
    let worktree = worktree.canonicalize().expect("canonical worktree");
    let run_dir = repo.tmp.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir run");
    let run_dir = run_dir.canonicalize().expect("canonical run dir");
    let files = vec![
        "src/lib.rs".to_string(),
        "src/retry/mod.rs".to_string(),
        "docs/retry/**".to_string(),
    ];
    let prompt = render_prompt(
        None,
        &PromptContext {
            id: "020",
            title: "Retry",
            body: SPEC_BODY,
            files: &files,
            branch: "treefarm/020",
            target: "roadmap",
            worktree: &worktree,
        },
    )
    .expect("render prompt");
    let prompt_file = run_dir.join("prompt-020.md");
    std::fs::write(&prompt_file, prompt).expect("write prompt");
    Instance {
        spec_file: repo.root.join("specs/SPEC-020-retry.md"),
        status_file: run_dir.join("status-020.json"),
        record: run_dir.join("record"),
        repo,
        worktree,
        run_dir,
        prompt_file,
        files,
    }
}

impl Instance {
    /// Runs preset `name` the way the runner does, with `path` as PATH.
    fn run(&self, name: &str, path: &str, env: &[(&str, &str)]) -> Output {
        let p = preset(name).expect("preset");
        let wrapper = materialize_wrapper(p, &self.run_dir).expect("materialize");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(preset_command(&wrapper))
            .env_clear()
            .current_dir(&self.worktree)
            .stdin(Stdio::null());
        isolated_env(&mut cmd, &self.repo.home);
        cmd.env("PATH", path)
            .env("TREEFARM_RUN_ID", "run-1")
            .env("TREEFARM_SPEC_ID", "020")
            .env("TREEFARM_SPEC_FILE", &self.spec_file)
            .env("TREEFARM_WORKTREE", &self.worktree)
            .env("TREEFARM_BRANCH", "treefarm/020")
            .env("TREEFARM_TARGET", "roadmap")
            .env(
                "TREEFARM_BASE_COMMIT",
                self.repo.git(&["rev-parse", "main"]),
            )
            .env("TREEFARM_FILES", self.files.join("\n"))
            .env("TREEFARM_STATUS_FILE", &self.status_file)
            .env("TREEFARM_SLOT", "0")
            .env("TREEFARM_PORT", "20000")
            .env("TREEFARM_PROMPT_FILE", &self.prompt_file)
            .env("FAKE_AGENT_RECORD", &self.record);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run wrapper")
    }

    /// PATH with the fakes first.
    fn fake_path(&self) -> String {
        format!("{FAKES}:{}", std::env::var("PATH").unwrap_or_default())
    }

    fn recorded(&self) -> Record {
        let text = std::fs::read_to_string(&self.record).expect("fake was not called");
        let mut rec = Record::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("cwd=") {
                rec.cwd = PathBuf::from(v);
            } else if let Some(v) = line.strip_prefix("stdin=") {
                rec.stdin_bytes = v.to_string();
            } else if let Some(v) = line.strip_prefix("arg=") {
                rec.args.push(v.to_string());
            }
        }
        rec.stdin =
            std::fs::read_to_string(self.record.with_extension("stdin")).unwrap_or_default();
        rec.status_seen =
            std::fs::read_to_string(self.record.with_extension("status")).unwrap_or_default();
        rec
    }

    fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.status_file).expect("status file");
        serde_json::from_str(&text).expect("status json")
    }

    fn prompt(&self) -> String {
        std::fs::read_to_string(&self.prompt_file).expect("prompt")
    }

    fn git_wt(&self, args: &[&str]) -> String {
        self.repo.git_at(&self.worktree, args)
    }

    fn last_subject(&self) -> String {
        self.repo.git(&["log", "-1", "--format=%s", "treefarm/020"])
    }

    /// The edits every fake makes: a line appended to each literal declared
    /// path, none for the glob.
    fn assert_declared_files_edited(&self, agent: &str) {
        let lib = std::fs::read_to_string(self.worktree.join("src/lib.rs")).expect("lib.rs");
        assert_eq!(
            lib,
            format!("pub fn f() {{}}\nedited by fake {agent} for 020\n")
        );
        let new = std::fs::read_to_string(self.worktree.join("src/retry/mod.rs")).expect("mod.rs");
        assert_eq!(new, format!("edited by fake {agent} for 020\n"));
        assert!(!self.worktree.join("docs").exists());
    }

    fn assert_committed_cleanly(&self, subject: &str) {
        assert_eq!(self.last_subject(), subject);
        assert_eq!(
            self.git_wt(&["status", "--porcelain", "--untracked-files=all"]),
            "",
            "worktree left dirty"
        );
        let changed = self
            .repo
            .git(&["diff", "--name-only", "main", "treefarm/020"]);
        assert_eq!(changed, "src/lib.rs\nsrc/retry/mod.rs");
    }
}

#[derive(Debug, Default)]
struct Record {
    cwd: PathBuf,
    stdin_bytes: String,
    stdin: String,
    status_seen: String,
    args: Vec<String>,
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "wrapper failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_done(inst: &Instance, rec: &Record) {
    let status = inst.status();
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["progress"], 100);
    assert!(
        rec.status_seen.contains("\"working\""),
        "{}",
        rec.status_seen
    );
    assert_eq!(rec.cwd, inst.worktree);
}

// --- Claude Code ---------------------------------------------------------------

/// What the claude-code wrapper passes instead of the permission bypass.
const CLAUDE_ALLOW_LIST: [&str; 17] = [
    "--permission-mode",
    "acceptEdits",
    "--allowedTools",
    "Read",
    "Edit",
    "MultiEdit",
    "Write",
    "Glob",
    "Grep",
    "LS",
    "NotebookEdit",
    "TodoWrite",
    "Bash(git add:*)",
    "Bash(git commit:*)",
    "Bash(git status:*)",
    "Bash(git diff:*)",
    "Bash(git log:*)",
];

#[test]
fn claude_runs_print_mode_without_permission_prompts_and_commits() {
    let inst = plant();
    let out = inst.run("claude-code", &inst.fake_path(), &[]);
    assert_ok(&out);
    let rec = inst.recorded();
    let mut expected = vec!["-p", "--output-format", "stream-json", "--verbose"];
    if treefarm::procfs::running_as_root() {
        // Claude Code refuses the bypass as root: an allow-list that still
        // lets it edit and commit.
        expected.extend(CLAUDE_ALLOW_LIST);
    } else {
        expected.push("--dangerously-skip-permissions");
    }
    assert_eq!(rec.args, expected);
    // The prompt on stdin: no argv size limit.
    assert_eq!(rec.stdin, inst.prompt());
    assert_eq!(rec.stdin_bytes, inst.prompt().len().to_string());
    assert_done(&inst, &rec);
    inst.assert_declared_files_edited("claude");
    inst.assert_committed_cleanly("claude: 020");
}

#[test]
fn claude_gets_model_and_extra_args() {
    let inst = plant();
    let mut env = preset_env(
        Some("opus"),
        &[
            "--max-turns".into(),
            "5".into(),
            "--append-system-prompt".into(),
            "be brief".into(),
        ],
    );
    env.push((
        "TREEFARM_CLAUDE_PERMISSION_MODE".into(),
        "acceptEdits".into(),
    ));
    env.push((
        "TREEFARM_AGENT_ALLOWED_COMMANDS".into(),
        "cargo test\nmake check".into(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = inst.run("claude-code", &inst.fake_path(), &env);
    assert_ok(&out);
    let rec = inst.recorded();
    let allow_end = 4 + CLAUDE_ALLOW_LIST.len();
    assert_eq!(rec.args[4..allow_end], CLAUDE_ALLOW_LIST);
    assert_eq!(
        rec.args[allow_end..],
        [
            "Bash(cargo test:*)",
            "Bash(make check:*)",
            "--model",
            "opus",
            "--max-turns",
            "5",
            "--append-system-prompt",
            "be brief"
        ]
    );
    // acceptEdits with the allow-list still lets Claude run `git commit`.
    inst.assert_declared_files_edited("claude");
    inst.assert_committed_cleanly("claude: 020");
}

// --- Codex -----------------------------------------------------------------------

#[test]
fn codex_runs_exec_in_a_writable_sandbox_and_commits() {
    let inst = plant();
    let out = inst.run("codex", &inst.fake_path(), &[]);
    assert_ok(&out);
    let rec = inst.recorded();
    let git_dir = inst.repo.root.join(".git").canonicalize().expect("git dir");
    // The worktree's own git dir (its index, HEAD) and the common dir.
    let own = git_dir.join("worktrees").join("020");
    assert_eq!(
        rec.args,
        [
            "exec",
            "--sandbox",
            "workspace-write",
            "--add-dir",
            own.to_str().expect("utf-8"),
            "--add-dir",
            git_dir.to_str().expect("utf-8"),
            "--json",
            "--color",
            "never",
            "-"
        ]
    );
    assert_eq!(rec.stdin, inst.prompt(), "the prompt goes to stdin");
    assert_done(&inst, &rec);
    inst.assert_declared_files_edited("codex");
    inst.assert_committed_cleanly("codex: 020");
}

#[test]
fn codex_gets_model_and_extra_args_before_the_prompt() {
    let inst = plant();
    let env = preset_env(Some("gpt-5-codex"), &["--ephemeral".into()]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = inst.run("codex", &inst.fake_path(), &env);
    assert_ok(&out);
    let rec = inst.recorded();
    let n = rec.args.len();
    assert_eq!(
        rec.args[n - 4..],
        ["--model", "gpt-5-codex", "--ephemeral", "-"]
    );
}

#[test]
fn codex_fake_refuses_what_codex_exec_refuses() {
    // The fake is a contract: an approval flag exec does not take, or no
    // writable sandbox, is refused like the real CLI would.
    let inst = plant();
    let env = preset_env(None, &["-a".into(), "never".into()]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = inst.run("codex", &inst.fake_path(), &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '-a'"));
    assert_eq!(inst.status()["state"], "failed");

    let out = inst.run(
        "codex",
        &inst.fake_path(),
        &[("TREEFARM_CODEX_SANDBOX", "read-only")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

// --- aider -----------------------------------------------------------------------

#[test]
fn aider_runs_one_message_with_the_files_and_auto_commits() {
    let inst = plant();
    let out = inst.run("aider", &inst.fake_path(), &[]);
    assert_ok(&out);
    let rec = inst.recorded();
    let hist = inst.run_dir.join("aider-020");
    let input_hist = format!("{}.input.history", hist.display());
    let chat_hist = format!("{}.chat.history.md", hist.display());
    assert_eq!(
        rec.args,
        [
            "--message-file",
            inst.prompt_file.to_str().expect("utf-8"),
            "--yes-always",
            "--auto-commits",
            "--no-gitignore",
            "--no-analytics",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-pretty",
            // Usage: aider's token report then has the provider's counts.
            "--no-stream",
            "--no-fancy-input",
            "--no-detect-urls",
            "--no-suggest-shell-commands",
            "--input-history-file",
            &input_hist,
            "--chat-history-file",
            &chat_hist,
            "src/lib.rs",
            "src/retry/mod.rs",
        ]
    );
    assert_done(&inst, &rec);
    inst.assert_declared_files_edited("aider");
    // Nothing of aider's own is left in the worktree: no .gitignore edit, no
    // history, no repo-map cache.
    inst.assert_committed_cleanly("aider: 020");
    assert!(std::fs::read_to_string(&chat_hist)
        .expect("chat history")
        .contains("Add retries"));
}

#[test]
fn aider_gets_model_and_extra_args_before_the_files() {
    let inst = plant();
    let env = preset_env(Some("sonnet"), &["--map-tokens".into(), "0".into()]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = inst.run("aider", &inst.fake_path(), &env);
    assert_ok(&out);
    let rec = inst.recorded();
    let n = rec.args.len();
    assert_eq!(
        rec.args[n - 6..],
        [
            "--model",
            "sonnet",
            "--map-tokens",
            "0",
            "src/lib.rs",
            "src/retry/mod.rs"
        ]
    );
}

// --- Gemini CLI --------------------------------------------------------------------

#[test]
fn gemini_runs_headless_in_yolo_mode_and_commits() {
    let inst = plant();
    let out = inst.run("gemini", &inst.fake_path(), &[]);
    assert_ok(&out);
    let rec = inst.recorded();
    assert_eq!(
        rec.args,
        ["--approval-mode", "yolo", "--output-format", "stream-json"]
    );
    // The prompt on stdin: no argv size limit.
    assert_eq!(rec.stdin, inst.prompt());
    assert_done(&inst, &rec);
    inst.assert_declared_files_edited("gemini");
    inst.assert_committed_cleanly("gemini: 020");
}

#[test]
fn gemini_gets_model_and_extra_args() {
    let inst = plant();
    let env = preset_env(Some("flash"), &["--output-format".into(), "json".into()]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = inst.run("gemini", &inst.fake_path(), &env);
    assert_ok(&out);
    assert_eq!(
        inst.recorded().args[4..],
        ["--model", "flash", "--output-format", "json"]
    );
}

// --- every preset ------------------------------------------------------------------

const ALL: [(&str, &str, &str); 4] = [
    ("claude-code", "claude", "Claude Code"),
    ("codex", "codex", "Codex CLI"),
    ("aider", "aider", "aider"),
    ("gemini", "gemini", "Gemini CLI"),
];

#[test]
fn agent_exit_code_is_the_wrapper_exit_code_and_status_says_failed() {
    for (name, _, display) in ALL {
        let inst = plant();
        let out = inst.run(name, &inst.fake_path(), &[("FAKE_AGENT_EXIT", "3")]);
        assert_eq!(out.status.code(), Some(3), "{name}");
        let status = inst.status();
        assert_eq!(status["state"], "failed", "{name}: {status}");
        assert_eq!(status["message"], format!("{display} exited with code 3"));
    }
}

#[test]
fn missing_cli_fails_at_once_with_127_and_how_to_install() {
    for (name, program, display) in ALL {
        let inst = plant();
        // A PATH with nothing but `sh`, the one program the command needs.
        let empty = inst.repo.tmp.path().join("only-sh");
        std::fs::create_dir_all(&empty).expect("mkdir");
        std::os::unix::fs::symlink("/bin/sh", empty.join("sh")).expect("symlink sh");
        let out = inst.run(name, empty.to_str().expect("utf-8"), &[]);
        assert_eq!(out.status.code(), Some(127), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let p = preset(name).expect("preset");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "treefarm: `{program}` ({display}) is not installed or not on PATH; install: {}",
                p.install_hint
            )
        );
        assert!(!inst.record.exists(), "{name}: nothing ran");
        assert!(!inst.status_file.exists(), "{name}: exits before starting");
    }
}

#[test]
fn program_path_can_be_overridden() {
    for (name, program, _) in ALL {
        let inst = plant();
        let p = preset(name).expect("preset");
        let bin = format!("{FAKES}/{program}");
        let path = std::env::var("PATH").unwrap_or_default();
        let out = inst.run(name, &path, &[(p.bin_env, &bin)]);
        assert_ok(&out);
        assert_eq!(inst.status()["state"], "done", "{name}");
    }
}

#[test]
fn spec_file_is_the_prompt_when_there_is_no_prompt_file() {
    for (name, _, _) in ALL {
        let inst = plant();
        std::fs::remove_file(&inst.prompt_file).expect("rm prompt");
        let out = inst.run(name, &inst.fake_path(), &[]);
        assert_ok(&out);
        let rec = inst.recorded();
        let prompt = match name {
            "codex" | "claude-code" | "gemini" => rec.stdin.clone(),
            "aider" => {
                // The temp prompt file is gone by now; aider got its path.
                assert!(rec.args[1].contains("treefarm-prompt."), "{:?}", rec.args);
                continue;
            }
            other => panic!("unknown preset {other}"),
        };
        assert!(
            prompt.starts_with("# Retry\n\nAdd retries"),
            "{name}: {prompt}"
        );
        assert!(
            prompt.contains("- src/lib.rs\n- src/retry/mod.rs\n- docs/retry/**\n"),
            "{name}: {prompt}"
        );
        assert!(prompt.contains("commit your work with git on branch treefarm/020"));
    }
}

#[test]
fn wrappers_are_posix_sh() {
    // `sh -n` parses without running; dash is the strictest common sh.
    for (name, _, _) in ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = materialize_wrapper(preset(name).expect("preset"), dir.path()).expect("write");
        for shell in ["/bin/sh", "/usr/bin/dash", "/bin/dash"] {
            if !Path::new(shell).exists() {
                continue;
            }
            let out = Command::new(shell)
                .arg("-n")
                .arg(&path)
                .output()
                .expect("sh -n");
            assert!(out.status.success(), "{name} under {shell}: {out:?}");
        }
    }
}
