//! The backfill lifecycle: create, update, start, run again, pause, cancel, delete, and the
//! backfill following its runs as workers report them. Each function does one request's
//! whole work on the connection it is given; the caller makes it all or nothing (a savepoint
//! of the writer's immediate transaction, `engine::writer`), so a request either writes
//! everything or nothing. No clock reads (`now` is passed in), no HTTP.

use serde_json::Value;

use super::{queries, Error, Result};
use crate::domain::datetime::{self, DateTime};
use crate::domain::model::{
    self, Backfill, BackfillFields, BackfillStatus, FieldError, Fields, NewBackfill, Object, Reprocess, RunSettings,
    RunStatus,
};
use crate::domain::schedule::{RunDate, Schedule};
use crate::store;
use crate::store::schedules::NewPipelineSchedule;

/// The variables each run date sets (schedule::RunDate::variables), which win over the
/// backfill's own variables of the same name.
const RUN_DATE_KEYS: [&str; 7] = [
    "ds",
    "hr",
    "execution_date",
    "interval_start_datetime",
    "interval_end_datetime",
    "interval_seconds",
    "interval_start_datetime_previous",
];

/// Limits a server applies to writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pipeline runs one start may create.
    pub max_runs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_runs: 100_000 }
    }
}

/// The keys of a backfill a client may write; the rest of a body is ignored, as in Mage.
pub const WRITABLE_KEYS: [&str; 8] = [
    "name",
    "block_uuid",
    "start_datetime",
    "end_datetime",
    "interval_type",
    "interval_units",
    "variables",
    "settings",
];

/// The writable fields as the API shows them, so that a body's keys can be laid over them
/// and the result validated by the same `BackfillFields::parse` as a create.
fn fields_object(f: &BackfillFields) -> Object {
    let dt = |d: Option<DateTime>| d.map_or(Value::Null, |d| Value::String(datetime::format_api(d)));
    let obj = |o: &Option<Object>| o.clone().map_or(Value::Null, Value::Object);
    let mut m = Object::new();
    m.insert("name".into(), f.name.clone().into());
    m.insert("block_uuid".into(), f.block_uuid.clone().map_or(Value::Null, Value::String));
    m.insert("start_datetime".into(), dt(f.start_datetime));
    m.insert("end_datetime".into(), dt(f.end_datetime));
    m.insert("interval_type".into(), f.interval_type.map_or(Value::Null, |t| t.as_str().into()));
    m.insert("interval_units".into(), f.interval_units.map_or(Value::Null, Value::from));
    m.insert("variables".into(), obj(&f.variables));
    m.insert("settings".into(), obj(&f.settings));
    m
}

/// A create's (and a preview's) checks of the pipeline and the body's fields, bounds
/// included (`BackfillFields::over_bounds`).
fn parse_new(pipeline_uuid: &str, body: &Object) -> Result<BackfillFields> {
    if pipeline_uuid.trim().is_empty() {
        return Err(FieldError::new("pipeline_uuid", "must not be blank").into());
    }
    model::check_name_length("pipeline_uuid", pipeline_uuid)?;
    let fields = BackfillFields::parse(body)?;
    if let Some(e) = fields.over_bounds().into_iter().next() {
        return Err(e.into());
    }
    RunSettings::parse(fields.settings.as_ref())?;
    Ok(fields)
}

/// `POST /api/pipelines/:pipeline_uuid/backfills`.
pub fn create(conn: &rusqlite::Connection, pipeline_uuid: &str, body: &Object, now: DateTime) -> Result<Backfill> {
    let fields = parse_new(pipeline_uuid, body)?;
    let mut new = NewBackfill::new(pipeline_uuid.to_string(), fields, now);
    new.is_paused = Fields(body).boolean("is_paused")?.unwrap_or(false);
    let id = store::backfills::insert_backfill(conn, &new)?;
    queries::backfill_in(conn, id, None)
}

