//! Restore (image → disk) and clone (disk → disk): check the target, stream chunks onto it with
//! large writes, fsync, optionally re-read and compare SHA-256, then move a GPT's backup header
//! to the end of a bigger target.
//!
//! On a block device each chunk goes to the disk in one O_DIRECT write from its aligned pool
//! buffer (no page-cache copy, no dirty-page throttling), and all-zero chunks are zeroed by the
//! kernel (BLKZEROOUT) instead of written; see [`FileDest::enable_direct_writes`] and
//! [`Dest::write_zeroes`]. A regular-file target is written through the page cache and its
//! zero chunks are skipped, leaving holes.

use super::digest::Sha256Digest;
use super::format::{is_zero, PartitionInfo, PartitionTable};
use super::parttable::{self, GptFix};
use super::pool::Counters;
use super::reader::{looks_like_salvor_image, ImageFile};
use super::srcread::Readable;
use super::stream::{stream_chunks, Hashing, Input};
use super::target::{canonical_all, check_target, TargetInfo, TargetRequest};
use crate::device::{Dest, FileDest, FileSource, OpenOptions, Source};
use crate::error::{Error, Result};
use crate::progress::{Control, ImageEvent, ImageObserver, ImagePhase};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

enum Origin {
    Image(Box<ImageFile>),
    /// A raw image file or a source disk, or a qcow2/VHD/VMDK file read through
    /// [`crate::export::open::SparseSource`].
    Raw(Box<dyn Source>),
}

/// A checked restore or clone, ready to run. Nothing has been written yet.
pub struct RestorePlan {
    origin: Origin,
    input_path: PathBuf,
    target: PathBuf,
    pub target_info: TargetInfo,
    /// Bytes that will be written.
    pub size: u64,
    pub logical_sector: u32,
    pub partition_table: Option<PartitionTable>,
}

#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    pub threads: usize,
    /// Re-read the target after writing and compare every chunk's SHA-256.
    pub verify: bool,
    pub chunk_size: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            threads: super::default_threads(),
            verify: false,
            chunk_size: super::format::DEFAULT_CHUNK_SIZE,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub bytes: u64,
    pub target: PathBuf,
    /// With `--verify`: the disk digest (SHA-256 over the chunk SHA-256s) of what was written
    /// and re-read.
    pub chunks_sha256: Option<String>,
    /// Whether `--verify` re-read the target and found it identical.
    pub verified: bool,
    /// What happened to the GPT backup header.
    pub gpt: Option<String>,
    pub elapsed: Duration,
}

impl RestorePlan {
    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn input(&self) -> &Path {
        &self.input_path
    }

    /// One line for the confirmation prompt.
    pub fn describe(&self) -> String {
        format!(
            "write {} ({}) from {} onto {}{} ({})",
            crate::units::format_bytes(self.size),
            self.size,
            self.input_path.display(),
            self.target.display(),
            if self.target_info.is_block_device {
                ""
            } else {
                " (file)"
            },
            crate::units::format_bytes(self.target_info.size),
        )
    }
}

/// Opens the image (salvor or raw) and checks the target; writes nothing.
pub fn prepare_restore(image: &Path, target: &Path) -> Result<RestorePlan> {
    if looks_like_salvor_image(image) {
        let img = ImageFile::open(image)?;
        let inputs = canonical_all(&img.part_paths());
        let m = &img.metadata;
        let info = check_target(&TargetRequest {
            target,
            needed: m.source_size,
            inputs: &inputs,
            logical_sector: m.logical_sector,
            has_partition_table: m.partition_table.is_some(),
        })?;
        Ok(RestorePlan {
            input_path: image.to_path_buf(),
            target: target.to_path_buf(),
            target_info: info,
            size: m.source_size,
            logical_sector: m.logical_sector,
            partition_table: m.partition_table.clone(),
            origin: Origin::Image(Box::new(img)),
        })
    } else if std::fs::metadata(image).is_ok_and(|m| m.is_file())
        && crate::export::open::detect(image).is_some()
    {
        prepare_sparse(image, target)
    } else {
        prepare_raw(image, target)
    }
}

