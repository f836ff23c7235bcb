//! `salvor serve` end to end: libnbd's tools and qemu-img as clients over a Unix socket (and TCP),
//! a small hand-written client for what they never send (malformed handshakes and requests,
//! clients vanishing mid-request), and fuzzing of the session on in-memory streams.

mod common;
use common::*;
use proptest::prelude::*;
use salvor::serve::backend::{Export, Extent, Fault};
use salvor::serve::proto::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MIB: usize = 1 << 20;

/// A running `salvor serve`, killed when dropped (also when a test fails).
struct Server {
    child: Child,
    uri: String,
    sock: PathBuf,
}

impl Server {
    fn start(image: &Path, sock: &Path, extra: &[&str]) -> Server {
        let mut cmd = salvor();
        cmd.arg("serve")
            .arg(image)
            .arg("--unix")
            .arg(sock)
            .args(extra);
        Self::spawn(cmd, sock)
    }

    fn spawn(mut cmd: Command, sock: &Path) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start salvor serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        // Readiness: the URI line once the socket is listening.
        let _ = BufReader::new(stdout).read_line(&mut line);
        let mut s = Server {
            child,
            uri: line.trim().to_string(),
            sock: sock.to_path_buf(),
        };
        if s.uri.is_empty() {
            let _ = s.child.kill();
            let mut err = String::new();
            if let Some(mut e) = s.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("salvor serve did not start: {err}");
        }
        s
    }

    /// SIGTERM, as a user's Ctrl-C would: the server saves the overlay, removes its socket and
    /// exits 0.
    fn stop(mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "salvor serve exited with {status}");
        assert!(!self.sock.exists(), "the socket was left behind");
    }

    fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.sock).expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A disk of 22 MiB + 4 KiB in 4 MiB chunks: data in chunks 0, 2 and 5 (the short last one),
/// chunks 1, 3 and 4 all zeros.
fn test_disk(path: &Path) -> Vec<u8> {
    let size = 22 * MIB + 4096;
    let mut d = vec![0u8; size];
    for (k, seed) in [(0usize, 1u64), (2, 2), (5, 3)] {
        let s = k * 4 * MIB;
        let e = (s + 4 * MIB).min(size);
        d[s..e].copy_from_slice(&pattern(seed, e - s));
    }
    std::fs::write(path, &d).unwrap();
    d
}

fn make_image(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let raw = dir.join("disk.raw");
    let data = test_disk(&raw);
    let img = dir.join("disk.img.zst");
    let out = run(salvor().arg("image").arg(&raw).arg(&img));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (raw, img, data)
}

