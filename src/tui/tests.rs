//! Snapshot and state-machine tests of the TUI on `TestBackend`, with fixture disks.

use super::app::*;
use super::disks::{DiskRow, PartRow};
use super::imaging::ImageResult;
use super::sysinfo::{SecureBoot, SystemInfo};
use super::worker::WorkerMsg;
use super::*;
use crate::mapfile::{Block, BlockStatus, Mapfile, Phase};
use crate::progress::{
    Direction, ImageEvent, ImagePhase, ImageSnapshot, RescueEvent, RescueSnapshot,
};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GB: u64 = 1_000_000_000;

fn part(path: &str, size: u64, fs: &str, label: Option<&str>, mount: Option<&str>) -> PartRow {
    PartRow {
        path: path.into(),
        size,
        fstype: Some(fs.into()),
        label: label.map(Into::into),
        mountpoints: mount.into_iter().map(PathBuf::from).collect(),
        ..PartRow::default()
    }
}

/// A rescue stick (boot), the failing disk, a mounted backup disk, a blank disk and a loop device.
fn fixture_disks() -> Vec<DiskRow> {
    vec![
        DiskRow {
            path: "/dev/sda".into(),
            model: Some("SanDisk Ultra Fit".into()),
            serial: Some("4C530001230415117095".into()),
            size: 32_010_928_128,
            transport: "usb".into(),
            removable: true,
            is_boot: true,
            partitions: vec![part(
                "/dev/sda1",
                32_009_879_552,
                "vfat",
                Some("SALVOR"),
                Some("/run/live/medium"),
            )],
            ..DiskRow::default()
        },
        DiskRow {
            path: "/dev/sdb".into(),
            model: Some("WDC WD10EZEX-08WN4A0".into()),
            serial: Some("WD-WCC6Y3KJ1234".into()),
            size: 1_000_204_886_016,
            transport: "sata".into(),
            partitions: vec![
                part("/dev/sdb1", 104_857_600, "vfat", Some("SYSTEM"), None),
                part(
                    "/dev/sdb2",
                    1_000_000_000_000,
                    "ntfs",
                    Some("Windows"),
                    None,
                ),
            ],
            ..DiskRow::default()
        },
        DiskRow {
            path: "/dev/sdc".into(),
            model: Some("Seagate Expansion HDD".into()),
            serial: Some("NA8F1234".into()),
            size: 2_000_398_934_016,
            transport: "usb".into(),
            partitions: vec![part(
                "/dev/sdc1",
                2_000_397_885_440,
                "ext4",
                Some("backup"),
                Some("/mnt/backup"),
            )],
            ..DiskRow::default()
        },
        DiskRow {
            path: "/dev/sdd".into(),
            model: Some("Samsung SSD 870 EVO 2TB".into()),
            serial: Some("S6PNNS0T123456A".into()),
            size: 2_000_398_934_016,
            transport: "sata".into(),
            ..DiskRow::default()
        },
        DiskRow {
            path: "/dev/loop0".into(),
            size: 64 << 20,
            transport: "loop".into(),
            backing_file: Some("/root/test.img".into()),
            ..DiskRow::default()
        },
    ]
}

/// What a test changes or observes while the app owns its host.
#[derive(Default)]
struct Shared {
    /// Disks plugged in after the start, and nodes unplugged.
    plugged: Vec<DiskRow>,
    unplugged: Vec<PathBuf>,
    /// Mounts made through the host: (device, mount point, fs type, read-only).
    mounts: Vec<(PathBuf, PathBuf, String, bool)>,
    unmounts: Vec<PathBuf>,
    /// Devices whose first bytes were read to tell their filesystem.
    probes: Vec<PathBuf>,
    syncs: usize,
    /// The next mount fails with this.
    mount_error: Option<String>,
    /// Image files attached to loop devices, and loop devices detached.
    attached: Vec<PathBuf>,
    detached: Vec<PathBuf>,
}

struct FakeHost {
    disks: Vec<DiskRow>,
    /// A fake sysfs tree for the hot-plug poll; none: nothing ever changes.
    sysfs: Option<PathBuf>,
    shared: Arc<Mutex<Shared>>,
    /// What a probe of an unmounted volume finds.
    fs_types: Vec<(PathBuf, String)>,
    /// Files with sizes, for the browser.
    files: Vec<(PathBuf, u64)>,
    read_only_dirs: Vec<PathBuf>,
    existing: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
    images: Vec<ImageView>,
    /// What the engine's target policy refuses beyond the TUI's own checks.
    engine_refuses: Vec<(PathBuf, String)>,
    /// An existing mapfile records another disk: why.
    mapfile_mismatch: Option<String>,
}

impl FakeHost {
    fn new() -> FakeHost {
        FakeHost {
            disks: fixture_disks(),
            sysfs: None,
            shared: Arc::default(),
            fs_types: Vec::new(),
            files: Vec::new(),
            read_only_dirs: Vec::new(),
            existing: [PathBuf::from(IMG)].into_iter().collect(),
            dirs: ["/", "/mnt", "/mnt/backup", "/root", "/tmp", "/mnt/sick"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            images: vec![fixture_image()],
            engine_refuses: Vec::new(),
            mapfile_mismatch: None,
        }
    }
}

/// A 1 TB Windows disk imaged onto the backup disk.
fn fixture_image() -> ImageView {
    let gpt = |number, size, ty: &str, name: &str| crate::image::PartitionInfo {
        number,
        first_lba: 2048,
        last_lba: 2048 + size / 512,
        size,
        type_id: "x".into(),
        type_name: Some(ty.into()),
        name: Some(name.into()),
        guid: None,
        extended: false,
    };
    ImageView {
        path: "/mnt/backup/wd.img.zst".into(),
        salvor: true,
        size: 1_000_204_886_016,
        stored: Some(212_000_000_000),
        label: Some("Anna's laptop".into()),
        source: Some("/dev/sdb, WDC WD10EZEX-08WN4A0, WD-WCC6Y3KJ1234".into()),
        created: Some("2025-03-01T10:20:30Z".into()),
        logical_sector: 512,
        table: Some(crate::image::PartitionTable {
            kind: "gpt".into(),
            disk_guid: None,
            partitions: vec![
                gpt(1, 104_857_600, "EFI System", "EFI system partition"),
                gpt(
                    2,
                    16_777_216,
                    "Microsoft reserved",
                    "Microsoft reserved partition",
                ),
                gpt(
                    3,
                    999_000_000_000,
                    "Microsoft basic data",
                    "Basic data partition",
                ),
            ],
        }),
        holes: 0,
    }
}

impl Host for FakeHost {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String> {
        let sh = self.shared.lock().unwrap();
        let mut v: Vec<DiskRow> = self
            .disks
            .iter()
            .filter(|d| !sh.unplugged.contains(&d.path))
            .cloned()
            .collect();
        v.extend(sh.plugged.iter().cloned());
        // An image attached to a loop device shows up as a disk with its partition.
        for (i, img) in sh.attached.iter().enumerate() {
            if sh.detached.len() > i {
                continue;
            }
            v.push(DiskRow {
                path: "/dev/loop7".into(),
                size: 1_000_204_886_016,
                transport: "loop".into(),
                backing_file: Some(img.clone()),
                read_only: true,
                partitions: vec![part(
                    "/dev/loop7p1",
                    1_000_000_000_000,
                    "ext4",
                    Some("family photos"),
                    None,
                )],
                ..DiskRow::default()
            });
        }
        for (dev, dir, fs, _) in &sh.mounts {
            for d in &mut v {
                if d.path == *dev {
                    d.mountpoints.push(dir.clone());
                }
                for p in d.partitions.iter_mut().filter(|p| p.path == *dev) {
                    p.mountpoints.push(dir.clone());
                    p.fstype = Some(fs.clone());
                }
            }
        }
        Ok(v)
    }
    fn probe_fs(&self, dev: &Path) -> Option<String> {
        self.shared.lock().unwrap().probes.push(dev.to_path_buf());
        self.fs_types
            .iter()
            .find(|(p, _)| p == dev)
            .map(|(_, f)| f.clone())
    }
    fn mount(&self, dev: &Path, dir: &Path, fs: &str, read_only: bool) -> Result<String, String> {
        let mut sh = self.shared.lock().unwrap();
        if let Some(e) = sh.mount_error.take() {
            return Err(e);
        }
        sh.mounts
            .push((dev.into(), dir.into(), fs.into(), read_only));
        Ok(if fs == "ntfs" {
            "ntfs3".into()
        } else {
            fs.into()
        })
    }
    fn unmount(&self, dir: &Path) -> Result<(), String> {
        let mut sh = self.shared.lock().unwrap();
        sh.mounts.retain(|(_, d, _, _)| d != dir);
        sh.unmounts.push(dir.into());
        Ok(())
    }
    fn sync(&self) {
        self.shared.lock().unwrap().syncs += 1;
    }
    fn read_dir(&self, dir: &Path) -> Result<Vec<Entry>, String> {
        if !self.is_dir(dir) {
            return Err("No such file or directory".into());
        }
        let mut v: Vec<Entry> = self
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(dir))
            .map(|d| Entry {
                name: d.file_name().unwrap().to_string_lossy().into(),
                is_dir: true,
                size: 0,
            })
            .collect();
        v.extend(
            self.files
                .iter()
                .filter(|(f, _)| f.parent() == Some(dir))
                .map(|(f, size)| Entry {
                    name: f.file_name().unwrap().to_string_lossy().into(),
                    is_dir: false,
                    size: *size,
                }),
        );
        Ok(v)
    }
    fn is_read_only_fs(&self, dir: &Path) -> bool {
        let sh = self.shared.lock().unwrap();
        sh.mounts
            .iter()
            .any(|(_, d, _, ro)| *ro && dir.starts_with(d))
            || self.read_only_dirs.iter().any(|d| dir.starts_with(d))
    }
    fn block_listing(&self) -> Vec<(String, u64)> {
        self.sysfs
            .as_deref()
            .map(crate::blockdev::block_listing_at)
            .unwrap_or_default()
    }
    fn exists(&self, p: &Path) -> bool {
        self.existing.contains(p) || self.files.iter().any(|(f, _)| f == p) || self.is_dir(p)
    }
    fn is_dir(&self, p: &Path) -> bool {
        self.dirs.contains(p) || self.shared.lock().unwrap().mounts.iter().any(|m| m.1 == p)
    }
    fn is_block_device(&self, p: &Path) -> bool {
        p.starts_with("/dev/")
    }
    fn canonicalize(&self, p: &Path) -> PathBuf {
        p.to_path_buf()
    }
    fn current_dir(&self) -> PathBuf {
        "/root".into()
    }
    fn image_info(&self, p: &Path) -> Result<ImageView, String> {
        self.images
            .iter()
            .find(|i| i.path == p)
            .cloned()
            .ok_or_else(|| format!("{}: not an image salvor can read", p.display()))
    }
    fn free_space(&self, dir: &Path) -> Option<u64> {
        dir.starts_with("/mnt/backup").then_some(900 * GB)
    }
    fn check_target(&self, check: &TargetCheck) -> Result<(), String> {
        match self.engine_refuses.iter().find(|(p, _)| *p == check.target) {
            Some((_, why)) => Err(why.clone()),
            None => Ok(()),
        }
    }
    fn is_volatile(&self, p: &Path) -> bool {
        // The rescue environment's root (and /tmp) are in memory.
        p.starts_with("/root") || p.starts_with("/tmp")
    }
    fn inspect_mapfile(&self, mapfile: &Path, _source: &Path) -> MapfileView {
        if !self.existing.contains(mapfile) {
            return MapfileView::New;
        }
        let mut map = Mapfile::new(1_000_204_886_016);
        map.set(0, 600_000_000_000, BlockStatus::Finished);
        map.set(600_000_000_000, 4096, BlockStatus::BadSector);
        MapfileView::Existing {
            summary: crate::rescue::job::MapfileSummary {
                source: Some(
                    "size=1000204886016 model=WDC_WD10EZEX-08WN4A0 serial=WD-WCC6Y3KJ1234".into(),
                ),
                totals: map.totals(),
                size: map.end(),
            },
            mismatch: self.mapfile_mismatch.clone(),
        }
    }
    fn check_rescue_paths(&self, source: &Path, dest: &Path, mapfile: &Path) -> Result<(), String> {
        if mapfile == source || mapfile == dest {
            return Err(format!(
                "refusing to write {}: the mapfile is the same file as the source or destination",
                mapfile.display()
            ));
        }
        Ok(())
    }
    fn attach_image(&self, p: &Path) -> Result<PathBuf, String> {
        self.shared.lock().unwrap().attached.push(p.to_path_buf());
        Ok("/dev/loop7".into())
    }
    fn detach_image(&self, dev: &Path) -> Result<(), String> {
        self.shared.lock().unwrap().detached.push(dev.to_path_buf());
        Ok(())
    }
    fn check_copy_dest(&self, dest: &Path, reads: &[PathBuf]) -> Result<(), String> {
        // Like the policy: a folder on something the copy reads is refused.
        match reads.iter().find(|r| dest.starts_with(r)) {
            Some(r) => Err(format!(
                "refusing to write {}: it is stored on {}, which is read",
                dest.display(),
                r.display()
            )),
            None => Ok(()),
        }
    }
    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            kernel: "Linux 6.12.9-amd64".into(),
            cpu: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            mem_total: 8 * GB,
            mem_available: 6 * GB,
            secure_boot: Some(SecureBoot::On),
            lockdown: Some("integrity".into()),
            version: "0.1.0".into(),
        }
    }
}

