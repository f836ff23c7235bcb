//! A bounded LRU cache of decoded chunks shared by every connection, so that random small reads do
//! not decode a 4 MiB chunk each time. A chunk being decoded by one thread is waited for by the
//! others instead of being decoded twice (sequential readers on several connections often ask
//! for the same chunk at once).
//!
//! Chunks live in [`ChunkBuf`]s, and the buffers of evicted chunks are reused for the next
//! decodes: fresh memory costs a page fault and a page clearing per 4 KiB, which in a cold copy
//! was more CPU than zstd itself. (Transparent huge pages were tried: fewer faults, but more
//! system time on this benchmark machine, so they are not asked for.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

/// Buffers of evicted chunks kept for reuse.
const FREE_BUFFERS: usize = 8;
/// A decoded chunk's memory: an anonymous mapping, so its bytes start as zeros (it is always
/// initialised, and a decoder can fill it without clearing it first) and it goes back to the
/// kernel whole when dropped.
pub struct ChunkBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// The whole mapping (`len` rounded up to pages).
    mapped: usize,
    /// Never written since it was mapped: every byte reads as zero without being touched.
    fresh: bool,
}

// SAFETY: the mapping is owned by this value alone; access goes through & and &mut borrows.
unsafe impl Send for ChunkBuf {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for ChunkBuf {}

impl ChunkBuf {
    /// A zero-filled buffer of `len` bytes; None if the kernel has no memory for it.
    pub fn new(len: usize) -> Option<ChunkBuf> {
        let mapped = len.max(1).div_ceil(4096) * 4096;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(ChunkBuf {
            ptr: std::ptr::NonNull::new(p.cast())?,
            len,
            mapped,
            fresh: true,
        })
    }

    /// Whether the buffer was never written (its bytes are zeros no page holds yet).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Faults in the pages of `[start, end)` in one call before they are written: one page
    /// fault per 4 KiB costs more than the kernel's batched population (and on kernels older
    /// than 5.14, which lack it, the writes fault them in as before).
    pub fn populate(&mut self, start: usize, end: usize) {
        let (s, e) = (
            start / 4096 * 4096,
            end.min(self.mapped).div_ceil(4096) * 4096,
        );
        if s < e {
            // SAFETY: the range lies inside this value's own mapping; the advice only faults in
            // pages (their contents stay zero).
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(s).cast(),
                    e - s,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }

    /// Room for this many bytes (a reused buffer may be larger than asked).
    pub fn capacity(&self) -> usize {
        self.mapped
    }

    /// Sets the length to `len` (at most the capacity; the bytes are whatever was there).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.mapped);
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.mapped);
        }
    }
}

impl std::ops::Deref for ChunkBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes of a live mapping, initialised (zero-filled or written since).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for ChunkBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // Whoever borrows it mutably may write it.
        self.fresh = false;
        // SAFETY: as above, and &mut self makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
impl From<&[u8]> for ChunkBuf {
    /// A copy of `data`.
    fn from(data: &[u8]) -> ChunkBuf {
        let mut b = match ChunkBuf::new(data.len()) {
            Some(b) => b,
            None => std::process::abort(),
        };
        b.copy_from_slice(data);
        b
    }
}

pub struct ChunkCache {
    inner: Mutex<Inner>,
    loaded: Condvar,
    capacity: usize,
}

