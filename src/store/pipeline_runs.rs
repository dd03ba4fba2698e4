//! The `pipeline_run` table.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{json_text, micros, opt_datetime, opt_object, opt_parsed, req_datetime};
use crate::model::{NewPipelineRun, PipelineRun, RunStatus};

const COLUMNS: &str =
    "id, pipeline_schedule_id, pipeline_uuid, backfill_id, execution_date, status, \
    variables, event_variables, metrics, passed_sla, executor_type, started_at, completed_at, \
    created_at, updated_at";

fn from_row(row: &Row) -> rusqlite::Result<PipelineRun> {
    Ok(PipelineRun {
        id: row.get("id")?,
        pipeline_schedule_id: row.get("pipeline_schedule_id")?,
        pipeline_uuid: row.get("pipeline_uuid")?,
        backfill_id: row.get("backfill_id")?,
        execution_date: opt_datetime(row, "execution_date")?,
        status: opt_parsed::<RunStatus>(row, "status")?.unwrap_or(RunStatus::Initial),
        variables: opt_object(row, "variables")?,
        event_variables: opt_object(row, "event_variables")?,
        metrics: opt_object(row, "metrics")?,
        passed_sla: row.get("passed_sla")?,
        executor_type: row.get("executor_type")?,
        started_at: opt_datetime(row, "started_at")?,
        completed_at: opt_datetime(row, "completed_at")?,
        created_at: req_datetime(row, "created_at")?,
        updated_at: req_datetime(row, "updated_at")?,
    })
}

/// Inserts `r` and returns its id (the given one, or a new one).
pub fn insert_pipeline_run(conn: &Connection, r: &NewPipelineRun) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!(
        "INSERT INTO pipeline_run ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        r.id,
        r.pipeline_schedule_id,
        r.pipeline_uuid,
        r.backfill_id,
        micros(r.execution_date),
        r.status.as_str(),
        json_text(&r.variables),
        json_text(&r.event_variables),
        json_text(&r.metrics),
        r.passed_sla,
        r.executor_type,
        micros(r.started_at),
        micros(r.completed_at),
        micros(Some(r.created_at)),
        micros(Some(r.updated_at)),
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn get_pipeline_run(conn: &Connection, id: i64) -> rusqlite::Result<Option<PipelineRun>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pipeline_run WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}
