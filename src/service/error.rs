//! `Error`: how a service fails, the same for the writes (`lifecycle`, `dispatch`,
//! `accounts`) and the reads (`queries`). Each variant says what the caller can do about it;
//! the API maps each to the contract's envelope.

use crate::domain::model::FieldError;

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
