//! Partition tables as the image engine needs them: a summary for the metadata and `info`, and
//! moving a GPT's backup header to the end of a bigger disk after a restore.
//!
//! Parsed by hand from sectors (not through a device path) so the same code reads a disk, an
//! image's first chunk and a target that was just written.

use super::format::{crc32, le32, le64, PartitionInfo, PartitionTable};
use crate::device::Dest;
use crate::error::{Error, Result};

/// Reads `len` bytes at a byte offset.
pub type ReadFn<'a> = dyn FnMut(u64, &mut [u8]) -> Result<()> + 'a;

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

fn guid_string(b: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect::<String>()
    )
}

fn gpt_type_name(guid: &str) -> Option<&'static str> {
    Some(match guid {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI system",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS+",
        "7C3457EF-0000-11AA-AA11-00306543ECAC" => "Apple APFS",
        _ => return None,
    })
}

fn mbr_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x01 | 0x04 | 0x06 | 0x0E => "FAT16",
        0x0B | 0x0C => "FAT32",
        0x07 => "NTFS/exFAT",
        0x05 | 0x0F | 0x85 => "extended",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8E => "Linux LVM",
        0xEE => "GPT protective",
        0xEF => "EFI system",
        0xFD => "Linux RAID",
        _ => return None,
    })
}

/// A GPT header, as far as this module uses it.
#[derive(Debug, Clone)]
struct GptHeader {
    raw: Vec<u8>,
    header_size: usize,
    alternate_lba: u64,
    last_usable: u64,
    disk_guid: String,
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
            disk_guid: guid_string(&sector[56..72]),
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

/// Summarises the partition table of a disk of `size` bytes; None if there is none we know.
pub fn summarize(read: &mut ReadFn, ss: u32, size: u64) -> Result<Option<PartitionTable>> {
    let ss64 = u64::from(ss.max(512));
    if size < ss64 * 2 {
        return Ok(None);
    }
    if let Some((h, entries)) = read_gpt(read, ss64)? {
        let mut partitions = Vec::new();
        for (i, e) in entries.chunks(h.entry_size as usize).enumerate() {
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let type_id = guid_string(&e[0..16]);
            let (first, last) = (le64(e, 32), le64(e, 40));
            let name: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&c| c != 0)
                .collect();
            partitions.push(PartitionInfo {
                number: i as u32 + 1,
                first_lba: first,
                last_lba: last,
                size: last
                    .saturating_sub(first)
                    .saturating_add(1)
                    .saturating_mul(ss64),
                type_name: gpt_type_name(&type_id).map(str::to_string),
                type_id,
                name: Some(String::from_utf16_lossy(&name)).filter(|n| !n.is_empty()),
                guid: Some(guid_string(&e[16..32])),
            });
        }
        return Ok(Some(PartitionTable {
            kind: "gpt".into(),
            disk_guid: Some(h.disk_guid),
            partitions,
        }));
    }
    let mut mbr = vec![0u8; 512];
    read(0, &mut mbr)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Ok(None);
    }
    let mut partitions = Vec::new();
    for i in 0..4 {
        let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
        let t = e[4];
        let (start, count) = (u64::from(le32(e, 8)), u64::from(le32(e, 12)));
        if t == 0 || count == 0 {
            continue;
        }
        partitions.push(PartitionInfo {
            number: i as u32 + 1,
            first_lba: start,
            last_lba: start + count - 1,
            size: count * ss64,
            type_id: format!("0x{t:02X}"),
            type_name: mbr_type_name(t).map(str::to_string),
            name: None,
            guid: None,
        });
    }
    // A boot sector of a bare filesystem also ends in 55 AA; only call it MBR if entries exist.
    if partitions.is_empty() {
        return Ok(None);
    }
    Ok(Some(PartitionTable {
        kind: "mbr".into(),
        disk_guid: Some(format!("{:08X}", le32(&mbr, 440))),
        partitions,
    }))
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
