//! Opening a salvor image: find the seek table from the end, check that the layout adds up, read
//! the metadata and trailer, and decode single chunks.

use super::digest::{decode_digests, disk_digest, Sha256Digest};
use super::format::*;
use super::parts::PartReader;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// JSON frames larger than this are not believed (a corrupt size field would make us allocate it).
const MAX_JSON_FRAME: u32 = 64 << 20;

/// Where one data chunk lives.
#[derive(Debug, Clone, Copy)]
pub struct FrameLoc {
    /// Offset of the zstd frame in the (concatenated) image.
    pub offset: u64,
    /// Offset of the chunk's first byte on the disk.
    pub raw_offset: u64,
    pub entry: SeekEntry,
}

/// An open salvor image.
pub struct ImageFile {
    pub parts: PartReader,
    pub metadata: Metadata,
    pub trailer: Trailer,
    pub frames: Vec<FrameLoc>,
    /// Whether the seek table carries per-frame checksums.
    pub has_checksums: bool,
    /// The SHA-256 of every chunk (version 2 images made with hashing on).
    pub chunk_digests: Option<Vec<Sha256Digest>>,
}

impl ImageFile {
    pub fn open(path: &Path) -> Result<ImageFile> {
        let parts = PartReader::open(path)?;
        let len = parts.len();
        let shown = parts.part_of(len.saturating_sub(1)).to_path_buf();
        let corrupt = |loc: String, why: String| Error::corrupt(&shown, loc, why);
        if len < (8 + FOOTER_SIZE) as u64 {
            return Err(corrupt(
                "offset 0".into(),
                format!("{len} bytes is too short for a salvor image"),
            ));
        }
        let mut footer = [0u8; FOOTER_SIZE];
        parts.read_exact_at(len - FOOTER_SIZE as u64, &mut footer)?;
        let footer = parse_footer(&footer).map_err(|mut why| {
            let sizes = parts.part_sizes();
            if sizes.len() > 1 || split_hint(&parts) {
                why.push_str(&format!(
                    "; if the image was split, part {:03} may be missing",
                    sizes.len()
                ));
            }
            corrupt(format!("offset {}", len - FOOTER_SIZE as u64), why)
        })?;
        if footer.table_frame_size > len {
            return Err(corrupt(
                format!("offset {}", len - FOOTER_SIZE as u64),
                format!(
                    "seek table of {} bytes is larger than the file",
                    footer.table_frame_size
                ),
            ));
        }
        let table_at = len - footer.table_frame_size;
        let mut table = vec![0u8; footer.table_frame_size as usize];
        parts.read_exact_at(table_at, &mut table)?;
        let entries = parse_seek_table(&table, &footer)
            .map_err(|why| corrupt(format!("offset {table_at}"), why))?;
        let listed: u64 = entries.iter().map(|e| u64::from(e.compressed)).sum();
        if listed != table_at {
            return Err(corrupt(
                format!("offset {table_at}"),
                format!(
                    "the seek table's frames add up to {listed} bytes but the seek table starts at \
                     {table_at}: the file was truncated, extended or a part is missing"
                ),
            ));
        }
        if entries.len() < 2 {
            return Err(corrupt(
                format!("offset {table_at}"),
                "seek table lists no metadata and trailer frames: not a salvor image".into(),
            ));
        }
        let display = parts.display_path().to_path_buf();
        let last = entries.len() - 1;
        let trailer_at = table_at - u64::from(entries[last].compressed);
        let metadata: Metadata = read_json(&parts, 0, &entries[0], META_TAG, &display)?;
        if metadata.format != "salvor-image" || metadata.format_version > FORMAT_VERSION {
            return Err(Error::corrupt(
                &display,
                "metadata",
                format!(
                    "format {} version {} is not supported (this salvor reads version {FORMAT_VERSION})",
                    metadata.format, metadata.format_version
                ),
            ));
        }
        let trailer: Trailer =
            read_json(&parts, trailer_at, &entries[last], TRAILER_TAG, &display)?;
        let chunk = metadata.chunk_size;
        if chunk == 0 || chunk > MAX_CHUNK_SIZE as u64 {
            return Err(Error::corrupt(
                &display,
                "metadata",
                format!("chunk size {chunk}"),
            ));
        }
        // Version 2 with hashing on: the chunk-digest frame sits between the data and the trailer.
        let digests_entry = (metadata.format_version >= 2 && trailer.chunks_sha256.is_some())
            .then(|| last - 1)
            .filter(|&i| i >= 1);
        let data = &entries[1..digests_entry.unwrap_or(last)];
        if data.len() as u64 != trailer.chunks
            || trailer.raw_size != metadata.source_size
            || metadata.source_size.div_ceil(chunk) != trailer.chunks
        {
            return Err(Error::corrupt(
                &display,
                "trailer",
                format!(
                    "seek table has {} chunks, trailer says {} of a {}-byte disk in {}-byte chunks",
                    data.len(),
                    trailer.chunks,
                    metadata.source_size,
                    chunk
                ),
            ));
        }
        let mut frames = Vec::with_capacity(data.len());
        let mut offset = u64::from(entries[0].compressed);
        for (k, e) in data.iter().enumerate() {
            let raw_offset = k as u64 * chunk;
            let expect = chunk.min(metadata.source_size - raw_offset);
            if u64::from(e.decompressed) != expect || e.compressed < 9 {
                return Err(Error::corrupt(
                    &display,
                    format!("chunk {k} (disk offset {raw_offset})"),
                    format!(
                        "seek table entry says {} -> {} bytes, expected a frame of {expect} bytes",
                        e.compressed, e.decompressed
                    ),
                ));
            }
            frames.push(FrameLoc {
                offset,
                raw_offset,
                entry: *e,
            });
            offset += u64::from(e.compressed);
        }
        if let Some(split) = metadata.split_size {
            let sizes = parts.part_sizes();
            let paths = parts.part_paths();
            for (i, s) in sizes.iter().enumerate() {
                if i + 1 < sizes.len() && *s != split {
                    return Err(Error::corrupt(
                        &paths[i],
                        format!("part {i:03}"),
                        format!("part is {s} bytes, every part but the last must be {split}"),
                    ));
                }
            }
        }
        let chunk_digests = match digests_entry {
            Some(i) => Some(read_digests(
                &parts,
                offset,
                &entries[i],
                &trailer,
                &display,
            )?),
            None => None,
        };
        Ok(ImageFile {
            parts,
            metadata,
            trailer,
            frames,
            has_checksums: footer.entry_size == 12,
            chunk_digests,
        })
    }

