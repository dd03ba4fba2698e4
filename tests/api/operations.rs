//! Operating the server: Prometheus metrics and readiness.

use std::time::Duration;

use serde_json::json;

use crate::helpers::AuthConfig;
use crate::helpers::*;
use crate::wait::eventually;
use backfilld::service::lifecycle::Limits;

fn scrape(app: &TestApp, headers: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let mut req = agent().get(app.url("/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap(), ct)
}

#[test]
fn metrics_count_requests_claims_expiries_and_the_stored_state() {
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| {
        s.min_lease_seconds = 1;
        s.engine.sweep_every = Duration::from_millis(50);
    });
    let id = app.create_backfill("p", seed_fields("m"));
    app.create_backfill("p", seed_fields("not started"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    assert_eq!(app.get("/api/backfills/999999").status, 404);
    let claim = json!({"worker": "w", "limit": 2, "lease_seconds": 1});
    let claimed = app.send("POST", "/api/pipeline_runs/claim", &claim);
    assert_eq!(claimed.body["pipeline_runs"].as_array().unwrap().len(), 2);
    // The two leases run out without a heartbeat: the sweep expires them.
    eventually("the sweep to expire the two leases", || {
        let expired = app.metric("backfilld_lease_expiries_total");
        if expired == Some(2.0) {
            Ok(())
        } else {
            Err(format!("{expired:?} expired"))
        }
    });
    let (status, text, ct) = scrape(&app, &[]);
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(metric(&text, "backfilld_claims_total"), Some(1.0));
    assert_eq!(metric(&text, "backfilld_claimed_runs_total"), Some(2.0));
    assert_eq!(metric(&text, "backfilld_lease_expiries_total"), Some(2.0), "{text}");
    // Stored state, from the kept counts: one backfill running, one not started; 25 dates,
    // two of them failed by expiry and queued again (attempt 2).
    assert_eq!(metric(&text, r#"backfilld_backfills{status="running"}"#), Some(1.0), "{text}");
    assert_eq!(metric(&text, r#"backfilld_backfills{status=""}"#), Some(1.0));
    assert_eq!(metric(&text, r#"backfilld_backfills{status="completed"}"#), Some(0.0));
    assert_eq!(metric(&text, r#"backfilld_pipeline_runs{status="failed"}"#), Some(2.0));
    assert_eq!(metric(&text, r#"backfilld_pipeline_runs{status="initial"}"#), Some(25.0));
    assert!(metric(&text, "backfilld_database_bytes").unwrap() > 0.0);
    assert!(metric(&text, "backfilld_wal_bytes").is_some());
    // Requests by route pattern (never the raw path) and status, with their latency.
    let by_route = r#"backfilld_http_requests_total{route="/api/backfills/{id}",method="GET",status="404"}"#;
    assert_eq!(metric(&text, by_route), Some(1.0), "{text}");
    let claims = r#"backfilld_http_request_duration_seconds_count{route="/api/pipeline_runs/claim",method="POST"}"#;
    assert_eq!(metric(&text, claims), Some(1.0));
    assert!(!text.contains("route=\"/api/backfills/999999\""), "{text}");
}

#[test]
fn metrics_are_behind_the_api_s_authentication_when_it_is_on() {
    let app = spawn_app_with(AuthConfig::new(true, &["k".into()]));
    let token = app.add_token("scraper", None);
    let (status, body, _) = scrape(&app, &[]);
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = scrape(&app, &[("X-API-KEY", "k")]);
    assert_eq!(status, 403);
    let (status, text, _) = scrape(&app, &[("X-API-KEY", "k"), ("OAUTH-TOKEN", &token)]);
    assert_eq!(status, 200);
    assert!(text.contains("backfilld_http_requests_total"));
}
