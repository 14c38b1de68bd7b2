//! `treefarm split` with a scripted agent (a POSIX sh script in the test's
//! temp dir): round 1 plants every defect class, round 2 reads
//! `DIAGNOSTICS.md` and fixes them; and the ways a split ends badly (never
//! fixed, no progress, the agent fails, the agent is rate-limited). Git is
//! the oracle for "the user's checkout is untouched".

use std::path::{Path, PathBuf};

use crate::common::{assert_exit, stderr, stdout_json, TestRepo};

const REQUEST: &str = "Add request tracing to every module.";

/// The files of a split test's repository: sources `src/{lib,a..e}.rs` and
/// one existing spec, 010 on `src/c.rs` (the MCP `check_drafts` tests use
/// the same repository).
pub(crate) const SPLIT_REPO_FILES: &[(&str, &str)] = &[
    ("README.md", "# demo\n"),
    ("src/lib.rs", "pub mod a;\n"),
    ("src/a.rs", "pub fn a() {}\n"),
    ("src/b.rs", "pub fn b() {}\n"),
    ("src/c.rs", "pub fn c() {}\n"),
    ("src/d.rs", "pub fn d() {}\n"),
    ("src/e.rs", "pub fn e() {}\n"),
    (
        "specs/SPEC-010-existing.md",
        "---\nfiles: [src/c.rs]\n---\n# Rework c\n\nRework `c`.\n",
    ),
];

/// A repository of [`SPLIT_REPO_FILES`] whose agent is
/// `sh <tmp>/split-agent.sh`, the script being `prelude + body`.
fn split_repo(agent_body: &str) -> TestRepo {
    let repo = TestRepo::with_files(SPLIT_REPO_FILES);
    let script = repo.tmp.path().join("split-agent.sh");
    std::fs::write(&script, format!("{PRELUDE}{agent_body}")).expect("write the agent");
    repo.write(
        "treefarm.yaml",
        &format!(
            "agent:\n  command: sh '{}'\n  timeout: 2m\n  kill_grace: 1s\n",
            script.display()
        ),
    );
    repo.commit_all("config");
    repo
}

/// What every scripted split agent does first: record what it was told in
/// its scratch folder (the only place it may write).
const PRELUDE: &str = r#"#!/bin/sh
set -eu
D="$TREEFARM_SPLIT_DIR"
R="$TREEFARM_SPLIT_ROUND"
{
    echo "mode=$TREEFARM_MODE"
    echo "round=$R"
    echo "session=$TREEFARM_SPLIT_SESSION"
    echo "cwd=$(pwd)"
    echo "worktree=$TREEFARM_WORKTREE"
    echo "request=$(cat "$D/REQUEST.md")"
    if [ -f "$D/DIAGNOSTICS.md" ]; then echo "diagnostics=yes"; else echo "diagnostics=no"; fi
} >"$D/seen-$R.txt"
if [ -f "$D/DIAGNOSTICS.md" ]; then cp "$D/DIAGNOSTICS.md" "$D/told-$R.md"; fi
rm -f "$D"/SPEC-*.md
"#;

/// A shell snippet writing the draft `SPEC-<name>-<slug>.md`.
fn draft(name: &str, front: &str, body: &str) -> String {
    format!("cat >\"$D/SPEC-{name}-work.md\" <<'DRAFT'\n---\n{front}---\n{body}\nDRAFT\n")
}

