//! `.worktreeinclude`: gitignored files of the main worktree that each new
//! worktree gets a copy of (gitignore syntax, at the repository root).

use std::path::{Path, PathBuf};

use git2::Repository;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::error::GitError;
use super::repo::Repo;

/// The file read at the repository root.
pub const WORKTREE_INCLUDE: &str = ".worktreeinclude";

impl Repo {
    /// The files (relative to the root) that `.worktreeinclude` selects and
    /// git ignores; empty without the file. A git-ignored directory is only
    /// entered when it is selected itself or a pattern names a path in it.
    pub fn worktree_include(&self) -> Result<Vec<PathBuf>, GitError> {
        let file = self.root().join(WORKTREE_INCLUDE);
        if !file.is_file() {
            return Ok(Vec::new());
        }
        let mut builder = GitignoreBuilder::new(self.root());
        if let Some(err) = builder.add(&file) {
            return Err(GitError::io(
                "read",
                &file,
                std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            ));
        }
        let matcher = builder.build().map_err(|e| {
            GitError::io(
                "read",
                &file,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let prefixes: Vec<String> = text
            .lines()
            .map(|l| l.trim().trim_start_matches('!').trim_start_matches('/'))
            .filter(|l| !l.is_empty() && !l.starts_with('#') && l.contains('/'))
            .map(str::to_string)
            .collect();
        let repo = self.open()?;
        let mut out = Vec::new();
        walk(
            &repo,
            &matcher,
            &prefixes,
            self.root(),
            Path::new(""),
            false,
            &mut out,
        )?;
        out.sort();
        Ok(out)
    }
}

fn walk(
    repo: &Repository,
    matcher: &Gitignore,
    prefixes: &[String],
    root: &Path,
    rel: &Path,
    selected: bool,
    out: &mut Vec<PathBuf>,
) -> Result<(), GitError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| GitError::io("read folder", &dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if rel.as_os_str().is_empty() && name == ".git" {
            continue;
        }
        let path = rel.join(&name);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let m = matcher.matched(&path, is_dir);
        let chosen = (selected || m.is_ignore()) && !m.is_whitelist();
        // Asking libgit2 is the slow part: only when the answer matters.
        let ignored = || repo.is_path_ignored(&path).unwrap_or(false);
        if is_dir {
            let prefix = format!("{}/", path.display());
            let named = prefixes.iter().any(|p| p.starts_with(&prefix));
            if chosen || named || !ignored() {
                walk(repo, matcher, prefixes, root, &path, chosen, out)?;
            }
        } else if chosen && ignored() {
            out.push(path);
        }
    }
    Ok(())
}
