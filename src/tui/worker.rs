//! Runs the rescue engine on its own thread and reports over a channel.
//!
//! The UI thread only ever polls the channel, so a read that hangs for minutes on a dying disk
//! freezes nothing but this worker.

use super::app::{Feature, RescueRequest, TargetKind};
use super::imaging::{ImageRequest, ImageResult};
use crate::device::{Clock, Dest, Source, SystemClock};
use crate::error::Result;
use crate::mapfile::{Block, BlockStatus, Mapfile, MapfileSaver, Phase};
use crate::progress::{
    Control, ImageEvent, ImageObserver, ImageSnapshot, RescueEvent, RescueObserver, RescueSnapshot,
};
use crate::rescue::job::{self, JobSpec};
use crate::rescue::{self, engine::MapStore, Outcome, RescueOptions};
use crate::units::{format_bytes, format_duration};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the worker tells the UI.
#[derive(Debug, Clone)]
pub enum WorkerMsg {
    Snapshot(RescueSnapshot),
    Event(RescueEvent),
    /// A copy of the map's blocks for the block map (at most about once a second).
    Map(Vec<Block>),
    /// The run ended: how, or why it failed (also: an image job could not start).
    Done(std::result::Result<Outcome, String>),
    ImageSnapshot(ImageSnapshot),
    ImageEvent(ImageEvent),
    ImageDone(ImageResult),
    /// The damaged-files report of the rescued copy at this path.
    Files(
        PathBuf,
        std::result::Result<crate::fs::files::FilesReport, String>,
    ),
    /// The damaged-files count of a running rescue's copy ([`super::livefiles`]).
    LiveFiles(
        PathBuf,
        std::result::Result<crate::fs::files::FilesReport, String>,
    ),
    CopyProgress(super::copier::CopyProgress),
    CopyDone(std::result::Result<super::copier::CopySummary, String>),
    /// What one partition holds (the Disks screen).
    PartFacts(super::partinfo::PartFacts),
    /// The browsed image is mounted (where, which filesystem), or could not be.
    ImageMounted(std::result::Result<(PathBuf, String), String>),
    /// Its directory was unmounted and the worker let go of the image.
    ImageReleased(std::result::Result<(), String>),
}

/// Work besides the job that the UI asks for: it runs on its own thread and reports over the
/// same kind of channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// [`crate::fs::files::report`] on the rescued copy through its mapfile.
    FilesReport {
        copy: PathBuf,
        mapfile: PathBuf,
    },
    /// The same report on a running rescue's copy, through the mapfile last saved.
    LiveFiles {
        copy: PathBuf,
        mapfile: PathBuf,
    },
    Copy(super::copier::CopyRequest),
    /// The filesystems, labels and GPT names of these volumes of `disk`.
    ProbeDisk {
        disk: PathBuf,
        parts: Vec<PathBuf>,
    },
    /// Serves the image read-only at `dir` (a partition of it, or the whole) until `dir` is
    /// unmounted.
    MountImage {
        image: PathBuf,
        dir: PathBuf,
        partition: Option<u32>,
    },
}

/// How often copy progress is sent: often enough to look alive.
const COPY_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Runs one task to its end on the calling thread, sending what it finds.
pub fn run_task(task: &Task, control: &Control, tx: &Sender<WorkerMsg>) {
    match task {
        Task::FilesReport { copy, mapfile } => {
            let r = files_report(copy, mapfile).map_err(|e| e.to_string());
            let _ = tx.send(WorkerMsg::Files(copy.clone(), r));
        }
        Task::LiveFiles { copy, mapfile } => {
            let r = files_report(copy, mapfile).map_err(|e| e.to_string());
            let _ = tx.send(WorkerMsg::LiveFiles(copy.clone(), r));
        }
        Task::ProbeDisk { disk, parts } => super::partinfo::probe_disk(disk, parts, tx),
        Task::MountImage {
            image,
            dir,
            partition,
        } => {
            let mut mounted = false;
            let r = serve_image(image, dir, *partition, control, &mut |m| {
                mounted = true;
                let _ = tx.send(WorkerMsg::ImageMounted(Ok((m.dir.clone(), m.fs.clone()))));
            })
            .map_err(|e| e.to_string());
            let _ = tx.send(match r {
                Err(e) if !mounted => WorkerMsg::ImageMounted(Err(e)),
                r => WorkerMsg::ImageReleased(r),
            });
        }
        Task::Copy(req) => {
            let mut last: Option<Instant> = None;
            let r = super::copier::copy(req, control, &mut |p| {
                let due = last.is_none_or(|t| t.elapsed() >= COPY_PROGRESS_INTERVAL);
                if due || p.files_done == p.files_total {
                    last = Some(Instant::now());
                    let _ = tx.send(WorkerMsg::CopyProgress(p.clone()));
                }
            })
            .map_err(|e| e.to_string());
            let _ = tx.send(WorkerMsg::CopyDone(r));
        }
    }
}

