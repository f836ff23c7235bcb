//! btrfs files (one device): the FS tree (subvolume 5) from the root tree, its INODE_ITEMs,
//! DIR_INDEX / DIR_ITEM entries from directory 256 down, and each file's EXTENT_DATA items.
//!
//! Regular extents map file offsets to logical addresses (`disk_bytenr + offset`, `num_bytes`),
//! then through the chunk map to the device; a byte is lost only when every copy (DUP) of it
//! is. A compressed extent needs its whole on-disk extent for any byte: damage anywhere in it
//! loses the file range it covers. Inline extents live in the leaf, prealloc extents hold no
//! data. A tree node with no readable copy hides the items of its key range: the inodes whose
//! items lived there are unreadable, their directories' entries or files' extents unknown.

use super::super::btrfs::{open, Fs, Key};
use super::super::vol::{le16, le32, le64, Ranges, Vol};
use super::super::Error;
use super::{Collector, DamagedDir};
use std::collections::{HashMap, HashSet};

const INODE_ITEM: u8 = 1;
const DIR_ITEM: u8 = 84;
const DIR_INDEX: u8 = 96;
const EXTENT_DATA: u8 = 108;
const ROOT_ITEM: u8 = 132;
const FS_TREE: u64 = 5;
const ROOT_DIR: u64 = 256;
/// Objectids from here up are the kernel's special ones (orphans, free inode cache...).
const LAST_FREE: u64 = u64::MAX - 255;
const FT_DIR: u8 = 2;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// One EXTENT_DATA item: file offset, and where its bytes are.
enum Extent {
    /// In the leaf, or preallocated (zeros), or a hole.
    NoDevice,
    Regular {
        /// Logical address of the file bytes (uncompressed) or of the whole on-disk extent.
        logical: u64,
        disk_len: u64,
        /// Bytes of the file it covers.
        len: u64,
        compressed: bool,
    },
}

/// A subtree that could not be read: its key range and address.
struct Lost {
    lo: Key,
    hi: Key,
    at: u64,
}

#[derive(Default)]
struct Tree {
    /// objectid → (size, mode).
    inodes: HashMap<u64, (u64, u32)>,
    /// directory → (child objectid, is a subvolume, entry type, name).
    entries: HashMap<u64, Vec<(u64, bool, u8, String)>>,
    extents: HashMap<u64, Vec<(u64, Extent)>>,
    lost: Vec<Lost>,
}

impl Tree {
    /// The lost node hiding any key of `oid` with `ty` and an offset in `[off_lo, off_hi]`.
    fn hidden(&self, oid: u64, ty: u8, off_lo: u64, off_hi: u64) -> Option<&Lost> {
        self.lost
            .iter()
            .find(|l| l.lo <= (oid, ty, off_hi) && (oid, ty, off_lo) < l.hi)
    }

    /// File ranges whose extent items are hidden, and the node that hid them.
    fn hidden_extents(&self, oid: u64, size: u64) -> (Vec<(u64, u64)>, Option<u64>) {
        let mut out = Vec::new();
        let mut at = None;
        for l in &self.lost {
            if !(l.lo <= (oid, EXTENT_DATA, u64::MAX) && (oid, EXTENT_DATA, 0) < l.hi) {
                continue;
            }
            let s = if l.lo >= (oid, EXTENT_DATA, 0) {
                l.lo.2
            } else {
                0
            };
            let e = if l.hi <= (oid, EXTENT_DATA, u64::MAX) {
                l.hi.2
            } else {
                u64::MAX
            };
            let (s, e) = (s.min(size), e.min(size));
            at.get_or_insert(l.at);
            if s < e {
                out.push((s, e));
            }
        }
        (out, at)
    }
}

fn parse_extent(d: &[u8]) -> Extent {
    let ty = d.get(20).copied().unwrap_or(0);
    let bytenr = le64(d, 21);
    if ty != 1 || bytenr == 0 || d.len() < 53 {
        return Extent::NoDevice;
    }
    let compressed = d[16] != 0;
    let (disk_len, offset, len) = (le64(d, 29), le64(d, 37), le64(d, 45));
    if compressed {
        Extent::Regular {
            logical: bytenr,
            disk_len,
            len,
            compressed,
        }
    } else {
        Extent::Regular {
            logical: bytenr.saturating_add(offset),
            disk_len: len,
            len,
            compressed,
        }
    }
}

/// Calls `f(location objectid, location type, entry type, name)` for each entry of a
/// DIR_ITEM / DIR_INDEX item.
type EntryFn<'a> = dyn FnMut(u64, u8, u8, &[u8]) + 'a;

