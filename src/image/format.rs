//! The salvor image format on the byte level: skippable frames carrying JSON, the zstd seekable
//! seek table, and the JSON documents. See `docs/image-format.md` for the full description.

use serde::{Deserialize, Serialize};

/// Magic of a regular zstd frame (little-endian on disk: 28 B5 2F FD).
pub const ZSTD_FRAME_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frame magic used for salvor's metadata and trailer (any of 0x184D2A50..5F is a
/// skippable frame to zstd; 0x184D2A5E is taken by the seek table, so use another one).
pub const SALVOR_SKIPPABLE_MAGIC: u32 = 0x184D_2A53;
/// Skippable frame magic of the seek table (zstd seekable format).
pub const SEEK_TABLE_MAGIC: u32 = 0x184D_2A5E;
/// The last four bytes of a seekable file.
pub const SEEKABLE_FOOTER_MAGIC: u32 = 0x8F92_EAB1;
/// Seek table descriptor: bit 7 = every entry carries a checksum.
pub const DESCRIPTOR_CHECKSUM: u8 = 0x80;
/// Size of the seek table footer: frame count, descriptor, magic.
pub const FOOTER_SIZE: usize = 9;
/// Least significant 32 bits of XXH64("") — the checksum of a frame that holds no data.
pub const XXH64_EMPTY_LOW32: u32 = 0x51D8_E999;
/// Tags at the start of salvor's skippable frames' payload.
pub const META_TAG: [u8; 4] = *b"SVMD";
pub const TRAILER_TAG: [u8; 4] = *b"SVTR";
/// The per-chunk SHA-256 digests (version 2), just before the trailer.
pub const CHUNK_DIGESTS_TAG: [u8; 4] = *b"SVCD";
/// The format version written into the metadata; readers refuse newer versions. Version 2 added
/// the chunk-digest frame and made the flat whole-disk SHA-256 optional.
pub const FORMAT_VERSION: u32 = 2;
/// The zstd seekable format caps a frame's decompressed size at 1 GiB.
pub const MAX_CHUNK_SIZE: usize = 1 << 30;
/// Chunks must be multiples of this so that O_DIRECT reads and writes stay aligned.
pub const CHUNK_ALIGN: usize = 4096;
pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;
/// At most this many frames in a seek table (the reference implementation's limit).
pub const MAX_FRAMES: u32 = 0x0800_0000;

pub(crate) fn crc32(data: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(data)
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Builds a salvor skippable frame: magic, size, tag, CRC-32 of the payload, payload (JSON, or
/// the binary chunk digests).
pub fn encode_tagged_frame(tag: [u8; 4], json: &[u8]) -> Vec<u8> {
    let payload_len = 8 + json.len();
    let mut out = Vec::with_capacity(8 + payload_len);
    out.extend_from_slice(&SALVOR_SKIPPABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&crc32(json).to_le_bytes());
    out.extend_from_slice(json);
    out
}

/// Checks a whole salvor skippable frame and returns its payload.
pub fn decode_tagged_frame(tag: [u8; 4], frame: &[u8]) -> Result<&[u8], String> {
    if frame.len() < 16 {
        return Err(format!("frame of {} bytes is too short", frame.len()));
    }
    if le32(frame, 0) != SALVOR_SKIPPABLE_MAGIC {
        return Err(format!("bad magic 0x{:08X}", le32(frame, 0)));
    }
    if le32(frame, 4) as usize != frame.len() - 8 {
        return Err("skippable frame size does not match the seek table".into());
    }
    if frame[8..12] != tag {
        return Err(format!(
            "expected tag {:?}, found {:?}",
            String::from_utf8_lossy(&tag),
            String::from_utf8_lossy(&frame[8..12])
        ));
    }
    let json = &frame[16..];
    if crc32(json) != le32(frame, 12) {
        return Err("CRC-32 of the payload does not match".into());
    }
    Ok(json)
}

/// One seek table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekEntry {
    pub compressed: u32,
    pub decompressed: u32,
    pub checksum: u32,
}

/// Encodes the seek table skippable frame (entries with checksums).
pub fn encode_seek_table(entries: &[SeekEntry]) -> Vec<u8> {
    let body = entries.len() * 12 + FOOTER_SIZE;
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&SEEK_TABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.compressed.to_le_bytes());
        out.extend_from_slice(&e.decompressed.to_le_bytes());
        out.extend_from_slice(&e.checksum.to_le_bytes());
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.push(DESCRIPTOR_CHECKSUM);
    out.extend_from_slice(&SEEKABLE_FOOTER_MAGIC.to_le_bytes());
    out
}

/// The parsed footer: how many frames and how big the whole seek table frame is.
#[derive(Debug, Clone, Copy)]
pub struct Footer {
    pub frames: u32,
    pub entry_size: usize,
    pub table_frame_size: u64,
}

