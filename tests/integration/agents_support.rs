//! Fast tests (no agent CLI installed) of what issue 10 added around the
//! agents: the scripted model-API server's wire formats, the wrappers' event
//! streams turned into status updates and a transcript, the `unchanged`
//! result, the agent's git identity and the shared-git-config watch.

use crate::common;
use crate::support;

use std::path::Path;
use std::process::Command;

use common::{json_events, json_summary, stderr, summary_ids, TestRepo};
use serde_json::{json, Value};
use support::{post, sse_data, ModelServer};

/// A body carrying the prompt treefarm assembles (what the server reads
/// `{file}`, `{abs}` and `{id}` from).
fn prompt_text() -> String {
    "# 042: Add retry\n\nDo it.\n\n## Rules for this task\n\nYou are working in the git worktree \
     `/w/042`, on branch `treefarm/042`; it will be merged.\n\nCreate or modify only these files \
     (globs match any file under them):\n- `src/retry.rs`\n\nDo not create or modify any other file.\n"
        .to_string()
}

fn script() -> Value {
    json!({
        "steps": [
            {"read": "{file}"},
            {"write": "{file}", "content": "fn retry() {}\n"},
            {"shell": "git add {file} && git commit -m '{id}: retry'"},
            {"text": "done with {id}"}
        ],
        "errors": [{"status": 429, "retry_after": 3}, {"status": 500}, {"status": 529}]
    })
}

#[test]
fn scripted_server_serves_errors_then_the_script_on_every_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ModelServer::start(dir.path(), &script());
    let tools = json!([{"name": "Read"}, {"name": "Write"}, {"name": "Bash"}]);
    let first = json!({"model": "claude-x", "stream": true, "tools": tools,
                       "messages": [{"role": "user", "content": prompt_text()}]});

    // The errors first, in order, one per main request.
    let (status, headers, body) = post(server.port, "/v1/messages", &first);
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains(&("retry-after".to_string(), "3".to_string())));
    assert!(body.contains("rate_limit_error"), "{body}");
    assert_eq!(post(server.port, "/v1/messages", &first).0, 500);
    let (status, _, body) = post(server.port, "/v1/messages", &first);
    assert_eq!(status, 529);
    assert!(body.contains("overloaded_error"), "{body}");

    // Anthropic, streamed: step 0 is a Read of the declared file's absolute path.
    let (status, _, body) = post(server.port, "/v1/messages", &first);
    assert_eq!(status, 200);
    let events = sse_data(&body);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1]["content_block"]["name"], "Read");
    let input: Value = serde_json::from_str(
        events[2]["delta"]["partial_json"]
            .as_str()
            .expect("input json"),
    )
    .expect("input is JSON");
    assert_eq!(input["file_path"], "/w/042/src/retry.rs");
    assert_eq!(events[4]["delta"]["stop_reason"], "tool_use");

    // After two tool results: the shell step, with the placeholders filled.
    let third = json!({"model": "claude-x", "tools": tools, "messages": [
        {"role": "user", "content": prompt_text()},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "x"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "y"}]}
    ]});
    let (_, _, body) = post(server.port, "/v1/messages", &third);
    let plain: Value = serde_json::from_str(&body).expect("plain JSON");
    assert_eq!(plain["content"][0]["name"], "Bash");
    assert_eq!(
        plain["content"][0]["input"]["command"],
        "git add src/retry.rs && git commit -m '042: retry'"
    );

    // OpenAI Responses, streamed: a function call for the shell tool.
    let responses = json!({"model": "gpt-x", "stream": true,
        "tools": [{"type": "function", "name": "exec_command"}],
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": prompt_text()}]}]});
    let (_, _, body) = post(server.port, "/v1/responses", &responses);
    let events = sse_data(&body);
    assert_eq!(events.first().expect("events")["type"], "response.created");
    assert_eq!(events.last().expect("events")["type"], "response.completed");
    let call = events
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .expect("an item");
    assert_eq!(call["item"]["type"], "function_call");
    assert_eq!(call["item"]["name"], "exec_command");
    let args: Value =
        serde_json::from_str(call["item"]["arguments"].as_str().expect("args")).expect("JSON");
    assert_eq!(args["cmd"], "cat 'src/retry.rs'");

    // Chat Completions, plain and streamed: aider's whole-file edit.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": prompt_text()}]});
    let (_, _, body) = post(server.port, "/v1/chat/completions", &chat);
    let plain: Value = serde_json::from_str(&body).expect("JSON");
    let text = plain["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert_eq!(text, "src/retry.rs\n```\nfn retry() {}\n```\n");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (_, _, body) = post(server.port, "/v1/chat/completions", &streamed);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let joined: String = sse_data(&body)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, text);

    // Gemini, streamed and plain; a request without tools is a side request.
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": prompt_text()}]}],
        "tools": [{"functionDeclarations": [{"name": "read_file"}, {"name": "write_file"},
                                            {"name": "run_shell_command"}]}]});
    let (_, _, body) = post(
        server.port,
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
        &gemini,
    );
    let chunk = &sse_data(&body)[0];
    let call = &chunk["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "read_file");
    assert_eq!(call["args"]["absolute_path"], "/w/042/src/retry.rs");
    let side = json!({"contents": [{"role": "user", "parts": [{"text": "who speaks next?"}]}],
                      "generationConfig": {"responseMimeType": "application/json"}});
    let (_, _, body) = post(
        server.port,
        "/v1beta/models/gemini-x:generateContent",
        &side,
    );
    let plain: Value = serde_json::from_str(&body).expect("JSON");
    let answer = plain["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .expect("text");
    assert_eq!(
        serde_json::from_str::<Value>(answer).expect("JSON answer")["next_speaker"],
        "user"
    );

    // Everything was recorded, with what reached the model.
    let requests = server.requests();
    assert_eq!(requests.len(), 10, "{requests:#?}");
    assert_eq!(server.main_requests().len(), 9);
    assert_eq!(requests[0]["body"]["model"], "claude-x");
    assert!(requests[0]["body"].to_string().contains("src/retry.rs"));
    assert!(requests[8]["path"]
        .as_str()
        .expect("path")
        .contains("gemini-x:streamGenerateContent"));
}

/// `common.sh`, where the wrappers' shared functions live.
fn common_sh() -> String {
    format!("{}/scripts/agents/common.sh", env!("CARGO_MANIFEST_DIR"))
}

/// Feeds `events` to `tf_events KIND`; returns the transcript and the
/// status file it left.
fn through_events(kind: &str, events: &str) -> (String, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = dir.path().join("status.json");
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events).expect("events");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}'; tf_display=CLI; tf_events {kind} < '{}'",
            common_sh(),
            input.display()
        ))
        .env("TREEFARM_STATUS_FILE", &status)
        .env("TREEFARM_WORKTREE", "/w/042")
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(&status).expect("status written"))
            .expect("status is JSON");
    (String::from_utf8_lossy(&out.stdout).into_owned(), status)
}

