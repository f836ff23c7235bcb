//! exFAT: the boot region, the root directory's allocation bitmap entry and the bitmap.
//!
//! Layout (from Microsoft's exFAT specification): the main boot region (12 sectors: boot sector,
//! 8 extended boot sectors, OEM parameters, a reserved sector and a checksum sector), the backup
//! boot region (12 more), the FAT at `FatOffset`, and the cluster heap at `ClusterHeapOffset`
//! (clusters numbered from 2). The root directory (a FAT chain from `FirstClusterOfRootDirectory`)
//! holds the allocation bitmap entry (one bit per cluster of the heap), the up-case table entry
//! and the volume label.
//!
//! Used: everything before the cluster heap, and every cluster set in the active bitmap.
//! Cross-checks: the boot region checksum, the bitmap's own clusters, the up-case table and the
//! root directory must be marked allocated, and `PercentInUse` (when set) must agree within one
//! point. Otherwise the partition is used whole.

use super::vol::{bitmap_runs, covered, le16, le32, le64, Ranges, Vol};
use super::{Error, Found, FsKind};

/// The boot sector fields this module uses.
#[derive(Debug, Clone)]
pub struct Boot {
    pub bytes_per_sector: u64,
    pub cluster_bytes: u64,
    pub volume_sectors: u64,
    pub fat_offset: u64,
    pub fat_length: u64,
    pub heap_offset: u64,
    pub clusters: u64,
    pub root_cluster: u64,
    pub serial: u32,
    pub flags: u16,
    pub fats: u8,
    pub percent_in_use: u8,
}

impl Boot {
    pub fn parse(s: &[u8]) -> Result<Boot, Error> {
        if s.get(3..11) != Some(b"EXFAT   ") {
            return Err(Error::Corrupt("no exFAT signature".into()));
        }
        if s[11..64].iter().any(|&b| b != 0) {
            return Err(Error::Corrupt(
                "exFAT boot sector: MustBeZero is not zero".into(),
            ));
        }
        let bps_shift = s[108] as u32;
        let spc_shift = s[109] as u32;
        if !(9..=12).contains(&bps_shift) || bps_shift + spc_shift > 25 {
            return Err(Error::Corrupt(format!(
                "invalid sector/cluster size shifts {bps_shift}/{spc_shift}"
            )));
        }
        let b = Boot {
            bytes_per_sector: 1 << bps_shift,
            cluster_bytes: 1 << (bps_shift + spc_shift),
            volume_sectors: le64(s, 72),
            fat_offset: le32(s, 80) as u64,
            fat_length: le32(s, 84) as u64,
            heap_offset: le32(s, 88) as u64,
            clusters: le32(s, 92) as u64,
            root_cluster: le32(s, 96) as u64,
            serial: le32(s, 100),
            flags: le16(s, 106),
            fats: s[110],
            percent_in_use: s[112],
        };
        let spc = 1u64 << spc_shift;
        if b.fats == 0 || b.fats > 2 || b.fat_offset < 24 || b.fat_length == 0 {
            return Err(Error::Corrupt("invalid exFAT FAT location".into()));
        }
        if b.heap_offset < b.fat_offset + b.fats as u64 * b.fat_length
            || b.clusters == 0
            || b.clusters > 0xffff_fff5
            || b.heap_offset + b.clusters * spc > b.volume_sectors
            || b.fat_length * b.bytes_per_sector < (b.clusters + 2) * 4
        {
            return Err(Error::Corrupt(
                "exFAT boot sector: FAT, heap and cluster count do not fit the volume".into(),
            ));
        }
        if b.root_cluster < 2 || b.root_cluster >= b.clusters + 2 {
            return Err(Error::Corrupt("root directory cluster out of range".into()));
        }
        Ok(b)
    }

    pub(crate) fn cluster_offset(&self, c: u64) -> u64 {
        self.heap_offset * self.bytes_per_sector + (c - 2) * self.cluster_bytes
    }
}

/// The boot region checksum over sectors 0–10 (VolumeFlags and PercentInUse excluded).
fn boot_checksum(region: &[u8], bps: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &b) in region[..11 * bps].iter().enumerate() {
        if i == 106 || i == 107 || i == 112 {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(b as u32);
    }
    sum
}