    pub fn path(&self) -> &Path {
        self.parts.display_path()
    }

    pub fn part_paths(&self) -> Vec<PathBuf> {
        self.parts.part_paths()
    }

    /// Total bytes of the image (all parts).
    pub fn compressed_size(&self) -> u64 {
        self.parts.len()
    }

    pub fn location(&self, k: usize) -> String {
        let raw = self.frames.get(k).map_or(0, |f| f.raw_offset);
        format!("chunk {k} (disk offset {raw})")
    }

    fn corrupt_chunk(&self, k: usize, why: impl Into<String>) -> Error {
        let at = self.frames.get(k).map_or(0, |f| f.offset);
        Error::corrupt(self.parts.part_of(at), self.location(k), why)
    }

    /// Reads chunk `k`'s compressed frame into `buf` (resized).
    pub fn read_frame(&self, k: usize, buf: &mut Vec<u8>) -> Result<()> {
        let f = self.frames[k];
        buf.resize(f.entry.compressed as usize, 0);
        self.parts.read_exact_at(f.offset, buf)
    }

    /// Checks chunk `k`'s computed digest against the recorded one (when the image has them) and
    /// hands it back.
    pub fn check_chunk_digest(&self, k: usize, got: Sha256Digest) -> Result<Sha256Digest> {
        if let Some(want) = self.chunk_digests.as_ref().and_then(|d| d.get(k)) {
            if *want != got {
                return Err(self.corrupt_chunk(
                    k,
                    format!(
                        "SHA-256 of the decoded chunk is {}, the image records {}",
                        to_hex(&got),
                        to_hex(want)
                    ),
                ));
            }
        }
        Ok(got)
    }

