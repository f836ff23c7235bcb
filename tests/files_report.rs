//! `salvor domain` and `salvor files` against independent tools, on filesystems built as in
//! tests/fs_layer.rs with bad sectors placed in file data, directories, the inode table and free
//! space (the mapfile written as a rescue would leave it; the rescued copy holds zeros there).
//!
//! ext4: `debugfs` (`icheck`, `ncheck`, `imap`) on the undamaged image names the owners of the
//! bad blocks. FAT: every file is read with mtools through `nbdkit`'s ddrescue filter (reads of
//! unrescued sectors fail) exposed by `nbdfuse`. GNU ddrescue checks the domain mapfile.

mod common;

use common::fsimg::{mkfs_ext, mkfs_fat, sh, tmp, MIB};
use common::{require_tool, run, write_test_map};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rescued copy (zeros where not rescued) and its mapfile.
fn damage(img: &Path, bad: &[(u64, u64)]) -> (PathBuf, PathBuf) {
    let mut data = std::fs::read(img).expect("read image");
    let mut bad = bad.to_vec();
    bad.sort_unstable();
    for &(s, e) in &bad {
        data[s as usize..e as usize].fill(0);
    }
    let copy = img.with_extension("rescued");
    std::fs::write(&copy, &data).expect("write copy");
    let map = img.with_extension("map");
    write_test_map(&map, data.len() as u64, &bad);
    (copy, map)
}

fn files_json(map: &Path, copy: &Path) -> serde_json::Value {
    let out = sh(common::salvor()
        .arg("files")
        .arg(map)
        .arg(copy)
        .arg("--json"));
    let text = sh(common::salvor().arg("files").arg(map).arg(copy));
    eprintln!("{text}");
    serde_json::from_str(&out).expect("json")
}

fn strings(v: &serde_json::Value, list: &str, field: &str) -> BTreeSet<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|x| x[field].as_str().expect("string").to_string())
        .collect()
}

fn debugfs(img: &Path, req: &str) -> String {
    let out = run(Command::new("debugfs").arg("-R").arg(req).arg(img));
    assert!(out.status.success(), "debugfs {req}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Inode → path, by `ncheck` (every name of each inode).
fn ncheck(img: &Path, inodes: &BTreeSet<u64>) -> Vec<(u64, String)> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = inodes.iter().map(u64::to_string).collect();
    debugfs(img, &format!("ncheck {}", list.join(" ")))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (i, p) = l.split_once('\t')?;
            Some((i.trim().parse().ok()?, p.trim().to_string()))
        })
        .collect()
}

/// Owners of blocks, by `icheck`.
fn icheck(img: &Path, blocks: &[u64]) -> BTreeSet<u64> {
    let list: Vec<String> = blocks.iter().map(u64::to_string).collect();
    debugfs(img, &format!("icheck {}", list.join(" ")))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn first_block(img: &Path, path: &str, nth: u64) -> u64 {
    let out = debugfs(img, &format!("bmap {path} {nth}"));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("bmap {path}: {out}"))
}

fn is_dir(img: &Path, ino: u64) -> bool {
    debugfs(img, &format!("stat <{ino}>")).contains("Type: directory")
}

