//! ext2, ext3 and ext4: the superblock, the group descriptors and each group's block bitmap.
//!
//! Layout (from the ext4 on-disk format documentation): the superblock is 1024 bytes at byte
//! 1024; the filesystem is split into block groups of `blocks_per_group` blocks, each with a
//! block bitmap (one bit per block, or per cluster with bigalloc), an inode bitmap and an inode
//! table, whose locations the group descriptors give (with flex_bg they sit together in the
//! first group of each flex group). Superblock backups and descriptor copies sit at the start
//! of groups 0, 1 and powers of 3, 5, 7 (sparse_super) or the two groups named by sparse_super2.
//! With meta_bg, descriptor blocks live in the first, second and last group of each meta group.
//! A group flagged BLOCK_UNINIT has no bitmap on disk: its only used blocks are its superblock
//! backup and descriptors plus any group's bitmaps and inode table that lie in it.
//!
//! Cross-checks: every group's bitmap must agree with the free count in its descriptor, and the
//! sum with the superblock's free count; otherwise the partition is used whole. A journal that
//! still has to be replayed (needs_recovery: a crash, or a mounted filesystem) means the newest
//! bitmaps may be in the journal (jbd2: descriptor blocks whose tags name the home block of each
//! logged block): every logged copy of a block bitmap is added to the one on disk, which gives a
//! superset of the state after replay; the counts are stale then and not compared. A journal
//! that cannot be read that way gives the whole partition.

use super::vol::{bitmap_runs, le16, le32, Ranges, Vol};
use super::{Error, Found, FsKind};

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const RO_SPARSE_SUPER: u32 = 0x1;
const RO_GDT_CSUM: u32 = 0x10;
const RO_BIGALLOC: u32 = 0x200;
const RO_METADATA_CSUM: u32 = 0x400;
const BG_BLOCK_UNINIT: u16 = 0x2;

/// More groups than this (512 TiB with 4 KiB blocks) are not read: descriptors are kept in memory.
const MAX_GROUPS: u64 = 1 << 22;

/// The superblock fields this module uses.
#[derive(Debug, Clone)]
pub struct Super {
    pub block_size: u64,
    /// Blocks per bitmap bit (1 without bigalloc).
    pub ratio: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub clusters_per_group: u64,
    pub inodes_per_group: u64,
    pub inode_size: u64,
    pub groups: u64,
    pub desc_size: u64,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub reserved_gdt: u64,
    pub first_meta_bg: u64,
    pub backup_bgs: [u64; 2],
    pub state: u16,
    pub journal_inum: u32,
    pub label: String,
    pub uuid: [u8; 16],
    jnl_blocks: Vec<u8>,
}

/// One group descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free: u64,
    pub flags: u16,
    pub itable_unused: u64,
}

