//! Users' passwords: Argon2id (the argon2 crate's defaults, OWASP's recommended minimum:
//! 19 MiB, 2 passes) stored as a PHC string with its own random salt. No I/O but the
//! operating system's random source.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// The shortest password `backfilld user create` takes, in characters.
pub const MIN_CHARS: usize = 8;
/// The longest password accepted anywhere, in bytes: more only costs the hash time.
pub const MAX_BYTES: usize = 1024;

/// Why a password is refused.
pub fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_CHARS {
        return Err(format!("the password must have at least {MIN_CHARS} characters"));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("the password must have at most {MAX_BYTES} bytes"));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password`.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the stored `phc` string. A string that is not a PHC hash
/// matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password is known to match, with the same parameters as `hash` makes: a login
/// for an unknown user verifies against it, so that it takes as long as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = crate::auth::token::generate().unwrap_or_else(|_| "backfilld decoy password".into());
        hash(&secret).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password_and_differ_by_salt() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse", &a) && verify("correct horse", &b));
        assert!(!verify("correct hors", &a));
        assert!(!verify("", &a));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!verify("anything", decoy()));
        assert!(decoy().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert!(check_new("1234567").is_err());
        assert!(check_new("12345678").is_ok());
        assert!(check_new("ééééééé").is_err(), "characters, not bytes");
        assert!(check_new(&"x".repeat(MAX_BYTES + 1)).is_err());
    }
}
