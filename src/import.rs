//! `backfilld import`: loads `{"backfills": [...], "pipeline_runs": [...]}` in the API's own
//! record shapes (a listing's `backfills` can be imported back) in one transaction.
//!
//! Each record is validated as the API validates (`BackfillFields::parse`); the first bad
//! record aborts the whole file with an error naming its index and field. Given ids and
//! timestamps are kept; missing ones are assigned. A `pipeline_schedule_id` that names no
//! schedule gets one made for it (a started backfill's `@once` schedule), so references hold.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};
use serde_json::Value;

use crate::datetime::DateTime;
use crate::model::{
    BackfillFields, BackfillStatus, FieldError, Fields, NewBackfill, NewPipelineRun, Object, RunStatus,
};
use crate::store;
use crate::store::schedules::NewPipelineSchedule;

/// What an import loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub backfills: usize,
    pub pipeline_runs: usize,
    pub pipeline_schedules: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the file must be an object with arrays \"backfills\" and/or \"pipeline_runs\": {0}")]
    Shape(String),
    #[error("{0}")]
    Record(#[from] FieldError),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// What a backfill record may hold besides `lifecycle::WRITABLE_KEYS`.
const BACKFILL_KEYS: &[&str] = &[
    "id",
    "pipeline_uuid",
    "status",
    "metrics",
    "pipeline_schedule_id",
    "started_at",
    "completed_at",
    "failed_at",
    "created_at",
    "updated_at",
    "is_paused",
    // Derived in listings; accepted and recomputed.
    "total_run_count",
    "run_status_counts",
];

const RUN_KEYS: &[&str] = &[
    // Derived in answers: the schedule's name and token (taken for a schedule this import
    // makes, so that an exported run reads back the same), and keys whose values backfilld
    // fixes (no blocks, tags, pipeline type or repo path); accepted.
    "block_runs",
    "block_runs_count",
    "completed_block_runs_count",
    "pipeline_schedule_name",
    "pipeline_schedule_token",
    "pipeline_schedule_type",
    "pipeline_tags",
    "pipeline_type",
    "repo_path",
    "id",
    "pipeline_schedule_id",
    "pipeline_uuid",
    "backfill_id",
    "execution_date",
    "status",
    "variables",
    "event_variables",
    "metrics",
    "passed_sla",
    "executor_type",
    "started_at",
    "completed_at",
    "created_at",
    "updated_at",
    "worker",
    "lease_expires_at",
    "attempt",
];

fn check_keys(obj: &Object, known: &[&[&str]]) -> Result<(), FieldError> {
    match obj.keys().find(|k| !known.iter().any(|keys| keys.contains(&k.as_str()))) {
        Some(k) => Err(FieldError::new(k, "is not a field of this record")),
        None => Ok(()),
    }
}

fn positive_id(f: &Fields, key: &str) -> Result<Option<i64>, FieldError> {
    match f.integer(key)? {
        Some(id) if id < 1 => Err(FieldError::new(key, format!("must be at least 1, got {id}"))),
        other => Ok(other),
    }
}

/// Timestamps: given ones kept, a missing `created_at` is `now`, a missing `updated_at` is
/// the `created_at`.
fn timestamps(f: &Fields, now: DateTime) -> Result<(DateTime, DateTime), FieldError> {
    let created = f.datetime("created_at")?.unwrap_or(now);
    let updated = f.datetime("updated_at")?.unwrap_or(created);
    Ok((created, updated))
}

fn parse_backfill(obj: &Object, now: DateTime) -> Result<NewBackfill, FieldError> {
    check_keys(obj, &[BACKFILL_KEYS, &crate::lifecycle::WRITABLE_KEYS])?;
    let f = Fields(obj);
    let (created_at, updated_at) = timestamps(&f, now)?;
    Ok(NewBackfill {
        id: positive_id(&f, "id")?,
        pipeline_uuid: f.required_string("pipeline_uuid")?,
        fields: {
            let fields = BackfillFields::parse(obj)?;
            crate::model::RunSettings::parse(fields.settings.as_ref())?;
            fields
        },
        status: f.parsed::<BackfillStatus>("status")?,
        metrics: f.object("metrics")?,
        pipeline_schedule_id: positive_id(&f, "pipeline_schedule_id")?,
        started_at: f.datetime("started_at")?,
        completed_at: f.datetime("completed_at")?,
        failed_at: f.datetime("failed_at")?,
        created_at,
        updated_at,
        is_paused: f.boolean("is_paused")?.unwrap_or(false),
    })
}

fn parse_run(obj: &Object, now: DateTime) -> Result<NewPipelineRun, FieldError> {
    check_keys(obj, &[RUN_KEYS])?;
    let f = Fields(obj);
    let (created_at, updated_at) = timestamps(&f, now)?;
    let status = f.parsed::<RunStatus>("status")?.unwrap_or(RunStatus::Initial);
    let lease_expires_at = f.datetime("lease_expires_at")?.filter(|_| status == RunStatus::Running);
    Ok(NewPipelineRun {
        id: positive_id(&f, "id")?,
        pipeline_schedule_id: positive_id(&f, "pipeline_schedule_id")?,
        // Filled in from the backfill when absent; checked once backfills are loaded.
        pipeline_uuid: f.string("pipeline_uuid")?.unwrap_or_default(),
        backfill_id: positive_id(&f, "backfill_id")?,
        execution_date: f.datetime("execution_date")?,
        status,
        variables: f.object("variables")?,
        event_variables: f.object("event_variables")?,
        metrics: f.object("metrics")?,
        passed_sla: f.boolean("passed_sla")?.unwrap_or(false),
        executor_type: f.string("executor_type")?,
        started_at: f.datetime("started_at")?,
        completed_at: f.datetime("completed_at")?,
        created_at,
        updated_at,
        worker: f.string("worker")?,
        // Only a running run keeps its lease: it expires, or is renewed, as any other.
        lease_seconds: lease_expires_at.map(|_| crate::dispatch::DEFAULT_LEASE_SECONDS),
        lease_expires_at,
        attempt: positive_id(&f, "attempt")?,
    })
}

fn records<'a>(doc: &'a Object, key: &str) -> Result<Vec<&'a Object>, ImportError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object()
                    .ok_or_else(|| ImportError::Record(FieldError::new(&format!("{key}[{i}]"), "must be an object")))
            })
            .collect(),
        Some(_) => Err(ImportError::Shape(format!("\"{key}\" is not an array"))),
    }
}

