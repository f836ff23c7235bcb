//! The image flows of the TUI: image a disk, restore an image, clone a disk, verify an image.
//!
//! They reuse the rescue flow's pieces (the disk lists, the image-path refusals, the typed-name
//! confirmation, the job view's pause/abort); what is theirs lives here: the model of the choices,
//! the request handed to the worker, and the key handling of their own steps.

use super::app::{edit_text, Action, App, Feature, Job, JobRequest, JobState, Screen};
use super::disks::DiskRow;
use crate::image::{Info, PartitionTable};
use crate::progress::{ImageEvent, ImagePhase, ImageSnapshot};
use crate::units::format_bytes;
use ratatui::crossterm::event::KeyCode;
use std::path::{Path, PathBuf};

/// What an image file holds, as the Restore and Verify screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageView {
    pub path: PathBuf,
    /// A salvor image (checksummed); otherwise a raw image.
    pub salvor: bool,
    /// Bytes of disk it restores.
    pub size: u64,
    /// Bytes the image takes (compressed, or allocated for a sparse raw file).
    pub stored: Option<u64>,
    pub label: Option<String>,
    /// The disk it was made from, in words.
    pub source: Option<String>,
    pub created: Option<String>,
    pub logical_sector: u32,
    pub table: Option<PartitionTable>,
    /// Areas never rescued, imaged as zeros.
    pub holes: u64,
}

impl ImageView {
    pub fn from_info(info: &Info) -> ImageView {
        match info {
            Info::Image {
                path,
                compressed_size,
                metadata: m,
                trailer: t,
                ..
            } => {
                let mut src = m.source.path.clone();
                for v in [&m.source.model, &m.source.serial].into_iter().flatten() {
                    src.push_str(", ");
                    src.push_str(v);
                }
                ImageView {
                    path: path.clone(),
                    salvor: true,
                    size: m.source_size,
                    stored: Some(*compressed_size),
                    label: m.label.clone(),
                    source: Some(src),
                    created: Some(m.created.clone()),
                    logical_sector: m.logical_sector,
                    table: m.partition_table.clone(),
                    holes: t.holes.len() as u64,
                }
            }
            Info::Raw {
                path,
                size,
                logical_sector,
                allocated,
                partition_table,
                ..
            } => ImageView {
                path: path.clone(),
                salvor: false,
                size: *size,
                stored: *allocated,
                logical_sector: *logical_sector,
                table: partition_table.clone(),
                ..ImageView::default()
            },
        }
    }

    /// "gpt, 3 partitions" or "no partition table".
    pub fn table_summary(&self) -> String {
        match &self.table {
            Some(t) => format!(
                "{}, {} partition{}",
                t.kind,
                t.partitions.len(),
                if t.partitions.len() == 1 { "" } else { "s" }
            ),
            None => "no partition table found".into(),
        }
    }

    /// One line naming the image for the job view and the confirmation.
    pub fn identity_line(&self) -> String {
        let mut s = format!("image {} ({}", self.path.display(), format_bytes(self.size));
        if let Some(l) = &self.label {
            s.push_str(&format!(", \"{l}\""));
        }
        s.push(')');
        s
    }
}

/// What the engine's target check needs (see [`crate::image::TargetRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCheck {
    pub target: PathBuf,
    pub needed: u64,
    pub inputs: Vec<PathBuf>,
    /// The sector size the data's partition table counts in, if it has one.
    pub logical_sector: Option<u32>,
}

/// The zstd levels offered: fast, default, then stronger ones that cost CPU.
pub const LEVELS: [i32; 6] = [1, 3, 6, 9, 12, 19];

/// The choices of an image flow so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgChoices {
    /// The image written (Image) or read (Restore, Verify).
    pub path: Option<PathBuf>,
    pub info: Option<ImageView>,
    pub target: Option<DiskRow>,
    pub target_cursor: usize,
    /// Per disk of `App::disks`: why it cannot be the target (short, sentence).
    pub notes: Vec<Option<(String, String)>>,
    /// Free bytes where the image goes.
    pub free: Option<u64>,
    /// The image file exists already and will be replaced.
    pub exists: bool,
    pub level: i32,
    pub label: String,
    /// Also record the flat SHA-256 of the whole disk (`salvor image --sha256`).
    pub sha256: bool,
    pub verify: bool,
    pub opt_cursor: usize,
}

impl Default for ImgChoices {
    fn default() -> Self {
        ImgChoices {
            path: None,
            info: None,
            target: None,
            target_cursor: 0,
            notes: Vec::new(),
            free: None,
            exists: false,
            level: 3,
            label: String::new(),
            sha256: false,
            // A rescue environment restores rarely and must be sure: re-reading is worth the time.
            verify: true,
            opt_cursor: 0,
        }
    }
}

