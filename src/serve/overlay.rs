//! A copy-on-write overlay: writes go into a sparse file of the export's size, and a bitmap of
//! the 4 KiB blocks written (`OVERLAY.map`) says which blocks are read from it instead of from
//! the image. The image is never opened for writing. The map is saved atomically (temporary file,
//! fsync, rename, fsync of the directory) after the data was synced, on every flush, FUA write,
//! disconnect and at shutdown, so a later `serve --overlay` with the same files continues.
//!
//! Map file: `SVOVLMAP` (8 bytes), export size (u64 LE), block size (u64 LE), then the bitmap as
//! little-endian u64 words (bit `i % 64` of word `i / 64` = block `i` is in the overlay).

use super::backend::{paint, Export, Extent, Fault};
use super::proto::{EIO, ENOSPC};
use crate::error::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const BLOCK: u64 = 4096;
const MAGIC: &[u8; 8] = b"SVOVLMAP";

pub struct Overlay {
    base: Box<dyn Export>,
    file: File,
    path: PathBuf,
    map_path: PathBuf,
    state: Mutex<State>,
}

struct State {
    bits: Vec<u64>,
    dirty: bool,
}

impl State {
    fn has(&self, b: u64) -> bool {
        self.bits
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }
    fn set(&mut self, b: u64) {
        if let Some(w) = self.bits.get_mut((b / 64) as usize) {
            *w |= 1 << (b % 64);
        }
    }
}

/// The map file that belongs to an overlay file.
pub fn map_path(overlay: &Path) -> PathBuf {
    let mut s = overlay.as_os_str().to_os_string();
    s.push(".map");
    PathBuf::from(s)
}

impl Overlay {
    /// Opens or creates the overlay `path` over `base`. An existing overlay must come with its
    /// map and be of the same size.
    pub fn open(base: Box<dyn Export>, path: &Path) -> Result<Overlay> {
        let size = base.size();
        let blocks = size.div_ceil(BLOCK);
        let words = blocks.div_ceil(64) as usize;
        let map_path = map_path(path);
        let exists = path.exists();
        let bits = if exists {
            let raw = std::fs::read(&map_path).map_err(|e| {
                Error::io(
                    &map_path,
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{e}; the overlay {} exists without its map, so what it holds is \
                             unknown: give a new overlay file",
                            path.display()
                        ),
                    ),
                )
            })?;
            parse_map(&raw, size, words).map_err(|why| Error::corrupt(&map_path, "map", why))?
        } else {
            vec![0u64; words]
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(!exists)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len != size {
            if exists && len > size {
                return Err(Error::corrupt(
                    path,
                    "size",
                    format!("overlay of {len} bytes for an export of {size}"),
                ));
            }
            file.set_len(size).map_err(|e| Error::io(path, e))?;
        }
        let o = Overlay {
            base,
            file,
            path: path.to_path_buf(),
            map_path,
            state: Mutex::new(State {
                bits,
                dirty: !exists,
            }),
        };
        o.save()?;
        Ok(o)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Syncs the data, then saves the map atomically.
    fn save(&self) -> Result<()> {
        let mut st = self.lock();
        if !st.dirty {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        let mut out = Vec::with_capacity(24 + st.bits.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.base.size().to_le_bytes());
        out.extend_from_slice(&BLOCK.to_le_bytes());
        for w in &st.bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let mut tmp = self.map_path.as_os_str().to_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |e| Error::io(&self.map_path, e);
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&out).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.map_path).map_err(io)?;
        if let Some(dir) = self.map_path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        st.dirty = false;
        Ok(())
    }

    /// Blocks `[a, b)` present in the overlay as runs of (first, end, present).
    fn runs(st: &State, a: u64, b: u64) -> Vec<(u64, u64, bool)> {
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        for blk in a..b {
            let p = st.has(blk);
            match out.last_mut() {
                Some(r) if r.2 == p => r.1 = blk + 1,
                _ => out.push((blk, blk + 1, p)),
            }
        }
        out
    }

    fn fault(&self, at: u64, e: std::io::Error) -> Fault {
        let errno = if e.raw_os_error() == Some(libc::ENOSPC) {
            ENOSPC
        } else {
            EIO
        };
        Fault::new(at, errno, format!("overlay {}: {e}", self.path.display()))
    }

    /// Reads base data for block `blk` (zeros where the base fails: the write replaces it).
    fn base_block(&self, blk: u64) -> Vec<u8> {
        let start = blk * BLOCK;
        let n = BLOCK.min(self.base.size() - start) as usize;
        let mut buf = vec![0u8; n];
        if let Err(f) = self.base.read(start, &mut buf) {
            let good = f.offset.saturating_sub(start).min(n as u64) as usize;
            buf[good..].fill(0);
        }
        buf
    }
}

fn parse_map(raw: &[u8], size: u64, words: usize) -> std::result::Result<Vec<u64>, String> {
    if raw.len() < 24 || &raw[..8] != MAGIC {
        return Err("not a salvor overlay map".into());
    }
    let le = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&raw[at..at + 8]);
        u64::from_le_bytes(a)
    };
    if le(8) != size || le(16) != BLOCK {
        return Err(format!(
            "map is for {} bytes in {}-byte blocks, the export has {size} bytes",
            le(8),
            le(16)
        ));
    }
    if raw.len() != 24 + words * 8 {
        return Err(format!("{} bytes, expected {}", raw.len(), 24 + words * 8));
    }
    Ok((0..words).map(|i| le(24 + i * 8)).collect())
}

impl Export for Overlay {
    fn size(&self) -> u64 {
        self.base.size()
    }

    fn writable(&self) -> bool {
        true
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        let end = offset + buf.len() as u64;
        let runs = {
            let st = self.lock();
            Self::runs(&st, offset / BLOCK, end.div_ceil(BLOCK))
        };
        for (a, b, present) in runs {
            let s = (a * BLOCK).max(offset);
            let e = (b * BLOCK).min(end);
            let out = &mut buf[(s - offset) as usize..(e - offset) as usize];
            if present {
                self.file
                    .read_exact_at(out, s)
                    .map_err(|err| self.fault(s, err))?;
            } else {
                self.base.read(s, out)?;
            }
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let mut ext = self.base.extents(offset, len);
        let covered: u64 = ext.iter().map(|e| e.len).sum();
        let end = offset + covered;
        let runs = {
            let st = self.lock();
            Self::runs(&st, offset / BLOCK, end.div_ceil(BLOCK))
        };
        for (a, b, present) in runs {
            if present {
                ext = paint(ext, offset, a * BLOCK, b * BLOCK, 0);
            }
        }
        ext
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), Fault> {
        let end = offset + data.len() as u64;
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut st = self.lock();
        // Partial blocks not yet in the overlay get the base's bytes first.
        for blk in [first, last] {
            let (bs, be) = (blk * BLOCK, ((blk + 1) * BLOCK).min(self.size()));
            let partial = offset > bs || end < be;
            if partial && !st.has(blk) {
                let b = self.base_block(blk);
                self.file
                    .write_all_at(&b, bs)
                    .map_err(|e| self.fault(bs, e))?;
                st.set(blk);
            }
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.fault(offset, e))?;
        for blk in first..=last {
            st.set(blk);
        }
        st.dirty = true;
        Ok(())
    }

    fn flush(&self) -> std::result::Result<(), Fault> {
        self.save().map_err(|e| Fault::new(0, EIO, e.to_string()))
    }

    fn describe(&self) -> String {
        format!(
            "{} with writes into the overlay {}",
            self.base.describe(),
            self.path.display()
        )
    }
}
