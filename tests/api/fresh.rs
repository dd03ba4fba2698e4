//! Conditional reads: which writes change which `ETag`. A backfill's detail and its runs'
//! pages follow that backfill alone; a run's log follows that log; no tag given before a
//! restart, or before another process wrote to the file, matches changed data.

use serde_json::{json, Value};

use crate::cli::serve;
use crate::helpers::{agent, backfill, import_file, reply, seed_fields, spawn_app, TestApp};

/// A `GET` of `path` at `base` with `If-None-Match: tag` when given: the status, the
/// answer's `ETag`, and its body (empty for a 304).
fn revalidate(base: &str, path: &str, tag: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = agent().get(format!("{base}{path}"));
    if let Some(tag) = tag {
        req = req.header("If-None-Match", tag);
    }
    let mut resp = req.call().unwrap();
    let etag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), etag, resp.body_mut().read_to_string().unwrap())
}

/// The current tag of `path`, read with a plain `GET` (200).
fn tag_of(base: &str, path: &str) -> String {
    let (status, tag, body) = revalidate(base, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    tag.unwrap_or_else(|| panic!("{path} has no ETag"))
}

fn started(app: &TestApp, name: &str) -> i64 {
    let id = app.create_backfill("etl", seed_fields(name));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    id
}

/// Claims one run of `backfill` for `worker`; its id.
fn claim(app: &TestApp, backfill: i64, worker: &str) -> i64 {
    let r =
        app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": worker, "limit": 1, "backfill_id": backfill}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["pipeline_runs"][0]["id"].as_i64().unwrap()
}

fn append(app: &TestApp, run: i64, worker: &str, offset: u64, bytes: &[u8]) {
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(app.url(&format!("/api/pipeline_runs/{run}/logs?worker={worker}&offset={offset}")))
        .header("Content-Type", "text/plain")
        .body(bytes.to_vec())
        .unwrap();
    assert_eq!(reply(agent().run(req).unwrap()).status, 200);
}

/// The dashboards: tabs on backfill A keep getting 304s while a worker claims and
/// reports runs of backfill B, and a write to A (a report, a pause) changes A's tags.
#[test]
fn a_write_to_one_backfill_leaves_another_backfills_tags_alone() {
    let app = spawn_app();
    let a = started(&app, "a");
    let b = started(&app, "b");
    let a_paths = [
        format!("/api/backfills/{a}?include_run_count=true"),
        format!("/api/pipeline_runs?backfill_id={a}&_limit=500"),
        format!("/api/pipeline_runs?backfill_id={a}&status=failed"),
    ];
    let a_tags: Vec<String> = a_paths.iter().map(|p| tag_of(&app.base, p)).collect();
    let b_detail = format!("/api/backfills/{b}?include_run_count=true");
    let b_tag = tag_of(&app.base, &b_detail);
    let listing_tag = tag_of(&app.base, "/api/backfills?include_run_count=true");

    // A worker takes a run of B, heartbeats, and reports it completed; B is paused.
    let run = claim(&app, b, "w");
    let heartbeat = json!({"pipeline_run": {"status": "running", "worker": "w"}});
    assert_eq!(app.send("PUT", &format!("/api/pipeline_runs/{run}"), &heartbeat).status, 200);
    assert_eq!(app.report_run(run, "completed").status, 200);
    assert_eq!(app.put_backfill(b, json!({"is_paused": true})).status, 200);

    for (path, tag) in a_paths.iter().zip(&a_tags) {
        let (status, again, body) = revalidate(&app.base, path, Some(tag));
        assert_eq!(status, 304, "{path}: {body}");
        assert_eq!(again.as_deref(), Some(tag.as_str()), "{path}");
    }
    // B's own detail, and the listing of every backfill, changed with it.
    let (status, _, body) = revalidate(&app.base, &b_detail, Some(&b_tag));
    assert_eq!(status, 200);
    let b_now: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b_now["backfill"]["run_status_counts"]["completed"], 1, "{b_now}");
    assert_eq!(revalidate(&app.base, "/api/backfills?include_run_count=true", Some(&listing_tag)).0, 200);

    // Now a run of A: each of A's answers changes, and shows the change.
    let run = claim(&app, a, "w");
    let (status, _, body) = revalidate(&app.base, &a_paths[1], Some(&a_tags[1]));
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    let claimed = page["pipeline_runs"].as_array().unwrap().iter().find(|r| r["id"] == run).unwrap();
    assert_eq!(claimed["status"], "running");
    assert_eq!(revalidate(&app.base, &a_paths[0], Some(&a_tags[0])).0, 200);
    // A run's own record follows its backfill.
    let run_path = format!("/api/pipeline_runs/{run}");
    let run_tag = tag_of(&app.base, &run_path);
    assert_eq!(app.put_backfill(b, json!({"is_paused": false})).status, 200);
    claim(&app, b, "w");
    assert_eq!(revalidate(&app.base, &run_path, Some(&run_tag)).0, 304);
    assert_eq!(app.report_run(run, "failed").status, 200);
    assert_eq!(revalidate(&app.base, &run_path, Some(&run_tag)).0, 200);
    assert_eq!(revalidate(&app.base, &a_paths[2], Some(&a_tags[2])).0, 200);
}

