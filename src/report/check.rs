//! What `check` and `plan` print: the JSON shapes of DESIGN.md (Command line)
//! and the same data as tables for people.
//!
//! `check --json` lists the conflicting pairs only, never the independent
//! ones, so it stays small on large inputs.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::overlap::Overlap;
use crate::spec::{Declared, Diagnostic, Mention};

/// One spec as `check` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub id: String,
    pub title: String,
    pub priority: i64,
    /// The spec file, relative to the repository root.
    pub path: String,
    /// Declared paths and globs.
    pub files: Vec<String>,
}

/// `check --json`: `{"independent", "specs", "overlaps", "errors",
/// "warnings", "invalid"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// No pair of (valid) specs overlaps.
    pub independent: bool,
    /// The valid specs checked.
    pub specs: Vec<CheckSpec>,
    /// Overlapping pairs only.
    pub overlaps: Vec<Overlap>,
    /// Diagnostics that make a spec invalid.
    #[serde(default)]
    pub errors: Vec<Diagnostic>,
    #[serde(default)]
    pub warnings: Vec<Diagnostic>,
    /// The specs left out of the overlap report because of an error.
    #[serde(default)]
    pub invalid: Vec<InvalidSpec>,
}

/// A spec with an error: named so the user can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidSpec {
    pub id: String,
    pub path: String,
}

/// `check --explain SPEC`: how the spec was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainReport {
    pub id: String,
    pub title: String,
    pub path: String,
    pub valid: bool,
    /// Every declared path with the file, line and marker that declared it.
    pub declared: Vec<Declared>,
    /// Paths the spec mentions that did not count, and why.
    pub mentioned: Vec<Mention>,
    pub depends_on: Vec<String>,
    pub priority: Option<i64>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Errors, then warnings, one per line with their hints.
pub fn write_diagnostics(
    errors: &[Diagnostic],
    warnings: &[Diagnostic],
    out: &mut dyn Write,
    color: bool,
) -> io::Result<()> {
    let paint = Paint(color);
    for d in errors.iter().chain(warnings) {
        let text = d.render();
        let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let style = if d.is_error() { Style::Bad } else { Style::Id };
        writeln!(out, "{}", paint.apply(style, head))?;
        if !rest.is_empty() {
            writeln!(out, "{rest}")?;
        }
    }
    Ok(())
}

/// `check --explain` for people.
pub fn write_explain_human(
    report: &ExplainReport,
    out: &mut dyn Write,
    color: bool,
) -> io::Result<()> {
    let paint = Paint(color);
    let state = if report.valid { "valid" } else { "INVALID" };
    writeln!(
        out,
        "{}",
        paint.apply(
            Style::Bold,
            &format!(
                "spec {} ({}, {state}): {}",
                report.id, report.path, report.title
            )
        )
    )?;
    if let Some(p) = report.priority {
        writeln!(out, "priority: {p}")?;
    }
    if !report.depends_on.is_empty() {
        writeln!(out, "depends on: {}", report.depends_on.join(", "))?;
    }
    writeln!(out, "declared ({}):", report.declared.len())?;
    let width = report
        .declared
        .iter()
        .map(|d| d.value.chars().count())
        .chain(report.mentioned.iter().map(|m| m.value.chars().count()))
        .max()
        .unwrap_or(0);
    for d in &report.declared {
        let pad = width - d.value.chars().count();
        writeln!(
            out,
            "  {}{}  {}:{}  by {}",
            paint.apply(Style::Good, &d.value),
            " ".repeat(pad),
            d.file,
            d.line,
            d.marker
        )?;
    }
    writeln!(
        out,
        "mentioned but not declared ({}):",
        report.mentioned.len()
    )?;
    for m in &report.mentioned {
        let pad = width.saturating_sub(m.value.chars().count());
        writeln!(
            out,
            "  {}{}  line {}  {}",
            m.value,
            " ".repeat(pad),
            m.line,
            m.reason
        )?;
    }
    write_diagnostics(&report.errors, &report.warnings, out, color)
}