/// Makes the schedule `id` when no schedule has it yet.
fn ensure_schedule(
    conn: &Connection,
    id: i64,
    name: String,
    pipeline_uuid: &str,
    now: DateTime,
) -> rusqlite::Result<bool> {
    if store::schedules::pipeline_schedule_exists(conn, id)? {
        return Ok(false);
    }
    store::schedules::insert_pipeline_schedule(
        conn,
        &NewPipelineSchedule {
            id: Some(id),
            name,
            pipeline_uuid: pipeline_uuid.to_string(),
            schedule_interval: "@once".into(),
            created_at: now,
        },
    )?;
    Ok(true)
}

/// Parses and loads `input` into `conn` in one transaction; nothing is written on error.
pub fn import(conn: &mut Connection, input: &str, now: DateTime) -> Result<Summary, ImportError> {
    let doc: Value = serde_json::from_str(input)?;
    let doc = doc.as_object().ok_or_else(|| ImportError::Shape("the top level is not an object".into()))?;
    if let Some(k) = doc.keys().find(|k| *k != "backfills" && *k != "pipeline_runs") {
        return Err(ImportError::Shape(format!("unknown key \"{k}\"")));
    }
    let backfills = records(doc, "backfills")?;
    let runs = records(doc, "pipeline_runs")?;

    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = Summary { backfills: 0, pipeline_runs: 0, pipeline_schedules: 0 };
    // The schedules this import makes (not those the file had already).
    let mut made = std::collections::HashSet::new();
    // The pipeline of every backfill loaded or referenced, for the runs' checks.
    let mut pipelines: HashMap<i64, String> = HashMap::new();

    for (i, obj) in backfills.into_iter().enumerate() {
        let at = |e: FieldError| e.within(&format!("backfills[{i}]."));
        let b = parse_backfill(obj, now).map_err(at)?;
        if let Some(id) = b.id {
            if store::backfills::get_backfill(&tx, id)?.is_some() {
                return Err(at(FieldError::new("id", format!("a backfill with id {id} exists already"))).into());
            }
        }
        if let Some(sid) = b.pipeline_schedule_id {
            let name = format!("Backfill {}", b.fields.name);
            if ensure_schedule(&tx, sid, name, &b.pipeline_uuid, now)? {
                summary.pipeline_schedules += 1;
                made.insert(sid);
            }
        }
        let id = store::backfills::insert_backfill(&tx, &b)?;
        pipelines.insert(id, b.pipeline_uuid);
        summary.backfills += 1;
    }

    for (i, obj) in runs.into_iter().enumerate() {
        let at = |e: FieldError| e.within(&format!("pipeline_runs[{i}]."));
        let mut r = parse_run(obj, now).map_err(at)?;
        if let Some(bid) = r.backfill_id {
            let pipeline = match pipelines.get(&bid) {
                Some(p) => p.clone(),
                None => match store::backfills::get_backfill(&tx, bid)? {
                    Some(b) => pipelines.entry(bid).or_insert(b.pipeline_uuid).clone(),
                    None => return Err(at(FieldError::new("backfill_id", format!("no backfill has id {bid}"))).into()),
                },
            };
            if r.pipeline_uuid.is_empty() {
                r.pipeline_uuid = pipeline;
            } else if r.pipeline_uuid != pipeline {
                return Err(at(FieldError::new(
                    "pipeline_uuid",
                    format!("is '{}' but backfill {bid} belongs to '{pipeline}'", r.pipeline_uuid),
                ))
                .into());
            }
        }
        if r.pipeline_uuid.trim().is_empty() {
            return Err(at(FieldError::new("pipeline_uuid", "is required when backfill_id is not given")).into());
        }
        if let Some(id) = r.id {
            if store::pipeline_runs::get_pipeline_run(&tx, id)?.is_some() {
                return Err(at(FieldError::new("id", format!("a pipeline run with id {id} exists already"))).into());
            }
        }
        if let Some(sid) = r.pipeline_schedule_id {
            let name = format!("Imported schedule {sid}");
            if ensure_schedule(&tx, sid, name, &r.pipeline_uuid, now)? {
                summary.pipeline_schedules += 1;
                made.insert(sid);
            }
            // A schedule this import made takes the name and token its runs show.
            let f = Fields(obj);
            let name = f.nonblank_string("pipeline_schedule_name").map_err(at)?;
            let token = f.nonblank_string("pipeline_schedule_token").map_err(at)?;
            if made.contains(&sid) && (name.is_some() || token.is_some()) {
                store::schedules::set_schedule_identity(&tx, sid, name.as_deref(), token.as_deref())?;
            }
        }
        store::pipeline_runs::insert_pipeline_run(&tx, &r)?;
        summary.pipeline_runs += 1;
    }
    tx.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: DateTime = datetime!(2026-01-01 00:00);

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        (dir, conn)
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_seed_example_imports_with_its_id_and_timestamps() {
        let (_dir, mut conn) = db();
        let input = include_str!("../examples/seed-example.json");
        let summary = import(&mut conn, input, NOW).unwrap();
        assert_eq!(summary.backfills, 1);
        let b = store::backfills::get_backfill(&conn, 9).unwrap().unwrap();
        assert_eq!(b.fields.name, "sparkling glitter");
        assert_eq!(b.created_at, datetime!(2023-03-23 18:27:58.848959));
        assert_eq!(b.updated_at, datetime!(2023-03-23 18:28:22.379725));
        // Importing it again collides on the id and loads nothing.
        let e = import(&mut conn, input, NOW).unwrap_err().to_string();
        assert_eq!(e, "backfills[0].id: a backfill with id 9 exists already");
    }

    #[test]
    fn one_bad_record_aborts_the_whole_file_and_names_it() {
        let (_dir, mut conn) = db();
        let input = r#"{"backfills": [
            {"name": "ok", "pipeline_uuid": "p"},
            {"name": "bad", "pipeline_uuid": "p", "interval_units": 0}
        ], "pipeline_runs": []}"#;
        let e = import(&mut conn, input, NOW).unwrap_err().to_string();
        assert!(e.starts_with("backfills[1].interval_units: must be at least 1"), "{e}");
        assert_eq!(count(&conn, "backfill"), 0);
    }

    #[test]
    fn runs_need_an_existing_backfill_and_its_pipeline() {
        let (_dir, mut conn) = db();
        let cases = [
            (r#"{"pipeline_runs": [{"backfill_id": 5}]}"#, "pipeline_runs[0].backfill_id: no backfill has id 5"),
            (r#"{"pipeline_runs": [{"status": "initial"}]}"#, "pipeline_runs[0].pipeline_uuid: is required"),
            (
                r#"{"backfills": [{"id": 1, "name": "a", "pipeline_uuid": "p"}],
                    "pipeline_runs": [{"backfill_id": 1, "pipeline_uuid": "q"}]}"#,
                "pipeline_runs[0].pipeline_uuid: is 'q'",
            ),
            (
                r#"{"pipeline_runs": [{"pipeline_uuid": "p", "status": "done"}]}"#,
                "pipeline_runs[0].status: unknown status",
            ),
            (r#"{"pipeline_runs": [{"pipeline_uuid": "p", "colour": 1}]}"#, "pipeline_runs[0].colour: is not a field"),
            (r#"{"backfills": [{"name": "a", "pipeline_uuid": "p", "id": 0}]}"#, "backfills[0].id: must be at least 1"),
            (r#"{"backfills": [3]}"#, "backfills[0]: must be an object"),
            (r#"{"backfills": {}}"#, "the file must be an object"),
            (r#"{"backfill": []}"#, "the file must be an object"),
            (r#"[]"#, "the file must be an object"),
            (r#"{"backfills": ["#, "the file is not valid JSON"),
        ];
        for (input, want) in cases {
            let e = import(&mut conn, input, NOW).unwrap_err().to_string();
            assert!(e.starts_with(want), "{input}: {e}");
        }
        assert_eq!(count(&conn, "backfill") + count(&conn, "pipeline_run"), 0);
    }

    #[test]
    fn runs_inherit_the_pipeline_and_schedules_are_made_for_references() {
        let (_dir, mut conn) = db();
        let input = r#"{"backfills": [{"id": 3, "name": "a", "pipeline_uuid": "p", "pipeline_schedule_id": 7,
                         "status": "running", "total_run_count": 2, "run_status_counts": {}}],
                        "pipeline_runs": [
                          {"backfill_id": 3, "pipeline_schedule_id": 7, "execution_date": "2023-01-01", "status": "completed"},
                          {"id": 40, "pipeline_uuid": "other", "pipeline_schedule_id": 8}
                        ]}"#;
        let s = import(&mut conn, input, NOW).unwrap();
        assert_eq!(s, Summary { backfills: 1, pipeline_runs: 2, pipeline_schedules: 2 });
        let run = store::pipeline_runs::get_pipeline_run(&conn, 40).unwrap().unwrap();
        assert_eq!(run.pipeline_uuid, "other");
        assert_eq!(run.created_at, NOW);
        let name: String = conn.query_row("SELECT name FROM pipeline_schedule WHERE id = 7", [], |r| r.get(0)).unwrap();
        assert_eq!(name, "Backfill a");
    }
}
