//! Logging in as Mage's clients do (`POST /api/sessions`), the sessions' tokens in every place
//! Mage reads them, logging out, and the users the `backfilld user` commands manage.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::AuthConfig;
use crate::helpers::*;
use crate::wait::eventually;
use backfilld::service::lifecycle::Limits;

const KEY: &str = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2";

fn secured() -> TestApp {
    spawn_app_with(AuthConfig::new(true, &[KEY.into()]))
}

/// `backfilld user ARGS` on the app's file with `stdin` as its input.
fn user_cmd(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    // The input is in the pipe, whole and closed, before the command starts (a pipe holds
    // 64 KiB): a command that refuses its arguments and exits without reading it cannot
    // make the write fail.
    let (input, mut feed) = std::io::pipe().unwrap();
    feed.write_all(stdin.as_bytes()).unwrap();
    drop(feed);
    let out = Command::new(BIN)
        .arg("user")
        .args(&args[..1])
        .arg("--db")
        .arg(&app.db_path)
        .args(&args[1..])
        .stdin(input)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn add_user(app: &TestApp, email: &str, password: &str) {
    let (ok, out, err) = user_cmd(app, &["create", "--email", email], &format!("{password}\n"));
    assert!(ok, "{out}{err}");
}

fn login(app: &TestApp, session: Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    app.send_raw("POST", "/api/sessions", &all, serde_json::to_vec(&json!({ "session": session })).unwrap())
}

/// A login from the client at `from` (`helpers::connect_from`), which the server's throttle
/// counts apart from the test's other clients.
fn login_from(app: &TestApp, from: Ipv4Addr, session: Value) -> Reply {
    app.send_from(from, "POST", "/api/sessions", &json!({ "session": session }))
}

/// The `n`th of the test's other clients: 127.0.1.0 and on.
fn client(n: u16) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (n >> 8) as u8, n as u8)
}

/// The claims of a JWT, read without checking it, as Mage's clients read it.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn a_login_answers_mage_s_session_whose_token_works_where_mage_takes_it() {
    let app = secured();
    add_user(&app, "ada@example.com", "correct horse");
    let r = login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[("X-API-KEY", KEY)]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["metadata"], Value::Null);
    let session = &r.body["session"];
    assert_eq!(
        session["user"],
        json!({"avatar": null, "first_name": null, "id": 1, "last_name": null, "owner": true, "roles": null,
               "roles_display": "Owner", "username": "ada"})
    );
    // expires: Mage's form (no offset), 30 days on; the JWT's `expires` is the same instant.
    let expires = session["expires"].as_str().unwrap();
    assert!(!expires.contains('+') && !expires.contains('T'), "{expires}");
    let jwt = session["token"].as_str().unwrap();
    let c = claims(jwt);
    let inner = c["token"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let lifetime = c["expires"].as_f64().unwrap() - now;
    assert!((30.0 * 86_400.0 - 60.0..=30.0 * 86_400.0).contains(&lifetime), "{lifetime}");
    let whole_seconds = expires.split('.').next().unwrap();
    let c_secs = c["expires"].as_f64().unwrap() as i64;
    let formatted = time::OffsetDateTime::from_unix_timestamp(c_secs).unwrap();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    assert_eq!(formatted.format(&fmt).unwrap(), whole_seconds);

    // The inner token in the OAUTH-TOKEN and Bearer headers; the JWT in the cookie.
    let key = ("X-API-KEY", KEY);
    assert_eq!(app.get_with("/api/backfills", &[key, ("OAUTH-TOKEN", &inner)]).status, 200);
    assert_eq!(app.get_with("/api/backfills", &[key, ("Authorization", &format!("Bearer {inner}"))]).status, 200);
    assert_eq!(app.get_with("/api/backfills", &[key, ("Cookie", &format!("oauth_token={jwt}"))]).status, 200);
    // Not the other way round, and not a JWT signed by anyone else.
    assert_error(&app.get_with("/api/backfills", &[key, ("OAUTH-TOKEN", jwt)]), 401, "invalid_oauth_token");
    assert_error(
        &app.get_with("/api/backfills", &[key, ("Cookie", &format!("oauth_token={jwt}x"))]),
        401,
        "invalid_oauth_token",
    );
    let mut parts: Vec<&str> = jwt.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(json!({"expires": 4e9, "token": "made-up"}).to_string());
    parts[1] = &forged_claims;
    let forged = parts.join(".");
    assert_error(
        &app.get_with("/api/backfills", &[key, ("Cookie", &format!("oauth_token={forged}"))]),
        401,
        "invalid_oauth_token",
    );
    // The session needs the key, as every request does.
    assert_error(&app.get_with("/api/backfills", &[("OAUTH-TOKEN", &inner)]), 401, "invalid_api_key");

    // Login by username, with the key in the body as Mage also takes it.
    let body = json!({"session": {"username": "ADA", "password": "correct horse"}, "api_key": KEY});
    let r = app.send("POST", "/api/sessions", &body);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(claims(r.body["session"]["token"].as_str().unwrap())["token"], json!(inner), "a new session");
    // Without the key, no login.
    let r = login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[]);
    assert_error(&r, 401, "invalid_api_key");
}

