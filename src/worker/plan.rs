//! The worker's pure parts: its flags' values (durations, ranges, rates), a simulated run's
//! outcome, the environment a command gets, the output tail it keeps, and the backoff it
//! waits. No I/O here.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

/// How much of a command's output (standard output and error, as they interleave) a run's
/// metrics keep: the end of it.
pub const TAIL_BYTES: usize = 4096;

/// A duration: a number and a unit, `ms`, `s`, `m` or `h` (`1.5s`, `500ms`, `2m`); a bare
/// `0` is zero. At most a week.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration: write a number and a unit, e.g. 500ms, 2s, 1.5m or 1h");
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(0.0..=7.0 * 86400.0).contains(&seconds) {
        return Err(format!("'{s}' is longer than a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A simulated run's duration: from `low` to `high`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub low: Duration,
    pub high: Duration,
}

/// `LOW..HIGH` (`2s..10s`), or one duration for exactly that long.
pub fn parse_span(s: &str) -> Result<Span, String> {
    let (low, high) = match s.split_once("..") {
        Some((low, high)) => (parse_duration(low)?, parse_duration(high)?),
        None => {
            let d = parse_duration(s)?;
            (d, d)
        }
    };
    if low > high {
        return Err(format!("'{s}': the shortest duration comes first (LOW..HIGH)"));
    }
    Ok(Span { low, high })
}

/// A probability: a number from 0 to 1 (`0.1`), or a percentage (`10%`).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a rate: a number from 0 to 1 (0.1) or a percentage (10%)");
    let rate = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => t.parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&rate) {
        return Err(bad());
    }
    Ok(rate)
}

/// What a simulated run does: how long it takes and whether it fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulated {
    pub duration: Duration,
    pub fails: bool,
}

/// The outcome of the simulated run of `backfill`'s date `date` (as the API writes it), its
/// `attempt`-th run: a function of these and `seed` alone, so that the same seed on the same
/// data gives the same outcomes whatever the timing, the concurrency or the worker.
pub fn simulate(seed: u64, backfill: Option<i64>, date: &str, attempt: i64, span: Span, fail_rate: f64) -> Simulated {
    let mut h = Mix::new(seed);
    h.add(&backfill.unwrap_or(-1).to_le_bytes());
    h.add(date.as_bytes());
    h.add(&attempt.to_le_bytes());
    let (a, b) = (h.next(), h.next());
    let unit = |x: u64| (x >> 11) as f64 / (1u64 << 53) as f64;
    let extra = (span.high - span.low).as_secs_f64() * unit(a);
    Simulated { duration: span.low + Duration::from_secs_f64(extra), fails: unit(b) < fail_rate }
}

/// SplitMix64 over the bytes fed to it: small, fast, and the same on every platform.
struct Mix(u64);

impl Mix {
    fn new(seed: u64) -> Mix {
        Mix(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn add(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
            self.next();
        }
        self.0 ^= bytes.len() as u64;
        self.next();
    }

    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
}

/// One step of SplitMix64 over `state`: the next value (the bench's data generator uses it
/// too).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The environment variable a run variable `name` becomes: `BACKFILL_` and the name in upper
/// case, or none when that cannot name an environment variable (only ASCII letters, digits
/// and `_` can).
pub fn env_name(name: &str) -> Option<String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| format!("BACKFILL_{}", name.to_ascii_uppercase()))
}

/// A variable's value as an environment variable: a string as it is, null as empty, a whole
/// number as an integer (`interval_seconds` comes as `14400.0`, which shell arithmetic
/// refuses), any other value as its JSON text.
pub fn env_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The environment of a run's command: each of its variables (see `env_name`; a value with
/// a NUL byte cannot be passed and is skipped too), then `BACKFILL_ID`, `PIPELINE_RUN_ID`,
/// `PIPELINE_UUID` and `BACKFILL_ATTEMPT`, which win over a variable of the same name.
pub fn run_env(run: &Value) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![];
    if let Some(vars) = run["variables"].as_object() {
        for (name, value) in vars {
            let value = env_value(value);
            if let Some(name) = env_name(name).filter(|_| !value.contains('\0')) {
                env.push((name, value));
            }
        }
    }
    let text = |v: &Value| if v.is_null() { String::new() } else { env_value(v) };
    let fixed = [
        ("BACKFILL_ID", text(&run["backfill_id"])),
        ("PIPELINE_RUN_ID", text(&run["id"])),
        ("PIPELINE_UUID", text(&run["pipeline_uuid"])),
        ("BACKFILL_ATTEMPT", text(&run["attempt"])),
    ];
    env.retain(|(name, _)| !fixed.iter().any(|(f, _)| f == name));
    env.extend(fixed.into_iter().map(|(name, value)| (name.to_string(), value)));
    env
}

/// The last `TAIL_BYTES` bytes written to it.
#[derive(Debug, Default)]
pub struct Tail {
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let over = self.bytes.len().saturating_sub(TAIL_BYTES);
        self.bytes.drain(..over);
        self.dropped += over as u64;
    }

    /// The tail as text (invalid UTF-8, such as a character cut at the start, replaced), and
    /// how many bytes came before it.
    pub fn text(&self) -> (String, u64) {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        (String::from_utf8_lossy(&bytes).into_owned(), self.dropped)
    }
}

/// How long to wait before the `n`-th retry (0 first) of a call the server did not answer:
/// 0.25 s doubling to at most 8 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << n.min(5)))
}

