//! Dispatch: handing runs to workers under leases, what workers report back, leases that
//! run out, and retrying one date. Beside `lifecycle` (which owns the backfill's own
//! writes) and, like it, one request's whole work on the connection it is given, all or
//! nothing as the caller makes it: the server's single writer makes claims one at a time, so
//! `pipeline_run_limit` holds however many workers claim at once. No clock reads, no HTTP.

use std::collections::BTreeMap;

use serde_json::Value;

use super::lifecycle::{follow_runs, settle};
use super::{queries, Error, Result};
use crate::domain::datetime::{self, DateTime};
use crate::domain::model::{
    self, Backfill, BackfillStatus, FieldError, Fields, NewPipelineRun, Object, PipelineRun, RunSettings, RunStatus,
};
use crate::store;

/// The most runs one claim may ask for.
pub const MAX_CLAIM: u64 = 1000;
/// A lease's bounds in seconds (the server may lower the floor for tests: `--min-lease-seconds`).
pub const MIN_LEASE_SECONDS: i64 = 5;
pub const MAX_LEASE_SECONDS: i64 = 86_400;
/// A lease unless the claim says otherwise.
pub const DEFAULT_LEASE_SECONDS: i64 = 60;
/// The most characters of a worker's name.
pub const MAX_WORKER_CHARS: usize = 200;
/// How many expired leases one sweep acts on, so that a sweep's transaction stays short
/// even after a long outage; the next sweep takes the rest.
pub const EXPIRY_BATCH: u64 = 1000;

/// How many expired leases a claim acts on before its own work: enough to free the places a
/// lost worker held, few enough that a claim after a mass expiry stays quick; the sweep
/// takes the rest.
pub const EXPIRY_IN_CLAIM: u64 = 20;

/// `POST /api/pipeline_runs/claim`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub worker: String,
    pub limit: u64,
    pub lease_seconds: i64,
    pub pipeline_uuid: Option<String>,
    pub backfill_id: Option<i64>,
    /// What will run the claimed runs, stored as their `executor_type` (Mage's field; the
    /// worker sends `backfilld_exec` or `backfilld_simulate`); none leaves it null.
    pub executor_type: Option<String>,
}

/// The keys a claim's body may have.
pub const CLAIM_KEYS: [&str; 6] = ["worker", "limit", "lease_seconds", "pipeline_uuid", "backfill_id", "executor_type"];

/// The longest `executor_type` a claim may give, in characters.
pub const MAX_EXECUTOR_TYPE_CHARS: usize = 64;

/// A worker's name: a non-blank string of at most `MAX_WORKER_CHARS` characters.
fn parse_worker(f: &Fields, required: bool) -> std::result::Result<Option<String>, FieldError> {
    match f.nonblank_string("worker")? {
        None if required => Err(FieldError::new("worker", "is required: the name of the claiming worker")),
        Some(w) if w.chars().count() > MAX_WORKER_CHARS => {
            Err(FieldError::new("worker", format!("must be at most {MAX_WORKER_CHARS} characters")))
        }
        other => Ok(other),
    }
}