fn tool(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nbdinfo --map` lines as (offset, length, type).
fn nbd_map(uri: &str) -> Vec<(u64, u64, u32)> {
    tool(Command::new("nbdinfo").arg("--map").arg(uri))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn image_map_copy_and_compare() {
    require_tool("nbdinfo", "libnbd-bin");
    require_tool("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let (raw, img, data) = make_image(dir.path());
    let sock = dir.path().join("nbd.sock");
    let s = Server::start(&img, &sock, &[]);
    assert!(s.uri.starts_with("nbd+unix:///?socket="), "{}", s.uri);

    let c = 4 * MIB as u64;
    assert_eq!(
        nbd_map(&s.uri),
        vec![
            (0, c, 0),
            (c, c, 3),
            (2 * c, c, 0),
            (3 * c, 2 * c, 3),
            (5 * c, 2 * MIB as u64 + 4096, 0)
        ]
    );
    let size = tool(Command::new("nbdinfo").arg("--size").arg(&s.uri));
    assert_eq!(size.trim(), data.len().to_string());

    let copy = dir.path().join("copy.raw");
    tool(Command::new("nbdcopy").arg(&s.uri).arg(&copy));
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "nbdcopy of the export differs"
    );

    // Several connections at once: qemu-img reads while nbdcopy runs with 4 connections.
    let mut copier = Command::new("nbdcopy")
        .args(["--connections=4"])
        .arg(&s.uri)
        .arg(dir.path().join("copy2.raw"))
        .spawn()
        .unwrap();
    let cmp = tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&raw)
            .arg(&s.uri),
    );
    assert!(cmp.contains("identical"), "{cmp}");
    assert!(copier.wait().unwrap().success());
    assert!(std::fs::read(dir.path().join("copy2.raw")).unwrap() == data);
}

#[test]
fn zero_runs_inside_chunks_are_holes() {
    require_tool("nbdinfo", "libnbd-bin");
    require_tool("nbdcopy", "libnbd-bin");
    let dir = tempfile::tempdir().unwrap();
    // Two 4 MiB chunks and a short one, each mixing random data with zero runs.
    let m = MIB;
    let mut data = vec![0u8; 9 * m + 12345];
    for (s, e, seed) in [
        (0, m, 1),
        (2 * m, 4 * m + m / 2, 2),
        (6 * m, 7 * m, 3),
        (9 * m, 9 * m + 100, 4),
    ] {
        data[s..e].copy_from_slice(&pattern(seed, e - s));
    }
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, &data).unwrap();
    let img = dir.path().join("disk.img.zst");
    let out = run(salvor().arg("image").arg(&raw).arg(&img));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start(&img, &dir.path().join("nbd.sock"), &[]);
    let map = nbd_map(&s.uri);
    // Every hole is really zeros, and the map covers the disk.
    let mut at = 0u64;
    for &(o, l, t) in &map {
        assert_eq!(o, at, "{map:?}");
        at = o + l;
        if t & 2 != 0 {
            assert!(
                data[o as usize..(o + l) as usize].iter().all(|&b| b == 0),
                "hole at {o}+{l} holds data: {map:?}"
            );
        }
    }
    assert_eq!(at, data.len() as u64);
    // The zero megabyte between data inside chunk 0 (compressed as RLE blocks) is a hole.
    let (a, b) = (m as u64, 2 * m as u64);
    assert!(
        map.iter().any(|&(o, l, t)| t == 3 && o <= a && o + l >= b),
        "{map:?}"
    );
    // Reads with holes skipped and with every byte read give the disk back.
    for extra in [&[][..], &["--no-extents"][..]] {
        let copy = dir.path().join("copy.raw");
        let _ = std::fs::remove_file(&copy);
        tool(Command::new("nbdcopy").args(extra).arg(&s.uri).arg(&copy));
        assert!(
            std::fs::read(&copy).unwrap() == data,
            "nbdcopy {extra:?} differs"
        );
    }
}

#[test]
fn sparse_raw_file_over_tcp() {
    require_tool("nbdinfo", "libnbd-bin");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("sparse.raw");
    {
        let f = std::fs::File::create(&raw).unwrap();
        f.set_len(8 * MIB as u64).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&pattern(9, MIB), 2 * MIB as u64).unwrap();
        f.sync_all().unwrap();
    }
    let mut cmd = salvor();
    cmd.arg("serve").arg(&raw).args(["--port", "0"]);
    let s = Server::spawn(cmd, &dir.path().join("unused"));
    assert!(s.uri.starts_with("nbd://127.0.0.1:"), "{}", s.uri);
    let map = nbd_map(&s.uri);
    let m = MIB as u64;
    // tmpfs and ext4 report holes at page/block granularity; the data megabyte is data.
    assert!(
        map.iter()
            .any(|&(o, l, t)| t == 0 && o <= 2 * m && o + l >= 3 * m),
        "{map:?}"
    );
    assert!(map.iter().any(|&(o, _, t)| t == 3 && o == 0), "{map:?}");
    assert!(
        map.iter().any(|&(o, l, t)| t == 3 && o + l == 8 * m),
        "{map:?}"
    );
}

/// A minimal NBD client for requests the stock tools never send.
struct Client {
    s: UnixStream,
}

impl Client {
    fn handshake(s: UnixStream, structured: bool) -> Client {
        let mut c = Client { s };
        let mut g = [0u8; 18];
        c.s.read_exact(&mut g).unwrap();
        assert_eq!(&g[..8], b"NBDMAGIC");
        c.s.write_all(&3u32.to_be_bytes()).unwrap();
        if structured {
            c.option(OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(c.option_reply().1, REP_ACK);
            let mut d = 0u32.to_be_bytes().to_vec();
            d.extend_from_slice(&1u32.to_be_bytes());
            d.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
            d.extend_from_slice(BASE_ALLOCATION.as_bytes());
            c.option(OPT_SET_META_CONTEXT, &d);
            assert_eq!(c.option_reply().1, REP_META_CONTEXT);
            assert_eq!(c.option_reply().1, REP_ACK);
        }
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&0u16.to_be_bytes());
        c.option(OPT_GO, &d);
        loop {
            let (_, t, _) = c.option_reply();
            if t == REP_ACK {
                break;
            }
            assert_eq!(t, REP_INFO);
        }
        c
    }

    fn option(&mut self, opt: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u64::from_be_bytes(h[..8].try_into().unwrap()),
            OPTION_REPLY_MAGIC
        );
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        (
            u32::from_be_bytes(h[8..12].try_into().unwrap()),
            u32::from_be_bytes(h[12..16].try_into().unwrap()),
            d,
        )
    }

    fn request(&mut self, kind: u16, offset: u64, length: u32, payload: &[u8]) {
        let r = Request {
            flags: 0,
            kind,
            cookie: 7,
            offset,
            length,
        };
        self.s.write_all(&encode_request(&r)).unwrap();
        self.s.write_all(payload).unwrap();
    }

    /// Reads structured chunks until the final one: (data bytes, error and its offset).
    fn structured(&mut self) -> (Vec<u8>, Option<(u32, Option<u64>)>) {
        let mut data = Vec::new();
        let mut err = None;
        loop {
            let mut h = [0u8; 20];
            self.s.read_exact(&mut h).unwrap();
            assert_eq!(
                u32::from_be_bytes(h[..4].try_into().unwrap()),
                STRUCTURED_REPLY_MAGIC
            );
            let flags = u16::from_be_bytes([h[4], h[5]]);
            let kind = u16::from_be_bytes([h[6], h[7]]);
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
            let mut p = vec![0u8; len];
            self.s.read_exact(&mut p).unwrap();
            match kind {
                REPLY_TYPE_OFFSET_DATA => data.extend_from_slice(&p[8..]),
                REPLY_TYPE_OFFSET_HOLE => {
                    let n = u32::from_be_bytes(p[8..12].try_into().unwrap());
                    data.resize(data.len() + n as usize, 0);
                }
                REPLY_TYPE_ERROR | REPLY_TYPE_ERROR_OFFSET => {
                    let e = u32::from_be_bytes(p[..4].try_into().unwrap());
                    let ml = u16::from_be_bytes([p[4], p[5]]) as usize;
                    let off = (kind == REPLY_TYPE_ERROR_OFFSET)
                        .then(|| u64::from_be_bytes(p[6 + ml..14 + ml].try_into().unwrap()));
                    err = Some((e, off));
                }
                _ => {}
            }
            if flags & REPLY_FLAG_DONE != 0 {
                return (data, err);
            }
        }
    }

    fn simple(&mut self) -> u32 {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        u32::from_be_bytes(h[4..8].try_into().unwrap())
    }

    fn read(&mut self, offset: u64, len: u32) -> (Vec<u8>, Option<(u32, Option<u64>)>) {
        self.request(CMD_READ, offset, len, &[]);
        self.structured()
    }

    /// Whether the server closed the connection.
    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

#[test]
fn malformed_clients_do_not_disturb_others() {
    let dir = tempfile::tempdir().unwrap();
    let (_raw, img, data) = make_image(dir.path());
    let sock = dir.path().join("nbd.sock");
    let s = Server::start(&img, &sock, &[]);
    // A well-behaved client stays connected through everything below.
    let mut good = Client::handshake(s.connect(), true);
    let (d, e) = good.read(4096, 8192);
    assert_eq!(e, None);
    assert!(d == data[4096..4096 + 8192]);

    // Bad option magic: the server hangs up.
    let mut c = s.connect();
    let mut g = [0u8; 18];
    c.read_exact(&mut g).unwrap();
    c.write_all(&3u32.to_be_bytes()).unwrap();
    c.write_all(&[0xAB; 16]).unwrap();
    assert!(Client { s: c }.closed());

    // Unknown client flags: hang up.
    let mut c = s.connect();
    c.read_exact(&mut g).unwrap();
    c.write_all(&0xFFu32.to_be_bytes()).unwrap();
    assert!(Client { s: c }.closed());

    // Invalid option data gets an error reply, and the handshake goes on.
    let mut c = Client { s: s.connect() };
    c.s.read_exact(&mut g).unwrap();
    c.s.write_all(&3u32.to_be_bytes()).unwrap();
    c.option(OPT_GO, &[0, 0, 0, 9, b'x']);
    assert_eq!(c.option_reply().1, REP_ERR_INVALID);
    c.option(OPT_LIST, &[]);
    let (_, t, d) = c.option_reply();
    assert_eq!(t, REP_SERVER);
    assert_eq!(&d[4..4 + "disk.img.zst".len()], b"disk.img.zst");
    assert_eq!(c.option_reply().1, REP_ACK);
    c.option(99, &[]);
    assert_eq!(c.option_reply().1, REP_ERR_UNSUP);
    let mut name = 5u32.to_be_bytes().to_vec();
    name.extend_from_slice(b"other");
    name.extend_from_slice(&0u16.to_be_bytes());
    c.option(OPT_INFO, &name);
    assert_eq!(c.option_reply().1, REP_ERR_UNKNOWN);
    c.option(OPT_ABORT, &[]);
    assert_eq!(c.option_reply().1, REP_ACK);
    assert!(c.closed());

    // Out-of-range reads, zero-length and oversized requests: error replies, connection kept.
    let mut c = Client::handshake(s.connect(), true);
    let size = data.len() as u64;
    assert_eq!(c.read(size - 512, 1024).1, Some((EINVAL, None)));
    assert_eq!(c.read(u64::MAX - 10, 512).1, Some((EINVAL, None)));
    assert_eq!(c.read(0, 0).1, Some((EINVAL, None)));
    assert_eq!(c.read(0, 64 << 20).1, Some((EOVERFLOW, None)));
    // Writes to the read-only export: EPERM, and the payload is consumed.
    c.request(CMD_WRITE, 0, 4096, &[0x55; 4096]);
    assert_eq!(c.structured().1, Some((EPERM, None)));
    let (d, e) = c.read(size - 4096, 4096);
    assert_eq!(e, None);
    assert!(d == data[data.len() - 4096..]);
    c.request(CMD_FLUSH, 0, 0, &[]);
    assert_eq!(c.simple(), 0);
    // A zero chunk comes back as a hole.
    let (d, e) = c.read(4 * MIB as u64, 65536);
    assert_eq!(e, None);
    assert!(d.iter().all(|&b| b == 0) && d.len() == 65536);
    // Bad request magic: hang up.
    c.s.write_all(&[0x11; 28]).unwrap();
    assert!(c.closed());

    // Simple replies (no structured reply negotiated): errors carry no payload.
    let mut c = Client::handshake(s.connect(), false);
    c.request(CMD_READ, size, 512, &[]);
    assert_eq!(c.simple(), EINVAL);
    c.request(CMD_READ, 0, 512, &[]);
    assert_eq!(c.simple(), 0);
    let mut d = vec![0u8; 512];
    c.s.read_exact(&mut d).unwrap();
    assert!(d == data[..512]);
    c.request(CMD_BLOCK_STATUS, 0, 512, &[]);
    assert_eq!(c.simple(), EINVAL);

    // Clients that vanish mid-request: half a header, half a write payload, a read never
    // collected.
    let mut c = Client::handshake(s.connect(), true);
    c.s.write_all(
        &encode_request(&Request {
            flags: 0,
            kind: CMD_READ,
            cookie: 1,
            offset: 0,
            length: 512,
        })[..10],
    )
    .unwrap();
    drop(c);
    let mut c = Client::handshake(s.connect(), true);
    c.s.write_all(&encode_request(&Request {
        flags: 0,
        kind: CMD_WRITE,
        cookie: 1,
        offset: 0,
        length: 65536,
    }))
    .unwrap();
    c.s.write_all(&[1; 100]).unwrap();
    drop(c);
    let mut c = Client::handshake(s.connect(), true);
    for i in 0..64 {
        c.request(CMD_READ, i * MIB as u64 / 4, 4 << 20, &[]);
    }
    drop(c);

    // The first client never noticed.
    for off in [0u64, 9 * MIB as u64 + 17, size - 100] {
        let (d, e) = good.read(off, 100);
        assert_eq!(e, None);
        assert!(d == data[off as usize..off as usize + 100]);
    }
    good.request(CMD_DISC, 0, 0, &[]);
    assert!(good.closed());
}

#[test]
fn rescued_copy_with_mapfile_fails_unrescued_reads() {
    require_tool("nbdcopy", "libnbd-bin");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("rescued.img");
    let data = write_pattern(&copy, 5, 4 * MIB);
    let map = dir.path().join("rescued.map");
    // Two unrescued areas.
    write_test_map(
        &map,
        data.len() as u64,
        &[
            (65536, 65536 + 4096),
            (3 * MIB as u64, 3 * MIB as u64 + 512),
        ],
    );
    let sock = dir.path().join("nbd.sock");
    let s = Server::start(&copy, &sock, &["--mapfile", map.to_str().unwrap()]);
    let mut c = Client::handshake(s.connect(), true);
    let (d, e) = c.read(0, 65536);
    assert_eq!(e, None);
    assert!(d == data[..65536]);
    // A read across the first bad area: the good part, then EIO at the first unrescued byte.
    let (d, e) = c.read(60000, 10000);
    assert_eq!(e, Some((EIO, Some(65536))));
    assert!(d == data[60000..65536]);
    let (_, e) = c.read(3 * MIB as u64, 512);
    assert_eq!(e, Some((EIO, Some(3 * MIB as u64))));
    let (d, e) = c.read(3 * MIB as u64 + 512, 512);
    assert_eq!(e, None);
    assert!(d == data[3 * MIB + 512..3 * MIB + 1024]);
    // Stock tools see the error too.
    let out = run(Command::new("nbdcopy")
        .arg(&s.uri)
        .arg(dir.path().join("out.raw")));
    assert!(
        !out.status.success(),
        "nbdcopy of a copy with unrescued areas must fail"
    );
}

#[test]
fn overlay_takes_writes_and_leaves_the_image_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_raw, img, data) = make_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let ov = dir.path().join("writes.ovl");
    let sock = dir.path().join("nbd.sock");
    {
        let s = Server::start(&img, &sock, &["--overlay", ov.to_str().unwrap()]);
        let mut c = Client::handshake(s.connect(), true);
        // Unaligned, across a chunk boundary, into a zero chunk.
        let at = 4 * MIB as u64 - 1000;
        c.request(CMD_WRITE, at, 3000, &[0xEE; 3000]);
        assert_eq!(c.simple(), 0);
        let (d, e) = c.read(at - 5000, 10000);
        assert_eq!(e, None);
        let mut want = data[(at - 5000) as usize..(at + 5000) as usize].to_vec();
        want[5000..8000].fill(0xEE);
        assert!(d == want);
        c.request(CMD_WRITE, data.len() as u64, 512, &[1; 512]);
        assert_eq!(c.structured().1, Some((ENOSPC, None)));
        c.request(CMD_FLUSH, 0, 0, &[]);
        assert_eq!(c.simple(), 0);
        // Unflushed writes are saved at shutdown.
        c.request(CMD_WRITE, 0, 512, &[0xAA; 512]);
        assert_eq!(c.simple(), 0);
        s.stop();
    }
    assert!(
        std::fs::read(&img).unwrap() == before,
        "the image was modified"
    );
    // A second server on the same overlay sees the writes.
    let s = Server::start(&img, &sock, &["--overlay", ov.to_str().unwrap()]);
    let mut c = Client::handshake(s.connect(), true);
    let (d, _) = c.read(4 * MIB as u64 - 1000, 3000);
    assert!(d.iter().all(|&b| b == 0xEE));
    let (d, _) = c.read(0, 4096);
    assert!(d[..512].iter().all(|&b| b == 0xAA));
    assert!(d[512..] == data[512..4096]);
}

/// An in-memory export for fuzzing sessions.
struct Mem(Vec<u8>);

impl Export for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Fault> {
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn extents(&self, _offset: u64, len: u64) -> Vec<Extent> {
        vec![Extent { len, flags: 0 }]
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

fn valid_prefix() -> Vec<u8> {
    let mut b = 3u32.to_be_bytes().to_vec();
    for (opt, data) in [
        (OPT_STRUCTURED_REPLY, vec![]),
        (OPT_GO, vec![0, 0, 0, 0, 0, 0]),
    ] {
        b.extend_from_slice(&IHAVEOPT.to_be_bytes());
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(&data);
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes as a whole client conversation: the session ends without panicking.
    #[test]
    fn fuzz_handshake(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let export = Mem(vec![7u8; 65536]);
        let mut out = Vec::new();
        let mut s = salvor::serve::session::Session::new(&bytes[..], &mut out, &export, "m");
        let _ = s.run();
        prop_assert!(out.len() >= 18);
    }

    /// A valid handshake followed by random requests (biased towards the right magic).
    #[test]
    fn fuzz_requests(reqs in proptest::collection::vec((any::<u16>(), 0u16..10, any::<u64>(), any::<u32>(), any::<bool>()), 0..20),
                     tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let export = Mem(vec![7u8; 65536]);
        let mut input = valid_prefix();
        for (flags, kind, off, len, small) in reqs {
            let (off, len) = if small { (off % 70000, len % 70000) } else { (off, len) };
            input.extend_from_slice(&encode_request(&Request { flags, kind, cookie: 1, offset: off, length: len }));
            if kind == CMD_WRITE && len < 70000 {
                input.extend(std::iter::repeat_n(0u8, len as usize));
            }
        }
        input.extend_from_slice(&tail);
        let mut out = Vec::new();
        let mut s = salvor::serve::session::Session::new(&input[..], &mut out, &export, "m");
        let _ = s.run();
    }
}

#[test]
fn exported_qcow2_vhd_vhdx_vmdk_are_served() {
    require_tool("nbdcopy", "libnbd-bin");
    let dir = tempfile::tempdir().unwrap();
    let (_raw, img, data) = make_image(dir.path());
    for ext in ["qcow2", "vhd", "vhdx", "vmdk"] {
        let out = dir.path().join(format!("disk.{ext}"));
        let r = run(salvor().arg("export").arg(&img).arg(&out));
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let sock = dir.path().join(format!("{ext}.sock"));
        let s = Server::start(&out, &sock, &[]);
        let copy = dir.path().join(format!("copy-{ext}.raw"));
        tool(Command::new("nbdcopy").arg(&s.uri).arg(&copy));
        let got = std::fs::read(&copy).unwrap();
        // VHD, VHDX and VMDK sizes are whole sectors; this disk is.
        assert!(got == data, "{ext}: served data differs");
        let map = nbd_map(&s.uri);
        let c = 4 * MIB as u64;
        assert!(
            map.iter()
                .any(|&(o, l, t)| t == 3 && o <= c && o + l >= 2 * c),
            "{ext}: {map:?}"
        );
    }
}

#[test]
fn image_of_a_rescue_fails_unrescued_reads_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("rescued.img");
    let data = write_pattern(&copy, 6, 4 * MIB);
    let map = dir.path().join("rescued.map");
    write_test_map(&map, data.len() as u64, &[(8192, 8192 + 1024)]);
    let img = dir.path().join("rescued.img.zst");
    let out = run(salvor()
        .arg("image")
        .arg(&copy)
        .arg(&img)
        .arg("--mapfile")
        .arg(&map));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // By default the image's zeros are served.
    let s = Server::start(&img, &dir.path().join("a.sock"), &[]);
    let mut c = Client::handshake(s.connect(), true);
    let (d, e) = c.read(8192, 1024);
    assert_eq!(e, None);
    assert!(d.iter().all(|&b| b == 0));
    drop(s);
    let s = Server::start(&img, &dir.path().join("b.sock"), &["--fail-unrescued"]);
    let mut c = Client::handshake(s.connect(), true);
    let (d, e) = c.read(4096, 8192);
    assert_eq!(e, Some((EIO, Some(8192))));
    assert!(d == data[4096..8192]);
    let (d, e) = c.read(8192 + 1024, 1024);
    assert_eq!(e, None);
    assert!(d == data[9216..10240]);
}

#[test]
fn stalled_handshakes_time_out_idle_sessions_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_raw, img, data) = make_image(dir.path());
    let sock = dir.path().join("nbd.sock");
    let s = Server::start(&img, &sock, &["--handshake-timeout", "1"]);
    let mut idle = Client::handshake(s.connect(), true);
    // Connects and never answers the greeting.
    let mut stalled = Client { s: s.connect() };
    let mut g = [0u8; 18];
    stalled.s.read_exact(&mut g).unwrap();
    let t0 = std::time::Instant::now();
    assert!(stalled.closed());
    assert!(t0.elapsed() < std::time::Duration::from_secs(8));
    // A session past its handshake may sit idle longer than that.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (d, e) = idle.read(0, 4096);
    assert_eq!(e, None);
    assert!(d == data[..4096]);
}

/// A boot sector that writes a line to COM1 and halts (real-mode x86, hand-assembled):
/// `xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8; l: lodsb; test al,al; jz h; out dx,al;
/// jmp l; h: hlt; jmp h; msg: db "...",0`.
fn boot_disk(path: &Path) -> Vec<u8> {
    let mut d = vec![0u8; 8 * MIB];
    let code = [
        0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0x15, 0x7C, 0xBA, 0xF8, 0x03, 0xAC, 0x84, 0xC0, 0x74, 0x03,
        0xEE, 0xEB, 0xF8, 0xF4, 0xEB, 0xFD,
    ];
    d[..code.len()].copy_from_slice(&code);
    let msg = b"SALVOR-NBD-BOOT\r\n\0";
    d[code.len()..code.len() + msg.len()].copy_from_slice(msg);
    d[510] = 0x55;
    d[511] = 0xAA;
    // Some data further on, so the image is not all zeros.
    d[4 * MIB..5 * MIB].copy_from_slice(&pattern(8, MIB));
    std::fs::write(path, &d).unwrap();
    d
}

#[test]
fn qemu_boots_from_the_served_image() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("boot.raw");
    boot_disk(&raw);
    let img = dir.path().join("boot.img.zst");
    let out = run(salvor().arg("image").arg(&raw).arg(&img));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = dir.path().join("nbd.sock");
    let s = Server::start(&img, &sock, &[]);
    let serial = dir.path().join("serial.txt");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "64",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio,readonly=on", s.uri))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut qemu);
    let t0 = std::time::Instant::now();
    let mut seen = String::new();
    while t0.elapsed() < std::time::Duration::from_secs(60) {
        seen = std::fs::read_to_string(&serial).unwrap_or_default();
        if seen.contains("SALVOR-NBD-BOOT") {
            break;
        }
        if let Ok(Some(st)) = guard.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = guard.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("qemu exited early with {st}: {err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(seen.contains("SALVOR-NBD-BOOT"), "serial console: {seen:?}");
}

/// `salvor mount` in the foreground; unmounted (and waited for) when dropped.
struct Mounted {
    child: Child,
    dir: PathBuf,
}

impl Mounted {
    fn start(image: &Path, dir: &Path, extra: &[&str]) -> Mounted {
        let mut child = salvor()
            .arg("mount")
            .arg(image)
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start salvor mount");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        if line.trim().is_empty() {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("salvor mount did not mount: {err}");
        }
        Mounted {
            child,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = salvor().arg("umount").arg(&self.dir).status();
        let _ = self.child.wait();
    }
}

#[test]
fn mount_ext4_whole_disk_and_partition_through_fuse() {
    require_tool("mkfs.ext4", "e2fsprogs");
    require_tool("fusermount3", "fuse3");
    require_tool("sfdisk", "fdisk");
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("hello.txt"), b"hello from the image\n").unwrap();
    let blob = pattern(11, 300_000);
    std::fs::write(files.join("sub/blob"), &blob).unwrap();
    let fs = dir.path().join("fs.raw");
    tool(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&files)
            .arg(&fs)
            .arg("16M"),
    );
    // The same filesystem in partition 1 of a partitioned disk.
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(24 * MIB as u64)
        .unwrap();
    let mut sf = Command::new("sfdisk")
        .arg("-q")
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=32768, type=83\n")
        .unwrap();
    assert!(sf.wait().unwrap().success());
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.write_all_at(&std::fs::read(&fs).unwrap(), MIB as u64)
            .unwrap();
    }
    for (input, extra) in [(&fs, &[][..]), (&disk, &["--partition", "1"][..])] {
        let img = dir.path().join("x.img.zst");
        let _ = std::fs::remove_file(&img);
        let out = run(salvor().arg("image").arg(input).arg(&img));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = std::fs::read(&img).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        {
            let m = Mounted::start(&img, &mnt, extra);
            assert_eq!(
                std::fs::read(mnt.join("hello.txt")).unwrap(),
                b"hello from the image\n"
            );
            assert!(std::fs::read(mnt.join("sub/blob")).unwrap() == blob);
            // Read-only all the way down.
            assert!(std::fs::write(mnt.join("new"), b"x").is_err());
            drop(m);
        }
        assert!(!mnt.join("hello.txt").exists(), "still mounted");
        assert!(std::fs::read(&img).unwrap() == before, "the image changed");
    }
}
