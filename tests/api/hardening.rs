//! What an outsider could do to the server and must not be able to: stall it with slow
//! bodies, split it by deleting its file, flood its log, lock its commands out, or slip
//! past its checks with a blank key.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::AuthConfig;
use backfilld::api::Settings;
use backfilld::service::lifecycle::Limits;
use serde_json::{json, Value};

use crate::cli::{run, serve, serve_with};
use crate::helpers::{agent, assert_error, seed_fields, spawn_app, spawn_app_tuned, BIN};
use crate::wait::eventually;

const KEY: &str = "hardening-key";

/// An answer read off a raw connection: status, head, body as JSON (if any).
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response (until its Content-Length, or the end of the stream).
fn read_response(s: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("an answer before the read timeout");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = &buf[end + 4..end + 4 + length];
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let body = serde_json::from_slice(body).unwrap_or(Value::Null);
                return Raw { status, head: head.to_ascii_lowercase(), body };
            }
        }
        assert!(n > 0, "the connection closed mid-answer: {:?}", String::from_utf8_lossy(&buf));
    }
}

/// Whether the server has closed the connection (reads end of stream, or a reset).
fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = [0u8; 1024];
    loop {
        match s.read(&mut rest) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {length}\r\n\r\n"
    )
}

fn with_body_limits(deadline: Duration, budget: usize) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.body_deadline = deadline;
        s.body_budget = budget;
    }
}

#[test]
fn a_body_that_stalls_is_answered_408_after_the_deadline_and_disconnected() {
    let app = spawn_app_tuned(
        AuthConfig::default(),
        Limits::default(),
        with_body_limits(Duration::from_millis(300), 1 << 20),
    );
    let mut s = connect(app.port);
    let t = Instant::now();
    s.write_all(post_head("/api/pipelines/p/backfills", 1000, "").as_bytes()).unwrap();
    s.write_all(br#"{"backfill": {"na"#).unwrap();
    let r = read_response(&mut s);
    let waited = t.elapsed();
    assert_eq!(r.status, 408, "{:?}", r.body);
    assert_eq!(r.body["error"]["type"], "request_timeout");
    // After the deadline (load only lengthens it), and in our envelope: the body deadline's
    // answer, not another timeout's.
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(is_closed(&mut s), "the stalled connection stayed open");
    // Nothing was written.
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
}

#[test]
fn bodies_beyond_the_shared_budget_are_503_with_retry_after_until_it_frees() {
    // The hog's body deadline leaves the probes below seconds to be refused in, on a busy
    // machine too.
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), with_body_limits(Duration::from_secs(8), 4096));
    let port = app.port;
    let mut hog = connect(port);
    hog.write_all(post_head("/api/pipelines/p/backfills", 4000, "").as_bytes()).unwrap();
    hog.write_all(b"{").unwrap();
    // Until the server has taken the hog's head, small bodies still fit: probe with reads
    // that carry a body (read and ignored, nothing written) until one is refused.
    let probe = post_head("/api/backfills", 100, "").replacen("POST", "GET", 1);
    let r = eventually("a body beyond the budget to be refused", || {
        let mut s = connect(port);
        s.write_all(probe.as_bytes()).unwrap();
        s.write_all(&[b' '; 100]).unwrap();
        let r = read_response(&mut s);
        if r.status == 200 {
            Err(format!("{:?}", r.body))
        } else {
            Ok(r)
        }
    });
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["error"]["type"], "service_unavailable");
    assert_eq!(r.body["error"]["code"], 503);
    assert!(r.head.contains("retry-after: 1"), "{}", r.head);
    // A write refused so writes nothing.
    let body = serde_json::to_vec(&json!({"backfill": seed_fields("refused")})).unwrap();
    let mut s = connect(port);
    s.write_all(post_head("/api/pipelines/p/backfills", body.len(), "").as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    assert_eq!(read_response(&mut s).status, 503);
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
    // Once the stalled body's deadline passes, its share comes back.
    assert_eq!(read_response(&mut hog).status, 408);
    let ok = app.send("POST", "/api/pipelines/p/backfills", &json!({"backfill": seed_fields("late")}));
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

#[test]
fn a_declared_body_over_the_limit_is_413_before_a_byte_of_it_is_read() {
    let app =
        spawn_app_tuned(AuthConfig::default(), Limits::default(), with_body_limits(Duration::from_secs(30), 1 << 20));
    let mut s = connect(app.port);
    let t = Instant::now();
    s.write_all(post_head("/api/pipelines/p/backfills", 2 << 20, "").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"]["type"], "payload_too_large");
    // Not waited for: the body's deadline is 30 s.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(is_closed(&mut s));
}

#[test]
fn under_auth_credentials_outside_the_body_are_checked_before_it_is_read() {
    // A 30 s body deadline: an answer within seconds means the body was never waited for.
    let app = spawn_app_tuned(
        AuthConfig::new(true, &[KEY.into()]),
        Limits::default(),
        with_body_limits(Duration::from_secs(30), 1 << 20),
    );
    let token = app.add_token("t", None);
    let port = app.port;
    let cases = [
        (String::new(), 401, "invalid_api_key"),
        ("X-API-KEY: wrong\r\n".to_string(), 401, "invalid_api_key"),
        (format!("X-API-KEY: {KEY}\r\n"), 403, "unauthorized_access"),
        (format!("X-API-KEY: {KEY}\r\nOAUTH-TOKEN: nonsense\r\n"), 401, "invalid_oauth_token"),
        ("OAUTH-TOKEN: nonsense\r\n".to_string(), 401, "invalid_oauth_token"),
        // A valid token but the key only possibly in the body: a large body is not searched.
        (format!("OAUTH-TOKEN: {token}\r\n"), 401, "invalid_api_key"),
    ];
    for (headers, status, kind) in cases {
        let mut s = connect(port);
        let t = Instant::now();
        s.write_all(post_head("/api/pipelines/p/backfills", 1 << 20, &headers).as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!((r.status, r.body["error"]["type"].as_str()), (status, Some(kind)), "{headers:?}");
        assert!(t.elapsed() < Duration::from_secs(20), "{headers:?} waited for the body");
    }
}

/// Reads what the server sends on a stalled connection until it closes it (end of stream or a
/// reset), for at most until `deadline`: the answer's status, if one was read (a reset can
/// lose it), or `Err` when the connection was still open at the deadline.
fn refusal(s: &mut TcpStream, deadline: Instant) -> Result<Option<u16>, String> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("still open ({e}) after {:?}", String::from_utf8_lossy(&answer))),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok()))
}

