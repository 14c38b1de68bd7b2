//! `treefarm mcp` over its real stdio: a client written here speaks
//! JSON-RPC lines to the real binary. The tool list (an insta snapshot),
//! every structured result against its tool's output schema, domain
//! outcomes as results, detached runs followed with `run_wait` and its
//! progress notifications, cancel then resume (git as the oracle), the lock
//! of another run, the recursion guard, nothing but JSON-RPC on stdout, and
//! `check_drafts` judging inline drafts as `treefarm split` judges a round
//! (git and the spec folder as the oracle for "nothing written").
//!
//! Runs use the defaults users get: isolation on, the merge queue, the
//! stagger (the shared fixtures turn the first and the last off for other
//! tests; the server here is started without those two variables).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{spec_md, TestRepo};

/// How long any single answer of the server may take in these tests.
const ANSWER: Duration = Duration::from_secs(120);

/// A client of one `treefarm mcp` process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    next_id: u64,
    /// Notifications received so far (progress among them).
    notifications: Vec<Value>,
    /// Every tool of `tools/list`, for the output schemas.
    tools: Vec<Value>,
    /// The server's stderr, read as it comes (a full pipe would block the
    /// server's logging, and so the server).
    stderr: std::thread::JoinHandle<String>,
}

impl Client {
    /// Starts `treefarm mcp` in `repo` with the defaults (isolation and the
    /// stagger on) and `env`, and completes the handshake.
    fn start(repo: &TestRepo, env: &[(&str, &str)]) -> Client {
        let mut cmd = repo.treefarm();
        cmd.env_remove("TREEFARM_ISOLATION")
            .env_remove("TREEFARM_AGENT_START_INTERVAL")
            .env("TREEFARM_LOG", "debug")
            .envs(env.iter().copied())
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Client::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Client {
        let mut child = cmd.spawn().expect("spawn treefarm mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut err, &mut text).expect("read stderr");
            text
        });
        let (tx, lines) = mpsc::channel();
        // Every line on stdout must be a JSON-RPC 2.0 message: anything else
        // (a log line, a progress bar) fails the test here.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read stdout");
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                assert_eq!(value["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            lines,
            next_id: 0,
            notifications: Vec::new(),
            tools: Vec::new(),
            stderr,
        };
        let init = client.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "treefarm-tests", "version": "1"}}),
        );
        assert_eq!(init["serverInfo"]["name"], "treefarm", "{init}");
        client.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let list = client.request("tools/list", json!({}));
        client.tools = list["tools"].as_array().expect("tools").clone();
        client
    }

    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").expect("write to the server");
        self.stdin.flush().expect("flush");
    }

    /// Sends a request and returns its `result`, keeping notifications.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.lines.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => panic!("no answer to {method} in {ANSWER:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the server closed stdout"),
            };
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            if message.get("id").is_none() {
                self.notifications.push(message);
            }
        }
    }

    /// Calls `tool`; checks the result's shape (structured content valid
    /// against the tool's output schema, the text copy the same JSON, not
    /// an error) and returns the structured content.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.call_with_meta(tool, args, None)
    }

    fn call_with_meta(&mut self, tool: &str, args: Value, token: Option<&str>) -> Value {
        let mut params = json!({"name": tool, "arguments": args});
        if let Some(token) = token {
            params["_meta"] = json!({"progressToken": token});
        }
        let result = self.request("tools/call", params);
        assert_eq!(result["isError"], json!(false), "{tool}: {result}");
        let structured = result["structuredContent"].clone();
        let text = result["content"][0]["text"].as_str().expect("a text copy");
        let copy: Value = serde_json::from_str(text).expect("the text copy is JSON");
        assert_eq!(copy, structured, "{tool}: the text copy differs");
        self.assert_valid(tool, &structured);
        structured
    }

    fn assert_valid(&self, tool: &str, value: &Value) {
        let schema = self
            .tools
            .iter()
            .find(|t| t["name"] == tool)
            .and_then(|t| t.get("outputSchema"))
            .unwrap_or_else(|| panic!("{tool} has no output schema"));
        let validator = jsonschema::validator_for(schema).expect("a valid output schema");
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{tool} result {value} breaks its schema: {errors:?}"
        );
    }

    /// `run_wait` until no coordinator works on the run; returns the last
    /// result and every event seen.
    fn wait_run(&mut self, run_id: &str, token: Option<&str>) -> (Value, Vec<Value>) {
        let mut cursor = 0;
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let r = self.call_with_meta(
                "run_wait",
                json!({"run_id": run_id, "cursor": cursor}),
                token,
            );
            events.extend(r["events"].as_array().expect("events").iter().cloned());
            cursor = r["cursor"].as_u64().expect("cursor");
            if r["active"] == json!(false) && r["more_events"] == json!(false) {
                return (r, events);
            }
            assert!(Instant::now() < deadline, "the run never ended: {r}");
        }
    }

    /// `run_wait` in one-second steps until `cond` holds for a result.
    fn wait_until(&mut self, run_id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.call("run_wait", json!({"run_id": run_id, "timeout_seconds": 1}));
            if cond(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {r}");
        }
    }

    /// Closes stdin and returns the server's stderr after it exited.
    fn finish(mut self) -> String {
        drop(self.stdin);
        let status = self.child.wait().expect("wait for the server");
        assert!(status.success(), "treefarm mcp exited with {status}");
        self.stderr.join().expect("the stderr reader")
    }
}