    /// Decodes chunk `k` from its compressed frame into `out` (at least the chunk's size).
    /// Checks: zstd magic, frame checksum (by zstd while decoding), the seek table's checksum
    /// against the frame's, and the decoded size.
    /// Decodes frame `k` (`comp`, read by [`Self::read_frame`]) into `out`: a slice at least
    /// the chunk's size, or a `Vec` whose spare capacity is filled without zeroing it first.
    pub fn decode_frame<C: zstd::zstd_safe::WriteBuf + ?Sized>(
        &self,
        k: usize,
        comp: &[u8],
        dctx: &mut zstd::bulk::Decompressor<'static>,
        out: &mut C,
    ) -> Result<usize> {
        let f = self.frames[k];
        let want = f.entry.decompressed as usize;
        if comp.len() < 9 || le32(comp, 0) != ZSTD_FRAME_MAGIC {
            return Err(self.corrupt_chunk(k, "not a zstd frame (bad magic)"));
        }
        // Frame header descriptor bit 2: the frame ends with a 4-byte content checksum.
        let frame_has_checksum = comp[4] & 0x04 != 0;
        if self.has_checksums && frame_has_checksum {
            let c = le32(comp, comp.len() - 4);
            if c != f.entry.checksum {
                return Err(self.corrupt_chunk(
                    k,
                    format!(
                        "frame checksum 0x{c:08X} differs from the seek table's 0x{:08X}",
                        f.entry.checksum
                    ),
                ));
            }
        }
        if out.capacity() < want {
            return Err(Error::Internal("decode buffer too small".into()));
        }
        let n = dctx
            .decompress_to_buffer(comp, out)
            .map_err(|e| self.corrupt_chunk(k, format!("zstd: {e}")))?;
        if n != want {
            return Err(self.corrupt_chunk(k, format!("decoded {n} bytes, expected {want}")));
        }
        Ok(n)
    }
}

/// The largest block a zstd frame holds (the format's limit; smaller with a smaller window).
const ZSTD_BLOCK_MAX: u64 = 128 << 10;