/// 2,000 connections each send the head of a 1 MiB POST and nearly all of its body, then
/// stall, all at once (four senders, as fast as they can), against the real binary (one
/// worker, `--body-timeout 2`), while a client it already serves asks `/api/status` every
/// 20 ms. The outcomes: every probe is answered, before a deadline of seconds; every stalled
/// connection is refused (`refused` lists the statuses it may have been answered with) and
/// closed; nothing is written. How much memory the server takes meanwhile and how fast it
/// answers the probe are timings of a build: examples/bench.rs measures both against their
/// targets ("stalled bodies on a fresh server"), on the release build.
fn stalled_bodies(extra: &[&str], refused: &[u16]) {
    const CONNECTIONS: usize = 2000;
    const BODY: usize = 1 << 20;
    /// How long a probe may wait for its answer: far longer than any answer takes, short of
    /// a server that has stopped answering.
    const PROBE_DEADLINE: Duration = Duration::from_secs(10);
    // The attack loads both cores: one at a time.
    let _turn = crate::helpers::busy_turn();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let args = [&["--workers", "1", "--body-timeout", "2"], extra].concat();
    let mut server = serve_with(&db, &args, &[]);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (connected, is_connected) = std::sync::mpsc::channel();
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u64, String> {
            // One keep-alive connection, made before the attack and kept (each answer is read
            // whole, so that the agent can use the connection again): a client the server
            // serves, not a new one waiting to be accepted behind the attackers.
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(PROBE_DEADLINE))
                .build()
                .into();
            let url = format!("http://127.0.0.1:{port}/api/status");
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                // As the server's own clients do (`client::Api::send`): a kept connection
                // closed as the request went out (idle ones give way to new clients) is
                // not an answer, and the request goes again on another.
                let mut r = match agent.get(&url).call() {
                    Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => agent.get(&url).call(),
                    other => other,
                }
                .map_err(|e| format!("after {:?}: {e}", t.elapsed()))?;
                if r.status() != 200 {
                    return Err(format!("answered {}", r.status()));
                }
                r.body_mut().read_to_string().map_err(|e| e.to_string())?;
                answered += 1;
                if answered == 1 {
                    connected.send(()).unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(answered)
        })
    };
    is_connected.recv().expect("the first probe answered");
    let head = post_head("/api/pipelines/p/backfills", BODY, "");
    let filler = vec![b' '; BODY - 1];
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (head, filler) = (head.clone(), filler.clone());
            std::thread::spawn(move || {
                (0..CONNECTIONS / 4)
                    .map(|_| {
                        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
                        // Refused ones are closed by the server; a failed write is expected.
                        let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(&filler));
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sockets: Vec<TcpStream> = senders.into_iter().flat_map(|h| h.join().unwrap()).collect();
    // Past the 2 s body deadline, every stalled connection is answered and closed: waited
    // for (the probe going on meanwhile), up to a deadline that only a hang reaches.
    let deadline = Instant::now() + crate::wait::DEADLINE;
    let ends: Vec<Result<Option<u16>, String>> = sockets.iter_mut().map(|s| refusal(s, deadline)).collect();
    stop.store(true, Ordering::Relaxed);
    let probes = probe.join().unwrap();
    let log = server.stop_and_read_log();
    let open = ends.iter().filter(|e| e.is_err()).count();
    assert_eq!(open, 0, "stalled connections left open: {:?}", ends.iter().find(|e| e.is_err()));
    let mut statuses: Vec<u16> = ends.into_iter().filter_map(|e| e.unwrap()).collect();
    statuses.sort();
    statuses.dedup();
    assert!(statuses.iter().all(|s| refused.contains(s)), "answered {statuses:?}; expected only {refused:?}");
    match probes {
        Ok(answered) => assert!(answered > 1, "the probe was answered {answered} time(s)"),
        Err(e) => panic!("/api/status was not answered within {PROBE_DEADLINE:?} during the attack: {e}\n{log}"),
    }
    // Nothing was written.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let written: i64 = conn.query_row("SELECT COUNT(*) FROM backfill", [], |r| r.get(0)).unwrap();
    assert_eq!(written, 0);
}

#[test]
fn stalled_bodies_are_refused_while_other_requests_are_answered() {
    // Answered 408 at the body deadline, or 503 at once beyond the server's body budget.
    stalled_bodies(&[], &[408, 503]);
}

#[test]
fn stalled_bodies_under_auth_are_refused_while_other_requests_are_answered() {
    // Without a key: 401 before the body is read.
    stalled_bodies(&["--require-auth", "--api-key", KEY], &[401]);
}

#[test]
fn writes_are_refused_once_the_data_file_is_deleted_or_replaced() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("before"));
    // Ready: it can write. (`/api/status`, the liveness check, says nothing of the file.)
    assert_eq!(app.get("/api/ready").body, json!({"ready": true}));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app.db_path.display()));
    }
    let r = app.send("POST", "/api/pipelines/p/backfills", &json!({"backfill": seed_fields("after")}));
    let message = assert_error(&r, 503, "service_unavailable");
    assert!(message.contains("deleted"), "{message}");
    assert_error(&app.put_backfill(id, json!({"name": "renamed"})), 503, "service_unavailable");
    // Not ready any more, though alive.
    assert!(assert_error(&app.get("/api/ready"), 503, "service_unavailable").contains("deleted"));
    assert_eq!(app.get("/api/status").status, 200);
    // Reads of the open file go on, and no empty file appears at the path.
    for _ in 0..20 {
        let r = app.get("/api/backfills");
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["metadata"]["count"], 1);
    }
    assert!(!app.db_path.exists(), "the file was created again");
}

