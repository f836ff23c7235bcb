//! FAT12/16/32 files: the directory tree (long names included), each file's cluster chain.
//! A FAT sector lost in the first copy is read from the next copy.

use super::super::fat::{read_entries, Bpb};
use super::super::vol::{le16, le32, Vol};
use super::super::Error;
use super::{Collector, DamagedDir};

/// A FAT entry whose sectors were not rescued in any copy.
const UNKNOWN: u32 = u32::MAX;
const CHUNK: u64 = 256;

fn read_fat(vol: &mut Vol, b: &Bpb, c: &mut Collector) -> Result<Vec<u32>, Error> {
    let n = b.clusters() + 2;
    let mut fat = Vec::with_capacity(n as usize);
    let mut buf = Vec::new();
    let mut lost = 0u64;
    let mut from = 0;
    while from < n {
        let k = CHUNK.min(n - from);
        let mut got = false;
        for copy in 0..b.fats {
            match read_entries(vol, b, copy, from, k, &mut buf) {
                Ok(()) => {
                    got = true;
                    break;
                }
                Err(e) if e.is_gone() => return Err(e),
                Err(_) => {}
            }
        }
        if got {
            fat.extend_from_slice(&buf);
        } else {
            // Entry by entry, one copy after the other (each copy's sectors are read in order):
            // only the entries unrescued in every copy stay unknown.
            let mut part = vec![UNKNOWN; k as usize];
            for copy in 0..b.fats {
                for (j, v) in part.iter_mut().enumerate() {
                    if *v != UNKNOWN {
                        continue;
                    }
                    match read_entries(vol, b, copy, from + j as u64, 1, &mut buf) {
                        Ok(()) => *v = buf.first().copied().unwrap_or(UNKNOWN),
                        Err(e) if e.is_gone() => return Err(e),
                        Err(_) => {}
                    }
                }
            }
            lost += part.iter().filter(|&&v| v == UNKNOWN).count() as u64;
            fat.extend_from_slice(&part);
        }
        from += k;
    }
    if lost > 0 {
        c.note(format!(
            "{lost} FAT entries were not rescued in any FAT copy"
        ));
    }
    Ok(fat)
}

/// A chain: its clusters, and why it stopped early (unknown or invalid entry).
fn chain(b: &Bpb, fat: &[u32], start: u64, limit: u64) -> (Vec<u64>, Option<String>) {
    let eoc_min: u32 = match b.entry_bits() {
        12 => 0xff8,
        16 => 0xfff8,
        _ => 0x0fff_fff8,
    };
    let top = b.clusters() + 2;
    let mut out = Vec::new();
    let mut c = start;
    loop {
        if !(2..top).contains(&c) {
            return (
                out,
                Some(format!(
                    "its chain reaches cluster {c:#x}, outside the volume"
                )),
            );
        }
        out.push(c);
        // Enough clusters for the size (a directory's limit is the volume: a loop ends there).
        if out.len() as u64 >= limit {
            return (out, None);
        }
        let v = fat.get(c as usize).copied().unwrap_or(UNKNOWN);
        if v == UNKNOWN {
            return (
                out,
                Some(format!("the FAT entry of cluster {c} was not rescued")),
            );
        }
        if v >= eoc_min {
            return (out, None);
        }
        if v < 2 {
            return (out, Some(format!("cluster {c} is marked free in the FAT")));
        }
        c = v as u64;
    }
}

/// A directory entry.
struct Entry {
    name: String,
    dir: bool,
    first: u64,
    size: u64,
}

