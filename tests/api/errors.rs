//! Every failure answers the contract's envelope, with the HTTP status equal to its code.

use crate::helpers::{assert_error, backfill, spawn_app};
use serde_json::json;

#[test]
fn bad_query_values_are_400s_that_name_the_parameter() {
    let app = spawn_app();
    // (query, the parameter the message must name, why it is bad)
    let cases = [
        ("_limit=abc", "_limit", "not a number"),
        ("_limit=-1", "_limit", "negative"),
        ("_limit=100000", "_limit", "over the maximum of 1000"),
        ("_limit=1001", "_limit", "just over the maximum"),
        ("_limit=2.5", "_limit", "a fraction"),
        ("_limit=", "_limit", "empty"),
        ("_offset=x", "_offset", "not a number"),
        ("_offset=-1", "_offset", "negative"),
        ("_offset=99999999999999999999", "_offset", "past i64"),
        ("include_run_count=maybe", "include_run_count", "not a boolean"),
        ("include_run_count=2", "include_run_count", "not a boolean digit"),
    ];
    for (query, param, why) in cases {
        for path in ["/api/backfills", "/api/pipelines/p/backfills"] {
            let reply = app.get(&format!("{path}?{query}"));
            let message = assert_error(&reply, 400, "api_resource_error");
            assert!(message.contains(param), "{why}: {query} -> {message}");
        }
    }
}

#[test]
fn unknown_parameters_are_ignored() {
    let app = spawn_app();
    let reply = app.get("/api/backfills?_http_error_codes=true&cache=123&api_key=whatever");
    assert_eq!(reply.status, 200);
}

#[test]
fn a_malformed_query_string_is_a_400() {
    let app = spawn_app();
    let reply = app.get("/api/backfills?_limit=1&_limit=2");
    let message = assert_error(&reply, 400, "api_resource_error");
    assert!(message.contains("_limit"), "{message}");
}

#[test]
fn unknown_paths_are_404s() {
    let app = spawn_app();
    for path in ["/api/nothing", "/api", "/favicon.ico", "/assets/nothing.js", "/api/backfills/extra/segments"] {
        let message = assert_error(&app.get(path), 404, "record_not_found");
        assert!(message.contains("no route"), "{path}: {message}");
    }
}

#[test]
fn wrong_methods_are_405s_with_an_allow_header() {
    let app = spawn_app();
    for (method, path, allow) in [
        ("DELETE", "/api/backfills", "GET, HEAD"),
        ("PATCH", "/api/backfills", "GET, HEAD"),
        ("POST", "/api/backfills", "GET, HEAD"),
        ("PUT", "/api/pipelines/p/backfills", "GET, HEAD, POST"),
        ("POST", "/api/backfills/1", "GET, HEAD, PUT, DELETE"),
        ("GET", "/api/pipelines/p/backfills/1", "PUT"),
        ("DELETE", "/api/pipeline_runs/1", "GET, HEAD, PUT"),
        ("POST", "/api/pipeline_runs", "GET, HEAD"),
        ("POST", "/api/status", "GET, HEAD"),
    ] {
        let reply = app.request(method, path);
        let message = assert_error(&reply, 405, "method_not_allowed");
        assert!(message.contains(method), "{message}");
        assert_eq!(reply.allow.as_deref(), Some(allow));
    }
}

/// Every route of `api::ROUTES` answers each of its methods (no 405, no "no route"), and
/// every other method with a 405 whose `Allow` is that list: the table the OpenAPI document
/// is checked against is the server's own.
#[test]
fn the_route_table_is_what_the_server_serves() {
    let app = spawn_app();
    const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
    for (path, allow) in backfilld::api::ROUTES {
        let concrete = path.replace("{id}", "1").replace("{pipeline_uuid}", "p");
        for method in METHODS {
            let req = ureq::http::Request::builder().method(method).uri(app.url(&concrete)).body(()).unwrap();
            let mut resp = crate::helpers::agent().run(req).unwrap();
            let status = resp.status().as_u16();
            let listed = allow.split(", ").any(|m| m == method);
            if listed {
                assert_ne!(status, 405, "{method} {path}");
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                assert!(!text.contains("no route"), "{method} {path}: {text}");
            } else {
                assert_eq!(status, 405, "{method} {path}");
                assert_eq!(resp.headers().get("allow").unwrap().to_str().unwrap(), allow, "{path}");
            }
        }
    }
}

#[test]
fn an_internal_error_is_a_generic_500_that_hides_its_cause() {
    // Arrange: break the schema behind the server's back.
    let app = spawn_app();
    app.import(&json!({"backfills": [backfill(1, "p", "2023-01-01")]}));
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch("ALTER TABLE backfill RENAME TO backfill_gone").unwrap();

    // Act
    let reply = app.get("/api/backfills");

    // Assert
    let message = assert_error(&reply, 500, "internal_error");
    let body = reply.body.to_string();
    assert!(!body.contains("backfill_gone") && !body.contains("no such table"), "{body}");
    assert!(message.contains("Unexpected error"), "{message}");

    // The worker survived: the next request is answered too.
    assert_eq!(app.get("/api/nothing").status, 404);
}

#[test]
fn odd_input_never_gets_a_500_or_a_dropped_connection() {
    let app = spawn_app();
    app.import(&json!({"backfills": [backfill(1, "p", "2023-01-01")]}));
    let long = "9".repeat(5000);
    // Clients percent-encode non-ASCII; raw non-ASCII bytes in a request line are not HTTP,
    // and actix's parser refuses them before any of our code runs.
    let wide = "%C3%A9".repeat(3000);
    let queries = [
        format!("_limit={long}"),
        format!("_offset={long}"),
        format!("pipeline_uuid={wide}"),
        "pipeline_uuid=%00%01%02".to_string(),
        "_limit=%20%2040%20".to_string(),
        "_limit=+40".to_string(),
        "_limit=0x10".to_string(),
        "include_run_count=%E2%80%8Btrue".to_string(),
        "include_run_count=TRUE&_limit=1000&_offset=0".to_string(),
        "&&&=&=x&_limit".to_string(),
        "_limit=%D9%A1%D9%A0".to_string(),
    ];
    for q in queries {
        for path in ["/api/backfills", "/api/pipelines/p/backfills", "/api/pipelines/%E2%9C%93/backfills"] {
            let reply = app.get(&format!("{path}?{q}"));
            assert!(matches!(reply.status, 200 | 400), "{path}?{q}: {:?}", reply.body);
            if reply.status == 400 {
                assert_error(&reply, 400, "api_resource_error");
            }
        }
    }
}
