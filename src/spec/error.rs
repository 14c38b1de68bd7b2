//! Everything that can be wrong with a spec or a set of specs. Every variant
//! names the file (and line when there is one) and the offending value; all of
//! them are the user's to fix and convert into an [`InputError`] (exit code 2).

use std::path::PathBuf;

use crate::error::InputError;

/// An error in a spec file, a spec folder or a selection of spec ids.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec directory `{}` does not exist", dir.display())]
    MissingDir { dir: PathBuf },

    #[error("spec directory `{}` is not a directory", dir.display())]
    NotADir { dir: PathBuf },

    #[error("failed to read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: not valid UTF-8 at byte offset {offset} (line {line})")]
    NotUtf8 {
        file: String,
        offset: usize,
        line: usize,
    },

    #[error("{pos}: malformed {what}: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        /// `{file}:{line}:{column}`, precomputed for the message.
        pos: String,
        /// "front matter" or "yaml spec".
        what: &'static str,
        message: String,
    },

    #[error("{file}:{line}: unknown field `{field}` in {what}")]
    UnknownField {
        file: String,
        line: usize,
        field: String,
        what: &'static str,
    },

    #[error("{file}:{line}: front matter opened with `---` is never closed")]
    UnclosedFrontMatter { file: String, line: usize },

    #[error("{file}:{line}: `{field}` must be {expected}")]
    BadField {
        file: String,
        line: usize,
        field: String,
        expected: &'static str,
    },

    /// The spec's `slurm:` override: not a mapping of known keys, or
    /// refused by the section's validation (an owned `sbatch` flag, …).
    #[error("{file}:{line}: {message}")]
    BadSlurm {
        file: String,
        line: usize,
        message: String,
        hint: Option<String>,
    },

    #[error("{file}:{line}: invalid priority `{value}`")]
    BadPriority {
        file: String,
        line: usize,
        value: String,
    },

    #[error("{file}: cannot tell the spec id")]
    NoId { file: String },

    #[error("{file}:{line}: invalid spec id `{id}`")]
    BadId {
        file: String,
        line: usize,
        id: String,
    },

    #[error("{file}:{line}: absolute path `{path}` in {field}")]
    AbsolutePath {
        file: String,
        line: usize,
        path: String,
        field: String,
    },

    #[error("{file}:{line}: path `{path}` in {field} escapes the repository")]
    EscapesRepo {
        file: String,
        line: usize,
        path: String,
        field: String,
    },

    #[error("{file}:{line}: path `{path}` in {field} is inside `.git`")]
    GitDir {
        file: String,
        line: usize,
        path: String,
        field: String,
    },

    #[error("{file}:{line}: empty path in {field}")]
    EmptyPath {
        file: String,
        line: usize,
        field: String,
    },

    #[error("{file}:{line}: invalid glob `{glob}` in {field}: {message}")]
    InvalidGlob {
        file: String,
        line: usize,
        glob: String,
        field: String,
        message: String,
    },

    #[error("{file}: spec `{id}` declares no files")]
    NoFiles { file: String, id: String },

    #[error("duplicate spec id `{id}`: {first} and {second}")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },

    #[error("{file}:{line}: spec `{id}` depends on unknown spec `{dependency}`")]
    UnknownDependency {
        file: String,
        line: usize,
        id: String,
        dependency: String,
        known: Vec<String>,
    },

    #[error("{file}:{line}: spec `{id}` depends on `{dependency}`, which is invalid ({dependency_file})")]
    InvalidDependency {
        file: String,
        line: usize,
        id: String,
        dependency: String,
        dependency_file: String,
    },

    #[error("{file}:{line}: spec `{id}` depends on itself")]
    SelfDependency {
        file: String,
        line: usize,
        id: String,
    },

    #[error("{file}:{line}: dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        file: String,
        line: usize,
        /// Display ids, first repeated at the end: `["020", "021", "020"]`.
        cycle: Vec<String>,
    },

    #[error("unknown spec id `{id}`")]
    UnknownId { id: String, known: Vec<String> },

    #[error("{file}:{line}: absolute path `{path}` in {field} made relative: `{relative}`")]
    AbsoluteInRepo {
        file: String,
        line: usize,
        path: String,
        relative: String,
        field: String,
    },

    #[error("{file}:{line}: `{field}` is a single value, read as a list of one")]
    ScalarForList {
        file: String,
        line: usize,
        field: String,
    },

    #[error("{file}:{line}: NUL byte in {what}")]
    NulByte {
        file: String,
        line: usize,
        what: &'static str,
    },

    #[error("{file}:{line}: path `{path}` in {field} contains a line break")]
    NewlineInPath {
        file: String,
        line: usize,
        path: String,
        field: String,
    },

    #[error("spec id `{id}` is used by {}: {}", files.len(), files.join(", "))]
    DuplicateIdUsed { id: String, files: Vec<String> },

    #[error("{file}: spec is a symbolic link to `{target}`, outside the repository")]
    SymlinkOutside { file: String, target: String },

    #[error("{file}: dangling symbolic link (its target does not exist)")]
    DanglingSymlink { file: String },

    #[error("{file}: symbolic link loop")]
    SymlinkLoop { file: String },

    #[error("{file}: not a regular file")]
    NotAFile { file: String },

    /// A diagnostic rendered: its message and hint.
    #[error("{message}")]
    Diagnosed {
        message: String,
        hint: Option<String>,
    },

    #[error("{}", many_message(.0))]
    Many(Vec<SpecError>),
}

