//! Moving a GPT's backup header to the end of a bigger disk after a restore. (Reading a table is
//! `blockdev::table`'s job, for `list`, `info` and the image metadata alike.)
//!
//! Hand-written, not on the `gpt` crate: the crate writes a table through a `GptDisk` it opened
//! itself on a `Read + Write + Seek` device and re-serialises the headers and entries from its
//! own model, whereas this must patch the target just written, through [`Dest`] (O_DIRECT on a
//! disk, with its alignment rules): move the entry sectors byte for byte, change three header
//! fields, recompute two CRCs, and touch nothing else.

use super::format::{crc32, le32, le64};
use crate::device::Dest;
use crate::error::{Error, Result};

/// Reads `len` bytes at a byte offset.
pub type ReadFn<'a> = dyn FnMut(u64, &mut [u8]) -> Result<()> + 'a;

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// A GPT header, as far as this module uses it.
#[derive(Debug, Clone)]
struct GptHeader {
    raw: Vec<u8>,
    header_size: usize,
    alternate_lba: u64,
    last_usable: u64,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl GptHeader {
    fn parse(sector: &[u8]) -> Option<GptHeader> {
        if sector.len() < 92 || &sector[0..8] != GPT_SIGNATURE {
            return None;
        }
        let header_size = le32(sector, 12) as usize;
        if !(92..=sector.len()).contains(&header_size) {
            return None;
        }
        let mut h = sector[..header_size].to_vec();
        h[16..20].fill(0);
        if crc32(&h) != le32(sector, 16) {
            return None;
        }
        let num_entries = le32(sector, 80);
        let entry_size = le32(sector, 84);
        if !(128..=4096).contains(&entry_size) || num_entries > 65_536 {
            return None;
        }
        Some(GptHeader {
            raw: sector[..header_size].to_vec(),
            header_size,
            alternate_lba: le64(sector, 32),
            last_usable: le64(sector, 48),
            entries_lba: le64(sector, 72),
            num_entries,
            entry_size,
            entries_crc: le32(sector, 88),
        })
    }

    fn entries_len(&self) -> usize {
        self.num_entries as usize * self.entry_size as usize
    }

    /// The header with `my`, `alternate`, `entries_lba` and `last_usable` set, CRC recomputed,
    /// padded to a sector.
    fn rebuilt(
        &self,
        my: u64,
        alternate: u64,
        entries_lba: u64,
        last_usable: u64,
        ss: usize,
    ) -> Vec<u8> {
        let mut h = self.raw.clone();
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h[..self.header_size]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h.resize(ss, 0);
        h
    }
}

/// Reads the GPT (header and entries, both CRC-checked) if there is a valid one at LBA 1.
fn read_gpt(read: &mut ReadFn, ss: u64) -> Result<Option<(GptHeader, Vec<u8>)>> {
    let mut sector = vec![0u8; ss as usize];
    read(ss, &mut sector)?;
    let Some(h) = GptHeader::parse(&sector) else {
        return Ok(None);
    };
    let mut entries = vec![0u8; h.entries_len()];
    read(h.entries_lba.saturating_mul(ss), &mut entries)?;
    if crc32(&entries) != h.entries_crc {
        return Ok(None);
    }
    Ok(Some((h, entries)))
}

/// What [`relocate_backup_gpt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptFix {
    NotGpt,
    AlreadyAtEnd,
    Moved {
        old_backup_lba: u64,
        new_backup_lba: u64,
    },
}

/// After a GPT disk was written to a bigger target: writes the backup entries and header at the
/// target's end, points the primary header at them, extends the last usable LBA, zeroes the old
/// backup header and updates a protective MBR. MBR-only disks are left alone.
pub fn relocate_backup_gpt(
    read: &mut ReadFn,
    dest: &mut dyn Dest,
    ss: u32,
    target_size: u64,
) -> Result<GptFix> {
    let ss64 = u64::from(ss.max(512));
    let ssz = ss64 as usize;
    let Some((h, entries)) = read_gpt(read, ss64)? else {
        return Ok(GptFix::NotGpt);
    };
    let new_last = target_size / ss64 - 1;
    if h.alternate_lba == new_last {
        return Ok(GptFix::AlreadyAtEnd);
    }
    if h.alternate_lba > new_last {
        return Err(Error::Internal(format!(
            "GPT backup header at LBA {} lies beyond the target's last LBA {new_last}",
            h.alternate_lba
        )));
    }
    let entry_sectors = (h.entries_len() as u64).div_ceil(ss64);
    let new_entries_lba = new_last - entry_sectors;
    let last_usable = (new_entries_lba - 1).max(h.last_usable);
    let backup = h.rebuilt(new_last, 1, new_entries_lba, last_usable, ssz);
    let primary = h.rebuilt(1, new_last, h.entries_lba, last_usable, ssz);
    // Backup first: until the primary points at it, the old layout stays self-consistent.
    let mut padded = entries.clone();
    padded.resize((entry_sectors * ss64) as usize, 0);
    dest.write_at(new_entries_lba * ss64, &padded)?;
    dest.write_at(new_last * ss64, &backup)?;
    dest.sync()?;
    dest.write_at(ss64, &primary)?;
    // The stale backup header lies past the old last usable LBA, outside every partition.
    if h.alternate_lba > h.last_usable && h.alternate_lba > 1 {
        dest.write_at(h.alternate_lba * ss64, &vec![0u8; ssz])?;
    }
    let mut mbr = vec![0u8; 512];
    read(0, &mut mbr)?;
    let protective = mbr[510] == 0x55
        && mbr[511] == 0xAA
        && mbr[446 + 4] == 0xEE
        && (1..4).all(|i| mbr[446 + i * 16 + 4] == 0);
    if protective {
        let count = u32::try_from(target_size / ss64 - 1).unwrap_or(u32::MAX);
        mbr[446 + 12..446 + 16].copy_from_slice(&count.to_le_bytes());
        dest.write_at(0, &mbr)?;
    }
    dest.sync()?;
    Ok(GptFix::Moved {
        old_backup_lba: h.alternate_lba,
        new_backup_lba: new_last,
    })
}
