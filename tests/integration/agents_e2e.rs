//! The agent presets end to end: `treefarm run` with `agent.preset` against
//! the faithful fake CLIs in tests/fakes (which refuse what the real CLIs
//! would refuse or what would make them wait for a person), git as the
//! oracle for what got merged, and the fakes' records for what each CLI was
//! given.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_exit, stderr, TestRepo};

const FAKES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes");
const MODEL: &str = "model-x1";
const IDS: [&str; 3] = ["001", "002", "003"];

struct Preset {
    name: &'static str,
    program: &'static str,
    /// Install command the missing-CLI error must show.
    install: &'static str,
}

const PRESETS: [Preset; 4] = [
    Preset {
        name: "claude-code",
        program: "claude",
        install: "npm install -g @anthropic-ai/claude-code",
    },
    Preset {
        name: "codex",
        program: "codex",
        install: "npm install -g @openai/codex",
    },
    Preset {
        name: "aider",
        program: "aider",
        install: "aider-install",
    },
    Preset {
        name: "gemini",
        program: "gemini",
        install: "npm install -g @google/gemini-cli",
    },
];

/// PATH with the fakes first.
fn fake_path() -> String {
    format!("{FAKES}:{}", std::env::var("PATH").unwrap_or_default())
}

/// PATH without any folder holding `program` (and without the fakes).
fn path_without(program: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join(program).exists())
        .collect();
    std::env::join_paths(kept)
        .expect("PATH entries stay joinable")
        .into_string()
        .expect("utf-8 PATH")
}

/// A repository with three independent specs and `agent: { preset, model }`.
fn repo_for(preset: &str) -> TestRepo {
    let repo = TestRepo::with_files(&[("src/lib.rs", "// lib\n")]);
    for (n, id) in IDS.iter().enumerate() {
        repo.write_spec(
            id,
            "task",
            &format!("title: Task {id} title\nfiles: [src/mod{n}.rs]\n"),
            &format!("Implement module {n} carefully.\n"),
        );
    }
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent: {{ preset: {preset}, model: {MODEL} }}\n{}",
            common::allow_write_yaml(&[&repo.records()])
        ),
    );
    repo.commit_all("specs");
    repo
}

/// The file spec `n` declares.
fn declared(n: usize) -> String {
    format!("src/mod{n}.rs")
}

/// `treefarm run --instances 3` with the fakes on PATH, each instance
/// recording to `<records>/<spec id>`.
fn run_with_fakes(repo: &TestRepo, records: &Path) -> Output {
    run_with_fakes_isolated(repo, records, true)
}

/// [`run_with_fakes`]; `isolated: false` adds `--isolation off`.
fn run_with_fakes_isolated(repo: &TestRepo, records: &Path, isolated: bool) -> Output {
    std::fs::create_dir_all(records).expect("mkdir records");
    let mut args = vec!["run", "--instances", "3"];
    if !isolated {
        args.extend(["--isolation", "off"]);
    }
    repo.treefarm()
        .args(&args)
        .env("PATH", fake_path())
        .env("FAKE_AGENT_RECORD", records)
        .output()
        .expect("spawn treefarm run")
}

/// What one fake was called with.
#[derive(Debug, Default)]
struct Record {
    cwd: String,
    args: Vec<String>,
    stdin: String,
    status: String,
}

impl Record {
    fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("fake never recorded to {}: {e}", path.display()));
        let mut rec = Record::default();
        for line in text.lines() {
            if let Some(cwd) = line.strip_prefix("cwd=") {
                rec.cwd = cwd.to_string();
            } else if let Some(arg) = line.strip_prefix("arg=") {
                rec.args.push(arg.to_string());
            }
        }
        rec.stdin = std::fs::read_to_string(path.with_extension("stdin")).unwrap_or_default();
        rec.status = std::fs::read_to_string(path.with_extension("status")).unwrap_or_default();
        rec
    }

    /// The argument right after `flag`.
    fn after(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }

    fn has(&self, arg: &str) -> bool {
        self.args.iter().any(|a| a == arg)
    }
}

