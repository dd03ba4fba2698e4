//! The data commands through the real binary: `backup` and `export` of a file a real server
//! serves (and writes), `import` of what they give, and their refusals.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::cli::{run, serve, serve_with};
use crate::helpers::{agent, backfill, reply, seed_fields, spawn_app, TestApp, BIN};
use crate::wait::eventually;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a refusal: exit status 1 and one line on standard error containing `want`.
fn assert_refused(out: &Output, want: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every page of `path` (a listing of `key`), `limit` a page, following `metadata.cursor`.
fn pages(base: &str, path: &str, key: &str, limit: u32) -> Vec<Value> {
    let client = agent();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut url = format!("{base}{path}{sep}_limit={limit}");
    let mut pages = vec![];
    loop {
        let page = reply(client.get(&url).call().unwrap());
        assert_eq!(page.status, 200, "{:?}", page.body);
        assert!(page.body[key].is_array(), "{:?}", page.body);
        let cursor = page.body["metadata"]["cursor"].as_str().map(str::to_string);
        pages.push(page.body);
        match cursor {
            Some(c) => url = format!("{base}{path}{sep}_limit={limit}&_cursor={c}"),
            None => return pages,
        }
    }
}

/// Every record of a listing, from its pages.
fn records(base: &str, path: &str, key: &str) -> Vec<Value> {
    pages(base, path, key, 1000).iter().flat_map(|p| p[key].as_array().unwrap().clone()).collect()
}

/// What the API lists of a file: the backfills with their counts, and the runs, each in
/// pages of 3 (so that paging, cursors included, is compared too) and whole.
fn listings(base: &str) -> Vec<Vec<Value>> {
    vec![
        pages(base, "/api/backfills?include_run_count=true", "backfills", 3),
        pages(base, "/api/backfills?include_run_count=true", "backfills", 1000),
        pages(base, "/api/pipeline_runs", "pipeline_runs", 3),
        pages(base, "/api/pipeline_runs", "pipeline_runs", 1000),
    ]
}

/// A file with something of everything: a started backfill whose runs were claimed,
/// reported, retried and left under leases; a paused draft with variables and settings; a
/// backfill without dates; and the runs of a deleted backfill, which keep no backfill.
fn varied(app: &TestApp) {
    let id = app.create_backfill("p", seed_fields("started"));
    assert_eq!(app.put_backfill(id, json!({"status": "initial"})).status, 200);
    app.report_run(app.run_ids(id)[0], "running");
    let claimed = app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w", "limit": 3}));
    let held: Vec<i64> =
        claimed.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let done = json!({"pipeline_run": {"status": "completed", "worker": "w", "metrics": {"rows": 3}}});
    assert_eq!(app.send("PUT", &format!("/api/pipeline_runs/{}", held[0]), &done).status, 200);
    let failed = json!({"pipeline_run": {"status": "failed", "worker": "w", "metrics": {"error": "boom"}}});
    assert_eq!(app.send("PUT", &format!("/api/pipeline_runs/{}", held[1]), &failed).status, 200);
    assert_eq!(app.send("POST", &format!("/api/pipeline_runs/{}/retry", held[0]), &json!({})).status, 200);

    let mut fields = seed_fields("draft");
    fields["variables"] = json!({"region": "eu", "n": 2.5});
    fields["settings"] = json!({"skip": true, "pipeline_run_limit": "2"});
    let draft = app.create_backfill("q", fields);
    assert_eq!(app.put_backfill(draft, json!({"is_paused": true})).status, 200);
    app.create_backfill("q", json!({"name": "no dates yet"}));

    let gone = app.create_backfill("r", seed_fields("deleted"));
    assert_eq!(app.put_backfill(gone, json!({"status": "initial"})).status, 200);
    assert_eq!(app.request("DELETE", &format!("/api/backfills/{gone}")).status, 200);
}

#[test]
fn an_export_imports_into_a_new_file_that_lists_the_same() {
    // Arrange: a served file with something of everything.
    let source = spawn_app();
    varied(&source);
    let before = listings(&source.base);
    assert!(before[3][0]["pipeline_runs"].as_array().unwrap().iter().any(|r| r["backfill_id"].is_null()));

    // Act: export it while it is served, to a file, and import that into a new file.
    let file = source.dir.path().join("export.json");
    let out = run(&["export", file.to_str().unwrap()], &source.db_path);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "exported 3 backfill(s) and 51 pipeline run(s) from {} to {}",
            source.db_path.display(),
            file.display()
        )
    );
    let target = spawn_app();
    let out = run(&["import", file.to_str().unwrap()], &target.db_path);
    assert!(out.status.success(), "{}", stderr(&out));

    // Assert: every page of both listings is the same, counts, cursors and runs included.
    assert_eq!(listings(&target.base), before);
}

