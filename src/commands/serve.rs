//! `backfilld serve` (what a bare `backfilld` does): bind, open the data file, serve until
//! stopped, and close the file clean.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::Error;
use crate::api::{self, AppState};
use crate::auth::host;
use crate::cli::ServeArgs;
use crate::engine;

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

/// The host name of `--bind` (`name:port`), when it is a name rather than an address.
fn bind_name(bind: &str) -> Option<String> {
    let name = bind.trim().rsplit_once(':').map_or(bind.trim(), |(name, _)| name);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    // A name `--allowed-host` would refuse (none that resolved should be) is left out.
    (bare.parse::<std::net::IpAddr>().is_err()).then(|| host::parse(name).ok()).flatten()
}

/// The server's settings from its flags: authentication `required` with `api_keys`, and
/// `workers` HTTP worker threads.
fn settings(args: &ServeArgs, required: bool, api_keys: Vec<String>, workers: usize) -> api::Settings {
    api::Settings {
        require_auth: required,
        api_keys,
        dashboard_api_key: args.dashboard_api_key.as_deref().map(|k| k.trim().to_string()),
        max_runs: args.max_runs,
        body_deadline: Duration::from_secs_f64(args.body_timeout),
        cors_origins: args.cors_origins.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
        session_lifetime: args.session_lifetime,
        min_lease_seconds: args.min_lease_seconds,
        max_log_bytes: args.max_log_bytes,
        engine: engine::Settings {
            // A read holds a reading connection only while it runs, without yielding: at most
            // one per worker thread and one on the slow-read lane (a token check gives its
            // connection back before the handler reads). Writes use the one writer.
            readers: u32::try_from(workers + 1).unwrap_or(u32::MAX),
            sweep_every: Duration::from_millis(args.lease_check_ms),
            ..engine::Settings::default()
        },
        ..api::Settings::default()
    }
}

/// `backfilld serve`: serve until stopped, saying where and what to do next.
pub fn serve(args: ServeArgs) -> Result<(), Error> {
    serve_then(args, |local| {
        log::info!(
            "next: open the dashboard at http://{local}/ or `curl http://{local}/api/backfills`; `backfilld demo` \
             shows runs moving; Ctrl-C stops (requests in flight finish first)"
        );
    })
}

/// Serves as `serve` does, calling `listening` with the bound address before serving.
///
/// The address is bound before the data file is opened, so that a start refused for its
/// address (Mage's port taken, say) leaves no new data file behind; and once the server has
/// stopped, the file is closed before returning, so that a clean stop leaves no WAL behind.
pub(super) fn serve_then(args: ServeArgs, listening: impl FnOnce(SocketAddr)) -> Result<(), Error> {
    let addrs = bind_addresses(&args.bind)?;
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    let required = args.require_auth || !loopback;
    let api_keys = api_keys(args.api_keys.clone())?;
    if required && api_keys.is_empty() {
        let why = if args.require_auth { "--require-auth is set" } else { "the address is not loopback" };
        return Err(Error::NoApiKey { why });
    }
    let workers = args.workers.map_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()), usize::from);
    let listener = TcpListener::bind(&addrs[..]).map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => Error::PortInUse { bind: args.bind.clone() },
        _ => Error::Listen { bind: args.bind.clone(), source },
    })?;
    let local = listener.local_addr().map_err(|source| Error::Listen { bind: args.bind.clone(), source })?;
    return_large_allocations();
    allow_open_files(u64::from(args.max_connections));
    let mut settings = settings(&args, required, api_keys, workers);
    // A name `--bind` gave is one clients reach the server by, wherever names are checked.
    if loopback || !settings.allowed_hosts.is_empty() {
        settings.allowed_hosts.extend(bind_name(&args.bind));
    }
    let state = Arc::new(AppState::open(&args.db.db, settings)?);
    let path = std::fs::canonicalize(&args.db.db).unwrap_or_else(|_| args.db.db.clone());
    log::info!(
        "backfilld {} serving {} on http://{local} (authentication {})",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        if required { "required" } else { "off" }
    );
    let system = actix_web::rt::System::new();
    let server = api::run(listener, state.clone(), workers, args.max_connections as usize).map_err(Error::Serve)?;
    stop_on_signals(server.handle()).map_err(Error::Serve)?;
    listening(local);
    let served = system.block_on(server).map_err(Error::Serve);
    if !api::close(state) {
        log::warn!("the server's threads did not let go of the data file in time; it was left open, as after a crash");
    }
    served?;
    log::info!("stopped");
    Ok(())
}

