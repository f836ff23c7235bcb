//! What an NBD export reads from: a salvor image (decoded chunk by chunk through the shared
//! [`ChunkCache`]), or a raw image, device or rescued copy (read through [`device::Source`],
//! holes found with `SEEK_DATA`/`SEEK_HOLE`; with a ddrescue mapfile, unrescued sectors fail
//! with EIO the way nbdkit's ddrescue filter does). Every backend is read-only; writes go to an
//! [`super::overlay::Overlay`] on top.

use super::cache::{ChunkBuf, ChunkCache};
use super::proto::{EIO, EPERM, ESHUTDOWN, STATE_HOLE, STATE_ZERO};
use crate::device::{FileSource, OpenOptions, ReadFault, Source};
use crate::error::{Error, Result};
use crate::image::reader::ImageFile;
use crate::image::srcread::{load_mapfile, Readable};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a read or write failed, at which byte (bytes before it were delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub offset: u64,
    /// An NBD error number (`proto::EIO`, ...).
    pub errno: u32,
    pub message: String,
}

impl Fault {
    pub fn new(offset: u64, errno: u32, message: impl Into<String>) -> Fault {
        Fault {
            offset,
            errno,
            message: message.into(),
        }
    }
}

/// A run of bytes with the same `base:allocation` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    pub flags: u32,
}

/// The bytes an NBD server exports. Shared by every connection (one thread each).
pub trait Export: Send + Sync {
    fn size(&self) -> u64;

    /// Whether writes are taken (an overlay); otherwise the export is read-only.
    fn writable(&self) -> bool {
        false
    }

    /// Fills `buf` from `offset` (the caller checked the range). On a fault, the bytes before
    /// `fault.offset` are valid.
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault>;

    /// The allocation states from `offset` on, in order, covering at most `len` bytes and at
    /// least one byte (the caller checked the range).
    fn extents(&self, offset: u64, len: u64) -> Vec<Extent>;

    /// Like [`Export::read`], but the bytes are handed out as [`Piece`]s of buffers the export
    /// already holds (decoded chunks), so a reply is written from them without a copy. `None`:
    /// not supported, use `read`. On a fault, `out` covers the bytes before `fault.offset`.
    fn read_shared(
        &self,
        _offset: u64,
        _len: usize,
        _out: &mut Vec<Piece>,
    ) -> Option<std::result::Result<(), Fault>> {
        None
    }

    fn write(&self, offset: u64, _data: &[u8]) -> std::result::Result<(), Fault> {
        Err(Fault::new(offset, EPERM, "the export is read-only"))
    }

    /// Makes every completed write durable.
    fn flush(&self) -> std::result::Result<(), Fault> {
        Ok(())
    }

    /// A line for `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION`.
    fn describe(&self) -> String;
}

/// A run of a read served from memory: `len` bytes at `start` of a shared buffer, or zeros.
#[derive(Clone)]
pub struct Piece {
    pub data: Option<Arc<ChunkBuf>>,
    pub start: usize,
    pub len: usize,
}

impl Piece {
    /// The bytes (`None`: `len` zeros).
    pub fn bytes(&self) -> Option<&[u8]> {
        self.data
            .as_deref()
            .map(|d| &d[self.start..self.start + self.len])
    }
}

/// At most this many extents per reply: a client asks again from where the list ended.
pub const MAX_EXTENTS: usize = 2048;

/// Extent lists built piecewise: consecutive runs with the same flags merge.
#[derive(Debug, Default)]
pub struct Extents(pub Vec<Extent>);

impl Extents {
    pub fn push(&mut self, len: u64, flags: u32) {
        if len == 0 {
            return;
        }
        match self.0.last_mut() {
            Some(e) if e.flags == flags => e.len += len,
            _ => self.0.push(Extent { len, flags }),
        }
    }

    pub fn full(&self) -> bool {
        self.0.len() >= MAX_EXTENTS
    }
}

/// Sets `flags` on `[s, e)` (absolute offsets) in `ext`, which starts at `start`.
pub fn paint(ext: Vec<Extent>, start: u64, s: u64, e: u64, flags: u32) -> Vec<Extent> {
    let mut out = Extents::default();
    let mut pos = start;
    for x in ext {
        let (a, b) = (pos, pos + x.len);
        pos = b;
        let (ps, pe) = (s.max(a), e.min(b));
        if ps >= pe {
            out.push(x.len, x.flags);
            continue;
        }
        out.push(ps - a, x.flags);
        out.push(pe - ps, flags);
        out.push(b - pe, x.flags);
    }
    out.0
}

