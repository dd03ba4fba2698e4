//! The WAL's checkpointer: what each of its rounds does to keep the write-ahead log in
//! bounds while a server writes, and the SQLite calls it needs. The engine runs its rounds
//! on a thread of its own (`engine::periodic`); nothing here starts a thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::open::{connect, OpenError, BUSY_TIMEOUT};
use super::watch::{wal_path, FileWatch};
use super::Writer;

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

/// Checkpoints the WAL, a round at a time. SQLite's default, a checkpoint run by the
/// committing connection once the WAL passes 1000 pages, makes the request that commits a
/// big write (a large start) also copy all of it back into the database file. The server's
/// connections turn that off, and these rounds do it instead, PASSIVE (never waiting for
/// readers or writers).
///
/// Under a steady stream of writes a PASSIVE checkpoint never catches up with the last
/// frame, and SQLite starts the log over only after one that did: alone, the WAL grows
/// without end (docs/performance.md has how far). So once the WAL's frames pass
/// `Tuning::wal_limit`, a round restarts it (see `restart`), holding the server's writer
/// for the last step only. When the writes pause, a TRUNCATE empties a WAL file past the
/// limit. Each round also checks that the data file is still the one opened, and logs an
/// error the first time it is not. `finish`, at the stop, truncates the WAL.
pub struct Checkpointer {
    conn: Connection,
    wal: PathBuf,
    tuning: Tuning,
    /// The bytes of one WAL frame: a page and its 24-byte header.
    frame_bytes: u64,
    watch: Arc<FileWatch>,
    writer: Writer,
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
    /// The checkpointer of the server's file at `path`, on a connection of its own, holding
    /// `writer` for the steps that must not share the file with a write.
    pub(super) fn new(
        path: &Path,
        tuning: Tuning,
        watch: Arc<FileWatch>,
        writer: Writer,
    ) -> Result<Checkpointer, OpenError> {
        let conn = connect(path)?;
        let page_size: u32 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|source| OpenError::Sqlite { path: path.to_path_buf(), source })?;
        Ok(Checkpointer {
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
        })
    }

    /// One round: check the file, copy what the WAL holds, and start the log over or empty it
    /// when it is past its bound.
    pub fn round(&mut self) {
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
                let _turn = self.writer.lock();
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
    /// between back-to-back writes, which under a heavy stream of writes it wins late, with
    /// a large WAL, and then holds the writes long.
    ///
    /// What it does while the writes wait is kept to what the last few milliseconds wrote. A
    /// checkpoint syncs the database file only when it copied the WAL's last frame, which
    /// under steady writes the PASSIVE ones never do, so the held one would flush every page
    /// they copied. So first, without the writer: sync those, then copy what came meanwhile
    /// and sync it again, until a round copies few frames (`CAUGHT_UP_FRAMES`, at most
    /// `CATCH_UP_ROUNDS`), and sync the WAL (each checkpoint synced it up to what it copied;
    /// this covers the frames since). The held step then copies and syncs the pages written
    /// since. `copied` is how many frames the round's PASSIVE checkpoint left copied.
    /// docs/performance.md has what the writes waited before and after these steps.
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
        let _turn = self.writer.lock();
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
    /// seconds or minutes, and waiting that out stopped every write for seconds at a time.
    /// With the short wait the writes go on, and the WAL starts over once the long read ends.
    fn held_checkpoint(&self, mode: &str) -> rusqlite::Result<Checkpointed> {
        self.conn.busy_timeout(HELD_WAIT)?;
        let done = checkpoint(&self.conn, mode);
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        done
    }

    /// At the stop: the WAL emptied, unless the file is no longer the one opened.
    pub fn finish(self) {
        if !self.watch.is_lost() {
            let _ = checkpoint(&self.conn, "TRUNCATE");
        }
    }
}

