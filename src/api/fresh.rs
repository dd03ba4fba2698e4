//! Conditional reads: every `GET` of the API answers with an `ETag` and `Cache-Control:
//! no-cache`, and a request whose `If-None-Match` names the current tag is answered 304 at
//! once, without running the read. A dashboard polling a backfill that has not changed costs
//! the server one or two lookups by primary key.
//!
//! A tag names the engine's epoch (random, drawn at each start: no tag from before a restart
//! matches after it) and the mark of what the answer shows (`service::queries::mark`):
//! a backfill's record, its date map and its runs' pages (`?backfill_id=`), and a run's record, follow
//! that backfill's own mark, which moves with writes to it and its runs alone; a run's log
//! follows that log (bytes received and cut) and its run's status; every other answer the
//! count of all writes. The marks are kept in the file by the store's writes, so writes by
//! another process through backfilld (an import) move them too. The mark is read before the
//! answer's own read, so an answer is never older than its tag.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::service::queries::{self, Mark, Scope};

pub async fn conditional(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let reads = req.method() == Method::GET || req.method() == Method::HEAD;
    let Some(state) = req.app_data::<web::Data<AppState>>().filter(|_| reads).cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let scope = scope_of(req.path(), req.query_string());
    let epoch = state.engine.epoch();
    let Ok(Some(mark)) = state.engine.read(move |conn| queries::mark(conn, scope)) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let tag = tag(epoch, &mark);
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

/// What the answer to a `GET` of `path?query` shows, by its route: a backfill, its runs, a
/// run, a run's log, or anything else (all of the data). A path or filter the handler will
/// refuse (a malformed id) gets the widest scope; its answer, a 400, has no tag.
fn scope_of(path: &str, query: &str) -> Scope {
    let id = |s: &str| s.parse::<i64>().ok();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let scope = match parts.as_slice() {
        ["api", "backfills", b] | ["api", "backfills", b, "date_map"] => id(b).map(Scope::Backfill),
        ["api", "pipeline_runs", r] => id(r).map(Scope::Run),
        ["api", "pipeline_runs", r, "logs"] => id(r).map(Scope::Log),
        ["api", "pipeline_runs"] => web::Query::<std::collections::HashMap<String, String>>::from_query(query)
            .ok()
            .and_then(|q| q.get("backfill_id").and_then(|b| id(b.trim())))
            .map(Scope::Backfill),
        _ => None,
    };
    scope.unwrap_or(Scope::Everything)
}

/// The weak `ETag` of `mark` in this start (`epoch`): the kind of mark is spelled in it, so
/// that a run's record, which moves from its backfill's mark to the count of all writes when
/// the backfill is deleted, never meets a number of the other kind.
fn tag(epoch: u64, mark: &Mark) -> String {
    match mark {
        Mark::Everything(n) => format!("W/\"{epoch:016x}-{n:x}\""),
        Mark::Backfill(n) => format!("W/\"{epoch:016x}-b{n:x}\""),
        Mark::Log { received, cut, status } => format!("W/\"{epoch:016x}-l{received:x}.{cut:x}.{status}\""),
    }
}

/// Whether the request's `If-None-Match` lists `tag`. Used here and by the page's assets
/// (which also take `*`: they always exist, which an API record may not).
pub fn if_none_match(req: &actix_web::HttpRequest, tag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_its_scope() {
        assert_eq!(scope_of("/api/backfills/7", ""), Scope::Backfill(7));
        assert_eq!(scope_of("/api/backfills/7/date_map", "cells=50"), Scope::Backfill(7));
        assert_eq!(scope_of("/api/pipeline_runs", "_limit=500&backfill_id=7"), Scope::Backfill(7));
        assert_eq!(scope_of("/api/pipeline_runs", "backfill_id=&status=failed"), Scope::Everything);
        assert_eq!(scope_of("/api/pipeline_runs/9", ""), Scope::Run(9));
        assert_eq!(scope_of("/api/pipeline_runs/9/logs", "after=10"), Scope::Log(9));
        for (path, query) in
            [("/api/backfills", "backfill_id=7"), ("/api/backfills/x", ""), ("/api/pipelines/p/backfills", "")]
        {
            assert_eq!(scope_of(path, query), Scope::Everything, "{path}?{query}");
        }
    }

    #[test]
    fn tags_of_different_kinds_or_starts_differ() {
        let tags = [
            tag(1, &Mark::Everything(5)),
            tag(1, &Mark::Backfill(5)),
            tag(2, &Mark::Backfill(5)),
            tag(1, &Mark::Backfill(6)),
        ];
        for (i, a) in tags.iter().enumerate() {
            assert!(a.starts_with("W/\"") && a.ends_with('"'), "{a}");
            assert!(tags[i + 1..].iter().all(|b| a != b), "{tags:?}");
        }
        let log = |received, status: &str| tag(1, &Mark::Log { received, cut: 0, status: status.into() });
        assert_ne!(log(6, "running"), log(12, "running"));
        assert_ne!(log(12, "running"), log(12, "completed"));
    }
}
