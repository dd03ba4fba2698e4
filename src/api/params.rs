//! Query parameters: `_limit`, `_offset` and the boolean flags, parsed in one place so that
//! every endpoint refuses the same malformed values with a message naming the parameter.

use serde::Deserialize;

use super::error::ApiError;
use crate::domain::datetime;
use crate::domain::model::{BackfillStatus, RunStatus};
use crate::store::pipeline_runs::{RunFilter, RunStart};
use crate::store::{ListingKey, Page, Start};

pub const DEFAULT_LIMIT: u64 = 40;
pub const MAX_LIMIT: u64 = 1000;
/// The run listing's `status` for Mage's "Last run failed" filter.
pub const LAST_RUN_FAILED: &str = "last_run_failed";

/// The query keys the listing endpoints know. Every value arrives as text so that a bad one
/// gets our own 400 rather than the deserializer's. Unknown keys are ignored, as Mage ignores them (docs/api.md).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "_limit")]
    pub limit: Option<String>,
    #[serde(rename = "_offset")]
    pub offset: Option<String>,
    #[serde(rename = "_cursor")]
    pub cursor: Option<String>,
    pub pipeline_uuid: Option<String>,
    pub include_run_count: Option<String>,
    pub include_preview_runs: Option<String>,
    pub backfill_id: Option<String>,
    pub status: Option<String>,
    pub name_prefix: Option<String>,
    pub execution_date_from: Option<String>,
    pub execution_date_to: Option<String>,
}

fn whole_number(name: &str, value: &str, max: u64) -> Result<u64, ApiError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be a whole number from 0 to {max}, got '{value}'")))
}