fn dir_entries(d: &[u8], f: &mut EntryFn) {
    let mut p = 0usize;
    while p + 30 <= d.len() {
        let (oid, kty) = (le64(d, p), d[p + 8]);
        let data_len = le16(d, p + 25) as usize;
        let name_len = le16(d, p + 27) as usize;
        let ty = d[p + 29];
        let name_at = p + 30;
        let Some(name) = d.get(name_at..name_at + name_len) else {
            return;
        };
        f(oid, kty, ty, name);
        p = name_at + name_len + data_len;
    }
}

/// The bytes of the logical range `[logical, logical + len)` lost in every copy, as offsets
/// from `logical`; None when it is not (wholly) in a chunk.
fn lost_logical(fs: &Fs, c: &Collector, logical: u64, len: u64) -> Option<Vec<(u64, u64)>> {
    let mut out = Ranges::new();
    let mut pos = 0u64;
    while pos < len {
        let (chunk, off) = fs.map(logical.checked_add(pos)?)?;
        let n = (chunk.length - off).min(len - pos);
        // Lost in the first copy, then kept only where every other copy is lost too.
        let mut lost: Vec<(u64, u64)> = c
            .bad_in(chunk.stripes[0] + off, chunk.stripes[0] + off + n)
            .into_iter()
            .map(|(s, e)| (s - chunk.stripes[0] - off, e - chunk.stripes[0] - off))
            .collect();
        for &st in &chunk.stripes[1..] {
            let other: Vec<(u64, u64)> = c
                .bad_in(st + off, st + off + n)
                .into_iter()
                .map(|(s, e)| (s - st - off, e - st - off))
                .collect();
            lost = intersect(&lost, &other);
        }
        for (s, e) in lost {
            out.add(pos + s, pos + e);
        }
        pos += n;
    }
    Some(out.finish())
}

fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Reads a whole tree into memory (bounded: its items fit in its nodes, which fit on the
/// device), with the key ranges of the nodes that could not be read.
fn read_tree(fs: &Fs, vol: &mut Vol, root: u64, c: &mut Collector) -> Result<Tree, Error> {
    let mut t = Tree::default();
    let mut lost = Vec::new();
    let mut notes = Vec::new();
    fs.walk_keys(
        vol,
        root,
        &mut |(oid, ty, off), d| {
            match ty {
                INODE_ITEM => {
                    t.inodes.insert(oid, (le64(d, 16), le32(d, 52)));
                }
                DIR_ITEM | DIR_INDEX => {
                    let list = t.entries.entry(oid).or_default();
                    dir_entries(d, &mut |child, kty, ety, name| {
                        let name = String::from_utf8_lossy(name).into_owned();
                        list.push((child, kty == ROOT_ITEM, ety, name));
                    });
                }
                EXTENT_DATA => t
                    .extents
                    .entry(oid)
                    .or_default()
                    .push((off, parse_extent(d))),
                _ => {}
            }
            Ok(())
        },
        &mut |lo, hi, at, e| {
            notes.push(format!("tree node {at} could not be read ({e})"));
            lost.push(Lost { lo, hi, at });
            Ok(())
        },
    )?;
    for n in notes {
        c.note(n);
    }
    t.lost = lost;
    for list in t.entries.values_mut() {
        // Each name is in a DIR_INDEX and a DIR_ITEM: once.
        list.sort();
        list.dedup();
    }
    Ok(t)
}

fn check_file(fs: &Fs, t: &Tree, c: &mut Collector, path: &str, oid: u64, size: u64) {
    let (mut lost, hidden_at) = t.hidden_extents(oid, size);
    let mut why = hidden_at.map(|at| format!("its extent items (tree node {at}) were not rescued"));
    for (fo, e) in t.extents.get(&oid).map(|v| v.as_slice()).unwrap_or(&[]) {
        let Extent::Regular {
            logical,
            disk_len,
            len,
            compressed,
        } = *e
        else {
            continue;
        };
        let fo = *fo;
        if fo >= size {
            continue;
        }
        let file_len = len.min(size - fo);
        let check_len = if compressed { disk_len } else { file_len };
        match lost_logical(fs, c, logical, check_len) {
            None => {
                why.get_or_insert(format!(
                    "an extent at logical {logical} is outside every chunk"
                ));
                lost.push((fo, fo + file_len));
            }
            Some(l) if compressed => {
                if !l.is_empty() {
                    lost.push((fo, fo + file_len));
                }
            }
            Some(l) => lost.extend(l.into_iter().map(|(s, e)| (fo + s, fo + e.min(file_len)))),
        }
    }
    c.file(path, size, &[], lost, why);
}

/// Walks the FS tree from its root directory.
pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let (mut fs, sb) = open(vol)?;
    fs.any_copy = true;
    let mut fs_root = None;
    let mut subvols = 0u64;
    fs.walk_keys(
        vol,
        le64(&sb, 0x50),
        &mut |(oid, ty, _), d| {
            if ty == ROOT_ITEM {
                if oid == FS_TREE {
                    fs_root = Some(le64(d, 176));
                } else if (ROOT_DIR..LAST_FREE).contains(&oid) {
                    subvols += 1;
                }
            }
            Ok(())
        },
        &mut |_, _, at, e| {
            c.note(format!("root tree node {at} could not be read ({e})"));
            Ok(())
        },
    )?;
    let root = fs_root.ok_or_else(|| {
        Error::Corrupt("the FS tree's root item is unknown (root tree not rescued?)".into())
    })?;
    if subvols > 0 {
        c.note(format!(
            "{subvols} other subvolumes or snapshots are not read: only the top-level one"
        ));
    }
    let t = read_tree(&fs, vol, root, c)?;
    let mut reached: HashSet<u64> = HashSet::from([ROOT_DIR]);
    let mut todo: Vec<(u64, String)> = vec![(ROOT_DIR, String::new())];
    while let Some((dir, dpath)) = todo.pop() {
        let shown = if dpath.is_empty() { "/" } else { &dpath };
        if !t.inodes.contains_key(&dir) {
            let reason = match t.hidden(dir, INODE_ITEM, 0, 0) {
                Some(l) => {
                    c.unreadable_inodes += 1;
                    format!(
                        "its inode item (tree node {}) was not rescued: its entries are unknown",
                        l.at
                    )
                }
                None => format!("inode {dir} has no inode item"),
            };
            c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason,
            });
            continue;
        }
        c.checked += 1;
        // Every name is in both a DIR_INDEX and a DIR_ITEM: unknown only when both are hidden.
        let by_index = t.hidden(dir, DIR_INDEX, 0, u64::MAX);
        let by_name = t.hidden(dir, DIR_ITEM, 0, u64::MAX);
        if let (Some(a), Some(_)) = (by_index, by_name) {
            c.dirs.push(DamagedDir {
                path: shown.to_string(),
                reason: format!(
                    "its entries (tree node {}) were not rescued: entries unknown",
                    a.at
                ),
            });
        }
        let empty = Vec::new();
        for (child, subvol, ety, name) in t.entries.get(&dir).unwrap_or(&empty) {
            let path = format!("{dpath}/{name}");
            if *subvol {
                c.note(format!("{path}: subvolume {child} not read"));
                continue;
            }
            if !(ROOT_DIR..LAST_FREE).contains(child) || !reached.insert(*child) {
                continue;
            }
            let Some(&(size, mode)) = t.inodes.get(child) else {
                match t.hidden(*child, INODE_ITEM, 0, 0) {
                    Some(l) => {
                        c.unreadable_inodes += 1;
                        let why = format!("its inode item (tree node {}) was not rescued", l.at);
                        if *ety == FT_DIR {
                            c.dirs.push(DamagedDir {
                                path,
                                reason: format!("{why}: its entries are unknown"),
                            });
                        } else {
                            c.file(&path, 0, &[], Vec::new(), Some(why));
                        }
                    }
                    None => c.note(format!("{path}: inode {child} has no inode item")),
                }
                continue;
            };
            match mode & S_IFMT {
                S_IFDIR => todo.push((*child, path)),
                S_IFREG | S_IFLNK => check_file(&fs, &t, c, &path, *child, size),
                _ => c.checked += 1,
            }
        }
    }
    // Inodes no directory reached.
    let mut unnamed: Vec<(u64, u64, u32)> = t
        .inodes
        .iter()
        .filter(|(oid, _)| (ROOT_DIR..LAST_FREE).contains(*oid) && !reached.contains(*oid))
        .map(|(&oid, &(size, mode))| (oid, size, mode))
        .collect();
    unnamed.sort_unstable();
    c.lost_names += unnamed.len() as u64;
    for (oid, size, mode) in unnamed {
        match mode & S_IFMT {
            S_IFDIR | S_IFREG | S_IFLNK => {
                check_file(&fs, &t, c, &format!("<inode {oid}>"), oid, size)
            }
            _ => c.checked += 1,
        }
    }
    if !t.lost.is_empty() {
        c.note(format!(
            "{} FS tree nodes could not be read: inodes whose items lived only there are not counted",
            t.lost.len()
        ));
    }
    Ok(())
}
