//! Randomized torture (issue 11): specs whose agents randomly succeed, fail,
//! fail once, hang with SIGTERM-ignoring grandchildren, leave changes
//! uncommitted, conflict or write outside their declaration, or (with a gate)
//! break the gate; merges one by one or through the merge queue (random
//! `merge.batch` and `merge.gate_jobs`, with or without a gate); the coordinator
//! SIGKILLed at random moments and resumed; the user committing to the
//! target and to `main` meanwhile. After the run settles, git and /proc are
//! the oracle: no agent commit unreachable, every spec that succeeded and
//! did not conflict merged exactly once, the user's commits kept, `git fsck`
//! clean, no process of the run alive, no lock left, a second `resume` a
//! no-op.
//!
//! Seeded; the seed is printed. `TREEFARM_TORTURE_SEED=N` replays one seed.
//! The short version runs in `cargo test`; `scripts/torture.sh COUNT START`
//! runs the long one (`--ignored torture_long`) over consecutive seeds.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, TestRepo};

/// splitmix64: small, seedable, good enough to pick behaviours and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    Slow,
    Fail,
    FailOnce,
    Hang,
    Uncommitted,
    Conflict,
    OutOfScope,
    /// Commits work the gate refuses (only with a gate).
    GateFail,
}

impl Behaviour {
    fn pick(rng: &mut Rng) -> Behaviour {
        match rng.below(16) {
            0..=3 => Behaviour::Ok,
            4..=5 => Behaviour::Slow,
            6 => Behaviour::Fail,
            7 => Behaviour::FailOnce,
            8 => Behaviour::Hang,
            9..=10 => Behaviour::Uncommitted,
            11..=13 => Behaviour::Conflict,
            _ => Behaviour::OutOfScope,
        }
    }

    fn directives(self, id: &str, rng: &mut Rng) -> String {
        let own = format!("src/s{id}.txt");
        let ok = format!("append {own} \"{id} by the agent\"\ncommit \"agent {id}\"");
        match self {
            Behaviour::Ok => ok,
            // Well inside the 5 s timeout even on a loaded machine.
            Behaviour::Slow => format!("sleep 0.{}\n{ok}", rng.below(10)),
            Behaviour::Fail => format!("append {own} \"{id} partial\"\ncommit \"agent {id} partial\"\nexit 3"),
            Behaviour::FailOnce => format!("fail-once 4\n{ok}"),
            Behaviour::Hang => format!(
                "append {own} \"{id} before hanging\"\ncommit \"agent {id} before hanging\"\nignore-term\ngrandchild 300\nhang"
            ),
            Behaviour::Uncommitted => format!("append {own} \"{id} left uncommitted\""),
            Behaviour::Conflict => format!(
                "append {own} \"{id}\"\nwrite src/conflict.txt \"{id} was here\"\ncommit \"agent {id} conflicting\""
            ),
            Behaviour::OutOfScope => {
                format!("append {own} \"{id}\"\nwrite extra/x{id}.txt \"{id}\"\ncommit \"agent {id} strays\"")
            }
            Behaviour::GateFail => {
                format!("append {own} \"{id} {GATE_FAIL}\"\ncommit \"agent {id} breaks the gate\"")
            }
        }
    }

    /// Whether the agent ends up succeeding (after retries).
    fn succeeds(self) -> bool {
        !matches!(self, Behaviour::Fail | Behaviour::Hang)
    }
}

/// What a gate culprit writes; the gate fails while the tree holds it.
const GATE_FAIL: &str = "GATE-FAIL";

struct Config {
    specs: usize,
    instances: usize,
    kills: usize,
    max_kill_ms: u64,
    /// Untracked-by-specs files in the repository, so planting takes time.
    filler_files: usize,
    /// `merge.batch` (1: one branch at a time, no queue unless gate jobs).
    batch: usize,
    /// `merge.gate_jobs`.
    gate_jobs: usize,
    /// A gate (`merge.gate`) that fails on a culprit's work; some `Ok`
    /// specs become culprits.
    gated: bool,
    /// `worktree.sparse: auto`: each worktree holds `src/` only (not the
    /// filler), and an agent's uncommitted changes are collected from the
    /// stamp of its fresh sparse worktree.
    sparse: bool,
}