impl Claim {
    /// A claim's body (`{"worker": ..., "limit": ..., ...}`), every key checked and unknown
    /// ones refused, since a misspelt `lease_seconds` would otherwise quietly be 60. Numbers
    /// must be JSON numbers: a claim is written by programs. `min_lease_seconds` is the
    /// server's floor (`MIN_LEASE_SECONDS` but in tests).
    pub fn parse(obj: &Object, min_lease_seconds: i64) -> std::result::Result<Claim, FieldError> {
        // `api_key` is the credential a body may carry (api::auth), not a field of the claim.
        if let Some(k) = obj.keys().find(|k| !CLAIM_KEYS.contains(&k.as_str()) && k.as_str() != "api_key") {
            return Err(FieldError::new(k, format!("is not a field of a claim; expected {}", CLAIM_KEYS.join(", "))));
        }
        let f = Fields(obj);
        Ok(Claim {
            worker: parse_worker(&f, true)?.unwrap_or_default(),
            limit: f.number_in("limit", 1, MAX_CLAIM as i64)?.map_or(1, i64::unsigned_abs),
            lease_seconds: f
                .number_in("lease_seconds", min_lease_seconds, MAX_LEASE_SECONDS)?
                .unwrap_or(DEFAULT_LEASE_SECONDS.max(min_lease_seconds)),
            pipeline_uuid: f.nonblank_string("pipeline_uuid")?,
            backfill_id: f.number_in("backfill_id", 1, i64::MAX)?,
            executor_type: match f.nonblank_string("executor_type")? {
                Some(e) if e.chars().count() > MAX_EXECUTOR_TYPE_CHARS => {
                    return Err(FieldError::new(
                        "executor_type",
                        format!("must be at most {MAX_EXECUTOR_TYPE_CHARS} characters"),
                    ))
                }
                other => other,
            },
        })
    }
}

/// What a claim handed out, and where the next claim's round-robin walk starts.
#[derive(Debug)]
pub struct Claimed {
    pub runs: Vec<PipelineRun>,
    /// How many expired leases the claim acted on first.
    pub expired: usize,
    /// The last backfill that got a run (the walk's start, unchanged when none did).
    pub last_backfill: i64,
}

impl Report {
    /// The record of `PUT /api/pipeline_runs/:id`: `status` (required), `worker` and
    /// `metrics` (optional). Other keys are ignored, as Mage ignores them.
    pub fn parse(obj: &Object) -> std::result::Result<Report, FieldError> {
        let f = Fields(obj);
        let status = f.parsed::<RunStatus>("status")?.ok_or_else(|| FieldError::new("status", "is required"))?;
        let worker = parse_worker(&f, false)?;
        if worker.is_some() && !matches!(status, RunStatus::Running | RunStatus::Completed | RunStatus::Failed) {
            return Err(FieldError::new(
                "status",
                format!(
                    "a worker reports running (a heartbeat), completed or failed, not {status}; \
                     leave out worker to set a status by hand"
                ),
            ));
        }
        let metrics = f.object("metrics")?;
        if let Some(m) = &metrics {
            model::check_object_size("metrics", m)?;
        }
        Ok(Report { status, worker, metrics })
    }
}

/// A status report: `PUT /api/pipeline_runs/:id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub status: RunStatus,
    /// The reporting worker, which must hold the run's lease; none for a report by hand.
    pub worker: Option<String>,
    /// Stored on the run when given.
    pub metrics: Option<Object>,
}

/// A backfill a claim may take runs from: its settings, and how many runs it can give now.
struct Candidate {
    backfill: Backfill,
    settings: RunSettings,
    capacity: u64,
}

impl Candidate {
    /// How many more of `b`'s runs a claim may take now: those waiting, within what its
    /// `pipeline_run_limit` leaves (runs `running` count against it, leased or not); none
    /// unless it is `initial`, `running` or `failed` (a failed date does not stop the others)
    /// and neither paused nor halted.
    fn of(conn: &rusqlite::Connection, backfill: Backfill) -> Result<Candidate> {
        let settings = RunSettings::of(backfill.fields.settings.as_ref());
        let capacity = if !matches!(
            backfill.status,
            Some(BackfillStatus::Initial | BackfillStatus::Running | BackfillStatus::Failed)
        ) || backfill.is_paused
            || backfill.is_halted
        {
            0
        } else {
            let counts = store::backfills::run_counts_of(conn, backfill.id)?;
            let n = |s: RunStatus| counts.get(&s).copied().unwrap_or(0);
            let room =
                settings.pipeline_run_limit.map_or(u64::MAX, |limit| limit.saturating_sub(n(RunStatus::Running)));
            n(RunStatus::Initial).min(room)
        };
        Ok(Candidate { backfill, settings, capacity })
    }
}

