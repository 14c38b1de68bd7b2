//! `treefarm split` with the real agent CLIs (Claude Code, Codex CLI, Gemini
//! CLI, aider) through their presets, each pointed at the scripted model
//! server on loopback: the split prompt reaches the model on the CLI's
//! stdin, the CLI writes the draft into the scratch folder with its own
//! tool, and treefarm judges and writes a valid split in 2 rounds, under the
//! default isolation, as root and as an unprivileged user. Round 1's draft
//! is rejected (a path that neither exists nor is created); round 2 must
//! continue round 1's conversation — the server refuses a round-2 request
//! that does not carry round 1's prompt and answer, and records which
//! round and conversation each request belonged to.
//!
//! Ignored in a plain `cargo test`, like `real_agents`: run with
//! `TREEFARM_REAL_AGENTS_DIR=<cache>` (see `scripts/test-real-agents.sh`),
//! e.g. `cargo test --test integration real_split:: -- --ignored`.

use serde_json::{json, Value};

use crate::real_agents::{
    commit_base, extra_args, for_each_user, git, run_env, scratch, tree_bytes, treefarm_as,
    write_cli_homes,
};
use crate::support::ModelServer;

/// The draft the scripted model writes in round 2 (the file name is the
/// server's: `SPEC-greeting-hello.md` in the scratch folder).
const DRAFT: &str = "---\ntitle: Write the greeting\nfiles: [greeting.txt]\ncreates: [greeting.txt]\n---\nWrite `greeting.txt` holding one line: hello.\n\n## Verify\n\n`cat greeting.txt` prints hello.\n";

/// Round 1's draft: `greeting.txt` is neither tracked nor under `creates`.
const REJECTED: &str = "---\ntitle: Write the greeting\nfiles: [greeting.txt]\n---\nWrite `greeting.txt` holding one line: hello.\n\n## Verify\n\n`cat greeting.txt` prints hello.\n";

fn script() -> Value {
    json!({
        "split_rounds": [
            [
                {"write": "{file}", "content": REJECTED},
                {"text": "drafted"}
            ],
            [
                // aider only writes (its one step is the write).
                {"read": "{split}/DIAGNOSTICS.md"},
                {"write": "{file}", "content": DRAFT},
                {"text": "fixed"}
            ]
        ],
        "require_continued": true,
        "usage": {"input_tokens": 11, "output_tokens": 5},
    })
}

fn split_real(preset: &str, model: &str, user: Option<&str>) {
    let (tmp, home) = scratch("treefarm-real-split-");
    let server = ModelServer::start(&tmp.path().join("server"), &script());
    write_cli_homes(&home);
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).expect("repo");
    git(&repo, &home, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "# greetings\n").expect("readme");
    std::fs::write(repo.join("src/main.txt"), "main\n").expect("file");
    std::fs::write(
        repo.join("treefarm.yaml"),
        format!(
            "agent:\n  preset: {preset}\n  model: {model}\n  timeout: 5m\n{}",
            extra_args(preset, &home, &server)
        ),
    )
    .expect("config");
    commit_base(&repo, &home);
    let config_before = std::fs::read(repo.join(".git/config")).expect("config");
    let hooks_before = tree_bytes(&repo.join(".git/hooks"));

    let env = run_env(&home, &server);
    let out = treefarm_as(&env, user, tmp.path())
        .args(["split", "Add a greeting file.", "--rounds", "2", "--write"])
        .current_dir(&repo)
        .output()
        .expect("run treefarm");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let logs: String = std::fs::read_dir(repo.join(".git/treefarm/splits"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|split| {
            std::fs::read_dir(split.path().join("agent"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .chain(
            std::fs::read_dir(repo.join(".git/treefarm/splits"))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|split| {
                    std::fs::read_dir(split.path().join("drafts"))
                        .into_iter()
                        .flatten()
                        .flatten()
                }),
        )
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".log") || name.starts_with("SPEC-")
        })
        .map(|e| {
            format!(
                "--- {} ---\n{}",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    let ctx = format!(
        "{preset} as {}:\n{stderr}\n--- agent logs ---\n{logs}",
        user.unwrap_or("the current user")
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(
        stderr.contains("independent: 1 spec, 1 wave after 2 rounds"),
        "{ctx}"
    );
    // Round 1 was rejected for the path it did not create.
    let round1 = split_files(&repo, "round-1.md");
    assert!(
        round1.contains("greeting.txt") && !round1.contains("Nothing: the split is valid"),
        "{round1}\n{ctx}"
    );
    // Round 2 continued round 1's conversation: every request of round 2
    // carried round 1's prompt and round 1's answer (the server refused any
    // that did not, and the split would have failed).
    let rounds: Vec<Value> = server
        .main_requests()
        .into_iter()
        .filter_map(|r| r.get("split").cloned())
        .collect();
    let of_round = |n: u64| -> Vec<&Value> { rounds.iter().filter(|s| s["round"] == n).collect() };
    assert!(
        !of_round(1).is_empty() && of_round(1).iter().all(|s| s["continued"] == false),
        "{rounds:?}\n{ctx}"
    );
    assert!(
        !of_round(2).is_empty()
            && of_round(2).iter().all(|s| s["continued"] == true
                && s["earlier_rounds"] == json!([1])
                && s["answered_rounds"] == json!([1])),
        "{rounds:?}\n{ctx}"
    );

    let spec = std::fs::read_to_string(repo.join("specs/SPEC-001-write-the-greeting.md"))
        .unwrap_or_else(|e| panic!("the spec was not written ({e})\n{ctx}"));
    assert!(
        spec.contains("- greeting.txt") && spec.contains("## Verify"),
        "{spec}\n{ctx}"
    );
    // The prompt reached the model (on the CLI's stdin, through the preset).
    assert!(
        server.main_requests().iter().any(|r| r["body"]
            .to_string()
            .contains("You are splitting one request")),
        "no request carried the split prompt\n{ctx}"
    );
    // Nothing but the new spec in the checkout; the shared git files as
    // they were; the throwaway worktree gone.
    let status = git(
        &repo,
        &home,
        &["status", "--porcelain=v1", "--untracked-files=all"],
    );
    assert_eq!(
        status.trim(),
        "?? specs/SPEC-001-write-the-greeting.md",
        "{ctx}"
    );
    assert_eq!(
        std::fs::read(repo.join(".git/config")).expect("config"),
        config_before,
        "{ctx}"
    );
    assert_eq!(tree_bytes(&repo.join(".git/hooks")), hooks_before, "{ctx}");
    let worktrees = git(&repo, &home, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "{worktrees}\n{ctx}"
    );
    if user.is_some() {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(repo.join("specs/SPEC-001-write-the-greeting.md"))
            .expect("spec")
            .uid();
        assert_ne!(owner, 0, "the spec belongs to the user\n{ctx}");
    }
}

/// The text of `name` in the (one) split folder of `repo`.
fn split_files(repo: &std::path::Path, name: &str) -> String {
    std::fs::read_dir(repo.join(".git/treefarm/splits"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|split| std::fs::read_to_string(split.path().join(name)).unwrap_or_default())
        .collect()
}

/// As the current user (root in CI), then as `TREEFARM_REAL_AGENTS_USER`.
fn split_both(preset: &str, model: &str) {
    for_each_user(|user| split_real(preset, model, user));
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_split_claude_code() {
    split_both("claude-code", "claude-scripted-1");
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_split_codex() {
    split_both("codex", "scripted-model");
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_split_gemini() {
    split_both("gemini", "gemini-scripted");
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_split_aider() {
    split_both("aider", "openai/scripted-model");
}
