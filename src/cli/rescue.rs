//! `salvor rescue [OPTIONS] SOURCE DEST MAPFILE`, with ddrescue's option letters and meanings.

use super::printer::{HumanPrinter, JsonPrinter, ReadLog};
use crate::device::SystemClock;
use crate::error::{Error, Result};
use crate::mapfile;
use crate::progress::{Control, RescueObserver, StopReason, Tee};
use crate::rescue::job::{self, JobSpec};
use crate::rescue::{self, Outcome, RescueOptions};
use crate::units::parse_size;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Re-running the same command resumes. Exit status: 0 done (bad sectors may \
                  remain: see `salvor map --done`), 1 environment or I/O problem, 2 corrupt \
                  mapfile, 3 internal error, 128+N stopped by signal N (mapfile saved)."
)]
pub struct RescueArgs {
    /// Disk or file to rescue (opened read-only).
    source: PathBuf,
    /// Where rescued data goes: a file, or a block device with --force.
    dest: PathBuf,
    /// Progress record (GNU ddrescue mapfile); created if missing, resumed if present.
    mapfile: PathBuf,

    /// Use direct disc access (O_DIRECT) for the source.
    #[arg(short = 'd', long = "idirect")]
    direct: bool,
    /// Retry bad sectors N times (-1 = until they are all read).
    #[arg(
        short = 'r',
        long = "retry-passes",
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    retry_passes: i32,
    /// Run all passes in reverse.
    #[arg(short = 'R', long)]
    reverse: bool,
    /// Skip the scraping phase.
    #[arg(short = 'n', long = "no-scrape")]
    no_scrape: bool,
    /// Skip the trimming phase.
    #[arg(short = 'N', long = "no-trim")]
    no_trim: bool,
    /// Skip the sweeping phase (reading the insides of bad areas).
    #[arg(long = "no-sweep")]
    no_sweep: bool,
    /// Sector size in bytes (default: the source's logical sector size).
    #[arg(short = 'b', long = "sector-size", value_name = "BYTES")]
    sector_size: Option<String>,
    /// Sectors per read while copying (default: 1 MiB worth).
    #[arg(short = 'c', long = "cluster-size", value_name = "SECTORS")]
    cluster_size: Option<String>,
    /// Initial and maximum skip size after a read error (default: automatic, learned).
    #[arg(short = 'K', long = "skip-size", value_name = "INITIAL[,MAX]")]
    skip_size: Option<String>,
    /// Restrict the rescue to the finished blocks of this mapfile.
    #[arg(short = 'm', long = "domain-mapfile", value_name = "FILE")]
    domain_mapfile: Option<PathBuf>,
    /// Start position in the source.
    #[arg(short = 'i', long = "input-position", value_name = "BYTES")]
    input_position: Option<String>,
    /// Position in the destination for the start position (default: same as --input-position).
    #[arg(short = 'o', long = "output-position", value_name = "BYTES")]
    output_position: Option<String>,
    /// Maximum size of the rescue domain.
    #[arg(short = 's', long = "size", value_name = "BYTES")]
    size: Option<String>,
    /// Allow overwriting a block device.
    #[arg(short = 'f', long)]
    force: bool,
    /// Don't write all-zero blocks (use only with an empty or zeroed destination).
    #[arg(short = 'S', long)]
    sparse: bool,
    /// Give up when no read succeeded for this long (e.g. 30s, 5m, 1h).
    #[arg(short = 'T', long, value_name = "INTERVAL")]
    timeout: Option<String>,
    /// Read no faster than this (bytes per second, e.g. 20M).
    #[arg(short = 'Z', long = "max-read-rate", value_name = "BYTES")]
    max_read_rate: Option<String>,
    /// Give up after more than N read errors.
    #[arg(short = 'X', long = "max-read-errors", value_name = "N")]
    max_read_errors: Option<u64>,
    /// ddrescue's test mode: reads of blocks not finished in this mapfile fail.
    #[arg(short = 'H', long = "test-mode", value_name = "FILE")]
    test_mode: Option<PathBuf>,
    /// How often to save the mapfile, in seconds (0 = after every read).
    #[arg(
        long = "mapfile-interval",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    mapfile_interval: u64,
    /// If the source disappears, wait this long for it to come back (0 = exit at once).
    #[arg(long = "wait-device", value_name = "INTERVAL", default_value = "0")]
    wait_device: String,
    /// Log every read attempt to FILE (GNU ddrescue's --log-reads layout).
    #[arg(long = "log-reads", value_name = "FILE")]
    log_reads: Option<PathBuf>,
    /// Print events (passes, read errors).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Machine-readable progress: one JSON object per line on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// ddrescue's time intervals: a number with an optional s, m, h or d suffix.
fn parse_interval(arg: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86400.0),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| Error::invalid_arg(arg, format!("'{text}' is not a time interval")))?;
    if !v.is_finite() || v < 0.0 {
        return Err(Error::invalid_arg(
            arg,
            format!("'{text}' is not a time interval"),
        ));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn size_arg(arg: &str, text: &Option<String>, sector: u64) -> Result<Option<u64>> {
    text.as_deref()
        .map(|t| parse_size(t, sector).map_err(|e| Error::invalid_arg(arg, e)))
        .transpose()
}

fn options(args: &RescueArgs) -> Result<RescueOptions> {
    let sector = size_arg("--sector-size", &args.sector_size, 512)?.unwrap_or(0);
    if sector != 0 && (!sector.is_power_of_two() || sector > 1 << 20) {
        return Err(Error::invalid_arg(
            "--sector-size",
            format!("{sector} is not a power of two up to 1 MiB"),
        ));
    }
    let unit = if sector == 0 { 512 } else { sector };
    let cluster_sectors = size_arg("--cluster-size", &args.cluster_size, unit)?;
    if cluster_sectors == Some(0) {
        return Err(Error::invalid_arg("--cluster-size", "must be at least 1"));
    }
    let (skip_initial, skip_max) = match &args.skip_size {
        None => (0, 0),
        Some(t) => {
            let mut parts = t.splitn(2, ',');
            let a = parts.next().unwrap_or("");
            let b = parts.next().unwrap_or("");
            let parse = |s: &str| -> Result<u64> {
                if s.is_empty() {
                    Ok(0)
                } else {
                    parse_size(s, unit).map_err(|e| Error::invalid_arg("--skip-size", e))
                }
            };
            (parse(a)?, parse(b)?)
        }
    };
    let domain = match &args.domain_mapfile {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            Some(mapfile::text::parse_domain(&text, p)?)
        }
    };
    Ok(RescueOptions {
        sector_size: sector as u32,
        cluster_bytes: cluster_sectors.map_or(0, |c| c.saturating_mul(unit)),
        skip_initial,
        skip_max,
        retry_passes: args.retry_passes,
        reverse: args.reverse,
        no_trim: args.no_trim,
        no_sweep: args.no_sweep,
        no_scrape: args.no_scrape,
        input_pos: size_arg("--input-position", &args.input_position, unit)?.unwrap_or(0),
        output_pos: size_arg("--output-position", &args.output_position, unit)?,
        max_size: size_arg("--size", &args.size, unit)?,
        domain,
        sparse: args.sparse,
        timeout: args
            .timeout
            .as_deref()
            .map(|t| parse_interval("--timeout", t))
            .transpose()?,
        max_read_errors: args.max_read_errors,
        max_read_rate: size_arg("--max-read-rate", &args.max_read_rate, unit)?,
        save_interval: Duration::from_secs(args.mapfile_interval),
        wait_for_device: parse_interval("--wait-device", &args.wait_device)?,
        ..RescueOptions::default()
    })
}

