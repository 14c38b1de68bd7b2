//! Big repositories (issue 17): sparse worktrees that the git CLI agrees with,
//! the disk budget, warm per-slot caches, `.worktreeinclude` and probed
//! ports. Real `git` is the oracle.

use crate::common;

use std::path::{Path, PathBuf};

use common::{stderr, TestRepo};

/// A repository with three directories of files, a root build file, and two
/// specs declaring one file each (in `a/` and `b/sub/`).
fn tree_repo(config: &str) -> TestRepo {
    let mut files: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), "[workspace]\n".into()),
        ("README.md".into(), "hello\n".into()),
    ];
    for d in ["a", "b", "c"] {
        for i in 0..4 {
            files.push((format!("{d}/f{i}.txt"), format!("{d} {i}\n")));
            files.push((format!("{d}/sub/s{i}.txt"), format!("{d} sub {i}\n")));
        }
    }
    files.push(("tools/run.sh".into(), "#!/bin/sh\necho run\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = TestRepo::with_files(&refs);
    use std::os::unix::fs::PermissionsExt;
    let script = repo.root.join("tools/run.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.write(
        "specs/SPEC-001-one.md",
        "---\ntitle: one\nfiles:\n  - a/f1.txt\n  - a/new.txt\n---\nChange a.\n",
    );
    repo.write(
        "specs/SPEC-002-two.md",
        "---\ntitle: two\nfiles:\n  - b/sub/s1.txt\n---\nChange b/sub.\n",
    );
    // What the agents record goes outside the worktrees: named in
    // `isolation.allow_write`, as a user would.
    repo.write(
        "treefarm.yaml",
        &format!("{config}{}", common::allow_write_yaml(&[&repo.records()])),
    );
    repo.commit_all("specs");
    assert!(repo
        .git(&["ls-files", "-s", "tools/run.sh"])
        .starts_with("100755"));
    repo
}

/// The agent: records what git says, edits its declared file, commits with
/// `git add -A`, and leaves one more change for treefarm to commit.
const AGENT: &str = r#"out="$RECORDS/oracle-$TREEFARM_SPEC_ID"; mkdir -p "$out"
git status --porcelain > "$out/status-before"
git ls-files -t > "$out/ls-files"
case "$TREEFARM_SPEC_ID" in
  001) echo changed >> a/f1.txt; echo new > a/new.txt ;;
  002) echo changed >> b/sub/s1.txt ;;
esac
git add -A && git commit -q -m "agent $TREEFARM_SPEC_ID" || exit 3
git show --stat --format= HEAD > "$out/agent-commit"
case "$TREEFARM_SPEC_ID" in
  001) echo again >> a/f1.txt ;;
esac
"#;

