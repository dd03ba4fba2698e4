//! Runs' logs: a worker appends its run's output in chunks (`append`), anyone reads it from a
//! position (`read`). Each run's log is bounded (`domain::log`: head and tail), and all logs
//! together by the server's `--max-log-bytes`, which drops the logs of the oldest finished
//! runs first, in the same transaction as the append that passed it.

use rusqlite::Connection;

use super::dispatch::check_holder;
use super::{queries, Error, Result};
use crate::domain::datetime::DateTime;
use crate::domain::log::{pieces, LogMeta, TAIL_BYTES};
use crate::domain::model::RunStatus;
use crate::store;

/// A chunk of a run's output from its worker: `POST /api/pipeline_runs/:id/logs`.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub worker: &'a str,
    /// Where the chunk starts in the run's whole output.
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The run's log after it.
    pub log: LogMeta,
    /// Logs of finished runs dropped to keep all logs within the bound, if any were.
    pub pruned: Option<Pruned>,
}

/// Logs dropped by the bound on all logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub bytes: u64,
}

/// How many finished runs' logs the bound on all logs looks at per query.
const PRUNE_BATCH: u64 = 100;

/// Appends the part of `chunk` beyond what was received of run `run_id`'s output, if its
/// worker holds the run's live lease (else 409, as for a heartbeat). A chunk sent again (a
/// retry after a lost answer) stores nothing twice; one starting past what was received is
/// a 409 that names where the next must start. Past `max_total` bytes in all logs, the logs
/// of the oldest finished runs are deleted until the rest fits (a running run's never).
pub fn append(conn: &Connection, run_id: i64, chunk: Chunk, max_total: u64, now: DateTime) -> Result<Appended> {
    let run = queries::run(conn, run_id)?;
    check_holder(&run, chunk.worker, RunStatus::Running, now)?;
    let mut log = store::logs::get_log(conn, run_id)?.unwrap_or_default();
    if chunk.offset > log.received {
        return Err(Error::Conflict(format!(
            "the log of pipeline run {run_id} has {} bytes: a chunk must start at offset {} (or before, to send \
             again), not {}",
            log.received, log.received, chunk.offset
        )));
    }
    let skip = usize::try_from(log.received - chunk.offset).unwrap_or(usize::MAX);
    let new = chunk.bytes.get(skip..).unwrap_or_default();
    if new.is_empty() {
        return Ok(Appended { log, pruned: None });
    }
    if log.received == 0 {
        // The log's row first: its pieces refer to it.
        store::logs::put_log(conn, run_id, &log)?;
    }
    for (pos, a, b) in pieces(log.received, new.len()) {
        store::logs::insert_piece(conn, run_id, pos, &new[a..b])?;
    }
    log.received += new.len() as u64;
    // The tail keeps at least TAIL_BYTES: its first piece goes while the rest still hold them.
    while let Some((pos, len)) = store::logs::first_tail_piece(conn, run_id)? {
        if log.tail() - len < TAIL_BYTES {
            break;
        }
        store::logs::delete_piece(conn, run_id, pos)?;
        log.cut += len;
    }
    store::logs::put_log(conn, run_id, &log)?;
    Ok(Appended { log, pruned: prune(conn, max_total)? })
}

/// Deletes the logs of the oldest finished runs until all logs store at most `max_total`
/// bytes, or no finished run's log is left.
fn prune(conn: &Connection, max_total: u64) -> Result<Option<Pruned>> {
    let mut total = store::logs::total_bytes(conn)?;
    let mut pruned = Pruned { runs: 0, bytes: 0 };
    while total > max_total {
        let oldest = store::logs::oldest_finished_logs(conn, PRUNE_BATCH)?;
        if oldest.is_empty() {
            break;
        }
        for (run_id, bytes) in oldest {
            if total <= max_total {
                break;
            }
            store::logs::delete_log(conn, run_id)?;
            total = total.saturating_sub(bytes);
            pruned.runs += 1;
            pruned.bytes += bytes;
        }
    }
    Ok((pruned.runs > 0).then_some(pruned))
}

