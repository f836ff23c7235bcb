//! The rescue algorithm: get all the readable data first, touch bad areas last.
//!
//! Phases, each working only on blocks of its status inside the rescue domain:
//!
//! 1. **Copying.** Pass 1 reads non-tried areas in large reads; after a failed read it skips ahead.
//!    The skip doubles while reads keep failing and, once good data is found again, salvor remembers
//!    how wide that bad run was and starts the next run's skip from there: on a disk with a dead
//!    head the bad stripes repeat with the same width, so after the first stripe one probe usually
//!    jumps over a whole stripe. Passes 2, 3, … alternate direction and read only non-tried areas
//!    that touch rescued data on the side they enter from, stopping at the first error in each: this
//!    delimits bad areas from the good side, so the probes that would hit the inside of a bad area
//!    are never made. Passes repeat until no such area is left. After a read error these passes
//!    read 32 KiB at a time for the next 32 MiB (1 MiB otherwise): a failed `O_DIRECT` read
//!    delivers nothing, so small reads near errors lose little per failure and the readable data
//!    comes in with about one failed read per bad spot. Where the last two errors came close
//!    together (dense damage) they read aligned 64 KiB, so a bad 64 KiB cluster costs one failed
//!    read. Small non-tried areas left between two failed reads are then read too.
//! 2. **Trimming.** Non-trimmed areas are read sector by sector from each edge that touches
//!    rescued data, until a bad sector (from the left edge, until the second failure in a row:
//!    a single bad sector is passed, and after it the rest is tried in whole requests);
//!    backwards over a long stretch, a block at a time first (each backward request is a seek).
//!    The engine learns from the areas trimmed so far: after solid bad spots the left edge ends
//!    at its first failure and hops a page (4 KiB) past it: when the read there succeeds, a
//!    bad spot of one physical sector cost a single failed read and trimming goes on beyond it
//!    (the page is left for scraping); hops that keep failing are given up (every eighth edge
//!    still hops). After lone failures (weak sectors) the edge is read in growing requests of
//!    up to a page, and a page that fails is left for scraping. The rest becomes non-scraped.
//! 3. **Sweeping.** What is still non-tried lies between failures on both sides; it is read in full
//!    (no skipping). Any good data found there is grown with the passes of 1 and trimmed again.
//! 4. **Dividing** (part of trimming). The insides of failed areas are read in chunks of 1/16
//!    cluster; an area is given up after 8 failures in a row (a solid bad area). On dense damage
//!    this finds the good chunks between bad ones with one error per bad chunk.
//! 5. **Scraping.** Non-scraped areas are read sector by sector, smallest areas (the edges of bad
//!    areas) first. An area of more than 64 sectors is probed at 16 spread sectors first; if all
//!    fail (a dead head's stripe) it is left non-scraped and the run says so
//!    (`--scrape-dead-areas` scrapes it anyway). A first skimming pass skips 1, 2, 4, … sectors
//!    after each failed one, a second reads what it skipped: every sector is read once, but the
//!    readable ones between bad runs come in first.
//! 6. **Retrying** (`-r N`) bad sectors, alternating direction. Then, where a failed read has
//!    been seen to read whole later (weak sectors), the shortest bad areas' sectors get one more
//!    read, at most one per 200 failed reads (`--no-weak-retry` leaves them).
//!
//! A failed read that delivered some good bytes (as the kernel's buffered reads do) tells exactly
//! where it failed: that sector is marked non-scraped (it has been tried once and will be tried
//! once more when scraping), the rest of the read non-trimmed. So an isolated bad sector costs one
//! error before all the data around it is rescued. Single-sector reads (trimming, scraping,
//! retries) bypass the page cache where the source allows it (`Source::read_direct_at`), so a
//! readable sector sharing a page with a bad one is not lost.
//!
//! On a disk whose partition table and filesystems the filesystem layer knows, `staged` runs these
//! phases once per stage: filesystem metadata first (parsed from the partially rescued copy as
//! it arrives), then the data the filesystems use, then free space (`--plain-order` disables it).
//!
//! The destination is fsynced before every mapfile save, so the map never claims data that is not
//! durable. A source that disappears is never marked bad: salvor saves and waits for it or stops.

pub mod engine;
pub mod job;
pub mod modes;
mod prepare;
mod reader;
pub mod staged;
pub mod through;

pub use engine::{Outcome, RescueStats};
/// Every caller (CLI, TUI) runs rescues through the stage driver: it calls the engine once
/// per stage, or once in the plain order.
pub use staged::{rescue, Order};

use std::time::Duration;

