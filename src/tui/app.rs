//! The TUI's model: which screen is shown, what the user chose so far, and the running job.
//!
//! Keys mutate the model through [`App::on_key`], which returns an [`Action`] for the outside
//! world (start a rescue, pause it, quit); drawing only reads it. Nothing here touches a terminal
//! or a disk, so every flow can be driven by tests.

use super::disks::DiskRow;
pub use super::imaging::{ImageProgress, ImageRequest, ImageView, ImgChoices, TargetCheck};
pub use super::places::{Entry, PickMode, Picker};
use super::sysinfo::SystemInfo;
use super::worker::WorkerMsg;
use crate::mapfile::Block;
use crate::progress::{RescueEvent, RescueSnapshot};
use crate::rescue::Outcome;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the main loop looks at sysfs for disks plugged in or removed: cheap (a few small
/// sysfs reads), and a second is quicker than anyone can plug a disk and look at the screen.
pub const HOTPLUG_POLL: Duration = Duration::from_secs(1);

/// The filesystem and device facts the flows need, behind a trait so tests use fixtures.
pub trait Host {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String>;
    fn exists(&self, p: &Path) -> bool;
    fn is_dir(&self, p: &Path) -> bool;
    fn is_block_device(&self, p: &Path) -> bool;
    /// The path with symlinks resolved, for matching against mount points.
    fn canonicalize(&self, p: &Path) -> PathBuf;
    fn current_dir(&self) -> PathBuf;
    fn system_info(&self) -> SystemInfo;
    /// What an image file holds (reads its metadata, or the start of a raw image).
    fn image_info(&self, p: &Path) -> Result<ImageView, String>;
    /// Bytes free for an unprivileged writer on the filesystem holding the folder `dir`.
    fn free_space(&self, dir: &Path) -> Option<u64>;
    /// The image engine's own target policy ([`crate::image::check_target`]): the authority on
    /// whether a restore or clone may write `check.target`.
    fn check_target(&self, check: &TargetCheck) -> Result<(), String>;
    /// A cheap fingerprint of the attached block devices (names and sizes from sysfs only),
    /// polled to notice disks plugged in or removed.
    fn block_listing(&self) -> Vec<(String, u64)>;
    /// The filesystem type found by its magic in the first 68 KiB of `dev`. Never asked about a
    /// disk under rescue.
    fn probe_fs(&self, dev: &Path) -> Option<String>;
    /// Mounts `dev` (holding `fstype`) at `dir`; returns the driver used.
    fn mount(
        &self,
        dev: &Path,
        dir: &Path,
        fstype: &str,
        read_only: bool,
    ) -> Result<String, String>;
    /// Unmounts `dir`, which salvor mounted.
    fn unmount(&self, dir: &Path) -> Result<(), String>;
    /// Flushes written data to the disks.
    fn sync(&self);
    /// The folders and files in `dir` (symlinks followed).
    fn read_dir(&self, dir: &Path) -> Result<Vec<Entry>, String>;
    /// The filesystem holding `dir` is mounted read-only.
    fn is_read_only_fs(&self, dir: &Path) -> bool;
    /// `p` (or the folder it would be created in) is kept in memory and erased at a power cut.
    fn is_volatile(&self, p: &Path) -> bool;
    /// What the mapfile at `mapfile` holds, and whether it belongs to `source`.
    fn inspect_mapfile(&self, mapfile: &Path, source: &Path) -> MapfileView;
    /// The safety policy's verdict on a rescue writing `dest` and `mapfile` from `source`
    /// ([`crate::rescue::job::plan`]), before the user confirms.
    fn check_rescue_paths(&self, source: &Path, dest: &Path, mapfile: &Path) -> Result<(), String>;
    /// Attaches the image file `p` to a read-only loop device with its partitions; returns it.
    fn attach_image(&self, p: &Path) -> Result<PathBuf, String>;
    /// Detaches a loop device [`Host::attach_image`] attached.
    fn detach_image(&self, dev: &Path) -> Result<(), String>;
    /// The safety policy's verdict on copying files into the folder `dest` while `reads` (the
    /// source disk, the rescued copy, its loop device and mount) are read.
    fn check_copy_dest(&self, dest: &Path, reads: &[PathBuf]) -> Result<(), String>;
}

/// An existing mapfile, as the mapfile screen shows it before a rescue resumes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MapfileView {
    /// None there yet: a new rescue starts.
    #[default]
    New,
    Existing {
        summary: crate::rescue::job::MapfileSummary,
        /// Why it is not this source's, if it is not.
        mismatch: Option<String>,
    },
    Unreadable(String),
}

/// The real machine.
pub struct RealHost;

