//! The `pipeline_schedule` table: the `@once` schedule a started backfill's runs hang from,
//! with Mage's random `token` made on insert.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::{json_text, micros, opt_object};
use crate::domain::datetime::DateTime;
use crate::domain::model::Object;

/// A pipeline schedule to insert; `id` is assigned when absent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPipelineSchedule {
    pub id: Option<i64>,
    pub name: String,
    pub pipeline_uuid: String,
    /// Mage's schedule interval; a backfill's is `@once`.
    pub schedule_interval: String,
    /// What every run of the schedule has in its variables unless the run's own say
    /// otherwise (a started backfill's variables, kept once rather than in each run).
    pub variables: Option<Object>,
    pub created_at: DateTime,
}

pub fn insert_pipeline_schedule(conn: &Connection, s: &NewPipelineSchedule) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO pipeline_schedule (id, name, pipeline_uuid, schedule_interval, variables, created_at, updated_at, \
         token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, lower(hex(randomblob(16))))",
    )?
    .execute(params![
        s.id,
        s.name,
        s.pipeline_uuid,
        s.schedule_interval,
        json_text(&s.variables),
        micros(Some(s.created_at))
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn pipeline_schedule_exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM pipeline_schedule WHERE id = ?1)")?.query_row([id], |r| r.get(0))
}

/// The latest `created_at` of any schedule, if there is one (a scan of the table: no index
/// has the column).
pub fn latest_schedule_created_at(conn: &Connection) -> rusqlite::Result<Option<DateTime>> {
    let m: Option<i64> = conn.query_row("SELECT MAX(created_at) FROM pipeline_schedule", [], |r| r.get(0))?;
    Ok(m.and_then(crate::domain::datetime::from_micros))
}

/// What a run shows of its schedule (`pipeline_schedule_name` and `_token`), and the
/// variables its runs take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub name: String,
    pub token: Option<String>,
    pub variables: Option<Object>,
}

/// A schedule's row as `ScheduleInfo`, from the columns `name`, `token` and `variables`.
fn info_from_row(row: &rusqlite::Row) -> rusqlite::Result<ScheduleInfo> {
    Ok(ScheduleInfo { name: row.get("name")?, token: row.get("token")?, variables: opt_object(row, "variables")? })
}

/// The schedule `id`, if there is one.
pub fn get_schedule_info(conn: &Connection, id: i64) -> rusqlite::Result<Option<ScheduleInfo>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT name, token, variables FROM pipeline_schedule WHERE id = ?1")?
        .query_row([id], info_from_row)
        .optional()
}

/// How many bytes the schedule `id`'s name, token and variables take (0 when there is no
/// such schedule): what each of its runs' answers carries of it.
pub fn schedule_answer_bytes(conn: &Connection, id: i64) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    let n: Option<i64> = conn
        .prepare_cached(
            "SELECT length(CAST(name AS BLOB)) + COALESCE(length(CAST(token AS BLOB)), 0) \
             + COALESCE(length(CAST(variables AS BLOB)), 0) FROM pipeline_schedule WHERE id = ?1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).unsigned_abs())
}

/// Schedules by id, as `schedules_by_id` reads them.
pub type Schedules = HashMap<i64, ScheduleInfo>;

/// The schedules of these ids, by id, in one statement (primary-key lookups of the distinct
/// ids); ids that name no schedule are left out.
pub fn schedules_by_id(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Schedules> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = serde_json::to_string(ids).unwrap_or_default();
    conn.prepare_cached(
        "SELECT id, name, token, variables FROM pipeline_schedule \
         WHERE id IN (SELECT DISTINCT value FROM json_each(?1))",
    )?
    .query_map([list], |r| Ok((r.get("id")?, info_from_row(r)?)))?
    .collect()
}

/// Gives schedule `id` this name and token, each when given, if it was created at `made_at`
/// (`import`, which tells the schedules it made by a time no earlier one has, so that runs
/// read back as they were exported and an existing schedule is never renamed).
pub fn set_schedule_identity(
    conn: &Connection,
    id: i64,
    name: Option<&str>,
    token: Option<&str>,
    made_at: DateTime,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE pipeline_schedule SET name = COALESCE(?2, name), token = COALESCE(?3, token) \
         WHERE id = ?1 AND created_at = ?4",
    )?
    .execute(params![id, name, token, micros(Some(made_at))])?;
    // The runs of the schedule show its name and token.
    super::changes::touch(conn, None)
}