/// `salvor mount`'s way: the image read-only through FUSE and a loop device, served until `dir`
/// is unmounted.
fn serve_image(
    image: &std::path::Path,
    dir: &std::path::Path,
    partition: Option<u32>,
    control: &Control,
    ready: &mut dyn FnMut(&crate::serve::mount::Mounted),
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let opts = crate::serve::ServeOptions {
        listen: crate::serve::Listen::Unix(PathBuf::new()),
        overlay: None,
        mapfile: None,
        cache_bytes: crate::serve::DEFAULT_CACHE,
        fail_unrescued: true,
        max_connections: None,
        handshake_timeout: crate::serve::HANDSHAKE_TIMEOUT,
    };
    let export = crate::serve::open_export(image, &opts)?;
    let r = crate::serve::mount::mount_export(export, dir, partition, control, ready);
    // The folder was made for this mount.
    let _ = std::fs::remove_dir(dir);
    r
}

fn files_report(
    copy: &std::path::Path,
    mapfile: &std::path::Path,
) -> Result<crate::fs::files::FilesReport> {
    let Some(map) = crate::mapfile::parse_file(mapfile)? else {
        return Err(crate::error::Error::io(
            mapfile,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let mut src = crate::device::FileSource::open(copy, Default::default())?;
    crate::fs::files::report(&mut src, &map)
}

/// Starts a task on a new thread; its messages go to `tx`.
pub fn start_task(
    task: Task,
    control: Arc<Control>,
    tx: Sender<WorkerMsg>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("salvor-task".into())
        .spawn(move || run_task(&task, &control, &tx))
}

/// How often the block map is refreshed: enough to look alive, cheap on huge maps.
const MAP_INTERVAL: Duration = Duration::from_secs(1);

/// The worker's picture of the map. Between saves it is updated from each read (an approximation
/// of what the engine marks); every save replaces it with the engine's exact map.
struct Shadow {
    map: Mapfile,
    phase: Phase,
    dirty: bool,
    last_sent: Option<Instant>,
}

impl Shadow {
    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        if good > 0 {
            self.map.set(pos, good.min(size), BlockStatus::Finished);
        }
        if failed && good < size {
            // What the failed rest becomes depends on the phase that read it.
            let status = match self.phase {
                Phase::Copying => BlockStatus::NonTrimmed,
                Phase::Trimming => BlockStatus::NonScraped,
                _ => BlockStatus::BadSector,
            };
            self.map.set(pos + good, size - good, status);
        }
        self.dirty = true;
    }
}

/// A [`RescueObserver`] that forwards everything to the UI thread.
pub struct ChannelObserver {
    tx: Sender<WorkerMsg>,
    shadow: Rc<RefCell<Shadow>>,
}

impl ChannelObserver {
    fn send_map(&mut self, force: bool) {
        let mut sh = self.shadow.borrow_mut();
        let due = sh.last_sent.is_none_or(|t| t.elapsed() >= MAP_INTERVAL);
        if sh.dirty && (force || due) {
            sh.dirty = false;
            sh.last_sent = Some(Instant::now());
            // A closed channel means the UI is gone; the rescue goes on and saves as usual.
            let _ = self.tx.send(WorkerMsg::Map(sh.map.blocks().to_vec()));
        }
    }
}

impl RescueObserver for ChannelObserver {
    fn event(&mut self, event: &RescueEvent) {
        if let RescueEvent::PassStarted { phase, .. } = event {
            self.shadow.borrow_mut().phase = *phase;
        }
        let force = matches!(event, RescueEvent::Finished { .. });
        if force {
            self.send_map(true);
        }
        let _ = self.tx.send(WorkerMsg::Event(event.clone()));
    }

    fn progress(&mut self, snapshot: &RescueSnapshot) {
        self.send_map(false);
        let _ = self.tx.send(WorkerMsg::Snapshot(snapshot.clone()));
    }

    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        self.shadow.borrow_mut().read_done(pos, size, good, failed);
    }
}

/// Saves like the CLI does, and hands the exact map to the shadow.
struct ShadowStore {
    saver: MapfileSaver,
    shadow: Rc<RefCell<Shadow>>,
}

impl MapStore for ShadowStore {
    fn store(&mut self, map: &Mapfile, status_message: &str) -> Result<()> {
        self.saver.save(map, status_message)?;
        let mut sh = self.shadow.borrow_mut();
        sh.map = map.clone();
        sh.dirty = true;
        Ok(())
    }
}

/// A running job: its steering and its channel.
pub struct JobHandle {
    pub control: Arc<Control>,
    pub rx: Receiver<WorkerMsg>,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Asks the engine to stop and waits up to `wait` for it to save the mapfile and end.
    /// Returns whether it ended; a read stuck in the kernel may keep it from doing so.
    pub fn shutdown(&mut self, reason: crate::progress::StopReason, wait: Duration) -> bool {
        self.control.set_paused(false);
        self.control.request_stop(reason);
        let deadline = Instant::now() + wait;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        true
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        // Ask the engine to stop (it saves the mapfile) but do not wait: a read stuck in the
        // kernel must not keep the UI from exiting.
        self.control.request_stop(crate::progress::StopReason::User);
    }
}

fn options(req: &RescueRequest) -> RescueOptions {
    RescueOptions {
        retry_passes: req.choices.retry_passes,
        reverse: req.choices.reverse,
        no_scrape: !req.choices.scrape,
        used_only: req.choices.skip_free,
        ..RescueOptions::default()
    }
}

/// The body of the worker thread: the shared job builder opens and checks everything, then the
/// engine runs.
fn work(req: &RescueRequest, control: &Control, tx: &Sender<WorkerMsg>) -> Result<Outcome> {
    let opts = options(req);
    let spec = JobSpec {
        direct: req.choices.direct,
        // The user confirmed a disk target by typing its name: that is the CLI's --force.
        force_device: req.target_kind == TargetKind::Disk,
        command_line: format!(
            "salvor rescue {} {} {}",
            req.source.display(),
            req.dest.display(),
            req.mapfile.display()
        ),
        ..JobSpec::new(
            req.source.clone(),
            req.dest.clone(),
            Some(req.mapfile.clone()),
        )
    };
    let job = job::prepare(&spec, &opts)?;
    let (mut source, mut dest) = (job.source, job.dest);
    let _lock = job.lock;
    let Some(saver) = job.saver else {
        return Err(crate::error::Error::Internal(
            "the job has no mapfile saver".into(),
        ));
    };
    let outcome = run_engine(
        source.as_mut(),
        &mut dest,
        job.map,
        saver,
        &opts,
        &SystemClock::new(),
        control,
        tx,
    )?;
    // Closed first: the kernel will not re-read a table while the disk is held open for writing.
    drop(dest);
    if req.target_kind == TargetKind::Disk {
        let message = match crate::blockdev::show_partitions(&req.dest) {
            Ok(_) => format!(
                "Re-read the partition table of {}: its partitions are visible",
                req.dest.display()
            ),
            Err(e) => format!(
                "Could not re-read the partition table of {} ({e}); unplug and replug it to see \
                 its partitions",
                req.dest.display()
            ),
        };
        let _ = tx.send(WorkerMsg::Event(RescueEvent::Message { message }));
    }
    Ok(outcome)
}

/// Runs the engine with the channel observer and the shadow map.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_engine(
    source: &mut dyn Source,
    dest: &mut dyn Dest,
    mut map: Mapfile,
    saver: MapfileSaver,
    opts: &RescueOptions,
    clock: &dyn Clock,
    control: &Control,
    tx: &Sender<WorkerMsg>,
) -> Result<Outcome> {
    map.extend_to(source.geometry().size);
    let _ = tx.send(WorkerMsg::Map(map.blocks().to_vec()));
    let shadow = Rc::new(RefCell::new(Shadow {
        map: map.clone(),
        phase: map.phase,
        dirty: false,
        last_sent: Some(Instant::now()),
    }));
    let mut store = ShadowStore {
        saver,
        shadow: shadow.clone(),
    };
    let mut observer = ChannelObserver {
        tx: tx.clone(),
        shadow,
    };
    let (outcome, _stats) = rescue::rescue(
        source,
        dest,
        &mut map,
        &mut store,
        opts,
        clock,
        control,
        &mut observer,
    )?;
    // The final save has the exact map; make sure the UI shows it.
    observer.send_map(true);
    Ok(outcome)
}

