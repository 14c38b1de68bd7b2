//! `treefarm init` and `treefarm --help` through the real binary.

use crate::common;

use common::{assert_exit, stderr, stdout, stdout_json, TestRepo};

const CONFIG: &str = "treefarm.yaml";
const EXAMPLE: &str = "specs/SPEC-001-example.md";

/// A PATH without the folders holding `program`, so a real CLI installed
/// on the machine cannot make a "not installed" test pass or fail by chance.
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

#[test]
fn init_writes_a_config_and_an_example_spec_that_check_accepts() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    let out = repo.tf(&["init"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains(&format!("created {CONFIG}")), "{err}");
    assert!(err.contains(&format!("created {EXAMPLE}")), "{err}");
    assert!(repo.read(CONFIG).contains("spec_dir: specs"));
    // Uncommitted is enough: specs are read from the working tree.
    let out = repo.tf(&["check", "--json"]);
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["specs"][0]["id"], "001");
    assert_eq!(json["specs"][0]["path"], EXAMPLE);
    assert_eq!(json["specs"][0]["files"], serde_json::json!(["README.md"]));
    // init creates nothing of a run.
    assert!(!repo.root.join(".git/treefarm").exists());
    assert_eq!(repo.branches(), ["main"]);
}

#[test]
fn init_never_overwrites_and_leaves_edited_files_byte_identical() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    assert_exit(&repo.tf(&["init"]), 0);
    let config =
        b"# mine\nspec_dir: specs\ninstances: 7\n\xe2\x9c\x93 not even yaml\xff\n".to_vec();
    let example = b"edited by hand, no trailing newline".to_vec();
    std::fs::write(repo.root.join(CONFIG), &config).expect("edit config");
    std::fs::write(repo.root.join(EXAMPLE), &example).expect("edit spec");
    let out = repo.tf(&["init"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains(&format!("kept    {CONFIG}")), "{err}");
    assert!(err.contains(&format!("kept    {EXAMPLE}")), "{err}");
    assert_eq!(std::fs::read(repo.root.join(CONFIG)).expect("read"), config);
    assert_eq!(
        std::fs::read(repo.root.join(EXAMPLE)).expect("read"),
        example
    );
    assert_eq!(
        std::fs::read_dir(repo.root.join("specs"))
            .expect("ls")
            .count(),
        1,
        "no second example next to the kept one"
    );

    // A missing file is written again; the present one still is not touched.
    std::fs::remove_file(repo.root.join(EXAMPLE)).expect("rm spec");
    let out = repo.tf(&["init"]);
    assert_exit(&out, 0);
    assert!(repo.root.join(EXAMPLE).exists());
    assert_eq!(std::fs::read(repo.root.join(CONFIG)).expect("read"), config);
}

#[test]
fn init_agent_claude_code_writes_a_preset_config_that_parses() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    let out = repo.tf(&["init", "--agent", "claude-code"]);
    assert_exit(&out, 0);
    let config = repo.read(CONFIG);
    assert!(
        config.lines().any(|l| l.trim() == "preset: claude-code"),
        "{config}"
    );
    repo.commit_all("init");
    assert_exit(&repo.tf(&["check"]), 0);
    assert_exit(&repo.tf(&["plan"]), 0);
}

/// Each preset config parses and selects that preset: `run` without the CLI
/// installed names the preset's program (and creates nothing).
#[test]
fn init_agent_config_selects_the_preset() {
    for (preset, program) in [
        ("claude-code", "claude"),
        ("codex", "codex"),
        ("aider", "aider"),
        ("gemini", "gemini"),
    ] {
        let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
        assert_exit(&repo.tf(&["init", "--agent", preset]), 0);
        repo.commit_all("init");
        let before = repo.footprint();
        let out = repo
            .treefarm()
            .arg("run")
            .env("PATH", path_without(program))
            .output()
            .expect("spawn");
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("`{program}`")), "{preset}: {err}");
        assert!(err.contains("hint: install"), "{preset}: {err}");
        assert_eq!(repo.footprint(), before, "{preset}: run created something");
    }
}

#[test]
fn init_with_an_unknown_preset_exits_2_and_writes_nothing() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    let out = repo.tf(&["init", "--agent", "cursor"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("`cursor`"), "{err}");
    assert!(
        err.contains("claude-code") && err.contains("gemini"),
        "{err}"
    );
    assert!(!repo.root.join(CONFIG).exists());
    assert!(!repo.root.join("specs").exists());
}

#[test]
fn init_works_with_dash_c_and_outside_a_repository_is_bad_input() {
    let repo = TestRepo::empty();
    let root = repo.root.to_str().expect("utf-8");
    let out = repo
        .treefarm()
        .current_dir(repo.tmp.path())
        .args(["-C", root, "init"])
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert!(repo.root.join(CONFIG).exists());
    assert!(repo.root.join(EXAMPLE).exists());

    let out = repo
        .treefarm()
        .current_dir(&repo.home)
        .arg("init")
        .output()
        .expect("spawn");
    assert_exit(&out, 2);
    assert!(!repo.home.join(CONFIG).exists());
}

#[test]
fn help_documents_every_exit_code() {
    let repo = TestRepo::empty();
    for flag in ["--help", "-h"] {
        let out = repo.tf(&[flag]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        let section = text
            .split_once("Exit codes:")
            .unwrap_or_else(|| panic!("{flag}: no exit code section:\n{text}"))
            .1;
        for (code, words) in [
            ("0", "success"),
            ("1", "failed"),
            ("2", "bad input"),
            ("3", "overlap"),
            ("101", "internal error"),
        ] {
            let line = section
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{code} ")))
                .unwrap_or_else(|| panic!("{flag}: no line for exit {code}:\n{section}"));
            assert!(line.contains(words), "{flag}: exit {code}: {line}");
        }
    }
    // Every command is listed.
    let text = stdout(&repo.tf(&["--help"]));
    for command in [
        "init", "check", "plan", "run", "status", "merge", "prune", "resume", "demo",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from --help:\n{text}"
        );
    }
    // A usage error is exit 2.
    assert_exit(&repo.tf(&["check", "--no-such-flag"]), 2);
    assert_exit(&repo.tf(&["frobnicate"]), 2);
}

/// Issue 21.5: `init` wrote a raw `claude -p "$(cat {spec})"` command, which
/// the real CLI refused (the spec's front matter became an unknown option).
/// Without `--agent`, it now configures the tested claude-code preset and no
/// command; the README's quick start runs on it with the real Claude Code
/// (`real_agents::real_claude_code_runs_the_readme_quick_start`).
#[test]
fn init_configures_the_claude_code_preset_by_default_not_a_raw_command() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    assert_exit(&repo.tf(&["init"]), 0);
    let text = repo.read(CONFIG);
    let config = treefarm::config::Config::parse(CONFIG, text.as_bytes()).expect("parses");
    assert_eq!(
        config.agent.preset.as_deref(),
        Some("claude-code"),
        "{text}"
    );
    assert_eq!(config.agent.command, None, "{text}");
    assert!(!text.contains("$(cat {spec})"), "{text}");
}
