//! Domain types and the validation of their writable fields. Pure: no I/O, no SQL.
//!
//! Requests and import files are JSON objects in the API's own shape. `BackfillFields::parse`
//! turns the writable keys into checked values (parse, don't validate), so the HTTP API and
//! `backfilld import` refuse exactly the same records, with an error that names the field.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::datetime::{self, DateTime};
use crate::schedule::{self, string_enum, IntervalType, Schedule, ScheduleError};

/// A JSON object, as `variables`, `settings` and `metrics` are.
pub type Object = Map<String, Value>;

string_enum!(
    /// `status` of a backfill.
    BackfillStatus("status") {
        Initial => "initial",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// `status` of a pipeline run.
    RunStatus("status") {
        Initial => "initial",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

/// A refused value: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError { field: field.to_string(), message: message.into() }
    }

    /// The same error under a path prefix, e.g. `backfills[3].`.
    pub fn within(self, prefix: &str) -> FieldError {
        FieldError { field: format!("{prefix}{}", self.field), message: self.message }
    }
}

/// A schedule rule's refusal, under the field it names.
impl From<ScheduleError> for FieldError {
    fn from(e: ScheduleError) -> FieldError {
        FieldError::new(e.field(), e.to_string())
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed readers for the keys of a JSON object. A missing key and `null` both read as `None`.
pub struct Fields<'a>(pub &'a Object);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong(key: &str, want: &str, got: &Value) -> FieldError {
        FieldError::new(key, format!("must be {want}, got {}", type_name(got)))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Self::wrong(key, "a string", v)),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String, FieldError> {
        match self.string(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(FieldError::new(key, "is required and must not be blank")),
        }
    }

    /// An integer, or a string of one (Mage's forms send numbers as text).
    pub fn integer(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                FieldError::new(key, format!("must be a whole number from {} to {}, got {n}", i64::MIN, i64::MAX))
            }),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| FieldError::new(key, format!("must be a whole number, got '{s}'"))),
            Some(v) => Err(Self::wrong(key, "a whole number", v)),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::wrong(key, "true or false", v)),
        }
    }

    pub fn datetime(&self, key: &str) -> Result<Option<DateTime>, FieldError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => datetime::parse(&s).map(Some).map_err(|e| FieldError::new(key, e.to_string())),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<Object>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(v) => Err(Self::wrong(key, "an object", v)),
        }
    }

    pub fn parsed<T: FromStr<Err = String>>(&self, key: &str) -> Result<Option<T>, FieldError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|e| FieldError::new(key, e)),
        }
    }
}

/// The writable keys of a backfill, checked: what a create or an update may set.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillFields {
    pub name: String,
    pub block_uuid: Option<String>,
    pub start_datetime: Option<DateTime>,
    pub end_datetime: Option<DateTime>,
    pub interval_type: Option<IntervalType>,
    pub interval_units: Option<i64>,
    pub variables: Option<Object>,
    pub settings: Option<Object>,
}

impl BackfillFields {
    /// The writable keys of `obj`; any other key is the caller's business. `name` is
    /// required; the date settings may be partial (a backfill can be completed later), but
    /// what is given must be valid: a known interval type, units of at least 1, and an end
    /// that is not before the start.
    pub fn parse(obj: &Object) -> Result<BackfillFields, FieldError> {
        let f = Fields(obj);
        let fields = BackfillFields {
            name: f.required_string("name")?,
            block_uuid: f.string("block_uuid")?.filter(|s| !s.is_empty()),
            start_datetime: f.datetime("start_datetime")?,
            end_datetime: f.datetime("end_datetime")?,
            interval_type: f.parsed("interval_type")?,
            interval_units: f.integer("interval_units")?,
            variables: f.object("variables")?,
            settings: f.object("settings")?,
        };
        fields.check()?;
        Ok(fields)
    }

    /// The cross-field rules; `parse` calls it, and so must anything that merges fields.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(units) = self.interval_units {
            schedule::check_units(units)?;
        }
        if let (Some(start), Some(end)) = (self.start_datetime, self.end_datetime) {
            schedule::check_span(start, end)?;
        }
        Ok(())
    }

    /// The run-date schedule, when all four date settings are set.
    pub fn schedule(&self) -> Option<Schedule> {
        Schedule::new(self.start_datetime?, self.end_datetime?, self.interval_type?, self.interval_units?).ok()
    }

    /// Mage's `total_run_count`: `None` without complete date settings, 0 with a `block_uuid`
    /// (custom code drives such a backfill, so it has no run dates).
    pub fn total_run_count(&self) -> Option<u64> {
        let schedule = self.schedule()?;
        Some(if self.block_uuid.is_some() { 0 } else { schedule.count() })
    }
}

/// A backfill as stored. `Id` is `i64` for a stored one (`Backfill`) and `Option<i64>` for
/// one about to be inserted (`NewBackfill`, whose id is assigned when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillRecord<Id> {
    pub id: Id,
    pub pipeline_uuid: String,
    pub fields: BackfillFields,
    pub status: Option<BackfillStatus>,
    pub metrics: Option<Object>,
    pub pipeline_schedule_id: Option<i64>,
    pub started_at: Option<DateTime>,
    pub completed_at: Option<DateTime>,
    pub failed_at: Option<DateTime>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

pub type Backfill = BackfillRecord<i64>;
pub type NewBackfill = BackfillRecord<Option<i64>>;

