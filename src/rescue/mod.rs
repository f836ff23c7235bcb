//! The rescue algorithm: ddrescue-style copying, trimming, sweeping, scraping and retrying, driven by
//! the mapfile. STUB.

use std::time::Duration;

/// Options of a rescue run (ddrescue's meanings).
#[derive(Debug, Clone)]
pub struct RescueOptions {
    /// Sector size in bytes (`-b`); 0 = the source's logical sector size.
    pub sector_size: u32,
    /// Bytes per read in the copying phase (`-c` sectors × sector size); 0 = default.
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
    /// Rescue domain from `-m` (byte ranges), intersected with `-i`/`-s`.
    pub domain: Option<Vec<(u64, u64)>>,
    /// `-S`: don't write all-zero blocks.
    pub sparse: bool,
    /// `-T`: give up when no read succeeded for this long.
    pub timeout: Option<Duration>,
    /// How often the mapfile is saved (after syncing the destination).
    pub save_interval: Duration,
    /// How long to wait for a source that disappeared to come back; zero = exit at once.
    pub wait_for_device: Duration,
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
            save_interval: Duration::from_secs(30),
            wait_for_device: Duration::ZERO,
        }
    }
}
