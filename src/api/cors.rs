//! Cross-origin requests from browsers (CORS), off unless `--cors-origin` names origins.
//!
//! actix-cors answers preflights and adds the `Access-Control-*` headers; requests from
//! other origins are served as usual and only lack those headers (a browser then withholds
//! the answer from the page), so curl and the dashboard, whose requests carry their own
//! origin, are never refused for it. A refused preflight is answered in the error envelope.

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
const EXPOSED_HEADERS: [&str; 4] = ["allow", "etag", "retry-after", "x-request-id"];

/// How long a browser may keep a preflight's answer (seconds).
const MAX_AGE: usize = 3600;

/// `--cors-origin`: `*` (any origin) or an origin as browsers send it, `scheme://host[:port]`
/// with no path; returned as browsers compare it (lower case, no trailing slash).
pub fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    let err = |why: &str| {
        format!("--cors-origin '{s}': {why}; expected an origin as browsers send it, e.g. https://app.example.com or http://localhost:3000, or * for any")
    };
    let lower = s.trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else { return Err(err("no scheme")) };
    if scheme != "http" && scheme != "https" {
        return Err(err("the scheme is not http or https"));
    }
    // An IPv6 host is bracketed, colons inside; any other host has no colon.
    let (host, port) = match rest.find(']') {
        Some(end) if rest.starts_with('[') => match &rest[end + 1..] {
            "" => (rest, None),
            after => match after.strip_prefix(':') {
                Some(p) => (&rest[..=end], Some(p)),
                None => return Err(err("the host is not a host name or address (no path, query or user)")),
            },
        },
        _ => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    // A name or an IPv4 address: letters, digits, dots and hyphens; an IPv6 address: hex
    // digits and colons inside its brackets.
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')),
    };
    if !host_ok {
        return Err(err("the host is not a host name or address (no path, query or user)"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(err("the port is not a number from 1 to 65535"));
        }
    }
    Ok(lower)
}

/// The policy for the allowed origins (already checked by `parse_origin`); with none, the
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(parse_origin("https://App.Example.com/").unwrap(), "https://app.example.com");
        assert_eq!(parse_origin(" http://localhost:3000 ").unwrap(), "http://localhost:3000");
        assert_eq!(parse_origin("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(parse_origin("http://[::1]").unwrap(), "http://[::1]");
        assert_eq!(parse_origin("*").unwrap(), "*");
        for bad in [
            "",
            "localhost:3000",
            "ftp://x",
            "https://",
            "https://a.com/path",
            "https://a.com?q",
            "https://u@a.com",
            "http://a.com:0",
            "http://a.com:99999",
            "http://a.com:x",
            "https://*.a.com",
            "http://a]b",
            "http://[::1",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert!(parse_origin("ftp://x").unwrap_err().contains("https://app.example.com"));
    }
}
