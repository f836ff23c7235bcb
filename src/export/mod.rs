//! `salvor export`: an image (or a raw disk image) converted into the formats virtual machines
//! and other tools open: qcow2 (v3), VHD and VHDX (dynamic) and VMDK (monolithicSparse). Each format is
//! written here directly (they are small; see the modules): all-zero granules (qcow2 clusters,
//! VHD/VHDX blocks, VMDK grains) are never written, so unallocated and zero chunks stay sparse.
//!
//! The input is streamed in disk order (a salvor image through the image decoder threads, with
//! their checks); the output is written through [`crate::device::Dest`] and synced before the
//! export reports success. An existing output is never replaced.

pub mod ewf;
pub mod open;
pub mod qcow2;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use crate::device::{is_zero, Dest, FileDest, FileSource, OpenOptions};
use crate::error::{Error, Result};
use crate::image::reader::{looks_like_salvor_image, ImageFile};
use crate::image::srcread::Readable;
use crate::image::stream::{stream_chunks, Hashing, Input};
use crate::progress::{Control, ImageEvent, ImageObserver, ImagePhase};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Vhd,
    Vhdx,
    Vmdk,
    E01,
}

impl Format {
    /// By the output's extension.
    pub fn for_path(path: &Path) -> Option<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("qcow2") => Some(Format::Qcow2),
            Some("vhd") => Some(Format::Vhd),
            Some("vhdx") => Some(Format::Vhdx),
            Some("vmdk") => Some(Format::Vmdk),
            Some("e01") => Some(Format::E01),
            _ => None,
        }
    }
}

/// A sparse-format writer: granules in any order (the driver goes in disk order), each
/// exactly `granule()` bytes (the last one zero-padded), never all zeros.
pub trait SparseWriter {
    fn granule(&self) -> u64;
    fn write_granule(&mut self, dest: &mut dyn Dest, index: u64, data: &[u8]) -> Result<()>;
    /// Consecutive granules from `first` on (`data` is a whole number of them): formats that
    /// store them one after the other write them in one piece.
    fn write_granules(&mut self, dest: &mut dyn Dest, first: u64, data: &[u8]) -> Result<()> {
        let g = self.granule() as usize;
        for (i, part) in data.chunks(g).enumerate() {
            self.write_granule(dest, first + i as u64, part)?;
        }
        Ok(())
    }
    /// Writes the metadata; returns the output's length.
    fn finish(&mut self, dest: &mut dyn Dest) -> Result<u64>;
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub output: PathBuf,
    pub format: Format,
    pub raw_size: u64,
    pub output_size: u64,
    /// Bytes of granules written (the rest stayed sparse).
    pub data_bytes: u64,
    /// E01: the MD5 and SHA-1 of the media it records.
    pub hashes: Option<ewf::EwfHashes>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub threads: usize,
    /// E01 case metadata.
    pub case: ewf::CaseInfo,
    /// A raw rescued copy's mapfile: unrescued areas are exported as zeros (and listed as
    /// acquisition errors in an E01). Images record their unrescued areas themselves.
    pub mapfile: Option<PathBuf>,
}

enum Sink {
    Sparse(Box<dyn SparseWriter>),
    Ewf(Box<ewf::EwfWriter>),
}

