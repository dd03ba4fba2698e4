//! The data commands: `backfilld import`, `export` and `backup`, over a data file opened by
//! the command itself (beside a running server or not).

use std::io::Read;
use std::path::Path;

use super::Error;
use crate::cli::{BackupArgs, ExportArgs, ImportArgs};
use crate::data::{backup, export, import};
use crate::db;
use crate::domain::datetime;

/// How much of an import's input is read at a time.
const IMPORT_BUFFER: usize = 256 << 10;

/// `backfilld import`: prints what it loaded. The input is read as its records are loaded
/// (`import::import_from`), never whole into memory.
pub fn import(args: ImportArgs) -> Result<String, Error> {
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|source| Error::Read { what: args.file.display().to_string(), source })?;
        Box::new(file)
    };
    let mut conn = db::open(&args.db.db)?;
    let input = std::io::BufReader::with_capacity(IMPORT_BUFFER, input);
    let summary = import::import_from(&mut conn, input, datetime::now())
        .map_err(|source| Error::Import { file: args.file.clone(), source })?;
    Ok(format!(
        "imported {} backfill(s) and {} pipeline run(s) into {}",
        summary.backfills,
        summary.pipeline_runs,
        args.db.db.display()
    ))
}

/// Opens the data file `path` for a command that reads all of it once (`export`): one that
/// does not exist is refused rather than created empty, and the memory map is off.
fn open_existing(path: &Path) -> Result<rusqlite::Connection, Error> {
    if !path.exists() {
        return Err(Error::NoDataFile(path.to_path_buf()));
    }
    let conn = db::open(path)?;
    db::unmap(&conn).map_err(|source| Error::Db { what: "cannot set up the connection", source })?;
    Ok(conn)
}

/// `backfilld export`: writes the document to OUT, a new file, or to standard output (`-`).
/// What it wrote is said on standard output after a file, and on standard error after
/// standard output, which carries the document.
pub fn export(args: ExportArgs) -> Result<String, Error> {
    let mut conn = open_existing(&args.db.db)?;
    let said = |s: export::Summary| {
        format!(
            "exported {} backfill(s) and {} pipeline run(s) from {}",
            s.backfills,
            s.pipeline_runs,
            args.db.db.display()
        )
    };
    if args.out.as_os_str() == "-" {
        let summary = export::export(&mut conn, std::io::stdout().lock())
            .map_err(|source| Error::Export { out: "standard output".into(), source })?;
        eprintln!("{}", said(summary));
        return Ok(String::new());
    }
    let summary = export::export_to_file(&mut conn, &args.out).map_err(|source| match source {
        // Said alone: the path is in them already.
        export::ExportError::Exists(_) | export::ExportError::Create { .. } | export::ExportError::Publish(_) => {
            Error::Refused(source.to_string())
        }
        source => Error::Export { out: args.out.display().to_string(), source },
    })?;
    Ok(format!("{} to {}", said(summary), args.out.display()))
}

/// `backfilld backup`: copies the data file to OUT, a new file, and says what the copy holds.
pub fn backup(args: BackupArgs) -> Result<String, Error> {
    if !args.db.db.exists() {
        return Err(Error::NoDataFile(args.db.db.clone()));
    }
    let copied = backup::backup(&args.db.db, &args.out)?;
    Ok(format!(
        "backed up {} to {}: {}, {} backfill(s), {} pipeline run(s)",
        args.db.db.display(),
        args.out.display(),
        backup::describe_size(copied.bytes),
        copied.backfills,
        copied.pipeline_runs
    ))
}
