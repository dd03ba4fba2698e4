//! The real binary: serving, restarting, refusing bad start-ups, import and tokens.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::helpers::{agent, assert_error, backfill, exchange, import_file, reply, BIN};
use crate::wait::eventually;

/// A `backfilld serve` child process on a loopback port of its own choosing; killed when
/// dropped. Its standard error is read as it comes (a pipe nobody reads fills up after some
/// 64 KiB of access lines, and then the server blocks on its next log line) and kept.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub port: u16,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Stops the server and returns everything it wrote to standard error.
    pub fn stop_and_read_log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log.lock().unwrap().clone()
    }
}

/// The real server on one worker thread.
pub fn serve(db: &Path, extra: &[&str]) -> Served {
    serve_with(db, &[&["--workers", "1"], extra].concat(), &[])
}

/// `serve` with `env` set. The server binds port 0 and its start-up line says which port it
/// got: a port the test picked and freed for it could be taken meanwhile by another test's
/// server, which would then answer in its place.
pub fn serve_with(db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut command = Command::new(BIN);
    command.args(["serve", "--bind", "127.0.0.1:0", "--db"]).arg(db).args(extra).envs(env.iter().copied());
    serve_by(command)
}

/// A server `command` starts (`backfilld serve --bind 127.0.0.1:0 ...`, or a shell that ends
/// by running it), as `serve_with` does.
pub fn serve_by(mut command: Command) -> Served {
    let mut child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(port) = serving_port(&line) {
                let _ = port_tx.send(port);
            }
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let port = eventually("the server to say where it serves", || match port_rx.try_recv() {
        Ok(port) => Ok(port),
        Err(_) => match child.try_wait().unwrap() {
            Some(status) => panic!("the server exited ({status}) before serving:\n{}", log.lock().unwrap()),
            None => Err(log.lock().unwrap().clone()),
        },
    });
    Served { child, base: format!("http://127.0.0.1:{port}"), port, log, reader: Some(reader) }
}

/// The port in the start-up line `backfilld ... serving FILE on http://127.0.0.1:PORT ...`
/// (in either log format).
fn serving_port(line: &str) -> Option<u16> {
    let (_, after) = line.split_once(" serving ")?;
    let (_, addr) = after.split_once(" on http://127.0.0.1:")?;
    addr.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Creates, through `server`, a backfill in pipeline `p` of one run a minute from
/// 2023-01-01 00:00 to `end`; returns its id.
fn create_minutely(server: &Served, name: &str, end: &str) -> i64 {
    let created = reply(
        agent()
            .post(format!("{}/api/pipelines/p/backfills", server.base))
            .send_json(json!({"backfill": {"name": name, "start_datetime": "2023-01-01T00:00:00Z",
                "end_datetime": end, "interval_type": "minute", "interval_units": 1}}))
            .unwrap(),
    );
    created.body["backfill"]["id"].as_i64().unwrap()
}

pub fn run(args: &[&str], db: &Path) -> std::process::Output {
    Command::new(BIN).args(args).arg("--db").arg(db).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/nested/backfilld.db");
    {
        let _server = serve(&db, &[]);
        let out =
            import_file(&db, &dir.path().join("in.json"), &json!({"backfills": [backfill(7, "p", "2023-01-01")]}));
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("imported 1 backfill(s) and 0 pipeline run(s) into {}", db.display())
        );
    }
    let server = serve(&db, &[]);
    let r = reply(agent().get(format!("{}/api/backfills?include_run_count=true", server.base)).call().unwrap());
    assert_eq!(r.body["backfills"][0]["id"], 7);
    assert_eq!(r.body["backfills"][0]["total_run_count"], 25);
}

