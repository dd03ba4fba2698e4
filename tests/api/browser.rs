//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against the real server.
//!
//! The WebDriver client (tests/api/webdriver.rs) is the few W3C WebDriver calls these tests
//! make, over ureq (the tests' HTTP client already): a session, navigation, finding
//! elements, their text, typing, clicking and a screenshot, all synchronous like the rest
//! of the suite.

use crate::helpers::AuthConfig;
use serde_json::json;

use crate::wait::eventually;
use crate::webdriver::{browser_missing, Browser};

use crate::helpers::{seed_fields, spawn_app, spawn_app_with, TestApp};

/// The turn of a test that drives the browser (one CPU-heavy test at a time), or none when
/// there is no browser here: the test is then reported skipped (and fails in CI).
fn browser_turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    match browser_missing() {
        Some(why) => {
            crate::skip::skip(&why);
            None
        }
        None => Some(crate::helpers::busy_turn()),
    }
}

fn started_seed(app: &TestApp, pipeline: &str, name: &str) -> i64 {
    let id = app.create_backfill(pipeline, seed_fields(name));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    id
}

#[test]
fn the_listing_shows_the_seed_backfill_with_its_25_runs_and_updates_by_itself() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = started_seed(&app, "example_pipeline", "sparkling glitter");
    // A `custom` interval is interval_units seconds, and is shown as custom.
    let mut fields = seed_fields("every half minute");
    fields["interval_type"] = json!("custom");
    fields["interval_units"] = json!(30);
    let custom = app.create_backfill("other_pipeline", fields);
    let browser = Browser::start();
    browser.goto(&format!("{}/#/", app.base));
    let row = browser.wait_text("#backfills tbody tr", "sparkling glitter");
    assert_eq!(browser.text(&browser.find_all(&format!("#backfills tr[data-id='{id}'] .total"))[0]), "25");
    let interval = |id: i64| browser.text(&browser.find_all(&format!("#backfills tr[data-id='{id}'] .interval"))[0]);
    assert_eq!(interval(id), "every 4 hours");
    assert_eq!(interval(custom), "custom, every 30 seconds");
    assert!(browser.text(&row).contains("example_pipeline"));
    assert!(browser.text(&row).contains("25 initial"), "{}", browser.text(&row));
    browser.screenshot("backfills");
    // Runs reported through the API show in the bar without a reload.
    for run in app.run_ids(id).into_iter().take(5) {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    browser.wait_text("#backfills tbody tr", "5 completed");
    let bar = browser.find_all(&format!("#backfills tr[data-id='{id}'] .bar"))[0].clone();
    assert_eq!(browser.attribute(&bar, "aria-label"), "5 completed, 20 initial of 25");
    // Drawn to scale: the completed part a fifth of the bar.
    let widths = browser.call(
        "POST",
        "/execute/sync",
        Some(json!({"args": [], "script":
        format!("const b = document.querySelector(\"#backfills tr[data-id='{id}'] .bar\"); \
                 return [b.querySelector('.completed').offsetWidth, b.clientWidth];")})),
    );
    let (part, whole) = (widths[0].as_f64().unwrap(), widths[1].as_f64().unwrap());
    assert!((part / whole - 0.2).abs() < 0.03, "{part} of {whole}");
    // A deep link to the backfill, and to one that does not exist.
    browser.goto(&format!("{}/#/backfills/{id}", app.base));
    browser.wait_text("main h1", "sparkling glitter");
    browser.goto(&format!("{}/#/backfills/999", app.base));
    browser.wait_text("main .problem", "does not exist");
    // The server stops: the page says its data is old instead of going blank.
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#live", "Updated");
    drop(app);
    browser.wait_text("#live", "No answer from the server");
    browser.wait_text("#backfills tbody tr", "sparkling glitter");
}

#[test]
fn an_empty_database_says_what_to_do_and_the_filter_narrows_by_pipeline() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let browser = Browser::start();
    browser.goto(&format!("{}/", app.base));
    browser.wait_text("main .empty", "backfilld demo");
    started_seed(&app, "etl", "first");
    started_seed(&app, "other", "second");
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills caption", "2 backfills");
    browser.type_into("#pipeline", "etl");
    browser.click("form[role=search] button");
    browser.wait_text("#backfills caption", "1 backfill in etl");
    assert_eq!(browser.find_all("#backfills tbody tr").len(), 1);
}

