//! The agent side of `treefarm run`, end to end: timeouts that leave no
//! process behind, the idle watchdog, the environment and placeholders an
//! agent gets, where treefarm's own files live (never in the worktree), and
//! per-worktree setup (copy, link, command).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{events_of, json_events, pid_dead, read_pid, stderr, TestRepo};
use serde_json::Value;

/// `{records}` in `extra` names [`TestRepo::records`], where agents and
/// setup commands record what they saw.
fn repo_with(agent_extra: &str, extra: &str, specs: &[(&str, &str, &[&str], &str)]) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let extra = extra.replace("{records}", &repo.records().display().to_string());
    repo.write_demo_config(agent_extra, &extra);
    for (id, slug, files, directives) in specs {
        repo.write_listed_spec(id, slug, files, directives);
    }
    repo.commit_all("specs and config");
    repo
}

fn exit_code(out: &std::process::Output) -> i32 {
    out.status.code().expect("treefarm exited normally")
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 3 && fields[3] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            pids.push(pid);
        }
    }
    pids
}

fn canon(p: impl AsRef<Path>) -> PathBuf {
    std::fs::canonicalize(p.as_ref())
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.as_ref().display()))
}

#[test]
fn timeout_kills_a_term_ignoring_agent_and_its_term_ignoring_grandchild() {
    let repo = repo_with(
        "  timeout: 2s\n  kill_grace: 300ms\n",
        "",
        &[(
            "060",
            "stuck",
            &["stuck.txt"],
            "ignore-term\ngrandchild 120\nwrite stuck.txt partial\nhang",
        )],
    );
    let pid_file = repo.records().join("grandchild.pid");
    let begun = Instant::now();
    let out = repo
        .treefarm()
        .env("TREEFARM_GRANDCHILD_PID_FILE", &pid_file)
        .args(["run", "--json"])
        .output()
        .unwrap();
    let took = begun.elapsed();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    assert!(
        took < Duration::from_secs(15),
        "the timeout ended the run ({took:?})"
    );
    let events = json_events(&out);

    let exited = events_of(&events, "exited", Some("060"));
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["result"], "timed_out");
    assert_eq!(exited[0]["exit_code"], Value::Null);
    assert_eq!(
        events.last().unwrap()["timed_out"],
        serde_json::json!(["060"])
    );
    let status = repo.status_json();
    let inst = &status["instances"][0];
    assert_eq!(inst["state"], "timed_out", "{inst}");
    assert!(
        inst["reason"].as_str().unwrap().contains("timed out"),
        "{inst}"
    );

    // No survivor: the wrapper (group leader), the agent shell, the grandchild.
    let leader = events_of(&events, "started", Some("060"))[0]["pid"]
        .as_u64()
        .unwrap() as u32;
    let grandchild = read_pid(&pid_file, 1);
    let log = std::fs::read_to_string(exited[0]["log"].as_str().unwrap()).unwrap();
    let agent_pid: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("demo-agent: pid "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("agent pid in log: {log}"));
    for (what, pid) in [
        ("wrapper", leader),
        ("agent", agent_pid),
        ("grandchild", grandchild),
    ] {
        assert!(pid_dead(pid), "{what} pid {pid} survived the timeout");
    }
    assert_eq!(
        live_group_members(leader),
        Vec::<u32>::new(),
        "the agent's group is empty"
    );

    // Partial work is kept on the branch, not merged.
    assert_eq!(repo.git(&["show", "treefarm/060:stuck.txt"]), "partial");
    assert_eq!(
        repo.git(&["rev-parse", "roadmap"]),
        repo.git(&["rev-parse", "main"])
    );
}

#[test]
fn idle_timeout_fires_for_a_silent_agent() {
    let repo = repo_with(
        "  idle_timeout: 1s\n",
        "",
        &[("061", "silent", &["silent.txt"], "sleep 60")],
    );
    let begun = Instant::now();
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    let took = begun.elapsed();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    assert!(
        took < Duration::from_secs(15),
        "the idle watchdog ended the run ({took:?})"
    );
    let events = json_events(&out);
    let exited = events_of(&events, "exited", Some("061"));
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["result"], "idle_timeout");
    let failed = events_of(&events, "timed_out", Some("061"));
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("idle"),
        "{}",
        failed[0]
    );
    assert_eq!(
        events.last().unwrap()["timed_out"],
        serde_json::json!(["061"])
    );
    let leader = events_of(&events, "started", Some("061"))[0]["pid"]
        .as_u64()
        .unwrap() as u32;
    assert_eq!(live_group_members(leader), Vec::<u32>::new());
}

