//! Corrupt, truncated and incomplete images are detected, located and reported as exit-2 errors,
//! never as panics; unreadable sources stop imaging with a pointer to `salvor rescue`.

mod image_common;
use image_common::*;
use proptest::prelude::*;
use salvor::device::{Geometry, ReadFault, ReadOutcome, Source};
use salvor::image::{ImageFile, SourceInfo};
use salvor::progress::{Control, NoProgress};
use std::path::{Path, PathBuf};

const CHUNK: usize = 4096;

fn make_image(dir: &Path, size: usize, split: Option<u64>) -> (PathBuf, Vec<u8>) {
    let src = dir.join("disk.bin");
    let data = disk_bytes(size, 99);
    write_file(&src, &data);
    let img = dir.join("disk.img.zst");
    let mut o = opts(CHUNK);
    o.split = split;
    image(&src, &img, &o);
    (img, data)
}

fn verify(img: &Path) -> salvor::Result<salvor::image::VerifyReport> {
    salvor::image::verify_image(img, None, 2, &Control::new(), &mut NoProgress)
}

fn expect_corrupt<T: std::fmt::Debug>(r: salvor::Result<T>, needles: &[&str]) -> String {
    let e = r.expect_err("corruption not detected");
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "'{msg}' should mention '{n}'");
    }
    msg
}

#[test]
fn flipped_byte_in_a_chunk_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = make_image(dir.path(), 40 * CHUNK, None);
    let f = ImageFile::open(&img).unwrap();
    // A chunk that holds real data (not the shared zero frame).
    let (k, loc) = f
        .frames
        .iter()
        .enumerate()
        .find(|(_, l)| l.entry.compressed > 200)
        .map(|(k, l)| (k, *l))
        .unwrap();
    drop(f);
    let mut bytes = read(&img);
    let at = (loc.offset + u64::from(loc.entry.compressed) / 2) as usize;
    bytes[at] ^= 0x10;
    write_file(&img, &bytes);
    let msg = expect_corrupt(
        verify(&img),
        &[
            &format!("chunk {k} "),
            &format!("disk offset {}", loc.raw_offset),
        ],
    );
    eprintln!("{msg}");
    // Restore reports it too (the target is a file, so nothing is lost).
    let back = dir.path().join("back.bin");
    expect_corrupt(restore(&img, &back, false), &[&format!("chunk {k} ")]);
}

#[test]
fn truncated_image() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = make_image(dir.path(), 20 * CHUNK, None);
    let len = std::fs::metadata(&img).unwrap().len();
    for cut in [1u64, 9, 100, len / 2, len - 1] {
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.set_len(len - cut).unwrap();
        drop(f);
        expect_corrupt(verify(&img), &["offset"]);
    }
}

#[test]
fn wrong_magic_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.img.zst");
    write_file(&junk, &disk_bytes(10_000, 5));
    expect_corrupt(verify(&junk), &["seek table"]);
    // A plain (non-seekable) zstd file.
    let plain = dir.path().join("plain.zst");
    write_file(&plain, &zstd::encode_all(&b"hello world"[..], 3).unwrap());
    expect_corrupt(verify(&plain), &["seek table"]);
    // Wrong metadata magic: first byte of the file.
    let (img, _) = make_image(dir.path(), 8 * CHUNK, None);
    let mut b = read(&img);
    b[0] ^= 0xFF;
    write_file(&img, &b);
    expect_corrupt(verify(&img), &["metadata", "magic"]);
}

#[test]
fn missing_split_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = make_image(dir.path(), 60 * CHUNK, Some(20_000));
    let parts: Vec<PathBuf> = (0..)
        .map(|i| salvor::image::parts::part_path(&img, i))
        .take_while(|p| p.exists())
        .collect();
    assert!(parts.len() >= 4, "{parts:?}");
    let back = dir.path().join("back.bin");
    restore(&parts[1], &back, false).unwrap();
    assert!(read(&back) == data);
    // Middle part gone.
    let saved = read(&parts[1]);
    std::fs::remove_file(&parts[1]).unwrap();
    expect_corrupt(verify(&parts[0]), &["part 001", "missing"]);
    expect_corrupt(verify(&img), &["part 001", "missing"]);
    write_file(&parts[1], &saved);
    // Last part gone.
    let last = parts.last().unwrap();
    std::fs::remove_file(last).unwrap();
    expect_corrupt(verify(&img), &[&format!("part {:03}", parts.len() - 1)]);
}