#[test]
fn with_auth_on_the_page_asks_for_credentials_and_then_works() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app_with(AuthConfig::new(true, &["k3y".to_string()]));
    let token = app.add_token("browser", None);
    let browser = Browser::start();
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("main .problem", "requires an API key");
    // A token instead of a login: the API key and the token are the other credentials.
    browser.click("details.other-credentials summary");
    browser.type_into("#api-key", "wrong");
    browser.type_into("#token", &token);
    browser.click("form.credentials button");
    browser.wait_text("main .problem", "refused these credentials");
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("main .problem", "refused these credentials");
    browser.click("#signout");
    browser.wait_text("main .problem", "requires an API key");
    browser.click("details.other-credentials summary");
    browser.type_into("#api-key", "k3y");
    browser.type_into("#token", &token);
    browser.click("form.credentials button");
    browser.wait_text("main .empty", "No backfills yet");
    // Never in a URL.
    let url = browser.call("GET", "/url", None);
    assert!(!url.as_str().unwrap().contains(&token) && !url.as_str().unwrap().contains("k3y"), "{url}");
}

#[test]
fn a_backfill_is_created_through_the_form_started_and_cancelled_with_the_api_s_answers() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/new", app.base));
    browser.wait_text("form.create h1", "New backfill");
    browser.type_into("#f-name", "from the form");
    browser.type_into("#f-pipeline_uuid", "etl");
    browser.type_into("#f-start_datetime", "2023-03-01");
    browser.type_into("#f-end_datetime", "2023-03-05 00:00");
    browser.clear("#f-interval_units");
    browser.type_into("#f-interval_units", "0");
    browser.click("#create");
    // The API's message, next to its field; nothing created.
    browser.wait_text("#e-interval_units", "must be at least 1");
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
    browser.clear("#f-interval_units");
    browser.type_into("#f-interval_units", "4");
    browser.type_into("#f-interval_type", "hour");
    browser.click("#create");
    browser.wait_text("main h1", "from the form");
    let b = &app.get("/api/backfills?include_run_count=true").body["backfills"][0];
    assert_eq!((b["name"].as_str(), b["total_run_count"].as_u64()), (Some("from the form"), Some(25)), "{b}");
    // Listed, and editable before it starts: the API's answer either way.
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills tbody tr", "from the form");
    browser.goto(&format!("{}/#/backfills/{}/edit", app.base, b["id"]));
    browser.wait_text("form.create h1", "Edit from the form");
    browser.clear("#f-name");
    browser.type_into("#f-name", " ");
    browser.click("#create");
    browser.wait_text("#message, #e-name", "blank");
    browser.clear("#f-name");
    browser.type_into("#f-name", "renamed");
    browser.click("#create");
    browser.wait_text("main h1", "renamed");
    // The preview of its dates, then Start: its dates, in the date map.
    browser.wait_text("ol.preview", "2023-03-01 00:00+00:00");
    browser.click_text(".actions button", "Start");
    browser.wait_text("main h1", "initial");
    assert_eq!(app.read_backfill(b["id"].as_i64().unwrap())["name"], "renamed");
    eventually("the date map to show 25 dates", || browser.find_all(".datemap .cell").len() == 25);
    let id = b["id"].as_i64().unwrap();
    for run in app.run_ids(id).into_iter().take(3) {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    // Live: the date map changes without a reload.
    eventually("the date map to show the 3 completed dates", || {
        browser.find_all(".datemap .cell.completed").len() == 3
    });
    // Cancel, confirmed in the browser's dialog.
    browser.click_text(".actions button", "Cancel");
    browser.call("POST", "/alert/accept", None);
    browser.wait_text("main h1", "cancelled");
    assert_eq!(app.read_backfill(id)["status"], "cancelled");
}

/// The edit form shows a backfill's variables and settings, and sends what was changed:
/// settings it does not know are kept as they were.
#[test]
fn the_edit_form_changes_variables_and_settings_and_keeps_the_settings_it_does_not_show() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let mut fields = seed_fields("to edit");
    fields["variables"] = json!({"region": "eu"});
    fields["settings"] = json!({"max_attempts": 2, "note": "kept"});
    let id = app.create_backfill("etl", fields);
    let browser = Browser::start();
    browser.goto(&format!("{}/#/backfills/{id}/edit", app.base));
    browser.wait_text("form.create h1", "Edit to edit");
    let shown = script(&browser, "return JSON.parse(document.querySelector('#f-variables').value);");
    assert_eq!(shown, json!({"region": "eu"}));
    assert_eq!(script(&browser, "return document.querySelector('#f-max_attempts').value;"), "2");
    browser.clear("#f-variables");
    browser.type_into("#f-variables", "[1]");
    browser.wait_text("#e-variables", "are a JSON object");
    browser.clear("#f-variables");
    browser.type_into("#f-variables", r#"{"region": "us", "batch": 3}"#);
    browser.clear("#f-max_attempts");
    browser.type_into("#f-max_attempts", "4");
    browser.click("#f-run_backwards");
    browser.click("#create");
    browser.wait_text("main h1", "to edit");
    let b = app.read_backfill(id);
    assert_eq!(b["variables"], json!({"region": "us", "batch": 3}), "{b}");
    assert_eq!(b["settings"]["max_attempts"], 4, "{b}");
    assert_eq!(b["settings"]["run_backwards"], true, "{b}");
    assert_eq!(b["settings"]["note"], "kept", "{b}");
}

