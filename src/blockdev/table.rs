//! Partition tables (GPT, MBR with logical partitions) read from a disk or a disk image.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Which kind of partition table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    Mbr,
    /// No partition table (blank, or a filesystem on the whole disk).
    None,
    /// The table could not be read (I/O error, permission, corrupt GPT).
    Unknown,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Gpt => "gpt",
            TableKind::Mbr => "mbr",
            TableKind::None => "none",
            TableKind::Unknown => "unknown",
        })
    }
}

/// A partition table as stored on the medium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    pub kind: TableKind,
    /// The sector size the table was read with (GPT LBAs and MBR sectors are in these units).
    pub sector_size: u32,
    /// GPT disk GUID, or the MBR disk signature as 8 hex digits.
    pub disk_id: Option<String>,
    pub entries: Vec<TableEntry>,
    /// Something was wrong but a usable table was still read (e.g. a broken EBR chain).
    pub warning: Option<String>,
}

/// One partition table entry. Offsets are in bytes, absolute from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableEntry {
    /// Partition number as Linux names it: GPT entry index, MBR 1–4 primary, 5+ logical.
    pub number: u32,
    pub start: u64,
    pub size: u64,
    /// GPT type GUID (upper case) or MBR type byte ("0x83").
    pub type_code: String,
    /// Human name of the type when known ("Linux filesystem", "EFI System").
    pub type_name: Option<String>,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub uuid: Option<String>,
    /// MBR active flag, GPT legacy BIOS bootable attribute.
    pub bootable: bool,
    /// MBR extended container (its logical partitions follow as their own entries).
    pub extended: bool,
    /// MBR logical partition (inside the extended one).
    pub logical: bool,
}

/// Reads the partition table from `reader`, whose first `size` bytes are the disk.
///
/// `sector_size` is the logical sector size (512 or 4096); 0 tries 512 then 4096, which is what an
/// image file of unknown origin needs. Returns kind `None` when there is no table; an error for
/// I/O failures and for a GPT that is present but unusable.
pub fn read_partition_table<R: Read + Seek>(
    reader: &mut R,
    size: u64,
    sector_size: u32,
) -> Result<PartitionTable> {
    let mut dev = Bounded {
        inner: reader,
        size,
        pos: 0,
    };
    let mut mbr = [0u8; 512];
    if size < 512 {
        return Ok(empty(TableKind::None, sector_size.max(512)));
    }
    dev.seek(SeekFrom::Start(0)).map_err(table_io)?;
    dev.read_exact(&mut mbr).map_err(table_io)?;
    let has_sig = mbr[510] == 0x55 && mbr[511] == 0xaa;
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + 16 * i..462 + 16 * i]).collect();
    let protective = has_sig && entries.iter().any(|e| e[4] == 0xee);

    let sizes: Vec<u32> = match sector_size {
        0 => vec![512, 4096],
        s => vec![s],
    };
    if protective {
        let mut last_err = None;
        for &ss in &sizes {
            match read_gpt(&mut dev, ss) {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
        }
        return Err(last_err.unwrap_or_else(|| corrupt("protective MBR but no GPT header found")));
    }
    if !has_sig || !looks_like_mbr(&mbr) {
        return Ok(empty(TableKind::None, sizes[0]));
    }
    // An MBR on a device with large sectors (a hybrid ISO on a 2048-byte CD) usually counts in
    // 512-byte units, as it was written for USB sticks: use those when the device's own sector
    // size would put partitions past the end of the device.
    let ss = sizes[0];
    if ss > 512 && !mbr_fits(&mbr, ss, size) && mbr_fits(&mbr, 512, size) {
        return read_mbr(&mut dev, 512, &mbr);
    }
    read_mbr(&mut dev, ss, &mbr)
}

/// Whether every primary entry of the MBR ends inside a device of `size` bytes.
fn mbr_fits(mbr: &[u8; 512], ss: u32, size: u64) -> bool {
    (0..4).all(|i| {
        let e = &mbr[446 + 16 * i..462 + 16 * i];
        let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let count = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        count == 0 || (start + count) * u64::from(ss) <= size
    })
}