/// Starts a rescue on a new thread.
pub fn start(req: RescueRequest) -> std::io::Result<JobHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let control = Arc::new(Control::new());
    let c = control.clone();
    let thread = std::thread::Builder::new()
        .name("salvor-rescue".into())
        .spawn(move || {
            let result = work(&req, &c, &tx).map_err(|e| e.to_string());
            let _ = tx.send(WorkerMsg::Done(result));
        })?;
    Ok(JobHandle {
        control,
        rx,
        thread: Some(thread),
    })
}

/// An [`ImageObserver`] that forwards everything to the UI thread.
pub struct ImageChannel {
    tx: Sender<WorkerMsg>,
}

impl ImageObserver for ImageChannel {
    fn event(&mut self, event: &ImageEvent) {
        // A closed channel means the UI is gone; the job goes on to its end.
        let _ = self.tx.send(WorkerMsg::ImageEvent(event.clone()));
    }
    fn progress(&mut self, snapshot: &ImageSnapshot) {
        let _ = self.tx.send(WorkerMsg::ImageSnapshot(snapshot.clone()));
    }
}

/// Runs one image job to its end and says how it went, in words for the log.
pub(crate) fn run_image_job(
    req: &ImageRequest,
    control: &Control,
    tx: &Sender<WorkerMsg>,
) -> ImageResult {
    let mut obs = ImageChannel { tx: tx.clone() };
    match image_work(req, control, &mut obs) {
        Ok(s) => ImageResult::Done(s),
        Err(crate::Error::Interrupted(_)) => ImageResult::Stopped,
        Err(e) => ImageResult::Failed(e.to_string()),
    }
}