/// A source whose sectors from `bad` on fail with EIO.
struct BadSource {
    data: Vec<u8>,
    bad: u64,
}

impl Source for BadSource {
    fn geometry(&self) -> Geometry {
        Geometry {
            size: self.data.len() as u64,
            logical_sector: 512,
            physical_sector: 512,
        }
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        let end = (pos as usize + buf.len()).min(self.data.len());
        let good_end = end.min(self.bad.max(pos) as usize);
        let good = good_end - pos as usize;
        buf[..good].copy_from_slice(&self.data[pos as usize..good_end]);
        if good_end < end {
            ReadOutcome {
                good,
                fault: Some(ReadFault::Media(std::io::Error::from_raw_os_error(
                    libc::EIO,
                ))),
            }
        } else {
            ReadOutcome::ok(good)
        }
    }
    fn describe(&self) -> String {
        "bad disk".into()
    }
}

#[test]
fn read_error_points_to_rescue_and_mapfile_images_what_was_rescued() {
    let dir = tempfile::tempdir().unwrap();
    let data = disk_bytes(64 * CHUNK, 8);
    let out = dir.path().join("bad.img.zst");
    let mut src = BadSource {
        data: data.clone(),
        bad: 100_000,
    };
    let info = SourceInfo {
        path: "/dev/bad".into(),
        ..Default::default()
    };
    let e = salvor::image::create_image_from(
        &mut src,
        info.clone(),
        &out,
        &opts(CHUNK),
        &Control::new(),
        &mut NoProgress,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("salvor rescue") && msg.contains("offset 100000"),
        "{msg}"
    );
    assert!(!out.exists(), "a failed image must not be left behind");

    // The rescued copy plus its mapfile: 100000..120000 was never read.
    let map = dir.path().join("rescue.map");
    std::fs::write(
        &map,
        format!(
            "# Mapfile. Created by GNU ddrescue\n# current_pos  current_status  current_pass\n0x00000000     +               1\n\
             #      pos        size  status\n0x00000000  0x{:08X}  +\n0x{:08X}  0x{:08X}  -\n0x{:08X}  0x{:08X}  +\n",
            100_000, 100_000, 20_000, 120_000, data.len() - 120_000
        ),
    )
    .unwrap();
    let mut rescued = data.clone();
    rescued[100_000..120_000].fill(0xEE); // whatever the copy holds there is not trusted
    let rescued_file = dir.path().join("rescued.bin");
    write_file(&rescued_file, &rescued);
    let mut o = opts(CHUNK);
    o.mapfile = Some(map);
    let s = image(&rescued_file, &out, &o);
    assert_eq!(
        s.holes,
        vec![salvor::image::Hole {
            offset: 100_000,
            size: 20_000
        }]
    );
    let back = dir.path().join("back.bin");
    restore(&out, &back, false).unwrap();
    let mut expect = data.clone();
    expect[100_000..120_000].fill(0);
    assert!(read(&back) == expect);
    match salvor::image::info(&out).unwrap() {
        salvor::image::Info::Image { trailer, .. } => assert_eq!(trailer.holes, s.holes),
        other => panic!("{other:?}"),
    }
}

/// One small image, built once, mutated by every fuzz case.
fn fuzz_base() -> &'static (Vec<u8>, Vec<u8>) {
    static BASE: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (img, data) = make_image(dir.path(), 12 * CHUNK + 100, None);
        (read(&img), data)
    })
}

