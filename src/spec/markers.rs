//! The explicit markers of a Markdown spec body, and what a body *mentions*
//! without declaring it (for `check --explain`).
//!
//! Only markers declare files; a path in prose, in a fenced code block or in a
//! reference list never does. A marker is one of:
//!
//! - a bold label naming files or a location (`**File**:`, `**Files to
//!   Create/Modify**:`, `**Test File(s)**:`, `**Implementation Files**:`,
//!   `**Location**:`, `**Path**:`, ... and the labels configured in
//!   `spec.markers`), case-insensitive, the colon inside or outside the bold;
//!   its value is inline (`**File**: `a.rs``) or, when the line ends after the
//!   colon, the list (or table) below it, which ends at the first line that is
//!   neither a list item nor blank. Deeper-indented sub-bullets and
//!   continuation lines are comments, skipped;
//! - a heading of the same kind (`### Files to Update`, `## Affected Files`):
//!   every top-level list item (or first table cell) up to the next heading
//!   declares; prose in between does not;
//! - a heading that is the declaration itself (`### File: src/x.rs`).
//!
//! An item is its first backticked span, else its first word; what follows
//! (`(NEW - 150 lines)`, `- Main coordinator`, `: helper`) is annotation. An
//! item `a -> b` (a move) declares both paths. Inside backticks, a `:Symbol`
//! suffix (a code reference), spaces or parentheses mean "not a path".
//! Labels that *refer* to files (`References`, `Code References`,
//! `Documentation`, `Related`, `See also`, and `spec.reference_markers`) never
//! declare, even when they also say "files".

use std::sync::OnceLock;

use regex::Regex;

use super::model::Declared;

/// Extra labels configured by the team (`spec.markers`,
/// `spec.reference_markers`), compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkerRules {
    pub markers: Vec<String>,
    pub reference_markers: Vec<String>,
}

/// A path the body mentions that did not count as a declaration, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mention {
    pub value: String,
    pub line: usize,
    pub reason: String,
    /// The spec file holding the line, relative to the repository root.
    #[serde(default)]
    pub file: String,
}

/// What the markers of one body declare, with file line numbers.
#[derive(Debug, Default)]
pub(crate) struct Markers {
    pub files: Vec<Declared>,
    pub depends_on: Vec<Declared>,
    /// The raw value and its line.
    pub priority: Option<Declared>,
    pub title: Option<String>,
    pub mentions: Vec<Mention>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Files,
    Reference,
    DependsOn,
    Priority,
}

fn marker_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^ {0,3}(?:[-*+][ \t]+)?\*\*[ \t]*([a-z][a-z0-9 ()/&,_-]*?)[ \t]*(:?)[ \t]*\*\*[ \t]*(:?)(.*)$")
            .expect("static regex is valid")
    })
}

fn heading_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$").expect("static regex is valid")
    })
}

fn bullet_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^([ \t]*)(?:[-*+]|\d{1,3}[.)])(?:[ \t]+(.*))?$")
            .expect("static regex is valid")
    })
}

fn files_label_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:[a-z]+ ){0,3}files?(?: (?:to|that|being) [a-z/&, ]+| (?:changed|modified|created|affected|touched|involved|added|updated))?$|^(?:file |target |new )?(?:locations?|paths?)$",
        )
        .expect("static regex is valid")
    })
}

fn path_token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:/|~/)?(?:[\w.*?\[\]{},-]+/)+[\w.*?\[\]{},-]*$|^[\w*?\[\]{}-]+\.[A-Za-z][A-Za-z0-9]{0,7}$")
            .expect("static regex is valid")
    })
}

const SUB_ITEM: &str = "a note under a list item, not a declaration";

/// Default labels that refer to files rather than declare them.
const REFERENCE_WORDS: &[&str] = &["reference", "related", "see also", "documentation", "docs"];

/// A label as compared: lowercase, `(s)` -> `s`, single spaces, tight slashes.
fn norm_label(label: &str) -> String {
    let l = label.to_lowercase().replace("(s)", "s");
    let l = l.trim().trim_end_matches(':').trim();
    l.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" / ", "/")
        .replace("/ ", "/")
        .replace(" /", "/")
}

