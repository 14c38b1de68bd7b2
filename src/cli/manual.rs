//! `treefarm completions SHELL` and `treefarm man`: shell completion scripts
//! (clap_complete) and roff man pages (clap_mangen), generated from the same
//! clap definitions as `--help`.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::args::{Cli, Shell};
use crate::error::ExitCode;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, &name, &mut buf)
        }
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, &name, &mut buf),
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, &name, &mut buf)
        }
        Shell::Powershell => {
            clap_complete::generate(clap_complete::Shell::PowerShell, &mut cmd, &name, &mut buf)
        }
    }
    if !buf.ends_with(b"\n") {
        buf.push(b'\n');
    }
    out.write_all(&buf)?;
    Ok(ExitCode::Success)
}

/// Writes the `treefarm(1)` page to `out`, or with `dir` every page —
/// `treefarm.1` and `treefarm-<command>.1` — into that folder.
pub fn man(
    dir: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        out.write_all(&buf)?;
        return Ok(ExitCode::Success);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to create `{}`", dir.display()))?;
    let mut pages = vec![("treefarm.1".to_string(), cmd.clone())];
    // A hidden command (`agent-exec`, run by Slurm jobs) gets no page.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("treefarm-{}", sub.get_name());
        pages.push((format!("{name}.1"), sub.clone().name(name)));
    }
    for (file, page) in pages {
        let path = dir.join(&file);
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        writeln!(err, "wrote {}", path.display())?;
    }
    Ok(ExitCode::Success)
}
