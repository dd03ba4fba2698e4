//! `backfilld export`: writes every backfill and pipeline run as the document `import` reads,
//! `{"backfills": [...], "pipeline_runs": [...]}`, each record in the API's own shape
//! (`wire::BackfillJson`, `wire::PipelineRunJson`), one record a
//! line, by id.
//!
//! It streams: each table is read by one statement, row by row, and each record written to
//! a buffered writer as it comes, so memory does not grow with the file. Both tables are
//! read in one read transaction: one snapshot, also while a server writes the file (which
//! it does not block). Backfills are written without their run counts, which are derived
//! (`import` recomputes them from the runs); runs carry their schedule's name, token and
//! type, which `import` gives the schedules it makes, so that an export imported into a new
//! file lists the same backfills and runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::backup::{self, BackupError};
use crate::store;
use crate::wire::{BackfillJson, PipelineRunJson};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub backfills: u64,
    pub pipeline_runs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot write: {0}")]
    Write(#[from] std::io::Error),
    #[error("{0} exists already; export never overwrites a file: remove it, or name another")]
    Exists(PathBuf),
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    /// Giving the finished document its name failed.
    #[error(transparent)]
    Publish(BackupError),
}

/// How much of the output is gathered before each write to `out`.
const BUFFER: usize = 256 << 10;

/// Writes the document to `out` from one snapshot of `conn`'s data, and flushes it.
pub fn export(conn: &mut Connection, out: impl Write) -> Result<Summary, ExportError> {
    let mut out = std::io::BufWriter::with_capacity(BUFFER, out);
    // A deferred transaction that only reads: its first statement takes the snapshot that
    // both walks see.
    let tx = conn.transaction()?;
    let mut summary = Summary { backfills: 0, pipeline_runs: 0 };
    out.write_all(b"{\"backfills\": [")?;
    store::backfills::for_each_backfill(&tx, |b| -> Result<(), ExportError> {
        out.write_all(if summary.backfills == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut out, &BackfillJson::new(&b, None)).map_err(std::io::Error::from)?;
        summary.backfills += 1;
        Ok(())
    })?;
    out.write_all(b"\n],\n\"pipeline_runs\": [")?;
    store::pipeline_runs::for_each_pipeline_run(&tx, |r, schedule| -> Result<(), ExportError> {
        out.write_all(if summary.pipeline_runs == 0 { b"\n" } else { b",\n" })?;
        let json = PipelineRunJson::with_schedule(&r, schedule);
        serde_json::to_writer(&mut out, &json).map_err(std::io::Error::from)?;
        summary.pipeline_runs += 1;
        Ok(())
    })?;
    out.write_all(b"\n]}\n")?;
    // Read-only: ending it commits nothing.
    tx.commit()?;
    out.flush()?;
    Ok(summary)
}

/// Writes the document to `out`, a new file: under a hidden name beside it first, synced, and
/// given its name only once whole (as a backup is), so that an export cut short (an error,
/// Ctrl-C) never leaves a half document at `out`; a file at `out` is never replaced.
pub fn export_to_file(conn: &mut Connection, out: &Path) -> Result<Summary, ExportError> {
    // Said before the work (publishing refuses it again, atomically, at the end).
    if out.symlink_metadata().is_ok() {
        return Err(ExportError::Exists(out.to_path_buf()));
    }
    let partial = backup::partial_path(out);
    let create = |source| ExportError::Create { path: out.to_path_buf(), source };
    let file = std::fs::File::create_new(&partial).map_err(create)?;
    let written =
        export(conn, &file).and_then(|summary| file.sync_all().map(|()| summary).map_err(create)).and_then(|summary| {
            backup::publish(&partial, out).map(|()| summary).map_err(|e| match e {
                BackupError::Exists(out) => ExportError::Exists(out),
                other => ExportError::Publish(other),
            })
        });
    backup::remove_partial(&partial);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use time::macros::datetime;

    fn db(dir: &tempfile::TempDir, name: &str) -> Connection {
        crate::db::open(&dir.path().join(name)).unwrap()
    }

    fn exported(conn: &mut Connection) -> (Summary, String) {
        let mut out = Vec::new();
        let summary = export(conn, &mut out).unwrap();
        (summary, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_empty_file_exports_an_empty_document_that_imports() {
        let dir = tempfile::tempdir().unwrap();
        let (summary, text) = exported(&mut db(&dir, "a.db"));
        assert_eq!(summary, Summary { backfills: 0, pipeline_runs: 0 });
        assert_eq!(text, "{\"backfills\": [\n],\n\"pipeline_runs\": [\n]}\n");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc, json!({"backfills": [], "pipeline_runs": []}));
        let s = crate::data::import::import(&mut db(&dir, "b.db"), &text, crate::domain::datetime::now()).unwrap();
        assert_eq!((s.backfills, s.pipeline_runs), (0, 0));
    }

    #[test]
    fn records_come_one_a_line_by_id_and_import_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = db(&dir, "a.db");
        let input = r#"{"backfills": [
            {"id": 5, "name": "b", "pipeline_uuid": "p", "created_at": "2023-01-02", "variables": {"k": [1, 2.5]}},
            {"id": 3, "name": "a", "pipeline_uuid": "p", "pipeline_schedule_id": 7, "status": "running",
             "start_datetime": "2023-03-01", "end_datetime": "2023-03-01T04:00:00Z", "interval_type": "hour",
             "interval_units": 4, "started_at": "2023-03-02 10:00:00.123456+00:00", "is_paused": true}
        ], "pipeline_runs": [
            {"id": 11, "backfill_id": 3, "pipeline_schedule_id": 7, "execution_date": "2023-03-01",
             "status": "running", "worker": "w", "attempt": 1, "lease_expires_at": "2023-03-02 10:01:00+00:00",
             "pipeline_schedule_name": "nightly", "pipeline_schedule_token": "abc"},
            {"id": 10, "backfill_id": 3, "pipeline_schedule_id": 7, "execution_date": "2023-03-01T04:00:00Z",
             "status": "completed", "metrics": {"rows": 3}},
            {"id": 12, "pipeline_uuid": "loose"}
        ]}"#;
        crate::data::import::import(&mut source, input, datetime!(2026-01-01 00:00)).unwrap();
        let (summary, text) = exported(&mut source);
        assert_eq!(summary, Summary { backfills: 2, pipeline_runs: 3 });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 2 + 1 + 3 + 1, "{text}");
        assert!(lines[1].starts_with('{') && lines[1].contains("\"id\":3,"), "{text}");
        assert!(lines[2].contains("\"id\":5,") && !lines[2].contains("total_run_count"), "{text}");
        let runs: Vec<i64> = serde_json::from_str::<Value>(&text).unwrap()["pipeline_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(runs, [10, 11, 12]);
        assert!(text.contains("\"pipeline_schedule_name\":\"nightly\",\"pipeline_schedule_token\":\"abc\""), "{text}");

        // Imported into a new file and exported again: the same document, byte for byte.
        let mut target = db(&dir, "b.db");
        let s = crate::data::import::import(&mut target, &text, datetime!(2027-01-01 00:00)).unwrap();
        assert_eq!((s.backfills, s.pipeline_runs), (2, 3));
        assert_eq!(exported(&mut target).1, text);
    }

    #[test]
    fn a_write_error_stops_the_export() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let e = export(&mut db(&dir, "a.db"), Full).unwrap_err();
        assert_eq!(e.to_string(), "cannot write: disk full");
    }
}
