//! Regular files and block devices as a [`Source`], opened read-only.
//!
//! Size comes from BLKGETSIZE64 (or the file length), sector sizes from BLKSSZGET/BLKPBSZGET
//! (512/512 for files; `-b` overrides the logical size reported, not the O_DIRECT alignment).
//!
//! Buffered reads are partial like the kernel's: the bytes delivered before an error are `good`.
//! With O_DIRECT (`-d`), a read whose position, length and buffer address are all aligned to
//! [`FileSource::direct_alignment`] goes straight into the caller's buffer (pass an [`AlignedBuf`]);
//! anything else goes through an aligned bounce buffer covering the enclosing sectors, and only the
//! requested bytes are copied out. Note that the kernel usually fails an O_DIRECT request with a bad
//! sector as a whole (good = 0), so the engine has to trim to find the edges.

use super::{Geometry, ReadFault, ReadOutcome, Source};
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blk_sszget, 0x1268, libc::c_int);
nix::ioctl_read_bad!(blk_pbszget, 0x127b, libc::c_uint);

/// Size in bytes of an open block device (BLKGETSIZE64) or regular file.
pub fn device_size(file: &File) -> io::Result<u64> {
    let meta = file.metadata()?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid for the call.
    unsafe { blk_getsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

/// Logical and physical sector sizes of a block device (512/512 for anything else).
pub fn sector_sizes(file: &File) -> io::Result<(u32, u32)> {
    if !file.metadata()?.file_type().is_block_device() {
        return Ok((512, 512));
    }
    let mut logical: libc::c_int = 0;
    let mut physical: libc::c_uint = 0;
    // SAFETY: both ioctls write one integer through a pointer valid for the call.
    unsafe { blk_sszget(file.as_raw_fd(), &mut logical) }.map_err(io::Error::from)?;
    unsafe { blk_pbszget(file.as_raw_fd(), &mut physical) }.map_err(io::Error::from)?;
    let logical = u32::try_from(logical).unwrap_or(512).max(512);
    Ok((logical, physical.max(logical)))
}

/// What identifies a physical disk across replugs, independent of its /dev name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// O_DIRECT: bypass the page cache (ddrescue's `-d`).
    pub direct: bool,
    /// Sector size override (`-b`); 0 = ask the device.
    pub sector_size: u32,
}

/// A regular file or block device, read with pread. Always opened read-only.
pub struct FileSource {
    file: File,
    path: PathBuf,
    geometry: Geometry,
    is_block_device: bool,
    direct: bool,
    /// Alignment O_DIRECT needs for positions, lengths and memory: the device's real logical
    /// sector size (not a `-b` override), or 4096 for regular files, whose filesystem may sit on a
    /// 4K device (512 on FUSE, which does not align).
    dio_align: usize,
    /// Aligned bounce buffer for O_DIRECT reads whose position, length or buffer is unaligned.
    bounce: Option<AlignedBuf>,
    /// A second, O_DIRECT descriptor for `read_direct_at` on a source opened without O_DIRECT:
    /// `None` until first needed, `Some(None)` where O_DIRECT is not allowed.
    direct_file: Option<Option<File>>,
    identity: Identity,
}

/// Whether `file` lives on a FUSE filesystem.
fn is_fuse(file: &File) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    // The field is i64 on 64-bit Linux, i32 elsewhere.
    #[allow(clippy::unnecessary_cast)]
    nix::sys::statfs::fstatfs(file)
        .map(|st| st.filesystem_type().0 as i64 == FUSE_SUPER_MAGIC)
        .unwrap_or(false)
}