fn oracle(repo: &TestRepo, id: &str, file: &str) -> String {
    let path = repo.records().join(format!("oracle-{id}")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write_agent(repo: &TestRepo) -> String {
    let path = repo.tmp.path().join("agent.sh");
    let script = format!("RECORDS='{}'\n{AGENT}", repo.records().display());
    std::fs::write(&path, script).expect("write agent");
    format!("sh {}", path.display())
}

#[test]
fn sparse_auto_worktrees_are_real_sparse_checkouts_and_merge_like_full_ones() {
    let sparse = tree_repo("worktree:\n  sparse: auto\n  sparse_include: [tools]\n");
    let agent = write_agent(&sparse);
    // The gate runs in a whole checkout of the merge, sparse worktrees or not.
    let out = sparse.tf(&[
        "run",
        "--keep",
        "--gate",
        "test -f c/sub/s3.txt",
        "--agent",
        &agent,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let wt1 = sparse.worktree_dir().join("001");
    let wt2 = sparse.worktree_dir().join("002");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wt1.join("tools/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit is checked out");
    // Materialised: the declared directories, root files, sparse_include.
    assert!(wt1.join("a/f1.txt").is_file() && wt1.join("a/sub/s0.txt").is_file());
    assert!(wt1.join("Cargo.toml").is_file() && wt1.join("tools/run.sh").is_file());
    assert!(!wt1.join("b").exists() && !wt1.join("c").exists());
    // Cone mode: the files directly in `b/` too, as git does.
    assert!(wt2.join("b/sub/s0.txt").is_file() && wt2.join("b/f0.txt").is_file());
    assert!(!wt2.join("c").exists() && !wt2.join("a").exists());

    // Git agrees: clean before the agent, skip-worktree bits, its commit
    // by `git add -A` deletes nothing, and clean after treefarm committed.
    for id in ["001", "002"] {
        assert_eq!(oracle(&sparse, id, "status-before"), "", "status in {id}");
        let ls = oracle(&sparse, id, "ls-files");
        assert!(ls.lines().any(|l| l == "S c/f0.txt"), "{id}: {ls}");
        assert!(ls.lines().any(|l| l == "H Cargo.toml"), "{id}: {ls}");
        assert!(ls.lines().any(|l| l == "H tools/run.sh"), "{id}: {ls}");
        let commit = oracle(&sparse, id, "agent-commit");
        assert!(!commit.contains("deletion"), "{id} agent commit: {commit}");
    }
    assert!(oracle(&sparse, "001", "ls-files").contains("H a/f1.txt"));
    for wt in [&wt1, &wt2] {
        assert_eq!(sparse.git_at(wt, &["status", "--porcelain"]), "");
        assert_eq!(
            sparse.git_at(wt, &["config", "--worktree", "core.sparseCheckout"]),
            "true"
        );
        assert_eq!(
            sparse.git_at(wt, &["config", "--worktree", "core.sparseCheckoutCone"]),
            "true"
        );
    }
    assert_eq!(
        sparse.git_at(&wt1, &["sparse-checkout", "list"]),
        "a\ntools"
    );
    let listed = sparse.git(&["worktree", "list", "--porcelain"]);
    for wt in [&wt1, &wt2] {
        let line = format!("worktree {}", std::fs::canonicalize(wt).unwrap().display());
        assert!(listed.lines().any(|l| l == line), "{listed}");
    }
    assert!(!listed.contains("prunable"), "{listed}");
    // Nothing but the extension changed in the user's config.
    assert_eq!(
        sparse.git(&["config", "--local", "extensions.worktreeConfig"]),
        "true"
    );
    let shared = sparse
        .git_cmd(&["config", "--local", "core.sparseCheckout"])
        .output()
        .unwrap();
    assert!(
        !shared.status.success(),
        "sparse settings stay per worktree"
    );
    let merged = sparse.git(&["diff", "--stat", "main", "roadmap"]);
    assert!(!merged.contains('-'), "a merge deleted files: {merged}");

    // `git sparse-checkout add` widens the tree.
    sparse.git_at(&wt1, &["sparse-checkout", "add", "c"]);
    assert!(wt1.join("c/sub/s3.txt").is_file());
    assert_eq!(sparse.git_at(&wt1, &["status", "--porcelain"]), "");

    // The same run with whole checkouts merges the same changes (the
    // repositories differ only in treefarm.yaml).
    let full = tree_repo("worktree:\n  sparse: off\n");
    let agent = write_agent(&full);
    let out = full.tf(&["run", "--agent", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let diff = |r: &TestRepo| r.git(&["diff", "main", "roadmap"]);
    assert_eq!(diff(&sparse), diff(&full));
    assert!(diff(&full).contains("a/new.txt"), "{}", diff(&full));
    assert!(!full.root.join(".git/config.worktree").exists());
    assert!(full
        .git_cmd(&["config", "--local", "extensions.worktreeConfig"])
        .output()
        .map(|o| o.stdout.is_empty())
        .unwrap_or(false));

    // Prune works unchanged on sparse worktrees and reports what it freed.
    let out = sparse.tf(&["prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!wt1.exists() && !wt2.exists(), "{}", stderr(&out));
    assert!(stderr(&out).contains("freed"), "{}", stderr(&out));
}

#[test]
fn a_run_that_does_not_fit_the_disk_is_refused_before_anything_is_created() {
    let repo = tree_repo("");
    // A 1 MiB blob per worktree; a 1 MiB tmpfs cannot hold two of them.
    let big: String = "0123456789abcdef\n".repeat(64 * 1024);
    repo.write("a/big.bin", &big);
    repo.commit_all("big file");
    let mnt = repo.tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot mount a tmpfs here ({mounted:?})");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let wt_dir = mnt.join("wt");
    repo.write(
        "treefarm.yaml",
        &format!("worktree_dir: {}\n", wt_dir.display()),
    );
    repo.commit_all("config");
    let before = repo.git(&["for-each-ref"]);
    let out = repo.tf(&["run", "--agent", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not enough disk space"), "{err}");
    assert!(err.contains("needed") && err.contains("available"), "{err}");
    assert!(err.contains("--instances") && err.contains("sparse") && err.contains("worktree_dir"));
    assert!(!wt_dir.exists(), "nothing may be created");
    assert_eq!(repo.git(&["for-each-ref"]), before);

    // Sparse worktrees without the big directory fit.
    repo.write(
        "treefarm.yaml",
        &format!(
            "worktree_dir: {}\nworktree:\n  sparse: auto\nagent:\n  allow_unchanged: true\n",
            wt_dir.display()
        ),
    );
    repo.write(
        "specs/SPEC-001-one.md",
        "---\ntitle: one\nfiles:\n  - c/f1.txt\n---\nChange c.\n",
    );
    repo.commit_all("sparse");
    let out = repo.tf(&["run", "--no-merge", "--agent", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!wt_dir.join("001/a").exists());
    let status = repo.tf(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("disk: worktrees use "))
        .unwrap_or_else(|| panic!("status shows the worktrees' disk use: {text}"));
    assert!(!line.ends_with(" 0 B"), "{line}");
    let json = repo.tf(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(value["disk_bytes"].as_u64().unwrap() > 0, "{value}");
}

#[test]
fn slot_caches_outlive_instances_and_worktreeinclude_files_are_copied() {
    let repo = tree_repo(
        "instances: 1\nslot_env:\n  WARM: \"{cache}/slot-{slot}\"\n  REPO_ROOT: \"{repo}\"\n",
    );
    repo.write(".gitignore", ".env\nbuild/\n");
    repo.write(".worktreeinclude", ".env\n");
    repo.commit_all("include");
    repo.write(".env", "SECRET=1\n");
    repo.write("build/out.o", "not copied\n");
    let cache_home = repo.tmp.path().join("cache");
    let log = repo.records().join("agents.log");
    let agent = format!(
        r#"if [ -f "$WARM/marker" ]; then echo "$TREEFARM_SPEC_ID warm $(cat "$WARM/marker")"; else echo "$TREEFARM_SPEC_ID cold"; fi >> {log}
mkdir -p "$WARM" && echo "$TREEFARM_SPEC_ID" > "$WARM/marker"
echo "$TREEFARM_SPEC_ID repo $REPO_ROOT" >> {log}
test -f .env && echo "$TREEFARM_SPEC_ID env $(cat .env)" >> {log}
test -e build/out.o && echo "$TREEFARM_SPEC_ID build" >> {log}
git status --porcelain >> {log}
echo x >> "$(echo "$TREEFARM_FILES" | head -1)""#,
        log = log.display()
    );
    let out = repo
        .treefarm()
        .env("XDG_CACHE_HOME", &cache_home)
        .args(["run", "--no-merge", "--agent", &agent])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    let root = std::fs::canonicalize(&repo.root).unwrap();
    assert!(text.contains("001 cold"), "{text}");
    assert!(
        text.contains("002 warm 001"),
        "the next instance in the slot reuses the cache: {text}"
    );
    assert!(
        text.contains(&format!("001 repo {}", root.display())),
        "{text}"
    );
    assert!(
        text.contains("001 env SECRET=1") && text.contains("002 env SECRET=1"),
        "{text}"
    );
    assert!(!text.contains("build"), "{text}");
    assert!(
        !text.contains("??"),
        "copied files are ignored, status clean: {text}"
    );
    // The cache lives under the user's cache dir, outside every worktree.
    let under: Vec<PathBuf> = std::fs::read_dir(cache_home.join("treefarm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(under.len(), 1, "{under:?}");
    assert!(under[0].join("slot-0/marker").is_file());
    // The copied `.env` is not part of the agent's work.
    let changed = repo.git(&["diff", "--name-only", "main", "treefarm/001"]);
    assert!(!changed.contains(".env"), "{changed}");
}

#[test]
fn a_port_held_by_another_process_moves_the_block() {
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = held.local_addr().unwrap().port();
    // Slot 0's block is `port-1 .. port+1`: the held port is inside it.
    let repo = tree_repo(&format!(
        "instances: 1\nport_base: {}\nport_stride: 3\n",
        port - 1
    ));
    let seen = repo.records().join("port");
    let agent = format!(
        "echo $TREEFARM_PORT >> {}; echo x >> \"$(echo \"$TREEFARM_FILES\" | head -1)\"",
        seen.display()
    );
    let out = repo.tf(&["run", "--no-merge", "--agent", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ports: Vec<u32> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 2);
    for p in &ports {
        let block = *p..*p + 3;
        assert!(!block.contains(&u32::from(port)), "{p} still holds {port}");
        assert!(
            *p >= u32::from(port) - 1 + 3,
            "a spare block above the slots: {p}"
        );
    }
    let logs = find_logs(&repo.root.join(".git/treefarm/runs"));
    assert!(
        logs.iter()
            .any(|l| l.contains("is in use") && l.contains(&port.to_string())),
        "the move is said in the instance log: {logs:?}"
    );
    drop(held);
}

fn find_logs(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_logs(&p));
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    out
}

#[test]
fn a_sparse_glob_list_is_a_non_cone_sparse_checkout_git_agrees_with() {
    let repo = tree_repo(
        "worktree:\n  sparse: [\"c/sub/*.txt\", \"tools/\"]\nagent:\n  allow_unchanged: true\n",
    );
    std::os::unix::fs::symlink("../tools/run.sh", repo.root.join("c/sub/link.txt")).unwrap();
    repo.commit_all("a symlink");
    let agent = format!(
        "git status --porcelain > '{}'/status-$TREEFARM_SPEC_ID; git add -A; git commit -qm nothing || true",
        repo.records().display()
    );
    let out = repo.tf(&["run", "--no-merge", "--agent", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wt = repo.worktree_dir().join("001");
    let status = std::fs::read_to_string(repo.records().join("status-001")).unwrap();
    assert_eq!(status, "", "git status in the agent");
    assert_eq!(repo.git_at(&wt, &["status", "--porcelain"]), "");
    assert_eq!(
        repo.git_at(&wt, &["config", "--worktree", "core.sparseCheckoutCone"]),
        "false"
    );
    let ls = repo.git_at(&wt, &["ls-files", "-t"]);
    let materialised: Vec<&str> = ls.lines().filter_map(|l| l.strip_prefix("H ")).collect();
    // Exactly the globs plus the declared file (a/new.txt does not exist yet).
    assert_eq!(
        materialised,
        [
            "a/f1.txt",
            "c/sub/link.txt",
            "c/sub/s0.txt",
            "c/sub/s1.txt",
            "c/sub/s2.txt",
            "c/sub/s3.txt",
            "tools/run.sh"
        ],
        "{ls}"
    );
    assert!(std::fs::symlink_metadata(wt.join("c/sub/link.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wt.join("tools/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit is checked out");
    // Nothing was committed: the unmaterialised files are not deletions.
    assert_eq!(
        repo.git(&["rev-parse", "treefarm/001"]),
        repo.git(&["rev-parse", "roadmap"])
    );
}

#[test]
fn worktree_and_slot_env_keys_parse_and_bad_values_name_the_key() {
    use treefarm::config::{Config, SparseMode, SparseWord};
    let c = Config::parse(
        "treefarm.yaml",
        b"worktree:\n  sparse: auto\n  sparse_include: [Cargo.toml]\n  reserve: 2G\nslot_env:\n  CARGO_TARGET_DIR: \"{cache}/slot-{slot}/target\"\n",
    )
    .expect("parses");
    assert_eq!(c.worktree.sparse, SparseMode::Word(SparseWord::Auto));
    assert_eq!(c.worktree.sparse_include, ["Cargo.toml"]);
    assert_eq!(c.worktree.reserve, "2G");
    assert_eq!(c.slot_env.len(), 1);
    let list = Config::parse("t.yaml", b"worktree: { sparse: [src/a, \"*.toml\"] }\n").unwrap();
    assert_eq!(
        list.worktree.sparse,
        SparseMode::List(vec!["src/a".into(), "*.toml".into()])
    );
    assert_eq!(
        Config::default().worktree.sparse,
        SparseMode::Word(SparseWord::Off)
    );
    assert_eq!(Config::default().worktree.reserve, "5%");

    let err = Config::parse("t.yaml", b"worktree:\n  sparse: maybe\n").unwrap_err();
    assert!(err.to_string().contains("`off`, `auto` or a list"), "{err}");
    let err = Config::parse("t.yaml", b"worktree:\n  reserve: lots\n").unwrap_err();
    assert!(
        err.to_string().contains("t.yaml:2: `worktree.reserve`"),
        "{err}"
    );
    let err = Config::parse("t.yaml", b"slot_env:\n  BAD-NAME: x\n").unwrap_err();
    assert!(err.to_string().contains("BAD-NAME"), "{err}");
    let err = Config::parse("t.yaml", b"worktree:\n  sparce: auto\n").unwrap_err();
    assert!(err.to_string().contains("worktree.sparce"), "{err}");
}
