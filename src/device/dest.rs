//! Where rescued or restored data goes.
//!
//! [`FileDest`] writes through the page cache by default (the rescue engine's many small writes
//! want it). Restore and clone onto a block device add direct writes
//! ([`FileDest::enable_direct_writes`]): whole-sector parts of a write go to the disk with
//! O_DIRECT in one request, and [`Dest::write_zeroes`] asks the kernel to zero ranges
//! (BLKZEROOUT) instead of sending zeros.

use crate::device::file::AlignedBuf;
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A destination for data: a regular file or a block device.
pub trait Dest: Send {
    /// Writes all of `buf` at `pos`. ENOSPC becomes [`Error::NoSpace`].
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()>;
    /// Makes everything written so far durable (fsync). Called before a mapfile claims the data.
    fn sync(&mut self) -> Result<()>;
    /// Current size (file length or device size).
    fn size(&self) -> Result<u64>;
    /// Extends a regular file to `len` without writing data (holes read as zeros). No-op for devices.
    fn extend_to(&mut self, len: u64) -> Result<()>;
    fn path(&self) -> &Path;
    /// Reads back what the destination holds at `pos` (for `--compare-before-write`); returns
    /// the bytes read, 0 when it cannot tell (the default).
    fn read_back(&mut self, _pos: u64, _buf: &mut [u8]) -> Result<usize> {
        Ok(0)
    }
    /// Makes `[pos, pos + len)` read as zeros, like writing zeros there (ENOSPC included). The
    /// default writes zeros; a block device may have the kernel zero the range instead.
    fn write_zeroes(&mut self, pos: u64, len: u64) -> Result<()> {
        write_zero_bytes(self, pos, len)
    }
}

/// Writes `len` zero bytes at `pos` through [`Dest::write_at`], from a shared zeroed buffer that
/// is aligned for direct writes.
pub fn write_zero_bytes<D: Dest + ?Sized>(dest: &mut D, pos: u64, len: u64) -> Result<()> {
    static ZEROS: OnceLock<AlignedBuf> = OnceLock::new();
    // Allocated zeroed on first use (untouched pages cost no memory), not a static array: an
    // immutable zero array would be stored in the binary.
    let zeros = ZEROS.get_or_init(|| AlignedBuf::new(ZERO_PIECE, 4096));
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZERO_PIECE as u64) as usize;
        dest.write_at(pos + done, &zeros.as_slice()[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// A destination that stays failed: after its first failed write, zeroing or sync, every later
/// call fails too. Linux reports a writeback error to one fsync and then forgets it (the pages
/// are dropped as clean), so a second sync "succeeding" proves nothing; whoever saves a mapfile
/// after syncing through this can never claim data that did not reach the disk.
pub struct Guarded<'a> {
    inner: &'a mut dyn Dest,
    failure: Option<String>,
    /// Bytes written since the last successful sync: (lowest, highest end).
    unsynced: Option<(u64, u64)>,
}

impl<'a> Guarded<'a> {
    pub fn new(inner: &'a mut dyn Dest) -> Guarded<'a> {
        Guarded {
            inner,
            failure: None,
            unsynced: None,
        }
    }

    /// Why the destination is unusable, once it is.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn poisoned(&self) -> Result<()> {
        match &self.failure {
            None => Ok(()),
            Some(why) => Err(Error::DestinationFailed {
                path: self.inner.path().to_path_buf(),
                reason: format!(
                    "not written any more after an earlier failure ({why}); the mapfile keeps \
                     only what was durable before it"
                ),
            }),
        }
    }

    fn note_write(&mut self, pos: u64, len: u64) {
        let end = pos.saturating_add(len);
        self.unsynced = Some(match self.unsynced {
            None => (pos, end),
            Some((lo, hi)) => (lo.min(pos), hi.max(end)),
        });
    }

    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.failure = Some(e.to_string());
        Err(e)
    }
}

