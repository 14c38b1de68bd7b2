//! The split's own rules on top of `check` (pure: drafts, the check report of
//! the existing specs and the drafts together, and the tracked files in;
//! findings out). `check` already judges parse errors, cycles, dependencies
//! and overlaps; these rules add what only a split can get wrong: paths that
//! do not exist and are not created (the hallucination guard), `creates` of
//! paths that exist, empty bodies, the number of specs, writes outside the
//! scratch folder, and the shape of the plan.

use std::collections::{BTreeSet, HashSet};

use super::draft::Draft;
use super::names::IdMap;
use crate::overlap::Overlap;
use crate::report::check::CheckReport;
use crate::schedule::{plan_waves, Node};
use crate::spec::{compile_glob, id_key, Diagnostic, Level, Spec};

/// How many specs a split may have (`--min-specs`, `--max-specs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLimits {
    pub min_specs: usize,
    pub max_specs: usize,
}

/// Everything one round is judged on.
#[derive(Debug, Clone, Copy)]
pub struct SplitRound<'a> {
    pub drafts: &'a [Draft],
    pub ids: &'a IdMap,
    /// `check` of the existing specs and the rendered drafts together, its
    /// paths already shown as the agent knows them (draft file names).
    pub report: &'a CheckReport,
    /// The valid specs of that check, for the plan.
    pub specs: &'a [Spec],
    /// Every file tracked at the base commit, sorted.
    pub tracked: &'a [String],
    /// Ids of the existing specs.
    pub existing_ids: &'a [String],
    pub limits: SplitLimits,
    /// What the agent changed (or was denied changing) outside the scratch
    /// folder.
    pub outside: &'a [String],
    /// Slots for the plan's waves (`instances`).
    pub instances: usize,
}

/// The verdict on one round.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// What makes the split invalid.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Overlaps with at least one draft: valid, but they run in sequence.
    pub overlaps: Vec<Overlap>,
    /// The plan of the drafts (their ids), when they are valid.
    pub waves: Vec<Vec<String>>,
}

impl Findings {
    /// What the next round is asked to fix, one line each (for "did the
    /// round fix anything?").
    pub fn keys(&self) -> BTreeSet<String> {
        let errors = self.errors.iter().map(|d| d.message.clone());
        let overlaps = self
            .overlaps
            .iter()
            .map(|o| format!("overlap {} {} {:?}", o.a, o.b, o.paths));
        errors.chain(overlaps).collect()
    }

    /// Nothing left to fix: no error, no overlap.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.overlaps.is_empty()
    }
}

/// An error of the split; its message starts with `file:line: ` like the
/// spec parser's.
fn diag(
    file: Option<&str>,
    line: Option<usize>,
    spec: Option<&str>,
    message: String,
    hint: &str,
) -> Diagnostic {
    let message = match (file, line) {
        (Some(f), Some(l)) => format!("{f}:{l}: {message}"),
        (Some(f), None) => format!("{f}: {message}"),
        _ => message,
    };
    Diagnostic {
        level: Level::Error,
        file: file.map(str::to_string),
        line,
        spec: spec.map(str::to_string),
        spec_path: file.map(str::to_string),
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    }
}

