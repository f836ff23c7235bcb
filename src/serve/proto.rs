//! The NBD wire protocol on the byte level, with no I/O: constants, parsers for what a client
//! sends (handshake flags, option headers and their data, transmission requests) and encoders for
//! what the server sends. Every parser takes a byte slice and returns a typed value or a typed
//! error, so the whole surface a client can reach is fuzzed directly (see the property tests).
//!
//! Reference: the NBD protocol (`doc/proto.md` of NetworkBlockDevice/nbd), fixed newstyle
//! negotiation with `NBD_OPT_GO`/`NBD_OPT_INFO`, structured replies and `base:allocation`.

/// "NBDMAGIC": the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": newstyle negotiation; also the magic of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_DF: u16 = 1 << 7;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

// Info types (NBD_OPT_INFO / NBD_OPT_GO).
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Commands and command flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

// Structured reply flags and types.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = 0x8001;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = 0x8002;

// base:allocation states.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context salvor serves, and its id.
pub const BASE_ALLOCATION: &str = "base:allocation";
pub const BASE_ALLOCATION_ID: u32 = 1;

// Error numbers on the wire (the protocol fixes them; they match Linux).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// Largest option payload the server accepts; anything longer closes the connection.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Strings (export names, queries) longer than this are invalid (the protocol's limit).
pub const MAX_STRING: usize = 4096;
/// The largest read or write the server accepts (advertised as the maximum block size).
pub const MAX_REQUEST: u32 = 32 << 20;
/// The size of a transmission request header.
pub const REQUEST_SIZE: usize = 28;

/// What is wrong with bytes a client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("bad magic 0x{0:016x}")]
    BadMagic(u64),
    #[error("unknown client flags 0x{0:08x}")]
    BadClientFlags(u32),
    #[error("client does not speak fixed newstyle negotiation")]
    NotFixedNewstyle,
    #[error("option data of {0} bytes is too long")]
    OptionTooLong(u32),
    /// The option is known but its data does not parse: answered with `NBD_REP_ERR_INVALID`.
    #[error("{0}")]
    Invalid(String),
}

/// What the client asked for in its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub no_zeroes: bool,
}

/// The 18 bytes the server opens with.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

pub fn parse_client_flags(b: [u8; 4]) -> Result<ClientFlags, ProtoError> {
    let f = u32::from_be_bytes(b);
    if f & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(ProtoError::BadClientFlags(f));
    }
    if f & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(ProtoError::NotFixedNewstyle);
    }
    Ok(ClientFlags {
        no_zeroes: f & FLAG_C_NO_ZEROES != 0,
    })
}

/// The fixed part of a client option: `IHAVEOPT`, option, data length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub len: u32,
}

pub fn parse_option_header(b: &[u8; 16]) -> Result<OptionHeader, ProtoError> {
    let magic = be64(b, 0);
    if magic != IHAVEOPT {
        return Err(ProtoError::BadMagic(magic));
    }
    let len = be32(b, 12);
    if len > MAX_OPTION_LEN {
        return Err(ProtoError::OptionTooLong(len));
    }
    Ok(OptionHeader {
        option: be32(b, 8),
        len,
    })
}

/// A parsed client option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    ExportName(String),
    Abort,
    List,
    StartTls,
    /// `NBD_OPT_INFO` (`go: false`) or `NBD_OPT_GO`.
    Info {
        go: bool,
        name: String,
        requests: Vec<u16>,
    },
    StructuredReply,
    MetaContext {
        set: bool,
        name: String,
        queries: Vec<String>,
    },
    Unknown(u32),
}

