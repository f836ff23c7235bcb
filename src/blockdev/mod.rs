//! Block devices on this machine: enumeration through sysfs, identity (model/serial/WWN/size),
//! partition tables and mounts.
//!
//! Only sysfs, procfs and the devices themselves are read: no udev database, no external
//! commands, so this works the same in a busybox initramfs as on a full distribution. Sysfs
//! attributes differ between kernels and drivers; a missing one is `None`, never an error.

pub(crate) mod fstype;
mod mounts;
mod render;
mod stack;
mod sysfs;
mod table;

pub use fstype::detect as detect_fs_type;
pub use mounts::{parse_mountinfo, read_mounts, MountInfo};
pub use render::{format_size, render_table};
pub use stack::{
    boot_disk, devices_below, disk_holding_file, disks_holding_file, mount_points_of, same_device,
    storage_of, Storage, BOOT_MEDIUM_MOUNTS, MEDIUM_DEVICE_FILE,
};
pub use table::{read_partition_table, PartitionTable, TableEntry, TableKind};

use crate::device::Identity;
use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use sysfs::{attr, attr_bool, attr_u64, Sys};

/// How a disk is attached to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Sata,
    /// Parallel ATA (IDE), or libata with no link speed reported.
    Ata,
    Nvme,
    Usb,
    Virtio,
    Scsi,
    Mmc,
    Loop,
    Unknown,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Sata => "sata",
            Transport::Ata => "ata",
            Transport::Nvme => "nvme",
            Transport::Usb => "usb",
            Transport::Virtio => "virtio",
            Transport::Scsi => "scsi",
            Transport::Mmc => "mmc",
            Transport::Loop => "loop",
            Transport::Unknown => "unknown",
        })
    }
}

/// A whole disk (or loop device) and what is on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    /// Kernel name (`sdb`, `nvme0n1`, `loop3`).
    pub name: String,
    pub dev_path: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub vendor: Option<String>,
    /// Size in bytes.
    pub size: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub transport: Transport,
    pub removable: bool,
    pub rotational: bool,
    pub read_only: bool,
    /// For loop devices: the file behind it.
    pub loop_backing_file: Option<PathBuf>,
    pub table: TableKind,
    /// GPT disk GUID or MBR signature.
    pub disk_id: Option<String>,
    /// Why the table could not be read (kind `Unknown`), or what was odd about it.
    pub table_problem: Option<String>,
    /// Filesystem directly on the whole disk (no partition table), when probed.
    pub fs_type: Option<String>,
    pub partitions: Vec<PartitionInfo>,
    /// Mounts of the whole-disk device itself (partitions carry their own).
    pub mounts: Vec<MountInfo>,
    /// Devices stacked on the whole disk (dm, md).
    pub holders: Vec<String>,
    /// The disk the running system (or rescue medium) came from: never a target.
    pub boot: bool,
}

/// A partition: what the kernel knows (sysfs) merged with what the table says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Kernel name (`sdb1`); `None` when the table lists it but the kernel has no device for it
    /// (e.g. a loop device attached without partition scanning).
    pub name: Option<String>,
    pub dev_path: Option<PathBuf>,
    pub number: u32,
    /// Start and size in bytes from the start of the disk.
    pub start: u64,
    pub size: u64,
    pub read_only: bool,
    /// GPT type GUID or MBR type byte ("0x83").
    pub type_code: Option<String>,
    pub type_name: Option<String>,
    /// GPT partition name.
    pub label: Option<String>,
    /// GPT unique partition GUID.
    pub uuid: Option<String>,
    pub bootable: bool,
    pub extended: bool,
    pub logical: bool,
    pub fs_type: Option<String>,
    pub mounts: Vec<MountInfo>,
    pub holders: Vec<String>,
}

/// What [`list_disks_with`] reads beyond sysfs.
#[derive(Debug, Clone, Copy)]
pub struct ListOptions {
    /// Open each disk read-only and read its partition table.
    pub read_tables: bool,
    /// Read the first 68 KiB of each partition to tell its filesystem type. On a failing disk
    /// these reads can take long: turn it off when listing a disk under rescue.
    pub probe_fs: bool,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            read_tables: true,
            probe_fs: true,
        }
    }
}

/// Lists the disks of this machine with partitions, tables, filesystem types and mounts.
///
/// Left out: ram and zram devices, loop and NBD devices with nothing attached, and stacked devices
/// (device-mapper, md RAID: they appear as `holders` of the disks they sit on).
pub fn list_disks() -> Result<Vec<DiskInfo>> {
    list_disks_with(ListOptions::default())
}

