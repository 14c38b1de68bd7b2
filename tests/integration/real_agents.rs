//! The real agent CLIs (Claude Code, Codex CLI, Gemini CLI, aider) under a
//! real `treefarm run --instances 2`, each pointed at the scripted model
//! server (`tests/support/model_server.py`) on loopback, never at the
//! internet.
//!
//! Ignored in a plain `cargo test`: `scripts/test-real-agents.sh` installs
//! the pinned CLIs into its cache and runs these with
//! `TREEFARM_REAL_AGENTS_DIR=<cache>` (and `TREEFARM_REAL_AGENTS_USER=<user>`
//! to repeat each run as that unprivileged user when started as root).
//!
//! What git must prove for every preset: each branch holds the agent's own
//! commit of its declared file (not treefarm's leftover commit), both merges
//! reached `roadmap`, nothing outside the declared files changed, and the
//! shared `.git/config` and `hooks/` are byte-identical afterwards. And
//! each instance's `usage.json` holds exactly the token figures the server
//! sent that instance's conversation (the CLI's own report, read by the
//! wrapper).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::ModelServer;

/// Tokens every scripted answer reports: main conversation, side requests.
const MAIN_USAGE: (u64, u64) = (101, 7);
const SIDE_USAGE: (u64, u64) = (3, 1);

/// The agent identity treefarm gives agents when nobody configured one.
const AGENT_IDENTITY: &str = "treefarm agent <agent@treefarm>";

/// The specs: id, declared file (in a directory that does not exist yet),
/// a sentence of the body that must reach the model.
const SPECS: [(&str, &str, &str); 2] = [
    ("001", "src/one/first.txt", "Write the first greeting file."),
    (
        "002",
        "docs/two/second.md",
        "Write the second greeting file.",
    ),
];

struct Cli {
    preset: &'static str,
    /// `agent.model`; what the model API must be asked for.
    model: &'static str,
    model_on_wire: &'static str,
    /// Errors served before the scripted answers (retried by the CLI).
    errors: Value,
    /// Present in the instance log when the wrapper turned the CLI's event
    /// stream into a transcript.
    transcript: Option<&'static str>,
}

fn cache_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("TREEFARM_REAL_AGENTS_DIR").expect(
            "TREEFARM_REAL_AGENTS_DIR names the CLI cache; run scripts/test-real-agents.sh",
        ),
    )
}

/// A temp folder for one run: `<tmp>/home`, the agents' `$HOME`, empty,
/// and `<tmp>/tmp` beside it for `TMPDIR`.
fn scratch(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(home.with_file_name("tmp")).expect("tmp");
    (tmp, home)
}

/// Runs `test` as the current user (root in CI), then as
/// `TREEFARM_REAL_AGENTS_USER` when it is set.
fn for_each_user(test: impl Fn(Option<&str>)) {
    test(None);
    if let Some(user) = std::env::var("TREEFARM_REAL_AGENTS_USER")
        .ok()
        .filter(|u| !u.is_empty())
    {
        test(Some(&user));
    }
}

fn content_for(id: &str) -> String {
    format!("written by the scripted model for {id}\n")
}

/// The steps every CLI with tools is scripted with: read the file (missing:
/// the CLI reports an error and goes on), write it, commit it through the
/// CLI's shell tool, finish with a message.
fn script(errors: &Value) -> Value {
    json!({
        "steps": [
            {"read": "{file}"},
            {"write": "{file}", "content": "written by the scripted model for {id}\n"},
            {"shell": "git add {file} && git commit -m '{id}: scripted change'"},
            // In agent.allowed_commands: allowed even where a CLI needs a list.
            {"shell": "python3 -c 'print(1)'"},
            {"text": "done"}
        ],
        "errors": errors,
        "usage": {"input_tokens": MAIN_USAGE.0, "output_tokens": MAIN_USAGE.1},
        "side_usage": {"input_tokens": SIDE_USAGE.0, "output_tokens": SIDE_USAGE.1},
    })
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(repo: &Path, home: &Path, args: &[&str]) -> String {
    sh(Command::new("git")
        // The repository may belong to the unprivileged user.
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE"))
}

/// A new repository `<tmp>/repo` on branch `main` (nothing committed yet)
/// with one greeting spec per `(id, file, body)`.
fn greeting_repo(tmp: &Path, home: &Path, specs: &[(&str, &str, &str)]) -> PathBuf {
    let repo = tmp.join("repo");
    std::fs::create_dir_all(repo.join("specs")).expect("repo");
    git(&repo, home, &["init", "-q", "-b", "main"]);
    for (id, file, body) in specs {
        std::fs::write(
            repo.join(format!("specs/SPEC-{id}-greeting.md")),
            format!("# Greeting {id}\n\n{body}\n\n**Files**:\n- `{file}`\n"),
        )
        .expect("spec");
    }
    repo
}

/// Commits everything in `repo` as its base (a test identity, once).
fn commit_base(repo: &Path, home: &Path) {
    git(repo, home, &["add", "-A"]);
    git(
        repo,
        home,
        &[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
            "commit",
            "-q",
            "-m",
            "base",
        ],
    );
}

/// `treefarm` with only `env`: as the current user, or as `user` (after
/// giving it `tmp`, where the repository and its home are).
fn treefarm_as(env: &[(String, String)], user: Option<&str>, tmp: &Path) -> Command {
    let treefarm = env!("CARGO_BIN_EXE_treefarm");
    match user {
        None => {
            let mut c = Command::new(treefarm);
            c.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
            c
        }
        Some(user) => {
            sh(Command::new("chown").args(["-R", user]).arg(tmp));
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "env", "-i"])
                .args(env.iter().map(|(k, v)| format!("{k}={v}")))
                .arg(treefarm);
            c
        }
    }
}

