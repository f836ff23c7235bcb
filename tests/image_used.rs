//! Used-blocks images of a used disk: a GPT disk whose free space holds old random data, with
//! ext4, FAT32, NTFS and exFAT partitions built without mounting (tests/common/fsimg.rs). The image
//! stores only what the filesystems allocate; restored (by salvor or by `zstd -d`) every
//! filesystem checks clean and every file is identical; `--all-blocks` is bit for bit; damaged
//! metadata gives a whole partition; a rescued copy stores used ∩ rescued.
//!
//! Needs root (FUSE, loop devices) and the tools `scripts/setup.sh` installs.

mod common;

use common::fsimg::*;
use common::{require_tool, run};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Part {
    number: u32,
    kind: &'static str,
    start: u64,
    size: u64,
}

/// A 118 MiB GPT disk: ext4 40 MiB, FAT32 36 MiB, NTFS 24 MiB, exFAT 16 MiB; old random data
/// in the free space and between partitions.
fn used_disk(dir: &Path) -> (PathBuf, Vec<Part>) {
    require_tool("sgdisk", "gdisk");
    let ext = mkfs_ext(dir, "p1.img", 40 * MIB, &["-L", "root"]);
    let fat = mkfs_fat(
        dir,
        "p2.img",
        36 * MIB,
        &["-F", "32", "-s", "1", "-n", "DATA"],
    );
    let ntfs = mkfs_ntfs(dir, "p3.img", 24 * MIB, &["-L", "win"]);
    let exfat = mkfs_exfat(dir, "p4.img", 16 * MIB, &["-L", "stick"]);
    let disk = dir.join("disk.img");
    old_disk(&disk, 118 * MIB, 4711);
    sh(Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+40M",
            "-n",
            "2:0:+36M",
            "-n",
            "3:0:+24M",
            "-n",
            "4:0:+16M",
        ])
        .arg(&disk));
    let mut parts = Vec::new();
    let mut at = MIB;
    for (i, (img, kind, size)) in [
        (&ext, "ext4", 40 * MIB),
        (&fat, "fat32", 36 * MIB),
        (&ntfs, "ntfs", 24 * MIB),
        (&exfat, "exfat", 16 * MIB),
    ]
    .into_iter()
    .enumerate()
    {
        patch(&disk, at, &std::fs::read(img).expect("read"));
        parts.push(Part {
            number: i as u32 + 1,
            kind,
            start: at,
            size,
        });
        at += size;
    }
    (disk, parts)
}

fn slice(img: &Path, p: &Part, out: &Path) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(img).expect("open");
    let mut b = vec![0u8; p.size as usize];
    f.read_exact_at(&mut b, p.start).expect("read");
    std::fs::write(out, b).expect("write");
    out.to_path_buf()
}

/// Checks the filesystem in `img` (one partition) and extracts its files into `tree`.
fn check_and_extract(kind: &str, img: &Path, tree: &Path) {
    std::fs::create_dir_all(tree).expect("mkdir");
    match kind {
        "ext4" => {
            sh(Command::new("e2fsck").arg("-fn").arg(img));
            sh(Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump / {}", tree.display()))
                .arg(img));
        }
        "fat32" => {
            sh(Command::new("fsck.vfat").arg("-n").arg(img));
            sh(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-s", "-n", "-i"])
                .arg(img)
                .arg("::/")
                .arg(tree));
        }
        "ntfs" | "exfat" => {
            if kind == "ntfs" {
                sh(Command::new("ntfsfix").arg("-n").arg(img));
            } else {
                sh(Command::new("fsck.exfat").arg("-n").arg(img));
            }
            let _one = FUSE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let (tool, pkg) = if kind == "ntfs" {
                ("ntfs-3g", "ntfs-3g")
            } else {
                ("mount.exfat-fuse", "exfat-fuse")
            };
            let mnt = tree.with_extension("mnt");
            let m = FuseMount::new(tool, pkg, img, &mnt);
            sh(Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", m.dir.display()))
                .arg(tree));
            m.unmount();
        }
        "xfs" => {
            require_tool("xfs_repair", "xfsprogs");
            sh(Command::new("xfs_repair").arg("-n").arg(img));
            // No userspace extractor for XFS: the kernel's driver, read-only, no log recovery.
            let mnt = tree.with_extension("mnt");
            let m = KernelMount::new("xfs", "ro,norecovery", img, &mnt);
            sh(Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", m.0.display()))
                .arg(tree));
        }
        "btrfs" => {
            sh(Command::new("btrfs").args(["check", "--readonly"]).arg(img));
            sh(Command::new("btrfs").arg("restore").arg(img).arg(tree));
        }
        other => panic!("no checker for {other}"),
    }
}

