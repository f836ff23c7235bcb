//! "Browse an image": pick an image file (typed, or through the places list), pick a partition
//! from its partition table, and the image is mounted read-only by a worker the way `salvor
//! mount` does it (the image served as a FUSE file, a read-only loop device on it, the
//! filesystem mounted read-only; [`crate::serve::mount::mount_export`]). Then the copy flow of
//! [`super::result`] takes over: the folder browser marks what to copy, a folder on another disk
//! receives it through the one copier, and unmounting the directory ends the worker.

use super::app::{Action, App, Screen};
use super::places::PickMode;
use super::result::{CopyFlow, CopyPart, CopyStage};
use super::worker::Task;
use ratatui::crossterm::event::KeyCode;
use std::path::{Path, PathBuf};

/// Where a partition of a browsed image is mounted: `/mnt/image-p3` (`image` for a whole one).
pub fn image_mount_dir(partition: Option<u32>) -> PathBuf {
    let name = match partition {
        Some(n) => format!("image-p{n}"),
        None => "image".into(),
    };
    Path::new(crate::mount::MOUNT_BASE).join(name)
}

impl App {
    pub(super) fn open_browse_image(&mut self) {
        if self.copy.stage != CopyStage::Idle {
            self.refuse("Files are being copied: finish that first");
            return;
        }
        self.flow.input.clear();
        self.screen = Screen::BrowsePath;
    }

    pub(super) fn key_browse_path(&mut self, code: KeyCode) -> Action {
        if self.edit_input(code) {
            return Action::None;
        }
        match code {
            KeyCode::Tab => self.open_places(PickMode::Read),
            KeyCode::Esc => self.screen = Screen::Menu,
            KeyCode::Enter => {
                let path = PathBuf::from(self.flow.input.trim());
                if !path.is_absolute() {
                    self.refuse("Refused: type a full path starting with /");
                    return Action::None;
                }
                match self.host.image_info(&path) {
                    Ok(view) => self.image_parts(path, &view),
                    Err(e) => self.refuse(format!("Cannot read the image: {e}")),
                }
            }
            _ => {}
        }
        Action::None
    }

    /// The partitions of the image's table (or the whole image) to choose from.
    fn image_parts(&mut self, path: PathBuf, view: &super::imaging::ImageView) {
        let mut parts: Vec<CopyPart> = view
            .table
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| !p.extended)
            .map(|p| CopyPart {
                dev: PathBuf::from(format!("#{}", p.number)),
                number: p.number,
                size: p.size,
                fstype: p.type_name.clone(),
                label: p.name.clone(),
                damaged: None,
            })
            .collect();
        if parts.is_empty() {
            parts.push(CopyPart {
                dev: PathBuf::from("whole"),
                number: 0,
                size: view.size,
                ..CopyPart::default()
            });
        }
        self.copy = CopyFlow {
            stage: CopyStage::Part,
            what: format!("The image {}", path.display()),
            image: Some(path),
            parts,
            back: Some(Screen::Menu),
            ..CopyFlow::default()
        };
        self.screen = Screen::CopyPart;
    }

    /// Asks the worker to mount partition `p` of the browsed image.
    pub(super) fn mount_image_part(&mut self, p: &CopyPart) {
        let Some(image) = self.copy.image.clone() else {
            return;
        };
        if self.copy.mounting {
            self.info("Mounting: wait for it");
            return;
        }
        // Another partition from an earlier pick: unmounting it ends its worker.
        if let Some(old) = self.copy.mount.take() {
            self.host.sync();
            if let Err(e) = self.host.unmount(&old) {
                self.refuse(format!("Could not unmount {}: {e}", old.display()));
                return;
            }
            self.our_mounts.retain(|x| *x != old);
        }
        let partition = (p.number > 0).then_some(p.number);
        self.copy.mounting = true;
        self.copy.partition = p.number;
        self.info(format!(
            "Mounting {} of the image read-only...",
            p.dev.display()
        ));
        self.tasks.push(Task::MountImage {
            image,
            dir: image_mount_dir(partition),
            partition,
        });
    }

    /// The worker mounted the image (or could not): the browser opens there to mark files.
    pub(super) fn on_image_mounted(&mut self, r: Result<(PathBuf, String), String>) {
        self.copy.mounting = false;
        match r {
            Ok((dir, fs)) => {
                self.our_mounts.push(dir.clone());
                self.copy.mount = Some(dir.clone());
                self.copy.items.clear();
                self.info(format!(
                    "Mounted ({fs}) read-only at {}: mark what to copy",
                    dir.display()
                ));
                self.picker = super::places::Picker {
                    mode: PickMode::Select,
                    back: Some(Screen::CopyPart),
                    ..Default::default()
                };
                self.open_dir(&dir);
                self.screen = Screen::Browse;
            }
            Err(e) => self.refuse(format!("Could not mount the image: {e}")),
        }
    }

    /// The worker's mount ended (after the directory was unmounted).
    pub(super) fn on_image_released(&mut self, r: Result<(), String>) {
        if let Err(e) = r {
            self.refuse(format!("Releasing the image: {e}"));
        }
    }
}
