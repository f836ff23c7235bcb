//! An in-process fault-injecting source for tests, benchmarks and demos.
//!
//! [`FaultySource`] simulates a failing disk of any size without storing it: its content is a
//! deterministic function of the position ([`FaultySource::expected_byte`], bulk
//! [`FaultySource::fill`]), so a rescued image can be checked byte for byte.
//!
//! Fault model (all positions are widened to whole sectors, because a drive fails sectors):
//! - **bad** ranges never read;
//! - **weak** ranges fail the first `n` reads that reach them, then read normally;
//! - **slow** ranges cost extra simulated time for every read that touches them;
//! - **gone**: after `gone_after_reads` reads, every read fails with `ENODEV` until
//!   [`Source::reopen`] is called (once; the device then stays present).
//!
//! A read behaves like a kernel buffered read on a failing disk: the sectors before the first
//! failing one are delivered (`good`, a whole number of sectors from `pos` unless EOF), and the
//! fault is `Media(EIO)`. A read "reaches" a weak range only if nothing before it failed.
//!
//! - **weak with odds**: sectors that read with a given probability per attempt, drawn per sector
//!   or once per request ([`WeakDraw`]) from a seeded generator, so runs are reproducible;
//! - **dead head**: bad stripes repeating every `period` bytes ([`FaultySpec::dead_head`]).
//!
//! What a failed read returns depends on [`ReadSemantics`]: the good prefix to the failing sector
//! (the default, what the engine tests were written against), nothing at all (`O_DIRECT`: the
//! drive's error fails the whole request), or the good prefix rounded down to whole pages
//! (buffered reads through the page cache: the page holding a bad sector fails whole).
//!
//! Time, the drive model (one model for the in-process tests and the FUSE file of
//! `salvor sim-drive`): every request advances the shared [`SimClock`] by
//! - `seek_cost` if it does not start where the previous request ended,
//! - the transfer of the bytes the drive read before it stopped (`rate`),
//! - the extra time of each slow range it touches (once per request),
//! - `error_latency` if it failed on the medium.
//!
//! [`FaultySpec::drive`] sets the benchmark's numbers: 8 ms seek, 150 MB/s, 2 s per failed read.
//! Every request can be reported to a [`RequestSink`] (the request log). Reads of a gone device
//! fail at once (the kernel does not wait for a missing disk) and cost nothing.

use super::{Clock, Geometry, ReadFault, ReadOutcome, SimClock, Source};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Simulated transfer rate for good reads (bytes per second); 0 = reads take no time.
    pub rate: u64,
    /// Simulated cost of a failed read.
    pub error_latency: Duration,
    /// Simulated cost of a request that does not start where the previous one ended.
    pub seek_cost: Duration,
    /// Byte ranges of weak sectors that read with this probability per attempt.
    pub weak_odds: Vec<(u64, u64, f64)>,
    /// How the odds of `weak_odds` are drawn.
    pub weak_draw: WeakDraw,
    /// What a failed read delivers.
    pub semantics: ReadSemantics,
    /// Seed of the generator behind `weak_odds`.
    pub seed: u64,
}

/// How the success of a read over weak sectors is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeakDraw {
    /// Every weak sector the read reaches succeeds or fails on its own.
    #[default]
    PerSector,
    /// One draw per request that reaches weak sectors: all of them read, or it fails at the first.
    PerRequest,
}

/// What a read that fails on the medium delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadSemantics {
    /// The sectors before the failing one (a precise partial read).
    #[default]
    SectorPrefix,
    /// Nothing: `O_DIRECT` reads fail whole.
    Direct,
    /// The whole pages (of `page` bytes, aligned to the disk) before the page holding the failing
    /// sector: buffered reads through the page cache.
    Buffered { page: u32 },
}

/// One request as the simulated drive saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveRequest {
    /// Drive time when the request started.
    pub start: Duration,
    /// What it cost.
    pub cost: Duration,
    pub pos: u64,
    pub len: u64,
    /// Bytes delivered to the caller.
    pub good: u64,
    /// Bytes the drive read before it stopped (`len` unless it failed).
    pub reached: u64,
    pub failed: bool,
    pub seek: bool,
}