/// A loop mount by the kernel's own driver, unmounted (and its loop device freed) on drop.
struct KernelMount(PathBuf);

impl KernelMount {
    fn new(fs: &str, opts: &str, img: &Path, dir: &Path) -> KernelMount {
        std::fs::create_dir_all(dir).expect("mkdir");
        let supported = std::fs::read_to_string("/proc/filesystems")
            .expect("/proc/filesystems")
            .split_whitespace()
            .any(|w| w == fs);
        assert!(
            supported,
            "this kernel has no {fs} driver (needed to read the files back)"
        );
        sh(Command::new("mount")
            .args(["-t", fs, "-o"])
            .arg(format!("loop,{opts}"))
            .arg(img)
            .arg(dir));
        KernelMount(dir.to_path_buf())
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn same_trees(a: &Path, b: &Path) {
    let out = run(Command::new("diff").arg("-r").arg(a).arg(b));
    assert!(
        out.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn image_json(img: &Path) -> serde_json::Value {
    let out = sh(common::salvor().arg("info").arg("--json").arg(img));
    serde_json::from_str(&out).expect("info json")
}

fn filesystems(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["metadata"]["filesystems"]
        .as_array()
        .unwrap_or_else(|| panic!("no filesystems in {v}"))
        .clone()
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

#[test]
fn used_disk_round_trip() {
    require_tool("zstd", "zstd");
    let d = tmp();
    let (disk, parts) = used_disk(d.path());
    let img = d.path().join("used.img.zst");
    let all = d.path().join("all.img.zst");
    let out = run(common::salvor().arg("image").arg(&disk).arg(&img));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for p in &parts {
        assert!(
            err.contains(&format!("partition {}: {}", p.number, p.kind)),
            "{err}"
        );
    }
    sh(common::salvor()
        .arg("image")
        .arg("--all-blocks")
        .arg(&disk)
        .arg(&all));
    eprintln!(
        "used-blocks image {} bytes, all-blocks {} bytes",
        size_of(&img),
        size_of(&all)
    );
    assert!(size_of(&img) * 3 < size_of(&all), "not much smaller");

    let v = image_json(&img);
    assert_eq!(v["metadata"]["used_blocks"], true);
    let fss = filesystems(&v);
    assert_eq!(fss.len(), parts.len(), "{fss:?}");
    for (f, p) in fss.iter().zip(&parts) {
        assert_eq!(f["kind"], p.kind, "{f}");
        assert_eq!(f["mode"], "used", "{f}");
        assert!(
            !f["unallocated"].as_array().expect("list").is_empty(),
            "{f}"
        );
    }
    sh(common::salvor().arg("verify").arg(&img));
    sh(common::salvor()
        .arg("verify")
        .arg(&img)
        .arg("--against")
        .arg(&disk));

    // --all-blocks: bit for bit.
    let all_raw = d.path().join("all.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&all)
        .arg("-o")
        .arg(&all_raw));
    assert!(
        std::fs::read(&all_raw).expect("read") == std::fs::read(&disk).expect("read"),
        "--all-blocks image differs from the disk"
    );
    std::fs::remove_file(&all_raw).expect("rm");

    // Restored by salvor onto a fresh target, and by stock zstd.
    let restored = d.path().join("restored.raw");
    sh(common::salvor()
        .arg("restore")
        .arg("--yes")
        .arg(&img)
        .arg(&restored));
    let unzstd = d.path().join("unzstd.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&img)
        .arg("-o")
        .arg(&unzstd));
    assert!(
        std::fs::read(&restored).expect("read") == std::fs::read(&unzstd).expect("read"),
        "salvor restore and zstd -d differ"
    );
    // Outside the partitions the tables and the boot area are imaged as they were; the space
    // after the last partition (old random data here) is not stored and reads as zeros.
    {
        let a = std::fs::read(&disk).expect("read");
        let b = std::fs::read(&unzstd).expect("read");
        let gpt = 34 * 512;
        assert_eq!(a[..gpt], b[..gpt], "protective MBR / primary GPT");
        assert!(
            b[gpt..MIB as usize].iter().all(|&x| x == 0),
            "the GPT's alignment gap holds nothing a GPT disk needs"
        );
        let end = parts.last().map_or(0, |p| p.start + p.size) as usize;
        let backup = a.len() - 33 * 512;
        assert_eq!(a[backup..], b[backup..], "the GPT backup");
        assert!(
            end < backup && a[end..backup] != b[end..backup],
            "the test needs old data there"
        );
        assert!(
            b[end..backup].iter().all(|&x| x == 0),
            "the unpartitioned tail restores as zeros"
        );
        let info = run(common::salvor().arg("info").arg(&img));
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains("outside the partitions"), "{text}");
        assert!(err.contains("in no partition not stored"), "{err}");
    }
    // sgdisk finds the restored table sound (both GPT copies).
    let v = run(Command::new("sgdisk").arg("-v").arg(&restored));
    let vtext = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && vtext.contains("No problems found"),
        "{vtext}"
    );
    for p in &parts {
        let orig = slice(&disk, p, &d.path().join(format!("orig{}.img", p.number)));
        let back = slice(&unzstd, p, &d.path().join(format!("back{}.img", p.number)));
        let t1 = d.path().join(format!("tree-orig{}", p.number));
        let t2 = d.path().join(format!("tree-back{}", p.number));
        check_and_extract(p.kind, &orig, &t1);
        check_and_extract(p.kind, &back, &t2);
        same_trees(&t1, &t2);
    }
}

#[test]
fn damaged_metadata_is_imaged_whole() {
    let d = tmp();
    let disk = d.path().join("disk.img");
    let ext = mkfs_ext(d.path(), "p1.img", 32 * MIB, &["-L", "root"]);
    let fat = mkfs_fat(d.path(), "p2.img", 36 * MIB, &["-F", "32", "-s", "1"]);
    old_disk(&disk, 80 * MIB, 99);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+32M", "-n", "2:0:+36M"])
        .arg(&disk));
    // A wrong free-blocks count in the ext4 superblock (s_free_blocks_count_lo at 1024 + 12).
    let mut e = std::fs::read(&ext).expect("read");
    let free = u32::from_le_bytes([e[1036], e[1037], e[1038], e[1039]]);
    e[1036..1040].copy_from_slice(&(free + 1000).to_le_bytes());
    patch(&disk, MIB, &e);
    patch(&disk, 33 * MIB, &std::fs::read(&fat).expect("read"));
    let img = d.path().join("d.img.zst");
    let out = run(common::salvor().arg("image").arg(&disk).arg(&img));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("partition 1: ext4") && err.contains("imaged whole"),
        "{err}"
    );
    let fss = filesystems(&image_json(&img));
    assert_eq!(fss[0]["mode"], "whole", "{:?}", fss[0]);
    assert!(fss[0]["reason"].is_string());
    assert_eq!(fss[1]["mode"], "used", "{:?}", fss[1]);
    // The whole partition is in the image, bit for bit.
    let raw = d.path().join("d.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&img)
        .arg("-o")
        .arg(&raw));
    let (a, b) = (
        std::fs::read(&disk).expect("read"),
        std::fs::read(&raw).expect("read"),
    );
    let part1 = MIB as usize..(33 * MIB) as usize;
    assert!(
        a[part1.clone()] == b[part1],
        "partition 1 is not in the image bit for bit"
    );
}

#[test]
fn rescued_copy_stores_used_and_rescued() {
    let d = tmp();
    let disk = d.path().join("disk.img");
    let ext = mkfs_ext(d.path(), "p1.img", 32 * MIB, &["-L", "root"]);
    old_disk(&disk, 40 * MIB, 7);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+32M"])
        .arg(&disk));
    patch(&disk, MIB, &std::fs::read(&ext).expect("read"));
    // 1 MiB near the end of the partition was never rescued.
    let bad = (30 * MIB, 31 * MIB);
    let map = d.path().join("disk.map");
    common::write_test_map(&map, 40 * MIB, &[bad]);
    let img = d.path().join("d.img.zst");
    sh(common::salvor()
        .arg("image")
        .arg(&disk)
        .arg(&img)
        .arg("--mapfile")
        .arg(&map));
    let v = image_json(&img);
    let fss = filesystems(&v);
    assert_eq!(fss[0]["mode"], "used");
    let holes = v["trailer"]["holes"].as_array().expect("holes").clone();
    assert_eq!(holes.len(), 1);
    let raw = d.path().join("d.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&img)
        .arg("-o")
        .arg(&raw));
    let (a, b) = (
        std::fs::read(&disk).expect("read"),
        std::fs::read(&raw).expect("read"),
    );
    let unalloc: Vec<(u64, u64)> = fss[0]["unallocated"]
        .as_array()
        .expect("list")
        .iter()
        .map(|h| {
            let o = h["offset"].as_u64().expect("offset");
            (o, o + h["size"].as_u64().expect("size"))
        })
        .collect();
    let mut unalloc = unalloc;
    for h in v["metadata"]["unpartitioned"].as_array().expect("list") {
        let o = h["offset"].as_u64().expect("offset");
        unalloc.push((o, o + h["size"].as_u64().expect("size")));
    }
    let is_unalloc = |x: u64| unalloc.iter().any(|&(s, e)| s <= x && x < e);
    for x in (0..40 * MIB).step_by(512) {
        let i = x as usize;
        let stored = &b[i..i + 512];
        if (bad.0..bad.1).contains(&x) || is_unalloc(x) {
            assert!(stored.iter().all(|&c| c == 0), "offset {x} should be zeros");
        } else {
            assert_eq!(stored, &a[i..i + 512], "offset {x} should be stored");
        }
    }
}

