//! `Error`: how a request's work below the HTTP layer fails, shared by the writes
//! (`lifecycle`) and the reads (`queries`); `api::error` maps each to the contract's envelope.

use crate::model::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
