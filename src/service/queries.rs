//! The reads, beside `lifecycle`'s and `dispatch`'s writes: each function does one request's
//! whole read on the connection it is given, which the caller has put in one read
//! transaction, so that its statements see one snapshot. No clock reads, no HTTP.

use std::collections::HashMap;

use rusqlite::Connection;

use super::{Error, Result};
use crate::domain::datetime::DateTime;
use crate::domain::model::{Backfill, PipelineRun, RunStatusCounts};
use crate::store::backfills::BackfillFilter;
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
/// to know whether more follow), the count (kept, but for a name prefix's:
/// `store::backfills::count_filtered`), and (when asked) the run counts of every backfill on
/// the page at once.
pub fn backfill_listing(
    conn: &Connection,
    filter: &BackfillFilter,
    limit: u64,
    start: Start,
    with_counts: bool,
) -> Result<BackfillListing> {
    let mut backfills = store::backfills::list_filtered(conn, filter, limit.saturating_add(1), start)?;
    let next = backfills.len() as u64 > limit;
    backfills.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let ids: Vec<i64> = backfills.iter().map(|b| b.id).collect();
    let total = store::backfills::count_filtered(conn, filter)?;
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

/// A backfill's date map: how many dates its schedule has, and their cells.
pub struct DateMap {
    pub dates: u64,
    pub cells: Vec<crate::domain::datemap::Cell>,
}

/// The date map of backfill `id` in at most `max_cells` cells (`domain::datemap`), from the
/// kept chunks of its dates' statuses: a backfill without dates (incomplete settings, a
/// `block_uuid`) has none and no cells.
pub fn date_map(conn: &Connection, id: i64, max_cells: u64) -> Result<DateMap> {
    let backfill = backfill_in(conn, id, None)?;
    let Some(schedule) = backfill.fields.schedule().filter(|_| backfill.fields.block_uuid.is_none()) else {
        return Ok(DateMap { dates: 0, cells: vec![] });
    };
    let chunks = store::date_map::chunks(conn, id)?;
    let cells =
        crate::domain::datemap::cells(&schedule, max_cells, chunks.iter().map(|(c, bytes)| (*c, bytes.as_slice())));
    Ok(DateMap { dates: schedule.count(), cells })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Object, RunStatus};
    use crate::service::dispatch::{self, Claim, Report};
    use crate::service::lifecycle::{self, Limits};
    use proptest::prelude::*;
    use time::macros::datetime;

    fn obj(v: serde_json::Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Report(usize, RunStatus),
        Retry(usize),
        Rerun(&'static str),
        Claim(u64),
        Cancel,
    }

    fn op() -> impl Strategy<Value = Op> {
        let status = proptest::sample::select(vec![
            RunStatus::Running,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]);
        prop_oneof![
            6 => (any::<usize>(), status).prop_map(|(k, s)| Op::Report(k, s)),
            3 => any::<usize>().prop_map(Op::Retry),
            2 => proptest::sample::select(vec!["none", "failed", "completed"]).prop_map(Op::Rerun),
            2 => (1u64..5).prop_map(Op::Claim),
            1 => Just(Op::Cancel),
        ]
    }

    /// The map's cells against a brute force: each date's newest run found by its own query,
    /// the cells' bounds and sizes checked against the schedule's dates.
    fn check(conn: &Connection, id: i64, max_cells: u64) -> std::result::Result<(), TestCaseError> {
        let b = backfill_in(conn, id, None).unwrap();
        let dates: Vec<DateTime> = b.fields.schedule().unwrap().dates_from(0).collect();
        let newest: Vec<usize> = dates
            .iter()
            .map(|d| {
                let s: Option<String> = conn
                    .query_row(
                        "SELECT status FROM pipeline_run WHERE backfill_id = ?1 AND execution_date = ?2 \
                         ORDER BY id DESC LIMIT 1",
                        rusqlite::params![id, crate::domain::datetime::to_micros(*d)],
                        |r| r.get(0),
                    )
                    .ok();
                let keys = crate::domain::datemap::KEYS;
                keys.iter().position(|k| Some(*k) == s.as_deref()).unwrap_or(5)
            })
            .collect();
        let map = date_map(conn, id, max_cells).unwrap();
        prop_assert_eq!(map.dates, dates.len() as u64);
        prop_assert_eq!(map.cells.len() as u64, max_cells.min(dates.len() as u64));
        let sizes: Vec<u64> = map.cells.iter().map(|c| c.dates).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
        let mut i = 0usize;
        for cell in &map.cells {
            let k = cell.dates as usize;
            prop_assert_eq!(cell.first, dates[i]);
            prop_assert_eq!(cell.last, dates[i + k - 1]);
            let mut counts = [0u64; 6];
            for n in &newest[i..i + k] {
                counts[*n] += 1;
            }
            prop_assert_eq!(cell.counts, counts);
            i += k;
        }
        prop_assert_eq!(i, dates.len());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_date_map_counts_each_dates_newest_run(
            months in any::<bool>(),
            n in 1i64..40,
            units in 1i64..3,
            ops in proptest::collection::vec(op(), 0..40),
            cells in proptest::collection::vec(1u64..50, 3),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
            let now = datetime!(2024-06-01 00:00);
            let (interval, end) = if months {
                ("month", format!("{}-01-31 00:00:00", 2000 + n * units / 12 + 1))
            } else {
                ("hour", crate::domain::datetime::format_api(
                    crate::domain::datetime::add_micros(datetime!(2000-01-31 00:00), i128::from(n * units) * 3_600_000_000).unwrap(),
                ))
            };
            let body = obj(serde_json::json!({
                "name": "m", "start_datetime": "2000-01-31 00:00:00", "end_datetime": end,
                "interval_type": interval, "interval_units": units,
            }));
            let id = lifecycle::create(&conn, "p", &body, now).unwrap().id;
            check(&conn, id, cells[0])?;
            lifecycle::update(&conn, id, None, &obj(serde_json::json!({"status": "initial"})), Limits::default(), now).unwrap();
            check(&conn, id, cells[1])?;
            for (step, op) in ops.into_iter().enumerate() {
                let runs: Vec<i64> = conn
                    .prepare("SELECT id FROM pipeline_run WHERE backfill_id = ?1 ORDER BY id").unwrap()
                    .query_map([id], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
                let pick = |k: usize| runs[k % runs.len()];
                // Each operation in a savepoint: a refused one leaves nothing behind, as on the server.
                conn.execute_batch("SAVEPOINT op").unwrap();
                let done = match op {
                    Op::Report(k, status) => dispatch::report(&conn, pick(k), Report { status, worker: None, metrics: None }, now).map(|_| ()),
                    Op::Retry(k) => dispatch::retry(&conn, pick(k), now).map(|_| ()),
                    Op::Rerun(how) => lifecycle::update(
                        &conn, id, None,
                        &obj(serde_json::json!({"status": "initial", "settings": {"reprocess_behavior": how}})),
                        Limits::default(), now,
                    ).map(|_| ()),
                    Op::Claim(limit) => {
                        let c = Claim { worker: "w".into(), limit, lease_seconds: 600, pipeline_uuid: None, backfill_id: Some(id), executor_type: None };
                        dispatch::claim(&conn, &c, 0, u64::MAX, now).map(|_| ())
                    }
                    Op::Cancel => lifecycle::update(&conn, id, None, &obj(serde_json::json!({"status": "cancelled"})), Limits::default(), now).map(|_| ()),
                };
                conn.execute_batch(if done.is_ok() { "RELEASE op" } else { "ROLLBACK TO op; RELEASE op" }).unwrap();
                check(&conn, id, cells[step % 3])?;
            }
        }
    }
}