#[test]
fn idle_timeout_spares_an_agent_that_keeps_reporting_status() {
    // Status updates every ~0.3 s for ~2.4 s, longer than the 1 s idle limit.
    let mut directives = String::new();
    for p in 1..=8 {
        directives.push_str(&format!("status {} step\nsleep 0.3\n", p * 10));
    }
    directives.push_str("write busy.txt done\ncommit busy");
    let repo = repo_with(
        "  idle_timeout: 1s\n",
        "",
        &[("062", "busy", &["busy.txt"], &directives)],
    );
    let out = repo.treefarm().args(["run", "--json"]).output().unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["062"]));
    assert!(
        !events_of(&events, "status", Some("062")).is_empty(),
        "status updates are streamed"
    );
}

#[test]
fn agent_gets_treefarm_env_and_placeholders_and_none_of_treefarms_files_land_in_the_worktree() {
    let repo = repo_with(
        "",
        "instances: 2\n",
        &[
            ("070", "left", &["left.txt", "docs/*.md"], ""),
            ("071", "right", &["right.txt"], ""),
        ],
    );
    let seen = repo.records().join("seen");
    std::fs::create_dir_all(&seen).unwrap();
    let agent = repo.tmp.path().join("env-agent.sh");
    std::fs::write(
        &agent,
        format!(
            r#"out='{seen}'
id=$TREEFARM_SPEC_ID
for v in RUN_ID SPEC_ID SPEC_FILE WORKTREE BRANCH TARGET BASE_COMMIT FILES STATUS_FILE SLOT PORT PROMPT_FILE; do
  eval "printf '%s' \"\$TREEFARM_$v\"" > "$out/$id.$v"
done
printf '%s\n' "$@" > "$out/$id.args"
pwd > "$out/$id.pwd"
printf '{{"state":"working","progress":50,"message":"half way"}}' > "$TREEFARM_STATUS_FILE"
echo "agent output for $id"
echo "$id" > "$id".txt.tmp && mv "$id".txt.tmp "$(printf '%s' "$TREEFARM_FILES" | head -n 1)"
git add -A && git commit -q -m "everything in $id"
# Both agents are alive at once (each in its own slot): the second waits
# for the first's note and the first for the second's, at most ~20 s.
: > "$out/$id.here"
i=0
while [ "$(ls "$out" | grep -c '\.here$')" -lt 2 ]; do
  i=$((i+1)); [ $i -gt 1000 ] && exit 9
  sleep 0.02
done
"#,
            seen = seen.display()
        ),
    )
    .unwrap();
    let main_head = repo.git(&["rev-parse", "HEAD"]);
    let out = repo
        .treefarm()
        .args([
            "run",
            "--json",
            "--no-merge",
            "--target",
            "integ",
            "--agent",
        ])
        .arg(format!(
            "sh '{}' {{id}} {{spec}} {{worktree}} {{branch}} {{target}}",
            agent.display()
        ))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let run_dir = repo.only_run();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let read = |id: &str, v: &str| {
        std::fs::read_to_string(seen.join(format!("{id}.{v}")))
            .unwrap_or_else(|e| panic!("{id}.{v}: {e}"))
    };

    let mut slots = Vec::new();
    let mut ports = Vec::new();
    for (id, slug, files) in [
        ("070", "left", "left.txt\ndocs/*.md"),
        ("071", "right", "right.txt"),
    ] {
        let worktree = repo.worktree_dir().join(id);
        let spec = repo.root.join(format!("specs/SPEC-{id}-{slug}.md"));
        assert_eq!(read(id, "RUN_ID"), run_id);
        assert_eq!(read(id, "SPEC_ID"), id);
        assert_eq!(canon(read(id, "SPEC_FILE")), canon(&spec));
        assert_eq!(canon(read(id, "WORKTREE")), canon(&worktree));
        assert_eq!(
            canon(read(id, "pwd").trim()),
            canon(&worktree),
            "the agent runs in its worktree"
        );
        assert_eq!(read(id, "BRANCH"), format!("treefarm/{id}"));
        assert_eq!(read(id, "TARGET"), "integ");
        assert_eq!(read(id, "BASE_COMMIT"), main_head);
        assert_eq!(read(id, "FILES"), files);
        let slot: u32 = read(id, "SLOT").parse().expect("slot is a number");
        let port: u32 = read(id, "PORT").parse().expect("port is a number");
        assert!(slot < 2, "slot {slot} in 0..instances");
        assert_eq!(port, 20000 + slot * 10, "port_base + slot * port_stride");
        slots.push(slot);
        ports.push(port);
        let started = events_of(&events, "started", Some(id));
        assert_eq!(started[0]["slot"], slot);
        assert_eq!(started[0]["port"], port);

        // Placeholders, in order, each one argument.
        let args: Vec<String> = read(id, "args").lines().map(str::to_string).collect();
        assert_eq!(args.len(), 5, "{args:?}");
        assert_eq!(args[0], id);
        assert_eq!(canon(&args[1]), canon(&spec));
        assert_eq!(canon(&args[2]), canon(&worktree));
        assert_eq!(args[3], format!("treefarm/{id}"));
        assert_eq!(args[4], "integ");

        // treefarm's files for the instance live outside the worktree.
        let wt = canon(&worktree);
        let status_file = PathBuf::from(read(id, "STATUS_FILE"));
        let prompt_file = PathBuf::from(read(id, "PROMPT_FILE"));
        let log = PathBuf::from(
            events_of(&events, "exited", Some(id))[0]["log"]
                .as_str()
                .unwrap(),
        );
        for (what, path) in [
            ("status file", &status_file),
            ("prompt", &prompt_file),
            ("log", &log),
        ] {
            assert!(
                path.is_absolute(),
                "{what} path is absolute: {}",
                path.display()
            );
            assert!(path.exists(), "{what} exists: {}", path.display());
            assert!(
                !canon(path).starts_with(&wt),
                "{what} is inside the worktree: {}",
                path.display()
            );
        }
        let prompt = std::fs::read_to_string(&prompt_file).unwrap();
        assert!(
            prompt.contains(&format!("Do the {slug} work")),
            "prompt holds the spec body: {prompt}"
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains(&format!("agent output for {id}")),
            "agent output is in the log"
        );
        let status = events_of(&events, "status", Some(id));
        assert!(
            status
                .iter()
                .any(|s| s["progress"] == 50 && s["message"] == "half way"),
            "the status file is read: {status:?}"
        );

        // The agent's `git add -A` committed only its own file.
        let first = files.lines().next().unwrap();
        assert_eq!(
            repo.git(&["diff", "--name-only", "integ", &format!("treefarm/{id}")]),
            first,
            "only the agent's file is on the branch"
        );
        assert_eq!(
            repo.git(&["log", "-1", "--format=%s", &format!("treefarm/{id}")]),
            format!("everything in {id}")
        );
        let committed = events_of(&events, "committed", Some(id));
        assert_eq!(
            committed[0]["auto"], false,
            "nothing was left to auto-commit"
        );
    }
    slots.sort();
    assert_eq!(slots, [0, 1], "distinct slots");
    assert_ne!(ports[0], ports[1], "distinct ports");
    assert_eq!(
        repo.git(&["rev-parse", "integ"]),
        main_head,
        "the target was created from HEAD"
    );
}

