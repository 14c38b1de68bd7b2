//! Enforced isolation (Landlock): an escaping scripted agent tries, from its
//! worktree, to write the user's checkout, another instance's worktree, the
//! shared refs, objects, config and hooks, `$HOME`, and to bind another
//! slot's port — every attempt fails and leaves no trace (real `git` and file
//! checksums are the oracle) — then it uses `git add/commit/--amend/stash/
//! reset` normally, and that work is merged. The same run with `isolation:
//! off` shows the oracle catches each escape. A crash with the agent out and
//! `resume` keep the isolated agent's commits.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{stderr, stdout, TestRepo};

/// Stride of the port blocks; slot 0's block starts at the configured base.
const STRIDE: u32 = 10;

/// The real python interpreter (pyenv shims and the like need `$HOME`).
pub(crate) fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A spec whose agent is `agent.sh` in the temp dir (`TREEFARM_SPEC_ID`
/// picks its part).
fn spec(title: &str, file: &str) -> String {
    format!("---\ntitle: {title}\nfiles: [{file}]\n---\n# {title}\n\nDo it.\n")
}

struct Farm {
    repo: TestRepo,
    /// A loose object of the shared store nothing refers to.
    loose: PathBuf,
    side: String,
}

/// The escaper (001) and a victim (002) running side by side; 002 waits
/// until 001 is done, so its worktree and branch exist while 001 tries.
fn farm(isolation: &str, port_base: u32) -> Farm {
    let repo = TestRepo::with_files(&[("src/a.txt", "a0\n"), ("src/b.txt", "b0\n")]);
    // `main` must not be checked out for `git branch -f main` to be a real
    // threat (git refuses to move a checked-out branch on its own).
    repo.git(&["checkout", "-q", "-b", "dev"]);
    let blob = {
        let mut cmd = repo.git_cmd(&["hash-object", "-w", "--stdin"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn git");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"a loose object nobody refers to\n")
            .expect("write blob");
        let out = child.wait_with_output().expect("git hash-object");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    };
    let loose = repo
        .root
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    assert!(loose.is_file(), "{}", loose.display());
    // A commit the main store has but no ref names: what the escaper tries
    // to point the shared refs at (so only isolation can stop it).
    let side = repo.git(&["commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "side"]);
    let agent = repo.tmp.path().join("agent.sh");
    let python = python().unwrap_or_else(|| "python3".into());
    std::fs::write(&agent, agent_script(&repo, &loose, &side, &python)).expect("write agent");
    // setup.command is confined like the agent.
    let setup = repo.tmp.path().join("setup.sh");
    std::fs::write(
        &setup,
        format!(
            "(echo escaped > '{}/setup-escape') 2>/dev/null || true\n",
            repo.home.display()
        ),
    )
    .expect("write setup");
    repo.write("specs/SPEC-001-escape.md", &spec("Escaper", "src/a.txt"));
    repo.write("specs/SPEC-002-victim.md", &spec("Victim", "src/b.txt"));
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh {}\n  timeout: 2m\n  kill_grace: 1s\nsetup:\n  command: sh {}\ninstances: 2\nport_base: {port_base}\nport_stride: {STRIDE}\nisolation: {isolation}\n",
            agent.display(),
            setup.display()
        ),
    );
    repo.commit_all("initial");
    Farm { repo, loose, side }
}

fn agent_script(repo: &TestRepo, loose: &Path, side: &str, python: &str) -> String {
    let main = repo.root.display();
    let worktrees = repo.worktree_dir().display().to_string();
    let loose = loose.display();
    let home = repo.home.display();
    format!(
        r#"set -u
cd "$TREEFARM_WORKTREE"
me="$TREEFARM_RUN_DIR/instances/$TREEFARM_SPEC_ID"
mkdir -p "$me"
if [ "$TREEFARM_SPEC_ID" = 002 ]; then
    # Wait (on the event) until the escaper is done, then do honest work.
    while [ ! -e "$TREEFARM_RUN_DIR/instances/001/done" ]; do sleep 0.05; done
    echo b1 >> src/b.txt
    git commit -qam "002: victim work"
    exit 0
fi
while [ ! -e "{worktrees}/002/src/b.txt" ]; do sleep 0.05; done
echo one > src/a.txt
git add src/a.txt
git commit -qm "001: one"
head=$(git rev-parse HEAD)
try() {{
    name=$1; shift
    if ( "$@" ) >>"$me/attempts.err" 2>&1; then echo "ESCAPED $name"; else echo "blocked $name"; fi >>"$me/attempts"
}}
try main-checkout sh -c 'echo escaped > "{main}/escape.txt"'
try other-worktree sh -c 'echo escaped > "{worktrees}/002/escape.txt"'
try update-ref-roadmap git --git-dir="{main}/.git" update-ref refs/heads/roadmap {side}
try branch-f-main git --git-dir="{main}/.git" branch -f main {side}
try branch-D-other git --git-dir="{main}/.git" update-ref -d refs/heads/treefarm/002
try delete-object rm -f "{loose}"
try git-config sh -c 'printf "[treefarmtest]\n\tescaped = true\n" >> "{main}/.git/config"'
try git-hook sh -c 'echo "exit 0" > "{main}/.git/hooks/pre-commit"'
try home sh -c 'echo escaped > "{home}/escape"'
try other-port "{python}" -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $TREEFARM_PORT + {STRIDE}))"
# The same through the agent's own git: harmless, it is private.
git update-ref refs/heads/roadmap "$head" 2>>"$me/attempts.err"
git branch -f main "$head" 2>>"$me/attempts.err"
git branch -D treefarm/002 >>"$me/attempts.err" 2>&1
# Positive controls: its own port, its own files.
if "{python}" -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $TREEFARM_PORT))"; then echo "ok own-port"; else echo "FAILED own-port"; fi >>"$me/attempts"
echo two >> src/a.txt
git commit -qam "001: two"
echo amended >> src/a.txt
git commit -q --amend -am "001: two amended"
echo scratch >> src/a.txt
git stash -q
git stash list > "$me/stash-list"
git stash pop -q
git checkout -q -- src/a.txt
git reset -q --soft HEAD~1
git commit -qm "001: squashed"
cat "$me/attempts.err"
echo ok > "$me/done"
"#
    )
}

