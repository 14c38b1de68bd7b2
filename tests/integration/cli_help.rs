//! The CLI conventions: `--help` of every command (insta snapshots), a
//! description for every argument and flag, shell completions and man pages
//! generated from the same definitions, and output lines that end with a
//! newline.

use crate::common;

use std::process::Command;

use clap::CommandFactory;
use common::{stderr, stdout, TestRepo};
use treefarm::cli::Cli;

fn treefarm(args: &[&str]) -> std::process::Output {
    let home = tempfile::TempDir::new().expect("home");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treefarm"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home.path())
        .args(args);
    common::isolated_env(&mut cmd, home.path());
    cmd.output().expect("run treefarm")
}

/// The commands users see; a hidden one (`agent-exec`, the entry point of
/// a Slurm job) is in no help and no man page.
fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn help_of_every_command_matches_its_snapshot() {
    let top = treefarm(&["--help"]);
    assert!(top.status.success());
    insta::assert_snapshot!("help", stdout(&top));
    for name in subcommands() {
        let out = treefarm(&[&name, "--help"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        insta::assert_snapshot!(format!("help_{name}"), stdout(&out));
    }
}

#[test]
fn every_argument_and_flag_has_a_description() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd.get_about().is_none() && !path.is_empty() {
            missing.push(format!("{path} (the command)"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "", &mut missing);
    assert!(missing.is_empty(), "no description: {missing:?}");
}

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = treefarm(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.ends_with('\n'), "{shell}");
        for name in subcommands() {
            assert!(script.contains(&name), "{shell} completes `{name}`");
        }
        assert!(script.contains("instances"), "{shell} completes flags");
    }
    // The bash script is valid bash.
    let bash = stdout(&treefarm(&["completions", "bash"]));
    let dir = tempfile::TempDir::new().expect("tmp");
    let file = dir.path().join("treefarm.bash");
    std::fs::write(&file, &bash).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // A bad shell is a usage error.
    assert_eq!(treefarm(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_are_generated() {
    let out = treefarm(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH treefarm 1"), "{page}");
    for name in subcommands() {
        assert!(page.contains(&name), "the page lists `{name}`");
    }
    let dir = tempfile::TempDir::new().expect("tmp");
    let out = treefarm(&["man", "--dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names = vec!["treefarm.1".to_string()];
    names.extend(subcommands().iter().map(|n| format!("treefarm-{n}.1")));
    for name in &names {
        let text = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let title = name.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {title} 1")), "{name}:\n{text}");
    }
    assert_eq!(stderr(&out).lines().count(), names.len());
    // `man` itself renders it, where installed.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("treefarm-report.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output();
    match rendered {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("--html"), "{text}");
        }
        _ => println!("SKIPPED: `man -l` is not available to render the page"),
    }
}

#[test]
fn every_line_printed_ends_with_a_newline() {
    let repo = TestRepo::with_files(&[("src/a.rs", "// a\n"), ("src/b.rs", "// b\n")]);
    repo.write_spec("020", "a", "title: A\nfiles: [src/a.rs]\n", "");
    repo.write_spec("021", "b", "title: B\nfiles: [src/b.rs]\n", "");
    repo.write_spec("022", "ab", "title: AB\nfiles: [src/a.rs]\n", "");
    repo.commit_all("specs");
    let cases: &[&[&str]] = &[
        &["check"],
        &["check", "020", "021"],
        &["check", "--json"],
        &["check", "--format", "dot"],
        &["check", "--format", "mermaid"],
        &["plan"],
        &["plan", "--json"],
        &["plan", "--format", "dot"],
        &["plan", "--format", "mermaid"],
        &["status"],
        &["report"],
        &["--help"],
        &["check", "nope"],
    ];
    for args in cases {
        let out = repo.tf(args);
        for (stream, text) in [("stdout", stdout(&out)), ("stderr", stderr(&out))] {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{args:?}: {stream} does not end with a newline: {text:?}"
            );
        }
    }
    // Independent specs say so on stderr.
    let out = repo.tf(&["check", "020", "021"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("independent"), "{}", stderr(&out));
    let out = repo.tf(&["check", "--format", "dot", "020", "021"]);
    assert_eq!(stderr(&out), "all 2 spec(s) are independent\n");
}
