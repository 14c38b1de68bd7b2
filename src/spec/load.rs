//! Reading a spec folder: which files are specs, parsing each, and the checks
//! across specs (duplicate ids, unknown dependencies, cycles), all as
//! per-spec [`Diagnostic`]s so that an invalid spec never blocks the others.
//!
//! Specs are, directly in the folder and sorted by name: `SPEC-*.md` (any
//! case), `*.yaml` / `*.yml`, and directories `SPEC-<id>-<slug>/` whose
//! Markdown files together declare one spec (`README.md`, else the first
//! file, gives its title and body). Hidden files, templates (`*template*`)
//! and backups (`*.bak`, `*.backup`, `*.orig`, `*.old`, `*~`, `*.swp`) are
//! ignored; `spec.include` replaces the default patterns and `spec.exclude`
//! removes matches (globs on the name inside the folder). A spec must be a
//! regular file (or directory) inside the repository: a symbolic link to one
//! is fine, a link leaving the repository, a dangling link or a loop is an
//! error of that entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::diag::{Diagnostic, Level};
use super::error::SpecError;
use super::markers::MarkerRules;
use super::model::Declared;
use super::model::{id_key, Spec, SpecSet};
use super::parse::{id_from_file_name, parse_spec_with, ParseOptions, Parsed, RawSpec};

/// Priority of specs with neither a `priority` nor a numeric id:
/// `NO_PRIORITY_BASE + order`.
const NO_PRIORITY_BASE: i64 = 1_000_000;

/// What decides which files are specs and how they are read (`spec:` in
/// `treefarm.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub rules: MarkerRules,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// One spec found in the folder, valid or not.
#[derive(Debug, Clone)]
pub struct Entry {
    pub raw: RawSpec,
    /// The spec file or directory, relative to the repository root.
    pub rel_path: String,
    /// Its name in the folder without the extension (`SPEC-020-retry`).
    pub stem: String,
    pub valid: bool,
    /// Index into [`SpecFolder::set`] when valid.
    pub spec: Option<usize>,
}

/// Everything read from a spec folder.
#[derive(Debug, Clone, Default)]
pub struct SpecFolder {
    /// The valid specs, sorted by `(priority, order)`.
    pub set: SpecSet,
    /// Every spec found, in file-name order.
    pub entries: Vec<Entry>,
    pub diagnostics: Vec<Diagnostic>,
    /// `spec_dir` as given, for naming specs relative to it.
    pub spec_dir: String,
    /// The repository root (canonical), for absolute names.
    pub root: PathBuf,
}

/// The specs a command acts on, with the diagnostics that concern them.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// Valid selected specs, sorted by `(priority, order)`.
    pub specs: Vec<Spec>,
    /// Entries (indices into [`SpecFolder::entries`]) that were selected.
    pub entries: Vec<usize>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Selected {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    /// The errors as one [`SpecError`]-like message list, `None` when valid.
    pub fn error_text(&self) -> Option<String> {
        let errors: Vec<String> = self
            .errors()
            .map(|d| match &d.hint {
                Some(h) => format!("{}\n  hint: {h}", d.message),
                None => d.message.clone(),
            })
            .collect();
        match errors.len() {
            0 => None,
            1 => Some(errors[0].clone()),
            n => Some(format!(
                "{n} errors in the selected specs:\n{}",
                errors.join("\n")
            )),
        }
    }
}

fn is_ignored_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || lower.contains("template")
        || [".bak", ".backup", ".orig", ".old", "~", ".swp", ".tmp"]
            .iter()
            .any(|s| lower.ends_with(s))
}

fn is_spec_file_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("spec-") && lower.ends_with(".md"))
        || lower.ends_with(".yaml")
        || lower.ends_with(".yml")
}

fn is_spec_dir_name(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("spec-"))
        && name.len() > 5
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

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, SpecError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| SpecError::InvalidGlob {
            file: "treefarm.yaml".to_string(),
            line: 1,
            glob: p.clone(),
            field: "spec.include / spec.exclude".to_string(),
            message: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| SpecError::InvalidGlob {
        file: "treefarm.yaml".to_string(),
        line: 1,
        glob: patterns.join(", "),
        field: "spec.include / spec.exclude".to_string(),
        message: e.kind().to_string(),
    })
}

/// What a folder entry turned out to be.
enum Found {
    File(PathBuf),
    Dir(PathBuf),
    /// A broken entry: the error of that would-be spec.
    Broken(SpecError),
}

