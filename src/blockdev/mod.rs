//! Block devices on this machine: enumeration through sysfs, identity (model/serial/WWN/size),
//! partition tables and mounts. STUB: being written (see helper brief).

use crate::device::Identity;
use std::path::{Path, PathBuf};

/// Identity of the block device at `path` (model, serial, WWN from sysfs).
pub fn identity_of_path(_path: &Path, size: u64) -> Option<Identity> {
    Some(Identity {
        size,
        ..Identity::default()
    })
}

/// Finds the /dev node of the disk with this identity (same serial or WWN, same size).
pub fn find_by_identity(_id: &Identity) -> Option<PathBuf> {
    None
}

// TEMP STUB (image branch): the functions below are placeholders for the blockdev helper's real
// implementations, just functional enough for the image engine's refusal checks and tests.
// Replace them wholesale when the blockdev branch is merged.

/// TEMP STUB (image branch): one mount of a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub device: PathBuf,
    pub mount_point: PathBuf,
}

/// TEMP STUB (image branch): "MAJ:MIN" of a block device node.
fn stub_dev_id(path: &Path) -> Option<(u64, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_block_device() {
        return None;
    }
    let rdev = m.rdev();
    Some((rdev, format!("{}:{}", libc::major(rdev), libc::minor(rdev))))
}

/// TEMP STUB (image branch): "MAJ:MIN" of the whole disk a partition belongs to (itself for a disk).
fn stub_whole_disk(majmin: &str) -> Option<String> {
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{majmin}")).ok()?;
    if sys.join("partition").exists() {
        let parent = std::fs::read_to_string(sys.parent()?.join("dev")).ok()?;
        Some(parent.trim().to_string())
    } else {
        Some(majmin.to_string())
    }
}

/// TEMP STUB (image branch): mounts (and swaps) of the device at `path` or of any of its partitions.
pub fn mount_points_of(path: &Path) -> crate::Result<Vec<MountInfo>> {
    let Some((_, majmin)) = stub_dev_id(path) else {
        return Ok(Vec::new());
    };
    let disk = stub_whole_disk(&majmin);
    let text = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| crate::Error::io("/proc/self/mounts", e))?;
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>())
        .chain(swaps.lines().skip(1).map(|l| {
            let dev = l.split_whitespace().next().unwrap_or("");
            vec![dev, "[swap]"]
        }));
    let mut out = Vec::new();
    for f in lines {
        let [dev, mp] = f[..] else { continue };
        let Some((_, m)) = stub_dev_id(Path::new(dev)) else {
            continue;
        };
        let hit = m == majmin
            || (disk.as_deref() == Some(majmin.as_str()) && stub_whole_disk(&m).as_deref() == Some(majmin.as_str()));
        if hit {
            out.push(MountInfo {
                device: PathBuf::from(dev),
                mount_point: PathBuf::from(mp.replace("\\040", " ")),
            });
        }
    }
    Ok(out)
}

/// TEMP STUB (image branch): whether two paths are the same device or file.
pub fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            if x.file_type().is_block_device() && y.file_type().is_block_device() {
                x.rdev() == y.rdev()
            } else {
                x.dev() == y.dev() && x.ino() == y.ino()
            }
        }
        _ => false,
    }
}

/// TEMP STUB (image branch): the whole disk (/dev node) whose filesystem holds `path`.
pub fn disk_holding_file(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let disk = stub_whole_disk(&format!("{}:{}", libc::major(dev), libc::minor(dev)))?;
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{disk}")).ok()?;
    Some(PathBuf::from("/dev").join(sys.file_name()?))
}

/// TEMP STUB (image branch): the disk holding the running system's root filesystem.
pub fn boot_disk() -> Option<PathBuf> {
    disk_holding_file(Path::new("/"))
}
