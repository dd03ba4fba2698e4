//! The HTTP API: the route table, shared state, and how extractor failures are answered.
//!
//! Handlers live in one file per resource; they parse, call the store inside `web::block`
//! (rusqlite blocks), and present. No SQL here.

pub mod auth;
pub mod backfills;
pub mod error;
pub mod params;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::db::Pool;
use auth::AuthConfig;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub auth: AuthConfig,
}

/// The whole route table, with the contract's envelope for every failure actix itself
/// would otherwise answer in plain text (bad query strings, paths, bodies; unknown routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest(format!("the query string is malformed: {e}")).into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|e, _| {
            ApiError::BadRequest(format!("the path is malformed: {e}")).into()
        }),
    )
    .app_data(web::JsonConfig::default().error_handler(|e, _| match e {
        actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
        | actix_web::error::JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge(format!("the request body is too large: {e}")).into()
        }
        other => {
            ApiError::BadRequest(format!("the request body is not valid JSON: {other}")).into()
        }
    }))
    .service(
        web::scope("/api")
            .wrap(from_fn(auth::authenticate))
            .service(resource("/backfills", "GET").route(web::get().to(backfills::list)))
            .service(
                resource("/pipelines/{pipeline_uuid}/backfills", "GET")
                    .route(web::get().to(backfills::list_for_pipeline)),
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
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}
