//! `backfilld import`: loads `{"backfills": [...], "pipeline_runs": [...]}` in the API's own
//! record shapes (a listing's answer can be imported back as it comes: its `metadata` is
//! ignored) in one transaction.
//!
//! The document is parsed as it is read and each record loaded as soon as it is parsed, so
//! memory stays flat however large the file. Each record is validated as the API validates
//! (`BackfillFields::parse`, the run settings, the keys a record may have); the first bad
//! record aborts the whole file with an error naming its index and field. Given ids and
//! timestamps are kept; missing ones are assigned. A `pipeline_schedule_id` that names no
//! schedule gets one made for it (a started backfill's `@once` schedule, with the name and
//! token its runs show), so references hold. The arrays may come in either order: a run that
//! comes before its backfill waits for it in a temporary file only this user can read.

use std::io::{Read, Write};

use rusqlite::{Connection, TransactionBehavior};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::domain::datetime::DateTime;
use crate::domain::model::{
    self, BackfillFields, BackfillStatus, FieldError, Fields, NewBackfill, NewPipelineRun, Object, RunStatus,
};
use crate::store;
use crate::store::schedules::NewPipelineSchedule;

/// What an import loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub backfills: usize,
    pub pipeline_runs: usize,
    pub pipeline_schedules: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot read it: {0}")]
    Read(serde_json::Error),
    #[error("cannot keep the runs that come before their backfills in a temporary file: {0}")]
    Waiting(std::io::Error),
    #[error("the file must be an object with arrays \"backfills\" and/or \"pipeline_runs\": {0}")]
    Shape(String),
    #[error("{0}")]
    Record(#[from] FieldError),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// What a backfill record may hold besides `lifecycle::WRITABLE_KEYS`.
const BACKFILL_KEYS: &[&str] = &[
    "id",
    "pipeline_uuid",
    "status",
    "metrics",
    "pipeline_schedule_id",
    "started_at",
    "completed_at",
    "failed_at",
    "created_at",
    "updated_at",
    "is_paused",
    "is_halted",
    // Derived in listings; accepted and recomputed.
    "total_run_count",
    "run_status_counts",
];

const RUN_KEYS: &[&str] = &[
    // Derived in answers: the schedule's name and token (taken for a schedule this import
    // makes, so that an exported run reads back the same), and keys whose values backfilld
    // fixes (no blocks, tags, pipeline type or repo path); accepted.
    "block_runs",
    "block_runs_count",
    "completed_block_runs_count",
    "pipeline_schedule_name",
    "pipeline_schedule_token",
    "pipeline_schedule_type",
    "pipeline_tags",
    "pipeline_type",
    "repo_path",
    "id",
    "pipeline_schedule_id",
    "pipeline_uuid",
    "backfill_id",
    "execution_date",
    "status",
    "variables",
    "event_variables",
    "metrics",
    "passed_sla",
    "executor_type",
    "started_at",
    "completed_at",
    "created_at",
    "updated_at",
    "worker",
    "lease_expires_at",
    "attempt",
];

fn check_keys(obj: &Object, known: &[&[&str]]) -> Result<(), FieldError> {
    match obj.keys().find(|k| !known.iter().any(|keys| keys.contains(&k.as_str()))) {
        Some(k) => Err(FieldError::new(k, "is not a field of this record")),
        None => Ok(()),
    }
}

fn positive_id(f: &Fields, key: &str) -> Result<Option<i64>, FieldError> {
    match f.integer(key)? {
        Some(id) if id < 1 => Err(FieldError::new(key, format!("must be at least 1, got {id}"))),
        other => Ok(other),
    }
}

/// Timestamps: given ones kept, a missing `created_at` is `now`, a missing `updated_at` is
/// the `created_at`.
fn timestamps(f: &Fields, now: DateTime) -> Result<(DateTime, DateTime), FieldError> {
    let created = f.datetime("created_at")?.unwrap_or(now);
    let updated = f.datetime("updated_at")?.unwrap_or(created);
    Ok((created, updated))
}

fn parse_backfill(obj: &Object, now: DateTime) -> Result<NewBackfill, FieldError> {
    check_keys(obj, &[BACKFILL_KEYS, &crate::service::lifecycle::WRITABLE_KEYS])?;
    let f = Fields(obj);
    let (created_at, updated_at) = timestamps(&f, now)?;
    let status = f.parsed::<BackfillStatus>("status")?;
    Ok(NewBackfill {
        id: positive_id(&f, "id")?,
        pipeline_uuid: f.required_string("pipeline_uuid")?,
        fields: {
            let fields = BackfillFields::parse(obj)?;
            crate::domain::model::RunSettings::parse(fields.settings.as_ref())?;
            fields
        },
        status,
        metrics: f.object("metrics")?,
        pipeline_schedule_id: positive_id(&f, "pipeline_schedule_id")?,
        started_at: f.datetime("started_at")?,
        completed_at: f.datetime("completed_at")?,
        failed_at: f.datetime("failed_at")?,
        created_at,
        updated_at,
        is_paused: f.boolean("is_paused")?.unwrap_or(false),
        // An older backfilld's export has `is_paused` (Mage's records do not) but no
        // `is_halted`: a failed backfill then stopped its dates, so it stays stopped, as an
        // upgraded data file's does. Mage never stopped one: its records come in running on.
        is_halted: f
            .boolean("is_halted")?
            .unwrap_or(status == Some(BackfillStatus::Failed) && obj.contains_key("is_paused")),
    })
}

fn parse_run(obj: &Object, now: DateTime) -> Result<NewPipelineRun, FieldError> {
    check_keys(obj, &[RUN_KEYS])?;
    let f = Fields(obj);
    let (created_at, updated_at) = timestamps(&f, now)?;
    let status = f.parsed::<RunStatus>("status")?.unwrap_or(RunStatus::Initial);
    let lease_expires_at = f.datetime("lease_expires_at")?.filter(|_| status == RunStatus::Running);
    Ok(NewPipelineRun {
        id: positive_id(&f, "id")?,
        pipeline_schedule_id: positive_id(&f, "pipeline_schedule_id")?,
        // Filled in from the backfill when absent; checked once backfills are loaded.
        pipeline_uuid: f.string("pipeline_uuid")?.unwrap_or_default(),
        backfill_id: positive_id(&f, "backfill_id")?,
        execution_date: f.datetime("execution_date")?,
        status,
        variables: f.object("variables")?,
        event_variables: f.object("event_variables")?,
        metrics: f.object("metrics")?,
        passed_sla: f.boolean("passed_sla")?.unwrap_or(false),
        executor_type: f.string("executor_type")?,
        started_at: f.datetime("started_at")?,
        completed_at: f.datetime("completed_at")?,
        created_at,
        updated_at,
        worker: f.string("worker")?,
        // Only a running run keeps its lease: it expires, or is renewed, as any other.
        lease_seconds: lease_expires_at.map(|_| crate::service::dispatch::DEFAULT_LEASE_SECONDS),
        lease_expires_at,
        attempt: positive_id(&f, "attempt")?,
    })
}

/// A warning for each value the API would refuse for its size (`model::MAX_NAME_CHARS`,
/// `model::MAX_OBJECT_BYTES`): an older version may have stored it, so the import keeps it.
fn warn_over_bounds(errors: impl Iterator<Item = FieldError>) {
    for e in errors {
        log::warn!("{e}: kept as it is, though the API would refuse it now");
    }
}

/// Makes the schedule `id`, created at `at`, when no schedule has it yet.
fn ensure_schedule(
    conn: &Connection,
    id: i64,
    name: String,
    pipeline_uuid: &str,
    at: DateTime,
) -> rusqlite::Result<bool> {
    if store::schedules::pipeline_schedule_exists(conn, id)? {
        return Ok(false);
    }
    store::schedules::insert_pipeline_schedule(
        conn,
        &NewPipelineSchedule {
            id: Some(id),
            name,
            pipeline_uuid: pipeline_uuid.to_string(),
            schedule_interval: "@once".into(),
            variables: None,
            created_at: at,
        },
    )?;
    Ok(true)
}

/// Reads `input` (any reader: a file, standard input) and loads it into `conn` in one
/// transaction; nothing is written on error.
///
/// The document is parsed as it is read, and each record loaded as soon as it is parsed, so
/// memory does not grow with the file: nothing is kept per record (see `Loader`). The
/// transaction, and so the data file's write lock, is taken before the first byte is read
/// and held until the last record is loaded.
pub fn import_from(conn: &mut Connection, input: impl Read, now: DateTime) -> Result<Summary, ImportError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Later than every schedule's creation so far, so that the schedules created at it are
    // those this import made.
    let made_at = match store::schedules::latest_schedule_created_at(&tx)? {
        Some(latest) if latest >= now => crate::domain::datetime::add_micros(latest, 1).unwrap_or(latest),
        _ => now,
    };
    let mut loader = Loader {
        conn: &tx,
        now,
        made_at,
        summary: Summary { backfills: 0, pipeline_runs: 0, pipeline_schedules: 0 },
        backfills_read: false,
        waiting: None,
        last_backfill: None,
        last_identity: None,
        failure: None,
    };
    let mut de = serde_json::Deserializer::from_reader(input);
    let parsed = Document(&mut loader).deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = loader.failure.take() {
        return Err(e);
    }
    parsed.map_err(|e| if e.is_io() { ImportError::Read(e) } else { ImportError::Json(e) })?;
    loader.load_waiting_runs()?;
    let summary = loader.summary;
    tx.commit()?;
    Ok(summary)
}