#[test]
fn ext4_damaged_files_match_debugfs() {
    require_tool("debugfs", "e2fsprogs");
    let d = tmp();
    let img = mkfs_ext(d.path(), "e.img", 64 * MIB, &["-b", "4096", "-I", "256"]);
    let bs = 4096u64;
    // The inode table block of the last directory's last file; a directory whose inodes all
    // lie elsewhere gets its only block destroyed.
    let imap = debugfs(&img, "imap /dir3/file7.bin");
    let it_block: u64 = imap
        .split("located at block ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("imap: {imap}"));
    let itable_start = it_block; // 16 inodes of 256 bytes per block
    let first_ino: u64 = debugfs(&img, "stat /dir3/file7.bin")
        .split("Inode: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("inode");
    let in_block: BTreeSet<u64> = {
        let base = (first_ino - 1) / 16 * 16 + 1;
        (base..base + 16).collect()
    };
    let dir = ["dir0", "dir1", "dir2"]
        .into_iter()
        .find(|d| {
            let ls = debugfs(&img, &format!("ls /{d}"));
            let inos: Vec<u64> = ls
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            inos.iter().all(|i| !in_block.contains(i))
        })
        .expect("a directory outside the damaged inode block");
    let dir_block = first_block(&img, &format!("/{dir}"), 0);
    // File data: one block in the middle of big.bin, one in the damaged directory's file.
    let big_block = first_block(&img, "/big.bin", 100);
    let hidden_block = first_block(&img, &format!("/{dir}/file4.bin"), 1);
    let data_block = first_block(&img, "/dir3/file2.bin", 0);
    let free = debugfs(&img, "ffb 2 15000");
    let free_block: u64 = free
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("ffb: {free}"));
    let blocks = [
        big_block,
        hidden_block,
        data_block,
        dir_block,
        itable_start,
        free_block,
    ];
    let bad: Vec<(u64, u64)> = blocks.iter().map(|&b| (b * bs, b * bs + bs)).collect();
    // Half a block of big.bin: only 2048 bytes of it lost.
    let mut bad2 = bad.clone();
    bad2[0] = (big_block * bs + 1024, big_block * bs + 3072);
    let (copy, map) = damage(&img, &bad2);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert_eq!(fs["kind"], "ext4", "{v}");
    assert!(fs["error"].is_null(), "{v}");

    // The oracle, on the undamaged image.
    let data_owners = icheck(&img, &[big_block, hidden_block, data_block]);
    let dir_owner = icheck(&img, &[dir_block]);
    let mut expected_dirs = BTreeSet::new();
    for (_, path) in ncheck(&img, &dir_owner) {
        expected_dirs.insert(path.replace("//", "/"));
    }
    let in_use: BTreeSet<u64> = ncheck(&img, &in_block).into_iter().map(|x| x.0).collect();
    let mut candidates: Vec<(u64, String)> = ncheck(&img, &data_owners);
    for (ino, path) in ncheck(&img, &in_use) {
        if is_dir(&img, ino) {
            expected_dirs.insert(path.replace("//", "/"));
        } else {
            candidates.push((ino, path));
        }
    }
    // A file under a directory whose inode or block was lost is known only by its inode.
    let under_dead = |path: &str| {
        expected_dirs
            .iter()
            .any(|d| path.starts_with(&format!("{d}/")))
    };
    let mut expected_files = BTreeSet::new();
    for (ino, path) in candidates {
        let path = path.replace("//", "/");
        if under_dead(&path) {
            expected_files.insert(format!("<inode {ino}>"));
        } else {
            expected_files.insert(path);
        }
    }
    assert_eq!(strings(fs, "damaged_files", "path"), expected_files, "{v}");
    assert_eq!(strings(fs, "damaged_dirs", "path"), expected_dirs, "{v}");
    // The dead directories' entries (not . and ..) have lost their names.
    let named: u64 = expected_dirs
        .iter()
        .map(|d| {
            debugfs(&img, &format!("ls {d}"))
                .split_whitespace()
                .filter(|w| w.parse::<u64>().is_ok())
                .count() as u64
                - 2
        })
        .sum();
    assert!(named > 0);
    assert_eq!(fs["lost_names"], named, "{v}");
    assert_eq!(fs["unreadable_inodes"], in_use.len() as u64, "{v}");
    assert_eq!(fs["unrescued_free"], bs, "{v}");
    // big.bin: exactly the 2048 bytes at file offset 100 blocks + 1024.
    let big = fs["damaged_files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == "/big.bin")
        .expect("big.bin");
    assert_eq!(big["lost_bytes"], 2048);
    assert_eq!(
        big["lost"][0],
        serde_json::json!([100 * bs + 1024, 100 * bs + 3072])
    );
}

/// Every file's path in a FAT image, by `mdir -/ -b`.
fn fat_files(img: &Path) -> Vec<String> {
    let out = sh(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-/", "-b", "-i"])
        .arg(img)
        .arg("::/"));
    out.lines()
        .map(|l| l.trim().trim_start_matches("::").to_string())
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect()
}

/// nbdkit's ddrescue filter over the rescued copy, exposed as a file by nbdfuse; unmounted and
/// stopped on drop (also when the test fails).
struct NbdFile {
    mnt: PathBuf,
    child: std::process::Child,
}

impl NbdFile {
    fn new(mnt: &Path, copy: &Path, map: &Path) -> NbdFile {
        require_tool("nbdkit", "nbdkit");
        require_tool("nbdfuse", "libnbd-bin");
        std::fs::create_dir_all(mnt).expect("mkdir");
        let child = Command::new("nbdfuse")
            .arg(mnt)
            .args(["--command", "nbdkit", "-s", "--filter=ddrescue", "file"])
            .arg(copy)
            .arg(format!("ddrescue-mapfile={}", map.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nbdfuse");
        for _ in 0..100 {
            if mnt.join("nbd").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        NbdFile {
            mnt: mnt.to_path_buf(),
            child,
        }
    }

    fn dev(&self) -> PathBuf {
        self.mnt.join("nbd")
    }
}

impl Drop for NbdFile {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files mtools cannot read through nbdkit's ddrescue filter.
fn unreadable_via_nbdkit(d: &Path, copy: &Path, map: &Path, files: &[String]) -> BTreeSet<String> {
    let nbd = NbdFile::new(&d.join("nbd"), copy, map);
    let dev = nbd.dev();
    let mut bad = BTreeSet::new();
    for f in files {
        let out = run(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&dev)
            .arg(format!("::{f}")));
        if !out.status.success() {
            bad.insert(f.clone());
        }
    }
    bad
}

fn fat_case(fat: &str, size: u64) {
    require_tool("mshowfat", "mtools");
    let d = tmp();
    let img = mkfs_fat(d.path(), "f.img", size, &["-F", fat]);
    let files = fat_files(&img);
    assert!(files.len() > 20, "{files:?}");
    // Sectors of three files' data (by their first cluster, from mshowfat), and free space.
    let info = sh(Command::new("minfo")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg("::"));
    eprintln!("{info}");
    let r = salvor_probe(&img);
    // The first contiguous run of clusters of a file.
    let run_of = |f: &str| -> (u64, u64) {
        let out = sh(Command::new("mshowfat")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .arg(format!("::{f}")));
        let run = out
            .split('<')
            .nth(1)
            .and_then(|s| s.split('>').next())
            .unwrap_or_else(|| panic!("mshowfat {f}: {out}"));
        let mut n = run
            .split('-')
            .map(|x| x.trim().parse::<u64>().expect("cluster"));
        let a = n.next().expect("start");
        (a, n.next().unwrap_or(a))
    };
    let (data_start, cs) = r;
    let at = |c: u64| data_start + (c - 2) * cs;
    let mut bad = Vec::new();
    for f in ["/big.bin", "/dir0/file3.bin", "/dir3/file1.bin"] {
        // A whole page inside the run (reads through FUSE fail page by page).
        let (a, b) = run_of(f);
        let p = (at(a) + cs).div_ceil(4096) * 4096;
        assert!(p + 4096 <= at(b + 1), "{f}: run {a}-{b} too short");
        bad.push((p, p + 4096));
    }
    // The end of the volume is free.
    bad.push((size - 8192, size - 4096));
    let (copy, map) = damage(&img, &bad);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert!(fs["error"].is_null(), "{v}");
    let ours = strings(fs, "damaged_files", "path");
    let theirs = unreadable_via_nbdkit(d.path(), &copy, &map, &files);
    assert_eq!(ours, theirs, "{v}");
    assert_eq!(ours.len(), 3);
    assert_eq!(fs["unrescued_free"], 4096, "{v}");
}

/// (data area offset, cluster size) of a FAT image, by salvor's BPB reader via `info`.
fn salvor_probe(img: &Path) -> (u64, u64) {
    let b = std::fs::read(img).expect("read");
    let bps = u16::from_le_bytes([b[11], b[12]]) as u64;
    let spc = b[13] as u64;
    let reserved = u16::from_le_bytes([b[14], b[15]]) as u64;
    let fats = b[16] as u64;
    let root = u16::from_le_bytes([b[17], b[18]]) as u64;
    let fat16 = u16::from_le_bytes([b[22], b[23]]) as u64;
    let fatsz = if fat16 != 0 {
        fat16
    } else {
        u32::from_le_bytes([b[36], b[37], b[38], b[39]]) as u64
    };
    let data = (reserved + fats * fatsz) * bps + (root * 32).div_ceil(bps) * bps;
    (data, spc * bps)
}

#[test]
fn fat16_damaged_files_match_mtools_through_nbdkit() {
    fat_case("16", 32 * MIB);
}

#[test]
fn fat32_damaged_files_match_mtools_through_nbdkit() {
    fat_case("32", 64 * MIB);
}

#[test]
fn domain_mapfile_for_ddrescue() {
    require_tool("ddrescue", "gddrescue");
    require_tool("sgdisk", "gdisk");
    let d = tmp();
    let ext = mkfs_ext(d.path(), "p1.img", 24 * MIB, &["-L", "root"]);
    let disk = d.path().join("disk.img");
    common::fsimg::old_disk(&disk, 40 * MIB, 3);
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+24M", "-n", "2:0:+8M"])
        .arg(&disk));
    common::fsimg::patch(&disk, MIB, &std::fs::read(&ext).expect("read"));
    for (flag, metadata) in [("--used", false), ("--metadata", true)] {
        let out = run(common::salvor().arg("domain").arg(&disk).arg(flag));
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("partition 2") && err.contains("whole"),
            "{err}"
        );
        let dom = d.path().join("dom.map");
        std::fs::write(&dom, &out.stdout).expect("write");
        sh(Command::new("ddrescuelog").arg("-t").arg(&dom));
        // The expected ranges: the table, the GPT backup, partition 1 by fs::probe, partition 2.
        let mut src = salvor::device::FileSource::open(&disk, Default::default()).expect("open");
        let r = salvor::fs::probe(&mut src, MIB..25 * MIB).expect("probe");
        let mut want = vec![(0, MIB)];
        want.extend(if metadata {
            r.metadata.clone()
        } else {
            r.allocated()
        });
        want.push((25 * MIB, 33 * MIB));
        want.push((40 * MIB - 33 * 512, 40 * MIB));
        let want = merge(want);
        let got = salvor::mapfile::parse(&String::from_utf8_lossy(&out.stdout), &dom)
            .expect("parse")
            .finished_ranges();
        assert_eq!(got, want);
        // ddrescue -m copies exactly those ranges.
        let outimg = d.path().join("out.img");
        let outmap = d.path().join("out.map");
        let _ = std::fs::remove_file(&outimg);
        let _ = std::fs::remove_file(&outmap);
        sh(Command::new("ddrescue")
            .arg("-q")
            .arg("-m")
            .arg(&dom)
            .arg(&disk)
            .arg(&outimg)
            .arg(&outmap));
        let copied = salvor::mapfile::parse_file(&outmap)
            .expect("parse")
            .expect("exists")
            .finished_ranges();
        assert_eq!(copied, want);
    }
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

// ---------------------------------------------------------------- hostile metadata

/// An image in memory, with patched bytes.
struct Mem(std::sync::Arc<Vec<u8>>, std::collections::BTreeMap<u64, u8>);

impl salvor::device::Source for Mem {
    fn geometry(&self) -> salvor::device::Geometry {
        salvor::device::Geometry {
            size: self.0.len() as u64,
            logical_sector: 512,
            physical_sector: 512,
        }
    }
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> salvor::device::ReadOutcome {
        let p = (pos as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - p);
        buf[..n].copy_from_slice(&self.0[p..p + n]);
        for (&at, &b) in self.1.range(pos..pos + n as u64) {
            buf[(at - pos) as usize] = b;
        }
        salvor::device::ReadOutcome::ok(n)
    }
    fn describe(&self) -> String {
        "mem".into()
    }
}

fn map_with_bad(size: u64, bad: &[(u64, u64)]) -> salvor::mapfile::Mapfile {
    let mut m = salvor::mapfile::Mapfile::new(size);
    m.set(0, size, salvor::mapfile::BlockStatus::Finished);
    for &(s, e) in bad {
        let (s, e) = (s.min(size), e.min(size));
        if s < e {
            m.set(s, e - s, salvor::mapfile::BlockStatus::BadSector);
        }
    }
    m
}

fn report_of(data: &std::sync::Arc<Vec<u8>>, patches: &[(u64, Vec<u8>)], bad: &[(u64, u64)]) {
    let mut p = std::collections::BTreeMap::new();
    for (at, bytes) in patches {
        for (i, b) in bytes.iter().enumerate() {
            p.insert(at + i as u64, *b);
        }
    }
    let mut src = Mem(data.clone(), p);
    let size = data.len() as u64;
    let t = std::time::Instant::now();
    let r = salvor::fs::files::report(&mut src, &map_with_bad(size, bad))
        .unwrap_or_else(|e| panic!("report failed: {e}"));
    // A hang, not a slow debug build on a loaded machine.
    assert!(t.elapsed() < std::time::Duration::from_secs(90), "slow");
    for f in &r.filesystems {
        for d in &f.damaged_files {
            assert!(d.lost.iter().all(|&(s, e)| s < e), "{d:?}");
            assert_eq!(d.lost_bytes, d.lost.iter().map(|r| r.1 - r.0).sum::<u64>());
        }
    }
}

#[test]
fn an_inode_claiming_petabytes_and_looping_fat_directories() {
    let d = tmp();
    // ext4: big.bin's size says 16 EiB; its extents are still the real ones.
    let img = mkfs_ext(d.path(), "e.img", 32 * MIB, &["-b", "4096"]);
    sh(Command::new("debugfs")
        .args(["-w", "-R", "sif /big.bin size 0xffffffffffffff00"])
        .arg(&img));
    let b = first_block(&img, "/big.bin", 3);
    let (copy, map) = damage(&img, &[(b * 4096, b * 4096 + 4096)]);
    let v = files_json(&map, &copy);
    let f = &v["filesystems"][0]["damaged_files"][0];
    assert_eq!(f["path"], "/big.bin", "{v}");
    assert_eq!(f["lost"][0], serde_json::json!([3 * 4096, 4 * 4096]), "{v}");

    // FAT16: dir0's chain points to itself, dir1's entry to dir0's cluster (cross-linked).
    let img = mkfs_fat(d.path(), "f.img", 16 * MIB, &["-F", "16"]);
    let data = std::fs::read(&img).expect("read");
    let bps = u16::from_le_bytes([data[11], data[12]]) as u64;
    let reserved = u16::from_le_bytes([data[14], data[15]]) as u64;
    let fatsz = u16::from_le_bytes([data[22], data[23]]) as u64;
    let root = (reserved + 2 * fatsz) * bps;
    let mut patches = Vec::new();
    let mut dir0 = 0;
    for (i, e) in data[root as usize..root as usize + 16384]
        .chunks(32)
        .enumerate()
    {
        let c = u16::from_le_bytes([e[26], e[27]]) as u64;
        if e[..4] == *b"DIR0" {
            dir0 = c;
            for copy in 0..2 {
                let at = (reserved + copy * fatsz) * bps + c * 2;
                patches.push((at, (c as u16).to_le_bytes().to_vec()));
            }
        }
        if e[..4] == *b"DIR1" && dir0 != 0 {
            patches.push((
                root + i as u64 * 32 + 26,
                (dir0 as u16).to_le_bytes().to_vec(),
            ));
        }
    }
    assert!(dir0 != 0 && patches.len() == 3, "{patches:?}");
    let data = std::sync::Arc::new(data);
    report_of(&data, &patches, &[(root, root + 512)]);
    report_of(&data, &patches, &[]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, OnceLock};

    /// (image, region where its metadata lives).
    fn images() -> &'static Vec<(Arc<Vec<u8>>, u64)> {
        static I: OnceLock<Vec<(Arc<Vec<u8>>, u64)>> = OnceLock::new();
        I.get_or_init(|| {
            let d = tmp();
            let e = mkfs_ext(d.path(), "e.img", 32 * MIB, &["-b", "1024"]);
            let f = mkfs_fat(d.path(), "f.img", 16 * MIB, &["-F", "16"]);
            let g = mkfs_fat(d.path(), "g.img", 48 * MIB, &["-F", "32"]);
            let x = {
                let _one = common::fsimg::FUSE_LOCK
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                common::fsimg::mkfs_exfat(d.path(), "x.img", 32 * MIB, &[])
            };
            let n = common::fsimg::mkfs_ntfs(d.path(), "n.img", 32 * MIB, &[]);
            // XFS: superblocks, AG headers and the first inode chunks of AG 0; btrfs: the
            // superblock and the system and metadata chunks mkfs places first.
            let xfs = common::fsimg::mkfs_xfs(d.path(), "xfs.img", 320 * MIB);
            let b = common::fsimg::mkfs_btrfs(d.path(), "b.img", 256 * MIB);
            [
                (e, 4 * MIB),
                (f, 256 << 10),
                (g, MIB),
                (x, 4 * MIB),
                (n, 32 * MIB),
                (xfs, 8 * MIB),
                (b, 64 * MIB),
            ]
            .into_iter()
            .map(|(p, hot)| (Arc::new(std::fs::read(p).expect("read")), hot))
            .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Mutated metadata and random unrescued areas: never a panic or a hang.
        #[test]
        fn mutated_filesystems_never_panic(
            which in 0usize..7,
            muts in proptest::collection::vec((any::<u64>(), any::<u8>(), any::<u64>()), 1..12),
            bad in proptest::collection::vec((any::<u64>(), 1u64..65536), 0..6),
        ) {
            let (data, hot) = &images()[which];
            let patches: Vec<(u64, Vec<u8>)> = muts
                .iter()
                .map(|&(at, kind, val)| {
                    let bytes = match kind % 4 {
                        0 => vec![val as u8],
                        1 => (val as u32).to_le_bytes().to_vec(),
                        2 => val.to_le_bytes().to_vec(),
                        _ => vec![0xff; 4],
                    };
                    (at % hot, bytes)
                })
                .collect();
            let bad: Vec<(u64, u64)> = bad.iter().map(|&(s, l)| (s % hot, s % hot + l)).collect();
            report_of(data, &patches, &bad);
        }
    }
}

// ---------------------------------------------------------------- exFAT

/// Where `needle` (a 4 KiB page of a file's content) lies in the image, at a sector boundary.
fn find_page(data: &[u8], needle: &[u8]) -> u64 {
    (0..data.len().saturating_sub(needle.len()))
        .step_by(512)
        .find(|&i| data[i..i + needle.len()] == *needle)
        .expect("page found in the image") as u64
}

/// Files that cannot be read through exfat-fuse over nbdkit's ddrescue filter.
fn unreadable_exfat(d: &Path, copy: &Path, map: &Path) -> (BTreeSet<String>, usize) {
    let nbd = NbdFile::new(&d.join("nbd-exfat"), copy, map);
    let dev = nbd.dev();
    let mnt = d.join("mnt-check");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    // exfat-fuse as root wants a block device: a loop device over the nbdfuse file.
    let lo = common::LoopDev::attach(&dev, false);
    sh(Command::new("mount.exfat-fuse")
        .args(["-o", "ro"])
        .arg(&lo.dev)
        .arg(&mnt));
    let mut bad = BTreeSet::new();
    let mut n = 0;
    let mut stack = vec![mnt.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("readdir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            n += 1;
            if std::fs::read(&p).is_err() {
                let rel = p.strip_prefix(&mnt).expect("prefix");
                bad.insert(format!("/{}", rel.display()));
            }
        }
    }
    let _ = run(Command::new("umount").arg(&mnt));
    drop(lo);
    drop(nbd);
    (bad, n)
}

#[test]
fn exfat_damaged_files_match_exfat_fuse_through_nbdkit() {
    let d = tmp();
    let img = {
        let _one = common::fsimg::FUSE_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        common::fsimg::mkfs_exfat(d.path(), "x.img", 64 * MIB, &[])
    };
    let tree = d.path().join("x.img.tree");
    let data = std::fs::read(&img).expect("read");
    let mut bad = Vec::new();
    for f in ["big.bin", "dir0/file3.bin", "dir3/file1.bin"] {
        let content = std::fs::read(tree.join(f)).expect("tree file");
        let at = find_page(&data, &content[8192..12288]);
        bad.push((at, at + 4096));
    }
    // The end of the volume is free.
    bad.push((64 * MIB - 8192, 64 * MIB - 4096));
    let (copy, map) = damage(&img, &bad);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert_eq!(fs["kind"], "exfat", "{v}");
    assert!(fs["error"].is_null(), "{v}");
    let ours = strings(fs, "damaged_files", "path");
    let (theirs, n) = unreadable_exfat(d.path(), &copy, &map);
    assert!(n > 20);
    assert_eq!(ours, theirs, "{v}");
    assert_eq!(ours.len(), 3);
    for f in fs["damaged_files"].as_array().expect("files") {
        assert_eq!(f["lost"][0], serde_json::json!([8192, 12288]), "{f}");
    }
    assert_eq!(fs["unrescued_free"], 4096, "{v}");
}

/// `salvor files` on the mapfile of a running rescue: saves replace the mapfile atomically, so
/// every run reads one whole version of it.
#[test]
fn files_while_the_mapfile_is_being_saved() {
    let d = tmp();
    let img = mkfs_fat(d.path(), "f.img", 16 * MIB, &["-F", "16"]);
    let size = 16 * MIB;
    let (copy, map) = damage(&img, &[(size - 4096, size)]);
    // Two versions: more damage, less damage (as a rescue's later passes leave it).
    let a = d.path().join("a.map");
    let b = d.path().join("b.map");
    write_test_map(&a, size, &[(2 * MIB, 6 * MIB)]);
    write_test_map(&b, size, &[(size - 4096, size)]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let saver = {
        let (stop, map, a, b) = (stop.clone(), map.clone(), a.clone(), b.clone());
        std::thread::spawn(move || {
            let tmp = map.with_extension("tmp");
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::copy(if i % 2 == 0 { &a } else { &b }, &tmp).expect("copy");
                std::fs::rename(&tmp, &map).expect("rename");
                i += 1;
            }
            i
        })
    };
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let out = run(common::salvor()
            .arg("files")
            .arg(&map)
            .arg(&copy)
            .arg("--json"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let n = v["unrescued_bytes"].as_u64().expect("bytes");
        assert!(n == 4 * MIB || n == 4096, "{n}");
        seen.insert(n);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let saves = saver.join().expect("saver");
    assert!(saves > 12, "{saves} saves");
    eprintln!("versions seen: {seen:?} over {saves} saves");
}

// ---------------------------------------------------------------- NTFS

#[test]
fn ntfs_damaged_files_match_ddru_ntfsfindbad() {
    require_tool("ddru_ntfsfindbad", "ddrutility");
    let d = tmp();
    let img = common::fsimg::mkfs_ntfs(d.path(), "n.img", 64 * MIB, &[]);
    let tree = d.path().join("n.img.tree");
    let data = std::fs::read(&img).expect("read");
    let mut bad = Vec::new();
    for f in ["big.bin", "dir0/file3.bin", "dir3/file1.bin"] {
        let content = std::fs::read(tree.join(f)).expect("tree file");
        let at = find_page(&data, &content[8192..12288]);
        bad.push((at, at + 4096));
    }
    let (copy, map) = damage(&img, &bad);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert_eq!(fs["kind"], "ntfs", "{v}");
    assert!(fs["error"].is_null(), "{v}");
    let ours = strings(fs, "damaged_files", "path");
    // ddru_ntfsfindbad writes ntfsfindbad.log in its working directory.
    let out = run(Command::new("ddru_ntfsfindbad")
        .current_dir(d.path())
        .arg(&copy)
        .arg(&map));
    assert!(out.status.success());
    let log = std::fs::read_to_string(d.path().join("ntfsfindbad.log")).expect("log");
    let theirs: BTreeSet<String> = log
        .lines()
        .filter_map(|l| l.split("name=.").nth(1))
        .map(|p| p.trim().to_string())
        .collect();
    assert_eq!(ours, theirs, "{v}\n{log}");
    assert_eq!(ours.len(), 3);
    for f in fs["damaged_files"].as_array().expect("files") {
        assert_eq!(f["lost"][0], serde_json::json!([8192, 12288]), "{f}");
    }

    // The MFT record of /dir2 not rescued: its files' names are lost, and ddru_ntfsfindbad
    // puts the bytes in $MFT.
    let info = sh(Command::new("ntfsinfo").args(["-F", "/dir2"]).arg(&img));
    let rec: u64 = info
        .split("Dumping Inode ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ntfsinfo: {info}"));
    let cluster = u16::from_le_bytes([data[11], data[12]]) as u64 * data[13] as u64;
    let mft = u64::from_le_bytes(data[0x30..0x38].try_into().expect("8 bytes")) * cluster;
    let at = mft + rec * 1024;
    let (copy, map) = damage(&img, &[(at, at + 1024)]);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    let in_dir2 = std::fs::read_dir(tree.join("dir2")).expect("tree").count() as u64;
    assert_eq!(fs["unreadable_inodes"], 1, "{v}");
    assert_eq!(fs["lost_names"], in_dir2, "{v}");
    assert_eq!(fs["unrescued_metadata"], 1024, "{v}");
    let _ = std::fs::remove_file(d.path().join("ntfsfindbad.log"));
    let out = run(Command::new("ddru_ntfsfindbad")
        .current_dir(d.path())
        .arg(&copy)
        .arg(&map));
    assert!(out.status.success());
    let log = std::fs::read_to_string(d.path().join("ntfsfindbad.log")).expect("log");
    assert!(
        log.contains("errorsize=001024") && log.contains("name=./$MFT"),
        "{log}"
    );
}

// ---------------------------------------------------------------- XFS

fn xfs_db(img: &Path, cmds: &[String]) -> String {
    require_tool("xfs_db", "xfsprogs");
    let mut cmd = Command::new("xfs_db");
    cmd.arg("-r");
    for c in cmds {
        cmd.arg("-c").arg(c);
    }
    sh(cmd.arg(img))
}

/// Inode → path of every named inode, by `xfs_db ncheck`.
fn xfs_paths(img: &Path) -> BTreeMap<u64, String> {
    xfs_db(img, &["blockget -n".into(), "ncheck".into()])
        .lines()
        .filter_map(|l| {
            let (i, p) = l.trim().split_once(char::is_whitespace)?;
            let p = p.trim();
            Some((
                i.parse().ok()?,
                format!("/{}", p.strip_suffix("/.").unwrap_or(p)),
            ))
        })
        .collect()
}

/// The data fork of an inode, by `xfs_db bmap`: (file block, fs block, blocks, unwritten).
fn xfs_bmap(img: &Path, ino: u64) -> Vec<(u64, u64, u64, bool)> {
    xfs_db(img, &[format!("inode {ino}"), "bmap".into()])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"data")).then(|| {
                (
                    w[2].parse().expect("offset"),
                    w[4].parse().expect("startblock"),
                    w[7].parse().expect("count"),
                    w[9] == "1",
                )
            })
        })
        .collect()
}

/// `xfs_db convert FROM N TO`.
fn xfs_convert(img: &Path, from: &str, n: u64, to: &str) -> u64 {
    let out = xfs_db(img, &[format!("convert {from} {n} {to}")]);
    out.split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("convert {from} {n} {to}: {out}"))
}

/// Type and owning inode of each fs block, by `xfs_db blockget -n` + `blockuse -n`.
fn xfs_blockuse(img: &Path, fsbs: &[u64]) -> Vec<(String, Option<u64>)> {
    let mut cmds = vec!["blockget -n".to_string()];
    for b in fsbs {
        cmds.push(format!("fsblock {b}"));
        cmds.push("blockuse -n".into());
    }
    xfs_db(img, &cmds)
        .lines()
        .filter(|l| l.starts_with("block "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[4].to_string(), w.get(6).and_then(|s| s.parse().ok()))
        })
        .collect()
}