#[test]
fn a_replaced_data_file_is_refused_too() {
    let app = spawn_app();
    app.create_backfill("p", seed_fields("before"));
    let other = app.dir.path().join("other.db");
    drop(backfilld::db::open(&other).unwrap());
    std::fs::rename(&other, &app.db_path).unwrap();
    let r = app.send("POST", "/api/pipelines/p/backfills", &json!({"backfill": seed_fields("after")}));
    let message = assert_error(&r, 503, "service_unavailable");
    assert!(message.contains("replaced"), "{message}");
}

#[test]
fn every_request_gets_an_access_line_rejected_or_not_and_garbage_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let mut server = serve(&db, &["--require-auth", "--api-key", KEY]);
    let url = |path: &str| format!("{}{path}", server.base);
    let agent = agent();
    assert_eq!(agent.get(url("/api/backfills?marker=nokey")).call().unwrap().status(), 401);
    assert_eq!(agent.get(url("/api/backfills?marker=notoken")).header("X-API-KEY", KEY).call().unwrap().status(), 403);
    let bad = agent.get(url("/api/backfills?marker=badtoken")).header("X-API-KEY", KEY).header("OAUTH-TOKEN", "x");
    assert_eq!(bad.call().unwrap().status(), 401);
    // Malformed requests actix refuses before our code: a few lines at most, none an ERROR.
    for _ in 0..40 {
        let mut s = connect(server.port);
        s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nBad: \x01\r\n\r\n").unwrap();
        let _ = read_response(&mut s);
    }
    let log = server.stop_and_read_log();
    for (marker, status) in [("nokey", 401), ("notoken", 403), ("badtoken", 401)] {
        let line = format!("GET /api/backfills?marker={marker} HTTP/1.1\" {status}");
        assert_eq!(log.matches(&line).count(), 1, "no access line {line:?} in:\n{log}");
    }
    let client_errors = log.lines().filter(|l| l.contains("parse error")).count();
    assert!(
        (1..=backfilld::commands::logging::BURST as usize).contains(&client_errors),
        "{client_errors} lines:\n{log}"
    );
    assert!(!log.contains(" ERROR "), "{log}");
}