/// A write by another process (an import) to a backfill's runs changes that backfill's tags.
#[test]
fn an_import_beside_the_server_changes_the_tags_of_what_it_wrote() {
    let app = spawn_app();
    let doc = json!({"backfills": [backfill(40, "etl", "2023-03-23 18:27:58.848959+00:00")]});
    app.import(&doc);
    let detail = "/api/backfills/40?include_run_count=true";
    let runs = "/api/pipeline_runs?backfill_id=40";
    let (detail_tag, runs_tag) = (tag_of(&app.base, detail), tag_of(&app.base, runs));
    let run = json!({"id": 900, "pipeline_uuid": "etl", "backfill_id": 40, "status": "failed",
        "execution_date": "2023-03-01 00:00:00+00:00", "created_at": "2023-03-23 18:27:58+00:00",
        "updated_at": "2023-03-23 18:27:58+00:00"});
    let out = import_file(&app.db_path, &app.dir.path().join("runs.json"), &json!({"pipeline_runs": [run]}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _, body) = revalidate(&app.base, runs, Some(&runs_tag));
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["pipeline_runs"][0]["id"], 900, "{page}");
    assert_eq!(revalidate(&app.base, detail, Some(&detail_tag)).0, 200);
}

/// Appending to a run's log changes that log's tag, and no other: not its backfill's, not
/// its run's, not another run's log.
#[test]
fn appending_to_a_log_changes_that_logs_tag_only() {
    let app = spawn_app();
    let a = started(&app, "a");
    let first = claim(&app, a, "w");
    let second = claim(&app, a, "w");
    append(&app, first, "w", 0, b"hello\n");
    let logs = [format!("/api/pipeline_runs/{first}/logs"), format!("/api/pipeline_runs/{second}/logs")];
    let others = [
        format!("/api/backfills/{a}?include_run_count=true"),
        format!("/api/pipeline_runs?backfill_id={a}&_limit=500"),
        format!("/api/pipeline_runs/{first}"),
        "/api/backfills".to_string(),
        "/api/pipeline_runs".to_string(),
        logs[1].clone(),
    ];
    let log_tag = tag_of(&app.base, &logs[0]);
    let tags: Vec<String> = others.iter().map(|p| tag_of(&app.base, p)).collect();
    assert_eq!(revalidate(&app.base, &logs[0], Some(&log_tag)).0, 304);

    append(&app, first, "w", 6, b"world\n");
    let (status, new_tag, body) = revalidate(&app.base, &logs[0], Some(&log_tag));
    assert_eq!((status, body.as_str()), (200, "hello\nworld\n"));
    assert_ne!(new_tag.as_deref(), Some(log_tag.as_str()));
    for (path, tag) in others.iter().zip(&tags) {
        assert_eq!(revalidate(&app.base, path, Some(tag)).0, 304, "{path}");
    }
    // The run finishing changes its log's answer (its `backfilld-run-finished`), and its tag.
    let new_tag = new_tag.unwrap();
    assert_eq!(revalidate(&app.base, &logs[0], Some(&new_tag)).0, 304);
    assert_eq!(app.report_run(first, "completed").status, 200);
    assert_eq!(revalidate(&app.base, &logs[0], Some(&new_tag)).0, 200);
}

/// A tag given before a restart never matches after it, whatever was written meanwhile: the
/// issue's case was an import while the server was down and then as many writes as before.
#[test]
fn no_tag_from_before_a_restart_matches_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let detail = "/api/backfills/7";
    let (detail_tag, listing_tag) = {
        let server = serve(&db, &[]);
        let out =
            import_file(&db, &dir.path().join("in.json"), &json!({"backfills": [backfill(7, "p", "2023-01-01")]}));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (tag_of(&server.base, detail), tag_of(&server.base, "/api/backfills"))
    };
    let server = serve(&db, &[]);
    let rename = json!({"backfill": {"name": "renamed"}});
    let r = reply(agent().put(format!("{}{detail}", server.base)).send_json(&rename).unwrap());
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (path, tag) in [(detail, &detail_tag), ("/api/backfills", &listing_tag)] {
        let (status, _, body) = revalidate(&server.base, path, Some(tag));
        assert_eq!(status, 200, "{path}: an old tag matched changed data");
        assert!(body.contains("renamed"), "{body}");
    }
    // And a new file at the same place, with different data: no tag matches either.
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let server = serve(&db, &[]);
    let out = import_file(&db, &dir.path().join("in.json"), &json!({"backfills": [backfill(7, "q", "2023-02-01")]}));
    assert!(out.status.success());
    let (status, _, body) = revalidate(&server.base, detail, Some(&detail_tag));
    assert_eq!(status, 200, "{body}");
}
