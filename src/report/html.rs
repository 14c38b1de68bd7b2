//! `treefarm report`: one self-contained HTML file showing a run at a
//! glance — a timeline (one row per spec), the overlap graph, per-spec
//! details and totals. Inline SVG and CSS and a few lines of vanilla JS; no
//! network, no external assets. The markup is also well-formed XML, so tests
//! can parse it strictly.
//!
//! Stable hooks for tests and scripts: `#timeline .row` (one per spec, with
//! `data-id`, `data-wave`, `data-merge-order`), `.bar` (with `data-kind`,
//! `data-start`, `data-end` in Unix ms), `#graph .node`, `#specs .spec`; the
//! script sets `data-rows` on `<body>` once it ran.

use std::fmt::Write as _;

use crate::report::check::cut;
use crate::report::graph::{edge_label, result_color, Graph};
use crate::report::human::format_duration;
use crate::report::timeline::{BarKind, Row, Timeline};

/// Token use and cost, as an agent wrapper reports it in
/// `instances/<id>/usage.json`; every field optional.
pub use crate::agents::Usage;

/// Everything the report shows about one spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecDetail {
    pub id: String,
    pub title: String,
    /// The outcome as people say it (`merged` for merged-and-pruned).
    pub result: String,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
    pub commits: usize,
    pub declared: Vec<String>,
    pub changed_files: Vec<String>,
    /// Changed files outside the declared ones.
    pub scope_creep: Vec<String>,
    pub conflict_paths: Vec<String>,
    /// `passed`, `refused: …` or `none configured`.
    pub gate: String,
    pub reason: Option<String>,
    /// What isolation refused an agent that succeeded anyway.
    pub denied: Option<String>,
    pub branch: String,
    /// Links relative to the report file (or absolute when it lives
    /// outside the run directory).
    pub log: Option<String>,
    pub prompt: Option<String>,
    pub gate_log: Option<String>,
    pub usage: Option<Usage>,
    /// `executor: slurm`: the last attempt's job (`job 42 COMPLETED`).
    pub job: Option<String>,
}

/// The whole report's data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub run_id: String,
    pub state: String,
    pub target: String,
    pub target_commit: Option<String>,
    pub timeline: Option<Timeline>,
    pub graph: Graph,
    pub specs: Vec<SpecDetail>,
    /// Rate limits and budgets: the budget that stopped the run, the
    /// concurrency limit and every backoff, one line each (see
    /// `human::pacing_lines`); empty when nothing was paced.
    pub pacing: Vec<String>,
}

/// Text or attribute content with markup characters escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `HH:MM:SS.mmm` UTC of a Unix-ms time.
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

/// The colour of a timeline bar.
fn bar_color(kind: BarKind) -> &'static str {
    match kind {
        BarKind::Waiting => "#e6e9ef",
        BarKind::Planting => "#9bb7d4",
        BarKind::Attempt => "#4e8fd6",
        BarKind::AttemptFailed => "#d9534f",
        BarKind::Commit => "#8e6bbf",
        BarKind::MergeWait => "#f3d98b",
        BarKind::Merge => "#3ea55a",
        BarKind::Conflict => "#b52a2a",
        BarKind::Refused => "#e07b39",
    }
}

const LEGEND: &[(BarKind, &str)] = &[
    (BarKind::Waiting, "waiting"),
    (BarKind::Planting, "planting"),
    (BarKind::Attempt, "agent attempt"),
    (BarKind::AttemptFailed, "failed attempt"),
    (BarKind::Commit, "commit"),
    (BarKind::MergeWait, "waiting to merge"),
    (BarKind::Merge, "gate + merge"),
    (BarKind::Conflict, "conflict"),
    (BarKind::Refused, "refused"),
];

/// The colour of the tab at the start of every timeline row; used by no
/// other element, so a screenshot's rows can be counted by it.
pub const ROW_TAB_COLOR: [u8; 3] = [0x25, 0x63, 0xeb];

