//! Domain types and the validation of their writable fields. Pure: no I/O, no SQL.
//!
//! Requests and import files are JSON objects in the API's own shape. `BackfillFields::parse`
//! turns the writable keys into checked values (parse, don't validate), so the HTTP API and
//! `backfilld import` refuse exactly the same records, with an error that names the field.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::domain::datetime::{self, DateTime};
use crate::domain::schedule::{self, string_enum, IntervalType, Schedule, ScheduleError};

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

string_enum!(
    /// `settings.reprocess_behavior` of a backfill: which finished dates a run again
    /// (`PUT {"backfill": {"status": "initial"}}` on a started backfill) runs anew, besides
    /// the cancelled ones, as Airflow's backfills choose.
    Reprocess("reprocess_behavior") {
        /// Only cancelled dates.
        Nothing => "none",
        /// Also the dates whose newest run failed.
        Failed => "failed",
        /// Also the dates whose newest run completed or failed.
        Completed => "completed",
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

    /// An integer, or a string of one (Mage's forms send numbers as text). A number with a
    /// zero fraction (`4.0`, which Python's JSON writes for a float) is the whole number it
    /// equals, as JSON Schema counts it.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().and_then(whole)).map(Some).ok_or_else(|| {
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

    /// `integer` from `min` to `max`: a number out of range, or not whole, is refused with
    /// the range.
    pub fn integer_in(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, FieldError> {
        let range = || {
            FieldError::new(key, format!("must be a whole number from {min} to {max}, got {}", describe(&self.0[key])))
        };
        match self.integer(key) {
            Ok(Some(n)) if !(min..=max).contains(&n) => Err(range()),
            Err(_) if matches!(self.get(key), Some(Value::Number(_))) => Err(range()),
            other => other,
        }
    }

    /// `integer_in`, but only a JSON number: for a request written by a program, where a
    /// number sent as text is a mistake.
    pub fn number_in(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            Some(v @ Value::String(_)) => Err(Self::wrong(key, &format!("a whole number from {min} to {max}"), v)),
            _ => self.integer_in(key, min, max),
        }
    }

    /// A string that, when given, is not blank.
    pub fn nonblank_string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => Err(FieldError::new(key, "must not be blank")),
            other => Ok(other),
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

/// The most characters the API stores in a `name`, `pipeline_uuid` or `block_uuid`: Mage's
/// columns are `String(255)`.
pub const MAX_NAME_CHARS: usize = 255;

/// The most bytes of JSON (as written compactly) the API stores in a backfill's `variables`
/// or `settings`, or in a run's `metrics`. Every run of a backfill shows its variables, so
/// their size multiplies in every page of runs.
pub const MAX_OBJECT_BYTES: usize = 64 << 10;

/// `value` of `field` refused when longer than `MAX_NAME_CHARS` characters.
pub fn check_name_length(field: &str, value: &str) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(FieldError::new(field, format!("must be at most {MAX_NAME_CHARS} characters, got {n}")));
    }
    Ok(())
}

/// `value` of `field` refused when its JSON takes more than `MAX_OBJECT_BYTES` bytes.
pub fn check_object_size(field: &str, value: &Object) -> Result<(), FieldError> {
    let n = json_size(value);
    if n > MAX_OBJECT_BYTES {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_OBJECT_BYTES} bytes of JSON (64 KiB), got {n} bytes"),
        ));
    }
    Ok(())
}

