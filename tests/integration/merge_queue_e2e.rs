//! End-to-end: the merge queue wired into `run` and `merge` (issue 13).
//! Real repositories, the scripted agent, a gate script that logs each
//! invocation (`<commit> pass|fail`), and git as the oracle: batches are
//! gated once, a failing batch is bisected down to its culprit (refused,
//! branch and gate log kept) while the others land in priority order with
//! the merge commits merging them one by one would make, and only commits
//! a gate passed ever become the target's tip.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common;

use common::*;

/// `n` specs `101`, `102`, … each writing its own file; the ones in
/// `culprits` also write `bad.txt`, which the gate refuses.
fn specs(n: usize, culprits: &[usize]) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| {
            let id = 100 + i;
            let mut directives = format!("write f{id}.txt {id}\n");
            if culprits.contains(&i) {
                directives.push_str("write bad.txt broken\n");
            }
            directives.push_str(&format!("commit \"work {id}\""));
            let file = format!("f{id}.txt");
            (
                format!("SPEC-{id}-s.md"),
                spec_md(
                    &format!("Spec {id}"),
                    &[&file],
                    &[],
                    Some(i as i64),
                    &directives,
                ),
            )
        })
        .collect()
}

/// A gate that logs `<commit> pass|fail` to `log` and fails when `failing`
/// (a shell condition run in the gate worktree) holds.
/// The gate command: records `<commit> pass|fail` in `log` (a shell word).
fn gate(log: &str, failing: &str) -> String {
    format!(
        "c=$(git rev-parse HEAD); if {failing}; then echo \"$c fail\" >> {log}; exit 1; fi; echo \"$c pass\" >> {log}"
    )
}

struct Gated {
    repo: TestRepo,
    log: PathBuf,
}

impl Gated {
    fn new(specs: &[(String, String)], failing: &str, merge_config: &str) -> Gated {
        Gated::with_wrapper(specs, failing, merge_config, None)
    }

    /// Like [`Gated::new`], the agent being `wrapper` then the scripted agent.
    fn with_wrapper(
        specs: &[(String, String)],
        failing: &str,
        merge_config: &str,
        wrapper: Option<&str>,
    ) -> Gated {
        let specs: Vec<(&str, String)> = specs
            .iter()
            .map(|(name, body)| (name.as_str(), body.clone()))
            .collect();
        // The gate records its runs in the test's records folder
        // (`<tmp>/records`, found from `$HOME` = `<tmp>/home`), which the
        // fixture names in `isolation.allow_write`: gates are confined too.
        let config = format!(
            "instances: 4\nmerge:\n  gate: '{}'\n{merge_config}",
            gate("\"${HOME%/home}/records/gate-runs\"", failing).replace('\'', "''")
        );
        let files = [("README.md", "readme\n")];
        let repo = match wrapper {
            Some(body) => TestRepo::farm_with_wrapper(&files, &specs, body, &config),
            None => TestRepo::farm(&files, &specs, &config),
        };
        assert_eq!(
            repo.home,
            repo.tmp.path().join("home"),
            "the gate relies on it"
        );
        let log = repo.records().join("gate-runs");
        Gated { repo, log }
    }

