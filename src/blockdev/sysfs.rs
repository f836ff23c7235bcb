//! Reading the kernel's view of block devices from sysfs.
//!
//! Everything here tolerates missing attributes: sysfs layouts differ between kernels, drivers and
//! minimal initramfs setups, so a missing or unreadable file is `None`, never an error.

use super::Transport;
use std::fs;
use std::path::{Path, PathBuf};

/// A sysfs tree. `/sys` on a live system; a fake tree in unit tests.
#[derive(Debug, Clone)]
pub(crate) struct Sys {
    pub root: PathBuf,
}

impl Default for Sys {
    fn default() -> Self {
        Sys {
            root: PathBuf::from("/sys"),
        }
    }
}

/// Reads a sysfs attribute as trimmed text; `None` when missing, unreadable or empty.
pub(crate) fn attr(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

pub(crate) fn attr_u64(path: &Path) -> Option<u64> {
    attr(path)?.parse().ok()
}

pub(crate) fn attr_bool(path: &Path) -> Option<bool> {
    attr_u64(path).map(|v| v != 0)
}

/// Parses "MAJ:MIN".
pub(crate) fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (maj, min) = text.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// Major/minor from a `st_rdev`/`st_dev` value.
pub(crate) fn split_dev(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

impl Sys {
    /// Names in /sys/block (whole disks and other top-level block devices), sorted.
    pub fn block_names(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.root.join("block")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    pub fn disk_dir(&self, name: &str) -> PathBuf {
        self.root.join("block").join(name)
    }

    /// The sysfs directory of the block device MAJ:MIN (a disk or a partition), resolved.
    pub fn dev_dir(&self, dev: (u32, u32)) -> Option<PathBuf> {
        let link = self
            .root
            .join("dev/block")
            .join(format!("{}:{}", dev.0, dev.1));
        fs::canonicalize(link).ok()
    }

    /// Partition subdirectories of a disk directory: (name, dir), in partition-number order.
    pub fn partition_dirs(&self, disk_dir: &Path) -> Vec<(String, PathBuf)> {
        let Ok(rd) = fs::read_dir(disk_dir) else {
            return Vec::new();
        };
        let mut parts: Vec<(u64, String, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let dir = e.path();
                // A partition is a subdirectory with a `partition` attribute (its number).
                let num = attr_u64(&dir.join("partition"))?;
                Some((num, name, dir))
            })
            .collect();
        parts.sort();
        parts.into_iter().map(|(_, n, d)| (n, d)).collect()
    }

    /// Names of the devices stacked on top of this one (dm, md, ...).
    pub fn holders(&self, dir: &Path) -> Vec<String> {
        list_names(&dir.join("holders"))
    }

    /// Names of the devices this one is stacked on.
    pub fn slaves(&self, dir: &Path) -> Vec<String> {
        list_names(&dir.join("slaves"))
    }

    /// The sysfs directory of any block device by kernel name (disk or partition).
    pub fn class_dir(&self, name: &str) -> Option<PathBuf> {
        fs::canonicalize(self.root.join("class/block").join(name)).ok()
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort_by(|a, b| natural_cmp(a, b));
    v
}

/// Whether a resolved sysfs block directory is a partition.
pub(crate) fn is_partition_dir(dir: &Path) -> bool {
    dir.join("partition").exists()
}

/// The /dev node for a kernel block device name (`cciss!c0d0` lives at `/dev/cciss/c0d0`).
pub(crate) fn dev_path(name: &str) -> PathBuf {
    PathBuf::from("/dev").join(name.replace('!', "/"))
}

/// Orders "sda2" before "sda10" and "loop2" before "loop10".
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let cut = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (&s[..cut], s[cut..].parse().ok())
    }
    let (pa, na) = split(a);
    let (pb, nb) = split(b);
    pa.cmp(pb).then(na.cmp(&nb)).then(a.cmp(b))
}

/// How the disk is attached, from its name and where its resolved sysfs path lies.
pub(crate) fn transport(name: &str, resolved: &Path) -> Transport {
    let comps: Vec<String> = resolved
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // USB first: USB-attached NVMe/SATA bridges show up as sdX below a usbN bus.
    if comps.iter().any(|c| c.starts_with("usb")) {
        return Transport::Usb;
    }
    if name.starts_with("loop") {
        return Transport::Loop;
    }
    if name.starts_with("nvme") || comps.iter().any(|c| c.starts_with("nvme")) {
        return Transport::Nvme;
    }
    if name.starts_with("mmcblk") || comps.iter().any(|c| c.starts_with("mmc_host")) {
        return Transport::Mmc;
    }
    if let Some(pos) = comps.iter().position(|c| is_numbered(c, "ata")) {
        let port_dir: PathBuf = comps[..=pos].iter().collect();
        return if ata_link_is_sata(&port_dir) {
            Transport::Sata
        } else {
            Transport::Ata
        };
    }
    // virtio-blk: the block directory sits directly below the virtioN device.
    if let Some(pos) = comps.iter().position(|c| c == "block") {
        if pos > 0 && is_numbered(&comps[pos - 1], "virtio") {
            return Transport::Virtio;
        }
    }
    if comps
        .iter()
        .any(|c| is_numbered(c, "host") || c.starts_with("target"))
    {
        return Transport::Scsi;
    }
    Transport::Unknown
}

/// `prefix` followed by digits only ("ata3", "virtio1", "host0").
fn is_numbered(comp: &str, prefix: &str) -> bool {
    comp.strip_prefix(prefix)
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// libata names both SATA and parallel ATA ports "ataN"; only a SATA link reports a link speed.
fn ata_link_is_sata(port_dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(port_dir) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("link") {
            return false;
        }
        let spd = attr(&e.path().join("ata_link").join(&name).join("sata_spd"));
        spd.is_some_and(|s| s.contains("Gbps"))
    })
}

