//! A pipeline run as the API answers it and `export` writes it.

use serde::Serialize;

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
    variables: &'a Option<Object>,
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
            variables: &r.variables,
            worker: &r.worker,
        }
    }
}
