//! `backfilld backfill ...`: create (with `--dry-run` from the API's preview), list, show,
//! pause, resume, cancel, delete and run again backfills, through the API alone. What each
//! prints is made by a pure function of the API's records (tested below); `--json` prints
//! the records themselves.

use serde_json::{json, Map, Value};

use super::client::{self, cell, connect, finish, table, when, Failure, Outcome};
use crate::cli::{BackfillCommand, ClientArgs, CreateArgs, IdArgs};

/// How many of the first and of the last dates a dry run prints.
const DRY_RUN_DATES: usize = 20;
/// How many failed dates `show` lists.
const SHOWN_FAILURES: usize = 20;
/// The run filter for dates whose newest run failed (Mage's "Last run failed").
const FAILED_FILTER: &str = "last_run_failed";

/// Runs a `backfill` subcommand; its exit status (`client::Failure`).
pub fn backfill(cmd: BackfillCommand) -> u8 {
    let (name, outcome) = match cmd {
        BackfillCommand::Create(args) => ("backfill create", create(&args)),
        BackfillCommand::List { client, pipeline, status, limit } => {
            ("backfill list", list(&client, pipeline.as_deref(), status.as_deref(), limit as usize))
        }
        BackfillCommand::Show { client, id } => ("backfill show", show(&client, id)),
        BackfillCommand::Pause(t) => ("backfill pause", set_paused(&t, true)),
        BackfillCommand::Resume(t) => ("backfill resume", set_paused(&t, false)),
        BackfillCommand::Cancel(t) => ("backfill cancel", cancel(&t)),
        BackfillCommand::Delete { target, yes } => ("backfill delete", delete(&target, yes)),
        BackfillCommand::Rerun { target, reprocess } => ("backfill rerun", rerun(&target, reprocess.as_deref())),
    };
    finish(name, outcome)
}

/// The units `--every` takes, with the API's interval type of each.
const UNITS: [(&str, &str); 7] =
    [("s", "second"), ("m", "minute"), ("h", "hour"), ("d", "day"), ("w", "week"), ("mo", "month"), ("y", "year")];

/// `--every`: a number and a unit (`4h`, `1d`, `15m`, `1w`, `1mo`, `1y`, `30s`) as the API's
/// `interval_type` and `interval_units`.
pub fn parse_every(s: &str) -> Result<(&'static str, i64), String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("--every {s}: expected a number and a unit, e.g. 30s, 15m, 4h, 1d, 1w, 1mo or 1y");
    let units = number.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
    let (_, kind) = UNITS.iter().find(|(u, _)| *u == unit.trim()).ok_or_else(bad)?;
    Ok((kind, units))
}

/// The interval of a backfill record in `--every`'s words (`4h`), or `-`.
pub fn every(b: &Value) -> String {
    let (Some(kind), Some(units)) = (b["interval_type"].as_str(), b["interval_units"].as_i64()) else {
        return "-".into();
    };
    match UNITS.iter().find(|(_, k)| *k == kind) {
        Some((unit, _)) => format!("{units}{unit}"),
        None => format!("{units} {kind}"),
    }
}

/// The create's body: the backfill's fields and settings from the flags.
pub fn create_fields(a: &CreateArgs) -> Result<Value, String> {
    let (interval_type, interval_units) = parse_every(&a.every)?;
    if a.pipeline.trim().is_empty() {
        return Err("--pipeline must not be blank".into());
    }
    let name = match &a.name {
        Some(n) if n.trim().is_empty() => return Err("--name must not be blank".into()),
        Some(n) => n.clone(),
        None => format!("{} {}..{} every {}", a.pipeline, a.from, a.to, a.every.trim()),
    };
    let mut fields = json!({
        "name": name,
        "start_datetime": a.from,
        "end_datetime": a.to,
        "interval_type": interval_type,
        "interval_units": interval_units,
    });
    if let Some(v) = &a.variables {
        match serde_json::from_str::<Value>(v) {
            Ok(obj @ Value::Object(_)) => fields["variables"] = obj,
            _ => return Err(format!("--variables {v}: expected a JSON object, e.g. '{{\"region\": \"eu\"}}'")),
        }
    }
    let mut settings = Map::new();
    if let Some(n) = a.max_active_runs {
        settings.insert("pipeline_run_limit".into(), json!(n));
    }
    if a.run_backwards {
        settings.insert("run_backwards".into(), json!(true));
    }
    if a.stop_on_failure {
        settings.insert("stop_on_failure".into(), json!(true));
    }
    if !settings.is_empty() {
        fields["settings"] = Value::Object(settings);
    }
    Ok(fields)
}