/// Every file under `dir` with its bytes, for a before/after comparison.
fn tree_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(tree_bytes(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// What the test writes for the CLIs, and nothing more: `$HOME` starts
/// empty, as on a fresh machine. Only Gemini CLI needs a file there
/// (`~/.gemini/settings.json`: with `GOOGLE_GEMINI_BASE_URL` set it picks a
/// gateway login the API key cannot serve, and only settings select the
/// API key; its system settings file would have to live in a folder no
/// other user can write, which a test's `/tmp` folder is not). Codex CLI is
/// pointed at the server with `-c` overrides on its command line (see
/// [`extra_args`]), aider's model metadata is a file beside `$HOME`; every
/// other CLI only needs its environment ([`run_env`]). The state folders
/// the CLIs write (`~/.claude`, `~/.claude.json`, `$CODEX_HOME`, ...) do
/// not exist when treefarm starts: treefarm must make them writable.
fn write_cli_homes(home: &Path) {
    let gemini = home.join(".gemini");
    std::fs::create_dir_all(&gemini).expect("gemini home");
    std::fs::write(
        gemini.join("settings.json"),
        json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "general": {"disableAutoUpdate": true, "disableUpdateNag": true}
        })
        .to_string(),
    )
    .expect("gemini settings");
    // aider looks model metadata up in a cache it otherwise downloads.
    std::fs::write(aider_metadata(home), {
        let model = json!({"max_input_tokens": 128000, "max_output_tokens": 8192,
                   "input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                   "litellm_provider": "openai", "mode": "chat"});
        json!({"scripted-model": model, "openai/scripted-model": model}).to_string()
    })
    .expect("aider model metadata");
}

/// aider's model metadata file: beside `$HOME`, not in it.
fn aider_metadata(home: &Path) -> PathBuf {
    home.with_file_name("aider-model-metadata.json")
}

/// `agent.extra_args` of `preset` that point its CLI at the server where
/// its environment cannot (YAML lines, empty when none).
fn extra_args(preset: &str, home: &Path, server: &ModelServer) -> String {
    let args: Vec<String> = match preset {
        "codex" => vec![
            "-c".into(),
            "model_provider=scripted".into(),
            "-c".into(),
            format!(
                "model_providers.scripted={{name=\"scripted\",base_url=\"{}/v1\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
                server.url()
            ),
            "-c".into(),
            "check_for_update_on_startup=false".into(),
            "-c".into(),
            "analytics.enabled=false".into(),
        ],
        "aider" => vec![
            "--model-metadata-file".into(),
            aider_metadata(home).display().to_string(),
        ],
        _ => vec![],
    };
    if args.is_empty() {
        return String::new();
    }
    // JSON strings are YAML double-quoted strings.
    format!("  extra_args: {}\n", json!(args))
}

/// Entries of `home` (recursively) that a CLI wrote: its state, proof that
/// isolation let it write there from an empty home.
fn written_state(home: &Path, dir: &str) -> Vec<PathBuf> {
    tree_bytes(&home.join(dir))
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.ends_with("settings.json"))
        .collect()
}

/// The environment `treefarm` (and so every agent) runs with: nothing
/// inherited but the basics; the CLIs found in the cache; every API at the
/// scripted server; a proxy that cannot connect for anything else.
fn run_env(home: &Path, server: &ModelServer) -> Vec<(String, String)> {
    let cache = cache_dir();
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        cache.join("npm/node_modules/.bin").display(),
        cache.join("aider-venv/bin").display()
    );
    let url = server.url();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), home.display().to_string()),
        (
            "TMPDIR".into(),
            home.with_file_name("tmp").display().to_string(),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("NO_COLOR".into(), "1".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        // Anything that is not loopback goes to a proxy that refuses.
        ("HTTP_PROXY".into(), "http://127.0.0.1:9".into()),
        ("HTTPS_PROXY".into(), "http://127.0.0.1:9".into()),
        ("http_proxy".into(), "http://127.0.0.1:9".into()),
        ("https_proxy".into(), "http://127.0.0.1:9".into()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
        ("no_proxy".into(), "127.0.0.1,localhost".into()),
        // Claude Code.
        ("ANTHROPIC_BASE_URL".into(), url.clone()),
        ("ANTHROPIC_API_KEY".into(), "scripted-key".into()),
        (
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into(),
        ),
        ("DISABLE_AUTOUPDATER".into(), "1".into()),
        ("DISABLE_TELEMETRY".into(), "1".into()),
        ("DISABLE_ERROR_REPORTING".into(), "1".into()),
        // Codex (its provider comes with `extra_args`; CODEX_HOME names a
        // folder that does not exist yet, which Codex refuses unless
        // treefarm creates it) and aider.
        (
            "CODEX_HOME".into(),
            home.join(".codex").display().to_string(),
        ),
        ("OPENAI_API_KEY".into(), "scripted-key".into()),
        ("OPENAI_BASE_URL".into(), format!("{url}/v1")),
        ("OPENAI_API_BASE".into(), format!("{url}/v1")),
        ("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into()),
        // Gemini CLI (API-key auth, selected in settings.json).
        ("GOOGLE_GEMINI_BASE_URL".into(), url),
        ("GEMINI_API_KEY".into(), "scripted-key".into()),
    ]
}

/// Runs `cli` for real: two specs, `--instances 2`, as the current user or,
/// with `user`, as that unprivileged user; then proves the result with git.
fn run_real(cli: &Cli, user: Option<&str>) {
    let (tmp, home) = scratch("treefarm-real-");
    let server = ModelServer::start(&tmp.path().join("server"), &script(&cli.errors));
    write_cli_homes(&home);

    // A repository with no git identity anywhere: the agents get treefarm's.
    let repo = greeting_repo(tmp.path(), &home, &SPECS);
    std::fs::write(repo.join("README.md"), "# greetings\n").expect("readme");
    std::fs::write(
        repo.join("treefarm.yaml"),
        format!(
            "agent:\n  preset: {}\n  model: {}\n  timeout: 5m\n  allowed_commands: [python3 -c]\n{}",
            cli.preset,
            cli.model,
            extra_args(cli.preset, &home, &server)
        ),
    )
    .expect("config");
    commit_base(&repo, &home);
    let base = git(&repo, &home, &["rev-parse", "HEAD"]).trim().to_string();
    let config_before = std::fs::read(repo.join(".git/config")).expect("config");
    let hooks_before = tree_bytes(&repo.join(".git/hooks"));

    let env = run_env(&home, &server);
    let mut cmd = treefarm_as(&env, user, tmp.path());
    let out: Output = cmd
        .args(["run", "--instances", "2"])
        .current_dir(&repo)
        .output()
        .expect("run treefarm");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let logs = logs_of(&repo);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} as {}: treefarm run failed\n{stderr}\n{logs}",
        cli.preset,
        user.unwrap_or("the current user")
    );
    let ctx = format!(
        "{} as {}:\n{stderr}\n{logs}",
        cli.preset,
        user.unwrap_or("the current user")
    );

    // Both merges reached roadmap; nothing but the declared files changed.
    let changed = git(&repo, &home, &["diff", "--name-only", &base, "roadmap"]);
    let mut changed: Vec<&str> = changed.lines().collect();
    changed.sort_unstable();
    let mut declared: Vec<&str> = SPECS.iter().map(|s| s.1).collect();
    declared.sort_unstable();
    assert_eq!(changed, declared, "{ctx}");
    for (id, file, body) in SPECS {
        assert_eq!(
            git(&repo, &home, &["show", &format!("roadmap:{file}")]),
            content_for(id),
            "{ctx}"
        );
        // The agent's own commit of its file: on the merged branch (the
        // merge's second parent), by the agent identity, with its own
        // message, touching exactly the declared file; no leftovers commit.
        let merge = git(
            &repo,
            &home,
            &[
                "log",
                "--merges",
                "--format=%H",
                "--grep",
                &format!("treefarm/{id}"),
                "roadmap",
            ],
        );
        let merge = merge
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no merge of {id}: {ctx}"));
        let commits = git(
            &repo,
            &home,
            &[
                "log",
                "--format=%H%x09%an <%ae>%x09%s",
                &format!("{merge}^1..{merge}^2"),
            ],
        );
        let commits: Vec<&str> = commits.lines().collect();
        assert!(!commits.is_empty(), "{id}: no commit of its own\n{ctx}");
        for commit in &commits {
            let fields: Vec<&str> = commit.split('\t').collect();
            assert_eq!(fields[1], AGENT_IDENTITY, "{id}: {commits:?}\n{ctx}");
            assert!(
                !fields[2].starts_with("treefarm: commit changes left uncommitted"),
                "{id}: the agent committed, not treefarm: {commits:?}\n{ctx}"
            );
            let files = git(
                &repo,
                &home,
                &["show", "--format=", "--name-only", fields[0]],
            );
            assert_eq!(files.trim(), file, "{id}: {commit}\n{ctx}");
        }

        // What reached the model: the spec, its declared file, the model.
        let asked = server.main_requests().into_iter().find(|r| {
            let text = r["body"].to_string();
            text.contains(body) && text.contains(file)
        });
        let asked = asked.unwrap_or_else(|| panic!("{id}: no request carried the spec\n{ctx}"));
        let model = asked["body"]["model"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| asked["path"].as_str().unwrap_or_default().to_string());
        assert!(
            model.contains(cli.model_on_wire),
            "{id}: model {model:?}, expected {}\n{ctx}",
            cli.model_on_wire
        );
        if let Some(line) = cli.transcript {
            let log = std::fs::read_to_string(log_path(&repo, id)).unwrap_or_default();
            let line = line.replace("{file}", file);
            assert!(log.contains(&line), "{id}: transcript has {line:?}:\n{log}");
        }
    }
    // Usage: what the server told each instance it spent is what its
    // usage.json says (main conversation answers; side requests are not in
    // the CLIs' reports).
    let answers = server.answers();
    for (id, _, _) in SPECS {
        let path = runs_dir(&repo)
            .join("instances")
            .join(id)
            .join("usage.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{id}: no usage.json at {}: {e}\n{ctx}", path.display()));
        let usage: Value = serde_json::from_str(&text).expect("usage.json is JSON");
        let main: Vec<&Value> = answers
            .iter()
            .filter(|a| a["id"] == id && a["main"] == true)
            .collect();
        assert!(!main.is_empty(), "{id}: no answer recorded\n{answers:#?}");
        let sum = |key: &str| {
            main.iter()
                .map(|a| a[key].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let diag = format!("{id}: usage.json {text}\nanswers {answers:#?}\n{ctx}");
        assert_eq!(
            usage["input_tokens"].as_u64(),
            Some(sum("input_tokens")),
            "{diag}"
        );
        assert_eq!(
            usage["output_tokens"].as_u64(),
            Some(sum("output_tokens")),
            "{diag}"
        );
        assert_eq!(usage["attempts"], 1, "{diag}");
        let model = usage["model"].as_str().unwrap_or_default();
        assert!(
            model.contains(cli.model_on_wire) || cli.model.contains(model) && !model.is_empty(),
            "{id}: model {model:?}\n{diag}"
        );
        if cli.preset == "claude-code" || cli.preset == "aider" {
            assert!(
                usage["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
                "{diag}"
            );
        }
    }

    // No tool call was denied (Claude Code as root runs with an allow-list
    // that must still cover `git add`, `git commit` and allowed_commands).
    if cli.preset == "claude-code" {
        for r in server.main_requests() {
            let results = r["body"]["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|c| c["type"] == "tool_result");
            for result in results {
                let text = result["content"].to_string().to_lowercase();
                assert!(
                    !text.contains("approval") && !text.contains("permission"),
                    "a tool call was denied: {result}\n{ctx}"
                );
            }
        }
    }
    // The errors were served, and retried past.
    let served = server
        .requests()
        .iter()
        .filter(|r| r["kind"] == "main")
        .count();
    assert!(served > cli.errors.as_array().map_or(0, Vec::len), "{ctx}");

    if user.is_some() {
        // treefarm and its agents really ran as that user.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(runs_dir(&repo)).expect("run dir").uid();
        assert_ne!(owner, 0, "the run directory belongs to the user\n{ctx}");
    }
    // The shared git files are exactly as before.
    assert_eq!(
        std::fs::read(repo.join(".git/config")).expect("config"),
        config_before,
        "{ctx}"
    );
    assert_eq!(tree_bytes(&repo.join(".git/hooks")), hooks_before, "{ctx}");
    assert!(
        !stderr.contains("warning"),
        "no shared-config warning: {ctx}"
    );
    assert!(
        !stderr.contains("denied by isolation"),
        "isolation denied the agent nothing: {ctx}"
    );
    // From an empty home, the CLI's state was writable: it wrote it.
    let state = match cli.preset {
        "claude-code" => Some(".claude"),
        "codex" => Some(".codex"),
        "gemini" => Some(".gemini"),
        _ => None,
    };
    if let Some(dir) = state {
        let written = written_state(&home, dir);
        assert!(
            !written.is_empty(),
            "{}: nothing in ~/{dir}\n{ctx}",
            cli.preset
        );
    }
    if cli.preset == "claude-code" {
        let config = std::fs::read_to_string(home.join(".claude.json")).unwrap_or_default();
        assert!(
            config.trim() != "{}" && config.contains('"'),
            "Claude Code wrote its ~/.claude.json: {config:?}\n{ctx}"
        );
    }
}

fn runs_dir(repo: &Path) -> PathBuf {
    let runs = repo.join(".git/treefarm/runs");
    std::fs::read_dir(&runs)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path())
        .unwrap_or(runs)
}

fn log_path(repo: &Path, id: &str) -> PathBuf {
    runs_dir(repo).join("logs").join(format!("{id}.log"))
}

fn logs_of(repo: &Path) -> String {
    SPECS
        .iter()
        .map(|(id, _, _)| {
            format!(
                "--- log of {id} ---\n{}",
                std::fs::read_to_string(log_path(repo, id)).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// As the current user (root in CI), then as `TREEFARM_REAL_AGENTS_USER`.
fn run_both(cli: &Cli) {
    for_each_user(|user| run_real(cli, user));
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_claude_code() {
    run_both(&Cli {
        preset: "claude-code",
        model: "claude-scripted-1",
        model_on_wire: "claude-scripted-1",
        errors: json!([{"status": 429, "retry_after": 1}, {"status": 529}]),
        transcript: Some("[Claude Code] editing {file}"),
    });
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_codex() {
    run_both(&Cli {
        preset: "codex",
        model: "scripted-model",
        model_on_wire: "scripted-model",
        errors: json!([{"status": 500}]),
        transcript: Some("[Codex CLI] running"),
    });
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_gemini() {
    run_both(&Cli {
        preset: "gemini",
        model: "gemini-scripted",
        model_on_wire: "gemini-scripted",
        errors: json!([{"status": 500}]),
        transcript: Some("[Gemini CLI] editing {file}"),
    });
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_aider() {
    run_both(&Cli {
        preset: "aider",
        model: "openai/scripted-model",
        model_on_wire: "scripted-model",
        errors: json!([{"status": 500}]),
        transcript: None,
    });
}

/// Runs `cli` for real against a server that answers every main request
/// with `error`: the attempt fails, and treefarm's classifier, given the
/// instance's real log and exit code, says it was rate-limited, of `kind`.
fn rate_limited_for_real(cli: &Cli, error: Value, kind: treefarm::agents::RateLimitKind) {
    let (tmp, home) = scratch("treefarm-real-rl-");
    let mut script = script(&json!([]));
    script["always_error"] = error;
    let server = ModelServer::start(&tmp.path().join("server"), &script);
    write_cli_homes(&home);
    let repo = greeting_repo(tmp.path(), &home, &SPECS[..1]);
    let (id, _, _) = SPECS[0];
    // One retry inside the CLI (Claude Code would otherwise retry for
    // minutes); treefarm gives up at the first rate limit (max_waits: 0)
    // instead of backing off, so the run ends with the attempt's exit.
    std::fs::write(
        repo.join("treefarm.yaml"),
        format!(
            "agent:\n  preset: {}\n  model: {}\n  timeout: 5m\n  env: {{CLAUDE_CODE_MAX_RETRIES: '1'}}\n  rate_limit:\n    max_waits: 0\n{}",
            cli.preset,
            cli.model,
            extra_args(cli.preset, &home, &server)
        ),
    )
    .expect("config");
    commit_base(&repo, &home);
    let env = run_env(&home, &server);
    let treefarm = env!("CARGO_BIN_EXE_treefarm");
    let out = Command::new(treefarm)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["run", "--instances", "1"])
        .current_dir(&repo)
        .output()
        .expect("run treefarm");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = std::fs::read_to_string(log_path(&repo, id)).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: {stderr}\n{log}",
        cli.preset
    );
    let status = Command::new(treefarm)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["status", "--json"])
        .current_dir(&repo)
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let code = status["instances"][0]["exit_code"]
        .as_i64()
        .map(|c| c as i32);
    let hit = treefarm::agents::classify_rate_limit(
        Some(cli.preset),
        &treefarm::agents::RateLimitRules::default(),
        code,
        treefarm::agents::log_tail(&log),
    )
    .unwrap_or_else(|| panic!("{}: not detected (exit {code:?}):\n{log}", cli.preset));
    assert_eq!(hit.kind, kind, "{}: {hit:?}\n{log}", cli.preset);
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_rate_limits_are_detected() {
    use treefarm::agents::RateLimitKind::*;
    let claude = Cli {
        preset: "claude-code",
        model: "claude-scripted-1",
        model_on_wire: "claude-scripted-1",
        errors: json!([]),
        transcript: None,
    };
    let codex = Cli {
        preset: "codex",
        model: "scripted-model",
        model_on_wire: "scripted-model",
        errors: json!([]),
        transcript: None,
    };
    rate_limited_for_real(&claude, json!({"status": 429}), TooManyRequests);
    rate_limited_for_real(&claude, json!({"status": 529}), Overloaded);
    rate_limited_for_real(&claude, json!({"status": 429, "kind": "quota"}), Quota);
    rate_limited_for_real(
        &codex,
        json!({"status": 429, "retry_after": 1}),
        TooManyRequests,
    );
    rate_limited_for_real(&codex, json!({"status": 429, "kind": "quota"}), Quota);
}

/// Issue 15's "done when", with a real CLI: 8 specs, 4 at once, Claude Code
/// against a server that refuses the first of every two main requests for a
/// while (429 with and without `retry-after`, 529 overloaded). Claude Code
/// gives up at once (`CLAUDE_CODE_MAX_RETRIES: 0`), so the refusals reach
/// treefarm, which backs off and adapts: every spec merges, no manual step,
/// no attempt counted as a failure (`agent.retries: 0`).
#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_claude_code_through_rate_limits_merges_eight_specs() {
    for_each_user(paced_for_real);
}

/// One run of [`real_claude_code_through_rate_limits_merges_eight_specs`],
/// as the current user or as `user`.
fn paced_for_real(user: Option<&str>) {
    let (tmp, home) = scratch("treefarm-real-paced-");
    let mut script = script(&json!([]));
    script["error_every"] = json!({
        "every": 2,
        "count": 6,
        "errors": [
            {"status": 429, "retry_after": 1},
            {"status": 529},
            {"status": 429},
        ],
    });
    let server = ModelServer::start(&tmp.path().join("server"), &script);
    write_cli_homes(&home);
    let ids: Vec<String> = (1..=8).map(|i| format!("{i:03}")).collect();
    let specs: Vec<(String, String, String)> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                format!("out/g{id}.txt"),
                format!("Write greeting {id}."),
            )
        })
        .collect();
    let specs: Vec<(&str, &str, &str)> = specs
        .iter()
        .map(|(i, f, b)| (i.as_str(), f.as_str(), b.as_str()))
        .collect();
    let repo = greeting_repo(tmp.path(), &home, &specs);
    std::fs::write(
        repo.join("treefarm.yaml"),
        "agent:\n  preset: claude-code\n  model: claude-scripted-1\n  timeout: 5m\n  retries: 0\n  \
         allowed_commands: [python3 -c]\n  start_interval: 200ms\n  \
         env: {CLAUDE_CODE_MAX_RETRIES: '0'}\n  rate_limit:\n    max_backoff: 2s\n    max_waits: 6\n",
    )
    .expect("config");
    commit_base(&repo, &home);
    let env = run_env(&home, &server);
    let mut cmd = treefarm_as(&env, user, tmp.path());
    let out = cmd
        .args(["run", "--json", "--instances", "4"])
        .current_dir(&repo)
        .output()
        .expect("run treefarm");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };
    let logs: String = ids
        .iter()
        .map(|id| {
            format!(
                "--- log of {id} ---\n{}",
                std::fs::read_to_string(log_path(&repo, id)).unwrap_or_default()
            )
        })
        .collect();
    let ctx = format!(
        "as {}:\n{stderr}\n{logs}",
        user.unwrap_or("the current user")
    );
    assert_eq!(out.status.code(), Some(0), "treefarm run failed\n{ctx}");
    let summary = of("summary").pop().expect("summary").clone();
    assert_eq!(
        summary["merged"].as_array().map(Vec::len),
        Some(8),
        "{summary}\n{ctx}"
    );
    assert!(of("failed").is_empty(), "{ctx}");
    assert!(
        of("exited")
            .iter()
            .all(|x| x["result"] == "succeeded" || x["result"] == "rate_limited"),
        "no attempt failed: {:?}\n{ctx}",
        of("exited")
    );
    // The refusals reached treefarm as rate-limited attempts, which backed
    // off and halved the window; it grew again afterwards.
    let limited = of("rate_limited");
    assert!(!limited.is_empty(), "no rate limit reached treefarm\n{ctx}");
    assert!(limited.len() <= 6, "{limited:?}");
    let limits = crate::common::window_dropped_and_recovered(&events, 4);
    eprintln!(
        "claude-code through rate limits as {}: {} rate-limited attempt(s), concurrency limits {limits:?}",
        user.unwrap_or("the current user"),
        limited.len()
    );
    assert_eq!(
        summary["backoffs"].as_array().map(Vec::len),
        Some(limited.len()),
        "{summary}"
    );
    // Usage: every spec's usage.json, totalled in the summary.
    assert!(
        summary["usage"]["total"]["input_tokens"].as_u64() >= Some(8 * MAIN_USAGE.0),
        "{summary}"
    );
    for id in &ids {
        assert_eq!(
            git(&repo, &home, &["show", &format!("roadmap:out/g{id}.txt")]),
            content_for(id),
            "{ctx}"
        );
    }
}

/// `merge.on_conflict: agent` with the real CLI: `run --no-merge` makes the
/// branch, someone commits another version of its file to `roadmap`, and
/// `treefarm merge` hands the conflict back to the CLI with the preset's
/// resolution prompt; the scripted model writes the resolved file and
/// concludes the merge with `git commit --no-edit`. Git proves it: the
/// branch's tip is a merge with the target, and `roadmap` holds the
/// resolution. As the current user, or as `user`.
fn resolve_real(cli: &Cli, user: Option<&str>) {
    let (tmp, home) = scratch("treefarm-real-resolve-");
    let resolved = "resolved by the scripted model for {id}\n";
    let server = ModelServer::start(
        &tmp.path().join("server"),
        &json!({
            "steps": [
                {"write": "{file}", "content": "written by the scripted model for {id}\n"},
                {"shell": "git add {file} && git commit -m '{id}: scripted change'"},
                {"text": "done"}
            ],
            "resolve_steps": [
                {"write": "{file}", "content": resolved},
                {"shell": "git add {file} && git commit --no-edit"},
                {"text": "resolved"}
            ],
        }),
    );
    write_cli_homes(&home);
    let repo = greeting_repo(tmp.path(), &home, &SPECS[..1]);
    std::fs::write(repo.join("README.md"), "# greetings\n").expect("readme");
    let (id, file, _) = SPECS[0];
    std::fs::write(
        repo.join("treefarm.yaml"),
        format!(
            "agent:\n  preset: {}\n  model: {}\n  timeout: 5m\n{}merge:\n  on_conflict: agent\n",
            cli.preset,
            cli.model,
            extra_args(cli.preset, &home, &server)
        ),
    )
    .expect("config");
    let who = ["-c", "user.name=Test", "-c", "user.email=test@example.org"];
    git(&repo, &home, &["add", "-A"]);
    git(
        &repo,
        &home,
        &[&who[..], &["commit", "-q", "-m", "base"]].concat(),
    );
    let env = run_env(&home, &server);
    let treefarm = |args: &[&str]| -> Output {
        treefarm_as(&env, user, tmp.path())
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("run treefarm")
    };
    let out = treefarm(&["run", "--no-merge"]);
    let ctx = |out: &Output| {
        format!(
            "{} as {}: {}\n{}",
            cli.preset,
            user.unwrap_or("the current user"),
            String::from_utf8_lossy(&out.stderr),
            logs_of(&repo)
        )
    };
    assert_eq!(out.status.code(), Some(0), "{}", ctx(&out));
    // Someone else's version of the file lands on the target meanwhile.
    git(&repo, &home, &["checkout", "-q", "roadmap"]);
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).expect("dir");
    std::fs::write(&path, "the target's own version\n").expect("write");
    git(&repo, &home, &["add", "-A"]);
    git(
        &repo,
        &home,
        &[&who[..], &["commit", "-q", "-m", "target's version"]].concat(),
    );
    let target_tip = git(&repo, &home, &["rev-parse", "HEAD"]).trim().to_string();
    git(&repo, &home, &["checkout", "-q", "main"]);

    let out = treefarm(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", ctx(&out));
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("\"event\":\"resolving\""), "{events}");
    assert_eq!(
        git(&repo, &home, &["show", &format!("roadmap:{file}")]),
        resolved.replace("{id}", id),
        "{}",
        ctx(&out)
    );
    // The resolution is the agent's merge commit with the target's tip as
    // a parent, and it is what was merged.
    let merge = git(
        &repo,
        &home,
        &[
            "log",
            "--merges",
            "--format=%H %P",
            "--grep",
            &format!("treefarm/{id}"),
            "roadmap",
        ],
    );
    let merged_branch_tip = merge
        .split_whitespace()
        .nth(2)
        .expect("merge parents")
        .to_string();
    let parents = git(
        &repo,
        &home,
        &["log", "-1", "--format=%P", &merged_branch_tip],
    );
    assert!(
        parents.contains(&target_tip),
        "{parents} lacks {target_tip}\n{}",
        ctx(&out)
    );
    // The model was asked with the resolution prompt, naming the file.
    let asked = server.main_requests().into_iter().any(|r| {
        let text = r["body"].to_string();
        text.contains("Resolve the merge conflict") && text.contains(file)
    });
    assert!(
        asked,
        "no request carried the resolution prompt\n{}",
        ctx(&out)
    );
}

#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_clis_resolve_a_conflict_handed_back() {
    for cli in [
        Cli {
            preset: "claude-code",
            model: "claude-scripted-1",
            model_on_wire: "claude-scripted-1",
            errors: json!([]),
            transcript: None,
        },
        Cli {
            preset: "codex",
            model: "scripted-model",
            model_on_wire: "scripted-model",
            errors: json!([]),
            transcript: None,
        },
        Cli {
            preset: "gemini",
            model: "gemini-scripted",
            model_on_wire: "gemini-scripted",
            errors: json!([]),
            transcript: None,
        },
        Cli {
            preset: "aider",
            model: "openai/scripted-model",
            model_on_wire: "scripted-model",
            errors: json!([]),
            transcript: None,
        },
    ] {
        for_each_user(|user| resolve_real(&cli, user));
    }
}

/// The `treefarm` commands of the README's quick start, as written there
/// (comments dropped), without `status --watch`, which watches from another
/// terminal.
fn readme_quick_start() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block in the quick start");
    block
        .lines()
        .filter_map(|l| l.split('#').next())
        .map(str::split_whitespace)
        .map(|words| words.map(str::to_string).collect::<Vec<_>>())
        .filter(|words| words.first().is_some_and(|w| w == "treefarm"))
        .map(|words| words[1..].to_vec())
        .filter(|args| args.first().is_some_and(|a| a != "status"))
        .collect()
}

