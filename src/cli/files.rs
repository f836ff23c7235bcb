//! `salvor files MAPFILE RESCUED_COPY [--json]`: the files a partial rescue damaged.

use crate::device::{FileSource, OpenOptions};
use crate::error::Result;
use crate::fs::files::{self, FilesReport};
use crate::mapfile;
use crate::units::format_bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FilesArgs {
    /// The rescue's mapfile (read as it is; a running rescue's atomic saves keep it whole).
    mapfile: PathBuf,
    /// The rescued copy (image file or disk), read-only.
    copy: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &FilesArgs) -> Result<i32> {
    let Some(map) = mapfile::parse_file(&args.mapfile)? else {
        return Err(crate::Error::io(
            &args.mapfile,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let mut src = FileSource::open(&args.copy, OpenOptions::default())?;
    let report = files::report(&mut src, &map)?;
    if args.json {
        let text =
            serde_json::to_string(&report).map_err(|e| crate::Error::Internal(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// The human report: per filesystem, damaged files grouped by directory.
pub fn render(r: &FilesReport) -> String {
    let mut out = format!(
        "{} not rescued of {}\n",
        format_bytes(r.unrescued_bytes),
        format_bytes(r.size)
    );
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    for f in &r.filesystems {
        let lost: u64 = f.damaged_files.iter().map(|d| d.lost_bytes).sum();
        out += &format!(
            "\npartition {} ({}, {} at {}): {} not rescued; {} of {} files damaged, {} lost\n",
            f.partition,
            f.kind,
            format_bytes(f.size),
            f.start,
            format_bytes(f.unrescued_bytes),
            f.damaged_files.len(),
            f.files_checked,
            format_bytes(lost)
        );
        if let Some(e) = &f.error {
            out += &format!("  cannot list files: {e}\n");
        }
        let mut by_dir: BTreeMap<&str, Vec<&files::DamagedFile>> = BTreeMap::new();
        for d in &f.damaged_files {
            let dir = d.path.rsplit_once('/').map_or("", |p| p.0);
            by_dir.entry(dir).or_default().push(d);
        }
        for (dir, list) in &by_dir {
            let bytes: u64 = list.iter().map(|d| d.lost_bytes).sum();
            out += &format!(
                "  {}/  ({} damaged, {} lost)\n",
                dir,
                list.len(),
                format_bytes(bytes)
            );
            for d in list {
                let name = d.path.rsplit_once('/').map_or(d.path.as_str(), |p| p.1);
                let ranges: Vec<String> = d
                    .lost
                    .iter()
                    .take(4)
                    .map(|(s, e)| format!("{s}-{e}"))
                    .collect();
                out += &format!(
                    "    {name}  {} of {} lost  [{}{}]{}\n",
                    format_bytes(d.lost_bytes),
                    format_bytes(d.size),
                    ranges.join(", "),
                    if d.lost.len() > 4 { ", ..." } else { "" },
                    d.unlocated
                        .as_ref()
                        .map(|w| format!("  ({w})"))
                        .unwrap_or_default()
                );
            }
        }
        for d in &f.damaged_dirs {
            out += &format!("  directory {}: {}\n", d.path, d.reason);
        }
        if f.lost_names > 0 {
            out += &format!("  {} files whose names are lost\n", f.lost_names);
        }
        if f.unreadable_inodes > 0 {
            out += &format!("  {} inodes not rescued\n", f.unreadable_inodes);
        }
        if let Some(m) = f.unrescued_metadata {
            out += &format!("  metadata not rescued: {}\n", format_bytes(m));
        }
        match f.unrescued_free {
            Some(b) => out += &format!("  free space not rescued: {}\n", format_bytes(b)),
            None => out += "  free space not rescued: unknown (allocation not readable)\n",
        }
        for n in &f.notes {
            out += &format!("  note: {n}\n");
        }
    }
    out
}
