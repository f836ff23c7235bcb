//! Where rescued or restored data goes.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
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
}

impl FileDest {
    pub fn new(file: File, path: PathBuf, is_block_device: bool) -> Self {
        FileDest {
            file,
            path,
            is_block_device,
        }
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Dest for FileDest {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()> {
        match self.file.write_all_at(buf, pos) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(Error::NoSpace {
                path: self.path.clone(),
                offset: pos,
            }),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn sync(&mut self) -> Result<()> {
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
        if self.is_block_device || self.size()? >= len {
            return Ok(());
        }
        self.file.set_len(len).map_err(|e| Error::io(&self.path, e))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

// TEMP (main): replaced by the device branch.
impl FileDest {
    pub fn open(path: &Path, force: bool, create: bool) -> Result<FileDest> {
        use std::os::unix::fs::FileTypeExt;
        let is_dev = std::fs::metadata(path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if is_dev && !force {
            return Err(Error::refused(path, "block device needs --force"));
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(create && !is_dev)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(FileDest::new(f, path.to_path_buf(), is_dev))
    }
}