/// What a dry run prints from the API's preview: the run count, then every date, or the first
/// and last `DRY_RUN_DATES` with how many lie between.
pub fn format_preview(pipeline: &str, preview: &Value) -> String {
    let total = preview["total_run_count"].as_u64().unwrap_or(0);
    let dates = |key: &str| -> Vec<String> {
        preview[key].as_array().map(|a| a.iter().map(|d| cell(&d["execution_date"])).collect()).unwrap_or_default()
    };
    let (first, last) = (dates("pipeline_run_dates"), dates("last_pipeline_run_dates"));
    let mut out = format!("{total} run{} of pipeline {pipeline} (dry run: nothing was created)\n", plural(total));
    for d in &first {
        out.push_str(&format!("  {d}\n"));
    }
    let between = total.saturating_sub((first.len() + last.len()) as u64);
    if between > 0 {
        out.push_str(&format!("  ... {between} more ...\n"));
    }
    for d in &last {
        out.push_str(&format!("  {d}\n"));
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn create(a: &CreateArgs) -> Outcome {
    let fields = create_fields(a).map_err(Failure::Usage)?;
    let api = connect(&a.client)?;
    // The preview refuses what the create or the start would, so a refused backfill is
    // refused before anything is written.
    let preview = api.preview_backfill(&a.pipeline, &fields, DRY_RUN_DATES)?;
    if a.dry_run {
        return Ok(if a.client.json { client::json(&preview) } else { format_preview(&a.pipeline, &preview) });
    }
    let created = api.create_backfill(&a.pipeline, &fields)?;
    let id = created["id"].as_i64().unwrap_or(0);
    let backfill = if a.no_start {
        created
    } else {
        api.update_backfill(id, &json!({"status": "initial"})).map_err(|e| {
            let f = Failure::from(e);
            Failure::Refused(format!("backfill {id} was created but not started: {}", f.message()))
        })?
    };
    if a.client.json {
        return Ok(client::json(&backfill));
    }
    let total = preview["total_run_count"].as_u64().unwrap_or(0);
    let started = if a.no_start { "not started (start it with `backfilld backfill rerun`)" } else { "started" };
    Ok(format!(
        "created backfill {id} ({total} run{}), {started}\nwatch it: backfilld backfill show {id} --server {base}\n\
         or in a browser: {base}/#/backfills/{id}",
        plural(total),
        base = api.base()
    ))
}

/// A backfill's runs in a few words: `20/25 done, 2 failed, 1 running`.
pub fn progress(b: &Value) -> String {
    let Some(total) = b["total_run_count"].as_u64() else { return "-".into() };
    let counts = &b["run_status_counts"];
    let n = |s: &str| counts[s].as_u64().unwrap_or(0);
    let mut out = format!("{}/{total} done", n("completed"));
    for s in ["failed", "running", "cancelled"] {
        if n(s) > 0 {
            out.push_str(&format!(", {} {s}", n(s)));
        }
    }
    out
}

/// A backfill's status as people read it: `new` before its start, `, halted` when it hands
/// out nothing more after a failure (`settings.stop_on_failure`), `, paused` when paused.
pub fn status(b: &Value) -> String {
    let mut s = b["status"].as_str().unwrap_or("new").to_string();
    for (key, word) in [("is_halted", "halted"), ("is_paused", "paused")] {
        if b[key].as_bool() == Some(true) {
            s.push_str(", ");
            s.push_str(word);
        }
    }
    s
}

/// `backfill list`'s table.
pub fn format_list(backfills: &[Value]) -> String {
    let rows: Vec<Vec<String>> = backfills
        .iter()
        .map(|b| {
            vec![
                cell(&b["id"]),
                cell(&b["name"]),
                cell(&b["pipeline_uuid"]),
                status(b),
                format!("{} .. {}", when(&b["start_datetime"]), when(&b["end_datetime"])),
                every(b),
                progress(b),
            ]
        })
        .collect();
    table(&["ID", "NAME", "PIPELINE", "STATUS", "DATES", "EVERY", "RUNS"], &rows)
}

fn list(args: &ClientArgs, pipeline: Option<&str>, status_filter: Option<&str>, limit: usize) -> Outcome {
    let api = connect(args)?;
    // The server's listing filters by pipeline, not by status: pages are read by cursor and
    // filtered here until `limit` backfills match.
    let page_size = if status_filter.is_some() { 1000 } else { limit.min(1000) };
    let mut shown: Vec<Value> = vec![];
    let mut cursor: Option<String> = None;
    // Whether more backfills match than are shown, and how many there are when known.
    let (more, total) = loop {
        let (page, next, count) = api.backfill_page(pipeline, page_size, cursor.as_deref())?;
        let mut matching =
            page.into_iter().filter(|b| status_filter.is_none_or(|f| f == b["status"].as_str().unwrap_or("new")));
        shown.extend(matching.by_ref().take(limit - shown.len()));
        let left_on_page = matching.next().is_some();
        let total = if status_filter.is_none() { Some(count) } else { None };
        match next {
            _ if left_on_page => break (true, total),
            Some(_) if shown.len() == limit => break (true, total),
            Some(c) => cursor = Some(c),
            None => break (false, total),
        }
    };
    if args.json {
        return Ok(client::json(&Value::Array(shown)));
    }
    if shown.is_empty() {
        return Ok("no backfills".into());
    }
    let mut out = format_list(&shown);
    if more {
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        out.push_str(&format!("(the newest {}{of}; --limit N for more)\n", shown.len()));
    }
    Ok(out)
}

/// `backfill show`'s text: the backfill's fields, its runs counted by status, a note when a
/// failed (or halted) backfill still has dates waiting or running, and its failed dates
/// (`failed`, the runs that are the newest of their date and failed, newest first;
/// `failed_total` of them in all).
pub fn format_show(b: &Value, failed: &[Value], failed_total: u64) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
    line(&mut out, "backfill", format!("{} {}", cell(&b["id"]), cell(&b["name"])));
    line(&mut out, "pipeline", cell(&b["pipeline_uuid"]));
    line(&mut out, "status", status(b));
    line(
        &mut out,
        "dates",
        format!("{} .. {}, every {}", when(&b["start_datetime"]), when(&b["end_datetime"]), every(b)),
    );
    let counts = &b["run_status_counts"];
    let n = |s: &str| counts[s].as_u64().unwrap_or(0);
    if let Some(total) = b["total_run_count"].as_u64() {
        let parts: Vec<String> = ["completed", "failed", "running", "initial", "cancelled"]
            .iter()
            .filter(|s| n(s) > 0)
            .map(|s| format!("{} {}", n(s), if *s == "initial" { "waiting" } else { s }))
            .collect();
        let parts = if parts.is_empty() { "none created yet".to_string() } else { parts.join(", ") };
        line(&mut out, "runs", format!("{total}: {parts}"));
    }
    for key in ["created_at", "started_at", "completed_at", "failed_at"] {
        if !b[key].is_null() {
            line(&mut out, key.trim_end_matches("_at"), when(&b[key]));
        }
    }
    for key in ["variables", "settings", "block_uuid"] {
        if !b[key].is_null() && b[key] != json!({}) {
            line(&mut out, key, cell(&b[key]));
        }
    }
    let (waiting, running) = (n("initial"), n("running"));
    let (wait_s, run_s) = (if waiting == 1 { "s" } else { "" }, if running == 1 { "s" } else { "" });
    let id = cell(&b["id"]);
    if b["is_halted"] == true && waiting + running > 0 {
        out.push_str(&format!(
            "note: halted at a failed date (settings.stop_on_failure): of its dates {running} still run{run_s}, and \
             the {waiting} waiting are handed out no more until `backfilld backfill rerun {id}`\n"
        ));
    } else if b["status"] == "failed" && waiting + running > 0 {
        out.push_str(&format!(
            "note: `failed` says that a date failed, not that the backfill stopped: its other dates go on, \
             {waiting} still wait{wait_s} and {running} run{run_s}\n"
        ));
    }
    if failed_total > 0 {
        let rows: Vec<Vec<String>> = failed
            .iter()
            .map(|r| {
                vec![when(&r["execution_date"]), cell(&r["id"]), cell(&r["attempt"]), cell(&r["metrics"]["error"])]
            })
            .collect();
        let shown = if failed_total as usize > failed.len() {
            format!(" (the newest {})", failed.len())
        } else {
            String::new()
        };
        out.push_str(&format!(
            "\nfailed dates: {failed_total}{shown} (`backfilld backfill rerun {id}` runs them again)\n"
        ));
        out.push_str(&table(&["DATE", "RUN", "ATTEMPT", "ERROR"], &rows));
    }
    out
}

fn show(args: &ClientArgs, id: i64) -> Outcome {
    let api = connect(args)?;
    let b = api.backfill(id)?;
    let filters = [("backfill_id", Some(id.to_string())), ("status", Some(FAILED_FILTER.to_string()))];
    let (failed, _, failed_total) = api.run_page(&filters, SHOWN_FAILURES, None)?;
    if args.json {
        return Ok(client::json(&json!({"backfill": b, "failed_runs": failed})));
    }
    Ok(format_show(&b, &failed, failed_total))
}

/// The changed record, or `done` in words.
fn said(args: &ClientArgs, record: &Value, done: String) -> Outcome {
    Ok(if args.json { client::json(record) } else { done })
}

fn set_paused(t: &IdArgs, paused: bool) -> Outcome {
    let b = connect(&t.client)?.update_backfill(t.id, &json!({"is_paused": paused}))?;
    let what = if paused { "paused: no more of its runs are handed out" } else { "resumed" };
    said(&t.client, &b, format!("backfill {} {what}", t.id))
}

fn cancel(t: &IdArgs) -> Outcome {
    let b = connect(&t.client)?.update_backfill(t.id, &json!({"status": "cancelled"}))?;
    said(&t.client, &b, format!("backfill {} cancelled, and its runs not finished yet", t.id))
}

fn delete(t: &IdArgs, yes: bool) -> Outcome {
    use std::io::IsTerminal;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Usage(format!(
                "delete backfill {}: pass --yes to delete without a terminal to confirm on",
                t.id
            )));
        }
        if !client::confirm(&format!("Delete backfill {} from {}?", t.id, client::base(&t.client)?))? {
            return Ok("nothing deleted".into());
        }
    }
    let b = connect(&t.client)?.delete_backfill(t.id)?;
    said(&t.client, &b, format!("deleted backfill {} ({}); its runs stay, unlinked", t.id, cell(&b["name"])))
}

