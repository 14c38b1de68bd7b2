//! `treefarm plan` through the real binary: waves from priorities,
//! dependencies, overlaps and `--instances`, the `--json` shape of DESIGN.md,
//! and that it creates nothing.

use crate::common;

use std::path::PathBuf;

use common::{assert_exit, stderr, stdout, stdout_json, TestRepo};
use serde_json::{json, Value};

/// DESIGN.md's example: 022 overlaps 020, 021 and 023 are independent.
fn design_example() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("src/http/retry.rs", "// retry\n"),
        ("README.md", "readme\n"),
    ]);
    repo.write_spec("020", "retry", "files: [src/http/retry.rs]\n", "");
    repo.write_spec("021", "docs", "files: [docs/guide.md]\n", "");
    repo.write_spec("022", "http", "files: [\"src/http/**\"]\n", "");
    repo.write_spec("023", "readme", "files: [README.md]\n", "");
    repo.commit_all("specs");
    repo
}

fn waves(json: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(json["waves"].clone()).expect("waves is a list of lists of ids")
}

fn plan_json(repo: &TestRepo, args: &[&str]) -> Value {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let out = repo.tf(&all);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "", "--json writes nothing human to stderr");
    stdout_json(&out)
}

/// Where plan says worktrees go: `../<repo>.treefarm/<id>`, absolute.
fn expected_worktree(repo: &TestRepo, id: &str) -> String {
    let tmp: PathBuf = repo.tmp.path().canonicalize().expect("canonical temp dir");
    tmp.join("repo.treefarm").join(id).display().to_string()
}

