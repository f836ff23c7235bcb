//! exFAT files: directory entry sets (file, stream extension, names) from the root, each
//! stream's clusters (contiguous, or through the FAT).

use super::super::exfat::Boot;
use super::super::vol::Vol;
use super::super::Error;
use super::{Collector, DamagedDir};

/// Clusters of a stream: the ones located, and why the rest is not (an unrescued FAT entry).
fn clusters(
    vol: &mut Vol,
    b: &Boot,
    first: u64,
    n: u64,
    contiguous: bool,
    steps: &mut u64,
) -> Result<(Vec<u64>, Option<String>), Error> {
    let top = b.clusters + 2;
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    if first < 2
        || first
            .checked_add(if contiguous { n } else { 1 })
            .is_none_or(|e| e > top)
    {
        return Err(Error::Corrupt(format!(
            "a stream of {n} clusters at cluster {first} lies outside the heap"
        )));
    }
    if contiguous {
        return Ok(((first..first + n).collect(), None));
    }
    let fat = b.fat_offset * b.bytes_per_sector;
    let mut out = Vec::new();
    let mut c = first;
    let mut e = [0u8; 4];
    loop {
        if !(2..top).contains(&c) {
            return Err(Error::Corrupt(format!(
                "the chain from cluster {first} reaches cluster {c:#x}"
            )));
        }
        *steps = steps
            .checked_sub(1)
            .ok_or_else(|| Error::Corrupt("chains add up to more than the volume".into()))?;
        out.push(c);
        if out.len() as u64 >= n {
            break;
        }
        match vol.read(fat + c * 4, &mut e) {
            Ok(()) => {}
            Err(e) if e.is_gone() => return Err(e),
            Err(Error::Read { .. }) => {
                return Ok((
                    out,
                    Some(format!("the FAT entry of cluster {c} was not rescued")),
                ))
            }
            Err(e) => return Err(e),
        }
        let next = u32::from_le_bytes(e) as u64;
        if next >= 0xffff_fff7 {
            return Err(Error::Corrupt(format!(
                "the chain from cluster {first} ends after {} of {n} clusters",
                out.len()
            )));
        }
        c = next;
    }
    Ok((out, None))
}

pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let s = vol.read_vec(0, 512)?;
    let b = Boot::parse(&s)?;
    let cs = b.cluster_bytes;
    let mut steps = b.clusters.saturating_mul(2);
    let (root, why) = root_chain(vol, &b)?;
    let mut seen = std::collections::HashSet::new();
    seen.insert(b.root_cluster);
    let mut dirs: Vec<(String, Vec<u64>, Option<String>)> = vec![(String::new(), root, why)];
    let mut budget = b.clusters;
    while let Some((path, cl, why)) = dirs.pop() {
        let shown = if path.is_empty() {
            "/".to_string()
        } else {
            path.clone()
        };
        c.checked += 1;
        if let Some(w) = why {
            c.dirs.push(DamagedDir {
                path: shown.clone(),
                reason: format!("entries may be missing: {w}"),
            });
        }
        budget = budget
            .checked_sub(cl.len() as u64)
            .ok_or_else(|| Error::Corrupt("the directory tree is larger than the volume".into()))?;
        let mut data = Vec::new();
        let mut bad = 0;
        for &x in &cl {
            match vol.read_vec(b.cluster_offset(x), cs) {
                Ok(d) => data.extend(d),
                Err(e) if e.is_gone() => return Err(e),
                Err(_) => {
                    bad += 1;
                    // Unknown entries: a run of unused ones keeps the sets apart.
                    data.extend(std::iter::repeat_n(0xffu8, cs as usize));
                }
            }
            if data.len() as u64 > super::super::vol::MAX_BUF {
                return Err(Error::Unsupported(format!(
                    "directory {shown} is too large"
                )));
            }
        }
        if bad > 0 {
            c.dirs.push(DamagedDir {
                path: shown.clone(),
                reason: format!("{bad} of its clusters were not rescued: entries unknown"),
            });
        }
        for set in crate::fs::exfat::entry_sets(&data) {
            let set = match set {
                Ok(set) => set,
                Err(why) => {
                    c.note(format!("{shown}: {why}"));
                    continue;
                }
            };
            let name = &set.name;
            let fpath = format!("{path}/{name}");
            let (first, len, is_dir) = (set.first_cluster, set.data_length, set.is_dir);
            let n = if set.allocated() { len.div_ceil(cs) } else { 0 };
            if n > b.clusters {
                c.note(format!("{fpath}: {len} bytes is more than the volume"));
                continue;
            }
            let (cl, why) = match clusters(vol, &b, first, n, set.contiguous(), &mut steps) {
                Ok(r) => r,
                Err(e) if e.is_gone() => return Err(e),
                Err(e) => {
                    c.note(format!("{fpath}: {e}"));
                    continue;
                }
            };
            if is_dir {
                if n > 0 && seen.insert(first) {
                    dirs.push((fpath, cl, why));
                } else if n > 0 {
                    c.note(format!("{fpath}: directory already seen (a loop); skipped"));
                }
                continue;
            }
            let runs: Vec<(u64, u64, u64)> = cl
                .iter()
                .enumerate()
                .map(|(k, &x)| {
                    let fo = k as u64 * cs;
                    (fo, b.cluster_offset(x), cs.min(len - fo))
                })
                .collect();
            let located = (cl.len() as u64 * cs).min(len);
            let unloc = if why.is_some() && located < len {
                vec![(located, len)]
            } else {
                Vec::new()
            };
            c.file(&fpath, len, &runs, unloc, why);
        }
    }
    Ok(())
}

/// The root directory's chain, to its end marker (its length is not recorded anywhere), and
/// why it stops early.
fn root_chain(vol: &mut Vol, b: &Boot) -> Result<(Vec<u64>, Option<String>), Error> {
    let fat = b.fat_offset * b.bytes_per_sector;
    let mut out = Vec::new();
    let mut c = b.root_cluster;
    let mut e = [0u8; 4];
    while (2..b.clusters + 2).contains(&c) && (out.len() as u64) < b.clusters {
        out.push(c);
        match vol.read(fat + c * 4, &mut e) {
            Ok(()) => {}
            Err(e) if e.is_gone() => return Err(e),
            Err(Error::Read { .. }) => {
                return Ok((
                    out,
                    Some(format!("the FAT entry of cluster {c} was not rescued")),
                ))
            }
            Err(e) => return Err(e),
        }
        c = u32::from_le_bytes(e) as u64;
    }
    Ok((out, None))
}