/// How many bytes `value` takes as compact JSON, counted without writing it out.
pub fn json_size(value: &Object) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
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

    /// Each of the fields above what the API stores (`MAX_NAME_CHARS`, `MAX_OBJECT_BYTES`).
    /// The API refuses a create or an update that sends one; an import keeps it, warning:
    /// an older version may have stored it.
    pub fn over_bounds(&self) -> Vec<FieldError> {
        let names = [("name", Some(&self.name)), ("block_uuid", self.block_uuid.as_ref())];
        let objects = [("variables", self.variables.as_ref()), ("settings", self.settings.as_ref())];
        names
            .into_iter()
            .filter_map(|(field, v)| v.and_then(|v| check_name_length(field, v).err()))
            .chain(objects.into_iter().filter_map(|(field, v)| v.and_then(|v| check_object_size(field, v).err())))
            .collect()
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

/// The keys of a backfill's `settings` that say how its runs are handed out and repeated.
/// Other keys are the client's own and kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    /// `pipeline_run_limit`: at most this many runs `running` at once (Mage's setting).
    pub pipeline_run_limit: Option<u64>,
    /// `max_attempts`: how many runs a date may have before a lost lease leaves it failed.
    pub max_attempts: u32,
    /// `run_backwards`: hand out the newest dates first (Airflow's `run_backwards`).
    pub run_backwards: bool,
    /// `reprocess_behavior`: what a run again repeats.
    pub reprocess_behavior: Reprocess,
    /// `stop_on_failure`: from the first date that fails for good on, hand out none of the
    /// backfill's runs (Airflow 2's backfill without `--continue-on-failures`); otherwise
    /// every date runs whatever happened to the others.
    pub stop_on_failure: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            pipeline_run_limit: None,
            max_attempts: 3,
            run_backwards: false,
            reprocess_behavior: Reprocess::Failed,
            stop_on_failure: false,
        }
    }
}

impl RunSettings {
    /// The most `max_attempts` may be.
    pub const MAX_ATTEMPTS: u32 = 100;

    /// The settings in `settings`, each missing or null key at its default; a bad value is
    /// refused under `settings.<key>`. A create, an update that sends `settings`, and an
    /// import check them. `pipeline_run_limit` and `max_attempts` may be strings of digits:
    /// Mage's edit form sends its number inputs as text, and Mage's scheduler reads the limit
    /// with `int()`.
    pub fn parse(settings: Option<&Object>) -> Result<RunSettings, FieldError> {
        Self::read(settings, false).map_err(|e| e.within("settings."))
    }

    /// The settings of a stored backfill: as `parse`, but a value that a file made before
    /// these rules holds and `parse` would refuse counts as its default.
    pub fn of(settings: Option<&Object>) -> RunSettings {
        Self::read(settings, true).unwrap_or_default()
    }

    /// Each key read, a bad one refused or, when `lenient`, taken as absent.
    fn read(settings: Option<&Object>, lenient: bool) -> Result<RunSettings, FieldError> {
        fn keep<T>(r: Result<Option<T>, FieldError>, lenient: bool) -> Result<Option<T>, FieldError> {
            if lenient {
                Ok(r.unwrap_or(None))
            } else {
                r
            }
        }
        let d = RunSettings::default();
        let Some(obj) = settings else { return Ok(d) };
        let f = Fields(obj);
        let attempts = keep(f.integer_in("max_attempts", 1, i64::from(Self::MAX_ATTEMPTS)), lenient)?;
        Ok(RunSettings {
            pipeline_run_limit: keep(f.integer_in("pipeline_run_limit", 1, i64::MAX), lenient)?.map(i64::unsigned_abs),
            max_attempts: attempts.and_then(|n| u32::try_from(n).ok()).unwrap_or(d.max_attempts),
            run_backwards: keep(f.boolean("run_backwards"), lenient)?.unwrap_or(d.run_backwards),
            reprocess_behavior: keep(f.parsed("reprocess_behavior"), lenient)?.unwrap_or(d.reprocess_behavior),
            stop_on_failure: keep(f.boolean("stop_on_failure"), lenient)?.unwrap_or(d.stop_on_failure),
        })
    }
}

/// A flag's value as the API's query flags and the command line's boolean environment
/// variables take it: true/1/yes/on or false/0/no/off (or empty), any case, spaces trimmed.
pub fn flag_value(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `f` as an i64 when it is whole and exact: within ±2^53, past which a float no longer
/// holds every whole number (9007199254740993.0 would be read as ...992).
fn whole(f: f64) -> Option<i64> {
    const EXACT: f64 = (1u64 << 53) as f64;
    (f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64)
}

/// A value as an error message shows it: a string quoted, anything else as its JSON type.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Number(n) => n.to_string(),
        other => type_name(other).to_string(),
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
    /// Claims hand out none of its runs while it is paused; its status is unchanged.
    pub is_paused: bool,
    /// Claims hand out none of its runs: it failed under `settings.stop_on_failure` (or had
    /// failed before a failed date stopped only such backfills). Running it again or retrying
    /// a date clears it.
    pub is_halted: bool,
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
            is_paused: false,
            is_halted: false,
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
    /// The worker that holds (or last held) the run's lease.
    pub worker: Option<String>,
    /// How long the claim's lease lasts, renewed by each heartbeat.
    pub lease_seconds: Option<i64>,
    /// When the lease runs out: set only while the run is `running` under a lease.
    pub lease_expires_at: Option<DateTime>,
    /// Which run of its execution date this is: 1 for the first.
    pub attempt: Option<i64>,
}

