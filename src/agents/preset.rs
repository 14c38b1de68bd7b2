//! The built-in agent presets (`agent.preset`): one wrapper script per CLI,
//! embedded in the binary so an installed `treefarm` works without its source
//! tree, and written into the run directory when a run starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::InputError;

use super::shell::shell_quote;

/// The environment variable naming the prompt file treefarm assembled for an
/// instance (in the run directory, outside the worktree).
pub const ENV_PROMPT_FILE: &str = "TREEFARM_PROMPT_FILE";
/// The environment variable a wrapper turns into the CLI's model flag.
pub const ENV_AGENT_MODEL: &str = "TREEFARM_AGENT_MODEL";
/// The environment variable a wrapper appends to the CLI's arguments, split
/// the way `sh` splits words.
pub const ENV_AGENT_EXTRA_ARGS: &str = "TREEFARM_AGENT_EXTRA_ARGS";

/// The environment variable listing `agent.allowed_commands`, one per line,
/// for wrappers whose CLI needs an allow-list of shell commands.
pub const ENV_ALLOWED_COMMANDS: &str = "TREEFARM_AGENT_ALLOWED_COMMANDS";

/// One supported agent CLI and the wrapper that runs it unattended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name used in `agent.preset`, e.g. `claude-code`.
    pub name: &'static str,
    /// The program the wrapper runs, e.g. `claude`.
    pub program: &'static str,
    /// The product name shown to users, e.g. `Claude Code`.
    pub display: &'static str,
    /// How to install the CLI, shown when it is missing.
    pub install_hint: &'static str,
    /// The environment variable that overrides `program` with another path,
    /// e.g. `TREEFARM_CLAUDE_BIN`.
    pub bin_env: &'static str,
    /// The wrapper script itself (POSIX sh), as materialized: the shared
    /// `scripts/agents/common.sh` followed by the CLI's own script (see
    /// `wrapper!`). One self-contained file, shebang first.
    pub wrapper: &'static str,
}

/// Assembles the wrapper for preset `$name` at compile time:
/// `scripts/agents/common.sh` (shebang, `set -u` and the shared `tf_*`
/// functions: status file, program check, prompt fallback, model and extra
/// arguments, exit status) followed by `scripts/agents/<name>.sh`.
///
/// The per-CLI scripts hold only what is specific to their CLI (its flags,
/// with their documentation) and start with `# treefarm: requires common.sh
/// prepended`: they call the functions `common.sh` defines and have no
/// shebang of their own, so the concatenation is one self-contained `sh`
/// script that `materialize_wrapper` writes out as is. `common.sh` ends with
/// a newline, so the two parts never share a line.
macro_rules! wrapper {
    ($name:literal) => {
        concat!(
            include_str!("../../scripts/agents/common.sh"),
            include_str!(concat!("../../scripts/agents/", $name, ".sh")),
        )
    };
}

static PRESETS: [Preset; 4] = [
    Preset {
        name: "claude-code",
        program: "claude",
        display: "Claude Code",
        install_hint: "npm install -g @anthropic-ai/claude-code",
        bin_env: "TREEFARM_CLAUDE_BIN",
        wrapper: wrapper!("claude-code"),
    },
    Preset {
        name: "codex",
        program: "codex",
        display: "Codex CLI",
        install_hint: "npm install -g @openai/codex",
        bin_env: "TREEFARM_CODEX_BIN",
        wrapper: wrapper!("codex"),
    },
    Preset {
        name: "aider",
        program: "aider",
        display: "aider",
        install_hint: "python -m pip install aider-install && aider-install",
        bin_env: "TREEFARM_AIDER_BIN",
        wrapper: wrapper!("aider"),
    },
    Preset {
        name: "gemini",
        program: "gemini",
        display: "Gemini CLI",
        install_hint: "npm install -g @google/gemini-cli",
        bin_env: "TREEFARM_GEMINI_BIN",
        wrapper: wrapper!("gemini"),
    },
];

/// Every built-in preset, in the order the docs list them.
pub fn presets() -> &'static [Preset] {
    &PRESETS
}

/// The preset called `name`; an unknown name is an error listing the known ones.
pub fn preset(name: &str) -> Result<&'static Preset, InputError> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        InputError::new(format!("unknown agent preset `{name}`")).with_hint(format!(
            "known presets: {}; or set `agent.command` to run any other agent",
            known.join(", ")
        ))
    })
}

/// Writes the preset's wrapper (`common.sh` followed by the CLI's script, as
/// assembled by `wrapper!`) into `dir` (the run directory) as
/// `agent-<name>.sh`, mode 0755, and returns its path.
///
/// The file is written beside its final name and renamed into place, so an
/// instance already running an earlier copy keeps reading a complete script.
pub fn materialize_wrapper(preset: &Preset, dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("agent-{}.sh", preset.name));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".agent-{}.", preset.name))
        .tempfile_in(dir)?;
    tmp.write_all(preset.wrapper.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// The `agent.command` that runs a materialized wrapper: `sh` and its
/// shell-quoted path.
///
/// Through `sh` rather than exec'ing the script itself: a multi-threaded
/// parent that writes the script and spawns children concurrently can have a
/// child that briefly inherits the still-open write handle, and exec'ing a
/// file open for writing fails with "Text file busy". `sh` only reads it.
pub fn preset_command(wrapper_path: &Path) -> String {
    format!("sh {}", shell_quote(&wrapper_path.to_string_lossy()))
}

/// The environment a wrapper reads its options from: `TREEFARM_AGENT_MODEL`
/// when a model is set, `TREEFARM_AGENT_EXTRA_ARGS` (each argument
/// shell-quoted, so the wrapper's `sh` split gives them back) when there are
/// extra arguments.
pub fn preset_env(model: Option<&str>, extra_args: &[String]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        env.push((ENV_AGENT_MODEL.to_string(), model.to_string()));
    }
    if !extra_args.is_empty() {
        let joined: Vec<String> = extra_args.iter().map(|a| shell_quote(a)).collect();
        env.push((ENV_AGENT_EXTRA_ARGS.to_string(), joined.join(" ")));
    }
    env
}

