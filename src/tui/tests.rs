//! Snapshot and state-machine tests of the TUI on `TestBackend`, with fixture disks.

use super::app::*;
use super::disks::{DiskRow, PartRow};
use super::sysinfo::{SecureBoot, SystemInfo};
use super::worker::WorkerMsg;
use super::*;
use crate::mapfile::{Block, BlockStatus, Mapfile, Phase};
use crate::progress::{Direction, RescueEvent, RescueSnapshot};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

const GB: u64 = 1_000_000_000;

fn part(path: &str, size: u64, fs: &str, label: Option<&str>, mount: Option<&str>) -> PartRow {
    PartRow {
        path: path.into(),
        size,
        fstype: Some(fs.into()),
        label: label.map(Into::into),
        mountpoints: mount.into_iter().map(PathBuf::from).collect(),
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

struct FakeHost {
    disks: Vec<DiskRow>,
    existing: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl FakeHost {
    fn new() -> FakeHost {
        FakeHost {
            disks: fixture_disks(),
            existing: HashSet::new(),
            dirs: ["/", "/mnt", "/mnt/backup", "/root", "/tmp", "/mnt/sick"]
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

impl Host for FakeHost {
    fn list_disks(&self) -> Result<Vec<DiskRow>, String> {
        Ok(self.disks.clone())
    }
    fn exists(&self, p: &Path) -> bool {
        self.existing.contains(p) || self.dirs.contains(p)
    }
    fn is_dir(&self, p: &Path) -> bool {
        self.dirs.contains(p)
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
    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            kernel: "Linux 6.12.9-amd64".into(),
            cpu: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            mem_total: 8 * GB,
            mem_available: 6 * GB,
            secure_boot: Some(SecureBoot::On),
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
    down(&mut a, 5); // clamps on the last option
    key(&mut a, KeyCode::Char(' ')); // scrape off
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
            scrape: false
        }
    );
}

#[test]
fn disk_target_needs_its_name_typed() {
    let mut a = app();
    to_confirm_disk(&mut a);
    assert_eq!(a.flow.mapfile, PathBuf::from("/root/salvor-sdb.map"));
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
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Menu);
    assert!(a.job.is_none());
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
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
    a.on_worker(WorkerMsg::Done(Ok(crate::rescue::Outcome::Finished)));
    snap("job_finished", &a);
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
fn snap_system_info_and_soon() {
    let mut a = app();
    down(&mut a, 6);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::SystemInfo);
    snap("system_info", &a);
    key(&mut a, KeyCode::Esc);
    a.menu_cursor = 2;
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::ComingSoon(Feature::Image));
    snap("coming_soon_image", &a);
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
    let screen = format!("{}", term.backend());
    assert!(screen.contains("Finished"), "{screen}");
    // Back to the menu, then quit.
    script.0.extend([KeyCode::Enter, KeyCode::Char('q')]);
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