fn app() -> App {
    App::new(Box::new(FakeHost::new()))
}

fn app_with(host: FakeHost) -> App {
    App::new(Box::new(host))
}

fn key(app: &mut App, code: KeyCode) -> Action {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn down(app: &mut App, n: usize) {
    for _ in 0..n {
        key(app, KeyCode::Down);
    }
}

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(app, f)).unwrap();
    t
}

/// Snapshots a screen at the serial-console size and at a roomy size.
fn snap(name: &str, app: &App) {
    let small = render(app, 80, 24);
    insta::assert_snapshot!(format!("{name}_80x24"), small.backend());
    let big = render(app, 120, 40);
    insta::assert_snapshot!(format!("{name}_120x40"), big.backend());
}

/// Menu → Rescue → source sdb → image file → mapfile screen.
fn to_mapfile(app: &mut App, image: &str) {
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Source);
    down(app, 1);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Dest);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::ImagePath);
    typ(app, image);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Mapfile, "status: {:?}", app.status);
}

fn to_confirm_file(app: &mut App) {
    to_mapfile(app, "/mnt/backup/wd.img");
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Options);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Confirm);
}

/// Menu → Rescue → source sdb → disk sdd → confirm.
fn to_confirm_disk(app: &mut App) {
    key(app, KeyCode::Enter);
    down(app, 1);
    key(app, KeyCode::Enter);
    down(app, 4);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Mapfile, "status: {:?}", app.status);
    key(app, KeyCode::Enter);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Confirm);
}

// ----- state machine -----

fn screen_text(app: &App, w: u16, h: u16) -> String {
    let t = render(app, w, h);
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

#[test]
fn without_a_disk_to_keep_it_the_mapfile_screen_says_it_is_in_memory() {
    let mut host = FakeHost::new();
    for d in &mut host.disks {
        d.mountpoints.clear();
        for p in &mut d.partitions {
            p.mountpoints.clear();
        }
    }
    let mut a = app_with(host);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 4);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Mapfile, "status: {:?}", a.status);
    assert_eq!(a.flow.mapfile, PathBuf::from("/root/salvor-sdb.map"));
    assert!(a.flow.mapfile_volatile);
    let text = screen_text(&a, 120, 40);
    assert!(text.contains("in the computer's memory"), "{text}");
    assert!(text.contains("erased when the power goes off"), "{text}");
    snap("rescue_mapfile_in_memory", &a);
}

#[test]
fn an_existing_mapfile_shows_what_it_holds_and_another_disks_is_refused() {
    let mut host = FakeHost::new();
    host.existing
        .insert(PathBuf::from("/mnt/backup/wd.img.map"));
    let mut a = app_with(host);
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    let text = screen_text(&a, 120, 40);
    assert!(text.contains("WD-WCC6Y3KJ1234"), "{text}");
    assert!(text.contains("rescued 600 GB"), "{text}");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Options, "a matching mapfile is resumed");

    let mut host = FakeHost::new();
    host.existing
        .insert(PathBuf::from("/mnt/backup/wd.img.map"));
    host.mapfile_mismatch = Some("serial number differs: it was made for serial=OTHER".into());
    let mut a = app_with(host);
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    assert!(screen_text(&a, 120, 40).contains("ANOTHER disk"));
    snap("rescue_mapfile_other_disk", &a);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Mapfile);
    assert!(a
        .status
        .as_ref()
        .is_some_and(|s| s.is_error && s.text.contains("belongs to another disk")));
}

#[test]
fn file_rescue_flow_emits_request() {
    let mut a = app();
    to_confirm_file(&mut a);
    let act = key(&mut a, KeyCode::Enter);
    let Action::StartRescue(req) = act else {
        panic!("expected a start, got {act:?}");
    };
    assert_eq!(req.source, PathBuf::from("/dev/sdb"));
    assert_eq!(req.dest, PathBuf::from("/mnt/backup/wd.img"));
    assert_eq!(req.mapfile, PathBuf::from("/mnt/backup/wd.img.map"));
    assert_eq!(req.target_kind, TargetKind::File);
    assert!(!req.resume);
    assert_eq!(req.choices, Choices::default());
    assert!(req.source_identity.contains("WD-WCC6Y3KJ1234"));
    assert_eq!(a.screen, Screen::Job);
    assert!(a.job_active());
}

#[test]
fn existing_mapfile_is_resumed() {
    let mut host = FakeHost::new();
    host.existing.insert("/mnt/backup/wd.img".into());
    host.existing.insert("/mnt/backup/wd.img.map".into());
    let mut a = app_with(host);
    to_confirm_file(&mut a);
    assert!(a.flow.mapfile_exists && a.flow.image_exists);
    let Action::StartRescue(req) = key(&mut a, KeyCode::Char('y')) else {
        panic!("no start");
    };
    assert!(req.resume);
}

#[test]
fn options_are_passed_on() {
    let mut a = app();
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Right); // retry 0 -> 1
    key(&mut a, KeyCode::Right); // 1 -> 3
    down(&mut a, 1);
    key(&mut a, KeyCode::Char(' ')); // direct on
    down(&mut a, 1);
    key(&mut a, KeyCode::Char(' ')); // reverse on
    down(&mut a, 1);
    key(&mut a, KeyCode::Char(' ')); // scrape off
    down(&mut a, 5); // clamps on the last option
    key(&mut a, KeyCode::Char(' ')); // unused space skipped
    key(&mut a, KeyCode::Enter);
    let Action::StartRescue(req) = key(&mut a, KeyCode::Enter) else {
        panic!("no start");
    };
    assert_eq!(
        req.choices,
        Choices {
            retry_passes: 3,
            direct: true,
            reverse: true,
            scrape: false,
            skip_free: true,
        }
    );
}

#[test]
fn disk_target_needs_its_name_typed() {
    let mut a = app();
    to_confirm_disk(&mut a);
    // A disk has no "beside": the first mounted folder on another disk that survives a reboot.
    assert_eq!(a.flow.mapfile, PathBuf::from("/mnt/backup/salvor-sdb.map"));
    assert!(!a.flow.mapfile_volatile);
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert!(a.status.as_ref().is_some_and(|s| s.is_error));
    typ(&mut a, "sdc");
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert_eq!(a.screen, Screen::Confirm);
    // 'q' and 'y' are typed, not commands, while typing a name.
    typ(&mut a, "qy");
    assert_eq!(a.flow.input, "sdcqy");
    for _ in 0..3 {
        key(&mut a, KeyCode::Backspace);
    }
    typ(&mut a, "d");
    let Action::StartRescue(req) = key(&mut a, KeyCode::Enter) else {
        panic!("no start: {:?}", a.status);
    };
    assert_eq!(req.dest, PathBuf::from("/dev/sdd"));
    assert_eq!(req.target_kind, TargetKind::Disk);
    assert!(req.target_identity.contains("S6PNNS0T123456A"));
}

#[test]
fn refused_targets() {
    let mut a = app();
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    // Dest rows: image, sda (boot), sdb (source), sdc (mounted), sdd, loop0 (too small).
    let expect = [
        (1, "salvor is running from it"),
        (2, "it is the source"),
        (3, "it is mounted at /mnt/backup"),
        (5, "too small"),
    ];
    for (row, why) in expect {
        a.flow.dest_cursor = row;
        assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
        assert_eq!(a.screen, Screen::Dest);
        let s = a.status.clone().unwrap();
        assert!(s.is_error && s.text.contains(why), "row {row}: {}", s.text);
    }
}

#[test]
fn refused_image_paths() {
    let mut host = FakeHost::new();
    // The failing disk's partition is mounted: an image there would be written onto the source.
    host.disks[1].partitions[1].mountpoints = vec!["/mnt/sick".into()];
    let mut a = app_with(host);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    for (path, why) in [
        ("relative.img", "full path"),
        ("/dev/sdb", "the source"),
        ("/dev/sdd", "device"),
        ("/mnt/backup", "folder"),
        ("/nowhere/x.img", "does not exist"),
        ("/mnt/sick/x.img", "the disk being rescued"),
    ] {
        a.flow.input.clear();
        typ(&mut a, path);
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.screen, Screen::ImagePath, "{path}");
        let s = a.status.clone().unwrap();
        assert!(s.text.contains(why), "{path}: {}", s.text);
    }
}

#[test]
fn target_that_changed_is_refused_at_confirm() {
    let mut a = app();
    to_confirm_disk(&mut a);
    typ(&mut a, "sdd");
    // Someone mounted the target meanwhile.
    let mut host = FakeHost::new();
    host.disks[3].mountpoints = vec!["/media/x".into()];
    a.host = Box::new(host);
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert!(a.status.as_ref().unwrap().text.contains("mounted"));
}

#[test]
fn mapfile_path_can_be_changed() {
    let mut a = app();
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    key(&mut a, KeyCode::Char('e'));
    assert_eq!(a.screen, Screen::MapfilePath);
    for _ in 0.."wd.img.map".len() {
        key(&mut a, KeyCode::Backspace);
    }
    typ(&mut a, "other.map");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Mapfile);
    assert_eq!(a.flow.mapfile, PathBuf::from("/mnt/backup/other.map"));
    key(&mut a, KeyCode::Char('e'));
    a.flow.input = "/dev/sdb".into();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::MapfilePath);
}

#[test]
fn escape_walks_back_and_q_quits() {
    let mut a = app();
    to_confirm_file(&mut a);
    for s in [
        Screen::Options,
        Screen::Mapfile,
        Screen::Dest,
        Screen::Source,
        Screen::Menu,
    ] {
        key(&mut a, KeyCode::Esc);
        assert_eq!(a.screen, s);
    }
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
}

