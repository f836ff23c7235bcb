//! The filesystem layer: which bytes of a partition a filesystem uses.
//!
//! [`probe`] looks at a byte range of a [`Source`] (a partition, or a whole disk without a
//! partition table), recognizes the filesystem and reads its allocation metadata — ext2/3/4 block
//! bitmaps, the FAT, the exFAT allocation bitmap, NTFS's `$Bitmap`, XFS's free-space B+trees,
//! btrfs's extent tree —
//! into the *allocated* byte ranges, which it cross-checks against the filesystem's own counts. It also lists the
//! filesystem's *metadata* ranges (superblocks, descriptors, bitmaps, inode tables, FATs, root
//! directories, `$MFT`...), which a metadata-first rescue reads before anything else.
//!
//! The rule: a byte the filesystem may need is never left out. A filesystem it does not know,
//! metadata that does not parse, or counts that do not add up give [`Allocation::Whole`] with
//! the reason (an ext journal that still has to be replayed adds its logged bitmaps instead). A dirty volume gives a warning (and
//! ranges when its metadata is consistent). Bytes of the partition past the filesystem's end are
//! kept (NTFS keeps its backup boot sector there; RAID and volume managers keep metadata at the
//! end of a partition). Swap keeps only its header page.
//!
//! Everything is read through [`Source`] only (read-only, bounded to the partition); parsers
//! never trust a count to size an allocation or a loop without checking it against the
//! partition first, and hostile metadata gives an [`Error`], never a panic.

pub mod btrfs;
pub mod domain;
pub mod exfat;
pub mod ext;
pub mod fat;
pub mod files;
pub mod ntfs;
pub mod vol;
pub mod xfs;

use crate::device::Source;
use serde::Serialize;
use std::fmt;
use vol::{Ranges, Vol};

/// What the layer found in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Fat12,
    Fat16,
    Fat32,
    Exfat,
    Ntfs,
    Xfs,
    Btrfs,
    Swap,
    /// A BitLocker-encrypted volume (its content cannot be interpreted without the key).
    Bitlocker,
    /// Recognized by its magic (`blockdev::fstype` names it: xfs, btrfs, crypto_LUKS...), but
    /// there is no allocation parser for it.
    Other(String),
    /// Nothing recognized.
    Unknown,
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::Exfat => "exfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
            FsKind::Bitlocker => "bitlocker",
            FsKind::Other(s) => s,
            FsKind::Unknown => "unknown",
        })
    }
}

/// Which bytes of the partition hold data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    /// Absolute byte ranges, sorted and merged; everything else is free.
    Ranges(Vec<(u64, u64)>),
    /// Use the whole partition, for this reason.
    Whole { reason: String },
}

/// The filesystem of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsReport {
    pub kind: FsKind,
    /// The partition: absolute start and length in bytes.
    pub start: u64,
    pub size: u64,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Allocation unit (ext block or bigalloc cluster, FAT/exFAT/NTFS cluster); 0 when unknown.
    pub block_size: u32,
    /// Size of the filesystem by its own metadata (the partition's size when unknown).
    pub total_bytes: u64,
    /// Bytes in use by the filesystem's own counts (total minus free), when it has them.
    pub used_bytes: Option<u64>,
    pub allocation: Allocation,
    /// Absolute byte ranges of the filesystem's metadata, sorted and merged (a subset of the
    /// allocated ranges); empty when unknown.
    pub metadata: Vec<(u64, u64)>,
    pub warnings: Vec<String>,
}

impl FsReport {
    /// The byte ranges to read: the allocated ranges, or the whole partition.
    pub fn allocated(&self) -> Vec<(u64, u64)> {
        match &self.allocation {
            Allocation::Ranges(r) => r.clone(),
            Allocation::Whole { .. } if self.size > 0 => vec![(self.start, self.start + self.size)],
            Allocation::Whole { .. } => Vec::new(),
        }
    }

    /// How many bytes [`FsReport::allocated`] covers.
    pub fn allocated_bytes(&self) -> u64 {
        match &self.allocation {
            Allocation::Ranges(r) => Ranges::total(r),
            Allocation::Whole { .. } => self.size,
        }
    }

    pub fn whole_reason(&self) -> Option<&str> {
        match &self.allocation {
            Allocation::Whole { reason } => Some(reason),
            Allocation::Ranges(_) => None,
        }
    }

