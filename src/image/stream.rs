//! An ordered stream of raw chunks, from a salvor image (read thread + decoder threads) or from a
//! disk or raw image (read thread), delivered to a consumer on the calling thread; optionally
//! hashed: chunk digests by the decoders (image input) or by a hash thread (disk input), the flat
//! SHA-256 by the hash thread.
//!
//! Restore, clone, verify and raw imaging are all "stream the chunks, do something with each".

use super::digest::{ChunkDigester, Sha256Digest};
use super::format::to_hex;
use super::pool::{
    buffers_for, check_control, in_order, Counters, Meter, Piece, Pool, PooledBuf, TICK,
};
use super::reader::ImageFile;
use super::srcread::{read_chunk, Readable};
use crate::device::Source;
use crate::error::{Error, Result};
use crate::progress::{Control, ImageObserver, ImagePhase};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};

/// What to hash while streaming.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hashing {
    /// The SHA-256 of every chunk. For an image input they are also checked against the digests
    /// the image records, in the decoder threads.
    pub chunks: bool,
    /// The flat SHA-256 of the whole stream (one thread, in order).
    pub flat: bool,
}

/// What [`stream_chunks`] computed.
#[derive(Debug, Clone, Default)]
pub struct Digests {
    pub chunks: Option<Vec<Sha256Digest>>,
    pub flat: Option<Sha256Digest>,
}

impl Digests {
    /// The disk digest (SHA-256 over the chunk digests) as hex.
    pub fn chunks_hex(&self) -> Option<String> {
        self.chunks
            .as_ref()
            .map(|c| to_hex(&super::digest::disk_digest(c)))
    }

    pub fn flat_hex(&self) -> Option<String> {
        self.flat.map(|d| to_hex(&d))
    }
}

pub enum Input<'a> {
    Image {
        image: &'a ImageFile,
        threads: usize,
    },
    Source {
        src: &'a mut dyn Source,
        name: PathBuf,
        readable: Readable,
        chunk_size: usize,
        size: u64,
    },
}

/// One chunk handed to the consumer, in disk order.
pub struct Chunk {
    pub index: u64,
    pub offset: u64,
    pub buf: Arc<PooledBuf>,
    /// Its SHA-256, when a decoder computed it.
    pub digest: Option<Sha256Digest>,
}

impl Chunk {
    pub fn data(&self) -> &[u8] {
        self.buf.data()
    }
}

type Msg = Piece<Chunk>;

/// Streams every chunk to `consume` in order, hashing as asked.
pub fn stream_chunks(
    input: Input<'_>,
    hashing: Hashing,
    phase: ImagePhase,
    control: &Control,
    obs: &mut dyn ImageObserver,
    consume: &mut dyn FnMut(&Chunk, &Counters) -> Result<()>,
) -> Result<Digests> {
    let (total, chunk_size, nchunks, threads) = match &input {
        Input::Image { image, threads } => (
            image.metadata.source_size,
            image.metadata.chunk_size as usize,
            image.frames.len() as u64,
            (*threads).max(1),
        ),
        Input::Source {
            chunk_size, size, ..
        } => (*size, *chunk_size, size.div_ceil(*chunk_size as u64), 1),
    };
    let counters = Counters::default();
    let abort = AtomicBool::new(false);
    let pool = Pool::new(buffers_for(threads), chunk_size);
    let mut meter = Meter::new(phase, total, false);
    let (tx, rx) = mpsc::channel::<Msg>();

    // Decoders hash image chunks in parallel; a disk's chunks are hashed by the hash thread.
    let decoders_hash = hashing.chunks && matches!(input, Input::Image { .. });
    let thread_chunks = hashing.chunks && !decoders_hash;
    // Built only when chunks are hashed: it hashes one all-zero chunk up front.
    let digester = hashing.chunks.then(|| ChunkDigester::new(chunk_size));
    let digester = digester.as_ref();
    std::thread::scope(|s| {
        let hasher = (hashing.flat || thread_chunks).then(|| {
            let (htx, hrx) = mpsc::channel::<Arc<PooledBuf>>();
            let h = s.spawn(move || {
                let mut flat = hashing.flat.then(Sha256::new);
                let mut chunks = Vec::new();
                for b in hrx {
                    if let Some(sha) = &mut flat {
                        sha.update(b.data());
                    }
                    if let Some(dg) = digester.filter(|_| thread_chunks) {
                        chunks.push(dg.digest(b.data(), None));
                    }
                }
                Digests {
                    chunks: thread_chunks.then_some(chunks),
                    flat: flat.map(|s| s.finalize().into()),
                }
            });
            (htx, h)
        });
        match input {
            Input::Image { image, threads } => {
                let digester = digester.filter(|_| decoders_hash);
                spawn_decoders(
                    s,
                    image,
                    threads.max(1),
                    digester,
                    &pool,
                    &abort,
                    &counters,
                    tx,
                );
            }
            Input::Source {
                src,
                name,
                readable,
                chunk_size,
                size,
            } => {
                let (pool, abort, counters) = (&pool, &abort, &counters);
                s.spawn(move || {
                    let r = read_source(
                        src,
                        &name,
                        &readable,
                        size,
                        chunk_size,
                        pool,
                        abort,
                        counters,
                        None,
                        &mut |k, buf| {
                            Counters::add(&counters.processed, buf.len as u64);
                            let c = Chunk {
                                index: k,
                                offset: k * chunk_size as u64,
                                buf: Arc::new(buf),
                                digest: None,
                            };
                            tx.send(Piece::Done(c.index, c)).is_ok()
                        },
                    );
                    if let Err((k, e)) = r {
                        let _ = tx.send(Piece::Failed(Some(k), e));
                    }
                });
            }
        }
        let mut decoded_digests = Vec::new();
        let result = in_order(
            &rx,
            nchunks,
            control,
            &abort,
            &mut meter,
            &counters,
            obs,
            &mut |_, c: Chunk| {
                if let Some((htx, _)) = &hasher {
                    let _ = htx.send(c.buf.clone());
                }
                if decoders_hash {
                    let d = c.digest.ok_or_else(|| {
                        Error::Internal("decoder sent a chunk without its digest".into())
                    })?;
                    decoded_digests.push(d);
                }
                consume(&c, &counters)
            },
        );
        abort.store(true, Ordering::Relaxed);
        drop(rx);
        let mut digests = match hasher {
            Some((htx, h)) => {
                drop(htx);
                h.join()
                    .map_err(|_| Error::Internal("hash thread panicked".into()))?
            }
            None => Digests::default(),
        };
        if decoders_hash {
            digests.chunks = Some(decoded_digests);
        }
        result.map(|()| digests)
    })
}

