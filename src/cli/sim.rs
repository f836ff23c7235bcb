//! `salvor sim-drive` (hidden, for benchmarks): a simulated failing drive from
//! `device::scenario`, served as a FUSE file so that any program (GNU ddrescue, salvor) reads the
//! same drive model, with the request log and the run's measures written when it is unmounted.

use crate::device::scenario::{self, Analyzer, Truth};
use crate::device::{FaultySource, FaultySpec, ReadSemantics, SimClock, Source, WeakDraw};
use crate::error::{Error, Result};
use crate::fuse::FileBackend;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[command(subcommand)]
    cmd: SimCmd,
}

#[derive(clap::Args, Debug)]
struct DriveArgs {
    /// Scenario class: isolated, zones, weak-head, dead-head, clusters, edges.
    #[arg(long)]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Drive size in bytes (default: the scenario's).
    #[arg(long)]
    size: Option<u64>,
    /// Draw weak sectors' odds once per request instead of per sector.
    #[arg(long)]
    weak_per_request: bool,
    /// Serve this file's bytes (a real disk image) instead of the drive's pattern; the damage
    /// and the drive model stay the scenario's. The size defaults to the file's.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum SimCmd {
    /// Mount DIR with one file, `disk`, reading the simulated drive; runs until unmounted
    /// (`fusermount3 -u DIR`), then writes the summary.
    Serve {
        #[command(flatten)]
        drive: DriveArgs,
        /// Mount point (an empty directory).
        #[arg(long)]
        mount: PathBuf,
        /// Where to write the run's measures (JSON) after unmounting.
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Where to write the request log (TSV).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Where to write the drive's truth (JSON) at start.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Buffered reads (opened without O_DIRECT) fail whole pages of this size (0: sectors).
        #[arg(long, default_value_t = 4096)]
        page: u32,
        /// A ddrescue domain mapfile (`salvor domain --used`): the summary also tells when every
        /// readable byte of its finished blocks had been delivered (`t_wanted`).
        #[arg(long, value_name = "MAPFILE")]
        wanted: Option<PathBuf>,
    },
    /// Write the drive's truth (JSON) and a ddrescue test-mode map (`-H`: weak sectors as bad).
    Truth {
        #[command(flatten)]
        drive: DriveArgs,
        /// The truth (JSON).
        out: PathBuf,
        /// The test-mode map.
        #[arg(long)]
        testmap: Option<PathBuf>,
    },
}

fn spec_of(d: &DriveArgs) -> Result<FaultySpec> {
    let data_size = match &d.data {
        Some(p) => Some(
            std::fs::metadata(p)
                .map_err(|e| Error::io(p.clone(), e))?
                .len(),
        ),
        None => None,
    };
    let size = d
        .size
        .or(data_size)
        .unwrap_or_else(|| scenario::default_size(&d.scenario));
    let mut spec = scenario::build(&d.scenario, size, d.seed).ok_or_else(|| {
        Error::invalid_arg(
            "--scenario",
            format!(
                "unknown scenario {:?} (one of {})",
                d.scenario,
                scenario::NAMES.join(", ")
            ),
        )
    })?;
    if d.weak_per_request {
        spec.weak_draw = WeakDraw::PerRequest;
    }
    Ok(spec)
}

fn write_file(path: &PathBuf, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| Error::io(path.clone(), e))
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(format!("JSON: {e}")))
}

