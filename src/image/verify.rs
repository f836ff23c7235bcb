//! `verify IMAGE [--against DEVICE]` and `info`.

use super::format::{Metadata, PartitionTable, Trailer};
use super::reader::{looks_like_salvor_image, ImageFile};
use super::restore::read_table;
use super::srcread::{read_chunk, Readable};
use super::stream::{stream_chunks, Hashing, Input};
use crate::device::{FileSource, Identity, OpenOptions, Source};
use crate::error::{Error, Result};
use crate::progress::{Control, ImageEvent, ImageObserver, ImagePhase};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub image: PathBuf,
    pub chunks: u64,
    pub raw_size: u64,
    /// The disk digest over the chunk SHA-256s, when the image records chunk digests (each one
    /// was checked while decoding).
    pub chunks_sha256: Option<String>,
    /// The flat SHA-256, when the image records one (it was checked).
    pub sha256: Option<String>,
    pub against: Option<PathBuf>,
    pub elapsed: Duration,
}

/// Decodes every chunk (zstd frame checksums, seek-table checksums, sizes), checks each chunk's
/// SHA-256 (in the decoder threads) and the flat SHA-256 when the image records them, and with
/// `against` compares every byte with a disk. The first problem is returned as
/// [`Error::Corrupt`] naming the chunk and its disk offset.
pub fn verify_image(
    image: &Path,
    against: Option<&Path>,
    threads: usize,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<VerifyReport> {
    let start = Instant::now();
    let img = ImageFile::open(image)?;
    let mut dev = match against {
        Some(p) => {
            let s = FileSource::open(p, OpenOptions::default())?;
            if s.geometry().size < img.metadata.source_size {
                return Err(Error::corrupt(
                    p,
                    "size",
                    format!(
                        "{} bytes, the image holds {}",
                        s.geometry().size,
                        img.metadata.source_size
                    ),
                ));
            }
            Some((p.to_path_buf(), s))
        }
        None => None,
    };
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Verifying,
    });
    let mut other = Vec::new();
    let mut events = Vec::new();
    // A used-blocks image stores zeros where no filesystem allocates anything: the disk's old
    // data there (and outside the partitions) is not compared.
    let unallocated = img.metadata.not_stored();
    let against_readable = Readable {
        zero: unallocated,
        ..Readable::all()
    };
    let digest = stream_chunks(
        Input::Image {
            image: &img,
            threads,
        },
        Hashing {
            chunks: img.chunk_digests.is_some(),
            flat: img.trailer.sha256.is_some(),
        },
        ImagePhase::Verifying,
        control,
        obs,
        &mut |c, _| {
            let Some((p, s)) = dev.as_mut() else {
                return Ok(());
            };
            let data = c.data();
            other.resize(data.len(), 0);
            read_chunk(s, p, c.offset, &mut other, &against_readable)?;
            if other[..] != data[..] {
                let i = data
                    .iter()
                    .zip(&other)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let off = c.offset + i as u64;
                events.push(ImageEvent::BadChunk {
                    chunk: c.index,
                    offset: off,
                    reason: "differs from the disk".into(),
                });
                return Err(Error::corrupt(
                    p.as_path(),
                    format!("offset {off} (chunk {})", c.index),
                    format!("differs from the image {}", img.path().display()),
                ));
            }
            Ok(())
        },
    );
    for e in &events {
        obs.event(e);
    }
    let digest = match digest {
        Ok(d) => d,
        Err(e) => {
            if let Error::Corrupt {
                location, reason, ..
            } = &e
            {
                // Locations read "chunk K (disk offset N)".
                let num_after = |key: &str| {
                    location
                        .split(key)
                        .nth(1)
                        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse().ok())
                };
                if let (Some(chunk), Some(offset)) =
                    (num_after("chunk "), num_after("disk offset "))
                {
                    obs.event(&ImageEvent::BadChunk {
                        chunk,
                        offset,
                        reason: reason.clone(),
                    });
                }
            }
            obs.event(&ImageEvent::Finished { ok: false });
            return Err(e);
        }
    };
    let flat = digest.flat_hex();
    match (&img.trailer.sha256, &flat) {
        (Some(want), Some(got)) if want != got => {
            obs.event(&ImageEvent::Finished { ok: false });
            return Err(Error::corrupt(
                img.path(),
                "whole image",
                format!(
                    "SHA-256 of the decoded disk is {got}, the trailer records {want} (every \
                     chunk passed its own checksum)"
                ),
            ));
        }
        (Some(_), None) => return Err(Error::Internal("flat SHA-256 not computed".into())),
        _ => {}
    }
    // Each chunk digest was checked as it was decoded; the list itself was checked against the
    // trailer when the image was opened.
    let chunks_sha256 = digest.chunks_hex();
    if chunks_sha256.is_some() && chunks_sha256 != img.trailer.chunks_sha256 {
        return Err(Error::Internal(
            "chunk digests changed while verifying".into(),
        ));
    }
    obs.event(&ImageEvent::Finished { ok: true });
    Ok(VerifyReport {
        image: image.to_path_buf(),
        chunks: img.frames.len() as u64,
        raw_size: img.metadata.source_size,
        chunks_sha256,
        sha256: flat,
        against: against.map(Path::to_path_buf),
        elapsed: start.elapsed(),
    })
}