impl Super {
    pub fn parse(sb: &[u8]) -> Result<Super, Error> {
        if le16(sb, 0x38) != 0xef53 {
            return Err(Error::Corrupt("no ext2/3/4 superblock magic".into()));
        }
        let log_block = le32(sb, 0x18);
        if log_block > 6 {
            return Err(Error::Corrupt(format!(
                "block size 2^{} KiB is invalid",
                log_block
            )));
        }
        let block_size = 1024u64 << log_block;
        let compat = le32(sb, 0x5c);
        let incompat = le32(sb, 0x60);
        let ro_compat = le32(sb, 0x64);
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let hi = |lo: u32, off: usize| -> u64 {
            lo as u64
                | if is64 {
                    (le32(sb, off) as u64) << 32
                } else {
                    0
                }
        };
        let blocks = hi(le32(sb, 0x4), 0x150);
        let free_blocks = hi(le32(sb, 0xc), 0x158);
        let first_data_block = le32(sb, 0x14) as u64;
        let ratio = if ro_compat & RO_BIGALLOC != 0 {
            let log_cluster = le32(sb, 0x1c);
            if log_cluster < log_block || log_cluster - log_block > 16 {
                return Err(Error::Corrupt("invalid bigalloc cluster size".into()));
            }
            1u64 << (log_cluster - log_block)
        } else {
            1
        };
        let blocks_per_group = le32(sb, 0x20) as u64;
        let clusters_per_group = if ratio > 1 {
            le32(sb, 0x24) as u64
        } else {
            blocks_per_group
        };
        if clusters_per_group == 0
            || clusters_per_group > 8 * block_size
            || clusters_per_group % 8 != 0
            || blocks_per_group != clusters_per_group * ratio
        {
            return Err(Error::Corrupt(format!(
                "invalid blocks per group ({blocks_per_group}, {clusters_per_group} clusters)"
            )));
        }
        if blocks == 0 || first_data_block >= blocks || first_data_block > 1 {
            return Err(Error::Corrupt(format!(
                "invalid block count {blocks} / first data block {first_data_block}"
            )));
        }
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        let rev = le32(sb, 0x4c);
        let inode_size = if rev == 0 { 128 } else { le16(sb, 0x58) as u64 };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(Error::Corrupt(format!("invalid inode size {inode_size}")));
        }
        let desc_size = if is64 { le16(sb, 0xfe) as u64 } else { 32 };
        if desc_size < 32 || !desc_size.is_power_of_two() || desc_size > block_size {
            return Err(Error::Corrupt(format!(
                "invalid group descriptor size {desc_size}"
            )));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[0x68..0x78]);
        let label = {
            let raw = &sb[0x78..0x88];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        Ok(Super {
            block_size,
            ratio,
            blocks,
            free_blocks,
            first_data_block,
            blocks_per_group,
            clusters_per_group,
            inodes_per_group: le32(sb, 0x28) as u64,
            inode_size,
            groups,
            desc_size,
            compat,
            incompat,
            ro_compat,
            reserved_gdt: le16(sb, 0xce) as u64,
            first_meta_bg: le32(sb, 0x104) as u64,
            backup_bgs: [le32(sb, 0x24c) as u64, le32(sb, 0x250) as u64],
            state: le16(sb, 0x3a),
            journal_inum: le32(sb, 0xe0),
            label,
            uuid,
            jnl_blocks: sb[0x10c..0x10c + 68].to_vec(),
        })
    }

    pub fn kind(&self) -> FsKind {
        if self.incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG) != 0 {
            FsKind::Ext4
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            FsKind::Ext3
        } else {
            FsKind::Ext2
        }
    }

    fn meta_bg(&self) -> bool {
        self.incompat & INCOMPAT_META_BG != 0
    }

    fn descs_per_block(&self) -> u64 {
        self.block_size / self.desc_size
    }

    /// Blocks of the descriptor table (without meta_bg).
    fn desc_blocks(&self) -> u64 {
        self.groups.div_ceil(self.descs_per_block())
    }

    pub fn group_start(&self, g: u64) -> u64 {
        self.first_data_block + g * self.blocks_per_group
    }

    pub fn group_blocks(&self, g: u64) -> u64 {
        (self.blocks - self.group_start(g)).min(self.blocks_per_group)
    }

    /// Whether group `g` holds a superblock backup.
    pub fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if g == 1 || self.ro_compat & RO_SPARSE_SUPER == 0 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&b| {
            let mut x = g;
            while x % b == 0 {
                x /= b;
            }
            x == 1
        })
    }

    /// The block of the superblock (copy) at the start of group `g`: the primary one is at byte
    /// 1024 whatever the block size and first data block (0 with bigalloc).
    fn super_block(&self, g: u64) -> u64 {
        if g == 0 {
            1024 / self.block_size
        } else {
            self.group_start(g)
        }
    }

    /// The first block after group `g`'s superblock copy, or its first block without one.
    fn after_super(&self, g: u64) -> u64 {
        if self.has_super(g) {
            self.super_block(g) + 1
        } else {
            self.group_start(g)
        }
    }

    /// The block holding group `g`'s descriptor, and the byte offset in it.
    fn desc_location(&self, g: u64) -> (u64, u64) {
        let dpb = self.descs_per_block();
        let m = g / dpb;
        let within = (g % dpb) * self.desc_size;
        if !self.meta_bg() || m < self.first_meta_bg {
            (self.super_block(0) + 1 + m, within)
        } else {
            (self.after_super(m * dpb), within)
        }
    }

    /// The superblock backup and descriptor blocks at the start of group `g` (block ranges).
    fn super_and_descs(&self, g: u64, out: &mut Ranges) {
        if self.has_super(g) {
            let old_desc = if self.meta_bg() {
                self.first_meta_bg
            } else {
                self.desc_blocks() + self.reserved_gdt
            };
            let sb = self.super_block(g);
            out.add(sb, sb + 1 + old_desc);
        }
        if self.meta_bg() {
            let dpb = self.descs_per_block();
            if g / dpb >= self.first_meta_bg {
                let r = g % dpb;
                if r == 0 || r == 1 || r == dpb - 1 {
                    let b = self.after_super(g);
                    out.add(b, b + 1);
                }
            }
        }
    }

    fn inode_table_blocks(&self) -> u64 {
        (self.inodes_per_group * self.inode_size).div_ceil(self.block_size)
    }

    fn csum_groups(&self) -> bool {
        self.ro_compat & (RO_GDT_CSUM | RO_METADATA_CSUM) != 0
    }
}