/// Follows a symbolic link chain by hand: a dangling link or a loop.
fn broken_link(path: &Path, rel: &str) -> SpecError {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) => {
                p = if t.is_absolute() {
                    t
                } else {
                    p.parent().unwrap_or(Path::new("/")).join(t)
                }
            }
            Err(_) => {
                return SpecError::DanglingSymlink {
                    file: rel.to_string(),
                }
            }
        }
    }
    SpecError::SymlinkLoop {
        file: rel.to_string(),
    }
}

/// Classifies one folder entry that matched the spec patterns.
fn classify(root_canon: &Path, path: &Path, rel: &str) -> Found {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if link => return Found::Broken(broken_link(path, rel)),
        Err(source) => {
            return Found::Broken(SpecError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if link {
        match std::fs::canonicalize(path) {
            Ok(target) if target.starts_with(root_canon) => {}
            Ok(target) => {
                return Found::Broken(SpecError::SymlinkOutside {
                    file: rel.to_string(),
                    target: target.display().to_string(),
                })
            }
            Err(_) => return Found::Broken(broken_link(path, rel)),
        }
    }
    if meta.is_dir() {
        Found::Dir(path.to_path_buf())
    } else if meta.is_file() {
        Found::File(path.to_path_buf())
    } else {
        Found::Broken(SpecError::NotAFile {
            file: rel.to_string(),
        })
    }
}

/// Loads every spec of `spec_dir` (relative to `repo_root`, or absolute) and
/// checks them as a set, as if every one of them were going to run: any
/// error of any spec is returned (`SpecError::Many`). A missing folder is an
/// error whose hint is `treefarm init`.
pub fn load_specs(repo_root: &Path, spec_dir: &Path) -> Result<SpecSet, SpecError> {
    let folder = load_spec_folder(repo_root, spec_dir, &LoadOptions::default())?;
    let selected = folder.select(&[])?;
    let errors: Vec<SpecError> = selected
        .errors()
        .map(|d| SpecError::Diagnosed {
            message: d.message.clone(),
            hint: d.hint.clone(),
        })
        .collect();
    match SpecError::collect(errors) {
        Some(err) => Err(err),
        None => Ok(folder.set),
    }
}

/// Reads a spec folder: every spec, valid or not, with its diagnostics. Only
/// a missing or unreadable folder (or bad include/exclude globs) is an error.
pub fn load_spec_folder(
    repo_root: &Path,
    spec_dir: &Path,
    opts: &LoadOptions,
) -> Result<SpecFolder, SpecError> {
    let root = std::path::absolute(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
    let root_canon = root.canonicalize().unwrap_or_else(|_| root.clone());
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
    let include = globs(&opts.include)?;
    let exclude = globs(&opts.exclude)?;
    let entries = std::fs::read_dir(&dir).map_err(|source| SpecError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SpecError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        names.push((name, entry.path()));
    }
    names.sort();

    let parse_opts = ParseOptions {
        repo_root: Some(root_canon.clone()),
        rules: opts.rules.clone(),
        default_id: None,
    };
    let mut parsed: Vec<(Parsed, PathBuf, String)> = Vec::new();
    for (name, path) in names {
        if name.starts_with('.') {
            continue;
        }
        let wanted = match &include {
            Some(set) => set.is_match(&name),
            None => {
                !is_ignored_name(&name)
                    && (is_spec_file_name(&name)
                        || (is_spec_dir_name(&name) && path.is_dir())
                        || (is_spec_dir_name(&name) && !path.exists()))
            }
        };
        if !wanted || exclude.as_ref().is_some_and(|set| set.is_match(&name)) {
            continue;
        }
        let rel = relative_display(&root, &path);
        let stem = match name.rfind('.') {
            Some(dot) if dot > 0 && !path.is_dir() => name[..dot].to_string(),
            _ => name.clone(),
        };
        let p = match classify(&root_canon, &path, &rel) {
            Found::File(p) => match std::fs::read(&p) {
                Ok(bytes) => parse_spec_with(&rel, &bytes, &parse_opts),
                Err(source) => broken(&rel, SpecError::Io { path: p, source }),
            },
            Found::Dir(p) => parse_dir(&root, &p, &rel, &name, &parse_opts),
            Found::Broken(e) => broken(&rel, e),
        };
        parsed.push((p, path, stem));
    }
    let mut folder = resolve(parsed, spec_dir);
    folder.root = root_canon;
    Ok(folder)
}

fn broken(rel: &str, err: SpecError) -> Parsed {
    let mut p = parse_spec_with(rel, b"", &ParseOptions::default());
    p.problems = vec![(Level::Error, err)];
    p
}

/// A directory spec: its Markdown files, `README.md` (else the first) giving
/// the title and body, all of them declaring.
fn parse_dir(root: &Path, dir: &Path, rel: &str, name: &str, opts: &ParseOptions) -> Parsed {
    let mut files: Vec<(String, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(n, p)| {
                n.to_ascii_lowercase().ends_with(".md") && !is_ignored_name(n) && p.is_file()
            })
            .collect(),
        Err(source) => {
            return broken(
                rel,
                SpecError::Io {
                    path: dir.to_path_buf(),
                    source,
                },
            )
        }
    };
    files.sort_by_key(|(n, _)| (!n.eq_ignore_ascii_case("readme.md"), n.clone()));
    let opts = ParseOptions {
        default_id: id_from_file_name(name),
        ..opts.clone()
    };
    let mut out: Option<Parsed> = None;
    for (_, path) in &files {
        let file_rel = relative_display(root, path);
        let mut p = match std::fs::read(path) {
            Ok(bytes) => parse_spec_with(&file_rel, &bytes, &opts),
            Err(source) => broken(
                &file_rel,
                SpecError::Io {
                    path: path.clone(),
                    source,
                },
            ),
        };
        p.problems
            .retain(|(_, e)| !matches!(e, SpecError::NoFiles { .. }));
        match &mut out {
            None => out = Some(p),
            Some(first) => {
                let mut seen: std::collections::HashSet<String> =
                    first.raw.files.iter().map(|f| f.value.clone()).collect();
                for d in p.raw.files {
                    if seen.insert(d.value.clone()) {
                        first.raw.files.push(d);
                    }
                }
                first.raw.shared.extend(p.raw.shared);
                first.raw.depends_on.extend(p.raw.depends_on);
                first.raw.mentions.extend(p.raw.mentions);
                first.problems.extend(p.problems);
            }
        }
    }
    let mut out = out.unwrap_or_else(|| parse_spec_with(rel, b"", &opts));
    out.raw.rel_path = rel.to_string();
    if out.raw.files.is_empty() {
        out.problems
            .retain(|(_, e)| !matches!(e, SpecError::NoFiles { .. }));
        out.problems.push((
            Level::Error,
            SpecError::NoFiles {
                file: rel.to_string(),
                id: out.raw.id.clone(),
            },
        ));
    }
    out
}

/// Turns parsed entries into specs and diagnostics: priorities, duplicate
/// ids, dependencies, cycles.
fn resolve(parsed: Vec<(Parsed, PathBuf, String)>, spec_dir: &Path) -> SpecFolder {
    let mut diagnostics = Vec::new();
    let mut valid: Vec<bool> = parsed.iter().map(|(p, _, _)| p.is_valid()).collect();
    for (p, _, _) in &parsed {
        for (level, e) in &p.problems {
            diagnostics.push(Diagnostic::new(*level, e, &p.raw.id, &p.raw.rel_path));
        }
    }
    let raws: Vec<&RawSpec> = parsed.iter().map(|(p, _, _)| &p.raw).collect();

    // Ids: every entry with a usable id, duplicates a warning until used.
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        if !raw.id.is_empty() {
            by_key.entry(id_key(&raw.id)).or_default().push(i);
        }
    }
    let mut dup_keys: Vec<&String> = by_key.keys().filter(|k| by_key[*k].len() > 1).collect();
    dup_keys.sort();
    for key in dup_keys {
        let list = &by_key[key];
        let files: Vec<String> = list.iter().map(|&i| raws[i].rel_path.clone()).collect();
        for &i in list {
            let err = SpecError::DuplicateIdUsed {
                id: raws[i].id.clone(),
                files: files.clone(),
            };
            let mut d = Diagnostic::new(Level::Warning, &err, &raws[i].id, &raws[i].rel_path);
            d.message = format!(
                "duplicate spec id `{}`: {} (an error once the id is selected or named in depends_on)",
                raws[i].id,
                files.join(" and ")
            );
            diagnostics.push(d);
        }
    }
    let mut known: Vec<String> = raws.iter().map(|r| r.id.clone()).collect();
    known.dedup();
    let lookup = |dep: &str| -> Option<&Vec<usize>> {
        by_key.get(&id_key(dep)).or_else(|| {
            // `SPEC-012-retry.md` or `SPEC-012-retry` name a spec by its file.
            id_from_file_name(dep).and_then(|id| by_key.get(&id_key(&id)))
        })
    };

    let mut edges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(raws.len());
    let mut deps_out: Vec<Vec<String>> = Vec::with_capacity(raws.len());
    for (order, raw) in raws.iter().enumerate() {
        let mut deps: Vec<(usize, usize)> = Vec::new();
        let mut out = Vec::new();
        for d in &raw.depends_on {
            match lookup(&d.value).map(Vec::as_slice) {
                Some([j]) if *j == order => {
                    let e = SpecError::SelfDependency {
                        file: raw.rel_path.clone(),
                        line: d.line,
                        id: raw.id.clone(),
                    };
                    diagnostics.push(Diagnostic::new(Level::Error, &e, &raw.id, &raw.rel_path));
                    valid[order] = false;
                }
                Some([j]) => {
                    if !deps.iter().any(|&(k, _)| k == *j) {
                        deps.push((*j, d.line));
                        out.push(raws[*j].id.clone());
                    }
                }
                Some(many) => {
                    let err = SpecError::DuplicateIdUsed {
                        id: d.value.clone(),
                        files: many.iter().map(|&i| raws[i].rel_path.clone()).collect(),
                    };
                    let mut diag = Diagnostic::new(Level::Error, &err, &raw.id, &raw.rel_path);
                    diag.line = Some(d.line);
                    diag.message = format!(
                        "{}:{}: spec `{}` depends on `{}`, but {err}",
                        raw.rel_path, d.line, raw.id, d.value
                    );
                    diagnostics.push(diag);
                    valid[order] = false;
                }
                None => {
                    let e = SpecError::UnknownDependency {
                        file: raw.rel_path.clone(),
                        line: d.line,
                        id: raw.id.clone(),
                        dependency: d.value.clone(),
                        known: known.clone(),
                    };
                    // An error for `check` as for `plan` and `run`: a check
                    // that passes means they accept the spec.
                    let mut diag = Diagnostic::new(Level::Error, &e, &raw.id, &raw.rel_path);
                    diag.hint = Some(format!(
                        "it can never be satisfied: `plan` and `run` refuse this spec; {}",
                        diag.hint.unwrap_or_default()
                    ));
                    diagnostics.push(diag);
                    valid[order] = false;
                }
            }
        }
        edges.push(deps);
        deps_out.push(out);
    }

    for cycle in find_cycles(&edges) {
        let (start, line) = cycle[0];
        let mut ids: Vec<String> = cycle.iter().map(|&(i, _)| raws[i].id.clone()).collect();
        ids.push(raws[start].id.clone());
        let e = SpecError::Cycle {
            file: raws[start].rel_path.clone(),
            line,
            cycle: ids,
        };
        for &(i, _) in &cycle {
            valid[i] = false;
            diagnostics.push(Diagnostic::new(
                Level::Error,
                &e,
                &raws[i].id,
                &raws[i].rel_path,
            ));
        }
    }

    // A dependency on an invalid spec can never be satisfied either (it
    // never runs, so never merges): the dependent is invalid too, and so
    // are its own dependents, with the first invalid dependency named.
    let mut changed = true;
    while changed {
        changed = false;
        for order in 0..raws.len() {
            if !valid[order] {
                continue;
            }
            if let Some(&(dep, line)) = edges[order].iter().find(|&&(j, _)| !valid[j]) {
                let raw = raws[order];
                let e = SpecError::InvalidDependency {
                    file: raw.rel_path.clone(),
                    line,
                    id: raw.id.clone(),
                    dependency: raws[dep].id.clone(),
                    dependency_file: raws[dep].rel_path.clone(),
                };
                diagnostics.push(Diagnostic::new(Level::Error, &e, &raw.id, &raw.rel_path));
                valid[order] = false;
                changed = true;
            }
        }
    }

    let mut specs = Vec::new();
    let mut entries = Vec::with_capacity(parsed.len());
    for (order, ((p, path, stem), deps)) in parsed.into_iter().zip(deps_out).enumerate() {
        let raw = p.raw;
        if valid[order] {
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
                path,
                rel_path: raw.rel_path.clone(),
                files: raw.files.iter().map(|d| d.value.clone()).collect(),
                shared: raw.shared.iter().map(|d| d.value.clone()).collect(),
                depends_on: deps,
                body: raw.body.clone(),
                order,
                sources: raw.files.clone(),
                slurm: raw.slurm.clone(),
            });
        }
        entries.push(Entry {
            rel_path: raw.rel_path.clone(),
            stem,
            valid: valid[order],
            spec: None,
            raw,
        });
    }
    let set = SpecSet::new(specs);
    for (i, s) in set.specs.iter().enumerate() {
        if let Some(e) = entries.get_mut(s.order) {
            e.spec = Some(i);
        }
    }
    SpecFolder {
        set,
        entries,
        diagnostics,
        spec_dir: spec_dir
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        root: PathBuf::new(),
    }
}

