//! The reads, beside `lifecycle`'s and `dispatch`'s writes: each function does one request's
//! whole read on the connection it is given, which the caller has put in one read
//! transaction, so that its statements see one snapshot. No clock reads, no HTTP.

use std::collections::HashMap;

use rusqlite::Connection;

use super::{Error, Result};
use crate::domain::datetime::DateTime;
use crate::domain::model::{Backfill, PipelineRun, RunStatusCounts};
use crate::store::pipeline_runs::{RunFilter, RunStart};
use crate::store::schedules::{ScheduleInfo, Schedules};
use crate::store::tokens::TokenRecord;
use crate::store::{self, Start};

/// A page of backfills with everything needed to present it.
pub struct BackfillListing {
    pub backfills: Vec<Backfill>,
    /// Each backfill's run counts, when asked for.
    pub counts: Option<HashMap<i64, RunStatusCounts>>,
    /// How many backfills match.
    pub total: u64,
    /// Whether more follow this page.
    pub next: bool,
}

/// A fixed number of statements whatever the page size: the page (one row more than asked,
/// to know whether more follow), the kept count, and (when asked) the run counts of every
/// backfill on the page at once.
pub fn backfill_listing(
    conn: &Connection,
    pipeline_uuid: Option<&str>,
    limit: u64,
    start: Start,
    with_counts: bool,
) -> Result<BackfillListing> {
    let mut backfills = store::backfills::list_backfills(conn, pipeline_uuid, limit.saturating_add(1), start)?;
    let next = backfills.len() as u64 > limit;
    backfills.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let ids: Vec<i64> = backfills.iter().map(|b| b.id).collect();
    let total = store::backfills::count_backfills(conn, pipeline_uuid)?;
    let counts = if with_counts { Some(store::backfills::count_runs_by_status(conn, &ids)?) } else { None };
    Ok(BackfillListing { backfills, counts, total, next })
}

/// The backfill `id`, when it exists (under `pipeline_uuid`, when one is given); the writes
/// in `lifecycle` read it through here too.
pub fn backfill_in(conn: &Connection, id: i64, pipeline_uuid: Option<&str>) -> Result<Backfill> {
    store::backfills::get_backfill(conn, id)?
        .filter(|b| pipeline_uuid.is_none_or(|p| p == b.pipeline_uuid))
        .ok_or_else(|| Error::NotFound(format!("no backfill has id {id}")))
}

/// The backfill `id`, with its run counts when asked for.
pub fn backfill(conn: &Connection, id: i64, with_counts: bool) -> Result<(Backfill, Option<RunStatusCounts>)> {
    let backfill = backfill_in(conn, id, None)?;
    let counts = if with_counts { Some(store::backfills::run_counts_of(conn, id)?) } else { None };
    Ok((backfill, counts))
}

/// A page of runs and how many match in all (a kept count). A filter that matches nothing
/// (a backfill of another pipeline, say) reads no runs at all.
pub fn run_listing(
    conn: &Connection,
    filter: &RunFilter,
    limit: u64,
    start: RunStart,
) -> Result<(Vec<PipelineRun>, u64)> {
    let count = store::pipeline_runs::count_pipeline_runs(conn, filter)?;
    let runs = if count == 0 { vec![] } else { store::pipeline_runs::list_pipeline_runs(conn, filter, limit, start)? };
    Ok((runs, count))
}

/// The schedules the runs hang from, by id, for presenting them.
pub fn schedules_of(conn: &Connection, runs: &[PipelineRun]) -> Result<Schedules> {
    let ids: Vec<i64> = runs.iter().filter_map(|r| r.pipeline_schedule_id).collect();
    Ok(store::schedules::schedules_by_id(conn, &ids)?)
}

/// The schedule one run hangs from, if it names one that exists.
pub fn schedule_of(conn: &Connection, run: &PipelineRun) -> Result<Option<ScheduleInfo>> {
    let Some(id) = run.pipeline_schedule_id else { return Ok(None) };
    Ok(store::schedules::schedules_by_id(conn, &[id])?.remove(&id))
}

/// The pipeline run `id`.
pub fn run(conn: &Connection, id: i64) -> Result<PipelineRun> {
    store::pipeline_runs::get_pipeline_run(conn, id)?
        .ok_or_else(|| Error::NotFound(format!("no pipeline run has id {id}")))
}

/// When the soonest lease of a running run ends, if any run is leased.
pub fn next_lease_expiry(conn: &Connection) -> Result<Option<DateTime>> {
    Ok(store::pipeline_runs::next_lease_expiry(conn)?)
}

/// When the token whose SHA-256 is `hash` expires (`Some(None)`: never), if it is one made
/// with `backfilld token create` or a login's session.
pub fn token_expiry(conn: &Connection, hash: &[u8; 32]) -> Result<Option<Option<DateTime>>> {
    if let Some(t) = token(conn, hash)? {
        return Ok(Some(t.expires_at));
    }
    Ok(store::users::find_session_by_hash(conn, hash)?.map(|s| Some(s.expires_at)))
}

/// The token whose SHA-256 is `hash`, if one is stored.
pub fn token(conn: &Connection, hash: &[u8; 32]) -> Result<Option<TokenRecord>> {
    Ok(store::tokens::find_token_by_hash(conn, hash)?)
}

/// What `/metrics` reads from the database: backfills and runs by status, from kept counts.
pub struct StatusCounts {
    pub backfills: Vec<(String, i64)>,
    pub runs: Vec<(String, i64)>,
}

pub fn status_counts(conn: &Connection) -> Result<StatusCounts> {
    Ok(StatusCounts {
        backfills: store::backfills::status_counts(conn)?,
        runs: store::pipeline_runs::status_totals(conn)?,
    })
}

/// What an answer shows, for its `ETag` (the API's conditional reads): all the data, one
/// backfill (its record and its runs), the backfill of one run, or one run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    Backfill(i64),
    Run(i64),
    Log(i64),
}

/// Where the data of a scope stands: a value that changes whenever that data does, and never
/// takes a value it had before with other data (within one file's life; the API adds the
/// engine's epoch for the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The count of every write (`store::changes`).
    Everything(i64),
    /// A backfill's mark: the count after its last write.
    Backfill(i64),
    /// A run's log: bytes received and cut (it only grows, or is deleted whole once its run
    /// has finished) and the run's status (whose finish its answers say).
    Log { received: u64, cut: u64, status: String },
}

/// The mark of `scope`; `None` for a run that does not exist (its answer, a 404, has no tag).
/// One or two lookups by primary key.
pub fn mark(conn: &Connection, scope: Scope) -> Result<Option<Mark>> {
    Ok(Some(match scope {
        Scope::Everything => Mark::Everything(store::changes::global_mark(conn)?),
        Scope::Backfill(id) => Mark::Backfill(store::changes::backfill_mark(conn, id)?),
        Scope::Run(id) => match store::changes::backfill_of_run(conn, id)? {
            Some(b) => Mark::Backfill(store::changes::backfill_mark(conn, b)?),
            None => Mark::Everything(store::changes::global_mark(conn)?),
        },
        Scope::Log(id) => match store::logs::log_state(conn, id)? {
            Some((status, log)) => Mark::Log { received: log.received, cut: log.cut, status },
            None => return Ok(None),
        },
    }))
}
