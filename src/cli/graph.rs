//! `check --format dot|mermaid` and `plan --format dot|mermaid`: the
//! overlap graph (and the plan's waves) on stdout, a one-line summary on
//! stderr.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use crate::cli::args::Format;
use crate::cli::check::{evaluate, exit_code, CheckOptions};
use crate::cli::commands::{select, spec_folder};
use crate::cli::context::Ctx;
use crate::error::{ExitCode, InputError};
use crate::overlap::Overlap;
use crate::report::check::write_diagnostics;
use crate::report::graph::{to_dot, to_mermaid, Graph, GraphNode, OverlapEdge};
use crate::schedule::plan_waves;
use crate::spec::Spec;

fn graph_of(specs: &[Spec], overlaps: &[Overlap], waves: &[Vec<String>]) -> Graph {
    let wave: HashMap<&str, usize> = waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |id| (id.as_str(), i)))
        .collect();
    let members: HashSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    Graph {
        nodes: specs
            .iter()
            .map(|s| GraphNode {
                id: s.id.clone(),
                title: s.title.clone(),
                wave: wave.get(s.id.as_str()).copied(),
                result: None,
            })
            .collect(),
        overlaps: overlaps
            .iter()
            .map(|o| OverlapEdge {
                a: o.a.clone(),
                b: o.b.clone(),
                paths: o.paths.clone(),
            })
            .collect(),
        depends: specs
            .iter()
            .flat_map(|s| {
                s.depends_on
                    .iter()
                    .filter(|d| members.contains(d.as_str()))
                    .map(|d| (d.clone(), s.id.clone()))
            })
            .collect(),
        waves: waves.len(),
    }
}

fn emit(graph: &Graph, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = match format {
        Format::Mermaid => to_mermaid(graph),
        _ => to_dot(graph),
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `check --format dot|mermaid`: the graph of the valid selected specs, the
/// diagnostics on stderr, and `check`'s exit codes (2 invalid, 3 overlaps).
pub fn check(
    ctx: &Ctx,
    opts: &CheckOptions,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let folder = spec_folder(ctx)?;
    let (specs, report) = evaluate(ctx, &folder, opts)?;
    emit(&graph_of(&specs, &report.overlaps, &[]), format, out)?;
    let color = crate::report::human::stderr_color();
    write_diagnostics(&report.errors, &report.warnings, err, color)?;
    let n = specs.len();
    if report.overlaps.is_empty() {
        writeln!(err, "all {n} spec(s) are independent")?;
    } else {
        writeln!(err, "{n} spec(s), {} overlap(s)", report.overlaps.len())?;
    }
    if !report.invalid.is_empty() {
        writeln!(
            err,
            "{} invalid spec(s) left out of the graph",
            report.invalid.len()
        )?;
    }
    Ok(exit_code(&report))
}

/// `plan --format dot|mermaid`: waves as clusters/subgraphs.
pub fn plan(
    ctx: &Ctx,
    ids: &[String],
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if ctx.config.instances == 0 {
        return Err(InputError::new("--instances must be at least 1").into());
    }
    let sel = select(ctx, ids)?;
    let waves = plan_waves(sel.nodes(), &sel.conflicts(), ctx.config.instances);
    emit(&graph_of(&sel.specs, &sel.overlaps, &waves), format, out)?;
    writeln!(
        err,
        "plan: {} spec(s) in {} wave(s) on {} instance(s)",
        sel.specs.len(),
        waves.len(),
        ctx.config.instances
    )?;
    Ok(ExitCode::Success)
}
