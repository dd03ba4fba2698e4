//! The command line: every subcommand and flag, with its help and default. Every flag can
//! also come from the environment variable `--help` names; this is the only module that
//! reads the environment. It describes and parses, nothing more: `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{host, origin, token};
use crate::domain::model;
use crate::service::lifecycle::Limits;
use crate::service::{accounts, dispatch};

/// backfilld serves Mage's backfills REST API from an embedded SQLite file.
#[derive(Debug, Parser)]
#[command(name = "backfilld", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, backfilld serves.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (what a bare `backfilld` does).
    Serve(ServeArgs),
    /// Load backfills and pipeline runs from a JSON file, all or nothing.
    Import(ImportArgs),
    /// Write every backfill and pipeline run as JSON that `backfilld import` reads back (one
    /// snapshot, also while a server writes the file).
    #[command(mut_arg("db", |a| a.help("The SQLite data file to export (it must exist)")))]
    Export(ExportArgs),
    /// Copy the data file, all of it as one commit left it, also while a server writes it
    /// (SQLite's online backup); the copy is a data file like any other.
    #[command(mut_arg("db", |a| a.help("The SQLite data file to copy (it must exist)")))]
    Backup(BackupArgs),
    /// Manage the OAuth tokens that `--require-auth` asks for.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the users who log in with POST /api/sessions (email and password).
    #[command(subcommand)]
    User(UserCommand),
    /// Claim runs from a server and run a command once per run date (or simulate one).
    #[command(after_help = WORKER_ENVIRONMENT)]
    Worker(WorkerArgs),
    /// Create, list, show, pause, resume, cancel, delete and run again backfills, through a
    /// server's API (docs/cli.md).
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// List, show and retry pipeline runs and print their logs, through a server's API.
    #[command(subcommand)]
    Run(RunCommand),
    /// Log in to a server and keep the session's token (and the API key) for the client
    /// commands and the worker, in a file of your own (mode 0600), one entry per server.
    Login(LoginArgs),
    /// End the session `login` kept for a server, on the server and in the file.
    Logout(LogoutArgs),
    /// Serve a demo file seeded with backfills in every state, with a simulated worker
    /// running their runs; starting again continues the same demo.
    Demo(DemoArgs),
    /// Print a shell completion script: `backfilld completions bash > /etc/bash_completion.d/backfilld`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `backfilld man > backfilld.1 && man ./backfilld.1`.
    Man,
    /// The process `backfilld worker --exec` starts to start its commands and end them with
    /// it (src/worker/keeper.rs); not run by hand.
    #[command(hide = true)]
    WorkerKeeper,
}

impl Command {
    /// The client flags of a client command (`backfill`, `run`, `login`, `logout`).
    pub fn client_args(&self) -> Option<&ClientArgs> {
        match self {
            Command::Backfill(cmd) => Some(match cmd {
                BackfillCommand::Create(a) => &a.client,
                BackfillCommand::List { client, .. } | BackfillCommand::Show { client, .. } => client,
                BackfillCommand::Pause(t) | BackfillCommand::Resume(t) | BackfillCommand::Cancel(t) => &t.client,
                BackfillCommand::Delete { target, .. } | BackfillCommand::Rerun { target, .. } => &target.client,
            }),
            Command::Run(cmd) => Some(match cmd {
                RunCommand::List { client, .. }
                | RunCommand::Show { client, .. }
                | RunCommand::Retry { client, .. } => client,
                RunCommand::Logs(a) => &a.client,
            }),
            Command::Login(a) => Some(&a.client),
            Command::Logout(a) => Some(&a.client),
            _ => None,
        }
    }
}

/// What `backfilld worker --help` says of a command's environment (`worker::plan::run_env`).
const WORKER_ENVIRONMENT: &str = "\
The command's environment (--exec), besides the worker's own (without BACKFILLD_API_KEY and BACKFILLD_TOKEN):
  BACKFILL_DS                 the run date's day, e.g. 2024-03-01
  BACKFILL_HR                 its hour, e.g. 04
  BACKFILL_EXECUTION_DATE     the run date, e.g. 2024-03-01T04:00:00+00:00
  BACKFILL_INTERVAL_START_DATETIME, BACKFILL_INTERVAL_END_DATETIME
                              the interval the run covers
  BACKFILL_INTERVAL_SECONDS   its length in seconds
  BACKFILL_INTERVAL_START_DATETIME_PREVIOUS
                              the previous run date
  BACKFILL_<NAME>             each of the backfill's variables, its name in upper case
  BACKFILL_ID, PIPELINE_RUN_ID, PIPELINE_UUID, BACKFILL_ATTEMPT
                              the backfill, the run, its pipeline and the run's attempt