#[test]
fn job_pause_resume_abort() {
    let mut a = app();
    to_confirm_file(&mut a);
    key(&mut a, KeyCode::Enter);
    a.on_worker(WorkerMsg::Snapshot(snapshot(&sample_map())));
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Running);
    // Quitting is refused while the job runs.
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Menu);
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::None);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Job);
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Pause);
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Paused);
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Resume);
    assert_eq!(key(&mut a, KeyCode::Char('a')), Action::None);
    assert!(a.job.as_ref().unwrap().confirm_abort);
    assert_eq!(key(&mut a, KeyCode::Char('n')), Action::None);
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Running);
    key(&mut a, KeyCode::Char('a'));
    assert_eq!(key(&mut a, KeyCode::Char('y')), Action::Abort);
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Stopping);
    a.on_worker(WorkerMsg::Done(Ok(crate::rescue::Outcome::Stopped(
        crate::progress::StopReason::User,
    ))));
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Stopped);
    // Enter shows what the stopped rescue got; Esc returns to the menu.
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Result);
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Menu);
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
}

/// The engine's clock runs on while paused; the view's elapsed time, "last good" and average rate
/// do not, and the rate and time left say "paused".
#[test]
fn pause_freezes_the_shown_times() {
    let mut a = job_app();
    let at = |secs| {
        let mut s = snapshot(&sample_map());
        s.elapsed = Duration::from_secs(secs);
        s.since_last_good_read = Duration::from_secs(2);
        s
    };
    a.on_worker(WorkerMsg::Snapshot(at(100)));
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Pause);
    let mut s = at(160);
    s.since_last_good_read = Duration::from_secs(62);
    a.on_worker(WorkerMsg::Snapshot(s));
    let shown = a.job.as_ref().unwrap().shown_snapshot().unwrap();
    assert_eq!(shown.elapsed, Duration::from_secs(100));
    assert_eq!(shown.since_last_good_read, Duration::from_secs(2));
    let screen = format!("{}", render(&a, 80, 24).backend());
    assert!(screen.contains("Rate      paused"), "{screen}");
    assert!(screen.contains("Time left paused"), "{screen}");
    assert!(screen.contains("Elapsed   1m 40s"), "{screen}");
    // Resumed: the 60 s paused stay out of the elapsed time.
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Resume);
    let mut s = at(170);
    s.since_last_good_read = Duration::from_secs(1);
    s.average_rate = 170.0;
    a.on_worker(WorkerMsg::Snapshot(s));
    let shown = a.job.as_ref().unwrap().shown_snapshot().unwrap();
    assert_eq!(shown.elapsed, Duration::from_secs(110));
    assert_eq!(shown.since_last_good_read, Duration::from_secs(1));
    assert!((shown.average_rate - 170.0 * 170.0 / 110.0).abs() < 1e-6);
}

/// A read that failed is not a bad byte: with failed reads and nothing unreadable the view says
/// so in words instead of "Bad 0 B"; no value runs into the next column at 80 columns.
#[test]
fn failed_reads_are_not_bad_bytes() {
    let mut a = job_app();
    let m = Mapfile::from_blocks(vec![blk(0, 1 << 30, BlockStatus::Finished)]).unwrap();
    let mut s = snapshot(&m);
    s.read_errors = 3;
    a.on_worker(WorkerMsg::Snapshot(s));
    a.on_worker(WorkerMsg::Done(Ok(crate::rescue::Outcome::Stopped(
        crate::progress::StopReason::User,
    ))));
    let screen = format!("{}", render(&a, 80, 24).backend());
    assert!(screen.contains("Bad bytes none so far"), "{screen}");
    assert!(screen.contains("3 failed reads"), "{screen}");
    assert!(screen.contains("Stopped: the mapfile is saved"), "{screen}");
}

#[test]
fn help_opens_and_closes() {
    let mut a = app();
    key(&mut a, KeyCode::Char('?'));
    assert!(a.help);
    key(&mut a, KeyCode::Char('x'));
    assert!(!a.help);
    assert_eq!(a.screen, Screen::Menu);
}

// ----- snapshots -----

fn blk(pos: u64, size: u64, status: BlockStatus) -> Block {
    Block { pos, size, status }
}

/// A 1 TB map with every status present, including a lone bad sector.
fn sample_map() -> Mapfile {
    let size = 1_000_204_886_016;
    let mut m = Mapfile::from_blocks(vec![
        blk(0, 100 * GB, BlockStatus::Finished),
        blk(100 * GB, 4096, BlockStatus::BadSector),
        blk(100 * GB + 4096, 200 * GB - 4096, BlockStatus::Finished),
        blk(300 * GB, 20 * GB, BlockStatus::NonTrimmed),
        blk(320 * GB, 10 * GB, BlockStatus::NonScraped),
        blk(330 * GB, 5 * GB, BlockStatus::BadSector),
        blk(335 * GB, 265 * GB, BlockStatus::Finished),
        blk(600 * GB, size - 600 * GB, BlockStatus::NonTried),
    ])
    .unwrap();
    m.phase = Phase::Copying;
    m
}

fn snapshot(m: &Mapfile) -> RescueSnapshot {
    RescueSnapshot {
        phase: Phase::Copying,
        pass: 1,
        direction: Direction::Forwards,
        pos: 600 * GB,
        totals: m.totals(),
        domain_size: m.end(),
        reads: 572_210,
        read_errors: 37,
        elapsed: Duration::from_secs(2 * 3600 + 5 * 60 + 9),
        since_last_good_read: Duration::from_secs(0),
        current_rate: 81_000_000.0,
        average_rate: 74_500_000.0,
        remaining: Some((Duration::from_secs(80 * 60), Duration::from_secs(5 * 3600))),
        waiting_for_device: false,
    }
}

fn job_app() -> App {
    let mut a = app();
    to_confirm_file(&mut a);
    key(&mut a, KeyCode::Enter);
    let m = sample_map();
    a.on_worker(WorkerMsg::Map(m.blocks().to_vec()));
    a.on_worker(WorkerMsg::Event(RescueEvent::PassStarted {
        phase: Phase::Copying,
        pass: 1,
        direction: Direction::Forwards,
    }));
    a.on_worker(WorkerMsg::Snapshot(snapshot(&m)));
    for i in 0..3u64 {
        a.on_worker(WorkerMsg::Event(RescueEvent::ReadError {
            pos: 330 * GB + i * 1_048_576,
            size: 1_048_576,
            message: "Input/output error".into(),
        }));
    }
    a
}

#[test]
fn snap_menu() {
    snap("menu", &app());
}

#[test]
fn snap_menu_many_disks() {
    let mut host = FakeHost::new();
    for i in 0..12u64 {
        host.disks.push(DiskRow {
            path: format!("/dev/vd{}", (b'a' + i as u8) as char).into(),
            serial: Some(format!("salvor-disk{i}")),
            size: (64 << 20) * (i + 1),
            transport: "virtio".into(),
            ..DiskRow::default()
        });
    }
    snap("menu_many_disks", &app_with(host));
}

/// The boot test waits for `vda .*virtio.*salvor-disk0` on the serial console.
#[test]
fn first_screen_lists_a_virtio_disk_like_the_boot_test_expects() {
    let mut host = FakeHost::new();
    host.disks = vec![DiskRow {
        path: "/dev/vda".into(),
        serial: Some("salvor-disk0".into()),
        size: 64 << 20,
        transport: "virtio".into(),
        ..DiskRow::default()
    }];
    let t = render(&app_with(host), 80, 24);
    let screen = format!("{}", t.backend());
    let line = screen
        .lines()
        .find(|l| l.contains("vda "))
        .unwrap_or_else(|| panic!("{screen}"));
    let v = line.find("virtio").expect("transport");
    let s = line.find("salvor-disk0").expect("serial");
    assert!(line.find("vda ").unwrap() < v && v < s, "{line}");
    // Every cell of the row carries a style, so a serial console gets spaces, not cursor moves.
    let buf = t.backend().buffer();
    let y = screen.lines().position(|l| l.contains("vda ")).unwrap() as u16;
    let x = line.find("vda").unwrap() as u16 - 1; // the line starts with a quote
    assert_ne!(buf[(x + 3, y)], ratatui::buffer::Cell::default());
}

#[test]
fn snap_menu_help() {
    let mut a = app();
    key(&mut a, KeyCode::Char('?'));
    snap("menu_help", &a);
}

#[test]
fn snap_disks() {
    let mut a = app();
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Disks);
    snap("disks_boot", &a);
    down(&mut a, 2);
    snap("disks_mounted", &a);
    down(&mut a, 2);
    snap("disks_loop", &a);
}

#[test]
fn snap_rescue_source() {
    let mut a = app();
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    snap("rescue_source", &a);
}

#[test]
fn snap_rescue_dest() {
    let mut a = app();
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    snap("rescue_dest_image", &a);
    down(&mut a, 2);
    key(&mut a, KeyCode::Enter);
    snap("rescue_dest_refused_source", &a);
    down(&mut a, 2);
    snap("rescue_dest_disk", &a);
}

#[test]
fn snap_rescue_image_path() {
    let mut a = app();
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    typ(&mut a, "/mnt/backup/wd");
    snap("rescue_image_path", &a);
}

#[test]
fn snap_rescue_mapfile() {
    let mut a = app();
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    snap("rescue_mapfile_new", &a);
    let mut host = FakeHost::new();
    host.existing.insert("/mnt/backup/wd.img.map".into());
    let mut a = app_with(host);
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    snap("rescue_mapfile_resume", &a);
    key(&mut a, KeyCode::Char('e'));
    snap("rescue_mapfile_path", &a);
}

#[test]
fn snap_rescue_options() {
    let mut a = app();
    to_mapfile(&mut a, "/mnt/backup/wd.img");
    key(&mut a, KeyCode::Enter);
    down(&mut a, 2);
    key(&mut a, KeyCode::Char(' '));
    snap("rescue_options", &a);
}

#[test]
fn snap_confirm() {
    let mut a = app();
    to_confirm_file(&mut a);
    snap("confirm_file", &a);
    let mut a = app();
    to_confirm_disk(&mut a);
    typ(&mut a, "sd");
    snap("confirm_disk", &a);
}

#[test]
fn snap_job() {
    let mut a = job_app();
    snap("job_running", &a);
    key(&mut a, KeyCode::Char('p'));
    key(&mut a, KeyCode::Char('a'));
    snap("job_paused_abort_prompt", &a);
    key(&mut a, KeyCode::Char('n'));
    let size = sample_map().end();
    let done = Mapfile::from_blocks(vec![
        blk(0, 100 * GB, BlockStatus::Finished),
        blk(100 * GB, 4096, BlockStatus::BadSector),
        blk(100 * GB + 4096, 230 * GB - 4096, BlockStatus::Finished),
        blk(330 * GB, 1 << 20, BlockStatus::BadSector),
        blk(
            330 * GB + (1 << 20),
            size - 330 * GB - (1 << 20),
            BlockStatus::Finished,
        ),
    ])
    .unwrap();
    let mut s = snapshot(&done);
    s.phase = Phase::Finished;
    s.pos = size;
    s.remaining = Some((Duration::ZERO, Duration::ZERO));
    a.on_worker(WorkerMsg::Event(RescueEvent::Finished { complete: true }));
    a.on_worker(WorkerMsg::Map(done.blocks().to_vec()));
    a.on_worker(WorkerMsg::Snapshot(s));
    snap("job_finished", &a);
    // When the worker ends, the result screen follows and asks for the damaged-files report.
    a.on_worker(WorkerMsg::Done(Ok(crate::rescue::Outcome::Finished)));
    assert_eq!(a.screen, Screen::Result);
    assert_eq!(
        a.take_tasks(),
        vec![super::worker::Task::FilesReport {
            copy: "/mnt/backup/wd.img".into(),
            mapfile: "/mnt/backup/wd.img.map".into(),
        }]
    );
}

