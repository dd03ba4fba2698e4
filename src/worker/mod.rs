//! `backfilld worker`: claims runs from a server over its HTTP API, runs a command for each
//! (or simulates one), heartbeats while it runs, and reports how it ended.
//!
//! A client of the API and nothing more (`crate::client`): it never opens the data file, so
//! workers can run on other machines than the server. `plan` holds the pure parts (flag
//! values, simulated outcomes, the command's environment), `exec` the child processes.
//!
//! One thread claims, for several free places at once; each claimed run is run by a thread
//! of a pool (`Runners`) that runs it, heartbeats every third of the lease, ships its output
//! to the server as the run's log (every `output::SHIP_EVERY`, or sooner once
//! `output::SHIP_AT` bytes wait; the rest just before the report), and reports. A run's
//! place is free once its command has ended: the next one starts while the report goes out.
//! The output's lines are also shown on standard error, each with the run's pipeline and
//! date in front, unless `--quiet`. A heartbeat or report answered 409 (the run was
//! cancelled, or the lease is lost) kills the command's process group and reports nothing.

pub mod exec;
pub mod keeper;
pub mod output;
pub mod plan;
pub mod progress;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Api, CallError, Scope};
use exec::{Ended, Running};
use output::{Lines, Outbox, Printer};
use plan::{Simulated, Span};
use progress::Progress;

/// What each run does.
#[derive(Debug, Clone)]
pub enum Work {
    /// `sh -c` this command, started by the worker's keeper.
    Exec { command: String, keeper: Arc<keeper::Keeper> },
    /// Wait, then complete or fail, as `plan::simulate` says.
    Simulate { span: Span, fail_rate: f64, seed: u64 },
}

impl Work {
    /// What the claimed runs' `executor_type` says ran them.
    pub fn executor_type(&self) -> &'static str {
        match self {
            Work::Exec { .. } => "backfilld_exec",
            Work::Simulate { .. } => "backfilld_simulate",
        }
    }
}

/// A worker's settings, checked.
#[derive(Clone)]
pub struct Config {
    pub api: Api,
    pub name: String,
    pub concurrency: usize,
    pub scope: Scope,
    pub lease: Duration,
    pub work: Work,
    /// The longest a command may run before its process group is killed and the run fails.
    pub timeout: Option<Duration>,
    /// Stop once nothing is left to claim, nothing is held, and nothing in scope is running.
    pub until_idle: bool,
    /// After a first stop request, how long running commands may still take.
    pub grace: Duration,
    /// Show each line of the commands' output on standard error (not `--quiet`).
    pub show_output: bool,
}

/// Asks a worker to stop: once (stop claiming, let the running finish within the grace),
/// twice (kill them now and leave their leases to run out).
#[derive(Debug, Default)]
pub struct Stop(AtomicU8);

impl Stop {
    /// One more request; returns how many there have been (at most 2).
    pub fn request(&self) -> u8 {
        let before = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(1).min(2)));
        before.unwrap_or(2).saturating_add(1).min(2)
    }

    /// Both requests at once: stop now, killing what runs (its leases then run out).
    pub fn now(&self) {
        self.0.store(2, Ordering::SeqCst);
    }

    fn level(&self) -> u8 {
        self.0.load(Ordering::SeqCst).min(2)
    }

    fn escalate(&self) {
        self.0.fetch_max(2, Ordering::SeqCst);
    }
}

/// How the worker's runs went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub completed: u64,
    pub failed: u64,
    /// Taken back by the server: cancelled, or the lease lost (409).
    pub lost: u64,
    /// Left for their leases to run out: a stop, or a report that could not go through.
    pub abandoned: u64,
}

impl Summary {
    pub fn runs(&self) -> u64 {
        self.completed + self.failed + self.lost + self.abandoned
    }
}

