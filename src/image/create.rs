//! Imaging: disk → salvor image (seekable zstd) or sparse raw image.
//!
//! Compressed pipeline: a reader thread fills pooled chunk buffers from the source and hands each
//! to the compressor queue (and, with `--sha256`, to the flat SHA-256 thread); N compressor
//! threads (one reusable zstd context and output buffer each) hash each chunk and turn it into a
//! frame; the calling thread writes frames in disk order and reports progress. All-zero chunks
//! skip compression and hashing: they reuse one precomputed frame and digest.

use super::digest::{encode_digests, ChunkDigester, Sha256Digest};
use super::format::*;
use super::parts::PartWriter;
use super::pool::{buffers_for, in_order, Counters, Meter, Piece, Pool, PooledBuf};
use super::srcread::Readable;
use super::stream::{next_job, read_source, stream_chunks, Input};
use super::stream::{Digests, Hashing};
use super::{ImageOptions, ImageSummary};
use crate::device::{Dest, FileDest, Source};
use crate::error::{Error, Result};
use crate::progress::{Control, ImageEvent, ImageObserver, ImagePhase};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

enum Frame {
    /// The precomputed all-zero frame.
    Zero,
    /// A compressed frame (the Vec goes back to the output pool after writing).
    Data(Vec<u8>),
}

/// A compressed chunk: its raw length, frame and digest.
struct Compressed {
    raw_len: usize,
    frame: Frame,
    digest: Option<Sha256Digest>,
}

type Msg = Piece<Compressed>;

/// The checksum a frame carries in its last four bytes (XXH64 low 32 bits of the content).
fn frame_checksum(frame: &[u8]) -> u32 {
    le32(frame, frame.len() - 4)
}

/// Slices of a chunk compressed to judge whether the whole chunk is worth compressing.
const SAMPLES: usize = 8;
const SAMPLE_LEN: usize = 16 << 10;

/// Whether `data` looks incompressible (random, encrypted, already compressed): none of 8
/// slices of 16 KiB spread over it saves 3 % when compressed at the image's level, and it has
/// no all-zero 4 KiB page and hardly any repeated sector. A compressible chunk usually answers
/// at the first slice (0.4 % of the work of compressing it); an incompressible one costs all 8
/// (3 %), and zstd would have stored it as raw blocks anyway, after running its match finder
/// over every byte.
///
/// Why the pages and the odd slice offsets: in a used-blocks image a chunk is often old random
/// data with the unallocated blocks zeroed between, in a layout that repeats at power-of-two
/// strides, and file data repeats (measured: a chunk of compressed files, three quarters of its
/// pages stored twice, compresses to 18 % while every slice looks random; 6.5 MB lost on a 160 MB
/// image before these checks).
fn looks_incompressible(
    cctx: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    scratch: &mut Vec<u8>,
) -> bool {
    const PAGE: usize = 4096;
    const SECTOR: usize = 512;
    if data.len() < 4 * SAMPLES * SAMPLE_LEN {
        return false;
    }
    let step = data.len() / SAMPLES;
    let samples_incompressible = (0..SAMPLES).all(|i| {
        // A different, sector-aligned offset inside each eighth (a fixed sequence of odd
        // multiples of 7.5 KiB, so results are reproducible).
        let shift = ((2 * i + 1) * 15 * 512) % (step - SAMPLE_LEN);
        let at = i * step + shift;
        let sample = &data[at..at + SAMPLE_LEN];
        scratch.clear();
        cctx.compress_to_buffer(sample, scratch)
            .is_ok_and(|n| n * 100 >= SAMPLE_LEN * 97)
    });
    if !samples_incompressible {
        return false;
    }
    // Zero pages, and pages repeated inside the chunk (the same file stored twice), compress
    // although no slice does. Scanning for zeros stops at a page's first non-zero byte; hashing
    // the pages costs ~1/30 of compressing them.
    if data.chunks(PAGE).any(crate::device::is_zero) {
        return false;
    }
    // Sectors, not pages: FAT and NTFS data need not be 4 KiB-aligned on the disk.
    let mut hashes: Vec<u64> = data
        .chunks(SECTOR)
        .map(|p| xxhash_rust::xxh64::xxh64(p, 0))
        .collect();
    hashes.sort_unstable();
    let repeats = hashes.windows(2).filter(|w| w[0] == w[1]).count();
    repeats * 200 < hashes.len()
}

