//! The lease sweep: a thread that acts on leases that ran out (`dispatch::expire_leases`)
//! even when no claim or report arrives, so that a worker that died loses nothing for long.
//!
//! Each round first reads when the soonest lease ends (one index entry, on a reading
//! connection), and queues a write (through the writer, like any request's) only when one
//! has ended: an idle server, or one whose workers heartbeat in time, pays a read a round.
//! Claims also expire leases first, so the sweep matters when nothing else moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::periodic::Periodic;
use super::writer::Writes;
use super::Error;
use crate::db::Database;
use crate::domain::datetime;
use crate::service::{dispatch, queries};

/// How often the sweep looks, unless told otherwise (`--lease-check-ms`): an expired lease is
/// acted on within about this long.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the sweep's thread holds.
struct Sweep {
    database: Database,
    writes: Writes,
    /// Leases the sweep expired, counted for the metrics.
    expired: Arc<AtomicU64>,
}

/// Starts the sweep's thread, looking every `every`, adding what it expires to `expired`; it
/// stops when the handle is dropped.
pub fn start(
    database: Database,
    writes: Writes,
    every: Duration,
    expired: Arc<AtomicU64>,
) -> std::io::Result<Periodic> {
    let round = |s: &mut Sweep| match s.round() {
        // A lost data file (logged once by the checkpointer) or a full write queue: next round.
        Ok(()) | Err(Error::Unavailable { .. }) => {}
        Err(e) => log::warn!("lease sweep failed (will retry): {e}"),
    };
    Periodic::start("lease-sweep", every, Sweep { database, writes, expired }, round, drop)
}

impl Sweep {
    /// One round: expires every lease that has ended, a batch per write.
    fn round(&self) -> Result<(), Error> {
        let due = queries::next_lease_expiry(&*self.database.reader()?)?;
        if due.is_none_or(|t| t > datetime::now()) {
            return Ok(());
        }
        loop {
            let expired =
                self.writes.run_blocking(|conn, now| dispatch::expire_leases(conn, now, dispatch::EXPIRY_BATCH))?;
            self.expired.fetch_add(expired as u64, Ordering::Relaxed);
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
}