impl Host for RealHost {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String> {
        super::disks::scan()
    }
    fn is_volatile(&self, p: &Path) -> bool {
        crate::safety::is_volatile(p)
    }
    fn inspect_mapfile(&self, mapfile: &Path, source: &Path) -> MapfileView {
        use crate::rescue::job;
        match job::summarize_mapfile(mapfile) {
            Ok(None) => MapfileView::New,
            Err(e) => MapfileView::Unreadable(e.to_string()),
            Ok(Some(summary)) => {
                let mismatch = crate::device::FileSource::open(source, Default::default())
                    .ok()
                    .and_then(|s| {
                        job::mapfile_mismatch(&summary, &job::describe_identity(s.identity()))
                    });
                MapfileView::Existing { summary, mismatch }
            }
        }
    }
    fn check_rescue_paths(&self, source: &Path, dest: &Path, mapfile: &Path) -> Result<(), String> {
        let spec = crate::rescue::job::JobSpec {
            force_device: true,
            ..crate::rescue::job::JobSpec::new(
                source.to_path_buf(),
                dest.to_path_buf(),
                Some(mapfile.to_path_buf()),
            )
        };
        crate::rescue::job::plan(&spec, 0)
            .check()
            .map_err(|e| e.to_string())
    }
    fn attach_image(&self, p: &Path) -> Result<PathBuf, String> {
        crate::mount::attach_loop(p).map_err(|e| e.to_string())
    }
    fn detach_image(&self, dev: &Path) -> Result<(), String> {
        crate::mount::detach_loop(dev).map_err(|e| e.to_string())
    }
    fn check_copy_dest(&self, dest: &Path, reads: &[PathBuf]) -> Result<(), String> {
        if !dest.is_dir() {
            return Err(format!("{} is not a folder", dest.display()));
        }
        // The policy judges files written: a new file in the folder stands for every copied
        // one (all of them land on the folder's filesystem).
        let probe = dest.join(".salvor-copy");
        let plan = reads
            .iter()
            .fold(crate::safety::Plan::new(), |p, r| p.read(r.clone()))
            .write(crate::safety::Role::Destination, probe);
        plan.check().map_err(|e| e.to_string())
    }
    fn exists(&self, p: &Path) -> bool {
        p.exists()
    }
    fn is_dir(&self, p: &Path) -> bool {
        p.is_dir()
    }
    fn is_block_device(&self, p: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
    }
    fn canonicalize(&self, p: &Path) -> PathBuf {
        std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
    }
    fn current_dir(&self) -> PathBuf {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    }
    fn system_info(&self) -> SystemInfo {
        SystemInfo::read()
    }
    fn image_info(&self, p: &Path) -> Result<ImageView, String> {
        crate::image::info(p)
            .map(|i| ImageView::from_info(&i))
            .map_err(|e| e.to_string())
    }
    fn free_space(&self, dir: &Path) -> Option<u64> {
        let s = nix::sys::statvfs::statvfs(dir).ok()?;
        // Type aliases of u64 on Linux; `as` keeps this portable to 32-bit libcs.
        Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
    }
    fn check_target(&self, check: &TargetCheck) -> Result<(), String> {
        let inputs = crate::image::target::canonical_all(&check.inputs);
        crate::image::check_target(&crate::image::TargetRequest {
            target: &check.target,
            needed: check.needed,
            inputs: &inputs,
            logical_sector: check.logical_sector.unwrap_or(512),
            has_partition_table: check.logical_sector.is_some(),
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
    fn block_listing(&self) -> Vec<(String, u64)> {
        crate::blockdev::block_listing()
    }
    fn probe_fs(&self, dev: &Path) -> Option<String> {
        crate::blockdev::probe_fs_type(dev).map(str::to_string)
    }
    fn mount(
        &self,
        dev: &Path,
        dir: &Path,
        fstype: &str,
        read_only: bool,
    ) -> Result<String, String> {
        crate::mount::mount(dev, dir, fstype, read_only)
            .map(|d| d.name().to_string())
            .map_err(|e| e.to_string())
    }
    fn unmount(&self, dir: &Path) -> Result<(), String> {
        // salvor created the folder under /mnt when it mounted: an empty one goes too.
        crate::mount::unmount(dir, true).map_err(|e| e.to_string())
    }
    fn sync(&self) {
        crate::mount::sync_all();
    }
    fn read_dir(&self, dir: &Path) -> Result<Vec<Entry>, String> {
        let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
        let mut v = Vec::new();
        for e in rd.flatten() {
            // Followed: a link to a folder browses like a folder. Broken links are left out.
            let Ok(m) = std::fs::metadata(e.path()) else {
                continue;
            };
            v.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: m.is_dir(),
                size: m.len(),
            });
        }
        Ok(v)
    }
    fn is_read_only_fs(&self, dir: &Path) -> bool {
        use nix::sys::statvfs::{statvfs, FsFlags};
        statvfs(dir).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
    }
}

/// What the outside world must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Quit,
    StartRescue(RescueRequest),
    /// Image, restore, clone or verify.
    StartImage(ImageRequest),
    Pause,
    Resume,
    Abort,
    /// Stop the running task (a copy).
    CancelTask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    File,
    Disk,
}

/// The rescue options offered, with safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choices {
    /// Extra passes over bad sectors at the end; -1 = until all are read.
    pub retry_passes: i32,
    pub direct: bool,
    pub reverse: bool,
    pub scrape: bool,
    /// Leave out the space no file uses (the filesystem-aware order's last stage).
    pub skip_free: bool,
}

impl Default for Choices {
    fn default() -> Self {
        Choices {
            retry_passes: 0,
            direct: false,
            reverse: false,
            scrape: true,
            skip_free: false,
        }
    }
}

/// Everything the worker needs to start a rescue, as confirmed by the user.
#[derive(Debug, Clone, PartialEq)]
pub struct RescueRequest {
    pub source: PathBuf,
    pub source_identity: String,
    pub dest: PathBuf,
    pub target_kind: TargetKind,
    pub target_identity: String,
    pub mapfile: PathBuf,
    /// An earlier run's mapfile is continued.
    pub resume: bool,
    pub choices: Choices,
}

/// Which flow the user is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Feature {
    #[default]
    Rescue,
    Image,
    Restore,
    Clone,
    Verify,
}

impl Feature {
    pub fn title(self) -> &'static str {
        match self {
            Feature::Rescue => "Rescue a failing disk",
            Feature::Image => "Image a disk",
            Feature::Restore => "Restore an image",
            Feature::Clone => "Clone a disk",
            Feature::Verify => "Verify an image",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Menu,
    Disks,
    Source,
    Dest,
    ImagePath,
    Mapfile,
    MapfilePath,
    Options,
    Confirm,
    Job,
    SystemInfo,
    /// The image flows (which one is `flow.feature`): a path typed in, an image's contents, the
    /// target disk, options, confirmation.
    ImgPath,
    ImgInfo,
    ImgTarget,
    ImgOptions,
    ImgConfirm,
    /// Choosing a filesystem for the image path (mounting one if needed), then a folder and file.
    Places,
    Browse,
    /// After a rescue: outcome, damaged files, next steps; the mapfile path typed from the menu.
    Result,
    ResultOpen,
    /// "Copy my files": which partition of the copy, then what and where (and the progress).
    CopyPart,
    CopyConfirm,
    /// "Browse an image": the image file's path.
    BrowsePath,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuItem {
    Rescue,
    Disks,
    Flow(Feature),
    /// The result screen of an earlier rescue (its mapfile and copy).
    Result,
    /// Copy files out of an image file's partition.
    BrowseImage,
    SystemInfo,
    Quit,
}

pub const MENU: [MenuItem; 10] = [
    MenuItem::Rescue,
    MenuItem::Disks,
    MenuItem::Flow(Feature::Image),
    MenuItem::Flow(Feature::Restore),
    MenuItem::Flow(Feature::Clone),
    MenuItem::Flow(Feature::Verify),
    // System info stays 7th: the boot tests reach it with six downs.
    MenuItem::SystemInfo,
    MenuItem::BrowseImage,
    MenuItem::Result,
    MenuItem::Quit,
];

/// Where rescued data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Image(PathBuf),
    Disk(DiskRow),
}

impl Target {
    pub fn path(&self) -> &Path {
        match self {
            Target::Image(p) => p,
            Target::Disk(d) => &d.path,
        }
    }
}

/// The choices of the rescue flow so far.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    pub source: Option<DiskRow>,
    pub target: Option<Target>,
    /// The image file exists already (its rescued parts get overwritten).
    pub image_exists: bool,
    pub mapfile: PathBuf,
    pub mapfile_exists: bool,
    pub mapfile_view: MapfileView,
    /// The mapfile would be on a filesystem in memory (lost at a power cut).
    pub mapfile_volatile: bool,
    pub choices: Choices,
    pub opt_cursor: usize,
    pub dest_cursor: usize,
    /// The text being typed on ImagePath, MapfilePath, ImgPath and the confirmations.
    pub input: String,
    pub feature: Feature,
    pub img: ImgChoices,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Starting,
    Running,
    Paused,
    Stopping,
    /// `complete`: nothing is left to try (bad sectors may remain).
    Finished {
        complete: bool,
    },
    Stopped,
    Failed(String),
}