/// `PUT /api/backfills/:id`: the writable keys present in `body` replace the stored ones
/// (validated together, as a create is) and `is_paused` pauses or resumes claims of its
/// runs; then `"status": "initial"` starts the backfill (or, once started, runs it again:
/// `run_again`) and `"status": "cancelled"` cancels it.
pub fn update(
    conn: &rusqlite::Connection,
    id: i64,
    pipeline_uuid: Option<&str>,
    body: &Object,
    limits: Limits,
    now: DateTime,
) -> Result<Backfill> {
    let mut b = queries::backfill_in(conn, id, pipeline_uuid)?;
    let status = Fields(body).parsed::<BackfillStatus>("status")?;

    let mut merged = fields_object(&b.fields);
    for key in WRITABLE_KEYS {
        if let Some(v) = body.get(key) {
            merged.insert(key.to_string(), v.clone());
        }
    }
    let fields = BackfillFields::parse(&merged)?;
    // Only the keys sent: a stored value above a bound (imported from an older version) does
    // not block other changes.
    if let Some(e) = fields.over_bounds().into_iter().find(|e| body.contains_key(&e.field)) {
        return Err(e.into());
    }
    if body.contains_key("settings") {
        // Only when sent: a stored value from before these rules does not block other changes.
        RunSettings::parse(fields.settings.as_ref())?;
    }
    if b.started_at.is_some() {
        let old = &b.fields;
        let moved = [
            ("start_datetime", old.start_datetime != fields.start_datetime),
            ("end_datetime", old.end_datetime != fields.end_datetime),
            ("interval_type", old.interval_type != fields.interval_type),
            ("interval_units", old.interval_units != fields.interval_units),
            ("block_uuid", old.block_uuid != fields.block_uuid),
        ];
        if let Some((key, _)) = moved.iter().find(|(_, changed)| *changed) {
            return Err(Error::Conflict(format!(
                "backfill {id} has been started, so its {key} can no longer change: its pipeline runs \
                 exist already; create a new backfill instead"
            )));
        }
    }
    b.fields = fields;
    b.updated_at = now;
    if let Some(paused) = Fields(body).boolean("is_paused")? {
        b.is_paused = paused;
    }

    match status {
        None => {}
        Some(BackfillStatus::Initial) if b.started_at.is_some() => run_again(conn, &mut b, now)?,
        Some(BackfillStatus::Initial) => start(conn, &mut b, limits, now)?,
        Some(BackfillStatus::Cancelled) => cancel(conn, &mut b, now)?,
        Some(other) => {
            return Err(FieldError::new(
                "status",
                format!(
                    "cannot be set to '{other}': set 'initial' to start the backfill or 'cancelled' to cancel it; \
                     the rest follows its pipeline runs"
                ),
            )
            .into())
        }
    }
    store::backfills::update_backfill(conn, &b)?;
    Ok(b)
}

/// The schedule of a backfill about to start, or why it cannot: a `block_uuid` (custom code),
/// a missing date setting, or more run dates than one start may create. A start and a
/// preview both ask it, so that a preview refuses exactly what the start would.
fn startable(f: &BackfillFields, limits: Limits) -> Result<Schedule> {
    if f.block_uuid.is_some() {
        return Err(FieldError::new(
            "block_uuid",
            "is set: such a backfill takes its run dates from custom code, which backfilld does not run, \
             so it cannot start it",
        )
        .into());
    }
    let missing = [
        ("start_datetime", f.start_datetime.is_none()),
        ("end_datetime", f.end_datetime.is_none()),
        ("interval_type", f.interval_type.is_none()),
        ("interval_units", f.interval_units.is_none()),
    ];
    if let Some((key, _)) = missing.iter().find(|(_, absent)| *absent) {
        return Err(FieldError::new(key, "is required to start a backfill").into());
    }
    let Some(schedule) = f.schedule() else {
        return Err(FieldError::new("interval_units", "does not make a valid schedule").into());
    };
    let count = schedule.count();
    if count > limits.max_runs {
        return Err(FieldError::new(
            "total_run_count",
            format!(
                "this backfill has {count} run dates, more than the {} one start may create \
                 (the server's --max-runs); split it into smaller backfills",
                limits.max_runs
            ),
        )
        .into());
    }
    Ok(schedule)
}

/// What creating a backfill from `body` and starting it would make, with nothing written:
/// how many runs, the run dates `offset..offset + limit`, and up to `limit` of the last
/// dates after those. Refused as the create and the start would refuse it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub total_run_count: u64,
    pub run_dates: Vec<RunDate>,
    pub last_run_dates: Vec<RunDate>,
}

