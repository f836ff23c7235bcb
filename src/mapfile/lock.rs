//! One run per mapfile: an exclusive lock held for the whole run.
//!
//! The mapfile itself cannot carry the lock: every save replaces it (a new inode, see
//! [`super::save`]). The lock is `MAPFILE.lock`, a file that stays empty; `flock` is released by
//! the kernel when the process dies however it dies, so a stale lock file never blocks a resume.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_SUFFIX: &str = ".lock";

/// Held while a job uses a mapfile; dropping it releases the lock and removes the lock file.
#[derive(Debug)]
pub struct MapfileLock {
    file: File,
    path: PathBuf,
}

impl MapfileLock {
    /// Takes the lock on the mapfile at `mapfile`, or refuses if another process holds it.
    pub fn acquire(mapfile: &Path) -> Result<MapfileLock> {
        let target = super::save::resolve_symlink(mapfile)?;
        let path = super::save::with_suffix(&target, LOCK_SUFFIX);
        // The holder removes the file when it is done: if it did so between our open and our
        // flock, we locked an unlinked inode; open again until the lock is on the file the path
        // names.
        for _ in 0..8 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(Error::refused(
                        mapfile,
                        format!(
                            "another salvor is using this mapfile (it holds {}); wait for it to \
                             finish or stop it first",
                            path.display()
                        ),
                    ));
                }
                return Err(Error::io(&path, e));
            }
            let held = file.metadata().map_err(|e| Error::io(&path, e))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(MapfileLock { file, path });
                }
                _ => continue,
            }
        }
        Err(Error::io(
            &path,
            std::io::Error::other("the lock file keeps being replaced"),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MapfileLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting process never takes a lock on a file that is
        // about to disappear without noticing (it re-checks the inode).
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_file_goes_away() {
        let t = tempfile::tempdir().unwrap();
        let map = t.path().join("disk.map");
        let first = MapfileLock::acquire(&map).unwrap();
        assert!(first.path().exists());
        let err = MapfileLock::acquire(&map).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        assert!(err.to_string().contains("another salvor"));
        drop(first);
        assert!(!t.path().join("disk.map.lock").exists());
        let again = MapfileLock::acquire(&map).unwrap();
        drop(again);
    }
}