impl JobState {
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            JobState::Starting | JobState::Running | JobState::Paused | JobState::Stopping
        )
    }
}

/// What a job was started with.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRequest {
    Rescue(RescueRequest),
    Image(ImageRequest),
}

impl JobRequest {
    /// What is read, in words.
    pub fn from_line(&self) -> String {
        match self {
            JobRequest::Rescue(r) => r.source_identity.clone(),
            JobRequest::Image(r) => r.input_identity.clone(),
        }
    }

    /// What is written, in words.
    pub fn to_line(&self) -> String {
        match self {
            JobRequest::Rescue(r) => r.target_identity.clone(),
            JobRequest::Image(r) => r.output_identity.clone(),
        }
    }

    pub fn feature(&self) -> Feature {
        match self {
            JobRequest::Rescue(_) => Feature::Rescue,
            JobRequest::Image(r) => r.feature,
        }
    }
}

/// A job started from the TUI and what it reported so far.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: JobRequest,
    pub state: JobState,
    pub snapshot: Option<RescueSnapshot>,
    pub image: ImageProgress,
    pub blocks: Vec<Block>,
    pub log: Vec<String>,
    pub confirm_abort: bool,
    pub saves: u64,
    /// The pauses so far, in the engine's elapsed time (start, end; end `None` while paused):
    /// the engine's clock runs on while paused, the shown times must not.
    pauses: Vec<(Duration, Option<Duration>)>,
    /// The damaged-files count while a rescue runs.
    pub live_files: super::livefiles::LiveFiles,
}

/// Oldest log lines are dropped beyond this; a disk with thousands of bad sectors must not eat RAM.
const LOG_MAX: usize = 500;

impl Job {
    pub fn new(request: JobRequest) -> Job {
        Job {
            request,
            state: JobState::Starting,
            snapshot: None,
            image: ImageProgress::default(),
            blocks: Vec::new(),
            log: Vec::new(),
            confirm_abort: false,
            saves: 0,
            pauses: Vec::new(),
            live_files: Default::default(),
        }
    }

    /// Marks the start or end of a pause at the engine's last reported time.
    pub(super) fn mark_pause(&mut self, paused: bool) {
        let now = self.engine_elapsed();
        match self.pauses.last_mut() {
            Some((_, end @ None)) if !paused => *end = Some(now),
            Some((_, None)) => {}
            _ if paused => self.pauses.push((now, None)),
            _ => {}
        }
    }

    /// The engine's snapshot as the job view shows it: the time spent paused taken out of the
    /// elapsed time and "last good read" (a paused rescue is not failing to read), the average
    /// rate over the time spent reading, and while paused the times frozen at the pause.
    pub fn shown_snapshot(&self) -> Option<RescueSnapshot> {
        let mut s = self.snapshot.clone()?;
        let engine_now = s.elapsed;
        let last_good = engine_now.saturating_sub(s.since_last_good_read);
        let mut paused_total = Duration::ZERO;
        let mut paused_since_good = Duration::ZERO;
        for &(start, end) in &self.pauses {
            let end = end.unwrap_or(engine_now).min(engine_now);
            let len = end.saturating_sub(start);
            paused_total += len;
            paused_since_good += end.saturating_sub(start.max(last_good));
        }
        s.elapsed = engine_now.saturating_sub(paused_total);
        s.since_last_good_read = s.since_last_good_read.saturating_sub(paused_since_good);
        let running = s.elapsed.as_secs_f64();
        if running > 0.0 {
            s.average_rate *= engine_now.as_secs_f64() / running;
        }
        Some(s)
    }

    /// The engine's elapsed time in its last snapshot (rescue or image job).
    fn engine_elapsed(&self) -> Duration {
        match &self.request {
            JobRequest::Rescue(_) => self.snapshot.as_ref().map(|s| s.elapsed),
            JobRequest::Image(_) => self.image.snapshot.as_ref().map(|s| s.elapsed),
        }
        .unwrap_or(Duration::ZERO)
    }

    /// `elapsed` (the engine's) without the time spent paused up to then.
    pub fn running_time(&self, elapsed: Duration) -> Duration {
        let paused: Duration = self
            .pauses
            .iter()
            .map(|&(start, end)| end.unwrap_or(elapsed).min(elapsed).saturating_sub(start))
            .sum();
        elapsed.saturating_sub(paused)
    }

    /// The job is paused (the view says so instead of a rate).
    pub fn is_paused(&self) -> bool {
        self.state == JobState::Paused
    }

    pub fn size(&self) -> u64 {
        self.blocks.last().map_or(0, Block::end)
    }

    pub(super) fn push_log(&mut self, line: String) {
        let elapsed = match &self.request {
            JobRequest::Rescue(_) => self.snapshot.as_ref().map(|s| s.elapsed),
            JobRequest::Image(_) => self.image.snapshot.as_ref().map(|s| s.elapsed),
        };
        let stamp = elapsed
            .map(crate::units::format_duration)
            .unwrap_or_else(|| "0s".into());
        self.log.push(format!("[{stamp:>10}] {line}"));
        if self.log.len() > LOG_MAX {
            let excess = self.log.len() - LOG_MAX;
            self.log.drain(..excess);
        }
    }