/// `import_from` over a string.
pub fn import(conn: &mut Connection, input: &str, now: DateTime) -> Result<Summary, ImportError> {
    import_from(conn, input.as_bytes(), now)
}

/// An import under way: its transaction's connection and what it has loaded so far. Nothing
/// in it grows with the file: which schedules it made is told by their creation time
/// (`made_at`), a run's backfill is looked up by its primary key, and runs that come before
/// their backfill wait in a temporary file.
struct Loader<'c> {
    conn: &'c Connection,
    now: DateTime,
    /// When the schedules this import makes are created: a time no earlier schedule has.
    made_at: DateTime,
    summary: Summary,
    /// Whether the document's `backfills` have all been loaded. Until then, a run that names
    /// a backfill not loaded yet waits (`Waiting`) for the backfills further on.
    backfills_read: bool,
    waiting: Option<Waiting>,
    /// The last backfill a run named, and its pipeline: runs of one backfill come together,
    /// so most runs need no lookup.
    last_backfill: Option<(i64, String)>,
    /// The last schedule name and token written (`set_schedule_identity`), so that the runs
    /// of one schedule write them once.
    last_identity: Option<(i64, Option<String>, Option<String>)>,
    /// The first error met. The parser is handed a stand-in to stop on (its errors carry
    /// text only); this is the one reported.
    failure: Option<ImportError>,
}

