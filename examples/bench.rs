//! The benchmark: builds a large database through the crate's own storage and lifecycle
//! code, starts the real server (this binary re-executed as `backfilld serve`, the function
//! the real binary runs) on a free port, drives it over HTTP with C concurrent keep-alive
//! connections for a fixed time per scenario, and prints per scenario requests per second,
//! p50, p99 and max latency, errors, and the server's peak anonymous RSS (page cache and
//! mmap excluded), with each throughput also as a ratio to `GET /api/status` measured in
//! the same run.
//!
//!     cargo run --release --example bench                 # 1,000,000 backfills, 2,000,000 runs
//!     cargo run --release --example bench -- --quick      # a small smoke run, as CI does
//!
//! Options: --backfills N, --runs M, --connections C, --seconds S, --data DIR (where the
//! built database is kept and reused; default target/bench-data), --quick.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backfilld::cli::{DbArg, ServeArgs};
use backfilld::datetime::{self, DateTime};
use backfilld::db;
use backfilld::lifecycle::{self, Limits};
use backfilld::model::RunStatus;
use backfilld::schedule::IntervalType;
use serde_json::{json, Value};
use time::macros::datetime;

const PIPELINES: u64 = 20;

struct Options {
    backfills: u64,
    runs: u64,
    connections: usize,
    seconds: f64,
    data: PathBuf,
    quick: bool,
    /// Only the scenarios whose name contains one of these comma-separated words (and the
    /// baseline).
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        backfills: 1_000_000,
        runs: 2_000_000,
        connections: 8,
        seconds: 8.0,
        data: PathBuf::from("target/bench-data"),
        quick: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--backfills" => o.backfills = value().parse().expect("--backfills N"),
            "--runs" => o.runs = value().parse().expect("--runs M"),
            "--connections" => o.connections = value().parse().expect("--connections C"),
            "--seconds" => o.seconds = value().parse().expect("--seconds S"),
            "--data" => o.data = PathBuf::from(value()),
            "--quick" => o.quick = true,
            "--only" => o.only = Some(value()),
            other => panic!("unknown option {other}; see the header of examples/bench.rs"),
        }
    }
    if o.quick {
        o.backfills = o.backfills.min(20_000);
        o.runs = o.runs.min(40_000);
        o.seconds = o.seconds.min(1.0);
    }
    o
}

/// A small deterministic generator (SplitMix64), so that every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn pipeline(i: u64) -> String {
    format!("pipeline_{:02}", i % PIPELINES)
}

fn add_seconds(d: DateTime, s: i64) -> DateTime {
    datetime::add_micros(d, i128::from(s) * 1_000_000).expect("a date in range")
}

/// The pipeline whose newest backfill is the million-run one.
const MEGA_PIPELINE: &str = "pipeline_mega";

