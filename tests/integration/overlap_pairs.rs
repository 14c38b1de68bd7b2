//! `find_overlaps` on hand-made footprints and tracked lists.

use treefarm::overlap::{find_overlaps, Footprint, Overlap, OverlapError, OverlapKind};

fn fp(id: &str, files: &[&str]) -> Footprint {
    Footprint {
        id: id.to_owned(),
        files: files.iter().map(|s| s.to_string()).collect(),
        shared: Vec::new(),
    }
}

fn fp_shared(id: &str, files: &[&str], shared: &[&str]) -> Footprint {
    Footprint {
        shared: shared.iter().map(|s| s.to_string()).collect(),
        ..fp(id, files)
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn run(fps: &[Footprint], tracked: &[&str], ignore: &[&str]) -> Vec<Overlap> {
    find_overlaps(fps, &strings(tracked), &strings(ignore)).expect("valid globs")
}

fn pairs(overlaps: &[Overlap]) -> Vec<(&str, &str)> {
    overlaps
        .iter()
        .map(|o| (o.a.as_str(), o.b.as_str()))
        .collect()
}

#[test]
fn equal_paths_overlap() {
    let o = run(
        &[
            fp("020", &["src/a.rs", "src/b.rs"]),
            fp("021", &["src/a.rs"]),
        ],
        &[],
        &[],
    );
    assert_eq!(pairs(&o), [("020", "021")]);
    assert_eq!(o[0].kind, OverlapKind::SamePath);
    assert_eq!(o[0].paths, ["src/a.rs"]);
    assert!(o[0].reason.contains("src/a.rs"), "{}", o[0].reason);
}

#[test]
fn distinct_paths_are_independent() {
    let o = run(
        &[
            fp("1", &["src/a.rs"]),
            fp("2", &["src/b.rs"]),
            fp("3", &["src/a"]),
        ],
        &["src/a.rs"],
        &[],
    );
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn glob_matches_literal_in_both_directions() {
    let o = run(
        &[
            fp("1", &["src/http/**"]),
            fp("2", &["src/http/retry.rs"]),
            fp("3", &["docs/x.md"]),
            fp("4", &["docs/*.md"]),
        ],
        &[],
        &[],
    );
    assert_eq!(pairs(&o), [("1", "2"), ("3", "4")]);
    for overlap in &o {
        assert_eq!(overlap.kind, OverlapKind::GlobMatchesPath);
    }
    assert_eq!(o[0].paths, ["src/http/retry.rs"]);
    assert_eq!(o[1].paths, ["docs/x.md"]);
    assert!(o[1].reason.contains("`docs/*.md` of 4"), "{}", o[1].reason);
}

#[test]
fn star_does_not_cross_directories() {
    let o = run(
        &[fp("1", &["src/*.rs"]), fp("2", &["src/deep/x.rs"])],
        &[],
        &[],
    );
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn globs_sharing_a_tracked_file_overlap() {
    let o = run(
        &[
            fp("1", &["src/**/*.rs"]),
            fp("2", &["src/net/{http,tcp}.rs"]),
        ],
        &["src/net/http.rs", "src/net/udp.rs", "README.md"],
        &[],
    );
    assert_eq!(pairs(&o), [("1", "2")]);
    assert_eq!(o[0].kind, OverlapKind::GlobsShareTrackedFile);
    assert_eq!(o[0].paths, ["src/net/http.rs"]);
}

#[test]
fn nested_prefixes_without_tracked_file_are_conservative() {
    let o = run(
        &[
            fp("1", &["src/new/**"]),
            fp("2", &["src/new/*.rs"]),
            fp("3", &["lib/**"]),
            fp("4", &["lib/a/*.rs"]),
        ],
        &["README.md"],
        &[],
    );
    assert_eq!(pairs(&o), [("1", "2"), ("3", "4")]);
    for overlap in &o {
        assert_eq!(overlap.kind, OverlapKind::NestedPrefixes);
        assert!(
            overlap.reason.starts_with("may overlap"),
            "{}",
            overlap.reason
        );
        assert!(
            overlap.reason.contains("no tracked file matches yet"),
            "{}",
            overlap.reason
        );
    }
    assert_eq!(o[0].paths, ["src/new/**", "src/new/*.rs"]);
}

#[test]
fn disjoint_globs_are_independent() {
    let o = run(
        &[
            fp("1", &["src/a/**"]),
            fp("2", &["src/b/**"]),
            fp("3", &["src/ab*.rs"]),
            fp("4", &["docs/**/*.md"]),
            fp("5", &["docs/**/*.rs"]),
        ],
        &["src/a/x.rs", "src/b/y.rs", "docs/z.md"],
        &[],
    );
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn shared_paths_do_not_count_for_either_side() {
    let fps = [
        fp_shared("1", &["src/a.rs", "Cargo.lock"], &["Cargo.lock"]),
        fp("2", &["src/b.rs", "Cargo.lock"]),
        fp_shared("3", &["src/gen/**"], &["src/gen/table.rs"]),
        fp("4", &["src/gen/table.rs"]),
    ];
    let o = run(&fps, &[], &[]);
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn shared_path_of_a_third_spec_does_not_protect_a_pair() {
    let fps = [
        fp_shared("1", &["src/a.rs"], &["Cargo.lock"]),
        fp("2", &["Cargo.lock"]),
        fp("3", &["Cargo.lock"]),
    ];
    assert_eq!(pairs(&run(&fps, &[], &[])), [("2", "3")]);
}

#[test]
fn shared_directory_glob_covers_globs_and_tracked_files() {
    let fps = [
        fp_shared("1", &["gen/**"], &["gen/**"]),
        fp("2", &["gen/out/*.json"]),
    ];
    assert!(run(&fps, &["gen/out/a.json"], &[]).is_empty());
}

#[test]
fn global_ignore_is_honoured() {
    let fps = [
        fp("1", &["Cargo.lock", "target/**", "src/**"]),
        fp("2", &["Cargo.lock", "target/debug/x", "src/a.lock"]),
    ];
    let o = run(
        &fps,
        &["Cargo.lock"],
        &["Cargo.lock", "target/**", "**/*.lock"],
    );
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn dots_and_dashes_in_names() {
    let o = run(
        &[
            fp(
                "SPEC-1",
                &[".github/workflows/ci-main.yml", "web/my-app.v2/**"],
            ),
            fp("SPEC-2", &["./.github/workflows/ci-main.yml"]),
            fp("SPEC-3", &["web/my-app.v2/index.d.ts"]),
            fp("SPEC-4", &["web/my-app.v3/index.d.ts"]),
        ],
        &[],
        &[],
    );
    assert_eq!(pairs(&o), [("SPEC-1", "SPEC-2"), ("SPEC-1", "SPEC-3")]);
}

#[test]
fn trailing_slash_means_the_directory() {
    let o = run(
        &[fp("1", &["src/ui/"]), fp("2", &["src/ui/button.rs"])],
        &[],
        &[],
    );
    assert_eq!(pairs(&o), [("1", "2")]);
    assert_eq!(o[0].kind, OverlapKind::GlobMatchesPath);
}

#[test]
fn one_overlap_per_pair_with_merged_reasons() {
    let o = run(
        &[
            fp("1", &["src/a.rs", "src/x/**", "docs/**"]),
            fp("2", &["src/a.rs", "src/x/y.rs", "docs/*.md"]),
        ],
        &["docs/readme.md"],
        &[],
    );
    assert_eq!(o.len(), 1);
    let overlap = &o[0];
    assert_eq!(overlap.kind, OverlapKind::SamePath);
    assert_eq!(overlap.paths, ["docs/readme.md", "src/a.rs", "src/x/y.rs"]);
    assert!(overlap.reason.contains("both declare `src/a.rs`"));
    assert!(overlap.reason.contains("matches `src/x/y.rs`"));
    assert!(overlap.reason.contains("tracked `docs/readme.md`"));
}

#[test]
fn many_paths_are_capped() {
    let files: Vec<String> = (0..30).map(|i| format!("f/{i:02}.rs")).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let o = run(&[fp("1", &files), fp("2", &files)], &[], &[]);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].paths.len(), 20);
    assert_eq!(o[0].paths[0], "f/00.rs");
    assert!(
        o[0].reason.contains("30 paths, first 20 listed"),
        "{}",
        o[0].reason
    );
    assert!(o[0].reason.contains("and 25 more"), "{}", o[0].reason);
}

#[test]
fn output_is_ordered_by_input_position() {
    let o = run(
        &[
            fp("c", &["z.rs"]),
            fp("b", &["y.rs", "x.rs"]),
            fp("a", &["x.rs", "z.rs"]),
            fp("d", &["y.rs"]),
        ],
        &[],
        &[],
    );
    assert_eq!(pairs(&o), [("c", "a"), ("b", "a"), ("b", "d")]);
}

#[test]
fn same_spec_never_overlaps_itself() {
    let o = run(
        &[fp("1", &["src/**", "src/a.rs", "src/a.rs"])],
        &["src/a.rs"],
        &[],
    );
    assert!(o.is_empty());
}

#[test]
fn invalid_glob_names_spec_and_glob() {
    let err = find_overlaps(&[fp("020", &["src/[a.rs"])], &[], &[]).unwrap_err();
    assert!(matches!(err, OverlapError::InvalidGlob { .. }));
    let msg = err.to_string();
    assert!(msg.contains("020") && msg.contains("src/[a.rs"), "{msg}");

    let err = find_overlaps(&[], &[], &strings(&["{a"])).unwrap_err();
    assert!(err.to_string().contains("{a"), "{err}");
}

#[test]
fn serializes_kind_as_snake_case() {
    let o = run(&[fp("1", &["a"]), fp("2", &["a"])], &[], &[]);
    let json = serde_json::to_value(&o[0]).expect("serializes");
    assert_eq!(json["kind"], "same_path");
    assert_eq!(json["a"], "1");
    assert_eq!(json["paths"][0], "a");
    assert!(json["reason"].is_string());
}
