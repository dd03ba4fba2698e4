//! The `pipeline_run` table, and `backfill_run_count`, `run_tally` and the change marks
//! (`changes`), which every function here that writes runs keeps true in the same
//! transaction (see schema.sql for why not triggers).

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::schedules::ScheduleInfo;
use super::{json_text, micros, opt_datetime, opt_object, opt_parsed, req_datetime};
use crate::domain::datetime::DateTime;
use crate::domain::model::{NewPipelineRun, PipelineRun, RunStatus};

/// Which runs a listing shows; every set field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub backfill_id: Option<i64>,
    pub pipeline_uuid: Option<String>,
    pub status: Option<RunStatus>,
    /// Only the newest run of each date (Mage's "last run failed" filter, with a backfill and
    /// `failed`): the listing walks the backfill's runs of the status and skips those a newer
    /// run of their date supersedes, so its cost is that of the runs of the status alone.
    pub newest_only: bool,
    /// Only runs of these dates, both included (with a backfill: the dashboard lists a range
    /// of its date map): read through the backfill's date index, and sorted by id, so its
    /// cost is that of the range's runs.
    pub dates: Option<(DateTime, DateTime)>,
}

/// Where a page of the run listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// After skipping this many runs (Mage's `_offset`): a walk over the skipped entries.
    Offset(u64),
    /// Right after the run with this id (a keyset cursor): costs what page 0 does.
    Below(i64),
}

impl RunFilter {
    /// The listing index for this filter and the WHERE clause with its parameters, `id < ?`
    /// first when the page starts below an id. Each combination is a fixed statement text,
    /// so the statement cache holds at most twenty of them.
    ///
    /// With both a backfill and a pipeline, SQLite (which has no statistics to go by) would
    /// take the pipeline's index and walk all of the pipeline's runs to find the backfill's;
    /// the backfill's index is named instead. Its runs are all of one pipeline, so the
    /// pipeline term then matches every row, or none: `count_pipeline_runs` says 0 for that,
    /// and `queries::run_listing` reads no page.
    fn clause(&self, below: Option<i64>) -> (String, Vec<SqlValue>) {
        let mut terms = vec![];
        let mut values = vec![];
        if let Some(id) = below {
            terms.push("id < ?");
            values.push(SqlValue::Integer(id));
        }
        if let Some(id) = self.backfill_id {
            terms.push("backfill_id = ?");
            values.push(SqlValue::Integer(id));
        }
        if let Some(uuid) = &self.pipeline_uuid {
            terms.push("pipeline_uuid = ?");
            values.push(SqlValue::Text(uuid.clone()));
        }
        if let Some(status) = self.status {
            terms.push("status = ?");
            values.push(SqlValue::Text(status.as_str().into()));
        }
        if self.newest_only {
            terms.push(NO_NEWER_RUN);
        }
        if let Some((first, last)) = self.dates {
            terms.push("execution_date BETWEEN ? AND ?");
            values.extend([micros(Some(first)), micros(Some(last))].map(|m| SqlValue::Integer(m.unwrap_or_default())));
        }
        let index = match (self.backfill_id, &self.pipeline_uuid, self.status, self.dates) {
            (Some(_), _, _, Some(_)) => "INDEXED BY pipeline_run_backfill ",
            (Some(_), Some(_), None, None) => "INDEXED BY pipeline_run_backfill_listing ",
            (Some(_), Some(_), Some(_), None) => "INDEXED BY pipeline_run_backfill_status_listing ",
            _ => "",
        };
        let clause = if terms.is_empty() { String::new() } else { format!("{index}WHERE {}", terms.join(" AND ")) };
        (clause, values)
    }
}

/// The listing's term for `newest_only`: no run of the same backfill and date has a higher id.
const NO_NEWER_RUN: &str = "NOT EXISTS (SELECT 1 FROM pipeline_run AS newer \
    WHERE newer.backfill_id = pipeline_run.backfill_id AND newer.execution_date IS pipeline_run.execution_date \
    AND newer.id > pipeline_run.id)";

const COLUMNS: &str = "id, pipeline_schedule_id, pipeline_uuid, backfill_id, execution_date, status, \
    variables, event_variables, metrics, passed_sla, executor_type, started_at, completed_at, \
    created_at, updated_at, worker, lease_seconds, lease_expires_at, attempt";

