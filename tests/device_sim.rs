//! FaultySource and TestModeSource semantics.

use salvor::device::faulty::Counters;
use salvor::device::{
    Clock, FaultySource, FaultySpec, ReadFault, SimClock, Source, TestModeSource,
};
use salvor::mapfile::{BlockStatus, Mapfile};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn source(spec: FaultySpec) -> (FaultySource, SimClock, Arc<Counters>) {
    let clock = SimClock::new();
    let src = FaultySource::new(spec, clock.clone());
    let counters = src.counters();
    (src, clock, counters)
}

fn assert_content(pos: u64, buf: &[u8]) {
    assert_eq!(
        FaultySource::first_mismatch(pos, buf),
        None,
        "content mismatch for read at {pos}"
    );
}

#[test]
fn healthy_read_delivers_content_and_advances_clock() {
    let (mut src, clock, counters) = source(FaultySpec::new(1 << 20).with_rate(1 << 20));
    let mut buf = vec![0u8; 65536];
    let out = src.read_at(4096, &mut buf);
    assert_eq!(out.good, 65536);
    assert!(out.fault.is_none());
    assert_content(4096, &buf);
    // 64 KiB at 1 MiB/s = 1/16 s.
    assert_eq!(clock.now(), Duration::from_micros(62_500));
    assert_eq!(counters.snapshot(), (1, 0, 65536));
}

#[test]
fn read_at_end_is_short_without_fault() {
    let (mut src, _, _) = source(FaultySpec::new(10_000));
    let mut buf = vec![0u8; 4096];
    let out = src.read_at(8192, &mut buf);
    assert_eq!(out.good, 10_000 - 8192);
    assert!(out.fault.is_none());
    let out = src.read_at(10_000, &mut buf);
    assert_eq!(out.good, 0);
    assert!(out.fault.is_none());
}

#[test]
fn partial_read_stops_at_first_bad_sector() {
    let spec = FaultySpec::new(1 << 20)
        .with_bad(10_000, 10_001)
        .with_error_latency(Duration::from_secs(2))
        .with_rate(0);
    let (mut src, clock, counters) = source(spec);
    let mut buf = vec![0u8; 16384];
    let out = src.read_at(0, &mut buf);
    // Byte 10_000 lies in sector 19 (9728..10240): 19 whole sectors are good.
    assert_eq!(out.good, 9728);
    assert!(
        matches!(out.fault, Some(ReadFault::Media(ref e)) if e.raw_os_error() == Some(libc::EIO))
    );
    assert_content(0, &buf[..out.good]);
    assert_eq!(clock.now(), Duration::from_secs(2));
    assert_eq!(counters.snapshot(), (1, 1, 9728));

    // The bad sector itself never reads; the one after it does.
    let mut sector = [0u8; 512];
    for _ in 0..3 {
        let out = src.read_at(9728, &mut sector);
        assert_eq!(out.good, 0);
        assert!(out.fault.is_some());
    }
    let out = src.read_at(10_240, &mut sector);
    assert_eq!(out.good, 512);
    assert!(out.fault.is_none());
    // Unaligned read starting inside the bad sector: nothing good.
    let out = src.read_at(9_999, &mut sector);
    assert_eq!(out.good, 0);
    assert!(out.fault.is_some());
}

#[test]
fn weak_sectors_succeed_on_a_later_try() {
    let spec = FaultySpec::new(1 << 20).with_weak(4096, 4608, 2);
    let (mut src, _, counters) = source(spec);
    let mut buf = vec![0u8; 8192];
    let out = src.read_at(0, &mut buf);
    assert_eq!((out.good, out.fault.is_some()), (4096, true));
    // The second read that reaches it fails too; the third succeeds.
    let out = src.read_at(4096, &mut buf[..512]);
    assert_eq!((out.good, out.fault.is_some()), (0, true));
    let out = src.read_at(0, &mut buf);
    assert_eq!(out.good, 8192);
    assert!(out.fault.is_none());
    assert_content(0, &buf);
    assert_eq!(counters.snapshot(), (3, 2, 4096 + 8192));
}