fn empty(kind: TableKind, sector_size: u32) -> PartitionTable {
    PartitionTable {
        kind,
        sector_size,
        disk_id: None,
        entries: Vec::new(),
        warning: None,
    }
}

fn table_io(e: io::Error) -> Error {
    Error::io("partition table", e)
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt("partition table", "GPT", reason)
}

/// A boot sector with 0x55AA is not necessarily an MBR: FAT/NTFS/exFAT volume boot records carry
/// the same signature. Require sane boot flags and no filesystem signature in the sector.
fn looks_like_mbr(sector: &[u8; 512]) -> bool {
    let flags_ok = (0..4).all(|i| matches!(sector[446 + 16 * i], 0x00 | 0x80));
    flags_ok && super::fstype::boot_sector_fs(sector).is_none()
}

/// Checks a GPT header at `lba` before the gpt crate sees it: it asserts on the entry size and
/// allocates the whole entry array at once, which a corrupt disk must not turn into an abort.
fn check_gpt_header<D: Read + Seek>(dev: &mut D, offset: u64) -> Result<bool> {
    let mut h = [0u8; 92];
    dev.seek(SeekFrom::Start(offset)).map_err(table_io)?;
    if dev.read_exact(&mut h).is_err() {
        return Ok(false);
    }
    if &h[0..8] != b"EFI PART" {
        return Ok(false);
    }
    let num = u32::from_le_bytes([h[80], h[81], h[82], h[83]]);
    let entry_size = u32::from_le_bytes([h[84], h[85], h[86], h[87]]);
    if entry_size != 128 {
        return Err(corrupt(format!("unsupported entry size {entry_size}")));
    }
    if num > 16384 {
        return Err(corrupt(format!("implausible entry count {num}")));
    }
    Ok(true)
}

fn read_gpt<R: Read + Seek>(dev: &mut Bounded<R>, ss: u32) -> Result<Option<PartitionTable>> {
    let lb = match ss {
        512 => gpt::disk::LogicalBlockSize::Lb512,
        4096 => gpt::disk::LogicalBlockSize::Lb4096,
        _ => return Ok(None),
    };
    let ss64 = u64::from(ss);
    let primary = check_gpt_header(dev, ss64)?;
    let backup_off = (dev.size / ss64).saturating_sub(1) * ss64;
    let backup = dev.size >= 3 * ss64 && check_gpt_header(dev, backup_off)?;
    if !primary && !backup {
        return Ok(None);
    }
    let disk = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(lb)
        .open_from_device(&mut *dev)
        .map_err(|e| corrupt(e.to_string()))?;
    let entries = disk
        .partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(&num, p)| {
            let guid = p.part_type_guid.guid.to_string().to_uppercase();
            TableEntry {
                number: num,
                start: p.first_lba.saturating_mul(ss64),
                size: (p.last_lba + 1)
                    .saturating_sub(p.first_lba)
                    .saturating_mul(ss64),
                type_name: gpt_type_name(&guid).map(str::to_string),
                type_code: guid,
                name: (!p.name.is_empty()).then(|| p.name.clone()),
                uuid: Some(p.part_guid.to_string().to_uppercase()),
                // Attribute bit 2: legacy BIOS bootable.
                bootable: p.flags & 4 != 0,
                extended: false,
                logical: false,
            }
        })
        .collect();
    let warning = if !primary {
        Some("primary GPT header missing, read the backup".to_string())
    } else if !backup {
        Some("backup GPT header missing".to_string())
    } else {
        None
    };
    Ok(Some(PartitionTable {
        kind: TableKind::Gpt,
        sector_size: ss,
        disk_id: Some(disk.guid().to_string().to_uppercase()),
        entries,
        warning,
    }))
}

