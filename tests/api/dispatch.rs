//! Claims, leases, heartbeats and reports; pause, run again and retry: issue 8's protocol,
//! all through HTTP on a real file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::AuthConfig;
use backfilld::service::lifecycle::Limits;
use serde_json::{json, Value};

use crate::helpers::{assert_error, seed_fields, spawn_app, spawn_app_tuned, Reply, TestApp};
use crate::wait::eventually;

/// A server whose leases may be 1 s long and whose sweep looks every 50 ms.
fn spawn_fast_leases() -> TestApp {
    spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| {
        s.min_lease_seconds = 1;
        s.engine.sweep_every = Duration::from_millis(50);
    })
}

fn claim(app: &TestApp, body: Value) -> Reply {
    app.send("POST", "/api/pipeline_runs/claim", &body)
}

/// The runs a claim handed out (asserting a 200).
fn claimed(app: &TestApp, body: Value) -> Vec<Value> {
    let r = claim(app, body);
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["pipeline_runs"].as_array().unwrap().clone()
}

fn put_run(app: &TestApp, id: i64, record: Value) -> Reply {
    app.send("PUT", &format!("/api/pipeline_runs/{id}"), &json!({ "pipeline_run": record }))
}

fn get_run(app: &TestApp, id: i64) -> Value {
    let r = app.get(&format!("/api/pipeline_runs/{id}"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["pipeline_run"].clone()
}

/// Every run of the backfill, oldest id first.
fn runs_of(app: &TestApp, backfill_id: i64) -> Vec<Value> {
    let r = app.get(&format!("/api/pipeline_runs?backfill_id={backfill_id}&_limit=1000"));
    let mut runs = r.body["pipeline_runs"].as_array().unwrap().clone();
    runs.sort_by_key(|r| r["id"].as_i64());
    runs
}

/// Per status, how many dates have their newest run in it: Mage's run_status_counts,
/// recounted from the listing.
fn recount(app: &TestApp, backfill_id: i64) -> Value {
    let mut newest: BTreeMap<String, Value> = BTreeMap::new();
    for r in runs_of(app, backfill_id) {
        newest.insert(r["execution_date"].as_str().unwrap().to_string(), r);
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in newest.values() {
        *counts.entry(r["status"].as_str().unwrap().to_string()).or_default() += 1;
    }
    json!(counts)
}

fn ids(runs: &[Value]) -> Vec<i64> {
    runs.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn dates(runs: &[Value]) -> Vec<String> {
    runs.iter().map(|r| r["execution_date"].as_str().unwrap().to_string()).collect()
}

/// A started backfill of the seed's 25 dates (every 4 hours) with these settings.
fn started(app: &TestApp, pipeline: &str, settings: Value) -> i64 {
    let mut fields = seed_fields(pipeline);
    fields["settings"] = settings;
    let id = app.create_backfill(pipeline, fields);
    let r = app.put_backfill(id, json!({"status": "initial"}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    id
}

/// A started backfill of `days` daily dates from 2023-01-01.
fn started_days(app: &TestApp, days: u32, settings: Value) -> i64 {
    let id = app.create_backfill(
        "p",
        json!({"name": "days", "start_datetime": "2023-01-01", "end_datetime": format!("2023-01-{days:02}"),
               "interval_type": "day", "interval_units": 1, "settings": settings}),
    );
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    id
}

#[test]
fn a_claim_hands_out_runs_under_a_lease_and_a_report_finishes_them() {
    let app = spawn_app();
    let id = started(&app, "p", json!(null));
    let before = app.get("/api/pipeline_runs?_limit=1").body["pipeline_runs"][0].clone();
    for key in ["worker", "lease_expires_at", "attempt"] {
        assert!(before.get(key).is_some(), "every run shows {key}: {before}");
    }
    assert_eq!(before["worker"], Value::Null);
    assert_eq!(before["lease_expires_at"], Value::Null);

    let runs = claimed(&app, json!({"worker": "w1", "limit": 2, "lease_seconds": 30}));
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_eq!(r["status"], "running");
        assert_eq!(r["worker"], "w1");
        assert_eq!(r["attempt"], 1);
        assert!(r["started_at"].is_string() && r["lease_expires_at"].is_string(), "{r}");
        assert_eq!(r["backfill_id"], id);
    }
    assert_eq!(app.read_backfill(id)["status"], "running");
    let lease = runs[0]["lease_expires_at"].as_str().unwrap().to_string();

    // A heartbeat extends the lease; a report with metrics finishes the run and keeps them.
    // (20 ms on, so that its lease ends later: times are in microseconds. Not a wait for
    // anything: a busier machine only makes it longer.)
    std::thread::sleep(Duration::from_millis(20));
    let beat = put_run(&app, ids(&runs)[0], json!({"status": "running", "worker": "w1"}));
    assert_eq!(beat.status, 200, "{:?}", beat.body);
    assert!(beat.body["pipeline_run"]["lease_expires_at"].as_str().unwrap() > lease.as_str());
    let done = put_run(&app, ids(&runs)[0], json!({"status": "completed", "worker": "w1", "metrics": {"rows": 12}}));
    assert_eq!(done.status, 200, "{:?}", done.body);
    let run = get_run(&app, ids(&runs)[0]);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["metrics"], json!({"rows": 12}));
    assert_eq!(run["lease_expires_at"], Value::Null);
    assert_eq!(run["worker"], "w1", "the run remembers who ran it");
    // The same report again (a retried request) changes nothing.
    assert_eq!(put_run(&app, ids(&runs)[0], json!({"status": "completed", "worker": "w1"})).status, 200);
    assert_eq!(get_run(&app, ids(&runs)[0])["updated_at"], run["updated_at"]);

    // Not the holder, or not claimed: 409s that say which.
    let other = put_run(&app, ids(&runs)[1], json!({"status": "completed", "worker": "w2"}));
    let message = assert_error(&other, 409, "record_conflict");
    assert!(message.contains("held by worker 'w1'"), "{message}");
    let waiting = runs_of(&app, id).into_iter().find(|r| r["status"] == "initial").unwrap();
    let message = assert_error(
        &put_run(&app, waiting["id"].as_i64().unwrap(), json!({"status": "running", "worker": "w1"})),
        409,
        "record_conflict",
    );
    assert!(message.contains("not held by worker 'w1'") && message.contains("claim"), "{message}");
    assert_eq!(get_run(&app, ids(&runs)[1])["status"], "running");

    // A report by hand (no worker) still works as before, and ends the lease.
    assert_eq!(app.report_run(ids(&runs)[1], "failed").status, 200);
    assert_eq!(get_run(&app, ids(&runs)[1])["lease_expires_at"], Value::Null);
    assert_eq!(app.read_backfill(id)["run_status_counts"], recount(&app, id));
}

#[test]
fn eight_concurrent_claimers_never_run_more_than_the_limit() {
    let _turn = crate::helpers::busy_turn();
    let app = Arc::new(spawn_app());
    // Mage's form sends the limit as text.
    let id = started(&app, "p", json!({"pipeline_run_limit": "3"}));
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let (app, held, most) = (app.clone(), held.clone(), most.clone());
            std::thread::spawn(move || {
                let worker = format!("w{k}");
                let mut mine = vec![];
                let mut idle = 0;
                while idle < 20 {
                    let runs = claimed(&app, json!({"worker": worker, "limit": 2, "backfill_id": id}));
                    // Counted after the server committed the claim and uncounted before a
                    // report is sent: never more than the server's own count.
                    let now = held.fetch_add(runs.len() as i64, Ordering::SeqCst) + runs.len() as i64;
                    most.fetch_max(now, Ordering::SeqCst);
                    let running = app.read_backfill(id)["run_status_counts"]["running"].as_u64().unwrap_or(0);
                    assert!(running <= 3, "{running} running after a claim answer");
                    if runs.is_empty() {
                        idle += 1;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    idle = 0;
                    for r in runs {
                        let run_id = r["id"].as_i64().unwrap();
                        held.fetch_sub(1, Ordering::SeqCst);
                        let done = put_run(&app, run_id, json!({"status": "completed", "worker": worker}));
                        assert_eq!(done.status, 200, "{:?}", done.body);
                        mine.push(run_id);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(most.load(Ordering::SeqCst) <= 3, "{} held at once", most.load(Ordering::SeqCst));
    all.sort();
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "no run was claimed twice");
    assert_eq!(all.len(), 25, "every date ran once");
    let runs = runs_of(&app, id);
    assert_eq!(runs.len(), 25);
    assert!(runs.iter().all(|r| r["status"] == "completed"));
    assert_eq!(dates(&runs).into_iter().collect::<BTreeSet<_>>().len(), 25);
    let b = app.read_backfill(id);
    assert_eq!(b["status"], "completed");
    assert_eq!(b["run_status_counts"], json!({"completed": 25}));
    assert_eq!(b["run_status_counts"], recount(&app, id));
    let tally = app.get(&format!("/api/pipeline_runs?backfill_id={id}&status=completed&_limit=1"));
    assert_eq!(tally.body["metadata"]["count"], 25);
}

#[test]
fn dates_go_oldest_first_or_newest_first_and_backfills_take_turns() {
    let app = spawn_app();
    let forward = started(&app, "fwd", json!(null));
    let runs = claimed(&app, json!({"worker": "w", "limit": 3, "pipeline_uuid": "fwd"}));
    assert_eq!(dates(&runs), ["2023-03-01 00:00:00+00:00", "2023-03-01 04:00:00+00:00", "2023-03-01 08:00:00+00:00"]);
    let backwards = started(&app, "bwd", json!({"run_backwards": true}));
    let runs = claimed(&app, json!({"worker": "w", "limit": 2, "backfill_id": backwards}));
    assert_eq!(dates(&runs), ["2023-03-05 00:00:00+00:00", "2023-03-04 20:00:00+00:00"]);

    // Round-robin: a later, small backfill gets its turn beside the earlier ones.
    let small = started_days(&app, 2, json!(null));
    let runs = claimed(&app, json!({"worker": "w", "limit": 6}));
    let per: BTreeMap<i64, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["backfill_id"].as_i64().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(per, BTreeMap::from([(forward, 2), (backwards, 2), (small, 2)]), "{per:?}");
    // One at a time, claims go around the backfills in turn.
    let turns: Vec<i64> =
        (0..4).map(|_| claimed(&app, json!({"worker": "w", "limit": 1}))[0]["backfill_id"].as_i64().unwrap()).collect();
    assert_eq!(turns[0], turns[2], "{turns:?}");
    assert_ne!(turns[0], turns[1], "{turns:?}");
    assert!(!turns.contains(&small), "the small backfill has no runs left: {turns:?}");
    // Narrowed to a pipeline with nothing waiting: none, and a 200.
    assert!(claimed(&app, json!({"worker": "w", "pipeline_uuid": "nothing here"})).is_empty());
}

#[test]
fn a_lease_left_to_expire_fails_its_run_and_queues_the_date_until_max_attempts() {
    let app = spawn_fast_leases();
    let id = started_days(&app, 1, json!({"max_attempts": 2}));
    let first = claimed(&app, json!({"worker": "w1", "lease_seconds": 1}));
    let first_id = first[0]["id"].as_i64().unwrap();
    eventually("the lease to expire", || get_run(&app, first_id)["status"] == "failed");
    let run = get_run(&app, first_id);
    assert_eq!(run["metrics"]["lease_expired"]["worker"], "w1", "{run}");
    assert!(run["metrics"]["error"].as_str().unwrap().contains("expired"), "{run}");
    assert_eq!(run["lease_expires_at"], Value::Null);
    // The date's second run waits, and the backfill still runs.
    let runs = runs_of(&app, id);
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[1]["status"].as_str(), runs[1]["attempt"].as_i64()), (Some("initial"), Some(2)));
    assert_eq!(runs[1]["execution_date"], runs[0]["execution_date"]);
    assert_eq!(app.read_backfill(id)["status"], "running");
    // The late holder is told its lease expired, for a heartbeat or a report.
    for status in ["running", "completed"] {
        let late = put_run(&app, first_id, json!({"status": status, "worker": "w1"}));
        let message = assert_error(&late, 409, "record_conflict");
        assert!(message.contains("lease") && message.contains("expired"), "{message}");
    }

    // Heartbeats keep a lease alive past its length: one every 250 ms on a lease of 2 s, for
    // 3 s (a heartbeat 1.75 s late would let it expire: more than a busy machine delays one).
    let second = claimed(&app, json!({"worker": "w2", "lease_seconds": 2}));
    let second_id = second[0]["id"].as_i64().unwrap();
    assert_eq!(second[0]["attempt"], 2);
    let claimed_at = Instant::now();
    while claimed_at.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(250));
        let beat = put_run(&app, second_id, json!({"status": "running", "worker": "w2"}));
        assert_eq!(beat.status, 200, "{:?} after {:?}", beat.body, claimed_at.elapsed());
    }
    // Then left to expire: the second attempt was the last. (The sweep fails a run and
    // queues its date again in one write: had it queued a third, it would be there now.)
    eventually("the second lease to expire", || get_run(&app, second_id)["status"] == "failed");
    assert_eq!(runs_of(&app, id).len(), 2, "no third attempt");
    let b = app.read_backfill(id);
    assert_eq!(b["status"], "failed");
    assert!(b["failed_at"].is_string(), "{b}");
    assert_eq!(b["run_status_counts"], json!({"failed": 1}));
    assert_eq!(b["run_status_counts"], recount(&app, id));
    assert!(claimed(&app, json!({"worker": "w3"})).is_empty());
}

#[test]
fn pause_stops_claims_and_resume_restarts_them() {
    let app = spawn_app();
    let id = started(&app, "p", json!(null));
    assert_eq!(claimed(&app, json!({"worker": "w"})).len(), 1);
    let paused = app.put_backfill(id, json!({"is_paused": true}));
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(paused.body["backfill"]["is_paused"], true);
    assert_eq!(paused.body["backfill"]["status"], "running", "a Mage status is unchanged");
    assert!(claimed(&app, json!({"worker": "w"})).is_empty());
    assert!(claimed(&app, json!({"worker": "w", "backfill_id": id})).is_empty());
    let listed = app.get("/api/backfills").body["backfills"][0].clone();
    assert_eq!(listed["is_paused"], true);
    assert_eq!(app.put_backfill(id, json!({"is_paused": false})).body["backfill"]["is_paused"], false);
    assert_eq!(claimed(&app, json!({"worker": "w", "limit": 5})).len(), 5);
    assert_error(&app.put_backfill(id, json!({"is_paused": "yes"})), 400, "record_invalid");
}

#[test]
fn cancelling_a_backfill_tells_the_holders_to_stop() {
    let app = spawn_app();
    let id = started(&app, "p", json!(null));
    let runs = claimed(&app, json!({"worker": "w", "limit": 2}));
    assert_eq!(app.put_backfill(id, json!({"status": "cancelled"})).status, 200);
    for (run, status) in ids(&runs).into_iter().zip(["running", "completed"]) {
        let message =
            assert_error(&put_run(&app, run, json!({"status": status, "worker": "w"})), 409, "record_conflict");
        assert!(message.contains("cancelled") && !message.contains("expired"), "{message}");
        let r = get_run(&app, run);
        assert_eq!((r["status"].as_str(), &r["lease_expires_at"]), (Some("cancelled"), &Value::Null));
    }
    assert!(claimed(&app, json!({"worker": "w"})).is_empty());
    assert_eq!(app.read_backfill(id)["run_status_counts"], json!({"cancelled": 25}));
}

/// A started backfill of four dates whose newest runs are completed, failed, cancelled and
/// completed, set by hand, with `reprocess_behavior` as given.
fn four_finished_dates(app: &TestApp, reprocess: &str) -> (i64, Vec<i64>) {
    let id = started_days(app, 4, json!({"reprocess_behavior": reprocess}));
    let runs = ids(&runs_of(app, id));
    for (run, status) in runs.iter().zip(["completed", "failed", "cancelled", "completed"]) {
        assert_eq!(app.report_run(*run, status).status, 200);
    }
    assert_eq!(app.read_backfill(id)["status"], "failed");
    (id, runs)
}

#[test]
fn run_again_repeats_the_dates_each_reprocess_behaviour_names() {
    let app = spawn_app();
    for (reprocess, again) in [("none", vec![2]), ("failed", vec![1, 2]), ("completed", vec![0, 1, 2, 3])] {
        let (id, old) = four_finished_dates(&app, reprocess);
        let failed_at = app.read_backfill(id)["failed_at"].clone();
        let r = app.put_backfill(id, json!({"status": "initial"}));
        assert_eq!(r.status, 200, "{reprocess}: {:?}", r.body);
        let b = &r.body["backfill"];
        if reprocess == "none" {
            // The failed date was not run again: the backfill stays failed, since then.
            assert_eq!((b["status"].as_str(), &b["failed_at"]), (Some("failed"), &failed_at));
        } else {
            assert_eq!(
                (b["status"].as_str(), &b["completed_at"], &b["failed_at"]),
                (Some("running"), &Value::Null, &Value::Null)
            );
        }
        let runs = runs_of(&app, id);
        let new: Vec<&Value> = runs.iter().filter(|r| !old.contains(&r["id"].as_i64().unwrap())).collect();
        let old_dates = dates(&runs[..4]);
        let want: Vec<String> = again.iter().map(|&k| old_dates[k].clone()).collect();
        assert_eq!(
            new.iter().map(|r| r["execution_date"].as_str().unwrap().to_string()).collect::<Vec<_>>(),
            want,
            "{reprocess}"
        );
        assert!(new.iter().all(|r| r["status"] == "initial" && r["attempt"] == 2), "{reprocess}: {new:?}");
        assert_eq!(app.read_backfill(id)["run_status_counts"], recount(&app, id), "{reprocess}");
        // Dates with a waiting run never get another: now nothing is left to run again.
        let message = assert_error(&app.put_backfill(id, json!({"status": "initial"})), 409, "record_conflict");
        assert!(message.contains("nothing to run again"), "{message}");
        assert_eq!(runs_of(&app, id).len(), runs.len(), "{reprocess}: the 409 wrote nothing");
    }
    // The behaviour may come in the same request; and claims take the new runs.
    let (id, _) = four_finished_dates(&app, "none");
    let r = app.put_backfill(id, json!({"status": "initial", "settings": {"reprocess_behavior": "failed"}}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let runs = claimed(&app, json!({"worker": "w", "limit": 10, "backfill_id": id}));
    assert_eq!(runs.len(), 2);
}

#[test]
fn retry_queues_one_date_of_a_finished_run() {
    let app = spawn_app();
    let (id, old) = four_finished_dates(&app, "none");
    let retried = app.send("POST", &format!("/api/pipeline_runs/{}/retry", old[1]), &json!({}));
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let new = &retried.body["pipeline_run"];
    assert_eq!((new["status"].as_str(), new["attempt"].as_i64()), (Some("initial"), Some(2)));
    assert_eq!(new["execution_date"], get_run(&app, old[1])["execution_date"]);
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), &b["failed_at"]), (Some("running"), &Value::Null));
    assert_eq!(b["run_status_counts"], recount(&app, id));
    let new_id = new["id"].as_i64().unwrap();

    // 409s: not the newest run of its date; waiting; running. 404: no such run.
    let post = |run: i64| app.send("POST", &format!("/api/pipeline_runs/{run}/retry"), &json!({}));
    let message = assert_error(&post(old[1]), 409, "record_conflict");
    assert!(message.contains("not the newest"), "{message}");
    assert!(assert_error(&post(new_id), 409, "record_conflict").contains("initial"));
    let running = claimed(&app, json!({"worker": "w", "backfill_id": id}));
    assert_eq!(ids(&running), [new_id]);
    assert!(assert_error(&post(new_id), 409, "record_conflict").contains("running"));
    assert_error(&post(999_999), 404, "record_not_found");
    // Completed and cancelled runs can be retried too.
    assert_eq!(post(old[0]).status, 200);
    assert_eq!(post(old[2]).status, 200);
    assert_eq!(app.read_backfill(id)["run_status_counts"], recount(&app, id));
}

#[test]
fn bad_claims_and_reports_are_400s_that_name_the_field_and_write_nothing() {
    let app = spawn_app();
    let id = started(&app, "p", json!(null));
    let long = "x".repeat(201);
    for (body, field) in [
        (json!({}), "worker"),
        (json!({"worker": ""}), "worker"),
        (json!({"worker": "   "}), "worker"),
        (json!({"worker": 3}), "worker"),
        (json!({"worker": long}), "worker"),
        (json!({"worker": "w", "limit": 0}), "limit"),
        (json!({"worker": "w", "limit": 1001}), "limit"),
        (json!({"worker": "w", "limit": "2"}), "limit"),
        (json!({"worker": "w", "limit": 1.5}), "limit"),
        (json!({"worker": "w", "lease_seconds": 4}), "lease_seconds"),
        (json!({"worker": "w", "lease_seconds": 86_401}), "lease_seconds"),
        (json!({"worker": "w", "lease_seconds": "60"}), "lease_seconds"),
        (json!({"worker": "w", "pipeline_uuid": ""}), "pipeline_uuid"),
        (json!({"worker": "w", "pipeline_uuid": ["p"]}), "pipeline_uuid"),
        (json!({"worker": "w", "backfill_id": 0}), "backfill_id"),
        (json!({"worker": "w", "backfill_id": "one"}), "backfill_id"),
        (json!({"worker": "w", "lease": 60}), "lease"),
    ] {
        let r = claim(&app, body.clone());
        assert_error(&r, 400, "record_invalid");
        let detail = r.body["error"]["errors"][0].as_str().unwrap().to_string();
        assert!(detail.starts_with(&format!("{field}:")), "{body}: {detail}");
    }
    assert_error(&claim(&app, json!([1])), 400, "api_resource_error");
    assert_error(&claim(&app, json!({"worker": "w", "backfill_id": 999})), 404, "record_not_found");
    assert_error(
        &claim(&app, json!({"worker": "w", "backfill_id": id, "pipeline_uuid": "other"})),
        404,
        "record_not_found",
    );
    assert_eq!(app.read_backfill(id)["run_status_counts"], json!({"initial": 25}), "nothing was claimed");

    let run = claimed(&app, json!({"worker": "w"}))[0]["id"].as_i64().unwrap();
    for (record, field) in [
        (json!({"status": "running", "worker": ""}), "worker"),
        (json!({"status": "running", "worker": 1}), "worker"),
        (json!({"status": "completed", "worker": "w", "metrics": "fine"}), "metrics"),
        (json!({"status": "done", "worker": "w"}), "status"),
        (json!({"worker": "w"}), "status"),
    ] {
        let r = put_run(&app, run, record.clone());
        assert_error(&r, 400, "record_invalid");
        assert!(r.body["error"]["errors"][0].as_str().unwrap().starts_with(&format!("{field}:")), "{record}");
    }
    assert_eq!(get_run(&app, run)["status"], "running");
    assert_error(&put_run(&app, 999_999, json!({"status": "running", "worker": "w"})), 404, "record_not_found");
}

#[test]
fn run_settings_are_checked_at_create_and_update() {
    let app = spawn_app();
    for (settings, field) in [
        (json!({"pipeline_run_limit": 0}), "settings.pipeline_run_limit"),
        (json!({"pipeline_run_limit": -2}), "settings.pipeline_run_limit"),
        (json!({"pipeline_run_limit": "three"}), "settings.pipeline_run_limit"),
        (json!({"pipeline_run_limit": "-3"}), "settings.pipeline_run_limit"),
        (json!({"pipeline_run_limit": 2.5}), "settings.pipeline_run_limit"),
        (json!({"pipeline_run_limit": true}), "settings.pipeline_run_limit"),
        (json!({"max_attempts": 0}), "settings.max_attempts"),
        (json!({"max_attempts": 101}), "settings.max_attempts"),
        (json!({"max_attempts": [3]}), "settings.max_attempts"),
        (json!({"run_backwards": "yes"}), "settings.run_backwards"),
        (json!({"reprocess_behavior": "sometimes"}), "settings.reprocess_behavior"),
        (json!({"reprocess_behavior": 1}), "settings.reprocess_behavior"),
    ] {
        let mut fields = seed_fields("x");
        fields["settings"] = settings.clone();
        let r = app.send("POST", "/api/pipelines/p/backfills", &json!({ "backfill": fields }));
        assert_error(&r, 400, "record_invalid");
        let detail = r.body["error"]["errors"][0].as_str().unwrap().to_string();
        assert!(detail.starts_with(&format!("{field}:")), "{settings}: {detail}");
    }
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0, "nothing was written");
    let id = app.create_backfill("p", seed_fields("x"));
    assert_error(&app.put_backfill(id, json!({"settings": {"pipeline_run_limit": "x"}})), 400, "record_invalid");
    let ok = app.put_backfill(
        id,
        json!({"settings": {"pipeline_run_limit": "4", "max_attempts": 100, "run_backwards": false,
               "reprocess_behavior": "completed", "theirs": {"kept": true}}}),
    );
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["backfill"]["settings"]["pipeline_run_limit"], "4", "stored as sent");
    assert_eq!(app.put_backfill(id, json!({"settings": {"pipeline_run_limit": null}})).status, 200);
}

/// Completes every run a claim hands out of the backfill, one at a time; returns how many.
fn complete_all(app: &TestApp, id: i64) -> usize {
    let mut n = 0;
    while let Some(run) = claimed(app, json!({"worker": "w", "backfill_id": id})).first() {
        assert_eq!(
            put_run(app, run["id"].as_i64().unwrap(), json!({"status": "completed", "worker": "w"})).status,
            200
        );
        n += 1;
    }
    n
}

#[test]
fn a_failed_date_does_not_stop_the_others_and_run_again_repeats_only_it() {
    let app = spawn_app();
    let id = started_days(&app, 5, json!(null));
    let runs = claimed(&app, json!({"worker": "w", "limit": 2, "backfill_id": id}));
    assert_eq!(put_run(&app, ids(&runs)[0], json!({"status": "completed", "worker": "w"})).status, 200);
    let failed = put_run(&app, ids(&runs)[1], json!({"status": "failed", "worker": "w"}));
    assert_eq!(failed.status, 200);
    // Mage's rule: failed as soon as a date fails, since then; its other dates still run.
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("failed"), &json!(false)), "{b}");
    assert_eq!(b["failed_at"], failed.body["pipeline_run"]["completed_at"]);
    assert_eq!(complete_all(&app, id), 3, "every waiting date was handed out");
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), b["failed_at"].is_string()), (Some("failed"), true), "{b}");
    assert_eq!(b["run_status_counts"], json!({"completed": 4, "failed": 1}));
    // Run again, no settings: the failed date alone runs again, and the backfill completes.
    let again = app.put_backfill(id, json!({"status": "initial"}));
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(
        (again.body["backfill"]["status"].as_str(), &again.body["backfill"]["failed_at"]),
        (Some("running"), &Value::Null)
    );
    let repeated: Vec<Value> = runs_of(&app, id).into_iter().filter(|r| r["status"] == "initial").collect();
    assert_eq!(dates(&repeated), dates(&runs[1..2]), "only the failed date");
    assert_eq!(complete_all(&app, id), 1);
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), b["completed_at"].is_string()), (Some("completed"), true), "{b}");
    assert_error(&app.put_backfill(id, json!({"status": "initial"})), 409, "record_conflict");
}

