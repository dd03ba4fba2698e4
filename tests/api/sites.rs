//! Other sites' pages: state changes a browser marks as coming from a page on another origin
//! are refused (Go 1.25's `CrossOriginProtection`), as are `Host` names the server does not
//! answer to (DNS rebinding). Clients without these headers are unaffected. The browser's own
//! refusal of a cross-origin form and fetch is in tests/api/browser.rs.

use serde_json::json;

use crate::helpers::*;
use backfilld::service::lifecycle::Limits;

const KEY: &str = "k3y";

/// A backfill's record as a `text/plain` body, which a form or a no-cors fetch can send.
fn create_body(extra: serde_json::Value) -> Vec<u8> {
    let mut body = json!({"backfill": seed_fields("from elsewhere")});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&body).unwrap()
}

const CREATE: &str = "/api/pipelines/p/backfills";

#[test]
fn a_page_on_another_origin_cannot_change_anything_and_other_clients_are_unaffected() {
    let app = spawn_app();
    let plain = ("Content-Type", "text/plain");
    for (why, headers) in [
        ("a fetch from another site", vec![plain, ("Sec-Fetch-Site", "cross-site"), ("Origin", "http://evil.example")]),
        ("a form on the same site", vec![plain, ("Sec-Fetch-Site", "same-site"), ("Origin", "http://127.0.0.1:1")]),
        ("an old browser", vec![plain, ("Origin", "http://evil.example")]),
        ("an opaque origin", vec![plain, ("Origin", "null")]),
    ] {
        let r = app.send_as_is("POST", CREATE, &headers, &create_body(json!({})));
        let message = assert_error(&r, 403, "cross_origin_request");
        assert!(message.contains("another origin") && message.contains("--cors-origin "), "{why}: {message}");
    }
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0, "nothing was created");
    // The server's own pages, a user's own navigation, and clients that are no browser.
    let own = format!("http://127.0.0.1:{}", app.port);
    for (why, headers) in [
        ("the dashboard", vec![plain, ("Sec-Fetch-Site", "same-origin"), ("Origin", own.as_str())]),
        ("typed in the address bar", vec![plain, ("Sec-Fetch-Site", "none")]),
        ("an old browser on the page", vec![plain, ("Origin", own.as_str())]),
        ("curl", vec![plain]),
    ] {
        let r = app.send_as_is("POST", CREATE, &headers, &create_body(json!({})));
        assert_eq!(r.status, 200, "{why}: {:?}", r.body);
    }
    // Reads are never refused for it: a page cannot read their answers anyway.
    let r = app.send_as_is("GET", "/api/backfills", &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://e.x")], b"");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 4);
}

#[test]
fn with_auth_a_login_cookie_and_a_key_in_the_body_do_not_let_another_site_in() {
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.to_string()]));
    let token = app.add_token("browser", None);
    let cookie = format!("oauth_token={token}");
    let from_elsewhere = |method: &str, path: &str, body: &[u8]| {
        let headers = [
            ("Content-Type", "text/plain"),
            ("Cookie", cookie.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ];
        app.send_as_is(method, path, &headers, body)
    };
    let create = create_body(json!({"api_key": KEY}));
    assert_error(&from_elsewhere("POST", CREATE, &create), 403, "cross_origin_request");
    let claim = serde_json::to_vec(&json!({"api_key": KEY, "worker": "w", "limit": 1})).unwrap();
    assert_error(&from_elsewhere("POST", "/api/pipeline_runs/claim", &claim), 403, "cross_origin_request");
    let login = serde_json::to_vec(&json!({"api_key": KEY, "session": {"email": "a@b.c", "password": "x"}})).unwrap();
    assert_error(&from_elsewhere("POST", "/api/sessions", &login), 403, "cross_origin_request");
    // The same credentials from the server's own page create.
    let headers = [("Content-Type", "text/plain"), ("Cookie", cookie.as_str()), ("Sec-Fetch-Site", "same-origin")];
    assert_eq!(app.send_as_is("POST", CREATE, &headers, &create).status, 200);
    let count = app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)]);
    assert_eq!(count.body["metadata"]["count"], 1);
}

#[test]
fn pages_of_the_cors_origins_keep_working_and_star_turns_the_protection_off() {
    let app = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| {
        s.cors_origins = vec!["http://app.example".into()]
    });
    // A CORS POST from the allowed origin: served, with the header that lets the page read it.
    let body = serde_json::to_vec(&json!({"backfill": seed_fields("from the app")})).unwrap();
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(app.url(CREATE))
        .header("Content-Type", "application/json")
        .header("Origin", "http://app.example")
        .header("Sec-Fetch-Site", "cross-site")
        .body(body)
        .unwrap();
    let resp = agent().run(req).unwrap();
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), "http://app.example");
    assert_eq!(reply(resp).status, 200);
    // Another origin is still refused.
    let r =
        app.send_as_is("POST", CREATE, &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://evil.example")], b"{}");
    let message = assert_error(&r, 403, "cross_origin_request");
    assert!(message.ends_with("start the server with --cors-origin http://evil.example"), "{message}");
    // `*` trusts every origin.
    let any = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| s.cors_origins = vec!["*".into()]);
    let headers = [("Sec-Fetch-Site", "cross-site"), ("Origin", "http://evil.example")];
    let body = serde_json::to_vec(&json!({"backfill": seed_fields("any")})).unwrap();
    assert_eq!(any.send_as_is("POST", CREATE, &headers, &body).status, 200);
}

#[test]
fn a_loopback_server_answers_only_its_own_names() {
    let app = spawn_app();
    let port = app.port;
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), "LOCALHOST".into()]
    {
        let r = app.send_as_is("GET", "/api/backfills", &[("Host", &host)], b"");
        assert_eq!(r.status, 200, "{host}: {:?}", r.body);
    }
    // A name rebound to this machine: refused on every route, reads too, saying what to set.
    for path in ["/api/backfills", "/api/status", "/", "/nowhere"] {
        let r = app.send_as_is("GET", path, &[("Host", &format!("rebound.example:{port}"))], b"");
        let message = assert_error(&r, 403, "host_not_allowed");
        assert!(
            message.contains("'rebound.example'") && message.contains("--allowed-host rebound.example"),
            "{message}"
        );
    }
    let r = app.send_as_is("POST", CREATE, &[("Host", "rebound.example")], &create_body(json!({})));
    assert_error(&r, 403, "host_not_allowed");
    assert_eq!(app.get("/api/backfills").body["metadata"]["count"], 0);
    // Names given with --allowed-host are answered; `*` answers any.
    let named = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| {
        s.allowed_hosts = vec!["backfilld.internal".into(), ".example.com".into()]
    });
    for (host, status) in [("backfilld.internal:80", 200), ("ci.example.com", 200), ("rebound.example", 403)] {
        assert_eq!(named.send_as_is("GET", "/api/status", &[("Host", host)], b"").status, status, "{host}");
    }
    let any = spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| s.allowed_hosts = vec!["*".into()]);
    assert_eq!(any.send_as_is("GET", "/api/status", &[("Host", "rebound.example")], b"").status, 200);
}
