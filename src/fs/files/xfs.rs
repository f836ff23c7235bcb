//! XFS files: the directory tree from the root inode (shortform directories in the inode, block,
//! leaf, node and B+tree directories through their data blocks), each inode's data fork (extent
//! list in the inode, or a bmbt B+tree), and each AG's inode B+tree for in-use inodes no
//! directory reached.
//!
//! Inode numbers hold their place: AG number, block in the AG (`agblklog` bits), inode in the
//! block (`inopblog` bits). Unwritten extents read as zeros: nothing of them can be lost.

use super::super::vol::Vol;
use super::super::xfs::{be16, be32, be64, Super};
use super::super::Error;
use super::{Collector, DamagedDir};
use std::collections::{BTreeMap, HashSet};

/// Directory data blocks lie below this byte offset of the directory; leaf and free-index
/// blocks above it hold no names.
const DIR_LEAF_OFFSET: u64 = 32 << 30;
const S_IFMT: u16 = 0xf000;
const S_IFDIR: u16 = 0x4000;
const S_IFREG: u16 = 0x8000;
const S_IFLNK: u16 = 0xa000;
const FT_DIR: u8 = 2;

/// One data fork extent: file block, filesystem block, blocks, unwritten.
#[derive(Debug, Clone, Copy)]
struct Ext {
    off: u64,
    fsb: u64,
    count: u64,
    unwritten: bool,
}

struct Inode {
    mode: u16,
    format: u8,
    size: u64,
    nextents: u64,
    fork: Vec<u8>,
}

/// A fork's extents, and the file block ranges whose place is unknown (a bmbt block not
/// rescued).
#[derive(Default)]
struct Fork {
    exts: Vec<Ext>,
    unknown: Vec<(u64, u64)>,
    why: Option<String>,
}

struct Fs {
    sb: Super,
    bs: u64,
    /// Blocks left to read in B+trees and directories (bounded by the filesystem's size).
    budget: u64,
}

fn read_err(e: Error) -> Result<(), Error> {
    match e {
        Error::Read { gone: false, .. } => Ok(()),
        e => Err(e),
    }
}

impl Fs {
    fn inode_at(&self, ino: u64) -> Option<u64> {
        let sb = &self.sb;
        let shift = sb.agblklog + sb.inopblog;
        let ag = ino.checked_shr(shift)?;
        let agbno = (ino >> sb.inopblog) & ((1u64 << sb.agblklog) - 1);
        let slot = ino & ((1u64 << sb.inopblog) - 1);
        let block = ag.checked_mul(sb.agblocks)?.checked_add(agbno)?;
        (ag < sb.agcount && agbno < sb.agblocks && block < sb.dblocks)
            .then(|| block * self.bs + slot * sb.inode_size)
    }

    /// Reads an inode: Ok(None) when its bytes were not rescued.
    fn inode(&self, vol: &mut Vol, ino: u64) -> Result<Option<Inode>, Error> {
        let at = self
            .inode_at(ino)
            .ok_or_else(|| Error::Corrupt(format!("inode {ino} does not exist")))?;
        let b = match vol.read_vec(at, self.sb.inode_size) {
            Ok(b) => b,
            Err(e) => return read_err(e).map(|()| None),
        };
        if b.get(0..2) != Some(b"IN") {
            return Err(Error::Corrupt(format!("inode {ino}: bad magic")));
        }
        let version = b[4];
        let core = if version >= 3 { 176 } else { 100 };
        if version >= 3 && be64(&b, 152) != ino {
            return Err(Error::Corrupt(format!(
                "inode {ino} records inode number {}",
                be64(&b, 152)
            )));
        }
        let room = b.len() - core;
        let forkoff = b[82] as usize * 8;
        let len = if forkoff != 0 {
            forkoff.min(room)
        } else {
            room
        };
        let nrext64 = self.sb.nrext64 && version >= 3 && be64(&b, 120) & (1 << 4) != 0;
        Ok(Some(Inode {
            mode: be16(&b, 2),
            format: b[5],
            size: be64(&b, 56),
            nextents: if nrext64 {
                be64(&b, 24)
            } else {
                be32(&b, 76) as u64
            },
            fork: b[core..core + len].to_vec(),
        }))
    }