impl NewBackfill {
    /// A backfill as a create makes it: never started, created and updated `now`.
    pub fn new(pipeline_uuid: String, fields: BackfillFields, now: DateTime) -> NewBackfill {
        BackfillRecord {
            id: None,
            pipeline_uuid,
            fields,
            status: None,
            metrics: None,
            pipeline_schedule_id: None,
            started_at: None,
            completed_at: None,
            failed_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A pipeline run as stored; `Id` as for `BackfillRecord`.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRunRecord<Id> {
    pub id: Id,
    pub pipeline_schedule_id: Option<i64>,
    pub pipeline_uuid: String,
    pub backfill_id: Option<i64>,
    pub execution_date: Option<DateTime>,
    pub status: RunStatus,
    pub variables: Option<Object>,
    pub event_variables: Option<Object>,
    pub metrics: Option<Object>,
    pub passed_sla: bool,
    pub executor_type: Option<String>,
    pub started_at: Option<DateTime>,
    pub completed_at: Option<DateTime>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

pub type PipelineRun = PipelineRunRecord<i64>;
pub type NewPipelineRun = PipelineRunRecord<Option<i64>>;

/// Per-status counts of a backfill's runs (newest run per execution date only).
pub type RunStatusCounts = BTreeMap<RunStatus, u64>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_the_seed_backfill() {
        let f = BackfillFields::parse(&obj(json!({
            "name": "sparkling glitter",
            "start_datetime": "2023-03-01 00:00:00+00:00",
            "end_datetime": "2023-03-05T00:00:00Z",
            "interval_type": "hour",
            "interval_units": 4,
            "block_uuid": null,
            "variables": {"a": 1},
        })))
        .unwrap();
        assert_eq!(f.total_run_count(), Some(25));
        assert_eq!(f.variables, Some(obj(json!({"a": 1}))));
        assert_eq!(BackfillFields { block_uuid: Some("b".into()), ..f.clone() }.total_run_count(), Some(0));
        assert_eq!(BackfillFields { interval_units: None, ..f }.total_run_count(), None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({}), "name", "a name is required"),
            (json!({"name": "  "}), "name", "a blank name"),
            (json!({"name": 5}), "name", "a number as name"),
            (json!({"name": "x", "interval_type": "fortnight"}), "interval_type", "unknown type"),
            (json!({"name": "x", "interval_type": 3}), "interval_type", "not a string"),
            (json!({"name": "x", "interval_units": 0}), "interval_units", "zero units"),
            (json!({"name": "x", "interval_units": -4}), "interval_units", "negative units"),
            (json!({"name": "x", "interval_units": 1.5}), "interval_units", "a fraction"),
            (json!({"name": "x", "interval_units": 1e300}), "interval_units", "too large"),
            (json!({"name": "x", "interval_units": "four"}), "interval_units", "a word"),
            (json!({"name": "x", "interval_units": true}), "interval_units", "a boolean"),
            (json!({"name": "x", "start_datetime": "soon"}), "start_datetime", "not a date"),
            (json!({"name": "x", "end_datetime": 20230101}), "end_datetime", "a number as date"),
            (
                json!({"name": "x", "start_datetime": "2023-01-02", "end_datetime": "2023-01-01"}),
                "end_datetime",
                "end before start",
            ),
            (json!({"name": "x", "variables": [1]}), "variables", "an array"),
            (json!({"name": "x", "settings": "{}"}), "settings", "a string"),
            (json!({"name": "x", "block_uuid": {}}), "block_uuid", "an object"),
        ];
        for (input, field, why) in cases {
            let e = BackfillFields::parse(&obj(input)).unwrap_err();
            assert_eq!(e.field, field, "{why}: {e}");
        }
    }

    #[test]
    fn rule_messages_are_worded_as_the_api_shows_them() {
        let message = |input: Value| BackfillFields::parse(&obj(input)).unwrap_err().to_string();
        assert_eq!(message(json!({"name": "x", "interval_units": -4})), "interval_units: must be at least 1, got -4");
        assert_eq!(
            message(json!({"name": "x", "start_datetime": "2023-01-02", "end_datetime": "2023-01-01T12:00:00Z"})),
            "end_datetime: 2023-01-01 12:00:00+00:00 is before start_datetime 2023-01-02 00:00:00+00:00"
        );
        assert_eq!(
            message(json!({"name": "x", "interval_type": "Hour"})),
            "interval_type: unknown interval type 'Hour': expected one of \
             second, minute, hour, day, week, month, year, custom"
        );
        assert_eq!(
            "done".parse::<RunStatus>(),
            Err("unknown status 'done': expected one of initial, running, completed, failed, cancelled".to_string())
        );
    }

    #[test]
    fn integer_strings_and_offsets_are_accepted() {
        let f = BackfillFields::parse(&obj(json!({
            "name": "x",
            "interval_units": "12",
            "start_datetime": "2023-03-01T05:30:00+05:30",
        })))
        .unwrap();
        assert_eq!(f.interval_units, Some(12));
        assert_eq!(f.start_datetime, Some(time::macros::datetime!(2023-03-01 00:00)));
    }

    #[test]
    fn statuses_round_trip_through_their_strings() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        for s in BackfillStatus::ALL {
            assert_eq!(s.as_str().parse::<BackfillStatus>(), Ok(s));
        }
        assert!("done".parse::<RunStatus>().is_err());
    }
}
