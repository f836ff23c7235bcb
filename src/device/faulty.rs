//! An in-process fault-injecting source for tests and demos. STUB: being written (see helper brief).

use super::{Geometry, ReadOutcome, SimClock, Source};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Description of a simulated failing disk.
#[derive(Debug, Clone)]
pub struct FaultySpec {
    pub size: u64,
    pub sector_size: u32,
    /// Byte ranges `[start, end)` that never read.
    pub bad: Vec<(u64, u64)>,
    /// Byte ranges that fail the first `n` times they are read, then succeed.
    pub weak: Vec<(u64, u64, u32)>,
    /// Byte ranges where every read touching them costs this extra time.
    pub slow: Vec<(u64, u64, Duration)>,
    /// After this many reads the device is gone (every read fails with ENODEV) until `reopen`.
    pub gone_after_reads: Option<u64>,
    /// Simulated transfer rate for good reads (bytes per second).
    pub rate: u64,
    /// Simulated cost of a failed read.
    pub error_latency: Duration,
}

impl Default for FaultySpec {
    fn default() -> Self {
        FaultySpec {
            size: 0,
            sector_size: 512,
            bad: Vec::new(),
            weak: Vec::new(),
            slow: Vec::new(),
            gone_after_reads: None,
            rate: 100_000_000,
            error_latency: Duration::from_secs(2),
        }
    }
}

/// Read counters, shared so a test can look at them while the engine owns the source.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub failed_reads: AtomicU64,
    pub bytes_read: AtomicU64,
}

pub struct FaultySource {
    spec: FaultySpec,
    clock: SimClock,
    counters: Arc<Counters>,
}

impl FaultySource {
    pub fn new(spec: FaultySpec, clock: SimClock) -> FaultySource {
        FaultySource {
            spec,
            clock,
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The content of the simulated disk at `pos` (deterministic, position-dependent).
    pub fn expected_byte(pos: u64) -> u8 {
        let x = pos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
        x as u8 | 1
    }
}

impl Source for FaultySource {
    fn geometry(&self) -> Geometry {
        Geometry {
            size: self.spec.size,
            logical_sector: self.spec.sector_size,
            physical_sector: self.spec.sector_size,
        }
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        let _ = &self.clock;
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let n = buf.len().min(self.spec.size.saturating_sub(pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = Self::expected_byte(pos + i as u64);
        }
        ReadOutcome::ok(n)
    }

    fn describe(&self) -> String {
        "simulated failing disk".to_string()
    }
}