/// Everything the worker needs to start an image job, as confirmed by the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub feature: Feature,
    /// The disk imaged or cloned, or the image restored or verified.
    pub input: PathBuf,
    pub input_identity: String,
    /// The image file or the disk written; `None` when verifying.
    pub output: Option<PathBuf>,
    pub output_identity: String,
    pub level: i32,
    pub label: Option<String>,
    /// Image: also record the flat SHA-256 of the whole disk.
    pub sha256: bool,
    /// Re-read the target after a restore or clone.
    pub verify: bool,
}

/// An image job's reports so far.
#[derive(Debug, Clone, Default)]
pub struct ImageProgress {
    pub snapshot: Option<ImageSnapshot>,
    pub phase: Option<ImagePhase>,
    /// The first chunk that failed a check: (chunk, disk offset, why).
    pub bad_chunk: Option<(u64, u64, String)>,
    /// The engine's closing summary.
    pub result: Option<String>,
}

/// How an image job ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageResult {
    Done(String),
    Stopped,
    Failed(String),
}

pub fn phase_text(p: ImagePhase) -> &'static str {
    match p {
        ImagePhase::Imaging => "imaging",
        ImagePhase::Restoring => "writing",
        ImagePhase::VerifyingTarget => "re-reading the target",
        ImagePhase::Verifying => "verifying",
        ImagePhase::Finishing => "finishing",
    }
}

impl Job {
    pub(super) fn on_image_event(&mut self, e: ImageEvent) {
        match e {
            ImageEvent::PhaseStarted { phase } => {
                self.image.phase = Some(phase);
                self.push_log(format!("Phase: {}", phase_text(phase)));
            }
            ImageEvent::Hole { offset, size } => self.push_log(format!(
                "Not rescued, imaged as zeros: {} at offset {offset}",
                format_bytes(size)
            )),
            ImageEvent::BadChunk {
                chunk,
                offset,
                reason,
            } => {
                self.push_log(format!(
                    "BAD chunk {chunk} at disk offset {offset}: {reason}"
                ));
                if self.image.bad_chunk.is_none() {
                    self.image.bad_chunk = Some((chunk, offset, reason));
                }
            }
            ImageEvent::Message { message } => self.push_log(message),
            ImageEvent::Finished { .. } => {}
        }
    }

    pub(super) fn on_image_done(&mut self, r: ImageResult) {
        match r {
            ImageResult::Done(summary) => {
                self.push_log(summary.clone());
                self.image.result = Some(summary);
                self.state = JobState::Finished { complete: true };
            }
            ImageResult::Stopped => {
                self.push_log("Stopped before the end: the output is incomplete".into());
                self.state = JobState::Stopped;
            }
            ImageResult::Failed(e) => {
                self.push_log(format!("Error: {e}"));
                self.state = JobState::Failed(e);
            }
        }
    }
}

/// A file name from a disk's identity: `Model_Name-SERIAL.<ext>`.
pub(super) fn file_name(d: &DiskRow, ext: &str) -> String {
    let model = d.model.clone().unwrap_or_else(|| d.name());
    let base = match &d.serial {
        Some(s) if !s.is_empty() => format!("{model}-{s}"),
        _ => model,
    };
    let safe: String = base
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.{ext}")
}

impl App {
    /// Mounted filesystems that could take an image: not on the source, not the boot medium.
    pub fn writable_mounts(&self) -> Vec<(PathBuf, &DiskRow, Option<&super::disks::PartRow>)> {
        let src = self.flow.source.as_ref().map(|s| &s.path);
        let mut v = Vec::new();
        for d in &self.disks {
            // The rescue stick is usually a read-only live medium: not a place for an image.
            if Some(&d.path) == src || d.is_boot {
                continue;
            }
            v.extend(d.mountpoints.iter().map(|m| (m.clone(), d, None)));
            for p in &d.partitions {
                v.extend(p.mountpoints.iter().map(|m| (m.clone(), d, Some(p))));
            }
        }
        v
    }

    /// Where the image of the chosen source goes unless the user types otherwise.
    pub(super) fn default_image_path(&self) -> PathBuf {
        let dir = self
            .writable_mounts()
            .first()
            .map(|(m, _, _)| m.clone())
            .unwrap_or_else(|| self.host.current_dir());
        let name = self
            .flow
            .source
            .as_ref()
            .map_or_else(|| "disk.img.zst".into(), |d| file_name(d, "img.zst"));
        dir.join(name)
    }

    /// True while keys are text for an image flow (letters must not act as commands).
    pub(super) fn img_typing(&self) -> bool {
        match self.screen {
            Screen::ImgOptions => {
                self.flow.feature == Feature::Image && self.flow.img.opt_cursor == 1
            }
            Screen::ImgConfirm => self.flow.img.target.is_some(),
            _ => false,
        }
    }

