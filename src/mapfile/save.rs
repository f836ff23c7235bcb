//! Saving the mapfile atomically, keeping the previous version as `MAPFILE.bak`.
//!
//! A rescue may run for days and be killed at any moment (power loss, a full disk, a pulled
//! cable), so at every instant `MAPFILE` must exist and be complete:
//!
//! 1. the new text goes to `MAPFILE.tmp`, which is fsynced;
//! 2. the current `MAPFILE` is hard-linked to `MAPFILE.bak.tmp` (copied if the filesystem has no
//!    hard links, e.g. FAT), which is renamed over `MAPFILE.bak`;
//! 3. `MAPFILE.tmp` is renamed over `MAPFILE`;
//! 4. the directory is fsynced so both renames are durable.
//!
//! A file cut short anyway (e.g. copied off a dying stick) is caught when read, by the end marker
//! that [`text::render`] writes.

use super::{text, Mapfile};
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes a mapfile atomically, keeping the previous version as `MAPFILE.bak`.
pub struct MapfileSaver {
    path: PathBuf,
    header: text::Header,
}

impl MapfileSaver {
    /// A saver for `path` whose header records `command_line` and, as start time, now.
    pub fn new(path: &Path, command_line: &str) -> MapfileSaver {
        let mut header = text::Header::salvor(command_line);
        header.start_time = text::format_local_time(SystemTime::now());
        MapfileSaver::with_header(path, header)
    }

    /// A saver writing `header` (its current time and status message are replaced on each save).
    pub fn with_header(path: &Path, header: text::Header) -> MapfileSaver {
        MapfileSaver {
            path: path.to_path_buf(),
            header,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the previous save is kept.
    pub fn backup_path(&self) -> PathBuf {
        with_suffix(&self.path, ".bak")
    }

    pub fn header(&self) -> &text::Header {
        &self.header
    }

    /// Saves `map` atomically (see the module documentation); the previous `MAPFILE`, if any,
    /// becomes `MAPFILE.bak`.
    ///
    /// The caller must have made durable (written and fsynced the destination) all data the map
    /// claims as finished before calling this: the map must never claim data that a crash could
    /// still lose.
    pub fn save(&mut self, map: &Mapfile, status_message: &str) -> Result<()> {
        self.header.current_time = text::format_local_time(SystemTime::now());
        self.header.status_message = status_message.to_string();
        let target = resolve_symlink(&self.path)?;
        let tmp = with_suffix(&target, ".tmp");
        let previous = match fs::metadata(&target) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&target, e)),
        };

        let text = text::render(map, &self.header);
        let replaced = write_synced(&tmp, text.as_bytes(), previous.as_ref())
            .and_then(|()| match previous {
                Some(_) => keep_backup(&target),
                None => Ok(()),
            })
            .and_then(|()| fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e)));
        if let Err(e) = replaced {
            // Do not leave a stale file taking space on a disk that may be full.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&target)
    }
}

/// Every file a save of (or the lock on) the mapfile at `path` writes besides `path` itself.
pub fn companion_paths(path: &Path) -> Vec<PathBuf> {
    let target = resolve_symlink(path).unwrap_or_else(|_| path.to_path_buf());
    [".tmp", ".bak", ".bak.tmp", super::lock::LOCK_SUFFIX]
        .iter()
        .map(|s| with_suffix(&target, s))
        .collect()
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Renaming over a symlink would replace the link, not the file the user pointed us at; follow
/// links (also dangling ones: the first save creates the target).
pub fn resolve_symlink(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    // The kernel's own limit on nested links.
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(Error::io(
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many levels of symbolic links",
        ),
    ))
}

fn write_synced(tmp: &Path, data: &[u8], previous: Option<&fs::Metadata>) -> Result<()> {
    let io_err = |e| Error::io(tmp, e);
    let mut f = File::create(tmp).map_err(io_err)?;
    if let Some(m) = previous {
        // Keep the permissions the user gave the mapfile; failing to is not worth aborting a save.
        let _ = f.set_permissions(m.permissions());
    }
    f.write_all(data).map_err(io_err)?;
    f.sync_all().map_err(io_err)
}

