//! `backfilld run logs ID [--follow]`: prints a run's log from the server, and with
//! `--follow` what is added to it until the run has finished. A client of the API alone.

use std::io::Write;
use std::time::Duration;

use super::client::{connect, Failure};
use crate::cli::RunLogsArgs;
use crate::client::CallError;
use crate::worker::plan;

/// How often a followed log is asked for again.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How many times in a row a followed log may fail to come before the command gives up.
const FOLLOW_TRIES: u32 = 6;

/// Prints the log: 0 once printed (with `--follow`, once the run has finished), 1 when the
/// server refuses (no such run, a wrong key) or fails, 2 when it cannot be reached.
pub fn run_logs(args: RunLogsArgs) -> u8 {
    // The server, key and token as every client command takes them (a login's for those
    // not given).
    let api = match connect(&args.client) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("backfilld run logs: {}", e.message());
            return e.status();
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
            // A follower rides out a short outage of the server.
            Err(CallError::Unreachable { .. } | CallError::Server { .. }) if args.follow && failures < FOLLOW_TRIES => {
                std::thread::sleep(plan::backoff(failures));
                failures += 1;
            }
            Err(e) => {
                // The API's message and the exit status of every client command.
                let failure = Failure::from(e);
                eprintln!("backfilld run logs: {}", failure.message());
                return failure.status();
            }
        }
    }
}