impl Loader<'_> {
    /// Keeps `e` as the import's error and returns the stand-in that stops the parser.
    fn fail<E: de::Error>(&mut self, e: ImportError) -> E {
        self.failure.get_or_insert(e);
        E::custom("the import stopped")
    }

    fn pipeline_of(&mut self, backfill_id: i64) -> rusqlite::Result<Option<String>> {
        if let Some((id, pipeline)) = &self.last_backfill {
            if *id == backfill_id {
                return Ok(Some(pipeline.clone()));
            }
        }
        let found = store::backfills::pipeline_of(self.conn, backfill_id)?;
        if let Some(pipeline) = &found {
            self.last_backfill = Some((backfill_id, pipeline.clone()));
        }
        Ok(found)
    }

    fn backfill(&mut self, i: usize, obj: &Object) -> Result<(), ImportError> {
        let at = |e: FieldError| e.within(&format!("backfills[{i}]."));
        let b = parse_backfill(obj, self.now).map_err(at)?;
        let uuid = model::check_name_length("pipeline_uuid", &b.pipeline_uuid).err();
        warn_over_bounds(uuid.into_iter().chain(b.fields.over_bounds()).map(at));
        if let Some(id) = b.id {
            if store::backfills::pipeline_of(self.conn, id)?.is_some() {
                return Err(at(FieldError::new("id", format!("a backfill with id {id} exists already"))).into());
            }
        }
        if let Some(sid) = b.pipeline_schedule_id {
            let name = format!("Backfill {}", b.fields.name);
            if ensure_schedule(self.conn, sid, name, &b.pipeline_uuid, self.made_at)? {
                self.summary.pipeline_schedules += 1;
            }
        }
        store::backfills::insert_backfill(self.conn, &b)?;
        self.summary.backfills += 1;
        Ok(())
    }

    fn run(&mut self, i: usize, obj: &Object) -> Result<(), ImportError> {
        let at = |e: FieldError| e.within(&format!("pipeline_runs[{i}]."));
        let mut r = parse_run(obj, self.now).map_err(at)?;
        if let Some(bid) = r.backfill_id {
            let pipeline = match self.pipeline_of(bid)? {
                Some(p) => p,
                None if !self.backfills_read => {
                    // Its backfill may come further on: loaded once the backfills are.
                    let waiting = match &mut self.waiting {
                        Some(w) => w,
                        None => self.waiting.insert(Waiting::new().map_err(ImportError::Waiting)?),
                    };
                    return waiting.keep(i, obj).map_err(ImportError::Waiting);
                }
                None => return Err(at(FieldError::new("backfill_id", format!("no backfill has id {bid}"))).into()),
            };
            if r.pipeline_uuid.is_empty() {
                r.pipeline_uuid = pipeline;
            } else if r.pipeline_uuid != pipeline {
                return Err(at(FieldError::new(
                    "pipeline_uuid",
                    format!("is '{}' but backfill {bid} belongs to '{pipeline}'", r.pipeline_uuid),
                ))
                .into());
            }
        }
        if r.pipeline_uuid.trim().is_empty() {
            return Err(at(FieldError::new("pipeline_uuid", "is required when backfill_id is not given")).into());
        }
        let uuid = model::check_name_length("pipeline_uuid", &r.pipeline_uuid).err();
        let metrics = r.metrics.as_ref().and_then(|m| model::check_object_size("metrics", m).err());
        warn_over_bounds(uuid.into_iter().chain(metrics).map(at));
        if let Some(id) = r.id {
            if store::pipeline_runs::get_pipeline_run(self.conn, id)?.is_some() {
                return Err(at(FieldError::new("id", format!("a pipeline run with id {id} exists already"))).into());
            }
        }
        if let Some(sid) = r.pipeline_schedule_id {
            let name = format!("Imported schedule {sid}");
            if ensure_schedule(self.conn, sid, name, &r.pipeline_uuid, self.made_at)? {
                self.summary.pipeline_schedules += 1;
            }
            // A schedule this import made takes the name and token its runs show.
            let f = Fields(obj);
            let name = f.nonblank_string("pipeline_schedule_name").map_err(at)?;
            let token = f.nonblank_string("pipeline_schedule_token").map_err(at)?;
            let identity = (sid, name, token);
            if (identity.1.is_some() || identity.2.is_some()) && self.last_identity.as_ref() != Some(&identity) {
                let (name, token) = (identity.1.as_deref(), identity.2.as_deref());
                store::schedules::set_schedule_identity(self.conn, sid, name, token, self.made_at)?;
                self.last_identity = Some(identity);
            }
        }
        store::pipeline_runs::insert_pipeline_run(self.conn, &r)?;
        self.summary.pipeline_runs += 1;
        Ok(())
    }

    /// Loads the runs that came before their backfills, now that every backfill is loaded;
    /// one whose backfill is still missing fails with its position in the file.
    fn load_waiting_runs(&mut self) -> Result<(), ImportError> {
        self.backfills_read = true;
        let Some(waiting) = self.waiting.take() else { return Ok(()) };
        for line in waiting.read_back().map_err(ImportError::Waiting)? {
            let line = line.map_err(ImportError::Waiting)?;
            let (i, text) = line.split_once('\t').unwrap_or_default();
            let obj: Object = serde_json::from_str(text)?;
            self.run(i.parse().unwrap_or_default(), &obj)?;
        }
        Ok(())
    }
}

