//! The rescue engine: phases and passes over a [`Mapfile`] (see the module doc of `rescue`).

use super::reader::{Chunk, Reader};
use super::{RescueOptions, DEFAULT_CLUSTER};
use crate::device::{Clock, Dest, Geometry, ReadFault, Source};
use crate::error::{Error, Result};
use crate::mapfile::{BlockStatus, Mapfile, MapfileSaver, Phase};
use crate::progress::{
    Control, Direction, RescueEvent, RescueObserver, RescueSnapshot, StopReason,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a run ended (errors are returned as `Err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every phase ran to its end (bad sectors may remain: that is still a normal end).
    Finished,
    /// Stopped on request (signal or user) after saving the mapfile.
    Stopped(StopReason),
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RescueStats {
    pub reads: u64,
    pub read_errors: u64,
    /// Bytes turned into "finished" by this run.
    pub rescued_this_run: u64,
}

/// Where the engine saves the map. The engine syncs the destination before calling `store`.
pub trait MapStore {
    fn store(&mut self, map: &Mapfile, status_message: &str) -> Result<()>;
}

impl MapStore for MapfileSaver {
    fn store(&mut self, map: &Mapfile, status_message: &str) -> Result<()> {
        self.save(map, status_message)
    }
}

/// A store that keeps nothing (for simulations).
pub struct NoStore;

impl MapStore for NoStore {
    fn store(&mut self, _map: &Mapfile, _status_message: &str) -> Result<()> {
        Ok(())
    }
}

/// Runs (or resumes) a rescue of `src` into `dest`, recording progress in `map`.
///
/// `map` may come from an earlier run of salvor or GNU ddrescue; it is extended to the source size.
/// Returns after all phases ran, on a stop request (after saving), or on an error (after saving
/// whenever that is still possible).
#[allow(clippy::too_many_arguments)]
pub fn rescue(
    src: &mut dyn Source,
    dest: &mut dyn Dest,
    map: &mut Mapfile,
    store: &mut dyn MapStore,
    opts: &RescueOptions,
    clock: &dyn Clock,
    control: &Control,
    observer: &mut dyn RescueObserver,
) -> Result<(Outcome, RescueStats)> {
    let geometry = src.geometry();
    // After a failed write or sync the destination stays failed, so the saves below (which sync
    // first) can never store a map claiming data written since the last good sync.
    let mut dest = crate::device::Guarded::new(dest);
    std::thread::scope(|scope| {
        let reader = super::reader::spawn(scope, src, cluster_size(opts, &geometry));
        let mut engine = Engine::new(
            reader, geometry, &mut dest, map, store, opts, clock, control, observer,
        )?;
        // A mapfile from the first instant, as GNU ddrescue does: a power cut before the first
        // periodic save must not lose the run's setup (or a resumed run's phase).
        engine.save("Starting")?;
        let result = engine.run();
        let stats = engine.stats;
        match result {
            Ok(()) => {
                engine.map.phase = Phase::Finished;
                engine.save("Finished")?;
                engine.observer.event(&RescueEvent::Finished {
                    complete: engine.domain_totals().pending() == 0,
                });
                engine.emit_progress(true);
                Ok((Outcome::Finished, stats))
            }
            Err(Halt::Stop(reason)) => {
                engine.save("Interrupted")?;
                engine.emit_progress(true);
                Ok((Outcome::Stopped(reason), stats))
            }
            Err(Halt::Fail(e)) => {
                // Save what is durable; a failing save must not hide the original error. After
                // a destination failure this saves nothing (the guard fails the sync).
                let _ = engine.save("Stopped by an error");
                engine.emit_progress(true);
                Err(e)
            }
        }
    })
}

fn sector_size(opts: &RescueOptions, geo: &Geometry) -> u64 {
    if opts.sector_size != 0 {
        u64::from(opts.sector_size)
    } else {
        u64::from(geo.logical_sector.max(1))
    }
}

fn cluster_size(opts: &RescueOptions, geo: &Geometry) -> u64 {
    let sector = sector_size(opts, geo).max(1);
    if opts.cluster_bytes != 0 {
        round_up(opts.cluster_bytes, sector)
    } else {
        round_up(DEFAULT_CLUSTER, sector)
    }
}

/// The next read of a sequential walk over `[lo, hi)`: reads end on cluster boundaries, so that
/// the I/O thread reading ahead and the engine agree on every chunk.
pub(super) fn engine_chunk(lo: u64, hi: u64, dir: Direction, cluster: u64) -> (u64, u64) {
    match dir {
        Direction::Forwards => (lo, (cluster - lo % cluster).min(hi - lo)),
        Direction::Backwards => {
            let rem = hi % cluster;
            let len = if rem == 0 { cluster } else { rem }.min(hi - lo);
            (hi - len, len)
        }
    }
}

/// Read size of the copying passes near errors.
const CAREFUL_CHUNK: u64 = 32 << 10;
/// How far past a read error reads stay small.
const CAREFUL_SPAN: u64 = 32 << 20;
/// Read size of the copying passes where errors come close together (dense damage): a bad
/// 64 KiB cluster, the common unit of clustered damage, is met by one aligned read once instead
/// of by two 32 KiB reads from both sides.
const DENSE_CHUNK: u64 = 64 << 10;
/// Errors closer than this (good bytes read between them) count as dense damage.
const DENSE_SPAN: u64 = 512 << 10;
/// Dense damage ends after this many good bytes in a row: a run of good clusters between bad
/// ones (eight in a row are common at p = 0.3) must not switch back to [`CAREFUL_CHUNK`]s, whose
/// halves of a bad cluster fail twice.
const DENSE_KEEP: u64 = 2 * DENSE_SPAN;
/// Read size of the copying passes near errors where requests are slow (the last good request
/// took more than [`SLOW_REQUEST`]: a weak head's zone, +25 ms per request on the benchmark's
/// drive). A failed `O_DIRECT` read loses its whole size until trimming, and each byte trimmed
/// back costs about 1.2 / size seconds of failed reads per KiB (the failed block's weak sector
/// read again), against 25 ms per request for reading in smaller requests: the sum is lowest
/// near 26 KiB (see "Split of failed first reads" in `docs/benchmarks.md`). Not in dense damage,
/// whose aligned [`DENSE_CHUNK`]s meet a bad cluster once.
const SLOW_CHUNK: u64 = 26 << 10;
/// A good request of at most [`DENSE_CHUNK`] that took longer than this is slow: a seek is
/// about 8 ms and the transfer of 64 KiB less than 1 ms.
const SLOW_REQUEST: Duration = Duration::from_millis(20);
/// Slow requests in a row that show a slow zone (see `Engine::last_slow`).
const SLOW_EVIDENCE: u32 = 2;
/// Non-tried areas between two failed reads up to this size are read before trimming.
const ENCLOSED_MAX: u64 = 512 << 10;

/// Block size (sectors) of trimming backwards over long stretches.
const TRIM_BLOCK_SECTORS: u64 = 128;
/// Request size (sectors) of trimming's left edge where failures have been lone: a failed one is
/// left for scraping, so it stays small (a page); aligned, from the area's start.
const TRIM_PIECE_SECTORS: u64 = 8;
/// Where bad spots have been small, trimming's left edge hops this far past its first failed
/// sector instead of ending there: a bad spot of a 4 KiB physical sector (the common failing unit
/// of 512e and 4Kn drives) is then passed with one failed read instead of a second one from the
/// right edge. The page hopped over is left for scraping, which comes after all readable data.
const TRIM_HOP: u64 = 4096;
/// Scraping probes areas larger than this (sectors) before reading them sector by sector.
const PROBE_MIN_SECTORS: u64 = 64;
/// Probes per area.
const PROBES: u64 = 16;
/// After scraping and retrying, the failed sectors of the shortest bad areas (lone failed sectors
/// first: more likely weak than one inside a long bad run) get one more read, at most one for
/// every this many failed reads so far, so that the extra drive time stays within half a percent
/// of what the failures cost. Weak sectors (which read with some probability per try) give up
/// part of their data this way.
const WEAK_RETRY_DIVISOR: u64 = 200;
/// If none of this many weak retries reads, the bad sectors are simply bad: no more retries.
const WEAK_PROBES: u64 = 8;

/// Why a phase stopped early.
enum Halt {
    Stop(StopReason),
    Fail(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Fail(e)
    }
}

type Step<T = ()> = std::result::Result<T, Halt>;

/// What one read did.
#[derive(Debug, Clone, Copy)]
struct ReadResult {
    good: u64,
    failed: bool,
}

/// A run of one status inside the domain, with what lies on each side.
#[derive(Debug, Clone, Copy)]
struct Segment {
    pos: u64,
    end: u64,
    /// The byte before is rescued, or this is the edge of the domain.
    open_left: bool,
    /// The byte after is rescued, or this is the edge of the domain.
    open_right: bool,
    /// Trimming put this area back after a failed piece at `head..pos` (left for scraping): if
    /// its first request fails too, the damage is solid after all and is trimmed sector by
    /// sector from `head`, so the piece's readable start is not left inside an area that
    /// scraping may take for dead.
    head: Option<u64>,
}

/// Trimming's areas still to trim: in position order, or the largest first.
struct TrimQueue {
    by_pos: std::collections::BTreeMap<u64, Segment>,
    by_size: std::collections::BTreeSet<(std::cmp::Reverse<u64>, u64)>,
}

impl TrimQueue {
    fn new(segments: Vec<Segment>) -> TrimQueue {
        let mut q = TrimQueue {
            by_pos: std::collections::BTreeMap::new(),
            by_size: std::collections::BTreeSet::new(),
        };
        for seg in segments {
            q.push(seg);
        }
        q
    }

    fn push(&mut self, seg: Segment) {
        if seg.end > seg.pos {
            self.by_size
                .insert((std::cmp::Reverse(seg.end - seg.pos), seg.pos));
            self.by_pos.insert(seg.pos, seg);
        }
    }

    fn pop(&mut self, largest: bool) -> Option<Segment> {
        let pos = if largest {
            self.by_size.first()?.1
        } else {
            *self.by_pos.keys().next()?
        };
        let seg = self.by_pos.remove(&pos)?;
        self.by_size
            .remove(&(std::cmp::Reverse(seg.end - seg.pos), seg.pos));
        Some(seg)
    }
}

struct Engine<'a> {
    reader: Reader,
    dest: &'a mut dyn Dest,
    map: &'a mut Mapfile,
    store: &'a mut dyn MapStore,
    opts: &'a RescueOptions,
    clock: &'a dyn Clock,
    control: &'a Control,
    observer: &'a mut dyn RescueObserver,

    sector: u64,
    cluster: u64,
    /// Read size of the copying passes near errors (see `copy_step`).
    careful: u64,
    /// Read size of the copying passes right after an error (see `copy_step`).
    dense: u64,
    /// Read size of the copying passes near errors where requests are slow (see `copy_step`).
    slow: u64,
    /// Areas whose trimmed left edge met a solid bad spot (two failures in a row) or only a lone
    /// failure (or none: a weak sector that read this time), for choosing how to trim the next.
    trim_solid: u64,
    trim_lone: u64,
    /// Trimming hops over a page that passed the bad spot / that landed in bad data again, and
    /// edges that ended without a hop because hops had not paid (every eighth still hops).
    hop_good: u64,
    hop_bad: u64,
    hop_declined: u64,
    /// Bytes read without an error between the last two read errors.
    error_gap: u64,
    /// Dense damage seen: two errors closer than [`DENSE_SPAN`], and no long good stretch since.
    dense_damage: bool,
    /// Bytes read without an error since the last read error.
    good_since_error: u64,
    skip_initial: u64,
    skip_max: u64,
    /// Sorted, disjoint byte ranges to rescue.
    domain: Vec<(u64, u64)>,
    domain_size: u64,
    /// dest position = source position + shift.
    shift: i128,
    /// The chunk of the last read, until its good part is written.
    chunk: Option<Chunk>,
    dest_was_new: bool,

    stats: RescueStats,
    direction: Direction,
    start: Duration,
    last_good: Duration,
    last_save: Instant,
    last_progress: Instant,
    /// (drive time, bytes rescued this run) samples for the current rate.
    rate_window: VecDeque<(Duration, u64)>,
    /// Drive time spent in failed reads, for the remaining-time estimate.
    error_time: Duration,
    waiting: bool,
    /// Bytes read and when reading started, for `--max-read-rate`.
    throttle: (u64, Instant),
    /// Bad areas in the domain when the run started (`-e +N`).
    initial_bad_areas: u64,
    /// Failed bytes in the current second, and when that second started (`-E`).
    error_rate: (u64, Duration),
    /// The latest good sector read and its data (`-J`).
    last_good_sector: Option<(u64, Vec<u8>)>,
    /// Slow reads so far (`-a`, `--max-slow-reads`).
    slow_reads: u64,
    /// The last [`SLOW_EVIDENCE`] good requests of at most [`DENSE_CHUNK`] took longer than
    /// [`SLOW_REQUEST`], and whether that has happened at all: one slow request proves nothing
    /// (a busy host, a seek on a healthy disk), and taken for a weak head it used to switch a
    /// whole run's trimming (200 more failed reads on the isolated bench drive, now and then).
    last_slow: bool,
    slow_seen: bool,
    /// Good requests of at most [`DENSE_CHUNK`] in a row that were slow.
    slow_streak: u32,
    /// A failed read returned the good data before its error (buffered reads do, `O_DIRECT`
    /// reads never): a failure then loses little, and [`SLOW_CHUNK`]s would only add requests.
    prefix_seen: bool,
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        reader: Reader,
        geo: Geometry,
        dest: &'a mut dyn Dest,
        map: &'a mut Mapfile,
        store: &'a mut dyn MapStore,
        opts: &'a RescueOptions,
        clock: &'a dyn Clock,
        control: &'a Control,
        observer: &'a mut dyn RescueObserver,
    ) -> Result<Engine<'a>> {
        let sector = sector_size(opts, &geo);
        if !sector.is_power_of_two() {
            return Err(Error::invalid_arg(
                "--sector-size",
                format!("{sector} is not a power of two"),
            ));
        }
        let cluster = cluster_size(opts, &geo);
        let size = geo.size;

        let domain = super::prepare::prepare_map(map, opts, size, sector, &reader.describe)?;
        let domain_size = domain.iter().map(|&(a, b)| b - a).sum();

        let skip_initial = if opts.no_skip {
            0
        } else if opts.skip_initial != 0 {
            round_up(opts.skip_initial, sector)
        } else {
            round_up((size / 16_384).max(64 << 10), sector)
        };
        let skip_max = if opts.no_skip {
            0
        } else if opts.skip_max != 0 {
            round_up(opts.skip_max, sector).max(skip_initial)
        } else {
            round_up(size / 50, sector).max(skip_initial)
        };
        let opos = opts.output_pos.unwrap_or(opts.input_pos);
        let shift = i128::from(opos) - i128::from(opts.input_pos);
        let dest_was_new = dest.size().map(|s| s == 0).unwrap_or(false);
        let now = clock.now();
        Ok(Engine {
            reader,
            dest,
            map,
            store,
            opts,
            clock,
            control,
            observer,
            sector,
            cluster,
            // An explicit read size (-c) or ddrescue's own passes (--cpass) keep ddrescue's
            // meaning: every copying read is that size, near errors too.
            careful: if opts.cluster_bytes != 0 || opts.cpass.is_some() {
                cluster
            } else {
                round_up(CAREFUL_CHUNK.min(cluster).max(sector), sector)
            },
            dense: if opts.cluster_bytes != 0 || opts.cpass.is_some() {
                cluster
            } else {
                round_up(DENSE_CHUNK.min(cluster).max(sector), sector)
            },
            slow: round_up(SLOW_CHUNK.min(cluster).max(sector), sector),
            good_since_error: 0,
            error_gap: u64::MAX,
            dense_damage: false,
            trim_solid: 0,
            trim_lone: 0,
            hop_good: 0,
            hop_bad: 0,
            hop_declined: 0,
            skip_initial,
            skip_max,
            domain,
            domain_size,
            shift,
            chunk: None,
            dest_was_new,
            stats: RescueStats::default(),
            direction: if opts.reverse {
                Direction::Backwards
            } else {
                Direction::Forwards
            },
            start: now,
            last_good: now,
            last_save: Instant::now(),
            last_progress: Instant::now(),
            rate_window: VecDeque::new(),
            error_time: Duration::ZERO,
            waiting: false,
            throttle: (0, Instant::now()),
            initial_bad_areas: 0,
            error_rate: (0, now),
            last_good_sector: None,
            slow_reads: 0,
            last_slow: false,
            slow_seen: false,
            slow_streak: 0,
            prefix_seen: false,
        })
    }

    fn run(&mut self) -> Step {
        self.initial_bad_areas = self.domain_totals().bad_areas;
        if let Some(cpass) = self.opts.cpass {
            return self.ddrescue_passes(cpass);
        }
        let resume_phase = self.map.phase;
        let resume_pass = self.map.pass.max(1);
        // Pass 1 (the skipping pass) is only run on a fresh map or when resuming inside it: running
        // it again would probe the insides of bad areas that later passes deliberately avoid.
        let mut pass = 1;
        if resume_phase == Phase::Copying && resume_pass == 1 {
            let resume_pos = (self.map.current_pos > 0).then_some(self.map.current_pos);
            self.skipping_pass(1, resume_pos)?;
            pass = 2;
        } else if resume_phase == Phase::Copying {
            pass = resume_pass;
        }
        loop {
            pass = self.adjacency_passes(pass)?;
            if self.enclosed_pass(pass)? {
                pass += 1;
                continue;
            }
            if !self.opts.no_trim {
                self.trim()?;
            }
            if self.opts.no_sweep || !self.sweep(pass)? {
                break;
            }
            pass += 1;
        }
        if !self.opts.no_trim {
            // Whatever trimming could not reach from rescued data is left to dividing and
            // scraping.
            self.relabel(BlockStatus::NonTrimmed, BlockStatus::NonScraped);
            self.divide()?;
        }
        if !self.opts.no_scrape {
            self.scrape()?;
        }
        let weak_budget = self.stats.read_errors / WEAK_RETRY_DIVISOR;
        self.retry()?;
        if !self.opts.no_weak_retry {
            self.weak_retry(weak_budget)?;
        }
        Ok(())
    }

    /// `--cpass`: ddrescue's copying passes as selected (1 = the skipping pass, 2 to 4 = passes
    /// that delimit skipped areas from the rescued side, 5 = a sweep without skipping), then
    /// trimming, scraping and retrying. salvor's extra phases (sweeps between trims, dividing)
    /// are not run.
    fn ddrescue_passes(&mut self, cpass: u8) -> Step {
        if cpass & 1 != 0 {
            let resume_pos = (self.map.phase == Phase::Copying
                && self.map.pass <= 1
                && self.map.current_pos > 0)
                .then_some(self.map.current_pos);
            self.skipping_pass(1, resume_pos)?;
        }
        for pass in 2..=4u32 {
            if cpass & (1 << (pass - 1)) != 0 {
                self.adjacency_pass(pass)?;
            }
        }
        if cpass & 0b10000 != 0 {
            self.sweep(5)?;
        }
        if !self.opts.no_trim {
            self.trim()?;
        }
        if !self.opts.no_scrape {
            self.scrape()?;
        }
        self.retry()?;
        Ok(())
    }

    // ----- phases -----

    /// Pass 1: large reads over all non-tried areas, skipping ahead after errors.
    fn skipping_pass(&mut self, pass: u32, resume_pos: Option<u64>) -> Step {
        let dir = self.pass_direction(pass);
        self.begin_pass(Phase::Copying, pass, dir)?;
        let segments = self.segments(BlockStatus::NonTried);
        let mut skip = self.skip_initial;
        let mut learned = self.skip_initial;
        // The current run of errors: where it started and how far its last failed read reached
        // (both measured in the pass direction), for learning how wide bad areas are.
        let mut run: Option<(u64, u64, u32)> = None;
        // Good bytes read since the last run of errors ended.
        let mut good_since_run: u64 = 0;
        // Skipping moves the next read to here (exclusive bound in the pass direction).
        let mut next: Option<u64> = None;
        // A failed read to split once the next read succeeds (see `split_failed_read`).
        let mut split: Option<(u64, u64)> = None;
        let ordered: Vec<Segment> = match dir {
            Direction::Forwards => segments,
            Direction::Backwards => segments.into_iter().rev().collect(),
        };
        for seg in ordered {
            let (mut lo, mut hi) = (seg.pos, seg.end);
            // Resuming inside pass 1: continue from where the last run was.
            if let Some(resume_pos) = resume_pos {
                match dir {
                    Direction::Forwards => lo = lo.max(resume_pos.min(hi)),
                    Direction::Backwards => hi = hi.min(resume_pos.max(lo)),
                }
            }
            if let Some(n) = next {
                match dir {
                    Direction::Forwards => lo = lo.max(n.min(hi)),
                    Direction::Backwards => hi = hi.min(n.max(lo)),
                }
            }
            let mut window = 0;
            while lo < hi {
                let step = self.copy_step();
                if step != window {
                    // Near errors the I/O thread does not read ahead: the read size follows each
                    // request's time (see `copy_step`), and a chunk read ahead at the old size
                    // would be read again.
                    if step >= self.cluster {
                        self.reader.sequential(lo, hi, dir, step);
                    }
                    window = step;
                }
                let (pos, len) = engine_chunk(lo, hi, dir, step);
                let read_started = self.clock.now();
                let r = self.read(pos, len)?;
                if !r.failed {
                    let read_time = self.clock.now().saturating_sub(read_started);
                    if let Some((at, end)) = split.take() {
                        // Good data within a read's size after it: the bad area was small, not
                        // the edge of a wide one (a dead head's stripe is skipped in many
                        // reads or by a learned skip), so the failed read is likely mostly
                        // readable.
                        let gap = match dir {
                            Direction::Forwards => pos.saturating_sub(end),
                            Direction::Backwards => at.saturating_sub(pos + len),
                        };
                        if gap <= self.cluster {
                            self.split_failed_read(at, end)?;
                            window = 0;
                        }
                    }
                    if let Some((start, last_fail, errors)) = run.take() {
                        // A run of one error was jumped over in one go: it says nothing new about
                        // the width of bad areas, except when that error was a small read near
                        // earlier errors (a lone weak or bad spot): then the learned width came from
                        // spots that happened to be close, and skipping it after every lone error
                        // leaves wide areas that the later passes read backwards, a seek per read
                        // (`weak-head`: 640 KiB skips, ≈ 3,000 seeks). Back to the initial skip.
                        // Otherwise the bad area ended somewhere between the
                        // last failed read and here: take the distance to here, but no more than
                        // twice what is known to be bad.
                        // With -K the skip follows ddrescue: back to the initial size after good
                        // data, nothing learned.
                        if errors > 1 && !self.opts.fixed_skip {
                            let (known, upper) = match dir {
                                Direction::Forwards => (last_fail - start, pos - start),
                                Direction::Backwards => (start - last_fail, start - (pos + len)),
                            };
                            let width = upper.min(known.saturating_mul(2));
                            learned = round_up(width, self.sector)
                                .clamp(self.skip_initial, self.skip_max);
                        } else if errors == 1 && start.abs_diff(last_fail) <= self.careful {
                            learned = self.skip_initial;
                        }
                    }
                    skip = learned;
                    good_since_run += len;
                    match dir {
                        Direction::Forwards => lo = pos + len,
                        Direction::Backwards => hi = pos,
                    }
                    if self.slow_read(len, read_time)? && skip > 0 {
                        // -a: skip ahead of a slow area like after an error; what is skipped
                        // stays non-tried for the later passes.
                        let jump = skip;
                        skip = skip.saturating_mul(2).min(self.skip_max);
                        let target;
                        (lo, hi, target) = skip_past(dir, pos, len, jump, self.sector, lo, hi);
                        next = Some(target);
                        window = 0;
                    }
                    continue;
                }
                self.mark_failed_read(pos, len, r.good);
                if run.is_none() {
                    // A failed full-size read that says nothing about where it failed: split
                    // if the bad area after it turns out short (see below).
                    split = (r.good == 0 && len > self.dense && len >= self.cluster)
                        .then_some((pos, pos + len));
                    // Bad areas that repeat closer together than the learned width are not the
                    // wide stripes of a dead head (a few unlucky probes among scattered bad
                    // sectors can look like one): start small again.
                    if good_since_run + r.good < learned {
                        learned = self.skip_initial;
                        skip = learned;
                    }
                    good_since_run = 0;
                }
                let (fail_start, fail_end) = match dir {
                    Direction::Forwards => (pos + r.good, pos + len),
                    Direction::Backwards => (pos + len, pos),
                };
                run = Some(match run {
                    None => (fail_start, fail_end, 1),
                    Some((start, _, n)) => (start, fail_end, n + 1),
                });
                let jump = skip;
                skip = skip.saturating_mul(2).min(self.skip_max);
                let target;
                (lo, hi, target) = skip_past(dir, pos, len, jump, self.sector, lo, hi);
                next = Some(target);
                window = 0;
            }
        }
        Ok(())
    }

    /// Passes that read non-tried areas entered from rescued data, alternating direction, until
    /// no such area is left. Returns the next pass number.
    fn adjacency_passes(&mut self, mut pass: u32) -> Step<u32> {
        let mut idle_passes = 0;
        while idle_passes < 2 {
            let dir = self.pass_direction(pass);
            let eligible: Vec<Segment> = self
                .segments(BlockStatus::NonTried)
                .into_iter()
                .filter(|s| match dir {
                    Direction::Forwards => s.open_left,
                    Direction::Backwards => s.open_right,
                })
                .collect();
            if eligible.is_empty() {
                idle_passes += 1;
                pass += 1;
                continue;
            }
            idle_passes = 0;
            self.begin_pass(Phase::Copying, pass, dir)?;
            let ordered: Vec<Segment> = match dir {
                Direction::Forwards => eligible,
                Direction::Backwards => eligible.into_iter().rev().collect(),
            };
            for seg in ordered {
                self.read_until_error(seg, dir)?;
            }
            pass += 1;
        }
        Ok(pass)
    }

    /// Small non-tried areas between two failed reads (the adjacency passes cannot enter them):
    /// each is read forwards until its first error, before trimming. Where errors are sparse
    /// (weak sectors) they hold readable data that trimming would reach only much later;
    /// larger ones are the skipped insides of bad stripes and are left to the sweep. Returns
    /// whether anything was rescued (then the adjacency passes go on from there).
    fn enclosed_pass(&mut self, pass: u32) -> Step<bool> {
        let max = ENCLOSED_MAX;
        let enclosed: Vec<Segment> = self
            .segments(BlockStatus::NonTried)
            .into_iter()
            .filter(|s| !s.open_left && !s.open_right && s.end - s.pos <= max)
            .collect();
        if enclosed.is_empty() {
            return Ok(false);
        }
        self.begin_pass(Phase::Copying, pass, Direction::Forwards)?;
        let before = self.stats.rescued_this_run;
        for seg in enclosed {
            self.read_until_error(seg, Direction::Forwards)?;
        }
        Ok(self.stats.rescued_this_run > before)
    }

    /// One of ddrescue's passes 2 to 4 (`--cpass`): non-tried areas entered from rescued data
    /// (or the domain's edge) in this pass's direction, each read until its first error.
    fn adjacency_pass(&mut self, pass: u32) -> Step {
        let dir = self.pass_direction(pass);
        let mut eligible: Vec<Segment> = self
            .segments(BlockStatus::NonTried)
            .into_iter()
            .filter(|s| match dir {
                Direction::Forwards => s.open_left,
                Direction::Backwards => s.open_right,
            })
            .collect();
        if eligible.is_empty() {
            return Ok(());
        }
        self.begin_pass(Phase::Copying, pass, dir)?;
        if dir == Direction::Backwards {
            eligible.reverse();
        }
        for seg in eligible {
            self.read_until_error(seg, dir)?;
        }
        Ok(())
    }

    /// Reads a segment in large reads from one side until the first error.
    fn read_until_error(&mut self, seg: Segment, dir: Direction) -> Step {
        let (mut lo, mut hi) = (seg.pos, seg.end);
        let mut window = 0;
        while lo < hi {
            let step = self.copy_step();
            if step != window {
                // Near errors, no reading ahead (see `skipping_pass`).
                if step >= self.cluster {
                    self.reader.sequential(lo, hi, dir, step);
                }
                window = step;
            }
            let (pos, len) = engine_chunk(lo, hi, dir, step);
            let r = self.read(pos, len)?;
            if r.failed {
                self.mark_failed_read(pos, len, r.good);
                return Ok(());
            }
            match dir {
                Direction::Forwards => lo = pos + len,
                Direction::Backwards => hi = pos,
            }
        }
        Ok(())
    }

    /// A failed full-size read of the skipping pass (the first error after a healthy stretch)
    /// that told nothing about where it failed (`O_DIRECT` delivers nothing), once the read
    /// after the initial skip past it succeeded (a small bad area, not the edge of a wide one):
    /// it is read again at once in [`DENSE_CHUNK`] pieces, because where damage is dense (bad
    /// clusters) most of it is readable and would otherwise wait for trimming. First its first
    /// sector: if that fails the error is at the read's start and the rest is left to trimming,
    /// which would have read that sector anyway. Then the pieces forward, until two in a row
    /// fail (solid damage). The last piece is not read when every other piece read: the read's
    /// error must be in it, so reading it would fail for nothing (trimming finds the bad sector
    /// there with one failure).
    fn split_failed_read(&mut self, pos: u64, end: u64) -> Step {
        // Only while the area is still untouched (reads since may have overlapped it).
        if self.map.totals_in(&[(pos, end)]).non_trimmed != end - pos {
            return Ok(());
        }
        let first = self.sector_end(pos, end) - pos;
        let r = self.read(pos, first)?;
        if r.failed {
            self.map.set(pos, first, BlockStatus::BadSector);
            return Ok(());
        }
        let mut at = pos + first;
        let (mut failed, mut in_a_row) = (0u32, 0u32);
        while at < end && in_a_row < 2 {
            let (_, n) = engine_chunk(at, end, Direction::Forwards, self.dense);
            if at + n == end && failed == 0 {
                break;
            }
            let r = self.read(at, n)?;
            if r.failed {
                self.mark_failed_read(at, n, r.good);
                failed += 1;
                in_a_row += 1;
            } else {
                in_a_row = 0;
            }
            at += n;
        }
        Ok(())
    }

    /// Trimming: from each edge that touches rescued data, read sector by sector up to the bad
    /// area; the inside becomes non-scraped. From the left edge (reading forwards, no seeks) a
    /// single failed sector does not end it: the next sector is tried too, so a bad spot of one
    /// sector is passed without going round to the right edge; two failures in a row end it.
    ///
    /// Where failures have been lone (weak or single bad sectors), every area costs about one
    /// failed read whatever its size, so the largest areas are trimmed first (most bytes per
    /// failure: a failed 1 MiB or 64 KiB read before the 32 KiB ones), and the rest of an area
    /// that fails a second time waits behind the others (see below).
    fn trim(&mut self) -> Step {
        let segments = self.segments(BlockStatus::NonTrimmed);
        if segments.is_empty() {
            return Ok(());
        }
        self.begin_pass(Phase::Trimming, 1, Direction::Forwards)?;
        let mut queue = TrimQueue::new(segments);
        while let Some(seg) = queue.pop(self.trim_lone > self.trim_solid) {
            let (mut lo, mut hi) = (seg.pos, seg.end);
            let mut left_hit = false;
            let mut deferred = false;
            if seg.open_left {
                let mut in_a_row = 0;
                // After a lone bad sector (a failure, then a good sector), the rest of the area
                // is tried once in one request: a lone bad or weak sector is usually alone, and
                // where requests are slow, sector reads cost more than that one request.
                let mut lone = false;
                let mut rest_tried = false;
                // Where the areas trimmed so far held lone failures (weak or single bad sectors)
                // rather than solid bad spots, the edge is read in growing requests and a request
                // that fails is left whole for scraping: reading it sector by sector now would
                // meet its failing sector a second time (2 s) for a few KiB; 99 % comes first.
                // Before anything is learned, so do drives with slow requests (a weak head):
                // sector reads there cost a slow request each. The requests are whole
                // [`TRIM_PIECE_SECTORS`] pieces, aligned, from the start: smaller ones cost a
                // request each for no fewer failures.
                let mut gallop = self.trim_lone > self.trim_solid
                    || (self.trim_lone + self.trim_solid == 0 && self.slow_seen);
                let start_run = if gallop { TRIM_PIECE_SECTORS } else { 1 };
                let mut run = start_run;
                // The last request that failed in several sectors (left for scraping).
                let mut piece: Option<(u64, u64)> = None;
                // An area put back after a failed piece: see [`Segment::head`].
                let mut head = seg.head;
                // What this edge showed: lone failures (a failed sector, then a good one; or no
                // failure at all, the read that failed before now reads) or a solid spot. A
                // failed request of several sectors followed by good data says nothing.
                let mut saw_lone = false;
                // The first failed sector of the current run, and whether a spot of two or more
                // failed sectors was hopped over (a solid spot, though small).
                let mut first_fail = lo;
                let mut solid_hopped = false;
                // A failure at the very start of the area says where a spot begins only if
                // rescued data lies before it; at a domain's start (sector 0 of a disk, say)
                // the damage may be anything, and no page hop is made from there.
                let data_before =
                    seg.pos > 0 && self.map.status_at(seg.pos - 1) == Some(BlockStatus::Finished);
                // Where areas have been solid spots, the left edge ends at its first failure
                // (the right edge finds the other end); every eighth area still tries the sector
                // after it, to notice if lone failures show up.
                let learn = self.trim_solid <= self.trim_lone
                    || (self.trim_solid + self.trim_lone) % 8 == 0;
                let stop_after = if learn { 2 } else { 1 };
                while lo < hi && in_a_row < stop_after {
                    if lone && !rest_tried && hi - lo > self.sector {
                        rest_tried = true;
                        let len = (hi - lo).min(self.careful);
                        let r = self.read(lo, len)?;
                        if r.failed {
                            // The failed piece right before this request, if any.
                            let next_to = piece.take().filter(|p| p.1 == lo);
                            if let Some((start, end)) = next_to {
                                if gallop && seg.head.is_none() {
                                    // Two failures in a row where failures have been lone: a
                                    // second weak sector, or a solid spot. The failed piece stays
                                    // for scraping and the rest goes back to the queue, behind
                                    // the areas that give more per failure; if it fails again at
                                    // once, it is solid after all (`head`).
                                    piece = Some((start, end));
                                    lo += r.good;
                                    deferred = true;
                                    break;
                                }
                                // A solid spot after all. The failed piece is trimmed sector by
                                // sector from its start (its readable head must not be left
                                // inside an area that scraping may take for dead).
                                gallop = false;
                                self.map.set(start, lo - start, BlockStatus::NonTrimmed);
                                lo = start;
                                continue;
                            }
                            lo += r.good;
                        } else {
                            // Still alone: the rest goes on in such requests.
                            rest_tried = false;
                            lo += len;
                        }
                        continue;
                    }
                    let len = if gallop {
                        let want = round_down(lo, run * self.sector) + run * self.sector;
                        want.min(hi) - lo
                    } else {
                        self.sector_end(lo, hi) - lo
                    };
                    let r = self.read(lo, len)?;
                    if r.failed {
                        left_hit = true;
                        if len <= self.sector {
                            self.map.set(lo, len, BlockStatus::BadSector);
                            if in_a_row == 0 {
                                first_fail = lo;
                            }
                            in_a_row += 1;
                            lo += len;
                            if !gallop
                                && in_a_row >= stop_after
                                && (first_fail > seg.pos || data_before)
                            {
                                match self.hop(first_fail, lo, hi)? {
                                    Some(next) => {
                                        // Past the spot: the rest goes on in large requests.
                                        solid_hopped |= in_a_row >= 2;
                                        lo = next;
                                        in_a_row = 0;
                                        lone = true;
                                        rest_tried = false;
                                        piece = None;
                                    }
                                    None => break,
                                }
                            }
                        } else if let Some(h) = head.take().filter(|_| lo == seg.pos) {
                            // Put back after a failed piece, and the first request fails too:
                            // solid after all; sector by sector from the piece's start.
                            gallop = false;
                            self.map.set(h, lo - h, BlockStatus::NonTrimmed);
                            lo = h;
                            continue;
                        } else {
                            // Left for scraping; the rest is tried in one request next.
                            let at = lo + r.good;
                            self.map.set(at, lo + len - at, BlockStatus::NonScraped);
                            piece = Some((at, lo + len));
                            lo += len;
                            lone = true;
                            rest_tried = false;
                        }
                        run = start_run;
                    } else {
                        piece = None;
                        lone = in_a_row == 1;
                        saw_lone |= lone;
                        in_a_row = 0;
                        lo += len;
                        if gallop {
                            run = (run * 2).min(TRIM_PIECE_SECTORS);
                        }
                    }
                }
                if deferred {
                    queue.push(Segment {
                        pos: lo,
                        end: hi,
                        open_left: true,
                        open_right: seg.open_right,
                        head: piece.map(|p| p.0),
                    });
                    continue;
                }
                if in_a_row >= 2 || solid_hopped {
                    self.trim_solid += 1;
                } else if saw_lone || (learn && !left_hit) {
                    self.trim_lone += 1;
                }
            }
            if seg.open_right || (seg.open_left && !left_hit) {
                // Reading backwards, every request is a seek: on a long stretch go back a block
                // at a time while blocks read, then sector by sector inside the block that failed.
                let block = TRIM_BLOCK_SECTORS * self.sector;
                while hi - lo > block {
                    let pos = round_down(hi - block, self.sector);
                    let r = self.read(pos, hi - pos)?;
                    if r.failed {
                        break;
                    }
                    hi = pos;
                }
                while lo < hi {
                    let pos = self.sector_start(lo, hi);
                    let len = hi - pos;
                    let r = self.read(pos, len)?;
                    if r.failed {
                        self.map.set(pos, len, BlockStatus::BadSector);
                        hi = pos;
                        break;
                    }
                    hi = pos;
                }
            }
            if lo < hi {
                self.map.set(lo, hi - lo, BlockStatus::NonScraped);
            }
        }
        Ok(())
    }

    /// Trimming's hop over the page that starts at the failed sector `fail` (the left edge is at
    /// `lo`, the area ends at `hi`): one request past the page. Returns where the left edge goes
    /// on (the page is left non-scraped), or None when no hop was made or it failed (the right
    /// edge then finds the end of the spot).
    fn hop(&mut self, fail: u64, lo: u64, hi: u64) -> Step<Option<u64>> {
        let to = round_up(fail + TRIM_HOP, self.sector);
        if to >= hi {
            return Ok(None);
        }
        if self.hop_bad > self.hop_good {
            self.hop_declined += 1;
            if self.hop_declined % 8 != 0 {
                return Ok(None);
            }
        }
        let len = (hi - to).min(self.careful);
        let r = self.read(to, len)?;
        if r.failed {
            // The spot is longer than a page. A good prefix (buffered reads) is written; the
            // right edge reads back over it and the rest.
            self.hop_bad += 1;
            return Ok(None);
        }
        self.hop_good += 1;
        if to > lo {
            self.map.set(lo, to - lo, BlockStatus::NonScraped);
        }
        Ok(Some(to + len))
    }

    /// Sweeping: reads what is still non-tried in full. Returns whether it rescued anything (then
    /// the caller grows those islands with more passes).
    fn sweep(&mut self, pass: u32) -> Step<bool> {
        let segments = self.segments(BlockStatus::NonTried);
        if segments.is_empty() {
            return Ok(false);
        }
        let dir = self.pass_direction(pass);
        self.begin_pass(Phase::Copying, pass, dir)?;
        let before = self.stats.rescued_this_run;
        let ordered: Vec<Segment> = match dir {
            Direction::Forwards => segments,
            Direction::Backwards => segments.into_iter().rev().collect(),
        };
        for seg in ordered {
            let mut pos = seg.pos;
            self.reader
                .sequential(pos, seg.end, Direction::Forwards, self.cluster);
            while pos < seg.end {
                let (_, len) = engine_chunk(pos, seg.end, Direction::Forwards, self.cluster);
                let r = self.read(pos, len)?;
                if r.failed {
                    self.mark_failed_read(pos, len, r.good);
                    // Reading ahead stops at a failure; the sweep goes on after it.
                    self.reader
                        .sequential(pos + len, seg.end, Direction::Forwards, self.cluster);
                }
                pos += len;
            }
        }
        Ok(self.stats.rescued_this_run > before)
    }

    /// Dividing: the insides of failed areas are read in chunks of 1/16 of a cluster, so that good
    /// data between bad spots (dense damage) costs one error per bad chunk instead of one per bad
    /// sector. An area whose reads keep failing is left to scraping.
    fn divide(&mut self) -> Step {
        const GIVE_UP_AFTER: u32 = 8;
        let size = round_up((self.cluster / 16).max(self.sector), self.sector);
        let segments: Vec<Segment> = self
            .segments(BlockStatus::NonScraped)
            .into_iter()
            .filter(|s| s.end - s.pos > size)
            .collect();
        if segments.is_empty() {
            return Ok(());
        }
        self.begin_pass(Phase::Trimming, 2, Direction::Forwards)?;
        for seg in segments {
            let mut pos = seg.pos;
            let mut failures = 0;
            while pos < seg.end && failures < GIVE_UP_AFTER {
                let (_, len) = engine_chunk(pos, seg.end, Direction::Forwards, size);
                let r = self.read(pos, len)?;
                failures = if r.failed { failures + 1 } else { 0 };
                pos += len;
            }
        }
        Ok(())
    }

    /// Scraping: every non-scraped sector is read once more, smallest areas first. An area of more
    /// than [`PROBE_MIN_SECTORS`] sectors is probed first at [`PROBES`] sectors spread over it; if
    /// every probe fails (a dead head's stripe, a dead zone) the area is left non-scraped and the
    /// run says so: scraping it would cost one failed read per sector (weeks on a real drive) for
    /// nothing. `--scrape-dead-areas` scrapes them too.
    fn scrape(&mut self) -> Step {
        let mut segments = self.segments(BlockStatus::NonScraped);
        if segments.is_empty() {
            return Ok(());
        }
        self.begin_pass(Phase::Scraping, 1, Direction::Forwards)?;
        segments.sort_by_key(|s| (s.end - s.pos, s.pos));
        let (mut dead_areas, mut dead_bytes) = (0u64, 0u64);
        let mut live = Vec::new();
        for seg in segments {
            let sectors = (seg.end - seg.pos).div_ceil(self.sector);
            if !self.opts.scrape_dead_areas && sectors > PROBE_MIN_SECTORS {
                let mut any_good = false;
                for i in 0..PROBES {
                    let at = seg.pos
                        + round_down(
                            (seg.end - seg.pos) * (2 * i + 1) / (2 * PROBES),
                            self.sector,
                        );
                    let len = self.sector.min(seg.end - at);
                    let r = self.read(at, len)?;
                    if r.failed {
                        self.map.set(at, len, BlockStatus::BadSector);
                    } else {
                        any_good = true;
                    }
                }
                if !any_good {
                    dead_areas += 1;
                    dead_bytes += self.map.totals_in(&[(seg.pos, seg.end)]).non_scraped;
                    continue;
                }
            }
            live.push(seg);
        }
        // First a skimming pass: after a failed sector the next few are skipped, twice as many
        // after each failure in a row, so that a bad run costs a few failed reads instead of one
        // per sector and the readable sectors between bad runs come in first. Then every sector
        // still non-scraped is read: each sector is read once either way, only the order changes.
        for skim in [true, false] {
            for seg in &live {
                let mut pos = seg.pos;
                let mut gap = 0u64;
                while pos < seg.end {
                    let len = self.sector_end(pos, seg.end) - pos;
                    if self.map.status_at(pos) == Some(BlockStatus::NonScraped) {
                        let r = self.read(pos, len)?;
                        if r.failed {
                            self.map.set(pos, len, BlockStatus::BadSector);
                            if skim {
                                gap = (gap * 2).clamp(1, PROBE_MIN_SECTORS);
                                pos = (pos + len).saturating_add(gap * self.sector);
                                continue;
                            }
                        } else {
                            gap = 0;
                        }
                    }
                    pos += len;
                }
            }
        }
        if dead_areas > 0 {
            self.observer.event(&RescueEvent::Message {
                message: format!(
                    "Not scraped: {dead_areas} area(s), {} left non-scraped, where all {PROBES} \
                     probes failed (a dead head or zone); --scrape-dead-areas reads them sector \
                     by sector",
                    crate::units::format_bytes(dead_bytes)
                ),
            });
        }
        Ok(())
    }

    /// Retry passes over bad sectors, alternating direction.
    fn retry(&mut self) -> Step {
        let mut pass: u32 = 1;
        loop {
            if self.opts.retry_passes >= 0 && i64::from(pass) > i64::from(self.opts.retry_passes) {
                return Ok(());
            }
            let segments = self.segments(BlockStatus::BadSector);
            if segments.is_empty() {
                return Ok(());
            }
            let dir = self.pass_direction(pass);
            self.begin_pass(Phase::Retrying, pass, dir)?;
            let ordered: Vec<Segment> = match dir {
                Direction::Forwards => segments,
                Direction::Backwards => segments.into_iter().rev().collect(),
            };
            for seg in ordered {
                let sectors: Vec<u64> = {
                    let mut v = Vec::new();
                    let mut p = seg.pos;
                    while p < seg.end {
                        v.push(p);
                        p = self.sector_end(p, seg.end);
                    }
                    if dir == Direction::Backwards {
                        v.reverse();
                    }
                    v
                };
                for p in sectors {
                    let len = self.sector_end(p, seg.end) - p;
                    self.read(p, len)?;
                }
            }
            pass += 1;
        }
    }

    /// One more read for up to `budget` bad sectors, those of the shortest bad areas first, until
    /// [`WEAK_PROBES`] reads in a row failed at the start: see [`WEAK_RETRY_DIVISOR`].
    fn weak_retry(&mut self, budget: u64) -> Step {
        let mut segments = self.segments(BlockStatus::BadSector);
        if budget == 0 || segments.is_empty() {
            return Ok(());
        }
        segments.sort_by_key(|s| (s.end - s.pos, s.pos));
        let pass = u32::try_from(self.opts.retry_passes.max(0))
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        self.begin_pass(Phase::Retrying, pass, Direction::Forwards)?;
        let (mut tried, mut rescued) = (0u64, 0u64);
        'areas: for seg in segments {
            let mut p = seg.pos;
            while p < seg.end {
                if tried == budget || (tried == WEAK_PROBES && rescued == 0) {
                    break 'areas;
                }
                let len = self.sector_end(p, seg.end) - p;
                tried += 1;
                if !self.read(p, len)?.failed {
                    rescued += 1;
                }
                p += len;
            }
        }
        self.observer.event(&RescueEvent::Message {
            message: format!(
                "Weak sectors: {tried} bad sector(s) of the shortest bad areas read once more, \
                 {rescued} rescued (--no-weak-retry leaves them)"
            ),
        });
        Ok(())
    }

    // ----- helpers -----

    /// The read size of the copying passes: the full cluster on healthy stretches; after a read
    /// error, small reads for the next [`CAREFUL_SPAN`] bytes. A failed `O_DIRECT` read delivers
    /// nothing, so every failed read costs its whole size until trimming: with small reads near
    /// errors, one failure loses little and the readable data comes in with about one failed read
    /// per bad spot. Once two errors came close together (dense damage such as bad clusters) the
    /// reads are [`DENSE_CHUNK`]s aligned to it, until [`DENSE_KEEP`] good bytes in a row. Near
    /// sparse errors where the last request was slow, the reads are [`SLOW_CHUNK`]s. On a healthy
    /// drive nothing changes.
    fn copy_step(&self) -> u64 {
        let careful = self.stats.read_errors > 0 && self.good_since_error < CAREFUL_SPAN;
        if careful
            && self.last_slow
            && !self.dense_damage
            && !self.prefix_seen
            && self.careful < self.cluster
        {
            return self.slow.min(self.careful);
        }
        if self.dense_damage {
            self.dense
        } else if self.stats.read_errors > 0 && self.good_since_error < CAREFUL_SPAN {
            self.careful
        } else {
            self.cluster
        }
    }

    /// Where the sector holding `pos` ends, at most `hi`: sector-by-sector reads keep to whole
    /// sectors of the source even inside areas that start or end off a sector boundary (the
    /// tail of an odd-sized source, fragments from a hand-edited mapfile).
    fn sector_end(&self, pos: u64, hi: u64) -> u64 {
        (round_down(pos, self.sector) + self.sector).min(hi)
    }

    /// Where the sector holding byte `hi - 1` starts, at least `lo`.
    fn sector_start(&self, lo: u64, hi: u64) -> u64 {
        round_down(hi - 1, self.sector).max(lo)
    }

    fn pass_direction(&self, pass: u32) -> Direction {
        if (pass % 2 == 1 || self.opts.unidirectional) != self.opts.reverse {
            Direction::Forwards
        } else {
            Direction::Backwards
        }
    }

    fn begin_pass(&mut self, phase: Phase, pass: u32, dir: Direction) -> Step {
        if !self.opts.pause_on_pass.is_zero() && self.stats.reads > 0 {
            std::thread::sleep(self.opts.pause_on_pass);
        }
        self.map.phase = phase;
        self.map.pass = pass;
        self.direction = dir;
        self.observer.event(&RescueEvent::PassStarted {
            phase,
            pass,
            direction: dir,
        });
        self.emit_progress(true);
        Ok(())
    }

    fn relabel(&mut self, from: BlockStatus, to: BlockStatus) {
        for seg in self.segments(from) {
            self.map.set(seg.pos, seg.end - seg.pos, to);
        }
    }

    /// Marks a failed read: the good prefix is already finished; the first failing sector is
    /// non-scraped when the read told us where it failed, the rest non-trimmed.
    fn mark_failed_read(&mut self, pos: u64, len: u64, good: u64) {
        let fail_at = pos + good;
        let end = pos + len;
        if good > 0 {
            let s = self.sector.min(end - fail_at);
            self.map.set(fail_at, s, BlockStatus::NonScraped);
            if fail_at + s < end {
                self.map
                    .set(fail_at + s, end - fail_at - s, BlockStatus::NonTrimmed);
            }
        } else if len <= self.sector {
            // A failed read of a single sector is that sector's own read: it is bad (as in
            // ddrescue), not left for scraping.
            self.map.set(pos, len, BlockStatus::BadSector);
        } else {
            self.map.set(pos, len, BlockStatus::NonTrimmed);
        }
    }

    /// Blocks of `status` clipped to the domain, with whether each side touches rescued data.
    fn segments(&self, status: BlockStatus) -> Vec<Segment> {
        let mut out = Vec::new();
        let blocks = self.map.blocks();
        for &(dpos, dend) in &self.domain {
            let Some(mut i) = self.map.index_of(dpos) else {
                continue;
            };
            while i < blocks.len() && blocks[i].pos < dend {
                let b = blocks[i];
                if b.status == status {
                    let pos = b.pos.max(dpos);
                    let end = b.end().min(dend);
                    let open_left =
                        pos == dpos || (i > 0 && blocks[i - 1].status == BlockStatus::Finished);
                    let open_right = end == dend
                        || (i + 1 < blocks.len() && blocks[i + 1].status == BlockStatus::Finished);
                    out.push(Segment {
                        pos,
                        end,
                        open_left,
                        open_right,
                        head: None,
                    });
                }
                i += 1;
            }
        }
        out
    }

    fn domain_totals(&self) -> crate::mapfile::Totals {
        self.map.totals_in(&self.domain)
    }

    /// One read of `[pos, pos+len)`: honours stop/pause/timeout, waits for a vanished device,
    /// writes the good part to the destination and marks it finished. A failed read that the
    /// source blamed on the medium is returned with `failed`; the caller marks it.
    fn read(&mut self, pos: u64, len: u64) -> Step<ReadResult> {
        self.checkpoint()?;
        self.map.current_pos = match self.direction {
            Direction::Forwards => pos,
            Direction::Backwards => pos + len,
        };
        let t0 = self.clock.now();
        // Reads of a sector or so are made near errors (trimming, scraping, probes, retries): on a
        // buffered source they bypass the page cache where the device allows it, so that a
        // sector next to a bad one is not lost with its page.
        let direct = len <= self.sector;
        let Some(mut chunk) = self.reader.read(pos, len, direct) else {
            return Err(Halt::Fail(Error::Internal(
                "the device I/O thread ended".into(),
            )));
        };
        self.stats.reads += 1;
        let raw_good = (chunk.good as u64).min(len);
        let outcome_fault = chunk.fault.take();
        self.observer
            .read_done(pos, len, raw_good, outcome_fault.is_some());
        self.chunk = Some(chunk);
        // With a fault, only whole sectors before it count as read.
        let (good, fault) = match outcome_fault {
            None => (raw_good, None),
            Some(f) => (round_down(raw_good, self.sector), Some(f)),
        };
        self.throttle(len);
        if good > 0 {
            let written = self.write_good(pos, good);
            self.last_good = self.clock.now();
            written?;
        }
        if let Some(c) = self.chunk.take() {
            self.reader.recycle(c.buf);
        }
        match fault {
            None if good < len => Err(Halt::Fail(Error::Internal(format!(
                // A short read without an error: the source is smaller than it said.
                "{} ended at 0x{:X}, inside its reported size",
                self.reader.describe.clone(),
                pos + good
            )))),
            None => {
                if len <= self.dense.max(DENSE_CHUNK) {
                    let took = self.clock.now().saturating_sub(t0);
                    self.slow_streak = if took > SLOW_REQUEST {
                        self.slow_streak.saturating_add(1)
                    } else {
                        0
                    };
                    self.last_slow = self.slow_streak >= SLOW_EVIDENCE;
                    self.slow_seen |= self.last_slow;
                }
                self.good_since_error = self.good_since_error.saturating_add(good);
                if self.good_since_error >= DENSE_KEEP {
                    self.dense_damage = false;
                }
                self.after_read();
                Ok(ReadResult {
                    good,
                    failed: false,
                })
            }
            Some(ReadFault::Media(e)) => {
                self.prefix_seen |= good > 0;
                self.error_gap = self.good_since_error.saturating_add(good);
                if self.stats.read_errors > 0 && self.error_gap < DENSE_SPAN {
                    self.dense_damage = true;
                }
                self.good_since_error = 0;
                self.stats.read_errors += 1;
                self.error_time += self.clock.now().saturating_sub(t0);
                self.after_error(len - good)?;
                self.observer.event(&RescueEvent::ReadError {
                    pos: pos + good,
                    size: len - good,
                    message: e.to_string(),
                });
                self.after_read();
                Ok(ReadResult { good, failed: true })
            }
            Some(ReadFault::Gone(e)) => {
                self.device_gone(pos + good, &e)?;
                // The device is back: read what is left of this request.
                let rest = self.read(pos + good, len - good)?;
                Ok(ReadResult {
                    good: good + rest.good,
                    failed: rest.failed,
                })
            }
            Some(ReadFault::Other(e)) => Err(Halt::Fail(Error::io(
                self.reader.describe.clone(),
                std::io::Error::new(
                    e.kind(),
                    format!("reading 0x{:X} (+{} bytes): {e}", pos + good, len - good),
                ),
            ))),
        }
    }

    /// `-a`: whether a good read of `len` bytes that took `took` was slower than the minimum
    /// read rate (0: a tenth of the average rate), counted after `--delay-slow`; more than
    /// `--max-slow-reads` slow reads end the run. A slow read is followed by what follows an
    /// error (`--pause-on-error`, `-O`).
    fn slow_read(&mut self, len: u64, took: Duration) -> Step<bool> {
        let Some(min) = self.opts.min_read_rate else {
            return Ok(false);
        };
        let now = self.clock.now();
        let elapsed = now.saturating_sub(self.start);
        if elapsed < self.opts.delay_slow || took.is_zero() {
            return Ok(false);
        }
        let min = if min == 0 {
            self.stats.rescued_this_run as f64 / elapsed.as_secs_f64().max(1e-9) / 10.0
        } else {
            min as f64
        };
        let rate = len as f64 / took.as_secs_f64();
        if rate >= min {
            if self.opts.reset_slow {
                self.slow_reads = 0;
            }
            return Ok(false);
        }
        self.slow_reads += 1;
        if let Some(max) = self.opts.max_slow_reads {
            if self.slow_reads > max {
                return Err(Halt::Fail(Error::LimitReached(format!(
                    "{} slow reads, more than --max-slow-reads {max}",
                    self.slow_reads
                ))));
            }
        }
        if let Some((pause, simulated)) = self.opts.pause_on_error {
            if !simulated && !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        if self.opts.reopen_on_error {
            let _ = self.reader.reopen();
        }
        Ok(true)
    }

    /// ddrescue's options that act after every read error: `-E`, `--pause-on-error`, `-O`, `-J`.
    fn after_error(&mut self, failed: u64) -> Step {
        if let Some(max) = self.opts.max_error_rate {
            let now = self.clock.now();
            if now.saturating_sub(self.error_rate.1) >= Duration::from_secs(1) {
                self.error_rate = (0, now);
            }
            self.error_rate.0 += failed;
            if self.error_rate.0 > max {
                return Err(Halt::Fail(Error::LimitReached(format!(
                    "{} bytes of failed reads in a second, more than --max-error-rate {max}",
                    self.error_rate.0
                ))));
            }
        }
        if let Some((pause, simulated)) = self.opts.pause_on_error {
            if !simulated && !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        if self.opts.reopen_on_error {
            // A source that cannot be reopened shows up on the next read.
            let _ = self.reader.reopen();
        }
        if self.opts.verify_on_error {
            let Some((pos, data)) = self.last_good_sector.clone() else {
                return Err(Halt::Fail(Error::LimitReached(
                    "--verify-on-error: a read error happened before any good sector was read"
                        .into(),
                )));
            };
            let len = data.len() as u64;
            let Some(mut chunk) = self.reader.read(pos, len, false) else {
                return Err(Halt::Fail(Error::Internal(
                    "the device I/O thread ended".into(),
                )));
            };
            let same = chunk.fault.take().is_none()
                && chunk.good as u64 >= len
                && chunk.buf.as_slice()[..data.len()] == data[..];
            self.reader.recycle(chunk.buf);
            if !same {
                return Err(Halt::Fail(Error::corrupt(
                    self.reader.describe.clone(),
                    format!("offset 0x{pos:X}"),
                    "--verify-on-error: the latest good sector no longer reads the same; the \
                     drive may be returning garbage",
                )));
            }
        }
        Ok(())
    }

    /// Sleeps as long as reading is ahead of `--max-read-rate`.
    fn throttle(&mut self, bytes: u64) {
        let Some(rate) = self.opts.max_read_rate.filter(|&r| r > 0) else {
            return;
        };
        self.throttle.0 += bytes;
        let due = Duration::from_secs_f64(self.throttle.0 as f64 / rate as f64);
        let spent = self.throttle.1.elapsed();
        if due > spent {
            std::thread::sleep(due - spent);
        }
    }

    fn write_good(&mut self, pos: u64, len: u64) -> Step {
        let Some(chunk) = &self.chunk else {
            return Err(Halt::Fail(Error::Internal("no data to write".into())));
        };
        let data = &chunk.buf.as_slice()[..len as usize];
        let dpos = i128::from(pos) + self.shift;
        let dpos = u64::try_from(dpos).map_err(|_| {
            Halt::Fail(Error::invalid_arg(
                "--output-position",
                "the output position would be negative",
            ))
        })?;
        let mut skip_write = self.opts.sparse && crate::device::is_zero(data);
        if !skip_write && self.opts.compare_before_write {
            let mut old = vec![0u8; data.len()];
            let n = self.dest.read_back(dpos, &mut old)?;
            skip_write = n == data.len() && old == data;
        }
        if self.dest_was_new && self.opts.extend_new_dest {
            // A new regular-file destination gets its full size at the first write, so skipped
            // and bad areas are holes that read as zeros and the file has the source's size
            // even if the run stops early.
            self.dest_was_new = false;
            if let Some(&(_, end)) = self.domain.last() {
                let len = (i128::from(end) + self.shift).max(0) as u64;
                self.dest.extend_to(len)?;
            }
        }
        if !skip_write {
            self.dest.write_at(dpos, data)?;
            if self.opts.synchronous {
                self.dest.sync()?;
            }
        }
        if self.opts.verify_on_error && len >= self.sector {
            let last = round_down(len, self.sector) - self.sector;
            self.last_good_sector = Some((
                pos + last,
                data[last as usize..(last + self.sector) as usize].to_vec(),
            ));
        }
        let before = self.map.status_at(pos);
        self.map.set(pos, len, BlockStatus::Finished);
        if before != Some(BlockStatus::Finished) {
            self.stats.rescued_this_run += len;
        }
        Ok(())
    }

    fn after_read(&mut self) {
        let now = self.clock.now();
        self.rate_window
            .push_back((now, self.stats.rescued_this_run));
        while self.rate_window.len() > 2
            && now.saturating_sub(self.rate_window[0].0) > Duration::from_secs(10)
        {
            self.rate_window.pop_front();
        }
        while self.rate_window.len() > 4096 {
            self.rate_window.pop_front();
        }
        self.emit_progress(false);
    }

    /// Between reads: stop, pause, timeout and periodic saves.
    fn checkpoint(&mut self) -> Step {
        if let Some(reason) = self.control.stop_requested() {
            return Err(Halt::Stop(reason));
        }
        if self.control.is_paused() {
            self.save("Paused")?;
            while self.control.is_paused() {
                if let Some(reason) = self.control.stop_requested() {
                    return Err(Halt::Stop(reason));
                }
                std::thread::sleep(Duration::from_millis(100));
                self.emit_progress(false);
            }
        }
        if let Some(max) = self.opts.max_read_errors {
            if self.stats.read_errors > max {
                return Err(Halt::Fail(Error::LimitReached(format!(
                    "{} read errors, more than --max-read-errors {max}",
                    self.stats.read_errors
                ))));
            }
        }
        if let Some((max, new)) = self.opts.max_bad_areas {
            let areas = self.domain_totals().bad_areas;
            let counted = if new {
                areas.saturating_sub(self.initial_bad_areas)
            } else {
                areas
            };
            if counted > max {
                return Err(Halt::Fail(Error::LimitReached(format!(
                    "{counted} {}bad areas, more than --max-bad-areas {}{max}",
                    if new { "new " } else { "" },
                    if new { "+" } else { "" }
                ))));
            }
        }
        if let Some(t) = self.opts.timeout {
            let since = self.clock.now().saturating_sub(self.last_good);
            // Whole seconds, as ddrescue: -T 0 gives up only after a second without a good read.
            if since.as_secs() > t.as_secs() {
                return Err(Halt::Fail(Error::LimitReached(format!(
                    "no successful read for {} (--timeout {})",
                    crate::units::format_duration(since),
                    crate::units::format_duration(t)
                ))));
            }
        }
        if self.last_save.elapsed() >= self.opts.save_interval {
            let msg = self.status_message();
            self.save(&msg)?;
        }
        Ok(())
    }

    fn status_message(&self) -> String {
        let dir = match self.direction {
            Direction::Forwards => "forwards",
            Direction::Backwards => "backwards",
        };
        format!(
            "{}... Pass {} ({dir})",
            self.map.phase.describe(),
            self.map.pass
        )
    }

    /// Makes the destination durable, then saves the map.
    fn save(&mut self, message: &str) -> Result<()> {
        self.dest.sync()?;
        self.store.store(self.map, message)?;
        self.last_save = Instant::now();
        self.observer.event(&RescueEvent::MapfileSaved);
        Ok(())
    }

    /// The source vanished: save, then wait for it to come back (identified by its identity, not
    /// its name) or give up with a retryable error so that a re-run resumes.
    fn device_gone(&mut self, pos: u64, err: &std::io::Error) -> Step {
        let message = format!(
            "{} disappeared at 0x{pos:X} ({err}); the mapfile is saved",
            self.reader.describe.clone()
        );
        self.observer.event(&RescueEvent::DeviceGone {
            message: message.clone(),
        });
        self.save("Source device gone")?;
        let deadline = Instant::now() + self.opts.wait_for_device;
        self.waiting = !self.opts.wait_for_device.is_zero();
        loop {
            if self.opts.wait_for_device.is_zero() {
                break;
            }
            if let Ok(true) = self.reader.reopen() {
                self.waiting = false;
                self.observer.event(&RescueEvent::DeviceBack);
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            if let Some(reason) = self.control.stop_requested() {
                self.waiting = false;
                return Err(Halt::Stop(reason));
            }
            self.emit_progress(false);
            std::thread::sleep(Duration::from_millis(500));
        }
        self.waiting = false;
        Err(Halt::Fail(Error::DeviceGone {
            path: self.reader.describe.clone().into(),
            reason: format!(
                "{message}. Nothing was marked bad; run the same command again to resume when the \
                 disk is back"
            ),
        }))
    }

    fn emit_progress(&mut self, force: bool) {
        if !force && self.last_progress.elapsed() < self.opts.progress_interval {
            return;
        }
        self.last_progress = Instant::now();
        let snap = self.snapshot();
        self.observer.progress(&snap);
    }

    fn snapshot(&self) -> RescueSnapshot {
        let now = self.clock.now();
        let totals = self.domain_totals();
        let elapsed = now.saturating_sub(self.start);
        let average_rate = if elapsed.as_secs_f64() > 0.0 {
            self.stats.rescued_this_run as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        let current_rate = match (self.rate_window.front(), self.rate_window.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
            _ => average_rate,
        };
        RescueSnapshot {
            phase: self.map.phase,
            pass: self.map.pass,
            direction: self.direction,
            pos: self.map.current_pos,
            totals,
            domain_size: self.domain_size,
            reads: self.stats.reads,
            read_errors: self.stats.read_errors,
            elapsed,
            since_last_good_read: now.saturating_sub(self.last_good),
            current_rate,
            average_rate,
            remaining: self.remaining(&totals, current_rate, average_rate),
            waiting_for_device: self.waiting,
        }
    }

    /// An honest range: the low end assumes the rest reads at the better of the current and average
    /// rates with no new errors; the high end assumes the worse rate and that every sector still
    /// waiting for trimming or scraping fails at the average cost of the failures seen so far.
    fn remaining(
        &self,
        t: &crate::mapfile::Totals,
        current: f64,
        average: f64,
    ) -> Option<(Duration, Duration)> {
        if t.pending() == 0 {
            return Some((Duration::ZERO, Duration::ZERO));
        }
        let best = current.max(average);
        let worst = current.min(average);
        if best <= 0.0 {
            return None;
        }
        let low = t.non_tried as f64 / best;
        let per_error = if self.stats.read_errors > 0 {
            self.error_time.as_secs_f64() / self.stats.read_errors as f64
        } else {
            0.0
        };
        let bad_sectors = (t.non_trimmed + t.non_scraped).div_ceil(self.sector) as f64;
        let high = if worst > 0.0 {
            t.non_tried as f64 / worst + bad_sectors * per_error
        } else {
            return Some((Duration::from_secs_f64(low), Duration::MAX));
        };
        Some((
            Duration::from_secs_f64(low.min(1e12)),
            Duration::from_secs_f64(high.clamp(low, 1e12)),
        ))
    }
}

/// Where a pass goes on after skipping `jump` bytes beyond the read `[pos, pos + len)`: the new
/// bounds of the segment still to walk, and the next position.
fn skip_past(
    dir: Direction,
    pos: u64,
    len: u64,
    jump: u64,
    sector: u64,
    lo: u64,
    hi: u64,
) -> (u64, u64, u64) {
    match dir {
        Direction::Forwards => {
            let target = round_up(pos + len + jump, sector);
            (target.min(hi), hi, target)
        }
        Direction::Backwards => {
            let target = round_down(pos.saturating_sub(jump), sector);
            (lo, target.max(lo), target)
        }
    }
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to).saturating_mul(to)
}

fn round_down(x: u64, to: u64) -> u64 {
    x - x % to
}

/// Intersection of two sorted lists of disjoint ranges.
pub(super) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo < hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Geometry, ReadOutcome, SimClock};
    use crate::progress::NoProgress;

    /// A source whose bad byte ranges fail with partial reads; it records how many errors had
    /// happened when the last readable byte was delivered.
    struct Striped {
        size: u64,
        bad: Vec<(u64, u64)>,
        readable: u64,
        delivered: u64,
        reads: u64,
        errors: u64,
        errors_when_all_read: Option<u64>,
    }

    impl Striped {
        fn new(size: u64, bad: Vec<(u64, u64)>) -> Striped {
            let bad_bytes: u64 = bad.iter().map(|(a, b)| b - a).sum();
            Striped {
                size,
                bad,
                readable: size - bad_bytes,
                delivered: 0,
                reads: 0,
                errors: 0,
                errors_when_all_read: None,
            }
        }
    }

    impl Source for Striped {
        fn geometry(&self) -> Geometry {
            Geometry {
                size: self.size,
                logical_sector: 512,
                physical_sector: 512,
            }
        }
        fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
            self.reads += 1;
            let end = pos + buf.len() as u64;
            let first_bad = self
                .bad
                .iter()
                .filter(|(a, b)| *a < end && *b > pos)
                .map(|(a, _)| (*a).max(pos))
                .min();
            let good = first_bad.map_or(buf.len() as u64, |b| b - pos);
            buf[..good as usize].fill(0xAB);
            self.delivered += good;
            if first_bad.is_some() {
                self.errors += 1;
            }
            if self.delivered >= self.readable && self.errors_when_all_read.is_none() {
                self.errors_when_all_read = Some(self.errors);
            }
            ReadOutcome {
                good: good as usize,
                fault: first_bad
                    .map(|_| ReadFault::Media(std::io::Error::from_raw_os_error(libc::EIO))),
            }
        }
        fn describe(&self) -> String {
            "striped".into()
        }
    }

    struct NullDest;
    impl Dest for NullDest {
        fn write_at(&mut self, _pos: u64, _buf: &[u8]) -> Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            Ok(())
        }
        fn size(&self) -> Result<u64> {
            Ok(1)
        }
        fn extend_to(&mut self, _len: u64) -> Result<()> {
            Ok(())
        }
        fn path(&self) -> &std::path::Path {
            std::path::Path::new("/dev/null")
        }
    }

    fn run(src: &mut Striped, opts: &RescueOptions) -> Mapfile {
        let mut map = Mapfile::new(src.size);
        let clock = SimClock::new();
        let control = Control::new();
        rescue(
            src,
            &mut NullDest,
            &mut map,
            &mut NoStore,
            opts,
            &clock,
            &control,
            &mut NoProgress,
        )
        .expect("rescue runs");
        map
    }

    #[test]
    fn dead_head_stripes_cost_few_errors() {
        const MIB: u64 = 1 << 20;
        let size = 4096 * MIB;
        let bad: Vec<(u64, u64)> = (0..16)
            .map(|i| (i * 256 * MIB + 192 * MIB, i * 256 * MIB + 256 * MIB))
            .collect();
        let mut src = Striped::new(size, bad.clone());
        let opts = RescueOptions {
            no_scrape: true,
            no_sweep: true,
            ..RescueOptions::default()
        };
        let map = run(&mut src, &opts);
        let t = map.totals();
        assert_eq!(t.finished, size / 4 * 3);
        let reached = src.errors_when_all_read.expect("all readable data rescued");
        eprintln!("errors until all readable: {reached}, total {}", src.errors);
        assert!(reached <= 64, "needed {reached} errors");
    }

    #[test]
    fn isolated_bad_sectors_cost_one_error_each() {
        let size = 64 << 20;
        let bad: Vec<(u64, u64)> = (1..20)
            .map(|i| (i * 3_000_000 / 512 * 512, i * 3_000_000 / 512 * 512 + 512))
            .collect();
        let mut src = Striped::new(size, bad.clone());
        let map = run(&mut src, &RescueOptions::default());
        let t = map.totals();
        assert_eq!(t.bad_sector, 19 * 512);
        assert_eq!(t.finished, size - 19 * 512);
        let reached = src.errors_when_all_read.expect("all readable data rescued");
        eprintln!("errors until all readable: {reached}, total {}", src.errors);
        assert!(reached <= 19);
        // Each bad sector is tried twice at most (once while copying, once while scraping).
        assert!(src.errors <= 38);
    }
}