#[test]
fn export_writes_standard_output_and_its_summary_to_standard_error() {
    let app = spawn_app();
    varied(&app);
    let to_file = app.dir.path().join("a.json");
    assert!(run(&["export", to_file.to_str().unwrap()], &app.db_path).status.success());
    for args in [&["export"][..], &["export", "-"]] {
        let out = run(args, &app.db_path);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, std::fs::read(&to_file).unwrap(), "{args:?}");
        assert_eq!(
            stderr(&out).trim(),
            format!("exported 3 backfill(s) and 51 pipeline run(s) from {}", app.db_path.display())
        );
    }
    // Piped straight into an import of a new file.
    let target = app.dir.path().join("piped.db");
    let mut export = Command::new(BIN)
        .args(["export", "--db"])
        .arg(&app.db_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let piped = export.stdout.take().unwrap();
    let import = Command::new(BIN).args(["import", "-", "--db"]).arg(&target).stdin(piped).output().unwrap();
    assert!(export.wait().unwrap().success());
    assert!(import.status.success(), "{}", stderr(&import));
    assert_eq!(
        stdout(&import).trim(),
        format!("imported 3 backfill(s) and 51 pipeline run(s) into {}", target.display())
    );
}

#[test]
fn a_listing_answer_imports_as_it_comes() {
    let source = spawn_app();
    varied(&source);
    let backfills = source.get("/api/backfills?include_run_count=true&_limit=1000").body;
    let runs = source.get("/api/pipeline_runs?_limit=1000").body;
    assert!(backfills["metadata"].is_object() && runs["metadata"].is_object());

    let target = spawn_app();
    target.import(&backfills);
    target.import(&runs);
    // The same, but for the token of a schedule made by the first import, whose runs came
    // with the second (an import names only the schedules it made itself).
    let tokenless = |base: &str| {
        let mut all = listings(base);
        for page in all.iter_mut().flatten() {
            for r in page["pipeline_runs"].as_array_mut().into_iter().flatten() {
                r["pipeline_schedule_token"] = Value::Null;
            }
        }
        all
    };
    assert_eq!(tokenless(&target.base), tokenless(&source.base));
    assert_eq!(target.get("/api/backfills?include_run_count=true").body, backfills);
}

#[test]
fn a_failed_backfill_exported_before_the_halt_flag_stays_stopped_once_imported() {
    let app = spawn_app();
    // `is_paused` marks a backfilld export (Mage's records have none).
    let record = |id: i64, halted: Option<bool>, backfilld: bool| {
        let mut b = backfill(id, "p", "2023-01-01 00:00:00+00:00");
        b["status"] = json!("failed");
        b["started_at"] = json!("2023-01-01 00:00:00+00:00");
        if let Some(h) = halted {
            b["is_halted"] = json!(h);
        }
        if backfilld {
            b["is_paused"] = json!(false);
        }
        b
    };
    let run = |id: i64, backfill_id: i64, status: &str| {
        json!({"id": id, "pipeline_uuid": "p", "backfill_id": backfill_id, "status": status,
               "execution_date": format!("2023-03-01 0{id}:00:00+00:00"), "created_at": "2023-01-01 00:00:00+00:00"})
    };
    // An export of an older backfilld (no is_halted): its failed backfill stopped its dates,
    // so it still does; one that says is_halted false runs on, and so does Mage's record (Mage
    // never stopped a failed backfill's dates).
    app.import(&json!({
        "backfills": [record(1, None, true), record(2, Some(false), true), record(3, None, false)],
        "pipeline_runs": [run(1, 1, "failed"), run(2, 1, "initial"), run(3, 2, "failed"), run(4, 2, "initial"),
            run(5, 3, "failed"), run(6, 3, "initial")],
    }));
    let halted: Vec<Value> = (1..=3).map(|id| app.read_backfill(id)["is_halted"].clone()).collect();
    assert_eq!(halted, [true, false, false]);
    let claimed = app.send("POST", "/api/pipeline_runs/claim", &json!({"worker": "w", "limit": 10}));
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let mut ids: Vec<i64> =
        claimed.body["pipeline_runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [4, 6], "only the backfills that are not halted hand out their waiting dates");
}

#[test]
fn export_and_backup_refuse_a_missing_data_file_and_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let out_path = dir.path().join("out");
    for command in ["export", "backup"] {
        let out = run(&[command, out_path.to_str().unwrap()], &missing);
        assert_refused(&out, "no such data file");
        assert!(!missing.exists(), "{command} created the data file");
        assert!(!out_path.exists(), "{command} wrote {}", out_path.display());
    }

    let db = dir.path().join("b.db");
    let imported = crate::helpers::import_file(
        &db,
        &dir.path().join("in.json"),
        &json!({"backfills": [crate::helpers::backfill(1, "p", "2023-01-01")]}),
    );
    assert!(imported.status.success());
    std::fs::write(&out_path, "precious").unwrap();
    for command in ["export", "backup"] {
        let out = run(&[command, out_path.to_str().unwrap()], &db);
        assert_refused(&out, "exists already");
        assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "precious");
    }
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
}

