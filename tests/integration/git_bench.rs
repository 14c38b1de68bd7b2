//! Timing of `Repo::add_worktrees` against a shell loop of `git worktree add`
//! on a synthetic repository (~3,000 files, ~30 MB). Ignored by default:
//! `cargo test --release --test integration git_bench:: -- --ignored --nocapture`.

use crate::common;

use std::time::Instant;

use common::TestRepo;
use treefarm::git::{Repo, WorktreeRequest};

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn add_worktrees_timing_against_git() {
    let t = TestRepo::empty();
    // 3,000 files of ~10 KB of pseudo-random text (compresses like source).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000 {
        let mut text = String::with_capacity(10_240);
        while text.len() < 10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(&format!("let v{} = {};\n", seed % 1000, seed % 100_000));
        }
        t.write(&format!("d{:02}/s{:02}/f{i:04}.rs", i % 30, i % 7), &text);
    }
    t.commit_all("big");
    t.git(&["repack", "-adq"]);
    t.git(&["prune-packed"]);
    let head = t.git(&["rev-parse", "HEAD"]);
    let size = t.git(&["count-objects", "-vH"]);
    eprintln!("repo: {}", size.replace('\n', ", "));

    let rounds = 3;
    for round in 0..rounds {
        let dir = t.tmp.path().join(format!("git-{round}"));
        let (_, children_before) = cpu_ticks();
        let started = Instant::now();
        for n in 0..8 {
            let path = dir.join(format!("{n:03}"));
            t.git(&[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("g{round}/{n:03}"),
                path.to_str().unwrap(),
                &head,
            ]);
        }
        let git = started.elapsed();
        let git_cpu = cpu_ticks().1 - children_before;

        let repo = Repo::discover(&t.root).unwrap();
        let dir = t.tmp.path().join(format!("tf-{round}"));
        let reqs: Vec<_> = (0..8)
            .map(|n| WorktreeRequest {
                name: format!("t{round}-{n:03}"),
                path: dir.join(format!("{n:03}")),
                branch: format!("t{round}/{n:03}"),
                start: git2_oid(&head),
                reuse: false,
                sparse: None,
            })
            .collect();
        let (self_before, _) = cpu_ticks();
        let started = Instant::now();
        let results = repo.add_worktrees(&reqs);
        let ours = started.elapsed();
        let ours_cpu = cpu_ticks().0 - self_before;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        eprintln!(
            "round {round}: git worktree add x8 (serial): {git:?}; add_worktrees x8: {ours:?}; ratio {:.2}",
            ours.as_secs_f64() / git.as_secs_f64()
        );
        eprintln!("round {round}: cpu ticks (user+sys, 1/100 s): git {git_cpu}, ours {ours_cpu}");
        assert_eq!(t.git_at(&reqs[7].path, &["status", "--porcelain"]), "");
    }
}

fn git2_oid(s: &str) -> treefarm::git::Oid {
    treefarm::git::Oid::from_str(s).unwrap()
}

/// (this process's, its waited-for children's) user+sys CPU ticks, from
/// /proc/self/stat.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14..17 of stat are utime stime cutime cstime; `rest` starts at 3.
    (f[11] + f[12], f[13] + f[14])
}

/// (user, sys) ticks of this process and of its waited-for children.
fn cpu_split() -> [u64; 4] {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    [f[11], f[12], f[13], f[14]]
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn checkout_cpu_per_worktree_against_git() {
    let t = TestRepo::empty();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000 {
        let mut text = String::with_capacity(10_240);
        while text.len() < 10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(&format!("let v{} = {};\n", seed % 1000, seed % 100_000));
        }
        t.write(&format!("d{:02}/s{:02}/f{i:04}.rs", i % 30, i % 7), &text);
    }
    t.commit_all("big");
    t.git(&["repack", "-adq"]);
    t.git(&["prune-packed"]);
    let head = t.git(&["rev-parse", "HEAD"]);
    let repo = Repo::discover(&t.root).unwrap();
    let mut totals = [[0u64; 2]; 3];
    for n in 0..6 {
        let b = cpu_split();
        let path = t.tmp.path().join(format!("g/{n}"));
        t.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("g/{n}"),
            path.to_str().unwrap(),
            &head,
        ]);
        let a = cpu_split();
        totals[0][0] += a[2] - b[2];
        totals[0][1] += a[3] - b[3];
        for (k, verify) in [(1, true), (2, false)] {
            git2::opts::strict_hash_verification(verify);
            let b = cpu_split();
            let r = repo.add_worktrees(&[WorktreeRequest {
                name: format!("t{k}-{n}"),
                path: t.tmp.path().join(format!("t{k}/{n}")),
                branch: format!("t{k}/{n}"),
                start: git2_oid(&head),
                reuse: false,
                sparse: None,
            }]);
            let a = cpu_split();
            r[0].as_ref().unwrap();
            totals[k][0] += a[0] - b[0];
            totals[k][1] += a[1] - b[1];
        }
    }
    eprintln!("cpu ticks (user, sys) for 6 worktrees: git {:?}; libgit2 verify {:?}; libgit2 no-verify {:?}", totals[0], totals[1], totals[2]);
}
