//! `salvor rescue [OPTIONS] SOURCE DEST [MAPFILE]`: GNU ddrescue 1.27's command line, every option
//! with ddrescue's meaning (docs/ddrescue-compat.md lists the deliberate differences), and its
//! fill, generate and command modes.

use super::printer::{EventLog, HumanPrinter, JsonPrinter, RateLog, ReadLog};
use crate::device::Dest;
use crate::device::SystemClock;
use crate::error::{Error, Result};
use crate::mapfile::{self, BlockStatus};
use crate::progress::{Control, RescueObserver, StopReason, Tee};
use crate::rescue::job::{self, JobSpec};
use crate::rescue::{self, Outcome, RescueOptions};
use crate::units::parse_size;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(
    version,
    after_help = "Re-running the same command resumes. Every GNU ddrescue 1.27 option is accepted \
                  with ddrescue's meaning (see docs/ddrescue-compat.md). Numbers may be decimal, \
                  0x hex or 0 octal, followed by k, Ki, M, Mi, ... and s (sectors) or B. Exit \
                  status: 0 done (bad sectors may remain: see `salvor map --done`), 1 environment \
                  or I/O problem, 2 corrupt mapfile, 3 internal error, 128+N stopped by signal N \
                  (mapfile saved)."
)]
pub struct RescueArgs {
    /// Disk or file to rescue (opened read-only).
    source: PathBuf,
    /// Where rescued data goes: a file, or a block device with --force.
    dest: PathBuf,
    /// Progress record (GNU ddrescue mapfile); created if missing, resumed if present. Without
    /// one, the rescue cannot be resumed (as in ddrescue).
    mapfile: Option<PathBuf>,

