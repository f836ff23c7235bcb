//! NTFS: the boot sector, the MFT, `$Bitmap`, and every file record's data runs as a check.
//!
//! Layout (from the NTFS documentation of the Linux-NTFS project and Microsoft's file record
//! descriptions): the boot sector gives the cluster size, the volume's sector count, where the
//! MFT starts and the file record size. Each file record ("FILE", protected by an update
//! sequence array every 512 bytes) holds attributes; a non-resident attribute's content is
//! described by data runs (length, and a signed cluster offset from the previous run; no offset
//! = sparse). Record 0 is `$MFT` itself (its `$DATA` runs locate all records, its `$BITMAP` says
//! which are in use), 1 `$MFTMirr`, 2 `$LogFile`, 3 `$Volume` (label, dirty flag), 6 `$Bitmap`
//! (one bit per cluster of the volume).
//!
//! Used: the clusters set in `$Bitmap`. Cross-check against `$MFT`: every cluster that an in-use
//! file record's non-resident attribute occupies must be set in `$Bitmap`; otherwise the
//! partition is used whole. (NTFS keeps no free count on disk: the bitmap and the records are
//! what `chkdsk` compares too.) The backup boot sector past the volume's last sector is kept as
//! part of the partition's tail.
//!
//! The `ntfs` crate (0.4) reads files by record number through `Read + Seek`; this module needs
//! raw run lists of every record and its own bounds on hostile input, which is the small part of
//! the format, so it does not depend on it (nor on its ~10 dependencies, some proc-macro).

use super::vol::{bitmap_runs, covered, le16, le32, le64, Ranges, Vol, MAX_BUF};
use super::{Error, Found, FsKind};

const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_VOLUME_NAME: u32 = 0x60;
const AT_VOLUME_INFORMATION: u32 = 0x70;
pub(crate) const AT_DATA: u32 = 0x80;
const AT_INDEX_ALLOCATION: u32 = 0xa0;
const AT_BITMAP: u32 = 0xb0;
const AT_END: u32 = 0xffff_ffff;

/// The boot sector fields this module uses.
#[derive(Debug, Clone)]
pub struct Boot {
    pub bytes_per_sector: u64,
    pub cluster: u64,
    pub total_sectors: u64,
    pub mft_lcn: u64,
    pub mftmirr_lcn: u64,
    pub record_size: u64,
    pub serial: u64,
}

impl Boot {
    pub fn parse(s: &[u8]) -> Result<Boot, Error> {
        if s.get(3..11) != Some(b"NTFS    ") {
            return Err(Error::Corrupt("no NTFS signature".into()));
        }
        let bps = le16(s, 11) as u64;
        if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
            return Err(Error::Corrupt(format!("invalid bytes per sector {bps}")));
        }
        let spc_raw = s[13] as u64;
        let spc = if spc_raw <= 0x80 {
            spc_raw
        } else if 256 - spc_raw <= 20 {
            1 << (256 - spc_raw)
        } else {
            0
        };
        if spc == 0 || !spc.is_power_of_two() || bps * spc > 2 << 20 {
            return Err(Error::Corrupt(format!(
                "invalid sectors per cluster {spc_raw:#x}"
            )));
        }
        let cluster = bps * spc;
        let rec_raw = s[0x40] as i8 as i32;
        let record_size = if rec_raw > 0 {
            rec_raw as u64 * cluster
        } else if -rec_raw < 20 {
            1u64 << -rec_raw
        } else {
            0
        };
        if !record_size.is_power_of_two() || !(512..=65536).contains(&record_size) {
            return Err(Error::Corrupt(format!(
                "invalid file record size {rec_raw}"
            )));
        }
        Ok(Boot {
            bytes_per_sector: bps,
            cluster,
            total_sectors: le64(s, 0x28),
            mft_lcn: le64(s, 0x30),
            mftmirr_lcn: le64(s, 0x38),
            record_size,
            serial: le64(s, 0x48),
        })
    }

    pub fn clusters(&self) -> u64 {
        self.total_sectors.saturating_mul(self.bytes_per_sector) / self.cluster
    }
}

/// One run of a non-resident attribute: `len` clusters from `vcn`, at `lcn` (None: sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub vcn: u64,
    pub len: u64,
    pub lcn: Option<u64>,
}

