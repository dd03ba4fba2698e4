//! Who may call: users (the `backfilld user` commands), the sessions a login starts and
//! ends, and the OAuth tokens of `backfilld token`. Passwords are hashed by
//! `auth::password`; tokens are stored as SHA-256 digests only. No HTTP, no clock.

use rusqlite::Connection;

use super::{Error, Result};
use crate::auth::token;
use crate::domain::datetime::DateTime;
use crate::domain::model::FieldError;
use crate::store;
use crate::store::tokens::TokenRecord;
use crate::store::users::{Session, User};

/// How long a login's session lasts unless the server is told otherwise: 30 days, as Mage's.
pub const DEFAULT_SESSION_SECONDS: i64 = 30 * 86_400;

/// Who a login names: Mage's clients send `email`, or `username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Email(String),
    Username(String),
}

impl Address {
    /// The key failed logins are counted under (`throttle`): the same for any case, and a
    /// fixed 64 characters (a SHA-256) however long the address sent.
    pub fn key(&self) -> String {
        let address = match self {
            Address::Email(e) => format!("email:{}", e.to_lowercase()),
            Address::Username(u) => format!("username:{}", u.to_lowercase()),
        };
        token::hex(&token::hash(&address))
    }
}

/// The longest email (RFC 5321's 254), and so the longest address a login may send, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 254;

/// Checks an email the way `user create` needs it: one `@` with text on both sides, no
/// spaces, at most `MAX_ADDRESS_BYTES` bytes.
pub fn check_email(email: &str) -> std::result::Result<(), String> {
    let ok = email.len() <= MAX_ADDRESS_BYTES
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(format!("'{email}' is not an email address"))
    }
}

/// Makes a user; `password_hash` comes from `password::hash`. The username defaults to the
/// email's local part. A taken email or username is a conflict.
pub fn create_user(
    conn: &Connection,
    email: &str,
    username: Option<&str>,
    password_hash: &str,
    now: DateTime,
) -> Result<User> {
    check_email(email).map_err(|m| FieldError::new("email", m))?;
    let username = match username {
        Some(u) if u.trim().is_empty() => return Err(FieldError::new("username", "must not be blank").into()),
        Some(u) => u.trim().to_string(),
        None => email.split('@').next().unwrap_or(email).to_string(),
    };
    if store::users::find_user_by_username(conn, &username)?.is_some() {
        return Err(Error::Conflict(format!("the username '{username}' is taken; pick another with --username")));
    }
    let id = store::users::insert_user(conn, email, &username, password_hash, now)?
        .ok_or_else(|| Error::Conflict(format!("a user with the email '{email}' exists already")))?;
    store::users::find_user(conn, id)?.ok_or_else(|| Error::NotFound(format!("user {id} vanished")))
}

/// Every user, by email, with how many live sessions each has at `now`.
pub fn list_users(conn: &Connection, now: DateTime) -> Result<Vec<(User, i64)>> {
    Ok(store::users::list_users(conn, now)?)
}

/// Deletes the user with this email (any case), and their sessions.
pub fn delete_user(conn: &Connection, email: &str) -> Result<()> {
    if store::users::delete_user(conn, email)? {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no user has the email '{email}'")))
    }
}

/// The user a login names, if any.
pub fn find(conn: &Connection, address: &Address) -> Result<Option<User>> {
    Ok(match address {
        Address::Email(e) => store::users::find_user_by_email(conn, e)?,
        Address::Username(u) => store::users::find_user_by_username(conn, u)?,
    })
}

/// A new session of `user_id` for `lifetime_seconds` from `now`: its token (returned once,
/// stored only as its SHA-256) and when it expires. The user's expired sessions, and the
/// oldest beyond `store::users::MAX_SESSIONS_PER_USER`, end in the same write.
pub fn start_session(
    conn: &Connection,
    user_id: i64,
    token: &str,
    now: DateTime,
    lifetime_seconds: i64,
) -> Result<DateTime> {
    let expires_at = now.checked_add(time::Duration::seconds(lifetime_seconds)).unwrap_or(now);
    if store::users::find_user(conn, user_id)?.is_none() {
        // Deleted between the password check and this write.
        return Err(Error::NotFound("the user was deleted".into()));
    }
    store::users::insert_session(conn, user_id, &token::hash(token), now, expires_at)?;
    Ok(expires_at)
}

/// The session whose token is `token`, with its user, expired or not.
pub fn session(conn: &Connection, token: &str) -> Result<Option<(Session, User)>> {
    let Some(session) = store::users::find_session_by_hash(conn, &token::hash(token))? else { return Ok(None) };
    Ok(store::users::find_user(conn, session.user_id)?.map(|user| (session, user)))
}

/// Ends the session whose token is `token` (a logout); its user, or `None` when no session
/// has that token.
pub fn end_session(conn: &Connection, token: &str) -> Result<Option<User>> {
    let Some((_, user)) = session(conn, token)? else { return Ok(None) };
    store::users::delete_session_by_hash(conn, &token::hash(token))?;
    Ok(Some(user))
}

/// The file's JWT secret (made with the schema).
pub fn jwt_secret(conn: &Connection) -> Result<Vec<u8>> {
    store::users::secret(conn, "jwt_secret")?.ok_or_else(|| Error::NotFound("the data file has no JWT secret".into()))
}

/// Stores the token `secret` (only its SHA-256) under `record`'s name; a taken name is a
/// conflict.
pub fn create_token(conn: &Connection, record: &TokenRecord, secret: &str) -> Result<()> {
    if store::tokens::insert_token(conn, record, &token::hash(secret))? {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "a token named '{}' exists already; revoke it first or pick another name",
            record.name
        )))
    }
}

/// Every token, by name.
pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>> {
    Ok(store::tokens::list_tokens(conn)?)
}

/// Deletes the token named `name`; requests that present it are refused from then on.
pub fn revoke_token(conn: &Connection, name: &str) -> Result<()> {
    if store::tokens::delete_token(conn, name)? {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no token is named '{name}'")))
    }
}
