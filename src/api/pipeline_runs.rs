//! Pipeline run handlers: the listing a dashboard follows, and the status reports of an
//! outside worker, which move the run's backfill along.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::params::{encode_run_cursor, parse_id, ListQuery};
use super::{body, collection, one, read, read_at_offset, write, AppState, Metadata};
use crate::datetime::{api_format, DateTime};
use crate::model::{Fields, Object, PipelineRun, RunStatus};
use crate::store::pipeline_runs::{RunFilter, RunStart};
use crate::{lifecycle, queries};

/// A pipeline run as the API shows it, keys in alphabetical order.
#[derive(Serialize)]
pub struct PipelineRunJson<'a> {
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
}

impl<'a> From<&'a PipelineRun> for PipelineRunJson<'a> {
    fn from(r: &'a PipelineRun) -> Self {
        PipelineRunJson {
            backfill_id: r.backfill_id,
            completed_at: r.completed_at,
            created_at: r.created_at,
            event_variables: &r.event_variables,
            execution_date: r.execution_date,
            executor_type: &r.executor_type,
            id: r.id,
            metrics: &r.metrics,
            passed_sla: r.passed_sla,
            pipeline_schedule_id: r.pipeline_schedule_id,
            pipeline_uuid: &r.pipeline_uuid,
            started_at: r.started_at,
            status: r.status.as_str(),
            updated_at: r.updated_at,
            variables: &r.variables,
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

/// `PUT /api/pipeline_runs/{id}` with `{"pipeline_run": {"status": ...}}`: a worker reports.
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let fields = body::record(payload, "pipeline_run").await?;
    let status = Fields(&fields)
        .parsed::<RunStatus>("status")?
        .ok_or_else(|| ApiError::Invalid(crate::model::FieldError::new("status", "is required")))?;
    let run = write(state, move |conn, now| lifecycle::report_run(conn, id, status, now)).await?;
    Ok(one("pipeline_run", &PipelineRunJson::from(&run)))
}
