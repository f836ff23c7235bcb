//! How block devices stack (partitions, dm/md, loop devices and their backing files) and what
//! uses them (mounts, swap), for the safety policy (`crate::safety`), which decides.

use super::mounts::{read_mounts, MountInfo};
use super::sysfs::{self, attr, split_dev, Sys};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Stacks deeper than this (loop on dm on md on loop ...) are not followed: they do not occur
/// in practice and a bound keeps a cyclic setup from looping.
const MAX_DEPTH: usize = 8;

/// Where rescue media are mounted, checked in order by [`boot_disk`] before `/`.
pub const BOOT_MEDIUM_MOUNTS: &[&str] = &[
    "/run/salvor/medium",
    "/run/live/medium",       // Debian live-boot
    "/lib/live/mount/medium", // older live-boot
    "/run/initramfs/live",    // dracut dmsquash-live (Fedora, ...)
    "/run/archiso/bootmnt",   // Arch ISO
    "/cdrom",                 // Ubuntu casper
];

/// Mounts and active swap that use the block device at `path`, one of its partitions, or a
/// device stacked on them (dm-crypt, LVM, md): anything that makes writing `path` destroy a
/// live filesystem.
///
/// A path that is not a block device gives an empty list (files are checked with
/// [`disk_holding_file`]); a path that cannot be stat'ed is an error.
pub fn mount_points_of(path: &Path) -> Result<Vec<MountInfo>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_block_device() {
        return Ok(Vec::new());
    }
    let sys = Sys::default();
    let dev = split_dev(meta.rdev());
    let mut devs = BTreeSet::from([dev]);
    let mut names = BTreeSet::new();
    if let Some(dir) = sys.dev_dir(dev) {
        collect_users(&sys, &dir, &mut devs, &mut names, 0);
    }
    let dev_paths: Vec<PathBuf> = names.iter().map(|n| sysfs::dev_path(n)).collect();
    let uses_device = |m_dev: (u32, u32), source: &str| {
        if devs.contains(&m_dev) {
            return true;
        }
        // btrfs and others report an anonymous device number: go by the mount source.
        source.starts_with("/dev/")
            && std::fs::metadata(source)
                .map(|s| s.file_type().is_block_device() && devs.contains(&split_dev(s.rdev())))
                .unwrap_or_else(|_| dev_paths.iter().any(|p| p.as_os_str() == source))
    };
    let mut out: Vec<MountInfo> = read_mounts()
        .into_iter()
        .filter(|m| uses_device((m.major, m.minor), &m.source))
        .collect();
    out.extend(
        active_swaps()
            .into_iter()
            .filter(|m| devs.contains(&(m.major, m.minor))),
    );
    Ok(out)
}

/// Adds the partitions of `dir` and everything stacked on it (recursively) to `devs`.
fn collect_users(
    sys: &Sys,
    dir: &Path,
    devs: &mut BTreeSet<(u32, u32)>,
    names: &mut BTreeSet<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
        names.insert(name.to_string());
    }
    if let Some(d) = attr(&dir.join("dev")).and_then(|d| sysfs::parse_dev(&d)) {
        devs.insert(d);
    }
    let mut next: Vec<PathBuf> = sys
        .partition_dirs(dir)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    next.extend(sys.holders(dir).iter().filter_map(|h| sys.class_dir(h)));
    for d in next {
        collect_users(sys, &d, devs, names, depth + 1);
    }
}

/// Active swap devices from /proc/swaps, as mount entries with mount point `[SWAP]`.
fn active_swaps() -> Vec<MountInfo> {
    let Ok(text) = std::fs::read_to_string("/proc/swaps") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            // Same octal escaping as mountinfo.
            let m = super::mounts::parse_mountinfo(&format!("0 0 0:0 / / rw - swap {name} rw"))
                .pop()?;
            let meta = std::fs::metadata(&m.source).ok()?;
            if !meta.file_type().is_block_device() {
                return None;
            }
            let (major, minor) = split_dev(meta.rdev());
            Some(MountInfo {
                major,
                minor,
                mount_point: PathBuf::from("[SWAP]"),
                ..m
            })
        })
        .collect()
}

