//! A worktree whose index lags its branch by the one commit treefarm made
//! from its stamp (`stamped.rs`): the commit moves the branch at once; the
//! index — in a sparse worktree an entry for every tracked file, which
//! libgit2 reads and writes whole — follows only if the worktree outlives
//! its merge. A merged worktree is removed without its index being read or
//! written at all.
//!
//! The lag is held in memory (the staged entries, with the stat data taken
//! when their files were hashed) and marked on disk by a file in the
//! worktree's admin folder naming the commit, written right after the
//! commit, so that another process — `resume` after a kill, `treefarm
//! prune` — brings the index in line too (from the commit's trees, with no
//! stat data: git and libgit2 then look at those files' content once).
//!
//! Whatever reads or writes the worktree's git state settles first
//! ([`settle`]): the full listing of its changes (and so every dirtiness
//! check and removal that lists), an agent's start, a hand-back. A run
//! settles the worktree of every instance that ends anywhere but merged,
//! and every lag left when it finishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Tree};

use super::error::GitError;
use super::stamp::admin_dir;

/// The marker's file name, in the worktree's admin folder: it holds the
/// commit the index lags.
pub(crate) const MARKER: &str = "treefarm-index-lags";

/// One worktree's lag, as this process knows it.
struct Lag {
    worktree: PathBuf,
    commit: Oid,
    /// Per staged path: its index entry, `None` to remove it.
    staged: Vec<(PathBuf, Option<IndexEntry>)>,
}

/// The lags this process holds, keyed by the worktree's admin folder (as
/// its `.git` file names it).
static LAGS: Mutex<BTreeMap<PathBuf, Lag>> = Mutex::new(BTreeMap::new());

/// Held while settling: two threads settling one worktree (the run's
/// settle and an agent's start) would race for its index's lock file.
static SETTLING: Mutex<()> = Mutex::new(());

/// Records that `worktree`'s HEAD moved to `commit` while its index still
/// holds the parent's entries at the `staged` paths: the marker, then the
/// lag in memory. When the marker cannot be written (a full disk), the
/// index is brought in line now instead, and the error is that of the
/// index write if it fails too (the lag stays held: the next settle tries
/// again).
pub(crate) fn record(
    worktree: &Path,
    commit: Oid,
    staged: Vec<(PathBuf, Option<IndexEntry>)>,
) -> Result<(), GitError> {
    let Some(admin) = admin_dir(worktree) else {
        return Err(GitError::io(
            "read the `.git` file of",
            worktree,
            std::io::Error::other("not a linked worktree"),
        ));
    };
    let marker = admin.join(MARKER);
    let marked = if crate::hooks::inject_write_error("index-lag") {
        // What a full disk leaves: the file, empty.
        std::fs::write(&marker, "").and(Err(crate::hooks::injected_disk_full()))
    } else {
        std::fs::write(&marker, format!("{commit}\n"))
    };
    let lag = Lag {
        worktree: worktree.to_path_buf(),
        commit,
        staged,
    };
    if let Ok(mut lags) = LAGS.lock() {
        lags.insert(admin, lag);
    }
    match marked {
        Ok(()) => {
            crate::hooks::crash_point("index-lags");
            Ok(())
        }
        Err(e) => {
            tracing::debug!(worktree = %worktree.display(), error = %e, marker = %marker.display(), "cannot mark the index lagging: written now");
            settle(worktree)
        }
    }
}

