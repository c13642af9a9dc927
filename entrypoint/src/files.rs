//! Writing files so that nothing half-written is ever left behind, and directories with the
//! ownership and modes the broker checks.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old file or the whole new one. `mode` is set before any byte is written.
/// The bytes are on disk before the rename: what the file says survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    renamed(path, bytes, mode, true)
}

/// Like [`write_atomic`] without waiting for the disk, for the files every start writes anew
/// (the broker's config, its copy of the certificate, R): a crash can lose them, and the next
/// start writes them again. A reader still sees the old file or the whole new one.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    renamed(path, bytes, mode, false)
}

/// [`written_temp`] renamed over `path`.
fn renamed(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<()> {
    let (tmp, fix) = written_temp(path, bytes, mode, sync)?;
    // The temporary file is removed on drop if the rename fails.
    tmp.persist(path)
        .map_err(|e| Error::io("write", path, fix)(e.error))?;
    Ok(())
}

/// `bytes` in a temporary file beside `path`, mode set before the first byte, synced when
/// `sync`; and the fix to name if placing it fails.
fn written_temp(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(tempfile::NamedTempFile, String)> {
    let dir = parent(path);
    let fix = format!("make {} writable for this user", dir.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".entrypoint-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(Error::io("write into", dir, fix.clone()))?;
    tmp.write_all(bytes)
        .and_then(|_| {
            if sync {
                tmp.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(Error::io("write", path, fix.clone()))?;
    Ok((tmp, fix))
}

/// Like [`write_atomic`], but leaves an existing file alone: returns false when `path` was
/// already there (another broker got there first).
pub fn create_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    let (tmp, fix) = written_temp(path, bytes, mode, true)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("write", path, fix)(e.error)),
    }
}

/// Creates `dir` (and its parents) if missing and makes it owner-only (0700), as the broker
/// requires of its rundir and statedir; refuses one owned by another user.
pub fn private_dir(dir: &Path) -> Result<()> {
    let fix = || {
        format!(
            "mount a volume writable by uid {} at {}, or pass --root DIR",
            nix::unistd::getuid(),
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir, fix()))?;
    let meta = std::fs::metadata(dir).map_err(Error::io("inspect", dir, fix()))?;
    if !meta.is_dir() {
        return Err(Error::io("use", dir, "remove the file in the way")(
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        return Err(Error::Io {
            action: "use",
            path: dir.into(),
            fix: fix(),
            source: std::io::Error::other(format!(
                "owned by uid {}, not by uid {uid} that runs the broker",
                meta.uid()
            )),
        });
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io("set mode 0700 on", dir, fix()))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temporary() {
        for write in [write_atomic, replace] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f");
            write(&p, b"one", 0o600).unwrap();
            write(&p, b"two", 0o640).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"two");
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn create_atomic_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert!(create_atomic(&p, b"first", 0o600).unwrap());
        assert!(!create_atomic(&p, b"second", 0o600).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dir_is_created_0700_and_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b");
        private_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn unwritable_place_names_the_fix() {
        let e = write_atomic(Path::new("/proc/entrypoint-test/f"), b"x", 0o600)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/proc/entrypoint-test") && e.contains("fix:"),
            "{e}"
        );
    }
}
