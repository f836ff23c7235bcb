//! Which files a partial rescue damaged (`salvor files`).
//!
//! The rescued copy is read through [`Rescued`], a [`Source`] whose reads fail on every byte the
//! mapfile does not mark finished: the copy holds zeros there, which must never be taken for
//! metadata. Each filesystem's walker (`ext`, `fat`, `exfat`, `ntfs`) goes through the directory tree, maps every
//! file to its physical extents and reports the file offsets that fall in unrescued bytes, the
//! directories whose entries are unknown, and the in-use inodes no directory reached ("files whose
//! names are lost"). Every loop is bounded by the filesystem's own size, never by a count read
//! from the metadata; a hostile or damaged structure ends that part of the walk with a note.

pub mod btrfs;
pub mod exfat;
pub mod ext;
pub mod fat;
pub mod ntfs;
pub mod xfs;

use super::vol::Ranges;
use crate::device::{Geometry, ReadFault, ReadOutcome, Source};
use crate::mapfile::{BlockStatus, Mapfile};
use serde::Serialize;

/// The rescued copy, seen through the mapfile: bytes not finished read as I/O errors.
pub struct Rescued<'a> {
    inner: &'a mut dyn Source,
    /// Absolute `[start, end)` ranges not rescued, sorted.
    bad: Vec<(u64, u64)>,
}

impl<'a> Rescued<'a> {
    pub fn new(inner: &'a mut dyn Source, map: &Mapfile) -> Rescued<'a> {
        let size = inner.geometry().size;
        let mut bad: Vec<(u64, u64)> = map
            .blocks()
            .iter()
            .filter(|b| b.status != BlockStatus::Finished)
            .map(|b| (b.pos, b.end()))
            .collect();
        // Bytes past the mapfile's end were never rescued either.
        if map.end() < size {
            bad.push((map.end(), size));
        }
        Rescued { inner, bad }
    }

    pub fn bad(&self) -> &[(u64, u64)] {
        &self.bad
    }
}

impl Source for Rescued<'_> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        let end = pos.saturating_add(buf.len() as u64);
        let i = self.bad.partition_point(|r| r.1 <= pos);
        let stop = match self.bad.get(i) {
            Some(&(s, _)) if s <= pos => {
                return ReadOutcome {
                    good: 0,
                    fault: Some(ReadFault::classify(std::io::Error::from_raw_os_error(
                        libc::EIO,
                    ))),
                }
            }
            Some(&(s, _)) if s < end => (s - pos) as usize,
            _ => buf.len(),
        };
        let out = self.inner.read_at(pos, &mut buf[..stop]);
        if out.fault.is_none() && out.good == stop && stop < buf.len() {
            return ReadOutcome {
                good: stop,
                fault: Some(ReadFault::classify(std::io::Error::from_raw_os_error(
                    libc::EIO,
                ))),
            };
        }
        out
    }
    fn describe(&self) -> String {
        format!("{} (rescued bytes only)", self.inner.describe())
    }
}

/// A file with bytes that were not rescued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedFile {
    /// Path from the filesystem's root ("/dir/file"); files whose name is lost are named
    /// "<inode N>" / "<cluster N>".
    pub path: String,
    pub size: u64,
    /// Bytes of the file not rescued.
    pub lost_bytes: u64,
    /// The lost `[start, end)` ranges as offsets in the file.
    pub lost: Vec<(u64, u64)>,
    /// Set when where the file's data lies is itself unknown (its inode, block map or chain was
    /// not rescued): `lost` then covers what cannot be located.
    pub unlocated: Option<String>,
}

/// A directory whose entries are (partly) unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedDir {
    pub path: String,
    pub reason: String,
}

