//! Connection policy: opening the SQLite file, per-connection pragmas, the schema, and
//! guarding the file while a server holds it.
//!
//! Owns how a connection is set up and nothing else; every query lives in `store`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::periodic::Periodic;

pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

/// The server's connections, the thread that checkpoints their write-ahead log and watches
/// the file, and the lock that keeps a second server off the file.
#[derive(Clone)]
pub struct Pool {
    inner: r2d2::Pool<SqliteConnectionManager>,
    writer: Arc<Mutex<Connection>>,
    watch: Arc<FileWatch>,
    /// A connection that only asks `PRAGMA data_version` (see `data_version`).
    version: Arc<Mutex<Connection>>,
    _checkpointer: Arc<Periodic>,
    _lock: Arc<File>,
}

impl Pool {
    /// A connection for reading (`query_only`), waiting for one to be free (r2d2's timeout,
    /// 30 s). All of them are opened at start and kept, so none is ever opened later, when
    /// the file might be gone.
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

    /// A token that changes whenever the data has: SQLite's `PRAGMA data_version` on a
    /// connection of its own, which moves with every commit of any other connection, this
    /// server's writer and another process's (an `import` beside the server) alike. Read
    /// before a read runs, so that an answer is never older than the token given with it (a
    /// write in between makes the next request fetch again). About a microsecond; the API's
    /// conditional reads use it (`api::fresh`). None if SQLite cannot say.
    pub fn data_version(&self) -> Option<i64> {
        let conn = self.version.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.pragma_query_value(None, "data_version", |r| r.get(0)).ok()
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

/// The data file's path no longer names the file the server has open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the data file {path} was {what} while the server had it open")]
pub struct FileLost {
    pub path: PathBuf,
    pub what: &'static str,
}

/// The device and inode of the data file (and of its WAL once there is one), taken at start,
/// and whether they were ever found changed: from then on the file is lost for good, since
/// the server's connections hold the old, unlinked one.
struct FileWatch {
    path: PathBuf,
    db: (u64, u64),
    wal: Mutex<Option<(u64, u64)>>,
    lost: AtomicBool,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The file SQLite (or backfilld) keeps beside the data file: `FILE-wal`, `FILE.lock`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn wal_path(path: &Path) -> PathBuf {
    beside(path, "-wal")
}

impl FileWatch {
    fn new(path: &Path) -> std::io::Result<FileWatch> {
        Ok(FileWatch {
            path: path.to_path_buf(),
            db: identity(path)?,
            wal: Mutex::new(None),
            lost: AtomicBool::new(false),
        })
    }

    fn lost(&self, what: &'static str) -> FileLost {
        FileLost { path: self.path.clone(), what }
    }

    fn check(&self) -> Result<(), FileLost> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost("deleted or replaced"));
        }
        let found = match identity(&self.path) {
            Ok(id) if id == self.db => self.check_wal(),
            Ok(_) => Err(self.lost("replaced by another file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.lost("deleted or moved")),
            // Anything else (a permission change on the folder, an I/O error) says nothing
            // about which file the path names: asked again next time.
            Err(e) => {
                log::warn!("cannot check the data file {}: {e}", self.path.display());
                Ok(())
            }
        };
        if found.is_err() {
            self.lost.store(true, Ordering::Release);
        }
        found
    }

    /// The WAL is SQLite's to create, and it stays (truncated, never deleted) while any
    /// connection is open; so once seen, it must stay the same file.
    fn check_wal(&self) -> Result<(), FileLost> {
        let mut known = self.wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = match identity(&wal_path(&self.path)) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return Ok(()),
        };
        match (*known, found) {
            (None, found) => *known = found,
            (Some(old), Some(new)) if old == new => {}
            (Some(_), Some(_)) => return Err(self.lost("given a write-ahead log (-wal file) that is not its own")),
            (Some(_), None) => return Err(self.lost("stripped of its write-ahead log (-wal file)")),
        }
        Ok(())
    }
}

/// The writer's page cache: a 100,000-run start dirties about 60 MiB of pages, and every page
/// that does not fit is spilled to the WAL mid-transaction and often written again later.
/// 32 MiB halves the spills and keeps the process within its 64 MiB budget.
const WRITER_CACHE_KIB: i64 = 32 << 10;

/// How the server keeps its files in bounds; the defaults suit a server, tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// How often the checkpointer copies committed pages from the WAL into the database and
    /// checks that the file is still there.
    pub checkpoint_every: Duration,
    /// The WAL's bound: once its frames pass it the checkpointer makes the next write start
    /// the log over (RESTART); a file grown past twice this is cut back to that then
    /// (`journal_size_limit`), and once the writes have paused for `idle` a file past this is
    /// emptied (TRUNCATE).
    pub wal_limit: u64,
    pub idle: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { checkpoint_every: Duration::from_millis(200), wal_limit: 128 << 20, idle: Duration::from_secs(1) }
    }
}