#[test]
fn wrong_emails_and_passwords_get_one_answer() {
    let app = spawn_app();
    add_user(&app, "ada@example.com", "correct horse");
    // An unknown email's password is checked too (against a decoy hash), so that the answer
    // takes as long as a wrong password's and does not tell whether the email has an
    // account: the metrics count the check.
    let token = app.add_token("metrics", None);
    let checks = || {
        let mut resp =
            agent().get(app.url("/metrics")).header("X-API-KEY", KEY).header("OAUTH-TOKEN", &token).call().unwrap();
        assert_eq!(resp.status(), 200);
        metric(&resp.body_mut().read_to_string().unwrap(), "backfilld_password_checks_total").unwrap()
    };
    let before = checks();
    let unknown = login(&app, json!({"email": "nobody@example.com", "password": "correct horse"}), &[]);
    assert_error(&unknown, 401, "invalid_credentials");
    assert_eq!(checks(), before + 1.0, "the unknown email's password was not checked");
    let wrong = login(&app, json!({"email": "ada@example.com", "password": "not hers"}), &[]);
    assert_error(&wrong, 401, "invalid_credentials");
    assert_eq!(checks(), before + 2.0);
    // Different addresses each time, each pair from a client of its own: under the throttle's
    // free failures.
    for k in 0..5 {
        let wrong_password =
            login_from(&app, client(k), json!({"email": "ada@example.com", "password": format!("wrong {k}")}));
        let unknown_email = login_from(
            &app,
            client(k),
            json!({"email": format!("nobody{k}@example.com"), "password": "correct horse"}),
        );
        let m1 = assert_error(&wrong_password, 401, "invalid_credentials");
        let m2 = assert_error(&unknown_email, 401, "invalid_credentials");
        assert_eq!(m1, m2, "the same message for both");
        assert_eq!(m1, "Email/username and/or password invalid.");
        if k == 1 {
            // ada's failures so far are free; her right password still gets in.
            assert_eq!(login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[]).status, 200);
        }
    }
    // That both take the same time is a timing: examples/bench.rs measures it ("login: wrong
    // password vs unknown email").
    // Missing fields are a 400 naming them, not a failed login.
    assert!(assert_error(&login(&app, json!({"password": "x"}), &[]), 400, "record_invalid").contains("email"));
    assert!(assert_error(&login(&app, json!({"email": "a@b"}), &[]), 400, "record_invalid").contains("password"));
    let r = app.send("POST", "/api/sessions", &json!({"email": "a@b", "password": "x"}));
    assert_error(&r, 400, "api_resource_error");
}

