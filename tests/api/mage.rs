//! What Mage's clients see besides the backfills themselves: the wire details of single
//! records and runs, the status answer, cross-origin requests, and logging in.

use serde_json::{json, Value};

use crate::helpers::AuthConfig;
use crate::helpers::*;
use backfilld::service::lifecycle::Limits;

/// A raw request with `headers`, answering the status, the named response headers and the
/// body text.
fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    want: &[&str],
) -> (u16, Vec<Option<String>>, String) {
    let mut req = ureq::http::Request::builder().method(method).uri(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = agent().run(req.body(()).unwrap()).unwrap();
    let got = want.iter().map(|h| resp.headers().get(*h).and_then(|v| v.to_str().ok()).map(str::to_string)).collect();
    (resp.status().as_u16(), got, resp.body_mut().read_to_string().unwrap())
}

const ACAO: &str = "access-control-allow-origin";

#[test]
fn cors_is_off_unless_origins_are_given() {
    let app = spawn_app();
    let (status, headers, _) = raw(&app, "GET", "/api/backfills", &[("Origin", "https://app.example.com")], &[ACAO]);
    assert_eq!((status, &headers[0]), (200, &None));
    // A preflight is then just a method the route does not have.
    let (status, _, body) = raw(
        &app,
        "OPTIONS",
        "/api/backfills",
        &[("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "GET")],
        &[],
    );
    assert_eq!(status, 405, "{body}");
}

#[test]
fn allowed_origins_get_preflights_and_headers_others_do_not() {
    let app = spawn_app_tuned(AuthConfig::new(true, &["k".into()]), Limits::default(), |s| {
        s.cors_origins = vec!["https://app.example.com".into(), "http://localhost:3000".into()];
    });
    // The preflight is answered before authentication (browsers send no credentials with it).
    let (status, h, body) = raw(
        &app,
        "OPTIONS",
        "/api/backfills/7",
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "x-api-key, oauth-token, content-type"),
        ],
        &[
            ACAO,
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age",
            "access-control-allow-credentials",
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(h[0].as_deref(), Some("https://app.example.com"));
    assert!(h[1].as_deref().unwrap().contains("PUT"), "{h:?}");
    let allowed = h[2].as_deref().unwrap().to_ascii_lowercase();
    for want in ["x-api-key", "oauth-token", "content-type"] {
        assert!(allowed.contains(want), "{allowed}");
    }
    assert_eq!(h[3].as_deref(), Some("3600"));
    assert_eq!(h[4].as_deref(), Some("true"));

    // The actual request: refused for want of credentials, but readable by the page.
    let (status, h, _) = raw(
        &app,
        "GET",
        "/api/backfills",
        &[("Origin", "http://localhost:3000")],
        &[ACAO, "access-control-expose-headers"],
    );
    assert_eq!(status, 401);
    assert_eq!(h[0].as_deref(), Some("http://localhost:3000"));
    let exposed = h[1].as_deref().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("etag") && exposed.contains("x-request-id"), "{h:?}");

    // Another origin: its preflight is refused in the envelope, its requests lack the headers.
    let (status, _, body) = raw(
        &app,
        "OPTIONS",
        "/api/backfills",
        &[("Origin", "https://evil.example.com"), ("Access-Control-Request-Method", "GET")],
        &[],
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &body["error"]["type"]), (400, &json!("api_resource_error")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("CORS"), "{body}");
    let (status, h, _) = raw(&app, "GET", "/api/status", &[("Origin", "https://evil.example.com")], &[ACAO]);
    assert_eq!((status, &h[0]), (200, &None));
    // A method outside the policy.
    let (status, _, _) = raw(
        &app,
        "OPTIONS",
        "/api/backfills",
        &[("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "PATCH")],
        &[],
    );
    assert_eq!(status, 400);
}

#[test]
fn any_origin_is_a_wildcard_without_credentials() {
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| s.cors_origins = vec!["*".into()]);
    let (status, h, _) = raw(
        &app,
        "GET",
        "/api/backfills",
        &[("Origin", "https://anywhere.example")],
        &[ACAO, "access-control-allow-credentials"],
    );
    assert_eq!((status, h[0].as_deref(), h[1].as_deref()), (200, Some("*"), None));
}

/// Mage's keys of a pipeline run, besides backfilld's lease keys (`attempt`, `lease_expires_at`, `worker`).
const RUN_KEYS: [&str; 27] = [
    "attempt",
    "backfill_id",
    "block_runs",
    "block_runs_count",
    "completed_at",
    "completed_block_runs_count",
    "created_at",
    "event_variables",
    "execution_date",
    "executor_type",
    "id",
    "lease_expires_at",
    "metrics",
    "passed_sla",
    "pipeline_schedule_id",
    "pipeline_schedule_name",
    "pipeline_schedule_token",
    "pipeline_schedule_type",
    "pipeline_tags",
    "pipeline_type",
    "pipeline_uuid",
    "repo_path",
    "started_at",
    "status",
    "updated_at",
    "variables",
    "worker",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn runs_carry_mage_s_keys_their_schedule_and_what_ran_them() {
    let app = spawn_app();
    let id = app.create_backfill("etl", seed_fields("march"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    let listed = app.get(&format!("/api/pipeline_runs?backfill_id={id}&_limit=1"));
    let row = &listed.body["pipeline_runs"][0];
    assert_eq!(keys(row), RUN_KEYS, "alphabetical, as Mage sends them");
    assert_eq!(
        (&row["block_runs"], &row["block_runs_count"], &row["completed_block_runs_count"]),
        (&json!([]), &json!(0), &json!(0))
    );
    assert_eq!(
        (&row["pipeline_tags"], &row["pipeline_type"], &row["repo_path"], &row["pipeline_schedule_type"]),
        (&Value::Null, &Value::Null, &Value::Null, &Value::Null),
        "null, as on Mage's backfill runs"
    );
    assert_eq!(row["pipeline_schedule_name"], "Backfill march");
    let token = row["pipeline_schedule_token"].as_str().unwrap();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{token}");
    assert_eq!(row["executor_type"], Value::Null, "nothing ran it yet");

    // A claim says what runs them; one run reads the same, with `"metadata": null`.
    let claimed = app.send(
        "POST",
        "/api/pipeline_runs/claim",
        &json!({"worker": "w", "limit": 1, "lease_seconds": 30, "executor_type": "k8s"}),
    );
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let run = &claimed.body["pipeline_runs"][0];
    assert_eq!((&run["executor_type"], &run["pipeline_schedule_token"]), (&json!("k8s"), &json!(token)));
    let one = app.get(&format!("/api/pipeline_runs/{}", run["id"]));
    assert_eq!(keys(&one.body), ["metadata", "pipeline_run"]);
    assert_eq!(one.body["metadata"], Value::Null);
    assert_eq!(keys(&one.body["pipeline_run"]), RUN_KEYS);
    assert_eq!(one.body["pipeline_run"]["executor_type"], "k8s");
    assert_eq!(one.body["pipeline_run"]["pipeline_schedule_name"], "Backfill march");

    // Another backfill's schedule has another token.
    let other = app.create_backfill("etl", seed_fields("april"));
    assert_eq!(app.put_backfill(other, json!({"status": "initial"})).status, 200);
    let theirs = app.get(&format!("/api/pipeline_runs?backfill_id={other}&_limit=1"));
    assert_ne!(theirs.body["pipeline_runs"][0]["pipeline_schedule_token"], json!(token));

    // A too long executor_type is refused, nothing claimed.
    let long = app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w", "executor_type": "x".repeat(65)}));
    assert!(assert_error(&long, 400, "record_invalid").contains("executor_type"));
    // An imported run without a schedule shows nulls.
    app.import(&json!({"pipeline_runs": [{"id": 900, "pipeline_uuid": "loose", "status": "completed"}]}));
    let loose = app.get("/api/pipeline_runs/900").body["pipeline_run"].clone();
    assert_eq!((&loose["pipeline_schedule_name"], &loose["pipeline_schedule_token"]), (&Value::Null, &Value::Null));
}