    /// Minimum read rate of good areas in bytes/s (0 = average rate / 10): slower areas are
    /// skipped in the first copying pass and read later.
    #[arg(
        short = 'a',
        long = "min-read-rate",
        value_name = "BYTES",
        overrides_with = "min_read_rate"
    )]
    min_read_rate: Option<String>,
    /// Mark non-trimmed and non-scraped blocks as non-tried before starting.
    #[arg(short = 'A', long = "try-again", overrides_with = "try_again")]
    try_again: bool,
    /// Show sizes with binary prefixes (KiB, MiB, ...) in the status display.
    #[arg(
        short = 'B',
        long = "binary-prefixes",
        overrides_with = "binary_prefixes"
    )]
    binary_prefixes: bool,
    /// Don't read new data beyond the mapfile's limits.
    #[arg(short = 'C', long = "complete-only", overrides_with = "complete_only")]
    complete_only: bool,
    /// Use direct disc access (O_DIRECT) for the source.
    #[arg(short = 'd', long = "idirect", overrides_with = "direct")]
    direct: bool,
    /// Use direct disc access (O_DIRECT) for the destination.
    #[arg(short = 'D', long = "odirect", overrides_with = "odirect")]
    odirect: bool,
    /// Maximum number of bad areas allowed ([+]N: new ones found in this run).
    #[arg(
        short = 'e',
        long = "max-bad-areas",
        value_name = "[+]N",
        allow_hyphen_values = true,
        overrides_with = "max_bad_areas"
    )]
    max_bad_areas: Option<String>,
    /// Maximum rate of read errors allowed, in bytes per second.
    #[arg(
        short = 'E',
        long = "max-error-rate",
        value_name = "BYTES",
        overrides_with = "max_error_rate"
    )]
    max_error_rate: Option<String>,
    /// Retry bad sectors N times (-1 = until they are all read).
    #[arg(
        short = 'r',
        long = "retry-passes",
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true,
        overrides_with = "retry_passes"
    )]
    retry_passes: i32,
    /// Run all passes in reverse.
    #[arg(short = 'R', long, overrides_with = "reverse")]
    reverse: bool,
    /// Skip the scraping phase.
    #[arg(short = 'n', long = "no-scrape", overrides_with = "no_scrape")]
    no_scrape: bool,
    /// Skip the trimming phase.
    #[arg(short = 'N', long = "no-trim", overrides_with = "no_trim")]
    no_trim: bool,
    /// Skip the sweeping phase (reading the insides of bad areas).
    #[arg(long = "no-sweep", overrides_with = "no_sweep")]
    no_sweep: bool,
    /// Also scrape areas where every probe failed (dead heads: one failed read per sector).
    #[arg(long = "scrape-dead-areas")]
    scrape_dead_areas: bool,
    /// No extra read for the sectors of the shortest bad areas where weak sectors were seen
    /// (failed reads that read later); at most one per 200 failed reads otherwise.
    #[arg(long = "no-weak-retry")]
    no_weak_retry: bool,
    /// Read in the plain order (ddrescue's) instead of filesystem metadata first, then used
    /// data, then free space.
    #[arg(long = "plain-order", overrides_with = "plain_order")]
    plain_order: bool,
    /// Stop after the filesystems' metadata and used data: free space is not read (the summary
    /// says how much was left).
    #[arg(
        long = "used-only",
        overrides_with = "used_only",
        conflicts_with = "plain_order"
    )]
    used_only: bool,
    /// Sector size in bytes (default: the source's logical sector size).
    #[arg(
        short = 'b',
        long = "sector-size",
        value_name = "BYTES",
        overrides_with = "sector_size"
    )]
    sector_size: Option<String>,
    /// Sectors per read while copying (default: 1 MiB worth).
    #[arg(
        short = 'c',
        long = "cluster-size",
        value_name = "SECTORS",
        overrides_with = "cluster_size"
    )]
    cluster_size: Option<String>,
    /// Fill the destination's blocks of these mapfile types (?*/-+, and l for location data)
    /// with data from the source.
    #[arg(
        short = 'F',
        long = "fill-mode",
        value_name = "TYPES",
        allow_hyphen_values = true
    )]
    fill_mode: Option<String>,
    /// Generate an approximate mapfile from the source and a partial copy (zero sectors =
    /// non-tried).
    #[arg(short = 'G', long = "generate-mode")]
    generate_mode: bool,
    /// Exit with status 1 if the source size differs from the size the mapfile records.
    #[arg(
        short = 'I',
        long = "verify-input-size",
        overrides_with = "verify_input_size"
    )]
    verify_input_size: bool,
    /// After every read error, reread the latest good sector and check it still reads the same.
    #[arg(
        short = 'J',
        long = "verify-on-error",
        overrides_with = "verify_on_error"
    )]
    verify_on_error: bool,
    /// Initial and maximum skip size after a read error (default: automatic, learned; 0 = no
    /// skipping).
    #[arg(
        short = 'K',
        long = "skip-size",
        value_name = "[INITIAL][,MAX]",
        overrides_with = "skip_size"
    )]
    skip_size: Option<String>,
    /// Accept an unordered domain or test-mode mapfile with gaps.
    #[arg(short = 'L', long = "loose-domain", overrides_with = "loose_domain")]
    loose_domain: bool,
    /// Restrict the rescue to the finished blocks of this mapfile ('-' = standard input).
    #[arg(short = 'm', long = "domain-mapfile", value_name = "FILE")]
    domain_mapfile: Option<PathBuf>,
    /// Mark all failed blocks as non-trimmed before starting.
    #[arg(short = 'M', long = "retrim", overrides_with = "retrim")]
    retrim: bool,
    /// Start position in the source.
    #[arg(
        short = 'i',
        long = "input-position",
        value_name = "BYTES",
        allow_hyphen_values = true,
        overrides_with = "input_position"
    )]
    input_position: Option<String>,
    /// Position in the destination for the start position (default: same as --input-position).
    #[arg(
        short = 'o',
        long = "output-position",
        value_name = "BYTES",
        allow_hyphen_values = true,
        overrides_with = "output_position"
    )]
    output_position: Option<String>,
    /// Reopen the source after every read error.
    #[arg(
        short = 'O',
        long = "reopen-on-error",
        overrides_with = "reopen_on_error"
    )]
    reopen_on_error: bool,
    /// Preallocate space on disc for the destination file.
    #[arg(short = 'p', long = "preallocate", overrides_with = "preallocate")]
    preallocate: bool,
    /// Show some lines of the latest data read (-P[LINES]; display only: salvor shows none).
    #[arg(
        long = "data-preview",
        value_name = "LINES",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "3",
        overrides_with = "data_preview"
    )]
    data_preview: Option<String>,
    /// Maximum size of the rescue domain (-1 = no limit).
    #[arg(
        short = 's',
        long = "size",
        value_name = "BYTES",
        allow_hyphen_values = true,
        overrides_with = "size"
    )]
    size: Option<String>,
    /// Allow overwriting a block device.
    #[arg(short = 'f', long, overrides_with = "force")]
    force: bool,
    /// Don't write all-zero blocks (use only with an empty or zeroed destination).
    #[arg(short = 'S', long, overrides_with = "sparse")]
    sparse: bool,
    /// Truncate the destination file to zero size before writing to it.
    #[arg(short = 't', long, overrides_with = "truncate")]
    truncate: bool,
    /// Give up when no read succeeded for this long (e.g. 30s, 5m, 1h).
    #[arg(short = 'T', long, value_name = "INTERVAL", overrides_with = "timeout")]
    timeout: Option<String>,
    /// Run all passes in the same direction (backwards with --reverse).
    #[arg(short = 'u', long, overrides_with = "unidirectional")]
    unidirectional: bool,
    /// Make fill mode ignore write errors.
    #[arg(
        short = 'w',
        long = "ignore-write-errors",
        overrides_with = "ignore_write_errors"
    )]
    ignore_write_errors: bool,
    /// Omit writes of data the destination already holds.
    #[arg(
        short = 'W',
        long = "compare-before-write",
        overrides_with = "compare_before_write"
    )]
    compare_before_write: bool,
    /// Extend the destination file to at least this size.
    #[arg(
        short = 'x',
        long = "extend-outfile",
        value_name = "BYTES",
        overrides_with = "extend_outfile"
    )]
    extend_outfile: Option<String>,
    /// Read no faster than this (bytes per second, e.g. 20M).
    #[arg(
        short = 'Z',
        long = "max-read-rate",
        value_name = "BYTES",
        overrides_with = "max_read_rate"
    )]
    max_read_rate: Option<String>,
    /// Give up after more than N read errors.
    #[arg(
        short = 'X',
        long = "max-read-errors",
        value_name = "N",
        overrides_with = "max_read_errors"
    )]
    max_read_errors: Option<String>,
    /// Sync the destination after every write.
    #[arg(short = 'y', long, overrides_with = "synchronous")]
    synchronous: bool,
    /// ddrescue's test mode: reads of blocks not finished in this mapfile fail ('-' = standard
    /// input).
    #[arg(short = 'H', long = "test-mode", value_name = "FILE")]
    test_mode: Option<PathBuf>,
    /// Ask for confirmation before starting.
    #[arg(long, overrides_with = "ask")]
    ask: bool,
    /// Read commands from standard input (c POS SIZE, s POS SIZE, u, f, q), like ddrescue.
    #[arg(long = "command-mode", overrides_with = "command_mode")]
    command_mode: bool,
    /// Copying passes to run (1 to 5, e.g. 1,3-5; 0 = none): ddrescue's passes.
    #[arg(long, value_name = "RANGE", overrides_with = "cpass")]
    cpass: Option<String>,
    /// Initial delay before slow reads are checked for (with --min-read-rate).
    #[arg(
        long = "delay-slow",
        value_name = "INTERVAL",
        overrides_with = "delay_slow"
    )]
    delay_slow: Option<String>,
    /// Log significant events to FILE (appended: pass starts, end of run).
    #[arg(
        long = "log-events",
        value_name = "FILE",
        overrides_with = "log_events"
    )]
    log_events: Option<PathBuf>,
    /// Log rates and error sizes to FILE every second.
    #[arg(long = "log-rates", value_name = "FILE", overrides_with = "log_rates")]
    log_rates: Option<PathBuf>,
    /// How often to save the mapfile: SAVE[,SYNC] intervals (-1 = automatic, 0 = after every
    /// read).
    #[arg(
        long = "mapfile-interval",
        value_name = "[SAVE][,SYNC]",
        allow_hyphen_values = true,
        overrides_with = "mapfile_interval"
    )]
    mapfile_interval: Option<String>,
    /// Give up after more than N slow reads (with --min-read-rate).
    #[arg(
        long = "max-slow-reads",
        value_name = "N",
        overrides_with = "max_slow_reads"
    )]
    max_slow_reads: Option<String>,
    /// Wait this long after each read error ('s' prefix: simulated, no real pause).
    #[arg(
        long = "pause-on-error",
        value_name = "INTERVAL",
        overrides_with = "pause_on_error"
    )]
    pause_on_error: Option<String>,
    /// Wait this long between passes.
    #[arg(
        long = "pause-on-pass",
        value_name = "INTERVAL",
        overrides_with = "pause_on_pass"
    )]
    pause_on_pass: Option<String>,
    /// Reset the slow reads counter when the rate rises above --min-read-rate.
    #[arg(long = "reset-slow", overrides_with = "reset_slow")]
    reset_slow: bool,
    /// Allow the source and destination to be the same file.
    #[arg(long = "same-file", overrides_with = "same_file")]
    same_file: bool,
    /// If the source disappears, wait this long for it to come back (0 = exit at once).
    #[arg(
        long = "wait-device",
        value_name = "INTERVAL",
        default_value = "0",
        overrides_with = "wait_device"
    )]
    wait_device: String,
    /// Log every read attempt to FILE (GNU ddrescue's --log-reads layout).
    #[arg(long = "log-reads", value_name = "FILE", overrides_with = "log_reads")]
    log_reads: Option<PathBuf>,
    /// Print events (passes, read errors); more -v's are accepted.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Machine-readable progress: one JSON object per line on stdout.
    #[arg(long, overrides_with = "json")]
    json: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long, overrides_with = "quiet")]
    quiet: bool,
}