#[test]
fn setup_copies_untracked_env_links_a_folder_and_runs_its_command_first() {
    let repo = repo_with(
        "",
        "setup:\n  copy: [.env]\n  link: [data]\n  command: \"cat .env > setup-saw.txt.tmp && mv setup-saw.txt.tmp {records}/setup-saw-$TREEFARM_SPEC_ID.txt\"\n",
        &[(
            "080",
            "app",
            &["app.txt"],
            "write app.txt uses-the-env",
        )],
    );
    // Untracked in the main checkout, as such files are.
    repo.write(".env", "SECRET=42\n");
    repo.write("data/big.bin", "lots of data\n");
    let before = repo.main_snapshot();
    let out = repo
        .treefarm()
        .args(["run", "--json", "--no-merge"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);

    let wt = repo.worktree_dir().join("080");
    assert_eq!(
        std::fs::read_to_string(wt.join(".env")).unwrap(),
        "SECRET=42\n",
        "copied"
    );
    assert!(
        !wt.join(".env")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink(),
        ".env is a copy, not a link"
    );
    let link = wt.join("data");
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "data is a link"
    );
    assert_eq!(canon(&link), canon(repo.root.join("data")));
    assert_eq!(
        std::fs::read_to_string(repo.records().join("setup-saw-080.txt")).unwrap(),
        "SECRET=42\n",
        "the setup command ran in the worktree after the copy"
    );

    // What treefarm placed there is not the agent's work: it is not committed
    // to the branch (and so never merged into the target).
    let branch_files = repo.git(&["diff", "--name-only", "roadmap", "treefarm/080"]);
    assert_eq!(branch_files, "app.txt", "events: {events:?}");
    assert!(
        events_of(&events, "scope_creep", Some("080")).is_empty(),
        "{events:?}"
    );
    assert_eq!(repo.main_snapshot(), before, "main checkout untouched");
    assert_eq!(repo.read(".env"), "SECRET=42\n");
}