Its standard input is the run's JSON. Exit status 0 completes the run, anything else fails it.
A run may be executed more than once (a lease that ran out, a retry): make the command safe to repeat.";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The demo's data file; created and seeded when missing or empty.
    #[arg(long, env = "BACKFILLD_DEMO_DB", default_value = "backfilld-demo.db")]
    pub db: PathBuf,
    /// The address to listen on (loopback: the demo needs no credentials).
    #[arg(long, env = "BACKFILLD_BIND", default_value = "127.0.0.1:6789")]
    pub bind: String,
    /// A host name clients reach the demo by, as `serve` takes it (besides IP addresses and
    /// localhost; * for any).
    #[arg(long = "allowed-host", env = "BACKFILLD_ALLOWED_HOST", value_delimiter = ',', value_name = "HOST",
        value_parser = host::parse)]
    pub allowed_hosts: Vec<String>,
    /// The most bytes all runs' logs may store together, as `serve` takes it.
    #[arg(long, env = "BACKFILLD_MAX_LOG_BYTES", default_value = "1GiB", value_parser = byte_size)]
    pub max_log_bytes: u64,
    /// An API key the demo accepts and its dashboard's page carries (the demo needs no
    /// credentials; this shows the page as a server requiring them serves it). Not a secret.
    #[arg(long, env = "BACKFILLD_DASHBOARD_API_KEY", value_name = "KEY")]
    pub dashboard_api_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("work").required(true).args(["exec", "simulate"])))]
pub struct WorkerArgs {
    /// The server to claim from.
    #[arg(long, env = "BACKFILLD_SERVER", default_value = "http://127.0.0.1:6789")]
    pub server: String,
    /// The server's API key, when it requires auth (of a comma-separated list, as `serve`
    /// takes, the first).
    #[arg(long, env = "BACKFILLD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// An OAuth token (`backfilld token create`), when the server requires auth [default: the
    /// session `backfilld login` kept for the server, with its API key when none is given].
    #[arg(long, env = "BACKFILLD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where `backfilld login` keeps credentials: $XDG_CONFIG_HOME, else ~/.config.
    #[arg(skip = config_home())]
    pub config_home: Option<PathBuf>,
    /// The name the worker claims under [default: host name and process id].
    #[arg(long)]
    pub name: Option<String>,
    /// How many runs at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub concurrency: u64,
    /// Claim only runs of this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Claim only runs of this backfill.
    #[arg(long)]
    pub backfill: Option<i64>,
    /// The lease each claim and heartbeat asks for (the worker heartbeats every third of it).
    #[arg(long, default_value = "60s")]
    pub lease: String,
    /// Run `/bin/sh -c CMD` for each run, with the run's variables in its environment and the run's
    /// JSON on standard input; exit status 0 completes the run, anything else fails it.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Kill a command, with every process it started, once it has run this long, and fail the
    /// run.
    #[arg(long, conflicts_with = "simulate")]
    pub timeout: Option<String>,
    /// Run no command: each run waits a time from --duration, then completes or fails.
    #[arg(long)]
    pub simulate: bool,
    /// A simulated run's duration: LOW..HIGH (e.g. 2s..10s) or one duration.
    #[arg(long, default_value = "100ms..1s", conflicts_with = "exec")]
    pub duration: String,
    /// The share of simulated runs that fail: 0 to 1, or a percentage.
    #[arg(long, default_value = "0", conflicts_with = "exec")]
    pub fail_rate: String,
    /// Makes each simulated outcome a function of the seed, the backfill, the date and the
    /// attempt alone: the same seed on the same data gives the same outcomes.
    #[arg(long, conflicts_with = "exec")]
    pub seed: Option<u64>,
    /// Exit once nothing is left to claim, nothing is held and nothing in scope runs; the exit
    /// status is 1 if a run it executed failed.
    #[arg(long)]
    pub until_idle: bool,
    /// After Ctrl-C or SIGTERM, how long running commands may still take before they are
    /// killed (their leases then run out); a second Ctrl-C stops at once.
    #[arg(long, default_value = "30s")]
    pub grace: String,
    /// Do not show the commands' output on standard error (it is still sent to the server,
    /// as each run's log).
    #[arg(long, short)]
    pub quiet: bool,
}

