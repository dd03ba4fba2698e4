//! Logging in and out, in Mage's shapes (its `SessionResource` and presenter):
//! `POST /api/sessions` with `{"session": {"email" (or "username"), "password"}}` answers
//! `{"session": {"expires", "token", "user"}, "metadata": null}`, where `token` is a JWT
//! (HS256, `jwt`) carrying the session's OAuth token; `PUT` (Mage's) or `DELETE
//! /api/sessions/{any}` ends the session whose token the request presents.
//!
//! A wrong email and a wrong password get the same 401 after the same work (an unknown user
//! is checked against a decoy hash), and failures are slowed down per address and per client
//! address (`throttle`).
//! Password checks run on a thread of their own behind a bounded queue: each costs 19 MiB
//! and tens of milliseconds, so that logins can take neither the worker threads nor memory.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::auth;
use super::error::ApiError;
use super::{body, one, read, write, AppState};
use crate::auth::throttle::{self, Refused};
use crate::auth::{jwt, password, token};
use crate::domain::datetime::{self, DateTime};
use crate::domain::model::{FieldError, Fields, Object};
use crate::service::accounts::{self, Address, MAX_ADDRESS_BYTES};
use crate::service::queries;
use crate::store::users::User;

/// The user in a session's answer: Mage's keys. backfilld has no roles: every user may do
/// everything, which Mage calls an owner.
#[derive(Serialize)]
struct UserJson<'a> {
    avatar: Option<()>,
    first_name: Option<()>,
    id: i64,
    last_name: Option<()>,
    owner: bool,
    roles: Option<()>,
    roles_display: &'static str,
    username: &'a str,
}

#[derive(Serialize)]
struct SessionJson<'a> {
    /// As Mage writes it: the UTC datetime without an offset.
    expires: String,
    token: String,
    user: UserJson<'a>,
}

fn present(user: &User, token: &str, expires: DateTime, secret: &[u8]) -> HttpResponse {
    let claims = jwt::Claims { expires: datetime::to_micros(expires) as f64 / 1e6, token: token.to_string() };
    let session = SessionJson {
        expires: datetime::format_api(expires).trim_end_matches("+00:00").to_string(),
        token: jwt::encode(&claims, secret),
        user: UserJson {
            avatar: None,
            first_name: None,
            id: user.id,
            last_name: None,
            owner: true,
            roles: None,
            roles_display: "Owner",
            username: &user.username,
        },
    };
    one("session", &session)
}

/// The login's address and password: `email` wins over `username` when both come, as in Mage.
fn parse_login(record: &Object) -> Result<(Address, String), FieldError> {
    let f = Fields(record);
    let address = match (f.nonblank_string("email")?, f.nonblank_string("username")?) {
        (Some(email), _) => Address::Email(email.trim().to_string()),
        (None, Some(username)) => Address::Username(username.trim().to_string()),
        (None, None) => return Err(FieldError::new("email", "is required (or username): who is logging in")),
    };
    let (field, value) = match &address {
        Address::Email(e) => ("email", e),
        Address::Username(u) => ("username", u),
    };
    if value.len() > MAX_ADDRESS_BYTES {
        return Err(FieldError::new(field, format!("must be at most {MAX_ADDRESS_BYTES} bytes")));
    }
    let password =
        f.string("password")?.filter(|p| !p.is_empty()).ok_or_else(|| FieldError::new("password", "is required"))?;
    if password.len() > password::MAX_BYTES {
        return Err(FieldError::new("password", format!("must be at most {} bytes", password::MAX_BYTES)));
    }
    Ok((address, password))
}