#[test]
fn repeated_failures_for_an_address_are_slowed_down() {
    let app = spawn_app();
    add_user(&app, "ada@example.com", "correct horse");
    add_user(&app, "bob@example.com", "battery staple");
    let wrong = json!({"email": "ada@example.com", "password": "nope"});
    // Each failure from a client of its own, so that only the address's count slows them.
    let clients = std::cell::Cell::new(0);
    let fail = || {
        clients.set(clients.get() + 1);
        assert_error(&login_from(&app, client(clients.get()), wrong.clone()), 401, "invalid_credentials");
    };
    // Three failures are free: the right password still gets in after them.
    for _ in 0..3 {
        fail();
    }
    assert_eq!(login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[]).status, 200);
    // After the fourth failure, a try within the second is refused unchecked, even with the
    // right password. The second is the server's: tries answered less than a second after the
    // fourth failure was sent must be refused. A machine too busy to try that soon lets the
    // right password in (which starts the count over): the failures and tries are then made
    // again.
    let right = json!({"email": "ADA@example.com", "password": "correct horse"});
    let raw = || {
        ureq::http::Request::builder()
            .method("POST")
            .uri(app.url("/api/sessions"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&json!({"session": right})).unwrap())
            .unwrap()
    };
    let refused_at = eventually("two tries within a second of a fourth failure", || {
        for _ in 0..3 {
            fail();
        }
        let fourth = Instant::now();
        fail();
        let r = login(&app, right.clone(), &[]);
        let resp = agent().run(raw()).unwrap();
        let answered = Instant::now();
        let statuses = (r.status, resp.status().as_u16());
        if statuses == (429, 429) {
            assert!(assert_error(&r, 429, "too_many_requests").contains("try again"));
            assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
            return Ok(answered);
        }
        let late = answered - fourth;
        assert!(late >= Duration::from_secs(1), "{statuses:?} {late:?} after the fourth failure: {:?}", r.body);
        assert!(matches!(statuses, (200 | 429, 200)), "{statuses:?}: {:?}", r.body);
        Err(format!("the tries were answered {late:?} after the fourth failure"))
    });
    // Another address is not slowed down.
    assert_eq!(login(&app, json!({"email": "bob@example.com", "password": "battery staple"}), &[]).status, 200);
    // A client that waits as the Retry-After said gets in with the right password, and the
    // count starts over. (The wait is what is tested, not a guess at how long something
    // takes: on a busier machine it only ends later.)
    std::thread::sleep((refused_at + Duration::from_secs(1)).saturating_duration_since(Instant::now()));
    assert_eq!(login(&app, right, &[]).status, 200);
    for _ in 0..4 {
        fail();
    }
    // A very long address is refused before it is counted (the throttle keeps a digest).
    let long = json!({"email": format!("{}@example.com", "a".repeat(300)), "password": "nope"});
    assert!(assert_error(&login(&app, long, &[]), 400, "record_invalid").contains("254"));
}

#[test]
fn one_client_trying_many_addresses_is_slowed_down_and_other_clients_are_not() {
    let app = spawn_app();
    add_user(&app, "ada@example.com", "correct horse");
    // One password tried on 30 users from one client: after its 3 free failures, each one
    // makes its next try wait twice as long, whatever the address, so that most tries are
    // refused unchecked, as they would be for one user.
    let sprayer = client(1);
    let mut checked = 0;
    for k in 0..30 {
        let r = login_from(&app, sprayer, json!({"email": format!("user{k}@example.com"), "password": "Summer2024"}));
        match r.status {
            401 => checked += 1,
            _ => {
                let message = assert_error(&r, 429, "too_many_requests");
                assert!(message.contains("from this client address"), "{message}");
                assert!(r.retry_after.as_deref().is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s >= 1)), "{r:?}");
            }
        }
    }
    // 4 checked at once, then one each time a wait ended: 1 s, 2 s, 4 s, ... Only tries spread
    // over more than 15 s could have 8 checked.
    assert!((4..8).contains(&checked), "{checked} of 30 tries were checked");
    // Meanwhile another client logs in at once, and its failures are its own.
    let other = client(2);
    assert_eq!(login_from(&app, other, json!({"email": "ada@example.com", "password": "correct horse"})).status, 200);
    let r = login_from(&app, other, json!({"email": "user0@example.com", "password": "Summer2024"}));
    assert_error(&r, 401, "invalid_credentials");
}