#[test]
fn snap_job_waiting_for_device() {
    let mut a = job_app();
    let mut s = snapshot(&sample_map());
    s.waiting_for_device = true;
    s.since_last_good_read = Duration::from_secs(95);
    s.remaining = None;
    a.on_worker(WorkerMsg::Event(RescueEvent::DeviceGone {
        message: "/dev/sdb disappeared at 0x8BA1A00000".into(),
    }));
    a.on_worker(WorkerMsg::Snapshot(s));
    snap("job_waiting", &a);
}

#[test]
fn snap_system_info() {
    let mut a = app();
    a.menu_cursor = MENU
        .iter()
        .position(|m| *m == MenuItem::SystemInfo)
        .unwrap();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::SystemInfo);
    snap("system_info", &a);
}

// ----- hot-plug -----

/// A fake /sys/block with the fixture's disks (sizes in 512-byte units).
fn fake_sysfs(names: &[&str]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for n in names {
        sysfs_add(t.path(), n, 1000);
    }
    t
}

fn sysfs_add(root: &Path, name: &str, size: u64) {
    let d = root.join("block").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
}

fn usb_stick() -> DiskRow {
    DiskRow {
        path: "/dev/sde".into(),
        model: Some("Kingston DataTraveler 3.0".into()),
        serial: Some("E0D55EA5741F".into()),
        size: 64_021_856_256,
        transport: "usb".into(),
        removable: true,
        partitions: vec![PartRow {
            path: "/dev/sde1".into(),
            size: 64_020_807_680,
            ..PartRow::default()
        }],
        ..DiskRow::default()
    }
}

#[test]
fn hotplug_rescans_and_keeps_the_selection() {
    let sys = fake_sysfs(&["sda", "sdb", "sdc", "sdd", "loop0"]);
    let mut host = FakeHost::new();
    host.sysfs = Some(sys.path().to_path_buf());
    let shared = host.shared.clone();
    let mut a = app_with(host);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Source);
    down(&mut a, 2);
    assert_eq!(a.disks[a.disk_cursor].name(), "sdc");
    let t0 = Instant::now();
    a.tick(t0);
    assert!(!a.check_hotplug(), "nothing changed yet");

    // sdb is unplugged: the list shrinks and the cursor stays on sdc.
    std::fs::remove_dir_all(sys.path().join("block/sdb")).unwrap();
    shared.lock().unwrap().unplugged.push("/dev/sdb".into());
    a.tick(t0 + Duration::from_millis(500));
    assert_eq!(a.disks.len(), 5, "polled again before a second passed");
    a.tick(t0 + HOTPLUG_POLL);
    assert_eq!(a.disks.len(), 4);
    assert_eq!(a.disks[a.disk_cursor].name(), "sdc");
    assert!(a.status.as_ref().unwrap().text.contains("gone: sdb"));

    // A USB stick is plugged in, then a partition appears on it.
    sysfs_add(sys.path(), "sde", 125_042_688);
    shared.lock().unwrap().plugged.push(usb_stick());
    a.status = None;
    assert!(a.check_hotplug());
    assert!(a.disks.iter().any(|d| d.name() == "sde"));
    assert_eq!(a.disks[a.disk_cursor].name(), "sdc");
    assert!(a.status.as_ref().unwrap().text.contains("new: sde"));
    let p = sys.path().join("block/sde/sde1");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("partition"), "1").unwrap();
    std::fs::write(p.join("size"), "125040640").unwrap();
    assert!(a.check_hotplug(), "a new partition is a change");
    assert!(!a.check_hotplug());
}

#[test]
fn hotplug_keeps_the_chosen_target_row() {
    let sys = fake_sysfs(&["sda", "sdb", "sdc", "sdd", "loop0"]);
    let mut host = FakeHost::new();
    host.sysfs = Some(sys.path().to_path_buf());
    let shared = host.shared.clone();
    let mut a = app_with(host);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Dest);
    down(&mut a, 4); // row 0 is "an image file": row 4 is sdd
    assert_eq!(a.disks[a.flow.dest_cursor - 1].name(), "sdd");
    std::fs::remove_dir_all(sys.path().join("block/sda")).unwrap();
    shared.lock().unwrap().unplugged.push("/dev/sda".into());
    assert!(a.check_hotplug());
    assert_eq!(a.disks[a.flow.dest_cursor - 1].name(), "sdd");
}

// ----- the whole loop with the real worker -----

struct Script(VecDeque<KeyCode>);

impl Events for Script {
    fn next(
        &mut self,
        _timeout: Duration,
    ) -> std::io::Result<Option<ratatui::crossterm::event::Event>> {
        Ok(self
            .0
            .pop_front()
            .map(|c| ratatui::crossterm::event::Event::Key(KeyEvent::new(c, KeyModifiers::NONE))))
    }
}

/// Real filesystem, fixture disk list whose only disk is a plain file.
struct FileHost {
    disk: DiskRow,
}

impl Host for FileHost {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String> {
        Ok(vec![self.disk.clone()])
    }
    fn exists(&self, p: &Path) -> bool {
        RealHost.exists(p)
    }
    fn is_dir(&self, p: &Path) -> bool {
        RealHost.is_dir(p)
    }
    fn is_block_device(&self, p: &Path) -> bool {
        RealHost.is_block_device(p)
    }
    fn canonicalize(&self, p: &Path) -> PathBuf {
        RealHost.canonicalize(p)
    }
    fn current_dir(&self) -> PathBuf {
        RealHost.current_dir()
    }
    fn system_info(&self) -> SystemInfo {
        SystemInfo::default()
    }
    fn image_info(&self, p: &Path) -> Result<ImageView, String> {
        RealHost.image_info(p)
    }
    fn free_space(&self, dir: &Path) -> Option<u64> {
        RealHost.free_space(dir)
    }
    fn check_target(&self, check: &TargetCheck) -> Result<(), String> {
        RealHost.check_target(check)
    }
    fn block_listing(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    fn probe_fs(&self, _dev: &Path) -> Option<String> {
        None
    }
    fn mount(&self, _: &Path, _: &Path, _: &str, _: bool) -> Result<String, String> {
        Err("not in this test".into())
    }
    fn unmount(&self, _dir: &Path) -> Result<(), String> {
        Err("not in this test".into())
    }
    fn sync(&self) {}
    fn read_dir(&self, dir: &Path) -> Result<Vec<Entry>, String> {
        RealHost.read_dir(dir)
    }
    fn is_read_only_fs(&self, dir: &Path) -> bool {
        RealHost.is_read_only_fs(dir)
    }
    fn is_volatile(&self, p: &Path) -> bool {
        RealHost.is_volatile(p)
    }
    fn inspect_mapfile(&self, mapfile: &Path, source: &Path) -> MapfileView {
        RealHost.inspect_mapfile(mapfile, source)
    }
    fn check_rescue_paths(&self, source: &Path, dest: &Path, mapfile: &Path) -> Result<(), String> {
        RealHost.check_rescue_paths(source, dest, mapfile)
    }
    fn attach_image(&self, _: &Path) -> Result<PathBuf, String> {
        Err("not in this test".into())
    }
    fn detach_image(&self, _: &Path) -> Result<(), String> {
        Err("not in this test".into())
    }
    fn check_copy_dest(&self, dest: &Path, reads: &[PathBuf]) -> Result<(), String> {
        RealHost.check_copy_dest(dest, reads)
    }
}

#[test]
fn loop_runs_a_real_rescue_and_can_quit() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let img = dir.path().join("out.img");
    let host = FileHost {
        disk: DiskRow {
            path: src.clone(),
            model: Some("Test File".into()),
            serial: Some("T1".into()),
            size: data.len() as u64,
            transport: "file".into(),
            ..DiskRow::default()
        },
    };
    let mut app = App::new(Box::new(host));
    let mut keys: VecDeque<KeyCode> = VecDeque::new();
    keys.extend([KeyCode::Enter, KeyCode::Enter, KeyCode::Enter]);
    keys.extend(img.display().to_string().chars().map(KeyCode::Char));
    keys.extend([
        KeyCode::Enter,
        KeyCode::Enter,
        KeyCode::Enter,
        KeyCode::Enter,
    ]);
    let mut script = Script(keys);
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut runner = ThreadRunner::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(step(
            &mut term,
            &mut app,
            &mut script,
            &mut runner,
            Duration::ZERO
        )
        .unwrap());
        let done = app
            .job
            .as_ref()
            .is_some_and(|j| matches!(j.state, JobState::Finished { .. } | JobState::Failed(_)));
        if done && script.0.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rescue did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // One more turn so that late messages (the final map) are drawn.
    std::thread::sleep(Duration::from_millis(50));
    step(
        &mut term,
        &mut app,
        &mut script,
        &mut runner,
        Duration::ZERO,
    )
    .unwrap();
    let job = app.job.as_ref().unwrap();
    assert_eq!(
        job.state,
        JobState::Finished { complete: true },
        "log: {:?}",
        job.log
    );
    assert_eq!(std::fs::read(&img).unwrap(), data);
    assert!(dir.path().join("out.img.map").exists());
    assert!(job.blocks.iter().all(|b| b.status == BlockStatus::Finished));
    // A finished rescue goes on to its result.
    assert_eq!(app.screen, Screen::Result);
    let screen = format!("{}", term.backend());
    assert!(screen.contains("nothing is unreadable"), "{screen}");
    // Back to the menu, then quit.
    script.0.extend([KeyCode::Esc, KeyCode::Char('q')]);
    assert!(step(
        &mut term,
        &mut app,
        &mut script,
        &mut runner,
        Duration::ZERO
    )
    .unwrap());
    assert!(!step(
        &mut term,
        &mut app,
        &mut script,
        &mut runner,
        Duration::ZERO
    )
    .unwrap());
}

// ----- the image flows -----

const IMG: &str = "/mnt/backup/wd.img.zst";

fn menu_to(a: &mut App, feature: Feature) {
    a.menu_cursor = MENU
        .iter()
        .position(|m| *m == MenuItem::Flow(feature))
        .unwrap();
    key(a, KeyCode::Enter);
}

fn clear_input(a: &mut App) {
    for _ in 0..a.flow.input.chars().count() {
        key(a, KeyCode::Backspace);
    }
}

/// Image flow up to the options: source sdb, the default output path.
fn image_to_options(a: &mut App) {
    menu_to(a, Feature::Image);
    assert_eq!(a.screen, Screen::Source);
    down(a, 1);
    key(a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgPath);
    key(a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgOptions, "status: {:?}", a.status);
}

/// Restore flow up to the target list.
fn restore_to_target(a: &mut App) {
    menu_to(a, Feature::Restore);
    assert_eq!(a.screen, Screen::ImgPath);
    typ(a, IMG);
    key(a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgInfo, "status: {:?}", a.status);
    key(a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgTarget);
}