/// Checkpoints the WAL from a thread of its own. SQLite's default, a checkpoint run by the
/// committing connection once the WAL passes 1000 pages, makes the request that commits a
/// big write (a 100,000-run start) also copy all of it back into the database file: 13% of
/// that request. Pooled connections turn that off and this thread does it instead, PASSIVE
/// (it never waits for readers or writers).
///
/// Under a steady stream of writes a PASSIVE checkpoint never catches up with the last
/// frame, and SQLite starts the log over only after one that did: alone, it grows the WAL
/// without end (1.5 GB in 8 s of creates, examples/bench.rs). So once the WAL's frames pass
/// `Tuning::wal_limit`, this thread restarts it (see `restart`), holding the server's writer
/// for the last step only. When the writes pause, a TRUNCATE empties a WAL file past the
/// limit. It also checks, each time, that the data file is still the one opened, and logs
/// an error the first time it is not. It stops, truncating the WAL, when the last `Pool`
/// clone is dropped, which waits for it.
struct Checkpointer {
    conn: Connection,
    wal: PathBuf,
    tuning: Tuning,
    /// The bytes of one WAL frame: a page and its 24-byte header.
    frame_bytes: u64,
    watch: Arc<FileWatch>,
    writer: Arc<Mutex<Connection>>,
    last_frames: i64,
    unchanged_since: Instant,
    /// The WAL's frames when the last RESTART left it to start over: until a write does, it
    /// still counts them, and there is nothing more to do.
    restarted_at: i64,
    /// No checkpoint with the writes held before this: one was held off by a reader lately.
    held_off_until: Instant,
    reported: bool,
}