/// How a client command reaches the server: the worker's flags and variables, and a login's
/// credentials (docs/cli.md) for what they leave out.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server.
    #[arg(long, env = "BACKFILLD_SERVER", default_value = "http://127.0.0.1:6789")]
    pub server: String,
    /// The server's API key, when it requires auth (of a comma-separated list, the first)
    /// [default: the one `backfilld login` kept for the server].
    #[arg(long, env = "BACKFILLD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// An OAuth token, when the server requires auth [default: the session `backfilld login`
    /// kept for the server].
    #[arg(long, env = "BACKFILLD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's records as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Say what the command does on standard error: which server, and where its key and
    /// token came from.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Where `backfilld login` keeps credentials: $XDG_CONFIG_HOME, else ~/.config.
    #[arg(skip = config_home())]
    pub config_home: Option<PathBuf>,
}

/// The user's config folder: `$XDG_CONFIG_HOME` when set and absolute (as the XDG base
/// directory spec says), else `$HOME/.config`.
pub fn config_home() -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(std::env::var_os("XDG_CONFIG_HOME"))
        .or_else(|| absolute(std::env::var_os("HOME")).map(|h| h.join(".config")))
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Create a backfill and start it (Airflow's `backfill create`): one run per date from
    /// --from to --to, both included, every --every.
    Create(CreateArgs),
    /// List backfills, newest first, with their runs' progress.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only backfills in this status: initial, running, completed, failed, cancelled, or
        /// new (never started).
        #[arg(long, value_parser = backfill_status)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
    },
    /// Show a backfill: its fields, its runs counted by status, and its failed dates with
    /// their errors.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The backfill's id.
        id: i64,
    },
    /// Pause a backfill: no more of its runs are handed out; those running finish.
    Pause(IdArgs),
    /// Resume a paused backfill.
    Resume(IdArgs),
    /// Cancel a backfill and every run of it not finished yet.
    Cancel(IdArgs),
    /// Delete a backfill (its runs stay, unlinked); asks first on a terminal.
    Delete {
        #[command(flatten)]
        target: IdArgs,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Run a started backfill again: its cancelled dates, and by --reprocess its failed, or
    /// failed and completed, dates too. Starts one created with --no-start.
    Rerun {
        #[command(flatten)]
        target: IdArgs,
        /// Which finished dates run again besides the cancelled ones: none, failed or
        /// completed (failed and completed) [default: the backfill's reprocess_behavior, which is
        /// failed unless set].
        #[arg(long, value_parser = ["none", "failed", "completed"])]
        reprocess: Option<String>,
    },
}

/// A backfill status to filter by, or `new` for never started.
fn backfill_status(s: &str) -> Result<String, String> {
    if s == "new" {
        return Ok(s.into());
    }
    s.parse::<model::BackfillStatus>().map(|st| st.as_str().to_string())
}

#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The backfill's id.
    pub id: i64,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The pipeline whose runs these are.
    #[arg(long)]
    pub pipeline: String,
    /// The first run date: 2024-01-01, 2024-01-01T06:00:00Z, or as the API takes dates.
    #[arg(long)]
    pub from: String,
    /// The last possible run date (included when a step lands on it).
    #[arg(long)]
    pub to: String,
    /// The step between run dates: a number and a unit, 30s, 15m, 4h, 1d, 1w, 1mo or 1y.
    #[arg(long, value_name = "INTERVAL")]
    pub every: String,
    /// The backfill's name [default: PIPELINE FROM..TO every INTERVAL].
    #[arg(long)]
    pub name: Option<String>,
    /// Variables every run gets, a JSON object: '{"region": "eu"}'.
    #[arg(long, value_name = "JSON")]
    pub variables: Option<String>,
    /// At most this many of its runs running at once (settings.pipeline_run_limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_active_runs: Option<u64>,
    /// Hand out the newest dates first (settings.run_backwards).
    #[arg(long)]
    pub run_backwards: bool,
    /// Halt the backfill at its first failed date: no more of its dates are handed out until
    /// it is run again (settings.stop_on_failure). Without it, a failed date stops no other.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Create nothing: print how many runs it would make, and their dates.
    #[arg(long)]
    pub dry_run: bool,
    /// Create the backfill without starting it.
    #[arg(long, conflicts_with = "dry_run")]
    pub no_start: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List a backfill's runs, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The backfill whose runs to list.
        #[arg(long)]
        backfill: i64,
        /// Only runs in this status: initial, running, completed, failed or cancelled.
        #[arg(long, value_parser = run_status)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
    },
    /// Show a run: its date, status, attempts, worker, times and error.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The run's id.
        id: i64,
    },
    /// Run a run's date again: a new run of it, waiting for a worker.
    Retry {
        #[command(flatten)]
        client: ClientArgs,
        /// The run's id.
        id: i64,
    },
    /// Print a run's log: its command's output as the worker sent it (standard output and
    /// error as one stream; of a long one, the first and last 512 KiB around a line saying
    /// how much was cut). Exit status 0, 1 when the server refuses (no such run), 2 when it
    /// cannot be reached.
    Logs(RunLogsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunLogsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run's id.
    pub id: i64,
    /// Keep printing as the log grows, until the run has finished.
    #[arg(long, short)]
    pub follow: bool,
}

