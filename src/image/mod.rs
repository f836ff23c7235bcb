//! The disk-image engine: image a disk into a seekable zstd image (or a sparse raw image),
//! restore an image onto a disk, clone a disk, verify an image, describe an image or a disk.
//!
//! The salvor image is a standard zstd seekable-format file (`zstd -d` restores it) with a JSON
//! metadata frame at the start and a JSON trailer before the seek table; `docs/image-format.md`
//! describes it byte by byte. The engine reports through [`crate::progress::ImageObserver`] and
//! obeys [`crate::progress::Control`]; it never touches the terminal.

pub mod create;
pub mod digest;
pub mod format;
pub mod parts;
pub mod parttable;
pub mod pool;
pub mod reader;
pub mod restore;
pub mod srcread;
pub mod stream;
pub mod target;
pub mod used;
pub mod verify;

pub use format::{Hole, ImagedFs, Metadata, PartitionInfo, PartitionTable, SourceInfo, Trailer};
pub use reader::ImageFile;
pub use restore::{
    prepare_clone, prepare_restore, run_restore, RestoreOptions, RestorePlan, RestoreSummary,
};
pub use target::{check_target, TargetInfo, TargetRequest};
pub use verify::{info, info_with_filesystems, verify_image, Info, VerifyReport};

use crate::device::{FileSource, OpenOptions, Source};
use crate::error::{Error, Result};
use crate::progress::{Control, ImageEvent, ImageObserver};
use srcread::Readable;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which kind of file `salvor image` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `.img` / `.raw`: a plain, sparse copy of the disk.
    Raw,
    /// Anything else: the salvor seekable zstd image.
    Salvor,
}

impl OutputKind {
    pub fn for_path(path: &Path) -> OutputKind {
        match path.extension().and_then(|e| e.to_str()) {
            Some("img") | Some("raw") => OutputKind::Raw,
            _ => OutputKind::Salvor,
        }
    }
}

/// One compressor per core by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// zstd level (1..=22, negative for the fast levels).
    pub level: i32,
    pub threads: usize,
    /// Raw bytes per frame; a multiple of 4096, at most 1 GiB.
    pub chunk_size: usize,
    /// Split the output into parts of this many bytes.
    pub split: Option<u64>,
    /// A ddrescue mapfile: image only its finished areas, zeros elsewhere.
    pub mapfile: Option<PathBuf>,
    pub label: Option<String>,
    /// Compute the per-chunk SHA-256 digests and the disk digest made of them (off only for
    /// benchmarks).
    pub hash: bool,
    /// Also compute the flat SHA-256 of the whole disk (comparable with `sha256sum`). It runs
    /// on one core in disk order, so it is opt-in.
    pub sha256: bool,
    /// Store every byte of the disk (forensic, bit-for-bit), not only what the filesystems use.
    pub all_blocks: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            level: 3,
            threads: default_threads(),
            chunk_size: format::DEFAULT_CHUNK_SIZE,
            split: None,
            mapfile: None,
            label: None,
            hash: true,
            sha256: false,
            all_blocks: false,
        }
    }
}