#[test]
fn logins_that_succeed_are_never_slowed_down() {
    let app = spawn_app();
    add_user(&app, "ada@example.com", "correct horse");
    // From one client, many more than the free failures: a success is no failure, for the
    // address nor for the client (a script, the command line, a proxy's many users).
    for k in 0..8 {
        let r = login_from(&app, client(3), json!({"email": "ada@example.com", "password": "correct horse"}));
        assert_eq!(r.status, 200, "login {k}: {:?}", r.body);
    }
}

#[test]
fn sessions_expire_end_at_logout_and_with_their_user() {
    let app = spawn_app_tuned(AuthConfig::new(true, &[KEY.into()]), Limits::default(), |s| s.session_lifetime = 1);
    add_user(&app, "ada@example.com", "correct horse");
    let key = ("X-API-KEY", KEY);
    let session = |app: &TestApp| {
        let r = login(app, json!({"email": "ada@example.com", "password": "correct horse"}), &[key]);
        assert_eq!(r.status, 200, "{:?}", r.body);
        claims(r.body["session"]["token"].as_str().unwrap())["token"].as_str().unwrap().to_string()
    };
    let short = session(&app);
    assert_eq!(app.get_with("/api/backfills", &[key, ("OAUTH-TOKEN", &short)]).status, 200);
    let refused = eventually("the session of 1 s to end", || {
        let r = app.get_with("/api/backfills", &[key, ("OAUTH-TOKEN", &short)]);
        (r.status != 200).then_some(r)
    });
    assert_error(&refused, 401, "expired_oauth_token");

    // Logout, Mage's way (PUT /api/sessions/1) and with DELETE: the answer's expires is now.
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.into()]));
    add_user(&app, "ada@example.com", "correct horse");
    for method in ["PUT", "DELETE"] {
        let token = session(&app);
        let auth = ("OAUTH-TOKEN", token.as_str());
        let r = app.send_raw(method, "/api/sessions/1", &[key, auth], vec![]);
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["session"]["user"]["username"], "ada");
        let ends = claims(r.body["session"]["token"].as_str().unwrap())["expires"].as_f64().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - ends).abs() < 60.0, "{ends} vs {now}");
        assert_error(&app.get_with("/api/backfills", &[key, auth]), 401, "invalid_oauth_token");
        assert_error(&app.send_raw(method, "/api/sessions/1", &[key, auth], vec![]), 401, "invalid_oauth_token");
    }
    // A token made with `backfilld token create` is not a session to log out of.
    let cli_token = app.add_token("ci", None);
    let r = app.send_raw("PUT", "/api/sessions/1", &[key, ("OAUTH-TOKEN", &cli_token)], vec![]);
    assert!(assert_error(&r, 400, "api_resource_error").contains("token revoke ci"));
    // Without authentication required, a logout still needs the token it ends.
    let open = spawn_app();
    assert_error(&open.send_raw("PUT", "/api/sessions/1", &[], vec![]), 403, "unauthorized_access");

    // Deleting the user ends their sessions at once.
    let token = session(&app);
    let (ok, out, err) = user_cmd(&app, &["delete", "ADA@example.com"], "");
    assert!(ok, "{out}{err}");
    assert_error(&app.get_with("/api/backfills", &[key, ("OAUTH-TOKEN", &token)]), 401, "invalid_oauth_token");
    assert_error(
        &login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[key]),
        401,
        "invalid_credentials",
    );
}

