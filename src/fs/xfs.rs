//! XFS: the superblock, each allocation group's free-space B+trees and free list, and the log.
//!
//! Layout (from the XFS on-disk format documentation; everything big-endian): the superblock
//! at byte 0 gives the block size, the data blocks, the allocation groups (AGs, `agblocks`
//! each) and the internal log. Each AG starts with its superblock copy, then the AGF (sector
//! 1: free-space B+tree roots and levels, free list indices, free block count) and the AGFL
//! (sector 3: blocks held in reserve for the trees). Free space is indexed twice: by block
//! number (bnobt) and by size (cntbt); their leaf records are (start, length) extents.
//!
//! Used: every block of every AG except the bnobt's free extents and the AGFL's blocks.
//! Cross-checks: both trees must list the same number of free blocks, equal to the AGF's free
//! count. A log that still has to be replayed means the trees on disk may be stale: the log's
//! head is found from the cycle numbers stamped on every log sector, and only a log whose last
//! record is an unmount record counts as clean; otherwise the whole partition is used. A realtime subvolume lives on another device and is not read.

use super::vol::{Ranges, Vol};
use super::{Error, Found, FsKind};

pub(crate) fn be16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}
pub(crate) fn be32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
pub(crate) fn be64(b: &[u8], o: usize) -> u64 {
    ((be32(b, o) as u64) << 32) | be32(b, o + 4) as u64
}

/// The superblock fields this module uses.
#[derive(Debug, Clone)]
pub struct Super {
    pub block_size: u64,
    pub dblocks: u64,
    pub agblocks: u64,
    pub agcount: u64,
    pub sector_size: u64,
    pub logstart: u64,
    pub logblocks: u64,
    pub agblklog: u32,
    pub v5: bool,
    /// The root directory's inode.
    pub rootino: u64,
    pub inode_size: u64,
    /// log2 of the inodes per block.
    pub inopblog: u32,
    /// log2 of the blocks per directory block.
    pub dirblklog: u32,
    /// Directory entries carry a file type byte.
    pub ftype: bool,
    /// 64-bit extent counters (the data fork's count moves).
    pub nrext64: bool,
    /// Sparse inode chunks (inode B+tree records carry a hole mask).
    pub spinodes: bool,
    /// Inodes no directory names: realtime bitmap and summary, quotas.
    pub hidden_inodes: Vec<u64>,
    pub label: String,
    pub uuid: [u8; 16],
}