    /// The warning saying the volume was not cleanly closed (marked dirty, a journal awaiting
    /// replay, Windows hibernated on it): its on-disk allocation may not be the whole truth, so
    /// an image keeps all of it.
    pub fn unclean(&self) -> Option<&str> {
        self.warnings
            .iter()
            .find(|w| {
                w.contains("marked dirty")
                    || w.contains("journal needs recovery")
                    || w.contains("Windows is hibernated")
            })
            .map(String::as_str)
    }
}

/// What `salvor info` shows of a partition's filesystem (a report without its range lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsSummary {
    /// The partition number, 0 for a filesystem on the whole device.
    pub partition: u32,
    pub kind: FsKind,
    pub start: u64,
    pub size: u64,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub block_size: u32,
    pub total_bytes: u64,
    pub used_bytes: Option<u64>,
    /// Bytes a used-blocks image reads: the allocated ranges, or the whole partition.
    pub allocated_bytes: u64,
    /// Set when the whole partition is used, and why.
    pub whole: Option<String>,
    pub warnings: Vec<String>,
}

impl FsReport {
    pub fn summary(&self, partition: u32) -> FsSummary {
        FsSummary {
            partition,
            kind: self.kind.clone(),
            start: self.start,
            size: self.size,
            label: self.label.clone(),
            uuid: self.uuid.clone(),
            block_size: self.block_size,
            total_bytes: self.total_bytes,
            used_bytes: self.used_bytes,
            allocated_bytes: self.allocated_bytes(),
            whole: self.whole_reason().map(str::to_string),
            warnings: self.warnings.clone(),
        }
    }
}

/// Why a parser gave up. [`probe`] turns all but a vanished device into [`Allocation::Whole`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source could not deliver metadata.
    #[error("metadata unreadable at byte {offset}: {fault}")]
    Read {
        offset: u64,
        fault: String,
        gone: bool,
    },
    /// Metadata that does not parse or points outside the filesystem.
    #[error("{0}")]
    Corrupt(String),
    /// Metadata that parses but does not add up (free counts, copies that differ).
    #[error("{0}")]
    Inconsistent(String),
    /// A valid filesystem using a feature this layer does not read.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Read { gone: true, .. })
    }
}

impl From<Error> for crate::Error {
    fn from(e: Error) -> crate::Error {
        match e {
            Error::Read {
                gone: true, fault, ..
            } => crate::Error::DeviceGone {
                path: "source".into(),
                reason: fault,
            },
            e => crate::Error::corrupt("filesystem", "metadata", e.to_string()),
        }
    }
}

/// What a parser found, in offsets relative to the partition.
#[derive(Debug, Default)]
pub struct Found {
    pub kind: Option<FsKind>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub block_size: u32,
    /// The filesystem's size by its metadata.
    pub fs_bytes: u64,
    pub used_bytes: Option<u64>,
    pub metadata: Vec<(u64, u64)>,
    /// The allocated ranges, or why they cannot be trusted.
    pub allocated: Option<Result<Vec<(u64, u64)>, String>>,
    pub warnings: Vec<String>,
}