/// Issue 21.5: `treefarm init` then `treefarm run` failed with the real
/// Claude Code (`init` wrote a raw `claude -p "$(cat {spec})"` command that
/// the spec's front matter turned into an unknown option). The README's
/// quick start, exactly as shown, in a fresh repository with one commit and
/// an empty `$HOME`: the example spec is done by the agent's own commit.
#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_claude_code_runs_the_readme_quick_start() {
    let commands = readme_quick_start();
    let verbs: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(verbs, ["init", "check", "plan", "run"], "{commands:?}");
    for_each_user(|user| quick_start_for_real(&commands, user));
}

fn quick_start_for_real(commands: &[Vec<String>], user: Option<&str>) {
    let (tmp, home) = scratch("treefarm-real-quick-");
    let greeting = "Hello from treefarm";
    let server = ModelServer::start(
        &tmp.path().join("server"),
        &json!({
            "steps": [
                {"read": "{file}"},
                {"write": "{file}", "content": format!("# greetings\n{greeting}\n")},
                {"shell": "git add {file} && git commit -m 'README: a greeting'"},
                {"text": "done"}
            ],
        }),
    );
    // A fresh repository: one commit, nothing of treefarm's.
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    git(&repo, &home, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "# greetings\n").expect("readme");
    commit_base(&repo, &home);
    let env = run_env(&home, &server);
    let mut said = String::new();
    for args in commands {
        let out = treefarm_as(&env, user, tmp.path())
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("run treefarm");
        said.push_str(&format!(
            "$ treefarm {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        let log = std::fs::read_to_string(log_path(&repo, "001")).unwrap_or_default();
        assert_eq!(
            out.status.code(),
            Some(0),
            "as {}: {said}\n{log}",
            user.unwrap_or("the current user")
        );
    }
    let ctx = format!(
        "as {}: {said}\n{}",
        user.unwrap_or("the current user"),
        std::fs::read_to_string(log_path(&repo, "001")).unwrap_or_default()
    );
    assert!(
        git(&repo, &home, &["show", "roadmap:README.md"]).contains(greeting),
        "{ctx}"
    );
    // The agent's own commit (Claude Code's Bash tool), not treefarm's.
    let subjects = git(
        &repo,
        &home,
        &["log", "--format=%an <%ae>%x09%s", "roadmap"],
    );
    assert!(
        subjects
            .lines()
            .any(|l| l == format!("{AGENT_IDENTITY}\tREADME: a greeting")),
        "{subjects}\n{ctx}"
    );
    assert!(
        !subjects.contains("treefarm: commit changes left uncommitted"),
        "{subjects}\n{ctx}"
    );
}

/// Issue 21.2 and 22.2 with the real Claude Code: its Bash tool reads a
/// planted `~/.aws/credentials` and writes `$HOME` — both denied — then does
/// its work. The run succeeds, and its result names both denials (not only
/// the log); the secret never reached the model.
#[test]
#[ignore = "needs the real CLIs: scripts/test-real-agents.sh"]
fn real_claude_code_denied_tool_calls_are_named_in_the_result() {
    for_each_user(denied_for_real);
}

fn denied_for_real(user: Option<&str>) {
    const SECRET: &str = "FAKE-AWS-SECRET-planted-by-the-real-agents-test";
    let (tmp, home) = scratch("treefarm-real-denied-");
    std::fs::create_dir_all(home.join(".aws")).expect("aws");
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[default]\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("credentials");
    let server = ModelServer::start(
        &tmp.path().join("server"),
        &json!({
            "steps": [
                {"shell": "cat \"$HOME/.aws/credentials\"; touch \"$HOME/escape\"; true"},
                {"write": "{file}", "content": "written by the scripted model for {id}\n"},
                {"shell": "git add {file} && git commit -m '{id}: scripted change'"},
                {"text": "done"}
            ],
        }),
    );
    let repo = greeting_repo(tmp.path(), &home, &SPECS[..1]);
    std::fs::write(
        repo.join("treefarm.yaml"),
        "agent:\n  preset: claude-code\n  model: claude-scripted-1\n  timeout: 5m\n",
    )
    .expect("config");
    commit_base(&repo, &home);
    let env = run_env(&home, &server);
    let out = treefarm_as(&env, user, tmp.path())
        .args(["run"])
        .current_dir(&repo)
        .output()
        .expect("run treefarm");
    let ctx = format!(
        "as {}: {}\n{}",
        user.unwrap_or("the current user"),
        String::from_utf8_lossy(&out.stderr),
        logs_of(&repo)
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let status = treefarm_as(&env, user, tmp.path())
        .args(["status", "--json"])
        .current_dir(&repo)
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let denied = status["instances"][0]["denied"]
        .as_str()
        .unwrap_or_default();
    for expected in [
        format!(
            "read of {}/.aws/credentials denied by isolation",
            home.display()
        ),
        format!("write to {}/escape denied by isolation", home.display()),
    ] {
        assert!(
            denied.contains(&expected),
            "{expected} in {status:#}\n{ctx}"
        );
    }
    assert!(!home.join("escape").exists(), "{ctx}");
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.to_string().contains(SECRET)),
        "the secret reached the model\n{ctx}"
    );
    assert_eq!(
        git(&repo, &home, &["show", "roadmap:src/one/first.txt"]),
        content_for("001"),
        "{ctx}"
    );
}