/// The only run directory under `.git/treefarm/runs`.
fn run_dir(repo: &TestRepo) -> PathBuf {
    let runs = repo.root.join(".git/treefarm/runs");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("no {}: {e}", runs.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one run: {dirs:?}");
    dirs.into_iter().next().expect("one run")
}

fn assert_merged_into_roadmap(repo: &TestRepo, program: &str) {
    assert_eq!(repo.branches(), ["main", "roadmap"], "treefarm/* pruned");
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "only the main worktree is left:\n{worktrees}"
    );
    let subjects = repo.git(&["log", "--format=%s", "roadmap"]);
    for (n, id) in IDS.iter().enumerate() {
        // The agent committed its own work, and treefarm merged it.
        assert!(
            subjects.lines().any(|s| s == format!("{program}: {id}")),
            "no commit by the agent for {id}:\n{subjects}"
        );
        assert!(
            subjects
                .lines()
                .any(|s| s.starts_with(&format!("Merge treefarm/{id}"))),
            "{id} not merged:\n{subjects}"
        );
        let file = declared(n);
        assert_eq!(
            repo.git(&["show", &format!("roadmap:{file}")]),
            format!("edited by fake {program} for {id}"),
            "{file} on roadmap"
        );
    }
    // The agents' leftovers stayed out of the merged tree.
    let tree = repo.git(&["ls-tree", "-r", "--name-only", "roadmap"]);
    let mut files: Vec<&str> = tree.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "specs/SPEC-001-task.md",
            "specs/SPEC-002-task.md",
            "specs/SPEC-003-task.md",
            "src/lib.rs",
            "src/mod0.rs",
            "src/mod1.rs",
            "src/mod2.rs",
            "treefarm.yaml",
        ]
    );
}

/// The prompt file of `id` holds the spec's title and body, the declared
/// file and the commit instruction.
fn prompt_of(repo: &TestRepo, n: usize, id: &str) -> (PathBuf, String) {
    let path = run_dir(repo).join("instances").join(id).join("prompt.md");
    let prompt = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no prompt file {}: {e}", path.display()));
    assert!(prompt.contains(&format!("Task {id} title")), "{prompt}");
    assert!(
        prompt.contains(&format!("Implement module {n} carefully.")),
        "{prompt}"
    );
    assert!(prompt.contains(&format!("`{}`", declared(n))), "{prompt}");
    assert!(prompt.contains("commit your work with git"), "{prompt}");
    assert!(prompt.contains(&format!("treefarm/{id}")), "{prompt}");
    (path, prompt)
}

/// Runs the preset under the default isolation, and — where that confines
/// agents — once more with `--isolation off`: a preset's arguments differ
/// when treefarm does not confine the CLI (a kernel without Landlock), and
/// both forms are what users run. `check_args` gets whether that run was
/// confined.
fn run_preset_both_ways(
    preset: &Preset,
    check_args: impl Fn(&Record, &Path, &str, &TestRepo, bool),
) {
    run_preset_once(preset, common::landlock_available(), &check_args);
    if common::landlock_available() {
        run_preset_once(preset, false, &check_args);
    }
}

/// The preset under the default isolation only (its arguments do not
/// depend on it).
fn run_preset_end_to_end(
    preset: &Preset,
    check_args: impl Fn(&Record, &Path, &str, &TestRepo, bool),
) {
    run_preset_once(preset, common::landlock_available(), &check_args);
}

