//! Datetimes on the wire and in the database. Pure but for `now`, where every time the data
//! holds comes from: the layers above take theirs from there, or are given it.
//!
//! Every datetime backfilld holds is UTC, kept as a `time::PrimitiveDateTime` (the offset is
//! implied) between the years 1 and 9999, with microsecond resolution, as Mage's Python
//! datetimes have. The database stores microseconds since the Unix epoch (`to_micros`).
//! Requests may spell a datetime several ways (`parse`); answers use Python's `str()` of an
//! aware datetime (`format_api`) or its `isoformat()` (`format_iso`), see docs/api.md.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A UTC datetime with microsecond resolution, years 1 to 9999.
pub type DateTime = PrimitiveDateTime;

/// The current time as a UTC datetime, truncated to microseconds like every stored one.
pub fn now() -> DateTime {
    let now = OffsetDateTime::now_utc();
    let now = PrimitiveDateTime::new(now.date(), now.time());
    now.replace_nanosecond(now.microsecond() * 1000).unwrap_or(now)
}

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Why a datetime string was refused; the caller adds which field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

fn err<T>(input: &str) -> Result<T, ParseError> {
    Err(ParseError(format!(
        "'{input}' is not a datetime: expected e.g. 2023-03-01T00:00:00Z, \
         2023-03-01 00:00:00+00:00, 2023-03-01 00:00:00 (UTC) or 2023-03-01, years 1 to 9999"
    )))
}

/// A cursor over the bytes of the input, for the hand-written grammar below.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(slice.iter().fold(0, |acc, b| acc * 10 + u32::from(b - b'0')))
    }

    fn eat(&mut self, options: &[u8]) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if options.contains(&b) {
            self.pos += 1;
            Some(b)
        } else {
            None
        }
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// Parses the request forms of Mage's API (docs/api.md): RFC 3339 (`2023-03-01T00:00:00Z`,
/// `...+05:30`), the space-separated form answers use, a naive datetime (taken as UTC), and
/// a bare date (midnight UTC). Seconds and a fraction are optional; digits past the
/// microsecond are dropped, as Python's `fromisoformat` does. The result is converted to UTC.
pub fn parse(input: &str) -> Result<DateTime, ParseError> {
    let trimmed = input.trim();
    let mut s = Scanner { bytes: trimmed.as_bytes(), pos: 0 };
    let Some(parsed) = parse_parts(&mut s) else {
        return err(input);
    };
    let (naive, offset_seconds) = parsed;
    let micros = to_micros(naive) - i64::from(offset_seconds) * MICROS_PER_SECOND;
    from_micros(micros).ok_or_else(|| ParseError(format!("'{input}' is outside the years 1 to 9999")))
}

fn parse_parts(s: &mut Scanner) -> Option<(DateTime, i32)> {
    let year = s.digits(4)?;
    s.eat(b"-")?;
    let month = s.digits(2)?;
    s.eat(b"-")?;
    let day = s.digits(2)?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    if year == 0 {
        return None;
    }
    if s.done() {
        return Some((date.midnight(), 0));
    }
    s.eat(b"Tt ")?;
    let hour = s.digits(2)?;
    s.eat(b":")?;
    let minute = s.digits(2)?;
    let mut second = 0;
    let mut micro = 0;
    if s.eat(b":").is_some() {
        second = s.digits(2)?;
        if s.eat(b".,").is_some() {
            let start = s.pos;
            let mut scale = 100_000;
            while s.pos - start < 9 {
                let Some(d) = s.digits(1) else { break };
                micro += d * scale;
                scale /= 10;
            }
            if s.pos == start {
                return None;
            }
        }
    }
    let time =
        Time::from_hms_micro(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, u8::try_from(second).ok()?, micro)
            .ok()?;
    let offset = if s.done() || s.eat(b"Zz").is_some() {
        0
    } else {
        let sign = if s.eat(b"+-")? == b'-' { -1 } else { 1 };
        let oh = s.digits(2)?;
        s.eat(b":");
        let om = if s.done() { 0 } else { s.digits(2)? };
        if oh > 23 || om > 59 {
            return None;
        }
        sign * i32::try_from(oh * 3600 + om * 60).ok()?
    };
    if !s.done() {
        return None;
    }
    Some((PrimitiveDateTime::new(date, time), offset))
}