fn choose_target(a: &mut App, row: usize) {
    a.flow.img.target_cursor = row;
    key(a, KeyCode::Enter);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn image_req(act: Action) -> ImageRequest {
    match act {
        Action::StartImage(r) => r,
        other => panic!("expected an image job, got {other:?}"),
    }
}

#[test]
fn image_flow_emits_request() {
    let mut a = app();
    image_to_options(&mut a);
    assert_eq!(
        a.flow.img.path.as_deref(),
        Some(Path::new(
            "/mnt/backup/WDC_WD10EZEX-08WN4A0-WD-WCC6Y3KJ1234.img.zst"
        ))
    );
    assert_eq!(a.flow.img.free, Some(900 * GB));
    key(&mut a, KeyCode::Right); // level 3 -> 6
    down(&mut a, 1);
    // On the label row letters are text, not commands.
    typ(&mut a, "Anna q?");
    key(&mut a, KeyCode::Backspace);
    key(&mut a, KeyCode::Backspace);
    assert!(!a.flow.img.sha256, "the flat SHA-256 is opt-in");
    down(&mut a, 1);
    key(&mut a, KeyCode::Char(' '));
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgConfirm);
    let req = image_req(key(&mut a, KeyCode::Enter));
    assert_eq!(req.feature, Feature::Image);
    assert!(req.sha256);
    assert_eq!(req.input, PathBuf::from("/dev/sdb"));
    assert_eq!(req.level, 6);
    assert_eq!(req.label.as_deref(), Some("Anna"));
    assert!(req.input_identity.contains("WD-WCC6Y3KJ1234"));
    assert_eq!(a.screen, Screen::Job);
    assert!(a.job_active());
    // Another job cannot start while this one runs.
    key(&mut a, KeyCode::Esc);
    menu_to(&mut a, Feature::Clone);
    assert_eq!(a.screen, Screen::Menu);
    assert!(a.status.as_ref().is_some_and(|s| s.is_error));
}

#[test]
fn image_output_refusals() {
    let mut host = FakeHost::new();
    host.disks[1].partitions[1].mountpoints = vec!["/mnt/sick".into()];
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Image);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    // The default skips the source's own mount.
    assert!(a.flow.input.starts_with("/mnt/backup/"), "{}", a.flow.input);
    for (path, why) in [
        ("/dev/sdb", "the source"),
        ("/mnt/sick/x.img.zst", "the disk being rescued"),
        ("/nowhere/x.img", "does not exist"),
    ] {
        clear_input(&mut a);
        typ(&mut a, path);
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.screen, Screen::ImgPath, "{path}");
        assert!(a.status.as_ref().unwrap().text.contains(why), "{path}");
    }
}

#[test]
fn image_default_path_without_mounts_is_cwd() {
    let mut host = FakeHost::new();
    host.disks[2].partitions[0].mountpoints.clear();
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Image);
    down(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.flow.input,
        "/root/Samsung_SSD_870_EVO_2TB-S6PNNS0T123456A.img.zst"
    );
}

#[test]
fn restore_flow_emits_request() {
    let mut a = app();
    restore_to_target(&mut a);
    // sda boot, sdb fine (same size), sdc holds the image, sdd fine, loop0 too small.
    let notes: Vec<Option<String>> = a
        .flow
        .img
        .notes
        .iter()
        .map(|n| n.as_ref().map(|(s, _)| s.clone()))
        .collect();
    assert_eq!(
        notes,
        vec![
            Some("boot disk".into()),
            None,
            Some("holds image".into()),
            None,
            Some("too small".into())
        ]
    );
    assert_eq!(
        a.flow.img.target_cursor, 1,
        "starts on the first allowed disk"
    );
    choose_target(&mut a, 3);
    assert_eq!(a.screen, Screen::ImgOptions);
    assert!(a.flow.img.verify);
    key(&mut a, KeyCode::Char(' '));
    key(&mut a, KeyCode::Char(' '));
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgConfirm);
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    typ(&mut a, "sdb");
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    clear_input(&mut a);
    typ(&mut a, "sdd");
    let req = image_req(key(&mut a, KeyCode::Enter));
    assert_eq!(req.feature, Feature::Restore);
    assert_eq!(req.input, PathBuf::from(IMG));
    assert_eq!(req.output, Some(PathBuf::from("/dev/sdd")));
    assert!(req.verify);
    assert!(req.output_identity.contains("S6PNNS0T123456A"));
}

#[test]
fn restore_refusals() {
    let mut host = FakeHost::new();
    host.engine_refuses.push((
        "/dev/sdd".into(),
        "/dev/sdd: refused: it holds /mnt/x/img, which is being read".into(),
    ));
    host.disks[4].size = 2 * 1_000_204_886_016;
    host.disks[4].backing_file = Some(IMG.into());
    host.disks[2].partitions[0].mountpoints.clear();
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Restore);
    for (path, why) in [
        ("/mnt/backup/none.img.zst", "does not exist"),
        ("/dev/sdb", "Clone a disk"),
        ("/mnt/backup", "folder"),
    ] {
        clear_input(&mut a);
        typ(&mut a, path);
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.screen, Screen::ImgPath, "{path}");
        assert!(a.status.as_ref().unwrap().text.contains(why), "{path}");
    }
    let mut host = FakeHost::new();
    host.existing.insert("/mnt/backup/notes.txt".into());
    let mut b = app_with(host);
    menu_to(&mut b, Feature::Restore);
    typ(&mut b, "/mnt/backup/notes.txt");
    key(&mut b, KeyCode::Enter);
    assert!(b.status.as_ref().unwrap().text.contains("not an image"));

    clear_input(&mut a);
    a.host = Box::new({
        let mut h = FakeHost::new();
        h.existing.insert(IMG.into());
        h.engine_refuses.push((
            "/dev/sdd".into(),
            "/dev/sdd: refused: it holds /mnt/x/img, which is being read".into(),
        ));
        h.disks[4].size = 2 * 1_000_204_886_016;
        h.disks[4].backing_file = Some(IMG.into());
        h
    });
    typ(&mut a, IMG);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgTarget);
    // The loop device's file is the image; the engine refuses sdd; sdc holds the image.
    for (row, why) in [
        (4, "holds the image"),
        (3, "which is being read"),
        (2, "holds the image"),
    ] {
        choose_target(&mut a, row);
        assert_eq!(a.screen, Screen::ImgTarget, "row {row}");
        let s = a.status.clone().unwrap();
        assert!(s.is_error && s.text.contains(why), "row {row}: {}", s.text);
    }
}

#[test]
fn clone_flow_and_refusals() {
    let mut a = app();
    menu_to(&mut a, Feature::Clone);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgTarget);
    choose_target(&mut a, 1);
    assert!(a.status.as_ref().unwrap().text.contains("it is the source"));
    choose_target(&mut a, 2);
    assert!(a.status.as_ref().unwrap().text.contains("mounted"));
    choose_target(&mut a, 3);
    assert_eq!(a.screen, Screen::ImgOptions);
    key(&mut a, KeyCode::Enter);
    typ(&mut a, "sdd");
    // The target was mounted meanwhile: refused at the last gate.
    let mut host = FakeHost::new();
    host.disks[3].mountpoints = vec!["/media/x".into()];
    let saved = std::mem::replace(&mut a.host, Box::new(host));
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert!(a.status.as_ref().unwrap().text.contains("mounted"));
    a.host = saved;
    let req = image_req(key(&mut a, KeyCode::Enter));
    assert_eq!(req.feature, Feature::Clone);
    assert_eq!(req.input, PathBuf::from("/dev/sdb"));
    assert_eq!(req.output, Some(PathBuf::from("/dev/sdd")));
}

#[test]
fn verify_flow_starts_at_once() {
    let mut host = FakeHost::new();
    host.existing.insert(IMG.into());
    let mut raw = fixture_image();
    raw.path = "/mnt/backup/raw.img".into();
    raw.salvor = false;
    host.images.push(raw);
    host.existing.insert("/mnt/backup/raw.img".into());
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Verify);
    typ(&mut a, "/mnt/backup/raw.img");
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert!(a.status.as_ref().unwrap().text.contains("checksums"));
    clear_input(&mut a);
    typ(&mut a, IMG);
    let req = image_req(key(&mut a, KeyCode::Enter));
    assert_eq!(req.feature, Feature::Verify);
    assert_eq!(req.output, None);
    assert_eq!(a.screen, Screen::Job);
}

#[test]
fn escape_walks_back_through_the_restore_flow() {
    let mut a = app();
    restore_to_target(&mut a);
    choose_target(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgConfirm);
    for s in [
        Screen::ImgOptions,
        Screen::ImgTarget,
        Screen::ImgInfo,
        Screen::ImgPath,
        Screen::Menu,
    ] {
        key(&mut a, KeyCode::Esc);
        assert_eq!(a.screen, s);
    }
}

fn image_snapshot(phase: ImagePhase) -> ImageSnapshot {
    ImageSnapshot {
        phase,
        total: 1_000_204_886_016,
        bytes_read: 412 * GB,
        bytes_in: 412 * GB,
        bytes_out: 97 * GB,
        read_rate: 142_000_000.0,
        compress_rate: 610_000_000.0,
        write_rate: 33_000_000.0,
        ratio: 0.235,
        elapsed: Duration::from_secs(48 * 60 + 12),
        remaining: Some(Duration::from_secs(69 * 60)),
    }
}

fn image_job_app() -> App {
    let mut a = app();
    image_to_options(&mut a);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    a.on_worker(WorkerMsg::ImageEvent(ImageEvent::PhaseStarted {
        phase: ImagePhase::Imaging,
    }));
    a.on_worker(WorkerMsg::ImageSnapshot(image_snapshot(
        ImagePhase::Imaging,
    )));
    a
}

#[test]
fn image_job_pause_abort() {
    let mut a = image_job_app();
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Running);
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Pause);
    // Paused: no rates, no time left.
    let screen = screen_text(&a, 80, 24);
    assert!(screen.contains("Read      paused"), "{screen}");
    assert!(screen.contains("Time left paused"), "{screen}");
    assert_eq!(key(&mut a, KeyCode::Char('p')), Action::Resume);
    key(&mut a, KeyCode::Char('a'));
    assert_eq!(key(&mut a, KeyCode::Char('y')), Action::Abort);
    a.on_worker(WorkerMsg::ImageDone(ImageResult::Stopped));
    assert_eq!(a.job.as_ref().unwrap().state, JobState::Stopped);
    snap("image_job_aborted", &a);
    key(&mut a, KeyCode::Enter);
    assert!(a.job.is_none());
}

#[test]
fn snap_image_flow() {
    let mut a = app();
    menu_to(&mut a, Feature::Image);
    down(&mut a, 1);
    snap("image_source", &a);
    key(&mut a, KeyCode::Enter);
    snap("image_path", &a);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    typ(&mut a, "Anna's laptop");
    snap("image_options", &a);
    key(&mut a, KeyCode::Enter);
    snap("image_confirm_tight", &a);
    key(&mut a, KeyCode::Enter);
    a.on_worker(WorkerMsg::ImageEvent(ImageEvent::PhaseStarted {
        phase: ImagePhase::Imaging,
    }));
    a.on_worker(WorkerMsg::ImageSnapshot(image_snapshot(
        ImagePhase::Imaging,
    )));
    snap("image_job_running", &a);
    let mut s = image_snapshot(ImagePhase::Finishing);
    s.bytes_in = s.total;
    a.on_worker(WorkerMsg::ImageSnapshot(s));
    a.on_worker(WorkerMsg::ImageDone(ImageResult::Done(
        "Done: 1000 GB imaged into 235 GB (ratio 0.235) in 1h 57m".into(),
    )));
    snap("image_job_done", &a);
}

#[test]
fn snap_restore_flow() {
    let mut a = app();
    menu_to(&mut a, Feature::Restore);
    typ(&mut a, "/mnt/backup/wd");
    snap("restore_path", &a);
    typ(&mut a, ".img.zst");
    key(&mut a, KeyCode::Enter);
    snap("restore_info", &a);
    key(&mut a, KeyCode::Enter);
    snap("restore_target", &a);
    a.flow.img.target_cursor = 2;
    snap("restore_target_holds_image", &a);
    choose_target(&mut a, 3);
    snap("restore_options", &a);
    key(&mut a, KeyCode::Enter);
    typ(&mut a, "sd");
    snap("restore_confirm", &a);
    typ(&mut a, "d");
    key(&mut a, KeyCode::Enter);
    a.on_worker(WorkerMsg::ImageSnapshot(image_snapshot(
        ImagePhase::VerifyingTarget,
    )));
    snap("restore_job_verifying", &a);
}

