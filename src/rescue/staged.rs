//! Filesystem-aware rescue order: what a filesystem needs first, then what it uses, free space
//! last.
//!
//! When the source starts with a partition table or a filesystem the filesystem layer knows, the
//! run is split into stages, each one call of [`engine::rescue`] with the same map, store and
//! options, its domain narrowed to the stage's bytes (∩ the user's `-m`/`-i`/`-s` domain), so
//! that skipping, trimming, scraping and retries apply inside each stage:
//!
//! 1. **Metadata**, in rounds: first the partition tables (both GPT copies), then whatever the
//!    filesystem layer, parsing the *partially rescued copy* (read back from the destination
//!    through [`Rescued`], which fails on unrescued bytes), asked for and could not read
//!    ([`vol::record_missing`]), plus every metadata range a successful probe lists, plus the
//!    directories the `salvor files` walkers reach. Metadata tells where more metadata is, so
//!    this repeats until a round finds nothing new (or a bound).
//! 2. **Used data**: the partition tables' neighbourhood, each filesystem's allocated ranges, and
//!    every partition the layer cannot read (unknown, inconsistent, or metadata unreadable even
//!    after rescuing it: treated as used, read in the plain order, and said so).
//! 3. **Free space**: the rest of the domain, unless `used_only` (then the run ends with a
//!    message saying how much free space was not read).
//!
//! The stages' domains are disjoint and together they are the user's domain, so every sector
//! gets the engine's full treatment exactly once (`-r N` retries a bad sector N times, not once
//! per stage) and the final map is the one a plain run leaves. Nothing about the stages is
//! stored: a resumed run recomputes them from the copy and the map, so a crash in any stage
//! resumes where it was (the map's pass-1 position is kept for the stage it lies in).
//!
//! The plain order is used (and the observer is told why) when the ordering would change what
//! ddrescue's options mean or cannot work: `-R`, `--cpass`/`-a`, `-A`/`-M`, limits counted per
//! run (`-T`, `-X`, `-e`, `-E`, `--max-slow-reads`), an output offset (`-o`), a destination that
//! cannot be read back, and a source whose start is unreadable or holds no partition table or
//! known filesystem.

use super::engine::{self, intersect, MapStore, Outcome, RescueStats};
use super::through::ReadThrough;
use super::RescueOptions;
use crate::device::{Clock, Dest, Geometry, ReadFault, ReadOutcome, Source};
use crate::error::Result;
use crate::fs::domain::{disk_domain, DiskDomain, DomainMode};
use crate::fs::files::Rescued;
use crate::fs::vol::{record_missing, Ranges};
use crate::mapfile::{BlockStatus, Mapfile, Phase, Totals};
use crate::progress::{Control, RescueEvent, RescueObserver, RescueSnapshot};
use crate::units::format_bytes;
use std::time::Duration;

/// The order in which a rescue reads the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Filesystem metadata, then used data, then free space (when the layer knows the disk).
    #[default]
    FsAware,
    /// The engine's order over the whole domain (ddrescue's).
    Plain,
}

/// Rounds of metadata discovery at most (each is one engine call).
const MAX_ROUNDS: usize = 64;
/// Bytes looked at to decide whether the source has a partition table or a filesystem.
const PEEK: usize = 8192;
/// GPT: protective MBR, header and 128 entries of 128 bytes (sectors), at the start; header and
/// entries at the end.
const GPT_HEAD_SECTORS: u64 = 34;
const GPT_BACKUP_SECTORS: u64 = 33;

/// Why this run cannot use the filesystem-aware order, if it cannot (from the options alone).
pub fn plain_reason(opts: &RescueOptions) -> Option<&'static str> {
    if opts.reverse {
        Some("-R reads backwards")
    } else if opts.cpass.is_some() || opts.min_read_rate.is_some() {
        Some("ddrescue's copying passes were asked for")
    } else if opts.try_again || opts.retrim {
        Some("-A/-M re-mark the whole domain")
    } else if opts.timeout.is_some()
        || opts.max_read_errors.is_some()
        || opts.max_bad_areas.is_some()
        || opts.max_error_rate.is_some()
        || opts.max_slow_reads.is_some()
    {
        Some("a limit counted over the whole run was given")
    } else if opts.output_pos.is_some_and(|o| o != opts.input_pos) {
        Some("-o moves the copy")
    } else {
        None
    }
}

