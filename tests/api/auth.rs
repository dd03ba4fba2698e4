//! Authentication as Mage's API has it (docs/auth.md), with `--require-auth`.

use crate::helpers::AuthConfig;
use time::Duration;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};

const KEY: &str = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2";

fn secured() -> TestApp {
    spawn_app_with(AuthConfig::new(true, &["other-key".into(), KEY.into()]))
}

#[test]
fn without_require_auth_no_credentials_are_needed_and_bad_ones_are_ignored() {
    let app = spawn_app();
    assert_eq!(app.get("/api/backfills").status, 200);
    assert_eq!(app.get_with("/api/backfills?api_key=wrong", &[("OAUTH-TOKEN", "nonsense")]).status, 200);
}

#[test]
fn a_missing_or_unknown_api_key_is_401_invalid_api_key() {
    let app = secured();
    let token = app.add_token("t", None);
    assert_error(&app.get_with("/api/backfills", &[("OAUTH-TOKEN", &token)]), 401, "invalid_api_key");
    assert_error(&app.get_with("/api/backfills?api_key=wrong", &[("OAUTH-TOKEN", &token)]), 401, "invalid_api_key");
    assert_error(
        &app.get_with("/api/backfills", &[("X-API-KEY", &KEY[..KEY.len() - 1]), ("OAUTH-TOKEN", &token)]),
        401,
        "invalid_api_key",
    );
    // Checked before routing: an unknown path does not tell a stranger what exists.
    assert_error(&app.get("/api/nothing"), 401, "invalid_api_key");
}

#[test]
fn a_valid_key_without_a_token_is_403_unauthorized_access() {
    let app = secured();
    assert_error(&app.get_with("/api/backfills", &[("X-API-KEY", KEY)]), 403, "unauthorized_access");
    assert_error(&app.get(&format!("/api/backfills?api_key={KEY}")), 403, "unauthorized_access");
    assert_error(
        &app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("Authorization", "Basic abc")]),
        403,
        "unauthorized_access",
    );
}

#[test]
fn an_unknown_token_is_401_invalid_oauth_token() {
    let app = secured();
    app.add_token("real", None);
    let reply = app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", "some_really_long_string")]);
    assert_error(&reply, 401, "invalid_oauth_token");
}

#[test]
fn an_expired_token_is_401_expired_oauth_token() {
    let app = secured();
    let token = app.add_token("old", Some(backfilld::domain::datetime::now() - Duration::seconds(1)));
    let reply = app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)]);
    assert_error(&reply, 401, "expired_oauth_token");
}

#[test]
fn a_valid_key_and_token_pass_through_every_carrier() {
    let app = secured();
    let token = app.add_token("good", Some(backfilld::domain::datetime::now() + Duration::hours(1)));
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; oauth_token={token}");
    for headers in [
        vec![("X-API-KEY", KEY), ("OAUTH-TOKEN", token.as_str())],
        vec![("X-API-KEY", KEY), ("Authorization", bearer.as_str())],
        vec![("X-API-KEY", KEY), ("Cookie", cookie.as_str())],
        vec![("x-api-key", "other-key"), ("oauth-token", token.as_str())],
    ] {
        let reply = app.get_with("/api/backfills", &headers);
        assert_eq!(reply.status, 200, "{headers:?}: {:?}", reply.body);
    }
    let reply = app.get_with(&format!("/api/backfills?_limit=1&api_key={KEY}"), &[("OAUTH-TOKEN", &token)]);
    assert_eq!(reply.status, 200);
    // Past authentication, the usual answers.
    let reply = app.get_with("/api/nothing", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)]);
    assert_error(&reply, 404, "record_not_found");
}

#[test]
fn the_status_health_check_needs_no_credentials_and_says_whether_others_do() {
    let open = spawn_app();
    let r = open.get("/api/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["statuses"][0]["require_user_authentication"], false);
    assert_eq!(r.body["statuses"][0]["backfilld_version"], env!("CARGO_PKG_VERSION"));
    let r = secured().get("/api/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["statuses"][0]["require_user_authentication"], true);
    // Mage's other spelling, and Mage's keys with what is true of backfilld.
    let r = secured().get("/api/statuses");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["metadata"], serde_json::json!({}));
    let s = r.body["statuses"][0].as_object().unwrap();
    let mut keys: Vec<&str> = s.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "backfilld_version",
            "disable_pipeline_edit_access",
            "instance_type",
            "is_instance_manager",
            "max_print_output_lines",
            "project_type",
            "project_uuid",
            "repo_path",
            "repo_path_relative",
            "repo_path_relative_root",
            "repo_path_root",
            "require_user_authentication",
            "require_user_permissions",
            "scheduler_status",
        ]
    );
    assert_eq!((&s["is_instance_manager"], &s["require_user_permissions"]), (&false.into(), &false.into()));
    assert_eq!(s["scheduler_status"], "running");
}
