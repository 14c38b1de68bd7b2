//! The house rules of `src/`, read from the source as Rust (every `use`
//! tree and every `crate::`/`super::` path, test modules left out) and
//! checked as a graph of files:
//!
//! - arrows point down: nothing outside `runner/` and `cli/` names
//!   `crate::runner` (the pure policy values live in `policy/`, below the
//!   journal, the config and the reports);
//! - no import circles between files, however long;
//! - the run machine takes its whole vocabulary from `runner/messages.rs`
//!   and reaches into no room of the runner that does the work;
//! - `policy/` imports only `agents` data types, `merge_queue.rs` nothing.
//!
//! The oracle is the module tree itself, walked from `src/lib.rs` by its
//! `mod` declarations as rustc does, so a file that is not compiled is not
//! judged and a new file cannot hide.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// One compiled source file: its module path and what it names.
struct Source {
    /// Relative to `src/`, e.g. `runner/agent/instance.rs`.
    rel: String,
    /// `["runner", "agent", "instance"]`; empty for `lib.rs`.
    module: Vec<String>,
    /// Absolute module paths named by `use` trees and in code.
    named: Vec<Vec<String>>,
    /// What the file re-exports: the name it gives → the absolute path.
    reexports: BTreeMap<String, Vec<String>>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(l)
                if l.tokens.to_string().split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "test"))
    })
}

fn attrs_of(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

/// A `use` tree flattened: each leaf's path and the name it is bound to
/// (`None` for a glob).
fn flatten(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.clone(), prefix.last().cloned()));
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((path, Some(name)));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| flatten(t, prefix, out)),
    }
}

/// Collects what one file names, skipping `#[cfg(test)]` items; `mods` are
/// the (non-test) `mod x;` declarations with their `#[path]`, if any.
struct Collector<'a> {
    module: Vec<String>,
    /// Inline (non-test) modules we are inside, e.g. `mod duration { .. }`.
    inline: Vec<String>,
    /// Whether a relative path's first segment is a module of the crate
    /// below `at` (then `use child::X` means `self::child::X`).
    is_module: &'a dyn Fn(&[String]) -> bool,
    named: Vec<Vec<String>>,
    reexports: BTreeMap<String, Vec<String>>,
    mods: Vec<(String, Option<String>)>,
}

impl Collector<'_> {
    fn here(&self) -> Vec<String> {
        let mut at = self.module.clone();
        at.extend(self.inline.iter().cloned());
        at
    }

    /// The absolute module path of `segments` as written here, or `None`
    /// for a path into another crate or a local item.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" | "super" => {
                let mut at = self.here();
                let mut segs = segments;
                while let Some((s, rest)) = segs.split_first() {
                    match s.as_str() {
                        "self" => {}
                        "super" => {
                            at.pop()?;
                        }
                        _ => break,
                    }
                    segs = rest;
                }
                at.extend(segs.iter().cloned());
                Some(at)
            }
            _ => {
                let mut at = self.here();
                at.push(first.clone());
                (self.is_module)(&at).then(|| {
                    at.extend(rest.iter().cloned());
                    at
                })
            }
        }
    }

    fn items(&mut self, items: &[syn::Item]) {
        for item in items {
            if is_test_only(attrs_of(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) if m.content.is_none() && self.inline.is_empty() => {
                    let path = m
                        .attrs
                        .iter()
                        .find(|a| a.path().is_ident("path"))
                        .and_then(|a| match &a.meta {
                            syn::Meta::NameValue(nv) => match &nv.value {
                                syn::Expr::Lit(syn::ExprLit {
                                    lit: syn::Lit::Str(s),
                                    ..
                                }) => Some(s.value()),
                                _ => None,
                            },
                            _ => None,
                        });
                    self.mods.push((m.ident.to_string(), path));
                }
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        self.inline.push(m.ident.to_string());
                        self.items(inner);
                        self.inline.pop();
                    }
                }
                syn::Item::Use(u) => {
                    let mut leaves = Vec::new();
                    flatten(&u.tree, &mut Vec::new(), &mut leaves);
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    for (path, name) in leaves {
                        if let Some(abs) = self.absolute(&path) {
                            if let (true, Some(name), true) = (public, name, self.inline.is_empty())
                            {
                                self.reexports.insert(name, abs.clone());
                            }
                            self.named.push(abs);
                        }
                    }
                }
                other => self.visit_item(other),
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    /// `pub(super)`, `pub(in crate::x)` say who may see an item, not what
    /// it imports.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            if let Some(abs) = self.absolute(&segments) {
                self.named.push(abs);
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        for stmt in &block.stmts {
            match stmt {
                syn::Stmt::Item(item) if is_test_only(attrs_of(item)) => {}
                syn::Stmt::Item(item @ (syn::Item::Use(_) | syn::Item::Mod(_))) => {
                    self.items(std::slice::from_ref(item))
                }
                other => self.visit_stmt(other),
            }
        }
    }
}