/// Microseconds since 1970-01-01 00:00:00 UTC: the database representation.
pub fn to_micros(dt: DateTime) -> i64 {
    // Years 1..=9999 span about 3.2e17 microseconds, well inside i64. Whole seconds and
    // the microsecond field rather than nanoseconds: i128 division is slow, and a listing
    // converts a few hundred of these per request.
    dt.assume_utc().unix_timestamp() * MICROS_PER_SECOND + i64::from(dt.microsecond())
}

/// The inverse of `to_micros`; `None` outside the years 1 to 9999.
pub fn from_micros(micros: i64) -> Option<DateTime> {
    let seconds = micros.div_euclid(MICROS_PER_SECOND);
    let micro = micros.rem_euclid(MICROS_PER_SECOND) as u32;
    let odt = OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    let dt = PrimitiveDateTime::new(odt.date(), odt.time()).replace_microsecond(micro).ok()?;
    (1..=9999).contains(&dt.year()).then_some(dt)
}

/// `datetime + micros`, or `None` when the result leaves the years 1 to 9999.
pub fn add_micros(dt: DateTime, micros: i128) -> Option<DateTime> {
    let total = i128::from(to_micros(dt)).checked_add(micros)?;
    from_micros(i64::try_from(total).ok()?)
}

/// The longest form: `YYYY-MM-DD HH:MM:SS.ffffff+00:00`.
pub const MAX_LEN: usize = 32;