impl ListQuery {
    /// `_limit` (default 40, at most 1000) and `_offset` (default 0).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(v) => whole_number("_limit", v, MAX_LIMIT)?,
        };
        let offset = match &self.offset {
            None => 0,
            // SQLite's OFFSET is an i64.
            Some(v) => whole_number("_offset", v, i64::MAX as u64)?,
        };
        Ok(Page { limit, offset })
    }

    /// Where a page starts: at `_offset`, or after a `_cursor` (from a previous page's
    /// `metadata.cursor`) that `decode` reads; not both.
    fn start_with<T>(&self, at_offset: fn(u64) -> T, decode: fn(&str) -> Option<T>) -> Result<T, ApiError> {
        let page = self.page()?;
        match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => Ok(at_offset(page.offset)),
            Some(_) if page.offset > 0 => {
                Err(ApiError::BadRequest("_cursor and _offset cannot be combined: a cursor already says where".into()))
            }
            Some(c) => {
                decode(c).ok_or_else(|| ApiError::BadRequest(format!("_cursor '{c}' is not a cursor this server gave")))
            }
        }
    }

    /// Where a page of backfills starts.
    pub fn start(&self) -> Result<Start, ApiError> {
        self.start_with(Start::Offset, |c| decode_cursor(c).map(Start::After))
    }

    /// Where a page of runs starts.
    pub fn run_start(&self) -> Result<RunStart, ApiError> {
        self.start_with(RunStart::Offset, |c| decode_run_cursor(c).map(RunStart::Below))
    }

    /// The `pipeline_uuid` filter; an empty value filters nothing.
    pub fn pipeline_uuid(&self) -> Option<&str> {
        self.pipeline_uuid.as_deref().filter(|s| !s.is_empty())
    }

    /// The backfill listing's `status` filter: backfill statuses, comma-separated (any of
    /// them); empty filters nothing.
    pub fn backfill_statuses(&self) -> Result<Vec<BackfillStatus>, ApiError> {
        let mut statuses: Vec<BackfillStatus> = vec![];
        for v in self.status.as_deref().unwrap_or("").split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let status: BackfillStatus = v.parse().map_err(|e| {
                ApiError::BadRequest(format!(
                    "status: {e}; a backfill status, or several separated by commas (initial,running,completed,failed,\
                     cancelled)"
                ))
            })?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
        Ok(statuses)
    }

    /// The backfill listing's `name_prefix` filter; empty filters nothing.
    pub fn name_prefix(&self) -> Option<&str> {
        self.name_prefix.as_deref().filter(|s| !s.is_empty())
    }

    /// The `backfill_id` filter of the run listing.
    pub fn backfill_id(&self) -> Result<Option<i64>, ApiError> {
        match self.backfill_id.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("backfill_id must be a whole number, got '{v}'"))),
        }
    }

    /// The run listing's filter: `backfill_id`, `pipeline_uuid` and `status`, which is a run
    /// status or Mage's `last_run_failed` (the runs that failed and are the newest of their
    /// date), which needs a `backfill_id`.
    pub fn run_filter(&self) -> Result<RunFilter, ApiError> {
        let backfill_id = self.backfill_id()?;
        let pipeline_uuid = self.pipeline_uuid().map(str::to_string);
        let (status, newest_only) = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => (None, false),
            Some(LAST_RUN_FAILED) if backfill_id.is_none() => {
                return Err(ApiError::BadRequest(format!(
                    "status: '{LAST_RUN_FAILED}' (the runs that failed and are the newest of their date) \
                     needs a backfill_id: list one backfill's failed dates"
                )))
            }
            Some(LAST_RUN_FAILED) => (Some(RunStatus::Failed), true),
            Some(v) => (
                Some(v.parse().map_err(|e| ApiError::BadRequest(format!("status: {e}, or '{LAST_RUN_FAILED}'")))?),
                false,
            ),
        };
        let date = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| datetime::parse(v).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))))
                .transpose()
        };
        let dates = match (
            date("execution_date_from", &self.execution_date_from)?,
            date("execution_date_to", &self.execution_date_to)?,
        ) {
            (None, None) => None,
            _ if backfill_id.is_none() => {
                return Err(ApiError::BadRequest(
                    "execution_date_from and execution_date_to need a backfill_id: they list a range of one \
                     backfill's dates"
                        .into(),
                ))
            }
            (first, last) => {
                let (first, last) = (first.unwrap_or(datetime::DateTime::MIN), last.unwrap_or(datetime::DateTime::MAX));
                if first > last {
                    return Err(ApiError::BadRequest(
                        "execution_date_from must not be later than execution_date_to".into(),
                    ));
                }
                Some((first, last))
            }
        };
        Ok(RunFilter { backfill_id, pipeline_uuid, status, newest_only, dates })
    }

    pub fn include_run_count(&self) -> Result<bool, ApiError> {
        flag("include_run_count", self.include_run_count.as_deref())
    }

    pub fn include_preview_runs(&self) -> Result<bool, ApiError> {
        flag("include_preview_runs", self.include_preview_runs.as_deref())
    }
}

/// The opaque cursor for a page that ends at `key`: its position in the listing, which the
/// next request continues after. Versioned, so that its form can change.
pub fn encode_cursor(key: ListingKey) -> String {
    format!("1.{:x}.{:x}", datetime::to_micros(key.created_at) as u64, key.id as u64)
}

fn decode_cursor(s: &str) -> Option<ListingKey> {
    let mut parts = s.split('.');
    let (Some("1"), Some(created), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let created_at = datetime::from_micros(u64::from_str_radix(created, 16).ok()? as i64)?;
    Some(ListingKey { created_at, id: u64::from_str_radix(id, 16).ok()? as i64 })
}

/// The opaque cursor for a page of runs that ends at run `id` (runs are listed by id alone).
pub fn encode_run_cursor(id: i64) -> String {
    format!("r1.{:x}", id as u64)
}

fn decode_run_cursor(s: &str) -> Option<i64> {
    let id = u64::from_str_radix(s.strip_prefix("r1.")?, 16).ok()?;
    i64::try_from(id).ok()
}

/// A record id from the path: a whole number, else a 400 (a missing record is a 404 later).
pub fn parse_id(value: &str) -> Result<i64, ApiError> {
    value.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("the id must be a whole number, got '{value}'")))
}

