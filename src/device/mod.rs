//! Device access: every byte salvor reads from a disk goes through [`Source`], every byte it writes
//! to a disk or image goes through [`Dest`].
//!
//! A source is opened read-only and never written. Reads report partial success the way the kernel
//! does for buffered reads: the bytes before the first failing sector are good, the fault says why
//! the rest failed. A fault is either a media error ("this sector is bad", EIO) or the device being
//! gone (ENODEV/ENXIO/EBADF after an unplug, or, for a disk the kernel removed, reads that end
//! early because its size became 0): the rescue algorithm treats those very differently.

pub mod clock;
pub mod dest;
pub mod faulty;
pub mod file;
pub mod scenario;
pub mod testmode;

pub use clock::{Clock, SimClock, SystemClock};
pub use dest::{Dest, FileDest, Guarded};
pub use faulty::{DriveRequest, FaultySource, FaultySpec, ReadSemantics, RequestSink, WeakDraw};
pub use file::{FileSource, Identity, OpenOptions};
pub use testmode::TestModeSource;

use std::io;

/// Whether every byte is zero (sparse output, zero chunks of images). Scans eight bytes at a
/// time; the compiler vectorises the fold.
pub fn is_zero(buf: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: any bit pattern is a valid u64; align_to only reinterprets the aligned middle.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0)
        && tail.iter().all(|&b| b == 0)
        && words
            .chunks(64)
            .all(|c| c.iter().fold(0u64, |acc, &w| acc | w) == 0)
}

/// Sector sizes of a device (or the defaults for a regular file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    pub size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
}

/// Why a read stopped short.
#[derive(Debug)]
pub enum ReadFault {
    /// The medium could not deliver these sectors (EIO, ENODATA, EILSEQ, ...). Worth retrying later.
    Media(io::Error),
    /// The device is gone: unplugged, removed, reset beyond recovery. Reading on is pointless until it
    /// comes back; the rest of the disk must not be marked bad because of this.
    Gone(io::Error),
    /// An error that is neither: bad alignment for O_DIRECT, EINVAL, ... (a bug or a misconfiguration).
    Other(io::Error),
}

impl ReadFault {
    /// Sorts an OS error into one of the three classes.
    pub fn classify(err: io::Error) -> ReadFault {
        match err.raw_os_error() {
            Some(libc::ENODEV)
            | Some(libc::ENXIO)
            | Some(libc::EBADF)
            | Some(libc::ENOMEDIUM)
            | Some(libc::ESHUTDOWN) => ReadFault::Gone(err),
            Some(libc::EINVAL) | Some(libc::EFAULT) => ReadFault::Other(err),
            _ => ReadFault::Media(err),
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, ReadFault::Gone(_))
    }
}

impl std::fmt::Display for ReadFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFault::Media(e) => write!(f, "read error: {e}"),
            ReadFault::Gone(e) => write!(f, "device gone: {e}"),
            ReadFault::Other(e) => write!(f, "{e}"),
        }
    }
}

/// The result of one read: `good` bytes at the start of the buffer are valid; if `fault` is set,
/// the byte at `pos + good` could not be read.
#[derive(Debug)]
pub struct ReadOutcome {
    pub good: usize,
    pub fault: Option<ReadFault>,
}

impl ReadOutcome {
    pub fn ok(n: usize) -> Self {
        ReadOutcome {
            good: n,
            fault: None,
        }
    }
}

/// Something salvor reads disk data from. Implementations never write to the underlying device.
pub trait Source: Send {
    /// Size and sector sizes.
    fn geometry(&self) -> Geometry;

    /// Reads `buf.len()` bytes at `pos` (or fewer at the end of the source). With direct I/O the
    /// caller passes sector-aligned positions and lengths and an aligned buffer.
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome;

    /// A human description for messages ("/dev/sdb", "test source").
    fn describe(&self) -> String;

    /// Tries to get the device back after it was gone (reopen by identity). Returns Ok(true) if the
    /// source is usable again. Sources that cannot disappear return Ok(false).
    fn reopen(&mut self) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether reads bypass the page cache (then positions, lengths and buffers must be aligned).
    fn is_direct(&self) -> bool {
        false
    }

    /// Reads like `read_at`, but bypassing the page cache even when the source was opened without
    /// it, so that a sector next to a bad one is not lost with its page. `None` when the device
    /// does not allow it (or not at this position and length): the caller uses `read_at`.
    fn read_direct_at(&mut self, _pos: u64, _buf: &mut [u8]) -> Option<ReadOutcome> {
        None
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        (**self).read_at(pos, buf)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn reopen(&mut self) -> io::Result<bool> {
        (**self).reopen()
    }
    fn is_direct(&self) -> bool {
        (**self).is_direct()
    }
    fn read_direct_at(&mut self, pos: u64, buf: &mut [u8]) -> Option<ReadOutcome> {
        (**self).read_direct_at(pos, buf)
    }
}