/// A salvor image: chunks decoded on demand into the shared cache; all-zero chunks are never
/// decoded, read as zeros and reported as holes. Sequential readers (nbdcopy, a booting VM,
/// `dd`) have the chunks ahead of them decoded by a small pool of read-ahead threads, so that a
/// connection's thread only copies decoded bytes to its socket; small random reads never
/// trigger read-ahead.
pub struct ImageExport {
    core: Arc<ImageCore>,
    ahead: Arc<ReadAhead>,
}

/// Reads at least this long may start read-ahead.
const PREFETCH_MIN_READ: usize = 64 << 10;
/// Read streams remembered (a client's connections each read their own part sequentially).
const STREAMS: usize = 16;

/// The read-ahead queue shared by the pool's threads.
struct ReadAhead {
    state: Mutex<AheadState>,
    wake: std::sync::Condvar,
    /// Chunks decoded ahead of each sequential stream (and the most queued at once, per
    /// thread): bounded, so read-ahead never holds more than a few chunks beyond the cache.
    depth: usize,
}

#[derive(Default)]
struct AheadState {
    queue: std::collections::VecDeque<usize>,
    /// Where recent large reads ended: a read starting at or shortly after one continues it.
    ends: [u64; STREAMS],
    next_slot: usize,
    stop: bool,
}

impl ReadAhead {
    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn worker(&self, core: &ImageCore) {
        loop {
            let k = {
                let mut g = self.lock();
                loop {
                    if g.stop {
                        return;
                    }
                    if let Some(k) = g.queue.pop_front() {
                        break k;
                    }
                    g = match self.wake.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
            };
            // A failure shows up again when a client reads the chunk.
            let _ = core.chunk_data(k);
        }
    }
}

impl Drop for ImageExport {
    fn drop(&mut self) {
        self.ahead.lock().stop = true;
        self.ahead.wake.notify_all();
    }
}

impl ImageExport {
    /// With `fail_unrescued`, reads of the areas the image records as not rescued fail with EIO
    /// (as a rescued copy served with its mapfile does) instead of returning the zeros stored.
    pub fn open(path: &Path, cache_bytes: usize, fail_unrescued: bool) -> Result<ImageExport> {
        let mut core = ImageCore::open(path, cache_bytes)?;
        if fail_unrescued {
            let mut h: Vec<(u64, u64)> = core
                .image
                .trailer
                .holes
                .iter()
                .map(|h| (h.offset, h.offset + h.size))
                .collect();
            h.sort_unstable();
            core.holes = h;
        }
        let core = Arc::new(core);
        let threads = crate::image::default_threads().clamp(1, 8);
        // Never more read-ahead than a quarter of the cache holds, so it does not evict itself.
        let fit = (cache_bytes / core.chunk.max(1) as usize / 4).max(1);
        let ahead = Arc::new(ReadAhead {
            state: Mutex::new(AheadState::default()),
            wake: std::sync::Condvar::new(),
            depth: threads.max(2).min(fit),
        });
        for i in 0..threads {
            let (ahead, core) = (ahead.clone(), core.clone());
            // Without the pool, connections decode on their own threads: slower, still right.
            let _ = std::thread::Builder::new()
                .name(format!("nbd-ahead-{i}"))
                .spawn(move || ahead.worker(&core));
        }
        Ok(ImageExport { core, ahead })
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.core.cache
    }

    pub fn zero_chunks(&self) -> usize {
        self.core.zero.iter().filter(|z| **z).count()
    }

