//! The `backfilld` binary: parse the command line and run it (`commands::run`).

use std::process::ExitCode;

use backfilld::cli::Cli;
use clap::Parser;

fn main() -> ExitCode {
    backfilld::commands::run(Cli::parse())
}