#[test]
fn bad_before_weak_spares_the_weak_range() {
    let spec = FaultySpec::new(1 << 20)
        .with_bad(1024, 1536)
        .with_weak(4096, 4608, 1);
    let (mut src, _, _) = source(spec);
    let mut buf = vec![0u8; 8192];
    let out = src.read_at(0, &mut buf);
    assert_eq!(out.good, 1024);
    // The weak sector was never reached, so its one failure is still pending.
    let out = src.read_at(2048, &mut buf[..4096]);
    assert_eq!(out.good, 2048);
    let out = src.read_at(2048, &mut buf[..4096]);
    assert_eq!(out.good, 4096);
}

#[test]
fn slow_ranges_cost_extra_time() {
    let spec =
        FaultySpec::new(1 << 20)
            .with_rate(0)
            .with_slow(65536, 131072, Duration::from_millis(300));
    let (mut src, clock, _) = source(spec);
    let mut buf = vec![0u8; 65536];
    src.read_at(0, &mut buf);
    assert_eq!(clock.now(), Duration::ZERO);
    src.read_at(32768, &mut buf);
    assert_eq!(clock.now(), Duration::from_millis(300));
    src.read_at(131072, &mut buf);
    assert_eq!(clock.now(), Duration::from_millis(300));
}

#[test]
fn gone_until_reopen() {
    let spec = FaultySpec::new(1 << 20).with_gone_after_reads(3);
    let (mut src, clock, counters) = source(spec.with_rate(0));
    let mut buf = vec![0u8; 512];
    for i in 0..3 {
        assert_eq!(src.read_at(i * 512, &mut buf).good, 512);
    }
    for _ in 0..5 {
        let out = src.read_at(0, &mut buf);
        assert_eq!(out.good, 0);
        match out.fault {
            Some(ReadFault::Gone(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENODEV)),
            other => panic!("expected Gone, got {other:?}"),
        }
    }
    assert_eq!(clock.now(), Duration::ZERO, "a gone device fails at once");
    assert!(src.reopen().expect("reopen"));
    assert_eq!(counters.reopens.load(Ordering::Relaxed), 1);
    let out = src.read_at(0, &mut buf);
    assert_eq!(out.good, 512);
    assert!(out.fault.is_none());
    assert_content(0, &buf);
    assert_eq!(counters.snapshot(), (9, 5, 4 * 512));
}

#[test]
fn gone_switch_unplugs_from_outside() {
    let (mut src, _, _) = source(FaultySpec::new(4096));
    let switch = src.gone_switch();
    let mut buf = [0u8; 512];
    assert!(src.read_at(0, &mut buf).fault.is_none());
    switch.store(true, Ordering::Relaxed);
    assert!(src.read_at(0, &mut buf).fault.is_some_and(|f| f.is_gone()));
    assert!(src.reopen().expect("reopen"));
    assert!(src.read_at(0, &mut buf).fault.is_none());
}

#[test]
fn dead_head_stripes_fail() {
    let spec = FaultySpec::dead_head(1 << 20, 4096, 65536, 8192);
    assert_eq!(spec.bad_bytes(), 16 * 4096);
    let (mut src, _, _) = source(spec);
    let mut buf = vec![0u8; 65536];
    let out = src.read_at(65536, &mut buf);
    assert_eq!(out.good, 8192);
    let out = src.read_at(65536 + 12288, &mut buf[..4096]);
    assert_eq!(out.good, 4096);
}

#[test]
fn scattered_bad_sectors_all_fail_and_nothing_else_does() {
    let spec = FaultySpec::scattered_bad_sectors(8 << 20, 512, 50, 42);
    let bad = spec.bad_ranges();
    let (mut src, _, _) = source(spec);
    let mut sector = [0u8; 512];
    let mut failed = Vec::new();
    for s in 0..(8u64 << 20) / 512 {
        if src.read_at(s * 512, &mut sector).fault.is_some() {
            failed.push(s * 512);
        }
    }
    let expected: Vec<u64> = bad.iter().flat_map(|&(a, b)| (a..b).step_by(512)).collect();
    assert_eq!(failed, expected);
}