/// Two specs of the scripted agent, each writing its own file (001 runs
/// `directives_extra` after its commit).
pub(crate) fn two_specs(directives_extra: &str) -> TestRepo {
    TestRepo::farm(
        &[("README.md", "# r\n")],
        &[
            (
                "SPEC-001-one.md",
                spec_md(
                    "one",
                    &["one.txt"],
                    &[],
                    None,
                    &format!("write one.txt first\ncommit one\n{directives_extra}"),
                ),
            ),
            (
                "SPEC-002-two.md",
                spec_md(
                    "two",
                    &["two.txt"],
                    &[],
                    None,
                    "write two.txt second\ncommit two",
                ),
            ),
        ],
        "",
    )
}

#[test]
fn the_tool_list_matches_its_snapshot_and_read_only_tools_say_so() {
    let repo = two_specs("");
    let client = Client::start(&repo, &[]);
    let names: Vec<&str> = client
        .tools
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    for t in &client.tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert_eq!(t["outputSchema"]["type"], "object", "{t}");
        let read_only = t["annotations"]["readOnlyHint"] == json!(true);
        let expected = matches!(
            t["name"].as_str(),
            Some("check" | "check_drafts" | "plan" | "run_wait" | "status")
        );
        assert_eq!(read_only, expected, "{}", t["name"]);
    }
    assert!(names.contains(&"check_drafts"), "{names:?}");
    let text = serde_json::to_string_pretty(&client.tools).expect("json");
    insta::assert_snapshot!("mcp_tools", text);
    client.finish();
}

#[test]
fn check_reports_overlaps_and_an_invalid_spec_as_results() {
    let repo = TestRepo::farm(
        &[("README.md", "# r\n")],
        &[
            (
                "SPEC-001-a.md",
                spec_md("a", &["shared.txt"], &[], None, ""),
            ),
            (
                "SPEC-002-b.md",
                spec_md("b", &["shared.txt"], &[], None, ""),
            ),
        ],
        "",
    );
    let mut client = Client::start(&repo, &[]);
    let r = client.call("check", json!({}));
    assert_eq!(r["exit_code"], 3, "{r}");
    assert!(
        r["outcome"]
            .as_str()
            .expect("outcome")
            .starts_with("overlaps"),
        "{r}"
    );
    assert_eq!(r["json"]["independent"], false, "{r}");
    let overlap = &r["json"]["overlaps"][0];
    assert_eq!(
        (overlap["a"].as_str(), overlap["b"].as_str()),
        (Some("001"), Some("002"))
    );
    assert_eq!(overlap["paths"], json!(["shared.txt"]), "{r}");
    // The same object as `treefarm check --json`.
    let cli = repo.tf(&["check", "--json"]);
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("check --json");
    assert_eq!(r["json"], cli);

    // An invalid spec: exit 2 with the diagnostic naming the file.
    repo.write(
        "specs/SPEC-003-c.md",
        "---\ntitle: c\n---\n# c\n\nNo files.\n",
    );
    let r = client.call("check", json!({"ids": ["3"]}));
    assert_eq!(r["exit_code"], 2, "{r}");
    let errors = r["json"]["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["file"] == "specs/SPEC-003-c.md"),
        "{r}"
    );
    // Explain, and plan: results too.
    let r = client.call("check", json!({"explain": "1"}));
    assert_eq!(r["json"]["declared"][0]["value"], "shared.txt", "{r}");
    let r = client.call("plan", json!({"ids": ["1", "2"]}));
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["json"]["waves"], json!([["001"], ["002"]]), "{r}");
    let stderr = client.finish();
    assert!(!stderr.is_empty(), "TREEFARM_LOG=debug logs went to stderr");
}

