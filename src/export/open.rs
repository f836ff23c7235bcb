//! Reading the sparse formats back (for `salvor serve`): qcow2 (v2/v3, uncompressed clusters, no
//! backing file, no encryption, no incompatible features), VHD (fixed and dynamic), VHDX (fixed
//! and dynamic, clean log, no parent) and VMDK (monolithicSparse, uncompressed). Each disk becomes a table: granule -> file offset, or none
//! (reads as zeros). Anything else a format can express is refused with a clear message rather
//! than read wrongly.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A disk in one of the sparse formats, opened read-only.
pub struct SparseDisk {
    file: File,
    path: PathBuf,
    pub format: super::Format,
    pub size: u64,
    pub granule: u64,
    /// File offset of each granule's data, or None: zeros.
    map: Vec<Option<u64>>,
    /// VHD: byte offset of the data inside a block when the sector bitmap says "present"; the
    /// bitmaps of allocated blocks are honoured at sector granularity.
    vhd_bitmaps: Option<Vec<Option<Vec<u8>>>>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Which sparse format `path` holds, by its magic (None: not one of them).
pub fn detect(path: &Path) -> Option<super::Format> {
    let f = File::open(path).ok()?;
    let mut m = [0u8; 8];
    f.read_exact_at(&mut m, 0).ok()?;
    if &m[..4] == b"QFI\xfb" {
        return Some(super::Format::Qcow2);
    }
    if &m[..4] == b"KDMV" {
        return Some(super::Format::Vmdk);
    }
    if &m == b"conectix" {
        return Some(super::Format::Vhd);
    }
    if &m == b"vhdxfile" {
        return Some(super::Format::Vhdx);
    }
    // A fixed VHD has its footer only at the end.
    let len = f.metadata().ok()?.len();
    if len >= 512 {
        f.read_exact_at(&mut m, len - 512).ok()?;
        if &m == b"conectix" {
            return Some(super::Format::Vhd);
        }
    }
    None
}

impl SparseDisk {
    pub fn open(path: &Path) -> Result<SparseDisk> {
        let format = detect(path).ok_or_else(|| {
            Error::corrupt(path, "offset 0", "not a qcow2, VHD, VHDX or VMDK file")
        })?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut d = SparseDisk {
            file,
            path: path.to_path_buf(),
            format,
            size: 0,
            granule: 0,
            map: Vec::new(),
            vhd_bitmaps: None,
        };
        match format {
            super::Format::Qcow2 => d.open_qcow2(len)?,
            super::Format::Vhd => d.open_vhd(len)?,
            super::Format::Vhdx => d.open_vhdx(len)?,
            super::Format::Vmdk => d.open_vmdk(len)?,
            super::Format::E01 => return Err(Error::Internal("E01 is not read".into())),
        }
        Ok(d)
    }

    fn bad(&self, at: u64, why: impl Into<String>) -> Error {
        Error::corrupt(&self.path, format!("offset {at}"), why)
    }

    fn read(&self, at: u64, n: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.file
            .read_exact_at(&mut b, at)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(b)
    }

    fn check_in(&self, off: u64, len: u64, file_len: u64) -> Result<u64> {
        if off.checked_add(len).is_none_or(|e| e > file_len) {
            return Err(self.bad(off, "points past the end of the file"));
        }
        Ok(off)
    }

