//! `GET /api/status`: a health check in Mage's shape, `{"statuses": [{...}]}`.

use actix_web::{web, HttpResponse};

use super::AppState;

/// Answers without touching the database: the cheapest request the server can serve, which
/// the benchmark uses as its baseline.
pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "statuses": [{
            "backfilld_version": env!("CARGO_PKG_VERSION"),
            "require_user_authentication": state.auth.required,
        }]
    }))
}