#[test]
fn xfs_damaged_files_match_xfs_db() {
    let d = tmp();
    let img = common::fsimg::mkfs_xfs_forks(d.path(), "x.img", 320 * MIB);
    let paths = xfs_paths(&img);
    let ino_of = |p: &str| -> u64 {
        *paths
            .iter()
            .find(|(_, q)| q.as_str() == p)
            .unwrap_or_else(|| panic!("{p} not in ncheck"))
            .0
    };
    let fmt = |p: &str| {
        let out = xfs_db(
            &img,
            &[format!("inode {}", ino_of(p)), "p core.format".into()],
        );
        out.trim().to_string()
    };
    assert!(fmt("/frag.bin").contains("btree"), "{}", fmt("/frag.bin"));
    assert!(fmt("/many").contains("btree"), "{}", fmt("/many"));
    assert!(fmt("/dir0").contains("local"), "{}", fmt("/dir0"));
    let block_of = |p: &str, nth: usize| -> u64 {
        // Written extents only (the kernel preallocates unwritten ones between frag.bin's).
        let m: Vec<_> = xfs_bmap(&img, ino_of(p))
            .into_iter()
            .filter(|e| !e.3)
            .collect();
        let e = m
            .get(nth)
            .unwrap_or_else(|| panic!("{p}: extent {nth} of {m:?}"));
        e.1
    };
    let big = xfs_bmap(&img, ino_of("/big.bin"));
    assert_eq!(big[0].0, 0);
    let big_block = big[0].1 + 100;
    let pre = xfs_bmap(&img, ino_of("/pre.bin"));
    let unwritten = pre.iter().find(|e| e.3).expect("an unwritten extent").1;
    // Data blocks: big.bin's 100th, a file's first, frag.bin's 150th extent (in its bmbt
    // leaves), an unwritten block of pre.bin (holds no data: not damaged).
    let data = [
        big_block,
        block_of("/dir1/file2.bin", 0),
        block_of("/frag.bin", 150),
        unwritten,
    ];
    // A data block of /many (below the leaf offset, 32 GiB).
    let many = ino_of("/many");
    let dir_block = xfs_bmap(&img, many)
        .iter()
        .filter(|e| e.0 < (32 << 30) / 4096)
        .nth(3)
        .expect("many's data blocks")
        .1;
    // The inode cluster block holding /dir2/file1.bin.
    let it_block = xfs_convert(&img, "inode", ino_of("/dir2/file1.bin"), "fsblock");
    // A free block.
    let free = xfs_db(&img, &["freesp -d".into()]);
    let (fag, fbno): (u64, u64) = free
        .lines()
        .filter_map(|l| {
            let w: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (w.len() == 3).then(|| (w[0], w[1] + w[2] - 1))
        })
        .next_back()
        .unwrap_or_else(|| panic!("freesp: {free}"));
    let agblocks: u64 = xfs_db(&img, &["sb".into(), "p agblocks".into()])
        .split('=')
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .expect("agblocks");
    let agblklog = 64 - (agblocks - 1).leading_zeros() as u64;
    let free_block = fag << agblklog | fbno;
    let blocks: Vec<u64> = data
        .iter()
        .copied()
        .chain([dir_block, it_block, free_block])
        .collect();
    let uses = xfs_blockuse(&img, &blocks);
    assert_eq!(uses.len(), blocks.len(), "{uses:?}");
    assert_eq!(uses[4], ("dir".to_string(), Some(many)), "{uses:?}");
    assert_eq!(uses[5].0, "inode", "{uses:?}");
    assert!(uses[6].0.starts_with("free"), "{uses:?}");
    let bad: Vec<(u64, u64)> = blocks
        .iter()
        .map(|&b| {
            let at = xfs_convert(&img, "fsblock", b, "byte");
            (at, at + 4096)
        })
        .collect();
    let (copy, map) = damage(&img, &bad);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert_eq!(fs["kind"], "xfs", "{v}");
    assert!(fs["error"].is_null(), "{v}");

    // The oracle: owners of the data blocks, less the unwritten one (no data there).
    let mut candidates: Vec<u64> = uses[..3].iter().filter_map(|u| u.1).collect();
    assert_eq!(uses[3].1, Some(ino_of("/pre.bin")));
    let inopblog = 64 - (4096u64 / 512 - 1).leading_zeros() as u64;
    let in_block: BTreeSet<u64> = paths
        .keys()
        .copied()
        .filter(|&i| i >> inopblog == it_block)
        .collect();
    assert!(!in_block.is_empty());
    assert!(!in_block.contains(&ino_of("/frag.bin")) && !in_block.contains(&ino_of("/big.bin")));
    let mut dead = BTreeSet::new();
    let mut expected_dirs = BTreeSet::from([paths[&many].clone()]);
    for &i in &in_block {
        let mode = xfs_db(&img, &[format!("inode {i}"), "p core.mode".into()]);
        if mode.contains("= 04") {
            expected_dirs.insert(paths[&i].clone());
            dead.insert(paths[&i].clone());
        } else {
            candidates.push(i);
        }
    }
    // The names in /many's lost block.
    let k = xfs_bmap(&img, many)
        .iter()
        .find(|e| e.1 <= dir_block && dir_block < e.1 + e.2)
        .map(|e| e.0 + dir_block - e.1)
        .expect("dir block offset");
    let lost_entries: BTreeSet<u64> = xfs_db(
        &img,
        &[format!("inode {many}"), format!("dblock {k}"), "p".into()],
    )
    .lines()
    .filter(|l| l.contains(".inumber = "))
    .filter_map(|l| l.split("= ").nth(1)?.trim().parse().ok())
    .filter(|&i| i != many && paths.get(&i).is_some_and(|p| p.starts_with("/many/")))
    .collect();
    assert!(lost_entries.len() > 20, "{lost_entries:?}");
    let unnamed = |i: u64| {
        lost_entries.contains(&i) || dead.iter().any(|d| paths[&i].starts_with(&format!("{d}/")))
    };
    let expected_files: BTreeSet<String> = candidates
        .iter()
        .map(|&i| {
            if unnamed(i) {
                format!("<inode {i}>")
            } else {
                paths[&i].clone()
            }
        })
        .collect();
    assert_eq!(strings(fs, "damaged_files", "path"), expected_files, "{v}");
    assert_eq!(strings(fs, "damaged_dirs", "path"), expected_dirs, "{v}");
    let named = paths.keys().filter(|&&i| unnamed(i)).count() as u64;
    assert_eq!(fs["lost_names"], named, "{v}");
    assert_eq!(fs["unreadable_inodes"], in_block.len() as u64, "{v}");
    assert_eq!(fs["unrescued_free"], 4096, "{v}");
    let find = |p: &str| {
        fs["damaged_files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {v}"))
            .clone()
    };
    assert_eq!(
        find("/big.bin")["lost"],
        serde_json::json!([[100 * 4096, 101 * 4096]])
    );
    // frag.bin's 150th extent: file block 300 (every other block written).
    let frag = xfs_bmap(&img, ino_of("/frag.bin"))
        .into_iter()
        .filter(|e| !e.3)
        .nth(150)
        .expect("extent")
        .0
        * 4096;
    assert_eq!(
        find("/frag.bin")["lost"],
        serde_json::json!([[frag, frag + 4096]])
    );
}

