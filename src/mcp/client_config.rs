//! `treefarm mcp --print-config claude|codex|gemini`: the configuration each
//! agent CLI needs to start `treefarm mcp` as a stdio server and to call its
//! tools without asking, also in non-interactive mode. Checked against the
//! pinned CLIs (`scripts/test-real-agents.sh`), which `real_mcp` drives with
//! exactly these snippets:
//!
//! - Claude Code reads servers from a `--mcp-config` JSON file
//!   (`mcpServers`) and asks before every MCP tool call unless a permission
//!   rule allows it: `--allowedTools mcp__treefarm` (every tool of the
//!   server), or the same rule in `permissions.allow`.
//! - Codex reads `[mcp_servers.<name>]` from `$CODEX_HOME/config.toml`;
//!   `default_tools_approval_mode = "approve"` lets `codex exec` call the
//!   tools without a prompt it could not show, and `tool_timeout_sec` must
//!   cover a `run_wait` (45 s by default).
//! - Gemini CLI reads `mcpServers` from `~/.gemini/settings.json`;
//!   `trust: true` skips the confirmation of every tool of that server
//!   (non-interactive mode drops tools that would need one), and a headless
//!   run in a folder nobody trusted is refused unless `--skip-trust`.

use std::path::Path;

/// An agent CLI `--print-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// Claude Code.
    Claude,
    /// OpenAI Codex CLI.
    Codex,
    /// Google Gemini CLI.
    Gemini,
}

/// A client's configuration: `content` is the file (or fragment) to write,
/// `note` says where it goes and how to start the CLI with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub content: String,
    pub note: String,
}

/// Seconds Codex lets one tool call take: `run_wait`'s longest default
/// wait, `run_cancel`'s bound and some room.
const CODEX_TOOL_TIMEOUT_SECS: u64 = 120;

/// The configuration `client` needs to run `exe mcp -C dir`.
pub fn client_config(client: Client, exe: &Path, dir: &Path) -> ClientConfig {
    let command = exe.display().to_string();
    let args = [
        "mcp".to_string(),
        "-C".to_string(),
        dir.display().to_string(),
    ];
    match client {
        Client::Claude => {
            let value = serde_json::json!({
                "mcpServers": {"treefarm": {"type": "stdio", "command": command, "args": args}}
            });
            ClientConfig {
                content: pretty(&value),
                note: "Claude Code: save this as treefarm-mcp.json, then run\n  \
                       claude --mcp-config treefarm-mcp.json --allowedTools mcp__treefarm -p '...'\n\
                       (--allowedTools lets every treefarm tool run without a prompt; in an \
                       interactive setup add \"mcp__treefarm\" to permissions.allow in \
                       .claude/settings.json instead)"
                    .to_string(),
            }
        }
        Client::Codex => {
            let args: Vec<String> = args.iter().map(|a| toml_string(a)).collect();
            ClientConfig {
                content: format!(
                    "[mcp_servers.treefarm]\n\
                     command = {}\n\
                     args = [{}]\n\
                     # codex exec cannot ask: approve treefarm's tools up front.\n\
                     default_tools_approval_mode = \"approve\"\n\
                     # run_wait waits up to 45 s by default.\n\
                     tool_timeout_sec = {CODEX_TOOL_TIMEOUT_SECS}\n",
                    toml_string(&command),
                    args.join(", ")
                ),
                note: "Codex: append this to $CODEX_HOME/config.toml (default \
                       ~/.codex/config.toml), then run\n  codex exec '...'"
                    .to_string(),
            }
        }
        Client::Gemini => {
            let value = serde_json::json!({
                "mcpServers": {"treefarm": {"command": command, "args": args, "trust": true}}
            });
            ClientConfig {
                content: pretty(&value),
                note: "Gemini CLI: merge this into ~/.gemini/settings.json, then run\n  \
                       gemini --skip-trust -p '...'\n\
                       (trust: true runs treefarm's tools without a confirmation; a headless \
                       run refuses a folder that is not trusted: --skip-trust, or \
                       GEMINI_CLI_TRUST_WORKSPACE=true, trusts it for the session)"
                    .to_string(),
            }
        }
    }
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// `s` as a TOML basic string (JSON string escapes are valid TOML ones for
/// everything a path holds).
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_and_gemini_snippets_are_json_naming_the_server() {
        for client in [Client::Claude, Client::Gemini] {
            let c = client_config(client, Path::new("/bin/treefarm"), Path::new("/r e\"po"));
            let v: serde_json::Value = serde_json::from_str(&c.content).expect("json");
            let server = &v["mcpServers"]["treefarm"];
            assert_eq!(server["command"], "/bin/treefarm");
            assert_eq!(server["args"], serde_json::json!(["mcp", "-C", "/r e\"po"]));
        }
    }

    #[test]
    fn codex_snippet_approves_the_tools() {
        let c = client_config(
            Client::Codex,
            Path::new("/bin/treefarm"),
            Path::new("/r\"epo"),
        );
        assert!(c
            .content
            .contains("default_tools_approval_mode = \"approve\""));
        assert!(
            c.content.contains(r#"args = ["mcp", "-C", "/r\"epo"]"#),
            "{}",
            c.content
        );
    }
}
