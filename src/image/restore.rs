//! Restore (image → disk) and clone (disk → disk): check the target, stream chunks onto it with
//! large writes, fsync, optionally re-read and compare SHA-256, then move a GPT's backup header
//! to the end of a bigger target.
//!
//! On a block device each chunk goes to the disk in one O_DIRECT write from its aligned pool
//! buffer (no page-cache copy, no dirty-page throttling), and all-zero chunks are zeroed by the
//! kernel (BLKZEROOUT) instead of written; see [`FileDest::enable_direct_writes`] and
//! [`Dest::write_zeroes`]. A regular-file target is written through the page cache and its
//! zero chunks are skipped, leaving holes.

use super::format::{is_zero, to_hex, PartitionTable};
use super::parttable::{self, GptFix};
use super::pool::Counters;
use super::reader::{looks_like_salvor_image, ImageFile};
use super::srcread::Readable;
use super::stream::{stream_chunks, Input};
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
    /// A raw image file or a source disk.
    Raw(FileSource),
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
    /// SHA-256 recorded in the image, if any.
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    pub threads: usize,
    /// Re-read the target after writing and compare SHA-256.
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
    /// SHA-256 of the data written (hex), when it was computed.
    pub sha256: Option<String>,
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
            expected_sha256: img.trailer.sha256.clone(),
            origin: Origin::Image(Box::new(img)),
        })
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
    let mut src = FileSource::open(
        input,
        OpenOptions {
            direct,
            sector_size: 0,
        },
    )?;
    let g = src.geometry();
    let table = read_table(&mut src, g.logical_sector, g.size)?;
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
        expected_sha256: None,
        origin: Origin::Raw(src),
    })
}

pub(crate) fn read_table(
    src: &mut dyn Source,
    ss: u32,
    size: u64,
) -> Result<Option<PartitionTable>> {
    let name = PathBuf::from(src.describe());
    let mut read = |pos: u64, buf: &mut [u8]| -> Result<()> {
        if pos.checked_add(buf.len() as u64).is_none_or(|e| e > size) {
            // A table pointing past the end is not a table we can summarise.
            return Err(Error::corrupt(
                &name,
                format!("offset {pos}"),
                "beyond the end",
            ));
        }
        super::srcread::read_chunk(src, &name, pos, buf, &Readable::all())
    };
    match parttable::summarize(&mut read, ss, size) {
        Ok(t) => Ok(t),
        Err(Error::Corrupt { .. }) => Ok(None),
        Err(e) => Err(e),
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
    let (input, hash) = match &mut origin {
        Origin::Image(img) => (
            Input::Image {
                image: img,
                threads: opts.threads,
            },
            // Every chunk is checked by its frame checksum anyway; the whole-disk SHA-256 costs
            // a core's worth of time on a small machine, so it runs only for --verify (which
            // then also checks it against the image's trailer).
            opts.verify,
        ),
        Origin::Raw(src) => (
            Input::Source {
                src,
                name: input_path.clone(),
                readable: Readable::all(),
                chunk_size: opts.chunk_size,
                size,
            },
            opts.verify,
        ),
    };
    let digest = stream_chunks(
        input,
        hash,
        ImagePhase::Restoring,
        control,
        obs,
        &mut |c, counters| {
            let data = c.data();
            if !is_zero(data) {
                dest.write_at(c.offset, data)?;
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
    let written_sha = digest.map(|d| to_hex(&d));
    if let (Origin::Image(img), Some(got)) = (&origin, &written_sha) {
        if let Some(want) = &img.trailer.sha256 {
            if want != got {
                return Err(Error::corrupt(
                    img.path(),
                    "whole image",
                    format!(
                        "SHA-256 of the restored data is {got}, the image records {want}; every \
                         chunk passed its own checksum, so the image was altered consistently"
                    ),
                ));
            }
        }
    }
    let mut verified = false;
    if opts.verify {
        let want = written_sha
            .clone()
            .ok_or_else(|| Error::Internal("no hash to verify against".into()))?;
        let got = hash_target(&dest, size, opts.chunk_size, control, obs)?;
        if got != want {
            return Err(Error::corrupt(
                dest.path().to_path_buf(),
                "whole target",
                format!("re-read SHA-256 {got} differs from the written data's {want}"),
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
        sha256: written_sha,
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

/// SHA-256 of the target's first `size` bytes, read past the page cache so that the disk, not
/// the cache, is what gets compared.
fn hash_target(
    dest: &FileDest,
    size: u64,
    chunk: usize,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<String> {
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
        true,
        ImagePhase::VerifyingTarget,
        control,
        obs,
        &mut |_, _| Ok(()),
    )?;
    d.map(|d| to_hex(&d))
        .ok_or_else(|| Error::Internal("no digest".into()))
}
