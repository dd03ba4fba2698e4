//! What each subcommand does, for `main.rs` to call. Errors come back as one line of text
//! for the user; the caller prints it and exits non-zero.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::cli::{ImportArgs, ServeArgs, TokenCommand};
use crate::store::tokens::TokenRecord;
use crate::{datetime, db, import, store, token, AppState, AuthConfig};

/// `backfilld serve`: open the file, bind, and serve until stopped.
pub fn serve(args: ServeArgs) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = args
        .bind
        .to_socket_addrs()
        .map_err(|e| format!("--bind {}: not an address to listen on: {e}", args.bind))?
        .collect();
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    let required = args.require_auth || !loopback;
    let api_keys: Vec<String> = args.api_keys.into_iter().filter(|k| !k.is_empty()).collect();
    if required && api_keys.is_empty() {
        let why = if args.require_auth { "--require-auth is set" } else { "the address is not loopback" };
        return Err(format!(
            "authentication is required ({why}) but no API key is configured: \
             pass --api-key KEY (or set BACKFILLD_API_KEY=KEY), and create a token with \
             `backfilld token create --name NAME`"
        ));
    }
    let workers = args.workers.map_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()), usize::from);
    // Reads hold a connection on their worker thread (one at a time per worker); writes
    // hold one on the blocking pool while they wait for SQLite's single write lock. Enough
    // for both, so that a queue of writes never leaves a worker waiting for a connection.
    let pool_size = u32::try_from(workers + 8).unwrap_or(64);
    let pool = db::open_pool(&args.db.db, pool_size).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&addrs[..]).map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    log::info!(
        "serving {} on http://{local} (authentication {})",
        args.db.db.display(),
        if required { "required" } else { "off" }
    );
    let state = AppState {
        limits: crate::lifecycle::Limits { max_runs: args.max_runs },
        pool,
        auth: AuthConfig::new(required, &api_keys),
    };
    let server = crate::run(listener, state, workers).map_err(|e| e.to_string())?;
    actix_web::rt::System::new().block_on(server).map_err(|e| e.to_string())
}

/// `backfilld import`: prints what it loaded.
pub fn import(args: ImportArgs) -> Result<String, String> {
    let input = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
    };
    let mut conn = db::open(&args.db.db).map_err(|e| e.to_string())?;
    let summary = import::import(&mut conn, &input, crate::now())
        .map_err(|e| format!("{}: nothing was imported: {e}", args.file.display()))?;
    Ok(format!(
        "imported {} backfill(s) and {} pipeline run(s) into {}",
        summary.backfills,
        summary.pipeline_runs,
        args.db.db.display()
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
pub fn token(cmd: TokenCommand) -> Result<String, String> {
    let now = crate::now();
    match cmd {
        TokenCommand::Create { db, name, expires_in } => {
            if name.trim().is_empty() {
                return Err("--name must not be blank".into());
            }
            let expires_at = match expires_in {
                None => None,
                Some(s) => {
                    let secs = token::parse_lifetime(&s).map_err(|e| format!("--expires-in {e}"))?;
                    let at = datetime::add_micros(now, i128::from(secs) * 1_000_000)
                        .ok_or_else(|| format!("--expires-in {s} reaches past the year 9999"))?;
                    Some(at)
                }
            };
            let conn = db::open(&db.db).map_err(|e| e.to_string())?;
            let secret = token::generate().map_err(|e| format!("cannot get randomness from the system: {e}"))?;
            let record = TokenRecord { name: name.clone(), created_at: now, expires_at };
            let inserted = store::tokens::insert_token(&conn, &record, &token::hash(&secret))
                .map_err(|e| format!("cannot store the token: {e}"))?;
            if !inserted {
                return Err(format!("a token named '{name}' exists already; revoke it first or pick another name"));
            }
            Ok(secret)
        }
        TokenCommand::List { db } => {
            let conn = db::open(&db.db).map_err(|e| e.to_string())?;
            let tokens = store::tokens::list_tokens(&conn).map_err(|e| e.to_string())?;
            Ok(tokens.iter().map(|t| describe(t, now)).collect::<Vec<_>>().join("\n"))
        }
        TokenCommand::Revoke { db, name } => {
            let conn = db::open(&db.db).map_err(|e| e.to_string())?;
            match store::tokens::delete_token(&conn, &name).map_err(|e| e.to_string())? {
                true => Ok(format!("revoked token '{name}'")),
                false => Err(format!("no token is named '{name}'")),
            }
        }
    }
}