/// `25 runs: 25 completed, 0 failed, 0 taken back by the server, 0 left to their leases`
/// (`1 run: ...` for one).
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = self.runs();
        write!(
            f,
            "{runs} run{}: {} completed, {} failed, {} taken back by the server, {} left to their leases",
            if runs == 1 { "" } else { "s" },
            self.completed,
            self.failed,
            self.lost,
            self.abandoned
        )
    }
}

/// How one run ended.
#[derive(Debug)]
enum Outcome {
    Completed,
    Failed(String),
    Lost(String),
    Abandoned(String),
}

/// What a run's thread tells the claiming loop: its command has ended and only its report
/// is left (its place is free for the next run), then how it ended.
enum Msg {
    Freed,
    Done(Finished),
}

struct Finished {
    /// Whether `Msg::Freed` came first.
    freed: bool,
    id: i64,
    backfill: Option<i64>,
    label: String,
    took: Duration,
    outcome: Outcome,
}

/// How long a free place may wait for others before a claim fills it alone.
const CLAIM_HOLD: Duration = Duration::from_millis(10);

/// Logs the first failed call of an outage and the recovery, not every retry.
#[derive(Default)]
struct Outage(AtomicBool);

impl Outage {
    fn failed(&self, e: &CallError) {
        if !self.0.swap(true, Ordering::SeqCst) {
            log::warn!("{e}; retrying with backoff (runs held keep their leases while they last)");
        }
    }

    fn ok(&self) {
        if self.0.swap(false, Ordering::SeqCst) {
            log::info!("the server answers again");
        }
    }
}

