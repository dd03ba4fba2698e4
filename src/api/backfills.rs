//! Backfill handlers: parse the request, call `queries` or `lifecycle` through `read`,
//! `read_at_offset` or `write`, present the answer.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::params::{encode_cursor, parse_id, ListQuery};
use super::{body, collection, one, read, read_at_offset, write, AppState, Metadata};
use crate::datetime::{api_format, DateTime};
use crate::model::{Backfill, Object, RunStatusCounts};
use crate::store::{ListingKey, Start};
use crate::{lifecycle, queries};

/// A backfill as the API shows it. Fields are in alphabetical order, as Mage sends them;
/// the two count keys appear only when counts were asked for and the dates are complete.
#[derive(Serialize)]
pub struct BackfillJson<'a> {
    block_uuid: &'a Option<String>,
    #[serde(serialize_with = "api_format::option::serialize")]
    completed_at: Option<DateTime>,
    #[serde(serialize_with = "api_format::serialize")]
    created_at: DateTime,
    #[serde(serialize_with = "api_format::option::serialize")]
    end_datetime: Option<DateTime>,
    #[serde(serialize_with = "api_format::option::serialize")]
    failed_at: Option<DateTime>,
    id: i64,
    interval_type: Option<&'static str>,
    interval_units: Option<i64>,
    is_paused: bool,
    metrics: &'a Option<Object>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline_run_dates: Option<Vec<Object>>,
    pipeline_schedule_id: Option<i64>,
    pipeline_uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_status_counts: Option<BTreeMap<&'static str, u64>>,
    settings: &'a Option<Object>,
    #[serde(serialize_with = "api_format::option::serialize")]
    start_datetime: Option<DateTime>,
    #[serde(serialize_with = "api_format::option::serialize")]
    started_at: Option<DateTime>,
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_run_count: Option<u64>,
    #[serde(serialize_with = "api_format::serialize")]
    updated_at: DateTime,
    variables: &'a Option<Object>,
}

impl<'a> BackfillJson<'a> {
    /// `counts` is `Some` when run counts were asked for (empty when the backfill has no runs).
    pub fn new(b: &'a Backfill, counts: Option<&RunStatusCounts>) -> BackfillJson<'a> {
        let f = &b.fields;
        let total = counts.and(f.total_run_count());
        BackfillJson {
            block_uuid: &f.block_uuid,
            completed_at: b.completed_at,
            created_at: b.created_at,
            end_datetime: f.end_datetime,
            failed_at: b.failed_at,
            id: b.id,
            interval_type: f.interval_type.map(|t| t.as_str()),
            interval_units: f.interval_units,
            is_paused: b.is_paused,
            metrics: &b.metrics,
            name: &f.name,
            pipeline_run_dates: None,
            pipeline_schedule_id: b.pipeline_schedule_id,
            pipeline_uuid: &b.pipeline_uuid,
            run_status_counts: total.and(counts).map(|c| c.iter().map(|(status, n)| (status.as_str(), *n)).collect()),
            settings: &f.settings,
            start_datetime: f.start_datetime,
            started_at: b.started_at,
            status: b.status.map(|s| s.as_str()),
            total_run_count: total,
            updated_at: b.updated_at,
            variables: &f.variables,
        }
    }
}

async fn respond_with_listing(
    state: web::Data<AppState>,
    query: &ListQuery,
    pipeline_uuid: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.page()?.limit;
    let start = query.start()?;
    let with_counts = query.include_run_count()?;
    let fetch = move |conn: &rusqlite::Connection| {
        queries::backfill_listing(conn, pipeline_uuid.as_deref(), limit, start, with_counts)
    };
    let offset = match start {
        Start::Offset(n) => n,
        Start::After(_) => 0,
    };
    let listing = read_at_offset(state, offset, fetch).await?;
    let no_runs = RunStatusCounts::new();
    let rows: Vec<BackfillJson> = listing
        .backfills
        .iter()
        .map(|b| BackfillJson::new(b, listing.counts.as_ref().map(|c| c.get(&b.id).unwrap_or(&no_runs))))
        .collect();
    let cursor = listing
        .backfills
        .last()
        .filter(|_| listing.next)
        .map(|b| encode_cursor(ListingKey { created_at: b.created_at, id: b.id }));
    Ok(collection("backfills", &rows, &Metadata { count: listing.total, next: listing.next, cursor }))
}

/// `GET /api/backfills`
pub async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let filter = query.pipeline_uuid().map(str::to_string);
    respond_with_listing(state, &query, filter).await
}

/// `GET /api/pipelines/{pipeline_uuid}/backfills`: that pipeline's backfills only (Mage
/// ignores the pipeline here; see the README's differences).
pub async fn list_for_pipeline(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    respond_with_listing(state, &query, Some(path.into_inner())).await
}

/// `GET /api/backfills/{id}`: with the run counts and the preview page when asked for (the
/// preview brings the counts too, as in Mage).
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    // Parameters are checked before any work, so a bad one is a 400 even for a missing id.
    let id = parse_id(&path)?;
    // The page is checked even when it goes unused, as every parameter is.
    let page = query.page()?;
    let preview = if query.include_preview_runs()? { Some(page) } else { None };
    let with_counts = query.include_run_count()? || preview.is_some();
    // The record and its counts in one read transaction.
    let (backfill, counts) = read(state, move |conn| queries::backfill(conn, id, with_counts)).await?;
    let mut json = BackfillJson::new(&backfill, counts.as_ref());
    if let Some(page) = preview {
        // A block_uuid backfill has no run dates; nor has one with incomplete settings.
        let dates = match (backfill.fields.schedule(), &backfill.fields.block_uuid) {
            (Some(schedule), None) => schedule.run_dates(page.offset, page.limit),
            _ => vec![],
        };
        json.pipeline_run_dates = Some(dates.iter().map(|d| d.variables()).collect());
    }
    Ok(one("backfill", &json))
}

/// `POST /api/pipelines/{pipeline_uuid}/backfills`
pub async fn create(
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let fields = body::record(payload, "backfill").await?;
    let pipeline_uuid = path.into_inner();
    let backfill = write(state, move |conn, now| lifecycle::create(conn, &pipeline_uuid, &fields, now)).await?;
    Ok(one("backfill", &BackfillJson::new(&backfill, None)))
}

async fn respond_to_update(
    state: web::Data<AppState>,
    id: &str,
    pipeline_uuid: Option<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let fields = body::record(payload, "backfill").await?;
    let limits = state.limits;
    let backfill =
        write(state, move |conn, now| lifecycle::update(conn, id, pipeline_uuid.as_deref(), &fields, limits, now))
            .await?;
    Ok(one("backfill", &BackfillJson::new(&backfill, None)))
}

/// `PUT /api/backfills/{id}`: update; `"status": "initial"` starts, `"cancelled"` cancels.
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    respond_to_update(state, &path, None, payload).await
}

/// `PUT /api/pipelines/{pipeline_uuid}/backfills/{id}`: the same, for that pipeline's backfill.
pub async fn update_in_pipeline(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (pipeline_uuid, id) = path.into_inner();
    respond_to_update(state, &id, Some(pipeline_uuid), payload).await
}

/// `DELETE /api/backfills/{id}`: answers the deleted record.
pub async fn delete(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let backfill = write(state, move |conn, _| lifecycle::delete(conn, id)).await?;
    Ok(one("backfill", &BackfillJson::new(&backfill, None)))
}
