//! VHD, dynamic disk (Microsoft's Virtual Hard Disk Image Format Specification 1.0): a footer
//! copy, the dynamic disk header, the block allocation table (BAT), 2 MiB blocks each preceded by
//! a 512-byte sector bitmap, and the footer. Blocks of zeros stay unallocated (BAT entry
//! 0xFFFFFFFF). The creator application is `win ` so that readers (Hyper-V, qemu) take the
//! disk size from the footer's current size rather than from the CHS geometry.

use super::SparseWriter;
use crate::device::Dest;
use crate::error::{Error, Result};

const BLOCK: u64 = 2 << 20;
const SECTOR: u64 = 512;
const BAT_AT: u64 = 1536;
/// The format's limit: 2040 GiB.
const MAX_SIZE: u64 = 2040 << 30;

pub struct VhdWriter {
    size: u64,
    bat: Vec<u32>,
    /// Where the next block goes.
    next: u64,
    id: [u8; 16],
}

impl VhdWriter {
    pub fn new(size: u64) -> Result<VhdWriter> {
        if size > MAX_SIZE {
            return Err(Error::invalid_arg(
                "OUTPUT.vhd",
                format!("a VHD holds at most 2040 GiB; this disk has {size} bytes (use .qcow2 or .vmdk)"),
            ));
        }
        let entries = size.div_ceil(BLOCK) as usize;
        let bat_bytes = (entries as u64 * 4).div_ceil(SECTOR) * SECTOR;
        Ok(VhdWriter {
            size: size.div_ceil(SECTOR) * SECTOR,
            bat: vec![u32::MAX; entries],
            next: BAT_AT + bat_bytes.max(SECTOR),
            id: super::new_id(size),
        })
    }

    fn footer(&self) -> [u8; 512] {
        let mut f = [0u8; 512];
        f[..8].copy_from_slice(b"conectix");
        f[8..12].copy_from_slice(&2u32.to_be_bytes());
        f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        f[16..24].copy_from_slice(&SECTOR.to_be_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamp = now.saturating_sub(946_684_800) as u32;
        f[24..28].copy_from_slice(&stamp.to_be_bytes());
        f[28..32].copy_from_slice(b"win ");
        f[32..36].copy_from_slice(&0x000a_0000u32.to_be_bytes());
        f[36..40].copy_from_slice(b"Wi2k");
        f[40..48].copy_from_slice(&self.size.to_be_bytes());
        f[48..56].copy_from_slice(&self.size.to_be_bytes());
        let (c, h, s) = chs(self.size / SECTOR);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        f[58] = h;
        f[59] = s;
        f[60..64].copy_from_slice(&3u32.to_be_bytes());
        f[68..84].copy_from_slice(&self.id);
        let sum = checksum(&f);
        f[64..68].copy_from_slice(&sum.to_be_bytes());
        f
    }

    fn dynamic_header(&self) -> [u8; 1024] {
        let mut d = [0u8; 1024];
        d[..8].copy_from_slice(b"cxsparse");
        d[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        d[16..24].copy_from_slice(&BAT_AT.to_be_bytes());
        d[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        d[28..32].copy_from_slice(&(self.bat.len() as u32).to_be_bytes());
        d[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
        let sum = checksum(&d);
        d[36..40].copy_from_slice(&sum.to_be_bytes());
        d
    }
}

/// One's complement of the byte sum (the checksum field itself is zero while summing).
fn checksum(b: &[u8]) -> u32 {
    !b.iter().fold(0u32, |a, &x| a.wrapping_add(u32::from(x)))
}

/// The specification's CHS geometry for a number of sectors.
pub fn chs(sectors: u64) -> (u16, u8, u8) {
    let ts = sectors.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if ts >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = ts / spt;
    } else {
        let mut s = 17;
        let mut c = ts / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = ts / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = ts / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

impl SparseWriter for VhdWriter {
    fn granule(&self) -> u64 {
        BLOCK
    }

    fn write_granule(&mut self, dest: &mut dyn Dest, index: u64, data: &[u8]) -> Result<()> {
        let entry = self
            .bat
            .get_mut(index as usize)
            .ok_or_else(|| Error::Internal(format!("block {index} beyond the disk")))?;
        *entry = (self.next / SECTOR) as u32;
        // Every sector of an allocated block holds data: the bitmap is all ones.
        dest.write_at(self.next, &[0xFF; SECTOR as usize])?;
        // The last block may run past the disk's end; its tail holds zeros.
        dest.write_at(self.next + SECTOR, data)?;
        self.next += SECTOR + BLOCK;
        Ok(())
    }

    fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64> {
        let footer = self.footer();
        dest.write_at(0, &footer)?;
        dest.write_at(SECTOR, &self.dynamic_header())?;
        let mut bat = Vec::with_capacity(self.bat.len() * 4);
        for e in &self.bat {
            bat.extend_from_slice(&e.to_be_bytes());
        }
        bat.resize(
            (bat.len() as u64).div_ceil(SECTOR).max(1) as usize * SECTOR as usize,
            0xFF,
        );
        dest.write_at(BAT_AT, &bat)?;
        dest.write_at(self.next, &footer)?;
        Ok(self.next + SECTOR)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn geometry() {
        // 22 MiB: the specification's algorithm gives 17 sectors per track, 4 heads.
        assert_eq!(super::chs(22 * 2048), (662, 4, 17));
        assert_eq!(super::chs(u64::MAX), (65535, 16, 255));
    }
}
