//! VHDX, dynamic disk (Microsoft's VHDX Format Specification 1.0), what Hyper-V and Azure tools
//! open: the file type identifier, two headers, two region tables, an empty log, the metadata
//! region, the block allocation table (BAT), then 2 MiB payload blocks. Every structure is
//! 1 MiB-aligned as the specification requires; blocks of zeros stay "not present" (BAT state 0)
//! and read as zeros. Headers, region tables and the metadata table carry CRC-32C checksums.
//!
//! The log is empty (log GUID zero): nothing is replayed when the disk is opened, so a reader
//! that honours the log (Hyper-V, qemu) sees exactly the blocks written here.

use super::SparseWriter;
use crate::device::Dest;
use crate::error::{Error, Result};

pub const BLOCK: u64 = 2 << 20;
const MIB: u64 = 1 << 20;
const LOGICAL_SECTOR: u64 = 512;
const PHYSICAL_SECTOR: u32 = 4096;
/// Payload blocks per sector bitmap block: 2^23 sectors' worth of bitmap over the block size.
pub const CHUNK_RATIO: u64 = (1 << 23) * LOGICAL_SECTOR / BLOCK;
const LOG_AT: u64 = MIB;
const LOG_LEN: u64 = MIB;
const METADATA_AT: u64 = 2 * MIB;
const METADATA_LEN: u64 = MIB;
pub const BAT_AT: u64 = 3 * MIB;
/// The format's limit: 64 TiB.
const MAX_SIZE: u64 = 64 << 40;

/// BAT states.
pub const PAYLOAD_FULLY_PRESENT: u64 = 6;

// GUIDs of the regions and metadata items the specification defines.
pub const BAT_GUID: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
pub const METADATA_GUID: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
pub const FILE_PARAMETERS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
pub const VIRTUAL_DISK_SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const VIRTUAL_DISK_ID: &str = "BECA12AB-B2E6-4523-93EF-C309E000C746";
pub const LOGICAL_SECTOR_SIZE: &str = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
const PHYSICAL_SECTOR_SIZE: &str = "CDA348C7-445D-4471-9CC9-E9885251C556";

/// A GUID as stored on disk: the first three fields little-endian, the rest as written.
pub fn guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).map_or(0, |d| d as u8))
        .collect();
    let mut raw = [0u8; 16];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = hex.get(2 * i).map_or(0, |h| h << 4) | hex.get(2 * i + 1).copied().unwrap_or(0);
    }
    let mut g = raw;
    g[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    g[4..6].copy_from_slice(&[raw[5], raw[4]]);
    g[6..8].copy_from_slice(&[raw[7], raw[6]]);
    g
}

pub fn crc32c(data: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(data)
}

/// BAT entries for a disk of `blocks` payload blocks: a sector bitmap entry follows every
/// `CHUNK_RATIO` payload entries.
pub fn bat_entries(blocks: u64) -> u64 {
    blocks + blocks.saturating_sub(1) / CHUNK_RATIO
}

/// Where payload block `i`'s entry sits in the BAT.
pub fn bat_index(i: u64) -> u64 {
    i + i / CHUNK_RATIO
}

pub struct VhdxWriter {
    size: u64,
    bat: Vec<u64>,
    /// Where the next block goes (bytes, 1 MiB-aligned).
    next: u64,
}

impl VhdxWriter {
    pub fn new(size: u64) -> Result<VhdxWriter> {
        if size > MAX_SIZE {
            return Err(Error::invalid_arg(
                "OUTPUT.vhdx",
                format!("a VHDX holds at most 64 TiB; this disk has {size} bytes"),
            ));
        }
        let size = size.div_ceil(LOGICAL_SECTOR) * LOGICAL_SECTOR;
        let entries = bat_entries(size.div_ceil(BLOCK));
        let bat_len = (entries * 8).div_ceil(MIB).max(1) * MIB;
        Ok(VhdxWriter {
            size,
            bat: vec![0; entries as usize],
            next: BAT_AT + bat_len,
        })
    }

