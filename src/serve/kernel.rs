//! An export attached to the kernel's NBD client (`nbd.ko`, `/dev/nbdN`) without a network: one
//! end of a socket pair goes to the kernel (`NBD_SET_SOCK`), the other is served by a
//! [`Session`] that skips the handshake (the ioctl interface starts in the transmission phase).
//! Read-only: the kernel is told the export is read-only (`NBD_FLAG_READ_ONLY`), and the
//! session refuses writes anyway. Used by `salvor mount` where `nbd.ko` exists (the rescue
//! environment); elsewhere the FUSE file serves the same purpose.

use super::backend::Export;
use super::session::Session;
use crate::error::{Error, Result};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

nix::ioctl_none_bad!(nbd_do_it, nix::request_code_none!(0xab, 3));
nix::ioctl_none_bad!(nbd_clear_sock, nix::request_code_none!(0xab, 4));
nix::ioctl_none_bad!(nbd_disconnect, nix::request_code_none!(0xab, 8));
const NBD_SET_SOCK: u64 = 0;
const NBD_SET_BLKSIZE: u64 = 1;
const NBD_SET_SIZE: u64 = 2;
const NBD_SET_FLAGS: u64 = 10;

/// An NBD ioctl whose argument is an `unsigned long` (nix's int helpers pass a C int, too small
/// for a size).
///
/// # Safety
/// `fd` must be an open NBD device and `nr` one of the integer-argument NBD requests.
unsafe fn nbd_set(fd: libc::c_int, nr: u64, arg: libc::c_ulong) -> nix::Result<libc::c_int> {
    let request = nix::request_code_none!(0xab, nr);
    // SAFETY: per the function's contract; the argument is passed by value.
    nix::errno::Errno::result(unsafe { libc::ioctl(fd, request as _, arg) })
}

const FLAG_HAS_FLAGS: libc::c_ulong = 1;
const FLAG_READ_ONLY: libc::c_ulong = 2;

/// Whether the kernel's NBD client is there (loaded, built in, or loadable now: it is loaded on
/// first use, not at boot, so that its empty devices do not crowd the disk lists before).
pub fn available() -> bool {
    let present = || Path::new("/sys/module/nbd").exists() && Path::new("/dev/nbd0").exists();
    if !present() {
        let _ = std::process::Command::new("modprobe")
            .args(["-q", "nbd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // The device nodes follow the module asynchronously (devtmpfs).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while Path::new("/sys/module/nbd").exists()
            && !Path::new("/dev/nbd0").exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    present()
}

/// An export attached to `/dev/nbdN`; [`Attached::release`] detaches it.
pub struct Attached {
    pub device: PathBuf,
    control: std::fs::File,
    doit: Option<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
}

/// The first NBD device no client holds (sysfs `pid` appears while one does).
fn free_device() -> Option<PathBuf> {
    (0..256).find_map(|i| {
        let sys = PathBuf::from(format!("/sys/block/nbd{i}"));
        (sys.exists() && !sys.join("pid").exists()).then(|| PathBuf::from(format!("/dev/nbd{i}")))
    })
}

/// Attaches `export` to a free NBD device, read-only, and waits until the kernel has it.
pub fn attach(export: Arc<dyn Export>) -> Result<Attached> {
    let device = free_device()
        .ok_or_else(|| Error::io("/dev/nbd*", std::io::Error::other("no free NBD device")))?;
    let io = |e: std::io::Error| Error::io(&device, e);
    let nix_io = |e: nix::errno::Errno| Error::io(&device, std::io::Error::from(e));
    let control = std::fs::File::open(&device).map_err(io)?;
    let (kernel_end, server_end) = UnixStream::pair().map_err(io)?;
    let size = export.size();
    let fd = control.as_raw_fd();
    // SAFETY (all ioctls below): each takes an integer argument or none, on an open descriptor.
    unsafe {
        nbd_set(fd, NBD_SET_BLKSIZE, 512).map_err(nix_io)?;
        nbd_set(fd, NBD_SET_SIZE, size as libc::c_ulong).map_err(nix_io)?;
        nbd_set(fd, NBD_SET_FLAGS, FLAG_HAS_FLAGS | FLAG_READ_ONLY).map_err(nix_io)?;
        nbd_set(fd, NBD_SET_SOCK, kernel_end.as_raw_fd() as libc::c_ulong).map_err(nix_io)?;
    }
    let reader = server_end.try_clone().map_err(io)?;
    let server = std::thread::Builder::new()
        .name("nbd-kernel".into())
        .spawn(move || {
            let mut s = Session::new(reader, server_end, &*export, "");
            let _ = s.run_transmission();
        })
        .map_err(|e| Error::Internal(format!("NBD server thread: {e}")))?;
    let doit_fd = control.try_clone().map_err(io)?;
    let doit = std::thread::Builder::new()
        .name("nbd-do-it".into())
        .spawn(move || {
            // Blocks for as long as the device is attached; the kernel holds its own reference
            // to the socket from here on.
            // SAFETY: NBD_DO_IT takes no argument.
            let _ = unsafe { nbd_do_it(doit_fd.as_raw_fd()) };
            // SAFETY: NBD_CLEAR_SOCK takes no argument.
            let _ = unsafe { nbd_clear_sock(doit_fd.as_raw_fd()) };
            drop(kernel_end);
        })
        .map_err(|e| Error::Internal(format!("NBD thread: {e}")))?;
    let attached = Attached {
        device: device.clone(),
        control,
        doit: Some(doit),
        server: Some(server),
    };
    // Ready when the kernel reports the size (set once NBD_DO_IT has started the device).
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sectors = std::fs::read_to_string(format!("/sys/block/{name}/size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if sectors * 512 >= size.min(512) && Path::new(&format!("/sys/block/{name}/pid")).exists() {
            break;
        }
        if std::time::Instant::now() > deadline {
            attached.release();
            return Err(Error::io(
                &device,
                std::io::Error::other("the kernel did not start the NBD device"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = crate::blockdev::show_partitions(&device);
    Ok(attached)
}

impl Attached {
    /// Disconnects the device and waits for both threads.
    pub fn release(mut self) {
        // SAFETY: NBD_DISCONNECT takes no argument; the descriptor is open.
        let _ = unsafe { nbd_disconnect(self.control.as_raw_fd()) };
        if let Some(t) = self.doit.take() {
            let _ = t.join();
        }
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}