/// Brings `worktree`'s index in line with the commit treefarm made in it,
/// if it lags one (known to this process or marked on disk by another):
/// each staged path whose entry still holds the parent commit's is set to
/// the commit's, and the index written once. A HEAD moved since (by
/// someone else) leaves the index as it is. Nothing to do costs reading the
/// `.git` file and looking for the marker. On failure a lag this process
/// held stays held, and the marker stays.
pub fn settle(worktree: &Path) -> Result<(), GitError> {
    let Some(admin) = admin_dir(worktree) else {
        return Ok(());
    };
    let marker = admin.join(MARKER);
    let held_here = LAGS.lock().is_ok_and(|lags| lags.contains_key(&admin));
    if !held_here && !marker.exists() {
        return Ok(());
    }
    let _settling = SETTLING.lock();
    let held = LAGS.lock().ok().and_then(|mut lags| lags.remove(&admin));
    let commit = match &held {
        Some(lag) => lag.commit,
        None => match std::fs::read_to_string(&marker) {
            Ok(text) => match Oid::from_str(text.trim()) {
                Ok(commit) => commit,
                // Not one treefarm wrote whole: nothing to go by.
                Err(_) => return remove_marker(&marker),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(GitError::io("read", &marker, e)),
        },
    };
    let staged = held.as_ref().map(|lag| lag.staged.as_slice());
    if let Err(e) = bring_in_line(worktree, &admin, commit, staged) {
        if let (Some(lag), Ok(mut lags)) = (held, LAGS.lock()) {
            lags.insert(admin, lag);
        }
        return Err(e);
    }
    remove_marker(&marker)
}

/// Settles every lag this process holds (a run that finishes: what is
/// left belongs to worktrees that are kept). Best effort: a failure is
/// logged, and the marker stays for the next process.
pub fn settle_all() {
    let worktrees: Vec<PathBuf> = match LAGS.lock() {
        Ok(lags) => lags.values().map(|lag| lag.worktree.clone()).collect(),
        Err(_) => return,
    };
    for worktree in worktrees {
        if let Err(e) = settle(&worktree) {
            tracing::warn!(worktree = %worktree.display(), error = %crate::error::chain(&e), "cannot bring the worktree's index in line with its branch");
        }
    }
}

/// Forgets `worktree`'s lag: it is being removed (its admin folder, the
/// marker with it, goes too).
pub(crate) fn discard(worktree: &Path) {
    if LAGS.lock().map(|lags| lags.is_empty()).unwrap_or(true) {
        return;
    }
    if let (Some(admin), Ok(mut lags)) = (admin_dir(worktree), LAGS.lock()) {
        lags.remove(&admin);
    }
}

impl super::Repo {
    /// Settles every linked worktree whose marker says its index lags
    /// (what a killed process left): `resume` does, before anything else.
    pub fn settle_lagging_indexes(&self) -> Result<(), GitError> {
        settle_marked(self.common_dir())
    }
}

/// [`super::Repo::settle_lagging_indexes`] of the common git directory.
fn settle_marked(common_dir: &Path) -> Result<(), GitError> {
    let admins = common_dir.join("worktrees");
    let entries = match std::fs::read_dir(&admins) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(GitError::io("list", &admins, e)),
    };
    let mut first_error = None;
    for entry in entries.flatten() {
        let admin = entry.path();
        if !admin.join(MARKER).is_file() {
            continue;
        }
        // `gitdir` names the worktree's `.git` file (relative to the admin
        // folder with `worktree.useRelativePaths`).
        let Ok(gitdir) = std::fs::read_to_string(admin.join("gitdir")) else {
            continue;
        };
        let dot_git = admin.join(gitdir.trim());
        if let Some(worktree) = dot_git.parent() {
            if let Err(e) = settle(worktree) {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_marker(marker: &Path) -> Result<(), GitError> {
    match std::fs::remove_file(marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GitError::io("remove", marker, e)),
    }
}

/// The update of [`settle`]: `staged` as held in memory, else read from
/// the commit's trees.
fn bring_in_line(
    worktree: &Path,
    admin: &Path,
    commit: Oid,
    staged: Option<&[(PathBuf, Option<IndexEntry>)]>,
) -> Result<(), GitError> {
    let at = || worktree.display().to_string();
    let repo = Repository::open(worktree).map_err(|e| GitError::git("open worktree", at(), e))?;
    if repo.head().ok().and_then(|h| h.target()) != Some(commit) {
        tracing::warn!(worktree = %worktree.display(), %commit, "HEAD moved since treefarm committed there: its index is left as it is");
        return Ok(());
    }
    let of = || format!("commit {commit} in {}", worktree.display());
    let found = repo
        .find_commit(commit)
        .map_err(|e| GitError::git("read", of(), e))?;
    let parent = found
        .parent(0)
        .and_then(|p| p.tree())
        .map_err(|e| GitError::git("read the parent of", of(), e))?;
    let read;
    let staged = match staged {
        Some(staged) => staged,
        None => {
            let tree = found
                .tree()
                .map_err(|e| GitError::git("read the tree of", of(), e))?;
            read = from_trees(&repo, &parent, &tree).map_err(|e| GitError::git("diff", at(), e))?;
            read.as_slice()
        }
    };
    // Opened by its path, not through the repository: libgit2 then writes
    // it without its check for racily clean entries — a diff of those
    // entries against the disk, which a plant leaves in the thousands. That
    // check guards entries whose file changed in the clock tick their stat
    // was taken in: those the plant wrote itself, unchanged since by the
    // stamp, and the ones staged here, stat'ed before they were hashed (or
    // with no stat at all); readers look again at any entry as new as the
    // index anyway.
    let mut index = Index::open(&admin.join("index"))
        .map_err(|e| GitError::git("read the index of", at(), e))?;
    let mut changed = false;
    for (path, entry) in staged {
        // Only an entry that still holds the parent's: anything staged
        // since stays as it is.
        let was = parent
            .get_path(path)
            .ok()
            .map(|e| (e.id(), e.filemode() as u32));
        let is = index.get_path(path, 0).map(|e| (e.id, e.mode));
        if was != is {
            continue;
        }
        match entry {
            Some(entry) => index.add(entry),
            None => index.remove(path, 0),
        }
        .map_err(|e| GitError::git("stage changes in", at(), e))?;
        changed = true;
    }
    if changed {
        index
            .write()
            .map_err(|e| GitError::git("write the index of", at(), e))?;
    }
    Ok(())
}

/// The index entries of what changed from `old` to `new`, with no stat
/// data (size and times zero: whoever reads the index looks at the files'
/// content once).
fn from_trees(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<(PathBuf, Option<IndexEntry>)>, git2::Error> {
    use std::os::unix::ffi::OsStrExt as _;
    let diff = repo.diff_tree_to_tree(Some(old), Some(new), None)?;
    let mut staged = Vec::new();
    for delta in diff.deltas() {
        let file = delta.new_file();
        let Some(path) = file.path().or_else(|| delta.old_file().path()) else {
            continue;
        };
        let entry = file.exists().then(|| IndexEntry {
            ctime: IndexTime::new(0, 0),
            mtime: IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: u32::from(file.mode()),
            uid: 0,
            gid: 0,
            file_size: 0,
            id: file.id(),
            flags: 0,
            flags_extended: 0,
            path: path.as_os_str().as_bytes().to_vec(),
        });
        staged.push((path.to_path_buf(), entry));
    }
    Ok(staged)
}
