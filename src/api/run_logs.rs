//! A run's log: `POST /api/pipeline_runs/{id}/logs`, by which the worker holding the run
//! appends its command's output in chunks, and `GET`, which answers the log as stored, as
//! text, from a position, with what a follower needs to keep its place as the log grows.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::parse_id;
use super::{body, one, read as read_on, write, AppState};
use crate::domain::log::LogMeta;
use crate::domain::model::FieldError;
use crate::service::dispatch::MAX_WORKER_CHARS;
use crate::service::logs::{self, Chunk, From};

/// The headers of a log's answer: bytes of output received in all (the answer's last byte is
/// the output's byte before it), bytes cut from the middle, and whether the run has finished
/// (its log is then whole).
pub const RECEIVED: &str = "backfilld-log-received";
pub const CUT: &str = "backfilld-log-cut";
pub const FINISHED: &str = "backfilld-run-finished";

/// A query parameter as a whole number of bytes.
fn bytes_param(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{name} must be a whole number of bytes, 0 or more, got '{v}'"))
            })
        })
        .transpose()
}

/// `POST /api/pipeline_runs/{id}/logs?worker=NAME&offset=N` with the chunk's raw bytes as
/// the body (any content type, at most 1 MiB): only the worker holding the run's live lease
/// may append; `offset` is where the chunk starts in the run's whole output.
pub async fn append(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let worker = match query.get("worker").map(|w| w.trim()) {
        None | Some("") => {
            return Err(ApiError::BadRequest(
                "worker is required: the name of the worker holding the run's lease (?worker=NAME)".into(),
            ))
        }
        Some(w) if w.chars().count() > MAX_WORKER_CHARS => {
            return Err(ApiError::BadRequest(format!("worker must be at most {MAX_WORKER_CHARS} characters")))
        }
        Some(w) => w.to_string(),
    };
    let offset = bytes_param(&query, "offset")?.ok_or_else(|| {
        ApiError::BadRequest("offset is required: where the chunk starts in the run's whole output (?offset=N)".into())
    })?;
    let bytes = body::read(payload).await?;
    let max = state.max_log_bytes;
    let appended = write(state, move |conn, now| {
        logs::append(conn, id, Chunk { worker: &worker, offset, bytes: &bytes }, max, now)
    })
    .await?;
    said_pruned(appended.pruned, max);
    let log = appended.log;
    Ok(one(
        "pipeline_run_log",
        &json!({"pipeline_run_id": id, "received": log.received, "cut": log.cut, "size": log.len()}),
    ))
}

/// One line in the server's log when the bound on all logs deleted some.
pub fn said_pruned(pruned: Option<logs::Pruned>, max: u64) {
    if let Some(p) = pruned {
        log::info!(
            "logs: deleted the logs of {} finished runs ({} bytes), the oldest, to keep all logs within \
             --max-log-bytes {max}",
            p.runs,
            p.bytes
        );
    }
}

/// The log chunk a worker's report may carry: `"log": {"offset": N, "data": "<base64>"}`
/// (the bytes in standard base64), or none (absent or null).
pub fn chunk_in(record: &crate::domain::model::Object) -> Result<Option<(u64, Vec<u8>)>, ApiError> {
    use base64::Engine;
    let bad = |why: &str| ApiError::Invalid(FieldError::new("log", why));
    match record.get("log") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(o)) => {
            let offset = o.get("offset").and_then(serde_json::Value::as_u64).ok_or_else(|| {
                bad("must have offset, where the chunk starts in the run's output: a whole number, 0 or more")
            })?;
            let data = o
                .get("data")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad("must have data, the chunk's bytes in base64"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| bad(&format!("data is not base64: {e}")))?;
            Ok(Some((offset, bytes)))
        }
        Some(_) => Err(bad("must be an object: {\"offset\": N, \"data\": \"<base64>\"}")),
    }
}

