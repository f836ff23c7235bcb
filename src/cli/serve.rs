//! `salvor serve`: arguments and the event printer (the readiness line, the NBD URI, goes to
//! stdout; connection events to stderr, or everything as JSON lines on stdout with `--json`).

use crate::error::{Error, Result};
use crate::progress::Control;
use crate::serve::{Listen, ServeEvent, ServeObserver, ServeOptions};
use crate::units::format_bytes;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Serve an image, a raw image, a device or a rescued copy over NBD (read-only unless --overlay).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A salvor image, a raw image or device, a rescued copy (with --mapfile), or a qcow2, VHD
    /// or VMDK file.
    pub image: PathBuf,
    /// Listen on this Unix socket.
    #[arg(long, conflicts_with_all = ["port", "listen"])]
    pub unix: Option<PathBuf>,
    /// Listen on this TCP port (default 10809; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Listen on this address instead of 127.0.0.1 (e.g. 0.0.0.0: every interface).
    #[arg(long)]
    pub listen: Option<IpAddr>,
    /// Take writes into this copy-on-write file (and FILE.map); the image is never written.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// The rescued copy's ddrescue mapfile: reads of unrescued sectors fail with EIO.
    #[arg(long)]
    pub mapfile: Option<PathBuf>,
    /// An image made from a rescue: reads of the areas it records as not rescued fail with EIO
    /// instead of returning the zeros stored there.
    #[arg(long)]
    pub fail_unrescued: bool,
    /// Memory for decoded chunks (default 128MiB).
    #[arg(long, value_parser = |s: &str| crate::units::parse_size(s, 512))]
    pub cache: Option<u64>,
    /// Events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many connections have ended.
    #[arg(long, hide = true)]
    pub max_connections: Option<u64>,
    /// Seconds a client has to finish the handshake (default 30).
    #[arg(long, hide = true)]
    pub handshake_timeout: Option<u64>,
}

struct Printer {
    json: bool,
}

impl ServeObserver for Printer {
    fn event(&mut self, e: &ServeEvent) {
        if self.json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
            let _ = std::io::stdout().flush();
            return;
        }
        match e {
            ServeEvent::Listening {
                uri,
                size,
                read_only,
                description,
            } => {
                eprintln!(
                    "serving {description}: {} ({size} bytes), {}",
                    format_bytes(*size),
                    if *read_only {
                        "read-only"
                    } else {
                        "writes go to the overlay"
                    }
                );
                // The readiness line: scripts wait for it.
                println!("{uri}");
                let _ = std::io::stdout().flush();
            }
            ServeEvent::Connected { id, peer } => eprintln!("connection {id} from {peer}"),
            ServeEvent::Disconnected {
                id,
                reason,
                requests,
                bytes_read,
                errors,
                ..
            } => eprintln!(
                "connection {id} ended ({reason}): {requests} requests, {} read, {errors} errors",
                format_bytes(*bytes_read)
            ),
            ServeEvent::Stopped { connections } => {
                eprintln!("stopped after {connections} connections")
            }
        }
    }
}

pub fn run(args: &ServeArgs, control: &Control) -> Result<i32> {
    let listen = match &args.unix {
        Some(p) => Listen::Unix(p.clone()),
        None => Listen::Tcp(SocketAddr::new(
            args.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            args.port.unwrap_or(10809),
        )),
    };
    let cache_bytes = match args.cache {
        Some(c) => usize::try_from(c).map_err(|_| Error::invalid_arg("--cache", "too large"))?,
        None => crate::serve::DEFAULT_CACHE,
    };
    let opts = ServeOptions {
        listen,
        overlay: args.overlay.clone(),
        mapfile: args.mapfile.clone(),
        cache_bytes,
        fail_unrescued: args.fail_unrescued,
        max_connections: args.max_connections,
        handshake_timeout: args
            .handshake_timeout
            .map_or(crate::serve::HANDSHAKE_TIMEOUT, |s| {
                std::time::Duration::from_secs(s.max(1))
            }),
    };
    let mut p = Printer { json: args.json };
    crate::serve::serve(&args.image, &opts, control, &mut p)?;
    Ok(0)
}

/// Mount a filesystem of an image (or any input `serve` takes) read-only, through FUSE and a
/// read-only loop device; stays in the foreground until DIR is unmounted.
#[derive(clap::Args, Debug, Clone)]
pub struct MountArgs {
    pub image: PathBuf,
    pub dir: PathBuf,
    /// Partition number (default: the whole disk holds the filesystem).
    #[arg(long)]
    pub partition: Option<u32>,
    /// A rescued copy's mapfile: unrescued sectors read as errors.
    #[arg(long)]
    pub mapfile: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UmountArgs {
    pub dir: PathBuf,
}

pub fn run_mount(args: &MountArgs, control: &Control) -> Result<i32> {
    let opts = ServeOptions {
        listen: Listen::Unix(PathBuf::new()),
        overlay: None,
        mapfile: args.mapfile.clone(),
        cache_bytes: crate::serve::DEFAULT_CACHE,
        fail_unrescued: true,
        max_connections: None,
        handshake_timeout: crate::serve::HANDSHAKE_TIMEOUT,
    };
    let export = crate::serve::open_export(&args.image, &opts)?;
    crate::serve::mount::mount_export(export, &args.dir, args.partition, control, &mut |m| {
        eprintln!(
            "mounted {} ({}, read-only) from {} at {}; `salvor umount {}` ends it",
            m.device.display(),
            m.fs,
            args.image.display(),
            m.dir.display(),
            m.dir.display()
        );
        // The readiness line.
        println!("{}", m.dir.display());
        let _ = std::io::stdout().flush();
    })?;
    Ok(0)
}

pub fn run_umount(args: &UmountArgs) -> Result<i32> {
    crate::serve::mount::umount(&args.dir)?;
    Ok(0)
}
