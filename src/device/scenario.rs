//! Simulated failing drives for benchmarks and tests: the damage classes of `docs/benchmarks.md`
//! ("Rescue on simulated drives"), each a [`FaultySpec`] priced with the drive model
//! ([`FaultySpec::drive`]). Layouts are reproducible from the seed; the weak sectors' draws are
//! seeded too.

use super::faulty::{FaultySpec, XorShift};
use std::io::Write as _;
use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

/// Success probability per attempt of the weak sectors of `zones` and `weak-head`.
pub const WEAK_ODDS: f64 = 0.4;
/// Extra time per request in the slow zones of `weak-head`.
pub const SLOW_EXTRA: Duration = Duration::from_millis(25);

/// The scenario classes.
pub const NAMES: &[&str] = &[
    "isolated",
    "zones",
    "weak-head",
    "dead-head",
    "clusters",
    "edges",
];

/// The default size of a scenario's drive.
pub fn default_size(name: &str) -> u64 {
    match name {
        // Not a multiple of 4 KiB, and past 2^32 bytes.
        "edges" => (4 << 30) + MIB + 1536,
        _ => 1 << 30,
    }
}

/// What a scenario holds, in a few words.
pub fn describe(name: &str) -> &'static str {
    match name {
        "isolated" => "200 isolated 4 KiB bad spots, evenly spread",
        "zones" => "4 damaged zones of 1–8 MiB: bad runs mixed with weak sectors (40 % per try)",
        "weak-head" => "weak, slow head: 512 KiB of every 2 MiB slow (+25 ms/request) and weak",
        "dead-head" => "dead head: a 16 MiB stripe of every 64 MiB unreadable",
        "clusters" => "dense clusters: 3 zones of 16 MiB, each 64 KiB cluster bad with p = 0.3",
        "edges" => "bad sectors at the very start, across 2^32 and at the very end; odd size",
        _ => "unknown",
    }
}

/// The drive of scenario `name` of `size` bytes (scaled layouts for small test drives), or None
/// for an unknown name.
pub fn build(name: &str, size: u64, seed: u64) -> Option<FaultySpec> {
    draw(name, size, seed).map(|(spec, _)| spec)
}

/// A region whose aligned units were each drawn bad on their own, with the same odds: a read
/// failing on one unit says nothing of the next, so a tool without the map pays about one
/// failed read per bad unit it meets there (the benchmark's knowledge-free bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DrawnZone {
    pub start: u64,
    pub end: u64,
    pub unit: u64,
}

/// [`build`], and the zones of independently drawn units behind its bad ranges.
fn draw(name: &str, size: u64, seed: u64) -> Option<(FaultySpec, Vec<DrawnZone>)> {
    let mut drawn = Vec::new();
    let mut rng = XorShift::new(
        seed.wrapping_mul(0x9E37_79B9)
            .wrapping_add(name.len() as u64),
    );
    let mut spec = FaultySpec::drive(size).with_seed(seed);
    let align = |x: u64, a: u64| x - x % a;
    match name {
        "isolated" => {
            // 200 per GiB.
            let n = ((u128::from(size) * 200) >> 30).max(8) as u64;
            let spacing = size / n;
            for i in 0..n {
                let jitter = rng.below(spacing / 2 + 1);
                let p = align(i * spacing + spacing / 4 + jitter, 4 * KIB);
                if p + 4 * KIB <= size {
                    spec.bad.push((p, p + 4 * KIB));
                }
            }
        }
        "zones" => {
            let quarter = size / 4;
            for z in 0..4u64 {
                let lo = (size / 1024).max(16 * KIB);
                let hi = (size / 128).max(lo + 1);
                let len = align(lo + rng.below(hi - lo), 4 * KIB).max(4 * KIB);
                let room = quarter.saturating_sub(len).max(1);
                let start = align(z * quarter + rng.below(room), 4 * KIB);
                let end = (start + len).min(size);
                let mut p = start;
                while p < end {
                    let run = (1 + rng.below(32)) * SECTOR;
                    let e = (p + run).min(end);
                    let kind = rng.below(100);
                    if kind < 35 {
                        spec.bad.push((p, e));
                    } else if kind < 60 {
                        spec.weak_odds.push((p, e, WEAK_ODDS));
                    }
                    p = e;
                }
            }
        }
        "weak-head" => {
            let period = 2 * MIB;
            let slow = 512 * KIB;
            let phase = MIB;
            let zones = size / period;
            for z in 0..zones {
                let s = z * period + phase;
                spec.slow.push((s, (s + slow).min(size), SLOW_EXTRA));
            }
            // About 700 weak sectors per GiB, at random places inside the slow zones.
            let count = (size / (3 * MIB / 2)).max(1);
            if zones > 0 {
                for _ in 0..count {
                    let z = rng.below(zones);
                    let s = z * period + phase + rng.below(slow / SECTOR) * SECTOR;
                    spec.weak_odds.push((s, s + SECTOR, WEAK_ODDS));
                }
            }
            spec.weak_odds.sort_by_key(|w| w.0);
            spec.weak_odds.dedup_by_key(|w| w.0);
        }
        "dead-head" => {
            let period = (size / 16).max(4 * SECTOR);
            let stripe = period / 4;
            let dead = FaultySpec::dead_head(size, stripe, period, stripe);
            spec.bad = dead.bad;
        }
        "clusters" => {
            let cl = 64 * KIB;
            let zone = align((size / 64).max(cl), cl);
            let third = size / 3;
            for z in 0..3u64 {
                let start = align(z * third + rng.below(third.saturating_sub(zone).max(1)), cl);
                let end = (start + zone).min(size);
                drawn.push(DrawnZone {
                    start,
                    end: start + (end.saturating_sub(start)) / cl * cl,
                    unit: cl,
                });
                let mut c = start;
                while c + cl <= end {
                    if rng.below(100) < 30 {
                        spec.bad.push((c, c + cl));
                    }
                    c += cl;
                }
            }
        }
        "edges" => {
            let mut bad = vec![(0, 2 * SECTOR), (8 * SECTOR, 9 * SECTOR)];
            if size > (1 << 32) + SECTOR {
                bad.push(((1 << 32) - SECTOR, (1 << 32) + SECTOR));
            } else {
                let mid = align(size / 2, SECTOR);
                bad.push((mid - SECTOR, mid + SECTOR));
            }
            let last = align(size, SECTOR);
            bad.push((last - 3 * SECTOR, last - 2 * SECTOR));
            bad.push((last - SECTOR, size));
            spec.bad = bad;
        }
        _ => return None,
    }
    Some((spec, drawn))
}

