//! The one refusal policy. Before a job writes its first byte, every path it will write
//! (destination, mapfile and the mapfile's temporary and backup files, logs, image parts, a
//! serve overlay, export outputs) is checked against every path it reads and against each other,
//! and a refusal leaves everything untouched. Rescue (CLI and TUI, through `rescue::job`), image,
//! restore, clone, serve and export build a [`Plan`] and call [`Plan::check`]. (The TUI's
//! read-write mounts are still decided by the places list, which never offers a disk a job or the
//! flow uses; `Role::MountedDevice` is there for moving that decision here.)
//!
//! Two paths conflict when writing one can change the other. That is decided on what they are
//! stored on ([`blockdev::storage_of`]): the same inode or device number; a device that is, or sits
//! on, the other (a partition and its disk, dm/md and the devices below); a loop device and its
//! backing file; a file and the disk its filesystem lives on. Files that do not exist yet are
//! compared by canonical path (symlinks followed, even dangling ones), so `rescue in out out` is
//! caught before `out` exists.

use crate::blockdev::{self, Storage};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// What a written path is for; names it in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Rescued, restored or cloned data: a file or a block device.
    Destination,
    /// The mapfile itself.
    Mapfile,
    /// `MAPFILE.tmp`, `MAPFILE.bak`, `MAPFILE.bak.tmp`, the lock file.
    MapfileCompanion,
    /// `--log-reads` and other logs.
    Log,
    /// A file of an image being written (its parts, its temporary files).
    ImagePart,
    /// A block device mounted read-write.
    MountedDevice,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Destination => "the destination",
            Role::Mapfile => "the mapfile",
            Role::MapfileCompanion => "a mapfile's temporary, backup or lock file",
            Role::Log => "the log file",
            Role::ImagePart => "the image file",
            Role::MountedDevice => "the device to mount read-write",
        }
    }

    /// Roles that may be a block device.
    fn may_be_device(self) -> bool {
        matches!(self, Role::Destination | Role::MountedDevice)
    }
}