fn parse_group(d: &[u8], is64: bool) -> Group {
    let hi32 = |lo: u32, off: usize| -> u64 {
        lo as u64 | if is64 { (le32(d, off) as u64) << 32 } else { 0 }
    };
    let hi16 = |lo: u16, off: usize| -> u64 {
        lo as u64 | if is64 { (le16(d, off) as u64) << 16 } else { 0 }
    };
    Group {
        block_bitmap: hi32(le32(d, 0), 0x20),
        inode_bitmap: hi32(le32(d, 4), 0x24),
        inode_table: hi32(le32(d, 8), 0x28),
        free: hi16(le16(d, 0xc), 0x2c),
        flags: le16(d, 0x12),
        itable_unused: hi16(le16(d, 0x1c), 0x32),
    }
}

/// Reads the superblock and all group descriptors.
pub fn read_layout(vol: &mut Vol) -> Result<(Super, Vec<Group>), Error> {
    let sb_bytes = vol.read_vec(1024, 1024)?;
    let sb = Super::parse(&sb_bytes)?;
    let fs_bytes = sb.blocks.saturating_mul(sb.block_size);
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    if sb.groups > MAX_GROUPS {
        return Err(Error::Unsupported(format!(
            "{} block groups is more than this reader handles",
            sb.groups
        )));
    }
    let is64 = sb.incompat & INCOMPAT_64BIT != 0;
    let mut groups = Vec::with_capacity(sb.groups as usize);
    let mut block = vec![0u8; sb.block_size as usize];
    let mut cached = u64::MAX;
    for g in 0..sb.groups {
        let (b, within) = sb.desc_location(g);
        if b >= sb.blocks {
            return Err(Error::Corrupt(format!(
                "descriptor of group {g} would be at block {b}, past the end"
            )));
        }
        if b != cached {
            vol.read(b * sb.block_size, &mut block)?;
            cached = b;
        }
        let d = &block[within as usize..(within + sb.desc_size) as usize];
        groups.push(parse_group(d, is64));
    }
    Ok((sb, groups))
}

