//! The `treefarm` binary: parse, set up tracing, call the library, map the
//! outcome to an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = treefarm::cli::Cli::parse();
    treefarm::cli::init_tracing(&cli);
    let code = match treefarm::cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            treefarm::exit_code_for(&err)
        }
    };
    std::process::ExitCode::from(code.code())
}
