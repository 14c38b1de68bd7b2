//! Gates run the code of the branches they test, so they are confined like
//! the agents: an agent that rewrites the gate's test script to write
//! outside cannot get the gate to do the write for it under `landlock` (the
//! branch is refused, the denial named in its reason, the file never
//! created), while the same run with `isolation: off` shows the escape
//! happen (so the oracle can see one). And a real build gate — `cargo test
//! --offline` on a crate with a `build.rs` — passes under isolation with the
//! caches it needs (`target/` in the gate worktree).

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::{json_summary, landlock_available, spec_md, stderr, summary_ids, TestRepo};

/// A farm whose gate is `sh ./check.sh` (passing as committed) and whose
/// one agent rewrites `check.sh` to write [`outside_path`] — beside the
/// repository, under no policy (the script finds it from `$HOME`, the test's
/// `<tmp>/home`).
fn escaping_farm() -> TestRepo {
    let agent = spec_md(
        "Rewrite the check",
        &["check.sh"],
        &[],
        Some(10),
        "write check.sh \"echo escaped > ${HOME%/home}/gate-escape.txt\"\ncommit \"check\"",
    );
    let repo = TestRepo::farm(
        &[("check.sh", "exit 0\n")],
        &[("SPEC-010-check.md", agent)],
        "merge:\n  gate: \"sh ./check.sh\"\n",
    );
    assert_eq!(
        repo.home,
        repo.tmp.path().join("home"),
        "the script relies on it"
    );
    repo
}

fn outside_path(repo: &TestRepo) -> PathBuf {
    repo.tmp.path().join("gate-escape.txt")
}

#[test]
fn a_gate_running_a_script_the_agent_rewrote_cannot_write_outside_under_landlock() {
    if !landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let repo = escaping_farm();
    let outside = outside_path(&repo);
    let roadmap_before = repo.git(&["rev-parse", "HEAD"]);
    let out = repo.tf(&["run", "--json", "--isolation", "landlock"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    assert!(
        !outside.exists(),
        "the gate wrote {} for the agent",
        outside.display()
    );
    let summary = json_summary(&out);
    assert_eq!(summary_ids(&summary, "refused"), ["010"]);
    let reason = repo.instance("010")["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&format!(
            "write to {} denied by isolation",
            outside.display()
        )),
        "{reason}"
    );
    // git: nothing merged; the branch is kept with the rewritten script.
    assert_eq!(repo.git(&["rev-parse", "roadmap"]), roadmap_before);
    assert!(repo
        .show("treefarm/010", "check.sh")
        .contains("echo escaped"));
}

#[test]
fn without_isolation_the_oracle_sees_the_gate_escape() {
    // `off` on purpose: the escape must be visible to the oracle, or the
    // landlock test above could pass without confining anything.
    let repo = escaping_farm();
    let outside = outside_path(&repo);
    let out = repo.tf(&["run", "--json", "--isolation", "off"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap_or_default(),
        "escaped\n",
        "the oracle missed the gate's write to {}",
        outside.display()
    );
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010"]);
}

/// A spec whose agent adds `NOTES.md` ("a note"): work for a gate to pass.
fn note_spec() -> String {
    spec_md(
        "Add a note",
        &["NOTES.md"],
        &[],
        Some(10),
        "write NOTES.md \"a note\"\ncommit \"note\"",
    )
}

/// The toolchain's own `cargo` (not the rustup proxy, which needs the
/// user's `$HOME`), or `None` without one.
fn real_cargo() -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["which", "cargo"])
        .output()
        .ok()?;
    if out.status.success() {
        return Some(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ));
    }
    let out = Command::new("sh")
        .args(["-c", "command -v cargo"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

#[test]
fn a_cargo_test_gate_with_a_build_script_passes_under_isolation() {
    if !landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let Some(cargo) = real_cargo() else {
        eprintln!("skipped: no cargo");
        return;
    };
    let bin = cargo
        .parent()
        .expect("cargo's folder")
        .display()
        .to_string();
    let agent = note_spec();
    let repo = TestRepo::farm(
        &[
            (".gitignore", "target/\n"),
            (
                "Cargo.toml",
                "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
            ),
            (
                "build.rs",
                "fn main() {\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    std::fs::write(std::path::Path::new(&out).join(\"answer.rs\"), \"42\").unwrap();\n}\n",
            ),
            (
                "src/lib.rs",
                "pub fn answer() -> u32 {\n    include!(concat!(env!(\"OUT_DIR\"), \"/answer.rs\"))\n}\n\n#[test]\nfn it_is_42() {\n    assert_eq!(answer(), 42);\n}\n",
            ),
        ],
        &[("SPEC-010-note.md", agent)],
        &format!(
            "merge:\n  gate: \"PATH={bin}:$PATH cargo test --offline\"\n  gate_timeout: 10m\n"
        ),
    );
    let out = repo.tf(&["run", "--json", "--isolation", "landlock"]);
    let run_dir = repo.only_run();
    let logs: Vec<String> = std::fs::read_dir(run_dir.join("logs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("gate-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}\ngate logs:\n{}",
        stderr(&out),
        logs.join("\n---\n")
    );
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010"]);
    assert!(
        logs.iter().any(|l| l.contains("test it_is_42 ... ok")),
        "{logs:?}"
    );
    // The build output stayed in the gate worktree, for the next gate.
    assert!(repo
        .root
        .join(".git/treefarm/gates/0/target/debug")
        .is_dir());
    assert_eq!(repo.show("roadmap", "NOTES.md"), "a note");
}

/// A gate that binds its own port (`TREEFARM_PORT`) and then a port of slot
/// 0's block: the first is granted, the second denied under `landlock`
/// (the gate passes only when it is), and granted under `off` (the oracle).
fn port_farm(python: &str, port_base: u32) -> TestRepo {
    let agent = note_spec();
    let bind = |port: &str| {
        format!("{python} -c \"import socket; socket.socket().bind(('127.0.0.1', {port}))\"")
    };
    let gate = format!(
        "{} && ! {}",
        bind("int(__import__('os').environ['TREEFARM_PORT'])"),
        bind(&port_base.to_string())
    );
    TestRepo::farm(
        &[("README.md", "readme\n")],
        &[("SPEC-010-note.md", agent)],
        &format!(
            "port_base: {port_base}\nport_stride: 10\nmerge:\n  gate: '{}'\n",
            gate.replace('\'', "''")
        ),
    )
}

#[test]
fn a_gate_may_bind_only_its_own_port_block_under_landlock() {
    if !landlock_available() {
        eprintln!("skipped: the kernel has no Landlock");
        return;
    }
    let Some(python) = crate::isolation_escape::python() else {
        eprintln!("skipped: no python3");
        return;
    };
    let repo = port_farm(&python, 37_310);
    let out = repo.tf(&["run", "--json", "--isolation", "landlock"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "merged"), ["010"]);
    // `off` on purpose: the same gate sees the bind succeed, so the test
    // above cannot pass without the port rule.
    let repo = port_farm(&python, 37_410);
    let out = repo.tf(&["run", "--json", "--isolation", "off"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    assert_eq!(summary_ids(&json_summary(&out), "refused"), ["010"]);
}