/// `POST /api/pipelines/:pipeline_uuid/backfills/preview`: a create's checks, then a start's,
/// on the body alone. Reads and writes nothing.
pub fn preview(pipeline_uuid: &str, body: &Object, limits: Limits, offset: u64, limit: u64) -> Result<Preview> {
    let fields = parse_new(pipeline_uuid, body)?;
    Fields(body).boolean("is_paused")?;
    let schedule = startable(&fields, limits)?;
    let total = schedule.count();
    let first = schedule.run_dates(offset, limit);
    let after = offset.saturating_add(limit);
    let from = total.saturating_sub(limit).max(after);
    let last = if from < total { schedule.run_dates(from, total - from) } else { vec![] };
    Ok(Preview { total_run_count: total, run_dates: first, last_run_dates: last })
}

/// Creates the `@once` schedule and one run per run date, and marks the backfill started.
fn start(conn: &rusqlite::Connection, b: &mut Backfill, limits: Limits, now: DateTime) -> Result<()> {
    let schedule = startable(&b.fields, limits)?;
    let count = schedule.count();
    let f = &b.fields;

    // The backfill's variables are kept once, on the schedule its runs hang from, without
    // the date keys, which each run keeps as its own variables and which win over them: a run
    // answers both merged (`wire::PipelineRunJson`). Written into every run, they would cost
    // a start (and each page of runs) their size times the runs.
    let mut shared = f.variables.clone().unwrap_or_default();
    for key in RUN_DATE_KEYS {
        shared.remove(key);
    }
    let schedule_id = store::schedules::insert_pipeline_schedule(
        conn,
        &NewPipelineSchedule {
            id: None,
            name: format!("Backfill {}", f.name),
            pipeline_uuid: b.pipeline_uuid.clone(),
            schedule_interval: "@once".into(),
            variables: (!shared.is_empty()).then_some(shared),
            created_at: now,
        },
    )?;
    let common = store::pipeline_runs::StartedRuns {
        pipeline_schedule_id: schedule_id,
        pipeline_uuid: &b.pipeline_uuid,
        backfill_id: b.id,
        created_at: now,
    };
    // Runs are inserted uncounted and added up once at the end: a fresh start's runs are all
    // the newest of their dates. Runs the backfill already had (an import may bring some)
    // could be superseded, so then the backfill is counted afresh.
    let had_runs = store::pipeline_runs::backfill_has_runs(conn, b.id)?;
    let mut batch: Vec<(DateTime, String)> = Vec::with_capacity(store::pipeline_runs::START_BATCH);
    for rd in schedule.run_dates_from(0) {
        // Written as JSON text directly: a hundred thousand maps would cost more than the
        // inserts.
        let mut variables = String::with_capacity(360);
        variables.push('{');
        rd.push_variables_json(&mut variables);
        variables.push('}');
        batch.push((rd.execution_date, variables));
        if batch.len() == store::pipeline_runs::START_BATCH {
            store::pipeline_runs::insert_started_runs(conn, &common, &batch)?;
            batch.clear();
        }
    }
    store::pipeline_runs::insert_started_runs(conn, &common, &batch)?;
    if had_runs {
        store::pipeline_runs::recount_runs(conn, b.id)?;
    } else {
        store::pipeline_runs::add_to_run_count(
            conn,
            b.id,
            RunStatus::Initial,
            i64::try_from(count).unwrap_or(i64::MAX),
        )?;
    }

    b.pipeline_schedule_id = Some(schedule_id);
    b.started_at = Some(now);
    b.status = Some(BackfillStatus::Initial);
    Ok(())
}

