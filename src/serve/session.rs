//! One NBD connection: the fixed newstyle handshake, then requests until the client disconnects.
//! Generic over the byte stream (Unix or TCP socket, or an in-memory pipe in tests); all parsing
//! is in [`super::proto`].

use super::backend::{Export, Fault, Piece};
use super::proto::*;
use std::io::{self, Read, Write};

/// Zeros to send zero pieces from.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// `write_all` over several buffers (std's is not stable): the kernel gathers them.
fn write_all_vectored(w: &mut impl Write, mut slices: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Options a client may send before it is cut off.
const MAX_OPTIONS: usize = 1024;

/// How a session ended.
#[derive(Debug)]
pub enum End {
    /// `NBD_CMD_DISC`.
    Disconnect,
    /// `NBD_OPT_ABORT` during the handshake.
    Abort,
    /// The client closed the connection (also in the middle of a request).
    Gone,
    /// The client broke the protocol; the connection was closed.
    Protocol(String),
    /// A socket error.
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Disconnect => write!(f, "client disconnected"),
            End::Abort => write!(f, "client aborted the handshake"),
            End::Gone => write!(f, "client closed the connection"),
            End::Protocol(why) => write!(f, "protocol error: {why}"),
            End::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Counters of one session.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => End::Gone,
            _ => End::Io(e),
        }
    }
}

pub struct Session<'a, R: Read, W: Write> {
    r: R,
    w: W,
    export: &'a dyn Export,
    /// The export's name; the empty name (the default export) is accepted too.
    name: &'a str,
    structured: bool,
    meta: bool,
    buf: Vec<u8>,
    pieces: Vec<Piece>,
    pub stats: Stats,
    /// Called once the handshake is done (the server lifts its handshake timeout there).
    pub on_transmission: Option<Box<dyn FnOnce() + 'a>>,
}

impl<'a, R: Read, W: Write> Session<'a, R, W> {
    pub fn new(r: R, w: W, export: &'a dyn Export, name: &'a str) -> Self {
        Session {
            r,
            w,
            export,
            name,
            structured: false,
            meta: false,
            buf: Vec::new(),
            pieces: Vec::new(),
            stats: Stats::default(),
            on_transmission: None,
        }
    }

    /// Runs the handshake and the transmission phase to the end.
    pub fn run(&mut self) -> End {
        match self.handshake() {
            Ok(true) => {
                if let Some(f) = self.on_transmission.take() {
                    f();
                }
            }
            Ok(false) => return End::Abort,
            Err(e) => return e,
        }
        match self.transmission() {
            Ok(()) => End::Disconnect,
            Err(e) => e,
        }
    }

    /// The transmission phase alone, for the kernel's NBD client attached by ioctl (it starts
    /// there, with simple replies and the flags the ioctls gave it).
    pub fn run_transmission(&mut self) -> End {
        match self.transmission() {
            Ok(()) => End::Disconnect,
            Err(e) => e,
        }
    }

    fn name_ok(&self, n: &str) -> bool {
        n.is_empty() || n == self.name
    }

    fn transmission_flags(&self) -> u16 {
        let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_CAN_MULTI_CONN;
        if self.export.writable() {
            f |= TF_SEND_FUA;
        } else {
            f |= TF_READ_ONLY;
        }
        if self.structured {
            f |= TF_SEND_DF;
        }
        f
    }

    fn reply(&mut self, option: u32, kind: u32, data: &[u8]) -> Result<(), End> {
        self.w.write_all(&option_reply(option, kind, data))?;
        Ok(())
    }