fn kind_of(label: &str, rules: &MarkerRules) -> Option<Kind> {
    let name = norm_label(label);
    if rules
        .reference_markers
        .iter()
        .any(|m| norm_label(m) == name)
        || REFERENCE_WORDS.iter().any(|w| {
            name == *w
                || name.starts_with(&format!("{w} "))
                || name.ends_with(&format!(" {w}"))
                || name.ends_with(&format!(" {w}s"))
                || name == format!("{w}s")
                || name.contains(&format!("{w}s "))
        })
    {
        return Some(Kind::Reference);
    }
    if rules.markers.iter().any(|m| norm_label(m) == name) || files_label_re().is_match(&name) {
        return Some(Kind::Files);
    }
    match name.as_str() {
        "depends on" | "depends-on" | "depends_on" | "depends" | "dependencies" | "dependency"
        | "requires" | "blocked by" => Some(Kind::DependsOn),
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

/// Strips surrounding quotes, emphasis and trailing punctuation.
fn clean(token: &str) -> &str {
    token
        .trim()
        .trim_end_matches([',', ';', ':'])
        .trim_matches(|c| c == '"' || c == '\'' || c == '*')
        .trim()
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
        "" | "none" | "n/a" | "-" | "—" | "nothing" | "tbd"
    )
}

fn is_arrow(s: &str) -> bool {
    matches!(s, "->" | "→" | "=>" | "-->")
}

/// Whether `s` looks like a path or glob someone meant (for mentions).
fn looks_like_path(s: &str) -> bool {
    let dir = s.len() > 1 && s.ends_with('/');
    !s.contains(char::is_whitespace)
        && (path_token_re().is_match(s) || dir && path_token_re().is_match(&format!("{s}x")))
}

/// Why a candidate is not a path, or the path itself.
fn candidate(raw: &str, backticked: bool) -> Result<Option<String>, &'static str> {
    let v = if backticked { raw.trim() } else { clean(raw) };
    if is_none_word(v) {
        return Ok(None);
    }
    if v.contains("://") {
        return Err("a URL, not a path");
    }
    if v.contains(char::is_whitespace) {
        return Err("not a path: contains spaces");
    }
    if v.contains(['(', ')']) {
        return Err("not a path: contains parentheses");
    }
    let drive = v.len() >= 3 && v.as_bytes()[1] == b':' && v.as_bytes()[0].is_ascii_alphabetic();
    if v.contains(':') && !drive {
        return Err("a code reference (`path:Symbol`), not a path");
    }
    if !backticked && !v.contains(['/', '.', '*']) {
        return Err("not a path: a word without `/` or `.`");
    }
    Ok(Some(v.to_string()))
}

/// Scanner state for one body.
struct Scan<'r> {
    rules: &'r MarkerRules,
    out: Markers,
}

