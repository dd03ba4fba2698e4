//! The HTTP API: the route table, shared state, and how extractor failures are answered.
//!
//! Handlers live in one file per resource; they parse, call `queries` (reads) or `lifecycle`
//! (writes) through `read`, `read_at_offset` and `write`, which choose the thread and the
//! transaction, and present. No SQL here.

pub mod auth;
pub mod backfills;
pub mod body;
pub mod error;
pub mod params;
pub mod pipeline_runs;
pub mod slow;
pub mod status;

use actix_web::middleware::from_fn;
use actix_web::{guard, web, HttpRequest, HttpResponse, Resource, Route};
use rusqlite::{Connection, TransactionBehavior};
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::datetime::DateTime;
use crate::db::Pool;
use crate::error::Error;
use crate::lifecycle::Limits;
use auth::AuthConfig;
use body::BodyLimits;
use error::ApiError;
use slow::SlowReads;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub body: BodyLimits,
    pub slow: SlowReads,
}

impl AppState {
    /// The state with the default body limits and one slow-read thread.
    pub fn new(pool: Pool, auth: AuthConfig, limits: Limits) -> std::io::Result<AppState> {
        Ok(AppState { pool, auth, limits, body: BodyLimits::default(), slow: SlowReads::start(slow::SLOW_QUEUE)? })
    }
}

/// `{"<key>": value}`, serialized straight from `value` (no intermediate JSON tree).
pub fn one<T: Serialize>(key: &'static str, value: &T) -> HttpResponse {
    struct Keyed<'a, T>(&'static str, &'a T);
    impl<T: Serialize> Serialize for Keyed<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(self.0, self.1)?;
            map.end()
        }
    }
    HttpResponse::Ok().json(Keyed(key, value))
}

/// What a collection answer says besides its records.
#[derive(Serialize)]
pub struct Metadata {
    /// How many records match the filters, on every page.
    pub count: u64,
    /// Whether more records follow this page.
    pub next: bool,
    /// Where the next page starts, for `_cursor`; only when `next` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `{"<key>": [records], "metadata": {...}}`, serialized straight from the records.
pub fn collection<T: Serialize>(key: &'static str, records: &[T], metadata: &Metadata) -> HttpResponse {
    struct Page<'a, T>(&'static str, &'a [T], &'a Metadata);
    impl<T: Serialize> Serialize for Page<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry(self.0, self.1)?;
            map.serialize_entry("metadata", self.2)?;
            map.end()
        }
    }
    HttpResponse::Ok().json(Page(key, records, metadata))
}

/// Runs `f` on a pooled connection inside one read transaction, so that its statements see
/// one snapshot.
fn read_now<T>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, ApiError> {
    let conn = pool.get()?;
    // BEGIN and COMMIT as cached statements: rusqlite's `transaction()` parses them anew
    // on every request.
    if !conn.is_autocommit() {
        // Only if an earlier COMMIT failed: end what it left open rather than fail forever.
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let out = f(&conn);
    // A read-only transaction: COMMIT and ROLLBACK are the same, and either ends it.
    conn.prepare_cached(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })?.execute([])?;
    Ok(out?)
}

/// A read bounded by indexes and kept counts, run right here on the worker thread although
/// rusqlite blocks: each is a few index lookups, and handing each to another thread and back
/// cost more than the read itself (page 0 with run counts: 3,834 requests/s through
/// `web::block`, 6,190 inline, examples/bench.rs). With one worker per core this is the
/// thread-per-core model. Listing reads that can take long go through `read_at_offset`;
/// writes through `write`.
pub async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    read_now(&state.pool, f)
}

/// A listing read that first walks `offset` index entries: on the worker thread like `read`
/// while that is short, on the slow-read thread (`slow`) from `slow::SLOW_OFFSET` on, so
/// that the worker threads stay free for everything else.
pub async fn read_at_offset<T: Send + 'static>(
    state: web::Data<AppState>,
    offset: u64,
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    if offset < slow::SLOW_OFFSET {
        return read_now(&state.pool, f);
    }
    let pool = state.pool.clone();
    state.slow.run(move || read_now(&pool, f)).await?
}

/// Runs `f` inside one immediate write transaction, committed only when `f` succeeds: a
/// request writes all of its rows or none. `f` gets the request's one `now`. Off the
/// worker threads, since a write may wait for SQLite's write lock or take long (a start).
/// Refused (503) once the data file has been deleted or replaced under the server: such a
/// write would be lost at the next start.
pub async fn write<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection, DateTime) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(move || -> Result<T, ApiError> {
        let mut conn = state.pool.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx, crate::now())?;
        // At the last moment: a write committed into a deleted or replaced file is lost.
        state.pool.check_file().map_err(file_lost)?;
        tx.commit()?;
        Ok(out)
    })
    .await?
}

fn file_lost(e: crate::db::FileLost) -> ApiError {
    ApiError::Unavailable {
        message: format!("{e}; writes are refused until backfilld is restarted"),
        retry_after_secs: 60,
    }
}

/// A GET route that also answers HEAD (health checkers use it; actix sends no body).
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The whole route table, with the contract's envelope for every failure actix itself
/// would otherwise answer in plain text (bad query strings and paths; unknown routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("the query string is malformed: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("the path is malformed: {e}")).into()),
    )
    // A health check outside authentication: it tells only the version and whether
    // authentication is required, and touches no database.
    .service(resource("/api/status", "GET, HEAD").route(get().to(status::get)))
    .service(
        web::scope("/api")
            // Middleware runs last-added first: credentials in headers are checked before
            // any body is read, then the body is read whole, then the handler runs.
            .wrap(from_fn(body::buffered))
            .wrap(from_fn(auth::authenticate))
            .service(resource("/backfills", "GET, HEAD").route(get().to(backfills::list)))
            .service(
                resource("/backfills/{id}", "GET, HEAD, PUT, DELETE")
                    .route(get().to(backfills::get))
                    .route(web::put().to(backfills::update))
                    .route(web::delete().to(backfills::delete)),
            )
            .service(
                resource("/pipelines/{pipeline_uuid}/backfills", "GET, HEAD, POST")
                    .route(get().to(backfills::list_for_pipeline))
                    .route(web::post().to(backfills::create)),
            )
            .service(
                resource("/pipelines/{pipeline_uuid}/backfills/{id}", "PUT")
                    .route(web::put().to(backfills::update_in_pipeline)),
            )
            .service(resource("/pipeline_runs", "GET, HEAD").route(get().to(pipeline_runs::list)))
            .service(
                resource("/pipeline_runs/{id}", "GET, HEAD, PUT")
                    .route(get().to(pipeline_runs::get))
                    .route(web::put().to(pipeline_runs::update)),
            )
            .default_service(web::to(route_not_found)),
    )
    .default_service(web::to(route_not_found));
}

/// A resource whose other methods answer 405 with an `Allow` header.
fn resource(path: &str, allowed: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let e = ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string(), allowed };
        body::refusal(&req, e)
    }))
}

async fn route_not_found(req: HttpRequest) -> HttpResponse {
    let e = ApiError::RouteNotFound { method: req.method().to_string(), path: req.path().to_string() };
    body::refusal(&req, e)
}