#[test]
fn a_failed_backfill_says_whether_its_other_dates_go_on_and_the_form_sets_stop_on_failure() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let browser = Browser::start();
    // Made through the form with the box ticked: it stops at its first failed date.
    browser.goto(&format!("{}/#/new", app.base));
    browser.wait_text("form.create h1", "New backfill");
    browser.type_into("#f-name", "stops");
    browser.type_into("#f-pipeline_uuid", "etl");
    browser.type_into("#f-start_datetime", "2023-03-01");
    browser.type_into("#f-end_datetime", "2023-03-05");
    browser.type_into("#f-interval_type", "day");
    browser.click("#f-stop_on_failure");
    browser.click("#create");
    browser.wait_text("main h1", "stops");
    let stops = app.get("/api/backfills").body["backfills"][0].clone();
    assert_eq!(stops["settings"], json!({"stop_on_failure": true}));
    let stops = stops["id"].as_i64().unwrap();
    let goes_on = app.create_backfill("etl", seed_fields("goes on"));
    for id in [stops, goes_on] {
        assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
        assert_eq!(app.report_run(app.run_ids(id)[0], "failed").status, 200);
    }
    browser.goto(&format!("{}/#/backfills/{stops}", app.base));
    browser.wait_text("main h1", "stopped");
    browser.wait_text("#failure-note", "1 date failed. The backfill stopped there: 4 dates wait");
    browser.goto(&format!("{}/#/backfills/{goes_on}", app.base));
    browser.wait_text("#failure-note", "The other dates go on: 0 running, 24 waiting.");
    // Run again defaults to the failed dates, and can pause a failed backfill whose dates run on.
    let how = browser.find_all("#reprocess")[0].clone();
    assert_eq!(browser.call("GET", &format!("/element/{how}/property/value"), None), json!("failed"));
    browser.click_text(".actions button", "Pause");
    eventually("the pause", || app.read_backfill(goes_on)["is_paused"] == true);
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text(&format!("#backfills tr[data-id='{stops}']"), "stopped");
}

#[test]
fn on_a_phone_each_backfill_is_a_card_and_the_keyboard_reaches_a_backfill() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = started_seed(&app, "etl", "on the small screen");
    let browser = Browser::start();
    browser.call("POST", "/window/rect", Some(json!({"width": 390, "height": 844})));
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills tbody tr", "on the small screen");
    // Nothing scrolls sideways: each row is a card with its status, name, bar and counts.
    let widths = browser.call("POST", "/execute/sync", Some(json!({"args": [], "script":
        "const wrap = document.querySelector('.table-wrap'); \
         return [document.documentElement.scrollWidth, document.documentElement.clientWidth, wrap.scrollWidth, wrap.clientWidth, \
                 getComputedStyle(document.querySelector('#backfills tbody tr')).display];"})));
    let w: Vec<i64> = widths.as_array().unwrap()[..4].iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(w[0] <= w[1], "the page is wider than the screen: {w:?}");
    assert!(w[2] <= w[3], "the list scrolls sideways in its box: {w:?}");
    assert_eq!(widths[4], "block", "a row is not a card");
    let card = browser.text(&browser.find_all(&format!("#backfills tr[data-id='{id}']"))[0]);
    for part in ["initial", "on the small screen", "25 initial", "25 runs"] {
        assert!(card.contains(part), "the card lacks {part:?}: {card}");
    }
    // Keyboard only: Tab to the backfill's link, Enter opens it.
    let link = browser.find_all(&format!("#backfills tr[data-id='{id}'] td.name a"))[0].clone();
    let mut tabs = 0;
    loop {
        browser.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "k", "actions": [
            {"type": "keyDown", "value": "\u{E004}"}, {"type": "keyUp", "value": "\u{E004}"}]}]})),
        );
        let active = browser.call("GET", "/element/active", None);
        if active[crate::webdriver::ELEMENT].as_str() == Some(link.as_str()) {
            break;
        }
        tabs += 1;
        assert!(tabs < 30, "Tab never reached the backfill's link");
    }
    browser.call(
        "POST",
        "/actions",
        Some(json!({"actions": [{"type": "key", "id": "k", "actions": [
        {"type": "keyDown", "value": "\u{E007}"}, {"type": "keyUp", "value": "\u{E007}"}]}]})),
    );
    browser.wait_text("main h1", "on the small screen");
}