    /// Each gate run: (commit, passed).
    fn runs(&self) -> Vec<(String, bool)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (commit, verdict) = l.split_once(' ').expect("gate log line");
                (commit.to_string(), verdict == "pass")
            })
            .collect()
    }

    /// Every commit the target's first-parent line went through since the
    /// start, oldest first.
    fn target_line(&self) -> Vec<String> {
        let mut line: Vec<String> = self
            .repo
            .git(&["rev-list", "--first-parent", "roadmap"])
            .lines()
            .map(str::to_string)
            .collect();
        line.reverse();
        line
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

fn merged_in_order(repo: &TestRepo) -> Vec<String> {
    let mut ids: Vec<String> = repo
        .first_parent_subjects("roadmap")
        .iter()
        .filter_map(|s| {
            s.strip_prefix("Merge treefarm/")
                .map(|rest| rest[..3].to_string())
        })
        .collect();
    ids.reverse();
    ids
}

/// The target tip passed a gate, and every merge commit on its first-parent
/// line is either a passed commit or an ancestor of one that was the tip
/// after a land (nothing untested was ever the tip: each land moves the
/// target to a passed commit).
fn assert_tip_tested(g: &Gated) {
    let passed: BTreeSet<String> = g
        .runs()
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(c, _)| c)
        .collect();
    let tip = g.repo.git(&["rev-parse", "roadmap"]);
    assert!(
        passed.contains(&tip),
        "the tip {tip} never passed the gate: {:?}",
        g.runs()
    );
    // Every value the target ever had (its reflog) but the first is a
    // commit a gate passed (or someone else's commit, made by a test).
    let mut moves: Vec<String> = g
        .repo
        .git(&["reflog", "show", "--format=%H %s", "refs/heads/roadmap"])
        .lines()
        .filter(|l| !l.ends_with(" foreign commit"))
        .map(|l| l[..40].to_string())
        .collect();
    moves.pop();
    assert!(!moves.is_empty(), "no reflog of roadmap");
    for commit in &moves {
        assert!(
            passed.contains(commit),
            "the target was moved to {commit}, which no gate passed: {:?}",
            g.runs()
        );
    }
    let state = g.repo.run_state();
    for inst in state["instances"].as_array().unwrap() {
        if let Some(commit) = inst["merged_commit"].as_str() {
            assert!(
                g.repo.is_ancestor(commit, &tip),
                "{} merged at {commit}, not in the target",
                inst["id"]
            );
        }
    }
}

#[test]
fn sixteen_ready_branches_with_one_culprit_bisected_within_the_bound() {
    for gate_jobs in [1, 2] {
        let all = specs(16, &[7]);
        let g = Gated::new(
            &all,
            "test -e bad.txt",
            &format!("  batch: 16\n  gate_jobs: {gate_jobs}\n"),
        );
        let out = g.repo.tf(&["run", "--no-merge", "--json"]);
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
        assert!(g.runs().is_empty(), "--no-merge ran the gate");

        let out = g.repo.tf(&["merge", "--json"]);
        assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
        let summary = json_summary(&out);
        let others: Vec<String> = (1..=16)
            .filter(|i| *i != 7)
            .map(|i| (100 + i).to_string())
            .collect();
        assert_eq!(
            summary_ids(&summary, "merged"),
            others,
            "gate_jobs {gate_jobs}"
        );
        assert_eq!(summary_ids(&summary, "refused"), ["107"]);
        // Landed in priority order, each branch merged as on its own.
        assert_eq!(merged_in_order(&g.repo), others);
        let runs = g.runs();
        assert!(
            runs.len() <= 1 + 2 * 4,
            "gate_jobs {gate_jobs}: {} gate runs: {runs:?}",
            runs.len()
        );
        assert_tip_tested(&g);
        // The culprit is kept, with its gate log named in its reason.
        assert_eq!(g.repo.treefarm_branches(), ["treefarm/107"]);
        let culprit = g.repo.instance("107");
        let reason = culprit["reason"].as_str().unwrap();
        assert!(reason.contains("107"), "{reason}");
        let events = json_events(&out);
        let refused = events
            .iter()
            .find(|e| e["event"] == "refused")
            .expect("refused event");
        let log = refused["log"]
            .as_str()
            .expect("the refusal names its gate log");
        assert!(reason.contains(log), "{reason}");
        assert!(std::fs::read_to_string(log).is_ok(), "gate log {log} kept");
        let kept = g.repo.runs_dir();
        let kept_log = std::fs::read_dir(&kept)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("instances/107/gate.log"))
            .find(|p| p.exists());
        assert!(kept_log.is_some(), "the culprit's gate log is its gate.log");
        // The queue events tell the story.
        for kind in [
            "batch",
            "gate_started",
            "gate_failed",
            "gate_passed",
            "bisect",
        ] {
            assert!(
                events.iter().any(|e| e["event"] == kind),
                "no `{kind}` event"
            );
        }
        // The warm gate worktrees stay for the next run, outside the user's
        // tree and not on any branch.
        let list = g.repo.git(&["worktree", "list", "--porcelain"]);
        assert!(list.contains("treefarm/gates/0"), "{list}");
        assert!(g.repo.read("README.md") == "readme\n");
    }
}

