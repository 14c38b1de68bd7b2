//! The journal and the lock: everything a run knows lives under
//! `<git-common-dir>/treefarm/`, written so that a coordinator killed with
//! `kill -9` at any moment loses nothing (DESIGN.md, State).

mod atomic;
mod changes;
mod dir;
mod error;
mod lock;
mod options;
mod record;
mod touched;

pub use crate::hooks::{crash_point, CRASH_AT_ENV, INJECT_WRITE_ERROR_ENV};
pub use changes::StateWriter;
pub use dir::{RunDir, StateDir};
pub use error::{Cause, StateError};
pub use lock::{Lock, LockError, LockHolder, StaleTakeover};
pub use options::{slot_port, sparse_request, QueueOptions, RunOptions};
pub use record::{now_ms, InstanceRecord, InstanceState, JournalledOptions, RunRecord, RunState};
pub use touched::Touched;
