//! The filesystem-aware rescue order (issue 14) on a simulated failing drive serving a real
//! GPT disk: ext4 and FAT16, each about half full, old random data in the free space, bad
//! sectors in metadata, in file data and in free space.
//!
//! File data is found independently of salvor's parsers: a sector holds file data when its
//! bytes equal a 512-byte piece of one of the files written into the filesystems (random
//! content, so there are no false matches). Metadata and allocation come from the filesystem
//! layer on the intact image (itself checked against dumpe2fs/fsck.fat in `fs_layer`).

mod common;

use common::fsimg::*;
use salvor::device::faulty::MemoryLog;
use salvor::device::scenario::DataBacked;
use salvor::device::{
    Clock, DriveRequest, FaultySource, FaultySpec, FileDest, FileSource, OpenOptions,
};
use salvor::mapfile::{BlockStatus, Mapfile, MapfileSaver};
use salvor::progress::{Control, RescueEvent, RescueObserver, StopReason};
use salvor::rescue::{self, Order, Outcome, RescueOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const SECTOR: u64 = 512;

struct Disk {
    _tmp: Tmp,
    dir: PathBuf,
    path: PathBuf,
    size: u64,
    /// Probe metadata of both filesystems plus both GPT copies.
    metadata: Vec<(u64, u64)>,
    /// `salvor domain --used`'s ranges: tables, gaps, allocated data.
    used: Vec<(u64, u64)>,
    /// Sectors holding file contents (by content).
    file_sectors: Vec<u64>,
    parts: Vec<(u64, u64)>,
}

/// A 32 MiB GPT disk: ext4 14 MiB at 1 MiB, FAT16 14 MiB after it, old data everywhere else.
fn disk() -> Disk {
    common::require_tool("sgdisk", "gdisk");
    let tmp = tmp();
    let dir = tmp.path().to_path_buf();
    let ext = mkfs_ext(&dir, "p1.img", 14 * MIB, &["-L", "root"]);
    let fat = mkfs_fat(&dir, "p2.img", 14 * MIB, &["-F", "16", "-n", "DATA"]);
    let path = dir.join("disk.img");
    let size = 32 * MIB;
    old_disk(&path, size, 4242);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+14M", "-n", "2:0:+14M"])
        .arg(&path));
    patch(&path, MIB, &std::fs::read(&ext).expect("read"));
    patch(&path, 15 * MIB, &std::fs::read(&fat).expect("read"));
    let parts = vec![(MIB, 15 * MIB), (15 * MIB, 29 * MIB)];

    let mut src = FileSource::open(&path, OpenOptions::default()).expect("open");
    let d = salvor::fs::domain::disk_domain(&mut src, salvor::fs::domain::DomainMode::Used)
        .expect("domain");
    let mut metadata = vec![(0, 34 * SECTOR), (size - 33 * SECTOR, size)];
    for (n, r) in &d.filesystems {
        assert!(r.whole_reason().is_none(), "partition {n}: {r:?}");
        metadata.extend(&r.metadata);
    }
    metadata.sort();

    // Every 512-byte piece of every file written into the two filesystems.
    let mut pieces: HashSet<Vec<u8>> = HashSet::new();
    for tree in ["p1.img.tree", "p2.img.tree"] {
        for f in walk(&dir.join(tree)) {
            let data = std::fs::read(&f).expect("read file");
            for c in data.chunks_exact(SECTOR as usize) {
                pieces.insert(c.to_vec());
            }
        }
    }
    let image = std::fs::read(&path).expect("read disk");
    let file_sectors: Vec<u64> = image
        .chunks_exact(SECTOR as usize)
        .enumerate()
        .filter(|(_, c)| pieces.contains(*c))
        .map(|(i, _)| i as u64)
        .collect();
    assert!(
        file_sectors.len() as u64 * SECTOR > 8 * MIB,
        "file data found: {} sectors",
        file_sectors.len()
    );
    Disk {
        _tmp: tmp,
        dir,
        path,
        size,
        metadata,
        used: d.ranges,
        file_sectors,
        parts,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn touches(ranges: &[(u64, u64)], pos: u64, end: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= pos);
    ranges.get(i).is_some_and(|r| r.0 < end)
}

/// For each request, the part of it that asked for bytes not delivered before: a stage may read
/// through an already rescued gap instead of seeking over it, and those bytes are not the
/// stage's reading.
fn fresh(reqs: &[DriveRequest]) -> Vec<Vec<(u64, u64)>> {
    let mut delivered: Vec<(u64, u64)> = Vec::new();
    reqs.iter()
        .map(|r| {
            let mut out = Vec::new();
            let mut pos = r.pos;
            let end = r.pos + r.len;
            for &(s, e) in &delivered {
                if e <= pos || s >= end {
                    continue;
                }
                if s > pos {
                    out.push((pos, s));
                }
                pos = pos.max(e);
            }
            if pos < end {
                out.push((pos, end));
            }
            if r.good > 0 {
                delivered.push((r.pos, r.pos + r.good));
                delivered = merge(std::mem::take(&mut delivered));
            }
            out
        })
        .collect()
}

fn touches_any(ranges: &[(u64, u64)], parts: &[(u64, u64)]) -> bool {
    parts.iter().any(|&(s, e)| touches(ranges, s, e))
}

/// Collects messages; stops the run after `stop_after` reads.
struct Obs {
    messages: Vec<String>,
    reads: u64,
    stop_after: Option<u64>,
    control: Arc<Control>,
}

impl RescueObserver for Obs {
    fn event(&mut self, e: &RescueEvent) {
        if let RescueEvent::Message { message } = e {
            self.messages.push(message.clone());
        }
    }
    fn read_done(&mut self, _pos: u64, _size: u64, _good: u64, _failed: bool) {
        self.reads += 1;
        if self.stop_after.is_some_and(|n| self.reads >= n) {
            self.control.request_stop(StopReason::User);
        }
    }
}

struct Run {
    map: Mapfile,
    requests: Vec<DriveRequest>,
    messages: Vec<String>,
    outcome: Outcome,
}

/// One run of the rescue of `disk` with `bad` sectors on a simulated drive, into `out` with
/// the mapfile `mapfile` (resumed when it exists).
fn run(
    disk: &Disk,
    bad: &[(u64, u64)],
    opts: &RescueOptions,
    out: &Path,
    stop_after: Option<u64>,
) -> Run {
    let mut spec = FaultySpec::drive(disk.size);
    for &(s, e) in bad {
        spec = spec.with_bad(s, e);
    }
    let faulty = FaultySource::new(spec, salvor::device::SimClock::new());
    let clock = faulty.clock();
    let log = MemoryLog::default();
    let mut faulty = faulty;
    faulty.set_log(Box::new(log.clone()));
    let mut src = DataBacked::open(faulty, &disk.path).expect("data");
    let mapfile = out.with_extension("map");
    let mut map = if mapfile.exists() {
        common::read_map(&mapfile)
    } else {
        Mapfile::new(disk.size)
    };
    let mut saver = MapfileSaver::new(&mapfile, "test");
    let mut dest = FileDest::open(out, false, true).expect("dest");
    let control = Arc::new(Control::new());
    let mut obs = Obs {
        messages: Vec::new(),
        reads: 0,
        stop_after,
        control: control.clone(),
    };
    let (outcome, _) = rescue::rescue(
        &mut src,
        &mut dest,
        &mut map,
        &mut saver,
        opts,
        &clock as &dyn Clock,
        &control,
        &mut obs,
    )
    .expect("rescue");
    Run {
        map,
        requests: log.requests(),
        messages: obs.messages,
        outcome,
    }
}

fn mid_sector(r: (u64, u64)) -> u64 {
    (r.0 + (r.1 - r.0) / 2) / SECTOR * SECTOR
}

/// The filesystem layer's report on partition 1 with `bad` unreadable.
fn probe_with(disk: &Disk, bad: (u64, u64)) -> salvor::fs::FsReport {
    let spec = FaultySpec::new(disk.size).with_bad(bad.0, bad.1);
    let f = FaultySource::new(spec, salvor::device::SimClock::new());
    let mut src = DataBacked::open(f, &disk.path).expect("data");
    salvor::fs::probe(&mut src, disk.parts[0].0..disk.parts[0].1).expect("probe")
}

/// Whether the layer reads partition 1 with `bad` unreadable exactly as without.
fn probe_ok(disk: &Disk, bad: (u64, u64)) -> bool {
    let r = probe_with(disk, bad);
    r.whole_reason().is_none() && r.warnings.iter().all(|w| !w.contains("unreadable"))
}

/// Bad sectors: 4 KiB in ext4 metadata the layer does not need to read the allocation (an
/// inode table), 4 KiB in ext4 file data, 4 KiB in FAT file data, 4 KiB in ext4 free space.
fn damage(disk: &Disk) -> Vec<(u64, u64)> {
    let (p1, p2) = (disk.parts[0], disk.parts[1]);
    let mut meta: Vec<(u64, u64)> = disk
        .metadata
        .iter()
        .copied()
        .filter(|r| r.0 >= p1.0 + 64 * 1024 && r.1 <= p1.1 && r.1 - r.0 >= 16 * 1024)
        .collect();
    meta.sort_by_key(|r| std::cmp::Reverse(r.1 - r.0));
    let m = meta
        .iter()
        .map(|&r| mid_sector(r))
        .find(|&s| probe_ok(disk, (s, s + 4096)))
        .expect("a metadata range the layer does not need");
    let in_part = |p: (u64, u64)| -> Vec<u64> {
        disk.file_sectors
            .iter()
            .map(|s| s * SECTOR)
            .filter(|&b| b >= p.0 && b < p.1)
            .collect()
    };
    let f1 = in_part(p1);
    let f2 = in_part(p2);
    let d1 = f1[f1.len() / 2] / 4096 * 4096;
    let d2 = f2[f2.len() / 3] / SECTOR * SECTOR;
    let free: Vec<(u64, u64)> = {
        let mut v = Vec::new();
        let mut pos = p1.0;
        for &(s, e) in &disk.used {
            if s > pos && s <= p1.1 {
                v.push((pos, s));
            }
            pos = pos.max(e);
        }
        v
    };
    let big_free = free
        .iter()
        .copied()
        .max_by_key(|r| r.1 - r.0)
        .expect("free space in partition 1");
    let fr = mid_sector(big_free) / 4096 * 4096;
    let mut bad = vec![
        (m, m + 4096),
        (d1, d1 + 4096),
        (d2, d2 + 4096),
        (fr, fr + 4096),
    ];
    bad.sort();
    bad
}

fn same_blocks(a: &Mapfile, b: &Mapfile) {
    assert_eq!(a.blocks(), b.blocks(), "final maps differ");
}

#[test]
fn metadata_first_then_used_data_then_free_space() {
    let disk = disk();
    let bad = damage(&disk);
    let staged = run(
        &disk,
        &bad,
        &RescueOptions::default(),
        &disk.dir.join("fs.img"),
        None,
    );
    assert_eq!(staged.outcome, Outcome::Finished);
    for s in [
        "Stage 1/3: metadata",
        "Stage 2/3: used data",
        "Stage 3/3: free space",
    ] {
        assert!(
            staged.messages.iter().any(|m| m.starts_with(s)),
            "{s:?} not in {:?}",
            staged.messages
        );
    }
    let reqs = fresh(&staged.requests);
    let files: Vec<(u64, u64)> = disk
        .file_sectors
        .iter()
        .map(|&s| (s * SECTOR, (s + 1) * SECTOR))
        .collect();
    let files = merge(files);
    let free = complement(&disk.used, disk.size);
    let last_meta = reqs
        .iter()
        .rposition(|r| touches_any(&disk.metadata, r))
        .expect("metadata read");
    let first_file = reqs
        .iter()
        .position(|r| touches_any(&files, r))
        .expect("file data read");
    assert!(
        last_meta < first_file,
        "metadata read at request {last_meta} ({:?}) after file data at {first_file} ({:?})",
        reqs[last_meta],
        reqs[first_file]
    );
    let last_used = reqs
        .iter()
        .rposition(|r| touches_any(&disk.used, r))
        .expect("used read");
    let first_free = reqs
        .iter()
        .position(|r| touches_any(&free, r))
        .expect("free read");
    assert!(
        last_used < first_free,
        "used data read at request {last_used} ({:?}) after free space at {first_free} ({:?})",
        reqs[last_used],
        reqs[first_free]
    );
    // Every readable metadata byte was rescued in the first stage: the map of a run stopped
    // right after it has them all.
    for &(s, e) in &disk.metadata {
        for blk in staged
            .map
            .blocks()
            .iter()
            .filter(|b| b.pos < e && b.end() > s)
        {
            let bad_here = bad.iter().any(|&(bs, be)| bs < blk.end() && be > blk.pos);
            assert!(
                blk.status == BlockStatus::Finished || bad_here,
                "metadata block {blk:?} not rescued"
            );
        }
    }
    // The copy is the disk wherever the map says finished, and the map is a plain run's.
    let image = std::fs::read(&disk.path).expect("read");
    let copy = std::fs::read(disk.dir.join("fs.img")).expect("read");
    common::assert_finished_bytes_match(&staged.map, &image, &copy);
    let plain = run(
        &disk,
        &bad,
        &RescueOptions {
            order: Order::Plain,
            ..Default::default()
        },
        &disk.dir.join("plain.img"),
        None,
    );
    assert!(plain.messages.iter().all(|m| !m.starts_with("Stage")));
    same_blocks(&staged.map, &plain.map);
    assert_eq!(staged.map.totals().bad_sector, 4 * 4096);
}

#[test]
fn used_only_leaves_free_space_non_tried_and_says_how_much() {
    let disk = disk();
    let bad = damage(&disk);
    let opts = RescueOptions {
        used_only: true,
        ..Default::default()
    };
    let r = run(&disk, &bad, &opts, &disk.dir.join("u.img"), None);
    let free = complement(&disk.used, disk.size);
    let free_bytes: u64 = free.iter().map(|f| f.1 - f.0).sum();
    let t = r.map.totals_in(&free);
    assert_eq!(t.non_tried, free_bytes, "free space must not be read");
    assert!(
        r.requests
            .iter()
            .all(|q| !touches(&free, q.pos, q.pos + q.len) || q.pos == 0),
        "a request read free space"
    );
    let used = r.map.totals_in(&disk.used);
    assert_eq!(used.non_tried + used.non_trimmed + used.non_scraped, 0);
    let msg = r
        .messages
        .iter()
        .find(|m| m.starts_with("--used-only:"))
        .unwrap_or_else(|| panic!("no --used-only summary in {:?}", r.messages));
    let shown = salvor::units::format_bytes(free_bytes);
    assert!(msg.contains(&shown), "{msg} should say {shown}");
}

#[test]
fn unreadable_metadata_is_treated_as_used_and_said() {
    let disk = disk();
    let p1 = disk.parts[0];
    // A metadata sector the layer needs (a block bitmap): without it the layer counts the
    // bitmap's group as wholly used.
    let needed = disk
        .metadata
        .iter()
        .filter(|r| r.0 >= p1.0 && r.1 <= p1.1)
        .flat_map(|&(s, e)| (s / SECTOR..e / SECTOR).map(|x| x * SECTOR))
        .filter(|&s| s >= p1.0 + 4096)
        .take(4000)
        .find(|&s| !probe_ok(&disk, (s, s + SECTOR)))
        .expect("a metadata sector the layer needs");
    let bad = vec![(needed, needed + SECTOR)];
    let damaged = probe_with(&disk, bad[0]);
    assert!(damaged.whole_reason().is_none(), "{damaged:?}");
    let r = run(
        &disk,
        &bad,
        &RescueOptions::default(),
        &disk.dir.join("m.img"),
        None,
    );
    assert!(
        r.messages
            .iter()
            .any(|m| m.starts_with("Used data: partition 1") && m.contains("wholly used")),
        "{:?}",
        r.messages
    );
    // What the layer now counts as used (the group) is read with the used data: before any
    // free space of partition 2.
    let p2 = disk.parts[1];
    let free2: Vec<(u64, u64)> = complement(&disk.used, disk.size)
        .into_iter()
        .filter(|f| f.0 >= p2.0 && f.1 <= p2.1)
        .collect();
    let extra: Vec<(u64, u64)> = match &damaged.allocation {
        salvor::fs::Allocation::Ranges(a) => a.clone(),
        other => panic!("{other:?}"),
    };
    let reqs = fresh(&r.requests);
    let last_p1 = reqs
        .iter()
        .rposition(|q| touches_any(&extra, q))
        .expect("p1 read");
    let first_free2 = reqs
        .iter()
        .position(|q| touches_any(&free2, q))
        .expect("p2 free read");
    assert!(last_p1 < first_free2, "{last_p1} {first_free2}");
    let plain = run(
        &disk,
        &bad,
        &RescueOptions {
            order: Order::Plain,
            ..Default::default()
        },
        &disk.dir.join("mp.img"),
        None,
    );
    same_blocks(&r.map, &plain.map);
}

#[test]
fn interrupted_staged_runs_resume_to_the_same_map() {
    let disk = disk();
    let bad = damage(&disk);
    let out = disk.dir.join("r.img");
    let full = run(
        &disk,
        &bad,
        &RescueOptions::default(),
        &disk.dir.join("full.img"),
        None,
    );
    let total_reads = full.requests.len() as u64;
    // Stop in the first stage, in the used data and in the free space, resuming each time.
    let mut stops = 0;
    for at in [3, total_reads / 3, total_reads / 3] {
        let r = run(&disk, &bad, &RescueOptions::default(), &out, Some(at));
        if matches!(r.outcome, Outcome::Stopped(_)) {
            stops += 1;
        }
    }
    assert!(stops >= 2, "the runs were not interrupted");
    let last = run(&disk, &bad, &RescueOptions::default(), &out, None);
    assert_eq!(last.outcome, Outcome::Finished);
    same_blocks(&last.map, &full.map);
    let image = std::fs::read(&disk.path).expect("read");
    let copy = std::fs::read(&out).expect("read");
    common::assert_finished_bytes_match(&last.map, &image, &copy);
}

#[test]
fn plain_order_without_a_partition_table() {
    let tmp = tmp();
    let path = tmp.path().join("raw.img");
    old_disk(&path, 4 * MIB, 9);
    let disk = Disk {
        dir: tmp.path().to_path_buf(),
        path,
        size: 4 * MIB,
        metadata: Vec::new(),
        used: Vec::new(),
        file_sectors: Vec::new(),
        parts: Vec::new(),
        _tmp: tmp,
    };
    let r = run(
        &disk,
        &[],
        &RescueOptions::default(),
        &disk.dir.join("o.img"),
        None,
    );
    assert!(
        r.messages
            .iter()
            .any(|m| m.starts_with("Rescue order: plain (no partition table")),
        "{:?}",
        r.messages
    );
    assert_eq!(r.map.totals().finished, 4 * MIB);
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn complement(used: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(s, e) in used {
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < size {
        out.push((pos, size));
    }
    out
}

/// A FAT sector unreadable in the first copy is read from the mirror, and an unreadable
/// directory only goes unchecked: the allocation stays the FAT's, so one bad sector in FAT
/// metadata does not make a rescue read the whole partition as used.
#[test]
fn fat_allocation_survives_an_unreadable_fat_sector_and_directory() {
    let tmp = tmp();
    let img = mkfs_fat(tmp.path(), "f.img", 14 * MIB, &["-F", "16"]);
    let size = std::fs::metadata(&img).expect("stat").len();
    let mut file = FileSource::open(&img, OpenOptions::default()).expect("open");
    let intact = salvor::fs::probe(&mut file, 0..size).expect("probe");
    assert!(intact.whole_reason().is_none(), "{intact:?}");
    let boot = std::fs::read(&img).expect("read")[..512].to_vec();
    let bps = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let reserved = u64::from(u16::from_le_bytes([boot[14], boot[15]]));
    let fat1 = (reserved + 1) * bps;
    let dir = *intact.metadata.last().expect("directories");
    let spec = FaultySpec::new(size)
        .with_bad(fat1, fat1 + 512)
        .with_bad(dir.0, dir.0 + 512);
    let f = FaultySource::new(spec, salvor::device::SimClock::new());
    let mut src = DataBacked::open(f, &img).expect("data");
    let r = salvor::fs::probe(&mut src, 0..size).expect("probe");
    assert_eq!(r.allocation, intact.allocation, "{:?}", r.warnings);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("directory area(s) unreadable")),
        "{:?}",
        r.warnings
    );
}

/// The command line: stages on stderr, `--used-only` stops before free space and says how much
/// it left; `--plain-order` and `--used-only` exclude each other.
#[test]
fn cli_shows_stages_and_used_only_summary() {
    let disk = disk();
    let out = disk.dir.join("cli.img");
    let map = disk.dir.join("cli.map");
    let o = common::run(
        common::salvor()
            .args(["rescue", "--used-only"])
            .arg(&disk.path)
            .arg(&out)
            .arg(&map),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for s in [
        "Stage 1/2: metadata",
        "Stage 2/2: used data",
        "--used-only: ",
    ] {
        assert!(err.contains(s), "{s:?} not in {err}");
    }
    assert!(!err.contains("Stage 3"), "{err}");
    let m = common::read_map(&map);
    let free = complement(&disk.used, disk.size);
    let free_bytes: u64 = free.iter().map(|f| f.1 - f.0).sum();
    assert_eq!(m.totals_in(&free).non_tried, free_bytes);
    assert_eq!(
        m.totals_in(&disk.used).finished,
        disk.used.iter().map(|u| u.1 - u.0).sum::<u64>()
    );
    let o = common::run(
        common::salvor()
            .args(["rescue", "--used-only", "--plain-order"])
            .arg(&disk.path)
            .arg(disk.dir.join("x.img"))
            .arg(disk.dir.join("x.map")),
    );
    assert!(!o.status.success());
}
