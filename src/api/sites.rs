//! Requests other sites' pages make through a browser: refused before anything else reads
//! them (after the access log, which logs the refusal).
//!
//! - A `Host` the server does not answer to (`auth::host`) is a 403 `host_not_allowed`,
//!   whatever the route: a page on a name rebound to this machine reads and writes as that
//!   name's origin, so the name is the only thing that tells it apart.
//! - A state-changing request that the browser marks as coming from a page on another
//!   origin (`auth::origin::cross_origin`: Go 1.25's `CrossOriginProtection`) is a 403
//!   `cross_origin_request`, unless that origin is one of `--cors-origin`'s. Such a page
//!   cannot read the answer, but a form POST or a no-cors `fetch` still reaches the server
//!   (with the browser's cookies): without this it could create, claim or log in.
//!
//! Requests without these headers (curl, workers, scripts) pass as before.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;

use super::body;
use super::error::ApiError;
use super::AppState;
use crate::auth::host::{self, Hosts};
use crate::auth::origin;

fn header_str<'a>(req: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Why `req` is refused, if it is.
fn refusal(req: &ServiceRequest, hosts: &Hosts, trusted: &[String]) -> Option<ApiError> {
    let host = header_str(req, header::HOST.as_str()).filter(|h| !h.trim().is_empty());
    // No `Host` (HTTP/1.0, or an empty one): not a browser, which always sends the name it
    // connected to.
    if let Some(h) = host.filter(|h| !hosts.allows(h)) {
        let shown = host::name_of(h).unwrap_or_else(|| h.to_string());
        return Some(ApiError::HostNotAllowed(format!(
            "this server does not answer to the host '{shown}' (it answers to {}): a web page on a name pointed at \
             this machine could otherwise use it. If clients reach the server by this name, start it with \
             --allowed-host {shown} (or --allowed-host '*' for any name)",
            hosts.describe()
        )));
    }
    let request = origin::Request {
        method: req.method().as_str(),
        fetch_site: header_str(req, "sec-fetch-site"),
        origin: header_str(req, header::ORIGIN.as_str()),
        host,
    };
    origin::cross_origin(&request, trusted).err().map(|why| {
        // The flag to set, with the page's origin when it has one to name.
        let flag = request.origin.and_then(|o| origin::parse(o).ok()).filter(|o| o != "*");
        ApiError::CrossOrigin(format!(
            "{why}: a page on another origin may not change anything here. If that origin's pages should call the \
             API, start the server with --cors-origin {}",
            flag.as_deref().unwrap_or("ORIGIN")
        ))
    })
}

/// The middleware, around the whole app.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let hosts = req.app_data::<web::Data<Hosts>>().cloned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (Some(hosts), Some(state)) = (hosts, state) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match refusal(&req, &hosts, &state.cors_origins) {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some(e) => Ok(body::refuse(req, e).map_into_right_body()),
    }
}