#[test]
fn run_start_answers_at_once_and_run_wait_follows_the_run_to_its_merge() {
    let repo = two_specs("sleep 1");
    let mut client = Client::start(&repo, &[]);
    let started = Instant::now();
    let r = client.call("run_start", json!({}));
    let took = started.elapsed();
    assert_eq!(r["started"], true, "{r}");
    assert!(took < Duration::from_secs(1), "run_start took {took:?}");
    let run_id = r["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(repo.run_ids(), vec![run_id.clone()]);
    // The run is journalled when run_start answers (the lock names it a
    // moment before its journal exists): status finds it at once.
    let status = client.call("status", json!({"run_id": run_id}));
    assert_eq!(status["exit_code"], 0, "{status}");

    let (last, events) = client.wait_run(&run_id, Some("follow"));
    assert_eq!(last["state"], "finished", "{last}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in ["planted", "started", "merged", "summary"] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let progress: Vec<&Value> = client
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert!(
        !progress.is_empty(),
        "no progress notification while waiting"
    );
    for p in &progress {
        assert_eq!(p["params"]["progressToken"], "follow", "{p}");
        assert!(p["params"]["message"]
            .as_str()
            .expect("message")
            .contains("specs done"));
    }
    // git: both files reached roadmap.
    assert_eq!(repo.show("roadmap", "one.txt"), "first");
    assert_eq!(repo.show("roadmap", "two.txt"), "second");

    let status = client.call("status", json!({"run_id": run_id}));
    assert_eq!(status["json"]["state"], "finished", "{status}");
    let report = client.call("report", json!({}));
    assert_eq!(report["run_id"], json!(run_id));
    let html = report["html"].as_str().expect("html path");
    assert!(std::path::Path::new(html).is_file(), "{html}");
    let results: Vec<&str> = report["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| s["result"].as_str().expect("result"))
        .collect();
    assert_eq!(results, ["merged", "merged"], "{report}");
    assert!(report["wall_ms"].as_u64().expect("wall") > 0, "{report}");
    let prune = client.call("prune", json!({"dry_run": true}));
    assert_eq!(prune["exit_code"], 0, "{prune}");
    client.finish();
}

#[test]
fn run_cancel_leaves_the_run_resumable_and_resume_merges_it_while_the_lock_names_the_run() {
    // Spec 001 commits, says so in its status, then works for a while: the
    // cancel lands in that while.
    let repo = TestRepo::farm(
        &[("README.md", "# r\n")],
        &[(
            "SPEC-001-one.md",
            spec_md(
                "one",
                &["one.txt"],
                &[],
                None,
                "write one.txt first\ncommit one\nstatus 50 committed\nsleep 4",
            ),
        )],
        "",
    );
    let mut client = Client::start(&repo, &[]);
    let r = client.call("run_start", json!({}));
    let run_id = r["run_id"].as_str().expect("run_id").to_string();
    client.wait_until(&run_id, "the agent's commit", |r| {
        r["instances"][0]["message"] == "committed"
    });

    // The lock: a second run is refused, naming the first.
    let second = client.call("run_start", json!({}));
    assert_eq!(second["started"], false, "{second}");
    assert_eq!(second["lock_held_by"]["run_id"], json!(run_id), "{second}");
    assert_eq!(repo.run_ids().len(), 1);

    let cancel = client.call("run_cancel", json!({"run_id": run_id}));
    assert_eq!(
        (cancel["signalled"].clone(), cancel["stopped"].clone()),
        (json!(true), json!(true)),
        "{cancel}"
    );
    let after = client.call("run_wait", json!({"run_id": run_id}));
    assert_eq!(after["state"], "interrupted", "{after}");
    assert_eq!(after["active"], false);
    assert!(
        repo.git(&["branch", "--list", "roadmap"]).is_empty()
            || repo.git(&["ls-tree", "roadmap", "one.txt"]).is_empty(),
        "nothing merged before the resume"
    );

    let resumed = client.call("resume", json!({"run_id": run_id}));
    assert_eq!(resumed["started"], true, "{resumed}");
    assert_eq!(resumed["run_id"], json!(run_id));
    let (last, _) = client.wait_run(&run_id, None);
    assert_eq!(last["state"], "finished", "{last}");
    // Merged, then its worktree and branch pruned.
    assert_eq!(last["instances"][0]["state"], "pruned", "{last}");
    assert_eq!(repo.show("roadmap", "one.txt"), "first");
    // The agent's one commit, not a second one from the rerun.
    assert_eq!(
        repo.git(&["log", "--format=%s", "main..roadmap", "--no-merges"]),
        "one"
    );
    client.finish();
}

#[test]
fn inside_an_agent_run_start_merge_and_prune_are_refused_unless_configured() {
    let repo = two_specs("");
    let agent_env = [
        ("TREEFARM_RUN_ID", "20260101-000000-0001"),
        ("TREEFARM_SPEC_ID", "007"),
    ];
    let mut client = Client::start(&repo, &agent_env);
    for (tool, args) in [
        ("run_start", json!({})),
        ("merge", json!({})),
        ("prune", json!({"dry_run": true})),
        ("resume", json!({})),
    ] {
        let r = client.call(tool, args);
        assert_eq!(
            r["refused"]["config_key"], "mcp.allow_in_agent",
            "{tool}: {r}"
        );
        let reason = r["refused"]["reason"].as_str().expect("reason");
        assert!(
            reason.contains("20260101-000000-0001") && reason.contains("007"),
            "{reason}"
        );
    }
    // Reading is allowed.
    assert_eq!(client.call("check", json!({}))["exit_code"], 0);
    assert!(repo.run_ids().is_empty(), "nothing started");
    client.finish();

    let mut env = agent_env.to_vec();
    env.push(("TREEFARM_MCP_ALLOW_IN_AGENT", "true"));
    let mut client = Client::start(&repo, &env);
    let r = client.call("prune", json!({"dry_run": true}));
    assert!(r.get("refused").is_none(), "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    client.finish();
}

#[test]
fn print_config_gives_each_client_what_it_needs_to_call_the_tools_unprompted() {
    let repo = two_specs("");
    let root = std::fs::canonicalize(&repo.root).expect("root");
    let out = repo.tf(&["mcp", "--print-config", "claude"]);
    assert!(out.status.success());
    let claude: Value = serde_json::from_slice(&out.stdout).expect("claude json");
    let server = &claude["mcpServers"]["treefarm"];
    assert_eq!(
        server["args"],
        json!(["mcp", "-C", root.display().to_string()])
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allowedTools mcp__treefarm"));

    let out = repo.tf(&["mcp", "--print-config", "gemini"]);
    let gemini: Value = serde_json::from_slice(&out.stdout).expect("gemini json");
    assert_eq!(gemini["mcpServers"]["treefarm"]["trust"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--skip-trust"));

    let out = repo.tf(&["mcp", "--print-config", "codex"]);
    let codex = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(codex.starts_with("[mcp_servers.treefarm]\n"), "{codex}");
    assert!(
        codex.contains("default_tools_approval_mode = \"approve\""),
        "{codex}"
    );
}

/// A repository with one existing spec (010 on `src/c.rs`), the split
/// tests' own.
fn drafts_repo() -> TestRepo {
    TestRepo::with_files(crate::split::SPLIT_REPO_FILES)
}

/// The draft `SPEC-<name>-work.md` with `front` as its front matter.
fn draft(name: &str, front: &str) -> Value {
    json!({
        "name": format!("SPEC-{name}-work.md"),
        "text": format!("---\n{front}---\nDo the work.\n\n## Verify\n\n`cargo test` passes.\n"),
    })
}

/// What `check_drafts` must leave as it was: refs, worktrees, the state
/// folder, HEAD, index and `git status` (untracked files included), and the
/// spec folder's files with their contents.
fn untouched(repo: &TestRepo) -> String {
    let mut specs: Vec<String> = std::fs::read_dir(repo.root.join("specs"))
        .expect("the spec folder")
        .map(|e| {
            let path = e.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("a spec");
            format!("{}\n{text}", path.display())
        })
        .collect();
    specs.sort();
    format!("{}\nspecs\n{}", repo.footprint(), specs.join("\n"))
}

/// `check_drafts` with `args`, and the repository and its spec folder as
/// they were before the call.
fn check_drafts(client: &mut Client, repo: &TestRepo, args: Value) -> Value {
    let before = untouched(repo);
    let r = client.call("check_drafts", args);
    assert_eq!(
        untouched(repo),
        before,
        "check_drafts changed the repository: {r}"
    );
    r
}

fn assert_verdict(r: &Value, exit_code: u8, valid: bool) {
    assert_eq!(
        (r["exit_code"].clone(), r["valid"].clone()),
        (json!(exit_code), json!(valid)),
        "{r}"
    );
}

/// Round 1 of the split tests without its write outside the scratch
/// folder: two drafts on one file (alpha, beta on src/lib.rs), a path that
/// does not exist and is not created (gamma), a cycle (delta <-> epsilon),
/// a clash with the existing spec 010 (alpha on src/c.rs).
fn defective_drafts() -> Vec<Value> {
    vec![
        draft(
            "alpha",
            "title: Alpha\nfiles: [src/a.rs, src/lib.rs, src/c.rs]\n",
        ),
        draft("beta", "title: Beta\nfiles: [src/b.rs, src/lib.rs]\n"),
        draft("gamma", "title: Gamma\nfiles: [src/ghost.rs]\n"),
        draft(
            "delta",
            "title: Delta\nfiles: [src/d.rs]\ndepends_on: [epsilon]\n",
        ),
        draft(
            "epsilon",
            "title: Epsilon\nfiles: [src/e.rs]\ndepends_on: [delta]\n",
        ),
    ]
}

fn by_draft<'a>(items: &'a Value, draft: &str) -> Vec<&'a Value> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["draft"] == draft)
        .collect()
}

#[test]
fn check_drafts_names_every_defect_of_inline_drafts_and_writes_nothing() {
    let repo = drafts_repo();
    let mut client = Client::start(&repo, &[]);
    // Every defect class, and a name the split would never read.
    let mut drafts = defective_drafts();
    drafts.push(
        json!({"name": "notes.md", "text": "---\ntitle: Notes\nfiles: [README.md]\n---\nx\n"}),
    );
    let r = check_drafts(&mut client, &repo, json!({ "drafts": drafts }));
    assert_verdict(&r, 2, false);
    assert!(
        r["outcome"]
            .as_str()
            .expect("outcome")
            .starts_with("invalid"),
        "{r}"
    );
    assert!(r.get("cost").is_none(), "{r}");

    // The ids and file names treefarm gives: after 010, in draft-name order.
    let specs: Vec<(&str, &str, &str)> = r["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id"),
                s["draft"].as_str().expect("draft"),
                s["file"].as_str().expect("file"),
            )
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("011", "SPEC-alpha-work.md", "specs/SPEC-011-alpha.md"),
            ("012", "SPEC-beta-work.md", "specs/SPEC-012-beta.md"),
            ("013", "SPEC-delta-work.md", "specs/SPEC-013-delta.md"),
            ("014", "SPEC-epsilon-work.md", "specs/SPEC-014-epsilon.md"),
            ("015", "SPEC-gamma-work.md", "specs/SPEC-015-gamma.md"),
        ],
        "{r}"
    );

    // Each defect, named with its draft.
    let errors = &r["errors"];
    let ghost = by_draft(errors, "SPEC-gamma-work.md");
    assert!(
        ghost
            .iter()
            .any(|e| e["message"].as_str().expect("message").contains(
                "`src/ghost.rs` is not tracked at the base commit and not under `creates:`"
            )),
        "{r}"
    );
    let cycle: Vec<&Value> = ["SPEC-delta-work.md", "SPEC-epsilon-work.md"]
        .iter()
        .flat_map(|d| by_draft(errors, d))
        .filter(|e| {
            e["message"]
                .as_str()
                .expect("message")
                .contains("dependency cycle")
        })
        .collect();
    assert!(
        !cycle.is_empty(),
        "no cycle error naming delta or epsilon: {r}"
    );
    let misnamed = by_draft(errors, "notes.md");
    assert!(
        misnamed.iter().any(|e| e["message"]
            .as_str()
            .expect("message")
            .contains("SPEC-<name>-<slug>.md")),
        "{r}"
    );
    let overlaps = r["overlaps"].as_array().expect("overlaps");
    let pair = |a: Option<&str>, b: Option<&str>| -> Option<&Value> {
        overlaps.iter().find(|o| {
            let drafts = (o["a_draft"].as_str(), o["b_draft"].as_str());
            drafts == (a, b) || drafts == (b, a)
        })
    };
    let both = pair(Some("SPEC-alpha-work.md"), Some("SPEC-beta-work.md")).expect("alpha/beta");
    assert_eq!(both["paths"], json!(["src/lib.rs"]), "{r}");
    let clash = pair(None, Some("SPEC-alpha-work.md")).expect("010/alpha");
    assert!(clash["a"] == "010" || clash["b"] == "010", "{clash}");
    assert_eq!(clash["paths"], json!(["src/c.rs"]), "{r}");
    assert_eq!(r["waves"], json!([]), "no plan for an invalid split: {r}");

    // What the split's agent would be told.
    let told = r["diagnostics"].as_str().expect("diagnostics");
    for expected in [
        "# What treefarm found in round 1",
        "- `SPEC-gamma-work.md` (`gamma`) -> 015",
        "overlap: 011 and 012 both declare src/lib.rs",
        "`src/ghost.rs` is not tracked",
        "dependency cycle",
        "notes.md",
        "## `treefarm check --json`",
    ] {
        assert!(told.contains(expected), "no {expected:?} in:\n{told}");
    }
    assert!(
        !repo.root.join(".git/treefarm/splits").exists(),
        "no split folder for inline drafts"
    );
    client.finish();
}

#[test]
fn check_drafts_gives_ids_and_the_plan_of_fixed_drafts_and_the_cost_of_overlaps() {
    let repo = drafts_repo();
    let mut client = Client::start(&repo, &[]);
    let fixed = json!([
        draft("alpha", "title: Alpha\nfiles: [src/a.rs, src/lib.rs]\n"),
        draft("beta", "title: Beta\nfiles: [src/b.rs]\ndepends_on: [alpha]\n"),
        draft(
            "gamma",
            "title: Gamma\nfiles: [src/new/mod.rs]\ncreates: [src/new/mod.rs]\ndepends_on: [SPEC-010]\n",
        ),
        draft("delta", "title: Delta\nfiles: [src/d.rs]\n"),
    ]);
    let r = check_drafts(&mut client, &repo, json!({ "drafts": fixed }));
    assert_verdict(&r, 0, true);
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["overlaps"], json!([]), "{r}");
    assert_eq!(r["cost"], "4 specs, 2 waves", "{r}");
    assert_eq!(r["outcome"], "independent: 4 specs, 2 waves", "{r}");
    let spec = |draft: &str| -> Value {
        r["specs"]
            .as_array()
            .expect("specs")
            .iter()
            .find(|s| s["draft"] == draft)
            .cloned()
            .unwrap_or_else(|| panic!("no spec of {draft}: {r}"))
    };
    assert_eq!(spec("SPEC-alpha-work.md")["id"], "011");
    // depends_on rewritten from draft names to ids; an existing spec's id
    // stays as written.
    assert_eq!(spec("SPEC-beta-work.md")["depends_on"], json!(["011"]));
    let gamma = spec("SPEC-gamma-work.md");
    assert_eq!(gamma["id"], "014");
    assert_eq!(gamma["file"], "specs/SPEC-014-gamma.md");
    assert_eq!(gamma["creates"], json!(["src/new/mod.rs"]));
    assert_eq!(gamma["depends_on"], json!(["SPEC-010"]));
    // The plan: beta after alpha, the others beside alpha.
    let waves = r["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 2, "{r}");
    let wave_of = |id: &str| {
        waves
            .iter()
            .position(|w| w.as_array().expect("wave").contains(&json!(id)))
    };
    assert_eq!(wave_of("011"), Some(0), "{r}");
    assert_eq!(wave_of("012"), Some(1), "{r}");
    assert_eq!((wave_of("013"), wave_of("014")), (Some(0), Some(0)), "{r}");
    assert!(
        r["diagnostics"]
            .as_str()
            .expect("diagnostics")
            .contains("Nothing: the split is valid."),
        "{r}"
    );

    // Two drafts on one file and nothing else wrong: valid, in sequence,
    // with its cost.
    let r = check_drafts(
        &mut client,
        &repo,
        json!({"drafts": [
            draft("alpha", "title: Alpha\nfiles: [src/a.rs, src/lib.rs]\n"),
            draft("beta", "title: Beta\nfiles: [src/b.rs, src/lib.rs]\n"),
        ]}),
    );
    assert_verdict(&r, 3, true);
    assert_eq!(r["cost"], "2 specs, 2 waves", "{r}");
    assert!(
        r["outcome"]
            .as_str()
            .expect("outcome")
            .contains("overlaps that run in sequence: 2 specs, 2 waves"),
        "{r}"
    );
    assert_eq!(r["overlaps"][0]["paths"], json!(["src/lib.rs"]), "{r}");

    // The count against max_specs given in the call, over the config's.
    let r = check_drafts(&mut client, &repo, json!({"drafts": fixed, "max_specs": 3}));
    assert_verdict(&r, 2, false);
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("the split has 4 draft(s); between 1 and 3"),
        "{r}"
    );
    // min_specs over max_specs: bad input, as a result.
    let r = check_drafts(
        &mut client,
        &repo,
        json!({"drafts": fixed, "min_specs": 5, "max_specs": 3}),
    );
    assert_eq!(r["exit_code"], 2, "{r}");
    assert!(
        r["message"]
            .as_str()
            .expect("message")
            .contains("--min-specs 5"),
        "{r}"
    );
    client.finish();
}

#[test]
fn check_drafts_tells_what_a_split_round_tells_its_agent_for_the_same_drafts() {
    // The same drafts judged twice: written by a scripted split agent in one
    // round of `treefarm split`, and given inline to check_drafts. One
    // judging path: the same DIAGNOSTICS.md, byte for byte.
    let repo = drafts_repo();
    let drafts = defective_drafts();
    let mut script = String::from("#!/bin/sh\nset -eu\n");
    for d in &drafts {
        script.push_str(&format!(
            "cat >\"$TREEFARM_SPLIT_DIR/{}\" <<'DRAFT'\n{}DRAFT\n",
            d["name"].as_str().expect("name"),
            d["text"].as_str().expect("text")
        ));
    }
    let agent = repo.tmp.path().join("split-agent.sh");
    std::fs::write(&agent, script).expect("write the agent");
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh '{}'\n  timeout: 2m\n  kill_grace: 1s\n",
            agent.display()
        ),
    );
    repo.commit_all("config");
    let out = repo.tf(&["split", "Add tracing.", "--rounds", "1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let splits = repo.root.join(".git/treefarm/splits");
    let split = std::fs::read_dir(&splits)
        .expect("the splits folder")
        .next()
        .expect("one split")
        .expect("entry")
        .path();
    let told = std::fs::read_to_string(split.join("round-1.md")).expect("round-1.md");

    let mut client = Client::start(&repo, &[]);
    let r = check_drafts(&mut client, &repo, json!({ "drafts": drafts }));
    assert_verdict(&r, 2, false);
    assert_eq!(r["diagnostics"].as_str().expect("diagnostics"), told);
    client.finish();
}
