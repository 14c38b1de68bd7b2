//! treefarm, not the agent, names the specs: the next free ids after the
//! existing ones, `SPEC-<id>-<slug>.md` file names, and `depends_on`
//! rewritten from draft names to those ids.

use serde::Serialize;

use super::draft::Draft;
use crate::spec::id_key;

/// Draft names and the ids they were given.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    /// `(draft name, draft file, id)` in draft order.
    pub pairs: Vec<(String, String, String)>,
}

impl IdMap {
    /// The id of the draft `name` names (its name, `SPEC-<name>`, or its file
    /// name with or without `.md`), if it is a draft.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let key = id_key(name);
        let file = name.trim().trim_end_matches(".md");
        self.pairs
            .iter()
            .find(|(n, f, _)| id_key(n) == key || f.trim_end_matches(".md") == file)
            .map(|(_, _, id)| id.as_str())
    }
}

/// The next `count` free ids: numbers after the largest numeric id among
/// `taken` (existing ids and every id they depend on, so no dangling
/// dependency of an existing spec is silently satisfied by a new one),
/// zero-padded to the widest numeric id written (at least 3 digits).
pub fn assign_ids(taken: &[String], count: usize) -> Vec<String> {
    let mut max: u64 = 0;
    let mut width = 3;
    for id in taken {
        let key = id_key(id);
        if let Ok(n) = key.parse::<u64>() {
            max = max.max(n);
            let written = id.trim();
            let digits = written
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or(written);
            width = width.max(digits.len());
        }
    }
    (1..=count as u64)
        .map(|i| format!("{:0width$}", max + i, width = width))
        .collect()
}

/// `SPEC-<id>-<slug>.md`, the slug made of the title's letters and digits.
pub fn spec_file_name(id: &str, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("SPEC-{id}.md")
    } else {
        format!("SPEC-{id}-{slug}.md")
    }
}

#[derive(Serialize)]
struct Front<'a> {
    id: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
    files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shared: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
}

/// What the spec of `draft` declares: its `files`, then the `creates` paths
/// it does not list (a spec declares what it creates too).
pub fn declared_files(draft: &Draft) -> Vec<String> {
    let mut files: Vec<String> = draft.raw.files.iter().map(|d| d.value.clone()).collect();
    for c in &draft.creates {
        if !files.contains(c) {
            files.push(c.clone());
        }
    }
    files
}

/// `depends_on` of `draft` with draft names replaced by their ids (ids of
/// existing specs stay as written).
pub fn rewritten_depends_on(draft: &Draft, ids: &IdMap) -> Vec<String> {
    draft
        .raw
        .depends_on
        .iter()
        .map(|d| ids.resolve(&d.value).unwrap_or(&d.value).to_string())
        .collect()
}

/// The spec file of `draft` as treefarm writes it: front matter with the id,
/// title, files (`files` and `creates` together: a spec declares what it
/// creates too), shared paths and `depends_on` with draft names replaced by
/// their ids; then the draft's body unchanged.
pub fn render_spec(draft: &Draft, id: &str, ids: &IdMap) -> String {
    let front = Front {
        id,
        title: &draft.raw.title,
        priority: draft.raw.priority,
        files: declared_files(draft),
        shared: draft.raw.shared.iter().map(|d| d.value.as_str()).collect(),
        depends_on: rewritten_depends_on(draft, ids),
    };
    let yaml = serde_yaml::to_string(&front).unwrap_or_default();
    let body = draft.raw.body.trim_start_matches('\n');
    format!("---\n{yaml}---\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_largest_numeric_id_with_its_width() {
        let taken = vec!["SPEC-020".to_string(), "7".into(), "auth".into()];
        assert_eq!(assign_ids(&taken, 2), vec!["021", "022"]);
        assert_eq!(assign_ids(&["0042".to_string()], 1), vec!["0043"]);
        assert_eq!(assign_ids(&[], 2), vec!["001", "002"]);
    }

    #[test]
    fn file_names_carry_the_id_and_a_slug_of_the_title() {
        assert_eq!(
            spec_file_name("031", "Retry failed HTTP requests!"),
            "SPEC-031-retry-failed-http-requests.md"
        );
        assert_eq!(spec_file_name("031", "???"), "SPEC-031.md");
    }

    #[test]
    fn depends_on_names_drafts_by_name_or_file() {
        let ids = IdMap {
            pairs: vec![("auth".into(), "SPEC-auth-login.md".into(), "031".into())],
        };
        assert_eq!(ids.resolve("auth"), Some("031"));
        assert_eq!(ids.resolve("SPEC-auth"), Some("031"));
        assert_eq!(ids.resolve("SPEC-auth-login.md"), Some("031"));
        assert_eq!(ids.resolve("020"), None);
    }
}