/// What the oracle sees escaped: file checksums and git state.
fn escapes(farm: &Farm, before: &Before) -> Vec<&'static str> {
    let repo = &farm.repo;
    let mut out = Vec::new();
    if repo.root.join("escape.txt").exists() {
        out.push("main-checkout");
    }
    if repo.worktree_dir().join("002/escape.txt").exists()
        || !repo
            .git(&["log", "--all", "--format=%H", "--", "escape.txt"])
            .is_empty()
    {
        out.push("other-worktree");
    }
    // Its reflog remembers the move even when treefarm later moves it on.
    if repo
        .git(&["log", "-g", "--format=%H", "roadmap"])
        .lines()
        .any(|l| l == farm.side)
    {
        out.push("update-ref-roadmap");
    }
    if repo.git(&["rev-parse", "main"]) != before.main {
        out.push("branch-f-main");
    }
    let state = repo.run_state();
    let i002 = state["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["id"] == "002")
        .cloned()
        .expect("002");
    // Deleted under it, the victim's branch comes back as a root commit
    // (its agent commits onto nothing) and cannot merge cleanly.
    if i002["merged_commit"].is_null() {
        out.push("branch-D-other");
    }
    if !farm.loose.exists() {
        out.push("delete-object");
    }
    if std::fs::read(repo.root.join(".git/config")).expect("config") != before.config {
        out.push("git-config");
    }
    if repo.root.join(".git/hooks/pre-commit").exists() {
        out.push("git-hook");
    }
    if repo.home.join("escape").exists() {
        out.push("home");
    }
    if repo.home.join("setup-escape").exists() {
        out.push("setup-home");
    }
    out
}

struct Before {
    main: String,
    config: Vec<u8>,
}

