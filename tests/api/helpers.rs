//! `spawn_app()`: the real server on 127.0.0.1:0 over a temporary database file, and a client.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use backfilld::api::{self, AppState, Settings};
use backfilld::auth::token;
use backfilld::cli::DEFAULT_MAX_CONNECTIONS;
use backfilld::db;
use backfilld::domain::datetime::{self, DateTime};
use backfilld::service::accounts;
use backfilld::service::lifecycle::Limits;
use backfilld::store::tokens::TokenRecord;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_backfilld");

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub db_path: PathBuf,
    pub dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
    agent: ureq::Agent,
}

/// An answer: status, headers we look at, and the body parsed as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub allow: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// A turn for a test that loads both cores (the stalled-body attacks, the concurrent
/// claimers, the browser): such tests run one at a time, so that together they do not
/// starve the rest of the suite.
pub fn busy_turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who may call a test server: open (the default), or every `/api` request with one of
/// `api_keys` and a token, as `--require-auth --api-key ...` makes it.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    required: bool,
    api_keys: Vec<String>,
}

impl AuthConfig {
    pub fn new(required: bool, api_keys: &[String]) -> AuthConfig {
        AuthConfig { required, api_keys: api_keys.to_vec() }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(AuthConfig::default())
}

pub fn spawn_app_with(auth: AuthConfig) -> TestApp {
    spawn_app_limited(auth, Limits::default())
}

pub fn spawn_app_limited(auth: AuthConfig, limits: Limits) -> TestApp {
    spawn_app_tuned(auth, limits, |_| {})
}

/// The server with its settings adjusted by `tune` (shorter deadlines, a smaller body
/// budget, shorter leases).
pub fn spawn_app_tuned(auth: AuthConfig, limits: Limits, tune: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_capped(auth, limits, tune, DEFAULT_MAX_CONNECTIONS as usize)
}

/// `spawn_app_tuned` accepting at most `max_connections` connections at once.
pub fn spawn_app_capped(
    auth: AuthConfig,
    limits: Limits,
    tune: impl FnOnce(&mut Settings),
    max_connections: usize,
) -> TestApp {
    spawn_app_served(auth, limits, tune, max_connections, 1)
}

/// `spawn_app_capped` with `workers` HTTP worker threads, between which actix splits the
/// cap (as `backfilld serve` has one per CPU).
pub fn spawn_app_served(
    auth: AuthConfig,
    limits: Limits,
    tune: impl FnOnce(&mut Settings),
    max_connections: usize,
    workers: usize,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("backfilld.db");
    let mut settings = Settings {
        require_auth: auth.required,
        api_keys: auth.api_keys,
        max_runs: limits.max_runs,
        ..Settings::default()
    };
    settings.engine.readers = 4;
    tune(&mut settings);
    let state = std::sync::Arc::new(AppState::open(&db_path, settings).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        let server = api::run(listener, state, workers, max_connections).unwrap();
        tx.send(server.handle()).unwrap();
        system.block_on(server).unwrap();
    });
    let handle = rx.recv().unwrap();
    TestApp { base, port, db_path, dir, handle, agent: agent() }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only reports completion.
        drop(self.handle.stop(false));
    }
}

pub fn reply(mut resp: ureq::http::Response<ureq::Body>) -> Reply {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let allow = header("allow");
    let content_type = header("content-type");
    let retry_after = header("retry-after");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    Reply { status, allow, content_type, retry_after, body }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(self.agent.get(self.url(path)).call().unwrap())
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.call().unwrap())
    }

    /// `method path` with a JSON body.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Reply {
        self.send_raw(method, path, &[("Content-Type", "application/json")], serde_json::to_vec(body).unwrap())
    }

    pub fn send_raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut req = ureq::http::Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(self.agent.run(req.body(body).unwrap()).unwrap())
    }

    /// `GET /api/backfills/{id}?include_run_count=true`'s backfill (asserting a 200).
    pub fn read_backfill(&self, id: i64) -> Value {
        let r = self.get(&format!("/api/backfills/{id}?include_run_count=true"));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["backfill"].clone()
    }

    /// Creates a backfill in `pipeline` through the API and returns its id.
    pub fn create_backfill(&self, pipeline: &str, fields: Value) -> i64 {
        let r = self.send("POST", &format!("/api/pipelines/{pipeline}/backfills"), &json!({ "backfill": fields }));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["backfill"]["id"].as_i64().unwrap()
    }

    /// `PUT /api/backfills/{id}` with `{"backfill": fields}`.
    pub fn put_backfill(&self, id: i64, fields: Value) -> Reply {
        self.send("PUT", &format!("/api/backfills/{id}"), &json!({ "backfill": fields }))
    }

    /// A worker's report: `PUT /api/pipeline_runs/{id}`.
    pub fn report_run(&self, id: i64, status: &str) -> Reply {
        self.send("PUT", &format!("/api/pipeline_runs/{id}"), &json!({"pipeline_run": {"status": status}}))
    }

    /// The ids of a backfill's runs, in execution order.
    pub fn run_ids(&self, backfill_id: i64) -> Vec<i64> {
        let r = self.get(&format!("/api/pipeline_runs?backfill_id={backfill_id}&_limit=1000"));
        let mut ids: Vec<i64> =
            r.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        ids.sort();
        ids
    }

    pub fn request(&self, method: &str, path: &str) -> Reply {
        let req = ureq::http::Request::builder().method(method).uri(self.url(path)).body(()).unwrap();
        reply(self.agent.run(req).unwrap())
    }

    /// Loads `doc` with the real `backfilld import`, as a user would.
    pub fn import(&self, doc: &Value) {
        let out = import_file(&self.db_path, &self.dir.path().join("import.json"), doc);
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stores a token named `name` that expires at `expires_at`, and returns it.
    pub fn add_token(&self, name: &str, expires_at: Option<DateTime>) -> String {
        let conn = db::open(&self.db_path).unwrap();
        let secret = token::generate().unwrap();
        let record = TokenRecord { name: name.into(), created_at: datetime::now(), expires_at };
        accounts::create_token(&conn, &record, &secret).unwrap();
        secret
    }
}