pub fn list_disks_with(opts: ListOptions) -> Result<Vec<DiskInfo>> {
    let sys = Sys::default();
    let block = sys.root.join("block");
    std::fs::read_dir(&block).map_err(|e| Error::io(&block, e))?;
    let mounts = read_mounts();
    let boot = boot_disk();
    let mut disks: Vec<DiskInfo> = sys
        .block_names()
        .iter()
        .filter_map(|name| disk_info(&sys, name, &mounts, opts))
        .collect();
    if let Some(boot) = boot {
        for d in &mut disks {
            d.boot = crate::safety::same_disk(&d.dev_path, &boot);
        }
    }
    Ok(disks)
}

fn disk_info(sys: &Sys, name: &str, mounts: &[MountInfo], opts: ListOptions) -> Option<DiskInfo> {
    if name.starts_with("ram") || name.starts_with("zram") {
        return None;
    }
    let dir = sys.disk_dir(name);
    if !sys.slaves(&dir).is_empty() {
        return None;
    }
    let size = attr_u64(&dir.join("size")).unwrap_or(0) * 512;
    let backing = attr(&dir.join("loop/backing_file")).map(PathBuf::from);
    if name.starts_with("loop") && backing.is_none() {
        return None;
    }
    // An NBD device no client holds (nbd.ko makes 16 of them at load) has nothing on it.
    if name.starts_with("nbd") && !dir.join("pid").exists() {
        return None;
    }
    let (major, minor) = attr(&dir.join("dev")).and_then(|d| sysfs::parse_dev(&d))?;
    let resolved = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let ids = sysfs::disk_ids(&dir);
    let queue = dir.join("queue");
    let logical = attr_u64(&queue.join("logical_block_size"))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(512);
    let physical = attr_u64(&queue.join("physical_block_size"))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(logical);
    let dev_path = sysfs::dev_path(name);
    let mut disk = DiskInfo {
        name: name.to_string(),
        dev_path: dev_path.clone(),
        major,
        minor,
        model: ids.model,
        serial: ids.serial,
        wwn: ids.wwn,
        vendor: ids.vendor,
        size,
        logical_sector_size: logical,
        physical_sector_size: physical,
        transport: sysfs::transport(name, &resolved),
        removable: attr_bool(&dir.join("removable")).unwrap_or(false),
        rotational: attr_bool(&queue.join("rotational")).unwrap_or(false),
        read_only: attr_bool(&dir.join("ro")).unwrap_or(false),
        loop_backing_file: backing,
        table: TableKind::Unknown,
        disk_id: None,
        table_problem: None,
        fs_type: None,
        partitions: Vec::new(),
        mounts: mounts_of_dev(mounts, (major, minor)),
        holders: sys.holders(&dir),
        boot: false,
    };
    for (pname, pdir) in sys.partition_dirs(&dir) {
        let pdev = attr(&pdir.join("dev")).and_then(|d| sysfs::parse_dev(&d));
        disk.partitions.push(PartitionInfo {
            name: Some(pname.clone()),
            dev_path: Some(sysfs::dev_path(&pname)),
            number: attr_u64(&pdir.join("partition"))
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            // sysfs counts in 512-byte units whatever the sector size.
            start: attr_u64(&pdir.join("start")).unwrap_or(0) * 512,
            size: attr_u64(&pdir.join("size")).unwrap_or(0) * 512,
            read_only: attr_bool(&pdir.join("ro")).unwrap_or(false),
            type_code: None,
            type_name: None,
            label: None,
            uuid: None,
            bootable: false,
            extended: false,
            logical: false,
            fs_type: None,
            mounts: pdev.map(|d| mounts_of_dev(mounts, d)).unwrap_or_default(),
            holders: sys.holders(&pdir),
        });
    }
    if !opts.read_tables || size == 0 {
        if size == 0 {
            disk.table = TableKind::None;
        }
        return Some(disk);
    }
    let mut file = match open_read_only(&dev_path) {
        Ok(f) => f,
        Err(e) => {
            disk.table_problem = Some(e.to_string());
            return Some(disk);
        }
    };
    // The ioctl is the authority on sector sizes; sysfs values are the fallback.
    if let Ok((l, p)) = crate::device::file::sector_sizes(&file) {
        disk.logical_sector_size = l;
        disk.physical_sector_size = p;
    }
    match read_partition_table(&mut file, size, disk.logical_sector_size) {
        Ok(t) => {
            disk.table = t.kind;
            disk.disk_id = t.disk_id.clone();
            disk.table_problem = t.warning.clone();
            merge_table(&mut disk.partitions, &t);
        }
        Err(e) => disk.table_problem = Some(e.to_string()),
    }
    if opts.probe_fs {
        if disk.table == TableKind::None {
            disk.fs_type = fstype::probe(&mut file, 0, size).map(str::to_string);
        }
        for p in &mut disk.partitions {
            if !p.extended {
                p.fs_type = fstype::probe(&mut file, p.start, p.size).map(str::to_string);
            }
        }
    }
    Some(disk)
}