// ---------------------------------------------------------------- btrfs

type BKey = (u64, u8, u64);

/// What `btrfs inspect-internal dump-tree` says about one tree: its leaves (address, first
/// key) in key order, and its items.
#[derive(Default)]
struct Dump {
    leaves: Vec<(u64, BKey)>,
    /// objectid → (size, mode).
    inodes: BTreeMap<u64, (u64, u32)>,
    /// (key, child objectid, name) of every DIR_INDEX and DIR_ITEM.
    entries: Vec<(BKey, u64, String)>,
    /// (key, type, disk bytenr, disk bytes, offset, bytes, compression).
    extents: Vec<(BKey, u8, u64, u64, u64, u64, bool)>,
}

fn btrfs_type(name: &str) -> u8 {
    match name {
        "INODE_ITEM" => 1,
        "INODE_REF" => 12,
        "INODE_EXTREF" => 13,
        "XATTR_ITEM" => 24,
        "ORPHAN_ITEM" => 48,
        "DIR_ITEM" => 84,
        "DIR_INDEX" => 96,
        "EXTENT_DATA" => 108,
        "EXTENT_CSUM" => 128,
        "ROOT_ITEM" => 132,
        "CHUNK_ITEM" => 228,
        n => n.parse().unwrap_or_else(|_| panic!("key type {n}")),
    }
}