/// Parses an option's data. Errors are syntax errors the server answers with
/// `NBD_REP_ERR_INVALID` (except for `NBD_OPT_EXPORT_NAME`, which cannot fail politely).
pub fn parse_option(option: u32, data: &[u8]) -> Result<ClientOption, ProtoError> {
    let mut r = Cursor { b: data, at: 0 };
    let no_data = |o: ClientOption| {
        if data.is_empty() {
            Ok(o)
        } else {
            Err(ProtoError::Invalid(format!(
                "option {option} takes no data, got {} bytes",
                data.len()
            )))
        }
    };
    match option {
        OPT_EXPORT_NAME => Ok(ClientOption::ExportName(string(data)?)),
        OPT_ABORT => Ok(ClientOption::Abort),
        OPT_LIST => no_data(ClientOption::List),
        OPT_STARTTLS => no_data(ClientOption::StartTls),
        OPT_STRUCTURED_REPLY => no_data(ClientOption::StructuredReply),
        OPT_INFO | OPT_GO => {
            let name = r.string()?;
            let n = r.u16()? as usize;
            let mut requests = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                requests.push(r.u16()?);
            }
            r.end()?;
            Ok(ClientOption::Info {
                go: option == OPT_GO,
                name,
                requests,
            })
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            let name = r.string()?;
            let n = r.u32()? as usize;
            let mut queries = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                queries.push(r.string()?);
            }
            r.end()?;
            Ok(ClientOption::MetaContext {
                set: option == OPT_SET_META_CONTEXT,
                name,
                queries,
            })
        }
        other => Ok(ClientOption::Unknown(other)),
    }
}

fn string(b: &[u8]) -> Result<String, ProtoError> {
    if b.len() > MAX_STRING {
        return Err(ProtoError::Invalid(format!(
            "string of {} bytes is too long",
            b.len()
        )));
    }
    String::from_utf8(b.to_vec())
        .ok()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| ProtoError::Invalid("string is not UTF-8 or contains NUL".into()))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtoError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| ProtoError::Invalid("option data is truncated".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        let s = self.take(4)?;
        Ok(be32(s, 0))
    }
    fn string(&mut self) -> Result<String, ProtoError> {
        let n = self.u32()? as usize;
        string(self.take(n)?)
    }
    fn end(&self) -> Result<(), ProtoError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(ProtoError::Invalid(format!(
                "{} bytes of trailing option data",
                self.b.len() - self.at
            )))
        }
    }
}

/// One option reply: magic, option, reply type, data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// `NBD_REP_SERVER` data for `NBD_OPT_LIST`.
pub fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as u32).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(description.as_bytes());
    b
}

/// `NBD_REP_META_CONTEXT` data.
pub fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b
}

pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(14);
    b.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    for v in [min, preferred, max] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

pub fn info_string(kind: u16, s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + s.len());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(s.as_bytes());
    b
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zero bytes unless `no_zeroes`.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(134);
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.extend_from_slice(&[0u8; 124]);
    }
    b
}

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

pub fn parse_request(b: &[u8; REQUEST_SIZE]) -> Result<Request, ProtoError> {
    let magic = be32(b, 0);
    if magic != REQUEST_MAGIC {
        return Err(ProtoError::BadMagic(u64::from(magic)));
    }
    Ok(Request {
        flags: u16::from_be_bytes([b[4], b[5]]),
        kind: u16::from_be_bytes([b[6], b[7]]),
        cookie: be64(b, 8),
        offset: be64(b, 16),
        length: be32(b, 24),
    })
}

pub fn encode_request(r: &Request) -> [u8; REQUEST_SIZE] {
    let mut b = [0u8; REQUEST_SIZE];
    b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&r.flags.to_be_bytes());
    b[6..8].copy_from_slice(&r.kind.to_be_bytes());
    b[8..16].copy_from_slice(&r.cookie.to_be_bytes());
    b[16..24].copy_from_slice(&r.offset.to_be_bytes());
    b[24..28].copy_from_slice(&r.length.to_be_bytes());
    b
}

pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// The header of one structured reply chunk; `len` bytes of payload follow it.
pub fn structured_header(flags: u16, kind: u16, cookie: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..].copy_from_slice(&len.to_be_bytes());
    b
}

/// A structured error chunk (`NBD_REPLY_TYPE_ERROR`, or `_ERROR_OFFSET` with an offset), final.
pub fn structured_error(cookie: u64, error: u32, message: &str, offset: Option<u64>) -> Vec<u8> {
    let msg = &message.as_bytes()[..message.len().min(MAX_STRING)];
    let mut payload = Vec::with_capacity(14 + msg.len());
    payload.extend_from_slice(&error.to_be_bytes());
    payload.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    payload.extend_from_slice(msg);
    let kind = match offset {
        Some(o) => {
            payload.extend_from_slice(&o.to_be_bytes());
            REPLY_TYPE_ERROR_OFFSET
        }
        None => REPLY_TYPE_ERROR,
    };
    let mut b = structured_header(REPLY_FLAG_DONE, kind, cookie, payload.len() as u32).to_vec();
    b.extend_from_slice(&payload);
    b
}