/// What a run does: ddrescue's modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Rescue,
    /// `-F TYPES`: the block statuses to fill, and whether to write location data (`l`).
    Fill(Vec<BlockStatus>, bool),
    /// `-G`.
    Generate,
    /// `--command-mode`.
    Command,
}

fn interval_arg(arg: &str, text: &str, whole_seconds: bool) -> Result<Duration> {
    crate::units::parse_interval(text, whole_seconds).map_err(|e| Error::invalid_arg(arg, e))
}

fn size_arg(arg: &str, text: &Option<String>, sector: u64) -> Result<Option<u64>> {
    text.as_deref()
        .map(|t| parse_size(t, sector).map_err(|e| Error::invalid_arg(arg, e)))
        .transpose()
}

/// A ddrescue count (`-X`, `--max-slow-reads`, `-e`): a non-negative number.
fn count_arg(arg: &str, text: &Option<String>) -> Result<Option<u64>> {
    size_arg(arg, text, 512)
}

/// `--cpass=RANGE`: passes 1 to 5 as a bit set (bit 0 = pass 1); "0" alone = none.
pub fn parse_cpass(text: &str) -> Result<u8> {
    let bad = || {
        Error::invalid_arg(
            "--cpass",
            format!("'{text}' is not a range of passes 1 to 5"),
        )
    };
    if text == "0" {
        return Ok(0);
    }
    let pass = |s: &str| -> Result<u8> {
        match s.as_bytes() {
            [d @ b'1'..=b'5'] => Ok(d - b'0'),
            _ => Err(bad()),
        }
    };
    let mut set = 0u8;
    for item in text.split(',') {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (pass(a)?, pass(b)?),
            None => (pass(item)?, pass(item)?),
        };
        if a > b {
            return Err(bad());
        }
        for p in a..=b {
            set |= 1 << (p - 1);
        }
    }
    Ok(set)
}

