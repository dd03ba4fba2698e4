//! `eventually`: the one way the tests wait. A test that needs something to have happened
//! (a lease to expire, a page to redraw, a process to end) polls for it until a generous
//! deadline, rather than sleeping a fixed time and asserting: on a busy machine a fixed
//! sleep is too short, and on an idle one it is time wasted. Shared with examples/bench.rs
//! through tests/api/webdriver.rs (`#[path]`), so it depends on nothing else of the tests.

use std::time::{Duration, Instant};

/// How long any wait may take before the test fails: long enough that only a hang (or a
/// condition that never comes) reaches it on a slow, busy machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What a poll says: done (with a value), or not yet (with what it sees, for the message).
pub trait Poll {
    type Value;
    fn done(self) -> Result<Self::Value, String>;
}

impl Poll for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl<T> Poll for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

/// Not yet, with what the poll sees now (the failure message shows the last).
impl<T> Poll for Result<T, String> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self
    }
}

/// Polls `check` (at once, then every 10 ms growing to 100 ms) until it is done, and returns
/// its value; past `DEADLINE`, fails the test saying what was waited for and what the last
/// poll saw.
#[track_caller]
pub fn eventually<P: Poll>(what: &str, mut check: impl FnMut() -> P) -> P::Value {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let seen = match check().done() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if started.elapsed() > DEADLINE {
            let seen = if seen.is_empty() { String::new() } else { format!("; the last check saw: {seen}") };
            panic!("waited {DEADLINE:?} for {what}, in vain{seen}");
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(100));
    }
}
