//! Helpers shared by the image tests: required tools, loop devices that always detach, test disks.
#![allow(dead_code)]

use salvor::progress::{Control, NoProgress};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fails the test (never skips) when a tool the test needs is missing.
/// Debian packages: zstd, gdisk, e2fsprogs, dosfstools, util-linux (losetup, mount).
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .any(|d| Path::new(d).join(name).is_file());
    assert!(
        found,
        "required tool '{name}' is missing (install the Debian package that provides it)"
    );
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (loop devices)"
    );
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device over a file; detached on drop, even when the test fails.
pub struct LoopDev {
    pub path: PathBuf,
}

impl LoopDev {
    pub fn attach(file: &Path, partscan: bool) -> LoopDev {
        require_tool("losetup");
        let mut cmd = Command::new("losetup");
        cmd.arg("--find").arg("--show");
        if partscan {
            cmd.arg("--partscan");
        }
        let dev = run(cmd.arg(file)).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup said {dev:?}");
        LoopDev {
            path: PathBuf::from(dev),
        }
    }

    /// A loop device with extra `losetup` options (`--sector-size 4096`, `--direct-io=on`).
    pub fn attach_with(file: &Path, options: &[&str]) -> LoopDev {
        require_tool("losetup");
        let dev = run(Command::new("losetup")
            .arg("--find")
            .arg("--show")
            .args(options)
            .arg(file))
        .trim()
        .to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup said {dev:?}");
        LoopDev {
            path: PathBuf::from(dev),
        }
    }

    /// A loop device over `[offset, offset + size)` of a file: a partition without needing udev
    /// to create partition nodes.
    pub fn attach_range(file: &Path, offset: u64, size: u64) -> LoopDev {
        require_tool("losetup");
        let dev = run(Command::new("losetup")
            .arg("--find")
            .arg("--show")
            .arg("--offset")
            .arg(offset.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(file))
        .trim()
        .to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup said {dev:?}");
        LoopDev {
            path: PathBuf::from(dev),
        }
    }

    pub fn part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.path.display()))
    }

    /// Waits for udev-less partition nodes to appear.
    pub fn wait_part(&self, n: u32) -> PathBuf {
        let p = self.part(n);
        for _ in 0..50 {
            if p.exists() {
                return p;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{} did not appear", p.display());
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// (first byte, size) of GPT partition `n` of a disk image, from `sgdisk -i`.
pub fn gpt_partition(disk: &Path, n: u32) -> (u64, u64) {
    require_tool("sgdisk");
    let out = run(Command::new("sgdisk")
        .arg("-i")
        .arg(n.to_string())
        .arg(disk));
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no '{name}' in sgdisk -i output:\n{out}"))
    };
    let (first, last) = (field("First sector:"), field("Last sector:"));
    (first * 512, (last - first + 1) * 512)
}

/// A mount that is unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &Path, dir: &Path) -> Mount {
        run(Command::new("mount").arg(dev).arg(dir));
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Deterministic test content: runs of zeros, text-like compressible data and noise.
pub fn disk_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut pos = 0;
    while pos < size {
        let len = ((rnd() % (256 << 10)) as usize + 1).min(size - pos);
        match rnd() % 3 {
            0 => {}
            1 => {
                for (i, b) in v[pos..pos + len].iter_mut().enumerate() {
                    *b = b"salvor disk image test "[(i + pos) % 23];
                }
            }
            _ => {
                for b in &mut v[pos..pos + len] {
                    *b = rnd() as u8;
                }
            }
        }
        pos += len;
    }
    v
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Reads `len` bytes of a block device or file.
pub fn read_dev(path: &Path, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut v = vec![0u8; len];
    f.read_exact(&mut v).unwrap();
    v
}

pub fn sha(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The image's disk digest (SHA-256 over the per-chunk SHA-256s) recomputed with stock tools, as
/// docs/image-format.md tells users to.
pub fn chunk_digest_stock(path: &Path, chunk: usize) -> String {
    require_tool("xxd");
    require_tool("split");
    let script = format!(
        "split -b {chunk} --filter=sha256sum '{}' | cut -c1-64 | xxd -r -p | sha256sum",
        path.display()
    );
    run(Command::new("bash").arg("-c").arg(script))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

pub fn opts(chunk: usize) -> salvor::image::ImageOptions {
    salvor::image::ImageOptions {
        chunk_size: chunk,
        threads: 2,
        ..Default::default()
    }
}

pub fn image(
    src: &Path,
    out: &Path,
    o: &salvor::image::ImageOptions,
) -> salvor::image::ImageSummary {
    salvor::image::create_image(src, out, o, &Control::new(), &mut NoProgress).unwrap()
}

pub fn restore(
    img: &Path,
    target: &Path,
    verify: bool,
) -> salvor::Result<salvor::image::RestoreSummary> {
    run_plan(salvor::image::prepare_restore(img, target)?, verify)
}

pub fn clone(
    src: &Path,
    target: &Path,
    verify: bool,
) -> salvor::Result<salvor::image::RestoreSummary> {
    run_plan(salvor::image::prepare_clone(src, target)?, verify)
}

fn run_plan(
    plan: salvor::image::RestorePlan,
    verify: bool,
) -> salvor::Result<salvor::image::RestoreSummary> {
    salvor::image::run_restore(
        plan,
        &salvor::image::RestoreOptions {
            verify,
            ..Default::default()
        },
        &Control::new(),
        &mut NoProgress,
    )
}

pub fn zstd_decompress(input: &Path, output: &Path) {
    require_tool("zstd");
    run(Command::new("zstd")
        .arg("-q")
        .arg("-d")
        .arg("-f")
        .arg(input)
        .arg("-o")
        .arg(output));
}
