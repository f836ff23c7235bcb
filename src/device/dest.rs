//! Where rescued or restored data goes.

use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

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
}

/// A destination backed by a file descriptor (regular file or block device).
pub struct FileDest {
    file: File,
    path: PathBuf,
    is_block_device: bool,
    /// Created by this open: unwritten areas are holes that read as zeros.
    is_new: bool,
}

impl FileDest {
    pub fn new(file: File, path: PathBuf, is_block_device: bool) -> Self {
        FileDest {
            file,
            path,
            is_block_device,
            is_new: false,
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
                Ok(FileDest {
                    file,
                    path: path.to_path_buf(),
                    is_block_device,
                    is_new: false,
                })
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
                Ok(FileDest {
                    file,
                    path: path.to_path_buf(),
                    is_block_device: false,
                    is_new: true,
                })
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Whether [`FileDest::open`] created the file: then every area not written yet reads as
    /// zeros, and the engine may skip writing zeros there.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Largest single write(2) to the page cache.
const WRITE_PIECE: usize = 128 << 10;

impl Dest for FileDest {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()> {
        // Our own loop instead of write_all_at, to report the exact offset where space ran out.
        // Buffered writes go in pieces of WRITE_PIECE: on the kernels measured here, 1 MiB
        // page-cache writes took twice as long per byte as 64–128 KiB ones (docs/benchmarks.md).
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let end = (done + WRITE_PIECE).min(buf.len());
            match self.file.write_at(&buf[done..end], at) {
                // A block device returns 0 (or ENOSPC) at its end.
                Ok(0) => {
                    return Err(Error::NoSpace {
                        path: self.path.clone(),
                        offset: at,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(Error::NoSpace {
                        path: self.path.clone(),
                        offset: at,
                    })
                }
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(())
    }

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
}

fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}
