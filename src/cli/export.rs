//! `salvor export IMAGE OUT.qcow2|.vhd|.vmdk`.

use crate::error::Result;
use crate::progress::Control;
use crate::units::{format_bytes, format_duration};
use std::path::PathBuf;

/// Convert an image (or a raw disk image) into qcow2, VHD or VMDK; zero areas stay sparse.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A salvor image, or a raw image or device.
    pub image: PathBuf,
    /// OUT.qcow2, OUT.vhd or OUT.vmdk (the extension names the format); never replaced.
    pub output: PathBuf,
    /// Decoder threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ExportArgs, control: &Control) -> Result<i32> {
    let threads = args.threads.unwrap_or_else(crate::image::default_threads);
    let s = super::image::with_printer(args.json, |o| {
        crate::export::export(&args.image, &args.output, threads, control, o)
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
    });
    Ok(0)
}