/// Follows the FAT chain from `start` (bounded by the cluster count).
fn chain(vol: &mut Vol, b: &Boot, start: u64, max: u64) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    let mut c = start;
    let fat = b.fat_offset * b.bytes_per_sector;
    let mut e = [0u8; 4];
    while (2..b.clusters + 2).contains(&c) {
        if out.len() as u64 >= max.min(b.clusters) {
            return Err(Error::Corrupt(format!(
                "the cluster chain from {start} is longer than its data or loops"
            )));
        }
        out.push(c);
        vol.read(fat + c * 4, &mut e)?;
        c = u32::from_le_bytes(e) as u64;
    }
    if c != 0xffff_ffff {
        return Err(Error::Corrupt(format!(
            "the cluster chain from {start} ends with {c:#x}"
        )));
    }
    Ok(out)
}

/// The clusters of a `len`-byte stream at `first`, contiguous or through the FAT.
fn stream_clusters(
    vol: &mut Vol,
    b: &Boot,
    first: u64,
    len: u64,
    contiguous: bool,
) -> Result<Vec<u64>, Error> {
    let n = len.div_ceil(b.cluster_bytes);
    if n == 0 {
        return Ok(Vec::new());
    }
    if first < 2 || first.checked_add(n).is_none_or(|e| e > b.clusters + 2) {
        return Err(Error::Corrupt(format!(
            "a stream of {len} bytes at cluster {first} lies outside the heap"
        )));
    }
    if contiguous {
        return Ok((first..first + n).collect());
    }
    let c = chain(vol, b, first, n)?;
    if (c.len() as u64) < n {
        return Err(Error::Corrupt(format!(
            "the chain from cluster {first} is shorter than its {len} bytes"
        )));
    }
    Ok(c)
}

/// Reads an exFAT filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let s = vol.read_vec(0, 512)?;
    let b = Boot::parse(&s)?;
    let bps = b.bytes_per_sector;
    let fs_bytes = b.volume_sectors.saturating_mul(bps);
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    let region = vol.read_vec(0, 12 * bps)?;
    let sum = boot_checksum(&region, bps as usize);
    if region[11 * bps as usize..]
        .chunks_exact(4)
        .any(|c| le32(c, 0) != sum)
    {
        return Err(Error::Corrupt("exFAT boot region checksum mismatch".into()));
    }
    let mut found = Found {
        kind: Some(FsKind::Exfat),
        uuid: Some(format!("{:04X}-{:04X}", b.serial >> 16, b.serial & 0xffff)),
        block_size: b.cluster_bytes as u32,
        fs_bytes,
        ..Found::default()
    };
    if b.flags & 2 != 0 {
        found
            .warnings
            .push("the volume is marked dirty (not cleanly unmounted)".into());
    }
    if b.flags & 4 != 0 {
        found
            .warnings
            .push("the volume records media failures".into());
    }
    // The root directory: its own chain, then its entries.
    let root = chain(vol, &b, b.root_cluster, b.clusters)?;
    let active = (b.flags & 1) as u8;
    let mut bitmap: Option<(u64, u64)> = None;
    let mut upcase: Option<(u64, u64, bool)> = None;
    let cs = b.cluster_bytes;
    'dir: for &c in &root {
        let data = vol.read_vec(b.cluster_offset(c), cs)?;
        for e in data.chunks_exact(32) {
            match e[0] {
                0x00 => break 'dir,
                0x81 => {
                    let index = e[1] & 1;
                    if b.fats == 1 || index == active {
                        bitmap = Some((le32(e, 20) as u64, le64(e, 24)));
                    }
                }
                0x82 => upcase = Some((le32(e, 20) as u64, le64(e, 24), false)),
                0x83 => {
                    let n = (e[1] as usize).min(11);
                    let name = super::utf16_name(&e[2..2 + 2 * n]);
                    found.label = Some(name).filter(|l| !l.is_empty());
                }
                _ => {}
            }
        }
    }
    let (bm_first, bm_len) =
        bitmap.ok_or_else(|| Error::Corrupt("no allocation bitmap entry".into()))?;
    if bm_len < b.clusters.div_ceil(8) {
        return Err(Error::Corrupt(format!(
            "the allocation bitmap ({bm_len} bytes) is too small for {} clusters",
            b.clusters
        )));
    }
    let bm_clusters = stream_clusters(vol, &b, bm_first, bm_len, false)?;
    let up_clusters = match upcase {
        Some((first, len, contiguous)) => stream_clusters(vol, &b, first, len, contiguous)?,
        None => Vec::new(),
    };
    let mut meta = Ranges::new();
    meta.add(0, b.heap_offset * bps);
    for &c in bm_clusters.iter().chain(&up_clusters).chain(&root) {
        meta.add(b.cluster_offset(c), b.cluster_offset(c) + cs);
    }
    found.metadata = meta.finish();

    found.allocated = match allocation(vol, &b, &bm_clusters, &mut found) {
        Ok(v) => {
            // The bitmap must mark the filesystem's own structures.
            let own: Vec<u64> = bm_clusters
                .iter()
                .chain(&up_clusters)
                .chain(&root)
                .copied()
                .collect();
            match own
                .iter()
                .find(|&&c| !covered(&v, b.cluster_offset(c), b.cluster_offset(c) + cs))
            {
                Some(c) => Some(Err(format!(
                    "cluster {c} of the bitmap, up-case table or root directory is marked free"
                ))),
                None => match walk(vol, &b, &root, &v) {
                    Ok(dirs) => {
                        let mut meta = Ranges::new();
                        for &(s, e) in found.metadata.iter().chain(&dirs) {
                            meta.add(s, e);
                        }
                        found.metadata = meta.finish();
                        Some(Ok(v))
                    }
                    Err(e) if e.is_gone() => return Err(e),
                    Err(e) => Some(Err(e.to_string())),
                },
            }
        }
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(found)
}