/// Reads an ext2/3/4 filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let (sb, groups) = read_layout(vol)?;
    let bs = sb.block_size;
    let mut found = Found {
        kind: Some(sb.kind()),
        label: Some(sb.label.clone()).filter(|l| !l.is_empty()),
        uuid: Some(super::uuid_string(&sb.uuid)),
        block_size: (bs * sb.ratio) as u32,
        fs_bytes: sb.blocks * bs,
        used_bytes: sb
            .blocks
            .checked_sub(sb.free_blocks)
            .map(|u| u.saturating_mul(bs)),
        ..Found::default()
    };
    if sb.state & 1 == 0 {
        found
            .warnings
            .push("not cleanly unmounted (state not clean)".into());
    }
    if sb.state & 2 != 0 {
        found.warnings.push("the filesystem recorded errors".into());
    }
    if sb.incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(Error::Unsupported("an external journal device".into()));
    }

    // Metadata of every group, in blocks: what BLOCK_UNINIT groups hold, and the metadata list.
    let itb = sb.inode_table_blocks();
    let mut owned = Ranges::new();
    let mut meta = Ranges::new();
    owned.add(0, sb.first_data_block.max(1));
    for (g, gd) in groups.iter().enumerate() {
        let g = g as u64;
        sb.super_and_descs(g, &mut owned);
        for (what, at, n) in [
            ("block bitmap", gd.block_bitmap, 1),
            ("inode bitmap", gd.inode_bitmap, 1),
            ("inode table", gd.inode_table, itb),
        ] {
            if at < sb.first_data_block || at.checked_add(n).is_none_or(|e| e > sb.blocks) {
                return Err(Error::Corrupt(format!(
                    "group {g}: {what} at block {at} lies outside the filesystem"
                )));
            }
            owned.add(at, at + n);
        }
        // Metadata: the descriptors, bitmaps and the used part of the inode table.
        let used_inodes = if sb.csum_groups() {
            sb.inodes_per_group.saturating_sub(gd.itable_unused)
        } else {
            sb.inodes_per_group
        };
        let used_itb = (used_inodes * sb.inode_size).div_ceil(bs);
        meta.add(gd.block_bitmap, gd.block_bitmap + 1);
        meta.add(gd.inode_bitmap, gd.inode_bitmap + 1);
        meta.add(gd.inode_table, gd.inode_table + used_itb);
    }
    let owned = owned.finish();
    let mut sbd = Ranges::new();
    for g in 0..sb.groups {
        sb.super_and_descs(g, &mut sbd);
    }
    for (s, e) in sbd.finish() {
        meta.add(s, e);
    }
    meta.add(0, sb.first_data_block.max(1));
    journal_extents(&sb, &mut meta);
    found.metadata = meta
        .finish()
        .into_iter()
        .map(|(s, e)| (s * bs, e.min(sb.blocks) * bs))
        .collect();

    // A journal still to be replayed: the newest bitmaps may be in it. Every copy of a block
    // bitmap the journal holds is added to the bitmap on disk (a superset of the state after
    // replay); the free counts are stale then and not compared.
    let mut logged = std::collections::HashMap::new();
    let recovering = sb.incompat & INCOMPAT_RECOVER != 0;
    if recovering {
        found.warnings.push(
            "the journal needs recovery (unclean shutdown, or mounted): bitmaps taken from the \
             journal too; run e2fsck on a copy"
                .into(),
        );
        match journal_bitmaps(vol, &sb, &groups) {
            Ok(l) => logged = l,
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                found.allocated = Some(Err(format!(
                    "the journal needs recovery and cannot be read: {e}"
                )));
                return Ok(found);
            }
        }
    }
    let mut unread = Vec::new();
    let allocated = allocation(vol, &sb, &groups, &owned, &logged, !recovering, &mut unread);
    if let Some(first) = unread.first() {
        found.warnings.push(format!(
            "the block bitmap of {} group(s) is unreadable (first: group {first}); those groups \
             are counted as wholly used",
            unread.len()
        ));
    }
    found.allocated = match allocated {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(found)
}

