//! Authentication, as Mage's API has it (docs/auth.md): an API key and an OAuth token.
//!
//! Off (the default on a loopback address) every request passes and credentials are ignored.
//! On (`--require-auth`, implied by a non-loopback bind), every `/api` request needs a
//! configured API key (`X-API-KEY` header, `api_key` query parameter, or a top-level
//! `api_key` in a small POST or PUT body) and a known, unexpired OAuth token (`OAUTH-TOKEN`
//! header, `Authorization: Bearer`, or the `oauth_token` cookie, which carries a login's JWT):
//! one made with `backfilld token create` or a login's session. A login (`POST
//! /api/sessions`) needs the key alone. Keys are compared in constant time; tokens are looked
//! up by their SHA-256.
//! Neither is ever logged (the access log redacts `api_key`, see `api::access`).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};

use super::body::{self, Reservation};
use super::error::ApiError;
use super::AppState;
use crate::auth::{jwt, token};
use crate::domain::datetime;
use crate::service::queries;

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

fn header_value<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
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

/// The OAuth token the request presents, if any: the `OAUTH-TOKEN` header, else
/// `Authorization: Bearer`, else the `oauth_token` cookie, as Mage reads them. The headers
/// carry the token itself; the cookie carries the JWT a login answers (`jwt`), checked
/// against the file's secret and opened to its token (one that fails the check is refused),
/// or a bare token.
pub fn presented_token(req: &HttpRequest, secret: &[u8]) -> Result<Option<String>, ApiError> {
    if let Some(t) = header_value(req, "OAUTH-TOKEN") {
        return Ok(Some(t.to_string()));
    }
    if let Some(auth) = header_value(req, header::AUTHORIZATION.as_str()) {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Ok(Some(rest.trim().to_string()));
        }
    }
    let Some(cookie) = req.cookie("oauth_token").map(|c| c.value().to_string()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if jwt::looks_like(&cookie) {
        return jwt::decode(&cookie, secret).map(|claims| Some(claims.token)).ok_or(ApiError::InvalidOauthToken);
    }
    Ok(Some(cookie))
}

/// The largest body in which a top-level `api_key` is looked for. Real requests carrying the
/// key this way are a backfill record or a run report: a few hundred bytes.
pub const KEY_BODY_LIMIT: usize = 64 << 10;

/// The top-level `api_key` of a JSON body, which Mage also accepts: looked for only in a body
/// of declared length up to `KEY_BODY_LIMIT`, read (by `body::buffer`, under the usual
/// deadline and budget) and left buffered for the handler. The reservation covers the body
/// until the response.
async fn body_api_key(
    req: &mut ServiceRequest,
    state: &AppState,
) -> Result<(Option<String>, Option<Reservation>), ApiError> {
    if !body::declared_at_most(req.headers(), KEY_BODY_LIMIT) {
        return Ok((None, None));
    }
    let Some((reservation, bytes)) = body::buffer(req, &state.body, KEY_BODY_LIMIT).await? else {
        return Ok((None, None));
    };
    let key = match body::object(&bytes).ok().and_then(|mut o| o.remove("api_key")) {
        Some(serde_json::Value::String(key)) => Some(key),
        _ => None,
    };
    Ok((key, Some(reservation)))
}

fn check_key(key: Option<&str>, state: &AppState) -> Result<(), ApiError> {
    match key {
        Some(key) if token::key_matches(key, &state.auth.key_hashes) => Ok(()),
        _ => Err(ApiError::InvalidApiKey),
    }
}

fn check_token(req: &ServiceRequest, state: &AppState) -> Result<(), ApiError> {
    let presented = presented_token(req.request(), &state.jwt_secret)?.ok_or(ApiError::UnauthorizedAccess)?;
    // One or two indexed lookups (a token made with `backfilld token create`, else a login's
    // session): on this thread, as reads are (`engine::Engine::read`).
    let hash = token::hash(&presented);
    let expires_at =
        state.engine.read(|conn| queries::token_expiry(conn, &hash))?.ok_or(ApiError::InvalidOauthToken)?;
    match expires_at {
        Some(expires) if expires <= datetime::now() => Err(ApiError::ExpiredOauthToken),
        _ => Ok(()),
    }
}

/// Whether the request logs in (`POST /api/sessions`), which needs the API key but, of
/// course, no token.
fn is_login(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::POST && req.path() == "/api/sessions"
}

/// Checks the request's credentials. Those in headers, cookies and the query come first, so
/// that a request without them is refused before a byte of its body is read; only a POST or
/// PUT that has a valid token but no key elsewhere has its (small) body searched for one.
async fn check(req: &mut ServiceRequest, state: &AppState) -> Result<Option<Reservation>, ApiError> {
    let key = header_value(req.request(), "X-API-KEY").map(str::to_string).or_else(|| query_value(req, "api_key"));
    if is_login(req) {
        let (key, reservation) = match key {
            Some(key) => (Some(key), None),
            None => body_api_key(req, state).await?,
        };
        check_key(key.as_deref(), state)?;
        return Ok(reservation);
    }
    if key.is_some() || !matches!(req.method().as_str(), "POST" | "PUT") {
        check_key(key.as_deref(), state)?;
        check_token(req, state)?;
        return Ok(None);
    }
    // No key outside the body: the token first, so that the body is read only for a caller
    // that has one. With neither, the key is what is missing first, as in Mage.
    check_token(req, state).map_err(|e| match e {
        ApiError::UnauthorizedAccess => ApiError::InvalidApiKey,
        other => other,
    })?;
    let (key, reservation) = body_api_key(req, state).await?;
    check_key(key.as_deref(), state)?;
    Ok(reservation)
}

/// Middleware for the `/api` scope. A refusal is answered here as a response rather than
/// returned as an error, so that it is counted and logged with its status like any answer
/// (`api::access`), and its connection closed where `body::refuse` says so.
pub async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().filter(|s| s.auth.required).cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match check(&mut req, &state).await {
        Ok(reservation) => {
            let response = next.call(req).await;
            drop(reservation);
            Ok(response?.map_into_left_body())
        }
        Err(e) => Ok(body::refuse(req, e).map_into_right_body()),
    }
}
