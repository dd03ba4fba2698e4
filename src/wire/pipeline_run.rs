//! A pipeline run as the API answers it and `export` writes it.

use std::cmp::Ordering;
use std::iter::Peekable;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::domain::datetime::{api_format, DateTime};
use crate::domain::model::{Object, PipelineRun};
use crate::store::schedules::{ScheduleInfo, Schedules};

/// A pipeline run as the API shows it, keys in alphabetical order: Mage's (those of its
/// listing rows, with the values true for backfilld, which runs no blocks and keeps no
/// pipelines) and the lease's.
#[derive(Serialize)]
pub struct PipelineRunJson<'a> {
    attempt: Option<i64>,
    backfill_id: Option<i64>,
    /// backfilld runs no blocks: always empty, and both block counts 0.
    block_runs: [(); 0],
    block_runs_count: u8,
    #[serde(serialize_with = "api_format::option::serialize")]
    completed_at: Option<DateTime>,
    completed_block_runs_count: u8,
    #[serde(serialize_with = "api_format::serialize")]
    created_at: DateTime,
    event_variables: &'a Option<Object>,
    #[serde(serialize_with = "api_format::option::serialize")]
    execution_date: Option<DateTime>,
    executor_type: &'a Option<String>,
    id: i64,
    #[serde(serialize_with = "api_format::option::serialize")]
    lease_expires_at: Option<DateTime>,
    metrics: &'a Option<Object>,
    passed_sla: bool,
    pipeline_schedule_id: Option<i64>,
    pipeline_schedule_name: Option<&'a str>,
    pipeline_schedule_token: Option<&'a str>,
    /// Null, as on Mage's backfill runs: Mage makes a backfill's schedule without a type, and
    /// answers no tags for its runs.
    pipeline_schedule_type: Option<()>,
    pipeline_tags: Option<()>,
    /// backfilld keeps no pipelines, so knows no pipeline type; nor a project, so no
    /// repo_path.
    pipeline_type: Option<()>,
    pipeline_uuid: &'a str,
    repo_path: Option<()>,
    #[serde(serialize_with = "api_format::option::serialize")]
    started_at: Option<DateTime>,
    status: &'static str,
    #[serde(serialize_with = "api_format::serialize")]
    updated_at: DateTime,
    variables: Variables<'a>,
    worker: &'a Option<String>,
}

impl<'a> PipelineRunJson<'a> {
    /// `r` with its schedule, looked up in `schedules` (`service::queries::schedules_of`).
    pub fn new(r: &'a PipelineRun, schedules: &'a Schedules) -> Self {
        Self::with_schedule(r, r.pipeline_schedule_id.and_then(|id| schedules.get(&id)))
    }

    /// `r` with `schedule`, the one it hangs from (none when it names none, or one that no
    /// longer exists).
    pub fn with_schedule(r: &'a PipelineRun, schedule: Option<&'a ScheduleInfo>) -> Self {
        PipelineRunJson {
            attempt: r.attempt,
            backfill_id: r.backfill_id,
            block_runs: [],
            block_runs_count: 0,
            completed_block_runs_count: 0,
            completed_at: r.completed_at,
            created_at: r.created_at,
            event_variables: &r.event_variables,
            execution_date: r.execution_date,
            executor_type: &r.executor_type,
            id: r.id,
            lease_expires_at: r.lease_expires_at,
            metrics: &r.metrics,
            passed_sla: r.passed_sla,
            pipeline_schedule_id: r.pipeline_schedule_id,
            pipeline_schedule_name: schedule.map(|s| s.name.as_str()),
            pipeline_schedule_token: schedule.and_then(|s| s.token.as_deref()),
            pipeline_schedule_type: None,
            pipeline_tags: None,
            pipeline_type: None,
            pipeline_uuid: &r.pipeline_uuid,
            repo_path: None,
            started_at: r.started_at,
            status: r.status.as_str(),
            updated_at: r.updated_at,
            variables: Variables { shared: schedule.and_then(|s| s.variables.as_ref()), own: r.variables.as_ref() },
            worker: &r.worker,
        }
    }
}

/// A run's variables as it answers them: its schedule's (a started backfill's variables,
/// kept once for all its runs) with the run's own (its date's keys) laid over them, so that
/// a date key wins over a backfill variable of the same name. Written as one map in key
/// order, as a map read from the stored text is, without building it. A run stored whole
/// (before the schedule kept them, or imported) hangs from a schedule without variables.
struct Variables<'a> {
    shared: Option<&'a Object>,
    own: Option<&'a Object>,
}

impl Serialize for Variables<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.shared, self.own) {
            (None, None) => s.serialize_none(),
            (Some(one), None) | (None, Some(one)) => one.serialize(s),
            (Some(shared), Some(own)) => {
                let mut map = s.serialize_map(None)?;
                let mut shared = shared.iter().peekable();
                let mut own = own.iter().peekable();
                while let Some((key, value)) = next_merged(&mut shared, &mut own) {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// The next entry of two maps' entries in key order, `own`'s where both have the key.
fn next_merged<'a, I: Iterator<Item = (&'a String, &'a serde_json::Value)>>(
    shared: &mut Peekable<I>,
    own: &mut Peekable<I>,
) -> Option<(&'a String, &'a serde_json::Value)> {
    let order = match (shared.peek(), own.peek()) {
        (Some((a, _)), Some((b, _))) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, _) => Ordering::Greater,
    };
    match order {
        Ordering::Less => shared.next(),
        Ordering::Equal => {
            shared.next();
            own.next()
        }
        Ordering::Greater => own.next(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn own_variables_win_over_the_schedules_in_key_order() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let shared = obj(json!({"a": 1, "ds": "shared", "z": [1]}));
        let own = obj(json!({"ds": "2023-01-01", "hr": "00"}));
        let text =
            |shared: Option<&Object>, own: Option<&Object>| serde_json::to_string(&Variables { shared, own }).unwrap();
        assert_eq!(text(Some(&shared), Some(&own)), r#"{"a":1,"ds":"2023-01-01","hr":"00","z":[1]}"#);
        let mut merged = shared.clone();
        merged.extend(own.clone());
        assert_eq!(text(Some(&shared), Some(&own)), serde_json::to_string(&merged).unwrap());
        assert_eq!(text(None, Some(&own)), serde_json::to_string(&own).unwrap());
        assert_eq!(text(Some(&shared), None), serde_json::to_string(&shared).unwrap());
        assert_eq!(text(None, None), "null");
        assert_eq!(text(Some(&Object::new()), Some(&own)), serde_json::to_string(&own).unwrap());
    }
}