    /// Queues the chunks after a large read for decoding when the read continues an earlier
    /// one (a sequential stream), or ends in a chunk's last quarter.
    fn maybe_prefetch(&self, offset: u64, len: usize) {
        if len < PREFETCH_MIN_READ {
            return;
        }
        let c = self.core.chunk;
        let end = offset + len as u64;
        let last = ((end - 1) / c) as usize;
        let mut g = self.ahead.lock();
        let stream = g
            .ends
            .iter()
            .position(|&e| e > 0 && offset >= e && offset - e <= c);
        let depth = match stream {
            Some(i) => {
                g.ends[i] = end;
                self.ahead.depth
            }
            None => {
                let slot = g.next_slot;
                g.ends[slot] = end;
                g.next_slot = (slot + 1) % STREAMS;
                if (end - 1) % c < c * 3 / 4 {
                    return;
                }
                1
            }
        };
        let before = g.queue.len();
        for k in last + 1..(last + 1 + depth).min(self.core.zero.len()) {
            if g.queue.len() >= self.ahead.depth * 2 {
                break;
            }
            if self.core.zero[k] || g.queue.contains(&k) || self.core.cache.is_present(k) {
                continue;
            }
            g.queue.push_back(k);
        }
        let added = g.queue.len() - before;
        drop(g);
        for _ in 0..added {
            self.ahead.wake.notify_one();
        }
    }
}

/// A chunk's all-zero `[start, end)` runs, offsets within the chunk.
type ZeroRuns = Box<[(u64, u64)]>;

struct ImageCore {
    image: ImageFile,
    /// Unrescued `[start, end)` ranges whose reads fail (empty unless asked).
    holes: Vec<(u64, u64)>,
    chunk: u64,
    size: u64,
    zero: Vec<bool>,
    /// Each chunk's all-zero runs (from its frame's block headers, read on first use).
    zero_runs: Vec<std::sync::OnceLock<ZeroRuns>>,
    cache: ChunkCache,
}

impl ImageCore {
    fn open(path: &Path, cache_bytes: usize) -> Result<ImageCore> {
        let image = ImageFile::open(path)?;
        let chunk = image.metadata.chunk_size;
        let size = image.metadata.source_size;
        // A chunk is known to be all zeros when its recorded SHA-256 is that of zeros, or (images
        // without digests) when its frame is tiny and carries the checksum of zeros.
        let mut known: Vec<(u32, [u8; 32], u32)> = Vec::new();
        let mut zero = Vec::with_capacity(image.frames.len());
        for (k, f) in image.frames.iter().enumerate() {
            let n = f.entry.decompressed;
            let (sha, xxh) = match known.iter().find(|(len, _, _)| *len == n) {
                Some(&(_, s, x)) => (s, x),
                None => {
                    let zeros = vec![0u8; n as usize];
                    let s: [u8; 32] = Sha256::digest(&zeros).into();
                    let x = xxhash_rust::xxh64::xxh64(&zeros, 0) as u32;
                    known.push((n, s, x));
                    (s, x)
                }
            };
            let is_zero = match image.chunk_digests.as_ref().and_then(|d| d.get(k)) {
                Some(d) => *d == sha,
                None => {
                    image.has_checksums
                        && f.entry.checksum == xxh
                        && u64::from(f.entry.compressed) * 64 < u64::from(n)
                }
            };
            zero.push(is_zero);
        }
        Ok(ImageCore {
            image,
            holes: Vec::new(),
            chunk,
            size,
            zero_runs: (0..zero.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            zero,
            cache: ChunkCache::new(cache_bytes.max(chunk as usize)),
        })
    }

    fn chunk_data(&self, k: usize) -> std::result::Result<Arc<ChunkBuf>, Fault> {
        self.cache.get_or_load(k, || {
            let fail = |e: Error| Fault::new(k as u64 * self.chunk, EIO, e.to_string());
            DECODE.with_borrow_mut(|d| {
                d.load(&self.image, k).map_err(fail)?;
                let runs = self.runs_with(k, d);
                let dctx = match &mut d.dctx {
                    Some(x) => x,
                    None => d.dctx.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| fail(Error::Internal(format!("zstd: {e}"))))?,
                    ),
                };
                let want = self.image.frames[k].entry.decompressed as usize;
                let mut out = self.cache.buffer(want).ok_or_else(|| {
                    fail(Error::Internal(format!(
                        "no memory for a {want}-byte chunk buffer"
                    )))
                })?;
                if !out.is_fresh() || runs.is_empty() {
                    if out.is_fresh() {
                        out.populate(0, want);
                    }
                    self.image
                        .decode_frame(k, &d.comp, dctx, &mut out[..])
                        .map_err(fail)?;
                    return Ok(out);
                }
                // A fresh buffer reads as zeros: the chunk's zero runs (half of the memory of a
                // cold copy of a typical disk, zstd's RLE blocks) are not written, so no page
                // is faulted in and cleared for them. The chunk is decoded into the thread's
                // scratch buffer and only its data is copied.
                if d.scratch.len() < want {
                    d.scratch.resize(want, 0);
                }
                let scratch = &mut d.scratch[..want];
                self.image
                    .decode_frame(k, &d.comp, dctx, scratch)
                    .map_err(fail)?;
                let data = data_ranges(runs, scratch);
                for &(s, e) in &data {
                    out.populate(s, e);
                }
                let dst = &mut out[..];
                for (s, e) in data {
                    dst[s..e].copy_from_slice(&scratch[s..e]);
                }
                Ok(out)
            })
        })
    }
}

