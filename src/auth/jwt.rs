//! The JWT a login answers, as Mage makes it: HS256 over `{"expires": <epoch seconds>,
//! "token": "<the OAuth token>"}` (PyJWT's header, `{"alg": "HS256", "typ": "JWT"}`).
//! Clients decode it to find the token for the `OAUTH-TOKEN` header; the `oauth_token`
//! cookie carries it whole, and is checked here against the file's secret. Pure: no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a session's JWT says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// When the session ends, in seconds since 1970 (a float, as Python's `timestamp()`).
    pub expires: f64,
    /// The session's OAuth token.
    pub token: String,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The longest JWT `decode` looks at: a session's is about 200 bytes.
pub const MAX_LEN: usize = 4096;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// `claims` signed with `secret`.
pub fn encode(claims: &Claims, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

/// The claims of `jwt` if it is an HS256 JWT signed with `secret` (compared in constant
/// time) carrying them; `None` for anything else.
pub fn decode(jwt: &str, secret: &[u8]) -> Option<Claims> {
    if jwt.len() > MAX_LEN {
        return None;
    }
    let mut parts = jwt.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut m = mac(secret);
    m.update(header.as_bytes());
    m.update(b".");
    m.update(payload.as_bytes());
    m.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Whether `s` has a JWT's form (three dot-separated parts), as opposed to a bare token.
pub fn looks_like(s: &str) -> bool {
    s.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_vector_verifies() {
        // What PyJWT 2.15.1, which Mage uses, makes of `jwt.encode({"expires": 1766961625.536914,
        // "token": "abc"}, "materia", algorithm="HS256")` ("materia" is Mage's default secret):
        // the same bytes, so the header, the payload's JSON and the HMAC all agree.
        const PYJWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
            eyJleHBpcmVzIjoxNzY2OTYxNjI1LjUzNjkxNCwidG9rZW4iOiJhYmMifQ.\
            -vWeAx62ZGBwH5czOJOBzyvH_mCh3u-XZl90HTH7R7Q";
        let claims = Claims { expires: 1766961625.536914, token: "abc".into() };
        assert_eq!(encode(&claims, b"materia"), PYJWT);
        assert_eq!(decode(PYJWT, b"materia").unwrap(), claims);
    }

    #[test]
    fn tampering_and_other_secrets_fail() {
        let jwt = encode(&Claims { expires: 1.5, token: "t".into() }, b"secret");
        assert!(decode(&jwt, b"secret").is_some());
        assert!(decode(&jwt, b"other").is_none());
        let (head, rest) = jwt.split_once('.').unwrap();
        let (_, sig) = rest.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(r#"{"expires":1.5,"token":"u"}"#));
        assert!(decode(&forged, b"secret").is_none());
        for bad in ["", "a.b", "a.b.c", "a.b.c.d", &format!("{jwt}x"), &format!("{jwt}.")] {
            assert!(decode(bad, b"secret").is_none(), "{bad}");
        }
        // alg none is refused even with an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"expires":1.5,"token":"t"}"#)
        );
        assert!(decode(&none, b"secret").is_none());
        assert!(looks_like(&jwt) && !looks_like("0123abcd"));
    }
}