/// Where a `Range` header asks to start and end (inclusive), against a log of `len` bytes:
/// `bytes=N-`, `bytes=N-M` or `bytes=-N` (the last N). `None` for a range this route does
/// not serve (several, or another unit), which is then ignored, as HTTP allows.
fn range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let last = len.checked_sub(1);
    Some(match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(n)) if a.is_empty() && n > 0 && len > 0 => Ok((len.saturating_sub(n), len - 1)),
        (Some(start), None) if b.is_empty() => last.filter(|l| start <= *l).map(|l| (start, l)).ok_or(()),
        (Some(start), Some(end)) if start <= end => last.filter(|l| start <= *l).map(|l| (start, end.min(l))).ok_or(()),
        _ => Err(()),
    })
}

/// `GET /api/pipeline_runs/{id}/logs`: the log as stored (`text/plain`, its bytes as the
/// worker sent them), from `?offset=N` or `Range: bytes=N-` (206) in the stored log, or from
/// `?after=N`, after the first N bytes of the output (where a follower goes on). Empty for
/// a run without a log. The `backfilld-log-*` headers say where the answer is in the output.
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let offset = bytes_param(&query, "offset")?;
    let after = bytes_param(&query, "after")?;
    let range_header = req.headers().get(header::RANGE).map(|v| v.to_str().unwrap_or_default().to_string());
    if [offset.is_some(), after.is_some(), range_header.is_some()].iter().filter(|x| **x).count() > 1 {
        return Err(ApiError::BadRequest("give one of offset, after and a Range header, not several".into()));
    }
    let from = match after {
        Some(n) => From::Output(n),
        None => From::Stored(offset.unwrap_or(0)),
    };
    if let Some(value) = range_header {
        // The length first (a read of one row), then the bytes asked for.
        let len = read_on(state.clone(), move |conn| logs::read(conn, id, From::Stored(u64::MAX))).await?.log.len();
        match range(&value, len) {
            None => {}
            Some(Err(())) => {
                let mut res = HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE);
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{len}")));
                return Ok(res.content_type("text/plain; charset=utf-8").finish());
            }
            Some(Ok((start, end))) => {
                let mut r = read_on(state, move |conn| logs::read(conn, id, From::Stored(start))).await?;
                let total = r.log.len();
                let end = end.min(total.saturating_sub(1));
                if r.start > end || r.bytes.is_empty() {
                    // The log changed between the two reads (it only grows or is cut): say
                    // its length now.
                    let mut res = HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE);
                    res.insert_header((header::CONTENT_RANGE, format!("bytes */{total}")));
                    return Ok(res.content_type("text/plain; charset=utf-8").finish());
                }
                r.bytes.truncate(usize::try_from(end - r.start + 1).unwrap_or(usize::MAX));
                let mut res = answer(StatusCode::PARTIAL_CONTENT, &r.log, r.finished);
                res.insert_header((header::CONTENT_RANGE, format!("bytes {}-{end}/{total}", r.start)));
                return Ok(res.body(r.bytes));
            }
        }
    }
    let r = read_on(state, move |conn| logs::read(conn, id, from)).await?;
    Ok(answer(StatusCode::OK, &r.log, r.finished).body(r.bytes))
}

fn answer(status: StatusCode, log: &LogMeta, finished: bool) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.content_type("text/plain; charset=utf-8")
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((RECEIVED, log.received.to_string()))
        .insert_header((CUT, log.cut.to_string()))
        .insert_header((FINISHED, finished.to_string()));
    res
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_from_a_position_to_a_position_and_of_the_last_bytes() {
        assert_eq!(range("bytes=5-", 10), Some(Ok((5, 9))));
        assert_eq!(range("bytes=5-7", 10), Some(Ok((5, 7))));
        assert_eq!(range("bytes=5-70", 10), Some(Ok((5, 9))));
        assert_eq!(range("bytes=-4", 10), Some(Ok((6, 9))));
        assert_eq!(range("bytes=-40", 10), Some(Ok((0, 9))));
        assert_eq!(range("bytes=10-", 10), Some(Err(())));
        assert_eq!(range("bytes=0-", 0), Some(Err(())));
        assert_eq!(range("bytes=7-5", 10), Some(Err(())));
        assert_eq!(range("bytes=x-", 10), Some(Err(())));
        assert_eq!(range("bytes=0-1,3-4", 10), None);
        assert_eq!(range("lines=1-", 10), None);
    }
}