#[test]
fn stop_on_failure_halts_the_backfill_until_it_is_run_again_or_the_date_retried() {
    let app = spawn_app();
    for resume in ["run again", "retry"] {
        let id = started_days(&app, 5, json!({"stop_on_failure": true, "reprocess_behavior": "none"}));
        let runs = claimed(&app, json!({"worker": "w", "limit": 2, "backfill_id": id}));
        assert_eq!(put_run(&app, ids(&runs)[0], json!({"status": "failed", "worker": "w"})).status, 200);
        let b = app.read_backfill(id);
        assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("failed"), &json!(true)), "{b}");
        assert!(claimed(&app, json!({"worker": "w", "backfill_id": id})).is_empty(), "halted");
        assert!(claimed(&app, json!({"worker": "w"})).is_empty(), "halted, whichever claim");
        // The run already out finishes and is counted; the halt stays.
        assert_eq!(put_run(&app, ids(&runs)[1], json!({"status": "completed", "worker": "w"})).status, 200);
        assert_eq!(app.read_backfill(id)["is_halted"], true);
        if resume == "run again" {
            // Reprocess `none`: no date repeats, the three waiting ones resume; still failed.
            let again = app.put_backfill(id, json!({"status": "initial"}));
            assert_eq!(again.status, 200, "{:?}", again.body);
            let b = &again.body["backfill"];
            assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("failed"), &json!(false)), "{b}");
            assert_eq!(complete_all(&app, id), 3);
            assert_eq!(app.read_backfill(id)["run_status_counts"], json!({"completed": 4, "failed": 1}));
            assert_error(&app.put_backfill(id, json!({"status": "initial"})), 409, "record_conflict");
        } else {
            let r = app.send("POST", &format!("/api/pipeline_runs/{}/retry", ids(&runs)[0]), &json!({}));
            assert_eq!(r.status, 200, "{:?}", r.body);
            let b = app.read_backfill(id);
            assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("running"), &json!(false)), "{b}");
            assert_eq!(complete_all(&app, id), 4, "the retried date and the three waiting");
            assert_eq!(app.read_backfill(id)["status"], "completed");
        }
    }
}