/// What `info` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Info {
    /// A salvor image.
    Image {
        path: PathBuf,
        parts: Vec<PathBuf>,
        compressed_size: u64,
        /// compressed / raw.
        ratio: f64,
        metadata: Box<Metadata>,
        trailer: Box<Trailer>,
    },
    /// A block device or a raw image file.
    Raw {
        path: PathBuf,
        is_block_device: bool,
        size: u64,
        logical_sector: u32,
        physical_sector: u32,
        identity: Identity,
        /// Allocated bytes of a (sparse) file.
        allocated: Option<u64>,
        partition_table: Option<PartitionTable>,
        /// Each partition's filesystem (or the whole device's, without a table).
        filesystems: Vec<crate::fs::FsSummary>,
    },
}

/// What `salvor info` shows, without probing filesystems (fast: the TUI uses it).
pub fn info(path: &Path) -> Result<Info> {
    info_impl(path, false)
}

/// [`info`] plus each partition's filesystem (reads the filesystems' allocation metadata).
pub fn info_with_filesystems(path: &Path) -> Result<Info> {
    info_impl(path, true)
}

fn info_impl(path: &Path, probe_fs: bool) -> Result<Info> {
    if looks_like_salvor_image(path) {
        let img = ImageFile::open(path)?;
        let raw = img.metadata.source_size;
        return Ok(Info::Image {
            path: path.to_path_buf(),
            parts: img.part_paths(),
            compressed_size: img.compressed_size(),
            ratio: if raw > 0 {
                img.compressed_size() as f64 / raw as f64
            } else {
                0.0
            },
            metadata: Box::new(img.metadata),
            trailer: Box::new(img.trailer),
        });
    }
    let mut src = FileSource::open(path, OpenOptions::default())?;
    let g = src.geometry();
    let table = read_table(&mut src, g.logical_sector, g.size)?;
    let allocated = if src.is_block_device() {
        None
    } else {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
    };
    Ok(Info::Raw {
        path: path.to_path_buf(),
        is_block_device: src.is_block_device(),
        size: g.size,
        logical_sector: g.logical_sector,
        physical_sector: g.physical_sector,
        identity: src.identity().clone(),
        allocated,
        filesystems: if probe_fs {
            filesystems(&mut src, table.as_ref(), g.logical_sector, g.size)?
        } else {
            Vec::new()
        },
        partition_table: table,
    })
}

/// Probes the filesystem of every partition (extended MBR containers excepted), or of the whole
/// device when there is no partition table.
fn filesystems(
    src: &mut dyn Source,
    table: Option<&PartitionTable>,
    ss: u32,
    size: u64,
) -> Result<Vec<crate::fs::FsSummary>> {
    let mut out = Vec::new();
    match table {
        None => out.push(crate::fs::probe(src, 0..size)?.summary(0)),
        Some(t) => {
            for p in &t.partitions {
                if p.extended {
                    continue;
                }
                let start = p.first_lba.saturating_mul(ss as u64);
                let end = start.saturating_add(p.size);
                out.push(crate::fs::probe(src, start..end)?.summary(p.number));
            }
        }
    }
    Ok(out)
}