/// Model, vendor, serial and WWN of a whole disk from its sysfs directory.
#[derive(Debug, Default, Clone)]
pub(crate) struct DiskIds {
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
}

pub(crate) fn disk_ids(dir: &Path) -> DiskIds {
    let dev = dir.join("device");
    let model = attr(&dev.join("model")).or_else(|| attr(&dev.join("name"))); // mmc: `name`
                                                                              // virtio/PCI expose a numeric vendor id ("0x1af4"); only a name is worth showing.
    let vendor = attr(&dev.join("vendor")).filter(|v| !v.starts_with("0x"));
    let serial = attr(&dev.join("serial"))
        .or_else(|| attr(&dir.join("serial")))
        .or_else(|| vpd_serial(&dev.join("vpd_pg80")))
        .or_else(|| usb_serial(dir));
    let wwn = vpd_naa(&dev.join("vpd_pg83"))
        .or_else(|| attr(&dev.join("wwid")))
        .or_else(|| attr(&dir.join("wwid")));
    DiskIds {
        model,
        vendor,
        serial,
        wwn,
    }
}

/// The unit serial number from SCSI VPD page 0x80 (also filled by libata for SATA disks).
fn vpd_serial(path: &Path) -> Option<String> {
    let page = fs::read(path).ok()?;
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = page.get(4..4 + len.min(page.len() - 4))?;
    let s = String::from_utf8_lossy(body);
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// The NAA designator (the disk's WWN) from SCSI VPD page 0x83, as "0x" + hex like lsblk shows it.
fn vpd_naa(path: &Path) -> Option<String> {
    let page = fs::read(path).ok()?;
    if page.len() < 4 || page[1] != 0x83 {
        return None;
    }
    let end = (4 + usize::from(u16::from_be_bytes([page[2], page[3]]))).min(page.len());
    let mut pos = 4;
    while pos + 4 <= end {
        let code_set = page[pos] & 0x0f;
        let assoc = (page[pos + 1] >> 4) & 0x03;
        let dtype = page[pos + 1] & 0x0f;
        let len = usize::from(page[pos + 3]);
        let body = page.get(pos + 4..(pos + 4 + len).min(end))?;
        // Binary NAA designator associated with the logical unit itself.
        if code_set == 1 && assoc == 0 && dtype == 3 && !body.is_empty() {
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            return Some(format!("0x{hex}"));
        }
        pos += 4 + len;
    }
    None
}

/// For USB mass storage the serial is the USB device's iSerial: walk up to the USB device.
fn usb_serial(dir: &Path) -> Option<String> {
    let resolved = fs::canonicalize(dir).ok()?;
    let mut cur = resolved.as_path();
    while let Some(parent) = cur.parent() {
        if parent.join("idVendor").exists() {
            return attr(&parent.join("serial"));
        }
        cur = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_from_paths() {
        let t = |name: &str, p: &str| transport(name, Path::new(p));
        assert_eq!(
            t("sdb", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"),
            Transport::Usb
        );
        assert_eq!(
            t(
                "nvme0n1",
                "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"
            ),
            Transport::Nvme
        );
        assert_eq!(
            t(
                "vda",
                "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
            ),
            Transport::Virtio
        );
        assert_eq!(
            t("loop0", "/sys/devices/virtual/block/loop0"),
            Transport::Loop
        );
        assert_eq!(
            t(
                "mmcblk0",
                "/sys/devices/platform/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
            ),
            Transport::Mmc
        );
        assert_eq!(
            t(
                "sdc",
                "/sys/devices/pci0000:00/0000:00:10.0/host2/target2:0:0/2:0:0:0/block/sdc"
            ),
            Transport::Scsi
        );
        // A fake ata port with no link directory reads as parallel ATA.
        assert_eq!(
            t(
                "sda",
                "/nonexistent/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"
            ),
            Transport::Ata
        );
        assert_eq!(
            t("foo", "/sys/devices/virtual/block/foo"),
            Transport::Unknown
        );
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["sda10", "sda2", "loop10", "loop2", "sda"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["loop2", "loop10", "sda", "sda2", "sda10"]);
    }

    #[test]
    fn vpd_pages() {
        let dir = tempfile::tempdir().unwrap();
        let p80 = dir.path().join("p80");
        let mut page = vec![0, 0x80, 0, 8];
        page.extend_from_slice(b"  WD-123\0");
        std::fs::write(&p80, &page).unwrap();
        assert_eq!(vpd_serial(&p80).as_deref(), Some("WD-123"));

        let p83 = dir.path().join("p83");
        // An ASCII T10 designator first (skipped), then the binary NAA one.
        let mut page = vec![0, 0x83, 0, 0];
        page.extend_from_slice(&[2, 1, 0, 4]);
        page.extend_from_slice(b"ATA ");
        page.extend_from_slice(&[1, 3, 0, 8, 0x50, 0x00, 0xc5, 0x00, 0xa1, 0xb2, 0xc3, 0xd4]);
        page[3] = (page.len() - 4) as u8;
        std::fs::write(&p83, &page).unwrap();
        assert_eq!(vpd_naa(&p83).as_deref(), Some("0x5000c500a1b2c3d4"));
    }

    #[test]
    fn missing_attributes_are_none() {
        let ids = disk_ids(Path::new("/nonexistent/block/sdz"));
        assert!(ids.model.is_none() && ids.serial.is_none() && ids.wwn.is_none());
        assert_eq!(parse_dev("8:17"), Some((8, 17)));
        assert_eq!(parse_dev("garbage"), None);
    }
}