/// Judges one round.
pub fn judge_drafts(round: &SplitRound) -> Findings {
    let mut f = Findings::default();
    let draft_files: HashSet<&str> = round.drafts.iter().map(|d| d.file.as_str()).collect();
    let draft_ids: HashSet<&str> = round
        .ids
        .pairs
        .iter()
        .map(|(_, _, id)| id.as_str())
        .collect();
    let is_draft = |d: &Diagnostic| {
        d.spec_path
            .as_deref()
            .is_some_and(|p| draft_files.contains(p))
    };

    // check's own verdict (which refuses what `plan` and `run` would, an
    // unknown dependency included): a draft's error makes the split
    // invalid; an existing spec's problem is not the split's and stays a
    // warning.
    for d in &round.report.errors {
        if is_draft(d) {
            f.errors.push(d.clone());
        } else {
            let mut w = d.clone();
            w.level = Level::Warning;
            w.message = format!("existing spec: {}", w.message);
            f.warnings.push(w);
        }
    }
    f.warnings.extend(round.report.warnings.iter().cloned());
    f.overlaps = round
        .report
        .overlaps
        .iter()
        .filter(|o| draft_ids.contains(o.a.as_str()) || draft_ids.contains(o.b.as_str()))
        .cloned()
        .collect();

    let n = round.drafts.len();
    if n < round.limits.min_specs || n > round.limits.max_specs {
        f.errors.push(diag(
            None,
            None,
            None,
            format!(
                "the split has {n} draft(s); between {} and {} are wanted",
                round.limits.min_specs, round.limits.max_specs
            ),
            "merge or split drafts (`--min-specs`, `--max-specs`)",
        ));
    }
    if !round.outside.is_empty() {
        f.errors.push(diag(
            None,
            None,
            None,
            format!(
                "the agent wrote (or tried to write) outside the scratch folder: {}; the next round starts from a clean worktree",
                round.outside.join(", ")
            ),
            "write only the drafts, in the scratch folder ($TREEFARM_SPLIT_DIR); never edit the repository",
        ));
    }
    let existing: HashSet<String> = round.existing_ids.iter().map(|i| id_key(i)).collect();
    let mut names_seen: HashSet<String> = HashSet::new();
    for (draft, (_, _, id)) in round.drafts.iter().zip(&round.ids.pairs) {
        draft_rules(round, draft, id, &existing, &mut names_seen, &mut f.errors);
    }
    if f.errors.is_empty() {
        plan_shape(round, &draft_ids, &mut f);
    }
    f
}

/// The rules of one draft.
fn draft_rules(
    round: &SplitRound,
    draft: &Draft,
    id: &str,
    existing: &HashSet<String>,
    names_seen: &mut HashSet<String>,
    errors: &mut Vec<Diagnostic>,
) {
    let file = Some(draft.file.as_str());
    let spec = Some(id);
    let key = id_key(&draft.name);
    if existing.contains(&key) {
        errors.push(diag(
            file,
            None,
            spec,
            format!("draft name `{}` is also the id of an existing spec", draft.name),
            "give the draft another name (`SPEC-<name>-<slug>.md`); `depends_on` on the existing spec still names it by its id",
        ));
    }
    if !names_seen.insert(key) {
        errors.push(diag(
            file,
            None,
            spec,
            format!("two drafts are named `{}`", draft.name),
            "give every draft its own `<name>` in `SPEC-<name>-<slug>.md`",
        ));
    }
    if let Some((line, message)) = &draft.creates_problem {
        errors.push(diag(
            file,
            Some(*line),
            spec,
            message.clone(),
            "`creates:` is a list of the paths the unit adds, e.g. `creates: [src/new.rs]`",
        ));
    }
    if !draft.parsed_ok {
        return; // check names what is wrong with it
    }
    if draft.raw.body.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    }) {
        errors.push(diag(
            file,
            None,
            spec,
            "the draft has no instructions (its body is empty)".to_string(),
            "the body is the worker's whole brief: what to do, and at the end how to verify it",
        ));
    }
    for c in &draft.creates {
        if exists(round.tracked, c) {
            errors.push(diag(
                file,
                None,
                spec,
                format!("`creates` names `{c}`, which already exists at the base commit"),
                "list an existing path under `files:` only; `creates:` is for paths that do not exist yet",
            ));
        }
    }
    for d in draft.raw.files.iter().chain(&draft.raw.shared) {
        let path = d.value.as_str();
        if !covered(round.tracked, &draft.creates, path) {
            errors.push(diag(
                file,
                Some(d.line),
                spec,
                format!(
                    "`{path}` is not tracked at the base commit and not under `creates:`"
                ),
                "fix the path (FILES.txt lists every tracked file), or add it to `creates:` when the unit adds it",
            ));
        }
    }
}