/// `true`/`1`/`yes`/`on` and `false`/`0`/`no`/`off`/empty, in any case; absent is false.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    let Some(value) = value else { return Ok(false) };
    crate::domain::model::flag_value(value).ok_or_else(|| {
        ApiError::BadRequest(format!("{name} must be true or false (also 1/0, yes/no, on/off), got '{value}'"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, offset: Option<&str>) -> ListQuery {
        ListQuery { limit: limit.map(Into::into), offset: offset.map(Into::into), ..Default::default() }
    }

    #[test]
    fn pages_default_and_bound() {
        assert_eq!(query(None, None).page().unwrap(), Page { limit: 40, offset: 0 });
        assert_eq!(query(Some("0"), Some("7")).page().unwrap(), Page { limit: 0, offset: 7 });
        assert_eq!(query(Some("1000"), None).page().unwrap().limit, 1000);
        for (limit, offset, name) in [
            (Some("abc"), None, "_limit"),
            (Some("-1"), None, "_limit"),
            (Some("1001"), None, "_limit"),
            (Some("100000"), None, "_limit"),
            (Some(""), None, "_limit"),
            (Some("1.5"), None, "_limit"),
            (None, Some("x"), "_offset"),
            (None, Some("-3"), "_offset"),
            (None, Some("9223372036854775808"), "_offset"),
        ] {
            let e = query(limit, offset).page().unwrap_err().to_string();
            assert!(e.starts_with(name), "{e}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let key = ListingKey { created_at: time::macros::datetime!(1969-12-31 23:59:59.5), id: 42 };
        let q = ListQuery { cursor: Some(encode_cursor(key)), ..Default::default() };
        assert_eq!(q.start().unwrap(), Start::After(key));
        for bad in ["x", "1.2", "2.1.1", "1.zz.1", "1.1.1.1", "1.7fffffffffffffff.1"] {
            let q = ListQuery { cursor: Some(bad.into()), ..Default::default() };
            assert!(q.start().unwrap_err().to_string().contains("_cursor"), "{bad}");
        }
        let both = ListQuery { cursor: Some(encode_cursor(key)), offset: Some("3".into()), ..Default::default() };
        assert!(both.start().is_err());
    }

    #[test]
    fn run_cursors_round_trip_and_refuse_forgeries() {
        let q = ListQuery { cursor: Some(encode_run_cursor(4711)), ..Default::default() };
        assert_eq!(q.run_start().unwrap(), RunStart::Below(4711));
        let backfill_cursor = encode_cursor(ListingKey { created_at: time::macros::datetime!(2020-01-01 0:00), id: 1 });
        for bad in ["x", "r1.", "r1.zz", "r2.1", "r1.8000000000000000", backfill_cursor.as_str()] {
            let q = ListQuery { cursor: Some(bad.into()), ..Default::default() };
            assert!(q.run_start().unwrap_err().to_string().contains("_cursor"), "{bad}");
        }
        let both = ListQuery { cursor: Some(encode_run_cursor(5)), offset: Some("3".into()), ..Default::default() };
        assert!(both.run_start().is_err());
    }

    #[test]
    fn flags_accept_the_documented_spellings_only() {
        for v in ["true", "TRUE", "1", "yes", "On"] {
            assert!(flag("f", Some(v)).unwrap(), "{v}");
        }
        for v in ["false", "0", "no", "OFF", ""] {
            assert!(!flag("f", Some(v)).unwrap(), "{v}");
        }
        assert!(!flag("f", None).unwrap());
        assert!(flag("include_run_count", Some("maybe")).unwrap_err().to_string().contains("include_run_count"));
    }
}