pub fn parse_footer(footer: &[u8; FOOTER_SIZE]) -> Result<Footer, String> {
    if le32(footer, 5) != SEEKABLE_FOOTER_MAGIC {
        return Err(format!(
            "no zstd seek table (last 4 bytes are 0x{:08X}, not 0x{SEEKABLE_FOOTER_MAGIC:08X}): \
             truncated file, missing last part, or not a salvor image",
            le32(footer, 5)
        ));
    }
    let frames = le32(footer, 0);
    let descriptor = footer[4];
    if descriptor & 0x7C != 0 {
        return Err(format!(
            "seek table descriptor 0x{descriptor:02X} has reserved bits set"
        ));
    }
    if frames > MAX_FRAMES {
        return Err(format!("seek table claims {frames} frames"));
    }
    let entry_size = if descriptor & DESCRIPTOR_CHECKSUM != 0 {
        12
    } else {
        8
    };
    Ok(Footer {
        frames,
        entry_size,
        table_frame_size: 8 + u64::from(frames) * entry_size as u64 + FOOTER_SIZE as u64,
    })
}

/// Parses the seek table frame (whole frame including header and footer).
pub fn parse_seek_table(frame: &[u8], footer: &Footer) -> Result<Vec<SeekEntry>, String> {
    if frame.len() as u64 != footer.table_frame_size {
        return Err("seek table size mismatch".into());
    }
    if le32(frame, 0) != SEEK_TABLE_MAGIC {
        return Err(format!(
            "seek table frame has magic 0x{:08X}, expected 0x{SEEK_TABLE_MAGIC:08X}",
            le32(frame, 0)
        ));
    }
    if u64::from(le32(frame, 4)) != footer.table_frame_size - 8 {
        return Err("seek table frame size field does not match its frame count".into());
    }
    let mut entries = Vec::with_capacity(footer.frames as usize);
    for i in 0..footer.frames as usize {
        let at = 8 + i * footer.entry_size;
        entries.push(SeekEntry {
            compressed: le32(frame, at),
            decompressed: le32(frame, at + 4),
            checksum: if footer.entry_size == 12 {
                le32(frame, at + 8)
            } else {
                0
            },
        });
    }
    Ok(entries)
}

/// Where the imaged disk came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    pub path: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub is_block_device: bool,
}

/// One partition as summarised in the metadata and by `info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionInfo {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub size: u64,
    /// GPT type GUID, or MBR type byte as "0x83".
    pub type_id: String,
    /// A readable name of the type, when known.
    pub type_name: Option<String>,
    /// GPT partition name.
    pub name: Option<String>,
    pub guid: Option<String>,
    /// An MBR extended container (its logical partitions follow as their own entries).
    #[serde(default)]
    pub extended: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionTable {
    /// "gpt" or "mbr".
    pub kind: String,
    pub disk_guid: Option<String>,
    pub partitions: Vec<PartitionInfo>,
}

/// The JSON document at the start of an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub format: String,
    pub format_version: u32,
    pub tool_version: String,
    /// Seconds since the Unix epoch, and the same as ISO 8601 UTC.
    pub created_unix: u64,
    pub created: String,
    pub label: Option<String>,
    pub source_size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub chunk_size: u64,
    pub compression_level: i32,
    /// Size of every part but the last, when the image is split.
    pub split_size: Option<u64>,
    pub source: SourceInfo,
    pub partition_table: Option<PartitionTable>,
    /// The rescue mapfile the image was made from, if any.
    pub mapfile: Option<String>,
    /// Whether only the bytes the filesystems use were stored (`false`: `--all-blocks`, and
    /// every image made before used-blocks imaging).
    #[serde(default)]
    pub used_blocks: bool,
    /// Per partition (or for the whole-device filesystem, partition 0): what was found and what
    /// was stored. Empty with `--all-blocks` and in older images.
    #[serde(default)]
    pub filesystems: Vec<ImagedFs>,
    /// Space outside every partition that was not stored (gaps, the space after the last
    /// partition); it reads as zeros. Empty with `--all-blocks` and in older images.
    #[serde(default)]
    pub unpartitioned: Vec<Hole>,
}

impl Metadata {
    /// Everything a used-blocks image did not store (reads as zeros): the filesystems'
    /// unallocated ranges and the unpartitioned space, sorted, absolute `(start, end)`.
    pub fn not_stored(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .filesystems
            .iter()
            .flat_map(|f| &f.unallocated)
            .chain(&self.unpartitioned)
            .map(|h| (h.offset, h.offset + h.size))
            .collect();
        v.sort_unstable();
        v
    }
}

