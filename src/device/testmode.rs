//! ddrescue's test mode (`-H FILE`, `--test-mode=FILE`): simulate read errors on a healthy source
//! from a map of good and bad blocks.
//!
//! Semantics, matching GNU ddrescue (1.25 through 1.27; `Domain::Domain` in `block.cc`,
//! `Rescuebook::copy_block` in `rescuebook.cc`, `adjusted_insize` in `main.cc`), so that a salvor
//! run and a ddrescue run over the same test map issue comparable reads:
//!
//! - The *test domain* is the set of blocks marked finished (`+`) in the test map, adjacent ones
//!   joined. Every other status (`?`, `*`, `/`, `-`) is bad.
//! - A read succeeds only if the **whole** read lies inside one finished block; then the inner
//!   source is read normally (its own errors still show). A read that overlaps a non-finished byte
//!   at all fails **entirely**: no good prefix (ddrescue sets `copied_size = 0`,
//!   `error_size = size`), and the inner source is not touched. Finding the edges is left to the
//!   rescue algorithm's trimming and scraping, exactly as in ddrescue.
//! - The apparent size is the inner size truncated to the *end of the last finished block* (not the
//!   end of the map): `size = if inner == 0 || inner > end { end } else { inner }`. With no finished
//!   block at all the size is 0.
//! - Reads past the apparent size return end of file (0 more bytes, no fault).

use super::faulty::Counters;
use super::{Geometry, ReadFault, ReadOutcome, Source};
use crate::mapfile::{BlockStatus, Mapfile};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Wraps a source: reads of blocks that are finished in the test map succeed (with the inner
/// source's data), every other read fails as a media error without touching the inner source.
pub struct TestModeSource<S: Source> {
    inner: S,
    /// Finished blocks `[start, end)`, sorted, non-adjacent.
    domain: Vec<(u64, u64)>,
    size: u64,
    counters: Arc<Counters>,
}

impl<S: Source> TestModeSource<S> {
    pub fn new(inner: S, test_map: Mapfile) -> Self {
        let mut domain: Vec<(u64, u64)> = Vec::new();
        for b in test_map.blocks() {
            if b.status != BlockStatus::Finished || b.size == 0 {
                continue;
            }
            match domain.last_mut() {
                Some(last) if last.1 == b.pos => last.1 = b.end(),
                _ => domain.push((b.pos, b.end())),
            }
        }
        let end = domain.last().map_or(0, |r| r.1);
        let inner_size = inner.geometry().size;
        let size = if inner_size == 0 || inner_size > end {
            end
        } else {
            inner_size
        };
        TestModeSource {
            inner,
            domain,
            size,
            counters: Arc::new(Counters::default()),
        }
    }

    /// `(reads, failed_reads)` so far.
    pub fn reads(&self) -> (u64, u64) {
        let (reads, failed, _) = self.counters.snapshot();
        (reads, failed)
    }

    /// Shared counters (reads, failed reads, bytes delivered).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The finished blocks of the test map: the only readable areas.
    pub fn domain(&self) -> &[(u64, u64)] {
        &self.domain
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Whether `[pos, end)` lies inside a single finished block.
    fn readable(&self, pos: u64, end: u64) -> bool {
        let i = self.domain.partition_point(|r| r.1 <= pos);
        self.domain
            .get(i)
            .is_some_and(|&(s, e)| s <= pos && end <= e)
    }
}

impl<S: Source> Source for TestModeSource<S> {
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.size = self.size;
        g
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let n = buf.len().min(self.size.saturating_sub(pos) as usize);
        if n == 0 {
            return ReadOutcome::ok(0);
        }
        if !self.readable(pos, pos + n as u64) {
            self.counters.failed_reads.fetch_add(1, Ordering::Relaxed);
            return ReadOutcome {
                good: 0,
                fault: Some(ReadFault::Media(io::Error::from_raw_os_error(libc::EIO))),
            };
        }
        let out = self.inner.read_at(pos, &mut buf[..n]);
        if out.fault.is_some() {
            self.counters.failed_reads.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .bytes_read
            .fetch_add(out.good as u64, Ordering::Relaxed);
        out
    }

    fn describe(&self) -> String {
        format!("{} (test mode)", self.inner.describe())
    }

    fn reopen(&mut self) -> io::Result<bool> {
        self.inner.reopen()
    }

    fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }
}