/// How long a checkpoint made with the writes held waits for readers to move on
/// (`Checkpointer::held_checkpoint`), and how long the checkpointer then lets a reader that
/// held it off go on before it tries again: while an export or a backup reads, the writes
/// wait at most `HELD_WAIT` in every `HELD_OFF_PAUSE` or so for the WAL's sake.
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::db::{open_for_serving, Database, Served};

    /// The engine's loop (`engine::periodic`, which this layer may not import), as a test
    /// needs it: the checkpointer's rounds on a thread every `Tuning::checkpoint_every` until
    /// dropped, then its last step.
    struct Rounds {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Rounds {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    fn checkpointed(path: &Path, tuning: Tuning) -> (Database, Writer, Rounds) {
        let Served { database, writer, checkpointer } = open_for_serving(path, 1, tuning).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut checkpointer = checkpointer;
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(tuning.checkpoint_every);
                checkpointer.round();
            }
            checkpointer.finish();
        });
        (database, writer, Rounds { stop, thread: Some(thread) })
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
        let (db, writer, _rounds) = checkpointed(&path, tuning);
        writer.lock().execute_batch("CREATE TABLE filler (x)").unwrap();
        let wal = wal_path(&path);
        // Back to back, as the server's writer commits: 12,000 rows of 3,000 bytes. Each
        // commit writes about three frames (the row's page, its parent and page 1), so about
        // 145 MiB of frames go through the WAL.
        let (mut largest, mut last, mut cut) = (0, 0, 0);
        for _ in 0..12_000 {
            writer.lock().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
            let size = std::fs::metadata(&wal).unwrap().len();
            largest = largest.max(size);
            cut += usize::from(size < last);
            last = size;
        }
        // The log started over again and again, each time cut back to twice the bound. How far
        // past the bound it grows in between depends on the disk's syncs and on when the
        // checkpointer gets the writer (this loop takes it back at once): a few MiB on an idle
        // machine, tens beside a busy build. Without the restarts it would hold all 145 MiB.
        assert!(cut >= 3, "the WAL was cut back {cut} times");
        assert!(largest < 100 << 20, "the WAL grew to {largest} bytes");
        let n: i64 = db.reader().unwrap().query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
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
        let (_db, writer, _rounds) = checkpointed(&path, tuning);
        writer.lock().execute_batch("CREATE TABLE filler (x); INSERT INTO filler VALUES (1);").unwrap();
        let reader = crate::db::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader.query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        // Writes for 1.5 s: from early on every round of the checkpointer finds the WAL past its
        // bound, and the reader in the way of a restart.
        let wal = wal_path(&path);
        let (started, mut slowest, mut written) = (Instant::now(), Duration::ZERO, 0);
        while started.elapsed() < Duration::from_millis(1500) {
            let t = Instant::now();
            writer.lock().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
            slowest = slowest.max(t.elapsed());
            written += 1;
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > 4 << 20, "{written} writes");
        // No write waited the reader out: a held checkpoint gives up after its short wait
        // (`HELD_WAIT`), where the connection's own busy timeout would have held a write for
        // all of `BUSY_TIMEOUT` at each restart.
        assert!(slowest < BUSY_TIMEOUT, "a write waited {slowest:?} ({written} written)");
        // The reader still sees its snapshot; once it ends, the WAL starts over again.
        let n: i64 = reader.query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        reader.execute_batch("COMMIT").unwrap();
        let grown = std::fs::metadata(&wal).unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            writer.lock().execute("INSERT INTO filler VALUES (randomblob(3000))", []).unwrap();
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
        let (db, writer, _rounds) = checkpointed(&path, tuning);
        // 8 MB written in one transaction: the WAL grows to hold it all.
        writer
            .lock()
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
        let n: i64 = db.reader().unwrap().query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 8000);
    }

    #[test]
    fn the_checkpointer_copies_the_wal_into_the_database_and_empties_it_at_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let (db, writer, rounds) = checkpointed(&path, Tuning::default());
        let conn = writer.lock();
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
        // The last step empties the WAL.
        drop(rounds);
        assert_eq!(std::fs::metadata(wal_path(&path)).unwrap().len(), 0);
        let n: i64 = db.reader().unwrap().query_row("SELECT COUNT(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 20_000);
    }
}