#[test]
fn setup_files_are_not_leftovers_when_commit_is_off() {
    let repo = repo_with(
        "  commit: \"off\"\n",
        "setup:\n  copy: [.env]\n  link: [data]\n",
        &[("081", "clean", &["clean.txt"], "")],
    );
    repo.write(".env", "SECRET=42\n");
    repo.write("data/big.bin", "lots of data\n");
    // The agent commits its work itself (`git add -A` would take .env too, so
    // it adds only its file).
    let agent = "echo done > clean.txt && git add clean.txt && git commit -q -m done";
    let out = repo
        .treefarm()
        .args(["run", "--json", "--agent", agent])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["081"]));
    assert_eq!(
        repo.git(&["ls-tree", "--name-only", "roadmap"])
            .lines()
            .filter(|l| *l == ".env" || *l == "data")
            .count(),
        0
    );
}

#[test]
fn failing_setup_command_fails_the_instance_before_the_agent_runs() {
    let repo = repo_with(
        "",
        "setup:\n  command: \"echo preparing the worktree; exit 7\"\n",
        &[("082", "nosetup", &["n.txt"], "")],
    );
    let marker = repo.tmp.path().join("agent-ran");
    let out = repo
        .treefarm()
        .args(["run", "--json", "--agent"])
        .arg(format!("touch '{}'", marker.display()))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 1, "stderr:\n{}", stderr(&out));
    let events = json_events(&out);
    let failed = events_of(&events, "failed", Some("082"));
    assert_eq!(failed.len(), 1, "{events:?}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("setup"), "{reason}");
    assert!(
        events_of(&events, "started", Some("082")).is_empty(),
        "no agent started"
    );
    assert!(!marker.exists(), "the agent never ran");
    let log = std::fs::read_to_string(failed[0]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("preparing the worktree"),
        "setup output in the log: {log}"
    );
    assert_eq!(events.last().unwrap()["failed"], serde_json::json!(["082"]));
    assert!(repo.worktree_dir().join("082").exists(), "worktree kept");
}

#[test]
fn placeholders_survive_worktree_paths_with_spaces_and_quotes() {
    let repo = repo_with(
        "",
        "worktree_dir: \"../it's my trees\"\n",
        &[("090", "odd", &["odd.txt"], "")],
    );
    let seen = repo.records().join("seen-args");
    let agent = repo.tmp.path().join("args-agent.sh");
    std::fs::write(
        &agent,
        format!(
            "printf '%s\\n' \"$@\" > '{seen}'\necho placed > odd.txt\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    let out = repo
        .treefarm()
        .args(["run", "--json", "--no-merge", "--agent"])
        .arg(format!("sh '{}' {{worktree}} {{id}}", agent.display()))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "stderr:\n{}", stderr(&out));
    let worktree = repo.tmp.path().join("it's my trees").join("090");
    let args = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        args,
        format!("{}\n090\n", worktree.display()),
        "one argument each"
    );
    assert_eq!(repo.git(&["show", "treefarm/090:odd.txt"]), "placed");
    assert_eq!(repo.git_at(&worktree, &["status", "--porcelain"]), "");
}

#[test]
fn human_output_goes_to_stderr_and_shows_the_tail_of_a_timed_out_agents_log() {
    let repo = repo_with(
        "  timeout: 1s\n",
        "",
        &[(
            "091",
            "slow",
            &["slow.txt"],
            "status 10 \"about to stall\"\nsleep 60",
        )],
    );
    let out = repo.treefarm().arg("run").output().unwrap();
    let err = stderr(&out);
    assert_eq!(exit_code(&out), 1, "stderr:\n{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout without --json: {}",
        common::stdout(&out)
    );
    assert!(err.contains("091"), "{err}");
    assert!(
        err.contains("timed_out") || err.contains("timed out"),
        "{err}"
    );
    assert!(
        err.contains("demo-agent: sleep 60"),
        "the log tail is shown:\n{err}"
    );
}