#[test]
fn commands_wait_for_a_servers_long_write_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    drop(backfilld::db::open(&db).unwrap());
    // Another process's write transaction for 7 s: longer than SQLite's usual 5 s wait.
    let mut holder = rusqlite::Connection::open(&db).unwrap();
    let (locked, is_locked) = std::sync::mpsc::channel();
    let hold = std::thread::spawn(move || {
        let tx = holder.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        tx.execute(
            "INSERT INTO pipeline_schedule (name, pipeline_uuid, created_at, updated_at) VALUES ('x', 'p', 0, 0)",
            [],
        )
        .unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        tx.commit().unwrap();
    });
    is_locked.recv().unwrap();
    let t = Instant::now();
    let out = run(&["token", "create", "--name", "late"], &db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(t.elapsed() >= Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(stderr.contains("waiting for the data file's write lock"), "{stderr}");
    hold.join().unwrap();
    // Reading commands take no write lock at all.
    let list = run(&["token", "list"], &db);
    assert!(String::from_utf8_lossy(&list.stdout).contains("late"));
}

#[test]
fn a_second_server_on_a_served_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let _first = serve(&db, &[]);
    let t = Instant::now();
    let out = run(&["serve", "--bind", "127.0.0.1:0"], &db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("being served by another backfilld"), "{stderr}");
    // Refused at once, not after waiting for the other server.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn blank_api_keys_are_refused_at_start_and_keys_are_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    for keys in [" ", "a,,b", "a, "] {
        let out = Command::new(BIN)
            .args(["serve", "--require-auth", "--bind", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("BACKFILLD_API_KEY", keys)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{keys:?}: {stderr}");
        assert!(stderr.contains("blank"), "{stderr}");
    }
    let token = String::from_utf8(run(&["token", "create", "--name", "t"], &db).stdout).unwrap().trim().to_string();
    let server = serve_with(&db, &["--require-auth"], &[("BACKFILLD_API_KEY", "one , two")]);
    let agent = agent();
    let get = |query: &str| {
        agent
            .get(format!("{}/api/backfills{query}", server.base))
            .header("OAUTH-TOKEN", &token)
            .call()
            .unwrap()
            .status()
    };
    assert_eq!(get("?api_key=two"), 200);
    assert_eq!(get("?api_key=one"), 200);
    assert_eq!(get("?api_key=+"), 401);
    assert_eq!(get("?api_key=%20two"), 401);
}

#[test]
fn head_answers_on_every_get_route_without_a_body() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    for path in ["/api/status".to_string(), "/api/backfills".into(), format!("/api/backfills/{id}")] {
        let mut s = connect(app.port);
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let (head, body) = all.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(body.is_empty(), "{path}: {body:?}");
    }
}

