//! btrfs (one device): the chunk map and the extent tree.
//!
//! Layout (from the btrfs on-disk format documentation; little-endian): the superblock at
//! 64 KiB (mirrors at 64 MiB and 256 GiB) holds the roots of the chunk tree and the root tree,
//! and, in `sys_chunk_array`, the chunks that map the chunk tree itself. Chunks map logical
//! addresses to device offsets (one stripe for `single`, two on the same device for `DUP`).
//! Trees are made of nodes (`nodesize`): a header, then items (leaves) or key pointers. The
//! extent tree's EXTENT_ITEM / METADATA_ITEM keys are the allocated logical ranges; its
//! BLOCK_GROUP_ITEMs say how many bytes of each chunk are used.
//!
//! Used: the first MiB (reserved for boot loaders, holds the superblock), the superblock
//! mirrors, and every allocated logical range mapped to the device (both copies of DUP).
//! Cross-checks: superblock and node checksums (crc32c, xxhash64), the extents of each block
//! group add up to its used count, and all of them to the superblock's `bytes_used`. Several devices, RAID profiles, a log tree to replay, or a separate block
//! group tree give the whole partition.

use super::vol::{le16, le32, le64, Ranges, Vol, MAX_BUF};
use super::{Error, Found, FsKind};

const SB_OFFSET: u64 = 0x10000;
const HEADER: usize = 0x65;
const CHUNK_ITEM: u8 = 228;
const ROOT_ITEM: u8 = 132;
const EXTENT_ITEM: u8 = 168;
const METADATA_ITEM: u8 = 169;
const BLOCK_GROUP_ITEM: u8 = 192;
const EXTENT_TREE: u64 = 2;
/// Profile bits of a chunk's type: RAID0, RAID1, DUP, RAID10, RAID5, RAID6, RAID1C3, RAID1C4.
const PROFILE_MASK: u64 = 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400;
const DUP: u64 = 0x20;

#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub logical: u64,
    pub length: u64,
    /// Device offsets of the stripes (one, or two for DUP).
    pub stripes: Vec<u64>,
}

/// A tree item's key: (objectid, type, offset), ordered as btrfs orders them.
pub(crate) type Key = (u64, u8, u64);
pub(crate) const KEY_MIN: Key = (0, 0, 0);
pub(crate) const KEY_MAX: Key = (u64::MAX, u8::MAX, u64::MAX);

/// Whether `block`'s checksum (its first bytes, over everything after the 32-byte checksum
/// field) is right. Checksum types without a hasher here are not checked.
fn csum_ok(block: &[u8], csum_type: u16) -> bool {
    let data = &block[0x20..];
    match csum_type {
        0 => {
            let c = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(data);
            block[..4] == c.to_le_bytes()
        }
        1 => block[..8] == xxhash_rust::xxh64::xxh64(data, 0).to_le_bytes(),
        _ => true,
    }
}

/// Called for every leaf item in key order: (key, data).
pub(crate) type KeyItemFn<'a> = dyn FnMut(Key, &[u8]) -> Result<(), Error> + 'a;
/// Called for every subtree that cannot be read: (lo, hi, address, why).
pub(crate) type LostFn<'a> = dyn FnMut(Key, Key, u64, Error) -> Result<(), Error> + 'a;

/// Called for every leaf item: (objectid, type, offset, data).
type ItemFn<'a> = dyn FnMut(u64, u8, u64, &[u8]) -> Result<(), Error> + 'a;

pub(crate) struct Fs {
    pub nodesize: u64,
    csum_type: u16,
    pub chunks: Vec<Chunk>,
    pub dev_size: u64,
    /// Read a node's other copy (DUP) when the first cannot be read or fails its checksum.
    pub any_copy: bool,
}

impl Fs {
    pub(crate) fn map(&self, logical: u64) -> Option<(&Chunk, u64)> {
        let i = self
            .chunks
            .partition_point(|c| c.logical + c.length <= logical);
        self.chunks
            .get(i)
            .filter(|c| c.logical <= logical)
            .map(|c| (c, logical - c.logical))
    }