impl FileSource {
    pub fn open(path: &Path, opts: OpenOptions) -> Result<FileSource> {
        let mut oo = std::fs::OpenOptions::new();
        // Read-only, always: nothing ever writes a source.
        oo.read(true);
        if opts.direct {
            oo.custom_flags(libc::O_DIRECT);
        }
        let file = oo.open(path).map_err(|e| {
            if opts.direct && e.raw_os_error() == Some(libc::EINVAL) {
                Error::invalid_arg(
                    path.display().to_string(),
                    "direct access (-d, O_DIRECT) is not supported for this file",
                )
            } else {
                Error::io(path, e)
            }
        })?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let is_block_device = meta.file_type().is_block_device();
        if !is_block_device && !meta.is_file() {
            return Err(Error::invalid_arg(
                path.display().to_string(),
                "not a regular file or block device",
            ));
        }
        let size = device_size(&file).map_err(|e| Error::io(path, e))?;
        let (real_logical, mut physical) = sector_sizes(&file).map_err(|e| Error::io(path, e))?;
        let mut logical = real_logical;
        if opts.sector_size != 0 {
            logical = opts.sector_size;
            physical = physical.max(logical);
        }
        let dio_align = if is_block_device {
            real_logical.max(512) as usize
        } else if is_fuse(&file) {
            // FUSE passes O_DIRECT reads through as they are (no alignment of its own): sector
            // reads stay sector reads, so a sector next to a bad one is not lost with its page.
            512
        } else {
            4096
        };
        let identity = if is_block_device {
            crate::blockdev::identity_of_path(path, size).unwrap_or(Identity {
                size,
                ..Identity::default()
            })
        } else {
            Identity {
                size,
                ..Identity::default()
            }
        };
        Ok(FileSource {
            file,
            path: path.to_path_buf(),
            geometry: Geometry {
                size,
                logical_sector: logical,
                physical_sector: physical,
            },
            is_block_device,
            direct: opts.direct,
            dio_align,
            direct_file: None,
            bounce: None,
            identity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The alignment O_DIRECT reads need (position, length and buffer address). Buffers that
    /// meet it (e.g. an [`AlignedBuf`] of whole sectors at a sector position) are read without a
    /// bounce copy.
    pub fn direct_alignment(&self) -> usize {
        self.dio_align
    }

    /// Size of the O_DIRECT bounce buffer allocated so far: 0 while every read was aligned and
    /// went straight into the caller's buffer.
    pub fn bounce_bytes(&self) -> usize {
        self.bounce.as_ref().map_or(0, AlignedBuf::len)
    }

    fn read_buffered(&self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        let (good, fault) = pread_all(&self.file, pos, buf, None);
        ReadOutcome { good, fault }
    }

    fn read_direct(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        read_direct_with(&self.file, self.dio_align, &mut self.bounce, pos, buf)
    }
}

/// An O_DIRECT read of `buf` at `pos` on `file`, through `bounce` where it is not aligned.
fn read_direct_with(
    file: &File,
    align: usize,
    bounce: &mut Option<AlignedBuf>,
    pos: u64,
    buf: &mut [u8],
) -> ReadOutcome {
    {
        let a = align as u64;
        if pos % a == 0 && buf.len() % align == 0 && (buf.as_ptr() as usize) % align == 0 {
            // Already aligned: the kernel can DMA straight into the caller's buffer.
            let (good, fault) = pread_all(file, pos, buf, Some(align));
            return ReadOutcome { good, fault };
        }
        let start = pos - pos % a;
        let Some(end) = pos
            .checked_add(buf.len() as u64)
            .and_then(|e| e.checked_next_multiple_of(a))
        else {
            return ReadOutcome {
                good: 0,
                fault: Some(ReadFault::Other(io::Error::from_raw_os_error(
                    libc::EOVERFLOW,
                ))),
            };
        };
        let len = (end - start) as usize;
        let bounce = match bounce {
            Some(b) if b.len() >= len => b,
            slot => slot.insert(AlignedBuf::new(len, align.max(4096))),
        };
        let tmp = &mut bounce.as_mut_slice()[..len];
        let (done, fault) = pread_all(file, start, tmp, Some(align));
        let skip = (pos - start) as usize;
        let good = done.saturating_sub(skip).min(buf.len());
        buf[..good].copy_from_slice(&tmp[skip..skip + good]);
        // Bytes of the caller's range that the kernel delivered count; a fault that hit only the
        // padding after the caller's range is not the caller's fault.
        let fault = if good == buf.len() { None } else { fault };
        ReadOutcome { good, fault }
    }
}

impl FileSource {
    /// Whether a block device whose read ended early (inside its reported size, without an
    /// error) or failed is gone. When the kernel removes a disk (unplug, virtio `device_del`) it
    /// sets its capacity to 0 and reads of the still-open descriptor return 0 bytes: the engine
    /// must wait or stop resumably, not treat the device as smaller than it said.
    fn short_read_fault(&self) -> Option<ReadFault> {
        if !self.is_block_device {
            return None;
        }
        let now = device_size(&self.file);
        let node = self.file.metadata().ok().map(|m| {
            let rdev = m.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            PathBuf::from(format!("/sys/dev/block/{major}:{minor}"))
        });
        let node_present = node.as_deref().map(Path::exists);
        short_read_verdict(self.geometry.size, now, node_present)
    }
}

/// The verdict on a short or failed block-device read, from what the device says now: its size from
/// BLKGETSIZE64 on the open descriptor, and whether its sysfs node still exists (`None`: unknown).
/// `Some(Gone)` when the device shrank, fails the size query, or left sysfs; `None` when it still
/// looks the same (a real short device: the engine reports that as an internal error).
fn short_read_verdict(
    reported: u64,
    now: io::Result<u64>,
    node_present: Option<bool>,
) -> Option<ReadFault> {
    let reason = match now {
        Err(e) => format!("the size query on the open device failed ({e})"),
        Ok(size) if size < reported => {
            format!("the device now reports a size of {size} bytes (was {reported})")
        }
        Ok(_) if node_present == Some(false) => "its sysfs node is gone".to_string(),
        Ok(_) => return None,
    };
    Some(ReadFault::Gone(io::Error::new(
        io::ErrorKind::NotFound,
        reason,
    )))
}

/// Reads `buf` at `pos` until full, EOF or an error; returns the bytes read and the fault.
/// With `align` (O_DIRECT), a short read that is not a whole number of units is end of file:
/// asking again at an unaligned offset would only fail with EINVAL.
fn pread_all(
    file: &File,
    pos: u64,
    buf: &mut [u8],
    align: Option<usize>,
) -> (usize, Option<ReadFault>) {
    let mut done = 0usize;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                if align.is_some_and(|a| n % a != 0) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (done, Some(ReadFault::classify(e))),
        }
    }
    (done, None)
}

impl Source for FileSource {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> ReadOutcome {
        if buf.is_empty() {
            return ReadOutcome::ok(0);
        }
        let mut outcome = if self.direct {
            self.read_direct(pos, buf)
        } else {
            self.read_buffered(pos, buf)
        };
        let end = pos.saturating_add(outcome.good as u64);
        match &outcome.fault {
            None if outcome.good < buf.len() && end < self.geometry.size => {
                outcome.fault = self.short_read_fault();
            }
            // A read in flight while the kernel removes the disk can fail with EIO instead of
            // ending early: if the device is gone right after, blame that, not the medium, so
            // nothing is marked bad because of the removal.
            Some(ReadFault::Media(_)) => {
                if let Some(gone) = self.short_read_fault() {
                    outcome.fault = Some(gone);
                }
            }
            _ => {}
        }
        outcome
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn read_direct_at(&mut self, pos: u64, buf: &mut [u8]) -> Option<ReadOutcome> {
        if buf.is_empty() {
            return None;
        }
        let a = self.dio_align as u64;
        // Only where a direct read covers exactly the caller's sectors (no neighbours).
        if pos % a != 0 || buf.len() as u64 % a != 0 {
            return None;
        }
        if self.direct {
            return Some(self.read_direct(pos, buf));
        }
        let path = &self.path;
        let file = self
            .direct_file
            .get_or_insert_with(|| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .as_ref()?;
        Some(read_direct_with(
            file,
            self.dio_align,
            &mut self.bounce,
            pos,
            buf,
        ))
    }

    fn reopen(&mut self) -> io::Result<bool> {
        if !self.is_block_device {
            return Ok(false);
        }
        let Some(path) = crate::blockdev::find_by_identity(&self.identity) else {
            return Ok(false);
        };
        let reopened = FileSource::open(
            &path,
            OpenOptions {
                direct: self.direct,
                sector_size: self.geometry.logical_sector,
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        if reopened.geometry.size != self.geometry.size {
            return Ok(false);
        }
        *self = reopened;
        Ok(true)
    }

    fn is_direct(&self) -> bool {
        self.direct
    }
}

/// A heap buffer aligned for O_DIRECT.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (at least 1) aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        // A non-power-of-two alignment would make the layout invalid; round it up instead.
        let align = align.max(1).checked_next_power_of_two().unwrap_or(4096);
        let layout = std::alloc::Layout::from_size_align(len.max(1), align)
            .unwrap_or_else(|_| std::alloc::Layout::new::<u8>());
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, layout }
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for layout.size() bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_read_of_a_removed_device_is_gone() {
        // What a virtio disk looks like after `device_del`: capacity 0, node gone.
        let v = short_read_verdict(64 << 20, Ok(0), Some(false));
        assert!(matches!(v, Some(ReadFault::Gone(_))), "{v:?}");
        // Capacity 0 alone is enough (the sysfs node may linger for a moment).
        let v = short_read_verdict(64 << 20, Ok(0), Some(true));
        assert!(matches!(v, Some(ReadFault::Gone(_))), "{v:?}");
        let v = short_read_verdict(64 << 20, Ok(64 << 20), Some(false));
        assert!(matches!(v, Some(ReadFault::Gone(_))), "{v:?}");
        let v = short_read_verdict(
            64 << 20,
            Err(io::Error::from_raw_os_error(libc::ENODEV)),
            None,
        );
        assert!(matches!(v, Some(ReadFault::Gone(_))), "{v:?}");
    }

    #[test]
    fn short_read_of_an_unchanged_device_is_not_a_fault() {
        assert!(short_read_verdict(64 << 20, Ok(64 << 20), Some(true)).is_none());
        assert!(short_read_verdict(64 << 20, Ok(64 << 20), None).is_none());
        // A device that grew did not vanish either.
        assert!(short_read_verdict(64 << 20, Ok(128 << 20), Some(true)).is_none());
    }
}
