//! `backfilld worker`: the real binary claiming from a real server, running real commands.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::AuthConfig;
use backfilld::service::lifecycle::Limits;
use serde_json::{json, Value};

use crate::helpers::{seed_fields, signal, spawn_app, spawn_app_tuned, spawn_app_with, TestApp, BIN};
use crate::wait::eventually;

/// A server whose leases may be as short as a second and are checked every 50 ms.
fn fast_leases() -> TestApp {
    spawn_app_tuned(AuthConfig::default(), Limits::default(), |s| {
        s.min_lease_seconds = 1;
        s.engine.sweep_every = Duration::from_millis(50);
    })
}

/// Creates and starts the seed backfill (25 dates, every 4 hours) in `pipeline`.
fn started(app: &TestApp, pipeline: &str, mut fields: Value) -> i64 {
    let mut all = seed_fields("worked");
    all.as_object_mut().unwrap().append(fields.as_object_mut().unwrap());
    let id = app.create_backfill(pipeline, all);
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    id
}

fn worker(app: &TestApp, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("worker").args(["--server", &app.base]).args(args).env_remove("BACKFILLD_API_KEY");
    c.env_remove("BACKFILLD_TOKEN").env_remove("BACKFILLD_SERVER").stdin(Stdio::null());
    // No login's credentials but the test's own (none): never the real home's.
    c.env("XDG_CONFIG_HOME", app.dir.path().join("config"));
    c
}

fn run_worker(app: &TestApp, args: &[&str]) -> Output {
    worker(app, args).output().unwrap()
}

fn runs(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/pipeline_runs?{query}&_limit=1000"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["pipeline_runs"].as_array().unwrap().clone()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a child writes to standard error, read by a thread as it comes, so that a test can
/// wait for a line of it.
struct Stderr {
    text: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Stderr {
    fn follow(stderr: ChildStderr) -> Stderr {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Stderr { text, reader }
    }

    /// What it has written so far.
    fn now(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Everything it wrote, once it has closed its standard error (exited).
    fn all(self) -> String {
        self.reader.join().unwrap();
        let text = self.text.lock().unwrap();
        text.clone()
    }
}

/// Whether a process still runs whose command line contains `marker`.
fn process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        text(&cmdline).contains(marker) && !text(&cmdline).contains("backfilld")
    })
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn exec_runs_each_date_once_with_its_variables_and_its_json() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"variables": {"region": "eu-west", "dash-ed": "skipped"}}));
    let out = app.dir.path().join("dates.txt");
    let cmd = format!(
        "printf '%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$BACKFILL_DS\" \"$BACKFILL_HR\" \"$BACKFILL_ID\" \"$PIPELINE_RUN_ID\" \
         \"$PIPELINE_UUID\" \"$BACKFILL_ATTEMPT\" \"$BACKFILL_REGION\" \"$(cat | tr -d '\\n' | cut -c1-400 | \
         grep -o '\"execution_date\":\"[^\"]*\"')\" >> {}",
        out.display()
    );
    let o = run_worker(&app, &["--concurrency", "4", "--until-idle", "--exec", &cmd]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("25 runs: 25 completed, 0 failed"), "{}", text(&o.stdout));
    let got = lines(&out);
    assert_eq!(got.len(), 25, "{got:?}");
    let mut dates: Vec<(String, String)> = got
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!((f[2], f[4], f[5], f[6]), (id.to_string().as_str(), "etl", "1", "eu-west"), "{l}");
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    dates.sort();
    dates.dedup();
    assert_eq!(dates.len(), 25, "each date exactly once: {dates:?}");
    assert_eq!(dates[0], ("2023-03-01".to_string(), "00".to_string()));
    assert_eq!(dates[24], ("2023-03-05".to_string(), "00".to_string()));
    // Each command got its run's JSON on standard input, and its id in the environment.
    for (line, run) in got.iter().zip(0..) {
        let f: Vec<&str> = line.split('|').collect();
        let r = app.get(&format!("/api/pipeline_runs/{}", f[3]));
        let date = r.body["pipeline_run"]["execution_date"].as_str().unwrap().to_string();
        assert_eq!(f[7], format!("\"execution_date\":\"{date}\""), "line {run}");
        assert_eq!(r.body["pipeline_run"]["executor_type"], "backfilld_exec", "what ran it");
    }
    let b = app.read_backfill(id);
    assert_eq!((b["status"].as_str(), b["run_status_counts"]["completed"].as_u64()), (Some("completed"), Some(25)));
}

