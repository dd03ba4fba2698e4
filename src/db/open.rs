//! Opening the data file: what a file at the path is (backfilld's, empty, another
//! application's, too new, not SQLite), why it cannot be opened, the pragmas every
//! connection gets, bringing an older file up to date (`upgrade`), and the lock a server
//! holds so that no second server opens the same file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::upgrade::{complete, upgrade, SCHEMA_VERSION};
use super::watch::beside;
use super::APPLICATION_ID;

/// How long a server connection waits for another's write lock before giving up with
/// SQLITE_BUSY. Writes here are short transactions; five seconds rides out any burst of them.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command (`import`, `token`) waits for the write lock of a file a server is
/// writing: the longest write a server makes is a start, which takes well under a second
/// for the default `--max-runs` (docs/performance.md); a minute covers starts of millions.
const COMMAND_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

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
        "{path} belongs to another application ({what}); backfilld leaves it untouched: pass --db a new file \
         or a backfilld data file"
    )]
    Foreign { path: PathBuf, what: String },
    #[error(
        "{path} has schema version {found}, newer than this backfilld understands ({SCHEMA_VERSION}); \
         use a newer backfilld with this file"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot open {path}: permission denied: {why}")]
    PermissionDenied { path: PathBuf, why: String },
    #[error("{path} is being served by another backfilld already (it holds {path}.lock): stop that one first, or pass --db another file")]
    Served { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot open a connection pool on {path}: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
}

/// Pragmas every connection needs, pooled or not.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
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

/// Turns the memory map off on `conn`, for a command that reads the whole file once
/// (`export`, `backup`): the map would not make that faster, but would count every page of
/// the file in the process's resident memory (gigabytes for a large file) until it exits.
pub fn unmap(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "mmap_size", 0)
}

/// Opens an existing file, never creating it: after start-up, a missing file is an error,
/// not a new empty database.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}

/// A configured connection to an existing, schema-applied database (`open` made it so).
pub(super) fn connect(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let conn = open_existing(path).map_err(sqlite)?;
    configure(&conn).map_err(sqlite)?;
    Ok(conn)
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

/// What a file at the data path is, found without writing to it.
enum Found {
    /// Nothing there, or an empty SQLite file: backfilld makes it its own.
    Empty,
    /// A backfilld file (marked, or of version 1, made before files were marked) and its
    /// schema version.
    Ours(i64),
}

/// Looks at the file through a read-only connection, so that a file of another application
/// is refused byte for byte untouched.
fn inspect(path: &Path) -> Result<Found, OpenError> {
    let sqlite = |source| classify(path, source);
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite)?;
    // Reading the header is the first thing that fails on a file that is not SQLite.
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(sqlite)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sqlite)?;
    let ours = ["backfill", "oauth_token", "pipeline_run", "pipeline_schedule"];
    match app {
        APPLICATION_ID => Ok(Found::Ours(version)),
        0 if tables.is_empty() && version == 0 => Ok(Found::Empty),
        0 if version == 1 && ours.iter().all(|t| tables.iter().any(|have| have == t)) => Ok(Found::Ours(1)),
        _ => {
            let mut listed = tables.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if tables.len() > 5 {
                listed.push_str(", ...");
            }
            let what = format!(
                "application_id {app:#x}, user_version {version}, tables: {}",
                if listed.is_empty() { "none" } else { &listed }
            );
            Err(OpenError::Foreign { path: path.to_path_buf(), what })
        }
    }
}

/// What an error opening `path` means: not a database, permissions, or SQLite's own word.
fn classify(path: &Path, source: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode::{CannotOpen, ReadOnly};
    if is_not_a_database(&source) {
        return OpenError::NotADatabase { path: path.to_path_buf(), source };
    }
    match source.sqlite_error_code() {
        Some(CannotOpen | ReadOnly) => {
            permission_problem(path).unwrap_or(OpenError::Sqlite { path: path.to_path_buf(), source })
        }
        _ => OpenError::Sqlite { path: path.to_path_buf(), source },
    }
}

/// Why a file could not be opened for writing, when the system says it is permissions: the
/// folder (where SQLite must create the -wal and -shm files beside the database) or the file.
fn permission_problem(path: &Path) -> Option<OpenError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let writable = |p: &Path| {
        let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return true };
        // SAFETY: a valid NUL-terminated path and a plain flag.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !writable(dir) {
        return Some(OpenError::PermissionDenied {
            path: path.to_path_buf(),
            why: format!(
                "backfilld must create files in the folder {} (the database, and its -wal and -shm files), \
                 and this user may not write there",
                dir.display()
            ),
        });
    }
    if path.exists() && !writable(path) {
        return Some(OpenError::PermissionDenied {
            path: path.to_path_buf(),
            why: "this user may not write the file".into(),
        });
    }
    None
}