/// The test-mode map: finished where the drive reads on the first try, bad elsewhere.
fn testmap(spec: &FaultySpec) -> String {
    let mut bad: Vec<(u64, u64)> = spec.bad_ranges();
    bad.extend(spec.weak_odds_ranges().iter().map(|&(s, e, _)| (s, e)));
    bad.sort();
    let mut out = String::from(
        "# Mapfile. Test map of a salvor simulated drive\n# current_pos  current_status  current_pass\n0x00000000     +               1\n#      pos        size  status\n",
    );
    let mut pos = 0u64;
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in bad {
        match merged.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    for (s, e) in merged {
        if s > pos {
            out.push_str(&format!("0x{pos:08X}  0x{:08X}  +\n", s - pos));
        }
        out.push_str(&format!("0x{s:08X}  0x{:08X}  -\n", e - s));
        pos = e;
    }
    if pos < spec.size {
        out.push_str(&format!("0x{pos:08X}  0x{:08X}  +\n", spec.size - pos));
    }
    out
}

/// The FUSE file: the fault-injecting source, with `O_DIRECT` or buffered semantics per open.
struct SimFile {
    src: SimSource,
    page: u32,
}

/// The drive, serving its pattern or (`--data`) a disk image's bytes.
enum SimSource {
    Pattern(FaultySource),
    Data(scenario::DataBacked<FaultySource>),
}

impl SimSource {
    fn faulty(&mut self) -> &mut FaultySource {
        match self {
            SimSource::Pattern(f) => f,
            SimSource::Data(d) => d.inner_mut(),
        }
    }
    fn source(&mut self) -> &mut dyn Source {
        match self {
            SimSource::Pattern(f) => f,
            SimSource::Data(d) => d,
        }
    }
}

impl FileBackend for SimFile {
    fn size(&self) -> u64 {
        match &self.src {
            SimSource::Pattern(f) => f.geometry().size,
            SimSource::Data(d) => d.geometry().size,
        }
    }

    fn read(&mut self, pos: u64, buf: &mut [u8], direct: bool) -> std::result::Result<usize, i32> {
        self.src.faulty().set_semantics(if direct {
            ReadSemantics::Direct
        } else if self.page == 0 {
            ReadSemantics::SectorPrefix
        } else {
            ReadSemantics::Buffered { page: self.page }
        });
        let out = self.src.source().read_at(pos, buf);
        match out.fault {
            None => Ok(out.good),
            Some(_) if out.good > 0 => Ok(out.good),
            Some(_) => Err(libc::EIO),
        }
    }
}

pub fn run(args: &SimArgs) -> Result<i32> {
    match &args.cmd {
        SimCmd::Truth {
            drive,
            out,
            testmap: tm,
        } => {
            let spec = spec_of(drive)?;
            write_file(out, &json(&Truth::of(&drive.scenario, drive.seed, &spec))?)?;
            if let Some(tm) = tm {
                write_file(tm, testmap(&spec).as_bytes())?;
            }
            Ok(0)
        }
        SimCmd::Serve {
            drive,
            mount,
            summary,
            log,
            truth,
            page,
            wanted,
        } => {
            let spec = spec_of(drive)?;
            if let Some(t) = truth {
                write_file(t, &json(&Truth::of(&drive.scenario, drive.seed, &spec))?)?;
            }
            let mut analyzer = Analyzer::new(&spec);
            if let Some(w) = wanted {
                let bytes = std::fs::read(w).map_err(|e| Error::io(w.clone(), e))?;
                let ranges = crate::mapfile::text::parse_domain_checked(&bytes, w, false)?;
                analyzer = analyzer.with_wanted(&ranges);
            }
            if let Some(l) = log {
                let f = std::fs::File::create(l).map_err(|e| Error::io(l.clone(), e))?;
                analyzer = analyzer.with_log(Box::new(std::io::BufWriter::new(f)));
            }
            let analyzer = Arc::new(Mutex::new(analyzer));
            let mut src = FaultySource::new(spec, SimClock::new());
            src.set_log(Box::new(analyzer.clone()));
            let src = match &drive.data {
                Some(p) => SimSource::Data(scenario::DataBacked::open(src, p)?),
                None => SimSource::Pattern(src),
            };
            crate::fuse::serve_file(SimFile { src, page: *page }, mount, "disk", "salvor-sim")
                .map_err(|e| Error::io(mount.clone(), e))?;
            let s = analyzer
                .lock()
                .map_err(|_| Error::Internal("request log poisoned".into()))?
                .summary();
            if let Some(p) = summary {
                write_file(p, &json(&s)?)?;
            }
            Ok(0)
        }
    }
}
