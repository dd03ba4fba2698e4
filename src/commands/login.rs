//! `backfilld login` and `logout`: a session from `POST /api/sessions`, its OAuth token (the
//! `token` inside the JWT the login answers) and the API key it was made with kept in the
//! user's credentials file (`client::credentials`), where the client commands and the worker
//! find them; `logout` ends the session on the server and removes the entry.

use std::io::IsTerminal;

use super::client::{base, credentials_file, finish, first_key, Failure, Outcome};
use crate::cli::{LoginArgs, LogoutArgs};
use crate::client::{credentials, Api, CallError, Login};

/// How long a login or a logout may take: a password check waits its turn on the server.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn login(args: LoginArgs) -> u8 {
    finish("login", log_in(&args))
}

pub fn logout(args: LogoutArgs) -> u8 {
    finish("logout", log_out(&args))
}

/// Who logs in, from what was typed: an address with `@` is an email, as the server's users
/// are made (`user create --email`); anything else a username.
pub fn who(typed: &str) -> Option<Login> {
    let t = typed.trim();
    match t {
        "" => None,
        t if t.contains('@') => Some(Login::Email(t.to_string())),
        t => Some(Login::Username(t.to_string())),
    }
}

/// A password's first line from standard input, without its line break.
pub fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or("").trim_end_matches('\r')
}

fn log_in(args: &LoginArgs) -> Outcome {
    let base = base(&args.client)?;
    let file = credentials_file(&args.client)
        .ok_or_else(|| Failure::Usage("no config folder to keep the session in: set HOME or XDG_CONFIG_HOME".into()))?;
    // The key given, else the one an earlier login to this server kept.
    let (key, _, key_from, _) = credentials::resolve(&base, first_key(args.client.api_key.clone()), None, Some(&file))
        .map_err(Failure::Usage)?;
    log::info!("server {base}; {}", super::client::say_sources(key_from, credentials::Source::None, Some(&file)));
    let terminal = std::io::stdin().is_terminal();
    let read = |e: std::io::Error| Failure::Usage(format!("cannot read the password: {e}"));
    let who = match (&args.email, &args.username) {
        (Some(e), _) => Some(Login::Email(e.trim().to_string())),
        (None, Some(u)) => Some(Login::Username(u.trim().to_string())),
        (None, None) if terminal => {
            eprint!("Email or username: ");
            let mut typed = String::new();
            std::io::stdin().read_line(&mut typed).map_err(read)?;
            who(&typed)
        }
        (None, None) => None,
    };
    let who = who
        .filter(|w| !matches!(w, Login::Email(s) | Login::Username(s) if s.is_empty()))
        .ok_or_else(|| Failure::Usage("who logs in? pass --email EMAIL or --username NAME".into()))?;
    let password = if terminal {
        rpassword::prompt_password("Password: ").map_err(read)?
    } else {
        let mut text = String::new();
        use std::io::Read;
        // A password is at most a few hundred bytes; more than this is not one.
        std::io::stdin().take(64 << 10).read_to_string(&mut text).map_err(read)?;
        first_line(&text).to_string()
    };
    let api = Api::new(&base, key.clone(), None, 1, CALL_TIMEOUT).map_err(Failure::Usage)?;
    let session = api.login(&who, &password)?;
    let entry = credentials::Entry {
        token: session.token,
        api_key: key,
        username: session.username.clone(),
        expires: session.expires.clone(),
    };
    credentials::put(&file, &base, entry).map_err(Failure::Usage)?;
    if args.client.json {
        let said = serde_json::json!({"server": base, "username": session.username, "expires": session.expires,
            "credentials": file});
        return Ok(super::client::json(&said));
    }
    Ok(format!(
        "logged in to {base} as {} until {} UTC; the client commands and the worker use this session (kept in {})",
        session.username,
        session.expires.split('.').next().unwrap_or_default(),
        file.display()
    ))
}

fn log_out(args: &LogoutArgs) -> Outcome {
    let base = base(&args.client)?;
    let file = credentials_file(&args.client);
    let (key, token, _, token_from) =
        credentials::resolve(&base, first_key(args.client.api_key.clone()), args.client.token.clone(), file.as_deref())
            .map_err(Failure::Usage)?;
    if token.is_none() {
        return Ok(format!("not logged in to {base}: nothing to do"));
    }
    let ended = Api::new(&base, key, token, 1, CALL_TIMEOUT).map_err(Failure::Usage)?.logout();
    // The stored entry goes whenever its session is over or out of reach; a token given by
    // flag leaves the file alone.
    let forget = || -> Result<(), Failure> {
        if let (credentials::Source::Login, Some(file)) = (token_from, &file) {
            credentials::remove(file, &base).map_err(Failure::Usage)?;
        }
        Ok(())
    };
    match ended {
        Ok(()) => {
            forget()?;
            Ok(format!("logged out of {base}"))
        }
        Err(CallError::Refused { status: 401, .. }) => {
            forget()?;
            Ok(format!("logged out of {base} (the session had ended already)"))
        }
        Err(e @ CallError::Unreachable { .. }) => {
            forget()?;
            Err(Failure::Unreachable(format!(
                "{e}; the session was removed from this machine, but lasts on the server until it expires"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_with_an_at_is_an_email() {
        assert_eq!(who(" ada@example.com\n"), Some(Login::Email("ada@example.com".into())));
        assert_eq!(who("ada\n"), Some(Login::Username("ada".into())));
        assert_eq!(who(" \n"), None);
    }

    #[test]
    fn a_password_is_standard_input_s_first_line() {
        assert_eq!(first_line("correct horse battery\r\nmore"), "correct horse battery");
        assert_eq!(first_line("  spaces kept  "), "  spaces kept  ");
        assert_eq!(first_line(""), "");
    }
}
