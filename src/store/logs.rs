//! Runs' logs: `run_log` (per run, how much output came and how much of its middle was cut)
//! and `run_log_piece` (the kept bytes, keyed by their position in the run's whole output);
//! `run_log_total` is kept by schema.sql's triggers. Positions and the rules of what is kept
//! are `domain::log`'s; `service::logs` decides, this only reads and writes the rows.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::log::{LogMeta, HEAD_BYTES, PIECE_BYTES};
use crate::domain::model::RunStatus;

/// A size or position as SQLite's integer (none comes near `i64::MAX`).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored size or position (the schema's CHECKs keep them from being negative).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Run `run_id`'s log, if it has one.
pub fn get_log(conn: &Connection, run_id: i64) -> rusqlite::Result<Option<LogMeta>> {
    conn.prepare_cached("SELECT received, cut FROM run_log WHERE run_id = ?1")?
        .query_row([run_id], |r| Ok(LogMeta { received: unsigned(r.get(0)?), cut: unsigned(r.get(1)?) }))
        .optional()
}

/// Run `run_id`'s status (as stored) and its log's bytes received and cut (0 and 0 without
/// a log); `None` when there is no such run. One lookup by primary key in each table.
pub fn log_state(conn: &Connection, run_id: i64) -> rusqlite::Result<Option<(String, LogMeta)>> {
    conn.prepare_cached(
        "SELECT r.status, COALESCE(l.received, 0), COALESCE(l.cut, 0) FROM pipeline_run AS r \
         LEFT JOIN run_log AS l ON l.run_id = r.id WHERE r.id = ?1",
    )?
    .query_row([run_id], |r| Ok((r.get(0)?, LogMeta { received: unsigned(r.get(1)?), cut: unsigned(r.get(2)?) })))
    .optional()
}

/// Writes run `run_id`'s log row (made when missing).
pub fn put_log(conn: &Connection, run_id: i64, log: &LogMeta) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO run_log (run_id, received, cut) VALUES (?1, ?2, ?3) \
         ON CONFLICT (run_id) DO UPDATE SET received = excluded.received, cut = excluded.cut",
    )?
    .execute(params![run_id, signed(log.received), signed(log.cut)])?;
    Ok(())
}

/// Stores `bytes`, which start at output position `pos` of run `run_id`.
pub fn insert_piece(conn: &Connection, run_id: i64, pos: u64, bytes: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO run_log_piece (run_id, pos, data) VALUES (?1, ?2, ?3)")?.execute(params![
        run_id,
        signed(pos),
        bytes
    ])?;
    Ok(())
}

/// The first piece of run `run_id`'s tail (past the head): its position and length.
pub fn first_tail_piece(conn: &Connection, run_id: i64) -> rusqlite::Result<Option<(u64, u64)>> {
    conn.prepare_cached(
        "SELECT pos, length(data) FROM run_log_piece WHERE run_id = ?1 AND pos >= ?2 ORDER BY pos LIMIT 1",
    )?
    .query_row(params![run_id, signed(HEAD_BYTES)], |r| Ok((unsigned(r.get(0)?), unsigned(r.get(1)?))))
    .optional()
}

/// Deletes the piece of run `run_id` at `pos`.
pub fn delete_piece(conn: &Connection, run_id: i64, pos: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM run_log_piece WHERE run_id = ?1 AND pos = ?2")?
        .execute(params![run_id, signed(pos)])?;
    Ok(())
}

/// Deletes run `run_id`'s log, its pieces first.
pub fn delete_log(conn: &Connection, run_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM run_log_piece WHERE run_id = ?1")?.execute([run_id])?;
    conn.prepare_cached("DELETE FROM run_log WHERE run_id = ?1")?.execute([run_id])?;
    Ok(())
}

/// The bytes all logs store, from the kept total.
pub fn total_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT bytes FROM run_log_total WHERE id = 0")?.query_row([], |r| Ok(unsigned(r.get(0)?)))
}

/// Up to `limit` logs of finished runs (completed, failed or cancelled), the oldest run
/// (lowest id) first: run id and bytes stored. Walks the logs in run order, passing over
/// those of runs still running (at most as many as workers run at once).
pub fn oldest_finished_logs(conn: &Connection, limit: u64) -> rusqlite::Result<Vec<(i64, u64)>> {
    conn.prepare_cached(
        "SELECT l.run_id, l.received - l.cut FROM run_log AS l JOIN pipeline_run AS r ON r.id = l.run_id \
         WHERE r.status IN (?1, ?2, ?3) ORDER BY l.run_id LIMIT ?4",
    )?
    .query_map(
        params![
            RunStatus::Completed.as_str(),
            RunStatus::Failed.as_str(),
            RunStatus::Cancelled.as_str(),
            signed(limit)
        ],
        |r| Ok((r.get(0)?, unsigned(r.get(1)?))),
    )?
    .collect()
}

/// Appends to `out` the stored bytes of run `run_id`'s output from position `start` to `end`
/// (exclusive). Pieces are at most `domain::log::PIECE_BYTES` long, so the one holding
/// `start` starts less than that before it.
pub fn read_range(conn: &Connection, run_id: i64, start: u64, end: u64, out: &mut Vec<u8>) -> rusqlite::Result<()> {
    if start >= end {
        return Ok(());
    }
    let first = start.saturating_sub(PIECE_BYTES - 1);
    let mut stmt = conn.prepare_cached(
        "SELECT pos, data FROM run_log_piece WHERE run_id = ?1 AND pos >= ?2 AND pos < ?3 ORDER BY pos",
    )?;
    let mut rows = stmt.query(params![run_id, signed(first), signed(end)])?;
    while let Some(row) = rows.next()? {
        let pos = unsigned(row.get(0)?);
        let data = row.get_ref(1)?.as_blob()?;
        let a = usize::try_from(start.saturating_sub(pos)).unwrap_or(usize::MAX).min(data.len());
        let b = usize::try_from(end - pos).unwrap_or(usize::MAX).min(data.len());
        if a < b {
            out.extend_from_slice(&data[a..b]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open;

    #[test]
    fn pieces_read_back_by_range_and_the_total_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("b.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO pipeline_run (pipeline_uuid, status, created_at, updated_at) VALUES ('p', 'failed', 0, 0)",
        )
        .unwrap();
        assert_eq!(get_log(&conn, 1).unwrap(), None);
        put_log(&conn, 1, &LogMeta::default()).unwrap();
        insert_piece(&conn, 1, 0, b"hello ").unwrap();
        insert_piece(&conn, 1, 6, b"world\n").unwrap();
        put_log(&conn, 1, &LogMeta { received: 12, cut: 0 }).unwrap();
        assert_eq!(get_log(&conn, 1).unwrap(), Some(LogMeta { received: 12, cut: 0 }));
        let mut out = vec![];
        read_range(&conn, 1, 3, 9, &mut out).unwrap();
        assert_eq!(out, b"lo wor");
        assert_eq!(total_bytes(&conn).unwrap(), 12);
        assert_eq!(first_tail_piece(&conn, 1).unwrap(), None);
        assert_eq!(oldest_finished_logs(&conn, 10).unwrap(), vec![(1, 12)]);
        delete_log(&conn, 1).unwrap();
        assert_eq!((get_log(&conn, 1).unwrap(), total_bytes(&conn).unwrap()), (None, 0));
    }
}
