//! The damaged-files count while a rescue runs: every so often the worker runs the same report
//! as the result screen ([`crate::fs::files::report`]) on the copy through the mapfile last
//! saved, so the job screen shows the count of damaged files falling as the rescue goes on.
//!
//! Only what the saved mapfile claims is counted as rescued, and the mapfile is saved only after
//! the data it claims is durable, so the count is never too low. The report reads the copy,
//! never the source, and one runs at a time.

use super::app::{App, JobRequest};
use super::worker::Task;
use crate::fs::files::FilesReport;
use std::path::Path;
use std::time::Duration;

/// Engine time between two counts (the report reads the copy's metadata: cheap, not free).
pub const LIVE_FILES_EVERY: Duration = Duration::from_secs(30);

/// The last count, in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCount {
    pub damaged_files: u64,
    pub lost_bytes: u64,
    /// Directories whose entries are unknown, and in-use inodes no directory reached.
    pub damaged_dirs: u64,
    pub lost_names: u64,
    /// Filesystems the report could read.
    pub filesystems: usize,
    /// The engine's elapsed time when it was asked for.
    pub at: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFiles {
    /// Engine time of the last request; `None` before the first.
    asked_at: Option<Duration>,
    pending: bool,
    pub count: Option<LiveCount>,
    pub error: Option<String>,
}

impl LiveFiles {
    pub fn is_pending(&self) -> bool {
        self.pending
    }
}

fn count_of(r: &FilesReport, at: Duration) -> LiveCount {
    let mut c = LiveCount {
        at,
        ..Default::default()
    };
    for fs in &r.filesystems {
        c.damaged_files += fs.damaged_files.len() as u64;
        c.lost_bytes += fs.damaged_files.iter().map(|f| f.lost_bytes).sum::<u64>();
        c.damaged_dirs += fs.damaged_dirs.len() as u64;
        c.lost_names += fs.lost_names;
        c.filesystems += usize::from(fs.error.is_none());
    }
    c
}

impl App {
    /// Asks for a new count when one is due: a rescue running, its mapfile saved at least once,
    /// no count in flight, [`LIVE_FILES_EVERY`] of engine time since the last.
    pub(super) fn ask_live_files(&mut self) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let JobRequest::Rescue(r) = &job.request else {
            return;
        };
        let Some(now) = job.snapshot.as_ref().map(|s| s.elapsed) else {
            return;
        };
        let live = &job.live_files;
        let due = live
            .asked_at
            .is_none_or(|t| now.saturating_sub(t) >= LIVE_FILES_EVERY);
        if !job.state.is_active() || job.saves == 0 || live.pending || !due {
            return;
        }
        let task = Task::LiveFiles {
            copy: r.dest.clone(),
            mapfile: r.mapfile.clone(),
        };
        job.live_files.asked_at = Some(now);
        job.live_files.pending = true;
        self.tasks.push(task);
    }

    pub(super) fn on_live_files(&mut self, copy: &Path, r: Result<FilesReport, String>) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let JobRequest::Rescue(req) = &job.request else {
            return;
        };
        // An answer about an earlier job's copy is dropped.
        if req.dest != copy {
            return;
        }
        let live = &mut job.live_files;
        live.pending = false;
        match r {
            Ok(rep) => {
                live.count = Some(count_of(&rep, live.asked_at.unwrap_or_default()));
                live.error = None;
            }
            Err(e) => live.error = Some(e),
        }
    }
}
