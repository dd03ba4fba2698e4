//! The HTTP layer: the route table (`configure`, `ROUTES`), the server (`run`), the state
//! handlers share (`state`), and the middleware every request passes: the access log and
//! request ids (`access`), credentials (`auth`, `sessions`), bodies read whole under a
//! deadline and a budget (`body`), cross-origin requests (`cors`), other sites' pages and
//! the names the server answers to (`sites`), conditional reads (`fresh`), and every
//! failure in the contract's envelope (`error`).
//!
//! Handlers live in one file per resource; each parses the request, calls a service through
//! the engine (`read`, `read_at_offset`, `write`), and presents the answer in the wire's
//! shapes. No SQL here, no connection, no thread of its own: the engine owns those.

mod access;
mod auth;
mod backfills;
mod body;
mod conns;
mod cors;
mod dashboard;
mod error;
mod fresh;
mod metrics;
mod params;
mod pipeline_runs;
mod run_logs;
mod sessions;
mod sites;
mod state;
mod status;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition, NormalizePath, TrailingSlash};
use actix_web::{guard, web, App, HttpRequest, HttpResponse, HttpServer, Resource, Route};
use rusqlite::Connection;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::auth::host::Hosts;
use crate::domain::datetime::DateTime;
use crate::service;
use error::ApiError;
pub use state::{AppState, Settings, StartError, DEFAULT_MAX_LOG_BYTES};

/// Starts serving `state` on `listener` with `workers` worker threads, accepting at most
/// `max_connections` connections at once (split between the workers; the rest wait in the
/// kernel's accept queue), so that connections alone cannot cost more than a bound (each
/// may cost about 170 KiB before its request is read: `cli::DEFAULT_MAX_CONNECTIONS`). Idle
/// connections give up their places to new ones as the server nears that bound, and one
/// peer address cannot hold every place with requests in flight: the last tenth is kept for
/// other addresses (`conns`). The returned server runs when awaited (or spawned); its
/// handle stops it: it does not watch for signals itself (`backfilld serve` stops it on
/// Ctrl-C and SIGTERM). Once it has stopped, `close` the state.
pub fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    workers: usize,
    max_connections: usize,
) -> std::io::Result<Server> {
    let workers = workers.max(1);
    let cors = state.cors_origins.clone();
    let hosts = web::Data::new(Hosts::new(&state.allowed_hosts, listener.local_addr()?.ip()));
    let state = web::Data::from(state);
    let share = (max_connections / workers).max(1);
    let registry = conns::Registry::new(share * workers);
    let server = HttpServer::new(move || {
        App::new()
            // Cross-origin requests, when --cors-origin allows any: preflights answered before
            // routing and authentication (they carry no credentials), refusals in the envelope.
            .wrap(Condition::new(!cors.is_empty(), cors::policy(&cors)))
            .wrap(Condition::new(!cors.is_empty(), from_fn(cors::enveloped)))
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            // Names the server does not answer to, and state changes from other sites' pages:
            // refused before anything reads them.
            .wrap(from_fn(sites::check))
            // One access line per request: peer, request line (keys redacted), status,
            // body bytes, milliseconds, request id; and the id on every answer.
            .wrap(from_fn(access::log_request))
            // Outermost: a connection is busy from its request's first middleware to its
            // answer, and may give way to a new one when idle.
            .wrap(from_fn(conns::mark))
            .app_data(state.clone())
            .app_data(hosts.clone())
            .configure(configure)
    })
    .workers(workers)
    .max_connections(share)
    .on_connect(move |conn, ext| registry.register(conn, ext))
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// How long `close` waits for the server's worker threads to let go of the state.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// After the server has stopped: waits for its worker threads, which stop on their own
/// after answering that they did, to drop their share of the state, and then drops the
/// state, which stops the engine and closes the data file (so that SQLite removes its WAL
/// and shared-memory files). Whether the file was closed: `false` when a worker thread still
/// held the state after `CLOSE_WAIT`. This share is then left as it is (never dropped here,
/// so that the engine never stops on one of its own threads), and the process's exit closes
/// the file as a crash would, losing nothing committed.
pub fn close(state: Arc<AppState>) -> bool {
    let deadline = Instant::now() + CLOSE_WAIT;
    while Arc::strong_count(&state) > 1 {
        if Instant::now() >= deadline {
            std::mem::forget(state);
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(state);
    true
}

/// `{"<key>": value, "metadata": null}`, as Mage answers a single record, serialized
/// straight from `value` (no intermediate JSON tree).
fn one<T: Serialize>(key: &'static str, value: &T) -> HttpResponse {
    struct Keyed<'a, T>(&'static str, &'a T);
    impl<T: Serialize> Serialize for Keyed<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry(self.0, self.1)?;
            map.serialize_entry("metadata", &())?;
            map.end()
        }
    }
    HttpResponse::Ok().json(Keyed(key, value))
}

/// What a collection answer says besides its records.
#[derive(Serialize)]
struct Metadata {
    /// How many records match the filters, on every page.
    count: u64,
    /// Whether more records follow this page.
    next: bool,
    /// Where the next page starts, for `_cursor`; only when `next` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// `{"<key>": [records], "metadata": {...}}`, serialized straight from the records, each
/// once, at most `budget` bytes: the records that would take the answer past it are left
/// for the next page, whatever their size. `metadata(kept)` says what follows the first
/// `kept` records. A page holds at least one record, or none could be reached; only a
/// record stored beyond the API's bounds (`domain::model::MAX_OBJECT_BYTES`: imported) can
/// be larger than a budget on its own.
fn collection<T: Serialize>(
    key: &'static str,
    records: &[T],
    budget: usize,
    metadata: impl FnOnce(usize) -> Metadata,
) -> Result<HttpResponse, ApiError> {
    // Room kept for the metadata, which is far smaller (two numbers and a cursor).
    const METADATA_ROOM: usize = 256;
    let mut out = Vec::with_capacity(budget.min(64 << 10));
    out.push(b'{');
    serde_json::to_writer(&mut out, key).map_err(unwritable)?;
    out.extend_from_slice(b":[");
    let mut kept = 0;
    for record in records {
        let mark = out.len();
        if kept > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, record).map_err(unwritable)?;
        if kept > 0 && out.len() + METADATA_ROOM > budget {
            out.truncate(mark);
            break;
        }
        kept += 1;
    }
    out.extend_from_slice(b"],\"metadata\":");
    serde_json::to_writer(&mut out, &metadata(kept)).map_err(unwritable)?;
    out.push(b'}');
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(out))
}

