//! The `backfill` table, and the run counts shown beside each backfill.

use std::collections::HashMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

use super::{json_text, micros, opt_datetime, opt_object, opt_parsed, req_datetime, ListingKey, Start};
use crate::domain::model::{
    Backfill, BackfillFields, BackfillRecord, BackfillStatus, NewBackfill, RunStatus, RunStatusCounts,
};

const COLUMNS: &str = "id, name, pipeline_uuid, block_uuid, start_datetime, end_datetime, \
    interval_type, interval_units, status, variables, settings, metrics, pipeline_schedule_id, \
    started_at, completed_at, failed_at, created_at, updated_at, is_paused, is_halted";

/// Positions in `COLUMNS` (checked by a test): the listing reads tens of thousands of rows a
/// second, and a lookup by name walks every column name for every value.
mod col {
    pub const ID: usize = 0;
    pub const NAME: usize = 1;
    pub const PIPELINE_UUID: usize = 2;
    pub const BLOCK_UUID: usize = 3;
    pub const START_DATETIME: usize = 4;
    pub const END_DATETIME: usize = 5;
    pub const INTERVAL_TYPE: usize = 6;
    pub const INTERVAL_UNITS: usize = 7;
    pub const STATUS: usize = 8;
    pub const VARIABLES: usize = 9;
    pub const SETTINGS: usize = 10;
    pub const METRICS: usize = 11;
    pub const PIPELINE_SCHEDULE_ID: usize = 12;
    pub const STARTED_AT: usize = 13;
    pub const COMPLETED_AT: usize = 14;
    pub const FAILED_AT: usize = 15;
    pub const CREATED_AT: usize = 16;
    pub const UPDATED_AT: usize = 17;
    pub const IS_PAUSED: usize = 18;
    pub const IS_HALTED: usize = 19;
}

fn from_row(row: &Row) -> rusqlite::Result<Backfill> {
    Ok(Backfill {
        id: row.get(col::ID)?,
        pipeline_uuid: row.get(col::PIPELINE_UUID)?,
        fields: BackfillFields {
            name: row.get(col::NAME)?,
            block_uuid: row.get(col::BLOCK_UUID)?,
            start_datetime: opt_datetime(row, col::START_DATETIME)?,
            end_datetime: opt_datetime(row, col::END_DATETIME)?,
            interval_type: opt_parsed(row, col::INTERVAL_TYPE)?,
            interval_units: row.get(col::INTERVAL_UNITS)?,
            variables: opt_object(row, col::VARIABLES)?,
            settings: opt_object(row, col::SETTINGS)?,
        },
        status: opt_parsed(row, col::STATUS)?,
        metrics: opt_object(row, col::METRICS)?,
        pipeline_schedule_id: row.get(col::PIPELINE_SCHEDULE_ID)?,
        started_at: opt_datetime(row, col::STARTED_AT)?,
        completed_at: opt_datetime(row, col::COMPLETED_AT)?,
        failed_at: opt_datetime(row, col::FAILED_AT)?,
        created_at: req_datetime(row, col::CREATED_AT)?,
        updated_at: req_datetime(row, col::UPDATED_AT)?,
        is_paused: row.get(col::IS_PAUSED)?,
        is_halted: row.get(col::IS_HALTED)?,
    })
}

/// Every column of `b` but `id`, in `COLUMNS` order.
fn column_values<Id>(b: &BackfillRecord<Id>) -> [SqlValue; 19] {
    let f = &b.fields;
    let text = |t: Option<&str>| t.map_or(SqlValue::Null, |t| SqlValue::Text(t.to_string()));
    let int = |i: Option<i64>| i.map_or(SqlValue::Null, SqlValue::Integer);
    [
        SqlValue::Text(f.name.clone()),
        SqlValue::Text(b.pipeline_uuid.clone()),
        text(f.block_uuid.as_deref()),
        int(micros(f.start_datetime)),
        int(micros(f.end_datetime)),
        text(f.interval_type.map(|t| t.as_str())),
        int(f.interval_units),
        text(b.status.map(|s| s.as_str())),
        text(json_text(&f.variables).as_deref()),
        text(json_text(&f.settings).as_deref()),
        text(json_text(&b.metrics).as_deref()),
        int(b.pipeline_schedule_id),
        int(micros(b.started_at)),
        int(micros(b.completed_at)),
        int(micros(b.failed_at)),
        int(micros(Some(b.created_at))),
        int(micros(Some(b.updated_at))),
        SqlValue::Integer(i64::from(b.is_paused)),
        SqlValue::Integer(i64::from(b.is_halted)),
    ]
}