#[test]
fn big_simulated_disk_reads_fast() {
    // 1 GiB in 1 MiB reads: the content generator must keep up (well under a second in release,
    // a few seconds in debug).
    let (mut src, _, counters) = source(FaultySpec::new(1 << 30));
    let mut buf = vec![0u8; 1 << 20];
    let t = std::time::Instant::now();
    for i in 0..1024u64 {
        assert_eq!(src.read_at(i << 20, &mut buf).good, 1 << 20);
    }
    assert_content(1023 << 20, &buf);
    assert_eq!(counters.bytes_read.load(Ordering::Relaxed), 1 << 30);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
}

// ---- test mode ----

/// 64 KiB test map: `+` 0..16K, `-` 16K..20K, `+` 20K..40K, `?` 40K..64K.
fn test_map() -> Mapfile {
    let mut m = Mapfile::new(65536);
    m.set(0, 16384, BlockStatus::Finished);
    m.set(16384, 4096, BlockStatus::BadSector);
    m.set(20480, 20480, BlockStatus::Finished);
    m
}

#[test]
fn test_mode_reads_finished_blocks_only() {
    let (inner, _, inner_counters) = source(FaultySpec::new(1 << 20));
    let mut src = TestModeSource::new(inner, test_map());
    let mut buf = vec![0u8; 8192];
    let out = src.read_at(4096, &mut buf);
    assert_eq!(out.good, 8192);
    assert!(out.fault.is_none());
    assert_content(4096, &buf);
    let out = src.read_at(16384, &mut buf[..4096]);
    assert_eq!(out.good, 0);
    assert!(matches!(out.fault, Some(ReadFault::Media(_))));
    assert_eq!(src.reads(), (2, 1));
    // The failed read never reached the inner source.
    assert_eq!(inner_counters.snapshot().0, 1);
}

#[test]
fn test_mode_partial_overlap_fails_whole_read() {
    let (inner, _, inner_counters) = source(FaultySpec::new(1 << 20));
    let mut src = TestModeSource::new(inner, test_map());
    let mut buf = vec![0u8; 8192];
    // 12K..20K: the first 4K are finished, but ddrescue fails the whole read (no good prefix).
    let out = src.read_at(12288, &mut buf);
    assert_eq!(out.good, 0);
    assert!(out.fault.is_some());
    // Spanning two finished blocks across a bad one also fails.
    let mut big = vec![0u8; 32768];
    assert_eq!(src.read_at(0, &mut big).good, 0);
    assert_eq!(inner_counters.snapshot().0, 0);
    assert_eq!(src.reads(), (2, 2));
}

#[test]
fn test_mode_size_is_end_of_last_finished_block() {
    let (inner, _, _) = source(FaultySpec::new(1 << 20));
    let src = TestModeSource::new(inner, test_map());
    // The map is 64K long, but its last finished block ends at 40K.
    assert_eq!(src.geometry().size, 40960);
    assert_eq!(src.domain(), &[(0, 16384), (20480, 40960)]);

    // An inner source smaller than the map keeps its size.
    let (inner, _, _) = source(FaultySpec::new(30000));
    assert_eq!(
        TestModeSource::new(inner, test_map()).geometry().size,
        30000
    );

    // No finished block at all: size 0.
    let (inner, _, _) = source(FaultySpec::new(1 << 20));
    assert_eq!(
        TestModeSource::new(inner, Mapfile::new(65536))
            .geometry()
            .size,
        0
    );

    // An inner source reporting size 0 takes the test map's extent.
    let (inner, _, _) = source(FaultySpec::new(0));
    assert_eq!(
        TestModeSource::new(inner, test_map()).geometry().size,
        40960
    );
}

#[test]
fn test_mode_read_at_apparent_end_is_eof() {
    let (inner, _, _) = source(FaultySpec::new(1 << 20));
    let mut src = TestModeSource::new(inner, test_map());
    let mut buf = vec![0u8; 8192];
    let out = src.read_at(36864, &mut buf);
    assert_eq!(out.good, 4096);
    assert!(out.fault.is_none());
    let out = src.read_at(40960, &mut buf);
    assert_eq!(out.good, 0);
    assert!(out.fault.is_none());
}

