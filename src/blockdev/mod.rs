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