/// Where the request log goes.
pub trait RequestSink: Send {
    fn request(&mut self, r: &DriveRequest);
}

/// A request log kept in memory (for tests), shareable while the engine owns the source.
#[derive(Clone, Default)]
pub struct MemoryLog(pub Arc<std::sync::Mutex<Vec<DriveRequest>>>);

impl MemoryLog {
    pub fn requests(&self) -> Vec<DriveRequest> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl RequestSink for MemoryLog {
    fn request(&mut self, r: &DriveRequest) {
        if let Ok(mut v) = self.0.lock() {
            v.push(*r);
        }
    }
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
            seek_cost: Duration::ZERO,
            weak_odds: Vec::new(),
            weak_draw: WeakDraw::PerSector,
            semantics: ReadSemantics::SectorPrefix,
            seed: 1,
        }
    }
}

/// The benchmark drive model: 8 ms per seek, 150 MB/s, 2 s per failed read.
pub const DRIVE_SEEK: Duration = Duration::from_millis(8);
pub const DRIVE_RATE: u64 = 150_000_000;
pub const DRIVE_ERROR: Duration = Duration::from_secs(2);

/// A small deterministic generator (xorshift64*), so fault layouts are reproducible from a seed
/// without a `rand` dependency.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        XorShift(seed ^ 0x2545_F491_4F6C_DD1D | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough value in `[0, n)` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl FaultySpec {
    /// A healthy disk of `size` bytes with 512-byte sectors.
    pub fn new(size: u64) -> FaultySpec {
        FaultySpec {
            size,
            ..FaultySpec::default()
        }
    }

    /// A healthy drive priced with the benchmark model ([`DRIVE_SEEK`], [`DRIVE_RATE`],
    /// [`DRIVE_ERROR`]) and `O_DIRECT` semantics.
    pub fn drive(size: u64) -> FaultySpec {
        FaultySpec {
            size,
            rate: DRIVE_RATE,
            error_latency: DRIVE_ERROR,
            seek_cost: DRIVE_SEEK,
            semantics: ReadSemantics::Direct,
            ..FaultySpec::default()
        }
    }

    /// Sectors in `[start, end)` that read with probability `odds` per attempt.
    pub fn with_weak_odds(mut self, start: u64, end: u64, odds: f64) -> Self {
        self.weak_odds.push((start, end, odds));
        self
    }

    pub fn with_semantics(mut self, semantics: ReadSemantics) -> Self {
        self.semantics = semantics;
        self
    }

    pub fn with_seek_cost(mut self, seek: Duration) -> Self {
        self.seek_cost = seek;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_sector_size(mut self, sector_size: u32) -> Self {
        self.sector_size = sector_size.max(1);
        self
    }

    pub fn with_bad(mut self, start: u64, end: u64) -> Self {
        self.bad.push((start, end));
        self
    }

    pub fn with_weak(mut self, start: u64, end: u64, failures: u32) -> Self {
        self.weak.push((start, end, failures));
        self
    }

    pub fn with_slow(mut self, start: u64, end: u64, extra: Duration) -> Self {
        self.slow.push((start, end, extra));
        self
    }

    pub fn with_gone_after_reads(mut self, reads: u64) -> Self {
        self.gone_after_reads = Some(reads);
        self
    }

    pub fn with_rate(mut self, rate: u64) -> Self {
        self.rate = rate;
        self
    }

    pub fn with_error_latency(mut self, latency: Duration) -> Self {
        self.error_latency = latency;
        self
    }

    /// A drive with one dead head: in every `period` bytes, the `stripe` bytes starting at
    /// `phase` are unreadable (a multi-platter drive interleaves its heads' zones like this).
    pub fn dead_head(size: u64, stripe: u64, period: u64, phase: u64) -> FaultySpec {
        let mut spec = FaultySpec::new(size);
        if stripe == 0 || period == 0 {
            return spec;
        }
        let phase = phase % period;
        let mut base = 0u64;
        while base < size {
            let start = base.saturating_add(phase);
            if start >= size {
                break;
            }
            spec.bad
                .push((start, start.saturating_add(stripe).min(size)));
            base = base.saturating_add(period);
        }
        spec
    }

    /// `count` single bad sectors at seeded pseudo-random positions (duplicates merge).
    pub fn scattered_bad_sectors(size: u64, sector_size: u32, count: u64, seed: u64) -> FaultySpec {
        let mut spec = FaultySpec::new(size).with_sector_size(sector_size);
        let ss = u64::from(spec.sector_size);
        let sectors = size / ss;
        if sectors == 0 {
            return spec;
        }
        let mut rng = XorShift::new(seed);
        for _ in 0..count {
            let s = rng.below(sectors) * ss;
            spec.bad.push((s, s + ss));
        }
        spec
    }

    /// `clusters` damaged regions of `cluster_size` bytes at seeded positions; inside each, every
    /// sector is bad with probability `density_pct` percent (real damage leaves readable islands).
    pub fn bad_clusters(
        size: u64,
        sector_size: u32,
        clusters: u64,
        cluster_size: u64,
        density_pct: u32,
        seed: u64,
    ) -> FaultySpec {
        let mut spec = FaultySpec::new(size).with_sector_size(sector_size);
        let ss = u64::from(spec.sector_size);
        let cluster_sectors = cluster_size.div_ceil(ss).max(1);
        let sectors = size / ss;
        if sectors == 0 {
            return spec;
        }
        let density = u64::from(density_pct.min(100));
        let mut rng = XorShift::new(seed);
        for _ in 0..clusters {
            let first = rng.below(sectors);
            let last = (first + cluster_sectors).min(sectors);
            for s in first..last {
                if rng.below(100) < density {
                    spec.bad.push((s * ss, (s + 1) * ss));
                }
            }
        }
        spec
    }

    fn sector(&self) -> u64 {
        u64::from(self.sector_size.max(1))
    }

    /// The bad ranges as the source sees them: widened to whole sectors, clipped to the size,
    /// sorted and merged. Tests use this to predict the final map.
    pub fn bad_ranges(&self) -> Vec<(u64, u64)> {
        normalize(
            self.bad.iter().map(|&(s, e)| (s, e, ())),
            self.sector(),
            self.size,
            true,
            |_, _| (),
        )
        .into_iter()
        .map(|(s, e, ())| (s, e))
        .collect()
    }

    /// The weak-with-odds ranges as the source sees them (sector-widened, clipped, sorted).
    pub fn weak_odds_ranges(&self) -> Vec<(u64, u64, f64)> {
        normalize(
            self.weak_odds.iter().copied(),
            self.sector(),
            self.size,
            false,
            |a: f64, _| a,
        )
    }

    /// Total bytes that can never be read.
    pub fn bad_bytes(&self) -> u64 {
        self.bad_ranges().iter().map(|(s, e)| e - s).sum()
    }
}