impl Scan<'_> {
    fn mention(&mut self, value: &str, line: usize, reason: &str) {
        self.out.mentions.push(Mention {
            value: value.to_string(),
            line,
            reason: reason.to_string(),
            file: String::new(),
        });
    }

    /// Path-like words and backticked spans of a line that does not declare.
    fn mentions_in(&mut self, text: &str, line: usize, reason: &str) {
        let mut seen: Vec<String> = Vec::new();
        for span in all_backticked(text) {
            let span = span.trim();
            if looks_like_path(span)
                || span.contains(':') && looks_like_path(span.split(':').next().unwrap_or(""))
            {
                seen.push(span.to_string());
            }
        }
        let outside: String = text
            .split('`')
            .enumerate()
            .filter_map(|(i, p)| (i % 2 == 0).then_some(p))
            .collect::<Vec<_>>()
            .join(" ");
        for word in outside.split_whitespace() {
            let w = word
                .trim_matches(|c: char| "\"'()[]{},;:*!?".contains(c))
                .trim_end_matches('.');
            if looks_like_path(w) && !seen.iter().any(|s| s == w) {
                seen.push(w.to_string());
            }
        }
        for s in seen {
            self.mention(&s, line, reason);
        }
    }

    fn declare(&mut self, value: String, line: usize, marker: &str) {
        self.out.files.push(Declared {
            value,
            line,
            marker: marker.to_string(),
            file: String::new(),
        });
    }

    /// One item (a list entry, an inline value piece or a table cell) of a
    /// files marker. `all`: every backticked span counts (inline values).
    fn file_item(&mut self, text: &str, line: usize, marker: &str, all: bool) {
        let text = text.trim();
        if text.contains('`') {
            let spans = all_backticked(text);
            // `a` -> `b`: a move declares both.
            let pieces: Vec<&str> = text.split('`').collect();
            let moved = pieces
                .iter()
                .enumerate()
                .any(|(i, p)| i % 2 == 0 && p.split_whitespace().any(is_arrow));
            let take = if all || moved { spans.len() } else { 1 };
            for (k, span) in spans.iter().enumerate() {
                if k < take {
                    self.candidate(span, true, line, marker);
                } else if looks_like_path(span.trim()) {
                    self.mention(span.trim(), line, "annotation after the declared path");
                }
            }
            return;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        if let Some(pos) = words.iter().position(|w| is_arrow(w)) {
            if pos > 0 {
                self.candidate(words[pos - 1], false, line, marker);
            }
            if let Some(to) = words.get(pos + 1) {
                self.candidate(to, false, line, marker);
            }
            return;
        }
        if all {
            for piece in text.split(',') {
                if let Some(first) = piece.split_whitespace().next() {
                    self.candidate(first, false, line, marker);
                }
            }
        } else if let Some(first) = words.first() {
            self.candidate(first, false, line, marker);
        }
    }

    fn candidate(&mut self, raw: &str, backticked: bool, line: usize, marker: &str) {
        match candidate(raw, backticked) {
            Ok(Some(v)) => self.declare(v, line, marker),
            Ok(None) => {}
            Err(reason) => self.mention(raw.trim(), line, reason),
        }
    }

    fn table_row(&mut self, text: &str, line: usize, marker: &str) {
        let cells: Vec<&str> = text.trim().trim_matches('|').split('|').collect();
        let first = cells.first().map_or("", |c| c.trim());
        if first.chars().all(|c| matches!(c, '-' | ':' | ' ')) {
            return; // the separator row
        }
        if !first.contains('`') && !looks_like_path(clean(first)) {
            return; // a header row
        }
        self.file_item(first, line, marker, false);
    }

    fn depends_item(&mut self, text: &str, line: usize) {
        for id in dependency_ids(text) {
            self.out.depends_on.push(Declared {
                value: id,
                line,
                marker: "Depends on".to_string(),
                file: String::new(),
            });
        }
    }
}

fn link_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\]\([^)]*\)").expect("static regex is valid"))
}

/// The ids in a dependency value, prose ignored: every word holding a digit
/// (`SPEC-012`, `US-035`, `12`, `SPEC-012-retry.md`).
pub(crate) fn dependency_ids(text: &str) -> Vec<String> {
    let text = link_re().replace_all(text, "]");
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '[' | ']' | '`' | '(' | ')'))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let id_like = w.bytes().any(|b| b.is_ascii_digit())
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        // `Phase 2`, `step 3`: a bare number counted by the word before it.
        let counted = w.bytes().all(|b| b.is_ascii_digit())
            && i > 0
            && words[i - 1].bytes().all(|b| b.is_ascii_alphabetic())
            && !matches!(
                words[i - 1].to_ascii_lowercase().as_str(),
                "and" | "or" | "spec" | "specs" | "then" | "after" | "on" | "id" | "ids"
            );
        if id_like && !counted {
            out.push(w.clone());
        }
    }
    out
}

fn heading_of(line: &str) -> Option<(usize, &str)> {
    let caps = heading_re().captures(line)?;
    let level = caps.get(1)?.as_str().len();
    Some((level, caps.get(2).map_or("", |m| m.as_str()).trim()))
}