/// Round 1: two drafts on one file (alpha, beta on src/lib.rs), a path that
/// does not exist (gamma), a cycle (delta <-> epsilon), a clash with the
/// existing spec 010 (alpha on src/c.rs) and a write outside the scratch
/// folder. Round 2: all fixed, beta depending on alpha, gamma creating a
/// file and depending on the existing spec.
fn two_round_agent() -> String {
    let verify = "Do the work.\n\n## Verify\n\n`cargo test` passes.";
    let round1 = [
        draft(
            "alpha",
            "title: Alpha\nfiles: [src/a.rs, src/lib.rs, src/c.rs]\n",
            verify,
        ),
        draft(
            "beta",
            "title: Beta\nfiles: [src/b.rs, src/lib.rs]\n",
            verify,
        ),
        draft("gamma", "title: Gamma\nfiles: [src/ghost.rs]\n", verify),
        draft(
            "delta",
            "title: Delta\nfiles: [src/d.rs]\ndepends_on: [epsilon]\n",
            verify,
        ),
        draft(
            "epsilon",
            "title: Epsilon\nfiles: [src/e.rs]\ndepends_on: [delta]\n",
            verify,
        ),
    ]
    .concat();
    let round2 = [
        draft("alpha", "title: Alpha\nfiles: [src/a.rs, src/lib.rs]\n", verify),
        draft("beta", "title: Beta\nfiles: [src/b.rs]\ndepends_on: [alpha]\n", verify),
        draft(
            "gamma",
            "title: Gamma\nfiles: [src/new/mod.rs]\ncreates: [src/new/mod.rs]\ndepends_on: [SPEC-010]\n",
            verify,
        ),
        draft("delta", "title: Delta\nfiles: [src/d.rs]\n", verify),
    ]
    .concat();
    format!(
        r#"case "$R" in
1)
{round1}
echo tampered >>"$TREEFARM_WORKTREE/src/a.rs" || true
;;
*)
test -f "$D/DIAGNOSTICS.md"
if grep -q tampered "$TREEFARM_WORKTREE/src/a.rs"; then echo "round 1's write is still there" >&2; exit 9; fi
{round2}
;;
esac
"#
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The split's folder (`.git/treefarm/splits/<id>`), the only one.
fn only_split(repo: &TestRepo) -> PathBuf {
    let mut all = split_folders(repo);
    assert_eq!(all.len(), 1, "one split folder: {all:?}");
    all.pop().expect("one")
}

