//! Tool state of the agent CLIs under isolation: where each supported CLI
//! and the common toolchains keep their state (the CLI's own variable, else
//! a folder in `$HOME`), which of those are writable to an agent, and which
//! treefarm creates before the sandbox because Landlock can only grant a
//! path that exists.
//!
//! Measured with the pinned CLIs from an empty `$HOME` (see the README,
//! section Isolation): Claude Code writes `~/.claude/` and the file
//! `~/.claude.json`; Codex CLI `$CODEX_HOME` (default `~/.codex/`, and it
//! refuses to start when `CODEX_HOME` names a missing folder); Gemini CLI
//! `~/.gemini/` (`$GEMINI_CLI_HOME/.gemini/`); aider `~/.aider/`. None of
//! them needed anything else under `$HOME`.

use std::path::{Path, PathBuf};

/// Caches and state of common toolchains, under `$HOME` or where an XDG
/// variable points: writable when they exist (treefarm never creates them).
/// `(variable, path under it, default under $HOME)`.
const TOOLCHAIN_STATE: &[(Option<&str>, &str, &str)] = &[
    (Some("XDG_CACHE_HOME"), "", ".cache"),
    (Some("XDG_STATE_HOME"), "", ".local/state"),
    (Some("XDG_DATA_HOME"), "pnpm", ".local/share/pnpm"),
    (None, "", ".npm"),
    (None, "", ".yarn"),
    (None, "", ".pnpm-store"),
    (None, "", ".cargo/registry"),
    (None, "", ".cargo/git"),
    (None, "", "go/pkg/mod"),
];

/// The programs of the supported CLIs, as `agent.preset` runs them.
const CLIS: &[&str] = &["claude", "codex", "gemini", "aider"];

/// What an agent's tool state needs from isolation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolState {
    /// Writable to the agent (hierarchies; missing ones are skipped when the
    /// ruleset is built, so `create_*` must have made the ones that matter).
    pub writable: Vec<PathBuf>,
    /// Folders treefarm creates (mode 0700) before the agent starts when
    /// they are missing: the state folders of the CLI the agent runs.
    pub create_dirs: Vec<PathBuf>,
    /// Files treefarm creates (mode 0600, content `{}`) when missing: a
    /// CLI's state file directly in `$HOME`, which Landlock cannot let the
    /// agent create (that would mean write access to `$HOME` itself).
    pub create_files: Vec<PathBuf>,
}

/// The supported CLI an agent runs: the preset's program, else a word of
/// `agent.command` whose file name is one of them (`/usr/bin/claude -p`).
pub fn cli_of(preset_program: Option<&str>, command: &str) -> Option<&'static str> {
    let named = |word: &str| {
        let name = word.rsplit('/').next().unwrap_or(word);
        CLIS.iter().copied().find(|c| *c == name)
    };
    match preset_program {
        Some(program) => named(program),
        None => command.split_whitespace().find_map(named),
    }
}

/// The value of `name` in `env` (the last one wins, as in a process
/// environment built by appending), when it is an absolute path.
fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a Path> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| Path::new(v.as_str()))
        .filter(|p| p.is_absolute())
}

/// The state folders and files of `cli`: `(folders, files in $HOME)`.
fn cli_state(cli: &str, home: &Path, env: &[(String, String)]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    match cli {
        // With CLAUDE_CONFIG_DIR, Claude Code keeps `.claude.json` in it.
        "claude" => match var(env, "CLAUDE_CONFIG_DIR") {
            Some(dir) => (vec![dir.to_path_buf()], vec![]),
            None => (vec![home.join(".claude")], vec![home.join(".claude.json")]),
        },
        "codex" => (
            vec![var(env, "CODEX_HOME").map_or_else(|| home.join(".codex"), Path::to_path_buf)],
            vec![],
        ),
        "gemini" => (
            vec![var(env, "GEMINI_CLI_HOME").unwrap_or(home).join(".gemini")],
            vec![],
        ),
        "aider" => (vec![home.join(".aider")], vec![]),
        _ => (vec![], vec![]),
    }
}

/// The tool state of an agent running `cli` (None: not a supported CLI)
/// with `home` and the environment `env` (only the variables that move
/// state are read: `CLAUDE_CONFIG_DIR`, `CODEX_HOME`, `GEMINI_CLI_HOME`,
/// `XDG_CACHE_HOME`, `XDG_STATE_HOME`, `XDG_DATA_HOME`).
///
/// Every supported CLI's state stays writable when it exists (an agent
/// command may run another CLI than its preset); only the running CLI's is
/// created. A variable that points at `$HOME`, one of its ancestors or `/`
/// is ignored for writing: that would open the whole home folder.
pub fn tool_state(cli: Option<&str>, home: &Path, env: &[(String, String)]) -> ToolState {
    let safe = |p: &PathBuf| !home.starts_with(p);
    let mut state = ToolState::default();
    for other in CLIS {
        let (dirs, files) = cli_state(other, home, env);
        state
            .writable
            .extend(dirs.iter().chain(&files).filter(|p| safe(p)).cloned());
        if Some(*other) == cli {
            state.create_dirs = dirs.into_iter().filter(|p| safe(p)).collect();
            state.create_files = files;
        }
    }
    state.writable.extend(
        TOOLCHAIN_STATE
            .iter()
            .map(
                |(variable, sub, default)| match variable.and_then(|v| var(env, v)) {
                    Some(dir) if sub.is_empty() => dir.to_path_buf(),
                    Some(dir) => dir.join(sub),
                    None => home.join(default),
                },
            )
            .filter(|p| safe(p)),
    );
    state
}