fn from_row(row: &Row) -> rusqlite::Result<PipelineRun> {
    Ok(PipelineRun {
        id: row.get("id")?,
        pipeline_schedule_id: row.get("pipeline_schedule_id")?,
        pipeline_uuid: row.get("pipeline_uuid")?,
        backfill_id: row.get("backfill_id")?,
        execution_date: opt_datetime(row, "execution_date")?,
        status: opt_parsed::<RunStatus, _>(row, "status")?.unwrap_or(RunStatus::Initial),
        variables: opt_object(row, "variables")?,
        event_variables: opt_object(row, "event_variables")?,
        metrics: opt_object(row, "metrics")?,
        passed_sla: row.get("passed_sla")?,
        executor_type: row.get("executor_type")?,
        started_at: opt_datetime(row, "started_at")?,
        completed_at: opt_datetime(row, "completed_at")?,
        created_at: req_datetime(row, "created_at")?,
        updated_at: req_datetime(row, "updated_at")?,
        worker: row.get("worker")?,
        lease_seconds: row.get("lease_seconds")?,
        lease_expires_at: opt_datetime(row, "lease_expires_at")?,
        attempt: row.get("attempt")?,
    })
}

/// Inserts `r` and returns its id (the given one, or a new one), leaving
/// `backfill_run_count` to the caller, `insert_pipeline_run`.
fn insert_uncounted(conn: &Connection, r: &NewPipelineRun) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!(
        "INSERT INTO pipeline_run ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))?
    .execute(params![
        r.id,
        r.pipeline_schedule_id,
        r.pipeline_uuid,
        r.backfill_id,
        micros(r.execution_date),
        r.status.as_str(),
        json_text(&r.variables),
        json_text(&r.event_variables),
        json_text(&r.metrics),
        r.passed_sla,
        r.executor_type,
        micros(r.started_at),
        micros(r.completed_at),
        micros(Some(r.created_at)),
        micros(Some(r.updated_at)),
        r.worker,
        r.lease_seconds,
        micros(r.lease_expires_at),
        r.attempt,
    ])?;
    let id = conn.last_insert_rowid();
    add_to_tally(conn, &r.pipeline_uuid, r.backfill_id, r.status.as_str(), 1)?;
    super::changes::touch(conn, r.backfill_id)?;
    Ok(id)
}

/// Adds `n` (which may be negative) to the runs in `status` of the pipeline and backfill,
/// under each listing filter they fall in (see `run_tally` in schema.sql).
fn add_to_tally(
    conn: &Connection,
    pipeline_uuid: &str,
    backfill_id: Option<i64>,
    status: &str,
    n: i64,
) -> rusqlite::Result<()> {
    const UPSERT: &str = "ON CONFLICT (pipeline_uuid, backfill_id, status) DO UPDATE SET n = n + excluded.n";
    match backfill_id {
        Some(b) => conn
            .prepare_cached(&format!(
                "INSERT INTO run_tally (pipeline_uuid, backfill_id, status, n) VALUES \
                 ('', 0, ?3, ?4), (?1, 0, ?3, ?4), ('', ?2, ?3, ?4), (?1, ?2, ?3, ?4) {UPSERT}"
            ))?
            .execute(params![pipeline_uuid, b, status, n])?,
        None => conn
            .prepare_cached(&format!(
                "INSERT INTO run_tally (pipeline_uuid, backfill_id, status, n) VALUES \
                 ('', 0, ?2, ?3), (?1, 0, ?2, ?3) {UPSERT}"
            ))?
            .execute(params![pipeline_uuid, status, n])?,
    };
    Ok(())
}

/// What every run of one start shares.
#[derive(Debug, Clone, Copy)]
pub struct StartedRuns<'a> {
    pub pipeline_schedule_id: i64,
    pub pipeline_uuid: &'a str,
    pub backfill_id: i64,
    pub created_at: DateTime,
}

/// How many runs one INSERT statement of `insert_started_runs` carries: per-statement work
/// (opening cursors on the table and its indexes, foreign-key set-up) is paid once per batch.
pub const START_BATCH: usize = 100;

fn started_runs_sql(rows: usize) -> String {
    let values: Vec<String> =
        (0..rows).map(|k| format!("(?1, ?2, ?3, ?{}, 'initial', ?{}, ?4, ?4, 1)", 5 + 2 * k, 6 + 2 * k)).collect();
    format!(
        "INSERT INTO pipeline_run (pipeline_schedule_id, pipeline_uuid, backfill_id, execution_date, status, \
         variables, created_at, updated_at, attempt) VALUES {}",
        values.join(", ")
    )
}