impl Super {
    pub fn parse(s: &[u8]) -> Result<Super, Error> {
        if s.get(0..4) != Some(b"XFSB") {
            return Err(Error::Corrupt("no XFS superblock magic".into()));
        }
        let block_size = be32(s, 4) as u64;
        let sector_size = be16(s, 102) as u64;
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            return Err(Error::Corrupt(format!("invalid block size {block_size}")));
        }
        if !sector_size.is_power_of_two() || !(512..=32768).contains(&sector_size) {
            return Err(Error::Corrupt(format!("invalid sector size {sector_size}")));
        }
        let agblocks = be32(s, 84) as u64;
        let agcount = be32(s, 88) as u64;
        let agblklog = s[124] as u32;
        if agblocks < 16 || agcount == 0 || agblklog > 31 || agblocks > 1 << agblklog {
            return Err(Error::Corrupt(format!(
                "invalid allocation groups ({agcount} of {agblocks} blocks)"
            )));
        }
        let dblocks = be64(s, 8);
        if dblocks > agblocks * agcount || dblocks <= agblocks * (agcount - 1) {
            return Err(Error::Corrupt(format!(
                "{dblocks} blocks do not fit {agcount} groups of {agblocks}"
            )));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&s[32..48]);
        let v5 = be16(s, 100) & 0xf == 5;
        let inode_size = be16(s, 104) as u64;
        // Checked by the file walker, which is the only user (the used-blocks reader needs no
        // inodes).
        let inopblog = s[123] as u32;
        let incompat = if v5 { be32(s, 216) } else { 0 };
        let raw = &s[108..120];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        Ok(Super {
            block_size,
            dblocks,
            agblocks,
            agcount,
            sector_size,
            logstart: be64(s, 48),
            logblocks: be32(s, 96) as u64,
            agblklog,
            v5,
            rootino: be64(s, 56),
            inode_size,
            inopblog,
            dirblklog: (s[192] as u32).min(8),
            ftype: if v5 {
                incompat & 1 != 0
            } else {
                be32(s, 200) & 0x200 != 0
            },
            nrext64: incompat & 0x20 != 0,
            spinodes: incompat & 2 != 0,
            hidden_inodes: [64, 72, 160, 168, 232]
                .iter()
                .map(|&o| be64(s, o))
                .filter(|&i| i != 0 && i != u64::MAX)
                .collect(),
            label: String::from_utf8_lossy(&raw[..end]).into_owned(),
            uuid,
        })
    }

    pub(crate) fn ag_offset(&self, ag: u64) -> u64 {
        ag * self.agblocks * self.block_size
    }

    /// A filesystem block number (AG number in the high bits) as a byte offset.
    pub(crate) fn fsb_offset(&self, fsb: u64) -> Option<u64> {
        let ag = fsb >> self.agblklog;
        let bno = fsb & ((1u64 << self.agblklog) - 1);
        (ag < self.agcount && bno < self.agblocks)
            .then(|| (ag * self.agblocks + bno) * self.block_size)
    }
}

/// Reads an XFS filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let s = vol.read_vec(0, 512)?;
    let sb = Super::parse(&s)?;
    let bs = sb.block_size;
    let fs_bytes = sb.dblocks * bs;
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    let mut found = Found {
        kind: Some(FsKind::Xfs),
        label: Some(sb.label.clone()).filter(|l| !l.is_empty()),
        uuid: Some(super::uuid_string(&sb.uuid)),
        block_size: bs as u32,
        fs_bytes,
        ..Found::default()
    };
    let mut meta = Ranges::new();
    for ag in 0..sb.agcount {
        // Superblock copy, AGF, AGI, AGFL.
        let at = sb.ag_offset(ag);
        meta.add(at, at + (4 * sb.sector_size).max(bs));
    }
    let log = match (sb.logstart, sb.fsb_offset(sb.logstart)) {
        (0, _) => None, // external log
        (_, Some(off)) if off + sb.logblocks * bs <= fs_bytes => {
            meta.add(off, off + sb.logblocks * bs);
            Some((off, sb.logblocks * bs))
        }
        _ => return Err(Error::Corrupt("the internal log lies outside".into())),
    };
    found.metadata = meta.finish();
    if let Some((off, len)) = log {
        match log_is_clean(vol, off, len) {
            Ok(true) => {}
            Ok(false) => {
                found
                    .warnings
                    .push("the log needs recovery: run xfs_repair on a copy".into());
                found.allocated = Some(Err(
                    "the log needs recovery (unclean shutdown, or mounted): the free-space \
                     trees on disk may be stale"
                        .into(),
                ));
                return Ok(found);
            }
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                found.allocated = Some(Err(format!("the log cannot be read: {e}")));
                return Ok(found);
            }
        }
    } else {
        found
            .warnings
            .push("external log not checked: the free-space trees are trusted".into());
    }
    found.allocated = match allocation(vol, &sb, &mut found) {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(found)
}