    fn decode(&self, recs: &[u8], n: usize, out: &mut Vec<Ext>) {
        for r in recs.chunks_exact(16).take(n) {
            let (l0, l1) = (be64(r, 0), be64(r, 8));
            out.push(Ext {
                off: (l0 & !(1u64 << 63)) >> 9,
                fsb: ((l0 & 0x1ff) << 43) | (l1 >> 21),
                count: l1 & 0x1f_ffff,
                unwritten: l0 >> 63 != 0,
            });
        }
    }

    /// The data fork's extents.
    fn fork(&mut self, vol: &mut Vol, ino: &Inode) -> Result<Fork, Error> {
        let mut f = Fork::default();
        match ino.format {
            0 | 1 => {} // device, or data in the inode
            2 => {
                let n = ino.nextents.min(ino.fork.len() as u64 / 16) as usize;
                self.decode(&ino.fork, n, &mut f.exts);
            }
            3 => {
                let level = be16(&ino.fork, 0) as u32;
                let n = be16(&ino.fork, 2) as usize;
                let maxrecs = ino.fork.len().saturating_sub(4) / 16;
                if level == 0 || level > 16 || n > maxrecs {
                    return Err(Error::Corrupt(format!(
                        "block map root of level {level} with {n} records"
                    )));
                }
                for i in 0..n {
                    let lo = be64(&ino.fork, 4 + 8 * i);
                    let hi = if i + 1 < n {
                        be64(&ino.fork, 4 + 8 * (i + 1))
                    } else {
                        u64::MAX
                    };
                    let ptr = be64(&ino.fork, 4 + 8 * maxrecs + 8 * i);
                    self.bmbt(vol, ptr, level - 1, (lo, hi), &mut f)?;
                }
            }
            k => return Err(Error::Corrupt(format!("unknown data fork format {k}"))),
        }
        Ok(f)
    }