/// Inserts `b` and returns its id (the given one, or a new one).
pub fn insert_backfill(conn: &Connection, b: &NewBackfill) -> rusqlite::Result<i64> {
    let id = b.id.map_or(SqlValue::Null, SqlValue::Integer);
    conn.prepare_cached(&format!(
        "INSERT INTO backfill ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
    ))?
    .execute(params_from_iter(std::iter::once(id).chain(column_values(b))))?;
    let id = conn.last_insert_rowid();
    super::changes::touch(conn, Some(id))?;
    Ok(id)
}

/// Writes every column of `b` but `id`; `false` when no row has its id.
pub fn update_backfill(conn: &Connection, b: &Backfill) -> rusqlite::Result<bool> {
    let dates_before = super::date_map::schedule_of(conn, b.id)?;
    let changed = conn
        .prepare_cached(
            "UPDATE backfill SET name = ?2, pipeline_uuid = ?3, block_uuid = ?4, start_datetime = ?5, \
             end_datetime = ?6, interval_type = ?7, interval_units = ?8, status = ?9, variables = ?10, \
             settings = ?11, metrics = ?12, pipeline_schedule_id = ?13, started_at = ?14, \
             completed_at = ?15, failed_at = ?16, created_at = ?17, updated_at = ?18, is_paused = ?19, \
             is_halted = ?20 WHERE id = ?1",
        )?
        .execute(params_from_iter(std::iter::once(SqlValue::Integer(b.id)).chain(column_values(b))))?;
    if super::date_map::schedule_of(conn, b.id)? != dates_before {
        // Its dates moved: each run's date has a new place, or none.
        super::date_map::rebuild(conn, b.id)?;
    }
    super::changes::touch(conn, Some(b.id))?;
    Ok(changed == 1)
}

/// Deletes the backfill; its runs stay, with `backfill_id` set to null by the foreign key.
pub fn delete_backfill(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    let deleted = conn.prepare_cached("DELETE FROM backfill WHERE id = ?1")?.execute([id])? == 1;
    // Its runs, unlinked, now show no backfill.
    super::changes::touch(conn, Some(id))?;
    Ok(deleted)
}

pub fn get_backfill(conn: &Connection, id: i64) -> rusqlite::Result<Option<Backfill>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM backfill WHERE id = ?1"))?.query_row([id], from_row).optional()
}

/// The statement and parameters of a listing page, selecting `select`.
fn listing_query(
    select: &str,
    pipeline_uuid: Option<&str>,
    limit: u64,
    start: Start,
) -> (String, Vec<rusqlite::types::Value>) {
    // SQLite takes LIMIT and OFFSET as i64; the API caps both well below i64::MAX.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let order = "ORDER BY created_at DESC, id DESC LIMIT ?";
    match (pipeline_uuid, start) {
        (None, Start::Offset(offset)) => (
            format!("SELECT {select} FROM backfill {order} OFFSET ?"),
            vec![limit.into(), i64::try_from(offset).unwrap_or(i64::MAX).into()],
        ),
        (Some(uuid), Start::Offset(offset)) => (
            format!("SELECT {select} FROM backfill WHERE pipeline_uuid = ? {order} OFFSET ?"),
            vec![uuid.to_string().into(), limit.into(), i64::try_from(offset).unwrap_or(i64::MAX).into()],
        ),
        (None, Start::After(key)) => (
            format!("SELECT {select} FROM backfill WHERE (created_at, id) < (?, ?) {order}"),
            vec![micros(Some(key.created_at)).into(), key.id.into(), limit.into()],
        ),
        (Some(uuid), Start::After(key)) => (
            format!("SELECT {select} FROM backfill WHERE pipeline_uuid = ? AND (created_at, id) < (?, ?) {order}"),
            vec![uuid.to_string().into(), micros(Some(key.created_at)).into(), key.id.into(), limit.into()],
        ),
    }
}

