//! Create, preview, start, follow, cancel and delete a backfill, all through HTTP.

use crate::helpers::AuthConfig;
use backfilld::service::lifecycle::Limits;
use serde_json::{json, Value};

use crate::helpers::{assert_error, seed_fields, spawn_app, spawn_app_limited, TestApp};

fn count_backfills(app: &TestApp) -> u64 {
    app.get("/api/backfills").body["metadata"]["count"].as_u64().unwrap()
}

#[test]
fn the_whole_lifecycle_of_the_seed_backfill() {
    let app = spawn_app();

    // Create: the writable keys are taken; id, status and timestamps in the body are not.
    let mut fields = seed_fields("sparkling glitter");
    fields["variables"] = json!({"region": "eu"});
    fields["id"] = json!(999);
    fields["status"] = json!("completed");
    fields["created_at"] = json!("2001-01-01");
    let created = app.send("POST", "/api/pipelines/example_pipeline/backfills", &json!({ "backfill": fields }));
    assert_eq!(created.status, 200, "{:?}", created.body);
    // A single record comes with `"metadata": null`, as Mage's do.
    assert_eq!(created.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["backfill", "metadata"]);
    assert_eq!(created.body["metadata"], Value::Null);
    let b = &created.body["backfill"];
    let id = b["id"].as_i64().unwrap();
    assert_ne!(id, 999);
    assert_eq!(b["status"], Value::Null);
    assert_eq!(b["pipeline_uuid"], "example_pipeline");
    assert_eq!(b["start_datetime"], "2023-03-01 00:00:00+00:00");
    assert_ne!(b["created_at"], "2001-01-01 00:00:00+00:00");
    assert_eq!(b["variables"], json!({"region": "eu"}));

    // Preview: exactly _limit dates, paged.
    let preview = app.get(&format!("/api/backfills/{id}?include_preview_runs=true&_limit=3&_offset=1"));
    let dates = preview.body["backfill"]["pipeline_run_dates"].as_array().unwrap();
    assert_eq!(dates.len(), 3);
    assert_eq!(
        dates[0],
        json!({
            "ds": "2023-03-01", "hr": "04",
            "execution_date": "2023-03-01T04:00:00+00:00",
            "interval_start_datetime": "2023-03-01T04:00:00+00:00",
            "interval_end_datetime": "2023-03-01T08:00:00+00:00",
            "interval_seconds": 14400.0,
            "interval_start_datetime_previous": "2023-03-01T00:00:00+00:00",
        })
    );
    // The preview brings the counts, as Mage's does: no runs yet.
    assert_eq!(preview.body["backfill"]["total_run_count"], 25);
    assert_eq!(preview.body["backfill"]["run_status_counts"], json!({}));
    assert_eq!(preview.body["metadata"], Value::Null);
    let last = app.get(&format!("/api/backfills/{id}?include_preview_runs=1&_limit=40&_offset=24"));
    assert_eq!(last.body["backfill"]["pipeline_run_dates"].as_array().unwrap().len(), 1);
    let plain = app.get(&format!("/api/backfills/{id}"));
    assert!(plain.body["backfill"].get("total_run_count").is_none(), "counts only when asked for");

    // Start.
    let started = app.put_backfill(id, json!({"status": "initial"}));
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(started.body["backfill"]["status"], "initial");
    assert!(started.body["backfill"]["started_at"].is_string());
    let schedule_id = started.body["backfill"]["pipeline_schedule_id"].as_i64().unwrap();
    let b = app.read_backfill(id);
    assert_eq!(b["total_run_count"], 25);
    assert_eq!(b["run_status_counts"], json!({"initial": 25}));

    let runs = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1"));
    assert_eq!(runs.body["metadata"]["count"], 25);
    assert_eq!(runs.body["metadata"]["next"], true);
    let run_ids = app.run_ids(id);
    assert_eq!(run_ids.len(), 25);
    let first = app.get(&format!("/api/pipeline_runs/{}", run_ids[0])).body["pipeline_run"].clone();
    assert_eq!(first["status"], "initial");
    assert_eq!(first["pipeline_schedule_id"], schedule_id);
    assert_eq!(first["execution_date"], "2023-03-01 00:00:00+00:00");
    assert_eq!(first["variables"]["region"], "eu");
    assert_eq!(first["variables"]["ds"], "2023-03-01");
    assert_eq!(first["variables"]["interval_seconds"], 14400.0);

    // A worker runs the first run: the backfill is running.
    let r = app.report_run(run_ids[0], "running");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["pipeline_run"]["started_at"].is_string());
    assert_eq!(r.body["pipeline_run"]["completed_at"], Value::Null);
    assert_eq!(app.read_backfill(id)["status"], "running");

    // All but the last complete: still running.
    for run in &run_ids[..24] {
        let r = app.report_run(*run, "completed");
        assert_eq!(r.status, 200);
        assert!(r.body["pipeline_run"]["completed_at"].is_string());
    }
    let b = app.read_backfill(id);
    assert_eq!(b["status"], "running");
    assert_eq!(b["run_status_counts"], json!({"completed": 24, "initial": 1}));
    assert_eq!(b["completed_at"], Value::Null);

    // The last completes: the backfill is completed.
    app.report_run(run_ids[24], "completed");
    let b = app.read_backfill(id);
    assert_eq!(b["status"], "completed");
    assert!(b["completed_at"].is_string());
    assert_eq!(b["run_status_counts"], json!({"completed": 25}));
    let completed = app.get(&format!("/api/pipeline_runs?backfill_id={id}&status=completed"));
    assert_eq!(completed.body["metadata"]["count"], 25);

    // Delete: answers the record; the runs stay, unlinked.
    let deleted = app.request("DELETE", &format!("/api/backfills/{id}"));
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["backfill"]["id"], id);
    assert_eq!(deleted.body["backfill"]["status"], "completed");
    assert_error(&app.get(&format!("/api/backfills/{id}")), 404, "record_not_found");
    assert_error(&app.request("DELETE", &format!("/api/backfills/{id}")), 404, "record_not_found");
    let orphan = app.get(&format!("/api/pipeline_runs/{}", run_ids[0])).body["pipeline_run"].clone();
    assert_eq!(orphan["backfill_id"], Value::Null);
    assert_eq!(app.get("/api/pipeline_runs?pipeline_uuid=example_pipeline").body["metadata"]["count"], 25);
}