pub fn import_file(db_path: &Path, file: &Path, doc: &Value) -> Output {
    std::fs::write(file, serde_json::to_vec(doc).unwrap()).unwrap();
    Command::new(BIN).args(["import", "--db"]).arg(db_path).arg(file).stdin(Stdio::null()).output().unwrap()
}

/// The writable fields of the seed's backfill: 25 runs, every 4 hours.
pub fn seed_fields(name: &str) -> Value {
    json!({
        "name": name,
        "start_datetime": "2023-03-01T00:00:00Z",
        "end_datetime": "2023-03-05T00:00:00Z",
        "interval_type": "hour",
        "interval_units": 4,
    })
}

/// A backfill record in the API's shape, for import: the seed's dates every `units` hours.
pub fn backfill(id: i64, pipeline: &str, created_at: &str) -> Value {
    serde_json::json!({
        "id": id,
        "name": format!("backfill {id}"),
        "pipeline_uuid": pipeline,
        "start_datetime": "2023-03-01 00:00:00+00:00",
        "end_datetime": "2023-03-05 00:00:00+00:00",
        "interval_type": "hour",
        "interval_units": 4,
        "created_at": created_at,
    })
}

pub fn ids(reply: &Reply) -> Vec<i64> {
    reply.body["backfills"].as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect()
}

/// Asserts the contract's error envelope with `status` and `kind`; returns the message.
pub fn assert_error(reply: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let e = &reply.body["error"];
    assert_eq!(e["code"], status, "{:?}", reply.body);
    assert_eq!(reply.body["status"], status, "{:?}", reply.body);
    assert_eq!(e["type"], kind, "{:?}", reply.body);
    assert!(e["errors"].is_array(), "{:?}", reply.body);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    e["message"].as_str().unwrap().to_string()
}

/// The value of the sample named exactly `sample` (with its labels) in a metrics text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

impl TestApp {
    /// The value of `sample` in the server's `/metrics` now (asserting a 200).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let mut resp = self.agent.get(self.url("/metrics")).call().unwrap();
        assert_eq!(resp.status(), 200);
        metric(&resp.body_mut().read_to_string().unwrap(), sample)
    }
}

/// `backfilld worker --server APP ARGS`, with none of the credentials or config of the
/// machine's user (only the test's own folder), no input, and its output to `/dev/null`.
pub fn quiet_worker(app: &TestApp, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("worker").args(["--server", &app.base]).args(args);
    c.env_remove("BACKFILLD_API_KEY").env_remove("BACKFILLD_TOKEN").env_remove("BACKFILLD_SERVER");
    c.env("XDG_CONFIG_HOME", app.dir.path().join("config"));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Sends `signal` to `child` (one of the test's own).
pub fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// A connection to `port` on 127.0.0.1 from the loopback address `from` (all of 127.0.0.0/8
/// is this machine's): a client the server tells apart from the test's others.
pub fn connect_from(from: Ipv4Addr, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into()).unwrap();
    socket.into()
}

impl TestApp {
    /// `method path` with a JSON body, from the client at `from` (`connect_from`), on a
    /// connection of its own.
    pub fn send_from(&self, from: Ipv4Addr, method: &str, path: &str, body: &Value) -> Reply {
        let body = serde_json::to_vec(body).unwrap();
        exchange(connect_from(from, self.port), self.port, method, path, &[("Content-Type", "application/json")], &body)
    }

    /// `method path` with `headers` as sent, whatever they are (`Host` too: 127.0.0.1:port
    /// unless given), on a connection of its own.
    pub fn send_as_is(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        exchange(TcpStream::connect(("127.0.0.1", self.port)).unwrap(), self.port, method, path, headers, body)
    }
}

/// One request on `s` as written (with `Connection: close`), and its answer.
pub fn exchange(mut s: TcpStream, port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON ({status}): {body:?}"));
    Reply {
        status,
        allow: header("allow"),
        content_type: header("content-type"),
        retry_after: header("retry-after"),
        body,
    }
}