/// `POST /api/sessions`: log in.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (address, password) = parse_login(&body::record(payload, "session").await?)?;
    let key = address.key();
    let client = req.peer_addr().map(|peer| throttle::client_key(peer.ip()));
    let client = client.as_deref();
    {
        // Checked and counted as a failure at once, so that tries sent side by side count
        // too; a success forgets the address's.
        let mut logins = state.logins();
        let now = Instant::now();
        if let Err(refused) = logins.check(&key, client, now) {
            let (wait, from_client) = match refused {
                Refused::Address(wait) => (wait, false),
                Refused::Client(wait) => (wait, true),
            };
            let secs = u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX);
            return Err(ApiError::TooManyRequests { retry_after_secs: secs.max(1), from_client });
        }
        logins.fail(&key, client, now);
    }
    let checked = async {
        let user = read(state.clone(), move |conn| accounts::find(conn, &address)).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let matched = state
            .engine
            .check_password(move || password::verify(&password, hash.as_deref().unwrap_or_else(|| password::decoy())))
            .await?;
        state.metrics.password_checks.inc();
        Ok::<_, ApiError>((user, matched))
    }
    .await;
    let (user, matched) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            // Not checked (a full queue, a failed read): not a failure of the address or client.
            state.logins().undo(&key, client);
            return Err(e);
        }
    };
    let Some(user) = user.filter(|_| matched) else { return Err(ApiError::InvalidCredentials) };
    state.logins().succeed(&key, client);
    let token =
        token::generate().map_err(|e| ApiError::Internal(format!("no randomness from the system: {e}").into()))?;
    let (lifetime, user_id, stored) = (state.session_lifetime, user.id, token.clone());
    let expires =
        write(state.clone(), move |conn, now| accounts::start_session(conn, user_id, &stored, now, lifetime)).await?;
    Ok(present(&user, &token, expires, &state.jwt_secret))
}

/// `PUT` or `DELETE /api/sessions/{id}`: log out. Mage's clients send any id (1); the session
/// ended is the one whose token the request presents, answered with `expires` now.
pub async fn end(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let presented = auth::presented_token(&req, &state.jwt_secret)?.ok_or(ApiError::UnauthorizedAccess)?;
    let stored = presented.clone();
    let ended = write(state.clone(), move |conn, now| Ok((accounts::end_session(conn, &stored)?, now))).await?;
    match ended {
        (Some(user), now) => Ok(present(&user, &presented, now, &state.jwt_secret)),
        (None, _) => {
            let hash = token::hash(&presented);
            let named = read(state, move |conn| queries::token(conn, &hash)).await?;
            match named {
                Some(t) => Err(ApiError::BadRequest(format!(
                    "this OAuth token is not a login's session: it is the token '{}' made with `backfilld token \
                     create`; end it with `backfilld token revoke {}`",
                    t.name, t.name
                ))),
                None => Err(ApiError::InvalidOauthToken),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn logins_name_an_email_or_a_username_and_a_password() {
        let (a, p) = parse_login(&obj(json!({"email": " Ada@x.io ", "password": "pw"}))).unwrap();
        assert_eq!((a, p.as_str()), (Address::Email("Ada@x.io".into()), "pw"));
        let (a, _) = parse_login(&obj(json!({"username": "ada", "password": "pw"}))).unwrap();
        assert_eq!(a, Address::Username("ada".into()));
        let (a, _) = parse_login(&obj(json!({"email": "e@x", "username": "u", "password": "pw"}))).unwrap();
        assert_eq!(a, Address::Email("e@x".into()), "email wins, as in Mage");
        for (bad, field) in [
            (json!({"password": "pw"}), "email"),
            (json!({"email": " ", "password": "pw"}), "email"),
            (json!({"email": "e@x"}), "password"),
            (json!({"email": "e@x", "password": ""}), "password"),
            (json!({"email": "e@x", "password": 7}), "password"),
            (json!({"email": 7, "password": "pw"}), "email"),
            (json!({"email": "e@x", "password": "x".repeat(password::MAX_BYTES + 1)}), "password"),
            (json!({"email": format!("{}@x", "a".repeat(MAX_ADDRESS_BYTES)), "password": "pw"}), "email"),
            (json!({"username": "u".repeat(MAX_ADDRESS_BYTES + 1), "password": "pw"}), "username"),
        ] {
            assert_eq!(parse_login(&obj(bad.clone())).unwrap_err().field, field, "{bad}");
        }
    }
}
