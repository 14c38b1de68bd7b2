//! Linked worktrees: creating several at once, listing, removing, pruning
//! stale admin entries, and the scratch worktree a merge gate runs in.
//!
//! Creation never races on git's admin files: branches are created one after
//! the other first, `<common>/worktrees` is made once, and only then are the
//! worktrees added (and checked out) in parallel, each thread with its own
//! `git2::Repository`. Nothing left behind by an earlier run (a path, a branch
//! at another commit, an admin entry) is ever destroyed: it is an error naming
//! it, with the hint `treefarm prune`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use git2::{Oid, Repository, WorktreeLockStatus, WorktreePruneOptions};

use super::admin::register_worktree;
use super::error::GitError;
use super::repo::{branch_tip_in, canonical, check_branch_name, ensure_branch_in, Repo};

/// One worktree to create: admin entry `name`, checked out at `path` on
/// `branch`, which is created at `start` when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeRequest {
    /// Admin entry name (`<common>/worktrees/<name>`), e.g. the spec id `020`.
    pub name: String,
    pub path: PathBuf,
    pub branch: String,
    pub start: Oid,
    /// Resume: when the worktree already exists at `path` on `branch`, succeed
    /// without touching it, and accept an existing branch at another commit.
    pub reuse: bool,
    /// Plant a sparse checkout of this shape instead of the whole tree.
    pub sparse: Option<super::sparse::SparseRequest>,
}

/// A worktree as git records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Admin entry name; for the main worktree, the file name of its root.
    pub name: String,
    pub path: PathBuf,
    /// The branch checked out (short name), `None` when detached.
    pub branch: Option<String>,
    /// The commit checked out, `None` on an unborn branch.
    pub head: Option<Oid>,
    pub path_exists: bool,
    pub is_main: bool,
}

/// A worktree checked out (detached) at one commit, for running a merge gate.
/// Removed — files and admin entry — by [`ScratchWorktree::remove`] or on drop.
#[derive(Debug)]
pub struct ScratchWorktree {
    repo: Repo,
    name: String,
    path: PathBuf,
    removed: bool,
}

impl ScratchWorktree {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the worktree anew at `at` — files and admin entry — at the same
    /// path and under the same name, so whatever was written in it is gone
    /// while a process that keys its state by the path (an agent CLI's
    /// conversation) finds it again.
    pub fn renew(&mut self, at: Oid) -> Result<(), GitError> {
        remove_scratch(&self.repo, &self.name, &self.path)?;
        self.repo.add_detached(&self.name, &self.path, at)
    }

    /// Removes the worktree now, reporting failures (drop ignores them).
    pub fn remove(mut self) -> Result<(), GitError> {
        self.removed = true;
        remove_scratch(&self.repo, &self.name, &self.path)
    }
}

impl Drop for ScratchWorktree {
    fn drop(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(e) = remove_scratch(&self.repo, &self.name, &self.path) {
                tracing::warn!("failed to remove scratch worktree: {e}");
            }
        }
    }
}

pub(crate) fn remove_scratch(repo: &Repo, name: &str, path: &Path) -> Result<(), GitError> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|e| GitError::io("remove scratch worktree", path, e))?;
    }
    let git = repo.open()?;
    prune_admin(&git, name)
}

/// What phase one decided for a request.
enum Plan {
    /// Reused as is.
    Done,
    /// To add in phase two.
    Add { path: PathBuf, created_branch: bool },
}