    /// Ok(true): go to transmission; Ok(false): the client aborted.
    fn handshake(&mut self) -> Result<bool, End> {
        self.w.write_all(&greeting())?;
        self.w.flush()?;
        let mut f = [0u8; 4];
        self.r.read_exact(&mut f)?;
        let flags = parse_client_flags(f).map_err(|e| End::Protocol(e.to_string()))?;
        for _ in 0..MAX_OPTIONS {
            let mut h = [0u8; 16];
            self.r.read_exact(&mut h)?;
            let h = parse_option_header(&h).map_err(|e| End::Protocol(e.to_string()))?;
            let mut data = vec![0u8; h.len as usize];
            self.r.read_exact(&mut data)?;
            let opt = h.option;
            let parsed = match parse_option(opt, &data) {
                Ok(o) => o,
                Err(e) if opt == OPT_EXPORT_NAME => return Err(End::Protocol(e.to_string())),
                Err(e) => {
                    self.reply(opt, REP_ERR_INVALID, e.to_string().as_bytes())?;
                    self.w.flush()?;
                    continue;
                }
            };
            match parsed {
                ClientOption::ExportName(n) => {
                    if !self.name_ok(&n) {
                        return Err(End::Protocol(format!("no export named {n:?}")));
                    }
                    let b = export_name_reply(
                        self.export.size(),
                        self.transmission_flags(),
                        flags.no_zeroes,
                    );
                    self.w.write_all(&b)?;
                    self.w.flush()?;
                    return Ok(true);
                }
                ClientOption::Abort => {
                    // The client may already be gone; that is fine.
                    let _ = self.reply(opt, REP_ACK, &[]);
                    let _ = self.w.flush();
                    return Ok(false);
                }
                ClientOption::List => {
                    let d = rep_server(self.name, &self.export.describe());
                    self.reply(opt, REP_SERVER, &d)?;
                    self.reply(opt, REP_ACK, &[])?;
                }
                ClientOption::StartTls => {
                    self.reply(opt, REP_ERR_POLICY, b"TLS is not supported")?;
                }
                ClientOption::Info { go, name, requests } => {
                    if !self.name_ok(&name) {
                        let m = format!("no export named {name:?}");
                        self.reply(opt, REP_ERR_UNKNOWN, m.as_bytes())?;
                    } else {
                        let e = info_export(self.export.size(), self.transmission_flags());
                        self.reply(opt, REP_INFO, &e)?;
                        let b = info_block_size(1, 4096, MAX_REQUEST);
                        self.reply(opt, REP_INFO, &b)?;
                        if requests.contains(&INFO_NAME) {
                            let b = info_string(INFO_NAME, self.name);
                            self.reply(opt, REP_INFO, &b)?;
                        }
                        if requests.contains(&INFO_DESCRIPTION) {
                            let b = info_string(INFO_DESCRIPTION, &self.export.describe());
                            self.reply(opt, REP_INFO, &b)?;
                        }
                        self.reply(opt, REP_ACK, &[])?;
                        if go {
                            self.w.flush()?;
                            return Ok(true);
                        }
                    }
                }
                ClientOption::StructuredReply => {
                    self.structured = true;
                    self.reply(opt, REP_ACK, &[])?;
                }
                ClientOption::MetaContext { set, name, queries } => {
                    if !self.structured {
                        self.reply(
                            opt,
                            REP_ERR_INVALID,
                            b"structured replies must be negotiated first",
                        )?;
                    } else if !self.name_ok(&name) {
                        let m = format!("no export named {name:?}");
                        self.reply(opt, REP_ERR_UNKNOWN, m.as_bytes())?;
                    } else {
                        let matched = if queries.is_empty() {
                            !set
                        } else {
                            queries.iter().any(|q| q == BASE_ALLOCATION || q == "base:")
                        };
                        if matched {
                            let id = if set { BASE_ALLOCATION_ID } else { 0 };
                            let d = rep_meta_context(id, BASE_ALLOCATION);
                            self.reply(opt, REP_META_CONTEXT, &d)?;
                        }
                        if set {
                            self.meta = matched;
                        }
                        self.reply(opt, REP_ACK, &[])?;
                    }
                }
                ClientOption::Unknown(o) => {
                    let m = format!("option {o} is not supported");
                    self.reply(opt, REP_ERR_UNSUP, m.as_bytes())?;
                }
            }
            self.w.flush()?;
        }
        Err(End::Protocol(format!("more than {MAX_OPTIONS} options")))
    }

    fn error(&mut self, req: &Request, errno: u32, msg: &str) -> Result<(), End> {
        self.stats.errors += 1;
        if self.structured {
            self.w
                .write_all(&structured_error(req.cookie, errno, msg, None))?;
        } else {
            self.w.write_all(&simple_reply(errno, req.cookie))?;
        }
        Ok(())
    }

    fn in_range(&self, req: &Request) -> bool {
        req.offset
            .checked_add(u64::from(req.length))
            .is_some_and(|e| e <= self.export.size())
    }

