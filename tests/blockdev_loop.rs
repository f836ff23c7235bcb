//! Block device discovery against real loop devices.
//!
//! Needs root and these Debian packages: gdisk (sgdisk), fdisk (sfdisk), mount (losetup, mount,
//! umount), util-linux (lsblk, mkswap, partx), e2fsprogs (mkfs.ext4). A missing tool fails the test with
//! the package to install: these tests must not pass by not running.
//!
//! Each test detaches only the loop device it attached (never `losetup -D`: other loop devices on
//! the machine belong to someone else).

use salvor::blockdev::{self, DiskInfo, TableKind, Transport};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Our tests attach and mount one at a time: fewer races for free loop devices.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: u64 = 1 << 20;

fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("required tool `{name}` not found: install the Debian package `{package}`");
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "blockdev loop tests need root (losetup, mount)");
}

fn run(prog: &Path, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", prog.display()));
    assert!(
        out.status.success(),
        "{} {:?} failed: {}",
        prog.display(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image file attached to a loop device with partition scanning. Dropping it unmounts what
/// it mounted, detaches the loop device and removes the files, also when a test fails.
struct LoopDisk {
    dir: tempfile::TempDir,
    image: PathBuf,
    dev: Option<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl LoopDisk {
    fn new(size: u64) -> LoopDisk {
        require_root();
        // Under the target dir rather than /tmp: a real disk-backed filesystem, not tmpfs.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tempfile::Builder::new()
            .prefix("blockdev-")
            .tempdir_in(base)
            .expect("temp dir");
        let image = dir.path().join("disk.img");
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(size).expect("size image");
        LoopDisk {
            dir,
            image,
            dev: None,
            mounts: Vec::new(),
        }
    }

    fn attach(&mut self, expect_parts: &[u32]) -> PathBuf {
        let losetup = tool("losetup", "mount");
        let img = self.image.to_str().expect("utf-8 path");
        let dev = PathBuf::from(run(&losetup, &["-f", "--show", "-P", img]).trim());
        self.dev = Some(dev.clone());
        // Partition nodes appear asynchronously (devtmpfs, no udev needed): wait for them. A
        // kernel built without partition table parsers (some VM kernels) finds none: then
        // salvor adds them from user space with BLKPG, as `partx -a` does.
        if !self.wait_parts(expect_parts, Duration::from_secs(2)) {
            blockdev::show_partitions(&dev).expect("show_partitions");
            assert!(
                self.wait_parts(expect_parts, Duration::from_secs(10)),
                "partitions of {} did not appear",
                dev.display()
            );
        }
        dev
    }

    fn wait_parts(&self, parts: &[u32], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !parts.iter().all(|n| self.part(*n).exists()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    fn dev(&self) -> &Path {
        self.dev.as_deref().expect("attached")
    }

    fn part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.dev().display()))
    }

    fn mount(&mut self, part: &Path, name: &str) -> PathBuf {
        let mnt = self.dir.path().join(name);
        std::fs::create_dir(&mnt).expect("mount dir");
        let mount = tool("mount", "mount");
        run(
            &mount,
            &[part.to_str().expect("utf-8"), mnt.to_str().expect("utf-8")],
        );
        self.mounts.push(mnt.clone());
        mnt
    }

    fn unmount_all(&mut self) {
        let umount = tool("umount", "mount");
        while let Some(m) = self.mounts.pop() {
            let ok = Command::new(&umount)
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Lazy unmount so the loop device can still be released.
                let _ = Command::new(&umount).arg("-l").arg(&m).status();
            }
        }
    }

    fn info(&self) -> DiskInfo {
        let disks = blockdev::list_disks().expect("list_disks");
        disks
            .into_iter()
            .find(|d| d.dev_path == self.dev())
            .unwrap_or_else(|| panic!("{} not listed", self.dev().display()))
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        self.unmount_all();
        if let Some(dev) = self.dev.take() {
            // Partitions added from user space could outlive the attachment: remove them first.
            let _ = Command::new("partx").arg("-d").arg(&dev).output();
            // Detach exactly our device, by name; retry while the kernel drops its last users.
            for _ in 0..20 {
                let ok = Command::new("losetup")
                    .arg("-d")
                    .arg(&dev)
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn lsblk_sizes(dev: &Path) -> Vec<(String, u64)> {
    let lsblk = tool("lsblk", "util-linux");
    let json = run(
        &lsblk,
        &["-b", "-J", "-o", "NAME,SIZE", dev.to_str().expect("utf-8")],
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("lsblk json");
    let mut out = Vec::new();
    let disk = &v["blockdevices"][0];
    let size = |x: &serde_json::Value| {
        x["size"]
            .as_u64()
            .or_else(|| x["size"].as_str().and_then(|s| s.parse().ok()))
            .expect("size")
    };
    out.push((disk["name"].as_str().expect("name").to_string(), size(disk)));
    for c in disk["children"].as_array().cloned().unwrap_or_default() {
        out.push((c["name"].as_str().expect("name").to_string(), size(&c)));
    }
    out
}

/// (number, start sector, end sector, code, name) from `sgdisk -p`.
fn sgdisk_parts(image: &Path) -> Vec<(u32, u64, u64, String, String)> {
    let sgdisk = tool("sgdisk", "gdisk");
    let text = run(&sgdisk, &["-p", image.to_str().expect("utf-8")]);
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Number"));
    lines.next();
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            // Number Start End Size Unit Code Name...
            Some((
                f[0].parse().ok()?,
                f[1].parse().ok()?,
                f[2].parse().ok()?,
                f[5].to_string(),
                f[6..].join(" "),
            ))
        })
        .collect()
}

fn make_gpt(disk: &LoopDisk) {
    let sgdisk = tool("sgdisk", "gdisk");
    run(
        &sgdisk,
        &[
            "-n",
            "1:2048:+16M",
            "-t",
            "1:8300",
            "-c",
            "1:alpha",
            "-n",
            "2:0:+8M",
            "-t",
            "2:ef00",
            "-c",
            "2:EFI sys",
            "-n",
            "3:0:0",
            "-t",
            "3:8200",
            "-c",
            "3:swap",
            disk.image.to_str().expect("utf-8"),
        ],
    );
}

#[test]
fn gpt_loop_disk_is_listed_with_partitions() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut disk = LoopDisk::new(64 * MIB);
    make_gpt(&disk);
    let dev = disk.attach(&[1, 2, 3]);
    run(
        &tool("mkswap", "util-linux"),
        &[disk.part(3).to_str().expect("utf-8")],
    );

    let info = disk.info();
    println!("{}", blockdev::render_table(std::slice::from_ref(&info)));
    assert_eq!(info.transport, Transport::Loop);
    assert_eq!(
        info.loop_backing_file.as_deref(),
        Some(std::fs::canonicalize(&disk.image).expect("canon").as_path())
    );
    assert_eq!(info.size, 64 * MIB);
    assert_eq!(info.logical_sector_size, 512);
    assert_eq!(info.table, TableKind::Gpt);
    assert!(info.serial.is_none() && info.wwn.is_none());

    // Sizes as lsblk sees them.
    let lsblk = lsblk_sizes(&dev);
    assert_eq!(lsblk[0].1, info.size);
    assert_eq!(lsblk.len(), 1 + info.partitions.len());
    for (name, size) in &lsblk[1..] {
        let p = info
            .partitions
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(p.size, *size, "{name}");
    }

    // Layout, types and names as sgdisk wrote them.
    let sg = sgdisk_parts(&disk.image);
    assert_eq!(sg.len(), 3);
    let guid = |code: &str| match code {
        "8300" => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "EF00" => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "8200" => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        other => panic!("unexpected code {other}"),
    };
    for (num, start, end, code, name) in &sg {
        let p = info
            .partitions
            .iter()
            .find(|p| p.number == *num)
            .unwrap_or_else(|| panic!("partition {num} missing"));
        assert_eq!(p.start, start * 512);
        assert_eq!(p.size, (end - start + 1) * 512);
        assert_eq!(p.type_code.as_deref(), Some(guid(code)));
        assert_eq!(p.label.as_deref(), Some(name.as_str()));
        assert!(p.uuid.is_some());
        assert!(p.mounts.is_empty());
    }
    let p3 = &info.partitions[2];
    assert_eq!(p3.fs_type.as_deref(), Some("swap"));
    assert_eq!(p3.type_name.as_deref(), Some("Linux swap"));

    // The same table read from the image file, with the sector size guessed.
    let t = blockdev::partition_table_of_path(&disk.image).expect("table of image");
    assert_eq!(t.kind, TableKind::Gpt);
    assert_eq!(t.entries.len(), 3);
    assert_eq!(t.entries[1].start, info.partitions[1].start);

    // No serial, no WWN: a loop device can never be found again by identity.
    let id = blockdev::identity_of_path(&dev, info.size).expect("identity");
    assert_eq!(blockdev::find_by_identity(&id), None);

    // JSON output is plain serde.
    let json = serde_json::to_value(&info).expect("json");
    assert_eq!(json["transport"], "loop");
    assert_eq!(json["table"], "gpt");
}

#[test]
fn mbr_logical_partitions_are_numbered_from_5() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut disk = LoopDisk::new(64 * MIB);
    let sfdisk = tool("sfdisk", "fdisk");
    let script = "label: dos\n\
                  start=2048, size=16MiB, type=83, bootable\n\
                  type=5\n\
                  size=10MiB, type=83\n\
                  size=12MiB, type=82\n";
    let mut child = Command::new(&sfdisk)
        .arg("-q")
        .arg(&disk.image)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sfdisk");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).expect("write script");
    }
    let out = child.wait_with_output().expect("sfdisk");
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = run(&sfdisk, &["-J", disk.image.to_str().expect("utf-8")]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("sfdisk json");
    let sf: Vec<(u64, u64, String)> = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().expect("start"),
                p["size"].as_u64().expect("size"),
                p["type"].as_str().expect("type").to_string(),
            )
        })
        .collect();
    assert_eq!(sf.len(), 4, "sfdisk -J: {json}");

    disk.attach(&[1, 5, 6]);
    let info = disk.info();
    println!("{}", blockdev::render_table(std::slice::from_ref(&info)));
    assert_eq!(info.table, TableKind::Mbr);
    let nums: Vec<u32> = info.partitions.iter().map(|p| p.number).collect();
    assert_eq!(nums, [1, 2, 5, 6]);
    assert!(info.partitions[0].bootable);
    assert!(info.partitions[1].extended);
    for (p, (start, size, ty)) in info.partitions.iter().zip(&sf) {
        assert_eq!(p.start, start * 512, "partition {}", p.number);
        let ty = u8::from_str_radix(ty, 16).expect("hex type");
        assert_eq!(p.type_code.as_deref(), Some(format!("0x{ty:02x}").as_str()));
        // Including the extended one, which the kernel itself shows as 1 KiB.
        assert_eq!(p.size, size * 512, "partition {}", p.number);
    }
    for p in &info.partitions[2..] {
        assert!(p.logical);
        assert!(p.start > info.partitions[1].start, "absolute start");
    }

    // The same from the image file.
    let t = blockdev::partition_table_of_path(&disk.image).expect("table of image");
    let nums: Vec<u32> = t.entries.iter().map(|e| e.number).collect();
    assert_eq!(nums, [1, 2, 5, 6]);
    assert_eq!(t.entries[3].start, sf[3].0 * 512);
    assert_eq!(t.entries[1].size, sf[1].1 * 512);
}