#[test]
fn test_mode_passes_inner_errors_through() {
    let (inner, _, _) = source(FaultySpec::new(1 << 20).with_bad(8192, 8704));
    let mut src = TestModeSource::new(inner, test_map());
    let mut buf = vec![0u8; 16384];
    let out = src.read_at(0, &mut buf);
    assert_eq!(out.good, 8192);
    assert!(out.fault.is_some());
    assert_eq!(src.reads(), (1, 1));
}

// ----- the drive model of the benchmarks (seeks, transfer, failures, slow zones, semantics) -----

use salvor::device::faulty::MemoryLog;
use salvor::device::scenario::{self, Analyzer};
use salvor::device::{ReadSemantics, RequestSink, WeakDraw};

const MS: Duration = Duration::from_millis(1);

#[test]
fn drive_model_prices_seeks_transfer_and_failures() {
    let spec = FaultySpec::drive(64 << 20).with_bad(3 << 20, (3 << 20) + 512);
    let (mut src, clock, counters) = source(spec);
    let log = MemoryLog::default();
    src.set_log(Box::new(log.clone()));
    let mut buf = vec![0u8; 1 << 20];
    // Sequential from 0: no seek; 1 MiB at 150 MB/s.
    let t = |bytes: u64| Duration::from_nanos(bytes * 1_000_000_000 / 150_000_000);
    assert!(src.read_at(0, &mut buf).fault.is_none());
    let near = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(1);
    assert!(near(clock.now(), t(1 << 20)));
    assert!(src.read_at(1 << 20, &mut buf).fault.is_none());
    assert!(near(clock.now(), t(2 << 20)));
    // A jump: one seek.
    assert!(src.read_at(10 << 20, &mut buf).fault.is_none());
    assert!(near(clock.now(), t(3 << 20) + 8 * MS));
    // O_DIRECT: a failed read delivers nothing; the drive read up to the bad sector, then spent 2 s.
    let before = clock.now();
    let out = src.read_at((2 << 20) + (1 << 19), &mut buf);
    assert_eq!(out.good, 0);
    assert!(matches!(out.fault, Some(ReadFault::Media(_))));
    // A seek, the transfer up to the bad sector, the failure.
    assert!(near(
        clock.now() - before,
        8 * MS + t(1 << 19) + Duration::from_secs(2)
    ));
    // The next request starts where that one ended: no seek.
    assert!(src.read_at((3 << 20) + (1 << 19), &mut buf).fault.is_none());
    let reqs = log.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(
        reqs.iter().map(|r| r.seek).collect::<Vec<_>>(),
        [false, false, true, true, false]
    );
    assert!(reqs[3].failed && reqs[3].good == 0 && reqs[3].reached == 1 << 19);
    assert_eq!(counters.seeks.load(Ordering::Relaxed), 2);
    assert_eq!(reqs[3].start + reqs[3].cost, reqs[4].start);
}

#[test]
fn buffered_semantics_deliver_whole_pages_before_the_bad_one() {
    let bad = (1 << 20) + 5 * 512;
    let spec = FaultySpec::drive(4 << 20)
        .with_bad(bad, bad + 512)
        .with_semantics(ReadSemantics::Buffered { page: 4096 });
    let (mut src, _, _) = source(spec.clone());
    let mut buf = vec![0u8; 1 << 20];
    let out = src.read_at(1 << 19, &mut buf);
    assert_eq!(out.good as u64, (1 << 20) - (1 << 19));
    assert!(out.fault.is_some());
    assert_content(1 << 19, &buf[..out.good]);
    // A read starting inside the failing page gets nothing.
    let out = src.read_at((1 << 20) + 512, &mut buf[..4096]);
    assert_eq!(out.good, 0);
    // The sector-prefix semantics deliver up to the bad sector.
    let (mut src, _, _) = source(spec.with_semantics(ReadSemantics::SectorPrefix));
    let out = src.read_at(1 << 20, &mut buf);
    assert_eq!(out.good, 5 * 512);
}

