//! The lease sweep: a thread that acts on leases that ran out (`dispatch::expire_leases`)
//! even when no claim or report arrives, so that a worker that died loses nothing for long.
//!
//! Each round first reads when the soonest lease ends (one index entry, on a reading
//! connection), and takes the writer only when one has ended: an idle server, or one whose
//! workers heartbeat in time, pays a read a second. Claims also expire leases first, so the
//! sweep matters when nothing else moves.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::TransactionBehavior;

use crate::db::Pool;
use crate::dispatch;

/// How often the sweep looks, unless told otherwise (`--lease-check-ms`): an expired lease is
/// acted on within about this long.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The sweep's thread; it stops (and is waited for) when this is dropped.
pub struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Sweeper {
    /// The thread, looking every `every`.
    pub fn start(pool: Pool, every: Duration) -> std::io::Result<Sweeper> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("lease-sweep".into()).spawn(move || {
            // Ends when the sender is dropped (Disconnected); a message never comes.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if let Err(e) = sweep(&pool) {
                    log::warn!("lease sweep failed (will retry): {e}");
                }
            }
        })?;
        Ok(Sweeper { stop: Some(stop), thread: Some(thread) })
    }
}

/// One round: expires every lease that has ended, a batch per transaction.
fn sweep(pool: &Pool) -> Result<(), Box<dyn std::error::Error>> {
    let due = {
        let conn = pool.get()?;
        crate::store::pipeline_runs::next_lease_expiry(&conn)?
    };
    if due.is_none_or(|t| t > crate::now()) {
        return Ok(());
    }
    loop {
        let mut conn = pool.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired = dispatch::expire_leases(&tx, crate::now(), dispatch::EXPIRY_BATCH)?;
        // A write committed into a deleted or replaced file would be lost: the checkpointer
        // has logged that once; here the round just stops.
        if pool.check_file().is_err() {
            return Ok(());
        }
        tx.commit()?;
        if expired > 0 {
            log::info!(
                "{expired} expired lease(s): their runs failed, and their dates were queued again where allowed"
            );
        }
        if (expired as u64) < dispatch::EXPIRY_BATCH {
            return Ok(());
        }
    }
}