/// `-K [INITIAL][,MAX]`: at least one given; values rounded up to sectors; MAX from 64 KiB to
/// 1 EiB; INITIAL 0 (disables skipping) or 64 KiB to MAX. Returns (initial, max), None = default.
fn parse_skip(text: &str, sector: u64) -> Result<(Option<u64>, Option<u64>)> {
    let bad = |why: String| Error::invalid_arg("--skip-size", format!("'{text}': {why}"));
    let (a, b) = match text.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    if a.is_empty() && b.is_none_or(str::is_empty) {
        return Err(bad("give the initial or the maximum size".into()));
    }
    if b.is_some_and(str::is_empty) {
        return Err(bad("missing maximum after ','".into()));
    }
    const MIN: u64 = 64 << 10;
    const MAX: u64 = 1 << 60;
    let round = |v: u64| v.div_ceil(sector).saturating_mul(sector);
    let initial = if a.is_empty() {
        None
    } else {
        let v = parse_size(a, sector).map_err(bad)?;
        if v != 0 && !(MIN..=MAX).contains(&v) {
            return Err(bad(
                "the initial size must be 0 or from 64 KiB to 1 EiB".into()
            ));
        }
        Some(round(v))
    };
    let max = match b {
        None => None,
        Some(b) => {
            let v = parse_size(b, sector).map_err(bad)?;
            if !(MIN..=MAX).contains(&v) {
                return Err(bad("the maximum size must be from 64 KiB to 1 EiB".into()));
            }
            let v = round(v);
            if initial.is_some_and(|i| i > v) {
                return Err(bad("the initial size is larger than the maximum".into()));
            }
            Some(v)
        }
    };
    Ok((initial, max))
}

/// `--mapfile-interval=[SAVE][,SYNC]`: (save interval, None = automatic). SYNC, if given, must
/// be at least 5 s and not below SAVE; salvor syncs the destination at every save, so SYNC only
/// needs validating.
fn parse_mapfile_interval(text: &str) -> Result<Option<Duration>> {
    let arg = "--mapfile-interval";
    let (a, b) = match text.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    if a.is_empty() && b.is_none_or(str::is_empty) || b.is_some_and(str::is_empty) {
        return Err(Error::invalid_arg(
            arg,
            format!("'{text}': give SAVE, ,SYNC or SAVE,SYNC"),
        ));
    }
    let save = match a {
        "" | "-1" => None,
        a => Some(interval_arg(arg, a, true)?),
    };
    if let Some(b) = b {
        let sync = interval_arg(arg, b, true)?;
        if sync < Duration::from_secs(5) {
            return Err(Error::invalid_arg(
                arg,
                format!("'{text}': the sync interval must be at least 5 s"),
            ));
        }
        if save.is_some_and(|s| s > sync) {
            return Err(Error::invalid_arg(
                arg,
                format!("'{text}': the sync interval must not be shorter than the save interval"),
            ));
        }
    }
    Ok(save)
}

/// Reads a mapfile given as an option argument; "-" is standard input.
fn read_option_file(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("(standard input)", e))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    }
}

