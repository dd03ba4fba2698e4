//! Where writes run: one thread that takes every write request in turn and commits those
//! that queued up meanwhile together (group commit), each inside a savepoint of its own, so
//! that a request still writes all of its rows or none, and is answered only once its
//! transaction has committed.
//!
//! One commit per write wrote the pages every report shares (the backfill's kept counts, the
//! run listing indexes) to the WAL again for each request: with several workers claiming
//! and reporting, the writer was busy all the time and a claim waited behind the reports
//! queued before it. Committing what is queued at once writes those pages once per batch
//! (docs/performance.md has the figures before and after). A write waits for no timer: the
//! batch is whatever queued while the previous one ran. The lease sweep writes through here
//! too.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::Error;
use crate::db::{Database, Writer};
use crate::domain::datetime::{self, DateTime};
use crate::service;

/// How many writes may wait for the thread; one more is answered 503.
pub const WRITE_QUEUE: usize = 1024;
/// The most writes one transaction commits together.
const BATCH: usize = 64;

/// What a job leaves to do once its batch's commit is known: answer its request.
type Finish = Box<dyn FnOnce(&Result<(), String>) + Send>;
/// A write: its work on the writer's connection, inside the batch's transaction; or, when
/// that transaction could not begin, the reason to answer with instead.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;

/// The queue of writes; its thread stops once every clone of this is dropped and the writes
/// queued before are answered.
#[derive(Clone)]
pub struct Writes {
    queue: SyncSender<Job>,
}

/// The writer's thread and its queue, owned: dropping this lets the writes queued before be
/// answered and waits for the thread to end, which it does once every other `Writes` (the
/// sweep's) is gone too.
pub struct WriterThread {
    writes: Option<Writes>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl WriterThread {
    /// The thread, writing through `writer` and checking `database`'s file before each
    /// commit.
    pub fn start(database: Database, writer: Writer) -> std::io::Result<WriterThread> {
        let (tx, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let thread = std::thread::Builder::new().name("writer".into()).spawn(move || serve(&database, &writer, rx))?;
        Ok(WriterThread { writes: Some(Writes { queue: tx }), thread: Some(thread) })
    }

    /// Its queue.
    pub fn writes(&self) -> &Writes {
        self.writes.as_ref().expect("the queue is dropped only with its thread")
    }
}

impl Writes {
    /// Runs `f` inside the next batch's transaction (in a savepoint: its writes stand or fall
    /// with it) and returns its result once the batch has committed; any failure, of `f` or
    /// of the commit, writes nothing of this request. `f` gets the request's one `now`.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> service::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let answer = self.submit(f)?;
        answer.await.map_err(|_| unanswered())?
    }

    /// `run`, from a thread outside the server's runtime (the lease sweep): waits for the answer.
    pub fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> service::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let answer = self.submit(f)?;
        answer.blocking_recv().map_err(|_| unanswered())?
    }

    /// Queues `f` (see `run`); its answer comes through the returned receiver.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> service::Result<T> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, Error>>, Error> {
        let (tx, rx) = oneshot::channel::<Result<T, Error>>();
        let job: Job = Box::new(move |conn| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(message) => {
                    let refused = Error::Unavailable { message: message.to_string(), retry_after_secs: 5 };
                    return Box::new(move |_: &Result<(), String>| drop(tx.send(Err(refused))));
                }
            };
            let out = in_savepoint(conn, f);
            Box::new(move |commit: &Result<(), String>| {
                let answer = match commit {
                    Ok(()) => out,
                    Err(message) if out.is_ok() => {
                        Err(Error::Unavailable { message: message.clone(), retry_after_secs: 60 })
                    }
                    // The request failed by itself: its own error says more.
                    Err(_) => out,
                };
                let _ = tx.send(answer);
            })
        });
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::Unavailable {
                message: format!("the server has {WRITE_QUEUE} writes waiting; try again shortly"),
                retry_after_secs: 1,
            },
            TrySendError::Disconnected(_) => Error::Internal("the writer thread has stopped".into()),
        })?;
        Ok(rx)
    }
}

/// Runs `f` in a savepoint, released when it succeeds and rolled back when it fails or
/// panics (a panic is answered as an internal error; the thread goes on).
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection, DateTime) -> service::Result<T>) -> Result<T, Error> {
    conn.prepare_cached("SAVEPOINT request")?.execute([])?;
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, datetime::now())));
    let out: Result<T, Error> = match out {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Internal("a write panicked; its changes were rolled back".into())),
    };
    if out.is_err() {
        conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
    }
    conn.prepare_cached("RELEASE request")?.execute([])?;
    out
}

/// A write whose answer never came: its job was dropped unanswered (the thread stopped).
fn unanswered() -> Error {
    Error::Internal("a write ended without an answer".into())
}

