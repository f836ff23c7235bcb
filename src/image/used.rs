//! Used-blocks imaging: which bytes of a disk an image stores.
//!
//! For each partition of the table (or a filesystem on the whole device when there is none), the
//! filesystem layer ([`crate::fs::probe`]) gives the allocated ranges; the rest of the partition
//! is *unallocated*: the image records it per partition ([`ImagedFs::unallocated`]) and stores
//! zeros there (nothing, once compressed). A partition whose filesystem is unknown or whose
//! metadata does not add up ([`crate::fs::Allocation::Whole`]) is stored whole, and so is a
//! volume that was not closed cleanly (dirty, a journal to replay, Windows hibernated on it):
//! its on-disk maps may miss what the unfinished state allocated. Never a refusal, a warning.
//!
//! Outside the partitions, what the partition table and the boot code need is stored: the MBR
//! and primary GPT (on an MBR disk everything before the first partition, where boot loaders
//! live), the backup GPT, and the insides of MBR extended containers (their EBRs). The rest — gaps between
//! partitions and the space after the last one — belongs to no filesystem, as for Clonezilla, and
//! is not stored ([`UsedPlan::unpartitioned`]), unless a filesystem signature starts there (a
//! deleted or unlisted partition), which is stored with a warning. `--all-blocks` keeps it all.

use super::format::{Hole, ImagedFs, PartitionTable};
use crate::device::Source;
use crate::error::{Error, Result};
use std::path::Path;

/// What [`plan`] found: one record per partition, and every unallocated range of the disk
/// (sorted, merged, absolute).
#[derive(Debug, Clone, Default)]
pub struct UsedPlan {
    pub filesystems: Vec<ImagedFs>,
    /// Everything not stored: the filesystems' unallocated ranges and [`Self::unpartitioned`].
    pub unallocated: Vec<(u64, u64)>,
    /// Space outside every partition that is not stored (absolute, sorted).
    pub unpartitioned: Vec<(u64, u64)>,
    /// Why some space outside the partitions was stored after all.
    pub warnings: Vec<String>,
}

