//! `GET /api/backfills` and `GET /api/pipelines/:uuid/backfills`.

use serde_json::{json, Value};

use crate::helpers::{assert_error, backfill, ids, spawn_app};

/// The exact request of the seed page (../shared/seed/).
const SEED_URL: &str = "/api/backfills?_limit=20&_offset=0&include_run_count=true&pipeline_uuid=example_pipeline&api_key=zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2";

#[test]
fn the_seed_example_fetched_with_the_seeds_url_gives_the_seeds_values() {
    // Arrange
    let app = spawn_app();
    let example: Value = serde_json::from_str(include_str!("../../examples/seed-example.json")).unwrap();
    app.import(&example);

    // Act
    let reply = app.get_with(SEED_URL, &[("OAUTH-TOKEN", "some_really_long_string")]);

    // Assert: every key the seed shows, with the seed's value, plus the contract's extras.
    assert_eq!(reply.status, 200);
    let row = &reply.body["backfills"][0];
    let seed = json!({
        "block_uuid": null,
        "completed_at": null,
        "created_at": "2023-03-23 18:27:58.848959+00:00",
        "end_datetime": "2023-03-05 00:00:00+00:00",
        "failed_at": null,
        "id": 9,
        "interval_type": "hour",
        "interval_units": 4,
        "metrics": null,
        "name": "sparkling glitter",
        "pipeline_schedule_id": null,
        "pipeline_uuid": "example_pipeline",
        "start_datetime": "2023-03-01 00:00:00+00:00",
        "started_at": null,
        "status": null,
        "total_run_count": 25,
        "updated_at": "2023-03-23 18:28:22.379725+00:00",
        "variables": null,
    });
    for (key, want) in seed.as_object().unwrap() {
        assert_eq!(&row[key], want, "{key}");
    }
    let mut keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    keys.sort();
    let mut want_keys: Vec<&str> = seed.as_object().unwrap().keys().map(String::as_str).collect();
    // The contract's extras, and the pause and halt flags.
    want_keys.extend(["run_status_counts", "settings", "is_paused", "is_halted"]);
    want_keys.sort();
    assert_eq!(keys, want_keys);
    assert_eq!((&row["is_paused"], &row["is_halted"]), (&json!(false), &json!(false)));
    assert_eq!(row["run_status_counts"], json!({}));
    assert_eq!(reply.body["metadata"], json!({"count": 1, "next": false}));
}

