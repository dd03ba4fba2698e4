//! Conditional reads: every `GET` of the API answers with an `ETag` naming the data's
//! version (`engine::Engine::data_version`, SQLite's own change counter) and `Cache-Control: no-cache`, and a request whose
//! `If-None-Match` names the current version is answered 304 at once, without running the
//! read. A dashboard polling a backfill that has not changed costs the server one pragma.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn conditional(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let reads = req.method() == Method::GET || req.method() == Method::HEAD;
    let Some(state) = req.app_data::<web::Data<AppState>>().filter(|_| reads).cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(version) = state.engine.data_version() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let tag = format!("W/\"{version:x}\"");
    let unchanged = if_none_match(req.request(), &tag);
    if unchanged {
        let answer = HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .finish();
        return Ok(req.into_response(answer));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    if res.status() == StatusCode::OK {
        let headers = res.headers_mut();
        headers.insert(
            header::ETAG,
            header::HeaderValue::from_str(&tag).map_err(actix_web::error::ErrorInternalServerError)?,
        );
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    }
    Ok(res)
}

/// Whether the request's `If-None-Match` lists `tag`. Used here and by the page's assets
/// (which also take `*`: they always exist, which an API record may not).
pub fn if_none_match(req: &actix_web::HttpRequest, tag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
}