#[test]
fn a_backup_opens_as_a_data_file_with_the_same_listing() {
    let app = spawn_app();
    varied(&app);
    let copy = app.dir.path().join("copies/copy.db");
    std::fs::create_dir(app.dir.path().join("copies")).unwrap();
    let out = run(&["backup", copy.to_str().unwrap()], &app.db_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(
        said.trim().starts_with(&format!("backed up {} to {}: ", app.db_path.display(), copy.display()))
            && said.contains(&format!("({size} bytes), 3 backfill(s), 51 pipeline run(s)")),
        "{said}"
    );
    let served = serve(&copy, &[]);
    assert_eq!(listings(&served.base), listings(&app.base));
}

/// Creates and starts backfills of 25 runs through the API, and completes one run of each,
/// until `stop`; counts each backfill started in `done`.
fn write_until(base: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> u64 {
    let client = agent();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let created = reply(
            client
                .post(format!("{base}/api/pipelines/load/backfills"))
                .send_json(json!({"backfill": seed_fields(&format!("load {k}"))}))
                .unwrap(),
        );
        assert_eq!(created.status, 200, "{:?}", created.body);
        let id = created.body["backfill"]["id"].as_i64().unwrap();
        let started = reply(
            client
                .put(format!("{base}/api/backfills/{id}"))
                .send_json(json!({"backfill": {"status": "initial"}}))
                .unwrap(),
        );
        assert_eq!(started.status, 200, "{:?}", started.body);
        let runs = reply(client.get(format!("{base}/api/pipeline_runs?backfill_id={id}&_limit=1")).call().unwrap());
        let run = runs.body["pipeline_runs"][0]["id"].as_i64().unwrap();
        let report = json!({"pipeline_run": {"status": "completed"}});
        assert_eq!(reply(client.put(format!("{base}/api/pipeline_runs/{run}")).send_json(report).unwrap()).status, 200);
        done.fetch_add(1, Ordering::Relaxed);
        k += 1;
    }
    k
}

/// Asserts that a served file agrees with itself: every backfill's run counts are those of
/// its runs (the newest of each date), and every backfill is started with a run for each of
/// its dates or not started with none. Returns its backfills by id.
fn assert_consistent(base: &str) -> BTreeMap<i64, Value> {
    let backfills = records(base, "/api/backfills?include_run_count=true", "backfills");
    let runs = records(base, "/api/pipeline_runs", "pipeline_runs");
    let mut by_backfill: BTreeMap<i64, BTreeMap<String, (i64, String)>> = BTreeMap::new();
    for r in &runs {
        let Some(b) = r["backfill_id"].as_i64() else { continue };
        let date = r["execution_date"].as_str().unwrap().to_string();
        let entry = by_backfill.entry(b).or_default().entry(date).or_insert((0, String::new()));
        let id = r["id"].as_i64().unwrap();
        if id > entry.0 {
            *entry = (id, r["status"].as_str().unwrap().to_string());
        }
    }
    let mut all = BTreeMap::new();
    for b in backfills {
        let id = b["id"].as_i64().unwrap();
        let dates = by_backfill.remove(&id).unwrap_or_default();
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for (_, status) in dates.values() {
            *counted.entry(status.clone()).or_default() += 1;
        }
        let shown: BTreeMap<String, u64> =
            b["run_status_counts"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
        assert_eq!(shown, counted, "backfill {id}'s counts are not its runs': {b}");
        let all_dates = b["total_run_count"].as_u64().unwrap() as usize;
        match (b["started_at"].is_null(), dates.len()) {
            (true, 0) => {}
            (false, n) if n == all_dates => {}
            (unstarted, n) => panic!("backfill {id}: a partial start ({n} dates, started_at null: {unstarted}): {b}"),
        }
        all.insert(id, b);
    }
    assert!(by_backfill.is_empty(), "runs of backfills not listed: {:?}", by_backfill.keys());
    all
}

/// How far `write_until` had got with backfill `b`: 0 created, 1 started, 2 a run completed.
fn step(b: &Value) -> u8 {
    match (b["started_at"].is_null(), b["run_status_counts"].get("completed").is_some()) {
        (true, _) => 0,
        (false, false) => 1,
        (false, true) => 2,
    }
}

#[test]
fn a_backup_and_an_export_taken_under_writes_each_hold_one_consistent_state() {
    let _turn = crate::helpers::busy_turn();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let server = serve_with(&db, &["--workers", "2"], &[]);
    // Some weight first, so that a copy takes a while: one backfill of 20,000 runs.
    let client = agent();
    let big = reply(
        client
            .post(format!("{}/api/pipelines/big/backfills", server.base))
            .send_json(json!({"backfill": {"name": "big", "start_datetime": "2023-01-01", "end_datetime": "2023-01-14T21:19:00Z",
                "interval_type": "minute", "interval_units": 1}}))
            .unwrap(),
    );
    let big_id = big.body["backfill"]["id"].as_i64().unwrap();
    let started = client
        .put(format!("{}/api/backfills/{big_id}", server.base))
        .send_json(json!({"backfill": {"status": "initial"}}))
        .unwrap();
    assert_eq!(started.status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (base, stop, done) = (server.base.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || write_until(base, stop, done))
    };
    let wait_for = |n: u64| eventually(&format!("{n} backfills written"), || done.load(Ordering::Relaxed) >= n);

    // Mid-way: two backups and an export, each while the writes go on.
    let mut copies = vec![];
    for k in 0..2 {
        wait_for(5 + 5 * k);
        let copy = dir.path().join(format!("copy{k}.db"));
        let during = done.load(Ordering::Relaxed);
        let out = run(&["backup", copy.to_str().unwrap()], &db);
        assert!(out.status.success(), "{}", stderr(&out));
        // The server went on writing meanwhile.
        assert!(done.load(Ordering::Relaxed) > during, "no write went through during the backup");
        copies.push((copy, during, stdout(&out)));
    }
    let exported = dir.path().join("export.json");
    let out = run(&["export", exported.to_str().unwrap()], &db);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(done.load(Ordering::Relaxed) + 3);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let source = assert_consistent(&server.base);
    assert_eq!(source.len() as u64, written + 1);

    // Each copy is a data file that serves a state the source went through.
    let imported = dir.path().join("imported.db");
    let out = run(&["import", exported.to_str().unwrap()], &imported);
    assert!(out.status.success(), "{}", stderr(&out));
    let states = copies.iter().map(|(c, during, said)| (c.clone(), Some((*during, said.clone()))));
    for (file, backup) in states.chain([(imported, None)]) {
        let served = serve(&file, &[]);
        let copy = assert_consistent(&served.base);
        if let Some((during, said)) = backup {
            // At least what was written before it started; what its line says.
            assert!(copy.len() as u64 > during, "{} backfills, {during} written before", copy.len());
            let runs: u64 = copy
                .values()
                .filter(|b| !b["started_at"].is_null())
                .map(|b| b["total_run_count"].as_u64().unwrap())
                .sum();
            assert!(said.contains(&format!(" {} backfill(s), {runs} pipeline run(s)", copy.len())), "{said}: {runs}");
        }
        // The backfills written since are the newest ones; those it has are the source's,
        // as they were then: each as it is now, or at an earlier step of the writer's.
        assert_eq!(
            copy.keys().copied().collect::<Vec<_>>(),
            source.keys().copied().take(copy.len()).collect::<Vec<_>>()
        );
        for (id, b) in &copy {
            let now = &source[id];
            assert!(b == now || step(b) < step(now), "{b}\n{now}");
        }
    }
    drop(server);
}
