//! `backfilld backup`: a consistent copy of a data file, also while a server writes it.
//!
//! The copy is made with SQLite's online backup API (rusqlite's `backup` feature), every page
//! in one step: one read transaction, so the copy is the file as one commit left it, and in
//! WAL mode a reader never blocks the server's writes (the server's checkpointer lets such a
//! reader be: `db::Checkpointer`'s held checkpoints give up on it). Not in several small
//! steps: a write by another connection (the server's) restarts an unfinished backup from its
//! first page, so under steady writes a stepped backup might never end. Not `VACUUM INTO`,
//! which took as long on the bench's file (docs/performance.md) but rebuilds the tables
//! rather than copying their pages, and writes a copy in rollback-journal mode, which
//! `db::open` turns to WAL only in files it creates or upgrades: a server on it would run
//! without WAL. The backup API copies the header with the pages: the copy keeps WAL mode,
//! the `application_id` and the schema version.
//!
//! The pages go to a hidden file beside `out` (`.NAME.partial-PID`), which is synced and
//! then linked to `out` only if `out` still does not exist: a copy is never half there under
//! its name, and never replaces a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::db::{self, OpenError};
use crate::store;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The copy's size in bytes.
    pub bytes: u64,
    pub backfills: u64,
    pub pipeline_runs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists already; backup never overwrites a file: remove it, or name another")]
    Exists(PathBuf),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot copy the data file: {0}")]
    Copy(rusqlite::Error),
    #[error("the data file stayed locked for {} s; try again when it is less busy", BUSY_LIMIT.as_secs())]
    Busy,
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the copy {path} does not read back: {source}")]
    Check { path: PathBuf, source: rusqlite::Error },
}

/// How long the backup waits for a lock the source or the copy is held under (a backup step
/// answers busy instead of waiting).
const BUSY_LIMIT: Duration = Duration::from_secs(60);

/// Copies the backfilld file `source` (which must exist: the `backup` command checks) to `out`,
/// which must not, and reads the copy back for what it holds.
pub fn backup(source: &Path, out: &Path) -> Result<Copied, BackupError> {
    if out.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let src = db::open(source)?;
    db::unmap(&src).map_err(BackupError::Copy)?;
    let partial = partial_path(out);
    let written = copy_to(&src, &partial, out).and_then(|()| publish(&partial, out));
    remove_partial(&partial);
    written?;
    let conn = db::open(out)?;
    let check = |source| BackupError::Check { path: out.to_path_buf(), source };
    let backfills = store::backfills::count_backfills(&conn, None).map_err(check)?;
    let pipeline_runs =
        store::pipeline_runs::count_pipeline_runs(&conn, &store::pipeline_runs::RunFilter::default()).map_err(check)?;
    drop(conn);
    let bytes = std::fs::metadata(out).map_err(|source| BackupError::Write { path: out.to_path_buf(), source })?.len();
    Ok(Copied { bytes, backfills, pipeline_runs })
}

/// A size as people read it: `1.8 GiB (1928323072 bytes)`; bytes alone under 1 KiB.
pub fn describe_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