fn many_message(errors: &[SpecError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| match e.hint() {
            Some(h) => format!("{e}\n  hint: {h}"),
            None => e.to_string(),
        })
        .collect();
    lines.join("\n")
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "there are no specs".to_string()
    } else {
        format!("known spec ids: {}", known.join(", "))
    }
}

impl SpecError {
    /// What to do about it, when that is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            SpecError::MissingDir { .. } => Some(
                "run `treefarm init` to create it, or set `spec_dir` in treefarm.yaml".into(),
            ),
            SpecError::NotADir { .. } => Some("set `spec_dir` in treefarm.yaml to a folder".into()),
            SpecError::NotUtf8 { .. } => Some("save the file as UTF-8".into()),
            SpecError::UnknownField { .. } => Some(
                "known fields are id, title, priority, files, depends_on, shared (and body or instructions in a yaml spec)".into(),
            ),
            SpecError::UnclosedFrontMatter { .. } => {
                Some("end the front matter with a line holding only `---`".into())
            }
            SpecError::NoId { .. } => Some(
                "name the file `SPEC-<id>-<slug>.md` or set `id:` in its front matter".into(),
            ),
            SpecError::BadId { .. } => Some(
                "ids name branches and folders: use letters, digits, `.`, `_` and `-`".into(),
            ),
            SpecError::AbsolutePath { .. } | SpecError::EscapesRepo { .. } => {
                Some("paths are relative to the repository root".into())
            }
            SpecError::NoFiles { .. } => Some(
                "add a **Files**: list (one `- path` per line) or `files:` in the front matter"
                    .into(),
            ),
            SpecError::DuplicateId { .. } => Some("give each spec its own id".into()),
            SpecError::UnknownDependency { known, .. } | SpecError::UnknownId { known, .. } => {
                Some(known_list(known))
            }
            SpecError::Cycle { .. } => Some("remove one of the dependencies in the cycle".into()),
            SpecError::InvalidDependency {
                dependency,
                dependency_file,
                ..
            } => Some(format!(
                "it can never be satisfied: `plan` and `run` refuse this spec; fix `{dependency_file}` (`treefarm check --explain {dependency}` shows how it was read) or remove the dependency"
            )),
            SpecError::BadPriority { .. } => Some(
                "write a number or one of critical, high, medium, low; the default priority applies"
                    .into(),
            ),
            SpecError::AbsoluteInRepo { .. } => {
                Some("write paths relative to the repository root".into())
            }
            SpecError::ScalarForList { field, .. } => {
                Some(format!("write `{field}:` as a list: `{field}: [a, b]`"))
            }
            SpecError::NulByte { .. } | SpecError::NewlineInPath { .. } => Some(
                "specs become prompts, commit messages, paths and environment variables: remove the character".into(),
            ),
            SpecError::DuplicateIdUsed { .. } => Some(
                "select the spec by its path (e.g. `treefarm run specs/SPEC-020-x.md`) or give each spec its own id".into(),
            ),
            SpecError::SymlinkOutside { .. } => {
                Some("a spec must be a file inside the repository; copy it in".into())
            }
            SpecError::DanglingSymlink { .. } | SpecError::SymlinkLoop { .. } => {
                Some("remove the link or point it at a spec file inside the repository".into())
            }
            SpecError::Many(errors) if errors.len() == 1 => errors[0].hint(),
            SpecError::Diagnosed { hint, .. } => hint.clone(),
            SpecError::BadSlurm { hint, .. } => hint.clone(),
            _ => None,
        }
    }

    /// The file (relative to the repository root) and line it is about.
    pub fn location(&self) -> (Option<&str>, Option<usize>) {
        use SpecError as E;
        match self {
            E::NotUtf8 { file, line, .. }
            | E::Yaml { file, line, .. }
            | E::UnknownField { file, line, .. }
            | E::UnclosedFrontMatter { file, line }
            | E::BadField { file, line, .. }
            | E::BadSlurm { file, line, .. }
            | E::BadPriority { file, line, .. }
            | E::BadId { file, line, .. }
            | E::AbsolutePath { file, line, .. }
            | E::EscapesRepo { file, line, .. }
            | E::GitDir { file, line, .. }
            | E::EmptyPath { file, line, .. }
            | E::InvalidGlob { file, line, .. }
            | E::UnknownDependency { file, line, .. }
            | E::InvalidDependency { file, line, .. }
            | E::SelfDependency { file, line, .. }
            | E::Cycle { file, line, .. }
            | E::AbsoluteInRepo { file, line, .. }
            | E::ScalarForList { file, line, .. }
            | E::NulByte { file, line, .. }
            | E::NewlineInPath { file, line, .. } => (Some(file), Some(*line)),
            E::NoId { file }
            | E::NoFiles { file, .. }
            | E::SymlinkOutside { file, .. }
            | E::DanglingSymlink { file }
            | E::SymlinkLoop { file }
            | E::NotAFile { file } => (Some(file), None),
            E::DuplicateId { second, .. } => (Some(second), None),
            _ => (None, None),
        }
    }

    /// The individual errors: the inner list for `Many`, else itself.
    pub fn errors(&self) -> Vec<&SpecError> {
        match self {
            SpecError::Many(errors) => errors.iter().flat_map(|e| e.errors()).collect(),
            other => vec![other],
        }
    }

    /// One error as itself, several as `Many`, flattening nested lists.
    pub(crate) fn collect(mut errors: Vec<SpecError>) -> Option<SpecError> {
        let mut flat = Vec::with_capacity(errors.len());
        for e in errors.drain(..) {
            match e {
                SpecError::Many(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        match flat.len() {
            0 => None,
            1 => flat.pop(),
            _ => Some(SpecError::Many(flat)),
        }
    }
}

impl From<SpecError> for InputError {
    fn from(err: SpecError) -> Self {
        match err {
            SpecError::Many(mut errors) => {
                if errors.len() == 1 {
                    let only = errors.pop().expect("the list holds exactly one error");
                    return only.into();
                }
                InputError::new(format!(
                    "{} errors in specs:\n{}",
                    errors.len(),
                    many_message(&errors)
                ))
            }
            other => {
                let hint = other.hint();
                let mut input = InputError::new(other.to_string());
                if let Some(source) = std::error::Error::source(&other) {
                    input.message = format!("{}: {source}", input.message);
                }
                input.hint = hint;
                input
            }
        }
    }
}