#[test]
fn keys_are_sent_in_alphabetical_order() {
    let app = spawn_app();
    app.import(&json!({"backfills": [backfill(1, "p", "2023-01-01")]}));
    let text = crate::helpers::agent()
        .get(app.url("/api/backfills?include_run_count=1"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let positions: Vec<usize> =
        ["\"block_uuid\"", "\"id\"", "\"run_status_counts\"", "\"total_run_count\"", "\"variables\""]
            .iter()
            .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} missing in {text}")))
            .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn the_listing_is_newest_first_with_ties_by_higher_id() {
    let app = spawn_app();
    app.import(&json!({"backfills": [
        backfill(1, "p", "2023-01-02 00:00:00"),
        backfill(2, "p", "2023-01-01 00:00:00"),
        backfill(3, "p", "2023-01-02 00:00:00"),
        backfill(4, "p", "2023-01-03 00:00:00.000001"),
        backfill(5, "p", "2023-01-03 00:00:00"),
    ]}));
    assert_eq!(ids(&app.get("/api/backfills")), vec![4, 5, 3, 1, 2]);
}

#[test]
fn pagination_holds_at_its_edges() {
    let app = spawn_app();
    let records: Vec<Value> = (1..=45).map(|i| backfill(i, "p", &format!("2023-01-01 00:00:{:02}", i))).collect();
    app.import(&json!({ "backfills": records }));

    let first = app.get("/api/backfills");
    assert_eq!(ids(&first).len(), 40, "the default limit is 40");
    assert_eq!(ids(&first)[0], 45);
    assert_eq!(first.body["metadata"]["count"], 45);
    assert_eq!(first.body["metadata"]["next"], true);

    let last = app.get("/api/backfills?_offset=40");
    assert_eq!(ids(&last), vec![5, 4, 3, 2, 1]);
    assert_eq!(last.body["metadata"], json!({"count": 45, "next": false}));

    let exact = app.get("/api/backfills?_limit=5&_offset=40");
    assert_eq!(exact.body["metadata"]["next"], false);
    let short = app.get("/api/backfills?_limit=5&_offset=39");
    assert_eq!(ids(&short), vec![6, 5, 4, 3, 2]);
    assert_eq!(short.body["metadata"]["next"], true);

    let empty = app.get("/api/backfills?_limit=0");
    assert_eq!(ids(&empty), Vec::<i64>::new());
    assert_eq!(empty.body["metadata"], json!({"count": 45, "next": true}), "no rows, so no cursor");

    let beyond = app.get("/api/backfills?_offset=1000");
    assert_eq!(ids(&beyond), Vec::<i64>::new());
    assert_eq!(beyond.body["metadata"], json!({"count": 45, "next": false}));

    let huge = app.get("/api/backfills?_offset=9223372036854775807&_limit=1000");
    assert_eq!(huge.status, 200);
    assert_eq!(ids(&app.get("/api/backfills?_limit=1000")).len(), 45);
}

#[test]
fn the_pipeline_filter_and_the_nested_route_list_one_pipeline() {
    let app = spawn_app();
    app.import(&json!({"backfills": [
        backfill(1, "alpha", "2023-01-01"),
        backfill(2, "beta", "2023-01-02"),
        backfill(3, "alpha", "2023-01-03"),
    ]}));
    let filtered = app.get("/api/backfills?pipeline_uuid=alpha");
    assert_eq!(ids(&filtered), vec![3, 1]);
    assert_eq!(filtered.body["metadata"], json!({"count": 2, "next": false}));
    assert_eq!(ids(&app.get("/api/pipelines/beta/backfills")), vec![2]);
    let nested = app.get("/api/pipelines/alpha/backfills?_limit=1");
    assert_eq!(ids(&nested), vec![3]);
    assert_eq!((&nested.body["metadata"]["count"], &nested.body["metadata"]["next"]), (&json!(2), &json!(true)));
    let none = app.get("/api/pipelines/gamma/backfills");
    assert_eq!(none.body, json!({"backfills": [], "metadata": {"count": 0, "next": false}}));
    assert_eq!(ids(&app.get("/api/backfills?pipeline_uuid=")).len(), 3, "an empty filter filters nothing");
}

#[test]
fn run_counts_appear_only_when_asked_and_count_the_newest_run_per_date() {
    let app = spawn_app();
    let run = |id: i64, date: &str, status: &str| json!({"id": id, "backfill_id": 1, "execution_date": date, "status": status});
    app.import(&json!({
        "backfills": [
            backfill(1, "p", "2023-01-03"),
            {"id": 2, "name": "custom code", "pipeline_uuid": "p", "block_uuid": "my_block",
             "start_datetime": "2023-01-01", "end_datetime": "2023-01-02", "interval_type": "day",
             "interval_units": 1, "created_at": "2023-01-02"},
            {"id": 3, "name": "no dates yet", "pipeline_uuid": "p", "interval_type": "day", "created_at": "2023-01-01"},
        ],
        "pipeline_runs": [
            run(10, "2023-03-01T00:00:00Z", "failed"),
            run(11, "2023-03-01T04:00:00Z", "completed"),
            run(12, "2023-03-01T00:00:00Z", "running"),
            run(13, "2023-03-01T08:00:00Z", "failed"),
        ],
    }));

    let plain = app.get("/api/backfills");
    for row in plain.body["backfills"].as_array().unwrap() {
        assert!(row.get("total_run_count").is_none() && row.get("run_status_counts").is_none(), "{row}");
    }

    let counted = app.get("/api/backfills?include_run_count=true");
    let rows = counted.body["backfills"].as_array().unwrap();
    assert_eq!(rows[0]["total_run_count"], 25);
    assert_eq!(rows[0]["run_status_counts"], json!({"running": 1, "completed": 1, "failed": 1}));
    assert_eq!(rows[1]["total_run_count"], 0, "a block_uuid backfill has no run dates");
    assert_eq!(rows[1]["run_status_counts"], json!({}));
    assert!(rows[2].get("total_run_count").is_none(), "incomplete dates give no counts");

    let off = app.get("/api/backfills?include_run_count=0");
    assert!(off.body["backfills"][0].get("total_run_count").is_none());
}

#[test]
fn huge_spans_are_counted_without_enumerating() {
    let app = spawn_app();
    app.import(&json!({"backfills": [
        {"id": 1, "name": "every second for a century", "pipeline_uuid": "p",
         "start_datetime": "1925-01-01", "end_datetime": "2024-12-31T23:59:59Z",
         "interval_type": "second", "interval_units": 1},
        {"id": 2, "name": "whole calendar, monthly", "pipeline_uuid": "p",
         "start_datetime": "0001-01-31", "end_datetime": "9999-12-31T23:59:59.999999Z",
         "interval_type": "month", "interval_units": 1},
        {"id": 3, "name": "largest units", "pipeline_uuid": "p",
         "start_datetime": "0001-01-01", "end_datetime": "9999-12-31",
         "interval_type": "week", "interval_units": 9223372036854775807i64},
    ]}));
    let rows = app.get("/api/backfills?include_run_count=yes").body["backfills"].clone();
    let count = |id: i64| rows.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()["total_run_count"].clone();
    assert_eq!(count(1), 3_155_760_000u64);
    assert_eq!(count(2), 9999 * 12);
    assert_eq!(count(3), 1);
}

#[test]
fn stored_offsets_are_shown_in_utc_with_microseconds_only_when_present() {
    let app = spawn_app();
    app.import(&json!({"backfills": [
        {"id": 1, "name": "x", "pipeline_uuid": "p", "start_datetime": "2023-03-01T05:30:00+05:30",
         "end_datetime": "2023-03-02T00:00:00.5-01:00", "created_at": "2023-03-23T18:27:58.000001Z"},
    ]}));
    let row = &app.get("/api/backfills").body["backfills"][0];
    assert_eq!(row["start_datetime"], "2023-03-01 00:00:00+00:00");
    assert_eq!(row["end_datetime"], "2023-03-02 01:00:00.500000+00:00");
    assert_eq!(row["created_at"], "2023-03-23 18:27:58.000001+00:00");
}

#[test]
fn a_trailing_slash_reaches_the_same_listing() {
    let app = spawn_app();
    app.import(&json!({"backfills": [backfill(1, "p", "2023-01-01")]}));
    assert_eq!(ids(&app.get("/api/backfills/")), vec![1]);
}

#[test]
fn a_keyset_cursor_walks_the_same_pages_as_offsets() {
    let app = spawn_app();
    // Ties in created_at on purpose: the cursor must order them by id too.
    let records: Vec<Value> = (1..=23)
        .map(|i| backfill(i, if i % 3 == 0 { "q" } else { "p" }, &format!("2023-01-01 00:00:{:02}", i / 2)))
        .collect();
    app.import(&json!({ "backfills": records }));
    for filter in ["", "&pipeline_uuid=p"] {
        let by_offset: Vec<i64> = ids(&app.get(&format!("/api/backfills?_limit=1000{filter}")));
        let mut walked = vec![];
        let mut page = app.get(&format!("/api/backfills?_limit=5{filter}"));
        loop {
            walked.extend(ids(&page));
            let meta = &page.body["metadata"];
            assert_eq!(meta["count"], by_offset.len());
            if meta["next"] == false {
                assert!(meta.get("cursor").is_none(), "{meta}");
                break;
            }
            let cursor = meta["cursor"].as_str().expect("a cursor while next is true");
            page = app.get(&format!("/api/backfills?_limit=5&_cursor={cursor}{filter}"));
        }
        assert_eq!(walked, by_offset, "filter {filter:?}");
    }
    let cursor = app.get("/api/backfills?_limit=5").body["metadata"]["cursor"].as_str().unwrap().to_string();
    assert_eq!(ids(&app.get(&format!("/api/pipelines/p/backfills?_limit=2&_cursor={cursor}"))).len(), 2);
    assert_error(&app.get(&format!("/api/backfills?_cursor={cursor}&_offset=5")), 400, "api_resource_error");
    let forged = assert_error(&app.get("/api/backfills?_cursor=yesterday"), 400, "api_resource_error");
    assert!(forged.contains("_cursor"), "{forged}");
}

#[test]
fn reads_answer_304_to_the_version_they_gave_until_something_is_written() {
    let app = crate::helpers::spawn_app();
    let agent = crate::helpers::agent();
    let first = agent.get(app.url("/api/backfills?include_run_count=true")).call().unwrap();
    let tag = first.headers().get("etag").unwrap().to_str().unwrap().to_string();
    assert!(tag.starts_with("W/\""), "{tag}");
    assert_eq!(first.headers().get("cache-control").unwrap(), "no-cache");
    let again = |tag: &str| {
        agent.get(app.url("/api/backfills?include_run_count=true")).header("If-None-Match", tag).call().unwrap()
    };
    let mut unchanged = again(&tag);
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.body_mut().read_to_string().unwrap(), "");
    // A write through the server: a new version, and the new data.
    app.create_backfill("etl", crate::helpers::seed_fields("new"));
    let changed = again(&tag);
    assert_eq!(changed.status(), 200);
    let tag2 = changed.headers().get("etag").unwrap().to_str().unwrap().to_string();
    assert_ne!(tag2, tag);
    assert_eq!(again(&tag2).status(), 304);
    // A write by another process on the same file (an import beside the server).
    app.import(
        &serde_json::json!({"backfills": [crate::helpers::backfill(50, "etl", "2023-03-23 18:27:58.848959+00:00")]}),
    );
    let after_import = again(&tag2);
    assert_eq!(after_import.status(), 200);
    let mut body = after_import;
    let listed: serde_json::Value = serde_json::from_str(&body.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(listed["metadata"]["count"], 2);
}

#[test]
fn a_conditional_read_still_needs_credentials() {
    let app = crate::helpers::spawn_app_with(crate::helpers::AuthConfig::new(true, &["k3y".to_string()]));
    let agent = crate::helpers::agent();
    let token = app.add_token("t", None);
    let ok =
        agent.get(app.url("/api/backfills")).header("X-API-KEY", "k3y").header("OAUTH-TOKEN", &token).call().unwrap();
    let tag = ok.headers().get("etag").unwrap().to_str().unwrap().to_string();
    let refused = agent.get(app.url("/api/backfills")).header("If-None-Match", &tag).call().unwrap();
    assert_eq!(refused.status(), 401);
}

/// The preview answers what a create and a start make (the run count, the dates as
/// `include_preview_runs` gives them, the last ones after those), and writes nothing.
#[test]
fn a_preview_answers_what_a_create_and_a_start_make_and_writes_nothing() {
    // Arrange
    let app = crate::helpers::spawn_app_limited(
        crate::helpers::AuthConfig::default(),
        backfilld::service::lifecycle::Limits { max_runs: 30 },
    );
    let body = json!({"backfill": crate::helpers::seed_fields("seed")});

    // Act
    let preview = app.send("POST", "/api/pipelines/p/backfills/preview?_limit=10", &body);

    // Assert: nothing written; then the same as the created and started backfill.
    assert_eq!(preview.status, 200, "{:?}", preview.body);
    assert_eq!(preview.body["metadata"], Value::Null);
    assert_eq!(app.get("/api/backfills?_limit=0").body["metadata"]["count"], 0);
    assert_eq!(app.get("/api/pipeline_runs?_limit=0").body["metadata"]["count"], 0);
    let p = &preview.body["backfill_preview"];
    let id = app.create_backfill("p", crate::helpers::seed_fields("seed"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let read =
        |q: &str| app.get(&format!("/api/backfills/{id}?include_preview_runs=true&{q}")).body["backfill"].clone();
    assert_eq!(p["total_run_count"], 25);
    assert_eq!(app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=0")).body["metadata"]["count"], 25);
    assert_eq!(p["pipeline_run_dates"], read("_limit=10")["pipeline_run_dates"]);
    assert_eq!(p["last_pipeline_run_dates"], read("_limit=10&_offset=15")["pipeline_run_dates"]);
    // Dates overlapping the first page are not repeated; _offset moves the first page.
    let small = app.send("POST", "/api/pipelines/p/backfills/preview?_limit=20", &body).body;
    assert_eq!(small["backfill_preview"]["last_pipeline_run_dates"].as_array().unwrap().len(), 5);
    let moved = app.send("POST", "/api/pipelines/p/backfills/preview?_limit=3&_offset=4", &body).body;
    assert_eq!(moved["backfill_preview"]["pipeline_run_dates"], read("_limit=3&_offset=4")["pipeline_run_dates"]);
}

/// Each body a create or a start refuses, the preview refuses with the same status and type.
#[test]
fn a_preview_refuses_what_a_create_or_a_start_refuses() {
    let app = crate::helpers::spawn_app_limited(
        crate::helpers::AuthConfig::default(),
        backfilld::service::lifecycle::Limits { max_runs: 24 },
    );
    let seed = crate::helpers::seed_fields("seed");
    let with = |k: &str, v: Value| {
        let mut f = seed.clone();
        f[k] = v;
        f
    };
    let without = |k: &str| {
        let mut f = seed.clone();
        f.as_object_mut().unwrap().remove(k);
        f
    };
    let cases = [
        (with("block_uuid", json!("b")), "block_uuid", "custom code"),
        (without("end_datetime"), "end_datetime", "no end"),
        (without("interval_units"), "interval_units", "no units"),
        (with("interval_units", json!(0)), "interval_units", "zero units"),
        (with("name", json!(" ")), "name", "a blank name"),
        (with("settings", json!({"pipeline_run_limit": 0})), "settings.pipeline_run_limit", "a bad setting"),
        (seed.clone(), "total_run_count", "25 runs over --max-runs 24"),
    ];
    for (fields, field, why) in cases {
        let preview = app.send("POST", "/api/pipelines/p/backfills/preview", &json!({ "backfill": fields }));
        let message = assert_error(&preview, 400, "record_invalid");
        assert!(message.contains(field), "{why}: {message}");
        // The create, or else the start, refuses it the same way.
        let created = app.send("POST", "/api/pipelines/p/backfills", &json!({ "backfill": fields }));
        let refusal = if created.status == 200 {
            app.put_backfill(created.body["backfill"]["id"].as_i64().unwrap(), json!({"status": "initial"}))
        } else {
            created
        };
        assert_eq!(assert_error(&refusal, 400, "record_invalid"), message, "{why}");
    }
    assert_error(
        &app.send("POST", "/api/pipelines/p/backfills/preview", &json!({"name": "x"})),
        400,
        "api_resource_error",
    );
    assert_error(
        &app.send("POST", "/api/pipelines/p/backfills/preview?_limit=x", &json!({"backfill": seed})),
        400,
        "api_resource_error",
    );
    assert_eq!(app.get("/api/pipeline_runs?_limit=0").body["metadata"]["count"], 0);
}