/// Scans a Markdown body. `first_line` is the file line number of the body's
/// first line (after any front matter).
pub(crate) fn scan(body: &str, first_line: usize, rules: &MarkerRules) -> Markers {
    let lines: Vec<&str> = body.lines().collect();
    let mut s = Scan {
        rules,
        out: Markers::default(),
    };
    let mut fence: Option<(char, usize)> = None;
    // The heading section we are in: Files (its label) or Reference.
    let mut section: Option<(Kind, String, Option<usize>)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let line_no = first_line + i;
        i += 1;
        if let Some(open) = fence {
            if fence_closes(line, open) {
                fence = None;
            } else {
                s.mentions_in(line, line_no, "inside a code block");
            }
            continue;
        }
        if let Some(open) = fence_open(line) {
            fence = Some(open);
            continue;
        }
        if let Some((level, text)) = heading_of(line) {
            section = None;
            if level == 1 && s.out.title.is_none() && !text.is_empty() {
                s.out.title = Some(text.to_string());
            }
            let plain = text.replace("**", "");
            let plain = plain.trim();
            if let Some(kind) = kind_of(plain, s.rules) {
                match kind {
                    Kind::Files | Kind::Reference => {
                        section = Some((kind, plain.to_string(), None))
                    }
                    _ => {}
                }
                continue;
            }
            // `### File: src/x.rs`: the heading is the declaration.
            if let Some((label, rest)) = plain.split_once(':') {
                match kind_of(label, s.rules) {
                    Some(Kind::Files) if !rest.trim().is_empty() => {
                        s.file_item(rest, line_no, label.trim(), true);
                    }
                    Some(Kind::Reference) => {
                        s.mentions_in(rest, line_no, "a reference, not a declaration")
                    }
                    Some(Kind::DependsOn) => s.depends_item(rest, line_no),
                    Some(Kind::Priority) if s.out.priority.is_none() => {
                        s.out.priority = Some(Declared {
                            value: rest.trim().to_string(),
                            line: line_no,
                            marker: "Priority".to_string(),
                            file: String::new(),
                        });
                    }
                    _ => {}
                }
            }
            continue;
        }
        if let Some(caps) = marker_re().captures(line) {
            let inside = caps.get(2).map_or("", |m| m.as_str());
            let outside = caps.get(3).map_or("", |m| m.as_str());
            let label = caps.get(1).map_or("", |m| m.as_str()).trim();
            // Exactly one colon: `**Files**:` or `**Files:**`.
            if inside.is_empty() != outside.is_empty() {
                if let Some(kind) = kind_of(label, s.rules) {
                    let rest = caps.get(4).map_or("", |m| m.as_str()).trim();
                    i = label_value(&mut s, kind, label, rest, line_no, &lines, i, first_line);
                    continue;
                }
            }
        }
        match &mut section {
            Some((Kind::Files, label, base)) => {
                let label = label.clone();
                if let Some(b) = bullet_re().captures(line) {
                    let indent = indent_width(b.get(1).map_or("", |m| m.as_str()));
                    let base = *base.get_or_insert(indent);
                    if indent <= base {
                        s.file_item(b.get(2).map_or("", |m| m.as_str()), line_no, &label, false);
                    } else {
                        s.mentions_in(line, line_no, SUB_ITEM);
                    }
                } else if line.trim_start().starts_with('|') {
                    s.table_row(line, line_no, &label);
                } else {
                    s.mentions_in(line, line_no, "prose, not a list item of the marker");
                }
            }
            Some((_, _, _)) => s.mentions_in(line, line_no, "a reference list, not a declaration"),
            None => s.mentions_in(line, line_no, "prose, not a marker"),
        }
    }
    s.out
}

/// Handles a bold label and its value (inline or the list below); returns
/// the index of the next line to scan.
#[allow(clippy::too_many_arguments)]
fn label_value(
    s: &mut Scan<'_>,
    kind: Kind,
    label: &str,
    rest: &str,
    line_no: usize,
    lines: &[&str],
    mut i: usize,
    first_line: usize,
) -> usize {
    if kind == Kind::Priority {
        if s.out.priority.is_none() {
            s.out.priority = Some(Declared {
                value: clean(rest.trim_matches('`')).to_string(),
                line: line_no,
                marker: label.to_string(),
                file: String::new(),
            });
        }
        return i;
    }
    let item = |s: &mut Scan<'_>, text: &str, line: usize, all: bool| match kind {
        Kind::Files => s.file_item(text, line, label, all),
        Kind::DependsOn => s.depends_item(text, line),
        _ => s.mentions_in(text, line, "a reference, not a declaration"),
    };
    if !rest.is_empty() {
        item(s, rest, line_no, true);
        return i;
    }
    // The list (or table) below the label.
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
                item(
                    s,
                    b.get(2).map_or("", |m| m.as_str()),
                    first_line + i,
                    false,
                );
            } else {
                s.mentions_in(l, first_line + i, SUB_ITEM);
            }
            i += 1;
        } else if l.trim_start().starts_with('|') && kind == Kind::Files {
            s.table_row(l, first_line + i, label);
            first_indent.get_or_insert(width);
            i += 1;
        } else if first_indent.is_some_and(|base| width > base) {
            s.mentions_in(l, first_line + i, SUB_ITEM);
            i += 1;
        } else {
            break;
        }
    }
    i
}