#[test]
fn a_run_cannot_go_back_to_initial() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let run = app.run_ids(id)[0];
    assert_eq!(app.report_run(run, "running").status, 200);
    let message = assert_error(&app.report_run(run, "initial"), 409, "record_conflict");
    assert!(message.contains("initial"), "{message}");
    let r = app.get(&format!("/api/pipeline_runs/{run}"));
    assert_eq!(r.body["pipeline_run"]["status"], "running");
}

#[test]
fn runs_page_by_cursor_and_deep_offsets_answer_off_the_workers() {
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), |_| {});
    // 10,081 minutely runs: deep enough for an offset past the slow-read threshold.
    let id = app.create_backfill(
        "p",
        json!({"name": "deep", "start_datetime": "2023-01-01T00:00:00Z", "end_datetime": "2023-01-08T00:00:00Z",
            "interval_type": "minute", "interval_units": 1}),
    );
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let total = 7 * 24 * 60 + 1;
    let first = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1")).body;
    let newest = first["pipeline_runs"][0]["id"].as_i64().unwrap();
    assert_eq!(first["metadata"]["count"], total);
    // A deep offset (a slow read) gives the same rows as the arithmetic says.
    let deep = app.get("/api/pipeline_runs?_offset=10000&_limit=3&pipeline_uuid=p").body;
    let ids: Vec<i64> = deep["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [newest - 10_000, newest - 10_001, newest - 10_002]);
    assert_eq!(deep["metadata"]["count"], total);
    // Cursor paging visits every run once, newest first, with the status filter too.
    for run in app.run_ids(id).into_iter().take(3) {
        assert_eq!(app.report_run(run, "failed").status, 200);
    }
    let mut seen = vec![];
    let mut url = format!("/api/pipeline_runs?backfill_id={id}&status=initial&_limit=1000");
    loop {
        let page = app.get(&url).body;
        assert_eq!(page["metadata"]["count"], total - 3);
        seen.extend(page["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
        match page["metadata"]["cursor"].as_str() {
            Some(c) => url = format!("/api/pipeline_runs?backfill_id={id}&status=initial&_limit=1000&_cursor={c}"),
            None => {
                assert_eq!(page["metadata"]["next"], false);
                break;
            }
        }
    }
    assert_eq!(seen.len(), total as usize - 3);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
    let failed = app.get("/api/pipeline_runs?status=failed").body;
    assert_eq!(failed["metadata"]["count"], 3);
    assert_eq!(failed["pipeline_runs"].as_array().unwrap().len(), 3);
    assert_error(&app.get("/api/pipeline_runs?_cursor=r1.5&_offset=1"), 400, "api_resource_error");
    assert_error(&app.get("/api/pipeline_runs?_cursor=1.5.5"), 400, "api_resource_error");
}

#[test]
fn a_folder_the_user_cannot_write_is_named_as_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    // One file there already, one to be made.
    drop(backfilld::db::open(&ro.join("old.db")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    for name in ["new.db", "old.db"] {
        // Root may write anywhere: run the command as an unprivileged user then.
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let out = cmd.args(["token", "list", "--db"]).arg(ro.join(name)).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("permission denied"), "{name}: {stderr}");
        assert!(stderr.contains(&format!("the folder {}", ro.display())), "{name}: {stderr}");
    }
}

/// Whether the server has closed `s` by now (end of stream or a reset), without waiting.
fn closed_now(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut rest = [0u8; 1024];
    let closed = loop {
        match s.read(&mut rest) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// A keep-alive connection from `from` that has been answered once and is now idle, as a
/// poller's is between polls.
fn idle_poller(from: std::net::Ipv4Addr, port: u16) -> TcpStream {
    let mut s = crate::helpers::connect_from(from, port);
    s.set_read_timeout(Some(crate::wait::DEADLINE)).unwrap();
    s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    s
}

/// `helpers::connect_from`, or `None` when the connection is refused.
fn try_connect_from(from: std::net::Ipv4Addr, port: u16) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into()).ok()?;
    socket.connect(&std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)).into()).ok()?;
    Some(socket.into())
}