/// Opens the source disk and checks the target; writes nothing.
pub fn prepare_clone(source: &Path, target: &Path) -> Result<RestorePlan> {
    prepare_raw(source, target)
}

fn prepare_raw(input: &Path, target: &Path) -> Result<RestorePlan> {
    let probe = FileSource::open(input, OpenOptions::default())?;
    let direct = probe.is_block_device();
    drop(probe);
    let src = FileSource::open(
        input,
        OpenOptions {
            direct,
            sector_size: 0,
        },
    )?;
    raw_plan(Box::new(src), input, target)
}

/// A qcow2, VHD or VMDK file as the input of a restore.
fn prepare_sparse(input: &Path, target: &Path) -> Result<RestorePlan> {
    let src = crate::export::open::SparseSource::open(input)?;
    raw_plan(Box::new(src), input, target)
}

/// The plan for copying a whole source (a disk, a raw or virtual-disk file) onto `target`.
fn raw_plan(mut src: Box<dyn Source>, input: &Path, target: &Path) -> Result<RestorePlan> {
    let g = src.geometry();
    let table = read_table(src.as_mut(), g.logical_sector, g.size)?;
    let inputs = canonical_all(&[input.to_path_buf()]);
    let info = check_target(&TargetRequest {
        target,
        needed: g.size,
        inputs: &inputs,
        logical_sector: g.logical_sector,
        has_partition_table: table.is_some(),
    })?;
    Ok(RestorePlan {
        input_path: input.to_path_buf(),
        target: target.to_path_buf(),
        target_info: info,
        size: g.size,
        logical_sector: g.logical_sector,
        partition_table: table,
        origin: Origin::Raw(src),
    })
}

/// The partition table of a disk, as the image metadata and `info` summarise it: read by
/// [`crate::blockdev::table`] (the one partition-table reader, on the `gpt` and `mbrman` crates'
/// structures, the same one `salvor list` uses, so both name the types alike). None when there
/// is no table or it does not parse.
pub(crate) fn read_table(
    src: &mut dyn Source,
    ss: u32,
    size: u64,
) -> Result<Option<PartitionTable>> {
    use crate::blockdev::{read_partition_table, TableKind};
    let ss = if ss == 512 || ss == 4096 { ss } else { 0 };
    let mut reader = SourceReader { src, pos: 0 };
    let t = match read_partition_table(&mut reader, size, ss) {
        Ok(t) => t,
        Err(Error::Corrupt { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = match t.kind {
        TableKind::Gpt => "gpt",
        TableKind::Mbr => "mbr",
        TableKind::None | TableKind::Unknown => return Ok(None),
    };
    let ss64 = u64::from(t.sector_size.max(1));
    Ok(Some(PartitionTable {
        kind: kind.into(),
        disk_guid: t.disk_id.clone(),
        partitions: t
            .entries
            .iter()
            .map(|e| PartitionInfo {
                number: e.number,
                first_lba: e.start / ss64,
                last_lba: (e.start + e.size).div_ceil(ss64).saturating_sub(1),
                size: e.size,
                type_id: e.type_code.clone(),
                type_name: e.type_name.clone(),
                name: e.name.clone(),
                guid: e.uuid.clone(),
                extended: e.extended,
            })
            .collect(),
    }))
}

/// A [`Source`] seen as `Read + Seek` for the partition-table reader.
struct SourceReader<'a> {
    src: &'a mut dyn Source,
    pos: u64,
}

impl std::io::Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let out = self.src.read_at(self.pos, buf);
        if out.good == 0 {
            if let Some(f) = out.fault {
                return Err(std::io::Error::other(format!("{f:?}")));
            }
        }
        self.pos += out.good as u64;
        Ok(out.good)
    }
}

impl std::io::Seek for SourceReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let size = self.src.geometry().size;
        let new = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