/// Writes `dt` into `buf` and returns the used part. Digits by hand rather than `format!`:
/// listings and starts write hundreds of thousands of these, and this is several times
/// faster.
fn write_into(dt: DateTime, separator: u8, buf: &mut [u8; MAX_LEN]) -> &str {
    fn digits(buf: &mut [u8], mut n: u32) {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    // Years are 1..=9999, so four digits always suffice.
    digits(&mut buf[0..4], dt.year().unsigned_abs());
    buf[4] = b'-';
    digits(&mut buf[5..7], u32::from(u8::from(dt.month())));
    buf[7] = b'-';
    digits(&mut buf[8..10], u32::from(dt.day()));
    buf[10] = separator;
    digits(&mut buf[11..13], u32::from(dt.hour()));
    buf[13] = b':';
    digits(&mut buf[14..16], u32::from(dt.minute()));
    buf[16] = b':';
    digits(&mut buf[17..19], u32::from(dt.second()));
    let mut len = 19;
    let micro = dt.microsecond();
    if micro != 0 {
        buf[19] = b'.';
        digits(&mut buf[20..26], micro);
        len = 26;
    }
    buf[len..len + 6].copy_from_slice(b"+00:00");
    // Only ASCII digits and punctuation were written.
    std::str::from_utf8(&buf[..len + 6]).unwrap_or_default()
}

fn write_parts(dt: DateTime, separator: u8) -> String {
    write_into(dt, separator, &mut [0; MAX_LEN]).to_string()
}

/// Appends `format_iso(dt)` to `out` without allocating.
pub fn push_iso(out: &mut String, dt: DateTime) {
    out.push_str(write_into(dt, b'T', &mut [0; MAX_LEN]));
}

/// Python's `str()` of an aware UTC datetime: `2023-03-23 18:27:58.848959+00:00`, with the
/// fraction only when the microseconds are not zero. Every datetime field of an answer.
pub fn format_api(dt: DateTime) -> String {
    write_parts(dt, b' ')
}

/// Python's `isoformat()`: `2023-03-01T04:00:00+00:00`. Run-date variables use it.
pub fn format_iso(dt: DateTime) -> String {
    write_parts(dt, b'T')
}

/// Serde helpers that write a datetime field in the API form.
pub mod api_format {
    use super::DateTime;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(dt: &DateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::write_into(*dt, b' ', &mut [0; super::MAX_LEN]))
    }

    pub mod option {
        use super::DateTime;
        use serde::Serializer;

        pub fn serialize<S: Serializer>(dt: &Option<DateTime>, s: S) -> Result<S::Ok, S::Error> {
            match dt {
                Some(dt) => s.serialize_str(super::super::write_into(*dt, b' ', &mut [0; super::super::MAX_LEN])),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_every_request_form_to_utc() {
        let cases = [
            ("2023-03-01T00:00:00Z", datetime!(2023-03-01 00:00:00)),
            ("2023-03-01t00:00:00z", datetime!(2023-03-01 00:00:00)),
            ("2023-03-01T05:30:00+05:30", datetime!(2023-03-01 00:00:00)),
            ("2023-03-01T00:00:00-0100", datetime!(2023-03-01 01:00:00)),
            ("2023-03-01T00:00:00+01", datetime!(2023-02-28 23:00:00)),
            ("2023-03-05 00:00:00+00:00", datetime!(2023-03-05 00:00:00)),
            ("2023-03-23 18:27:58.848959+00:00", datetime!(2023-03-23 18:27:58.848959)),
            ("2023-07-17 23:56:05", datetime!(2023-07-17 23:56:05)),
            ("2023-07-17 23:56", datetime!(2023-07-17 23:56:00)),
            ("2023-07-17", datetime!(2023-07-17 00:00:00)),
            ("  2023-07-17  ", datetime!(2023-07-17 00:00:00)),
            ("2023-07-17T01:02:03.5", datetime!(2023-07-17 01:02:03.5)),
            ("2023-07-17T01:02:03.123456789", datetime!(2023-07-17 01:02:03.123456)),
            ("2024-02-29", datetime!(2024-02-29 00:00:00)),
            ("0001-01-01", datetime!(0001-01-01 00:00:00)),
            ("9999-12-31T23:59:59.999999Z", datetime!(9999-12-31 23:59:59.999999)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_malformed_and_out_of_range_input() {
        for input in [
            "",
            "yesterday",
            "2023-3-1",
            "2023-02-29",
            "2023-13-01",
            "2023-01-32",
            "0000-01-01",
            "2023-01-01T",
            "2023-01-01T24:00:00",
            "2023-01-01T12:60:00",
            "2023-01-01T12:00:60",
            "2023-01-01T12:00:00.",
            "2023-01-01T12:00:00+24:00",
            "2023-01-01T12:00:00 junk",
            "2023-01-01X12:00:00",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "12345-01-01",
            "2023-01-01T12:00:00+5",
            "٢٠٢٣-01-01",
        ] {
            assert!(parse(input).is_err(), "{input:?} should be refused");
        }
    }

    #[test]
    fn formats_like_python() {
        assert_eq!(format_api(datetime!(2023-03-05 00:00:00)), "2023-03-05 00:00:00+00:00");
        assert_eq!(format_api(datetime!(2023-03-23 18:27:58.848959)), "2023-03-23 18:27:58.848959+00:00");
        assert_eq!(format_api(datetime!(0001-01-01 00:00:00.000001)), "0001-01-01 00:00:00.000001+00:00");
        assert_eq!(format_iso(datetime!(2023-03-01 04:00:00)), "2023-03-01T04:00:00+00:00");
    }

    #[test]
    fn hand_written_digits_agree_with_format() {
        let mut m = -62_135_596_800_000_000i64; // 0001-01-01
        while let Some(dt) = from_micros(m) {
            let micro = dt.microsecond();
            let fraction = if micro == 0 { String::new() } else { format!(".{micro:06}") };
            let want = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{fraction}+00:00",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            assert_eq!(format_api(dt), want);
            let mut iso = String::new();
            push_iso(&mut iso, dt);
            assert_eq!(iso, want.replacen(' ', "T", 1));
            m += 987_654_321_987_653; // about 31 years, with every field moving
        }
    }

    #[test]
    fn micros_round_trip_at_the_extremes() {
        for dt in [
            datetime!(0001-01-01 00:00:00),
            datetime!(1970-01-01 00:00:00),
            datetime!(1969-12-31 23:59:59.999999),
            datetime!(9999-12-31 23:59:59.999999),
        ] {
            assert_eq!(from_micros(to_micros(dt)), Some(dt));
        }
        assert_eq!(to_micros(datetime!(1970-01-01 00:00:01)), 1_000_000);
        assert_eq!(from_micros(to_micros(datetime!(9999-12-31 23:59:59.999999)) + 1), None);
        assert_eq!(from_micros(to_micros(datetime!(0001-01-01 00:00:00)) - 1), None);
        assert_eq!(from_micros(i64::MAX), None);
        assert_eq!(from_micros(i64::MIN), None);
        assert_eq!(add_micros(datetime!(2023-01-01 00:00:00), i128::MAX), None);
    }
}
