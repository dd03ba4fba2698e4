//! Pipeline run handlers: the listing a dashboard follows; claims, heartbeats and reports of
//! workers, which move the run's backfill along; and retrying a date.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::params::{encode_run_cursor, parse_id, ListQuery};
use super::{body, collection, one, read, read_at_offset, run_logs, write, AppState, Metadata};
use crate::domain::model::{PipelineRun, RunStatus};
use crate::service::dispatch::{self, Claim, Report};
use crate::service::logs::{self, Chunk};
use crate::service::{self, queries};
use crate::store::pipeline_runs::RunStart;
use crate::store::schedules::ScheduleInfo;
use crate::wire::PipelineRunJson;

/// `GET /api/pipeline_runs`: filters `backfill_id`, `pipeline_uuid`, `status` (a run status,
/// or `last_run_failed` with a `backfill_id`); paged like the backfills, `_cursor` included;
/// newest (highest id) first.
pub async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let limit = query.page()?.limit;
    let start = query.run_start()?;
    let filter = query.run_filter()?;
    // One row more than asked, to know whether more follow.
    let fetch = move |conn: &rusqlite::Connection| {
        let (runs, count) = queries::run_listing(conn, &filter, limit.saturating_add(1), start)?;
        let schedules = queries::schedules_of(conn, &runs)?;
        Ok((runs, count, schedules))
    };
    let offset = match start {
        RunStart::Offset(n) => n,
        RunStart::Below(_) => 0,
    };
    let (mut runs, count, schedules) = read_at_offset(state.clone(), offset, fetch).await?;
    let more = runs.len() as u64 > limit;
    runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let rows: Vec<PipelineRunJson> = runs.iter().map(|r| PipelineRunJson::new(r, &schedules)).collect();
    collection("pipeline_runs", &rows, state.page_bytes, |kept| {
        // Past its byte budget, the page ends early and the next starts after what it kept.
        let next = more || kept < rows.len();
        let cursor = runs[..kept].last().filter(|_| next).map(|r| encode_run_cursor(r.id));
        Metadata { count, next, cursor }
    })
}

/// `GET /api/pipeline_runs/{id}`
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let (run, schedule) = read(state, move |conn| and_schedule(conn, queries::run(conn, id)?)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::with_schedule(&run, schedule.as_ref())))
}

/// `PUT /api/pipeline_runs/{id}` with `{"pipeline_run": {"status": ..., "worker": ...,
/// "metrics": {...}}}`: a worker's heartbeat or report, or a status set by hand.
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = body::record(payload, "pipeline_run").await?;
    let report = Report::parse(&record)?;
    // A worker's report may carry the last chunk of its run's log: appended first, in the
    // same transaction (a repeat of the report, the run already finished, appends nothing).
    let log = match &report.worker {
        Some(worker) => run_logs::chunk_in(&record)?.map(|(offset, bytes)| (worker.clone(), offset, bytes)),
        None => None,
    };
    let max = state.max_log_bytes;
    let (run, schedule, pruned) = write(state, move |conn, now| {
        let mut pruned = None;
        if let Some((worker, offset, bytes)) = &log {
            if queries::run(conn, id)?.status == RunStatus::Running {
                let chunk = Chunk { worker, offset: *offset, bytes };
                pruned = logs::append(conn, id, chunk, max, now)?.pruned;
            }
        }
        let (run, schedule) = and_schedule(conn, dispatch::report(conn, id, report, now)?)?;
        Ok((run, schedule, pruned))
    })
    .await?;
    run_logs::said_pruned(pruned, max);
    Ok(one("pipeline_run", &PipelineRunJson::with_schedule(&run, schedule.as_ref())))
}

/// `POST /api/pipeline_runs/claim` with `{"worker": ..., "limit": ..., "lease_seconds": ...}`
/// (and optionally `pipeline_uuid`, `backfill_id`): up to `limit` runs, now the worker's.
pub async fn claim(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let claim = Claim::parse(&body::object(&body::read(payload).await?)?, state.min_lease_seconds)?;
    let claims = state.claims.clone();
    // A claim's answer is bounded as a page is: it takes no more runs than fit.
    let answer_bytes = state.page_bytes as u64;
    let (claimed, schedules) = write(state.clone(), move |conn, now| {
        let claimed = dispatch::claim(conn, &claim, claims.start(), answer_bytes, now)?;
        // Kept even should the commit fail: the cursor only spreads claims, it promises nothing.
        claims.served(claimed.last_backfill);
        let schedules = queries::schedules_of(conn, &claimed.runs)?;
        Ok((claimed, schedules))
    })
    .await?;
    let m = &state.metrics;
    m.claims.inc();
    m.claimed_runs.inc_by(claimed.runs.len() as u64);
    m.lease_expiries.inc_by(claimed.expired as u64);
    let rows: Vec<PipelineRunJson> = claimed.runs.iter().map(|r| PipelineRunJson::new(r, &schedules)).collect();
    Ok(one("pipeline_runs", &rows))
}

/// `POST /api/pipeline_runs/{id}/retry`: a new run of the run's date; answers the new run.
pub async fn retry(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let (run, schedule) = write(state, move |conn, now| and_schedule(conn, dispatch::retry(conn, id, now)?)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::with_schedule(&run, schedule.as_ref())))
}

/// `run` and its schedule, read in the same transaction.
fn and_schedule(conn: &rusqlite::Connection, run: PipelineRun) -> service::Result<(PipelineRun, Option<ScheduleInfo>)> {
    let schedule = queries::schedule_of(conn, &run)?;
    Ok((run, schedule))
}