/// Shares `limit` runs among backfills that can take `capacities` more each, one at a time
/// in turn (round-robin), so that a huge backfill does not starve a small one.
fn share(capacities: &[u64], limit: u64) -> Vec<u64> {
    let mut take = vec![0; capacities.len()];
    let mut left = limit;
    while left > 0 {
        let mut gave = false;
        for (t, cap) in take.iter_mut().zip(capacities) {
            if left > 0 && *t < *cap {
                *t += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    take
}

/// Hands up to `c.limit` waiting runs to `c.worker`: each moves to `running` under a lease
/// of `c.lease_seconds`. Eligible: `initial` runs of backfills `initial`, `running` or
/// `failed`, neither paused nor halted, within their `pipeline_run_limit`; the backfills are walked in id order from the
/// one after `after` (where the previous claim stopped), wrapping around, and the runs
/// shared among them round-robin; within a backfill the oldest dates go first (newest with
/// `run_backwards`). Up to `EXPIRY_IN_CLAIM` expired leases are acted on first, so that
/// their dates and their places under the limit are free again. No more runs than take
/// about `answer_bytes` as the API answers them (`run_answer_bytes`), and at least one: a
/// claim's answer is bounded as a page's is.
pub fn claim(conn: &rusqlite::Connection, c: &Claim, after: i64, answer_bytes: u64, now: DateTime) -> Result<Claimed> {
    let expired = expire_leases(conn, now, EXPIRY_IN_CLAIM)?;
    let mut picked: Vec<Candidate> = vec![];
    if let Some(id) = c.backfill_id {
        picked.push(Candidate::of(conn, queries::backfill_in(conn, id, c.pipeline_uuid.as_deref())?)?);
    } else {
        // Cost: one index step, the backfill's row and its kept counts per backfill visited. Backfills at
        // their limit are passed over; the walk ends once `limit` backfills can give, or
        // every claimable one has been seen.
        let (mut at, mut wrapped) = (after, false);
        loop {
            let id = match store::backfills::next_claimable(conn, at, c.pipeline_uuid.as_deref())? {
                Some(id) if wrapped && id > after => break,
                Some(id) => id,
                None if !wrapped && after > 0 => {
                    (at, wrapped) = (0, true);
                    continue;
                }
                None => break,
            };
            at = id;
            let Some(b) = store::backfills::get_backfill(conn, id)? else { continue };
            let candidate = Candidate::of(conn, b)?;
            if candidate.capacity > 0 {
                picked.push(candidate);
                if picked.len() as u64 >= c.limit {
                    break;
                }
            }
        }
    }
    let capacities: Vec<u64> = picked.iter().map(|p| p.capacity).collect();
    let lease = store::pipeline_runs::Lease {
        worker: &c.worker,
        seconds: c.lease_seconds,
        expires_at: lease_end(now, c.lease_seconds)?,
        executor_type: c.executor_type.as_deref(),
    };
    let mut runs = vec![];
    let mut last_backfill = after;
    let mut room = answer_bytes;
    for (Candidate { backfill: b, settings, .. }, take) in picked.iter().zip(share(&capacities, c.limit)) {
        if take == 0 {
            continue;
        }
        let mut ids = store::pipeline_runs::waiting_runs(conn, b.id, take, settings.run_backwards)?;
        // As many as the answer has room for, by the size of the first (a backfill's runs
        // differ in their dates alone), and at least one run a claim.
        let Some(first) =
            ids.first().map(|id| store::pipeline_runs::get_pipeline_run(conn, *id)).transpose()?.flatten()
        else {
            continue;
        };
        let shared = match first.pipeline_schedule_id {
            Some(id) => store::schedules::schedule_answer_bytes(conn, id)?,
            None => 0,
        };
        let fit = room / run_answer_bytes(&first, shared).max(1);
        ids.truncate(usize::try_from(fit.max(u64::from(runs.is_empty()))).unwrap_or(usize::MAX));
        if ids.is_empty() {
            break;
        }
        let claimed = store::pipeline_runs::claim_runs(conn, b.id, &b.pipeline_uuid, &ids, lease, now)?;
        room = claimed.iter().fold(room, |room, r| room.saturating_sub(run_answer_bytes(r, shared)));
        runs.extend(claimed);
        if b.status == Some(BackfillStatus::Initial) {
            // Its first run has begun: it is running now.
            follow_runs(conn, b.id, false, now)?;
        }
        last_backfill = b.id;
    }
    Ok(Claimed { runs, expired, last_backfill })
}

/// What a run takes, about, in a claim's answer: the keys and values every run has, its own
/// objects and strings, and its schedule's name, token and variables (`shared`:
/// `store::schedules::schedule_answer_bytes`), which it answers merged with its own.
fn run_answer_bytes(run: &PipelineRun, shared: u64) -> u64 {
    /// The keys, timestamps, numbers and nulls of a run's JSON, rounded up.
    const FIXED: usize = 1024;
    let object = |o: &Option<Object>| o.as_ref().map_or(0, model::json_size);
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let own = FIXED
        + object(&run.variables)
        + object(&run.event_variables)
        + object(&run.metrics)
        + run.pipeline_uuid.len()
        + text(&run.worker)
        + text(&run.executor_type);
    shared.saturating_add(own as u64)
}

fn lease_end(now: DateTime, seconds: i64) -> Result<DateTime> {
    datetime::add_micros(now, i128::from(seconds) * 1_000_000)
        .ok_or_else(|| Error::Conflict(format!("a lease of {seconds} s from now ends past the year 9999")))
}

/// The worker whose lease ran out on `run`, and when, if that is how it failed (see
/// `expire_leases`).
fn expired_holder(run: &PipelineRun) -> Option<(&str, &str)> {
    let detail = run.metrics.as_ref()?.get("lease_expired")?;
    Some((detail.get("worker")?.as_str()?, detail.get("expired_at")?.as_str().unwrap_or("")))
}

/// Refuses a report from `worker` unless it holds the run's lease, saying why: cancelled,
/// lease expired, held by another, or never claimed. A repeat of a finished run's own
/// report by its holder is let through (the caller answers it unchanged).
pub(super) fn check_holder(run: &PipelineRun, worker: &str, status: RunStatus, now: DateTime) -> Result<()> {
    let id = run.id;
    let holds = run.worker.as_deref() == Some(worker);
    let lease_expired = |at: String| {
        Error::Conflict(format!(
            "the lease of worker '{worker}' on pipeline run {id} expired at {at}: no heartbeat came in time, so the \
             run is given up (marked failed, and its date queued again while it has attempts left); stop working on it"
        ))
    };
    let expired = expired_holder(run).filter(|(w, _)| *w == worker);
    match run.status {
        RunStatus::Cancelled => Err(Error::Conflict(format!(
            "pipeline run {id} was cancelled (its backfill was cancelled, or the run itself): stop working on it; \
             there is nothing to report"
        ))),
        RunStatus::Running if holds => match run.lease_expires_at {
            Some(t) if t > now => Ok(()),
            Some(t) => Err(lease_expired(datetime::format_api(t))),
            None => Err(Error::Conflict(format!(
                "pipeline run {id} is running without a lease (its status was set by hand), so no worker holds it"
            ))),
        },
        RunStatus::Failed if expired.is_some() => {
            Err(lease_expired(expired.map(|(_, at)| at.into()).unwrap_or_default()))
        }
        RunStatus::Completed | RunStatus::Failed if holds && run.status == status => Ok(()),
        RunStatus::Completed | RunStatus::Failed if holds => {
            Err(Error::Conflict(format!("pipeline run {id} is already {}; a finished run does not change", run.status)))
        }
        _ => Err(Error::Conflict(match &run.worker {
            Some(other) if run.status == RunStatus::Running => format!(
                "pipeline run {id} is held by worker '{other}', not '{worker}': only the lease's holder reports on it"
            ),
            _ => format!(
                "pipeline run {id} is not held by worker '{worker}' (it is {}): take runs with \
                 POST /api/pipeline_runs/claim",
                run.status
            ),
        })),
    }
}

/// `PUT /api/pipeline_runs/:id`: a status report. From a worker (`report.worker`), it must
/// hold the run's lease (else 409, see `check_holder`); `running` is then a heartbeat that
/// extends the lease by the claim's `lease_seconds`. Without a worker it is a report by hand,
/// as in Mage: `running` sets `started_at`; `completed` and `failed` set `completed_at`; no
/// run goes back to `initial`, and a finished run cannot go back to `running`. A finished or
/// cancelled run's lease ends. The run's backfill then follows (`lifecycle::follow_runs`).
pub fn report(conn: &rusqlite::Connection, run_id: i64, report: Report, now: DateTime) -> Result<PipelineRun> {
    let mut run = queries::run(conn, run_id)?;
    if let Some(worker) = &report.worker {
        check_holder(&run, worker, report.status, now)?;
    }
    let previous = run.status;
    let finished = matches!(run.status, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled);
    if run.status == report.status {
        let heartbeat = report.status == RunStatus::Running && report.worker.is_some();
        if heartbeat {
            // The lease runs on from now.
            run.lease_expires_at = Some(lease_end(now, run.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS))?);
        } else if report.metrics.is_none() || report.worker.is_some() && finished {
            // Said before (a retried request, say): nothing changes.
            return Ok(run);
        }
        if report.metrics.is_some() {
            run.metrics = report.metrics;
        }
        run.updated_at = now;
        store::pipeline_runs::update_pipeline_run(conn, &run, previous)?;
        return Ok(run);
    }
    if finished && matches!(report.status, RunStatus::Initial | RunStatus::Running) {
        return Err(Error::Conflict(format!(
            "pipeline run {run_id} is {} and cannot go back to {}; a new attempt is a new run \
             (POST /api/pipeline_runs/{run_id}/retry)",
            run.status, report.status
        )));
    }
    if report.status == RunStatus::Initial {
        return Err(Error::Conflict(format!(
            "pipeline run {run_id} is {} and cannot go back to initial: once begun, a run is running, \
             completed, failed or cancelled",
            run.status
        )));
    }
    if report.metrics.is_some() {
        run.metrics = report.metrics;
    }
    run.status = report.status;
    match report.status {
        RunStatus::Running => {
            run.started_at.get_or_insert(now);
        }
        RunStatus::Completed | RunStatus::Failed => {
            run.completed_at = Some(now);
            run.lease_expires_at = None;
        }
        RunStatus::Cancelled => run.lease_expires_at = None,
        RunStatus::Initial => {}
    }
    run.updated_at = now;
    store::pipeline_runs::update_pipeline_run(conn, &run, previous)?;
    if let Some(backfill_id) = run.backfill_id {
        let failed_now = run.status == RunStatus::Failed && !store::pipeline_runs::is_superseded(conn, &run)?;
        follow_runs(conn, backfill_id, failed_now, now)?;
    }
    Ok(run)
}

/// A new `initial` run of `run`'s date, the date's next attempt.
fn queue_again(conn: &rusqlite::Connection, run: &PipelineRun, backfill_id: i64, now: DateTime) -> Result<PipelineRun> {
    let attempts = store::pipeline_runs::runs_of_date(conn, backfill_id, run.execution_date)?;
    let new = NewPipelineRun {
        id: None,
        pipeline_schedule_id: run.pipeline_schedule_id,
        pipeline_uuid: run.pipeline_uuid.clone(),
        backfill_id: Some(backfill_id),
        execution_date: run.execution_date,
        status: RunStatus::Initial,
        variables: run.variables.clone(),
        event_variables: run.event_variables.clone(),
        metrics: None,
        passed_sla: false,
        executor_type: None,
        started_at: None,
        completed_at: None,
        created_at: now,
        updated_at: now,
        worker: None,
        lease_seconds: None,
        lease_expires_at: None,
        attempt: Some(attempts + 1),
    };
    let id = store::pipeline_runs::insert_pipeline_run(conn, &new)?;
    queries::run(conn, id)
}

/// Acts on up to `limit` leases that ran out at or before `now`, the soonest first: each run
/// becomes `failed` (its metrics say whose lease expired, and when), and its date gets a new
/// `initial` run while it has had fewer than `settings.max_attempts` runs (unless its
/// backfill was cancelled or deleted); then each backfill follows its runs. Costs what the
/// expired leases cost, whatever the number of stored runs. Returns how many expired.
pub fn expire_leases(conn: &rusqlite::Connection, now: DateTime, limit: u64) -> Result<usize> {
    let ids = store::pipeline_runs::expired_leases(conn, now, limit)?;
    // Each backfill touched, and whether a date of it failed for good.
    let mut backfills: BTreeMap<i64, bool> = BTreeMap::new();
    for &id in &ids {
        let mut run = queries::run(conn, id)?;
        let previous = run.status;
        let expired_at = run.lease_expires_at;
        let worker = run.worker.clone().unwrap_or_default();
        let mut metrics = run.metrics.take().unwrap_or_default();
        let when = expired_at.map(datetime::format_api).unwrap_or_default();
        metrics.insert(
            "error".into(),
            Value::String(format!("the lease of worker '{worker}' expired at {when}: no heartbeat came in time")),
        );
        let mut detail = Object::new();
        detail.insert("worker".into(), Value::String(worker));
        detail.insert("expired_at".into(), Value::String(when));
        metrics.insert("lease_expired".into(), Value::Object(detail));
        run.metrics = Some(metrics);
        run.status = RunStatus::Failed;
        run.completed_at = Some(now);
        run.lease_expires_at = None;
        run.updated_at = now;
        store::pipeline_runs::update_pipeline_run(conn, &run, previous)?;
        let Some(backfill_id) = run.backfill_id else { continue };
        let failed = backfills.entry(backfill_id).or_insert(false);
        let Some(b) = store::backfills::get_backfill(conn, backfill_id)? else { continue };
        if store::pipeline_runs::is_superseded(conn, &run)? {
            continue;
        }
        let attempts = store::pipeline_runs::runs_of_date(conn, backfill_id, run.execution_date)?;
        let max = i64::from(RunSettings::of(b.fields.settings.as_ref()).max_attempts);
        if b.status != Some(BackfillStatus::Cancelled) && attempts < max {
            queue_again(conn, &run, backfill_id, now)?;
        } else {
            *failed = true;
        }
    }
    for (backfill_id, failed_now) in backfills {
        follow_runs(conn, backfill_id, failed_now, now)?;
    }
    Ok(ids.len())
}

/// `POST /api/pipeline_runs/:id/retry`: a new `initial` run of the run's date, when the run
/// is the newest of its date and finished (`failed`, `cancelled` or `completed`). Its
/// backfill is no longer halted, and its status follows its dates (`settle`): `running`
/// again, or still `failed` while another date is, so that claims take the new run.
pub fn retry(conn: &rusqlite::Connection, run_id: i64, now: DateTime) -> Result<PipelineRun> {
    let run = queries::run(conn, run_id)?;
    let Some(backfill_id) = run.backfill_id else {
        return Err(Error::Conflict(format!(
            "pipeline run {run_id} belongs to no backfill (its backfill was deleted), so no claim would take a new \
             run of its date"
        )));
    };
    if !matches!(run.status, RunStatus::Failed | RunStatus::Cancelled | RunStatus::Completed) {
        return Err(Error::Conflict(format!(
            "pipeline run {run_id} is {}: only a failed, cancelled or completed run can be retried",
            run.status
        )));
    }
    if store::pipeline_runs::is_superseded(conn, &run)? {
        return Err(Error::Conflict(format!(
            "pipeline run {run_id} is not the newest run of its date: a newer run of the date exists, and only the \
             newest can be retried (GET /api/pipeline_runs?backfill_id={backfill_id} lists them)"
        )));
    }
    let new = queue_again(conn, &run, backfill_id, now)?;
    if let Some(mut b) = store::backfills::get_backfill(conn, backfill_id)? {
        let before = (b.status, b.is_halted);
        b.is_halted = false;
        settle(conn, &mut b, now)?;
        if (b.status, b.is_halted) != before {
            b.updated_at = now;
            store::backfills::update_backfill(conn, &b)?;
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: serde_json::Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_claim_is_checked_key_by_key() {
        let c = Claim::parse(&obj(serde_json::json!({"worker": "w1"})), MIN_LEASE_SECONDS).unwrap();
        assert_eq!((c.limit, c.lease_seconds, c.backfill_id), (1, 60, None));
        let c = Claim::parse(
            &obj(serde_json::json!({"worker": "w", "limit": 1000, "lease_seconds": 5, "pipeline_uuid": "p", "backfill_id": 3})),
            MIN_LEASE_SECONDS,
        )
        .unwrap();
        assert_eq!(
            (c.limit, c.lease_seconds, c.pipeline_uuid.as_deref(), c.backfill_id),
            (1000, 5, Some("p"), Some(3))
        );
        let long = "x".repeat(201);
        for (body, field) in [
            (serde_json::json!({}), "worker"),
            (serde_json::json!({"worker": " "}), "worker"),
            (serde_json::json!({"worker": 7}), "worker"),
            (serde_json::json!({"worker": long}), "worker"),
            (serde_json::json!({"worker": "w", "limit": 0}), "limit"),
            (serde_json::json!({"worker": "w", "limit": 1001}), "limit"),
            (serde_json::json!({"worker": "w", "limit": "3"}), "limit"),
            (serde_json::json!({"worker": "w", "limit": 2.5}), "limit"),
            (serde_json::json!({"worker": "w", "lease_seconds": 4}), "lease_seconds"),
            (serde_json::json!({"worker": "w", "lease_seconds": 86401}), "lease_seconds"),
            (serde_json::json!({"worker": "w", "pipeline_uuid": ""}), "pipeline_uuid"),
            (serde_json::json!({"worker": "w", "pipeline_uuid": 1}), "pipeline_uuid"),
            (serde_json::json!({"worker": "w", "backfill_id": 0}), "backfill_id"),
            (serde_json::json!({"worker": "w", "backfill_id": true}), "backfill_id"),
            (serde_json::json!({"worker": "w", "lease": 30}), "lease"),
        ] {
            let e = Claim::parse(&obj(body.clone()), MIN_LEASE_SECONDS).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let c = Claim::parse(&obj(serde_json::json!({"worker": "w", "lease_seconds": 1})), 1).unwrap();
        assert_eq!(c.lease_seconds, 1, "a lowered floor");
    }

    #[test]
    fn runs_are_shared_round_robin_within_each_capacity() {
        assert_eq!(share(&[100, 100], 5), vec![3, 2]);
        assert_eq!(share(&[1, 100, 2], 6), vec![1, 3, 2]);
        assert_eq!(share(&[1, 1], 10), vec![1, 1]);
        assert_eq!(share(&[0, 4], 3), vec![0, 3]);
        assert_eq!(share(&[], 3), Vec::<u64>::new());
        assert_eq!(share(&[5], 0), vec![0]);
    }
}
