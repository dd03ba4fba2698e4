//! Connection policy: opening the SQLite file, per-connection pragmas, and the schema.
//!
//! Owns how a connection is set up and nothing else; every query lives in `store`.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

/// The server's connections, and the thread that checkpoints their write-ahead log.
#[derive(Clone)]
pub struct Pool {
    inner: r2d2::Pool<SqliteConnectionManager>,
    writer: Arc<Mutex<Connection>>,
    _checkpointer: Arc<Checkpointer>,
}

impl Pool {
    /// A connection for reading, waiting for one to be free (r2d2's timeout, 30 s).
    pub fn get(&self) -> Result<Conn, r2d2::Error> {
        self.inner.get()
    }

    /// The one connection that writes, held for a whole write transaction. SQLite lets one
    /// writer in at a time and makes the others poll with growing sleeps (its busy handler:
    /// waits of 1 to 100 ms), which under concurrent creates put 35 ms into p99; a queue in
    /// the process hands the turn over at once. Other processes (an `import`) still meet
    /// busy_timeout. Being one, it can have the larger cache a big start needs
    /// (`WRITER_CACHE_KIB`) without every pooled connection having it.
    pub fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic in another writer rolled its transaction back when it unwound (rusqlite's
        // Transaction drops with a rollback), so the connection is fine to use.
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer's page cache: a 100,000-run start dirties about 60 MiB of pages, and every page
/// that does not fit is spilled to the WAL mid-transaction and often written again later.
/// 32 MiB halves the spills and keeps the process within its 64 MiB budget.
const WRITER_CACHE_KIB: i64 = 32 << 10;

/// How often the checkpointer copies committed pages from the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Checkpoints the WAL from a thread of its own. SQLite's default, a checkpoint run by the
/// committing connection once the WAL passes 1000 pages, makes the request that commits a
/// big write (a 100,000-run start) also copy all of it back into the database file: 13% of
/// that request. Pooled connections turn that off and this thread does it instead, PASSIVE
/// (it never waits for readers or writers). It stops when the last `Pool` clone is dropped.
struct Checkpointer {
    _stop: Mutex<mpsc::Sender<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, OpenError> {
        let conn = connect(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                // Ends when the sender is dropped (Disconnected); a message never comes.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        log::warn!("WAL checkpoint failed (will retry): {e}");
                    }
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            })
            .map_err(|e| OpenError::Thread(e.to_string()))?;
        Ok(Checkpointer { _stop: Mutex::new(stop) })
    }
}

/// The schema version this build writes; `PRAGMA user_version` holds a file's.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = include_str!("../schema.sql");

/// How long a connection waits for another's write lock before giving up with SQLITE_BUSY.
/// Writes here are short transactions; five seconds rides out any burst of them.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of the database file is memory-mapped: 16 GiB, beyond any file backfilld makes.
const MMAP_SIZE: i64 = 16 << 30;

/// Why the database could not be opened. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the folder {path} for the database: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a backfilld database (not a SQLite file, or damaged): {source}")]
    NotADatabase { path: PathBuf, source: rusqlite::Error },
    #[error(
        "{path} has schema version {found}, newer than this backfilld understands ({SCHEMA_VERSION}); \
         use a newer backfilld with this file"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot open {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot open a connection pool on {path}: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
    #[error("cannot start the WAL checkpoint thread: {0}")]
    Thread(String),
}

/// Pragmas every connection needs, pooled or not.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // SQLite leaves foreign keys off unless each connection asks.
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits,
    // which a backfill server can afford for far cheaper writes (no fsync per commit).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Statement journals (a multi-row insert's undo log) and sorts stay in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Reads come straight from the OS page cache through a memory map, with no copy into
    // SQLite's own cache and no read() per page; the map is address space, not memory.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    // Every statement the store uses stays prepared (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// A configured connection to an existing, schema-applied database (`open` made it so).
fn connect(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let conn = Connection::open(path).map_err(sqlite)?;
    configure(&conn).map_err(sqlite)?;
    Ok(conn)
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

/// Opens (creating when missing, with its parent folder) the database at `path`, checks its
/// version, applies the schema, and returns a configured connection. `backfilld import` and
/// `token` use it directly; `open_pool` uses it once before handing out pooled connections.
pub fn open(path: &Path) -> Result<Connection, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| OpenError::CreateDir { path: parent.to_path_buf(), source })?;
    }
    let sqlite = |source: rusqlite::Error| {
        if is_not_a_database(&source) {
            OpenError::NotADatabase { path: path.to_path_buf(), source }
        } else {
            OpenError::Sqlite { path: path.to_path_buf(), source }
        }
    };
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    // Reading the header is the first thing that fails on a file that is not SQLite.
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::TooNew { path: path.to_path_buf(), found });
    }
    // WAL lets readers go on while a writer commits; the mode is stored in the file, so once
    // is enough. It also makes a killed writer's partial transaction invisible after restart.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    configure(&conn).map_err(sqlite)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite)?;
    tx.execute_batch(SCHEMA).map_err(sqlite)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sqlite)?;
    tx.commit().map_err(sqlite)?;
    Ok(conn)
}

/// A pool of `size` connections to the database at `path`, schema applied, with its WAL
/// checkpointed by a thread of its own (see `Checkpointer`).
pub fn open_pool(path: &Path, size: u32) -> Result<Pool, OpenError> {
    drop(open(path)?);
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        configure(c)?;
        c.pragma_update(None, "wal_autocheckpoint", 0)
    });
    let inner = r2d2::Pool::builder()
        .max_size(size.max(1))
        // r2d2 would run a query on every checkout to test the connection; a SQLite file
        // connection does not go stale the way a network one does.
        .test_on_check_out(false)
        // Tests and CLI runs start many short-lived servers: no idle connections to prefill.
        .min_idle(Some(1))
        .build(manager)
        .map_err(|source| OpenError::Pool { path: path.to_path_buf(), source })?;
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let writer = connect(path)?;
    writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(sqlite)?;
    Ok(Pool { inner, writer: Arc::new(Mutex::new(writer)), _checkpointer: Arc::new(Checkpointer::start(path)?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_is_idempotent_and_sets_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/b.db");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn the_checkpointer_empties_the_wal_and_stops_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let pool = open_pool(&path, 2).unwrap();
        let conn = pool.get().unwrap();
        conn.execute_batch(
            "CREATE TABLE filler (x); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             INSERT INTO filler SELECT randomblob(100) FROM n;",
        )
        .unwrap();
        // The committing connection did not checkpoint (its pages are in the WAL only); the
        // thread copies them into the database file soon.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < 2_000_000 {
            assert!(std::time::Instant::now() < deadline, "never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(conn);
        drop(pool);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let e = open(&path).unwrap_err();
        assert!(matches!(e, OpenError::TooNew { .. }), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        std::fs::write(&path, b"this is a text file, not a database, and it is long enough to have a header").unwrap();
        let e = open(&path).unwrap_err();
        assert!(matches!(e, OpenError::NotADatabase { .. }), "{e}");
    }

    #[test]
    fn pooled_connections_enforce_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open_pool(&dir.path().join("b.db"), 2).unwrap();
        let conn = pool.get().unwrap();
        let e = conn
            .execute(
                "INSERT INTO pipeline_run (pipeline_uuid, backfill_id, created_at, updated_at) VALUES ('p', 999, 0, 0)",
                [],
            )
            .unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation));
    }
}