/// The allocated byte ranges from the block bitmaps, checked against the free counts.
fn allocation(
    vol: &mut Vol,
    sb: &Super,
    groups: &[Group],
    owned: &[(u64, u64)],
    logged: &std::collections::HashMap<u64, Vec<u8>>,
    check_counts: bool,
    unread: &mut Vec<u64>,
) -> Result<Vec<(u64, u64)>, Error> {
    let bs = sb.block_size;
    let cluster = bs * sb.ratio;
    let mut out = Ranges::new();
    // Blocks before the first group (the boot block with 1 KiB blocks).
    out.add(0, sb.first_data_block * bs);
    let mut bitmap = vec![0u8; bs as usize];
    let mut used_total = 0u64;
    let mut clusters_total = 0u64;
    for (g, gd) in groups.iter().enumerate() {
        let g = g as u64;
        let start = sb.group_start(g);
        let nblocks = sb.group_blocks(g);
        let nclusters = nblocks.div_ceil(sb.ratio);
        clusters_total += nclusters;
        if let Some(copies) = logged.get(&g) {
            let mut m = vec![0u8; bs as usize];
            if !(gd.flags & BG_BLOCK_UNINIT != 0 && sb.csum_groups()) {
                vol.read(gd.block_bitmap * bs, &mut m)?;
            }
            for (a, b) in m.iter_mut().zip(copies) {
                *a |= b;
            }
            bitmap_runs(&m, nclusters, 0, cluster, start * bs, &mut out);
        }
        let used = if gd.flags & BG_BLOCK_UNINIT != 0 && sb.csum_groups() {
            // No bitmap on disk: the group's own superblock/descriptors and any metadata in it.
            let end = start + nblocks;
            let i = owned.partition_point(|r| r.1 <= start);
            let mut used = 0u64;
            for &(s, e) in &owned[i..] {
                if s >= end {
                    break;
                }
                let (s, e) = (s.max(start), e.min(end));
                // Whole clusters, relative to the group.
                let cs = (s - start) / sb.ratio;
                let ce = (e - start).div_ceil(sb.ratio);
                out.add(start * bs + cs * cluster, start * bs + ce * cluster);
                used += ce - cs;
            }
            used
        } else {
            match vol.read(gd.block_bitmap * bs, &mut bitmap) {
                Ok(()) => bitmap_runs(&bitmap, nclusters, 0, cluster, start * bs, &mut out),
                Err(Error::Read { gone: false, .. }) => {
                    // A bitmap that cannot be read: the whole group counts as used (never
                    // leaves a byte out), and its descriptor's count stands for it.
                    unread.push(g);
                    out.add(start * bs, (start + nblocks) * bs);
                    nclusters.saturating_sub(gd.free)
                }
                Err(e) => return Err(e),
            }
        };
        let expect = nclusters.checked_sub(gd.free).ok_or_else(|| {
            Error::Inconsistent(format!(
                "group {g}: free count {} exceeds its {nclusters} clusters",
                gd.free
            ))
        })?;
        if used != expect && check_counts {
            return Err(Error::Inconsistent(format!(
                "group {g}: the block bitmap marks {used} clusters used, its descriptor says \
                 {expect} (free count {})",
                gd.free
            )));
        }
        used_total += used;
    }
    let free_clusters = clusters_total - used_total;
    if free_clusters * sb.ratio != sb.free_blocks && check_counts {
        return Err(Error::Inconsistent(format!(
            "the bitmaps have {} free blocks, the superblock says {}",
            free_clusters * sb.ratio,
            sb.free_blocks
        )));
    }
    let mut v = out.finish();
    // Bigalloc rounding may pass the end of the filesystem.
    let fs_end = sb.blocks * bs;
    v.retain_mut(|r| {
        r.1 = r.1.min(fs_end);
        r.0 < r.1
    });
    Ok(v)
}

const JBD2_MAGIC: u32 = 0xc03b_3998;

