//! Serving one read-only file over FUSE (`fuser`, no libfuse: as root the mount(2) call itself,
//! otherwise `fusermount3`).
//!
//! Used by `salvor sim-drive` to show a simulated failing drive to other programs (GNU ddrescue
//! reads the same drive model as salvor's engine tests), and meant for mounting images later.
//!
//! Every open gets `FOPEN_DIRECT_IO`: the kernel's page cache is bypassed and each `read(2)` of
//! the caller reaches the backend as it was issued, up to the kernel's request limit (`max_pages`:
//! `fuser` asks for 16 MiB, kernels cap it at 256 pages = 1 MiB by default; a larger read is split
//! into requests of that size). The backend is told whether the file was opened with `O_DIRECT`,
//! so it can give each mode its own error semantics. A read that fails after some good bytes is
//! answered with the short good part; the caller's next read then starts at the failing byte.

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What the served file reads from.
pub trait FileBackend: Send + 'static {
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `pos`. `Ok(n)` with `n` short of the request (before the end
    /// of the file) means the byte at `pos + n` failed; `Err(errno)` fails the request whole.
    /// `direct`: the file was opened with `O_DIRECT`.
    fn read(&mut self, pos: u64, buf: &mut [u8], direct: bool) -> Result<usize, i32>;
}

const ROOT: u64 = fuser::FUSE_ROOT_ID;
const FILE: u64 = 2;
const TTL: Duration = Duration::from_secs(3600);

struct OneFile<B: FileBackend> {
    name: OsString,
    backend: B,
    uid: u32,
    gid: u32,
    /// Open handles: whether each was opened with O_DIRECT.
    handles: HashMap<u64, bool>,
    next_fh: u64,
    buf: Vec<u8>,
}

impl<B: FileBackend> OneFile<B> {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o555, 0, 2)
        } else {
            (FileType::RegularFile, 0o444, self.backend.size(), 1)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl<B: FileBackend> Filesystem for OneFile<B> {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Large requests: max_pages follows max(max_write, max_readahead).
        let _ = config.set_max_write(16 << 20);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == self.name.as_os_str() {
            reply.entry(&TTL, &self.attr(FILE), 0);
        } else {
            reply.error(libc::ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT | FILE => reply.attr(&TTL, &self.attr(ino)),
            _ => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if ino != FILE {
            reply.error(libc::EISDIR);
            return;
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(libc::EROFS);
            return;
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, flags & libc::O_DIRECT != 0);
        reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if ino != FILE || offset < 0 {
            reply.error(libc::EINVAL);
            return;
        }
        let direct = self.handles.get(&fh).copied().unwrap_or(false);
        let pos = offset as u64;
        let len = (size as u64).min(self.backend.size().saturating_sub(pos)) as usize;
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let buf = &mut self.buf[..len];
        match self.backend.read(pos, buf, direct) {
            Ok(n) => reply.data(&buf[..n.min(len)]),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            reply.error(libc::ENOTDIR);
            return;
        }
        let entries = [
            (ROOT, FileType::Directory, OsStr::new(".")),
            (ROOT, FileType::Directory, OsStr::new("..")),
            (FILE, FileType::RegularFile, self.name.as_os_str()),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts a directory at `mountpoint` holding one read-only file `name` served by `backend`, and
/// serves it until it is unmounted (`fusermount3 -u MOUNTPOINT`). The backend is dropped then; keep
/// shared handles to whatever it should report.
pub fn serve_file<B: FileBackend>(
    backend: B,
    mountpoint: &Path,
    name: &str,
    fsname: &str,
) -> io::Result<()> {
    let fs = OneFile {
        name: OsString::from(name),
        backend,
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        handles: HashMap::new(),
        next_fh: 1,
        buf: Vec::new(),
    };
    let options = [
        MountOption::RO,
        MountOption::FSName(fsname.to_string()),
        MountOption::Subtype("salvor".to_string()),
    ];
    let mut session = fuser::Session::new(fs, mountpoint, &options)?;
    session.run()
}
