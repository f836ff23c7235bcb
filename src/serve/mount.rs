//! `salvor mount IMAGE DIR [--partition N]` and `salvor umount DIR`: the export (any input
//! `serve` takes) becomes a read-only block device — through the kernel's NBD client where
//! `nbd.ko` is there (the rescue environment; [`super::kernel`]), otherwise as one read-only
//! file through FUSE ([`crate::fuse::serve_file`]) with a read-only loop device on it — and the
//! filesystem is mounted read-only through [`crate::mount::mount`] (device set read-only, no
//! journal replay). `mount` stays in the foreground serving the FUSE file until DIR
//! is unmounted (`salvor umount DIR`, or plain `umount`) or it is signalled; then it detaches the
//! loop device and unmounts the FUSE file itself.

use super::backend::Export;
use crate::error::{Error, Result};
use crate::progress::Control;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `mount` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mounted {
    pub dir: PathBuf,
    pub device: PathBuf,
    pub fs: String,
    /// The whole disk's device: a loop device (FUSE) or an NBD device.
    pub loop_device: PathBuf,
}

struct ExportFile(Arc<dyn Export>);

impl crate::fuse::FileBackend for ExportFile {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&mut self, pos: u64, buf: &mut [u8], _direct: bool) -> std::result::Result<usize, i32> {
        let n = (self.0.size().saturating_sub(pos)).min(buf.len() as u64) as usize;
        match self.0.read(pos, &mut buf[..n]) {
            Ok(()) => Ok(n),
            Err(f) if f.offset > pos => Ok((f.offset - pos) as usize),
            Err(_) => Err(libc::EIO),
        }
    }
}

fn is_mountpoint(dir: &Path) -> bool {
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    crate::blockdev::read_mounts()
        .iter()
        .any(|m| m.mount_point == canon)
}

fn wait_for(what: &Path, secs: u64) -> Result<()> {
    let t0 = Instant::now();
    while !what.exists() {
        if t0.elapsed() > Duration::from_secs(secs) {
            return Err(Error::io(
                what,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "did not appear"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Mounts `export` at `dir` (partition `partition`, or the whole disk) and serves it until `dir`
/// is unmounted or `control` asks to stop. `ready` is called once it is mounted.
pub fn mount_export(
    export: Arc<dyn Export>,
    dir: &Path,
    partition: Option<u32>,
    control: &Control,
    ready: &mut dyn FnMut(&Mounted),
) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::invalid_arg(
            dir.display().to_string(),
            "not a directory",
        ));
    }
    if is_mountpoint(dir) {
        return Err(Error::refused(dir, "something is mounted there already"));
    }
    let disk = if super::kernel::available() {
        Disk::Nbd(super::kernel::attach(export)?)
    } else {
        Disk::fuse(export)?
    };
    let result = mount_disk(disk.device(), dir, partition, control, ready);
    disk.release();
    result
}

/// The export as a block device: the kernel's NBD client, or a FUSE file on a loop device.
enum Disk {
    Nbd(super::kernel::Attached),
    Fuse {
        loop_device: PathBuf,
        fuse_dir: PathBuf,
        server: std::thread::JoinHandle<std::io::Result<()>>,
    },
}

impl Disk {
    fn fuse(export: Arc<dyn Export>) -> Result<Disk> {
        let fuse_dir = PathBuf::from(format!("/run/salvor/fuse-{}", std::process::id()));
        std::fs::create_dir_all(&fuse_dir).map_err(|e| Error::io(&fuse_dir, e))?;
        let file = fuse_dir.join("disk");
        let backend = ExportFile(export);
        let fd = fuse_dir.clone();
        let server = std::thread::Builder::new()
            .name("fuse".into())
            .spawn(move || crate::fuse::serve_file(backend, &fd, "disk", "salvor-image"))
            .map_err(|e| Error::Internal(format!("FUSE thread: {e}")))?;
        // Read-only, with the partitions shown (added from user space where the kernel parses
        // no tables) and their nodes waited for.
        let attached = wait_for(&file, 10).and_then(|()| {
            crate::mount::attach_loop(&file)
                .map_err(|e| Error::io(&file, std::io::Error::other(e.to_string())))
        });
        match attached {
            Ok(loop_device) => Ok(Disk::Fuse {
                loop_device,
                fuse_dir,
                server,
            }),
            Err(e) => {
                unmount_fuse(&fuse_dir);
                let _ = server.join();
                Err(e)
            }
        }
    }

    fn device(&self) -> &Path {
        match self {
            Disk::Nbd(a) => &a.device,
            Disk::Fuse { loop_device, .. } => loop_device,
        }
    }

    fn release(self) {
        match self {
            Disk::Nbd(a) => a.release(),
            Disk::Fuse {
                loop_device,
                fuse_dir,
                server,
            } => {
                let _ = crate::mount::detach_loop(&loop_device);
                unmount_fuse(&fuse_dir);
                let _ = server.join();
            }
        }
    }
}

fn unmount_fuse(fuse_dir: &Path) {
    // As root a plain unmount ends the FUSE session (no fusermount3 in the rescue environment);
    // otherwise fusermount3 does it.
    if nix::mount::umount2(fuse_dir, nix::mount::MntFlags::MNT_DETACH).is_err() {
        let _ = Command::new("fusermount3").arg("-u").arg(fuse_dir).status();
    }
    let _ = std::fs::remove_dir(fuse_dir);
}

/// Mounts partition `partition` of `disk` (or the whole disk) read-only at `dir`, then waits
/// until `dir` is unmounted or `control` asks to stop.
fn mount_disk(
    disk: &Path,
    dir: &Path,
    partition: Option<u32>,
    control: &Control,
    ready: &mut dyn FnMut(&Mounted),
) -> Result<()> {
    let dev = match partition {
        Some(n) => PathBuf::from(format!("{}p{n}", disk.display())),
        None => disk.to_path_buf(),
    };
    wait_for(&dev, 10)?;
    let fs = {
        let mut f = std::fs::File::open(&dev).map_err(|e| Error::io(&dev, e))?;
        let len = crate::device::file::device_size(&f).unwrap_or(0);
        crate::blockdev::fstype::probe(&mut f, 0, len)
    };
    let Some(fs) = fs else {
        return Err(Error::invalid_arg(
            dev.display().to_string(),
            "no filesystem recognised (give --partition N for a partitioned disk)",
        ));
    };
    crate::mount::mount(&dev, dir, fs, true)
        .map_err(|e| Error::io(&dev, std::io::Error::other(e.to_string())))?;
    ready(&Mounted {
        dir: dir.to_path_buf(),
        device: dev.clone(),
        fs: fs.to_string(),
        loop_device: disk.to_path_buf(),
    });
    while is_mountpoint(dir) && control.stop_requested().is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    if is_mountpoint(dir) {
        crate::mount::unmount(dir, false)
            .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    }
    Ok(())
}

/// Unmounts what `salvor mount` mounted at `dir`; the `mount` process then cleans up.
pub fn umount(dir: &Path) -> Result<()> {
    if !is_mountpoint(dir) {
        return Err(Error::invalid_arg(
            dir.display().to_string(),
            "nothing is mounted there",
        ));
    }
    crate::mount::unmount(dir, false)
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))
}