    /// The engine's check for `disk` as the target of this restore or clone.
    pub(super) fn target_check(&self, disk: &DiskRow) -> TargetCheck {
        let fl = &self.flow;
        let (inputs, sector) = match (fl.feature, &fl.img.info, &fl.source) {
            (Feature::Restore, Some(i), _) => (
                vec![i.path.clone()],
                i.table.as_ref().map(|_| i.logical_sector),
            ),
            (_, _, Some(s)) => (vec![s.path.clone()], None),
            _ => (Vec::new(), None),
        };
        TargetCheck {
            target: disk.path.clone(),
            needed: self.needed_size(),
            inputs,
            logical_sector: sector,
        }
    }

    /// Reads the disks again and notes, per disk, why it cannot be the target.
    pub(super) fn note_targets(&mut self) {
        self.refresh_disks();
        self.flow.img.notes = self
            .disks
            .iter()
            .map(|d| {
                self.target_refusal(d)
                    .map(|(short, why)| (short.to_string(), why))
            })
            .collect();
    }

    pub(super) fn enter_img_target(&mut self) {
        self.flow.input.clear();
        self.note_targets();
        // Start on the first disk that may be chosen.
        self.flow.img.target_cursor = self
            .flow
            .img
            .notes
            .iter()
            .position(Option::is_none)
            .unwrap_or(0);
    }

    /// The screen before `screen` in the current flow.
    fn img_back(&self) -> Screen {
        let f = self.flow.feature;
        match (self.screen, f) {
            (Screen::ImgPath, Feature::Image) => Screen::Source,
            (Screen::ImgPath, _) => Screen::Menu,
            (Screen::ImgInfo, _) => Screen::ImgPath,
            (Screen::ImgTarget, Feature::Restore) => Screen::ImgInfo,
            (Screen::ImgTarget, _) => Screen::Source,
            (Screen::ImgOptions, Feature::Image) => Screen::ImgPath,
            (Screen::ImgOptions, _) => Screen::ImgTarget,
            (Screen::ImgConfirm, _) => Screen::ImgOptions,
            (s, _) => s,
        }
    }

    fn go_back(&mut self) {
        let to = self.img_back();
        if to == Screen::ImgPath {
            self.flow.input = self
                .flow
                .img
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        }
        if to == Screen::ImgTarget {
            self.note_targets();
        }
        self.screen = to;
    }

    /// Why `path` cannot be read as an image, or what it holds.
    fn read_image(&self, path: &Path) -> Result<ImageView, String> {
        if !path.is_absolute() {
            return Err("type a full path starting with /".into());
        }
        if self.host.is_block_device(path) {
            return Err("that is a device; to copy a disk choose \"Clone a disk\"".into());
        }
        if self.host.is_dir(path) {
            return Err("that is a folder; add the image's file name".into());
        }
        if !self.host.exists(path) {
            return Err(format!("{} does not exist", path.display()));
        }
        self.host.image_info(path)
    }