/// Serves `html` to every request on a port of its own, as another site would: the page's
/// origin is `http://localhost:PORT`, not the app's `http://127.0.0.1:PORT`. Returns the port.
fn serve_page(html: String) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                html.len()
            );
            let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(html.as_bytes()));
        }
    });
    port
}

#[test]
fn a_page_on_another_site_can_neither_post_a_form_nor_fetch_a_change() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let create = format!("{}/api/pipelines/evil/backfills", app.base);
    let fields = r#""name":"by the other site","start_datetime":"2023-03-01","end_datetime":"2023-03-02","interval_type":"day","interval_units":1"#;
    // A text/plain form whose one field makes the body JSON: `{"backfill":{...},"x":"="}`.
    let html = format!(
        r#"<!doctype html><title>elsewhere</title>
<form method="POST" action="{create}" enctype="text/plain">
<input type="hidden" name='{{"backfill":{{{fields}}},"x":"' value='"}}'><button>go</button></form>
<script>
fetch("{create}", {{method: "POST", mode: "no-cors", body: '{{"backfill":{{{fields}}}}}'}})
  .then(() => {{ document.title = "fetched"; }}, e => {{ document.title = "fetch failed: " + e; }});
</script>"#
    );
    let page = serve_page(html);
    let browser = Browser::start();
    browser.goto(&format!("http://localhost:{page}/"));
    eventually("the page's fetch to be answered", || browser.call("GET", "/title", None) != "elsewhere");
    assert_eq!(browser.call("GET", "/title", None), "fetched");
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0, "the other site's fetch created a backfill");
    // The form: the browser goes to the API's answer, the refusal.
    browser.click("form button");
    browser.wait_text("body", "cross_origin_request");
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0, "the other site created a backfill");
}

/// Runs `script` (a function body) in the page and answers its value.
fn script(browser: &Browser, script: &str) -> serde_json::Value {
    browser.call("POST", "/execute/sync", Some(json!({"args": [], "script": script})))
}

