//! Used-blocks imaging: which bytes of a disk an image stores.
//!
//! For each partition of the table (or a filesystem on the whole device when there is none), the
//! filesystem layer ([`crate::fs::probe`]) gives the allocated ranges; the rest of the partition
//! is *unallocated*: the image records it per partition ([`ImagedFs::unallocated`]) and stores
//! zeros there (nothing, once compressed). Everything outside partitions (the table areas, the
//! gaps between partitions, the GPT backup) is always stored, and so is a partition whose
//! filesystem is unknown or whose metadata does not add up ([`crate::fs::Allocation::Whole`]).

use super::format::{Hole, ImagedFs, PartitionTable};
use crate::device::Source;
use crate::error::{Error, Result};
use std::path::Path;

/// What [`plan`] found: one record per partition, and every unallocated range of the disk
/// (sorted, merged, absolute).
#[derive(Debug, Clone, Default)]
pub struct UsedPlan {
    pub filesystems: Vec<ImagedFs>,
    pub unallocated: Vec<(u64, u64)>,
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
            reason,
            warnings: report.warnings.clone(),
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
    out.unallocated.sort_unstable();
    Ok(out)
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
