//! A live `treefarm run` seen from outside: the repository lock refuses a
//! second coordinator, `status` from another terminal shows the running
//! instance, and Ctrl-C stops agents gracefully (a second one kills them).
//! Every wait is on the event meant (a file an agent writes, a line treefarm
//! prints), with a generous upper bound.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{pid_dead, stderr, wait_until_within, TestRepo};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// A `treefarm run` in the background, its output collected line by line.
struct Running {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start treefarm");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Running {
            child,
            out,
            err,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn events(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    /// Waits for the JSON event `kind` about spec `id` on stdout.
    fn wait_event(&self, kind: &str, id: &str) -> Value {
        wait_until_within(30, &format!("a `{kind}` event for {id}"), || {
            self.events()
                .iter()
                .any(|e| e["event"] == kind && e["id"] == id)
        });
        self.events()
            .into_iter()
            .find(|e| e["event"] == kind && e["id"] == id)
            .unwrap()
    }

    fn wait_stderr(&self, needle: &str) {
        wait_until_within(30, &format!("`{needle}` on stderr"), || {
            self.stderr().contains(needle)
        });
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal treefarm");
    }

    /// Waits (at most `secs`) for treefarm to exit; kills it and panics if it
    /// does not.
    fn finish(mut self, secs: u64) -> (ExitStatus, Vec<Value>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait treefarm") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "treefarm did not exit within {secs}s; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status, self.events(), self.stderr())
    }
}

/// An agent script (outside the repository) that marks it started, then
/// waits for `<dir>/release` (at most ~30 s), writes its first declared file
/// and exits 0. `on_term` is a `trap` action for SIGTERM, if any.
fn waiting_agent(repo: &TestRepo, on_term: Option<&str>) -> (String, PathBuf) {
    let dir = repo.records().join("agent-files");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("agent.sh");
    let trap = on_term
        .map(|action| format!("trap '{action}' TERM\n"))
        .unwrap_or_default();
    std::fs::write(
        &script,
        format!(
            "d='{dir}'\n\
             {trap}\
             echo $$ > \"$d/pid-$TREEFARM_SPEC_ID.tmp\" && mv \"$d/pid-$TREEFARM_SPEC_ID.tmp\" \"$d/pid-$TREEFARM_SPEC_ID\"\n\
             i=0\n\
             while [ ! -e \"$d/release\" ]; do\n\
               i=$((i+1)); [ $i -gt 1500 ] && exit 9\n\
               sleep 0.02\n\
             done\n\
             echo released > \"$(printf '%s' \"$TREEFARM_FILES\" | head -n 1)\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    (format!("sh '{}'", script.display()), dir)
}

fn repo_with(agent_extra: &str, specs: &[(&str, &str)]) -> TestRepo {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    repo.write_demo_config(agent_extra, "");
    for (id, file) in specs {
        repo.write_listed_spec(id, &format!("s{id}"), &[file], "");
    }
    repo.commit_all("specs and config");
    repo
}

/// Live (non-zombie) processes in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        fields.len() > 3 && fields[3] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
    })
}

fn started_pid(event: &Value) -> u32 {
    event["pid"].as_u64().expect("started event has a pid") as u32
}

#[test]
fn second_run_is_refused_naming_the_holder_while_status_shows_the_running_instance() {
    let repo = repo_with("", &[("001", "one.txt"), ("002", "two.txt")]);
    let (agent, dir) = waiting_agent(&repo, None);
    let mut cmd = repo.treefarm();
    cmd.args(["run", "1", "--json", "--agent", &agent]);
    let first = Running::start(cmd);
    first.wait_event("started", "001");
    let run_id = first.events()[0]["run_id"].as_str().unwrap().to_string();

    // `status` from another terminal, once the journal (written in groups,
    // a moment after the event) has the start.
    let mut status = repo.status_json();
    common::wait_until_within(10, "status to show 001 running", || {
        status = repo.status_json();
        status["instances"][0]["state"] == "running"
    });
    assert_eq!(status["run_id"], run_id.as_str());
    assert_eq!(status["state"], "running", "{status}");
    let inst = &status["instances"][0];
    assert_eq!(inst["id"], "001");
    assert_eq!(inst["state"], "running", "{inst}");
    assert_eq!(inst["attempt"], 1);
    assert_eq!(inst["exit_code"], Value::Null);
    assert!(inst["elapsed_ms"].is_u64(), "{inst}");

    // A second coordinator is refused before creating anything.
    let refs = repo.refs();
    let worktrees = repo.worktrees_porcelain();
    let out = repo
        .treefarm()
        .args(["run", "2", "--json", "--agent", &agent])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains(&first.pid().to_string()),
        "names the holder pid:\n{err}"
    );
    assert!(err.contains(&run_id), "names the holder's run:\n{err}");
    assert_eq!(repo.refs(), refs, "no ref created");
    assert_eq!(repo.worktrees_porcelain(), worktrees, "no worktree created");
    assert!(!repo.worktree_dir().join("002").exists());
    assert_eq!(repo.run_ids(), vec![run_id.as_str()], "no run recorded");
    assert!(out.stdout.is_empty(), "no events for a refused run");

    // Asking again for the very spec that is running names the holder too,
    // not the running instance's branch as a "leftover" to prune.
    let out = repo
        .treefarm()
        .args(["run", "1", "--agent", &agent])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains(&first.pid().to_string()),
        "names the holder pid:\n{err}"
    );
    assert!(err.contains(&run_id), "names the holder's run:\n{err}");
    assert!(
        !err.contains("prune"),
        "never suggests pruning a running instance:\n{err}"
    );
    assert_eq!(repo.refs(), refs, "no ref created");
    assert_eq!(repo.run_ids(), vec![run_id.as_str()], "no run recorded");

    // The first run goes on undisturbed.
    std::fs::write(dir.join("release"), "").unwrap();
    let (status, events, err) = first.finish(30);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    assert_eq!(events.last().unwrap()["merged"], serde_json::json!(["001"]));
    assert_eq!(repo.git(&["show", "roadmap:one.txt"]), "released");
}