/// Inserts runs of a start, status `initial` and attempt 1, each an execution date and its variables as
/// JSON text, up to `START_BATCH` per statement, tallied but uncounted: the caller (`start`)
/// adds them to `backfill_run_count` once (`add_to_run_count`), or recounts.
pub fn insert_started_runs(
    conn: &Connection,
    common: &StartedRuns,
    runs: &[(DateTime, String)],
) -> rusqlite::Result<()> {
    use rusqlite::types::ToSqlOutput;
    for chunk in runs.chunks(START_BATCH) {
        let mut stmt = conn.prepare_cached(&started_runs_sql(chunk.len()))?;
        stmt.raw_bind_parameter(1, common.pipeline_schedule_id)?;
        stmt.raw_bind_parameter(2, common.pipeline_uuid)?;
        stmt.raw_bind_parameter(3, common.backfill_id)?;
        stmt.raw_bind_parameter(4, micros(Some(common.created_at)))?;
        for (k, (date, variables)) in chunk.iter().enumerate() {
            stmt.raw_bind_parameter(5 + 2 * k, micros(Some(*date)))?;
            stmt.raw_bind_parameter(6 + 2 * k, ToSqlOutput::from(variables.as_str()))?;
        }
        stmt.raw_execute()?;
    }
    let n = i64::try_from(runs.len()).unwrap_or(i64::MAX);
    add_to_tally(conn, common.pipeline_uuid, Some(common.backfill_id), RunStatus::Initial.as_str(), n)?;
    let dates: Vec<DateTime> = runs.iter().map(|(d, _)| *d).collect();
    super::date_map::note_started(conn, common.backfill_id, &dates)?;
    super::changes::touch(conn, Some(common.backfill_id))
}

/// Inserts `r`, counting it: it becomes the newest run of its date unless a newer one is
/// there already (an import may bring older ids late), and the run it supersedes stops
/// counting. Returns its id.
pub fn insert_pipeline_run(conn: &Connection, r: &NewPipelineRun) -> rusqlite::Result<i64> {
    let id = insert_uncounted(conn, r)?;
    if let Some(backfill_id) = r.backfill_id {
        let date = micros(r.execution_date);
        if !newer_run_exists(conn, backfill_id, date, id)? {
            let previous: Option<String> = conn
                .prepare_cached(
                    "SELECT status FROM pipeline_run WHERE backfill_id = ?1 AND execution_date IS ?2 AND id < ?3 \
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![backfill_id, date, id], |row| row.get(0))
                .optional()?;
            if let Some(previous) = previous {
                add_to_run_count_text(conn, backfill_id, &previous, -1)?;
            }
            add_to_run_count(conn, backfill_id, r.status, 1)?;
            super::date_map::note(conn, backfill_id, &[(r.execution_date, r.status)])?;
        }
    }
    Ok(id)
}

fn newer_run_exists(conn: &Connection, backfill_id: i64, date: Option<i64>, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM pipeline_run WHERE backfill_id = ?1 AND execution_date IS ?2 AND id > ?3)",
    )?
    .query_row(params![backfill_id, date, id], |row| row.get(0))
}

/// Adds `n` (which may be negative) to the count of the backfill's newest runs in `status`.
pub fn add_to_run_count(conn: &Connection, backfill_id: i64, status: RunStatus, n: i64) -> rusqlite::Result<()> {
    add_to_run_count_text(conn, backfill_id, status.as_str(), n)
}

fn add_to_run_count_text(conn: &Connection, backfill_id: i64, status: &str, n: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO backfill_run_count (backfill_id, status, n) VALUES (?1, ?2, ?3) \
         ON CONFLICT (backfill_id, status) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![backfill_id, status, n])?;
    Ok(())
}

/// Whether the backfill has any run at all.
pub fn backfill_has_runs(conn: &Connection, backfill_id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM pipeline_run WHERE backfill_id = ?1)")?
        .query_row([backfill_id], |row| row.get(0))
}

/// `EXISTS` this, for a run `r`, when a newer run (higher id) of its backfill and date
/// supersedes it: the definition the kept counts follow (`newer_run_exists` for one run).
const NEWER_OF_R: &str = "(SELECT 1 FROM pipeline_run AS newer WHERE newer.backfill_id = r.backfill_id \
    AND newer.execution_date IS r.execution_date AND newer.id > r.id)";

