//! Specs: one unit of work each, read from `spec_dir` (Markdown with optional
//! front matter and explicit markers, or YAML), validated as a set.
//!
//! Pipeline: [`parse_spec`] turns one file's bytes into a [`RawSpec`] and
//! checks what can be checked in isolation (paths, globs, at least one declared
//! file); [`load_specs`] reads a folder, resolves ids, dependencies and cycles
//! and returns a [`SpecSet`] sorted by priority.

mod diag;
mod error;
mod load;
mod markers;
mod model;
mod parse;
mod paths;
pub(crate) mod yaml;

pub use diag::{Diagnostic, Level};
pub use error::SpecError;
pub use load::{load_spec_folder, load_specs, Entry, LoadOptions, Selected, SpecFolder};
pub use markers::{MarkerRules, Mention};
pub use model::{branch_for, id_key, Declared, Spec, SpecSet};
pub(crate) use parse::line_of_offset;
pub use parse::{
    id_from_file_name, parse_priority, parse_spec, parse_spec_with, ParseOptions, Parsed, RawSpec,
    SpecFormat, PRIORITY_WORDS,
};
pub use paths::{compile_glob, normalize_path, PathProblem};
