//! `treefarm mcp`: a Model Context Protocol server on stdio, so a coding
//! agent can check specs, start and follow runs, merge, report and prune
//! with tool calls. A second front end beside `cli`: its tools call the
//! same command functions.

mod client_config;
mod guard;
mod runs;
mod server;
mod tools;

pub use client_config::{client_config, Client};
pub(crate) use server::TreefarmServer;