fn open_read_only(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

fn mounts_of_dev(mounts: &[MountInfo], dev: (u32, u32)) -> Vec<MountInfo> {
    mounts
        .iter()
        .filter(|m| (m.major, m.minor) == dev)
        .cloned()
        .collect()
}

/// Adds the table's view to the kernel's partitions (matched by number); entries the kernel has
/// no device for are added without a name.
fn merge_table(parts: &mut Vec<PartitionInfo>, table: &PartitionTable) {
    for e in &table.entries {
        let idx = match parts.iter().position(|p| p.number == e.number) {
            Some(i) => i,
            None => {
                parts.push(PartitionInfo {
                    name: None,
                    dev_path: None,
                    number: e.number,
                    start: e.start,
                    size: e.size,
                    read_only: false,
                    type_code: None,
                    type_name: None,
                    label: None,
                    uuid: None,
                    bootable: false,
                    extended: false,
                    logical: false,
                    fs_type: None,
                    mounts: Vec::new(),
                    holders: Vec::new(),
                });
                parts.len() - 1
            }
        };
        let p = &mut parts[idx];
        p.type_code = Some(e.type_code.clone());
        p.type_name = e.type_name.clone();
        p.label = e.name.clone();
        p.uuid = e.uuid.clone();
        p.bootable = e.bootable;
        p.extended = e.extended;
        p.logical = e.logical;
        // The kernel gives an extended partition 1 KiB (just its EBR); the container is bigger.
        if e.extended {
            p.size = e.size;
        }
    }
    parts.sort_by_key(|p| p.number);
}

/// The filesystem type at the start of the device or file at `path`, from the magic numbers in
/// its first 68 KiB. Opens it read-only; never call it on a disk under rescue (a failing disk can
/// take minutes over these reads).
pub fn probe_fs_type(path: &Path) -> Option<&'static str> {
    let mut f = open_read_only(path).ok()?;
    fstype::probe(&mut f, 0, fstype::PROBE_LEN as u64)
}

nix::ioctl_none_bad!(blk_rrpart, nix::request_code_none!(0x12, 95));

/// Asks the kernel to re-read the partition table of the disk `dev` (BLKRRPART), so that the
/// partitions a rescue or restore wrote onto it appear as devices. The kernel refuses (EBUSY)
/// while a partition of the disk is in use; a file or a partition is refused (ENOTTY/EINVAL).
pub fn reread_partitions(dev: &Path) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(dev)?;
    // SAFETY: BLKRRPART takes no argument; the descriptor is open for the call's duration.
    unsafe { blk_rrpart(f.as_raw_fd()) }.map_err(std::io::Error::from)?;
    Ok(())
}

nix::ioctl_write_ptr_bad!(blk_pg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);

/// `struct blkpg_ioctl_arg` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut BlkpgPartition,
}

