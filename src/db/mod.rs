//! The data file's policy: what a file must be to be opened (`open`), the schema and its
//! upgrades (`upgrade`), the pragmas of every connection, the server's connections (readers,
//! the one writer, the checkpointer's), the WAL's bounds (`checkpoint`) and the guard on the
//! file while it is served (`watch`).
//!
//! Owns how connections are made and kept, and nothing of what they read or write: every
//! query of the data lives in `store`, which this layer never imports. It starts no thread:
//! the engine runs the checkpointer's rounds and owns the writer.

mod checkpoint;
mod open;
mod upgrade;
mod watch;

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

pub use checkpoint::{Checkpointer, Tuning};
pub use open::{open, unmap, OpenError};
pub use upgrade::SCHEMA_VERSION;
pub use watch::FileLost;

use watch::{wal_path, FileWatch};

/// `PRAGMA application_id` of a backfilld file: "bfld".
pub const APPLICATION_ID: i64 = 0x6266_6C64;

/// A reading connection of the server's, back to its pool when dropped.
pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

/// The writer's page cache. A large start dirties more pages than SQLite's default cache
/// holds, and every page that does not fit is spilled to the WAL mid-transaction and often
/// written again later; this one connection gets a larger cache, so that every pooled one
/// need not (docs/performance.md has the figures).
const WRITER_CACHE_KIB: i64 = 32 << 10;

/// The database as a server holds it: its reading connections, the guard on the file, and
/// the lock that keeps a second server off it. Clones share all of it; the connections close when the last clone is dropped.
/// Writes go through the `Writer`, which is not part of this handle.
#[derive(Clone)]
pub struct Database {
    readers: r2d2::Pool<SqliteConnectionManager>,
    watch: Arc<FileWatch>,
    _lock: Arc<File>,
}

impl Database {
    /// A connection for reading (`query_only`), waiting for one to be free (r2d2's timeout,
    /// 30 s). All of them are opened at start and kept, so none is ever opened later, when
    /// the file might be gone.
    pub fn reader(&self) -> Result<Conn, r2d2::Error> {
        self.readers.get()
    }

    /// The sizes in bytes of the data file and of its WAL (0 when there is none), by `stat`.
    pub fn file_sizes(&self) -> (u64, u64) {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (size(&self.watch.path), size(&wal_path(&self.watch.path)))
    }

    /// Whether the path still names the file the server opened (one `stat`, about a
    /// microsecond). Writes call it before they commit.
    pub fn check_file(&self) -> Result<(), FileLost> {
        self.watch.check()
    }
}

/// The one connection that writes, held for a whole write transaction. SQLite lets one
/// writer in at a time and makes the others poll with growing sleeps (its busy handler),
/// which under concurrent writes puts its sleeps into the answers' tail; a queue in the
/// process (the engine's writer thread) hands the turn over at once. Other processes (an
/// `import`) still meet the busy timeout. Being one, it can have the larger cache a big start
/// needs (`WRITER_CACHE_KIB`) without every pooled connection having it.
///
/// Not `Clone`: `open_for_serving` gives it to one owner, the engine, and keeps only the
/// checkpointer's share (which holds it to keep the writes out of a WAL restart).
pub struct Writer(Arc<Mutex<Connection>>);

impl Writer {
    /// The connection, for one write transaction.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic in another writer rolled its transaction back when it unwound (rusqlite's
        // Transaction drops with a rollback), so the connection is fine to use.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The checkpointer's share of the writer.
    fn share(&self) -> Writer {
        Writer(self.0.clone())
    }
}

/// What a server needs of its data file: the handle, the one writer, and the checkpointer
/// whose rounds keep the WAL in bounds (run by the engine on a thread of its own).
pub(crate) struct Served {
    pub database: Database,
    pub writer: Writer,
    pub checkpointer: Checkpointer,
}