/// How many worktrees git lists (1: only the main one).
fn worktree_count(repo: &TestRepo) -> usize {
    repo.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

/// Everything of the user's checkout a split must not change: HEAD, index,
/// every tracked file's content, refs, the worktree list.
fn checkout_state(repo: &TestRepo) -> String {
    format!(
        "HEAD {}\nindex {}\ndiff {}\nrefs {}\nworktrees {}",
        repo.git(&["rev-parse", "HEAD"]),
        repo.git(&["ls-files", "-s"]),
        repo.git(&["diff", "HEAD", "--stat"]),
        repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        repo.git(&["worktree", "list", "--porcelain"]),
    )
}

fn full_split(isolation: &str) {
    let repo = split_repo(&two_round_agent());
    let config = std::fs::read(repo.root.join(".git/config")).expect(".git/config");
    let before = checkout_state(&repo);

    let out = repo.tf(&["split", REQUEST, "--write", "--isolation", isolation]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("independent: 4 specs, 2 waves after 2 rounds"),
        "{err}"
    );

    // What the agent was told.
    let kept = only_split(&repo).join("drafts");
    let seen1 = read(&kept.join("seen-1.txt"));
    let seen2 = read(&kept.join("seen-2.txt"));
    assert!(seen1.contains("mode=split\nround=1\n"), "{seen1}");
    assert!(seen1.contains(&format!("request={REQUEST}")), "{seen1}");
    assert!(seen1.contains("diagnostics=no"), "{seen1}");
    assert!(
        seen2.contains("round=2\n") && seen2.contains("diagnostics=yes"),
        "{seen2}"
    );
    assert!(!kept.join("seen-3.txt").exists(), "a third round ran");
    // One conversation for the whole split: the same session, a UUID, in
    // both rounds; and the same folder, although round 1 wrote outside the
    // scratch folder and round 2 got a fresh worktree (a CLI finds its
    // conversation by the folder).
    let line = |seen: &str, key: &str| -> String {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {seen}"))
            .to_string()
    };
    let session = line(&seen1, "session");
    assert_eq!(session, line(&seen2, "session"));
    assert!(
        session.len() == 36 && session.matches('-').count() == 4,
        "not a UUID: {session}"
    );
    assert_eq!(line(&seen1, "cwd"), line(&seen2, "cwd"));
    let cwd = PathBuf::from(line(&seen1, "cwd"));
    let folder = cwd
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(folder.starts_with("split-"), "{}", cwd.display());
    let files = read(&kept.join("FILES.txt"));
    assert!(files.lines().any(|l| l == "src/a.rs") && files.lines().any(|l| l == "src/c.rs"));
    let existing: serde_json::Value =
        serde_json::from_str(&read(&kept.join("EXISTING.json"))).expect("EXISTING.json");
    assert_eq!(existing[0]["id"], "010");
    assert_eq!(existing[0]["files"][0], "src/c.rs");
    assert!(read(&kept.join("FORMAT.md")).contains("creates"));
    let told = read(&kept.join("told-2.md"));
    for expected in [
        "overlap: 011 and 012 both declare src/lib.rs",
        "`src/ghost.rs` is not tracked at the base commit and not under `creates:`",
        "dependency cycle",
        "src/c.rs",
        "010",
        "outside the scratch folder",
        "## `treefarm check --json`",
    ] {
        assert!(
            told.contains(expected),
            "round 2 was not told `{expected}`:\n{told}"
        );
    }
    if isolation == "off" {
        assert!(told.contains("src/a.rs"), "{told}");
    } else {
        assert!(told.contains("denied by isolation"), "{told}");
    }

    // The written specs: ids after 010, depends_on rewritten.
    let written: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(repo.root.join("specs"))
            .expect("specs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        written,
        [
            "SPEC-010-existing.md",
            "SPEC-011-alpha.md",
            "SPEC-012-beta.md",
            "SPEC-013-delta.md",
            "SPEC-014-gamma.md"
        ]
    );
    let beta = repo.read("specs/SPEC-012-beta.md");
    assert!(beta.contains("depends_on:\n- '011'"), "{beta}");
    let gamma = repo.read("specs/SPEC-014-gamma.md");
    assert!(
        gamma.contains("- src/new/mod.rs") && gamma.contains("- SPEC-010"),
        "{gamma}"
    );
    assert!(!gamma.contains("creates"), "{gamma}");
    assert!(gamma.contains("## Verify"), "{gamma}");

    // check accepts them; the plan runs beta after alpha.
    assert_exit(&repo.tf(&["check"]), 0);
    let plan = repo.tf(&["plan", "--json"]);
    assert_exit(&plan, 0);
    let waves = stdout_json(&plan)["waves"].clone();
    let wave_of = |id: &str| {
        waves
            .as_array()
            .expect("waves")
            .iter()
            .position(|w| w.as_array().expect("wave").iter().any(|x| x == id))
            .unwrap_or_else(|| panic!("{id} not planned: {waves}"))
    };
    assert!(wave_of("012") > wave_of("011"), "{waves}");
    for id in ["010", "013", "014"] {
        wave_of(id);
    }

    // The user's checkout: byte-identical apart from the new spec files.
    assert_eq!(checkout_state(&repo), before);
    assert_eq!(
        std::fs::read(repo.root.join(".git/config")).expect("config"),
        config
    );
    let status = repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]);
    let mut lines: Vec<&str> = status.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "?? specs/SPEC-011-alpha.md",
            "?? specs/SPEC-012-beta.md",
            "?? specs/SPEC-013-delta.md",
            "?? specs/SPEC-014-gamma.md"
        ]
    );
    assert!(
        !repo.root.join(".git/worktrees").exists()
            || std::fs::read_dir(repo.root.join(".git/worktrees"))
                .expect("dir")
                .next()
                .is_none()
    );
}

#[test]
fn split_fixes_every_defect_class_in_round_two() {
    full_split("auto");
}

#[test]
fn split_undoes_a_write_outside_the_scratch_folder_when_unconfined() {
    // Isolation off on purpose: without Landlock the worktree's status
    // before and after the round is the only guard, and the write lands.
    full_split("off");
}

#[test]
fn split_without_write_prints_the_plan_and_writes_nothing() {
    let repo = split_repo(&two_round_agent());
    let before = repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]);
    let out = repo.tf(&["split", REQUEST, "--json"]);
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["result"], "independent");
    assert_eq!(json["rounds"], 2);
    let ids: Vec<&str> = json["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["011", "012", "013", "014"]);
    assert_eq!(json["specs"][1]["depends_on"][0], "011");
    assert_eq!(json["specs"][3]["creates"][0], "src/new/mod.rs");
    assert_eq!(json["waves"].as_array().expect("waves").len(), 2);
    assert!(json["written"].as_array().expect("written").is_empty());
    assert_eq!(
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        before
    );
    assert!(Path::new(json["kept"].as_str().expect("kept"))
        .join("SPEC-alpha-work.md")
        .is_file());
}