/// Run records that came before the backfill they name, kept until the backfills have been
/// read: one line each, its position and its JSON (which has no raw line break), in a
/// temporary file that has no name from the start, so that nothing is left behind.
struct Waiting {
    file: std::io::BufWriter<std::fs::File>,
}

impl Waiting {
    fn new() -> std::io::Result<Waiting> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let path = std::env::temp_dir().join(format!(".backfilld-import-{}-{}", std::process::id(), stamp.as_nanos()));
        // Readable by this user alone (the runs' variables may be private), for the moment
        // it has a name.
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::File::options().read(true).write(true).create_new(true),
            0o600,
        )
        .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Waiting { file: std::io::BufWriter::new(file) })
    }

    fn keep(&mut self, position: usize, record: &Object) -> std::io::Result<()> {
        write!(self.file, "{position}\t")?;
        serde_json::to_writer(&mut self.file, record)?;
        self.file.write_all(b"\n")
    }

    /// The kept lines, in the order they were kept.
    fn read_back(self) -> std::io::Result<std::io::Lines<std::io::BufReader<std::fs::File>>> {
        use std::io::{BufRead, Seek};
        let mut file = self.file.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.rewind()?;
        Ok(std::io::BufReader::new(file).lines())
    }
}

/// The top level: an object whose keys are read as they come.
struct Document<'l, 'c>(&'l mut Loader<'c>);

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Document<'_, '_> {
    fn refuse<E: de::Error>(self) -> E {
        self.0.fail(ImportError::Shape("the top level is not an object".into()))
    }
}