static SCRATCH_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Repo {
    /// Creates the requested branches and worktrees; one result per request,
    /// in order. Requests fail independently.
    pub fn add_worktrees(&self, reqs: &[WorktreeRequest]) -> Vec<Result<(), GitError>> {
        let mut results: Vec<Option<Result<(), GitError>>> = reqs.iter().map(|_| None).collect();
        let prepared = self.open().and_then(|repo| Ok((self.worktrees()?, repo)));
        let (existing, repo) = match prepared {
            Ok(x) => x,
            Err(_) => {
                // Report the failure on every request (GitError is not Clone).
                return reqs
                    .iter()
                    .map(|_| self.open().and_then(|_| self.worktrees()).map(|_| ()))
                    .collect();
            }
        };

        // Phase one, serial: validate, create branches.
        let mut seen = (HashSet::new(), HashSet::new(), HashSet::new());
        let mut jobs = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            match self.plan_one(&repo, req, &existing, &mut seen) {
                Ok(Plan::Done) => results[i] = Some(Ok(())),
                Ok(Plan::Add {
                    path,
                    created_branch,
                }) => jobs.push((i, path, created_branch)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        drop(repo);

        // Phase one and a half: the shared admin folder, made once.
        let admin_root = self.common_dir().join("worktrees");
        if let Err(e) = std::fs::create_dir_all(&admin_root) {
            let kind = e.kind();
            for (i, _, _) in jobs.drain(..) {
                results[i] = Some(Err(GitError::io(
                    "create admin folder",
                    &admin_root,
                    std::io::Error::from(kind),
                )));
            }
        }

        // Parent folders (create_dir_all tolerates a concurrent creator).
        jobs.retain(
            |(i, path, _)| match path.parent().map(std::fs::create_dir_all) {
                Some(Err(e)) => {
                    results[*i] = Some(Err(GitError::io(
                        "create folder",
                        path.parent().unwrap_or(path),
                        e,
                    )));
                    false
                }
                _ => true,
            },
        );

        // Phase two, parallel: add and check out.
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(jobs.len());
        let done: Vec<(usize, Result<(), GitError>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some((i, path, created_branch)) = jobs.get(k) else {
                                break;
                            };
                            let req = &reqs[*i];
                            out.push((*i, self.add_one(req, path, *created_branch)));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for (i, r) in done {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.expect("every request got a result in phase one or two"))
            .collect()
    }

    fn plan_one(
        &self,
        repo: &Repository,
        req: &WorktreeRequest,
        existing: &[WorktreeInfo],
        seen: &mut (HashSet<String>, HashSet<PathBuf>, HashSet<String>),
    ) -> Result<Plan, GitError> {
        check_worktree_name(&req.name)?;
        check_branch_name(&req.branch)?;
        let path = std::path::absolute(&req.path)
            .map_err(|e| GitError::io("resolve path", &req.path, e))?;
        if !seen.0.insert(req.name.clone())
            || !seen.1.insert(path.clone())
            || !seen.2.insert(req.branch.clone())
        {
            return Err(GitError::DuplicateRequest {
                name: req.name.clone(),
            });
        }
        let admin = self.common_dir().join("worktrees").join(&req.name);
        let registered = existing.iter().find(|w| !w.is_main && w.name == req.name);
        if let Some(w) = registered {
            if req.reuse
                && w.path_exists
                && w.branch.as_deref() == Some(req.branch.as_str())
                && same_path(&w.path, &path)
            {
                return Ok(Plan::Done);
            }
        }
        if registered.is_some() || admin.symlink_metadata().is_ok() {
            return Err(GitError::LeftoverWorktree {
                name: req.name.clone(),
                admin,
            });
        }
        if path.symlink_metadata().is_ok() {
            return Err(GitError::LeftoverPath { path });
        }
        if let Some(w) = existing
            .iter()
            .find(|w| w.branch.as_deref() == Some(req.branch.as_str()))
        {
            return Err(GitError::BranchCheckedOut {
                branch: req.branch.clone(),
                path: w.path.clone(),
            });
        }
        match branch_tip_in(repo, &req.branch)? {
            Some(tip) if tip == req.start || req.reuse => Ok(Plan::Add {
                path,
                created_branch: false,
            }),
            Some(tip) => Err(GitError::LeftoverBranch {
                branch: req.branch.clone(),
                tip,
                wanted: req.start,
            }),
            None => {
                let created = ensure_branch_in(repo, &req.branch, req.start)?.is_none();
                Ok(Plan::Add {
                    path,
                    created_branch: created,
                })
            }
        }
    }

    /// Adds one worktree with its own repository handle; on failure removes
    /// exactly what this call created.
    fn add_one(
        &self,
        req: &WorktreeRequest,
        path: &Path,
        created_branch: bool,
    ) -> Result<(), GitError> {
        let repo = self.open()?;
        // The branch exists (created in phase one), its worktree not yet.
        crate::hooks::crash_point("plant-branch-created");
        let add = || {
            let full = || add_on_branch(&repo, &req.name, path, &req.branch);
            match &req.sparse {
                Some(sparse) => {
                    super::sparse::add_sparse(&repo, &req.name, path, &req.branch, sparse, full)
                }
                None => full(),
            }
        };
        let mut result = add();
        // A failure that may be transient (a reader or writer of git's files
        // at the same moment, an interrupted system call) is retried from a
        // clean slate; one that persists is reported with libgit2's cause.
        for pause_ms in [20, 100, 400] {
            match &result {
                Err(e) if is_transient(e) => {
                    tracing::debug!(name = %req.name, error = %crate::error::chain(e), "retrying worktree creation");
                    self.undo_add(&repo, &req.name, path);
                    std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                    result = add();
                }
                _ => break,
            }
        }
        if result.is_err() {
            self.undo_add(&repo, &req.name, path);
            if created_branch {
                if let Ok(Some(tip)) = branch_tip_in(&repo, &req.branch) {
                    if tip == req.start {
                        let _ = self.delete_branch(&req.branch);
                    }
                }
            }
        }
        result
    }

    /// Removes a half-made worktree: the work dir only when its `.git` file
    /// points to our admin entry (or it is empty), the admin entry only when
    /// it points back to `path` (or is empty).
    fn undo_add(&self, repo: &Repository, name: &str, path: &Path) {
        let admin = self.common_dir().join("worktrees").join(name);
        let ours = |file: PathBuf, expect: &Path| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|s| {
                    s.trim()
                        .strip_prefix("gitdir: ")
                        .map(PathBuf::from)
                        .or(Some(PathBuf::from(s.trim())))
                })
                .is_some_and(|p| same_path(&p, expect))
        };
        if ours(path.join(".git"), &admin) {
            let _ = std::fs::remove_dir_all(path);
        } else {
            let _ = std::fs::remove_dir(path);
        }
        if ours(admin.join("gitdir"), &path.join(".git")) {
            let _ = prune_admin(repo, name).or_else(|_| {
                std::fs::remove_dir_all(&admin).map_err(|e| GitError::io("remove", &admin, e))
            });
        } else {
            let _ = std::fs::remove_dir(&admin);
        }
    }

    /// Reads the admin entry `name` that `git_worktree_list` returned;
    /// `None` when it is not a whole entry (any more): being removed, or
    /// half made by someone else (libgit2's listing lets some through). Such
    /// an entry is no error for the caller, who asked about others.
    fn find_listed_worktree(
        &self,
        repo: &Repository,
        name: &str,
    ) -> Result<Option<git2::Worktree>, GitError> {
        let admin = self.common_dir().join("worktrees").join(name);
        let whole = || {
            ["commondir", "gitdir", "HEAD"]
                .iter()
                .all(|f| admin.join(f).is_file())
        };
        let mut last = None;
        for _ in 0..3 {
            match repo.find_worktree(name) {
                Ok(wt) => return Ok(Some(wt)),
                Err(_) if !whole() => {
                    tracing::debug!(%name, "skipping a worktree entry that is not whole");
                    return Ok(None);
                }
                // Whole now, perhaps not a moment ago: read it again.
                Err(e) => last = Some(e),
            }
        }
        Err(GitError::git(
            "read worktree",
            name,
            last.expect("three failed reads"),
        ))
    }

    /// The main worktree first, then every registered linked worktree.
    pub fn worktrees(&self) -> Result<Vec<WorktreeInfo>, GitError> {
        let repo = self.open()?;
        let (branch, head) = read_head(&repo, &self.common_dir().join("HEAD"));
        let mut out = vec![WorktreeInfo {
            name: self.name(),
            path: self.root().to_path_buf(),
            branch,
            head,
            path_exists: self.root().exists(),
            is_main: true,
        }];
        // A bare repository has no main worktree: its root is a linked one,
        // listed below.
        if self.is_bare() {
            out.clear();
        }
        let names = repo.worktrees().map_err(|e| {
            GitError::git(
                "list worktrees of",
                self.common_dir().display().to_string(),
                e,
            )
        })?;
        for name in names.iter().flatten() {
            if let Some(info) = self.linked_worktree(&repo, name) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The linked worktree registered as `name`, read from its admin entry
    /// as git reads it — the path from `gitdir`, the branch from `HEAD` —
    /// rather than by libgit2's lookup, which resolves the admin folder's
    /// real path (a `readlink` per path component) on every call: listing
    /// every worktree is done per plant, merge and prune, with as many
    /// worktrees as the run has not pruned yet. `None` when the entry is
    /// not whole (being removed, or half made), like libgit2's lookup.
    fn linked_worktree(&self, repo: &Repository, name: &str) -> Option<WorktreeInfo> {
        let admin = self.common_dir().join("worktrees").join(name);
        if !admin.join("commondir").is_file() {
            return None;
        }
        let gitdir = std::fs::read_to_string(admin.join("gitdir")).ok()?;
        let gitlink = Path::new(gitdir.trim_end());
        // What git writes is absolute; libgit2 reads a relative one from
        // the admin folder.
        let gitlink = admin.join(gitlink);
        let path = gitlink.parent()?.to_path_buf();
        let head_file = admin.join("HEAD");
        if !head_file.is_file() {
            return None;
        }
        let (branch, head) = read_head(repo, &head_file);
        Some(WorktreeInfo {
            name: name.to_string(),
            path_exists: path.exists(),
            path,
            branch,
            head,
            is_main: false,
        })
    }

    /// Removes a linked worktree (by admin name or path): its files, then its
    /// admin entry. A dirty or locked one is refused unless `force`.
    pub fn remove_worktree(&self, name_or_path: &Path, force: bool) -> Result<(), GitError> {
        // The admin entry named like the path's last component is, for
        // every worktree treefarm makes, the one: read it alone before
        // listing (and resolving the path of) every worktree.
        let direct = match name_or_path.file_name().and_then(|n| n.to_str()) {
            Some(name) => {
                let repo = self.open()?;
                self.linked_worktree(&repo, name).filter(|w| {
                    Path::new(&w.name) == name_or_path
                        || w.path == name_or_path
                        || same_path(&w.path, name_or_path)
                })
            }
            None => None,
        };
        let list = match direct {
            Some(w) => vec![w],
            None => self.worktrees()?,
        };
        let wanted = canonical(name_or_path).ok();
        let found = list.iter().find(|w| {
            Path::new(&w.name) == name_or_path
                || w.path == name_or_path
                || wanted.as_ref().is_some_and(|p| same_path(p, &w.path))
        });
        let Some(w) = found.filter(|w| !w.is_main) else {
            if found.is_some() {
                return Err(GitError::MainWorktree {
                    path: self.root().to_path_buf(),
                });
            }
            return Err(GitError::WorktreeNotFound {
                name: name_or_path.display().to_string(),
            });
        };
        let repo = self.open()?;
        let wt = repo
            .find_worktree(&w.name)
            .map_err(|e| GitError::git("read worktree", &w.name, e))?;
        if !force && matches!(wt.is_locked(), Ok(WorktreeLockStatus::Locked(_))) {
            return Err(GitError::WorktreeLocked {
                name: w.name.clone(),
            });
        }
        if w.path_exists {
            // A worktree whose agent's work treefarm committed, untouched
            // since, is clean without a listing of its changes.
            let vouched = super::stamp::still_clean(&w.path);
            if vouched {
                tracing::debug!(worktree = %w.path.display(), "clean since treefarm committed in it: no listing");
            }
            if !force && !vouched && Repo::is_dirty(&w.path)? {
                return Err(GitError::WorktreeDirty {
                    path: w.path.clone(),
                });
            }
            // Its index is never brought in line: the worktree goes.
            super::index_lag::discard(&w.path);
            std::fs::remove_dir_all(&w.path)
                .map_err(|e| GitError::io("remove worktree", &w.path, e))?;
        }
        prune_admin(&repo, &w.name)
    }

    /// Removes the admin entries whose worktree directory is gone (unless
    /// locked, as git does); returns their names.
    pub fn prune_stale(&self) -> Result<Vec<String>, GitError> {
        let repo = self.open()?;
        let names = repo.worktrees().map_err(|e| {
            GitError::git(
                "list worktrees of",
                self.common_dir().display().to_string(),
                e,
            )
        })?;
        let mut pruned = Vec::new();
        for name in names.iter().flatten() {
            let Some(wt) = self.find_listed_worktree(&repo, name)? else {
                continue;
            };
            if wt.path().exists() || matches!(wt.is_locked(), Ok(WorktreeLockStatus::Locked(_))) {
                continue;
            }
            prune_admin(&repo, name)?;
            pruned.push(name.to_string());
        }
        Ok(pruned)
    }

    /// A detached worktree at `at`, created under the folder `dir` (made when
    /// missing) as `dir/split-<commit>-<pid>-<n>` (its one user is `treefarm
    /// split`'s throwaway worktree).
    pub fn scratch_worktree(&self, at: Oid, dir: &Path) -> Result<ScratchWorktree, GitError> {
        let short = at.to_string();
        let name = format!(
            "split-{}-{}-{}",
            &short[..short.len().min(12)],
            std::process::id(),
            SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::path::absolute(dir)
            .map_err(|e| GitError::io("resolve path", dir, e))?
            .join(&name);
        self.add_detached(&name, &path, at)?;
        Ok(ScratchWorktree {
            repo: self.clone(),
            name,
            path,
            removed: false,
        })
    }

    /// `git worktree add --detach <path> <at>` with admin entry `name`; the
    /// path must not exist. On failure nothing is left behind.
    pub(crate) fn add_detached(&self, name: &str, path: &Path, at: Oid) -> Result<(), GitError> {
        let branch = format!("treefarm/{name}");
        if path.symlink_metadata().is_ok() {
            return Err(GitError::LeftoverPath {
                path: path.to_path_buf(),
            });
        }
        let parent = path.parent().unwrap_or(path);
        std::fs::create_dir_all(self.common_dir().join("worktrees"))
            .and_then(|()| std::fs::create_dir_all(parent))
            .map_err(|e| GitError::io("create folder", path, e))?;
        let repo = self.open()?;
        if ensure_branch_in(&repo, &branch, at)?.is_some() {
            return Err(GitError::LeftoverBranch {
                branch,
                tip: at,
                wanted: at,
            });
        }
        let made = add_on_branch(&repo, name, path, &branch).and_then(|()| {
            // Detach, so the temporary branch can go at once and a killed
            // process leaves at most a stale admin entry behind.
            let wt = Repository::open(path)
                .map_err(|e| GitError::git("open worktree", path.display().to_string(), e))?;
            wt.set_head_detached(at).map_err(|e| {
                GitError::git("detach HEAD of worktree", path.display().to_string(), e)
            })
        });
        let deleted = self.delete_branch(&branch);
        match made {
            Ok(()) => deleted,
            Err(e) => {
                let _ = remove_scratch(self, name, path);
                Err(e)
            }
        }
    }
}

/// `git worktree add <path> <branch>`, admin entry `name`.
///
/// Not `git_worktree_add`: libgit2 writes the entry's files one by one in
/// `<common>/worktrees/<name>`, and a concurrent reader that lists it half
/// made fails (`git_worktree_list` can let a half-made entry through, and
/// `git_branch_is_checked_out` then reports *every* branch as checked out).
/// Here the entry (`commondir`, `gitdir`, `HEAD`) is written beside the
/// folder and renamed into place whole, then the work dir is checked out
/// exactly as libgit2 would (default, safe checkout of HEAD). Whether the
/// branch is checked out elsewhere is checked by the caller, from one
/// listing, before anything is created.
fn add_on_branch(repo: &Repository, name: &str, path: &Path, branch: &str) -> Result<(), GitError> {
    let workdir = register_worktree(repo, name, path, branch, &[])?;
    let wt = Repository::open(&workdir).map_err(|source| GitError::CreateWorktree {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        source,
    })?;
    let fail = |source| GitError::CreateWorktree {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        source,
    };
    let tree = wt.head().and_then(|h| h.peel_to_tree()).map_err(fail)?;
    let mut opts = git2::build::CheckoutBuilder::new();
    opts.disable_filters(super::filters::none_apply(&wt, &tree));
    wt.checkout_head(Some(&mut opts)).map_err(fail)?;
    Ok(())
}

/// Whether a failed worktree creation is worth another try: not when the
/// disk is full, space or permission is missing, or something is in the way.
fn is_transient(err: &GitError) -> bool {
    let text = crate::error::chain(err).to_lowercase();
    let lasting = [
        "no space left",
        "quota",
        "permission denied",
        "read-only file system",
        "file exists",
        "already exists",
        "not a directory",
        "name too long",
        "directory not empty",
    ];
    matches!(err, GitError::CreateWorktree { .. }) && !lasting.iter().any(|l| text.contains(l))
}

/// Deletes the admin entry `name` (its work dir is already gone or kept).
fn prune_admin(repo: &Repository, name: &str) -> Result<(), GitError> {
    // Another thread or process may list worktrees while this one goes away:
    // move the admin entry out of `worktrees/` in one rename, so a reader sees
    // it whole or not at all, then delete it at leisure.
    let admin = repo.commondir().join("worktrees").join(name);
    if admin.is_dir() {
        let trash = repo.commondir().join(format!(
            "treefarm-removed-worktree-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        if std::fs::rename(&admin, &trash).is_ok() {
            return std::fs::remove_dir_all(&trash)
                .map_err(|e| GitError::io("remove worktree admin entry", &trash, e));
        }
    }
    let wt = match repo.find_worktree(name) {
        Ok(wt) => wt,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(()),
        Err(e) => return Err(GitError::git("read worktree", name, e)),
    };
    let mut opts = WorktreePruneOptions::new();
    opts.valid(true).locked(true).working_tree(false);
    wt.prune(Some(&mut opts))
        .map_err(|e| GitError::git("prune worktree", name, e))
}

/// Reads a HEAD file: `(branch, commit)`.
fn read_head(repo: &Repository, head_file: &Path) -> (Option<String>, Option<Oid>) {
    let Ok(text) = std::fs::read_to_string(head_file) else {
        return (None, None);
    };
    let text = text.trim();
    match text.strip_prefix("ref:") {
        Some(refname) => {
            let refname = refname.trim();
            let branch = refname.strip_prefix("refs/heads/").map(str::to_string);
            (branch, repo.refname_to_id(refname).ok())
        }
        None => (None, Oid::from_str(text).ok()),
    }
}

fn check_worktree_name(name: &str) -> Result<(), GitError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.starts_with('.')
        || name.ends_with(".lock");
    if bad {
        return Err(GitError::InvalidWorktreeName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Whether two paths name the same location (symlinks resolved when they
/// exist).
fn same_path(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    a == b || norm(a) == norm(b)
}