fn run_status(s: &str) -> Result<String, String> {
    s.parse::<model::RunStatus>().map(|st| st.as_str().to_string())
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("who").args(["email", "username"])))]
pub struct LoginArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Log in with this email [default: asked for on a terminal].
    #[arg(long)]
    pub email: Option<String>,
    /// Log in with this username instead of an email.
    #[arg(long)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The SQLite data file; created, with its folder, when missing.
    #[arg(long, env = "BACKFILLD_DB", default_value = "backfilld.db")]
    pub db: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The address to listen on. A non-loopback address implies --require-auth.
    #[arg(long, env = "BACKFILLD_BIND", default_value = "127.0.0.1:6789")]
    pub bind: String,
    /// An API key that clients may present (X-API-KEY or api_key). Repeat for several; the
    /// environment variable takes a comma-separated list.
    #[arg(long = "api-key", env = "BACKFILLD_API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// The API key the dashboard's page carries (in a <meta> of the page the server serves),
    /// so that users log in with only their email and password; one of the --api-key keys
    /// [default: the first]. Not a secret: anyone who loads the page reads it (Mage ships its
    /// key inside its frontend too); what protects the API is the token a login gives.
    #[arg(long, env = "BACKFILLD_DASHBOARD_API_KEY", value_name = "KEY")]
    pub dashboard_api_key: Option<String>,
    /// An origin (scheme://host[:port]) whose web pages may call the API from a browser
    /// (CORS); repeat for several, or * for any. Off unless given; the environment variable
    /// takes a comma-separated list.
    #[arg(long = "cors-origin", env = "BACKFILLD_CORS_ORIGIN", value_delimiter = ',', value_name = "ORIGIN",
        value_parser = origin::parse)]
    pub cors_origins: Vec<String>,
    /// A host name clients reach the server by, besides IP addresses and localhost (a
    /// request naming another in `Host` is a 403, against DNS
    /// rebinding); `.example.com` for it and the names under it, * for any. Repeat for
    /// several; the environment variable takes a comma-separated list. A server bound to an
    /// address that is not loopback answers to any name unless given.
    #[arg(long = "allowed-host", env = "BACKFILLD_ALLOWED_HOST", value_delimiter = ',', value_name = "HOST",
        value_parser = host::parse)]
    pub allowed_hosts: Vec<String>,
    /// How long a login's session (POST /api/sessions) lasts: 30d, 12h, 90m, 45s or 2w.
    #[arg(long, env = "BACKFILLD_SESSION_LIFETIME", default_value = "30d", value_parser = token::parse_lifetime)]
    pub session_lifetime: i64,
    /// Require an API key and an OAuth token on every /api request. The environment variable
    /// takes true/1/yes/on or false/0/no/off, as the API's flags do.
    #[arg(long, env = "BACKFILLD_REQUIRE_AUTH", value_parser = boolish)]
    pub require_auth: bool,
    /// The most pipeline runs that starting one backfill may create; a larger backfill is
    /// refused with a 400 before anything is written.
    #[arg(long, env = "BACKFILLD_MAX_RUNS", default_value_t = 100_000)]
    pub max_runs: u64,
    /// Seconds a client has, after its request headers, to send the whole body; a slower one
    /// is answered 408 and disconnected.
    #[arg(long, env = "BACKFILLD_BODY_TIMEOUT", default_value_t = BODY_TIMEOUT_SECS, value_parser = body_timeout)]
    pub body_timeout: f64,
    /// The most connections served at once; more wait to be accepted. Each may cost the
    /// server up to about 170 KiB before its request is read. Near the cap, idle
    /// connections are closed to make room for new ones, and one address cannot take the
    /// last tenth of the places.
    #[arg(long, env = "BACKFILLD_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// The shortest lease a claim may ask for, in seconds (the protocol's floor is 5; lower
    /// it only for tests and demos that watch leases expire).
    #[arg(long, env = "BACKFILLD_MIN_LEASE_SECONDS", default_value_t = 5,
        value_parser = clap::value_parser!(i64).range(1..=5))]
    pub min_lease_seconds: i64,
    /// How often, in milliseconds, the server looks for leases that ran out.
    #[arg(long, env = "BACKFILLD_LEASE_CHECK_MS", default_value_t = LEASE_CHECK_MS,
        value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub lease_check_ms: u64,
    /// How log lines are written: text, or json (one object per line, for log shippers).
    #[arg(long, env = "BACKFILLD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// HTTP worker threads [default: the number of CPUs].
    #[arg(long, env = "BACKFILLD_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// The most bytes all runs' logs may store together (e.g. 512MiB, 2GiB, or bytes); past
    /// it, the logs of the oldest finished runs are deleted. Each run's log keeps at most
    /// about 1 MiB: its first and last bytes.
    #[arg(long, env = "BACKFILLD_MAX_LOG_BYTES", default_value = "1GiB", value_parser = byte_size)]
    pub max_log_bytes: u64,
}

