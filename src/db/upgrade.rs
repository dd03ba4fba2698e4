//! The schema and its upgrades: what each version added, and how a file of an older version
//! is brought up to this one, in the caller's transaction. The SQL of an upgrade lives here
//! (it runs before the store's code may assume the new schema), the schema itself in
//! `schema.sql`.

use rusqlite::Connection;

use super::APPLICATION_ID;

/// The schema version this build writes; `PRAGMA user_version` holds a file's. Version 2
/// added `run_tally` and the status listing indexes; version 3 the leases of claimed runs,
/// `is_paused` and the claim indexes; version 4 users, their sessions, the JWT secret and the
/// schedules' tokens; version 5 the unique index on usernames (which a version 4 file made
/// by an earlier build lacks); version 6 the backfills' counts by status; version 7 the
/// backfills' `is_halted` flag, the runs' logs and the change marks of the API's `ETag`s;
/// version 8 the date maps' chunks (`run_date_chunk`), the listing's status and name
/// indexes and its counts by status (`backfill_status_tally`). An older file gets what it lacks at
/// open.
pub const SCHEMA_VERSION: i64 = 8;

/// The columns versions 3, 4 and 7 added to tables an older file already has (`CREATE TABLE
/// IF NOT EXISTS` leaves an existing table alone): table, column, definition. Adding a column
/// rewrites no rows in SQLite.
const ADDED_COLUMNS: [(&str, &str, &str); 7] = [
    ("backfill", "is_paused", "INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1))"),
    ("pipeline_run", "worker", "TEXT"),
    ("pipeline_run", "lease_seconds", "INTEGER"),
    ("pipeline_run", "lease_expires_at", "INTEGER"),
    ("pipeline_run", "attempt", "INTEGER"),
    ("pipeline_schedule", "token", "TEXT"),
    ("backfill", "is_halted", "INTEGER NOT NULL DEFAULT 0 CHECK (is_halted IN (0, 1))"),
];

/// Adds each of `ADDED_COLUMNS` that its table lacks.
fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let has: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
        }
    }
    Ok(())
}

/// Whether a file of `SCHEMA_VERSION` has all of this build's schema. Builds made while
/// version 7 was not yet released wrote version 7 files without `change_mark`; `upgrade`
/// (whose schema is idempotent) adds it to them. One lookup in `sqlite_master`.
pub(super) fn complete(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'change_mark')",
        [],
        |r| r.get(0),
    )
}

/// The schema: every statement is `IF NOT EXISTS` or idempotent, so that it brings any older
/// file's tables and indexes up to date too.
const SCHEMA: &str = include_str!("../../schema.sql");