fn btrfs_key(s: &str) -> BKey {
    // "(OID TYPE OFF)"
    let w: Vec<&str> = s
        .trim_matches(|c| c == '(' || c == ')')
        .split(' ')
        .collect();
    let oid = match w[0] {
        "ORPHAN" => (-5i64) as u64,
        "FIRST_CHUNK_TREE" => 256,
        n => n.parse().unwrap_or_else(|_| panic!("objectid {n}")),
    };
    (oid, btrfs_type(w[1]), w[2].parse().expect("key offset"))
}

fn after<'a>(l: &'a str, word: &str) -> &'a str {
    l.split(word)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {word} in {l}"))
}

fn btrfs_dump(img: &Path, tree: &str) -> Dump {
    require_tool("btrfs", "btrfs-progs");
    let out = sh(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", tree])
        .arg(img));
    let mut d = Dump::default();
    let mut lines = out.lines().peekable();
    let mut new_leaf = None;
    while let Some(l) = lines.next() {
        let t = l.trim();
        if t.starts_with("leaf ") && t.contains(" items ") {
            new_leaf = Some(after(t, "leaf ").parse().expect("leaf"));
            continue;
        }
        let Some(rest) = t.strip_prefix("item ") else {
            continue;
        };
        let key = btrfs_key(&rest[rest.find('(').expect("key")..=rest.find(')').expect("key")]);
        if let Some(at) = new_leaf.take() {
            d.leaves.push((at, key));
        }
        match key.1 {
            1 => {
                let a = lines.next().expect("inode line");
                let b = lines.next().expect("inode line");
                d.inodes.insert(
                    key.0,
                    (
                        after(a, "size ").parse().expect("size"),
                        u32::from_str_radix(after(b, "mode "), 8).expect("mode"),
                    ),
                );
            }
            84 | 96 => {
                while let Some(a) = lines.next_if(|l| l.trim().starts_with("location key")) {
                    let child = btrfs_key(&a[a.find('(').expect("(")..=a.find(')').expect(")")]);
                    lines.next();
                    let name = lines.next().expect("name line");
                    let name = name.split("name: ").nth(1).expect("name").to_string();
                    d.entries.push((key, child.0, name));
                }
            }
            108 => {
                let a = lines.next().expect("extent line");
                let ty: u8 = after(a, " type ").parse().expect("type");
                if ty == 0 {
                    continue;
                }
                let b = lines.next().expect("extent line");
                let c = lines.next().expect("extent line");
                // Prealloc extents print no compression line.
                let e = if ty == 1 {
                    lines.next().expect("extent line")
                } else {
                    "compression 0"
                };
                d.extents.push((
                    key,
                    ty,
                    after(b, "disk byte ").parse().expect("disk byte"),
                    after(b, " nr ").parse().expect("nr"),
                    after(c, "offset ").parse().expect("offset"),
                    after(c, " nr ").parse().expect("nr"),
                    after(e, "compression ") != "0",
                ));
            }
            _ => {}
        }
    }
    d
}