/// Detects the filesystem in `range` (absolute byte offsets in `src`) and reads which bytes it
/// uses. Returns an error only when the device went away (retrying after it comes back helps);
/// everything else it cannot use ends in [`Allocation::Whole`] with the reason.
pub fn probe(src: &mut dyn Source, range: std::ops::Range<u64>) -> Result<FsReport, Error> {
    let dev_size = src.geometry().size;
    let start = range.start.min(dev_size);
    let end = range.end.min(dev_size).max(start);
    let mut warnings = Vec::new();
    if range.end > dev_size {
        warnings.push(format!(
            "the partition ends {} bytes past the end of the device",
            range.end - dev_size.max(range.start)
        ));
    }
    let size = end - start;
    let mut vol = Vol::new(src, start, size);
    // The first 8 KiB tell most filesystems; only then the whole probe area (btrfs keeps its
    // superblock at 64 KiB): a metadata-first rescue that reads what the probe asks for does
    // not read the file data that follows a small filesystem's first metadata.
    let head = match vol.read_vec(0, HEAD_FIRST.min(size)) {
        Ok(h) if matches!(detect(&h), FsKind::Unknown | FsKind::Swap) => {
            vol.read_vec(0, (fstype_probe_len() as u64).min(size))
        }
        // An unreadable sector after the boot sector and the ext superblock (a FAT sector that
        // the mirror has) must not hide the filesystem.
        Err(Error::Read { gone: false, .. }) if size >= HEAD_MIN => vol.read_vec(0, HEAD_MIN),
        r => r,
    };
    let head = match head {
        Ok(h) => h,
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => {
            return Ok(whole(
                FsKind::Unknown,
                start,
                size,
                warnings,
                format!("cannot read the start of the partition: {e}"),
            ))
        }
    };
    let kind = detect(&head);
    let result = match &kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext::analyze(&mut vol),
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => fat::analyze(&mut vol),
        FsKind::Exfat => exfat::analyze(&mut vol),
        FsKind::Ntfs => ntfs::analyze(&mut vol),
        FsKind::Xfs => xfs::analyze(&mut vol),
        FsKind::Btrfs => btrfs::analyze(&mut vol),
        FsKind::Swap => Ok(swap(&head, size)),
        FsKind::Bitlocker => {
            warnings.push("BitLocker-encrypted volume: its allocation cannot be read".into());
            return Ok(whole(
                kind,
                start,
                size,
                warnings,
                "BitLocker-encrypted volume".into(),
            ));
        }
        FsKind::Other(name) => {
            let reason = format!("no allocation reader for {name}");
            return Ok(whole(kind, start, size, warnings, reason));
        }
        FsKind::Unknown => {
            return Ok(whole(
                kind,
                start,
                size,
                warnings,
                "no known filesystem".into(),
            ))
        }
    };
    let found = match result {
        Ok(f) => f,
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => return Ok(whole(kind, start, size, warnings, e.to_string())),
    };
    Ok(report(found, kind, start, size, warnings))
}

/// Bytes read first to recognise a filesystem (see [`probe`]).
const HEAD_FIRST: u64 = 8192;
/// What recognising needs at least: the boot sector and the ext superblock.
const HEAD_MIN: u64 = 2048;

fn fstype_probe_len() -> usize {
    crate::blockdev::fstype::PROBE_LEN
}

/// The filesystem at the start of a volume, given its first bytes.
pub fn detect(head: &[u8]) -> FsKind {
    if head.get(3..11) == Some(b"-FVE-FS-") {
        return FsKind::Bitlocker;
    }
    match crate::blockdev::fstype::detect(head) {
        Some("ext2") => FsKind::Ext2,
        Some("ext3") => FsKind::Ext3,
        Some("ext4") => FsKind::Ext4,
        Some("vfat") => FsKind::Fat32, // refined by the FAT parser (by cluster count)
        Some("exfat") => FsKind::Exfat,
        Some("ntfs") => FsKind::Ntfs,
        Some("xfs") => FsKind::Xfs,
        Some("btrfs") => FsKind::Btrfs,
        Some("swap") => FsKind::Swap,
        Some(other) => FsKind::Other(other.to_string()),
        None => {
            // FAT volumes without the type label (some formatters leave it blank).
            if head.len() >= 512 && fat::looks_like_fat(&head[..512]) {
                FsKind::Fat32
            } else {
                FsKind::Unknown
            }
        }
    }
}

fn whole(kind: FsKind, start: u64, size: u64, warnings: Vec<String>, reason: String) -> FsReport {
    FsReport {
        kind,
        start,
        size,
        label: None,
        uuid: None,
        block_size: 0,
        total_bytes: size,
        used_bytes: None,
        allocation: Allocation::Whole { reason },
        metadata: Vec::new(),
        warnings,
    }
}

