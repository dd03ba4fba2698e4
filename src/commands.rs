//! What each subcommand does, for `main.rs` to call. Each returns what to print on standard
//! output, or an `Error` whose one line says what went wrong and what to do; the caller
//! prints it and exits non-zero.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::body::BodyLimits;
use crate::cli::{BackupArgs, DemoArgs, ExportArgs, ImportArgs, ServeArgs, TokenCommand, UserCommand, WorkerArgs};
use crate::store::tokens::TokenRecord;
use crate::{backup, datetime, db, export, import, store, token, AppState, AuthConfig};

/// Why a command failed.
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
    #[error("cannot read {what}: {source}")]
    Read { what: String, source: std::io::Error },
    #[error("{file}: nothing was imported: {source}")]
    Import { file: PathBuf, source: import::ImportError },
    #[error("{0}: no such data file (--db names the file to read, which this command does not create)")]
    NoDataFile(PathBuf),
    #[error("{0} exists already; export never overwrites a file: remove it, or name another")]
    OutputExists(PathBuf),
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("{out}: the export stopped: {source}")]
    Export { out: String, source: export::ExportError },
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    #[error("--name must not be blank")]
    BlankName,
    #[error("--expires-in {0}")]
    Lifetime(String),
    #[error("cannot get randomness from the system: {0}")]
    Random(getrandom::Error),
    #[error("a token named '{0}' exists already; revoke it first or pick another name")]
    TokenExists(String),
    #[error("no token is named '{0}'")]
    NoSuchToken(String),
    #[error("{what}: {}", describe_db_error(source))]
    Db { what: &'static str, source: rusqlite::Error },
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    User(String),
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

fn db_error(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Db { what, source }
}

/// The configured API keys, trimmed; a blank one is refused.
fn api_keys(given: Vec<String>) -> Result<Vec<String>, Error> {
    given
        .into_iter()
        .enumerate()
        .map(|(k, key)| {
            let key = key.trim();
            if key.is_empty() {
                Err(Error::BlankApiKey { position: k + 1 })
            } else {
                Ok(key.to_string())
            }
        })
        .collect()
}

/// `--bind`'s addresses; a bare port (`20003`, `:20003`) is refused with what to write.
fn bind_addresses(bind: &str) -> Result<Vec<SocketAddr>, Error> {
    let bare = bind.trim().trim_start_matches(':');
    if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::BarePort { bind: bind.to_string(), port: bare.to_string() });
    }
    bind.to_socket_addrs().map(Iterator::collect).map_err(|source| Error::Bind { bind: bind.to_string(), source })
}

/// `backfilld serve`: open the file, bind, and serve until stopped.
pub fn serve(args: ServeArgs) -> Result<(), Error> {
    serve_then(args, |_| {})
}

/// `backfilld demo`: serves the demo file and, on a thread of its own, seeds it when empty
/// and runs a simulated worker against it; stops both on Ctrl-C.
pub fn demo(args: DemoArgs) -> Result<(), Error> {
    let serve = ServeArgs::local(args.db.clone(), args.bind);
    let stop = std::sync::Arc::new(crate::worker::Stop::default());
    let mut driver = None;
    let stop_for = stop.clone();
    let db = args.db.clone();
    let served = serve_then(serve, |local| {
        let base = format!("http://{local}");
        // Not println!: with standard output closed, the demo still serves.
        let _ = writeln!(
            std::io::stdout(),
            "backfilld demo: serving {} on {base}, with a simulated worker running its backfills' runs.\n\
             Open the dashboard: {base}/\n\
             Or ask the API: curl '{base}/api/backfills?include_run_count=true&_limit=5'\n\
             Watch a run move: curl '{base}/api/pipeline_runs?status=running&_limit=3'\n\
             Ctrl-C stops it; `backfilld demo` again continues the same demo.",
            db.display()
        );
        let Ok(api) = crate::worker::client::Api::new(&base, None, None, 8, Duration::from_secs(3)) else { return };
        let handle = std::thread::Builder::new().name("demo".into()).spawn(move || crate::demo::drive(api, stop_for));
        driver = handle.ok();
    });
    // The server has stopped: the worker stops at once (its held runs' leases run out, and
    // the next start takes them again).
    stop.now();
    if let Some(h) = driver {
        let _ = h.join();
    }
    served
}

