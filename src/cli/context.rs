//! What every command needs: the repository, the effective config, and the
//! mapping of library errors to "bad input" (exit 2).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::InputError;
use crate::git::{GitError, Repo};

pub struct Ctx {
    pub repo: Repo,
    pub config: Config,
    pub config_path: Option<PathBuf>,
}

/// A git error as an `anyhow` error: user-fixable ones become [`InputError`]s.
pub fn git_err(err: GitError) -> anyhow::Error {
    if err.is_user_fixable() {
        let mut input = InputError::new(err.to_string());
        if let Some(hint) = err.hint() {
            input = input.with_hint(hint);
        }
        anyhow::Error::new(input)
    } else {
        anyhow::Error::new(err)
    }
}

impl Ctx {
    pub fn load(start: &Path, explicit_config: Option<&Path>) -> anyhow::Result<Ctx> {
        let repo = Repo::discover(start).map_err(git_err)?;
        let explicit = explicit_config.map(|p| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                start.join(p)
            }
        });
        let (config, config_path) =
            Config::load(repo.root(), explicit.as_deref(), std::env::vars())
                .map_err(|e| anyhow::Error::new(InputError::from(e)))?;
        Ok(Ctx {
            repo,
            config,
            config_path,
        })
    }

    /// For commands that read state only (`status`): a broken config must not
    /// stop them.
    pub fn load_repo_only(start: &Path) -> anyhow::Result<Ctx> {
        let repo = Repo::discover(start).map_err(git_err)?;
        Ok(Ctx {
            repo,
            config: Config::default(),
            config_path: None,
        })
    }

    pub fn root(&self) -> &Path {
        self.repo.root()
    }

    /// `worktree_dir` resolved: relative to the repository root, by default
    /// `../<repo>.treefarm`; never inside the user's working tree.
    pub fn worktree_dir(&self) -> anyhow::Result<PathBuf> {
        let root = self.root();
        let dir = match &self.config.worktree_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => root.join(d),
            None => root
                .parent()
                .unwrap_or(root)
                .join(format!("{}.treefarm", self.repo.name())),
        };
        let dir = normalize(&dir);
        if dir.starts_with(root) {
            return Err(InputError::new(format!(
                "worktree_dir `{}` is inside the repository `{}`",
                dir.display(),
                root.display()
            ))
            .with_hint("use a folder beside the repository, e.g. `../myrepo.treefarm`")
            .into());
        }
        Ok(dir)
    }
}

/// Removes `.` and resolves `..` lexically (the folder may not exist yet).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
