//! `salvor domain DISK|IMAGE [--metadata|--used]`: the filesystem layer's wanted bytes as a GNU
//! ddrescue domain mapfile on stdout (for `ddrescue -m`).

use crate::device::{FileSource, OpenOptions};
use crate::error::Result;
use crate::fs::domain::{self, DomainMode};
use crate::mapfile::{render, Header};
use crate::units::format_bytes;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DomainArgs {
    /// The disk, partition or raw image to read (read-only).
    source: PathBuf,
    /// Only the filesystems' metadata.
    #[arg(long, conflicts_with = "used")]
    metadata: bool,
    /// Metadata and allocated data (the default).
    #[arg(long)]
    used: bool,
}

pub fn run(args: &DomainArgs) -> Result<i32> {
    let mode = if args.metadata {
        DomainMode::Metadata
    } else {
        DomainMode::Used
    };
    let mut src = FileSource::open(&args.source, OpenOptions::default())?;
    let d = domain::disk_domain(&mut src, mode)?;
    for n in &d.notes {
        eprintln!("salvor: {n}");
    }
    let wanted: u64 = d.ranges.iter().map(|r| r.1 - r.0).sum();
    eprintln!(
        "salvor: domain: {} of {} in {} area(s)",
        format_bytes(wanted),
        format_bytes(d.size),
        d.ranges.len()
    );
    let cmd = format!(
        "salvor domain {}{}",
        args.source.display(),
        if args.metadata { " --metadata" } else { "" }
    );
    let text = render(&domain::domain_mapfile(&d), &Header::salvor(&cmd));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| crate::Error::io("stdout", e))?;
    Ok(0)
}