/// A record that JSON cannot write (none of the wire's shapes is such).
fn unwritable(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// A read on the engine (`engine::Engine::read`): a few index lookups, on this thread.
async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection) -> service::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(state.engine.read(f)?)
}

/// A listing read that first walks `offset` index entries (`engine::Engine::read_at_offset`):
/// on this thread while that is short, on the engine's slow-read lane when it is long.
async fn read_at_offset<T: Send + 'static>(
    state: web::Data<AppState>,
    offset: u64,
    f: impl FnOnce(&Connection) -> service::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(state.engine.read_at_offset(offset, f).await?)
}

/// One write on the engine's writer (`engine::Engine::write`): all of its rows or none,
/// answered once committed; `f` gets the write's one `now`.
async fn write<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection, DateTime) -> service::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(state.engine.write(f).await?)
}

/// A GET route that also answers HEAD (health checkers use it; actix sends no body).
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The whole route table, with the contract's envelope for every failure actix itself
/// would otherwise answer in plain text (bad query strings and paths; unknown routes).
fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("the query string is malformed: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("the path is malformed: {e}")).into()),
    )
    // A health check outside authentication: it tells only the version and whether
    // authentication is required, and touches no database.
    .service(resource("/api/status").route(get().to(status::get)))
    .service(resource("/api/statuses").route(get().to(status::get)))
    // Readiness, outside authentication for orchestrators: a write through the writer.
    .service(resource("/api/ready").route(get().to(status::ready)))
    // Prometheus metrics, behind the API's authentication when it is on.
    .service(
        web::scope("/metrics")
            .wrap(from_fn(auth::authenticate))
            .service(resource_at("", allowed("/metrics")).route(get().to(metrics::get))),
    )
    // The OpenAPI document of every route here, outside authentication like the page.
    .service(resource("/api/openapi.json").route(get().to(dashboard::openapi)))
    // The dashboard: static assets compiled in, outside authentication (the page asks for
    // credentials when the API wants them).
    .service(resource("/").route(get().to(dashboard::index)))
    .service(resource("/assets/app.js").route(get().to(dashboard::script)))
    .service(resource("/assets/app.css").route(get().to(dashboard::style)))
    .service(
        web::scope("/api")
            // Middleware runs last-added first: credentials in headers are checked before
            // any body is read, then the body is read whole, then the handler runs.
            .wrap(from_fn(fresh::conditional))
            .wrap(from_fn(body::buffered))
            .wrap(from_fn(auth::authenticate))
            .service(api_resource("/backfills").route(get().to(backfills::list)))
            .service(
                api_resource("/backfills/{id}")
                    .route(get().to(backfills::get))
                    .route(web::put().to(backfills::update))
                    .route(web::delete().to(backfills::delete)),
            )
            .service(api_resource("/backfills/{id}/date_map").route(get().to(backfills::date_map)))
            .service(
                api_resource("/pipelines/{pipeline_uuid}/backfills")
                    .route(get().to(backfills::list_for_pipeline))
                    .route(web::post().to(backfills::create)),
            )
            // Before `{id}`, which would otherwise take `preview` for an id.
            .service(
                api_resource("/pipelines/{pipeline_uuid}/backfills/preview").route(web::post().to(backfills::preview)),
            )
            .service(
                api_resource("/pipelines/{pipeline_uuid}/backfills/{id}")
                    .route(web::put().to(backfills::update_in_pipeline)),
            )
            .service(api_resource("/sessions").route(web::post().to(sessions::create)))
            .service(
                api_resource("/sessions/{id}")
                    .route(web::put().to(sessions::end))
                    .route(web::delete().to(sessions::end)),
            )
            .service(api_resource("/pipeline_runs").route(get().to(pipeline_runs::list)))
            // Before `/pipeline_runs/{id}`, which would otherwise take `claim` for an id.
            .service(api_resource("/pipeline_runs/claim").route(web::post().to(pipeline_runs::claim)))
            .service(
                api_resource("/pipeline_runs/{id}")
                    .route(get().to(pipeline_runs::get))
                    .route(web::put().to(pipeline_runs::update)),
            )
            .service(api_resource("/pipeline_runs/{id}/retry").route(web::post().to(pipeline_runs::retry)))
            .service(
                api_resource("/pipeline_runs/{id}/logs")
                    .route(get().to(run_logs::read))
                    .route(web::post().to(run_logs::append)),
            )
            .default_service(web::to(route_not_found)),
    )
    .default_service(web::to(route_not_found));
}

