//! Scale of `find_overlaps` + `plan_waves` on the synthetic layout of
//! `scripts/bench-check.sh`, without git or spec parsing. Ignored by default:
//! run with `cargo test --release --test integration overlap_scale:: -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use treefarm::overlap::{find_overlaps, Footprint};
use treefarm::schedule::{plan_waves, Node};

/// The layout `scripts/bench/gen-repo.sh` writes: spec `n` (1-based) lives in
/// group `n / 10`, has two tracked files, declares ten paths (its two tracked
/// files, six new ones, the next spec's first file) and, every tenth spec, a
/// directory glob over its group plus a glob for generated files; every
/// fifth-in-group spec declares a generated-files glob that nests with it.
fn layout(specs: usize) -> (Vec<Footprint>, Vec<String>) {
    let mut footprints = Vec::with_capacity(specs);
    let mut tracked = Vec::with_capacity(2 * specs + 1);
    tracked.push("README.md".to_owned());
    for n in 1..=specs {
        let k = n / 10;
        tracked.push(format!("src/d{k}/s{n}_a.rs"));
        tracked.push(format!("src/d{k}/s{n}_b.rs"));
        let mut files = vec![format!("src/d{k}/s{n}_a.rs"), format!("src/d{k}/s{n}_b.rs")];
        files.extend((1..=5).map(|j| format!("src/d{k}/s{n}_new{j}.rs")));
        files.push(format!("tests/t{n}.rs"));
        files.push(format!("docs/d{k}/s{n}.md"));
        if n < specs {
            files.push(format!("src/d{}/s{}_a.rs", (n + 1) / 10, n + 1));
        }
        if n % 10 == 0 {
            files.push(format!("src/d{k}/**"));
            files.push(format!("gen/d{k}/**"));
        }
        if n % 10 == 5 {
            files.push(format!("gen/d{k}/*.json"));
        }
        footprints.push(Footprint {
            id: n.to_string(),
            files,
            shared: vec!["Cargo.lock".to_owned()],
        });
    }
    (footprints, tracked)
}

fn measure(specs: usize, instances: usize) -> (Duration, Duration) {
    let (footprints, tracked) = layout(specs);
    let ignore = vec!["Cargo.lock".to_owned()];
    let start = Instant::now();
    let overlaps = find_overlaps(&footprints, &tracked, &ignore).expect("valid globs");
    let overlap_time = start.elapsed();

    let nodes: Vec<Node> = footprints
        .iter()
        .enumerate()
        .map(|(i, fp)| Node {
            id: fp.id.clone(),
            priority: i as i64,
            order: i,
            depends_on: if i % 50 == 49 {
                vec![footprints[i - 1].id.clone()]
            } else {
                Vec::new()
            },
        })
        .collect();
    let conflicts: Vec<(String, String)> = overlaps
        .iter()
        .map(|o| (o.a.clone(), o.b.clone()))
        .collect();
    let start = Instant::now();
    let waves = plan_waves(nodes, &conflicts, instances);
    let plan_time = start.elapsed();

    assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), specs);
    // Each spec overlaps a handful of others, not most.
    assert!(overlaps.len() < specs * 3, "{} overlaps", overlaps.len());
    println!(
        "overlap_scale specs={specs} instances={instances}: find_overlaps {:.1} ms ({} overlaps), plan_waves {:.1} ms ({} waves)",
        overlap_time.as_secs_f64() * 1e3,
        overlaps.len(),
        plan_time.as_secs_f64() * 1e3,
        waves.len()
    );
    (overlap_time, plan_time)
}

#[test]
#[ignore = "benchmark; run by scripts/bench-check.sh"]
fn overlap_and_plan_scale_linearly() {
    for instances in [3, 16] {
        // Best of three smooths out noise from a busy machine.
        let best = |specs| {
            (0..3)
                .map(|_| measure(specs, instances))
                .fold((Duration::MAX, Duration::MAX), |(a, b), (x, y)| {
                    (a.min(x), b.min(y))
                })
        };
        let (o10, p10) = best(10_000);
        let (o20, p20) = best(20_000);
        println!(
            "overlap_scale instances={instances} ratio 20k/10k: find_overlaps {:.2}, plan_waves {:.2}",
            o20.as_secs_f64() / o10.as_secs_f64(),
            p20.as_secs_f64() / p10.as_secs_f64()
        );
    }
}

#[test]
fn layout_overlaps_a_handful_per_spec() {
    let (footprints, tracked) = layout(30);
    let overlaps = find_overlaps(&footprints, &tracked, &[]).expect("valid globs");
    // Spec 10 leads group 1 (10..=19) with `src/d1/**`.
    let of_10: Vec<&str> = overlaps
        .iter()
        .filter(|o| o.a == "10" || o.b == "10")
        .map(|o| {
            if o.a == "10" {
                o.b.as_str()
            } else {
                o.a.as_str()
            }
        })
        .collect();
    assert_eq!(
        of_10,
        ["9", "11", "12", "13", "14", "15", "16", "17", "18", "19"]
    );
    let nested = overlaps
        .iter()
        .find(|o| o.a == "10" && o.b == "15")
        .expect("10 and 15 overlap");
    assert!(nested.reason.contains("more"), "{}", nested.reason);
}
