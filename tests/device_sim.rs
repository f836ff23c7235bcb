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
