//! Run dates: which pipeline runs a backfill makes. Pure: no I/O, no clock, no SQL.
//!
//! Mage walks `d = start; while d <= end: emit d; d = d + step` (both ends included). For
//! `second`..`week` and `custom` the step is a fixed number of microseconds, so the count and
//! the k-th date are one division or multiplication away: constant time, whatever the span.
//! For `month` and `year` the step is calendar arithmetic on the *previous* date that clamps
//! the day to the month's length, so a clamped day sticks (Jan 31, Feb 28, Mar 28, ...). The
//! k-th month is again one multiplication; only its day needs the months stepped through,
//! and that search stops as soon as the day cannot change (see `clamped_day`): a dozen
//! steps in practice, never more than one per emitted date. Nothing here can overflow or
//! panic for any dates in the years 1 to 9999 and any `interval_units` up to `i64::MAX`
//! (all arithmetic is in i128).

use serde_json::{Map, Value};
use time::{Date, Month, PrimitiveDateTime};

use crate::domain::datetime::{self, DateTime};

const MICROS_PER_SECOND: i128 = 1_000_000;

/// An enum stored and sent as one fixed lowercase string per variant: `as_str`, `ALL`,
/// `Display`, and a `FromStr` whose error names the `$what` and the accepted strings.
/// Defined here, the lowest layer using it, so that `model` can use it too.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " '{}': expected one of {}"),
                        s,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// `interval_type` of a backfill.
    IntervalType("interval type") {
        Second => "second",
        Minute => "minute",
        Hour => "hour",
        Day => "day",
        Week => "week",
        Month => "month",
        Year => "year",
        /// `interval_units` seconds.
        Custom => "custom",
    }
);

impl IntervalType {
    /// The step of one unit: fixed seconds, or calendar months.
    fn unit(self) -> Unit {
        match self {
            IntervalType::Second | IntervalType::Custom => Unit::Seconds(1),
            IntervalType::Minute => Unit::Seconds(60),
            IntervalType::Hour => Unit::Seconds(3600),
            IntervalType::Day => Unit::Seconds(86_400),
            IntervalType::Week => Unit::Seconds(7 * 86_400),
            IntervalType::Month => Unit::Months(1),
            IntervalType::Year => Unit::Months(12),
        }
    }
}

enum Unit {
    Seconds(i128),
    Months(i128),
}

/// Why a schedule is refused. Each names the field a client has to change (`field`); the
/// message (`Display`) is what is wrong with it, worded to follow the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("must be at least 1, got {0}")]
    UnitsBelowOne(i64),
    #[error("{end} is before start_datetime {start}")]
    EndBeforeStart { start: String, end: String },
}

impl ScheduleError {
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::UnitsBelowOne(_) => "interval_units",
            ScheduleError::EndBeforeStart { .. } => "end_datetime",
        }
    }
}

/// The rule on `interval_units` alone: at least 1. `Schedule::new` applies it, and so does
/// `model` to a backfill whose other date settings are not all set yet.
pub fn check_units(units: i64) -> Result<(), ScheduleError> {
    if units < 1 {
        return Err(ScheduleError::UnitsBelowOne(units));
    }
    Ok(())
}

/// The rule on the two ends alone: the end is not before the start. Applied as `check_units`.
pub fn check_span(start: DateTime, end: DateTime) -> Result<(), ScheduleError> {
    if end < start {
        return Err(ScheduleError::EndBeforeStart {
            start: datetime::format_api(start),
            end: datetime::format_api(end),
        });
    }
    Ok(())
}

/// A valid run-date schedule: `start <= end` and `units >= 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start: DateTime,
    end: DateTime,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A fixed step, in microseconds (at least one second).
    Micros(i128),
    /// A calendar step, in months (at least one).
    Months(i128),
}

/// Months since year 0: a month index that steps by plain addition.
fn month_index(d: DateTime) -> i128 {
    i128::from(d.year()) * 12 + i128::from(u8::from(d.month())) - 1
}