fn open_target(plan: &RestorePlan) -> Result<FileDest> {
    let path = &plan.target;
    let mut oo = std::fs::OpenOptions::new();
    if plan.target_info.is_block_device {
        // O_EXCL on a block device: fail with EBUSY if anything (a mount, another tool) holds it.
        oo.write(true).read(true).custom_flags(libc::O_EXCL);
    } else {
        oo.write(true).read(true).create(true).truncate(true);
    }
    let file = oo.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            Error::refused(
                path,
                "the device is busy (mounted or opened exclusively elsewhere)",
            )
        } else {
            Error::io(path, e)
        }
    })?;
    let mut dest = FileDest::new(file, path.clone(), plan.target_info.is_block_device);
    if plan.target_info.is_block_device {
        // Without O_DIRECT support (EINVAL) every write stays buffered; nothing else changes.
        dest.enable_direct_writes()?;
    }
    Ok(dest)
}

/// Writes the plan's input onto its target.
pub fn run_restore(
    plan: RestorePlan,
    opts: &RestoreOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<RestoreSummary> {
    let start = Instant::now();
    let mut dest = open_target(&plan)?;
    let is_dev = plan.target_info.is_block_device;
    let size = plan.size;
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Restoring,
    });
    let RestorePlan {
        mut origin,
        input_path,
        ..
    } = plan;
    let chunk_size = match &origin {
        Origin::Image(img) => img.metadata.chunk_size as usize,
        Origin::Raw(_) => opts.chunk_size,
    };
    // Ranges no filesystem allocates (used-blocks images): a disk gets them zeroed by the kernel
    // (BLKZEROOUT, see `Dest::write_zeroes`) instead of written, a fresh file leaves them holes.
    let skip_runs = match &origin {
        Origin::Image(img) => zero_runs(&img.metadata),
        Origin::Raw(_) => Vec::new(),
    };
    let input = match &mut origin {
        Origin::Image(img) => Input::Image {
            image: img,
            threads: opts.threads,
        },
        Origin::Raw(src) => Input::Source {
            src,
            name: input_path.clone(),
            readable: Readable::all(),
            chunk_size: opts.chunk_size,
            size,
        },
    };
    // Every image chunk is checked by its frame checksum anyway. Chunk digests cost CPU, so
    // they are computed only for --verify: then image chunks are also checked against the
    // digests the image records, and the list is compared with the target's after re-reading.
    let hashing = Hashing {
        chunks: opts.verify,
        flat: false,
    };
    let digests = stream_chunks(
        input,
        hashing,
        ImagePhase::Restoring,
        control,
        obs,
        &mut |c, counters| {
            let data = c.data();
            if !is_zero(data) {
                let end = c.offset + data.len() as u64;
                let first = skip_runs.partition_point(|r| r.1 <= c.offset);
                let mut at = c.offset;
                for &(s, e) in skip_runs[first..].iter().take_while(|r| r.0 < end) {
                    let (s, e) = (s.max(c.offset), e.min(end));
                    if s > at {
                        let piece = &data[(at - c.offset) as usize..(s - c.offset) as usize];
                        dest.write_at(at, piece)?;
                    }
                    if is_dev {
                        dest.write_zeroes(s, e - s)?;
                    }
                    at = e;
                }
                if at < end {
                    dest.write_at(at, &data[(at - c.offset) as usize..])?;
                }
            } else if is_dev {
                // A disk has old data there: have it zeroed.
                dest.write_zeroes(c.offset, data.len() as u64)?;
            }
            // (A fresh file reads zeros where nothing was written: zero chunks stay holes.)
            Counters::add(&counters.written, data.len() as u64);
            Ok(())
        },
    )?;
    dest.extend_to(size)?;
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Finishing,
    });
    dest.sync()?;
    let mut verified = false;
    if opts.verify {
        let want = digests
            .chunks
            .as_deref()
            .ok_or_else(|| Error::Internal("no chunk digests to verify against".into()))?;
        let got = hash_target(&dest, size, chunk_size, control, obs)?;
        if let Some(k) = (0..want.len()).find(|&k| got.get(k) != want.get(k)) {
            let off = k as u64 * chunk_size as u64;
            return Err(Error::corrupt(
                dest.path().to_path_buf(),
                format!("offset {off} (chunk {k})"),
                "re-read data differs from what was written",
            ));
        }
        verified = true;
    }
    let mut gpt = None;
    if is_dev && plan_target_bigger(&dest, size)? {
        let file = dest
            .file()
            .try_clone()
            .map_err(|e| Error::io(dest.path(), e))?;
        let tpath = dest.path().to_path_buf();
        let mut read = |pos: u64, buf: &mut [u8]| -> Result<()> {
            file.read_exact_at(buf, pos)
                .map_err(|e| Error::io(&tpath, e))
        };
        let tsize = dest.size()?;
        let fix =
            parttable::relocate_backup_gpt(&mut read, &mut dest, origin_sector(&origin), tsize)?;
        if let GptFix::Moved {
            old_backup_lba,
            new_backup_lba,
        } = fix
        {
            let msg = format!(
                "moved the GPT backup header from LBA {old_backup_lba} to the target's end (LBA {new_backup_lba})"
            );
            obs.event(&ImageEvent::Message {
                message: msg.clone(),
            });
            gpt = Some(msg);
        }
    }
    dest.sync()?;
    obs.event(&ImageEvent::Finished { ok: true });
    Ok(RestoreSummary {
        bytes: size,
        target: dest.path().to_path_buf(),
        chunks_sha256: digests.chunks_hex(),
        verified,
        gpt,
        elapsed: start.elapsed(),
    })
}