/// Idle keep-alive connections give their places to new ones: far more pollers than the
/// cap, each polling on its kept connection more often than actix's keep-alive would close
/// it (and connecting again when the server closes it), and meanwhile a new client's read
/// and a worker's claim, under authentication, are answered within the deadline. (A small
/// cap stands for the default one: the property is the same, with fewer sockets on a busy
/// machine.)
#[test]
fn idle_connections_give_way_to_new_clients_and_workers() {
    const CAP: usize = 16;
    let app = crate::helpers::spawn_app_capped(
        crate::helpers::AuthConfig::new(true, &[KEY.to_string()]),
        Limits::default(),
        |_| {},
        CAP,
    );
    let token = app.add_token("w", None);
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = app.port;
    let pollers: Vec<_> = (0..CAP * 3)
        .map(|i| {
            let (stop, polls) = (stop.clone(), polls.clone());
            std::thread::spawn(move || {
                let from = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % 4) as u8);
                while !stop.load(Ordering::Relaxed) {
                    let Some(mut s) = try_connect_from(from, port) else {
                        // Refused while the server's queue of connections to accept is full.
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    // Polls until the server closes the connection (or it is not accepted
                    // within the read timeout), then connects again.
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").is_err() {
                            break;
                        }
                        let mut buf = [0u8; 4096];
                        match s.read(&mut buf) {
                            Ok(n) if n > 0 => polls.fetch_add(1, Ordering::Relaxed),
                            _ => break,
                        };
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            })
        })
        .collect();
    eventually("the pollers to hold the server's places", || polls.load(Ordering::Relaxed) >= CAP * 3);
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(crate::wait::DEADLINE))
        .build()
        .into();
    let call = |method: &str, path: &str, body: &str| {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(app.url(path))
            .header("X-API-KEY", KEY)
            .header("OAUTH-TOKEN", &token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .unwrap();
        client.run(req).map(|r| r.status().as_u16()).map_err(|e| e.to_string())
    };
    let read = call("GET", "/api/backfills", "");
    let claim = call("POST", "/api/pipeline_runs/claim", r#"{"worker": "w1", "limit": 1}"#);
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    assert_eq!(read, Ok(200));
    assert_eq!(claim, Ok(200));
}

/// One address cannot hold most places while another comes: its connections with requests
/// in flight (bodies that stall) beyond half the cap are shut down, and the newcomer is
/// answered.
#[test]
fn one_address_cannot_hold_most_places_while_another_comes() {
    const CAP: usize = 16;
    let app = crate::helpers::spawn_app_capped(
        AuthConfig::default(),
        Limits::default(),
        with_body_limits(Duration::from_secs(3600), 1 << 30),
        CAP,
    );
    let hog = std::net::Ipv4Addr::new(127, 0, 2, 1);
    let head = post_head("/api/pipelines/p/backfills", 100, "");
    let stalled: Vec<TcpStream> = (0..CAP - 2)
        .map(|_| {
            let mut s = crate::helpers::connect_from(hog, app.port);
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(b"{").unwrap();
            s
        })
        .collect();
    let mut newcomer = idle_poller(std::net::Ipv4Addr::new(127, 0, 2, 2), app.port);
    eventually("the address's places beyond half the cap to be taken back", || {
        stalled.iter().filter(|s| closed_now(s)).count() >= CAP - 2 - CAP / 2
    });
    newcomer.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut newcomer).status, 200);
}