const CSS: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1d2330; background: #ffffff; }
header { padding: 16px 24px; background: #f4f6fa; border-bottom: 1px solid #dde2ea; }
h1 { font-size: 20px; margin: 0 0 6px 0; }
h2 { font-size: 16px; margin: 24px 0 8px 0; }
main { padding: 0 24px 24px 24px; }
.totals { display: flex; flex-wrap: wrap; gap: 8px 24px; margin: 0; padding: 0; list-style: none; }
.totals b { font-size: 16px; }
.layout { display: flex; gap: 16px; align-items: flex-start; }
#detail { min-width: 240px; max-width: 300px; padding: 8px 12px; border: 1px solid #dde2ea; border-radius: 6px; background: #fafbfd; font-size: 13px; position: sticky; top: 8px; }
svg text { font: 12px system-ui, Helvetica, Arial, sans-serif; fill: #1d2330; }
svg .axis text { fill: #6b7385; font-size: 11px; }
svg .edge-label { fill: #a12a22; font-size: 11px; }
svg .dep-label { fill: #555555; font-size: 11px; }
.bar:hover { stroke: #000000; stroke-width: 1.5; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 6px 0; }
.legend span i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; border-radius: 2px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #eceff4; vertical-align: top; }
.result { padding: 1px 6px; border-radius: 4px; color: #111111; }
.spec { border: 1px solid #dde2ea; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.spec h3 { margin: 0 0 4px 0; font-size: 15px; }
.undeclared { color: #a12a22; font-weight: bold; }
.paths { margin: 2px 0; padding-left: 20px; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: #6b7385; }
"#;

/// Shows a bar's exact times in the side panel; counts the rows it drew.
const JS: &str = r#"
(function () {
  var panel = document.getElementById('detail');
  function iso(ms) { return new Date(Number(ms)).toISOString().replace('T', ' ').replace('Z', ' UTC'); }
  function show(el) {
    var s = Number(el.getAttribute('data-start')), e = Number(el.getAttribute('data-end'));
    var row = el.parentNode.getAttribute('data-id');
    panel.textContent = '';
    var lines = [row + ': ' + el.getAttribute('data-label'), 'from ' + iso(s), 'to   ' + iso(e), 'took ' + ((e - s) / 1000).toFixed(3) + ' s'];
    lines.forEach(function (l) { var d = document.createElement('div'); d.textContent = l; panel.appendChild(d); });
  }
  var bars = document.querySelectorAll('#timeline .bar');
  Array.prototype.forEach.call(bars, function (b) {
    b.addEventListener('mouseenter', function () { show(b); });
    b.addEventListener('click', function () { show(b); });
  });
  document.body.setAttribute('data-rows', String(document.querySelectorAll('#timeline .row').length));
})();
"#;

/// Renders the report as one HTML document.
pub fn render(report: &RunReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    let _ = writeln!(h, "<title>treefarm run {}</title>", esc(&report.run_id));
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>");
    let _ = writeln!(h, "<body data-run-id=\"{}\">", esc(&report.run_id));
    header(&mut h, report);
    h.push_str("<main>\n");
    timeline(&mut h, report);
    graph_section(&mut h, report);
    specs(&mut h, report);
    h.push_str("</main>\n");
    let _ = writeln!(h, "<script>//<![CDATA[{JS}//]]></script>");
    h.push_str("</body>\n</html>\n");
    h
}

fn header(h: &mut String, r: &RunReport) {
    let count = |f: &dyn Fn(&str) -> bool| r.specs.iter().filter(|s| f(&s.result)).count();
    let merged = count(&|s| s == "merged");
    let kept = r.specs.iter().filter(|s| is_kept(&s.result)).count();
    let _ = writeln!(h, "<header>\n<h1>treefarm run {}</h1>", esc(&r.run_id));
    let _ = writeln!(
        h,
        "<div class=\"muted\">{}; into <code>{}</code> at <code>{}</code></div>",
        esc(&r.state),
        esc(&r.target),
        esc(r.target_commit.as_deref().unwrap_or("-"))
    );
    h.push_str("<ul class=\"totals\" id=\"totals\">\n");
    let mut total = |key: &str, label: &str, value: String| {
        let _ = writeln!(
            h,
            "<li data-total=\"{key}\">{label} <b>{}</b></li>",
            esc(&value)
        );
    };
    total("specs", "specs", r.specs.len().to_string());
    if let Some(t) = &r.timeline {
        let wall = t.wall_ms();
        let agent = t.agent_ms();
        total("wall", "wall time", format_duration(wall));
        total("agent", "agent time", format_duration(agent));
        let speedup = if wall > 0 {
            format!("{:.2}x", agent as f64 / wall as f64)
        } else {
            "-".into()
        };
        total("speedup", "parallel speed-up", speedup);
    }
    total("merged", "merged", merged.to_string());
    total("kept", "kept", kept.to_string());
    for (key, label) in [
        ("conflicted", "conflicted"),
        ("failed", "failed"),
        ("timed_out", "timed_out"),
        ("unchanged", "unchanged"),
        ("refused", "refused"),
        ("skipped", "skipped"),
    ] {
        let n = count(&|s| s == key);
        if n > 0 {
            total(key, label, n.to_string());
        }
    }
    let tokens: u64 = r
        .specs
        .iter()
        .filter_map(|s| s.usage.as_ref())
        .map(|u| u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0))
        .sum();
    if tokens > 0 {
        total("tokens", "tokens", tokens.to_string());
    }
    let cost: f64 = r
        .specs
        .iter()
        .filter_map(|s| s.usage.as_ref()?.cost_usd)
        .sum();
    if cost > 0.0 {
        total("cost", "cost", format!("${cost:.2}"));
    }
    h.push_str("</ul>\n");
    if !r.pacing.is_empty() {
        h.push_str("<ul class=\"pacing\" id=\"pacing\">\n");
        for line in &r.pacing {
            let _ = writeln!(h, "<li>{}</li>", esc(line.trim()));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</header>\n");
}

/// Outcomes whose branch and worktree treefarm keeps for a person to look at.
fn is_kept(result: &str) -> bool {
    matches!(
        result,
        "failed" | "timed_out" | "unchanged" | "conflicted" | "refused"
    )
}

fn outcome_color(result: &str) -> &'static str {
    result_color(Some(result))
}

/// A tick step giving at most about ten ticks over `span` ms.
fn tick_step(span: u64) -> u64 {
    const STEPS: &[u64] = &[
        100, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 10)
        .unwrap_or(span.div_ceil(10).max(1))
}

const LABEL_W: f64 = 190.0;
const CHART_W: f64 = 820.0;
/// Room right of the chart for the merge order and outcome.
const TAIL_W: f64 = 240.0;
const ROW_H: f64 = 28.0;
const AXIS_H: f64 = 24.0;

/// The rows in display order: by wave, then as the run listed them.
fn ordered_rows(t: &Timeline) -> Vec<&Row> {
    let mut rows: Vec<(usize, &Row)> = t.rows.iter().enumerate().collect();
    rows.sort_by_key(|(i, r)| (r.wave.unwrap_or(usize::MAX), *i));
    rows.into_iter().map(|(_, r)| r).collect()
}

fn timeline(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Timeline</h2>\n");
    let Some(t) = &r.timeline else {
        h.push_str("<p class=\"muted\">no events journalled for this run</p>\n");
        return;
    };
    if !t.timed_events {
        h.push_str("<p class=\"muted\">this journal predates event times: one bar per spec, from state.json</p>\n");
    }
    h.push_str("<div class=\"legend\">");
    for (kind, label) in LEGEND {
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>{label}</span>",
            bar_color(*kind)
        );
    }
    h.push_str("</div>\n<div class=\"layout\">\n");
    let span = t.wall_ms().max(1);
    let x = |ms: u64| LABEL_W + (ms.saturating_sub(t.start_ms) as f64 / span as f64) * CHART_W;
    let rows = ordered_rows(t);
    let height = AXIS_H + ROW_H * rows.len() as f64 + 8.0;
    let width = LABEL_W + CHART_W + TAIL_W;
    let _ = writeln!(
        h,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" data-start=\"{}\" data-end=\"{}\">",
        t.start_ms, t.end_ms
    );
    // Axis.
    h.push_str("<g class=\"axis\">\n");
    let step = tick_step(span);
    let mut tick = 0;
    while tick <= span {
        let tx = x(t.start_ms + tick);
        let _ = writeln!(
            h,
            "<line x1=\"{tx:.1}\" y1=\"{AXIS_H}\" x2=\"{tx:.1}\" y2=\"{height}\" stroke=\"#eef0f4\" /><text x=\"{tx:.1}\" y=\"14\" text-anchor=\"middle\">{}</text>",
            esc(&format_duration(tick))
        );
        tick += step;
    }
    h.push_str("</g>\n");
    for (i, row) in rows.iter().enumerate() {
        let y = AXIS_H + ROW_H * i as f64;
        let detail = r.specs.iter().find(|s| s.id == row.id);
        let result = detail.map_or("", |s| s.result.as_str());
        let _ = writeln!(
            h,
            "<g class=\"row\" data-id=\"{}\" data-wave=\"{}\" data-merge-order=\"{}\" data-result=\"{}\">",
            esc(&row.id),
            row.wave.map(|w| w.to_string()).unwrap_or_default(),
            row.merge_order.map(|w| w.to_string()).unwrap_or_default(),
            esc(result)
        );
        // Waves alternate the row background.
        let band = if row.wave.unwrap_or(0) % 2 == 0 {
            "#f7f8fb"
        } else {
            "#ffffff"
        };
        let _ = writeln!(
            h,
            "<rect x=\"0\" y=\"{y}\" width=\"{}\" height=\"{ROW_H}\" fill=\"{band}\" />",
            LABEL_W + CHART_W + TAIL_W
        );
        let [tr, tg, tb] = ROW_TAB_COLOR;
        let _ = writeln!(
            h,
            "<rect class=\"tab\" x=\"2\" y=\"{}\" width=\"6\" height=\"{}\" fill=\"#{tr:02x}{tg:02x}{tb:02x}\" />",
            y + 4.0,
            ROW_H - 8.0
        );
        let _ = writeln!(
            h,
            "<rect x=\"12\" y=\"{}\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\" />",
            y + 9.0,
            outcome_color(result)
        );
        let wave = row.wave.map(|w| format!("w{w} ")).unwrap_or_default();
        let _ = writeln!(
            h,
            "<text x=\"28\" y=\"{}\"><tspan class=\"muted\" fill=\"#6b7385\">{}</tspan>{}</text>",
            y + 18.0,
            esc(&wave),
            esc(&cut(&row.id, 14))
        );
        // Scope creep shows on the row itself, not only in the details.
        if let Some(creep) = detail.map(|d| &d.scope_creep).filter(|c| !c.is_empty()) {
            let _ = writeln!(
                h,
                "<text class=\"scope-flag\" x=\"{}\" y=\"{}\" fill=\"#a12a22\" font-weight=\"bold\">⚠ {} undeclared<title>{}</title></text>",
                LABEL_W - 92.0,
                y + 18.0,
                creep.len(),
                esc(&format!("changed undeclared files: {}", creep.join(", ")))
            );
        }
        for bar in &row.bars {
            let bx = x(bar.start_ms);
            let bw = (x(bar.end_ms) - bx).max(2.0);
            let title = format!(
                "{}: {} — {} → {} ({})",
                row.id,
                bar.label,
                clock(bar.start_ms),
                clock(bar.end_ms),
                format_duration(bar.end_ms.saturating_sub(bar.start_ms))
            );
            let _ = writeln!(
                h,
                "<rect class=\"bar\" data-kind=\"{}\" data-start=\"{}\" data-end=\"{}\" data-label=\"{}\" x=\"{bx:.1}\" y=\"{}\" width=\"{bw:.1}\" height=\"{}\" rx=\"2\" fill=\"{}\"><title>{}</title></rect>",
                bar.kind.as_str(),
                bar.start_ms,
                bar.end_ms,
                esc(&bar.label),
                y + 5.0,
                ROW_H - 10.0,
                bar_color(bar.kind),
                esc(&title)
            );
        }
        for mark in &row.marks {
            let mx = x(mark.at_ms);
            let _ = writeln!(
                h,
                "<path class=\"mark\" data-kind=\"{}\" d=\"M {mx:.1} {} l 5 7 l -5 7 l -5 -7 z\" fill=\"#333333\"><title>{}</title></path>",
                mark.kind,
                y + 7.0,
                esc(&format!("{}: {} at {}", row.id, mark.label, clock(mark.at_ms)))
            );
        }
        if let (Some(order), Some(last)) = (row.merge_order, row.bars.last()) {
            let outcome = match last.kind {
                BarKind::Conflict | BarKind::Refused => format!(" {}", last.label),
                _ => String::new(),
            };
            let _ = writeln!(
                h,
                "<text class=\"merge-order\" x=\"{:.1}\" y=\"{}\" fill=\"#3b4252\">#{order}{}</text>",
                x(last.end_ms) + 8.0,
                y + 18.0,
                esc(&cut(&outcome, 34))
            );
        }
        h.push_str("</g>\n");
    }
    h.push_str("</svg>\n");
    h.push_str("<div id=\"detail\"><div class=\"muted\">hover a bar for its exact times; <i>wN</i> is the wave a spec started in, <i>#N</i> its place in the merge order</div></div>\n</div>\n");
}

const NODE_W: f64 = 160.0;
const NODE_H: f64 = 40.0;
const COL_W: f64 = 250.0;
const NODE_PITCH: f64 = 76.0;

fn graph_section(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Overlap graph</h2>\n");
    let g = &r.graph;
    if g.nodes.is_empty() {
        h.push_str("<p class=\"muted\">no specs</p>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} overlap(s), {} dependency edge(s); columns are waves, red lines overlaps (labelled with the paths), dashed arrows dependencies</p>",
        g.overlaps.len(),
        g.depends.len()
    );
    // Columns by wave, then by list order.
    let mut columns: Vec<Vec<usize>> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let col = n.wave.unwrap_or(0);
        if columns.len() <= col {
            columns.resize(col + 1, Vec::new());
        }
        columns[col].push(i);
    }
    let mut pos = vec![(0.0, 0.0); g.nodes.len()];
    for (c, col) in columns.iter().enumerate() {
        for (k, &i) in col.iter().enumerate() {
            pos[i] = (20.0 + COL_W * c as f64, 30.0 + NODE_PITCH * k as f64);
        }
    }
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(1);
    let width = 40.0 + COL_W * columns.len().max(1) as f64;
    let height = 60.0 + NODE_PITCH * tallest as f64;
    let index = |id: &str| g.nodes.iter().position(|n| n.id == id);
    let _ = writeln!(
        h,
        "<svg id=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    h.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555555\" /></marker></defs>\n");
    for c in 0..columns.len() {
        if g.nodes.iter().any(|n| n.wave.is_some()) {
            let _ = writeln!(
                h,
                "<text x=\"{}\" y=\"16\" fill=\"#6b7385\">wave {}</text>",
                20.0 + COL_W * c as f64,
                c + 1
            );
        }
    }
    // A curve between two node centres, bent so edges within one column
    // stay visible; returns the path and its midpoint.
    // Ends sit on the boxes' sides (arrowheads stay visible): left/right
    // between columns, top/bottom within one.
    let curve = |a: usize, b: usize, bend: f64| {
        let ((ax, ay), (bx, by)) = if pos[a].0 == pos[b].0 {
            let down = pos[b].1 > pos[a].1;
            let (ya, yb) = if down {
                (pos[a].1 + NODE_H, pos[b].1)
            } else {
                (pos[a].1, pos[b].1 + NODE_H)
            };
            ((pos[a].0 + NODE_W / 2.0, ya), (pos[b].0 + NODE_W / 2.0, yb))
        } else {
            let right = pos[b].0 > pos[a].0;
            let (xa, xb) = if right {
                (pos[a].0 + NODE_W, pos[b].0)
            } else {
                (pos[a].0, pos[b].0 + NODE_W)
            };
            ((xa, pos[a].1 + NODE_H / 2.0), (xb, pos[b].1 + NODE_H / 2.0))
        };
        let (mx, my) = ((ax + bx) / 2.0, (ay + by) / 2.0);
        let (dx, dy) = (bx - ax, by - ay);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (cx, cy) = (mx - dy / len * bend, my + dx / len * bend);
        let d = format!("M {ax:.1} {ay:.1} Q {cx:.1} {cy:.1} {bx:.1} {by:.1}");
        (d, (mx + cx) / 2.0, (my + cy) / 2.0)
    };
    for e in &g.overlaps {
        let (Some(a), Some(b)) = (index(&e.a), index(&e.b)) else {
            continue;
        };
        let bend = if pos[a].0 == pos[b].0 { 60.0 } else { 20.0 };
        let (d, lx, ly) = curve(a, b, bend);
        let label = edge_label(&e.paths);
        let _ = writeln!(
            h,
            "<g class=\"edge overlap\" data-a=\"{}\" data-b=\"{}\"><path d=\"{d}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" /><text class=\"edge-label\" x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{}</text><title>{}</title></g>",
            esc(&e.a),
            esc(&e.b),
            esc(&cut(&label, 40)),
            esc(&format!("{} and {} may both write: {}", e.a, e.b, e.paths.join(", ")))
        );
    }
    for (from, to) in &g.depends {
        let (Some(a), Some(b)) = (index(from), index(to)) else {
            continue;
        };
        let (d, _, _) = curve(a, b, -30.0);
        let _ = writeln!(
            h,
            "<g class=\"edge depends\" data-from=\"{}\" data-to=\"{}\"><path d=\"{d}\" fill=\"none\" stroke=\"#555555\" stroke-width=\"1.5\" stroke-dasharray=\"5 4\" marker-end=\"url(#arrow)\" /><title>{}</title></g>",
            esc(from),
            esc(to),
            esc(&format!("{to} depends on {from}"))
        );
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let result = n.result.as_deref().unwrap_or("");
        let _ = writeln!(
            h,
            "<g class=\"node\" data-id=\"{}\" data-result=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\" fill=\"{}\" stroke=\"#3b4252\" /><text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text><text x=\"{}\" y=\"{}\">{}</text><title>{}</title></g>",
            esc(&n.id),
            esc(result),
            result_color(n.result.as_deref()),
            x + 8.0,
            y + 16.0,
            esc(&cut(&n.id, 20)),
            x + 8.0,
            y + 32.0,
            esc(&cut(&n.title, 22)),
            esc(&format!("{} {} ({})", n.id, n.title, if result.is_empty() { "-" } else { result }))
        );
    }
    h.push_str("</svg>\n");
}

fn specs(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Specs</h2>\n<table id=\"spec-table\">\n<tr><th>spec</th><th>title</th><th>result</th><th>attempts</th><th>time</th><th>commits</th><th>files</th><th>undeclared</th><th>tokens</th><th>cost</th></tr>\n");
    for s in &r.specs {
        let tokens = s
            .usage
            .as_ref()
            .and_then(|u| match (u.input_tokens, u.output_tokens) {
                (None, None) => None,
                (i, o) => Some(format!("{} in / {} out", i.unwrap_or(0), o.unwrap_or(0))),
            })
            .unwrap_or_else(|| "-".into());
        let cost = s
            .usage
            .as_ref()
            .and_then(|u| u.cost_usd)
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#spec-{}\">{}</a></td><td>{}</td><td><span class=\"result\" style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.id),
            esc(&s.id),
            esc(&s.title),
            outcome_color(&s.result),
            esc(&s.result),
            match &s.job {
                Some(job) => format!("{}<br><small>{}</small>", s.attempts, esc(job)),
                None => s.attempts.to_string(),
            },
            s.duration_ms.map(format_duration).unwrap_or_else(|| "-".into()),
            s.commits,
            s.changed_files.len(),
            s.scope_creep.len(),
            esc(&tokens),
            esc(&cost)
        );
    }
    h.push_str("</table>\n<div id=\"specs\">\n");
    for s in &r.specs {
        let _ = writeln!(
            h,
            "<section class=\"spec\" id=\"spec-{}\" data-id=\"{}\" data-result=\"{}\">",
            esc(&s.id),
            esc(&s.id),
            esc(&s.result)
        );
        let _ = writeln!(
            h,
            "<h3>{} <span class=\"result\" style=\"background:{}\">{}</span> {}</h3>",
            esc(&s.id),
            outcome_color(&s.result),
            esc(&s.result),
            esc(&s.title)
        );
        let _ = write!(h, "<div>branch <code>{}</code>", esc(&s.branch));
        for (label, link) in [
            ("log", &s.log),
            ("prompt", &s.prompt),
            ("gate log", &s.gate_log),
        ] {
            if let Some(link) = link {
                let _ = write!(h, " · <a href=\"{}\">{label}</a>", esc(link));
            }
        }
        h.push_str("</div>\n");
        let _ = writeln!(
            h,
            "<div>{} attempt(s), {}, {} commit(s); gate: {}</div>",
            s.attempts,
            s.duration_ms
                .map(format_duration)
                .unwrap_or_else(|| "not run".into()),
            s.commits,
            esc(&s.gate)
        );
        if let Some(denied) = &s.denied {
            let _ = writeln!(h, "<div>isolation: {}</div>", esc(denied));
        }
        if let Some(reason) = &s.reason {
            let _ = writeln!(h, "<div>reason: {}</div>", esc(reason));
        }
        if let Some(u) = &s.usage {
            let mut parts = Vec::new();
            if let Some(m) = &u.model {
                parts.push(format!("model {m}"));
            }
            if let Some(i) = u.input_tokens {
                parts.push(format!("{i} input tokens"));
            }
            if let Some(o) = u.output_tokens {
                parts.push(format!("{o} output tokens"));
            }
            if let Some(c) = u.cost_usd {
                parts.push(format!("${c:.4}"));
            }
            let _ = writeln!(
                h,
                "<div class=\"usage\">usage: {}</div>",
                esc(&parts.join(", "))
            );
        }
        let _ = writeln!(
            h,
            "<div>declared: <code>{}</code></div>",
            esc(&s.declared.join("  "))
        );
        if s.changed_files.is_empty() {
            h.push_str("<div class=\"muted\">no files changed</div>\n");
        } else {
            let _ = writeln!(
                h,
                "<div>changed files ({}, {} undeclared):</div>\n<ul class=\"paths changed\">",
                s.changed_files.len(),
                s.scope_creep.len()
            );
            for f in &s.changed_files {
                if s.scope_creep.contains(f) {
                    let _ = writeln!(h, "<li class=\"undeclared\">{} (undeclared)</li>", esc(f));
                } else {
                    let _ = writeln!(h, "<li>{}</li>", esc(f));
                }
            }
            h.push_str("</ul>\n");
        }
        if !s.conflict_paths.is_empty() {
            h.push_str("<div>conflicting paths:</div>\n<ul class=\"paths conflict\">");
            for p in &s.conflict_paths {
                let _ = write!(h, "<li>{}</li>", esc(p));
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ticks_stay_few() {
        for span in [1, 999, 60_000, 3_600_000, 100_000_000] {
            assert!(span / tick_step(span) <= 10, "{span}");
        }
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(3_723_004), "01:02:03.004");
    }
}