/// One spec as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    pub id: String,
    pub title: String,
    pub branch: String,
    /// Absolute path the worktree would get.
    pub worktree: String,
    pub depends_on: Vec<String>,
    pub priority: i64,
    /// Index into [`PlanReport::waves`] (0-based; people see it from 1).
    pub wave: usize,
}

/// `plan --json`: `{"target", "base", "instances", "waves", "specs"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanReport {
    pub target: String,
    /// The commit id branches would start from.
    pub base: String,
    pub instances: usize,
    /// Spec ids started together, in start order.
    pub waves: Vec<Vec<String>>,
    pub specs: Vec<PlanSpec>,
}

/// Widest a cell grows before it is cut with `…`.
const MAX_ID: usize = 24;
const MAX_PATHS: usize = 48;
const MAX_TITLE: usize = 40;
/// Paths shown per overlap in the table; the JSON lists more.
const SHOWN_PATHS: usize = 3;

/// The overlaps as a table (`SPEC A  SPEC B  PATHS  REASON`), then a
/// one-line summary: `N specs, M overlaps` or `all N specs are independent`.
pub fn write_check_human(report: &CheckReport, out: &mut dyn Write, color: bool) -> io::Result<()> {
    let paint = Paint(color);
    if !report.overlaps.is_empty() {
        let rows: Vec<[String; 4]> = report
            .overlaps
            .iter()
            .map(|o| {
                [
                    cut(&o.a, MAX_ID),
                    cut(&o.b, MAX_ID),
                    cut(&paths_cell(&o.paths), MAX_PATHS),
                    o.reason.clone(),
                ]
            })
            .collect();
        let header = ["SPEC A", "SPEC B", "PATHS", "REASON"].map(str::to_owned);
        write_table(
            out,
            &header,
            &rows,
            paint,
            &[Style::Id, Style::Id, Style::Plain],
        )?;
        writeln!(out)?;
    }
    let n = report.specs.len();
    let m = report.overlaps.len();
    let mut summary = if m == 0 {
        match n {
            0 => "no specs to check".to_owned(),
            1 => "1 spec; nothing can overlap".to_owned(),
            _ => format!("all {n} specs are independent"),
        }
    } else {
        format!("{}, {}", plural(n, "spec"), plural(m, "overlap"))
    };
    if !report.invalid.is_empty() || !report.errors.is_empty() {
        summary.push_str(&format!(
            "; {} invalid ({})",
            plural(report.invalid.len(), "spec"),
            plural(report.errors.len(), "error")
        ));
    }
    if !report.warnings.is_empty() {
        summary.push_str(&format!("; {}", plural(report.warnings.len(), "warning")));
    }
    let style = if m == 0 && report.errors.is_empty() {
        Style::Good
    } else {
        Style::Bad
    };
    writeln!(out, "{}", paint.apply(style, &summary))
}