#[test]
fn the_access_log_has_a_line_per_request_and_never_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("b.db"), &[]);
    let secret = "sekrit-key-value";
    let r = reply(agent().get(format!("{}/api/backfills?_limit=3&api_key={secret}", server.base)).call().unwrap());
    assert_eq!(r.status, 200);
    let url = format!("{}/api/backfills?api%5Fkey={secret}", server.base);
    assert_eq!(reply(agent().get(url).call().unwrap()).status, 200);
    // Tokens and passwords in a URL too, whoever put them there.
    let url = format!("{}/api/backfills?oauth_token={secret}&Password={secret}&token={secret}", server.base);
    assert_eq!(reply(agent().get(url).call().unwrap()).status, 200);
    let log = server.stop_and_read_log();
    assert!(log.contains("GET /api/backfills?_limit=3&api_key=[redacted] HTTP/1.1\" 200"), "{log}");
    assert!(log.contains("GET /api/backfills?api%5Fkey=[redacted] HTTP/1.1\" 200"), "{log}");
    assert!(
        log.contains("GET /api/backfills?oauth_token=[redacted]&Password=[redacted]&token=[redacted] HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(!log.contains(secret), "{log}");
}

#[test]
fn allowed_hosts_come_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let get = |server: &Served, host: &str| {
        let s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        exchange(s, server.port, "GET", "/api/status", &[("Host", host)], b"")
    };
    let server = serve(&dir.path().join("a.db"), &["--allowed-host", "backfilld.internal", "--allowed-host", ".corp"]);
    assert_eq!(get(&server, "backfilld.internal:6789").status, 200);
    assert_eq!(get(&server, "ci.corp").status, 200);
    assert_eq!(get(&server, "localhost").status, 200);
    let message = assert_error(&get(&server, "rebound.example"), 403, "host_not_allowed");
    assert!(message.contains("--allowed-host rebound.example"), "{message}");
    drop(server);
    let server = serve_with(&dir.path().join("b.db"), &[], &[("BACKFILLD_ALLOWED_HOST", "one.internal,two.internal")]);
    assert_eq!(get(&server, "two.internal").status, 200);
    assert_eq!(get(&server, "three.internal").status, 403);
    drop(server);
    // A name that is not one is refused at start, saying what a host name is.
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--allowed-host", "http://x.com"])
        .arg("--db")
        .arg(dir.path().join("c.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no scheme"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn auth_without_a_key_is_refused_at_start_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    for args in [vec!["serve", "--bind", "0.0.0.0:0"], vec!["serve", "--bind", "127.0.0.1:0", "--require-auth"]] {
        let out = Command::new(BIN).args(&args).arg("--db").arg(&db).env_remove("BACKFILLD_API_KEY").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--api-key") && err.contains("BACKFILLD_API_KEY"), "{err}");
    }
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.txt");
    std::fs::write(&db, "These are my notes. They are long enough to fill a SQLite header, and then some more text.")
        .unwrap();
    for args in [vec!["serve", "--bind", "127.0.0.1:0"], vec!["token", "list"]] {
        let out = run(&args, &db);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a backfilld database"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "application_id", backfilld::db::APPLICATION_ID).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let out = run(&["serve", "--bind", "127.0.0.1:0"], &db);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema version 99, newer"));
}

#[test]
fn import_reads_stdin_and_a_bad_record_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let mut child = Command::new(BIN)
        .args(["import", "-", "--db"])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let doc = json!({"backfills": [backfill(1, "p", "2023-01-01"), backfill(2, "p", "2023-01-02")]});
    child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("imported 2 backfill(s)"));

    let mut bad = backfill(4, "p", "2023-01-04");
    bad["interval_type"] = json!("fortnight");
    let doc = json!({"backfills": [backfill(3, "p", "2023-01-03"), bad]});
    let out = import_file(&db, &dir.path().join("bad.json"), &doc);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backfills[1].interval_type: unknown interval type 'fortnight'"), "{err}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM backfill", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2, "the bad file loaded nothing");
}

