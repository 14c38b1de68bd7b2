//! The repository handle and its read-only queries: discovery, revisions,
//! branches, trees, history, plus the small ref writes (branch creation and
//! deletion, archive refs).
//!
//! [`Repo`] holds paths only, so it is `Send + Sync` and cheap to clone: every
//! method opens a fresh `git2::Repository` on the common dir, which lets the
//! async runner call it from any `spawn_blocking` thread without sharing a
//! libgit2 handle between threads.

use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository, Sort, TreeWalkMode, TreeWalkResult};

use super::error::GitError;

/// One commit of a history listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: Oid,
    /// First line of the message.
    pub summary: String,
    /// `Name <email>`.
    pub author: String,
}

/// A repository, located by the working tree treefarm reads specs and config
/// from (`root`) and its common dir.
///
/// Layouts: from the main worktree or a linked worktree of a normal
/// repository, `root` is the main worktree; from a linked worktree of a
/// *bare* repository (the "bare repo + worktrees" layout), there is no main
/// worktree and `root` is the worktree treefarm was started in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    root: PathBuf,
    common_dir: PathBuf,
    /// The common dir is a bare repository: no checkout is the main one.
    bare: bool,
}

impl Repo {
    /// Finds the repository containing `dir` (the main worktree or any linked
    /// one, also of a bare repository). A bare repository itself (no working
    /// tree to read specs from), or a directory outside any repository, is a
    /// user-fixable error.
    pub fn discover(dir: &Path) -> Result<Repo, GitError> {
        tune_libgit2();
        let repo = Repository::discover(dir).map_err(|source| GitError::NotARepository {
            path: dir.to_path_buf(),
            source,
        })?;
        let common_dir = canonical(repo.commondir())?;
        // From a linked worktree, the main worktree is the work dir of the
        // repository at the common dir.
        let main = if repo.is_worktree() {
            Repository::open(&common_dir).map_err(|e| {
                GitError::git("open repository", common_dir.display().to_string(), e)
            })?
        } else {
            repo
        };
        if main.is_bare() {
            // The bare repository + worktrees layout: the worktree we are in
            // is where specs and config live; there is no main checkout.
            let Some(here) = Repository::discover(dir).ok().and_then(|r| {
                r.is_worktree()
                    .then(|| r.workdir().map(Path::to_path_buf))
                    .flatten()
            }) else {
                return Err(GitError::BareRepository { path: common_dir });
            };
            return Ok(Repo {
                root: canonical(&here)?,
                common_dir,
                bare: true,
            });
        }
        let root = match main.workdir() {
            Some(w) => canonical(w)?,
            None => return Err(GitError::BareRepository { path: common_dir }),
        };
        Ok(Repo {
            root,
            common_dir,
            bare: false,
        })
    }

    /// The repository is bare (used through its linked worktrees): no
    /// worktree is the main one.
    pub fn is_bare(&self) -> bool {
        self.bare
    }
}

/// Initialises and checks out the submodules of the worktree at `path`
/// (recursively), from the URLs in its `.gitmodules` (`setup.submodules`).
pub fn init_submodules(path: &Path) -> Result<(), GitError> {
    {
        tune_libgit2();
        fn update(repo: &Repository, at: &Path) -> Result<(), GitError> {
            let subs = repo
                .submodules()
                .map_err(|e| GitError::git("list submodules of", at.display().to_string(), e))?;
            for mut sm in subs {
                let name = sm.name().unwrap_or("?").to_string();
                sm.update(true, None)
                    .map_err(|e| GitError::git("update submodule", name.clone(), e))?;
                if let Ok(inner) = sm.open() {
                    update(&inner, &at.join(sm.path()))?;
                }
            }
            Ok(())
        }
        let repo = Repository::open(path)
            .map_err(|e| GitError::git("open worktree", path.display().to_string(), e))?;
        update(&repo, path)
    }
}