/// Brings a file of schema `version` (0 for a new, empty file) up to `SCHEMA_VERSION`, and
/// marks it as backfilld's, inside the caller's transaction.
pub(super) fn upgrade(tx: &Connection, version: i64) -> rusqlite::Result<()> {
    if (1..=6).contains(&version) {
        // Before the schema, whose indexes and updates name the new columns.
        add_columns(tx)?;
    }
    tx.execute_batch(SCHEMA)?;
    if version == 1 {
        fill_tally(tx)?;
    }
    if (1..=5).contains(&version) {
        fill_status_counts(tx)?;
    }
    if (1..=6).contains(&version) {
        // Before version 7 a failed date stopped its backfill: one that failed with dates
        // waiting keeps them waiting until it is run again, rather than start work nobody
        // asked for.
        tx.execute_batch(
            "UPDATE backfill SET is_halted = 1 WHERE status = 'failed' AND EXISTS (SELECT 1 FROM backfill_run_count AS c \
             WHERE c.backfill_id = backfill.id AND c.status = 'initial' AND c.n > 0)",
        )?;
    }
    if (1..=7).contains(&version) {
        fill_date_chunks(tx)?;
        tx.execute_batch(
            "DELETE FROM backfill_status_tally;
             INSERT INTO backfill_status_tally (pipeline_uuid, status, n)
                 SELECT pipeline_uuid, COALESCE(status, ''), COUNT(*) FROM backfill GROUP BY 1, 2;
             INSERT INTO backfill_status_tally (pipeline_uuid, status, n)
                 SELECT '', COALESCE(status, ''), COUNT(*) FROM backfill GROUP BY 2;",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
}

/// Writes every backfill's `run_date_chunk` from its runs (the newest of each date): for a
/// file made before version 8 (the store keeps them from then on). One pass over the runs in
/// the order of index `pipeline_run_backfill`; a backfill's chunks are written once.
fn fill_date_chunks(conn: &Connection) -> rusqlite::Result<()> {
    use crate::domain::datemap::{self, CHUNK};
    use crate::domain::datetime::from_micros;
    use crate::domain::model::{BackfillFields, RunStatus};
    use crate::domain::schedule::Schedule;
    use std::collections::BTreeMap;

    conn.execute_batch("DELETE FROM run_date_chunk")?;
    let mut schedules = conn.prepare(
        "SELECT start_datetime, end_datetime, interval_type, interval_units FROM backfill \
         WHERE id = ?1 AND block_uuid IS NULL",
    )?;
    let mut schedule_of = |id: i64| -> rusqlite::Result<Option<Schedule>> {
        let fields = schedules.query_row([id], |r| {
            Ok(BackfillFields {
                name: String::new(),
                block_uuid: None,
                start_datetime: r.get::<_, Option<i64>>(0)?.and_then(from_micros),
                end_datetime: r.get::<_, Option<i64>>(1)?.and_then(from_micros),
                interval_type: r.get::<_, Option<String>>(2)?.and_then(|t| t.parse().ok()),
                interval_units: r.get(3)?,
                variables: None,
                settings: None,
            })
        });
        match fields {
            Ok(f) => Ok(f.schedule()),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut insert = conn.prepare("INSERT INTO run_date_chunk (backfill_id, chunk, codes) VALUES (?1, ?2, ?3)")?;
    let mut write = |id: i64, chunks: &BTreeMap<u64, Vec<u8>>| -> rusqlite::Result<()> {
        for (chunk, codes) in chunks {
            insert.execute(rusqlite::params![id, *chunk as i64, codes])?;
        }
        Ok(())
    };
    let mut runs = conn.prepare(
        "SELECT backfill_id, execution_date, status, MAX(id) FROM pipeline_run \
         WHERE backfill_id IS NOT NULL AND execution_date IS NOT NULL GROUP BY backfill_id, execution_date",
    )?;
    let mut rows = runs.query([])?;
    // The backfill being read, its schedule and its chunks so far.
    type Current = (i64, Option<Schedule>, BTreeMap<u64, Vec<u8>>);
    let mut current: Option<Current> = None;
    while let Some(row) = rows.next()? {
        let (id, date, status): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if current.as_ref().is_none_or(|(c, _, _)| *c != id) {
            if let Some((c, _, chunks)) = current.take() {
                write(c, &chunks)?;
            }
            current = Some((id, schedule_of(id)?, BTreeMap::new()));
        }
        let Some((_, Some(schedule), chunks)) = current.as_mut() else {
            continue;
        };
        let (Some(date), Ok(status)) = (from_micros(date), status.parse::<RunStatus>()) else {
            continue;
        };
        if let Some(i) = schedule.index_of(date) {
            datemap::set(chunks.entry(i / CHUNK).or_default(), i, datemap::code(status));
        }
    }
    if let Some((c, _, chunks)) = current.take() {
        write(c, &chunks)?;
    }
    Ok(())
}

/// Fills `run_tally` from the runs themselves: for a file made before version 2, which has
/// runs but no tally (the store keeps it from then on, in each write's transaction).
fn fill_tally(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM run_tally;
         INSERT INTO run_tally SELECT '', 0, status, COUNT(*) FROM pipeline_run GROUP BY status;
         INSERT INTO run_tally SELECT pipeline_uuid, 0, status, COUNT(*) FROM pipeline_run
             GROUP BY pipeline_uuid, status;
         INSERT INTO run_tally SELECT '', backfill_id, status, COUNT(*) FROM pipeline_run
             WHERE backfill_id IS NOT NULL GROUP BY backfill_id, status;
         INSERT INTO run_tally SELECT pipeline_uuid, backfill_id, status, COUNT(*) FROM pipeline_run
             WHERE backfill_id IS NOT NULL GROUP BY pipeline_uuid, backfill_id, status;",
    )
}

/// Counts the backfills by status into `backfill_status_count` (its triggers keep it from
/// then on): for a file made before version 6.
fn fill_status_counts(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "UPDATE backfill_status_count SET n = 0;
         UPDATE backfill_status_count SET n = (SELECT COUNT(*) FROM backfill
             WHERE COALESCE(backfill.status, '') = backfill_status_count.status);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{open, APPLICATION_ID};

    fn jwt_secret(conn: &Connection) -> Vec<u8> {
        conn.query_row("SELECT value FROM secret WHERE name = 'jwt_secret'", [], |r| r.get(0)).unwrap()
    }

    fn status_counts(conn: &Connection) -> Vec<(String, i64)> {
        conn.prepare("SELECT status, n FROM backfill_status_count ORDER BY status")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn files_are_marked_and_a_version_1_file_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
        assert_eq!(app, APPLICATION_ID);
        // A file as version 1 left it: unmarked, no run tally, runs already there.
        conn.execute_batch(
            "INSERT INTO pipeline_run (pipeline_uuid, status, created_at, updated_at) VALUES \
             ('p', 'failed', 0, 0), ('p', 'failed', 0, 0), ('q', 'initial', 0, 0); \
             DROP TABLE run_tally; PRAGMA user_version = 1; PRAGMA application_id = 0;",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let failed: i64 = conn
            .query_row(
                "SELECT n FROM run_tally WHERE pipeline_uuid = '' AND backfill_id = 0 AND status = 'failed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(failed, 2);
    }

    #[test]
    fn a_version_6_file_keeps_its_failed_backfills_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        // A file as version 6 left it: no halt flag; a failed backfill then stopped its dates.
        // 'f' has dates waiting, 'done' none; 'r' runs.
        conn.execute_batch(
            "ALTER TABLE backfill DROP COLUMN is_halted;
             INSERT INTO backfill (name, pipeline_uuid, status, created_at, updated_at) VALUES
                 ('f', 'p', 'failed', 0, 0), ('r', 'p', 'running', 0, 0), ('n', 'p', NULL, 0, 0),
                 ('done', 'p', 'failed', 0, 0);
             INSERT INTO backfill_run_count (backfill_id, status, n) VALUES
                 (1, 'failed', 1), (1, 'initial', 2), (2, 'initial', 3), (4, 'failed', 1), (4, 'initial', 0);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let halted: Vec<(String, bool)> = conn
            .prepare("SELECT name, is_halted FROM backfill ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(halted, [("f".into(), true), ("r".into(), false), ("n".into(), false), ("done".into(), false)]);
        // Opening again changes nothing (a backfill failed since is halted only by its settings).
        conn.execute("UPDATE backfill SET status = 'failed' WHERE name = 'r'", []).unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM backfill WHERE is_halted", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_version_2_file_gets_the_lease_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        // A file as version 2 left it: no lease columns, no pause flag, no claim indexes.
        conn.execute_batch(
            "INSERT INTO backfill (name, pipeline_uuid, status, created_at, updated_at) VALUES ('b', 'p', 'running', 0, 0);
             INSERT INTO pipeline_run (pipeline_uuid, backfill_id, status, created_at, updated_at) VALUES ('p', 1, 'initial', 0, 0);
             DROP INDEX backfill_run_waiting; DROP INDEX pipeline_run_waiting; DROP INDEX pipeline_run_lease;
             ALTER TABLE backfill DROP COLUMN is_paused;
             ALTER TABLE pipeline_run DROP COLUMN worker; ALTER TABLE pipeline_run DROP COLUMN lease_seconds;
             ALTER TABLE pipeline_run DROP COLUMN lease_expires_at; ALTER TABLE pipeline_run DROP COLUMN attempt;
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let (paused, worker, attempt): (bool, Option<String>, Option<i64>) = conn
            .query_row(
                "SELECT b.is_paused, r.worker, r.attempt FROM backfill AS b JOIN pipeline_run AS r ON r.backfill_id = b.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((paused, worker, attempt), (false, None, None));
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN \
                 ('backfill_run_waiting', 'pipeline_run_waiting', 'pipeline_run_lease')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 3);
    }

    #[test]
    fn a_version_6_file_gets_the_runs_logs_and_their_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER run_log_total_insert; DROP TRIGGER run_log_total_delete; DROP TABLE run_log_total;
             DROP TABLE run_log_piece; DROP TABLE run_log; PRAGMA user_version = 6;",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO pipeline_run (pipeline_uuid, created_at, updated_at) VALUES ('p', 0, 0);
             INSERT INTO run_log (run_id, received) VALUES (1, 3);
             INSERT INTO run_log_piece (run_id, pos, data) VALUES (1, 0, x'616263');",
        )
        .unwrap();
        let total: i64 = conn.query_row("SELECT bytes FROM run_log_total", [], |r| r.get(0)).unwrap();
        assert_eq!(total, 3);
    }

    #[test]
    fn a_version_7_file_gets_its_date_chunks_and_listing_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        let chunks = |conn: &Connection| -> Vec<(i64, i64, Vec<u8>)> {
            conn.prepare("SELECT backfill_id, chunk, codes FROM run_date_chunk ORDER BY 1, 2")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        // Hourly dates from 2024-01-01: the second date has a failed run then a newer
        // completed one, the fourth one run off the schedule's dates (ignored).
        let h = 3_600_000_000i64;
        let t0 = 1_704_067_200_000_000i64;
        conn.execute_batch(&format!(
            "INSERT INTO backfill (name, pipeline_uuid, start_datetime, end_datetime, interval_type, interval_units, \
                 created_at, updated_at) VALUES ('b', 'p', {t0}, {}, 'hour', 1, 0, 0);
             INSERT INTO pipeline_run (pipeline_uuid, backfill_id, execution_date, status, created_at, updated_at) VALUES
                 ('p', 1, {}, 'failed', 0, 0), ('p', 1, {}, 'completed', 0, 0), ('p', 1, {t0}, 'running', 0, 0),
                 ('p', 1, {}, 'failed', 0, 0);
             DELETE FROM run_date_chunk; DELETE FROM backfill_status_tally; PRAGMA user_version = 7;",
            t0 + 2000 * h,
            t0 + h,
            t0 + h,
            t0 + 3 * h + 1,
        ))
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        assert_eq!(chunks(&conn), vec![(1, 0, vec![3, 1])]);
        // The listing's counts by status, filled, then kept by their triggers.
        let tally = |conn: &Connection| -> Vec<(String, String, i64)> {
            conn.prepare("SELECT pipeline_uuid, status, n FROM backfill_status_tally WHERE n <> 0 ORDER BY 1, 2")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(tally(&conn), vec![("".into(), "".into(), 1), ("p".into(), "".into(), 1)]);
        conn.execute("UPDATE backfill SET status = 'running', pipeline_uuid = 'q'", []).unwrap();
        assert_eq!(tally(&conn), vec![("".into(), "running".into(), 1), ("q".into(), "running".into(), 1)]);
        conn.execute("DELETE FROM backfill", []).unwrap();
        assert_eq!(chunks(&conn), vec![]);
        assert_eq!(tally(&conn), vec![]);
    }

    #[test]
    fn a_version_7_file_without_change_marks_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        conn.execute_batch("DROP TABLE change_mark").unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let mark: i64 = conn.query_row("SELECT mark FROM change_mark WHERE scope = 0", [], |r| r.get(0)).unwrap();
        assert_eq!(mark, 0);
    }

    #[test]
    fn a_version_3_or_4_file_gets_users_a_jwt_secret_schedule_tokens_and_the_username_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        // A file as version 3 left it: schedules without tokens, no users, no secret.
        conn.execute_batch(
            "INSERT INTO pipeline_schedule (name, pipeline_uuid, created_at, updated_at) VALUES ('Backfill a', 'p', 0, 0);
             INSERT INTO pipeline_schedule (name, pipeline_uuid, created_at, updated_at) VALUES ('Backfill b', 'p', 0, 0);
             DROP TABLE user_session; DROP TABLE user; DROP TABLE secret;
             ALTER TABLE pipeline_schedule DROP COLUMN token;
             DROP TRIGGER backfill_status_count_insert; DROP TRIGGER backfill_status_count_delete;
             DROP TRIGGER backfill_status_count_update; DROP TABLE backfill_status_count;
             INSERT INTO backfill (name, pipeline_uuid, status, created_at, updated_at) VALUES ('b', 'p', 'running', 0, 0);
             INSERT INTO backfill (name, pipeline_uuid, created_at, updated_at) VALUES ('c', 'p', 0, 0);
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let tokens: Vec<String> = conn
            .prepare("SELECT token FROM pipeline_schedule ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.iter().all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())), "{tokens:?}");
        assert_ne!(tokens[0], tokens[1]);
        let secret = jwt_secret(&conn);
        assert_eq!(secret.len(), 32);
        // Version 6's counts by status, filled from the rows, then kept by the triggers.
        let counts = status_counts(&conn);
        assert!(counts.contains(&("running".into(), 1)) && counts.contains(&(String::new(), 1)), "{counts:?}");
        conn.execute("UPDATE backfill SET status = 'completed' WHERE name = 'b'", []).unwrap();
        conn.execute("DELETE FROM backfill WHERE name = 'c'", []).unwrap();
        let counts = status_counts(&conn);
        assert!(counts.contains(&("running".into(), 0)) && counts.contains(&("completed".into(), 1)), "{counts:?}");
        assert!(counts.contains(&(String::new(), 0)), "{counts:?}");
        drop(conn);
        // Opening again keeps the secret (sessions' cookies stay valid across restarts).
        let conn = open(&path).unwrap();
        assert_eq!(jwt_secret(&conn), secret);
        // A version 4 file without the username index (an earlier build's) gets it.
        conn.execute_batch("DROP INDEX user_username; PRAGMA user_version = 4;").unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let has: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'user_username')", [], |r| r.get(0))
            .unwrap();
        assert!(has);
    }
}
