//! The command line: clap definitions and one function per command.

mod args;
pub(crate) mod check;
pub(crate) mod commands;
mod context;
mod demo;
mod graph;
mod manual;
mod mcp;
pub(crate) mod prune;
pub(crate) mod report;
pub(crate) mod run;
mod slurm;
pub mod split;

pub use args::{Cli, Command, Format, RunArgs, RunCommand, Shell, SplitArgs};
pub use context::Ctx;

use crate::error::ExitCode;

/// Sets up `tracing` on stderr: `TREEFARM_LOG` wins, else `-v`/`-q`.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("TREEFARM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Runs a parsed command line; output goes to the process's stdout/stderr.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let start = match &cli.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    match &cli.command {
        Command::Init { agent } => commands::init(&start, agent.as_deref(), &mut stderr),
        Command::Check {
            ids,
            json,
            format,
            strict,
            explain,
        } => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            let opts = check::CheckOptions {
                ids: ids.clone(),
                json: *json || *format == Some(Format::Json),
                strict: *strict,
                explain: explain.clone(),
            };
            match format {
                Some(f @ (Format::Dot | Format::Mermaid)) if explain.is_none() => {
                    graph::check(&ctx, &opts, *f, &mut stdout, &mut stderr)
                }
                _ => check::check(&ctx, &opts, &mut stdout, &mut stderr),
            }
        }
        Command::Plan {
            ids,
            instances,
            json,
            format,
        } => {
            let mut ctx = Ctx::load(&start, cli.config.as_deref())?;
            if let Some(n) = instances {
                ctx.config.instances = *n;
            }
            match format {
                Some(f @ (Format::Dot | Format::Mermaid)) => {
                    graph::plan(&ctx, ids, *f, &mut stdout, &mut stderr)
                }
                _ => {
                    let json = *json || *format == Some(Format::Json);
                    commands::plan(&ctx, ids, json, &mut stdout, &mut stderr)
                }
            }
        }
        Command::Run(RunCommand { args, from }) => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            match from {
                Some(file) => split::run_from(ctx, args, file, cli.quiet, &mut stdout, &mut stderr),
                None => run::run(ctx, args, cli.quiet),
            }
        }
        Command::Split(args) => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            split::split(ctx, args, cli.quiet, &mut stdout, &mut stderr)
        }
        Command::Status {
            run_id,
            json,
            watch,
        } => {
            let ctx = Ctx::load_repo_only(&start)?;
            commands::status(&ctx, run_id.as_deref(), *json, *watch, &mut stdout)
        }
        Command::Merge {
            run_id,
            target,
            gate,
            json,
        } => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            run::merge(
                ctx,
                run_id.as_deref(),
                target.clone(),
                gate.clone(),
                *json,
                cli.quiet,
            )
        }
        Command::Resume {
            run_id,
            json,
            isolation,
            max_cost,
            max_tokens,
        } => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            let budget = run::BudgetFlags {
                max_cost: *max_cost,
                max_tokens: *max_tokens,
            };
            run::resume(ctx, run_id.as_deref(), *json, cli.quiet, *isolation, budget)
        }
        Command::Prune {
            dry_run,
            all,
            force,
        } => {
            let ctx = Ctx::load(&start, cli.config.as_deref())?;
            prune::prune(&ctx, *dry_run, *all, *force, &mut stderr)
        }
        Command::Demo {
            keep,
            keep_conflict,
        } => {
            let conflicts = if *keep_conflict {
                demo::ConflictPolicy::Keep
            } else {
                demo::ConflictPolicy::HandBack
            };
            demo::demo(*keep, conflicts, &mut stdout, &mut stderr)
        }
        Command::Report { run_id, html, open } => {
            let ctx = match Ctx::load(&start, cli.config.as_deref()) {
                Ok(ctx) => ctx,
                // The report needs the journal, not a valid config.
                Err(_) => Ctx::load_repo_only(&start)?,
            };
            report::report(&ctx, run_id.as_deref(), html.as_deref(), *open, &mut stderr)
        }
        Command::Mcp { print_config } => mcp::mcp(
            &start,
            cli.config.as_deref(),
            *print_config,
            &mut stdout,
            &mut stderr,
        ),
        Command::AgentExec { job } => {
            let code = crate::runner::agent_exec(job)?;
            // The exit file decides the attempt; the job's own status only
            // says whether the agent succeeded.
            Ok(if code == 0 {
                ExitCode::Success
            } else {
                ExitCode::Failed
            })
        }
        Command::Completions { shell } => manual::completions(*shell, &mut stdout),
        Command::Man { dir } => manual::man(dir.as_deref(), &mut stdout, &mut stderr),
    }
}
