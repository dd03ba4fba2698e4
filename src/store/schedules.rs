//! The `pipeline_schedule` table: the `@once` schedule a started backfill's runs hang from.

use rusqlite::{params, Connection};

use super::micros;
use crate::datetime::DateTime;

/// A pipeline schedule to insert; `id` is assigned when absent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPipelineSchedule {
    pub id: Option<i64>,
    pub name: String,
    pub pipeline_uuid: String,
    /// Mage's schedule interval; a backfill's is `@once`.
    pub schedule_interval: String,
    pub created_at: DateTime,
}

pub fn insert_pipeline_schedule(conn: &Connection, s: &NewPipelineSchedule) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO pipeline_schedule (id, name, pipeline_uuid, schedule_interval, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![s.id, s.name, s.pipeline_uuid, s.schedule_interval, micros(Some(s.created_at))])?;
    Ok(conn.last_insert_rowid())
}

pub fn pipeline_schedule_exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM pipeline_schedule WHERE id = ?1)")?.query_row([id], |r| r.get(0))
}
