//! Choosing where an image file goes, or which image to read, without typing its path: a list of
//! places (mounted filesystems, and partitions of attached disks that salvor can mount) and a
//! directory browser. The result lands in the path screen's input and is checked there, so the
//! refusals of typed paths apply to picked ones too.
//!
//! The disk under rescue (or being imaged, cloned, or written by a job) is never listed, never
//! probed and never mounted.

use super::app::{Action, App, Feature, JobRequest, Screen, Target};
use super::disks::{DiskRow, PartRow};
use ratatui::crossterm::event::KeyCode;
use std::path::{Path, PathBuf};

/// Whether the pick is a file to write (image, rescue image) or an image to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PickMode {
    #[default]
    Write,
    Read,
    /// Marking files and folders to copy out of a read-only mount.
    Select,
    /// A folder to copy files into (mounted read-write like [`PickMode::Write`]).
    Folder,
}

impl PickMode {
    /// The pick writes there: places are mounted read-write and read-only ones are refused.
    pub fn writes(self) -> bool {
        matches!(self, PickMode::Write | PickMode::Folder)
    }
}

/// A filesystem the user may put the file on (or read it from).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    /// The partition (or whole disk) holding it.
    pub dev: PathBuf,
    /// `sde Kingston DataTraveler 3.0`: the disk it is on, in words.
    pub disk: String,
    pub size: u64,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub mount: Option<PathBuf>,
    pub free: Option<u64>,
    /// salvor mounted it (so it may unmount it).
    pub ours: bool,
    /// Why it cannot be used for this pick, or `None`.
    pub note: Option<String>,
}

impl Place {
    pub fn name(&self) -> String {
        self.dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dev.display().to_string())
    }
}

/// One row of the directory browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
}

/// More entries than anyone scrolls through on a console; the rest are left out (typing a path
/// still reaches them).
pub const MAX_ENTRIES: usize = 5000;

/// The places list and the browser's state.
#[derive(Debug, Clone, Default)]
pub struct Picker {
    pub mode: PickMode,
    /// The path screen the pick returns to (ImagePath or ImgPath).
    pub back: Option<Screen>,
    pub places: Vec<Place>,
    pub cursor: usize,
    /// The last mount or unmount failure, shown with the places.
    pub error: Option<String>,
    /// The folder being browsed and its entries (`..` first unless at `/`).
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
    pub entry_cursor: usize,
    /// Entries left out beyond [`MAX_ENTRIES`].
    pub cut: usize,
    /// Typing the file name to save in `dir`.
    pub naming: bool,
    pub name: String,
    /// Files and folders marked for copying ([`PickMode::Select`]).
    pub marked: Vec<PathBuf>,
}

impl App {
    /// Disks that a job or the current flow reads or writes as a whole: never listed as places,
    /// never probed, never mounted.
    pub fn busy_disks(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let fl = &self.flow;
        v.extend(fl.source.as_ref().map(|s| s.path.clone()));
        if let Some(Target::Disk(d)) = &fl.target {
            v.push(d.path.clone());
        }
        v.extend(fl.img.target.as_ref().map(|d| d.path.clone()));
        // The rescue whose files are copied: its source and its copy (and the copy's loop
        // device) are read, never a place to copy to.
        if let Some(r) = &self.result {
            v.extend(r.source.clone());
            v.push(r.copy.clone());
        }
        v.extend(self.copy.attached.clone());
        if let Some(job) = self.job.as_ref().filter(|j| j.state.is_active()) {
            match &job.request {
                JobRequest::Rescue(r) => {
                    v.push(r.source.clone());
                    v.push(r.dest.clone());
                }
                JobRequest::Image(r) => {
                    if matches!(r.feature, Feature::Image | Feature::Clone) {
                        v.push(r.input.clone());
                    }
                    v.extend(r.output.clone());
                }
            }
        }
        v
    }

    fn is_busy(&self, d: &DiskRow, busy: &[PathBuf]) -> bool {
        busy.iter()
            .any(|b| *b == d.path || d.partitions.iter().any(|p| p.path == *b))
    }