fn run_preset_once(
    preset: &Preset,
    confined: bool,
    check_args: &impl Fn(&Record, &Path, &str, &TestRepo, bool),
) {
    let repo = repo_for(preset.name);
    let main_before = repo.main_snapshot();
    let records = repo.records();
    let out = run_with_fakes_isolated(&repo, &records, confined);
    assert_exit(&out, 0);
    assert_merged_into_roadmap(&repo, preset.program);
    assert_eq!(repo.main_snapshot(), main_before, "main worktree untouched");
    let wt_root = repo
        .tmp
        .path()
        .canonicalize()
        .expect("canonical")
        .join("repo.treefarm");
    for (n, id) in IDS.iter().enumerate() {
        let rec = Record::read(&records.join(id));
        assert_eq!(rec.cwd, wt_root.join(id).display().to_string(), "{id}");
        assert!(
            rec.status.contains("\"working\""),
            "{id}: the wrapper's status when the CLI started: {:?}",
            rec.status
        );
        let (prompt_path, prompt) = prompt_of(&repo, n, id);
        check_args(&rec, &prompt_path, &prompt, &repo, confined);
        assert_eq!(rec.after("--model"), Some(MODEL), "{id}: {:?}", rec.args);
    }
}

#[test]
fn claude_code_preset_runs_three_specs_and_merges_them() {
    run_preset_both_ways(&PRESETS[0], |rec, _, prompt, _, confined| {
        assert!(rec.has("-p"), "{:?}", rec.args);
        if treefarm::procfs::running_as_root() && !confined {
            // Claude Code refuses the bypass as root: an allow-list instead,
            // one that still lets it commit.
            assert!(!rec.has("--dangerously-skip-permissions"), "{:?}", rec.args);
            assert_eq!(rec.after("--permission-mode"), Some("acceptEdits"));
            assert!(rec.has("Bash(git commit:*)"), "{:?}", rec.args);
            assert!(rec.has("Bash(git add:*)"), "{:?}", rec.args);
        } else {
            assert!(rec.has("--dangerously-skip-permissions"), "{:?}", rec.args);
        }
        assert_eq!(rec.after("--output-format"), Some("stream-json"));
        // The prompt on stdin, none as an argument (no argv size limit).
        assert_eq!(rec.stdin.trim_end(), prompt.trim_end());
        assert!(
            !rec.args.iter().any(|a| a.contains("Task ")),
            "{:?}",
            rec.args
        );
    });
}

#[test]
fn codex_preset_runs_three_specs_and_merges_them() {
    run_preset_both_ways(&PRESETS[1], |rec, _, prompt, repo, confined| {
        assert_eq!(rec.args.first().map(String::as_str), Some("exec"));
        assert_eq!(
            rec.args.last().map(String::as_str),
            Some("-"),
            "prompt on stdin"
        );
        assert_eq!(rec.stdin.trim_end(), prompt.trim_end());
        assert!(rec.has("--json"), "{:?}", rec.args);
        if confined {
            // treefarm confines it; codex's own sandbox cannot run inside
            // Landlock, and its git is the private directory.
            assert_eq!(rec.after("--sandbox"), Some("danger-full-access"));
            assert!(!rec.has("--add-dir"), "{:?}", rec.args);
            return;
        }
        assert_eq!(rec.after("--sandbox"), Some("workspace-write"));
        let git_dir = repo.root.join(".git").canonicalize().expect("canonical");
        let add_dirs: Vec<PathBuf> = rec
            .args
            .windows(2)
            .filter(|w| w[0] == "--add-dir")
            // The worktree's git dir is gone once it merged: no canonicalize.
            .map(|w| PathBuf::from(&w[1]))
            .collect();
        let id = Path::new(&rec.cwd).file_name().expect("id");
        assert_eq!(
            add_dirs,
            vec![git_dir.join("worktrees").join(id), git_dir],
            "the worktree's own git dir and the common dir are writable so codex can commit"
        );
        assert!(rec.has("--json"), "{:?}", rec.args);
        assert_eq!(
            rec.args.last().map(String::as_str),
            Some("-"),
            "prompt on stdin"
        );
        assert_eq!(rec.stdin.trim_end(), prompt.trim_end());
    });
}

#[test]
fn aider_preset_runs_three_specs_and_merges_them() {
    run_preset_end_to_end(&PRESETS[2], |rec, prompt_path, _, _, _| {
        assert_eq!(
            rec.after("--message-file"),
            Some(prompt_path.display().to_string().as_str())
        );
        assert!(rec.has("--yes-always"), "{:?}", rec.args);
        assert!(rec.has("--no-gitignore"), "{:?}", rec.args);
        assert!(rec.has("--no-check-update"), "{:?}", rec.args);
    });
}