/// Every compiled file of the library, walked from `lib.rs` by its `mod`
/// declarations (test-only ones left out).
fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // First pass: the module tree, so relative `use child::..` resolves.
    let mut tree: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut todo = vec![(src.join("lib.rs"), Vec::<String>::new())];
    let mut parsed = Vec::new();
    while let Some((file, module)) = todo.pop() {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut c = Collector {
            module: module.clone(),
            inline: Vec::new(),
            is_module: &|_| false,
            named: Vec::new(),
            reexports: BTreeMap::new(),
            mods: Vec::new(),
        };
        c.items(&ast.items);
        // A `mod x;` in `a.rs` or `a/mod.rs` lives in `a/`; in `lib.rs`, in `src/`.
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let dir = if matches!(name, "lib.rs" | "mod.rs") {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        for (m, path) in c.mods {
            let mut child = module.clone();
            child.push(m.clone());
            let at = match path {
                Some(p) => file.parent().unwrap_or(&src).join(p),
                None if dir.join(format!("{m}.rs")).is_file() => dir.join(format!("{m}.rs")),
                None => dir.join(&m).join("mod.rs"),
            };
            todo.push((at, child));
        }
        tree.push((file.clone(), module.clone()));
        parsed.push((file, module, ast));
    }
    let modules: BTreeSet<Vec<String>> = tree.iter().map(|(_, m)| m.clone()).collect();
    let is_module = |m: &[String]| modules.contains(m);
    parsed
        .into_iter()
        .map(|(file, module, ast)| {
            let mut c = Collector {
                module: module.clone(),
                inline: Vec::new(),
                is_module: &is_module,
                named: Vec::new(),
                reexports: BTreeMap::new(),
                mods: Vec::new(),
            };
            c.items(&ast.items);
            let rel = file
                .strip_prefix(&src)
                .unwrap_or(&file)
                .display()
                .to_string();
            Source {
                rel,
                module,
                named: c.named,
                reexports: c.reexports,
            }
        })
        .collect()
}

/// The file an absolute path lands in: the deepest module on it, followed
/// through re-exports to where the item is defined.
fn resolve(
    path: &[String],
    by_module: &BTreeMap<Vec<String>, &Source>,
    depth: usize,
) -> Option<String> {
    let k = (0..=path.len())
        .rev()
        .find(|&k| by_module.contains_key(&path[..k]))?;
    let source = by_module[&path[..k]];
    if let (Some(name), true) = (path.get(k), depth < 8) {
        if let Some(target) = source.reexports.get(name) {
            let mut next = target.clone();
            next.extend(path[k + 1..].iter().cloned());
            if next != path {
                return resolve(&next, by_module, depth + 1);
            }
        }
    }
    Some(source.rel.clone())
}

/// File → the files it imports (itself left out).
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<Vec<String>, &Source> =
        sources.iter().map(|s| (s.module.clone(), s)).collect();
    sources
        .iter()
        .map(|s| {
            let to = s
                .named
                .iter()
                .filter_map(|p| resolve(p, &by_module, 0))
                .filter(|t| *t != s.rel)
                .collect();
            (s.rel.clone(), to)
        })
        .collect()
}

/// The strongly connected components of more than one file (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Which rooms of the crate each file's named paths reach, as
/// `file: first::second` strings, for the rules that look at paths.
fn reaching(
    sources: &[Source],
    room: impl Fn(&str) -> bool,
    into: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut bad: Vec<String> = sources
        .iter()
        .filter(|s| room(&s.rel))
        .flat_map(|s| {
            s.named
                .iter()
                .filter(|p| into(p))
                .map(move |p| format!("{}: crate::{}", s.rel, p.join("::")))
        })
        .collect();
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn nothing_outside_runner_and_cli_imports_the_runner() {
    let sources = sources();
    assert!(
        sources.iter().any(|s| s.rel == "runner/mod.rs"),
        "the walk found the runner"
    );
    let bad = reaching(
        &sources,
        |rel| !rel.starts_with("runner/") && !rel.starts_with("cli/"),
        |p| p.first().is_some_and(|r| r == "runner"),
    );
    assert!(
        bad.is_empty(),
        "arrows point down: only `runner/` and `cli/` may import the runner; a value the \
         journal, config or reports need belongs below them (e.g. `policy/`):\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_however_long_the_circle() {
    let sources = sources();
    let g = graph(&sources);
    assert!(g.len() > 50, "the walk found the crate: {} files", g.len());
    let found = circles(&g);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("  {a} -> {b}"))
                })
                .collect();
            format!("{}\n{}", c.join(" ↔ "), edges.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles between files (move the shared thing into its own file, below both):\n{}",
        shown.join("\n")
    );
}

#[test]
fn the_machine_speaks_only_the_runners_messages() {
    let sources = sources();
    let bad = reaching(
        &sources,
        |rel| rel == "runner/machine.rs" || rel.starts_with("runner/machine/"),
        |p| {
            p.first().is_some_and(|r| r == "runner")
                && !matches!(p.get(1).map(String::as_str), Some("machine" | "messages"))
        },
    );
    assert!(
        bad.is_empty(),
        "the run machine is pure: its inputs and actions come from `runner/messages.rs`, not from \
         the rooms that do the work:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_policy_values_and_the_queue_planner_sit_at_the_bottom() {
    let sources = sources();
    let bad_policy = reaching(
        &sources,
        |rel| rel.starts_with("policy/"),
        |p| !matches!(p.first().map(String::as_str), Some("policy" | "agents")),
    );
    let bad_queue = reaching(
        &sources,
        |rel| rel == "merge_queue.rs",
        |p| p.first().is_none_or(|r| r != "merge_queue"),
    );
    assert!(
        bad_policy.is_empty() && bad_queue.is_empty(),
        "`policy/` imports only `agents` data types and `merge_queue.rs` nothing of the crate:\n{}\n{}",
        bad_policy.join("\n"),
        bad_queue.join("\n")
    );
}
