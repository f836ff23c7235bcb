//! qcow2 version 3, 64 KiB clusters, no compression, no backing file, 16-bit refcounts.
//!
//! Layout as written: cluster 0 the header; data clusters in disk order from cluster 1; then the
//! L2 tables that are needed, the L1 table, the refcount blocks and the refcount table. Clusters
//! of zeros are left unallocated (L2 entry 0), which reads as zeros without a backing file. Every
//! allocated cluster has refcount 1, so L1/L2 entries carry the COPIED flag.

use super::SparseWriter;
use crate::device::Dest;
use crate::error::{Error, Result};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Entries per L2 table (8 bytes each).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const RC_ENTRIES: u64 = CLUSTER / 2;
const COPIED: u64 = 1 << 63;

pub struct Qcow2Writer {
    size: u64,
    /// Next free cluster.
    next: u64,
    /// One optional L2 table per L1 entry.
    l2: Vec<Option<Vec<u64>>>,
}

impl Qcow2Writer {
    pub fn new(size: u64) -> Qcow2Writer {
        let clusters = size.div_ceil(CLUSTER);
        let l1 = clusters.div_ceil(L2_ENTRIES) as usize;
        Qcow2Writer {
            size,
            next: 1,
            l2: (0..l1).map(|_| None).collect(),
        }
    }
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

impl SparseWriter for Qcow2Writer {
    fn granule(&self) -> u64 {
        CLUSTER
    }

    fn write_granule(&mut self, dest: &mut dyn Dest, index: u64, data: &[u8]) -> Result<()> {
        self.write_granules(dest, index, data)
    }

    fn write_granules(&mut self, dest: &mut dyn Dest, first: u64, data: &[u8]) -> Result<()> {
        // Data clusters are allocated in order, so consecutive ones are one write.
        dest.write_at(self.next * CLUSTER, data)?;
        for i in 0..(data.len() as u64).div_ceil(CLUSTER) {
            let (index, at) = (first + i, self.next * CLUSTER);
            let table = self
                .l2
                .get_mut((index / L2_ENTRIES) as usize)
                .ok_or_else(|| Error::Internal(format!("cluster {index} beyond the disk")))?
                .get_or_insert_with(|| vec![0u64; L2_ENTRIES as usize]);
            table[(index % L2_ENTRIES) as usize] = at | COPIED;
            self.next += 1;
        }
        Ok(())
    }

    fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64> {
        // L2 tables.
        let mut l1 = vec![0u64; self.l2.len()];
        for (i, t) in self.l2.iter().enumerate() {
            if let Some(t) = t {
                let at = self.next * CLUSTER;
                let mut b = vec![0u8; CLUSTER as usize];
                for (j, e) in t.iter().enumerate() {
                    put64(&mut b, j * 8, *e);
                }
                dest.write_at(at, &b)?;
                l1[i] = at | COPIED;
                self.next += 1;
            }
        }
        // L1 table (at least one cluster).
        let l1_at = self.next * CLUSTER;
        let l1_clusters = ((l1.len() as u64 * 8).div_ceil(CLUSTER)).max(1);
        let mut b = vec![0u8; (l1_clusters * CLUSTER) as usize];
        for (i, e) in l1.iter().enumerate() {
            put64(&mut b, i * 8, *e);
        }
        dest.write_at(l1_at, &b)?;
        self.next += l1_clusters;
        // Refcount blocks and table: they count themselves, so find the fixed point.
        let used = self.next;
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let total = used + blocks + table;
            let nb = total.div_ceil(RC_ENTRIES);
            let nt = (nb * 8).div_ceil(CLUSTER).max(1);
            if nb == blocks && nt == table {
                break;
            }
            blocks = nb;
            table = nt;
        }
        let total = used + blocks + table;
        let blocks_at = self.next;
        for k in 0..blocks {
            let mut b = vec![0u8; CLUSTER as usize];
            let first = k * RC_ENTRIES;
            for c in first..total.min(first + RC_ENTRIES) {
                let j = ((c - first) * 2) as usize;
                b[j..j + 2].copy_from_slice(&1u16.to_be_bytes());
            }
            dest.write_at((blocks_at + k) * CLUSTER, &b)?;
        }
        let table_at = (blocks_at + blocks) * CLUSTER;
        let mut b = vec![0u8; (table * CLUSTER) as usize];
        for k in 0..blocks {
            put64(&mut b, (k * 8) as usize, (blocks_at + k) * CLUSTER);
        }
        dest.write_at(table_at, &b)?;
        self.next = total;
        // The header last: until then the file is not a valid qcow2.
        let mut h = vec![0u8; CLUSTER as usize];
        h[..4].copy_from_slice(b"QFI\xfb");
        put32(&mut h, 4, 3);
        put32(&mut h, 20, CLUSTER_BITS);
        put64(&mut h, 24, self.size);
        put32(&mut h, 36, l1.len() as u32);
        put64(&mut h, 40, l1_at);
        put64(&mut h, 48, table_at);
        put32(&mut h, 56, table as u32);
        put32(&mut h, 96, 4);
        put32(&mut h, 100, 104);
        // 104..112: the end-of-extensions marker (type 0, length 0) is already zeros.
        dest.write_at(0, &h)?;
        Ok(total * CLUSTER)
    }
}
