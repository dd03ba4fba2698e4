//! Runs' logs through the API: `POST /api/pipeline_runs/:id/logs` by the lease's holder,
//! `GET` from a position; the bound on each log and on all of them; a log's life with its
//! data file (a restart, a backup).

use serde_json::{json, Value};

use crate::cli::{run, serve, serve_with};
use crate::helpers::{agent, assert_error, reply, seed_fields, spawn_app, spawn_app_tuned, AuthConfig, Reply, TestApp};
use backfilld::service::lifecycle::Limits;

/// Creates and starts a backfill of `dates` daily dates in `pipeline`; returns its id.
fn started_at(base: &str, pipeline: &str, dates: u32) -> i64 {
    let mut fields = seed_fields("logged");
    fields["interval_type"] = json!("day");
    fields["interval_units"] = json!(1);
    fields["end_datetime"] = json!(format!("2023-03-{dates:02}T00:00:00Z"));
    let created = reply(
        agent()
            .post(format!("{base}/api/pipelines/{pipeline}/backfills"))
            .send_json(json!({ "backfill": fields }))
            .unwrap(),
    );
    let id = created.body["backfill"]["id"].as_i64().unwrap();
    let start = json!({"backfill": {"status": "initial"}});
    assert_eq!(reply(agent().put(format!("{base}/api/backfills/{id}")).send_json(&start).unwrap()).status, 200);
    id
}

/// Claims `n` runs for `worker`: their ids.
fn claim(base: &str, worker: &str, n: u32) -> Vec<i64> {
    let body = json!({"worker": worker, "limit": n});
    let r = reply(agent().post(format!("{base}/api/pipeline_runs/claim")).send_json(&body).unwrap());
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn append(base: &str, run: i64, worker: &str, offset: u64, bytes: &[u8]) -> Reply {
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}/api/pipeline_runs/{run}/logs?worker={worker}&offset={offset}"))
        .header("Content-Type", "text/plain")
        .body(bytes.to_vec())
        .unwrap();
    reply(agent().run(req).unwrap())
}

/// `GET` of a log: status, the headers we look at, the bytes.
struct Log {
    status: u16,
    header: std::collections::HashMap<String, String>,
    bytes: Vec<u8>,
}