/// Builds (or reuses) the database: `backfills` backfills over 20 pipelines with realistic
/// dates and intervals, created one second apart; half the runs on one backfill of one run a
/// minute (the "million-run" one, newest of its own pipeline), the rest on started backfills
/// of 100 runs each, some of them completed or failed, all through the lifecycle code.
fn build(o: &Options) -> PathBuf {
    let path = o.data.join(format!("bench-{}-{}.db", o.backfills, o.runs));
    if path.exists() {
        println!("reusing {}", path.display());
        return path;
    }
    std::fs::create_dir_all(&o.data).expect("the data folder");
    let partial = path.with_extension("partial");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let t = Instant::now();
    let mut conn = db::open(&partial).expect("a new database");
    let mut rng = Rng(42);
    let types = [IntervalType::Hour, IntervalType::Day, IntervalType::Week, IntervalType::Month, IntervalType::Minute];
    let epoch = datetime!(2020-01-01 00:00);
    let unlimited = Limits { max_runs: u64::MAX };

    let tx = conn.transaction().expect("a transaction");
    for i in 0..o.backfills {
        let t = types[rng.below(types.len() as u64) as usize];
        let units = 1 + rng.below(6) as i64;
        let start = add_seconds(epoch, rng.below(4 * 365 * 86_400) as i64);
        let step = match t {
            IntervalType::Minute => 60,
            IntervalType::Hour => 3600,
            IntervalType::Day => 86_400,
            IntervalType::Week => 7 * 86_400,
            _ => 31 * 86_400,
        };
        let end = add_seconds(start, units * step * (1 + rng.below(200) as i64));
        let created = add_seconds(datetime!(2023-06-01 00:00), i as i64);
        let created = datetime::add_micros(created, i128::from(rng.below(1_000_000) as u32)).unwrap();
        let fields = json!({
            "name": format!("backfill {i}"),
            "start_datetime": datetime::format_api(start),
            "end_datetime": datetime::format_api(end),
            "interval_type": t.as_str(),
            "interval_units": units,
            "variables": {"team": format!("team {}", i % 7)},
        });
        lifecycle::create(&tx, &pipeline(i), fields.as_object().unwrap(), created).expect("create a backfill");
    }
    tx.commit().expect("commit the backfills");
    println!("  {} backfills in {:.1}s", o.backfills, t.elapsed().as_secs_f64());

    // The million-run backfill: one run a minute, started, so it has its runs; the newest of
    // a pipeline of its own, whose other 60 backfills are ordinary, and older than page 0.
    let mega_runs = o.runs / 2;
    let tx = conn.transaction().expect("a transaction");
    for k in 0..60 {
        let fields = json!({"name": format!("neighbour {k}"), "start_datetime": "2023-01-01", "end_datetime": "2023-01-02",
            "interval_type": "hour", "interval_units": 1, "variables": {"team": "mega"}});
        let at = add_seconds(datetime!(2023-04-01 00:00), k);
        lifecycle::create(&tx, MEGA_PIPELINE, fields.as_object().unwrap(), at).expect("create");
    }
    let now = datetime!(2023-05-01 00:00);
    let start = datetime!(2022-01-01 00:00);
    let fields = json!({"name": "every minute", "start_datetime": datetime::format_api(start),
        "end_datetime": datetime::format_api(add_seconds(start, (mega_runs as i64 - 1) * 60)),
        "interval_type": "minute", "interval_units": 1});
    let mega = lifecycle::create(&tx, MEGA_PIPELINE, fields.as_object().unwrap(), now).expect("create");
    let start_body = json!({"status": "initial"});
    lifecycle::update(&tx, mega.id, None, start_body.as_object().unwrap(), unlimited, now).expect("start");
    tx.commit().expect("commit the million-run backfill");
    println!("  {mega_runs} runs of one backfill in {:.1}s", t.elapsed().as_secs_f64());

    // The rest: started backfills of 100 hourly runs, the oldest first, some progressed.
    let per = 100;
    let started = (o.runs - mega_runs) / per;
    let tx = conn.transaction().expect("a transaction");
    for k in 0..started {
        let id = (k + 1) as i64;
        let fields = json!({"start_datetime": "2023-01-01T00:00:00Z", "end_datetime": "2023-01-05T03:00:00Z",
            "interval_type": "hour", "interval_units": 1, "status": "initial"});
        lifecycle::update(&tx, id, None, fields.as_object().unwrap(), unlimited, now).expect("start");
        let first =
            tx.query_row("SELECT MIN(id) FROM pipeline_run WHERE backfill_id = ?1", [id], |r| r.get::<_, i64>(0));
        if let Ok(first) = first {
            for (offset, status) in [(0, RunStatus::Running), (1, RunStatus::Completed), (2, RunStatus::Completed)] {
                lifecycle::report_run(&tx, first + offset, status, now).expect("report");
            }
            if k % 10 == 0 {
                lifecycle::report_run(&tx, first + 3, RunStatus::Failed, now).expect("report");
            }
        }
    }
    tx.commit().expect("commit the started backfills");
    drop(conn);
    std::fs::rename(&partial, &path).expect("move the database into place");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    println!("built {} in {:.1}s", path.display(), t.elapsed().as_secs_f64());
    path
}

/// A minimal HTTP/1.1 keep-alive client: the load generator shares the cores with the
/// server, so it does as little as it can.
struct Conn {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Conn { reader: std::io::BufReader::new(s.try_clone()?), writer: s })
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// The server's anonymous resident memory in KiB (heap and stacks; not the page cache or
/// the mmap of the database file).
fn rss_anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server as a child process; returns it and the time from spawn to the first
/// answered request.
fn start_server(db: &Path) -> (Server, Duration) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve-child", &db.display().to_string(), &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("the server process");
    let server = Server { child, port };
    loop {
        if let Ok(mut c) = Conn::open(port) {
            if matches!(c.send("GET", "/api/status", b""), Ok((200, _))) {
                return (server, t.elapsed());
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the server did not start");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// What one scenario measured.
struct Measured {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    peak_rss_kib: u64,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 * p).ceil() as usize).clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[i] as f64 / 1000.0
    }
}