/// One filesystem's damage.
#[derive(Debug, Clone, Serialize)]
pub struct FsFiles {
    /// Partition number, 0 for the whole device.
    pub partition: u32,
    pub kind: super::FsKind,
    pub start: u64,
    pub size: u64,
    /// Files (and directories) looked at.
    pub files_checked: u64,
    pub damaged_files: Vec<DamagedFile>,
    pub damaged_dirs: Vec<DamagedDir>,
    /// In-use inodes (MFT records) that no directory reached: their names are lost.
    pub lost_names: u64,
    /// In-use inodes that could not be read at all.
    pub unreadable_inodes: u64,
    /// Unrescued bytes in the partition.
    pub unrescued_bytes: u64,
    /// Of those, in the filesystem's metadata.
    pub unrescued_metadata: Option<u64>,
    /// Of those, in free space (None when the allocation could not be read).
    pub unrescued_free: Option<u64>,
    /// Why the walk could not run, or stopped.
    pub error: Option<String>,
    pub notes: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct FilesReport {
    pub size: u64,
    pub unrescued_bytes: u64,
    pub filesystems: Vec<FsFiles>,
    pub notes: Vec<String>,
}

/// What a walker produces, and the bad ranges it checks extents against.
pub struct Collector {
    /// Partition-relative bad ranges (sorted).
    bad: Vec<(u64, u64)>,
    pub checked: u64,
    pub files: Vec<DamagedFile>,
    pub dirs: Vec<DamagedDir>,
    pub notes: Vec<String>,
    pub lost_names: u64,
    pub unreadable_inodes: u64,
}

/// At most this many notes are kept (a wrecked filesystem would give millions).
const MAX_NOTES: usize = 200;

impl Collector {
    fn new(bad_abs: &[(u64, u64)], start: u64, len: u64) -> Collector {
        let end = start + len;
        let bad = bad_abs
            .iter()
            .filter(|r| r.1 > start && r.0 < end)
            .map(|&(s, e)| (s.max(start) - start, e.min(end) - start))
            .collect();
        Collector {
            bad,
            checked: 0,
            files: Vec::new(),
            dirs: Vec::new(),
            notes: Vec::new(),
            lost_names: 0,
            unreadable_inodes: 0,
        }
    }

    /// A directory at `path` whose inode `ino` was not rescued: its entries are unknown.
    pub fn unreadable_dir(&mut self, path: &str, ino: u64) {
        self.unreadable_inodes += 1;
        self.dirs.push(DamagedDir {
            path: path.to_string(),
            reason: format!("its inode {ino} was not rescued: its entries are unknown"),
        });
    }

    pub fn note(&mut self, s: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(s);
        }
    }

    /// The parts of the partition range `[s, e)` not rescued.
    pub fn bad_in(&self, s: u64, e: u64) -> Vec<(u64, u64)> {
        let i = self.bad.partition_point(|r| r.1 <= s);
        self.bad[i..]
            .iter()
            .take_while(|r| r.0 < e)
            .map(|&(a, b)| (a.max(s), b.min(e)))
            .collect()
    }

    /// Reports a file given its extents: (file offset, partition offset, length), each
    /// already clipped to the file's size by the caller. `unlocated` are file ranges whose
    /// place is unknown.
    pub fn file(
        &mut self,
        path: &str,
        size: u64,
        extents: &[(u64, u64, u64)],
        unlocated: Vec<(u64, u64)>,
        why: Option<String>,
    ) {
        self.checked += 1;
        let mut lost = Ranges::new();
        for &(fo, po, len) in extents {
            for (s, e) in self.bad_in(po, po.saturating_add(len)) {
                lost.add(fo + (s - po), fo + (e - po));
            }
        }
        for (s, e) in unlocated {
            lost.add(s, e);
        }
        let lost = lost.finish();
        if lost.is_empty() && why.is_none() {
            return;
        }
        self.files.push(DamagedFile {
            path: path.to_string(),
            size,
            lost_bytes: Ranges::total(&lost),
            lost,
            unlocated: why,
        });
    }
}

