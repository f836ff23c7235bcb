//! ext2/3/4 files: the directory tree from the root inode, each inode's extent tree or block
//! map, and the inode bitmaps for in-use inodes no directory reached.

use super::super::ext::{read_layout, Group, Super};
use super::super::vol::{le16, le32, Vol};
use super::super::Error;
use super::{Collector, DamagedDir};

const ROOT: u64 = 2;
const FIRST_INO: u64 = 11;
const EXTENTS_FL: u32 = 0x80000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const EXTENT_MAGIC: u16 = 0xf30a;

struct Fs<'s> {
    sb: &'s Super,
    groups: &'s [Group],
}

/// A file's data: (file offset, partition offset, length) runs, and the file ranges whose place
/// is unknown.
#[derive(Default)]
struct Map {
    runs: Vec<(u64, u64, u64)>,
    unlocated: Vec<(u64, u64)>,
    why: Option<String>,
}

impl Fs<'_> {
    fn inode_at(&self, ino: u64) -> Option<u64> {
        let ipg = self.sb.inodes_per_group;
        if ino == 0 || ipg == 0 {
            return None;
        }
        let g = self.groups.get(((ino - 1) / ipg) as usize)?;
        let at = g
            .inode_table
            .checked_mul(self.sb.block_size)?
            .checked_add(((ino - 1) % ipg) * self.sb.inode_size)?;
        Some(at)
    }

    /// Reads an inode: Ok(None) when its bytes were not rescued.
    fn inode(&self, vol: &mut Vol, ino: u64) -> Result<Option<Vec<u8>>, Error> {
        let at = self
            .inode_at(ino)
            .ok_or_else(|| Error::Corrupt(format!("inode {ino} does not exist")))?;
        match vol.read_vec(at, self.sb.inode_size.clamp(128, 4096)) {
            Ok(v) => Ok(Some(v)),
            Err(e @ Error::Read { gone: true, .. }) => Err(e),
            Err(Error::Read { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn blocks(&self) -> u64 {
        self.sb.blocks
    }

    /// Where the inode's data lies.
    fn map(&self, vol: &mut Vol, ino: &[u8], size: u64) -> Result<Map, Error> {
        let flags = le32(ino, 0x20);
        let mut m = Map::default();
        if flags & INLINE_DATA_FL != 0 {
            return Ok(m);
        }
        let iblock = &ino[0x28..0x28 + 60];
        let mode = le16(ino, 0);
        // Fast symlinks keep their target in i_block.
        if mode & 0xf000 == 0xa000 && size < 60 && le32(ino, 0x1c) == 0 {
            return Ok(m);
        }
        let mut budget = self.blocks().saturating_add(16);
        if flags & EXTENTS_FL != 0 {
            self.extents(vol, iblock, 6, size, &mut m, &mut budget)?;
        } else {
            let bs = self.sb.block_size;
            for (i, p) in iblock.chunks_exact(4).take(12).enumerate() {
                self.push(&mut m, i as u64, le32(p, 0) as u64, 1, size);
            }
            let per = bs / 4;
            let mut first = 12u64;
            for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
                let span = per.saturating_pow(level);
                let ptr = le32(iblock, slot * 4) as u64;
                if ptr != 0 {
                    self.indirect(vol, ptr, level, first, size, &mut m, &mut budget)?;
                }
                first = first.saturating_add(span);
            }
        }
        Ok(m)
    }

    /// Adds a run of `len` blocks at file block `fb`, physical block `pb`, clipped to the size.
    fn push(&self, m: &mut Map, fb: u64, pb: u64, len: u64, size: u64) {
        let bs = self.sb.block_size;
        if pb == 0 || pb >= self.blocks() {
            return;
        }
        let len = len.min(self.blocks() - pb);
        let fo = fb.saturating_mul(bs);
        if fo >= size {
            return;
        }
        let bytes = len.saturating_mul(bs).min(size - fo);
        m.runs.push((fo, pb * bs, bytes));
    }

    fn unknown(&self, m: &mut Map, from_block: u64, blocks: u64, size: u64, why: String) {
        let bs = self.sb.block_size;
        let s = from_block.saturating_mul(bs).min(size);
        let e = from_block
            .saturating_add(blocks)
            .saturating_mul(bs)
            .min(size);
        if s < e {
            m.unlocated.push((s, e));
        }
        m.why.get_or_insert(why);
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        vol: &mut Vol,
        ptr: u64,
        level: u32,
        first: u64,
        size: u64,
        m: &mut Map,
        budget: &mut u64,
    ) -> Result<(), Error> {
        let bs = self.sb.block_size;
        let per = bs / 4;
        let span = per.saturating_pow(level);
        if ptr >= self.blocks() || *budget == 0 {
            return Err(Error::Corrupt(format!(
                "block map points at block {ptr}, outside the filesystem"
            )));
        }
        *budget -= 1;
        let blk = match vol.read_vec(ptr * bs, bs) {
            Ok(b) => b,
            Err(e @ Error::Read { gone: true, .. }) => return Err(e),
            Err(Error::Read { .. }) => {
                self.unknown(
                    m,
                    first,
                    span,
                    size,
                    format!("its block map (block {ptr}) was not rescued"),
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let sub = span / per;
        for (i, p) in blk.chunks_exact(4).enumerate() {
            let p = le32(p, 0) as u64;
            let fb = first.saturating_add(i as u64 * sub);
            if p == 0 || fb.saturating_mul(bs) >= size {
                continue;
            }
            if level == 1 {
                self.push(m, fb, p, 1, size);
            } else {
                self.indirect(vol, p, level - 1, fb, size, m, budget)?;
            }
        }
        Ok(())
    }

    fn extents(
        &self,
        vol: &mut Vol,
        node: &[u8],
        depth_left: u32,
        size: u64,
        m: &mut Map,
        budget: &mut u64,
    ) -> Result<(), Error> {
        if le16(node, 0) != EXTENT_MAGIC {
            return Err(Error::Corrupt("bad extent header".into()));
        }
        let entries = le16(node, 2) as usize;
        let depth = le16(node, 6) as u32;
        if depth >= depth_left || 12 + entries * 12 > node.len() {
            return Err(Error::Corrupt(format!(
                "extent node of depth {depth} with {entries} entries does not fit"
            )));
        }
        let bs = self.sb.block_size;
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            let lblock = le32(e, 0) as u64;
            if depth == 0 {
                let raw = le16(e, 4) as u64;
                // Uninitialized extents read as zeros: nothing of them can be lost.
                if raw > 32768 {
                    continue;
                }
                let pb = (le16(e, 6) as u64) << 32 | le32(e, 8) as u64;
                self.push(m, lblock, pb, raw, size);
            } else {
                let pb = (le16(e, 8) as u64) << 32 | le32(e, 4) as u64;
                if pb >= self.blocks() || *budget == 0 {
                    return Err(Error::Corrupt(format!(
                        "extent index points at block {pb}, outside the filesystem"
                    )));
                }
                *budget -= 1;
                match vol.read_vec(pb * bs, bs) {
                    Ok(child) => self.extents(vol, &child, depth, size, m, budget)?,
                    Err(e @ Error::Read { gone: true, .. }) => return Err(e),
                    Err(Error::Read { .. }) => {
                        let next = if i + 1 < entries {
                            le32(&node[24 + i * 12..], 0) as u64
                        } else {
                            size.div_ceil(bs)
                        };
                        self.unknown(
                            m,
                            lblock,
                            next.saturating_sub(lblock),
                            size,
                            format!("its extent tree block {pb} was not rescued"),
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

fn inode_size(ino: &[u8]) -> u64 {
    le32(ino, 4) as u64 | (le32(ino, 0x6c) as u64) << 32
}

/// Walks the tree from the root, then the inode bitmaps.
pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let (sb, groups) = read_layout(vol)?;
    let fs = Fs {
        sb: &sb,
        groups: &groups,
    };
    let total_inodes = sb.inodes_per_group.saturating_mul(sb.groups);
    // Every inode takes at least 128 bytes of the inode tables.
    if total_inodes > vol.len / 128 {
        return Err(Error::Corrupt(format!(
            "{total_inodes} inodes do not fit in the filesystem"
        )));
    }
    let mut reached = vec![false; (total_inodes + 1).min(1 << 32) as usize];
    let bs = sb.block_size;
    // Directories to read: (inode, path).
    let mut todo: Vec<(u64, String)> = vec![(ROOT, String::new())];
    if let Some(r) = reached.get_mut(ROOT as usize) {
        *r = true;
    }
    let mut pending: Vec<(u64, String)> = Vec::new();
    while let Some((dino, dpath)) = todo.pop() {
        let shown = if dpath.is_empty() { "/" } else { &dpath };
        let Some(ino) = fs.inode(vol, dino)? else {
            c.unreadable_dir(shown, dino);
            continue;
        };
        let size = inode_size(&ino);
        let map = match fs.map(vol, &ino, size) {
            Ok(m) => m,
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                c.dirs.push(DamagedDir {
                    path: shown.to_string(),
                    reason: format!("inode {dino}: {e}"),
                });
                continue;
            }
        };
        c.checked += 1;
        if let Some(why) = &map.why {
            c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason: format!("some of its entries are unknown: {why}"),
            });
        }
        let mut bad_blocks = 0u64;
        for &(_, po, len) in &map.runs {
            let mut off = 0;
            while off < len {
                let n = bs.min(len - off);
                let block = match vol.read_vec(po + off, n) {
                    Ok(b) => b,
                    Err(e) if e.is_gone() => return Err(e),
                    Err(_) => {
                        bad_blocks += 1;
                        off += n;
                        continue;
                    }
                };
                off += n;
                entries(&block, &mut |child, ftype, name| {
                    if name == b"." || name == b".." || child == 0 || child > total_inodes {
                        return;
                    }
                    let path = format!("{dpath}/{}", String::from_utf8_lossy(name));
                    let first = match reached.get_mut(child as usize) {
                        Some(r) => !std::mem::replace(r, true),
                        None => false,
                    };
                    if ftype == 2 {
                        // A directory reached twice is a loop: read it once.
                        if first {
                            todo.push((child, path));
                        }
                    } else {
                        pending.push((child, path));
                    }
                });
            }
        }
        if bad_blocks > 0 {
            c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason: format!("{bad_blocks} of its blocks were not rescued: entries unknown"),
            });
        }
        files(&fs, vol, c, &mut pending)?;
    }
    // In-use inodes no directory reached.
    let ipg = sb.inodes_per_group;
    let mut unnamed = Vec::new();
    for (g, gd) in groups.iter().enumerate() {
        if gd.flags & 1 != 0 {
            continue; // INODE_UNINIT: none in use
        }
        let bits = match vol.read_vec(gd.inode_bitmap.saturating_mul(bs), bs) {
            Ok(b) => b,
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                c.note(format!("group {g}: inode bitmap unknown ({e})"));
                continue;
            }
        };
        for i in 0..ipg.min(bs * 8) {
            if bits[(i / 8) as usize] >> (i % 8) & 1 == 0 {
                continue;
            }
            let ino = g as u64 * ipg + i + 1;
            if ino < FIRST_INO || reached.get(ino as usize).copied().unwrap_or(true) {
                continue;
            }
            unnamed.push((ino, format!("<inode {ino}>")));
        }
    }
    c.lost_names += unnamed.len() as u64;
    files(&fs, vol, c, &mut unnamed)?;
    Ok(())
}

/// Checks the files in `list` (and empties it).
fn files(
    fs: &Fs,
    vol: &mut Vol,
    c: &mut Collector,
    list: &mut Vec<(u64, String)>,
) -> Result<(), Error> {
    for (ino_n, path) in list.drain(..) {
        let Some(ino) = fs.inode(vol, ino_n)? else {
            c.unreadable_inodes += 1;
            c.file(
                &path,
                0,
                &[],
                Vec::new(),
                Some(format!("its inode {ino_n} was not rescued")),
            );
            continue;
        };
        let mode = le16(&ino, 0) & 0xf000;
        // Regular files and symlinks hold data; devices, fifos and sockets none.
        if mode != 0x8000 && mode != 0xa000 && mode != 0x4000 {
            c.checked += 1;
            continue;
        }
        let size = inode_size(&ino);
        match fs.map(vol, &ino, size) {
            Ok(m) => c.file(&path, size, &m.runs, m.unlocated, m.why),
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => c.file(
                &path,
                size,
                &[],
                vec![(0, size)],
                Some(format!("inode {ino_n}: {e}")),
            ),
        }
    }
    Ok(())
}

/// Calls `f(inode, file_type, name)` for each entry of a directory block.
fn entries(block: &[u8], f: &mut dyn FnMut(u64, u8, &[u8])) {
    let mut at = 0usize;
    while at + 8 <= block.len() {
        let ino = le32(block, at) as u64;
        let rec = le16(block, at + 4) as usize;
        let nlen = block[at + 6] as usize;
        let ftype = block[at + 7];
        if rec < 8 || at + rec > block.len() {
            return;
        }
        if ino != 0 && 8 + nlen <= rec {
            f(ino, ftype, &block[at + 8..at + 8 + nlen]);
        }
        at += rec;
    }
}