#[test]
fn split_never_fixed_exits_2_and_writes_nothing() {
    // Progress every round, but never valid: round 1 two ghosts, round 2 one.
    let body = format!(
        "case \"$R\" in\n1)\n{}{}\n;;\n*)\n{}\n;;\nesac\n",
        draft(
            "one",
            "title: One\nfiles: [src/ghost1.rs]\n",
            "Do it.\n## Verify\nok"
        ),
        draft(
            "two",
            "title: Two\nfiles: [src/ghost2.rs]\n",
            "Do it.\n## Verify\nok"
        ),
        draft(
            "one",
            "title: One\nfiles: [src/ghost3.rs]\n",
            "Do it.\n## Verify\nok"
        ),
    );
    let repo = split_repo(&body);
    let out = repo.tf(&["split", REQUEST, "--write", "--rounds", "2"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("still invalid: nothing written after 2 rounds"),
        "{err}"
    );
    assert!(err.contains("src/ghost3.rs"), "{err}");
    assert!(err.contains("drafts and diagnostics kept in"), "{err}");
    let kept = only_split(&repo).join("drafts");
    assert!(kept.join("SPEC-one-work.md").is_file());
    assert!(read(&kept.join(DIAG)).contains("ghost3"));
    assert_eq!(
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        ""
    );
    assert_eq!(worktree_count(&repo), 1, "the throwaway worktree is gone");
}

const DIAG: &str = "DIAGNOSTICS.md";

#[test]
fn split_stops_when_a_round_fixes_nothing() {
    let body = draft(
        "one",
        "title: One\nfiles: [src/ghost.rs]\n",
        "Do it.\n## Verify\nok",
    );
    let repo = split_repo(&body);
    let out = repo.tf(&["split", REQUEST, "--rounds", "5"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("after 2 rounds, stopped: a round fixed nothing"),
        "{err}"
    );
    let kept = only_split(&repo).join("drafts");
    assert!(kept.join("seen-2.txt").is_file());
    assert!(!kept.join("seen-3.txt").exists(), "a third round ran");
}

#[test]
fn split_agent_failure_exits_1_and_removes_the_worktree() {
    let repo = split_repo("echo 'the model is confused' >&2\nexit 7\n");
    let out = repo.tf(&["split", REQUEST, "--write"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("the agent exited with code 7 in round 1"),
        "{err}"
    );
    assert!(err.contains("the model is confused"), "{err}");
    assert_eq!(
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        ""
    );
    assert_eq!(worktree_count(&repo), 1, "the throwaway worktree is gone");
    assert_eq!(repo.git(&["branch", "--list", "treefarm/*"]), "");
}

#[test]
fn split_waits_out_a_rate_limit_and_retries_the_round() {
    // First attempt: a 429 with retry-after 0; the retry drafts one spec.
    let body = format!(
        "if [ ! -f \"$TMPDIR/limited\" ]; then : >\"$TMPDIR/limited\"; echo 'HTTP 429 Too Many Requests, retry-after: 0' >&2; exit 1; fi\n{}",
        draft("one", "title: One\nfiles: [src/a.rs]\n", "Do it.\n## Verify\nok")
    );
    let repo = split_repo(&body);
    let out = repo.tf(&["split", REQUEST, "--json"]);
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["rounds"], 1);
    assert_eq!(json["specs"][0]["id"], "011");
    let log = read(&only_split(&repo).join("agent/round-1.log"));
    assert!(log.contains("429 Too Many Requests"), "{log}");
}

#[test]
fn split_rate_limited_for_good_exits_1() {
    let repo = split_repo("echo 'HTTP 429 Too Many Requests, retry-after: 0' >&2\nexit 1\n");
    repo.write(
        "treefarm.yaml",
        &format!(
            "{}  rate_limit: {{ max_waits: 2 }}\n",
            repo.read("treefarm.yaml")
        ),
    );
    repo.commit_all("two waits");
    let out = repo.tf(&["split", REQUEST]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("rate-limited in round 1"), "{err}");
    assert!(err.contains("gave up after 2 wait(s)"), "{err}");
}

#[test]
fn run_from_splits_then_runs_the_new_specs() {
    // In split mode the agent drafts two independent specs; in run mode it
    // appends a line to each declared file (committed by treefarm).
    let body = format!(
        "{}{}",
        draft(
            "one",
            "title: One\nfiles: [src/a.rs]\n",
            "Append to a.\n## Verify\nok"
        ),
        draft(
            "two",
            "title: Two\nfiles: [src/b.rs]\n",
            "Append to b.\n## Verify\nok"
        ),
    );
    // The run-mode branch must come before the prelude's scratch writes.
    let repo = split_repo(&body);
    let script = repo.tmp.path().join("split-agent.sh");
    let text = read(&script).replacen(
        "set -eu\n",
        "set -eu\nif [ \"${TREEFARM_MODE:-}\" != split ]; then for f in $(cat \"$TREEFARM_FILES_FILE\"); do echo done >>\"$f\"; done; exit 0; fi\n",
        1,
    );
    std::fs::write(&script, text).expect("rewrite the agent");
    std::fs::write(repo.tmp.path().join("request.md"), REQUEST).expect("request");
    let request = repo.tmp.path().join("request.md");
    let out = repo.tf(&["run", "--from", request.to_str().expect("utf-8")]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("wrote specs/SPEC-011-one.md"), "{err}");
    assert!(err.contains("wrote specs/SPEC-012-two.md"), "{err}");
    assert_eq!(repo.show("roadmap", "src/a.rs"), "pub fn a() {}\ndone");
    assert_eq!(repo.show("roadmap", "src/b.rs"), "pub fn b() {}\ndone");
    // Only the split's specs ran: 010 (src/c.rs) was not selected.
    assert_eq!(repo.show("roadmap", "src/c.rs"), "pub fn c() {}");
}

#[test]
fn split_interrupted_removes_the_throwaway_worktree() {
    interrupted_split("-INT");
}

#[test]
fn split_terminated_removes_the_throwaway_worktree() {
    interrupted_split("-TERM");
}

/// Sends `signal` to a split whose agent is running; the agent's group is
/// stopped and the throwaway worktree removed.
fn interrupted_split(signal: &str) {
    let repo = split_repo(
        "sleep 60 &\necho $! >\"$D/started.tmp\"\nmv \"$D/started.tmp\" \"$D/started\"\nwait\n",
    );
    let child = repo
        .treefarm()
        .args(["split", REQUEST])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn treefarm");
    let splits = repo.root.join(".git/treefarm/splits");
    let started = || {
        std::fs::read_dir(&splits)
            .into_iter()
            .flatten()
            .flatten()
            .any(|split| {
                std::fs::read_dir(split.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.path().join(".treefarm-split/started").is_file())
            })
    };
    crate::common::wait_until_within(30, "the agent started", started);
    let sleeper: u32 = std::fs::read_dir(&splits)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|split| {
            std::fs::read_dir(split.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .find_map(|e| std::fs::read_to_string(e.path().join(".treefarm-split/started")).ok())
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the agent's child pid");
    let kill = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("split: interrupted"),
        "{}",
        stderr(&out)
    );
    assert!(
        crate::common::pid_dead(sleeper),
        "the agent's child {sleeper} survived"
    );
    assert_eq!(worktree_count(&repo), 1, "the throwaway worktree is gone");
    let split = only_split(&repo);
    let left: Vec<String> = std::fs::read_dir(&split)
        .expect("split dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("split-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(split.join("drafts/REQUEST.md").is_file());
}

#[test]
fn split_judges_the_count_empty_bodies_and_creates_that_exist() {
    let body = [
        draft("one", "title: One\nfiles: [src/a.rs]\n", "# Only a heading"),
        draft(
            "two",
            "title: Two\nfiles: [src/b.rs]\ncreates: [src/b.rs]\n",
            "Do it.\n## Verify\nok",
        ),
    ]
    .concat();
    let repo = split_repo(&body);
    let out = repo.tf(&[
        "split",
        REQUEST,
        "--max-specs",
        "1",
        "--rounds",
        "1",
        "--json",
    ]);
    assert_exit(&out, 2);
    let json = stdout_json(&out);
    assert_eq!(json["result"], "invalid");
    let messages: Vec<String> = json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_string())
        .collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(
        has("the split has 2 draft(s); between 1 and 1 are wanted"),
        "{messages:?}"
    );
    assert!(
        has("SPEC-one-work.md: the draft has no instructions"),
        "{messages:?}"
    );
    assert!(
        has("SPEC-two-work.md: `creates` names `src/b.rs`, which already exists"),
        "{messages:?}"
    );
}

#[test]
fn split_warns_about_a_chain_and_a_draft_that_owns_most_paths() {
    let verify = "Do it.\n## Verify\nok";
    let body = [
        draft(
            "big",
            "title: Big\nfiles: [src/a.rs, src/b.rs, src/d.rs, src/e.rs]\n",
            verify,
        ),
        draft(
            "small",
            "title: Small\nfiles: [src/lib.rs]\ndepends_on: [big]\n",
            verify,
        ),
    ]
    .concat();
    let repo = split_repo(&body);
    let out = repo.tf(&["split", REQUEST]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("independent: 2 specs, 2 waves after 1 round"),
        "{err}"
    );
    assert!(
        err.contains("warning: spec 011 declares 4 of the split's 5 paths"),
        "{err}"
    );
    assert!(
        err.contains("warning: the plan is one spec per wave"),
        "{err}"
    );
    assert!(err.contains("plan: wave 1: 011; wave 2: 012"), "{err}");
}

#[test]
fn scripted_split_is_what_the_demo_calls() {
    let repo = split_repo(&draft(
        "one",
        "title: One\nfiles: [src/a.rs]\n",
        "Do it.\n## Verify\nok",
    ));
    let agent = format!("sh '{}'", repo.tmp.path().join("split-agent.sh").display());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code =
        treefarm::cli::split::scripted_split(&repo.root, REQUEST, &agent, true, &mut out, &mut err)
            .expect("the split runs");
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, treefarm::error::ExitCode::Success, "{err}");
    assert!(err.contains("wrote specs/SPEC-011-one.md"), "{err}");
    assert!(repo.root.join("specs/SPEC-011-one.md").is_file());
    assert_eq!(worktree_count(&repo), 1);
}

#[test]
fn split_with_a_preset_hands_the_split_prompt_to_the_cli_on_stdin() {
    // The configured command would fail: `--preset` wins over it.
    let repo = split_repo("exit 99\n");
    let fake = repo.tmp.path().join("fake-claude");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
prompt=$(cat)
printf '%s\n' "$prompt" >"$TMPDIR/prompt.txt"
dir=$(printf '%s\n' "$prompt" | sed -n 's/^Your folder is \(.*\) (round [0-9]*)\. Read there:$/\1/p')
cat >"$dir/SPEC-one-work.md" <<'DRAFT'
---
title: One
files: [src/a.rs]
---
Do it.

## Verify

ok
DRAFT
cp "$TMPDIR/prompt.txt" "$dir/prompt-seen.txt"
"#,
    )
    .expect("fake claude");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&fake)
        .status()
        .expect("chmod");
    let out = repo
        .treefarm()
        .env("TREEFARM_CLAUDE_BIN", &fake)
        .args(["split", REQUEST, "--preset", "claude-code", "--json"])
        .output()
        .expect("treefarm");
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["specs"][0]["id"], "011");
    let kept = PathBuf::from(json["kept"].as_str().expect("kept"));
    let prompt = read(&kept.join("prompt-seen.txt"));
    assert!(prompt.contains("You are splitting one request"), "{prompt}");
    assert!(
        prompt.contains("REQUEST.md") && prompt.contains("FORMAT.md"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("DIAGNOSTICS.md"),
        "round 1 has none: {prompt}"
    );
}

