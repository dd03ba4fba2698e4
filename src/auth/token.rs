//! OAuth tokens and API keys: making a token, hashing it, comparing secrets, and reading
//! `--expires-in`. No I/O but the operating system's random source.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new token: 32 bytes from the operating system's CSPRNG, as 64 hex digits.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

/// `bytes` as lower-case hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the database keeps of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `presented` hashes to one of `key_hashes` (`hash` of each configured key, made
/// once at start-up), in time that does not depend on where they differ. Every key is
/// compared (no early exit), so the time does not tell which one matched either.
pub fn key_matches(presented: &str, key_hashes: &[[u8; 32]]) -> bool {
    let presented = hash(presented);
    key_hashes.iter().fold(false, |found, key| found | bool::from(key.ct_eq(&presented)))
}

/// Reads a lifetime like `30d`, `12h`, `90m`, `45s` or `2w` into seconds.
pub fn parse_lifetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let err = || format!("'{s}' is not a lifetime: expected a number and a unit, e.g. 30d, 12h, 90m, 45s or 2w");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().map_err(|_| err())?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(err()),
    };
    match n.checked_mul(unit_seconds) {
        Some(secs) if secs > 0 && secs <= 100 * 365 * 86_400 => Ok(secs),
        _ => Err(format!("'{s}' must be more than nothing and at most 100 years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a.clone()));
    }

    #[test]
    fn keys_match_only_exactly() {
        let keys = [hash("alpha"), hash("beta")];
        assert!(key_matches("beta", &keys));
        assert!(!key_matches("bet", &keys));
        assert!(!key_matches("", &keys));
        assert!(!key_matches("alpha", &[]));
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3600));
        assert_eq!(parse_lifetime("2w"), Ok(14 * 86_400));
        assert_eq!(parse_lifetime("45s"), Ok(45));
        for bad in ["", "d", "30", "30x", "-1d", "0d", "1.5h", "99999999999999999999d", "36501d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
