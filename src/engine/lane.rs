//! A lane: one thread of its own, at a lower CPU priority, behind a bounded queue, for work
//! that may take long and must never hold up the HTTP worker threads that answer everything
//! else. The engine keeps two: slow reads (deep `_offset` pages, which walk the skipped index
//! entries) and logins' password checks (each costs tens of milliseconds and 19 MiB). Each
//! takes at most one core, neither can take the other's place, and a full queue is refused
//! at once (`Error::Unavailable`) rather than waited for.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::Error;

/// The nice value of a lane's thread: the scheduler gives the HTTP worker threads (nice 0)
/// about ten times its share of a contended core.
const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The queue and its thread; dropping this lets the jobs queued finish, then stops and
/// waits for the thread.
pub struct Lane {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    name: &'static str,
    busy: &'static str,
}

impl Drop for Lane {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Lane {
    /// A thread called `name` with room for `queue` jobs waiting; a job beyond that is
    /// refused with `busy`.
    pub fn start(name: &'static str, queue: usize, busy: &'static str) -> std::io::Result<Lane> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || serve(rx))?;
        Ok(Lane { queue: Some(tx), thread: Some(thread), name, busy })
    }

    /// Runs `f` on the thread and returns its result.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        self.submit(f)?.await.map_err(|_| self.ended())
    }

    /// Queues `f`; its result comes through the returned receiver.
    fn submit<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<oneshot::Receiver<T>, Error> {
        let (tx, rx) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(|| self.stopped())?;
        queue.try_send(Box::new(move || drop(tx.send(f())))).map_err(|e| match e {
            TrySendError::Full(_) => Error::Unavailable { message: self.busy.into(), retry_after_secs: 1 },
            TrySendError::Disconnected(_) => self.stopped(),
        })?;
        Ok(rx)
    }

    fn stopped(&self) -> Error {
        Error::Internal(format!("the {} thread has stopped", self.name).into())
    }

    fn ended(&self) -> Error {
        Error::Internal(format!("a job on the {} thread ended without an answer", self.name).into())
    }
}

fn serve(rx: Receiver<Job>) {
    lower_priority();
    // Ends when the `Lane` (the sender) is dropped.
    while let Ok(job) = rx.recv() {
        // A panicking job drops its sender (its caller gets `Error::Internal`), and the
        // thread goes on.
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
            log::debug!("could not lower a lane thread's priority: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_and_a_full_queue_is_refused() {
        let lane = Lane::start("test-lane", 1, "busy").unwrap();
        assert_eq!(lane.submit(|| 6 * 7).unwrap().blocking_recv().unwrap(), 42);
        // Hold the one thread, fill the one queue place, and the next is refused.
        let (release, wait) = mpsc::channel::<()>();
        let (started, is_started) = mpsc::channel::<()>();
        let blocker = lane
            .submit(move || {
                started.send(()).unwrap();
                wait.recv().unwrap();
            })
            .unwrap();
        is_started.recv().unwrap();
        let queued = lane.submit(|| 1).unwrap();
        let refused = lane.submit(|| 2).unwrap_err();
        assert!(matches!(refused, Error::Unavailable { retry_after_secs: 1, .. }), "{refused}");
        assert_eq!(refused.to_string(), "busy");
        release.send(()).unwrap();
        blocker.blocking_recv().unwrap();
        assert_eq!(queued.blocking_recv().unwrap(), 1);
    }

    #[test]
    fn a_panicking_job_is_an_internal_error_and_the_lane_goes_on() {
        let lane = Lane::start("test-lane", 4, "busy").unwrap();
        let panicked = lane.submit(|| -> u8 { panic!("boom") }).unwrap();
        assert!(panicked.blocking_recv().is_err());
        assert_eq!(lane.submit(|| 7).unwrap().blocking_recv().unwrap(), 7);
    }
}