/// Waits for a loop device's partition nodes; adds them with `partx -a` (BLKPG) when the kernel
/// does not scan the table itself.
fn wait_parts(dev: &Path, last: &Path) {
    for i in 0..100 {
        if last.exists() {
            return;
        }
        if i == 20 {
            let _ = run(Command::new("partx").arg("-a").arg(dev));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{} did not appear", last.display());
}

#[test]
fn partition_image_onto_a_partition() {
    let d = tmp();
    // Source: partition 1 of a disk on a loop device.
    let disk = d.path().join("disk.img");
    let ext = mkfs_ext(d.path(), "p1.img", 24 * MIB, &["-L", "root"]);
    old_disk(&disk, 40 * MIB, 5);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+24M", "-n", "2:0:+8M"])
        .arg(&disk));
    patch(&disk, MIB, &std::fs::read(&ext).expect("read"));
    let lo = common::LoopDev::attach(&disk, true);
    let p1 = PathBuf::from(format!("{}p1", lo.dev.display()));
    let p2 = PathBuf::from(format!("{}p2", lo.dev.display()));
    wait_parts(&lo.dev, &p2);
    let img = d.path().join("part.img.zst");
    let out = run(common::salvor().arg("image").arg(&p1).arg(&img));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("whole device: ext4"), "{err}");
    let v = image_json(&img);
    assert_eq!(v["metadata"]["source_size"], 24 * MIB);
    assert_eq!(filesystems(&v)[0]["mode"], "used");

    // A fresh disk with a partition of the same size, and one too small.
    let target = d.path().join("target.img");
    // Old data on the target: unallocated space must come out as zeros, as in `zstd -d`.
    old_disk(&target, 40 * MIB, 6);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+24M", "-n", "2:0:+8M"])
        .arg(&target));
    let tlo = common::LoopDev::attach(&target, true);
    let t1 = PathBuf::from(format!("{}p1", tlo.dev.display()));
    let t2 = PathBuf::from(format!("{}p2", tlo.dev.display()));
    wait_parts(&tlo.dev, &t2);
    let small = run(common::salvor()
        .arg("restore")
        .arg("--yes")
        .arg(&img)
        .arg(&t2));
    assert!(!small.status.success(), "a too small partition was written");
    sh(common::salvor()
        .arg("restore")
        .arg("--yes")
        .arg(&img)
        .arg(&t1));
    let back = d.path().join("back.img");
    sh(Command::new("dd")
        .arg(format!("if={}", t1.display()))
        .arg(format!("of={}", back.display()))
        .args(["bs=1M", "status=none"]));
    let raw = d.path().join("part.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&img)
        .arg("-o")
        .arg(&raw));
    assert!(
        std::fs::read(&raw).expect("read") == std::fs::read(&back).expect("read"),
        "the restored partition differs from zstd -d of its image"
    );
    let (a, b) = (d.path().join("ta"), d.path().join("tb"));
    check_and_extract("ext4", &ext, &a);
    check_and_extract("ext4", &back, &b);
    same_trees(&a, &b);
}