impl Config {
    /// The merge settings of `seed`, from their own stream so the
    /// behaviours a seed picks stay the same whatever is added here.
    fn merge_settings(mut self, seed: u64) -> Config {
        let mut rng = Rng(seed ^ 0x009a_7e0f_9a7e);
        self.batch = [1, 2, 8][rng.below(3) as usize];
        self.gate_jobs = 1 + rng.below(2) as usize;
        self.gated = rng.below(3) != 0;
        // The layout from a stream of its own, for the same reason.
        self.sparse = Rng(seed ^ 0x05_9a25e).below(2) == 0;
        self
    }

    fn merge_yaml(&self) -> String {
        let gate = if self.gated {
            format!("  gate: \"! grep -rq {GATE_FAIL} src\"\n")
        } else {
            String::new()
        };
        let sparse = if self.sparse {
            "worktree:\n  sparse: auto\n"
        } else {
            ""
        };
        format!(
            "merge:\n  batch: {}\n  gate_jobs: {}\n{gate}{sparse}",
            self.batch, self.gate_jobs
        )
    }
}

struct Torture {
    repo: TestRepo,
    rng: Rng,
    /// Picks the journal crash points (its own stream, so the kill times a
    /// seed picks stay the same).
    crash_rng: Rng,
    behaviours: Vec<(String, Behaviour)>,
    user_target_commits: Vec<String>,
    user_main_commits: Vec<String>,
    log: Vec<String>,
}

fn record_dir(repo: &TestRepo) -> std::path::PathBuf {
    repo.tmp.path().join("record")
}