#[test]
fn claude_stream_json_becomes_status_updates_and_a_transcript() {
    let (transcript, status) = through_events(
        "claude",
        concat!(
            r#"{"type":"system","subtype":"init","model":"claude-x"}"#,
            "\n",
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/w/042/src/retry.rs"}}]}}"#,
            "\n",
            "a line that is not an event\n",
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Edit","input":{"file_path":"/w/042/src/retry.rs","old_string":"a \"b\"","new_string":"c"}}]}}"#,
            "\n",
            r#"{"type":"result","subtype":"success","num_turns":2,"result":"done"}"#,
            "\n"
        ),
    );
    assert_eq!(status["state"], "working");
    assert_eq!(status["message"], "turn 2: editing src/retry.rs");
    assert_eq!(status["turns"], 2);
    assert_eq!(status["progress"], 20);
    assert_eq!(
        transcript,
        "[CLI] session started (model claude-x)\n[CLI] reading src/retry.rs\n\
         a line that is not an event\n[CLI] editing src/retry.rs\n\
         [CLI] result: success after 2 turn(s): done\n"
    );
}

#[test]
fn codex_and_gemini_events_become_status_updates() {
    let (transcript, status) = through_events(
        "codex",
        concat!(
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"item.started","item":{"id":"i1","type":"command_execution","command":"bash -lc 'git commit -m x'","status":"in_progress"}}"#,
            "\n",
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"bash -lc 'git commit -m x'","exit_code":0,"status":"completed"}}"#,
            "\n"
        ),
    );
    assert_eq!(
        status["message"],
        "turn 1: running bash -lc 'git commit -m x'"
    );
    assert!(
        transcript.contains("command ended: exit 0 bash -lc"),
        "{transcript}"
    );
    let (_, status) = through_events(
        "gemini",
        concat!(
            r#"{"type":"init","model":"gemini-x"}"#,
            "\n",
            r#"{"type":"tool_use","tool_name":"write_file","tool_id":"w1","parameters":{"file_path":"/w/042/src/retry.rs","content":"x"}}"#,
            "\n",
            r#"{"type":"tool_result","tool_id":"w1","status":"success"}"#,
            "\n"
        ),
    );
    assert_eq!(status["message"], "turn 1: editing src/retry.rs");
}