/// Creates the missing folders (0700) and files (`{}`, 0600) of `state`
/// (the user's own home: nobody else should read a CLI's state). Returns
/// what it created, so a run can say so.
pub fn prepare_tool_state(state: &ToolState) -> std::io::Result<Vec<PathBuf>> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let mut created = Vec::new();
    for dir in &state.create_dirs {
        if dir.exists() {
            continue;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("`{}`: {e}", dir.display())))?;
        created.push(dir.clone());
    }
    for file in &state.create_files {
        // `{}`: an empty JSON object is a first start to the CLI (an empty
        // file would be a corrupt configuration).
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
        {
            Ok(mut f) => {
                f.write_all(b"{}\n").map_err(|e| {
                    std::io::Error::new(e.kind(), format!("`{}`: {e}", file.display()))
                })?;
                created.push(file.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("`{}`: {e}", file.display()),
                ))
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_running_cli_gets_its_state_created_the_others_only_kept_writable() {
        let home = Path::new("/home/u");
        let state = tool_state(Some("claude"), home, &[]);
        assert_eq!(state.create_dirs, vec![PathBuf::from("/home/u/.claude")]);
        assert_eq!(
            state.create_files,
            vec![PathBuf::from("/home/u/.claude.json")]
        );
        for p in [
            "/home/u/.claude",
            "/home/u/.claude.json",
            "/home/u/.codex",
            "/home/u/.gemini",
            "/home/u/.aider",
            "/home/u/.cache",
            "/home/u/.local/state",
        ] {
            assert!(state.writable.contains(&PathBuf::from(p)), "{p}");
        }
        assert!(!state.writable.contains(&PathBuf::from("/home/u")));
        let none = tool_state(None, home, &[]);
        assert!(none.create_dirs.is_empty() && none.create_files.is_empty());
    }

    #[test]
    fn the_clis_own_variables_move_their_state_and_home_itself_is_never_opened() {
        let home = Path::new("/home/u");
        let vars = env(&[
            ("CLAUDE_CONFIG_DIR", "/cfg/claude"),
            ("CODEX_HOME", "/cfg/codex"),
            ("GEMINI_CLI_HOME", "/cfg/g"),
            ("XDG_CACHE_HOME", "/c"),
            ("XDG_DATA_HOME", "/d"),
        ]);
        let claude = tool_state(Some("claude"), home, &vars);
        assert_eq!(claude.create_dirs, vec![PathBuf::from("/cfg/claude")]);
        assert!(claude.create_files.is_empty(), "{claude:?}");
        assert!(claude.writable.contains(&PathBuf::from("/cfg/codex")));
        assert!(claude.writable.contains(&PathBuf::from("/cfg/g/.gemini")));
        assert!(claude.writable.contains(&PathBuf::from("/c")));
        assert!(claude.writable.contains(&PathBuf::from("/d/pnpm")));
        assert_eq!(
            tool_state(Some("codex"), home, &vars).create_dirs,
            vec![PathBuf::from("/cfg/codex")]
        );
        // CODEX_HOME=$HOME (or /home, or a relative path): not opened.
        for bad in ["/home/u", "/home", "/", "rel"] {
            let vars = env(&[("CODEX_HOME", bad), ("XDG_CACHE_HOME", bad)]);
            let state = tool_state(Some("codex"), home, &vars);
            assert!(
                state.writable.iter().all(|p| !home.starts_with(p)),
                "{bad}: {state:?}"
            );
        }
    }

    #[test]
    fn the_cli_is_the_presets_program_or_a_word_of_the_command() {
        assert_eq!(cli_of(Some("claude"), "sh agent.sh"), Some("claude"));
        assert_eq!(cli_of(None, "/opt/bin/codex exec -"), Some("codex"));
        assert_eq!(cli_of(None, "./my-agent.sh {spec}"), None);
    }

    #[test]
    fn prepare_creates_missing_state_private_and_keeps_what_exists() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        std::fs::write(home.join(".claude.json"), "{\"mine\": 1}").unwrap();
        let state = tool_state(Some("claude"), home, &[]);
        let created = prepare_tool_state(&state).unwrap();
        assert_eq!(created, vec![home.join(".claude")]);
        let mode = std::fs::metadata(home.join(".claude"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_to_string(home.join(".claude.json")).unwrap(),
            "{\"mine\": 1}"
        );
        std::fs::remove_file(home.join(".claude.json")).unwrap();
        assert_eq!(
            prepare_tool_state(&state).unwrap(),
            vec![home.join(".claude.json")]
        );
        let meta = std::fs::metadata(home.join(".claude.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
