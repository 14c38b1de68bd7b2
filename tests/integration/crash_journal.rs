//! The journal itself under failure: a full disk while writing `state.json`
//! leaves the previous journal intact with a clear error, and a SIGKILL at
//! every single journal write (before and after the rename) is recovered by
//! `resume` with nothing lost.

use crate::common;

use common::{stderr, CrashRepo};

fn one_spec() -> CrashRepo {
    CrashRepo::new(
        &[(
            "001",
            "src/a.txt",
            "write src/a.txt \"001 committed by the agent\"\ncommit \"agent 001: first part\"\nappend src/a.txt \"001 left uncommitted\"",
        )],
        1,
        &[],
    )
}

#[test]
fn disk_full_while_journalling_keeps_the_previous_journal_and_names_it() {
    let crash = one_spec();
    crash.run_crashing_at("after-plant");
    let runs = crash.repo.root.join(".git/treefarm/runs");
    let run = std::fs::read_dir(&runs)
        .expect("runs")
        .flatten()
        .next()
        .expect("run")
        .path();
    let state = run.join("state.json");
    let journal = std::fs::read(&state).expect("state.json");

    let out = crash
        .repo
        .treefarm()
        .arg("resume")
        .env("TREEFARM_INJECT_WRITE_ERROR", "state")
        .output()
        .expect("resume");
    assert!(
        !out.status.success(),
        "a failed journal write must fail the command"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&state.display().to_string()),
        "the error must name the journal: {err}"
    );
    assert!(err.to_lowercase().contains("no space left"), "{err}");
    assert_eq!(
        std::fs::read(&state).expect("state.json"),
        journal,
        "previous journal changed"
    );
    assert!(!run.join("state.json.tmp").exists(), "tmp file left behind");
    assert!(
        !crash.repo.root.join(".git/treefarm/lock").exists(),
        "lock left behind"
    );

    let out = crash.resume();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = crash.repo.git(&["show", "roadmap:src/a.txt"]);
    assert!(text.contains("001 left uncommitted"), "{text}");
    assert_eq!(crash.lost_commits(), Vec::<String>::new());
}

#[test]
fn disk_full_on_the_first_journal_write_of_a_run_is_a_clear_error() {
    let crash = one_spec();
    let out = crash
        .repo
        .treefarm()
        .arg("run")
        .env("TREEFARM_INJECT_WRITE_ERROR", "state")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("state.json"), "{err}");
    assert!(err.to_lowercase().contains("no space left"), "{err}");
    assert!(!crash.repo.root.join(".git/treefarm/lock").exists());
}

/// Every point of a journal write where a SIGKILL can land, in the order a
/// commit passes them: an append to the change log (`journal.mid_append`:
/// half the line written, a torn tail; `journal.appended`: the line synced)
/// and a compaction (`state.tmp_written`: the new snapshot written, not yet
/// renamed; `state.renamed`: renamed, its directory not synced, the old log
/// still beside it; `journal.snapshot_written`: the snapshot durable, no new
/// log yet; `journal.tmp_written` / `journal.renamed`: the new log written,
/// then renamed into place).
pub(crate) const JOURNAL_CRASH_POINTS: [&str; 7] = [
    "journal.mid_append",
    "journal.appended",
    "state.tmp_written",
    "state.renamed",
    "journal.snapshot_written",
    "journal.tmp_written",
    "journal.renamed",
];

/// SIGKILL at the k-th pass of every journal crash point, for every k the
/// run reaches: `resume` (or, when nothing was journalled, a new `run`)
/// finishes with everything merged and no agent commit lost.
#[test]
fn crash_at_every_journal_write_is_recovered() {
    let mut covered = 0;
    for point in JOURNAL_CRASH_POINTS {
        covered += crash_at_every_pass_of(point);
    }
    assert!(covered > 20, "suspiciously few journal writes: {covered}");
}

/// The body of [`crash_at_every_journal_write_is_recovered`] for one point;
/// returns how many passes of it the run made.
fn crash_at_every_pass_of(point: &str) -> usize {
    let mut k = 1;
    loop {
        let crash = one_spec();
        let before = crash.repo.main_snapshot();
        let out = crash
            .repo
            .treefarm()
            .arg("run")
            .env("TREEFARM_CRASH_AT", format!("{point}#{k}"))
            .output()
            .expect("run");
        if out.status.success() {
            // The run passed the point fewer than k times: every pass was
            // covered.
            assert!(k > 1, "{point} never reached");
            eprintln!("{point}: covered {} passes", k - 1);
            return k - 1;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{point}#{k}: {}",
            stderr(&out)
        );
        let resumed = crash.resume();
        assert!(
            resumed.status.success(),
            "{point}#{k}: resume failed:\n{}",
            stderr(&resumed)
        );
        // Nothing to resume: either the kill came before the first journal
        // write (run again), or after the rename of the last one, when the
        // run had finished its work (nothing to do; the checks below hold).
        let state = treefarm::state::StateDir::new(&crash.repo.root.join(".git"));
        let finished = crash.repo.run_ids().last().is_some_and(|id| {
            state
                .open_run(id)
                .and_then(|dir| dir.read_state())
                .is_ok_and(|run| run.state == treefarm::state::RunState::Finished)
        });
        if stderr(&resumed).contains("no unfinished run to resume") && !finished {
            let run = crash.repo.treefarm().arg("run").output().expect("run");
            assert!(
                run.status.success(),
                "{point}#{k}: fresh run failed:\n{}",
                stderr(&run)
            );
        }
        let text = crash.repo.git(&["show", "roadmap:src/a.txt"]);
        assert!(text.contains("001 left uncommitted"), "{point}#{k}: {text}");
        assert_eq!(crash.lost_commits(), Vec::<String>::new(), "{point}#{k}");
        assert_eq!(
            crash.repo.git(&["for-each-ref", "refs/heads/treefarm"]),
            "",
            "{point}#{k}"
        );
        let worktrees = crash.repo.git(&["worktree", "list", "--porcelain"]);
        assert_eq!(
            worktrees.matches("worktree ").count(),
            1,
            "{point}#{k}: {worktrees}"
        );
        assert!(
            !crash.repo.root.join(".git/treefarm/lock").exists(),
            "{point}#{k}"
        );
        assert_eq!(crash.repo.main_snapshot(), before, "{point}#{k}");
        let settled = crash.git_state();
        let again = crash.resume();
        assert!(again.status.success(), "{point}#{k}");
        assert_eq!(
            crash.git_state(),
            settled,
            "{point}#{k}: second resume changed something"
        );
        k += 1;
    }
}