/// Probes every partition of `table` (extended MBR containers excepted), or the whole device
/// without a table. `size` is the imaged size; probing reads only below `src`'s own size.
pub fn plan(
    src: &mut dyn Source,
    name: &Path,
    table: Option<&PartitionTable>,
    size: u64,
) -> Result<UsedPlan> {
    let ss = u64::from(src.geometry().logical_sector.max(1));
    let readable_end = src.geometry().size.min(size);
    let mut parts: Vec<(u32, u64, u64)> = Vec::new();
    match table {
        None => parts.push((0, 0, size)),
        Some(t) => {
            for p in &t.partitions {
                if p.extended {
                    continue;
                }
                let start = p.first_lba.saturating_mul(ss);
                let end = start.saturating_add(p.size).min(size);
                if start < end {
                    parts.push((p.number, start, end));
                }
            }
        }
    }
    let mut out = UsedPlan::default();
    for (number, start, end) in parts {
        let probe_end = end.min(readable_end);
        let report = match crate::fs::probe(src, start..probe_end) {
            Ok(r) => r,
            Err(e) if e.is_gone() => {
                return Err(Error::DeviceGone {
                    path: name.to_path_buf(),
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                return Err(Error::io(
                    name,
                    std::io::Error::other(format!("reading filesystem metadata: {e}")),
                ))
            }
        };
        let mut reason = report.whole_reason().map(str::to_string);
        // Like partclone's raw fallback, but never a refusal: a volume that was not closed
        // cleanly is imaged whole, with the filesystem's own warning.
        if reason.is_none() {
            reason = report
                .unclean()
                .map(|w| format!("{w}; its allocation maps may be out of date"));
        }
        if reason.is_none() && probe_end < end {
            reason = Some("the source is shorter than the partition".into());
        }
        let unalloc = match (&reason, &report.allocation) {
            (None, crate::fs::Allocation::Ranges(r)) => complement(r, start, end),
            _ => Vec::new(),
        };
        let free: u64 = unalloc.iter().map(|r| r.1 - r.0).sum();
        out.unallocated.extend_from_slice(&unalloc);
        out.filesystems.push(ImagedFs {
            partition: number,
            kind: report.kind.to_string(),
            start,
            size: end - start,
            label: report.label.clone(),
            uuid: report.uuid.clone(),
            total_bytes: report.total_bytes,
            used_bytes: report.used_bytes,
            mode: if reason.is_some() { "whole" } else { "used" }.into(),
            // The reason already says it when the volume is imaged whole for being unclean.
            warnings: report
                .warnings
                .iter()
                .filter(|w| reason.as_deref().is_none_or(|r| !r.starts_with(w.as_str())))
                .cloned()
                .collect(),
            reason,
            unallocated: unalloc
                .iter()
                .map(|&(s, e)| Hole {
                    offset: s,
                    size: e - s,
                })
                .collect(),
            stored_bytes: (end - start) - free,
        });
    }
    if let Some(t) = table {
        unpartitioned(src, name, t, ss, size, &mut out)?;
    }
    out.unallocated.sort_unstable();
    Ok(out)
}

/// Finds the space outside the partitions that need not be stored (see the module doc) and adds
/// it to `out`.
fn unpartitioned(
    src: &mut dyn Source,
    name: &Path,
    table: &PartitionTable,
    ss: u64,
    size: u64,
    out: &mut UsedPlan,
) -> Result<()> {
    // Partitions and extended containers, as byte ranges: all of them are kept out of the gaps.
    let mut taken: Vec<(u64, u64)> = table
        .partitions
        .iter()
        .map(|p| {
            let s = p.first_lba.saturating_mul(ss).min(size);
            (s, s.saturating_add(p.size).min(size))
        })
        .filter(|r| r.0 < r.1)
        .collect();
    taken.sort_unstable();
    let Some(first) = taken.first().map(|r| r.0) else {
        return Ok(());
    };
    // The end of what must be stored at the disk's end: the backup GPT's entry array, found
    // through the backup header itself; without a readable one, nothing after the last
    // partition is dropped.
    let keep_from = if table.kind == "gpt" {
        backup_gpt_start(src, ss, size).unwrap_or(0)
    } else {
        size
    };
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for r in taken {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    // Before the first partition: a GPT needs only its header and entry array (the rest of the
    // alignment gap is unused by the specification; BIOS boot code lives in a BIOS boot
    // partition); on an MBR disk boot loaders live in that gap, so all of it is kept.
    let keep_to = if table.kind == "gpt" {
        primary_gpt_end(src, ss, size).map_or(first, |e| e.min(first))
    } else {
        first
    };
    let mut gaps = complement(&merged, keep_to, size);
    if let Some(last) = gaps.last_mut() {
        if last.1 == size {
            last.1 = last.1.min(keep_from.max(last.0));
        }
    }
    gaps.retain(|g| g.0 < g.1);
    'gaps: for (s, e) in gaps {
        // A filesystem where a deleted partition would have started (the gap's start, or the
        // next MiB boundary partitioning tools align to) keeps the whole gap.
        const MIB: u64 = 1 << 20;
        let aligned = s.div_ceil(MIB) * MIB;
        for at in [s, aligned] {
            if at >= e {
                continue;
            }
            match crate::fs::probe(src, at..e) {
                Ok(r) if r.kind != crate::fs::FsKind::Unknown => {
                    out.warnings.push(format!(
                        "{} outside every partition at byte {s} holds a filesystem ({}) at byte \
                         {at}: stored whole",
                        crate::units::format_bytes(e - s),
                        r.kind
                    ));
                    continue 'gaps;
                }
                Err(err) if err.is_gone() => {
                    return Err(Error::DeviceGone {
                        path: name.to_path_buf(),
                        reason: err.to_string(),
                    })
                }
                _ => {}
            }
            if aligned == s {
                break;
            }
        }
        out.unpartitioned.push((s, e));
        out.unallocated.push((s, e));
    }
    Ok(())
}

/// Where the primary GPT's entry array ends (bytes, rounded up to a sector), from its header.
fn primary_gpt_end(src: &mut dyn Source, ss: u64, size: u64) -> Option<u64> {
    let h = crate::fs::vol::Vol::new(src, 0, size)
        .read_vec(ss, ss)
        .ok()?;
    if h.len() < 92 || &h[0..8] != b"EFI PART" {
        return None;
    }
    let array_lba = u64::from_le_bytes(h[72..80].try_into().ok()?);
    let entries = u64::from(u32::from_le_bytes(h[80..84].try_into().ok()?));
    let entry_size = u64::from(u32::from_le_bytes(h[84..88].try_into().ok()?));
    let end = array_lba
        .checked_mul(ss)?
        .checked_add(entries.checked_mul(entry_size)?)?;
    Some(end.div_ceil(ss) * ss)
}

/// Where the backup GPT's entry array starts (bytes), from the backup header in the last sector.
fn backup_gpt_start(src: &mut dyn Source, ss: u64, size: u64) -> Option<u64> {
    let last = (size / ss).checked_sub(1)? * ss;
    let h = crate::fs::vol::Vol::new(src, 0, size)
        .read_vec(last, ss)
        .ok()?;
    if h.len() < 92 || &h[0..8] != b"EFI PART" {
        return None;
    }
    let array_lba = u64::from_le_bytes(h[72..80].try_into().ok()?);
    let start = array_lba.checked_mul(ss)?;
    (start <= last).then_some(start)
}

/// One line for the output: the partition, its filesystem, what was stored and why.
pub fn describe(f: &ImagedFs) -> String {
    use crate::units::format_bytes;
    let part = if f.partition == 0 {
        "whole device".to_string()
    } else {
        format!("partition {}", f.partition)
    };
    let label = f
        .label
        .as_ref()
        .map(|l| format!(" \"{l}\""))
        .unwrap_or_default();
    let mut line = match &f.reason {
        Some(r) => format!(
            "{part}: {}{label}, imaged whole ({}): {r}",
            f.kind,
            format_bytes(f.size)
        ),
        None => format!(
            "{part}: {}{label}, storing the {} it uses of {}",
            f.kind,
            format_bytes(f.stored_bytes),
            format_bytes(f.size)
        ),
    };
    for w in &f.warnings {
        line += &format!("; warning: {w}");
    }
    line
}

/// `[start, end)` minus the sorted, merged `ranges`.
pub fn complement(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(s, e) in ranges {
        let (s, e) = (s.clamp(start, end), e.clamp(start, end));
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// Sorted, non-overlapping `a` minus sorted, non-overlapping `b`.
pub fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, e) in a {
        let mut at = s;
        while j < b.len() && b[j].1 <= at {
            j += 1;
        }
        let mut k = j;
        while at < e {
            match b.get(k) {
                Some(&(bs, be)) if bs < e => {
                    if bs > at {
                        out.push((at, bs));
                    }
                    at = at.max(be);
                    k += 1;
                }
                _ => {
                    out.push((at, e));
                    break;
                }
            }
        }
    }
    out
}

/// Bytes of `ranges` (sorted, non-overlapping) inside `[s, e)`.
pub fn overlap(ranges: &[(u64, u64)], s: u64, e: u64) -> u64 {
    let first = ranges.partition_point(|r| r.1 <= s);
    ranges[first..]
        .iter()
        .take_while(|r| r.0 < e)
        .map(|r| r.1.min(e) - r.0.max(s))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_arithmetic() {
        assert_eq!(
            complement(&[(10, 20), (30, 40)], 0, 50),
            vec![(0, 10), (20, 30), (40, 50)]
        );
        assert_eq!(complement(&[(0, 50)], 0, 50), vec![]);
        assert_eq!(complement(&[], 5, 9), vec![(5, 9)]);
        assert_eq!(
            subtract(&[(0, 100)], &[(10, 20), (30, 40)]),
            vec![(0, 10), (20, 30), (40, 100)]
        );
        assert_eq!(
            subtract(&[(0, 15), (18, 35)], &[(10, 20), (30, 40)]),
            vec![(0, 10), (20, 30)]
        );
        assert_eq!(subtract(&[(0, 5)], &[]), vec![(0, 5)]);
        assert_eq!(overlap(&[(0, 10), (20, 30)], 5, 25), 10);
    }
}
