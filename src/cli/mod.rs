//! The command line: argument parsing, command dispatch, progress printers, signal setup and the
//! mapping of errors to exit codes. Everything here is presentation; the work is done by engines.

mod map;
mod printer;
mod rescue;
pub mod signals;

use clap::{Parser, Subcommand};

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
    /// Rescue a failing drive like GNU ddrescue: SOURCE DEST MAPFILE; re-run to resume.
    Rescue(Box<rescue::RescueArgs>),
    /// Show the status of a mapfile (like `ddrescuelog -t`).
    Map(map::MapArgs),
    /// List block devices with identity, sizes, transport, partitions and mounts.
    List(ListArgs),
    /// Open the terminal UI (also what `salvor` alone does).
    Tui,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs salvor with the process arguments; returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
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
        Some(Command::List(args)) => list(args),
        None | Some(Command::Tui) => Ok(crate::tui::run()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("salvor: {e}");
            e.exit_code()
        }
    }
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