#[test]
fn a_lost_lease_halts_a_backfill_that_stops_on_failure_only_after_its_last_attempt() {
    let app = spawn_fast_leases();
    let id = started_days(&app, 3, json!({"stop_on_failure": true, "max_attempts": 2}));
    for attempt in 1..=2 {
        let run =
            claimed(&app, json!({"worker": "w", "lease_seconds": 1, "backfill_id": id}))[0]["id"].as_i64().unwrap();
        assert_eq!(get_run(&app, run)["attempt"], attempt);
        eventually("the lease to expire", || get_run(&app, run)["status"] == "failed");
        let b = app.read_backfill(id);
        if attempt == 1 {
            // Queued again: not failed for good, so neither failed nor halted.
            assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("running"), &json!(false)), "{b}");
        } else {
            assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("failed"), &json!(true)), "{b}");
        }
    }
    assert!(claimed(&app, json!({"worker": "w", "backfill_id": id})).is_empty(), "halted");
}

#[test]
fn a_retried_date_of_two_failed_resumes_a_halted_backfill_which_stays_failed() {
    let app = spawn_app();
    let id = started_days(&app, 4, json!({"stop_on_failure": true}));
    let runs = ids(&claimed(&app, json!({"worker": "w", "limit": 2, "backfill_id": id})));
    for run in &runs {
        assert_eq!(put_run(&app, *run, json!({"status": "failed", "worker": "w"})).status, 200);
    }
    let failed_at = app.read_backfill(id)["failed_at"].clone();
    assert!(failed_at.is_string());
    let retried = app.send("POST", &format!("/api/pipeline_runs/{}/retry", runs[0]), &json!({}));
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), &b["is_halted"], &b["failed_at"]), (Some("failed"), &json!(false), &failed_at));
    // The retried date first, then the two that waited.
    let handed = claimed(&app, json!({"worker": "w", "limit": 10, "backfill_id": id}));
    assert_eq!(handed.len(), 3, "{handed:?}");
}

