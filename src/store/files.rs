//! The database's files on disk, checked before SQLite opens them.
//!
//! `tandem.db` and its `-wal` and `-shm` hold names and MRNs: they are
//! created 0600 in a 0700 directory (SQLite gives `-wal` and `-shm` the
//! database file's own mode), and tightened to 0600 when found looser.
//!
//! Two mistakes are caught here with a message that names the file,
//! rather than by SQLite later ("attempt to write a readonly database",
//! after it has left `-wal` and `-shm` files behind with the database's
//! read-only mode): a database or directory this user cannot write, and a
//! database file of 0 bytes, which SQLite would silently start as a new,
//! empty database (a truncated file, a wrong path, a failed restore).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The `-wal` and `-shm` files beside `db`.
pub(crate) fn companions(db: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

fn non_empty(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Makes `path` ready for SQLite, or says what is wrong with it. A 0-byte
/// database is refused unless `init` (then SQLite makes it a new one).
pub(crate) fn prepare(path: &Path, init: bool) -> Result<(), StoreError> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
    }
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // A new database: created owner-only before SQLite writes a byte.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::NotWritable {
                    path: shown.clone(),
                    source,
                })?;
            tracing::info!(path = %shown, "created a new database");
        }
        Err(source) => {
            return Err(StoreError::NotWritable {
                path: shown,
                source,
            })
        }
        Ok(meta) => {
            // In WAL mode a database that was never checkpointed is 0 bytes
            // with everything in its -wal: that one is not empty.
            let [wal, _] = companions(path);
            if meta.len() == 0 && !non_empty(&wal) && !init {
                return Err(StoreError::Empty { path: shown });
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|source| StoreError::NotWritable {
                    path: shown.clone(),
                    source,
                })?;
        }
    }
    check_directory_writable(path)?;
    for file in std::iter::once(path.to_owned()).chain(companions(path)) {
        tighten(&file);
    }
    Ok(())
}

/// SQLite creates `-wal` and `-shm` beside the database: the directory
/// must be writable, or it fails later with a read-only error.
fn check_directory_writable(db: &Path) -> Result<(), StoreError> {
    let companions = companions(db);
    if companions.iter().all(|c| c.exists()) {
        return Ok(());
    }
    let mut probe = db.as_os_str().to_owned();
    probe.push("-write-check");
    let probe = PathBuf::from(probe);
    let _ = fs::remove_file(&probe);
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe);
    let _ = fs::remove_file(&probe);
    created.map(|_| ()).map_err(|source| {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        StoreError::NotWritable {
            path: format!(
                "{} (the directory of {}, where its -wal and -shm files go)",
                dir.display(),
                db.display()
            ),
            source,
        }
    })
}

/// Makes `file` owner-only when it exists and is not.
fn tighten(file: &Path) {
    let Ok(meta) = fs::metadata(file) else {
        return;
    };
    if meta.permissions().mode() & 0o077 != 0 {
        match fs::set_permissions(file, fs::Permissions::from_mode(0o600)) {
            Ok(()) => {
                tracing::info!(path = %file.display(), "made the database file owner-only (0600)")
            }
            Err(error) => tracing::warn!(
                path = %file.display(), %error,
                "the database file is readable by other users and cannot be made owner-only"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_database_is_owner_only_in_an_owner_only_directory() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nested/data/tandem.db");
        prepare(&db, false).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
    }

    #[test]
    fn loose_files_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tandem.db");
        fs::write(&db, b"SQLite format 3\0").unwrap();
        let [wal, shm] = companions(&db);
        for f in [&db, &wal, &shm] {
            fs::write(f, b"x").unwrap();
            fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare(&db, false).unwrap();
        for f in [&db, &wal, &shm] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn an_empty_database_is_refused_unless_init() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tandem.db");
        fs::write(&db, b"").unwrap();
        let error = prepare(&db, false).unwrap_err().to_string();
        assert!(error.contains(&db.display().to_string()), "{error}");
        assert!(error.contains("--init"), "{error}");
        prepare(&db, true).unwrap();
        // A 0-byte file whose WAL holds the data is a database.
        let [wal, _] = companions(&db);
        fs::write(&wal, b"wal frames").unwrap();
        prepare(&db, false).unwrap();
    }
}