/// Counts the backfill's runs afresh, by the definition: a scan of its runs, for the rare
/// write that cannot add its change up (a start on a backfill that already had runs).
pub fn recount_runs(conn: &Connection, backfill_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM backfill_run_count WHERE backfill_id = ?1")?.execute([backfill_id])?;
    conn.prepare_cached(&format!(
        "INSERT INTO backfill_run_count (backfill_id, status, n) \
         SELECT r.backfill_id, r.status, COUNT(*) FROM pipeline_run AS r WHERE r.backfill_id = ?1 \
         AND NOT EXISTS {NEWER_OF_R} GROUP BY r.status"
    ))?
    .execute([backfill_id])?;
    super::date_map::rebuild(conn, backfill_id)?;
    super::changes::touch(conn, Some(backfill_id))
}

pub fn get_pipeline_run(conn: &Connection, id: i64) -> rusqlite::Result<Option<PipelineRun>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pipeline_run WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

/// Calls `f` with every run, by id, and the schedule it hangs from (when it names one that
/// exists), as one statement steps through the table: one row in memory at a time, whatever
/// the table holds (`export`). The first error `f` returns stops the walk and is returned.
pub fn for_each_pipeline_run<E: From<rusqlite::Error>>(
    conn: &Connection,
    mut f: impl FnMut(PipelineRun, Option<&ScheduleInfo>) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM pipeline_run ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    // Runs in id order come in long stretches of one schedule (a start's), so the schedule
    // is read, and its variables parsed, once per stretch rather than once per run.
    let mut last: Option<(i64, Option<ScheduleInfo>)> = None;
    while let Some(row) = rows.next()? {
        let run = from_row(row)?;
        let schedule = match run.pipeline_schedule_id {
            None => None,
            Some(id) => {
                if last.as_ref().is_none_or(|(last_id, _)| *last_id != id) {
                    last = Some((id, super::schedules::get_schedule_info(conn, id)?));
                }
                last.as_ref().and_then(|(_, s)| s.as_ref())
            }
        };
        f(run, schedule)?;
    }
    Ok(())
}