fn image_work(req: &ImageRequest, control: &Control, obs: &mut ImageChannel) -> Result<String> {
    let out = || {
        req.output
            .as_deref()
            .ok_or_else(|| crate::Error::Internal("no output chosen".into()))
    };
    let threads = crate::image::default_threads();
    match req.feature {
        Feature::Image => {
            let opts = crate::image::ImageOptions {
                level: req.level,
                label: req.label.clone(),
                sha256: req.sha256,
                ..crate::image::ImageOptions::default()
            };
            let s = crate::image::create_image(&req.input, out()?, &opts, control, obs)?;
            let mut line = format!(
                "Done: {} imaged into {} (ratio {:.3}) in {}",
                format_bytes(s.raw_size),
                format_bytes(s.output_size),
                s.output_size as f64 / s.raw_size.max(1) as f64,
                format_duration(s.elapsed)
            );
            if let Some(h) = &s.sha256 {
                line.push_str(&format!("; SHA-256 {h}"));
            }
            Ok(line)
        }
        Feature::Restore | Feature::Clone => {
            // The same refusals as the CLI, re-checked on this thread right before writing; the
            // typed name was the confirmation.
            let plan = if req.feature == Feature::Restore {
                crate::image::prepare_restore(&req.input, out()?)?
            } else {
                crate::image::prepare_clone(&req.input, out()?)?
            };
            obs.event(&ImageEvent::Message {
                message: format!("About to {}", plan.describe()),
            });
            let opts = crate::image::RestoreOptions {
                threads,
                verify: req.verify,
                ..crate::image::RestoreOptions::default()
            };
            let s = crate::image::run_restore(plan, &opts, control, obs)?;
            let mut line = format!(
                "Done: wrote {} to {} in {}",
                format_bytes(s.bytes),
                s.target.display(),
                format_duration(s.elapsed)
            );
            if s.verified {
                line.push_str("; verified, the re-read matches");
            }
            if let Some(g) = &s.gpt {
                line.push_str("; ");
                line.push_str(g);
            }
            Ok(line)
        }
        Feature::Verify => {
            let r = crate::image::verify_image(&req.input, None, threads, control, obs)?;
            Ok(format!(
                "OK: {} chunks, {} checked{}",
                r.chunks,
                format_bytes(r.raw_size),
                if r.chunks_sha256.is_some() || r.sha256.is_some() {
                    "; every SHA-256 matches"
                } else {
                    " (the image records no SHA-256)"
                }
            ))
        }
        Feature::Rescue => Err(crate::Error::Internal("not an image job".into())),
    }
}

