//! Request bodies: read whole, under a deadline and a memory budget, before any handler sees
//! them; then parsed as JSON with the record object taken out, every failure answered in the
//! contract's envelope (actix's own extractors answer in plain text).
//!
//! Why buffer up front: a client that sends the headers of a large body and then stalls
//! would otherwise hold a handler, and up to a body's worth of memory, for as long as it
//! likes (thousands of such connections took the server to gigabytes: docs/performance.md).
//! `buffer` bounds all three: the time (`BodyLimits::deadline`), each body (`BODY_LIMIT`)
//! and all bodies being read at once (`BodyLimits::budget`).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_core::Stream;
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::domain::model::Object;

/// The largest body accepted: far above any real backfill, far below what would hurt.
pub const BODY_LIMIT: usize = 1 << 20;

/// How long a client has, from the end of its request headers, to send the whole body: 5 s,
/// as long as actix gives it for the headers themselves. A real body here is a few hundred
/// bytes sent with the headers; 5 s still carries the largest allowed body (1 MiB) over a
/// 2 Mbit/s link.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);

/// How many bytes of request bodies may be held at once, across all connections: 16 bodies
/// of the largest size, or tens of thousands of real ones. Connections stalling large bodies
/// cost the server actix's per-connection buffers before any body is read (bounded by
/// `--max-connections`: `cli::DEFAULT_MAX_CONNECTIONS`); with this budget on top, a
/// server under such an attack stays within a small machine's memory (the bench measures it:
/// docs/performance.md).
pub const BODY_BUDGET: usize = 16 << 20;

/// Bytes of memory shared by every request body being read, reserved before reading.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    cap: usize,
}

/// A share of the `Budget`, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(cap: usize) -> Arc<Budget> {
        Arc::new(Budget { used: AtomicUsize::new(0), cap })
    }

    /// `bytes` of the budget, or `None` when that would exceed it.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.cap)
            })
            .ok()?;
        Some(Reservation { budget: self.clone(), bytes })
    }

    /// Bytes reserved now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How request bodies are read: the deadline and the shared budget.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub deadline: Duration,
    pub budget: Arc<Budget>,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { deadline: BODY_DEADLINE, budget: Budget::new(BODY_BUDGET) }
    }
}

/// Whether a request with these headers carries a body (a declared non-zero length, or chunks).
pub fn has_body(headers: &header::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || declared_length(headers).is_some_and(|n| n > 0)
}

fn declared_length(headers: &header::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Whether the request declares a body of at most `max` bytes (a chunked one declares none).
pub fn declared_at_most(headers: &header::HeaderMap, max: usize) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING) && declared_length(headers).is_some_and(|n| n <= max as u64)
}

/// Marks a request whose body `buffer` has read: it is in memory, and its share of the budget
/// is held by whoever buffered it.
struct Buffered;

/// The answer to a refused request. When its body may be unread (nothing buffered it: it was
/// refused before, or while, it was read), the connection is closed after the answer, so
/// that a stalled body cannot keep it open and the rest is never parsed as a request.
pub fn refusal(req: &HttpRequest, e: ApiError) -> HttpResponse {
    let mut res = e.error_response();
    if has_body(req.headers()) && req.extensions().get::<Buffered>().is_none() {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    res
}

/// `refusal` for a middleware.
pub fn refuse(req: ServiceRequest, e: ApiError) -> ServiceResponse {
    let (req, _) = req.into_parts();
    let res = refusal(&req, e);
    ServiceResponse::new(req, res)
}

/// Reads the request's whole body, at most `max` bytes, into memory and puts it back for
/// whoever reads it next (actix has already refused a malformed `Content-Length`). Checked
/// before a byte is read: the declared length against `max` (413) and against the budget
/// (503; a body of unknown length reserves `max`). Then it must arrive within the deadline
/// (408). Returns the body's share of the budget, to hold while the body is in use, and the
/// body itself. A request without a body, or whose body is already buffered, returns `None`.
pub async fn buffer(
    req: &mut ServiceRequest,
    limits: &BodyLimits,
    max: usize,
) -> Result<Option<(Reservation, Bytes)>, ApiError> {
    if !has_body(req.headers()) || req.extensions().get::<Buffered>().is_some() {
        return Ok(None);
    }
    let declared = declared_length(req.headers());
    if let Some(n) = declared.filter(|n| *n > max as u64) {
        return Err(ApiError::PayloadTooLarge(format!("the request body is {n} bytes, more than the {max} allowed")));
    }
    let reserve = declared.map_or(max, |n| n as usize);
    let reservation = limits.budget.reserve(reserve).ok_or_else(|| ApiError::Unavailable {
        message: "the server is reading as many request bodies as it holds at once; try again shortly".into(),
        retry_after_secs: 1,
    })?;
    let mut payload = req.extract::<web::Payload>().await.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let read_all = async {
        let mut buf = BytesMut::with_capacity(reserve);
        while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the request body could not be read: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(ApiError::PayloadTooLarge(format!("the request body is larger than {max} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    let bytes = actix_web::rt::time::timeout(limits.deadline, read_all).await.map_err(|_| {
        ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s of the headers",
            limits.deadline.as_secs_f64()
        ))
    })??;
    req.set_payload(actix_web::dev::Payload::from(bytes.clone()));
    req.extensions_mut().insert(Buffered);
    Ok(Some((reservation, bytes)))
}

/// Middleware for the `/api` scope: every body is in memory, whole, before a handler runs,
/// and its share of the budget is held until the handler has answered.
pub async fn buffered(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match buffer(&mut req, &state.body, BODY_LIMIT).await {
        Ok(reservation) => {
            // Held until the handler has answered.
            let response = next.call(req).await;
            drop(reservation);
            Ok(response?.map_into_left_body())
        }
        // Answered here, not returned as an error, so that the access log has the line.
        Err(e) => Ok(refuse(req, e).map_into_right_body()),
    }
}

/// The body, which `buffered` has already read.
pub async fn read(payload: web::Payload) -> Result<Bytes, ApiError> {
    match payload.to_bytes_limited(BODY_LIMIT).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("the request body could not be read: {e}"))),
        Err(_) => Err(ApiError::PayloadTooLarge(format!("the request body is larger than {BODY_LIMIT} bytes"))),
    }
}

/// The body's top-level JSON object.
pub fn object(bytes: &[u8]) -> Result<Object, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
    }
}

/// The object under `key` (`{"backfill": {...}}`), which the request must carry.
pub async fn record(payload: web::Payload, key: &str) -> Result<Object, ApiError> {
    let bytes = read(payload).await?;
    match object(&bytes)?.remove(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ApiError::BadRequest(format!("\"{key}\" in the request body must be an object"))),
        None => Err(ApiError::BadRequest(format!(
            "the request body must be {{\"{key}\": {{...}}}}, with the fields inside \"{key}\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_would_exceed_it_and_takes_back_what_is_dropped() {
        let budget = Budget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(budget.reserve(1).is_none());
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(budget.reserve(60).is_some());
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(usize::MAX).is_none(), "no overflow");
    }
}
