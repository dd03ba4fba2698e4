//! A backfill's date map (`GET /api/backfills/:id/date_map`): its schedule's dates cut into at
//! most N cells of consecutive dates, each counting its dates by the status of their newest
//! run. The store keeps, per backfill, one byte per date (`code`) in chunks of `CHUNK` dates
//! indexed by the date's position in the schedule (`Schedule::index_of`); this module holds
//! the codes and the arithmetic of cells, over those bytes.

use super::datetime::DateTime;
use super::model::RunStatus;
use super::schedule::Schedule;

/// Dates per stored chunk: a chunk is one blob of at most this many bytes, small enough to
/// stay within one page of the file.
pub const CHUNK: u64 = 1024;

/// The statuses in the order of a cell's counts (the answer's keys), `none` last.
pub const KEYS: [&str; 6] = ["completed", "failed", "running", "initial", "cancelled", "none"];

/// The byte of a date whose newest run is in `status`; 0 is a date without a run.
pub fn code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => 1,
        RunStatus::Failed => 2,
        RunStatus::Running => 3,
        RunStatus::Initial => 4,
        RunStatus::Cancelled => 5,
    }
}

/// The position in `KEYS` (and in `Cell::counts`) of a stored byte; an unknown byte counts
/// as `none`.
fn slot(code: u8) -> usize {
    match code {
        1..=5 => usize::from(code) - 1,
        _ => 5,
    }
}

/// One cell: its first and last dates, how many dates it has, and their counts in `KEYS`
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub first: DateTime,
    pub last: DateTime,
    pub dates: u64,
    pub counts: [u64; 6],
}

/// The map of `total` dates in at most `max_cells` cells: `min(total, max_cells)` cells, cell
/// `c` holding the dates `ceil(c * total / cells)` up to the next cell's first, so that sizes
/// differ by one at most. Date `i` is in cell `i * cells / total`.
fn bounds(total: u64, max_cells: u64) -> (u64, impl Fn(u64) -> u64) {
    let cells = total.min(max_cells.max(1));
    let first = move |c: u64| -> u64 {
        let (c, t, n) = (u128::from(c), u128::from(total), u128::from(cells.max(1)));
        u64::try_from((c * t).div_ceil(n)).unwrap_or(u64::MAX)
    };
    (cells, first)
}

/// The cell of date `i` among `total` dates in `cells` cells.
fn cell_of(i: u64, total: u64, cells: u64) -> usize {
    usize::try_from(u128::from(i) * u128::from(cells) / u128::from(total.max(1))).unwrap_or(usize::MAX)
}

/// The cells of `schedule`'s dates, at most `max_cells` of them, from the stored chunks:
/// `chunks` gives each chunk's number and bytes (in any order; bytes past the schedule's
/// dates are ignored). Dates no byte covers count as `none`. The cost is the cells plus the
/// stored bytes, whatever the number of dates.
pub fn cells<'a>(schedule: &Schedule, max_cells: u64, chunks: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<Cell> {
    let total = schedule.count();
    let (n, first) = bounds(total, max_cells);
    let mut out: Vec<Cell> = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for c in 0..n {
        let (lo, next) = (first(c), first(c + 1));
        let (Some(a), Some(b)) = (schedule.nth(lo), schedule.nth(next - 1)) else {
            break;
        };
        out.push(Cell { first: a, last: b, dates: next - lo, counts: [0, 0, 0, 0, 0, next - lo] });
    }
    for (chunk, bytes) in chunks {
        let base = chunk.saturating_mul(CHUNK);
        for (k, &byte) in bytes.iter().enumerate() {
            let i = base + k as u64;
            if byte == 0 || i >= total {
                continue;
            }
            if let Some(cell) = out.get_mut(cell_of(i, total, n)) {
                cell.counts[slot(byte)] += 1;
                cell.counts[5] -= 1;
            }
        }
    }
    out
}

/// Sets date `index`'s byte in its chunk's bytes (`chunk` as stored, possibly shorter than the
/// date's offset: it grows with zeros).
pub fn set(bytes: &mut Vec<u8>, index: u64, code: u8) {
    let at = usize::try_from(index % CHUNK).unwrap_or(0);
    if bytes.len() <= at {
        bytes.resize(at + 1, 0);
    }
    bytes[at] = code;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::IntervalType;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn hours(n: i64) -> Schedule {
        let start = datetime!(2024-01-01 00:00);
        let end = crate::domain::datetime::add_micros(start, i128::from(n - 1) * 3_600_000_000).unwrap();
        Schedule::new(start, end, IntervalType::Hour, 1).unwrap()
    }

    #[test]
    fn fewer_dates_than_cells_give_one_cell_per_date() {
        let s = hours(3);
        let bytes = [code(RunStatus::Failed), 0, code(RunStatus::Completed)];
        let got = cells(&s, 1000, [(0, &bytes[..])]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].counts, [0, 1, 0, 0, 0, 0]);
        assert_eq!(got[1].counts, [0, 0, 0, 0, 0, 1]);
        assert_eq!(got[2].counts, [1, 0, 0, 0, 0, 0]);
        assert_eq!((got[1].first, got[1].last), (datetime!(2024-01-01 01:00), datetime!(2024-01-01 01:00)));
    }

    #[test]
    fn a_month_schedule_maps_its_calendar_dates() {
        let s =
            Schedule::new(datetime!(2024-01-31 00:00), datetime!(2024-12-31 00:00), IntervalType::Month, 1).unwrap();
        assert_eq!(s.index_of(datetime!(2024-02-29 00:00)), Some(1));
        assert_eq!(s.index_of(datetime!(2024-03-31 00:00)), None);
        let got = cells(&s, 4, []);
        assert_eq!(got.iter().map(|c| c.dates).collect::<Vec<_>>(), [3, 3, 3, 3]);
        assert_eq!(got[1].first, datetime!(2024-04-29 00:00));
    }

    proptest! {
        #[test]
        fn cells_cover_every_date_once_in_order_and_count_by_brute_force(
            total in 1i64..300,
            max_cells in 1u64..400,
            marks in proptest::collection::vec((0u64..300, 0u8..6), 0..200),
        ) {
            let s = hours(total);
            let mut bytes = vec![];
            let mut want = vec![0u8; total as usize];
            for (i, c) in marks {
                if i < total as u64 {
                    set(&mut bytes, i, c);
                    want[i as usize] = c;
                }
            }
            let got = cells(&s, max_cells, [(0, &bytes[..])]);
            prop_assert_eq!(got.len() as u64, (total as u64).min(max_cells));
            let sizes: Vec<u64> = got.iter().map(|c| c.dates).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            let mut i = 0u64;
            for cell in &got {
                prop_assert_eq!(Some(cell.first), s.nth(i));
                prop_assert_eq!(Some(cell.last), s.nth(i + cell.dates - 1));
                let mut counts = [0u64; 6];
                for k in i..i + cell.dates {
                    counts[slot(want[k as usize])] += 1;
                }
                prop_assert_eq!(cell.counts, counts);
                i += cell.dates;
            }
            prop_assert_eq!(i, total as u64);
        }
    }
}