/// A simulated drive that serves a real disk's contents: `inner` (a [`super::FaultySource`])
/// decides what each request costs and which bytes fail, exactly as without data; the bytes it
/// delivers are then taken from `data` (zeros past its end).
pub struct DataBacked<S> {
    inner: S,
    data: std::fs::File,
    path: std::path::PathBuf,
}

impl<S: super::Source> DataBacked<S> {
    pub fn open(inner: S, path: &std::path::Path) -> crate::Result<DataBacked<S>> {
        let data = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
        Ok(DataBacked {
            inner,
            data,
            path: path.to_path_buf(),
        })
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Replaces what `inner` delivered with the data file's bytes.
    fn overlay(&self, pos: u64, buf: &mut [u8], out: super::ReadOutcome) -> super::ReadOutcome {
        use std::os::unix::fs::FileExt;
        let good = &mut buf[..out.good];
        let mut done = 0;
        while done < good.len() {
            match self.data.read_at(&mut good[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return super::ReadOutcome {
                        good: done,
                        fault: Some(super::ReadFault::Other(e)),
                    }
                }
            }
        }
        good[done..].fill(0);
        out
    }
}

impl<S: super::Source> super::Source for DataBacked<S> {
    fn geometry(&self) -> super::Geometry {
        self.inner.geometry()
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> super::ReadOutcome {
        let out = self.inner.read_at(pos, buf);
        self.overlay(pos, buf, out)
    }
    fn describe(&self) -> String {
        format!("{} serving {}", self.inner.describe(), self.path.display())
    }
    fn reopen(&mut self) -> std::io::Result<bool> {
        self.inner.reopen()
    }
    fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }
    fn read_direct_at(&mut self, pos: u64, buf: &mut [u8]) -> Option<super::ReadOutcome> {
        let out = self.inner.read_direct_at(pos, buf)?;
        Some(self.overlay(pos, buf, out))
    }
}

/// The truth of a drive, for benchmark reports (JSON).
#[derive(Debug, serde::Serialize)]
pub struct Truth {
    pub name: String,
    pub seed: u64,
    pub size: u64,
    pub sector_size: u32,
    pub bad: Vec<(u64, u64)>,
    /// `(start, end, success probability per attempt)`.
    pub weak: Vec<(u64, u64, f64)>,
    /// `(start, end, extra milliseconds per request)`.
    pub slow: Vec<(u64, u64, f64)>,
    pub seek_ms: f64,
    pub rate: u64,
    pub error_s: f64,
    /// Where the bad ranges were drawn unit by unit ([`DrawnZone`]).
    pub drawn: Vec<DrawnZone>,
}

impl Truth {
    pub fn of(name: &str, seed: u64, spec: &FaultySpec) -> Truth {
        Truth {
            name: name.to_string(),
            seed,
            size: spec.size,
            sector_size: spec.sector_size,
            bad: spec.bad_ranges(),
            weak: spec.weak_odds_ranges(),
            slow: spec
                .slow
                .iter()
                .map(|&(s, e, d)| (s, e, d.as_secs_f64() * 1e3))
                .collect(),
            seek_ms: spec.seek_cost.as_secs_f64() * 1e3,
            rate: spec.rate,
            error_s: spec.error_latency.as_secs_f64(),
            drawn: draw(name, spec.size, seed)
                .map(|(_, d)| d)
                .unwrap_or_default(),
        }
    }
}

/// What a run cost on a simulated drive, from its request log: the benchmark's measures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub requests: u64,
    pub seeks: u64,
    pub failed_reads: u64,
    /// Drive time of the whole run (seconds).
    pub drive_time: f64,
    pub readable: u64,
    /// Readable bytes the drive delivered at least once.
    pub delivered: u64,
    /// Drive time (s) when 90 / 99 / 100 % of the readable bytes had been delivered.
    pub t90: Option<f64>,
    pub t99: Option<f64>,
    pub t100: Option<f64>,
    /// Failed reads made until then.
    pub failed_at_99: Option<u64>,
    pub failed_at_100: Option<u64>,
    /// With [`Analyzer::with_wanted`]: the readable bytes of the wanted ranges (a disk's
    /// allocated data), how many were delivered, and the drive time (s) and failed reads when
    /// the last of them was delivered.
    pub wanted: u64,
    pub wanted_delivered: u64,
    pub t_wanted: Option<f64>,
    pub failed_at_wanted: Option<u64>,
    /// The largest request, and how many requests of each size (the most common ones).
    pub max_request: u64,
    pub request_sizes: Vec<(u64, u64)>,
}