    /// A bmbt block at `fsb` (`level` above the leaves) covering file blocks `range`.
    fn bmbt(
        &mut self,
        vol: &mut Vol,
        fsb: u64,
        level: u32,
        range: (u64, u64),
        f: &mut Fork,
    ) -> Result<(), Error> {
        let bs = self.bs;
        let at = self
            .sb
            .fsb_offset(fsb)
            .filter(|_| self.budget > 0)
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "block map points at block {fsb}, outside the filesystem"
                ))
            })?;
        self.budget -= 1;
        let b = match vol.read_vec(at, bs) {
            Ok(b) => b,
            Err(e) => {
                read_err(e)?;
                f.unknown.push(range);
                f.why
                    .get_or_insert(format!("its block map (block {fsb}) was not rescued"));
                return Ok(());
            }
        };
        let (magic, hdr): (&[u8], usize) = if self.sb.v5 {
            (b"BMA3", 72)
        } else {
            (b"BMAP", 24)
        };
        if b.get(0..4) != Some(magic) || be16(&b, 4) as u32 != level {
            return Err(Error::Corrupt(format!("bad block map block {fsb}")));
        }
        let n = be16(&b, 6) as usize;
        if level == 0 {
            if hdr + 16 * n > bs as usize {
                return Err(Error::Corrupt(format!(
                    "block map block {fsb}: {n} records"
                )));
            }
            self.decode(&b[hdr..], n, &mut f.exts);
            return Ok(());
        }
        let maxrecs = (bs as usize - hdr) / 16;
        if n > maxrecs {
            return Err(Error::Corrupt(format!("block map block {fsb}: {n} keys")));
        }
        for i in 0..n {
            let lo = be64(&b, hdr + 8 * i).max(range.0);
            let hi = if i + 1 < n {
                be64(&b, hdr + 8 * (i + 1))
            } else {
                range.1
            };
            let ptr = be64(&b, hdr + 8 * maxrecs + 8 * i);
            self.bmbt(vol, ptr, level - 1, (lo, hi.min(range.1)), f)?;
        }
        Ok(())
    }

    /// Partition offset of `count` blocks at `fsb`, if they lie in one AG.
    fn place(&self, fsb: u64, count: u64) -> Option<u64> {
        let last = fsb.checked_add(count.checked_sub(1)?)?;
        let at = self.sb.fsb_offset(fsb)?;
        let end = self.sb.fsb_offset(last)?;
        (end == at + (count - 1) * self.bs).then_some(at)
    }

    /// Checks a file's data against the unrescued bytes.
    fn check_file(
        &mut self,
        vol: &mut Vol,
        c: &mut Collector,
        path: &str,
        n: u64,
        ino: &Inode,
    ) -> Result<(), Error> {
        let size = ino.size;
        let f = match self.fork(vol, ino) {
            Ok(f) => f,
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                c.file(
                    path,
                    size,
                    &[],
                    vec![(0, size)],
                    Some(format!("inode {n}: {e}")),
                );
                return Ok(());
            }
        };
        let bs = self.bs;
        let mut runs = Vec::new();
        let mut bad_ext = None;
        for e in &f.exts {
            let fo = e.off.saturating_mul(bs);
            if e.unwritten || e.count == 0 || fo >= size {
                continue;
            }
            let Some(po) = self.place(e.fsb, e.count) else {
                bad_ext.get_or_insert(format!(
                    "an extent points at block {} (+{}), outside the filesystem",
                    e.fsb, e.count
                ));
                continue;
            };
            runs.push((fo, po, e.count.saturating_mul(bs).min(size - fo)));
        }
        let unlocated = f
            .unknown
            .iter()
            .map(|&(s, e)| {
                (
                    s.saturating_mul(bs).min(size),
                    e.saturating_mul(bs).min(size),
                )
            })
            .filter(|r| r.0 < r.1)
            .collect();
        if let Some(why) = &bad_ext {
            c.note(format!("{path}: {why}"));
        }
        c.file(path, size, &runs, unlocated, f.why);
        Ok(())
    }

    /// Calls `entry(inode, ftype, name)` for every name in directory `ino`; returns why some of
    /// its entries are unknown.
    fn entries(
        &mut self,
        vol: &mut Vol,
        ino: &Inode,
        entry: &mut dyn FnMut(u64, u8, &[u8]),
    ) -> Result<Option<String>, Error> {
        if ino.format == 1 {
            shortform(&ino.fork, self.sb.ftype, entry);
            return Ok(None);
        }
        let f = self.fork(vol, ino)?;
        let bs = self.bs;
        let per = 1u64 << self.sb.dirblklog;
        let dirblk = bs * per;
        // File block → filesystem block, for the data space only.
        let mut blocks: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for e in &f.exts {
            if e.off.saturating_mul(bs) < DIR_LEAF_OFFSET && e.count > 0 && !e.unwritten {
                blocks.insert(e.off, (e.fsb, e.count));
            }
        }
        let mut why = f
            .why
            .map(|w| format!("some of its entries are unknown: {w}"));
        let mut bad = 0u64;
        let mut corrupt = 0u64;
        let mut starts: Vec<u64> = Vec::new();
        for (&off, &(_, count)) in &blocks {
            let first = off.div_ceil(per) * per;
            let mut b = first;
            while b < off.saturating_add(count) && (b.saturating_mul(bs)) < DIR_LEAF_OFFSET {
                if self.budget == 0 {
                    return Err(Error::Corrupt(
                        "directories larger than the filesystem".into(),
                    ));
                }
                self.budget -= 1;
                starts.push(b);
                b += per;
            }
        }
        for start in starts {
            let mut data = Vec::with_capacity(dirblk as usize);
            let mut lost = false;
            for k in start..start + per {
                let Some((&o, &(fsb, count))) = blocks.range(..=k).next_back() else {
                    break;
                };
                let place = (k < o + count)
                    .then(|| self.sb.fsb_offset(fsb + (k - o)))
                    .flatten();
                let Some(at) = place else { break };
                match vol.read_vec(at, bs) {
                    Ok(v) => data.extend_from_slice(&v),
                    Err(e) => {
                        read_err(e)?;
                        lost = true;
                        break;
                    }
                }
            }
            if lost {
                bad += 1;
                continue;
            }
            if data.len() as u64 != dirblk || !self.data_block(&data, entry) {
                corrupt += 1;
            }
        }
        if bad > 0 {
            why = Some(format!(
                "{bad} of its blocks were not rescued: entries unknown"
            ));
        } else if corrupt > 0 {
            why.get_or_insert(format!("{corrupt} of its blocks do not parse"));
        }
        Ok(why)
    }

    /// The entries of one directory data block (block form or data form); false if it is not
    /// one.
    fn data_block(&self, b: &[u8], entry: &mut dyn FnMut(u64, u8, &[u8])) -> bool {
        let (hdr, block_form) = match b.get(0..4) {
            Some(b"XD2B") if !self.sb.v5 => (16, true),
            Some(b"XD2D") if !self.sb.v5 => (16, false),
            Some(b"XDB3") if self.sb.v5 => (64, true),
            Some(b"XDD3") if self.sb.v5 => (64, false),
            _ => return false,
        };
        let mut end = b.len();
        if block_form {
            // The leaf array and tail at the block's end.
            let count = be32(b, b.len() - 8) as usize;
            match b.len().checked_sub(8 + count.saturating_mul(8)) {
                Some(e) if e >= hdr => end = e,
                _ => return false,
            }
        }
        let ft = self.sb.ftype as usize;
        let mut p = hdr;
        while p + 8 <= end {
            if be16(b, p) == 0xffff {
                let len = be16(b, p + 2) as usize;
                if len < 8 || len % 8 != 0 {
                    return false;
                }
                p += len;
                continue;
            }
            let ino = be64(b, p);
            let nlen = b[p + 8] as usize;
            let size = (8 + 1 + nlen + ft + 2).div_ceil(8) * 8;
            if nlen == 0 || p + size > end {
                return false;
            }
            let name = &b[p + 9..p + 9 + nlen];
            let ftype = if ft == 1 { b[p + 9 + nlen] } else { 0 };
            entry(ino, ftype, name);
            p += size;
        }
        true
    }
}