/// Sets `run`'s status by hand through the API, with `metrics`.
fn set_run(app: &TestApp, run: i64, status: &str, metrics: serde_json::Value) {
    let r = app.send(
        "PUT",
        &format!("/api/pipeline_runs/{run}"),
        &json!({"pipeline_run": {"status": status, "metrics": metrics}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Copies a screenshot the tests took (target/screenshots/NAME.png) to examples/TO, where
/// the README and docs/dashboard.md show it, when BACKFILLD_SCREENSHOTS is set.
fn keep_screenshot(name: &str, to: &str) {
    if std::env::var_os("BACKFILLD_SCREENSHOTS").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join(format!("target/screenshots/{name}.png")), root.join("examples").join(to)).unwrap();
}

#[test]
fn the_date_map_covers_all_10080_dates_and_shows_one_failed_date_among_10000_completed() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    // A week of minutes: 10,080 dates.
    let id = app.create_backfill(
        "etl",
        json!({"name": "a week of minutes", "start_datetime": "2023-03-01T00:00:00Z",
               "end_datetime": "2023-03-07T23:59:00Z", "interval_type": "minute", "interval_units": 1}),
    );
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    assert_eq!(app.read_backfill(id)["total_run_count"], 10_080);
    // The start made one run per date, in date order, with consecutive ids.
    let newest = &app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1")).body["pipeline_runs"][0];
    assert_eq!(newest["execution_date"], "2023-03-07 23:59:00+00:00", "{newest}");
    let last = newest["id"].as_i64().unwrap();
    let ids: Vec<i64> = (last - 10_079..=last).collect();
    // 10,000 completed dates with one failed among them (date 5,000), 30 running, the
    // rest (49) waiting: set through the API from four clients at once.
    let failed = ids[5_000];
    std::thread::scope(|s| {
        for part in ids[..10_001].chunks(2_501) {
            let app = &app;
            s.spawn(move || {
                for &run in part {
                    if run == failed {
                        set_run(app, run, "failed", json!({"error": "exit status 1", "exit_code": 1}));
                    } else {
                        assert_eq!(app.report_run(run, "completed").status, 200);
                    }
                }
            });
        }
    });
    for &run in &ids[10_001..10_031] {
        assert_eq!(app.report_run(run, "running").status, 200);
    }
    let counts = app.read_backfill(id)["run_status_counts"].clone();
    assert_eq!(counts, json!({"completed": 10_000, "failed": 1, "running": 30, "initial": 49}));
    let browser = Browser::start();
    browser.goto(&format!("{}/#/backfills/{id}", app.base));
    browser.wait_text("#date-map", "10080 dates");
    // Every date is in one cell: the cells' counts add up to 10,080, and so do their titles.
    let cells = script(
        &browser,
        "return [...document.querySelectorAll('.datemap .cell')].map(c => [Number(c.dataset.dates), c.title, c.className, \
         c.getBoundingClientRect().width, c.getBoundingClientRect().height]);",
    );
    let cells = cells.as_array().unwrap();
    assert!(cells.len() <= 500 && cells.len() >= 400, "{} cells", cells.len());
    let sum: i64 = cells.iter().map(|c| c[0].as_i64().unwrap()).sum();
    assert_eq!(sum, 10_080);
    let titled: i64 = cells
        .iter()
        .map(|c| {
            let title = c[1].as_str().unwrap();
            title.split('(').nth(1).and_then(|t| t.split(' ').next()).map_or(1, |n| n.parse::<i64>().unwrap())
        })
        .sum();
    assert_eq!(titled, 10_080);
    // The failed date shows: its cell, and only its cell, is marked failed, and is drawn.
    let marked: Vec<&serde_json::Value> = cells.iter().filter(|c| c[2].as_str().unwrap().contains("failed")).collect();
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert!(marked[0][1].as_str().unwrap().contains("1 failed"), "{:?}", marked[0]);
    assert!(marked[0][3].as_f64().unwrap() >= 8.0 && marked[0][4].as_f64().unwrap() >= 8.0, "{:?}", marked[0]);
    // Running and waiting dates show as such.
    assert!(cells.iter().any(|c| c[2].as_str().unwrap().contains("running")));
    assert!(cells.iter().any(|c| c[2].as_str().unwrap().contains("initial")));
    // Failed dates first, with their error.
    browser.wait_text("#failures", "1 failed date");
    browser.wait_text("#failures", "exit status 1");
    browser.screenshot("date-map");
    keep_screenshot("date-map", "dashboard.png");
    // A click on the failed cell lists its range's runs: the failed one among them.
    browser.click(".datemap .cell.failed");
    browser.wait_text(&format!("#range tr[data-id='{failed}']"), "failed");
    // From the keyboard: the map is one stop, the arrow keys move, focus says the range.
    let key = |k: &str| {
        browser.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "k", "actions": [{"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]})),
        );
    };
    script(&browser, "document.querySelector('.datemap .cell').focus();");
    key("\u{E014}"); // ArrowRight
    let focused = script(
        &browser,
        "return [document.activeElement.dataset.first, document.querySelector('#map-says').textContent];",
    );
    let second = script(&browser, "return document.querySelectorAll('.datemap .cell')[1].dataset.first;");
    assert_eq!(focused[0], second);
    assert!(
        focused[1].as_str().unwrap().contains(" dates): ") && focused[1].as_str().unwrap().contains("completed"),
        "{focused}"
    );
    let stops = script(
        &browser,
        "return [...document.querySelectorAll('.datemap .cell')].filter(c => c.tabIndex === 0).length;",
    );
    assert_eq!(stops, json!(1), "the map is one stop in the Tab order");
    key("\u{E007}"); // Enter
    browser.wait_text(
        "#range h2",
        &format!("Dates {}", second.as_str().unwrap().replace("T", " ").trim_end_matches(":00+00:00")),
    );
}

#[test]
fn failed_dates_come_first_with_their_errors_and_retry_failed_dates_queues_them() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = started_seed(&app, "etl", "with failures");
    let runs = app.run_ids(id);
    set_run(
        &app,
        runs[3],
        "failed",
        json!({"error": "the command exited with status 3", "exit_code": 3,
        "output_tail": "loading 2023-03-01 12:00\nERROR: table missing\n"}),
    );
    set_run(
        &app,
        runs[7],
        "failed",
        json!({"error": "lease expired", "lease_expired": {"worker": "w9", "expired_at": "2023-03-01 00:00:00+00:00"}}),
    );
    for &run in &runs[..3] {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    let browser = Browser::start();
    browser.goto(&format!("{}/#/backfills/{id}", app.base));
    browser.wait_text("#failures h2", "2 failed dates");
    // Before the backfill's fields.
    let before = script(
        &browser,
        "return !!(document.querySelector('#failures').compareDocumentPosition(document.querySelector('dl.fields')) & Node.DOCUMENT_POSITION_FOLLOWING);",
    );
    assert_eq!(before, json!(true));
    let first = browser.wait_text(&format!("#failures li[data-id='{}']", runs[3]), "exit status 3");
    let text = browser.text(&first);
    assert!(
        text.contains("2023-03-01 12:00") && text.contains("attempt 1") && text.contains("ERROR: table missing"),
        "{text}"
    );
    browser.wait_text(&format!("#failures li[data-id='{}']", runs[7]), "lease expired (worker w9)");
    // Retry only where it means something: failed runs, not completed ones.
    let retries = |status: &str| {
        script(
            &browser,
            &format!(
                "return [...document.querySelectorAll('#runs tbody tr')].filter(tr => tr.querySelector('.status.{status}')) \
                 .map(tr => [...tr.querySelectorAll('button')].some(b => b.textContent === 'Retry'));"
            ),
        )
    };
    assert_eq!(retries("completed"), json!([false, false, false]));
    assert_eq!(retries("failed"), json!([true, true]));
    browser.click_text("#failures button", "Retry failed dates");
    // The API shows a new run of each failed date.
    eventually("new runs of the failed dates", || {
        let all = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=100")).body["pipeline_runs"].clone();
        let again: Vec<&serde_json::Value> = all.as_array().unwrap().iter().filter(|r| r["attempt"] == 2).collect();
        (all.as_array().unwrap().len() == 27 && again.len() == 2 && again.iter().all(|r| r["status"] == "initial"))
            .then_some(())
            .ok_or(format!("{} runs", all.as_array().unwrap().len()))
    });
    eventually("the failed dates to leave the top", || browser.find_all("#failures").is_empty());
}

#[test]
fn a_running_run_s_log_grows_on_its_page_while_a_worker_writes_it() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = app.create_backfill(
        "etl",
        json!({"name": "one slow date", "start_datetime": "2023-03-01T00:00:00Z", "end_datetime": "2023-03-01T00:00:00Z",
               "interval_type": "day", "interval_units": 1}),
    );
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let run = app.run_ids(id)[0];
    let browser = Browser::start();
    browser.goto(&format!("{}/#/runs/{run}", app.base));
    // The worker starts once the page shows the waiting run, so that however long the browser
    // took to start, the page sees the log while the run runs.
    browser.wait_text("main h1", "initial");
    let mut worker = crate::helpers::quiet_worker(&app, &["--name", "slow", "--quiet", "--until-idle", "--exec"])
        .arg("for i in 1 2 3 4 5 6 7 8; do echo \"loading part $i of 8 for $BACKFILL_DS\"; sleep 1; done; echo done")
        .spawn()
        .unwrap();
    browser.wait_text("#log", "loading part 1 of 8 for 2023-03-01");
    // It grows while the run runs, without a reload.
    browser.wait_text("#log", "loading part 3 of 8");
    assert_eq!(app.get(&format!("/api/pipeline_runs/{run}")).body["pipeline_run"]["status"], "running");
    browser.wait_text("#log-note", "following it");
    browser.screenshot("run-log");
    keep_screenshot("run-log", "dashboard-log.png");
    browser.wait_text("#log", "done");
    browser.wait_text("#log-note", "the run has finished");
    browser.wait_text("main h1", "completed");
    // Each line once: the follower kept its place.
    let log = browser.text(&browser.find_all("#log")[0]);
    assert_eq!(log.matches("loading part 2 of 8").count(), 1, "{log}");
    assert!(worker.wait().unwrap().success());
}

#[test]
fn a_backfill_a_simulated_worker_drives_shows_durations_its_rate_and_estimate_then_how_long_it_took() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = app.create_backfill(
        "etl",
        json!({"name": "timed", "start_datetime": "2023-03-01T00:00:00Z", "end_datetime": "2023-03-02T23:00:00Z",
               "interval_type": "hour", "interval_units": 1}),
    );
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let browser = Browser::start();
    browser.goto(&format!("{}/#/backfills/{id}", app.base));
    browser.wait_text("main h1", "timed");
    let mut worker =
        crate::helpers::quiet_worker(&app, &["--simulate", "--duration", "300ms..700ms", "--until-idle", "--quiet"])
            .spawn()
            .unwrap();
    // While it runs: its rate and an estimate of when it finishes.
    let progress = browser.wait_text("#progress", "dates per minute recently");
    let text = browser.text(&progress);
    assert!(text.contains("Estimated to finish in about") && text.contains("left"), "{text}");
    // Each finished run's duration, as the simulated worker took it.
    eventually("a finished run's duration", || {
        let d = script(
            &browser,
            "return [...document.querySelectorAll('#runs tbody tr')].filter(tr => tr.querySelector('.status.completed')) \
             .map(tr => tr.querySelector('.duration').textContent);",
        );
        let d = d.as_array().cloned().unwrap_or_default();
        (!d.is_empty() && d.iter().all(|s| s.as_str().unwrap().ends_with(" s"))).then_some(()).ok_or(format!("{d:?}"))
    });
    // The chart: a bar per date that ran.
    eventually("bars in the chart", || browser.find_all("#durations rect").len() >= 3);
    assert!(worker.wait().unwrap().success());
    // Done: how long it took.
    browser.wait_text("main h1", "completed");
    browser.wait_text("#progress", "Took ");
    assert_eq!(browser.find_all("#durations rect").len(), 48);
    let widths =
        script(&browser, "return [...document.querySelectorAll('#durations rect')].map(r => Number(r.dataset.ms));");
    assert!(widths.as_array().unwrap().iter().all(|ms| ms.as_f64().unwrap() >= 250.0), "{widths}");
}

#[test]
fn the_list_filters_by_status_and_name_through_the_api_and_fits_1280_px_without_scrolling() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let done = started_seed(&app, "warehouse_daily_loads", "orders: every store, every hour of March");
    for run in app.run_ids(done) {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    let failing =
        started_seed(&app, "warehouse_daily_loads", "orders: a very long name that goes on to see the row wrap");
    let runs = app.run_ids(failing);
    for &run in &runs[..10] {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    set_run(&app, runs[10], "failed", json!({"error": "exit status 2", "exit_code": 2}));
    assert_eq!(app.report_run(runs[11], "running").status, 200);
    started_seed(&app, "crm_sync", "customers since 2019");
    app.create_backfill("crm_sync", seed_fields("customers, not started"));
    let browser = Browser::start();
    browser.call("POST", "/window/rect", Some(json!({"width": 1280, "height": 800})));
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills caption", "4 backfills");
    browser.wait_text(&format!("#backfills tr[data-id='{done}']"), "completed");
    // Relative times, exact on hover.
    let started = browser.find_all(&format!("#backfills tr[data-id='{done}'] td.times time"))[0].clone();
    assert!(
        browser.text(&started).ends_with("ago") || browser.text(&started) == "just now",
        "{}",
        browser.text(&started)
    );
    assert!(browser.attribute(&started, "title").contains("+00:00"), "{}", browser.attribute(&started, "title"));
    let widths =
        script(&browser, "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];");
    assert!(widths[0].as_i64() <= widths[1].as_i64(), "the page scrolls sideways at 1,280 px: {widths}");
    browser.screenshot("list");
    keep_screenshot("list", "dashboard-list.png");
    // Filters, through the API: by status, and by the start of the name.
    browser.type_into("#name", "orders");
    browser.click("form[role=search] button");
    browser.wait_text("#backfills caption", "2 backfills named \"orders…\"");
    script(&browser, "document.querySelector('#status-filter').value = 'failed';");
    browser.click("form[role=search] button");
    browser.wait_text("#backfills caption", "1 backfill named \"orders…\", failed");
    assert_eq!(browser.find_all("#backfills tbody tr").len(), 1);
    browser.wait_text(&format!("#backfills tr[data-id='{failing}']"), "failed");
    // On a phone: cards.
    browser.call("POST", "/window/rect", Some(json!({"width": 390, "height": 844})));
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills caption", "4 backfills");
    let phone = script(
        &browser,
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, \
         getComputedStyle(document.querySelector('#backfills tbody tr')).display];",
    );
    assert!(phone[0].as_i64() <= phone[1].as_i64(), "{phone}");
    assert_eq!(phone[2], "block");
    browser.screenshot("list-phone");
}

#[test]
fn the_form_previews_the_run_count_it_creates_checks_variables_and_sets_the_settings() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/new", app.base));
    browser.wait_text("form.create h1", "New backfill");
    // The interval defaults to a day.
    assert_eq!(script(&browser, "return document.querySelector('#f-interval_type').value;"), "day");
    browser.type_into("#f-name", "previewed");
    browser.type_into("#f-pipeline_uuid", "etl");
    browser.type_into("#f-start_datetime", "2024-01-01");
    browser.type_into("#f-end_datetime", "2024-03-31");
    browser.wait_text("#form-preview", "91 runs: the first 2024-01-01 00:00+00:00, the last 2024-03-31 00:00+00:00");
    // As the interval changes, so does the count; nothing is stored.
    browser.clear("#f-interval_units");
    browser.type_into("#f-interval_units", "7");
    browser.wait_text("#form-preview", "13 runs");
    let count: u64 = browser.text(&browser.find_all("#preview-count")[0]).parse().unwrap();
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
    // Variables are checked as they are typed.
    browser.type_into("#f-variables", "{\"region\": eu}");
    browser.wait_text("#e-variables", "not JSON");
    browser.clear("#f-variables");
    browser.type_into("#f-variables", "[1]");
    browser.wait_text("#e-variables", "a JSON object");
    browser.clear("#f-variables");
    browser.type_into("#f-variables", "{\"region\": \"eu\"}");
    eventually("the variables to be accepted", || browser.text(&browser.find_all("#e-variables")[0]).is_empty());
    browser.screenshot("form");
    browser.type_into("#f-pipeline_run_limit", "2");
    browser.type_into("#f-max_attempts", "5");
    browser.click("#f-run_backwards");
    browser.click("#create-start");
    browser.wait_text("main h1", "previewed");
    let b = &app.get("/api/backfills?include_run_count=true").body["backfills"][0];
    assert_eq!(b["total_run_count"].as_u64(), Some(count), "{b}");
    assert_eq!(b["variables"], json!({"region": "eu"}));
    assert_eq!(b["settings"], json!({"pipeline_run_limit": 2, "max_attempts": 5, "run_backwards": true}));
    assert!(b["status"].is_string() && b["started_at"].is_string(), "Create and start did not start it: {b}");
}

