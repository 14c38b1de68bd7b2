//! Parsing one spec file (Markdown with optional front matter, or YAML) into a
//! [`RawSpec`], with the checks that need only that file: field types, paths,
//! globs, at least one declared file, no dependency on itself.
//!
//! Arbitrary bytes never panic: the result is always `Ok` or `Err`.

use serde::Deserialize;
use serde_yaml::Value;

use super::diag::Level;
use super::error::SpecError;
use super::markers::{self, MarkerRules, Mention};
use super::model::{id_key, Declared};
use super::paths::{normalize_path, PathProblem};
use super::yaml::{position, yaml_fault};

/// The two spec formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Markdown,
    Yaml,
}

/// One spec file, parsed and checked on its own; ids of dependencies are not
/// resolved yet, and the priority has no file-order default yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSpec {
    pub rel_path: String,
    pub format: SpecFormat,
    /// Display id (a leading `SPEC-` of an `id` field dropped).
    pub id: String,
    /// Line of the `id` field, or 1.
    pub id_line: usize,
    /// Front matter `title`, else the first `# ` heading, else the id.
    pub title: String,
    /// Explicit `priority` field or marker.
    pub priority: Option<i64>,
    /// Normalised paths and globs, deduplicated.
    pub files: Vec<Declared>,
    pub shared: Vec<Declared>,
    /// Dependencies as written (`SPEC-012`, `12`, ...).
    pub depends_on: Vec<Declared>,
    pub body: String,
    /// Paths the body mentions that did not count, and why.
    pub mentions: Vec<Mention>,
    /// The `slurm:` override, checked (see [`crate::slurm::SlurmOverride`]).
    pub slurm: Option<crate::slurm::SlurmOverride>,
}

/// Fields of front matter and YAML specs. Values stay loose (`Value`) so that
/// `id: 020`, `files: src/a.rs` or `depends_on: [12]` are accepted; only
/// unknown keys and malformed YAML are serde's to reject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    title: Option<Value>,
    #[serde(default)]
    priority: Option<Value>,
    #[serde(default)]
    files: Option<Value>,
    #[serde(default)]
    depends_on: Option<Value>,
    #[serde(default)]
    shared: Option<Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    instructions: Option<Value>,
    /// What this spec's Slurm jobs ask differently (`slurm: {cpus: 8}`).
    #[serde(default)]
    slurm: Option<Value>,
}

/// The id a spec file name implies: `SPEC-020-retry.md` -> `020`,
/// `SPEC-7.yaml` -> `7`, `retry.yaml` -> `retry`. `None` when empty.
pub fn id_from_file_name(name: &str) -> Option<String> {
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    };
    let id = match stem.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("spec-") => {
            let rest = &stem[5..];
            rest.split('-').next().unwrap_or("")
        }
        _ => stem,
    };
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

fn display_id(written: &str) -> String {
    let s = written.trim();
    match s.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("spec-") => s[5..].trim().to_string(),
        _ => s.to_string(),
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id.contains("..")
        && !id.ends_with(".lock")
        && !id.ends_with('.')
}

/// The collected problems of one file.
struct Problems {
    file: String,
    errors: Vec<(Level, SpecError)>,
    root: Option<std::path::PathBuf>,
}

impl Problems {
    fn error(&mut self, e: SpecError) {
        self.errors.push((Level::Error, e));
    }

    fn warning(&mut self, e: SpecError) {
        self.errors.push((Level::Warning, e));
    }

    /// `path` relative to the repository root when it is an absolute path
    /// inside the root's working tree.
    fn inside_root(&self, path: &str) -> Option<String> {
        let root = self.root.as_ref()?;
        let p = std::path::Path::new(path.trim());
        if !p.is_absolute() {
            return None;
        }
        let rel = p.strip_prefix(root).ok()?;
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut rel = rel.join("/");
        if rel.is_empty() {
            return None;
        }
        if path.trim().ends_with('/') {
            rel.push('/');
        }
        Some(rel)
    }