#[test]
fn tokens_are_created_listed_used_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let out = run(&["token", "create", "--name", "ci", "--expires-in", "30d"], &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    let raw = std::fs::read(&db).unwrap();
    assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is not stored");

    let dup = run(&["token", "create", "--name", "ci"], &db);
    assert_eq!(dup.status.code(), Some(1));
    let bad = run(&["token", "create", "--name", "x", "--expires-in", "soon"], &db);
    assert_eq!(bad.status.code(), Some(1));

    let list = String::from_utf8(run(&["token", "list"], &db).stdout).unwrap();
    assert!(list.starts_with("ci\tcreated ") && list.contains("expires "), "{list}");

    let server = serve(&db, &["--require-auth", "--api-key", "k1"]);
    let call = || {
        reply(
            agent()
                .get(format!("{}/api/backfills", server.base))
                .header("X-API-KEY", "k1")
                .header("OAUTH-TOKEN", &token)
                .call()
                .unwrap(),
        )
    };
    assert_eq!(call().status, 200);
    let revoke = run(&["token", "revoke", "ci"], &db);
    assert!(revoke.status.success());
    assert_error(&call(), 401, "invalid_oauth_token");
    assert_eq!(run(&["token", "revoke", "ci"], &db).status.code(), Some(1));
}