#[test]
fn a_batch_of_good_branches_costs_one_gate_run() {
    // Default batch (8): eight ready branches, one gate run, one land.
    let g = Gated::new(&specs(8, &[]), "test -e bad.txt", "");
    let out = g.repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let out = g.repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let runs = g.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].1);
    let line = g.target_line();
    // One land: the tip before is the base, the tip after the gated commit.
    assert_eq!(line.last().unwrap(), &runs[0].0);
    let ids: Vec<String> = (101..=108).map(|i| i.to_string()).collect();
    assert_eq!(merged_in_order(&g.repo), ids);
    assert!(g.repo.treefarm_branches().is_empty());
    let events = json_events(&out);
    let batches: Vec<_> = events.iter().filter(|e| e["event"] == "batch").collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["ids"].as_array().unwrap().len(), 8);
    assert_tip_tested(&g);

    // The warm gate worktree stays after the run; `prune` removes it.
    let pool = g.repo.root.join(".git/treefarm/gates/0");
    assert!(pool.join("f108.txt").is_file(), "gate worktree at the tip");
    let out = g.repo.tf(&["prune"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("gate worktree"), "{}", stderr(&out));
    assert!(!pool.exists());
    let list = g.repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
}

#[test]
fn a_semantic_conflict_refuses_the_later_branch() {
    // 102 and 104 pass alone but not together; 101 and 103 are fine.
    let all = specs(4, &[]);
    let g = Gated::new(&all, "test -e f102.txt && test -e f104.txt", "");
    let out = g.repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let out = g.repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["101", "102", "103"]);
    assert_eq!(summary_ids(&summary, "refused"), ["104"]);
    assert_eq!(merged_in_order(&g.repo), ["101", "102", "103"]);
    assert_eq!(g.repo.treefarm_branches(), ["treefarm/104"]);
    assert_tip_tested(&g);
}

#[test]
fn run_feeds_the_queue_as_branches_finish() {
    // `run` (not `merge`): branches reach the queue as their agents finish,
    // in priority order; a culprit among them is refused.
    let g = Gated::new(&specs(6, &[3]), "test -e bad.txt", "  gate_jobs: 2\n");
    let out = g.repo.tf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(
        summary_ids(&summary, "merged"),
        ["101", "102", "104", "105", "106"]
    );
    assert_eq!(summary_ids(&summary, "refused"), ["103"]);
    assert_eq!(
        merged_in_order(&g.repo),
        ["101", "102", "104", "105", "106"]
    );
    assert_tip_tested(&g);
}

#[test]
fn a_target_moved_during_the_batch_gate_is_merged_again_not_clobbered() {
    // The first gate run commits to `roadmap` behind treefarm's back: the
    // land's compare-and-swap fails, the batch is built again on the new
    // tip, gated again, and lands on top of the foreign commit.
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("moved-once");
    let failing = format!(
        "if [ ! -e {marker} ]; then : > {marker}; \
           t=$(git rev-parse refs/heads/roadmap) && \
           blob=$(echo foreign | git hash-object -w --stdin) && \
           tree=$( (git ls-tree \"$t\"; printf \"100644 blob %s\\tforeign.txt\\n\" \"$blob\") | git mktree) && \
           n=$(git commit-tree -p \"$t\" -m \"foreign commit\" \"$tree\") && \
           git update-ref refs/heads/roadmap \"$n\" \"$t\"; fi; false",
        marker = marker.display()
    );
    let g = Gated::new(&specs(3, &[]), &failing, "");
    let out = g.repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let out = g.repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(marker.exists(), "the gate never moved the target");
    let subjects = g.repo.first_parent_subjects("roadmap");
    assert_eq!(subjects.len(), 5, "{subjects:?}");
    assert_eq!(subjects[3], "foreign commit", "clobbered: {subjects:?}");
    assert_eq!(g.repo.show("roadmap", "foreign.txt"), "foreign");
    assert_eq!(merged_in_order(&g.repo), ["101", "102", "103"]);
    let runs = g.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_ne!(runs[0].0, runs[1].0);
    assert_tip_tested(&g);
}