    /// Opens the places list from a path screen.
    pub(super) fn open_places(&mut self, mode: PickMode) {
        let before = self
            .picker
            .places
            .get(self.picker.cursor)
            .map(|p| p.dev.clone());
        self.picker = Picker {
            mode,
            back: Some(self.screen),
            ..Default::default()
        };
        self.refresh_disks();
        self.build_places();
        // Start on the place of the path typed so far, else where the user was last time, else
        // on the first place that can be used.
        let typed = PathBuf::from(self.flow.input.trim());
        let places = &self.picker.places;
        let holding = places
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.mount.as_ref()?)))
            .filter(|(_, m)| typed.starts_with(m))
            .max_by_key(|(_, m)| m.as_os_str().len())
            .map(|(i, _)| i);
        self.picker.cursor = holding
            .or_else(|| before.and_then(|b| places.iter().position(|p| p.dev == b)))
            .or_else(|| places.iter().position(|p| p.note.is_none()))
            .unwrap_or(0);
        self.screen = Screen::Places;
    }

    /// Lists the places from the current disk list, keeping the cursor on the same device.
    pub(super) fn build_places(&mut self) {
        let keep = self
            .picker
            .places
            .get(self.picker.cursor)
            .map(|p| p.dev.clone());
        let busy = self.busy_disks();
        let write = self.picker.mode.writes();
        let mut places = Vec::new();
        // Cloned: probing below updates the cache while the disks are walked.
        let disks = self.disks.clone();
        for d in &disks {
            // The boot medium is a live system's; busy disks must not be read by a probe.
            if d.is_boot || self.is_busy(d, &busy) {
                continue;
            }
            let disk = match &d.backing_file {
                Some(b) => format!("{} file {}", d.name(), b.display()),
                None => format!("{} {}", d.name(), d.model_or_unknown()),
            };
            // A disk without partitions may hold a filesystem itself (a "superfloppy" stick).
            let whole = [PartRow {
                path: d.path.clone(),
                size: d.size,
                mountpoints: d.mountpoints.clone(),
                ..PartRow::default()
            }];
            let vols = if d.partitions.is_empty() {
                &whole[..]
            } else {
                &d.partitions[..]
            };
            for v in vols {
                let (dev, size, mounts) = (&v.path, v.size, &v.mountpoints);
                if size == 0 || dev.as_os_str().is_empty() {
                    continue;
                }
                let mut place = Place {
                    dev: dev.clone(),
                    disk: disk.clone(),
                    size,
                    label: v.label.clone(),
                    ..Place::default()
                };
                if let Some(m) = mounts.first() {
                    place.fstype = v.fstype.clone();
                    place.free = self.host.free_space(m);
                    place.ours = self.our_mounts.contains(m);
                    if write && self.host.is_read_only_fs(m) {
                        place.note = Some("mounted read-only".into());
                    }
                    place.mount = Some(m.clone());
                } else {
                    place.fstype = self.probe_cached(dev, size);
                    let ro = !write;
                    place.note = match &place.fstype {
                        None => Some("no filesystem found".into()),
                        Some(f) => crate::mount::drivers_for(f, ro)
                            .err()
                            .map(|why| format!("{f}: {why}")),
                    };
                    if place.note.is_none() && write && d.read_only {
                        place.note = Some("read-only disk".into());
                    }
                }
                places.push(place);
            }
        }
        self.picker.places = places;
        let n = self.picker.places.len();
        self.picker.cursor = keep
            .and_then(|k| self.picker.places.iter().position(|p| p.dev == k))
            .unwrap_or(self.picker.cursor.min(n.saturating_sub(1)));
    }

    /// The filesystem type of an unmounted volume, read once per device and size.
    fn probe_cached(&mut self, dev: &Path, size: u64) -> Option<String> {
        let key = (dev.to_path_buf(), size);
        if let Some(v) = self.fs_cache.get(&key) {
            return v.clone();
        }
        let v = self.host.probe_fs(dev);
        self.fs_cache.insert(key, v.clone());
        v
    }

    pub(super) fn key_places(&mut self, code: KeyCode) -> Action {
        let n = self.picker.places.len();
        let cur = self.picker.cursor;
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.picker.cursor = cur.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.picker.cursor = (cur + 1).min(n.saturating_sub(1))
            }
            KeyCode::Char('r') => {
                self.fs_cache.clear();
                self.refresh_disks();
                self.build_places();
                self.info("Places refreshed");
            }
            KeyCode::Char('u') => self.unmount_place(),
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => {
                let no_dest = self.copy.dest.is_none();
                self.screen = match self.picker.back {
                    // No folder chosen yet: back to marking files in the copy.
                    Some(Screen::CopyConfirm) if no_dest => {
                        self.reopen_copy_browser();
                        Screen::Browse
                    }
                    b => b.unwrap_or(Screen::Menu),
                };
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => self.enter_place(),
            _ => {}
        }
        Action::None
    }

    fn enter_place(&mut self) {
        let Some(p) = self.picker.places.get(self.picker.cursor).cloned() else {
            self.refuse("No place to choose: plug in a disk (the list refreshes by itself)");
            return;
        };
        if let Some(why) = &p.note {
            self.refuse(format!("Cannot use {}: {why}", p.name()));
            return;
        }
        let dir = match &p.mount {
            Some(m) => m.clone(),
            None => match self.mount_place(&p) {
                Some(m) => m,
                None => return,
            },
        };
        self.open_dir(&dir);
        if self.picker.error.is_none() {
            self.screen = Screen::Browse;
        }
    }

    /// Mounts an unmounted place under /mnt (read-write for a file to write, read-only for an
    /// image to read); returns the mount point, or `None` after saying why not.
    fn mount_place(&mut self, p: &Place) -> Option<PathBuf> {
        // Asked again: the list may be older than a job started meanwhile.
        let busy = self.busy_disks();
        let owner = self
            .disks
            .iter()
            .find(|d| d.path == p.dev || d.partitions.iter().any(|x| x.path == p.dev));
        if owner.is_none_or(|d| d.is_boot || self.is_busy(d, &busy)) {
            self.refuse(format!("Refused: {} is not offered here", p.dev.display()));
            return None;
        }
        let fs = p.fstype.clone().unwrap_or_default();
        let dir = crate::mount::mount_point(&p.dev);
        let in_use = self.disks.iter().any(|d| {
            d.mountpoints.contains(&dir)
                || d.partitions.iter().any(|x| x.mountpoints.contains(&dir))
        });
        let read_only = !self.picker.mode.writes();
        let result = if in_use {
            Err(format!("{} is already in use", dir.display()))
        } else {
            self.host.mount(&p.dev, &dir, &fs, read_only)
        };
        match result {
            Ok(driver) => {
                self.our_mounts.push(dir.clone());
                self.picker.error = None;
                self.refresh_disks();
                self.build_places();
                self.info(format!(
                    "Mounted {} ({driver}) {} at {}",
                    p.name(),
                    if read_only { "read-only" } else { "read-write" },
                    dir.display()
                ));
                Some(dir)
            }
            Err(e) => {
                let msg = format!("Could not mount {}: {e}", p.dev.display());
                self.picker.error = Some(msg.clone());
                self.refuse(msg);
                None
            }
        }
    }

    fn unmount_place(&mut self) {
        let Some(p) = self.picker.places.get(self.picker.cursor).cloned() else {
            return;
        };
        let Some(m) = p.mount.clone() else {
            self.refuse(format!("{} is not mounted", p.name()));
            return;
        };
        if !p.ours {
            self.refuse(format!(
                "salvor did not mount {}: unmount it from a shell if needed",
                m.display()
            ));
            return;
        }
        if self.job_uses(&m) {
            self.refuse(format!("A job uses {}: wait for it first", m.display()));
            return;
        }
        self.host.sync();
        match self.host.unmount(&m) {
            Ok(()) => {
                self.our_mounts.retain(|x| *x != m);
                self.picker.error = None;
                self.refresh_disks();
                self.build_places();
                self.info(format!(
                    "Unmounted {}: {} may be unplugged",
                    m.display(),
                    p.name()
                ));
            }
            Err(e) => {
                let msg = format!("Could not unmount {}: {e}", m.display());
                self.picker.error = Some(msg.clone());
                self.refuse(msg);
            }
        }
    }

    /// Whether an active job reads or writes a file under `dir`.
    fn job_uses(&self, dir: &Path) -> bool {
        let Some(job) = self.job.as_ref().filter(|j| j.state.is_active()) else {
            return false;
        };
        let paths: Vec<&Path> = match &job.request {
            JobRequest::Rescue(r) => vec![&r.dest, &r.mapfile],
            JobRequest::Image(r) => {
                let mut v = vec![r.input.as_path()];
                v.extend(r.output.as_deref());
                v
            }
        };
        paths.iter().any(|p| p.starts_with(dir))
    }

    /// Unmounts, after a sync, everything salvor mounted (when the UI quits). Returns what
    /// could not be unmounted, in words.
    pub fn release_mounts(&mut self) -> Vec<String> {
        if self.our_mounts.is_empty() {
            return Vec::new();
        }
        self.host.sync();
        let mut errors = Vec::new();
        // Newest first, in case one was mounted inside another.
        while let Some(m) = self.our_mounts.pop() {
            if let Err(e) = self.host.unmount(&m) {
                errors.push(format!("could not unmount {}: {e}", m.display()));
            }
        }
        errors
    }

    /// Lists `dir` for the browser; on failure keeps the previous folder and says why.
    pub(super) fn open_dir(&mut self, dir: &Path) {
        match self.host.read_dir(dir) {
            Ok(mut list) => {
                list.sort_by(|a, b| {
                    b.is_dir
                        .cmp(&a.is_dir)
                        .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
                });
                let pk = &mut self.picker;
                pk.cut = list.len().saturating_sub(MAX_ENTRIES);
                list.truncate(MAX_ENTRIES);
                pk.entries = Vec::with_capacity(list.len() + 1);
                if dir.parent().is_some() {
                    pk.entries.push(Entry {
                        name: "..".into(),
                        is_dir: true,
                        size: 0,
                    });
                }
                pk.entries.extend(list);
                pk.dir = dir.to_path_buf();
                pk.entry_cursor = 0;
                pk.naming = false;
                pk.error = None;
            }
            Err(e) => {
                let msg = format!("Cannot open {}: {e}", dir.display());
                self.picker.error = Some(msg.clone());
                self.refuse(msg);
            }
        }
    }

    fn browse_up(&mut self) {
        let here = self.picker.dir.clone();
        if let Some(up) = here.parent() {
            self.open_dir(up);
            // Back on the folder we came from.
            let name = here.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(i) = self
                .picker
                .entries
                .iter()
                .position(|e| Some(&e.name) == name.as_ref())
            {
                self.picker.entry_cursor = i;
            }
        }
    }

    /// The default name for a file saved here: from the source disk's identity.
    fn default_file_name(&self) -> String {
        let ext = if self.flow.feature == Feature::Rescue {
            "img"
        } else {
            "img.zst"
        };
        self.flow.source.as_ref().map_or_else(
            || format!("disk.{ext}"),
            |d| super::imaging::file_name(d, ext),
        )
    }

    pub(super) fn key_browse(&mut self, code: KeyCode) -> Action {
        if self.picker.naming {
            return self.key_naming(code);
        }
        let n = self.picker.entries.len();
        let cur = self.picker.entry_cursor;
        let write = self.picker.mode == PickMode::Write;
        let mode = self.picker.mode;
        match (mode, code) {
            (PickMode::Select, KeyCode::Char(' ')) => {
                if let Some(e) = self.picker.entries.get(cur).filter(|e| e.name != "..") {
                    let p = self.picker.dir.join(&e.name);
                    let pk = &mut self.picker;
                    match pk.marked.iter().position(|m| *m == p) {
                        Some(i) => {
                            pk.marked.remove(i);
                        }
                        None => pk.marked.push(p),
                    }
                    pk.entry_cursor = (cur + 1).min(n.saturating_sub(1));
                }
                return Action::None;
            }
            (PickMode::Select, KeyCode::Char('c')) => {
                // Nothing marked: the folder shown, whole.
                let items = if self.picker.marked.is_empty() {
                    self.picker
                        .entries
                        .iter()
                        .filter(|e| e.name != "..")
                        .map(|e| self.picker.dir.join(&e.name))
                        .collect()
                } else {
                    self.picker.marked.clone()
                };
                if items.is_empty() {
                    self.refuse("Nothing to copy here: mark files or folders with Space");
                } else {
                    self.copy_items_picked(items);
                }
                return Action::None;
            }
            (PickMode::Select, KeyCode::Esc) => {
                self.screen = self.picker.back.unwrap_or(Screen::Menu);
                return Action::None;
            }
            (PickMode::Folder, KeyCode::Char('s') | KeyCode::Char('c')) => {
                let dir = self.picker.dir.clone();
                return self.submit_pick(dir);
            }
            _ => {}
        }
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.picker.entry_cursor = cur.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.picker.entry_cursor = (cur + 1).min(n.saturating_sub(1))
            }
            KeyCode::PageUp => self.picker.entry_cursor = cur.saturating_sub(10),
            KeyCode::PageDown => self.picker.entry_cursor = (cur + 10).min(n.saturating_sub(1)),
            KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => self.browse_up(),
            KeyCode::Esc => {
                self.picker.error = None;
                self.build_places();
                self.screen = Screen::Places;
            }
            KeyCode::Char('s') if write => {
                self.picker.name = self.default_file_name();
                self.picker.naming = true;
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                let Some(e) = self.picker.entries.get(cur).cloned() else {
                    return Action::None;
                };
                if e.name == ".." {
                    self.browse_up();
                } else if e.is_dir {
                    let d = self.picker.dir.join(&e.name);
                    self.open_dir(&d);
                } else if matches!(mode, PickMode::Select | PickMode::Folder) {
                    // Files are marked with Space; a folder is picked with c.
                } else if write {
                    // Saving over an existing file: its name is offered, the path screen warns.
                    self.picker.name = e.name;
                    self.picker.naming = true;
                } else {
                    let p = self.picker.dir.join(&e.name);
                    return self.submit_pick(p);
                }
            }
            _ => {}
        }
        Action::None
    }

    fn key_naming(&mut self, code: KeyCode) -> Action {
        if super::app::edit_text(&mut self.picker.name, code) {
            return Action::None;
        }
        match code {
            KeyCode::Esc => self.picker.naming = false,
            KeyCode::Enter => {
                let name = self.picker.name.trim().to_string();
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    self.refuse("Type a file name (without /)");
                } else {
                    let p = self.picker.dir.join(name);
                    return self.submit_pick(p);
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Puts the picked path in the path screen's input and accepts it there, so that it goes
    /// through the same checks as a typed path.
    fn submit_pick(&mut self, path: PathBuf) -> Action {
        self.picker.naming = false;
        self.flow.input = path.display().to_string();
        match self.picker.back {
            Some(Screen::ImagePath) => {
                self.screen = Screen::ImagePath;
                self.key_image_path(KeyCode::Enter)
            }
            Some(Screen::ImgPath) => {
                self.screen = Screen::ImgPath;
                self.key_img_path(KeyCode::Enter)
            }
            Some(Screen::MapfilePath) => {
                self.screen = Screen::MapfilePath;
                self.key_mapfile_path(KeyCode::Enter)
            }
            Some(Screen::CopyConfirm) => {
                self.copy_dest_picked(path);
                Action::None
            }
            Some(Screen::BrowsePath) => {
                self.screen = Screen::BrowsePath;
                self.key_browse_path(KeyCode::Enter)
            }
            _ => Action::None,
        }
    }
}