thread_local! {
    // Per connection thread: the compressed frame's buffer, a decoder context and a scratch
    // buffer for chunks with zero runs, reused (a fresh zeroed buffer per chunk cost a fifth of
    // a cold copy's CPU in memset and page faults).
    static DECODE: std::cell::RefCell<Decode> = const {
        std::cell::RefCell::new(Decode::new())
    };
}

/// A connection thread's decoding state (see [`ImageCore::chunk_data`]).
struct Decode {
    comp: Vec<u8>,
    /// Which frame `comp` holds: a chunk's zero runs are parsed from its frame, and the frame
    /// is then decoded from the same read.
    frame: Option<usize>,
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    scratch: Vec<u8>,
}

impl Decode {
    const fn new() -> Decode {
        Decode {
            comp: Vec::new(),
            frame: None,
            dctx: None,
            scratch: Vec::new(),
        }
    }

    /// Frame `k` into `comp`, unless it is there already.
    fn load(&mut self, image: &ImageFile, k: usize) -> Result<()> {
        if self.frame != Some(k) {
            self.frame = None;
            image.read_frame(k, &mut self.comp)?;
            self.frame = Some(k);
        }
        Ok(())
    }
}

/// The parts of a decoded chunk to copy into a fresh buffer: everything but its zero runs
/// (offsets in the chunk, sorted) — and any run whose decoded bytes are not zeros after all
/// (the runs come from the frame's block headers; the decoded data has the last word).
fn data_ranges(runs: &[(u64, u64)], decoded: &[u8]) -> Vec<(usize, usize)> {
    let n = decoded.len();
    let is_zero = |b: &[u8]| {
        let mut c = b.chunks_exact(64);
        c.all(|x| x == [0u8; 64]) && c.remainder().iter().all(|&x| x == 0)
    };
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut push = |s: usize, e: usize| {
        if s < e {
            match out.last_mut() {
                Some(l) if l.1 == s => l.1 = e,
                _ => out.push((s, e)),
            }
        }
    };
    let mut at = 0usize;
    for &(s, e) in runs {
        let (s, e) = ((s as usize).clamp(at, n), (e as usize).min(n));
        push(at, s);
        if s < e {
            if !is_zero(&decoded[s..e]) {
                push(s, e);
            }
            at = e;
        } else {
            at = s;
        }
    }
    push(at, n);
    out
}

impl Export for ImageExport {
    fn size(&self) -> u64 {
        self.core.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        let mut pieces = Vec::new();
        let r = self.read_shared(offset, buf.len(), &mut pieces);
        let mut at = 0;
        for p in &pieces {
            let out = &mut buf[at..at + p.len];
            match p.bytes() {
                Some(b) => out.copy_from_slice(b),
                None => out.fill(0),
            }
            at += p.len;
        }
        r.unwrap_or(Ok(()))
    }

    fn read_shared(
        &self,
        offset: u64,
        len: usize,
        out: &mut Vec<Piece>,
    ) -> Option<std::result::Result<(), Fault>> {
        self.maybe_prefetch(offset, len);
        out.clear();
        let end = offset + len as u64;
        let i = self.core.holes.partition_point(|h| h.1 <= offset);
        if let Some(&(s, _)) = self.core.holes.get(i).filter(|h| h.0 < end) {
            let bad = s.max(offset);
            return Some(self.core.pieces(offset, bad, out).and_then(|()| {
                Err(Fault::new(
                    bad,
                    EIO,
                    format!("offset {bad} was not rescued (the image records it as a hole)"),
                ))
            }));
        }
        Some(self.core.pieces(offset, end, out))
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let mut ext = self.core.extents(offset, len);
        let covered: u64 = ext.iter().map(|e| e.len).sum();
        for &(s, e) in &self.core.holes {
            if s < offset + covered && e > offset {
                ext = paint(ext, offset, s, e, 0);
            }
        }
        ext
    }