/// Makes `MAPFILE.bak` the current `MAPFILE` without ever removing `MAPFILE`.
fn keep_backup(target: &Path) -> Result<()> {
    let bak = with_suffix(target, ".bak");
    let staging = with_suffix(target, ".bak.tmp");
    match fs::remove_file(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&staging, e)),
    }
    if fs::hard_link(target, &staging).is_err() {
        // No hard links here (FAT, some network filesystems): copy instead.
        let copied = fs::copy(target, &staging).and_then(|_| File::open(&staging)?.sync_all());
        if let Err(e) = copied {
            let _ = fs::remove_file(&staging);
            return Err(Error::io(&staging, e));
        }
    }
    fs::rename(&staging, &bak).map_err(|e| Error::io(&bak, e))?;
    // If `bak` already was a link to the same file, rename() leaves both names in place.
    let _ = fs::remove_file(&staging);
    Ok(())
}

/// Makes the renames in the mapfile's directory durable.
fn sync_dir(target: &Path) -> Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let r = File::open(dir).and_then(|d| d.sync_all());
    match r {
        // Some filesystems cannot fsync a directory; the renames are then as durable as they get.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r.map_err(|e| Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapfile::BlockStatus;

    fn sample(n: u64) -> Mapfile {
        let mut m = Mapfile::new(1 << 20);
        m.set(0, n * 4096, BlockStatus::Finished);
        m.set(n * 4096, 512, BlockStatus::BadSector);
        m.current_pos = n * 4096;
        m
    }

    #[test]
    fn save_keeps_backup_and_both_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let mut s = MapfileSaver::new(&path, "salvor rescue in out map");
        s.save(&sample(1), "Copying non-tried blocks... Pass 1 (forwards)")
            .unwrap();
        assert!(!s.backup_path().exists());
        s.save(&sample(2), "Copying").unwrap();
        s.save(&sample(3), "Finished").unwrap();
        let cur = text::parse_file(&path).unwrap().unwrap();
        let bak = text::parse_file(&s.backup_path()).unwrap().unwrap();
        assert_eq!(cur, sample(3));
        assert_eq!(bak, sample(2));
        // No temporary files are left behind.
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["map", "map.bak"]);
        let t = fs::read_to_string(&path).unwrap();
        assert!(t.starts_with("# Mapfile. Created by salvor version "));
        assert!(t.contains("\n# Command line: salvor rescue in out map\n"));
        assert!(t.contains("\n# Finished\n"));
    }

    #[test]
    fn start_time_is_fixed_and_current_time_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let mut s = MapfileSaver::new(&path, "x");
        let start = s.header().start_time.clone();
        assert_eq!(start.len(), 19, "{start}");
        s.save(&sample(1), "a").unwrap();
        s.save(&sample(1), "b").unwrap();
        assert_eq!(s.header().start_time, start);
        assert_eq!(s.header().current_time.len(), 19);
        let t = fs::read_to_string(&path).unwrap();
        assert!(t.contains(&format!("# Start time:   {start}\n")));
        assert!(t.contains("# Current time: "));
    }

    #[test]
    fn truncated_save_is_detected_and_backup_is_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let mut s = MapfileSaver::new(&path, "x");
        s.save(&sample(1), "a").unwrap();
        s.save(&sample(2), "b").unwrap();
        let full = fs::read(&path).unwrap();
        // Simulate a crash that left the file cut at every possible point.
        for cut in 1..full.len() - 1 {
            fs::write(&path, &full[..cut]).unwrap();
            let e = text::parse_file(&path).unwrap_err();
            assert_eq!(e.exit_code(), 2, "cut at {cut}");
            let msg = e.to_string();
            assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
            assert!(msg.contains("map.bak"), "cut at {cut}: {msg}");
        }
        assert_eq!(
            text::parse_file(&s.backup_path()).unwrap().unwrap(),
            sample(1)
        );
    }

    #[test]
    fn save_through_symlink_updates_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.map");
        let link = dir.path().join("link.map");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut s = MapfileSaver::new(&link, "x");
        s.save(&sample(1), "a").unwrap();
        s.save(&sample(2), "b").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(text::parse_file(&real).unwrap().unwrap(), sample(2));
        assert_eq!(
            text::parse_file(&dir.path().join("real.map.bak"))
                .unwrap()
                .unwrap(),
            sample(1)
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("map");
        let mut s = MapfileSaver::new(&path, "x");
        let e = s.save(&sample(1), "a").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("no-such-dir"), "{e}");
    }
}
