//! The documents' links: every relative link of `README.md`, the user guide
//! (`docs/guide/src/`, built with mdBook by `scripts/build-guide.sh`) and
//! `docs/DESIGN.md` names a file that exists, and every `#anchor` names a
//! heading of its target (the id mdBook and the forge both give it). The
//! guide's `SUMMARY.md` lists every chapter, so none is unreachable in the
//! book; the README leads into the guide.
//!
//! The oracle is the file tree and the headings themselves; links to other
//! sites are not fetched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn guide_chapters() -> Vec<PathBuf> {
    let dir = root().join("docs/guide/src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("docs/guide/src")
        .map(|e| e.expect("a guide entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// The documents whose links are checked.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("docs/DESIGN.md")];
    docs.extend(guide_chapters());
    docs
}

/// The text outside fenced code blocks and inline code spans, line by line
/// (code quotes links and headings as data).
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        // Inline code spans: drop what is between backticks.
        let mut kept = String::new();
        for (n, part) in line.split('`').enumerate() {
            if n % 2 == 0 {
                kept.push_str(part);
            } else {
                kept.push_str("code");
            }
        }
        out.push((i + 1, kept));
    }
    out
}

/// A heading's id, as mdBook (`normalize_id`) and the forge make it:
/// lowercase letters, digits, `-` and `_`; whitespace becomes `-`; the rest
/// goes. Inline code keeps its text, a link its label.
fn slug(heading: &str) -> String {
    let label = regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("the link pattern");
    let text = label.replace_all(heading, "$1");
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The anchors a Markdown file offers: its headings' ids (repeats get
/// `-1`, `-2`, as both renderers do).
fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fence = false;
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && t[level..].starts_with(' ') {
            let base = slug(t[level..].trim());
            let mut id = base.clone();
            let mut n = 1;
            while seen.contains(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            seen.insert(id);
        }
    }
    seen
}

/// Every `[label](target)` and `![alt](target)` of the prose: (line, target).
fn links(text: &str) -> Vec<(usize, String)> {
    let pattern = regex::Regex::new(r"\]\(([^)\s]+)(?:\s+[^)]*)?\)").expect("the link pattern");
    prose(text)
        .into_iter()
        .flat_map(|(line, l)| {
            pattern
                .captures_iter(&l)
                .map(|c| (line, c[1].to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What is wrong with one link from `doc`, if anything.
fn broken(doc: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else {
        doc.parent().expect("a document's folder").join(path)
    };
    if !file.exists() {
        return Some(format!("`{path}` does not exist"));
    }
    match anchor {
        Some(a) if file.extension().is_some_and(|e| e == "md") => {
            let offered = anchors(&file);
            (!offered.contains(a))
                .then(|| format!("`{}` has no heading with id `#{a}`", file.display()))
        }
        _ => None,
    }
}

#[test]
fn every_relative_link_and_anchor_of_readme_guide_and_design_resolves() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text =
            std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        for (line, target) in links(&text) {
            checked += 1;
            if let Some(why) = broken(&doc, &target) {
                let rel = doc
                    .strip_prefix(root())
                    .unwrap_or(&doc)
                    .display()
                    .to_string();
                bad.push(format!("{rel}:{line}: ({target}): {why}"));
            }
        }
    }
    assert!(checked > 30, "the check found the links: {checked}");
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_readme_leads_into_the_guide_and_the_summary_lists_every_chapter() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let into_guide: Vec<_> = links(&readme)
        .into_iter()
        .filter(|(_, t)| t.starts_with("docs/guide/src/"))
        .collect();
    assert!(
        into_guide.len() >= 10,
        "the README links to the guide's chapters: {into_guide:?}"
    );

    let summary_path = root().join("docs/guide/src/SUMMARY.md");
    let summary = std::fs::read_to_string(&summary_path).expect("SUMMARY.md");
    let listed: BTreeSet<String> = links(&summary).into_iter().map(|(_, t)| t).collect();
    let missing: Vec<String> = guide_chapters()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "SUMMARY.md" && !listed.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "chapters the book would not show (add them to SUMMARY.md): {missing:?}"
    );
}

#[test]
fn headings_get_the_ids_mdbook_gives_them() {
    // The ids mdBook 0.5 writes for these headings of the guide.
    assert_eq!(slug("Config — `treefarm.yaml`"), "config--treefarmyaml");
    assert_eq!(
        slug("Usage, rate limits and budgets"),
        "usage-rate-limits-and-budgets"
    );
    assert_eq!(slug("`treefarm resume [RUN_ID]`"), "treefarm-resume-run_id");
}
