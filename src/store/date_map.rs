//! `run_date_chunk`: per backfill, one byte per date of its schedule saying the status of the
//! date's newest run (`domain::datemap::code`, 0 for none), in chunks of `datemap::CHUNK`
//! dates. Kept by store::pipeline_runs beside `backfill_run_count`, in the transaction of
//! every write that changes which run is a date's newest or that run's status; a date map
//! then reads a backfill's chunks instead of its runs.

use rusqlite::{params, Connection, OptionalExtension};

use super::{opt_datetime, opt_parsed};
use crate::domain::datemap::{self, CHUNK};
use crate::domain::datetime::DateTime;
use crate::domain::model::{BackfillFields, RunStatus};
use crate::domain::schedule::{IntervalType, Schedule};

/// The dates of backfill `id`: its schedule, `None` when it has none (incomplete date
/// settings, or a `block_uuid`: custom code picks such a backfill's dates) or does not exist.
pub fn schedule_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<Schedule>> {
    let fields = conn
        .prepare_cached(
            "SELECT start_datetime, end_datetime, interval_type, interval_units, block_uuid FROM backfill WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(BackfillFields {
                name: String::new(),
                block_uuid: r.get(4)?,
                start_datetime: opt_datetime(r, 0)?,
                end_datetime: opt_datetime(r, 1)?,
                interval_type: opt_parsed::<IntervalType, _>(r, 2)?,
                interval_units: r.get(3)?,
                variables: None,
                settings: None,
            })
        })
        .optional()?;
    Ok(fields.filter(|f| f.block_uuid.is_none()).and_then(|f| f.schedule()))
}

fn read_chunk(conn: &Connection, backfill_id: i64, chunk: u64) -> rusqlite::Result<Vec<u8>> {
    Ok(conn
        .prepare_cached("SELECT codes FROM run_date_chunk WHERE backfill_id = ?1 AND chunk = ?2")?
        .query_row(params![backfill_id, chunk as i64], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
        .unwrap_or_default())
}

fn write_chunk(conn: &Connection, backfill_id: i64, chunk: u64, codes: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO run_date_chunk (backfill_id, chunk, codes) VALUES (?1, ?2, ?3) \
         ON CONFLICT (backfill_id, chunk) DO UPDATE SET codes = excluded.codes",
    )?
    .execute(params![backfill_id, chunk as i64, codes])?;
    Ok(())
}

/// Records that each date's newest run is now in the given status; dates that are not the
/// backfill's (or a backfill without dates) are left out. Each chunk touched is read and
/// written once.
pub fn note(conn: &Connection, backfill_id: i64, dates: &[(Option<DateTime>, RunStatus)]) -> rusqlite::Result<()> {
    let Some(schedule) = schedule_of(conn, backfill_id)? else {
        return Ok(());
    };
    let mut indexed: Vec<(u64, u8)> =
        dates.iter().filter_map(|(d, s)| Some((schedule.index_of((*d)?)?, datemap::code(*s)))).collect();
    indexed.sort_by_key(|(i, _)| i / CHUNK);
    for group in indexed.chunk_by(|a, b| a.0 / CHUNK == b.0 / CHUNK) {
        let chunk = group[0].0 / CHUNK;
        let mut codes = read_chunk(conn, backfill_id, chunk)?;
        for (i, code) in group {
            datemap::set(&mut codes, *i, *code);
        }
        write_chunk(conn, backfill_id, chunk, &codes)?;
    }
    Ok(())
}

/// Every date whose newest run is `initial` or `running` is now `cancelled`.
pub fn cancel_unfinished(conn: &Connection, backfill_id: i64) -> rusqlite::Result<()> {
    let (initial, running, cancelled) =
        (datemap::code(RunStatus::Initial), datemap::code(RunStatus::Running), datemap::code(RunStatus::Cancelled));
    for (chunk, mut codes) in chunks(conn, backfill_id)? {
        if codes.iter().any(|c| *c == initial || *c == running) {
            for c in codes.iter_mut().filter(|c| **c == initial || **c == running) {
                *c = cancelled;
            }
            write_chunk(conn, backfill_id, chunk, &codes)?;
        }
    }
    Ok(())
}

/// The backfill's chunks afresh from its runs (the newest of each date, index
/// `pipeline_run_backfill`): a start on a backfill that had runs, a changed schedule, an
/// upgrade.
pub fn rebuild(conn: &Connection, backfill_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM run_date_chunk WHERE backfill_id = ?1")?.execute([backfill_id])?;
    let newest: Vec<(Option<DateTime>, RunStatus)> = conn
        .prepare_cached(
            "SELECT execution_date, status, MAX(id) FROM pipeline_run WHERE backfill_id = ?1 \
             AND execution_date IS NOT NULL GROUP BY execution_date",
        )?
        .query_map([backfill_id], |r| {
            Ok((opt_datetime(r, 0)?, opt_parsed::<RunStatus, _>(r, 1)?.unwrap_or(RunStatus::Initial)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    note(conn, backfill_id, &newest)
}

/// The backfill's stored chunks: number and bytes, in chunk order.
pub fn chunks(conn: &Connection, backfill_id: i64) -> rusqlite::Result<Vec<(u64, Vec<u8>)>> {
    conn.prepare_cached("SELECT chunk, codes FROM run_date_chunk WHERE backfill_id = ?1 ORDER BY chunk")?
        .query_map([backfill_id], |r| Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get::<_, Vec<u8>>(1)?)))?
        .collect()
}

/// The dates of a start's runs, all `initial`.
pub fn note_started(conn: &Connection, backfill_id: i64, dates: &[DateTime]) -> rusqlite::Result<()> {
    let noted: Vec<(Option<DateTime>, RunStatus)> = dates.iter().map(|d| (Some(*d), RunStatus::Initial)).collect();
    note(conn, backfill_id, &noted)
}