/// `.NAME.partial-PID` beside `out`.
pub(super) fn partial_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// The files SQLite may leave beside the copy being written.
pub(super) fn remove_partial(partial: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = partial.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Copies every page of `src` into a new file at `partial`, in one step, and syncs it; its
/// errors name `out`, the file the user asked for.
fn copy_to(src: &Connection, partial: &Path, out: &Path) -> Result<(), BackupError> {
    let write = |source| BackupError::Write { path: out.to_path_buf(), source };
    // Claimed first, so that a file of that name is never written over.
    std::fs::File::create_new(partial).map_err(write)?;
    let mut dst =
        Connection::open_with_flags(partial, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(BackupError::Copy)?;
    {
        let backup = Backup::new(src, &mut dst).map_err(BackupError::Copy)?;
        let deadline = Instant::now() + BUSY_LIMIT;
        loop {
            match backup.step(-1).map_err(BackupError::Copy)? {
                StepResult::Done => break,
                // Nothing was copied: another connection held a lock the step needed.
                _ if Instant::now() >= deadline => return Err(BackupError::Busy),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The header came with the pages: the copy is in WAL mode, as the source is. Said again
    // in case the source was not (a file of a backfilld too old to set it).
    dst.pragma_update(None, "journal_mode", "WAL").map_err(BackupError::Copy)?;
    // Closing the only connection checkpoints its WAL into the file and removes it.
    dst.close().map_err(|(_, e)| BackupError::Copy(e))?;
    std::fs::File::open(partial).and_then(|f| f.sync_all()).map_err(write)
}

/// Gives the finished copy its name, unless a file took that name meanwhile.
pub(super) fn publish(partial: &Path, out: &Path) -> Result<(), BackupError> {
    let write = |source| BackupError::Write { path: out.to_path_buf(), source };
    match std::fs::hard_link(partial, out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(BackupError::Exists(out.to_path_buf())),
        // A file system without hard links: a rename, which would replace a file made at
        // `out` since the check just before (a race this narrow is accepted there).
        Err(_) if out.symlink_metadata().is_err() => std::fs::rename(partial, out).map_err(write)?,
        Err(_) => return Err(BackupError::Exists(out.to_path_buf())),
    }
    // The new name made durable: sync the folder.
    let folder = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(folder).and_then(|f| f.sync_all()).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(path: &Path) {
        let mut conn = db::open(path).unwrap();
        let doc = r#"{"backfills": [{"id": 4, "name": "a", "pipeline_uuid": "p"}, {"name": "b", "pipeline_uuid": "q"}],
                      "pipeline_runs": [{"backfill_id": 4, "status": "completed"}]}"#;
        crate::data::import::import(&mut conn, doc, crate::domain::datetime::now()).unwrap();
    }

    /// Files in `dir` that are neither a data file nor SQLite's beside one.
    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !(n.ends_with(".db") || n.ends_with(".db-wal") || n.ends_with(".db-shm")))
            .collect()
    }

    #[test]
    fn the_copy_is_a_backfilld_file_with_the_same_rows_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("b.db"), dir.path().join("copy.db"));
        fill(&src);
        let copied = backup(&src, &out).unwrap();
        assert_eq!((copied.backfills, copied.pipeline_runs), (2, 1));
        assert_eq!(copied.bytes, std::fs::metadata(&out).unwrap().len());
        let conn = db::open(&out).unwrap();
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store::backfills::get_backfill(&conn, 4).unwrap().unwrap().fields.name, "a");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        // Nothing but the copy is left beside it.
        drop(conn);
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn an_existing_out_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("b.db"), dir.path().join("copy.db"));
        fill(&src);
        for content in [&b"precious"[..], b""] {
            std::fs::write(&out, content).unwrap();
            let e = backup(&src, &out).unwrap_err();
            assert!(matches!(e, BackupError::Exists(_)), "{e}");
            assert!(e.to_string().contains("exists already"), "{e}");
            assert_eq!(std::fs::read(&out).unwrap(), content);
        }
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn sizes_read_in_the_largest_unit_that_fits() {
        assert_eq!(describe_size(0), "0 bytes");
        assert_eq!(describe_size(1023), "1023 bytes");
        assert_eq!(describe_size(4096), "4.0 KiB (4096 bytes)");
        assert_eq!(describe_size(1_928_323_072), "1.8 GiB (1928323072 bytes)");
        assert_eq!(describe_size(5 << 40), "5.0 TiB (5497558138880 bytes)");
        assert_eq!(describe_size(3000 << 40), "3000.0 TiB (3298534883328000 bytes)");
    }

    #[test]
    fn publishing_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, out) = (dir.path().join(".c.partial"), dir.path().join("c.db"));
        std::fs::write(&partial, b"copy").unwrap();
        std::fs::write(&out, b"theirs").unwrap();
        assert!(matches!(publish(&partial, &out), Err(BackupError::Exists(_))));
        assert_eq!(std::fs::read(&out).unwrap(), b"theirs");
    }
}