/// A stand-in for preset `kind`'s CLI (`TREEFARM_<KIND>_BIN`): records its
/// arguments and `TREEFARM_SPLIT_SESSION` in the scratch folder
/// (`argv-<round>.txt`), reports a session the way the real CLI does on
/// stdout (Claude Code's `system` init, Codex's `thread.started`, Gemini
/// CLI's `init`; aider writes its chat history file), and drafts one spec:
/// on a path that does not exist in round 1, a tracked one after.
fn fake_cli(repo: &TestRepo, kind: &str) -> PathBuf {
    let fake = repo.tmp.path().join(format!("fake-{kind}"));
    std::fs::write(
        &fake,
        format!(
            r#"#!/bin/sh
kind={kind}
D="$TREEFARM_SPLIT_DIR"
R="$TREEFARM_SPLIT_ROUND"
{{
    printf 'session=%s\n' "$TREEFARM_SPLIT_SESSION"
    for a in "$@"; do printf 'arg=%s\n' "$a"; done
}} >"$D/argv-$R.txt"
cat >/dev/null
sid="" prev=""
for a in "$@"; do
    case $prev in
    --session-id | --resume) sid=$a ;;
    --chat-history-file) printf '#### round %s\n\nreply\n' "$R" >>"$a" ;;
    esac
    prev=$a
done
case $kind in
claude) printf '{{"type":"system","subtype":"init","session_id":"%s","model":"fake"}}\n' "$sid" ;;
codex) printf '{{"type":"thread.started","thread_id":"fake-thread-7"}}\n' ;;
gemini) printf '{{"type":"init","session_id":"%s","model":"fake"}}\n' "$sid" ;;
esac
if [ "$R" = 1 ]; then files=src/ghost.rs; else files=src/a.rs; fi
cat >"$D/SPEC-one-work.md" <<DRAFT
---
title: One
files: [$files]
---
Do it.