/// A fake CLI that prints Claude Code's events and exits with `code`.
fn fake_streaming_cli(dir: &Path, code: i32) -> std::path::PathBuf {
    let path = dir.join("claude");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncat > \"$0.stdin\"\n\
             echo '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"tool_use\",\"name\":\"Write\",\"input\":{{\"file_path\":\"'\"$PWD\"'/a.txt\"}}}}]}}}}'\n\
             echo 'on stderr' >&2\nexit {code}\n"
        ),
    )
    .expect("fake");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn the_claude_wrapper_keeps_the_cli_exit_code_and_feeds_the_prompt_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wt = dir.path().join("wt");
    std::fs::create_dir_all(&wt).expect("wt");
    let fake = fake_streaming_cli(dir.path(), 3);
    let prompt = dir.path().join("prompt.md");
    // Far over the 128 KiB a single argument may hold.
    let big = "x".repeat(300 * 1024);
    std::fs::write(&prompt, &big).expect("prompt");
    let wrapper = treefarm::agents::preset("claude-code")
        .expect("preset")
        .wrapper;
    let out = Command::new("sh")
        .arg("-c")
        .arg(wrapper)
        .env("TREEFARM_CLAUDE_BIN", &fake)
        .env("TREEFARM_WORKTREE", &wt)
        .env("TREEFARM_PROMPT_FILE", &prompt)
        .env("TREEFARM_STATUS_FILE", dir.path().join("status.json"))
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains("[Claude Code] editing a.txt"),
        "{transcript}"
    );
    assert!(stderr(&out).contains("on stderr"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("claude.stdin")).expect("stdin"),
        big
    );
    let status: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("status.json")).expect("status"),
    )
    .expect("JSON");
    assert_eq!(status["state"], "failed");
}

fn spec(id: &str, file: &str) -> (String, String) {
    (
        format!("SPEC-{id}-x.md"),
        format!("# Task {id}\n\nDo it.\n\n**Files**:\n- `{file}`\n"),
    )
}

/// A repository whose agent is the shell command `agent`.
/// `{records}` in `agent` names [`TestRepo::records`].
fn repo_with_agent(agent: &str, extra_config: &str) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hi\n")]);
    let (name, text) = spec("001", "src/a.txt");
    repo.write(&format!("specs/{name}"), &text);
    let records = repo.records();
    let agent = agent.replace("{records}", &records.display().to_string());
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: {agent}\n  timeout: 1m\n{extra_config}{}",
            common::allow_write_yaml(&[&records])
        ),
    );
    repo.commit_all("specs");
    repo
}

#[test]
fn an_agent_that_changes_nothing_is_unchanged_and_retried_not_merged() {
    let repo = repo_with_agent("echo ran >> {records}/runs.txt", "  retries: 1\n");
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "unchanged"), ["001"]);
    assert!(summary_ids(&summary, "merged").is_empty());
    // It counted as a failed attempt: the retry ran it again.
    let runs = std::fs::read_to_string(repo.records().join("runs.txt")).expect("runs");
    assert_eq!(runs.lines().count(), 2);
    assert_eq!(repo.instance("001")["state"], "unchanged");
    let status = repo.tf(&["status"]);
    assert!(stderr(&status).contains("unchanged") || common::stdout(&status).contains("unchanged"));
    assert!(repo
        .git(&["branch", "--list", "roadmap"])
        .contains("roadmap"));
    assert_eq!(
        repo.git(&["rev-parse", "roadmap"]),
        repo.git(&["rev-parse", "main"]),
        "nothing merged"
    );
}

#[test]
fn allow_unchanged_accepts_an_agent_that_changes_nothing() {
    let repo = repo_with_agent("true", "  allow_unchanged: true\n");
    let out = repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(summary_ids(&json_summary(&out), "unchanged").is_empty());
}

/// The agent records its GIT_* environment outside the worktree and
/// commits.
const IDENTITY_AGENT: &str =
    "'env | grep ^GIT_ | sort > {records}/agent-env.txt; mkdir -p src; echo x > src/a.txt; git add src/a.txt; git commit -qm work'";