impl Repo {
    /// The main worktree's root, even when discovered from a linked worktree;
    /// for a bare repository, the linked worktree treefarm was started in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<git-common-dir>`, absolute and canonical.
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The repository's name, used for `../<name>.treefarm`: the root's
    /// file name; for a bare repository its own name without `.git` (the
    /// parent folder's name for `.bare` / `.git`).
    pub fn name(&self) -> String {
        let from = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = if self.bare {
            from(&self.common_dir).and_then(|n| {
                let stem = n.strip_suffix(".git").unwrap_or(&n).to_string();
                if stem.is_empty() || stem == ".bare" || n == ".git" {
                    self.common_dir.parent().and_then(from)
                } else {
                    Some(stem)
                }
            })
        } else {
            from(&self.root)
        };
        name.unwrap_or_else(|| "repo".to_string())
    }

    /// A fresh libgit2 handle on this repository (for this thread only).
    pub(crate) fn open(&self) -> Result<Repository, GitError> {
        tune_libgit2();
        Repository::open(&self.common_dir)
            .map_err(|e| GitError::git("open repository", self.common_dir.display().to_string(), e))
    }

    /// Resolves `rev` (any revparse expression) to the commit it names.
    pub fn resolve(&self, rev: &str) -> Result<Oid, GitError> {
        let repo = self.open()?;
        let unknown = |source| GitError::UnknownRevision {
            rev: rev.to_string(),
            source,
        };
        let object = repo.revparse_single(rev).map_err(unknown)?;
        let commit = object.peel_to_commit().map_err(unknown)?;
        Ok(commit.id())
    }

    /// The commit `refs/heads/<branch>` points to, `None` when it does not exist.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, GitError> {
        let repo = self.open()?;
        branch_tip_in(&repo, branch)
    }

    /// Creates `branch` at `at` unless it exists; returns `Some(existing tip)`
    /// when it already existed (it is never moved), `None` when created.
    pub fn ensure_branch(&self, branch: &str, at: Oid) -> Result<Option<Oid>, GitError> {
        let repo = self.open()?;
        ensure_branch_in(&repo, branch, at)
    }

    /// Every blob path (files and symlinks; not submodules) of `commit`'s
    /// tree, sorted bytewise.
    pub fn tracked_files(&self, commit: Oid) -> Result<Vec<String>, GitError> {
        let repo = self.open()?;
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::git("read the tree of commit", commit.to_string(), e))?;
        let mut paths = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let name = String::from_utf8_lossy(entry.name_bytes());
                let mut path = String::with_capacity(dir.len() + name.len());
                path.push_str(dir);
                path.push_str(&name);
                paths.push(path);
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| GitError::git("list the files of commit", commit.to_string(), e))?;
        paths.sort_unstable();
        Ok(paths)
    }

    /// Commits reachable from `to` but not from `from`, oldest first (parents
    /// before children).
    pub fn commits_between(&self, from: Oid, to: Oid) -> Result<Vec<CommitInfo>, GitError> {
        let repo = self.open()?;
        commits_between_in(&repo, from, to)
    }

    /// Whether `ancestor` is `of` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Oid, of: Oid) -> Result<bool, GitError> {
        if ancestor == of {
            return Ok(true);
        }
        let repo = self.open()?;
        repo.graph_descendant_of(of, ancestor)
            .map_err(|e| GitError::git("compare commits", format!("{ancestor}..{of}"), e))
    }

    /// Deletes `refs/heads/<branch>`; a branch that does not exist is not an
    /// error (prune and resume may race with a user who deleted it already).
    /// Refused, as git and libgit2 do, for a branch checked out in any
    /// worktree; its `branch.<name>.*` config goes with it, as there.
    pub fn delete_branch(&self, branch: &str) -> Result<(), GitError> {
        let repo = self.open()?;
        let refname = format!("refs/heads/{branch}");
        let mut reference = match repo.find_reference(&refname) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(()),
            Err(e) => return Err(GitError::git("read branch", branch, e)),
        };
        // What `git_branch_delete` checks, from the HEAD files alone: it
        // opens every worktree's repository to read its HEAD, per deletion.
        if self.checked_out(&refname) {
            return Err(GitError::git(
                "delete branch",
                branch,
                git2::Error::from_str(&format!(
                    "cannot delete branch '{refname}' as it is the current HEAD of a worktree"
                )),
            ));
        }
        remove_branch_config(&repo, branch)?;
        retry_ref_lock(|| reference.delete()).map_err(|e| GitError::git("delete branch", branch, e))
    }

    /// Whether some worktree's HEAD names `refname`: the main one's (of a
    /// repository that is not bare) or a linked one's, read from their
    /// `HEAD` files.
    fn checked_out(&self, refname: &str) -> bool {
        let names = |head: &std::path::Path| {
            std::fs::read_to_string(head).is_ok_and(|text| {
                text.trim()
                    .strip_prefix("ref:")
                    .is_some_and(|r| r.trim() == refname)
            })
        };
        if !self.bare && names(&self.common_dir.join("HEAD")) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(self.common_dir.join("worktrees")) else {
            return false;
        };
        entries
            .flatten()
            .any(|entry| names(&entry.path().join("HEAD")))
    }

    /// Keeps `tip` reachable under `refs/treefarm/archive/<id>`, or `<id>-2`,
    /// `<id>-3`, … when taken: an archive ref is never overwritten. Returns the
    /// full ref name.
    pub fn archive(&self, id: &str, tip: Oid) -> Result<String, GitError> {
        let repo = self.open()?;
        let base = format!("refs/treefarm/archive/{id}");
        for n in 1u32.. {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            match retry_ref_lock(|| repo.reference(&name, tip, false, "treefarm: archive")) {
                Ok(_) => return Ok(name),
                Err(e) if e.code() == ErrorCode::Exists => continue,
                Err(e) => return Err(GitError::git("write archive ref", name, e)),
            }
        }
        unreachable!("u32 range exhausted before finding a free archive ref")
    }
}