fn attempts(repo: &TestRepo) -> String {
    let run = repo.run_state()["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    std::fs::read_to_string(repo.runs_dir().join(run).join("instances/001/attempts"))
        .unwrap_or_default()
}

fn run_farm(isolation: &str, port_base: u32) -> (Farm, Before, std::process::Output) {
    let farm = farm(isolation, port_base);
    let before = Before {
        main: farm.repo.git(&["rev-parse", "main"]),
        config: std::fs::read(farm.repo.root.join(".git/config")).expect("config"),
    };
    let out = farm.repo.tf(&["run", "--isolation", isolation]);
    (farm, before, out)
}

#[test]
fn every_escape_fails_and_the_agents_commits_are_merged() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (farm, before, out) = run_farm("landlock", 47310 + std::process::id() % 500 * 20);
    let repo = &farm.repo;
    let tried = attempts(repo);
    assert!(
        out.status.success(),
        "{}\n{}\n{tried}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!tried.contains("ESCAPED"), "{tried}");
    assert_eq!(tried.matches("blocked ").count(), 10, "{tried}");
    assert!(tried.contains("ok own-port"), "{tried}");
    assert_eq!(escapes(&farm, &before), Vec::<&str>::new());
    // The agent's own git worked: commit, amend, stash, reset, commit.
    let subjects = repo.git(&["log", "--format=%s", "roadmap"]);
    assert!(subjects.contains("001: squashed"), "{subjects}");
    assert!(!subjects.contains("001: one\n"), "{subjects}");
    assert!(subjects.contains("002: victim work"), "{subjects}");
    assert_eq!(repo.show("roadmap", "src/a.txt"), "one\ntwo\namended");
    assert_eq!(repo.show("roadmap", "src/b.txt"), "b0\nb1");
    let fsck = common::run_ok(repo.git_cmd(&["fsck", "--no-progress", "--no-dangling"]));
    assert_eq!(fsck, "", "git fsck of the main repository");
    // The denials are named in the log the user is pointed to.
    let log = std::fs::read_to_string(
        repo.runs_dir()
            .join(repo.run_state()["run_id"].as_str().expect("run id"))
            .join("logs/001.log"),
    )
    .expect("read log");
    let denied = format!(
        "write to {}/escape.txt denied by isolation",
        repo.root.display()
    );
    assert!(log.contains(&denied), "{log}");
    // The agent succeeded anyway; the user is still told, as a warning event
    // of the instance (terminal, --json, the journal and the report), not
    // only in the log.
    let events = std::fs::read_to_string(
        repo.runs_dir()
            .join(repo.run_state()["run_id"].as_str().expect("run id"))
            .join("events.jsonl"),
    )
    .expect("read events");
    assert!(
        events.lines().any(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("an event");
            e["event"] == "warning"
                && e["id"] == "001"
                && e["message"].as_str().unwrap_or("").contains(&denied)
        }),
        "{events}"
    );
}

#[test]
fn without_isolation_the_oracle_sees_every_escape() {
    let (farm, before, out) = run_farm("off", 48310 + std::process::id() % 500 * 20);
    let tried = attempts(&farm.repo);
    let _ = out;
    let mut seen = escapes(&farm, &before);
    seen.sort();
    let mut expected = vec![
        "branch-D-other",
        "branch-f-main",
        "delete-object",
        "git-config",
        "git-hook",
        "home",
        "main-checkout",
        "other-worktree",
        "setup-home",
        "update-ref-roadmap",
    ];
    expected.sort();
    assert_eq!(seen, expected, "{tried}");
    assert!(tried.contains("ESCAPED other-port"), "{tried}");
}

/// The secrets planted in the test's `$HOME`: a fake AWS key and SSH key.
const AWS_SECRET: &str = "aws_secret_access_key = FAKE-AWS-SECRET-planted-by-the-test";
const SSH_SECRET: &str = "FAKE-SSH-PRIVATE-KEY-planted-by-the-test";

/// A prompt-injected agent that reads `~/.aws/credentials` and
/// `~/.ssh/id_ed25519` and commits what it got to its branch; run with
/// `isolation` and `allow_read`. Returns the repository and `run`'s output.
fn credential_run(isolation: &str, allow_read: &[&str]) -> (TestRepo, std::process::Output) {
    let repo = TestRepo::with_files(&[("src/a.txt", "a0\n")]);
    std::fs::create_dir_all(repo.home.join(".aws")).expect("aws dir");
    std::fs::write(
        repo.home.join(".aws/credentials"),
        format!("[default]\n{AWS_SECRET}\n"),
    )
    .expect("aws credentials");
    std::fs::create_dir_all(repo.home.join(".ssh")).expect("ssh dir");
    std::fs::write(
        repo.home.join(".ssh/id_ed25519"),
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{SSH_SECRET}\n"),
    )
    .expect("ssh key");
    let agent = repo.tmp.path().join("thief.sh");
    std::fs::write(
        &agent,
        "set -u\ncd \"$TREEFARM_WORKTREE\"\nmkdir -p stolen\n\
         cat \"$HOME/.aws/credentials\" > stolen/aws.txt\n\
         cat \"$HOME/.ssh/id_ed25519\" > stolen/ssh.txt\n\
         git add stolen\ngit commit -qm '001: what the agent could read'\nexit 0\n",
    )
    .expect("write agent");
    repo.write(
        "specs/SPEC-001-thief.md",
        "---\ntitle: Thief\nfiles: [stolen/aws.txt, stolen/ssh.txt]\n---\n# Thief\n\nDo it.\n",
    );
    let allow = allow_read
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh {}\n  timeout: 2m\nisolation:\n  mode: {isolation}\n  allow_read: [{allow}]\n",
            agent.display()
        ),
    );
    repo.commit_all("initial");
    let out = repo.tf(&["run", "--isolation", isolation]);
    (repo, out)
}

/// Every version of every file on every ref, as one text (the oracle of
/// what reached the repository).
fn everything_committed(repo: &TestRepo) -> String {
    repo.git(&["log", "--all", "-p", "--format=%H %s"])
}