fn allocation(vol: &mut Vol, sb: &Super, found: &mut Found) -> Result<Vec<(u64, u64)>, Error> {
    let bs = sb.block_size;
    let ss = sb.sector_size;
    let mut out = Ranges::new();
    let mut free_total = 0u64;
    for ag in 0..sb.agcount {
        let base = sb.ag_offset(ag);
        let agf = vol.read_vec(base + ss, ss)?;
        if agf.get(0..4) != Some(b"XAGF") || be32(&agf, 8) as u64 != ag {
            return Err(Error::Corrupt(format!("AG {ag}: bad AGF")));
        }
        let length = be32(&agf, 12) as u64;
        let expect_len = (sb.dblocks - ag * sb.agblocks).min(sb.agblocks);
        if length != expect_len {
            return Err(Error::Inconsistent(format!(
                "AG {ag}: AGF length {length}, expected {expect_len}"
            )));
        }
        let freeblks = be32(&agf, 52) as u64;
        let mut free = Ranges::new();
        let by_bno = tree_free(
            vol,
            sb,
            ag,
            be32(&agf, 16) as u64,
            be32(&agf, 28),
            false,
            length,
            &mut free,
        )?;
        let by_cnt = tree_free(
            vol,
            sb,
            ag,
            be32(&agf, 20) as u64,
            be32(&agf, 32),
            true,
            length,
            &mut Ranges::new(),
        )?;
        if by_bno != freeblks || by_cnt != freeblks {
            return Err(Error::Inconsistent(format!(
                "AG {ag}: the free-space trees list {by_bno} and {by_cnt} free blocks, the AGF \
                 says {freeblks}"
            )));
        }
        // The free list's blocks hold nothing either.
        let (first, last, count) = (
            be32(&agf, 40) as u64,
            be32(&agf, 44) as u64,
            be32(&agf, 48) as u64,
        );
        let agfl = vol.read_vec(base + 3 * ss, ss)?;
        let (hdr, slots) = if sb.v5 {
            if agfl.get(0..4) != Some(b"XAFL") {
                return Err(Error::Corrupt(format!("AG {ag}: bad AGFL")));
            }
            (36usize, (ss - 36) / 4)
        } else {
            (0, ss / 4)
        };
        if count > slots || (count > 0 && (first >= slots || last >= slots)) {
            return Err(Error::Corrupt(format!(
                "AG {ag}: free list indices out of range"
            )));
        }
        for k in 0..count {
            let slot = ((first + k) % slots) as usize;
            let b = be32(&agfl, hdr + 4 * slot) as u64;
            if b >= length {
                return Err(Error::Corrupt(format!(
                    "AG {ag}: free list block {b} outside"
                )));
            }
            free.add(b, b + 1);
        }
        free_total += freeblks + count;
        // Used = the AG minus its free blocks.
        let mut pos = 0u64;
        for (s, e) in free.finish() {
            if s > pos {
                out.add(base + pos * bs, base + s * bs);
            }
            pos = pos.max(e);
        }
        if pos < length {
            out.add(base + pos * bs, base + length * bs);
        }
    }
    found.used_bytes = Some((sb.dblocks.saturating_sub(free_total)) * bs);
    Ok(out.finish())
}