/// The chunk map by `dump-tree -t chunk`: (logical, length, device offsets of the stripes).
fn btrfs_chunks(img: &Path) -> Vec<(u64, u64, Vec<u64>)> {
    let out = sh(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "chunk"])
        .arg(img));
    let mut v: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for l in out.lines().map(str::trim) {
        if l.starts_with("item ") && l.contains("CHUNK_ITEM") {
            let logical = l
                .split("CHUNK_ITEM ")
                .nth(1)
                .and_then(|s| s.split(')').next());
            v.push((
                logical.expect("logical").parse().expect("logical"),
                0,
                Vec::new(),
            ));
        } else if l.starts_with("length ") {
            if let Some(c) = v.last_mut() {
                c.1 = after(l, "length ").parse().expect("length");
            }
        } else if l.starts_with("stripe ") && l.contains(" offset ") {
            if let Some(c) = v.last_mut() {
                c.2.push(after(l, " offset ").parse().expect("offset"));
            }
        }
    }
    v
}

fn btrfs_phys(chunks: &[(u64, u64, Vec<u64>)], logical: u64) -> Vec<u64> {
    let c = chunks
        .iter()
        .find(|c| c.0 <= logical && logical < c.0 + c.1)
        .unwrap_or_else(|| panic!("logical {logical} in no chunk"));
    c.2.iter().map(|s| s + logical - c.0).collect()
}

