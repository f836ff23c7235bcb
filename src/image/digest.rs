//! Image digests: the SHA-256 of every chunk, the disk digest built from them, and the optional
//! flat SHA-256 of the whole disk.
//!
//! Why per-chunk first: a flat SHA-256 is one sequential stream, so it runs on one core at about
//! 2 GB/s and on a 2-core machine takes that core away from the compressors for the whole run.
//! Chunk digests are computed by the compressor (or decoder) threads in parallel, an all-zero
//! chunk's digest is a constant, and a mismatch names the chunk. The disk digest is
//! `SHA-256(d_0 ‖ d_1 ‖ … ‖ d_{n-1})` over the raw 32-byte chunk digests in disk order, which
//! stock tools reproduce (`docs/image-format.md`):
//!
//! ```text
//! split -b CHUNK_SIZE --filter=sha256sum DISK | cut -c1-64 | xxd -r -p | sha256sum
//! ```

use super::format::is_zero;
use sha2::{Digest, Sha256};

pub type Sha256Digest = [u8; 32];

/// Bytes per digest in the chunk-digest frame.
pub const DIGEST_LEN: usize = 32;

/// Computes chunk digests, with the all-zero chunk's digest computed once.
#[derive(Debug, Clone)]
pub struct ChunkDigester {
    chunk_size: usize,
    zero: Sha256Digest,
}

impl ChunkDigester {
    pub fn new(chunk_size: usize) -> ChunkDigester {
        let block = [0u8; 64 << 10];
        let mut sha = Sha256::new();
        let mut left = chunk_size;
        while left > 0 {
            let n = left.min(block.len());
            sha.update(&block[..n]);
            left -= n;
        }
        ChunkDigester {
            chunk_size,
            zero: sha.finalize().into(),
        }
    }

    /// The digest of one chunk. `known_zero` is the caller's all-zero check when it made one
    /// already (the compressor does, to skip compression).
    pub fn digest(&self, data: &[u8], known_zero: Option<bool>) -> Sha256Digest {
        let full = data.len() == self.chunk_size;
        if full && known_zero.unwrap_or_else(|| is_zero(data)) {
            return self.zero;
        }
        Sha256::digest(data).into()
    }
}

/// The disk digest: SHA-256 over the chunk digests in order.
pub fn disk_digest(chunks: &[Sha256Digest]) -> Sha256Digest {
    let mut sha = Sha256::new();
    for d in chunks {
        sha.update(d);
    }
    sha.finalize().into()
}

/// The chunk digests as stored in the image: 32 bytes each, in disk order.
pub fn encode_digests(chunks: &[Sha256Digest]) -> Vec<u8> {
    chunks.concat()
}

/// Parses stored chunk digests; None when the length is not `count` digests.
pub fn decode_digests(bytes: &[u8], count: u64) -> Option<Vec<Sha256Digest>> {
    if bytes.len() as u64 != count.checked_mul(DIGEST_LEN as u64)? {
        return None;
    }
    Some(
        bytes
            .chunks_exact(DIGEST_LEN)
            .map(|c| {
                let mut d = [0u8; DIGEST_LEN];
                d.copy_from_slice(c);
                d
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shortcut_matches_real_hash() {
        let dg = ChunkDigester::new(3 * 4096 + (64 << 10));
        let zeros = vec![0u8; 3 * 4096 + (64 << 10)];
        let real: Sha256Digest = Sha256::digest(&zeros).into();
        assert_eq!(dg.digest(&zeros, None), real);
        assert_eq!(dg.digest(&zeros, Some(true)), real);
        // A short (last) chunk is hashed for real.
        let short: Sha256Digest = Sha256::digest(&zeros[..4096]).into();
        assert_eq!(dg.digest(&zeros[..4096], None), short);
    }

    #[test]
    fn digests_round_trip() {
        let d = vec![[1u8; 32], [2u8; 32], [3u8; 32]];
        let b = encode_digests(&d);
        assert_eq!(decode_digests(&b, 3), Some(d));
        assert_eq!(decode_digests(&b, 2), None);
        assert_eq!(decode_digests(&b[1..], 3), None);
    }
}