/// Starts an image job on a new thread.
pub fn start_image(req: ImageRequest) -> std::io::Result<JobHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let control = Arc::new(Control::new());
    let c = control.clone();
    let thread = std::thread::Builder::new()
        .name("salvor-image".into())
        .spawn(move || {
            let result = run_image_job(&req, &c, &tx);
            let _ = tx.send(WorkerMsg::ImageDone(result));
        })?;
    Ok(JobHandle {
        control,
        rx,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{FaultySource, FaultySpec, FileDest, SimClock};

    #[test]
    fn shadow_follows_reads_by_phase() {
        let mut sh = Shadow {
            map: Mapfile::new(4096),
            phase: Phase::Copying,
            dirty: false,
            last_sent: None,
        };
        sh.read_done(0, 1024, 512, true);
        assert_eq!(sh.map.status_at(0), Some(BlockStatus::Finished));
        assert_eq!(sh.map.status_at(600), Some(BlockStatus::NonTrimmed));
        sh.phase = Phase::Trimming;
        sh.read_done(512, 512, 0, true);
        assert_eq!(sh.map.status_at(600), Some(BlockStatus::NonScraped));
        sh.phase = Phase::Scraping;
        sh.read_done(512, 512, 0, true);
        assert_eq!(sh.map.status_at(600), Some(BlockStatus::BadSector));
        assert!(sh.dirty);
    }

    #[test]
    fn engine_reports_over_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let size = 8u64 << 20;
        let bad = (3u64 << 20, (3u64 << 20) + 65536);
        let spec = FaultySpec::new(size).with_bad(bad.0, bad.1);
        let clock = SimClock::new();
        let mut src = FaultySource::new(spec, clock.clone());
        let mut dest = FileDest::open(&dir.path().join("img"), false, true).unwrap();
        let map_path = dir.path().join("img.map");
        let (tx, rx) = std::sync::mpsc::channel();
        let control = Control::new();
        let outcome = run_engine(
            &mut src,
            &mut dest,
            Mapfile::new(size),
            MapfileSaver::new(&map_path, "test"),
            &RescueOptions::default(),
            &clock,
            &control,
            &tx,
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Finished);
        let msgs: Vec<WorkerMsg> = rx.try_iter().collect();
        assert!(matches!(msgs.first(), Some(WorkerMsg::Map(_))));
        assert!(msgs.iter().any(|m| matches!(m, WorkerMsg::Snapshot(_))));
        assert!(msgs
            .iter()
            .any(|m| matches!(m, WorkerMsg::Event(RescueEvent::Finished { .. }))));
        let last_map = msgs
            .iter()
            .rev()
            .find_map(|m| match m {
                WorkerMsg::Map(b) => Some(b.clone()),
                _ => None,
            })
            .unwrap();
        let m = Mapfile::from_blocks(last_map).unwrap();
        assert_eq!(m.status_at(bad.0), Some(BlockStatus::BadSector));
        assert_eq!(m.status_at(bad.1 - 1), Some(BlockStatus::BadSector));
        assert_eq!(m.status_at(0), Some(BlockStatus::Finished));
        assert_eq!(m.status_at(size - 1), Some(BlockStatus::Finished));
        assert!(map_path.exists());
    }
}