/// Checks the combinations of options ddrescue refuses, and those salvor does not support.
fn check_combinations(args: &RescueArgs) -> Result<Mode> {
    let refuse = |arg: &str, why: &str| Err(Error::invalid_arg(arg, why.to_string()));
    for (name, log) in [
        ("--log-events", &args.log_events),
        ("--log-rates", &args.log_rates),
        ("--log-reads", &args.log_reads),
    ] {
        if log.as_ref().is_some_and(|p| p.as_os_str() == "-") {
            return refuse(name, "the log must be a file, not standard output");
        }
    }
    if let Some(p) = &args.data_preview {
        match p.parse::<u32>() {
            Ok(1..=32) => {}
            _ => return refuse("--data-preview", "LINES must be from 1 to 32"),
        }
    }
    if args
        .domain_mapfile
        .as_ref()
        .is_some_and(|p| p.as_os_str() == "-")
        && args
            .test_mode
            .as_ref()
            .is_some_and(|p| p.as_os_str() == "-")
    {
        return refuse(
            "--domain-mapfile",
            "-m - and -H - cannot both read standard input",
        );
    }
    let mut modes = Vec::new();
    let mut mode = Mode::Rescue;
    if let Some(types) = &args.fill_mode {
        let mut set = Vec::new();
        let mut location = false;
        for c in types.chars() {
            match BlockStatus::from_char(c) {
                Some(s) => set.push(s),
                None if c == 'l' => location = true,
                None => {
                    return Err(Error::invalid_arg(
                        "--fill-mode",
                        format!("'{c}' is not a block type (one of ?*/-+ and l)"),
                    ))
                }
            }
        }
        if set.is_empty() {
            return refuse("--fill-mode", "give at least one block type");
        }
        modes.push("--fill-mode");
        mode = Mode::Fill(set, location);
    }
    if args.generate_mode {
        modes.push("--generate-mode");
        mode = Mode::Generate;
    }
    if args.command_mode {
        modes.push("--command-mode");
        mode = Mode::Command;
    }
    if modes.len() > 1 {
        return refuse(modes[1], &format!("cannot be combined with {}", modes[0]));
    }
    let stdin_option = [&args.domain_mapfile, &args.test_mode]
        .into_iter()
        .flatten()
        .any(|p| p.as_os_str() == "-");
    match &mode {
        Mode::Command if stdin_option => {
            return refuse(
                "--command-mode",
                "reads its commands from standard input: -m - / -H - cannot read it too",
            );
        }
        Mode::Fill(..) | Mode::Generate if args.mapfile.is_none() => {
            return refuse(modes[0], "needs a mapfile operand");
        }
        Mode::Fill(..) | Mode::Generate if args.ask => {
            return refuse("--ask", &format!("cannot be combined with {}", modes[0]));
        }
        Mode::Fill(..) if args.same_file => {
            return refuse("--same-file", "cannot be combined with --fill-mode");
        }
        _ => {}
    }
    if args.ignore_write_errors && !matches!(mode, Mode::Fill(..)) {
        return refuse("--ignore-write-errors", "only works in fill mode (-F)");
    }
    if args.retry_passes < -1 {
        return refuse("--retry-passes", "N must be -1 (until done) or more");
    }
    if args.verify_input_size && !args.mapfile.as_deref().is_some_and(Path::exists) {
        return refuse(
            "--verify-input-size",
            "needs an existing mapfile to compare the input's size with",
        );
    }
    if args.same_file && args.truncate {
        return refuse(
            "--truncate",
            "cannot be combined with --same-file (it would destroy the input)",
        );
    }
    Ok(mode)
}

/// Whether the user asked for ddrescue's own copying behaviour (its passes, no sweep).
fn ddrescue_passes(args: &RescueArgs) -> bool {
    args.cpass.is_some() || args.min_read_rate.is_some()
}

fn options(args: &RescueArgs) -> Result<RescueOptions> {
    let sector = size_arg("--sector-size", &args.sector_size, 512)?.unwrap_or(0);
    if args.sector_size.is_some() && (sector == 0 || !sector.is_power_of_two() || sector > 1 << 20)
    {
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
        None => (None, None),
        Some(t) => parse_skip(t, unit)?,
    };
    let domain = match &args.domain_mapfile {
        None => None,
        Some(p) => {
            let bytes = read_option_file(p)?;
            Some(mapfile::text::parse_domain_checked(
                &bytes,
                p,
                args.loose_domain,
            )?)
        }
    };
    let max_size = match args.size.as_deref().map(str::trim) {
        None | Some("-1") => None,
        Some(_) => size_arg("--size", &args.size, unit)?,
    };
    let cpass = args.cpass.as_deref().map(parse_cpass).transpose()?;
    let max_bad_areas = match args.max_bad_areas.as_deref() {
        None => None,
        Some(t) => {
            let (new, n) = match t.strip_prefix('+') {
                Some(n) => (true, n),
                None => (false, t),
            };
            let n = parse_size(n, unit).map_err(|e| Error::invalid_arg("--max-bad-areas", e))?;
            Some((n, new))
        }
    };
    let pause_on_error = match args.pause_on_error.as_deref() {
        None => None,
        Some(t) => match t.strip_prefix('s') {
            Some(sim) => Some((interval_arg("--pause-on-error", sim, false)?, true)),
            None => Some((interval_arg("--pause-on-error", t, true)?, false)),
        },
    };
    let max_read_rate = size_arg("--max-read-rate", &args.max_read_rate, unit)?;
    if max_read_rate == Some(0) {
        return Err(Error::invalid_arg(
            "--max-read-rate",
            "must be greater than 0",
        ));
    }
    Ok(RescueOptions {
        sector_size: sector as u32,
        cluster_bytes: cluster_sectors.map_or(0, |c| c.saturating_mul(unit)),
        skip_initial: skip_initial.unwrap_or(0),
        skip_max: skip_max.unwrap_or(0),
        no_skip: skip_initial == Some(0),
        fixed_skip: args.skip_size.is_some(),
        retry_passes: args.retry_passes,
        reverse: args.reverse,
        no_trim: args.no_trim,
        no_sweep: args.no_sweep || ddrescue_passes(args),
        scrape_dead_areas: args.scrape_dead_areas,
        no_weak_retry: args.no_weak_retry || ddrescue_passes(args),
        no_scrape: args.no_scrape,
        input_pos: size_arg("--input-position", &args.input_position, unit)?.unwrap_or(0),
        output_pos: size_arg("--output-position", &args.output_position, unit)?,
        max_size,
        domain,
        sparse: args.sparse,
        timeout: args
            .timeout
            .as_deref()
            .map(|t| interval_arg("--timeout", t, true))
            .transpose()?,
        max_read_errors: count_arg("--max-read-errors", &args.max_read_errors)?,
        max_read_rate,
        save_interval: match args.mapfile_interval.as_deref() {
            None => Duration::from_secs(30),
            Some(t) => parse_mapfile_interval(t)?.unwrap_or(Duration::from_secs(30)),
        },
        wait_for_device: interval_arg("--wait-device", &args.wait_device, false)?,
        cpass,
        try_again: args.try_again,
        retrim: args.retrim,
        unidirectional: args.unidirectional,
        complete_only: args.complete_only || matches!(check_combinations(args)?, Mode::Fill(..)),
        compare_before_write: args.compare_before_write,
        reopen_on_error: args.reopen_on_error,
        verify_on_error: args.verify_on_error,
        synchronous: args.synchronous,
        min_read_rate: size_arg("--min-read-rate", &args.min_read_rate, unit)?,
        delay_slow: match &args.delay_slow {
            None => Duration::from_secs(30),
            Some(t) => interval_arg("--delay-slow", t, true)?,
        },
        max_slow_reads: count_arg("--max-slow-reads", &args.max_slow_reads)?,
        reset_slow: args.reset_slow,
        max_bad_areas,
        max_error_rate: size_arg("--max-error-rate", &args.max_error_rate, unit)?,
        pause_on_error,
        pause_on_pass: match &args.pause_on_pass {
            None => Duration::ZERO,
            Some(t) => interval_arg("--pause-on-pass", t, true)?,
        },
        // salvor gives a new destination file the domain's full size (holes for what is not
        // rescued) on a plain resumable rescue; with ddrescue's domain or pass options the file
        // ends where the last rescued data ends, as ddrescue's does.
        extend_new_dest: args.mapfile.is_some()
            && args.input_position.is_none()
            && args.output_position.is_none()
            && args.size.is_none()
            && args.domain_mapfile.is_none()
            && args.test_mode.is_none()
            && !args.complete_only
            && !ddrescue_passes(args),
        // Test mode simulates the plain run's reads; the other cases are the driver's own.
        order: if args.plain_order || args.test_mode.is_some() {
            rescue::Order::Plain
        } else {
            rescue::Order::FsAware
        },
        used_only: args.used_only,
        ..RescueOptions::default()
    })
}

