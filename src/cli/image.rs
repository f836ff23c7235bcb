//! `salvor image | restore | clone | verify | info`: argument structs, the confirmation prompt
//! and two small progress printers (one updating line on stderr, or JSON lines on stdout).

use crate::error::{Error, Result};
use crate::image::{self, ImageOptions, Info, RestoreOptions};
use crate::progress::{Control, ImageEvent, ImageObserver, ImageSnapshot};
use crate::units::{format_bytes, format_duration};
use std::io::{BufRead, Write};
use std::path::PathBuf;

fn size_arg(s: &str) -> std::result::Result<u64, String> {
    crate::units::parse_size(s, 512)
}

/// Image a disk into a seekable zstd image (`.img.zst`, default) or a sparse raw image (`.img`).
#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// Disk or file to image.
    pub source: PathBuf,
    /// Output image; `.img`/`.raw` writes a sparse raw copy, anything else a salvor image.
    pub output: PathBuf,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub level: i32,
    /// Compressor threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Split into parts of SIZE (e.g. 4GiB): OUTPUT.000, OUTPUT.001, ...
    #[arg(long, value_parser = size_arg)]
    pub split: Option<u64>,
    /// Image a rescued copy: only areas this ddrescue mapfile marks finished are read.
    #[arg(long)]
    pub mapfile: Option<PathBuf>,
    /// Free text stored in the image's metadata.
    #[arg(long)]
    pub label: Option<String>,
    /// Progress and result as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also record the flat SHA-256 of the whole disk (what `sha256sum DISK` prints; runs on one
    /// core). The per-chunk SHA-256 digests are always recorded.
    #[arg(long)]
    pub sha256: bool,
    /// Store every byte (bit-for-bit, forensic) instead of only what the filesystems use.
    #[arg(long)]
    pub all_blocks: bool,
    /// Skip all hashing (benchmarking only).
    #[arg(long, hide = true)]
    pub no_hash: bool,
    /// Raw bytes per zstd frame (default 4MiB).
    #[arg(long, hide = true, value_parser = size_arg)]
    pub chunk_size: Option<u64>,
}

/// Write an image (salvor or raw) onto a disk.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    pub image: PathBuf,
    pub target: PathBuf,
    /// Re-read the target afterwards and compare SHA-256.
    #[arg(long)]
    pub verify: bool,
    /// Do not ask to type the target's name.
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Copy a disk onto another disk.
#[derive(clap::Args, Debug, Clone)]
pub struct CloneArgs {
    pub source: PathBuf,
    pub target: PathBuf,
    #[arg(long)]
    pub verify: bool,
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

/// Check every chunk and the whole-disk SHA-256 of an image.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    pub image: PathBuf,
    /// Also compare every byte with this disk.
    #[arg(long)]
    pub against: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Show an image's metadata, or a disk's identity and partition table.
#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// One updating status line on stderr.
struct HumanPrinter {
    drawn: bool,
}

impl ImageObserver for HumanPrinter {
    fn event(&mut self, e: &ImageEvent) {
        let msg = match e {
            ImageEvent::Hole { offset, size } => {
                format!(
                    "hole (not rescued, imaged as zeros): {} at offset {offset}",
                    format_bytes(*size)
                )
            }
            ImageEvent::BadChunk {
                chunk,
                offset,
                reason,
            } => {
                format!("bad chunk {chunk} (offset {offset}): {reason}")
            }
            ImageEvent::Message { message } => message.clone(),
            _ => return,
        };
        self.clear();
        eprintln!("{msg}");
    }

