//! Where writes run: one thread that takes every write request in turn and commits those
//! that queued up meanwhile together (group commit), each inside a savepoint of its own, so
//! that a request still writes all of its rows or none, and is answered only once its
//! transaction has committed.
//!
//! One commit per write wrote the pages every report shares (the backfill's kept counts, the
//! run listing indexes) to the WAL again for each request: with 8 workers claiming and
//! reporting, the writer was busy all the time and a claim waited behind seven reports and a
//! checkpoint (claim p99 13.6 ms, examples/bench.rs). Committing what is queued at once
//! writes those pages once per batch: creates went from 10,043 to 24,029 a second, and
//! driving a 100,000-run backfill from 5,602 to 11,255 runs a second (examples/bench.rs,
//! runs before and after it, same machine). A write waits for no timer: the batch is whatever queued while the previous one
//! ran. The lease sweep writes through here too.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use rusqlite::{Connection, TransactionBehavior};

use super::error::ApiError;
use crate::datetime::DateTime;
use crate::db::Pool;
use crate::error::Error;

/// How many writes may wait for the thread; one more is answered 503.
pub const WRITE_QUEUE: usize = 1024;
/// The most writes one transaction commits together.
const BATCH: usize = 64;

/// What a job leaves to do once its batch's commit is known: answer its request.
type Finish = Box<dyn FnOnce(&Result<(), String>) + Send>;
/// A write: its work on the writer's connection, inside the batch's transaction; or, when
/// that transaction could not begin, the reason to answer with instead.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;

/// The queue of writes and the thread that commits them; the thread stops once every clone
/// of this is dropped.
#[derive(Clone)]
pub struct Writes {
    queue: SyncSender<Job>,
}

impl Writes {
    /// The thread, writing through `pool`'s writer connection.
    pub fn start(pool: Pool) -> std::io::Result<Writes> {
        let (tx, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new().name("writer".into()).spawn(move || serve(&pool, rx))?;
        Ok(Writes { queue: tx })
    }

    /// Runs `f` inside the next batch's transaction (in a savepoint: its writes stand or fall
    /// with it) and returns its result once the batch has committed; any failure, of `f` or
    /// of the commit, writes nothing of this request. `f` gets the request's one `now`.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, ApiError> {
        let answer = self.submit(f)?;
        answer.await.map_err(|_| ApiError::Internal("a write ended without an answer".into()))?
    }

    /// `run`, from a thread outside the server's runtime (the lease sweep): waits for the answer.
    pub fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, ApiError> {
        let answer = self.submit(f)?;
        answer.blocking_recv().map_err(|_| ApiError::Internal("a write ended without an answer".into()))?
    }

    /// Queues `f` (see `run`); its answer comes through the returned receiver.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, DateTime) -> Result<T, Error> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T, ApiError>>, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, ApiError>>();
        let job: Job = Box::new(move |conn| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(message) => {
                    let refused = ApiError::Unavailable { message: message.to_string(), retry_after_secs: 5 };
                    return Box::new(move |_: &Result<(), String>| drop(tx.send(Err(refused))));
                }
            };
            let out = in_savepoint(conn, f);
            Box::new(move |commit: &Result<(), String>| {
                let answer = match commit {
                    Ok(()) => out,
                    Err(message) if out.is_ok() => {
                        Err(ApiError::Unavailable { message: message.clone(), retry_after_secs: 60 })
                    }
                    // The request failed by itself: its own error says more.
                    Err(_) => out,
                };
                let _ = tx.send(answer);
            })
        });
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::Unavailable {
                message: format!("the server has {WRITE_QUEUE} writes waiting; try again shortly"),
                retry_after_secs: 1,
            },
            TrySendError::Disconnected(_) => ApiError::Internal("the writer thread has stopped".into()),
        })?;
        Ok(rx)
    }
}

/// Runs `f` in a savepoint, released when it succeeds and rolled back when it fails or
/// panics (a panic is answered as an internal error; the thread goes on).
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection, DateTime) -> Result<T, Error>,
) -> Result<T, ApiError> {
    conn.prepare_cached("SAVEPOINT request")?.execute([])?;
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, crate::now())));
    let out: Result<T, ApiError> = match out {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::Internal("a write panicked; its changes were rolled back".into())),
    };
    if out.is_err() {
        conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
    }
    conn.prepare_cached("RELEASE request")?.execute([])?;
    out
}

fn serve(pool: &Pool, rx: Receiver<Job>) {
    // Ends when the `Writes` (the sender) is dropped.
    while let Ok(first) = rx.recv() {
        let mut conn = pool.writer();
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
                match pool.check_file() {
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
            created_at: now,
        };
        insert_pipeline_schedule(conn, &s)
    }

    /// Writes queued together commit together, and one that fails or panics takes back
    /// its own rows and no one else's.
    #[test]
    fn a_write_that_cannot_take_the_lock_is_a_503_saying_why_and_the_next_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let pool = crate::db::open_pool(&path, 1).unwrap();
        pool.writer().busy_timeout(std::time::Duration::from_millis(100)).unwrap();
        let writes = Writes::start(pool.clone()).unwrap();
        // Another process (an import) holds the file's write lock.
        let other = crate::db::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let refused = writes.run_blocking(|c, now| Ok(schedule(c, "refused", now)?)).unwrap_err();
        assert!(matches!(refused, ApiError::Unavailable { retry_after_secs: 5, .. }), "{refused}");
        assert!(refused.to_string().contains("locked by another process"), "{refused}");
        other.execute_batch("COMMIT").unwrap();
        assert!(writes.run_blocking(|c, now| Ok(schedule(c, "written", now)?)).is_ok());
    }

    #[test]
    fn a_batch_commits_its_writes_and_a_failed_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open_pool(&dir.path().join("b.db"), 1).unwrap();
        let writes = Writes::start(pool.clone()).unwrap();
        // Holding the writer while queueing makes the three one batch.
        let held = pool.writer();
        let ok = writes.submit(|c, now| Ok(schedule(c, "kept", now)?)).unwrap();
        let failed = writes
            .submit(|c, now| {
                schedule(c, "taken back", now)?;
                Err::<i64, _>(Error::Conflict("no".into()))
            })
            .unwrap();
        let panicked = writes
            .submit(|c, now| -> Result<i64, Error> {
                schedule(c, "taken back too", now)?;
                panic!("boom")
            })
            .unwrap();
        let after = writes.submit(|c, now| Ok(schedule(c, "also kept", now)?)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
        assert!(ok.blocking_recv().unwrap().is_ok());
        assert!(matches!(failed.blocking_recv().unwrap(), Err(ApiError::Conflict(_))));
        assert!(matches!(panicked.blocking_recv().unwrap(), Err(ApiError::Internal(_))));
        assert!(after.blocking_recv().unwrap().is_ok());
        let names: Vec<String> = pool
            .get()
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
