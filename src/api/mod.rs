//! The HTTP API: the route table, shared state, and how extractor failures are answered.
//!
//! Handlers live in one file per resource; they parse, call the store or `lifecycle` inside
//! `web::block` (rusqlite blocks) through `read` and `write`, and present. No SQL here.

pub mod auth;
pub mod backfills;
pub mod body;
pub mod error;
pub mod params;
pub mod pipeline_runs;
pub mod status;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, Resource};
use rusqlite::{Connection, TransactionBehavior};
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::datetime::DateTime;
use crate::db::Pool;
use crate::lifecycle::{self, Limits};
use auth::AuthConfig;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub auth: AuthConfig,
    pub limits: Limits,
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
    /// Where the next page starts, for `_cursor`; only when `next` is true (backfills only).
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
///
/// Reads run right here, on the worker thread, although rusqlite blocks: every read is a
/// few index lookups (the slowest, a deep `_offset`, tens of milliseconds), and handing each
/// to the blocking pool and back cost more than the read itself (page 0 with run counts:
/// 3,834 requests/s through `web::block`, 6,190 inline, examples/bench.rs). With one worker
/// per core this is the thread-per-core model. Writes, which can take a second (a start),
/// go through `write` and the blocking pool instead.
pub async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection) -> Result<T, lifecycle::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let conn = state.pool.get()?;
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

/// Runs `f` inside one immediate write transaction, committed only when `f` succeeds: a
/// request writes all of its rows or none. `f` gets the request's one `now`. Off the
/// worker threads, since a write may wait for SQLite's write lock or take long (a start).
pub async fn write<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection, DateTime) -> Result<T, lifecycle::Error> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(move || -> Result<T, ApiError> {
        let mut conn = state.pool.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx, crate::now())?;
        tx.commit()?;
        Ok(out)
    })
    .await?
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
    .service(resource("/api/status", "GET").route(web::get().to(status::get)))
    .service(
        web::scope("/api")
            .wrap(from_fn(auth::authenticate))
            .service(resource("/backfills", "GET").route(web::get().to(backfills::list)))
            .service(
                resource("/backfills/{id}", "GET, PUT, DELETE")
                    .route(web::get().to(backfills::get))
                    .route(web::put().to(backfills::update))
                    .route(web::delete().to(backfills::delete)),
            )
            .service(
                resource("/pipelines/{pipeline_uuid}/backfills", "GET, POST")
                    .route(web::get().to(backfills::list_for_pipeline))
                    .route(web::post().to(backfills::create)),
            )
            .service(
                resource("/pipelines/{pipeline_uuid}/backfills/{id}", "PUT")
                    .route(web::put().to(backfills::update_in_pipeline)),
            )
            .service(resource("/pipeline_runs", "GET").route(web::get().to(pipeline_runs::list)))
            .service(
                resource("/pipeline_runs/{id}", "GET, PUT")
                    .route(web::get().to(pipeline_runs::get))
                    .route(web::put().to(pipeline_runs::update)),
            )
            .default_service(web::to(route_not_found)),
    )
    .default_service(web::to(route_not_found));
}

/// A resource whose other methods answer 405 with an `Allow` header.
fn resource(path: &str, allowed: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.path().to_string(),
            allowed,
        })
    }))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound { method: req.method().to_string(), path: req.path().to_string() })
}