#[test]
fn snap_clone_and_verify() {
    let mut a = app();
    menu_to(&mut a, Feature::Clone);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    snap("clone_target", &a);
    choose_target(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    snap("clone_confirm", &a);

    let mut host = FakeHost::new();
    host.existing.insert(IMG.into());
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Verify);
    typ(&mut a, IMG);
    snap("verify_path", &a);
    key(&mut a, KeyCode::Enter);
    let mut s = image_snapshot(ImagePhase::Verifying);
    s.bytes_out = 0;
    s.ratio = 0.0;
    a.on_worker(WorkerMsg::ImageSnapshot(s));
    a.on_worker(WorkerMsg::ImageEvent(ImageEvent::BadChunk {
        chunk: 98_304,
        offset: 412_316_860_416,
        reason: "zstd frame checksum mismatch".into(),
    }));
    a.on_worker(WorkerMsg::ImageEvent(ImageEvent::Finished { ok: false }));
    a.on_worker(WorkerMsg::ImageDone(ImageResult::Failed(
        "corrupt image: chunk 98304 (disk offset 412316860416): zstd frame checksum mismatch"
            .into(),
    )));
    snap("verify_job_bad", &a);
}

/// Waits for an image job on the real worker and returns its log and result.
fn run_worker(req: ImageRequest) -> (ImageResult, Vec<WorkerMsg>) {
    let mut h = worker::start_image(req).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut msgs = Vec::new();
    loop {
        match h.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(WorkerMsg::ImageDone(r)) => {
                assert!(h.shutdown(crate::progress::StopReason::User, Duration::from_secs(5)));
                return (r, msgs);
            }
            Ok(m) => msgs.push(m),
            Err(_) => assert!(std::time::Instant::now() < deadline, "job hung"),
        }
    }
}

#[test]
fn image_then_restore_round_trip_through_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("disk.bin");
    // Mixed content: compressible runs, zeros and noise-like bytes.
    let mut data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    data[1 << 20..2 << 20].fill(0);
    std::fs::write(&src, &data).unwrap();
    let img = dir.path().join("disk.img.zst");
    let out = dir.path().join("restored.bin");
    let base = ImageRequest {
        feature: Feature::Image,
        input: src.clone(),
        input_identity: "test".into(),
        output: Some(img.clone()),
        output_identity: "test".into(),
        level: 1,
        label: Some("round trip".into()),
        sha256: true,
        verify: true,
    };
    let (r, msgs) = run_worker(base.clone());
    let flat = format!("SHA-256 {}", sha256_hex(&data));
    assert!(
        matches!(&r, ImageResult::Done(s) if s.contains(&flat)),
        "{r:?}"
    );
    assert!(msgs
        .iter()
        .any(|m| matches!(m, WorkerMsg::ImageSnapshot(_))));
    // The UI's view of the image: what Restore shows on its second screen.
    let view = RealHost.image_info(&img).unwrap();
    assert!(view.salvor);
    assert_eq!(view.size, data.len() as u64);
    assert_eq!(view.label.as_deref(), Some("round trip"));

    let (r, _) = run_worker(ImageRequest {
        feature: Feature::Verify,
        input: img.clone(),
        output: None,
        ..base.clone()
    });
    assert!(
        matches!(&r, ImageResult::Done(s) if s.starts_with("OK")),
        "{r:?}"
    );

    let (r, _) = run_worker(ImageRequest {
        feature: Feature::Restore,
        input: img.clone(),
        output: Some(out.clone()),
        ..base.clone()
    });
    assert!(
        matches!(&r, ImageResult::Done(s) if s.contains("verified")),
        "{r:?}"
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "restored bytes differ"
    );

    // The engine refuses to restore an image onto itself.
    let (r, _) = run_worker(ImageRequest {
        feature: Feature::Restore,
        input: img.clone(),
        output: Some(img.clone()),
        ..base
    });
    assert!(
        matches!(&r, ImageResult::Failed(e) if e.contains("source")),
        "{r:?}"
    );
}

// ----- places: mount and browse -----

/// The fixture plus an unmounted USB stick (exFAT), probe results and files on the backup disk.
fn places_host() -> FakeHost {
    let mut h = FakeHost::new();
    h.disks.push(usb_stick());
    h.fs_types = vec![
        ("/dev/sde1".into(), "exfat".into()),
        ("/dev/sdb1".into(), "vfat".into()),
        ("/dev/sdb2".into(), "ntfs".into()),
        ("/dev/sda1".into(), "vfat".into()),
    ];
    h.dirs.insert("/mnt/backup/old".into());
    h.dirs.insert("/mnt/backup/Photos".into());
    h.files = vec![
        (IMG.into(), 212_000_000_000),
        ("/mnt/backup/notes.txt".into(), 1234),
    ];
    h
}

fn place_devs(a: &App) -> Vec<String> {
    a.picker
        .places
        .iter()
        .map(|p| p.dev.display().to_string())
        .collect()
}

/// Menu → Rescue → source sdb → image file → Tab.
fn rescue_to_places(a: &mut App) {
    key(a, KeyCode::Enter);
    down(a, 1);
    key(a, KeyCode::Enter);
    key(a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImagePath);
    key(a, KeyCode::Tab);
    assert_eq!(a.screen, Screen::Places);
}

#[test]
fn places_never_offer_or_probe_the_source() {
    let host = places_host();
    let shared = host.shared.clone();
    let mut a = app_with(host);
    rescue_to_places(&mut a);
    assert_eq!(a.picker.mode, PickMode::Write);
    assert_eq!(
        place_devs(&a),
        ["/dev/sdc1", "/dev/sdd", "/dev/loop0", "/dev/sde1"],
        "not the source sdb, not the boot stick sda"
    );
    let probes = shared.lock().unwrap().probes.clone();
    assert!(
        probes
            .iter()
            .all(|p| !p.starts_with("/dev/sdb") && !p.starts_with("/dev/sda")),
        "{probes:?}"
    );
    // The mounted backup disk is not probed either: the mount table says what it is.
    assert!(!probes.contains(&PathBuf::from("/dev/sdc1")));
    let p = &a.picker.places;
    assert_eq!(p[0].mount.as_deref(), Some(Path::new("/mnt/backup")));
    assert_eq!(p[0].free, Some(900 * GB));
    assert_eq!(p[1].note.as_deref(), Some("no filesystem found"));
    assert_eq!(p[3].fstype.as_deref(), Some("exfat"));
    assert_eq!(p[3].note, None);
    assert_eq!(a.picker.cursor, 0, "starts on the first usable place");
    // Rebuilding does not read the disks again.
    let n = shared.lock().unwrap().probes.len();
    a.build_places();
    assert_eq!(shared.lock().unwrap().probes.len(), n);
    // Esc goes back to the path screen, where typing still works.
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::ImagePath);
    typ(&mut a, "/mnt/backup/x.img");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Mapfile);
}

#[test]
fn mounting_a_place_and_saving_a_file_there() {
    let host = places_host();
    let shared = host.shared.clone();
    let mut a = app_with(host);
    rescue_to_places(&mut a);
    down(&mut a, 3);
    assert_eq!(a.picker.places[a.picker.cursor].name(), "sde1");
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        shared.lock().unwrap().mounts,
        vec![(
            PathBuf::from("/dev/sde1"),
            PathBuf::from("/mnt/sde1"),
            "exfat".to_string(),
            false
        )],
        "read-write, under /mnt by its kernel name"
    );
    assert_eq!(a.our_mounts, vec![PathBuf::from("/mnt/sde1")]);
    assert_eq!(a.screen, Screen::Browse, "status: {:?}", a.status);
    assert_eq!(a.picker.dir, PathBuf::from("/mnt/sde1"));
    assert!(a.status.as_ref().unwrap().text.contains("read-write"));
    // The disk list knows about the mount now.
    assert!(a
        .disks
        .iter()
        .any(|d| d.first_mount() == Some(Path::new("/mnt/sde1"))));

    key(&mut a, KeyCode::Char('s'));
    assert!(a.picker.naming);
    assert_eq!(a.picker.name, "WDC_WD10EZEX-08WN4A0-WD-WCC6Y3KJ1234.img");
    // Typing: q is a letter of the name, not quit.
    for _ in 0..4 {
        key(&mut a, KeyCode::Backspace);
    }
    typ(&mut a, "-q.img");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Mapfile, "status: {:?}", a.status);
    let want = PathBuf::from("/mnt/sde1/WDC_WD10EZEX-08WN4A0-WD-WCC6Y3KJ1234-q.img");
    assert_eq!(a.flow.target, Some(Target::Image(want.clone())));
    assert_eq!(
        a.flow.mapfile,
        PathBuf::from(format!("{}.map", want.display()))
    );

    // Leaving the UI syncs and unmounts what salvor mounted.
    assert!(a.release_mounts().is_empty());
    let sh = shared.lock().unwrap();
    assert_eq!(sh.syncs, 1);
    assert_eq!(sh.unmounts, vec![PathBuf::from("/mnt/sde1")]);
    assert!(a.our_mounts.is_empty());
}

#[test]
fn reading_mounts_read_only_and_picks_a_file() {
    let host = places_host();
    let shared = host.shared.clone();
    let mut a = app_with(host);
    menu_to(&mut a, Feature::Restore);
    assert_eq!(a.screen, Screen::ImgPath);
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.picker.mode, PickMode::Read);
    // Nothing is under rescue here: the Windows disk's partitions may be read.
    assert_eq!(
        place_devs(&a),
        [
            "/dev/sdb1",
            "/dev/sdb2",
            "/dev/sdc1",
            "/dev/sdd",
            "/dev/loop0",
            "/dev/sde1"
        ]
    );
    // NTFS is mounted read-only for reading.
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        shared.lock().unwrap().mounts[0],
        (
            PathBuf::from("/dev/sdb2"),
            PathBuf::from("/mnt/sdb2"),
            "ntfs".to_string(),
            true
        )
    );
    assert_eq!(a.screen, Screen::Browse);
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Places);
    assert!(a.picker.places[a.picker.cursor].ours);

    // The backup disk is mounted already: browse it, go up and back in, pick the image.
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.picker.dir, PathBuf::from("/mnt/backup"));
    let names: Vec<&str> = a.picker.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["..", "old", "Photos", "notes.txt", "wd.img.zst"]);
    key(&mut a, KeyCode::Backspace);
    assert_eq!(a.picker.dir, PathBuf::from("/mnt"));
    assert_eq!(a.picker.entries[a.picker.entry_cursor].name, "backup");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.picker.dir, PathBuf::from("/mnt/backup"));
    down(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgPath, "not an image: back on the path");
    assert!(a.status.as_ref().unwrap().is_error);
    assert_eq!(a.flow.input, "/mnt/backup/notes.txt");
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 4);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgInfo, "status: {:?}", a.status);
    assert_eq!(a.flow.img.path, Some(PathBuf::from(IMG)));
}

