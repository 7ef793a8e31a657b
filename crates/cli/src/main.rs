//! `offsite`: the command-line tool. Parse, run, and map the result to an exit code here, in
//! one place: 0 success, 1 failure, 3 a backup finished but some files could not be read.
//! A closed stdout (`offsite ls latest | head`) is success.

mod args;
mod commands;
mod errors;
mod output;
mod password;
mod resolve;
mod units;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// How a command that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything worked.
    Success,
    /// A backup was saved but some files could not be read (each was named).
    Incomplete,
}

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    match commands::run(cli) {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Incomplete) => ExitCode::from(3),
        Err(e) if errors::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "offsite: error: {}", errors::render(&e));
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr: warnings by default, info with -v, debug with -vv (or `OFFSITE_LOG`).
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFSITE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
