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
use crate::queries;
use crate::store::pipeline_runs::{RunFilter, RunStart};

/// A pipeline run as the API shows it, keys in alphabetical order.
#[derive(Serialize)]
pub struct PipelineRunJson<'a> {
    attempt: Option<i64>,
    backfill_id: Option<i64>,
    #[serde(serialize_with = "api_format::option::serialize")]
    completed_at: Option<DateTime>,
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
    pipeline_uuid: &'a str,
    #[serde(serialize_with = "api_format::option::serialize")]
    started_at: Option<DateTime>,
    status: &'static str,
    #[serde(serialize_with = "api_format::serialize")]
    updated_at: DateTime,
    variables: &'a Option<Object>,
    worker: &'a Option<String>,
}

impl<'a> From<&'a PipelineRun> for PipelineRunJson<'a> {
    fn from(r: &'a PipelineRun) -> Self {
        PipelineRunJson {
            attempt: r.attempt,
            backfill_id: r.backfill_id,
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
            pipeline_uuid: &r.pipeline_uuid,
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
    let fetch = move |conn: &rusqlite::Connection| queries::run_listing(conn, &filter, limit.saturating_add(1), start);
    let offset = match start {
        RunStart::Offset(n) => n,
        RunStart::Below(_) => 0,
    };
    let (mut runs, count) = read_at_offset(state, offset, fetch).await?;
    let next = runs.len() as u64 > limit;
    runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let cursor = runs.last().filter(|_| next).map(|r| encode_run_cursor(r.id));
    let rows: Vec<PipelineRunJson> = runs.iter().map(PipelineRunJson::from).collect();
    Ok(collection("pipeline_runs", &rows, &Metadata { count, next, cursor }))
}

/// `GET /api/pipeline_runs/{id}`
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let run = read(state, move |conn| queries::run(conn, id)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::from(&run)))
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
    let run = write(state, move |conn, now| dispatch::report(conn, id, report, now)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::from(&run)))
}

/// `POST /api/pipeline_runs/claim` with `{"worker": ..., "limit": ..., "lease_seconds": ...}`
/// (and optionally `pipeline_uuid`, `backfill_id`): up to `limit` runs, now the worker's.
pub async fn claim(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let claim = Claim::parse(&body::object(&body::read(payload).await?)?, state.min_lease_seconds)?;
    let shared = state.clone();
    let claimed = write(state, move |conn, now| {
        let after = shared.claim_cursor.load(Ordering::Relaxed);
        let claimed = dispatch::claim(conn, &claim, after, now)?;
        // Kept even should the commit fail: the cursor only spreads claims, it promises nothing.
        shared.claim_cursor.store(claimed.last_backfill, Ordering::Relaxed);
        Ok(claimed)
    })
    .await?;
    let rows: Vec<PipelineRunJson> = claimed.runs.iter().map(PipelineRunJson::from).collect();
    Ok(one("pipeline_runs", &rows))
}

/// `POST /api/pipeline_runs/{id}/retry`: a new run of the run's date; answers the new run.
pub async fn retry(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let run = write(state, move |conn, now| dispatch::retry(conn, id, now)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::from(&run)))
}
