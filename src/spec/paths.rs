//! Normalising and checking declared paths and globs.
//!
//! Declared paths are relative to the repository root. Normalisation drops a
//! leading `./`, `.` components and repeated slashes, and turns a trailing `/`
//! into `/**` (a directory means everything below it). A `..` that stays inside
//! the repository (`a/../b`) is resolved (`b`); one that would leave it, or one
//! that follows a glob component (`src/**/..`, whose meaning is unclear), is
//! rejected. Backslashes are kept: in globset syntax they escape.

use globset::{Glob, GlobBuilder};

/// A declared path or glob as treefarm reads it everywhere (validation, the
/// overlap check, the scope audit): `*` and `?` never match `/`, `**` spans
/// directories.
pub fn compile_glob(text: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(text).literal_separator(true).build()
}

/// Why a declared path was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Absolute,
    Escapes,
    GitDir,
    /// globset's message.
    InvalidGlob(String),
}

fn has_glob_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}'])
}

fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || path.starts_with('\\')
        || path.starts_with('~')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'/' | b'\\'))
}

/// The normalised form of a declared path or glob, or why it is not allowed.
pub fn normalize_path(raw: &str) -> Result<String, PathProblem> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(PathProblem::Empty);
    }
    if is_absolute(raw) {
        return Err(PathProblem::Absolute);
    }
    let is_dir = raw.ends_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => match parts.pop() {
                Some(prev) if !has_glob_meta(prev) => {}
                _ => return Err(PathProblem::Escapes),
            },
            other => parts.push(other),
        }
    }
    if parts.iter().any(|c| c.eq_ignore_ascii_case(".git")) {
        return Err(PathProblem::GitDir);
    }
    if is_dir {
        parts.push("**");
    }
    if parts.is_empty() {
        return Err(PathProblem::Empty);
    }
    let path = parts.join("/");
    // Only glob syntax (or a `\` escape) can be invalid; building a glob for
    // every literal path was a sixth of `check`'s time on large spec sets.
    if has_glob_meta(&path) || path.contains('\\') {
        compile_glob(&path).map_err(|e| PathProblem::InvalidGlob(e.kind().to_string()))?;
    }
    Ok(path)
}