    pub fn on_worker(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Snapshot(s) => {
                if self.state == JobState::Starting {
                    self.state = JobState::Running;
                }
                self.snapshot = Some(s);
            }
            WorkerMsg::Map(b) => self.blocks = b,
            WorkerMsg::Event(e) => self.on_event(&e),
            WorkerMsg::Done(Ok(Outcome::Finished)) => {
                if !matches!(self.state, JobState::Finished { .. }) {
                    self.state = JobState::Finished { complete: false };
                }
            }
            WorkerMsg::Done(Ok(Outcome::Stopped(_))) => {
                self.state = JobState::Stopped;
                self.push_log(
                    "Stopped; the mapfile is saved. Start the same rescue to resume.".into(),
                );
            }
            WorkerMsg::Done(Err(e)) => {
                self.push_log(format!("Error: {e}"));
                self.state = JobState::Failed(e);
            }
            WorkerMsg::ImageSnapshot(s) => {
                if self.state == JobState::Starting {
                    self.state = JobState::Running;
                }
                self.image.snapshot = Some(s);
            }
            WorkerMsg::ImageEvent(e) => self.on_image_event(e),
            WorkerMsg::ImageDone(r) => self.on_image_done(r),
            // Task messages are the app's, not the job's.
            WorkerMsg::Files(..)
            | WorkerMsg::LiveFiles(..)
            | WorkerMsg::CopyProgress(_)
            | WorkerMsg::CopyDone(_)
            | WorkerMsg::PartFacts(_)
            | WorkerMsg::ImageMounted(_)
            | WorkerMsg::ImageReleased(_) => {}
        }
        self.confirm_abort &= self.state.is_active();
    }

    fn on_event(&mut self, e: &RescueEvent) {
        match e {
            RescueEvent::PassStarted {
                phase,
                pass,
                direction,
            } => {
                let dir = match direction {
                    crate::progress::Direction::Forwards => "forwards",
                    crate::progress::Direction::Backwards => "backwards",
                };
                self.push_log(format!("{}, pass {pass} ({dir})", phase.describe()));
            }
            RescueEvent::ReadError { pos, size, message } => {
                self.push_log(format!(
                    "Read error at 0x{pos:X} ({}): {message}",
                    crate::units::format_bytes(*size)
                ));
            }
            RescueEvent::DeviceGone { message } => {
                self.push_log(format!("SOURCE GONE: {message}"));
            }
            RescueEvent::DeviceBack => self.push_log("The source is back; continuing".into()),
            RescueEvent::MapfileSaved => self.saves += 1,
            RescueEvent::Message { message } => self.push_log(message.clone()),
            RescueEvent::Finished { complete } => {
                self.state = JobState::Finished {
                    complete: *complete,
                };
                // `complete` means nothing is left to try; bad sectors may remain.
                self.push_log(if *complete {
                    "Finished: every phase ran".into()
                } else {
                    "Finished: some areas were left untried (options)".into()
                });
            }
        }
    }
}

/// A one-line message under the screen: a refusal, an error or a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub is_error: bool,
}

pub struct App {
    pub screen: Screen,
    pub disks: Vec<DiskRow>,
    pub disks_error: Option<String>,
    pub menu_cursor: usize,
    pub disk_cursor: usize,
    pub flow: Flow,
    pub job: Option<Job>,
    pub help: bool,
    pub status: Option<Status>,
    pub sysinfo: Option<SystemInfo>,
    pub host: Box<dyn Host>,
    /// The block devices as last seen by the hot-plug poll, and when it last looked.
    listing: Vec<(String, u64)>,
    last_poll: Option<Instant>,
    pub picker: Picker,
    /// Mount points salvor mounted: offered for unmounting, and unmounted when the UI quits.
    pub our_mounts: Vec<PathBuf>,
    /// Filesystem types probed, by device and size: a probe reads the disk.
    pub(super) fs_cache: std::collections::HashMap<(PathBuf, u64), Option<String>>,
    /// The result screen's rescue, once one ended or was opened from the menu.
    pub result: Option<super::result::RescueResult>,
    /// Tasks asked for and not yet handed to the runner.
    pub(super) tasks: Vec<super::worker::Task>,
    /// Filesystem, label and GPT name of each partition, as the probes found them.
    pub(super) part_facts: std::collections::HashMap<PathBuf, super::partinfo::Facts>,
    /// "Copy my files" and "Browse an image": what is mounted, marked and where it goes.
    pub copy: super::result::CopyFlow,
    /// On the result's path screen: the mapfile given, the copy's path being typed.
    pub result_open_map: Option<PathBuf>,
}

impl App {
    pub fn new(host: Box<dyn Host>) -> App {
        let mut app = App {
            screen: Screen::Menu,
            disks: Vec::new(),
            disks_error: None,
            menu_cursor: 0,
            disk_cursor: 0,
            flow: Flow::default(),
            job: None,
            help: false,
            status: None,
            sysinfo: None,
            listing: Vec::new(),
            host,
            last_poll: None,
            picker: Picker::default(),
            our_mounts: Vec::new(),
            fs_cache: Default::default(),
            result: None,
            tasks: Vec::new(),
            part_facts: Default::default(),
            copy: Default::default(),
            result_open_map: None,
        };
        app.listing = app.host.block_listing();
        app.refresh_disks();
        app
    }