fn report(f: Found, kind: FsKind, start: u64, size: u64, mut warnings: Vec<String>) -> FsReport {
    warnings.extend(f.warnings);
    let abs = |v: &[(u64, u64)]| -> Vec<(u64, u64)> {
        v.iter()
            .map(|&(s, e)| (start + s.min(size), start + e.min(size)))
            .filter(|r| r.0 < r.1)
            .collect()
    };
    let allocation = match f.allocated {
        Some(Ok(ranges)) => {
            let mut r = Ranges::new();
            for (s, e) in abs(&ranges) {
                r.add(s, e);
            }
            // Bytes past the filesystem's end stay (see the module documentation).
            if f.fs_bytes < size {
                let slack = size - f.fs_bytes;
                if slack > 1 << 20 {
                    warnings.push(format!(
                        "{slack} bytes of the partition lie past the end of the filesystem; kept"
                    ));
                }
                r.add(start + f.fs_bytes, start + size);
            }
            Allocation::Ranges(r.finish())
        }
        Some(Err(reason)) => Allocation::Whole { reason },
        None => Allocation::Whole {
            reason: "allocation not read".into(),
        },
    };
    FsReport {
        kind: f.kind.unwrap_or(kind),
        start,
        size,
        label: f.label,
        uuid: f.uuid,
        block_size: f.block_size,
        total_bytes: if f.fs_bytes > 0 { f.fs_bytes } else { size },
        used_bytes: f.used_bytes,
        allocation,
        metadata: abs(&f.metadata),
        warnings,
    }
}

/// Swap holds no data worth keeping; only its header page (signature, UUID, label), so that a
/// restored partition is still found by the UUID in fstab.
fn swap(head: &[u8], size: u64) -> Found {
    // The signature ends the first page; its position gives the page size.
    let page = [4096usize, 8192, 16384, 65536]
        .into_iter()
        .find(|&p| {
            head.get(p - 10..p)
                .is_some_and(|m| m == b"SWAPSPACE2" || m == b"SWAP-SPACE")
        })
        .unwrap_or(4096) as u64;
    let label = head
        .get(0x41c..0x42c)
        .map(|b| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).into_owned())
        .filter(|s| !s.is_empty());
    let uuid = head.get(0x40c..0x41c).map(uuid_string);
    Found {
        kind: Some(FsKind::Swap),
        label,
        uuid,
        block_size: page as u32,
        fs_bytes: size,
        used_bytes: Some(0),
        metadata: vec![(0, page.min(size))],
        allocated: Some(Ok(vec![(0, page.min(size))])),
        warnings: Vec::new(),
    }
}

pub(crate) fn uuid_string(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if h.len() == 32 {
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    } else {
        h
    }
}

/// Decodes a UTF-16LE name, stopping at the first NUL.
pub(crate) fn utf16_name(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Geometry, ReadOutcome};

    struct Mem(Vec<u8>);

    impl Source for Mem {
        fn geometry(&self) -> Geometry {
            Geometry {
                size: self.0.len() as u64,
                logical_sector: 512,
                physical_sector: 512,
            }
        }
        fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
            let p = (pos as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - p);
            buf[..n].copy_from_slice(&self.0[p..p + n]);
            ReadOutcome::ok(n)
        }
        fn describe(&self) -> String {
            "mem".into()
        }
    }

    /// A source whose reads fail from `bad` on, as a media error or a vanished device.
    struct Failing(u64, bool);

    impl Source for Failing {
        fn geometry(&self) -> Geometry {
            Geometry {
                size: 1 << 20,
                logical_sector: 512,
                physical_sector: 512,
            }
        }
        fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
            let good = self.0.saturating_sub(pos).min(buf.len() as u64) as usize;
            buf[..good].fill(0);
            let err =
                std::io::Error::from_raw_os_error(if self.1 { libc::ENODEV } else { libc::EIO });
            ReadOutcome {
                good,
                fault: (good < buf.len()).then(|| crate::device::ReadFault::classify(err)),
            }
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    #[test]
    fn empty_and_tiny_partitions() {
        let mut m = Mem(vec![0u8; 4096]);
        let r = probe(&mut m, 0..0).expect("probe");
        assert_eq!(r.allocated(), vec![]);
        let r = probe(&mut m, 100..612).expect("probe");
        assert_eq!(r.kind, FsKind::Unknown);
        assert_eq!(r.allocated(), vec![(100, 612)]);
    }

    #[test]
    fn read_errors_give_whole_and_gone_is_an_error() {
        let r = probe(&mut Failing(0, false), 0..1 << 20).expect("probe");
        assert!(
            r.whole_reason().is_some_and(|w| w.contains("read")),
            "{r:?}"
        );
        assert!(probe(&mut Failing(0, true), 0..1 << 20).is_err());
    }
}
