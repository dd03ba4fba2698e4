//! The domain: what a backfill and a run are, with their fields' validation (`model`); the
//! run dates of a backfill's range and interval (`schedule`) and their date map's cells
//! (`datemap`); UTC datetimes as the API and the data file spell them (`datetime`).
//!
//! Pure types and logic, unit and property tested: no SQL, no HTTP, no threads, no files;
//! the clock is read in one place (`datetime::now`). Every layer may use it; it uses none.

pub mod datemap;
pub mod datetime;
pub mod log;
pub mod model;
pub mod schedule;
