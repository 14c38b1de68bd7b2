//! The git identity the user configured (`user.name`, `user.email`), read
//! through libgit2's config stack (repository, global, system), and the
//! signature treefarm commits with.

use git2::{Repository, Signature};

use super::error::GitError;
use super::repo::Repo;

impl Repo {
    /// `(user.name, user.email)` from the repository's config as git would
    /// see it (local, then global and system), when both are set and not
    /// empty; `None` otherwise (or when the config cannot be read).
    pub fn configured_identity(&self) -> Option<(String, String)> {
        let repo = self.open().ok()?;
        let config = repo.config().ok()?.snapshot().ok()?;
        let name = config.get_string("user.name").ok()?;
        let email = config.get_string("user.email").ok()?;
        let (name, email) = (name.trim().to_string(), email.trim().to_string());
        (!name.is_empty() && !email.is_empty()).then_some((name, email))
    }
}

/// The committer (and squash author) identity: the config's, else treefarm's.
pub(crate) fn signature(repo: &Repository) -> Result<Signature<'static>, GitError> {
    match repo.signature() {
        Ok(sig) => Ok(sig),
        Err(_) => Signature::now("treefarm", "treefarm@localhost")
            .map_err(|e| GitError::git("make signature for", "treefarm", e)),
    }
}
