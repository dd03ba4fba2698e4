//! Black-box tests: each starts the real server on a free port over a fresh SQLite file and
//! speaks HTTP to it; the `cli` tests run the real binary.

mod auth;
mod backfills;
mod bounds;
mod browser;
mod cli;
mod commands;
mod data;
mod date_map;
mod dispatch;
mod errors;
mod filters;
mod fresh;
mod hardening;
mod helpers;
mod lifecycle;
mod mage;
mod operations;
mod pollers;
mod readme;
mod run_logs;
mod schemathesis;
mod serve;
mod sessions;
mod sites;
mod skip;
mod wait;
mod webdriver;
mod worker;
