//! Measures starting a 100,000-run backfill through the real HTTP API: the real server on a
//! free port over a fresh SQLite file in a temporary folder. Each round creates a backfill
//! (every minute from 2023-01-01 00:00 to 2023-03-11 10:39: 100,000 run dates) and times
//! the `PUT {"status": "initial"}` that creates its runs, against the round's create request
//! as the baseline measured in the same run.
//!
//!     cargo run --release --example start_bench [ROUNDS]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use backfilld::api::{self, AppState, Settings};
use backfilld::cli::DEFAULT_MAX_CONNECTIONS;
use serde_json::{json, Value};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut settings = Settings::default();
    settings.engine.readers = 8;
    let state = Arc::new(AppState::open(&dir.path().join("bench.db"), settings).expect("the server state"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        actix_web::rt::System::new()
            .block_on(api::run(listener, state, 2, DEFAULT_MAX_CONNECTIONS as usize).unwrap())
            .unwrap();
    });
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(true).build().into();

    println!("{:>5} {:>12} {:>12} {:>8} {:>10}", "round", "create ms", "start ms", "ratio", "runs/s");
    let mut starts = vec![];
    for round in 1..=rounds {
        let t = Instant::now();
        let created: Value = agent
            .post(format!("{base}/api/pipelines/bench/backfills"))
            .send_json(json!({"backfill": {"name": format!("bench {round}"), "start_datetime": "2023-01-01T00:00:00Z",
                "end_datetime": "2023-03-11T10:39:00Z", "interval_type": "minute", "interval_units": 1}}))
            .expect("create")
            .body_mut()
            .read_json()
            .expect("JSON");
        let create_ms = t.elapsed().as_secs_f64() * 1000.0;
        let id = created["backfill"]["id"].as_i64().unwrap();

        let t = Instant::now();
        agent
            .put(format!("{base}/api/backfills/{id}"))
            .send_json(json!({"backfill": {"status": "initial"}}))
            .expect("start");
        let start_ms = t.elapsed().as_secs_f64() * 1000.0;
        starts.push(start_ms);
        println!(
            "{round:>5} {create_ms:>12.2} {start_ms:>12.1} {:>7.0}x {:>10.0}",
            start_ms / create_ms,
            100_000.0 / (start_ms / 1000.0)
        );
    }
    starts.sort_by(f64::total_cmp);
    println!("median start of a 100,000-run backfill: {:.1} ms", starts[starts.len() / 2]);
}