const KEY: &str = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2";

#[test]
fn a_user_logs_in_with_email_and_password_is_refused_a_wrong_one_and_logs_out() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.to_string()]));
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["user", "create", "--db"])
        .arg(&app.db_path)
        .args(["--email", "ada@example.com"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"correct horse\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let browser = Browser::start();
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("form.login h2", "Log in");
    // The API key comes with the page: only email and password are asked.
    assert!(browser.find_all("#login-key").is_empty(), "the page asks for the API key");
    browser.type_into("#login-who", "ada@example.com");
    browser.type_into("#login-password", "wrong horse");
    browser.click("form.login button[type=submit]");
    browser.wait_text("#login-error", "Wrong email, username or password");
    browser.clear("#login-password");
    browser.type_into("#login-password", "correct horse");
    browser.click("form.login button[type=submit]");
    browser.wait_text("main .empty", "No backfills yet");
    browser.wait_text("#who", "Logged in as ada");
    // Kept for the tab: a reload stays logged in.
    browser.goto(&format!("{}/#/new", app.base));
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("main .empty", "No backfills yet");
    let token = script(&browser, "return sessionStorage.getItem('backfilld.token');");
    let token = token.as_str().unwrap().to_string();
    let key = [("X-API-KEY", KEY), ("OAUTH-TOKEN", token.as_str())];
    assert_eq!(app.get_with("/api/backfills", &key).status, 200);
    // Logging out ends the session on the server and forgets it here.
    browser.click("#signout");
    browser.wait_text("form.login h2", "Log in");
    assert_eq!(script(&browser, "return sessionStorage.getItem('backfilld.token');"), serde_json::Value::Null);
    assert_eq!(app.get_with("/api/backfills", &key).status, 401);
}

#[test]
fn a_run_s_page_says_when_part_of_its_log_was_cut() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = started_seed(&app, "etl", "loud");
    let claimed = app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w1", "limit": 1}));
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let run = claimed.body["pipeline_runs"][0]["id"].as_i64().unwrap();
    assert!(app.run_ids(id).contains(&run));
    // 1.5 MiB of output, in two chunks: the log keeps 1 MiB and cuts the middle.
    let line = "x".repeat(1023) + "\n";
    for offset in [0usize, 786_432] {
        let chunk = line.repeat(768).into_bytes();
        let r = app.send_raw("POST", &format!("/api/pipeline_runs/{run}/logs?worker=w1&offset={offset}"), &[], chunk);
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let browser = Browser::start();
    browser.goto(&format!("{}/#/runs/{run}", app.base));
    browser.wait_text("#log-note", "bytes were cut from the middle");
    browser.wait_text("#log", "bytes of output cut here");
    browser.wait_text("#log-note", "1572864 bytes of output");
}