/// Every route and the methods it answers: what `configure` registers (a resource missing
/// here stops the server at start-up, so every test fails), what the 405s' `Allow` says, and
/// what the OpenAPI document (`openapi.json`) is tested against, so that a route added
/// without its description fails the tests.
pub const ROUTES: [(&str, &str); 21] = [
    ("/", "GET, HEAD"),
    ("/assets/app.js", "GET, HEAD"),
    ("/assets/app.css", "GET, HEAD"),
    ("/api/status", "GET, HEAD"),
    ("/api/statuses", "GET, HEAD"),
    ("/api/ready", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/api/openapi.json", "GET, HEAD"),
    ("/api/backfills", "GET, HEAD"),
    ("/api/backfills/{id}", "GET, HEAD, PUT, DELETE"),
    ("/api/backfills/{id}/date_map", "GET, HEAD"),
    ("/api/pipelines/{pipeline_uuid}/backfills", "GET, HEAD, POST"),
    ("/api/pipelines/{pipeline_uuid}/backfills/preview", "POST"),
    ("/api/pipelines/{pipeline_uuid}/backfills/{id}", "PUT"),
    ("/api/sessions", "POST"),
    ("/api/sessions/{id}", "PUT, DELETE"),
    ("/api/pipeline_runs", "GET, HEAD"),
    ("/api/pipeline_runs/claim", "POST"),
    ("/api/pipeline_runs/{id}", "GET, HEAD, PUT"),
    ("/api/pipeline_runs/{id}/retry", "POST"),
    ("/api/pipeline_runs/{id}/logs", "GET, HEAD, POST"),
];

/// The methods `ROUTES` gives `path`.
fn allowed(path: &str) -> &'static str {
    match ROUTES.iter().find(|(p, _)| *p == path) {
        Some((_, methods)) => methods,
        None => panic!("{path} is not in api::ROUTES: add it there and to the OpenAPI document"),
    }
}

/// A resource inside the `/api` scope (`path` relative to it).
fn api_resource(path: &str) -> Resource {
    resource_at(path, allowed(&format!("/api{path}")))
}

/// A resource outside any scope.
fn resource(path: &str) -> Resource {
    resource_at(path, allowed(path))
}

/// A resource whose other methods answer 405 with an `Allow` header.
fn resource_at(path: &str, allowed: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let e = ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string(), allowed };
        body::refusal(&req, e)
    }))
}

async fn route_not_found(req: HttpRequest) -> HttpResponse {
    let e = ApiError::RouteNotFound { method: req.method().to_string(), path: req.path().to_string() };
    body::refusal(&req, e)
}

#[cfg(test)]
mod tests {
    use super::ROUTES;

    /// The OpenAPI document describes exactly the route table, every method of it (HEAD
    /// beside each GET): a route added without its description fails here.
    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(super::dashboard::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "head", "post", "put", "delete", "patch", "options", "trace"].contains(&method.as_str()) {
                    documented.push((path.clone(), method.to_uppercase()));
                    let op = &item[method];
                    assert!(op["operationId"].is_string() && op["responses"].is_object(), "{method} {path}");
                }
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| methods.split(", ").map(|m| (path.to_string(), m.to_string())))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
