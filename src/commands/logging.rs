//! The log: env_logger, with the lines a client can provoke at will kept in bounds.
//!
//! actix-http writes an ERROR line ("stream error: request parse error ...") for every
//! malformed request it refuses before any of backfilld's code runs (its own bare 400). Those
//! are the client's errors, not the server's, and a client sending garbage in a loop would
//! otherwise write a line per request. They are demoted to WARN and let through at most
//! `BURST` per `WINDOW`; the next line let through says how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};

pub use crate::cli::LogFormat as Format;

/// How many such lines a window lets through.
pub const BURST: u32 = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Counts lines within fixed windows.
#[derive(Debug)]
pub struct Limiter {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter { window_start: None, in_window: 0, suppressed: 0 }
    }

    /// Whether a line at `now` may be written: `Some(n)`, with `n` the lines left out since
    /// the last one written, or `None` to leave it out.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.window_start.is_none_or(|start| now.duration_since(start) >= WINDOW) {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= BURST {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// A logger that passes everything to `inner` except actix-http's lines for connections it
/// could not read, which go through the limiter, demoted to WARN.
pub struct Bounded<L> {
    inner: L,
    limiter: Mutex<Limiter>,
}

impl<L: Log> Bounded<L> {
    pub fn new(inner: L) -> Bounded<L> {
        Bounded { inner, limiter: Mutex::new(Limiter::new()) }
    }
}

/// actix-http's line for a connection whose request it could not parse or read: "stream
/// error: request parse error: ...", or an I/O error of the client's connection.
fn client_provoked(record: &Record) -> bool {
    record.level() <= Level::Warn
        && record.target().starts_with("actix_http")
        && record.args().to_string().starts_with("stream error")
}

impl<L: Log> Log for Bounded<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !client_provoked(record) {
            return self.inner.log(record);
        }
        let admitted = self.limiter.lock().unwrap_or_else(std::sync::PoisonError::into_inner).admit(Instant::now());
        let Some(left_out) = admitted else { return };
        let args = record.args();
        let note = if left_out > 0 { format!(" ({left_out} more like it left out)") } else { String::new() };
        self.inner.log(
            &Record::builder()
                .level(Level::Warn)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .args(format_args!("client error: {args}{note}"))
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// What `RUST_LOG` is unless set: backfilld's lines and the access log, without actix's own
/// start-up and shutdown lines (`RUST_LOG=info` shows them).
pub const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// What `RUST_LOG` is for `backfilld demo` unless set: warnings and errors only, so that the
/// demo's banner (where to look) stays on the terminal rather than scrolling away under the
/// access lines of its own seeding and simulated worker (`RUST_LOG=info` shows them).
pub const DEMO_FILTER: &str = "warn";

/// How the log is set up: its format, and its filter unless `RUST_LOG` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub format: Format,
    pub default_filter: &'static str,
    /// backfilld's own lines at `info` at least, whatever `RUST_LOG` says (a client's `-v`).
    pub verbose: bool,
}

impl Setup {
    /// A server's, or any other command's, log: `DEFAULT_FILTER` in `format`.
    pub fn server(format: Format) -> Setup {
        Setup { format, default_filter: DEFAULT_FILTER, verbose: false }
    }

    /// A client command's: warnings alone, and backfilld's `info` lines too when `verbose`
    /// (`-v`), as text.
    pub fn client(verbose: bool) -> Setup {
        Setup { format: Format::Text, default_filter: "warn", verbose }
    }

    /// The demo's: `DEMO_FILTER`, as text.
    pub fn demo() -> Setup {
        Setup { format: Format::Text, default_filter: DEMO_FILTER, verbose: false }
    }
}

/// A record as one JSON line.
pub fn json_line(record: &Record, time: &str) -> String {
    struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
            let v = if let Some(n) = value.to_u64() {
                serde_json::Value::from(n)
            } else if let Some(n) = value.to_i64() {
                serde_json::Value::from(n)
            } else if let Some(f) = value.to_f64() {
                serde_json::Value::from(f)
            } else if let Some(b) = value.to_bool() {
                serde_json::Value::from(b)
            } else {
                serde_json::Value::from(value.to_string())
            };
            self.0.insert(key.as_str().to_string(), v);
            Ok(())
        }
    }
    let mut map = serde_json::Map::new();
    map.insert("time".into(), time.into());
    map.insert("level".into(), record.level().as_str().into());
    map.insert("target".into(), record.target().into());
    map.insert("message".into(), record.args().to_string().into());
    let _ = record.key_values().visit(&mut Fields(&mut map));
    serde_json::Value::Object(map).to_string()
}

/// Installs env_logger (`RUST_LOG`, else `setup`'s filter) behind `Bounded`, writing
/// `setup`'s format.
pub fn init(setup: Setup) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(setup.default_filter));
    if setup.verbose {
        builder.filter_module("backfilld", log::LevelFilter::Info);
    }
    if setup.format == Format::Json {
        builder.format(|buf, record| {
            use std::io::Write;
            let now = time::OffsetDateTime::now_utc();
            let time = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            writeln!(buf, "{}", json_line(record, &time))
        });
    }
    let logger = builder.build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Bounded::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_is_let_through_and_the_rest_counted() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        for k in 0..BURST {
            assert_eq!(l.admit(t0 + Duration::from_millis(u64::from(k))), Some(0));
        }
        for k in 0..100 {
            assert_eq!(l.admit(t0 + Duration::from_millis(100 + k)), None);
        }
        // A new window: let through again, with the count of what was left out.
        assert_eq!(l.admit(t0 + WINDOW), Some(100));
        assert_eq!(l.admit(t0 + WINDOW + Duration::from_millis(1)), Some(0));
    }

    #[test]
    fn json_lines_carry_the_message_and_the_fields() {
        let kvs: [(&str, log::kv::Value); 3] =
            [("request_id", "abc".into()), ("status", 404u16.into()), ("ms", 1.5f64.into())];
        let line = json_line(
            &Record::builder()
                .level(Level::Info)
                .target("backfilld::access")
                .args(format_args!("a \"quoted\" line"))
                .key_values(&kvs)
                .build(),
            "2026-01-01T00:00:00Z",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "2026-01-01T00:00:00Z", "level": "INFO", "target": "backfilld::access",
                "message": "a \"quoted\" line", "request_id": "abc", "status": 404, "ms": 1.5})
        );
    }

    #[test]
    fn only_actix_http_warnings_and_errors_are_bounded() {
        let rec = |level, target, message: &str| {
            client_provoked(&Record::builder().level(level).target(target).args(format_args!("{message}")).build())
        };
        assert!(rec(Level::Error, "actix_http::h1::dispatcher", "stream error: request parse error: x"));
        assert!(rec(Level::Warn, "actix_http::h1::dispatcher", "stream error: x"));
        assert!(!rec(Level::Info, "actix_http::h1::dispatcher", "stream error: x"));
        assert!(!rec(Level::Error, "actix_http::h1::dispatcher", "Response payload stream error: x"));
        assert!(!rec(Level::Error, "backfilld::api::error", "stream error: x"));
        assert!(!rec(Level::Info, "actix_web::middleware::logger", "x"));
    }
}