#[test]
fn a_failing_command_fails_its_run_with_the_exit_status_and_the_output_tail() {
    let app = spawn_app();
    // Two dates, claimed together: at 00:00 a command writes 10,011 bytes to its standard
    // output, at 04:00 one line to each of its outputs (one pipe, as `2>&1`).
    let id = started(&app, "etl", json!({"settings": {"max_attempts": 1}, "end_datetime": "2023-03-01T04:00:00Z"}));
    let cmd = "if [ \"$BACKFILL_HR\" = 00 ]; then yes 'line of output' | head -c 10000; echo last words; \
               else echo to stdout; echo to stderr >&2; fi; exit 3";
    let o = run_worker(&app, &["--until-idle", "--concurrency", "2", "--exec", cmd]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let failed = runs(&app, &format!("backfill_id={id}&status=failed"));
    assert_eq!(failed.len(), 2, "{failed:?}");
    let metrics = |hour: &str| {
        let run = failed.iter().find(|r| r["execution_date"].as_str().unwrap().contains(&format!(" {hour}:")));
        run.unwrap_or_else(|| panic!("no run at {hour}: {failed:?}"))["metrics"].clone()
    };
    for m in [metrics("00"), metrics("04")] {
        assert_eq!(m["exit_code"], 3);
        assert_eq!(m["error"], "the command exited with status 3");
    }
    // The last 4,096 bytes, and how many came before them.
    let m = metrics("00");
    let tail = m["output_tail"].as_str().unwrap();
    assert_eq!(tail.len(), 4096);
    assert!(tail.ends_with("line of oulast words\n"), "{tail:?}");
    assert_eq!(m["output_bytes_before_tail"], 10000 + 11 - 4096);
    // Standard error is kept too.
    let m = metrics("04");
    let mut lines: Vec<&str> = m["output_tail"].as_str().unwrap().lines().collect();
    lines.sort();
    assert_eq!(lines, ["to stderr", "to stdout"], "{m}");
    assert_eq!(m["output_bytes_before_tail"], 0);
    assert_eq!(app.read_backfill(id)["status"], "failed");
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children_and_fails() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"settings": {"max_attempts": 1}, "end_datetime": "2023-03-01T00:00:00Z"}));
    let marker = "sleep 31.4159";
    // One more that leaves the command's process group, as a daemon does.
    let escapee = "3600.3141";
    let t = Instant::now();
    let cmd = format!("{marker} & setsid sleep {escapee} & {marker}");
    let o = run_worker(&app, &["--until-idle", "--timeout", "500ms", "--exec", &cmd]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!process_with(marker), "a process of the command was left behind");
    eventually("the process that left the command's group to be killed too", || !sleeping(escapee));
    let failed = runs(&app, &format!("backfill_id={id}&status=failed"));
    assert_eq!(failed[0]["metrics"]["timed_out"], true);
    assert!(failed[0]["metrics"]["error"].as_str().unwrap().contains("--timeout"));
}

#[test]
fn a_cancel_kills_the_running_command_and_nothing_is_reported() {
    let app = fast_leases();
    let id = started(&app, "etl", json!({}));
    let marker = "sleep 27.1828";
    let mut w = worker(&app, &["--lease", "2s", "--concurrency", "2", "--exec", marker])
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&app, id, 2);
    assert_eq!(app.put_backfill(id, json!({"status": "cancelled"})).status, 200);
    // The next heartbeat (every 2/3 s) gets the 409 and kills the commands.
    eventually("the commands to be killed", || !process_with(marker));
    assert_eq!(stop(&mut w).code(), Some(0), "runs taken back are not failures");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut w.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("2 runs: 0 completed, 0 failed, 2 taken back by the server"), "nothing reported: {out}");
    let all = runs(&app, &format!("backfill_id={id}"));
    assert!(all.iter().all(|r| r["status"] == "cancelled" && r["metrics"].is_null()), "{all:?}");
}

/// Waits until `n` runs of backfill `id` are running.
fn wait_running(app: &TestApp, id: i64, n: usize) {
    eventually(&format!("{n} runs of backfill {id} to be running"), || {
        let running = runs(app, &format!("backfill_id={id}&status=running")).len();
        if running == n {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    });
}

/// Sends SIGTERM and waits for the worker's end.
fn stop(w: &mut Child) -> std::process::ExitStatus {
    signal(w, libc::SIGTERM);
    eventually("the worker to stop", || w.try_wait().unwrap())
}

#[test]
fn sigterm_lets_running_commands_finish_within_the_grace_and_claims_no_more() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({}));
    let out = app.dir.path().join("done.txt");
    let cmd = format!("sleep 2; echo \"$BACKFILL_HR\" >> {}", out.display());
    let mut w =
        worker(&app, &["--concurrency", "2", "--grace", "10s", "--exec", &cmd]).stderr(Stdio::null()).spawn().unwrap();
    wait_running(&app, id, 2);
    let status = stop(&mut w);
    // The two that ran finished and were reported; nothing more was claimed.
    assert_eq!(status.code(), Some(0));
    assert_eq!(lines(&out).len(), 2);
    let completed = runs(&app, &format!("backfill_id={id}&status=completed"));
    assert_eq!(completed.len(), 2);
    assert_eq!(runs(&app, &format!("backfill_id={id}&status=running")).len(), 0);
    assert_eq!(runs(&app, &format!("backfill_id={id}&status=initial")).len(), 23);
}

