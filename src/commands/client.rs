//! What the client commands (`backfill`, `run`, `login`, `logout`) share: reaching the server
//! with the right credentials (`connect`), failures and their exit statuses (`Failure`), and
//! the pure formatting of their output (`table`, `when`). They speak to the API alone, through
//! `client::Api`, like the worker: no data file, no store.

use std::time::Duration;

use serde_json::Value;

use crate::cli::ClientArgs;
use crate::client::{self, credentials, Api, CallError};

/// How long one call may take: a start creates every run of its backfill in one request,
/// which takes seconds at 100,000 runs on a busy server.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a client command failed, and so its exit status: 1 when the server answered with an
/// error (a refusal: no such backfill, a conflict, bad credentials; or its own failure), 2
/// when it could not be asked (unreachable, bad flags, the credentials file unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Refused(String),
    Unreachable(String),
    Usage(String),
}

impl Failure {
    pub fn status(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Unreachable(_) | Failure::Usage(_) => 2,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Unreachable(m) | Failure::Usage(m) => m,
        }
    }
}

/// The API's own message, with what to do when it is about credentials or a missing server.
impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        match e {
            CallError::Unreachable { .. } => Failure::Unreachable(format!(
                "{e}; is backfilld serving there? Pass --server URL (or set BACKFILLD_SERVER)"
            )),
            CallError::Refused { status: 401 | 403, .. } => Failure::Refused(format!(
                "{e}; log in with `backfilld login --server URL`, or pass --api-key and --token (or set \
                 BACKFILLD_API_KEY and BACKFILLD_TOKEN)"
            )),
            CallError::Refused { .. } | CallError::Server { .. } | CallError::Conflict(_) => {
                Failure::Refused(e.to_string())
            }
            // Not known to have been done or not: the server could not be asked to the end.
            CallError::Unanswered { .. } => Failure::Unreachable(e.to_string()),
        }
    }
}

pub type Outcome = Result<String, Failure>;

/// Prints a command's output, or its failure on standard error, and gives its exit status.
pub fn finish(command: &str, outcome: Outcome) -> u8 {
    match outcome {
        Ok(out) => {
            if !out.is_empty() {
                println!("{}", out.trim_end_matches('\n'));
            }
            0
        }
        Err(f) => {
            eprintln!("backfilld {command}: {}", f.message());
            f.status()
        }
    }
}

/// The server's base URL from `--server`, or a usage failure.
pub fn base(args: &ClientArgs) -> Result<String, Failure> {
    client::base_url(&args.server).map_err(Failure::Usage)
}

/// The credentials file, when the user has a config folder.
pub fn credentials_file(args: &ClientArgs) -> Option<std::path::PathBuf> {
    args.config_home.as_deref().map(credentials::path_in)
}

/// The first of a comma-separated list of keys (`BACKFILLD_API_KEY` may hold the server's).
pub fn first_key(key: Option<String>) -> Option<String> {
    key.and_then(|k| k.split(',').map(str::trim).find(|k| !k.is_empty()).map(str::to_string))
}

/// A client of the server `args` name, presenting the key and token given, or else those
/// `backfilld login` kept for that server.
pub fn connect(args: &ClientArgs) -> Result<Api, Failure> {
    let base = base(args)?;
    let file = credentials_file(args);
    let (key, token, key_from, token_from) =
        credentials::resolve(&base, first_key(args.api_key.clone()), args.token.clone(), file.as_deref())
            .map_err(Failure::Usage)?;
    log::info!("server {base}; {}", say_sources(key_from, token_from, file.as_deref()));
    Api::new(&base, key, token, 2, CALL_TIMEOUT).map_err(Failure::Usage)
}

/// Where a client's API key and token came from, in a log line's words.
pub fn say_sources(key: credentials::Source, token: credentials::Source, file: Option<&std::path::Path>) -> String {
    use credentials::Source;
    let say = |s: Source| match s {
        Source::Given => "its flag or environment variable".to_string(),
        Source::Login => format!("the login kept in {}", file.map(|f| f.display().to_string()).unwrap_or_default()),
        Source::None => "none".to_string(),
    };
    format!("API key: {}; token: {}", say(key), say(token))
}

/// JSON for `--json`, pretty-printed.
pub fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Rows under a header, each column as wide as its widest cell (counted in characters),
/// two spaces apart, the last column unpadded. Cells are one line: a line break or a tab in
/// one is shown as a space.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |c: &str| c.replace(['\n', '\r', '\t'], " ");
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
        .collect();
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < line.len() {
                text.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// A datetime as the API writes it (`2024-01-01 06:00:00+00:00`, or `...T06:00:00+00:00` in
/// run variables) shortened for a table: `2024-01-01 06:00` (seconds when not zero), UTC
/// implied; `-` for null.
pub fn when(v: &Value) -> String {
    let Some(s) = v.as_str() else { return "-".into() };
    let s = s.replacen('T', " ", 1);
    let s = s.strip_suffix("+00:00").unwrap_or(&s);
    let s = s.split('.').next().unwrap_or(s);
    s.strip_suffix(":00").unwrap_or(s).to_string()
}

/// A value as a table cell: strings bare, null as `-`, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Asks `question` on the terminal, and whether the answer was yes.
pub fn confirm(question: &str) -> Result<bool, Failure> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| Failure::Usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_pad_each_column_to_its_widest_cell() {
        let t = table(
            &["ID", "NAME", "STATUS"],
            &[vec!["7".into(), "héllo wörld".into(), "running".into()], vec!["12".into(), "a\nb".into(), "-".into()]],
        );
        assert_eq!(t, "ID  NAME         STATUS\n7   héllo wörld  running\n12  a b          -\n");
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn datetimes_are_shortened_for_tables() {
        assert_eq!(when(&json!("2024-01-01 06:00:00+00:00")), "2024-01-01 06:00");
        assert_eq!(when(&json!("2024-01-01T06:00:00+00:00")), "2024-01-01 06:00");
        assert_eq!(when(&json!("2023-03-23 18:27:58.848959+00:00")), "2023-03-23 18:27:58");
        assert_eq!(when(&Value::Null), "-");
        assert_eq!((cell(&json!("x")), cell(&json!(3)), cell(&Value::Null)), ("x".into(), "3".into(), "-".into()));
    }

    #[test]
    fn a_refusal_exits_1_and_no_answer_or_bad_flags_exit_2() {
        let refused = Failure::from(CallError::Refused { status: 404, message: "backfill 9 not found".into() });
        assert_eq!(refused.status(), 1);
        assert!(refused.message().contains("backfill 9 not found"));
        assert_eq!(Failure::from(CallError::Conflict("no".into())).status(), 1);
        assert_eq!(Failure::from(CallError::Server { status: 503, message: "busy".into() }).status(), 1);
        let down = Failure::from(CallError::Unreachable { server: "http://x:1".into(), detail: "refused".into() });
        assert_eq!(down.status(), 2);
        assert!(down.message().contains("--server"));
        let auth = Failure::from(CallError::Refused { status: 401, message: "bad key".into() });
        assert!(auth.message().contains("backfilld login"), "{}", auth.message());
        assert_eq!(Failure::Usage("x".into()).status(), 2);
        assert_eq!(first_key(Some(" , k1,k2".into())).as_deref(), Some("k1"));
    }
}
