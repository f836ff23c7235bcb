//! An ordered stream of raw chunks, from a salvor image (read thread + decoder threads) or from a
//! disk or raw image (read thread), delivered to a consumer on the calling thread; optionally
//! hashed with SHA-256 in a thread of its own.
//!
//! Restore, clone, verify and raw imaging are all "stream the chunks, do something with each".

use super::pool::{buffers_for, check_control, Counters, Meter, Pool, PooledBuf, TICK};
use super::reader::ImageFile;
use super::srcread::{read_chunk, Readable};
use crate::device::Source;
use crate::error::{Error, Result};
use crate::progress::{Control, ImageObserver, ImagePhase};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};

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
}

impl Chunk {
    pub fn data(&self) -> &[u8] {
        self.buf.data()
    }
}

enum Msg {
    Chunk(Chunk),
    /// A failure; with the chunk index when it belongs to one, so that the first bad chunk in
    /// disk order is the one reported even if a later one failed first.
    Err(Option<u64>, Error),
}

/// Streams every chunk to `consume` in order. Returns the SHA-256 of the stream when `hash`.
pub fn stream_chunks(
    input: Input<'_>,
    hash: bool,
    phase: ImagePhase,
    control: &Control,
    obs: &mut dyn ImageObserver,
    consume: &mut dyn FnMut(&Chunk, &Counters) -> Result<()>,
) -> Result<Option<[u8; 32]>> {
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

    std::thread::scope(|s| {
        let hasher = hash.then(|| {
            let (htx, hrx) = mpsc::channel::<Arc<PooledBuf>>();
            let h = s.spawn(move || {
                let mut sha = Sha256::new();
                for b in hrx {
                    sha.update(b.data());
                }
                let out: [u8; 32] = sha.finalize().into();
                out
            });
            (htx, h)
        });
        match input {
            Input::Image { image, threads } => {
                spawn_decoders(s, image, threads.max(1), &pool, &abort, &counters, tx);
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
                    for k in 0..nchunks {
                        let Some(mut buf) = pool.get(abort) else {
                            return;
                        };
                        let pos = k * chunk_size as u64;
                        let len = (size - pos).min(chunk_size as u64) as usize;
                        buf.len = len;
                        if let Err(e) =
                            read_chunk(src, &name, pos, &mut buf.full_mut()[..len], &readable)
                        {
                            let _ = tx.send(Msg::Err(Some(k), e));
                            return;
                        }
                        Counters::add(&counters.read, len as u64);
                        Counters::add(&counters.processed, len as u64);
                        let c = Chunk {
                            index: k,
                            offset: pos,
                            buf: Arc::new(buf),
                        };
                        if tx.send(Msg::Chunk(c)).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        let result = (|| {
            let mut pending: BTreeMap<u64, Chunk> = BTreeMap::new();
            let mut failed: BTreeMap<u64, Error> = BTreeMap::new();
            let mut next = 0u64;
            while next < nchunks {
                if let Some(e) = check_control(control, &abort) {
                    return Err(e);
                }
                if let Some(snap) = meter.snapshot(&counters, false) {
                    obs.progress(&snap);
                }
                match rx.recv_timeout(TICK) {
                    Ok(Msg::Chunk(c)) => {
                        pending.insert(c.index, c);
                    }
                    Ok(Msg::Err(None, e)) => return Err(e),
                    Ok(Msg::Err(Some(k), e)) => {
                        failed.insert(k, e);
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Error::Internal("image pipeline stopped early".into()))
                    }
                }
                loop {
                    if let Some(e) = failed.remove(&next) {
                        return Err(e);
                    }
                    let Some(c) = pending.remove(&next) else {
                        break;
                    };
                    if let Some((htx, _)) = &hasher {
                        let _ = htx.send(c.buf.clone());
                    }
                    consume(&c, &counters)?;
                    next += 1;
                }
            }
            if let Some(snap) = meter.snapshot(&counters, true) {
                obs.progress(&snap);
            }
            Ok(())
        })();
        abort.store(true, Ordering::Relaxed);
        drop(rx);
        let digest = match hasher {
            Some((htx, h)) => {
                drop(htx);
                let d = h
                    .join()
                    .map_err(|_| Error::Internal("hash thread panicked".into()))?;
                Some(d)
            }
            None => None,
        };
        result.map(|()| digest)
    })
}

/// One thread reads compressed frames in order; `threads` decoders turn them into chunks.
fn spawn_decoders<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    image: &'env ImageFile,
    threads: usize,
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
                    let _ = tx.send(Msg::Err(Some(k as u64), e));
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
                    let _ = tx.send(Msg::Err(None, Error::Internal(format!("zstd: {e}"))));
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
                match r {
                    Ok(n) => {
                        out.len = n;
                        Counters::add(&counters.processed, n as u64);
                        let c = Chunk {
                            index: k as u64,
                            offset: image.frames[k].raw_offset,
                            buf: Arc::new(out),
                        };
                        if tx.send(Msg::Chunk(c)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Err(Some(k as u64), e));
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