#[test]
fn past_the_grace_commands_are_killed_and_their_leases_left_to_run_out() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({}));
    // Longer than the wait for its end below, so that only a kill ends it in time.
    let marker = "sleep 161.803";
    let mut w = worker(&app, &["--grace", "300ms", "--exec", marker]).stderr(Stdio::null()).spawn().unwrap();
    wait_running(&app, id, 1);
    eventually("the command to start", || process_with(marker));
    let status = stop(&mut w);
    assert_eq!(status.code(), Some(1), "a run left to its lease is not a success");
    // Killed: SIGKILL sent to its group; on a loaded machine the process may take a moment
    // to be torn down after the worker has gone.
    eventually("the command to be killed", || !process_with(marker));
    let running = runs(&app, &format!("backfill_id={id}&status=running"));
    assert_eq!(running.len(), 1, "the run keeps its lease until it runs out");
}

#[test]
fn the_same_seed_fails_the_same_dates() {
    // Backfills of one date each, so that each outcome is its own backfill's status.
    let dates = ["2023-03-01T00:00:00Z", "2023-03-01T04:00:00Z", "2023-03-01T08:00:00Z"];
    let outcomes = |seed: &str| {
        let app = spawn_app();
        for k in 0..30 {
            let date = dates[k % 3];
            started(&app, "etl", json!({"name": format!("b{k}"), "start_datetime": date, "end_datetime": date}));
        }
        let args = [
            "--simulate",
            "--duration",
            "0s..20ms",
            "--fail-rate",
            "0.3",
            "--seed",
            seed,
            "--concurrency",
            "8",
            "--until-idle",
        ];
        let o = run_worker(&app, &args);
        assert!(text(&o.stdout).contains("30 runs"), "{}{}", text(&o.stdout), text(&o.stderr));
        let mut failed: Vec<(i64, String)> = runs(&app, "status=failed")
            .iter()
            .map(|r| (r["backfill_id"].as_i64().unwrap(), r["execution_date"].as_str().unwrap().to_string()))
            .collect();
        failed.sort();
        assert_eq!(runs(&app, "status=completed").len() + failed.len(), 30);
        assert!(runs(&app, "status=completed").iter().all(|r| r["executor_type"] == "backfilld_simulate"));
        (failed, o.status.code())
    };
    let (first, code) = outcomes("7");
    assert!((3..=18).contains(&first.len()), "about 0.3 of 30 fail: {first:?}");
    assert_eq!(code, Some(1));
    assert_eq!(outcomes("7"), (first.clone(), code));
    assert_ne!(outcomes("8").0, first);
}