/// Verifying a mutated image either fails with exit 2 or (the mutation hit a byte no check
/// covers, e.g. JSON whitespace is CRC-covered but the metadata entry's checksum is not) decodes
/// to exactly the original disk.
fn check_mutated(bytes: &[u8]) {
    let (_, data) = fuzz_base();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("f.img.zst");
    write_file(&img, bytes);
    match verify(&img) {
        Err(e) => assert_eq!(e.exit_code(), 2, "{e}"),
        Ok(_) => {
            let back = dir.path().join("back.bin");
            restore(&img, &back, false).unwrap();
            assert!(
                read(&back) == *data,
                "mutation went unnoticed and changed the data"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn fuzz_bit_flips(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (img, _) = fuzz_base();
        let mut b = img.clone();
        let i = pos.index(b.len());
        b[i] ^= 1 << bit;
        check_mutated(&b);
    }

    #[test]
    fn fuzz_truncation(cut in any::<prop::sample::Index>()) {
        let (img, _) = fuzz_base();
        let b = &img[..cut.index(img.len())];
        check_mutated(b);
    }

    #[test]
    fn fuzz_random_bytes(b in prop::collection::vec(any::<u8>(), 0..2048), tail in any::<bool>()) {
        // Random bytes, optionally ending in a plausible seekable footer to get past the first check.
        let mut b = b;
        if tail {
            b.extend_from_slice(&[3, 0, 0, 0, 0x80, 0xB1, 0xEA, 0x92, 0x8F]);
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("r.img.zst");
        write_file(&img, &b);
        let _ = ImageFile::open(&img).map(|_| ());
        if let Err(e) = verify(&img) {
            prop_assert_eq!(e.exit_code(), 2, "{}", e);
        }
    }

    #[test]
    fn fuzz_seek_table_fields(entry in 0usize..16, field in 0usize..3, value in any::<u32>()) {
        let (img, _) = fuzz_base();
        let mut b = img.clone();
        let frames = 12 + 1 + 2;
        let table = b.len() - 9 - frames * 12;
        let at = table + (entry % frames) * 12 + field * 4;
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        check_mutated(&b);
    }
}

/// Random bytes: zstd stores them as raw blocks, so two such chunks of equal length make frames
/// of equal length that can be swapped without breaking the layout.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn consistently_swapped_chunk_is_caught_by_its_digest() {
    // A frame from another image, with the seek table's checksum patched to match: every zstd
    // and seek-table check passes, only the chunk's SHA-256 can tell.
    let dir = tempfile::tempdir().unwrap();
    let mut imgs = Vec::new();
    for seed in [1u64, 2] {
        let src = dir.path().join(format!("r{seed}.bin"));
        write_file(&src, &random_bytes(6 * CHUNK, seed));
        let img = dir.path().join(format!("r{seed}.img.zst"));
        image(&src, &img, &opts(CHUNK));
        imgs.push(img);
    }
    let (a, b) = (
        ImageFile::open(&imgs[0]).unwrap(),
        ImageFile::open(&imgs[1]).unwrap(),
    );
    let k = 3;
    let (la, lb) = (a.frames[k], b.frames[k]);
    assert_eq!(
        la.entry.compressed, lb.entry.compressed,
        "raw frames differ in size"
    );
    let mut bytes = read(&imgs[0]);
    let other = read(&imgs[1]);
    let n = la.entry.compressed as usize;
    bytes[la.offset as usize..la.offset as usize + n]
        .copy_from_slice(&other[lb.offset as usize..lb.offset as usize + n]);
    // Seek table entries are 12 bytes (compressed, decompressed, checksum) after an 8-byte
    // header; entry 0 is the metadata frame, so chunk k is entry k + 1.
    let entries = a.frames.len() + 3; // metadata, chunks, digests, trailer
    let table_at = bytes.len() - (8 + entries * 12 + 9);
    let at = table_at + 8 + (k + 1) * 12 + 8;
    bytes[at..at + 4].copy_from_slice(&lb.entry.checksum.to_le_bytes());
    write_file(&imgs[0], &bytes);
    expect_corrupt(
        verify(&imgs[0]),
        &[&format!("chunk {k} "), "SHA-256 of the decoded chunk"],
    );
    // Restore with --verify checks the digests too.
    let back = dir.path().join("back.bin");
    expect_corrupt(restore(&imgs[0], &back, true), &[&format!("chunk {k} ")]);
}

#[test]
fn damaged_chunk_digest_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = make_image(dir.path(), 10 * CHUNK, None);
    let f = ImageFile::open(&img).unwrap();
    // The digest frame follows the last chunk frame: 16-byte header, then 32 bytes per chunk.
    let last = f.frames[f.frames.len() - 1];
    let digests_at = (last.offset + u64::from(last.entry.compressed)) as usize;
    drop(f);
    let mut bytes = read(&img);
    bytes[digests_at + 16 + 5] ^= 1;
    write_file(&img, &bytes);
    expect_corrupt(verify(&img), &["chunk digests", "CRC-32"]);
}