fn read(base: &str, run: i64, query: &str, headers: &[(&str, &str)]) -> Log {
    let mut req = agent().get(format!("{base}/api/pipeline_runs/{run}/logs{query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap();
    let header = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    Log {
        status: resp.status().as_u16(),
        header,
        bytes: resp.body_mut().with_config().limit(8 << 20).read_to_vec().unwrap(),
    }
}

fn report(base: &str, run: i64, worker: &str) {
    let body = json!({"pipeline_run": {"status": "completed", "worker": worker}});
    let r = reply(agent().put(format!("{base}/api/pipeline_runs/{run}")).send_json(&body).unwrap());
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[test]
fn only_the_holder_appends_each_byte_once_and_a_gap_is_refused() {
    let app = spawn_app();
    started_at(&app.base, "etl", 2);
    let run = claim(&app.base, "w1", 1)[0];
    let r = append(&app.base, run, "w1", 0, b"hello ");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["pipeline_run_log"], json!({"pipeline_run_id": run, "received": 6, "cut": 0, "size": 6}));
    // Sent again with more (a retry after a lost answer): only the new part is kept.
    assert_eq!(append(&app.base, run, "w1", 0, b"hello world\n").body["pipeline_run_log"]["received"], 12);
    // Past what was received: 409, saying where the next chunk starts.
    let m = assert_error(&append(&app.base, run, "w1", 20, b"x"), 409, "record_conflict");
    assert!(m.contains("offset 12"), "{m}");
    // Another worker, a run nobody holds, no such run; bad parameters; a body past 1 MiB.
    let m = assert_error(&append(&app.base, run, "w2", 12, b"x"), 409, "record_conflict");
    assert!(m.contains("held by worker 'w1'"), "{m}");
    assert_error(&append(&app.base, run + 1, "w1", 0, b"x"), 409, "record_conflict");
    assert_error(&append(&app.base, 999, "w1", 0, b"x"), 404, "record_not_found");
    let no_worker = app.send_raw("POST", &format!("/api/pipeline_runs/{run}/logs?offset=0"), &[], b"x".to_vec());
    assert!(assert_error(&no_worker, 400, "api_resource_error").contains("worker is required"));
    let bad_offset = app.send_raw("POST", &format!("/api/pipeline_runs/{run}/logs?worker=w1&offset=-1"), &[], vec![]);
    assert!(assert_error(&bad_offset, 400, "api_resource_error").contains("offset"));
    assert_error(&append(&app.base, run, "w1", 12, &vec![b'x'; (1 << 20) + 1]), 413, "payload_too_large");
    let log = read(&app.base, run, "", &[]);
    assert_eq!((log.status, log.bytes.as_slice()), (200, &b"hello world\n"[..]));
    // Once reported, the run's log is closed.
    report(&app.base, run, "w1");
    assert_error(&append(&app.base, run, "w1", 12, b"late"), 409, "record_conflict");
    assert_eq!(read(&app.base, run, "", &[]).header["backfilld-run-finished"], "true");
}

#[test]
fn a_log_reads_from_an_offset_a_range_or_a_followers_place_as_text() {
    let app = spawn_app();
    started_at(&app.base, "etl", 2);
    let runs = claim(&app.base, "w", 2);
    let (run, quiet) = (runs[0], runs[1]);
    // Bytes as the command wrote them, not UTF-8 among them.
    append(&app.base, run, "w", 0, b"0123456789\n\xff\n");
    let all = read(&app.base, run, "", &[]);
    assert_eq!(all.status, 200);
    assert_eq!(all.header["content-type"], "text/plain; charset=utf-8");
    assert_eq!(all.bytes, b"0123456789\n\xff\n");
    assert_eq!((all.header["backfilld-log-received"].as_str(), all.header["backfilld-log-cut"].as_str()), ("13", "0"));
    assert_eq!(all.header["backfilld-run-finished"], "false");
    assert_eq!(read(&app.base, run, "?offset=5", &[]).bytes, b"56789\n\xff\n");
    assert_eq!(read(&app.base, run, "?offset=99", &[]).bytes, b"");
    assert_eq!(read(&app.base, run, "?after=11", &[]).bytes, b"\xff\n");
    let part = read(&app.base, run, "", &[("Range", "bytes=5-")]);
    assert_eq!((part.status, part.bytes.as_slice()), (206, &b"56789\n\xff\n"[..]));
    assert_eq!(part.header["content-range"], "bytes 5-12/13");
    let last = read(&app.base, run, "", &[("Range", "bytes=-3")]);
    assert_eq!(
        (last.status, last.bytes.as_slice(), last.header["content-range"].as_str()),
        (206, &b"\n\xff\n"[..], "bytes 10-12/13")
    );
    let past = read(&app.base, run, "", &[("Range", "bytes=13-")]);
    assert_eq!((past.status, past.header["content-range"].as_str()), (416, "bytes */13"));
    // A run without a log: an empty body. Unknown runs and bad positions: the envelope.
    let empty = read(&app.base, quiet, "", &[]);
    assert_eq!((empty.status, empty.bytes.len()), (200, 0));
    assert_error(&app.get("/api/pipeline_runs/999/logs"), 404, "record_not_found");
    assert_error(&app.get(&format!("/api/pipeline_runs/{run}/logs?offset=x")), 400, "api_resource_error");
    assert_error(&app.get(&format!("/api/pipeline_runs/{run}/logs?offset=1&after=2")), 400, "api_resource_error");
}

#[test]
fn a_follower_keeps_its_place_as_the_middle_of_a_growing_log_is_cut() {
    let app = spawn_app();
    started_at(&app.base, "etl", 1);
    let run = claim(&app.base, "w", 1)[0];
    // A line per 100 bytes, each saying where it starts: 3 MiB in 100 KiB chunks, read by a
    // follower after each chunk.
    let line = |at: u64| format!("{at:099}\n");
    let mut shipped = 0u64;
    let mut followed: Vec<u8> = vec![];
    let mut after = 0u64;
    while shipped < 3 << 20 {
        let chunk: String = (0..1024).map(|i| line(shipped + i * 100)).collect();
        assert_eq!(append(&app.base, run, "w", shipped, chunk.as_bytes()).status, 200);
        shipped += chunk.len() as u64;
        let log = read(&app.base, run, &format!("?after={after}"), &[]);
        followed.extend_from_slice(&log.bytes);
        after = log.header["backfilld-log-received"].parse().unwrap();
    }
    assert_eq!(after, shipped);
    // The follower saw every line once, in order, with one marker where bytes were cut
    // before it could read them.
    let text = String::from_utf8(followed).unwrap();
    let markers = text.lines().filter(|l| l.starts_with("[backfilld:")).count();
    let numbers: Vec<u64> =
        text.lines().filter(|l| !l.is_empty() && !l.starts_with('[')).map(|l| l.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    assert_eq!(numbers.last(), Some(&(shipped - 100)));
    assert!(markers <= 1, "{markers}");
    // The whole log: the first 512 KiB, a marker, at least the last 512 KiB.
    let log = read(&app.base, run, "", &[]);
    let text = String::from_utf8(log.bytes).unwrap();
    let cut: u64 = log.header["backfilld-log-cut"].parse().unwrap();
    assert!(text.starts_with(&line(0)) && text.ends_with(&line(shipped - 100)));
    assert!(text.contains(&format!("[backfilld: {cut} bytes of output cut here")));
    assert!(shipped - cut >= 1 << 20 && shipped - cut <= (1 << 20) + (64 << 10), "{cut}");
}

#[test]
fn past_max_log_bytes_the_oldest_finished_runs_logs_go_first() {
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| s.max_log_bytes = 3500);
    started_at(&app.base, "etl", 4);
    let runs = claim(&app.base, "w", 4);
    for run in &runs[..3] {
        append(&app.base, *run, "w", 0, &[b'x'; 1000]);
    }
    // Runs 1 and 3 finish; 2 still runs.
    report(&app.base, runs[0], "w");
    report(&app.base, runs[2], "w");
    // 1,000 more bytes pass 3,500: the oldest finished run's log goes (run 1), not run 2's
    // (running) nor run 3's (newer).
    append(&app.base, runs[3], "w", 0, &[b'y'; 1000]);
    let sizes: Vec<usize> = runs.iter().map(|r| read(&app.base, *r, "", &[]).bytes.len()).collect();
    assert_eq!(sizes, [0, 1000, 1000, 1000]);
    // Past it again with only running runs' and run 3's logs: run 3's goes; then nothing
    // finished is left, and the running runs' logs stay whole.
    append(&app.base, runs[3], "w", 1000, &[b'y'; 1000]);
    append(&app.base, runs[1], "w", 1000, &[b'y'; 1000]);
    let sizes: Vec<usize> = runs.iter().map(|r| read(&app.base, *r, "", &[]).bytes.len()).collect();
    assert_eq!(sizes, [0, 2000, 0, 2000]);
}

#[test]
fn pruning_is_logged_and_logs_survive_a_restart_and_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let mut server = serve(&db, &["--max-log-bytes", "1500"]);
    started_at(&server.base, "etl", 2);
    let runs = claim(&server.base, "w", 2);
    append(&server.base, runs[0], "w", 0, &[b'a'; 1000]);
    report(&server.base, runs[0], "w");
    append(&server.base, runs[1], "w", 0, b"kept\n");
    append(&server.base, runs[1], "w", 5, &[b'b'; 995]);
    let log = server.stop_and_read_log();
    assert!(log.contains("deleted the logs of 1 finished runs (1000 bytes)"), "{log}");
    // A restart: the log is there, from where it was.
    let server = serve_with(&db, &["--workers", "1"], &[("BACKFILLD_MAX_LOG_BYTES", "1GiB")]);
    assert_eq!(&read(&server.base, runs[1], "", &[]).bytes[..5], b"kept\n");
    // A backup takes it along; an export does not (it writes the API's records).
    let copy = dir.path().join("copy.db");
    let out = run(&["backup", copy.to_str().unwrap()], &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copied = serve(&copy, &[]);
    assert_eq!(read(&copied.base, runs[1], "", &[]).bytes.len(), 1000);
    let out = run(&["export"], &db);
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kept"), "{export}");
}

#[test]
fn logs_need_the_api_s_credentials() {
    let key = "log-key".to_string();
    let app: TestApp = crate::helpers::spawn_app_with(AuthConfig::new(true, &[key]));
    let r = app.get("/api/pipeline_runs/1/logs");
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = app.send_raw("POST", "/api/pipeline_runs/1/logs?worker=w&offset=0", &[], b"x".to_vec());
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[test]
fn a_worker_s_report_may_carry_the_last_chunk_of_its_log() {
    let app = spawn_app();
    started_at(&app.base, "etl", 2);
    let run = claim(&app.base, "w", 1)[0];
    append(&app.base, run, "w", 0, b"first\n");
    // `last\n` in base64, from offset 6; sent twice (a retry after a lost answer): once stored.
    let report = json!({"pipeline_run": {"status": "completed", "worker": "w",
        "log": {"offset": 6, "data": "bGFzdAo="}}});
    for _ in 0..2 {
        let r = app.send("PUT", &format!("/api/pipeline_runs/{run}"), &report);
        assert_eq!((r.status, &r.body["pipeline_run"]["status"]), (200, &json!("completed")), "{:?}", r.body);
    }
    assert_eq!(read(&app.base, run, "", &[]).bytes, b"first\nlast\n");
    // A chunk that is not base64, or without its offset: 400, and nothing is reported.
    let other = claim(&app.base, "w", 1)[0];
    for (log, says) in [
        (json!({"offset": 0, "data": "not base64!"}), "base64"),
        (json!({"data": "bGFzdAo="}), "offset"),
        (json!("text"), "object"),
    ] {
        let bad = json!({"pipeline_run": {"status": "completed", "worker": "w", "log": log}});
        let r = app.send("PUT", &format!("/api/pipeline_runs/{other}"), &bad);
        let e = assert_error(&r, 400, "record_invalid");
        assert!(r.body["error"]["errors"][0].as_str().unwrap().contains(says), "{e}: {:?}", r.body);
    }
    assert_eq!(app.get(&format!("/api/pipeline_runs/{other}")).body["pipeline_run"]["status"], "running");
}