/// `TREEFARM_AGENT_ALLOWED_COMMANDS` (one command per line) when any are
/// configured.
pub fn allowed_commands_env(commands: &[String]) -> Vec<(String, String)> {
    let lines: Vec<&str> = commands
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    vec![(ENV_ALLOWED_COMMANDS.to_string(), lines.join("\n"))]
}

/// What a run says once at its start about how `preset` will run, when that
/// differs from the usual: Claude Code as root cannot skip its permission
/// checks, so the wrapper allows a fixed list of tools instead.
pub fn preset_note(preset: &Preset, root: bool) -> Option<String> {
    (preset.name == "claude-code" && root).then(|| {
        "running as root, where Claude Code refuses --dangerously-skip-permissions: \
         the claude-code preset uses --permission-mode acceptEdits with --allowedTools \
         (file edits, `git add`, `git commit` and the commands in agent.allowed_commands); \
         other shell commands are denied"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared first part of every wrapper.
    const WRAPPER_COMMON: &str = include_str!("../../scripts/agents/common.sh");

    #[test]
    fn every_preset_is_found_by_its_name() {
        for p in presets() {
            assert_eq!(preset(p.name).expect("known preset").program, p.program);
            assert!(p.wrapper.starts_with("#!/bin/sh\n"), "{}", p.name);
            assert!(p.wrapper.contains(p.bin_env), "{}", p.name);
            assert!(p.wrapper.contains(p.install_hint), "{}", p.name);
        }
    }

    #[test]
    fn wrappers_are_common_sh_then_the_cli_script() {
        assert!(WRAPPER_COMMON.starts_with("#!/bin/sh\n"));
        assert!(WRAPPER_COMMON.ends_with('\n'));
        for p in presets() {
            let own = p
                .wrapper
                .strip_prefix(WRAPPER_COMMON)
                .unwrap_or_else(|| panic!("{}: common.sh is not first", p.name));
            assert!(
                own.starts_with("# treefarm: requires common.sh prepended"),
                "{}",
                p.name
            );
            // One shebang, the first line.
            assert_eq!(p.wrapper.matches("#!/bin/sh").count(), 1, "{}", p.name);
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_names() {
        let err = preset("cursor").expect_err("unknown");
        assert!(err.message.contains("`cursor`"), "{err}");
        let hint = err.hint.expect("hint");
        for name in ["claude-code", "codex", "aider", "gemini"] {
            assert!(hint.contains(name), "{hint}");
        }
    }

    #[test]
    fn materialized_wrapper_is_executable_and_complete() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = preset("codex").expect("codex");
        let path = materialize_wrapper(p, &dir.path().join("run")).expect("write");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("agent-codex.sh")
        );
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), p.wrapper);
        // Writing again replaces it in place.
        let again = materialize_wrapper(p, &dir.path().join("run")).expect("rewrite");
        assert_eq!(again, path);
        assert_eq!(
            std::fs::read_dir(dir.path().join("run"))
                .expect("ls")
                .count(),
            1
        );
    }

    #[test]
    fn preset_command_quotes_the_path() {
        assert_eq!(
            preset_command(Path::new("/run/agent.sh")),
            "sh /run/agent.sh"
        );
        assert_eq!(
            preset_command(Path::new("/my runs/it's/agent.sh")),
            r"sh '/my runs/it'\''s/agent.sh'"
        );
    }

    #[test]
    fn preset_env_sets_only_what_is_given() {
        assert!(preset_env(None, &[]).is_empty());
        assert!(preset_env(Some(""), &[]).is_empty());
        let env = preset_env(
            Some("opus"),
            &[
                "--max-turns".to_string(),
                "a b".to_string(),
                "it's".to_string(),
            ],
        );
        assert_eq!(
            env,
            vec![
                ("TREEFARM_AGENT_MODEL".to_string(), "opus".to_string()),
                (
                    "TREEFARM_AGENT_EXTRA_ARGS".to_string(),
                    r"--max-turns 'a b' 'it'\''s'".to_string()
                ),
            ]
        );
    }

    #[test]
    fn allowed_commands_are_one_per_line() {
        assert!(allowed_commands_env(&[" ".to_string()]).is_empty());
        assert_eq!(
            allowed_commands_env(&["cargo test".to_string(), "make".to_string()]),
            vec![(
                "TREEFARM_AGENT_ALLOWED_COMMANDS".to_string(),
                "cargo test\nmake".to_string()
            )]
        );
    }

    #[test]
    fn only_claude_as_root_gets_a_note() {
        let claude = preset("claude-code").expect("claude");
        assert!(preset_note(claude, true).is_some_and(|n| n.contains("--allowedTools")));
        assert!(preset_note(claude, false).is_none());
        assert!(preset_note(preset("codex").expect("codex"), true).is_none());
    }
}