    fn read_node(&self, vol: &mut Vol, logical: u64) -> Result<Vec<u8>, Error> {
        let (c, off) = self
            .map(logical)
            .ok_or_else(|| Error::Corrupt(format!("tree node {logical} is not in any chunk")))?;
        if off + self.nodesize > c.length {
            return Err(Error::Corrupt("tree node crosses its chunk".into()));
        }
        let copies = if self.any_copy { c.stripes.len() } else { 1 };
        let mut last = None;
        for &stripe in &c.stripes[..copies] {
            let node = match vol.read_vec(stripe + off, self.nodesize) {
                Ok(n) => n,
                Err(e) if e.is_gone() => return Err(e),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if !csum_ok(&node, self.csum_type) {
                last = Some(Error::Corrupt(format!(
                    "tree node {logical}: checksum mismatch"
                )));
            } else if le64(&node, 0x30) != logical {
                last = Some(Error::Corrupt(format!(
                    "tree node {logical} records another address"
                )));
            } else {
                return Ok(node);
            }
        }
        Err(last.unwrap_or_else(|| Error::Corrupt(format!("tree node {logical}: no copy"))))
    }

    /// Visits every leaf item of the tree at `root`: (objectid, type, offset, data).
    fn walk(&self, vol: &mut Vol, root: u64, f: &mut ItemFn) -> Result<(), Error> {
        self.walk_keys(
            vol,
            root,
            &mut |(oid, ty, off), d| f(oid, ty, off, d),
            &mut |_, _, _, e| Err(e),
        )
    }

    /// Visits every leaf item of the tree at `root` in key order. A node that cannot be read
    /// (no copy of it) or does not parse is passed to `lost` with the key range `[lo, hi)` its
    /// parent says it covers, its address and why; the walk goes on if `lost` returns Ok.
    pub(crate) fn walk_keys(
        &self,
        vol: &mut Vol,
        root: u64,
        f: &mut KeyItemFn,
        lost: &mut LostFn,
    ) -> Result<(), Error> {
        let mut stack = vec![(root, None::<u8>, KEY_MIN, KEY_MAX)];
        let mut visited = 0u64;
        let max_nodes = self.dev_size / self.nodesize + 1;
        while let Some((at, expect_level, lo, hi)) = stack.pop() {
            visited += 1;
            if visited > max_nodes {
                return Err(Error::Corrupt("tree has more nodes than the device".into()));
            }
            let node = match self.read_node(vol, at) {
                Ok(n) => n,
                Err(e) if e.is_gone() => return Err(e),
                Err(e) => {
                    lost(lo, hi, at, e)?;
                    continue;
                }
            };
            let n = le32(&node, 0x60) as usize;
            let level = node[0x64];
            if expect_level.is_some_and(|l| l != level) || level > 8 {
                lost(
                    lo,
                    hi,
                    at,
                    Error::Corrupt(format!("tree node {at}: unexpected level {level}")),
                )?;
                continue;
            }
            let key = |at: usize| (le64(&node, at), node[at + 8], le64(&node, at + 9));
            if level == 0 {
                if HEADER + 25 * n > node.len() {
                    lost(
                        lo,
                        hi,
                        at,
                        Error::Corrupt(format!("tree leaf {at}: {n} items")),
                    )?;
                    continue;
                }
                let data = |i: usize| {
                    let it = HEADER + 25 * i;
                    let doff = HEADER + le32(&node, it + 17) as usize;
                    let dlen = le32(&node, it + 21) as usize;
                    node.get(doff..doff.saturating_add(dlen))
                };
                if (0..n).any(|i| data(i).is_none()) {
                    let e = Error::Corrupt(format!("tree leaf {at}: item data"));
                    lost(lo, hi, at, e)?;
                    continue;
                }
                for i in 0..n {
                    f(key(HEADER + 25 * i), data(i).unwrap_or_default())?;
                }
            } else {
                if HEADER + 33 * n > node.len() {
                    lost(
                        lo,
                        hi,
                        at,
                        Error::Corrupt(format!("tree node {at}: {n} pointers")),
                    )?;
                    continue;
                }
                for i in (0..n).rev() {
                    let p = HEADER + 33 * i;
                    // A child covers its key up to the next one's (clipped to the parent's).
                    let child_lo = key(p).clamp(lo, hi);
                    let child_hi = if i + 1 < n {
                        key(p + 33).clamp(child_lo, hi)
                    } else {
                        hi
                    };
                    stack.push((le64(&node, p + 17), Some(level - 1), child_lo, child_hi));
                }
            }
        }
        Ok(())
    }
}

/// Parses a chunk item (after its key); `logical` is the key's offset.
fn parse_chunk(logical: u64, d: &[u8], dev_size: u64) -> Result<Chunk, Error> {
    let length = le64(d, 0);
    let ty = le64(d, 24);
    let n = le16(d, 44) as usize;
    if d.len() < 48 + 32 * n || n == 0 {
        return Err(Error::Corrupt("chunk item too short".into()));
    }
    let profile = ty & PROFILE_MASK;
    if profile != 0 && profile != DUP {
        return Err(Error::Unsupported(format!(
            "chunk profile {profile:#x} (RAID)"
        )));
    }
    let stripes: Vec<u64> = (0..n).map(|k| le64(d, 48 + 32 * k + 8)).collect();
    if stripes
        .iter()
        .any(|&s| s.checked_add(length).is_none_or(|e| e > dev_size))
        || length == 0
    {
        return Err(Error::Corrupt("chunk stripe outside the device".into()));
    }
    Ok(Chunk {
        logical,
        length,
        stripes,
    })
}

/// Reads the superblock and the chunk map.
pub(crate) fn open(vol: &mut Vol) -> Result<(Fs, Vec<u8>), Error> {
    let sb = vol.read_vec(SB_OFFSET, 4096)?;
    if sb.get(0x40..0x48) != Some(b"_BHRfS_M") {
        return Err(Error::Corrupt("no btrfs superblock magic".into()));
    }
    let csum_type = le16(&sb, 0xc4);
    if !csum_ok(&sb, csum_type) {
        return Err(Error::Corrupt("superblock checksum mismatch".into()));
    }
    let total = le64(&sb, 0x70);
    let sectorsize = le32(&sb, 0x90) as u64;
    let nodesize = le32(&sb, 0x94) as u64;
    let num_devices = le64(&sb, 0x88);
    if !sectorsize.is_power_of_two()
        || !(4096..=65536).contains(&sectorsize)
        || !nodesize.is_power_of_two()
        || !(4096..=65536).contains(&nodesize)
    {
        return Err(Error::Corrupt("invalid sector or node size".into()));
    }
    let dev_size = le64(&sb, 0xc9 + 8); // dev_item.total_bytes
    if dev_size > vol.len || total > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({dev_size} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    if num_devices != 1 {
        return Err(Error::Unsupported(format!(
            "btrfs over {num_devices} devices"
        )));
    }
    // Bootstrap chunks, then the chunk tree.
    let sys_len = (le32(&sb, 0xa0) as usize).min(2048);
    let arr = &sb[0x32b..0x32b + sys_len];
    let mut chunks = Vec::new();
    let mut p = 0usize;
    while p + 17 + 48 <= arr.len() {
        let (ty, logical) = (arr[p + 8], le64(arr, p + 9));
        if ty != CHUNK_ITEM {
            return Err(Error::Corrupt(
                "sys_chunk_array holds a non-chunk item".into(),
            ));
        }
        let n = le16(arr, p + 17 + 44) as usize;
        let len = 48 + 32 * n;
        let d = arr
            .get(p + 17..p + 17 + len)
            .ok_or_else(|| Error::Corrupt("sys_chunk_array truncated".into()))?;
        chunks.push(parse_chunk(logical, d, dev_size)?);
        p += 17 + len;
    }
    chunks.sort_by_key(|c| c.logical);
    let mut fs = Fs {
        nodesize,
        csum_type,
        chunks,
        dev_size,
        any_copy: false,
    };
    let mut all = Vec::new();
    fs.walk(vol, le64(&sb, 0x58), &mut |_, ty, off, d| {
        if ty == CHUNK_ITEM {
            all.push(parse_chunk(off, d, dev_size)?);
        }
        Ok(())
    })?;
    all.sort_by_key(|c| c.logical);
    if all
        .windows(2)
        .any(|w| w[0].logical + w[0].length > w[1].logical)
    {
        return Err(Error::Corrupt("overlapping chunks".into()));
    }
    fs.chunks = all;
    Ok((fs, sb))
}

/// Reads a btrfs filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let (fs, sb) = open(vol)?;
    let label = {
        let raw = &sb[0x12b..0x12b + 256];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    let mut found = Found {
        kind: Some(FsKind::Btrfs),
        label: Some(label).filter(|l| !l.is_empty()),
        uuid: Some(super::uuid_string(&sb[0x20..0x30])),
        block_size: le32(&sb, 0x90),
        fs_bytes: fs.dev_size,
        used_bytes: Some(le64(&sb, 0x78)),
        ..Found::default()
    };
    let mut meta = Ranges::new();
    for m in [SB_OFFSET, 64 << 20, 256 << 30] {
        meta.add(m, m + 4096);
    }
    found.metadata = meta.finish();
    if le64(&sb, 0x60) != 0 {
        found
            .warnings
            .push("a log tree is pending (fsync'd data not yet replayed)".into());
        found.allocated = Some(Err(
            "a log tree is pending replay: its blocks are not in the extent tree".into(),
        ));
        return Ok(found);
    }
    found.allocated = match allocation(vol, &fs, &sb) {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(found)
}

fn allocation(vol: &mut Vol, fs: &Fs, sb: &[u8]) -> Result<Vec<(u64, u64)>, Error> {
    // The extent tree's root, from the root tree.
    let mut extent_root = None;
    fs.walk(vol, le64(sb, 0x50), &mut |oid, ty, _, d| {
        if oid == EXTENT_TREE && ty == ROOT_ITEM {
            extent_root = Some(le64(d, 176));
        }
        Ok(())
    })?;
    let root = extent_root.ok_or_else(|| Error::Corrupt("no extent tree".into()))?;
    let mut logical: Vec<(u64, u64)> = Vec::new();
    let mut groups: Vec<(u64, u64, u64)> = Vec::new(); // (start, length, used)
    fs.walk(vol, root, &mut |oid, ty, off, d| {
        match ty {
            EXTENT_ITEM => logical.push((oid, oid.saturating_add(off))),
            METADATA_ITEM => logical.push((oid, oid.saturating_add(fs.nodesize))),
            BLOCK_GROUP_ITEM => groups.push((oid, off, le64(d, 0))),
            _ => {}
        }
        if logical.len() as u64 * 16 > MAX_BUF * 4 {
            return Err(Error::Unsupported("too many extents".into()));
        }
        Ok(())
    })?;
    if groups.is_empty() {
        return Err(Error::Unsupported(
            "no block groups in the extent tree (block group tree)".into(),
        ));
    }
    logical.sort_unstable();
    // Each block group's extents add up to its used bytes; all to the superblock's count.
    let mut i = 0;
    let mut sum_all = 0u64;
    for &(start, len, used) in &groups {
        let end = start + len;
        let mut sum = 0u64;
        while i < logical.len() && logical[i].0 < end {
            let (s, e) = logical[i];
            if s < start || e > end {
                return Err(Error::Inconsistent(format!(
                    "extent {s}..{e} is outside the block groups"
                )));
            }
            sum += e - s;
            i += 1;
        }
        if sum != used {
            return Err(Error::Inconsistent(format!(
                "block group at {start}: extents add up to {sum} bytes, its item says {used}"
            )));
        }
        sum_all += sum;
    }
    if i != logical.len() {
        return Err(Error::Inconsistent(
            "extents outside every block group".into(),
        ));
    }
    if sum_all != le64(sb, 0x78) {
        return Err(Error::Inconsistent(format!(
            "extents add up to {sum_all} bytes, the superblock says {}",
            le64(sb, 0x78)
        )));
    }
    let mut out = Ranges::new();
    out.add(0, 1 << 20);
    for m in [SB_OFFSET, 64 << 20, 256 << 30] {
        if m + 4096 <= fs.dev_size {
            out.add(m, m + 4096);
        }
    }
    for (s, e) in logical {
        let (c, off) = fs
            .map(s)
            .ok_or_else(|| Error::Inconsistent(format!("extent {s} is in no chunk")))?;
        if off + (e - s) > c.length {
            return Err(Error::Inconsistent(format!("extent {s} crosses its chunk")));
        }
        for &st in &c.stripes {
            out.add(st + off, st + off + (e - s));
        }
    }
    Ok(out.finish())
}