#[test]
fn mount_errors_are_shown_and_only_our_mounts_are_unmounted() {
    let host = places_host();
    let shared = host.shared.clone();
    shared.lock().unwrap().mount_error =
        Some("this system has no driver for exfat (tried exfat)".into());
    let mut a = app_with(host);
    rescue_to_places(&mut a);
    down(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Places);
    assert!(a.our_mounts.is_empty());
    let err = a.picker.error.clone().unwrap();
    assert!(err.contains("Could not mount /dev/sde1") && err.contains("no driver"));
    snap("places_mount_error", &a);

    // Unusable places are refused with their reason.
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Enter);
    assert!(a
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("no filesystem found"));
    // The backup disk was mounted by someone else: not salvor's to unmount.
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Char('u'));
    assert!(a
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("salvor did not mount"));
    // Mount, come back, unmount.
    down(&mut a, 3);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Browse);
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('u'));
    let sh = shared.lock().unwrap();
    assert_eq!(sh.unmounts, vec![PathBuf::from("/mnt/sde1")]);
    assert_eq!(sh.syncs, 1, "synced before unmounting");
    drop(sh);
    assert!(a.our_mounts.is_empty());
    assert!(a.picker.places[a.picker.cursor].mount.is_none());
}

#[test]
fn places_hide_a_disk_a_job_writes() {
    let mut a = image_job_app();
    // A clone to sde is running: sde must not be mounted.
    if let Some(j) = a.job.as_mut() {
        if let JobRequest::Image(r) = &mut j.request {
            r.output = Some("/dev/sde".into());
        }
    }
    a.host = Box::new(places_host());
    a.refresh_disks();
    a.flow = Flow {
        feature: Feature::Verify,
        ..Flow::default()
    };
    a.screen = Screen::ImgPath;
    key(&mut a, KeyCode::Tab);
    assert!(!place_devs(&a).contains(&"/dev/sde1".to_string()));
}

#[test]
fn snap_places_and_browser() {
    let mut a = app_with(places_host());
    menu_to(&mut a, Feature::Image);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ImgPath);
    key(&mut a, KeyCode::Tab);
    down(&mut a, 3);
    snap("places", &a);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Browse);
    key(&mut a, KeyCode::Char('s'));
    snap("browse_save", &a);

    let mut a = app_with(places_host());
    menu_to(&mut a, Feature::Restore);
    key(&mut a, KeyCode::Tab);
    down(&mut a, 2);
    key(&mut a, KeyCode::Enter);
    down(&mut a, 4);
    snap("browse", &a);
}

// ----- the result screen and "Copy my files" -----

fn damaged(path: &str, size: u64, lost: u64) -> crate::fs::files::DamagedFile {
    crate::fs::files::DamagedFile {
        path: path.into(),
        size,
        lost_bytes: lost,
        lost: vec![(0, lost)],
        unlocated: None,
    }
}

/// What the report finds on the fixture's rescued copy: three damaged photos, lost names.
fn fixture_report() -> crate::fs::files::FilesReport {
    use crate::fs::files::{DamagedDir, FilesReport, FsFiles};
    FilesReport {
        size: 1_000_204_886_016,
        unrescued_bytes: 1_052_672,
        filesystems: vec![FsFiles {
            partition: 1,
            kind: crate::fs::FsKind::Ext4,
            start: 1 << 20,
            size: 1_000_000_000_000,
            files_checked: 48_213,
            damaged_files: vec![
                damaged("/Photos/2019/IMG_0412.JPG", 4_200_000, 4096),
                damaged("/Photos/2019/IMG_0413.JPG", 3_900_000, 1_044_480),
                damaged("/Documents/taxes 2023.pdf", 800_000, 4096),
            ],
            damaged_dirs: vec![DamagedDir {
                path: "/Photos/2020".into(),
                reason: "directory block not rescued".into(),
            }],
            lost_names: 2,
            unreadable_inodes: 0,
            unrescued_bytes: 1_052_672,
            unrescued_metadata: Some(4096),
            unrescued_free: Some(0),
            error: None,
            notes: Vec::new(),
        }],
        notes: Vec::new(),
    }
}

/// A finished rescue with bad sectors left, on its result screen with the report in.
fn result_app() -> App {
    result_app_shared().0
}

fn result_app_shared() -> (App, Arc<Mutex<Shared>>) {
    let mut host = FakeHost::new();
    let shared = host.shared.clone();
    for d in [
        "/mnt/loop7p1",
        "/mnt/loop7p1/Photos",
        "/mnt/loop7p1/Documents",
        "/mnt/backup/restored",
    ] {
        host.dirs.insert(d.into());
    }
    host.files = vec![
        ("/mnt/loop7p1/Photos/IMG_0001.JPG".into(), 4_100_000),
        ("/mnt/loop7p1/notes.txt".into(), 1200),
    ];
    let mut a = app_with(host);
    to_confirm_file(&mut a);
    key(&mut a, KeyCode::Enter);
    let size = sample_map().end();
    let done = Mapfile::from_blocks(vec![
        blk(0, 100 * GB, BlockStatus::Finished),
        blk(100 * GB, 4096, BlockStatus::BadSector),
        blk(100 * GB + 4096, 230 * GB - 4096, BlockStatus::Finished),
        blk(330 * GB, 1 << 20, BlockStatus::BadSector),
        blk(
            330 * GB + (1 << 20),
            size - 330 * GB - (1 << 20),
            BlockStatus::Finished,
        ),
    ])
    .unwrap();
    a.on_worker(WorkerMsg::Map(done.blocks().to_vec()));
    a.on_worker(WorkerMsg::Snapshot(snapshot(&done)));
    a.on_worker(WorkerMsg::Event(RescueEvent::Finished { complete: true }));
    a.on_worker(WorkerMsg::Done(Ok(crate::rescue::Outcome::Finished)));
    assert_eq!(a.screen, Screen::Result);
    assert_eq!(a.take_tasks().len(), 1);
    (a, shared)
}

#[test]
fn snap_result() {
    let mut a = result_app();
    snap("result_pending", &a);
    a.on_worker(WorkerMsg::Files(
        "/mnt/backup/wd.img".into(),
        Ok(fixture_report()),
    ));
    snap("result", &a);
    let screen = screen_text(&a, 80, 24);
    assert!(screen.contains("2 files whose names are lost"), "{screen}");
    assert!(screen.contains("taxes 2023.pdf"), "{screen}");
    assert!(screen.contains("99.99%"), "{screen}");
    assert!(screen_text(&a, 120, 40).contains("IMG_0413.JPG"));
    // An answer about another copy is not this result's.
    let before = a.result.as_ref().unwrap().files.clone();
    a.on_worker(WorkerMsg::Files(
        "/mnt/backup/other.img".into(),
        Err("gone".into()),
    ));
    assert_eq!(a.result.as_ref().unwrap().files, before);
    a.on_worker(WorkerMsg::Files(
        "/mnt/backup/wd.img".into(),
        Err("/mnt/backup/wd.img: Input/output error".into()),
    ));
    snap("result_failed", &a);
}

#[test]
fn damage_tree_counts_files_and_bytes_per_folder() {
    let d = super::result::damage_of(&fixture_report());
    let rows: Vec<(usize, &str, u64, u64)> = d
        .tree
        .iter()
        .map(|r| (r.depth, r.name.as_str(), r.files, r.lost))
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, "partition 1 (ext4)", 3, 1_052_672),
            (1, "Documents/", 1, 4096),
            (2, "taxes 2023.pdf", 1, 4096),
            (1, "Photos/", 2, 1_048_576),
            (2, "2019/", 2, 1_048_576),
            (3, "IMG_0412.JPG", 1, 4096),
            (3, "IMG_0413.JPG", 1, 1_044_480),
        ]
    );
    assert_eq!((d.files, d.lost), (3, 1_052_672));
    assert!(d
        .metadata
        .iter()
        .any(|m| m.contains("2 files whose names are lost")));
    assert!(d.metadata.iter().any(|m| m.contains("1 folder whose list")));
}

#[test]
fn retry_starts_the_same_rescue_with_direct_access_and_retries() {
    let mut a = result_app();
    let r = a.result.as_ref().unwrap();
    assert_eq!(r.steps()[0], super::result::Step::Retry);
    match key(&mut a, KeyCode::Enter) {
        Action::StartRescue(req) => {
            assert_eq!(req.source, PathBuf::from("/dev/sdb"));
            assert_eq!(req.dest, PathBuf::from("/mnt/backup/wd.img"));
            assert_eq!(req.mapfile, PathBuf::from("/mnt/backup/wd.img.map"));
            assert!(req.resume);
            assert!(req.choices.direct);
            assert_eq!(req.choices.retry_passes, 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.screen, Screen::Job);
}

#[test]
fn copy_my_files_mounts_read_only_marks_checks_and_copies() {
    let (mut a, shared) = result_app_shared();
    a.on_worker(WorkerMsg::Files(
        "/mnt/backup/wd.img".into(),
        Ok(fixture_report()),
    ));
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    // The image file was attached read-only; its partition is offered with its damage.
    assert_eq!(a.screen, Screen::CopyPart, "{:?}", a.status);
    snap("copy_part", &a);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Browse, "{:?}", a.status);
    {
        let sh = shared.lock().unwrap();
        assert_eq!(
            sh.mounts,
            vec![(
                "/dev/loop7p1".into(),
                "/mnt/loop7p1".into(),
                "ext4".into(),
                true
            )]
        );
    }
    // Mark Photos (after "..", Documents), then continue.
    down(&mut a, 2);
    key(&mut a, KeyCode::Char(' '));
    snap("copy_browse_marked", &a);
    key(&mut a, KeyCode::Char('c'));
    assert_eq!(a.screen, Screen::Places);
    // Neither the source nor the copy's loop device is offered as a place to copy to.
    let places: Vec<String> = a.picker.places.iter().map(|p| p.name()).collect();
    assert!(
        !places
            .iter()
            .any(|p| p.starts_with("loop7") || p.starts_with("sdb")),
        "{places:?}"
    );
    snap("copy_places", &a);
    // A folder on the mounted copy itself is refused by the policy.
    a.copy_dest_picked("/mnt/loop7p1/Documents".into());
    assert!(
        a.status.as_ref().is_some_and(|s| s.is_error),
        "{:?}",
        a.status
    );
    let backup = a
        .picker
        .places
        .iter()
        .position(|p| p.dev == Path::new("/dev/sdc1"))
        .unwrap();
    a.picker.cursor = backup;
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Browse);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.picker.dir, PathBuf::from("/mnt/backup/restored"));
    key(&mut a, KeyCode::Char('c'));
    assert_eq!(a.screen, Screen::CopyConfirm, "{:?}", a.status);
    key(&mut a, KeyCode::Char(' '));
    snap("copy_confirm", &a);
    key(&mut a, KeyCode::Enter);
    let tasks = a.take_tasks();
    let Some(super::worker::Task::Copy(req)) = tasks.first() else {
        panic!("{tasks:?}");
    };
    assert_eq!(req.root, PathBuf::from("/mnt/loop7p1"));
    assert_eq!(req.items, vec![PathBuf::from("/mnt/loop7p1/Photos")]);
    assert_eq!(req.dest, PathBuf::from("/mnt/backup/restored"));
    assert_eq!(req.choice, super::copier::DamagedChoice::Mark);
    assert_eq!(req.damaged.len(), 3);
    a.on_worker(WorkerMsg::CopyProgress(super::copier::CopyProgress {
        files_done: 120,
        files_total: 311,
        bytes_done: 512_000_000,
        bytes_total: 1_300_000_000,
        current: "/Photos/2019/IMG_0200.JPG".into(),
    }));
    snap("copy_running", &a);
    // Quitting waits for the copy.
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::None);
    assert!(a.status.as_ref().is_some_and(|s| s.is_error));
    assert_eq!(key(&mut a, KeyCode::Char('a')), Action::CancelTask);
    a.on_worker(WorkerMsg::CopyDone(Ok(super::copier::CopySummary {
        files: 311,
        bytes: 1_300_000_000,
        damaged: vec![
            "/Photos/2019/IMG_0412.JPG".into(),
            "/Photos/2019/IMG_0413.JPG".into(),
        ],
        ..Default::default()
    })));
    snap("copy_done", &a);
    key(&mut a, KeyCode::Enter);
    // Unmounted and detached: back on the result.
    assert_eq!(a.screen, Screen::Result);
    let sh = shared.lock().unwrap();
    assert!(sh.unmounts.contains(&PathBuf::from("/mnt/loop7p1")));
    assert_eq!(sh.detached, vec![PathBuf::from("/dev/loop7")]);
    assert!(sh.syncs > 0);
}

