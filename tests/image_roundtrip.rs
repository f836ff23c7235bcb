//! Image → restore / zstd -d round trips on files, split images and sparse raw images.

mod image_common;
use image_common::*;
use salvor::progress::{Control, NoProgress};
use std::process::Command;

const CHUNK: usize = 64 << 10;

#[test]
fn file_round_trip_and_stock_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    // Not a multiple of the chunk size, with all-zero chunks in it.
    let data = disk_bytes(3 * 1024 * 1024 + 12_345, 7);
    write_file(&src, &data);
    let img = dir.path().join("disk.img.zst");
    let s = image(&src, &img, &opts(CHUNK));
    assert_eq!(s.raw_size, data.len() as u64);
    assert!(s.zero_chunks > 0, "test data should contain zero chunks");
    // The disk digest by default (stock tools reproduce it); the flat SHA-256 on request.
    assert_eq!(s.sha256, None);
    assert_eq!(
        s.chunks_sha256.as_deref(),
        Some(chunk_digest_stock(&src, CHUNK).as_str())
    );
    let flat_img = dir.path().join("flat.img.zst");
    let mut o = opts(CHUNK);
    o.sha256 = true;
    let f = image(&src, &flat_img, &o);
    assert_eq!(f.sha256.as_deref(), Some(sha(&src).as_str()));
    assert_eq!(f.chunks_sha256, s.chunks_sha256);
    let v =
        salvor::image::verify_image(&flat_img, None, 2, &Control::new(), &mut NoProgress).unwrap();
    assert_eq!(v.sha256, f.sha256);
    assert_eq!(v.chunks_sha256, f.chunks_sha256);

    let out = dir.path().join("stock.raw");
    zstd_decompress(&img, &out);
    assert!(read(&out) == data, "zstd -d differs");

    let back = dir.path().join("restored.bin");
    let r = restore(&img, &back, true).unwrap();
    assert!(r.verified);
    assert_eq!(r.chunks_sha256, s.chunks_sha256);
    assert!(read(&back) == data, "restore differs");

    let v =
        salvor::image::verify_image(&img, Some(&src), 2, &Control::new(), &mut NoProgress).unwrap();
    assert_eq!(v.chunks_sha256, s.chunks_sha256);
    assert_eq!(v.sha256, None);
    match salvor::image::info(&img).unwrap() {
        salvor::image::Info::Image {
            metadata, trailer, ..
        } => {
            assert_eq!(metadata.source_size, data.len() as u64);
            assert_eq!(trailer.chunks, (data.len() as u64).div_ceil(CHUNK as u64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_and_tiny_sources() {
    let dir = tempfile::tempdir().unwrap();
    for (i, size) in [0usize, 1, 4096, CHUNK].into_iter().enumerate() {
        let src = dir.path().join(format!("d{i}"));
        let data = disk_bytes(size, 3 + i as u64);
        write_file(&src, &data);
        let img = dir.path().join(format!("d{i}.img.zst"));
        image(&src, &img, &opts(CHUNK));
        let out = dir.path().join(format!("d{i}.out"));
        zstd_decompress(&img, &out);
        assert!(read(&out) == data);
        let back = dir.path().join(format!("d{i}.back"));
        restore(&img, &back, false).unwrap();
        assert!(read(&back) == data);
    }
}

#[test]
fn split_image_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    let data = disk_bytes(2 * 1024 * 1024, 11);
    write_file(&src, &data);
    let img = dir.path().join("disk.img.zst");
    let mut o = opts(CHUNK);
    o.split = Some(100_000);
    let s = image(&src, &img, &o);
    assert!(s.parts.len() > 3, "{:?}", s.parts);
    assert!(!img.exists());
    // cat parts | zstd -d
    let out = dir.path().join("cat.raw");
    let script = format!(
        "cat {}/disk.img.zst.* | zstd -q -d > {}",
        dir.path().display(),
        out.display()
    );
    require_tool("zstd");
    run(Command::new("sh").arg("-c").arg(&script));
    assert!(read(&out) == data);
    // Any part's name, or the base name, opens the image.
    for name in ["disk.img.zst", "disk.img.zst.000", "disk.img.zst.002"] {
        let back = dir.path().join(format!("back-{name}"));
        restore(&dir.path().join(name), &back, false).unwrap();
        assert!(read(&back) == data, "{name}");
    }
}

#[test]
fn sparse_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    let mut data = vec![0u8; 8 * 1024 * 1024];
    for (i, b) in data[..100_000].iter_mut().enumerate() {
        *b = (i % 251) as u8 | 1;
    }
    let n = data.len();
    data[n - 5000..].fill(0xAB);
    write_file(&src, &data);
    let img = dir.path().join("disk.img");
    let s = image(&src, &img, &opts(CHUNK));
    assert_eq!(s.raw_size, data.len() as u64);
    assert!(read(&img) == data);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        allocated < 1024 * 1024,
        "raw image not sparse: {allocated} bytes allocated"
    );
    // SEEK_HOLE finds the first hole right after the data.
    let f = std::fs::File::open(&img).unwrap();
    use std::os::unix::io::AsRawFd;
    // SAFETY: lseek on an open descriptor.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    assert!(
        hole > 0 && (hole as usize) < 1024 * 1024,
        "first hole at {hole}"
    );
    // And a raw image restores like a salvor one.
    let back = dir.path().join("back.bin");
    restore(&img, &back, true).unwrap();
    assert!(read(&back) == data);
}