/// One page of backfills, newest `created_at` first and, among equal ones, the higher id
/// first; only `pipeline_uuid`'s when given. Each variant walks its own index (schema.sql:
/// backfill_listing, backfill_pipeline_listing) with no sort step. A page after an offset
/// first takes its ids from the index alone, then reads just those rows: the skipped
/// entries are then narrow index entries, not table rows (docs/performance.md has the cost).
pub fn list_backfills(
    conn: &Connection,
    pipeline_uuid: Option<&str>,
    limit: u64,
    start: Start,
) -> rusqlite::Result<Vec<Backfill>> {
    if let Start::Offset(1..) = start {
        let (sql, values) = listing_query("id", pipeline_uuid, limit, start);
        let ids: Vec<i64> =
            conn.prepare_cached(&sql)?.query_map(params_from_iter(values), |r| r.get(0))?.collect::<Result<_, _>>()?;
        return get_backfills(conn, &ids);
    }
    let (sql, values) = listing_query(COLUMNS, pipeline_uuid, limit, start);
    conn.prepare_cached(&sql)?.query_map(params_from_iter(values), from_row)?.collect()
}

/// Which backfills a listing shows beyond `pipeline_uuid`: some statuses (any of them), a
/// name's prefix without case (ASCII letters folded, as SQLite's NOCASE folds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillFilter {
    pub pipeline_uuid: Option<String>,
    /// Empty: any status (and not started).
    pub statuses: Vec<BackfillStatus>,
    pub name_prefix: Option<String>,
}

/// The most matches of a name prefix read through the name index and sorted; a prefix
/// matching more is listed by walking the listing's order instead, where its matches are
/// then at least this dense among the rows walked (`list_filtered`).
pub const PREFIX_SORTED_AT_MOST: i64 = 5000;

impl BackfillFilter {
    fn is_plain(&self) -> bool {
        self.statuses.is_empty() && self.name_prefix.is_none()
    }

    /// The WHERE terms of the filter but `status`, and their values: the pipeline, the
    /// prefix's range in NOCASE order (a name that starts with the prefix sorts from the
    /// prefix up to the prefix followed by the last code point), the keyset.
    fn terms(&self, after: Option<ListingKey>) -> (Vec<&'static str>, Vec<SqlValue>) {
        let mut terms = vec![];
        let mut values = vec![];
        if let Some(p) = &self.pipeline_uuid {
            terms.push("pipeline_uuid = ?");
            values.push(SqlValue::Text(p.clone()));
        }
        if let Some(prefix) = &self.name_prefix {
            terms.push("name >= ? COLLATE NOCASE AND name < ? COLLATE NOCASE");
            values.push(SqlValue::Text(prefix.clone()));
            values.push(SqlValue::Text(format!("{prefix}\u{10FFFF}")));
        }
        if let Some(key) = after {
            terms.push("(created_at, id) < (?, ?)");
            values.push(SqlValue::Integer(micros(Some(key.created_at)).unwrap_or(0)));
            values.push(SqlValue::Integer(key.id));
        }
        (terms, values)
    }

    /// Whether the name prefix matches at most `PREFIX_SORTED_AT_MOST` backfills (of any
    /// pipeline or status): a walk of at most that many entries of the name index.
    fn prefix_is_narrow(&self, conn: &Connection) -> rusqlite::Result<bool> {
        let Some(prefix) = &self.name_prefix else { return Ok(false) };
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM backfill INDEXED BY backfill_name_listing \
                 WHERE name >= ?1 COLLATE NOCASE AND name < ?2 COLLATE NOCASE LIMIT ?3)",
            )?
            .query_row(rusqlite::params![prefix, format!("{prefix}\u{10FFFF}"), PREFIX_SORTED_AT_MOST + 1], |r| {
                r.get(0)
            })?;
        Ok(n <= PREFIX_SORTED_AT_MOST)
    }
}