struct Inner {
    map: HashMap<usize, (Arc<ChunkBuf>, u64)>,
    /// Buffers of evicted chunks nobody else held, for reuse.
    free: Vec<ChunkBuf>,
    loading: HashSet<usize>,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl ChunkCache {
    /// A cache holding at most `capacity` bytes of chunks (at least one chunk is always kept).
    pub fn new(capacity: usize) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                free: Vec::new(),
                loading: HashSet::new(),
                bytes: 0,
                tick: 0,
                hits: 0,
                misses: 0,
            }),
            loaded: Condvar::new(),
            capacity,
        }
    }

    /// A buffer of at least `len` bytes for a decode: an evicted chunk's if one fits.
    pub fn buffer(&self, len: usize) -> Option<ChunkBuf> {
        let reused = {
            let mut g = self.lock();
            let i = g.free.iter().position(|b| b.capacity() >= len);
            i.map(|i| g.free.swap_remove(i))
        };
        let mut b = reused.or_else(|| ChunkBuf::new(len))?;
        b.set_len(len);
        Some(b)
    }

    /// Chunk `k` from the cache, or decoded by `load` (once, even with concurrent callers).
    pub fn get_or_load<E>(
        &self,
        k: usize,
        load: impl FnOnce() -> Result<ChunkBuf, E>,
    ) -> Result<Arc<ChunkBuf>, E> {
        {
            let mut g = self.lock();
            loop {
                g.tick += 1;
                let tick = g.tick;
                if let Some((data, t)) = g.map.get_mut(&k) {
                    *t = tick;
                    let d = data.clone();
                    g.hits += 1;
                    return Ok(d);
                }
                if !g.loading.contains(&k) {
                    g.loading.insert(k);
                    g.misses += 1;
                    break;
                }
                g = match self.loaded.wait(g) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
        }
        let result = load();
        let mut g = self.lock();
        g.loading.remove(&k);
        let out = match result {
            Ok(data) => {
                let data = Arc::new(data);
                g.bytes += data.len();
                let tick = g.tick;
                if let Some((old, _)) = g.map.insert(k, (data.clone(), tick)) {
                    g.bytes -= old.len();
                }
                while g.bytes > self.capacity && g.map.len() > 1 {
                    let Some((&victim, _)) = g
                        .map
                        .iter()
                        .filter(|(&key, _)| key != k)
                        .min_by_key(|(_, (_, t))| *t)
                    else {
                        break;
                    };
                    if let Some((old, _)) = g.map.remove(&victim) {
                        g.bytes -= old.len();
                        // A reader still sending from it keeps it; it is then freed there.
                        if let Ok(buf) = Arc::try_unwrap(old) {
                            if g.free.len() < FREE_BUFFERS {
                                g.free.push(buf);
                            }
                        }
                    }
                }
                Ok(data)
            }
            Err(e) => Err(e),
        };
        drop(g);
        self.loaded.notify_all();
        out
    }

    /// Whether chunk `k` is cached or being decoded.
    pub fn is_present(&self, k: usize) -> bool {
        let g = self.lock();
        g.map.contains_key(&k) || g.loading.contains(&k)
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        (g.hits, g.misses)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lru() {
        let c = ChunkCache::new(3 * 10);
        let buf = |v: u8| ChunkBuf::from(&[v; 10][..]);
        for k in 0..3 {
            c.get_or_load::<()>(k, || Ok(buf(k as u8))).unwrap();
        }
        // Touch 0 so that 1 is the least recently used.
        c.get_or_load::<()>(0, || panic!("cached")).unwrap();
        c.get_or_load::<()>(3, || Ok(buf(3))).unwrap();
        assert_eq!(c.bytes(), 30);
        let mut reloaded = false;
        c.get_or_load::<()>(1, || {
            reloaded = true;
            Ok(buf(1))
        })
        .unwrap();
        assert!(reloaded);
        assert_eq!(c.get_or_load::<()>(0, || Ok(buf(9))).unwrap()[0], 0);
        assert!(c.get_or_load(7, || Err("bad")).is_err());
        assert_eq!(c.bytes(), 30);
    }

    #[test]
    fn concurrent_loads_decode_once() {
        let c = Arc::new(ChunkCache::new(1 << 20));
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, loads) = (c.clone(), loads.clone());
                std::thread::spawn(move || {
                    c.get_or_load::<()>(5, || {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(ChunkBuf::from(&[5u8; 100][..]))
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap()[0], 5);
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn evicted_buffers_are_reused() {
        let len = 4 << 20;
        let b = ChunkBuf::new(len).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        let c = ChunkCache::new(len);
        let first = c.get_or_load::<()>(0, || Ok(b)).unwrap().as_ptr() as usize;
        // Chunk 1 evicts chunk 0, whose buffer is then handed out again.
        c.get_or_load::<()>(1, || Ok(c.buffer(len).unwrap()))
            .unwrap();
        let again = c.buffer(len).unwrap();
        assert_eq!(again.as_ptr() as usize, first);
        assert_eq!(again.len(), len);
    }
}
