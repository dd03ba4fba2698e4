//! `backfilld worker`: the flags checked, the server asked whether it is there, Ctrl-C and
//! SIGTERM watched, and the worker (`crate::worker`) run until done or stopped.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::WorkerArgs;
use crate::client;
use crate::worker::{plan, Config, Stop, Work};

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
    let stop = Arc::new(Stop::default());
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
fn worker_config(a: WorkerArgs) -> Result<Config, String> {
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
    let exec = match a.exec {
        Some(cmd) if cmd.trim().is_empty() => return Err("--exec needs a command".into()),
        exec => exec,
    };
    let simulate = match exec {
        Some(_) => None,
        None => Some(Work::Simulate {
            span: plan::parse_span(&a.duration).map_err(|e| format!("--duration {e}"))?,
            fail_rate: plan::parse_rate(&a.fail_rate).map_err(|e| format!("--fail-rate {e}"))?,
            seed: a.seed.unwrap_or_else(|| {
                let mut bytes = [0u8; 8];
                let _ = getrandom::fill(&mut bytes);
                u64::from_le_bytes(bytes)
            }),
        }),
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
    // What the flags and the environment leave out comes from `backfilld login`'s file.
    let base = client::base_url(&a.server)?;
    let file = a.config_home.as_deref().map(client::credentials::path_in);
    let (api_key, token, key_from, token_from) =
        client::credentials::resolve(&base, super::client::first_key(a.api_key), a.token, file.as_deref())?;
    log::info!("server {base}; {}", super::client::say_sources(key_from, token_from, file.as_deref()));
    // A call may take a third of the lease at most, so that a hung heartbeat leaves time for
    // another before the lease ends (and 30 s at most).
    let call_timeout = (lease / 3).clamp(Duration::from_millis(300), Duration::from_secs(30));
    let api = client::Api::new(&base, api_key, token, concurrency + 2, call_timeout)?;
    api.check()?;
    // The commands' keeper, once everything else has been checked: nothing is started for
    // a worker that cannot work.
    let work = match exec {
        Some(command) => Work::Exec {
            command,
            keeper: crate::worker::keeper::Keeper::start()
                .map_err(|e| format!("the process that starts the commands could not start: {e}"))?,
        },
        None => simulate.expect("a simulation is planned when there is no --exec"),
    };
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
        show_output: !a.quiet,
    })
}

/// Ctrl-C and SIGTERM ask the worker to stop: the first gently, the next at once.
fn watch_signals(stop: Arc<Stop>) -> std::io::Result<()> {
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
