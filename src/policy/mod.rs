//! Pure policy values that the journal stores, the config reads, the run
//! applies and the reports show — so they sit below all four, like
//! [`crate::merge_queue`]. Pure and synchronous: serde data and functions of
//! it, clocks and measurements handed in; imports only `agents` data types.
//!
//! - `pacing`: how fast agents may start (backoff, congestion window, stagger).
//! - `budget`: the run's spending limits and what has been spent.
//! - `reserve`: the disk budget (`worktree.reserve`, what a run needs).

pub mod budget;
pub mod pacing;
pub mod reserve;

pub use budget::{Budget, BudgetReached, Spending};
pub use pacing::{ConcurrencyWindow, Decision, Pacer, PacingPolicy, StartGate};