    fn header(&self, sequence: u64, file_write: &[u8; 16], data_write: &[u8; 16]) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[0..4].copy_from_slice(b"head");
        h[8..16].copy_from_slice(&sequence.to_le_bytes());
        h[16..32].copy_from_slice(file_write);
        h[32..48].copy_from_slice(data_write);
        // LogGuid (48..64) stays zero: the log is empty.
        h[64..66].copy_from_slice(&0u16.to_le_bytes()); // log version
        h[66..68].copy_from_slice(&1u16.to_le_bytes()); // version
        h[68..72].copy_from_slice(&(LOG_LEN as u32).to_le_bytes());
        h[72..80].copy_from_slice(&LOG_AT.to_le_bytes());
        let sum = crc32c(&h);
        h[4..8].copy_from_slice(&sum.to_le_bytes());
        h
    }

    fn region_table(&self) -> Vec<u8> {
        let mut r = vec![0u8; 64 << 10];
        r[0..4].copy_from_slice(b"regi");
        r[8..12].copy_from_slice(&2u32.to_le_bytes());
        let bat_len = (self.bat.len() as u64 * 8).div_ceil(MIB).max(1) * MIB;
        for (i, (g, at, len)) in [
            (BAT_GUID, BAT_AT, bat_len),
            (METADATA_GUID, METADATA_AT, METADATA_LEN),
        ]
        .into_iter()
        .enumerate()
        {
            let e = 16 + i * 32;
            r[e..e + 16].copy_from_slice(&guid(g));
            r[e + 16..e + 24].copy_from_slice(&at.to_le_bytes());
            r[e + 24..e + 28].copy_from_slice(&(len as u32).to_le_bytes());
            r[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes()); // required
        }
        let sum = crc32c(&r);
        r[4..8].copy_from_slice(&sum.to_le_bytes());
        r
    }

    fn metadata(&self, disk_id: &[u8; 16]) -> Vec<u8> {
        const VIRTUAL_DISK: u32 = 2;
        const REQUIRED: u32 = 4;
        let mut m = vec![0u8; METADATA_LEN as usize];
        m[0..8].copy_from_slice(b"metadata");
        let mut file_params = Vec::new();
        file_params.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        file_params.extend_from_slice(&0u32.to_le_bytes()); // not fixed, no parent
        let items: [(&str, Vec<u8>, u32); 5] = [
            (FILE_PARAMETERS, file_params, REQUIRED),
            (
                VIRTUAL_DISK_SIZE,
                self.size.to_le_bytes().to_vec(),
                VIRTUAL_DISK | REQUIRED,
            ),
            (VIRTUAL_DISK_ID, disk_id.to_vec(), VIRTUAL_DISK | REQUIRED),
            (
                LOGICAL_SECTOR_SIZE,
                (LOGICAL_SECTOR as u32).to_le_bytes().to_vec(),
                VIRTUAL_DISK | REQUIRED,
            ),
            (
                PHYSICAL_SECTOR_SIZE,
                PHYSICAL_SECTOR.to_le_bytes().to_vec(),
                VIRTUAL_DISK | REQUIRED,
            ),
        ];
        m[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
        // Item data after the 64 KiB table.
        let mut data_at = 64usize << 10;
        for (i, (g, data, flags)) in items.iter().enumerate() {
            let e = 32 + i * 32;
            m[e..e + 16].copy_from_slice(&guid(g));
            m[e + 16..e + 20].copy_from_slice(&(data_at as u32).to_le_bytes());
            m[e + 20..e + 24].copy_from_slice(&(data.len() as u32).to_le_bytes());
            m[e + 24..e + 28].copy_from_slice(&flags.to_le_bytes());
            m[data_at..data_at + data.len()].copy_from_slice(data);
            data_at += data.len().div_ceil(8) * 8;
        }
        m
    }
}

impl SparseWriter for VhdxWriter {
    fn granule(&self) -> u64 {
        BLOCK
    }

    fn write_granule(&mut self, dest: &mut dyn Dest, index: u64, data: &[u8]) -> Result<()> {
        let at = self.next;
        let slot = self
            .bat
            .get_mut(bat_index(index) as usize)
            .ok_or_else(|| Error::Internal(format!("block {index} beyond the disk")))?;
        dest.write_at(at, data)?;
        *slot = PAYLOAD_FULLY_PRESENT | (at / MIB) << 20;
        self.next += BLOCK;
        Ok(())
    }

    fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64> {
        let mut ident = vec![0u8; 64 << 10];
        ident[0..8].copy_from_slice(b"vhdxfile");
        for (i, u) in "salvor".encode_utf16().enumerate() {
            ident[8 + 2 * i..10 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        dest.write_at(0, &ident)?;
        let file_write = super::new_id(self.size);
        let data_write = super::new_id(self.size ^ 1);
        dest.write_at(64 << 10, &self.header(1, &file_write, &data_write))?;
        dest.write_at(128 << 10, &self.header(2, &file_write, &data_write))?;
        let regions = self.region_table();
        dest.write_at(192 << 10, &regions)?;
        dest.write_at(256 << 10, &regions)?;
        dest.write_at(LOG_AT, &vec![0u8; LOG_LEN as usize])?;
        dest.write_at(METADATA_AT, &self.metadata(&super::new_id(self.size ^ 2)))?;
        let mut bat = Vec::with_capacity(self.bat.len() * 8);
        for e in &self.bat {
            bat.extend_from_slice(&e.to_le_bytes());
        }
        bat.resize(bat.len().div_ceil(512) * 512, 0);
        dest.write_at(BAT_AT, &bat)?;
        // The file ends at the last block (or the BAT region when no block was written).
        dest.extend_to(self.next)?;
        Ok(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_layout_and_bat_indexing() {
        let g = guid(BAT_GUID);
        assert_eq!(&g[..8], &[0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42]);
        assert_eq!(&g[8..], &[0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08]);
        assert_eq!(CHUNK_RATIO, 2048);
        assert_eq!(bat_entries(1), 1);
        assert_eq!(bat_entries(2048), 2048);
        assert_eq!(bat_entries(2049), 2050);
        assert_eq!(bat_index(2047), 2047);
        assert_eq!(bat_index(2048), 2049);
        // CRC-32C of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