impl Checkpointer {
    fn start(
        path: &Path,
        tuning: Tuning,
        watch: Arc<FileWatch>,
        writer: Arc<Mutex<Connection>>,
    ) -> Result<Periodic, OpenError> {
        let conn = connect(path)?;
        let page_size: u32 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|source| OpenError::Sqlite { path: path.to_path_buf(), source })?;
        let state = Checkpointer {
            conn,
            wal: wal_path(path),
            tuning,
            frame_bytes: u64::from(page_size) + 24,
            watch,
            writer,
            last_frames: -1,
            unchanged_since: Instant::now(),
            restarted_at: -1,
            held_off_until: Instant::now(),
            reported: false,
        };
        Periodic::start("wal-checkpoint", tuning.checkpoint_every, state, Checkpointer::round, Checkpointer::finish)
            .map_err(|e| OpenError::Thread(e.to_string()))
    }

    fn round(&mut self) {
        if let Err(e) = self.watch.check() {
            if !self.reported {
                log::error!(
                    "{e}: writes are refused from now on, since they would go to the old file and be \
                     lost at the next start; reads go on from the old file. Restore the file (or stop \
                     backfilld, put the right file in place) and restart backfilld"
                );
                self.reported = true;
            }
            return;
        }
        let Checkpointed { frames, copied, .. } = match checkpoint(&self.conn, "PASSIVE") {
            Ok(done) => done,
            Err(e) => return log::warn!("WAL checkpoint failed (will retry): {e}"),
        };
        if frames != self.last_frames {
            self.last_frames = frames;
            self.unchanged_since = Instant::now();
        }
        let idle = frames == copied && self.unchanged_since.elapsed() >= self.tuning.idle;
        if Instant::now() < self.held_off_until {
            // A reader was in the way of the last try: let it go on for a while.
        } else if idle {
            if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > self.tuning.wal_limit) {
                let _turn = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match self.held_checkpoint("TRUNCATE") {
                    Ok(Checkpointed { busy: true, .. }) => self.held_off_until = Instant::now() + HELD_OFF_PAUSE,
                    Ok(_) => {}
                    Err(e) => log::warn!("WAL checkpoint (TRUNCATE) failed (will retry): {e}"),
                }
            }
        } else if frames != self.restarted_at && frames.unsigned_abs() * self.frame_bytes > self.tuning.wal_limit {
            self.restart(copied);
        }
    }

    /// Makes the next write start the log over: a RESTART checkpoint with the server's writer
    /// held, so that it gets its turn at once instead of polling for SQLite's write lock
    /// between back-to-back writes (under 5,000 writes a second it otherwise won only with
    /// the WAL at 400 MiB, and then held the writes for 750 ms).
    ///
    /// What it does while the writes wait is kept to what the last few milliseconds wrote. A
    /// checkpoint syncs the database file only when it copied the WAL's last frame, which
    /// under steady writes the PASSIVE ones never do, so the held one would flush every page
    /// they copied (at about 10 µs a page here). So first, without the writer: sync those,
    /// then copy what came meanwhile and sync it again, until a round copies few frames
    /// (`CAUGHT_UP_FRAMES`, at most `CATCH_UP_ROUNDS`), and sync the WAL (each checkpoint
    /// synced it up to what it copied; this covers the frames since). The held step then
    /// copies and syncs the pages written since. `copied` is how many frames the round's
    /// PASSIVE checkpoint left copied. Under claims and reports at 2,000 runs a second on the
    /// bench file (examples/bench.rs), a restart held the writes for 35 to 58 ms, every
    /// 0.4 s, before these steps (with the bound then at 64 MiB), and for 0.4 to 8.2 ms, 2 to
    /// 4 ms at the median, about every 0.9 s after (five runs).
    fn restart(&mut self, copied: i64) {
        use rusqlite::ffi::{SQLITE_FCNTL_FILE_POINTER, SQLITE_FCNTL_JOURNAL_POINTER};
        let ahead = || -> rusqlite::Result<()> {
            sync_file(&self.conn, SQLITE_FCNTL_FILE_POINTER)?;
            let mut before = copied;
            for _ in 0..CATCH_UP_ROUNDS {
                let now = checkpoint(&self.conn, "PASSIVE")?.copied;
                sync_file(&self.conn, SQLITE_FCNTL_FILE_POINTER)?;
                if now - before <= CAUGHT_UP_FRAMES {
                    break;
                }
                before = now;
            }
            sync_file(&self.conn, SQLITE_FCNTL_JOURNAL_POINTER)
        };
        if let Err(e) = ahead() {
            // The held checkpoint below syncs all of it anyway, only with the writes waiting.
            log::warn!("WAL checkpoint: syncing ahead of the restart failed: {e}");
        }
        let _turn = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = Instant::now();
        let waited = || held.elapsed().as_secs_f64() * 1e3;
        match self.held_checkpoint("RESTART") {
            Ok(Checkpointed { busy: false, frames, .. }) => {
                self.restarted_at = frames;
                log::debug!("WAL set to start over; the writes waited {:.2} ms", waited());
            }
            Ok(_) => {
                self.held_off_until = Instant::now() + HELD_OFF_PAUSE;
                log::debug!("WAL restart held off by a reader (will retry); the writes waited {:.2} ms", waited());
            }
            Err(e) => log::warn!("WAL checkpoint (RESTART) failed (will retry): {e}"),
        }
    }

    /// A checkpoint of `mode` made with the server's writer held, which waits for readers
    /// (SQLite's busy handler) `HELD_WAIT` at most instead of the connection's 5 s: the API's
    /// reads end within milliseconds, but an `export` or a `backup` reads one snapshot for
    /// seconds or minutes, and waiting that out stopped every write. During an export of the
    /// bench file (1.2 million backfills, 2.8 million runs, 23 s) beside 4 clients writing
    /// 4,200 requests a second, the writes stood still 5 s at a time: no write at all in 17
    /// of the 23 seconds. With the short wait they went on at 2,300 a second (the export took
    /// a core), the slowest 55 to 110 ms; once it ended, the WAL (2.5 GB by then) started
    /// over with the writes held 0.7 s.
    fn held_checkpoint(&self, mode: &str) -> rusqlite::Result<Checkpointed> {
        self.conn.busy_timeout(HELD_WAIT)?;
        let done = checkpoint(&self.conn, mode);
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        done
    }

    /// At the stop: the WAL emptied, unless the file is no longer the one opened.
    fn finish(self) {
        if !self.watch.lost.load(Ordering::Acquire) {
            let _ = checkpoint(&self.conn, "TRUNCATE");
        }
    }
}