pub fn run(args: &RescueArgs) -> Result<i32> {
    // First, so that a signal arriving while the checks run is not fatal: the job sees the stop
    // request at its first checkpoint, saves and exits 128+signal.
    let control = Arc::new(Control::new());
    super::signals::install(control.clone())?;
    let mode = check_combinations(args)?;
    let opts = options(args)?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match &mode {
        Mode::Generate => return generate(args, &opts, &command_line),
        Mode::Fill(types, location) => return fill(args, &opts, types, *location, &command_line),
        Mode::Rescue | Mode::Command => {}
    }
    if args.complete_only && !args.mapfile.as_deref().is_some_and(Path::exists) {
        return Err(Error::invalid_arg(
            "--complete-only",
            "needs an existing mapfile (its extent is the limit of the rescue)",
        ));
    }
    let test_map_text = match &args.test_mode {
        Some(p) if p.as_os_str() == "-" => Some(read_option_file(p)?),
        _ => None,
    };
    let spec = JobSpec {
        direct: args.direct,
        sector_size: opts.sector_size,
        force_device: args.force,
        extra_reads: args.domain_mapfile.iter().cloned().collect(),
        test_mode: args.test_mode.clone(),
        logs: [&args.log_reads, &args.log_events, &args.log_rates]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        command_line,
        same_file: args.same_file,
        loose_test_map: args.loose_domain,
        test_map_text,
        ..JobSpec::new(args.source.clone(), args.dest.clone(), args.mapfile.clone())
    };
    let Some(job) = job::prepare_or_nothing(&spec, &opts)? else {
        return Ok(0);
    };
    let (mut source, mut dest, mut map) = (job.source, job.dest, job.map);
    let _lock = job.lock;
    let size = source.geometry().size;
    if args.verify_input_size && job.map_loaded && map.end() != size {
        return Err(Error::refused(
            args.mapfile.as_deref().unwrap_or(Path::new("mapfile")),
            format!(
                "--verify-input-size: the source is {size} bytes but the mapfile covers {}",
                map.end()
            ),
        ));
    }
    if args.ask && !confirm(&args.source, &args.dest, size, &job.identity)? {
        // Declined: leave nothing behind, as ddrescue (which asks before creating anything).
        if dest.is_new() {
            std::fs::remove_file(&args.dest).map_err(|e| Error::io(&args.dest, e))?;
        }
        return Ok(1);
    }
    if args.truncate {
        dest.truncate()?;
    }
    if args.preallocate {
        dest.preallocate(job::needed_size(&opts, size))?;
    }
    if args.odirect && !dest.enable_direct_writes()? {
        return Err(Error::invalid_arg(
            "--odirect",
            format!(
                "{} does not support direct access (O_DIRECT)",
                args.dest.display()
            ),
        ));
    }
    let mut no_store = rescue::engine::NoStore;
    let mut saver = job.saver;
    let store: &mut dyn rescue::engine::MapStore = match &mut saver {
        Some(s) => s,
        None => &mut no_store,
    };
    if mode == Mode::Command {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        return rescue::modes::command_mode(
            source.as_mut(),
            &mut dest,
            &mut map,
            store,
            &opts,
            &mut stdin.lock(),
            &mut stdout.lock(),
        );
    }

    let clock = SystemClock::new();
    let mut human = HumanPrinter::new(args.verbose > 0).binary_prefixes(args.binary_prefixes);
    let mut json = JsonPrinter;
    let mut quiet = Quiet;
    let display: &mut dyn RescueObserver = if args.json {
        &mut json
    } else if args.quiet {
        &mut quiet
    } else {
        &mut human
    };
    let mut logs = Logs {
        reads: args.log_reads.as_deref().map(ReadLog::create).transpose()?,
        events: args
            .log_events
            .as_deref()
            .map(|p| EventLog::create(p, &spec.command_line))
            .transpose()?,
        rates: args
            .log_rates
            .as_deref()
            .map(|p| RateLog::create(p, &spec.command_line))
            .transpose()?,
    };
    let mut tee = Tee(display, &mut logs);
    let result = rescue::rescue(
        source.as_mut(),
        &mut dest,
        &mut map,
        store,
        &opts,
        &clock,
        &control,
        &mut tee,
    );
    if let Some(events) = &mut logs.events {
        match &result {
            Err(e) => events.end(&format!("error: {e}")),
            Ok((Outcome::Stopped(StopReason::Signal(sig)), _)) => {
                events.end(&format!("interrupted by signal {sig}"))
            }
            Ok(_) => {}
        }
    }
    let (outcome, _stats) = result?;
    if let Some(len) = size_arg("--extend-outfile", &args.extend_outfile, 512)? {
        dest.extend_to(len)?;
    }
    Ok(match outcome {
        Outcome::Finished => 0,
        Outcome::Stopped(StopReason::Signal(sig)) => {
            eprintln!("salvor: interrupted by signal {sig}; mapfile saved, run the same command to resume");
            128 + sig
        }
        Outcome::Stopped(StopReason::User) => 1,
    })
}

