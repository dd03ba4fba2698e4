//! The HTTP API: the route table, shared state, and how extractor failures are answered.
//!
//! Handlers live in one file per resource; they parse, call `queries` (reads) or `lifecycle`
//! (writes) through `read`, `read_at_offset` and `write`, which choose the thread and the
//! transaction, and present. No SQL here.

pub mod access;
pub mod auth;
pub mod backfills;
pub mod body;
pub mod cors;
pub mod dashboard;
pub mod error;
pub mod fresh;
pub mod metrics;
pub mod params;
pub mod pipeline_runs;
pub mod sessions;
pub mod slow;
pub mod status;
pub mod sweep;
pub mod writes;

use actix_web::middleware::from_fn;
use actix_web::{guard, web, HttpRequest, HttpResponse, Resource, Route};
use rusqlite::Connection;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::datetime::DateTime;
use crate::db::Pool;
use crate::error::Error;
use crate::lifecycle::Limits;
use auth::AuthConfig;
use body::BodyLimits;
use error::ApiError;
use slow::SlowReads;
use writes::Writes;

/// How long a login's session lasts unless `--session-lifetime` says: 30 days, as Mage's.
pub const DEFAULT_SESSION_SECONDS: i64 = 30 * 86_400;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub body: BodyLimits,
    pub slow: SlowReads,
    /// The shortest lease a claim may ask for (`dispatch::MIN_LEASE_SECONDS` unless lowered
    /// for tests with `--min-lease-seconds`).
    pub min_lease_seconds: i64,
    /// Where the next claim's round-robin walk over the backfills starts: the last backfill
    /// a claim served. Claims run one at a time (the single writer), so a plain load and
    /// store suffice; it starts over at 0 after a restart.
    pub claim_cursor: std::sync::atomic::AtomicI64,
    /// The origins whose pages may call the API (`--cors-origin`, checked by
    /// `cors::parse_origin`); none turns CORS off.
    pub cors_origins: Vec<String>,
    /// How long a login's session lasts, in seconds (`--session-lifetime`).
    pub session_lifetime: i64,
    /// The data file's secret that signs sessions' JWTs.
    pub jwt_secret: Vec<u8>,
    /// Failed logins per address (`throttle`; `logins()` locks them).
    logins: std::sync::Mutex<crate::throttle::Throttle>,
    /// The thread that checks logins' passwords.
    pub passwords: SlowReads,
    /// What `/metrics` reports.
    pub metrics: std::sync::Arc<metrics::Metrics>,
    writes: Writes,
    /// The lease sweep's thread, stopped when the state is dropped.
    sweeper: crate::periodic::Periodic,
}

impl AppState {
    /// The state with the default body limits, one slow-read thread and the lease sweep
    /// looking every `sweep::SWEEP_EVERY`.
    pub fn new(pool: Pool, auth: AuthConfig, limits: Limits) -> std::io::Result<AppState> {
        let writes = Writes::start(pool.clone())?;
        let metrics = std::sync::Arc::new(metrics::Metrics::new());
        let jwt_secret = pool
            .get()
            .map_err(std::io::Error::other)
            .and_then(|conn| crate::accounts::jwt_secret(&conn).map_err(std::io::Error::other))?;
        // Made now rather than on the first login for an unknown user, which would otherwise
        // take twice as long as any other.
        crate::password::decoy();
        Ok(AppState {
            sweeper: sweep::start(pool.clone(), writes.clone(), sweep::SWEEP_EVERY, metrics.clone())?,
            writes,
            pool,
            auth,
            limits,
            body: BodyLimits::default(),
            slow: SlowReads::start(slow::SLOW_QUEUE)?,
            min_lease_seconds: crate::dispatch::MIN_LEASE_SECONDS,
            claim_cursor: std::sync::atomic::AtomicI64::new(0),
            cors_origins: Vec::new(),
            session_lifetime: DEFAULT_SESSION_SECONDS,
            jwt_secret,
            logins: std::sync::Mutex::default(),
            passwords: SlowReads::named(
                "password",
                sessions::PASSWORD_QUEUE,
                "the server is busy checking other logins' passwords; try again shortly",
            )?,
            metrics,
        })
    }

    /// The failed logins' counts, locked (a panic while they were held leaves them usable).
    pub fn logins(&self) -> std::sync::MutexGuard<'_, crate::throttle::Throttle> {
        self.logins.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lease timing (`--min-lease-seconds`, `--lease-check-ms`): the shortest lease a claim
    /// may ask for, and how often the sweep looks for expired leases (its thread is restarted).
    pub fn set_lease_timing(
        &mut self,
        min_lease_seconds: i64,
        sweep_every: std::time::Duration,
    ) -> std::io::Result<()> {
        self.min_lease_seconds = min_lease_seconds;
        self.sweeper = sweep::start(self.pool.clone(), self.writes.clone(), sweep_every, self.metrics.clone())?;
        Ok(())
    }
}