/// A [`RequestSink`](super::RequestSink) that measures a run: which readable sectors were
/// delivered when, failed reads, seeks; optionally writes the request log as TSV
/// (`start_ns cost_ns pos len good failed seek`).
pub struct Analyzer {
    sector: u64,
    size: u64,
    delivered_bits: Vec<u64>,
    summary: RunSummary,
    sizes: std::collections::HashMap<u64, u64>,
    log: Option<Box<dyn std::io::Write + Send>>,
    /// Wanted sectors (bit set), for `t_wanted`.
    wanted_bits: Vec<u64>,
    bad: Vec<(u64, u64)>,
}

impl Analyzer {
    pub fn new(spec: &FaultySpec) -> Analyzer {
        let sector = u64::from(spec.sector_size.max(1));
        let sectors = spec.size.div_ceil(sector);
        Analyzer {
            sector,
            size: spec.size,
            delivered_bits: vec![0; sectors.div_ceil(64) as usize],
            summary: RunSummary {
                readable: spec.size - spec.bad_bytes(),
                ..RunSummary::default()
            },
            sizes: std::collections::HashMap::new(),
            log: None,
            wanted_bits: Vec::new(),
            bad: spec.bad_ranges(),
        }
    }

    /// Also measures when every readable sector touching `wanted` (sorted byte ranges: the
    /// allocated data of the disk the drive serves) had been delivered.
    pub fn with_wanted(mut self, wanted: &[(u64, u64)]) -> Analyzer {
        let sectors = self.size.div_ceil(self.sector);
        self.wanted_bits = vec![0; sectors.div_ceil(64) as usize];
        let mut readable = 0;
        let mut b = 0;
        for &(s, e) in wanted {
            let (first, last) = (s / self.sector, e.min(self.size).div_ceil(self.sector));
            for sec in first..last {
                let (lo, hi) = (sec * self.sector, ((sec + 1) * self.sector).min(self.size));
                while b < self.bad.len() && self.bad[b].1 <= lo {
                    b += 1;
                }
                let is_bad = self.bad.get(b).is_some_and(|r| r.0 < hi);
                let (w, bit) = ((sec / 64) as usize, sec % 64);
                if !is_bad && self.wanted_bits[w] & (1 << bit) == 0 {
                    self.wanted_bits[w] |= 1 << bit;
                    readable += hi - lo;
                }
            }
            // Ranges may overlap sectors of the previous one: restart the bad-range scan.
            b = 0;
        }
        self.summary.wanted = readable;
        self
    }

    pub fn with_log(mut self, log: Box<dyn std::io::Write + Send>) -> Analyzer {
        self.log = Some(log);
        self
    }