/// Serves as `serve` does, calling `listening` with the bound address before serving.
fn serve_then(args: ServeArgs, listening: impl FnOnce(SocketAddr)) -> Result<(), Error> {
    let addrs = bind_addresses(&args.bind)?;
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    let required = args.require_auth || !loopback;
    let api_keys = api_keys(args.api_keys)?;
    if required && api_keys.is_empty() {
        let why = if args.require_auth { "--require-auth is set" } else { "the address is not loopback" };
        return Err(Error::NoApiKey { why });
    }
    let workers = args.workers.map_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()), usize::from);
    // A read holds a pooled connection only while it runs, without yielding: at most one per
    // worker thread and one on the slow-read thread (a token check gives its connection back
    // before the handler reads). Writes use the one writer connection, outside the pool.
    let pool_size = u32::try_from(workers + 1).unwrap_or(u32::MAX);
    let pool = db::open_pool(&args.db.db, pool_size)?;
    let listener = TcpListener::bind(&addrs[..]).map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => Error::PortInUse { bind: args.bind.clone() },
        _ => Error::Listen { bind: args.bind.clone(), source },
    })?;
    let local = listener.local_addr().map_err(|source| Error::Listen { bind: args.bind.clone(), source })?;
    let path = std::fs::canonicalize(&args.db.db).unwrap_or_else(|_| args.db.db.clone());
    log::info!(
        "backfilld {} serving {} on http://{local} (authentication {})",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        if required { "required" } else { "off" }
    );
    log::info!(
        "next: open the dashboard at http://{local}/ or `curl http://{local}/api/backfills`; `backfilld demo` shows runs \
         moving; Ctrl-C stops (requests in flight finish first)"
    );
    let mut state =
        AppState::new(pool, AuthConfig::new(required, &api_keys), crate::lifecycle::Limits { max_runs: args.max_runs })
            .map_err(Error::Serve)?;
    state.cors_origins = args.cors_origins;
    state.session_lifetime = args.session_lifetime;
    state.body = BodyLimits { deadline: Duration::from_secs_f64(args.body_timeout), ..BodyLimits::default() };
    state.set_lease_timing(args.min_lease_seconds, Duration::from_millis(args.lease_check_ms)).map_err(Error::Serve)?;
    let system = actix_web::rt::System::new();
    let server = crate::run(listener, state, workers, args.max_connections as usize).map_err(Error::Serve)?;
    listening(local);
    system.block_on(server).map_err(Error::Serve)?;
    log::info!("stopped");
    Ok(())
}

/// How much of an import's input is read at a time.
const IMPORT_BUFFER: usize = 256 << 10;

/// `backfilld import`: prints what it loaded. The input is read as its records are loaded
/// (`import::import_from`), never whole into memory.
pub fn import(args: ImportArgs) -> Result<String, Error> {
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|source| Error::Read { what: args.file.display().to_string(), source })?;
        Box::new(file)
    };
    let mut conn = db::open(&args.db.db)?;
    let input = std::io::BufReader::with_capacity(IMPORT_BUFFER, input);
    let summary = import::import_from(&mut conn, input, crate::now())
        .map_err(|source| Error::Import { file: args.file.clone(), source })?;
    Ok(format!(
        "imported {} backfill(s) and {} pipeline run(s) into {}",
        summary.backfills,
        summary.pipeline_runs,
        args.db.db.display()
    ))
}

/// Opens the data file `path` for a command that reads all of it once (`export`): one that
/// does not exist is refused rather than created empty, and the memory map is off.
fn open_existing(path: &Path) -> Result<rusqlite::Connection, Error> {
    if !path.exists() {
        return Err(Error::NoDataFile(path.to_path_buf()));
    }
    let conn = db::open(path)?;
    db::unmap(&conn).map_err(db_error("cannot set up the connection"))?;
    Ok(conn)
}

