//! The command line: argument parsing, command dispatch, progress printers, signal setup and the
//! mapping of errors to exit codes. Everything here is presentation; the work is done by engines.

mod domain;
mod export;
mod files;
pub mod image;
mod map;
mod printer;
mod rescue;
mod serve;
pub mod signals;
mod sim;

use crate::progress::Control;
use clap::{Parser, Subcommand};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "salvor",
    version,
    about = "Rescue failing drives (ddrescue-compatible), image, restore, clone and verify disks",
    long_about = None
)]
struct Cli {
    /// No command opens the terminal UI.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rescue a failing drive like GNU ddrescue: SOURCE DEST [MAPFILE]; re-run to resume.
    Rescue(Box<rescue::RescueArgs>),
    /// Show the status of a mapfile (like `ddrescuelog -t`).
    Map(map::MapArgs),
    /// List block devices with identity, sizes, transport, partitions and mounts.
    List(ListArgs),
    /// Image a disk to a compressed, verifiable image (seekable zstd) or a sparse raw image.
    Image(Box<image::ImageArgs>),
    /// Write an image back to a disk (also to a bigger one).
    Restore(Box<image::RestoreArgs>),
    /// Copy a disk to another disk.
    Clone(Box<image::CloneArgs>),
    /// Check an image (every chunk and the whole-disk SHA-256), or compare it with a disk.
    Verify(Box<image::VerifyArgs>),
    /// Show an image's metadata, or a disk's identity and partition table.
    Info(Box<image::InfoArgs>),
    /// Convert an image into qcow2, VHD, VMDK (zero areas stay sparse) or E01.
    Export(Box<export::ExportArgs>),
    /// Serve an image, raw image, device or rescued copy over NBD (read-only unless --overlay).
    Serve(Box<serve::ServeArgs>),
    /// Mount a filesystem of an image read-only (FUSE + loop device); `salvor umount DIR` ends it.
    Mount(Box<serve::MountArgs>),
    /// Unmount what `salvor mount` mounted.
    Umount(serve::UmountArgs),
    /// Print a ddrescue domain mapfile of the filesystems' metadata and used data (`ddrescue -m`).
    Domain(domain::DomainArgs),
    /// List the files a rescue damaged: MAPFILE RESCUED_COPY.
    Files(files::FilesArgs),
    /// Open the terminal UI (also what `salvor` alone does).
    Tui,
    /// Benchmarks: serve a simulated failing drive as a FUSE file.
    #[command(hide = true)]
    SimDrive(sim::SimArgs),
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs salvor with the process arguments; returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse_from(ddrescue_optional_values(std::env::args_os())) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // ddrescue's convention: invalid command-line options are an environment problem.
                _ => 1,
            };
            let _ = e.print();
            return code;
        }
    };
    let result = match &cli.command {
        Some(Command::Rescue(args)) => rescue::run(args),
        Some(Command::Map(args)) => map::run(args),
        Some(Command::Domain(args)) => domain::run(args),
        Some(Command::Files(args)) => files::run(args),
        Some(Command::List(args)) => list(args),
        Some(Command::Image(args)) => with_signals(|c| image::run_image(args, c)),
        Some(Command::Restore(args)) => with_signals(|c| image::run_restore(args, c)),
        Some(Command::Clone(args)) => with_signals(|c| image::run_clone(args, c)),
        Some(Command::Verify(args)) => with_signals(|c| image::run_verify(args, c)),
        Some(Command::Info(args)) => with_signals(|c| image::run_info(args, c)),
        Some(Command::Export(args)) => with_signals(|c| export::run(args, c)),
        Some(Command::Serve(args)) => with_signals(|c| serve::run(args, c)),
        Some(Command::Mount(args)) => with_signals(|c| serve::run_mount(args, c)),
        Some(Command::Umount(args)) => serve::run_umount(args),
        None | Some(Command::Tui) => Ok(crate::tui::run()),
        Some(Command::SimDrive(args)) => sim::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("salvor: {e}");
            e.exit_code()
        }
    }
}

/// ddrescue's `-P[LINES]` takes its optional value only attached (`-P5`); clap would take a
/// separate word as the value. After `rescue`, `-PN` becomes `--data-preview=N` and a bare `-P`
/// `--data-preview`, so `-P SOURCE` keeps SOURCE an operand.
fn ddrescue_optional_values(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut in_rescue = false;
    let mut operands_only = false;
    args.map(|a| {
        let text = a.to_str().unwrap_or_default();
        if !in_rescue {
            in_rescue = text == "rescue";
            return a;
        }
        if operands_only || text == "--" {
            operands_only = true;
            return a;
        }
        match text.strip_prefix("-P") {
            Some("") => "--data-preview".into(),
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("--data-preview={n}").into()
            }
            _ => a,
        }
    })
    .collect()
}

/// Runs a job with SIGINT/SIGTERM/SIGHUP routed to its `Control`.
fn with_signals(job: impl FnOnce(&Control) -> crate::Result<i32>) -> crate::Result<i32> {
    let control = Arc::new(Control::new());
    signals::install(control.clone())?;
    job(&control)
}

fn list(args: &ListArgs) -> crate::Result<i32> {
    let disks = crate::blockdev::list_disks()?;
    if args.json {
        let text = serde_json::to_string_pretty(&disks)
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", crate::blockdev::render_table(&disks));
    }
    Ok(0)
}
