//! The database's files on disk: who may read them, and why one cannot be opened.
//!
//! Invariant: the database file, and so its `-wal` and `-shm` (SQLite's unix VFS creates those with
//! the database file's own mode), is owner-only (0600) whatever the umask, because it holds
//! customer data. A new file is created 0600 here before SQLite opens it; an existing one that
//! others may read is tightened, with a warning that says so. A path that cannot be opened is
//! explained in one sentence that names it once and says what to do.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Owner read and write: the mode of every file that holds the database or a copy of it.
pub const PRIVATE_MODE: u32 = 0o600;

/// Ensures `path` is an owner-only file before SQLite opens it: creates it empty (SQLite takes an
/// empty file for an empty database) or tightens it and its `-wal`/`-shm`. SQLite's special names
/// (`:memory:`, `""`, `file:` URIs) are left to SQLite. The error is the end of a sentence
/// ([`explain`]).
pub fn prepare(path: &Path) -> Result<(), String> {
    if is_special_name(path) {
        return Ok(());
    }
    match create_private(path) {
        Ok(_) => Ok(()),
        // A file that is not a database (a wrong --db) is left as it is: SQLite refuses it next.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && holds_a_database(path) => {
            for file in [
                path.to_path_buf(),
                with_suffix(path, "-wal"),
                with_suffix(path, "-shm"),
            ] {
                tighten(&file);
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(explain(path, Cause::Io(&e))),
    }
}

/// A regular file that is empty or starts with SQLite's header string.
fn holds_a_database(path: &Path) -> bool {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(MAGIC.len());
    match io::Read::read_to_end(
        &mut io::Read::take(&mut file, MAGIC.len() as u64),
        &mut head,
    ) {
        Ok(_) => head.is_empty() || head == MAGIC,
        Err(_) => false,
    }
}

/// Creates a new, empty file readable and writable by its owner only, whatever the umask (which
/// may have taken bits from the mode asked of `open`, so the mode is set again on the open file).
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
    Ok(file)
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal` and `-shm`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn is_special_name(path: &Path) -> bool {
    let s = path.as_os_str().to_string_lossy();
    s.is_empty() || s == ":memory:" || s.starts_with("file:")
}

/// Takes group and other bits off an existing regular file. Not fatal when it fails (a file owned
/// by another user): the warning says what to run.
fn tighten(file: &Path) {
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return;
    }
    let tightened = mode & !0o077;
    match std::fs::set_permissions(file, std::fs::Permissions::from_mode(tightened)) {
        Ok(()) => tracing::warn!(
            "database file {} was readable by others (mode {mode:04o}); made it {tightened:04o}, owner only, as it holds customer data",
            file.display()
        ),
        Err(e) => tracing::warn!(
            "database file {} is readable by others (mode {mode:04o}) and ordersync cannot change that ({}); run chmod 600 on it",
            file.display(),
            os_reason(&e)
        ),
    }
}

/// What failed when the database was opened.
pub enum Cause<'a> {
    Io(&'a io::Error),
    Sqlite(&'a rusqlite::Error),
}

/// Why `path` cannot be opened as the database and what to do: the end of a sentence that starts
/// with the path, so the path itself is not repeated (its directory may be named).
pub fn explain(path: &Path, cause: Cause<'_>) -> String {
    const ELSEWHERE: &str =
        "point --db or [database].path at a file in a directory this user can write";
    let dir = parent_dir(path);
    if path.is_dir() {
        return format!("it is a directory; {ELSEWHERE}");
    }
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return format!(
                "directory {} does not exist; create it or {ELSEWHERE}",
                dir.display()
            )
        }
        Ok(m) if !m.is_dir() => {
            return format!("{} is not a directory; {ELSEWHERE}", dir.display())
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return format!("{} is not a directory; {ELSEWHERE}", dir.display())
        }
        _ => {}
    }
    let reason = match cause {
        Cause::Io(e) => os_reason(e),
        Cause::Sqlite(e) => match e.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::PermissionDenied,
            ) => "unable to open or write the database file".to_string(),
            _ => return sqlite_reason(e, path),
        },
    };
    format!(
        "this user cannot create or write files in {} ({reason}), where SQLite keeps the database and its -wal and -shm files; make the directory writable or {ELSEWHERE}",
        dir.display()
    )
}

/// An OS error without Rust's `(os error N)` tail.
pub fn os_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// SQLite's message without the path rusqlite appends to some of them.
pub fn sqlite_reason(e: &rusqlite::Error, path: &Path) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg
            .strip_suffix(&format!(": {}", path.display()))
            .unwrap_or(msg)
            .to_string(),
        rusqlite::Error::SqliteFailure(code, None) => {
            rusqlite::ffi::code_to_str(code.extended_code).to_lowercase()
        }
        other => other.to_string(),
    }
}