#[test]
fn existing_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    write_file(&src, &disk_bytes(100_000, 1));
    let img = dir.path().join("disk.img.zst");
    write_file(&img, b"precious");
    let e = salvor::image::create_image(&src, &img, &opts(CHUNK), &Control::new(), &mut NoProgress)
        .unwrap_err();
    assert!(matches!(e, salvor::Error::Refused { .. }), "{e}");
    assert_eq!(read(&img), b"precious");
}

#[test]
fn stop_request_interrupts_and_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    write_file(&src, &disk_bytes(2 * 1024 * 1024, 4));
    let img = dir.path().join("disk.img.zst");
    let control = Control::new();
    control.request_stop(salvor::progress::StopReason::Signal(15));
    let e = salvor::image::create_image(&src, &img, &opts(CHUNK), &control, &mut NoProgress)
        .unwrap_err();
    assert!(matches!(e, salvor::Error::Interrupted(15)), "{e}");
    assert_eq!(e.exit_code(), 128 + 15);
    assert!(!img.exists());
}

/// Collects what an observer is told.
#[derive(Default)]
struct Recorder {
    events: Vec<salvor::progress::ImageEvent>,
    snapshots: Vec<salvor::progress::ImageSnapshot>,
}

impl salvor::progress::ImageObserver for Recorder {
    fn event(&mut self, e: &salvor::progress::ImageEvent) {
        self.events.push(e.clone());
    }
    fn progress(&mut self, s: &salvor::progress::ImageSnapshot) {
        self.snapshots.push(s.clone());
    }
}

#[test]
fn observer_sees_phases_and_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    let data = disk_bytes(1024 * 1024, 9);
    write_file(&src, &data);
    let img = dir.path().join("disk.img.zst");
    let mut rec = Recorder::default();
    salvor::image::create_image(&src, &img, &opts(CHUNK), &Control::new(), &mut rec).unwrap();
    let last = rec.snapshots.last().expect("a final snapshot");
    assert_eq!(last.bytes_in, data.len() as u64);
    assert_eq!(last.bytes_read, data.len() as u64);
    assert!(last.ratio > 0.0 && last.ratio <= 1.1, "{}", last.ratio);
    assert!(matches!(
        rec.events.last(),
        Some(salvor::progress::ImageEvent::Finished { ok: true })
    ));
}

#[test]
fn incompressible_chunks_are_stored_raw_and_decode_with_stock_zstd() {
    // Chunks big enough to be sampled: random ones are stored as raw zstd blocks without
    // compressing, text ones are compressed; stock zstd decodes both and checks their checksums.
    const BIG: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mixed.bin");
    let mut data = Vec::new();
    for k in 0..6u64 {
        if k % 2 == 0 {
            let mut x = k + 0x9E37_79B9;
            data.extend((0..BIG).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            }));
        } else {
            data.extend((0..BIG).map(|i| b"a compressible line of text\n"[i % 28]));
        }
    }
    data.extend_from_slice(&[0x5a; 12_288]);
    write_file(&src, &data);
    let img = dir.path().join("mixed.img.zst");
    let s = image(&src, &img, &opts(BIG));
    // Three raw chunks (a few bytes of block headers over 1 MiB each) and three tiny ones.
    let raw = 3 * BIG as u64;
    assert!(
        s.output_size > raw && s.output_size < raw + 64 * 1024,
        "image of {} bytes",
        s.output_size
    );
    let f = salvor::image::ImageFile::open(&img).unwrap();
    for (k, fr) in f.frames.iter().enumerate().take(6) {
        let stored = fr.entry.compressed as usize > BIG;
        assert_eq!(
            stored,
            k % 2 == 0,
            "chunk {k}: {} bytes",
            fr.entry.compressed
        );
    }
    drop(f);
    let out = dir.path().join("stock.raw");
    zstd_decompress(&img, &out);
    assert!(read(&out) == data, "zstd -d differs");
    run(Command::new("zstd").arg("-q").arg("-t").arg(&img));
    salvor::image::verify_image(&img, Some(&src), 2, &Control::new(), &mut NoProgress).unwrap();
    let back = dir.path().join("back.bin");
    restore(&img, &back, true).unwrap();
    assert!(read(&back) == data, "restore differs");
}