/// `{"<key>": value, "metadata": null}`, as Mage answers a single record, serialized
/// straight from `value` (no intermediate JSON tree).
pub fn one<T: Serialize>(key: &'static str, value: &T) -> HttpResponse {
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
pub struct Metadata {
    /// How many records match the filters, on every page.
    pub count: u64,
    /// Whether more records follow this page.
    pub next: bool,
    /// Where the next page starts, for `_cursor`; only when `next` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `{"<key>": [records], "metadata": {...}}`, serialized straight from the records.
pub fn collection<T: Serialize>(key: &'static str, records: &[T], metadata: &Metadata) -> HttpResponse {
    struct Page<'a, T>(&'static str, &'a [T], &'a Metadata);
    impl<T: Serialize> Serialize for Page<'_, T> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry(self.0, self.1)?;
            map.serialize_entry("metadata", self.2)?;
            map.end()
        }
    }
    HttpResponse::Ok().json(Page(key, records, metadata))
}

/// Runs `f` on a pooled connection inside one read transaction, so that its statements see
/// one snapshot.
fn read_now<T>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, ApiError> {
    let conn = pool.get()?;
    // BEGIN and COMMIT as cached statements: rusqlite's `transaction()` parses them anew
    // on every request.
    if !conn.is_autocommit() {
        // Only if an earlier COMMIT failed: end what it left open rather than fail forever.
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let out = f(&conn);
    // A read-only transaction: COMMIT and ROLLBACK are the same, and either ends it.
    conn.prepare_cached(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })?.execute([])?;
    Ok(out?)
}

/// A read bounded by indexes and kept counts, run right here on the worker thread although
/// rusqlite blocks: each is a few index lookups, and handing each to another thread and back
/// cost more than the read itself (page 0 with run counts: 3,834 requests/s through
/// `web::block`, 6,190 inline, examples/bench.rs). With one worker per core this is the
/// thread-per-core model. Listing reads that can take long go through `read_at_offset`;
/// writes through `write`.
pub async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    read_now(&state.pool, f)
}

/// A listing read that first walks `offset` index entries: on the worker thread like `read`
/// while that is short, on the slow-read thread (`slow`) from `slow::SLOW_OFFSET` on, so
/// that the worker threads stay free for everything else.
pub async fn read_at_offset<T: Send + 'static>(
    state: web::Data<AppState>,
    offset: u64,
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    if offset < slow::SLOW_OFFSET {
        return read_now(&state.pool, f);
    }
    let pool = state.pool.clone();
    state.slow.run(move || read_now(&pool, f)).await?
}

/// Runs `f` as one write: on the writer thread (`writes`), inside an immediate transaction it
/// may share with the writes queued beside it (group commit), in a savepoint of its own, so
/// that a request writes all of its rows or none, answered once committed. `f` gets the
/// request's one `now`. Off the worker threads, since a write may wait its turn or take long
/// (a start). Refused (503) once the data file has been deleted or replaced under the server:
/// such a write would be lost at the next start.
pub async fn write<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&Connection, DateTime) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    state.writes.run(f).await
}

/// A GET route that also answers HEAD (health checkers use it; actix sends no body).
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The whole route table, with the contract's envelope for every failure actix itself
/// would otherwise answer in plain text (bad query strings and paths; unknown routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
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
            .service(
                api_resource("/pipelines/{pipeline_uuid}/backfills")
                    .route(get().to(backfills::list_for_pipeline))
                    .route(web::post().to(backfills::create)),
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
            .default_service(web::to(route_not_found)),
    )
    .default_service(web::to(route_not_found));
}

/// Every route and the methods it answers: what `configure` registers (a resource missing
/// here stops the server at start-up, so every test fails), what the 405s' `Allow` says, and
/// what the OpenAPI document (`openapi.json`) is tested against, so that a route added
/// without its description fails the tests.
pub const ROUTES: [(&str, &str); 18] = [
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
    ("/api/pipelines/{pipeline_uuid}/backfills", "GET, HEAD, POST"),
    ("/api/pipelines/{pipeline_uuid}/backfills/{id}", "PUT"),
    ("/api/sessions", "POST"),
    ("/api/sessions/{id}", "PUT, DELETE"),
    ("/api/pipeline_runs", "GET, HEAD"),
    ("/api/pipeline_runs/claim", "POST"),
    ("/api/pipeline_runs/{id}", "GET, HEAD, PUT"),
    ("/api/pipeline_runs/{id}/retry", "POST"),
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
