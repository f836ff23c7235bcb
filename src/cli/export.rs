//! `salvor export IMAGE OUT.qcow2|.vhd|.vhdx|.vmdk|.E01`.

use crate::error::Result;
use crate::progress::Control;
use crate::units::{format_bytes, format_duration};
use std::path::PathBuf;

/// Convert an image (or a raw disk image) into qcow2, VHD, VHDX, VMDK (zero areas stay sparse) or E01.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A salvor image, or a raw image or device.
    pub image: PathBuf,
    /// OUT.qcow2, OUT.vhd, OUT.vhdx, OUT.vmdk or OUT.E01 (the extension names the format); never replaced.
    pub output: PathBuf,
    /// Decoder threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
    /// A raw rescued copy's ddrescue mapfile: unrescued areas become zeros (and E01 acquisition
    /// errors).
    #[arg(long)]
    pub mapfile: Option<PathBuf>,
    /// E01: case number.
    #[arg(long, default_value = "")]
    pub case_number: String,
    /// E01: evidence number.
    #[arg(long, default_value = "")]
    pub evidence_number: String,
    /// E01: examiner name.
    #[arg(long, default_value = "")]
    pub examiner: String,
    /// E01: description of the evidence.
    #[arg(long, default_value = "")]
    pub description: String,
    /// E01: notes.
    #[arg(long, default_value = "")]
    pub notes: String,
}

pub fn run(args: &ExportArgs, control: &Control) -> Result<i32> {
    let opts = crate::export::ExportOptions {
        threads: args.threads.unwrap_or_else(crate::image::default_threads),
        case: crate::export::ewf::CaseInfo {
            case_number: args.case_number.clone(),
            evidence_number: args.evidence_number.clone(),
            examiner: args.examiner.clone(),
            description: args.description.clone(),
            notes: args.notes.clone(),
        },
        mapfile: args.mapfile.clone(),
    };
    let s = super::image::with_printer(args.json, |o| {
        crate::export::export(&args.image, &args.output, &opts, control, o)
    })?;
    super::image::print_result(args.json, &s, || {
        eprintln!(
            "exported {} ({}) to {} ({:?}, {} of data, file {}) in {}",
            args.image.display(),
            format_bytes(s.raw_size),
            s.output.display(),
            s.format,
            format_bytes(s.data_bytes),
            format_bytes(s.output_size),
            format_duration(s.elapsed)
        );
        if let Some(h) = &s.hashes {
            eprintln!("MD5 {}  SHA-1 {}", h.md5, h.sha1);
            if h.error_ranges > 0 {
                eprintln!("{} acquisition error ranges recorded", h.error_ranges);
            }
        }
    });
    Ok(0)
}