#[test]
fn mounted_partition_is_detected_and_traced() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut disk = LoopDisk::new(64 * MIB);
    make_gpt(&disk);
    let dev = disk.attach(&[1, 2, 3]);
    let (p1, p2) = (disk.part(1), disk.part(2));
    run(
        &tool("mkfs.ext4", "e2fsprogs"),
        &["-q", "-F", p1.to_str().expect("utf-8")],
    );
    // A space in the mount point: mountinfo escapes it as \040.
    let mnt = disk.mount(&p1, "mnt point");

    let info = disk.info();
    println!("{}", blockdev::render_table(std::slice::from_ref(&info)));
    let part1 = &info.partitions[0];
    assert_eq!(part1.fs_type.as_deref(), Some("ext4"));
    assert_eq!(part1.mounts.len(), 1, "{:?}", part1.mounts);
    assert_eq!(part1.mounts[0].mount_point, mnt);
    assert_eq!(part1.mounts[0].fs_type, "ext4");
    assert!(info.partitions[1].mounts.is_empty());

    // Writing the disk or that partition would hit a mounted filesystem; partition 2 is free.
    let m = blockdev::mount_points_of(&dev).expect("mounts of disk");
    assert!(m.iter().any(|m| m.mount_point == mnt), "{m:?}");
    assert!(!blockdev::mount_points_of(&p1).expect("p1").is_empty());
    assert!(blockdev::mount_points_of(&p2).expect("p2").is_empty());

    assert!(blockdev::same_device(&dev, &p1));
    assert!(blockdev::same_device(&p1, &dev));
    assert!(blockdev::same_device(&p1, &p1));
    assert!(!blockdev::same_device(&p1, &p2));

    // A file on the mounted filesystem: its chain goes through our loop device down to the disk
    // holding the image file.
    let file = mnt.join("mapfile");
    std::fs::write(&file, b"x").expect("write file");
    let chain = blockdev::disks_holding_file(&file);
    assert_eq!(chain.first().map(PathBuf::as_path), Some(dev.as_path()));
    let under_image = blockdev::disk_holding_file(&disk.image);
    assert_eq!(
        blockdev::disk_holding_file(&file),
        under_image.clone().or(Some(dev.clone()))
    );
    // Our loop device is built on the disk holding its image: writing that disk would hurt it.
    if let Some(phys) = &under_image {
        assert!(blockdev::same_device(&dev, phys));
    }

    disk.unmount_all();
    assert!(blockdev::mount_points_of(&dev).expect("mounts").is_empty());
    assert!(disk.info().partitions[0].mounts.is_empty());
}