/// The year and month of a month index; `None` outside the years 1 to 9999.
fn split_month_index(index: i128) -> Option<(i32, Month)> {
    let year = i32::try_from(index.div_euclid(12)).ok().filter(|y| (1..=9999).contains(y))?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    Some((year, month))
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Schedule {
    pub fn new(start: DateTime, end: DateTime, interval: IntervalType, units: i64) -> Result<Schedule, ScheduleError> {
        check_units(units)?;
        check_span(start, end)?;
        let units = i128::from(units);
        let step = match interval.unit() {
            Unit::Seconds(s) => Step::Micros(units * s * MICROS_PER_SECOND),
            Unit::Months(m) => Step::Months(units * m),
        };
        Ok(Schedule { start, end, step })
    }

    /// How many dates the schedule emits: Mage's `total_run_count`. At least 1.
    pub fn count(&self) -> u64 {
        match self.step {
            Step::Micros(step) => {
                let span = i128::from(datetime::to_micros(self.end) - datetime::to_micros(self.start));
                // span < 3.2e17 and step >= 1e6, so the quotient fits u64 comfortably.
                (span / step + 1) as u64
            }
            Step::Months(step) => {
                // Every k whose month is before the end's month is in; at most one more
                // date falls in the end's month itself, and its clamped day decides.
                let m0 = month_index(self.start);
                let span = month_index(self.end) - m0;
                let before = if span == 0 { 0 } else { (span - 1) / step + 1 };
                let in_end_month = span % step == 0 && self.calendar_date(span / step).is_some_and(|d| d <= self.end);
                (before + i128::from(in_end_month)) as u64
            }
        }
    }

    /// The day of month of the k-th calendar date: the start's day, clamped by every month
    /// stepped through on the way (the clamp sticks). Stops as soon as the day can no longer
    /// change: at 28, or once every month of the year the steps visit has been seen and
    /// none is February (whose length alone depends on the year). So it takes at most a
    /// dozen steps, except for steps of a multiple of four years from Feb 29, which visit
    /// leap Februaries until a century year: at most 9999 / 4 steps.
    fn clamped_day(&self, step: i128, k: i128) -> Option<u8> {
        let m0 = month_index(self.start);
        let period = 12 / gcd(step.rem_euclid(12), 12);
        let mut day = self.start.day();
        let mut seen_february = false;
        let mut j = 1;
        while j <= k && day > 28 {
            let (year, month) = split_month_index(m0.checked_add(step.checked_mul(j)?)?)?;
            seen_february |= month == Month::February;
            day = day.min(month.length(year));
            if j >= period && !seen_february {
                break;
            }
            j += 1;
        }
        Some(day)
    }

    /// The k-th date of a calendar schedule, whether or not it is past the end; `None`
    /// past the year 9999.
    fn calendar_date(&self, k: i128) -> Option<DateTime> {
        let Step::Months(step) = self.step else {
            return None;
        };
        let (year, month) = split_month_index(month_index(self.start).checked_add(step.checked_mul(k)?)?)?;
        let day = self.clamped_day(step, k)?;
        Some(PrimitiveDateTime::new(Date::from_calendar_date(year, month, day).ok()?, self.start.time()))
    }

    /// The k-th date (0-based), or `None` past the last.
    pub fn nth(&self, k: u64) -> Option<DateTime> {
        self.dates_from(k).next()
    }

    /// The dates from the k-th (0-based) on, in order. Positioning costs O(1) for fixed steps
    /// and one step per skipped month for calendar steps.
    pub fn dates_from(&self, k: u64) -> Dates {
        let state = match self.step {
            Step::Micros(step) => {
                let first = datetime::add_micros(self.start, step.saturating_mul(i128::from(k)));
                DatesState::Fixed { next: first, step }
            }
            Step::Months(step) => {
                let k = i128::from(k);
                // Past the year 9999 (or past i128) there is nothing left to emit.
                let position = month_index(self.start)
                    .checked_add(step.saturating_mul(k))
                    .zip(self.clamped_day(step, k))
                    .filter(|(month, _)| split_month_index(*month).is_some());
                match position {
                    Some((month, day)) => {
                        DatesState::Calendar { month, day, step, time: self.start.time(), started: false }
                    }
                    None => DatesState::Fixed { next: None, step: 1 },
                }
            }
        };
        Dates { end: self.end, state }
    }

    /// The run dates from the k-th (0-based) on, each with the variables Mage gives its run
    /// (see `RunDate`), streaming: memory stays constant however many there are. Positioning
    /// costs what `nth` does.
    pub fn run_dates_from(&self, k: u64) -> RunDates {
        RunDates {
            dates: self.dates_from(k).peekable(),
            prev: k.checked_sub(1).and_then(|p| self.nth(p)),
            single: self.nth(1).is_none(),
        }
    }

    /// The position (0-based) of `date` among the schedule's dates, or `None` when it is not
    /// one of them. O(1) for fixed steps; a calendar step checks its candidate with `nth`.
    pub fn index_of(&self, date: DateTime) -> Option<u64> {
        let k = match self.step {
            Step::Micros(step) => {
                let diff = i128::from(datetime::to_micros(date)) - i128::from(datetime::to_micros(self.start));
                if diff < 0 || diff % step != 0 {
                    return None;
                }
                u64::try_from(diff / step).ok()?
            }
            Step::Months(step) => {
                let months = month_index(date) - month_index(self.start);
                if months < 0 || months % step != 0 {
                    return None;
                }
                let k = u64::try_from(months / step).ok()?;
                if self.nth(k) != Some(date) {
                    return None;
                }
                k
            }
        };
        (k < self.count()).then_some(k)
    }

    /// The run dates `offset..offset + limit`: a preview page.
    pub fn run_dates(&self, offset: u64, limit: u64) -> Vec<RunDate> {
        self.run_dates_from(offset).take(usize::try_from(limit).unwrap_or(usize::MAX)).collect()
    }
}

/// Iterator over run dates with their neighbours; see `Schedule::run_dates_from`.
#[derive(Debug, Clone)]
pub struct RunDates {
    dates: std::iter::Peekable<Dates>,
    prev: Option<DateTime>,
    single: bool,
}

impl Iterator for RunDates {
    type Item = RunDate;

    fn next(&mut self) -> Option<RunDate> {
        let date = self.dates.next()?;
        let run_date = RunDate::new(date, self.prev, self.dates.peek().copied(), self.single);
        self.prev = Some(date);
        Some(run_date)
    }
}

/// Iterator over a schedule's dates; see `Schedule::dates_from`.
#[derive(Debug, Clone)]
pub struct Dates {
    end: DateTime,
    state: DatesState,
}

#[derive(Debug, Clone, Copy)]
enum DatesState {
    Fixed {
        next: Option<DateTime>,
        step: i128,
    },
    Calendar {
        month: i128,
        day: u8,
        step: i128,
        time: time::Time,
        /// Whether `month`/`day` were already emitted (the start is emitted first, unstepped).
        started: bool,
    },
}

impl Iterator for Dates {
    type Item = DateTime;

    fn next(&mut self) -> Option<DateTime> {
        match &mut self.state {
            DatesState::Fixed { next, step } => {
                let current = (*next).filter(|d| *d <= self.end)?;
                *next = datetime::add_micros(current, *step);
                Some(current)
            }
            DatesState::Calendar { month, day, step, time, started } => {
                if *started {
                    *month = month.checked_add(*step)?;
                    let (year, m) = split_month_index(*month)?;
                    *day = (*day).min(m.length(year));
                }
                *started = true;
                let (year, m) = split_month_index(*month)?;
                let date = PrimitiveDateTime::new(Date::from_calendar_date(year, m, *day).ok()?, *time);
                (date <= self.end).then_some(date)
            }
        }
    }
}

/// One run date and the variables Mage's backfill gives the run made for it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDate {
    pub execution_date: DateTime,
    /// The next date; for the last date, the date plus the previous gap.
    pub interval_end: Option<DateTime>,
    /// The gap to the next date (to the previous one for the last date), in seconds.
    pub interval_seconds: Option<f64>,
    /// The previous date; for the first date, the date minus the gap to the next one.
    pub interval_start_previous: Option<DateTime>,
}