fn short_name(e: &[u8]) -> String {
    let base = String::from_utf8_lossy(&e[..8]).trim_end().to_string();
    let ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
    let mut base = if e[0] == 0x05 {
        format!("\u{e5}{}", &base[1..])
    } else {
        base
    };
    // Windows NT's lower-case flags.
    if e[12] & 0x08 != 0 {
        base = base.to_lowercase();
    }
    let ext = if e[12] & 0x10 != 0 {
        ext.to_lowercase()
    } else {
        ext
    };
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

fn lfn_checksum(e: &[u8]) -> u8 {
    e[..11]
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

/// Parses directory bytes; returns false at the end marker.
fn parse(
    data: &[u8],
    fat32: bool,
    lfn: &mut Vec<(u8, u8, Vec<u16>)>,
    out: &mut Vec<Entry>,
) -> bool {
    for e in data.chunks_exact(32) {
        match e[0] {
            0x00 => return false,
            0xe5 => {
                lfn.clear();
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3f == 0x0f {
            let units: Vec<u16> = [(1usize, 10usize), (14, 12), (28, 4)]
                .iter()
                .flat_map(|&(o, l)| {
                    e[o..o + l]
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                })
                .collect();
            if e[0] & 0x40 != 0 {
                lfn.clear();
            }
            lfn.push((e[0] & 0x3f, e[13], units));
            continue;
        }
        if attr & 0x08 != 0 || e[0] == b'.' {
            lfn.clear();
            continue;
        }
        let sum = lfn_checksum(e);
        let name = if !lfn.is_empty() && lfn.iter().all(|l| l.1 == sum) {
            let mut parts = std::mem::take(lfn);
            parts.sort_by_key(|p| p.0);
            let units: Vec<u16> = parts
                .into_iter()
                .flat_map(|p| p.2)
                .take_while(|&u| u != 0 && u != 0xffff)
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            lfn.clear();
            short_name(e)
        };
        let hi = if fat32 { le16(e, 20) as u64 } else { 0 };
        out.push(Entry {
            name,
            dir: attr & 0x10 != 0,
            first: hi << 16 | le16(e, 26) as u64,
            size: le32(e, 28) as u64,
        });
    }
    true
}

/// A directory to read: its path, its content's (offset, length) pieces, why it may be partial.
type DirTodo = (String, Vec<(u64, u64)>, Option<String>);

pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let sector = vol.read_vec(0, 512)?;
    let b = Bpb::parse(&sector)?;
    if b.total_sectors * b.bytes_per_sector > vol.len {
        return Err(Error::Corrupt(
            "the FAT volume is larger than its partition".into(),
        ));
    }
    let fat = read_fat(vol, &b, c)?;
    let cs = b.cluster_bytes();
    let top = b.clusters() + 2;
    let mut dir_seen = vec![false; top as usize];
    let mut owner = vec![false; top as usize];
    // Directories: (path, byte ranges of their content).
    let mut todo: Vec<DirTodo> = Vec::new();
    if b.fat32 {
        let (cl, why) = chain(&b, &fat, b.root_cluster, top);
        for &x in &cl {
            dir_seen[x as usize] = true;
        }
        todo.push((
            String::new(),
            cl.iter().map(|&x| (b.cluster_offset(x), cs)).collect(),
            why,
        ));
    } else {
        let at = (b.reserved + b.fats * b.fat_sectors) * b.bytes_per_sector;
        todo.push((
            String::new(),
            vec![(at, b.root_dir_sectors() * b.bytes_per_sector)],
            None,
        ));
    }
    while let Some((dpath, parts, why)) = todo.pop() {
        let shown = if dpath.is_empty() {
            "/".to_string()
        } else {
            dpath.clone()
        };
        c.checked += 1;
        if let Some(w) = why {
            c.dirs.push(DamagedDir {
                path: shown.clone(),
                reason: format!("entries may be missing: {w}"),
            });
        }
        let mut entries = Vec::new();
        let mut lfn = Vec::new();
        let mut bad = 0u64;
        for (s, len) in parts {
            match vol.read_vec(s, len) {
                Ok(data) => {
                    if !parse(&data, b.fat32, &mut lfn, &mut entries) {
                        break;
                    }
                }
                Err(e) if e.is_gone() => return Err(e),
                Err(_) => {
                    bad += 1;
                    lfn.clear();
                }
            }
        }
        if bad > 0 {
            c.dirs.push(DamagedDir {
                path: shown.clone(),
                reason: format!("{bad} of its clusters were not rescued: entries unknown"),
            });
        }
        for e in entries {
            let path = format!("{dpath}/{}", e.name);
            if e.dir {
                if e.first == 0 {
                    continue;
                }
                if dir_seen.get(e.first as usize).copied().unwrap_or(false) {
                    c.note(format!("{path}: directory already seen (a loop); skipped"));
                    continue;
                }
                let (cl, why) = chain(&b, &fat, e.first, top);
                let mut looped = None;
                let mut parts = Vec::new();
                for &x in &cl {
                    if std::mem::replace(&mut dir_seen[x as usize], true) {
                        looped = Some(format!("cluster {x} is shared with another directory"));
                        break;
                    }
                    parts.push((b.cluster_offset(x), cs));
                }
                todo.push((path, parts, why.or(looped)));
                continue;
            }
            let need = e.size.div_ceil(cs);
            if e.first == 0 || need == 0 {
                c.file(&path, e.size, &[], Vec::new(), None);
                continue;
            }
            let (cl, why) = chain(&b, &fat, e.first, need.min(top));
            let mut runs = Vec::with_capacity(cl.len());
            for (i, &x) in cl.iter().enumerate() {
                if std::mem::replace(&mut owner[x as usize], true) {
                    c.note(format!(
                        "{path}: cluster {x} is cross-linked with another file"
                    ));
                }
                let fo = i as u64 * cs;
                runs.push((fo, b.cluster_offset(x), cs.min(e.size - fo)));
            }
            let located = (cl.len() as u64 * cs).min(e.size);
            // An unrescued FAT entry hides where the rest lies; a chain broken otherwise is
            // corruption (noted), not a rescue loss.
            let (unloc, why) = match why {
                Some(w) if w.contains("not rescued") => (vec![(located, e.size)], Some(w)),
                Some(w) => {
                    if (cl.len() as u64) < need {
                        c.note(format!("{path}: {w}"));
                    }
                    (Vec::new(), None)
                }
                None => {
                    if (cl.len() as u64) < need {
                        c.note(format!("{path}: its chain is shorter than its size"));
                    }
                    (Vec::new(), None)
                }
            };
            c.file(
                &path,
                e.size,
                &runs,
                unloc.into_iter().filter(|r| r.0 < r.1).collect(),
                why,
            );
        }
    }
    Ok(())
}