/// Visitor methods that refuse a JSON scalar, each with the visitor's `refuse`.
macro_rules! refuse_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Err(self.refuse())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Err(self.refuse())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Err(self.refuse())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Err(self.refuse())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Err(self.refuse())
        }
    };
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with arrays \"backfills\" and/or \"pipeline_runs\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut backfills, mut runs) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let (kind, seen) = match key.as_str() {
                "backfills" => (Kind::Backfills, &mut backfills),
                "pipeline_runs" => (Kind::PipelineRuns, &mut runs),
                // A listing's answer carries its page's metadata: nothing to load.
                "metadata" => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => return Err(self.0.fail(ImportError::Shape(format!("unknown key \"{key}\"")))),
            };
            if std::mem::replace(seen, true) {
                return Err(self.0.fail(ImportError::Shape(format!("\"{key}\" appears twice"))));
            }
            map.next_value_seed(Records { loader: &mut *self.0, kind })?;
            if kind == Kind::Backfills {
                self.0.backfills_read = true;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.refuse())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.refuse())
    }

    refuse_scalars!();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Backfills,
    PipelineRuns,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Backfills => "backfills",
            Kind::PipelineRuns => "pipeline_runs",
        }
    }
}

/// One of the document's arrays: each element loaded as soon as it is parsed.
struct Records<'l, 'c> {
    loader: &'l mut Loader<'c>,
    kind: Kind,
}