fn rerun(t: &IdArgs, reprocess: Option<&str>) -> Outcome {
    let api = connect(&t.client)?;
    let mut body = json!({"status": "initial"});
    if let Some(r) = reprocess {
        // `settings` is replaced whole: the backfill's own, with the new behaviour.
        let b = api.backfill(t.id)?;
        let mut settings = b["settings"].as_object().cloned().unwrap_or_default();
        settings.insert("reprocess_behavior".into(), json!(r));
        body["settings"] = Value::Object(settings);
    }
    api.update_backfill(t.id, &body)?;
    let b = api.backfill(t.id)?;
    let waiting = b["run_status_counts"]["initial"].as_u64().unwrap_or(0);
    said(&t.client, &b, format!("backfill {} runs again: {waiting} date{} waiting", t.id, plural(waiting)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_takes_a_number_and_a_unit() {
        for (s, want) in [
            ("30s", ("second", 30)),
            ("15m", ("minute", 15)),
            ("4h", ("hour", 4)),
            ("1d", ("day", 1)),
            ("1w", ("week", 1)),
            ("1mo", ("month", 1)),
            ("2y", ("year", 2)),
            (" 12h ", ("hour", 12)),
        ] {
            assert_eq!(parse_every(s), Ok(want), "{s}");
            assert_eq!(every(&json!({"interval_type": want.0, "interval_units": want.1})), s.trim());
        }
        for bad in ["", "h", "4", "0h", "-1h", "4x", "4 hours", "1.5h", "99999999999999999999h"] {
            assert!(parse_every(bad).unwrap_err().contains("30s, 15m, 4h"), "{bad}");
        }
        assert_eq!(every(&json!({"interval_type": "custom", "interval_units": 90})), "90 custom");
        assert_eq!(every(&json!({})), "-");
    }

    fn create_args(extra: &[&str]) -> CreateArgs {
        let base = [
            "backfilld",
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
        ];
        let cli = crate::cli::Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        match cli.command {
            Some(crate::cli::Command::Backfill(BackfillCommand::Create(a))) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_create_s_flags_make_its_body() {
        assert_eq!(
            create_fields(&create_args(&[])).unwrap(),
            json!({"name": "etl 2024-01-01..2024-01-03 every 1d", "start_datetime": "2024-01-01",
                "end_datetime": "2024-01-03", "interval_type": "day", "interval_units": 1})
        );
        let all = create_args(&[
            "--name",
            "n",
            "--variables",
            r#"{"region": "eu"}"#,
            "--max-active-runs",
            "3",
            "--run-backwards",
            "--stop-on-failure",
        ]);
        let f = create_fields(&all).unwrap();
        assert_eq!(f["name"], "n");
        assert_eq!(f["variables"], json!({"region": "eu"}));
        assert_eq!(f["settings"], json!({"pipeline_run_limit": 3, "run_backwards": true, "stop_on_failure": true}));
        assert!(create_fields(&create_args(&["--variables", "[1]"])).unwrap_err().contains("JSON object"));
        assert!(create_fields(&create_args(&["--name", " "])).is_err());
        assert!(crate::cli::Cli::try_parse_from(["backfilld", "backfill", "create", "--pipeline", "p"]).is_err());
    }

    #[test]
    fn a_dry_run_prints_every_date_or_the_first_and_last_with_the_gap() {
        let d = |s: &str| json!({"execution_date": s});
        let few = json!({"total_run_count": 2, "pipeline_run_dates": [d("A"), d("B")], "last_pipeline_run_dates": []});
        assert_eq!(format_preview("etl", &few), "2 runs of pipeline etl (dry run: nothing was created)\n  A\n  B\n");
        let many = json!({"total_run_count": 100, "pipeline_run_dates": [d("A")], "last_pipeline_run_dates": [d("Z")]});
        assert_eq!(
            format_preview("etl", &many),
            "100 runs of pipeline etl (dry run: nothing was created)\n  A\n  ... 98 more ...\n  Z\n"
        );
    }

    #[test]
    fn a_listing_shows_status_dates_interval_and_progress() {
        let b = json!({"id": 3, "name": "n", "pipeline_uuid": "etl", "status": "running", "is_paused": true,
            "start_datetime": "2024-01-01 00:00:00+00:00", "end_datetime": "2024-01-03 00:00:00+00:00",
            "interval_type": "day", "interval_units": 1, "total_run_count": 3,
            "run_status_counts": {"completed": 1, "failed": 1, "running": 1}});
        let never = json!({"id": 4, "name": "m", "pipeline_uuid": "etl", "status": null, "is_paused": false});
        assert_eq!(
            format_list(&[b, never]),
            "ID  NAME  PIPELINE  STATUS           DATES                                 EVERY  RUNS\n\
             3   n     etl       running, paused  2024-01-01 00:00 .. 2024-01-03 00:00  1d     1/3 done, 1 failed, 1 running\n\
             4   m     etl       new              - .. -                                -      -\n"
        );
    }

    #[test]
    fn show_lists_failed_dates_and_says_a_failed_backfill_has_dates_left() {
        let b = json!({"id": 3, "name": "n", "pipeline_uuid": "etl", "status": "failed", "is_paused": false,
            "start_datetime": "2024-01-01 00:00:00+00:00", "end_datetime": "2024-01-05 00:00:00+00:00",
            "interval_type": "day", "interval_units": 1, "total_run_count": 5, "settings": {"max_attempts": 1},
            "created_at": "2024-02-01 10:00:00.5+00:00", "failed_at": "2024-02-01 10:05:00+00:00",
            "run_status_counts": {"completed": 1, "failed": 1, "initial": 2, "running": 1}});
        let failed = [json!({"id": 9, "execution_date": "2024-01-02 00:00:00+00:00", "attempt": 1,
            "metrics": {"error": "the command exited with status 1"}})];
        let out = format_show(&b, &failed, 1);
        assert!(out.contains("status      failed\n"), "{out}");
        assert!(out.contains("runs        5: 1 completed, 1 failed, 1 running, 2 waiting\n"), "{out}");
        assert!(out.contains("not that the backfill stopped: its other dates go on, 2 still wait and 1 runs"), "{out}");
        assert!(out.contains("failed dates: 1 (`backfilld backfill rerun 3` runs them again)\nDATE  "), "{out}");
        assert!(out.contains("2024-01-02 00:00  9    1        the command exited with status 1\n"), "{out}");
        assert!(out.contains("settings    {\"max_attempts\":1}\n"), "{out}");
        // A failed backfill with nothing left: no note; more failures than shown: said.
        let done = json!({"status": "failed", "total_run_count": 2, "run_status_counts": {"failed": 2}});
        let out = format_show(&done, &failed, 2);
        assert!(!out.contains("note:") && out.contains("failed dates: 2 (the newest 1)"), "{out}");
        // Halted (stop_on_failure): the waiting dates wait for a run again.
        let mut halted = b.clone();
        halted["is_halted"] = json!(true);
        let out = format_show(&halted, &failed, 1);
        assert!(out.contains("status      failed, halted\n"), "{out}");
        assert!(out.contains("the 2 waiting are handed out no more until `backfilld backfill rerun 3`"), "{out}");
    }
}
