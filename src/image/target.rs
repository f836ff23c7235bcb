//! The one place that decides whether a restore or clone may write a target. Every check runs
//! before the target is opened for writing, so a refusal leaves it untouched.

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

/// Refuses (with [`Error::Refused`]) what the safety policy refuses ([`crate::safety::Plan`]:
/// one of the inputs or stored on or holding one, mounted, the boot disk, too small), and a
/// device whose sector size does not fit the partition table.
pub fn check_target(req: &TargetRequest) -> Result<TargetInfo> {
    let target = req.target;
    let mut plan = crate::safety::Plan::new().destination(target, req.needed);
    for input in req.inputs {
        plan = plan.read(input);
    }
    plan.check()?;
    let meta = match std::fs::metadata(target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(target, e)),
    };
    let is_block_device = meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if !is_block_device {
        // A regular file is created or replaced and grows as needed.
        return Ok(TargetInfo {
            is_block_device,
            size: meta.map_or(0, |m| m.len()),
            logical_sector: 512,
        });
    }
    let file = std::fs::File::open(target).map_err(|e| Error::io(target, e))?;
    let size = crate::device::file::device_size(&file).map_err(|e| Error::io(target, e))?;
    let (logical, _) =
        crate::device::file::sector_sizes(&file).map_err(|e| Error::io(target, e))?;
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
