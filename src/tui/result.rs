//! After a rescue: what was rescued, which files are damaged, and what to do next ("Retry the
//! bad areas", "Copy my files"). Reached when a rescue ends, or from the menu for any mapfile and
//! its rescued copy.
//!
//! The damaged-files report ([`crate::fs::files::report`]) runs on a worker; this module keeps
//! what it found as a tree the screen draws. "Copy my files" mounts the rescued copy read-only,
//! lets the user mark folders in the folder browser, pick a destination folder on another disk
//! (checked by the safety policy), and runs [`super::copier`] on a worker; then it unmounts.

use super::app::{
    Action, App, Choices, Job, JobRequest, MapfileView, RescueRequest, Screen, TargetKind,
};
use super::copier::{CopyProgress, CopyRequest, CopySummary, DamagedChoice};
use super::places::{PickMode, Picker};
use super::worker::Task;
use crate::fs::files::FilesReport;
use crate::mapfile::Totals;
use ratatui::crossterm::event::KeyCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// At most this many rows of the damage tree are kept (the counts above them stay exact).
pub const MAX_TREE_ROWS: usize = 2000;

/// One row of the damaged-files tree: a filesystem, a folder or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    pub depth: usize,
    pub name: String,
    pub is_dir: bool,
    /// Damaged files at or below this row.
    pub files: u64,
    /// Bytes of them not rescued.
    pub lost: u64,
}

/// What the damaged-files report found, ready to draw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damage {
    pub tree: Vec<TreeRow>,
    /// Rows left out beyond [`MAX_TREE_ROWS`].
    pub cut: usize,
    /// "N files whose names are lost" and the like, in words.
    pub metadata: Vec<String>,
    pub files: u64,
    pub lost: u64,
    pub checked: u64,
    /// Per partition number: the damaged files' paths (for the copier).
    pub by_partition: Vec<(u32, Vec<String>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FilesState {
    #[default]
    Pending,
    Ready(Damage),
    Failed(String),
}

/// A next step on the result screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Retry,
    CopyFiles,
    Menu,
}

/// Where "Copy my files" is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CopyStage {
    #[default]
    Idle,
    /// Picking the partition of the copy to mount.
    Part,
    /// Checking what and where, choosing skip or mark.
    Confirm,
    Running(CopyProgress),
    Done(Result<CopySummary, String>),
}

/// A partition of the rescued copy (or of an image) that may be mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyPart {
    pub dev: PathBuf,
    pub number: u32,
    pub size: u64,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub damaged: Option<u64>,
}

/// The state of "Copy my files" (and of copying out of a browsed image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyFlow {
    pub stage: CopyStage,
    pub parts: Vec<CopyPart>,
    pub part_cursor: usize,
    /// A loop device salvor attached for an image file (detached at the end).
    pub attached: Option<PathBuf>,
    /// Where the chosen partition is mounted, read-only.
    pub mount: Option<PathBuf>,
    pub partition: u32,
    pub items: Vec<PathBuf>,
    pub dest: Option<PathBuf>,
    pub choice: DamagedChoice,
    /// The screen the flow returns to when it ends.
    pub back: Option<Screen>,
    /// What is copied from, in words (the rescued copy, or the image browsed).
    pub what: String,
    /// The image browsed ("Browse an image"): mounted by a worker through FUSE, no damage
    /// report (a salvor image's unrescued areas read as errors instead).
    pub image: Option<PathBuf>,
    /// The worker is mounting the image.
    pub mounting: bool,
}

/// The result of a rescue and the next steps.
#[derive(Debug, Clone, PartialEq)]
pub struct RescueResult {
    /// The source, when known (a rescue that just ran, or a disk matching the mapfile).
    pub source: Option<PathBuf>,
    pub source_identity: String,
    pub copy: PathBuf,
    pub copy_kind: TargetKind,
    pub copy_identity: String,
    pub mapfile: PathBuf,
    pub totals: Totals,
    pub size: u64,
    pub files: FilesState,
    pub cursor: usize,
    /// The first tree row shown.
    pub scroll: usize,
    /// Opened from the menu (not right after the rescue): a disk copy was never confirmed here.
    pub from_menu: bool,
}