fn statuses_in(statuses: &[BackfillStatus]) -> String {
    statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

/// One page of the backfills `filter` matches, in the listing's order (`list_backfills`).
/// Without a status or prefix, `list_backfills`. With one status, its rows come in order
/// from its own index (per pipeline when one is given); with several, each status's keys
/// come so and are merged as they come, and the page's rows are read by id: a page walks at
/// most (offset + limit) index entries per status, however many match, and holds only the
/// page in memory (an offset is skipped, never collected). With a name prefix that matches
/// few backfills (`PREFIX_SORTED_AT_MOST`), its matches are read through the name index and
/// sorted; one matching more is found walking the listing's order (or the status's), where
/// at least that share of rows match.
pub fn list_filtered(
    conn: &Connection,
    filter: &BackfillFilter,
    limit: u64,
    start: Start,
) -> rusqlite::Result<Vec<Backfill>> {
    if filter.is_plain() {
        return list_backfills(conn, filter.pipeline_uuid.as_deref(), limit, start);
    }
    let (after, offset) = match start {
        Start::Offset(n) => (None, n),
        Start::After(key) => (Some(key), 0),
    };
    let (limit, offset) = (i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX));
    let order = "ORDER BY created_at DESC, id DESC";
    let (terms, values) = filter.terms(after);
    let narrow = filter.prefix_is_narrow(conn)?;
    if narrow || filter.statuses.len() < 2 {
        // One statement: through the name index (narrow), the listing's (a wide prefix), or
        // the status's own; the offset skipped in SQL.
        let index = match (narrow, filter.statuses.is_empty(), filter.pipeline_uuid.is_some()) {
            (true, _, _) => "backfill_name_listing",
            (false, true, false) => "backfill_listing",
            (false, true, true) => "backfill_pipeline_listing",
            (false, false, false) => "backfill_status_listing",
            (false, false, true) => "backfill_pipeline_status_listing",
        };
        let mut terms = terms;
        let in_list;
        if !filter.statuses.is_empty() {
            in_list = format!("status IN ({})", statuses_in(&filter.statuses));
            terms.push(&in_list);
        }
        let mut values = values;
        values.extend([SqlValue::Integer(limit), SqlValue::Integer(offset)]);
        let sql = format!(
            "SELECT {COLUMNS} FROM backfill INDEXED BY {index} WHERE {} {order} LIMIT ? OFFSET ?",
            terms.join(" AND ")
        );
        return conn.prepare_cached(&sql)?.query_map(params_from_iter(values), from_row)?.collect();
    }
    // Several statuses: each status's keys in order from its own index (the index alone is
    // read), merged as they come, the offset skipped in the merge, so that memory holds the
    // page and not what it skips; then the page's rows by id.
    let index =
        if filter.pipeline_uuid.is_some() { "backfill_pipeline_status_listing" } else { "backfill_status_listing" };
    let mut statements = vec![];
    for _ in &filter.statuses {
        let mut terms = terms.clone();
        terms.push("status = ?");
        let sql = format!(
            "SELECT created_at, id FROM backfill INDEXED BY {index} WHERE {} {order} LIMIT ?",
            terms.join(" AND ")
        );
        statements.push(conn.prepare(&sql)?);
    }
    let wanted = offset.saturating_add(limit);
    let mut streams = vec![];
    for (statement, status) in statements.iter_mut().zip(&filter.statuses) {
        let mut values = values.clone();
        values.extend([SqlValue::Text(status.as_str().into()), SqlValue::Integer(wanted)]);
        streams.push(statement.query(params_from_iter(values))?);
    }
    let key = |row: Option<&Row>| -> rusqlite::Result<Option<(i64, i64)>> {
        row.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose()
    };
    let mut heads = vec![];
    for s in &mut streams {
        heads.push(key(s.next()?)?);
    }
    let (mut skipped, mut ids) = (0i64, vec![]);
    while (ids.len() as i64) < limit {
        // The newest head (created_at, then id, both descending).
        let Some(at) = (0..heads.len()).filter(|i| heads[*i].is_some()).max_by_key(|i| heads[*i]) else { break };
        let (_, id) = heads[at].expect("a head was found");
        if skipped < offset {
            skipped += 1;
        } else {
            ids.push(id);
        }
        heads[at] = key(streams[at].next()?)?;
    }
    drop(streams);
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut rows: Vec<Backfill> = conn
        .prepare(&format!("SELECT {COLUMNS} FROM backfill WHERE id IN ({marks})"))?
        .query_map(params_from_iter(&ids), from_row)?
        .collect::<Result<_, _>>()?;
    rows.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
    Ok(rows)
}