#[test]
fn result_from_the_menu_finds_the_copy_beside_the_mapfile() {
    let mut host = FakeHost::new();
    host.existing.insert("/mnt/backup/wd.img.map".into());
    host.existing.insert("/mnt/backup/wd.img".into());
    let mut a = app_with(host);
    a.menu_cursor = MENU.iter().position(|m| *m == MenuItem::Result).unwrap();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ResultOpen);
    typ(&mut a, "/mnt/backup/nothing.map");
    key(&mut a, KeyCode::Enter);
    assert!(a.status.as_ref().is_some_and(|s| s.is_error));
    a.flow.input.clear();
    typ(&mut a, "/mnt/backup/wd.img.map");
    snap("result_open", &a);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Result, "{:?}", a.status);
    let r = a.result.as_ref().unwrap();
    assert_eq!(r.copy, PathBuf::from("/mnt/backup/wd.img"));
    // o opens another mapfile from the result.
    key(&mut a, KeyCode::Char('o'));
    assert_eq!(a.screen, Screen::ResultOpen);
    assert!(a.flow.input.is_empty());
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Menu);
    let r = a.result.as_ref().unwrap();
    // The fake mapfile matches every disk: the source is the first one that is not the copy.
    assert!(r.source.is_some());
    assert_eq!(
        a.take_tasks(),
        vec![super::worker::Task::FilesReport {
            copy: "/mnt/backup/wd.img".into(),
            mapfile: "/mnt/backup/wd.img.map".into(),
        }]
    );
}

// ----- the Disks screen's partition facts -----

#[test]
fn disks_screen_probes_partitions_on_a_worker_but_never_the_job_s_disks() {
    let mut a = job_app();
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Menu);
    a.take_tasks();
    a.menu_cursor = MENU.iter().position(|m| *m == MenuItem::Disks).unwrap();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Disks);
    let tasks = a.take_tasks();
    let probed: Vec<PathBuf> = tasks
        .iter()
        .map(|t| match t {
            super::worker::Task::ProbeDisk { disk, .. } => disk.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // sdb is under rescue: never read while the job runs.
    assert!(!probed.contains(&PathBuf::from("/dev/sdb")), "{probed:?}");
    assert!(probed.contains(&PathBuf::from("/dev/sdc")), "{probed:?}");
    // Asked once: coming back does not ask again.
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Enter);
    assert!(a.take_tasks().is_empty());
}

#[test]
fn snap_disks_with_partition_facts() {
    let mut host = FakeHost::new();
    host.disks[2]
        .partitions
        .push(part("/dev/sdc2", 500 * GB, "ext4", None, None));
    host.disks[2].partitions[1].fstype = None;
    host.disks[2]
        .partitions
        .push(part("/dev/sdc3", 100 * GB, "ext4", None, None));
    host.disks[2].partitions[2].fstype = None;
    let mut a = app_with(host);
    a.menu_cursor = MENU.iter().position(|m| *m == MenuItem::Disks).unwrap();
    key(&mut a, KeyCode::Enter);
    let t0 = Instant::now();
    a.take_tasks();
    down(&mut a, 2);
    a.on_worker(WorkerMsg::PartFacts(super::partinfo::PartFacts {
        dev: "/dev/sdc2".into(),
        fstype: Some("ext4".into()),
        label: Some("photos".into()),
        gpt_name: Some("family photos".into()),
    }));
    snap("disks_facts_pending", &a);
    // sdc3 never answers: after the deadline it says so.
    a.expire_part_facts(t0 + super::partinfo::PROBE_DEADLINE);
    snap("disks_facts_no_answer", &a);
    let screen = screen_text(&a, 80, 24);
    assert!(screen.contains("GPT name \"family photos\""), "{screen}");
    assert!(screen.contains("no answer"), "{screen}");
}

// ----- Browse an image -----

#[test]
fn browse_an_image_mounts_a_partition_and_copies_out_with_the_one_copier() {
    let mut host = FakeHost::new();
    for d in [
        "/mnt/image-p3",
        "/mnt/image-p3/Users",
        "/mnt/backup/restored",
    ] {
        host.dirs.insert(d.into());
    }
    host.files = vec![("/mnt/image-p3/pagefile.sys".into(), 8 * GB)];
    let shared = host.shared.clone();
    let mut a = app_with(host);
    a.menu_cursor = MENU
        .iter()
        .position(|m| *m == MenuItem::BrowseImage)
        .unwrap();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::BrowsePath);
    typ(&mut a, "/mnt/backup/nope.img");
    key(&mut a, KeyCode::Enter);
    assert!(a.status.as_ref().is_some_and(|s| s.is_error));
    a.flow.input.clear();
    typ(&mut a, IMG);
    snap("browse_image_path", &a);
    key(&mut a, KeyCode::Enter);
    // The image's partition table is offered.
    assert_eq!(a.screen, Screen::CopyPart, "{:?}", a.status);
    assert_eq!(a.copy.parts.len(), 3);
    down(&mut a, 2);
    snap("browse_image_parts", &a);
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.take_tasks(),
        vec![super::worker::Task::MountImage {
            image: IMG.into(),
            dir: "/mnt/image-p3".into(),
            partition: Some(3),
        }]
    );
    // Asked twice while mounting: nothing more is started.
    key(&mut a, KeyCode::Enter);
    assert!(a.take_tasks().is_empty());
    a.on_worker(WorkerMsg::ImageMounted(Ok((
        "/mnt/image-p3".into(),
        "ntfs".into(),
    ))));
    assert_eq!(a.screen, Screen::Browse);
    assert_eq!(a.picker.mode, PickMode::Select);
    down(&mut a, 1);
    key(&mut a, KeyCode::Char(' '));
    key(&mut a, KeyCode::Char('c'));
    assert_eq!(a.screen, Screen::Places);
    let backup = a
        .picker
        .places
        .iter()
        .position(|p| p.dev == Path::new("/dev/sdc1"))
        .unwrap();
    a.picker.cursor = backup;
    key(&mut a, KeyCode::Enter);
    down(&mut a, 1);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Char('c'));
    assert_eq!(a.screen, Screen::CopyConfirm, "{:?}", a.status);
    key(&mut a, KeyCode::Enter);
    let tasks = a.take_tasks();
    let [super::worker::Task::Copy(req)] = &tasks[..] else {
        panic!("{tasks:?}");
    };
    assert_eq!(req.root, PathBuf::from("/mnt/image-p3"));
    assert_eq!(req.items, vec![PathBuf::from("/mnt/image-p3/Users")]);
    assert!(req.damaged.is_empty());
    a.on_worker(WorkerMsg::CopyDone(Ok(Default::default())));
    key(&mut a, KeyCode::Enter);
    // Unmounting the directory ends the worker's mount; back to the menu.
    assert_eq!(a.screen, Screen::Menu);
    assert!(shared
        .lock()
        .unwrap()
        .unmounts
        .contains(&PathBuf::from("/mnt/image-p3")));
    a.on_worker(WorkerMsg::ImageReleased(Ok(())));
    assert!(
        a.status.as_ref().is_none_or(|s| !s.is_error),
        "{:?}",
        a.status
    );
}

#[test]
fn result_from_the_menu_asks_for_a_disk_copy_and_never_retries_onto_it_unconfirmed() {
    let mut host = FakeHost::new();
    host.existing.insert("/mnt/backup/salvor-sdb.map".into());
    host.existing.insert("/dev/sdd".into());
    let mut a = app_with(host);
    a.menu_cursor = MENU.iter().position(|m| *m == MenuItem::Result).unwrap();
    key(&mut a, KeyCode::Enter);
    typ(&mut a, "/mnt/backup/salvor-sdb.map");
    key(&mut a, KeyCode::Enter);
    // No image beside it: the copy's path is asked for.
    assert_eq!(a.screen, Screen::ResultOpen);
    assert_eq!(a.result_open_map, Some("/mnt/backup/salvor-sdb.map".into()));
    typ(&mut a, "/dev/sdd");
    snap("result_open_copy", &a);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Result, "{:?}", a.status);
    let r = a.result.as_ref().unwrap();
    assert_eq!(r.copy_kind, TargetKind::Disk);
    assert!(r.from_menu);
    assert_eq!(r.steps()[0], super::result::Step::Retry);
    assert_eq!(key(&mut a, KeyCode::Enter), Action::None);
    assert!(a
        .status
        .as_ref()
        .is_some_and(|s| s.is_error && s.text.contains("typed")));
    assert!(a.job.is_none());
}

#[test]
fn live_damaged_files_count_during_a_rescue() {
    use super::worker::Task;
    let mut a = job_app();
    let at = |a: &mut App, secs: u64| {
        let mut s = snapshot(&sample_map());
        s.elapsed = Duration::from_secs(secs);
        a.on_worker(WorkerMsg::Snapshot(s));
    };
    let live = Task::LiveFiles {
        copy: "/mnt/backup/wd.img".into(),
        mapfile: "/mnt/backup/wd.img.map".into(),
    };
    // Nothing to count from before the mapfile was first saved.
    at(&mut a, 5);
    assert_eq!(a.take_tasks(), vec![]);
    // Asked for at the first save (engine time 5 s).
    a.on_worker(WorkerMsg::Event(RescueEvent::MapfileSaved));
    assert_eq!(a.take_tasks(), vec![live.clone()]);
    at(&mut a, 10);
    snap("job_live_files_counting", &a);
    // One at a time.
    at(&mut a, 50);
    assert_eq!(a.take_tasks(), vec![]);
    let copy = PathBuf::from("/mnt/backup/wd.img");
    a.on_worker(WorkerMsg::LiveFiles(copy.clone(), Ok(fixture_report())));
    snap("job_live_files", &a);
    // The next one is due LIVE_FILES_EVERY of engine time after the last was asked for.
    at(&mut a, 34);
    assert_eq!(a.take_tasks(), vec![]);
    at(&mut a, 36);
    assert_eq!(a.take_tasks(), vec![live]);
    // Fewer damaged files as the rescue goes on.
    let mut fewer = fixture_report();
    fewer.filesystems[0].damaged_files.truncate(1);
    fewer.filesystems[0].damaged_dirs.clear();
    fewer.filesystems[0].lost_names = 0;
    a.on_worker(WorkerMsg::LiveFiles(copy.clone(), Ok(fewer)));
    let c = a
        .job
        .as_ref()
        .and_then(|j| j.live_files.count)
        .expect("count");
    assert_eq!((c.damaged_files, c.lost_bytes, c.lost_names), (1, 4096, 0));
    let text = screen_text(&a, 80, 24);
    assert!(text.contains("Files     1 damaged ("), "{text}");
    // An answer about another copy is not this job's.
    a.on_worker(WorkerMsg::LiveFiles(
        "/other.img".into(),
        Ok(fixture_report()),
    ));
    assert_eq!(a.job.as_ref().and_then(|j| j.live_files.count), Some(c));
}