    fn describe(&self) -> String {
        self.core.describe()
    }
}

impl ImageCore {
    /// `[offset, end)` as pieces of decoded chunks (zero chunks as zeros, never decoded).
    fn pieces(
        &self,
        offset: u64,
        end: u64,
        out: &mut Vec<Piece>,
    ) -> std::result::Result<(), Fault> {
        let mut pos = offset;
        while pos < end {
            let k = (pos / self.chunk) as usize;
            let within = (pos % self.chunk) as usize;
            let n = (self.chunk - within as u64).min(end - pos) as usize;
            let end_in = within as u64 + n as u64;
            let in_zeros = || {
                self.runs(k)
                    .iter()
                    .any(|&(s, e)| s <= within as u64 && end_in <= e)
            };
            if self.zero.get(k).copied().unwrap_or(true) || in_zeros() {
                out.push(Piece {
                    data: None,
                    start: 0,
                    len: n,
                });
            } else {
                // A fault is reported inside the request, where the failed chunk's part begins.
                let data = self.chunk_data(k).map_err(|mut f| {
                    f.offset = f.offset.max(pos);
                    f
                })?;
                if data.len() < within + n {
                    return Err(Fault::new(pos, EIO, "chunk shorter than the image says"));
                }
                out.push(Piece {
                    data: Some(data),
                    start: within,
                    len: n,
                });
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Chunk `k`'s zero runs (empty when unknown or on a read error: then it is all data, and
    /// the error shows when the chunk is read).
    fn runs(&self, k: usize) -> &[(u64, u64)] {
        if let Some(r) = self.zero_runs.get(k).and_then(|c| c.get()) {
            return r;
        }
        DECODE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut d) => self.runs_with(k, &mut d),
            // Not expected (the decoder does not ask for runs while it holds the state): a
            // state of its own then.
            Err(_) => self.runs_with(k, &mut Decode::new()),
        })
    }

    /// [`Self::runs`], parsed on first use from the frame that `d` holds or reads (the decoder
    /// then decodes the same bytes).
    fn runs_with(&self, k: usize, d: &mut Decode) -> &[(u64, u64)] {
        match self.zero_runs.get(k) {
            Some(r) => r.get_or_init(|| {
                d.load(&self.image, k)
                    .ok()
                    .and_then(|()| self.image.zero_runs(k, &d.comp))
                    .unwrap_or_default()
                    .into_boxed_slice()
            }),
            None => &[],
        }
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let mut out = Extents::default();
        let end = offset + len;
        let mut pos = offset;
        let zero = STATE_HOLE | STATE_ZERO;
        while pos < end && !out.full() {
            let k = (pos / self.chunk) as usize;
            let base = k as u64 * self.chunk;
            let next = (base + self.chunk).min(end);
            if self.zero.get(k).copied().unwrap_or(false) {
                out.push(next - pos, zero);
            } else {
                // Zero runs inside the chunk (as a sparse raw file's holes would be).
                for &(s, e) in self.runs(k) {
                    let (s, e) = ((base + s).max(pos), (base + e).min(next));
                    if s < e {
                        out.push(s - pos, 0);
                        out.push(e - s, zero);
                        pos = e;
                    }
                }
                out.push(next - pos, 0);
            }
            pos = next;
        }
        out.0
    }

    fn describe(&self) -> String {
        let m = &self.image.metadata;
        format!(
            "salvor image {} of {}{}",
            self.image.path().display(),
            m.source.path,
            m.label
                .as_ref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        )
    }
}

/// A raw image, a block device, or a rescued copy with its mapfile.
pub struct RawExport {
    path: PathBuf,
    size: u64,
    file_size: u64,
    /// Open sources, one taken per read (several connections read at once).
    sources: Mutex<Vec<FileSource>>,
    /// For `SEEK_DATA`/`SEEK_HOLE` (regular files only).
    seek: Option<Mutex<File>>,
    /// With a mapfile: the rescued ranges (reads elsewhere fail) and the unrescued ones.
    readable: Option<Readable>,
    mapfile: Option<PathBuf>,
}

