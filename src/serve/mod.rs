//! `salvor serve`: an NBD server for salvor images, raw images, devices and rescued copies.
//!
//! - [`proto`]: the wire format, pure parsing and encoding (fuzzed);
//! - [`session`]: one connection's handshake and requests, generic over the byte stream;
//! - [`backend`]: what is exported ([`backend::ImageExport`] with the chunk cache
//!   [`cache::ChunkCache`], [`backend::RawExport`] with `SEEK_HOLE` and mapfiles);
//! - [`overlay`]: copy-on-write writes into a file of their own.
//!
//! [`serve`] listens on a Unix socket or a TCP address (loopback unless told otherwise), runs one
//! thread per connection, reports through [`ServeObserver`] and stops when the [`Control`] asks.
//! Nothing here writes the image or the source: they are opened read-only.

pub mod backend;
pub mod cache;
pub mod kernel;
pub mod mount;
pub mod overlay;
pub mod proto;
pub mod session;

use crate::error::{Error, Result};
use crate::progress::Control;
use backend::{Export, ImageExport, RawExport};

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Where to listen.
#[derive(Debug, Clone)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: Listen,
    /// Take writes into this copy-on-write file (and `FILE.map`).
    pub overlay: Option<PathBuf>,
    /// A rescued copy's ddrescue mapfile: reads of unrescued sectors fail with EIO.
    pub mapfile: Option<PathBuf>,
    /// Bytes of decoded chunks kept in memory.
    pub cache_bytes: usize,
    /// Images: reads of the areas recorded as not rescued fail with EIO.
    pub fail_unrescued: bool,
    /// Stop after this many connections have ended (tests, one-shot use).
    pub max_connections: Option<u64>,
    /// A client must finish the handshake within this time (default [`HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

pub const DEFAULT_CACHE: usize = 128 << 20;
/// Connections served at once; more are closed right after they are accepted.
pub const MAX_CONNECTIONS: u64 = 64;
/// A client must finish the handshake within this time; afterwards it may stay idle.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server reports.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ServeEvent {
    /// Listening: clients may connect from now on.
    Listening {
        uri: String,
        size: u64,
        read_only: bool,
        description: String,
    },
    Connected {
        id: u64,
        peer: String,
    },
    Disconnected {
        id: u64,
        reason: String,
        requests: u64,
        bytes_read: u64,
        bytes_written: u64,
        errors: u64,
    },
    Stopped {
        connections: u64,
    },
}

pub trait ServeObserver {
    fn event(&mut self, e: &ServeEvent);
}

/// Opens what `path` holds as an export: a salvor image, or a raw image / device (with a
/// mapfile, a rescued copy), wrapped in an overlay when asked.
pub fn open_export(path: &Path, opts: &ServeOptions) -> Result<Arc<dyn Export>> {
    let base: Box<dyn Export> = if crate::image::reader::looks_like_salvor_image(path) {
        if opts.mapfile.is_some() {
            return Err(Error::invalid_arg(
                "--mapfile",
                "a salvor image records its unrescued areas itself; --mapfile is for a rescued copy",
            ));
        }
        Box::new(ImageExport::open(
            path,
            opts.cache_bytes,
            opts.fail_unrescued,
        )?)
    } else if std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && crate::export::open::detect(path).is_some()
    {
        // Only regular files: a disk that happens to hold such a header stays a raw disk.
        if opts.mapfile.is_some() {
            return Err(Error::invalid_arg(
                "--mapfile",
                "--mapfile is for a raw rescued copy, not a qcow2/VHD/VMDK file",
            ));
        }
        Box::new(backend::FormatExport::open(path)?)
    } else {
        Box::new(RawExport::open(path, opts.mapfile.as_deref())?)
    };
    Ok(match &opts.overlay {
        Some(o) => Arc::new(overlay::Overlay::open(base, o)?),
        None => Arc::from(base),
    })
}

/// What serving `path` reads and writes, for the safety policy: the overlay and its map must
/// not be the image, its parts, the mapfile, or on a device holding them.
fn plan(path: &Path, opts: &ServeOptions) -> crate::safety::Plan {
    use crate::safety::{Plan, Role};
    let mut p = Plan::new().read(path);
    if let Ok(img) = crate::image::parts::PartReader::open(path) {
        for part in img.part_paths() {
            p = p.read(part);
        }
    }
    if let Some(m) = &opts.mapfile {
        p = p.read(m);
    }
    if let Some(o) = &opts.overlay {
        p = p
            .write(Role::Destination, o)
            .write(Role::Destination, overlay::map_path(o));
    }
    p
}

enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Listener {
    fn bind(l: &Listen) -> Result<(Listener, String)> {
        match l {
            Listen::Unix(p) => {
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    if !m.file_type().is_socket() {
                        return Err(Error::refused(p, "exists and is not a socket"));
                    }
                    if UnixStream::connect(p).is_ok() {
                        return Err(Error::refused(p, "another server is listening on it"));
                    }
                    std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
                }
                let s = UnixListener::bind(p).map_err(|e| Error::io(p, e))?;
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                let uri = format!("nbd+unix:///?socket={}", abs.display());
                Ok((Listener::Unix(s, p.clone()), uri))
            }
            Listen::Tcp(a) => {
                let s = TcpListener::bind(a).map_err(|e| Error::io(a.to_string(), e))?;
                let local = s.local_addr().map_err(|e| Error::io(a.to_string(), e))?;
                let host = match local {
                    SocketAddr::V6(v) => format!("[{}]", v.ip()),
                    SocketAddr::V4(v) => v.ip().to_string(),
                };
                let uri = format!("nbd://{host}:{}/", local.port());
                Ok((Listener::Tcp(s), uri))
            }
        }
    }

    fn fd(&self) -> i32 {
        match self {
            Listener::Unix(s, _) => s.as_raw_fd(),
            Listener::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

enum Msg {
    Ended(u64, String, session::Stats),
}

/// Serves `path` until `control` asks to stop (or `max_connections` have ended).
pub fn serve(
    path: &Path,
    opts: &ServeOptions,
    control: &Control,
    obs: &mut dyn ServeObserver,
) -> Result<u64> {
    plan(path, opts).check()?;
    let export = open_export(path, opts)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    serve_export(export, &name, opts, control, obs)
}

/// Serves an already opened export under `name`.
pub fn serve_export(
    export: Arc<dyn Export>,
    name: &str,
    opts: &ServeOptions,
    control: &Control,
    obs: &mut dyn ServeObserver,
) -> Result<u64> {
    let (listener, uri) = Listener::bind(&opts.listen)?;
    obs.event(&ServeEvent::Listening {
        uri,
        size: export.size(),
        read_only: !export.writable(),
        description: export.describe(),
    });
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut next_id = 0u64;
    let mut ended = 0u64;
    let name: Arc<str> = Arc::from(name);
    loop {
        while let Ok(Msg::Ended(id, reason, s)) = rx.try_recv() {
            ended += 1;
            obs.event(&ServeEvent::Disconnected {
                id,
                reason,
                requests: s.requests,
                bytes_read: s.bytes_read,
                bytes_written: s.bytes_written,
                errors: s.errors,
            });
        }
        if control.stop_requested().is_some() || opts.max_connections.is_some_and(|m| ended >= m) {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: listener.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n <= 0 {
            continue;
        }
        let accepted: std::io::Result<(Box<dyn Conn>, String)> = match &listener {
            Listener::Unix(s, p) => s
                .accept()
                .map(|(c, _)| (Box::new(c) as Box<dyn Conn>, p.display().to_string())),
            Listener::Tcp(s) => s.accept().map(|(c, a)| {
                let _ = c.set_nodelay(true);
                (Box::new(c) as Box<dyn Conn>, a.to_string())
            }),
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            // A client that went away between poll and accept, or too many files: try again.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if next_id - ended >= MAX_CONNECTIONS {
            // Each connection may hold a 32 MiB request buffer: refuse more than this many.
            drop(conn);
            continue;
        }
        next_id += 1;
        let id = next_id;
        obs.event(&ServeEvent::Connected { id, peer });
        let (export, name, tx) = (export.clone(), name.clone(), tx.clone());
        let limit = opts.handshake_timeout;
        let spawned = std::thread::Builder::new()
            .name(format!("nbd-{id}"))
            .spawn(move || {
                let timeout = conn.timeout_setter();
                if let Ok(t) = &timeout {
                    t(Some(limit));
                }
                let (reason, stats) = match conn.split() {
                    Ok((r, w)) => {
                        let r = BufReader::with_capacity(256 << 10, r);
                        let w = BufWriter::with_capacity(256 << 10, w);
                        let mut s = session::Session::new(r, w, &*export, &name);
                        if let Ok(t) = timeout {
                            s.on_transmission = Some(Box::new(move || t(None)));
                        }
                        let end = s.run();
                        (end.to_string(), s.stats)
                    }
                    Err(e) => (e.to_string(), session::Stats::default()),
                };
                if export.writable() {
                    let _ = export.flush();
                }
                let _ = tx.send(Msg::Ended(id, reason, stats));
            });
        if spawned.is_err() {
            ended += 1;
        }
    }
    let flushed = export.flush();
    obs.event(&ServeEvent::Stopped {
        connections: next_id,
    });
    drop(listener);
    flushed.map_err(|f| Error::Internal(format!("saving the overlay: {}", f.message)))?;
    Ok(next_id)
}

/// A connected socket that splits into a reading and a writing half.
type TimeoutSetter = Box<dyn Fn(Option<Duration>) + Send>;

trait Conn: Send {
    /// Sets the socket's read timeout (through a second handle, usable after `split`).
    fn timeout_setter(&self) -> std::io::Result<TimeoutSetter>;

    #[allow(clippy::type_complexity)]
    fn split(
        self: Box<Self>,
    ) -> std::io::Result<(
        Box<dyn std::io::Read + Send>,
        Box<dyn std::io::Write + Send>,
    )>;
}

impl Conn for UnixStream {
    fn timeout_setter(&self) -> std::io::Result<TimeoutSetter> {
        let s = self.try_clone()?;
        Ok(Box::new(move |t| {
            let _ = s.set_read_timeout(t);
        }))
    }

    fn split(
        self: Box<Self>,
    ) -> std::io::Result<(
        Box<dyn std::io::Read + Send>,
        Box<dyn std::io::Write + Send>,
    )> {
        let w = self.try_clone()?;
        Ok((self, Box::new(w)))
    }
}

impl Conn for TcpStream {
    fn timeout_setter(&self) -> std::io::Result<TimeoutSetter> {
        let s = self.try_clone()?;
        Ok(Box::new(move |t| {
            let _ = s.set_read_timeout(t);
        }))
    }

    fn split(
        self: Box<Self>,
    ) -> std::io::Result<(
        Box<dyn std::io::Read + Send>,
        Box<dyn std::io::Write + Send>,
    )> {
        let w = self.try_clone()?;
        Ok((self, Box::new(w)))
    }
}