    fn path(&mut self, problem: PathProblem, raw: &str, line: usize, field: &str) {
        let (file, path, field) = (self.file.clone(), raw.to_string(), field.to_string());
        self.error(match problem {
            PathProblem::Empty => SpecError::EmptyPath { file, line, field },
            PathProblem::Absolute => SpecError::AbsolutePath {
                file,
                line,
                path,
                field,
            },
            PathProblem::Escapes => SpecError::EscapesRepo {
                file,
                line,
                path,
                field,
            },
            PathProblem::GitDir => SpecError::GitDir {
                file,
                line,
                path,
                field,
            },
            PathProblem::InvalidGlob(message) => SpecError::InvalidGlob {
                file,
                line,
                glob: path,
                field,
                message,
            },
        });
    }
}

/// Lines (0-based) of the YAML text and helpers to find where a key or value
/// was written, since serde does not keep positions of values.
struct YamlText<'a> {
    lines: Vec<&'a str>,
    /// File lines before the YAML text.
    offset: usize,
}

impl<'a> YamlText<'a> {
    fn new(text: &'a str, offset: usize) -> Self {
        YamlText {
            lines: text.lines().collect(),
            offset,
        }
    }

    /// File line of the top-level `key:`.
    fn key_line(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| {
                let l = l.trim_end();
                let rest = l
                    .strip_prefix(key)
                    .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                    .or_else(|| l.strip_prefix(&format!("'{key}'")));
                rest.is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|i| i + self.offset + 1)
    }

    /// The file line where each value of `key` was most likely written (the
    /// first line from the key on that contains it, else the key's line), in
    /// the order they were written: each search starts at the line of the previous value,
    /// so a list of n values costs one pass, not n (a spec may declare 100k
    /// paths). A value not found from there is looked for from the key on.
    fn value_lines(&self, key: &str, values: &[String]) -> Vec<usize> {
        let start = self.key_line(key).unwrap_or(self.offset + 1);
        let first = start - self.offset - 1;
        let mut from = first;
        values
            .iter()
            .map(|value| {
                let find = |from: usize| {
                    self.lines
                        .iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, l)| l.contains(value.as_str()))
                        .map(|(i, _)| i)
                };
                match find(from).or_else(|| find(first)) {
                    Some(i) => {
                        from = i;
                        i + self.offset + 1
                    }
                    None => start,
                }
            })
            .collect()
    }

    /// The raw scalar text of a top-level `key: value` line (quotes removed).
    fn raw_scalar(&self, key: &str) -> Option<String> {
        let line = self.key_line(key)? - self.offset - 1;
        let text = self.lines.get(line)?;
        let (_, value) = text.split_once(':')?;
        let value = match value.find(" #") {
            Some(i) => &value[..i],
            None => value,
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_string(&t.value),
        _ => None,
    }
}

/// The 1-based line holding byte `offset` of `text`, for "not UTF-8" errors.
pub(crate) fn line_of_offset(text: &[u8], offset: usize) -> usize {
    1 + text[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn utf8<'a>(file: &str, text: &'a [u8]) -> Result<&'a str, SpecError> {
    let s = std::str::from_utf8(text).map_err(|e| SpecError::NotUtf8 {
        file: file.to_string(),
        offset: e.valid_up_to(),
        line: line_of_offset(text, e.valid_up_to()),
    })?;
    Ok(s.strip_prefix('\u{feff}').unwrap_or(s))
}

/// Splits Markdown into (front matter YAML, its first file line, body, the
/// body's first file line). No front matter: `None` and the whole text.
fn split_front_matter<'a>(
    file: &str,
    text: &'a str,
) -> Result<(Option<&'a str>, &'a str, usize), SpecError> {
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Ok((None, text, 1));
    };
    if first.trim_end() != "---" {
        return Ok((None, text, 1));
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    for (i, line) in lines.enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            let yaml = &text[yaml_start..offset];
            let body = &text[offset + line.len()..];
            // Line 1 is the opening `---`; the closing one is line i + 2.
            return Ok((Some(yaml), body, i + 3));
        }
        offset += line.len();
    }
    Err(SpecError::UnclosedFrontMatter {
        file: file.to_string(),
        line: 1,
    })
}

