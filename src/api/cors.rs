//! Cross-origin requests from browsers (CORS), off unless `--cors-origin` names origins.
//!
//! actix-cors answers preflights and adds the `Access-Control-*` headers; reads from other
//! origins are served as usual and only lack those headers (a browser then withholds the
//! answer from the page), so curl and the dashboard, whose requests carry their own origin,
//! are never refused for it. State changes from other origins than these are refused before
//! this (`api::sites`). A refused preflight is answered in the error envelope.

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;

use super::body;
use super::error::ApiError;

/// The request headers a page may send: the credentials Mage's clients use, and what a
/// conditional GET and a JSON body need.
const ALLOWED_HEADERS: [&str; 5] = ["authorization", "content-type", "if-none-match", "oauth-token", "x-api-key"];

/// The answer headers a page may read besides the simple ones.
const EXPOSED_HEADERS: [&str; 7] = [
    "allow",
    "etag",
    "retry-after",
    "x-request-id",
    "content-range",
    // A run's log: what a follower needs to keep its place (api::run_logs).
    "backfilld-log-received",
    "backfilld-run-finished",
];

/// How long a browser may keep a preflight's answer (seconds).
const MAX_AGE: usize = 3600;

/// The policy for the allowed origins (already checked by `auth::origin::parse`); with none, the
/// caller does not wrap it at all.
pub fn policy(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allowed_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(MAX_AGE)
        .block_on_origin_mismatch(false);
    if origins.iter().any(|o| o == "*") {
        // Any origin: no credentialed requests (browsers refuse `*` with credentials anyway).
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        cors = cors.supports_credentials();
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// Outside the CORS layer: a preflight it refused (a 400 whose body is its reason in plain
/// words, without a content type) is said in the contract's envelope instead.
pub async fn enveloped(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let preflight = req.method() == Method::OPTIONS;
    let response = next.call(req).await?;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(preflight && !json && response.status() == StatusCode::BAD_REQUEST) {
        return Ok(response.map_into_left_body());
    }
    let (req, res) = response.into_parts();
    let reason = actix_web::body::to_bytes_limited(res.into_body(), 1024)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b).trim().trim_end_matches('.').to_string())
        .unwrap_or_default();
    let e = ApiError::BadRequest(format!("the CORS preflight was refused: {reason} (see --cors-origin)"));
    Ok(ServiceResponse::new(req.clone(), body::refusal(&req, e)).map_into_right_body())
}
