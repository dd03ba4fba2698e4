//! The real binary's start and stop: what a refused start and a clean stop leave on disk, and
//! what the demo leaves on the terminal.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::cli::{serve_with, Served};
use crate::helpers::{agent, reply, signal, BIN};
use crate::wait::eventually;

/// The names in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Waits for `child` to exit.
fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    eventually("the process to exit", || child.try_wait().unwrap())
}

/// `backfilld serve` on `db`, with two worker threads.
fn serve(db: &Path) -> Served {
    serve_with(db, &["--workers", "2"], &[])
}

#[test]
fn a_start_refused_for_its_address_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("a.db"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"), "{out:?}");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

/// Ctrl-C and SIGTERM, three times each: every stop closes the file, so that SQLite removes
/// its write-ahead log and shared memory, and leaves the data (and the server's lock file).
#[test]
fn a_clean_stop_leaves_the_data_file_and_its_lock_and_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut created = 0;
    for (round, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().cycle().take(6).enumerate() {
        let mut server = serve(&db);
        let base = server.base.clone();
        // A write, so that the WAL holds something when the stop comes.
        let r = reply(
            agent()
                .post(format!("{base}/api/pipelines/p/backfills"))
                .send_json(json!({"backfill": {"name": format!("round {round}")}}))
                .unwrap(),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        created += 1;
        let listed = reply(agent().get(format!("{base}/api/backfills?_limit=0")).call().unwrap());
        assert_eq!(listed.body["metadata"]["count"], created);
        signal(&server.child, sig);
        assert!(exit_status(&mut server.child).success(), "round {round}");
        assert_eq!(files_in(dir.path()), ["a.db", "a.db.lock"], "after stop {round} (signal {sig})");
    }
}

#[test]
fn the_demo_s_terminal_shows_its_banner_last_and_no_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(BIN)
        .args(["demo", "--bind", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("demo.db"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both streams read as they come, so that the demo never writes into a full pipe.
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let rest_of_stdout = std::thread::spawn(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    let mut stderr = demo.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        stderr.read_to_string(&mut log).unwrap();
        log
    });
    // The banner comes once the seeding is done, and the simulated worker then completes
    // runs through the API: requests that a server logs, unless told not to.
    assert!(first.contains("seeded") && first.contains("http://127.0.0.1:"), "{first}");
    let base = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    let completed = || {
        let r = reply(agent().get(format!("{base}/api/pipeline_runs?status=completed&_limit=0")).call().unwrap());
        r.body["metadata"]["count"].as_u64().unwrap()
    };
    let before = completed();
    eventually("the demo's worker to complete runs", || completed() > before + 2);
    signal(&demo, libc::SIGINT);
    assert!(exit_status(&mut demo).success());
    let rest = rest_of_stdout.join().unwrap();
    let log = log.join().unwrap();
    let banner: Vec<&str> = first.lines().chain(rest.lines()).collect();
    assert!(banner.len() <= 6 && banner.last().unwrap().contains("Ctrl-C stops it"), "{banner:#?}");
    assert!(banner.iter().any(|l| l.contains("Open the dashboard")), "{banner:#?}");
    assert!(!log.contains("backfilld::access") && !log.contains(" INFO "), "{log}");
}

/// Ctrl-C while a request is in flight: the request is answered (and its write kept), no new
/// connection is taken, and the server exits 0.
#[test]
fn ctrl_c_answers_the_request_in_flight_before_stopping() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut server = serve(&db);
    let (base, port) = (server.base.clone(), server.port);
    // The request's head, asking to be told before it sends its body: the server's
    // `100 Continue` says the request is in flight.
    let body = br#"{"backfill": {"name": "in flight"}}"#;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        conn,
        "POST /api/pipelines/p/backfills HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    signal(&server.child, libc::SIGINT);
    // Stopping: new connections are no longer served.
    eventually("the server to stop accepting", || agent().get(format!("{base}/api/status")).call().is_err());
    conn.write_all(body).unwrap();
    let mut answer = String::new();
    reader.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("HTTP/1.1 200") && answer.contains("in flight"), "{answer}");
    assert!(exit_status(&mut server.child).success());
    // The write is in the file.
    let out = Command::new(BIN).args(["export", "--db"]).arg(&db).arg("-").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("in flight"), "{out:?}");
}

/// A second Ctrl-C while the first waits for a request in flight stops the server at once,
/// whatever that request is waiting for (here a body that never comes, under an hour's
/// deadline).
#[test]
fn a_second_ctrl_c_stops_at_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(&dir.path().join("a.db"), &["--workers", "1", "--body-timeout", "3600"], &[]);
    let (base, port) = (server.base.clone(), server.port);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(
        b"POST /api/pipelines/p/backfills HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Expect: 100-continue\r\nContent-Length: 100\r\n\r\n",
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(conn.try_clone().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    signal(&server.child, libc::SIGINT);
    // The first is handled (the server no longer accepts), and waits for the body.
    eventually("the server to stop accepting", || agent().get(format!("{base}/api/status")).call().is_err());
    signal(&server.child, libc::SIGINT);
    let status = exit_status(&mut server.child);
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status}");
    let log = server.stop_and_read_log();
    assert!(log.contains("stopping at once"), "{log}");
}

/// The soft limit of open files of the process `pid` (/proc/PID/limits).
fn open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// A connection takes two open files (actix's socket and `api::conns`' duplicate of it): a
/// cap that needs more than the soft limit (often 1,024) raises it, toward the hard limit,
/// so that the cap is reached rather than cut short by accept(2) failing.
#[test]
fn a_cap_beyond_the_open_files_limit_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    // SAFETY: getrlimit writes into the struct it is given.
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) }, 0);
    let mut shell = Command::new("sh");
    shell.args(["-c", r#"ulimit -Sn 256 && exec "$0" "$@""#, BIN, "serve", "--bind", "127.0.0.1:0", "--db"]);
    shell.arg(&db).args(["--workers", "1", "--max-connections", "600"]);
    let server = crate::cli::serve_by(shell);
    let limit = open_files_limit(server.child.id());
    let wanted = (600 * 2 + 256).min(hard.rlim_max);
    assert!(limit >= wanted, "the soft limit is {limit}; {wanted} wanted");
}
