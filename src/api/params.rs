//! Query parameters: `_limit`, `_offset` and the boolean flags, parsed in one place so that
//! every endpoint refuses the same malformed values with a message naming the parameter.

use serde::Deserialize;

use super::error::ApiError;
use crate::model::RunStatus;
use crate::store::Page;

pub const DEFAULT_LIMIT: u64 = 40;
pub const MAX_LIMIT: u64 = 1000;

/// The query keys the listing endpoints know. Every value arrives as text so that a bad one
/// gets our own 400 rather than the deserializer's. Unknown keys are ignored (MAGE-API.md).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "_limit")]
    pub limit: Option<String>,
    #[serde(rename = "_offset")]
    pub offset: Option<String>,
    pub pipeline_uuid: Option<String>,
    pub include_run_count: Option<String>,
    pub include_preview_runs: Option<String>,
    pub backfill_id: Option<String>,
    pub status: Option<String>,
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

    /// The `pipeline_uuid` filter; an empty value filters nothing.
    pub fn pipeline_uuid(&self) -> Option<&str> {
        self.pipeline_uuid.as_deref().filter(|s| !s.is_empty())
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

    /// The `status` filter of the run listing.
    pub fn run_status(&self) -> Result<Option<RunStatus>, ApiError> {
        match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| ApiError::BadRequest(format!("status: {e}"))),
        }
    }

    pub fn include_run_count(&self) -> Result<bool, ApiError> {
        flag("include_run_count", self.include_run_count.as_deref())
    }

    pub fn include_preview_runs(&self) -> Result<bool, ApiError> {
        flag("include_preview_runs", self.include_preview_runs.as_deref())
    }
}

/// A record id from the path: a whole number, else a 400 (a missing record is a 404 later).
pub fn parse_id(value: &str) -> Result<i64, ApiError> {
    value.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("the id must be a whole number, got '{value}'")))
}

/// `true`/`1`/`yes`/`on` and `false`/`0`/`no`/`off`/empty, in any case; absent is false.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    let Some(value) = value else { return Ok(false) };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => {
            Err(ApiError::BadRequest(format!("{name} must be true or false (also 1/0, yes/no, on/off), got '{value}'")))
        }
    }
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