impl SpecFolder {
    /// The entry a command-line name means: a path (relative to the
    /// repository root or to `spec_dir`), a file stem, or an id. An id several
    /// specs share is an error that lists them.
    pub fn find(&self, name: &str) -> Result<usize, SpecError> {
        let mut n = name
            .trim()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if let Ok(rel) = Path::new(&n).strip_prefix(&self.root) {
            n = rel.to_string_lossy().into_owned();
        }
        let prefix = format!("{}/", self.spec_dir.trim_end_matches('/'));
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.rel_path == n || e.rel_path.strip_prefix(&prefix) == Some(n.as_str()))
        {
            return Ok(i);
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.stem.eq_ignore_ascii_case(&n))
        {
            return Ok(i);
        }
        let key = id_key(&n);
        let matches: Vec<usize> = (0..self.entries.len())
            .filter(|&i| id_key(&self.entries[i].raw.id) == key)
            .collect();
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => Err(SpecError::UnknownId {
                id: name.to_string(),
                known: self.entries.iter().map(|e| e.raw.id.clone()).collect(),
            }),
            many => Err(SpecError::DuplicateIdUsed {
                id: name.to_string(),
                files: many
                    .iter()
                    .map(|&i| self.entries[i].rel_path.clone())
                    .collect(),
            }),
        }
    }

    /// The specs `names` select (all when empty) and the diagnostics that
    /// concern them. Unknown or ambiguous names are an error. `check`,
    /// `plan` and `run` select alike, so that a spec `check` passes is one
    /// `plan` and `run` accept.
    pub fn select(&self, names: &[String]) -> Result<Selected, SpecError> {
        let mut chosen = vec![names.is_empty(); self.entries.len()];
        let mut errors = Vec::new();
        for name in names {
            match self.find(name) {
                Ok(i) => chosen[i] = true,
                Err(e) => errors.push(e),
            }
        }
        if let Some(err) = SpecError::collect(errors) {
            return Err(err);
        }
        let paths: std::collections::HashSet<&str> = self
            .entries
            .iter()
            .zip(&chosen)
            .filter_map(|(e, c)| c.then_some(e.rel_path.as_str()))
            .collect();
        let mut diagnostics: Vec<Diagnostic> = self
            .diagnostics
            .iter()
            .filter(|d| {
                names.is_empty() || d.spec_path.as_deref().is_none_or(|p| paths.contains(p))
            })
            .cloned()
            .collect();
        let mut duplicated: std::collections::HashSet<String> = Default::default();
        // Two selected specs with one id would share one branch.
        let mut by_key: HashMap<String, Vec<&str>> = HashMap::new();
        for (e, c) in self.entries.iter().zip(&chosen) {
            if *c && !e.raw.id.is_empty() {
                by_key
                    .entry(id_key(&e.raw.id))
                    .or_default()
                    .push(&e.rel_path);
            }
        }
        let mut keys: Vec<&String> = by_key.keys().filter(|k| by_key[*k].len() > 1).collect();
        keys.sort();
        for key in keys {
            let files: Vec<String> = by_key[key].iter().map(|f| f.to_string()).collect();
            for f in &files {
                let entry = self.entries.iter().find(|e| &e.rel_path == f);
                let id = entry.map_or("", |e| e.raw.id.as_str());
                let err = SpecError::DuplicateIdUsed {
                    id: id.to_string(),
                    files: files.clone(),
                };
                diagnostics.retain(|d| {
                    !(d.spec_path.as_deref() == Some(f.as_str())
                        && d.message.starts_with("duplicate spec id"))
                });
                let mut d = Diagnostic::new(Level::Error, &err, id, f);
                d.message = format!(
                    "duplicate spec id `{id}`: {} would share the branch `treefarm/{id}`",
                    files.join(" and ")
                );
                diagnostics.push(d);
                duplicated.insert(f.clone());
            }
        }
        // A cycle or a duplicated id is recorded once per spec involved; one
        // message for all of them is enough.
        let mut seen = std::collections::HashSet::new();
        diagnostics.retain(|d| seen.insert((d.level, d.message.clone())));
        let specs = self
            .set
            .specs
            .iter()
            .filter(|s| paths.contains(s.rel_path.as_str()) && !duplicated.contains(&s.rel_path))
            .cloned()
            .collect();
        Ok(Selected {
            specs,
            entries: (0..self.entries.len()).filter(|&i| chosen[i]).collect(),
            diagnostics,
        })
    }

    /// Declared paths with provenance of the entry `i`.
    pub fn declared(&self, i: usize) -> &[Declared] {
        &self.entries[i].raw.files
    }
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
