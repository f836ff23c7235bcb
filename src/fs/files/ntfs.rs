//! NTFS files: every in-use MFT record (extension records joined to their base record through
//! the base reference), names and parents from `$FILE_NAME`, data from the unnamed `$DATA`'s
//! runs (resident data lives in its record). A record that was not rescued is counted; files
//! under it keep their own name, their parent shown as `<record N>`.

use super::super::ntfs::{fixup, load_mft, parse_record, Boot, AT_DATA, AT_FILE_NAME, ROOT_RECORD};
use super::super::vol::{le16, le64, Vol};
use super::super::Error;
use super::Collector;
use std::collections::HashMap;

#[derive(Default)]
struct Rec {
    /// (parent, name), the Win32 or POSIX name preferred over the DOS one.
    name: Option<(u64, String, u8)>,
    dir: bool,
    size: u64,
    /// (file offset, partition offset, length)
    runs: Vec<(u64, u64, u64)>,
}

pub fn walk(vol: &mut Vol, c: &mut Collector) -> Result<(), Error> {
    let s = vol.read_vec(0, 512)?;
    let b = Boot::parse(&s)?;
    let (mft, _) = load_mft(vol, &b)?;
    let cl = b.clusters();
    let mut recs: HashMap<u64, Rec> = HashMap::new();
    let mut unreadable = std::collections::HashSet::new();
    for n in 0..mft.records {
        let mut raw = match mft.record(vol, &b, n) {
            Ok(r) => r,
            Err(e) if e.is_gone() => return Err(e),
            Err(Error::Read { .. }) => {
                unreadable.insert(n);
                continue;
            }
            Err(e) => {
                c.note(format!("MFT record {n}: {e}"));
                continue;
            }
        };
        if &raw[0..4] != b"FILE" || le16(&raw, 0x16) & 1 == 0 {
            continue;
        }
        if fixup(&mut raw).is_err() {
            c.note(format!("MFT record {n}: bad update sequence"));
            continue;
        }
        let Ok(Some((flags, attrs))) = parse_record(&raw, cl) else {
            c.note(format!("MFT record {n} does not parse"));
            continue;
        };
        let base = le64(&raw, 0x20) & 0xffff_ffff_ffff;
        let owner = if base != 0 { base } else { n };
        let r = recs.entry(owner).or_default();
        if base == 0 {
            r.dir = flags & 2 != 0;
        }
        for a in &attrs {
            if a.kind == AT_FILE_NAME {
                if let Some(v) = &a.value {
                    let parent = le64(v, 0) & 0xffff_ffff_ffff;
                    let len = v.get(0x40).copied().unwrap_or(0) as usize;
                    let ns = v.get(0x41).copied().unwrap_or(0);
                    let name = v
                        .get(0x42..0x42 + 2 * len)
                        .map(super::super::utf16_name)
                        .unwrap_or_default();
                    if r.name.as_ref().is_none_or(|x| x.2 == 2) {
                        r.name = Some((parent, name, ns));
                    }
                }
            }
            if a.kind == AT_DATA && !a.named && a.value.is_none() {
                r.size = r.size.max(a.data_size);
                for run in &a.runs {
                    if let Some(lcn) = run.lcn {
                        r.runs
                            .push((run.vcn * b.cluster, lcn * b.cluster, run.len * b.cluster));
                    }
                }
            }
            if a.kind == AT_DATA && !a.named {
                if let Some(v) = &a.value {
                    r.size = r.size.max(v.len() as u64);
                }
            }
        }
    }
    c.unreadable_inodes += unreadable.len() as u64;
    let path_of = |n: u64| -> String {
        let mut parts = Vec::new();
        let mut at = n;
        for _ in 0..256 {
            if at == ROOT_RECORD {
                break;
            }
            match recs.get(&at).and_then(|r| r.name.as_ref()) {
                Some((p, name, _)) => {
                    parts.push(name.clone());
                    at = *p;
                }
                None => {
                    parts.push(format!("<record {at}>"));
                    break;
                }
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    };
    let mut out = Vec::new();
    for (&n, r) in &recs {
        // The system files ($MFT, $Bitmap...) are metadata, reported by their bytes.
        if n < 16 || r.dir {
            continue;
        }
        let size = r.size;
        let runs: Vec<(u64, u64, u64)> = r
            .runs
            .iter()
            .filter(|x| x.0 < size)
            .map(|&(fo, po, len)| (fo, po, len.min(size - fo)))
            .collect();
        out.push((path_of(n), size, runs));
    }
    out.sort();
    for (path, size, runs) in out {
        if path.contains("<record ") {
            c.lost_names += 1;
        }
        c.file(&path, size, &runs, Vec::new(), None);
    }
    Ok(())
}