/// Where a read of a log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// A position in the log as stored (`Range: bytes=N-`, `?offset=N`).
    Stored(u64),
    /// After the first N bytes of the run's output (`?after=N`): where a follower that has
    /// read that much goes on, the marker first if what follows them was cut.
    Output(u64),
}

/// A read of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    pub log: LogMeta,
    /// Whether the run has finished (completed, failed or cancelled): its log is then whole.
    pub finished: bool,
    /// Where `bytes` start in the log as stored.
    pub start: u64,
    pub bytes: Vec<u8>,
}

/// Run `run_id`'s log from `from` to its end, as stored (empty when it has none, or `from`
/// is at or past its end).
pub fn read(conn: &Connection, run_id: i64, from: From) -> Result<LogRead> {
    let run = queries::run(conn, run_id)?;
    let finished = matches!(run.status, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled);
    let log = store::logs::get_log(conn, run_id)?.unwrap_or_default();
    let start = match from {
        From::Stored(n) => n.min(log.len()),
        From::Output(n) => log.stored_position(n),
    };
    let parts = log.parts_from(start);
    let mut bytes = Vec::with_capacity(usize::try_from(log.len() - start).unwrap_or(0));
    store::logs::read_range(conn, run_id, parts.head.0, parts.head.1, &mut bytes)?;
    bytes.extend_from_slice(&parts.marker);
    store::logs::read_range(conn, run_id, parts.tail.0, parts.tail.1, &mut bytes)?;
    Ok(LogRead { log, finished, start, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open;
    use crate::domain::datetime;
    use crate::domain::log::HEAD_BYTES;

    /// A file with runs 1 (running, held by `w` for an hour) and 2, 3 (finished).
    fn file() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("b.db")).unwrap();
        let later = datetime::to_micros(datetime::now()) + 3_600_000_000;
        conn.execute_batch(&format!(
            "INSERT INTO pipeline_run (pipeline_uuid, status, worker, lease_seconds, lease_expires_at, created_at, updated_at)
                 VALUES ('p', 'running', 'w', 60, {later}, 0, 0);
             INSERT INTO pipeline_run (pipeline_uuid, status, worker, created_at, updated_at) VALUES ('p', 'completed', 'w', 0, 0);
             INSERT INTO pipeline_run (pipeline_uuid, status, worker, created_at, updated_at) VALUES ('p', 'failed', 'w', 0, 0);"
        ))
        .unwrap();
        (dir, conn)
    }

    fn chunk(offset: u64, bytes: &[u8]) -> Chunk<'_> {
        Chunk { worker: "w", offset, bytes }
    }

    fn all(conn: &Connection, id: i64) -> Vec<u8> {
        read(conn, id, From::Stored(0)).unwrap().bytes
    }

    #[test]
    fn chunks_append_once_each_and_a_gap_is_refused() {
        let (_dir, conn) = file();
        let now = datetime::now();
        append(&conn, 1, chunk(0, b"hello "), u64::MAX, now).unwrap();
        // Sent again with more: only the new part is kept.
        let a = append(&conn, 1, chunk(0, b"hello world\n"), u64::MAX, now).unwrap();
        assert_eq!(a.log, LogMeta { received: 12, cut: 0 });
        append(&conn, 1, chunk(6, b"world\n"), u64::MAX, now).unwrap();
        assert_eq!(all(&conn, 1), b"hello world\n");
        let Err(Error::Conflict(m)) = append(&conn, 1, chunk(13, b"x"), u64::MAX, now) else { panic!() };
        assert!(m.contains("offset 12"), "{m}");
        // Not the holder, a finished run, no such run.
        assert!(matches!(
            append(&conn, 1, Chunk { worker: "v", ..chunk(12, b"x") }, u64::MAX, now),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(append(&conn, 2, chunk(0, b"x"), u64::MAX, now), Err(Error::Conflict(_))));
        assert!(matches!(append(&conn, 9, chunk(0, b"x"), u64::MAX, now), Err(Error::NotFound(_))));
        // Reads from a position; a run without a log reads empty.
        let r = read(&conn, 1, From::Stored(6)).unwrap();
        assert_eq!((r.bytes.as_slice(), r.start, r.finished), (&b"world\n"[..], 6, false));
        assert_eq!(read(&conn, 1, From::Stored(99)).unwrap().bytes, b"");
        assert_eq!(
            read(&conn, 2, From::Stored(0)).unwrap(),
            LogRead { log: LogMeta::default(), finished: true, start: 0, bytes: vec![] }
        );
    }

    #[test]
    fn a_long_output_keeps_its_head_and_tail_around_a_marker_and_stores_no_more() {
        let (_dir, conn) = file();
        let now = datetime::now();
        // 3 MiB in 10 KiB chunks, each byte telling its position.
        let output: Vec<u8> = (0..3u64 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        for (i, c) in output.chunks(10 * 1024).enumerate() {
            append(&conn, 1, chunk(i as u64 * 10 * 1024, c), u64::MAX, now).unwrap();
        }
        let r = read(&conn, 1, From::Stored(0)).unwrap();
        let log = r.log;
        assert_eq!(log.received, 3 << 20);
        assert!(log.tail() >= TAIL_BYTES && log.tail() < TAIL_BYTES + 64 * 1024, "{log:?}");
        let head = HEAD_BYTES as usize;
        assert_eq!(&r.bytes[..head], &output[..head]);
        let marker = log.marker();
        assert_eq!(&r.bytes[head..head + marker.len()], marker.as_bytes());
        assert_eq!(&r.bytes[head + marker.len()..], &output[log.tail_start() as usize..]);
        assert_eq!(store::logs::total_bytes(&conn).unwrap(), log.stored_bytes());
        // The last 64 KiB, and a follower's place in the cut.
        let last = read(&conn, 1, From::Stored(log.len() - 65536)).unwrap();
        assert_eq!(last.bytes, &output[output.len() - 65536..]);
        let after = read(&conn, 1, From::Output(HEAD_BYTES + 10)).unwrap();
        assert!(after.bytes.starts_with(marker.as_bytes()));
    }

    #[test]
    fn past_the_bound_the_oldest_finished_runs_logs_go_first_never_a_running_one() {
        let (_dir, conn) = file();
        let now = datetime::now();
        // Finished runs' logs as a worker left them (appended while they ran).
        conn.execute_batch("UPDATE pipeline_run SET status = 'running', lease_seconds = 60, lease_expires_at = (SELECT lease_expires_at FROM pipeline_run WHERE id = 1)").unwrap();
        append(&conn, 2, chunk(0, &[b'2'; 100]), u64::MAX, now).unwrap();
        append(&conn, 3, chunk(0, &[b'3'; 100]), u64::MAX, now).unwrap();
        conn.execute_batch("UPDATE pipeline_run SET status = 'completed', lease_expires_at = NULL WHERE id IN (2, 3)")
            .unwrap();
        // Run 1's 150 bytes pass 250: run 2's log goes (the oldest), not run 3's.
        let a = append(&conn, 1, chunk(0, &[b'1'; 150]), 250, now).unwrap();
        assert_eq!(a.pruned, Some(Pruned { runs: 1, bytes: 100 }));
        assert_eq!((all(&conn, 2).len(), all(&conn, 3).len()), (0, 100));
        assert_eq!(store::logs::total_bytes(&conn).unwrap(), 250);
        // Past any bound with only its own log left: it is kept.
        let a = append(&conn, 1, chunk(150, &[b'1'; 200]), 100, now).unwrap();
        assert_eq!(a.pruned, Some(Pruned { runs: 1, bytes: 100 }));
        assert_eq!(all(&conn, 1).len(), 350);
        assert_eq!(store::logs::total_bytes(&conn).unwrap(), 350);
    }
}
