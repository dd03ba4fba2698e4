//! Where reads that can take long run: one thread of their own (so they take at most one
//! core), at a lower CPU priority, behind a bounded queue, so that they never hold up the
//! worker threads that answer everything else.
//!
//! Every read is bounded by an index or a kept count (tests in `store` check the run
//! listing's query plans) except a deep `_offset`, which walks the skipped index entries:
//! 5 ms for a page of backfills at offset 900,000 on its own (examples/bench.rs). Run on a
//! worker thread, two clients looping such reads took `/api/status` from sub-millisecond to a
//! quarter of a second; here, with four such clients, `/api/status` and page 0 keep a p99
//! under 1 ms (the bench's mixed scenario), and a full queue answers 503.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use super::error::ApiError;

/// How many slow reads may wait for the thread; one more is answered 503.
pub const SLOW_QUEUE: usize = 64;

/// An offset from which a listing page counts as a slow read. Walking 10,000 index entries
/// costs about as much as a page of rows itself; beyond that the walk dominates.
pub const SLOW_OFFSET: u64 = 10_000;

/// The nice value of the slow-read thread: the scheduler gives the worker threads (nice 0)
/// about ten times their share of a contended core.
const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The queue of slow reads and the thread that runs them; it stops when this is dropped.
/// Logins' password checks use one of their own (`api::sessions`), so that neither kind can
/// take the other's place or more than one core; it runs at the same lowered priority, so
/// that a flood of logins slows logins, not the other requests.
pub struct SlowReads {
    queue: SyncSender<Job>,
    name: &'static str,
    busy: &'static str,
}

impl SlowReads {
    /// The slow-read thread, with room for `queue` reads waiting for it.
    pub fn start(queue: usize) -> std::io::Result<SlowReads> {
        SlowReads::named(
            "slow-read",
            queue,
            "the server is busy with slow reads (deep _offset pages); try again shortly, or page with _cursor, \
             which is never slow",
        )
    }

    /// A thread called `name` with room for `queue` jobs waiting; a job beyond that is
    /// answered 503 with `busy`.
    pub fn named(name: &'static str, queue: usize, busy: &'static str) -> std::io::Result<SlowReads> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        std::thread::Builder::new().name(name.into()).spawn(move || serve(rx))?;
        Ok(SlowReads { queue: tx, name, busy })
    }

    /// Runs `f` on the thread and returns its result; 503 when the queue is full.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue.try_send(Box::new(move || drop(tx.send(f())))).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::Unavailable { message: self.busy.into(), retry_after_secs: 1 },
            TrySendError::Disconnected(_) => ApiError::Internal(format!("the {} thread has stopped", self.name).into()),
        })?;
        rx.await.map_err(|_| {
            ApiError::Internal(format!("a job on the {} thread ended without an answer", self.name).into())
        })
    }
}

fn serve(rx: Receiver<Job>) {
    lower_priority();
    // Ends when the `SlowReads` (the sender) is dropped.
    while let Ok(job) = rx.recv() {
        // A panicking read answers 500 (its sender is dropped) and the thread goes on.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Lowers this thread's CPU priority (on Linux, `setpriority` on a thread id applies to that
/// thread alone). Best effort: a failure leaves the thread at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id, with no pointers.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS) != 0 {
            log::debug!("could not lower the slow-read thread's priority: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_run_and_a_full_queue_is_refused() {
        let system = actix_web::rt::System::new();
        system.block_on(async {
            let slow = std::rc::Rc::new(SlowReads::start(1).unwrap());
            assert_eq!(slow.run(|| 6 * 7).await.unwrap(), 42);
            // Hold the one thread, fill the one queue place, and the next is refused.
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let (started, is_started) = std::sync::mpsc::channel::<()>();
            let s = slow.clone();
            let blocker = actix_web::rt::spawn(async move {
                s.run(move || {
                    started.send(()).unwrap();
                    wait.recv().unwrap();
                })
                .await
            });
            // Wait until the blocker runs on the thread.
            while is_started.try_recv().is_err() {
                actix_web::rt::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let s = slow.clone();
            let queued = futures_poll_once(Box::pin(async move { s.run(|| 1).await }));
            let refused = slow.run(|| 2).await.unwrap_err();
            assert!(matches!(refused, ApiError::Unavailable { .. }), "{refused}");
            release.send(()).unwrap();
            blocker.await.unwrap().unwrap();
            assert_eq!(queued.await.unwrap(), 1);
        });
    }

    /// Starts `f` (so that it takes its queue place) and returns it to be finished later.
    fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> F {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let _ = std::pin::Pin::new(&mut f).poll(&mut cx);
        f
    }
}