/// Makes the allocator give large blocks (a page's answer, up to 8 MiB) back to the system
/// once freed, so that the server's memory goes back down after large answers. glibc maps
/// such a block of its own and unmaps it when freed, but raises that threshold to the
/// largest block freed so far (up to 32 MiB): after one large answer, the next come from its
/// heaps, which keep the memory. A fixed threshold turns that off.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one of the allocator's parameters, under the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Open files a connection takes: actix's socket, and the duplicate of it that `api::conns`
/// keeps to shut it down.
const FILES_PER_CONNECTION: u64 = 2;
/// Open files the server takes besides its connections (the listener, the event loops', the
/// data file and its WAL for each database connection, the lock file), with room to spare.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// Raises the process's soft limit on open files, up to its hard limit, to what
/// `max_connections` connections need, so that a cap above the usual soft limit (1,024) is
/// reached rather than cut short by accept(2) failing for want of files (the connections
/// past it would wait, and could not be shut down to make room). Warns when the hard limit
/// is too low for it.
fn allow_open_files(max_connections: u64) {
    let needed = max_connections.saturating_mul(FILES_PER_CONNECTION).saturating_add(FILES_BESIDES_CONNECTIONS);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the limit into the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= needed as libc::rlim_t {
        return;
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max.min(needed as libc::rlim_t), rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the hard
    // one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit.rlim_cur = raised.rlim_cur;
    }
    if limit.rlim_cur < needed as libc::rlim_t {
        log::warn!(
            "--max-connections {max_connections} needs about {needed} open files, and this process may open {} \
             (raise its hard limit: `ulimit -Hn`, or LimitNOFILE= for systemd): new connections wait once they \
             run out",
            limit.rlim_cur
        );
    }
}

/// Ctrl-C and SIGTERM stop the server: the first gracefully (no new connections; the
/// requests in flight are answered, for up to actix's 30 s), the next at once. At once means
/// the process exits there and then (with 128 + the signal, as a shell reports a process a
/// signal ended): actix takes its stop commands one at a time, so a forced stop sent during
/// a graceful one would wait for it. What was committed is on disk; the WAL is left for the
/// next start, as after a crash.
fn stop_on_signals(server: actix_web::dev::ServerHandle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stopping = false;
        for signal in signals.forever() {
            if stopping {
                log::warn!("stopping at once: the requests in flight are cut off (what they committed stays)");
                std::process::exit(128 + signal);
            }
            stopping = true;
            log::info!("stopping: answering the requests in flight (Ctrl-C again to stop at once)");
            // Sent at once; the future only reports when the stop is done.
            drop(server.stop(true));
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `serve` gives the API when no flag is set is what the API assumes unless told.
    #[test]
    fn the_default_flags_make_the_api_s_default_settings() {
        let args = ServeArgs::local("x.db".into(), "127.0.0.1:1".into());
        let made = settings(&args, false, vec![], 1);
        let default = api::Settings::default();
        assert_eq!(format!("{:?}", api::Settings { engine: default.engine, ..made.clone() }), format!("{default:?}"));
        assert_eq!(made.engine.sweep_every, default.engine.sweep_every);
        assert_eq!(made.engine.readers, 2);
    }
}