    /// Called by the main loop between frames: every [`HOTPLUG_POLL`], rescans the disks if the
    /// set of block devices changed; returns whether it did.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self
            .last_poll
            .is_some_and(|t| now.saturating_duration_since(t) < HOTPLUG_POLL)
        {
            return false;
        }
        self.last_poll = Some(now);
        self.expire_part_facts(now);
        let changed = self.check_hotplug();
        if changed && self.screen == Screen::Disks {
            self.request_part_facts(now);
        }
        changed
    }

    /// Rescans the disks if a block device appeared, vanished or changed size since the last
    /// look; returns whether it did. Highlighted disks stay highlighted if they are still there.
    pub fn check_hotplug(&mut self) -> bool {
        let listing = self.host.block_listing();
        if listing == self.listing {
            return false;
        }
        self.listing = listing;
        let before: Vec<String> = self.disks.iter().map(DiskRow::name).collect();
        self.rescan_keeping_selection();
        let added: Vec<String> = self
            .disks
            .iter()
            .map(DiskRow::name)
            .filter(|n| !before.contains(n))
            .collect();
        let removed: Vec<&String> = before
            .iter()
            .filter(|n| !self.disks.iter().any(|d| &d.name() == *n))
            .collect();
        // A refusal or error on the status line matters more than this news.
        if self.status.is_none() && (!added.is_empty() || !removed.is_empty()) {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("new: {}", added.join(", ")));
            }
            if !removed.is_empty() {
                let r: Vec<&str> = removed.iter().map(|s| s.as_str()).collect();
                parts.push(format!("gone: {}", r.join(", ")));
            }
            self.info(format!("Disks changed ({})", parts.join("; ")));
        }
        true
    }

    /// Re-reads the disks and moves each list's cursor to the disk it was on, found by identity
    /// (model and serial, or node and backing file when there is no serial).
    fn rescan_keeping_selection(&mut self) {
        let key_at = |disks: &[DiskRow], i: usize| disks.get(i).map(disk_key);
        let on_disk = key_at(&self.disks, self.disk_cursor);
        let on_dest = self
            .flow
            .dest_cursor
            .checked_sub(1)
            .and_then(|i| key_at(&self.disks, i));
        let on_target = key_at(&self.disks, self.flow.img.target_cursor);
        if self.screen == Screen::ImgTarget {
            // The notes say why each disk cannot be the target: they follow the list.
            self.note_targets();
        } else {
            self.refresh_disks();
        }
        if self.screen == Screen::Places {
            self.build_places();
        }
        let n = self.disks.len();
        let find =
            |k: Option<String>| k.and_then(|k| self.disks.iter().position(|d| disk_key(d) == k));
        if let Some(i) = find(on_disk) {
            self.disk_cursor = i;
        }
        match find(on_dest) {
            Some(i) => self.flow.dest_cursor = i + 1,
            None => self.flow.dest_cursor = self.flow.dest_cursor.min(n),
        }
        match find(on_target) {
            Some(i) => self.flow.img.target_cursor = i,
            None => {
                self.flow.img.target_cursor = self.flow.img.target_cursor.min(n.saturating_sub(1))
            }
        }
    }

    pub fn refresh_disks(&mut self) {
        match self.host.list_disks() {
            Ok(d) => {
                self.disks = d;
                self.disks_error = None;
            }
            Err(e) => {
                self.disks = Vec::new();
                self.disks_error = Some(e);
            }
        }
        self.disk_cursor = self.disk_cursor.min(self.disks.len().saturating_sub(1));
    }

    pub(super) fn refuse(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            is_error: true,
        });
    }

    pub(super) fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            is_error: false,
        });
    }

    pub fn job_active(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.state.is_active())
    }

    /// Why `disk` cannot be the rescue's target, or `None` if it can: a short form for the table
    /// and a sentence for the status line.
    ///
    /// For restore and clone the image engine's own policy is asked last (it may open the device),
    /// so screens draw the reasons stored by [`App::note_targets`] instead of calling this.
    pub fn target_refusal(&self, disk: &DiskRow) -> Option<(&'static str, String)> {
        let fl = &self.flow;
        if let Some(src) = &fl.source {
            if src.path == disk.path {
                return Some(("the source", "it is the source".into()));
            }
        }
        if let (Feature::Restore, Some(img)) = (fl.feature, &fl.img.path) {
            let on_it = self.disk_holding(img).is_some_and(|h| h.path == disk.path);
            if on_it || disk.backing_file.as_deref() == Some(img.as_path()) {
                return Some((
                    "holds image",
                    format!("it holds the image {}", img.display()),
                ));
            }
        }
        if disk.is_boot {
            return Some(("boot disk", "salvor is running from it".into()));
        }
        if let Some(m) = disk.first_mount() {
            return Some(("mounted", format!("it is mounted at {}", m.display())));
        }
        if disk.read_only {
            return Some(("read-only", "it is read-only".into()));
        }
        let needed = self.needed_size();
        if disk.size < needed {
            return Some((
                "too small",
                format!(
                    "it is too small ({} < {})",
                    crate::units::format_bytes(disk.size),
                    crate::units::format_bytes(needed)
                ),
            ));
        }
        if matches!(fl.feature, Feature::Restore | Feature::Clone) {
            if let Err(why) = self.host.check_target(&self.target_check(disk)) {
                return Some(("refused", why));
            }
        }
        None
    }

    /// Bytes the target must hold: the source disk, or the restored image's disk.
    pub fn needed_size(&self) -> u64 {
        match (self.flow.feature, &self.flow.img.info) {
            (Feature::Restore, Some(i)) => i.size,
            _ => self.flow.source.as_ref().map_or(0, |s| s.size),
        }
    }

    /// The disk whose mounted filesystem holds `path` (longest mount-point prefix wins).
    pub fn disk_holding(&self, path: &Path) -> Option<&DiskRow> {
        let path = self.host.canonicalize(path);
        let mut best: Option<(&DiskRow, usize)> = None;
        for d in &self.disks {
            let points = d
                .mountpoints
                .iter()
                .chain(d.partitions.iter().flat_map(|p| p.mountpoints.iter()));
            for m in points {
                let len = m.as_os_str().len();
                if path.starts_with(m) && best.is_none_or(|(_, l)| len > l) {
                    best = Some((d, len));
                }
            }
        }
        best.map(|(d, _)| d)
    }

    /// Handles one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind != KeyEventKind::Press {
            return Action::None;
        }
        self.status = None;
        if self.help {
            self.help = false;
            return Action::None;
        }
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        let typing = matches!(
            self.screen,
            Screen::ImagePath
                | Screen::MapfilePath
                | Screen::ImgPath
                | Screen::ResultOpen
                | Screen::BrowsePath
        ) || (self.screen == Screen::Confirm
            && matches!(self.flow.target, Some(Target::Disk(_))))
            || self.img_typing()
            || (self.screen == Screen::Browse && self.picker.naming);
        if !typing && key.code == KeyCode::Char('?') {
            self.help = true;
            return Action::None;
        }
        if ctrl_c || (!typing && key.code == KeyCode::Char('q') && self.screen != Screen::Job) {
            return self.quit();
        }
        match self.screen {
            Screen::Menu => self.key_menu(key.code),
            Screen::Disks => {
                self.key_disk_list(key.code, true);
                Action::None
            }
            Screen::Source => self.key_source(key.code),
            Screen::ImgPath => self.key_img_path(key.code),
            Screen::ImgInfo => self.key_img_info(key.code),
            Screen::ImgTarget => self.key_img_target(key.code),
            Screen::ImgOptions => self.key_img_options(key.code),
            Screen::ImgConfirm => self.key_img_confirm(key.code),
            Screen::Dest => self.key_dest(key.code),
            Screen::ImagePath => self.key_image_path(key.code),
            Screen::Mapfile => self.key_mapfile(key.code),
            Screen::MapfilePath => self.key_mapfile_path(key.code),
            Screen::Options => self.key_options(key.code),
            Screen::Confirm => self.key_confirm(key.code),
            Screen::Places => self.key_places(key.code),
            Screen::Browse => self.key_browse(key.code),
            Screen::Job => self.key_job(key.code),
            Screen::Result => self.key_result(key.code),
            Screen::ResultOpen => self.key_result_open(key.code),
            Screen::CopyPart => self.key_copy_part(key.code),
            Screen::CopyConfirm => self.key_copy_confirm(key.code),
            Screen::BrowsePath => self.key_browse_path(key.code),
            Screen::SystemInfo => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace) {
                    self.screen = Screen::Menu;
                }
                Action::None
            }
        }
    }

    fn quit(&mut self) -> Action {
        if self.job_active() {
            self.refuse("A job is running: open it and press a to stop it first");
            Action::None
        } else if matches!(self.copy.stage, super::result::CopyStage::Running(_)) {
            self.refuse("Files are being copied: wait for it or press a to stop it first");
            Action::None
        } else {
            Action::Quit
        }
    }

    fn key_menu(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.menu_cursor = self.menu_cursor.checked_sub(1).unwrap_or(MENU.len() - 1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.menu_cursor = (self.menu_cursor + 1) % MENU.len()
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                match MENU
                    .get(self.menu_cursor)
                    .copied()
                    .unwrap_or(MenuItem::Quit)
                {
                    MenuItem::Rescue => self.start_flow(Feature::Rescue),
                    MenuItem::Flow(f) => self.start_flow(f),
                    MenuItem::Disks => {
                        self.refresh_disks();
                        self.screen = Screen::Disks;
                        self.request_part_facts(Instant::now());
                    }
                    MenuItem::BrowseImage => self.open_browse_image(),
                    MenuItem::Result => {
                        if self.result.is_some() {
                            self.screen = Screen::Result;
                        } else {
                            self.flow.input.clear();
                            self.result_open_map = None;
                            self.screen = Screen::ResultOpen;
                        }
                    }
                    MenuItem::SystemInfo => {
                        self.sysinfo = Some(self.host.system_info());
                        self.screen = Screen::SystemInfo;
                    }
                    MenuItem::Quit => return self.quit(),
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Opens a flow at its first step, or the job view while a job is shown.
    fn start_flow(&mut self, feature: Feature) {
        if let Some(job) = &self.job {
            if job.state.is_active() || job.request.feature() == feature {
                if feature != job.request.feature() {
                    self.refuse("A job is running: wait for it or stop it first");
                } else {
                    self.screen = Screen::Job;
                }
                return;
            }
            // A finished job of another kind is dismissed by starting something new.
            self.job = None;
        }
        self.refresh_disks();
        self.flow = Flow {
            feature,
            ..Flow::default()
        };
        self.disk_cursor = 0;
        self.screen = match feature {
            Feature::Rescue | Feature::Image | Feature::Clone => Screen::Source,
            Feature::Restore | Feature::Verify => {
                self.flow.input.clear();
                Screen::ImgPath
            }
        };
    }

    /// Cursor movement shared by the disk lists; `r` re-reads the devices.
    pub(super) fn key_disk_list(&mut self, code: KeyCode, esc_to_menu: bool) {
        let n = self.disks.len();
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.disk_cursor = self.disk_cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.disk_cursor = (self.disk_cursor + 1).min(n.saturating_sub(1));
            }
            KeyCode::Char('r') => {
                self.refresh_disks();
                if self.screen == Screen::Disks {
                    // Asked again, except where a probe still waits for its disk.
                    self.part_facts
                        .retain(|_, f| matches!(f, super::partinfo::Facts::Pending(_)));
                    self.request_part_facts(Instant::now());
                }
                self.info("Device list refreshed");
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') if esc_to_menu => {
                self.screen = Screen::Menu;
            }
            _ => {}
        }
    }

    fn key_source(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Enter => match self.disks.get(self.disk_cursor).cloned() {
                Some(d) => {
                    self.flow.source = Some(d);
                    self.flow.target = None;
                    self.flow.dest_cursor = 0;
                    self.screen = match self.flow.feature {
                        Feature::Image => {
                            self.flow.input = self.default_image_path().display().to_string();
                            Screen::ImgPath
                        }
                        Feature::Clone => {
                            self.enter_img_target();
                            Screen::ImgTarget
                        }
                        _ => Screen::Dest,
                    };
                }
                None => self.refuse("No disk to rescue: plug it in and press r to refresh"),
            },
            c => self.key_disk_list(c, true),
        }
        Action::None
    }

    fn key_dest(&mut self, code: KeyCode) -> Action {
        // Row 0 is "an image file"; rows 1.. are the disks.
        let rows = self.disks.len() + 1;
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.flow.dest_cursor = self.flow.dest_cursor.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.flow.dest_cursor = (self.flow.dest_cursor + 1).min(rows - 1);
            }
            KeyCode::Char('r') => self.refresh_disks(),
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => self.screen = Screen::Source,
            KeyCode::Enter => {
                if self.flow.dest_cursor == 0 {
                    self.flow.input = match &self.flow.target {
                        Some(Target::Image(p)) => p.display().to_string(),
                        _ => String::new(),
                    };
                    self.screen = Screen::ImagePath;
                } else if let Some(d) = self.disks.get(self.flow.dest_cursor - 1).cloned() {
                    if let Some((_, why)) = self.target_refusal(&d) {
                        self.refuse(format!(
                            "Refused: {} cannot be the target: {why}",
                            d.path.display()
                        ));
                    } else {
                        self.flow.image_exists = false;
                        self.flow.target = Some(Target::Disk(d));
                        self.flow.mapfile = self.default_disk_mapfile();
                        self.enter_mapfile();
                    }
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Applies typing keys to the input line; returns true if the key was consumed.
    pub(super) fn edit_input(&mut self, code: KeyCode) -> bool {
        edit_text(&mut self.flow.input, code)
    }

    /// Why `path` cannot take the rescued image (or the image of the source), or `None`.
    pub(super) fn image_refusal(&self, path: &Path) -> Option<String> {
        if !path.is_absolute() {
            return Some("type a full path starting with /".into());
        }
        let src = self.flow.source.as_ref()?;
        if path == src.path || src.backing_file.as_deref() == Some(path) {
            return Some("that is the source".into());
        }
        if self.host.is_block_device(path) {
            return Some("that is a device; pick disks from the list instead".into());
        }
        if self.host.is_dir(path) {
            return Some("that is a folder; add a file name".into());
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !self.host.is_dir(parent) {
            return Some(format!("the folder {} does not exist", parent.display()));
        }
        if let Some(d) = self.disk_holding(parent) {
            if d.path == src.path {
                return Some(format!(
                    "{} is on {}, the disk being rescued",
                    parent.display(),
                    d.path.display()
                ));
            }
        }
        None
    }

    pub(super) fn key_image_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Tab => self.open_places(PickMode::Write),
            KeyCode::Esc => self.screen = Screen::Dest,
            KeyCode::Enter => {
                let path = PathBuf::from(self.flow.input.trim());
                if let Some(why) = self.image_refusal(&path) {
                    self.refuse(format!("Refused: {why}"));
                } else {
                    self.flow.image_exists = self.host.exists(&path);
                    let mut m = path.clone().into_os_string();
                    m.push(".map");
                    self.flow.mapfile = PathBuf::from(m);
                    self.flow.target = Some(Target::Image(path));
                    self.enter_mapfile();
                }
            }
            _ => {}
        }
        Action::None
    }

    /// A disk has no "beside" for its mapfile: the first mounted folder on another disk that
    /// survives a power cut, else where salvor was started (the mapfile screen then warns, in
    /// words, that this is memory).
    fn default_disk_mapfile(&self) -> PathBuf {
        let src = self
            .flow
            .source
            .as_ref()
            .map_or("disk".into(), DiskRow::name);
        let target = self.flow.target.as_ref().map(|t| t.path().to_path_buf());
        let dir = self
            .writable_mounts()
            .into_iter()
            .find(|(m, d, _)| {
                Some(&d.path) != target.as_ref()
                    && !self.host.is_read_only_fs(m)
                    && !self.host.is_volatile(m)
            })
            .map(|(m, _, _)| m)
            .unwrap_or_else(|| self.host.current_dir());
        dir.join(format!("salvor-{src}.map"))
    }

    fn enter_mapfile(&mut self) {
        let fl = &mut self.flow;
        fl.mapfile_exists = self.host.exists(&fl.mapfile);
        fl.mapfile_volatile = self.host.is_volatile(&fl.mapfile);
        fl.mapfile_view = match &fl.source {
            Some(src) => self.host.inspect_mapfile(&fl.mapfile, &src.path),
            None => MapfileView::New,
        };
        self.screen = Screen::Mapfile;
    }

    fn key_mapfile(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Enter => match &self.flow.mapfile_view {
                MapfileView::Existing {
                    mismatch: Some(why),
                    ..
                } => {
                    let msg = format!(
                        "Refused: this mapfile belongs to another disk ({why}); press e and \
                         choose another path"
                    );
                    self.refuse(msg);
                }
                MapfileView::Unreadable(e) => {
                    let msg = format!("Refused: the mapfile cannot be used: {e}");
                    self.refuse(msg);
                }
                _ => self.screen = Screen::Options,
            },
            KeyCode::Char('e') => {
                self.flow.input = self.flow.mapfile.display().to_string();
                self.screen = Screen::MapfilePath;
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => self.screen = Screen::Dest,
            _ => {}
        }
        Action::None
    }

    pub(super) fn key_mapfile_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Tab => self.open_places(PickMode::Write),
            KeyCode::Esc => self.screen = Screen::Mapfile,
            KeyCode::Enter => {
                let path = PathBuf::from(self.flow.input.trim());
                let parent = path.parent().unwrap_or(Path::new("/"));
                let verdict = match (&self.flow.source, &self.flow.target) {
                    (Some(s), Some(t)) => self.host.check_rescue_paths(&s.path, t.path(), &path),
                    _ => Ok(()),
                };
                if !path.is_absolute() {
                    self.refuse("Refused: type a full path starting with /");
                } else if let Err(why) = verdict {
                    self.refuse(format!("Refused: {why}"));
                } else if !self.host.is_dir(parent) {
                    self.refuse(format!(
                        "Refused: the folder {} does not exist",
                        parent.display()
                    ));
                } else {
                    self.flow.mapfile = path;
                    self.enter_mapfile();
                }
            }
            _ => {}
        }
        Action::None
    }

    pub const OPTION_COUNT: usize = 5;

    fn key_options(&mut self, code: KeyCode) -> Action {
        let c = &mut self.flow.choices;
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.flow.opt_cursor = self.flow.opt_cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.flow.opt_cursor = (self.flow.opt_cursor + 1).min(Self::OPTION_COUNT - 1);
            }
            KeyCode::Char(' ') | KeyCode::Right | KeyCode::Left | KeyCode::Char('l') => {
                let back = code == KeyCode::Left;
                match self.flow.opt_cursor {
                    0 => {
                        const STEPS: [i32; 5] = [0, 1, 3, 10, -1];
                        let i = STEPS.iter().position(|&s| s == c.retry_passes).unwrap_or(0);
                        let j = if back {
                            (i + STEPS.len() - 1) % STEPS.len()
                        } else {
                            (i + 1) % STEPS.len()
                        };
                        c.retry_passes = STEPS[j];
                    }
                    1 => c.direct = !c.direct,
                    2 => c.reverse = !c.reverse,
                    3 => c.scrape = !c.scrape,
                    _ => c.skip_free = !c.skip_free,
                }
            }
            KeyCode::Enter => {
                self.flow.input.clear();
                self.screen = Screen::Confirm;
            }
            KeyCode::Esc | KeyCode::Char('h') => self.screen = Screen::Mapfile,
            _ => {}
        }
        Action::None
    }

    fn request(&self) -> Option<RescueRequest> {
        let src = self.flow.source.as_ref()?;
        let target = self.flow.target.as_ref()?;
        Some(RescueRequest {
            source: src.path.clone(),
            source_identity: src.identity_line(),
            dest: target.path().to_path_buf(),
            target_kind: match target {
                Target::Image(_) => TargetKind::File,
                Target::Disk(_) => TargetKind::Disk,
            },
            target_identity: match target {
                Target::Image(p) => format!("image file {}", p.display()),
                Target::Disk(d) => d.identity_line(),
            },
            mapfile: self.flow.mapfile.clone(),
            resume: self.flow.mapfile_exists,
            choices: self.flow.choices,
        })
    }

    fn key_confirm(&mut self, code: KeyCode) -> Action {
        let typing = matches!(self.flow.target, Some(Target::Disk(_)));
        if typing && self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc => {
                self.screen = Screen::Options;
                Action::None
            }
            KeyCode::Enter | KeyCode::Char('y') => {
                if let Some(Target::Disk(d)) = self.flow.target.clone() {
                    if !self.confirm_disk(&d) {
                        return Action::None;
                    }
                }
                if self.job_active() {
                    self.refuse("A job is already running");
                    return Action::None;
                }
                match self.request() {
                    Some(req) => {
                        self.job = Some(Job::new(JobRequest::Rescue(req.clone())));
                        self.screen = Screen::Job;
                        Action::StartRescue(req)
                    }
                    None => Action::None,
                }
            }
            _ => Action::None,
        }
    }

    /// The last gate before the disk `d` is overwritten: its name must have been typed, and it
    /// must still be there, unchanged and allowed (the list is re-read: disks may have been
    /// mounted or swapped since they were chosen). Refuses and returns false otherwise.
    pub(super) fn confirm_disk(&mut self, d: &DiskRow) -> bool {
        let name = d.name();
        if self.flow.input.trim() != name {
            self.refuse(format!(
                "Type {name} exactly to confirm that this disk may be overwritten"
            ));
            return false;
        }
        self.refresh_disks();
        let now = self.disks.iter().find(|x| x.path == d.path).cloned();
        match now {
            Some(n) if n.serial == d.serial && n.size == d.size => match self.target_refusal(&n) {
                Some((_, why)) => {
                    self.refuse(format!("Refused: {why}"));
                    false
                }
                None => true,
            },
            _ => {
                self.refuse("Refused: the target disk changed or vanished; choose it again");
                false
            }
        }
    }

    fn key_job(&mut self, code: KeyCode) -> Action {
        let Some(job) = self.job.as_mut() else {
            self.screen = Screen::Menu;
            return Action::None;
        };
        if job.confirm_abort {
            job.confirm_abort = false;
            if matches!(code, KeyCode::Char('y') | KeyCode::Char('Y')) && job.state.is_active() {
                job.state = JobState::Stopping;
                job.push_log(match job.request {
                    JobRequest::Rescue(_) => "Stopping: saving the mapfile".into(),
                    JobRequest::Image(_) => "Stopping".into(),
                });
                return Action::Abort;
            }
            return Action::None;
        }
        let active = job.state.is_active();
        match code {
            KeyCode::Char('p') | KeyCode::Char(' ') => match job.state {
                JobState::Running | JobState::Starting => {
                    job.state = JobState::Paused;
                    job.mark_pause(true);
                    job.push_log("Paused".into());
                    Action::Pause
                }
                JobState::Paused => {
                    job.state = JobState::Running;
                    job.mark_pause(false);
                    job.push_log("Resumed".into());
                    Action::Resume
                }
                _ => Action::None,
            },
            KeyCode::Char('r') if job.state == JobState::Paused => {
                job.state = JobState::Running;
                job.mark_pause(false);
                job.push_log("Resumed".into());
                Action::Resume
            }
            KeyCode::Char('a') | KeyCode::Char('q') if active => {
                job.confirm_abort = true;
                Action::None
            }
            KeyCode::Esc | KeyCode::Char('m') if active => {
                self.screen = Screen::Menu;
                Action::None
            }
            KeyCode::Enter
                if matches!(job.request, JobRequest::Rescue(_))
                    && !matches!(job.state, JobState::Failed(_)) =>
            {
                // A rescue that ended shows its result and next steps.
                let job = job.clone();
                self.open_result_of(&job);
                Action::None
            }
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('m') => {
                // A finished job is dismissed; its result stays in the mapfile.
                self.job = None;
                self.screen = Screen::Menu;
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Applies a message from the worker.
    pub fn on_worker(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Files(copy, r) => return self.on_files_report(&copy, r),
            WorkerMsg::LiveFiles(copy, r) => return self.on_live_files(&copy, r),
            WorkerMsg::CopyProgress(p) => return self.on_copy_progress(p),
            WorkerMsg::CopyDone(r) => return self.on_copy_done(r),
            WorkerMsg::PartFacts(p) => return self.on_part_facts(p),
            WorkerMsg::ImageMounted(r) => return self.on_image_mounted(r),
            WorkerMsg::ImageReleased(r) => return self.on_image_released(r),
            _ => {}
        }
        let Some(job) = self.job.as_mut() else {
            return;
        };
        // A rescue that finished while watched goes on to its result (a stopped or failed one
        // stays, so that its state and log can be read). Its last map came before this.
        let finished = matches!(msg, WorkerMsg::Done(Ok(Outcome::Finished)));
        job.on_worker(msg);
        self.ask_live_files();
        if finished && self.screen == Screen::Job {
            if let Some(j) = self
                .job
                .clone()
                .filter(|j| matches!(j.request, JobRequest::Rescue(_)))
            {
                self.open_result_of(&j);
            }
        }
    }

    /// The tasks asked for since the last call, for the loop to start.
    pub fn take_tasks(&mut self) -> Vec<super::worker::Task> {
        std::mem::take(&mut self.tasks)
    }

    /// A task could not start: what waited for it says so.
    pub fn on_task_failed(&mut self, task: &super::worker::Task, e: String) {
        match task {
            super::worker::Task::FilesReport { copy, .. } => self.on_files_report(copy, Err(e)),
            super::worker::Task::LiveFiles { copy, .. } => self.on_live_files(copy, Err(e)),
            super::worker::Task::Copy(_) => self.on_copy_done(Err(e)),
            super::worker::Task::MountImage { .. } => self.on_image_mounted(Err(e)),
            super::worker::Task::ProbeDisk { parts, .. } => {
                for p in parts {
                    self.part_facts
                        .insert(p.clone(), super::partinfo::Facts::NoAnswer);
                }
            }
        }
    }
}

/// Applies typing keys to `text`; returns true if the key was consumed.
pub(super) fn edit_text(text: &mut String, code: KeyCode) -> bool {
    match code {
        KeyCode::Char(c) => text.push(c),
        KeyCode::Backspace => {
            text.pop();
        }
        _ => return false,
    }
    true
}

/// What recognises a disk across rescans: its node name may change when disks come and go.
fn disk_key(d: &DiskRow) -> String {
    match &d.serial {
        Some(s) if !s.is_empty() => format!("id:{}:{s}", d.model.as_deref().unwrap_or("")),
        _ => format!(
            "node:{}:{}",
            d.path.display(),
            d.backing_file
                .as_deref()
                .map(|b| b.display().to_string())
                .unwrap_or_default()
        ),
    }
}
