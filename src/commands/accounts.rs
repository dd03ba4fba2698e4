//! The account commands: `backfilld token` (OAuth tokens) and `backfilld user` (users who
//! log in), over the data file opened by the command itself.

use super::Error;
use crate::auth::{password, token};
use crate::cli::{TokenCommand, UserCommand};
use crate::db;
use crate::domain::datetime::{self, DateTime};
use crate::service::accounts;
use crate::store::tokens::TokenRecord;

fn describe(t: &TokenRecord, now: DateTime) -> String {
    let expiry = match t.expires_at {
        None => "never expires".to_string(),
        Some(e) if e <= now => format!("expired {}", datetime::format_api(e)),
        Some(e) => format!("expires {}", datetime::format_api(e)),
    };
    format!("{}\tcreated {}\t{expiry}", t.name, datetime::format_api(t.created_at))
}

/// `backfilld token ...`: what to print on standard output.
pub fn token(cmd: TokenCommand) -> Result<String, Error> {
    let now = datetime::now();
    match cmd {
        TokenCommand::Create { db, name, expires_in } => {
            if name.trim().is_empty() {
                return Err(Error::BlankName);
            }
            let expires_at = match expires_in {
                None => None,
                Some(s) => {
                    let secs = token::parse_lifetime(&s).map_err(Error::Lifetime)?;
                    let at = datetime::add_micros(now, i128::from(secs) * 1_000_000)
                        .ok_or_else(|| Error::Lifetime(format!("{s} reaches past the year 9999")))?;
                    Some(at)
                }
            };
            let conn = db::open(&db.db)?;
            let secret = token::generate().map_err(Error::Random)?;
            let record = TokenRecord { name, created_at: now, expires_at };
            accounts::create_token(&conn, &record, &secret).map_err(Error::from_service("cannot store the token"))?;
            Ok(secret)
        }
        TokenCommand::List { db } => {
            let conn = db::open(&db.db)?;
            let tokens = accounts::list_tokens(&conn).map_err(Error::from_service("cannot list the tokens"))?;
            Ok(tokens.iter().map(|t| describe(t, now)).collect::<Vec<_>>().join("\n"))
        }
        TokenCommand::Revoke { db, name } => {
            let conn = db::open(&db.db)?;
            accounts::revoke_token(&conn, &name).map_err(Error::from_service("cannot revoke the token"))?;
            Ok(format!("revoked token '{name}'"))
        }
    }
}

/// The new user's password: asked twice on a terminal (not echoed), else standard input's
/// first line (without its line ending).
fn read_new_password() -> Result<String, Error> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|source| Error::Read { what: "the password".into(), source })?;
        let again = rpassword::prompt_password("Password again: ")
            .map_err(|source| Error::Read { what: "the password".into(), source })?;
        if first != again {
            return Err(Error::Refused("the two passwords differ; nothing was changed".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|source| Error::Read { what: "the password from standard input".into(), source })?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    password::check_new(&password).map_err(|m| Error::Refused(format!("{m}; nothing was changed")))?;
    Ok(password)
}

/// `backfilld user ...`: what to print on standard output.
pub fn user(cmd: UserCommand) -> Result<String, Error> {
    let now = datetime::now();
    let refused = Error::from_service("cannot change the users");
    match cmd {
        UserCommand::Create { db, email, username } => {
            let email = email.trim().to_string();
            accounts::check_email(&email).map_err(Error::Refused)?;
            let password = read_new_password()?;
            let hash = password::hash(&password).map_err(Error::Refused)?;
            let conn = db::open(&db.db)?;
            let user = accounts::create_user(&conn, &email, username.as_deref(), &hash, now).map_err(refused)?;
            Ok(format!("created user {} (username '{}', id {})", user.email, user.username, user.id))
        }
        UserCommand::List { db } => {
            let conn = db::open(&db.db)?;
            let users = accounts::list_users(&conn, now).map_err(refused)?;
            Ok(users
                .iter()
                .map(|(u, sessions)| {
                    format!(
                        "{}\t{}\tcreated {}\t{sessions} live session(s)",
                        u.email,
                        u.username,
                        datetime::format_api(u.created_at)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        UserCommand::Delete { db, email } => {
            let conn = db::open(&db.db)?;
            accounts::delete_user(&conn, email.trim()).map_err(refused)?;
            Ok(format!("deleted user {} and their sessions", email.trim()))
        }
    }
}