/// How many backfills `filter` matches. Statuses alone: the kept `backfill_status_tally`
/// (a row per status). With a name prefix: the matches counted through the name index,
/// a walk as long as the matches (with a status or pipeline, each match's row is read too).
pub fn count_filtered(conn: &Connection, filter: &BackfillFilter) -> rusqlite::Result<u64> {
    if filter.is_plain() {
        return count_backfills(conn, filter.pipeline_uuid.as_deref());
    }
    if filter.name_prefix.is_none() {
        let n: i64 = conn
            .prepare_cached(&format!(
                "SELECT COALESCE(SUM(n), 0) FROM backfill_status_tally WHERE pipeline_uuid = ?1 AND status IN ({})",
                statuses_in(&filter.statuses)
            ))?
            .query_row([filter.pipeline_uuid.as_deref().unwrap_or("")], |r| r.get(0))?;
        return Ok(n.unsigned_abs());
    }
    let (mut terms, values) = filter.terms(None);
    let in_list;
    if !filter.statuses.is_empty() {
        in_list = format!("status IN ({})", statuses_in(&filter.statuses));
        terms.push(&in_list);
    }
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM backfill INDEXED BY backfill_name_listing WHERE {}",
            terms.join(" AND ")
        ))?
        .query_row(params_from_iter(values), |r| r.get(0))?;
    Ok(n.unsigned_abs())
}

/// The backfills with these ids, in the order of `ids` (missing ones left out).
pub fn get_backfills(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<Backfill>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM backfill WHERE id IN ({})", placeholders(ids.len())))?;
    let mut rows = stmt.query_map(params_from_iter(ids), from_row)?.collect::<rusqlite::Result<Vec<Backfill>>>()?;
    super::sort_as(&mut rows, ids, |b| b.id);
    Ok(rows)
}

/// The pipeline of backfill `id`, when there is one: a primary-key lookup of one column.
pub fn pipeline_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT pipeline_uuid FROM backfill WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()
}

/// Calls `f` with every backfill, by id, as the statement steps through the table: one row
/// in memory at a time, whatever the table holds (`export`). The first error `f` returns
/// stops the walk and is returned.
pub fn for_each_backfill<E: From<rusqlite::Error>>(
    conn: &Connection,
    mut f: impl FnMut(Backfill) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM backfill ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        f(from_row(row)?)?;
    }
    Ok(())
}

/// How many backfills `list_backfills` pages through: one row of `backfill_count`, which
/// triggers keep (schema.sql), instead of a scan of every matching row.
pub fn count_backfills(conn: &Connection, pipeline_uuid: Option<&str>) -> rusqlite::Result<u64> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT n FROM backfill_count WHERE pipeline_uuid = ?1")?
        .query_row([pipeline_uuid.unwrap_or("")], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).unsigned_abs())
}

/// The first backfill after `after` (by id) that may hand out runs: runs waiting, started
/// and not cancelled or completed, neither paused nor halted, of `pipeline_uuid` when given. One step of a claim's
/// round-robin walk: it walks the backfills with runs waiting (index `backfill_run_waiting`
/// on the kept counts), so backfills whose runs all run or are done cost nothing.
pub fn next_claimable(conn: &Connection, after: i64, pipeline_uuid: Option<&str>) -> rusqlite::Result<Option<i64>> {
    match pipeline_uuid {
        None => conn.prepare_cached(NEXT_CLAIMABLE)?.query_row([after], |r| r.get(0)),
        Some(p) => {
            conn.prepare_cached(NEXT_CLAIMABLE_IN_PIPELINE)?.query_row(rusqlite::params![after, p], |r| r.get(0))
        }
    }
    .optional()
}

/// The statements of `next_claimable`: `?1` the id to start after, `?2` the pipeline.
macro_rules! next_claimable_sql {
    ($pipeline:literal) => {
        concat!(
            "SELECT c.backfill_id FROM backfill_run_count AS c INDEXED BY backfill_run_waiting ",
            "CROSS JOIN backfill AS b ON b.id = c.backfill_id ",
            "WHERE c.status = 'initial' AND c.n > 0 AND c.backfill_id > ?1 ",
            "AND b.status IN ('initial', 'running', 'failed') AND b.is_paused = 0 AND b.is_halted = 0",
            $pipeline,
            " ORDER BY c.backfill_id LIMIT 1"
        )
    };
}
pub(super) const NEXT_CLAIMABLE: &str = next_claimable_sql!("");
pub(super) const NEXT_CLAIMABLE_IN_PIPELINE: &str = next_claimable_sql!(" AND b.pipeline_uuid = ?2");

/// `?, ?, ?` for an `IN` list of `n` values. One statement whatever the page size; the
/// statement cache keeps one per size in use (in practice, the default page of 40).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Per-status run counts of one backfill (`count_runs_by_status` for one id; empty when it
/// has no runs).
pub fn run_counts_of(conn: &Connection, id: i64) -> rusqlite::Result<RunStatusCounts> {
    Ok(count_runs_by_status(conn, &[id])?.remove(&id).unwrap_or_default())
}