/// Runs (or resumes) a rescue in the order `opts.order` asks for; see the module documentation.
/// Same contract as [`engine::rescue`].
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
    if opts.order == Order::Plain {
        return engine::rescue(src, dest, map, store, opts, clock, control, observer);
    }
    let why = plain_reason(opts)
        .map(str::to_string)
        .or_else(|| (!readable_back(dest)).then(|| "the destination cannot be read back".into()));
    if let Some(why) = why {
        say_plain(observer, &why, opts.used_only);
        return engine::rescue(src, dest, map, store, opts, clock, control, observer);
    }
    let geo = src.geometry();
    let user = user_domain(opts, map, geo.size);
    if user.is_empty() {
        return engine::rescue(src, dest, map, store, opts, clock, control, observer);
    }
    let resume = (map.phase, map.pass, map.current_pos);
    let mut s = Staged {
        src,
        dest,
        map,
        store,
        opts,
        clock,
        control,
        observer,
        geo,
        user,
        resume: Some(resume),
        stats: RescueStats::default(),
        before: Before::default(),
        done: Ranges::new(),
    };
    s.run()
}

/// Whether what is written to `dest` can be read back: a regular file or a block device (not
/// `/dev/null`, a pipe or a terminal).
fn readable_back(dest: &dyn Dest) -> bool {
    std::fs::metadata(dest.path()).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        t.is_file() || t.is_block_device()
    })
}

fn say_plain(observer: &mut dyn RescueObserver, why: &str, used_only: bool) {
    let used = if used_only {
        "; --used-only has no used data to stop after: everything is read"
    } else {
        ""
    };
    say(observer, format!("Rescue order: plain ({why}){used}"));
}

/// Whether the first bytes of the source (as rescued into the copy) show a partition table or
/// a known filesystem. Read from the copy, after the engine rescued the partition tables' sectors:
/// a look at the source itself would be one more read of its first sectors, a failed one (2 s on
/// a dying disk) where they are bad.
fn peek(src: &mut dyn Source) -> std::result::Result<(), String> {
    let size = src.geometry().size;
    let mut head = vec![0u8; PEEK.min(size as usize)];
    let out = src.read_at(0, &mut head);
    if out.fault.is_some() || out.good < head.len() {
        return Err("the start of the source is unreadable".into());
    }
    let gpt = [512usize, 4096]
        .iter()
        .any(|&o| head.get(o..o + 8) == Some(b"EFI PART"));
    let mbr = head.get(510..512) == Some(&[0x55, 0xAA])
        && (0..4).any(|i| head.get(446 + 16 * i + 4).is_some_and(|&t| t != 0));
    let fs_known = !matches!(
        crate::fs::detect(&head),
        crate::fs::FsKind::Unknown | crate::fs::FsKind::Other(_)
    );
    if gpt || mbr || fs_known {
        Ok(())
    } else {
        Err("no partition table or known filesystem on the source".into())
    }
}

/// The run's domain as the engine computes it: `-i`/`-s` (within the source, or the mapfile's
/// extent with `-C`) ∩ `-m`.
fn user_domain(opts: &RescueOptions, map: &Mapfile, size: u64) -> Vec<(u64, u64)> {
    let extent = if opts.complete_only && size > 0 {
        map.end().min(size)
    } else if opts.complete_only {
        map.end()
    } else {
        size
    };
    let lo = opts.input_pos.min(extent);
    let hi = opts
        .max_size
        .map_or(extent, |s| opts.input_pos.saturating_add(s).min(extent));
    let mut d = vec![(lo, hi)];
    if let Some(m) = &opts.domain {
        d = intersect(&d, m);
    }
    d.retain(|r| r.0 < r.1);
    d
}

