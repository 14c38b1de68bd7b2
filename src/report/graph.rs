//! The overlap graph of a set of specs — nodes are specs, undirected edges
//! are overlaps labelled with the paths both may write, arrows are declared
//! dependencies — and its text renderings: Graphviz DOT (`check`/`plan
//! --format dot`) and Mermaid (`--format mermaid`). The HTML report draws the
//! same graph as SVG (see `report::html`).

use std::fmt::Write as _;

/// One spec in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub id: String,
    pub title: String,
    /// 0-based wave the spec starts in, when the graph shows a plan.
    pub wave: Option<usize>,
    /// The outcome in a run (`merged`, `conflicted`, …), when known.
    pub result: Option<String>,
}

/// Two specs that may write the same paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlapEdge {
    pub a: String,
    pub b: String,
    /// The paths (or globs) both may write; may be empty when unknown.
    pub paths: Vec<String>,
}

/// Specs, overlaps and dependencies (`from` must merge before `to` starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub overlaps: Vec<OverlapEdge>,
    /// `(dependency, dependent)` pairs between nodes of the graph.
    pub depends: Vec<(String, String)>,
    /// Number of waves when the graph shows a plan; 0 otherwise.
    pub waves: usize,
}

/// An edge's label: the first paths, then how many more.
pub fn edge_label(paths: &[String]) -> String {
    crate::report::check::paths_cell(paths)
}

/// A DOT double-quoted string's content.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Fill colour of a node by its result.
pub fn result_color(result: Option<&str>) -> &'static str {
    match result {
        Some("merged" | "pruned" | "succeeded") => "#7bc47f",
        Some("conflicted" | "failed" | "timed_out" | "unchanged" | "refused") => "#e0685f",
        Some("skipped") => "#e8b94a",
        Some(_) => "#b8c4d6",
        None => "#dde6f3",
    }
}

/// The nodes of each wave in order, then those in no wave (`check`, or a
/// wave past the plan's count): what DOT clusters and Mermaid subgraphs draw.
fn by_wave(graph: &Graph) -> (Vec<Vec<&GraphNode>>, Vec<&GraphNode>) {
    let waves = (0..graph.waves)
        .map(|w| graph.nodes.iter().filter(|n| n.wave == Some(w)).collect())
        .collect();
    let loose = graph
        .nodes
        .iter()
        .filter(|n| n.wave.is_none_or(|w| w >= graph.waves))
        .collect();
    (waves, loose)
}