/// The entries of a shortform directory (in the inode).
fn shortform(b: &[u8], ftype: bool, entry: &mut dyn FnMut(u64, u8, &[u8])) {
    let count = b.first().copied().unwrap_or(0) as usize;
    let i8 = b.get(1).copied().unwrap_or(0) != 0;
    let isz = if i8 { 8 } else { 4 };
    let ft = ftype as usize;
    let mut p = 2 + isz;
    for _ in 0..count {
        let Some(&nlen) = b.get(p) else { return };
        let nlen = nlen as usize;
        let name_at = p + 3;
        let ino_at = name_at + nlen + ft;
        if nlen == 0 || ino_at + isz > b.len() {
            return;
        }
        let ino = if i8 {
            be64(b, ino_at)
        } else {
            be32(b, ino_at) as u64
        };
        let t = if ft == 1 { b[name_at + nlen] } else { 0 };
        entry(ino, t, &b[name_at..name_at + nlen]);
        p = ino_at + isz;
    }
}

/// Walks the tree from the root inode, then the inode B+trees.
pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let s = vol.read_vec(0, 512)?;
    let sb = Super::parse(&s)?;
    if sb.inode_size << sb.inopblog != sb.block_size
        || !(256..=2048).contains(&sb.inode_size)
        || sb.agblklog + sb.inopblog > 63
    {
        return Err(Error::Corrupt(format!(
            "invalid inode size {} ({} per block)",
            sb.inode_size,
            1u64 << sb.inopblog.min(16)
        )));
    }
    let fs_bytes = sb.dblocks.saturating_mul(sb.block_size);
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition"
        )));
    }
    let mut fs = Fs {
        bs: sb.block_size,
        budget: sb.dblocks.saturating_mul(2).saturating_add(64),
        sb,
    };
    let root = fs.sb.rootino;
    let mut reached: HashSet<u64> = HashSet::new();
    reached.insert(root);
    // Directories to read: (inode, path).
    let mut todo: Vec<(u64, String)> = vec![(root, String::new())];
    while let Some((dino, dpath)) = todo.pop() {
        let shown = if dpath.is_empty() { "/" } else { &dpath };
        let Some(ino) = fs.inode(vol, dino)? else {
            c.unreadable_dir(shown, dino);
            continue;
        };
        c.checked += 1;
        let mut children: Vec<(u64, u8, String)> = Vec::new();
        let why = fs.entries(vol, &ino, &mut |child, ftype, name| {
            if name == b"." || name == b".." {
                return;
            }
            children.push((
                child,
                ftype,
                format!("{dpath}/{}", String::from_utf8_lossy(name)),
            ));
        });
        match why {
            Ok(None) => {}
            Ok(Some(why)) => c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason: why,
            }),
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason: format!("inode {dino}: {e}"),
            }),
        }
        for (child, ftype, path) in children {
            if fs.inode_at(child).is_none() {
                c.note(format!(
                    "{path}: entry names inode {child}, which does not exist"
                ));
                continue;
            }
            // A directory reached twice is a loop, a file reached twice a hard link: once.
            if !reached.insert(child) {
                continue;
            }
            let Some(ci) = fs.inode(vol, child)? else {
                if ftype == FT_DIR {
                    c.unreadable_dir(&path, child);
                } else {
                    c.unreadable_inodes += 1;
                    c.file(
                        &path,
                        0,
                        &[],
                        Vec::new(),
                        Some(format!("its inode {child} was not rescued")),
                    );
                }
                continue;
            };
            match ci.mode & S_IFMT {
                S_IFDIR => todo.push((child, path)),
                S_IFREG | S_IFLNK => fs.check_file(vol, c, &path, child, &ci)?,
                _ => c.checked += 1,
            }
        }
    }
    lost_names(&mut fs, vol, c, &reached)
}