/// Tracked at the base commit, as a file or as a folder of tracked files.
fn exists(tracked: &[String], path: &str) -> bool {
    let dir = format!("{}/", path.trim_end_matches('/'));
    tracked.binary_search_by(|t| t.as_str().cmp(path)).is_ok()
        || tracked
            .get(tracked.partition_point(|t| t.as_str() < dir.as_str()))
            .is_some_and(|t| t.starts_with(&dir))
}

/// A declared path is real: tracked (a glob: matching a tracked file), or
/// created by the draft (equal to, beneath, or matched by a `creates` entry).
fn covered(tracked: &[String], creates: &[String], path: &str) -> bool {
    let glob = path.contains(['*', '?', '[', '{']);
    let matcher = glob
        .then(|| compile_glob(path).ok().map(|g| g.compile_matcher()))
        .flatten();
    let by_creates = creates.iter().any(|c| {
        let c = c.trim_end_matches('/');
        path == c
            || path.starts_with(&format!("{c}/"))
            || matcher.as_ref().is_some_and(|m| m.is_match(c))
    });
    by_creates
        || match &matcher {
            Some(m) => tracked.iter().any(|t| m.is_match(t)),
            None => exists(tracked, path),
        }
}

/// The plan of the drafts and the warnings about its shape.
fn plan_shape(round: &SplitRound, draft_ids: &HashSet<&str>, f: &mut Findings) {
    let nodes: Vec<Node> = round
        .specs
        .iter()
        .filter(|s| draft_ids.contains(s.id.as_str()))
        .map(Node::from)
        .collect();
    let conflicts: Vec<(String, String)> = f
        .overlaps
        .iter()
        .map(|o| (o.a.clone(), o.b.clone()))
        .collect();
    let n = nodes.len();
    let owned: Vec<(String, usize)> = round
        .specs
        .iter()
        .filter(|s| draft_ids.contains(s.id.as_str()))
        .map(|s| (s.id.clone(), s.files.len()))
        .collect();
    f.waves = plan_waves(nodes, &conflicts, round.instances.max(1));
    let total: usize = owned.iter().map(|(_, k)| k).sum();
    if let Some((id, most)) = owned.iter().max_by_key(|(_, k)| *k) {
        if n >= 2 && total >= 4 && most * 2 > total {
            f.warnings.push(Diagnostic {
                level: Level::Warning,
                message: format!(
                    "spec {id} declares {most} of the split's {total} paths: the other units are small beside it"
                ),
                hint: Some("split that unit further if its parts can run side by side".into()),
                ..diag(None, None, Some(id), String::new(), "")
            });
        }
    }
    if n >= 2 && f.waves.len() == n {
        f.warnings.push(Diagnostic {
            level: Level::Warning,
            message: format!(
                "the plan is one spec per wave: the {n} specs run one after another, not side by side"
            ),
            hint: Some("cut the dependencies and shared files that chain them, or make it one spec".into()),
            ..diag(None, None, None, String::new(), "")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked() -> Vec<String> {
        let mut t: Vec<String> = ["src/a.rs", "src/http/mod.rs", "README.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        t.sort();
        t
    }

    #[test]
    fn a_path_is_real_when_tracked_globbed_or_created() {
        let t = tracked();
        assert!(covered(&t, &[], "src/a.rs"));
        assert!(covered(&t, &[], "src/http"));
        assert!(covered(&t, &[], "src/http/*.rs"));
        assert!(!covered(&t, &[], "src/b.rs"));
        assert!(!covered(&t, &[], "src/new/*.rs"));
        let creates = vec!["src/new".to_string()];
        assert!(covered(&t, &creates, "src/new/x.rs"));
        assert!(covered(&t, &["src/b.rs".to_string()], "src/*.rs"));
    }

    #[test]
    fn exists_sees_files_and_folders_of_tracked_files() {
        let t = tracked();
        assert!(exists(&t, "README.md"));
        assert!(exists(&t, "src/http/"));
        assert!(!exists(&t, "src/htt"));
        assert!(!exists(&t, "docs"));
    }
}