fn be32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// Every copy of a block bitmap logged in the journal, by group: descriptor blocks anywhere in
/// the journal (a data block that starts with the magic is stored escaped, so a linear scan finds
/// only real descriptors), and the data blocks their tags describe. Old, revoked and uncommitted
/// copies are included: the union is a superset of what a replay would leave.
fn journal_bitmaps(
    vol: &mut Vol,
    sb: &Super,
    groups: &[Group],
) -> Result<std::collections::HashMap<u64, Vec<u8>>, Error> {
    let bs = sb.block_size;
    // (first logical block, physical start, length), from the extent list.
    let j = &sb.jnl_blocks;
    if sb.compat & COMPAT_HAS_JOURNAL == 0 || le16(j, 0) != 0xf30a || le16(j, 6) != 0 {
        return Err(Error::Unsupported(
            "the journal is not an extent list the superblock records".into(),
        ));
    }
    let mut map: Vec<(u64, u64, u64)> = Vec::new();
    for i in 0..(le16(j, 2) as usize).min(4) {
        let e = 12 + 12 * i;
        let len = le16(j, e + 4) as u64 & 0x7fff;
        let phys = ((le16(j, e + 6) as u64) << 32) | le32(j, e + 8) as u64;
        if phys.checked_add(len).is_none_or(|x| x > sb.blocks) {
            return Err(Error::Corrupt(
                "journal extent outside the filesystem".into(),
            ));
        }
        map.push((le32(j, e) as u64, phys, len));
    }
    let phys = |l: u64| -> Option<u64> {
        map.iter()
            .find(|&&(s, _, n)| s <= l && l < s + n)
            .map(|&(s, p, _)| p + (l - s))
    };
    let mut block = vec![0u8; bs as usize];
    let jsb_at = phys(0).ok_or_else(|| Error::Corrupt("journal has no block 0".into()))?;
    vol.read(jsb_at * bs, &mut block)?;
    let btype = be32(&block, 4);
    if be32(&block, 0) != JBD2_MAGIC || !(btype == 3 || btype == 4) {
        return Err(Error::Corrupt("no journal superblock".into()));
    }
    if be32(&block, 12) as u64 != bs {
        return Err(Error::Unsupported("journal block size differs".into()));
    }
    let maxlen = be32(&block, 16) as u64;
    let first = be32(&block, 20) as u64;
    let incompat = if btype == 4 { be32(&block, 40) } else { 0 };
    let (is64, csum2, csum3) = (
        incompat & 0x2 != 0,
        incompat & 0x8 != 0,
        incompat & 0x10 != 0,
    );
    let tag_bytes: usize = if csum3 {
        16
    } else {
        let t = if csum2 { 14 } else { 12 };
        if is64 {
            t
        } else {
            t - 4
        }
    };
    let tail = if csum2 || csum3 { 4 } else { 0 };
    let mapped: u64 = map.iter().map(|m| m.2).sum();
    if first == 0 || first >= maxlen || maxlen > mapped {
        return Err(Error::Corrupt("journal superblock geometry".into()));
    }
    let bitmap_of: std::collections::HashMap<u64, u64> = groups
        .iter()
        .enumerate()
        .map(|(g, gd)| (gd.block_bitmap, g as u64))
        .collect();
    // One accumulated bitmap per logged group (memory: at most one block per group).
    let mut out: std::collections::HashMap<u64, Vec<u8>> = Default::default();
    let mut data = vec![0u8; bs as usize];
    for jb in first..maxlen {
        let p = phys(jb).ok_or_else(|| Error::Corrupt("journal block unmapped".into()))?;
        vol.read(p * bs, &mut block)?;
        if be32(&block, 0) != JBD2_MAGIC || be32(&block, 4) != 1 {
            continue;
        }
        let mut off = 12usize;
        let mut k = 0u64;
        while off + tag_bytes <= block.len() - tail {
            let t = &block[off..off + tag_bytes];
            let (lo, flags, hi) = if csum3 {
                (be32(t, 0) as u64, be32(t, 4), be32(t, 8) as u64)
            } else {
                let flags = u16::from_be_bytes([t[6], t[7]]) as u32;
                (
                    be32(t, 0) as u64,
                    flags,
                    if is64 { be32(t, 8) as u64 } else { 0 },
                )
            };
            let target = lo | if is64 { hi << 32 } else { 0 };
            if let Some(&g) = bitmap_of.get(&target) {
                let mut idx = jb + 1 + k;
                if idx >= maxlen {
                    idx = first + (idx - maxlen) % (maxlen - first);
                }
                let dp =
                    phys(idx).ok_or_else(|| Error::Corrupt("journal block unmapped".into()))?;
                vol.read(dp * bs, &mut data)?;
                if flags & 1 != 0 {
                    data[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
                }
                let acc = out.entry(g).or_insert_with(|| vec![0u8; bs as usize]);
                for (a, b) in acc.iter_mut().zip(&data) {
                    *a |= b;
                }
            }
            off += tag_bytes;
            if flags & 2 == 0 {
                off += 16;
            }
            k += 1;
            if flags & 8 != 0 {
                break;
            }
        }
    }
    Ok(out)
}

/// The journal's extents, from the superblock's backup of the journal inode's block map
/// (s_jnl_blocks), when it is an extent tree of depth 0.
fn journal_extents(sb: &Super, meta: &mut Ranges) {
    if sb.compat & COMPAT_HAS_JOURNAL == 0 || sb.journal_inum == 0 {
        return;
    }
    let j = &sb.jnl_blocks;
    if le16(j, 0) != 0xf30a || le16(j, 6) != 0 {
        return;
    }
    let entries = (le16(j, 2) as usize).min(4);
    for i in 0..entries {
        let e = 12 + 12 * i;
        let len = le16(j, e + 4) as u64 & 0x7fff;
        let start = ((le16(j, e + 6) as u64) << 32) | le32(j, e + 8) as u64;
        if start < sb.blocks {
            meta.add(start, (start + len).min(sb.blocks));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(bs_log: u32, blocks: u32, bpg: u32) -> Vec<u8> {
        let mut s = vec![0u8; 1024];
        s[0x38..0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        s[0x18..0x1c].copy_from_slice(&bs_log.to_le_bytes());
        s[0x4..0x8].copy_from_slice(&blocks.to_le_bytes());
        s[0x14..0x18].copy_from_slice(&u32::from(bs_log == 0).to_le_bytes());
        s[0x20..0x24].copy_from_slice(&bpg.to_le_bytes());
        s[0x4c] = 1;
        s[0x58..0x5a].copy_from_slice(&256u16.to_le_bytes());
        s[0x64] = RO_SPARSE_SUPER as u8;
        s
    }

    #[test]
    fn sparse_super_groups() {
        let s = Super::parse(&sb(2, 1 << 20, 32768)).expect("sb");
        let with: Vec<u64> = (0..32).filter(|&g| s.has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27]);
        assert_eq!(s.groups, 32);
        assert_eq!(s.super_block(0), 0);
        let s1 = Super::parse(&sb(0, 8192 * 4, 8192)).expect("sb");
        assert_eq!(s1.super_block(0), 1);
        assert_eq!(s1.desc_location(0), (2, 0));
    }

    #[test]
    fn hostile_superblocks() {
        assert!(
            Super::parse(&sb(7, 1000, 8192)).is_err(),
            "block size 128 KiB"
        );
        assert!(Super::parse(&sb(2, 1000, 0)).is_err(), "0 blocks per group");
        assert!(
            Super::parse(&sb(2, 1000, 40000)).is_err(),
            "group larger than a bitmap"
        );
        assert!(Super::parse(&sb(2, 0, 32768)).is_err(), "no blocks");
        let mut s = sb(2, 1000, 32768);
        s[0x58] = 100;
        assert!(Super::parse(&s).is_err(), "inode size");
    }
}