/// `--ask`: asks on the terminal, naming the source (model, serial, size when known) and the
/// destination; true if the answer starts with 'y'.
fn confirm(source: &Path, dest: &Path, size: u64, identity: &str) -> Result<bool> {
    let dest_size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    eprint!(
        "About to copy {} from '{}' [{identity}] to '{}' ({dest_size})\nProceed (y/N)? ",
        crate::units::format_bytes(size),
        source.display(),
        dest.display()
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::io("(standard input)", e))?;
    Ok(answer.trim_start().starts_with('y'))
}

/// `-G`: reads the source's size and the partial copy; writes only the mapfile.
fn generate(args: &RescueArgs, opts: &RescueOptions, command_line: &str) -> Result<i32> {
    let Some(mapfile) = args.mapfile.as_deref() else {
        return Err(Error::invalid_arg(
            "--generate-mode",
            "needs a mapfile operand",
        ));
    };
    crate::safety::Plan::new()
        .read(&args.source)
        .read(&args.dest)
        .mapfile(mapfile)
        .check()?;
    let _lock = crate::mapfile::MapfileLock::acquire(mapfile)?;
    let source = crate::device::FileSource::open(
        &args.source,
        crate::device::OpenOptions {
            direct: false,
            sector_size: opts.sector_size,
        },
    )?;
    let geo = crate::device::Source::geometry(&source);
    let sector = if opts.sector_size != 0 {
        u64::from(opts.sector_size)
    } else {
        u64::from(geo.logical_sector.max(1))
    };
    let copy = std::fs::File::open(&args.dest).map_err(|e| Error::io(&args.dest, e))?;
    let copy_len = copy.metadata().map_err(|e| Error::io(&args.dest, e))?.len();
    let existing = mapfile::parse_file(mapfile)?;
    let fresh = existing.is_none();
    let mut map = existing.unwrap_or_else(|| mapfile::Mapfile::new(geo.size));
    let mut read_copy = |pos: u64, buf: &mut [u8]| -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match copy.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&args.dest, e)),
            }
        }
        Ok(done)
    };
    rescue::modes::generate(
        &mut read_copy,
        copy_len,
        &mut map,
        fresh,
        opts,
        geo.size,
        sector,
    )?;
    let header = mapfile::Header::salvor(command_line);
    mapfile::MapfileSaver::with_header(mapfile, header).save(&map, "Finished")?;
    Ok(0)
}

