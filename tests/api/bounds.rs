//! What one request may make the server store, write and answer: names and objects within
//! their bounds (refused over them, kept from an import), a start that writes a backfill's
//! variables once whatever its runs, and pages bounded in bytes as well as in records.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::cli::run;
use crate::helpers::{assert_error, import_file, seed_fields, spawn_app, TestApp};

/// 64 KiB, the most JSON a backfill's `variables` or `settings`, or a run's `metrics`, may take.
const OBJECT_BYTES: usize = 64 << 10;

/// 8 MiB, the most a page answers by default.
const PAGE_BYTES: usize = 8 << 20;

/// An object whose JSON takes exactly `bytes` bytes.
fn object_of(bytes: usize) -> Value {
    let v = json!({ "v": "x".repeat(bytes - r#"{"v":""}"#.len()) });
    assert_eq!(serde_json::to_string(&v).unwrap().len(), bytes);
    v
}

/// `GET path`'s status and body as bytes, whatever their length.
fn get_bytes(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let mut resp = crate::helpers::agent().get(app.url(path)).call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap())
}

/// The size of the data file with its WAL.
fn stored_bytes(app: &TestApp) -> u64 {
    let wal = app.db_path.with_extension("db-wal");
    let len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    len(&app.db_path) + len(&wal)
}

#[test]
fn values_over_their_bounds_are_refused_naming_the_field_and_its_bound() {
    let app = spawn_app();
    let long = "n".repeat(256);
    let fields = |extra: Value| {
        let mut f = seed_fields("fine");
        f.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        f
    };
    let create = |pipeline: &str, f: Value| {
        app.send("POST", &format!("/api/pipelines/{pipeline}/backfills"), &json!({ "backfill": f }))
    };
    // A refused create writes nothing; so does a refused preview.
    for (pipeline, f, field, bound) in [
        ("p", fields(json!({"name": long})), "name", "255 characters"),
        (long.as_str(), fields(json!({})), "pipeline_uuid", "255 characters"),
        ("p", fields(json!({"block_uuid": long})), "block_uuid", "255 characters"),
        ("p", fields(json!({"variables": object_of(OBJECT_BYTES + 1)})), "variables", "65536 bytes"),
        ("p", fields(json!({"settings": object_of(OBJECT_BYTES + 1)})), "settings", "65536 bytes"),
    ] {
        let message = assert_error(&create(pipeline, f.clone()), 400, "record_invalid");
        assert!(message.starts_with(&format!("{field}: must be at most {bound}")), "{message}");
        let preview =
            app.send("POST", &format!("/api/pipelines/{pipeline}/backfills/preview"), &json!({ "backfill": f }));
        assert_eq!(assert_error(&preview, 400, "record_invalid"), message);
    }
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);

    // At the bounds (255 characters, not bytes; 64 KiB exactly), all is stored.
    // (A pipeline of 255 "é", percent-encoded in the path.)
    let id = app.create_backfill(
        &"%C3%A9".repeat(255),
        fields(json!({"name": "ü".repeat(255), "variables": object_of(OBJECT_BYTES),
            "settings": object_of(OBJECT_BYTES)})),
    );

    // An update that sends a value over its bound is refused, and changes nothing.
    let message =
        assert_error(&app.put_backfill(id, json!({"variables": object_of(OBJECT_BYTES + 1)})), 400, "record_invalid");
    assert!(message.starts_with("variables: must be at most 65536 bytes"), "{message}");
    assert_eq!(app.read_backfill(id)["variables"], object_of(OBJECT_BYTES));

    // A run's metrics: 64 KiB at most.
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let run = app.run_ids(id)[0];
    let report = |metrics: Value| {
        app.send(
            "PUT",
            &format!("/api/pipeline_runs/{run}"),
            &json!({"pipeline_run": {"status": "running",
            "metrics": metrics}}),
        )
    };
    let message = assert_error(&report(object_of(OBJECT_BYTES + 1)), 400, "record_invalid");
    assert!(message.starts_with("metrics: must be at most 65536 bytes"), "{message}");
    assert_eq!(app.get(&format!("/api/pipeline_runs/{run}")).body["pipeline_run"]["status"], "initial");
    assert_eq!(report(object_of(OBJECT_BYTES)).status, 200);
}

#[test]
fn an_import_keeps_values_over_the_bounds_with_a_warning_and_they_keep_working() {
    let app = spawn_app();
    let name = "n".repeat(300);
    let variables = object_of(OBJECT_BYTES + 10);
    let mut b = crate::helpers::backfill(1, "p", "2023-01-01T00:00:00Z");
    b["name"] = json!(name);
    b["variables"] = variables.clone();
    let run = json!({"pipeline_uuid": "p", "metrics": object_of(OBJECT_BYTES + 1)});
    let out =
        import_file(&app.db_path, &app.dir.path().join("old.json"), &json!({"backfills": [b], "pipeline_runs": [run]}));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for field in ["backfills[0].name", "backfills[0].variables", "pipeline_runs[0].metrics"] {
        assert!(stderr.contains(&format!("{field}: must be at most")), "{field}: {stderr}");
    }
    assert_eq!(stderr.matches("kept as it is").count(), 3, "{stderr}");

    // Kept as they were, and an update that leaves them be goes through; a start too.
    assert_eq!(app.read_backfill(1)["name"], json!(name));
    assert_eq!(app.put_backfill(1, json!({"is_paused": true})).status, 200);
    assert_eq!(app.put_backfill(1, json!({"settings": {"max_attempts": 2}})).status, 200);
    assert_eq!(app.put_backfill(1, json!({"status": "initial", "is_paused": false})).status, 200);
    let runs = app.get("/api/pipeline_runs?backfill_id=1&_limit=1").body;
    let first = &runs["pipeline_runs"][0];
    assert_eq!(first["variables"]["v"], variables["v"]);
    assert_eq!(first["pipeline_schedule_name"], json!(format!("Backfill {name}")));
}

/// The variables a run of `date` answers: the backfill's, with the date's keys winning.
fn expected_variables(backfill: &Value, date_keys: &Value) -> Value {
    let mut v = backfill.as_object().unwrap().clone();
    v.extend(date_keys.as_object().unwrap().clone());
    Value::Object(v)
}

#[test]
fn a_start_writes_the_backfills_variables_once_and_every_run_answers_them() {
    // Arrange: 1,000 runs and 60 KiB of variables, one of them named as a date key.
    let app = spawn_app();
    let mut variables = object_of(60 << 10);
    variables["ds"] = json!("not the date");
    variables["n"] = json!(1);
    let mut fields = seed_fields("big variables");
    fields["end_datetime"] = json!("2023-04-11T15:00:00Z");
    fields["interval_units"] = json!(1);
    fields["variables"] = variables.clone();
    let id = app.create_backfill("p", fields);
    let before = stored_bytes(&app);

    // Act: start it.
    let started = app.put_backfill(id, json!({"status": "initial"}));
    assert_eq!(started.status, 200, "{:?}", started.body);

    // Assert: the file grew by far less than the runs times the variables (60 MB).
    let grown = stored_bytes(&app) - before;
    assert!(grown < 4 << 20, "a start of 1,000 runs with 60 KiB of variables wrote {grown} bytes");
    assert_eq!(app.read_backfill(id)["total_run_count"], 1000);

    // Each run answers the backfill's variables with its own date's keys, which win.
    let preview = app.get(&format!("/api/backfills/{id}?include_preview_runs=true&_limit=1000")).body;
    let dates = preview["backfill"]["pipeline_run_dates"].as_array().unwrap().clone();
    assert_eq!(dates.len(), 1000);
    let mut runs = vec![];
    let mut cursor = String::new();
    loop {
        let page = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=100{cursor}")).body;
        runs.extend(page["pipeline_runs"].as_array().unwrap().iter().cloned());
        match page["metadata"]["cursor"].as_str() {
            Some(c) => cursor = format!("&_cursor={c}"),
            None => break,
        }
    }
    runs.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(runs.len(), 1000);
    for (run, date) in runs.iter().zip(&dates) {
        assert_eq!(run["variables"], expected_variables(&variables, date), "run {}", run["id"]);
    }
    assert_ne!(runs[0]["variables"]["ds"], "not the date");

    // Editing the backfill's variables after its start leaves its runs' variables be.
    assert_eq!(app.put_backfill(id, json!({"variables": {"n": 2}})).status, 200);
    let first = app.get(&format!("/api/pipeline_runs/{}", runs[0]["id"])).body;
    assert_eq!(first["pipeline_run"]["variables"], runs[0]["variables"]);

    // A worker's claim, a retry and an export answer the same variables.
    let claimed = app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w", "backfill_id": id}));
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let claimed = &claimed.body["pipeline_runs"][0];
    assert_eq!(claimed["id"], runs[0]["id"]);
    assert_eq!(claimed["variables"], runs[0]["variables"]);
    let report = app.send(
        "PUT",
        &format!("/api/pipeline_runs/{}", runs[0]["id"]),
        &json!({"pipeline_run": {"status": "failed", "worker": "w"}}),
    );
    assert_eq!(report.status, 200, "{:?}", report.body);
    let retried = app.request("POST", &format!("/api/pipeline_runs/{}/retry", runs[0]["id"]));
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(retried.body["pipeline_run"]["variables"], runs[0]["variables"]);

    // Deleted, the backfill leaves its runs their variables; an export writes them whole.
    assert_eq!(app.request("DELETE", &format!("/api/backfills/{id}")).status, 200);
    let file = app.dir.path().join("export.json");
    let out = run(&["export", file.to_str().unwrap()], &app.db_path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let exported = exported["pipeline_runs"].as_array().unwrap();
    assert_eq!(exported.len(), 1001);
    for (run, date) in exported.iter().zip(&dates) {
        assert_eq!(run["variables"], expected_variables(&variables, date), "run {}", run["id"]);
    }
    let again = app.get(&format!("/api/pipeline_runs/{}", runs[1]["id"])).body;
    assert_eq!(again["pipeline_run"]["variables"], runs[1]["variables"]);
}

/// Every record of `path`, page after page by cursor, asserting that no answer takes more
/// than `PAGE_BYTES`; and how many pages it took.
fn walk(app: &TestApp, path: &str, key: &str) -> (Vec<Value>, usize) {
    let mut records = vec![];
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (status, bytes) = get_bytes(app, &format!("{path}{cursor}"));
        assert_eq!(status, 200);
        assert!(bytes.len() <= PAGE_BYTES, "a page of {} bytes", bytes.len());
        pages += 1;
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        let got = page[key].as_array().unwrap();
        assert!(!got.is_empty());
        records.extend(got.iter().cloned());
        assert_eq!(page["metadata"]["next"], page["metadata"]["cursor"].is_string(), "{}", page["metadata"]);
        match page["metadata"]["cursor"].as_str() {
            Some(c) => cursor = format!("&_cursor={c}"),
            None => break,
        }
    }
    (records, pages)
}

#[test]
fn a_page_stops_at_its_byte_budget_whatever_was_stored_and_its_cursor_goes_on() {
    // Arrange: what an older version could store through the API (a body of 1 MiB): twelve
    // backfills of 900 KB names, one of them started, so that each of its 25 runs shows its
    // schedule's name, "Backfill " and the name.
    let app = spawn_app();
    let backfills: Vec<Value> = (1..=12)
        .map(|id| {
            let mut b = crate::helpers::backfill(id, "p", "2023-01-01T00:00:00Z");
            b["name"] = json!(format!("{id:02}{}", "n".repeat(900_000)));
            b
        })
        .collect();
    app.import(&json!({ "backfills": backfills }));
    assert_eq!(app.put_backfill(1, json!({"status": "initial"})).status, 200);

    // Act and assert: each page answers at most 8 MiB, and their cursors reach every record
    // once.
    let (runs, pages) = walk(&app, "/api/pipeline_runs?backfill_id=1&_limit=1000", "pipeline_runs");
    let ids: BTreeSet<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!((runs.len(), ids.len()), (25, 25));
    assert!(pages >= 3, "25 runs of 900 KB in {pages} page(s)");
    let (listed, pages) = walk(&app, "/api/backfills?_limit=1000", "backfills");
    let ids: BTreeSet<i64> = listed.iter().map(|b| b["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=12).collect());
    assert!(pages >= 2, "12 backfills of 900 KB in {pages} page(s)");
    // The same through a pipeline's listing.
    let (listed, _) = walk(&app, "/api/pipelines/p/backfills?_limit=1000", "backfills");
    assert_eq!(listed.len(), 12);

    // A page cut short says so, whatever _limit asked.
    let first = app.get("/api/pipeline_runs?backfill_id=1&_limit=20").body;
    let kept = first["pipeline_runs"].as_array().unwrap().len();
    assert!(kept < 20, "{kept}");
    assert_eq!((first["metadata"]["count"].as_u64(), first["metadata"]["next"].as_bool()), (Some(25), Some(true)));
}

#[test]
fn a_claim_takes_no_more_runs_than_its_answer_has_room_for() {
    // Arrange: 1,000 runs of 60 KiB of variables each, as they answer.
    let app = spawn_app();
    let mut fields = seed_fields("big variables");
    fields["end_datetime"] = json!("2023-04-11T15:00:00Z");
    fields["interval_units"] = json!(1);
    fields["variables"] = object_of(60 << 10);
    let id = app.create_backfill("p", fields);
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);

    // Act: a claim of all of them.
    let claim = || {
        let mut resp = crate::helpers::agent()
            .post(app.url("/api/pipeline_runs/claim"))
            .send_json(json!({"worker": "w", "limit": 1000}))
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap()
    };
    let bytes = claim();

    // Assert: an answer of at most 8 MiB, its runs leased and the others still waiting.
    assert!(bytes.len() <= PAGE_BYTES, "a claim answered {} bytes", bytes.len());
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let claimed = answer["pipeline_runs"].as_array().unwrap().len();
    assert!((100..1000).contains(&claimed), "{claimed} runs claimed");
    let counts = &app.read_backfill(id)["run_status_counts"];
    assert_eq!(
        (counts["running"].as_u64(), counts["initial"].as_u64()),
        (Some(claimed as u64), Some(1000 - claimed as u64))
    );
    // The next claim goes on with the runs left.
    let next: Value = serde_json::from_slice(&claim()).unwrap();
    assert!(!next["pipeline_runs"].as_array().unwrap().is_empty());
}