type MakeRequest = dyn Fn(u64) -> (&'static str, String, Vec<u8>) + Send + Sync;

/// Drives the server with `connections` connections for `seconds` (or `max_requests` in
/// all), each connection sending `make(i)` for its i-th request.
fn drive(server: &Server, connections: usize, seconds: f64, max_requests: u64, make: Arc<MakeRequest>) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let pid = server.child.id();
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_anon_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let results = Arc::new(Mutex::new((Vec::new(), 0u64)));
    let t = Instant::now();
    let deadline = t + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (make, issued, results, port) = (make.clone(), issued.clone(), results.clone(), server.port);
            std::thread::spawn(move || {
                let mut conn = Conn::open(port).expect("a connection");
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= max_requests {
                        break;
                    }
                    let (method, path, body) = make(i);
                    let sent = Instant::now();
                    match conn.send(method, &path, &body) {
                        Ok((status, _)) if status < 400 => latencies.push(sent.elapsed().as_micros() as u64),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = Conn::open(port).expect("a connection");
                        }
                    }
                }
                let mut r = results.lock().unwrap();
                r.0.extend(latencies);
                r.1 += errors;
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (mut latencies_us, errors) = std::mem::take(&mut *results.lock().unwrap());
    latencies_us.sort_unstable();
    Measured {
        requests: latencies_us.len() as u64,
        errors,
        seconds: elapsed,
        latencies_us,
        peak_rss_kib: peak.load(Ordering::Relaxed),
    }
}