impl RawExport {
    pub fn open(path: &Path, mapfile: Option<&Path>) -> Result<RawExport> {
        let src = FileSource::open(path, OpenOptions::default())?;
        let file_size = src.geometry().size;
        let seek = if src.is_block_device() {
            None
        } else {
            Some(Mutex::new(
                File::open(path).map_err(|e| Error::io(path, e))?,
            ))
        };
        let (size, readable) = match mapfile {
            Some(m) => {
                let map = load_mapfile(m)?;
                let size = map.end();
                (size, Some(Readable::from_map(&map, size)))
            }
            None => (file_size, None),
        };
        Ok(RawExport {
            path: path.to_path_buf(),
            size,
            file_size,
            sources: Mutex::new(vec![src]),
            seek,
            readable,
            mapfile: mapfile.map(Path::to_path_buf),
        })
    }

    /// The first byte in `[offset, end)` that was not rescued.
    fn first_unrescued(&self, offset: u64, end: u64) -> Option<u64> {
        let r = self.readable.as_ref()?;
        let ranges = r.ranges.as_deref().unwrap_or(&[]);
        let mut pos = offset;
        let i = ranges.partition_point(|x| x.1 <= pos);
        for &(s, e) in &ranges[i..] {
            if s > pos {
                break;
            }
            pos = pos.max(e);
            if pos >= end {
                return None;
            }
        }
        (pos < end).then_some(pos)
    }

    fn take_source(&self) -> std::result::Result<FileSource, Fault> {
        let mut g = match self.sources.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match g.pop() {
            Some(s) => Ok(s),
            None => {
                drop(g);
                FileSource::open(&self.path, OpenOptions::default())
                    .map_err(|e| Fault::new(0, EIO, e.to_string()))
            }
        }
    }

    fn give_back(&self, s: FileSource) {
        let mut g = match self.sources.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.len() < 16 {
            g.push(s);
        }
    }

    fn read_file(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        let mut src = self.take_source()?;
        let mut done = 0usize;
        let mut result = Ok(());
        while done < buf.len() {
            let pos = offset + done as u64;
            if pos >= self.file_size {
                result = Err(Fault::new(
                    pos,
                    EIO,
                    format!(
                        "{} ends at {}, before the disk's end",
                        self.path.display(),
                        self.file_size
                    ),
                ));
                break;
            }
            let out = src.read_at(pos, &mut buf[done..]);
            done += out.good;
            match out.fault {
                None if out.good == 0 => {
                    result = Err(Fault::new(pos, EIO, "unexpected end of file"));
                    break;
                }
                None => {}
                Some(f) => {
                    let at = offset + done as u64;
                    let gone = matches!(f, ReadFault::Gone(_));
                    let msg = format!("{}: {f}", self.path.display());
                    result = Err(Fault::new(at, if gone { ESHUTDOWN } else { EIO }, msg));
                    break;
                }
            }
        }
        self.give_back(src);
        result
    }

    /// Data/hole runs of the file from `SEEK_DATA`/`SEEK_HOLE`; all data for devices.
    fn seek_extents(&self, offset: u64, end: u64) -> Vec<Extent> {
        let mut out = Extents::default();
        let Some(file) = &self.seek else {
            out.push(end - offset, 0);
            return out.0;
        };
        let f = match file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fd = f.as_raw_fd();
        let mut pos = offset;
        let file_end = self.file_size.min(end);
        while pos < file_end && !out.full() {
            // SAFETY: lseek on a descriptor we own; it only moves the file offset.
            let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
            if data < 0 {
                // ENXIO: no data after pos. Anything else: report data (safe).
                let hole = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
                out.push(
                    file_end - pos,
                    if hole { STATE_HOLE | STATE_ZERO } else { 0 },
                );
                pos = file_end;
                break;
            }
            let data = (data as u64).min(file_end);
            out.push(data - pos, STATE_HOLE | STATE_ZERO);
            pos = data;
            if pos >= file_end {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_HOLE) };
            let hole = if hole < 0 {
                file_end
            } else {
                (hole as u64).min(file_end)
            };
            out.push(hole.max(pos + 1) - pos, 0);
            pos = hole.max(pos + 1);
        }
        // Past the end of a short rescued copy: nothing there (reads fail, see below).
        if pos < end && !out.full() {
            out.push(end - pos, 0);
        }
        out.0
    }
}

