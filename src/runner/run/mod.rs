//! The loop and its journal: how a run starts and is driven, turn by turn.
//!
//! - `imp`: starts the runtime and drives a run (or a resume) to its end.
//! - `dispatch`: the `select!` loop; turns what happened into an `Input`,
//!   hands it to the machine, performs the actions it returns.
//! - `journal`: group commit of the run's state and events, once per turn.
//! - `lane`: the blocking git work (plant, merge, build and land batches,
//!   prune), one job at a time.
//! - `recover`: brings an interrupted run back under control on `resume`.

pub mod dispatch;
pub mod imp;
pub mod journal;
pub mod lane;
pub mod recover;
