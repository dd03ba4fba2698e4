//! Tests that cannot run here (no Chromium, no Python venv) say so in the summary.
//!
//! libtest has no way for a test to skip itself at run time: a test that returns early is
//! reported `ok` like one that checked everything. So a skipping test calls `skip`, which
//! records its name and the reason, and the list is written to standard output when the
//! test binary exits, after libtest's own summary:
//!
//! ```text
//! test result: ok. 128 passed; 0 failed; ...
//!
//! SKIPPED 2 of the tests counted as passed above: they checked nothing here.
//!   browser::an_empty_database_...: no chromium or chromedriver on the PATH (install ...)
//! ```
//!
//! In CI (`CI` set, as `.ci/run` runs) nothing may be skipped: `skip` fails the test instead.

use std::sync::{Mutex, Once};

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records that the calling test did not run, and why (with what to install); fails it in
/// CI, where everything it needs must be there.
#[track_caller]
pub fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI cannot skip this test: {why}");
    // libtest runs each test on a thread named after it.
    let name = std::thread::current().name().unwrap_or("a test").to_string();
    eprintln!("skipping {name}: {why}");
    SKIPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{name}: {why}"));
    static REGISTER: Once = Once::new();
    // SAFETY: atexit takes a function to call at exit, which `report` is; it is registered
    // once.
    REGISTER.call_once(|| assert_eq!(unsafe { libc::atexit(report) }, 0, "atexit refused the skip report"));
}

/// Writes the skipped tests to standard output: called by `exit`, after libtest has printed
/// its summary (and whether the run failed or not).
extern "C" fn report() {
    let skipped = SKIPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text =
        format!("\nSKIPPED {} of the tests counted as passed above: they checked nothing here.\n", skipped.len());
    let mut lines = skipped.clone();
    lines.sort();
    for line in lines {
        text.push_str(&format!("  {line}\n"));
    }
    text.push('\n');
    // Straight to the file descriptor: Rust's standard output may already be torn down, and
    // libtest's capture of a test's output does not reach here.
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes bytes of a live buffer, within its length, to standard output.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}