/// Whether `a` and `b` are the same storage, so that writing one changes the other: the same
/// file, the same block device, a partition and its disk, a device-mapper/md device and a device
/// it sits on, or a loop device and the disk holding its backing file.
///
/// Two different partitions of one disk do not overlap: `false`. Anything unreadable: `false`.
pub fn same_device(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return true;
    }
    let (ba, bb) = (
        ma.file_type().is_block_device(),
        mb.file_type().is_block_device(),
    );
    if !(ba && bb) {
        return false;
    }
    let (da, db) = (split_dev(ma.rdev()), split_dev(mb.rdev()));
    if da == db {
        return true;
    }
    let sys = Sys::default();
    lower_devices(&sys, da).contains(&db) || lower_devices(&sys, db).contains(&da)
}

/// `dev`, the disk it is a partition of, and everything it is built on, recursively.
fn lower_devices(sys: &Sys, dev: (u32, u32)) -> BTreeSet<(u32, u32)> {
    let mut out = BTreeSet::new();
    if let Some(dir) = sys.dev_dir(dev) {
        lower_walk(sys, &dir, &mut out, 0);
    }
    out.insert(dev);
    out
}

fn lower_walk(sys: &Sys, dir: &Path, out: &mut BTreeSet<(u32, u32)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(d) = attr(&dir.join("dev")).and_then(|d| sysfs::parse_dev(&d)) {
        if !out.insert(d) {
            return;
        }
    }
    let mut next = Vec::new();
    if sysfs::is_partition_dir(dir) {
        next.extend(dir.parent().map(Path::to_path_buf));
    }
    next.extend(sys.slaves(dir).iter().filter_map(|s| sys.class_dir(s)));
    if let Some(backing) = attr(&dir.join("loop/backing_file")) {
        for disk in holding_chain(sys, Path::new(&backing), depth + 1) {
            next.extend(sys.class_dir(&disk));
        }
    }
    for d in next {
        lower_walk(sys, &d, out, depth + 1);
    }
}

/// The physical disk whose filesystem holds the file at `path`, following loop devices to the
/// disk holding their backing file, device-mapper/md devices to the disks below them, and
/// overlay mounts to their lower and upper directories. `None` for files on tmpfs, network
/// filesystems, or anything that cannot be traced.
///
/// "Physical" means not a loop, dm or md device; if the chain has none (a loop device whose
/// backing file lives on tmpfs), the last device reached is returned.
pub fn disk_holding_file(path: &Path) -> Option<PathBuf> {
    let sys = Sys::default();
    let chain = holding_chain(&sys, path, 0);
    let physical = chain.iter().find(|name| {
        let dir = sys.disk_dir(name);
        !name.starts_with("loop") && sys.slaves(&dir).is_empty()
    });
    physical.or(chain.last()).map(|n| sysfs::dev_path(n))
}

/// Every whole block device the file at `path` depends on, from the filesystem's own device
/// down (e.g. `/dev/loop3`, `/dev/vda`). Empty when nothing can be traced.
pub fn disks_holding_file(path: &Path) -> Vec<PathBuf> {
    holding_chain(&Sys::default(), path, 0)
        .iter()
        .map(|n| sysfs::dev_path(n))
        .collect()
}

