//! The `backfilld` binary: parse the command line, start logging, run the subcommand.

use std::process::ExitCode;

use backfilld::cli::{Cli, Command};
use backfilld::commands;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        None => cli.serve.log_format,
        Some(Command::Serve(args)) => args.log_format,
        Some(_) => backfilld::logging::Format::Text,
    };
    backfilld::logging::init(log_format);
    let outcome = match cli.command {
        None => commands::serve(cli.serve).map(|()| String::new()),
        Some(Command::Serve(args)) => commands::serve(args).map(|()| String::new()),
        Some(Command::Import(args)) => commands::import(args),
        Some(Command::Export(args)) => commands::export(args),
        Some(Command::Backup(args)) => commands::backup(args),
        Some(Command::Token(cmd)) => commands::token(cmd),
        Some(Command::User(cmd)) => commands::user(cmd),
        Some(Command::Worker(args)) => return ExitCode::from(commands::worker(args)),
        Some(Command::Demo(args)) => commands::demo(args).map(|()| String::new()),
        Some(Command::Completions { shell }) => commands::completions(shell),
        Some(Command::Man) => commands::man(),
    };
    match outcome {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backfilld: {e}");
            ExitCode::FAILURE
        }
    }
}
