//! Reading a partition through [`Source`], and sets of byte ranges.

use super::Error;
use crate::device::Source;

/// Bytes read from the source at once: metadata reads are small and often neighbours (flex_bg
/// bitmaps, FAT sectors, MFT records), so they are served from one aligned window; small enough
/// that scattered reads (ext3's one bitmap per 128 MiB group) do not read much more than asked.
const WINDOW: u64 = 128 << 10;
/// Alignment of every read issued to the source (enough for O_DIRECT on 4Kn disks).
const ALIGN: u64 = 4096;
/// The smallest read retried after a failed aligned window (a logical sector).
const SECTOR: u64 = 512;
/// The largest single buffer a parser may ask for. Metadata that needs more is streamed.
pub const MAX_BUF: u64 = 64 << 20;

/// A partition: byte offsets are relative to its start, and nothing past its end is read.
pub struct Vol<'a> {
    src: &'a mut dyn Source,
    /// Absolute offset of the partition in the source.
    pub start: u64,
    /// Length of the partition (clipped to the source).
    pub len: u64,
    win: Vec<u8>,
    /// Absolute offset of `win`.
    win_pos: u64,
}

thread_local! {
    /// Set while [`record_missing`] runs: the bytes parsers asked for and could not read.
    static MISSING: std::cell::RefCell<Option<Ranges>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` and returns, with its result, the absolute byte ranges that reads through any
/// [`Vol`] on this thread asked for and could not get (media errors, or bytes a
/// [`crate::fs::files::Rescued`] copy does not hold yet). Only the bytes the parser asked for
/// are listed, not the whole read window: a metadata-first rescue reads exactly those next
/// ("metadata tells where more metadata is").
pub fn record_missing<T>(f: impl FnOnce() -> T) -> (T, Vec<(u64, u64)>) {
    let outer = MISSING.with(|m| m.borrow_mut().replace(Ranges::new()));
    let out = f();
    let got = MISSING.with(|m| std::mem::replace(&mut *m.borrow_mut(), outer));
    (out, got.map(Ranges::finish).unwrap_or_default())
}

fn note_missing(start: u64, end: u64) {
    MISSING.with(|m| {
        if let Some(r) = m.borrow_mut().as_mut() {
            r.add(start, end);
        }
    });
}

impl<'a> Vol<'a> {
    pub fn new(src: &'a mut dyn Source, start: u64, len: u64) -> Vol<'a> {
        Vol {
            src,
            start,
            len,
            win: Vec::new(),
            win_pos: 0,
        }
    }

    /// Reads `buf.len()` bytes at `off` (relative to the partition).
    pub fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), Error> {
        let n = buf.len() as u64;
        let end = off
            .checked_add(n)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "metadata at byte {off} (+{n}) lies past the end of the partition ({} bytes)",
                    self.len
                ))
            })?;
        let mut done = 0usize;
        let mut pos = self.start + off;
        let abs_end = self.start + end;
        while pos < abs_end {
            if !(self.win_pos <= pos && pos < self.win_pos + self.win.len() as u64) {
                if let Err(e) = self.fill(pos) {
                    if matches!(e, Error::Read { gone: false, .. }) {
                        note_missing(pos, abs_end);
                    }
                    return Err(e);
                }
            }
            let at = (pos - self.win_pos) as usize;
            let take = ((abs_end - pos) as usize).min(self.win.len() - at);
            buf[done..done + take].copy_from_slice(&self.win[at..at + take]);
            done += take;
            pos += take as u64;
        }
        Ok(())
    }

    pub fn read_vec(&mut self, off: u64, len: u64) -> Result<Vec<u8>, Error> {
        if len > MAX_BUF {
            return Err(Error::Corrupt(format!(
                "metadata of {len} bytes at byte {off} is implausibly large"
            )));
        }
        let mut v = vec![0u8; len as usize];
        self.read(off, &mut v)?;
        Ok(v)
    }

    /// Loads the aligned window holding absolute position `pos`.
    fn fill(&mut self, pos: u64) -> Result<(), Error> {
        match self.fill_from(pos, pos / ALIGN * ALIGN) {
            // A bad sector before `pos` in the aligned window: read from `pos`'s own sector.
            Err(Error::Read {
                offset,
                gone: false,
                ..
            }) if offset < pos && pos / SECTOR * SECTOR > pos / ALIGN * ALIGN => {
                self.fill_from(pos, pos / SECTOR * SECTOR)
            }
            r => r,
        }
    }

    fn fill_from(&mut self, pos: u64, from: u64) -> Result<(), Error> {
        let part_end = self.start + self.len;
        let to = (from + WINDOW)
            .min(part_end.div_ceil(ALIGN) * ALIGN)
            .min(self.src.geometry().size);
        if to <= pos {
            return Err(Error::Corrupt(format!(
                "metadata at byte {} lies past the end of the device",
                pos - self.start
            )));
        }
        self.win.resize((to - from) as usize, 0);
        self.win_pos = from;
        let mut got = 0usize;
        while got < self.win.len() {
            let out = self.src.read_at(from + got as u64, &mut self.win[got..]);
            got += out.good;
            if let Some(f) = out.fault {
                let fault_at = from + got as u64;
                self.win.truncate(got);
                if fault_at > pos {
                    // Some of the bytes asked for are good; the next read retries the rest.
                    return Ok(());
                }
                return Err(Error::Read {
                    offset: fault_at,
                    gone: f.is_gone(),
                    fault: f.to_string(),
                });
            }
            if out.good == 0 {
                break;
            }
        }
        self.win.truncate(got);
        if from + (got as u64) <= pos {
            return Err(Error::Corrupt(format!(
                "metadata at byte {} lies past the end of the device",
                pos - self.start
            )));
        }
        Ok(())
    }
}

pub fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

pub fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

pub fn le64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0)
}

/// Upper bound on the number of ranges kept: past it, neighbours closer than a growing gap are
/// merged (a superset: it only ever keeps more bytes, never fewer).
const MAX_RANGES: usize = 4 << 20;

/// Sorted, merged `[start, end)` ranges, built by appending (in any order).
#[derive(Debug, Default, Clone)]
pub struct Ranges {
    v: Vec<(u64, u64)>,
    sorted: bool,
    /// Gaps smaller than this are closed (grows only when the count limit is hit).
    min_gap: u64,
}

impl Ranges {
    pub fn new() -> Ranges {
        Ranges {
            v: Vec::new(),
            sorted: true,
            min_gap: 0,
        }
    }

    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some(last) = self.v.last_mut() {
            if start >= last.0 && start <= last.1.saturating_add(self.min_gap) {
                last.1 = last.1.max(end);
                return;
            }
            if start < last.0 {
                self.sorted = false;
            }
        }
        self.v.push((start, end));
        if self.v.len() > MAX_RANGES {
            self.coarsen();
        }
    }

    fn normalize(&mut self) {
        if !self.sorted {
            self.v.sort_unstable();
            self.sorted = true;
        }
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.v.len());
        for &(s, e) in &self.v {
            match out.last_mut() {
                Some(l) if s <= l.1.saturating_add(self.min_gap) => l.1 = l.1.max(e),
                _ => out.push((s, e)),
            }
        }
        self.v = out;
    }

    fn coarsen(&mut self) {
        self.normalize();
        while self.v.len() > MAX_RANGES / 2 {
            self.min_gap = (self.min_gap * 2).max(4096);
            self.normalize();
        }
    }

    pub fn finish(mut self) -> Vec<(u64, u64)> {
        self.normalize();
        self.v
    }

    pub fn total(ranges: &[(u64, u64)]) -> u64 {
        ranges.iter().map(|r| r.1 - r.0).sum()
    }
}

/// Whether `[s, e)` lies inside the sorted, merged `ranges`.
pub fn covered(ranges: &[(u64, u64)], s: u64, e: u64) -> bool {
    if s >= e {
        return true;
    }
    let i = ranges.partition_point(|r| r.1 <= s);
    ranges.get(i).is_some_and(|r| r.0 <= s && e <= r.1)
}

/// Appends the runs of set bits of `bits` (bit `i` = unit `first + i`, LSB first in each byte,
/// only the first `nbits` bits) to `out` as byte ranges `base + unit * unit_size`. Returns how many
/// bits were set.
pub fn bitmap_runs(
    bits: &[u8],
    nbits: u64,
    first: u64,
    unit_size: u64,
    base: u64,
    out: &mut Ranges,
) -> u64 {
    let nbits = nbits.min(bits.len() as u64 * 8);
    let mut set = 0u64;
    let mut run: Option<u64> = None;
    let mut i = 0u64;
    while i < nbits {
        let byte = bits[(i / 8) as usize];
        // Whole bytes of zeros or ones are the common case.
        if i % 8 == 0 && i + 8 <= nbits && (byte == 0 || byte == 0xff) {
            if byte == 0xff {
                set += 8;
                run.get_or_insert(i);
            } else if let Some(r) = run.take() {
                out.add(
                    base + (first + r) * unit_size,
                    base + (first + i) * unit_size,
                );
            }
            i += 8;
            continue;
        }
        if byte >> (i % 8) & 1 == 1 {
            set += 1;
            run.get_or_insert(i);
        } else if let Some(r) = run.take() {
            out.add(
                base + (first + r) * unit_size,
                base + (first + i) * unit_size,
            );
        }
        i += 1;
    }
    if let Some(r) = run {
        out.add(
            base + (first + r) * unit_size,
            base + (first + nbits) * unit_size,
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_sort() {
        let mut r = Ranges::new();
        r.add(10, 20);
        r.add(20, 30);
        r.add(0, 5);
        r.add(4, 6);
        r.add(50, 50);
        assert_eq!(r.finish(), vec![(0, 6), (10, 30)]);
    }

    #[test]
    fn bitmap() {
        let mut r = Ranges::new();
        let n = bitmap_runs(&[0b0000_0110, 0xff, 0x01], 24, 0, 10, 1000, &mut r);
        assert_eq!(n, 11);
        assert_eq!(r.finish(), vec![(1010, 1030), (1080, 1170)]);
        let mut r = Ranges::new();
        bitmap_runs(&[0xff], 3, 2, 1, 0, &mut r);
        assert_eq!(r.finish(), vec![(2, 5)]);
    }

    #[test]
    fn coverage() {
        let r = vec![(0, 10), (20, 30)];
        assert!(covered(&r, 0, 10));
        assert!(covered(&r, 21, 29));
        assert!(!covered(&r, 9, 11));
        assert!(!covered(&r, 10, 20));
        assert!(!covered(&r, 30, 31));
    }
}
