//! The `oauth_token` table. Only SHA-256 digests of tokens are stored and looked up.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{micros, opt_datetime, req_datetime};
use crate::domain::datetime::DateTime;

/// A stored token, without the token itself (which is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub created_at: DateTime,
    pub expires_at: Option<DateTime>,
}

fn from_row(row: &Row) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: row.get("name")?,
        created_at: req_datetime(row, "created_at")?,
        expires_at: opt_datetime(row, "expires_at")?,
    })
}

/// Whether the name was free: `false` when a token of that name exists already.
pub fn insert_token(conn: &Connection, record: &TokenRecord, hash: &[u8; 32]) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO oauth_token (name, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![record.name, &hash[..], micros(Some(record.created_at)), micros(record.expires_at)])?;
    Ok(inserted == 1)
}

pub fn find_token_by_hash(conn: &Connection, hash: &[u8; 32]) -> rusqlite::Result<Option<TokenRecord>> {
    conn.prepare_cached("SELECT name, created_at, expires_at FROM oauth_token WHERE token_hash = ?1")?
        .query_row([&hash[..]], from_row)
        .optional()
}

pub fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenRecord>> {
    conn.prepare_cached("SELECT name, created_at, expires_at FROM oauth_token ORDER BY name")?
        .query_map([], from_row)?
        .collect()
}

/// Whether a token of that name existed.
pub fn delete_token(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM oauth_token WHERE name = ?1")?.execute([name])? == 1)
}