/// A size in bytes: a whole number, optionally with a unit: B, KiB, MiB, GiB, TiB (powers of
/// 1024), or KB, MB, GB, TB (of 1000).
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("'{s}' is not a size: bytes, or a number with KiB, MiB, GiB (or KB, MB, GB)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("'{s}' is not a size: bytes, or a number with KiB, MiB, GiB (or KB, MB, GB)"))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`, for people.
    #[default]
    Text,
    /// One JSON object per line, for log shippers: `time`, `level`, `target`, `message`, and
    /// the line's fields (an access line's `request_id`, `peer`, `request`, `status`,
    /// `bytes`, `ms`).
    Json,
}

/// `--body-timeout` and `--lease-check-ms` unless given.
const BODY_TIMEOUT_SECS: f64 = 5.0;
const LEASE_CHECK_MS: u64 = 1000;

/// `--max-connections` unless given. A connection can cost the server up to about 170 KiB
/// before any of backfilld's code has seen its request (actix-http reads up to 128 KiB ahead
/// into its buffer, and holds up to 32 KiB more of a body nobody reads yet, whatever the body
/// budget), so 256 bound what connections alone can cost to about 43 MiB, which keeps a
/// server under an attack of stalled bodies (connections plus the body budget) well inside a
/// small machine's memory (the bench measures it: docs/performance.md).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