fn read_mbr<R: Read + Seek>(
    dev: &mut Bounded<R>,
    ss: u32,
    sector0: &[u8; 512],
) -> Result<PartitionTable> {
    let ss64 = u64::from(ss);
    let mut warning = None;
    let mut list: Vec<(usize, mbrman::MBRPartitionEntry, bool)> = Vec::new();
    dev.seek(SeekFrom::Start(0)).map_err(table_io)?;
    match mbrman::MBR::read_from(&mut *dev, ss) {
        Ok(mbr) => {
            for (i, e) in mbr.iter() {
                list.push((i, e.clone(), i > 4));
            }
        }
        Err(e) => {
            // mbrman gives up on the whole table when one EBR is bad: keep the primaries.
            warning = Some(format!("logical partitions unreadable: {e}"));
            dev.seek(SeekFrom::Start(0)).map_err(table_io)?;
            let header = mbrman::MBRHeader::read_from(&mut *dev)
                .map_err(|e| Error::corrupt("partition table", "MBR", e.to_string()))?;
            for (i, e) in header.iter() {
                list.push((i, e.clone(), false));
            }
        }
    }
    let entries = list
        .into_iter()
        .filter(|(_, e, _)| e.is_used())
        .map(|(i, e, logical)| TableEntry {
            number: u32::try_from(i).unwrap_or(u32::MAX),
            start: u64::from(e.starting_lba) * ss64,
            size: u64::from(e.sectors) * ss64,
            type_code: format!("0x{:02x}", e.sys),
            type_name: mbr_type_name(e.sys).map(str::to_string),
            name: None,
            uuid: None,
            bootable: e.boot == 0x80,
            extended: e.is_extended(),
            logical,
        })
        .collect();
    let sig = u32::from_le_bytes([sector0[440], sector0[441], sector0[442], sector0[443]]);
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        sector_size: ss,
        disk_id: Some(format!("{sig:08x}")),
        entries,
        warning,
    })
}

/// Names for the GPT type GUIDs one meets on real disks.
fn gpt_type_name(guid: &str) -> Option<&'static str> {
    Some(match guid {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM-64)",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3" => "Windows LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD" => "Windows LDM data",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS+",
        "7C3457EF-0000-11AA-AA11-00306543ECAC" => "Apple APFS",
        "516E7CB6-6ECF-11D6-8FF8-00022D09712B" => "FreeBSD UFS",
        _ => return None,
    })
}

fn mbr_type_name(sys: u8) -> Option<&'static str> {
    Some(match sys {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0e => "FAT16",
        0x05 | 0x0f | 0x85 => "Extended",
        0x07 => "NTFS/exFAT",
        0x0b | 0x0c => "FAT32",
        0x11 | 0x14 | 0x16 | 0x17 | 0x1b | 0x1c | 0x1e => "Hidden",
        0x27 => "Windows recovery",
        0x42 => "Windows LDM",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xa5 => "FreeBSD",
        0xaf => "Apple HFS+",
        0xee => "GPT protective",
        0xef => "EFI System",
        0xfd => "Linux RAID",
        _ => return None,
    })
}

/// A reader seen as a disk of exactly `size` bytes. Writes fail: the gpt crate wants
/// `Read + Write + Seek` even when it only reads, and nothing here may ever write a disk.
struct Bounded<'a, R> {
    inner: &'a mut R,
    size: u64,
    pos: u64,
}

impl<R> fmt::Debug for Bounded<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bounded(size={}, pos={})", self.size, self.pos)
    }
}

impl<R: Read + Seek> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<R: Read + Seek> Seek for Bounded<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        self.pos = new;
        Ok(new)
    }
}