#[test]
fn a_serve_killed_while_starting_a_100000_run_backfill_keeps_all_runs_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let wal = dir.path().join("b.db-wal");
    let mut server = serve(&db, &[]);
    let client = agent();
    // Every minute from 2023-01-01 00:00 to 2023-03-11 10:39: exactly 100,000 run dates.
    let id = create_minutely(&server, "big", "2023-03-11T10:39:00Z");
    let wal_before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    // Start it, and kill the server (SIGKILL) once the transaction is visibly writing.
    let url = format!("{}/api/backfills/{id}", server.base);
    let start = std::thread::spawn(move || {
        agent().put(url).send_json(json!({"backfill": {"status": "initial"}})).map(|r| r.status().as_u16()).ok()
    });
    eventually("the start to write 4 MiB", || {
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) >= wal_before + (4 << 20)
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let answered = start.join().unwrap();

    // After a restart the backfill has all of its runs or none, and agrees with itself.
    let server = serve(&db, &[]);
    let runs =
        reply(client.get(format!("{}/api/pipeline_runs?backfill_id={id}&_limit=0", server.base)).call().unwrap());
    let count = runs.body["metadata"]["count"].as_u64().unwrap();
    let b = reply(client.get(format!("{}/api/backfills/{id}", server.base)).call().unwrap()).body["backfill"].clone();
    match count {
        0 => {
            assert_eq!(b["started_at"], serde_json::Value::Null);
            assert_eq!(answered, None, "a start answered 200 must have committed");
        }
        100_000 => assert!(b["started_at"].is_string()),
        other => panic!("a partial start survived: {other} runs"),
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_listing_imports_back_into_an_identical_listing() {
    // Arrange: backfills made through the API, one started with its runs progressed.
    let source = crate::helpers::spawn_app();
    let id = source.create_backfill("p", crate::helpers::seed_fields("started"));
    source.put_backfill(id, json!({"status": "initial"}));
    source.report_run(source.run_ids(id)[0], "running");
    // Runs under a lease, one finished by its worker, one lost and queued again; a paused backfill.
    let claimed = source.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w", "limit": 2}));
    let held: Vec<i64> =
        claimed.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let done = json!({"pipeline_run": {"status": "completed", "worker": "w", "metrics": {"rows": 3}}});
    assert_eq!(source.send("PUT", &format!("/api/pipeline_runs/{}", held[0]), &done).status, 200);
    assert_eq!(source.send("POST", &format!("/api/pipeline_runs/{}/retry", held[0]), &json!({})).status, 200);
    let mut fields = crate::helpers::seed_fields("draft");
    fields["variables"] = json!({"region": "eu"});
    fields["settings"] = json!({"skip": true, "pipeline_run_limit": "2"});
    let draft = source.create_backfill("q", fields);
    assert_eq!(source.put_backfill(draft, json!({"is_paused": true})).status, 200);
    let listing = source.get("/api/backfills?include_run_count=true").body;
    let runs = source.get("/api/pipeline_runs?_limit=1000").body;

    // Act: import the listing's own output into a fresh file.
    let target = crate::helpers::spawn_app();
    target.import(&json!({"backfills": listing["backfills"], "pipeline_runs": runs["pipeline_runs"]}));

    // Assert: the same listing, run counts included, and the same runs, leases and all.
    assert_eq!(target.get("/api/backfills?include_run_count=true").body, listing);
    assert_eq!(target.get("/api/pipeline_runs?_limit=1000").body, runs);
    // The imported lease is a lease: its holder reports on it.
    let report = json!({"pipeline_run": {"status": "running", "worker": "w"}});
    assert_eq!(target.send("PUT", &format!("/api/pipeline_runs/{}", held[1]), &report).status, 200);
}

/// Claims and reports from one of four clients until the server dies, counting its reports
/// in `reported` too; the clients stop at the first failed request.
fn claim_until_killed(base: &str, worker: &str, reported: &AtomicUsize) -> usize {
    let client = agent();
    let mut done = 0;
    loop {
        let Ok(resp) = client
            .post(format!("{base}/api/pipeline_runs/claim"))
            .send_json(json!({"worker": worker, "limit": 5, "lease_seconds": 2}))
        else {
            return done;
        };
        let claimed = reply(resp);
        let Some(runs) = claimed.body["pipeline_runs"].as_array() else { return done };
        // Every other run is reported completed; the rest stay held.
        for r in runs.iter().step_by(2) {
            let report = json!({"pipeline_run": {"status": "completed", "worker": worker}});
            if client.put(format!("{base}/api/pipeline_runs/{}", r["id"])).send_json(report).is_err() {
                return done;
            }
            done += 1;
            reported.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn a_serve_killed_during_a_stream_of_claims_leaves_every_running_run_under_a_lease() {
    let _turn = crate::helpers::busy_turn();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let fast = ["--workers", "2", "--min-lease-seconds", "1", "--lease-check-ms", "100"];
    let mut server = serve_with(&db, &fast, &[]);
    let client = agent();
    // 2,000 dates, one a minute.
    let id = create_minutely(&server, "stream", "2023-01-02T09:19:00Z");
    let started =
        client.put(format!("{}/api/backfills/{id}", server.base)).send_json(json!({"backfill": {"status": "initial"}}));
    assert_eq!(started.unwrap().status(), 200);

    let reported = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let (base, reported) = (server.base.clone(), reported.clone());
            std::thread::spawn(move || claim_until_killed(&base, &format!("w{k}"), &reported))
        })
        .collect();
    // Killed mid-stream: once the four clients have reported a hundred runs.
    eventually("the stream of claims to get going", || reported.load(Ordering::Relaxed) >= 100);
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let reported: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(reported > 0, "the stream of claims never got going");

    // After a restart: no run runs without a holder and a lease, and the counts agree.
    let server = serve_with(&db, &fast, &[]);
    let listing = |query: &str| {
        let r = reply(client.get(format!("{}/api/pipeline_runs?backfill_id={id}{query}", server.base)).call().unwrap());
        r.body
    };
    let running = listing("&status=running&_limit=1000");
    let held = running["pipeline_runs"].as_array().unwrap().clone();
    assert!(!held.is_empty(), "some runs were held when the server died");
    for r in &held {
        assert!(r["worker"].is_string() && r["lease_expires_at"].is_string(), "{r}");
    }
    let b = reply(client.get(format!("{}/api/backfills/{id}?include_run_count=true", server.base)).call().unwrap());
    let counts = b.body["backfill"]["run_status_counts"].clone();
    let mut total = 0;
    for status in ["initial", "running", "completed", "failed", "cancelled"] {
        let n = listing(&format!("&status={status}&_limit=0"))["metadata"]["count"].as_u64().unwrap();
        assert_eq!(counts.get(status).and_then(|v| v.as_u64()).unwrap_or(0), n, "{status}: {counts}");
        total += n;
    }
    assert_eq!(total, 2000, "every date has exactly one run still: {counts}");

    // The leases then expire as any other: each held run fails and its date waits again.
    eventually("the held runs' leases to expire", || listing("&status=running&_limit=0")["metadata"]["count"] == 0);
    for r in &held {
        let run = reply(client.get(format!("{}/api/pipeline_runs/{}", server.base, r["id"])).call().unwrap());
        assert_eq!(run.body["pipeline_run"]["status"], "failed");
        assert_eq!(run.body["pipeline_run"]["metrics"]["lease_expired"]["worker"], r["worker"]);
    }
    let after = reply(client.get(format!("{}/api/backfills/{id}?include_run_count=true", server.base)).call().unwrap());
    let counts = &after.body["backfill"]["run_status_counts"];
    assert_eq!(counts.get("failed"), None, "every lost date was queued again: {counts}");
    let waiting = counts["initial"].as_u64().unwrap();
    assert_eq!(waiting + counts["completed"].as_u64().unwrap(), 2000, "{counts}");
}

#[test]
fn the_start_up_says_where_the_data_is_and_what_to_do_next_without_actix_s_lines() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("start.db");
    let mut child = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let absolute = std::fs::canonicalize(&db).unwrap();
    let port = serving_port(&first).unwrap_or_else(|| panic!("no port in {first:?}"));
    assert!(first.contains(&format!("serving {} on http://127.0.0.1:{port}", absolute.display())), "{first}");
    assert!(second.contains(&format!("http://127.0.0.1:{port}/")) && second.contains("backfilld demo"), "{second}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().all(|l| !l.contains("actix_server")), "{rest:?}");
}

#[test]
fn a_taken_port_and_a_bare_port_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&["serve", "--bind", &format!("127.0.0.1:{port}")], &dir.path().join("a.db"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already in use") && err.contains("Mage") && err.contains("--bind 127.0.0.1:PORT"), "{err}");
    for bare in ["20003", ":20003"] {
        let out = run(&["serve", "--bind", bare], &dir.path().join("a.db"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected HOST:PORT, e.g. 127.0.0.1:20003"), "{bare}: {err}");
    }
}

#[test]
fn require_auth_from_the_environment_takes_the_api_s_spellings() {
    let dir = tempfile::tempdir().unwrap();
    for (value, required) in [("1", true), ("yes", true), ("on", true), ("0", false), ("no", false), ("off", false)] {
        let mut server =
            serve_with(&dir.path().join("a.db"), &[], &[("BACKFILLD_REQUIRE_AUTH", value), ("BACKFILLD_API_KEY", "k")]);
        let r = reply(agent().get(format!("{}/api/status", server.base)).call().unwrap());
        assert_eq!(r.body["statuses"][0]["require_user_authentication"], required, "{value}");
        let _ = server.child.kill();
    }
    let out = Command::new(BIN).env("BACKFILLD_REQUIRE_AUTH", "maybe").stdin(Stdio::null()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("true/1/yes/on"), "{out:?}");
}

#[test]
fn json_logs_carry_the_request_id_each_answer_carries() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(&dir.path().join("a.db"), &["--log-format", "json"], &[]);
    let sent = agent()
        .get(format!("{}/api/backfills?api_key=secret-key", server.base))
        .header("X-Request-Id", "trace-0f8fad5b")
        .call()
        .unwrap();
    assert_eq!(sent.headers().get("x-request-id").unwrap(), "trace-0f8fad5b");
    // Without one (or with one unsafe to log), the server makes one.
    let made = agent().get(format!("{}/api/status", server.base)).header("X-Request-Id", "bad id\"").call().unwrap();
    let made_id = made.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert!(made_id.len() == 16 && made_id.chars().all(|c| c.is_ascii_hexdigit()), "{made_id}");
    let log = server.stop_and_read_log();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let access: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "backfilld::access").collect();
    assert_eq!(access.len(), 2, "{log}");
    assert_eq!(access[0]["request_id"], "trace-0f8fad5b");
    assert_eq!(access[0]["request"], "GET /api/backfills?api_key=[redacted] HTTP/1.1");
    assert_eq!((&access[0]["status"], &access[0]["level"]), (&json!(200), &json!("INFO")));
    assert!(access[0]["ms"].is_number() && access[0]["time"].is_string());
    assert_eq!(access[1]["request_id"], json!(made_id));
    assert!(!log.contains("secret-key"));
}

#[test]
fn completions_and_the_manual_page_come_from_the_binary() {
    let out = Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && script.contains("_backfilld()") && script.contains("worker"), "{script}");
    let out = Command::new(BIN).args(["completions", "zsh"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("#compdef backfilld"));
    let out = Command::new(BIN).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH backfilld 1") && page.contains("\\-\\-require\\-auth"), "{page}");
}
