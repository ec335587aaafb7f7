//! `ordersync backup PATH`: a consistent copy of the database, safe while the daemon writes it.
//!
//! Invariant: PATH is at every instant either the file it was before or a complete copy, and the
//! copy is readable by its owner only. SQLite's `VACUUM INTO` writes the copy from one read
//! transaction — one snapshot between two page commits, which in WAL mode neither blocks the
//! writer nor waits for it — into a new 0600 file next to PATH; that file is fsynced, renamed over
//! PATH, and the directory fsynced, so a crash at any point leaves the old file or the new one.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::dbfiles::{self, os_reason as reason};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("database {db} does not exist, so there is nothing to back up; check --db or [database].path")]
    NoDatabase { db: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write backup {path}: {problem}")]
    Write { path: String, problem: String },
}

/// What was written.
#[derive(Debug)]
pub struct Backup {
    pub bytes: u64,
}

/// Copies the database at `db` to `to` (see the module's invariant).
pub fn backup(db: &Path, to: &Path) -> Result<Backup, BackupError> {
    let refuse = |problem: String| BackupError::Write {
        path: to.display().to_string(),
        problem,
    };
    // Every other command creates a missing database; a backup of a new empty one would only
    // hide a mistyped path.
    if !db.exists() {
        return Err(BackupError::NoDatabase {
            db: db.display().to_string(),
        });
    }
    // Open first: the database's -wal and -shm exist while a connection is open, and are
    // recognised below however PATH spells them.
    let conn = store::open_connection(db)?;
    if ["", "-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| same_file(to, &dbfiles::with_suffix(db, suffix)))
    {
        return Err(refuse(
            "it is the database itself (or one of its files), which the copy would replace; choose another path".into(),
        ));
    }
    if to.is_dir() {
        return Err(refuse(
            "it is a directory; give the backup's file name".into(),
        ));
    }
    let Some(name) = to.file_name() else {
        return Err(refuse(
            "it names no file; give the backup's file name".into(),
        ));
    };
    let dir = dbfiles::parent_dir(to);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);

    dbfiles::create_private(&temp).map_err(|e| refuse(creation_problem(dir, &e)))?;
    let written = write_and_replace(&conn, &temp, to, dir);
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(refuse)?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(Backup { bytes })
}

/// `VACUUM INTO` the empty private file `temp`, make it durable, and rename it over `to`.
fn write_and_replace(
    conn: &rusqlite::Connection,
    temp: &Path,
    to: &Path,
    dir: &Path,
) -> Result<(), String> {
    let target = sqlite_file_name(temp)?;
    conn.execute("VACUUM INTO ?1", [&target])
        .map_err(|e| format!("SQLite could not copy the database ({e})"))?;
    // SQLite does not fsync what VACUUM INTO wrote.
    File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("the copy could not be flushed to disk ({})", reason(&e)))?;
    // A -wal or -shm left next to the old file would be read as part of the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        match std::fs::remove_file(dbfiles::with_suffix(to, suffix)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(format!(
                    "the old backup's {suffix} file cannot be removed ({})",
                    reason(&e)
                ))
            }
            _ => {}
        }
    }
    std::fs::rename(temp, to)
        .map_err(|e| format!("the copy cannot be renamed into place ({})", reason(&e)))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        format!(
            "directory {} could not be flushed to disk ({})",
            dir.display(),
            reason(&e)
        )
    })
}

/// The name SQLite is given for `path`: UTF-8, and never read as a `file:` URI (the connection
/// accepts URIs), which a relative path could otherwise start like.
fn sqlite_file_name(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| "its directory's name is not UTF-8, which SQLite needs".to_string())?;
    Ok(if path.is_absolute() {
        text.to_string()
    } else {
        format!("./{text}")
    })
}

/// Whether both paths exist and are the same file (a hard link or another spelling included).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn creation_problem(dir: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("directory {} does not exist", dir.display()),
        _ => format!(
            "a file cannot be created in {} ({})",
            dir.display(),
            reason(e)
        ),
    }
}