/// Walks a free-space B+tree of AG `ag` from `root` (`levels` deep), adding its extents to
/// `free` (AG block numbers) and returning the number of free blocks it lists.
#[allow(clippy::too_many_arguments)]
fn tree_free(
    vol: &mut Vol,
    sb: &Super,
    ag: u64,
    root: u64,
    levels: u32,
    by_count: bool,
    length: u64,
    free: &mut Ranges,
) -> Result<u64, Error> {
    let bs = sb.block_size;
    let (magic, hdr): (&[u8; 4], usize) = match (sb.v5, by_count) {
        (false, false) => (b"ABTB", 16),
        (false, true) => (b"ABTC", 16),
        (true, false) => (b"AB3B", 56),
        (true, true) => (b"AB3C", 56),
    };
    if levels == 0 || levels > 16 {
        return Err(Error::Corrupt(format!(
            "AG {ag}: free-space tree of {levels} levels"
        )));
    }
    let mut total = 0u64;
    let mut stack = vec![(root, levels - 1)];
    let mut visited = 0u64;
    while let Some((blk, level)) = stack.pop() {
        visited += 1;
        if blk == 0 || blk >= length || visited > length {
            return Err(Error::Corrupt(format!(
                "AG {ag}: free-space tree block {blk}"
            )));
        }
        let b = vol.read_vec(sb.ag_offset(ag) + blk * bs, bs)?;
        if b.get(0..4) != Some(magic) || be16(&b, 4) as u32 != level {
            return Err(Error::Corrupt(format!(
                "AG {ag}: bad free-space tree block {blk}"
            )));
        }
        let n = be16(&b, 6) as usize;
        if level == 0 {
            if hdr + 8 * n > bs as usize {
                return Err(Error::Corrupt(format!(
                    "AG {ag}: {n} records in block {blk}"
                )));
            }
            for i in 0..n {
                let (s, c) = (
                    be32(&b, hdr + 8 * i) as u64,
                    be32(&b, hdr + 8 * i + 4) as u64,
                );
                if c == 0 || s + c > length {
                    return Err(Error::Corrupt(format!("AG {ag}: free extent {s}+{c}")));
                }
                free.add(s, s + c);
                total += c;
            }
        } else {
            let maxrecs = (bs as usize - hdr) / 12;
            if n > maxrecs {
                return Err(Error::Corrupt(format!("AG {ag}: {n} keys in block {blk}")));
            }
            for i in 0..n {
                stack.push((be32(&b, hdr + 8 * maxrecs + 4 * i) as u64, level - 1));
            }
        }
    }
    Ok(total)
}

/// Whether the internal log at byte `off` (`len` bytes) was left clean: its head (where the
/// cycle number stamped on each 512-byte block drops) follows an unmount record.
fn log_is_clean(vol: &mut Vol, off: u64, len: u64) -> Result<bool, Error> {
    const MAGIC: u32 = 0xfeed_babe;
    let n = len / 512;
    if n < 2 {
        return Err(Error::Corrupt("log too small".into()));
    }
    let mut bb = [0u8; 512];
    let mut cycle = |vol: &mut Vol, k: u64| -> Result<(u32, bool), Error> {
        vol.read(off + k * 512, &mut bb)?;
        Ok(if be32(&bb, 0) == MAGIC {
            (be32(&bb, 4), true)
        } else {
            (be32(&bb, 0), false)
        })
    };
    let (c0, _) = cycle(vol, 0)?;
    let (clast, _) = cycle(vol, n - 1)?;
    // The head: the first block of a lower cycle (binary search), or the end if none.
    let head = if clast == c0 {
        n
    } else {
        let (mut lo, mut hi) = (0u64, n - 1); // cycle(lo) == c0, cycle(hi) != c0
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if cycle(vol, mid)?.0 == c0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    };
    if c0 == 0 {
        return Ok(false);
    }
    // The last record header before the head (records are at most 256 KiB + headers).
    let mut k = head;
    let mut steps = 0;
    let hdr = loop {
        if k == 0 || steps > 1024 {
            return Ok(false);
        }
        k -= 1;
        steps += 1;
        let (c, is_hdr) = cycle(vol, k)?;
        if is_hdr && c == c0 {
            let mut h = [0u8; 512];
            vol.read(off + k * 512, &mut h)?;
            break (k, h);
        }
    };
    let (k, h) = hdr;
    let num_ops = be32(&h, 40);
    let h_len = be32(&h, 12) as u64;
    let version = be32(&h, 8);
    let h_size = be32(&h, 320) as u64;
    let hblks = if version & 2 != 0 && h_size > 32768 {
        h_size.div_ceil(32768)
    } else {
        1
    };
    // The record must end at the head and hold one operation, the unmount transaction (its
    // tail LSN may point back to the last checkpoint: nothing after it needs replaying).
    if k + hblks + h_len.div_ceil(512) != head || num_ops != 1 {
        return Ok(false);
    }
    let mut op = [0u8; 512];
    vol.read(off + (k + hblks) * 512, &mut op)?;
    Ok(op[9] & 0x20 != 0)
}
