//! `treefarm mcp`: serve the MCP tools on stdio, or print a client's
//! configuration. stdout carries JSON-RPC only; diagnostics go to stderr
//! (tracing is set up on stderr before this runs).

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use crate::error::ExitCode;
use crate::mcp::{client_config, Client, TreefarmServer};

pub fn mcp(
    start: &Path,
    config: Option<&Path>,
    print_config: Option<Client>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the treefarm binary to start runs")?;
    let start = crate::cli::context::normalize(&std::path::absolute(start)?);
    if let Some(client) = print_config {
        // The repository root when there is one, so the server finds it
        // from any directory the CLI starts it in.
        let dir = crate::git::Repo::discover(&start)
            .map(|r| r.root().to_path_buf())
            .unwrap_or(start);
        let c = client_config(client, &exe, &dir);
        out.write_all(c.content.as_bytes())?;
        writeln!(err, "{}", c.note)?;
        return Ok(ExitCode::Success);
    }
    let server = TreefarmServer::new(start, config.map(Path::to_path_buf), exe);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        use rmcp::ServiceExt as _;
        let service = server
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP handshake failed")?;
        service.waiting().await.context("the MCP server stopped")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::Success)
}