/// Kernel names of the whole disks below the filesystem holding `path`, top down, deduplicated.
fn holding_chain(sys: &Sys, path: &Path, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        return out;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return out;
    };
    let dev = split_dev(meta.dev());
    match sys.dev_dir(dev) {
        Some(dir) => descend(sys, &dir, &mut out, depth),
        None => {
            // An anonymous device (overlay, btrfs, tmpfs): ask the mount table.
            match mount_backing(path, dev) {
                Backing::Device(d) => {
                    if let Some(dir) = sys.dev_dir(d) {
                        descend(sys, &dir, &mut out, depth + 1);
                    }
                }
                Backing::Paths(paths) => {
                    for p in paths {
                        for name in holding_chain(sys, &p, depth + 1) {
                            push_unique(&mut out, name);
                        }
                    }
                }
            }
        }
    }
    out
}

fn descend(sys: &Sys, dir: &Path, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let disk = if sysfs::is_partition_dir(dir) {
        match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => return,
        }
    } else {
        dir.to_path_buf()
    };
    let Some(name) = disk
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
    else {
        return;
    };
    if out.contains(&name) {
        return;
    }
    out.push(name);
    // Devices below a partition's disk, and below a stacked partition's own slaves.
    let mut slaves = sys.slaves(&disk);
    slaves.extend(sys.slaves(dir));
    for s in slaves {
        if let Some(d) = sys.class_dir(&s) {
            descend(sys, &d, out, depth + 1);
        }
    }
    if let Some(backing) = attr(&disk.join("loop/backing_file")) {
        for n in holding_chain(sys, Path::new(&backing), depth + 1) {
            push_unique(out, n);
        }
    }
}

fn push_unique(out: &mut Vec<String>, name: String) {
    if !out.contains(&name) {
        out.push(name);
    }
}

enum Backing {
    Device((u32, u32)),
    Paths(Vec<PathBuf>),
}