/// The waves as a table (`WAVE  SPEC  TITLE  BRANCH  WORKTREE`), after a
/// line naming the target, base commit and instance count.
pub fn write_plan_human(report: &PlanReport, out: &mut dyn Write, color: bool) -> io::Result<()> {
    let paint = Paint(color);
    let base: String = report.base.chars().take(12).collect();
    let heading = format!(
        "plan: {} in {} on {}, into `{}` from {base}",
        plural(report.specs.len(), "spec"),
        plural(report.waves.len(), "wave"),
        plural(report.instances, "instance"),
        report.target,
    );
    writeln!(out, "{}", paint.apply(Style::Bold, &heading))?;
    if report.specs.is_empty() {
        return writeln!(out, "nothing to run");
    }
    let by_id: HashMap<&str, &PlanSpec> = report.specs.iter().map(|s| (s.id.as_str(), s)).collect();
    let row = |wave: String, spec: &PlanSpec| {
        let mut title = cut(&spec.title, MAX_TITLE);
        if !spec.depends_on.is_empty() {
            title = format!("{title} (after {})", spec.depends_on.join(", "));
        }
        [
            wave,
            cut(&spec.id, MAX_ID),
            title,
            spec.branch.clone(),
            spec.worktree.clone(),
        ]
    };
    let mut rows = Vec::with_capacity(report.specs.len());
    let mut placed = std::collections::HashSet::new();
    for (w, wave) in report.waves.iter().enumerate() {
        for id in wave {
            if let Some(spec) = by_id.get(id.as_str()) {
                placed.insert(id.as_str());
                rows.push(row((w + 1).to_string(), spec));
            }
        }
    }
    // Specs no wave starts (a dependency cycle validation did not catch).
    for spec in report
        .specs
        .iter()
        .filter(|s| !placed.contains(s.id.as_str()))
    {
        rows.push(row("-".to_owned(), spec));
    }
    let header = ["WAVE", "SPEC", "TITLE", "BRANCH", "WORKTREE"].map(str::to_owned);
    write_table(
        out,
        &header,
        &rows,
        paint,
        &[Style::Bold, Style::Id, Style::Plain, Style::Plain],
    )
}