#[test]
fn agents_commit_with_the_configured_identity() {
    let repo = repo_with_agent(
        &format!("sh -c {IDENTITY_AGENT}"),
        "  git_identity: Ada Lovelace <ada@example.org>\n",
    );
    let out = repo.tf(&["run", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = std::fs::read_to_string(repo.records().join("agent-env.txt")).expect("env");
    for line in [
        "GIT_AUTHOR_NAME=Ada Lovelace",
        "GIT_AUTHOR_EMAIL=ada@example.org",
        "GIT_COMMITTER_NAME=Ada Lovelace",
        "GIT_COMMITTER_EMAIL=ada@example.org",
        "GIT_CONFIG_KEY_0=user.name",
        "GIT_CONFIG_VALUE_0=Ada Lovelace",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    assert_eq!(
        repo.git(&[
            "log",
            "-1",
            "--format=%an <%ae>|%cn <%ce>|%s",
            "treefarm/001"
        ]),
        "Ada Lovelace <ada@example.org>|Ada Lovelace <ada@example.org>|work"
    );
}

#[test]
fn without_any_identity_agents_commit_as_treefarm_agent() {
    let repo = repo_with_agent(&format!("sh -c {IDENTITY_AGENT}"), "");
    repo.git(&["config", "--unset", "user.name"]);
    repo.git(&["config", "--unset", "user.email"]);
    let config_before = std::fs::read(repo.root.join(".git/config")).expect("config");
    let out = repo.tf(&["run", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", "treefarm/001"]),
        "treefarm agent <agent@treefarm>"
    );
    assert_eq!(
        std::fs::read(repo.root.join(".git/config")).expect("config"),
        config_before
    );
}

#[test]
fn an_agent_changing_the_shared_git_config_is_named_in_a_warning() {
    let repo = repo_with_agent(
        "'git config user.name \"Your Name\"; mkdir -p src; echo x > src/a.txt'",
        "",
    );
    let config_before = std::fs::read(repo.root.join(".git/config")).expect("config");
    // Under isolation (the default) the agent's `git config` writes its
    // private git directory: the shared config is untouched, nothing to warn.
    let out = repo.tf(&["run", "--json", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if common::landlock_available() {
        assert_eq!(
            std::fs::read(repo.root.join(".git/config")).expect("config"),
            config_before
        );
        assert!(!json_events(&out).iter().any(|e| e["event"] == "warning"));
    }
    // The warning is for agents that run unconfined (`isolation: off`, or a
    // kernel without Landlock), the only ones that can change it.
    let repo = repo_with_agent(
        "'git config user.name \"Your Name\"; mkdir -p src; echo x > src/a.txt'",
        "",
    );
    let out = repo.tf(&["run", "--json", "--isolation", "off"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not a failure: {}",
        stderr(&out)
    );
    let events = json_events(&out);
    let warning = events
        .iter()
        .find(|e| e["event"] == "warning")
        .unwrap_or_else(|| panic!("a warning event: {events:?}"));
    assert_eq!(warning["id"], "001");
    let message = warning["message"].as_str().expect("message");
    assert!(message.starts_with("the agent of 001 changed"), "{message}");
    assert!(message.contains("config modified"), "{message}");

    // Unchanged shared files: no warning.
    let quiet = repo_with_agent("'mkdir -p src; echo x > src/a.txt'", "");
    let out = quiet.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!json_events(&out).iter().any(|e| e["event"] == "warning"));
}

#[test]
fn claude_as_root_is_said_once_at_the_start_of_the_run() {
    let repo = TestRepo::with_files(&[("README.md", "hi\n")]);
    for id in ["001", "002"] {
        let (name, text) = spec(id, &format!("src/{id}.txt"));
        repo.write(&format!("specs/{name}"), &text);
    }
    repo.write(
        "treefarm.yaml",
        "agent:\n  preset: claude-code\n  allowed_commands: [cargo test]\n",
    );
    repo.commit_all("specs");
    let fakes = format!("{}/tests/fakes", env!("CARGO_MANIFEST_DIR"));
    let path = format!("{fakes}:{}", std::env::var("PATH").unwrap_or_default());
    let out = repo
        .treefarm()
        .env("PATH", path)
        .args(["run", "--instances", "2"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let notes = stderr(&out).matches("note: running as root").count();
    if treefarm::procfs::running_as_root() {
        assert_eq!(notes, 1, "{}", stderr(&out));
        assert!(stderr(&out).contains("--allowedTools"));
    } else {
        assert_eq!(notes, 0, "{}", stderr(&out));
    }
}