#[test]
fn ctrl_c_stops_agents_with_sigterm_and_keeps_worktrees() {
    let repo = repo_with("", &[("010", "a.txt"), ("011", "b.txt")]);
    let (agent, dir) = waiting_agent(
        &repo,
        Some("echo got-term > \"$d/term-$TREEFARM_SPEC_ID\"; exit 143"),
    );
    let before = repo.main_snapshot();
    let mut cmd = repo.treefarm();
    cmd.args(["run", "--json", "--agent", &agent]);
    let run = Running::start(cmd);
    let leaders = [
        started_pid(&run.wait_event("started", "010")),
        started_pid(&run.wait_event("started", "011")),
    ];
    // The agents' traps are set once they wrote their pid.
    for id in ["010", "011"] {
        wait_until_within(30, &format!("agent {id} ready"), || {
            dir.join(format!("pid-{id}")).exists()
        });
    }

    run.signal(Signal::SIGINT);
    let (status, events, err) = run.finish(30);
    assert!(
        !status.success(),
        "an interrupted run is not a success; stderr:\n{err}"
    );
    for id in ["010", "011"] {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("term-{id}")))
                .ok()
                .as_deref(),
            Some("got-term\n"),
            "agent {id} got SIGTERM; stderr:\n{err}"
        );
    }
    for pgid in leaders {
        assert!(!group_alive(pgid), "agent group {pgid} survived");
    }
    assert!(
        events.iter().any(|e| e["event"] == "interrupted"),
        "an interrupted event: {events:?}"
    );
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert!(events.iter().all(|e| e["event"] != "merged"));

    let status = repo.status_json();
    assert_eq!(status["state"], "interrupted", "{status}");
    let wts = repo.worktrees_porcelain();
    for id in ["010", "011"] {
        let inst = status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap();
        assert_eq!(inst["reason"], "interrupted", "{inst}");
        let path = repo.worktree_dir().join(id);
        assert!(
            wts.contains(&format!("worktree {}\n", path.display())),
            "worktree {id} kept:\n{wts}"
        );
        assert!(path.is_dir());
        repo.git(&[
            "rev-parse",
            "--verify",
            &format!("refs/heads/treefarm/{id}"),
        ]);
    }
    assert_eq!(repo.main_snapshot(), before);
}

#[test]
fn second_ctrl_c_kills_a_term_ignoring_agent_at_once() {
    // A grace far longer than the test may take: only the second Ctrl-C can
    // end the agent in time.
    let repo = repo_with("  timeout: 10m\n  kill_grace: 10m\n", &[("020", "c.txt")]);
    let (agent, dir) = waiting_agent(&repo, Some("echo got-term > \"$d/term-$TREEFARM_SPEC_ID\""));
    let mut cmd = repo.treefarm();
    cmd.args(["run", "--json", "--agent", &agent]);
    let run = Running::start(cmd);
    let leader = started_pid(&run.wait_event("started", "020"));
    let agent_pid = common::read_pid(&dir.join("pid-020"), 30);

    run.signal(Signal::SIGINT);
    run.wait_stderr("stopping agents gracefully");
    wait_until_within(30, "the agent to get SIGTERM", || {
        dir.join("term-020").exists()
    });
    assert!(
        !pid_dead(agent_pid),
        "the agent ignores SIGTERM and lives on"
    );

    let second = Instant::now();
    run.signal(Signal::SIGINT);
    let (status, events, err) = run.finish(30);
    let took = second.elapsed();
    assert!(!status.success(), "stderr:\n{err}");
    assert!(
        took < Duration::from_secs(15),
        "killed at once, not after the grace ({took:?})"
    );
    assert!(err.contains("killing"), "stderr:\n{err}");
    assert!(pid_dead(agent_pid), "agent {agent_pid} was killed");
    assert!(!group_alive(leader), "agent group {leader} survived");
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert_eq!(repo.status_json()["state"], "interrupted");
    assert!(repo.worktree_dir().join("020").is_dir(), "worktree kept");
}