impl Export for RawExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        let end = offset + buf.len() as u64;
        match self.first_unrescued(offset, end) {
            None => self.read_file(offset, buf),
            Some(bad) => {
                let good = (bad - offset) as usize;
                self.read_file(offset, &mut buf[..good])?;
                Err(Fault::new(
                    bad,
                    EIO,
                    format!(
                        "offset {bad} was not rescued (mapfile {})",
                        self.mapfile
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                ))
            }
        }
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let end = offset + len;
        let mut ext = self.seek_extents(offset, end);
        // Unrescued areas are reported as data: a client must read them to see that they fail.
        if let Some(r) = &self.readable {
            let covered: u64 = ext.iter().map(|e| e.len).sum();
            let stop = offset + covered;
            for h in r.holes.iter().filter(|h| h.offset < stop) {
                if h.offset + h.size > offset {
                    ext = paint(ext, offset, h.offset, h.offset + h.size, 0);
                }
            }
        }
        ext
    }

    fn describe(&self) -> String {
        match &self.mapfile {
            Some(m) => format!(
                "rescued copy {} (mapfile {})",
                self.path.display(),
                m.display()
            ),
            None => format!("raw image {}", self.path.display()),
        }
    }
}

/// A qcow2, VHD or VMDK file (as `salvor export` writes them, and the common cases of other
/// tools): unallocated granules read as zeros and are reported as holes.
pub struct FormatExport {
    disk: crate::export::open::SparseDisk,
}

impl FormatExport {
    pub fn open(path: &Path) -> Result<FormatExport> {
        Ok(FormatExport {
            disk: crate::export::open::SparseDisk::open(path)?,
        })
    }
}

impl Export for FormatExport {
    fn size(&self) -> u64 {
        self.disk.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Fault> {
        self.disk
            .read_at(offset, buf)
            .map_err(|e| Fault::new(offset, EIO, e.to_string()))
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let g = self.disk.granule;
        let mut out = Extents::default();
        let end = offset + len;
        let mut pos = offset;
        while pos < end && !out.full() {
            let k = pos / g;
            let next = ((k + 1) * g).min(end);
            let flags = if self.disk.is_hole(k) {
                STATE_HOLE | STATE_ZERO
            } else {
                0
            };
            out.push(next - pos, flags);
            pos = next;
        }
        out.0
    }

    fn describe(&self) -> String {
        format!("{:?} disk", self.disk.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_splits_and_merges() {
        let e = vec![Extent { len: 10, flags: 3 }, Extent { len: 10, flags: 0 }];
        let p = paint(e.clone(), 100, 105, 112, 0);
        assert_eq!(
            p,
            vec![Extent { len: 5, flags: 3 }, Extent { len: 15, flags: 0 }]
        );
        assert_eq!(paint(e.clone(), 100, 0, 50, 3), e);
        assert_eq!(paint(e.clone(), 100, 120, 130, 7), e);
    }

    #[test]
    fn data_ranges_skip_zero_runs_but_trust_the_decoded_bytes() {
        let mut d = vec![7u8; 1000];
        d[100..300].fill(0);
        d[500..900].fill(0);
        // Runs as the block headers say: both zero, the second clipped to the chunk.
        assert_eq!(
            data_ranges(&[(100, 300), (500, 900)], &d),
            vec![(0, 100), (300, 500), (900, 1000)]
        );
        assert_eq!(data_ranges(&[(0, 1000)], &vec![0u8; 1000]), vec![]);
        assert_eq!(data_ranges(&[(900, 4000)], &d), vec![(0, 1000)]);
        // A run that is not zeros in the decoded chunk is copied too.
        d[650] = 1;
        assert_eq!(
            data_ranges(&[(100, 300), (500, 900)], &d),
            vec![(0, 100), (300, 1000)]
        );
        // Runs past the end, overlapping or empty change nothing they should not.
        assert_eq!(
            data_ranges(&[(100, 300), (200, 250), (2000, 3000)], &d),
            vec![(0, 100), (300, 1000)]
        );
    }
}