#[test]
fn slow_zones_cost_per_request() {
    let spec = FaultySpec::drive(8 << 20).with_slow(1 << 20, 2 << 20, 25 * MS);
    let (mut src, clock, _) = source(spec);
    let mut buf = vec![0u8; 65536];
    src.read_at(0, &mut buf);
    let t0 = clock.now();
    // 16 requests of 64 KiB through the slow MiB pay 16 × 25 ms on top of the transfer.
    for i in 0..16u64 {
        src.read_at((1 << 20) + i * 65536, &mut buf);
    }
    let transfer = Duration::from_nanos((1u64 << 20) * 1_000_000_000 / 150_000_000);
    let spent = clock.now() - t0;
    // (A seek to 1 MiB first.)
    assert!(
        spent >= transfer + 16 * 25 * MS + 8 * MS - MS && spent <= transfer + 16 * 25 * MS + 9 * MS
    );
}

#[test]
fn weak_odds_are_seeded_and_drawn_per_sector_or_per_request() {
    let run = |draw: WeakDraw, seed: u64| {
        let mut spec = FaultySpec::drive(1 << 20)
            .with_weak_odds(0, 64 * 512, 0.4)
            .with_seed(seed);
        spec.weak_draw = draw;
        let (mut src, _, _) = source(spec);
        let mut buf = vec![0u8; 512];
        (0..200)
            .map(|i| src.read_at((i % 64) * 512, &mut buf).fault.is_none())
            .collect::<Vec<bool>>()
    };
    let a = run(WeakDraw::PerSector, 5);
    assert_eq!(a, run(WeakDraw::PerSector, 5));
    assert_ne!(a, run(WeakDraw::PerSector, 6));
    let ok = a.iter().filter(|&&x| x).count();
    assert!((50..=110).contains(&ok), "{ok} of 200 succeeded at p = 0.4");
    // Per request: a read over all 64 weak sectors succeeds with p = 0.4; per sector with 0.4^64.
    let whole = |draw: WeakDraw| {
        let mut spec = FaultySpec::drive(1 << 20).with_weak_odds(0, 64 * 512, 0.4);
        spec.weak_draw = draw;
        let (mut src, _, _) = source(spec);
        let mut buf = vec![0u8; 64 * 512];
        (0..100)
            .filter(|_| src.read_at(0, &mut buf).fault.is_none())
            .count()
    };
    assert!((20..=60).contains(&whole(WeakDraw::PerRequest)));
    assert_eq!(whole(WeakDraw::PerSector), 0);
}

#[test]
fn analyzer_times_the_readable_data() {
    let spec = FaultySpec::drive(10 << 20).with_bad(9 << 20, 10 << 20);
    let mut an = Analyzer::new(&spec);
    let (mut src, _, _) = source(spec);
    let log = MemoryLog::default();
    src.set_log(Box::new(log.clone()));
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..10u64 {
        src.read_at(i << 20, &mut buf);
    }
    // Read one MiB again: nothing new.
    src.read_at(0, &mut buf);
    for r in log.requests() {
        an.request(&r);
    }
    let s = an.summary();
    assert_eq!(s.readable, 9 << 20);
    assert_eq!(s.delivered, 9 << 20);
    assert_eq!((s.requests, s.failed_reads, s.seeks), (11, 1, 1));
    let t = |mib: u64| (mib << 20) as f64 / 150e6;
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6);
    assert!(close(s.t100, t(9)), "{:?}", s.t100);
    assert!(close(s.t90, t(9)), "{:?}", s.t90); // 8.1 MiB needs the 9th MiB
    assert_eq!(s.failed_at_100, Some(0));
    // Ten MiB transferred (the failed read stopped at once), one failure, one seek back to 0.
    assert!(
        close(Some(s.drive_time), t(10) + 2.0 + 0.008),
        "{}",
        s.drive_time
    );
    assert!(scenario::build("weak-head", 64 << 20, 1).is_some());
}
