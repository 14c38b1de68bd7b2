//! Reading a spec folder into a [`SpecSet`]: which files are specs, and the
//! checks across specs (duplicate ids, unknown dependencies, cycles).
//!
//! Spec files are `SPEC-*.md` (any case) and `*.yaml` / `*.yml` directly in the
//! folder, sorted by file name; everything else (a `README.md`, hidden files,
//! sub-folders) is ignored. An existing folder without specs gives an empty set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::SpecError;
use super::model::{id_key, Spec, SpecSet};
use super::parse::{id_from_file_name, parse_spec, RawSpec};

/// Priority of specs with neither a `priority` nor a numeric id:
/// `NO_PRIORITY_BASE + order`.
const NO_PRIORITY_BASE: i64 = 1_000_000;

fn is_spec_file_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("spec-") && lower.ends_with(".md"))
        || lower.ends_with(".yaml")
        || lower.ends_with(".yml")
}

/// `path` relative to `root` with forward slashes, else `path` as is.
fn relative_display(root: &Path, path: &Path) -> String {
    let rel = path
        .strip_prefix(root)
        .ok()
        .map(Path::to_path_buf)
        .or_else(|| {
            let root = root.canonicalize().ok()?;
            let path = path.canonicalize().ok()?;
            path.strip_prefix(&root).ok().map(Path::to_path_buf)
        });
    match rel {
        Some(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        None => path.display().to_string(),
    }
}

/// Loads every spec of `spec_dir` (relative to `repo_root`, or absolute) and
/// checks them as a set. All problems found are returned at once
/// (`SpecError::Many`); a missing folder is an error whose hint is
/// `treefarm init`.
pub fn load_specs(repo_root: &Path, spec_dir: &Path) -> Result<SpecSet, SpecError> {
    let root = std::path::absolute(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
    let dir = root.join(spec_dir);
    let meta = match std::fs::metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::MissingDir {
                dir: spec_dir.to_path_buf(),
            })
        }
        Err(source) => return Err(SpecError::Io { path: dir, source }),
    };
    if !meta.is_dir() {
        return Err(SpecError::NotADir {
            dir: spec_dir.to_path_buf(),
        });
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| SpecError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SpecError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if is_spec_file_name(&name) && path.is_file() {
            paths.push((name, path));
        }
    }
    paths.sort();

    let mut errors = Vec::new();
    let mut raws: Vec<(RawSpec, PathBuf)> = Vec::new();
    for (_, path) in paths {
        let rel = relative_display(&root, &path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(source) => {
                errors.push(SpecError::Io { path, source });
                continue;
            }
        };
        match parse_spec(&rel, &bytes) {
            Ok(raw) => raws.push((raw, path)),
            Err(e) => errors.push(e),
        }
    }
    let specs = resolve(raws, &mut errors);
    match SpecError::collect(errors) {
        Some(err) => Err(err),
        None => Ok(SpecSet::new(specs)),
    }
}

/// Turns parsed files into specs: priorities, duplicate ids, dependencies,
/// cycles. Problems are appended to `errors`.
fn resolve(raws: Vec<(RawSpec, PathBuf)>, errors: &mut Vec<SpecError>) -> Vec<Spec> {
    // Duplicate ids, naming both files.
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, (raw, _)) in raws.iter().enumerate() {
        let key = id_key(&raw.id);
        match by_key.get(&key) {
            Some(&first) => errors.push(SpecError::DuplicateId {
                id: raw.id.clone(),
                first: raws[first].0.rel_path.clone(),
                second: raw.rel_path.clone(),
            }),
            None => {
                by_key.insert(key, i);
            }
        }
    }
    let known: Vec<String> = raws.iter().map(|(r, _)| r.id.clone()).collect();
    let lookup = |dep: &str| -> Option<usize> {
        by_key.get(&id_key(dep)).copied().or_else(|| {
            // `SPEC-012-retry.md` or `SPEC-012-retry` name a spec by its file.
            id_from_file_name(dep).and_then(|id| by_key.get(&id_key(&id)).copied())
        })
    };

    // Dependencies: resolved indices, for the cycle check.
    let mut edges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(raws.len());
    let mut specs = Vec::with_capacity(raws.len());
    for (order, (raw, path)) in raws.iter().enumerate() {
        let mut deps = Vec::new();
        let mut out = Vec::new();
        for d in &raw.depends_on {
            match lookup(&d.value) {
                Some(j) if j == order => errors.push(SpecError::SelfDependency {
                    file: raw.rel_path.clone(),
                    line: d.line,
                    id: raw.id.clone(),
                }),
                Some(j) => {
                    if !deps.iter().any(|&(k, _)| k == j) {
                        deps.push((j, d.line));
                        out.push(raws[j].0.id.clone());
                    }
                }
                None => errors.push(SpecError::UnknownDependency {
                    file: raw.rel_path.clone(),
                    line: d.line,
                    id: raw.id.clone(),
                    dependency: d.value.clone(),
                    known: known.clone(),
                }),
            }
        }
        edges.push(deps);
        let priority = raw.priority.unwrap_or_else(|| {
            let id = raw.id.as_str();
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                id.parse::<i64>()
                    .unwrap_or(NO_PRIORITY_BASE.saturating_add(order as i64))
            } else {
                NO_PRIORITY_BASE.saturating_add(order as i64)
            }
        });
        specs.push(Spec {
            id: raw.id.clone(),
            title: raw.title.clone(),
            priority,
            path: path.clone(),
            rel_path: raw.rel_path.clone(),
            files: raw.files.iter().map(|d| d.value.clone()).collect(),
            shared: raw.shared.iter().map(|d| d.value.clone()).collect(),
            depends_on: out,
            body: raw.body.clone(),
            order,
        });
    }

    for cycle in find_cycles(&edges) {
        let (start, line) = cycle[0];
        let mut ids: Vec<String> = cycle.iter().map(|&(i, _)| raws[i].0.id.clone()).collect();
        ids.push(raws[start].0.id.clone());
        errors.push(SpecError::Cycle {
            file: raws[start].0.rel_path.clone(),
            line,
            cycle: ids,
        });
    }
    specs
}

/// Dependency cycles, each once: the specs on it in dependency order with the
/// line of the dependency leading to the next one. Iterative DFS, so deep
/// chains cannot overflow the stack.
fn find_cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut cycles = Vec::new();
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Stack of (node, next edge index, line of the edge taken into node).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < edges[node].len() {
                let (to, _) = edges[node][*next];
                *next += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Open => {
                        let pos = stack
                            .iter()
                            .position(|&(n, _)| n == to)
                            .expect("an open node is on the stack");
                        let cycle = stack[pos..]
                            .iter()
                            .map(|&(n, taken)| (n, edges[n][taken - 1].1))
                            .collect();
                        cycles.push(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    cycles
}
