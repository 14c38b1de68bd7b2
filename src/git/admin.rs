//! A worktree's admin entry (`<common>/worktrees/<name>`), written beside
//! that folder and renamed into place whole, so no reader ever lists it half
//! made. Shared by full and sparse planting.

use std::path::{Path, PathBuf};

use git2::Repository;

use super::error::GitError;

/// Where the admin entry `name` is assembled before it is moved into
/// `<common>/worktrees/` in one rename (outside that folder, so no reader
/// ever lists it half made).
pub fn staging_admin(common: &Path, name: &str) -> PathBuf {
    common.join(format!("treefarm-planting-{name}"))
}

/// Registers worktree `name` at the new directory `path` on `branch`, as `git
/// worktree add` would, without a checkout: the admin entry (with the `extra`
/// files, paths relative to it) is built beside `worktrees/` and renamed in
/// whole, so no reader ever lists it half made. Returns the canonical work dir.
pub(super) fn register_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    branch: &str,
    extra: &[(&str, String)],
) -> Result<PathBuf, GitError> {
    let fail = |source| GitError::CreateWorktree {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        source,
    };
    let io_fail = |action: &str, at: &Path, e: std::io::Error| {
        fail(git2::Error::from_str(&format!(
            "{action} `{}`: {e}",
            at.display()
        )))
    };
    let reference = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .map_err(fail)?;
    let refname = reference
        .name()
        .ok_or_else(|| fail(git2::Error::from_str("branch name is not UTF-8")))?
        .to_string();
    let common = repo.commondir().to_path_buf();
    let common = common.canonicalize().unwrap_or(common);
    let admin = common.join("worktrees").join(name);
    let staging = staging_admin(&common, name);
    if staging.symlink_metadata().is_ok() {
        // Left by a planting of this name that was killed: never registered.
        std::fs::remove_dir_all(&staging).map_err(|e| io_fail("remove stale", &staging, e))?;
    }
    std::fs::create_dir(path).map_err(|e| io_fail("create work dir", path, e))?;
    let workdir = path
        .canonicalize()
        .map_err(|e| io_fail("resolve", path, e))?;
    let write = |dir: &Path, file: &str, text: String| {
        let at = dir.join(file);
        std::fs::write(&at, text).map_err(|e| io_fail("write", &at, e))
    };
    std::fs::create_dir(&staging).map_err(|e| io_fail("create", &staging, e))?;
    let staged = write(&staging, "commondir", format!("{}\n", common.display()))
        .and_then(|()| {
            write(
                &staging,
                "gitdir",
                format!("{}\n", workdir.join(".git").display()),
            )
        })
        .and_then(|()| write(&staging, "HEAD", format!("ref: {refname}\n")))
        .and_then(|()| {
            extra.iter().try_for_each(|(file, text)| {
                let at = staging.join(file);
                if let Some(dir) = at.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io_fail("create", dir, e))?;
                }
                std::fs::write(&at, text).map_err(|e| io_fail("write", &at, e))
            })
        })
        .and_then(|()| write(&workdir, ".git", format!("gitdir: {}\n", admin.display())))
        .and_then(|()| {
            std::fs::rename(&staging, &admin).map_err(|e| io_fail("register", &admin, e))
        });
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(workdir)
}