/// Waits for another process's write lock up to `COMMAND_BUSY_TIMEOUT`, saying so once
/// after a second, instead of SQLite's 5 s `busy_timeout`.
fn command_busy_handler(tries: i32) -> bool {
    const STEP: Duration = Duration::from_millis(2);
    let waited = STEP * u32::try_from(tries).unwrap_or(u32::MAX);
    if tries == 500 {
        log::warn!(
            "waiting for the data file's write lock: a running server is writing (starting a large \
             backfill holds it for up to a second or so); waiting up to {} s",
            COMMAND_BUSY_TIMEOUT.as_secs()
        );
    }
    if waited >= COMMAND_BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

/// Opens (creating when missing, with its parent folder) the database at `path`, checks that
/// it is a backfilld file of a version it understands, brings its schema up to date, and
/// returns a configured connection that waits up to a minute for the write lock of a
/// running server. The commands (`import`, `token`, `user`, `export`) use it directly;
/// `open_for_serving` uses it once before opening the server's connections.
pub fn open(path: &Path) -> Result<Connection, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| OpenError::CreateDir { path: parent.to_path_buf(), source })?;
    }
    let sqlite = |source| classify(path, source);
    let found = if path.exists() { inspect(path)? } else { Found::Empty };
    if let Found::Ours(v) = found {
        if v > SCHEMA_VERSION {
            return Err(OpenError::TooNew { path: path.to_path_buf(), found: v });
        }
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    // SQLite quietly opens a file it may not write read-only; backfilld must write.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(sqlite)? {
        return Err(permission_problem(path).unwrap_or(OpenError::PermissionDenied {
            path: path.to_path_buf(),
            why: "the file could only be opened for reading".into(),
        }));
    }
    configure(&conn).map_err(sqlite)?;
    conn.busy_handler(Some(command_busy_handler)).map_err(sqlite)?;
    if matches!(found, Found::Ours(SCHEMA_VERSION)) && complete(&conn).map_err(sqlite)? {
        // Up to date: nothing to write, so reading commands never wait for a server's lock.
        return Ok(conn);
    }
    // WAL lets readers go on while a writer commits; the mode is stored in the file, so once
    // is enough. It also makes a killed writer's partial transaction invisible after restart.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite)?;
    let version = match found {
        Found::Empty => 0,
        Found::Ours(v) => v,
    };
    upgrade(&tx, version).map_err(sqlite)?;
    tx.commit().map_err(sqlite)?;
    Ok(conn)
}

/// Takes the data file's lock for a server: an advisory `flock` on `FILE.lock`, which
/// commands (`import`, `token`) do not take. Not on the data file itself: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.
/// Held as long as the returned file is open; the file itself stays (removing it would let
/// two servers lock two different files).
pub(super) fn lock_for_serving(path: &Path) -> Result<File, OpenError> {
    let lock = beside(path, ".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| OpenError::Io { path: lock.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Served { path: path.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Io { path: path.to_path_buf(), source }),
    }
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

    fn sha(path: &Path) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
    }

    #[test]
    fn a_file_of_another_application_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for (name, setup) in [
            ("app.db", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'x');"),
            // Another application's `backfill` table is still not backfilld's file.
            ("clash.db", "CREATE TABLE backfill (id INTEGER PRIMARY KEY, what TEXT); PRAGMA user_version = 3;"),
            ("marked.db", "PRAGMA application_id = 42;"),
        ] {
            let path = dir.path().join(name);
            Connection::open(&path).unwrap().execute_batch(setup).unwrap();
            let before = sha(&path);
            let e = open(&path).unwrap_err();
            assert!(matches!(e, OpenError::Foreign { .. }), "{name}: {e}");
            let message = e.to_string();
            assert!(message.contains("belongs to another application"), "{message}");
            assert!(!message.contains('\n') && !message.contains("CREATE"), "one line: {message}");
            assert!(crate::db::open_for_serving(&path, 1, crate::db::Tuning::default()).is_err());
            assert_eq!(sha(&path), before, "{name} was changed");
            assert!(!dir.path().join(format!("{name}-wal")).exists());
        }
    }
}