    fn open_qcow2(&mut self, len: u64) -> Result<()> {
        let h = self.read(0, 104.min(len as usize))?;
        if h.len() < 72 {
            return Err(self.bad(0, "qcow2 header too short"));
        }
        let version = be32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(self.bad(4, format!("qcow2 version {version} is not supported")));
        }
        if be64(&h, 8) != 0 {
            return Err(self.bad(8, "qcow2 with a backing file is not supported"));
        }
        let bits = be32(&h, 20);
        if !(9..=21).contains(&bits) {
            return Err(self.bad(20, format!("cluster bits {bits}")));
        }
        if be32(&h, 32) != 0 {
            return Err(self.bad(32, "encrypted qcow2 is not supported"));
        }
        if version == 3 && h.len() >= 80 && be64(&h, 72) != 0 {
            return Err(self.bad(
                72,
                "qcow2 with incompatible features (dirty, external data, \
                 extended L2, compression type) is not supported; `qemu-img convert` it first",
            ));
        }
        let cluster = 1u64 << bits;
        self.size = be64(&h, 24);
        self.granule = cluster;
        let l1_size = u64::from(be32(&h, 36));
        let l1_at = be64(&h, 40);
        let per_l2 = cluster / 8;
        let clusters = self.size.div_ceil(cluster);
        if l1_size < clusters.div_ceil(per_l2) || l1_size > (1 << 26) {
            return Err(self.bad(36, "L1 table does not cover the disk"));
        }
        self.check_in(l1_at, l1_size * 8, len)?;
        let l1 = self.read(l1_at, (l1_size * 8) as usize)?;
        let mask = 0x00FF_FFFF_FFFF_FE00u64;
        self.map = vec![None; clusters as usize];
        for i in 0..clusters.div_ceil(per_l2) {
            let l2_at = be64(&l1, (i * 8) as usize) & mask;
            if l2_at == 0 {
                continue;
            }
            self.check_in(l2_at, cluster, len)?;
            let l2 = self.read(l2_at, cluster as usize)?;
            for j in 0..per_l2 {
                let k = i * per_l2 + j;
                if k >= clusters {
                    break;
                }
                let e = be64(&l2, (j * 8) as usize);
                if e & (1 << 62) != 0 {
                    return Err(self.bad(l2_at, "compressed qcow2 clusters are not supported"));
                }
                // v3 bit 0: the cluster reads as zeros.
                if version == 3 && e & 1 != 0 {
                    continue;
                }
                let off = e & mask;
                if off != 0 {
                    self.map[k as usize] = Some(self.check_in(off, cluster, len)?);
                }
            }
        }
        Ok(())
    }