fn get_json(server: &Server, path: &str) -> Value {
    let (status, body) = Conn::open(server.port).unwrap().send("GET", path, b"").unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn send_json(server: &Server, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, body) = Conn::open(server.port).unwrap().send(method, path, body.to_string().as_bytes()).unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn runs_in(server: &Server, pipeline: &str) -> u64 {
    get_json(server, &format!("/api/pipeline_runs?pipeline_uuid={pipeline}&_limit=0"))["metadata"]["count"]
        .as_u64()
        .unwrap()
}

fn get(path: String) -> Arc<MakeRequest> {
    Arc::new(move |_| ("GET", path.clone(), vec![]))
}

fn serve_child(db: &str, port: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = ServeArgs {
        db: DbArg { db: PathBuf::from(db) },
        bind: format!("127.0.0.1:{port}"),
        api_keys: vec![],
        require_auth: false,
        max_runs: Limits::default().max_runs,
        workers: None,
    };
    if let Err(e) = backfilld::commands::serve(args) {
        eprintln!("bench server: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-child") {
        return serve_child(&args[2], &args[3]);
    }
    let o = options();
    let db = build(&o);
    let (server, startup) = start_server(&db);

    // Fixtures the scenarios need, found through the API.
    let mega = get_json(&server, &format!("/api/pipelines/{MEGA_PIPELINE}/backfills?_limit=1"))["backfills"][0]["id"]
        .as_i64()
        .unwrap();
    let deep = (o.backfills * 9 / 10).min(900_000);
    let cursor_page = get_json(&server, &format!("/api/backfills?_limit=40&_offset={deep}"));
    let cursor = cursor_page["metadata"]["cursor"].as_str().map(str::to_string);
    let mega_runs = o.runs / 2;
    let preview_at = (mega_runs * 9 / 10).min(900_000);

    let seconds = o.seconds;
    let c = o.connections;
    let mut rows: Vec<(String, Measured)> = vec![];
    let only = o.only.clone();
    let mut run = |name: &str, connections: usize, max: u64, make: Arc<MakeRequest>| {
        if !(rows.is_empty() || only.as_ref().is_none_or(|o| o.split(',').any(|o| name.contains(o)))) {
            return;
        }
        let m = drive(&server, connections, seconds, max, make);
        rows.push((name.to_string(), m));
    };
    run("GET /api/status (baseline)", c, u64::MAX, get("/api/status".into()));
    run("page 0 with run counts", c, u64::MAX, get("/api/backfills?include_run_count=true".into()));
    run(
        "the same, one pipeline",
        c,
        u64::MAX,
        get("/api/backfills?include_run_count=true&pipeline_uuid=pipeline_07".into()),
    );
    run(
        "page showing a million-run backfill",
        c,
        u64::MAX,
        get(format!("/api/backfills?include_run_count=true&pipeline_uuid={MEGA_PIPELINE}")),
    );
    run(&format!("offset {deep}"), c, u64::MAX, get(format!("/api/backfills?include_run_count=true&_offset={deep}")));
    run(
        &format!("offset {deep}, one connection"),
        1,
        u64::MAX,
        get(format!("/api/backfills?include_run_count=true&_offset={deep}")),
    );

    if let Some(cursor) = cursor {
        run(
            &format!("cursor after row {}", deep + 40),
            c,
            u64::MAX,
            get(format!("/api/backfills?include_run_count=true&_cursor={cursor}")),
        );
    }
    run("preview at date 0", c, u64::MAX, get(format!("/api/backfills/{mega}?include_preview_runs=true&_limit=40")));
    run(
        &format!("preview at date {preview_at}"),
        c,
        u64::MAX,
        get(format!("/api/backfills/{mega}?include_preview_runs=true&_limit=40&_offset={preview_at}")),
    );
    let create_body = json!({"backfill": {"name": "bench create", "start_datetime": "2024-01-01T00:00:00Z",
        "end_datetime": "2024-01-02T00:00:00Z", "interval_type": "hour", "interval_units": 1}})
    .to_string()
    .into_bytes();
    run(
        "create",
        c,
        u64::MAX,
        Arc::new(move |_| ("POST", "/api/pipelines/bench/backfills".to_string(), create_body.clone())),
    );

    // Starting a 100,000-run backfill: a few, one at a time, each on a fresh backfill.
    let started_before = runs_in(&server, "bench_start");
    // Measured once the previous scenario's writes are checkpointed, so that their backlog
    // (copied by the checkpoint thread meanwhile) is not charged to the start.
    std::thread::sleep(Duration::from_secs(3));
    let starts = if o.quick { 1 } else { 5 };
    let ids: Vec<i64> = (0..starts)
        .map(|k| {
            let (status, body) = send_json(
                &server,
                "POST",
                "/api/pipelines/bench_start/backfills",
                &json!({"backfill": {
                "name": format!("start {k}"), "start_datetime": "2023-01-01T00:00:00Z",
                "end_datetime": "2023-03-11T10:39:00Z", "interval_type": "minute", "interval_units": 1}}),
            );
            assert_eq!(status, 200, "{body}");
            body["backfill"]["id"].as_i64().unwrap()
        })
        .collect();
    let start_body = json!({"backfill": {"status": "initial"}}).to_string().into_bytes();
    run(
        "start a 100,000-run backfill",
        1,
        starts as u64,
        Arc::new(move |i| ("PUT", format!("/api/backfills/{}", ids[i as usize]), start_body.clone())),
    );
    let started = runs_in(&server, "bench_start") - started_before;
    if o.only.as_ref().is_none_or(|o| o.split(',').any(|o| "start a 100,000-run backfill".contains(o))) {
        assert_eq!(started, starts as u64 * 100_000, "every start created its runs");
    }
    drop(server);

    let (base_name, base) = &rows[0];
    let base_rps = base.rps();
    println!();
    println!(
        "backfilld {} | {} backfills, {} runs | {} connections, {:.0}s per scenario | {} CPUs",
        env!("CARGO_PKG_VERSION"),
        o.backfills,
        o.runs,
        c,
        seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("process start to first answered request: {:.1} ms", startup.as_secs_f64() * 1000.0);
    println!(
        "{:<38} {:>9} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "scenario", "req/s", "ratio", "p50 ms", "p99 ms", "max ms", "errors", "RSS MiB"
    );
    let mut failures = 0;
    for (name, m) in &rows {
        println!(
            "{:<38} {:>9.0} {:>7.3}x {:>9.2} {:>9.2} {:>9.2} {:>7} {:>9.1}",
            name,
            m.rps(),
            m.rps() / base_rps,
            m.percentile(0.5),
            m.percentile(0.99),
            m.percentile(1.0),
            m.errors,
            m.peak_rss_kib as f64 / 1024.0
        );
        failures += m.errors + u64::from(m.requests == 0);
    }
    let _ = base_name;
    let failed = rows.iter().filter(|(_, m)| m.errors > 0 || m.requests == 0).count();
    println!("bench: {} passed, {failed} failed", rows.len() - failed);
    if failures > 0 {
        eprintln!("bench: {failures} errors or empty scenarios");
        std::process::exit(1);
    }
}