#[test]
fn btrfs_damaged_files_match_dump_tree() {
    let d = tmp();
    let size = 256 * MIB;
    let img = common::fsimg::mkfs_btrfs_mounted(d.path(), "b.img", size);
    let t = btrfs_dump(&img, "5");
    let chunks = btrfs_chunks(&img);
    // Paths, from the directory entries.
    let mut paths: BTreeMap<u64, String> = BTreeMap::from([(256, String::new())]);
    let mut todo = vec![256u64];
    while let Some(dir) = todo.pop() {
        for (k, child, name) in &t.entries {
            if k.0 == dir && !paths.contains_key(child) {
                paths.insert(*child, format!("{}/{name}", paths[&dir]));
                todo.push(*child);
            }
        }
    }
    let ino_of = |p: &str| {
        *paths
            .iter()
            .find(|x| x.1 == p)
            .unwrap_or_else(|| panic!("{p}"))
            .0
    };
    let ext_of = |p: &str, want: u8, compressed: bool| {
        *t.extents
            .iter()
            .find(|e| e.0 .0 == ino_of(p) && e.1 == want && e.6 == compressed)
            .unwrap_or_else(|| panic!("{p}: no extent of type {want}"))
    };
    let big = ext_of("/big.bin", 1, false);
    let comp = ext_of("/comp.bin", 1, true);
    let pre = ext_of("/pre.bin", 2, false);
    let page = |logical: u64| -> (u64, u64) {
        let p = btrfs_phys(&chunks, logical)[0];
        (p, p + 4096)
    };
    let mut bad = vec![
        // big.bin: 1 MiB into its first extent.
        page(big.2 + big.4 + MIB),
        // comp.bin: the middle of its first compressed extent's disk bytes.
        page(comp.2 + comp.3 / 2 / 4096 * 4096),
        // pre.bin: its preallocated part holds no data.
        page(pre.2 + pre.4),
        // The device's last page.
        (size - 4096, size),
    ];
    assert!(
        chunks
            .iter()
            .all(|c| c.2.iter().all(|&s| s + c.1 <= size - 4096)),
        "the last page is in a chunk: {chunks:?}"
    );
    // Leaves of /many, both copies: one of its DIR_ITEMs, one of its DIR_INDEXes (the names
    // in both are lost), one of its files' inodes. Another leaf, its first copy only: read from
    // the second.
    let many = ino_of("/many");
    let pick = |f: &dyn Fn(BKey) -> bool| {
        t.leaves
            .iter()
            .position(|l| f(l.1))
            .unwrap_or_else(|| panic!("no such leaf in {:?}", t.leaves))
    };
    let dead = [
        pick(&|k| k.0 == many && k.1 == 84),
        pick(&|k| k.0 == many && k.1 == 96),
        pick(&|k| k.0 > many + 50 && k.0 < many + 350),
    ];
    let ranges: Vec<(BKey, BKey)> = dead
        .iter()
        .map(|&i| {
            let hi = t
                .leaves
                .get(i + 1)
                .map_or((u64::MAX, 255, u64::MAX), |l| l.1);
            (t.leaves[i].1, hi)
        })
        .collect();
    for &i in &dead {
        let copies = btrfs_phys(&chunks, t.leaves[i].0);
        assert_eq!(copies.len(), 2, "metadata is DUP");
        for &p in &copies {
            bad.push((p, p + 16384));
        }
    }
    let other = (0..t.leaves.len())
        .rev()
        .find(|i| !dead.contains(i))
        .expect("another leaf");
    let p = btrfs_phys(&chunks, t.leaves[other].0)[0];
    bad.push((p, p + 16384));
    let (copy, map) = damage(&img, &bad);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert_eq!(fs["kind"], "btrfs", "{v}");
    assert!(fs["error"].is_null(), "{v}");

    // The oracle, from btrfs-progs' dump of the undamaged image.
    let hidden = |k: BKey| ranges.iter().any(|&(lo, hi)| lo <= k && k < hi);
    let space = |oid: u64, ty: u8| {
        ranges
            .iter()
            .any(|&(lo, hi)| lo <= (oid, ty, u64::MAX) && (oid, ty, 0) < hi)
    };
    let data_bad: Vec<(u64, u64)> = bad[..4].to_vec();
    let phys_bad = |logical: u64, len: u64| {
        (logical..logical + len).step_by(4096).any(|l| {
            btrfs_phys(&chunks, l)
                .iter()
                .all(|&p| data_bad.iter().any(|b| b.0 <= p && p < b.1))
        })
    };
    let mut reached = BTreeMap::from([(256u64, "/".to_string())]);
    let mut todo = vec![(256u64, String::new())];
    let mut expected_dirs = BTreeSet::new();
    let mut expected_files = BTreeSet::new();
    let mut unreadable = 0u64;
    let damaged = |oid: u64, size: u64| {
        space(oid, 108)
            || t.extents.iter().any(|e| {
                e.0 .0 == oid
                    && e.1 == 1
                    && e.0 .2 < size
                    && if e.6 {
                        phys_bad(e.2, e.3)
                    } else {
                        phys_bad(e.2 + e.4, e.5.min(size - e.0 .2))
                    }
            })
    };
    while let Some((dir, dpath)) = todo.pop() {
        if space(dir, 96) && space(dir, 84) {
            expected_dirs.insert(if dpath.is_empty() {
                "/".into()
            } else {
                dpath.clone()
            });
        }
        for (k, child, name) in &t.entries {
            if k.0 != dir || hidden(*k) || reached.contains_key(child) {
                continue;
            }
            let path = format!("{dpath}/{name}");
            reached.insert(*child, path.clone());
            let is_dir = t
                .inodes
                .get(child)
                .is_some_and(|x| x.1 & 0o170000 == 0o040000);
            if hidden((*child, 1, 0)) {
                unreadable += 1;
                if is_dir {
                    expected_dirs.insert(path);
                } else {
                    expected_files.insert(path);
                }
            } else if is_dir {
                todo.push((*child, path));
            } else if damaged(*child, t.inodes[child].0) {
                expected_files.insert(path);
            }
        }
    }
    let mut lost_names = 0u64;
    for (&oid, &(size, _)) in &t.inodes {
        if oid >= 256 && !reached.contains_key(&oid) && !hidden((oid, 1, 0)) {
            lost_names += 1;
            if damaged(oid, size) {
                expected_files.insert(format!("<inode {oid}>"));
            }
        }
    }
    assert!(lost_names > 10, "{lost_names}");
    assert!(unreadable > 10, "{unreadable}");
    assert!(expected_dirs.contains("/many"), "{expected_dirs:?}");
    assert_eq!(strings(fs, "damaged_files", "path"), expected_files, "{v}");
    assert_eq!(strings(fs, "damaged_dirs", "path"), expected_dirs, "{v}");
    assert_eq!(fs["lost_names"], lost_names, "{v}");
    assert_eq!(fs["unreadable_inodes"], unreadable, "{v}");
    assert_eq!(fs["unrescued_free"], 4096, "{v}");
    let find = |p: &str| {
        fs["damaged_files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {v}"))
            .clone()
    };
    let off = big.0 .2 + MIB;
    assert_eq!(
        find("/big.bin")["lost"],
        serde_json::json!([[off, off + 4096]])
    );
    // The whole file range of the compressed extent.
    let c0 = comp.0 .2;
    assert_eq!(
        find("/comp.bin")["lost"],
        serde_json::json!([[c0, c0 + comp.5]])
    );
}