/// `a` minus `b` (both sorted and disjoint).
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, e) in a {
        let mut pos = s;
        while j < b.len() && b[j].1 <= pos {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > pos {
                out.push((pos, b[k].0));
            }
            pos = pos.max(b[k].1);
            k += 1;
        }
        if pos < e {
            out.push((pos, e));
        }
    }
    out
}

fn total(r: &[(u64, u64)]) -> u64 {
    r.iter().map(|x| x.1 - x.0).sum()
}

fn say(observer: &mut dyn RescueObserver, message: String) {
    observer.event(&RescueEvent::Message { message });
}

/// The ranges of `d` whose bytes are still non-tried in `map`.
fn non_tried_in(map: &Mapfile, d: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Ranges::new();
    for &(s, e) in d {
        let Some(mut i) = map.index_of(s) else {
            continue;
        };
        let blocks = map.blocks();
        while i < blocks.len() && blocks[i].pos < e {
            let b = blocks[i];
            if b.status == BlockStatus::NonTried {
                out.add(b.pos.max(s), b.end().min(e));
            }
            i += 1;
        }
    }
    out.finish()
}

/// The finished ranges of `map`, merged.
fn finished_ranges(map: &Mapfile) -> Vec<(u64, u64)> {
    let mut out = Ranges::new();
    for b in map.blocks() {
        if b.status == BlockStatus::Finished {
            out.add(b.pos, b.end());
        }
    }
    out.finish()
}

/// The destination read back at the source's offsets, with the source's geometry: the
/// partially rescued copy. Bytes it cannot return read as I/O errors.
struct CopyView<'a> {
    dest: &'a mut dyn Dest,
    geo: Geometry,
}

impl Source for CopyView<'_> {
    fn geometry(&self) -> Geometry {
        self.geo
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        let eio = || {
            Some(ReadFault::classify(std::io::Error::from_raw_os_error(
                libc::EIO,
            )))
        };
        match self.dest.read_back(pos, buf) {
            Ok(n) if n == buf.len() => ReadOutcome::ok(n),
            Ok(n) => ReadOutcome {
                good: n,
                fault: eio(),
            },
            Err(_) => ReadOutcome {
                good: 0,
                fault: eio(),
            },
        }
    }
    fn describe(&self) -> String {
        "the rescued copy".into()
    }
}

/// What earlier stages contributed, so that the progress a stage reports covers the whole run.
#[derive(Default, Clone, Copy)]
struct Before {
    /// Totals of the domain outside the current stage.
    totals: Totals,
    outside: u64,
    reads: u64,
    read_errors: u64,
    elapsed: Duration,
}

/// Passes a stage's reports on, as if they were one run's: totals and counters include the
/// other stages; only the last stage's `Finished` is passed.
struct StageObserver<'a> {
    inner: &'a mut dyn RescueObserver,
    before: Before,
    last: bool,
}

impl RescueObserver for StageObserver<'_> {
    fn event(&mut self, event: &RescueEvent) {
        if self.last || !matches!(event, RescueEvent::Finished { .. }) {
            self.inner.event(event);
        }
    }
    fn progress(&mut self, s: &RescueSnapshot) {
        let b = &self.before;
        let mut s = s.clone();
        let (t, o) = (&mut s.totals, &b.totals);
        t.non_tried += o.non_tried;
        t.non_trimmed += o.non_trimmed;
        t.non_scraped += o.non_scraped;
        t.bad_sector += o.bad_sector;
        t.finished += o.finished;
        t.non_tried_areas += o.non_tried_areas;
        t.non_trimmed_areas += o.non_trimmed_areas;
        t.non_scraped_areas += o.non_scraped_areas;
        t.bad_areas += o.bad_areas;
        t.finished_areas += o.finished_areas;
        s.domain_size += b.outside;
        s.reads += b.reads;
        s.read_errors += b.read_errors;
        s.elapsed += b.elapsed;
        if !self.last && s.phase == Phase::Finished {
            // Not the end of the run: the next stage follows.
            return;
        }
        self.inner.progress(&s);
    }
    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        self.inner.read_done(pos, size, good, failed);
    }
}