fn serve(database: &Database, writer: &Writer, rx: Receiver<Job>) {
    // Ends when every `Writes` (the senders) is dropped.
    while let Ok(first) = rx.recv() {
        let mut conn = writer.lock();
        let mut finishes: Vec<Finish> = Vec::with_capacity(BATCH);
        let commit = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => {
                finishes.push(first(Ok(&tx)));
                while finishes.len() < BATCH {
                    match rx.try_recv() {
                        Ok(job) => finishes.push(job(Ok(&tx))),
                        Err(_) => break,
                    }
                }
                // At the last moment: a write committed into a deleted or replaced file is lost.
                match database.check_file() {
                    Err(e) => Err(format!("{e}; writes are refused until backfilld is restarted")),
                    Ok(()) => tx.commit().map_err(|e| {
                        log::error!("a write transaction failed to commit: {e}");
                        format!("the write could not be committed ({e}); try again")
                    }),
                }
            }
            Err(e) => {
                // The write lock stayed taken past the busy timeout (an `import` or another
                // process writing the file at length), or the file failed: `first` is answered
                // 503 with why, and the next write tries again.
                log::error!("a write transaction could not begin: {e}");
                let why = match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                        "the data file is locked by another process writing it (an import?); try again shortly"
                            .to_string()
                    }
                    _ => format!("the write could not begin ({e}); try again"),
                };
                finishes.push(first(Err(&why)));
                Ok(())
            }
        };
        drop(conn);
        for finish in finishes {
            finish(&commit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schedules::{insert_pipeline_schedule, NewPipelineSchedule};

    fn schedule(conn: &Connection, name: &str, now: DateTime) -> rusqlite::Result<i64> {
        let s = NewPipelineSchedule {
            id: None,
            name: name.into(),
            pipeline_uuid: "p".into(),
            schedule_interval: "@once".into(),
            variables: None,
            created_at: now,
        };
        insert_pipeline_schedule(conn, &s)
    }

    fn started(path: &std::path::Path, busy: Option<std::time::Duration>) -> (Database, WriterThread) {
        let crate::db::Served { database, writer, .. } =
            crate::db::open_for_serving(path, 1, crate::db::Tuning::default()).unwrap();
        if let Some(timeout) = busy {
            writer.lock().busy_timeout(timeout).unwrap();
        }
        (database.clone(), WriterThread::start(database, writer).unwrap())
    }

    #[test]
    fn a_write_that_cannot_take_the_lock_is_refused_saying_why_and_the_next_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let (_db, thread) = started(&path, Some(std::time::Duration::from_millis(100)));
        let writes = thread.writes();
        // Another process (an import) holds the file's write lock.
        let other = crate::db::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let refused = writes.run_blocking(|c, now| Ok(schedule(c, "refused", now)?)).unwrap_err();
        assert!(matches!(refused, Error::Unavailable { retry_after_secs: 5, .. }), "{refused}");
        assert!(refused.to_string().contains("locked by another process"), "{refused}");
        other.execute_batch("COMMIT").unwrap();
        assert!(writes.run_blocking(|c, now| Ok(schedule(c, "written", now)?)).is_ok());
    }

    /// Writes queued together commit together, and one that fails or panics takes back its
    /// own rows and no one else's.
    #[test]
    fn a_batch_commits_its_writes_and_a_failed_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, thread) = started(&dir.path().join("b.db"), None);
        let writes = thread.writes();
        // The first write holds its batch open until the other three are queued behind it:
        // the thread takes them into the same transaction once it returns.
        let (release, wait) = mpsc::channel::<()>();
        let ok = writes
            .submit(move |c, now| {
                wait.recv().unwrap();
                Ok(schedule(c, "kept", now)?)
            })
            .unwrap();
        let failed = writes
            .submit(|c, now| {
                schedule(c, "taken back", now)?;
                Err::<i64, _>(service::Error::Conflict("no".into()))
            })
            .unwrap();
        let panicked = writes
            .submit(|c, now| -> service::Result<i64> {
                schedule(c, "taken back too", now)?;
                panic!("boom")
            })
            .unwrap();
        let after = writes.submit(|c, now| Ok(schedule(c, "also kept", now)?)).unwrap();
        release.send(()).unwrap();
        assert!(ok.blocking_recv().unwrap().is_ok());
        assert!(matches!(failed.blocking_recv().unwrap(), Err(Error::Service(service::Error::Conflict(_)))));
        assert!(matches!(panicked.blocking_recv().unwrap(), Err(Error::Internal(_))));
        assert!(after.blocking_recv().unwrap().is_ok());
        let names: Vec<String> = db
            .reader()
            .unwrap()
            .prepare("SELECT name FROM pipeline_schedule ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["kept", "also kept"]);
    }
}
