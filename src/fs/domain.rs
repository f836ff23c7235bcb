//! A whole disk's wanted bytes, as a GNU ddrescue domain: the partition tables (both GPT copies)
//! plus, per partition, its filesystem's metadata or its metadata and allocated data
//! (`salvor domain`).

use super::vol::Ranges;
use super::FsReport;
use crate::device::Source;
use crate::error::Result;

/// Which bytes of each filesystem the domain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainMode {
    /// Only the filesystems' metadata (superblocks, bitmaps, inode tables, FATs, directories...).
    Metadata,
    /// Metadata and allocated file data.
    Used,
}

/// The wanted byte ranges of a disk.
#[derive(Debug, Clone)]
pub struct DiskDomain {
    /// Size of the disk.
    pub size: u64,
    /// Absolute `[start, end)` ranges, sorted and merged.
    pub ranges: Vec<(u64, u64)>,
    /// Each probed filesystem, with its partition number (0: the whole device).
    pub filesystems: Vec<(u32, FsReport)>,
    /// Things the user should know (partitions included whole, and why).
    pub notes: Vec<String>,
}

/// GPT's backup: the header in the last sector and 32 sectors of entries before it (the usual
/// 128 entries of 128 bytes; more entries sit inside the unpartitioned tail anyway).
const GPT_BACKUP_SECTORS: u64 = 33;

/// Computes the domain of `src`: reads the partition table and probes every partition.
pub fn disk_domain(src: &mut dyn Source, mode: DomainMode) -> Result<DiskDomain> {
    let g = src.geometry();
    let (size, ss) = (g.size, u64::from(g.logical_sector.max(512)));
    let table = crate::image::restore::read_table(src, g.logical_sector, size)?;
    let mut out = Ranges::new();
    let mut notes = Vec::new();
    let mut filesystems = Vec::new();
    let mut parts: Vec<(u32, u64, u64, bool)> = Vec::new();
    match &table {
        None => parts.push((0, 0, size, false)),
        Some(t) => {
            for p in &t.partitions {
                let start = p.first_lba.saturating_mul(ss).min(size);
                let end = start.saturating_add(p.size).min(size);
                let extended = matches!(p.type_id.as_str(), "0x05" | "0x0F" | "0x85");
                parts.push((p.number, start, end, extended));
            }
            // The table itself and what sits before the first partition (boot loader gaps).
            let first = parts.iter().map(|p| p.1).min().unwrap_or(size);
            out.add(0, first.max(ss).min(size));
            if t.kind == "gpt" {
                out.add(size.saturating_sub(GPT_BACKUP_SECTORS * ss), size);
            }
        }
    }
    for (number, start, end, extended) in parts {
        if extended {
            // Logical partitions and their EBR chain: not listed by the table summary.
            notes.push(format!(
                "partition {number}: extended partition; included whole"
            ));
            out.add(start, end);
            continue;
        }
        let r = super::probe(src, start..end)?;
        if let Some(reason) = r.whole_reason() {
            notes.push(format!(
                "partition {number} ({}): included whole: {reason}",
                r.kind
            ));
            out.add(start, end);
        } else {
            let v = match mode {
                DomainMode::Metadata => r.metadata.clone(),
                DomainMode::Used => r.allocated(),
            };
            for (s, e) in v {
                out.add(s, e);
            }
        }
        for w in &r.warnings {
            notes.push(format!("partition {number} ({}): {w}", r.kind));
        }
        filesystems.push((number, r));
    }
    Ok(DiskDomain {
        size,
        ranges: out.finish(),
        filesystems,
        notes,
    })
}

/// The domain as a ddrescue mapfile: its ranges finished (`+`), the rest non-tried (`?`).
pub fn domain_mapfile(d: &DiskDomain) -> crate::mapfile::Mapfile {
    let mut m = crate::mapfile::Mapfile::new(d.size);
    for &(s, e) in &d.ranges {
        m.set(s, e - s, crate::mapfile::BlockStatus::Finished);
    }
    m.phase = crate::mapfile::Phase::Finished;
    m
}