/// A filesystem outside every partition (a deleted partition's, say) is not dropped with the
/// unpartitioned space: it is stored whole, with a warning.
#[test]
fn a_filesystem_outside_the_partitions_is_kept() {
    require_tool("sgdisk", "gdisk");
    let d = tmp();
    let disk = d.path().join("disk.img");
    old_disk(&disk, 64 * MIB, 99);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+20M"])
        .arg(&disk));
    let p1 = mkfs_ext(d.path(), "p1.img", 20 * MIB, &["-L", "listed"]);
    patch(&disk, MIB, &std::fs::read(p1).expect("read"));
    let lost = mkfs_ext(d.path(), "lost.img", 16 * MIB, &["-L", "deleted"]);
    // Where a deleted partition 2 began, right after partition 1.
    patch(&disk, 21 * MIB, &std::fs::read(lost).expect("read"));
    let img = d.path().join("disk.img.zst");
    let out = run(common::salvor().arg("image").arg(&disk).arg(&img));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a filesystem (ext4) at byte"), "{err}");
    let back = d.path().join("back.raw");
    sh(common::salvor()
        .arg("restore")
        .arg("--yes")
        .arg(&img)
        .arg(&back));
    let a = std::fs::read(&disk).expect("read");
    let b = std::fs::read(&back).expect("read");
    let (s, e) = (21 * MIB as usize, a.len() - 33 * 512);
    assert_eq!(
        a[s..e],
        b[s..e],
        "the space after partition 1 holds a filesystem: kept"
    );
}

