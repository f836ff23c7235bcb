//! How engines report and how they are steered, without knowing who listens.
//!
//! An engine (rescue, image, ...) calls an observer trait with events and periodic snapshots; the
//! CLI printer, the JSON stream, the TUI and the tests implement it. The engine checks a [`Control`]
//! between reads to pause or stop; signal handlers and the TUI set it.

use crate::mapfile::{Phase, Totals};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// Shared steering for a running job.
#[derive(Debug, Default)]
pub struct Control {
    /// 0 = run; a signal number = stop because of that signal; -1 = stop because the user asked.
    stop: AtomicI32,
    pause: AtomicBool,
}

/// Why a job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Signal(i32),
    User,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    pub fn request_stop(&self, reason: StopReason) {
        let v = match reason {
            StopReason::Signal(s) => s,
            StopReason::User => -1,
        };
        let _ = self
            .stop
            .compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn stop_requested(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            -1 => Some(StopReason::User),
            s => Some(StopReason::Signal(s)),
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
}

/// Direction of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Forwards,
    Backwards,
}

/// A point-in-time view of a rescue, cheap to copy and send to another thread.
#[derive(Debug, Clone, Serialize)]
pub struct RescueSnapshot {
    pub phase: Phase,
    pub pass: u32,
    pub direction: Direction,
    /// Current input position.
    pub pos: u64,
    /// Bytes per status, within the rescue domain.
    pub totals: Totals,
    /// Size of the rescue domain.
    pub domain_size: u64,
    pub reads: u64,
    pub read_errors: u64,
    pub elapsed: Duration,
    pub since_last_good_read: Duration,
    /// Bytes per second over the last few seconds.
    pub current_rate: f64,
    /// Bytes rescued per second since the start of this run.
    pub average_rate: f64,
    /// An honest range for the remaining time, if one can be given at all.
    pub remaining: Option<(Duration, Duration)>,
    /// Set while the source is gone and salvor waits for it.
    pub waiting_for_device: bool,
}

/// Things worth telling the user about, as they happen.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RescueEvent {
    PassStarted {
        phase: Phase,
        pass: u32,
        direction: Direction,
    },
    ReadError {
        pos: u64,
        size: u64,
        message: String,
    },
    DeviceGone {
        message: String,
    },
    DeviceBack,
    MapfileSaved,
    Message {
        message: String,
    },
    Finished {
        complete: bool,
    },
}

/// Receives a rescue's progress. Both methods default to doing nothing.
pub trait RescueObserver {
    fn event(&mut self, _event: &RescueEvent) {}
    fn progress(&mut self, _snapshot: &RescueSnapshot) {}
    /// Every read attempt: `good` bytes of `size` at `pos` were read; `failed` if it hit an error.
    fn read_done(&mut self, _pos: u64, _size: u64, _good: u64, _failed: bool) {}
}

/// Sends everything to two observers.
pub struct Tee<'a>(
    pub &'a mut dyn RescueObserver,
    pub &'a mut dyn RescueObserver,
);

impl RescueObserver for Tee<'_> {
    fn event(&mut self, event: &RescueEvent) {
        self.0.event(event);
        self.1.event(event);
    }
    fn progress(&mut self, snapshot: &RescueSnapshot) {
        self.0.progress(snapshot);
        self.1.progress(snapshot);
    }
    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        self.0.read_done(pos, size, good, failed);
        self.1.read_done(pos, size, good, failed);
    }
}

/// An observer that ignores everything.
pub struct NoProgress;

impl RescueObserver for NoProgress {}

// ---------------------------------------------------------------------------------------------
// Disk images: imaging, restoring, cloning, verifying.

/// What an image job is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePhase {
    /// Reading a disk and writing an image.
    Imaging,
    /// Writing an image (or a disk, for clone) to a target disk.
    Restoring,
    /// Re-reading the target to compare its SHA-256.
    VerifyingTarget,
    /// Decoding an image and checking its checksums.
    Verifying,
    /// Writing the trailer and seek table, fixing the GPT, fsync.
    Finishing,
}

/// A point-in-time view of an image job. The three rates are separate so that a slow stage shows:
/// a disk that reads at 40 MB/s while compression could do 400 is a disk problem, not a CPU one.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSnapshot {
    pub phase: ImagePhase,
    /// Raw (uncompressed) bytes this phase will process.
    pub total: u64,
    /// Bytes read from the input (raw disk bytes, or compressed image bytes when restoring).
    pub bytes_read: u64,
    /// Raw bytes that went through (de)compression.
    pub bytes_in: u64,
    /// Bytes written to the output (compressed bytes when imaging, raw bytes when restoring).
    pub bytes_out: u64,
    /// Bytes per second over the last interval, per stage.
    pub read_rate: f64,
    pub compress_rate: f64,
    pub write_rate: f64,
    /// Compressed size / raw size so far (0 when unknown).
    pub ratio: f64,
    pub elapsed: Duration,
    /// Estimated remaining time for this phase, from the average rate.
    pub remaining: Option<Duration>,
}

/// Things an image job reports as they happen.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImageEvent {
    PhaseStarted {
        phase: ImagePhase,
    },
    /// An area that is imaged as zeros because the rescue mapfile does not mark it finished.
    Hole {
        offset: u64,
        size: u64,
    },
    /// A chunk failed a check (verify) or differs from the disk (`--against`).
    BadChunk {
        chunk: u64,
        offset: u64,
        reason: String,
    },
    Message {
        message: String,
    },
    Finished {
        ok: bool,
    },
}

/// Receives an image job's progress. Both methods default to doing nothing. Called only on the
/// thread that started the job.
pub trait ImageObserver {
    fn event(&mut self, _event: &ImageEvent) {}
    fn progress(&mut self, _snapshot: &ImageSnapshot) {}
}

impl ImageObserver for NoProgress {}