/// `struct blkpg_partition` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// Makes the kernel show the partitions of the disk `dev`: re-reads its table (BLKRRPART), and
/// where the kernel parses no tables (or the re-read was refused) adds each partition of the
/// table salvor reads from user space, as `partx -a` does (BLKPG). Returns how many partitions
/// were added that way. Call it with no other descriptor of `dev` open for writing.
pub fn show_partitions(dev: &Path) -> std::io::Result<usize> {
    use std::os::unix::io::AsRawFd;
    let reread = reread_partitions(dev);
    let table = partition_table_of_path(dev).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // sysfs names partitions sdb1, or loop0p1 / nvme0n1p1 after a digit.
    let sep = if name.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    let missing: Vec<&TableEntry> = table
        .entries
        .iter()
        .filter(|e| !e.extended)
        .filter(|e| !Path::new(&format!("/sys/class/block/{name}{sep}{}", e.number)).exists())
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let f = File::open(dev)?;
    let mut added = 0;
    for e in missing {
        let mut part = BlkpgPartition {
            start: e.start as libc::c_longlong,
            length: e.size as libc::c_longlong,
            pno: e.number as libc::c_int,
            devname: [0; 64],
            volname: [0; 64],
        };
        let arg = BlkpgIoctlArg {
            op: 1, // BLKPG_ADD_PARTITION
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: &mut part,
        };
        // SAFETY: BLKPG reads the argument struct and the partition it points to, both alive
        // for the call; the descriptor is open.
        match unsafe { blk_pg(f.as_raw_fd(), &arg) } {
            Ok(_) => added += 1,
            // Already there (the re-read raced us), or the disk cannot hold partitions.
            Err(nix::errno::Errno::EBUSY) => {}
            Err(err) => {
                return Err(match reread {
                    Err(r) => {
                        std::io::Error::other(format!("{r}; adding partition {}: {err}", e.number))
                    }
                    Ok(()) => std::io::Error::from(err),
                })
            }
        }
    }
    Ok(added)
}

/// A cheap fingerprint of the attached block devices: every `/sys/block` entry and its
/// partitions with their sizes in 512-byte units. Only sysfs is read (no device is opened), so
/// the UI can poll it every second to notice disks being plugged in or removed; a loop device
/// being attached shows as a size change.
pub fn block_listing() -> Vec<(String, u64)> {
    block_listing_at(Path::new("/sys"))
}

/// [`block_listing`] of the sysfs tree at `sys_root` (a fake tree in tests).
pub fn block_listing_at(sys_root: &Path) -> Vec<(String, u64)> {
    let sys = Sys {
        root: sys_root.to_path_buf(),
    };
    let mut v = Vec::new();
    for name in sys.block_names() {
        let dir = sys.disk_dir(&name);
        v.push((name, attr_u64(&dir.join("size")).unwrap_or(0)));
        for (pname, pdir) in sys.partition_dirs(&dir) {
            v.push((pname, attr_u64(&pdir.join("size")).unwrap_or(0)));
        }
    }
    v
}

/// Reads the partition table of a disk or image file at `path`, opened read-only.
pub fn partition_table_of_path(path: &Path) -> Result<PartitionTable> {
    let mut file = open_read_only(path)?;
    let size = crate::device::file::device_size(&file).map_err(|e| Error::io(path, e))?;
    let is_dev = file
        .metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    let sector = if is_dev {
        crate::device::file::sector_sizes(&file)
            .map(|(l, _)| l)
            .map_err(|e| Error::io(path, e))?
    } else {
        0 // an image: try both sector sizes
    };
    read_partition_table(&mut file, size, sector)
}

/// The sysfs directory of the block device node at `path`, and whether it is a partition.
fn sysfs_dir_of_node(sys: &Sys, path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    sys.dev_dir(sysfs::split_dev(meta.rdev()))
}

/// Identity of the block device at `path` (model, serial, WWN from sysfs). For a partition these
/// are its disk's, with the partition's size. `None` if `path` is not a block device known to
/// sysfs.
pub fn identity_of_path(path: &Path, size: u64) -> Option<Identity> {
    let sys = Sys::default();
    let dir = sysfs_dir_of_node(&sys, path)?;
    let disk_dir = if sysfs::is_partition_dir(&dir) {
        dir.parent()?.to_path_buf()
    } else {
        dir
    };
    let ids = sysfs::disk_ids(&disk_dir);
    Some(Identity {
        model: ids.model,
        serial: ids.serial,
        wwn: ids.wwn,
        size,
    })
}

/// Finds the /dev node of the disk with this identity (same serial or WWN, same size).
///
/// Without a serial and a WWN there is nothing to recognize a disk by: `None`, never a guess.
/// When the size is not the disk's but exactly one partition of that disk has it, that
/// partition is returned (an identity taken from a partition). Several matches: `None`.
pub fn find_by_identity(id: &Identity) -> Option<PathBuf> {
    find_by_identity_in(&Sys::default(), id)
}

