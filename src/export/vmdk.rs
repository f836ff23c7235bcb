//! VMDK, monolithicSparse (VMware's Virtual Disk Format 1.1, hosted sparse extent): the sparse
//! extent header in sector 0, the embedded text descriptor, the grain directory and all grain
//! tables, then 64 KiB grains in disk order. Grains of zeros stay unallocated (grain table entry
//! 0), which reads as zeros without a parent.

use super::SparseWriter;
use crate::device::Dest;
use crate::error::{Error, Result};

const SECTOR: u64 = 512;
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
const GTES_PER_GT: u64 = 512;
const DESCRIPTOR_AT: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;

pub struct VmdkWriter {
    capacity: u64,
    gt: Vec<u32>,
    gd_at: u64,
    gts_at: u64,
    num_gts: u64,
    overhead: u64,
    /// Next free sector.
    next: u64,
    name: String,
    cid: u32,
}

impl VmdkWriter {
    pub fn new(size: u64, name: &str) -> VmdkWriter {
        let capacity = size.div_ceil(SECTOR);
        let grains = capacity.div_ceil(GRAIN_SECTORS);
        let num_gts = grains.div_ceil(GTES_PER_GT).max(1);
        let gd_at = DESCRIPTOR_AT + DESCRIPTOR_SECTORS;
        let gd_sectors = (num_gts * 4).div_ceil(SECTOR);
        let gts_at = gd_at + gd_sectors;
        let gt_sectors = num_gts * GTES_PER_GT * 4 / SECTOR;
        let overhead = (gts_at + gt_sectors).div_ceil(GRAIN_SECTORS) * GRAIN_SECTORS;
        let id = super::new_id(size);
        VmdkWriter {
            capacity,
            gt: vec![0; (num_gts * GTES_PER_GT) as usize],
            gd_at,
            gts_at,
            num_gts,
            overhead,
            next: overhead,
            name: name.replace('"', "_"),
            cid: u32::from_le_bytes([id[0], id[1], id[2], id[3]]) | 1,
        }
    }

    fn descriptor(&self) -> String {
        let cylinders = (self.capacity / (16 * 63)).clamp(1, 16383);
        format!(
            "# Disk DescriptorFile\nversion=1\nCID={:08x}\nparentCID=ffffffff\n\
             createType=\"monolithicSparse\"\n\n# Extent description\nRW {} SPARSE \"{}\"\n\n\
             # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n\
             ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"16\"\n\
             ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n\
             ddb.toolsVersion = \"0\"\n",
            self.cid, self.capacity, self.name
        )
    }

    fn header(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..4].copy_from_slice(&0x564d_444bu32.to_le_bytes());
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        // Bit 0: the newline characters below are valid.
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        h[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
        h[28..36].copy_from_slice(&DESCRIPTOR_AT.to_le_bytes());
        h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
        h[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
        // 48..56: no redundant grain directory.
        h[56..64].copy_from_slice(&self.gd_at.to_le_bytes());
        h[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        h[72] = 0;
        h[73] = b'\n';
        h[74] = b' ';
        h[75] = b'\r';
        h[76] = b'\n';
        h
    }
}

impl SparseWriter for VmdkWriter {
    fn granule(&self) -> u64 {
        GRAIN
    }

    fn write_granule(&mut self, dest: &mut dyn Dest, index: u64, data: &[u8]) -> Result<()> {
        let sector = u32::try_from(self.next)
            .map_err(|_| Error::invalid_arg("OUTPUT.vmdk", "the disk is too large for a VMDK"))?;
        let e = self
            .gt
            .get_mut(index as usize)
            .ok_or_else(|| Error::Internal(format!("grain {index} beyond the disk")))?;
        *e = sector;
        dest.write_at(self.next * SECTOR, data)?;
        self.next += GRAIN_SECTORS;
        Ok(())
    }

    fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64> {
        let mut meta = vec![0u8; (self.overhead * SECTOR) as usize];
        meta[..512].copy_from_slice(&self.header());
        let d = self.descriptor();
        let at = (DESCRIPTOR_AT * SECTOR) as usize;
        if d.len() > (DESCRIPTOR_SECTORS * SECTOR) as usize {
            return Err(Error::Internal("VMDK descriptor too long".into()));
        }
        meta[at..at + d.len()].copy_from_slice(d.as_bytes());
        for k in 0..self.num_gts {
            let gd = (self.gd_at * SECTOR + k * 4) as usize;
            let gt_sector = (self.gts_at + k * GTES_PER_GT * 4 / SECTOR) as u32;
            meta[gd..gd + 4].copy_from_slice(&gt_sector.to_le_bytes());
        }
        let gts = (self.gts_at * SECTOR) as usize;
        for (i, e) in self.gt.iter().enumerate() {
            meta[gts + i * 4..gts + i * 4 + 4].copy_from_slice(&e.to_le_bytes());
        }
        dest.write_at(0, &meta)?;
        let len = self.next * SECTOR;
        dest.extend_to(len)?;
        Ok(len)
    }
}
