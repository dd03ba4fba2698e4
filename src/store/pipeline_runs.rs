//! The `pipeline_run` table.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{json_text, micros, opt_datetime, opt_object, opt_parsed, req_datetime, Page};
use crate::datetime::DateTime;
use crate::model::{NewPipelineRun, PipelineRun, RunStatus};

/// Which runs a listing shows; every set field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub backfill_id: Option<i64>,
    pub pipeline_uuid: Option<String>,
    pub status: Option<RunStatus>,
}

impl RunFilter {
    /// The WHERE clause and its parameters. Each combination is a fixed statement text, so
    /// the statement cache holds at most eight of them.
    fn clause(&self) -> (String, Vec<SqlValue>) {
        let mut terms = vec![];
        let mut values = vec![];
        if let Some(id) = self.backfill_id {
            terms.push("backfill_id = ?");
            values.push(SqlValue::Integer(id));
        }
        if let Some(uuid) = &self.pipeline_uuid {
            terms.push("pipeline_uuid = ?");
            values.push(SqlValue::Text(uuid.clone()));
        }
        if let Some(status) = self.status {
            terms.push("status = ?");
            values.push(SqlValue::Text(status.as_str().into()));
        }
        let clause = if terms.is_empty() { String::new() } else { format!("WHERE {}", terms.join(" AND ")) };
        (clause, values)
    }
}

const COLUMNS: &str = "id, pipeline_schedule_id, pipeline_uuid, backfill_id, execution_date, status, \
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

/// One page of runs, newest `created_at` first and, among equal ones, the higher id first.
pub fn list_pipeline_runs(conn: &Connection, filter: &RunFilter, page: Page) -> rusqlite::Result<Vec<PipelineRun>> {
    let (clause, mut values) = filter.clause();
    values.push(SqlValue::Integer(i64::try_from(page.limit).unwrap_or(i64::MAX)));
    values.push(SqlValue::Integer(i64::try_from(page.offset).unwrap_or(i64::MAX)));
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM pipeline_run {clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    ))?
    .query_map(params_from_iter(values), from_row)?
    .collect()
}

pub fn count_pipeline_runs(conn: &Connection, filter: &RunFilter) -> rusqlite::Result<u64> {
    let (clause, values) = filter.clause();
    let n: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM pipeline_run {clause}"))?
        .query_row(params_from_iter(values), |r| r.get(0))?;
    Ok(n.unsigned_abs())
}

/// Writes the status and its timestamps.
pub fn update_pipeline_run_status(conn: &Connection, run: &PipelineRun) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE pipeline_run SET status = ?2, started_at = ?3, completed_at = ?4, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![
        run.id,
        run.status.as_str(),
        micros(run.started_at),
        micros(run.completed_at),
        micros(Some(run.updated_at)),
    ])?;
    Ok(())
}

/// Cancels every run of the backfill that has not finished; returns how many.
pub fn cancel_unfinished_runs(conn: &Connection, backfill_id: i64, now: DateTime) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE pipeline_run SET status = 'cancelled', updated_at = ?2 \
         WHERE backfill_id = ?1 AND status IN ('initial', 'running')",
    )?
    .execute(params![backfill_id, micros(Some(now))])
}