pub type PipelineRun = PipelineRunRecord<i64>;
pub type NewPipelineRun = PipelineRunRecord<Option<i64>>;

/// Per-status counts of a backfill's runs (newest run per execution date only).
pub type RunStatusCounts = BTreeMap<RunStatus, u64>;

impl BackfillStatus {
    /// What a started backfill's status is, by Mage's rule, from the newest run of each of its
    /// dates (`counts`) alone: `failed` while some date's newest run failed (its other dates
    /// run on); `completed` once every date's completed; `cancelled` once none is left to
    /// run and some date was cancelled; otherwise `running`, except that a backfill still
    /// `initial` stays so until one of its runs has begun.
    pub fn following(current: BackfillStatus, counts: &RunStatusCounts) -> BackfillStatus {
        let n = |s: RunStatus| counts.get(&s).copied().unwrap_or(0);
        let total: u64 = counts.values().sum();
        let left = n(RunStatus::Initial) + n(RunStatus::Running);
        if n(RunStatus::Failed) > 0 {
            BackfillStatus::Failed
        } else if total > 0 && n(RunStatus::Completed) == total {
            BackfillStatus::Completed
        } else if left == 0 && n(RunStatus::Cancelled) > 0 {
            BackfillStatus::Cancelled
        } else if current == BackfillStatus::Initial && n(RunStatus::Running) + n(RunStatus::Completed) == 0 {
            BackfillStatus::Initial
        } else {
            BackfillStatus::Running
        }
    }
}

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
    fn fields_over_the_bounds_are_each_named() {
        let big = "x".repeat(MAX_OBJECT_BYTES);
        let f = BackfillFields::parse(&obj(json!({
            "name": "n".repeat(MAX_NAME_CHARS),
            "block_uuid": "é".repeat(MAX_NAME_CHARS),
            "variables": {"v": "x".repeat(MAX_OBJECT_BYTES - 8)},
            "settings": {},
        })))
        .unwrap();
        assert_eq!(f.over_bounds(), vec![], "255 characters (not bytes) and 64 KiB exactly are within");
        let f = BackfillFields::parse(&obj(json!({
            "name": "n".repeat(MAX_NAME_CHARS + 1),
            "block_uuid": "b",
            "variables": {"v": big},
            "settings": {"s": big},
        })))
        .unwrap();
        let fields: Vec<String> = f.over_bounds().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "variables", "settings"]);
        assert_eq!(
            check_name_length("name", &"n".repeat(256)).unwrap_err().to_string(),
            "name: must be at most 255 characters, got 256"
        );
        assert_eq!(json_size(&obj(json!({"a": [1, "é"]}))), r#"{"a":[1,"é"]}"#.len());
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
        // A float with a zero fraction is its whole number (Python writes 4.0); others are not.
        let f = BackfillFields::parse(&obj(json!({"name": "x", "interval_units": 4.0}))).unwrap();
        assert_eq!(f.interval_units, Some(4));
        for bad in [json!(4.5), json!(1e300), json!(-0.5)] {
            let e = BackfillFields::parse(&obj(json!({"name": "x", "interval_units": bad}))).unwrap_err();
            assert_eq!(e.field, "interval_units", "{bad}");
        }
        let fields = obj(json!({"limit": 202.0, "big": 9.3e18, "inexact": 9007199254740994.0}));
        assert_eq!(Fields(&fields).number_in("limit", 1, 1000).unwrap(), Some(202));
        assert!(Fields(&fields).integer("big").is_err(), "past i64");
        assert!(Fields(&fields).integer("inexact").is_err(), "past 2^53 a float is not exact");
    }

    #[test]
    fn run_settings_take_mages_text_numbers_and_default_the_rest() {
        let parse = |v: Value| RunSettings::parse(Some(&obj(v)));
        assert_eq!(RunSettings::parse(None), Ok(RunSettings::default()));
        assert_eq!(parse(json!({"other": 1})), Ok(RunSettings::default()));
        let d = RunSettings::default();
        assert_eq!(
            (d.reprocess_behavior, d.stop_on_failure),
            (Reprocess::Failed, false),
            "run again re-runs failed dates"
        );
        let s = parse(json!({"pipeline_run_limit": "3", "max_attempts": 100, "run_backwards": true,
            "reprocess_behavior": "completed", "stop_on_failure": true}))
        .unwrap();
        assert_eq!(
            s,
            RunSettings {
                pipeline_run_limit: Some(3),
                max_attempts: 100,
                run_backwards: true,
                reprocess_behavior: Reprocess::Completed,
                stop_on_failure: true,
            }
        );
        assert_eq!(parse(json!({"stop_on_failure": "yes"})).unwrap_err().field, "settings.stop_on_failure");
        assert_eq!(parse(json!({"pipeline_run_limit": 7})).unwrap().pipeline_run_limit, Some(7));
        assert_eq!(parse(json!({"pipeline_run_limit": null})).unwrap().pipeline_run_limit, None);
        assert_eq!(
            parse(json!({"pipeline_run_limit": "0"})).unwrap_err().to_string(),
            "settings.pipeline_run_limit: must be a whole number from 1 to 9223372036854775807, got '0'"
        );
        for bad in [json!({"pipeline_run_limit": " "}), json!({"max_attempts": "1e2"}), json!({"max_attempts": 0.5})] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        // A stored value the rules refuse counts as its default, the others as they are.
        let stored = obj(json!({"pipeline_run_limit": "lots", "run_backwards": true}));
        let s = RunSettings::of(Some(&stored));
        assert_eq!((s.pipeline_run_limit, s.run_backwards), (None, true));
    }

    #[test]
    fn a_backfill_follows_the_newest_run_of_each_date() {
        use BackfillStatus as B;
        use RunStatus as R;
        let counts = |pairs: &[(RunStatus, u64)]| pairs.iter().copied().collect::<RunStatusCounts>();
        for (current, pairs, want) in [
            // Not begun yet: stays initial; once a run has begun, running.
            (B::Initial, &[(R::Initial, 4)][..], B::Initial),
            (B::Initial, &[(R::Initial, 3), (R::Running, 1)][..], B::Running),
            (B::Initial, &[(R::Initial, 3), (R::Cancelled, 1)][..], B::Initial),
            // A date of a completed backfill set failed by hand: failed.
            (B::Completed, &[(R::Completed, 3), (R::Failed, 1)][..], B::Failed),
            // A failed date makes it failed while its other dates go on.
            (B::Running, &[(R::Completed, 1), (R::Failed, 1), (R::Initial, 2)][..], B::Failed),
            (B::Initial, &[(R::Failed, 1), (R::Initial, 3)][..], B::Failed),
            (B::Failed, &[(R::Completed, 3), (R::Failed, 1)][..], B::Failed),
            // The failed date retried: running again, then completed.
            (B::Failed, &[(R::Completed, 3), (R::Initial, 1)][..], B::Running),
            (B::Failed, &[(R::Completed, 4)][..], B::Completed),
            // Nothing left to run and a date cancelled (none failed): cancelled.
            (B::Running, &[(R::Completed, 3), (R::Cancelled, 1)][..], B::Cancelled),
            (B::Running, &[(R::Completed, 2), (R::Cancelled, 1), (R::Initial, 1)][..], B::Running),
            // A run again of a cancelled backfill whose runs all wait.
            (B::Cancelled, &[(R::Initial, 4)][..], B::Running),
        ] {
            assert_eq!(BackfillStatus::following(current, &counts(pairs)), want, "{current} {pairs:?}");
        }
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
