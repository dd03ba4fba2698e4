//! The guard on the data file while a server holds it: whether its path still names the file
//! the server opened (and its WAL the one SQLite made), since a file deleted or replaced under
//! a running server would take every later write with it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
/// The data file's path no longer names the file the server has open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the data file {path} was {what} while the server had it open")]
pub struct FileLost {
    pub path: PathBuf,
    pub what: &'static str,
}

/// The device and inode of the data file (and of its WAL once there is one), taken at start,
/// and whether they were ever found changed: from then on the file is lost for good, since
/// the server's connections hold the old, unlinked one.
pub(super) struct FileWatch {
    pub(super) path: PathBuf,
    db: (u64, u64),
    wal: Mutex<Option<(u64, u64)>>,
    lost: AtomicBool,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The file SQLite (or backfilld) keeps beside the data file: `FILE-wal`, `FILE.lock`.
pub(super) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

pub(super) fn wal_path(path: &Path) -> PathBuf {
    beside(path, "-wal")
}

impl FileWatch {
    pub(super) fn new(path: &Path) -> std::io::Result<FileWatch> {
        Ok(FileWatch {
            path: path.to_path_buf(),
            db: identity(path)?,
            wal: Mutex::new(None),
            lost: AtomicBool::new(false),
        })
    }

    /// Whether the file was ever found lost (checked before; never asked of the disk here).
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn lost(&self, what: &'static str) -> FileLost {
        FileLost { path: self.path.clone(), what }
    }

    pub(super) fn check(&self) -> Result<(), FileLost> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost("deleted or replaced"));
        }
        let found = match identity(&self.path) {
            Ok(id) if id == self.db => self.check_wal(),
            Ok(_) => Err(self.lost("replaced by another file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.lost("deleted or moved")),
            // Anything else (a permission change on the folder, an I/O error) says nothing
            // about which file the path names: asked again next time.
            Err(e) => {
                log::warn!("cannot check the data file {}: {e}", self.path.display());
                Ok(())
            }
        };
        if found.is_err() {
            self.lost.store(true, Ordering::Release);
        }
        found
    }

    /// The WAL is SQLite's to create, and it stays (truncated, never deleted) while any
    /// connection is open; so once seen, it must stay the same file.
    fn check_wal(&self) -> Result<(), FileLost> {
        let mut known = self.wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = match identity(&wal_path(&self.path)) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return Ok(()),
        };
        match (*known, found) {
            (None, found) => *known = found,
            (Some(old), Some(new)) if old == new => {}
            (Some(_), Some(_)) => return Err(self.lost("given a write-ahead log (-wal file) that is not its own")),
            (Some(_), None) => return Err(self.lost("stripped of its write-ahead log (-wal file)")),
        }
        Ok(())
    }
}