// ---------------------------------------------------------------- hostile XFS and btrfs

/// XFS: big.bin's size says 8 EiB (its extents are still the real ones); dir0's first entry
/// names the root directory (a loop). btrfs: the same, by patching a leaf and its checksum.
#[test]
fn xfs_and_btrfs_huge_sizes_and_looping_directories() {
    let d = tmp();
    let img = common::fsimg::mkfs_xfs(d.path(), "x.img", 320 * MIB);
    let paths = xfs_paths(&img);
    let ino_of = |p: &str| *paths.iter().find(|x| x.1 == p).expect("path").0;
    let big = ino_of("/big.bin");
    let root: u64 = xfs_db(&img, &["sb".into(), "p rootino".into()])
        .split('=')
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .expect("rootino");
    sh(Command::new("xfs_db")
        .arg("-x")
        .args([
            "-c",
            &format!("inode {big}"),
            "-c",
            "write core.size 0xffffffffffffff00",
        ])
        .args(["-c", &format!("inode {}", ino_of("/dir0"))])
        .args([
            "-c",
            &format!("write u3.sfdir3.list[0].inumber.i4 {}", root),
        ])
        .args(["-c", "write u3.sfdir3.list[0].filetype 2"])
        .arg(&img));
    let b = xfs_bmap(&img, big)[0].1 + 3;
    let at = xfs_convert(&img, "fsblock", b, "byte");
    let (copy, map) = damage(&img, &[(at, at + 4096)]);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert!(fs["error"].is_null(), "{v}");
    let f = &fs["damaged_files"][0];
    assert_eq!(f["path"], "/big.bin", "{v}");
    assert_eq!(f["lost"], serde_json::json!([[3 * 4096, 4 * 4096]]), "{v}");

    let img = common::fsimg::mkfs_btrfs(d.path(), "b.img", 256 * MIB);
    let t = btrfs_dump(&img, "5");
    let chunks = btrfs_chunks(&img);
    let mut paths: BTreeMap<u64, String> = BTreeMap::from([(256, String::new())]);
    for (k, child, name) in &t.entries {
        if k.0 == 256 {
            paths.insert(*child, format!("/{name}"));
        }
    }
    let ino_of = |p: &str| *paths.iter().find(|x| x.1 == p).expect("path").0;
    let (big, dir0) = (ino_of("/big.bin"), ino_of("/dir0"));
    let mut data = std::fs::read(&img).expect("read");
    let mut patched = 0;
    for &(leaf, _) in &t.leaves {
        let copies = btrfs_phys(&chunks, leaf);
        let mut node = data[copies[0] as usize..copies[0] as usize + 16384].to_vec();
        let n = u32::from_le_bytes(node[0x60..0x64].try_into().expect("4")) as usize;
        let mut changed = false;
        for i in 0..n {
            let it = 0x65 + 25 * i;
            let oid = u64::from_le_bytes(node[it..it + 8].try_into().expect("8"));
            let ty = node[it + 8];
            let doff =
                0x65 + u32::from_le_bytes(node[it + 17..it + 21].try_into().expect("4")) as usize;
            if oid == big && ty == 1 {
                node[doff + 16..doff + 24].copy_from_slice(&0xffff_ffff_ffff_ff00u64.to_le_bytes());
                changed = true;
            }
            if oid == dir0 && ty == 96 && !changed {
                // The first entry of dir0 becomes the root directory.
                node[doff..doff + 8].copy_from_slice(&256u64.to_le_bytes());
                node[doff + 29] = 2;
                changed = true;
            }
        }
        if changed {
            let c = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&node[0x20..]);
            node[..4].copy_from_slice(&c.to_le_bytes());
            for p in copies {
                data[p as usize..p as usize + 16384].copy_from_slice(&node);
            }
            patched += 1;
        }
    }
    assert!(patched > 0);
    std::fs::write(&img, &data).expect("write");
    let e = t
        .extents
        .iter()
        .find(|e| e.0 .0 == big && e.0 .2 == 0)
        .expect("big.bin's first extent");
    let at = btrfs_phys(&chunks, e.2 + e.4 + 3 * 4096)[0];
    let (copy, map) = damage(&img, &[(at, at + 4096)]);
    let v = files_json(&map, &copy);
    let fs = &v["filesystems"][0];
    assert!(fs["error"].is_null(), "{v}");
    let f = &fs["damaged_files"][0];
    assert_eq!(f["path"], "/big.bin", "{v}");
    assert_eq!(f["lost"], serde_json::json!([[3 * 4096, 4 * 4096]]), "{v}");
}