/// How long to wait before asking again after `n` claims in a row came back empty (0
/// first): 0.1 s doubling to at most 2 s, so a fresh backfill is picked up soon and an idle
/// worker costs the server a request every 2 s.
pub fn idle_wait(n: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << n.min(5)).min(2000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "2", "s", "2x", "-1s", "1e3s", "two s", "8d", "200h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_are_low_then_high() {
        let s = |l, h| Span { low: Duration::from_secs(l), high: Duration::from_secs(h) };
        assert_eq!(parse_span("2s..10s"), Ok(s(2, 10)));
        assert_eq!(parse_span("3s"), Ok(s(3, 3)));
        assert_eq!(parse_span("0s..0s"), Ok(s(0, 0)));
        assert!(parse_span("10s..2s").is_err());
        assert!(parse_span("2s..").is_err());
    }

    #[test]
    fn rates_are_fractions_or_percentages() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate("10%"), Ok(0.1));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "110%", "x", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_simulated_outcome_depends_on_its_inputs_alone() {
        let span = Span { low: Duration::from_secs(2), high: Duration::from_secs(10) };
        let a = simulate(7, Some(1), "2024-03-01T00:00:00+00:00", 1, span, 0.3);
        assert_eq!(a, simulate(7, Some(1), "2024-03-01T00:00:00+00:00", 1, span, 0.3));
        assert!(a.duration >= span.low && a.duration <= span.high);
        // Over many dates: about the rate fails, and durations spread over the span.
        let outcomes: Vec<Simulated> = (0..2000).map(|d| simulate(7, Some(1), &d.to_string(), 1, span, 0.3)).collect();
        let failed = outcomes.iter().filter(|o| o.fails).count();
        assert!((500..700).contains(&failed), "{failed} of 2000 failed at a rate of 0.3");
        let short = outcomes.iter().filter(|o| o.duration < Duration::from_secs(6)).count();
        assert!((900..1100).contains(&short), "{short} of 2000 under the middle of the span");
        // Another seed, attempt or backfill gives other outcomes.
        let by = |seed, b, attempt| (0..200).map(move |d| simulate(seed, Some(b), &d.to_string(), attempt, span, 0.3));
        let same = |x: Vec<Simulated>, y: Vec<Simulated>| x == y;
        assert!(!same(by(7, 1, 1).collect(), by(8, 1, 1).collect()));
        assert!(!same(by(7, 1, 1).collect(), by(7, 1, 2).collect()));
        assert!(!same(by(7, 1, 1).collect(), by(7, 2, 1).collect()));
        // The edges of the rate.
        assert!((0..200).all(|d| !simulate(7, Some(1), &d.to_string(), 1, span, 0.0).fails));
        assert!((0..200).all(|d| simulate(7, Some(1), &d.to_string(), 1, span, 1.0).fails));
    }

    #[test]
    fn run_variables_become_backfill_environment_variables() {
        let run = json!({
            "id": 41, "backfill_id": 3, "pipeline_uuid": "etl", "attempt": 2,
            "variables": {
                "ds": "2024-03-01", "hr": "04", "interval_seconds": 14400.0, "ratio": 0.5, "flag": true, "none": null,
                "with space": "skipped", "dash-ed": "skipped", "": "skipped", "nul": "a\u{0}b",
                "backfill_id": "overridden", "région": "skipped"
            }
        });
        let env = run_env(&run);
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("BACKFILL_DS"), Some("2024-03-01"));
        assert_eq!(get("BACKFILL_HR"), Some("04"));
        assert_eq!(get("BACKFILL_INTERVAL_SECONDS"), Some("14400"));
        assert_eq!(get("BACKFILL_RATIO"), Some("0.5"));
        assert_eq!(get("BACKFILL_FLAG"), Some("true"));
        assert_eq!(get("BACKFILL_NONE"), Some(""));
        assert_eq!(get("BACKFILL_ID"), Some("3"));
        assert_eq!(get("PIPELINE_RUN_ID"), Some("41"));
        assert_eq!(get("PIPELINE_UUID"), Some("etl"));
        assert_eq!(get("BACKFILL_ATTEMPT"), Some("2"));
        assert_eq!(get("BACKFILL_NUL"), None);
        assert!(env.iter().all(|(k, _)| k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')));
        assert_eq!(env.iter().filter(|(k, _)| k == "BACKFILL_ID").count(), 1);
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.text(), ("hello world".to_string(), 0));
        t.push(&vec![b'x'; TAIL_BYTES]);
        let (text, dropped) = t.text();
        assert_eq!(text.len(), TAIL_BYTES);
        assert_eq!(dropped, 11);
        t.push("é".as_bytes());
        assert!(t.text().0.ends_with('é'));
    }

    /// The server takes at most 64 KiB of JSON in a run's `metrics`: the tail, the most of a
    /// report's metrics, takes at most six bytes of JSON per byte (a control byte as
    /// `\u0001`), whatever the command wrote.
    #[test]
    fn the_tails_json_stays_far_below_what_a_report_may_carry() {
        let mut t = Tail::default();
        t.push(&[1u8; 2 * TAIL_BYTES]);
        let json = serde_json::to_string(&t.text().0).unwrap();
        assert!(json.len() <= 6 * TAIL_BYTES + 2 && 6 * TAIL_BYTES + 2 < 64 << 10, "{}", json.len());
        t.push(&[0xff; TAIL_BYTES]);
        assert!(serde_json::to_string(&t.text().0).unwrap().len() <= 3 * TAIL_BYTES + 2);
    }

    #[test]
    fn waits_grow_and_stop_growing() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_secs(8));
        assert_eq!(idle_wait(0), Duration::from_millis(100));
        assert_eq!(idle_wait(30), Duration::from_secs(2));
    }
}
