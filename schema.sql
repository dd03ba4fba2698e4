-- backfilld's schema. Applied when a file is made or is of an older version (every statement
-- is idempotent), inside one transaction; `PRAGMA user_version` records the version and
-- `PRAGMA application_id` marks the file as backfilld's (src/db/upgrade.rs, which also adds
-- the columns and fills what a new version adds to an older file; src/db/open.rs opens a
-- file already of this version without it).
--
-- Datetimes are INTEGER microseconds since 1970-01-01 UTC: compact, exact to the microsecond
-- as Mage's are, and ordered like the instants they stand for. `datetime(x / 1e6, 'unixepoch')`
-- shows one in the sqlite3 shell. JSON objects are TEXT checked with json_valid.

CREATE TABLE IF NOT EXISTS pipeline_schedule (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    pipeline_uuid     TEXT    NOT NULL,
    schedule_type     TEXT    NOT NULL DEFAULT 'time'
                      CHECK (schedule_type IN ('time', 'event', 'api')),
    schedule_interval TEXT,
    start_time        INTEGER,
    status            TEXT    NOT NULL DEFAULT 'inactive'
                      CHECK (status IN ('active', 'inactive')),
    variables         TEXT    CHECK (variables IS NULL OR json_valid(variables)),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    -- Version 4: Mage's schedule token, 32 hex digits, made on insert.
    token             TEXT
);

-- AUTOINCREMENT: ids are never reused, so a deleted backfill's id cannot be taken by a new
-- one while its runs (which keep no backfill_id) or a client still remember it.
CREATE TABLE IF NOT EXISTS backfill (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL CHECK (trim(name) <> ''),
    pipeline_uuid        TEXT    NOT NULL,
    block_uuid           TEXT,
    start_datetime       INTEGER,
    end_datetime         INTEGER,
    interval_type        TEXT    CHECK (interval_type IN
                             ('second', 'minute', 'hour', 'day', 'week', 'month', 'year', 'custom')),
    interval_units       INTEGER CHECK (interval_units >= 1),
    status               TEXT    CHECK (status IN
                             ('initial', 'running', 'completed', 'failed', 'cancelled')),
    variables            TEXT    CHECK (variables IS NULL OR json_valid(variables)),
    settings             TEXT    CHECK (settings IS NULL OR json_valid(settings)),
    metrics              TEXT    CHECK (metrics IS NULL OR json_valid(metrics)),
    pipeline_schedule_id INTEGER REFERENCES pipeline_schedule (id) ON DELETE SET NULL,
    started_at           INTEGER,
    completed_at         INTEGER,
    failed_at            INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    -- Version 3. A paused backfill's runs are not handed out by claims (its status is
    -- unchanged).
    is_paused            INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1)),
    -- Version 7. A halted backfill's waiting runs are not handed out: it failed under
    -- settings.stop_on_failure, or it had failed before version 7 (when a failed date stopped
    -- every backfill). Running it again or retrying a date clears it.
    is_halted            INTEGER NOT NULL DEFAULT 0 CHECK (is_halted IN (0, 1)),
    CHECK (end_datetime IS NULL OR start_datetime IS NULL OR end_datetime >= start_datetime)
);

