//! `Error`: how work handed to the engine fails: by itself (the service's error), because
//! the engine cannot take it now (a full queue, a data file gone or locked), or because the
//! engine failed (a thread stopped, no connection). The API maps each to its envelope.

use crate::service;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The work itself failed: not found, invalid, a conflict, or the database.
    #[error(transparent)]
    Service(#[from] service::Error),
    /// The engine cannot take the work now; the caller may try again after `retry_after_secs`.
    #[error("{message}")]
    Unavailable { message: String, retry_after_secs: u32 },
    /// The engine itself failed: a thread stopped, a write panicked, no reading connection.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Service(e.into())
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Internal(Box::new(e))
    }
}
