//! A data file's contents in and out, for the commands: `import` loads a JSON document of
//! backfills and runs in one transaction, `export` writes one from a snapshot, `backup`
//! copies the file itself while a server may be writing it.
//!
//! Each works on a connection of its own (`db::open`), beside a server or without one, and
//! never through the HTTP layer; records are checked by the domain's and services' rules and
//! written in the API's shapes (`wire`).

pub mod backup;
pub mod export;
pub mod import;
