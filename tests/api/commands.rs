//! The client commands (`backfilld backfill ...`, `run ...`, `login`, `logout`) as a user runs
//! them: the real binary against a real server, with authentication off and on, its config
//! folder (and so its credentials file) in a temporary folder, never the real home.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, AuthConfig, TestApp, BIN};

const KEY: &str = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2";

/// A user's shell: a home and config folder of its own, no `BACKFILLD_` variable but those
/// each call passes.
struct Shell {
    home: tempfile::TempDir,
}

impl Shell {
    fn new() -> Shell {
        Shell { home: tempfile::tempdir().unwrap() }
    }

    fn credentials(&self) -> std::path::PathBuf {
        self.home.path().join("config/backfilld/credentials.json")
    }

    /// `backfilld ARGS` with `env` set and `stdin` as its whole input.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let (input, mut feed) = std::io::pipe().unwrap();
        feed.write_all(stdin.as_bytes()).unwrap();
        drop(feed);
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("BACKFILLD_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .envs(env.iter().copied())
            .stdin(input)
            .output()
            .unwrap()
    }

    /// `backfilld ARGS --server APP`.
    fn run(&self, app: &TestApp, args: &[&str]) -> Output {
        self.run_with(&[args, &["--server", &app.base]].concat(), &[], "")
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts exit status 0 and returns standard output.
fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts exit status `code` and returns standard error.
fn fails(out: Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    String::from_utf8(out.stderr).unwrap()
}

fn json_of(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// The id in `created backfill ID (...`.
fn created_id(stdout: &str) -> i64 {
    let rest = stdout.strip_prefix("created backfill ").unwrap_or_else(|| panic!("{stdout}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_dry_run_prints_the_preview_s_dates_and_creates_nothing() {
    // Arrange: 73 hourly dates, more than the 40 printed.
    let app = spawn_app();
    let sh = Shell::new();
    let flags =
        ["backfill", "create", "--pipeline", "etl", "--from", "2024-01-01", "--to", "2024-01-04", "--every", "1h"];

    // Act
    let printed = ok(sh.run(&app, &[&flags[..], &["--dry-run"]].concat()));
    let as_json = json_of(sh.run(&app, &[&flags[..], &["--dry-run", "--json"]].concat()));

    // Assert: the preview's own dates, the first and last 20, the gap between said.
    let body = json!({"backfill": {"name": "x", "start_datetime": "2024-01-01", "end_datetime": "2024-01-04",
        "interval_type": "hour", "interval_units": 1}});
    let preview = app.send("POST", "/api/pipelines/etl/backfills/preview?_limit=20", &body).body;
    assert_eq!(as_json, preview["backfill_preview"]);
    let dates = |key: &str| -> Vec<String> {
        preview["backfill_preview"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("  {}", d["execution_date"].as_str().unwrap()))
            .collect()
    };
    let mut want = vec!["73 runs of pipeline etl (dry run: nothing was created)".to_string()];
    want.extend(dates("pipeline_run_dates"));
    want.push("  ... 33 more ...".into());
    want.extend(dates("last_pipeline_run_dates"));
    assert_eq!(printed.lines().collect::<Vec<_>>(), want);
    assert_eq!(want[1], "  2024-01-01T00:00:00+00:00");
    assert_eq!(want.last().unwrap(), "  2024-01-04T00:00:00+00:00");
    assert_eq!(app.get("/api/backfills?_limit=0").body["metadata"]["count"], 0);
}

#[test]
fn each_backfill_and_run_command_acts_through_the_api() {
    let app = spawn_app();
    let sh = Shell::new();

    // create: made and started, with its settings.
    let out = ok(sh.run(
        &app,
        &[
            "backfill",
            "create",
            "--pipeline",
            "etl",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--every",
            "1d",
            "--name",
            "three days",
            "--variables",
            r#"{"region": "eu"}"#,
            "--max-active-runs",
            "2",
            "--run-backwards",
        ],
    ));
    let id = created_id(&out);
    assert!(out.starts_with(&format!("created backfill {id} (3 runs), started\n")), "{out}");
    assert!(out.contains(&format!("{}/#/backfills/{id}", app.base)), "{out}");
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), b["total_run_count"].as_u64()), (Some("initial"), Some(3)));
    assert_eq!(b["settings"], json!({"pipeline_run_limit": 2, "run_backwards": true}));
    assert_eq!(b["variables"], json!({"region": "eu"}));
    let unstarted = created_id(&ok(sh.run(
        &app,
        &[
            "backfill",
            "create",
            "--pipeline",
            "other",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--every",
            "1d",
            "--no-start",
        ],
    )));
    assert_eq!(app.read_backfill(unstarted)["status"], Value::Null);

    // list: a table, --pipeline and --status filters, --json the API's records.
    let table = ok(sh.run(&app, &["backfill", "list"]));
    assert!(table.starts_with("ID  NAME"), "{table}");
    assert!(table.contains("three days") && table.contains("0/3 done"), "{table}");
    let listed = json_of(sh.run(&app, &["backfill", "list", "--json", "--pipeline", "etl"]));
    assert_eq!(listed.as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect::<Vec<_>>(), [id]);
    let new = json_of(sh.run(&app, &["backfill", "list", "--json", "--status", "new"]));
    assert_eq!(new[0]["id"], unstarted);
    assert_eq!(new.as_array().unwrap().len(), 1);
    assert!(ok(sh.run(&app, &["backfill", "list", "--status", "completed"])).contains("no backfills"));
    let one = ok(sh.run(&app, &["backfill", "list", "--limit", "1"]));
    assert!(one.contains("(the newest 1 of 2; --limit N for more)"), "{one}");

    // pause and resume.
    ok(sh.run(&app, &["backfill", "pause", &id.to_string()]));
    assert_eq!(app.read_backfill(id)["is_paused"], true);
    assert!(ok(sh.run(&app, &["backfill", "show", &id.to_string()])).contains("status      initial, paused"));
    ok(sh.run(&app, &["backfill", "resume", &id.to_string()]));
    assert_eq!(app.read_backfill(id)["is_paused"], false);

    // run list and show; a date fails; show names it; run retry runs it again.
    let runs = json_of(sh.run(&app, &["run", "list", "--backfill", &id.to_string(), "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 3);
    let run = runs[0]["id"].as_i64().unwrap();
    let worker_report = |status: &str, metrics: Value| {
        app.send(
            "PUT",
            &format!("/api/pipeline_runs/{run}"),
            &json!({"pipeline_run": {"status": status, "metrics": metrics}}),
        )
    };
    assert_eq!(worker_report("running", json!({})).status, 200);
    assert_eq!(worker_report("failed", json!({"error": "the command exited with status 3"})).status, 200);
    let shown = ok(sh.run(&app, &["backfill", "show", &id.to_string()]));
    assert!(shown.contains("status      failed\n"), "{shown}");
    assert!(shown.contains("runs        3: 1 failed, 2 waiting\n"), "{shown}");
    assert!(shown.contains("note: `failed` says that a date failed, not that the backfill stopped"), "{shown}");
    assert!(shown.contains("failed dates: 1 (") && shown.contains("the command exited with status 3"), "{shown}");
    let as_json = json_of(sh.run(&app, &["backfill", "show", &id.to_string(), "--json"]));
    assert_eq!((as_json["backfill"]["id"].as_i64(), as_json["failed_runs"][0]["id"].as_i64()), (Some(id), Some(run)));
    let failed = ok(sh.run(&app, &["run", "list", "--backfill", &id.to_string(), "--status", "failed"]));
    assert_eq!(failed.lines().count(), 2, "{failed}");
    assert!(
        ok(sh.run(&app, &["run", "show", &run.to_string()])).contains("error         the command exited with status 3")
    );
    let retried = ok(sh.run(&app, &["run", "retry", &run.to_string()]));
    assert!(retried.contains("(attempt 2)"), "{retried}");
    assert_eq!(app.run_ids(id).len(), 4);
    // The retried date's newest run waits: it is no longer a failed date.
    let shown = ok(sh.run(&app, &["backfill", "show", &id.to_string()]));
    assert!(!shown.contains("failed dates") && shown.contains("3 waiting"), "{shown}");

    // rerun: refused while nothing is to run again, the API's message; then after a cancel.
    let refused = fails(sh.run(&app, &["backfill", "rerun", &id.to_string(), "--reprocess", "none"]), 1);
    assert!(refused.contains(&format!("backfill {id} has nothing to run again")), "{refused}");
    ok(sh.run(&app, &["backfill", "cancel", &id.to_string()]));
    assert_eq!(app.read_backfill(id)["status"], "cancelled");
    let rerun = ok(sh.run(&app, &["backfill", "rerun", &id.to_string(), "--reprocess", "failed"]));
    assert_eq!(rerun.trim(), format!("backfill {id} runs again: 3 dates waiting"));
    assert_eq!(app.read_backfill(id)["settings"]["reprocess_behavior"], "failed");

    // delete: not without a terminal to ask on, unless --yes.
    let asked = fails(sh.run(&app, &["backfill", "delete", &id.to_string()]), 2);
    assert!(asked.contains("--yes"), "{asked}");
    assert_eq!(app.read_backfill(id)["id"], id);
    ok(sh.run(&app, &["backfill", "delete", &id.to_string(), "--yes"]));
    assert_eq!(app.get(&format!("/api/backfills/{id}")).status, 404);
}

#[test]
fn a_wrong_id_a_server_down_and_bad_flags_say_so_with_the_documented_status() {
    let app = spawn_app();
    let sh = Shell::new();
    // A refusal by the API: its message, status 1.
    for args in [
        &["backfill", "show", "999"][..],
        &["backfill", "pause", "999"],
        &["run", "show", "999"],
        &["run", "retry", "999"],
        &["run", "list", "--backfill", "999"],
        &["backfill", "delete", "999", "--yes"],
    ] {
        let err = fails(sh.run(&app, args), 1);
        assert!(err.contains("(404)") && err.contains("999"), "{args:?}: {err}");
    }
    let err = fails(
        sh.run(
            &app,
            &["backfill", "create", "--pipeline", "p", "--from", "2024-01-02", "--to", "2024-01-01", "--every", "1d"],
        ),
        1,
    );
    assert!(err.contains("end_datetime"), "{err}");
    assert_eq!(app.get("/api/backfills?_limit=0").body["metadata"]["count"], 0, "a refused create writes nothing");

    // No server: status 2, saying where it looked.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let err = fails(sh.run_with(&["backfill", "list", "--server", &down], &[], ""), 2);
    assert!(err.contains(&down) && err.contains("did not answer") && err.contains("--server"), "{err}");
    let err = fails(sh.run_with(&["run", "show", "1"], &[("BACKFILLD_SERVER", &down)], ""), 2);
    assert!(err.contains(&down), "{err}");

    // Bad flags: status 2, before any request.
    for (args, says) in [
        (&["backfill", "create", "--pipeline", "p", "--from", "a", "--to", "b", "--every", "4x"][..], "--every 4x"),
        (
            &[
                "backfill",
                "create",
                "--pipeline",
                "p",
                "--from",
                "a",
                "--to",
                "b",
                "--every",
                "1d",
                "--variables",
                "[]",
            ],
            "--variables",
        ),
        (&["backfill", "list", "--status", "done"], "unknown status"),
        (&["backfill", "show", "seven"], "seven"),
        (&["backfill", "list", "--server", "ftp://x"], "not http"),
    ] {
        let err = fails(sh.run_with(args, &[("BACKFILLD_SERVER", &app.base)], ""), 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn login_keeps_the_session_for_the_commands_and_the_worker_and_logout_ends_it() {
    // Arrange: a server requiring auth, and a user.
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.into()]));
    let made = Command::new(BIN)
        .args(["user", "create", "--email", "ada@example.com", "--db"])
        .arg(&app.db_path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"correct horse battery\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let sh = Shell::new();

    // Without credentials: refused (1), saying how to log in.
    let err = fails(sh.run(&app, &["backfill", "list"]), 1);
    assert!(err.contains("401") && err.contains("backfilld login"), "{err}");
    // A wrong password: the API's message, nothing kept.
    let login = ["login", "--server", &app.base, "--api-key", KEY, "--username", "ada"];
    let err = fails(sh.run_with(&login, &[], "wrong password\n"), 1);
    assert!(err.contains("Email/username and/or password invalid"), "{err}");
    assert!(!sh.credentials().exists());

    // Act: log in with the password on standard input, the key from the environment.
    let said = ok(sh.run_with(
        &["login", "--server", &app.base, "--email", "ada@example.com"],
        &[("BACKFILLD_API_KEY", KEY)],
        "correct horse battery\n",
    ));

    // Assert: kept in a file of the user's own, one entry for the server.
    assert!(said.starts_with(&format!("logged in to {} as ada until ", app.base)), "{said}");
    let file = sh.credentials();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let kept: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entry = &kept["servers"][&app.base];
    assert_eq!((entry["api_key"].as_str(), entry["username"].as_str()), (Some(KEY), Some("ada")));
    let token = entry["token"].as_str().unwrap().to_string();
    assert_eq!(app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)]).status, 200);

    // The client commands use it, and say so at -v.
    let created = ok(sh.run(
        &app,
        &["backfill", "create", "--pipeline", "p", "--from", "2024-01-01", "--to", "2024-01-02", "--every", "1d"],
    ));
    let id = created_id(&created);
    let verbose = sh.run(&app, &["backfill", "show", &id.to_string(), "-v"]);
    let stderr = String::from_utf8_lossy(&verbose.stderr).to_string();
    assert!(stderr.contains("API key: the login kept in") && stderr.contains("token: the login kept in"), "{stderr}");
    ok(verbose);
    // A given token wins over the kept one.
    let err = fails(sh.run(&app, &["backfill", "list", "--token", "not-a-token"]), 1);
    assert!(err.contains("401"), "{err}");
    // The worker too, given neither key nor token.
    let worker = sh.run_with(
        &["worker", "--server", &app.base, "--simulate", "--duration", "1ms", "--until-idle"],
        &[("RUST_LOG", "info")],
        "",
    );
    let log = String::from_utf8_lossy(&worker.stderr).to_string();
    assert!(log.contains("token: the login kept in"), "{log}");
    assert!(ok(worker).contains("2 runs: 2 completed"));

    // logout ends the session on the server and removes the entry.
    assert_eq!(ok(sh.run(&app, &["logout"])).trim(), format!("logged out of {}", app.base));
    assert_eq!(app.get_with("/api/backfills", &[("X-API-KEY", KEY), ("OAUTH-TOKEN", &token)]).status, 401);
    let kept: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(kept["servers"], json!({}));
    assert!(ok(sh.run(&app, &["logout"])).contains("not logged in"));
    assert!(fails(sh.run(&app, &["backfill", "list"]), 1).contains("backfilld login"));

    // --json says where the session went.
    let said = json_of(sh.run_with(
        &["login", "--server", &app.base, "--username", "ada", "--json", "--api-key", KEY],
        &[],
        "correct horse battery\n",
    ));
    assert_eq!((said["server"].as_str(), said["username"].as_str()), (Some(app.base.as_str()), Some("ada")));
    assert_eq!(said["credentials"].as_str(), file.to_str());
    ok(sh.run(&app, &["backfill", "list"]));
}

#[test]
fn with_auth_on_every_command_takes_a_key_and_a_token_from_flags_or_the_environment() {
    let app = spawn_app_with(AuthConfig::new(true, &[KEY.into()]));
    let token = app.add_token("ci", None);
    let sh = Shell::new();
    let env = [("BACKFILLD_SERVER", app.base.as_str()), ("BACKFILLD_API_KEY", KEY), ("BACKFILLD_TOKEN", &token)];
    let run = |args: &[&str]| ok(sh.run_with(args, &env, ""));
    let id = created_id(&run(&[
        "backfill",
        "create",
        "--pipeline",
        "p",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
        "--every",
        "1d",
    ]));
    assert!(run(&["backfill", "list"]).contains(&format!("\n{id} ")));
    run(&["backfill", "show", &id.to_string()]);
    run(&["backfill", "pause", &id.to_string()]);
    run(&["backfill", "resume", &id.to_string()]);
    let runs: Value = serde_json::from_str(&run(&["run", "list", "--backfill", &id.to_string(), "--json"])).unwrap();
    let run_id = runs[0]["id"].as_i64().unwrap().to_string();
    run(&["run", "show", &run_id]);
    run(&["backfill", "cancel", &id.to_string()]);
    run(&["run", "retry", &run_id]);
    run(&["backfill", "cancel", &id.to_string()]);
    run(&["backfill", "rerun", &id.to_string()]);
    run(&["backfill", "delete", &id.to_string(), "--yes"]);
    // Flags instead of the environment; a key alone is not enough.
    ok(sh.run(&app, &["backfill", "list", "--api-key", KEY, "--token", &token]));
    let err = fails(sh.run(&app, &["backfill", "list", "--api-key", KEY]), 1);
    assert!(err.contains("403"), "{err}");
    assert!(!sh.credentials().exists(), "nothing is kept without a login");
}

#[test]
fn stop_on_failure_halts_at_the_first_failed_date_and_show_says_what_waits() {
    let app = spawn_app();
    let sh = Shell::new();
    let id = created_id(&ok(sh.run(
        &app,
        &[
            "backfill",
            "create",
            "--pipeline",
            "p",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--every",
            "1d",
            "--stop-on-failure",
        ],
    )));
    assert_eq!(app.read_backfill(id)["settings"], json!({"stop_on_failure": true}));
    let run = app.run_ids(id)[0];
    assert_eq!(app.report_run(run, "running").status, 200);
    assert_eq!(app.report_run(run, "failed").status, 200);

    let shown = ok(sh.run(&app, &["backfill", "show", &id.to_string()]));
    assert!(shown.contains("status      failed, halted\n"), "{shown}");
    assert!(
        shown.contains(&format!("the 2 waiting are handed out no more until `backfilld backfill rerun {id}`")),
        "{shown}"
    );
    assert!(ok(sh.run(&app, &["backfill", "list"])).contains("failed, halted"));
    let rerun = ok(sh.run(&app, &["backfill", "rerun", &id.to_string()]));
    assert_eq!(rerun.trim(), format!("backfill {id} runs again: 3 dates waiting"), "the failed date and the 2 halted");
    assert_eq!(app.read_backfill(id)["is_halted"], false);
}