/// Opens the data file at `path` for a server: `open` it (which refuses what is not a
/// backfilld file of a version this build knows, and upgrades an older one), take the
/// serving lock (refused while another server holds it), and open `readers` reading
/// connections, the writer and the checkpointer's connection, the WAL bounded by `tuning`.
pub(crate) fn open_for_serving(path: &Path, readers: u32, tuning: Tuning) -> Result<Served, OpenError> {
    drop(open(path)?);
    let lock = open::lock_for_serving(path)?;
    let watch = Arc::new(FileWatch::new(path).map_err(|source| OpenError::Io { path: path.to_path_buf(), source })?);
    // Past twice the bound a WAL file is cut back (see `Tuning::wal_limit`); below it, a file
    // that a restart leaves at its size is written over, not cut and grown again each time.
    let wal_file_limit = i64::try_from(tuning.wal_limit.saturating_mul(2)).unwrap_or(i64::MAX);
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| {
            open::configure(c)?;
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.pragma_update(None, "journal_size_limit", wal_file_limit)?;
            // The pool's connections only read: writes go through the `Writer`, one at a time.
            c.pragma_update(None, "query_only", true)
        });
    let readers = readers.max(1);
    let pool = r2d2::Pool::builder()
        .max_size(readers)
        // r2d2 would run a query on every checkout to test the connection; a SQLite file
        // connection does not go stale the way a network one does.
        .test_on_check_out(false)
        // Every connection opened now and kept for good: one opened later could find the
        // file gone (they never create it) and fail the request.
        .min_idle(Some(readers))
        .idle_timeout(None)
        .max_lifetime(None)
        .build(manager)
        .map_err(|source| OpenError::Pool { path: path.to_path_buf(), source })?;
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let writer = open::connect(path)?;
    writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    writer.pragma_update(None, "journal_size_limit", wal_file_limit).map_err(sqlite)?;
    writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(sqlite)?;
    let writer = Writer(Arc::new(Mutex::new(writer)));
    let checkpointer = Checkpointer::new(path, tuning, watch.clone(), writer.share())?;
    let database = Database { readers: pool, watch, _lock: Arc::new(lock) };
    Ok(Served { database, writer, checkpointer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(path: &Path) -> Served {
        open_for_serving(path, 2, Tuning::default()).unwrap()
    }

    #[test]
    fn a_second_server_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let first = served(&path);
        let e = open_for_serving(&path, 1, Tuning::default()).err().unwrap();
        assert!(matches!(e, OpenError::Served { .. }), "{e}");
        // Commands still open it while it is served.
        drop(open(&path).unwrap());
        drop(first);
        drop(served(&path));
    }

    #[test]
    fn the_writer_enforces_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = served(&dir.path().join("b.db"));
        let e = s
            .writer
            .lock()
            .execute(
                "INSERT INTO pipeline_run (pipeline_uuid, backfill_id, created_at, updated_at) VALUES ('p', 999, 0, 0)",
                [],
            )
            .unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation));
    }

    #[test]
    fn reading_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = served(&dir.path().join("b.db"));
        let e = s.database.reader().unwrap().execute("DELETE FROM backfill", []).unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
    }

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_never_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let s = served(&path);
        let db = &s.database;
        db.check_file().unwrap();
        let read = db.reader().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let e = db.check_file().unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
        // Reads of the open file go on; nothing makes a new file at the path, not even the
        // checkpointer's rounds.
        let n: i64 = read.query_row("SELECT COUNT(*) FROM backfill", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        let mut checkpointer = s.checkpointer;
        for _ in 0..3 {
            checkpointer.round();
        }
        assert!(!path.exists(), "a connection created the file again");
        // Once lost, always lost: a file put back at the path is not the one opened.
        drop(open(&path).unwrap());
        assert!(db.check_file().is_err());

        let other = dir.path().join("c.db");
        let s = served(&other);
        let fresh = dir.path().join("fresh.db");
        drop(open(&fresh).unwrap());
        std::fs::rename(&fresh, &other).unwrap();
        let e = s.database.check_file().unwrap_err();
        assert!(e.to_string().contains("replaced"), "{e}");
    }
}
