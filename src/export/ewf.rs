//! E01 (EWF-E01, the EnCase 6 layout libewf reads): one segment file with the file header,
//! `header2` (twice) and `header` sections carrying the case metadata, the `volume` section, the
//! media in 32 KiB chunks (`sectors` sections of at most 16375 chunks, each followed by its
//! `table` and `table2`), a `data` copy of the volume, `error2` listing the acquisition errors
//! (the areas a rescue could not read), `digest` (MD5 and SHA-1 of the media), `hash` (MD5) and
//! `done`. Chunks are stored uncompressed with their Adler-32, except chunks of zeros, which are
//! the one precomputed zlib stream that inflates to 32 KiB of zeros (salvor has no general
//! deflate encoder: the E01 is about the size of the disk's data). The metadata sections are
//! zlib streams of stored blocks. The file is written front to back; each `sectors` section's
//! descriptor is filled in once its chunks are written.

use crate::device::Dest;
use crate::error::{Error, Result};
use md5::{Digest as _, Md5};
use sha1::Sha1;

const SECTOR: u64 = 512;
const SECTORS_PER_CHUNK: u64 = 64;
const CHUNK: u64 = SECTOR * SECTORS_PER_CHUNK;
const PER_TABLE: u64 = 16375;
const DESC: u64 = 76;
const VOLUME: usize = 1052;

/// Case metadata recorded in the header sections.
#[derive(Debug, Clone, Default)]
pub struct CaseInfo {
    pub case_number: String,
    pub evidence_number: String,
    pub examiner: String,
    pub description: String,
    pub notes: String,
}

/// What the E01 records about the media, for the summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EwfHashes {
    pub md5: String,
    pub sha1: String,
    pub error_ranges: usize,
}

pub struct EwfWriter {
    media: u64,
    chunks: u64,
    pos: u64,
    next_chunk: u64,
    group_base: u64,
    group_left: u64,
    zero_chunk: Vec<u8>,
    entries: Vec<u32>,
    pending: Vec<u8>,
    fed: u64,
    md5: Md5,
    sha1: Sha1,
    volume: Vec<u8>,
    /// Acquisition errors as (first sector, sectors).
    errors: Vec<(u32, u32)>,
    pub hashes: EwfHashes,
}

pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for block in data.chunks(5552) {
        for &x in block {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// The zlib stream of one chunk of zeros: one fixed-Huffman deflate block holding a literal 0,
/// 127 copies of 258 bytes at distance 1, a literal 0 and the end of block (32 768 bytes). All
/// other chunks are stored uncompressed; this one makes empty space cost ~40 bytes per chunk.
fn zlib_zero_chunk() -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, v: u32, bits: u32) {
            self.acc |= v << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, c: u32, bits: u32) {
            let r = c.reverse_bits() >> (32 - bits);
            self.put(r, bits);
        }
    }
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    let literal_zero = |b: &mut Bits| b.code(0x30, 8);
    literal_zero(&mut b);
    for _ in 0..127 {
        b.code(0xC5, 8); // length symbol 285: 258 bytes, no extra bits
        b.code(0, 5); // distance code 0: distance 1
    }
    literal_zero(&mut b);
    b.code(0, 7); // end of block (256)
    if b.n > 0 {
        b.out.push(b.acc as u8);
    }
    b.out
        .extend_from_slice(&adler32(&[0u8; CHUNK as usize]).to_be_bytes());
    b.out
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(b) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let n = b.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn descriptor(kind: &str, at: u64, data_len: u64, next: Option<u64>) -> [u8; 76] {
    let mut d = [0u8; 76];
    d[..kind.len()].copy_from_slice(kind.as_bytes());
    let size = if next.is_some() { 0 } else { DESC + data_len };
    let next = next.unwrap_or(at + DESC + data_len);
    d[16..24].copy_from_slice(&next.to_le_bytes());
    d[24..32].copy_from_slice(&size.to_le_bytes());
    let sum = adler32(&d[..72]);
    d[72..].copy_from_slice(&sum.to_le_bytes());
    d
}

