//! Refusals before anything is written: a destination must not be the source (or on it), must not
//! be mounted, and must be large enough. Every writing command calls these checks first.

use crate::error::{Error, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Whether two paths name the same file or device node (same inode, or same device number).
fn same_node(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => {
            (ma.dev() == mb.dev() && ma.ino() == mb.ino())
                || (ma.file_type().is_block_device()
                    && mb.file_type().is_block_device()
                    && ma.rdev() == mb.rdev())
        }
        _ => false,
    }
}

/// Checks for `salvor rescue`: DEST (file or device) may be written with `needed` bytes.
pub fn check_rescue_destination(
    source: &Path,
    dest: &Path,
    mapfile: &Path,
    needed: u64,
    force: bool,
) -> Result<()> {
    if same_node(source, dest) {
        return Err(Error::refused(dest, "it is the source"));
    }
    if same_node(mapfile, source) || same_node(mapfile, dest) {
        return Err(Error::refused(
            mapfile,
            "the mapfile must not be the source or the destination",
        ));
    }
    let meta = match std::fs::metadata(dest) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(dest, e)),
    };
    let is_device = meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if is_device {
        if !force {
            return Err(Error::refused(
                dest,
                "it is a block device; use -f/--force to overwrite it",
            ));
        }
        if crate::blockdev::same_device(source, dest) {
            return Err(Error::refused(
                dest,
                "it is the source disk or a partition of it",
            ));
        }
        let mounts = crate::blockdev::mount_points_of(dest)?;
        if let Some(m) = mounts.first() {
            return Err(Error::refused(
                dest,
                format!(
                    "it (or a partition of it) is mounted at {}",
                    m.mount_point.display()
                ),
            ));
        }
        let file = std::fs::File::open(dest).map_err(|e| Error::io(dest, e))?;
        let size = crate::device::file::device_size(&file).map_err(|e| Error::io(dest, e))?;
        if size < needed {
            return Err(Error::refused(
                dest,
                format!("it holds {size} bytes but the rescue needs {needed}"),
            ));
        }
    } else {
        // A file on the failing disk itself would make the rescue write where it reads.
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(disk) = device_holds_file(source, dir) {
            return Err(Error::refused(
                dest,
                format!("it is on {}, the disk being rescued", disk.display()),
            ));
        }
    }
    Ok(())
}

/// Whether writing the block device `device` could overwrite the file (or directory) at `path`:
/// the filesystem holding `path` lives on `device`, on its whole disk or on one of its partitions,
/// or `device` is a loop device whose backing file is `path`. Returns the device holding `path`.
///
/// (A loop device backed by an image file is not the disk holding that image: writing the loop
/// device writes only its backing file.)
pub fn device_holds_file(device: &Path, path: &Path) -> Option<PathBuf> {
    let disk = whole_disk(device)?;
    if let Some(backing) = loop_backing_file(&disk) {
        if same_node(&backing, path) {
            return Some(device.to_path_buf());
        }
    }
    crate::blockdev::disks_holding_file(path)
        .into_iter()
        .find(|d| whole_disk(d).as_deref() == Some(disk.as_str()))
}

/// Whether two block devices are on the same whole disk (a disk and its partitions, or two
/// partitions of one disk).
pub fn same_disk(a: &Path, b: &Path) -> bool {
    matches!((whole_disk(a), whole_disk(b)), (Some(x), Some(y)) if x == y)
}

fn loop_backing_file(disk_name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/sys/block/{disk_name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// The kernel name of the whole disk a block device belongs to ("sda" for /dev/sda2).
fn whole_disk(dev: &Path) -> Option<String> {
    let meta = std::fs::metadata(dev).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    disk.file_name().map(|n| n.to_string_lossy().into_owned())
}
