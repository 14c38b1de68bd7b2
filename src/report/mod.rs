//! Output: the run's events, rendered for people (stderr) or as JSON Lines
//! (stdout), plus the `check`, `plan` and `status` views and the HTML run
//! report (`html`, `timeline`, `graph`); `usage` the agents' tokens and cost.

pub mod check;
pub mod events;
pub mod graph;
pub mod html;
pub mod human;
pub mod reporter;
pub mod status;
pub mod summary;
pub mod timeline;
pub mod usage;

pub use events::{ConflictSummary, Event, Summary};
pub use human::HumanReporter;
pub use reporter::{stamped, tail_lines, JsonLinesReporter, Reporter, Reporters};
pub use summary::summarize;