/// The reader thread of every pipeline that reads a disk (imaging, raw imaging, clone): fills
/// pooled buffers with the chunks of `src` in order (only `readable` parts read, the rest zeros)
/// and hands each to `deliver`, which returns false to stop. With `control`, a stop request or a
/// pause is obeyed between chunks. A read failure is returned with its chunk's index.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_source(
    src: &mut dyn Source,
    name: &Path,
    readable: &Readable,
    size: u64,
    chunk_size: usize,
    pool: &Pool,
    abort: &AtomicBool,
    counters: &Counters,
    control: Option<&Control>,
    deliver: &mut dyn FnMut(u64, PooledBuf) -> bool,
) -> std::result::Result<(), (u64, Error)> {
    for k in 0..size.div_ceil(chunk_size as u64) {
        if control.is_some_and(|c| check_control(c, abort).is_some()) {
            return Ok(());
        }
        let Some(mut buf) = pool.get(abort) else {
            return Ok(());
        };
        let pos = k * chunk_size as u64;
        let len = (size - pos).min(chunk_size as u64) as usize;
        buf.len = len;
        read_chunk(src, name, pos, &mut buf.full_mut()[..len], readable).map_err(|e| (k, e))?;
        Counters::add(&counters.read, len as u64);
        if !deliver(k, buf) {
            return Ok(());
        }
    }
    Ok(())
}

/// One thread reads compressed frames in order; `threads` decoders turn them into chunks and,
/// given a digester, hash each one and check it against the image's recorded digest.
#[allow(clippy::too_many_arguments)]
fn spawn_decoders<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    image: &'env ImageFile,
    threads: usize,
    digester: Option<&'env ChunkDigester>,
    pool: &'env Pool,
    abort: &'env AtomicBool,
    counters: &'env Counters,
    tx: Sender<Msg>,
) {
    let nbuf = buffers_for(threads);
    let (comp_home_tx, comp_home_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..nbuf {
        let _ = comp_home_tx.send(Vec::new());
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(nbuf);
    let job_rx = Arc::new(Mutex::new(job_rx));
    {
        let tx = tx.clone();
        s.spawn(move || {
            for k in 0..image.frames.len() {
                let mut buf = loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    match comp_home_rx.recv_timeout(TICK) {
                        Ok(b) => break b,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                };
                if let Err(e) = image.read_frame(k, &mut buf) {
                    let _ = tx.send(Piece::Failed(Some(k as u64), e));
                    return;
                }
                Counters::add(&counters.read, buf.len() as u64);
                if job_tx.send((k, buf)).is_err() {
                    return;
                }
            }
        });
    }
    for _ in 0..threads {
        let (tx, job_rx, home) = (tx.clone(), job_rx.clone(), comp_home_tx.clone());
        s.spawn(move || {
            let mut dctx = match zstd::bulk::Decompressor::new() {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Piece::Failed(None, Error::Internal(format!("zstd: {e}"))));
                    return;
                }
            };
            loop {
                // Take the output buffer before the job: a decoder holding job k can always finish
                // it, so the writer waiting for chunk k never waits forever.
                let Some(mut out) = pool.get(abort) else {
                    return;
                };
                let Some((k, comp)) = next_job(&job_rx, abort) else {
                    return;
                };
                let r = image.decode_frame(k, &comp, &mut dctx, out.full_mut());
                let _ = home.send(comp);
                let r = r.and_then(|n| {
                    out.len = n;
                    match digester {
                        Some(dg) => image
                            .check_chunk_digest(k, dg.digest(out.data(), None))
                            .map(Some),
                        None => Ok(None),
                    }
                });
                match r {
                    Ok(digest) => {
                        Counters::add(&counters.processed, out.len as u64);
                        let c = Chunk {
                            index: k as u64,
                            offset: image.frames[k].raw_offset,
                            buf: Arc::new(out),
                            digest,
                        };
                        if tx.send(Piece::Done(c.index, c)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Piece::Failed(Some(k as u64), e));
                        return;
                    }
                }
            }
        });
    }
}

/// Takes the next job from a queue shared by several workers; None when the queue is closed or
/// the pipeline aborts.
pub fn next_job<T>(rx: &Mutex<Receiver<T>>, abort: &AtomicBool) -> Option<T> {
    loop {
        if abort.load(Ordering::Relaxed) {
            return None;
        }
        let guard = rx.lock().ok()?;
        match guard.recv_timeout(TICK) {
            Ok(j) => return Some(j),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}
