//! The only async code: the dispatcher (one per run) and the executors (one
//! per agent).

pub mod dispatch;
pub mod instance;
pub mod options;