/// Options of a rescue run (ddrescue's meanings).
#[derive(Debug, Clone)]
pub struct RescueOptions {
    /// Sector size in bytes (`-b`); 0 = the source's logical sector size.
    pub sector_size: u32,
    /// Bytes per read in the copying phase (`-c` sectors × sector size); 0 = default (1 MiB).
    pub cluster_bytes: u64,
    /// Initial and maximum skip sizes (`-K`); 0 = automatic.
    pub skip_initial: u64,
    pub skip_max: u64,
    /// Retry passes (`-r`); -1 = until done.
    pub retry_passes: i32,
    pub reverse: bool,
    pub no_trim: bool,
    pub no_sweep: bool,
    pub no_scrape: bool,
    /// `-i`, `-o`, `-s`.
    pub input_pos: u64,
    pub output_pos: Option<u64>,
    pub max_size: Option<u64>,
    /// Rescue domain from `-m` (sorted byte ranges), intersected with `-i`/`-s`.
    pub domain: Option<Vec<(u64, u64)>>,
    /// `-S`: don't write all-zero blocks.
    pub sparse: bool,
    /// `-T`: give up when no read succeeded for this long.
    pub timeout: Option<Duration>,
    /// `-Z`: read no faster than this many bytes per second (spare a hot or fragile drive).
    pub max_read_rate: Option<u64>,
    /// `-X`: give up after more than this many read errors.
    pub max_read_errors: Option<u64>,
    /// How often the mapfile is saved (after syncing the destination).
    pub save_interval: Duration,
    /// How long to wait for a source that disappeared to come back; zero = stop at once (exit 1).
    pub wait_for_device: Duration,
    /// Minimum time between progress snapshots.
    pub progress_interval: Duration,
    /// Scrape areas whose probes all failed too (by default they are left non-scraped).
    pub scrape_dead_areas: bool,
    /// No extra read for the shortest bad areas where weak sectors were seen (see the engine's
    /// weak retry).
    pub no_weak_retry: bool,
    /// `-K 0`: no skipping after errors in the copying passes.
    pub no_skip: bool,
    /// `-K` given: the skip doubles after each error and returns to the initial size after good
    /// data, as in ddrescue, instead of learning the width of bad areas.
    pub fixed_skip: bool,
    /// `--cpass`: ddrescue's copying passes to run (bit 0 = pass 1, ..., bit 4 = pass 5, the
    /// sweep); None = salvor's passes.
    pub cpass: Option<u8>,
    /// `-A`: non-trimmed and non-scraped blocks in the domain become non-tried first (all failed
    /// blocks with `retrim`).
    pub try_again: bool,
    /// `-M`: failed blocks in the domain become non-trimmed first.
    pub retrim: bool,
    /// `-u`: all passes in the same direction.
    pub unidirectional: bool,
    /// `-C`: don't read beyond the mapfile's extent.
    pub complete_only: bool,
    /// `-W`: skip writes of data the destination already holds.
    pub compare_before_write: bool,
    /// `-O`: reopen the source after every read error.
    pub reopen_on_error: bool,
    /// `-J`: after every read error, reread the latest good sector and compare.
    pub verify_on_error: bool,
    /// `-y`: sync the destination after every write.
    pub synchronous: bool,
    /// `-a`: minimum read rate of good areas (0 = automatic: average / 10).
    pub min_read_rate: Option<u64>,
    /// `--delay-slow`.
    pub delay_slow: Duration,
    /// `--max-slow-reads`.
    pub max_slow_reads: Option<u64>,
    /// `--reset-slow`.
    pub reset_slow: bool,
    /// `-e [+]N`: (N, counting only new bad areas).
    pub max_bad_areas: Option<(u64, bool)>,
    /// `-E`: maximum bytes of failed reads per second.
    pub max_error_rate: Option<u64>,
    /// `--pause-on-error`: (pause, simulated).
    pub pause_on_error: Option<(Duration, bool)>,
    /// `--pause-on-pass`.
    pub pause_on_pass: Duration,
    /// Give a new (empty) destination file the domain's full size at the first write, so that
    /// what is not rescued reads as zeros and the file has the source's size (salvor's default;
    /// ddrescue's output ends at the last byte written).
    pub extend_new_dest: bool,
    /// Filesystem-aware order (the default) or the plain one (`--plain-order`); see `staged`.
    pub order: Order,
    /// `--used-only`: with the filesystem-aware order, stop before free space.
    pub used_only: bool,
}

impl Default for RescueOptions {
    fn default() -> Self {
        RescueOptions {
            sector_size: 0,
            cluster_bytes: 0,
            skip_initial: 0,
            skip_max: 0,
            retry_passes: 0,
            reverse: false,
            no_trim: false,
            no_sweep: false,
            no_scrape: false,
            input_pos: 0,
            output_pos: None,
            max_size: None,
            domain: None,
            sparse: false,
            timeout: None,
            max_read_errors: None,
            max_read_rate: None,
            save_interval: Duration::from_secs(30),
            wait_for_device: Duration::ZERO,
            progress_interval: Duration::from_millis(200),
            scrape_dead_areas: false,
            no_weak_retry: false,
            no_skip: false,
            fixed_skip: false,
            cpass: None,
            try_again: false,
            retrim: false,
            unidirectional: false,
            complete_only: false,
            compare_before_write: false,
            reopen_on_error: false,
            verify_on_error: false,
            synchronous: false,
            min_read_rate: None,
            delay_slow: Duration::from_secs(30),
            max_slow_reads: None,
            reset_slow: false,
            max_bad_areas: None,
            max_error_rate: None,
            pause_on_error: None,
            pause_on_pass: Duration::ZERO,
            extend_new_dest: true,
            order: Order::FsAware,
            used_only: false,
        }
    }
}

/// Default bytes per read while copying: large enough to stream at the device's sequential rate.
pub const DEFAULT_CLUSTER: u64 = 1 << 20;
