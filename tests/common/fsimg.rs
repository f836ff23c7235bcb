//! Filesystem images built the way a used disk looks, shared by the filesystem tests: old random
//! data first, mkfs without discard, populated with files without mounting.

use super::{pattern, require_tool, run};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MIB: u64 = 1 << 20;

/// A temporary directory, kept for inspection when SALVOR_KEEP is set.
pub struct Tmp {
    pub path: PathBuf,
    _guard: Option<tempfile::TempDir>,
}

impl Tmp {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn tmp() -> Tmp {
    let d = tempfile::Builder::new()
        .prefix("salvor-fs-")
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("SALVOR_KEEP").is_some() {
        let path = d.keep();
        eprintln!("keeping {}", path.display());
        Tmp { path, _guard: None }
    } else {
        Tmp {
            path: d.path().to_path_buf(),
            _guard: Some(d),
        }
    }
}

pub fn sh(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image file full of old (random) data, as the free space of a used disk is.
pub fn old_disk(path: &Path, size: u64, seed: u64) {
    std::fs::write(path, pattern(seed, size as usize)).expect("write image");
}

/// A tree of files of assorted sizes (about 6 MiB), with subdirectories.
pub fn file_tree(dir: &Path, seed: u64) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in 0..4u64 {
        let sub = dir.join(format!("dir{d}"));
        std::fs::create_dir_all(&sub).expect("mkdir");
        for i in 0..8u64 {
            let len = ((i * 7919 + d * 104_729) % 400_000 + (i % 3) * 123) as usize;
            let p = sub.join(format!("file{i}.bin"));
            std::fs::write(&p, pattern(seed + d * 100 + i, len)).expect("write file");
            files.push(p);
        }
    }
    let big = dir.join("big.bin");
    std::fs::write(&big, pattern(seed + 9999, 2 * MIB as usize + 4321)).expect("write");
    files.push(big);
    std::fs::write(dir.join("empty"), b"").expect("write");
    files
}

pub fn patch(img: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .expect("open");
    f.write_all_at(bytes, off).expect("patch");
}

pub fn mkfs_ext(dir: &Path, name: &str, size: u64, args: &[&str]) -> PathBuf {
    require_tool("mkfs.ext4", "e2fsprogs");
    let img = dir.join(name);
    old_disk(&img, size, 0xe474 + size);
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 77);
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "nodiscard"])
        .args(args)
        .arg("-d")
        .arg(&tree)
        .arg(&img));
    img
}

pub fn mkfs_fat(dir: &Path, name: &str, size: u64, args: &[&str]) -> PathBuf {
    require_tool("mkfs.fat", "dosfstools");
    require_tool("mcopy", "mtools");
    let img = dir.join(name);
    old_disk(&img, size, 0xfa7 + size);
    sh(Command::new("mkfs.fat").args(args).arg(&img));
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 55);
    let mut cmd = Command::new("mcopy");
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-s")
        .arg("-i")
        .arg(&img);
    for e in std::fs::read_dir(&tree).expect("readdir") {
        cmd.arg(e.expect("entry").path());
    }
    sh(cmd.arg("::/"));
    // Delete a few files so that freed clusters hold old file data.
    sh(Command::new("mdel")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .args(["::/dir1/file3.bin", "::/dir2/file5.bin"]));
    for f in ["dir1/file3.bin", "dir2/file5.bin"] {
        std::fs::remove_file(tree.join(f)).expect("rm");
    }
    img
}

/// A FUSE mount of a loop device (fuseblk: unmounting waits for the daemon to flush).
pub struct FuseMount {
    pub dir: PathBuf,
    mounted: bool,
    _loop: super::LoopDev,
}