/// One file or directory of an exFAT directory: its file entry set (file entry, stream
/// extension, name entries), as the layout parser and the damaged-files walker both read it.
pub struct EntrySet {
    pub name: String,
    pub is_dir: bool,
    /// The stream extension's general flags.
    flags: u8,
    pub first_cluster: u64,
    pub data_length: u64,
}

impl EntrySet {
    /// Whether clusters are allocated to it (AllocationPossible).
    pub fn allocated(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether its clusters are contiguous, with no FAT chain (NoFatChain).
    pub fn contiguous(&self) -> bool {
        self.flags & 2 != 0
    }
}

/// The entry sets of a directory's data (32-byte entries), in order, to the end-of-directory
/// entry; a file entry without its stream extension is an `Err` with the reason, and the next
/// entry is looked at.
pub fn entry_sets(data: &[u8]) -> Vec<Result<EntrySet, String>> {
    let entries: Vec<&[u8]> = data.chunks_exact(32).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let e = entries[i];
        if e[0] == 0 {
            break;
        }
        if e[0] != 0x85 {
            i += 1;
            continue;
        }
        let secondary = (e[1] as usize).max(1);
        let Some(st) = entries.get(i + 1).filter(|s| s[0] == 0xc0) else {
            out.push(Err("a file entry without its stream extension".to_string()));
            i += 1;
            continue;
        };
        let name: String = entries
            .iter()
            .skip(i + 2)
            .take(secondary - 1)
            .filter(|n| n[0] == 0xc1)
            .map(|n| super::utf16_name(&n[2..32]))
            .collect();
        out.push(Ok(EntrySet {
            name: name.chars().take((st[3] as usize).max(1)).collect(),
            is_dir: le16(e, 4) & 0x10 != 0,
            flags: st[1],
            first_cluster: u64::from(le32(st, 20)),
            data_length: le64(st, 24),
        }));
        i += 1 + secondary;
    }
    out
}

