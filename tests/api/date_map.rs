//! `GET /api/backfills/:id/date_map`: the backfill's dates in at most N cells, each counting
//! its dates by the status of their newest run, against a brute force over the runs' listing;
//! its bounds, refusals and conditional reads.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::{agent, assert_error, seed_fields, spawn_app, TestApp};

fn map(app: &TestApp, id: i64, cells: u64) -> Value {
    let r = app.get(&format!("/api/backfills/{id}/date_map?cells={cells}"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["metadata"], Value::Null);
    assert_eq!(r.body.as_object().unwrap().len(), 2, "{:?}", r.body);
    r.body["date_map"].clone()
}

/// Each date's newest run's status (by the runs' listing: the highest id of each date), in
/// date order; `none` for the dates in `dates` without a run.
fn brute_force(app: &TestApp, id: i64, dates: &[String]) -> Vec<String> {
    let r = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1000"));
    let mut newest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for run in r.body["pipeline_runs"].as_array().unwrap() {
        let date = run["execution_date"].as_str().unwrap().to_string();
        let (rid, status) = (run["id"].as_i64().unwrap(), run["status"].as_str().unwrap().to_string());
        if newest.get(&date).is_none_or(|(n, _)| *n < rid) {
            newest.insert(date, (rid, status));
        }
    }
    dates.iter().map(|d| newest.get(d).map_or("none".to_string(), |(_, s)| s.clone())).collect()
}

/// The map's cells against the brute force: every date once, in order, in `min(dates, n)`
/// cells of sizes one apart, each counting its dates' statuses, all six keys present.
fn check(app: &TestApp, id: i64, dates: &[String], n: u64) {
    let m = map(app, id, n);
    assert_eq!(m["dates"], dates.len());
    let want = brute_force(app, id, dates);
    let cells = m["cells"].as_array().unwrap();
    assert_eq!(cells.len() as u64, n.min(dates.len() as u64), "{m}");
    let mut i = 0;
    for cell in cells {
        let k = cell["dates"].as_u64().unwrap() as usize;
        assert!(k == dates.len() / cells.len() || k == dates.len().div_ceil(cells.len()), "{m}");
        assert_eq!(cell["first"], dates[i]);
        assert_eq!(cell["last"], dates[i + k - 1]);
        let counts = cell["counts"].as_object().unwrap();
        let keys: Vec<&str> = counts.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "{cell}");
        for key in ["completed", "failed", "running", "initial", "cancelled", "none"] {
            let expected = want[i..i + k].iter().filter(|s| *s == key).count();
            assert_eq!(counts[key], expected, "{key} in {cell}");
        }
        i += k;
    }
    assert_eq!(i, dates.len());
}

/// The seed's dates (every 4 hours from 2023-03-01 to 2023-03-05), as runs write them.
fn seed_dates() -> Vec<String> {
    (0..25).map(|k| format!("2023-03-{:02} {:02}:00:00+00:00", 1 + k * 4 / 24, k * 4 % 24)).collect()
}

#[test]
fn the_map_counts_each_dates_newest_run_through_random_retries_reruns_and_reports() {
    let app = spawn_app();
    let id = app.create_backfill("etl", json!(seed_fields("m")));
    let dates = seed_dates();
    // Never started: every date, no run.
    check(&app, id, &dates, 1000);
    check(&app, id, &dates, 7);
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    check(&app, id, &dates, 25);
    let mut seed = 11u64;
    let mut rand = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _ in 0..60 {
        let runs = app.run_ids(id);
        let run = runs[rand(runs.len() as u64) as usize];
        match rand(6) {
            0..=2 => {
                let status = ["running", "completed", "failed", "cancelled"][rand(4) as usize];
                app.report_run(run, status);
            }
            3 | 4 => {
                app.send("POST", &format!("/api/pipeline_runs/{run}/retry"), &json!({}));
            }
            _ => {
                let how = ["none", "failed", "completed"][rand(3) as usize];
                app.put_backfill(id, json!({"status": "initial", "settings": {"reprocess_behavior": how}}));
            }
        }
        check(&app, id, &dates, 1 + rand(30));
    }
}

#[test]
fn the_map_is_bounded_refuses_bad_cells_and_unknown_backfills() {
    let app = spawn_app();
    let id = app.create_backfill("etl", json!(seed_fields("m")));
    // The default is 1,000 cells: one per date here.
    let r = app.get(&format!("/api/backfills/{id}/date_map"));
    assert_eq!(r.body["date_map"]["cells"].as_array().unwrap().len(), 25);
    assert_eq!(map(&app, id, 1)["cells"][0]["dates"], 25);
    assert_eq!(map(&app, id, 5000)["cells"].as_array().unwrap().len(), 25);
    for bad in ["0", "5001", "-1", "abc", "2.5", ""] {
        let r = app.get(&format!("/api/backfills/{id}/date_map?cells={bad}"));
        let message = assert_error(&r, 400, "api_resource_error");
        assert!(message.contains("cells"), "{message}");
    }
    assert_error(&app.get("/api/backfills/999/date_map"), 404, "record_not_found");
    assert_error(&app.get("/api/backfills/x/date_map"), 400, "api_resource_error");
    // A month schedule: calendar dates, each a cell.
    let months = app.create_backfill(
        "etl",
        json!({"name": "months", "start_datetime": "2024-01-31T00:00:00Z", "end_datetime": "2024-05-31T00:00:00Z",
               "interval_type": "month", "interval_units": 1}),
    );
    let firsts: Vec<Value> =
        map(&app, months, 10)["cells"].as_array().unwrap().iter().map(|c| c["first"].clone()).collect();
    assert_eq!(
        firsts,
        ["2024-01-31", "2024-02-29", "2024-03-29", "2024-04-29", "2024-05-29"]
            .map(|d| json!(format!("{d} 00:00:00+00:00")))
    );
    // No dates without a complete schedule.
    let open = app.create_backfill("etl", json!({"name": "open"}));
    assert_eq!(map(&app, open, 10), json!({"dates": 0, "cells": []}));
}