#[test]
fn the_user_commands_take_passwords_from_standard_input_never_a_flag() {
    let app = spawn_app();
    let (ok, out, _) = user_cmd(&app, &["create", "--email", "ada@example.com"], "correct horse\n");
    assert!(ok);
    assert_eq!(out.trim(), "created user ada@example.com (username 'ada', id 1)");
    // The stored password is an Argon2id hash, not the password.
    let conn = backfilld::db::open(&app.db_path).unwrap();
    let stored: String = conn.query_row("SELECT password_hash FROM user", [], |r| r.get(0)).unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains("correct horse"), "{stored}");
    drop(conn);
    // Refusals: a taken email (any case), a taken username, a short password, a bad email,
    // a password flag.
    let (ok, _, err) = user_cmd(&app, &["create", "--email", "ADA@example.com", "--username", "x"], "long enough\n");
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) = user_cmd(&app, &["create", "--email", "ada@other.org"], "long enough\n");
    assert!(!ok && err.contains("username 'ada' is taken"), "{err}");
    let (ok, _, err) = user_cmd(&app, &["create", "--email", "bob@example.com"], "short\n");
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, _, err) = user_cmd(&app, &["create", "--email", "bob"], "long enough\n");
    assert!(!ok && err.contains("not an email"), "{err}");
    let (ok, _, err) = user_cmd(&app, &["create", "--email", "bob@example.com", "--password", "x"], "");
    assert!(!ok && err.contains("--password"), "{err}");
    let (ok, out, _) =
        user_cmd(&app, &["create", "--email", "bob@example.com", "--username", "robert"], "long enough\r\n");
    assert!(ok, "{out}");
    // The password was the line without its ending.
    assert_eq!(login(&app, json!({"username": "robert", "password": "long enough"}), &[]).status, 200);
    let (ok, out, _) = user_cmd(&app, &["list"], "");
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("ada@example.com\tada\tcreated ") && lines[0].ends_with("\t0 live session(s)"),
        "{out}"
    );
    assert!(lines[1].starts_with("bob@example.com\trobert\t") && lines[1].ends_with("\t1 live session(s)"), "{out}");
    let (ok, _, err) = user_cmd(&app, &["delete", "nobody@example.com"], "");
    assert!(!ok && err.contains("no user has the email"), "{err}");
}

/// The dashboard's page as a server serves it: its `<meta name="backfilld-api-key">`, if any.
fn page_key(app: &TestApp) -> Option<String> {
    let mut resp = agent().get(app.url("/")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.body_mut().read_to_string().unwrap();
    let start = html.find("<meta name=\"backfilld-api-key\" content=\"")?;
    let rest = &html[start + "<meta name=\"backfilld-api-key\" content=\"".len()..];
    Some(rest[..rest.find('"').unwrap()].to_string())
}

/// Issue 21: the page logs users in with only email and password, with the API key of the
/// server that served it: the first `--api-key` by default, or `--dashboard-api-key`
/// (HTML-escaped in the page), and none without keys.
#[test]
fn the_dashboard_page_carries_the_servers_api_key_and_a_login_with_it_works() {
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.into(), "second-key".into()]));
    let key = page_key(&app).expect("the page carries a key");
    assert_eq!(key, KEY);
    add_user(&app, "ada@example.com", "correct horse");
    let r = login(&app, json!({"email": "ada@example.com", "password": "correct horse"}), &[("X-API-KEY", &key)]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = claims(r.body["session"]["token"].as_str().unwrap())["token"].as_str().unwrap().to_string();
    let listed = app.get_with("/api/backfills", &[("X-API-KEY", &key), ("OAUTH-TOKEN", &token)]);
    assert_eq!(listed.status, 200, "{:?}", listed.body);

    let odd = r#"k"<&>'y"#;
    let chosen = spawn_app_tuned(AuthConfig::new(true, &[KEY.into(), odd.into()]), Limits::default(), |s| {
        s.dashboard_api_key = Some(odd.into())
    });
    assert_eq!(page_key(&chosen).as_deref(), Some("k&quot;&lt;&amp;&gt;&#39;y"));

    assert_eq!(page_key(&spawn_app()), None);
}

#[test]
fn a_dashboard_api_key_that_is_not_an_api_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--api-key", "a", "--dashboard-api-key", "b", "--db"])
        .arg(dir.path().join("b.db"))
        .env_remove("BACKFILLD_API_KEY")
        .env_remove("BACKFILLD_DASHBOARD_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dashboard-api-key") && err.contains("--api-key"), "{err}");
}