/// The graph in Graphviz DOT: an undirected graph whose overlap edges are
/// labelled with paths and whose dependency edges are dashed arrows; waves
/// become clusters. Pipe into `dot -Tsvg`.
pub fn to_dot(graph: &Graph) -> String {
    let mut out = String::new();
    out.push_str("graph treefarm {\n");
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    let node_line = |n: &GraphNode, indent: &str| {
        let label = if n.title.is_empty() {
            n.id.clone()
        } else {
            format!("{}\n{}", n.id, n.title)
        };
        format!(
            "{indent}\"{}\" [label=\"{}\", fillcolor=\"{}\"];\n",
            dot_escape(&n.id),
            dot_escape(&label),
            result_color(n.result.as_deref())
        )
    };
    let (waves, loose) = by_wave(graph);
    for (w, nodes) in waves.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_wave{} {{", w + 1);
        let _ = writeln!(out, "    label=\"wave {}\";", w + 1);
        out.push_str("    style=dashed;\n");
        for n in nodes {
            out.push_str(&node_line(n, "    "));
        }
        out.push_str("  }\n");
    }
    for n in loose {
        out.push_str(&node_line(n, "  "));
    }
    for e in &graph.overlaps {
        let _ = writeln!(
            out,
            "  \"{}\" -- \"{}\" [label=\"{}\", color=\"#c0392b\", fontcolor=\"#c0392b\"];",
            dot_escape(&e.a),
            dot_escape(&e.b),
            dot_escape(&edge_label(&e.paths))
        );
    }
    for (from, to) in &graph.depends {
        let _ = writeln!(
            out,
            "  \"{}\" -- \"{}\" [dir=forward, style=dashed, label=\"before\"];",
            dot_escape(from),
            dot_escape(to)
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid label's content: quotes and markup characters as entity codes.
fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '|' => out.push_str("#124;"),
            '\n' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The graph as a Mermaid flowchart (renders in GitHub Markdown inside a
/// ```` ```mermaid ```` block): waves are subgraphs, overlaps are labelled
/// lines, dependencies dotted arrows.
pub fn to_mermaid(graph: &Graph) -> String {
    // Spec ids may hold characters Mermaid ids cannot: number the nodes.
    let key: std::collections::HashMap<&str, String> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), format!("s{i}")))
        .collect();
    let name = |id: &str| key.get(id).cloned().unwrap_or_else(|| id.to_string());
    let mut out = String::from("flowchart LR\n");
    let node_line = |n: &GraphNode, indent: &str| {
        let label = if n.title.is_empty() {
            n.id.clone()
        } else {
            format!("{}: {}", n.id, n.title)
        };
        format!("{indent}{}[\"{}\"]\n", name(&n.id), mermaid_escape(&label))
    };
    let (waves, loose) = by_wave(graph);
    for (w, nodes) in waves.iter().enumerate() {
        let _ = writeln!(out, "  subgraph wave{}[\"wave {}\"]", w + 1, w + 1);
        for n in nodes {
            out.push_str(&node_line(n, "    "));
        }
        out.push_str("  end\n");
    }
    for n in loose {
        out.push_str(&node_line(n, "  "));
    }
    for e in &graph.overlaps {
        let _ = writeln!(
            out,
            "  {} ---|\"{}\"| {}",
            name(&e.a),
            mermaid_escape(&edge_label(&e.paths)),
            name(&e.b)
        );
    }
    for (from, to) in &graph.depends {
        let _ = writeln!(out, "  {} -.->|before| {}", name(from), name(to));
    }
    for n in graph.nodes.iter().filter(|n| n.result.is_some()) {
        let _ = writeln!(
            out,
            "  style {} fill:{}",
            name(&n.id),
            result_color(n.result.as_deref())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Graph {
        Graph {
            nodes: vec![
                GraphNode {
                    id: "020".into(),
                    title: "retry \"fast\"".into(),
                    wave: Some(0),
                    result: None,
                },
                GraphNode {
                    id: "022".into(),
                    title: "timeouts".into(),
                    wave: Some(1),
                    result: None,
                },
                GraphNode {
                    id: "030".into(),
                    title: String::new(),
                    wave: Some(1),
                    result: None,
                },
            ],
            overlaps: vec![OverlapEdge {
                a: "020".into(),
                b: "022".into(),
                paths: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            }],
            depends: vec![("020".into(), "030".into())],
            waves: 2,
        }
    }

    #[test]
    fn dot_has_clusters_edges_and_escapes_quotes() {
        let dot = to_dot(&sample());
        assert!(dot.contains("subgraph cluster_wave2"), "{dot}");
        assert!(dot.contains("retry \\\"fast\\\""), "{dot}");
        assert!(dot.contains("\"020\" -- \"022\" [label=\"a, b, c +1 more\""));
        assert!(dot.contains("\"020\" -- \"030\" [dir=forward"));
        assert!(dot.ends_with("}\n"));
    }

    #[test]
    fn mermaid_numbers_nodes_and_escapes_labels() {
        let m = to_mermaid(&sample());
        assert!(m.starts_with("flowchart LR\n"));
        assert!(m.contains("s0[\"020: retry #quot;fast#quot;\"]"), "{m}");
        assert!(m.contains("s0 ---|\"a, b, c +1 more\"| s1"), "{m}");
        assert!(m.contains("s0 -.->|before| s2"), "{m}");
        assert!(m.ends_with('\n'));
    }
}