fn new_compressor(level: i32) -> Result<zstd::bulk::Compressor<'static>> {
    let zerr = |e: std::io::Error| Error::Internal(format!("zstd: {e}"));
    let mut c = zstd::bulk::Compressor::new(level).map_err(zerr)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .map_err(zerr)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
        .map_err(zerr)?;
    Ok(c)
}

/// Images `src` (of `size` bytes; only `readable` parts are read) into a salvor image at `output`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_compressed(
    src: &mut dyn Source,
    name: &Path,
    size: u64,
    readable: &Readable,
    mut metadata: Metadata,
    output: &Path,
    opts: &ImageOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<ImageSummary> {
    let start = Instant::now();
    let chunk = opts.chunk_size;
    let level = opts.level;
    let nchunks = size.div_ceil(chunk as u64);
    let zero_frame = {
        let mut c = new_compressor(level)?;
        c.compress(&vec![0u8; chunk])
            .map_err(|e| Error::Internal(format!("zstd: {e}")))?
    };
    metadata.split_size = opts.split;
    let mut writer = PartWriter::create(output, opts.split)?;
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Imaging,
    });
    for h in &readable.holes {
        obs.event(&ImageEvent::Hole {
            offset: h.offset,
            size: h.size,
        });
    }
    let result = (|| {
        let meta_json = serde_json::to_vec_pretty(&metadata)
            .map_err(|e| Error::Internal(format!("metadata JSON: {e}")))?;
        let meta_frame = encode_tagged_frame(META_TAG, &meta_json);
        let mut entries = Vec::with_capacity(nchunks as usize + 3);
        entries.push(SeekEntry {
            compressed: meta_frame.len() as u32,
            decompressed: 0,
            checksum: XXH64_EMPTY_LOW32,
        });
        writer.write(&meta_frame)?;
        let (digests, zero_chunks) = run_pipeline(
            src,
            name,
            size,
            readable,
            opts,
            &zero_frame,
            &mut writer,
            &mut entries,
            control,
            obs,
        )?;
        obs.event(&ImageEvent::PhaseStarted {
            phase: ImagePhase::Finishing,
        });
        if let Some(chunks) = &digests.chunks {
            let frame = encode_tagged_frame(CHUNK_DIGESTS_TAG, &encode_digests(chunks));
            entries.push(SeekEntry {
                compressed: frame.len() as u32,
                decompressed: 0,
                checksum: XXH64_EMPTY_LOW32,
            });
            writer.write(&frame)?;
        }
        let trailer = Trailer {
            chunks: nchunks,
            raw_size: size,
            sha256: digests.flat_hex(),
            chunks_sha256: digests.chunks_hex(),
            zero_chunks,
            holes: readable.holes.clone(),
            finished_unix: now_unix(),
        };
        let tjson = serde_json::to_vec_pretty(&trailer)
            .map_err(|e| Error::Internal(format!("trailer JSON: {e}")))?;
        let tframe = encode_tagged_frame(TRAILER_TAG, &tjson);
        entries.push(SeekEntry {
            compressed: tframe.len() as u32,
            decompressed: 0,
            checksum: XXH64_EMPTY_LOW32,
        });
        writer.write(&tframe)?;
        writer.write(&encode_seek_table(&entries))?;
        Ok((trailer, writer.position()))
    })();
    match result {
        Ok((trailer, compressed)) => {
            let parts = writer.finish()?;
            obs.event(&ImageEvent::Finished { ok: true });
            Ok(ImageSummary {
                raw_size: size,
                output_size: compressed,
                parts,
                sha256: trailer.sha256,
                chunks_sha256: trailer.chunks_sha256,
                zero_chunks: trailer.zero_chunks,
                holes: trailer.holes,
                filesystems: Vec::new(),
                unallocated_bytes: 0,
                elapsed: start.elapsed(),
            })
        }
        Err(e) => {
            // Without its seek table the partial file is no image at all.
            writer.discard();
            obs.event(&ImageEvent::Finished { ok: false });
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    src: &mut dyn Source,
    name: &Path,
    size: u64,
    readable: &Readable,
    opts: &ImageOptions,
    zero_frame: &[u8],
    writer: &mut PartWriter,
    entries: &mut Vec<SeekEntry>,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<(Digests, u64)> {
    let chunk = opts.chunk_size;
    let threads = opts.threads.max(1);
    let nchunks = size.div_ceil(chunk as u64);
    let nbuf = buffers_for(threads);
    let pool = Pool::new(nbuf, chunk);
    let abort = AtomicBool::new(false);
    let counters = Counters::default();
    let mut meter = Meter::new(ImagePhase::Imaging, size, true);
    let (tx, rx) = mpsc::channel::<Msg>();
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Arc<PooledBuf>)>(nbuf);
    let job_rx = Arc::new(Mutex::new(job_rx));
    // Output buffers circulate writer → compressors; their number bounds queued frames.
    let (out_home_tx, out_home_rx) = mpsc::channel::<Vec<u8>>();
    let out_home_rx = Mutex::new(out_home_rx);
    let bound = zstd::zstd_safe::compress_bound(chunk);
    for _ in 0..nbuf {
        let _ = out_home_tx.send(Vec::with_capacity(bound));
    }
    let zero_sum = frame_checksum(zero_frame);
    let digester = opts.hash.then(|| ChunkDigester::new(chunk));
    let digester = digester.as_ref();

    // Where the flat SHA-256 runs: its own thread (default) or the reader, right after each read
    // while the chunk is still in cache. The knob exists to measure the two (bench-image.sh).
    let flat = opts.sha256;
    let hash_in_reader = flat && std::env::var_os("SALVOR_HASH_IN_READER").is_some();
    std::thread::scope(|s| {
        let hasher = (flat && !hash_in_reader).then(|| {
            let (htx, hrx) = mpsc::channel::<Arc<PooledBuf>>();
            let h = s.spawn(move || {
                let mut sha = Sha256::new();
                for b in hrx {
                    sha.update(b.data());
                }
                let d: [u8; 32] = sha.finalize().into();
                d
            });
            (htx, h)
        });
        let reader = {
            let (tx, pool, abort, counters) = (tx.clone(), &pool, &abort, &counters);
            let htx = hasher.as_ref().map(|h| h.0.clone());
            s.spawn(move || -> Option<[u8; 32]> {
                let mut sha = hash_in_reader.then(Sha256::new);
                let r = read_source(
                    src,
                    name,
                    readable,
                    size,
                    chunk,
                    pool,
                    abort,
                    counters,
                    Some(control),
                    &mut |k, buf| {
                        if let Some(sha) = &mut sha {
                            sha.update(buf.data());
                        }
                        let buf = Arc::new(buf);
                        if let Some(h) = &htx {
                            let _ = h.send(buf.clone());
                        }
                        job_tx.send((k, buf)).is_ok()
                    },
                );
                if let Err((_, e)) = r {
                    let _ = tx.send(Piece::Failed(None, e));
                    return None;
                }
                sha.map(|s| s.finalize().into())
            })
        };
        for _ in 0..threads {
            let (tx, job_rx, abort, counters) = (tx.clone(), job_rx.clone(), &abort, &counters);
            let (out_home_rx, out_home_tx) = (&out_home_rx, out_home_tx.clone());
            s.spawn(move || {
                let mut cctx = match new_compressor(opts.level) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Piece::Failed(None, e));
                        return;
                    }
                };
                let mut scratch = Vec::with_capacity(zstd::zstd_safe::compress_bound(SAMPLE_LEN));
                loop {
                    // Output buffer first, then the job (see stream.rs: no wait cycle).
                    let Some(mut out) = next_job(out_home_rx, abort) else {
                        return;
                    };
                    let Some((k, buf)) = next_job(&job_rx, abort) else {
                        return;
                    };
                    let data = buf.data();
                    let zero = data.len() == chunk && is_zero(data);
                    let digest = digester.map(|d| d.digest(data, Some(zero)));
                    let frame = if zero {
                        // The output buffer was not needed: put it straight back.
                        let _ = out_home_tx.send(out);
                        Frame::Zero
                    } else if looks_incompressible(&mut cctx, data, &mut scratch) {
                        encode_raw_frame(data, &mut out);
                        Frame::Data(out)
                    } else {
                        out.clear();
                        if let Err(e) = cctx.compress_to_buffer(data, &mut out) {
                            let _ =
                                tx.send(Piece::Failed(None, Error::Internal(format!("zstd: {e}"))));
                            return;
                        }
                        Frame::Data(out)
                    };
                    Counters::add(&counters.processed, data.len() as u64);
                    let raw_len = data.len();
                    drop(buf);
                    if tx
                        .send(Piece::Done(
                            k,
                            Compressed {
                                raw_len,
                                frame,
                                digest,
                            },
                        ))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        // Only the compressors may hold the job queue: when they all stop, a reader blocked on a
        // full queue gets an error instead of waiting forever.
        drop(job_rx);
        drop(tx);
        let mut chunk_digests: Vec<Sha256Digest> = Vec::new();
        let mut zero_chunks = 0u64;
        let result = in_order(
            &rx,
            nchunks,
            control,
            &abort,
            &mut meter,
            &counters,
            obs,
            &mut |_, c: Compressed| {
                chunk_digests.extend(c.digest);
                let (bytes, checksum) = match &c.frame {
                    Frame::Zero => {
                        zero_chunks += 1;
                        (zero_frame, zero_sum)
                    }
                    Frame::Data(v) => (&v[..], frame_checksum(v)),
                };
                writer.write(bytes)?;
                entries.push(SeekEntry {
                    compressed: bytes.len() as u32,
                    decompressed: c.raw_len as u32,
                    checksum,
                });
                Counters::add(&counters.written, bytes.len() as u64);
                Counters::add(&counters.raw_done, c.raw_len as u64);
                if let Frame::Data(v) = c.frame {
                    let _ = out_home_tx.send(v);
                }
                Ok(())
            },
        )
        .map(|()| zero_chunks);
        abort.store(true, Ordering::Relaxed);
        drop(rx);
        let panicked = |_| Error::Internal("imaging thread panicked".into());
        let from_reader = reader.join().map_err(panicked)?;
        let flat_digest = match hasher {
            Some((htx, h)) => {
                drop(htx);
                Some(h.join().map_err(panicked)?)
            }
            None => from_reader,
        };
        let chunks = digester.is_some().then_some(chunk_digests);
        if chunks.as_ref().is_some_and(|c| c.len() as u64 != nchunks) && result.is_ok() {
            return Err(Error::Internal("a chunk digest is missing".into()));
        }
        result.map(|z| {
            (
                Digests {
                    chunks,
                    flat: flat_digest,
                },
                z,
            )
        })
    })
}

/// Images into a sparse raw file: all-zero 64 KiB blocks are not written, only the file length
/// is set, so they become holes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_raw(
    src: &mut dyn Source,
    name: &Path,
    size: u64,
    readable: &Readable,
    output: &Path,
    opts: &ImageOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<ImageSummary> {
    const SPARSE_BLOCK: usize = 64 << 10;
    let start = Instant::now();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::refused(output, "file exists; remove it or choose another name")
            } else {
                Error::io(output, e)
            }
        })?;
    let mut dest = FileDest::new(file, output.to_path_buf(), false);
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Imaging,
    });
    let mut zero_chunks = 0u64;
    let r = stream_chunks(
        Input::Source {
            src,
            name: name.to_path_buf(),
            readable: readable.clone(),
            chunk_size: opts.chunk_size,
            size,
        },
        Hashing {
            chunks: opts.hash,
            flat: opts.sha256,
        },
        ImagePhase::Imaging,
        control,
        obs,
        &mut |c, counters| {
            let data = c.data();
            let mut all_zero = true;
            for (i, block) in data.chunks(SPARSE_BLOCK).enumerate() {
                if !is_zero(block) {
                    all_zero = false;
                    dest.write_at(c.offset + (i * SPARSE_BLOCK) as u64, block)?;
                    Counters::add(&counters.written, block.len() as u64);
                }
            }
            zero_chunks += u64::from(all_zero);
            Ok(())
        },
    )
    .and_then(|d| {
        dest.extend_to(size)?;
        dest.sync()?;
        Ok(d)
    });
    match r {
        Ok(digests) => {
            obs.event(&ImageEvent::Finished { ok: true });
            Ok(ImageSummary {
                raw_size: size,
                output_size: size,
                parts: vec![output.to_path_buf()],
                sha256: digests.flat_hex(),
                chunks_sha256: digests.chunks_hex(),
                zero_chunks,
                holes: readable.holes.clone(),
                filesystems: Vec::new(),
                unallocated_bytes: 0,
                elapsed: start.elapsed(),
            })
        }
        Err(e) => {
            drop(dest);
            let _ = std::fs::remove_file(output);
            obs.event(&ImageEvent::Finished { ok: false });
            Err(e)
        }
    }
}
