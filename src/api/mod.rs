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

/// Runs `f` on a pooled connection inside one read transaction (so that its statements see
/// one snapshot), off the async workers.
pub async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection) -> Result<T, lifecycle::Error> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(move || -> Result<T, ApiError> {
        let mut conn = state.pool.get()?;
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    })
    .await?
}

/// Runs `f` inside one immediate write transaction, committed only when `f` succeeds: a
/// request writes all of its rows or none. `f` gets the request's one `now`.
pub async fn write<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection, DateTime) -> Result<T, lifecycle::Error> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(move || -> Result<T, ApiError> {
        let mut conn = state.pool.get()?;
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