/// Decodes a run list. Runs must lie inside the volume's `clusters`.
pub fn decode_runs(b: &[u8], start_vcn: u64, clusters: u64) -> Result<Vec<Run>, Error> {
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut lcn: i64 = 0;
    let mut vcn = start_vcn;
    while i < b.len() && b[i] != 0 {
        let h = b[i];
        let (ls, os) = ((h & 0xf) as usize, (h >> 4) as usize);
        if ls == 0 || ls > 8 || os > 8 || i + 1 + ls + os > b.len() {
            return Err(Error::Corrupt(format!("invalid data run header {h:#x}")));
        }
        let mut len = 0u64;
        for k in 0..ls {
            len |= (b[i + 1 + k] as u64) << (8 * k);
        }
        if len == 0 || len > clusters {
            return Err(Error::Corrupt(format!("data run of {len} clusters")));
        }
        let run_lcn = if os == 0 {
            None
        } else {
            let mut d = 0i64;
            for k in 0..os {
                d |= (b[i + 1 + ls + k] as i64) << (8 * k);
            }
            // Sign-extend.
            if os < 8 && b[i + ls + os] & 0x80 != 0 {
                d |= -1i64 << (8 * os);
            }
            lcn = lcn
                .checked_add(d)
                .ok_or_else(|| Error::Corrupt("data run offset overflows".into()))?;
            if lcn < 0 || (lcn as u64).checked_add(len).is_none_or(|e| e > clusters) {
                return Err(Error::Corrupt(format!(
                    "data run at cluster {lcn} (+{len}) lies outside the volume"
                )));
            }
            Some(lcn as u64)
        };
        out.push(Run {
            vcn,
            len,
            lcn: run_lcn,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| Error::Corrupt("data run VCN overflows".into()))?;
        i += 1 + ls + os;
    }
    Ok(out)
}

/// A parsed attribute of a file record.
#[derive(Debug, Clone)]
pub struct Attr {
    pub kind: u32,
    pub named: bool,
    /// Resident content.
    pub value: Option<Vec<u8>>,
    /// Non-resident: runs, data size.
    pub runs: Vec<Run>,
    pub data_size: u64,
}

/// Applies the update sequence fixups of a record (512-byte strides).
pub fn fixup(rec: &mut [u8]) -> Result<(), Error> {
    let ofs = le16(rec, 4) as usize;
    let count = le16(rec, 6) as usize;
    if count == 0 || count - 1 != rec.len() / 512 || ofs + 2 * count > 512 || ofs < 8 {
        return Err(Error::Corrupt("invalid update sequence array".into()));
    }
    let usn = [rec[ofs], rec[ofs + 1]];
    for k in 1..count {
        let p = k * 512 - 2;
        if rec[p..p + 2] != usn {
            return Err(Error::Corrupt(
                "torn file record (update sequence mismatch)".into(),
            ));
        }
        rec[p] = rec[ofs + 2 * k];
        rec[p + 1] = rec[ofs + 2 * k + 1];
    }
    Ok(())
}

/// A file record's flags and attributes. `None` if the slot holds no "FILE" record.
pub fn parse_record(rec: &[u8], clusters: u64) -> Result<Option<(u16, Vec<Attr>)>, Error> {
    if &rec[0..4] != b"FILE" {
        return Ok(None);
    }
    let flags = le16(rec, 0x16);
    let used = (le32(rec, 0x18) as usize).min(rec.len());
    let mut off = le16(rec, 0x14) as usize;
    let mut attrs = Vec::new();
    while off + 8 <= used {
        let kind = le32(rec, off);
        if kind == AT_END {
            break;
        }
        let len = le32(rec, off + 4) as usize;
        if len < 0x18 || off + len > used {
            return Err(Error::Corrupt(format!(
                "attribute of length {len} at {off}"
            )));
        }
        let a = &rec[off..off + len];
        let named = a[9] != 0;
        if a[8] == 0 {
            let vlen = le32(a, 0x10) as usize;
            let voff = le16(a, 0x14) as usize;
            let value = a
                .get(voff..voff.saturating_add(vlen))
                .ok_or_else(|| Error::Corrupt("resident value outside its attribute".into()))?
                .to_vec();
            attrs.push(Attr {
                kind,
                named,
                value: Some(value),
                runs: Vec::new(),
                data_size: vlen as u64,
            });
        } else {
            if len < 0x40 {
                return Err(Error::Corrupt("non-resident attribute too short".into()));
            }
            let roff = le16(a, 0x20) as usize;
            let runs = decode_runs(a.get(roff..).unwrap_or(&[]), le64(a, 0x10), clusters)?;
            attrs.push(Attr {
                kind,
                named,
                value: None,
                runs,
                data_size: le64(a, 0x30),
            });
        }
        off += len;
    }
    Ok(Some((flags, attrs)))
}

/// Reads `buf.len()` bytes at byte `off` of a non-resident stream.
fn read_stream(
    vol: &mut Vol,
    b: &Boot,
    runs: &[Run],
    off: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    let mut done = 0usize;
    while done < buf.len() {
        let pos = off + done as u64;
        let vcn = pos / b.cluster;
        let i = runs.partition_point(|r| r.vcn + r.len <= vcn);
        let r = runs
            .get(i)
            .filter(|r| r.vcn <= vcn)
            .ok_or_else(|| Error::Corrupt(format!("stream has no run for byte {pos}")))?;
        // VCNs of sparse files may be huge; byte positions must still fit.
        let run_end = (r.vcn + r.len)
            .checked_mul(b.cluster)
            .ok_or_else(|| Error::Corrupt("data run VCN out of range".into()))?;
        let take = ((run_end - pos) as usize).min(buf.len() - done);
        match r.lcn {
            Some(lcn) => vol.read(
                lcn * b.cluster + (pos - r.vcn * b.cluster),
                &mut buf[done..done + take],
            )?,
            None => buf[done..done + take].fill(0),
        }
        done += take;
    }
    Ok(())
}

pub(crate) struct Mft {
    pub(crate) runs: Vec<Run>,
    pub(crate) records: u64,
}

impl Mft {
    pub(crate) fn record(&self, vol: &mut Vol, b: &Boot, n: u64) -> Result<Vec<u8>, Error> {
        let mut rec = vec![0u8; b.record_size as usize];
        read_stream(vol, b, &self.runs, n * b.record_size, &mut rec)?;
        Ok(rec)
    }

    fn parsed(&self, vol: &mut Vol, b: &Boot, n: u64) -> Result<(u16, Vec<Attr>), Error> {
        let mut rec = self.record(vol, b, n)?;
        if &rec[0..4] != b"FILE" {
            return Err(Error::Corrupt(format!(
                "MFT record {n} is not a file record"
            )));
        }
        fixup(&mut rec)?;
        parse_record(&rec, b.clusters())?
            .ok_or_else(|| Error::Corrupt(format!("MFT record {n} is not a file record")))
    }
}

fn unnamed(attrs: &[Attr], kind: u32) -> Option<&Attr> {
    attrs.iter().find(|a| a.kind == kind && !a.named)
}

/// Reads the content of an attribute (resident or not), bounded by [`MAX_BUF`].
fn attr_content(vol: &mut Vol, b: &Boot, a: &Attr) -> Result<Vec<u8>, Error> {
    if let Some(v) = &a.value {
        return Ok(v.clone());
    }
    if a.data_size > MAX_BUF {
        return Err(Error::Unsupported(format!(
            "an attribute of {} bytes is more than this reader loads",
            a.data_size
        )));
    }
    let mut v = vec![0u8; a.data_size as usize];
    read_stream(vol, b, &a.runs, 0, &mut v)?;
    Ok(v)
}

/// Locates the MFT from record 0 (following its attribute list when `$DATA` is split).
pub(crate) fn load_mft(vol: &mut Vol, b: &Boot) -> Result<(Mft, Vec<Attr>), Error> {
    let at = b
        .mft_lcn
        .checked_mul(b.cluster)
        .filter(|&o| {
            o.checked_add(b.record_size)
                .is_some_and(|e| e <= b.clusters() * b.cluster)
        })
        .ok_or_else(|| Error::Corrupt(format!("MFT cluster {} is outside", b.mft_lcn)))?;
    let mut rec = vol.read_vec(at, b.record_size)?;
    if &rec[0..4] != b"FILE" {
        return Err(Error::Corrupt("MFT record 0 is not a file record".into()));
    }
    fixup(&mut rec)?;
    let (_, attrs) = parse_record(&rec, b.clusters())?
        .ok_or_else(|| Error::Corrupt("MFT record 0 is not a file record".into()))?;
    let data = unnamed(&attrs, AT_DATA)
        .filter(|a| a.value.is_none())
        .ok_or_else(|| Error::Corrupt("$MFT has no non-resident $DATA".into()))?;
    let mut runs = data.runs.clone();
    let size = data.data_size;
    let records = size / b.record_size;
    if records < 16 || size > b.clusters() * b.cluster {
        return Err(Error::Corrupt(format!("$MFT size {size} is implausible")));
    }
    let mut mft = Mft {
        runs: runs.clone(),
        records,
    };
    let need = size.div_ceil(b.cluster);
    let mapped = |r: &[Run]| r.last().map_or(0, |l| l.vcn + l.len);
    if mapped(&runs) < need {
        // $DATA continues in extension records named by the attribute list.
        let list = attrs
            .iter()
            .find(|a| a.kind == AT_ATTRIBUTE_LIST)
            .ok_or_else(|| Error::Corrupt("$MFT's $DATA runs end early".into()))?;
        let list = attr_content(vol, b, list)?;
        let mut off = 0usize;
        while off + 0x1a <= list.len() {
            let kind = le32(&list, off);
            let len = le16(&list, off + 4) as usize;
            if len < 0x1a {
                break;
            }
            let rec_no = le64(&list, off + 0x10) & 0xffff_ffff_ffff;
            if kind == AT_DATA && list[off + 6] == 0 && rec_no != 0 {
                let (_, ext) = mft.parsed(vol, b, rec_no)?;
                if let Some(d) = unnamed(&ext, AT_DATA) {
                    if d.runs.first().map(|r| r.vcn) == Some(mapped(&runs)) {
                        runs.extend(d.runs.iter().copied());
                        mft.runs = runs.clone();
                    }
                }
            }
            off += len;
        }
        if mapped(&runs) < need {
            return Err(Error::Corrupt(
                "$MFT's $DATA runs do not cover its size".into(),
            ));
        }
    }
    Ok((mft, attrs))
}

fn run_ranges(b: &Boot, runs: &[Run], out: &mut Ranges) {
    for r in runs {
        if let Some(l) = r.lcn {
            out.add(l * b.cluster, (l + r.len) * b.cluster);
        }
    }
}

pub(crate) const AT_FILE_NAME: u32 = 0x30;
pub(crate) const ROOT_RECORD: u64 = 5;

/// Whether a record is the file `name` in the root directory (by its $FILE_NAME attributes).
fn is_root_file(attrs: &[Attr], name: &str) -> bool {
    attrs.iter().any(|a| {
        a.kind == AT_FILE_NAME
            && a.value.as_ref().is_some_and(|v| {
                let parent = le64(v, 0) & 0xffff_ffff_ffff;
                let n = v.get(0x40).copied().unwrap_or(0) as usize;
                parent == ROOT_RECORD
                    && v.get(0x42..0x42 + 2 * n)
                        .is_some_and(|u| super::utf16_name(u).eq_ignore_ascii_case(name))
            })
    })
}

/// Whether hiberfil.sys holds a hibernation image ("hibr"/"HIBR" at its start; "wake" after a
/// resume, zeros when unused).
fn hibernation_header(vol: &mut Vol, b: &Boot, attrs: &[Attr]) -> Result<bool, Error> {
    let Some(d) = unnamed(attrs, AT_DATA) else {
        return Ok(false);
    };
    let mut head = [0u8; 4];
    match &d.value {
        Some(v) => head.copy_from_slice(v.get(..4).unwrap_or(&[0; 4])),
        None if d.data_size >= 4 => read_stream(vol, b, &d.runs, 0, &mut head)?,
        None => return Ok(false),
    }
    Ok(head.eq_ignore_ascii_case(b"hibr"))
}

/// Reads an NTFS filesystem.
pub(crate) fn analyze(vol: &mut Vol) -> Result<Found, Error> {
    let s = vol.read_vec(0, 512)?;
    let b = Boot::parse(&s)?;
    let fs_bytes = b.total_sectors.saturating_mul(b.bytes_per_sector);
    if fs_bytes > vol.len {
        return Err(Error::Corrupt(format!(
            "the filesystem ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated",
            vol.len
        )));
    }
    let mut found = Found {
        kind: Some(FsKind::Ntfs),
        uuid: Some(format!("{:016X}", b.serial)),
        block_size: b.cluster as u32,
        fs_bytes,
        ..Found::default()
    };
    let (mft, mft_attrs) = load_mft(vol, &b)?;
    let mut meta = Ranges::new();
    meta.add(0, b.cluster.max(8192).min(fs_bytes));
    run_ranges(&b, &mft.runs, &mut meta);
    // $Volume: label and dirty flag.
    let (_, vattrs) = mft.parsed(vol, &b, 3)?;
    if let Some(v) = unnamed(&vattrs, AT_VOLUME_NAME).and_then(|a| a.value.as_ref()) {
        found.label = Some(super::utf16_name(v)).filter(|l| !l.is_empty());
    }
    if let Some(v) = unnamed(&vattrs, AT_VOLUME_INFORMATION).and_then(|a| a.value.as_ref()) {
        if le16(v, 0x0a) & 1 != 0 {
            found.warnings.push(
                "the volume is marked dirty (chkdsk pending, or not cleanly unmounted)".into(),
            );
        }
    }
    for n in [1u64, 2, 6] {
        if let Ok((_, a)) = mft.parsed(vol, &b, n) {
            if let Some(d) = unnamed(&a, AT_DATA) {
                run_ranges(&b, &d.runs, &mut meta);
            }
        }
    }
    let in_use = match unnamed(&mft_attrs, AT_BITMAP) {
        Some(a) => Some(attr_content(vol, &b, a)?),
        None => None,
    };
    found.allocated = match allocation(vol, &b, &mft, in_use.as_deref(), &mut found, &mut meta) {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.is_gone() => return Err(e),
        Err(e) => Some(Err(e.to_string())),
    };
    found.metadata = meta.finish();
    Ok(found)
}

fn allocation(
    vol: &mut Vol,
    b: &Boot,
    mft: &Mft,
    in_use: Option<&[u8]>,
    found: &mut Found,
    meta: &mut Ranges,
) -> Result<Vec<(u64, u64)>, Error> {
    let clusters = b.clusters();
    let (_, battrs) = mft.parsed(vol, b, 6)?;
    let bm = unnamed(&battrs, AT_DATA)
        .ok_or_else(|| Error::Corrupt("$Bitmap has no $DATA".into()))?
        .clone();
    if bm.data_size < clusters.div_ceil(8) {
        return Err(Error::Corrupt(format!(
            "$Bitmap ({} bytes) is too small for {clusters} clusters",
            bm.data_size
        )));
    }
    let mut out = Ranges::new();
    let mut used = 0u64;
    let piece: u64 = 1 << 20;
    let mut bit = 0u64;
    while bit < clusters {
        let n = (clusters - bit).min(piece * 8);
        let bytes = n.div_ceil(8);
        let mut buf = vec![0u8; bytes as usize];
        match &bm.value {
            Some(v) => {
                let from = (bit / 8) as usize;
                let src = v
                    .get(from..from + bytes as usize)
                    .ok_or_else(|| Error::Corrupt("resident $Bitmap too short".into()))?;
                buf.copy_from_slice(src);
            }
            None => read_stream(vol, b, &bm.runs, bit / 8, &mut buf)?,
        }
        used += bitmap_runs(&buf, n, bit, b.cluster, 0, &mut out);
        bit += n;
    }
    let ranges = out.finish();
    found.used_bytes = Some(used * b.cluster);

    // Cross-check: every cluster an in-use record's attributes occupy is set in $Bitmap.
    let mut missing = 0u64;
    let mut first_missing = None;
    let mut hibernated: Option<bool> = None;
    for n in 0..mft.records {
        if let Some(bits) = in_use {
            let byte = bits.get((n / 8) as usize).copied().unwrap_or(0);
            if byte >> (n % 8) & 1 == 0 {
                continue;
            }
        }
        let mut rec = mft.record(vol, b, n)?;
        if &rec[0..4] != b"FILE" {
            if in_use.is_some() {
                return Err(Error::Inconsistent(format!(
                    "MFT record {n} is in use but holds no file record"
                )));
            }
            continue;
        }
        fixup(&mut rec)?;
        let Some((flags, attrs)) = parse_record(&rec, clusters)? else {
            continue;
        };
        if flags & 1 == 0 {
            continue;
        }
        if hibernated.is_none() && is_root_file(&attrs, "hiberfil.sys") {
            hibernated = Some(hibernation_header(vol, b, &attrs)?);
        }
        for a in &attrs {
            if matches!(a.kind, AT_INDEX_ALLOCATION | AT_ATTRIBUTE_LIST | AT_BITMAP) {
                run_ranges(b, &a.runs, meta);
            }
            for r in &a.runs {
                if let Some(l) = r.lcn {
                    if !covered(&ranges, l * b.cluster, (l + r.len) * b.cluster) {
                        missing += r.len;
                        first_missing.get_or_insert((n, l));
                    }
                }
            }
        }
    }
    if hibernated == Some(true) {
        found.warnings.push(
            "Windows is hibernated on this volume (hibernation or Fast Startup): files may \
             change when it resumes"
                .into(),
        );
    }
    if let Some((n, l)) = first_missing {
        return Err(Error::Inconsistent(format!(
            "$Bitmap marks free up to {missing} clusters that files use (first: record {n}, \
             cluster {l})"
        )));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs() {
        // 0x18 clusters at 0x5634, then 0x10 sparse, then 8 at -0x34 relative.
        let b = [0x21, 0x18, 0x34, 0x56, 0x01, 0x10, 0x11, 0x08, 0xcc, 0x00];
        let r = decode_runs(&b, 0, 1 << 20).expect("runs");
        assert_eq!(
            r,
            vec![
                Run {
                    vcn: 0,
                    len: 0x18,
                    lcn: Some(0x5634)
                },
                Run {
                    vcn: 0x18,
                    len: 0x10,
                    lcn: None
                },
                Run {
                    vcn: 0x28,
                    len: 8,
                    lcn: Some(0x5634 - 0x34)
                },
            ]
        );
        // Outside the volume, negative, zero length, truncated: errors, not panics.
        assert!(decode_runs(&[0x21, 0x18, 0x34, 0x56, 0], 0, 0x100).is_err());
        assert!(decode_runs(&[0x11, 0x01, 0xff, 0], 0, 0x100).is_err());
        assert!(decode_runs(&[0x11, 0x00, 0x01, 0], 0, 0x100).is_err());
        assert!(decode_runs(&[0x48, 1], 0, 0x100).is_err());
        assert!(decode_runs(
            &[
                0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0x7f
            ],
            0,
            u64::MAX
        )
        .is_err());
    }

    #[test]
    fn fixups() {
        let mut rec = vec![0u8; 1024];
        rec[4] = 0x30; // USA at 0x30, 3 entries
        rec[6] = 3;
        rec[0x30] = 0xab;
        rec[0x31] = 0xcd;
        rec[0x32] = 1;
        rec[0x33] = 2;
        rec[0x34] = 3;
        rec[0x35] = 4;
        rec[510] = 0xab;
        rec[511] = 0xcd;
        rec[1022] = 0xab;
        rec[1023] = 0xcd;
        let mut ok = rec.clone();
        fixup(&mut ok).expect("fixup");
        assert_eq!(&ok[510..512], &[1, 2]);
        assert_eq!(&ok[1022..1024], &[3, 4]);
        rec[1023] = 0;
        assert!(fixup(&mut rec).is_err(), "torn record");
        let mut bad = vec![0u8; 1024];
        bad[4] = 0xff;
        bad[5] = 0x01;
        bad[6] = 0xff;
        assert!(fixup(&mut bad).is_err());
    }

    #[test]
    fn boot_sector_limits() {
        let mut s = vec![0u8; 512];
        s[3..11].copy_from_slice(b"NTFS    ");
        s[11] = 0;
        s[12] = 2; // 512
        s[13] = 8;
        s[0x40] = 0xf6; // 2^10 = 1024-byte records
        assert_eq!(Boot::parse(&s).expect("boot").record_size, 1024);
        s[13] = 0xf0; // 2^16 sectors per cluster = 32 MiB: too big
        assert!(Boot::parse(&s).is_err());
        s[13] = 8;
        s[0x40] = 0x80; // 2^128
        assert!(Boot::parse(&s).is_err());
    }
}
