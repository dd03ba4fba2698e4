//! Backfill handlers: parse the request, call `queries` or `lifecycle` through `read`,
//! `read_at_offset` or `write`, present the answer as `wire::BackfillJson`.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::params::{encode_cursor, parse_id, ListQuery};
use super::{body, collection, one, read, read_at_offset, write, AppState, Metadata};
use crate::domain::datetime::{api_format, DateTime};
use crate::domain::model::RunStatusCounts;
use crate::service::{lifecycle, queries};
use crate::store::backfills::BackfillFilter;
use crate::store::{ListingKey, Start};
use crate::wire::BackfillJson;

async fn respond_with_listing(
    state: web::Data<AppState>,
    query: &ListQuery,
    pipeline_uuid: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.page()?.limit;
    let start = query.start()?;
    let with_counts = query.include_run_count()?;
    let filter = BackfillFilter {
        pipeline_uuid,
        statuses: query.backfill_statuses()?,
        name_prefix: query.name_prefix().map(str::to_string),
    };
    let fetch = move |conn: &rusqlite::Connection| queries::backfill_listing(conn, &filter, limit, start, with_counts);
    let offset = match start {
        Start::Offset(n) => n,
        Start::After(_) => 0,
    };
    let listing = read_at_offset(state.clone(), offset, fetch).await?;
    let no_runs = RunStatusCounts::new();
    let rows: Vec<BackfillJson> = listing
        .backfills
        .iter()
        .map(|b| BackfillJson::new(b, listing.counts.as_ref().map(|c| c.get(&b.id).unwrap_or(&no_runs))))
        .collect();
    collection("backfills", &rows, state.page_bytes, |kept| {
        // Past its byte budget, the page ends early and the next starts after what it kept.
        let next = listing.next || kept < rows.len();
        let cursor = listing.backfills[..kept]
            .last()
            .filter(|_| next)
            .map(|b| encode_cursor(ListingKey { created_at: b.created_at, id: b.id }));
        Metadata { count: listing.total, next, cursor }
    })
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
        json = json.with_run_dates(dates.iter().map(|d| d.variables()).collect());
    }
    Ok(one("backfill", &json))
}

/// The query of `GET /api/backfills/{id}/date_map`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DateMapQuery {
    pub cells: Option<String>,
}

/// The most cells a date map may ask for, and how many it gets by default.
pub const MAX_CELLS: u64 = 5000;
pub const DEFAULT_CELLS: u64 = 1000;

/// A date map as answered, serialized straight from its cells.
#[derive(serde::Serialize)]
struct DateMapJson {
    dates: u64,
    cells: Vec<CellJson>,
}

#[derive(serde::Serialize)]
struct CellJson {
    #[serde(serialize_with = "api_format::serialize")]
    first: DateTime,
    #[serde(serialize_with = "api_format::serialize")]
    last: DateTime,
    dates: u64,
    counts: CountsJson,
}

#[derive(serde::Serialize)]
struct CountsJson {
    completed: u64,
    failed: u64,
    running: u64,
    initial: u64,
    cancelled: u64,
    none: u64,
}

/// `GET /api/backfills/{id}/date_map?cells=N`: the backfill's dates in at most N cells, each
/// counted by the status of each date's newest run (`queries::date_map`).
pub async fn date_map(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DateMapQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let cells = match query.cells.as_deref() {
        None => DEFAULT_CELLS,
        Some(v) => v.trim().parse::<u64>().ok().filter(|n| (1..=MAX_CELLS).contains(n)).ok_or_else(|| {
            ApiError::BadRequest(format!("cells must be a whole number from 1 to {MAX_CELLS}, got '{v}'"))
        })?,
    };
    let map = read(state, move |conn| queries::date_map(conn, id, cells)).await?;
    let cells: Vec<CellJson> = map
        .cells
        .iter()
        .map(|c| {
            let [completed, failed, running, initial, cancelled, none] = c.counts;
            CellJson {
                first: c.first,
                last: c.last,
                dates: c.dates,
                counts: CountsJson { completed, failed, running, initial, cancelled, none },
            }
        })
        .collect();
    Ok(one("date_map", &DateMapJson { dates: map.dates, cells }))
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

/// `POST /api/pipelines/{pipeline_uuid}/backfills/preview`: what creating the body's backfill
/// and starting it would make (`lifecycle::preview`), with nothing read or written: the run
/// count, the run dates from `_offset` (`_limit` of them, as `include_preview_runs` pages
/// them) and up to `_limit` of the last dates after those. A pure computation on the body,
/// so it runs here rather than on the engine.
pub async fn preview(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let fields = body::record(payload, "backfill").await?;
    let p = lifecycle::preview(&path, &fields, state.limits, page.offset, page.limit)?;
    let dates = |d: &[crate::domain::schedule::RunDate]| d.iter().map(|d| d.variables()).collect::<Vec<_>>();
    let answer = serde_json::json!({
        "total_run_count": p.total_run_count,
        "pipeline_run_dates": dates(&p.run_dates),
        "last_pipeline_run_dates": dates(&p.last_run_dates),
    });
    Ok(one("backfill_preview", &answer))
}