/// A `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for one context, final.
pub fn block_status_reply(cookie: u64, context: u32, extents: &[(u32, u32)]) -> Vec<u8> {
    let len = 4 + 8 * extents.len();
    let mut b =
        structured_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, len as u32).to_vec();
    b.extend_from_slice(&context.to_be_bytes());
    for (l, f) in extents {
        b.extend_from_slice(&l.to_be_bytes());
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn go_data(name: &str, reqs: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
        for r in reqs {
            d.extend_from_slice(&r.to_be_bytes());
        }
        d
    }

    #[test]
    fn go_round_trip() {
        let o = parse_option(OPT_GO, &go_data("disk", &[INFO_BLOCK_SIZE])).unwrap();
        assert_eq!(
            o,
            ClientOption::Info {
                go: true,
                name: "disk".into(),
                requests: vec![INFO_BLOCK_SIZE]
            }
        );
        let mut d = go_data("", &[]);
        d.push(0);
        assert!(matches!(
            parse_option(OPT_GO, &d),
            Err(ProtoError::Invalid(_))
        ));
        assert!(matches!(
            parse_option(OPT_GO, &d[..3]),
            Err(ProtoError::Invalid(_))
        ));
    }

    #[test]
    fn meta_context() {
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
        d.extend_from_slice(BASE_ALLOCATION.as_bytes());
        assert_eq!(
            parse_option(OPT_SET_META_CONTEXT, &d).unwrap(),
            ClientOption::MetaContext {
                set: true,
                name: String::new(),
                queries: vec![BASE_ALLOCATION.into()]
            }
        );
    }

    #[test]
    fn headers() {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        h[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        h[12..].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            parse_option_header(&h).unwrap(),
            OptionHeader {
                option: OPT_GO,
                len: 7
            }
        );
        h[0] ^= 1;
        assert!(matches!(
            parse_option_header(&h),
            Err(ProtoError::BadMagic(_))
        ));
        assert_eq!(
            parse_client_flags([0, 0, 0, 3]).unwrap(),
            ClientFlags { no_zeroes: true }
        );
        assert!(parse_client_flags([0, 0, 0, 0]).is_err());
        assert!(parse_client_flags([0, 0, 0, 5]).is_err());
        let r = Request {
            flags: CMD_FLAG_DF,
            kind: CMD_READ,
            cookie: 42,
            offset: 1 << 40,
            length: 4096,
        };
        assert_eq!(parse_request(&encode_request(&r)).unwrap(), r);
    }

    proptest! {
        #[test]
        fn option_parser_never_panics(opt in 0u32..16, data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_option(opt, &data);
        }

        #[test]
        fn option_header_never_panics(b in proptest::array::uniform16(any::<u8>())) {
            if let Ok(h) = parse_option_header(&b) {
                prop_assert!(h.len <= MAX_OPTION_LEN);
            }
        }

        #[test]
        fn request_parser(b in proptest::collection::vec(any::<u8>(), REQUEST_SIZE)) {
            let mut a = [0u8; REQUEST_SIZE];
            a.copy_from_slice(&b);
            match parse_request(&a) {
                Ok(r) => prop_assert_eq!(encode_request(&r), a),
                Err(e) => prop_assert!(matches!(e, ProtoError::BadMagic(_))),
            }
        }

        #[test]
        fn go_parses_what_it_encodes(name in "[a-z0-9./]{0,40}", reqs in proptest::collection::vec(0u16..8, 0..5)) {
            let o = parse_option(OPT_GO, &go_data(&name, &reqs)).unwrap();
            prop_assert_eq!(o, ClientOption::Info { go: true, name, requests: reqs });
        }

        /// Truncating valid option data anywhere is a syntax error, never a panic.
        #[test]
        fn truncated_go(name in "[a-z]{0,20}", reqs in proptest::collection::vec(0u16..8, 0..5), cut in 0usize..40) {
            let d = go_data(&name, &reqs);
            let cut = cut.min(d.len());
            if cut < d.len() {
                prop_assert!(parse_option(OPT_GO, &d[..cut]).is_err());
            }
        }
    }
}
