//! Files that hold secrets (private keys, the demo's API key).
//!
//! They are created with mode 0600 from the first byte, never written with
//! default permissions and tightened afterwards, so no other local user can
//! read a key even for an instant.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to a new file at `path` readable only by its owner,
/// creating parent directories. Replaces an existing file atomically.
pub(crate) fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Makes `dir` a directory only its owner can enter: created 0700 (with
/// any missing parents) when absent; made 0700 when it exists, belongs to
/// this user and is open to others. A shared directory (sticky, like
/// `/tmp`) or someone else's is left as it is. True when it was changed.
pub fn private_dir(dir: &Path) -> io::Result<bool> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            return Ok(false);
        }
        Err(error) => return Err(error),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = meta.uid() == unsafe { libc::geteuid() };
    let mode = meta.permissions().mode();
    if !meta.is_dir() || !ours || mode & 0o1000 != 0 || mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(true)
}

/// True when group or others may read the file.
pub(crate) fn is_exposed(path: &Path) -> io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/key.pem");
        write(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!is_exposed(&path).unwrap());
        write(&path, b"again").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"again");
    }

    #[test]
    fn data_directories_are_made_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b");
        assert!(!private_dir(&fresh).unwrap());
        assert_eq!(
            fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(&open).unwrap());
        assert_eq!(
            fs::metadata(&open).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!private_dir(&shared).unwrap());
    }
}