fn parse_fields(
    file: &str,
    yaml: &str,
    offset: usize,
    what: &'static str,
) -> Result<Fields, SpecError> {
    let fields: Option<Fields> = serde_yaml::from_str(yaml).map_err(|e| {
        let fault = yaml_fault(&e, offset);
        match fault.unknown_field {
            Some((field, _)) => SpecError::UnknownField {
                file: file.to_string(),
                line: fault.line,
                field,
                what,
            },
            None => SpecError::Yaml {
                file: file.to_string(),
                line: fault.line,
                column: fault.column,
                pos: position(file, fault.line, fault.column),
                what,
                message: fault.message,
            },
        }
    })?;
    Ok(fields.unwrap_or_default())
}

/// How a file is parsed beyond its own bytes: the repository root (absolute
/// paths inside it are made relative) and the team's extra marker labels.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub repo_root: Option<std::path::PathBuf>,
    pub rules: MarkerRules,
    /// The id when no `id` field names one (a directory spec's name);
    /// `None`: from the file name.
    pub default_id: Option<String>,
}

/// One file parsed: the spec as far as it could be read, and every problem
/// found with its level. The spec is valid when no problem is an error.
#[derive(Debug)]
pub struct Parsed {
    pub raw: RawSpec,
    pub problems: Vec<(Level, SpecError)>,
}

impl Parsed {
    pub fn is_valid(&self) -> bool {
        !self.problems.iter().any(|(l, _)| *l == Level::Error)
    }
}

/// The number a priority value starts with, or its word: `7`, `PRIORITY 10
/// (US-010)` -> 10, `P2` -> 2, `critical|high|medium|low` -> 1|2|3|4.
pub fn parse_priority(raw: &str) -> Option<i64> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^(?:[a-z]+[\s:#=-]*)?(-?\d{1,15})\b").expect("static regex is valid")
    });
    let t = raw
        .trim()
        .trim_matches(['`', '*', '"', '\''])
        .trim()
        .to_lowercase();
    for (word, n) in PRIORITY_WORDS {
        if t.strip_prefix(word)
            .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric()))
        {
            return Some(*n);
        }
    }
    re.captures(&t)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().parse().ok())
}

/// The priority words and the order they map to (lower runs first).
pub const PRIORITY_WORDS: &[(&str, i64)] =
    &[("critical", 1), ("high", 2), ("medium", 3), ("low", 4)];

/// A `SPEC-<id>: Title` / `<id>: Title` heading gives `Title`.
fn strip_id_prefix(title: &str, id: &str) -> String {
    if let Some((head, rest)) = title.split_once(':') {
        let head = head.trim();
        let is_id = (!id.is_empty() && id_key(head) == id_key(id))
            || head
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("spec-") && valid_id(&head[5..]));
        if is_id && !rest.trim().is_empty() {
            return rest.trim().to_string();
        }
    }
    title.to_string()
}

/// Parses one spec file. `rel_path` names it in messages and decides the
/// format (`.yaml` / `.yml` is YAML, anything else Markdown) and the default
/// id. All problems of the file are returned together (`SpecError::Many`).
pub fn parse_spec(rel_path: &str, text: &[u8]) -> Result<RawSpec, SpecError> {
    let parsed = parse_spec_with(rel_path, text, &ParseOptions::default());
    let errors: Vec<SpecError> = parsed
        .problems
        .into_iter()
        .filter_map(|(l, e)| (l == Level::Error).then_some(e))
        .collect();
    match SpecError::collect(errors) {
        Some(err) => Err(err),
        None => Ok(parsed.raw),
    }
}