impl Dest for Guarded<'_> {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()> {
        self.poisoned()?;
        self.note_write(pos, buf.len() as u64);
        match self.inner.write_at(pos, buf) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn write_zeroes(&mut self, pos: u64, len: u64) -> Result<()> {
        self.poisoned()?;
        self.note_write(pos, len);
        match self.inner.write_zeroes(pos, len) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn sync(&mut self) -> Result<()> {
        self.poisoned()?;
        match self.inner.sync() {
            Ok(()) => {
                self.unsynced = None;
                Ok(())
            }
            Err(e) => {
                let range = match self.unsynced {
                    Some((lo, hi)) => format!(
                        "the data written at 0x{lo:X}–0x{hi:X} since the last successful sync \
                         may not be on it"
                    ),
                    None => "nothing was written since the last successful sync".into(),
                };
                let e = Error::DestinationFailed {
                    path: self.inner.path().to_path_buf(),
                    reason: format!(
                        "sync failed ({e}); {range}; the mapfile keeps only what was durable \
                         before"
                    ),
                };
                self.fail(e)
            }
        }
    }

    fn size(&self) -> Result<u64> {
        self.inner.size()
    }

    fn extend_to(&mut self, len: u64) -> Result<()> {
        self.poisoned()?;
        match self.inner.extend_to(len) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read_back(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        self.inner.read_back(pos, buf)
    }
}

/// Size of the shared zero buffer, and of each write when zeros have to be written.
const ZERO_PIECE: usize = 1 << 20;

/// The write side of a destination opened for direct I/O.
struct Direct {
    /// A second descriptor on the same file or device, with O_DIRECT.
    file: File,
    /// What positions, lengths and buffer addresses of direct writes must be multiples of: the
    /// device's logical sector size (4096 for regular files, whose filesystem may sit on a 4K
    /// disk).
    align: usize,
}

/// A destination backed by a file descriptor (regular file or block device).
pub struct FileDest {
    file: File,
    path: PathBuf,
    is_block_device: bool,
    /// Created by this open: unwritten areas are holes that read as zeros.
    is_new: bool,
    /// Set by [`FileDest::enable_direct_writes`].
    direct: Option<Direct>,
    /// Device size and logical sector size, asked once (block devices, for BLKZEROOUT).
    geometry: Option<(u64, u64)>,
    /// BLKZEROOUT was refused as unsupported: write zeros from now on instead of asking again.
    zeroout_unsupported: bool,
}

impl FileDest {
    pub fn new(file: File, path: PathBuf, is_block_device: bool) -> Self {
        FileDest {
            file,
            path,
            is_block_device,
            is_new: false,
            direct: None,
            geometry: None,
            zeroout_unsupported: false,
        }
    }

    /// Opens a destination for writing. A regular file is used as is (never truncated: a resumed
    /// rescue keeps what it wrote), or created if missing and `create` is set. A block device is
    /// only accepted with `force`, because writing it destroys what is on it. Anything else is
    /// refused.
    pub fn open(path: &Path, force: bool, create: bool) -> Result<FileDest> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let ft = meta.file_type();
                let is_block_device = ft.is_block_device();
                if is_block_device && !force {
                    return Err(Error::refused(
                        path,
                        "it is a block device; writing it destroys its contents \
                         (use -f/--force if you really mean it)",
                    ));
                }
                // /dev/null is accepted as a sink: rescuing into it is how test-mode runs and
                // benchmarks measure the algorithm alone (as with ddrescue).
                let discard = is_dev_null(&meta);
                if !is_block_device && !ft.is_file() && !discard {
                    return Err(Error::refused(path, "not a regular file or block device"));
                }
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                Ok(FileDest::new(file, path.to_path_buf(), is_block_device))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                // create_new (O_EXCL): if someone creates it meanwhile we fail instead of
                // claiming a file we did not create is all holes.
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                let mut dest = FileDest::new(file, path.to_path_buf(), false);
                dest.is_new = true;
                Ok(dest)
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// ddrescue's `-t`: truncates a regular file to zero size (nothing else can be truncated).
    pub fn truncate(&mut self) -> Result<()> {
        let meta = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        if is_dev_null(&meta) {
            return Ok(());
        }
        if !meta.is_file() {
            return Err(Error::invalid_arg(
                "--truncate",
                format!("{} is not a regular file", self.path.display()),
            ));
        }
        self.file.set_len(0).map_err(|e| Error::io(&self.path, e))
    }

    /// ddrescue's `-p`: reserves disc space for `len` bytes of a regular file (no-op otherwise).
    pub fn preallocate(&mut self, len: u64) -> Result<()> {
        let meta = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        if !meta.is_file() || len == 0 {
            return Ok(());
        }
        let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
        // SAFETY: a valid open descriptor; posix_fallocate only changes the file's allocation.
        let r = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) };
        if r != 0 {
            return Err(Error::io(
                &self.path,
                io::Error::new(
                    io::Error::from_raw_os_error(r).kind(),
                    format!(
                        "preallocating {len} bytes: {}",
                        io::Error::from_raw_os_error(r)
                    ),
                ),
            ));
        }
        Ok(())
    }

    /// Whether [`FileDest::open`] created the file: then every area not written yet reads as
    /// zeros, and the engine may skip writing zeros there.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    /// The descriptor opened first: buffered (never O_DIRECT), so any read or write through it
    /// may use any position, length and buffer. For a restore target it is the one holding the
    /// exclusive (O_EXCL) claim on the device.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes whole sectors with O_DIRECT from now on: one request per write straight from the
    /// caller's buffer, no page-cache copy, no dirty-page throttling. Parts of a write that are
    /// not whole sectors at sector positions from a sector-aligned buffer (the tail of an
    /// odd-sized image, a GPT header in a `Vec`) still go through the page cache. Returns false,
    /// leaving every write buffered, when the file or device does not support O_DIRECT (EINVAL).
    ///
    /// Direct writes use a second descriptor instead of toggling O_DIRECT with fcntl on the
    /// first: flags belong to the open file description, which `file()` clones share, so a
    /// toggle would race with (and break the alignment of) whoever reads through a clone; two
    /// descriptors also cost no syscalls per write. The second descriptor is opened without
    /// O_EXCL: the first one already holds the device's exclusive claim, and a second exclusive
    /// open would fail with EBUSY even from this process.
    pub fn enable_direct_writes(&mut self) -> Result<bool> {
        if self.direct.is_some() {
            return Ok(true);
        }
        let meta = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        // Opened by path again: make sure it is still the same device or file (a hot-plug may
        // have given the name to another disk meanwhile).
        let again = file.metadata().map_err(|e| Error::io(&self.path, e))?;
        let same = if self.is_block_device {
            again.file_type().is_block_device() && again.rdev() == meta.rdev()
        } else {
            again.dev() == meta.dev() && again.ino() == meta.ino()
        };
        if !same {
            return Err(Error::refused(
                &self.path,
                "it changed while being opened (another device now has this name)",
            ));
        }
        let align = if self.is_block_device {
            crate::device::file::sector_sizes(&self.file)
                .map_err(|e| Error::io(&self.path, e))?
                .0 as usize
        } else {
            4096
        };
        self.direct = Some(Direct { file, align });
        Ok(true)
    }

    /// Whether whole-sector writes bypass the page cache ([`FileDest::enable_direct_writes`]).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Asks the kernel to start writing `[from, to)` to the disk now, without waiting. A file
    /// written once and fsynced at the end would otherwise stay dirty (up to the kernel's dirty
    /// limits) and be written in the final fsync with the CPUs idle; started early, the disk
    /// writes overlap the work that produces the data. Advisory: if it fails, the fsync does the
    /// work.
    pub fn start_writeback(&self, from: u64, to: u64) {
        use std::os::unix::io::AsRawFd;
        let (Ok(off), Ok(len)) = (
            libc::off64_t::try_from(from),
            libc::off64_t::try_from(to.saturating_sub(from)),
        ) else {
            return;
        };
        // SAFETY: sync_file_range on a descriptor we own; it touches no memory of ours.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    /// Whether [`Dest::write_zeroes`] still asks a block device to zero ranges itself: false for
    /// regular files, and after the device refused BLKZEROOUT as unsupported.
    pub fn zeroes_offloaded(&self) -> bool {
        self.is_block_device && !self.zeroout_unsupported
    }

    /// Size and logical sector size of a block device, asked once.
    fn device_geometry(&mut self) -> Result<(u64, u64)> {
        if let Some(g) = self.geometry {
            return Ok(g);
        }
        let size =
            crate::device::file::device_size(&self.file).map_err(|e| Error::io(&self.path, e))?;
        let (logical, _) =
            crate::device::file::sector_sizes(&self.file).map_err(|e| Error::io(&self.path, e))?;
        let g = (size, u64::from(logical.max(512)));
        self.geometry = Some(g);
        Ok(g)
    }

    /// Writes the longest whole-sector prefix of `buf` with O_DIRECT; returns how many bytes
    /// that was (0 when `pos` or the buffer's address is not sector-aligned, or direct writes
    /// are off), the rest is for the buffered path.
    fn write_direct_prefix(&mut self, pos: u64, buf: &[u8]) -> Result<usize> {
        let Some(d) = &self.direct else {
            return Ok(0);
        };
        let align = d.align;
        if pos % align as u64 != 0 || (buf.as_ptr() as usize) % align != 0 {
            return Ok(0);
        }
        let want = buf.len() - buf.len() % align;
        let mut done = 0usize;
        while done < want {
            let at = pos + done as u64;
            match d.file.write_at(&buf[done..want], at) {
                Ok(0) => return Err(no_space(&self.path, at)),
                Ok(n) => {
                    done += n;
                    if n % align != 0 {
                        // A short write that ends mid-sector (only at a device's end): the rest
                        // can only go buffered, which then reports where space ran out.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // The kernel refused the alignment after all (a device with stricter DMA
                    // rules than its sector size): stop writing directly; the buffered path
                    // writes this and every later part.
                    self.direct = None;
                    break;
                }
                Err(e) => return Err(write_error(&self.path, at, e)),
            }
        }
        Ok(done)
    }

    /// Writes `buf` at `pos` through the page cache.
    fn write_buffered(&self, pos: u64, buf: &[u8]) -> Result<()> {
        // Our own loop instead of write_all_at, to report the exact offset where space ran out.
        // Buffered writes go in pieces of WRITE_PIECE: on the kernels measured here, 1 MiB
        // page-cache writes took twice as long per byte as 64–128 KiB ones (docs/benchmarks.md).
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let end = (done + WRITE_PIECE).min(buf.len());
            match self.file.write_at(&buf[done..end], at) {
                // A block device returns 0 (or ENOSPC) at its end.
                Ok(0) => return Err(no_space(&self.path, at)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(write_error(&self.path, at, e)),
            }
        }
        Ok(())
    }
}

/// Largest single write(2) to the page cache.
const WRITE_PIECE: usize = 128 << 10;

nix::ioctl_write_ptr_bad!(blk_zeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

fn no_space(path: &Path, offset: u64) -> Error {
    Error::NoSpace {
        path: path.to_path_buf(),
        offset,
    }
}

/// A failed write or zeroing at `offset`: ENOSPC becomes [`Error::NoSpace`], anything else an
/// [`Error::Io`] whose message names the offset (the error kind is kept).
fn write_error(path: &Path, offset: u64, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return no_space(path, offset);
    }
    Error::io(
        path,
        io::Error::new(e.kind(), format!("writing at offset {offset}: {e}")),
    )
}

impl Dest for FileDest {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()> {
        let done = self.write_direct_prefix(pos, buf)?;
        self.write_buffered(pos + done as u64, &buf[done..])
    }

    /// On a block device, the whole-sector part of the range inside the device is zeroed with
    /// BLKZEROOUT: the kernel guarantees it then reads as zeros, using the device's Write Zeroes
    /// command (or an offload such as a loop device's fallocate) when there is one and writing
    /// zero pages itself otherwise, without zeros crossing from user space. The rest, and every
    /// range once the device refused BLKZEROOUT as unsupported, is written as zeros.
    ///
    /// The ioctl goes through `file()`, the descriptor holding the exclusive claim of a restore
    /// target: only then does the kernel discard the range's cached pages outright; through
    /// another descriptor it may only invalidate them, and fails with EBUSY if one is dirty.
    fn write_zeroes(&mut self, pos: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !self.is_block_device || self.zeroout_unsupported {
            return write_zero_bytes(self, pos, len);
        }
        let (size, sector) = self.device_geometry()?;
        let Some(end) = pos.checked_add(len) else {
            return Err(write_error(
                &self.path,
                pos,
                io::Error::from_raw_os_error(libc::EOVERFLOW),
            ));
        };
        // Whole sectors inside the device; bytes past its end go to write_zero_bytes, which
        // reports NoSpace where the device ends, like a write would.
        let first = pos.next_multiple_of(sector);
        let last = end.min(size) / sector * sector;
        if first >= last {
            return write_zero_bytes(self, pos, len);
        }
        write_zero_bytes(self, pos, first - pos)?;
        let range = [first, last - first];
        // SAFETY: BLKZEROOUT reads two u64 (start, length) through the pointer, which points at
        // `range`, alive for the call; the descriptor is open for writing.
        let r = unsafe { blk_zeroout(self.file.as_raw_fd(), &range) };
        match r {
            Ok(_) => {}
            Err(
                nix::errno::Errno::EOPNOTSUPP
                | nix::errno::Errno::ENOTTY
                | nix::errno::Errno::EINVAL,
            ) => {
                self.zeroout_unsupported = true;
                write_zero_bytes(self, first, last - first)?;
            }
            Err(e) => return Err(write_error(&self.path, first, io::Error::from(e))),
        }
        write_zero_bytes(self, last, end - last)
    }

    /// One fsync covers direct writes too: both descriptors share the device's (or file's) page
    /// cache, and fsync on a block device also flushes the disk's volatile write cache, where
    /// completed O_DIRECT writes and BLKZEROOUT may still sit.
    fn sync(&mut self) -> Result<()> {
        if is_dev_null(&self.file.metadata().map_err(|e| Error::io(&self.path, e))?) {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    fn size(&self) -> Result<u64> {
        if self.is_block_device {
            crate::device::file::device_size(&self.file).map_err(|e| Error::io(&self.path, e))
        } else {
            self.file
                .metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io(&self.path, e))
        }
    }

    fn extend_to(&mut self, len: u64) -> Result<()> {
        let meta = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        if !meta.is_file() || meta.len() >= len {
            return Ok(());
        }
        self.file.set_len(len).map_err(|e| Error::io(&self.path, e))
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_back(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(done)
    }
}

fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: u8 = 0xA5;

    fn filled(dir: &Path, len: usize) -> PathBuf {
        let path = dir.join("dest.bin");
        std::fs::write(&path, vec![OLD; len]).expect("write test file");
        path
    }

    /// `[pos, pos + len)` is zero, every other byte still OLD.
    fn assert_zeroed(data: &[u8], pos: usize, len: usize) {
        for (i, &b) in data.iter().enumerate() {
            let want = if (pos..pos + len).contains(&i) {
                0
            } else {
                OLD
            };
            assert_eq!(b, want, "byte {i}");
        }
    }

    #[test]
    fn write_zeroes_on_a_regular_file_writes_zeros_and_extends_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = (3 << 20) + 3000;
        let path = filled(dir.path(), len);
        let mut d = FileDest::open(&path, false, false).expect("open");
        assert!(!d.zeroes_offloaded());
        d.write_zeroes(700, (2 << 20) + 333).expect("zeroes");
        d.write_zeroes(5, 0).expect("nothing to zero");
        d.sync().expect("sync");
        let data = std::fs::read(&path).expect("read back");
        assert_zeroed(&data, 700, (2 << 20) + 333);
        // Past the end: the file grows, like a write.
        d.write_zeroes(len as u64 - 100, 5000)
            .expect("zeroes past the end");
        let data = std::fs::read(&path).expect("read back");
        assert_eq!(data.len(), len + 4900);
        assert!(data[len - 100..].iter().all(|&b| b == 0));
        assert!(data[len - 101] == OLD);
    }

    #[test]
    fn write_zeroes_writes_zeros_once_blkzeroout_is_refused() {
        // A regular file taken for a block device: BLKZEROOUT is tried and refused (ENOTTY), the
        // way a device without it refuses it; the range must still read as zeros, and the ioctl
        // is not asked again.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = filled(dir.path(), 4 << 20);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut d = FileDest::new(file, path.clone(), true);
        assert!(d.zeroes_offloaded());
        d.write_zeroes(700, (2 << 20) + 333)
            .expect("zeroes with the fallback");
        assert!(!d.zeroes_offloaded(), "the refusal is remembered");
        let data = std::fs::read(&path).expect("read back");
        assert_zeroed(&data, 700, (2 << 20) + 333);
        d.write_zeroes(3 << 20, 4096).expect("zeroes again");
        let data = std::fs::read(&path).expect("read back");
        assert!(data[3 << 20..(3 << 20) + 4096].iter().all(|&b| b == 0));
        assert_eq!(data[(3 << 20) + 4096], OLD);
    }

    #[test]
    fn direct_writes_split_whole_sectors_from_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = 1 << 20;
        let path = filled(dir.path(), len);
        let mut d = FileDest::open(&path, false, false).expect("open");
        assert!(
            d.enable_direct_writes().expect("direct open"),
            "the temp directory's filesystem refused O_DIRECT; run with TMPDIR on one that has it"
        );
        assert!(d.is_direct());
        let mut want = vec![OLD; len];
        let mut put = |d: &mut FileDest, pos: usize, data: &[u8]| {
            d.write_at(pos as u64, data).expect("write");
            want[pos..pos + data.len()].copy_from_slice(data);
        };
        // Aligned buffer, aligned position, odd length: 3 sectors direct, 1000 bytes buffered.
        let mut a = AlignedBuf::new(3 * 4096 + 1000, 4096);
        a.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 | 1);
        put(&mut d, 8192, &a);
        // Unaligned position; unaligned buffer; both buffered.
        put(&mut d, 40960 + 512, &a[..8192]);
        put(&mut d, 5, &[0x11; 777]);
        put(&mut d, 65536, &a[1..4097]);
        // Directly over the page the first write's buffered tail dirtied: the cached copy must
        // not win later.
        put(&mut d, 20480, &a[..4096]);
        d.write_zeroes(100_000, 300_000).expect("zeroes");
        want[100_000..400_000].fill(0);
        d.sync().expect("sync");
        assert!(std::fs::read(&path).expect("read back") == want);
    }

    #[test]
    fn write_errors_name_the_offset_and_enospc_is_no_space() {
        let p = Path::new("/dev/x");
        match write_error(p, 4096, io::Error::from_raw_os_error(libc::ENOSPC)) {
            Error::NoSpace { path, offset } => assert_eq!((path.as_path(), offset), (p, 4096)),
            other => panic!("{other:?}"),
        }
        let e = write_error(p, 1234, io::Error::from_raw_os_error(libc::EIO));
        let msg = e.to_string();
        assert!(
            msg.contains("/dev/x") && msg.contains("offset 1234"),
            "{msg}"
        );
        assert!(matches!(e, Error::Io { .. }));
    }
}
