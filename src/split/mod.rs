//! `treefarm split`: an agent drafts the specs of one request, treefarm judges
//! the drafts with its own check and hands the diagnostics back.
//!
//! Rooms: `draft` reads the agent's drafts (the spec format plus `creates:`);
//! `names` gives them ids and file names and renders the spec files;
//! `rules` holds the split's own rules on top of `check`; `scratch` writes
//! the folder the agent works in (request, tracked files, existing specs,
//! format, diagnostics) and its prompt.

mod draft;
mod error;
mod names;
mod rules;
mod scratch;

pub use draft::{read_drafts, Draft, DRAFT_HINT};
pub use error::SplitError;
pub use names::{
    assign_ids, declared_files, render_spec, rewritten_depends_on, spec_file_name, IdMap,
};
pub use rules::{judge_drafts, Findings, SplitLimits, SplitRound};
pub use scratch::{
    diagnostics_text, split_prompt, write_scratch, ExistingSpec, ScratchInputs, DIAGNOSTICS_FILE,
    FORMAT_FILE, SCRATCH_DIR,
};