/// Sector-widens, clips, sorts and merges ranges (also merely touching ones if `touching`);
/// `join` combines the payloads of merged ones.
fn normalize<T: Copy>(
    ranges: impl Iterator<Item = (u64, u64, T)>,
    sector: u64,
    size: u64,
    touching: bool,
    join: impl Fn(T, T) -> T,
) -> Vec<(u64, u64, T)> {
    let mut v: Vec<(u64, u64, T)> = ranges
        .filter_map(|(s, e, t)| {
            let e = e.min(size);
            if s >= e {
                return None;
            }
            let s = s - s % sector;
            let e = e.div_ceil(sector).saturating_mul(sector).min(size);
            Some((s, e, t))
        })
        .collect();
    v.sort_by_key(|r| r.0);
    let mut out: Vec<(u64, u64, T)> = Vec::with_capacity(v.len());
    for (s, e, t) in v {
        match out.last_mut() {
            Some(last) if s < last.1 || (touching && s == last.1) => {
                last.1 = last.1.max(e);
                last.2 = join(last.2, t);
            }
            _ => out.push((s, e, t)),
        }
    }
    out
}

/// Read counters, shared so a test can look at them while the engine owns the source.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub failed_reads: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Successful `reopen` calls after the device was gone.
    pub reopens: AtomicU64,
    /// Requests that did not start where the previous one ended.
    pub seeks: AtomicU64,
}