#[test]
fn a_failed_run_fails_the_backfill_with_failed_at() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    app.put_backfill(id, json!({"status": "initial"}));
    let runs = app.run_ids(id);
    app.report_run(runs[3], "running");
    app.report_run(runs[3], "failed");
    let b = app.read_backfill(id);
    assert_eq!(b["status"], "failed");
    assert!(b["failed_at"].is_string());
    assert_eq!(b["run_status_counts"], json!({"failed": 1, "initial": 24}));
}

#[test]
fn cancel_cancels_the_unfinished_runs_and_the_backfill() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    app.put_backfill(id, json!({"status": "initial"}));
    let runs = app.run_ids(id);
    app.report_run(runs[0], "completed");
    app.report_run(runs[1], "running");
    let r = app.put_backfill(id, json!({"status": "cancelled"}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backfill"]["status"], "cancelled");
    let b = app.read_backfill(id);
    assert_eq!(b["run_status_counts"], json!({"completed": 1, "cancelled": 24}));
    // Cancelling again changes nothing; a cancelled run cannot run again.
    assert_eq!(app.put_backfill(id, json!({"status": "cancelled"})).status, 200);
    assert_error(&app.report_run(runs[5], "running"), 409, "record_conflict");
    assert_eq!(app.read_backfill(id)["status"], "cancelled");
}

#[test]
fn cancelling_a_never_started_backfill_marks_it_cancelled() {
    let app = spawn_app();
    let id = app.create_backfill("p", json!({"name": "no dates"}));
    let r = app.put_backfill(id, json!({"status": "cancelled"}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backfill"]["status"], "cancelled");
    assert_eq!(r.body["backfill"]["started_at"], Value::Null);
}

#[test]
fn cancelling_a_completed_backfill_is_a_409() {
    let app = spawn_app();
    let id = app.create_backfill("p", json!({"name": "one", "start_datetime": "2023-01-01", "end_datetime": "2023-01-01", "interval_type": "day", "interval_units": 1}));
    app.put_backfill(id, json!({"status": "initial"}));
    app.report_run(app.run_ids(id)[0], "completed");
    assert_eq!(app.read_backfill(id)["status"], "completed");
    assert_error(&app.put_backfill(id, json!({"status": "cancelled"})), 409, "record_conflict");
    assert_eq!(app.read_backfill(id)["status"], "completed");
}

#[test]
fn starting_twice_with_nothing_to_run_again_is_a_409_that_creates_nothing() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    let first = app.put_backfill(id, json!({"status": "initial"}));
    assert_eq!(first.status, 200);
    let second = app.put_backfill(id, json!({"status": "initial"}));
    assert_error(&second, 409, "record_conflict");
    assert!(second.body["error"]["message"].as_str().unwrap().contains("nothing to run again"), "{:?}", second.body);
    let now = app.read_backfill(id);
    assert_eq!(first.body["backfill"]["started_at"], now["started_at"]);
    assert_eq!(first.body["backfill"]["pipeline_schedule_id"], now["pipeline_schedule_id"]);
    assert_eq!(app.get("/api/pipeline_runs").body["metadata"]["count"], 25);
}

#[test]
fn invalid_creates_are_400s_that_store_nothing() {
    let app = spawn_app();
    // (body, expected type, the field or word the message must name, why)
    let with = |key: &str, value: Value| {
        let mut f = seed_fields("x");
        f[key] = value;
        json!({ "backfill": f })
    };
    let cases = [
        (json!({"backfill": {}}), "record_invalid", "name", "no name"),
        (json!({"backfill": {"name": "   "}}), "record_invalid", "name", "a blank name"),
        (with("interval_type", json!("fortnight")), "record_invalid", "interval_type", "unknown interval"),
        (with("interval_units", json!(0)), "record_invalid", "interval_units", "zero units"),
        (with("interval_units", json!(-1)), "record_invalid", "interval_units", "negative units"),
        (with("interval_units", json!("many")), "record_invalid", "interval_units", "units not a number"),
        (with("end_datetime", json!("2023-02-01")), "record_invalid", "end_datetime", "end before start"),
        (with("start_datetime", json!("March 1st")), "record_invalid", "start_datetime", "not a date"),
        (with("variables", json!([1, 2])), "record_invalid", "variables", "variables not an object"),
        (with("settings", json!("x")), "record_invalid", "settings", "settings not an object"),
        (json!({"name": "x"}), "api_resource_error", "backfill", "fields not inside \"backfill\""),
        (json!({"backfill": "x"}), "api_resource_error", "backfill", "backfill not an object"),
        (json!([1]), "api_resource_error", "object", "an array body"),
    ];
    for (body, kind, named, why) in cases {
        let r = app.send("POST", "/api/pipelines/p/backfills", &body);
        let message = assert_error(&r, 400, kind);
        assert!(message.contains(named), "{why}: {message}");
    }
    for raw in [&b"{not json"[..], b"", b"\xff\xfe"] {
        let r = app.send_raw("POST", "/api/pipelines/p/backfills", &[], raw.to_vec());
        assert_error(&r, 400, "api_resource_error");
    }
    let huge = vec![b' '; 2 << 20];
    assert_error(&app.send_raw("POST", "/api/pipelines/p/backfills", &[], huge), 413, "payload_too_large");
    assert_eq!(count_backfills(&app), 0);
}

#[test]
fn updates_change_the_writable_keys_and_move_updated_at() {
    let app = spawn_app();
    let id = app.create_backfill("p", json!({"name": "draft"}));
    let before = app.read_backfill(id);
    // 2 ms on, so that the update's time differs (times are in microseconds). Not a wait for
    // anything: a busier machine only makes it longer.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let r = app.put_backfill(id, seed_fields("final"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = app.read_backfill(id);
    assert_eq!(after["name"], "final");
    assert_eq!(after["total_run_count"], 25);
    assert_ne!(after["updated_at"], before["updated_at"]);
    assert_eq!(after["created_at"], before["created_at"]);

    // Keys that are absent stay; a null clears; the nested route works for the right pipeline.
    let r =
        app.send("PUT", &format!("/api/pipelines/p/backfills/{id}"), &json!({"backfill": {"interval_units": null}}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["backfill"]["interval_units"], Value::Null);
    assert_eq!(r.body["backfill"]["name"], "final");
    let wrong = app.send("PUT", &format!("/api/pipelines/other/backfills/{id}"), &json!({"backfill": {"name": "x"}}));
    assert_error(&wrong, 404, "record_not_found");

    // A bad value changes nothing.
    assert_error(&app.put_backfill(id, json!({"interval_units": 0})), 400, "record_invalid");
    assert_error(&app.put_backfill(id, json!({"name": ""})), 400, "record_invalid");
    assert_error(&app.put_backfill(id, json!({"status": "running"})), 400, "record_invalid");
    assert_error(&app.put_backfill(id, json!({"status": "paused"})), 400, "record_invalid");
    assert_eq!(app.read_backfill(id)["name"], "final");
    assert_error(&app.put_backfill(id + 100, json!({"name": "x"})), 404, "record_not_found");
}

#[test]
fn a_started_backfill_keeps_its_dates() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    app.put_backfill(id, json!({"status": "initial"}));
    for (key, value) in [
        ("start_datetime", json!("2023-02-01")),
        ("end_datetime", json!("2023-03-06")),
        ("interval_type", json!("day")),
        ("interval_units", json!(2)),
        ("block_uuid", json!("b")),
    ] {
        let message = assert_error(&app.put_backfill(id, json!({ key: value })), 409, "record_conflict");
        assert!(message.contains(key), "{message}");
    }
    // The same values, a new name and new variables are fine.
    let mut same = seed_fields("renamed");
    same["variables"] = json!({"a": 1});
    assert_eq!(app.put_backfill(id, same).status, 200);
    assert_eq!(app.read_backfill(id)["total_run_count"], 25);
}

#[test]
fn starting_needs_complete_dates_and_no_block() {
    let app = spawn_app();
    let id = app.create_backfill(
        "p",
        json!({"name": "x", "start_datetime": "2023-01-01", "interval_type": "day", "interval_units": 1}),
    );
    let message = assert_error(&app.put_backfill(id, json!({"status": "initial"})), 400, "record_invalid");
    assert!(message.contains("end_datetime"), "{message}");
    let mut fields = seed_fields("block");
    fields["block_uuid"] = json!("my_block");
    let id = app.create_backfill("p", fields);
    let message = assert_error(&app.put_backfill(id, json!({"status": "initial"})), 400, "record_invalid");
    assert!(message.contains("block_uuid"), "{message}");
    assert_eq!(app.get("/api/pipeline_runs").body["metadata"]["count"], 0);
}

#[test]
fn a_backfill_over_max_runs_is_refused_before_anything_is_written() {
    let app = spawn_app_limited(AuthConfig::default(), Limits { max_runs: 24 });
    let id = app.create_backfill("p", seed_fields("x"));
    let message = assert_error(&app.put_backfill(id, json!({"status": "initial"})), 400, "record_invalid");
    assert!(message.contains("25") && message.contains("24") && message.contains("--max-runs"), "{message}");
    let b = app.read_backfill(id);
    assert_eq!(b["status"], Value::Null);
    assert_eq!(b["started_at"], Value::Null);
    assert_eq!(app.get("/api/pipeline_runs").body["metadata"]["count"], 0);
}

#[test]
fn reading_one_backfill_checks_its_id_and_parameters() {
    let app = spawn_app();
    let id = app.create_backfill("p", seed_fields("x"));
    assert_error(&app.get("/api/backfills/abc"), 400, "api_resource_error");
    assert_error(&app.get("/api/backfills/99999999999999999999"), 400, "api_resource_error");
    assert_error(&app.get("/api/backfills/12345"), 404, "record_not_found");
    assert_error(&app.get(&format!("/api/backfills/{id}?include_preview_runs=1&_limit=-1")), 400, "api_resource_error");
    assert_error(&app.get(&format!("/api/backfills/{id}?include_run_count=perhaps")), 400, "api_resource_error");
    let plain = app.get(&format!("/api/backfills/{id}")).body["backfill"].clone();
    assert!(plain.get("total_run_count").is_none() && plain.get("pipeline_run_dates").is_none());
    let far = app.get(&format!("/api/backfills/{id}?include_preview_runs=1&_offset=1000"));
    assert_eq!(far.body["backfill"]["pipeline_run_dates"], json!([]));
}

#[test]
fn pipeline_runs_filter_and_refuse_bad_reports() {
    let app = spawn_app();
    let a = app.create_backfill("alpha", seed_fields("a"));
    let b = app.create_backfill("beta", seed_fields("b"));
    app.put_backfill(a, json!({"status": "initial"}));
    app.put_backfill(b, json!({"status": "initial"}));
    let run = app.run_ids(a)[0];
    app.report_run(run, "running");

    let count = |q: &str| app.get(&format!("/api/pipeline_runs?{q}")).body["metadata"]["count"].clone();
    assert_eq!(count(""), 50);
    assert_eq!(count("pipeline_uuid=beta"), 25);
    assert_eq!(count(&format!("backfill_id={a}&status=running")), 1);
    assert_eq!(count("status=running&pipeline_uuid=beta"), 0);
    let page = app.get("/api/pipeline_runs?_limit=40&_offset=40");
    assert_eq!(page.body["pipeline_runs"].as_array().unwrap().len(), 10);
    assert_eq!(page.body["metadata"]["next"], false);
    // Newest first: b's runs were created last.
    assert_eq!(app.get("/api/pipeline_runs?_limit=1").body["pipeline_runs"][0]["backfill_id"], b);

    for q in ["status=done", "backfill_id=x", "_limit=abc", "_offset=-2"] {
        assert_error(&app.get(&format!("/api/pipeline_runs?{q}")), 400, "api_resource_error");
    }
    assert_error(&app.get("/api/pipeline_runs/xyz"), 400, "api_resource_error");
    assert_error(&app.get("/api/pipeline_runs/999999"), 404, "record_not_found");
    assert_error(&app.report_run(999999, "running"), 404, "record_not_found");
    assert_error(&app.report_run(run, "paused"), 400, "record_invalid");
    let no_status = app.send("PUT", &format!("/api/pipeline_runs/{run}"), &json!({"pipeline_run": {}}));
    assert_error(&no_status, 400, "record_invalid");

    app.report_run(run, "completed");
    for back in ["initial", "running"] {
        let message = assert_error(&app.report_run(run, back), 409, "record_conflict");
        assert!(message.contains("completed"), "{message}");
    }
    assert_eq!(app.get(&format!("/api/pipeline_runs/{run}")).body["pipeline_run"]["status"], "completed");
}

#[test]
fn writes_need_the_key_and_token_under_require_auth() {
    const KEY: &str = "write-key";
    let app = spawn_app_limited(AuthConfig::new(true, &[KEY.into()]), Limits::default());
    let token = app.add_token("w", None);
    let body = json!({"backfill": seed_fields("x")});
    let bytes = serde_json::to_vec(&body).unwrap();
    let post =
        |headers: &[(&str, &str)], bytes: Vec<u8>| app.send_raw("POST", "/api/pipelines/p/backfills", headers, bytes);

    assert_error(&post(&[], bytes.clone()), 401, "invalid_api_key");
    assert_error(&post(&[("X-API-KEY", KEY)], bytes.clone()), 403, "unauthorized_access");
    let ok = post(&[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)], bytes.clone());
    assert_eq!(ok.status, 200, "{:?}", ok.body);

    // Mage also takes the key as a top-level `api_key` of the body; the body still arrives.
    let mut with_key = body.clone();
    with_key["api_key"] = json!(KEY);
    let r = post(&[("OAUTH-TOKEN", &token)], serde_json::to_vec(&with_key).unwrap());
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backfill"]["name"], "x");
    with_key["api_key"] = json!("wrong");
    assert_error(&post(&[("OAUTH-TOKEN", &token)], serde_json::to_vec(&with_key).unwrap()), 401, "invalid_api_key");

    let id = r.body["backfill"]["id"].as_i64().unwrap();
    let del = app.request("DELETE", &format!("/api/backfills/{id}"));
    assert_error(&del, 401, "invalid_api_key");
}

#[test]
fn a_runs_date_variables_win_over_the_backfills_own() {
    let app = spawn_app();
    let mut fields = seed_fields("x");
    fields["variables"] = json!({"ds": "not a date", "hr": 99, "keep": [1, 2]});
    let id = app.create_backfill("p", fields);
    app.put_backfill(id, json!({"status": "initial"}));
    let run = app.run_ids(id)[1];
    let variables = app.get(&format!("/api/pipeline_runs/{run}")).body["pipeline_run"]["variables"].clone();
    assert_eq!(variables["ds"], "2023-03-01");
    assert_eq!(variables["hr"], "04");
    assert_eq!(variables["keep"], json!([1, 2]));
    assert_eq!(variables["interval_start_datetime_previous"], "2023-03-01T00:00:00+00:00");
    // The backfill keeps its own.
    assert_eq!(app.read_backfill(id)["variables"]["ds"], "not a date");
}