impl Records<'_, '_> {
    fn refuse<E: de::Error>(self) -> E {
        self.loader.fail(ImportError::Shape(format!("\"{}\" is not an array", self.kind.key())))
    }
}

impl<'de> DeserializeSeed<'de> for Records<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of {}", self.kind.key())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            let loaded = match (&value, self.kind) {
                (Value::Object(obj), Kind::Backfills) => self.loader.backfill(i, obj),
                (Value::Object(obj), Kind::PipelineRuns) => self.loader.run(i, obj),
                _ => Err(FieldError::new(&format!("{}[{i}]", self.kind.key()), "must be an object").into()),
            };
            loaded.map_err(|e| self.loader.fail(e))?;
            i += 1;
        }
        Ok(())
    }

    /// `null`: no records.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.refuse())
    }

    refuse_scalars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: DateTime = datetime!(2026-01-01 00:00);

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("b.db")).unwrap();
        (dir, conn)
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_seed_example_imports_with_its_id_and_timestamps() {
        let (_dir, mut conn) = db();
        let input = include_str!("../../examples/seed-example.json");
        let summary = import(&mut conn, input, NOW).unwrap();
        assert_eq!(summary.backfills, 1);
        let b = store::backfills::get_backfill(&conn, 9).unwrap().unwrap();
        assert_eq!(b.fields.name, "sparkling glitter");
        assert_eq!(b.created_at, datetime!(2023-03-23 18:27:58.848959));
        assert_eq!(b.updated_at, datetime!(2023-03-23 18:28:22.379725));
        // Importing it again collides on the id and loads nothing.
        let e = import(&mut conn, input, NOW).unwrap_err().to_string();
        assert_eq!(e, "backfills[0].id: a backfill with id 9 exists already");
    }

    #[test]
    fn one_bad_record_aborts_the_whole_file_and_names_it() {
        let (_dir, mut conn) = db();
        let input = r#"{"backfills": [
            {"name": "ok", "pipeline_uuid": "p"},
            {"name": "bad", "pipeline_uuid": "p", "interval_units": 0}
        ], "pipeline_runs": []}"#;
        let e = import(&mut conn, input, NOW).unwrap_err().to_string();
        assert!(e.starts_with("backfills[1].interval_units: must be at least 1"), "{e}");
        assert_eq!(count(&conn, "backfill"), 0);
    }

    #[test]
    fn runs_need_an_existing_backfill_and_its_pipeline() {
        let (_dir, mut conn) = db();
        let cases = [
            (r#"{"pipeline_runs": [{"backfill_id": 5}]}"#, "pipeline_runs[0].backfill_id: no backfill has id 5"),
            (r#"{"pipeline_runs": [{"status": "initial"}]}"#, "pipeline_runs[0].pipeline_uuid: is required"),
            (
                r#"{"backfills": [{"id": 1, "name": "a", "pipeline_uuid": "p"}],
                    "pipeline_runs": [{"backfill_id": 1, "pipeline_uuid": "q"}]}"#,
                "pipeline_runs[0].pipeline_uuid: is 'q'",
            ),
            (
                r#"{"pipeline_runs": [{"pipeline_uuid": "p", "status": "done"}]}"#,
                "pipeline_runs[0].status: unknown status",
            ),
            (r#"{"pipeline_runs": [{"pipeline_uuid": "p", "colour": 1}]}"#, "pipeline_runs[0].colour: is not a field"),
            (r#"{"backfills": [{"name": "a", "pipeline_uuid": "p", "id": 0}]}"#, "backfills[0].id: must be at least 1"),
            (r#"{"backfills": [3]}"#, "backfills[0]: must be an object"),
            (r#"{"backfills": {}}"#, "the file must be an object"),
            (r#"{"backfill": []}"#, "the file must be an object"),
            (r#"[]"#, "the file must be an object"),
            (r#"{"backfills": ["#, "the file is not valid JSON"),
        ];
        for (input, want) in cases {
            let e = import(&mut conn, input, NOW).unwrap_err().to_string();
            assert!(e.starts_with(want), "{input}: {e}");
        }
        assert_eq!(count(&conn, "backfill") + count(&conn, "pipeline_run"), 0);
    }

    #[test]
    fn a_listing_answer_imports_as_it_comes_and_its_metadata_is_ignored() {
        let (_dir, mut conn) = db();
        let input = r#"{"backfills": [{"id": 2, "name": "a", "pipeline_uuid": "p", "total_run_count": 0}],
                        "metadata": {"count": 1, "next": false, "cursor": null}}"#;
        assert_eq!(import(&mut conn, input, NOW).unwrap().backfills, 1);
        let runs = r#"{"metadata": {"count": 1, "next": false}, "pipeline_runs": [{"backfill_id": 2}]}"#;
        assert_eq!(import(&mut conn, runs, NOW).unwrap().pipeline_runs, 1);
    }

    #[test]
    fn runs_may_come_before_their_backfills() {
        let (_dir, mut conn) = db();
        let input = r#"{"pipeline_runs": [
                          {"id": 20, "backfill_id": 3, "execution_date": "2023-01-01", "status": "failed"},
                          {"id": 21, "pipeline_uuid": "loose"},
                          {"id": 22, "backfill_id": 3, "execution_date": "2023-01-01", "status": "completed"}
                        ],
                        "backfills": [{"id": 3, "name": "a", "pipeline_uuid": "p"}]}"#;
        let s = import(&mut conn, input, NOW).unwrap();
        assert_eq!((s.backfills, s.pipeline_runs), (1, 3));
        let run = store::pipeline_runs::get_pipeline_run(&conn, 22).unwrap().unwrap();
        assert_eq!(run.pipeline_uuid, "p");
        // The newest run of the date counts, whatever order they were loaded in.
        let counts = store::backfills::run_counts_of(&conn, 3).unwrap();
        assert_eq!(counts, crate::domain::model::RunStatusCounts::from([(RunStatus::Completed, 1)]));

        // A run whose backfill never comes is named by its own position.
        let (_dir, mut conn) = db();
        let input = r#"{"pipeline_runs": [{"pipeline_uuid": "p"}, {"backfill_id": 9}],
                        "backfills": [{"id": 3, "name": "a", "pipeline_uuid": "p"}]}"#;
        let e = import(&mut conn, input, NOW).unwrap_err().to_string();
        assert_eq!(e, "pipeline_runs[1].backfill_id: no backfill has id 9");
        assert_eq!(count(&conn, "backfill") + count(&conn, "pipeline_run"), 0);
    }

    #[test]
    fn the_document_is_checked_as_it_is_read() {
        let (_dir, mut conn) = db();
        let cases = [
            (r#"{"backfills": [], "backfills": []}"#, r#"the file must be an object with arrays "backfills" and/or "pipeline_runs": "backfills" appears twice"#),
            (r#"{"backfills": null, "pipeline_runs": null}"#, ""),
            (r#"{"backfills": [], "metadata": 3}"#, ""),
            (r#""backfills""#, "the file must be an object with arrays \"backfills\" and/or \"pipeline_runs\": the top level is not an object"),
            (r#"{"pipeline_runs": 7}"#, r#"the file must be an object with arrays "backfills" and/or "pipeline_runs": "pipeline_runs" is not an array"#),
            (r#"{"backfills": []} []"#, "the file is not valid JSON: trailing characters at line 1 column 19"),
            // A record is loaded, and checked, as soon as it is parsed: before the end is read.
            (r#"{"backfills": [{"name": "a"}, {"#, "backfills[0].pipeline_uuid: is required"),
        ];
        for (input, want) in cases {
            match import(&mut conn, input, NOW) {
                Ok(_) => assert_eq!(want, "", "{input}"),
                Err(e) => assert!(!want.is_empty() && e.to_string().starts_with(want), "{input}: {e}"),
            }
        }
        assert_eq!(count(&conn, "backfill") + count(&conn, "pipeline_run"), 0);
    }

    #[test]
    fn a_read_error_loads_nothing_and_says_so() {
        /// Gives `data`, then fails.
        struct Broken<'a>(&'a [u8]);
        impl std::io::Read for Broken<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("the disk went away"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (_dir, mut conn) = db();
        let input = br#"{"backfills": [{"name": "a", "pipeline_uuid": "p"}, {"name": "b", "pipeline_uuid": "p"}"#;
        let e = import_from(&mut conn, Broken(input), NOW).unwrap_err();
        assert!(matches!(e, ImportError::Read(_)), "{e}");
        assert!(e.to_string().starts_with("cannot read it: the disk went away"), "{e}");
        assert_eq!(count(&conn, "backfill"), 0);
    }

    #[test]
    fn only_the_schedules_an_import_makes_take_their_runs_name_and_token() {
        let (_dir, mut conn) = db();
        // A schedule made later than this import's clock says: the import's own still tell.
        let future = NewPipelineSchedule {
            id: Some(7),
            name: "kept".into(),
            pipeline_uuid: "p".into(),
            schedule_interval: "@once".into(),
            variables: None,
            created_at: datetime!(2030-01-01 00:00),
        };
        store::schedules::insert_pipeline_schedule(&conn, &future).unwrap();
        let runs = r#"{"pipeline_runs": [
            {"pipeline_uuid": "p", "pipeline_schedule_id": 7, "pipeline_schedule_name": "renamed"},
            {"pipeline_uuid": "p", "pipeline_schedule_id": 8, "pipeline_schedule_name": "made", "pipeline_schedule_token": "t8"}
        ]}"#;
        assert_eq!(import(&mut conn, runs, NOW).unwrap().pipeline_schedules, 1);
        let names = |conn: &Connection| -> Vec<(String, String)> {
            conn.prepare("SELECT name, token FROM pipeline_schedule ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let after_first = names(&conn);
        assert_eq!(after_first[0].0, "kept");
        assert_eq!(after_first[1], ("made".to_string(), "t8".to_string()));
        // A later import did not make schedule 8: its runs leave it as it is.
        let again = r#"{"pipeline_runs": [{"pipeline_uuid": "p", "pipeline_schedule_id": 8, "pipeline_schedule_name": "other"}]}"#;
        assert_eq!(import(&mut conn, again, NOW).unwrap().pipeline_schedules, 0);
        assert_eq!(names(&conn), after_first);
    }

    #[test]
    fn runs_inherit_the_pipeline_and_schedules_are_made_for_references() {
        let (_dir, mut conn) = db();
        let input = r#"{"backfills": [{"id": 3, "name": "a", "pipeline_uuid": "p", "pipeline_schedule_id": 7,
                         "status": "running", "total_run_count": 2, "run_status_counts": {}}],
                        "pipeline_runs": [
                          {"backfill_id": 3, "pipeline_schedule_id": 7, "execution_date": "2023-01-01", "status": "completed"},
                          {"id": 40, "pipeline_uuid": "other", "pipeline_schedule_id": 8}
                        ]}"#;
        let s = import(&mut conn, input, NOW).unwrap();
        assert_eq!(s, Summary { backfills: 1, pipeline_runs: 2, pipeline_schedules: 2 });
        let run = store::pipeline_runs::get_pipeline_run(&conn, 40).unwrap().unwrap();
        assert_eq!(run.pipeline_uuid, "other");
        assert_eq!(run.created_at, NOW);
        let name: String = conn.query_row("SELECT name FROM pipeline_schedule WHERE id = 7", [], |r| r.get(0)).unwrap();
        assert_eq!(name, "Backfill a");
    }
}
