//! The runtime of a run: the one place treefarm starts tokio. `run`,
//! `resume` and `merge` hand a journalled run to [`execute`], which drives
//! the dispatcher to its end (or interruption) on a multi-threaded runtime.

use std::sync::Arc;

use crate::report::{Reporter, Summary};
use crate::runner::error::RunnerError;
use crate::runner::messages::Mode;
use crate::runner::run::dispatch::Dispatcher;
use crate::state::RunOptions;
use crate::state::{RunDir, RunRecord};

/// Drives the run recorded in `dir` to its end and returns the final record
/// and summary. Becomes the child subreaper first, so agents' orphans stay
/// ours to end.
pub fn execute(
    opts: RunOptions,
    dir: Arc<RunDir>,
    record: RunRecord,
    reporter: &mut dyn Reporter,
    mode: Mode,
) -> Result<(RunRecord, Summary), RunnerError> {
    if let Err(err) = crate::runner::set_child_subreaper() {
        tracing::warn!("cannot become a child subreaper ({err}); orphaned agent processes may escape the timeout");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunnerError::Runtime)?;
    rt.block_on(Dispatcher::new(Arc::new(opts), dir, record, reporter, mode).drive())
}
