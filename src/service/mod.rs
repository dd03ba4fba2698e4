//! The services: what a request does, as one function over the connection it is given. The
//! backfill's lifecycle (`lifecycle`), handing its runs to workers and taking their reports
//! (`dispatch`), the reads (`queries`), and users and their sessions (`accounts`).
//!
//! Each function is a request's whole work, all or nothing as the caller makes it (the
//! engine runs writes in a savepoint of the writer's transaction, reads in one snapshot);
//! each fails with `Error`. Below: `store` for every statement, `domain` for the rules,
//! `auth` for hashing. Not here: HTTP, threads, the clock (`now` is passed in), SQL.

pub mod accounts;
pub mod dispatch;
mod error;
pub mod lifecycle;
pub mod logs;
pub mod queries;

pub use error::{Error, Result};