/// Exports `input` (a salvor image, or a raw image or device) into `output`, whose extension
/// names the format.
pub fn export(
    input: &Path,
    output: &Path,
    opts: &ExportOptions,
    control: &Control,
    obs: &mut dyn ImageObserver,
) -> Result<ExportSummary> {
    let start = Instant::now();
    let format = Format::for_path(output).ok_or_else(|| {
        Error::invalid_arg(
            output.display().to_string(),
            "the output must end in .qcow2, .vhd, .vhdx, .vmdk or .E01",
        )
    })?;
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(Error::refused(
            output,
            "it exists; an export never replaces a file",
        ));
    }
    use crate::safety::{Plan, Role};
    let mut plan = Plan::new().read(input).write(Role::ImagePart, output);
    if let Some(m) = &opts.mapfile {
        plan = plan.read(m);
    }
    plan.check()?;
    let threads = opts.threads.max(1);
    let image = if looks_like_salvor_image(input) {
        Some(ImageFile::open(input)?)
    } else {
        None
    };
    let mut src = match image {
        Some(_) => None,
        None => Some(FileSource::open(input, OpenOptions::default())?),
    };
    let size = match (&image, &src) {
        (Some(i), _) => i.metadata.source_size,
        (None, Some(s)) => crate::device::Source::geometry(s).size,
        (None, None) => return Err(Error::Internal("no input".into())),
    };
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let readable = match (&opts.mapfile, &image) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_arg(
                "--mapfile",
                "a salvor image records its unrescued areas itself; --mapfile is for a raw rescued copy",
            ))
        }
        (Some(m), None) => {
            let map = crate::image::srcread::load_mapfile(m)?;
            Readable::from_map(&map, size)
        }
        (None, _) => Readable::all(),
    };
    let errors: Vec<(u64, u64)> = match &image {
        Some(i) => i.trailer.holes.iter().map(|h| (h.offset, h.size)).collect(),
        None => readable.holes.iter().map(|h| (h.offset, h.size)).collect(),
    };
    let mut file = FileDest::open(output, false, true)?;
    let mut dest = Coalesce {
        inner: &mut file,
        at: 0,
        buf: Vec::with_capacity(COALESCE),
    };
    let mut sink = match format {
        Format::Qcow2 => Sink::Sparse(Box::new(qcow2::Qcow2Writer::new(size))),
        Format::Vhd => Sink::Sparse(Box::new(vhd::VhdWriter::new(size)?)),
        Format::Vhdx => Sink::Sparse(Box::new(vhdx::VhdxWriter::new(size)?)),
        Format::Vmdk => Sink::Sparse(Box::new(vmdk::VmdkWriter::new(size, &name))),
        Format::E01 => Sink::Ewf(Box::new(ewf::EwfWriter::start(
            &mut dest, size, &opts.case, &errors,
        )?)),
    };
    let g = match &sink {
        Sink::Sparse(w) => w.granule(),
        Sink::Ewf(_) => 4096,
    };
    let mut data_bytes = 0u64;
    let mut pad = vec![0u8; g as usize];
    let input_stream = match (&image, src.as_mut()) {
        (Some(img), _) => Input::Image {
            image: img,
            threads,
        },
        (None, Some(s)) => Input::Source {
            src: s,
            name: input.to_path_buf(),
            readable,
            chunk_size: 4 << 20,
            size,
        },
        (None, None) => return Err(Error::Internal("no input".into())),
    };
    obs.event(&ImageEvent::PhaseStarted {
        phase: ImagePhase::Restoring,
    });
    let result = stream_chunks(
        input_stream,
        Hashing::default(),
        ImagePhase::Restoring,
        control,
        obs,
        &mut |c, _| {
            let data = c.data();
            let writer = match &mut sink {
                Sink::Ewf(w) => {
                    w.write(&mut dest, data)?;
                    data_bytes += data.len() as u64;
                    return Ok(());
                }
                Sink::Sparse(w) => w,
            };
            if c.offset % g != 0 {
                return Err(Error::Internal("chunk not aligned to the granule".into()));
            }
            // Runs of non-zero whole granules go out as one write each, straight from the
            // decoded chunk; a short last granule is padded.
            let gl = g as usize;
            let whole = data.len() / gl * gl;
            let mut run: Option<usize> = None;
            for (i, part) in data[..whole].chunks(gl).enumerate() {
                match (is_zero(part), run) {
                    (false, None) => run = Some(i),
                    (true, Some(r)) => {
                        writer.write_granules(
                            &mut dest,
                            c.offset / g + r as u64,
                            &data[r * gl..i * gl],
                        )?;
                        data_bytes += ((i - r) * gl) as u64;
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(r) = run {
                writer.write_granules(&mut dest, c.offset / g + r as u64, &data[r * gl..whole])?;
                data_bytes += (whole - r * gl) as u64;
            }
            let tail = &data[whole..];
            if !tail.is_empty() && !is_zero(tail) {
                pad.fill(0);
                pad[..tail.len()].copy_from_slice(tail);
                writer.write_granule(&mut dest, c.offset / g + (whole / gl) as u64, &pad)?;
                data_bytes += g;
            }
            Ok(())
        },
    );
    let mut hashes = None;
    let finished = result.and_then(|_| {
        let len = match &mut sink {
            Sink::Sparse(w) => w.finish(&mut dest)?,
            Sink::Ewf(w) => {
                let l = w.finish(&mut dest)?;
                hashes = Some(w.hashes.clone());
                l
            }
        };
        dest.sync()?;
        Ok(len)
    });
    let output_size = match finished {
        Ok(l) => l,
        Err(e) => {
            drop(dest);
            drop(file);
            // Nothing half-written is left behind under the output's name.
            let _ = std::fs::remove_file(output);
            obs.event(&ImageEvent::Finished { ok: false });
            return Err(e);
        }
    };
    obs.event(&ImageEvent::Finished { ok: true });
    Ok(ExportSummary {
        output: output.to_path_buf(),
        format,
        raw_size: size,
        output_size,
        data_bytes,
        hashes,
        elapsed: start.elapsed(),
    })
}

/// A 16-byte identifier for the new disk (VHD UUID, VMDK CID): not secret, only unique.
pub(crate) fn new_id(size: u64) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(size.to_le_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    // RFC 4122 version 4 / variant bits.
    id[6] = (id[6] & 0x0F) | 0x40;
    id[8] = (id[8] & 0x3F) | 0x80;
    id
}

/// Gathers writes that follow each other (granules are appended in disk order) into large
/// writes: one `pwrite` per few MiB instead of one per 64 KiB cluster, each followed by an early
/// writeback request.
struct Coalesce<'a> {
    inner: &'a mut FileDest,
    at: u64,
    buf: Vec<u8>,
}

const COALESCE: usize = 8 << 20;
/// Writes at least this long skip the buffer (after flushing it): a copy of them would cost
/// more than the system call it saves.
const DIRECT: usize = 256 << 10;

impl Coalesce<'_> {
    fn flush_buf(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_at(self.at, &self.buf)?;
            // The disk writes overlap decoding instead of all waiting for the final fsync.
            self.inner
                .start_writeback(self.at, self.at + self.buf.len() as u64);
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Dest for Coalesce<'_> {
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<()> {
        if pos != self.at + self.buf.len() as u64 || self.buf.len() + data.len() > COALESCE {
            self.flush_buf()?;
            self.at = pos;
        }
        if data.len() >= DIRECT {
            self.flush_buf()?;
            self.inner.write_at(pos, data)?;
            self.inner.start_writeback(pos, pos + data.len() as u64);
            self.at = pos + data.len() as u64;
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.flush_buf()?;
        self.inner.sync()
    }

    fn size(&self) -> Result<u64> {
        self.inner
            .size()
            .map(|s| s.max(self.at + self.buf.len() as u64))
    }

    fn extend_to(&mut self, len: u64) -> Result<()> {
        self.flush_buf()?;
        self.inner.extend_to(len)
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}