impl FuseMount {
    /// Mounts are made one at a time (see FUSE_LOCK).
    pub fn new(tool: &str, package: &str, img: &Path, dir: &Path) -> FuseMount {
        require_tool(tool, package);
        let lo = super::LoopDev::attach(img, false);
        // A read-only flag set on this loop device by an earlier user (blockdev --setro)
        // survives detaching: clear it.
        sh(Command::new("blockdev").arg("--setrw").arg(&lo.dev));
        std::fs::create_dir_all(dir).expect("mkdir");
        // A FUSE driver falls back to read-only when it cannot open the device exclusively
        // (something else probing the new loop device): retry a few times.
        for attempt in 1.. {
            let out = run(Command::new(tool).arg(&lo.dev).arg(dir));
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                out.status.success(),
                "{tool} {} failed: {err}",
                lo.dev.display()
            );
            let probe = dir.join(".salvor-rw-probe");
            if std::fs::write(&probe, b"x").is_ok() {
                std::fs::remove_file(&probe).expect("rm probe");
                break;
            }
            sh(Command::new("umount").arg(dir));
            assert!(
                attempt < 5,
                "{tool} mounts {} ({}) read-only: {err}",
                lo.dev.display(),
                img.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        FuseMount {
            dir: dir.to_path_buf(),
            mounted: true,
            _loop: lo,
        }
    }

    /// Unmounts and waits until the FUSE daemon has closed the loop device (an exclusive open
    /// succeeds again): a daemon still holding it makes the next mount of a reused loop device
    /// fall back to read-only.
    pub fn unmount(mut self) {
        sh(Command::new("umount").arg(&self.dir));
        self.mounted = false;
        use std::os::unix::fs::OpenOptionsExt;
        let t = std::time::Instant::now();
        while std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_excl())
            .open(&self._loop.dev)
            .is_err()
        {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(30),
                "the FUSE daemon still holds {}",
                self._loop.dev.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

pub fn libc_o_excl() -> i32 {
    0o200 // O_EXCL on Linux
}

pub static FUSE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Copies the test tree into a mounted filesystem and deletes a few files again (their old
/// content stays in free space).
pub fn populate(mnt: &Path, tree: &Path) {
    sh(Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", tree.display()))
        .arg(mnt));
    for f in ["dir1/file3.bin", "dir2/file5.bin"] {
        std::fs::remove_file(mnt.join(f)).expect("rm in mount");
        std::fs::remove_file(tree.join(f)).expect("rm in tree");
    }
    // A sparse file: 4 KiB of data 2 MiB into a 5 MiB file (NTFS stores sparse runs).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(mnt.join("sparse.bin")).expect("create sparse");
        f.set_len(5 * MIB).expect("set_len");
        f.write_all_at(&pattern(4242, 4096), 2 * MIB)
            .expect("write sparse");
    }
    sh(&mut Command::new("sync"));
}

pub fn mkfs_exfat(dir: &Path, name: &str, size: u64, args: &[&str]) -> PathBuf {
    require_tool("mkfs.exfat", "exfatprogs");
    let img = dir.join(name);
    old_disk(&img, size, 0xe8fa7 + size);
    sh(Command::new("mkfs.exfat").args(args).arg(&img));
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 66);
    let m = FuseMount::new(
        "mount.exfat-fuse",
        "exfat-fuse",
        &img,
        &dir.join("mnt-exfat"),
    );
    populate(&m.dir, &tree);
    m.unmount();
    img
}

/// An NTFS image populated through ntfs-3g.
pub fn mkfs_ntfs(dir: &Path, name: &str, size: u64, args: &[&str]) -> PathBuf {
    require_tool("mkntfs", "ntfs-3g");
    let img = dir.join(name);
    old_disk(&img, size, 0x47f5 + size);
    sh(Command::new("mkntfs")
        .args(["-q", "-F", "-f"])
        .args(args)
        .arg(&img));
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 88);
    let _one = FUSE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let m = FuseMount::new("ntfs-3g", "ntfs-3g", &img, &dir.join("mnt-ntfs"));
    populate(&m.dir, &tree);
    m.unmount();
    img
}

/// An mkfs.xfs prototype file describing `dir` (populates without mounting).
pub fn xfs_proto(dir: &Path, out: &mut String, depth: usize) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let pad = " ".repeat(depth);
        if p.is_dir() {
            out.push_str(&format!("{pad}{name} d--755 0 0\n"));
            xfs_proto(&p, out, depth + 1);
            out.push_str(&format!("{pad}$\n"));
        } else {
            out.push_str(&format!("{pad}{name} ---644 0 0 {}\n", p.display()));
        }
    }
}

/// An XFS image of `size` bytes (at least 300 MiB) over old data, populated from a prototype
/// file (no mount).
pub fn mkfs_xfs(dir: &Path, name: &str, size: u64) -> PathBuf {
    require_tool("mkfs.xfs", "xfsprogs");
    let img = dir.join(name);
    old_disk(&img, size, 0x8f5 + size);
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 99);
    let mut proto = String::from("/dev/null\n0 0\nd--755 0 0\n");
    xfs_proto(&tree, &mut proto, 1);
    proto.push_str("$\n");
    let pf = dir.join(format!("{name}.proto"));
    std::fs::write(&pf, proto).expect("write proto");
    sh(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-K", "-L", "salvorxfs", "-p"])
        .arg(&pf)
        .arg(&img));
    img
}

