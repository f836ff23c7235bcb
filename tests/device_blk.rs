//! FileSource and FileDest on regular files and on real block devices (loop devices).
//!
//! Needs root and loop devices. Without them these tests FAIL with a message saying so: a rescue
//! tool whose block-device path was never exercised must not look green.

use salvor::device::file::{device_size, sector_sizes, AlignedBuf};
use salvor::device::{Dest, FileDest, FileSource, OpenOptions, ReadFault, Source};
use salvor::Error;
use std::io;
use std::path::PathBuf;
use std::process::Command;

/// Deterministic, position-dependent test content that differs between sectors.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i / 512) as u8)
        .collect()
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{cmd}` ({e}); these tests need util-linux (losetup, blockdev) and root")
    });
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}; these tests need root and loop devices",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device over a temp file; Drop detaches it and removes the file, even if the test panics.
struct LoopDev {
    dev: PathBuf,
    backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    fn new(content: &[u8], sector_size: u32) -> LoopDev {
        let dir = tempfile::tempdir().expect("tempdir");
        let backing = dir.path().join("disk.img");
        std::fs::write(&backing, content).expect("write backing file");
        let ss = sector_size.to_string();
        let backing_str = backing.to_str().expect("utf-8 temp path");
        let dev = run(
            "losetup",
            &["-f", "--show", "--sector-size", &ss, backing_str],
        );
        assert!(
            dev.starts_with("/dev/loop"),
            "losetup returned no device: {dev:?}"
        );
        LoopDev {
            dev: PathBuf::from(dev),
            backing,
            _dir: dir,
        }
    }

    fn blockdev(&self, flag: &str) -> u64 {
        let dev = self.dev.to_str().expect("utf-8 device path");
        run("blockdev", &[flag, dev])
            .parse()
            .expect("blockdev prints a number")
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

fn read_exact(src: &mut impl Source, pos: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let out = src.read_at(pos, &mut buf);
    assert!(out.fault.is_none(), "read at {pos}+{len}: {:?}", out.fault);
    buf.truncate(out.good);
    buf
}

#[test]
fn ioctls_match_blockdev() {
    let content = pattern(4 << 20);
    for ss in [512u32, 4096] {
        let lo = LoopDev::new(&content, ss);
        let src = FileSource::open(&lo.dev, OpenOptions::default()).expect("open loop device");
        assert!(src.is_block_device());
        let g = src.geometry();
        assert_eq!(g.size, lo.blockdev("--getsize64"));
        assert_eq!(u64::from(g.logical_sector), lo.blockdev("--getss"));
        assert_eq!(u64::from(g.physical_sector), lo.blockdev("--getpbsz"));
        assert_eq!(g.logical_sector, ss);
        assert_eq!(g.size, content.len() as u64);

        let f = std::fs::File::open(&lo.dev).expect("open");
        assert_eq!(device_size(&f).expect("size"), content.len() as u64);
        let (l, p) = sector_sizes(&f).expect("sector sizes");
        assert_eq!(u64::from(l), lo.blockdev("--getss"));
        assert_eq!(u64::from(p), lo.blockdev("--getpbsz"));
    }
}

#[test]
fn sector_size_override_keeps_direct_alignment_of_device() {
    let content = pattern(1 << 20);
    let lo = LoopDev::new(&content, 4096);
    let opts = OpenOptions {
        direct: true,
        sector_size: 512,
    };
    let mut src = FileSource::open(&lo.dev, opts).expect("open");
    assert_eq!(src.geometry().logical_sector, 512);
    // A wrong -b must not turn into EINVAL: the bounce buffer uses the device's real sector size.
    assert_eq!(src.direct_alignment(), 4096);
    assert_eq!(read_exact(&mut src, 512, 512), &content[512..1024]);
}

#[test]
fn buffered_reads_match_content() {
    let content = pattern(3 << 20);
    let lo = LoopDev::new(&content, 512);
    let mut src = FileSource::open(&lo.dev, OpenOptions::default()).expect("open");
    assert!(!src.is_direct());
    for &(pos, len) in &[
        (0u64, 65536usize),
        (1, 1),
        (511, 3),
        (12_345, 100_000),
        (1 << 20, 1 << 20),
    ] {
        assert_eq!(
            read_exact(&mut src, pos, len),
            &content[pos as usize..pos as usize + len],
            "read at {pos}+{len}"
        );
    }
    // Reading over the end is short, not an error.
    let end = content.len() as u64;
    assert_eq!(
        read_exact(&mut src, end - 100, 4096),
        &content[content.len() - 100..]
    );
    assert!(read_exact(&mut src, end, 4096).is_empty());
}

#[test]
fn direct_reads_at_unaligned_positions() {
    let content = pattern(2 << 20);
    for ss in [512u32, 4096] {
        let lo = LoopDev::new(&content, ss);
        let opts = OpenOptions {
            direct: true,
            sector_size: 0,
        };
        let mut src = FileSource::open(&lo.dev, opts).expect("open O_DIRECT");
        assert!(src.is_direct());
        assert_eq!(src.direct_alignment(), ss as usize);
        let cases: &[(u64, usize)] = &[
            (0, 4096),
            (1, 1),
            (100, 5000),
            (511, 2),
            (4095, 4098),
            (65_536 + 17, 131_072),
            (1 << 20, 1),
        ];
        for &(pos, len) in cases {
            assert_eq!(
                read_exact(&mut src, pos, len),
                &content[pos as usize..pos as usize + len],
                "sector size {ss}, read at {pos}+{len}"
            );
        }
        assert!(src.bounce_bytes() > 0);
        // Unaligned caller buffer at an aligned position and length.
        let mut backing = vec![0u8; 8192 + 1];
        let buf = &mut backing[1..];
        let out = src.read_at(8192, buf);
        assert!(out.fault.is_none());
        assert_eq!(out.good, 8192);
        assert_eq!(buf, &content[8192..16384]);
        // Over the end: short.
        let end = content.len() as u64;
        assert_eq!(
            read_exact(&mut src, end - 10, 100),
            &content[content.len() - 10..]
        );
        assert!(read_exact(&mut src, end, 4096).is_empty());
    }
}

#[test]
fn direct_reads_into_aligned_buffers() {
    let content = pattern(2 << 20);
    let lo = LoopDev::new(&content, 4096);
    let opts = OpenOptions {
        direct: true,
        sector_size: 0,
    };
    let mut src = FileSource::open(&lo.dev, opts).expect("open O_DIRECT");
    let mut buf = AlignedBuf::new(256 << 10, 4096);
    for pos in [0u64, 4096, 1 << 20, (2 << 20) - (256 << 10)] {
        let out = src.read_at(pos, &mut buf);
        assert!(out.fault.is_none());
        assert_eq!(out.good, buf.len());
        assert_eq!(&buf[..], &content[pos as usize..pos as usize + buf.len()]);
    }
    assert_eq!(
        src.bounce_bytes(),
        0,
        "aligned reads must not go through the bounce buffer"
    );
    // Last 64 KiB and beyond: short read, still aligned.
    let out = src.read_at((2 << 20) - 65536, &mut buf);
    assert!(out.fault.is_none());
    assert_eq!(out.good, 65536);
    assert_eq!(&buf[..65536], &content[(2 << 20) - 65536..]);
}

#[test]
fn regular_file_source_buffered_and_direct() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image");
    // Not a multiple of 4096: the O_DIRECT tail read is short.
    let content = pattern(1_000_003);
    std::fs::write(&path, &content).expect("write");
    for direct in [false, true] {
        let opts = OpenOptions {
            direct,
            sector_size: 0,
        };
        let mut src = FileSource::open(&path, opts).expect("open file");
        assert!(!src.is_block_device());
        assert_eq!(src.geometry().size, content.len() as u64);
        assert_eq!(src.geometry().logical_sector, 512);
        for &(pos, len) in &[(0u64, 4096usize), (3, 70_000), (999_000, 10_000)] {
            let end = (pos as usize + len).min(content.len());
            assert_eq!(
                read_exact(&mut src, pos, len),
                &content[pos as usize..end],
                "direct={direct} read at {pos}+{len}"
            );
        }
    }
}

#[test]
fn source_rejects_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = FileSource::open(dir.path(), OpenOptions::default()).err();
    assert!(
        matches!(err, Some(Error::InvalidArgument { .. })),
        "{err:?}"
    );
}

/// A disk the kernel removes (unplug, virtio `device_del`) drops to size 0 and reads of the
/// open descriptor return 0 bytes; a loop device shrunk under an open FileSource (`losetup -c`)
/// does the same. That is "device gone", not a short device and not bad sectors.
#[test]
fn block_device_that_shrinks_while_open_is_gone() {
    for direct in [false, true] {
        let content = pattern(4 << 20);
        let lo = LoopDev::new(&content, 512);
        let mut src = FileSource::open(
            &lo.dev,
            OpenOptions {
                direct,
                ..OpenOptions::default()
            },
        )
        .expect("open loop source");
        assert_eq!(read_exact(&mut src, 0, 65536), content[..65536]);
        std::fs::File::options()
            .write(true)
            .open(&lo.backing)
            .and_then(|f| f.set_len(0))
            .expect("truncate the backing file");
        run(
            "losetup",
            &["-c", lo.dev.to_str().expect("utf-8 device path")],
        );
        let mut buf = AlignedBuf::new(1 << 20, 4096);
        let out = src.read_at(1 << 20, &mut buf);
        assert_eq!(out.good, 0, "direct={direct}");
        assert!(
            matches!(out.fault, Some(ReadFault::Gone(_))),
            "direct={direct}: {:?}",
            out.fault
        );
    }
}

/// A regular file that shrinks is not a device that went away: the short read has no fault
/// (the engine reports it as an internal inconsistency).
#[test]
fn regular_file_short_read_has_no_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.img");
    std::fs::write(&path, pattern(1 << 20)).expect("write file");
    let mut src = FileSource::open(&path, OpenOptions::default()).expect("open file");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(4096))
        .expect("truncate");
    let mut buf = vec![0u8; 65536];
    let out = src.read_at(0, &mut buf);
    assert_eq!(out.good, 4096);
    assert!(out.fault.is_none(), "{:?}", out.fault);
}

#[test]
fn fault_classification() {
    let class = |errno| match ReadFault::classify(io::Error::from_raw_os_error(errno)) {
        ReadFault::Media(_) => "media",
        ReadFault::Gone(_) => "gone",
        ReadFault::Other(_) => "other",
    };
    assert_eq!(class(libc::EIO), "media");
    assert_eq!(class(libc::ENODATA), "media");
    for e in [libc::ENODEV, libc::ENXIO, libc::EBADF, libc::ENOMEDIUM] {
        assert_eq!(class(e), "gone", "errno {e}");
    }
    assert_eq!(class(libc::EINVAL), "other");
}

// ---- FileDest ----

#[test]
fn dest_creates_new_file_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.img");
    let mut d = FileDest::open(&path, false, true).expect("create");
    assert!(d.is_new());
    assert!(!d.is_block_device());
    d.write_at(4096, b"hello").expect("write");
    d.extend_to(1 << 20).expect("extend");
    d.sync().expect("sync");
    assert_eq!(d.size().expect("size"), 1 << 20);
    drop(d);

    // Reopening: not new, and nothing is truncated.
    let d = FileDest::open(&path, false, true).expect("reopen");
    assert!(!d.is_new());
    let data = std::fs::read(&path).expect("read back");
    assert_eq!(data.len(), 1 << 20);
    assert_eq!(&data[4096..4101], b"hello");
    assert!(data[..4096].iter().all(|&b| b == 0));
}

#[test]
fn dest_missing_without_create_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.img");
    let err = FileDest::open(&path, false, false).err();
    assert!(matches!(err, Some(Error::Io { .. })), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn dest_refuses_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = FileDest::open(dir.path(), true, true).err();
    assert!(matches!(err, Some(Error::Refused { .. })), "{err:?}");
}

#[test]
fn dest_block_device_needs_force() {
    let content = pattern(1 << 20);
    let lo = LoopDev::new(&content, 512);
    let err = FileDest::open(&lo.dev, false, true).err();
    match &err {
        Some(Error::Refused { target, reason }) => {
            assert_eq!(target, &lo.dev);
            assert!(reason.contains("--force"), "{reason}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains(lo.dev.to_str().unwrap_or("?")), "{msg}");

    let mut d = FileDest::open(&lo.dev, true, true).expect("open with force");
    assert!(d.is_block_device());
    assert!(!d.is_new());
    assert_eq!(d.size().expect("size"), 1 << 20);
    d.write_at(512, &[0xAB; 1024]).expect("write");
    d.extend_to(2 << 20).expect("extend is a no-op on devices");
    d.sync().expect("sync");
    let mut src = FileSource::open(&lo.dev, OpenOptions::default()).expect("open");
    assert_eq!(read_exact(&mut src, 0, 2048)[512..1536], [0xAB; 1024]);
    assert_eq!(read_exact(&mut src, 1536, 512), &content[1536..2048]);
}

#[test]
fn dest_device_full_is_no_space_with_offset() {
    let lo = LoopDev::new(&pattern(65536), 512);
    let mut d = FileDest::open(&lo.dev, true, false).expect("open with force");
    let err = d.write_at(65536 - 1024, &[0u8; 4096]).err();
    match err {
        Some(Error::NoSpace { path, offset }) => {
            assert_eq!(path, lo.dev);
            assert_eq!(offset, 65536);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

#[test]
fn dest_direct_writes_and_zeroes_on_devices() {
    for ss in [512u32, 4096] {
        let size = 4 << 20;
        let content = pattern(size);
        let lo = LoopDev::new(&content, ss);
        let mut d = FileDest::open(&lo.dev, true, false).expect("open with force");
        assert!(d.enable_direct_writes().expect("O_DIRECT open"), "{ss}");
        assert!(d.zeroes_offloaded());
        let mut want = content.clone();
        // Cache the old content, so that stale cached pages would show.
        let mut src = FileSource::open(&lo.dev, OpenOptions::default()).expect("open");
        assert_eq!(read_exact(&mut src, 0, size), content);

        let mut buf = AlignedBuf::new((1 << 20) + 1536, 4096);
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        // Sector position, odd length (a whole sector count only with 512-byte sectors).
        d.write_at(1 << 20, &buf).expect("write");
        want[1 << 20..(2 << 20) + 1536].copy_from_slice(&buf);
        // A GPT-like write from a Vec at a sector position.
        d.write_at(8192, &[0x42; 512]).expect("write");
        want[8192..8704].fill(0x42);
        // Zeroes: an unaligned range (whole sectors inside go to BLKZEROOUT), and one that is
        // exactly whole sectors.
        d.write_zeroes(3000, 1 << 19).expect("zeroes");
        want[3000..3000 + (1 << 19)].fill(0);
        d.write_zeroes(3 << 20, 1 << 19).expect("zeroes");
        want[3 << 20..(3 << 20) + (1 << 19)].fill(0);
        assert!(d.zeroes_offloaded(), "loop devices support BLKZEROOUT");
        d.sync().expect("sync");

        assert!(
            read_exact(&mut src, 0, size) == want,
            "device differs ({ss})"
        );
        let mut direct = FileSource::open(
            &lo.dev,
            OpenOptions {
                direct: true,
                sector_size: 0,
            },
        )
        .expect("open");
        assert!(
            read_exact(&mut direct, 0, size) == want,
            "disk differs ({ss})"
        );

        // Past the end: NoSpace at the device's end, for direct writes and for zeroes.
        let at_end = AlignedBuf::new(3 * 4096, 4096);
        for r in [
            d.write_at(size as u64 - 4096, &at_end),
            d.write_zeroes(size as u64 - 4096, 3 * 4096),
        ] {
            match r {
                Err(Error::NoSpace { path, offset }) => {
                    assert_eq!(path, lo.dev);
                    assert_eq!(offset, size as u64, "{ss}");
                }
                other => panic!("expected NoSpace, got {other:?}"),
            }
        }
    }
}