impl Counters {
    /// `(reads, failed_reads, bytes_read)` right now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.failed_reads.load(Ordering::Relaxed),
            self.bytes_read.load(Ordering::Relaxed),
        )
    }
}

struct WeakRange {
    start: u64,
    end: u64,
    remaining: u32,
}

pub struct FaultySource {
    spec: FaultySpec,
    clock: SimClock,
    counters: Arc<Counters>,
    bad: Vec<(u64, u64)>,
    weak: Vec<WeakRange>,
    slow: Vec<(u64, u64, Duration)>,
    weak_odds: Vec<(u64, u64, f64)>,
    rng: XorShift,
    /// Where the previous request ended.
    head: u64,
    log: Option<Box<dyn RequestSink>>,
    /// Whether `gone_after_reads` has fired already (it fires once).
    gone_fired: bool,
    /// Shared so a test can unplug the device while the engine owns the source.
    gone: Arc<AtomicBool>,
}

impl FaultySource {
    pub fn new(spec: FaultySpec, clock: SimClock) -> FaultySource {
        let sector = spec.sector();
        let bad = spec.bad_ranges();
        let weak = normalize(
            spec.weak.iter().copied(),
            sector,
            spec.size,
            // Touching weak ranges stay apart: each fails its own number of times.
            false,
            |a: u32, b: u32| a.max(b),
        )
        .into_iter()
        .map(|(start, end, remaining)| WeakRange {
            start,
            end,
            remaining,
        })
        .collect();
        // Slow ranges may overlap (their costs add up), so they are only sorted, not merged.
        let mut slow = spec.slow.clone();
        slow.sort_by_key(|r| r.0);
        let weak_odds = normalize(
            spec.weak_odds.iter().copied(),
            sector,
            spec.size,
            false,
            |a: f64, _| a,
        );
        let rng = XorShift::new(spec.seed);
        FaultySource {
            spec,
            clock,
            counters: Arc::new(Counters::default()),
            bad,
            weak,
            slow,
            weak_odds,
            rng,
            head: 0,
            log: None,
            gone_fired: false,
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    pub fn clock(&self) -> SimClock {
        self.clock.clone()
    }

    pub fn spec(&self) -> &FaultySpec {
        &self.spec
    }

    /// Sends every later request to `sink` (the request log).
    pub fn set_log(&mut self, sink: Box<dyn RequestSink>) {
        self.log = Some(sink);
    }

    /// Changes what failed reads deliver (the FUSE file switches per open: `O_DIRECT` or not).
    pub fn set_semantics(&mut self, semantics: ReadSemantics) {
        self.spec.semantics = semantics;
    }

    /// A switch that makes the device gone (true) from outside, e.g. from a test thread while an
    /// engine owns the source. `reopen` clears it.
    pub fn gone_switch(&self) -> Arc<AtomicBool> {
        self.gone.clone()
    }

    /// The 8-byte word of content that holds byte `pos` (every byte is non-zero, so content never
    /// looks like an unwritten hole).
    #[inline]
    fn word(index: u64) -> u64 {
        let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        x | 0x0101_0101_0101_0101
    }

    /// The content of the simulated disk at `pos` (deterministic, position-dependent, never 0).
    pub fn expected_byte(pos: u64) -> u8 {
        Self::word(pos / 8).to_le_bytes()[(pos % 8) as usize]
    }

    /// Fills `buf` with the content at `pos..`, a word at a time (GiB-sized disks need this fast).
    pub fn fill(pos: u64, buf: &mut [u8]) {
        let head = (((8 - pos % 8) % 8) as usize).min(buf.len());
        for (i, b) in buf[..head].iter_mut().enumerate() {
            *b = Self::expected_byte(pos + i as u64);
        }
        let rest_pos = pos + head as u64;
        let mut chunks = buf[head..].chunks_exact_mut(8);
        let mut index = rest_pos / 8;
        for chunk in &mut chunks {
            chunk.copy_from_slice(&Self::word(index).to_le_bytes());
            index += 1;
        }
        let tail = chunks.into_remainder();
        let tail_pos = index * 8;
        for (i, b) in tail.iter_mut().enumerate() {
            *b = Self::expected_byte(tail_pos + i as u64);
        }
    }

    /// Offset of the first byte of `buf` that differs from the content at `pos..`, if any.
    pub fn first_mismatch(pos: u64, buf: &[u8]) -> Option<usize> {
        let mut expected = [0u8; 4096];
        let mut off = 0usize;
        while off < buf.len() {
            let n = (buf.len() - off).min(expected.len());
            Self::fill(pos + off as u64, &mut expected[..n]);
            if buf[off..off + n] != expected[..n] {
                let i = buf[off..off + n]
                    .iter()
                    .zip(&expected[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Some(off + i);
            }
            off += n;
        }
        None
    }

    /// Where a read of `[pos, end)` stops on the medium, if it does: the start of the first
    /// failing sector (never before `pos`). Consumes one failure of the weak range it reaches.
    fn media_failure(&mut self, pos: u64, end: u64) -> Option<u64> {
        let sector = self.spec.sector();
        let at = |start: u64| (start - start % sector).max(pos);
        let i = self.bad.partition_point(|r| r.1 <= pos);
        let bad_at = self.bad.get(i).filter(|r| r.0 < end).map(|r| at(r.0));
        let limit = bad_at.unwrap_or(end);
        let j = self.weak.partition_point(|w| w.end <= pos);
        for w in &mut self.weak[j..] {
            if w.start >= limit {
                break;
            }
            if w.remaining > 0 {
                w.remaining -= 1;
                return Some(at(w.start));
            }
        }
        let k = self.weak_odds.partition_point(|w| w.1 <= pos);
        let mut request_draw: Option<bool> = None;
        for &(ws, we, odds) in &self.weak_odds[k..] {
            if ws >= limit {
                break;
            }
            let first = ws.max(pos - pos % sector);
            let last = we.min(limit);
            match self.spec.weak_draw {
                WeakDraw::PerRequest => {
                    let ok = *request_draw.get_or_insert_with(|| self.rng.unit() < odds);
                    if !ok {
                        return Some(at(first));
                    }
                }
                WeakDraw::PerSector => {
                    let mut s = first;
                    while s < last {
                        if self.rng.unit() >= odds {
                            return Some(at(s));
                        }
                        s += sector;
                    }
                }
            }
        }
        bad_at
    }

    /// Extra time of the slow ranges overlapping `[pos, end)`.
    fn slow_extra(&self, pos: u64, end: u64) -> Duration {
        let mut extra = Duration::ZERO;
        for &(s, e, d) in &self.slow {
            if s >= end {
                break;
            }
            if e > pos {
                extra += d;
            }
        }
        extra
    }

    fn transfer_time(&self, bytes: u64) -> Duration {
        if self.spec.rate == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.spec.rate);
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
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
        let reads_before = self.counters.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(limit) = self.spec.gone_after_reads {
            if !self.gone_fired && reads_before >= limit {
                self.gone_fired = true;
                self.gone.store(true, Ordering::Relaxed);
            }
        }
        if self.gone.load(Ordering::Relaxed) {
            self.counters.failed_reads.fetch_add(1, Ordering::Relaxed);
            return ReadOutcome {
                good: 0,
                fault: Some(ReadFault::Gone(io::Error::from_raw_os_error(libc::ENODEV))),
            };
        }
        let n = buf.len().min(self.spec.size.saturating_sub(pos) as usize);
        let end = pos + n as u64;
        let failure = if n > 0 {
            self.media_failure(pos, end)
        } else {
            None
        };
        // How far the drive read, and what the caller gets of it.
        let reached_end = failure.unwrap_or(end);
        let good_end = match (failure, self.spec.semantics) {
            (None, _) | (Some(_), ReadSemantics::SectorPrefix) => reached_end,
            (Some(_), ReadSemantics::Direct) => pos,
            (Some(f), ReadSemantics::Buffered { page }) => {
                let page = u64::from(page.max(1));
                (f - f % page).max(pos)
            }
        };
        let good = (good_end - pos) as usize;
        Self::fill(pos, &mut buf[..good]);
        let seek = pos != self.head;
        self.head = end;
        let mut cost =
            self.transfer_time(reached_end - pos) + self.slow_extra(pos, reached_end.max(pos + 1));
        if seek {
            cost += self.spec.seek_cost;
            self.counters.seeks.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .bytes_read
            .fetch_add(good as u64, Ordering::Relaxed);
        let fault = failure.map(|_| {
            self.counters.failed_reads.fetch_add(1, Ordering::Relaxed);
            cost += self.spec.error_latency;
            ReadFault::Media(io::Error::from_raw_os_error(libc::EIO))
        });
        let start = self.clock.now();
        self.clock.advance(cost);
        if let Some(log) = self.log.as_mut() {
            log.request(&DriveRequest {
                start,
                cost,
                pos,
                len: n as u64,
                good: good as u64,
                reached: reached_end - pos,
                failed: fault.is_some(),
                seek,
            });
        }
        ReadOutcome { good, fault }
    }

    fn describe(&self) -> String {
        "simulated failing disk".to_string()
    }

    fn read_direct_at(&mut self, pos: u64, buf: &mut [u8]) -> Option<ReadOutcome> {
        if !matches!(self.spec.semantics, ReadSemantics::Buffered { .. }) {
            return None;
        }
        let saved = self.spec.semantics;
        self.spec.semantics = ReadSemantics::Direct;
        let out = self.read_at(pos, buf);
        self.spec.semantics = saved;
        Some(out)
    }

    fn reopen(&mut self) -> io::Result<bool> {
        if self.gone.swap(false, Ordering::Relaxed) {
            self.counters.reopens.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_expected_byte_at_any_alignment() {
        for pos in 0..17u64 {
            for len in [0usize, 1, 7, 8, 9, 31, 64, 100] {
                let mut buf = vec![0u8; len];
                FaultySource::fill(pos, &mut buf);
                for (i, b) in buf.iter().enumerate() {
                    assert_eq!(*b, FaultySource::expected_byte(pos + i as u64));
                    assert_ne!(*b, 0);
                }
                assert_eq!(FaultySource::first_mismatch(pos, &buf), None);
            }
        }
        let mut buf = vec![0u8; 10_000];
        FaultySource::fill(12_345, &mut buf);
        buf[9_000] ^= 0xFF;
        assert_eq!(FaultySource::first_mismatch(12_345, &buf), Some(9_000));
    }

    #[test]
    fn normalize_widens_and_merges() {
        let spec = FaultySpec::new(10_000)
            .with_bad(100, 200)
            .with_bad(600, 1100)
            .with_bad(9_900, 20_000);
        assert_eq!(spec.bad_ranges(), vec![(0, 1536), (9_728, 10_000)]);
    }

    #[test]
    fn generators_are_deterministic() {
        let a = FaultySpec::scattered_bad_sectors(1 << 30, 512, 100, 7);
        let b = FaultySpec::scattered_bad_sectors(1 << 30, 512, 100, 7);
        assert_eq!(a.bad, b.bad);
        assert_eq!(a.bad.len(), 100);
        assert!(a.bad_bytes() <= 100 * 512 && a.bad_bytes() >= 90 * 512);
        let c = FaultySpec::bad_clusters(1 << 30, 4096, 10, 1 << 20, 50, 1);
        assert!(c.bad.iter().all(|&(s, e)| s % 4096 == 0 && e - s == 4096));
        let d = FaultySpec::dead_head(1000, 10, 100, 5);
        assert_eq!(d.bad.len(), 10);
        assert_eq!(d.bad[0], (5, 15));
    }
}