impl Torture {
    fn new(seed: u64, cfg: &Config) -> Torture {
        let mut rng = Rng(seed);
        let repo = TestRepo::empty();
        let record = record_dir(&repo);
        std::fs::create_dir_all(&record).expect("mkdir record");
        repo.write("README.md", "# torture\n");
        repo.write("src/conflict.txt", "base\n");
        for n in 0..cfg.filler_files {
            repo.write(
                &format!("filler/d{}/f{n}.txt", n % 20),
                &format!("filler {n}\n"),
            );
        }
        let mut behaviours = Vec::new();
        // Culprits come from their own stream (see `Config::merge_settings`).
        let mut culprits = Rng(seed ^ 0xc01f);
        for n in 1..=cfg.specs {
            let id = format!("{n:03}");
            let mut b = Behaviour::pick(&mut rng);
            if cfg.gated && b == Behaviour::Ok && culprits.below(3) == 0 {
                b = Behaviour::GateFail;
            }
            repo.write(&format!("src/s{id}.txt"), &format!("{id} original\n"));
            let directives = b.directives(&id, &mut rng);
            repo.write(
                &format!("specs/SPEC-{id}-t.md"),
                &format!("# Torture {id}\n\n**File**: `src/s{id}.txt`\n\n```demo-agent\n{directives}\n```\n"),
            );
            behaviours.push((id, b));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-agent.sh");
        std::fs::write(
            record.join("agent.sh"),
            format!(
                "#!/bin/sh\nexport TREEFARM_GRANDCHILD_PID_FILE='{rec}/grandchild-'$TREEFARM_SPEC_ID-$$\necho \"$TREEFARM_SPEC_ID $$\" >> '{rec}/starts'\nexec sh '{script}'\n",
                rec = record.display(),
                script = script.display()
            ),
        )
        .expect("write agent");
        let hook = repo.root.join(".git/hooks/post-commit");
        std::fs::create_dir_all(hook.parent().unwrap()).expect("hooks");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ngit rev-parse HEAD >> '{}/commits'\n",
                record.display()
            ),
        )
        .expect("hook");
        let mut perms = std::fs::metadata(&hook).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&hook, perms).unwrap();
        repo.write(
            "treefarm.yaml",
            &format!(
                "agent:\n  command: sh '{}'\n  timeout: 5s\n  kill_grace: 500ms\n  retries: 1\ninstances: {}\n{}{}",
                record.join("agent.sh").display(),
                cfg.instances,
                cfg.merge_yaml(),
                // Isolation stays on (the default): the record folder, where
                // the agents and the commit hook write, is named as a user
                // would name it.
                common::allow_write_yaml(&[&record]),
            ),
        );
        repo.commit_all("torture fixtures");
        let _ = std::fs::remove_file(record.join("commits"));
        Torture {
            repo,
            rng,
            crash_rng: Rng(seed ^ 0x10_c4a5),
            behaviours,
            user_target_commits: Vec::new(),
            user_main_commits: Vec::new(),
            log: Vec::new(),
        }
    }

    fn git(&self, args: &[&str]) -> String {
        self.repo.git(args)
    }

    /// The user commits a new file to `roadmap` without a checkout (as a
    /// script or another clone pushing would), compare-and-swap on its tip.
    fn user_commit_to_target(&mut self) {
        let Some(old) = self
            .repo
            .git_cmd(&["rev-parse", "--verify", "-q", "refs/heads/roadmap"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        else {
            return;
        };
        let n = self.user_target_commits.len();
        let index = self.repo.tmp.path().join(format!("user-index-{n}"));
        let run = |args: &[&str], input: Option<&str>| -> Option<String> {
            let mut cmd = self.repo.git_cmd(args);
            cmd.env("GIT_INDEX_FILE", &index);
            if input.is_some() {
                cmd.stdin(Stdio::piped());
            }
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().ok()?;
            if let Some(text) = input {
                use std::io::Write;
                child.stdin.take()?.write_all(text.as_bytes()).ok()?;
            }
            let out = child.wait_with_output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let blob = run(
            &["hash-object", "-w", "--stdin"],
            Some(&format!("user {n}\n")),
        );
        let made = blob.and_then(|blob| {
            run(&["read-tree", &old], None)?;
            run(
                &[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("100644,{blob},user/u{n}.txt"),
                ],
                None,
            )?;
            let tree = run(&["write-tree"], None)?;
            run(
                &[
                    "commit-tree",
                    &tree,
                    "-p",
                    &old,
                    "-m",
                    &format!("user commit {n} to roadmap"),
                ],
                None,
            )
        });
        let Some(new) = made else { return };
        if run(&["update-ref", "refs/heads/roadmap", &new, &old], None).is_some() {
            self.log.push(format!("user committed {new} to roadmap"));
            self.user_target_commits.push(new);
        }
    }

    fn user_commit_to_main(&mut self) {
        let n = self.user_main_commits.len();
        self.repo
            .write(&format!("mine/m{n}.txt"), &format!("mine {n}\n"));
        self.repo.git(&["add", "mine"]);
        self.repo.git(&[
            "-c",
            "core.hooksPath=/nonexistent",
            "commit",
            "-q",
            "-m",
            &format!("user commit {n} to main"),
        ]);
        let head = self.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
        self.user_main_commits.push(head);
    }

    /// Starts `args`, lets it run a random while (the user committing
    /// meanwhile), then SIGKILLs it unless it ended first. Half the time the
    /// coordinator also kills itself at a random pass of a random journal
    /// crash point (the windows of a journal write a timed kill rarely
    /// hits), whichever comes first.
    fn run_and_kill(&mut self, args: &[&str], max_kill_ms: u64) {
        let mut command = self.repo.treefarm();
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut armed = None;
        if self.crash_rng.below(2) == 0 {
            let points = crate::crash_journal::JOURNAL_CRASH_POINTS;
            let point = points[self.crash_rng.below(points.len() as u64) as usize];
            // Appends come at every commit, compactions every few dozen
            // (and first thing in a resume): aim within reach of the timer.
            let passes = if point.starts_with("journal.mid_append")
                || point.starts_with("journal.appended")
            {
                12
            } else {
                3
            };
            let at = format!("{point}#{}", 1 + self.crash_rng.below(passes));
            command.env("TREEFARM_CRASH_AT", &at);
            armed = Some(at);
        }
        let mut child = command.spawn().expect("spawn treefarm");
        // Half the kills early (planting, the first agents), half anywhere.
        let span = if self.rng.below(2) == 0 {
            max_kill_ms.min(800)
        } else {
            max_kill_ms
        };
        let delay = Duration::from_millis(50 + self.rng.below(span));
        let commit_at = delay.mul_f64(self.rng.below(100) as f64 / 100.0);
        let started = Instant::now();
        let mut committed = false;
        // Fault injection at a random moment, not synchronisation: the
        // coordinator is meant to be killed wherever it happens to be.
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let signal = std::os::unix::process::ExitStatusExt::signal(&status);
                self.log.push(match (signal, &armed) {
                    (Some(9), Some(at)) => format!("{args:?} killed at crash point {at}"),
                    _ => format!("{args:?} ended by itself"),
                });
                break;
            }
            if !committed && started.elapsed() >= commit_at {
                committed = true;
                self.user_commit_to_target();
                if self.rng.below(2) == 0 {
                    self.user_commit_to_main();
                }
            }
            if started.elapsed() >= delay {
                let _ = child.kill();
                let _ = child.wait();
                self.log.push(format!("{args:?} killed after {delay:?}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The latest run that wrote its journal. A kill before the first
    /// journal write leaves a run folder with no `state.json`: nothing to
    /// resume, so the next step is a new `run`.
    fn run_id(&self) -> Option<String> {
        let runs = self.repo.root.join(".git/treefarm/runs");
        let mut ids: Vec<String> = std::fs::read_dir(runs)
            .ok()?
            .flatten()
            .filter(|e| e.path().join("state.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids.pop()
    }

    /// The journal as every reader reads it: the snapshot and its change
    /// log.
    fn state(&self) -> serde_json::Value {
        crate::state_changes::journal(&self.repo)
    }

    fn git_state(&self) -> String {
        format!(
            "{}\n--\n{}\n--\n{}",
            self.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
            self.git(&["worktree", "list", "--porcelain"]),
            self.repo.main_snapshot()
        )
    }

    /// Checks every invariant; returns the violations.
    fn violations(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let state = self.state();
        if state["state"] != "finished" {
            bad.push(format!("run state is {}", state["state"]));
        }
        // No agent commit unreachable.
        let tips: Vec<String> = self
            .git(&[
                "for-each-ref",
                "--format=%(refname)",
                "refs/heads/roadmap",
                "refs/heads/treefarm",
                "refs/treefarm",
            ])
            .lines()
            .map(str::to_string)
            .collect();
        let commits =
            std::fs::read_to_string(record_dir(&self.repo).join("commits")).unwrap_or_default();
        // The oracle itself: agents and their commit hook really recorded
        // (a record folder they cannot write would make this check vacuous).
        let starts =
            std::fs::read_to_string(record_dir(&self.repo).join("starts")).unwrap_or_default();
        if starts.trim().is_empty() || commits.trim().is_empty() {
            bad.push(
                "the agents recorded no start or no commit: is the record folder writable to them?"
                    .into(),
            );
        }
        for c in commits.lines() {
            let reachable = tips.iter().any(|t| {
                self.repo
                    .git_cmd(&["merge-base", "--is-ancestor", c, t])
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if !reachable {
                bad.push(format!("agent commit {c} is unreachable"));
            }
        }
        // Merged exactly once; succeeded and not conflicted means merged.
        let subjects = self.git(&["log", "--first-parent", "--format=%s", "roadmap"]);
        for (id, b) in &self.behaviours {
            let inst = state["instances"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["id"] == id.as_str()))
                .cloned()
                .unwrap_or_default();
            let st = inst["state"].as_str().unwrap_or("?");
            let merges = subjects
                .lines()
                .filter(|s| s.starts_with(&format!("Merge treefarm/{id}:")))
                .count();
            let merged = st == "merged" || st == "pruned";
            if merged && merges != 1 {
                bad.push(format!("{id} ({b:?}) is {st} but merged {merges} times"));
            }
            if !merged && merges != 0 {
                bad.push(format!("{id} ({b:?}) is {st} but merged {merges} times"));
            }
            let allowed: &[&str] = match b {
                Behaviour::Fail => &["failed"],
                Behaviour::Hang => &["timed_out"],
                Behaviour::Conflict => &["merged", "pruned", "conflicted"],
                Behaviour::GateFail => &["refused"],
                _ => &["merged", "pruned"],
            };
            if !allowed.contains(&st) {
                bad.push(format!(
                    "{id} ({b:?}) ended {st} (reason: {})",
                    inst["reason"].as_str().unwrap_or("-")
                ));
            }
            let _ = b.succeeds();
            // Never started more often than `1 + retries` (retries: 1).
            let starts = std::fs::read_to_string(record_dir(&self.repo).join("starts"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(id.as_str()))
                .count();
            if starts > 2 {
                bad.push(format!("{id} ({b:?}) was started {starts} times"));
            }
        }
        // The user's commits kept.
        for c in &self.user_target_commits {
            let kept = self
                .repo
                .git_cmd(&["merge-base", "--is-ancestor", c, "roadmap"])
                .status()
                .is_ok_and(|s| s.success());
            if !kept {
                bad.push(format!("user commit {c} on roadmap lost"));
            }
        }
        if let Some(last) = self.user_main_commits.last() {
            let head = self.git(&["rev-parse", "main"]).trim().to_string();
            if &head != last {
                bad.push(format!(
                    "main is at {head}, the user's last commit was {last}"
                ));
            }
        }
        // fsck clean.
        let fsck = self
            .repo
            .git_cmd(&["fsck", "--no-progress"])
            .output()
            .expect("fsck");
        let fsck_text = format!(
            "{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        if !fsck.status.success()
            || fsck_text
                .lines()
                .any(|l| !l.starts_with("dangling") && !l.trim().is_empty())
        {
            bad.push(format!("git fsck: {fsck_text}"));
        }
        // No process of the run alive.
        let run_id = self.run_id().unwrap_or_default();
        let alive = processes_with_env(&format!("TREEFARM_RUN_ID={run_id}"));
        if !alive.is_empty() {
            bad.push(format!("processes of the run still alive: {alive:?}"));
        }
        // No lock left.
        let git_dir = self.repo.root.join(".git");
        if git_dir.join("treefarm/lock").exists() {
            bad.push("treefarm lock left".into());
        }
        for lock in find_locks(&git_dir) {
            bad.push(format!("git lock left: {}", lock.display()));
        }
        // No worktree's index left lagging treefarm's commit in it: every
        // kept worktree was brought in line.
        for admin in std::fs::read_dir(git_dir.join("worktrees"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let marker = admin.path().join("treefarm-index-lags");
            if marker.exists() {
                bad.push(format!("index left lagging: {}", marker.display()));
            }
        }
        bad
    }
}

fn processes_with_env(var: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || common::pid_dead(pid) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == var.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn find_locks(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("objects") && !path.ends_with("treefarm") {
                out.extend(find_locks(&path));
            }
        } else if path.extension().is_some_and(|e| e == "lock") {
            out.push(path);
        }
    }
    out
}

fn seed_from_env(default: u64) -> u64 {
    std::env::var("TREEFARM_TORTURE_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// One seed: run, kills with resumes, a final resume to the end, checks.
fn torture(seed: u64, cfg: &Config) {
    eprintln!(
        "torture seed {seed} (replay with TREEFARM_TORTURE_SEED={seed}): merge.batch {}, gate_jobs {}, gate {}, sparse {}",
        cfg.batch, cfg.gate_jobs, cfg.gated, cfg.sparse
    );
    let mut t = Torture::new(seed, cfg);
    eprintln!("behaviours: {:?}", t.behaviours);
    t.run_and_kill(&["run"], cfg.max_kill_ms);
    for _ in 1..cfg.kills {
        if t.run_id().is_none() {
            t.run_and_kill(&["run"], cfg.max_kill_ms);
        } else {
            t.run_and_kill(&["resume"], cfg.max_kill_ms);
        }
    }
    t.user_commit_to_target();
    // Then resume to the end (bounded, so a hang fails instead of blocking).
    let mut last = None;
    for round in 0..3 {
        let args: &[&str] = if t.run_id().is_none() {
            &["run"]
        } else {
            &["resume"]
        };
        // To a file, not a pipe nobody drains while waiting.
        let err_path = t.repo.tmp.path().join(format!("final-{round}.stderr"));
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let mut child = t
            .repo
            .treefarm()
            .args(args)
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                panic!(
                    "seed {seed}: {args:?} did not finish in 180 s; log: {:?}\nstderr:\n{}\nstate: {}",
                    t.log,
                    std::fs::read_to_string(&err_path).unwrap_or_default(),
                    t.run_id().map_or("no journal".to_string(), |_| t.state().to_string())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&err_path).unwrap_or_default();
        last = Some((status, text.clone()));
        assert!(
            t.run_id().is_some(),
            "seed {seed}: {args:?} exited {status} and left no journal; log: {:?}\nstderr:\n{text}",
            t.log
        );
        if t.state()["state"] == "finished" {
            break;
        }
    }
    let (status, text) = last.expect("a final resume");
    assert!(
        status.code().is_some_and(|c| c == 0 || c == 1),
        "seed {seed}: final resume exited {status}:\n{text}\nlog: {:?}",
        t.log
    );
    let before = t.git_state();
    let again = t.repo.tf(&["resume"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "seed {seed}: second resume:\n{}",
        stderr(&again)
    );
    let violations = t.violations();
    let kills = t.log.iter().filter(|l| l.contains("killed ")).count();
    let at_points: Vec<&str> = t
        .log
        .iter()
        .filter_map(|l| l.rsplit_once("killed at crash point ").map(|(_, p)| p))
        .collect();
    eprintln!(
        "seed {seed}: {} specs, {kills} coordinator SIGKILLs ({} at a journal crash point: {at_points:?}), {} user commits to roadmap",
        t.behaviours.len(),
        at_points.len(),
        t.user_target_commits.len()
    );
    assert_eq!(
        t.git_state(),
        before,
        "seed {seed}: a second resume changed the repository"
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {violations:#?}\nfinal resume stderr:\n{text}\nlog: {:?}",
        t.log
    );
    let _ = Command::new("true").status();
}

#[test]
fn torture_short() {
    let seed = seed_from_env(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    );
    torture(
        seed,
        &Config {
            specs: 6,
            instances: 3,
            kills: 2,
            max_kill_ms: 1500,
            filler_files: 0,
            batch: 1,
            gate_jobs: 1,
            gated: false,
            sparse: false,
        }
        .merge_settings(seed),
    );
}

/// `TREEFARM_TORTURE_SEED` (default 1) with `TREEFARM_TORTURE_COUNT`
/// consecutive seeds (default 1).
#[test]
#[ignore = "long: run by scripts/torture.sh"]
fn torture_long() {
    let start = seed_from_env(1);
    let count: u64 = std::env::var("TREEFARM_TORTURE_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in start..start + count {
        let mut rng = Rng(seed ^ 0x5eed);
        torture(
            seed,
            &Config {
                specs: 12 + rng.below(20) as usize,
                instances: 2 + rng.below(4) as usize,
                kills: 3 + rng.below(4) as usize,
                max_kill_ms: 3000,
                filler_files: if rng.below(2) == 0 { 1000 } else { 0 },
                batch: 1,
                gate_jobs: 1,
                gated: false,
                sparse: false,
            }
            .merge_settings(seed),
        );
        eprintln!("torture seed {seed}: ok");
    }
}