## Verify

ok
DRAFT
"#
        ),
    )
    .expect("fake cli");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&fake)
        .status()
        .expect("chmod");
    fake
}

/// Runs a two-round split with preset `preset` whose CLI is `fake_cli`;
/// returns the repository (its split folder lives as long as it does), and
/// the arguments of rounds 1 and 2 and the session treefarm gave each round.
fn preset_rounds(
    preset: &str,
    kind: &str,
    bin_env: &str,
) -> (TestRepo, [(Vec<String>, String); 2]) {
    let repo = split_repo("exit 99\n");
    let fake = fake_cli(&repo, kind);
    let out = repo
        .treefarm()
        .env(bin_env, &fake)
        .args(["split", REQUEST, "--preset", preset, "--json"])
        .output()
        .expect("treefarm");
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["rounds"], 2, "{json}");
    let kept = PathBuf::from(json["kept"].as_str().expect("kept"));
    let rounds = [1, 2].map(|round| {
        let text = read(&kept.join(format!("argv-{round}.txt")));
        let args = text
            .lines()
            .filter_map(|l| l.strip_prefix("arg="))
            .map(str::to_string)
            .collect();
        let session = text
            .lines()
            .find_map(|l| l.strip_prefix("session="))
            .expect("session")
            .to_string();
        (args, session)
    });
    (repo, rounds)
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn split_claude_code_starts_its_session_in_round_one_and_resumes_it() {
    let (_repo, [(one, s1), (two, s2)]) =
        preset_rounds("claude-code", "claude", "TREEFARM_CLAUDE_BIN");
    assert_eq!(s1, s2, "one session for the split");
    assert_eq!(after(&one, "--session-id"), Some(s1.as_str()), "{one:?}");
    assert_eq!(after(&one, "--resume"), None, "{one:?}");
    assert_eq!(after(&two, "--resume"), Some(s1.as_str()), "{two:?}");
    assert_eq!(after(&two, "--session-id"), None, "{two:?}");
    assert!(two.iter().any(|a| a == "-p"), "{two:?}");
}

