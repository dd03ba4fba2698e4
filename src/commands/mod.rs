//! What each subcommand does: `serve` (the server), `demo` (a seeded server with a simulated
//! worker), `worker` (the HTTP client that runs runs), `data` (import, export, backup),
//! `accounts` (tokens and users), the API's clients (`backfill`, `run`, `login` and `logout`,
//! sharing `client`), `manual` (completions and the manual page), and the log's
//! set-up (`logging`).
//!
//! The top of the house: it parses nothing (that is `cli`'s) and holds no logic of its own
//! beyond turning flags into the settings of the layers below, calling them, and saying what
//! happened in one line. A server is started only through the API's front door
//! (`api::AppState::open`, `api::run`, `api::close`); the worker and the demo's driver reach
//! the server over HTTP alone.

mod accounts;
mod backfill;
mod client;
mod data;
pub mod demo;
pub mod logging;
mod login;
mod manual;
mod run;
mod run_logs;
mod serve;
mod worker;

/// The server's and the worker's commands, which the bench also runs in processes of its own.
pub use serve::serve;
pub use worker::worker;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::{api, db, service};

/// Why a command failed. Each says, in one line, what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--bind {bind}: not an address to listen on: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("cannot listen on {bind}: {source}")]
    Listen { bind: String, source: std::io::Error },
    #[error(
        "cannot listen on {bind}: the address is already in use. Mage serves on port 6789 too, so Mage (or \
         another backfilld, or another server) may hold it: stop it, or pick another port with --bind \
         127.0.0.1:PORT (or BACKFILLD_BIND=127.0.0.1:PORT)"
    )]
    PortInUse { bind: String },
    #[error(
        "--bind {bind}: expected HOST:PORT, e.g. 127.0.0.1:{port} (this machine only) or 0.0.0.0:{port} (every \
         interface, which requires auth)"
    )]
    BarePort { bind: String, port: String },
    #[error(
        "authentication is required ({why}) but no API key is configured: pass --api-key KEY (or set \
         BACKFILLD_API_KEY=KEY), and create a token with `backfilld token create --name NAME`"
    )]
    NoApiKey { why: &'static str },
    #[error(
        "API key number {position} of --api-key / BACKFILLD_API_KEY is blank: a blank key would let anyone \
         in; remove it"
    )]
    BlankApiKey { position: usize },
    #[error(transparent)]
    Open(#[from] db::OpenError),
    #[error(transparent)]
    Start(#[from] api::StartError),
    #[error("cannot read {what}: {source}")]
    Read { what: String, source: std::io::Error },
    #[error("{file}: nothing was imported: {source}")]
    Import { file: PathBuf, source: crate::data::import::ImportError },
    #[error("{0}: no such data file (--db names the file to read, which this command does not create)")]
    NoDataFile(PathBuf),
    #[error("{out}: the export stopped: {source}")]
    Export { out: String, source: crate::data::export::ExportError },
    #[error(transparent)]
    Backup(#[from] crate::data::backup::BackupError),
    #[error("--name must not be blank")]
    BlankName,
    #[error("--expires-in {0}")]
    Lifetime(String),
    #[error("cannot get randomness from the system: {0}")]
    Random(getrandom::Error),
    #[error("{what}: {}", describe_db_error(source))]
    Db { what: &'static str, source: rusqlite::Error },
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
    /// A service refused (a taken name, no such user): its own message.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// A service's failure: its database errors said with `what`, any other in its own words.
    fn from_service(what: &'static str) -> impl FnOnce(service::Error) -> Error {
        move |e| match e {
            service::Error::Db(source) => Error::Db { what, source },
            other => Error::Refused(other.to_string()),
        }
    }
}

/// SQLite's "database is locked", said with what it means for a command.
fn describe_db_error(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            "the data file stayed locked by another process (a server writing, or another command) for a whole \
             minute; try again when it is less busy"
                .into()
        }
        _ => e.to_string(),
    }
}

/// Runs the command line's subcommand (serving when there is none) with the log set up,
/// prints what it has to say, and gives the process's exit status.
pub fn run(cli: Cli) -> ExitCode {
    let log = match &cli.command {
        None => logging::Setup::server(cli.serve.log_format),
        Some(Command::Serve(args)) => logging::Setup::server(args.log_format),
        Some(Command::Demo(_)) => logging::Setup::demo(),
        // A client command says only what it prints, unless -v asks where it went and with
        // which credentials.
        Some(Command::Backfill(_) | Command::Run(_) | Command::Login(_) | Command::Logout(_)) => {
            logging::Setup::client(cli.command.as_ref().and_then(Command::client_args).is_some_and(|c| c.verbose))
        }
        Some(_) => logging::Setup::server(logging::Format::Text),
    };
    logging::init(log);
    let outcome = match cli.command {
        None => serve::serve(cli.serve).map(|()| String::new()),
        Some(Command::Serve(args)) => serve::serve(args).map(|()| String::new()),
        Some(Command::Import(args)) => data::import(args),
        Some(Command::Export(args)) => data::export(args),
        Some(Command::Backup(args)) => data::backup(args),
        Some(Command::Token(cmd)) => accounts::token(cmd),
        Some(Command::User(cmd)) => accounts::user(cmd),
        Some(Command::Worker(args)) => return ExitCode::from(worker::worker(args)),
        Some(Command::Backfill(cmd)) => return ExitCode::from(backfill::backfill(cmd)),
        Some(Command::Run(cmd)) => return ExitCode::from(run::run(cmd)),
        Some(Command::Login(args)) => return ExitCode::from(login::login(args)),
        Some(Command::Logout(args)) => return ExitCode::from(login::logout(args)),
        Some(Command::Demo(args)) => demo::demo(args).map(|()| String::new()),
        Some(Command::Completions { shell }) => manual::completions(shell),
        Some(Command::Man) => manual::man(),
        Some(Command::WorkerKeeper) => return ExitCode::from(crate::worker::keeper::keeper_main()),
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