/// Per-status run counts of each backfill in `ids`, in one statement whatever their number,
/// read from `backfill_run_count` (kept by store::pipeline_runs, see schema.sql): the cost
/// does not grow with the number of runs. Only the newest run (highest id) of each execution date counts,
/// as in Mage, where a retried date's earlier runs no longer say how that date went. A
/// backfill without runs is absent from the map.
pub fn count_runs_by_status(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, RunStatusCounts>> {
    let mut counts: HashMap<i64, RunStatusCounts> = HashMap::new();
    if ids.is_empty() {
        return Ok(counts);
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT backfill_id, status, n FROM backfill_run_count WHERE backfill_id IN ({}) AND n > 0",
        placeholders(ids.len())
    ))?;
    let rows = stmt.query_map(params_from_iter(ids), |row| {
        Ok((row.get::<_, i64>(0)?, opt_parsed::<RunStatus, _>(row, 1)?, row.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (id, status, n) = row?;
        if let Some(status) = status {
            counts.entry(id).or_default().insert(status, n.unsigned_abs());
        }
    }
    Ok(counts)
}

/// How many backfills each status has (`""` for not started), from the kept counts.
pub fn status_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT status, n FROM backfill_status_count ORDER BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::NewPipelineRun;
    use crate::domain::schedule::IntervalType;
    use crate::store::pipeline_runs::insert_pipeline_run;
    use crate::store::ListingKey;
    use time::macros::datetime;

    fn new_backfill(name: &str, pipeline: &str, created: crate::domain::datetime::DateTime) -> NewBackfill {
        let fields = BackfillFields {
            name: name.into(),
            block_uuid: None,
            start_datetime: Some(datetime!(2023-03-01 00:00)),
            end_datetime: Some(datetime!(2023-03-05 00:00)),
            interval_type: Some(IntervalType::Hour),
            interval_units: Some(4),
            variables: None,
            settings: None,
        };
        NewBackfill::new(pipeline.into(), fields, created)
    }

    fn run(backfill_id: i64, date: crate::domain::datetime::DateTime, status: RunStatus) -> NewPipelineRun {
        NewPipelineRun {
            id: None,
            pipeline_schedule_id: None,
            pipeline_uuid: "p".into(),
            backfill_id: Some(backfill_id),
            execution_date: Some(date),
            status,
            variables: None,
            event_variables: None,
            metrics: None,
            passed_sla: false,
            executor_type: None,
            started_at: None,
            completed_at: None,
            created_at: date,
            updated_at: date,
            worker: None,
            lease_seconds: None,
            lease_expires_at: None,
            attempt: None,
        }
    }

    #[test]
    fn column_positions_match_the_column_list() {
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        let positions = [
            ("id", col::ID),
            ("name", col::NAME),
            ("pipeline_uuid", col::PIPELINE_UUID),
            ("block_uuid", col::BLOCK_UUID),
            ("start_datetime", col::START_DATETIME),
            ("end_datetime", col::END_DATETIME),
            ("interval_type", col::INTERVAL_TYPE),
            ("interval_units", col::INTERVAL_UNITS),
            ("status", col::STATUS),
            ("variables", col::VARIABLES),
            ("settings", col::SETTINGS),
            ("metrics", col::METRICS),
            ("pipeline_schedule_id", col::PIPELINE_SCHEDULE_ID),
            ("started_at", col::STARTED_AT),
            ("completed_at", col::COMPLETED_AT),
            ("failed_at", col::FAILED_AT),
            ("created_at", col::CREATED_AT),
            ("updated_at", col::UPDATED_AT),
            ("is_paused", col::IS_PAUSED),
            ("is_halted", col::IS_HALTED),
        ];
        assert_eq!(names.len(), positions.len());
        for (name, position) in positions {
            assert_eq!(names[position], name);
        }
    }

    #[test]
    fn a_backfill_round_trips_through_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        let mut b = new_backfill("x", "p", datetime!(2023-03-23 18:27:58.848959));
        b.fields.variables = Some(serde_json::json!({"k": [1, 2]}).as_object().unwrap().clone());
        let id = insert_backfill(&conn, &b).unwrap();
        let got = get_backfill(&conn, id).unwrap().unwrap();
        assert_eq!(got.fields, b.fields);
        assert_eq!(got.created_at, b.created_at);
        assert_eq!(get_backfill(&conn, id + 1).unwrap(), None);
    }

    #[test]
    fn listing_orders_by_created_at_then_id_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        let t0 = datetime!(2023-01-01 00:00);
        let t1 = datetime!(2023-01-02 00:00);
        let a = insert_backfill(&conn, &new_backfill("a", "p1", t1)).unwrap();
        let b = insert_backfill(&conn, &new_backfill("b", "p2", t0)).unwrap();
        let c = insert_backfill(&conn, &new_backfill("c", "p1", t0)).unwrap();
        let ids = |filter, limit, start| -> Vec<i64> {
            list_backfills(&conn, filter, limit, start).unwrap().iter().map(|b| b.id).collect()
        };
        assert_eq!(ids(None, 10, Start::Offset(0)), vec![a, c, b]);
        assert_eq!(ids(Some("p1"), 10, Start::Offset(0)), vec![a, c]);
        assert_eq!(ids(None, 1, Start::Offset(1)), vec![c]);
        // Keyset: right after c (t0, c) come the rows older than it, or as old with lower ids.
        assert_eq!(ids(None, 10, Start::After(ListingKey { created_at: t0, id: c })), vec![b]);
        assert_eq!(ids(None, 10, Start::After(ListingKey { created_at: t1, id: a })), vec![c, b]);
        assert_eq!(ids(Some("p1"), 10, Start::After(ListingKey { created_at: t1, id: a })), vec![c]);
        let names: Vec<String> = get_backfills(&conn, &[b, a]).unwrap().into_iter().map(|x| x.fields.name).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(count_backfills(&conn, None).unwrap(), 3);
        assert_eq!(count_backfills(&conn, Some("p2")).unwrap(), 1);
        assert_eq!(count_backfills(&conn, Some("none")).unwrap(), 0);
        delete_backfill(&conn, a).unwrap();
        assert_eq!(count_backfills(&conn, None).unwrap(), 2);
        assert_eq!(count_backfills(&conn, Some("p1")).unwrap(), 1);
    }

    /// The kept counts (`backfill_run_count` and `run_tally`) against a recount by the
    /// definition, after random inserts (with older ids arriving late, as an import may bring
    /// them, and runs of no backfill), status changes, cancels, and a deleted backfill: every
    /// write goes through the store functions that keep them.
    #[test]
    fn kept_run_counts_always_equal_a_recount() {
        use crate::store::pipeline_runs::{cancel_unfinished_runs, get_pipeline_run, update_pipeline_run};
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        let t = datetime!(2023-01-01 00:00);
        // Two backfills of pipeline p, one of q.
        let pipelines = ["p", "p", "q"];
        let backfills: Vec<i64> =
            pipelines.iter().map(|p| insert_backfill(&conn, &new_backfill("x", p, t)).unwrap()).collect();
        let dates = [datetime!(2023-03-01 00:00), datetime!(2023-03-02 00:00), datetime!(2023-03-03 00:00)];
        let mut seed = 7u64;
        let mut rand = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        // Every row, every column, as SQLite values: what two queries must agree on.
        let rows = |conn: &Connection, sql: &str| -> Vec<Vec<SqlValue>> {
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| (0..n).map(|k| r.get::<_, SqlValue>(k)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let recount = |conn: &Connection| {
            rows(
                conn,
                "SELECT r.backfill_id, r.status, COUNT(*) FROM pipeline_run r WHERE r.backfill_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM pipeline_run n WHERE n.backfill_id = r.backfill_id \
                 AND n.execution_date IS r.execution_date AND n.id > r.id) GROUP BY 1, 2 ORDER BY 1, 2",
            )
        };
        let kept = |conn: &Connection| {
            rows(conn, "SELECT backfill_id, status, n FROM backfill_run_count WHERE n <> 0 ORDER BY 1, 2")
        };
        let tallied = |conn: &Connection| {
            rows(conn, "SELECT pipeline_uuid, backfill_id, status, n FROM run_tally WHERE n <> 0 ORDER BY 1, 2, 3")
        };
        let retally = |conn: &Connection| {
            rows(
                conn,
                "SELECT p, b, s, COUNT(*) FROM ( \
                 SELECT '' AS p, 0 AS b, status AS s FROM pipeline_run \
                 UNION ALL SELECT pipeline_uuid, 0, status FROM pipeline_run \
                 UNION ALL SELECT '', backfill_id, status FROM pipeline_run WHERE backfill_id IS NOT NULL \
                 UNION ALL SELECT pipeline_uuid, backfill_id, status FROM pipeline_run WHERE backfill_id IS NOT NULL \
                 ) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
        };
        let statuses = RunStatus::ALL;
        let mut ids = vec![];
        for step in 0..400 {
            match rand(6) {
                0..=2 => {
                    let k = rand(3) as usize;
                    let mut r = run(backfills[k], dates[rand(3) as usize], statuses[rand(5) as usize]);
                    r.pipeline_uuid = pipelines[k].into();
                    if rand(4) == 0 {
                        r.execution_date = None;
                    }
                    if rand(8) == 0 {
                        r.backfill_id = None;
                        r.pipeline_uuid = "r".into();
                    }
                    r.id = (rand(3) == 0).then(|| 100_000 - step);
                    ids.push(insert_pipeline_run(&conn, &r).unwrap());
                }
                3 | 4 if !ids.is_empty() => {
                    let mut r = get_pipeline_run(&conn, ids[rand(ids.len() as u64) as usize]).unwrap().unwrap();
                    let previous = r.status;
                    r.status = statuses[rand(5) as usize];
                    update_pipeline_run(&conn, &r, previous).unwrap();
                }
                _ => {
                    cancel_unfinished_runs(&conn, backfills[rand(3) as usize], t).unwrap();
                }
            }
            assert_eq!(kept(&conn), recount(&conn), "after step {step}");
            assert_eq!(tallied(&conn), retally(&conn), "after step {step}");
        }
        delete_backfill(&conn, backfills[0]).unwrap();
        assert_eq!(kept(&conn), recount(&conn));
        assert_eq!(tallied(&conn), retally(&conn));
        // What the tally is for: every filter of the run listing counted without a scan.
        use crate::store::pipeline_runs::{count_pipeline_runs, RunFilter};
        for backfill_id in [None, Some(backfills[0]), Some(backfills[1]), Some(backfills[2]), Some(0), Some(-1)] {
            for pipeline_uuid in [None, Some("p"), Some("q"), Some("r")] {
                for status in std::iter::once(None).chain(statuses.iter().copied().map(Some)) {
                    let filter = RunFilter {
                        backfill_id,
                        pipeline_uuid: pipeline_uuid.map(Into::into),
                        status,
                        newest_only: false,
                        dates: None,
                    };
                    let want: i64 = conn
                        .query_row(
                            "SELECT COUNT(*) FROM pipeline_run WHERE (?1 IS NULL OR backfill_id = ?1) \
                             AND (?2 IS NULL OR pipeline_uuid = ?2) AND (?3 IS NULL OR status = ?3)",
                            rusqlite::params![backfill_id, pipeline_uuid, status.map(|s| s.as_str())],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(count_pipeline_runs(&conn, &filter).unwrap(), want as u64, "{filter:?}");
                }
            }
        }
        assert!(kept(&conn).iter().all(|row| row[0] != SqlValue::Integer(backfills[0])));
        crate::store::pipeline_runs::recount_runs(&conn, backfills[1]).unwrap();
        assert_eq!(kept(&conn), recount(&conn));
    }

    #[test]
    fn run_counts_take_the_newest_run_of_each_date() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        let t = datetime!(2023-01-01 00:00);
        let b1 = insert_backfill(&conn, &new_backfill("a", "p", t)).unwrap();
        let b2 = insert_backfill(&conn, &new_backfill("b", "p", t)).unwrap();
        let b3 = insert_backfill(&conn, &new_backfill("c", "p", t)).unwrap();
        let d1 = datetime!(2023-03-01 00:00);
        let d2 = datetime!(2023-03-01 04:00);
        for r in [
            run(b1, d1, RunStatus::Failed),
            run(b1, d1, RunStatus::Completed), // the retry of d1 wins
            run(b1, d2, RunStatus::Initial),
            run(b2, d1, RunStatus::Running),
        ] {
            insert_pipeline_run(&conn, &r).unwrap();
        }
        let counts = count_runs_by_status(&conn, &[b1, b2, b3]).unwrap();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&b1], RunStatusCounts::from([(RunStatus::Completed, 1), (RunStatus::Initial, 1)]));
        assert_eq!(counts[&b2], RunStatusCounts::from([(RunStatus::Running, 1)]));
        assert!(!counts.contains_key(&b3));
        assert!(count_runs_by_status(&conn, &[]).unwrap().is_empty());
    }
}