#[test]
fn a_kill_at_each_queue_crash_point_then_resume_loses_no_merge_and_lands_nothing_untested() {
    for point in [
        "batch-built",
        "gate-started",
        "gate-passed",
        "before-land",
        "before-ref-update",
        "gate-started#3",
        "gate-passed#2",
    ] {
        let g = Gated::new(&specs(5, &[3]), "test -e bad.txt", "");
        let out = g
            .repo
            .treefarm()
            .args(["run", "--json"])
            .env("TREEFARM_CRASH_AT", point)
            .output()
            .expect("spawn treefarm run");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "not killed at `{point}`: {}\nstderr:\n{}",
            out.status,
            stderr(&out)
        );
        let out = g.repo.tf(&["resume", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{point}: stderr:\n{}",
            stderr(&out)
        );
        let summary = json_summary(&out);
        let failed_logs: String = summary_ids(&summary, "failed")
            .iter()
            .map(|id| {
                let log = g
                    .repo
                    .runs_dir()
                    .join(summary["run_id"].as_str().unwrap_or_default())
                    .join(format!("logs/{id}.log"));
                format!(
                    "--- {id}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            summary_ids(&summary, "merged"),
            ["101", "102", "104", "105"],
            "{point}: {summary}\n{}\n{failed_logs}",
            stderr(&out)
        );
        assert_eq!(summary_ids(&summary, "refused"), ["103"], "{point}");
        assert_eq!(
            merged_in_order(&g.repo),
            ["101", "102", "104", "105"],
            "{point}"
        );
        assert_eq!(
            g.repo.treefarm_branches(),
            ["treefarm/103"],
            "{point}: {}",
            stderr(&out)
        );
        assert_tip_tested(&g);
    }
}

/// A kill while a gate worktree was being planted can leave its temporary
/// branch's lock (`refs/heads/treefarm/gate-pool-0.lock`) before the
/// worktree's folder or admin entry exists; the resumed queue then could not
/// plant its gate ("failed to lock file"). Recovery removes it by name.
#[test]
fn a_gate_pool_branch_lock_left_by_a_kill_is_removed_on_resume() {
    let g = Gated::new(&specs(5, &[3]), "test -e bad.txt", "");
    let out = g
        .repo
        .treefarm()
        .args(["run", "--json"])
        .env("TREEFARM_CRASH_AT", "gate-started")
        .output()
        .expect("spawn treefarm run");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "not killed: {}",
        stderr(&out)
    );
    let git_dir = g.repo.runs_dir().join("../..");
    let lock = git_dir.join("refs/heads/treefarm/gate-pool-0.lock");
    std::fs::create_dir_all(lock.parent().expect("refs folder")).expect("refs folder");
    std::fs::write(&lock, "").expect("write the stale lock");
    let out = g.repo.tf(&["resume", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(
        summary_ids(&summary, "merged"),
        ["101", "102", "104", "105"],
        "{summary}\n{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("removing stale git lock") && !lock.exists(),
        "{}",
        stderr(&out)
    );
}

/// 101, 102 and 103 all write the undeclared `shared.txt` (so they run at
/// once): 101 merges, 102 and 103 conflict with it. In resolve mode the
/// scripted agent notes its prompt and conflicted files in `seen`, resolves
/// 102's conflict and concludes the merge; for 103 it gives up.
/// What the resolving agent saw is recorded in [`TestRepo::records`].
///
/// The agents are ordered on the run's events (`events.jsonl`), never on
/// time: 101 finishes once 103 started (all three start from the same
/// base), 102 once 101 merged (so 102 conflicts), 103 once 102's resolving
/// agent started (so 103 conflicts too, and is handed back second: the
/// queue takes it after 102).
fn resolve_farm(merge_config: &str) -> Gated {
    // `await EVENT ID N [MORE]`: until `events.jsonl` has N lines of that
    // event for that spec (and MORE, e.g. `"attempt":2`); its keys are
    // sorted, so each is matched on its own.
    let wrapper = "await() { n=0; while :; do\n\
           c=$(grep \"\\\"event\\\":\\\"$1\\\"\" \"$TREEFARM_RUN_DIR/events.jsonl\" | grep \"\\\"id\\\":\\\"$2\\\"\" | grep -c -e \"${4:-event}\")\n\
           [ \"$c\" -ge \"$3\" ] && return 0\n\
           n=$((n+1)); [ $n -gt 6000 ] && { echo \"gave up waiting for $3 x $1 of $2\" >&2; exit 5; }\n\
           sleep 0.02; done; }\n\
         if [ \"$TREEFARM_MODE\" = resolve ]; then\n\
           cp \"$TREEFARM_PROMPT_FILE\" \"$RECORDS\"/prompt-$TREEFARM_SPEC_ID || exit 4\n\
           printf '%s\\n' \"$TREEFARM_CONFLICT_FILES\" > \"$RECORDS\"/conflicts-$TREEFARM_SPEC_ID || exit 4\n\
           if [ \"$TREEFARM_SPEC_ID\" = 102 ]; then\n\
             printf 'resolved\\n' > shared.txt && git add shared.txt && git commit -q --no-edit || exit 3\n\
           fi\n\
           exit 0\n\
         fi\n\
         case $TREEFARM_SPEC_ID in\n\
           101) await started 103 1 ;;\n\
           102) await merged 101 1 ;;\n\
           103) await started 102 1 '\"attempt\":2' ;;\n\
         esac";
    let specs: Vec<(String, String)> = (101..=103)
        .map(|id| {
            (
                format!("SPEC-{id}-s.md"),
                spec_md(
                    &format!("Spec {id}"),
                    &[&format!("f{id}.txt")],
                    &[],
                    Some(id - 100),
                    &format!(
                        "write f{id}.txt {id}\nwrite shared.txt from-{id}\ncommit \"work {id}\""
                    ),
                ),
            )
        })
        .collect();
    Gated::with_wrapper(&specs, "false", merge_config, Some(wrapper))
}

/// After [`resolve_farm`]'s run: 102 resolved by its agent and merged, 103
/// conflicted and kept exactly as its agent left it.
fn assert_resolved_or_kept(g: &Gated, out: &std::process::Output, what: &str) {
    let seen = g.repo.records();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: stderr:\n{}",
        stderr(out)
    );
    let summary = json_summary(out);
    assert_eq!(
        summary_ids(&summary, "merged"),
        ["101", "102"],
        "{what}: {summary}\n{}",
        stderr(out)
    );
    assert_eq!(summary_ids(&summary, "conflicted"), ["103"], "{what}");
    assert_eq!(merged_in_order(&g.repo), ["101", "102"]);
    assert_eq!(g.repo.show("roadmap", "shared.txt"), "resolved");
    assert_eq!(g.repo.show("roadmap", "f102.txt"), "102");
    // The agent's merge commit itself has what the target brought (not
    // only a later commit of what it left untracked).
    let agents_merge = g.repo.git(&[
        "log",
        "-1",
        "--format=%H",
        "--grep=^Merge branch 'roadmap' into treefarm/102",
        "roadmap",
    ]);
    assert_eq!(g.repo.show(&agents_merge, "f101.txt"), "101", "{what}");
    // The agent was asked with the resolution prompt, naming the file.
    for id in ["102", "103"] {
        let prompt = std::fs::read_to_string(seen.join(format!("prompt-{id}")))
            .unwrap_or_else(|e| panic!("{id} was not asked to resolve: {e}"));
        assert!(
            prompt.contains("shared.txt") && prompt.contains("roadmap"),
            "{prompt}"
        );
        let files = std::fs::read_to_string(seen.join(format!("conflicts-{id}"))).unwrap();
        assert_eq!(files, "shared.txt\n");
    }
    // 103 is kept exactly as its agent left it: the merge in progress,
    // the markers in the file, nothing committed for it.
    let wt = g.repo.worktree_dir().join("103");
    let text = std::fs::read_to_string(wt.join("shared.txt")).unwrap();
    assert!(
        text.contains("<<<<<<<") && text.contains(">>>>>>>"),
        "{text}"
    );
    let unmerged = g
        .repo
        .git_at(&wt, &["diff", "--name-only", "--diff-filter=U"]);
    assert_eq!(unmerged, "shared.txt");
    assert_eq!(
        g.repo
            .git_at(&wt, &["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .len(),
        40
    );
    assert_eq!(
        g.repo.git(&["log", "-1", "--format=%s", "treefarm/103"]),
        "work 103",
        "something was committed for the unresolved conflict"
    );
    let inst = g.repo.instance("103");
    assert_eq!(inst["state"], "conflicted");
    assert_eq!(inst["resolve_attempts"], 1);
    assert!(
        inst["reason"].as_str().unwrap().contains("not resolved"),
        "{inst}"
    );
    // One attempt, counted once across a kill.
    assert_eq!(g.repo.instance("102")["resolve_attempts"], 1, "{what}");
    assert_eq!(g.repo.treefarm_branches(), ["treefarm/103"]);
}

#[test]
fn a_conflict_goes_back_to_its_agent_resolved_then_merged_or_kept_with_its_markers() {
    for merge_config in [
        "  on_conflict: agent\n",
        "  on_conflict: agent\n  batch: 1\n",
    ] {
        let g = resolve_farm(merge_config);
        let out = g.repo.tf(&["run", "--json"]);
        assert_resolved_or_kept(&g, &out, merge_config);
        let resolving: BTreeSet<String> = json_events(&out)
            .iter()
            .filter(|e| e["event"] == "resolving")
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(resolving, BTreeSet::from(["102".into(), "103".into()]));
    }
}

#[test]
fn a_kill_while_handing_a_conflict_back_then_resume_resolves_it() {
    // `resolving`: killed as 102's conflict is handed back, before its
    // agent started (103's agent waits for it); `resolving#2`: as 103's is;
    // `resolve-noted`: as 102's conflicted merge was prepared and noted but
    // not yet shared with its private git directory (regression: the
    // resumed hand-back took the private clean index for the conflicted
    // one, and the agent's merge commit dropped what the target brought,
    // 101's `f101.txt`, then committed as a leftover).
    for point in ["resolving", "resolving#2", "resolve-noted"] {
        let g = resolve_farm("  on_conflict: agent\n");
        let out = g
            .repo
            .treefarm()
            .args(["run", "--json"])
            .env("TREEFARM_CRASH_AT", point)
            .output()
            .expect("spawn treefarm run");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "not killed at `{point}`: {}\nstderr:\n{}",
            out.status,
            stderr(&out)
        );
        let out = g.repo.tf(&["resume", "--json"]);
        assert_resolved_or_kept(&g, &out, point);
    }
}

#[test]
fn an_isolated_agent_resolves_its_conflict_through_its_private_git_directory() {
    // Under Landlock the agent's git works in a private git directory: the
    // hand-back is shared with it, and what it concluded comes back.
    let probe = TestRepo::with_files(&[("a.txt", "a\n")]);
    let out = probe.tf(&["run", "--isolation", "landlock", "nothing-matches"]);
    if stderr(&out).contains("isolation: landlock was asked for") {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let g = resolve_farm("  on_conflict: agent\n");
    let out = g.repo.tf(&["run", "--json", "--isolation", "landlock"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["101", "102"], "{summary}");
    assert_eq!(summary_ids(&summary, "conflicted"), ["103"]);
    assert_eq!(g.repo.show("roadmap", "shared.txt"), "resolved");
    let wt = g.repo.worktree_dir().join("103");
    let text = std::fs::read_to_string(wt.join("shared.txt")).unwrap();
    assert!(text.contains("<<<<<<<"), "{text}");
    let unmerged = g
        .repo
        .git_at(&wt, &["diff", "--name-only", "--diff-filter=U"]);
    assert_eq!(unmerged, "shared.txt");
    assert_eq!(
        g.repo.git(&["log", "-1", "--format=%s", "treefarm/103"]),
        "work 103"
    );
}

#[test]
fn a_signal_stops_a_running_gate_and_its_group_then_merge_gates_again() {
    // The first gate run notes its pid and its child's, then waits on the
    // child (a long sleep); later runs pass at once.
    let tmp = tempfile::tempdir().unwrap();
    let (marker, pid, child) = (
        tmp.path().join("slept"),
        tmp.path().join("gate-pid"),
        tmp.path().join("child-pid"),
    );
    let failing = format!(
        "if [ ! -e {marker} ]; then : > {marker}; sleep 60 & echo $! > {child}; echo $$ > {pid}; wait; fi; false",
        marker = marker.display(),
        child = child.display(),
        pid = pid.display()
    );
    let g = Gated::new(&specs(3, &[]), &failing, "");
    let out = g.repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let before = g.repo.git(&["rev-parse", "roadmap"]);
    let mut merge = g
        .repo
        .treefarm()
        .args(["merge", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn treefarm merge");
    let gate = read_pid(&pid, 60);
    let sleeper = read_pid(&child, 60);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(merge.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal treefarm");
    let mut status = None;
    wait_until_within(30, "treefarm merge to stop", || {
        status = merge.try_wait().expect("wait");
        status.is_some()
    });
    assert!(!status.unwrap().success());
    assert!(pid_dead(gate), "the gate {gate} survived the stop");
    assert!(pid_dead(sleeper), "the gate's child {sleeper} survived");
    assert_eq!(g.repo.git(&["rev-parse", "roadmap"]), before);
    assert!(g.runs().is_empty(), "the stopped gate has no result");

    // `merge` again: the prefix that was under test is gated again.
    let out = g.repo.tf(&["merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(merged_in_order(&g.repo), ["101", "102", "103"]);
    assert_eq!(g.runs().len(), 1, "{:?}", g.runs());
    assert_tip_tested(&g);
}

#[test]
fn a_batch_lands_the_history_merging_one_by_one_makes() {
    // The same eight branches merged by the queue and with `merge.batch: 1`:
    // the same first-parent line of merge commits, messages and changes
    // alike.
    let line = |merge_config: &str| -> Vec<String> {
        let g = Gated::new(&specs(8, &[]), "false", merge_config);
        let out = g.repo.tf(&["run", "--no-merge", "--json"]);
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
        let out = g.repo.tf(&["merge", "--json"]);
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
        // Each merge commit's message and its change to the line (the
        // bases differ in treefarm.yaml only).
        g.repo
            .git(&[
                "log",
                "--first-parent",
                "--diff-merges=first-parent",
                "-p",
                "--format=%B",
                "main..roadmap",
            ])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let batched = line("");
    let one_by_one = line("  batch: 1\n");
    assert_eq!(batched.len(), one_by_one.len());
    assert_eq!(
        batched
            .iter()
            .filter(|l| l.starts_with("Merge treefarm/"))
            .count(),
        8
    );
    // The run ids in the messages differ; everything else is equal.
    let strip = |l: &Vec<String>| -> Vec<String> {
        l.iter()
            .filter(|s| !s.starts_with("treefarm run "))
            .cloned()
            .collect()
    };
    assert_eq!(strip(&batched), strip(&one_by_one));
}

#[test]
fn merge_with_a_gate_after_a_run_without_one_gates_the_batch() {
    // `run --no-merge` had no gate; `merge --gate` must gate what it lands.
    let all = specs(3, &[2]);
    let specs: Vec<(&str, String)> = all.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let repo = TestRepo::farm(&[("README.md", "readme\n")], &specs, "");
    // In the records folder the fixture names in `isolation.allow_write`.
    let log = repo.records().join("gate-runs");
    let out = repo.tf(&["run", "--no-merge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let gate = gate(&format!("'{}'", log.display()), "test -e bad.txt");
    let out = repo.tf(&["merge", "--json", "--gate", &gate]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "merged"), ["101", "103"]);
    assert_eq!(summary_ids(&summary, "refused"), ["102"]);
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() >= 2);
}