/// One page of runs, newest (highest id) first. With a status filter it reads one of the
/// status listing indexes, so a rare status costs no more than a common one.
pub fn list_pipeline_runs(
    conn: &Connection,
    filter: &RunFilter,
    limit: u64,
    start: RunStart,
) -> rusqlite::Result<Vec<PipelineRun>> {
    let (below, offset) = match start {
        RunStart::Offset(n) => (None, n),
        RunStart::Below(id) => (Some(id), 0),
    };
    let (clause, mut values) = filter.clause(below);
    values.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    values.push(SqlValue::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pipeline_run {clause} ORDER BY id DESC LIMIT ? OFFSET ?"))?
        .query_map(params_from_iter(values), from_row)?
        .collect()
}

/// How many runs match: read from `run_tally` (at most five rows), or for `newest_only` from
/// `backfill_run_count`, never by scanning runs; with `dates`, counted over the range's runs
/// in the backfill's date index.
pub fn count_pipeline_runs(conn: &Connection, filter: &RunFilter) -> rusqlite::Result<u64> {
    if filter.dates.is_some() {
        let (clause, values) = filter.clause(None);
        let n: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM pipeline_run {clause}"))?
            .query_row(params_from_iter(values), |r| r.get(0))?;
        return Ok(n.unsigned_abs());
    }
    let backfill_id = match filter.backfill_id {
        // No backfill has such an id, and 0 is the tally's "any backfill".
        Some(id) if id < 1 => return Ok(0),
        Some(id) => id,
        None => 0,
    };
    let pipeline_uuid = filter.pipeline_uuid.as_deref().unwrap_or("");
    if filter.newest_only {
        // The newest runs of one backfill's dates, by status; a backfill's runs are all of its
        // pipeline, so another pipeline's filter matches none.
        let n: i64 = conn
            .prepare_cached(
                "SELECT COALESCE((SELECT SUM(c.n) FROM backfill_run_count AS c WHERE c.backfill_id = ?1 \
                 AND (?2 IS NULL OR c.status = ?2)), 0) \
                 * (?3 = '' OR EXISTS (SELECT 1 FROM backfill WHERE id = ?1 AND pipeline_uuid = ?3))",
            )?
            .query_row(params![backfill_id, filter.status.map(|s| s.as_str()), pipeline_uuid], |r| r.get(0))?;
        return Ok(n.unsigned_abs());
    }
    let n: i64 = match filter.status {
        Some(status) => conn
            .prepare_cached(
                "SELECT COALESCE(SUM(n), 0) FROM run_tally WHERE pipeline_uuid = ?1 AND backfill_id = ?2 AND status = ?3",
            )?
            .query_row(params![pipeline_uuid, backfill_id, status.as_str()], |r| r.get(0))?,
        None => conn
            .prepare_cached("SELECT COALESCE(SUM(n), 0) FROM run_tally WHERE pipeline_uuid = ?1 AND backfill_id = ?2")?
            .query_row(params![pipeline_uuid, backfill_id], |r| r.get(0))?,
    };
    Ok(n.unsigned_abs())
}

/// Writes what a report, a claim or an expiry changes (status, its timestamps, metrics and
/// the lease), moving the run between counts when it is the newest of its date. `previous`
/// is the status it had.
pub fn update_pipeline_run(conn: &Connection, run: &PipelineRun, previous: RunStatus) -> rusqlite::Result<()> {
    if previous != run.status {
        add_to_tally(conn, &run.pipeline_uuid, run.backfill_id, previous.as_str(), -1)?;
        add_to_tally(conn, &run.pipeline_uuid, run.backfill_id, run.status.as_str(), 1)?;
    }
    if let Some(backfill_id) = run.backfill_id.filter(|_| previous != run.status) {
        if !newer_run_exists(conn, backfill_id, micros(run.execution_date), run.id)? {
            add_to_run_count(conn, backfill_id, previous, -1)?;
            add_to_run_count(conn, backfill_id, run.status, 1)?;
            super::date_map::note(conn, backfill_id, &[(run.execution_date, run.status)])?;
        }
    }
    conn.prepare_cached(
        "UPDATE pipeline_run SET status = ?2, started_at = ?3, completed_at = ?4, updated_at = ?5, metrics = ?6, \
         worker = ?7, lease_seconds = ?8, lease_expires_at = ?9 WHERE id = ?1",
    )?
    .execute(params![
        run.id,
        run.status.as_str(),
        micros(run.started_at),
        micros(run.completed_at),
        micros(Some(run.updated_at)),
        json_text(&run.metrics),
        run.worker,
        run.lease_seconds,
        micros(run.lease_expires_at),
    ])?;
    super::changes::touch(conn, run.backfill_id)
}

const WAITING: &str = "SELECT id FROM pipeline_run INDEXED BY pipeline_run_waiting \
    WHERE backfill_id = ?1 AND status = 'initial' ORDER BY execution_date, id LIMIT ?2";
const WAITING_BACKWARDS: &str = "SELECT id FROM pipeline_run INDEXED BY pipeline_run_waiting \
    WHERE backfill_id = ?1 AND status = 'initial' ORDER BY execution_date DESC, id DESC LIMIT ?2";
const EXPIRED_LEASES: &str = "SELECT id FROM pipeline_run INDEXED BY pipeline_run_lease \
    WHERE lease_expires_at IS NOT NULL AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2";

/// Up to `limit` ids of the backfill's runs waiting to be claimed (`initial`), the oldest
/// execution date first, or the newest first when `backwards` (index `pipeline_run_waiting`).
pub fn waiting_runs(conn: &Connection, backfill_id: i64, limit: u64, backwards: bool) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(if backwards { WAITING_BACKWARDS } else { WAITING })?
        .query_map(params![backfill_id, i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
        .collect()
}

/// The lease a claim gives each of its runs.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub worker: &'a str,
    pub seconds: i64,
    pub expires_at: DateTime,
    /// What runs the claimed runs (the run's `executor_type`), when the claim says.
    pub executor_type: Option<&'a str>,
}

/// Moves the backfill's runs `ids` (waiting, as `waiting_runs` gave them) to `running` under
/// `lease`, `started_at` now, in two statements whatever their number, counted at once;
/// a run without an `attempt` (from an older file) gets its place among its date's runs.
/// Returns them in the order of `ids`.
pub fn claim_runs(
    conn: &Connection,
    backfill_id: i64,
    pipeline_uuid: &str,
    ids: &[i64],
    lease: Lease,
    now: DateTime,
) -> rusqlite::Result<Vec<PipelineRun>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let list = serde_json::to_string(ids).unwrap_or_default();
    // Runs that a newer run of their date supersedes (an import may bring such) do not count.
    let superseded: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM pipeline_run AS r WHERE r.id IN (SELECT value FROM json_each(?1)) \
             AND EXISTS {NEWER_OF_R}"
        ))?
        .query_row([&list], |r| r.get(0))?;
    let at = micros(Some(now));
    let mut runs: Vec<PipelineRun> = conn
        .prepare_cached(&format!(
            "UPDATE pipeline_run SET status = 'running', started_at = ?2, updated_at = ?2, worker = ?3, \
             lease_seconds = ?4, lease_expires_at = ?5, executor_type = COALESCE(?6, executor_type), attempt = COALESCE(attempt, \
                 (SELECT COUNT(*) FROM pipeline_run AS d WHERE d.backfill_id = pipeline_run.backfill_id \
                  AND d.execution_date IS pipeline_run.execution_date AND d.id <= pipeline_run.id)) \
             WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'initial' RETURNING {COLUMNS}"
        ))?
        .query_map(
            params![list, at, lease.worker, lease.seconds, micros(Some(lease.expires_at)), lease.executor_type],
            from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let k = runs.len() as i64;
    add_to_tally(conn, pipeline_uuid, Some(backfill_id), RunStatus::Initial.as_str(), -k)?;
    add_to_tally(conn, pipeline_uuid, Some(backfill_id), RunStatus::Running.as_str(), k)?;
    add_to_run_count(conn, backfill_id, RunStatus::Initial, -(k - superseded))?;
    add_to_run_count(conn, backfill_id, RunStatus::Running, k - superseded)?;
    let mut newest = Vec::with_capacity(runs.len());
    for r in &runs {
        if superseded == 0 || !newer_run_exists(conn, backfill_id, micros(r.execution_date), r.id)? {
            newest.push((r.execution_date, RunStatus::Running));
        }
    }
    super::date_map::note(conn, backfill_id, &newest)?;
    super::changes::touch(conn, Some(backfill_id))?;
    super::sort_as(&mut runs, ids, |r| r.id);
    Ok(runs)
}

