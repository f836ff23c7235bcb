//! Reading through small rescued gaps instead of seeking over them.
//!
//! A stage of the filesystem-aware order ([`super::staged`]) reads a domain with holes: the
//! metadata blocks the first stage already rescued sit inside the used data, every few hundred
//! KiB on a typical ext4. The engine skips finished bytes, so each of those holes costs the drive
//! a seek (≈ 8 ms on a disk: the transfer of about 1 MB) to pass a few KiB. [`ReadThrough`]
//! wraps the source for such a stage: a read that starts a little after where the previous one
//! ended, with only finished bytes in between, is sent to the drive from the previous end, so
//! the head moves on without a seek; the bytes already rescued are read again and dropped. The
//! engine never sees the difference: it gets exactly the outcome of its own range. If the
//! re-read part fails (a weak sector that read once), the read is made again as the engine asked
//! for it, so the engine's range is judged by itself alone.

use crate::device::file::AlignedBuf;
use crate::device::{Geometry, ReadOutcome, Source};
use crate::fs::vol::covered;

/// Gaps up to this size are read through: well under the transfer a seek costs on a disk
/// (8 ms ≈ 1.2 MB at 150 MB/s), and a few milliseconds at most where seeks are free.
pub const MAX_GAP: u64 = 512 << 10;
/// The alignment of the enlarged requests' buffers (O_DIRECT on any device).
const BUF_ALIGN: usize = 4096;

/// A source that reads through finished gaps of at most [`MAX_GAP`] bytes.
pub struct ReadThrough<'a> {
    inner: &'a mut dyn Source,
    /// Finished `[start, end)` ranges, sorted and disjoint (a snapshot from the stage's start:
    /// bytes only ever become finished, so it stays true during the stage).
    finished: Vec<(u64, u64)>,
    /// Where the last request to the drive ended.
    head: Option<u64>,
    buf: Option<AlignedBuf>,
    /// Bytes re-read instead of seeking, and reads made so.
    pub reread: u64,
    pub through: u64,
}

impl<'a> ReadThrough<'a> {
    pub fn new(inner: &'a mut dyn Source, finished: Vec<(u64, u64)>) -> ReadThrough<'a> {
        ReadThrough {
            inner,
            finished,
            head: None,
            buf: None,
            reread: 0,
            through: 0,
        }
    }

    /// The gap to read through before a read at `pos`, if there is one.
    fn gap_before(&self, pos: u64) -> Option<u64> {
        let head = self.head?;
        let gap = pos.checked_sub(head)?;
        let sector = u64::from(self.inner.geometry().logical_sector.max(512));
        (gap > 0 && gap <= MAX_GAP && head % sector == 0 && covered(&self.finished, head, pos))
            .then_some(gap)
    }
}

impl Source for ReadThrough<'_> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        if let Some(gap) = self.gap_before(pos) {
            let gap = gap as usize;
            let want = gap + buf.len();
            if self.buf.as_ref().is_none_or(|b| b.len() < want) {
                self.buf = Some(AlignedBuf::new(want.next_power_of_two(), BUF_ALIGN));
            }
            if let Some(big) = self.buf.as_mut() {
                let from = pos - gap as u64;
                let out = self.inner.read_at(from, &mut big[..want]);
                self.head = Some(from + want as u64);
                if out.good >= gap {
                    let good = out.good - gap;
                    buf[..good].copy_from_slice(&big[gap..gap + good]);
                    self.reread += gap as u64;
                    self.through += 1;
                    return ReadOutcome {
                        good,
                        fault: out.fault,
                    };
                }
                // The rescued gap failed this time: the engine's range is read on its own.
            }
        }
        let out = self.inner.read_at(pos, buf);
        self.head = Some(pos + buf.len() as u64);
        out
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn reopen(&mut self) -> std::io::Result<bool> {
        self.head = None;
        self.inner.reopen()
    }

    fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }

    fn read_direct_at(&mut self, pos: u64, buf: &mut [u8]) -> Option<ReadOutcome> {
        let out = self.inner.read_direct_at(pos, buf);
        if out.is_some() {
            self.head = Some(pos + buf.len() as u64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{FaultySource, FaultySpec, SimClock};
    use std::sync::atomic::Ordering;

    fn drive(size: u64, bad: &[(u64, u64)]) -> FaultySource {
        let mut spec = FaultySpec::drive(size);
        for &(s, e) in bad {
            spec = spec.with_bad(s, e);
        }
        FaultySource::new(spec, SimClock::new())
    }

    #[test]
    fn a_small_finished_gap_is_read_through_without_a_seek() {
        let mut d = drive(1 << 20, &[]);
        let mut t = ReadThrough::new(&mut d, vec![(8192, 12288)]);
        let mut b = vec![0u8; 8192];
        assert_eq!(t.read_at(0, &mut b).good, 8192);
        assert_eq!(t.read_at(12288, &mut b).good, 8192);
        assert_eq!((t.through, t.reread), (1, 4096));
        // Not finished in between: a seek, as asked.
        assert_eq!(t.read_at(24576, &mut b).good, 8192);
        assert_eq!(t.through, 1);
        drop(t);
        assert_eq!(d.counters().seeks.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failure_in_the_engines_range_is_reported_as_its_own() {
        let mut d = drive(1 << 20, &[(14336, 14848)]);
        let mut t = ReadThrough::new(&mut d, vec![(8192, 12288)]);
        let mut b = vec![0u8; 8192];
        assert_eq!(t.read_at(0, &mut b).good, 8192);
        let out = t.read_at(12288, &mut b);
        assert!(out.fault.is_some());
        assert!(out.good <= 14336 - 12288, "{}", out.good);
    }

    #[test]
    fn a_failing_gap_falls_back_to_the_engines_read() {
        // The gap was rescued once but fails now (a weak sector): the engine's own range reads.
        let mut d = drive(1 << 20, &[(9216, 9728)]);
        let mut t = ReadThrough::new(&mut d, vec![(8192, 12288)]);
        let mut b = vec![0u8; 8192];
        assert_eq!(t.read_at(0, &mut b).good, 8192);
        let out = t.read_at(12288, &mut b);
        assert!(out.fault.is_none());
        assert_eq!(out.good, 8192);
        assert_eq!(t.through, 0);
    }
}
