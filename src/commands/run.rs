//! `backfilld run ...`: list, show and retry pipeline runs (and print their logs:
//! `run_logs`), through the API alone. What each
//! prints is made by a pure function of the API's records (tested below); `--json` prints
//! the records themselves.

use serde_json::Value;

use super::client::{self, cell, connect, finish, table, when, Outcome};
use crate::cli::{ClientArgs, RunCommand};

/// Runs a `run` subcommand; its exit status (`client::Failure`).
pub fn run(cmd: RunCommand) -> u8 {
    let (name, outcome) = match cmd {
        RunCommand::List { client, backfill, status, limit } => ("run list", list(&client, backfill, status, limit)),
        RunCommand::Show { client, id } => ("run show", show(&client, id)),
        RunCommand::Retry { client, id } => ("run retry", retry(&client, id)),
        RunCommand::Logs(args) => return super::run_logs::run_logs(args),
    };
    finish(name, outcome)
}

/// `run list`'s table.
pub fn format_list(runs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                cell(&r["id"]),
                when(&r["execution_date"]),
                cell(&r["status"]),
                cell(&r["attempt"]),
                cell(&r["worker"]),
                when(&r["started_at"]),
                when(&r["completed_at"]),
                cell(&r["metrics"]["error"]),
            ]
        })
        .collect();
    table(&["ID", "DATE", "STATUS", "ATTEMPT", "WORKER", "STARTED", "FINISHED", "ERROR"], &rows)
}

fn list(args: &ClientArgs, backfill: i64, status: Option<String>, limit: u64) -> Outcome {
    let api = connect(args)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let filters = [("backfill_id", Some(backfill.to_string())), ("status", status)];
    let (mut runs, mut cursor, mut total) = (vec![], None::<String>, 0);
    while runs.len() < limit {
        let (page, next, count) = api.run_page(&filters, (limit - runs.len()).min(1000), cursor.as_deref())?;
        total = count;
        runs.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if args.json {
        return Ok(client::json(&Value::Array(runs)));
    }
    if runs.is_empty() {
        // A backfill that does not exist has no runs either: say which it is.
        api.backfill(backfill)?;
        return Ok(format!("backfill {backfill} has no such runs"));
    }
    let mut out = format_list(&runs);
    if (runs.len() as u64) < total {
        out.push_str(&format!("(the newest {} of {total}; --limit N for more)\n", runs.len()));
    }
    Ok(out)
}

/// `run show`'s text: one field a line.
pub fn format_show(r: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    line("run", cell(&r["id"]));
    line("backfill", cell(&r["backfill_id"]));
    line("pipeline", cell(&r["pipeline_uuid"]));
    line("date", when(&r["execution_date"]));
    line("status", cell(&r["status"]));
    line("attempt", cell(&r["attempt"]));
    line("worker", cell(&r["worker"]));
    line("executor", cell(&r["executor_type"]));
    for key in ["created_at", "started_at", "completed_at", "lease_expires_at"] {
        if !r[key].is_null() {
            line(key.trim_end_matches("_at"), when(&r[key]));
        }
    }
    if let Some(error) = r["metrics"]["error"].as_str() {
        line("error", error.to_string());
    }
    if r["metrics"].is_object() {
        line("metrics", cell(&r["metrics"]));
    }
    out
}

fn show(args: &ClientArgs, id: i64) -> Outcome {
    let r = connect(args)?.run(id)?;
    Ok(if args.json { client::json(&r) } else { format_show(&r) })
}

fn retry(args: &ClientArgs, id: i64) -> Outcome {
    let r = connect(args)?.retry_run(id)?;
    Ok(if args.json {
        client::json(&r)
    } else {
        format!(
            "run {} runs the date {} of run {id} again (attempt {}), waiting for a worker",
            cell(&r["id"]),
            when(&r["execution_date"]),
            cell(&r["attempt"])
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_run() -> Value {
        json!({"id": 9, "backfill_id": 3, "pipeline_uuid": "etl", "execution_date": "2024-01-02 00:00:00+00:00",
            "status": "failed", "attempt": 2, "worker": "w1", "executor_type": "backfilld_exec",
            "created_at": "2024-02-01 10:00:00+00:00", "started_at": "2024-02-01 10:00:01+00:00",
            "completed_at": "2024-02-01 10:00:03.25+00:00", "lease_expires_at": null,
            "metrics": {"error": "the command exited with status 1", "duration_seconds": 2.1}})
    }

    #[test]
    fn a_listing_shows_each_run_s_date_status_and_error() {
        let waiting = json!({"id": 10, "execution_date": "2024-01-03 00:00:00+00:00", "status": "initial",
            "attempt": 1, "worker": null, "started_at": null, "completed_at": null, "metrics": null});
        assert_eq!(
            format_list(&[failed_run(), waiting]),
            "ID  DATE              STATUS   ATTEMPT  WORKER  STARTED              FINISHED             ERROR\n\
             9   2024-01-02 00:00  failed   2        w1      2024-02-01 10:00:01  2024-02-01 10:00:03  the command exited with status 1\n\
             10  2024-01-03 00:00  initial  1        -       -                    -                    -\n"
        );
    }

    #[test]
    fn show_gives_a_field_a_line_with_the_error() {
        let out = format_show(&failed_run());
        assert!(out.starts_with("run           9\nbackfill      3\npipeline      etl\n"), "{out}");
        assert!(out.contains("error         the command exited with status 1\n"), "{out}");
        assert!(!out.contains("lease_expires"), "{out}");
    }
}