#[test]
fn the_map_answers_304_while_its_backfill_does_not_change() {
    let app = spawn_app();
    let a = app.create_backfill("etl", json!(seed_fields("a")));
    let b = app.create_backfill("etl", json!(seed_fields("b")));
    for id in [a, b] {
        assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    }
    let path = format!("/api/backfills/{a}/date_map?cells=10");
    let get = |tag: Option<&str>| {
        let mut req = agent().get(app.url(&path));
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        let resp = req.call().unwrap();
        let etag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), etag)
    };
    let (status, tag) = get(None);
    assert_eq!(status, 200);
    let tag = tag.unwrap();
    // The backfill's own tag: the same as its detail's.
    let detail = agent().get(app.url(&format!("/api/backfills/{a}"))).call().unwrap();
    assert_eq!(detail.headers().get("etag").and_then(|v| v.to_str().ok()), Some(tag.as_str()));
    assert_eq!(get(Some(&tag)).0, 304);
    // A write to another backfill's runs leaves it alone.
    let other = app.run_ids(b)[0];
    assert_eq!(app.report_run(other, "completed").status, 200);
    assert_eq!(get(Some(&tag)).0, 304);
    // A report on one of its runs changes it.
    let run = app.run_ids(a)[0];
    assert_eq!(app.report_run(run, "completed").status, 200);
    let (status, new_tag) = get(Some(&tag));
    assert_eq!(status, 200);
    assert_ne!(new_tag.unwrap(), tag);
    assert_eq!(map(&app, a, 1)["cells"][0]["counts"]["completed"], 1);
}

/// A cell's `first` and `last` list its dates' runs: `execution_date_from` and
/// `execution_date_to` on the runs' listing, both included, counted and paged, with a
/// backfill only.
#[test]
fn a_cell_s_dates_list_their_runs_and_nothing_else() {
    let app = spawn_app();
    let id = app.create_backfill("etl", seed_fields("ranged"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let cells = map(&app, id, 4)["cells"].as_array().unwrap().clone();
    let all = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1000"));
    let runs = all.body["pipeline_runs"].as_array().unwrap();
    let mut listed = 0;
    for cell in &cells {
        let (first, last) = (cell["first"].as_str().unwrap(), cell["last"].as_str().unwrap());
        let want: Vec<i64> = runs
            .iter()
            .filter(|r| {
                let d = r["execution_date"].as_str().unwrap();
                d >= first && d <= last
            })
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(want.len() as u64, cell["dates"].as_u64().unwrap());
        // Two to a page, so that the range is paged by its cursor too.
        let mut got = vec![];
        let mut cursor = String::new();
        loop {
            let q = format!(
                "backfill_id={id}&execution_date_from={}&execution_date_to={}&_limit=2{cursor}",
                encode(first),
                encode(last)
            );
            let r = app.get(&format!("/api/pipeline_runs?{q}"));
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["metadata"]["count"], want.len(), "{:?}", r.body);
            got.extend(r.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
            if r.body["metadata"]["next"] != true {
                break;
            }
            cursor = format!("&_cursor={}", r.body["metadata"]["cursor"].as_str().unwrap());
        }
        assert_eq!(got, want, "{cell}");
        listed += got.len();
    }
    assert_eq!(listed, runs.len());
    // One end alone: from the last cell's first date on.
    let last = cells.last().unwrap();
    let r = app.get(&format!(
        "/api/pipeline_runs?backfill_id={id}&execution_date_from={}",
        encode(last["first"].as_str().unwrap())
    ));
    assert_eq!(r.body["metadata"]["count"], last["dates"]);
    for bad in [
        "execution_date_from=2023-03-01",
        &format!("backfill_id={id}&execution_date_from=yesterday"),
        &format!("backfill_id={id}&execution_date_from=2023-03-02&execution_date_to=2023-03-01"),
    ] {
        let r = app.get(&format!("/api/pipeline_runs?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("execution_date"), "{bad}: {:?}", r.body);
    }
}

/// `s` as a query value ('+' and ' ' escaped).
fn encode(s: &str) -> String {
    s.replace('+', "%2B").replace(' ', "%20").replace(':', "%3A")
}
