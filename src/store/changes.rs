//! `change_mark`: a counter of the writes of what the API shows (scope 0), and for each
//! backfill the counter's value after the last write to it or its runs (scope = its id).
//! Every function of the store that writes backfills or runs calls `touch` in the same
//! statement sequence, so that any process writing through the store (the server, an
//! import beside it) moves the marks; the API's conditional reads name them in `ETag`s.

use rusqlite::{Connection, OptionalExtension};

/// Records a write: the counter moves on, and `backfill`'s mark (when the write concerns
/// one) takes its new value. Two small statements on rows that stay in the cache.
pub fn touch(conn: &Connection, backfill: Option<i64>) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE change_mark SET mark = mark + 1 WHERE scope = 0")?.execute([])?;
    if let Some(id) = backfill {
        conn.prepare_cached(
            "INSERT INTO change_mark (scope, mark) SELECT ?1, mark FROM change_mark WHERE scope = 0 \
             ON CONFLICT (scope) DO UPDATE SET mark = excluded.mark",
        )?
        .execute([id])?;
    }
    Ok(())
}

/// The counter of every write (scope 0).
pub fn global_mark(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT mark FROM change_mark WHERE scope = 0")?.query_row([], |r| r.get(0))
}

/// Backfill `id`'s mark: 0 when nothing was written to it since the marks were kept (a file
/// of an older version), or when no backfill ever had the id.
pub fn backfill_mark(conn: &Connection, id: i64) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT mark FROM change_mark WHERE scope = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Run `id`'s backfill, if the run exists and has one.
pub fn backfill_of_run(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT backfill_id FROM pipeline_run WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open;

    #[test]
    fn a_backfills_mark_moves_with_its_own_writes_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("b.db")).unwrap();
        assert_eq!((global_mark(&conn).unwrap(), backfill_mark(&conn, 1).unwrap()), (0, 0));
        touch(&conn, Some(1)).unwrap();
        touch(&conn, Some(2)).unwrap();
        touch(&conn, None).unwrap();
        assert_eq!(global_mark(&conn).unwrap(), 3);
        assert_eq!((backfill_mark(&conn, 1).unwrap(), backfill_mark(&conn, 2).unwrap()), (1, 2));
        touch(&conn, Some(1)).unwrap();
        assert_eq!((backfill_mark(&conn, 1).unwrap(), backfill_mark(&conn, 2).unwrap()), (4, 2));
        assert_eq!(backfill_of_run(&conn, 9).unwrap(), None);
    }
}
