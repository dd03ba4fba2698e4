//! The store: all SQL of the data lives here (the schema and its upgrades are `db`'s).
//! Functions take a `&Connection` (a `Transaction` derefs to one), so the caller chooses the
//! transaction scope; none of them reads the clock, logs, or knows of HTTP or threads. Its
//! functions are called by `service` and `data`; its keys and filters (`Start`, `RunFilter`,
//! ...) and records are named above too. Below it: `domain`'s types.
//!
//! Row mapping reads columns by position where rows are hot (a listing's backfills; a test
//! pins the positions to the column list) and by name elsewhere, and turns the stored text
//! and integers back into domain types; a value the schema's CHECKs should have kept out
//! surfaces as a conversion error.

pub mod backfills;
pub mod changes;
pub mod date_map;
pub mod logs;
pub mod pipeline_runs;
pub mod schedules;
pub mod tokens;
pub mod users;

use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::{Row, RowIndex};

use crate::domain::datetime::{self, DateTime};
use crate::domain::model::Object;

/// One page of a listing: at most `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

/// Where a page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After skipping this many rows (Mage's `_offset`): costs a walk over the skipped index
    /// entries.
    Offset(u64),
    /// Right after this row in the listing's order (a keyset cursor): costs what page 0 does.
    After(ListingKey),
}

/// A row's position in a newest-first listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingKey {
    pub created_at: DateTime,
    pub id: i64,
}

/// Puts `rows` in the order of `ids` (what an `IN (...)` query returns comes in its own order).
fn sort_as<T>(rows: &mut [T], ids: &[i64], id: impl Fn(&T) -> i64) {
    let position: std::collections::HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|row| position.get(&id(row)).copied());
}

fn conversion_error(col: impl std::fmt::Debug, ty: Type, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, ty, format!("column {col:?}: {message}").into())
}

// Row readers. `col` is a column's position (the fast way, for the listing's hot rows) or its
// name; text is read in place, without an owned copy.

fn opt_datetime<I: RowIndex + Copy + std::fmt::Debug>(row: &Row, col: I) -> rusqlite::Result<Option<DateTime>> {
    row.get::<_, Option<i64>>(col)?
        .map(|m| {
            datetime::from_micros(m)
                .ok_or_else(|| conversion_error(col, Type::Integer, format!("{m} is outside the years 1 to 9999")))
        })
        .transpose()
}

fn req_datetime<I: RowIndex + Copy + std::fmt::Debug>(row: &Row, col: I) -> rusqlite::Result<DateTime> {
    opt_datetime(row, col)?.ok_or_else(|| conversion_error(col, Type::Null, "must not be null".into()))
}

fn opt_text<'r, I: RowIndex + Copy + std::fmt::Debug>(row: &'r Row, col: I) -> rusqlite::Result<Option<&'r str>> {
    row.get_ref(col)?.as_str_or_null().map_err(|e| conversion_error(col, Type::Text, e.to_string()))
}

fn opt_object<I: RowIndex + Copy + std::fmt::Debug>(row: &Row, col: I) -> rusqlite::Result<Option<Object>> {
    opt_text(row, col)?
        .map(|text| match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(o)) => Ok(o),
            _ => Err(conversion_error(col, Type::Text, "not a JSON object".into())),
        })
        .transpose()
}

fn opt_parsed<T: FromStr<Err = String>, I: RowIndex + Copy + std::fmt::Debug>(
    row: &Row,
    col: I,
) -> rusqlite::Result<Option<T>> {
    opt_text(row, col)?.map(|text| text.parse().map_err(|e: String| conversion_error(col, Type::Text, e))).transpose()
}

fn micros(dt: Option<DateTime>) -> Option<i64> {
    dt.map(datetime::to_micros)
}

fn json_text(o: &Option<Object>) -> Option<String> {
    // Serialising a map of JSON values cannot fail.
    o.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default())
}