/// How long a checkpoint made with the writes held waits for readers to move on
/// (`Checkpointer::held_checkpoint`), and how long the checkpointer then lets a reader that
/// held it off go on before it tries again: while an export or a backup reads, the writes
/// wait at most 50 ms in every 1.2 s or so for the WAL's sake.
const HELD_WAIT: Duration = Duration::from_millis(50);
const HELD_OFF_PAUSE: Duration = Duration::from_secs(1);

/// At most how many times `Checkpointer::restart` copies and syncs what came in meanwhile
/// before it holds the writes, and how few frames copied say it has caught up.
const CATCH_UP_ROUNDS: usize = 4;
const CAUGHT_UP_FRAMES: i64 = 256;

/// Syncs the connection's database file (`SQLITE_FCNTL_FILE_POINTER`) or its WAL
/// (`SQLITE_FCNTL_JOURNAL_POINTER`) through SQLite's own file handle, as a checkpoint does.
/// (A second handle of our own would not do: closing it would drop the process's POSIX locks
/// on the file, SQLite's included.) A file not open yet has nothing to sync.
fn sync_file(conn: &Connection, which: std::ffi::c_int) -> rusqlite::Result<()> {
    use rusqlite::ffi;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is the connection's own and is used on this thread only, while
    // `conn` is borrowed; the file control writes a `sqlite3_file` pointer (or null) into
    // `file`, which SQLite keeps open while the connection is; a file's `pMethods` is
    // null unless it is open, and `xSync` is then SQLite's own VFS function.
    let rc = unsafe {
        let rc = ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), which, (&raw mut file).cast());
        match file.as_ref().and_then(|f| f.pMethods.as_ref()).and_then(|m| m.xSync) {
            Some(sync) if rc == ffi::SQLITE_OK => sync(file, ffi::SQLITE_SYNC_NORMAL),
            _ => rc,
        }
    };
    match rc {
        ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("sync".into()))),
    }
}

/// What a checkpoint did: whether it stopped short (SQLite's write lock or a reader was in
/// the way), the WAL's frames, and how many of them are copied into the database file.
struct Checkpointed {
    busy: bool,
    frames: i64,
    copied: i64,
}

/// Runs a checkpoint of `mode`.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Checkpointed> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Checkpointed { busy: r.get::<_, i64>(0)? != 0, frames: r.get(1)?, copied: r.get(2)? })
    })
}

/// The schema version this build writes; `PRAGMA user_version` holds a file's. Version 2
/// added `run_tally` and the status listing indexes; version 3 the leases of claimed runs,
/// `is_paused` and the claim indexes; version 4 users, their sessions, the JWT secret and the
/// schedules' tokens; version 5 the unique index on usernames (which a version 4 file made
/// by an earlier build lacks); version 6 the backfills' counts by status. An older file gets
/// what it lacks at open.
pub const SCHEMA_VERSION: i64 = 6;

