//! A bounded LRU cache of decoded chunks shared by every connection, so that random small reads do
//! not decode a 4 MiB chunk each time. A chunk being decoded by one thread is waited for by the
//! others instead of being decoded twice (sequential readers on several connections often ask
//! for the same chunk at once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

pub struct ChunkCache {
    inner: Mutex<Inner>,
    loaded: Condvar,
    capacity: usize,
}

struct Inner {
    map: HashMap<usize, (Arc<Vec<u8>>, u64)>,
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

    /// Chunk `k` from the cache, or decoded by `load` (once, even with concurrent callers).
    pub fn get_or_load<E>(
        &self,
        k: usize,
        load: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<Vec<u8>>, E> {
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
        for k in 0..3 {
            c.get_or_load::<()>(k, || Ok(vec![k as u8; 10])).unwrap();
        }
        // Touch 0 so that 1 is the least recently used.
        c.get_or_load::<()>(0, || panic!("cached")).unwrap();
        c.get_or_load::<()>(3, || Ok(vec![3; 10])).unwrap();
        assert_eq!(c.bytes(), 30);
        let mut reloaded = false;
        c.get_or_load::<()>(1, || {
            reloaded = true;
            Ok(vec![1; 10])
        })
        .unwrap();
        assert!(reloaded);
        assert_eq!(c.get_or_load::<()>(0, || Ok(vec![9; 10])).unwrap()[0], 0);
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
                        Ok(vec![5; 100])
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
}
