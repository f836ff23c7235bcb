//! Restore and clone onto block devices that already hold data: chunks are written with
//! O_DIRECT, all-zero chunks are zeroed by the kernel (BLKZEROOUT), and an image whose size is
//! not a multiple of the chunk size ends in a partial chunk. Every byte of the target is read back
//! and compared: zero chunks must read as zeros, not as the target's old 0xA5 bytes.
//! Needs root and util-linux (losetup).

mod image_common;
use image_common::*;
use std::path::Path;

const MIB: usize = 1 << 20;
const CHUNK: usize = 4 * MIB;
const OLD: u8 = 0xA5;

/// A source of `chunks` chunk-sized parts and a partial tail of 64 KiB + 1536 bytes (a multiple
/// of 512, not of 4096), from `kinds`: 'd' data, 'z' all zeros, 'm' data with zero runs.
/// The last kind is the tail's.
fn source_bytes(kinds: &str, seed: u64) -> Vec<u8> {
    let tail = 64 * 1024 + 1536;
    let mut v = Vec::new();
    let n = kinds.len();
    for (i, k) in kinds.chars().enumerate() {
        let len = if i + 1 == n { tail } else { CHUNK };
        match k {
            'z' => v.resize(v.len() + len, 0),
            'd' => {
                // disk_bytes has zero runs but, over 4 MiB, never a whole zero chunk; make sure
                // of the first byte anyway.
                let mut d = disk_bytes(len, seed + i as u64);
                d[0] = 1;
                v.extend_from_slice(&d);
            }
            'm' => {
                let mut d = disk_bytes(len, seed + i as u64);
                d[..len / 3].fill(0);
                d[len - 1] = 7;
                v.extend_from_slice(&d);
            }
            other => panic!("unknown chunk kind {other}"),
        }
    }
    v
}

/// A target file of `size` bytes of 0xA5.
fn prefilled(path: &Path, size: usize) {
    write_file(path, &vec![OLD; size]);
}

/// Compares the target's bytes with the source and the rest with the old bytes, naming the first
/// difference (not dumping megabytes).
fn assert_target(got: &[u8], src: &[u8], what: &str) {
    assert!(got.len() >= src.len(), "{what}: target shorter than source");
    if let Some(i) = (0..src.len()).find(|&i| got[i] != src[i]) {
        panic!(
            "{what}: byte {i} (chunk {}, offset {} in it) is 0x{:02X}, source has 0x{:02X}",
            i / CHUNK,
            i % CHUNK,
            got[i],
            src[i]
        );
    }
    if let Some(i) = (src.len()..got.len()).find(|&i| got[i] != OLD) {
        panic!(
            "{what}: byte {i} past the image's end changed to 0x{:02X}",
            got[i]
        );
    }
}

/// Reads a whole block device with O_DIRECT (what the disk holds, not a cached copy).
fn read_device_direct(dev: &Path) -> Vec<u8> {
    use salvor::device::{FileSource, OpenOptions, Source};
    let mut s = FileSource::open(
        dev,
        OpenOptions {
            direct: true,
            sector_size: 0,
        },
    )
    .unwrap();
    let size = s.geometry().size as usize;
    let mut out = vec![0u8; size];
    let r = s.read_at(0, &mut out);
    assert!(
        r.fault.is_none() && r.good == size,
        "reading {}: {r:?}",
        dev.display()
    );
    out
}

/// Checks a target both through the device (O_DIRECT) and, after detaching it, in its backing
/// file.
fn check_target(dev: LoopDev, backing: &Path, src: &[u8], what: &str) {
    assert_target(
        &read_device_direct(&dev.path),
        src,
        &format!("{what} (device)"),
    );
    assert_target(
        &read_dev(&dev.path, src.len()),
        src,
        &format!("{what} (cached)"),
    );
    drop(dev);
    assert_target(&read(backing), src, &format!("{what} (backing file)"));
}

#[test]
fn restore_onto_used_devices_zeroes_zero_chunks_and_writes_the_odd_tail() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // data, zero, data, zero, zero, mixed, then a partial data tail.
    let src = source_bytes("dzdzzmd", 51);
    assert_eq!(src.len(), 6 * CHUNK + 64 * 1024 + 1536);
    let src_file = dir.path().join("src.bin");
    write_file(&src_file, &src);
    let img = dir.path().join("src.img.zst");
    let s = image(&src_file, &img, &opts(CHUNK));
    assert_eq!(s.raw_size, src.len() as u64);

    // A plain loop device, one with direct I/O to its backing file (like a real disk, no second
    // cache), and one with 4096-byte sectors (the 1536-byte end is not a whole sector there).
    let big = src.len().next_multiple_of(4096) + MIB;
    for (name, options, verify) in [
        ("plain", &[][..], false),
        ("dio", &["--direct-io=on"][..], true),
        ("4k", &["--sector-size", "4096"][..], true),
    ] {
        let backing = dir.path().join(format!("{name}.bin"));
        prefilled(&backing, big);
        let tgt = LoopDev::attach_with(&backing, options);
        // Old data cached for the device must not survive either: fill its page cache.
        assert!(read_dev(&tgt.path, big).iter().all(|&b| b == OLD));
        let r = restore(&img, &tgt.path, verify).unwrap();
        assert_eq!(r.bytes, src.len() as u64);
        assert_eq!(r.verified, verify);
        check_target(tgt, &backing, &src, &format!("restore onto {name} loop"));
    }
}

#[test]
fn restore_cli_onto_used_device() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let src = source_bytes("zdzzd", 52);
    let src_file = dir.path().join("src.bin");
    write_file(&src_file, &src);
    let img = dir.path().join("src.img.zst");
    image(&src_file, &img, &opts(CHUNK));
    let backing = dir.path().join("tgt.bin");
    prefilled(&backing, src.len() + MIB);
    let tgt = LoopDev::attach_with(&backing, &["--direct-io=on"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_salvor"))
        .arg("restore")
        .arg(&img)
        .arg(&tgt.path)
        .arg("--yes")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "salvor restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_target(tgt, &backing, &src, "CLI restore");
}

#[test]
fn clone_onto_used_devices() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Ends in zeros: the partial last chunk is zeroed, not written.
    let src = source_bytes("dzzmdzz", 53);
    let src_file = dir.path().join("src.bin");
    write_file(&src_file, &src);
    let src_dev = LoopDev::attach(&src_file, false);
    let big = src.len().next_multiple_of(4096) + 2 * MIB;

    // Device to device, and file to a 4K-sector device.
    let cases: [(&str, &Path, &[&str]); 2] = [
        ("device", &src_dev.path, &["--direct-io=on"]),
        ("file", &src_file, &["--sector-size", "4096"]),
    ];
    for (name, from, options) in cases {
        let backing = dir.path().join(format!("clone-{name}.bin"));
        prefilled(&backing, big);
        let tgt = LoopDev::attach_with(&backing, options);
        let r = clone(from, &tgt.path, true).unwrap();
        assert!(r.verified);
        check_target(tgt, &backing, &src, &format!("clone from {name}"));
    }
    // The source is untouched.
    drop(src_dev);
    assert!(read(&src_file) == src);
}
