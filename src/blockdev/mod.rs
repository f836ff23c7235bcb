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

// TEMP STUB (main): replaced by the blockdev branch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MountInfo {
    pub mount_point: PathBuf,
}
// TEMP STUB (main)
pub fn mount_points_of(_path: &Path) -> crate::Result<Vec<MountInfo>> {
    Ok(Vec::new())
}
// TEMP STUB (main)
pub fn same_device(_a: &Path, _b: &Path) -> bool {
    false
}
// TEMP STUB (main)
pub fn disk_holding_file(_path: &Path) -> Option<PathBuf> {
    None
}
// TEMP STUB (main)
pub fn list_disks() -> crate::Result<Vec<MountInfo>> {
    Ok(Vec::new())
}
// TEMP STUB (main)
pub fn render_table(_d: &[MountInfo]) -> String {
    String::new()
}