    pub(super) fn key_img_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Tab => self.open_places(if self.flow.feature == Feature::Image {
                super::places::PickMode::Write
            } else {
                super::places::PickMode::Read
            }),
            KeyCode::Esc => self.go_back(),
            KeyCode::Enter => {
                let path = PathBuf::from(self.flow.input.trim());
                match self.flow.feature {
                    Feature::Image => {
                        if let Some(why) = self.image_refusal(&path) {
                            self.refuse(format!("Refused: {why}"));
                            return Action::None;
                        }
                        self.flow.img.exists = self.host.exists(&path);
                        let dir = path.parent().unwrap_or(Path::new("/"));
                        self.flow.img.free = self.host.free_space(dir);
                        self.flow.img.path = Some(path);
                        self.flow.img.opt_cursor = 0;
                        self.screen = Screen::ImgOptions;
                    }
                    Feature::Restore | Feature::Verify => match self.read_image(&path) {
                        Err(why) => self.refuse(format!("Cannot use it: {why}")),
                        Ok(info) if self.flow.feature == Feature::Verify && !info.salvor => {
                            self.refuse(
                                "Cannot verify it: only salvor images (.img.zst) carry checksums",
                            );
                        }
                        Ok(info) => {
                            self.flow.img.path = Some(path);
                            self.flow.img.info = Some(info);
                            if self.flow.feature == Feature::Verify {
                                return self.start_image_job();
                            }
                            self.screen = Screen::ImgInfo;
                        }
                    },
                    _ => {}
                }
            }
            _ => {}
        }
        Action::None
    }

    pub(super) fn key_img_info(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                self.enter_img_target();
                self.screen = Screen::ImgTarget;
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => self.go_back(),
            _ => {}
        }
        Action::None
    }

    pub(super) fn key_img_target(&mut self, code: KeyCode) -> Action {
        let n = self.disks.len();
        let cur = self.flow.img.target_cursor;
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.flow.img.target_cursor = cur.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.flow.img.target_cursor = (cur + 1).min(n.saturating_sub(1));
            }
            KeyCode::Char('r') => {
                self.note_targets();
                self.info("Device list refreshed");
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => self.go_back(),
            KeyCode::Enter => {
                let Some(d) = self.disks.get(cur).cloned() else {
                    self.refuse("No disk to write: plug it in and press r to refresh");
                    return Action::None;
                };
                // Re-asked rather than read from the notes: the disk may have changed meanwhile.
                if let Some((_, why)) = self.target_refusal(&d) {
                    self.refuse(format!(
                        "Refused: {} cannot be the target: {why}",
                        d.path.display()
                    ));
                } else {
                    self.flow.img.target = Some(d);
                    self.flow.img.opt_cursor = 0;
                    self.screen = Screen::ImgOptions;
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Image: compression level, label and flat SHA-256; restore and clone: verify.
    pub fn img_option_count(&self) -> usize {
        if self.flow.feature == Feature::Image {
            3
        } else {
            1
        }
    }

    pub(super) fn key_img_options(&mut self, code: KeyCode) -> Action {
        let on_label = self.img_typing();
        if on_label && edit_text(&mut self.flow.img.label, code) {
            return Action::None;
        }
        let n = self.img_option_count();
        let c = &mut self.flow.img;
        match code {
            KeyCode::Up => c.opt_cursor = c.opt_cursor.saturating_sub(1),
            KeyCode::Down => c.opt_cursor = (c.opt_cursor + 1).min(n - 1),
            KeyCode::Char('k') => c.opt_cursor = c.opt_cursor.saturating_sub(1),
            KeyCode::Char('j') => c.opt_cursor = (c.opt_cursor + 1).min(n - 1),
            KeyCode::Char(' ') | KeyCode::Right | KeyCode::Left | KeyCode::Char('l') => {
                if self.flow.feature != Feature::Image {
                    c.verify = !c.verify;
                } else if c.opt_cursor == 0 {
                    let i = LEVELS.iter().position(|&l| l == c.level).unwrap_or(1);
                    let j = if code == KeyCode::Left {
                        (i + LEVELS.len() - 1) % LEVELS.len()
                    } else {
                        (i + 1) % LEVELS.len()
                    };
                    c.level = LEVELS[j];
                } else if c.opt_cursor == 2 {
                    c.sha256 = !c.sha256;
                }
            }
            KeyCode::Enter => {
                self.flow.input.clear();
                self.screen = Screen::ImgConfirm;
            }
            KeyCode::Esc | KeyCode::Char('h') => self.go_back(),
            _ => {}
        }
        Action::None
    }

    pub(super) fn key_img_confirm(&mut self, code: KeyCode) -> Action {
        let target = self.flow.img.target.clone();
        if target.is_some() && self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc => self.go_back(),
            KeyCode::Enter | KeyCode::Char('y') => {
                if let Some(d) = target {
                    if !self.confirm_disk(&d) {
                        return Action::None;
                    }
                }
                return self.start_image_job();
            }
            _ => {}
        }
        Action::None
    }

    /// The request for the confirmed choices, or `None` if a step is missing.
    pub fn image_request(&self) -> Option<ImageRequest> {
        let fl = &self.flow;
        let c = &fl.img;
        let (input, input_identity) = match fl.feature {
            Feature::Image | Feature::Clone => {
                let s = fl.source.as_ref()?;
                (s.path.clone(), s.identity_line())
            }
            Feature::Restore | Feature::Verify => {
                let i = c.info.as_ref()?;
                (i.path.clone(), i.identity_line())
            }
            Feature::Rescue => return None,
        };
        let (output, output_identity) = match fl.feature {
            Feature::Image => {
                let p = c.path.clone()?;
                let id = format!("image file {}", p.display());
                (Some(p), id)
            }
            Feature::Restore | Feature::Clone => {
                let t = c.target.as_ref()?;
                (Some(t.path.clone()), t.identity_line())
            }
            _ => (None, "nothing is written: every chunk is checked".into()),
        };
        let label = c.label.trim();
        Some(ImageRequest {
            feature: fl.feature,
            input,
            input_identity,
            output,
            output_identity,
            level: c.level,
            label: (!label.is_empty()).then(|| label.to_string()),
            sha256: fl.feature == Feature::Image && c.sha256,
            verify: c.verify,
        })
    }

    fn start_image_job(&mut self) -> Action {
        if self.job_active() {
            self.refuse("A job is already running");
            return Action::None;
        }
        match self.image_request() {
            Some(req) => {
                self.job = Some(Job::new(JobRequest::Image(req.clone())));
                self.screen = Screen::Job;
                Action::StartImage(req)
            }
            None => Action::None,
        }
    }
}
