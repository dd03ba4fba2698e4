//! Who may call: OAuth tokens and API keys (`token`), passwords (`password`), the JWTs of
//! logins' sessions (`jwt`), the slowing of failed logins (`throttle`), the origins whose
//! pages may call from a browser and the refusal of other sites' pages (`origin`), and the
//! names the server answers to (`host`).
//!
//! Pure computation and the system's random source: no database (the service layer stores
//! what these make), no HTTP (the API's middleware checks what requests present), no threads
//! (the engine runs password checks on one of its own).

pub mod host;
pub mod jwt;
pub mod origin;
pub mod password;
pub mod throttle;
pub mod token;