/// Up to `limit` ids of runs whose lease ran out at or before `now`, the soonest first
/// (index `pipeline_run_lease`: the cost is that of the expired leases alone).
pub fn expired_leases(conn: &Connection, now: DateTime, limit: u64) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(EXPIRED_LEASES)?
        .query_map(params![micros(Some(now)), i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
        .collect()
}

/// When the soonest lease runs out, if any run is leased (one index entry).
pub fn next_lease_expiry(conn: &Connection) -> rusqlite::Result<Option<DateTime>> {
    let m: Option<i64> = conn
        .prepare_cached("SELECT MIN(lease_expires_at) FROM pipeline_run INDEXED BY pipeline_run_lease WHERE lease_expires_at IS NOT NULL")?
        .query_row([], |r| r.get(0))?;
    Ok(m.and_then(crate::domain::datetime::from_micros))
}

/// How many runs the backfill has for `date`: the next run of the date is attempt n + 1.
pub fn runs_of_date(conn: &Connection, backfill_id: i64, date: Option<DateTime>) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM pipeline_run WHERE backfill_id = ?1 AND execution_date IS ?2")?
        .query_row(params![backfill_id, micros(date)], |r| r.get(0))
}

/// Whether a run of the same backfill and date has a higher id than `run`.
pub fn is_superseded(conn: &Connection, run: &PipelineRun) -> rusqlite::Result<bool> {
    match run.backfill_id {
        Some(b) => newer_run_exists(conn, b, micros(run.execution_date), run.id),
        None => Ok(false),
    }
}