#[test]
fn planted_credentials_are_unreadable_under_landlock_and_named_in_the_result() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, out) = credential_run("landlock", &[]);
    let ctx = format!("{}\n{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{ctx}");
    let committed = everything_committed(&repo);
    assert!(!committed.contains(AWS_SECRET), "{committed}");
    assert!(!committed.contains(SSH_SECRET), "{committed}");
    // The agent's own commit went through (an empty file of each).
    assert!(
        committed.contains("001: what the agent could read"),
        "{committed}"
    );
    // Named in the result: the journal (so `status`), `status --json`, the
    // summary table and the warning event.
    let aws = format!(
        "read of {}/.aws/credentials denied by isolation",
        repo.home.display()
    );
    let ssh = format!(
        "read of {}/.ssh/id_ed25519 denied by isolation",
        repo.home.display()
    );
    let state = repo.run_state();
    let denied = state["instances"][0]["denied"].as_str().unwrap_or_default();
    assert!(denied.contains(&aws) && denied.contains(&ssh), "{state:#}");
    assert!(denied.contains("isolation.allow_read"), "{denied}");
    let status = repo.tf(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["instances"][0]["denied"].as_str(), Some(denied));
    assert!(ctx.contains(&aws), "the summary table says it: {ctx}");
    let human = repo.tf(&["status"]);
    let human = format!("{}{}", stdout(&human), stderr(&human));
    assert!(human.contains(&aws), "{human}");
}

#[test]
fn allow_read_gives_one_credential_store_back() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let (repo, out) = credential_run("landlock", &["~/.aws"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let committed = everything_committed(&repo);
    assert!(committed.contains(AWS_SECRET), "{committed}");
    assert!(!committed.contains(SSH_SECRET), "{committed}");
}

#[test]
fn without_isolation_the_oracle_sees_the_credentials_committed() {
    // `off` on purpose: the escape must be possible for the oracle to see it.
    let (repo, out) = credential_run("off", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let committed = everything_committed(&repo);
    assert!(committed.contains(AWS_SECRET), "{committed}");
    assert!(committed.contains(SSH_SECRET), "{committed}");
}

/// Issue 21.2: on a fresh machine (`$HOME` exists, `~/.claude` does not) an
/// isolated Claude Code could not write its state, and every tool call
/// failed. A stand-in named `claude` (treefarm knows the CLI by its program
/// name) writes what the real one writes from an empty home: its state
/// folder and `~/.claude.json` in place. Both work under Landlock; `$HOME`
/// itself stays closed, and that denial is named in the run's result.
#[test]
fn a_fresh_home_gets_the_clis_state_writable_but_not_home_itself() {
    if !common::landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let repo = TestRepo::with_files(&[("src/a.txt", "a0\n")]);
    assert_eq!(std::fs::read_dir(&repo.home).expect("home").count(), 0);
    let bin = repo.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::write(
        bin.join("claude"),
        "set -u\ncd \"$TREEFARM_WORKTREE\"\n\
         mkdir -p \"$HOME/.claude/projects/p\" && echo session > \"$HOME/.claude/projects/p/s.jsonl\"\n\
         printf '{\"numStartups\": 1}\\n' > \"$HOME/.claude.json\"\n\
         touch \"$HOME/not-state\"\n\
         echo a1 > src/a.txt\ngit commit -qam '001: work'\n",
    )
    .expect("fake claude");
    repo.write("specs/SPEC-001-work.md", &spec("Work", "src/a.txt"));
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh {}/claude {{spec}}\n  timeout: 2m\nisolation: landlock\n",
            bin.display()
        ),
    );
    repo.commit_all("initial");
    let out = repo.tf(&["run", "--isolation", "landlock"]);
    let ctx = format!("{}\n{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{ctx}");
    let home = &repo.home;
    assert_eq!(
        std::fs::read_to_string(home.join(".claude/projects/p/s.jsonl")).ok(),
        Some("session\n".to_string()),
        "{ctx}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".claude.json")).ok(),
        Some("{\"numStartups\": 1}\n".to_string()),
        "{ctx}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| {
        std::fs::metadata(home.join(p))
            .expect("state")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".claude"), 0o700);
    assert_eq!(mode(".claude.json"), 0o600);
    // Nothing else appeared in the home folder: `$HOME` is not writable.
    let mut entries: Vec<String> = std::fs::read_dir(home)
        .expect("home")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, [".claude", ".claude.json"], "{ctx}");
    let denied = repo.run_state()["instances"][0]["denied"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        denied.contains(&format!(
            "write to {}/not-state denied by isolation",
            home.display()
        )),
        "{denied}\n{ctx}"
    );
    assert_eq!(repo.show("roadmap", "src/a.txt"), "a1");
}