impl EwfWriter {
    /// Starts the file: header, metadata sections, volume. `errors` are byte ranges that were
    /// not read from the source (recorded in `error2`).
    pub fn start(
        dest: &mut dyn Dest,
        size: u64,
        case: &CaseInfo,
        errors: &[(u64, u64)],
    ) -> Result<EwfWriter> {
        let media = size.div_ceil(SECTOR) * SECTOR;
        let chunks = media.div_ceil(CHUNK);
        let sectors = media / SECTOR;
        if chunks > u64::from(u32::MAX) || sectors > u64::from(u32::MAX) {
            return Err(Error::invalid_arg(
                "OUTPUT.E01",
                "the disk is too large for an E01",
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let version = env!("CARGO_PKG_VERSION");
        let v = [
            clean(&case.description),
            clean(&case.case_number),
            clean(&case.evidence_number),
            clean(&case.examiner),
            clean(&case.notes),
        ];
        let header2 = format!(
            "1\nmain\na\tc\tn\te\tt\tav\tov\tm\tu\tp\n{}\t{}\t{}\t{}\t{}\t{version}\tLinux\t{now}\t{now}\t0\n\n",
            v[0], v[1], v[2], v[3], v[4]
        );
        let date = {
            let iso = crate::image::format::iso8601_utc(now);
            // "2026-12-01T21:25:01Z" -> "2026 12 1 21 25 1"
            iso.split(|c: char| !c.is_ascii_digit())
                .filter(|p| !p.is_empty())
                .map(|p| p.trim_start_matches('0').to_string())
                .map(|p| if p.is_empty() { "0".into() } else { p })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let header = format!(
            "1\r\nmain\r\nc\tn\ta\te\tt\tav\tov\tm\tu\tp\r\n{}\t{}\t{}\t{}\t{}\t{version}\tLinux\t{date}\t{date}\t0\r\n\r\n",
            v[1], v[2], v[0], v[3], v[4]
        );
        let mut utf16 = vec![0xFF, 0xFE];
        for u in header2.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let h2 = zlib_stored(&utf16);
        let h1 = zlib_stored(header.as_bytes());

        let mut volume = vec![0u8; VOLUME];
        volume[0] = 0x01; // fixed disk
        volume[4..8].copy_from_slice(&(chunks as u32).to_le_bytes());
        volume[8..12].copy_from_slice(&(SECTORS_PER_CHUNK as u32).to_le_bytes());
        volume[12..16].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        volume[16..24].copy_from_slice(&sectors.to_le_bytes());
        volume[36] = 0x01; // an image file
        volume[56..60].copy_from_slice(&(SECTORS_PER_CHUNK as u32).to_le_bytes());
        volume[64..80].copy_from_slice(&super::new_id(size));
        let sum = adler32(&volume[..1048]);
        volume[1048..].copy_from_slice(&sum.to_le_bytes());

        let mut errs = Vec::new();
        for &(off, len) in errors {
            let first = off / SECTOR;
            let end = (off + len).div_ceil(SECTOR).min(sectors);
            if end > first {
                errs.push((first as u32, (end - first) as u32));
            }
        }

        let mut pos = 0u64;
        let mut file_header = b"EVF\x09\x0d\x0a\xff\x00".to_vec();
        file_header.push(1);
        file_header.extend_from_slice(&1u16.to_le_bytes());
        file_header.extend_from_slice(&0u16.to_le_bytes());
        dest.write_at(pos, &file_header)?;
        pos += file_header.len() as u64;
        for (kind, data) in [
            ("header2", &h2),
            ("header2", &h2),
            ("header", &h1),
            ("volume", &volume),
        ] {
            dest.write_at(pos, &descriptor(kind, pos, data.len() as u64, None))?;
            dest.write_at(pos + DESC, data)?;
            pos += DESC + data.len() as u64;
        }
        Ok(EwfWriter {
            media,
            chunks,
            pos,
            next_chunk: 0,
            group_base: 0,
            group_left: 0,
            zero_chunk: zlib_zero_chunk(),
            entries: Vec::new(),
            pending: Vec::with_capacity(CHUNK as usize),
            fed: 0,
            md5: Md5::new(),
            sha1: Sha1::new(),
            volume,
            hashes: EwfHashes {
                error_ranges: errs.len(),
                ..EwfHashes::default()
            },
            errors: errs,
        })
    }

    /// Feeds the next bytes of the disk, in order.
    pub fn write(&mut self, dest: &mut dyn Dest, mut data: &[u8]) -> Result<()> {
        self.md5.update(data);
        self.sha1.update(data);
        self.fed += data.len() as u64;
        while !data.is_empty() {
            let want = CHUNK as usize - self.pending.len();
            let n = want.min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == CHUNK as usize {
                self.emit(dest)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, dest: &mut dyn Dest) -> Result<()> {
        let k = self.next_chunk;
        if k >= self.chunks {
            return Err(Error::Internal("more data than the disk holds".into()));
        }
        if self.group_left == 0 {
            // The descriptor is written when the group is complete and its size known.
            self.group_base = self.pos;
            self.pos += DESC;
            self.group_left = PER_TABLE.min(self.chunks - k);
        }
        let rel = self.pos - self.group_base;
        let rel =
            u32::try_from(rel).map_err(|_| Error::Internal("E01 table offset overflow".into()))?;
        if self.pending.len() as u64 == CHUNK && crate::device::is_zero(&self.pending) {
            self.entries.push(rel | 0x8000_0000);
            dest.write_at(self.pos, &self.zero_chunk)?;
            self.pos += self.zero_chunk.len() as u64;
        } else {
            self.entries.push(rel);
            self.pending
                .extend_from_slice(&adler32(&self.pending).to_le_bytes());
            dest.write_at(self.pos, &self.pending)?;
            self.pos += self.pending.len() as u64;
        }
        self.pending.clear();
        self.next_chunk += 1;
        self.group_left -= 1;
        if self.group_left == 0 {
            let len = self.pos - self.group_base - DESC;
            let d = descriptor("sectors", self.group_base, len, None);
            dest.write_at(self.group_base, &d)?;
            let mut t = vec![0u8; 24];
            t[..4].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
            t[8..16].copy_from_slice(&self.group_base.to_le_bytes());
            let sum = adler32(&t[..20]);
            t[20..24].copy_from_slice(&sum.to_le_bytes());
            let mut arr = Vec::with_capacity(self.entries.len() * 4);
            for e in &self.entries {
                arr.extend_from_slice(&e.to_le_bytes());
            }
            t.extend_from_slice(&arr);
            t.extend_from_slice(&adler32(&arr).to_le_bytes());
            for kind in ["table", "table2"] {
                self.section(dest, kind, &t)?;
            }
            self.entries.clear();
        }
        Ok(())
    }

    fn section(&mut self, dest: &mut dyn Dest, kind: &str, data: &[u8]) -> Result<()> {
        dest.write_at(
            self.pos,
            &descriptor(kind, self.pos, data.len() as u64, None),
        )?;
        dest.write_at(self.pos + DESC, data)?;
        self.pos += DESC + data.len() as u64;
        Ok(())
    }

    /// Pads the last sector, writes the closing sections; returns the file's length.
    pub fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64> {
        if self.fed < self.media {
            let pad = vec![0u8; (self.media - self.fed) as usize];
            self.write(dest, &pad)?;
        }
        if !self.pending.is_empty() {
            self.emit(dest)?;
        }
        if self.next_chunk != self.chunks {
            return Err(Error::Internal(format!(
                "E01: {} of {} chunks written",
                self.next_chunk, self.chunks
            )));
        }
        let volume = self.volume.clone();
        self.section(dest, "data", &volume)?;
        if !self.errors.is_empty() {
            let mut e = vec![0u8; 520];
            e[..4].copy_from_slice(&(self.errors.len() as u32).to_le_bytes());
            let sum = adler32(&e[..516]);
            e[516..520].copy_from_slice(&sum.to_le_bytes());
            let mut arr = Vec::new();
            for (s, n) in &self.errors {
                arr.extend_from_slice(&s.to_le_bytes());
                arr.extend_from_slice(&n.to_le_bytes());
            }
            e.extend_from_slice(&arr);
            e.extend_from_slice(&adler32(&arr).to_le_bytes());
            self.section(dest, "error2", &e)?;
        }
        let md5: [u8; 16] = std::mem::take(&mut self.md5).finalize().into();
        let sha1: [u8; 20] = std::mem::take(&mut self.sha1).finalize().into();
        let mut d = vec![0u8; 80];
        d[..16].copy_from_slice(&md5);
        d[16..36].copy_from_slice(&sha1);
        let sum = adler32(&d[..76]);
        d[76..].copy_from_slice(&sum.to_le_bytes());
        self.section(dest, "digest", &d)?;
        let mut h = vec![0u8; 36];
        h[..16].copy_from_slice(&md5);
        let sum = adler32(&h[..32]);
        h[32..].copy_from_slice(&sum.to_le_bytes());
        self.section(dest, "hash", &h)?;
        dest.write_at(self.pos, &descriptor("done", self.pos, 0, Some(self.pos)))?;
        self.pos += DESC;
        self.hashes.md5 = crate::image::format::to_hex(&md5);
        self.hashes.sha1 = crate::image::format::to_hex(&sha1);
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn adler() {
        assert_eq!(super::adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(super::adler32(&[]), 1);
    }
}