#[test]
fn split_gemini_starts_its_session_in_round_one_and_resumes_it() {
    let (_repo, [(one, s1), (two, s2)]) = preset_rounds("gemini", "gemini", "TREEFARM_GEMINI_BIN");
    assert_eq!(s1, s2, "one session for the split");
    assert_eq!(after(&one, "--session-id"), Some(s1.as_str()), "{one:?}");
    assert_eq!(after(&one, "--resume"), None, "{one:?}");
    assert_eq!(after(&two, "--resume"), Some(s1.as_str()), "{two:?}");
    assert_eq!(after(&two, "--session-id"), None, "{two:?}");
}

#[test]
fn split_codex_resumes_the_thread_it_reported_in_round_one() {
    let (_repo, [(one, _), (two, _)]) = preset_rounds("codex", "codex", "TREEFARM_CODEX_BIN");
    assert_eq!(one.first().map(String::as_str), Some("exec"), "{one:?}");
    assert!(!one.iter().any(|a| a == "resume"), "{one:?}");
    assert_eq!(one.last().map(String::as_str), Some("-"), "{one:?}");
    // exec's own options first, then `resume <thread> -` (prompt on stdin).
    let n = two.len();
    assert!(n >= 3, "{two:?}");
    assert_eq!(&two[n - 3..], ["resume", "fake-thread-7", "-"], "{two:?}");
    assert_eq!(two.first().map(String::as_str), Some("exec"), "{two:?}");
    assert!(two.iter().any(|a| a == "--json"), "{two:?}");
}