/// Process-wide libgit2 settings, applied once before the first repository is
/// opened. libgit2 re-hashes every object it reads ("strict hash
/// verification"); git does not when checking out, and measured on 3,000
/// files it nearly doubled the user CPU time of a worktree checkout. treefarm
/// is this process's only libgit2 user, so it turns the check off.
fn tune_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_hash_verification(false);
        // Every tree and commit treefarm writes is built from objects it just
        // read from this repository; re-checking that each referenced object
        // exists costs a lookup of every entry of every tree written (a
        // full-tree walk per merge). git itself does not check this either.
        git2::opts::strict_object_creation(false);
    });
}

/// Removes the `branch.<branch>.*` keys of the repository's own config
/// (what `git_branch_delete` does by removing the section); the config is
/// written only when there is such a key.
fn remove_branch_config(repo: &Repository, branch: &str) -> Result<(), GitError> {
    let fail = |e| GitError::git("remove the config of branch", branch, e);
    let Ok(mut local) = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
    else {
        return Ok(());
    };
    let prefix = format!("branch.{branch}.");
    let mut names = Vec::new();
    {
        let entries = local.entries(None).map_err(fail)?;
        entries
            .for_each(|entry| {
                if let Some(name) = entry.name() {
                    // libgit2 lowercases the section and the key, never
                    // the branch name.
                    if name.starts_with(&prefix) {
                        names.push(name.to_string());
                    }
                }
            })
            .map_err(fail)?;
    }
    names.sort();
    names.dedup();
    for name in names {
        local.remove_multivar(&name, ".*").map_err(fail)?;
    }
    Ok(())
}

/// `path` made absolute with symlinks resolved (as git prints it), without a
/// trailing slash.
pub(crate) fn canonical(path: &Path) -> Result<PathBuf, GitError> {
    std::fs::canonicalize(path).map_err(|e| GitError::io("resolve path", path, e))
}

pub(crate) fn check_branch_name(branch: &str) -> Result<(), GitError> {
    match git2::Branch::name_is_valid(branch) {
        Ok(true) => Ok(()),
        _ => Err(GitError::InvalidBranchName {
            branch: branch.to_string(),
        }),
    }
}

pub(crate) fn branch_tip_in(repo: &Repository, branch: &str) -> Result<Option<Oid>, GitError> {
    check_branch_name(branch)?;
    match repo.find_reference(&format!("refs/heads/{branch}")) {
        Ok(r) => match r.resolve() {
            Ok(r) => Ok(r.target()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError::git("read branch", branch, e)),
        },
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(GitError::git("read branch", branch, e)),
    }
}

