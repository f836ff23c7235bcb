//! The one place that decides whether a restore or clone may write a target. Every check runs
//! before the target is opened for writing, so a refusal leaves it untouched.

use crate::blockdev;
use crate::error::{Error, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What is about to be written where.
#[derive(Debug, Clone)]
pub struct TargetRequest<'a> {
    pub target: &'a Path,
    /// Bytes that will be written from offset 0.
    pub needed: u64,
    /// Everything being read: the image's parts, or the source disk.
    pub inputs: &'a [PathBuf],
    /// The sector size the data's partition table counts in.
    pub logical_sector: u32,
    pub has_partition_table: bool,
}

/// What the checks learnt about the target.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub is_block_device: bool,
    /// Size of the device, or of the file if it exists.
    pub size: u64,
    pub logical_sector: u32,
}

/// Refuses (with [`Error::Refused`]) a target that is too small, mounted, one of the inputs, the
/// disk holding an input, or the disk the running system booted from.
pub fn check_target(req: &TargetRequest) -> Result<TargetInfo> {
    let target = req.target;
    let meta = match std::fs::metadata(target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(target, e)),
    };
    let is_block_device = meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if let Some(m) = &meta {
        if !is_block_device && !m.is_file() {
            return Err(Error::refused(target, "not a block device or regular file"));
        }
    }
    for input in req.inputs {
        if meta.is_some() && blockdev::same_device(target, input) {
            return Err(Error::refused(
                target,
                format!("it is the source ({})", input.display()),
            ));
        }
    }
    if !is_block_device {
        // A regular file is created or replaced and grows as needed.
        return Ok(TargetInfo {
            is_block_device,
            size: meta.map_or(0, |m| m.len()),
            logical_sector: 512,
        });
    }
    for input in req.inputs {
        if crate::safety::device_holds_file(target, input).is_some() {
            return Err(Error::refused(
                target,
                format!("it holds {}, which is being read", input.display()),
            ));
        }
    }
    if let Some(boot) = blockdev::boot_disk() {
        if crate::safety::same_disk(&boot, target) {
            return Err(Error::refused(
                target,
                "it is the disk the running system booted from",
            ));
        }
    }
    let mounts = blockdev::mount_points_of(target)?;
    if let Some(m) = mounts.first() {
        return Err(Error::refused(
            target,
            format!(
                "{} is mounted on {}{}; unmount it first",
                m.source,
                m.mount_point.display(),
                if mounts.len() > 1 {
                    format!(" (and {} more)", mounts.len() - 1)
                } else {
                    String::new()
                }
            ),
        ));
    }
    let file = std::fs::File::open(target).map_err(|e| Error::io(target, e))?;
    let size = crate::device::file::device_size(&file).map_err(|e| Error::io(target, e))?;
    let (logical, _) =
        crate::device::file::sector_sizes(&file).map_err(|e| Error::io(target, e))?;
    if size < req.needed {
        return Err(Error::refused(
            target,
            format!(
                "it is too small: {} bytes ({}), {} bytes ({}) needed",
                size,
                crate::units::format_bytes(size),
                req.needed,
                crate::units::format_bytes(req.needed)
            ),
        ));
    }
    if req.has_partition_table && logical != req.logical_sector {
        return Err(Error::refused(
            target,
            format!(
                "its logical sector size is {logical} bytes but the partition table was made for \
                 {}-byte sectors; the partitions would land in the wrong places",
                req.logical_sector
            ),
        ));
    }
    Ok(TargetInfo {
        is_block_device,
        size,
        logical_sector: logical,
    })
}

/// The name a user must type to confirm overwriting `target` ("sdb" for /dev/sdb).
pub fn confirmation_word(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| target.display().to_string())
}

/// Canonical paths of the inputs, for the checks above (symlinks like /dev/disk/by-id resolved).
pub fn canonical_all(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect()
}