#[test]
fn a_completed_backfill_whose_date_is_set_failed_by_hand_is_failed_and_back() {
    let app = spawn_app();
    let id = started_days(&app, 2, json!(null));
    let runs = app.run_ids(id);
    for run in &runs {
        assert_eq!(app.report_run(*run, "completed").status, 200);
    }
    assert_eq!(app.read_backfill(id)["status"], "completed");
    // Mage's clients may set a finished run's status by hand: the backfill follows.
    assert_eq!(app.report_run(runs[1], "failed").status, 200);
    let b = app.read_backfill(id);
    assert_eq!(
        (b["status"].as_str(), b["failed_at"].is_string(), &b["completed_at"]),
        (Some("failed"), true, &Value::Null)
    );
    assert_eq!(app.report_run(runs[1], "completed").status, 200);
    let b = app.read_backfill(id);
    assert_eq!(
        (b["status"].as_str(), &b["failed_at"], b["completed_at"].is_string()),
        (Some("completed"), &Value::Null, true)
    );
}

#[test]
fn last_run_failed_lists_the_dates_whose_newest_run_failed() {
    let app = spawn_app();
    let id = started_days(&app, 6, json!({"reprocess_behavior": "none"}));
    let other = started_days(&app, 2, json!(null));
    let runs = ids(&runs_of(&app, id));
    // Dates 0 and 1 fail; 0 is retried and completes; 1, 3 and 4 stay failed; 2 completes.
    for (run, status) in runs.iter().zip(["failed", "failed", "completed", "failed", "failed"]) {
        assert_eq!(app.report_run(*run, status).status, 200);
    }
    let retried = app.send("POST", &format!("/api/pipeline_runs/{}/retry", runs[0]), &json!({}));
    assert_eq!(retried.status, 200);
    assert_eq!(app.report_run(retried.body["pipeline_run"]["id"].as_i64().unwrap(), "completed").status, 200);
    for run in ids(&runs_of(&app, other)) {
        assert_eq!(app.report_run(run, "failed").status, 200);
    }
    let page = |query: &str| {
        let r = app.get(&format!("/api/pipeline_runs?backfill_id={id}&status=last_run_failed{query}"));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    };
    let all = page("&_limit=40&_offset=0");
    assert_eq!(ids(all["pipeline_runs"].as_array().unwrap()), [runs[4], runs[3], runs[1]], "newest first");
    assert_eq!(all["metadata"]["count"], 3);
    assert_eq!(all["metadata"]["next"], false);
    // Paged by offset and by cursor, as the other filters.
    let first = page("&_limit=2");
    assert_eq!(ids(first["pipeline_runs"].as_array().unwrap()), [runs[4], runs[3]]);
    assert_eq!((&first["metadata"]["count"], &first["metadata"]["next"]), (&json!(3), &json!(true)));
    let cursor = first["metadata"]["cursor"].as_str().unwrap().to_string();
    let rest = page(&format!("&_limit=2&_cursor={cursor}"));
    assert_eq!(ids(rest["pipeline_runs"].as_array().unwrap()), [runs[1]]);
    assert_eq!(ids(page("&_limit=2&_offset=2")["pipeline_runs"].as_array().unwrap()), [runs[1]]);
    // The backfill's own pipeline matches all; another pipeline's none; without a backfill
    // the filter is refused.
    let same = page("&pipeline_uuid=p");
    assert_eq!((same["pipeline_runs"].as_array().unwrap().len(), &same["metadata"]["count"]), (3, &json!(3)));
    let none = page("&pipeline_uuid=elsewhere");
    assert_eq!((none["pipeline_runs"].as_array().unwrap().len(), &none["metadata"]["count"]), (0, &json!(0)));
    let message = assert_error(&app.get("/api/pipeline_runs?status=last_run_failed"), 400, "api_resource_error");
    assert!(message.contains("backfill_id"), "{message}");
}

