//! The explicit markers of a Markdown spec body: `**File**:`, `**Files**:`,
//! `**Files to Create/Modify**:` (and `to Create`, `to Modify`), `**Depends
//! on**:`, `**Priority**:`, plus the first `# ` heading as the title.
//!
//! Only markers declare files: a path in prose or in a fenced code block is not
//! a declaration. A marker's value is inline (`**File**: `a.rs``) or, when the
//! line ends after the colon, the bullet list below it (`-`, `*`, `+` or
//! `1.`), which ends at the first line that is neither a bullet nor blank.
//! Deeper-indented sub-bullets and continuation lines are comments, skipped.

use std::sync::OnceLock;

use regex::Regex;

use super::parse::Declared;

/// What the markers of one body declare, with file line numbers.
#[derive(Debug, Default)]
pub(crate) struct Markers {
    pub files: Vec<Declared>,
    pub depends_on: Vec<Declared>,
    /// The raw value and its line.
    pub priority: Option<Declared>,
    pub title: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Files,
    DependsOn,
    Priority,
}

fn marker_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^ {0,3}(?:[-*+][ \t]+)?\*\*[ \t]*([a-z][a-z /_-]*?)[ \t]*(:?)[ \t]*\*\*[ \t]*(:?)(.*)$")
            .expect("static regex is valid")
    })
}

fn bullet_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^([ \t]*)(?:[-*+]|\d{1,3}[.)])(?:[ \t]+(.*))?$")
            .expect("static regex is valid")
    })
}

fn files_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^files?(?: to (?:create|modify|change|edit|touch|create/modify|modify/create|create or modify|create and modify))?$",
        )
        .expect("static regex is valid")
    })
}

fn kind_of(name: &str) -> Option<Kind> {
    let name = name.to_ascii_lowercase();
    let name: String = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" / ", "/")
        .replace("/ ", "/")
        .replace(" /", "/");
    if files_name_re().is_match(&name) {
        return Some(Kind::Files);
    }
    match name.as_str() {
        "depends on" | "depends-on" | "depends_on" | "depends" | "dependencies" => {
            Some(Kind::DependsOn)
        }
        "priority" => Some(Kind::Priority),
        _ => None,
    }
}

fn indent_width(s: &str) -> usize {
    s.chars()
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum::<usize>()
}

/// The opening fence of a code block: its character and length.
fn fence_open(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let c = trimmed.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|&x| x == c).count();
    if n < 3 {
        return None;
    }
    // A backtick fence's info string may not contain backticks.
    if c == '`' && trimmed[n..].contains('`') {
        return None;
    }
    Some((c, n))
}

fn fence_closes(line: &str, open: (char, usize)) -> bool {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return false;
    }
    let n = trimmed.chars().take_while(|&x| x == open.0).count();
    n >= open.1 && trimmed[n * open.0.len_utf8()..].trim().is_empty()
}

/// Strips surrounding quotes and brackets a value may carry.
fn clean(token: &str) -> &str {
    token
        .trim()
        .trim_end_matches([',', ';'])
        .trim_matches(|c| c == '"' || c == '\'')
        .trim()
}

/// The first backticked span of `s`, if any.
fn first_backticked(s: &str) -> Option<&str> {
    let start = s.find('`')?;
    let rest = &s[start + 1..];
    let end = rest.find('`')?;
    Some(&rest[..end])
}

/// All backticked spans of `s`.
fn all_backticked(s: &str) -> Vec<&str> {
    s.split('`')
        .enumerate()
        .filter_map(|(i, part)| (i % 2 == 1).then_some(part))
        .collect()
}

fn is_none_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "none" | "n/a" | "-" | "—" | "nothing"
    )
}

/// Items of an inline marker value (`a.rs, b.rs` or `` `a.rs` `b.rs` ``).
fn inline_items(rest: &str, line: usize) -> Vec<Declared> {
    let rest = rest.trim();
    let values: Vec<String> = if rest.contains('`') {
        all_backticked(rest)
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect()
    } else {
        rest.split(',')
            .filter_map(|piece| piece.split_whitespace().next())
            .map(|s| clean(s).to_string())
            .collect()
    };
    values
        .into_iter()
        .filter(|v| !is_none_word(v))
        .map(|value| Declared { value, line })
        .collect()
}

/// The value of one bullet: its first backticked span, else its first word.
fn bullet_item(content: &str, line: usize) -> Option<Declared> {
    let value = match first_backticked(content) {
        Some(v) => v.trim().to_string(),
        None => clean(content.split_whitespace().next().unwrap_or("")).to_string(),
    };
    (!is_none_word(&value)).then_some(Declared { value, line })
}

/// Scans a Markdown body. `first_line` is the file line number of the body's
/// first line (after any front matter).
pub(crate) fn scan(body: &str, first_line: usize) -> Markers {
    let lines: Vec<&str> = body.lines().collect();
    let mut out = Markers::default();
    let mut fence: Option<(char, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let line_no = first_line + i;
        i += 1;
        if let Some(open) = fence {
            if fence_closes(line, open) {
                fence = None;
            }
            continue;
        }
        if let Some(open) = fence_open(line) {
            fence = Some(open);
            continue;
        }
        if out.title.is_none() {
            let t = line.trim_start_matches(' ');
            if line.len() - t.len() <= 3 {
                if let Some(heading) = t.strip_prefix("# ") {
                    let heading = heading.trim().trim_end_matches('#').trim();
                    if !heading.is_empty() {
                        out.title = Some(heading.to_string());
                    }
                }
            }
        }
        let Some(caps) = marker_re().captures(line) else {
            continue;
        };
        let inside = caps.get(2).map_or("", |m| m.as_str());
        let outside = caps.get(3).map_or("", |m| m.as_str());
        // Exactly one colon: `**Files**:` or `**Files:**`.
        if inside.is_empty() == outside.is_empty() {
            continue;
        }
        let Some(kind) = kind_of(caps.get(1).map_or("", |m| m.as_str())) else {
            continue;
        };
        let rest = caps.get(4).map_or("", |m| m.as_str()).trim();
        if kind == Kind::Priority {
            if out.priority.is_none() {
                let value = clean(rest.trim_matches('`')).to_string();
                out.priority = Some(Declared {
                    value,
                    line: line_no,
                });
            }
            continue;
        }
        let target = match kind {
            Kind::Files => &mut out.files,
            _ => &mut out.depends_on,
        };
        if !rest.is_empty() {
            target.extend(inline_items(rest, line_no));
            continue;
        }
        // The bullet list below the marker.
        let mut first_indent: Option<usize> = None;
        while i < lines.len() {
            let l = lines[i];
            if l.trim().is_empty() {
                i += 1;
                continue;
            }
            let width = indent_width(&l[..l.len() - l.trim_start().len()]);
            if let Some(b) = bullet_re().captures(l) {
                let indent = indent_width(b.get(1).map_or("", |m| m.as_str()));
                let base = *first_indent.get_or_insert(indent);
                if indent <= base {
                    let content = b.get(2).map_or("", |m| m.as_str());
                    target.extend(bullet_item(content, first_line + i));
                }
                i += 1;
            } else if first_indent.is_some_and(|base| width > base) {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
}
