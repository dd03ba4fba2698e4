//! backfilld: Mage's backfills REST API served from an embedded SQLite file.
//!
//! The map, from the top down; each folder is one layer, and every import points down:
//!
//! - `cli` (the flags) and `commands` (what each subcommand does): the command line.
//! - `api`: HTTP: the route table, handlers, middleware, the error envelope.
//! - `worker`: `backfilld worker`, a client of the HTTP API alone (no layer below `api`).
//! - `client`: the typed HTTP client of the API, for the worker, the demo's driver and the
//!   client commands; it imports nothing of the server.
//! - `data`: import, export and backup of a data file, for the commands.
//! - `engine`: where work runs on a served file: the single writer, the slow-read and
//!   password lanes, the lease sweep, the checkpointer's thread.
//! - `wire`: the JSON shapes of a backfill and a run, for the API and export alike.
//! - `service`: what a request does: lifecycle, dispatch, queries, accounts.
//! - `store`: all SQL of the data.
//! - `db`: the data file's policy: opening, pragmas, schema upgrades, the WAL's bounds, the
//!   guard on a served file.
//! - `auth`: tokens, keys, passwords, JWTs, the login throttle, origins and the names the
//!   server answers to: pure computation.
//! - `domain`: the types, their validation, run dates and datetimes: pure.
//!
//! The dashboard's page (`src/dashboard/`) is compiled into the binary and served by the API;
//! it calls the public API like any other client. `docs/architecture.md` says why the
//! layers are cut this way.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod data;
pub mod db;
pub mod domain;
pub mod engine;
pub mod service;
pub mod store;
pub mod wire;
pub mod worker;