    fn open_vhd(&mut self, len: u64) -> Result<()> {
        let footer = self.read(len - 512, 512)?;
        if &footer[..8] != b"conectix" {
            return Err(self.bad(len - 512, "VHD footer missing"));
        }
        self.size = be64(&footer, 48);
        let kind = be32(&footer, 60);
        match kind {
            2 => {
                // Fixed: the disk, then the footer.
                if self.size + 512 > len {
                    return Err(self.bad(48, "fixed VHD shorter than its size"));
                }
                self.granule = 2 << 20;
                let n = self.size.div_ceil(self.granule);
                self.map = (0..n).map(|i| Some(i * self.granule)).collect();
                Ok(())
            }
            3 => {
                let dyn_at = be64(&footer, 16);
                self.check_in(dyn_at, 1024, len)?;
                let dh = self.read(dyn_at, 1024)?;
                if &dh[..8] != b"cxsparse" {
                    return Err(self.bad(dyn_at, "VHD dynamic header missing"));
                }
                let bat_at = be64(&dh, 16);
                let entries = u64::from(be32(&dh, 28));
                let block = u64::from(be32(&dh, 32));
                if block == 0 || block % 512 != 0 || entries < self.size.div_ceil(block) {
                    return Err(self.bad(dyn_at, "VHD block table does not cover the disk"));
                }
                self.granule = block;
                self.check_in(bat_at, entries * 4, len)?;
                let bat = self.read(bat_at, (entries * 4) as usize)?;
                let bitmap = (block / 512).div_ceil(8).div_ceil(512) * 512;
                let n = self.size.div_ceil(block);
                let mut bitmaps = Vec::with_capacity(n as usize);
                self.map = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let e = be32(&bat, (i * 4) as usize);
                    if e == u32::MAX {
                        self.map.push(None);
                        bitmaps.push(None);
                        continue;
                    }
                    let at = u64::from(e) * 512;
                    self.check_in(at, bitmap + block, len)?;
                    let bm = self.read(at, bitmap as usize)?;
                    self.map.push(Some(at + bitmap));
                    bitmaps.push((!bm.iter().all(|&b| b == 0xFF)).then_some(bm));
                }
                self.vhd_bitmaps = Some(bitmaps);
                Ok(())
            }
            4 => Err(self.bad(60, "differencing VHDs are not supported")),
            k => Err(self.bad(60, format!("VHD disk type {k}"))),
        }
    }

    /// VHDX: the current header (highest sequence number with a valid CRC-32C), its region
    /// table, the metadata items that fix the geometry, and the BAT. A log that still holds
    /// entries is refused: its writes would have to be replayed first, and this reader never
    /// writes.
    fn open_vhdx(&mut self, len: u64) -> Result<()> {
        use super::vhdx::{crc32c, guid};
        let mut current: Option<(u64, Vec<u8>)> = None;
        for at in [64u64 << 10, 128 << 10] {
            self.check_in(at, 4096, len)?;
            let mut h = self.read(at, 4096)?;
            let sum = le32(&h, 4);
            h[4..8].fill(0);
            if &h[..4] != b"head" || crc32c(&h) != sum {
                continue;
            }
            let seq = le64(&h, 8);
            if current.as_ref().is_none_or(|c| seq > c.0) {
                current = Some((seq, h));
            }
        }
        let (_, h) = current.ok_or_else(|| self.bad(64 << 10, "no valid VHDX header"))?;
        if h[48..64].iter().any(|&b| b != 0) {
            return Err(self.bad(
                64 << 10,
                "the VHDX log holds writes not yet replayed (open it once in Hyper-V or qemu)",
            ));
        }
        let mut regions = None;
        for at in [192u64 << 10, 256 << 10] {
            self.check_in(at, 64 << 10, len)?;
            let mut r = self.read(at, 64 << 10)?;
            let sum = le32(&r, 4);
            r[4..8].fill(0);
            if &r[..4] == b"regi" && crc32c(&r) == sum {
                regions = Some(r);
                break;
            }
        }
        let r = regions.ok_or_else(|| self.bad(192 << 10, "no valid VHDX region table"))?;
        let count = le32(&r, 8).min(2047) as usize;
        let (mut bat, mut meta) = (None, None);
        for i in 0..count {
            let e = 16 + i * 32;
            let at = le64(&r, e + 16);
            let rlen = u64::from(le32(&r, e + 24));
            if r[e..e + 16] == guid(super::vhdx::BAT_GUID) {
                bat = Some((at, rlen));
            } else if r[e..e + 16] == guid(super::vhdx::METADATA_GUID) {
                meta = Some((at, rlen));
            } else if le32(&r, e + 28) & 1 != 0 {
                return Err(self.bad(
                    192 << 10,
                    "a required VHDX region this reader does not know",
                ));
            }
        }
        let (bat_at, bat_len) = bat.ok_or_else(|| self.bad(192 << 10, "VHDX without a BAT"))?;
        let (meta_at, meta_len) =
            meta.ok_or_else(|| self.bad(192 << 10, "VHDX without a metadata region"))?;
        self.check_in(meta_at, meta_len.min(64 << 10), len)?;
        let table = self.read(meta_at, 64 << 10)?;
        if &table[..8] != b"metadata" {
            return Err(self.bad(meta_at, "VHDX metadata table signature missing"));
        }
        let items = usize::from(u16::from_le_bytes([table[10], table[11]])).min(2047);
        let (mut block, mut size, mut sector, mut parent) = (0u64, 0u64, 512u64, false);
        for i in 0..items {
            let e = 32 + i * 32;
            let off = meta_at + u64::from(le32(&table, e + 16));
            let ilen = le32(&table, e + 20) as usize;
            let id = &table[e..e + 16];
            let value = |d: &SparseDisk, n: usize| -> Result<Vec<u8>> {
                if ilen < n {
                    return Err(d.bad(off, "VHDX metadata item too short"));
                }
                d.check_in(off, n as u64, len)?;
                d.read(off, n)
            };
            if id == guid(super::vhdx::FILE_PARAMETERS) {
                let v = value(self, 8)?;
                block = u64::from(le32(&v, 0));
                parent = le32(&v, 4) & 2 != 0;
            } else if id == guid(super::vhdx::VIRTUAL_DISK_SIZE) {
                size = le64(&value(self, 8)?, 0);
            } else if id == guid(super::vhdx::LOGICAL_SECTOR_SIZE) {
                sector = u64::from(le32(&value(self, 4)?, 0));
            }
        }
        if parent {
            return Err(self.bad(meta_at, "differencing VHDX disks are not supported"));
        }
        if !(1 << 20..=256 << 20).contains(&block) || !block.is_power_of_two() || size == 0 {
            return Err(self.bad(meta_at, "VHDX block size or disk size missing or invalid"));
        }
        if sector != 512 && sector != 4096 {
            return Err(self.bad(meta_at, format!("VHDX logical sector size {sector}")));
        }
        let ratio = (1u64 << 23) * sector / block;
        let blocks = size.div_ceil(block);
        let entries = blocks + blocks.saturating_sub(1) / ratio;
        if entries * 8 > bat_len {
            return Err(self.bad(bat_at, "the VHDX BAT does not cover the disk"));
        }
        self.check_in(bat_at, entries * 8, len)?;
        let table = self.read(bat_at, (entries * 8) as usize)?;
        self.size = size;
        self.granule = block;
        self.map = Vec::with_capacity(blocks as usize);
        for i in 0..blocks {
            let e = le64(&table, ((i + i / ratio) * 8) as usize);
            let at = (e >> 20) << 20;
            match e & 7 {
                // Not present, undefined, zero, unmapped: reads as zeros.
                0..=3 => self.map.push(None),
                6 => {
                    self.check_in(at, block.min(size - i * block), len)?;
                    self.map.push(Some(at));
                }
                7 => return Err(self.bad(bat_at, "partially present VHDX blocks need a parent")),
                s => return Err(self.bad(bat_at, format!("VHDX block state {s}"))),
            }
        }
        Ok(())
    }

    fn open_vmdk(&mut self, len: u64) -> Result<()> {
        let h = self.read(0, 512)?;
        let flags = le32(&h, 8);
        if flags & (1 << 16) != 0 || le32(&h, 77) & 0xFFFF != 0 {
            return Err(self.bad(8, "compressed (streamOptimized) VMDK is not supported"));
        }
        let capacity = le64(&h, 12);
        let grain = le64(&h, 20);
        let gtes = u64::from(le32(&h, 44));
        let gd_at = le64(&h, 56) * 512;
        if grain == 0 || grain > 2048 || gtes == 0 || gtes > 4096 {
            return Err(self.bad(20, "implausible VMDK grain size or grain table size"));
        }
        self.size = capacity * 512;
        self.granule = grain * 512;
        let grains = capacity.div_ceil(grain);
        let gts = grains.div_ceil(gtes);
        self.check_in(gd_at, gts * 4, len)?;
        let gd = self.read(gd_at, (gts * 4) as usize)?;
        self.map = vec![None; grains as usize];
        for t in 0..gts {
            let gt_at = u64::from(le32(&gd, (t * 4) as usize)) * 512;
            if gt_at == 0 {
                continue;
            }
            self.check_in(gt_at, gtes * 4, len)?;
            let gt = self.read(gt_at, (gtes * 4) as usize)?;
            for j in 0..gtes {
                let k = t * gtes + j;
                if k >= grains {
                    break;
                }
                // 0: unallocated; 1: a zero grain (ESXi).
                let s = u64::from(le32(&gt, (j * 4) as usize));
                if s > 1 {
                    let at = s * 512;
                    let n = self.granule.min(len.saturating_sub(at));
                    self.check_in(at, n, len)?;
                    self.map[k as usize] = Some(at);
                }
            }
        }
        Ok(())
    }

    /// Whether granule `k` is unallocated (reads as zeros).
    pub fn is_hole(&self, k: u64) -> bool {
        self.map.get(k as usize).is_none_or(|m| m.is_none())
    }

    /// Reads `buf.len()` bytes at disk offset `pos` (inside the disk).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let k = at / self.granule;
            let within = at % self.granule;
            let n = ((self.granule - within) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.map.get(k as usize).copied().flatten() {
                None => out.fill(0),
                Some(base) => {
                    self.file.read_exact_at(out, base + within)?;
                    if let Some(Some(bm)) =
                        self.vhd_bitmaps.as_ref().and_then(|b| b.get(k as usize))
                    {
                        // Sectors whose bitmap bit is clear read as zeros.
                        for (i, sector) in out.chunks_mut(512).enumerate() {
                            let s = (within / 512) as usize + i;
                            if bm.get(s / 8).is_some_and(|b| b & (0x80 >> (s % 8)) == 0) {
                                sector.fill(0);
                            }
                        }
                    }
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// A [`SparseDisk`] as a read-only [`crate::device::Source`] (restore reads it like a disk).
pub struct SparseSource {
    disk: SparseDisk,
}

impl SparseSource {
    pub fn open(path: &Path) -> Result<SparseSource> {
        Ok(SparseSource {
            disk: SparseDisk::open(path)?,
        })
    }
}

impl crate::device::Source for SparseSource {
    fn geometry(&self) -> crate::device::Geometry {
        crate::device::Geometry {
            size: self.disk.size,
            logical_sector: 512,
            physical_sector: 512,
        }
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> crate::device::ReadOutcome {
        let n = (self.disk.size.saturating_sub(pos)).min(buf.len() as u64) as usize;
        match self.disk.read_at(pos, &mut buf[..n]) {
            Ok(()) => crate::device::ReadOutcome::ok(n),
            Err(e) => crate::device::ReadOutcome {
                good: 0,
                fault: Some(crate::device::ReadFault::classify(e)),
            },
        }
    }

    fn describe(&self) -> String {
        self.disk.path.display().to_string()
    }
}
