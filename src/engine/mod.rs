//! The engine: where the services' work runs against the data file a server holds. Writes go
//! to one writer thread that commits what queued up meanwhile together (`writer`); reads run
//! on the caller's thread in one snapshot, except slow ones, which go to a lane of their own
//! (`lane`), as do logins' password checks; a thread sweeps expired leases (`sweep`) and one
//! runs the WAL checkpointer's rounds (`periodic`).
//!
//! Owns the server's `db::Database` and its one `db::Writer`: nothing above reaches a
//! connection but through `read`, `read_at_offset` and `write`. Knows nothing of HTTP: its
//! work is the services' functions, its failures its own `Error`.

mod error;
mod lane;
mod periodic;
mod sweep;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

pub use error::Error;
pub use sweep::SWEEP_EVERY;
pub use writer::WRITE_QUEUE;

use crate::db::{self, Checkpointer, Database};
use crate::domain::datetime::DateTime;
use crate::service;
use lane::Lane;
use periodic::Periodic;
use writer::WriterThread;

/// How many slow reads may wait for their lane; one more is refused (503).
pub const SLOW_QUEUE: usize = 64;

/// An offset from which a listing page counts as a slow read. Walking this many index
/// entries costs about as much as a page of rows itself; beyond that the walk dominates.
pub const SLOW_OFFSET: u64 = 10_000;

/// How many password checks may wait for their lane; one more is refused (503).
pub const PASSWORD_QUEUE: usize = 16;

/// How the engine runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Reading connections: one per thread that may read at once (each HTTP worker thread,
    /// and the slow-read lane). A read holds one only while it runs, without yielding.
    pub readers: u32,
    /// How often the lease sweep looks for expired leases.
    pub sweep_every: Duration,
    /// The WAL's bound and the checkpointer's timing.
    pub tuning: db::Tuning,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { readers: 2, sweep_every: SWEEP_EVERY, tuning: db::Tuning::default() }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] db::OpenError),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// The engine of a server: its data file and the threads that work on it. Dropping it stops
/// the threads in the order of its fields, each waited for: the sweep (which holds a share
/// of the writer's queue), the writer once it has answered what was queued, the lanes, the
/// checkpointer with its last truncation; and then closes every connection, so that SQLite
/// removes the WAL.
pub struct Engine {
    _sweeper: Periodic,
    writer: WriterThread,
    slow_reads: Lane,
    passwords: Lane,
    _checkpoints: Periodic,
    database: Database,
    /// Leases the sweep expired since the last `take_expired_leases`.
    expired_leases: Arc<AtomicU64>,
    /// This start's random number (see `epoch`).
    epoch: u64,
}

impl Engine {
    /// Opens the data file at `path` for serving (`db::open_for_serving`: refused when it is
    /// not a backfilld file this build knows, or another server holds it) and starts the
    /// threads.
    pub fn open(path: &Path, settings: Settings) -> Result<Engine, StartError> {
        let db::Served { database, writer, checkpointer } =
            db::open_for_serving(path, settings.readers, settings.tuning)?;
        let checkpoints = Periodic::start(
            "wal-checkpoint",
            settings.tuning.checkpoint_every,
            checkpointer,
            Checkpointer::round,
            Checkpointer::finish,
        )
        .map_err(|e| StartError::Thread("wal-checkpoint", e))?;
        let writer = WriterThread::start(database.clone(), writer).map_err(|e| StartError::Thread("writer", e))?;
        let slow_reads = Lane::start(
            "slow-read",
            SLOW_QUEUE,
            "the server is busy with slow reads (deep _offset pages); try again shortly, or page with _cursor, \
             which is never slow",
        )
        .map_err(|e| StartError::Thread("slow-read", e))?;
        let passwords = Lane::start(
            "password",
            PASSWORD_QUEUE,
            "the server is busy checking other logins' passwords; try again shortly",
        )
        .map_err(|e| StartError::Thread("password", e))?;
        let expired_leases = Arc::new(AtomicU64::new(0));
        let sweeper =
            sweep::start(database.clone(), writer.writes().clone(), settings.sweep_every, expired_leases.clone())
                .map_err(|e| StartError::Thread("lease-sweep", e))?;
        Ok(Engine {
            _sweeper: sweeper,
            writer,
            slow_reads,
            passwords,
            _checkpoints: checkpoints,
            database,
            expired_leases,
            epoch: new_epoch(),
        })
    }

