//! The HTTP client of the API, for the worker, the demo's driver and the client commands: one agent holding the server's
//! address, the credentials and a call timeout; `call` for any request in the API's
//! envelope, and the calls the worker makes by name (claim, heartbeat, report, and the few
//! reads). It speaks HTTP alone and never touches a data file, so a worker can run on
//! another machine than the server.

pub mod credentials;

use std::time::Duration;

use serde_json::{json, Value};

/// Why a call did not give the answer asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: the server is down, unreachable, or too slow. Worth retrying.
    #[error("the server at {server} did not answer: {detail}")]
    Unreachable { server: String, detail: String },
    /// A 5xx answer (503 when it sheds load or cannot write), or 408 or 429. Worth retrying.
    #[error("the server answered {status}: {message}")]
    Server { status: u16, message: String },
    /// 409: the run is no longer this worker's (cancelled, lease expired, held by another).
    #[error("{0}")]
    Conflict(String),
    /// Any other 4xx: a wrong key or token, or a request the server refuses. Not retried.
    #[error("the server refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The connection ended before any answer to a request that is not safe to send twice
    /// (a create, a run's retry, a login): the server may have done it or not. Not retried.
    #[error(
        "the server at {server} closed the connection before answering {request} ({detail}): it may or may not \
         have been done; {check}"
    )]
    Unanswered { server: String, request: String, detail: String, check: &'static str },
}

impl CallError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Unreachable { .. } | CallError::Server { .. })
    }
}

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct Scope {
    pub pipeline_uuid: Option<String>,
    pub backfill_id: Option<i64>,
}

/// The headers of a log's answer (`GET /api/pipeline_runs/:id/logs`): bytes of the run's
/// output received in all, and whether the run has finished.
pub const LOG_RECEIVED: &str = "backfilld-log-received";
pub const RUN_FINISHED: &str = "backfilld-run-finished";

/// A 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub body: Vec<u8>,
    /// A log's answer: bytes of output received in all.
    pub log_received: Option<u64>,
    /// A log's answer: whether the run has finished (its log is then whole).
    pub run_finished: Option<bool>,
}

/// A read of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The log as stored, from where it was asked.
    pub bytes: Vec<u8>,
    /// Bytes of output received in all: where to go on from (`read_log`'s `after`).
    pub received: u64,
    /// Whether the run has finished: nothing more will come.
    pub finished: bool,
}

/// A client of one server, with the API key and token it presents on every request.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    api_key: Option<String>,
    token: Option<String>,
}