/// One address cannot take the last places with requests in flight: with more connections
/// than the cap, each holding a body that stalls (those past the cap wait to be accepted),
/// it keeps at most nine tenths of the places, and a client from another address is
/// accepted and answered. On two worker threads, between which actix splits the cap, as
/// `backfilld serve` has on two CPUs: the places kept free must be free on some thread.
#[test]
fn one_address_with_every_place_busy_leaves_room_for_another() {
    const CAP: usize = 16;
    let app = crate::helpers::spawn_app_served(
        AuthConfig::default(),
        Limits::default(),
        with_body_limits(Duration::from_secs(3600), 1 << 30),
        CAP,
        2,
    );
    let hog = std::net::Ipv4Addr::new(127, 0, 2, 3);
    let head = post_head("/api/pipelines/p/backfills", 100, "");
    let stalled: Vec<TcpStream> = (0..CAP * 2)
        .map(|_| {
            let mut s = crate::helpers::connect_from(hog, app.port);
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(b"{").unwrap();
            s
        })
        .collect();
    // Behind all of them in the queue of connections to accept.
    let mut newcomer = idle_poller(std::net::Ipv4Addr::new(127, 0, 2, 4), app.port);
    newcomer.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut newcomer).status, 200);
    drop(stalled);
}

/// The issue's scenario, at the server's default cap: 1,000 keep-alive connections from 8
/// addresses, each polling `/api/status` every 3 s (on one thread: `pollers`), and meanwhile
/// a new client's requests, each on a new connection, and a worker's claims, under
/// authentication, are answered, in three rounds a poll period apart (so that the worker's
/// kept connection has been idle longer than most when it claims again). Debug build on a
/// busy machine: only the generous deadline bounds the time (the bench measures it).
#[test]
fn a_thousand_polling_connections_leave_room_for_new_clients_and_workers() {
    const POLLERS: usize = 1000;
    let _turn = crate::helpers::busy_turn();
    let cap = backfilld::cli::DEFAULT_MAX_CONNECTIONS as usize;
    // The pollers' sockets, the server's (two files a connection) and the other tests'.
    crate::pollers::allow_open_files((POLLERS + 2 * cap + 1024) as u64).unwrap();
    let app =
        crate::helpers::spawn_app_served(AuthConfig::new(true, &[KEY.to_string()]), Limits::default(), |_| {}, cap, 2);
    let token = app.add_token("w", None);
    let worker =
        backfilld::client::Api::new(&app.base, Some(KEY.into()), Some(token.clone()), 2, crate::wait::DEADLINE)
            .unwrap();
    let created = worker.create_backfill("polled", &seed_fields("polled")).unwrap();
    let id = created["id"].as_i64().unwrap();
    worker.update_backfill(id, &json!({"status": "initial"})).unwrap();
    let from: Vec<std::net::Ipv4Addr> = (1..=8).map(|k| std::net::Ipv4Addr::new(127, 0, 3, k)).collect();
    let period = Duration::from_secs(3);
    let pollers = crate::pollers::Pollers::start(app.port, POLLERS, &from, "/api/status", period, period);
    eventually("a poll of each poller's worth answered", || pollers.answered() >= POLLERS as u64);
    // A new client: a request on a new connection each time (no kept connection to reuse).
    let newcomer: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(crate::wait::DEADLINE))
        .max_idle_connections(0)
        .build()
        .into();
    let ask = |path: &str| {
        newcomer
            .get(app.url(path))
            .header("X-API-KEY", KEY)
            .header("OAUTH-TOKEN", &token)
            .header("Connection", "close")
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    };
    let scope = backfilld::client::Scope { pipeline_uuid: None, backfill_id: Some(id) };
    for round in 0..3 {
        if round > 0 {
            let seen = pollers.answered();
            eventually("a poll period's worth of polls", || pollers.answered() >= seen + POLLERS as u64);
        }
        assert_eq!(ask("/api/status"), Ok(200), "round {round}");
        assert_eq!(ask("/api/backfills?_limit=1"), Ok(200), "round {round}");
        let runs = worker.claim("w1", 1, 60, &scope, "local_python").map_err(|e| e.to_string());
        assert_eq!(runs.map(|r| r.len()), Ok(1), "round {round}");
    }
    let tally = pollers.stop();
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert!(tally.closed > 0, "the server closed idle connections to make room: {tally:?}");
}