-- The listing: newest created_at first, ties by higher id; and the same per pipeline.
CREATE INDEX IF NOT EXISTS backfill_listing ON backfill (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS backfill_pipeline_listing
    ON backfill (pipeline_uuid, created_at DESC, id DESC);

-- Version 8: the listing filtered by status (`status=`), each status's rows in the listing's
-- order, overall and per pipeline; and by a name's prefix without case (ASCII letters, as
-- NOCASE folds them), with created_at so that a narrow prefix's matches are sorted from the
-- index alone.
CREATE INDEX IF NOT EXISTS backfill_status_listing ON backfill (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS backfill_pipeline_status_listing
    ON backfill (pipeline_uuid, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS backfill_name_listing ON backfill (name COLLATE NOCASE, created_at);

CREATE TABLE IF NOT EXISTS pipeline_run (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_schedule_id INTEGER REFERENCES pipeline_schedule (id) ON DELETE SET NULL,
    pipeline_uuid        TEXT    NOT NULL,
    -- Deleting a backfill keeps its runs, as Mage does.
    backfill_id          INTEGER REFERENCES backfill (id) ON DELETE SET NULL,
    execution_date       INTEGER,
    status               TEXT    NOT NULL DEFAULT 'initial' CHECK (status IN
                             ('initial', 'running', 'completed', 'failed', 'cancelled')),
    -- JSON objects, written only by store::pipeline_runs from serde values; unlike the
    -- backfill's, not re-checked with json_valid on insert: that check alone was a measurable
    -- share of starting a large backfill (docs/performance.md).
    variables            TEXT,
    event_variables      TEXT,
    metrics              TEXT,
    passed_sla           INTEGER NOT NULL DEFAULT 0 CHECK (passed_sla IN (0, 1)),
    executor_type        TEXT,
    started_at           INTEGER,
    completed_at         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    -- Version 3, the lease of a claimed run: who holds (or last held) it, for how long each
    -- claim or heartbeat extends it, until when (null unless `running` under a lease), and
    -- which run of its date it is (1 for the first).
    worker               TEXT,
    lease_seconds        INTEGER,
    lease_expires_at     INTEGER,
    attempt              INTEGER
);

-- The runs of one backfill and execution date, newest (highest id) last: what
-- store::pipeline_runs looks up to keep backfill_run_count.
CREATE INDEX IF NOT EXISTS pipeline_run_backfill ON pipeline_run (backfill_id, execution_date, id);
-- The run listing, newest (highest id: ids only grow) first: the table itself when
-- unfiltered, these per backfill and per pipeline (a status filter rides on whichever
-- applies). By id rather than created_at: every index here is paid for by each of the
-- 100,000 inserts of a start, and ids need no index of their own.
CREATE INDEX IF NOT EXISTS pipeline_run_backfill_listing ON pipeline_run (backfill_id, id);
CREATE INDEX IF NOT EXISTS pipeline_run_pipeline_listing ON pipeline_run (pipeline_uuid, id);
-- The same listings filtered by status, so that a page of a rare status (`failed`) reads its
-- own rows instead of walking past every other run.
CREATE INDEX IF NOT EXISTS pipeline_run_status_listing ON pipeline_run (status, id);
CREATE INDEX IF NOT EXISTS pipeline_run_backfill_status_listing ON pipeline_run (backfill_id, status, id);
CREATE INDEX IF NOT EXISTS pipeline_run_pipeline_status_listing ON pipeline_run (pipeline_uuid, status, id);

-- Claims (dispatch::claim): a backfill's runs waiting to be claimed, by date either way (only
-- `initial` runs: a claim does not walk past the finished ones); and the leases by expiry,
-- which the sweep reads from the soonest (only leased runs: its cost does not grow with the
-- stored runs). The backfills that have runs waiting are indexed below, beside their counts.
CREATE INDEX IF NOT EXISTS pipeline_run_waiting ON pipeline_run (backfill_id, execution_date, id)
    WHERE status = 'initial';
CREATE INDEX IF NOT EXISTS pipeline_run_lease ON pipeline_run (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;

-- Counts kept in the same transaction as every write, so that a listing reads a few rows
-- instead of scanning every matching one (a million-row COUNT(*) walks a million index
-- entries).

-- How many backfills each pipeline has, and under '' all of them ('' is never a
-- pipeline_uuid: a blank one is refused).
CREATE TABLE IF NOT EXISTS backfill_count (
    pipeline_uuid TEXT    PRIMARY KEY,
    n             INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS backfill_count_insert AFTER INSERT ON backfill BEGIN
    INSERT INTO backfill_count (pipeline_uuid, n) VALUES (NEW.pipeline_uuid, 1), ('', 1)
        ON CONFLICT (pipeline_uuid) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER IF NOT EXISTS backfill_count_delete AFTER DELETE ON backfill BEGIN
    UPDATE backfill_count SET n = n - 1 WHERE pipeline_uuid IN (OLD.pipeline_uuid, '');
END;

CREATE TRIGGER IF NOT EXISTS backfill_count_move AFTER UPDATE OF pipeline_uuid ON backfill
WHEN OLD.pipeline_uuid IS NOT NEW.pipeline_uuid BEGIN
    UPDATE backfill_count SET n = n - 1 WHERE pipeline_uuid = OLD.pipeline_uuid;
    INSERT INTO backfill_count (pipeline_uuid, n) VALUES (NEW.pipeline_uuid, 1)
        ON CONFLICT (pipeline_uuid) DO UPDATE SET n = n + 1;
END;

-- Version 8: how many backfills each pipeline has in each status ('' for not started), and
-- under pipeline '' all pipelines': the counts of the listing's status filter. Kept by these
-- triggers in the transaction of every insert, status change and delete.
CREATE TABLE IF NOT EXISTS backfill_status_tally (
    pipeline_uuid TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (pipeline_uuid, status)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS backfill_status_tally_insert AFTER INSERT ON backfill BEGIN
    INSERT INTO backfill_status_tally (pipeline_uuid, status, n)
        VALUES (NEW.pipeline_uuid, COALESCE(NEW.status, ''), 1), ('', COALESCE(NEW.status, ''), 1)
        ON CONFLICT (pipeline_uuid, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER IF NOT EXISTS backfill_status_tally_delete AFTER DELETE ON backfill BEGIN
    UPDATE backfill_status_tally SET n = n - 1
        WHERE pipeline_uuid IN (OLD.pipeline_uuid, '') AND status = COALESCE(OLD.status, '');
END;

CREATE TRIGGER IF NOT EXISTS backfill_status_tally_update AFTER UPDATE OF status, pipeline_uuid ON backfill
WHEN OLD.status IS NOT NEW.status OR OLD.pipeline_uuid IS NOT NEW.pipeline_uuid BEGIN
    UPDATE backfill_status_tally SET n = n - 1
        WHERE pipeline_uuid IN (OLD.pipeline_uuid, '') AND status = COALESCE(OLD.status, '');
    INSERT INTO backfill_status_tally (pipeline_uuid, status, n)
        VALUES (NEW.pipeline_uuid, COALESCE(NEW.status, ''), 1), ('', COALESCE(NEW.status, ''), 1)
        ON CONFLICT (pipeline_uuid, status) DO UPDATE SET n = n + 1;
END;

-- Per backfill and status, how many runs are the newest (highest id) run of their execution
-- date: Mage's run_status_counts. A run stops counting when a newer run of its date arrives.
-- Kept by store::pipeline_runs, the only code that writes runs, in the transaction of each
-- write: row triggers doing the same made starting a large backfill several times slower
-- (docs/performance.md), where a start can add its runs up once.
CREATE TABLE IF NOT EXISTS backfill_run_count (
    backfill_id INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (backfill_id, status)
) WITHOUT ROWID;

-- The backfills with runs waiting to be claimed, in id order: the round-robin walk of a
-- claim (store::backfills::next_claimable) visits these alone, not every backfill.
CREATE INDEX IF NOT EXISTS backfill_run_waiting ON backfill_run_count (backfill_id)
    WHERE status = 'initial' AND n > 0;

-- A deleted backfill's runs stay, unlinked (backfill_id set to null): its counts go.
CREATE TRIGGER IF NOT EXISTS run_count_backfill_delete AFTER DELETE ON backfill BEGIN
    DELETE FROM backfill_run_count WHERE backfill_id = OLD.id;
END;

-- Version 8: per backfill, the status of each date's newest run, one byte per date of its
-- schedule (0 none, then completed, failed, running, initial, cancelled: domain::datemap), in
-- chunks of 1,024 dates by the date's position in the schedule: a date map reads a backfill's
-- chunks (a hundred for 100,000 dates) instead of its runs. Kept by store::pipeline_runs
-- beside backfill_run_count, in the transaction of each write (store::date_map).
CREATE TABLE IF NOT EXISTS run_date_chunk (
    backfill_id INTEGER NOT NULL,
    chunk       INTEGER NOT NULL,
    codes       BLOB    NOT NULL,
    PRIMARY KEY (backfill_id, chunk)
);

CREATE TRIGGER IF NOT EXISTS run_date_chunk_backfill_delete AFTER DELETE ON backfill BEGIN
    DELETE FROM run_date_chunk WHERE backfill_id = OLD.id;
END;

-- How many runs (all of them, not only the newest of each date) each status has, for every
-- filter of the run listing: pipeline_uuid '' means any pipeline and backfill_id 0 any
-- backfill or none (ids start at 1), so each run is counted in ('', 0), (its pipeline, 0)
-- and, when it has a backfill, ('', backfill) and (pipeline, backfill). Kept by
-- store::pipeline_runs in each write's transaction, as backfill_run_count is.
CREATE TABLE IF NOT EXISTS run_tally (
    pipeline_uuid TEXT    NOT NULL,
    backfill_id   INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (pipeline_uuid, backfill_id, status)
) WITHOUT ROWID;

-- A deleted backfill's runs are unlinked: they no longer count under its id.
CREATE TRIGGER IF NOT EXISTS run_tally_backfill_delete AFTER DELETE ON backfill BEGIN
    -- (A backfill's runs are all of its pipeline: import refuses a mismatch, and a backfill's
    -- pipeline never changes.)
    DELETE FROM run_tally WHERE pipeline_uuid IN ('', OLD.pipeline_uuid) AND backfill_id = OLD.id;
END;

-- OAuth tokens: only the SHA-256 of a token is stored, so a copy of the file yields none.
CREATE TABLE IF NOT EXISTS oauth_token (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE CHECK (trim(name) <> ''),
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);

-- Version 4: users who log in (POST /api/sessions) and their sessions. Users are managed with
-- `backfilld user`; only a password's Argon2id hash (PHC string) is stored.
CREATE TABLE IF NOT EXISTS user (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE CHECK (trim(email) <> ''),
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- A login's OAuth token, looked up by its SHA-256 like oauth_token's; it ends when it
-- expires, when its user logs out with it, or when its user is deleted.
CREATE TABLE IF NOT EXISTS user_session (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES user (id) ON DELETE CASCADE,
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS user_session_user ON user_session (user_id, id);

-- The server's own secrets, made once per file: `jwt_secret` signs the JWT a login answers
-- (HS256), so that a session's cookie stays valid across restarts and for every process
-- serving the file.
CREATE TABLE IF NOT EXISTS secret (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO secret (name, value) VALUES ('jwt_secret', randomblob(32));

-- Version 4 gave schedules Mage's `token` (32 hex digits), which runs show as
-- `pipeline_schedule_token`; older schedules get one here.
UPDATE pipeline_schedule SET token = lower(hex(randomblob(16))) WHERE token IS NULL;
-- Version 5. Logins may name the user by username instead of email (as Mage's do): unique,
-- without case.
CREATE UNIQUE INDEX IF NOT EXISTS user_username ON user (username COLLATE NOCASE);

-- Version 6: how many backfills each status has ('' for not started), for /metrics; kept by
-- these triggers in the transaction of every insert, status change and delete (a handful of
-- backfill writes per request, against a scan of every backfill per scrape).
CREATE TABLE IF NOT EXISTS backfill_status_count (
    status TEXT    PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO backfill_status_count (status, n)
    VALUES ('', 0), ('initial', 0), ('running', 0), ('completed', 0), ('failed', 0), ('cancelled', 0);
CREATE TRIGGER IF NOT EXISTS backfill_status_count_insert AFTER INSERT ON backfill BEGIN
    UPDATE backfill_status_count SET n = n + 1 WHERE status = COALESCE(NEW.status, '');
END;
CREATE TRIGGER IF NOT EXISTS backfill_status_count_delete AFTER DELETE ON backfill BEGIN
    UPDATE backfill_status_count SET n = n - 1 WHERE status = COALESCE(OLD.status, '');
END;
CREATE TRIGGER IF NOT EXISTS backfill_status_count_update AFTER UPDATE OF status ON backfill
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE backfill_status_count SET n = n - 1 WHERE status = COALESCE(OLD.status, '');
    UPDATE backfill_status_count SET n = n + 1 WHERE status = COALESCE(NEW.status, '');
END;

-- Version 7: each run's log, the output its worker ships (POST /api/pipeline_runs/:id/logs),
-- kept as pieces of at most 64 KiB keyed by where they start in the run's whole output, so
-- that an append inserts a piece and never rewrites what is stored. A run's first 512 KiB
-- (its head) are kept; past them, the pieces at the front of the rest are dropped while at
-- least 512 KiB stay behind them (its tail), and `cut` counts the bytes dropped
-- (store::logs, domain::log). A log goes with its run.
CREATE TABLE IF NOT EXISTS run_log (
    run_id   INTEGER PRIMARY KEY REFERENCES pipeline_run (id) ON DELETE CASCADE,
    -- Bytes of output received in all: where the next chunk starts.
    received INTEGER NOT NULL CHECK (received >= 0),
    -- Bytes dropped between the head and the tail.
    cut      INTEGER NOT NULL DEFAULT 0 CHECK (cut >= 0 AND cut <= received)
);

CREATE TABLE IF NOT EXISTS run_log_piece (
    run_id INTEGER NOT NULL REFERENCES run_log (run_id) ON DELETE CASCADE,
    pos    INTEGER NOT NULL CHECK (pos >= 0),
    data   BLOB    NOT NULL,
    PRIMARY KEY (run_id, pos)
);

-- The bytes every log stores, kept by these triggers in the transaction of each piece's
-- insert and delete, so that the bound on all logs (--max-log-bytes) is checked without a
-- scan.
CREATE TABLE IF NOT EXISTS run_log_total (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO run_log_total (id, bytes) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS run_log_total_insert AFTER INSERT ON run_log_piece BEGIN
    UPDATE run_log_total SET bytes = bytes + length(NEW.data) WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS run_log_total_delete AFTER DELETE ON run_log_piece BEGIN
    UPDATE run_log_total SET bytes = bytes - length(OLD.data) WHERE id = 0;
END;

-- Version 7: what changed when, for the API's conditional reads (src/api/fresh.rs). Scope 0
-- counts every write of what the API shows (backfills, runs, their schedules; not logs,
-- users or tokens); scope N (a backfill's id) holds the value scope 0 had after the last
-- write to backfill N or to one of its runs. Kept by the store's write functions
-- (store::changes), in the transaction of each write, whichever process makes it (the
-- server, an import): so a backfill's mark moves with its own writes alone, and never
-- takes a value it had before. A deleted backfill's row stays, so that its id's mark goes
-- on growing.
CREATE TABLE IF NOT EXISTS change_mark (
    scope INTEGER PRIMARY KEY,
    mark  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO change_mark (scope, mark) VALUES (0, 0);
