//! The lease sweep: a thread that acts on leases that ran out (`dispatch::expire_leases`)
//! even when no claim or report arrives, so that a worker that died loses nothing for long.
//!
//! Each round first reads when the soonest lease ends (one index entry, on a reading
//! connection), and queues a write (`writes`, like any request's) only when one has ended:
//! an idle server, or one whose workers heartbeat in time, pays a read a second. Claims also
//! expire leases first, so the sweep matters when nothing else moves.

use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use super::metrics::Metrics;
use super::writes::Writes;
use crate::db::Pool;
use crate::periodic::Periodic;
use crate::{dispatch, queries};

/// How often the sweep looks, unless told otherwise (`--lease-check-ms`): an expired lease is
/// acted on within about this long.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Starts the sweep's thread, looking every `every`, counting what it expires in `metrics`;
/// it stops when the handle is dropped.
pub fn start(pool: Pool, writes: Writes, every: Duration, metrics: Arc<Metrics>) -> std::io::Result<Periodic> {
    let round = |(pool, writes, metrics): &mut (Pool, Writes, Arc<Metrics>)| match sweep(pool, writes, metrics) {
        // A lost data file (logged once by the checkpointer) or a full write queue: next round.
        Ok(()) | Err(ApiError::Unavailable { .. }) => {}
        Err(e) => log::warn!("lease sweep failed (will retry): {e}"),
    };
    Periodic::start("lease-sweep", every, (pool, writes, metrics), round, drop)
}

/// One round: expires every lease that has ended, a batch per write.
fn sweep(pool: &Pool, writes: &Writes, metrics: &Metrics) -> Result<(), ApiError> {
    let due = queries::next_lease_expiry(&*pool.get()?)?;
    if due.is_none_or(|t| t > crate::now()) {
        return Ok(());
    }
    loop {
        let expired = writes.run_blocking(|conn, now| dispatch::expire_leases(conn, now, dispatch::EXPIRY_BATCH))?;
        metrics.lease_expiries.inc_by(expired as u64);
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
