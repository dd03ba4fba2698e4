//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format (prometheus-client, the
//! Prometheus project's own Rust client). Behind the same authentication as the API when it is
//! on (one port, one set of credentials; a scraper sends the key and a token as headers).
//!
//! Counted as requests are answered: requests by route pattern, method and status, and their
//! latency by route and method (the access log's middleware records both); claims, runs
//! handed out and leases expired (by claims as they answer, by the engine's sweep at each
//! scrape), passwords checked for logins. Read at each scrape: backfills and runs by status (kept
//! counts, a few rows) and the sizes of the data file and its WAL (two `stat`s).

use std::sync::atomic::AtomicU64;

use actix_web::{web, HttpResponse};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::{read, AppState};
use crate::service::queries;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/backfills/{id}`), or `unmatched`: never the raw path, so
    /// that ids and junk paths cannot grow the label set.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub claims: Counter,
    pub claimed_runs: Counter,
    pub lease_expiries: Counter,
    pub password_checks: Counter,
    backfills: Family<StatusLabel, Gauge>,
    runs: Family<StatusLabel, Gauge>,
    db_bytes: Gauge<u64, AtomicU64>,
    wal_bytes: Gauge<u64, AtomicU64>,
}

/// The methods counted by name; any other is counted as `other`, so that made-up methods
/// cannot grow the label set.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("backfilld");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms to about 4 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
        });
        registry.register("http_request_duration_seconds", "Time to answer, by route and method", latency.clone());
        let claims = Counter::default();
        registry.register("claims", "Claims answered (POST /api/pipeline_runs/claim)", claims.clone());
        let claimed_runs = Counter::default();
        registry.register("claimed_runs", "Runs handed out by claims", claimed_runs.clone());
        let lease_expiries = Counter::default();
        registry.register("lease_expiries", "Leases that ran out without a heartbeat", lease_expiries.clone());
        let password_checks = Counter::default();
        registry.register(
            "password_checks",
            "Passwords checked for logins (a login naming no user is checked against a decoy, as long)",
            password_checks.clone(),
        );
        let backfills = Family::<StatusLabel, Gauge>::default();
        registry.register("backfills", "Backfills by status (\"\" not started)", backfills.clone());
        let runs = Family::<StatusLabel, Gauge>::default();
        registry.register("pipeline_runs", "Pipeline runs by status", runs.clone());
        let db_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register("database_bytes", "Size of the data file", db_bytes.clone());
        let wal_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register("wal_bytes", "Size of the data file's write-ahead log", wal_bytes.clone());
        Metrics {
            registry,
            requests,
            latency,
            claims,
            claimed_runs,
            lease_expiries,
            password_checks,
            backfills,
            runs,
            db_bytes,
            wal_bytes,
        }
    }

    /// One answered request.
    pub fn observe(&self, route: Option<&str>, method: &str, status: u16, seconds: f64) {
        let route = route.unwrap_or("unmatched").to_string();
        let method = METHODS.iter().find(|m| **m == method).map_or("other", |m| m).to_string();
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method: method.clone(), status }).inc();
        self.latency.get_or_create(&RouteLabels { route, method }).observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `GET /metrics`.
pub async fn get(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = read(state.clone(), queries::status_counts).await?;
    let m = &state.metrics;
    // The sweep's expiries since the last scrape; claims count theirs as they answer.
    m.lease_expiries.inc_by(state.engine.take_expired_leases());
    // Set afresh: a status whose kept count is gone (a rebuilt tally) shows no stale value.
    m.backfills.clear();
    m.runs.clear();
    for (status, n) in counts.backfills {
        m.backfills.get_or_create(&StatusLabel { status }).set(n);
    }
    for (status, n) in counts.runs {
        m.runs.get_or_create(&StatusLabel { status }).set(n);
    }
    let (db, wal) = state.engine.file_sizes();
    m.db_bytes.set(db);
    m.wal_bytes.set(wal);
    let mut text = String::new();
    encode(&mut text, &m.registry).map_err(|e| ApiError::Internal(format!("cannot encode the metrics: {e}").into()))?;
    Ok(HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text))
}
