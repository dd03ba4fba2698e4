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
    assert_eq!(browser.text(&browser.find_all(&format!("#backfills tr[data-id='{id}'] td.total"))[0]), "25");
    let interval = |id: i64| browser.text(&browser.find_all(&format!("#backfills tr[data-id='{id}'] td.interval"))[0]);
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
    browser.type_into("#api-key", "wrong");
    browser.type_into("#token", &token);
    browser.click("form.credentials button");
    browser.wait_text("main .problem", "refused these credentials");
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("main .problem", "refused these credentials");
    browser.click("#signout");
    browser.wait_text("main .problem", "requires an API key");
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
    browser.click("form.create button[type=submit]");
    // The API's message, next to its field; nothing created.
    browser.wait_text("#e-interval_units", "must be at least 1");
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
    browser.clear("#f-interval_units");
    browser.type_into("#f-interval_units", "4");
    browser.type_into("#f-interval_type", "hour");
    browser.click("form.create button[type=submit]");
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
    browser.click("form.create button[type=submit]");
    browser.wait_text("#message, #e-name", "blank");
    browser.clear("#f-name");
    browser.type_into("#f-name", "renamed");
    browser.click("form.create button[type=submit]");
    browser.wait_text("main h1", "renamed");
    // The preview of its dates, then Start: its runs, in the grid.
    browser.wait_text("ol.preview", "2023-03-01 00:00+00:00");
    browser.click_text(".actions button", "Start");
    browser.wait_text("main h1", "initial");
    assert_eq!(app.read_backfill(b["id"].as_i64().unwrap())["name"], "renamed");
    eventually("the grid to show 25 dates", || browser.find_all(".grid .cell").len() == 25);
    let id = b["id"].as_i64().unwrap();
    for run in app.run_ids(id).into_iter().take(3) {
        assert_eq!(app.report_run(run, "completed").status, 200);
    }
    // Live: the grid changes without a reload.
    eventually("the grid to show the 3 completed dates", || browser.find_all(".grid .cell.completed").len() == 3);
    browser.screenshot("backfill");
    // Cancel, confirmed in the browser's dialog.
    browser.click_text(".actions button", "Cancel");
    browser.call("POST", "/alert/accept", None);
    browser.wait_text("main h1", "cancelled");
    assert_eq!(app.read_backfill(id)["status"], "cancelled");
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
    browser.click("form.create button[type=submit]");
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
fn on_a_phone_the_table_scrolls_in_its_box_and_the_keyboard_reaches_a_backfill() {
    let Some(_turn) = browser_turn() else { return };
    let app = spawn_app();
    let id = started_seed(&app, "etl", "on the small screen");
    let browser = Browser::start();
    browser.call("POST", "/window/rect", Some(json!({"width": 390, "height": 844})));
    browser.goto(&format!("{}/#/", app.base));
    browser.wait_text("#backfills tbody tr", "on the small screen");
    // The page itself does not scroll sideways: the table does, inside its box.
    let widths = browser.call("POST", "/execute/sync", Some(json!({"args": [], "script":
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, \
                 document.querySelector('.table-wrap').scrollWidth, document.querySelector('.table-wrap').clientWidth];"})));
    let w: Vec<i64> = widths.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(w[0] <= w[1], "the page is wider than the screen: {w:?}");
    assert!(w[2] > w[3], "the table scrolls in its box: {w:?}");
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
