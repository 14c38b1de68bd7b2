//! `check_program`: `run` refuses an agent command whose program is missing
//! before it creates anything.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use treefarm::agents::{check_preset_program, check_program, preset};

/// A folder with an executable `my-agent`, a non-executable `notes.sh` and a
/// `bin/` subfolder holding an executable `tool`.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = |p: &Path| {
        std::fs::write(p, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    exe(&dir.path().join("my-agent"));
    std::fs::create_dir(dir.path().join("bin")).expect("mkdir");
    exe(&dir.path().join("bin/tool"));
    std::fs::write(dir.path().join("notes.sh"), "echo\n").expect("write");
    dir
}

#[test]
fn bare_name_found_on_path() {
    let dir = sandbox();
    let path = dir.path().join("bin");
    let path = Some(path.as_os_str());
    assert_eq!(
        check_program("tool --flag {spec}", path, dir.path()),
        Ok(())
    );
    assert_eq!(check_program("  tool", path, dir.path()), Ok(()));
    assert_eq!(
        check_program("'tool' \"$(cat {spec})\"", path, dir.path()),
        Ok(())
    );
}

#[test]
fn bare_name_missing_names_program_and_command() {
    let dir = sandbox();
    let path = dir.path().join("bin");
    let err = check_program(
        "claude -p \"$(cat {spec})\"",
        Some(path.as_os_str()),
        dir.path(),
    )
    .expect_err("missing");
    assert_eq!(
        err.message,
        "the agent program `claude` is not installed or not on PATH (agent command `claude -p \"$(cat {spec})\"`)"
    );
    assert!(err.hint.expect("hint").contains("PATH"));
}

#[test]
fn paths_must_exist_and_be_executable() {
    let dir = sandbox();
    let empty = Some(OsStr::new(""));
    assert_eq!(check_program("./my-agent run", empty, dir.path()), Ok(()));
    assert_eq!(check_program("bin/tool", empty, dir.path()), Ok(()));
    let abs = dir.path().join("my-agent");
    assert_eq!(
        check_program(&abs.to_string_lossy(), empty, Path::new("/")),
        Ok(())
    );

    let err = check_program("./notes.sh", empty, dir.path()).expect_err("not executable");
    assert!(
        err.message
            .contains("`./notes.sh` does not exist or is not executable"),
        "{err}"
    );
    assert!(err.hint.expect("hint").contains("chmod +x"));
    let err = check_program("./nope.sh --x", empty, dir.path()).expect_err("missing");
    assert!(err.message.contains("`./nope.sh`"), "{err}");
    // A folder is not a program.
    assert!(check_program("./bin", empty, dir.path()).is_err());
}

#[test]
fn leading_assignments_are_skipped() {
    let dir = sandbox();
    let path = dir.path().join("bin");
    let path = Some(path.as_os_str());
    assert_eq!(
        check_program("FOO=1 BAR='a b' tool", path, dir.path()),
        Ok(())
    );
    let err = check_program("FOO=1 missing-agent x=y", path, dir.path()).expect_err("missing");
    assert!(err.message.contains("`missing-agent`"), "{err}");
    let err = check_program("FOO=1", path, dir.path()).expect_err("no program");
    assert!(err.message.contains("names no program"), "{err}");
    assert!(check_program("   ", path, dir.path()).is_err());
}

#[test]
fn builtins_and_expansions_pass_unchecked() {
    let dir = sandbox();
    let empty = Some(OsStr::new(""));
    for command in [
        "exec my-thing",
        "cd sub && ./run.sh",
        "$HOME/bin/agent",
        "\"$AGENT\" --x",
        "{worktree}/run.sh",
        "if true; then x; fi",
    ] {
        assert_eq!(
            check_program(command, empty, dir.path()),
            Ok(()),
            "{command}"
        );
    }
    // `sh` is a real program and is looked up.
    assert!(check_program("sh -c 'x'", empty, dir.path()).is_err());
    assert_eq!(check_program("sh -c 'x'", None, dir.path()), Ok(()));
}

#[test]
fn unbalanced_quotes_are_an_input_error() {
    let dir = sandbox();
    let err = check_program("agent 'oops", None, dir.path()).expect_err("quote");
    assert!(err.message.contains("unterminated single quote"), "{err}");
}

#[test]
fn preset_program_honours_the_bin_override() {
    let dir = sandbox();
    let claude = preset("claude-code").expect("preset");
    let bin = dir.path().join("bin");
    let err = check_preset_program(claude, None, Some(bin.as_os_str()), dir.path())
        .expect_err("no claude");
    assert_eq!(
        err.message,
        "`claude` (Claude Code) is not installed or not on PATH (agent preset `claude-code`)"
    );
    assert_eq!(
        err.hint.as_deref(),
        Some("install: npm install -g @anthropic-ai/claude-code; or set TREEFARM_CLAUDE_BIN to the program's path")
    );
    let agent = dir.path().join("my-agent");
    assert_eq!(
        check_preset_program(
            claude,
            Some(agent.as_os_str()),
            Some(bin.as_os_str()),
            dir.path()
        ),
        Ok(())
    );
    assert_eq!(
        check_preset_program(
            claude,
            Some(OsStr::new("tool")),
            Some(bin.as_os_str()),
            dir.path()
        ),
        Ok(())
    );
    let err = check_preset_program(
        claude,
        Some(OsStr::new("/nowhere/claude")),
        Some(bin.as_os_str()),
        dir.path(),
    )
    .expect_err("bad override");
    assert!(err.message.contains("from TREEFARM_CLAUDE_BIN"), "{err}");
}
