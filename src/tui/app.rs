//! The TUI's model: which screen is shown, what the user chose so far, and the running job.
//!
//! Keys mutate the model through [`App::on_key`], which returns an [`Action`] for the outside
//! world (start a rescue, pause it, quit); drawing only reads it. Nothing here touches a terminal
//! or a disk, so every flow can be driven by tests.

use super::disks::DiskRow;
use super::sysinfo::SystemInfo;
use super::worker::WorkerMsg;
use crate::mapfile::Block;
use crate::progress::{RescueEvent, RescueSnapshot};
use crate::rescue::Outcome;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};

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
}

/// The real machine.
pub struct RealHost;

impl Host for RealHost {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String> {
        super::disks::scan()
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
}

/// What the outside world must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Quit,
    StartRescue(RescueRequest),
    Pause,
    Resume,
    Abort,
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
}

impl Default for Choices {
    fn default() -> Self {
        Choices {
            retry_passes: 0,
            direct: false,
            reverse: false,
            scrape: true,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Image,
    Restore,
    Clone,
    Verify,
}

impl Feature {
    pub fn title(self) -> &'static str {
        match self {
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
    ComingSoon(Feature),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuItem {
    Rescue,
    Disks,
    Soon(Feature),
    SystemInfo,
    Quit,
}

pub const MENU: [MenuItem; 8] = [
    MenuItem::Rescue,
    MenuItem::Disks,
    MenuItem::Soon(Feature::Image),
    MenuItem::Soon(Feature::Restore),
    MenuItem::Soon(Feature::Clone),
    MenuItem::Soon(Feature::Verify),
    MenuItem::SystemInfo,
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
    pub choices: Choices,
    pub opt_cursor: usize,
    pub dest_cursor: usize,
    /// The text being typed on ImagePath, MapfilePath and Confirm.
    pub input: String,
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

/// A rescue started from the TUI and what it reported so far.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: RescueRequest,
    pub state: JobState,
    pub snapshot: Option<RescueSnapshot>,
    pub blocks: Vec<Block>,
    pub log: Vec<String>,
    pub confirm_abort: bool,
    pub saves: u64,
}

/// Oldest log lines are dropped beyond this; a disk with thousands of bad sectors must not eat RAM.
const LOG_MAX: usize = 500;

impl Job {
    pub fn new(request: RescueRequest) -> Job {
        Job {
            request,
            state: JobState::Starting,
            snapshot: None,
            blocks: Vec::new(),
            log: Vec::new(),
            confirm_abort: false,
            saves: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.blocks.last().map_or(0, Block::end)
    }

    fn push_log(&mut self, line: String) {
        let stamp = self
            .snapshot
            .as_ref()
            .map(|s| crate::units::format_duration(s.elapsed))
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
                self.push_log(format!("Read error at 0x{pos:X} ({size} bytes): {message}"));
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
            host,
        };
        app.refresh_disks();
        app
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

    fn refuse(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            is_error: true,
        });
    }

    fn info(&mut self, text: impl Into<String>) {
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
    pub fn target_refusal(&self, disk: &DiskRow) -> Option<(&'static str, String)> {
        if let Some(src) = &self.flow.source {
            if src.path == disk.path {
                return Some(("the source", "it is the source".into()));
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
        if let Some(src) = &self.flow.source {
            if disk.size < src.size {
                return Some((
                    "too small",
                    format!(
                        "it is too small ({} < {})",
                        crate::units::format_bytes(disk.size),
                        crate::units::format_bytes(src.size)
                    ),
                ));
            }
        }
        None
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
        let typing = matches!(self.screen, Screen::ImagePath | Screen::MapfilePath)
            || (self.screen == Screen::Confirm
                && matches!(self.flow.target, Some(Target::Disk(_))));
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
            Screen::Dest => self.key_dest(key.code),
            Screen::ImagePath => self.key_image_path(key.code),
            Screen::Mapfile => self.key_mapfile(key.code),
            Screen::MapfilePath => self.key_mapfile_path(key.code),
            Screen::Options => self.key_options(key.code),
            Screen::Confirm => self.key_confirm(key.code),
            Screen::Job => self.key_job(key.code),
            Screen::SystemInfo | Screen::ComingSoon(_) => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace) {
                    self.screen = Screen::Menu;
                }
                Action::None
            }
        }
    }

    fn quit(&mut self) -> Action {
        if self.job_active() {
            self.refuse("A rescue is running: open it and press a to stop it first");
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
                    MenuItem::Rescue => {
                        if self.job.is_some() {
                            self.screen = Screen::Job;
                        } else {
                            self.refresh_disks();
                            self.flow = Flow::default();
                            self.disk_cursor = 0;
                            self.screen = Screen::Source;
                        }
                    }
                    MenuItem::Disks => {
                        self.refresh_disks();
                        self.screen = Screen::Disks;
                    }
                    MenuItem::Soon(f) => self.screen = Screen::ComingSoon(f),
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

    /// Cursor movement shared by the disk lists; `r` re-reads the devices.
    fn key_disk_list(&mut self, code: KeyCode, esc_to_menu: bool) {
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
                    self.screen = Screen::Dest;
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
                        self.flow.target = Some(Target::Disk(d));
                        self.flow.image_exists = false;
                        // A disk has no "beside": the mapfile goes where salvor was started.
                        let src = self
                            .flow
                            .source
                            .as_ref()
                            .map_or("disk".into(), DiskRow::name);
                        self.flow.mapfile =
                            self.host.current_dir().join(format!("salvor-{src}.map"));
                        self.enter_mapfile();
                    }
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Applies typing keys to the input line; returns true if the key was consumed.
    fn edit_input(&mut self, code: KeyCode) -> bool {
        match code {
            KeyCode::Char(c) => self.flow.input.push(c),
            KeyCode::Backspace => {
                self.flow.input.pop();
            }
            _ => return false,
        }
        true
    }

    /// Why `path` cannot take the rescued image, or `None`.
    fn image_refusal(&self, path: &Path) -> Option<String> {
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

    fn key_image_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
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

    fn enter_mapfile(&mut self) {
        self.flow.mapfile_exists = self.host.exists(&self.flow.mapfile);
        self.screen = Screen::Mapfile;
    }

    fn key_mapfile(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Enter => self.screen = Screen::Options,
            KeyCode::Char('e') => {
                self.flow.input = self.flow.mapfile.display().to_string();
                self.screen = Screen::MapfilePath;
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => self.screen = Screen::Dest,
            _ => {}
        }
        Action::None
    }

    fn key_mapfile_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc => self.screen = Screen::Mapfile,
            KeyCode::Enter => {
                let path = PathBuf::from(self.flow.input.trim());
                let parent = path.parent().unwrap_or(Path::new("/"));
                let clash = self.flow.source.as_ref().is_some_and(|s| s.path == path)
                    || self.flow.target.as_ref().is_some_and(|t| t.path() == path);
                if !path.is_absolute() {
                    self.refuse("Refused: type a full path starting with /");
                } else if clash {
                    self.refuse("Refused: the mapfile must not be the source or the target");
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

    pub const OPTION_COUNT: usize = 4;

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
                    _ => c.scrape = !c.scrape,
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
        let disk_name = match &self.flow.target {
            Some(Target::Disk(d)) => Some(d.name()),
            _ => None,
        };
        if disk_name.is_some() && self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc => {
                self.screen = Screen::Options;
                Action::None
            }
            KeyCode::Enter | KeyCode::Char('y') => {
                if let Some(name) = &disk_name {
                    if self.flow.input.trim() != name {
                        self.refuse(format!(
                            "Type {name} exactly to confirm that this disk may be overwritten"
                        ));
                        return Action::None;
                    }
                }
                // The refusals are re-checked against a fresh device list: disks may have been
                // mounted or swapped since they were chosen.
                self.refresh_disks();
                if let Some(Target::Disk(d)) = self.flow.target.clone() {
                    let now = self.disks.iter().find(|x| x.path == d.path).cloned();
                    match now {
                        Some(n) if n.serial == d.serial && n.size == d.size => {
                            if let Some((_, why)) = self.target_refusal(&n) {
                                self.refuse(format!("Refused: {why}"));
                                return Action::None;
                            }
                        }
                        _ => {
                            self.refuse(
                                "Refused: the target disk changed or vanished; choose it again",
                            );
                            return Action::None;
                        }
                    }
                }
                if self.job_active() {
                    self.refuse("A rescue is already running");
                    return Action::None;
                }
                match self.request() {
                    Some(req) => {
                        self.job = Some(Job::new(req.clone()));
                        self.screen = Screen::Job;
                        Action::StartRescue(req)
                    }
                    None => Action::None,
                }
            }
            _ => Action::None,
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
                job.push_log("Stopping: saving the mapfile".into());
                return Action::Abort;
            }
            return Action::None;
        }
        let active = job.state.is_active();
        match code {
            KeyCode::Char('p') | KeyCode::Char(' ') => match job.state {
                JobState::Running | JobState::Starting => {
                    job.state = JobState::Paused;
                    job.push_log("Paused".into());
                    Action::Pause
                }
                JobState::Paused => {
                    job.state = JobState::Running;
                    job.push_log("Resumed".into());
                    Action::Resume
                }
                _ => Action::None,
            },
            KeyCode::Char('r') if job.state == JobState::Paused => {
                job.state = JobState::Running;
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
        if let Some(job) = self.job.as_mut() {
            job.on_worker(msg);
        }
    }
}