/// A volume that was not closed cleanly (here exFAT's dirty flag) is imaged whole, with the
/// reason, and never refused: its allocation bitmap may not be the whole truth.
#[test]
fn a_dirty_volume_is_imaged_whole() {
    require_tool("zstd", "zstd");
    let d = tmp();
    let img = mkfs_exfat(d.path(), "ex.img", 16 * MIB, &["-L", "stick"]);
    // VolumeFlags (byte 106) bit 1: VolumeDirty; outside the boot-region checksum.
    let mut fl = std::fs::read(&img).expect("read")[106];
    fl |= 2;
    patch(&img, 106, &[fl]);
    let out_img = d.path().join("ex.img.zst");
    let out = run(common::salvor().arg("image").arg(&img).arg(&out_img));
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imaged whole") && err.contains("marked dirty"),
        "{err}"
    );
    let fss = filesystems(&image_json(&out_img));
    assert_eq!(fss[0]["mode"], "whole", "{fss:?}");
    let raw = d.path().join("ex.raw");
    sh(Command::new("zstd")
        .args(["-q", "-d", "-f"])
        .arg(&out_img)
        .arg("-o")
        .arg(&raw));
    assert!(
        std::fs::read(&raw).expect("read") == std::fs::read(&img).expect("read"),
        "a dirty volume's image is the volume bit for bit"
    );
}

/// XFS and btrfs partitions: used-blocks image, restore, `xfs_repair -n` / `btrfs check` clean,
/// every file identical (XFS read back by the kernel, btrfs by `btrfs restore`).
#[test]
fn xfs_and_btrfs_round_trip() {
    require_tool("sgdisk", "gdisk");
    let d = tmp();
    let xfs = mkfs_xfs(d.path(), "p1.img", 304 * MIB);
    let btrfs = mkfs_btrfs(d.path(), "p2.img", 120 * MIB);
    let disk = d.path().join("disk.img");
    old_disk(&disk, 430 * MIB, 4242);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+304M", "-n", "2:0:+120M"])
        .arg(&disk));
    patch(&disk, MIB, &std::fs::read(&xfs).expect("read"));
    patch(&disk, 305 * MIB, &std::fs::read(&btrfs).expect("read"));
    let parts = [
        Part {
            number: 1,
            kind: "xfs",
            start: MIB,
            size: 304 * MIB,
        },
        Part {
            number: 2,
            kind: "btrfs",
            start: 305 * MIB,
            size: 120 * MIB,
        },
    ];
    let img = d.path().join("disk.img.zst");
    let out = run(common::salvor().arg("image").arg(&disk).arg(&img));
    assert!(out.status.success(), "{out:?}");
    let fss = filesystems(&image_json(&img));
    for (f, p) in fss.iter().zip(&parts) {
        assert_eq!(f["kind"], p.kind, "{f}");
        assert_eq!(f["mode"], "used", "{f}");
    }
    let back = d.path().join("back.raw");
    sh(common::salvor()
        .arg("restore")
        .arg("--yes")
        .arg(&img)
        .arg(&back));
    for p in &parts {
        let orig = slice(&disk, p, &d.path().join(format!("orig{}.img", p.number)));
        let restored = slice(&back, p, &d.path().join(format!("back{}.img", p.number)));
        let t1 = d.path().join(format!("tree-orig{}", p.number));
        let t2 = d.path().join(format!("tree-back{}", p.number));
        check_and_extract(p.kind, &orig, &t1);
        check_and_extract(p.kind, &restored, &t2);
        same_trees(&t1, &t2);
    }
}