/// Checks the bitmap against the directory tree: every cluster of every file and directory must
/// be marked allocated (a zeroed bitmap block shows up here even when PercentInUse rounds it
/// away).
/// Returns the byte ranges of every directory (metadata for a metadata-first rescue).
fn walk(
    vol: &mut Vol,
    b: &Boot,
    root: &[u64],
    alloc: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, Error> {
    let mut all = Vec::new();
    let cs = b.cluster_bytes;
    let mut dirs: Vec<(String, Vec<u64>)> = vec![("/".into(), root.to_vec())];
    let mut seen = std::collections::HashSet::new();
    seen.insert(b.root_cluster);
    // Bounds the work on hostile trees: no more directory clusters, nor chained file clusters,
    // than the volume has.
    let mut budget = b.clusters;
    let mut chain_steps = b.clusters;
    while let Some((path, clusters)) = dirs.pop() {
        budget = budget
            .checked_sub(clusters.len() as u64)
            .ok_or_else(|| Error::Corrupt("the directory tree is larger than the volume".into()))?;
        let mut data = Vec::new();
        for &c in &clusters {
            all.push((b.cluster_offset(c), b.cluster_offset(c) + cs));
            data.extend(vol.read_vec(b.cluster_offset(c), cs)?);
            if data.len() as u64 > super::vol::MAX_BUF {
                return Err(Error::Unsupported(format!("directory {path} is too large")));
            }
        }
        for set in entry_sets(&data) {
            let set = set.map_err(|why| Error::Corrupt(format!("{path}: {why}")))?;
            let what = format!("{path}{}", set.name);
            let (first, len, is_dir) = (set.first_cluster, set.data_length, set.is_dir);
            if set.allocated() && len > 0 {
                let n = len.div_ceil(cs);
                let contiguous = set.contiguous();
                if contiguous && !is_dir {
                    // Checked as one range: a large file is not listed cluster by cluster.
                    if first < 2 || first.checked_add(n).is_none_or(|e| e > b.clusters + 2) {
                        return Err(Error::Corrupt(format!(
                            "{what}: {len} bytes at cluster {first} lie outside the heap"
                        )));
                    }
                    if !covered(alloc, b.cluster_offset(first), b.cluster_offset(first + n)) {
                        return Err(Error::Inconsistent(format!(
                            "{what}: clusters {first}..{} are in use but not all allocated \
                             in the bitmap",
                            first + n
                        )));
                    }
                } else {
                    chain_steps = chain_steps.checked_sub(n).ok_or_else(|| {
                        Error::Corrupt("file chains add up to more than the volume".into())
                    })?;
                    let cl = stream_clusters(vol, b, first, len, contiguous)?;
                    if let Some(c) = cl
                        .iter()
                        .find(|&&c| !covered(alloc, b.cluster_offset(c), b.cluster_offset(c) + cs))
                    {
                        return Err(Error::Inconsistent(format!(
                            "{what}: cluster {c} is in use but free in the allocation bitmap"
                        )));
                    }
                    if is_dir && seen.insert(first) {
                        dirs.push((format!("{what}/"), cl));
                    }
                }
            }
        }
    }
    Ok(all)
}

fn allocation(
    vol: &mut Vol,
    b: &Boot,
    bm_clusters: &[u64],
    found: &mut Found,
) -> Result<Vec<(u64, u64)>, Error> {
    let mut out = Ranges::new();
    let heap = b.heap_offset * b.bytes_per_sector;
    out.add(0, heap);
    let mut bit = 0u64;
    let mut used = 0u64;
    let piece = b.cluster_bytes.min(1 << 20);
    'bm: for &c in bm_clusters {
        let mut off = 0;
        while off < b.cluster_bytes {
            if bit >= b.clusters {
                break 'bm;
            }
            let data = vol.read_vec(b.cluster_offset(c) + off, piece)?;
            let nbits = (b.clusters - bit).min(piece * 8);
            used += bitmap_runs(&data, nbits, bit, b.cluster_bytes, heap, &mut out);
            bit += nbits;
            off += piece;
        }
    }
    if b.percent_in_use != 0xff {
        let pct = used * 100 / b.clusters;
        if pct.abs_diff(b.percent_in_use as u64) > 1 {
            return Err(Error::Inconsistent(format!(
                "PercentInUse says {}%, the bitmap {pct}%",
                b.percent_in_use
            )));
        }
    }
    found.used_bytes = Some(heap + used * b.cluster_bytes);
    Ok(out.finish())
}
