//! Pipeline run handlers: the listing a dashboard follows; claims, heartbeats and reports of
//! workers, which move the run's backfill along; and retrying a date.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::params::{encode_run_cursor, parse_id, ListQuery};
use super::{body, collection, one, read, read_at_offset, write, AppState, Metadata};
use crate::datetime::{api_format, DateTime};
use std::sync::atomic::Ordering;

use crate::dispatch::{self, Claim, Report};
use crate::model::{Object, PipelineRun};
use crate::queries::{self, Schedules};
use crate::store::pipeline_runs::{RunFilter, RunStart};
use crate::store::schedules::ScheduleInfo;

/// A pipeline run as the API shows it, keys in alphabetical order: Mage's (those of its
/// listing rows, with the values true for backfilld, which runs no blocks and keeps no
/// pipelines) and the lease's.
#[derive(Serialize)]
pub struct PipelineRunJson<'a> {
    attempt: Option<i64>,
    backfill_id: Option<i64>,
    /// backfilld runs no blocks: always empty, and both block counts 0.
    block_runs: [(); 0],
    block_runs_count: u8,
    #[serde(serialize_with = "api_format::option::serialize")]
    completed_at: Option<DateTime>,
    completed_block_runs_count: u8,
    #[serde(serialize_with = "api_format::serialize")]
    created_at: DateTime,
    event_variables: &'a Option<Object>,
    #[serde(serialize_with = "api_format::option::serialize")]
    execution_date: Option<DateTime>,
    executor_type: &'a Option<String>,
    id: i64,
    #[serde(serialize_with = "api_format::option::serialize")]
    lease_expires_at: Option<DateTime>,
    metrics: &'a Option<Object>,
    passed_sla: bool,
    pipeline_schedule_id: Option<i64>,
    pipeline_schedule_name: Option<&'a str>,
    pipeline_schedule_token: Option<&'a str>,
    pipeline_schedule_type: Option<&'a str>,
    /// backfilld keeps no pipelines, so knows no tags (Mage's answer for a missing pipeline)
    /// and no pipeline type; nor a project, so no repo_path.
    pipeline_tags: [(); 0],
    pipeline_type: Option<()>,
    pipeline_uuid: &'a str,
    repo_path: Option<()>,
    #[serde(serialize_with = "api_format::option::serialize")]
    started_at: Option<DateTime>,
    status: &'static str,
    #[serde(serialize_with = "api_format::serialize")]
    updated_at: DateTime,
    variables: &'a Option<Object>,
    worker: &'a Option<String>,
}

impl<'a> PipelineRunJson<'a> {
    /// `r` with its schedule, looked up in `schedules` (`queries::schedules_of`).
    pub fn new(r: &'a PipelineRun, schedules: &'a Schedules) -> Self {
        Self::with_schedule(r, r.pipeline_schedule_id.and_then(|id| schedules.get(&id)))
    }

    /// `r` with `schedule`, the one it hangs from (none when it names none, or one that no
    /// longer exists).
    pub fn with_schedule(r: &'a PipelineRun, schedule: Option<&'a ScheduleInfo>) -> Self {
        PipelineRunJson {
            attempt: r.attempt,
            backfill_id: r.backfill_id,
            block_runs: [],
            block_runs_count: 0,
            completed_block_runs_count: 0,
            completed_at: r.completed_at,
            created_at: r.created_at,
            event_variables: &r.event_variables,
            execution_date: r.execution_date,
            executor_type: &r.executor_type,
            id: r.id,
            lease_expires_at: r.lease_expires_at,
            metrics: &r.metrics,
            passed_sla: r.passed_sla,
            pipeline_schedule_id: r.pipeline_schedule_id,
            pipeline_schedule_name: schedule.map(|s| s.name.as_str()),
            pipeline_schedule_token: schedule.and_then(|s| s.token.as_deref()),
            pipeline_schedule_type: schedule.map(|s| s.schedule_type.as_str()),
            pipeline_tags: [],
            pipeline_type: None,
            pipeline_uuid: &r.pipeline_uuid,
            repo_path: None,
            started_at: r.started_at,
            status: r.status.as_str(),
            updated_at: r.updated_at,
            variables: &r.variables,
            worker: &r.worker,
        }
    }
}

/// `GET /api/pipeline_runs`: filters `backfill_id`, `pipeline_uuid`, `status`; paged like
/// the backfills, `_cursor` included; newest (highest id) first.
pub async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let limit = query.page()?.limit;
    let start = query.run_start()?;
    let filter = RunFilter {
        backfill_id: query.backfill_id()?,
        pipeline_uuid: query.pipeline_uuid().map(str::to_string),
        status: query.run_status()?,
    };
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
    let (mut runs, count, schedules) = read_at_offset(state, offset, fetch).await?;
    let next = runs.len() as u64 > limit;
    runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let cursor = runs.last().filter(|_| next).map(|r| encode_run_cursor(r.id));
    let rows: Vec<PipelineRunJson> = runs.iter().map(|r| PipelineRunJson::new(r, &schedules)).collect();
    Ok(collection("pipeline_runs", &rows, &Metadata { count, next, cursor }))
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
    let report = Report::parse(&body::record(payload, "pipeline_run").await?)?;
    let (run, schedule) =
        write(state, move |conn, now| and_schedule(conn, dispatch::report(conn, id, report, now)?)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::with_schedule(&run, schedule.as_ref())))
}

/// `POST /api/pipeline_runs/claim` with `{"worker": ..., "limit": ..., "lease_seconds": ...}`
/// (and optionally `pipeline_uuid`, `backfill_id`): up to `limit` runs, now the worker's.
pub async fn claim(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let claim = Claim::parse(&body::object(&body::read(payload).await?)?, state.min_lease_seconds)?;
    let shared = state.clone();
    let state_metrics = state.metrics.clone();
    let claimed = write(state, move |conn, now| {
        let after = shared.claim_cursor.load(Ordering::Relaxed);
        let claimed = dispatch::claim(conn, &claim, after, now)?;
        // Kept even should the commit fail: the cursor only spreads claims, it promises nothing.
        shared.claim_cursor.store(claimed.last_backfill, Ordering::Relaxed);
        let schedules = queries::schedules_of(conn, &claimed.runs)?;
        Ok((claimed, schedules))
    })
    .await?;
    let (claimed, schedules) = claimed;
    let m = &state_metrics;
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
fn and_schedule(
    conn: &rusqlite::Connection,
    run: PipelineRun,
) -> Result<(PipelineRun, Option<ScheduleInfo>), crate::error::Error> {
    let schedule = queries::schedule_of(conn, &run)?;
    Ok((run, schedule))
}
