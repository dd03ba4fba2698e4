//! Authentication, as MAGE-API.md describes Mage's: an API key and an OAuth token.
//!
//! Off (the default on a loopback address) every request passes and credentials are ignored.
//! On (`--require-auth`, implied by a non-loopback bind), every `/api` request needs a
//! configured API key (`X-API-KEY` header, `api_key` query parameter, or a top-level
//! `api_key` in a POST or PUT body) and a known,
//! unexpired OAuth token (`OAUTH-TOKEN` header, `Authorization: Bearer`, or the `oauth_token`
//! cookie). Keys are compared in constant time; tokens are looked up by their SHA-256.
//! Neither is ever logged (the access log redacts `api_key`, see `lib.rs`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;

use super::error::ApiError;
use super::AppState;
use crate::{store, token};

/// Who may call the API. The default is authentication off.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub required: bool,
    /// The configured API keys, hashed once here rather than on every request.
    key_hashes: Vec<[u8; 32]>,
}

impl AuthConfig {
    pub fn new(required: bool, api_keys: &[String]) -> AuthConfig {
        AuthConfig { required, key_hashes: api_keys.iter().map(|k| token::hash(k)).collect() }
    }
}

fn header_value<'a>(req: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn query_value(req: &ServiceRequest, name: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn presented_token(req: &ServiceRequest) -> Option<String> {
    if let Some(t) = header_value(req, "OAUTH-TOKEN") {
        return Some(t.to_string());
    }
    if let Some(auth) = header_value(req, header::AUTHORIZATION.as_str()) {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_string());
        }
    }
    req.cookie("oauth_token").map(|c| c.value().to_string()).filter(|v| !v.is_empty())
}

/// The top-level `api_key` of a JSON body, which Mage also accepts. The body is read (within
/// the usual limit) and put back for the handler.
async fn body_api_key(req: &mut ServiceRequest) -> Option<String> {
    let payload = req.extract::<web::Payload>().await.ok()?;
    let bytes = payload.to_bytes_limited(super::body::BODY_LIMIT).await.ok()?.ok()?;
    req.set_payload(actix_web::dev::Payload::from(bytes.clone()));
    match super::body::object(&bytes).ok()?.remove("api_key") {
        Some(serde_json::Value::String(key)) => Some(key),
        _ => None,
    }
}

async fn check(req: &mut ServiceRequest, state: &web::Data<AppState>) -> Result<(), ApiError> {
    let mut key = header_value(req, "X-API-KEY").map(str::to_string).or_else(|| query_value(req, "api_key"));
    if key.is_none() && matches!(req.method().as_str(), "POST" | "PUT") {
        key = body_api_key(req).await;
    }
    match key {
        Some(key) if token::key_matches(&key, &state.auth.key_hashes) => {}
        _ => return Err(ApiError::InvalidApiKey),
    }
    let presented = presented_token(req).ok_or(ApiError::UnauthorizedAccess)?;
    let hash = token::hash(&presented);
    // One indexed lookup: done on the worker, as reads are (see `api::read`).
    let conn = state.pool.get()?;
    let found = store::tokens::find_token_by_hash(&conn, &hash)?;
    let record = found.ok_or(ApiError::InvalidOauthToken)?;
    match record.expires_at {
        Some(expires) if expires <= crate::now() => Err(ApiError::ExpiredOauthToken),
        _ => Ok(()),
    }
}

/// Middleware for the `/api` scope.
pub async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().filter(|s| s.auth.required).cloned() {
        check(&mut req, &state).await?;
    }
    next.call(req).await
}