    /// A read bounded by indexes and kept counts, run right here on the caller's thread (an
    /// HTTP worker's) although rusqlite blocks: each is a few index lookups, and handing each
    /// to another thread and back cost more than the read itself (docs/performance.md). With
    /// one worker per core this is the thread-per-core model. Reads that can take long go
    /// through `read_at_offset`, writes through `write`.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> service::Result<T>) -> Result<T, Error> {
        in_snapshot(&self.database, f)
    }

    /// A listing read that first walks `offset` index entries: on the caller's thread like
    /// `read` while that is short, on the slow-read lane from `SLOW_OFFSET` on, so that the
    /// HTTP worker threads stay free for everything else.
    pub async fn read_at_offset<T: Send + 'static>(
        &self,
        offset: u64,
        f: impl FnOnce(&Connection) -> service::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        if offset < SLOW_OFFSET {
            return self.read(f);
        }
        let database = self.database.clone();
        self.slow_reads.run(move || in_snapshot(&database, f)).await?
    }

    /// Runs `f` as one write: on the writer thread, inside an immediate transaction it may
    /// share with the writes queued beside it (group commit), in a savepoint of its own, so
    /// that a request writes all of its rows or none, answered once committed. `f` gets the
    /// write's one `now`. Refused (`Error::Unavailable`) once the data file has been deleted
    /// or replaced under the server: such a write would be lost at the next start.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> service::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.writer.writes().run(f).await
    }

    /// Runs `f`, a password check, on the password lane.
    pub async fn check_password<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        self.passwords.run(f).await
    }

    /// A random number drawn when the engine started: a name of this start that no other
    /// start of any server shares (as far as 64 random bits go). The API's `ETag`s carry it
    /// beside the file's change marks, which a file replaced while the server was stopped (a
    /// backup restored, a fresh file at the same path) may have had before with other data.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sizes in bytes of the data file and of its WAL.
    pub fn file_sizes(&self) -> (u64, u64) {
        self.database.file_sizes()
    }

    /// How many leases the sweep expired since this was last asked.
    pub fn take_expired_leases(&self) -> u64 {
        self.expired_leases.swap(0, Ordering::Relaxed)
    }
}

/// A new epoch: 64 bits from the operating system's randomness, or, should that fail, from
/// the clock's nanoseconds and the process id (still distinct from one start to the next).
fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// Runs `f` on a reading connection inside one read transaction, so that its statements see
/// one snapshot.
fn in_snapshot<T>(database: &Database, f: impl FnOnce(&Connection) -> service::Result<T>) -> Result<T, Error> {
    let conn = database.reader()?;
    // BEGIN and COMMIT as cached statements: rusqlite's `transaction()` parses them anew
    // on every request.
    if !conn.is_autocommit() {
        // Only if an earlier COMMIT failed: end what it left open rather than fail forever.
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let out = f(&conn);
    // A read-only transaction: COMMIT and ROLLBACK are the same, and either ends it.
    conn.prepare_cached(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })?.execute([])?;
    Ok(out?)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;
    use crate::store::schedules::{insert_pipeline_schedule, NewPipelineSchedule};

    /// Runs `f` to its end on this thread (the engine's futures need no runtime: they wait on
    /// channels that wake whoever polls them).
    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(out) => return out,
                Poll::Pending => std::thread::park(),
            }
        }
    }

    fn schedule(conn: &Connection, now: DateTime) -> service::Result<i64> {
        let s = NewPipelineSchedule {
            id: None,
            name: "s".into(),
            pipeline_uuid: "p".into(),
            schedule_interval: "@once".into(),
            variables: None,
            created_at: now,
        };
        Ok(insert_pipeline_schedule(conn, &s)?)
    }

    fn count(conn: &Connection) -> service::Result<i64> {
        Ok(conn.query_row("SELECT COUNT(*) FROM pipeline_schedule", [], |r| r.get(0))?)
    }

    #[test]
    fn writes_are_read_back_and_dropping_the_engine_leaves_no_wal_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let engine = Engine::open(&path, Settings::default()).unwrap();
        block_on(engine.write(schedule)).unwrap();
        assert_eq!(engine.read(count).unwrap(), 1);
        assert_eq!(block_on(engine.read_at_offset(SLOW_OFFSET, count)).unwrap(), 1);
        assert!(dir.path().join("b.db-wal").exists());
        drop(engine);
        for suffix in ["-wal", "-shm"] {
            assert!(!dir.path().join(format!("b.db{suffix}")).exists(), "b.db{suffix} was left behind");
        }
        // And the file opens again for another server, with the write in it.
        let engine = Engine::open(&path, Settings::default()).unwrap();
        assert_eq!(engine.read(count).unwrap(), 1);
    }
}