/// How one partition was imaged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImagedFs {
    /// Partition number; 0 for a filesystem on the whole device (no partition table).
    pub partition: u32,
    /// `fs::FsKind` as text: "ext4", "fat32", "ntfs", "swap", "unknown"...
    pub kind: String,
    /// Absolute byte range of the partition.
    pub start: u64,
    pub size: u64,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// The filesystem's size and used bytes by its own counts.
    pub total_bytes: u64,
    pub used_bytes: Option<u64>,
    /// `"used"`: only allocated ranges stored; `"whole"`: the whole partition (see `reason`).
    pub mode: String,
    /// Why the partition was imaged whole.
    pub reason: Option<String>,
    pub warnings: Vec<String>,
    /// Byte ranges of the partition the filesystem does not allocate: the image stores nothing
    /// for them and they read as zeros. Sorted, merged, absolute.
    pub unallocated: Vec<Hole>,
    /// Bytes of the partition stored (allocated, and rescued when imaged from a mapfile).
    pub stored_bytes: u64,
}

/// An area of the disk that the image holds as zeros: never rescued (`Trailer::holes`), or not
/// allocated by its filesystem (`ImagedFs::unallocated`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hole {
    pub offset: u64,
    pub size: u64,
}

/// The JSON document just before the seek table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trailer {
    pub chunks: u64,
    pub raw_size: u64,
    /// Flat SHA-256 of the whole raw disk as hex (what `sha256sum` prints); written with
    /// `--sha256` (always in version 1 images).
    pub sha256: Option<String>,
    /// SHA-256 over the per-chunk SHA-256 digests (see `digest.rs`); absent only with hashing
    /// off and in version 1 images.
    #[serde(default)]
    pub chunks_sha256: Option<String>,
    pub zero_chunks: u64,
    pub holes: Vec<Hole>,
    pub finished_unix: u64,
}

/// Largest raw block: the zstd format caps blocks at min(window, 128 KiB).
const RAW_BLOCK: usize = 128 << 10;

/// Writes `data` (non-empty, at most 4 GiB) into `out` as a standard zstd frame of raw
/// (stored) blocks with content size and content checksum — what zstd itself emits for data it
/// cannot compress, without running its match finder over it first.
pub fn encode_raw_frame(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(data.len() + 18 + 3 * data.len().div_ceil(RAW_BLOCK));
    out.extend_from_slice(&ZSTD_FRAME_MAGIC.to_le_bytes());
    // Frame header descriptor: content size in 4 bytes (flag 2), no single segment, checksum.
    out.push(0b1000_0100);
    // Window descriptor: 2^17 = 128 KiB, enough for raw blocks, which reference nothing.
    out.push((17 - 10) << 3);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let mut blocks = data.chunks(RAW_BLOCK).peekable();
    while let Some(b) = blocks.next() {
        let last = u32::from(blocks.peek().is_none());
        // Block header: bit 0 last block, bits 1-2 type (0 = raw), bits 3.. size.
        let header = last | ((b.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(b);
    }
    let checksum = xxhash_rust::xxh64::xxh64(data, 0) as u32;
    out.extend_from_slice(&checksum.to_le_bytes());
}

pub use crate::device::is_zero;

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ".
pub fn iso8601_utc(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::units::civil_utc(i64::try_from(secs).unwrap_or(i64::MAX));
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_scan() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        assert!(is_zero(&v[1..]));
        v[4098] = 1;
        assert!(!is_zero(&v));
        v[4098] = 0;
        v[2000] = 0x80;
        assert!(!is_zero(&v[3..]));
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn seek_table_round_trip() {
        let e = vec![
            SeekEntry {
                compressed: 100,
                decompressed: 0,
                checksum: XXH64_EMPTY_LOW32,
            },
            SeekEntry {
                compressed: 5,
                decompressed: 4096,
                checksum: 7,
            },
        ];
        let t = encode_seek_table(&e);
        let mut f = [0u8; FOOTER_SIZE];
        f.copy_from_slice(&t[t.len() - FOOTER_SIZE..]);
        let footer = parse_footer(&f).unwrap();
        assert_eq!(footer.table_frame_size, t.len() as u64);
        assert_eq!(parse_seek_table(&t, &footer).unwrap(), e);
    }

    #[test]
    fn raw_frames_decode_with_zstd() {
        let mut out = Vec::new();
        for len in [
            1usize,
            255,
            256,
            70_000,
            RAW_BLOCK,
            RAW_BLOCK + 1,
            3 * RAW_BLOCK + 17,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            encode_raw_frame(&data, &mut out);
            assert_eq!(
                zstd::bulk::decompress(&out, len).unwrap(),
                data,
                "len {len}"
            );
            // The checksum the seek table copies is the frame's last four bytes.
            let x = xxhash_rust::xxh64::xxh64(&data, 0) as u32;
            assert_eq!(le32(&out, out.len() - 4), x);
        }
    }

    #[test]
    fn json_frame() {
        let f = encode_tagged_frame(META_TAG, b"{}");
        assert_eq!(decode_tagged_frame(META_TAG, &f).unwrap(), b"{}");
        assert!(decode_tagged_frame(TRAILER_TAG, &f).is_err());
        let mut g = f.clone();
        g[17] ^= 1;
        assert!(decode_tagged_frame(META_TAG, &g).is_err());
    }
}