/// The paths one job reads and writes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    reads: Vec<PathBuf>,
    /// Reads that may be the destination itself (ddrescue's `--same-file`), and nothing else
    /// written.
    reads_of_destination: Vec<PathBuf>,
    writes: Vec<(Role, PathBuf)>,
    /// Bytes the destination must hold, when it is a block device.
    dest_needed: Option<u64>,
    /// A block device destination needs the user's explicit go (`-f`); restore and clone ask
    /// for the typed name themselves.
    dest_device_unconfirmed: bool,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    /// A path the job reads: the source, image parts, a domain or test-mode mapfile.
    pub fn read(mut self, path: impl Into<PathBuf>) -> Plan {
        self.reads.push(path.into());
        self
    }

    /// A path the job reads that the user allowed to be the destination itself (ddrescue's
    /// `--same-file`: copying part of a file to another place in it). Any other overlap, and any
    /// overlap with another written path, is still refused.
    pub fn read_same_as_destination(mut self, path: impl Into<PathBuf>) -> Plan {
        self.reads_of_destination.push(path.into());
        self
    }

    pub fn write(mut self, role: Role, path: impl Into<PathBuf>) -> Plan {
        self.writes.push((role, path.into()));
        self
    }

    /// A block device destination is refused unless `confirmed` (ddrescue's `-f`).
    pub fn device_confirmed(mut self, confirmed: bool) -> Plan {
        self.dest_device_unconfirmed = !confirmed;
        self
    }

    /// The destination; a block device must hold `needed` bytes.
    pub fn destination(mut self, path: impl Into<PathBuf>, needed: u64) -> Plan {
        self.dest_needed = Some(needed);
        self.write(Role::Destination, path)
    }

    /// The mapfile and every file its saver and lock write next to it.
    pub fn mapfile(self, path: &Path) -> Plan {
        let companions = crate::mapfile::companion_paths(path);
        let mut plan = self.write(Role::Mapfile, path);
        for c in companions {
            plan = plan.write(Role::MapfileCompanion, c);
        }
        plan
    }

    /// Refuses ([`Error::Refused`], naming the path and why) anything this plan must not write.
    pub fn check(&self) -> Result<()> {
        let reads: Vec<Node> = self.reads.iter().map(|p| Node::new(p)).collect();
        let reads_of_dest: Vec<Node> = self
            .reads_of_destination
            .iter()
            .map(|p| Node::new(p))
            .collect();
        let writes: Vec<(Role, Node)> = self
            .writes
            .iter()
            .map(|(r, p)| (*r, Node::new(p)))
            .filter(|(_, n)| !n.is_dev_null)
            .collect();
        let boot = blockdev::boot_disk().map(|b| Node::new(&b));
        for (i, (role, w)) in writes.iter().enumerate() {
            self.check_kind(*role, w)?;
            for r in &reads_of_dest {
                let how = match w.conflicts(r) {
                    Some(Overlap::Same) if *role == Role::Destination => None,
                    how => how,
                };
                if let Some(how) = how {
                    return Err(refused(*role, w, how.describe_read(&r.path, true)));
                }
            }
            for (k, r) in reads.iter().enumerate() {
                if let Some(how) = w.conflicts(r) {
                    return Err(refused(*role, w, how.describe_read(&r.path, k == 0)));
                }
            }
            if w.is_block_device {
                if *role == Role::Destination && self.dest_device_unconfirmed {
                    return Err(refused(
                        *role,
                        w,
                        "is a block device; writing it destroys what is on it (use -f/--force \
                         if you really mean it)",
                    ));
                }
                if let Some(boot) = &boot {
                    // The disk itself, a partition of it, or dm/md on it; a loop device whose
                    // backing file is on it only writes that file.
                    if on_same_devices(w, boot) {
                        return Err(refused(
                            *role,
                            w,
                            "is on the disk the running system booted from",
                        ));
                    }
                }
                check_not_mounted(*role, w)?;
                if *role == Role::Destination {
                    if let Some(needed) = self.dest_needed {
                        check_device_size(w, needed)?;
                    }
                }
            }
            for (other_role, other) in &writes[i + 1..] {
                let how = if is_mapfile_family(*role) && is_mapfile_family(*other_role) {
                    // The saver replaces these by rename, and a save cut short leaves the backup
                    // a hard link of the mapfile: only the same name is a conflict.
                    (w.canonical == other.canonical).then_some(Overlap::Same)
                } else {
                    w.conflicts(other)
                };
                if let Some(how) = how {
                    return Err(refused(
                        *role,
                        w,
                        format!("{} ({})", how.describe(&other.path), other_role.describe()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_kind(&self, role: Role, w: &Node) -> Result<()> {
        let Some(kind) = w.kind else {
            return Ok(());
        };
        match kind {
            Kind::Block if !role.may_be_device() => Err(refused(
                role,
                w,
                "is a block device; it must be a regular file",
            )),
            Kind::Dir => Err(refused(role, w, "is a directory")),
            Kind::Other if role != Role::Log => {
                Err(refused(role, w, "is not a regular file or block device"))
            }
            _ => Ok(()),
        }
    }
}

/// Whether two block devices are one, or one is built on the other (loop devices not followed).
fn on_same_devices(a: &Node, b: &Node) -> bool {
    let (Some(sa), Some(sb)) = (a.own, b.own) else {
        return false;
    };
    sa == sb
        || blockdev::devices_below(&a.path).contains(&sb)
        || blockdev::devices_below(&b.path).contains(&sa)
}

fn is_mapfile_family(role: Role) -> bool {
    matches!(role, Role::Mapfile | Role::MapfileCompanion)
}

fn refused(role: Role, w: &Node, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    Error::refused(&w.path, format!("{} {reason}", capitalize(role.describe())))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn check_not_mounted(role: Role, w: &Node) -> Result<()> {
    let mounts = blockdev::mount_points_of(&w.path)?;
    if let Some(m) = mounts.first() {
        return Err(refused(
            role,
            w,
            format!(
                "is in use: {} is mounted on {}{}; unmount it first",
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
    Ok(())
}

fn check_device_size(w: &Node, needed: u64) -> Result<()> {
    let file = std::fs::File::open(&w.path).map_err(|e| Error::io(&w.path, e))?;
    let size = crate::device::file::device_size(&file).map_err(|e| Error::io(&w.path, e))?;
    if size < needed {
        return Err(Error::refused(
            &w.path,
            format!(
                "it is too small: {} bytes ({}), {} bytes ({}) needed",
                size,
                crate::units::format_bytes(size),
                needed,
                crate::units::format_bytes(needed)
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Block,
    Dir,
    Other,
}

/// What the policy knows about one path.
#[derive(Debug)]
struct Node {
    path: PathBuf,
    /// `None` when it does not exist.
    kind: Option<Kind>,
    is_block_device: bool,
    is_dev_null: bool,
    /// The storage it is, when it exists.
    own: Option<Storage>,
    /// Canonical path (also for a path that does not exist yet).
    canonical: PathBuf,
    /// Everything writing it changes (itself included).
    storage: BTreeSet<Storage>,
}

/// How two paths overlap.
enum Overlap {
    Same,
    /// The second is stored on the first (a file on a disk, a loop device on its backing file).
    Holds,
    /// The first is stored on the second.
    StoredOn,
}

impl Overlap {
    /// Against a path the job reads; `is_source`: the first one, what is being rescued or imaged.
    fn describe_read(&self, read: &Path, is_source: bool) -> String {
        let what = if is_source {
            format!("{}, the source", read.display())
        } else {
            format!("{}, which this job reads", read.display())
        };
        match self {
            Overlap::Same => format!("is the same file or device as {what}"),
            Overlap::Holds => {
                format!("holds {what}: writing it would change what is being read")
            }
            Overlap::StoredOn => {
                format!("is stored on {what}: writing it would change what is being read")
            }
        }
    }

    fn describe(&self, other: &Path) -> String {
        match self {
            Overlap::Same => format!("is the same file or device as {}", other.display()),
            Overlap::Holds => format!("holds {} (writing one changes the other)", other.display()),
            Overlap::StoredOn => format!(
                "is stored on {} (writing one changes the other)",
                other.display()
            ),
        }
    }
}

impl Node {
    fn new(path: &Path) -> Node {
        let meta = std::fs::metadata(path).ok();
        let kind = meta.as_ref().map(|m| {
            let ft = m.file_type();
            if ft.is_block_device() {
                Kind::Block
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else {
                Kind::Other
            }
        });
        let is_dev_null = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3));
        Node {
            path: path.to_path_buf(),
            kind,
            is_block_device: kind == Some(Kind::Block),
            is_dev_null,
            own: Storage::of(path),
            canonical: canonical_path(path),
            storage: blockdev::storage_of(path),
        }
    }

    fn conflicts(&self, other: &Node) -> Option<Overlap> {
        if self.canonical == other.canonical {
            return Some(Overlap::Same);
        }
        match (self.own, other.own) {
            (Some(a), Some(b)) if a == b => Some(Overlap::Same),
            // What the other is lies below this one: this is stored on it.
            (_, Some(b)) if self.storage.contains(&b) => Some(Overlap::StoredOn),
            // This lies below the other: writing this changes it.
            (Some(a), _) if other.storage.contains(&a) => Some(Overlap::Holds),
            _ => None,
        }
    }
}

/// The absolute path `path` names, with every symlink followed (a dangling one to where it
/// points) and `.`/`..` resolved, whether or not it exists yet.
pub fn canonical_path(path: &Path) -> PathBuf {
    let resolved = crate::mapfile::resolve_symlinks(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(c) = std::fs::canonicalize(&resolved) {
        return c;
    }
    // Canonicalize the longest existing prefix, then apply the rest lexically.
    let absolute = if resolved.is_absolute() {
        resolved
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(resolved)
    };
    let comps: Vec<Component> = absolute.components().collect();
    for k in (1..=comps.len()).rev() {
        let prefix: PathBuf = comps[..k].iter().collect();
        if let Ok(mut out) = std::fs::canonicalize(&prefix) {
            for comp in &comps[k..] {
                match comp {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return out;
        }
    }
    absolute
}

/// Whether `path` (or, if it does not exist yet, its nearest existing directory) is on a
/// filesystem kept in memory (tmpfs, ramfs, the initramfs), which a power cut erases.
pub fn is_volatile(path: &Path) -> bool {
    let Some(dir) = path.ancestors().find(|a| a.exists()) else {
        return false;
    };
    match nix::sys::statfs::statfs(dir) {
        Ok(s) => {
            let t = s.filesystem_type();
            t == nix::sys::statfs::TMPFS_MAGIC
                // ramfs (and the initramfs' rootfs when it is ramfs)
                || t.0 as u64 == 0x8584_58f6
        }
        Err(_) => false,
    }
}

/// Another process that has `path` open for writing: (pid, command name). GNU ddrescue takes no
/// lock, but keeps its output open for the whole run; this is how a second tool on the same
/// destination is caught.
pub fn other_writer(path: &Path) -> Option<(u32, String)> {
    // Character devices (/dev/null as a sink) are written by everyone at once.
    if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device()) {
        return None;
    }
    let target = Storage::of(path)?;
    let me = std::process::id();
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if Storage::of(&fd.path()) != Some(target) {
                continue;
            }
            let flags = std::fs::read_to_string(p.path().join("fdinfo").join(fd.file_name()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
                });
            let writable = flags.is_some_and(|f| f & (libc::O_WRONLY | libc::O_RDWR) as u32 != 0);
            if writable {
                let comm = std::fs::read_to_string(p.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                return Some((pid, comm));
            }
        }
    }
    None
}

/// Whether two block devices are on the same whole disk (a disk and its partitions, or two
/// partitions of one disk).
pub fn same_disk(a: &Path, b: &Path) -> bool {
    matches!((whole_disk(a), whole_disk(b)), (Some(x), Some(y)) if x == y)
}

/// The kernel name of the whole disk a block device belongs to ("sda" for /dev/sda2).
fn whole_disk(dev: &Path) -> Option<String> {
    let meta = std::fs::metadata(dev).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    disk.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_do_not_exist_yet_are_compared_by_canonical_path() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        let out = t.path().join("out");
        let via_dots = t.path().join("sub/../out");
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let plan = Plan::new()
            .read(&src)
            .destination(&out, 4)
            .write(Role::Log, &via_dots);
        assert!(matches!(plan.check(), Err(Error::Refused { .. })));
        // The mapfile's own temporary file as the destination.
        let plan = Plan::new()
            .read(&src)
            .destination(t.path().join("map.tmp"), 4)
            .mapfile(&t.path().join("map"));
        let err = plan.check().unwrap_err().to_string();
        assert!(err.contains("map.tmp"), "{err}");
        // A dangling symlink to the destination.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let plan = Plan::new().read(&src).destination(&out, 4).mapfile(&link);
        assert!(plan.check().is_err());
        // Distinct paths pass.
        let plan = Plan::new()
            .read(&src)
            .destination(&out, 4)
            .mapfile(&t.path().join("map"))
            .write(Role::Log, t.path().join("log"));
        plan.check().unwrap();
    }

    #[test]
    fn existing_files_are_compared_by_inode() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        let hard = t.path().join("hard");
        std::fs::hard_link(&src, &hard).unwrap();
        let plan = Plan::new()
            .read(&src)
            .destination(t.path().join("out"), 4)
            .write(Role::Log, &hard);
        let err = plan.check().unwrap_err().to_string();
        assert!(err.contains("log file"), "{err}");
        let plan = Plan::new().read(&src).mapfile(&hard);
        assert!(plan.check().is_err());
    }

    #[test]
    fn a_backup_left_hard_linked_to_the_mapfile_by_a_cut_save_is_fine() {
        let t = tempfile::tempdir().unwrap();
        let map = t.path().join("map");
        std::fs::write(&map, b"x").unwrap();
        std::fs::hard_link(&map, t.path().join("map.bak")).unwrap();
        Plan::new()
            .read("/etc/hostname")
            .destination(t.path().join("out"), 1)
            .mapfile(&map)
            .check()
            .unwrap();
        // ... but not the destination being that backup.
        let plan = Plan::new()
            .read("/etc/hostname")
            .destination(t.path().join("map.bak"), 1)
            .mapfile(&map);
        assert!(plan.check().is_err());
    }

    #[test]
    fn non_files_are_refused_by_role() {
        let t = tempfile::tempdir().unwrap();
        let plan = Plan::new().mapfile(t.path());
        assert!(plan.check().unwrap_err().to_string().contains("directory"));
        // /dev/null is a sink: always fine as a destination.
        Plan::new()
            .read("/etc/hostname")
            .destination("/dev/null", 1)
            .check()
            .unwrap();
    }

    #[test]
    fn dev_null_is_never_held_by_another_writer() {
        assert_eq!(other_writer(Path::new("/dev/null")), None);
    }

    #[test]
    fn canonical_paths_of_missing_files() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        assert_eq!(canonical_path(&t.path().join("a/../b")), base.join("b"));
        assert_eq!(canonical_path(&t.path().join("x/y")), base.join("x/y"));
    }
}
