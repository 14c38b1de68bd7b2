//! One coordinator per repository: `<state>/lock`.
//!
//! The lock is an exclusive `flock(2)` on the file, and the file holds JSON
//! naming the holder (`pid`, `start_time`, `run_id`, `since_ms`) for error
//! messages and `treefarm status`. The kernel drops a `flock` when its holder
//! dies, even by `kill -9`, so there is no stale-lock race to close: whoever
//! gets the `flock` owns the lock, and if it finds a previous holder's JSON
//! there, that holder died without cleaning up ([`StaleTakeover`]).
//!
//! Two details keep this exact:
//! - after locking, the path must still name the inode we locked (a holder
//!   removes the file on release while still holding it; whoever locked the
//!   orphaned inode retries);
//! - JSON naming a live process (pid and start time) is honoured even without
//!   a `flock` on it, so a lock written by hand or by a tool that does not
//!   `flock` is never broken while its owner lives.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::procfs;

use super::dir::StateDir;
use super::record::now_ms;

/// The JSON inside the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub since_ms: u64,
}

impl LockHolder {
    /// True when the holder process (pid and start time) is alive.
    pub fn is_alive(&self) -> bool {
        procfs::is_alive(self.pid, self.start_time)
    }
}

/// The coordinator lock of one repository, held while this value lives.
/// Dropping it removes the lock file (if it is still ours) and releases it.
#[derive(Debug)]
pub struct Lock {
    file: Option<Flock<File>>,
    path: PathBuf,
    holder: LockHolder,
}

/// The dead coordinator whose lock [`Lock::acquire`] took over, so the caller
/// can say "took over stale lock from dead pid N (run X)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleTakeover {
    pub pid: u32,
    pub run_id: String,
    pub since_ms: u64,
    pub path: PathBuf,
}