#[test]
fn gemini_preset_runs_three_specs_and_merges_them() {
    run_preset_end_to_end(&PRESETS[3], |rec, _, prompt, _, _| {
        assert_eq!(rec.after("--approval-mode"), Some("yolo"));
        assert_eq!(rec.after("--output-format"), Some("stream-json"));
        // The prompt on stdin, none as an argument (no argv size limit).
        assert!(!rec.has("--prompt"), "{:?}", rec.args);
        assert_eq!(rec.stdin.trim_end(), prompt.trim_end());
    });
}

#[test]
fn missing_cli_exits_2_before_creating_anything() {
    for preset in &PRESETS {
        let repo = repo_for(preset.name);
        let tmpdir = repo.tmp.path().join("tmpdir");
        std::fs::create_dir_all(&tmpdir).expect("mkdir tmpdir");
        let before = repo.footprint();
        let out = repo
            .treefarm()
            .args(["run", "--instances", "3"])
            .env("PATH", path_without(preset.program))
            .env("TMPDIR", &tmpdir)
            .output()
            .expect("spawn");
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("`{}`", preset.program)),
            "{}: {err}",
            preset.name
        );
        assert!(
            err.contains(preset.install),
            "{}: install hint: {err}",
            preset.name
        );
        assert_eq!(
            repo.footprint(),
            before,
            "{}: no branch, worktree or run dir",
            preset.name
        );
        assert!(!repo.root.join(".git/treefarm").exists());
        assert_eq!(
            std::fs::read_dir(&tmpdir).expect("ls tmpdir").count(),
            0,
            "{}: nothing staged in TMPDIR",
            preset.name
        );
    }
}

#[test]
fn preset_bin_override_to_a_missing_file_exits_2_naming_it() {
    let repo = repo_for("claude-code");
    let before = repo.footprint();
    let missing = repo.tmp.path().join("no/such/claude");
    let out = repo
        .treefarm()
        .arg("run")
        .env("PATH", fake_path())
        .env("TREEFARM_CLAUDE_BIN", &missing)
        .output()
        .expect("spawn");
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("TREEFARM_CLAUDE_BIN"), "{err}");
    assert_eq!(repo.footprint(), before);
}

#[test]
fn init_agent_codex_then_run_works_with_the_fake() {
    let repo = TestRepo::with_files(&[("README.md", "# readme\n")]);
    assert_exit(&repo.tf(&["init", "--agent", "codex"]), 0);
    let config = repo.read("treefarm.yaml");
    repo.write(
        "treefarm.yaml",
        &format!("{config}{}", common::allow_write_yaml(&[&repo.records()])),
    );
    repo.commit_all("treefarm init");
    let records = repo.records();
    let out = run_with_fakes(&repo, &records);
    assert_exit(&out, 0);
    assert_eq!(
        repo.git(&["show", "roadmap:README.md"]),
        "# readme\nedited by fake codex for 001"
    );
    let subjects = repo.git(&["log", "--format=%s", "roadmap"]);
    assert!(subjects.lines().any(|s| s == "codex: 001"), "{subjects}");
    let rec = Record::read(&records.join("001"));
    assert_eq!(rec.args.first().map(String::as_str), Some("exec"));
    let sandbox = if common::landlock_available() {
        "danger-full-access"
    } else {
        "workspace-write"
    };
    assert_eq!(rec.after("--sandbox"), Some(sandbox));
    assert_eq!(repo.branches(), ["main", "roadmap"]);
}

#[test]
fn missing_agent_command_program_exits_2_before_creating_anything() {
    let repo = repo_for("claude-code");
    let before = repo.footprint();
    let out = repo
        .treefarm()
        .args(["run", "--agent", "no-such-agent-t4 --task {spec}"])
        .output()
        .expect("spawn");
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("`no-such-agent-t4`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(repo.footprint(), before);
}