#[test]
fn plan_json_has_the_design_shape_and_creates_nothing() {
    let repo = design_example();
    let before = repo.footprint();
    let json = plan_json(&repo, &[]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let spec = |id: &str| {
        json!({
            "id": id,
            "branch": format!("treefarm/{id}"),
            "worktree": expected_worktree(&repo, id),
            "depends_on": [],
        })
    };
    assert_eq!(json["target"], "roadmap");
    assert_eq!(json["base"], head.as_str());
    assert_eq!(json["instances"], 3);
    assert_eq!(
        waves(&json),
        [vec!["020", "021", "023"], vec!["022"]],
        "{json:#}"
    );
    let specs = json["specs"].as_array().expect("specs array");
    assert_eq!(specs.len(), 4);
    for (s, id) in specs.iter().zip(["020", "021", "022", "023"]) {
        for key in ["id", "branch", "worktree", "depends_on"] {
            assert_eq!(s[key], spec(id)[key], "{key} of {id}: {json:#}");
        }
    }
    assert_eq!(repo.footprint(), before, "plan created something");
    assert!(!repo.worktree_dir().exists());
}

#[test]
fn human_plan_goes_to_stderr() {
    let repo = design_example();
    let before = repo.footprint();
    let out = repo.tf(&["plan"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert!(
        text.starts_with(&format!(
            "plan: 4 specs in 2 waves on 3 instances, into `roadmap` from {}\n",
            &head[..12]
        )),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("treefarm/022"))
        .expect("a row for 022");
    assert!(row.starts_with("2 "), "022 is in wave 2: {row}");
    assert!(row.ends_with(&expected_worktree(&repo, "022")), "{row}");
    assert_eq!(repo.footprint(), before, "plan created something");
}

#[test]
fn instances_bound_the_wave_size_and_priority_orders_it() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    // Priority, not id or file order, decides who starts first.
    repo.write_spec("001", "a", "files: [a.rs]\npriority: 30\n", "");
    repo.write_spec("002", "b", "files: [b.rs]\npriority: 10\n", "");
    repo.write_spec("003", "c", "files: [c.rs]\npriority: 20\n", "");
    repo.commit_all("specs");
    let json = plan_json(&repo, &["--instances", "3"]);
    assert_eq!(waves(&json), [vec!["002", "003", "001"]]);
    let json = plan_json(&repo, &["--instances", "2"]);
    assert_eq!(json["instances"], 2);
    assert_eq!(waves(&json), [vec!["002", "003"], vec!["001"]]);
    let json = plan_json(&repo, &["--instances", "1"]);
    assert_eq!(waves(&json), [vec!["002"], vec!["003"], vec!["001"]]);
    // The env sets the default, the flag wins over it.
    let out = repo
        .treefarm()
        .args(["plan", "--json"])
        .env("TREEFARM_INSTANCES", "1")
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    assert_eq!(waves(&stdout_json(&out)).len(), 3);
    let out = repo
        .treefarm()
        .args(["plan", "--json", "--instances", "3"])
        .env("TREEFARM_INSTANCES", "1")
        .output()
        .expect("spawn");
    assert_eq!(waves(&stdout_json(&out)).len(), 1);
    // Zero slots is bad input.
    let out = repo.tf(&["plan", "--instances", "0"]);
    assert_exit(&out, 2);
}

#[test]
fn dependencies_start_after_what_they_depend_on() {
    let repo = TestRepo::with_files(&[("README.md", "readme\n")]);
    repo.write_spec("001", "a", "files: [a.rs]\n", "");
    repo.write_spec("002", "b", "files: [b.rs]\ndepends_on: [SPEC-001]\n", "");
    repo.write_spec("003", "c", "files: [c.rs]\n", "");
    repo.write_spec(
        "004",
        "d",
        "files: [d.rs]\ndepends_on: [\"2\", \"003\"]\n",
        "",
    );
    repo.commit_all("specs");
    let json = plan_json(&repo, &[]);
    assert_eq!(
        waves(&json),
        [vec!["001", "003"], vec!["002"], vec!["004"]],
        "{json:#}"
    );
    let deps: Vec<&Value> = json["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| &s["depends_on"])
        .collect();
    assert_eq!(
        deps,
        [
            &json!([]),
            &json!(["001"]),
            &json!([]),
            &json!(["002", "003"])
        ]
    );
}

#[test]
fn overlapping_specs_go_to_later_waves_in_priority_order() {
    let repo = TestRepo::with_files(&[("src/lib.rs", "// lib\n")]);
    repo.write_spec("001", "a", "files: [src/lib.rs]\npriority: 3\n", "");
    repo.write_spec("002", "b", "files: [\"src/*.rs\"]\npriority: 1\n", "");
    repo.write_spec("003", "c", "files: [src/lib.rs]\npriority: 2\n", "");
    repo.write_spec("004", "d", "files: [docs/x.md]\npriority: 4\n", "");
    repo.commit_all("specs");
    let json = plan_json(&repo, &[]);
    assert_eq!(
        waves(&json),
        [vec!["002", "004"], vec!["003"], vec!["001"]],
        "{json:#}"
    );
}

#[test]
fn base_is_the_target_tip_when_the_target_exists() {
    let repo = design_example();
    repo.git(&["branch", "roadmap"]);
    repo.write("more.txt", "more\n");
    repo.commit_all("main moves on");
    let roadmap = repo.git(&["rev-parse", "roadmap"]);
    assert_ne!(roadmap, repo.git(&["rev-parse", "HEAD"]));
    let json = plan_json(&repo, &[]);
    assert_eq!(json["base"], roadmap.as_str());

    // Another target that does not exist yet starts from `base`.
    let first = repo.git(&["rev-parse", "HEAD~1"]);
    let out = repo
        .treefarm()
        .args(["plan", "--json"])
        .env("TREEFARM_TARGET", "integration")
        .env("TREEFARM_BASE", "HEAD~1")
        .output()
        .expect("spawn");
    assert_exit(&out, 0);
    let json = stdout_json(&out);
    assert_eq!(json["target"], "integration");
    assert_eq!(json["base"], first.as_str());
    assert!(!repo.branches().contains(&"integration".to_string()));
}

#[test]
fn plan_selects_ids_and_honours_worktree_dir() {
    let repo = design_example();
    repo.write("treefarm.yaml", "worktree_dir: ../elsewhere/trees\n");
    let json = plan_json(&repo, &["SPEC-022", "20"]);
    let ids: Vec<&str> = json["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["020", "022"]);
    assert_eq!(waves(&json), [vec!["020"], vec!["022"]]);
    let tmp = repo.tmp.path().canonicalize().expect("canonical");
    assert_eq!(
        json["specs"][0]["worktree"],
        tmp.join("elsewhere/trees/020").display().to_string()
    );

    // Inside the working tree is refused.
    repo.write("treefarm.yaml", "worktree_dir: trees\n");
    let before = repo.footprint();
    let out = repo.tf(&["plan"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("inside the repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.footprint(), before);
}