impl ImageOptions {
    fn check(&self) -> Result<()> {
        let c = self.chunk_size;
        if c == 0 || c % format::CHUNK_ALIGN != 0 || c > format::MAX_CHUNK_SIZE {
            return Err(Error::invalid_arg(
                "--chunk-size",
                format!("{c}: must be a multiple of 4096 up to 1 GiB"),
            ));
        }
        let range = zstd::compression_level_range();
        if !range.contains(&self.level) {
            return Err(Error::invalid_arg(
                "--level",
                format!(
                    "{} is outside {}..={}",
                    self.level,
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    pub raw_size: u64,
    /// Bytes written (all parts; for a raw image, its apparent size).
    pub output_size: u64,
    pub parts: Vec<PathBuf>,
    /// Flat SHA-256 of the disk (with `--sha256`).
    pub sha256: Option<String>,
    /// SHA-256 over the chunk digests.
    pub chunks_sha256: Option<String>,
    pub zero_chunks: u64,
    pub holes: Vec<Hole>,
    /// How each partition was imaged (empty with `--all-blocks`).
    pub filesystems: Vec<ImagedFs>,
    /// Bytes left out because no filesystem allocates them (or no partition holds them).
    pub unallocated_bytes: u64,
    pub elapsed: Duration,
}

/// Images the disk or file at `source` into `output` (salvor or raw, by name).
pub fn create_image(
    source: &Path,
    output: &Path,
    opts: &ImageOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<ImageSummary> {
    opts.check()?;
    let probe = FileSource::open(source, OpenOptions::default())?;
    let is_dev = probe.is_block_device();
    let identity = probe.identity().clone();
    drop(probe);
    // Devices are read with O_DIRECT: a whole-disk pass would otherwise evict everything cached.
    let mut src = FileSource::open(
        source,
        OpenOptions {
            direct: is_dev,
            sector_size: 0,
        },
    )?;
    image_plan(source, output, opts).check()?;
    let info = SourceInfo {
        path: source.display().to_string(),
        model: identity.model,
        serial: identity.serial,
        wwn: identity.wwn,
        is_block_device: is_dev,
    };
    create_image_from(&mut src, info, output, opts, control, obs)
}

/// What imaging `source` into `output` reads and writes, for the safety policy: the source, a
/// rescue's mapfile, and the image (each part it may be split into).
fn image_plan(source: &Path, output: &Path, opts: &ImageOptions) -> crate::safety::Plan {
    use crate::safety::{Plan, Role};
    let mut plan = Plan::new().read(source).write(Role::ImagePart, output);
    if let Some(m) = &opts.mapfile {
        plan = plan.read(m);
    }
    if opts.split.is_some() {
        for i in 0..parts::MAX_PARTS {
            plan = plan.write(Role::ImagePart, parts::part_path(output, i));
        }
    }
    plan
}

/// Images any [`Source`] (tests use the fault-injecting one).
pub fn create_image_from(
    src: &mut dyn Source,
    info: SourceInfo,
    output: &Path,
    opts: &ImageOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<ImageSummary> {
    opts.check()?;
    let g = src.geometry();
    let (size, readable) = match &opts.mapfile {
        Some(m) => {
            let map = srcread::load_mapfile(m)?;
            // The mapfile knows the disk's size; the rescued copy may be shorter if its tail
            // was never rescued.
            let size = map.end();
            (size, Readable::from_map(&map, size))
        }
        None => (g.size, Readable::all()),
    };
    let name = PathBuf::from(&info.path);
    let table = restore::read_table(src, g.logical_sector, g.size.min(size)).unwrap_or(None);
    let used = if opts.all_blocks {
        used::UsedPlan::default()
    } else {
        used::plan(src, &name, table.as_ref(), size)?
    };
    for f in &used.filesystems {
        obs.event(&ImageEvent::Message {
            message: used::describe(f),
        });
    }
    let unpartitioned_bytes: u64 = used.unpartitioned.iter().map(|r| r.1 - r.0).sum();
    if unpartitioned_bytes > 0 {
        obs.event(&ImageEvent::Message {
            message: format!(
                "outside the partitions: {} in no partition not stored (--all-blocks keeps it)",
                crate::units::format_bytes(unpartitioned_bytes)
            ),
        });
    }
    for w in &used.warnings {
        obs.event(&ImageEvent::Message {
            message: format!("outside the partitions: {w}"),
        });
    }
    let unpartitioned: Vec<Hole> = used
        .unpartitioned
        .iter()
        .map(|&(s, e)| Hole {
            offset: s,
            size: e - s,
        })
        .collect();
    let readable = readable.without(used.unallocated, size);
    let created = format::now_unix();
    let metadata = Metadata {
        format: "salvor-image".into(),
        format_version: format::FORMAT_VERSION,
        tool_version: format!("salvor {}", env!("CARGO_PKG_VERSION")),
        created_unix: created,
        created: format::iso8601_utc(created),
        label: opts.label.clone(),
        source_size: size,
        logical_sector: g.logical_sector,
        physical_sector: g.physical_sector,
        chunk_size: opts.chunk_size as u64,
        compression_level: opts.level,
        split_size: opts.split,
        source: info,
        partition_table: table,
        mapfile: opts.mapfile.as_ref().map(|p| p.display().to_string()),
        used_blocks: !opts.all_blocks,
        filesystems: used.filesystems,
        unpartitioned,
    };
    let filesystems = metadata.filesystems.clone();
    let mut summary = match OutputKind::for_path(output) {
        OutputKind::Raw => {
            if opts.split.is_some() {
                return Err(Error::invalid_arg(
                    "--split",
                    "only salvor images (.img.zst) can be split",
                ));
            }
            create::create_raw(src, &name, size, &readable, output, opts, control, obs)?
        }
        OutputKind::Salvor => create::create_compressed(
            src, &name, size, &readable, metadata, output, opts, control, obs,
        )?,
    };
    summary.unallocated_bytes = filesystems
        .iter()
        .flat_map(|f| &f.unallocated)
        .map(|h| h.size)
        .sum::<u64>()
        + unpartitioned_bytes;
    summary.filesystems = filesystems;
    Ok(summary)
}

/// Whether a name looks like a part of a split salvor image (`….zst.000`) or the base name of
/// one whose parts exist.
pub(crate) fn parts_suffix(name: &str) -> bool {
    if let Some((base, num)) = name.rsplit_once('.') {
        if num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()) && base.ends_with(".zst") {
            return true;
        }
    }
    !Path::new(name).exists() && Path::new(&format!("{name}.000")).exists()
}
