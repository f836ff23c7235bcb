//! ddrescue's test mode (`-H MAPFILE`). STUB: being written (see helper brief).

use super::{Geometry, ReadOutcome, Source};
use crate::mapfile::Mapfile;

/// Wraps a source: reads of blocks that are finished in the test map succeed (with the inner
/// source's data), every other byte fails as a media error without touching the inner source.
pub struct TestModeSource<S: Source> {
    inner: S,
    test_map: Mapfile,
    reads: u64,
    failed_reads: u64,
}

impl<S: Source> TestModeSource<S> {
    pub fn new(inner: S, test_map: Mapfile) -> Self {
        TestModeSource {
            inner,
            test_map,
            reads: 0,
            failed_reads: 0,
        }
    }

    pub fn reads(&self) -> (u64, u64) {
        (self.reads, self.failed_reads)
    }
}

impl<S: Source> Source for TestModeSource<S> {
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.size = g.size.min(self.test_map.end());
        g
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        self.reads += 1;
        self.inner.read_at(pos, buf)
    }

    fn describe(&self) -> String {
        format!("{} (test mode)", self.inner.describe())
    }
}
