//! A named background thread that does one round of work at a fixed period, and is stopped
//! and waited for when its handle is dropped: the engine's WAL checkpointer (the rounds of
//! `db::Checkpointer`) and its lease sweep (`sweep`).

use std::sync::mpsc;
use std::time::Duration;

/// The thread; dropping this stops it (after the round in progress and `last`) and waits.
pub struct Periodic {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Periodic {
    /// Starts the thread `name`, which owns `state` and calls `round` on it every `every`
    /// until stopped, then `last`.
    pub fn start<S: Send + 'static>(
        name: &str,
        every: Duration,
        mut state: S,
        round: impl Fn(&mut S) + Send + 'static,
        last: impl FnOnce(S) + Send + 'static,
    ) -> std::io::Result<Periodic> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            // Ends when the sender is dropped (Disconnected); a message never comes.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                round(&mut state);
            }
            last(state);
        })?;
        Ok(Periodic { stop: Some(stop), thread: Some(thread) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn rounds_run_until_the_handle_is_dropped_and_then_the_last_step() {
        let rounds = Arc::new(AtomicU32::new(0));
        // The rounds counted when the last step ran, plus one for each time it ran.
        let last = Arc::new(AtomicU32::new(0));
        let p = Periodic::start(
            "test",
            Duration::from_millis(5),
            (rounds.clone(), last.clone()),
            |(r, _)| {
                r.fetch_add(1, Ordering::SeqCst);
            },
            |(r, l)| {
                l.fetch_add(1000 + r.load(Ordering::SeqCst), Ordering::SeqCst);
            },
        )
        .unwrap();
        while rounds.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(p);
        // The drop waited for the thread: the last step ran once, after every round.
        assert_eq!(last.load(Ordering::SeqCst), 1000 + rounds.load(Ordering::SeqCst));
    }
}