/// Runs a started backfill again, as Airflow's reprocess behaviour says: a new `initial` run
/// for each date whose newest run is `cancelled`, and by `settings.reprocess_behavior` also
/// those whose newest run `failed` (`failed`, the default), or `failed` or `completed`
/// (`completed`). A date with a run `initial` or `running` gets none. A halted backfill
/// (`stop_on_failure`) resumes its waiting runs. Its status then follows its dates (`settle`):
/// `running`, or still `failed` while a date it did not run again stays failed. Refused
/// (409) when no date would run again and none waits to be resumed.
fn run_again(conn: &rusqlite::Connection, b: &mut Backfill, now: DateTime) -> Result<()> {
    let reprocess = RunSettings::of(b.fields.settings.as_ref()).reprocess_behavior;
    let statuses: &[RunStatus] = match reprocess {
        Reprocess::Nothing => &[RunStatus::Cancelled],
        Reprocess::Failed => &[RunStatus::Cancelled, RunStatus::Failed],
        Reprocess::Completed => &[RunStatus::Cancelled, RunStatus::Failed, RunStatus::Completed],
    };
    let created = store::pipeline_runs::repeat_dates(conn, b.id, statuses, now)?;
    // A halted backfill resumes the runs that were waiting when it stopped.
    let resumes =
        b.is_halted && store::backfills::run_counts_of(conn, b.id)?.get(&RunStatus::Initial).is_some_and(|n| *n > 0);
    if created == 0 && !resumes {
        let which = match reprocess {
            Reprocess::Nothing => {
                "cancelled (settings.reprocess_behavior is 'none'; 'failed' or 'completed' \
                                   would also run failed, or failed and completed, dates again)"
            }
            Reprocess::Failed => "cancelled or failed (settings.reprocess_behavior 'failed')",
            Reprocess::Completed => "cancelled, failed or completed (settings.reprocess_behavior 'completed')",
        };
        return Err(Error::Conflict(format!(
            "backfill {} has nothing to run again: no date's newest run is {which}, and no run waits to be resumed",
            b.id
        )));
    }
    b.is_halted = false;
    settle(conn, b, now)
}

/// Sets a started backfill's status from the newest run of each of its dates
/// (`BackfillStatus::following`): `failed_at` is when it last turned `failed`, `completed_at`
/// when it turned `completed`, and each is cleared once the backfill is no longer so (a date
/// run again or retried). A backfill never started is left alone.
pub(crate) fn settle(conn: &rusqlite::Connection, b: &mut Backfill, now: DateTime) -> Result<()> {
    let Some(current) = b.status else { return Ok(()) };
    let next = BackfillStatus::following(current, &store::backfills::run_counts_of(conn, b.id)?);
    if next != current {
        b.status = Some(next);
        b.failed_at = (next == BackfillStatus::Failed).then_some(now);
        b.completed_at = (next == BackfillStatus::Completed).then_some(now);
        b.updated_at = now;
    }
    Ok(())
}

/// Cancels every unfinished run and the backfill; a never-started one is simply marked.
fn cancel(conn: &rusqlite::Connection, b: &mut Backfill, now: DateTime) -> Result<()> {
    if b.status == Some(BackfillStatus::Completed) {
        return Err(Error::Conflict(format!(
            "backfill {} has completed: every run date is done, so there is nothing to cancel",
            b.id
        )));
    }
    store::pipeline_runs::cancel_unfinished_runs(conn, b.id, now)?;
    b.status = Some(BackfillStatus::Cancelled);
    Ok(())
}

/// `DELETE /api/backfills/:id`: returns the deleted record. Its runs stay, unlinked.
pub fn delete(conn: &rusqlite::Connection, id: i64) -> Result<Backfill> {
    let b = queries::backfill_in(conn, id, None)?;
    store::backfills::delete_backfill(conn, id)?;
    Ok(b)
}

/// A backfill following its runs as they are claimed and reported (Mage's scheduler rule,
/// `settle`): `failed` while a date's newest run is failed, its other dates still handed
/// out; `completed` once every date completed. A date that has just failed for good
/// (`failed_now`: a failed report, or a lease lost with no attempt left) halts a backfill
/// whose `settings.stop_on_failure` is set: claims then hand out none of its runs, until it
/// is no longer `failed`. A completed backfill whose date is set failed by hand turns
/// `failed`; one never started or cancelled is left alone.
pub(crate) fn follow_runs(
    conn: &rusqlite::Connection,
    backfill_id: i64,
    failed_now: bool,
    now: DateTime,
) -> Result<()> {
    let Some(mut b) = store::backfills::get_backfill(conn, backfill_id)? else {
        return Ok(());
    };
    if !matches!(
        b.status,
        Some(BackfillStatus::Initial | BackfillStatus::Running | BackfillStatus::Failed | BackfillStatus::Completed)
    ) {
        return Ok(());
    }
    let before = (b.status, b.is_halted);
    if failed_now && RunSettings::of(b.fields.settings.as_ref()).stop_on_failure {
        b.is_halted = true;
    }
    settle(conn, &mut b, now)?;
    if b.status != Some(BackfillStatus::Failed) {
        // Its failed date was set completed by hand, say: nothing holds it any more.
        b.is_halted = false;
    }
    if (b.status, b.is_halted) != before {
        b.updated_at = now;
        store::backfills::update_backfill(conn, &b)?;
    }
    Ok(())
}