fn wait_for(path: &Path) {
    wait_until_within(30, &format!("{}", path.display()), || path.exists());
}

#[test]
fn status_shows_live_progress_from_the_status_file() {
    let repo = repo_with("", &[("030", "p.txt")]);
    let (_, dir) = waiting_agent(&repo, None);
    let script = dir.join("progress.sh");
    std::fs::write(
        &script,
        format!(
            "printf '{{\"state\":\"working\",\"progress\":42,\"message\":\"halfway there\"}}' > \"$TREEFARM_STATUS_FILE\"\n\
             touch '{d}/reported'\n\
             exec sh '{d}/agent.sh'\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = repo.treefarm();
    cmd.args(["run", "--json", "--agent"])
        .arg(format!("sh '{}'", script.display()));
    let run = Running::start(cmd);
    run.wait_event("started", "030");
    wait_for(&dir.join("reported"));
    wait_until_within(30, "status --json to show the progress", || {
        let status = repo.status_json();
        let inst = &status["instances"][0];
        inst["progress"] == 42 && inst["message"] == "halfway there" && inst["state"] == "running"
    });
    std::fs::write(dir.join("release"), "").unwrap();
    let (status, _, err) = run.finish(30);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
}

#[test]
fn ctrl_c_during_a_slow_setup_command_stops_it_too() {
    let repo = TestRepo::with_files(&[("README.md", "hello\n")]);
    let dir = repo.records().join("setup-files");
    std::fs::create_dir_all(&dir).unwrap();
    let setup = dir.join("setup.sh");
    std::fs::write(
        &setup,
        format!(
            "d='{d}'\n\
             echo $$ > \"$d/setup.pid.tmp\" && mv \"$d/setup.pid.tmp\" \"$d/setup.pid\"\n\
             i=0\n\
             while [ ! -e \"$d/release\" ]; do\n\
               i=$((i+1)); [ $i -gt 1500 ] && exit 9\n\
               sleep 0.02\n\
             done\n",
            d = dir.display()
        ),
    )
    .unwrap();
    repo.write_demo_config(
        "",
        &format!(
            "setup:\n  link: [data]\n  command: \"sh '{}'\"\n",
            setup.display()
        ),
    );
    repo.write_listed_spec("040", "slowsetup", &["s.txt"], "");
    repo.commit_all("specs and config");
    repo.write("data/shared.bin", "shared\n");
    let marker = dir.join("agent-ran");
    let mut cmd = repo.treefarm();
    cmd.args(["run", "--json", "--agent"])
        .arg(format!("touch '{}'", marker.display()))
        // The agent changes nothing in its worktree; that is not under test.
        .env("TREEFARM_AGENT_ALLOW_UNCHANGED", "true");
    let run = Running::start(cmd);
    run.wait_event("planted", "040");
    let setup_pid = common::read_pid(&dir.join("setup.pid"), 30);

    run.signal(Signal::SIGINT);
    let begun = Instant::now();
    // Well before the setup would end by itself (~30 s).
    let (status, events, err) = run.finish(15);
    assert!(begun.elapsed() < Duration::from_secs(15));
    assert!(!status.success(), "stderr:\n{err}");
    assert!(
        pid_dead(setup_pid),
        "the setup command {setup_pid} was stopped"
    );
    assert!(!marker.exists(), "the agent never started");
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert!(
        events.iter().all(|e| e["event"] != "failed"),
        "stopped, not failed: {events:?}"
    );
    assert_eq!(repo.status_json()["state"], "interrupted");
    assert!(repo.worktree_dir().join("040").is_dir(), "worktree kept");

    // Resumed, the instance is set up again in its worktree (the link it
    // already has is fine) and finishes.
    std::fs::write(dir.join("release"), "").unwrap();
    let out = repo.treefarm().args(["resume"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(marker.exists(), "the agent ran on resume");
    assert_eq!(repo.status_json()["state"], "finished");
}