/// The columns versions 3 and 4 added to tables an older file already has (`CREATE TABLE IF
/// NOT EXISTS` leaves an existing table alone): table, column, definition. Adding a column
/// rewrites no rows in SQLite.
const ADDED_COLUMNS: [(&str, &str, &str); 6] = [
    ("backfill", "is_paused", "INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1))"),
    ("pipeline_run", "worker", "TEXT"),
    ("pipeline_run", "lease_seconds", "INTEGER"),
    ("pipeline_run", "lease_expires_at", "INTEGER"),
    ("pipeline_run", "attempt", "INTEGER"),
    ("pipeline_schedule", "token", "TEXT"),
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

/// `PRAGMA application_id` of a backfilld file: "bfld".
pub const APPLICATION_ID: i64 = 0x6266_6C64;

const SCHEMA: &str = include_str!("../schema.sql");

/// How long a server connection waits for another's write lock before giving up with
/// SQLITE_BUSY. Writes here are short transactions; five seconds rides out any burst of them.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command (`import`, `token`) waits for the write lock of a file a server is
/// writing: the longest write a server makes is a start, 0.24 s for the default
/// `--max-runs` of 100,000 runs on a fresh file (examples/start_bench.rs) and 0.39 s on the
/// bench's 2,000,000-run file (examples/bench.rs); 60 s covers starts of millions.
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

/// Turns the memory map off on `conn`, for a command that reads the whole file once
/// (`export`, `backup`): the map would not make that faster, but would count every page of
/// the file in the process's resident memory (1.8 GB for the bench's file) until it exits.
pub fn unmap(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "mmap_size", 0)
}

/// Opens an existing file, never creating it: after start-up, a missing file is an error,
/// not a new empty database.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}

/// A configured connection to an existing, schema-applied database (`open` made it so).
fn connect(path: &Path) -> Result<Connection, OpenError> {
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
/// running server. `backfilld import` and `token` use it directly; `open_pool` uses it once
/// before handing out pooled connections.
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
    if matches!(found, Found::Ours(SCHEMA_VERSION)) {
        // Up to date: nothing to write, so reading commands never wait for a server's lock.
        return Ok(conn);
    }
    // WAL lets readers go on while a writer commits; the mode is stored in the file, so once
    // is enough. It also makes a killed writer's partial transaction invisible after restart.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite)?;
    if matches!(found, Found::Ours(1..=4)) {
        // Before the schema, whose indexes and updates name the new columns.
        add_columns(&tx).map_err(sqlite)?;
    }
    tx.execute_batch(SCHEMA).map_err(sqlite)?;
    if matches!(found, Found::Ours(1)) {
        crate::store::pipeline_runs::fill_tally(&tx).map_err(sqlite)?;
    }
    if matches!(found, Found::Ours(1..=5)) {
        crate::store::backfills::fill_status_counts(&tx).map_err(sqlite)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sqlite)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(sqlite)?;
    tx.commit().map_err(sqlite)?;
    Ok(conn)
}