/// A spec that could not be read far enough to know more than its file name.
fn unreadable(rel_path: &str, format: SpecFormat, err: SpecError) -> Parsed {
    let id = id_from_file_name(rel_path).unwrap_or_default();
    Parsed {
        raw: RawSpec {
            rel_path: rel_path.to_string(),
            format,
            title: id.clone(),
            id,
            id_line: 1,
            priority: None,
            files: Vec::new(),
            shared: Vec::new(),
            depends_on: Vec::new(),
            body: String::new(),
            mentions: Vec::new(),
            slurm: None,
        },
        problems: vec![(Level::Error, err)],
    }
}

/// Parses one spec file, keeping what it could read and every problem with
/// its level.
pub fn parse_spec_with(rel_path: &str, text: &[u8], opts: &ParseOptions) -> Parsed {
    let file = rel_path.to_string();
    let lower = rel_path.to_ascii_lowercase();
    let format = if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        SpecFormat::Yaml
    } else {
        SpecFormat::Markdown
    };
    let text = match utf8(&file, text) {
        Ok(t) => t,
        Err(e) => return unreadable(rel_path, format, e),
    };

    let pre = match format {
        SpecFormat::Yaml => parse_fields(&file, text, 0, "yaml spec")
            .map(|fields| (fields, YamlText::new(text, 0), String::new(), None, 1)),
        SpecFormat::Markdown => {
            split_front_matter(&file, text).and_then(|(front, body, body_line)| {
                let fields = match front {
                    Some(yaml) => parse_fields(&file, yaml, 1, "front matter")?,
                    None => Fields::default(),
                };
                let marks = markers::scan(body, body_line, &opts.rules);
                Ok((
                    fields,
                    YamlText::new(front.unwrap_or(""), 1),
                    body.to_string(),
                    Some(marks),
                    body_line,
                ))
            })
        }
    };
    let (fields, yaml_text, body, marks, body_line) = match pre {
        Ok(p) => p,
        Err(e) => return unreadable(rel_path, format, e),
    };

    let mut problems = Problems {
        file: file.clone(),
        errors: Vec::new(),
        root: opts.repo_root.clone(),
    };
    let bad_field = |field: &str, expected: &'static str| SpecError::BadField {
        file: file.clone(),
        line: yaml_text.key_line(field).unwrap_or(1),
        field: field.to_string(),
        expected,
    };

    // Front matter `body` / `instructions` only make sense in YAML specs.
    if format == SpecFormat::Markdown {
        for key in ["body", "instructions"] {
            let present = match key {
                "body" => fields.body.is_some(),
                _ => fields.instructions.is_some(),
            };
            if present {
                problems.error(SpecError::UnknownField {
                    file: file.clone(),
                    line: yaml_text.key_line(key).unwrap_or(1),
                    field: key.to_string(),
                    what: "front matter",
                });
            }
        }
    }

    // id
    let id_line = yaml_text.key_line("id").unwrap_or(1);
    let id = match fields.id.as_ref().filter(|v| !v.is_null()) {
        Some(v @ Value::Number(_)) => {
            // `id: 020` is the number 20 to YAML; keep the zeros as written.
            let number = scalar_string(v).unwrap_or_default();
            match yaml_text.raw_scalar("id") {
                Some(raw) if id_key(&raw) == id_key(&number) => Some(raw),
                _ => Some(number),
            }
        }
        Some(v) => match scalar_string(v) {
            Some(s) => Some(display_id(&s)),
            None => {
                problems.error(bad_field("id", "a string"));
                None
            }
        },
        None => opts
            .default_id
            .clone()
            .or_else(|| id_from_file_name(rel_path)),
    };
    let id = id.unwrap_or_default();
    if id.is_empty() {
        if fields.id.is_none() {
            problems.error(SpecError::NoId { file: file.clone() });
        } else {
            problems.error(SpecError::BadId {
                file: file.clone(),
                line: id_line,
                id: id.clone(),
            });
        }
    } else if !valid_id(&id) {
        problems.error(SpecError::BadId {
            file: file.clone(),
            line: id_line,
            id: id.clone(),
        });
    }

    // title
    let mut title = None;
    if let Some(v) = fields.title.as_ref().filter(|v| !v.is_null()) {
        match scalar_string(v) {
            Some(s) if !s.trim().is_empty() => title = Some(s.trim().to_string()),
            Some(_) => {}
            None => problems.error(bad_field("title", "a string")),
        }
    }
    let marks = marks.unwrap_or_default();
    let title = title
        .or(marks.title.clone())
        .map(|t| strip_id_prefix(&t, &id))
        .unwrap_or_else(|| id.clone());
    if title.contains('\0') {
        problems.error(SpecError::NulByte {
            file: file.clone(),
            line: yaml_text.key_line("title").unwrap_or(body_line),
            what: "the title",
        });
    }

    // priority: the field wins over the marker
    let mut priority = None;
    let priority_text = |raw: &str, line: usize, problems: &mut Problems| match parse_priority(raw)
    {
        Some(p) => Some(p),
        None => {
            problems.warning(SpecError::BadPriority {
                file: file.clone(),
                line,
                value: raw.to_string(),
            });
            None
        }
    };
    if let Some(v) = fields.priority.as_ref().filter(|v| !v.is_null()) {
        let raw = scalar_string(v).unwrap_or_else(|| "(not a number)".to_string());
        priority = priority_text(
            &raw,
            yaml_text.key_line("priority").unwrap_or(1),
            &mut problems,
        );
    } else if let Some(p) = &marks.priority {
        priority = priority_text(&p.value, p.line, &mut problems);
    }

    // files, shared, depends_on: field values first, then markers
    let declared = |key: &str, v: &Option<Value>, problems: &mut Problems| -> Vec<Declared> {
        // One pass over the text for the lines of all values: a spec may
        // declare 100k paths.
        let from = |values: Vec<String>| -> Vec<Declared> {
            let lines = yaml_text.value_lines(key, &values);
            values
                .into_iter()
                .zip(lines)
                .map(|(value, line)| Declared {
                    line,
                    value,
                    marker: format!("{key}:"),
                    file: String::new(),
                })
                .collect()
        };
        match v.as_ref().filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Sequence(items)) => {
                match items.iter().map(scalar_string).collect::<Option<Vec<_>>>() {
                    Some(items) => from(items),
                    None => {
                        problems.error(bad_field(key, "a list of strings"));
                        Vec::new()
                    }
                }
            }
            // `files: src/a.rs` reads as a list of one; `files: 42` is a mistake.
            Some(Value::String(s)) => {
                problems.warning(SpecError::ScalarForList {
                    file: problems.file.clone(),
                    line: yaml_text.key_line(key).unwrap_or(1),
                    field: key.to_string(),
                });
                from(vec![s.clone()])
            }
            Some(_) => {
                problems.error(bad_field(key, "a list of strings"));
                Vec::new()
            }
        }
    };
    let mut files_raw = declared("files", &fields.files, &mut problems);
    files_raw.extend(marks.files.iter().cloned());
    let shared_raw = declared("shared", &fields.shared, &mut problems);
    let mut depends_raw = declared("depends_on", &fields.depends_on, &mut problems);
    depends_raw.extend(marks.depends_on.iter().cloned());

    let any_files = !files_raw.is_empty();
    let mut files = normalize_all(files_raw, "files", &mut problems);
    let mut shared = normalize_all(shared_raw, "shared", &mut problems);
    for d in files.iter_mut().chain(shared.iter_mut()) {
        d.file.clone_from(&file);
    }
    if !any_files {
        problems.error(SpecError::NoFiles {
            file: file.clone(),
            id: id.clone(),
        });
    }

    let mut depends_on: Vec<Declared> = Vec::new();
    for dep in depends_raw {
        let value = dep.value.trim().to_string();
        if value.is_empty() {
            continue;
        }
        if !id.is_empty() && id_key(&value) == id_key(&id) {
            problems.error(SpecError::SelfDependency {
                file: file.clone(),
                line: dep.line,
                id: id.clone(),
            });
            continue;
        }
        if !depends_on
            .iter()
            .any(|d| id_key(&d.value) == id_key(&value))
        {
            depends_on.push(Declared {
                value,
                line: dep.line,
                marker: dep.marker,
                file: file.clone(),
            });
        }
    }

    let body = match format {
        SpecFormat::Markdown => body,
        SpecFormat::Yaml => {
            let v = fields
                .body
                .as_ref()
                .filter(|v| !v.is_null())
                .or(fields.instructions.as_ref().filter(|v| !v.is_null()));
            match v.map(scalar_string) {
                None => String::new(),
                Some(Some(s)) => s,
                Some(None) => {
                    let key = if fields.body.is_some() {
                        "body"
                    } else {
                        "instructions"
                    };
                    problems.error(bad_field(key, "a string"));
                    String::new()
                }
            }
        }
    };
    if let Some(pos) = body.find('\0') {
        let line = match format {
            SpecFormat::Markdown => body_line + body[..pos].matches('\n').count(),
            SpecFormat::Yaml => yaml_text
                .key_line("body")
                .or(yaml_text.key_line("instructions"))
                .unwrap_or(1),
        };
        problems.error(SpecError::NulByte {
            file: file.clone(),
            line,
            what: "the body",
        });
    }

    let slurm = match fields.slurm.filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let line = yaml_text.key_line("slurm").unwrap_or(1);
            match slurm_override(&id, v) {
                Ok(o) => Some(o),
                Err(e) => {
                    problems.error(SpecError::BadSlurm {
                        file: file.clone(),
                        line,
                        message: e.message,
                        hint: e.hint,
                    });
                    None
                }
            }
        }
    };

    let rel_file = file.clone();
    Parsed {
        raw: RawSpec {
            rel_path: file,
            format,
            id,
            id_line,
            title,
            priority,
            files,
            shared,
            depends_on,
            body,
            mentions: marks
                .mentions
                .into_iter()
                .map(|m| Mention {
                    file: rel_file.clone(),
                    ..m
                })
                .collect(),
            slurm,
        },
        problems: problems.errors,
    }
}

