//! backfilld: Mage's backfills REST API served from an embedded SQLite file.
//!
//! Layout, from the top: `cli` the command line and `commands` what each subcommand does;
//! `api` the HTTP layer, `import` the JSON loader and `export` its writer, `backup` the
//! online copy of a data file; `lifecycle` the backfill's writes, `accounts` the users and
//! their sessions, `dispatch` the runs' (claims, reports, leases, retries) and `queries` the
//! reads, all failing with `error::Error`; `store` all SQL; `model` the domain types and their
//! validation; `schedule` and `datetime` the pure run-date and datetime logic; `db` the
//! connection policy; `token` token and key hashing, `password` password hashing, `jwt` the
//! sessions' JWTs and `throttle` the slowing of failed logins; `logging` the log's rate limit
//! and formats; `periodic` the background threads' loop; `worker` the `backfilld worker`
//! client, which reaches the server over HTTP alone; `demo` the seeded demo, which drives a
//! server through the same client. `run` builds the server on an already-bound listener, so
//! tests can bind port 0.

pub mod accounts;
pub mod api;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod datetime;
pub mod db;
pub mod demo;
pub mod dispatch;
pub mod error;
pub mod export;
pub mod import;
pub mod jwt;
pub mod lifecycle;
pub mod logging;
pub mod model;
pub mod password;
pub mod periodic;
pub mod queries;
pub mod schedule;
pub mod store;
pub mod throttle;
pub mod token;
pub mod worker;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};

pub use api::auth::AuthConfig;
pub use api::AppState;

/// The current time as a UTC datetime, truncated to microseconds like every stored one.
pub fn now() -> datetime::DateTime {
    let now = time::OffsetDateTime::now_utc();
    let now = time::PrimitiveDateTime::new(now.date(), now.time());
    now.replace_nanosecond(now.microsecond() * 1000).unwrap_or(now)
}

/// What a connection can cost the server before any of backfilld's code has seen its
/// request: actix-http reads up to 128 KiB ahead into its buffer, and holds up to 32 KiB
/// more of a body nobody reads yet. 2,000 connections sending large bodies at once took the
/// server to 250 MiB that way (tests/api/hardening.rs), whatever the body budget.
pub const CONNECTION_KIB: usize = 170;

/// `--max-connections` unless given: 256 connections cost at most about 43 MiB this way, so
/// that with the 16 MiB body budget the attack adds about 60 to 75 MiB to what the server
/// held before it: a fresh server stays under 128 MiB (tests/api/hardening.rs); in the
/// bench's last row, after the write and claim scenarios left 80 MiB, it peaked at 153 MiB
/// (examples/bench.rs, "stalled bodies").
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

/// Starts serving `state` on `listener` with `workers` worker threads, accepting at most
/// `max_connections` connections at once (split between the workers; the rest wait in the
/// kernel's accept queue), so that connections alone cannot cost more than
/// `max_connections * CONNECTION_KIB`. The returned server runs when awaited (or spawned);
/// its handle stops it.
pub fn run(listener: TcpListener, state: AppState, workers: usize, max_connections: usize) -> std::io::Result<Server> {
    let workers = workers.max(1);
    let cors = state.cors_origins.clone();
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            // Cross-origin requests, when --cors-origin allows any: preflights answered before
            // routing and authentication (they carry no credentials), refusals in the envelope.
            .wrap(Condition::new(!cors.is_empty(), api::cors::policy(&cors)))
            .wrap(Condition::new(!cors.is_empty(), from_fn(api::cors::enveloped)))
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            // One access line per request: peer, request line (keys redacted), status,
            // body bytes, milliseconds, request id; and the id on every answer.
            .wrap(from_fn(api::access::log_request))
            .app_data(state.clone())
            .configure(api::configure)
    })
    .workers(workers)
    .max_connections((max_connections / workers).max(1))
    .listen(listener)?
    .run();
    Ok(server)
}