impl RunDate {
    fn new(date: DateTime, prev: Option<DateTime>, next: Option<DateTime>, single: bool) -> RunDate {
        if single {
            return RunDate {
                execution_date: date,
                interval_end: None,
                interval_seconds: None,
                interval_start_previous: None,
            };
        }
        let micros = |a: DateTime, b: DateTime| i128::from(datetime::to_micros(b) - datetime::to_micros(a));
        // A schedule with two or more dates always has a neighbour on one side.
        let gap = match (prev, next) {
            (_, Some(n)) => micros(date, n),
            (Some(p), None) => micros(p, date),
            (None, None) => 0,
        };
        RunDate {
            execution_date: date,
            interval_end: next.or_else(|| datetime::add_micros(date, gap)),
            interval_seconds: Some(gap as f64 / MICROS_PER_SECOND as f64),
            interval_start_previous: prev.or_else(|| datetime::add_micros(date, -gap)),
        }
    }

    /// Appends `variables()` to `out` as JSON object members, without the braces, so that a
    /// start can write a hundred thousand of them without building maps.
    pub fn push_variables_json(&self, out: &mut String) {
        use std::fmt::Write;
        let push_opt = |out: &mut String, d: Option<DateTime>| match d {
            Some(d) => {
                out.push('"');
                datetime::push_iso(out, d);
                out.push('"');
            }
            None => out.push_str("null"),
        };
        let mut iso = String::with_capacity(datetime::MAX_LEN);
        datetime::push_iso(&mut iso, self.execution_date);
        out.push_str("\"ds\":\"");
        out.push_str(&iso[..10]);
        out.push_str("\",\"execution_date\":\"");
        out.push_str(&iso);
        out.push_str("\",\"hr\":\"");
        out.push_str(&iso[11..13]);
        out.push_str("\",\"interval_end_datetime\":");
        push_opt(out, self.interval_end);
        out.push_str(",\"interval_seconds\":");
        match self.interval_seconds {
            // serde_json writes floats as Python does here: 14400.0, 0.5.
            Some(seconds) => {
                let _ = write!(out, "{}", Value::from(seconds));
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"interval_start_datetime\":\"");
        out.push_str(&iso);
        out.push_str("\",\"interval_start_datetime_previous\":");
        push_opt(out, self.interval_start_previous);
    }

    /// The variables as Mage stores them on the run and shows them in `pipeline_run_dates`.
    pub fn variables(&self) -> Map<String, Value> {
        let iso = |d: Option<DateTime>| d.map_or(Value::Null, |d| Value::String(datetime::format_iso(d)));
        let d = self.execution_date;
        let mut map = Map::new();
        map.insert("ds".into(), format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()).into());
        map.insert("hr".into(), format!("{:02}", d.hour()).into());
        map.insert("execution_date".into(), iso(Some(d)));
        map.insert("interval_start_datetime".into(), iso(Some(d)));
        map.insert("interval_end_datetime".into(), iso(self.interval_end));
        map.insert("interval_seconds".into(), self.interval_seconds.map_or(Value::Null, Value::from));
        map.insert("interval_start_datetime_previous".into(), iso(self.interval_start_previous));
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;
    use IntervalType::*;

    fn sched(start: DateTime, end: DateTime, t: IntervalType, units: i64) -> Schedule {
        Schedule::new(start, end, t, units).unwrap()
    }

    /// One step of Mage's loop.
    fn mage_step(d: DateTime, t: IntervalType, units: i64) -> Option<DateTime> {
        match t.unit() {
            Unit::Seconds(s) => datetime::add_micros(d, i128::from(units) * s * MICROS_PER_SECOND),
            Unit::Months(m) => add_months_clamped(d, i128::from(units) * m),
        }
    }

    /// Mage's loop, literally, as the reference the fast paths must agree with.
    fn mage_walk(start: DateTime, end: DateTime, t: IntervalType, units: i64) -> Vec<DateTime> {
        let mut out = vec![];
        let mut d = Some(start);
        while let Some(current) = d.filter(|d| *d <= end) {
            out.push(current);
            d = mage_step(current, t, units);
        }
        out
    }

    /// dateutil's relativedelta(months=n): clamp the day to the target month's length.
    fn add_months_clamped(d: DateTime, months: i128) -> Option<DateTime> {
        let idx = month_index(d) + months;
        let year = i32::try_from(idx.div_euclid(12)).ok().filter(|y| *y <= 9999)?;
        let m = time::Month::try_from((idx.rem_euclid(12) + 1) as u8).ok()?;
        let day = d.day().min(m.length(year));
        Some(PrimitiveDateTime::new(Date::from_calendar_date(year, m, day).ok()?, d.time()))
    }

    #[test]
    fn the_seed_example_has_25_runs() {
        let s = sched(datetime!(2023-03-01 00:00), datetime!(2023-03-05 00:00), Hour, 4);
        assert_eq!(s.count(), 25);
        assert_eq!(s.nth(24), Some(datetime!(2023-03-05 00:00)));
        assert_eq!(s.nth(25), None);
    }

    #[test]
    fn a_single_date_when_start_equals_end() {
        for t in IntervalType::ALL {
            let s = sched(datetime!(2023-03-01 12:00), datetime!(2023-03-01 12:00), t, 1);
            assert_eq!(s.count(), 1, "{t}");
            assert_eq!(s.dates_from(0).collect::<Vec<_>>(), vec![datetime!(2023-03-01 12:00)]);
        }
    }

    #[test]
    fn both_ends_are_included_and_a_partial_step_is_not() {
        let s = sched(datetime!(2023-01-01 00:00), datetime!(2023-01-01 00:10), Minute, 5);
        assert_eq!(s.count(), 3);
        let s = sched(datetime!(2023-01-01 00:00), datetime!(2023-01-01 00:09:59.999999), Minute, 5);
        assert_eq!(s.count(), 2);
        let s = sched(datetime!(2023-01-01 00:00), datetime!(2023-01-01 00:00:10), Custom, 3);
        assert_eq!(s.count(), 4);
        let s = sched(datetime!(2023-01-01 00:00), datetime!(2023-01-29 00:00), Week, 2);
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn monthly_from_jan_31_clamps_and_the_clamp_sticks() {
        let s = sched(datetime!(2023-01-31 06:00), datetime!(2023-05-31 06:00), Month, 1);
        let dates: Vec<_> = s.dates_from(0).collect();
        assert_eq!(
            dates,
            vec![
                datetime!(2023-01-31 06:00),
                datetime!(2023-02-28 06:00),
                datetime!(2023-03-28 06:00),
                datetime!(2023-04-28 06:00),
                datetime!(2023-05-28 06:00),
            ]
        );
        let leap = sched(datetime!(2024-01-31 00:00), datetime!(2024-03-31 00:00), Month, 1);
        assert_eq!(leap.nth(1), Some(datetime!(2024-02-29 00:00)));
        assert_eq!(leap.nth(2), Some(datetime!(2024-03-29 00:00)));
    }

    #[test]
    fn yearly_from_feb_29_stays_on_feb_28() {
        let s = sched(datetime!(2024-02-29 00:00), datetime!(2032-03-01 00:00), Year, 1);
        let dates: Vec<_> = s.dates_from(0).collect();
        assert_eq!(dates.len(), 9);
        assert_eq!(dates[1], datetime!(2025-02-28 00:00));
        assert_eq!(dates[4], datetime!(2028-02-28 00:00));
        let every_four = sched(datetime!(2024-02-29 00:00), datetime!(2032-02-29 00:00), Year, 4);
        assert_eq!(every_four.dates_from(0).count(), 3);
        assert_eq!(every_four.nth(2), Some(datetime!(2032-02-29 00:00)));
    }

    #[test]
    fn calendar_steps_from_month_ends_agree_with_mage_everywhere() {
        // The clamp search's early exits, checked against the literal walk: month ends and
        // Feb 29 as starts, steps of 1 to 60 months and of 1 to 401 years (4-year multiples
        // from Feb 29 visit only leap Februaries until a century year).
        let starts = [
            datetime!(2000-02-29 06:00),
            datetime!(1996-02-29 00:00),
            datetime!(2023-01-31 00:00),
            datetime!(2023-01-30 00:00),
            datetime!(2023-01-29 00:00),
            datetime!(2023-03-31 12:00),
            datetime!(2023-08-31 00:00),
            datetime!(2024-12-31 00:00),
        ];
        let end = datetime!(2800-03-01 00:00);
        for start in starts {
            for (t, max_units) in [(Month, 60), (Year, 401)] {
                for units in 1..=max_units {
                    let s = sched(start, end, t, units);
                    let reference = mage_walk(start, end, t, units);
                    assert_eq!(s.count(), reference.len() as u64, "{start} {t} {units}");
                    for k in [0, 1, reference.len() / 2, reference.len() - 1] {
                        assert_eq!(s.nth(k as u64), Some(reference[k]), "{start} {t} {units} #{k}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_clamped_date_past_the_end_day_is_still_counted_in_the_end_month() {
        // Jan 31 + 1 month = Feb 28, which is before an end of Feb 28 12:00.
        let s = sched(datetime!(2023-01-31 00:00), datetime!(2023-02-28 12:00), Month, 1);
        assert_eq!(s.count(), 2);
        let s = sched(datetime!(2023-01-31 13:00), datetime!(2023-02-28 12:00), Month, 1);
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn extreme_units_and_spans_do_not_overflow() {
        let first = datetime!(0001-01-01 00:00);
        let last = datetime!(9999-12-31 23:59:59.999999);
        for t in IntervalType::ALL {
            let s = sched(first, last, t, i64::MAX);
            assert_eq!(s.count(), 1, "{t}");
            assert_eq!(s.nth(1), None);
            assert_eq!(s.nth(u64::MAX), None);
            assert_eq!(s.run_dates(u64::MAX, u64::MAX), vec![]);
        }
        let s = sched(first, last, Second, 1);
        assert_eq!(s.count(), 315_537_897_600);
        assert_eq!(s.nth(315_537_897_599), Some(datetime!(9999-12-31 23:59:59)));
        let months = sched(first, last, Month, 1);
        assert_eq!(months.count(), 9999 * 12);
        assert_eq!(months.nth(9999 * 12 - 1), Some(datetime!(9999-12-01 00:00)));
        let s = sched(datetime!(9999-12-31 00:00), datetime!(9999-12-31 00:00), Day, 1);
        assert_eq!(s.run_dates(0, 10).len(), 1);
    }

    #[test]
    fn invalid_schedules_are_refused_with_the_field() {
        let a = datetime!(2023-01-02 00:00);
        let b = datetime!(2023-01-01 00:00);
        assert_eq!(Schedule::new(b, a, Hour, 0).unwrap_err().field(), "interval_units");
        assert_eq!(Schedule::new(b, a, Hour, i64::MIN).unwrap_err().field(), "interval_units");
        assert_eq!(Schedule::new(a, b, Hour, 1).unwrap_err().field(), "end_datetime");
        assert!("fortnight".parse::<IntervalType>().is_err());
        assert!("Hour".parse::<IntervalType>().is_err());
        assert_eq!("week".parse::<IntervalType>(), Ok(Week));
    }

    #[test]
    fn run_date_variables_follow_mage() {
        let s = sched(datetime!(2023-03-01 00:00), datetime!(2023-03-05 00:00), Hour, 4);
        let all = s.run_dates(0, 100);
        assert_eq!(all.len(), 25);
        let first = Value::Object(all[0].variables());
        assert_eq!(
            first,
            serde_json::json!({
                "ds": "2023-03-01",
                "hr": "00",
                "execution_date": "2023-03-01T00:00:00+00:00",
                "interval_start_datetime": "2023-03-01T00:00:00+00:00",
                "interval_end_datetime": "2023-03-01T04:00:00+00:00",
                "interval_seconds": 14400.0,
                "interval_start_datetime_previous": "2023-02-28T20:00:00+00:00",
            })
        );
        let last = all[24].variables();
        assert_eq!(last["interval_end_datetime"], "2023-03-05T04:00:00+00:00");
        assert_eq!(last["interval_start_datetime_previous"], "2023-03-04T20:00:00+00:00");
        // A page in the middle sees the same values as the whole list.
        assert_eq!(s.run_dates(10, 5), all[10..15].to_vec());
        assert_eq!(s.run_dates(24, 5), all[24..].to_vec());
        assert_eq!(s.run_dates(25, 5), vec![]);
        assert_eq!(s.run_dates(3, 0), vec![]);
    }

    #[test]
    fn streaming_run_dates_match_the_paged_ones() {
        for (t, units) in [(Hour, 4), (Month, 1), (Week, 3)] {
            let s = sched(datetime!(2023-01-31 00:00), datetime!(2024-03-05 00:00), t, units);
            let streamed: Vec<RunDate> = s.run_dates_from(0).collect();
            assert_eq!(streamed, s.run_dates(0, u64::MAX));
            assert_eq!(streamed.len() as u64, s.count());
        }
    }

    #[test]
    fn variables_written_as_text_parse_back_to_the_same_map() {
        let cases = [
            sched(datetime!(2023-03-01 00:00), datetime!(2023-03-05 00:00), Hour, 4),
            sched(datetime!(2023-01-31 00:00:00.25), datetime!(2023-04-01 00:00), Month, 1),
            sched(datetime!(2023-03-01 07:00), datetime!(2023-03-01 07:00), Day, 1),
        ];
        for s in cases {
            for rd in s.run_dates(0, 100) {
                let mut text = String::from("{");
                rd.push_variables_json(&mut text);
                text.push('}');
                let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
                assert_eq!(parsed, rd.variables(), "{text}");
            }
        }
    }

    #[test]
    fn a_single_run_date_has_no_gap_values() {
        let s = sched(datetime!(2023-03-01 07:00), datetime!(2023-03-01 07:30), Hour, 1);
        let v = s.run_dates(0, 10)[0].variables();
        assert_eq!(v["hr"], "07");
        assert_eq!(v["interval_end_datetime"], Value::Null);
        assert_eq!(v["interval_seconds"], Value::Null);
        assert_eq!(v["interval_start_datetime_previous"], Value::Null);
    }

    #[test]
    fn monthly_gaps_are_the_real_calendar_gaps() {
        let s = sched(datetime!(2023-01-31 00:00), datetime!(2023-03-31 00:00), Month, 1);
        let rd = s.run_dates(0, 3);
        assert_eq!(rd[0].interval_seconds, Some(28.0 * 86_400.0));
        assert_eq!(rd[1].interval_end, Some(datetime!(2023-03-28 00:00)));
        assert_eq!(rd[2].interval_end, Some(datetime!(2023-04-25 00:00)));
    }

    fn arb_datetime(max_years: i32) -> impl Strategy<Value = DateTime> {
        (1i32..=max_years, 1u8..=12, 1u8..=31, 0u8..24, 0u8..60, 0u8..60, prop_oneof![Just(0u32), 0u32..1_000_000])
            .prop_map(|(y, m, d, h, mi, s, us)| {
                let month = time::Month::try_from(m).unwrap();
                let day = d.min(month.length(y));
                PrimitiveDateTime::new(
                    Date::from_calendar_date(y, month, day).unwrap(),
                    time::Time::from_hms_micro(h, mi, s, us).unwrap(),
                )
            })
    }

    fn arb_interval() -> impl Strategy<Value = IntervalType> {
        proptest::sample::select(IntervalType::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn count_equals_the_number_of_generated_dates(
            start in arb_datetime(9999),
            t in arb_interval(),
            units in 1i64..40,
            span_steps in 0u32..300,
            extra in 0i64..1_000_000_000,
        ) {
            // An end a few hundred steps away, so that the reference walk stays short.
            let span = match t.unit() {
                Unit::Seconds(s) => i128::from(span_steps) * i128::from(units) * s * MICROS_PER_SECOND + i128::from(extra),
                Unit::Months(m) => i128::from(span_steps) * i128::from(units) * m * 31 * 86_400 * MICROS_PER_SECOND / 12 + i128::from(extra),
            };
            let end = datetime::add_micros(start, span).unwrap_or(datetime!(9999-12-31 23:59:59.999999));
            let s = Schedule::new(start, end, t, units).unwrap();
            let reference = mage_walk(start, end, t, units);
            prop_assert_eq!(s.count(), reference.len() as u64);
            prop_assert_eq!(s.dates_from(0).collect::<Vec<_>>(), reference.clone());
            let k = u64::from(span_steps / 2);
            prop_assert_eq!(s.nth(k), reference.get(k as usize).copied());
        }

        #[test]
        fn pages_of_run_dates_agree_with_the_whole_list(
            start in arb_datetime(9998),
            t in arb_interval(),
            units in 1i64..5,
            n in 0u32..40,
            offset in 0u64..45,
            limit in 0u64..45,
        ) {
            // The n-th date after the start, or the last one before the year 10000.
            let mut end = start;
            for _ in 0..n {
                match mage_step(end, t, units) {
                    Some(next) => end = next,
                    None => break,
                }
            }
            let s = Schedule::new(start, end, t, units).unwrap();
            let all = s.run_dates(0, u64::MAX);
            prop_assert_eq!(all.len() as u64, s.count());
            for (k, rd) in all.iter().enumerate() {
                prop_assert_eq!(s.index_of(rd.execution_date), Some(k as u64));
                if let Some(between) = datetime::add_micros(rd.execution_date, 1) {
                    prop_assert_eq!(s.index_of(between), None);
                }
            }
            if let Some(before) = datetime::add_micros(start, -1) {
                prop_assert_eq!(s.index_of(before), None);
            }
            let page = s.run_dates(offset, limit);
            let want: Vec<_> = all.iter().skip(offset as usize).take(limit as usize).cloned().collect();
            prop_assert_eq!(page, want);
        }
    }

    proptest! {
        // Month and year steps over the whole calendar walk up to 120,000 months per call.
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_valid_input_counts_without_panicking(
            start in arb_datetime(9999),
            end in arb_datetime(9999),
            t in arb_interval(),
            units in prop_oneof![1i64..1000, Just(i64::MAX), 1i64..=i64::MAX],
        ) {
            let (start, end) = if start <= end { (start, end) } else { (end, start) };
            let s = Schedule::new(start, end, t, units).unwrap();
            let count = s.count();
            prop_assert!(count >= 1);
            prop_assert_eq!(s.nth(count - 1).is_some(), true);
            prop_assert_eq!(s.nth(count), None);
        }
    }
}