    fn transmission(&mut self) -> Result<(), End> {
        loop {
            let mut h = [0u8; REQUEST_SIZE];
            self.r.read_exact(&mut h)?;
            let req = parse_request(&h).map_err(|e| End::Protocol(e.to_string()))?;
            self.stats.requests += 1;
            match req.kind {
                CMD_READ => self.read(&req)?,
                CMD_WRITE => self.write(&req)?,
                CMD_DISC => {
                    if self.export.writable() {
                        let _ = self.export.flush();
                    }
                    return Ok(());
                }
                CMD_FLUSH => match self.export.flush() {
                    Ok(()) => self.w.write_all(&simple_reply(0, req.cookie))?,
                    Err(f) => self.error(&req, f.errno, &f.message)?,
                },
                CMD_BLOCK_STATUS => self.block_status(&req)?,
                other => {
                    self.error(&req, EINVAL, &format!("command {other} is not supported"))?;
                }
            }
            self.w.flush()?;
        }
    }

    fn read(&mut self, req: &Request) -> Result<(), End> {
        if req.length == 0 || req.length > MAX_REQUEST {
            let m = format!("read of {} bytes", req.length);
            let e = if req.length > MAX_REQUEST {
                EOVERFLOW
            } else {
                EINVAL
            };
            return self.error(req, e, &m);
        }
        if !self.in_range(req) {
            let m = format!(
                "read of {} bytes at {} is beyond the export's {} bytes",
                req.length,
                req.offset,
                self.export.size()
            );
            return self.error(req, EINVAL, &m);
        }
        let len = req.length as usize;
        // A range known to be all zeros is sent as a hole (unless the client asked for data
        // in one piece).
        if self.structured && req.flags & CMD_FLAG_DF == 0 {
            let ext = self.export.extents(req.offset, u64::from(req.length));
            if ext.len() == 1
                && ext[0].len >= u64::from(req.length)
                && ext[0].flags & STATE_ZERO != 0
            {
                let mut p =
                    structured_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, req.cookie, 12)
                        .to_vec();
                p.extend_from_slice(&req.offset.to_be_bytes());
                p.extend_from_slice(&req.length.to_be_bytes());
                self.w.write_all(&p)?;
                self.stats.bytes_read += u64::from(req.length);
                return Ok(());
            }
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        if let Some(result) = self.export.read_shared(req.offset, len, &mut pieces) {
            let out = self.reply_pieces(req, result, &pieces);
            pieces.clear();
            self.pieces = pieces;
            return out;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len, 0);
        let result = self.export.read(req.offset, &mut buf);
        let out = match result {
            Ok(()) => {
                self.stats.bytes_read += len as u64;
                if self.structured {
                    let mut h = structured_header(
                        REPLY_FLAG_DONE,
                        REPLY_TYPE_OFFSET_DATA,
                        req.cookie,
                        req.length + 8,
                    )
                    .to_vec();
                    h.extend_from_slice(&req.offset.to_be_bytes());
                    self.w.write_all(&h).and_then(|_| self.w.write_all(&buf))
                } else {
                    self.w
                        .write_all(&simple_reply(0, req.cookie))
                        .and_then(|_| self.w.write_all(&buf))
                }
            }
            Err(f) => {
                self.stats.errors += 1;
                if self.structured {
                    let good = f.offset.saturating_sub(req.offset).min(len as u64) as usize;
                    let mut r = Ok(());
                    if good > 0 {
                        let mut h = structured_header(
                            0,
                            REPLY_TYPE_OFFSET_DATA,
                            req.cookie,
                            good as u32 + 8,
                        )
                        .to_vec();
                        h.extend_from_slice(&req.offset.to_be_bytes());
                        r = self
                            .w
                            .write_all(&h)
                            .and_then(|_| self.w.write_all(&buf[..good]));
                    }
                    r.and_then(|_| {
                        self.w.write_all(&structured_error(
                            req.cookie,
                            f.errno,
                            &f.message,
                            Some(f.offset),
                        ))
                    })
                } else {
                    // A simple reply with an error carries no data.
                    self.w.write_all(&simple_reply(f.errno, req.cookie))
                }
            }
        };
        self.buf = buf;
        out.map_err(End::from)
    }