/// For each date of the backfill whose newest run is in one of `statuses`, a new `initial`
/// run of that date (its variables and schedule copied, the next attempt), in one
/// statement, counted; returns how many. Reads every run of the backfill once: the rare
/// write of a run again.
pub fn repeat_dates(
    conn: &Connection,
    backfill_id: i64,
    statuses: &[RunStatus],
    now: DateTime,
) -> rusqlite::Result<u64> {
    if statuses.is_empty() {
        return Ok(0);
    }
    let list = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let newest =
        format!("FROM pipeline_run AS r WHERE r.backfill_id = ?1 AND r.status IN ({list}) AND NOT EXISTS {NEWER_OF_R}");
    let moving: Vec<(String, String, i64)> = conn
        .prepare(&format!("SELECT r.pipeline_uuid, r.status, COUNT(*) {newest} GROUP BY r.pipeline_uuid, r.status"))?
        .query_map([backfill_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let dates: Vec<(Option<DateTime>, RunStatus)> = conn
        .prepare(&format!("SELECT r.execution_date {newest}"))?
        .query_map([backfill_id], |row| Ok((opt_datetime(row, 0)?, RunStatus::Initial)))?
        .collect::<rusqlite::Result<_>>()?;
    let created = conn.prepare(&format!(
        "INSERT INTO pipeline_run (pipeline_schedule_id, pipeline_uuid, backfill_id, execution_date, status, \
         variables, created_at, updated_at, attempt) \
         SELECT r.pipeline_schedule_id, r.pipeline_uuid, r.backfill_id, r.execution_date, 'initial', r.variables, ?2, ?2, \
             (SELECT COUNT(*) FROM pipeline_run AS c WHERE c.backfill_id = r.backfill_id \
                 AND c.execution_date IS r.execution_date) + 1 \
         {newest} ORDER BY r.execution_date, r.id"
    ))?
    .execute(params![backfill_id, micros(Some(now))])?;
    for (pipeline_uuid, status, n) in moving {
        add_to_run_count_text(conn, backfill_id, &status, -n)?;
        add_to_run_count(conn, backfill_id, RunStatus::Initial, n)?;
        add_to_tally(conn, &pipeline_uuid, Some(backfill_id), RunStatus::Initial.as_str(), n)?;
    }
    super::date_map::note(conn, backfill_id, &dates)?;
    super::changes::touch(conn, Some(backfill_id))?;
    Ok(created as u64)
}

/// Cancels every run of the backfill that has not finished; returns how many. Every newest
/// run that was initial or running is among them, so the counts move over whole.
pub fn cancel_unfinished_runs(conn: &Connection, backfill_id: i64, now: DateTime) -> rusqlite::Result<usize> {
    let moving: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(n), 0) FROM backfill_run_count \
             WHERE backfill_id = ?1 AND status IN ('initial', 'running')",
        )?
        .query_row([backfill_id], |row| row.get(0))?;
    conn.prepare_cached(
        "UPDATE backfill_run_count SET n = 0 WHERE backfill_id = ?1 AND status IN ('initial', 'running')",
    )?
    .execute([backfill_id])?;
    add_to_run_count(conn, backfill_id, RunStatus::Cancelled, moving)?;
    super::date_map::cancel_unfinished(conn, backfill_id)?;
    // Every run moving, by status, from the tally (no scan of the runs; a backfill's runs are
    // all of its pipeline).
    let tallied: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT pipeline_uuid, status, n FROM run_tally \
             WHERE pipeline_uuid = (SELECT pipeline_uuid FROM backfill WHERE id = ?1) AND backfill_id = ?1 \
             AND status IN ('initial', 'running') AND n <> 0",
        )?
        .query_map([backfill_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (pipeline_uuid, status, n) in tallied {
        add_to_tally(conn, &pipeline_uuid, Some(backfill_id), &status, -n)?;
        add_to_tally(conn, &pipeline_uuid, Some(backfill_id), RunStatus::Cancelled.as_str(), n)?;
    }
    // Leases end with the runs; `worker` stays, so a holder's next heartbeat can be told
    // that its run was cancelled.
    let cancelled = conn
        .prepare_cached(
            "UPDATE pipeline_run SET status = 'cancelled', lease_expires_at = NULL, updated_at = ?2 \
             WHERE backfill_id = ?1 AND status IN ('initial', 'running')",
        )?
        .execute(params![backfill_id, micros(Some(now))])?;
    super::changes::touch(conn, Some(backfill_id))?;
    Ok(cancelled)
}

/// How many runs each status has, all backfills and pipelines (the kept `run_tally`).
pub fn status_totals(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT status, n FROM run_tally WHERE pipeline_uuid = '' AND backfill_id = 0 ORDER BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let rows: Vec<String> = stmt
            .query_map(params_from_iter(std::iter::repeat_n(1_i64, n)), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.join("; ")
    }

    /// A claim's and the sweep's reads each take their partial index in order: their cost is
    /// that of the rows they return, not of the stored runs or backfills.
    #[test]
    fn claims_and_the_sweep_read_their_own_indexes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        for (sql, index) in [
            (WAITING, "pipeline_run_waiting"),
            (WAITING_BACKWARDS, "pipeline_run_waiting"),
            (EXPIRED_LEASES, "pipeline_run_lease"),
            (crate::store::backfills::NEXT_CLAIMABLE, "backfill_run_waiting"),
            (crate::store::backfills::NEXT_CLAIMABLE_IN_PIPELINE, "backfill_run_waiting"),
        ] {
            let plan = plan(&conn, sql);
            assert!(plan.contains(&format!("INDEX {index}")), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
        }
    }

    /// A range of one backfill's dates reads that backfill's index by date, for the page and
    /// for its count: what it costs is the range's runs (sorted by id), not the table's.
    #[test]
    fn a_range_of_dates_reads_the_backfill_s_index_by_date() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        let day = |d: u8| crate::domain::datetime::parse(&format!("2023-03-{d:02}")).unwrap();
        for status in [None, Some(RunStatus::Failed)] {
            for pipeline_uuid in [None, Some("p".to_string())] {
                let filter = RunFilter {
                    backfill_id: Some(1),
                    pipeline_uuid,
                    status,
                    newest_only: false,
                    dates: Some((day(1), day(2))),
                };
                for sql in [
                    format!("SELECT {COLUMNS} FROM pipeline_run {} ORDER BY id DESC LIMIT 40", filter.clause(None).0),
                    format!("SELECT COUNT(*) FROM pipeline_run {}", filter.clause(None).0),
                ] {
                    let plan: Vec<String> = conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .unwrap()
                        .query_map(params_from_iter(filter.clause(None).1), |r| r.get::<_, String>(3))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let plan = plan.join("; ");
                    assert!(
                        plan.contains(
                            "INDEX pipeline_run_backfill (backfill_id=? AND execution_date>? AND execution_date<?)"
                        ),
                        "{filter:?}: {plan}"
                    );
                }
            }
        }
    }

    /// Every filter of the run listing reads an index in the listing's order: no scan of the
    /// table, no sort of what matches (either would grow with the table).
    #[test]
    fn every_listing_filter_reads_an_index_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        for backfill_id in [None, Some(1)] {
            for pipeline_uuid in [None, Some("p".to_string())] {
                for (status, newest_only) in
                    [(None, false), (Some(RunStatus::Failed), false), (Some(RunStatus::Failed), true)]
                {
                    if newest_only && backfill_id.is_none() {
                        continue;
                    }
                    for below in [None, Some(100)] {
                        let filter = RunFilter {
                            backfill_id,
                            pipeline_uuid: pipeline_uuid.clone(),
                            status,
                            newest_only,
                            dates: None,
                        };
                        let (clause, values) = filter.clause(below);
                        let sql = format!(
                            "EXPLAIN QUERY PLAN SELECT {COLUMNS} FROM pipeline_run {clause} ORDER BY id DESC LIMIT 40"
                        );
                        let plan: Vec<String> = conn
                            .prepare(&sql)
                            .unwrap()
                            .query_map(params_from_iter(values), |r| r.get::<_, String>(3))
                            .unwrap()
                            .collect::<Result<_, _>>()
                            .unwrap();
                        let plan = plan.join("; ");
                        assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts: {plan}");
                        if newest_only {
                            // A newer run of the date is looked up by its backfill and date.
                            assert!(plan.contains("INDEX pipeline_run_backfill "), "{filter:?}: {plan}");
                        }
                        let index = match (backfill_id.is_some(), pipeline_uuid.is_some(), status.is_some()) {
                            (false, false, false) => None,
                            (true, _, false) => Some("pipeline_run_backfill_listing"),
                            (true, _, true) => Some("pipeline_run_backfill_status_listing"),
                            (false, true, false) => Some("pipeline_run_pipeline_listing"),
                            (false, true, true) => Some("pipeline_run_pipeline_status_listing"),
                            (false, false, true) => Some("pipeline_run_status_listing"),
                        };
                        match index {
                            Some(index) => {
                                assert!(plan.contains(&format!("USING INDEX {index} ")), "{filter:?}: {plan}")
                            }
                            None => assert!(!plan.contains("INDEX"), "{filter:?}: {plan}"),
                        }
                    }
                }
            }
        }
    }
}
