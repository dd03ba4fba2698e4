//! `backfilld demo`: a server over a demo file seeded with realistic backfills in every
//! state, and a simulated worker in the same process, so that runs move while a person
//! watches. The seeding and the worker go through the HTTP API, as any client would. Its log
//! shows warnings only unless `RUST_LOG` says (`logging::DEMO_FILTER`), so that the banner,
//! written once the seeding is done, is the last thing on the terminal.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::serve::serve_then;
use super::Error;
use crate::cli::{DemoArgs, ServeArgs};
use crate::client::{Api, CallError, Scope};
use crate::worker::plan::Span;
use crate::worker::{Config, Stop, Work};

/// `backfilld demo`: serves the demo file and, on a thread of its own, seeds it when empty,
/// says where to look, and runs a simulated worker against it; stops both on Ctrl-C.
pub fn demo(args: DemoArgs) -> Result<(), Error> {
    let serve = ServeArgs {
        max_log_bytes: args.max_log_bytes,
        allowed_hosts: args.allowed_hosts.clone(),
        api_keys: args.dashboard_api_key.iter().cloned().collect(),
        dashboard_api_key: args.dashboard_api_key.clone(),
        ..ServeArgs::local(args.db.clone(), args.bind)
    };
    let stop = Arc::new(Stop::default());
    let mut driver = None;
    let stop_for = stop.clone();
    let db = args.db.clone();
    let served = serve_then(serve, |local| {
        let base = format!("http://{local}");
        let Ok(api) = Api::new(&base, None, None, 8, Duration::from_secs(3)) else { return };
        let banner = move |seeded: usize| {
            let seeded = match seeded {
                0 => "its backfills were seeded before".to_string(),
                n => format!("{n} backfills seeded"),
            };
            // Not println!: with standard output closed, the demo still serves.
            let _ = writeln!(
                std::io::stdout(),
                "backfilld demo: serving {} on {base} ({seeded}), with a simulated worker running their runs.\n\
                 Open the dashboard: {base}/\n\
                 Or ask the API: curl '{base}/api/backfills?include_run_count=true&_limit=5'\n\
                 Watch a run move: curl '{base}/api/pipeline_runs?status=running&_limit=3'\n\
                 Ctrl-C stops it; `backfilld demo` again continues the same demo (RUST_LOG=info shows its log).",
                db.display()
            );
        };
        let handle = std::thread::Builder::new().name("demo".into()).spawn(move || drive(api, stop_for, banner));
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

/// The pipelines of the demo, each with the interval its backfills mostly use.
const PIPELINES: [&str; 5] = ["sales_daily", "events_hourly", "clickstream", "billing", "ml_features"];

/// What a seeded backfill is made to look like.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Never started.
    NotStarted,
    /// Every run completed.
    Completed,
    /// Some runs completed, then one failed: the backfill failed (Mage's rule); seeded with
    /// `stop_on_failure`, it stops there, where a backfill without it would run on.
    Failed { completed: usize },
    /// Started, some runs completed; the demo's worker takes the rest.
    Running { completed: usize },
    /// Running, then paused after some runs.
    Paused { completed: usize },
    /// Cancelled after some runs.
    Cancelled { completed: usize },
}

/// A seeded backfill: name, interval type and units, start and end, settings, shape.
struct Seed {
    name: &'static str,
    interval: (&'static str, u32),
    range: (&'static str, &'static str),
    settings: Value,
    shape: Shape,
}

fn seeds() -> Vec<Seed> {
    let s = |name, interval, range, settings, shape| Seed { name, interval, range, settings, shape };
    vec![
        s("Q1 reload", ("day", 1), ("2024-01-01", "2024-03-31"), Value::Null, Shape::Completed),
        s(
            "late events replay",
            ("hour", 1),
            ("2024-05-01", "2024-05-03"),
            json!({"stop_on_failure": true}),
            Shape::Failed { completed: 30 },
        ),
        s(
            "a June week by the minute",
            ("minute", 1),
            ("2024-06-01T00:00:00Z", "2024-06-07T23:59:00Z"),
            json!({"pipeline_run_limit": 3}),
            Shape::Running { completed: 40 },
        ),
        s(
            "2023 weekly rollup",
            ("week", 1),
            ("2023-01-02", "2023-12-25"),
            Value::Null,
            Shape::Paused { completed: 12 },
        ),
        s(
            "billing restatement",
            ("month", 1),
            ("2022-01-01", "2023-12-01"),
            Value::Null,
            Shape::Cancelled { completed: 6 },
        ),
        s("decade archive", ("year", 1), ("2015-01-01", "2024-01-01"), Value::Null, Shape::NotStarted),
        s(
            "recent days, newest first",
            ("day", 1),
            ("2024-09-01", "2024-09-30"),
            json!({"run_backwards": true}),
            Shape::Running { completed: 3 },
        ),
        s("every 6 hours", ("hour", 6), ("2024-07-01", "2024-07-10"), Value::Null, Shape::Running { completed: 0 }),
        s(
            "burst test",
            ("second", 30),
            ("2024-08-01T12:00:00Z", "2024-08-01T12:30:00Z"),
            Value::Null,
            Shape::Running { completed: 10 },
        ),
        s("custom code", ("custom", 1), ("2024-01-01", "2024-01-31"), Value::Null, Shape::NotStarted),
    ]
}

/// How many backfills the file has.
fn backfills(api: &Api) -> Result<usize, CallError> {
    let answer = api.call("GET", "/api/backfills?_limit=0", None)?;
    Ok(usize::try_from(answer["metadata"]["count"].as_u64().unwrap_or(0)).unwrap_or(usize::MAX))
}

/// The backfills the demo seeds, in order: each seed in each pipeline, skipping a few so
/// that the pipelines differ (the minute-, second-level and custom ones once).
fn plan() -> Vec<(&'static str, usize, Seed)> {
    let mut plan = vec![];
    for (p, pipeline) in PIPELINES.iter().enumerate() {
        for (k, seed) in seeds().into_iter().enumerate() {
            let once = matches!(seed.interval.0, "minute" | "second" | "custom");
            if if once { p != 2 } else { (k + p) % 4 == 3 } {
                continue;
            }
            plan.push((*pipeline, k, seed));
        }
    }
    plan
}

/// How many backfills the demo seeds.
pub fn planned() -> usize {
    plan().len()
}

fn datetime(d: &str) -> String {
    if d.contains('T') {
        d.to_string()
    } else {
        format!("{d}T00:00:00Z")
    }
}

/// Creates the demo's backfills after the first `made` (a start stopped while seeding
/// left those), each in its shape; returns how many it created.
fn seed(api: &Api, made: usize) -> Result<usize, CallError> {
    let mut created_now = 0;
    for (pipeline, k, seed) in plan().into_iter().skip(made) {
        let mut fields = json!({
            "name": format!("{pipeline}: {}", seed.name),
            "start_datetime": datetime(seed.range.0),
            "end_datetime": datetime(seed.range.1),
            "interval_type": seed.interval.0,
            "interval_units": seed.interval.1,
            "variables": {"source": format!("s3://demo-{pipeline}/raw"), "full_refresh": k % 2 == 0},
        });
        if !seed.settings.is_null() {
            fields["settings"] = seed.settings.clone();
        }
        let created =
            api.call("POST", &format!("/api/pipelines/{pipeline}/backfills"), Some(&json!({ "backfill": fields })))?;
        let id = created["backfill"]["id"].as_i64().unwrap_or(0);
        shape(api, id, seed.shape)?;
        created_now += 1;
    }
    Ok(created_now)
}

fn put_backfill(api: &Api, id: i64, fields: Value) -> Result<Value, CallError> {
    api.call("PUT", &format!("/api/backfills/{id}"), Some(&json!({ "backfill": fields })))
}

/// Reports a run "demo-seed" claimed, as a worker does: completed, or failed with an error.
fn finish_run(api: &Api, run: &Value, completed: bool) -> Result<(), CallError> {
    let id = run["id"].as_i64().unwrap_or(0);
    let metrics = if completed {
        json!({"rows_written": 1000 + id % 9000})
    } else {
        json!({"error": "demo: upstream table had no partition for this date", "exit_code": 1})
    };
    api.report(id, "demo-seed", completed, &metrics, None)
}

/// Moves a new backfill into `shape`: started, its first runs (in date order) claimed by
/// "demo-seed" and reported, then paused or cancelled.
fn shape(api: &Api, id: i64, shape: Shape) -> Result<(), CallError> {
    let (completed, fail) = match shape {
        Shape::NotStarted => return Ok(()),
        Shape::Completed => (usize::MAX, false),
        Shape::Failed { completed } => (completed, true),
        Shape::Running { completed } | Shape::Paused { completed } | Shape::Cancelled { completed } => {
            (completed, false)
        }
    };
    put_backfill(api, id, json!({"status": "initial"}))?;
    let want = completed.saturating_add(usize::from(fail));
    let mut done = 0;
    while done < want {
        let scope = Scope { pipeline_uuid: None, backfill_id: Some(id) };
        let runs = api.claim("demo-seed", (want - done).min(100), 60, &scope, "backfilld_simulate")?;
        if runs.is_empty() {
            break;
        }
        for run in &runs {
            finish_run(api, run, done < completed)?;
            done += 1;
        }
    }
    match shape {
        Shape::Paused { .. } => put_backfill(api, id, json!({"is_paused": true})).map(drop),
        Shape::Cancelled { .. } => put_backfill(api, id, json!({"status": "cancelled"})).map(drop),
        _ => Ok(()),
    }
}

/// The demo's worker: 4 runs at once, each 0.5 to 3 s, 1 in 200 failing, under a 10 s lease
/// (so that runs left held by a stopped demo come back soon after the next start).
fn worker_config(api: Api) -> Config {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Config {
        api,
        name: "demo-worker".into(),
        concurrency: 4,
        scope: Scope { pipeline_uuid: None, backfill_id: None },
        lease: Duration::from_secs(10),
        work: Work::Simulate {
            span: Span { low: Duration::from_millis(500), high: Duration::from_secs(3) },
            fail_rate: 0.005,
            seed,
        },
        timeout: None,
        until_idle: false,
        grace: Duration::ZERO,
        show_output: false,
    }
}

/// Seeds the demo if the file has none, calls `ready` with how many backfills it seeded, then
/// runs the worker until `stop`.
fn drive(api: Api, stop: Arc<Stop>, ready: impl FnOnce(usize)) {
    // The server answers once its loop runs, a moment after this thread starts.
    let mut tries = 0;
    let made = loop {
        match backfills(&api) {
            Ok(n) => break n,
            Err(e) if tries < 100 && e.is_transient() => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return log::error!("demo: the server did not answer: {e}"),
        }
    };
    let seeded = if made < planned() {
        match seed(&api, made) {
            Ok(n) => n,
            Err(e) => return log::error!("demo: seeding failed: {e}"),
        }
    } else {
        0
    };
    ready(seeded);
    let mut quiet = crate::worker::progress::Progress::quiet();
    if let Err(e) = crate::worker::run(&worker_config(api), &stop, &mut quiet) {
        log::error!("demo: the worker stopped: {e}");
    }
}