#[test]
fn boot_disk_is_where_root_lives() {
    let root = blockdev::disk_holding_file(Path::new("/"));
    let boot = blockdev::boot_disk();
    println!("boot disk: {boot:?}, disk holding /: {root:?}");
    if let Some(b) = &boot {
        assert!(b.starts_with("/dev/"));
    }
    let medium_mounted = blockdev::read_mounts().iter().any(|m| {
        blockdev::BOOT_MEDIUM_MOUNTS
            .iter()
            .any(|p| m.mount_point == Path::new(p))
    });
    if !medium_mounted {
        assert_eq!(boot, root);
    }
}

/// `show_partitions` makes a disk's partitions appear with the sizes its table gives, also where
/// the kernel parses no tables, and calling it again leaves them so.
#[test]
fn partitions_are_shown_from_user_space() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut disk = LoopDisk::new(64 * MIB);
    make_gpt(&disk);
    let losetup = tool("losetup", "mount");
    let img = disk.image.to_str().expect("utf-8 path").to_string();
    // With the partition-scan flag (so that detaching drops the partitions again, whoever added
    // them); on a kernel without table parsers, like this project's CI, the scan finds none and
    // show_partitions adds them.
    let dev = PathBuf::from(run(&losetup, &["-f", "--show", "-P", &img]).trim());
    disk.dev = Some(dev.clone());
    let name = dev
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let sysfs = |n: u32| PathBuf::from(format!("/sys/class/block/{name}p{n}"));
    blockdev::show_partitions(&dev).expect("show_partitions");
    assert!(
        disk.wait_parts(&[1, 2, 3], Duration::from_secs(10)),
        "no partition nodes"
    );
    for (n, first, last, _, _) in sgdisk_parts(&disk.image) {
        let start: u64 = std::fs::read_to_string(sysfs(n).join("start"))
            .expect("start")
            .trim()
            .parse()
            .expect("number");
        let size: u64 = std::fs::read_to_string(sysfs(n).join("size"))
            .expect("size")
            .trim()
            .parse()
            .expect("number");
        assert_eq!((start, start + size - 1), (first, last), "partition {n}");
    }
    // Again: a re-read may drop what the kernel cannot parse, and they are added back; either
    // way the partitions are there afterwards, once each.
    blockdev::show_partitions(&dev).expect("again");
    assert!(
        disk.wait_parts(&[1, 2, 3], Duration::from_secs(10)),
        "partitions gone"
    );
    assert!(!sysfs(4).exists(), "a partition the table does not have");
}