    /// A read's reply written from the export's own buffers: header and data in one
    /// `writev`, no copy of the data in between.
    fn reply_pieces(
        &mut self,
        req: &Request,
        result: std::result::Result<(), Fault>,
        pieces: &[Piece],
    ) -> Result<(), End> {
        let len = u64::from(req.length);
        let (good, fault) = match result {
            Ok(()) => (len, None),
            Err(f) => {
                self.stats.errors += 1;
                let good = f.offset.saturating_sub(req.offset).min(len);
                (good, Some(f))
            }
        };
        let mut head = Vec::with_capacity(32);
        if let Some(f) = &fault {
            if !self.structured {
                // A simple reply with an error carries no data.
                self.w.write_all(&simple_reply(f.errno, req.cookie))?;
                return Ok(());
            }
        }
        if self.structured {
            if good > 0 {
                let flags = if fault.is_some() { 0 } else { REPLY_FLAG_DONE };
                head.extend_from_slice(&structured_header(
                    flags,
                    REPLY_TYPE_OFFSET_DATA,
                    req.cookie,
                    good as u32 + 8,
                ));
                head.extend_from_slice(&req.offset.to_be_bytes());
            }
        } else {
            head.extend_from_slice(&simple_reply(0, req.cookie));
        }
        let mut slices = vec![io::IoSlice::new(&head)];
        let mut left = good as usize;
        for p in pieces {
            if left == 0 {
                break;
            }
            let n = p.len.min(left);
            left -= n;
            match p.bytes() {
                Some(b) => slices.push(io::IoSlice::new(&b[..n])),
                None => {
                    let mut z = n;
                    while z > 0 {
                        let m = z.min(ZEROS.len());
                        slices.push(io::IoSlice::new(&ZEROS[..m]));
                        z -= m;
                    }
                }
            }
        }
        if left > 0 {
            return Err(End::Io(io::Error::other(
                "the export returned a short read",
            )));
        }
        write_all_vectored(&mut self.w, &mut slices)?;
        if let Some(f) = fault {
            self.w.write_all(&structured_error(
                req.cookie,
                f.errno,
                &f.message,
                Some(f.offset),
            ))?;
        } else {
            self.stats.bytes_read += len;
        }
        Ok(())
    }

    fn write(&mut self, req: &Request) -> Result<(), End> {
        if req.length > MAX_REQUEST {
            // The payload cannot be skipped safely without trusting the length: hang up.
            return Err(End::Protocol(format!(
                "write of {} bytes is larger than the maximum {MAX_REQUEST}",
                req.length
            )));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(req.length as usize, 0);
        let got = self.r.read_exact(&mut buf);
        let result = match got {
            Err(e) => Err(End::from(e)),
            Ok(()) => {
                if !self.export.writable() {
                    self.error(req, EPERM, "the export is read-only")
                } else if req.length == 0 || !self.in_range(req) {
                    let m = format!(
                        "write of {} bytes at {} is outside the export's {} bytes",
                        req.length,
                        req.offset,
                        self.export.size()
                    );
                    let e = if req.length == 0 { EINVAL } else { ENOSPC };
                    self.error(req, e, &m)
                } else {
                    let mut r = self.export.write(req.offset, &buf);
                    if r.is_ok() && req.flags & CMD_FLAG_FUA != 0 {
                        r = self.export.flush();
                    }
                    match r {
                        Ok(()) => {
                            self.stats.bytes_written += u64::from(req.length);
                            self.w
                                .write_all(&simple_reply(0, req.cookie))
                                .map_err(End::from)
                        }
                        Err(f) => self.error(req, f.errno, &f.message),
                    }
                }
            }
        };
        self.buf = buf;
        result
    }

    fn block_status(&mut self, req: &Request) -> Result<(), End> {
        if !self.structured || !self.meta {
            return self.error(req, EINVAL, "no metadata context was negotiated");
        }
        if req.length == 0 || !self.in_range(req) {
            let m = format!(
                "block status of {} bytes at {} is outside the export's {} bytes",
                req.length,
                req.offset,
                self.export.size()
            );
            return self.error(req, EINVAL, &m);
        }
        let ext = self.export.extents(req.offset, u64::from(req.length));
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(ext.len());
        let mut left = u64::from(req.length);
        for e in ext {
            let mut len = e.len.min(left);
            left -= len;
            while len > 0 {
                let l = len.min(1 << 31) as u32;
                out.push((l, e.flags));
                len -= u64::from(l);
            }
            if left == 0 {
                break;
            }
        }
        if out.is_empty() {
            out.push((req.length, 0));
        }
        if req.flags & CMD_FLAG_REQ_ONE != 0 {
            out.truncate(1);
        }
        self.w
            .write_all(&block_status_reply(req.cookie, BASE_ALLOCATION_ID, &out))?;
        Ok(())
    }
}