    fn progress(&mut self, s: &ImageSnapshot) {
        let pct = if s.total > 0 {
            100.0 * s.bytes_in as f64 / s.total as f64
        } else {
            100.0
        };
        let rate = |r: f64| format!("{}/s", format_bytes(r as u64));
        let mut line = format!(
            "{:?} {pct:5.1}% {} of {}  read {}  zstd {}  write {}",
            s.phase,
            format_bytes(s.bytes_in),
            format_bytes(s.total),
            rate(s.read_rate),
            rate(s.compress_rate),
            rate(s.write_rate)
        );
        if s.ratio > 0.0 {
            line.push_str(&format!("  ratio {:.3}", s.ratio));
        }
        if let Some(r) = s.remaining {
            line.push_str(&format!("  ETA {}", format_duration(r)));
        }
        eprint!("\r\x1b[K{line}");
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }
}

impl HumanPrinter {
    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

/// Every event and snapshot as one JSON object per line on stdout.
struct JsonPrinter;

impl ImageObserver for JsonPrinter {
    fn event(&mut self, e: &ImageEvent) {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    }
    fn progress(&mut self, s: &ImageSnapshot) {
        let v = serde_json::json!({ "event": "progress", "progress": s });
        println!("{v}");
    }
}

pub(crate) fn with_printer<T>(
    json: bool,
    f: impl FnOnce(&mut dyn ImageObserver) -> Result<T>,
) -> Result<T> {
    if json {
        f(&mut JsonPrinter)
    } else {
        let mut p = HumanPrinter { drawn: false };
        let r = f(&mut p);
        p.clear();
        r
    }
}

pub(crate) fn print_result<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce()) {
    if json {
        let v = serde_json::json!({ "event": "result", "result": value });
        println!("{v}");
    } else {
        human();
    }
}

pub fn run_image(args: &ImageArgs, control: &Control) -> Result<i32> {
    let defaults = ImageOptions::default();
    let opts = ImageOptions {
        level: args.level,
        threads: args.threads.unwrap_or(defaults.threads),
        chunk_size: match args.chunk_size {
            Some(c) => {
                usize::try_from(c).map_err(|_| Error::invalid_arg("--chunk-size", "too large"))?
            }
            None => defaults.chunk_size,
        },
        split: args.split,
        mapfile: args.mapfile.clone(),
        label: args.label.clone(),
        hash: !args.no_hash && std::env::var_os("SALVOR_NO_HASH").is_none(),
        sha256: args.sha256 && !args.no_hash,
        all_blocks: args.all_blocks,
    };
    let s = with_printer(args.json, |o| {
        image::create_image(&args.source, &args.output, &opts, control, o)
    })?;
    print_result(args.json, &s, || {
        eprintln!(
            "imaged {} ({}) into {} ({}, ratio {:.3}) in {}",
            args.source.display(),
            format_bytes(s.raw_size),
            s.parts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            format_bytes(s.output_size),
            s.output_size as f64 / s.raw_size.max(1) as f64,
            format_duration(s.elapsed)
        );
        if let Some(h) = &s.chunks_sha256 {
            eprintln!("chunk SHA-256 digest {h}");
        }
        if let Some(h) = &s.sha256 {
            eprintln!("SHA-256 {h}");
        }
        if s.unallocated_bytes > 0 {
            eprintln!(
                "{} not allocated by any filesystem (or in no partition) were left out (they restore as zeros; \
                 --all-blocks stores them)",
                format_bytes(s.unallocated_bytes)
            );
        }
        if !s.holes.is_empty() {
            let bytes: u64 = s.holes.iter().map(|h| h.size).sum();
            eprintln!(
                "{} unrescued areas ({}) were imaged as zeros and are listed in the image",
                s.holes.len(),
                format_bytes(bytes)
            );
        }
    });
    Ok(0)
}

/// Asks the user to type the target's name; anything else refuses.
fn confirm(plan_line: &str, target: &std::path::Path) -> Result<()> {
    let word = image::target::confirmation_word(target);
    eprintln!("About to {plan_line}.");
    eprint!(
        "Everything on {} will be overwritten. Type '{word}' to continue: ",
        target.display()
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("stdin", e))?;
    if line.trim() != word {
        return Err(Error::refused(target, "not confirmed"));
    }
    Ok(())
}

fn restore_common(
    plan: image::RestorePlan,
    yes: bool,
    verify: bool,
    threads: Option<usize>,
    json: bool,
    control: &Control,
) -> Result<i32> {
    if !yes {
        confirm(&plan.describe(), plan.target())?;
    }
    let opts = RestoreOptions {
        threads: threads.unwrap_or_else(image::default_threads),
        verify,
        ..RestoreOptions::default()
    };
    let s = with_printer(json, |o| image::run_restore(plan, &opts, control, o))?;
    print_result(json, &s, || {
        eprintln!(
            "wrote {} to {} in {}{}",
            format_bytes(s.bytes),
            s.target.display(),
            format_duration(s.elapsed),
            if s.verified {
                ", verified (SHA-256 re-read matches)"
            } else {
                ""
            }
        );
        if let Some(g) = &s.gpt {
            eprintln!("{g}");
        }
    });
    Ok(0)
}

pub fn run_restore(args: &RestoreArgs, control: &Control) -> Result<i32> {
    let plan = image::prepare_restore(&args.image, &args.target)?;
    restore_common(
        plan,
        args.yes,
        args.verify,
        args.threads,
        args.json,
        control,
    )
}

pub fn run_clone(args: &CloneArgs, control: &Control) -> Result<i32> {
    let plan = image::prepare_clone(&args.source, &args.target)?;
    restore_common(plan, args.yes, args.verify, None, args.json, control)
}

pub fn run_verify(args: &VerifyArgs, control: &Control) -> Result<i32> {
    let threads = args.threads.unwrap_or_else(image::default_threads);
    let r = with_printer(args.json, |o| {
        image::verify_image(&args.image, args.against.as_deref(), threads, control, o)
    })?;
    print_result(args.json, &r, || {
        let mut checks = Vec::new();
        if let Some(h) = &r.chunks_sha256 {
            checks.push(format!("every chunk's SHA-256 matches (digest {h})"));
        }
        if let Some(h) = &r.sha256 {
            checks.push(format!("SHA-256 {h} matches"));
        }
        if checks.is_empty() {
            checks.push("frame checksums match (the image records no SHA-256)".into());
        }
        if let Some(d) = &r.against {
            checks.push(format!("identical to {}", d.display()));
        }
        eprintln!(
            "{}: {} chunks, {} OK; {}",
            r.image.display(),
            r.chunks,
            format_bytes(r.raw_size),
            checks.join("; ")
        );
    });
    Ok(0)
}

pub fn run_info(args: &InfoArgs, _control: &Control) -> Result<i32> {
    let info = image::info_with_filesystems(&args.path)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?
        );
        return Ok(0);
    }
    let mut out = String::new();
    let mut fs_lines: Vec<crate::fs::FsSummary> = Vec::new();
    let table = match &info {
        Info::Image {
            path,
            parts,
            compressed_size,
            ratio,
            metadata: m,
            trailer: t,
        } => {
            out += &format!("salvor image   {}\n", path.display());
            if parts.len() > 1 {
                out += &format!("parts          {}\n", parts.len());
            }
            out += &format!(
                "disk size      {} ({} bytes)\n",
                format_bytes(m.source_size),
                m.source_size
            );
            out += &format!(
                "image size     {} (ratio {ratio:.3})\n",
                format_bytes(*compressed_size)
            );
            out += &format!(
                "sectors        {} logical, {} physical\n",
                m.logical_sector, m.physical_sector
            );
            out += &format!(
                "chunks         {} of {}, {} all-zero\n",
                t.chunks,
                format_bytes(m.chunk_size),
                t.zero_chunks
            );
            out += &format!("created        {} by {}\n", m.created, m.tool_version);
            out += &format!("source         {}", m.source.path);
            for v in [&m.source.model, &m.source.serial, &m.source.wwn]
                .into_iter()
                .flatten()
            {
                out += &format!("  {v}");
            }
            out += "\n";
            if let Some(l) = &m.label {
                out += &format!("label          {l}\n");
            }
            out += &format!(
                "chunk digest   {}\n",
                t.chunks_sha256.as_deref().unwrap_or("(not recorded)")
            );
            out += &format!(
                "sha256         {}\n",
                t.sha256
                    .as_deref()
                    .unwrap_or("(not recorded; image with --sha256 to get it)")
            );
            if !t.holes.is_empty() {
                let b: u64 = t.holes.iter().map(|h| h.size).sum();
                out += &format!(
                    "unrescued      {} areas, {} (imaged as zeros)\n",
                    t.holes.len(),
                    format_bytes(b)
                );
            }
            out += &format!(
                "blocks         {}\n",
                if m.used_blocks {
                    "used blocks only (unallocated space restores as zeros)"
                } else {
                    "all (bit-for-bit)"
                }
            );
            for f in &m.filesystems {
                out += &format!(
                    "  {:>3}  {:<9} {:<16} ",
                    f.partition,
                    f.kind,
                    f.label
                        .as_ref()
                        .map(|l| format!("\"{l}\""))
                        .unwrap_or_default()
                );
                match &f.reason {
                    Some(r) => out += &format!("saved whole {}: {r}", format_bytes(f.size)),
                    None => {
                        out += &format!(
                            "used {} of {}, saved {}",
                            f.used_bytes.map_or("?".into(), format_bytes),
                            format_bytes(f.total_bytes),
                            format_bytes(f.stored_bytes)
                        )
                    }
                }
                out += "\n";
                for w in &f.warnings {
                    out += &format!("       warning: {w}\n");
                }
            }
            if !m.unpartitioned.is_empty() {
                let b: u64 = m.unpartitioned.iter().map(|h| h.size).sum();
                out += &format!(
                    "  outside the partitions: {} not saved (restores as zeros)\n",
                    format_bytes(b)
                );
            }
            &m.partition_table
        }
        Info::Raw {
            path,
            is_block_device,
            size,
            logical_sector,
            physical_sector,
            identity,
            allocated,
            partition_table,
            filesystems,
        } => {
            fs_lines = filesystems.clone();
            out += &format!(
                "{}   {}\n",
                if *is_block_device {
                    "disk"
                } else {
                    "raw image"
                },
                path.display()
            );
            out += &format!("size           {} ({size} bytes)\n", format_bytes(*size));
            out +=
                &format!("sectors        {logical_sector} logical, {physical_sector} physical\n");
            for (k, v) in [
                ("model", &identity.model),
                ("serial", &identity.serial),
                ("wwn", &identity.wwn),
            ] {
                if let Some(v) = v {
                    out += &format!("{k:<15}{v}\n");
                }
            }
            if let Some(a) = allocated {
                out += &format!("allocated      {}\n", format_bytes(*a));
            }
            partition_table
        }
    };
    match table {
        None => out += "partitions     none found\n",
        Some(t) => {
            out += &format!(
                "partitions     {} ({} entries)\n",
                t.kind,
                t.partitions.len()
            );
            for p in &t.partitions {
                out += &format!(
                    "  {:>3}  {:>12}..{:<12} {:>10}  {}{}\n",
                    p.number,
                    p.first_lba,
                    p.last_lba,
                    format_bytes(p.size),
                    p.type_name.as_deref().unwrap_or(&p.type_id),
                    p.name
                        .as_ref()
                        .map(|n| format!("  \"{n}\""))
                        .unwrap_or_default()
                );
            }
        }
    }
    if !fs_lines.is_empty() {
        out += "filesystems\n";
    }
    for f in &fs_lines {
        out += &format!(
            "  {:>3}  {:<9} {:<16} ",
            f.partition,
            f.kind.to_string(),
            f.label
                .as_ref()
                .map(|l| format!("\"{l}\""))
                .unwrap_or_default()
        );
        match (&f.whole, f.used_bytes) {
            (Some(reason), _) => out += &format!("whole {}: {reason}", format_bytes(f.size)),
            (None, Some(u)) => {
                out += &format!(
                    "used {} of {} (reads {})",
                    format_bytes(u),
                    format_bytes(f.total_bytes),
                    format_bytes(f.allocated_bytes)
                )
            }
            (None, None) => out += &format!("reads {}", format_bytes(f.allocated_bytes)),
        }
        out += "\n";
        for w in &f.warnings {
            out += &format!("       warning: {w}\n");
        }
    }
    print!("{out}");
    Ok(0)
}
