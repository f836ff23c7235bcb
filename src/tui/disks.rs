//! What the TUI knows about a disk, filled from the block-device layer.
//!
//! The screens are written against [`DiskRow`] rather than `blockdev::DiskInfo` so that they can be
//! tested with fixtures; [`DiskRow::from_info`] is the one place that adapts `blockdev::DiskInfo`.

use crate::units::format_bytes;
use std::path::{Path, PathBuf};

/// One partition of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartRow {
    pub path: PathBuf,
    pub size: u64,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub mountpoints: Vec<PathBuf>,
    /// The filesystem's own label, once a probe read it.
    pub fs_label: Option<String>,
    /// The GPT partition name, once the table was read.
    pub gpt_name: Option<String>,
    /// A probe is under way (`Some(true)`), or its disk did not answer (`Some(false)`).
    pub probing: Option<bool>,
}

/// One whole block device, with what a person needs to recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskRow {
    pub path: PathBuf,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size: u64,
    /// "sata", "usb", "nvme", "loop", ...
    pub transport: String,
    pub removable: bool,
    pub read_only: bool,
    /// Holds the running system (the stick salvor booted from, or the root filesystem).
    pub is_boot: bool,
    /// For loop devices: the file behind it.
    pub backing_file: Option<PathBuf>,
    /// Filesystems mounted from the whole disk (no partition table).
    pub mountpoints: Vec<PathBuf>,
    pub partitions: Vec<PartRow>,
}

impl DiskRow {
    /// The kernel name, e.g. `sdb`: short enough to type on a serial console.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    pub fn is_mounted(&self) -> bool {
        !self.mountpoints.is_empty() || self.partitions.iter().any(|p| !p.mountpoints.is_empty())
    }

    /// First mount point of the disk or one of its partitions.
    pub fn first_mount(&self) -> Option<&Path> {
        self.mountpoints
            .iter()
            .chain(self.partitions.iter().flat_map(|p| p.mountpoints.iter()))
            .map(PathBuf::as_path)
            .next()
    }

    pub fn model_or_unknown(&self) -> &str {
        match (&self.model, &self.backing_file) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(_)) => "loop device",
            _ => "unknown model",
        }
    }

    pub fn serial_or_unknown(&self) -> &str {
        match &self.serial {
            Some(s) if !s.is_empty() => s,
            _ => "no serial",
        }
    }

    /// One line that identifies the disk in words: model, serial, size, then the node.
    pub fn identity_line(&self) -> String {
        match &self.backing_file {
            Some(f) => format!(
                "loop device of {}, {} ({})",
                f.display(),
                format_bytes(self.size),
                self.path.display()
            ),
            None => format!(
                "{}, serial {}, {} ({})",
                self.model_or_unknown(),
                self.serial_or_unknown(),
                format_bytes(self.size),
                self.path.display()
            ),
        }
    }
}

/// Lists the block devices of this machine.
///
/// Reads sysfs and the mount table only (no partition tables, no filesystem probes): nothing here
/// opens a disk, so a dying drive cannot make the screen hang.
pub fn scan() -> Result<Vec<DiskRow>, String> {
    let opts = crate::blockdev::ListOptions {
        read_tables: false,
        probe_fs: false,
    };
    let disks = crate::blockdev::list_disks_with(opts).map_err(|e| e.to_string())?;
    let mut rows: Vec<DiskRow> = disks.iter().map(DiskRow::from_info).collect();
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(rows)
}

impl DiskRow {
    /// What the screens need from the block-device layer's description of a disk.
    pub fn from_info(d: &crate::blockdev::DiskInfo) -> DiskRow {
        let points = |m: &[crate::blockdev::MountInfo]| -> Vec<PathBuf> {
            m.iter().map(|m| m.mount_point.clone()).collect()
        };
        DiskRow {
            path: d.dev_path.clone(),
            model: d.model.clone(),
            serial: d.serial.clone(),
            size: d.size,
            transport: d.transport.to_string(),
            removable: d.removable,
            read_only: d.read_only,
            is_boot: d.boot,
            backing_file: d.loop_backing_file.clone(),
            mountpoints: points(&d.mounts),
            partitions: d
                .partitions
                .iter()
                .filter(|p| !p.extended)
                .map(|p| PartRow {
                    path: p.dev_path.clone().unwrap_or_default(),
                    size: p.size,
                    fstype: p
                        .fs_type
                        .clone()
                        .or_else(|| p.mounts.first().map(|m| m.fs_type.clone())),
                    label: p.label.clone(),
                    mountpoints: points(&p.mounts),
                    ..PartRow::default()
                })
                .collect(),
        }
    }
}
