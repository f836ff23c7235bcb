//! Buffer recycling and stage counters shared by the image pipelines.
//!
//! Every pipeline owns a fixed number of chunk buffers; a buffer goes back to its pool when the
//! last stage holding it drops it. The number of buffers is the memory bound, and waiting for a
//! free buffer is the back-pressure that keeps a fast reader from running ahead of a slow writer.

use crate::device::file::AlignedBuf;
use crate::progress::{Control, ImagePhase, ImageSnapshot};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often blocked threads look at the abort flag, and how often progress is reported.
pub const TICK: Duration = Duration::from_millis(200);

/// A chunk buffer that returns to its pool when dropped.
pub struct PooledBuf {
    buf: Option<AlignedBuf>,
    home: Sender<AlignedBuf>,
    /// Valid bytes at the start of the buffer.
    pub len: usize,
}

impl PooledBuf {
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b.as_slice()[..self.len],
            None => &[],
        }
    }

    pub fn full_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Some(b) => b.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            // The pool may be gone when the pipeline is shutting down; then the buffer is freed.
            let _ = self.home.send(b);
        }
    }
}

/// A fixed set of aligned buffers.
pub struct Pool {
    tx: Sender<AlignedBuf>,
    // Mutex: several decoder threads take buffers from the same pool.
    rx: std::sync::Mutex<Receiver<AlignedBuf>>,
}

impl Pool {
    pub fn new(count: usize, size: usize) -> Pool {
        let (tx, rx) = mpsc::channel();
        for _ in 0..count {
            let _ = tx.send(AlignedBuf::new(size, 4096));
        }
        Pool {
            tx,
            rx: std::sync::Mutex::new(rx),
        }
    }