/// Left-aligned columns two spaces apart; the last column is not padded.
/// `styles` colours the leading columns.
fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: &[String; N],
    rows: &[[String; N]],
    paint: Paint,
    styles: &[Style],
) -> io::Result<()> {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_line = line(header, &widths);
    writeln!(out, "{}", paint.apply(Style::Bold, &header_line))?;
    for row in rows {
        let mut text = String::new();
        for (c, cell) in row.iter().enumerate() {
            let style = styles.get(c).copied().unwrap_or(Style::Plain);
            text.push_str(&paint.apply(style, cell));
            if c + 1 < N {
                let pad = widths[c] - cell.chars().count() + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

fn line<const N: usize>(cells: &[String; N], widths: &[usize; N]) -> String {
    let mut text = String::new();
    for (c, cell) in cells.iter().enumerate() {
        text.push_str(cell);
        if c + 1 < N {
            let pad = widths[c] - cell.chars().count() + 2;
            text.push_str(&" ".repeat(pad));
        }
    }
    text.trim_end().to_owned()
}

/// The first paths of an overlap, then `+N more` (also the graphs' edge labels).
pub(crate) fn paths_cell(paths: &[String]) -> String {
    let mut cell = paths
        .iter()
        .take(SHOWN_PATHS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN_PATHS {
        cell.push_str(&format!(" +{} more", paths.len() - SHOWN_PATHS));
    }
    cell
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Bold,
    Id,
    Good,
    Bad,
}

/// ANSI colour, or nothing when output is not a colour terminal.
#[derive(Debug, Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn apply(self, style: Style, text: &str) -> String {
        let code = match style {
            Style::Plain => return text.to_owned(),
            Style::Bold => "1",
            Style::Id => "33",
            Style::Good => "32",
            Style::Bad => "31",
        };
        crate::report::human::paint(self.0, code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlap::OverlapKind;

    fn spec(id: &str) -> CheckSpec {
        CheckSpec {
            id: id.to_owned(),
            title: format!("spec {id}"),
            priority: 20,
            path: format!("specs/SPEC-{id}-x.md"),
            files: vec!["src/a.rs".to_owned(), "src/http/**".to_owned()],
        }
    }

    fn overlap(a: &str, b: &str, paths: &[&str]) -> Overlap {
        Overlap {
            a: a.to_owned(),
            b: b.to_owned(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            kind: OverlapKind::SamePath,
            reason: "both declare `src/a.rs`".to_owned(),
        }
    }

    fn render(f: impl Fn(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).expect("writes to a Vec");
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn check_json_has_the_design_shape() {
        let report = CheckReport {
            independent: false,
            specs: vec![spec("020"), spec("022")],
            overlaps: vec![overlap("020", "022", &["src/a.rs"])],
            ..CheckReport::default()
        };
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["independent"], false);
        assert_eq!(json["specs"][0]["id"], "020");
        assert_eq!(json["specs"][0]["path"], "specs/SPEC-020-x.md");
        assert_eq!(json["specs"][0]["priority"], 20);
        assert_eq!(json["specs"][0]["files"][1], "src/http/**");
        let o = &json["overlaps"][0];
        assert_eq!(
            (o["a"].as_str(), o["b"].as_str()),
            (Some("020"), Some("022"))
        );
        assert_eq!(o["paths"][0], "src/a.rs");
        assert_eq!(o["kind"], "same_path");
        assert!(o["reason"].is_string());
    }

    #[test]
    fn check_human_lists_conflicts_then_a_summary() {
        let paths: Vec<String> = (0..5).map(|i| format!("src/{i}.rs")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let report = CheckReport {
            independent: false,
            specs: vec![spec("020"), spec("022"), spec("023")],
            overlaps: vec![overlap("020", "022", &paths)],
            ..CheckReport::default()
        };
        let text = render(|out| write_check_human(&report, out, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SPEC A  SPEC B  PATHS                                 REASON"
        );
        assert_eq!(
            lines[1],
            "020     022     src/0.rs, src/1.rs, src/2.rs +2 more  both declare `src/a.rs`"
        );
        assert_eq!(lines.last(), Some(&"3 specs, 1 overlap"));
        assert!(!text.contains('\x1b'));
        assert!(render(|out| write_check_human(&report, out, true)).contains("\x1b[31m"));
    }

    #[test]
    fn check_human_says_when_all_are_independent() {
        let report = CheckReport {
            independent: true,
            specs: vec![spec("1"), spec("2")],
            overlaps: Vec::new(),
            ..CheckReport::default()
        };
        let text = render(|out| write_check_human(&report, out, false));
        assert_eq!(text, "all 2 specs are independent\n");
    }

    fn plan() -> PlanReport {
        let plan_spec = |id: &str, wave: usize, deps: &[&str]| PlanSpec {
            id: id.to_owned(),
            title: format!("title {id}"),
            branch: format!("treefarm/{id}"),
            worktree: format!("/r.treefarm/{id}"),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            priority: 1,
            wave,
        };
        PlanReport {
            target: "roadmap".to_owned(),
            base: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            instances: 3,
            waves: vec![
                vec!["020".to_owned(), "021".to_owned()],
                vec!["022".to_owned()],
            ],
            specs: vec![
                plan_spec("020", 0, &[]),
                plan_spec("021", 0, &[]),
                plan_spec("022", 1, &["020"]),
            ],
        }
    }

    #[test]
    fn plan_json_has_the_design_shape() {
        let json = serde_json::to_value(plan()).expect("serializes");
        assert_eq!(json["target"], "roadmap");
        assert_eq!(json["instances"], 3);
        assert_eq!(json["waves"][1][0], "022");
        let s = &json["specs"][2];
        assert_eq!(s["branch"], "treefarm/022");
        assert_eq!(s["worktree"], "/r.treefarm/022");
        assert_eq!(s["depends_on"][0], "020");
        assert_eq!(s["wave"], 1);
    }

    #[test]
    fn plan_human_is_a_table_of_waves() {
        let text = render(|out| write_plan_human(&plan(), out, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "plan: 3 specs in 2 waves on 3 instances, into `roadmap` from 0123456789ab",
                "WAVE  SPEC  TITLE                  BRANCH        WORKTREE",
                "1     020   title 020              treefarm/020  /r.treefarm/020",
                "1     021   title 021              treefarm/021  /r.treefarm/021",
                "2     022   title 022 (after 020)  treefarm/022  /r.treefarm/022",
            ]
        );
    }
}