fn origin_sector(o: &Origin) -> u32 {
    match o {
        Origin::Image(i) => i.metadata.logical_sector,
        Origin::Raw(s) => s.geometry().logical_sector,
    }
}

fn plan_target_bigger(dest: &FileDest, size: u64) -> Result<bool> {
    Ok(dest.size()? > size)
}

/// Chunk SHA-256s of the target's first `size` bytes, read past the page cache so that the
/// disk, not the cache, is what gets compared.
fn hash_target(
    dest: &FileDest,
    size: u64,
    chunk: usize,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<Vec<Sha256Digest>> {
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::VerifyingTarget,
    });
    let path = dest.path().to_path_buf();
    if !dest.is_block_device() {
        // SAFETY: plain fadvise on an open descriptor; only drops clean cached pages.
        unsafe { libc::posix_fadvise(dest.file().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let mut src = FileSource::open(
        &path,
        OpenOptions {
            direct: dest.is_block_device(),
            sector_size: 0,
        },
    )?;
    let d = stream_chunks(
        Input::Source {
            src: &mut src,
            name: path.clone(),
            readable: Readable::all(),
            chunk_size: chunk,
            size,
        },
        Hashing {
            chunks: true,
            flat: false,
        },
        ImagePhase::VerifyingTarget,
        control,
        obs,
        &mut |_, _| Ok(()),
    )?;
    d.chunks
        .ok_or_else(|| Error::Internal("no chunk digests".into()))
}

/// The unallocated ranges of a used-blocks image worth zeroing (or skipping) instead of writing:
/// at least 1 MiB, shrunk to 4 KiB boundaries so that the writes around them stay aligned for
/// O_DIRECT. Why not BLKDISCARD: a discard is only a hint, and whether the device then reads
/// zeros is not something the kernel reports any more (`queue/discard_zeroes_data` has read 0
/// on every device since Linux 4.12); BLKZEROOUT asks for zeros and lets the kernel use the
/// device's WRITE ZEROES / deallocating unmap when it guarantees them, and write zero pages
/// otherwise.
fn zero_runs(m: &super::format::Metadata) -> Vec<(u64, u64)> {
    const MIN_RUN: u64 = 1 << 20;
    const ALIGN: u64 = 4096;
    let mut runs: Vec<(u64, u64)> = m
        .not_stored()
        .into_iter()
        .filter_map(|(start, end)| {
            let s = start.div_ceil(ALIGN) * ALIGN;
            let e = end / ALIGN * ALIGN;
            (e > s && e - s >= MIN_RUN).then_some((s, e.min(m.source_size)))
        })
        .filter(|r| r.0 < r.1)
        .collect();
    runs.sort_unstable();
    runs
}