    pub fn summary(&mut self) -> RunSummary {
        if let Some(log) = self.log.as_mut() {
            let _ = log.flush();
        }
        let mut sizes: Vec<(u64, u64)> = self.sizes.iter().map(|(&k, &v)| (k, v)).collect();
        sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        sizes.truncate(8);
        let mut s = self.summary.clone();
        s.request_sizes = sizes;
        s
    }
}

impl super::RequestSink for Analyzer {
    fn request(&mut self, r: &super::DriveRequest) {
        let s = &mut self.summary;
        s.requests += 1;
        s.seeks += u64::from(r.seek);
        s.failed_reads += u64::from(r.failed);
        s.max_request = s.max_request.max(r.len);
        *self.sizes.entry(r.len).or_insert(0) += 1;
        let end = (r.start + r.cost).as_secs_f64();
        s.drive_time = s.drive_time.max(end);
        let mut sec = r.pos / self.sector;
        let last = (r.pos + r.good).div_ceil(self.sector);
        while sec < last {
            let (w, b) = ((sec / 64) as usize, sec % 64);
            if self.delivered_bits[w] & (1 << b) == 0 {
                self.delivered_bits[w] |= 1 << b;
                let lo = sec * self.sector;
                let n = (lo + self.sector).min(self.size) - lo;
                s.delivered += n;
                if self.wanted_bits.get(w).is_some_and(|x| x & (1 << b) != 0) {
                    s.wanted_delivered += n;
                    if s.wanted_delivered >= s.wanted && s.t_wanted.is_none() {
                        s.t_wanted = Some(end);
                        s.failed_at_wanted = Some(s.failed_reads);
                    }
                }
            }
            sec += 1;
        }
        if s.readable > 0 {
            let frac = s.delivered as f64 / s.readable as f64;
            if frac >= 0.9 && s.t90.is_none() {
                s.t90 = Some(end);
            }
            if frac >= 0.99 && s.t99.is_none() {
                s.t99 = Some(end);
                s.failed_at_99 = Some(s.failed_reads);
            }
            if s.delivered >= s.readable && s.t100.is_none() {
                s.t100 = Some(end);
                s.failed_at_100 = Some(s.failed_reads);
            }
        }
        if let Some(log) = self.log.as_mut() {
            let _ = writeln!(
                log,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.start.as_nanos(),
                r.cost.as_nanos(),
                r.pos,
                r.len,
                r.good,
                u8::from(r.failed),
                u8::from(r.seek)
            );
        }
    }
}

/// A sink shared with whoever reads the results while the source owns it.
impl<T: super::RequestSink> super::RequestSink for std::sync::Arc<std::sync::Mutex<T>> {
    fn request(&mut self, r: &super::DriveRequest) {
        if let Ok(mut t) = self.lock() {
            t.request(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_builds_and_is_reproducible() {
        for name in NAMES {
            let size = default_size(name);
            let a = build(name, size, 3).map(|s| s.bad_ranges());
            let b = build(name, size, 3).map(|s| s.bad_ranges());
            assert!(a.is_some(), "{name}");
            assert_eq!(a, b, "{name}");
            let spec = build(name, size, 3).unwrap_or_default();
            assert!(spec.bad_bytes() < size / 2, "{name}");
        }
        assert!(build("nope", 1 << 20, 1).is_none());
        let edges = build("edges", default_size("edges"), 1).unwrap_or_default();
        assert_ne!(edges.size % 4096, 0);
        assert!(edges.size > 1 << 32);
        assert_eq!(edges.bad_ranges().last().map(|r| r.1), Some(edges.size));
    }

    #[test]
    fn the_truth_names_the_zones_drawn_unit_by_unit() {
        for name in NAMES {
            let size = default_size(name);
            let spec = build(name, size, 2).unwrap_or_default();
            let truth = Truth::of(name, 2, &spec);
            if *name != "clusters" {
                assert!(truth.drawn.is_empty(), "{name}");
                continue;
            }
            assert_eq!(truth.drawn.len(), 3);
            // Every bad range is whole units inside one drawn zone, and some units are good.
            for &(s, e) in &truth.bad {
                let z = truth.drawn.iter().find(|z| z.start <= s && e <= z.end);
                let Some(z) = z else {
                    panic!("bad range {s}..{e} outside the drawn zones")
                };
                assert_eq!((s - z.start) % z.unit, 0);
                assert_eq!((e - s) % z.unit, 0);
            }
            let zone: u64 = truth.drawn.iter().map(|z| z.end - z.start).sum();
            let bad: u64 = truth.bad.iter().map(|r| r.1 - r.0).sum();
            assert!(bad > zone / 10 && bad < zone / 2, "{bad} of {zone}");
        }
    }
}