/// In-use inodes (by each AG's inode B+tree) that no directory reached.
fn lost_names(
    fs: &mut Fs,
    vol: &mut Vol,
    c: &mut Collector,
    reached: &HashSet<u64>,
) -> Result<(), Error> {
    let sb = fs.sb.clone();
    let bs = fs.bs;
    let (magic, hdr): (&[u8], usize) = if sb.v5 { (b"IAB3", 56) } else { (b"IABT", 16) };
    let mut unnamed = Vec::new();
    for ag in 0..sb.agcount {
        let base = sb.ag_offset(ag);
        let agi = match vol.read_vec(base + 2 * sb.sector_size, sb.sector_size) {
            Ok(b) => b,
            Err(e) => {
                read_err(e)?;
                c.note(format!(
                    "AG {ag}: its AGI was not rescued: in-use inodes not listed"
                ));
                continue;
            }
        };
        if agi.get(0..4) != Some(b"XAGI") || be32(&agi, 8) as u64 != ag {
            c.note(format!("AG {ag}: bad AGI: in-use inodes not listed"));
            continue;
        }
        let levels = be32(&agi, 24);
        if levels == 0 || levels > 16 {
            c.note(format!("AG {ag}: inode B+tree of {levels} levels"));
            continue;
        }
        let mut stack = vec![(be32(&agi, 20) as u64, levels - 1)];
        let mut visited = 0u64;
        while let Some((blk, level)) = stack.pop() {
            visited += 1;
            if blk == 0 || blk >= sb.agblocks || visited > sb.agblocks {
                c.note(format!("AG {ag}: inode B+tree points at block {blk}"));
                break;
            }
            let b = match vol.read_vec(base + blk * bs, bs) {
                Ok(b) => b,
                Err(e) => {
                    read_err(e)?;
                    c.note(format!(
                        "AG {ag}: inode B+tree block {blk} was not rescued: the in-use \
                         inodes it lists are not counted"
                    ));
                    continue;
                }
            };
            if b.get(0..4) != Some(magic) || be16(&b, 4) as u32 != level {
                c.note(format!("AG {ag}: bad inode B+tree block {blk}"));
                continue;
            }
            let n = be16(&b, 6) as usize;
            if level > 0 {
                let maxrecs = (bs as usize - hdr) / 8;
                for i in 0..n.min(maxrecs) {
                    stack.push((be32(&b, hdr + 4 * maxrecs + 4 * i) as u64, level - 1));
                }
                continue;
            }
            for r in b[hdr..].chunks_exact(16).take(n) {
                let start = be32(r, 0) as u64;
                let holes = if sb.spinodes { be16(r, 4) } else { 0 };
                let free = be64(r, 8);
                for i in 0..64u64 {
                    if holes >> (i / 4) & 1 != 0 || free >> i & 1 != 0 {
                        continue;
                    }
                    let ino = (ag << (sb.agblklog + sb.inopblog)) | (start + i);
                    if reached.contains(&ino) || sb.hidden_inodes.contains(&ino) {
                        continue;
                    }
                    if fs.inode_at(ino).is_some() {
                        unnamed.push(ino);
                    }
                }
            }
            if unnamed.len() as u64 > sb.dblocks.saturating_mul(bs) / sb.inode_size {
                return Err(Error::Corrupt("more inodes than fit".into()));
            }
        }
    }
    c.lost_names += unnamed.len() as u64;
    for n in unnamed {
        let path = format!("<inode {n}>");
        match fs.inode(vol, n) {
            Ok(None) => {
                c.unreadable_inodes += 1;
                c.file(
                    &path,
                    0,
                    &[],
                    Vec::new(),
                    Some(format!("its inode {n} was not rescued")),
                );
            }
            Ok(Some(ino)) => match ino.mode & S_IFMT {
                S_IFDIR | S_IFREG | S_IFLNK => fs.check_file(vol, c, &path, n, &ino)?,
                _ => c.checked += 1,
            },
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => c.note(format!("{path}: {e}")),
        }
    }
    Ok(())
}