/// `backfilld export`: writes the document to OUT, a new file, or to standard output (`-`).
/// What it wrote is said on standard output after a file, and on standard error after
/// standard output, which carries the document.
pub fn export(args: ExportArgs) -> Result<String, Error> {
    let mut conn = open_existing(&args.db.db)?;
    let said = |s: export::Summary| {
        format!(
            "exported {} backfill(s) and {} pipeline run(s) from {}",
            s.backfills,
            s.pipeline_runs,
            args.db.db.display()
        )
    };
    if args.out.as_os_str() == "-" {
        let summary = export::export(&mut conn, std::io::stdout().lock())
            .map_err(|source| Error::Export { out: "standard output".into(), source })?;
        eprintln!("{}", said(summary));
        return Ok(String::new());
    }
    // Said before the work (publishing refuses it again, atomically, at the end).
    if args.out.symlink_metadata().is_ok() {
        return Err(Error::OutputExists(args.out.clone()));
    }
    // Written under a hidden name beside OUT, synced, and only then given its name (as a
    // backup is): an export cut short (an error, Ctrl-C) never leaves a half document at OUT.
    let partial = backup::partial_path(&args.out);
    let create = |source| Error::Create { path: args.out.clone(), source };
    let file = std::fs::File::create_new(&partial).map_err(create)?;
    let written = export::export(&mut conn, &file)
        .map_err(|source| Error::Export { out: args.out.display().to_string(), source })
        .and_then(|summary| file.sync_all().map(|()| summary).map_err(create))
        .and_then(|summary| {
            backup::publish(&partial, &args.out).map(|()| summary).map_err(|e| match e {
                backup::BackupError::Exists(out) => Error::OutputExists(out),
                other => Error::from(other),
            })
        });
    backup::remove_partial(&partial);
    Ok(format!("{} to {}", said(written?), args.out.display()))
}

/// `backfilld backup`: copies the data file to OUT, a new file, and says what the copy holds.
pub fn backup(args: BackupArgs) -> Result<String, Error> {
    if !args.db.db.exists() {
        return Err(Error::NoDataFile(args.db.db.clone()));
    }
    let copied = backup::backup(&args.db.db, &args.out)?;
    Ok(format!(
        "backed up {} to {}: {}, {} backfill(s), {} pipeline run(s)",
        args.db.db.display(),
        args.out.display(),
        backup::describe_size(copied.bytes),
        copied.backfills,
        copied.pipeline_runs
    ))
}

fn describe(t: &TokenRecord, now: datetime::DateTime) -> String {
    let expiry = match t.expires_at {
        None => "never expires".to_string(),
        Some(e) if e <= now => format!("expired {}", datetime::format_api(e)),
        Some(e) => format!("expires {}", datetime::format_api(e)),
    };
    format!("{}\tcreated {}\t{expiry}", t.name, datetime::format_api(t.created_at))
}

/// `backfilld token ...`: what to print on standard output.
pub fn token(cmd: TokenCommand) -> Result<String, Error> {
    let now = crate::now();
    match cmd {
        TokenCommand::Create { db, name, expires_in } => {
            if name.trim().is_empty() {
                return Err(Error::BlankName);
            }
            let expires_at = match expires_in {
                None => None,
                Some(s) => {
                    let secs = token::parse_lifetime(&s).map_err(Error::Lifetime)?;
                    let at = datetime::add_micros(now, i128::from(secs) * 1_000_000)
                        .ok_or_else(|| Error::Lifetime(format!("{s} reaches past the year 9999")))?;
                    Some(at)
                }
            };
            let conn = db::open(&db.db)?;
            let secret = token::generate().map_err(Error::Random)?;
            let record = TokenRecord { name: name.clone(), created_at: now, expires_at };
            let inserted = store::tokens::insert_token(&conn, &record, &token::hash(&secret))
                .map_err(db_error("cannot store the token"))?;
            if !inserted {
                return Err(Error::TokenExists(name));
            }
            Ok(secret)
        }
        TokenCommand::List { db } => {
            let conn = db::open(&db.db)?;
            let tokens = store::tokens::list_tokens(&conn).map_err(db_error("cannot list the tokens"))?;
            Ok(tokens.iter().map(|t| describe(t, now)).collect::<Vec<_>>().join("\n"))
        }
        TokenCommand::Revoke { db, name } => {
            let conn = db::open(&db.db)?;
            match store::tokens::delete_token(&conn, &name).map_err(db_error("cannot revoke the token"))? {
                true => Ok(format!("revoked token '{name}'")),
                false => Err(Error::NoSuchToken(name)),
            }
        }
    }
}