fn find_by_identity_in(sys: &Sys, id: &Identity) -> Option<PathBuf> {
    if id.serial.is_none() && id.wwn.is_none() {
        return None;
    }
    let mut found = Vec::new();
    for name in sys.block_names() {
        let dir = sys.disk_dir(&name);
        let ids = sysfs::disk_ids(&dir);
        let serial_match = id.serial.is_some() && ids.serial == id.serial;
        let wwn_match = id.wwn.is_some() && ids.wwn == id.wwn;
        if !(serial_match || wwn_match) {
            continue;
        }
        // Both known and different: a different product that happens to share a serial.
        if let (Some(a), Some(b)) = (&id.model, &ids.model) {
            if a != b {
                continue;
            }
        }
        let size = attr_u64(&dir.join("size")).map(|s| s * 512);
        if size == Some(id.size) {
            found.push(sysfs::dev_path(&name));
            continue;
        }
        for (pname, pdir) in sys.partition_dirs(&dir) {
            if attr_u64(&pdir.join("size")).map(|s| s * 512) == Some(id.size) {
                found.push(sysfs::dev_path(&pname));
            }
        }
    }
    if found.len() == 1 {
        found.pop()
    } else {
        None
    }
}

#[cfg(test)]
mod rrpart_tests {
    #[test]
    fn rereading_a_file_is_refused_by_the_kernel() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(super::reread_partitions(f.path()).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake sysfs with two disks of the same size; only one has a serial.
    fn fake_sys() -> (tempfile::TempDir, Sys) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        for (name, serial, wwid) in [("sda", Some("S1"), None), ("sdb", None, Some("naa.5000"))] {
            let d = root.join("block").join(name);
            fs::create_dir_all(d.join("device")).unwrap();
            fs::write(d.join("size"), "2048\n").unwrap();
            fs::write(d.join("device/model"), "Disk X  \n").unwrap();
            if let Some(s) = serial {
                fs::write(d.join("device/serial"), s).unwrap();
            }
            if let Some(w) = wwid {
                fs::write(d.join("device/wwid"), w).unwrap();
            }
            let p = d.join(format!("{name}1"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("partition"), "1").unwrap();
            fs::write(p.join("size"), "1024").unwrap();
        }
        (t, Sys { root })
    }

    #[test]
    fn identity_lookup() {
        let (_t, sys) = fake_sys();
        let id = |serial: Option<&str>, wwn: Option<&str>, size| Identity {
            model: Some("Disk X".into()),
            serial: serial.map(Into::into),
            wwn: wwn.map(Into::into),
            size,
        };
        assert_eq!(
            find_by_identity_in(&sys, &id(Some("S1"), None, 1 << 20)),
            Some(PathBuf::from("/dev/sda"))
        );
        assert_eq!(
            find_by_identity_in(&sys, &id(None, Some("naa.5000"), 1 << 20)),
            Some(PathBuf::from("/dev/sdb"))
        );
        assert_eq!(
            find_by_identity_in(&sys, &id(Some("S1"), None, 512 * 1024)),
            Some(PathBuf::from("/dev/sda1"))
        );
        // Same serial, wrong size; no serial and no WWN: never guess.
        assert_eq!(find_by_identity_in(&sys, &id(Some("S1"), None, 4096)), None);
        assert_eq!(find_by_identity_in(&sys, &id(None, None, 1 << 20)), None);
        let mut other = id(Some("S1"), None, 1 << 20);
        other.model = Some("Other".into());
        assert_eq!(find_by_identity_in(&sys, &other), None);
    }

    #[test]
    fn block_listing_sees_disks_partitions_and_sizes() {
        let (t, _sys) = fake_sys();
        let before = block_listing_at(t.path());
        assert_eq!(
            before,
            vec![
                ("sda".to_string(), 2048),
                ("sda1".to_string(), 1024),
                ("sdb".to_string(), 2048),
                ("sdb1".to_string(), 1024),
            ]
        );
        // A loop device being attached only changes its size.
        fs::write(t.path().join("block/sdb/size"), "4096\n").unwrap();
        assert_ne!(block_listing_at(t.path()), before);
        assert!(block_listing_at(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn merge_adds_table_only_entries() {
        let mut parts = Vec::new();
        let table = PartitionTable {
            kind: TableKind::Mbr,
            sector_size: 512,
            disk_id: None,
            entries: vec![TableEntry {
                number: 5,
                start: 1 << 20,
                size: 1 << 20,
                type_code: "0x83".into(),
                type_name: Some("Linux".into()),
                name: None,
                uuid: None,
                bootable: false,
                extended: false,
                logical: true,
            }],
            warning: None,
        };
        merge_table(&mut parts, &table);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].name, None);
        assert!(parts[0].logical);
    }
}