impl ImageFile {
    /// The all-zero runs of chunk `k` as `(start, end)` offsets within the chunk, sorted and
    /// merged, found from the frame's block headers without decoding it: zstd stores a block
    /// of one repeated byte as an RLE block. Where a block starts is known only when every
    /// compressed block holds a full block (the compressor's usual cut); the sizes then add up
    /// to the chunk's exactly, and otherwise (or for anything unexpected in the frame) the
    /// answer is `None`: nothing known. `frame` is the frame as [`Self::read_frame`] reads it
    /// (one read of the whole frame: a few bytes per block read one by one were tens of
    /// thousands of reads per GiB, each a disk request when the image is not in the page cache).
    pub fn zero_runs(&self, k: usize, frame: &[u8]) -> Option<Vec<(u64, u64)>> {
        let f = self.frames[k];
        let frame_len = u64::from(f.entry.compressed);
        let want = u64::from(f.entry.decompressed);
        if frame.len() as u64 != frame_len {
            return None;
        }
        let head = &frame[..18.min(frame.len())];
        let n = head.len();
        if n < 6 || le32(head, 0) != ZSTD_FRAME_MAGIC {
            return None;
        }
        let fhd = head[4];
        let single = fhd & 0x20 != 0;
        if fhd & 0x08 != 0 {
            return None;
        }
        let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
        let fcs_len = match fhd >> 6 {
            0 => usize::from(single),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let block_max = if single {
            ZSTD_BLOCK_MAX.min(want)
        } else {
            let wd = head[5];
            let base = 1u64 << (10 + (wd >> 3));
            ZSTD_BLOCK_MAX.min(base + base / 8 * u64::from(wd & 7))
        };
        let mut pos = (5 + usize::from(!single) + dict_len + fcs_len) as u64;
        let checksum = if fhd & 0x04 != 0 { 4 } else { 0 };
        let mut regen = 0u64;
        let mut last_compressed;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        // Every block header is 3 bytes and moves `pos` on, so the frame's own length bounds this.
        loop {
            if pos + 3 > frame_len {
                return None;
            }
            let mut b = [0u8; 4];
            let m = 4.min(frame_len - pos) as usize;
            b[..m].copy_from_slice(&frame[pos as usize..pos as usize + m]);
            let h = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
            let (last, kind, size) = (h & 1 != 0, (h >> 1) & 3, u64::from(h >> 3));
            pos += 3;
            last_compressed = kind == 2;
            match kind {
                0 => {
                    regen += size;
                    pos += size;
                }
                1 => {
                    if m < 4 {
                        return None;
                    }
                    if b[3] == 0 && size > 0 {
                        match runs.last_mut() {
                            Some(r) if r.1 == regen => r.1 += size,
                            _ => runs.push((regen, regen + size)),
                        }
                    }
                    regen += size;
                    pos += 1;
                }
                2 => {
                    regen += block_max;
                    pos += size;
                }
                _ => return None,
            }
            if last {
                break;
            }
        }
        // The last block may be short: of the chunk's last bytes, a compressed one holds the rest.
        if last_compressed && regen > want && regen - want < block_max {
            regen = want;
        }
        if regen != want || pos + checksum != frame_len {
            return None;
        }
        Some(runs)
    }
}

/// Whether a single-file image looks like one part of a split image.
fn split_hint(parts: &PartReader) -> bool {
    parts
        .part_paths()
        .first()
        .and_then(|p| p.extension())
        .is_some_and(|e| e.len() == 3 && e.to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
}

fn read_json<T: serde::de::DeserializeOwned>(
    parts: &PartReader,
    at: u64,
    entry: &SeekEntry,
    tag: [u8; 4],
    display: &Path,
) -> Result<T> {
    let what = if tag == META_TAG {
        "metadata"
    } else {
        "trailer"
    };
    if entry.decompressed != 0 || entry.compressed > MAX_JSON_FRAME || entry.compressed < 16 {
        return Err(Error::corrupt(
            display,
            format!("offset {at}"),
            format!("seek table entry for the {what} frame is implausible"),
        ));
    }
    let mut buf = vec![0u8; entry.compressed as usize];
    parts.read_exact_at(at, &mut buf)?;
    let json = decode_tagged_frame(tag, &buf).map_err(|why| {
        Error::corrupt(
            parts.part_of(at),
            format!("offset {at}"),
            format!("{what}: {why}"),
        )
    })?;
    serde_json::from_slice(json)
        .map_err(|e| Error::corrupt(display, format!("offset {at}"), format!("{what} JSON: {e}")))
}

/// Reads the chunk-digest frame at `at` and checks it against the trailer's disk digest.
fn read_digests(
    parts: &PartReader,
    at: u64,
    entry: &SeekEntry,
    trailer: &Trailer,
    display: &Path,
) -> Result<Vec<Sha256Digest>> {
    let corrupt = |why: String| Error::corrupt(parts.part_of(at), format!("offset {at}"), why);
    let want_len = trailer
        .chunks
        .checked_mul(32)
        .and_then(|n| n.checked_add(16));
    if entry.decompressed != 0 || Some(u64::from(entry.compressed)) != want_len {
        return Err(corrupt(format!(
            "seek table entry for the chunk digests ({} bytes) does not fit {} chunks",
            entry.compressed, trailer.chunks
        )));
    }
    let mut buf = vec![0u8; entry.compressed as usize];
    parts.read_exact_at(at, &mut buf)?;
    let payload = decode_tagged_frame(CHUNK_DIGESTS_TAG, &buf)
        .map_err(|why| corrupt(format!("chunk digests: {why}")))?;
    let digests = decode_digests(payload, trailer.chunks)
        .ok_or_else(|| corrupt("chunk digests: wrong length".into()))?;
    let got = to_hex(&disk_digest(&digests));
    if trailer.chunks_sha256.as_deref() != Some(got.as_str()) {
        return Err(Error::corrupt(
            display,
            "trailer",
            format!(
                "the chunk digests hash to {got}, the trailer records {}",
                trailer.chunks_sha256.as_deref().unwrap_or("none")
            ),
        ));
    }
    Ok(digests)
}

/// Whether `path` should be treated as a salvor image (vs. a raw image or a device): by name,
/// then by the first frame's magic.
pub fn looks_like_salvor_image(path: &Path) -> bool {
    use std::io::Read;
    let name = path.to_string_lossy();
    if name.ends_with(".zst") || super::parts_suffix(&name) {
        return true;
    }
    let mut m = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok_and(|_| u32::from_le_bytes(m) == SALVOR_SKIPPABLE_MAGIC)
}