/// Runs a ref write (create, move, delete), again for up to about 100 ms
/// while the ref's lock cannot be taken — what git does for refs
/// (`core.filesRefLockTimeout`). Besides a lock another writer holds for a
/// moment, this covers a race libgit2 does not: deleting the last ref of a
/// folder (`refs/heads/treefarm/`) removes the folder, and a ref created in
/// it at that moment fails to lock its file. git retries that case too.
pub(crate) fn retry_ref_lock<T>(
    mut write: impl FnMut() -> Result<T, git2::Error>,
) -> Result<T, git2::Error> {
    let mut wait_ms = 1;
    loop {
        match write() {
            Err(e) if e.code() == ErrorCode::Locked && wait_ms <= 64 => {
                std::thread::sleep(std::time::Duration::from_millis(wait_ms));
                wait_ms *= 2;
            }
            other => return other,
        }
    }
}

pub(crate) fn ensure_branch_in(
    repo: &Repository,
    branch: &str,
    at: Oid,
) -> Result<Option<Oid>, GitError> {
    if let Some(tip) = branch_tip_in(repo, branch)? {
        return Ok(Some(tip));
    }
    let commit = repo
        .find_commit(at)
        .map_err(|e| GitError::git("find commit", at.to_string(), e))?;
    match retry_ref_lock(|| repo.branch(branch, &commit, false)) {
        Ok(_) => Ok(None),
        // Someone created it between our read and our write: report its tip.
        Err(e) if e.code() == ErrorCode::Exists => branch_tip_in(repo, branch),
        Err(e) => Err(GitError::git("create branch", branch, e)),
    }
}

pub(crate) fn commits_between_in(
    repo: &Repository,
    from: Oid,
    to: Oid,
) -> Result<Vec<CommitInfo>, GitError> {
    let range = || format!("{from}..{to}");
    let mut walk = repo
        .revwalk()
        .map_err(|e| GitError::git("walk history", range(), e))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .and_then(|()| walk.push(to))
        .and_then(|()| walk.hide(from))
        .map_err(|e| GitError::git("walk history", range(), e))?;
    let mut out = Vec::new();
    for id in walk {
        let id = id.map_err(|e| GitError::git("walk history", range(), e))?;
        let commit = repo
            .find_commit(id)
            .map_err(|e| GitError::git("read commit", id.to_string(), e))?;
        out.push(CommitInfo {
            id,
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                .into_owned(),
            author: signature_text(&commit.author()),
        });
    }
    Ok(out)
}

fn signature_text(sig: &git2::Signature<'_>) -> String {
    format!(
        "{} <{}>",
        String::from_utf8_lossy(sig.name_bytes()),
        String::from_utf8_lossy(sig.email_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one commit, `main` on it.
    fn repo_with_a_commit(dir: &Path) -> (Repository, Oid) {
        let repo = Repository::init(dir).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = {
            let tree = repo
                .find_tree(repo.index().unwrap().write_tree().unwrap())
                .unwrap();
            repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
                .unwrap()
        };
        (repo, commit)
    }

    /// The lock file another writer of branch `name` would hold.
    fn hold_branch_lock(root: &Path, name: &str) -> PathBuf {
        let lock = root.join(format!(".git/refs/heads/{name}.lock"));
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::fs::write(&lock, "").unwrap();
        lock
    }

    #[test]
    fn a_branch_whose_lock_is_let_go_within_the_retry_window_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, at) = repo_with_a_commit(dir.path());
        let lock = hold_branch_lock(dir.path(), "treefarm/x");
        let remover = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                std::fs::remove_file(lock).unwrap();
            })
        };
        assert_eq!(ensure_branch_in(&repo, "treefarm/x", at).unwrap(), None);
        remover.join().unwrap();
        assert_eq!(branch_tip_in(&repo, "treefarm/x").unwrap(), Some(at));
    }

    #[test]
    fn a_lock_held_past_the_retry_window_is_an_error_naming_the_branch() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, at) = repo_with_a_commit(dir.path());
        hold_branch_lock(dir.path(), "treefarm/x");
        let err = ensure_branch_in(&repo, "treefarm/x", at).unwrap_err();
        assert!(err.to_string().contains("treefarm/x"), "{err}");
        assert_eq!(branch_tip_in(&repo, "treefarm/x").unwrap(), None);
    }
}