/// A btrfs image of `size` bytes over old data, populated with `--rootdir` (no mount).
pub fn mkfs_btrfs(dir: &Path, name: &str, size: u64) -> PathBuf {
    require_tool("mkfs.btrfs", "btrfs-progs");
    let img = dir.join(name);
    old_disk(&img, size, 0xb7 + size);
    let tree = dir.join(format!("{name}.tree"));
    file_tree(&tree, 77);
    sh(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-K", "-L", "salvorbtrfs", "--rootdir"])
        .arg(&tree)
        .arg(&img));
    img
}

/// An XFS image as [`mkfs_xfs`] makes it, then mounted once to add what a prototype file cannot
/// make: `/frag.bin` (300 separate blocks: more extents than the inode holds, so a bmbt
/// B+tree fork), `/pre.bin` (1 MiB preallocated, its first 64 KiB written: the rest unwritten
/// extents) and `/many` (2000 entries: a B+tree directory with leaf and node blocks).
pub fn mkfs_xfs_forks(dir: &Path, name: &str, size: u64) -> PathBuf {
    require_tool("xfs_io", "xfsprogs");
    let img = mkfs_xfs(dir, name, size);
    let lo = super::LoopDev::attach(&img, false);
    let m = super::Mount::new(&lo.dev, &dir.join(format!("{name}.mnt")));
    let mut cmd = Command::new("xfs_io");
    cmd.arg("-f");
    for i in 0..300u64 {
        cmd.arg("-c")
            .arg(format!("pwrite -q -S {} {} 4096", i % 251, i * 8192));
    }
    sh(cmd.arg(m.dir.join("frag.bin")));
    sh(Command::new("xfs_io")
        .args(["-f", "-c", "falloc 0 1m", "-c", "pwrite -q 0 64k"])
        .arg(m.dir.join("pre.bin")));
    let many = m.dir.join("many");
    std::fs::create_dir(&many).expect("mkdir many");
    for i in 0..2000 {
        std::fs::write(many.join(format!("entry-{i}")), b"").expect("create entry");
    }
    drop(m);
    drop(lo);
    img
}

/// A btrfs image as [`mkfs_btrfs`] makes it, then mounted once (zlib compression on) to add what
/// `--rootdir` cannot make: `/comp.bin` (compressed extents), `/pre.bin` (1 MiB preallocated,
/// its first 64 KiB written), `/tiny.txt` (an inline extent) and `/many` (400 small files: a
/// tree of many leaves).
pub fn mkfs_btrfs_mounted(dir: &Path, name: &str, size: u64) -> PathBuf {
    require_tool("xfs_io", "xfsprogs");
    let img = mkfs_btrfs(dir, name, size);
    let lo = super::LoopDev::attach(&img, false);
    let mnt = dir.join(format!("{name}.mnt"));
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let out = super::run(
        Command::new("mount")
            .args(["-o", "compress=zlib"])
            .arg(&lo.dev)
            .arg(&mnt),
    );
    assert!(
        out.status.success(),
        "mount btrfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = super::Mount { dir: mnt };
    let text: Vec<u8> = (0..600_000u32)
        .flat_map(|i| format!("line {} of a compressible file\n", i % 977).into_bytes())
        .take(3 * MIB as usize)
        .collect();
    std::fs::write(m.dir.join("comp.bin"), &text).expect("write comp.bin");
    sh(Command::new("xfs_io")
        .args(["-f", "-c", "falloc 0 1m", "-c", "pwrite -q 0 64k"])
        .arg(m.dir.join("pre.bin")));
    std::fs::write(m.dir.join("tiny.txt"), b"a small file kept in its leaf\n").expect("write");
    let many = m.dir.join("many");
    std::fs::create_dir(&many).expect("mkdir many");
    for i in 0..400u64 {
        std::fs::write(many.join(format!("entry-{i}")), pattern(i, 3000)).expect("create");
    }
    sh(&mut Command::new("sync"));
    drop(m);
    drop(lo);
    img
}