/// Takes the data file's lock for a server: an advisory `flock` on `FILE.lock`, which
/// commands (`import`, `token`) do not take. Not on the data file itself: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.
/// Held as long as the returned file is open; the file itself stays (removing it would let
/// two servers lock two different files).
fn lock_for_serving(path: &Path) -> Result<File, OpenError> {
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

/// A pool of `size` reading connections and one writer to the database at `path`, schema
/// applied, with its WAL checkpointed by a thread of its own (see `Checkpointer`). Refused
/// when another server holds the file.
pub fn open_pool(path: &Path, size: u32) -> Result<Pool, OpenError> {
    open_pool_tuned(path, size, Tuning::default())
}

/// `open_pool` with the checkpointer's timing and the WAL bound given.
pub fn open_pool_tuned(path: &Path, size: u32, tuning: Tuning) -> Result<Pool, OpenError> {
    drop(open(path)?);
    let lock = lock_for_serving(path)?;
    let watch = Arc::new(FileWatch::new(path).map_err(|source| OpenError::Io { path: path.to_path_buf(), source })?);
    // Past twice the bound a WAL file is cut back (see `Tuning::wal_limit`); below it, a file
    // that a restart leaves at its size is written over, not cut and grown again each time.
    let wal_file_limit = i64::try_from(tuning.wal_limit.saturating_mul(2)).unwrap_or(i64::MAX);
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| {
            configure(c)?;
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.pragma_update(None, "journal_size_limit", wal_file_limit)?;
            // The pool's connections only read: writes go through `writer`, one at a time.
            c.pragma_update(None, "query_only", true)
        });
    let size = size.max(1);
    let inner = r2d2::Pool::builder()
        .max_size(size)
        // r2d2 would run a query on every checkout to test the connection; a SQLite file
        // connection does not go stale the way a network one does.
        .test_on_check_out(false)
        // Every connection opened now and kept for good: one opened later could find the
        // file gone (they never create it) and fail the request.
        .min_idle(Some(size))
        .idle_timeout(None)
        .max_lifetime(None)
        .build(manager)
        .map_err(|source| OpenError::Pool { path: path.to_path_buf(), source })?;
    let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
    let writer = connect(path)?;
    writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    writer.pragma_update(None, "journal_size_limit", wal_file_limit).map_err(sqlite)?;
    writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(sqlite)?;
    let writer = Arc::new(Mutex::new(writer));
    let checkpointer = Checkpointer::start(path, tuning, watch.clone(), writer.clone())?;
    let version = connect(path)?;
    Ok(Pool {
        inner,
        writer,
        watch,
        version: Arc::new(Mutex::new(version)),
        _checkpointer: Arc::new(checkpointer),
        _lock: Arc::new(lock),
    })
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
        let conn = pool.writer();
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
        let conn = pool.writer();
        let e = conn
            .execute(
                "INSERT INTO pipeline_run (pipeline_uuid, backfill_id, created_at, updated_at) VALUES ('p', 999, 0, 0)",
                [],
            )
            .unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation));
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
            assert!(open_pool(&path, 1).is_err());
            assert_eq!(sha(&path), before, "{name} was changed");
            assert!(!dir.path().join(format!("{name}-wal")).exists());
        }
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
        let secret = crate::store::users::secret(&conn, "jwt_secret").unwrap().unwrap();
        assert_eq!(secret.len(), 32);
        // Version 6's counts by status, filled from the rows, then kept by the triggers.
        let counts = crate::store::backfills::status_counts(&conn).unwrap();
        assert!(counts.contains(&("running".into(), 1)) && counts.contains(&(String::new(), 1)), "{counts:?}");
        conn.execute("UPDATE backfill SET status = 'completed' WHERE name = 'b'", []).unwrap();
        conn.execute("DELETE FROM backfill WHERE name = 'c'", []).unwrap();
        let counts = crate::store::backfills::status_counts(&conn).unwrap();
        assert!(counts.contains(&("running".into(), 0)) && counts.contains(&("completed".into(), 1)), "{counts:?}");
        assert!(counts.contains(&(String::new(), 0)), "{counts:?}");
        drop(conn);
        // Opening again keeps the secret (sessions' cookies stay valid across restarts).
        let conn = open(&path).unwrap();
        assert_eq!(crate::store::users::secret(&conn, "jwt_secret").unwrap().unwrap(), secret);
        // A version 4 file without the username index (an earlier build's) gets it.
        conn.execute_batch("DROP INDEX user_username; PRAGMA user_version = 4;").unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let has: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'user_username')", [], |r| r.get(0))
            .unwrap();
        assert!(has);
    }

    #[test]
    fn a_second_server_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let first = open_pool(&path, 1).unwrap();
        let e = open_pool(&path, 1).err().unwrap();
        assert!(matches!(e, OpenError::Served { .. }), "{e}");
        // Commands still open it while it is served.
        drop(open(&path).unwrap());
        drop(first);
        drop(open_pool(&path, 1).unwrap());
    }

    #[test]
    fn pooled_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open_pool(&dir.path().join("b.db"), 2).unwrap();
        let e = pool.get().unwrap().execute("DELETE FROM backfill", []).unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
    }

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_never_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let pool = open_pool(&path, 2).unwrap();
        pool.check_file().unwrap();
        let read = pool.get().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let e = pool.check_file().unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
        // Reads of the open file go on; nothing makes a new file at the path.
        let n: i64 = read.query_row("SELECT COUNT(*) FROM backfill", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        std::thread::sleep(Duration::from_millis(500));
        assert!(!path.exists(), "a connection created the file again");
        // Once lost, always lost: a file put back at the path is not the one opened.
        drop(open(&path).unwrap());
        assert!(pool.check_file().is_err());

        let other = dir.path().join("c.db");
        let pool = open_pool(&other, 1).unwrap();
        let fresh = dir.path().join("fresh.db");
        drop(open(&fresh).unwrap());
        std::fs::rename(&fresh, &other).unwrap();
        let e = pool.check_file().unwrap_err();
        assert!(e.to_string().contains("replaced"), "{e}");
    }

    #[test]
    fn a_wal_under_steady_writes_starts_over_near_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let tuning = Tuning {
            checkpoint_every: Duration::from_millis(10),
            wal_limit: 1 << 20,
            // Never idle here: only the restart can keep the WAL in bounds.
            idle: Duration::from_secs(3600),
        };
        let pool = open_pool_tuned(&path, 1, tuning).unwrap();
        pool.writer().execute_batch("CREATE TABLE filler (x)").unwrap();
        let wal = wal_path(&path);
        // Back to back, as the server's writer commits: 12,000 rows of 3,000 bytes. Each
        // commit writes about three frames (the row's page, its parent and page 1), so about
        // 145 MiB of frames go through the WAL.
        let (mut largest, mut last, mut cut) = (0, 0, 0);
        for _ in 0..12_000 {
            pool.writer().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
            let size = std::fs::metadata(&wal).unwrap().len();
            largest = largest.max(size);
            cut += usize::from(size < last);
            last = size;
        }
        // The log started over again and again, each time cut back to twice the bound. How far
        // past the bound it grows in between depends on the disk's syncs and on when the
        // checkpointer gets the writer (this loop takes it back at once): 7 to 10 MiB on an
        // idle machine, up to 53 MiB beside a busy build. Without the restarts it would hold
        // all 145 MiB.
        assert!(cut >= 3, "the WAL was cut back {cut} times");
        assert!(largest < 100 << 20, "the WAL grew to {largest} bytes");
        let n: i64 = pool.get().unwrap().query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 12_000);
    }

    /// An export or a backup reads one snapshot for seconds or minutes. While it does, the WAL
    /// cannot start over; the checkpointer must not hold the writes to wait for it.
    #[test]
    fn a_long_reader_does_not_hold_up_the_writes_when_the_wal_must_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let tuning =
            Tuning { checkpoint_every: Duration::from_millis(10), wal_limit: 1 << 20, idle: Duration::from_secs(3600) };
        let pool = open_pool_tuned(&path, 1, tuning).unwrap();
        pool.writer().execute_batch("CREATE TABLE filler (x); INSERT INTO filler VALUES (1);").unwrap();
        let reader = open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader.query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        // Writes for 1.5 s: from early on every round of the checkpointer finds the WAL past its
        // bound, and the reader in the way of a restart.
        let wal = wal_path(&path);
        let (started, mut slowest, mut written) = (Instant::now(), Duration::ZERO, 0);
        while started.elapsed() < Duration::from_millis(1500) {
            let t = Instant::now();
            pool.writer().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
            slowest = slowest.max(t.elapsed());
            written += 1;
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > 4 << 20, "{written} writes");
        // Each write took at most a held checkpoint's short wait (and the disk's syncs).
        assert!(slowest < Duration::from_millis(500), "a write waited {slowest:?} ({written} written)");
        // The reader still sees its snapshot; once it ends, the WAL starts over again.
        let n: i64 = reader.query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        reader.execute_batch("COMMIT").unwrap();
        let grown = std::fs::metadata(&wal).unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            pool.writer().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
            if std::fs::metadata(&wal).unwrap().len() < grown {
                break;
            }
            assert!(Instant::now() < deadline, "the WAL never started over after the reader ended");
        }
    }

    #[test]
    fn an_idle_wal_is_truncated_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let tuning = Tuning {
            checkpoint_every: Duration::from_millis(20),
            wal_limit: 1 << 20,
            idle: Duration::from_millis(200),
        };
        let pool = open_pool_tuned(&path, 1, tuning).unwrap();
        // 8 MB written in one transaction: the WAL grows to hold it all.
        pool.writer()
            .execute_batch(
                "CREATE TABLE filler (x); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) \
                 INSERT INTO filler SELECT randomblob(1000) FROM n;",
            )
            .unwrap();
        let wal = wal_path(&path);
        assert!(std::fs::metadata(&wal).unwrap().len() > 4 << 20);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&wal).unwrap().len() > tuning.wal_limit {
            assert!(Instant::now() < deadline, "the idle WAL was never truncated");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The data is all in the database file.
        let n: i64 = pool.get().unwrap().query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 8000);
    }
}
