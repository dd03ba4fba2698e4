//! The access log and request ids: one line per request (peer, request line with credentials
//! redacted, status, body bytes, milliseconds, request id), and an `X-Request-Id` on every
//! answer: the request's own when it sent a usable one, else a new one. Each answer is also
//! counted in the metrics (`api::metrics`). The id is also in the
//! line of an internal error's cause, so that a 500 a client reports can be found.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

/// The header, in requests and answers.
pub const HEADER: &str = "x-request-id";

/// The longest id taken from a request; a longer one (or one with other characters than
/// `usable` allows) is replaced by a new one.
pub const MAX_ID_LEN: usize = 128;

/// An internal error's cause, put in the answer's extensions by `api::error` for this module
/// to log with the request id.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Whether a client's id can be logged and echoed as is: 1 to `MAX_ID_LEN` characters of
/// letters, digits and `-_.:/+=@` (UUIDs, trace ids, base64).
pub fn usable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// A new id: 16 hex digits, random per process start, then counting, so that ids are unique
/// across restarts without a system call per request.
pub fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_or(0, |()| u64::from_le_bytes(b))
    });
    format!("{:016x}", base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// The query parameters whose values are credentials: Mage's key and token, and any password
/// or token a client puts in a URL. Compared without regard to case.
const SECRET_PARAMETERS: [&str; 4] = ["api_key", "oauth_token", "password", "token"];

/// The request line for the access log, with the value of any `SECRET_PARAMETERS` replaced,
/// so that credentials never reach a log file.
fn redacted_request_line(req: &ServiceRequest) -> String {
    let query = req.query_string();
    let query = if query.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| {
                // Decoded as the auth middleware decodes it, so `api%5Fkey` is caught too.
                let is_secret = web::Query::<Vec<(String, String)>>::from_query(pair).is_ok_and(|q| {
                    q.first().is_some_and(|(k, _)| SECRET_PARAMETERS.iter().any(|s| k.trim().eq_ignore_ascii_case(s)))
                });
                match pair.split_once('=') {
                    Some((k, _)) if is_secret => format!("{k}=[redacted]"),
                    _ => pair.to_string(),
                }
            })
            .collect();
        format!("?{}", parts.join("&"))
    };
    format!("{} {}{} {:?}", req.method(), req.path(), query, req.version())
}

/// The outermost middleware: tags the request, answers with its id, writes the access line.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| usable(v))
        .map_or_else(new_id, str::to_string);
    let peer = req.peer_addr().map_or_else(|| "-".to_string(), |a| a.ip().to_string());
    let line = redacted_request_line(&req);
    let state = req.app_data::<web::Data<super::AppState>>().cloned();
    let method = req.method().clone();
    // Counts the answer and writes its access line.
    let done = |route: Option<&str>, status: u16, bytes: Option<u64>| {
        let seconds = start.elapsed().as_secs_f64();
        if let Some(state) = &state {
            state.metrics.observe(route, method.as_str(), status, seconds);
        }
        let ms = (seconds * 1e6).round() / 1e3;
        let shown = bytes.map_or_else(|| "-".to_string(), |b| b.to_string());
        log::info!(
            target: "backfilld::access",
            request_id = id.as_str(), peer = peer.as_str(), request = line.as_str(), status = status,
            bytes = bytes.unwrap_or(0), ms = ms;
            "{peer} \"{line}\" {status} {shown} {ms:.3}ms {id}"
        );
    };
    // (No clone of the request may be held across the call: NormalizePath needs it alone.)
    let mut res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            // Handlers' and extractors' errors come back as answers; this is for the rare
            // error a middleware returns, which actix answers after this.
            let status = e.as_response_error().status_code();
            if status.is_server_error() {
                log::error!(target: "backfilld::api", request_id = id.as_str(); "{e} (request {id})");
            }
            done(None, status.as_u16(), None);
            return Err(e);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static(HEADER), value);
    }
    if let Some(InternalCause(cause)) = res.response().extensions().get::<InternalCause>() {
        log::error!(target: "backfilld::api", request_id = id.as_str(); "internal error: {cause} (request {id})");
    }
    let bytes = match res.response().body().size() {
        BodySize::Sized(n) => n,
        _ => 0,
    };
    done(res.request().match_pattern().as_deref(), res.status().as_u16(), Some(bytes));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_safe_to_log() {
        for ok in [
            "abc",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "x/y+z==",
        ] {
            assert!(usable(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "é", "line\nbreak", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(!usable(bad), "{bad:?}");
        }
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(usable(&a));
    }

    #[test]
    fn credentials_in_the_query_are_redacted() {
        let line = |uri: &str| redacted_request_line(&actix_web::test::TestRequest::get().uri(uri).to_srv_request());
        assert_eq!(
            line("/api/backfills?_limit=3&api_key=k&oauth_token=t&OAuth_Token=t2&password=p&token=x&x=1"),
            "GET /api/backfills?_limit=3&api_key=[redacted]&oauth_token=[redacted]&OAuth_Token=[redacted]\
             &password=[redacted]&token=[redacted]&x=1 HTTP/1.1"
        );
        assert_eq!(line("/a?oauth%5Ftoken=t&tokens=1"), "GET /a?oauth%5Ftoken=[redacted]&tokens=1 HTTP/1.1");
        assert_eq!(line("/a"), "GET /a HTTP/1.1");
    }
}
