//! FAT12, FAT16 and FAT32: the boot sector's BIOS parameter block and the FAT.
//!
//! Layout (from Microsoft's FAT specification): the reserved sectors (boot sector, FSInfo and
//! the backup boot sector on FAT32), then `number of FATs` copies of the FAT, then on FAT12/16 the
//! fixed root directory, then the data area of clusters numbered from 2. A FAT entry is 0 for a
//! free cluster, the "bad" value for a bad cluster, and otherwise the next cluster of a chain or
//! an end-of-chain mark. The FAT type follows from the BPB the way Linux reads it: FAT32 when the
//! 16-bit FAT size is 0, else FAT12 below 4085 clusters and FAT16 above.
//!
//! Used: everything before the data area (reserved sectors, FATs, root directory) and every
//! cluster whose entry is neither free nor bad (bad clusters hold no data). Cross-checks: every
//! mirrored FAT copy must equal the first, every entry must be free, bad, end-of-chain or a
//! cluster number, and FAT32's FSInfo free count (when set) must equal the FAT's. Otherwise the
//! partition is used whole.

use super::vol::{le16, le32, Ranges, Vol};
use super::{Error, Found, FsKind};

/// The BIOS parameter block.
#[derive(Debug, Clone)]
pub struct Bpb {
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved: u64,
    pub fats: u64,
    pub root_entries: u64,
    pub total_sectors: u64,
    pub fat_sectors: u64,
    pub fat32: bool,
    pub root_cluster: u64,
    pub fsinfo_sector: u64,
    pub ext_flags: u16,
    pub label: Option<String>,
    pub volume_id: Option<u32>,
    pub dirty_flag: bool,
}

impl Bpb {
    pub fn parse(s: &[u8]) -> Result<Bpb, Error> {
        if s.len() < 512 {
            return Err(Error::Corrupt("boot sector too short".into()));
        }
        let bps = le16(s, 11) as u64;
        let spc = s[13] as u64;
        if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
            return Err(Error::Corrupt(format!("invalid bytes per sector {bps}")));
        }
        if !spc.is_power_of_two() {
            return Err(Error::Corrupt(format!("invalid sectors per cluster {spc}")));
        }
        let reserved = le16(s, 14) as u64;
        let fats = s[16] as u64;
        if reserved == 0 || fats == 0 || fats > 4 {
            return Err(Error::Corrupt(format!(
                "invalid reserved sectors {reserved} / number of FATs {fats}"
            )));
        }
        let root_entries = le16(s, 17) as u64;
        let tot16 = le16(s, 19) as u64;
        let total_sectors = if tot16 != 0 {
            tot16
        } else {
            le32(s, 32) as u64
        };
        let fat16_size = le16(s, 22) as u64;
        let fat32 = fat16_size == 0;
        let fat_sectors = if fat32 {
            le32(s, 36) as u64
        } else {
            fat16_size
        };
        if fat_sectors == 0 || total_sectors == 0 {
            return Err(Error::Corrupt("FAT size or total sectors is 0".into()));
        }
        let (sig_at, id_at, label_at, flags_at) = if fat32 {
            (66, 67, 71, 65)
        } else {
            (38, 39, 43, 37)
        };
        let extended = s[sig_at] == 0x29 || s[sig_at] == 0x28;
        let label = if s[sig_at] == 0x29 {
            clean_label(&s[label_at..label_at + 11])
        } else {
            None
        };
        Ok(Bpb {
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            reserved,
            fats,
            root_entries,
            total_sectors,
            fat_sectors,
            fat32,
            root_cluster: if fat32 { le32(s, 44) as u64 } else { 0 },
            fsinfo_sector: if fat32 { le16(s, 48) as u64 } else { 0 },
            ext_flags: if fat32 { le16(s, 40) } else { 0 },
            label,
            volume_id: extended.then(|| le32(s, id_at)),
            dirty_flag: extended && s[flags_at] & 1 != 0,
        })
    }

    pub(crate) fn root_dir_sectors(&self) -> u64 {
        (self.root_entries * 32).div_ceil(self.bytes_per_sector)
    }

    /// First sector of the data area (cluster 2).
    pub fn data_start(&self) -> u64 {
        self.reserved + self.fats * self.fat_sectors + self.root_dir_sectors()
    }

    pub fn clusters(&self) -> u64 {
        self.total_sectors.saturating_sub(self.data_start()) / self.sectors_per_cluster
    }

    pub fn kind(&self) -> FsKind {
        if self.fat32 {
            FsKind::Fat32
        } else if self.clusters() < 4085 {
            FsKind::Fat12
        } else {
            FsKind::Fat16
        }
    }

    pub(crate) fn entry_bits(&self) -> u64 {
        match self.kind() {
            FsKind::Fat12 => 12,
            FsKind::Fat16 => 16,
            _ => 32,
        }
    }

    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * self.bytes_per_sector
    }

    pub(crate) fn cluster_offset(&self, c: u64) -> u64 {
        (self.data_start() + (c - 2) * self.sectors_per_cluster) * self.bytes_per_sector
    }
}

