//! `backfilld run logs ID [--follow]`: prints a run's log from the server, and with
//! `--follow` what is added to it until the run has finished. A client of the API alone.

use std::io::Write;
use std::time::Duration;

use crate::cli::RunLogsArgs;
use crate::client::{Api, CallError};
use crate::worker::plan;

/// How often a followed log is asked for again.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How many times in a row a followed log may fail to come before the command gives up.
const FOLLOW_TRIES: u32 = 6;

/// Prints the log: 0 once printed (with `--follow`, once the run has finished), 1 when the
/// server refuses (no such run, a wrong key), 2 when it cannot be reached.
pub fn run_logs(args: RunLogsArgs) -> u8 {
    let api_key = args.api_key.and_then(|k| k.split(',').map(str::trim).find(|k| !k.is_empty()).map(str::to_string));
    let api = match Api::new(&args.server, api_key, args.token, 2, Duration::from_secs(30)) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("backfilld run logs: {e}");
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    // How much of the run's output has been printed: a follower asks for what comes after
    // it, which the server finds even once the log's middle has been cut (the marker line
    // then comes first).
    let mut after = 0;
    let mut failures = 0;
    loop {
        match api.read_log(args.id, after) {
            Ok(page) => {
                failures = 0;
                if out.write_all(&page.bytes).and_then(|()| out.flush()).is_err() {
                    // Standard output closed (`| head`): nothing more to print.
                    return 0;
                }
                after = page.received;
                if !args.follow || page.finished {
                    return 0;
                }
                std::thread::sleep(FOLLOW_EVERY);
            }
            Err(e @ (CallError::Unreachable { .. } | CallError::Server { .. })) => {
                if !args.follow || failures >= FOLLOW_TRIES {
                    eprintln!("backfilld run logs: {e}");
                    return 2;
                }
                std::thread::sleep(plan::backoff(failures));
                failures += 1;
            }
            Err(e) => {
                eprintln!("backfilld run logs: {e}");
                return 1;
            }
        }
    }
}