impl<R> Write for Bounded<'_, R> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "partition tables are only read",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn put_entry(img: &mut [u8], slot: usize, boot: u8, sys: u8, lba: u32, sectors: u32) {
        let o = 446 + 16 * slot;
        img[o] = boot;
        img[o + 4] = sys;
        img[o + 8..o + 12].copy_from_slice(&lba.to_le_bytes());
        img[o + 12..o + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    fn sig(img: &mut [u8], at: usize) {
        img[at + 510] = 0x55;
        img[at + 511] = 0xaa;
    }

    #[test]
    fn blank_disk_has_no_table() {
        let mut c = Cursor::new(vec![0u8; 1 << 20]);
        let t = read_partition_table(&mut c, 1 << 20, 512).unwrap();
        assert_eq!(t.kind, TableKind::None);
    }

    #[test]
    fn hybrid_iso_mbr_on_a_cd_counts_in_512_byte_sectors() {
        // A 4 MiB "CD" (2048-byte sectors) whose MBR describes it in 512-byte units.
        let mut img = vec![0u8; 4 << 20];
        put_entry(&mut img, 0, 0x80, 0x17, 0, 8192);
        put_entry(&mut img, 1, 0, 0xef, 6000, 1000);
        sig(&mut img, 0);
        let t = read_partition_table(&mut Cursor::new(img), 4 << 20, 2048).unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        assert_eq!(t.sector_size, 512);
        assert_eq!(t.entries.iter().map(|e| e.size).max(), Some(4 << 20));
    }

    #[test]
    fn mbr_with_logicals_and_broken_ebr() {
        let mut img = vec![0u8; 8 << 20];
        put_entry(&mut img, 0, 0x80, 0x83, 2048, 4096);
        put_entry(&mut img, 1, 0, 0x05, 8192, 8192);
        sig(&mut img, 0);
        // EBR 1 at 8192: logical at +2048, 1024 sectors; link to the next EBR at +4096.
        let e1 = 8192 * 512;
        put_entry(&mut img[e1..], 0, 0, 0x83, 2048, 1024);
        put_entry(&mut img[e1..], 1, 0, 0x05, 4096, 2048);
        sig(&mut img, e1);
        let e2 = (8192 + 4096) * 512;
        put_entry(&mut img[e2..], 0, 0, 0x82, 1024, 1024);
        sig(&mut img, e2);
        let size = img.len() as u64;
        let t = read_partition_table(&mut Cursor::new(img.clone()), size, 512).unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        let nums: Vec<u32> = t.entries.iter().map(|e| e.number).collect();
        assert_eq!(nums, [1, 2, 5, 6]);
        assert!(t.entries[0].bootable);
        assert!(t.entries[1].extended);
        assert_eq!(t.entries[2].start, (8192 + 2048) * 512);
        assert_eq!(t.entries[3].start, (8192 + 4096 + 1024) * 512);
        assert_eq!(t.entries[3].type_name.as_deref(), Some("Linux swap"));
        assert!(t.warning.is_none());

        // Break the second EBR's signature: primaries survive, with a warning.
        let mut broken = img;
        broken[e2 + 510] = 0;
        let t = read_partition_table(&mut Cursor::new(broken), size, 512).unwrap();
        let nums: Vec<u32> = t.entries.iter().map(|e| e.number).collect();
        assert_eq!(nums, [1, 2]);
        assert!(t.warning.is_some());
    }

    #[test]
    fn fat_boot_sector_is_not_an_mbr() {
        let mut img = vec![0u8; 1 << 20];
        img[0] = 0xeb;
        img[3..11].copy_from_slice(b"mkfs.fat");
        img[11..13].copy_from_slice(&512u16.to_le_bytes());
        img[82..90].copy_from_slice(b"FAT32   ");
        sig(&mut img, 0);
        let t = read_partition_table(&mut Cursor::new(img), 1 << 20, 512).unwrap();
        assert_eq!(t.kind, TableKind::None);
    }

    #[test]
    fn corrupt_gpt_entry_size_is_an_error_not_a_panic() {
        let mut img = vec![0u8; 1 << 20];
        put_entry(&mut img, 0, 0, 0xee, 1, 2047);
        sig(&mut img, 0);
        img[512..520].copy_from_slice(b"EFI PART");
        img[512 + 84..512 + 88].copy_from_slice(&64u32.to_le_bytes());
        let r = read_partition_table(&mut Cursor::new(img), 1 << 20, 512);
        assert!(r.is_err());
    }

    #[test]
    fn writes_are_refused() {
        let mut c = Cursor::new(vec![0u8; 16]);
        let mut b = Bounded {
            inner: &mut c,
            size: 16,
            pos: 0,
        };
        assert!(b.write(b"x").is_err());
        assert_eq!(b.seek(SeekFrom::End(-4)).unwrap(), 12);
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 4);
    }
}
