//! An image as one file or as numbered parts (`NAME.000`, `NAME.001`, ...) that concatenate to it.

use crate::device::{Dest, FileDest};
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Three digits keep `cat NAME.*` in order; more parts than that would sort wrongly.
pub const MAX_PARTS: u64 = 1000;

pub fn part_path(base: &Path, index: u64) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(format!(".{index:03}"));
    PathBuf::from(s)
}

/// If `path` ends in `.NNN`, the base name and the number.
fn split_suffix(path: &Path) -> Option<(PathBuf, u64)> {
    let s = path.to_str()?;
    let (base, num) = s.rsplit_once('.')?;
    if num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()) {
        Some((PathBuf::from(base), num.parse().ok()?))
    } else {
        None
    }
}

/// Writes a byte stream sequentially into one file or into parts of `split` bytes each.
/// Small writes (zero frames are a few hundred bytes) are gathered into one large write.
pub struct PartWriter {
    base: PathBuf,
    split: Option<u64>,
    parts: Vec<FileDest>,
    pos: u64,
    buf: Vec<u8>,
    /// Where in the current part writeback has not been started yet.
    writeback_from: u64,
}

const GATHER: usize = 4 << 20;
/// Writeback of the image is started every this many bytes (see [`FileDest::start_writeback`]).
const WRITEBACK_STEP: u64 = 16 << 20;

impl PartWriter {
    /// Refuses to overwrite an existing file: an image is never silently replaced.
    pub fn create(base: &Path, split: Option<u64>) -> Result<PartWriter> {
        if let Some(s) = split {
            if s == 0 {
                return Err(Error::invalid_arg("--split", "must be greater than 0"));
            }
        }
        let mut w = PartWriter {
            base: base.to_path_buf(),
            split,
            parts: Vec::new(),
            pos: 0,
            buf: Vec::with_capacity(GATHER * 2),
            writeback_from: 0,
        };
        w.open_part(0)?;
        Ok(w)
    }

    fn open_part(&mut self, index: u64) -> Result<()> {
        let path = match self.split {
            Some(_) => {
                if index >= MAX_PARTS {
                    return Err(Error::invalid_arg(
                        "--split",
                        format!(
                            "the image would need more than {MAX_PARTS} parts; use a larger size"
                        ),
                    ));
                }
                part_path(&self.base, index)
            }
            None => self.base.clone(),
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::refused(&path, "file exists; remove it or choose another name")
                } else {
                    Error::io(&path, e)
                }
            })?;
        self.parts.push(FileDest::new(file, path, false));
        Ok(())
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|p| p.path().to_path_buf()).collect()
    }

    /// Bytes written (or gathered) so far.
    pub fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.buf.is_empty() && data.len() >= GATHER {
            return self.write_through(data);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= GATHER {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_through(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn write_through(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let (index, offset, room) = match self.split {
                None => (0, self.pos, data.len() as u64),
                Some(s) => (self.pos / s, self.pos % s, s - self.pos % s),
            };
            while self.parts.len() as u64 <= index {
                self.open_part(self.parts.len() as u64)?;
            }
            let n = room.min(data.len() as u64) as usize;
            if offset == 0 {
                self.writeback_from = 0;
            }
            self.parts[index as usize].write_at(offset, &data[..n])?;
            let end = offset + n as u64;
            if end - self.writeback_from >= WRITEBACK_STEP {
                self.parts[index as usize].start_writeback(self.writeback_from, end);
                self.writeback_from = end;
            }
            self.pos += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Flushes and fsyncs every part; returns their paths.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.flush()?;
        for p in &mut self.parts {
            p.sync()?;
        }
        Ok(self.paths())
    }

    /// Removes what was written (used when imaging fails: a partial image has no seek table).
    pub fn discard(self) {
        for p in self.parts {
            let _ = std::fs::remove_file(p.path());
        }
    }
}

/// Reads an image stored as one file or as parts, as one byte range.
pub struct PartReader {
    parts: Vec<(PathBuf, File, u64)>,
    /// Offset of each part's first byte in the whole image.
    starts: Vec<u64>,
    len: u64,
    /// The path the user gave, for messages.
    display: PathBuf,
}

impl PartReader {
    /// Opens `path`: a plain image, any part of a split image, or the split image's base name.
    pub fn open(path: &Path) -> Result<PartReader> {
        // A name ending in .NNN is a part unless it is a plain file with no .000 beside it.
        let base = match split_suffix(path) {
            Some((b, _)) if part_path(&b, 0).exists() || !path.exists() => Some(b),
            _ if !path.exists() && part_path(path, 0).exists() => Some(path.to_path_buf()),
            _ => None,
        };
        let names: Vec<PathBuf> = match base {
            None => {
                let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
                if meta.is_dir() {
                    return Err(Error::invalid_arg(
                        path.display().to_string(),
                        "is a directory",
                    ));
                }
                vec![path.to_path_buf()]
            }
            Some(base) => Self::find_parts(&base)?,
        };
        let mut parts = Vec::new();
        let mut starts = Vec::new();
        let mut len = 0u64;
        for n in names {
            let f = File::open(&n).map_err(|e| Error::io(&n, e))?;
            let l = crate::device::file::device_size(&f).map_err(|e| Error::io(&n, e))?;
            starts.push(len);
            len += l;
            parts.push((n, f, l));
        }
        Ok(PartReader {
            parts,
            starts,
            len,
            display: path.to_path_buf(),
        })
    }

    fn find_parts(base: &Path) -> Result<Vec<PathBuf>> {
        let mut names = Vec::new();
        while names.len() as u64 <= MAX_PARTS {
            let p = part_path(base, names.len() as u64);
            if !p.exists() {
                break;
            }
            names.push(p);
        }
        // A gap: any numbered part after the first missing one means that one was lost.
        let first_missing = names.len() as u64;
        let dir = base
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut later = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for entry in rd.flatten() {
                let p = dir.join(entry.file_name());
                if let Some((b, n)) = split_suffix(&p) {
                    if b.file_name() == base.file_name() && n > first_missing {
                        later.push(n);
                    }
                }
            }
        }
        if names.is_empty() || !later.is_empty() {
            return Err(Error::corrupt(
                part_path(base, first_missing),
                format!("part {first_missing:03}"),
                "this part of the split image is missing",
            ));
        }
        Ok(names)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn part_paths(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|p| p.0.clone()).collect()
    }

    pub fn part_sizes(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.2).collect()
    }

    pub fn display_path(&self) -> &Path {
        &self.display
    }

    /// The name of the part holding byte `pos` (for messages).
    pub fn part_of(&self, pos: u64) -> &Path {
        let i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        self.parts.get(i).map_or(&self.display, |p| &p.0)
    }

    /// Reads exactly `buf.len()` bytes at `pos`; running past the end is corruption (truncation).
    pub fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::corrupt(
                &self.display,
                format!("offset {pos}"),
                format!(
                    "{} bytes needed but the image ends at {}",
                    buf.len(),
                    self.len
                ),
            ));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let i = self.starts.partition_point(|&s| s <= at) - 1;
            let (path, file, plen) = &self.parts[i];
            let off = at - self.starts[i];
            let n = ((plen - off) as usize).min(buf.len() - done);
            file.read_exact_at(&mut buf[done..done + n], off)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::corrupt(path, format!("offset {off}"), "file shrank while reading")
                    } else {
                        Error::io(path, e)
                    }
                })?;
            done += n;
        }
        Ok(())
    }
}