fn clean_label(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(raw).trim_end().to_string();
    (!s.is_empty() && s != "NO NAME").then_some(s)
}

/// Whether a boot sector has a plausible FAT BPB (for volumes without the type label).
pub fn looks_like_fat(s: &[u8]) -> bool {
    let jump = s.first().is_some_and(|&b| b == 0xeb || b == 0xe9);
    let sig = s.get(510..512) == Some(&[0x55, 0xaa]);
    jump && sig
        && Bpb::parse(s).is_ok_and(|b| {
            let media = s[21];
            media >= 0xf0 && b.data_start() < b.total_sectors
        })
}

/// The FAT entries of clusters `[from, from + n)` of FAT copy `copy`.
/// Entries per piece when a FAT is read sector by sector after an unreadable sector (512 bytes
/// of FAT32 entries; a FAT16 sector holds two pieces).
const PIECE: usize = 128;

/// Like [`read_entries`] from the first copy, but a piece of it that cannot be read is taken
/// from the first copy that can (the copies are mirrors): an unreadable sector in one FAT costs
/// nothing while another copy has it. FAT12 entries straddle sectors: no fallback there.
fn read_entries_any(
    vol: &mut Vol,
    b: &Bpb,
    from: u64,
    n: u64,
    out: &mut Vec<u32>,
) -> Result<(), Error> {
    match read_entries(vol, b, 0, from, n, out) {
        Err(Error::Read { gone: false, .. }) if b.entry_bits() != 12 => {}
        r => return r,
    }
    out.clear();
    let mut piece = Vec::new();
    let mut c = from;
    while c < from + n {
        let k = (PIECE as u64).min(from + n - c);
        let mut last = None;
        for copy in 0..b.fats {
            match read_entries(vol, b, copy, c, k, &mut piece) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e @ Error::Read { gone: false, .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        out.extend_from_slice(&piece);
        c += k;
    }
    Ok(())
}

/// [`read_entries`] of one copy, piece by piece after an unreadable sector; returns which
/// pieces were read (unread ones hold zeros).
fn read_entries_where_readable(
    vol: &mut Vol,
    b: &Bpb,
    copy: u64,
    from: u64,
    n: u64,
    out: &mut Vec<u32>,
) -> Result<Vec<bool>, Error> {
    let pieces = (n as usize).div_ceil(PIECE);
    match read_entries(vol, b, copy, from, n, out) {
        Ok(()) => return Ok(vec![true; pieces]),
        Err(Error::Read { gone: false, .. }) if b.entry_bits() != 12 => {}
        Err(e) => return Err(e),
    }
    out.clear();
    let mut readable = Vec::with_capacity(pieces);
    let mut piece = Vec::new();
    let mut c = from;
    while c < from + n {
        let k = (PIECE as u64).min(from + n - c);
        match read_entries(vol, b, copy, c, k, &mut piece) {
            Ok(()) => {
                out.extend_from_slice(&piece);
                readable.push(true);
            }
            Err(Error::Read { gone: false, .. }) => {
                out.extend(std::iter::repeat_n(0, k as usize));
                readable.push(false);
            }
            Err(e) => return Err(e),
        }
        c += k;
    }
    Ok(readable)
}

pub(crate) fn read_entries(
    vol: &mut Vol,
    b: &Bpb,
    copy: u64,
    from: u64,
    n: u64,
    out: &mut Vec<u32>,
) -> Result<(), Error> {
    out.clear();
    let fat_start = (b.reserved + copy * b.fat_sectors) * b.bytes_per_sector;
    match b.entry_bits() {
        12 => {
            let first = from * 3 / 2;
            let last = ((from + n) * 3).div_ceil(2) + 1;
            let bytes = vol.read_vec(fat_start + first, last - first)?;
            for c in from..from + n {
                let at = (c * 3 / 2 - first) as usize;
                let v = le16(&bytes, at) as u32;
                out.push(if c % 2 == 0 { v & 0xfff } else { v >> 4 });
            }
        }
        16 => {
            let bytes = vol.read_vec(fat_start + from * 2, n * 2)?;
            out.extend(bytes.chunks_exact(2).map(|c| le16(c, 0) as u32));
        }
        _ => {
            let bytes = vol.read_vec(fat_start + from * 4, n * 4)?;
            out.extend(bytes.chunks_exact(4).map(|c| le32(c, 0) & 0x0fff_ffff));
        }
    }
    Ok(())
}

/// Reads a FAT filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let sector = vol.read_vec(0, 512)?;
    let b = Bpb::parse(&sector)?;
    let fs_bytes = b.total_sectors * b.bytes_per_sector;
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    if b.data_start() >= b.total_sectors {
        return Err(Error::Corrupt("no data area after the FATs".into()));
    }
    let clusters = b.clusters();
    if clusters == 0 {
        return Err(Error::Corrupt("no clusters".into()));
    }
    if b.fat_sectors * b.bytes_per_sector * 8 / b.entry_bits() < clusters + 2 {
        return Err(Error::Corrupt(format!(
            "the FAT ({} sectors) is too small for {clusters} clusters",
            b.fat_sectors
        )));
    }
    if b.fat32 && (b.root_cluster < 2 || b.root_cluster >= clusters + 2) {
        return Err(Error::Corrupt(format!(
            "root directory cluster {} is out of range",
            b.root_cluster
        )));
    }
    let cs = b.cluster_bytes();
    let data_start = b.data_start() * b.bytes_per_sector;
    let mut found = Found {
        kind: Some(b.kind()),
        label: b.label.clone(),
        uuid: b
            .volume_id
            .map(|v| format!("{:04X}-{:04X}", v >> 16, v & 0xffff)),
        block_size: cs as u32,
        fs_bytes,
        ..Found::default()
    };
    if b.dirty_flag {
        found
            .warnings
            .push("the volume is marked dirty (not cleanly unmounted)".into());
    }
    // Metadata: reserved sectors, FATs, the root directory (region or cluster chain).
    let mut meta = Ranges::new();
    meta.add(0, data_start);
    if b.fat32 {
        match chain(vol, &b, b.root_cluster) {
            Ok(cl) => {
                for c in cl {
                    meta.add(b.cluster_offset(c), b.cluster_offset(c) + cs);
                }
            }
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => found
                .warnings
                .push(format!("root directory chain unreadable: {e}")),
        }
    }
    found.metadata = meta.finish();
    if found.label.is_none() {
        found.label = root_label(vol, &b).unwrap_or(None);
    }

    found.allocated = match allocation(vol, &b, &mut found) {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(found)
}

fn allocation(vol: &mut Vol, b: &Bpb, found: &mut Found) -> Result<Vec<(u64, u64)>, Error> {
    let clusters = b.clusters();
    let (bad, eoc_min) = match b.entry_bits() {
        12 => (0xff7u32, 0xff8u32),
        16 => (0xfff7, 0xfff8),
        _ => (0x0fff_fff7, 0x0fff_fff8),
    };
    // FAT32 may disable mirroring; then only the active FAT counts.
    let mirrored = !(b.fat32 && b.ext_flags & 0x80 != 0);
    let active = if mirrored {
        0
    } else {
        (b.ext_flags & 0xf) as u64
    };
    if active >= b.fats {
        return Err(Error::Corrupt(format!(
            "active FAT {active} does not exist"
        )));
    }
    let cs = b.cluster_bytes();
    let mut out = Ranges::new();
    out.add(0, b.data_start() * b.bytes_per_sector);
    let (mut free, mut bad_count) = (0u64, 0u64);
    let step: u64 = 1 << 18;
    let mut first = Vec::new();
    let mut other = Vec::new();
    // Entry 1 holds the clean/error bits.
    read_entries(vol, b, active, 1, 1, &mut first)?;
    let clean_bit = match b.entry_bits() {
        16 => Some(0x8000u32),
        32 => Some(0x0800_0000),
        _ => None,
    };
    if let Some(bit) = clean_bit {
        if first.first().is_some_and(|&v| v & bit == 0) {
            found
                .warnings
                .push("the FAT marks the volume as not cleanly unmounted".into());
        }
    }
    // The active FAT is kept for the directory walk when it is not huge.
    let mut table: Option<Vec<u32>> = (clusters + 2 <= MAX_WALK_CLUSTERS).then(|| vec![0, 0]);
    let mut c = 2u64;
    while c < clusters + 2 {
        let n = step.min(clusters + 2 - c);
        if mirrored {
            read_entries_any(vol, b, c, n, &mut first)?;
        } else {
            read_entries(vol, b, active, c, n, &mut first)?;
        }
        if let Some(t) = table.as_mut() {
            t.extend_from_slice(&first);
        }
        if mirrored {
            for copy in 1..b.fats {
                // Sectors of a copy that cannot be read are not compared (the entries came
                // from a copy that could); the rest must agree.
                let readable = read_entries_where_readable(vol, b, copy, c, n, &mut other)?;
                if let Some(i) =
                    (0..first.len()).find(|&i| readable[i / PIECE] && first[i] != other[i])
                {
                    return Err(Error::Inconsistent(format!(
                        "FAT copy {} differs from the first at cluster {}",
                        copy + 1,
                        c + i as u64
                    )));
                }
            }
        }
        for (i, &v) in first.iter().enumerate() {
            let cl = c + i as u64;
            if v == 0 {
                free += 1;
            } else if v == bad {
                bad_count += 1;
            } else if v >= eoc_min || (2..clusters + 2).contains(&(v as u64)) {
                let off = b.cluster_offset(cl);
                out.add(off, off + cs);
            } else {
                return Err(Error::Inconsistent(format!(
                    "cluster {cl} points to {v:#x}, outside the {clusters} clusters"
                )));
            }
        }
        c += n;
    }
    match &table {
        Some(t) => {
            // Directory clusters are metadata too (a metadata-first rescue reads them early).
            let mut meta = Ranges::new();
            let mut unread = Vec::new();
            let dirs = walk(vol, b, t, &mut unread)?;
            if let Some(first) = unread.first() {
                // The allocation is the FAT's; an unreadable directory only hides its entries
                // from the check (and its subdirectories from the metadata list).
                found.warnings.push(format!(
                    "{} directory area(s) unreadable (first: {first}); their entries were not \
                     checked",
                    unread.len()
                ));
            }
            for &(s, e) in found.metadata.iter().chain(&dirs) {
                meta.add(s, e);
            }
            found.metadata = meta.finish();
        }
        None => found.warnings.push(format!(
            "{clusters} clusters: the directory tree was not checked against the FAT"
        )),
    }
    if bad_count > 0 {
        found.warnings.push(format!(
            "{bad_count} clusters are marked bad (left out: they hold no data)"
        ));
    }
    let mut own_free = free;
    if b.fat32 && b.fsinfo_sector > 0 && b.fsinfo_sector < b.reserved {
        let fsinfo = vol.read_vec(b.fsinfo_sector * b.bytes_per_sector, 512)?;
        if le32(&fsinfo, 0) == 0x4161_5252 && le32(&fsinfo, 484) == 0x6141_7272 {
            let count = le32(&fsinfo, 488) as u64;
            if count != 0xffff_ffff {
                if count != free {
                    return Err(Error::Inconsistent(format!(
                        "FSInfo says {count} free clusters, the FAT has {free}"
                    )));
                }
                own_free = count;
            }
        }
    }
    found.used_bytes =
        Some((b.total_sectors * b.bytes_per_sector).saturating_sub((own_free + bad_count) * cs));
    Ok(out.finish())
}

/// FATs of more clusters than this (64 MiB of entries) are not loaded for the directory walk.
const MAX_WALK_CLUSTERS: u64 = 1 << 24;

/// Checks the FAT against the directory tree: every file's and directory's chain must start at
/// an allocated cluster, run through allocated clusters only, and be long enough for the file's
/// size. A zeroed FAT sector (in every copy) shows up here as a broken chain.
/// Returns the byte ranges of every directory.
fn walk(
    vol: &mut Vol,
    b: &Bpb,
    fat: &[u32],
    unread: &mut Vec<String>,
) -> Result<Vec<(u64, u64)>, Error> {
    let clusters = b.clusters();
    let cs = b.cluster_bytes();
    let eoc_min: u32 = match b.entry_bits() {
        12 => 0xff8,
        16 => 0xfff8,
        _ => 0x0fff_fff8,
    };
    let mut seen = vec![false; fat.len()];
    // Follows a chain, marking its clusters; returns its length.
    let mut follow = |start: u64, what: &str| -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        let mut c = start;
        loop {
            if !(2..clusters + 2).contains(&c) {
                return Err(Error::Inconsistent(format!(
                    "{what}: chain reaches cluster {c:#x}, outside the volume"
                )));
            }
            if seen[c as usize] {
                return Err(Error::Inconsistent(format!(
                    "{what}: cluster {c} is used twice (cross-linked or looping chain)"
                )));
            }
            seen[c as usize] = true;
            out.push(c);
            let v = fat[c as usize];
            if v == 0 {
                return Err(Error::Inconsistent(format!(
                    "{what}: cluster {c} is in use but free in the FAT"
                )));
            }
            if v >= eoc_min {
                return Ok(out);
            }
            c = v as u64;
        }
    };
    // Directories to read: (description, byte ranges of their content).
    let mut dirs: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
    if b.fat32 {
        let cl = follow(b.root_cluster, "root directory")?;
        dirs.push((
            "/".into(),
            cl.iter()
                .map(|&c| (b.cluster_offset(c), b.cluster_offset(c) + cs))
                .collect(),
        ));
    } else {
        let at = (b.reserved + b.fats * b.fat_sectors) * b.bytes_per_sector;
        dirs.push((
            "/".into(),
            vec![(at, at + b.root_dir_sectors() * b.bytes_per_sector)],
        ));
    }
    let mut all = Vec::new();
    while let Some((path, parts)) = dirs.pop() {
        all.extend_from_slice(&parts);
        'dir: for (s, e) in parts {
            let data = match vol.read_vec(s, e - s) {
                Ok(d) => d,
                Err(e @ Error::Read { gone: false, .. }) => {
                    unread.push(format!("{path}: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for ent in data.chunks_exact(32) {
                match ent[0] {
                    0x00 => break 'dir,
                    0xe5 => continue,
                    _ => {}
                }
                let attr = ent[11];
                if attr & 0x3f == 0x0f || attr & 0x08 != 0 || ent[0] == b'.' {
                    continue;
                }
                let hi = if b.fat32 { le16(ent, 20) as u64 } else { 0 };
                let first = (hi << 16) | le16(ent, 26) as u64;
                let size = le32(ent, 28) as u64;
                let name = String::from_utf8_lossy(&ent[..11]).trim_end().to_string();
                let what = format!("{path}{name}");
                if attr & 0x10 != 0 {
                    if first == 0 {
                        continue;
                    }
                    let cl = follow(first, &what)?;
                    dirs.push((
                        format!("{what}/"),
                        cl.iter()
                            .map(|&c| (b.cluster_offset(c), b.cluster_offset(c) + cs))
                            .collect(),
                    ));
                } else if first != 0 {
                    let cl = follow(first, &what)?;
                    if (cl.len() as u64) < size.div_ceil(cs) {
                        return Err(Error::Inconsistent(format!(
                            "{what}: {} clusters in its chain, {size} bytes in its entry",
                            cl.len()
                        )));
                    }
                } else if size > 0 {
                    return Err(Error::Inconsistent(format!(
                        "{what}: {size} bytes but no clusters"
                    )));
                }
            }
        }
    }
    Ok(all)
}

/// The clusters of the chain starting at `start` (bounded: a loop is an error).
fn chain(vol: &mut Vol, b: &Bpb, start: u64) -> Result<Vec<u64>, Error> {
    let clusters = b.clusters();
    let mut out = Vec::new();
    let mut c = start;
    let mut e = Vec::new();
    while (2..clusters + 2).contains(&c) {
        if out.len() as u64 > clusters {
            return Err(Error::Corrupt(format!(
                "the chain from cluster {start} loops"
            )));
        }
        out.push(c);
        read_entries(vol, b, 0, c, 1, &mut e)?;
        c = e.first().copied().unwrap_or(0) as u64;
    }
    Ok(out)
}

/// The volume label from the root directory's label entry.
fn root_label(vol: &mut Vol, b: &Bpb) -> Result<Option<String>, Error> {
    let (off, len) = if b.fat32 {
        (b.cluster_offset(b.root_cluster), b.cluster_bytes())
    } else {
        (
            (b.reserved + b.fats * b.fat_sectors) * b.bytes_per_sector,
            b.root_dir_sectors() * b.bytes_per_sector,
        )
    };
    let dir = vol.read_vec(off, len.min(64 << 10))?;
    for e in dir.chunks_exact(32) {
        if e[0] == 0 {
            break;
        }
        if e[0] != 0xe5 && e[11] & 0x3f == 0x08 {
            return Ok(clean_label(&e[..11]));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpb(spc: u8, reserved: u16, fats: u8, root: u16, total: u32, fat16: u16) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0] = 0xeb;
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = spc;
        s[14..16].copy_from_slice(&reserved.to_le_bytes());
        s[16] = fats;
        s[17..19].copy_from_slice(&root.to_le_bytes());
        s[21] = 0xf8;
        s[22..24].copy_from_slice(&fat16.to_le_bytes());
        s[32..36].copy_from_slice(&total.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn types_by_cluster_count() {
        let b = Bpb::parse(&bpb(8, 1, 2, 512, 16384, 8)).expect("bpb");
        assert_eq!(b.kind(), FsKind::Fat12);
        assert_eq!(b.data_start(), 1 + 16 + 32);
        let b = Bpb::parse(&bpb(4, 1, 2, 512, 65536, 64)).expect("bpb");
        assert_eq!(b.kind(), FsKind::Fat16);
        assert!(looks_like_fat(&bpb(4, 1, 2, 512, 65536, 64)));
    }

    #[test]
    fn hostile_bpbs() {
        assert!(
            Bpb::parse(&bpb(3, 1, 2, 512, 65536, 64)).is_err(),
            "3 sectors per cluster"
        );
        assert!(
            Bpb::parse(&bpb(4, 0, 2, 512, 65536, 64)).is_err(),
            "no reserved sectors"
        );
        assert!(Bpb::parse(&bpb(4, 1, 0, 512, 65536, 64)).is_err(), "no FAT");
        assert!(Bpb::parse(&bpb(4, 1, 2, 512, 0, 64)).is_err(), "no sectors");
        assert!(Bpb::parse(&[0u8; 100]).is_err());
    }
}