impl std::fmt::Display for StaleTakeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "took over stale lock `{}` from dead pid {} (run {})",
            self.path.display(),
            self.pid,
            self.run_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live coordinator holds the lock: the user should wait for it
    /// (exit code 2, see [`LockError::input_error`]).
    #[error(
        "another treefarm (pid {pid}, run {run_id}) holds the lock `{}`\nhint: wait for it, or see `treefarm status`",
        path.display()
    )]
    Held {
        pid: u32,
        run_id: String,
        path: PathBuf,
        since_ms: u64,
    },
    #[error("failed to {action} lock `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LockError {
    /// The user-facing form of [`LockError::Held`] (message + hint), for the
    /// CLI to return so that it maps to exit code 2; `None` for I/O errors.
    pub fn input_error(&self) -> Option<InputError> {
        match self {
            LockError::Held {
                pid, run_id, path, ..
            } => Some(
                InputError::new(format!(
                    "another treefarm (pid {pid}, run {run_id}) holds the lock `{}`",
                    path.display()
                ))
                .with_hint("wait for it, or see `treefarm status`"),
            ),
            LockError::Io { .. } => None,
        }
    }

    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        LockError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How long to wait for a live holder to finish writing its JSON (it writes
/// right after taking the `flock`) before reporting it as unknown.
const HOLDER_WRITE_GRACE: Duration = Duration::from_millis(500);

impl Lock {
    /// Takes the repository's coordinator lock for `run_id`. A live holder
    /// is [`LockError::Held`]; a dead one's lock is taken over and reported.
    /// Of any number of concurrent callers (threads or processes), exactly one
    /// succeeds.
    pub fn acquire(
        state: &StateDir,
        run_id: &str,
    ) -> Result<(Lock, Option<StaleTakeover>), LockError> {
        let path = state.lock_path();
        fs::create_dir_all(state.path())
            .map_err(|e| LockError::io("create the directory of", &path, e))?;
        let pid = std::process::id();
        let me = LockHolder {
            pid,
            start_time: procfs::start_time(pid),
            run_id: run_id.to_string(),
            since_ms: now_ms(),
        };
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| LockError::io("open", &path, e))?;
            let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((file, Errno::EWOULDBLOCK)) => return Err(held_by_locker(file, &path)),
                Err((_, errno)) => {
                    return Err(LockError::io("take", &path, io::Error::from(errno)))
                }
            };
            if !same_file(&locked, &path)? {
                // The previous holder removed the file between our open and
                // our lock: we locked an orphan. Start again on the new file.
                continue;
            }
            let previous = read_holder(&mut locked).map_err(|e| LockError::io("read", &path, e))?;
            let takeover = match previous {
                Some(prev) if prev.is_alive() => {
                    // Live, but not holding a flock (written by hand or by a
                    // tool that does not flock): never break it.
                    return Err(LockError::Held {
                        pid: prev.pid,
                        run_id: prev.run_id,
                        path,
                        since_ms: prev.since_ms,
                    });
                }
                Some(prev) => Some(StaleTakeover {
                    pid: prev.pid,
                    run_id: prev.run_id,
                    since_ms: prev.since_ms,
                    path: path.clone(),
                }),
                None => None,
            };
            write_holder(&mut locked, &me).map_err(|e| LockError::io("write", &path, e))?;
            if let Some(stale) = &takeover {
                tracing::warn!(pid = stale.pid, run_id = %stale.run_id, "took over stale lock");
            }
            return Ok((
                Lock {
                    file: Some(locked),
                    path,
                    holder: me,
                },
                takeover,
            ));
        }
    }

    /// `<state>/lock`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this lock wrote into the file.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// Releases the lock now (like drop).
    pub fn release(self) {}

    /// Reads who holds the lock of `state`, without taking it: `None` when
    /// nobody does (no file, or only a dead holder's leftovers).
    pub fn holder_of(state: &StateDir) -> Option<LockHolder> {
        let text = fs::read(state.lock_path()).ok()?;
        let holder: LockHolder = serde_json::from_slice(&text).ok()?;
        holder.is_alive().then_some(holder)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Remove the file while still holding the flock, and only if the
            // path still names our inode; then the flock goes with the fd.
            if matches!(same_file(&file, &self.path), Ok(true)) {
                let _ = fs::remove_file(&self.path);
            }
            drop(file);
        }
    }
}

fn same_file(file: &File, path: &Path) -> Result<bool, LockError> {
    let ours = file
        .metadata()
        .map_err(|e| LockError::io("inspect", path, e))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LockError::io("inspect", path, e)),
    }
}

/// The holder recorded in the file; `None` when empty or unparsable (a
/// holder that died between taking the flock and writing, or garbage).
fn read_holder(file: &mut File) -> io::Result<Option<LockHolder>> {
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice(&text) {
        Ok(holder) => Ok(Some(holder)),
        Err(e) => {
            tracing::warn!("ignoring unreadable lock file contents: {e}");
            Ok(None)
        }
    }
}

fn write_holder(file: &mut File, holder: &LockHolder) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(holder).map_err(io::Error::other)?;
    bytes.push(b'\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&bytes)?;
    file.sync_all()
}

/// The error for a lock whose flock someone holds. The holder writes its
/// JSON right after taking the flock, so until then the file may still name
/// the dead holder it is replacing: wait briefly for a live one.
fn held_by_locker(mut file: File, path: &Path) -> LockError {
    let deadline = std::time::Instant::now() + HOLDER_WRITE_GRACE;
    let mut last = None;
    loop {
        if let Ok(Some(holder)) = read_holder(&mut file) {
            if holder.is_alive() {
                last = Some(holder);
                break;
            }
            last = Some(holder);
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let holder = last.unwrap_or(LockHolder {
        pid: 0,
        start_time: None,
        run_id: "unknown".to_string(),
        since_ms: 0,
    });
    LockError::Held {
        pid: holder.pid,
        run_id: holder.run_id,
        path: path.to_path_buf(),
        since_ms: holder.since_ms,
    }
}