    /// Waits for a free buffer; None once `abort` is set.
    pub fn get(&self, abort: &AtomicBool) -> Option<PooledBuf> {
        loop {
            if abort.load(Ordering::Relaxed) {
                return None;
            }
            let Ok(rx) = self.rx.lock() else { return None };
            match rx.recv_timeout(TICK) {
                Ok(buf) => {
                    return Some(PooledBuf {
                        buf: Some(buf),
                        home: self.tx.clone(),
                        len: 0,
                    })
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// Byte counters updated by the stages, read by the thread that reports progress.
#[derive(Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub processed: AtomicU64,
    pub written: AtomicU64,
    /// Raw bytes whose compressed form has been written (for the ratio).
    pub raw_done: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Turns counters into snapshots with per-stage rates over the last interval.
pub struct Meter {
    pub phase: ImagePhase,
    pub total: u64,
    start: Instant,
    last: Instant,
    last_vals: [u64; 3],
    next_report: Instant,
    /// Whether bytes_out are compressed bytes (imaging) and so give a ratio.
    compressed_out: bool,
}

impl Meter {
    pub fn new(phase: ImagePhase, total: u64, compressed_out: bool) -> Meter {
        let now = Instant::now();
        Meter {
            phase,
            total,
            start: now,
            last: now,
            last_vals: [0; 3],
            next_report: now,
            compressed_out,
        }
    }

    /// A snapshot if at least one tick passed since the previous one (or `force`).
    pub fn snapshot(&mut self, c: &Counters, force: bool) -> Option<ImageSnapshot> {
        let now = Instant::now();
        if !force && now < self.next_report {
            return None;
        }
        self.next_report = now + TICK;
        let vals = [
            c.read.load(Ordering::Relaxed),
            c.processed.load(Ordering::Relaxed),
            c.written.load(Ordering::Relaxed),
        ];
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-6);
        let rate = |i: usize| vals[i].saturating_sub(self.last_vals[i]) as f64 / dt;
        let (read_rate, compress_rate, write_rate) = (rate(0), rate(1), rate(2));
        self.last = now;
        self.last_vals = vals;
        let elapsed = now.duration_since(self.start);
        let raw_done = c.raw_done.load(Ordering::Relaxed);
        let ratio = if self.compressed_out && raw_done > 0 {
            vals[2] as f64 / raw_done as f64
        } else {
            0.0
        };
        // The slowest stage decides; the processed counter lags the reader by a few chunks.
        let done = vals[1].max(if self.compressed_out {
            raw_done
        } else {
            vals[2]
        });
        let remaining = (done > 0 && elapsed.as_secs_f64() > 1.0).then(|| {
            let avg = done as f64 / elapsed.as_secs_f64();
            Duration::from_secs_f64(self.total.saturating_sub(done) as f64 / avg)
        });
        Some(ImageSnapshot {
            phase: self.phase,
            total: self.total,
            bytes_read: vals[0],
            bytes_in: vals[1],
            bytes_out: vals[2],
            read_rate,
            compress_rate,
            write_rate,
            ratio,
            elapsed,
            remaining,
        })
    }
}

/// The error for a stop request, or None to go on. Pausing blocks here.
pub fn check_control(control: &Control, abort: &AtomicBool) -> Option<crate::Error> {
    loop {
        if let Some(reason) = control.stop_requested() {
            return Some(match reason {
                crate::progress::StopReason::Signal(s) => crate::Error::Interrupted(s),
                crate::progress::StopReason::User => crate::Error::Interrupted(libc::SIGINT),
            });
        }
        if abort.load(Ordering::Relaxed) || !control.is_paused() {
            return None;
        }
        std::thread::sleep(TICK);
    }
}

/// Sets the flag when dropped, so that every other stage stops even if this one panics.
pub struct AbortOnDrop<'a>(pub &'a AtomicBool);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How many chunk buffers a pipeline with `threads` workers uses: enough to keep every worker
/// busy while the reader fills the next one and the writer drains the previous one.
pub fn buffers_for(threads: usize) -> usize {
    2 * threads + 2
}

/// Shared flag type for brevity.
pub type Abort = Arc<AtomicBool>;

/// What a pipeline's worker threads send to the thread that consumes their results in order.
pub enum Piece<T> {
    /// Result number `index` (a chunk index).
    Done(u64, T),
    /// A failure; with the chunk index when it belongs to one, so that the first failure in disk
    /// order is the one reported even if a later chunk failed first.
    Failed(Option<u64>, crate::Error),
}

/// The consuming end of every imaging pipeline (imaging, restore, clone, verify): receives the
/// pieces `0..count` in any order and hands each to `each` in order, obeying `control` and
/// publishing progress between pieces.
#[allow(clippy::too_many_arguments)]
pub fn in_order<T>(
    rx: &Receiver<Piece<T>>,
    count: u64,
    control: &Control,
    abort: &AtomicBool,
    meter: &mut Meter,
    counters: &Counters,
    obs: &mut dyn crate::progress::ImageObserver,
    each: &mut dyn FnMut(u64, T) -> crate::Result<()>,
) -> crate::Result<()> {
    use std::collections::BTreeMap;
    let mut pending: BTreeMap<u64, T> = BTreeMap::new();
    let mut failed: BTreeMap<u64, crate::Error> = BTreeMap::new();
    let mut next = 0u64;
    while next < count {
        if let Some(e) = check_control(control, abort) {
            return Err(e);
        }
        if let Some(snap) = meter.snapshot(counters, false) {
            obs.progress(&snap);
        }
        match rx.recv_timeout(TICK) {
            Ok(Piece::Done(k, t)) => {
                pending.insert(k, t);
            }
            Ok(Piece::Failed(None, e)) => return Err(e),
            Ok(Piece::Failed(Some(k), e)) => {
                failed.insert(k, e);
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(crate::Error::Internal(
                    "image pipeline stopped early".into(),
                ))
            }
        }
        loop {
            if let Some(e) = failed.remove(&next) {
                return Err(e);
            }
            let Some(t) = pending.remove(&next) else {
                break;
            };
            each(next, t)?;
            next += 1;
        }
    }
    if let Some(snap) = meter.snapshot(counters, true) {
        obs.progress(&snap);
    }
    Ok(())
}