#[test]
fn split_aider_restores_its_chat_history_from_round_two() {
    let (_repo, [(one, _), (two, _)]) = preset_rounds("aider", "aider", "TREEFARM_AIDER_BIN");
    assert!(
        !one.iter().any(|a| a == "--restore-chat-history"),
        "{one:?}"
    );
    assert!(two.iter().any(|a| a == "--restore-chat-history"), "{two:?}");
    let history = after(&two, "--chat-history-file").expect("chat history file");
    assert_eq!(after(&one, "--chat-history-file"), Some(history));
    assert!(
        history.ends_with("/agent/aider-split.chat.history.md"),
        "{history}"
    );
    assert!(read(Path::new(history)).contains("#### round 1"));
}

/// The split folders under `.git/treefarm/splits`, sorted (not the
/// `.<id>.new` a starting split renames into place).
fn split_folders(repo: &TestRepo) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(repo.root.join(".git/treefarm/splits"))
        .into_iter()
        .flatten()
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn prune_removes_finished_splits_and_what_a_killed_one_left_but_not_a_running_one() {
    // A finished split (its agent failed): the folder with its logs stays.
    let repo = split_repo("exit 3\n");
    assert_exit(&repo.tf(&["split", REQUEST]), 1);
    let finished = split_folders(&repo);
    assert_eq!(finished.len(), 1);

    // A running split: its agent waits.
    std::fs::write(
        repo.tmp.path().join("split-agent.sh"),
        format!("{PRELUDE}echo $$ >\"$D/started.tmp\"\nmv \"$D/started.tmp\" \"$D/started\"\nexec sleep 60\n"),
    )
    .expect("agent");
    let mut child = repo
        .treefarm()
        .args(["split", REQUEST])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn treefarm");
    crate::common::wait_until_within(30, "a second split folder", || {
        split_folders(&repo).len() == 2
    });
    let running = split_folders(&repo)
        .into_iter()
        .find(|f| !finished.contains(f))
        .expect("the running split");
    let worktree = |dir: &Path| {
        std::fs::read_dir(dir)
            .expect("split folder")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("split-"))
            })
    };
    crate::common::wait_until_within(30, "the agent started", || {
        worktree(&running).is_some_and(|w| w.join(".treefarm-split/started").is_file())
    });
    let agent = crate::common::read_pid(
        &worktree(&running)
            .expect("worktree")
            .join(".treefarm-split/started"),
        10,
    );

    // --dry-run names the finished one and removes nothing.
    let out = repo.tf(&["prune", "--dry-run"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let name = |dir: &Path| {
        dir.file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    };
    assert!(
        err.contains(&format!("would remove split {}", name(&finished[0]))),
        "{err}"
    );
    assert_eq!(split_folders(&repo).len(), 2);

    let out = repo.tf(&["prune"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("removed split {}", name(&finished[0]))),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "kept    split {}: its `treefarm split` is still running",
            name(&running)
        )),
        "{err}"
    );
    assert_eq!(split_folders(&repo), std::slice::from_ref(&running));
    assert_eq!(
        worktree_count(&repo),
        2,
        "the running split's worktree stays"
    );

    // Killed for good: its throwaway worktree is left behind, and prune
    // removes it with the folder.
    child.kill().expect("kill -9 treefarm");
    child.wait().expect("reap");
    let _ = std::process::Command::new("kill")
        .args(["-9", &agent.to_string()])
        .status();
    crate::common::wait_until_within(10, "the agent gone", || crate::common::pid_dead(agent));
    assert_eq!(worktree_count(&repo), 2);
    let out = repo.tf(&["prune"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "removed split {} and the throwaway worktree it left",
            name(&running)
        )),
        "{err}"
    );
    assert!(split_folders(&repo).is_empty());
    assert_eq!(
        worktree_count(&repo),
        1,
        "{}",
        repo.git(&["worktree", "list"])
    );
    assert!(
        !repo
            .git(&["for-each-ref", "--format=%(refname)"])
            .contains("split-"),
        "a temporary branch is left"
    );
}
