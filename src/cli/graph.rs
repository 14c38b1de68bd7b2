//! `check --format dot|mermaid` and `plan --format dot|mermaid`: the
//! overlap graph (and the plan's waves) on stdout, a one-line summary on
//! stderr.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use crate::cli::args::Format;
use crate::cli::commands::{select, Selection};
use crate::cli::context::Ctx;
use crate::error::{ExitCode, InputError};
use crate::report::graph::{to_dot, to_mermaid, Graph, GraphNode, OverlapEdge};
use crate::schedule::plan_waves;

fn graph_of(sel: &Selection, waves: &[Vec<String>]) -> Graph {
    let wave: HashMap<&str, usize> = waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |id| (id.as_str(), i)))
        .collect();
    let members: HashSet<&str> = sel.specs.iter().map(|s| s.id.as_str()).collect();
    Graph {
        nodes: sel
            .specs
            .iter()
            .map(|s| GraphNode {
                id: s.id.clone(),
                title: s.title.clone(),
                wave: wave.get(s.id.as_str()).copied(),
                result: None,
            })
            .collect(),
        overlaps: sel
            .overlaps
            .iter()
            .map(|o| OverlapEdge {
                a: o.a.clone(),
                b: o.b.clone(),
                paths: o.paths.clone(),
            })
            .collect(),
        depends: sel
            .specs
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

/// `check --format dot|mermaid`: exit 3 when any specs overlap, like `check`.
pub fn check(
    ctx: &Ctx,
    ids: &[String],
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let sel = select(ctx, ids)?;
    emit(&graph_of(&sel, &[]), format, out)?;
    let n = sel.specs.len();
    if sel.overlaps.is_empty() {
        writeln!(err, "all {n} spec(s) are independent")?;
        Ok(ExitCode::Success)
    } else {
        writeln!(err, "{n} spec(s), {} overlap(s)", sel.overlaps.len())?;
        Ok(ExitCode::Overlaps)
    }
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
    emit(&graph_of(&sel, &waves), format, out)?;
    writeln!(
        err,
        "plan: {} spec(s) in {} wave(s) on {} instance(s)",
        sel.specs.len(),
        waves.len(),
        ctx.config.instances
    )?;
    Ok(ExitCode::Success)
}