impl ServeArgs {
    /// `serve`'s defaults, unauthenticated, on `bind` over `db`, whatever the environment
    /// says: what `backfilld demo` and the bench serve.
    pub fn local(db: PathBuf, bind: String) -> ServeArgs {
        ServeArgs {
            db: DbArg { db },
            bind,
            api_keys: vec![],
            dashboard_api_key: None,
            cors_origins: vec![],
            allowed_hosts: vec![],
            session_lifetime: accounts::DEFAULT_SESSION_SECONDS,
            require_auth: false,
            max_runs: Limits::default().max_runs,
            body_timeout: BODY_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_lease_seconds: dispatch::MIN_LEASE_SECONDS,
            lease_check_ms: LEASE_CHECK_MS,
            log_format: LogFormat::Text,
            workers: None,
            max_log_bytes: crate::api::DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// A boolean environment variable, spelt as the API's flags are (`model::flag_value`).
fn boolish(s: &str) -> Result<bool, String> {
    model::flag_value(s).ok_or_else(|| format!("'{s}' is not true/1/yes/on or false/0/no/off"))
}

fn body_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds from 0.1 to 3600")),
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The JSON file to load, or - for standard input.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The JSON file to write, which must not exist; - (or nothing) for standard output.
    #[arg(default_value = "-")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The copy to write, which must not exist.
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is asked for on a terminal (twice) or read from standard
    /// input's first line otherwise; never from a flag, which would show in `ps` and the
    /// shell's history.
    Create {
        #[command(flatten)]
        db: DbArg,
        /// The user's email, what they log in with.
        #[arg(long)]
        email: String,
        /// The name Mage's clients show, which may also log in [default: the email's part
        /// before @].
        #[arg(long)]
        username: Option<String>,
    },
    /// List the users: email, username, when made, live sessions.
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Delete the user EMAIL; their sessions end at once.
    Delete {
        #[command(flatten)]
        db: DbArg,
        /// The user's email.
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new token and print it (alone, on standard output). Only its hash is stored.
    Create {
        #[command(flatten)]
        db: DbArg,
        /// A unique name to list and revoke the token by.
        #[arg(long)]
        name: String,
        /// How long the token is valid: 30d, 12h, 90m, 45s or 2w. Without it, it never expires.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the tokens by name, with when they were made and when they expire.
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Delete the token NAME; requests that present it are refused from then on.
    Revoke {
        #[command(flatten)]
        db: DbArg,
        /// The token's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_invocation_serves_with_the_defaults() {
        let cli = Cli::try_parse_from(["backfilld"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.bind, "127.0.0.1:6789");
        assert_eq!(cli.serve.db.db, PathBuf::from("backfilld.db"));
        let cli = Cli::try_parse_from(["backfilld", "serve", "--api-key", "a", "--api-key", "b"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
        assert_eq!(args.api_keys, ["a", "b"]);
    }

    #[test]
    fn a_local_server_has_serve_s_defaults() {
        let cli = Cli::try_parse_from(["backfilld", "serve", "--db", "x.db", "--bind", "127.0.0.1:1"]).unwrap();
        let Some(Command::Serve(parsed)) = cli.command else { panic!("not serve") };
        assert_eq!(format!("{parsed:?}"), format!("{:?}", ServeArgs::local("x.db".into(), "127.0.0.1:1".into())));
    }

    #[test]
    fn require_auth_takes_the_api_s_flag_spellings() {
        for (v, want) in
            [("1", true), ("yes", true), ("ON", true), ("true", true), ("0", false), ("no", false), ("off", false)]
        {
            assert_eq!(boolish(v), Ok(want), "{v}");
        }
        assert!(boolish("maybe").unwrap_err().contains("true/1/yes/on"));
        let cli = Cli::try_parse_from(["backfilld", "--require-auth"]).unwrap();
        assert!(cli.serve.require_auth);
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(byte_size(" 2 gb "), Ok(2_000_000_000));
        assert_eq!(byte_size("1000"), Ok(1000));
        assert_eq!(byte_size("0"), Ok(0));
        for bad in ["", "MiB", "1.5GiB", "-1", "1 parsec", "99999999999TiB"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["backfilld", "serve", "--max-log-bytes", "64MiB"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
        assert_eq!(args.max_log_bytes, 64 << 20);
    }

    #[test]
    fn a_worker_needs_work_and_one_kind_of_it() {
        assert!(Cli::try_parse_from(["backfilld", "worker"]).is_err());
        assert!(Cli::try_parse_from(["backfilld", "worker", "--exec", "true", "--simulate"]).is_err());
        assert!(Cli::try_parse_from(["backfilld", "worker", "--exec", "true", "--seed", "7"]).is_err());
        assert!(Cli::try_parse_from(["backfilld", "worker", "--simulate", "--timeout", "1s"]).is_err());
        let cli = Cli::try_parse_from(["backfilld", "worker", "--simulate", "--seed", "7"]).unwrap();
        let Some(Command::Worker(args)) = cli.command else { panic!("not worker") };
        assert_eq!((args.seed, args.concurrency, args.lease.as_str()), (Some(7), 1, "60s"));
    }

    /// `worker --help` names every variable a command gets for a run (`plan::run_env`), so
    /// that the list cannot fall behind the code.
    #[test]
    fn the_worker_s_help_lists_every_variable_a_command_gets() {
        let mut cli = Cli::command();
        let help = cli.find_subcommand_mut("worker").unwrap().render_long_help().to_string();
        let dates = crate::domain::schedule::Schedule::new(
            time::macros::datetime!(2024-03-01 00:00),
            time::macros::datetime!(2024-03-02 00:00),
            crate::domain::schedule::IntervalType::Hour,
            4,
        )
        .unwrap()
        .run_dates(1, 1);
        let run = serde_json::json!({
            "id": 9, "backfill_id": 3, "pipeline_uuid": "p", "attempt": 1,
            "variables": dates[0].variables(),
        });
        for (name, _) in crate::worker::plan::run_env(&run) {
            assert!(help.contains(&name), "{name} is not in worker --help:\n{help}");
        }
        assert!(help.contains("BACKFILL_<NAME>") && help.contains("safe to repeat"), "{help}");
    }
}
