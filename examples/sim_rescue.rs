//! In-process drive-time harness: the rescue engine on `FaultySource` (the benchmark's drive
//! model, no FUSE), printing the benchmark's measures per scenario and seed. Much faster than
//! `scripts/bench-rescue.sh` part 0 for trying engine changes; confirm with the real bench.
//!
//! `cargo run --release --example sim_rescue -- [-r N] [--buffered] SCENARIO[,..] SEED[,..]`

use salvor::device::scenario::{self, Analyzer};
use salvor::device::{Dest, FaultySource, ReadSemantics, SimClock};
use salvor::mapfile::{BlockStatus, Mapfile};
use salvor::progress::{Control, NoProgress};
use salvor::rescue::engine::{rescue, NoStore};
use salvor::rescue::RescueOptions;
use std::sync::{Arc, Mutex};

struct Sink;
impl Dest for Sink {
    fn write_at(&mut self, _pos: u64, _buf: &[u8]) -> salvor::error::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> salvor::error::Result<()> {
        Ok(())
    }
    fn size(&self) -> salvor::error::Result<u64> {
        Ok(1)
    }
    fn extend_to(&mut self, _len: u64) -> salvor::error::Result<()> {
        Ok(())
    }
    fn path(&self) -> &std::path::Path {
        std::path::Path::new("/dev/null")
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = RescueOptions::default();
    let mut semantics = ReadSemantics::Direct;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-r" => {
                opts.retry_passes = args[i + 1].parse().unwrap_or(0);
                args.drain(i..i + 2);
            }
            "--buffered" => {
                semantics = ReadSemantics::Buffered { page: 4096 };
                args.remove(i);
            }
            _ => i += 1,
        }
    }
    let names: Vec<String> = args
        .first()
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| scenario::NAMES.iter().map(|s| s.to_string()).collect());
    let seeds: Vec<u64> = args
        .get(1)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3]);
    let f = |x: Option<f64>| x.map_or("never".to_string(), |v| format!("{v:.1}"));
    println!("scenario seed t90 t99 t100 total failed f@99 f@100 seeks requests never_rescued_B");
    for name in &names {
        for &seed in &seeds {
            // SIM_SIZE (bytes) scales the drive down, as the engine tests do.
            let size = std::env::var("SIM_SIZE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| scenario::default_size(name));
            let Some(spec) = scenario::build(name, size, seed) else {
                eprintln!("unknown scenario {name}");
                std::process::exit(2);
            };
            let spec = spec.with_semantics(semantics);
            let mut an = Analyzer::new(&spec);
            if let Ok(dir) = std::env::var("SIM_LOG_DIR") {
                // The truth beside the log: bad ranges and weak sectors (start end).
                let truth = format!("{dir}/{name}-{seed}.bad");
                let mut text = String::new();
                for (s, e) in spec.bad_ranges() {
                    text.push_str(&format!("{s} {e} bad\n"));
                }
                for &(s, e, _) in &spec.weak_odds {
                    text.push_str(&format!("{s} {e} weak\n"));
                }
                if let Err(e) = std::fs::write(&truth, text) {
                    eprintln!("{truth}: {e}");
                }
                // The request log as TSV (start_ns cost_ns pos len good failed seek).
                let path = format!("{dir}/{name}-{seed}.tsv");
                match std::fs::File::create(&path) {
                    Ok(f) => an = an.with_log(Box::new(std::io::BufWriter::new(f))),
                    Err(e) => eprintln!("{path}: {e}"),
                }
            }
            let analyzer = Arc::new(Mutex::new(an));
            let clock = SimClock::new();
            let mut src = FaultySource::new(spec.clone(), clock.clone());
            src.set_log(Box::new(analyzer.clone()));
            let mut map = Mapfile::new(size);
            if let Err(e) = rescue(
                &mut src,
                &mut Sink,
                &mut map,
                &mut NoStore,
                &opts,
                &clock,
                &Control::new(),
                &mut NoProgress,
            ) {
                eprintln!("{name} {seed}: {e}");
                std::process::exit(1);
            }
            let s = match analyzer.lock() {
                Ok(mut a) => a.summary(),
                Err(_) => std::process::exit(1),
            };
            let readable = spec.size - spec.bad_bytes();
            let never = readable.saturating_sub(map.totals().finished);
            if std::env::var("SIM_SHOW_LOST").is_ok() {
                let bad = spec.bad_ranges();
                for b in map.blocks() {
                    let inside = bad.iter().any(|&(s, e)| s <= b.pos && b.end() <= e);
                    if b.status != BlockStatus::Finished && !inside {
                        eprintln!("not rescued: 0x{:X}+{} {:?}", b.pos, b.size, b.status);
                    }
                }
            }
            println!(
                "{name} {seed} {} {} {} {:.1} {} {} {} {} {} {}",
                f(s.t90),
                f(s.t99),
                f(s.t100),
                s.drive_time,
                s.failed_reads,
                s.failed_at_99.unwrap_or(0),
                s.failed_at_100.map_or("-".into(), |v| v.to_string()),
                s.seeks,
                s.requests,
                never
            );
        }
    }
}