/// A spec's `slurm:` mapping as an override, checked as the run's section
/// would be (under `spec <id>: slurm` in the messages).
fn slurm_override(
    id: &str,
    value: Value,
) -> Result<crate::slurm::SlurmOverride, crate::error::InputError> {
    let key = format!("spec {id}: slurm");
    let o: crate::slurm::SlurmOverride = serde_yaml::from_value(value).map_err(|e| {
        crate::error::InputError::new(format!("{key}: {e}")).with_hint(
            "the keys a spec may set are partition, time, cpus, mem, account, qos and extra_args",
        )
    })?;
    crate::slurm::SlurmConfig::default()
        .with_override(&o)
        .validate(&key)?;
    Ok(o)
}

fn normalize_all(raw: Vec<Declared>, field: &str, problems: &mut Problems) -> Vec<Declared> {
    let mut out: Vec<Declared> = Vec::new();
    // Dedup in linear time: one spec may declare 100k paths.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for d in raw {
        if d.value.contains('\0') {
            problems.error(SpecError::NulByte {
                file: problems.file.clone(),
                line: d.line,
                what: "a declared path",
            });
            continue;
        }
        if d.value.contains(['\n', '\r']) {
            problems.error(SpecError::NewlineInPath {
                file: problems.file.clone(),
                line: d.line,
                path: d.value.escape_debug().to_string(),
                field: field.to_string(),
            });
            continue;
        }
        let mut raw_value = d.value.clone();
        if let Some(rel) = problems.inside_root(&d.value) {
            problems.warning(SpecError::AbsoluteInRepo {
                file: problems.file.clone(),
                line: d.line,
                path: d.value.clone(),
                relative: rel.clone(),
                field: field.to_string(),
            });
            raw_value = rel;
        }
        match normalize_path(&raw_value) {
            Ok(value) => {
                if seen.insert(value.clone()) {
                    out.push(Declared { value, ..d });
                }
            }
            Err(problem) => problems.path(problem, &d.value, d.line, field),
        }
    }
    out
}