/// `-F TYPES`: the source is read from position 0 (it may be a pipe or /dev/zero, of any size);
/// the mapfile must exist and only its status line changes.
fn fill(
    args: &RescueArgs,
    opts: &RescueOptions,
    types: &[BlockStatus],
    location: bool,
    command_line: &str,
) -> Result<i32> {
    let Some(mapfile) = args.mapfile.as_deref() else {
        return Err(Error::invalid_arg("--fill-mode", "needs a mapfile operand"));
    };
    let mut map = mapfile::parse_file(mapfile)?.ok_or_else(|| {
        Error::invalid_arg(
            "--fill-mode",
            format!("the mapfile {} does not exist", mapfile.display()),
        )
    })?;
    let needed = (i128::from(map.end()) + i128::from(opts.output_pos.unwrap_or(opts.input_pos))
        - i128::from(opts.input_pos))
    .max(0) as u64;
    crate::safety::Plan::new()
        .read(&args.source)
        .destination(&args.dest, needed)
        .mapfile(mapfile)
        .check()?;
    let _lock = crate::mapfile::MapfileLock::acquire(mapfile)?;
    let mut input = std::fs::File::open(&args.source).map_err(|e| Error::io(&args.source, e))?;
    let mut dest = crate::device::FileDest::open(&args.dest, args.force, true)?;
    if args.truncate {
        dest.truncate()?;
    }
    let header = mapfile::Header::salvor(command_line);
    let mut saver = mapfile::MapfileSaver::with_header(mapfile, header);
    rescue::modes::fill(
        &mut input,
        &mut dest,
        &mut map,
        &mut saver,
        opts,
        types,
        location,
        args.ignore_write_errors,
    )?;
    if let Some(len) = size_arg("--extend-outfile", &args.extend_outfile, 512)? {
        crate::device::Dest::extend_to(&mut dest, len)?;
    }
    Ok(0)
}

/// The log files of a run.
struct Logs {
    reads: Option<ReadLog>,
    events: Option<EventLog>,
    rates: Option<RateLog>,
}

impl RescueObserver for Logs {
    fn event(&mut self, event: &crate::progress::RescueEvent) {
        if let Some(l) = &mut self.reads {
            l.event(event);
        }
        if let Some(l) = &mut self.events {
            l.event(event);
        }
        if let Some(l) = &mut self.rates {
            l.event(event);
        }
    }

    fn progress(&mut self, snapshot: &crate::progress::RescueSnapshot) {
        if let Some(l) = &mut self.events {
            l.progress(snapshot);
        }
        if let Some(l) = &mut self.rates {
            l.progress(snapshot);
        }
    }

    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        if let Some(l) = &mut self.reads {
            l.read_done(pos, size, good, failed);
        }
    }
}

/// `-q`: nothing on the terminal, like ddrescue's quiet mode.
#[derive(Default)]
struct Quiet;

impl RescueObserver for Quiet {}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> RescueArgs {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: RescueArgs,
        }
        let mut v = vec!["rescue"];
        v.extend_from_slice(line);
        <Wrap as clap::Parser>::try_parse_from(v)
            .map(|w| w.args)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn salvors_full_size_output_only_without_ddrescue_domain_or_pass_options() {
        let extend = |line: &[&str]| options(&args(line)).map(|o| o.extend_new_dest).ok();
        assert_eq!(extend(&["in", "out", "map"]), Some(true));
        assert_eq!(extend(&["-d", "-r3", "-n", "in", "out", "map"]), Some(true));
        assert_eq!(extend(&["in", "out"]), Some(false));
        let dir = tempfile::tempdir().expect("tempdir");
        let dom = dir.path().join("dom");
        std::fs::write(&dom, "0 + 1\n0 0x1000 +\n").expect("write");
        let m = format!("-m{}", dom.display());
        for opt in [
            "-s1M",
            "-i0",
            "-o0",
            &m,
            "-Htest",
            "-C",
            "--cpass=1",
            "-a1M",
        ] {
            assert_eq!(extend(&[opt, "in", "out", "map"]), Some(false), "{opt}");
        }
    }

    #[test]
    fn cpass_ranges() {
        assert_eq!(parse_cpass("0").ok(), Some(0));
        assert_eq!(parse_cpass("1").ok(), Some(0b1));
        assert_eq!(parse_cpass("1,3-5").ok(), Some(0b11101));
        assert_eq!(parse_cpass("1-2,5").ok(), Some(0b10011));
        for bad in [
            ",", "1,", "-1", "1-", "6", "1,6", "1-6", "3-2", "", "0,1", "01", "+1",
        ] {
            assert!(parse_cpass(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn skip_sizes() {
        assert_eq!(parse_skip("0", 512).ok(), Some((Some(0), None)));
        assert_eq!(parse_skip("0,64Ki", 512).ok(), Some((Some(0), Some(65536))));
        assert_eq!(parse_skip(",64KiB", 512).ok(), Some((None, Some(65536))));
        assert_eq!(
            parse_skip("65536,65536", 512).ok(),
            Some((Some(65536), Some(65536)))
        );
        for bad in ["", ",", "0,", "0,65535", "0,65536,", "1k", "128Ki,64Ki"] {
            assert!(parse_skip(bad, 512).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapfile_intervals() {
        assert_eq!(
            parse_mapfile_interval("5m").ok(),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            parse_mapfile_interval("5,5").ok(),
            Some(Some(Duration::from_secs(5)))
        );
        assert_eq!(parse_mapfile_interval(",5s").ok(), Some(None));
        assert_eq!(parse_mapfile_interval("-1").ok(), Some(None));
        for bad in [
            "-2", "30,", ",4s", "3,4s", "30,10", "30,60,", "30,60s,", "1/2",
        ] {
            assert!(parse_mapfile_interval(bad).is_err(), "{bad}");
        }
    }
}
