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
//!    are never made. Passes repeat until no such area is left.
//! 2. **Trimming.** Non-trimmed areas are read sector by sector from each edge that touches
//!    rescued data, until a bad sector; the rest becomes non-scraped.
//! 3. **Sweeping.** What is still non-tried lies between failures on both sides; it is read in full
//!    (no skipping). Any good data found there is grown with the passes of 1 and trimmed again.
//! 4. **Dividing** (part of trimming). The insides of failed areas are read in chunks of 1/16
//!    cluster; an area is given up after 8 failures in a row (a solid bad area). On dense damage
//!    this finds the good chunks between bad ones with one error per bad chunk.
//! 5. **Scraping.** Non-scraped areas are read sector by sector, smallest areas (the edges of bad
//!    areas) first.
//! 6. **Retrying** (`-r N`) bad sectors, alternating direction.
//!
//! A failed read that delivered some good bytes (as the kernel's buffered reads do) tells exactly
//! where it failed: that sector is marked non-scraped (it has been tried once and will be tried
//! once more when scraping), the rest of the read non-trimmed. So an isolated bad sector costs one
//! error before all the data around it is rescued.
//!
//! The destination is fsynced before every mapfile save, so the map never claims data that is not
//! durable. A source that disappears is never marked bad: salvor saves and waits for it or stops.

pub mod engine;
pub mod job;
mod reader;

pub use engine::{rescue, Outcome, RescueStats};

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
        }
    }
}

/// Default bytes per read while copying: large enough to stream at the device's sequential rate.
pub const DEFAULT_CLUSTER: u64 = 1 << 20;