/// The new user's password: asked twice on a terminal (not echoed), else standard input's
/// first line (without its line ending).
fn read_new_password() -> Result<String, Error> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|source| Error::Read { what: "the password".into(), source })?;
        let again = rpassword::prompt_password("Password again: ")
            .map_err(|source| Error::Read { what: "the password".into(), source })?;
        if first != again {
            return Err(Error::User("the two passwords differ; nothing was changed".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|source| Error::Read { what: "the password from standard input".into(), source })?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    crate::password::check_new(&password).map_err(|m| Error::User(format!("{m}; nothing was changed")))?;
    Ok(password)
}

/// `backfilld user ...`: what to print on standard output.
pub fn user(cmd: UserCommand) -> Result<String, Error> {
    let now = crate::now();
    let refused = |e: crate::error::Error| match e {
        crate::error::Error::Db(source) => Error::Db { what: "cannot change the users", source },
        other => Error::User(other.to_string()),
    };
    match cmd {
        UserCommand::Create { db, email, username } => {
            let email = email.trim().to_string();
            crate::accounts::check_email(&email).map_err(Error::User)?;
            let password = read_new_password()?;
            let hash = crate::password::hash(&password).map_err(Error::User)?;
            let conn = db::open(&db.db)?;
            let user = crate::accounts::create_user(&conn, &email, username.as_deref(), &hash, now).map_err(refused)?;
            Ok(format!("created user {} (username '{}', id {})", user.email, user.username, user.id))
        }
        UserCommand::List { db } => {
            let conn = db::open(&db.db)?;
            let users = crate::accounts::list_users(&conn, now).map_err(refused)?;
            Ok(users
                .iter()
                .map(|(u, sessions)| {
                    format!(
                        "{}\t{}\tcreated {}\t{sessions} live session(s)",
                        u.email,
                        u.username,
                        datetime::format_api(u.created_at)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        UserCommand::Delete { db, email } => {
            let conn = db::open(&db.db)?;
            crate::accounts::delete_user(&conn, email.trim()).map_err(refused)?;
            Ok(format!("deleted user {} and their sessions", email.trim()))
        }
    }
}

/// `backfilld completions SHELL`: the completion script, made by clap_complete from the
/// command line's own definition.
pub fn completions(shell: clap_complete::Shell) -> Result<String, Error> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut <crate::cli::Cli as clap::CommandFactory>::command(), "backfilld", &mut out);
    Ok(String::from_utf8_lossy(&out).trim_end().to_string())
}

/// `backfilld man`: the manual page in roff (serve's flags, and the subcommands, whose own
/// flags `backfilld help COMMAND` shows), made by clap_mangen from the same definition.
pub fn man() -> Result<String, Error> {
    let mut out = Vec::new();
    clap_mangen::Man::new(<crate::cli::Cli as clap::CommandFactory>::command())
        .render(&mut out)
        .map_err(|source| Error::Read { what: "the manual page".into(), source })?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_string())
}

/// How `backfilld worker` ended: 0 when every run it executed completed, 1 when one failed
/// (or was given up), 2 when it could not work at all (bad flags, no server, refused).
pub fn worker(args: WorkerArgs) -> u8 {
    let cfg = match worker_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("backfilld worker: {e}");
            return 2;
        }
    };
    let stop = std::sync::Arc::new(crate::worker::Stop::default());
    if let Err(e) = watch_signals(stop.clone()) {
        eprintln!("backfilld worker: cannot watch for Ctrl-C and SIGTERM: {e}");
        return 2;
    }
    log::info!("worker {} claiming from {} ({} at a time)", cfg.name, cfg.api.base(), cfg.concurrency);
    use std::io::IsTerminal;
    let mut progress = crate::worker::progress::Progress::new(std::io::stderr().is_terminal());
    match crate::worker::run(&cfg, &stop, &mut progress) {
        Ok(s) => {
            println!("{s}");
            if s.failed + s.abandoned > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("backfilld worker: {e}");
            2
        }
    }
}

/// The worker's flags checked, and the server asked whether it is there and takes the key
/// and token: all before anything is claimed.
fn worker_config(a: WorkerArgs) -> Result<crate::worker::Config, String> {
    use crate::worker::{client, plan, Config, Work};
    let flag = |name: &str, r: Result<Duration, String>| r.map_err(|e| format!("--{name} {e}"));
    let lease = flag("lease", plan::parse_duration(&a.lease))?;
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(86_400) || lease.subsec_nanos() != 0 {
        return Err(format!("--lease {}: a whole number of seconds from 1s to 24h", a.lease));
    }
    let grace = flag("grace", plan::parse_duration(&a.grace))?;
    let timeout = a.timeout.as_deref().map(|t| flag("timeout", plan::parse_duration(t))).transpose()?;
    if timeout == Some(Duration::ZERO) {
        return Err("--timeout must be longer than 0".into());
    }
    let work = match a.exec {
        Some(cmd) if cmd.trim().is_empty() => return Err("--exec needs a command".into()),
        Some(cmd) => Work::Exec(cmd),
        None => Work::Simulate {
            span: plan::parse_span(&a.duration).map_err(|e| format!("--duration {e}"))?,
            fail_rate: plan::parse_rate(&a.fail_rate).map_err(|e| format!("--fail-rate {e}"))?,
            seed: a.seed.unwrap_or_else(|| {
                let mut bytes = [0u8; 8];
                let _ = getrandom::fill(&mut bytes);
                u64::from_le_bytes(bytes)
            }),
        },
    };
    let name = match a.name {
        Some(n) if n.trim().is_empty() || n.chars().count() > 200 => {
            return Err("--name must not be blank, and at most 200 characters".into())
        }
        Some(n) => n,
        None => crate::worker::default_name(),
    };
    if a.pipeline.as_deref().is_some_and(|p| p.trim().is_empty()) {
        return Err("--pipeline must not be blank".into());
    }
    let concurrency = usize::try_from(a.concurrency).unwrap_or(1);
    // BACKFILLD_API_KEY may list the server's keys, comma-separated: the first one serves.
    let api_key = a.api_key.and_then(|k| k.split(',').map(str::trim).find(|k| !k.is_empty()).map(str::to_string));
    // A call may take a third of the lease at most, so that a hung heartbeat leaves time for
    // another before the lease ends (and 30 s at most).
    let call_timeout = (lease / 3).clamp(Duration::from_millis(300), Duration::from_secs(30));
    let api = client::Api::new(&a.server, api_key, a.token, concurrency + 2, call_timeout)?;
    api.check()?;
    Ok(Config {
        api,
        name,
        concurrency,
        scope: client::Scope { pipeline_uuid: a.pipeline, backfill_id: a.backfill },
        lease,
        work,
        timeout,
        until_idle: a.until_idle,
        grace,
    })
}

/// Ctrl-C and SIGTERM ask the worker to stop: the first gently, the next at once.
fn watch_signals(stop: std::sync::Arc<crate::worker::Stop>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for _ in signals.forever() {
            if stop.request() == 1 {
                log::warn!(
                    "stopping: no more claims; running commands may finish within --grace (Ctrl-C again to stop \
                     at once)"
                );
            } else {
                log::warn!("stopping at once: killing running commands; their leases will run out");
            }
        }
    })?;
    Ok(())
}
