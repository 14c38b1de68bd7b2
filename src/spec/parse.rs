//! Parsing one spec file (Markdown with optional front matter, or YAML) into a
//! [`RawSpec`], with the checks that need only that file: field types, paths,
//! globs, at least one declared file, no dependency on itself.
//!
//! Arbitrary bytes never panic: the result is always `Ok` or `Err`.

use serde::Deserialize;
use serde_yaml::Value;

use super::error::SpecError;
use super::markers;
use super::model::id_key;
use super::paths::{normalize_path, PathProblem};
use super::yaml::{position, yaml_fault};

/// The two spec formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Markdown,
    Yaml,
}

/// One declared value and the file line it was declared on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub value: String,
    pub line: usize,
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

/// The collected errors of one file.
struct Problems {
    file: String,
    errors: Vec<SpecError>,
}

impl Problems {
    fn path(&mut self, problem: PathProblem, raw: &str, line: usize, field: &str) {
        let (file, path, field) = (self.file.clone(), raw.to_string(), field.to_string());
        self.errors.push(match problem {
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

/// A list of strings from `v`: a sequence of scalars, a single scalar or null.
fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Sequence(items) => items.iter().map(scalar_string).collect(),
        other => scalar_string(other).map(|s| vec![s]),
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

/// Parses one spec file. `rel_path` names it in messages and decides the
/// format (`.yaml` / `.yml` is YAML, anything else Markdown) and the default
/// id. All problems of the file are returned together (`SpecError::Many`).
pub fn parse_spec(rel_path: &str, text: &[u8]) -> Result<RawSpec, SpecError> {
    let file = rel_path.to_string();
    let lower = rel_path.to_ascii_lowercase();
    let format = if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        SpecFormat::Yaml
    } else {
        SpecFormat::Markdown
    };
    let text = utf8(&file, text)?;

    let (fields, yaml_text, body, marks) = match format {
        SpecFormat::Yaml => {
            let fields = parse_fields(&file, text, 0, "yaml spec")?;
            (fields, YamlText::new(text, 0), String::new(), None)
        }
        SpecFormat::Markdown => {
            let (front, body, body_line) = split_front_matter(&file, text)?;
            let fields = match front {
                Some(yaml) => parse_fields(&file, yaml, 1, "front matter")?,
                None => Fields::default(),
            };
            let marks = markers::scan(body, body_line);
            (
                fields,
                YamlText::new(front.unwrap_or(""), 1),
                body.to_string(),
                Some(marks),
            )
        }
    };

    let mut problems = Problems {
        file: file.clone(),
        errors: Vec::new(),
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
                problems.errors.push(SpecError::UnknownField {
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
                problems.errors.push(bad_field("id", "a string"));
                None
            }
        },
        None => id_from_file_name(rel_path),
    };
    let id = id.unwrap_or_default();
    if id.is_empty() {
        if fields.id.is_none() {
            problems.errors.push(SpecError::NoId { file: file.clone() });
        } else {
            problems.errors.push(SpecError::BadId {
                file: file.clone(),
                line: id_line,
                id: id.clone(),
            });
        }
    } else if !valid_id(&id) {
        problems.errors.push(SpecError::BadId {
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
            None => problems.errors.push(bad_field("title", "a string")),
        }
    }
    let marks = marks.unwrap_or_default();
    let title = title.or(marks.title.clone()).unwrap_or_else(|| id.clone());

    // priority: the field wins over the marker
    let mut priority = None;
    if let Some(v) = fields.priority.as_ref().filter(|v| !v.is_null()) {
        let raw = scalar_string(v).unwrap_or_else(|| "(not a number)".to_string());
        match raw.trim().parse::<i64>() {
            Ok(p) => priority = Some(p),
            Err(_) => problems.errors.push(SpecError::BadPriority {
                file: file.clone(),
                line: yaml_text.key_line("priority").unwrap_or(1),
                value: raw,
            }),
        }
    }
    if priority.is_none() {
        if let Some(p) = &marks.priority {
            match p.value.parse::<i64>() {
                Ok(v) => priority = Some(v),
                Err(_) => problems.errors.push(SpecError::BadPriority {
                    file: file.clone(),
                    line: p.line,
                    value: p.value.clone(),
                }),
            }
        }
    }

    // files, shared, depends_on: field values first, then markers
    let declared = |key: &str, v: &Option<Value>, problems: &mut Problems| -> Vec<Declared> {
        match v.as_ref().map(string_list) {
            None => Vec::new(),
            Some(Some(items)) => {
                let lines = yaml_text.value_lines(key, &items);
                items
                    .into_iter()
                    .zip(lines)
                    .map(|(value, line)| Declared { line, value })
                    .collect()
            }
            Some(None) => {
                problems.errors.push(bad_field(key, "a list of strings"));
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
    let files = normalize_all(files_raw, "files", &mut problems);
    let shared = normalize_all(shared_raw, "shared", &mut problems);
    if !any_files {
        problems.errors.push(SpecError::NoFiles {
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
            problems.errors.push(SpecError::SelfDependency {
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
                    problems.errors.push(bad_field(key, "a string"));
                    String::new()
                }
            }
        }
    };

    if let Some(err) = SpecError::collect(problems.errors) {
        return Err(err);
    }
    Ok(RawSpec {
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
    })
}

fn normalize_all(raw: Vec<Declared>, field: &str, problems: &mut Problems) -> Vec<Declared> {
    let mut out: Vec<Declared> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in raw {
        match normalize_path(&d.value) {
            Ok(value) => {
                if seen.insert(value.clone()) {
                    out.push(Declared {
                        value,
                        line: d.line,
                    });
                }
            }
            Err(problem) => problems.path(problem, &d.value, d.line, field),
        }
    }
    out
}
