//! What the TUI knows about a disk, and a small sysfs reader to fill it.
//!
//! The screens are written against [`DiskRow`] rather than `blockdev::DiskInfo` so that they can be
//! tested with fixtures and adapted in one place (`scan`) when the full block-device layer lands.

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
/// Reads sysfs only: nothing here opens a disk, so a dying drive cannot make it hang.
pub fn scan() -> Result<Vec<DiskRow>, String> {
    scan_sysfs(Path::new("/sys/block"), Path::new("/proc/self/mountinfo"))
}

/// Mount points that mean "this is the system we are running from".
const BOOT_MOUNTS: &[&str] = &[
    "/",
    "/boot",
    "/boot/efi",
    "/run/live/medium",
    "/lib/live/mount/medium",
    "/run/initramfs/live",
];

struct Mount {
    dev: String,
    source: String,
    fstype: String,
    point: PathBuf,
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_mounts(path: &Path) -> Vec<Mount> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                dev: (*l.get(2)?).to_string(),
                point: PathBuf::from(unescape_mount(l.get(4)?)),
                fstype: (*r.first()?).to_string(),
                source: unescape_mount(r.get(1).copied().unwrap_or("")),
            })
        })
        .collect()
}

fn read_trim(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn labels() -> Vec<(String, String)> {
    // /dev/disk/by-label/NAME -> ../../sdb1; labels of unmounted filesystems come from here.
    let Ok(dir) = std::fs::read_dir("/dev/disk/by-label") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        let dev = target.file_name()?.to_string_lossy().into_owned();
        let label = unescape_label(&e.file_name().to_string_lossy());
        Some((dev, label))
    })
    .collect()
}

/// udev writes `\x20` for a space in by-label names.
fn unescape_label(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4).unwrap_or("");
        match u8::from_str_radix(hex, 16) {
            Ok(v) => {
                out.push(char::from(v));
                rest = &rest[i + 4..];
            }
            Err(_) => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn transport_of(sys: &Path, name: &str) -> String {
    if name.starts_with("nvme") {
        return "nvme".into();
    }
    if name.starts_with("loop") {
        return "loop".into();
    }
    if name.starts_with("mmcblk") {
        return "mmc".into();
    }
    let real = std::fs::canonicalize(sys)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if real.contains("/usb") {
        "usb".into()
    } else if real.contains("/ata") {
        "sata".into()
    } else if real.contains("virtio") {
        "virtio".into()
    } else if real.contains("/host") {
        "scsi".into()
    } else {
        "unknown".into()
    }
}

fn scan_sysfs(sys_block: &Path, mountinfo: &Path) -> Result<Vec<DiskRow>, String> {
    let mounts = read_mounts(mountinfo);
    let labels = labels();
    let dir = std::fs::read_dir(sys_block)
        .map_err(|e| format!("cannot list {}: {e}", sys_block.display()))?;
    let mounts_of = |dev: &Option<String>, name: &str| -> (Vec<PathBuf>, Option<String>) {
        let node = format!("/dev/{name}");
        let ms: Vec<&Mount> = mounts
            .iter()
            .filter(|m| dev.as_deref() == Some(m.dev.as_str()) || m.source == node)
            .collect();
        (
            ms.iter().map(|m| m.point.clone()).collect(),
            ms.first().map(|m| m.fstype.clone()),
        )
    };
    let mut disks = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("ram") || name.starts_with("zram") || name.starts_with("dm-") {
            continue;
        }
        let sys = entry.path();
        let size = read_trim(&sys.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(512);
        let backing_file = read_trim(&sys.join("loop/backing_file")).map(PathBuf::from);
        // Unused loop devices and empty card readers are noise.
        if size == 0 || (name.starts_with("loop") && backing_file.is_none()) {
            continue;
        }
        let dev = read_trim(&sys.join("dev"));
        let (mountpoints, _) = mounts_of(&dev, &name);
        let mut partitions = Vec::new();
        if let Ok(sub) = std::fs::read_dir(&sys) {
            for p in sub.flatten() {
                if !p.path().join("partition").exists() {
                    continue;
                }
                let pname = p.file_name().to_string_lossy().into_owned();
                let pdev = read_trim(&p.path().join("dev"));
                let (points, fstype) = mounts_of(&pdev, &pname);
                partitions.push(PartRow {
                    path: PathBuf::from(format!("/dev/{pname}")),
                    size: read_trim(&p.path().join("size"))
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                        .saturating_mul(512),
                    fstype,
                    label: labels
                        .iter()
                        .find(|(d, _)| *d == pname)
                        .map(|(_, l)| l.clone()),
                    mountpoints: points,
                });
            }
        }
        partitions.sort_by(|a, b| a.path.cmp(&b.path));
        let is_boot = mountpoints
            .iter()
            .chain(partitions.iter().flat_map(|p| p.mountpoints.iter()))
            .any(|m| BOOT_MOUNTS.iter().any(|b| Path::new(b) == m));
        disks.push(DiskRow {
            path: PathBuf::from(format!("/dev/{name}")),
            model: read_trim(&sys.join("device/model")),
            serial: read_trim(&sys.join("device/serial"))
                .or_else(|| read_trim(&sys.join("serial"))),
            size,
            transport: transport_of(&sys, &name),
            removable: read_trim(&sys.join("removable")).as_deref() == Some("1"),
            read_only: read_trim(&sys.join("ro")).as_deref() == Some("1"),
            is_boot,
            backing_file,
            mountpoints,
            partitions,
        });
    }
    disks.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape_mount("/media/My\\040Disk"), "/media/My Disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_label("My\\x20Disk"), "My Disk");
    }

    #[test]
    fn mountinfo_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mountinfo");
        std::fs::write(
            &p,
            "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n\
             30 22 8:17 / /media/My\\040Disk rw - vfat /dev/sdb1 rw\n",
        )
        .unwrap();
        let m = read_mounts(&p);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].point, PathBuf::from("/media/My Disk"));
        assert_eq!(m[1].fstype, "vfat");
        assert_eq!(m[0].dev, "8:2");
    }
}