impl RescueResult {
    /// The next steps offered: retrying only while something is left to read.
    pub fn steps(&self) -> Vec<Step> {
        let mut v = Vec::new();
        if self.totals.bad_sector + self.totals.pending() > 0 {
            v.push(Step::Retry);
        }
        v.push(Step::CopyFiles);
        v.push(Step::Menu);
        v
    }
}

/// Builds the tree and the metadata lines from the report.
pub fn damage_of(r: &FilesReport) -> Damage {
    let mut d = Damage::default();
    for fs in &r.filesystems {
        let lost: u64 = fs.damaged_files.iter().map(|f| f.lost_bytes).sum();
        d.files += fs.damaged_files.len() as u64;
        d.lost += lost;
        d.checked += fs.files_checked;
        let name = if fs.partition == 0 {
            format!("whole disk ({})", fs.kind)
        } else {
            format!("partition {} ({})", fs.partition, fs.kind)
        };
        d.tree.push(TreeRow {
            depth: 0,
            name,
            is_dir: true,
            files: fs.damaged_files.len() as u64,
            lost,
        });
        // Folder → (files, lost) over the whole subtree, and the files of each folder.
        let mut dirs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut files: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for f in &fs.damaged_files {
            let (dir, base) = match f.path.rfind('/') {
                Some(i) => (&f.path[..i], &f.path[i + 1..]),
                None => ("", f.path.as_str()),
            };
            files
                .entry(dir.to_string())
                .or_default()
                .push((base.to_string(), f.lost_bytes));
            let mut p = dir;
            loop {
                if !p.is_empty() {
                    let e = dirs.entry(p.to_string()).or_default();
                    e.0 += 1;
                    e.1 += f.lost_bytes;
                }
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
        }
        let mut keys: Vec<&String> = dirs.keys().chain(files.keys()).collect();
        keys.sort();
        keys.dedup();
        for dir in keys {
            let depth = dir.matches('/').count();
            if let Some(&(n, lost)) = dirs.get(dir) {
                let name = dir.rsplit('/').next().unwrap_or(dir);
                d.tree.push(TreeRow {
                    depth,
                    name: format!("{name}/"),
                    is_dir: true,
                    files: n,
                    lost,
                });
            }
            for (base, lost) in files.get(dir).into_iter().flatten() {
                d.tree.push(TreeRow {
                    depth: depth + 1,
                    name: base.clone(),
                    is_dir: false,
                    files: 1,
                    lost: *lost,
                });
            }
        }
        let p = fs.partition;
        let mut meta = |s: String| d.metadata.push(format!("partition {p}: {s}"));
        if fs.lost_names > 0 {
            meta(format!("{} files whose names are lost", fs.lost_names));
        }
        if !fs.damaged_dirs.is_empty() {
            let n = fs.damaged_dirs.len();
            meta(format!(
                "{n} folder{} whose list of files is incomplete",
                if n == 1 { "" } else { "s" }
            ));
        }
        if fs.unreadable_inodes > 0 {
            meta(format!(
                "{} files whose place on the disk is unknown",
                fs.unreadable_inodes
            ));
        }
        if let Some(m) = fs.unrescued_metadata.filter(|&m| m > 0) {
            meta(format!(
                "{} of the filesystem's own records not rescued",
                crate::units::format_bytes(m)
            ));
        }
        if let Some(e) = &fs.error {
            meta(format!("files could not be listed: {e}"));
        }
        d.by_partition.push((
            fs.partition,
            fs.damaged_files.iter().map(|f| f.path.clone()).collect(),
        ));
    }
    d.cut = d.tree.len().saturating_sub(MAX_TREE_ROWS);
    d.tree.truncate(MAX_TREE_ROWS);
    d
}

impl App {
    /// Shows the result of the rescue `job` just ended, and asks for the damaged-files report.
    pub(super) fn open_result_of(&mut self, job: &Job) {
        let JobRequest::Rescue(r) = &job.request else {
            return;
        };
        // The engine's last map is exact; a snapshot only if no map came.
        let from_map = crate::mapfile::Mapfile::from_blocks(job.blocks.clone())
            .ok()
            .filter(|m| m.end() > 0)
            .map(|m| (m.totals(), m.end()));
        let (totals, size) = match (from_map, &job.snapshot) {
            (Some(t), _) => t,
            (None, Some(s)) => (s.totals, s.domain_size),
            (None, None) => (Totals::default(), job.size()),
        };
        self.result = Some(RescueResult {
            source: Some(r.source.clone()),
            source_identity: r.source_identity.clone(),
            copy: r.dest.clone(),
            copy_kind: r.target_kind,
            copy_identity: r.target_identity.clone(),
            mapfile: r.mapfile.clone(),
            totals,
            size,
            files: FilesState::Pending,
            cursor: 0,
            scroll: 0,
            from_menu: false,
        });
        self.tasks.push(Task::FilesReport {
            copy: r.dest.clone(),
            mapfile: r.mapfile.clone(),
        });
        self.screen = Screen::Result;
    }

    /// From the menu: the mapfile typed on [`Screen::ResultOpen`] and its copy.
    pub(super) fn open_result_paths(&mut self, mapfile: PathBuf, copy: PathBuf) {
        let view = self.host.inspect_mapfile(&mapfile, &copy);
        let MapfileView::Existing { summary, .. } = view else {
            self.refuse(match view {
                MapfileView::Unreadable(e) => format!("Refused: the mapfile cannot be used: {e}"),
                _ => format!("There is no mapfile at {}", mapfile.display()),
            });
            return;
        };
        if !self.host.exists(&copy) {
            self.refuse(format!("There is no rescued copy at {}", copy.display()));
            return;
        }
        let copy_disk = self.disks.iter().find(|d| d.path == copy).cloned();
        // The source is the disk the mapfile records, if it is attached.
        let source = self.disks.iter().find(|d| {
            d.path != copy
                && matches!(
                    self.host.inspect_mapfile(&mapfile, &d.path),
                    MapfileView::Existing { mismatch: None, .. }
                )
                && summary.source.is_some()
        });
        self.result = Some(RescueResult {
            source: source.map(|d| d.path.clone()),
            source_identity: source.map_or_else(
                || {
                    summary
                        .source
                        .clone()
                        .unwrap_or_else(|| "unknown disk".into())
                },
                |d| d.identity_line(),
            ),
            copy_kind: if copy_disk.is_some() {
                TargetKind::Disk
            } else {
                TargetKind::File
            },
            copy_identity: copy_disk.map_or_else(
                || format!("image file {}", copy.display()),
                |d| d.identity_line(),
            ),
            copy: copy.clone(),
            mapfile: mapfile.clone(),
            totals: summary.totals,
            size: summary.size,
            files: FilesState::Pending,
            cursor: 0,
            scroll: 0,
            from_menu: true,
        });
        self.tasks.push(Task::FilesReport { copy, mapfile });
        self.screen = Screen::Result;
    }

    pub(super) fn on_files_report(&mut self, copy: &Path, r: Result<FilesReport, String>) {
        // A late answer about another copy (the user opened a second result) is dropped.
        if let Some(res) = self.result.as_mut().filter(|res| res.copy == copy) {
            res.files = match r {
                Ok(rep) => FilesState::Ready(damage_of(&rep)),
                Err(e) => FilesState::Failed(e),
            };
        }
    }

    pub(super) fn key_result_open(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc if self.result_open_map.is_some() => {
                // Back to the mapfile's path.
                if let Some(m) = self.result_open_map.take() {
                    self.flow.input = m.display().to_string();
                }
            }
            KeyCode::Esc => self.screen = Screen::Menu,
            KeyCode::Enter => {
                let text = self.flow.input.trim().to_string();
                let path = PathBuf::from(&text);
                if !path.is_absolute() {
                    self.refuse("Refused: type a full path starting with /");
                    return Action::None;
                }
                if let Some(mapfile) = self.result_open_map.clone() {
                    self.open_result_paths(mapfile, path);
                    if self.screen == Screen::Result {
                        self.result_open_map = None;
                    }
                    return Action::None;
                }
                if !self.host.exists(&path) {
                    self.refuse(format!("There is no mapfile at {}", path.display()));
                    return Action::None;
                }
                // The copy is the mapfile's name without ".map" (how salvor names an image's).
                let copy = text
                    .strip_suffix(".map")
                    .map(PathBuf::from)
                    .filter(|c| self.host.exists(c));
                match copy {
                    Some(c) => self.open_result_paths(path, c),
                    None => {
                        // A disk's mapfile (or a renamed one): the copy is asked for.
                        self.result_open_map = Some(path);
                        self.flow.input.clear();
                    }
                }
            }
            _ => {}
        }
        Action::None
    }

    pub(super) fn key_result(&mut self, code: KeyCode) -> Action {
        let Some(res) = self.result.as_mut() else {
            self.screen = Screen::Menu;
            return Action::None;
        };
        let steps = res.steps();
        let rows = match &res.files {
            FilesState::Ready(d) => d.tree.len(),
            _ => 0,
        };
        match code {
            KeyCode::Up | KeyCode::Char('k') => res.cursor = res.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                res.cursor = (res.cursor + 1).min(steps.len() - 1)
            }
            KeyCode::PageDown => res.scroll = (res.scroll + 10).min(rows.saturating_sub(1)),
            KeyCode::PageUp => res.scroll = res.scroll.saturating_sub(10),
            KeyCode::Esc => self.screen = Screen::Menu,
            KeyCode::Char('o') if self.copy.stage == CopyStage::Idle => {
                // Another rescue's mapfile.
                self.flow.input.clear();
                self.result_open_map = None;
                self.screen = Screen::ResultOpen;
            }
            KeyCode::Enter => match steps.get(res.cursor).copied().unwrap_or(Step::Menu) {
                Step::Menu => self.screen = Screen::Menu,
                Step::Retry => return self.retry_bad_areas(),
                Step::CopyFiles => self.start_copy(),
            },
            _ => {}
        }
        Action::None
    }

    /// A new rescue of the same source, copy and mapfile with what helps on bad areas: direct
    /// access (no kernel cache, no read-ahead across a bad sector) and three retry passes.
    fn retry_bad_areas(&mut self) -> Action {
        let Some(res) = self.result.as_ref() else {
            return Action::None;
        };
        let Some(source) = res.source.clone() else {
            self.refuse("The disk this mapfile belongs to is not attached: plug it in first");
            return Action::None;
        };
        if self.job_active() {
            self.refuse("A job is already running");
            return Action::None;
        }
        if self.copy.mount.is_some() {
            self.refuse("The copy is mounted: finish copying files first");
            return Action::None;
        }
        if res.from_menu && res.copy_kind == TargetKind::Disk {
            // Overwriting a disk needs its name typed: that is the rescue flow's confirmation.
            self.refuse(
                "The copy is a disk: retry from Rescue a failing disk, where its name is typed",
            );
            return Action::None;
        }
        let req = RescueRequest {
            source,
            source_identity: res.source_identity.clone(),
            dest: res.copy.clone(),
            target_kind: res.copy_kind,
            target_identity: res.copy_identity.clone(),
            mapfile: res.mapfile.clone(),
            resume: true,
            choices: Choices {
                retry_passes: 3,
                direct: true,
                ..Choices::default()
            },
        };
        self.job = Some(Job::new(JobRequest::Rescue(req.clone())));
        self.screen = Screen::Job;
        Action::StartRescue(req)
    }

    /// "Copy my files": the partitions of the copy, attaching an image file to a read-only loop
    /// device first.
    fn start_copy(&mut self) {
        let Some(res) = self.result.as_ref() else {
            return;
        };
        let (copy, kind) = (res.copy.clone(), res.copy_kind);
        let disk_path = match kind {
            TargetKind::Disk => copy.clone(),
            TargetKind::File => match self.host.attach_image(&copy) {
                Ok(dev) => {
                    self.copy.attached = Some(dev.clone());
                    dev
                }
                Err(e) => {
                    self.refuse(format!("Could not open the copy {}: {e}", copy.display()));
                    return;
                }
            },
        };
        self.refresh_disks();
        let damaged: Vec<(u32, u64)> = match self.result.as_ref().map(|r| &r.files) {
            Some(FilesState::Ready(d)) => d
                .by_partition
                .iter()
                .map(|(n, v)| (*n, v.len() as u64))
                .collect(),
            _ => Vec::new(),
        };
        let parts = self.parts_of(&disk_path, &damaged);
        let what = self.result.as_ref().map(|r| r.copy_identity.clone());
        {
            let f = &mut self.copy;
            f.what = format!("The rescued copy: {}", what.unwrap_or_default());
            f.parts = parts;
            f.part_cursor = 0;
            f.stage = CopyStage::Part;
            f.back = Some(Screen::Result);
        }
        self.screen = Screen::CopyPart;
    }

    /// The volumes of the disk `disk` (its partitions, or itself when it has none).
    pub(super) fn parts_of(&mut self, disk: &Path, damaged: &[(u32, u64)]) -> Vec<CopyPart> {
        let Some(d) = self.disks.iter().find(|d| d.path == disk).cloned() else {
            return Vec::new();
        };
        let vols: Vec<(PathBuf, u64, Option<String>, Option<String>)> = if d.partitions.is_empty() {
            vec![(d.path.clone(), d.size, None, None)]
        } else {
            d.partitions
                .iter()
                .map(|p| (p.path.clone(), p.size, p.fstype.clone(), p.label.clone()))
                .collect()
        };
        vols.into_iter()
            .map(|(dev, size, fstype, label)| {
                let number = super::partinfo::part_number(&dev, disk);
                // The copy is healthy: probing it is cheap and safe.
                let fstype = fstype.or_else(|| self.host.probe_fs(&dev));
                CopyPart {
                    damaged: damaged.iter().find(|(n, _)| *n == number).map(|x| x.1),
                    dev,
                    number,
                    size,
                    fstype,
                    label,
                }
            })
            .collect()
    }

    fn copy_flow(&mut self) -> Option<&mut CopyFlow> {
        Some(&mut self.copy)
    }

    pub(super) fn key_copy_part(&mut self, code: KeyCode) -> Action {
        let Some(f) = self.copy_flow() else {
            self.screen = Screen::Menu;
            return Action::None;
        };
        let n = f.parts.len();
        match code {
            KeyCode::Up | KeyCode::Char('k') => f.part_cursor = f.part_cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                f.part_cursor = (f.part_cursor + 1).min(n.saturating_sub(1))
            }
            KeyCode::Esc => self.end_copy(),
            KeyCode::Enter => {
                let Some(p) = f.parts.get(f.part_cursor).cloned() else {
                    self.refuse("The copy has no partition to open");
                    return Action::None;
                };
                if f.image.is_some() {
                    self.mount_image_part(&p);
                } else {
                    self.mount_copy_part(&p);
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Mounts the chosen partition read-only and opens the browser there to mark folders.
    fn mount_copy_part(&mut self, p: &CopyPart) {
        let Some(fs) = p.fstype.clone() else {
            self.refuse(format!("No filesystem found on {}", p.dev.display()));
            return;
        };
        // Another partition of the copy may be mounted from an earlier pick.
        if let Some(old) = self.copy_flow().and_then(|f| f.mount.take()) {
            self.host.sync();
            if let Err(e) = self.host.unmount(&old) {
                self.refuse(format!("Could not unmount {}: {e}", old.display()));
                return;
            }
            self.our_mounts.retain(|x| *x != old);
        }
        let dir = crate::mount::mount_point(&p.dev);
        match self.host.mount(&p.dev, &dir, &fs, true) {
            Ok(driver) => {
                self.our_mounts.push(dir.clone());
                if let Some(f) = self.copy_flow() {
                    f.mount = Some(dir.clone());
                    f.partition = p.number;
                    f.items.clear();
                }
                self.info(format!(
                    "Mounted {} ({driver}) read-only at {}: mark what to copy",
                    p.dev.display(),
                    dir.display()
                ));
                self.picker = Picker {
                    mode: PickMode::Select,
                    back: Some(Screen::CopyPart),
                    ..Picker::default()
                };
                self.open_dir(&dir);
                self.screen = Screen::Browse;
            }
            Err(e) => self.refuse(format!("Could not mount {}: {e}", p.dev.display())),
        }
    }

    /// Back in the browser of the mounted copy, with the marks kept.
    pub(super) fn reopen_copy_browser(&mut self) {
        let Some(f) = Some(&self.copy) else {
            return;
        };
        let (Some(root), marked) = (f.mount.clone(), f.items.clone()) else {
            return;
        };
        self.picker = Picker {
            mode: PickMode::Select,
            back: Some(Screen::CopyPart),
            marked,
            ..Picker::default()
        };
        self.open_dir(&root);
    }

    /// The marked entries are picked: now the destination folder, on another disk.
    pub(super) fn copy_items_picked(&mut self, items: Vec<PathBuf>) {
        if let Some(f) = self.copy_flow() {
            f.items = items;
        }
        self.open_places(PickMode::Folder);
        self.picker.back = Some(Screen::CopyConfirm);
    }

    /// The destination folder is picked: the safety policy decides, then the confirmation.
    pub(super) fn copy_dest_picked(&mut self, dest: PathBuf) {
        let mut reads: Vec<PathBuf> = Vec::new();
        match (&self.copy.image, &self.result) {
            (Some(img), _) => reads.push(img.clone()),
            (None, Some(res)) => {
                reads.push(res.copy.clone());
                reads.extend(res.source.clone());
            }
            (None, None) => return,
        }
        reads.extend(self.copy.attached.clone());
        reads.extend(self.copy.mount.clone());
        if let Err(why) = self.host.check_copy_dest(&dest, &reads) {
            self.refuse(format!("Refused: {why}"));
            return;
        }
        if let Some(f) = self.copy_flow() {
            f.dest = Some(dest);
            f.stage = CopyStage::Confirm;
        }
        self.screen = Screen::CopyConfirm;
    }

    pub(super) fn key_copy_confirm(&mut self, code: KeyCode) -> Action {
        let damaged = self.copy_damaged();
        let Some(f) = self.copy_flow() else {
            self.screen = Screen::Menu;
            return Action::None;
        };
        match (&f.stage, code) {
            (CopyStage::Confirm, KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right) => {
                f.choice = match f.choice {
                    DamagedChoice::Skip => DamagedChoice::Mark,
                    DamagedChoice::Mark => DamagedChoice::Skip,
                };
            }
            (CopyStage::Confirm, KeyCode::Esc) => {
                self.open_places(PickMode::Folder);
                self.picker.back = Some(Screen::CopyConfirm);
            }
            (CopyStage::Confirm, KeyCode::Enter) => {
                let (Some(root), Some(dest)) = (f.mount.clone(), f.dest.clone()) else {
                    return Action::None;
                };
                let req = CopyRequest {
                    root,
                    items: f.items.clone(),
                    dest,
                    damaged,
                    choice: f.choice,
                };
                f.stage = CopyStage::Running(CopyProgress::default());
                self.tasks.push(Task::Copy(req));
            }
            (CopyStage::Running(_), KeyCode::Char('a') | KeyCode::Esc) => {
                return Action::CancelTask;
            }
            (CopyStage::Done(_), KeyCode::Enter | KeyCode::Esc) => self.end_copy(),
            _ => {}
        }
        Action::None
    }

    /// The damaged files of the mounted partition, as the report names them.
    pub(super) fn copy_damaged(&self) -> Vec<String> {
        let Some(res) = self.result.as_ref().filter(|_| self.copy.image.is_none()) else {
            return Vec::new();
        };
        match &res.files {
            FilesState::Ready(d) => d
                .by_partition
                .iter()
                .find(|(n, _)| *n == self.copy.partition)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub(super) fn on_copy_progress(&mut self, p: CopyProgress) {
        if let Some(f) = self.copy_flow() {
            if matches!(f.stage, CopyStage::Running(_)) {
                f.stage = CopyStage::Running(p);
            }
        }
    }

    pub(super) fn on_copy_done(&mut self, r: Result<CopySummary, String>) {
        // Flushed before anyone unplugs the destination.
        self.host.sync();
        if let Some(f) = self.copy_flow() {
            f.stage = CopyStage::Done(r);
        }
    }

    /// Leaves "Copy my files": unmounts the copy and detaches what salvor attached.
    pub(super) fn end_copy(&mut self) {
        let Some(f) = self.copy_flow() else {
            self.screen = Screen::Menu;
            return;
        };
        let (mount, attached, back) = (f.mount.take(), f.attached.take(), f.back);
        *f = CopyFlow::default();
        if let Some(m) = mount {
            self.host.sync();
            match self.host.unmount(&m) {
                Ok(()) => self.our_mounts.retain(|x| *x != m),
                Err(e) => self.refuse(format!("Could not unmount {}: {e}", m.display())),
            }
        }
        if let Some(dev) = attached {
            if let Err(e) = self.host.detach_image(&dev) {
                self.refuse(format!("Could not detach {}: {e}", dev.display()));
            }
        }
        self.refresh_disks();
        self.screen = back.unwrap_or(Screen::Result);
    }
}