/// For a file on a filesystem without its own block device: the paths the mount is built from
/// (overlay's lower/upper directories) or its source device (btrfs' `/dev/sdX`).
fn mount_backing(path: &Path, dev: (u32, u32)) -> Backing {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = read_mounts();
    // The innermost mount of this device that contains the path.
    let Some(m) = mounts
        .iter()
        .filter(|m| (m.major, m.minor) == dev && canon.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
    else {
        return Backing::Paths(Vec::new());
    };
    if m.fs_type == "overlay" {
        let mut dirs = Vec::new();
        for opt in m.super_options.split(',') {
            if let Some(v) = opt.strip_prefix("lowerdir=") {
                dirs.extend(v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
            } else if let Some(v) = opt.strip_prefix("upperdir=") {
                dirs.push(PathBuf::from(v));
            }
        }
        return Backing::Paths(dirs);
    }
    let src = Path::new(&m.source);
    if src.as_os_str().as_bytes().starts_with(b"/dev/") {
        if let Ok(meta) = std::fs::metadata(src) {
            if meta.file_type().is_block_device() {
                return Backing::Device(split_dev(meta.rdev()));
            }
        }
    }
    Backing::Paths(Vec::new())
}

/// A piece of storage that writing a path may change: a file (by device and inode) or a block
/// device (by device number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Storage {
    File { dev: u64, ino: u64 },
    Device(u32, u32),
}

impl Storage {
    /// The storage `path` itself is: its device number for a block device, else its inode.
    /// `None` when it cannot be stat'ed (it does not exist yet).
    pub fn of(path: &Path) -> Option<Storage> {
        let meta = std::fs::metadata(path).ok()?;
        Some(if meta.file_type().is_block_device() {
            let (a, b) = split_dev(meta.rdev());
            Storage::Device(a, b)
        } else {
            Storage::File {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        })
    }
}

/// Everything that writing `path` changes: the file or device itself, the filesystem's
/// partition and disk, the devices below a dm/md device, and for every loop device on the way its
/// backing file and everything below that, recursively. For a path that does not exist yet, what
/// its nearest existing directory sits on (its own key left out: a new file is not its
/// directory). Empty when nothing can be stat'ed.
pub fn storage_of(path: &Path) -> BTreeSet<Storage> {
    walk_storage(path, true)
}

/// The block devices a block device is, or is built from (its disk, dm/md slaves), without
/// following loop devices to their backing files: what writing it can break beyond file contents.
pub fn devices_below(path: &Path) -> BTreeSet<Storage> {
    walk_storage(path, false)
}

/// A storage walk: the sysfs tree, and whether loop devices lead to their backing files.
struct Walk {
    sys: Sys,
    follow_loops: bool,
}

fn walk_storage(path: &Path, follow_loops: bool) -> BTreeSet<Storage> {
    let w = &Walk {
        sys: Sys::default(),
        follow_loops,
    };
    let mut out = BTreeSet::new();
    if std::fs::metadata(path).is_ok() {
        storage_walk(w, path, &mut out, 0);
    } else if let Some(dir) = path.ancestors().skip(1).find(|a| {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        std::fs::metadata(a).is_ok()
    }) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        storage_walk(w, dir, &mut out, 0);
        if let Some(own) = Storage::of(dir) {
            out.remove(&own);
        }
    }
    out
}

fn storage_walk(w: &Walk, path: &Path, out: &mut BTreeSet<Storage>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.file_type().is_block_device() {
        if let Some(dir) = w.sys.dev_dir(split_dev(meta.rdev())) {
            device_walk(w, &dir, out, depth + 1);
        }
        let (a, b) = split_dev(meta.rdev());
        out.insert(Storage::Device(a, b));
        return;
    }
    if !out.insert(Storage::File {
        dev: meta.dev(),
        ino: meta.ino(),
    }) {
        return;
    }
    let dev = split_dev(meta.dev());
    match w.sys.dev_dir(dev) {
        Some(dir) => device_walk(w, &dir, out, depth + 1),
        None => match mount_backing(path, dev) {
            Backing::Device(d) => {
                if let Some(dir) = w.sys.dev_dir(d) {
                    device_walk(w, &dir, out, depth + 1);
                }
            }
            Backing::Paths(paths) => {
                for p in paths {
                    storage_walk(w, &p, out, depth + 1);
                }
            }
        },
    }
}

/// A device's own number, its disk (for a partition), its slaves, a loop device's backing file.
fn device_walk(w: &Walk, dir: &Path, out: &mut BTreeSet<Storage>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some((a, b)) = attr(&dir.join("dev")).and_then(|d| sysfs::parse_dev(&d)) {
        if !out.insert(Storage::Device(a, b)) {
            return;
        }
    }
    if sysfs::is_partition_dir(dir) {
        if let Some(disk) = dir.parent() {
            device_walk(w, disk, out, depth + 1);
        }
    }
    for s in w.sys.slaves(dir) {
        if let Some(d) = w.sys.class_dir(&s) {
            device_walk(w, &d, out, depth + 1);
        }
    }
    if !w.follow_loops {
        return;
    }
    if let Some(backing) = attr(&dir.join("loop/backing_file")) {
        storage_walk(w, Path::new(&backing), out, depth + 1);
    }
}

/// Where salvor's initramfs writes the boot medium's device node.
pub const MEDIUM_DEVICE_FILE: &str = "/run/salvor/medium-device";

/// The disk the running system came from, or `None` when it cannot be told (booted over the
/// network, or copied to RAM with the medium unmounted).
///
/// Heuristic: the first of [`BOOT_MEDIUM_MOUNTS`] that is a mount point (a live system's boot
/// medium, which may hold more than what `/` is made of), else the disk holding `/` (through
/// overlay, squashfs-on-loop, dm-crypt, LVM and md).
pub fn boot_disk() -> Option<PathBuf> {
    // The rescue environment's init records the device it booted from (it never mounts it).
    if let Ok(dev) = std::fs::read_to_string(MEDIUM_DEVICE_FILE) {
        let dev = PathBuf::from(dev.trim());
        if dev.exists() {
            return Some(dev);
        }
    }
    let mounts = read_mounts();
    BOOT_MEDIUM_MOUNTS
        .iter()
        .map(Path::new)
        .filter(|p| mounts.iter().any(|m| m.mount_point == *p))
        .chain(std::iter::once(Path::new("/")))
        .find_map(disk_holding_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_or_missing_paths_are_not_the_same_device() {
        assert!(!same_device(
            Path::new("/nonexistent/a"),
            Path::new("/nonexistent/a")
        ));
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        assert!(same_device(&a, &a));
        assert!(!same_device(&a, &b));
        let l = t.path().join("l");
        std::fs::hard_link(&a, &l).unwrap();
        assert!(same_device(&a, &l));
    }

    /// sda with partition sda1, and dm-0 (say dm-crypt) on sda1.
    fn fake_stack() -> (tempfile::TempDir, Sys) {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let r = t.path().to_path_buf();
        let sda = r.join("devices/pci0/block/sda");
        let sda1 = sda.join("sda1");
        let dm = r.join("devices/virtual/block/dm-0");
        for d in [
            &sda1.join("holders"),
            &dm.join("slaves"),
            &r.join("class/block"),
            &r.join("dev/block"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(sda.join("dev"), "8:0\n").unwrap();
        std::fs::write(sda1.join("dev"), "8:1\n").unwrap();
        std::fs::write(sda1.join("partition"), "1\n").unwrap();
        std::fs::write(sda1.join("holders/dm-0"), "").unwrap();
        std::fs::write(dm.join("dev"), "253:0\n").unwrap();
        std::fs::write(dm.join("slaves/sda1"), "").unwrap();
        for (name, dev, dir) in [
            ("sda", "8:0", &sda),
            ("sda1", "8:1", &sda1),
            ("dm-0", "253:0", &dm),
        ] {
            symlink(dir, r.join("class/block").join(name)).unwrap();
            symlink(dir, r.join("dev/block").join(dev)).unwrap();
        }
        (t, Sys { root: r })
    }

    #[test]
    fn stacked_devices_reach_their_disk_and_back() {
        let (_t, sys) = fake_stack();
        let lower = lower_devices(&sys, (253, 0));
        assert!(lower.contains(&(8, 1)) && lower.contains(&(8, 0)));
        let lower = lower_devices(&sys, (8, 1));
        assert!(lower.contains(&(8, 0)) && !lower.contains(&(253, 0)));

        let (mut devs, mut names) = (BTreeSet::new(), BTreeSet::new());
        let sda = sys.dev_dir((8, 0)).unwrap();
        collect_users(&sys, &sda, &mut devs, &mut names, 0);
        assert_eq!(devs, BTreeSet::from([(8, 0), (8, 1), (253, 0)]));
        assert!(names.contains("dm-0"));

        let mut chain = Vec::new();
        descend(&sys, &sys.dev_dir((253, 0)).unwrap(), &mut chain, 0);
        assert_eq!(chain, ["dm-0", "sda"]);
    }

    #[test]
    fn writing_a_dm_device_touches_the_partition_and_disk_below() {
        let (_t, sys) = fake_stack();
        let dm = sys.dev_dir((253, 0)).unwrap();
        let w = Walk {
            sys,
            follow_loops: true,
        };
        let mut out = BTreeSet::new();
        device_walk(&w, &dm, &mut out, 0);
        assert_eq!(
            out,
            BTreeSet::from([
                Storage::Device(253, 0),
                Storage::Device(8, 1),
                Storage::Device(8, 0)
            ])
        );
        let mut out = BTreeSet::new();
        device_walk(&w, &w.sys.dev_dir((8, 1)).unwrap(), &mut out, 0);
        assert!(!out.contains(&Storage::Device(253, 0)));
    }

    #[test]
    fn mount_points_of_a_regular_file_is_empty() {
        let t = tempfile::NamedTempFile::new().unwrap();
        assert!(mount_points_of(t.path()).unwrap().is_empty());
        assert!(mount_points_of(Path::new("/nonexistent/x")).is_err());
    }
}
