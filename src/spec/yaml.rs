//! Turning `serde_yaml` errors into file positions and short messages, shared
//! by spec front matter, YAML specs and `treefarm.yaml`.

use std::sync::OnceLock;

use regex::Regex;

/// A YAML error located in the file it came from.
#[derive(Debug, Clone)]
pub(crate) struct YamlFault {
    /// 1-based line in the whole file (front matter offset applied).
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The message without serde_yaml's own "at line N column M".
    pub message: String,
    /// `Some((field, expected))` when serde rejected an unknown field;
    /// `expected` is serde's list of the known ones.
    pub unknown_field: Option<(String, String)>,
}

fn location_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\s*at line \d+ column \d+").expect("static regex is valid"))
}

fn struct_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\bstruct [A-Za-z_]+").expect("static regex is valid"))
}

fn unknown_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"unknown field `([^`]*)`, expected (?:one of )?(.*)$")
            .expect("static regex is valid")
    })
}

/// Locates `err` in the file: `line_offset` is the number of file lines before
/// the YAML text (the front matter's opening `---`).
pub(crate) fn yaml_fault(err: &serde_yaml::Error, line_offset: usize) -> YamlFault {
    let (line, column) = match err.location() {
        Some(loc) => (loc.line() + line_offset, loc.column()),
        None => (line_offset + 1, 0),
    };
    let full = err.to_string();
    let message = location_re().replace_all(&full, "");
    // serde names our Rust types ("expected struct Fields"); users wrote a mapping.
    let message = struct_re()
        .replace_all(&message, "a mapping")
        .trim()
        .to_string();
    let unknown_field = unknown_re().captures(&message).map(|c| {
        (
            c.get(1).map_or("", |m| m.as_str()).to_string(),
            c.get(2).map_or("", |m| m.as_str()).to_string(),
        )
    });
    YamlFault {
        line,
        column,
        message,
        unknown_field,
    }
}

/// `file:line:col` or `file:line` when the column is unknown.
pub(crate) fn position(file: &str, line: usize, column: usize) -> String {
    if column > 0 {
        format!("{file}:{line}:{column}")
    } else {
        format!("{file}:{line}")
    }
}