/// The statuses of the backfill's newest run of each date, in date order.
fn newest_statuses(app: &TestApp, id: i64) -> Vec<String> {
    let mut newest = std::collections::BTreeMap::new();
    let mut all = runs(app, &format!("backfill_id={id}"));
    all.sort_by_key(|r| r["id"].as_i64());
    for r in all {
        newest.insert(r["execution_date"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string());
    }
    newest.into_values().collect()
}

#[test]
fn a_failed_date_does_not_stop_the_others_unless_the_backfill_stops_on_failure() {
    let app = spawn_app();
    // Four days; the command fails on the second.
    let four = |pipeline: &str, settings: Value| {
        started(
            &app,
            pipeline,
            json!({"interval_type": "day", "interval_units": 1,
            "end_datetime": "2023-03-04T00:00:00Z", "settings": settings}),
        )
    };
    let cmd = "[ \"$BACKFILL_DS\" != 2023-03-02 ]";
    let id = four("etl", json!(null));
    let id_str = id.to_string();
    let o = run_worker(&app, &["--until-idle", "--concurrency", "1", "--backfill", &id_str, "--exec", cmd]);
    assert_eq!(o.status.code(), Some(1), "a run failed: {}", text(&o.stderr));
    assert_eq!(newest_statuses(&app, id), ["completed", "failed", "completed", "completed"], "every date ran");
    let b = app.read_backfill(id);
    let failed = &runs(&app, &format!("backfill_id={id}&status=failed"))[0];
    assert_eq!((b["status"].as_str(), &b["failed_at"]), (Some("failed"), &failed["completed_at"]), "{b}");

    // Stopping on failure: the dates after the failed one wait, halted.
    let stops = four("stops", json!({"stop_on_failure": true}));
    let stops_str = stops.to_string();
    let o = run_worker(&app, &["--until-idle", "--concurrency", "1", "--backfill", &stops_str, "--exec", cmd]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(newest_statuses(&app, stops), ["completed", "failed", "initial", "initial"]);
    let b = app.read_backfill(stops);
    assert_eq!((b["status"].as_str(), &b["is_halted"]), (Some("failed"), &json!(true)), "{b}");

    // Retrying the failed date, which now succeeds, completes the backfill.
    let failed = runs(&app, &format!("backfill_id={stops}&status=last_run_failed"));
    let retry = app.send("POST", &format!("/api/pipeline_runs/{}/retry", failed[0]["id"]), &json!({}));
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    let o = run_worker(&app, &["--until-idle", "--backfill", &stops_str, "--exec", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(newest_statuses(&app, stops), ["completed"; 4]);
    assert_eq!(app.read_backfill(stops)["status"], "completed");
}

#[test]
fn until_idle_exits_zero_when_all_completed_and_at_once_with_nothing_to_do() {
    let app = spawn_app();
    let o = run_worker(&app, &["--simulate", "--until-idle"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("0 runs"));
    started(&app, "etl", json!({}));
    started(&app, "other", json!({}));
    let o = run_worker(
        &app,
        &["--simulate", "--duration", "0s", "--pipeline", "etl", "--until-idle", "--concurrency", "3"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("25 runs: 25 completed"), "{}", text(&o.stdout));
    assert_eq!(runs(&app, "pipeline_uuid=other&status=initial").len(), 25, "another pipeline's runs are not taken");
}

#[test]
fn bad_flags_and_an_absent_server_exit_2_before_anything_is_claimed() {
    let app = spawn_app();
    started(&app, "etl", json!({}));
    for (args, says) in [
        (vec!["--simulate", "--duration", "fast"], "--duration"),
        (vec!["--simulate", "--fail-rate", "2"], "--fail-rate"),
        (vec!["--exec", "true", "--lease", "0s"], "--lease"),
        (vec!["--exec", "true", "--timeout", "soon"], "--timeout"),
        (vec!["--exec", " "], "--exec"),
        (vec!["--exec", "true", "--server", "https://x:1"], "https"),
        (vec!["--exec", "true", "--server", "http://127.0.0.1:1"], "did not answer"),
        (vec!["--exec", "true", "--backfill", "999"], "999"),
    ] {
        let mut c = worker(&app, &[]);
        if args.contains(&"--server") {
            c = Command::new(BIN);
            c.arg("worker").env_remove("BACKFILLD_API_KEY").env_remove("BACKFILLD_TOKEN");
            c.env("XDG_CONFIG_HOME", app.dir.path().join("config"));
        }
        let o = c.args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    }
    assert_eq!(runs(&app, "status=initial").len(), 25, "nothing was claimed");
}

#[test]
fn with_auth_on_the_worker_needs_the_key_and_a_token() {
    let app = spawn_app_with(AuthConfig::new(true, &["k3y".to_string()]));
    let token = app.add_token("worker", None);
    let o = run_worker(&app, &["--simulate", "--until-idle"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--api-key"), "{}", text(&o.stderr));
    let o = run_worker(&app, &["--simulate", "--until-idle", "--api-key", "k3y", "--token", &token]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = worker(&app, &["--simulate", "--until-idle"])
        .env("BACKFILLD_API_KEY", "k3y")
        .env("BACKFILLD_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn a_killed_worker_s_date_is_done_by_another_after_its_lease_and_never_twice_at_once() {
    let app = fast_leases();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T08:00:00Z"}));
    let log = app.dir.path().join("log.txt");
    // Each command logs its start and end; overlapping runs of a date would interleave.
    let cmd = format!("echo \"start $BACKFILL_HR\" >> {0}; sleep 0.3; echo \"end $BACKFILL_HR\" >> {0}", log.display());
    // The first worker's command says its pid once it runs (then the `sleep`, by `exec`).
    let pid_file = app.dir.path().join("orphan.pid");
    let slow = format!(
        "echo \"start $BACKFILL_HR\" >> {0}; echo $$ > {1}; exec sleep 3600.123",
        log.display(),
        pid_file.display()
    );
    let mut first = worker(&app, &["--lease", "1s", "--exec", &slow]).stderr(Stdio::null()).spawn().unwrap();
    wait_running(&app, id, 1);
    // Killed once its command has started (claimed is not enough: on a busy machine the
    // worker may not have started the command yet).
    eventually("the first worker's command to start", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid.ends_with('\n'))
    });
    signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let o = run_worker(&app, &["--lease", "3s", "--until-idle", "--exec", &cmd]);
    assert_eq!(o.status.code(), Some(0), "its own runs all completed: {}", text(&o.stderr));
    let b = app.read_backfill(id);
    assert_eq!(b["run_status_counts"]["completed"], 3, "{b}");
    let got = lines(&log);
    // The killed worker's date started once there, then again, after the lease ran out.
    let hr = got[0].trim_start_matches("start ").to_string();
    let of_date: Vec<String> = got.iter().filter(|l| l.ends_with(&hr)).cloned().collect();
    assert_eq!(of_date, [format!("start {hr}"), format!("start {hr}"), format!("end {hr}")]);
    // The killed worker's command died with it (its keeper killed it), well before the
    // next worker ran the date again.
    eventually("the killed worker's command to have died with it", || !sleeping("3600.123"));
}

/// Whether a `sleep SECONDS` runs (itself, not a shell whose command line names it).
fn sleeping(seconds: &str) -> bool {
    let want = format!("sleep\0{seconds}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).unwrap_or_default() == want.as_bytes())
}

/// Waits until each `sleep SECONDS` runs.
fn wait_sleeping(all: &[&str]) {
    for s in all {
        eventually(&format!("`sleep {s}` to run"), || sleeping(s));
    }
}

/// However a worker dies, its commands die with it, and so do the processes they started,
/// also those that left the command's process group: nothing of the dead worker runs on
/// while another worker, once the leases end, runs the same dates again.
#[test]
fn a_killed_worker_s_commands_die_with_it_and_what_they_started_too() {
    let app = fast_leases();
    started(&app, "etl", json!({"end_datetime": "2023-03-01T04:00:00Z"}));
    let (child, escapee, command) = ("3600.4201", "3600.4202", "3600.4203");
    let cmd = format!("sleep {child} & setsid sleep {escapee} & sleep {command}");
    let mut w = worker(&app, &["--concurrency", "2", "--exec", &cmd]).stderr(Stdio::null()).spawn().unwrap();
    wait_sleeping(&[child, escapee, command]);
    signal(&w, libc::SIGKILL);
    w.wait().unwrap();
    eventually("the dead worker's commands and what they started to end", || {
        ![child, escapee, command].iter().any(|s| sleeping(s))
    });
}

/// A keeper killed on its own takes its commands with it too; the worker, which can start no
/// command any more, stops and leaves its runs to their leases rather than fail them.
#[test]
fn a_killed_keeper_takes_its_commands_along_and_the_worker_stops() {
    let app = fast_leases();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T04:00:00Z"}));
    let (escapee, command) = ("3600.4301", "3600.4302");
    let cmd = format!("setsid sleep {escapee} & sleep {command}");
    let w = worker(&app, &["--concurrency", "2", "--lease", "2s", "--exec", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_sleeping(&[escapee, command]);
    let keeper = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", w.id()))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
        .find(|p| text(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default()).contains("worker-keeper"))
        .expect("the worker's keeper among its children");
    // SAFETY: kill(2) of the keeper, found above among our worker's children.
    unsafe { libc::kill(keeper, libc::SIGKILL) };
    let o = w.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("keeper process has ended"), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("0 failed"), "{}", text(&o.stdout));
    eventually("the commands and what they started to end", || !sleeping(escapee) && !sleeping(command));
    // Not failed: the runs went back with their leases.
    assert!(runs(&app, &format!("backfill_id={id}&status=failed")).is_empty());
}

/// Starts `backfilld demo` on a free port over `db`; returns it and its base URL, read from
/// the first line it prints.
fn start_demo(db: &Path) -> (Child, String) {
    use std::io::BufRead;
    let mut demo = Command::new(BIN)
        .args(["demo", "--bind", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(demo.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    // Read the rest as it comes, so that the demo never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let base = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',').to_string();
    (demo, base)
}

fn get_json(url: &str) -> Value {
    let mut resp = crate::helpers::agent().get(url).call().unwrap();
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn the_demo_seeds_every_state_runs_move_and_a_restart_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (mut demo, base) = start_demo(&db);
    let listing = |base: &str| get_json(&format!("{base}/api/backfills?_limit=100&include_run_count=true"));
    let planned = backfilld::commands::demo::planned() as u64;
    assert!(planned >= 25, "a few dozen backfills");
    let mut seeded = json!(null);
    eventually("the demo seeded", || {
        seeded = listing(&base);
        seeded["metadata"]["count"].as_u64() == Some(planned)
    });
    let backfills = seeded["backfills"].as_array().unwrap();
    let has = |status: Value, paused: bool| backfills.iter().any(|b| b["status"] == status && b["is_paused"] == paused);
    for status in ["completed", "failed", "running", "cancelled"] {
        assert!(has(json!(status), false), "no {status} backfill");
    }
    assert!(has(json!(null), false), "no backfill not started");
    assert!(has(json!("running"), true), "no paused backfill");
    let intervals: Vec<&str> = backfills.iter().map(|b| b["interval_type"].as_str().unwrap()).collect();
    for interval in ["second", "minute", "hour", "day", "week", "month", "year", "custom"] {
        assert!(intervals.contains(&interval), "no {interval} backfill");
    }
    assert!(backfills.iter().any(|b| b["total_run_count"].as_u64() > Some(1000)), "no large backfill");
    // Runs move: once the demo's worker holds runs (the seeding is over by then), it
    // completes some within seconds.
    let completed = |base: &str| {
        get_json(&format!("{base}/api/pipeline_runs?status=completed&_limit=0"))["metadata"]["count"].as_u64().unwrap()
    };
    let worker_holds = |base: &str| {
        let running = get_json(&format!("{base}/api/pipeline_runs?status=running&_limit=100"));
        running["pipeline_runs"].as_array().unwrap().iter().any(|r| r["worker"] == "demo-worker")
    };
    eventually("the demo's worker to claim", || worker_holds(&base));
    let before = completed(&base);
    eventually("runs to complete", || completed(&base) > before + 2);
    signal(&demo, libc::SIGINT);
    assert!(demo.wait().unwrap().success());
    // Again on the same file: the same backfills, nothing seeded twice, and runs go on.
    let (mut again, base) = start_demo(&db);
    eventually("the demo's worker to claim again", || worker_holds(&base));
    let after_restart = completed(&base);
    assert_eq!(listing(&base)["metadata"]["count"], seeded["metadata"]["count"]);
    eventually("runs to complete after the restart", || completed(&base) > after_restart + 2);
    assert_eq!(listing(&base)["metadata"]["count"], seeded["metadata"]["count"]);
    signal(&again, libc::SIGINT);
    assert!(again.wait().unwrap().success());
}

/// The real server on `port` over `db`, once it accepts connections.
fn serve_on(db: &Path, port: u16) -> Child {
    let child = Command::new(BIN)
        .args(["serve", "--workers", "1", "--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the server to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    child
}

#[test]
fn a_report_waits_out_an_outage_of_the_server_and_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outage.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve_on(&db, port);
    let agent = crate::helpers::agent();
    let fields = json!({"backfill": {"name": "one date", "start_datetime": "2023-03-01T00:00:00Z",
        "end_datetime": "2023-03-01T00:00:00Z", "interval_type": "hour", "interval_units": 1}});
    let created =
        crate::helpers::reply(agent.post(format!("{base}/api/pipelines/etl/backfills")).send_json(&fields).unwrap());
    let id = created.body["backfill"]["id"].as_i64().unwrap();
    let start = json!({"backfill": {"status": "initial"}});
    assert_eq!(
        crate::helpers::reply(agent.put(format!("{base}/api/backfills/{id}")).send_json(&start).unwrap()).status,
        200
    );
    let mut w = Command::new(BIN)
        .args(["worker", "--server", &base, "--until-idle", "--lease", "30s", "--exec", "sleep 2"])
        .env("RUST_LOG", "info")
        .env_remove("BACKFILLD_API_KEY")
        .env_remove("BACKFILLD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Stderr::follow(w.stderr.take().unwrap());
    let running = || get_json(&format!("{base}/api/pipeline_runs?status=running&_limit=0"))["metadata"]["count"] == 1;
    eventually("the run to be claimed", running);
    // The server dies while the command runs, and comes back once the command has ended and
    // its report found no server.
    server.kill().unwrap();
    server.wait().unwrap();
    eventually("the worker's report to find no server", || stderr.now().contains("did not answer"));
    let mut server = serve_on(&db, port);
    let out = w.wait_with_output().unwrap();
    let err = stderr.all();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("did not answer").count(), 1, "logged once per outage: {err}");
    assert!(err.contains("the server answers again"), "{err}");
    let runs = get_json(&format!("{base}/api/pipeline_runs?backfill_id={id}"));
    assert_eq!(runs["pipeline_runs"][0]["status"], "completed", "{runs}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_polling_worker_picks_up_a_backfill_started_later() {
    let app = spawn_app();
    let mut w =
        worker(&app, &["--simulate", "--duration", "0s"]).stderr(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    // Idle a while first: after five empty claims its waits between them have grown (to
    // 1.6 s, then 2 s).
    eventually("five empty claims", || app.metric("backfilld_claims_total").is_some_and(|n| n >= 5.0));
    let id = started(&app, "etl", json!({}));
    eventually("the backfill done", || app.read_backfill(id)["status"] == "completed");
    assert_eq!(stop(&mut w).code(), Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut w.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("25 runs: 25 completed"), "{out}");
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({}));
    let marker = "sleep 23.1406";
    let mut w = worker(&app, &["--grace", "60s", "--exec", marker])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Stderr::follow(w.stderr.take().unwrap());
    wait_running(&app, id, 1);
    // Claimed is not started: on a busy machine the command may come a moment later.
    eventually("the command to start", || process_with(marker));
    signal(&w, libc::SIGTERM);
    eventually("the worker to take the first signal", || stderr.now().contains("stopping: no more claims"));
    // It waits for its command (grace 60 s): the worker, the command and its run go on.
    assert!(w.try_wait().unwrap().is_none(), "the first signal waits for the command: {}", stderr.now());
    assert!(process_with(marker), "the command still runs");
    assert_eq!(runs(&app, &format!("backfill_id={id}&status=running")).len(), 1);
    let t = Instant::now();
    assert_eq!(stop(&mut w).code(), Some(1));
    // Well before the 60 s grace: the second signal did not wait for the command.
    assert!(t.elapsed() < Duration::from_secs(20), "the second signal stops at once: {:?}", t.elapsed());
    assert!(!process_with(marker));
    assert!(stderr.all().contains("stopping at once"));
}

#[test]
fn on_a_terminal_the_worker_draws_a_bar_per_backfill() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({}));
    // util-linux's `script` gives the worker a terminal (it is in every Debian install).
    let cmd =
        format!("{BIN} worker --server {} --until-idle --simulate --duration 10ms..40ms --concurrency 2", app.base);
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = text(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains(&format!("backfill {id}")), "{screen}");
    assert!(screen.contains("25/25"), "{screen}");
    assert!(screen.contains("completed, 0 failed"), "{screen}");
    assert!(!screen.contains("run 1 ("), "no line per run on a terminal: {screen}");
    // Its rates are rounded for people (`12.3/s`): at most three significant figures.
    let rates: Vec<&str> = screen
        .split("/s")
        .filter_map(|before| before.rsplit(|c: char| !c.is_ascii_digit() && c != '.' && c != ',').next())
        .filter(|number| number.chars().any(|c| c.is_ascii_digit()))
        .collect();
    assert!(!rates.is_empty(), "no rate shown: {screen}");
    for number in rates {
        // Zeros that only place the point are not figures: 1,510 has three.
        let figures = number.replace([',', '.'], "").trim_start_matches('0').trim_end_matches('0').len();
        assert!(figures <= 3, "{number}/s in {screen}");
    }
}

/// A run's log as the server answers it: the bytes, and the response's headers we look at.
fn log_of(app: &TestApp, run_id: i64) -> (Vec<u8>, String) {
    let mut resp = crate::helpers::agent().get(app.url(&format!("/api/pipeline_runs/{run_id}/logs"))).call().unwrap();
    assert_eq!(resp.status(), 200);
    let received = resp.headers().get("backfilld-log-received").unwrap().to_str().unwrap().to_string();
    (resp.body_mut().with_config().limit(8 << 20).read_to_vec().unwrap(), received)
}

#[test]
fn each_command_s_output_is_its_run_s_log_and_shows_on_stderr_prefixed_unless_quiet() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T04:00:00Z"}));
    // Standard output and error as one stream; bytes that are not UTF-8; no final newline.
    let cmd = "echo \"loading $BACKFILL_DS $BACKFILL_HR\"; echo oops >&2; printf 'no newline \\377'";
    let o = run_worker(&app, &["--until-idle", "--exec", cmd]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("etl 2023-03-01 | loading 2023-03-01 00\n"), "{err}");
    assert!(err.contains("etl 2023-03-01 04:00 | loading 2023-03-01 04\n"), "{err}");
    assert!(err.contains("etl 2023-03-01 | oops\n") && err.contains("etl 2023-03-01 | no newline \u{fffd}\n"), "{err}");
    for (run, hour) in app.run_ids(id).into_iter().zip(["00", "04"]) {
        let (log, received) = log_of(&app, run);
        let want = format!("loading 2023-03-01 {hour}\noops\nno newline \u{ff}");
        let mut want = want.into_bytes();
        // The byte 0xFF as the command wrote it, not its UTF-8 spelling.
        want.truncate(want.len() - 2);
        want.push(0xff);
        assert_eq!(log, want, "{}", text(&log));
        assert_eq!(received, want.len().to_string());
    }
    // --quiet: the lines are not shown, and still sent.
    let quiet = started(&app, "quiet", json!({"end_datetime": "2023-03-01T00:00:00Z"}));
    let o = run_worker(&app, &["--until-idle", "--quiet", "--pipeline", "quiet", "--exec", "echo hush"]);
    assert!(o.status.success() && !text(&o.stderr).contains("hush"), "{}", text(&o.stderr));
    assert_eq!(log_of(&app, app.run_ids(quiet)[0]).0, b"hush\n");
}

#[test]
fn a_command_printing_3_mib_keeps_its_head_and_tail_around_a_marker() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T00:00:00Z"}));
    // 3,388,895 bytes: the numbers 1 to 500,000, a line each.
    let o = run_worker(&app, &["--until-idle", "--quiet", "--exec", "seq 1 500000"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (log, received) = log_of(&app, app.run_ids(id)[0]);
    assert_eq!(received, "3388895");
    let log = text(&log);
    assert!(log.starts_with("1\n2\n3\n"), "{}", &log[..20]);
    assert!(log.ends_with("499999\n500000\n"), "{}", &log[log.len() - 20..]);
    let marker = log.lines().find(|l| l.contains("bytes of output cut here")).expect("a marker line");
    let cut: u64 = marker.trim_start_matches("[backfilld: ").split(' ').next().unwrap().parse().unwrap();
    // What is kept and what was cut add up to the output; at least 1 MiB is kept.
    let kept = log.len() as u64 - marker.len() as u64 - 2;
    assert_eq!(kept + cut, 3388895, "{marker}");
    assert!(kept >= 1 << 20, "{kept}");
}

#[test]
fn a_retried_date_keeps_each_attempt_s_log() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T00:00:00Z"}));
    let cmd = "echo \"attempt $BACKFILL_ATTEMPT\"; [ \"$BACKFILL_ATTEMPT\" = 2 ]";
    let o = run_worker(&app, &["--until-idle", "--quiet", "--exec", cmd]);
    assert_eq!(o.status.code(), Some(1), "the first attempt failed: {}", text(&o.stderr));
    let first = app.run_ids(id)[0];
    assert_eq!(app.send("POST", &format!("/api/pipeline_runs/{first}/retry"), &json!({})).status, 200);
    let o = run_worker(&app, &["--until-idle", "--quiet", "--exec", cmd]);
    assert!(o.status.success(), "the second attempt completed: {}", text(&o.stderr));
    let ids = app.run_ids(id);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(log_of(&app, ids[0]).0, b"attempt 1\n");
    assert_eq!(log_of(&app, ids[1]).0, b"attempt 2\n");
}

fn run_logs(app: &TestApp, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "logs", "--server", &app.base]).args(args).env_remove("BACKFILLD_API_KEY");
    c.env_remove("BACKFILLD_TOKEN").env_remove("BACKFILLD_SERVER").stdin(Stdio::null());
    // A login's credentials are looked for in the test's own folder, never the real home's.
    c.env("XDG_CONFIG_HOME", app.dir.path().join("config"));
    c
}

#[test]
fn run_logs_prints_a_log_and_follows_one_until_its_run_has_finished() {
    let app = spawn_app();
    let id = started(&app, "etl", json!({"end_datetime": "2023-03-01T00:00:00Z"}));
    // The command waits for a file the test makes once the follower has printed the first line.
    let go = app.dir.path().join("go");
    let cmd = format!("echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second", go.display());
    let mut w = worker(&app, &["--until-idle", "--quiet", "--exec", &cmd]).stderr(Stdio::null()).spawn().unwrap();
    eventually("the run to be claimed", || {
        app.run_ids(id).len() == 1 && log_of(&app, app.run_ids(id)[0]).0 == b"first\n"
    });
    let run = app.run_ids(id)[0].to_string();
    let mut follower = run_logs(&app, &[&run, "--follow"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = std::io::BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "first\n");
    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert_eq!(follower.wait().unwrap().code(), Some(0), "it exits once the run has finished");
    assert!(w.wait().unwrap().success());
    // Without --follow: the log as it is. An unknown run: 1; no server: 2.
    let o = run_logs(&app, &[&run]).output().unwrap();
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(0), "first\nsecond\n".to_string()));
    let o = run_logs(&app, &["999"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no pipeline run has id 999"), "{}", text(&o.stderr));
    let mut down = Command::new(BIN);
    down.args(["run", "logs", "1", "--server", "http://127.0.0.1:9"])
        .env("XDG_CONFIG_HOME", app.dir.path().join("config"));
    let o = down.output().unwrap();
    assert!(text(&o.stderr).contains("did not answer"), "{}", text(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}