/// Reads the filesystems of `src` (the rescued copy) with `map`'s unrescued bytes unknown.
pub fn report(src: &mut dyn Source, map: &Mapfile) -> crate::Result<FilesReport> {
    let mut r = Rescued::new(src, map);
    let size = r.geometry().size;
    let bad = r.bad().to_vec();
    let ss = r.geometry().logical_sector;
    let mut notes = Vec::new();
    // A partition table that was not rescued: the whole device is read as one filesystem.
    let table = match crate::image::restore::read_table(&mut r, ss, size) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!(
                "partition table unknown ({e}); the whole device is read"
            ));
            None
        }
    };
    let ss = u64::from(ss.max(512));
    let parts: Vec<(u32, u64, u64)> = match &table {
        None => vec![(0, 0, size)],
        Some(t) => t
            .partitions
            .iter()
            .filter(|p| !matches!(p.type_id.as_str(), "0x05" | "0x0F" | "0x85"))
            .map(|p| {
                let s = p.first_lba.saturating_mul(ss).min(size);
                (p.number, s, s.saturating_add(p.size).min(size))
            })
            .collect(),
    };
    let mut out = Vec::new();
    for (number, start, end) in parts {
        out.push(one(&mut r, &bad, number, start, end)?);
    }
    Ok(FilesReport {
        size,
        unrescued_bytes: Ranges::total(&bad),
        filesystems: out,
        notes,
    })
}

fn one(
    r: &mut Rescued,
    bad: &[(u64, u64)],
    number: u32,
    start: u64,
    end: u64,
) -> crate::Result<FsFiles> {
    let len = end - start;
    let probe = super::probe(r, start..end)?;
    let mut c = Collector::new(bad, start, len);
    let unrescued: u64 = c.bad.iter().map(|r| r.1 - r.0).sum();
    let abs_bad: Vec<(u64, u64)> = c.bad.iter().map(|&(s, e)| (s + start, e + start)).collect();
    let inter = |set: &[(u64, u64)]| -> u64 {
        abs_bad
            .iter()
            .map(|&(s, e)| {
                let i = set.partition_point(|x| x.1 <= s);
                set[i..]
                    .iter()
                    .take_while(|x| x.0 < e)
                    .map(|x| x.1.min(e) - x.0.max(s))
                    .sum::<u64>()
            })
            .sum()
    };
    let unrescued_free = match &probe.allocation {
        super::Allocation::Ranges(a) => Some(unrescued - inter(a)),
        super::Allocation::Whole { .. } => None,
    };
    let unrescued_metadata = (!probe.metadata.is_empty()).then(|| inter(&probe.metadata));
    let mut vol = super::vol::Vol::new(r, start, len);
    use super::FsKind as K;
    let walked = match probe.kind {
        K::Ext2 | K::Ext3 | K::Ext4 => ext::walk(&mut vol, &mut c),
        K::Fat12 | K::Fat16 | K::Fat32 => fat::walk(&mut vol, &mut c),
        K::Exfat => exfat::walk(&mut vol, &mut c),
        K::Ntfs => ntfs::walk(&mut vol, &mut c),
        K::Xfs => xfs::walk(&mut vol, &mut c),
        K::Btrfs => btrfs::walk(&mut vol, &mut c),
        ref k => Err(super::Error::Unsupported(format!(
            "no file reader for {k} yet"
        ))),
    };
    let error = match walked {
        Ok(()) => None,
        Err(e) if e.is_gone() => return Err(e.into()),
        Err(e) => Some(e.to_string()),
    };
    Ok(FsFiles {
        partition: number,
        kind: probe.kind,
        start,
        size: len,
        files_checked: c.checked,
        damaged_files: c.files,
        damaged_dirs: c.dirs,
        lost_names: c.lost_names,
        unreadable_inodes: c.unreadable_inodes,
        unrescued_bytes: unrescued,
        unrescued_metadata,
        unrescued_free,
        error,
        notes: c.notes,
    })
}
