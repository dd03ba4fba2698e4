//! Measures `total_run_count` where Mage would enumerate: a one-second interval over 100
//! years (3.2 billion runs) against one hour over one day (25 runs), and the calendar's worst
//! case, monthly over years 1 to 9999. Prints nanoseconds per count and each as a ratio to
//! the one-hour baseline, measured in the same run (machines here are shared and noisy).
//!
//!     cargo run --release --example run_count_bench

use std::hint::black_box;
use std::time::Instant;

use backfilld::domain::model::BackfillFields;
use backfilld::domain::schedule::IntervalType;
use time::macros::datetime;

fn fields(start: time::PrimitiveDateTime, end: time::PrimitiveDateTime, t: IntervalType) -> BackfillFields {
    BackfillFields {
        name: "bench".into(),
        block_uuid: None,
        start_datetime: Some(start),
        end_datetime: Some(end),
        interval_type: Some(t),
        interval_units: Some(1),
        variables: None,
        settings: None,
    }
}

/// Median nanoseconds per call over `rounds` rounds of `iters` calls.
fn measure(f: &BackfillFields, iters: u32, rounds: usize) -> (f64, u64) {
    let mut per_call = Vec::with_capacity(rounds);
    let mut count = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            count = black_box(black_box(f).total_run_count().unwrap());
        }
        per_call.push(t.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    per_call.sort_by(f64::total_cmp);
    (per_call[rounds / 2], count)
}

fn main() {
    let cases = [
        (
            "one hour over one day (baseline)",
            fields(datetime!(2023-03-01 00:00), datetime!(2023-03-02 00:00), IntervalType::Hour),
            200_000,
        ),
        (
            "one second over 100 years",
            fields(datetime!(1925-01-01 00:00), datetime!(2024-12-31 23:59:59), IntervalType::Second),
            200_000,
        ),
        (
            "one minute over one year (Mage: 8 s)",
            fields(datetime!(2023-01-01 00:00), datetime!(2023-12-31 23:59), IntervalType::Minute),
            200_000,
        ),
        (
            "one month over years 1-9999 (clamp search)",
            fields(datetime!(0001-01-31 00:00), datetime!(9999-12-31 00:00), IntervalType::Month),
            20,
        ),
    ];
    let rounds = 21;
    let mut baseline = None;
    println!("{:<40} {:>16} {:>14} {:>10}", "case", "runs", "ns per count", "ratio");
    for (name, f, iters) in cases {
        let (ns, count) = measure(&f, iters, rounds);
        let base = *baseline.get_or_insert(ns);
        println!("{name:<40} {count:>16} {ns:>14.1} {:>9.2}x", ns / base);
    }
}
