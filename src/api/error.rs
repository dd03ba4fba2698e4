//! `ApiError`: every way a request can fail, and the contract's error envelope for each. The
//! layers below fail with their own errors (`service::Error`, `engine::Error`), mapped here.
//!
//! `{"error": {"code", "type", "message", "errors"}, "status"}` with the HTTP status equal to
//! `code` (Mage sends most errors with HTTP 200; backfilld does not). An internal error logs
//! its whole cause chain here, once, and the client gets a generic message.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::domain::model::FieldError;
use crate::{engine, service};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such record (404 `record_not_found`).
    #[error("{0}")]
    NotFound(String),
    /// No such route (404 `record_not_found`, as Mage answers an unknown resource).
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// The route exists, the method does not (405).
    #[error("{method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed { method: String, path: String, allowed: &'static str },
    /// A record's field is invalid (400 `record_invalid`).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// A malformed request: a bad query parameter, a body that is not JSON (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but the record's state forbids it (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body did not arrive in time (408); `body::refusal` closes the connection.
    #[error("{0}")]
    RequestTimeout(String),
    /// The server cannot take this request now (503, with `Retry-After`): its body budget is
    /// spent, its queue of slow reads is full, or its data file is gone.
    #[error("{message}")]
    Unavailable { message: String, retry_after_secs: u32 },
    #[error("the API key is missing or not valid")]
    InvalidApiKey,
    #[error("the OAuth token is not valid")]
    InvalidOauthToken,
    #[error("the OAuth token has expired")]
    ExpiredOauthToken,
    #[error("an OAuth token is required")]
    UnauthorizedAccess,
    /// A login's email (or username) and password do not match a user: one message for
    /// both, Mage's (401 `invalid_credentials`).
    #[error("Email/username and/or password invalid.")]
    InvalidCredentials,
    /// Too many failed logins for one address, or from one client address (`from_client`):
    /// the next is allowed after `retry_after_secs` (429, with `Retry-After`).
    #[error(
        "too many failed logins {}; try again in {retry_after_secs} s",
        if *from_client { "from this client address" } else { "for this email or username" }
    )]
    TooManyRequests { retry_after_secs: u32, from_client: bool },
    /// A state-changing request from a page on another origin (403); the message says why and
    /// what to set.
    #[error("{0}")]
    CrossOrigin(String),
    /// A `Host` the server does not answer to (403); the message says which flag to set.
    #[error("{0}")]
    HostNotAllowed(String),
    /// Anything else: logged in full, answered as a generic 500.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::RouteNotFound { .. } => "record_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Invalid(_) => "record_invalid",
            ApiError::BadRequest(_) => "api_resource_error",
            ApiError::Conflict(_) => "record_conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::InvalidOauthToken => "invalid_oauth_token",
            ApiError::ExpiredOauthToken => "expired_oauth_token",
            ApiError::UnauthorizedAccess => "unauthorized_access",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::CrossOrigin(_) => "cross_origin_request",
            ApiError::HostNotAllowed(_) => "host_not_allowed",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Field-level details for `errors`.
    fn details(&self) -> Vec<String> {
        match self {
            ApiError::Invalid(e) => vec![e.to_string()],
            _ => vec![],
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        match e {
            service::Error::NotFound(m) => ApiError::NotFound(m),
            service::Error::Invalid(f) => ApiError::Invalid(f),
            service::Error::Conflict(m) => ApiError::Conflict(m),
            service::Error::Db(e) => e.into(),
        }
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::Service(e) => e.into(),
            engine::Error::Unavailable { message, retry_after_secs } => {
                ApiError::Unavailable { message, retry_after_secs }
            }
            engine::Error::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Invalid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidApiKey
            | ApiError::InvalidOauthToken
            | ApiError::ExpiredOauthToken
            | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnauthorizedAccess | ApiError::CrossOrigin(_) | ApiError::HostNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut internal_cause = None;
        let message = match self {
            ApiError::Internal(cause) => {
                let mut chain = cause.to_string();
                let mut source = cause.source();
                while let Some(s) = source {
                    chain.push_str(": ");
                    chain.push_str(&s.to_string());
                    source = s.source();
                }
                // Logged by the access log's middleware, with the request id (api::access).
                internal_cause = Some(chain);
                "Unexpected error: the server could not answer this request; its log has the cause.".to_string()
            }
            other => other.to_string(),
        };
        let code = status.as_u16();
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                response.insert_header((header::ALLOW, *allowed));
            }
            ApiError::Unavailable { retry_after_secs, .. } | ApiError::TooManyRequests { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        let mut answer = response.json(json!({
            "error": {"code": code, "type": self.kind(), "message": message, "errors": self.details()},
            "status": code,
        }));
        if let Some(cause) = internal_cause {
            answer.extensions_mut().insert(super::access::InternalCause(cause));
        }
        answer
    }
}