#[test]
fn a_worker_reports_only_running_completed_or_failed_and_a_repeat_changes_nothing() {
    let app = spawn_app();
    started(&app, "p", json!(null));
    let run = claimed(&app, json!({"worker": "w"}))[0]["id"].as_i64().unwrap();
    for status in ["cancelled", "initial"] {
        let r = put_run(&app, run, json!({"status": status, "worker": "w"}));
        assert!(assert_error(&r, 400, "record_invalid").contains("status"), "{status}");
    }
    let done = json!({"status": "completed", "worker": "w", "metrics": {"rows": 1}});
    assert_eq!(put_run(&app, run, done).status, 200);
    let first = get_run(&app, run);
    let again = json!({"status": "completed", "worker": "w", "metrics": {"rows": 2}});
    assert_eq!(put_run(&app, run, again).status, 200);
    assert_eq!(get_run(&app, run), first, "the repeat changed nothing");
    let other = put_run(&app, run, json!({"status": "failed", "worker": "w"}));
    assert!(assert_error(&other, 409, "record_conflict").contains("already completed"));
}

#[test]
fn paused_at_create_and_old_settings_do_not_block_pause_or_cancel() {
    let app = spawn_app();
    let mut fields = seed_fields("paused");
    fields["is_paused"] = json!(true);
    let id = app.create_backfill("p", fields);
    assert_eq!(app.read_backfill(id)["is_paused"], true);
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    assert!(claimed(&app, json!({"worker": "w"})).is_empty());
    // A value stored before these rules (written into the file directly, as a file of an
    // older version may hold it) counts as its default and blocks no other change.
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute("UPDATE backfill SET settings = '{\"pipeline_run_limit\": \"\"}' WHERE id = ?1", [id]).unwrap();
    drop(conn);
    assert_eq!(app.put_backfill(id, json!({"is_paused": false})).status, 200);
    assert_eq!(claimed(&app, json!({"worker": "w", "limit": 30})).len(), 25, "no limit");
    assert_eq!(app.put_backfill(id, json!({"status": "cancelled"})).status, 200);
}
