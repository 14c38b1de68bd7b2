//! The validated spec model: [`Spec`], the set of them, and id matching.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::SpecError;

/// One declared value, and where it was declared: the file, its line and
/// the marker (`**Files**`, `### Files to Update`, `files:`) that declared it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    pub value: String,
    pub line: usize,
    #[serde(default)]
    pub marker: String,
    /// The spec file (relative to the repository root) holding the line.
    #[serde(default)]
    pub file: String,
}

/// One unit of work: what to do (`body`) and which files it may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Display id as written: `"020"` from `SPEC-020-retry.md`, or the `id`
    /// field (a leading `SPEC-` is dropped there too).
    pub id: String,
    /// Front matter `title`, else the first `# ` heading, else the id.
    pub title: String,
    /// Lower runs first: the `priority` field or marker, else the numeric id,
    /// else `1_000_000 + order`.
    pub priority: i64,
    /// Absolute path of the spec file.
    pub path: PathBuf,
    /// Path relative to the repository root, for messages.
    pub rel_path: String,
    /// Declared paths and globs, normalised (no leading `./`, no `.`
    /// components, a trailing `/` turned into `/**`), deduplicated, in order of
    /// declaration (front matter first, then markers).
    pub files: Vec<String>,
    /// Paths this spec touches that may overlap with others (`shared`).
    pub shared: Vec<String>,
    /// Display ids of the dependencies, resolved to the real specs' ids.
    pub depends_on: Vec<String>,
    /// The agent's instructions: Markdown without front matter, or the YAML
    /// spec's `body` / `instructions` field.
    pub body: String,
    /// Position in the spec folder sorted by file name, for stable ties.
    pub order: usize,
    /// Where each entry of `files` was declared: file, line and marker.
    /// Not journaled (a spec may declare 100k paths; `check --explain`
    /// re-reads the spec): empty in a spec read back from `state.json`.
    #[serde(default, skip_serializing)]
    pub sources: Vec<Declared>,
    /// The front matter's `slurm:` override (`executor: slurm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::slurm::SlurmOverride>,
}

impl Spec {
    /// The branch this spec's work lives on: `treefarm/<id>`.
    pub fn branch(&self) -> String {
        branch_for(&self.id)
    }
}

/// The branch of the spec with this id: `treefarm/<id>`.
pub fn branch_for(id: &str) -> String {
    format!("treefarm/{id}")
}

/// The normalised form of an id used for matching: trimmed, a leading `SPEC-`
/// (any case) removed, leading zeros of an all-digit id removed (`"000"` ->
/// `"0"`), lowercased. `"20"`, `"020"` and `"SPEC-020"` all give `"20"`.
pub fn id_key(s: &str) -> String {
    let s = s.trim();
    let s = match s.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("spec-") => &s[5..],
        _ => s,
    };
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let stripped = s.trim_start_matches('0');
        if stripped.is_empty() {
            "0".to_string()
        } else {
            stripped.to_string()
        }
    } else {
        s.to_lowercase()
    }
}

/// All specs of a folder, sorted by `(priority, order)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpecSet {
    pub specs: Vec<Spec>,
}

impl SpecSet {
    /// Builds a set, sorting by `(priority, order)`.
    pub fn new(mut specs: Vec<Spec>) -> SpecSet {
        specs.sort_by_key(|s| (s.priority, s.order));
        SpecSet { specs }
    }

    /// The spec whose id matches `id` (with or without `SPEC-`, leading zeros).
    pub fn get(&self, id: &str) -> Option<&Spec> {
        let key = id_key(id);
        self.specs.iter().find(|s| id_key(&s.id) == key)
    }

    /// The specs named by `ids`, or all when `ids` is empty; sorted by
    /// `(priority, order)` without duplicates. Unknown ids are an error that
    /// names each of them and lists the known ids.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Spec>, SpecError> {
        if ids.is_empty() {
            return Ok(self.specs.iter().collect());
        }
        let mut chosen = vec![false; self.specs.len()];
        let mut errors = Vec::new();
        for id in ids {
            let key = id_key(id);
            match self.specs.iter().position(|s| id_key(&s.id) == key) {
                Some(i) => chosen[i] = true,
                None => errors.push(SpecError::UnknownId {
                    id: id.clone(),
                    known: self.specs.iter().map(|s| s.id.clone()).collect(),
                }),
            }
        }
        if let Some(err) = SpecError::collect(errors) {
            return Err(err);
        }
        Ok(self
            .specs
            .iter()
            .zip(chosen)
            .filter_map(|(s, c)| c.then_some(s))
            .collect())
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Spec> {
        self.specs.iter()
    }
}