pub fn run(args: &RescueArgs) -> Result<i32> {
    // First, so that a signal arriving while the checks run is not fatal: the job sees the stop
    // request at its first checkpoint, saves and exits 128+signal.
    let control = Arc::new(Control::new());
    super::signals::install(control.clone())?;
    let opts = options(args)?;
    let spec = JobSpec {
        source: args.source.clone(),
        dest: args.dest.clone(),
        mapfile: args.mapfile.clone(),
        direct: args.direct,
        sector_size: opts.sector_size,
        force_device: args.force,
        extra_reads: args.domain_mapfile.iter().cloned().collect(),
        test_mode: args.test_mode.clone(),
        logs: args.log_reads.iter().cloned().collect(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let job = job::prepare(&spec, &opts)?;
    let (mut source, mut dest, mut map, mut saver) = (job.source, job.dest, job.map, job.saver);
    let _lock = job.lock;

    let clock = SystemClock::new();
    let mut human = HumanPrinter::new(args.verbose);
    let mut json = JsonPrinter;
    let mut quiet = Quiet;
    let display: &mut dyn RescueObserver = if args.json {
        &mut json
    } else if args.quiet {
        &mut quiet
    } else {
        &mut human
    };
    let mut read_log = args.log_reads.as_deref().map(ReadLog::create).transpose()?;
    let mut tee;
    let observer: &mut dyn RescueObserver = match &mut read_log {
        Some(log) => {
            tee = Tee(display, log);
            &mut tee
        }
        None => display,
    };
    let (outcome, _stats) = rescue::rescue(
        source.as_mut(),
        &mut dest,
        &mut map,
        &mut saver,
        &opts,
        &clock,
        &control,
        observer,
    )?;
    Ok(match outcome {
        Outcome::Finished => 0,
        Outcome::Stopped(StopReason::Signal(sig)) => {
            eprintln!("salvor: interrupted by signal {sig}; mapfile saved, run the same command to resume");
            128 + sig
        }
        Outcome::Stopped(StopReason::User) => 1,
    })
}

/// `-q`: nothing on the terminal, like ddrescue's quiet mode.
#[derive(Default)]
struct Quiet;

impl RescueObserver for Quiet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(
            parse_interval("-T", "30").ok(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_interval("-T", "5m").ok(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_interval("-T", "1.5h").ok(),
            Some(Duration::from_secs(5400))
        );
        assert!(parse_interval("-T", "x").is_err());
        assert!(parse_interval("-T", "-3").is_err());
    }
}