struct Staged<'a> {
    src: &'a mut dyn Source,
    dest: &'a mut dyn Dest,
    map: &'a mut Mapfile,
    store: &'a mut dyn MapStore,
    opts: &'a RescueOptions,
    clock: &'a dyn Clock,
    control: &'a Control,
    observer: &'a mut dyn RescueObserver,
    geo: Geometry,
    /// The user's domain.
    user: Vec<(u64, u64)>,
    /// The map's phase, pass and position when the run started, until a stage resumes from it.
    resume: Option<(Phase, u32, u64)>,
    stats: RescueStats,
    before: Before,
    /// Every stage's domain so far (the next stages are disjoint from it).
    done: Ranges,
}

/// How a stage ended.
enum Step {
    Next,
    Stop(Outcome),
}

impl Staged<'_> {
    fn run(&mut self) -> Result<(Outcome, RescueStats)> {
        // A new file gets the full size now, as the engine gives it at the first write of a
        // plain run: holes for what is not rescued, whatever stage a stop comes in.
        // (Not when nothing is left to read: a plain run would not write at all.)
        let pending = self.map.totals_in(&self.user).pending() > 0;
        if pending && self.opts.extend_new_dest && self.dest.size().map(|s| s == 0).unwrap_or(false)
        {
            if let Some(&(_, end)) = self.user.last() {
                self.dest.extend_to(end)?;
            }
        }
        let ss = u64::from(self.geo.logical_sector.max(512));
        let size = self.geo.size;
        let count = if self.opts.used_only { 2 } else { 3 };

        // Stage 1: metadata, in rounds. The first sectors come first: they tell whether the
        // order can know anything about this disk (if not, the plain order goes on from there,
        // without a seek).
        let head = [(0, (GPT_HEAD_SECTORS * ss).max(PEEK as u64).min(size))];
        if let Step::Stop(o) = self.stage_with(&head, false, true)? {
            return Ok((o, self.stats));
        }
        let known = {
            let mut copy = CopyView {
                dest: &mut *self.dest,
                geo: self.geo,
            };
            peek(&mut Rescued::new(&mut copy, self.map))
        };
        if let Err(why) = known {
            // The rest in the plain order: one last stage over everything left.
            say_plain(self.observer, &why, self.opts.used_only);
            return match self.stage(&self.user.clone(), true)? {
                Step::Stop(o) => Ok((o, self.stats)),
                Step::Next => Ok((Outcome::Finished, self.stats)),
            };
        }
        say(
            self.observer,
            format!(
                "Stage 1/{count}: metadata (partition tables, then each filesystem's metadata as \
                 the copy shows it)"
            ),
        );
        let backup = [(size.saturating_sub(GPT_BACKUP_SECTORS * ss), size)];
        if let Step::Stop(o) = self.stage(&backup, false)? {
            return Ok((o, self.stats));
        }
        let mut found: Option<DiskDomain> = None;
        let mut table_error: Option<String> = None;
        let mut rounds = 0;
        loop {
            let (d, wanted) = self.discover();
            match d {
                Ok(d) => found = Some(d),
                Err(e) => table_error = Some(e),
            }
            let new = non_tried_in(self.map, &intersect(&wanted, &self.user));
            if new.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                say(
                    self.observer,
                    format!(
                        "metadata: still finding more after {MAX_ROUNDS} rounds; the rest is \
                         read with the used data"
                    ),
                );
                break;
            }
            if let Step::Stop(o) = self.stage(&new, false)? {
                return Ok((o, self.stats));
            }
        }

        // Stage 2: what the filesystems use (and everything the layer cannot tell about).
        let used = match (&found, &table_error) {
            (Some(d), _) => {
                for n in &d.notes {
                    say(self.observer, format!("Used data: {n}"));
                }
                let unreadable: Vec<u32> = d
                    .filesystems
                    .iter()
                    .filter(|(_, r)| r.whole_reason().is_some_and(|w| w.contains("unreadable")))
                    .map(|(n, _)| *n)
                    .collect();
                if !unreadable.is_empty() {
                    say(
                        self.observer,
                        format!(
                            "metadata unreadable in partition(s) {unreadable:?}: treated as used, \
                             read in the plain order with the used data"
                        ),
                    );
                }
                d.ranges.clone()
            }
            (None, e) => {
                say(
                    self.observer,
                    format!(
                        "partition table unreadable ({}): the whole disk is treated as used, in \
                         the plain order",
                        e.as_deref().unwrap_or("unknown")
                    ),
                );
                vec![(0, size)]
            }
        };
        let used_left = subtract(&intersect(&used, &self.user), &self.done.clone().finish());
        say(
            self.observer,
            format!(
                "Stage 2/{count}: used data ({} in {} area(s))",
                format_bytes(total(&used_left)),
                used_left.len()
            ),
        );
        if let Step::Stop(o) = self.stage(&used, self.opts.used_only)? {
            return Ok((o, self.stats));
        }
        if self.opts.used_only {
            let free = subtract(&self.user, &self.done.clone().finish());
            let not_read = self.map.totals_in(&free).pending();
            say(
                self.observer,
                format!(
                    "--used-only: {} of free space not read ({} in the domain outside the used \
                     data)",
                    format_bytes(not_read),
                    format_bytes(total(&free))
                ),
            );
            return Ok((Outcome::Finished, self.stats));
        }

        // Stage 3: free space.
        let free = subtract(&self.user, &self.done.clone().finish());
        say(
            self.observer,
            format!(
                "Stage 3/3: free space ({} in {} area(s))",
                format_bytes(total(&free)),
                free.len()
            ),
        );
        match self.stage(&self.user.clone(), true)? {
            Step::Stop(o) => Ok((o, self.stats)),
            Step::Next => Ok((Outcome::Finished, self.stats)),
        }
    }

    /// Parses the copy: the disk's domain (tables, metadata, allocation) as far as the copy
    /// shows it, and every byte the parsers asked for and could not read.
    fn discover(&mut self) -> (std::result::Result<DiskDomain, String>, Vec<(u64, u64)>) {
        let mut copy = CopyView {
            dest: &mut *self.dest,
            geo: self.geo,
        };
        let map: &Mapfile = self.map;
        let (d, mut missing) = record_missing(|| {
            let mut r = Rescued::new(&mut copy, map);
            disk_domain(&mut r, DomainMode::Used)
        });
        let d = d.map_err(|e| e.to_string());
        let mut wanted = Ranges::new();
        if let Ok(d) = &d {
            for (_, r) in &d.filesystems {
                for &(s, e) in &r.metadata {
                    wanted.add(s, e);
                }
            }
            // Directories: what the damaged-files walkers read (directory blocks, extent
            // trees, MFT records), and did not find in the copy yet.
            let (_, dirs) = record_missing(|| crate::fs::files::report(&mut copy, map));
            missing.extend(dirs);
        }
        for (s, e) in missing {
            wanted.add(s, e);
        }
        // Whole sectors: the engine reads sectors.
        let ss = u64::from(self.geo.logical_sector.max(1));
        let mut out = Ranges::new();
        for (s, e) in wanted.finish() {
            out.add(
                s / ss * ss,
                e.div_ceil(ss).saturating_mul(ss).min(self.geo.size),
            );
        }
        (d, out.finish())
    }

    /// One engine call over `ranges` ∩ the user's domain minus earlier stages (the last stage:
    /// everything left).
    fn stage(&mut self, ranges: &[(u64, u64)], last: bool) -> Result<Step> {
        self.stage_with(ranges, last, false)
    }

    /// [`Self::stage`]; `copy_only`: only the copying passes, and the ranges stay for a later
    /// stage's trimming, scraping and retries (the first look at the disk's first sectors must
    /// not spend failed reads on them before the rest of the disk is copied).
    fn stage_with(&mut self, ranges: &[(u64, u64)], last: bool, copy_only: bool) -> Result<Step> {
        let done = self.done.clone().finish();
        let domain = subtract(&intersect(ranges, &self.user), &done);
        if domain.is_empty() && !last {
            return Ok(Step::Next);
        }
        let mut opts = self.opts.clone();
        let domain = if domain.is_empty() {
            // Nothing left for the last stage: the engine still ends the run as a plain one
            // would (final save, Finished), with nothing to read: every sector had its stage.
            opts.no_trim = true;
            opts.no_scrape = true;
            opts.retry_passes = 0;
            self.user.clone()
        } else {
            domain
        };
        if copy_only {
            opts.no_trim = true;
            opts.no_scrape = true;
            opts.retry_passes = 0;
        } else {
            for &(s, e) in &domain {
                self.done.add(s, e);
            }
        }
        // The map's pass-1 position belongs to the stage it lies in; other stages start afresh.
        match self.resume {
            Some((phase, pass, pos))
                if phase == Phase::Copying
                    && pass <= 1
                    && pos > 0
                    && domain.iter().any(|&(s, e)| s <= pos && pos < e) =>
            {
                self.map.phase = phase;
                self.map.pass = pass;
                self.map.current_pos = pos;
                self.resume = None;
            }
            _ => {
                self.map.phase = Phase::Copying;
                self.map.pass = 1;
                self.map.current_pos = 0;
            }
        }
        let outside = subtract(&self.user, &domain);
        self.before.totals = self.map.totals_in(&outside);
        self.before.outside = total(&outside);
        opts.domain = Some(domain);
        let mut obs = StageObserver {
            inner: &mut *self.observer,
            before: self.before,
            last,
        };
        let started = self.clock.now();
        let finished = finished_ranges(self.map);
        let mut src = ReadThrough::new(&mut *self.src, finished);
        let (outcome, st) = engine::rescue(
            &mut src,
            &mut *self.dest,
            self.map,
            &mut *self.store,
            &opts,
            self.clock,
            self.control,
            &mut obs,
        )?;
        self.stats.reads += st.reads;
        self.stats.read_errors += st.read_errors;
        self.stats.rescued_this_run += st.rescued_this_run;
        self.before.reads += st.reads;
        self.before.read_errors += st.read_errors;
        self.before.elapsed += self.clock.now().saturating_sub(started);
        Ok(match outcome {
            Outcome::Finished => Step::Next,
            o @ Outcome::Stopped(_) => Step::Stop(o),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_ranges() {
        assert_eq!(
            subtract(&[(0, 100)], &[(10, 20), (50, 60)]),
            vec![(0, 10), (20, 50), (60, 100)]
        );
        assert_eq!(
            subtract(&[(0, 10), (20, 30)], &[(5, 25)]),
            vec![(0, 5), (25, 30)]
        );
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), vec![]);
    }

    #[test]
    fn plain_for_options_whose_meaning_the_order_changes() {
        assert_eq!(plain_reason(&RescueOptions::default()), None);
        for o in [
            RescueOptions {
                reverse: true,
                ..Default::default()
            },
            RescueOptions {
                cpass: Some(1),
                ..Default::default()
            },
            RescueOptions {
                max_read_errors: Some(3),
                ..Default::default()
            },
            RescueOptions {
                output_pos: Some(512),
                ..Default::default()
            },
        ] {
            assert!(plain_reason(&o).is_some(), "{o:?}");
        }
    }

    #[test]
    fn non_tried_parts() {
        let mut m = Mapfile::new(1000);
        m.set(100, 100, BlockStatus::Finished);
        m.set(300, 10, BlockStatus::BadSector);
        assert_eq!(
            non_tried_in(&m, &[(50, 350)]),
            vec![(50, 100), (200, 300), (310, 350)]
        );
    }
}
