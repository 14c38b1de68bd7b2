//! The agent's drafts: Markdown files `SPEC-<name>-<slug>.md` in the scratch
//! folder, in treefarm's spec format plus one key of their own, `creates:`
//! (the paths the unit adds that do not exist yet). `creates:` is taken out
//! before the spec parser reads the rest, its lines blanked so that every line
//! number the parser reports is still the line of the draft.

use std::path::Path;

use serde::Deserialize;

use super::error::SplitError;

use crate::spec::{normalize_path, parse_spec_with, ParseOptions, PathProblem, RawSpec};

/// What a draft's name must look like, for hints.
pub const DRAFT_HINT: &str =
    "name each draft `SPEC-<name>-<slug>.md` in the scratch folder (see FORMAT.md)";

/// One draft as the agent wrote it.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Its file name in the scratch folder (`SPEC-auth-login.md`).
    pub file: String,
    /// The agent's name for it: the `id:` field, else `<name>` of the file
    /// name. Other drafts name it in `depends_on`.
    pub name: String,
    /// The draft as the spec parser read it (without `creates:`).
    pub raw: RawSpec,
    /// True when the parser found no error (malformed drafts are judged as
    /// written, so the check names their lines).
    pub parsed_ok: bool,
    /// The draft's text with the `creates:` lines blanked.
    pub text: String,
    /// `creates:`, normalised.
    pub creates: Vec<String>,
    /// What was wrong with `creates:` (its line and why).
    pub creates_problem: Option<(usize, String)>,
}

/// Reads every `SPEC-*.md` directly in `scratch`, sorted by name.
pub fn read_drafts(scratch: &Path, parse: &ParseOptions) -> Result<Vec<Draft>, SplitError> {
    let entries = std::fs::read_dir(scratch)
        .map_err(|e| SplitError::io("read the scratch folder", scratch, e))?;
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SplitError::io("read the scratch folder", scratch, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("spec-") && lower.ends_with(".md") && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    let mut drafts = Vec::with_capacity(names.len());
    for file in names {
        let path = scratch.join(&file);
        let bytes = std::fs::read(&path).map_err(|e| SplitError::io("read draft", &path, e))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        drafts.push(parse_draft(&file, &text, parse));
    }
    Ok(drafts)
}

/// One draft's text parsed: `creates:` taken out, the rest read as a spec.
pub(crate) fn parse_draft(file: &str, text: &str, parse: &ParseOptions) -> Draft {
    let (stripped, creates, creates_problem) = take_creates(text);
    let parsed = parse_spec_with(file, stripped.as_bytes(), parse);
    Draft {
        file: file.to_string(),
        name: parsed.raw.id.clone(),
        parsed_ok: parsed.is_valid(),
        raw: parsed.raw,
        text: stripped,
        creates,
        creates_problem,
    }
}

#[derive(Deserialize)]
struct CreatesField {
    creates: Option<serde_yaml::Value>,
}

/// Splits `creates:` out of the front matter: the text with its lines
/// blanked, the paths, and a problem (line, message) when it is malformed.
fn take_creates(text: &str) -> (String, Vec<String>, Option<(usize, String)>) {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.first().map(|l| l.trim_end()) != Some("---") {
        return (text.to_string(), Vec::new(), None);
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| matches!(l.trim_end(), "---" | "..."))
        .map(|i| i + 1);
    let Some(close) = close else {
        return (text.to_string(), Vec::new(), None);
    };
    let Some(start) = (1..close).find(|&i| lines[i].starts_with("creates:")) else {
        return (text.to_string(), Vec::new(), None);
    };
    // The key's block: following lines that are indented or list items.
    let mut end = start + 1;
    while end < close && (lines[end].starts_with([' ', '\t', '-']) || lines[end].trim().is_empty())
    {
        end += 1;
    }
    let block: String = lines[start..end].concat();
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        if (start..end).contains(&i) {
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    let line = start + 1;
    let bad = |why: &str| (line, format!("`creates` {why}"));
    let value = match serde_yaml::from_str::<CreatesField>(&block) {
        Ok(field) => field.creates,
        Err(e) => {
            return (
                out,
                Vec::new(),
                Some(bad(&format!("is not valid YAML: {e}"))),
            )
        }
    };
    let items: Vec<serde_yaml::Value> = match value {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(serde_yaml::Value::Sequence(items)) => items,
        Some(v @ serde_yaml::Value::String(_)) => vec![v],
        Some(_) => return (out, Vec::new(), Some(bad("must be a list of paths"))),
    };
    let mut creates = Vec::new();
    for item in items {
        let Some(raw) = item.as_str() else {
            return (out, creates, Some(bad("must be a list of paths")));
        };
        match normalize_path(raw) {
            Ok(path) if !creates.contains(&path) => creates.push(path),
            Ok(_) => {}
            Err(e) => {
                let why = match e {
                    PathProblem::Empty => "an empty path".to_string(),
                    PathProblem::Absolute => "an absolute path".to_string(),
                    PathProblem::Escapes => "a path leaving the repository".to_string(),
                    PathProblem::GitDir => "a path inside `.git/`".to_string(),
                    PathProblem::InvalidGlob(m) => format!("an invalid glob ({m})"),
                };
                return (out, creates, Some(bad(&format!("names `{raw}`, {why}"))));
            }
        }
    }
    (out, creates, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_is_taken_out_and_lines_keep_their_numbers() {
        let text = "---\ntitle: T\ncreates:\n  - src/new.rs\n  - ./docs/x.md\nfiles: [src/new.rs]\n---\nbody\n";
        let (out, creates, problem) = take_creates(text);
        assert_eq!(creates, vec!["src/new.rs", "docs/x.md"]);
        assert!(problem.is_none());
        assert_eq!(out.lines().count(), text.lines().count());
        assert_eq!(out.lines().nth(5), Some("files: [src/new.rs]"));
        assert!(!out.contains("creates"));
    }

    #[test]
    fn creates_as_one_string_and_as_a_flow_list() {
        let (_, one, _) = take_creates("---\ncreates: a.rs\n---\n");
        assert_eq!(one, vec!["a.rs"]);
        let (_, flow, _) = take_creates("---\ncreates: [a.rs, b/c.rs]\nfiles: [a.rs]\n---\n");
        assert_eq!(flow, vec!["a.rs", "b/c.rs"]);
    }

    #[test]
    fn malformed_creates_names_its_line() {
        let (_, _, problem) = take_creates("---\ntitle: x\ncreates: 42\n---\n");
        let (line, message) = problem.expect("a problem");
        assert_eq!(line, 3);
        assert!(message.contains("list of paths"), "{message}");
    }

    #[test]
    fn a_draft_without_front_matter_is_unchanged() {
        let (out, creates, problem) = take_creates("# Title\n**Files**: `a.rs`\n");
        assert_eq!(out, "# Title\n**Files**: `a.rs`\n");
        assert!(creates.is_empty() && problem.is_none());
    }
}