impl Api {
    /// A client of `server`: `http://HOST[:PORT]`, or `HOST:PORT` alone. Checks only the
    /// form; `check` asks the server.
    /// Each call gives up after `timeout` (a heartbeat must not outlast the lease).
    pub fn new(
        server: &str,
        api_key: Option<String>,
        token: Option<String>,
        pool: usize,
        timeout: Duration,
    ) -> Result<Api, String> {
        let base = base_url(server)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(pool.max(2))
            .max_idle_connections(pool.max(2))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            Resolver::default(),
        );
        let blank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Ok(Api { agent, base, api_key: blank(api_key), token: blank(token) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` with a JSON `body`: the answer's JSON, or why there is none.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let (content_type, bytes) = match body {
            Some(b) => (Some("application/json"), serde_json::to_vec(b).unwrap_or_default()),
            None => (None, vec![]),
        };
        let answer = self.send(method, path, content_type, bytes, &[])?;
        Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
    }

    /// `method path` with `body` of `content_type` (and more `headers`): the answer, when
    /// it is a 2xx, or why there is none.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, CallError> {
        let request = |body: Vec<u8>| {
            let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
            if let Some(key) = &self.api_key {
                req = req.header("X-API-KEY", key);
            }
            if let Some(token) = &self.token {
                req = req.header("OAUTH-TOKEN", token);
            }
            if let Some(t) = content_type {
                req = req.header("Content-Type", t);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.body(body)
        };
        let unreachable = |detail: String| CallError::Unreachable { server: self.base.clone(), detail };
        let first = self.agent.run(request(body.clone()).map_err(|e| unreachable(e.to_string()))?);
        let mut resp = match first {
            // The connection ended before any answer: most often a kept connection the
            // server closed as idle to make room for new clients, just as the request went
            // out; but a server that died with the request in flight, or closed the
            // connection just as the request arrived, may have done it. So the request goes
            // again, once, on another connection, only when doing it twice does no harm
            // (`safe_to_resend`); otherwise the caller is told it may have been done.
            Err(ureq::Error::Io(e)) if closed_before_answer(&e) => {
                if !safe_to_resend(method, path) {
                    return Err(CallError::Unanswered {
                        server: self.base.clone(),
                        request: format!("{method} {}", path.split('?').next().unwrap_or(path)),
                        detail: e.to_string(),
                        check: how_to_check(path),
                    });
                }
                self.agent.run(request(body).map_err(|e| unreachable(e.to_string()))?)
            }
            other => other,
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (received, finished) = (header(LOG_RECEIVED), header(RUN_FINISHED));
        // A log's answer is at most a little over 1 MiB; anything else is far smaller.
        let body =
            resp.body_mut().with_config().limit(8 << 20).read_to_vec().map_err(|e| unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(Answer {
                body,
                log_received: received.and_then(|v| v.parse().ok()),
                run_finished: finished.map(|v| v == "true"),
            });
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect::<String>());
        Err(match status {
            409 => CallError::Conflict(message),
            408 | 429 | 500.. => CallError::Server { status, message },
            _ => CallError::Refused { status, message },
        })
    }

    /// Asks the server whether it is there (`/api/status`) and takes the key and token
    /// (a listing of no backfills): before a worker claims anything.
    pub fn check(&self) -> Result<(), String> {
        let say = |e: CallError| {
            match e {
            CallError::Unreachable { .. } => format!(
                "{e}; is backfilld serving there? Start it with `backfilld serve`, or pass --server URL (or set \
                 BACKFILLD_SERVER)"
            ),
            CallError::Refused { status: 401 | 403, .. } => format!(
                "{e}; log in with `backfilld login`, or pass the server's API key and a token with --api-key and --token (or BACKFILLD_API_KEY and \
                 BACKFILLD_TOKEN)"
            ),
            other => other.to_string(),
        }
        };
        self.call("GET", "/api/status", None).map_err(say)?;
        self.call("GET", "/api/backfills?_limit=0", None).map_err(say)?;
        Ok(())
    }

    /// Claims up to `limit` runs for `worker` under a lease of `lease_seconds`.
    pub fn claim(
        &self,
        worker: &str,
        limit: usize,
        lease_seconds: u64,
        scope: &Scope,
        executor_type: &str,
    ) -> Result<Vec<Value>, CallError> {
        let mut body = json!({
            "worker": worker, "limit": limit, "lease_seconds": lease_seconds, "executor_type": executor_type,
        });
        if let Some(p) = &scope.pipeline_uuid {
            body["pipeline_uuid"] = json!(p);
        }
        if let Some(b) = scope.backfill_id {
            body["backfill_id"] = json!(b);
        }
        let answer = self.call("POST", "/api/pipeline_runs/claim", Some(&body))?;
        // At most `limit`, each with an id, each once, whatever the answer holds.
        let mut seen = std::collections::HashSet::new();
        let mut runs: Vec<Value> = answer["pipeline_runs"].as_array().cloned().unwrap_or_default();
        runs.retain(|r| r["id"].as_i64().is_some_and(|id| seen.insert(id)));
        runs.truncate(limit);
        Ok(runs)
    }

    /// Renews `worker`'s lease on run `id`.
    pub fn heartbeat(&self, id: i64, worker: &str) -> Result<(), CallError> {
        self.put_run(id, &json!({"pipeline_run": {"status": "running", "worker": worker}}))
    }

    /// Reports run `id` finished, `completed` or `failed`, with its metrics, and with the
    /// last chunk of its log (where it starts in the output, and its bytes) if there is one.
    pub fn report(
        &self,
        id: i64,
        worker: &str,
        completed: bool,
        metrics: &Value,
        log: Option<(u64, &[u8])>,
    ) -> Result<(), CallError> {
        use base64::Engine;
        let status = if completed { "completed" } else { "failed" };
        let mut record = json!({"status": status, "worker": worker, "metrics": metrics});
        if let Some((offset, bytes)) = log {
            record["log"] = json!({"offset": offset, "data": base64::engine::general_purpose::STANDARD.encode(bytes)});
        }
        self.put_run(id, &json!({ "pipeline_run": record }))
    }

    /// `PUT /api/pipeline_runs/:id` with `body`; the run it answers is not read (nothing
    /// needs it, and a worker makes this call for every run).
    fn put_run(&self, id: i64, body: &Value) -> Result<(), CallError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send("PUT", &format!("/api/pipeline_runs/{id}"), Some("application/json"), bytes, &[]).map(drop)
    }

    /// Appends a chunk of run `id`'s output, which starts at `offset` in it, as `worker`
    /// (which must hold the run): how many bytes of the output the server has in all.
    pub fn append_log(&self, id: i64, worker: &str, offset: u64, bytes: Vec<u8>) -> Result<u64, CallError> {
        let path = format!("/api/pipeline_runs/{id}/logs?worker={}&offset={offset}", encode(worker));
        let answer = self.send("POST", &path, Some("application/octet-stream"), bytes, &[])?;
        let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok(value["pipeline_run_log"]["received"].as_u64().unwrap_or(0))
    }

    /// Run `id`'s log after the first `after` bytes of its output (from the start: 0).
    pub fn read_log(&self, id: i64, after: u64) -> Result<LogPage, CallError> {
        let answer = self.send("GET", &format!("/api/pipeline_runs/{id}/logs?after={after}"), None, vec![], &[])?;
        Ok(LogPage {
            received: answer.log_received.unwrap_or(after),
            finished: answer.run_finished.unwrap_or(true),
            bytes: answer.body,
        })
    }

    /// How many runs in `scope` are `running` (held by any worker): a worker waiting for the
    /// end only stops once none is, since a lease that runs out puts its date back.
    pub fn running_runs(&self, scope: &Scope) -> Result<u64, CallError> {
        let mut path = "/api/pipeline_runs?status=running&_limit=0".to_string();
        if let Some(p) = &scope.pipeline_uuid {
            path.push_str(&format!("&pipeline_uuid={}", encode(p)));
        }
        if let Some(b) = scope.backfill_id {
            path.push_str(&format!("&backfill_id={b}"));
        }
        let answer = self.call("GET", &path, None)?;
        Ok(answer["metadata"]["count"].as_u64().unwrap_or(0))
    }

    /// A backfill (with its run counts), for progress.
    pub fn backfill(&self, id: i64) -> Result<Value, CallError> {
        Ok(self.call("GET", &format!("/api/backfills/{id}?include_run_count=true"), None)?["backfill"].take())
    }
}

/// A login's session: what `POST /api/sessions` answers, the OAuth token taken out of its JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The OAuth token the JWT carries: what goes in `OAUTH-TOKEN` (or `Authorization: Bearer`).
    pub token: String,
    /// When it expires, as the server wrote it (UTC).
    pub expires: String,
    pub username: String,
}

/// Who logs in: an email or a username, as `POST /api/sessions` takes either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Email(String),
    Username(String),
}

/// A query string from its pairs, each value encoded; pairs without a value are left out.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The calls of the client commands (`backfilld backfill ...`, `run ...`, `login`): each
/// answers the API's own record (or page), as `--json` prints it.
impl Api {
    /// `POST /api/sessions`: logs in, and takes the OAuth token out of the answer's JWT.
    pub fn login(&self, who: &Login, password: &str) -> Result<Session, CallError> {
        let (key, value) = match who {
            Login::Email(e) => ("email", e),
            Login::Username(u) => ("username", u),
        };
        let body = json!({"session": {key: value, "password": password}});
        let answer = self.call("POST", "/api/sessions", Some(&body))?;
        let session = &answer["session"];
        let odd = |what: &str| CallError::Server { status: 200, message: format!("the login's answer {what}") };
        let jwt = session["token"].as_str().ok_or_else(|| odd("has no token"))?;
        let token = jwt_token(jwt).ok_or_else(|| odd("holds a token that is not a session's JWT"))?;
        Ok(Session {
            token,
            expires: session["expires"].as_str().unwrap_or_default().to_string(),
            username: session["user"]["username"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// `DELETE /api/sessions/1`: ends the session whose token this client presents.
    pub fn logout(&self) -> Result<(), CallError> {
        self.call("DELETE", "/api/sessions/1", None).map(drop)
    }

    /// `GET /api/backfills` (or a pipeline's): one page of `limit` with run counts, from
    /// `cursor`; the page's records, and the cursor of the next page if there is one.
    pub fn backfill_page(
        &self,
        pipeline: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>, u64), CallError> {
        let q = query(&[
            ("include_run_count", Some("true".into())),
            ("_limit", Some(limit.to_string())),
            ("pipeline_uuid", pipeline.map(str::to_string)),
            ("_cursor", cursor.map(str::to_string)),
        ]);
        page(self.call("GET", &format!("/api/backfills{q}"), None)?, "backfills")
    }

    /// `POST /api/pipelines/:pipeline/backfills/preview?_limit=N`: what a create and a start
    /// of `fields` would make, nothing written.
    pub fn preview_backfill(&self, pipeline: &str, fields: &Value, limit: usize) -> Result<Value, CallError> {
        let path = format!("/api/pipelines/{}/backfills/preview?_limit={limit}", encode(pipeline));
        Ok(self.call("POST", &path, Some(&json!({"backfill": fields})))?["backfill_preview"].take())
    }

    /// `POST /api/pipelines/:pipeline/backfills`: the new backfill.
    pub fn create_backfill(&self, pipeline: &str, fields: &Value) -> Result<Value, CallError> {
        let path = format!("/api/pipelines/{}/backfills", encode(pipeline));
        Ok(self.call("POST", &path, Some(&json!({"backfill": fields})))?["backfill"].take())
    }

    /// `PUT /api/backfills/:id` with `fields`: the changed backfill.
    pub fn update_backfill(&self, id: i64, fields: &Value) -> Result<Value, CallError> {
        Ok(self.call("PUT", &format!("/api/backfills/{id}"), Some(&json!({"backfill": fields})))?["backfill"].take())
    }

    /// `DELETE /api/backfills/:id`: the deleted backfill.
    pub fn delete_backfill(&self, id: i64) -> Result<Value, CallError> {
        Ok(self.call("DELETE", &format!("/api/backfills/{id}"), None)?["backfill"].take())
    }

    /// `GET /api/pipeline_runs` with `filters`: one page of `limit` from `cursor`.
    pub fn run_page(
        &self,
        filters: &[(&str, Option<String>)],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>, u64), CallError> {
        let mut pairs = filters.to_vec();
        pairs.push(("_limit", Some(limit.to_string())));
        pairs.push(("_cursor", cursor.map(str::to_string)));
        page(self.call("GET", &format!("/api/pipeline_runs{}", query(&pairs)), None)?, "pipeline_runs")
    }

    /// `GET /api/pipeline_runs/:id`.
    pub fn run(&self, id: i64) -> Result<Value, CallError> {
        Ok(self.call("GET", &format!("/api/pipeline_runs/{id}"), None)?["pipeline_run"].take())
    }

    /// `POST /api/pipeline_runs/:id/retry`: the new run of the date.
    pub fn retry_run(&self, id: i64) -> Result<Value, CallError> {
        Ok(self.call("POST", &format!("/api/pipeline_runs/{id}/retry"), None)?["pipeline_run"].take())
    }
}

/// A collection answer's records, next cursor and count.
fn page(mut answer: Value, key: &str) -> Result<(Vec<Value>, Option<String>, u64), CallError> {
    let records = match answer[key].take() {
        Value::Array(records) => records,
        _ => return Err(CallError::Server { status: 200, message: format!("the answer has no \"{key}\" list") }),
    };
    let next = answer["metadata"]["next"].as_bool().unwrap_or(false);
    let cursor = answer["metadata"]["cursor"].as_str().filter(|_| next).map(str::to_string);
    Ok((records, cursor, answer["metadata"]["count"].as_u64().unwrap_or(0)))
}

/// The OAuth token a login's JWT carries (its payload's `token`), without checking the
/// signature: only the server that signed it can, and it checks the token itself anyway.
fn jwt_token(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["token"].as_str().filter(|t| !t.is_empty()).map(str::to_string)
}

/// Whether `method path` may be sent again when its connection ended before any answer,
/// when the server may have done it already: reads, and writes that leave the same state
/// done twice (PUT, DELETE); among POSTs, a claim (the runs of an answer that never came go
/// back when their lease ends), a log chunk at an `offset` (stored by its offset, once) and
/// a backfill's preview (nothing stored). Not a create, a run's retry or a login: each
/// twice makes two.
fn safe_to_resend(method: &str, path: &str) -> bool {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = path.strip_prefix("/api/").unwrap_or("").split('/').collect();
    match method {
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" => true,
        "POST" => match segments[..] {
            ["pipeline_runs", "claim"] => true,
            ["pipeline_runs", id, "logs"] => {
                !id.is_empty() && query.split('&').any(|pair| pair.split('=').next() == Some("offset"))
            }
            ["pipelines", uuid, "backfills", "preview"] => !uuid.is_empty(),
            _ => false,
        },
        _ => false,
    }
}

/// How to find out whether a request `safe_to_resend` refuses was done, for its error.
fn how_to_check(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    if path.starts_with("/api/pipelines/") && path.ends_with("/backfills") {
        "look for it (`backfilld backfill list`) before creating it again"
    } else if path.starts_with("/api/pipeline_runs/") && path.ends_with("/retry") {
        "look for the date's new run (`backfilld run list --backfill ID`) before retrying it again"
    } else if path == "/api/sessions" {
        "log in again (a session the lost answer held expires on its own)"
    } else {
        "check what it would have changed before sending it again"
    }
}

/// Whether a request failed because its connection ended before any of the answer came.
fn closed_before_answer(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// How the server's address is found: an IP address as it is, a name once a minute. ureq
/// resolves before every request, even on a kept connection, and with a call timeout its
/// own resolver does so on a new thread each time: a thread per request, a measurable share
/// of a worker's cost per run (docs/performance.md). (ureq's resolver interface is outside
/// its semver promise: Cargo.lock pins the version.)
#[derive(Debug, Default)]
struct Resolver {
    names: std::sync::Mutex<Option<(String, std::time::Instant, ureq::unversioned::resolver::ResolvedSocketAddrs)>>,
}

/// How long a name's addresses are kept.
const RESOLVED_FOR: Duration = Duration::from_secs(60);

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if let (Ok(ip), Some(port)) = (host.parse::<std::net::IpAddr>(), uri.port_u16().or(Some(80))) {
            let mut one = self.empty();
            one.push(std::net::SocketAddr::new(ip, port));
            return Ok(one);
        }
        let key = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let mut names = self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((name, at, addrs)) = names.as_ref() {
            if *name == key && at.elapsed() < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        let addrs = ureq::unversioned::resolver::DefaultResolver::default().resolve(uri, config, timeout)?;
        *names = Some((key, std::time::Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// `server` as a base URL without a trailing slash.
pub fn base_url(server: &str) -> Result<String, String> {
    let s = server.trim();
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "--server {server}: https is not supported; backfilld serves plain HTTP (put a TLS proxy in front \
                 and give the worker the plain address)"
            ))
        }
        Some((scheme, _)) => return Err(format!("--server {server}: '{scheme}' is not http")),
        None => s,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let name_ok = |h: &str| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
        None => name_ok(host),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if !host_ok || !port_ok {
        return Err(format!("--server {server}: expected http://HOST:PORT (e.g. http://127.0.0.1:6789)"));
    }
    Ok(format!("http://{rest}"))
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_plain_http_addresses() {
        assert_eq!(base_url("http://127.0.0.1:6789/").as_deref(), Ok("http://127.0.0.1:6789"));
        assert_eq!(base_url("127.0.0.1:6789").as_deref(), Ok("http://127.0.0.1:6789"));
        assert_eq!(base_url("http://backfilld.internal").as_deref(), Ok("http://backfilld.internal"));
        assert_eq!(base_url("http://[::1]:6789").as_deref(), Ok("http://[::1]:6789"));
        for bad in ["", "http://", "ftp://x:1", "http://x:0", "http://x:99999", "http://x:1/api", "x y:1"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        assert!(base_url("https://x:1").unwrap_err().contains("https is not supported"));
    }

    #[test]
    fn a_login_s_jwt_opens_to_its_token() {
        let jwt = crate::auth::jwt::encode(&crate::auth::jwt::Claims { expires: 1.5e9, token: "t0k".into() }, b"s");
        assert_eq!(jwt_token(&jwt).as_deref(), Some("t0k"));
        assert_eq!(jwt_token("not a jwt"), None);
        assert_eq!(jwt_token("a.e30.c"), None, "a payload without a token");
    }

    #[test]
    fn queries_leave_out_what_is_not_given() {
        assert_eq!(query(&[("a", Some("x y".into())), ("b", None), ("c", Some("1".into()))]), "?a=x%20y&c=1");
        assert_eq!(query(&[("b", None)]), "");
    }

    #[test]
    fn only_requests_harmless_twice_are_sent_again() {
        for (method, path) in [
            ("GET", "/api/backfills?_limit=0"),
            ("HEAD", "/api/status"),
            ("PUT", "/api/pipeline_runs/7"),
            ("PUT", "/api/backfills/3"),
            ("DELETE", "/api/sessions/1"),
            ("OPTIONS", "/api/backfills"),
            ("POST", "/api/pipeline_runs/claim"),
            ("POST", "/api/pipeline_runs/7/logs?worker=w&offset=0"),
            ("POST", "/api/pipeline_runs/7/logs?offset=1024&worker=w"),
            ("POST", "/api/pipelines/etl/backfills/preview?_limit=20"),
        ] {
            assert!(safe_to_resend(method, path), "{method} {path}");
        }
        for (method, path) in [
            ("POST", "/api/pipelines/etl/backfills"),
            ("POST", "/api/pipeline_runs/7/retry"),
            ("POST", "/api/sessions"),
            ("POST", "/api/pipeline_runs/7/logs?worker=w"),
            ("POST", "/api/pipeline_runs/7/logs?worker=w&not_offset=1"),
            ("POST", "/api/pipeline_runs//logs?offset=0"),
            ("POST", "/api/pipelines//backfills/preview"),
            ("POST", "/api/pipeline_runs/claim/more"),
            ("PATCH", "/api/backfills/3"),
        ] {
            assert!(!safe_to_resend(method, path), "{method} {path}");
        }
    }

    #[test]
    fn an_unanswered_create_says_it_may_have_been_made_and_how_to_check() {
        let e = CallError::Unanswered {
            server: "http://x:1".into(),
            request: "POST /api/pipelines/etl/backfills".into(),
            detail: "connection reset".into(),
            check: how_to_check("/api/pipelines/etl/backfills"),
        };
        let said = e.to_string();
        assert!(said.contains("closed the connection before answering POST /api/pipelines/etl/backfills"), "{said}");
        assert!(said.contains("may or may not have been done"), "{said}");
        assert!(said.contains("`backfilld backfill list`"), "{said}");
        assert!(!e.is_transient());
        assert!(how_to_check("/api/pipeline_runs/7/retry").contains("`backfilld run list --backfill ID`"));
        assert!(how_to_check("/api/sessions").contains("log in again"));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }
}
