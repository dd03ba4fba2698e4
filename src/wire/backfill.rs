//! A backfill as the API answers it and `export` writes it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::datetime::{api_format, DateTime};
use crate::domain::model::{Backfill, Object, RunStatusCounts};

/// A backfill as the API shows it. Fields are in alphabetical order, as Mage sends them;
/// the two count keys appear only when counts were asked for and the dates are complete.
#[derive(Serialize)]
pub struct BackfillJson<'a> {
    block_uuid: &'a Option<String>,
    #[serde(serialize_with = "api_format::option::serialize")]
    completed_at: Option<DateTime>,
    #[serde(serialize_with = "api_format::serialize")]
    created_at: DateTime,
    #[serde(serialize_with = "api_format::option::serialize")]
    end_datetime: Option<DateTime>,
    #[serde(serialize_with = "api_format::option::serialize")]
    failed_at: Option<DateTime>,
    id: i64,
    interval_type: Option<&'static str>,
    interval_units: Option<i64>,
    is_halted: bool,
    is_paused: bool,
    metrics: &'a Option<Object>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline_run_dates: Option<Vec<Object>>,
    pipeline_schedule_id: Option<i64>,
    pipeline_uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_status_counts: Option<BTreeMap<&'static str, u64>>,
    settings: &'a Option<Object>,
    #[serde(serialize_with = "api_format::option::serialize")]
    start_datetime: Option<DateTime>,
    #[serde(serialize_with = "api_format::option::serialize")]
    started_at: Option<DateTime>,
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_run_count: Option<u64>,
    #[serde(serialize_with = "api_format::serialize")]
    updated_at: DateTime,
    variables: &'a Option<Object>,
}

impl<'a> BackfillJson<'a> {
    /// `counts` is `Some` when run counts were asked for (empty when the backfill has no runs).
    pub fn new(b: &'a Backfill, counts: Option<&RunStatusCounts>) -> BackfillJson<'a> {
        let f = &b.fields;
        let total = counts.and(f.total_run_count());
        BackfillJson {
            block_uuid: &f.block_uuid,
            completed_at: b.completed_at,
            created_at: b.created_at,
            end_datetime: f.end_datetime,
            failed_at: b.failed_at,
            id: b.id,
            interval_type: f.interval_type.map(|t| t.as_str()),
            interval_units: f.interval_units,
            is_halted: b.is_halted,
            is_paused: b.is_paused,
            metrics: &b.metrics,
            name: &f.name,
            pipeline_run_dates: None,
            pipeline_schedule_id: b.pipeline_schedule_id,
            pipeline_uuid: &b.pipeline_uuid,
            run_status_counts: total.and(counts).map(|c| c.iter().map(|(status, n)| (status.as_str(), *n)).collect()),
            settings: &f.settings,
            start_datetime: f.start_datetime,
            started_at: b.started_at,
            status: b.status.map(|s| s.as_str()),
            total_run_count: total,
            updated_at: b.updated_at,
            variables: &f.variables,
        }
    }
}

impl BackfillJson<'_> {
    /// The backfill with a preview page of its run dates (`include_preview_runs`), each as
    /// the variables its run would get.
    pub fn with_run_dates(mut self, dates: Vec<Object>) -> Self {
        self.pipeline_run_dates = Some(dates);
        self
    }
}
