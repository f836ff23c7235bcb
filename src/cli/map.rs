//! `salvor map MAPFILE`: the status of a mapfile, like `ddrescuelog -t` (and `-D` with `--done`).

use crate::error::Result;
use crate::mapfile::{self, BlockStatus};
use crate::units::format_bytes;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct MapArgs {
    /// The mapfile to show.
    mapfile: PathBuf,
    /// Print nothing; exit 0 if every block is finished, 1 otherwise (like `ddrescuelog -D`).
    #[arg(long, short = 'D')]
    done: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &MapArgs) -> Result<i32> {
    let Some(map) = mapfile::parse_file(&args.mapfile)? else {
        return Err(crate::Error::io(
            &args.mapfile,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let t = map.totals();
    if args.done {
        return Ok(if t.total() > 0 && t.finished == t.total() {
            0
        } else {
            1
        });
    }
    if args.json {
        let v = serde_json::json!({
            "current_pos": map.current_pos,
            "phase": map.phase,
            "pass": map.pass,
            "size": t.total(),
            "totals": t,
            "finished": t.total() > 0 && t.finished == t.total(),
        });
        println!("{v}");
        return Ok(0);
    }
    let total = t.total().max(1);
    println!(
        "current pos: 0x{:08X}   current status: {}   pass: {}",
        map.current_pos,
        map.phase.describe(),
        map.pass
    );
    println!(
        "domain size: {}, in {} area(s)",
        format_bytes(t.total()),
        u64::from(t.total() > 0)
    );
    for s in [
        BlockStatus::Finished,
        BlockStatus::NonTried,
        BlockStatus::NonTrimmed,
        BlockStatus::NonScraped,
        BlockStatus::BadSector,
    ] {
        println!(
            "{:>12}: {}, in {} area(s) ({:.2}%)",
            s.name(),
            format_bytes(t.bytes(s)),
            t.areas(s),
            t.bytes(s) as f64 * 100.0 / total as f64
        );
    }
    Ok(0)
}
