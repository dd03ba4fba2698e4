//! The `user`, `user_session` and `secret` tables: the users who log in, their sessions
//! (looked up by the SHA-256 of their token, like `oauth_token`'s), and the JWT secret.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{micros, req_datetime};
use crate::domain::datetime::DateTime;

/// A stored user. `password_hash` is an Argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub password_hash: String,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

/// A live session's user and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: DateTime,
}

/// The most sessions a user keeps: a login past it ends the user's oldest, so that logging in
/// again and again cannot grow the file without bound.
pub const MAX_SESSIONS_PER_USER: i64 = 100;

const USER_COLUMNS: &str = "id, email, username, password_hash, created_at, updated_at";

fn user_from_row(row: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get("id")?,
        email: row.get("email")?,
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        created_at: req_datetime(row, "created_at")?,
        updated_at: req_datetime(row, "updated_at")?,
    })
}

/// The new user's id, or `None` when the email (compared without case) is taken.
pub fn insert_user(
    conn: &Connection,
    email: &str,
    username: &str,
    password_hash: &str,
    now: DateTime,
) -> rusqlite::Result<Option<i64>> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO user (email, username, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (email) DO NOTHING",
        )?
        .execute(params![email, username, password_hash, micros(Some(now))])?;
    Ok((inserted == 1).then(|| conn.last_insert_rowid()))
}

/// The user with this email, compared without case.
pub fn find_user_by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user WHERE email = ?1"))?
        .query_row([email], user_from_row)
        .optional()
}

/// The user with this username, compared without case.
pub fn find_user_by_username(conn: &Connection, username: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user WHERE username = ?1 COLLATE NOCASE"))?
        .query_row([username], user_from_row)
        .optional()
}

pub fn find_user(conn: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user WHERE id = ?1"))?
        .query_row([id], user_from_row)
        .optional()
}

/// Every user by email, with how many live sessions each has at `now`.
pub fn list_users(conn: &Connection, now: DateTime) -> rusqlite::Result<Vec<(User, i64)>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS}, (SELECT COUNT(*) FROM user_session AS s WHERE s.user_id = user.id AND s.expires_at > ?1) \
         AS sessions FROM user ORDER BY email"
    ))?
    .query_map([micros(Some(now))], |r| Ok((user_from_row(r)?, r.get("sessions")?)))?
    .collect()
}

/// Whether the user existed; their sessions go with them (`ON DELETE CASCADE`: every
/// connection turns foreign keys on, `db::configure`).
pub fn delete_user(conn: &Connection, email: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM user WHERE email = ?1")?.execute([email])? == 1)
}

/// Starts a session of `user_id` whose token hashes to `hash`; ends the user's expired
/// sessions, and the oldest beyond `MAX_SESSIONS_PER_USER`, in the same write.
pub fn insert_session(
    conn: &Connection,
    user_id: i64,
    hash: &[u8; 32],
    now: DateTime,
    expires_at: DateTime,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO user_session (user_id, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, &hash[..], micros(Some(now)), micros(Some(expires_at))])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "DELETE FROM user_session WHERE user_id = ?1 AND (expires_at <= ?2 OR id <= \
         (SELECT id FROM user_session WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?3))",
    )?
    .execute(params![user_id, micros(Some(now)), MAX_SESSIONS_PER_USER])?;
    Ok(id)
}

/// The session whose token hashes to `hash`, expired or not.
pub fn find_session_by_hash(conn: &Connection, hash: &[u8; 32]) -> rusqlite::Result<Option<Session>> {
    conn.prepare_cached("SELECT id, user_id, expires_at FROM user_session WHERE token_hash = ?1")?
        .query_row([&hash[..]], |r| {
            Ok(Session { id: r.get("id")?, user_id: r.get("user_id")?, expires_at: req_datetime(r, "expires_at")? })
        })
        .optional()
}

/// Whether a session with this token existed.
pub fn delete_session_by_hash(conn: &Connection, hash: &[u8; 32]) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM user_session WHERE token_hash = ?1")?.execute([&hash[..]])? == 1)
}

/// The file's secret named `name` (made with the schema).
pub fn secret(conn: &Connection, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM secret WHERE name = ?1")?.query_row([name], |r| r.get(0)).optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime {
        crate::domain::datetime::from_micros(s * 1_000_000).unwrap()
    }

    #[test]
    fn users_sessions_and_their_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("u.db")).unwrap();
        let id = insert_user(&conn, "Ada@Example.com", "ada", "$argon2id$x", at(1)).unwrap().unwrap();
        assert_eq!(insert_user(&conn, "ada@example.COM", "other", "$argon2id$y", at(2)).unwrap(), None, "case");
        assert_eq!(find_user_by_email(&conn, "ADA@example.com").unwrap().unwrap().id, id);
        // Sessions: at most MAX_SESSIONS_PER_USER, the oldest ended first; expired ones go.
        for k in 0..MAX_SESSIONS_PER_USER + 5 {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&k.to_le_bytes());
            insert_session(&conn, id, &hash, at(10 + k), at(1000 + k)).unwrap();
        }
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM user_session", [], |r| r.get(0)).unwrap();
        assert_eq!(n, MAX_SESSIONS_PER_USER);
        assert!(find_session_by_hash(&conn, &[0u8; 32]).unwrap().is_none(), "the oldest ended");
        let mut newest = [0u8; 32];
        newest[..8].copy_from_slice(&(MAX_SESSIONS_PER_USER + 4).to_le_bytes());
        assert_eq!(find_session_by_hash(&conn, &newest).unwrap().unwrap().user_id, id);
        insert_session(&conn, id, &[9u8; 32], at(5000), at(6000)).unwrap();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM user_session", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the expired ones went");
        assert_eq!(list_users(&conn, at(5001)).unwrap()[0].1, 1);
        assert!(delete_session_by_hash(&conn, &[9u8; 32]).unwrap());
        assert!(!delete_session_by_hash(&conn, &[9u8; 32]).unwrap());
        insert_session(&conn, id, &[7u8; 32], at(5000), at(6000)).unwrap();
        assert!(delete_user(&conn, "ada@EXAMPLE.com").unwrap());
        assert!(find_session_by_hash(&conn, &[7u8; 32]).unwrap().is_none(), "the user's sessions went too");
        assert!(!delete_user(&conn, "ada@example.com").unwrap());
        assert_eq!(secret(&conn, "jwt_secret").unwrap().unwrap().len(), 32);
    }
}