/// Runs the worker until it is stopped, or, with `until_idle`, until the work is done.
/// Fails only on an answer no retry can change (a refused key, a narrowing to a backfill
/// that does not exist), after the runs in hand have ended.
pub fn run(cfg: &Config, stop: &Arc<Stop>, progress: &mut Progress) -> Result<Summary, String> {
    let started = Instant::now();
    let printer = cfg.show_output.then(|| progress.printer());
    let mut runners = Runners::new();
    let outage = Arc::new(Outage::default());
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut summary = Summary::default();
    // Runs whose command (or simulated wait) is under way, and runs of which only the
    // report is left: a run's place is free again once its command has ended, so that the
    // next run does not wait for the server's answer to the last one's report.
    let (mut held, mut reporting) = (0usize, 0usize);
    let (mut empty, mut errors) = (0u32, 0u32);
    let mut grace_ends: Option<Instant> = None;
    // With `until_idle`: nothing running in scope was seen after an empty claim; one more
    // empty claim then ends the worker (a lease that ran out in between puts a run back).
    let mut idle_seen = false;
    let mut fatal: Option<String> = None;
    // Since when places have been free without a claim for them.
    let mut free_since: Option<Instant> = None;
    let claim_batch = cfg.concurrency.div_ceil(4);
    loop {
        let level = stop.level();
        if level >= 1 || fatal.is_some() {
            if held + reporting == 0 {
                break;
            }
            let ends = *grace_ends.get_or_insert_with(|| Instant::now() + cfg.grace);
            if level < 2 && Instant::now() >= ends {
                log::warn!("the grace of {:?} is over: killing the {held} commands still running", cfg.grace);
                stop.escalate();
            }
        }
        let mut wait = Duration::from_millis(250);
        // Free places are claimed for together: once a quarter of them are free (or all of
        // them, or one has waited `CLAIM_HOLD`), so that short runs cost fewer claims.
        // At most as many reports outstanding as places, so that a slow server slows claims.
        let free = if reporting >= cfg.concurrency { 0 } else { cfg.concurrency - held };
        let now = Instant::now();
        let since = if free == 0 { None } else { Some(*free_since.get_or_insert(now)) };
        free_since = since;
        let held_off = since.is_some_and(|t| now >= t + CLAIM_HOLD);
        let due = held + reporting == 0 || free >= claim_batch || held_off;
        if let (0, None, false, Some(t)) = (level, &fatal, due, since) {
            wait = (t + CLAIM_HOLD).saturating_duration_since(now);
        }
        if level == 0 && fatal.is_none() && free > 0 && due {
            free_since = None;
            match cfg.api.claim(&cfg.name, free, cfg.lease.as_secs(), &cfg.scope, cfg.work.executor_type()) {
                Ok(runs) => {
                    outage.ok();
                    errors = 0;
                    if runs.is_empty() {
                        wait = if held + reporting == 0 { plan::idle_wait(empty) } else { wait };
                        empty = empty.saturating_add(1);
                        if cfg.until_idle && held + reporting == 0 {
                            if idle_seen {
                                break;
                            }
                            match cfg.api.running_runs(&cfg.scope) {
                                Ok(0) => (idle_seen, wait) = (true, Duration::ZERO),
                                Ok(_) => {}
                                Err(e) if e.is_transient() => outage.failed(&e),
                                Err(e) => fatal = Some(e.to_string()),
                            }
                        }
                    } else {
                        idle_seen = false;
                        empty = 0;
                        for run in runs {
                            held += 1;
                            let in_hand = held + reporting;
                            start_run(&mut runners, in_hand, cfg, stop, &outage, printer.clone(), run, tx.clone());
                        }
                        if held < cfg.concurrency {
                            wait = Duration::ZERO;
                        }
                    }
                }
                Err(e) if e.is_transient() => {
                    outage.failed(&e);
                    wait = plan::backoff(errors);
                    errors = errors.saturating_add(1);
                }
                // Said once, by the caller, when the held runs have finished.
                Err(e) => fatal = Some(format!("claiming failed: {e}")),
            }
        }
        let mut next = match rx.recv_timeout(wait) {
            Ok(f) => Some(f),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => unreachable!("the loop holds a sender"),
        };
        while let Some(msg) = next {
            match msg {
                Msg::Freed => (held, reporting) = (held - 1, reporting + 1),
                Msg::Done(f) => {
                    if f.freed {
                        reporting -= 1;
                    } else {
                        held -= 1;
                    }
                    progress.ran(&cfg.api, f.backfill);
                    record(&mut summary, f, progress);
                }
            }
            next = rx.try_recv().ok();
        }
        progress.tick(&cfg.api);
    }
    progress.finish(&cfg.api);
    let took = started.elapsed().as_secs_f64();
    log::info!("worker {} in {took:.1} s: {summary}", cfg.name);
    match fatal {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

fn record(summary: &mut Summary, f: Finished, progress: &Progress) {
    use log::Level::{Info, Warn};
    let took = f.took.as_secs_f64();
    let (id, label) = (f.id, &f.label);
    match f.outcome {
        Outcome::Completed => {
            summary.completed += 1;
            progress.line(Info, true, &format!("run {id} ({label}) completed in {took:.2} s"));
        }
        Outcome::Failed(why) => {
            summary.failed += 1;
            let text = format!(
                "run {id} ({label}) failed in {took:.2} s: {why} (GET /api/pipeline_runs/{id} shows its metrics)"
            );
            progress.line(Warn, false, &text);
        }
        Outcome::Lost(why) => {
            summary.lost += 1;
            progress.line(Warn, false, &format!("run {id} ({label}) stopped after {took:.2} s: {why}"));
        }
        Outcome::Abandoned(why) => {
            summary.abandoned += 1;
            progress.line(Warn, false, &format!("run {id} ({label}) left to its lease after {took:.2} s: {why}"));
        }
    }
}

/// The threads that run the claimed runs, kept from one run to the next: as many as runs
/// have been in hand at once, each running one at a time.
struct Runners {
    jobs: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    threads: usize,
}

type Job = Box<dyn FnOnce() + Send>;

impl Runners {
    fn new() -> Runners {
        let (jobs, queue) = mpsc::channel();
        Runners { jobs, queue: Arc::new(Mutex::new(queue)), threads: 0 }
    }

    /// Runs `job` on a free thread, starting one when fewer than `in_hand` (the runs in hand,
    /// this one included) exist, so that no run waits for another's thread. Without any
    /// thread at all, the job is dropped unrun (its guard says so).
    fn run(&mut self, in_hand: usize, job: Job) {
        if self.threads < in_hand {
            let queue = self.queue.clone();
            let spawned = std::thread::Builder::new().name("run".into()).spawn(move || loop {
                let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                let Ok(job) = next else { return };
                // A panic is the run's alone (its guard reports it): the thread goes on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            });
            match spawned {
                Ok(_) => self.threads += 1,
                Err(e) if self.threads == 0 => {
                    log::warn!("no thread could be started to run a run: {e}");
                    return;
                }
                Err(e) => log::warn!("no more threads could be started ({e}): runs wait for one of {}", self.threads),
            }
        }
        // The threads stop once the receiving end is gone, when the worker ends.
        let _ = self.jobs.send(job);
    }
}

#[allow(clippy::too_many_arguments)]
fn start_run(
    runners: &mut Runners,
    in_hand: usize,
    cfg: &Config,
    stop: &Arc<Stop>,
    outage: &Arc<Outage>,
    printer: Option<Printer>,
    run: Value,
    tx: Sender<Msg>,
) {
    let (cfg, stop, outage) = (cfg.clone(), stop.clone(), outage.clone());
    let id = run["id"].as_i64().unwrap_or(0);
    let backfill = run["backfill_id"].as_i64();
    let label = format!(
        "backfill {}, {}, attempt {}",
        run["backfill_id"],
        run["execution_date"].as_str().unwrap_or("no date"),
        run["attempt"]
    );
    let mut guard = Sent { tx: Some(tx), freed: false, id, backfill, label, started: Instant::now() };
    // Out of threads, the job (and the guard in it) is dropped unrun: the guard reports the run
    // as left to its lease, once, as for a run whose thread panics.
    runners.run(
        in_hand,
        Box::new(move || {
            let outcome = execute(&cfg, &stop, &outage, printer, &run, id, &mut || guard.free());
            guard.send(outcome);
        }),
    );
}

/// Sends a run's outcome to the claiming loop exactly once: if the run's thread ends
/// without one (a panic), as left to its lease, so that the loop never waits for it forever.
struct Sent {
    tx: Option<Sender<Msg>>,
    freed: bool,
    id: i64,
    backfill: Option<i64>,
    label: String,
    started: Instant,
}

impl Sent {
    /// The run's command has ended: its place is free (said once, before its outcome).
    fn free(&mut self) {
        if let (Some(tx), false) = (&self.tx, self.freed) {
            self.freed = true;
            let _ = tx.send(Msg::Freed);
        }
    }

    fn send(&mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            let label = std::mem::take(&mut self.label);
            let _ = tx.send(Msg::Done(Finished {
                freed: self.freed,
                id: self.id,
                backfill: self.backfill,
                label,
                took: self.started.elapsed(),
                outcome,
            }));
        }
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.send(Outcome::Abandoned("its thread ended without an outcome".into()));
    }
}

/// What a run is doing while the worker waits on it.
enum Task {
    Command(Running),
    Sleep {
        until: Instant,
        fails: bool,
    },
    /// The command could not start; it fails at once.
    NotStarted(String),
}

/// Runs one claimed run to its end and reports it.
/// `freed` says the run's command has ended, before its report is sent.
fn execute(
    cfg: &Config,
    stop: &Stop,
    outage: &Outage,
    printer: Option<Printer>,
    run: &Value,
    id: i64,
    freed: &mut dyn FnMut(),
) -> Outcome {
    let started = Instant::now();
    let beat_every = (cfg.lease / 3).max(Duration::from_millis(500));
    let mut lease_ends = started + cfg.lease;
    let mut next_beat = started + beat_every;
    let deadline = cfg.timeout.map(|t| started + t);
    let task = match &cfg.work {
        Work::Exec { command, keeper } => {
            let input = serde_json::to_vec(run).unwrap_or_default();
            let lines = printer.map(|p| (Lines::new(output::prefix(run)), p));
            match Running::start(keeper, command, &plan::run_env(run), input, lines) {
                Ok(r) => Task::Command(r),
                Err(e @ keeper::SpawnError::Gone(_)) => {
                    // No command can start any more: the worker stops, and this run goes
                    // back to the server with its lease rather than fail for no fault of
                    // its own.
                    if stop.level() < 2 {
                        log::error!("{e}: stopping");
                        stop.now();
                    }
                    return Outcome::Abandoned(e.to_string());
                }
                Err(e) => Task::NotStarted(format!("the command could not start: {e}")),
            }
        }
        Work::Simulate { span, fail_rate, seed } => {
            let Simulated { duration, fails } = plan::simulate(
                *seed,
                run["backfill_id"].as_i64(),
                run["execution_date"].as_str().unwrap_or(""),
                run["attempt"].as_i64().unwrap_or(1),
                *span,
                *fail_rate,
            );
            Task::Sleep { until: started + duration, fails }
        }
    };
    let kill = |task: &Task| {
        if let Task::Command(r) = task {
            r.kill();
        }
    };
    let mut shipping = Shipping { next: started + output::SHIP_EVERY, errors: 0, off: false };
    // Wait for the end, heartbeating, and watching the timeout, the lease and a stop.
    let ended: Option<Ended> = loop {
        if let Task::Command(r) = &task {
            // An end that came just now wins over a kill below.
            if let Some(e) = r.wait_until(Instant::now()) {
                break Some(e);
            }
        }
        if Instant::now() >= lease_ends {
            // No heartbeat got through in time: the server takes the run back and may hand
            // it to another worker; this one must not go on with it.
            kill(&task);
            return Outcome::Abandoned("its lease ended before a heartbeat got through; the server has it back".into());
        }
        if stop.level() >= 2 {
            kill(&task);
            return Outcome::Abandoned("the worker was stopped".into());
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            kill(&task);
            let limit = cfg.timeout.unwrap_or_default();
            let why = format!("the command ran past --timeout {limit:?}; it was killed, with every process it started");
            let metrics = json!({"worker": cfg.name, "timed_out": true, "error": why,
                "duration_seconds": started.elapsed().as_secs_f64()});
            let (metrics, log) = with_output(cfg, id, metrics, task, &mut shipping, lease_ends);
            freed();
            return report(cfg, stop, outage, id, false, (metrics, log), lease_ends, why);
        }
        if now >= next_beat {
            if let Task::Command(r) = &task {
                r.detach();
            }
            match cfg.api.heartbeat(id, &cfg.name) {
                Ok(()) => {
                    outage.ok();
                    lease_ends = now + cfg.lease;
                    next_beat = now + beat_every;
                }
                Err(CallError::Conflict(why)) => {
                    kill(&task);
                    return Outcome::Lost(why);
                }
                Err(e) if e.is_transient() => {
                    outage.failed(&e);
                    next_beat = now + Duration::from_secs(1).min(beat_every);
                }
                Err(e) => {
                    // Refused (a token that expired, the run deleted): no heartbeat will get
                    // through, so the lease is as good as lost.
                    kill(&task);
                    return Outcome::Abandoned(format!("its heartbeat was refused: {e}"));
                }
            }
        }
        if let Task::Command(r) = &task {
            shipping.maybe_ship(cfg, id, r, now);
        }
        let mut wake = next_beat.min(now + Duration::from_millis(250)).min(shipping.next);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        match &task {
            Task::Command(r) => {
                if let Some(e) = r.wait_until(wake) {
                    break Some(e);
                }
            }
            Task::Sleep { until, .. } => {
                if now >= *until {
                    break None;
                }
                std::thread::sleep(wake.min(*until).saturating_duration_since(now));
            }
            Task::NotStarted(_) => break None,
        }
    };
    let took = started.elapsed().as_secs_f64();
    let (completed, why, metrics) = match (&task, ended) {
        (Task::Sleep { fails, .. }, _) => {
            let Work::Simulate { seed, .. } = cfg.work else { unreachable!("a sleep is a simulation") };
            let mut m = json!({"worker": cfg.name, "simulated": true, "seed": seed, "duration_seconds": took});
            if *fails {
                m["error"] = json!("simulated failure");
            }
            (!fails, "simulated failure".to_string(), m)
        }
        (Task::NotStarted(why), _) => {
            (false, why.clone(), json!({"worker": cfg.name, "error": why, "duration_seconds": took}))
        }
        (Task::Command(_), Some(Ended::Status(status))) => {
            let (code, signal) = exec::describe(&status);
            let why = match (code, signal) {
                (Some(c), _) => format!("the command exited with status {c}"),
                (None, Some(s)) => format!("the command was killed by signal {s}"),
                (None, None) => "the command ended without a status".to_string(),
            };
            let mut m = json!({"worker": cfg.name, "exit_code": code, "signal": signal, "duration_seconds": took});
            if !status.success() {
                m["error"] = json!(why);
            }
            (status.success(), why, m)
        }
        (Task::Command(_), lost) => {
            // Its end was not seen: the keeper has ended (and killed it). Not the run's fault:
            // it goes back with its lease, and the worker stops, as no command can start.
            let why = match lost {
                Some(Ended::Lost(e)) => format!("waiting for the command failed: {e}"),
                _ => "the command's end was not seen".to_string(),
            };
            if stop.level() < 2 {
                log::error!("{why}: stopping");
                stop.now();
            }
            return Outcome::Abandoned(why);
        }
    };
    let (metrics, log) = with_output(cfg, id, metrics, task, &mut shipping, lease_ends);
    freed();
    report(cfg, stop, outage, id, completed, (metrics, log), lease_ends, why)
}

/// Shipping a run's output to the server as its log.
struct Shipping {
    /// When to ship what waits, at the latest.
    next: Instant,
    /// Failed ships in a row.
    errors: u32,
    /// Given up: the server refused the log (it stays bounded in the outbox, unshipped).
    off: bool,
}

impl Shipping {
    /// Ships what waits of `r`'s output when `SHIP_EVERY` has passed or `SHIP_AT` bytes
    /// wait. A failure never fails the run: what waits stays (bounded) for the next try.
    fn maybe_ship(&mut self, cfg: &Config, id: i64, r: &Running, now: Instant) {
        if self.off {
            self.next = now + Duration::from_secs(3600);
            return;
        }
        let (offset, bytes) = r.waiting();
        if bytes.is_empty() || (now < self.next && bytes.len() < output::SHIP_AT) {
            if bytes.is_empty() && now >= self.next {
                self.next = now + output::SHIP_EVERY;
            }
            return;
        }
        r.detach();
        r.shipped(self.ship(cfg, id, offset, bytes));
        self.next = Instant::now() + if self.errors == 0 { output::SHIP_EVERY } else { plan::backoff(self.errors - 1) };
    }

    /// One try: how much the server has in all, or `None` when it did not take it.
    fn ship(&mut self, cfg: &Config, id: i64, offset: u64, bytes: Vec<u8>) -> Option<u64> {
        match cfg.api.append_log(id, &cfg.name, offset, bytes) {
            Ok(received) => {
                self.errors = 0;
                Some(received)
            }
            Err(e) if e.is_transient() => {
                self.errors = self.errors.saturating_add(1);
                None
            }
            // Refused, or the run is no longer this worker's (the heartbeat or the report
            // says so and acts on it).
            Err(e) => {
                log::warn!("run {id}: its output is no longer sent to the server: {e}");
                self.off = true;
                None
            }
        }
    }

    /// Ships the rest of the output, just before the report: a few tries while the lease
    /// lasts; what does not get through is said, and the run is reported all the same.
    fn flush(&mut self, cfg: &Config, id: i64, mut outbox: Outbox, lease_ends: Instant) {
        let mut tries = 0;
        while !self.off && !outbox.is_empty() {
            let (offset, bytes) = outbox.waiting();
            let n = bytes.len();
            match self.ship(cfg, id, offset, bytes.to_vec()) {
                Some(received) => outbox.shipped(received),
                None if tries < 3 && !self.off && Instant::now() + plan::backoff(tries) < lease_ends => {
                    std::thread::sleep(plan::backoff(tries));
                    tries += 1;
                }
                None => {
                    log::warn!("run {id}: the last {n} bytes of its output could not be sent to the server");
                    return;
                }
            }
        }
    }
}

/// How long, once a command has ended and its process group is killed, its output may take
/// to be read to its end. The pipes close as the group dies, so reading ends at once; the
/// bound is for a process that left the group and still holds them, and is generous, since
/// on a starved machine the reading threads may not have run for a while.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Adds the command's output tail to `metrics`, if there was a command, and what is left of
/// its output: to go with the report when it is short, else shipped now.
fn with_output(
    cfg: &Config,
    id: i64,
    mut metrics: Value,
    task: Task,
    shipping: &mut Shipping,
    lease_ends: Instant,
) -> (Value, Option<(u64, Vec<u8>)>) {
    let mut log = None;
    if let Task::Command(r) = task {
        let out = r.finish(OUTPUT_GRACE, |offset, bytes| shipping.ship(cfg, id, offset, bytes));
        let (tail, dropped) = out.tail;
        metrics["output_tail"] = json!(tail);
        metrics["output_bytes_before_tail"] = json!(dropped);
        match out.outbox.with_report().filter(|_| !shipping.off) {
            Some((offset, bytes)) => log = Some((offset, bytes.to_vec())),
            None => shipping.flush(cfg, id, out.outbox, lease_ends),
        }
    }
    (metrics, log)
}

/// Reports the run, with the last chunk of its log if it has one, retrying while the server
/// does not answer and the lease lasts (a chunk sent again is stored once).
#[allow(clippy::too_many_arguments)]
fn report(
    cfg: &Config,
    stop: &Stop,
    outage: &Outage,
    id: i64,
    completed: bool,
    (metrics, log): (Value, Option<(u64, Vec<u8>)>),
    lease_ends: Instant,
    why: String,
) -> Outcome {
    let mut tries = 0;
    loop {
        let chunk = log.as_ref().map(|(offset, bytes)| (*offset, bytes.as_slice()));
        match cfg.api.report(id, &cfg.name, completed, &metrics, chunk) {
            Ok(()) => {
                outage.ok();
                return if completed { Outcome::Completed } else { Outcome::Failed(why) };
            }
            Err(CallError::Conflict(why)) => return Outcome::Lost(why),
            Err(e) if e.is_transient() => {
                outage.failed(&e);
                let until = Instant::now() + plan::backoff(tries);
                tries += 1;
                if until >= lease_ends {
                    return Outcome::Abandoned(format!("its report did not go through before its lease ended: {e}"));
                }
                while Instant::now() < until {
                    if stop.level() >= 2 {
                        return Outcome::Abandoned(format!(
                            "the worker was stopped before its report went through: {e}"
                        ));
                    }
                    std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
                }
            }
            Err(e) => return Outcome::Abandoned(format!("its report was refused: {e}")),
        }
    }
}

/// The default worker name: the host's name and the process id.
pub fn default_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "worker".to_string()
    };
    format!("{host}-{}", std::process::id())
}
