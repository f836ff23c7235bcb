//! The mapfile's text form: parsing what GNU ddrescue 1.27–1.30 accepts and writing its layout.
//!
//! The grammar (see the ddrescue manual, "Mapfile structure"):
//!
//! - `#` at the start of a line or after whitespace starts a comment that runs to the end of the
//!   line; blank lines and leading whitespace are ignored; `\r` counts as whitespace, so CRLF files
//!   read fine.
//! - The first data line is the status line `current_pos status [current_pass]`.
//! - Every further data line is a block `pos size status`, and the blocks must be contiguous.
//! - Numbers are C integer constants (`0x` hex, leading `0` octal, else decimal), read the way
//!   `sscanf("%lli")` reads them, with 1.30's `_` digit separators also accepted. Like `sscanf`,
//!   anything after the last field of a line is ignored.
//!
//! salvor additionally ends each file it writes with an end-marker comment giving the block count,
//! so that a file cut short by a crash or a full disk is refused instead of silently resuming from
//! a partial map. Files from ddrescue have no such marker and are read exactly as ddrescue does.

use super::{Block, BlockStatus, Mapfile, Phase};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The comment lines ddrescue writes at the top of a mapfile.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Who wrote the file, e.g. "salvor version 0.1.0" (the line reads "Created by {tool}").
    pub tool: String,
    pub command_line: String,
    /// Local time "YYYY-MM-DD HH:MM:SS" (see [`format_local_time`]); the time lines are omitted
    /// when this is empty, as ddrescuelog does.
    pub start_time: String,
    pub current_time: String,
    /// The status message line ("Copying non-tried blocks... Pass 1 (forwards)", "Finished");
    /// omitted when empty.
    pub status_message: String,
    /// Identity of the source ("size=… model=… serial=…"), written as a `# Source:` comment so
    /// a later run can tell a mapfile of another disk; omitted when empty.
    pub source: String,
}

impl Header {
    /// A header naming this salvor version as the writer.
    pub fn salvor(command_line: &str) -> Header {
        Header {
            tool: format!("salvor version {}", env!("CARGO_PKG_VERSION")),
            command_line: command_line.to_string(),
            ..Default::default()
        }
    }
}

/// The first line of every mapfile salvor writes starts with this; such files must end with the
/// end marker.
const SALVOR_SIGNATURE: &str = "# Mapfile. Created by salvor";
const END_MARKER: &str = "# end of salvor mapfile: ";
const SOURCE_PREFIX: &str = "# Source: ";

/// The `# Source:` comment of a mapfile salvor wrote (its source's identity), if any.
pub fn source_of(text: &str) -> Option<&str> {
    text.lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .find_map(|l| l.strip_prefix(SOURCE_PREFIX))
        .map(str::trim)
}

/// ddrescue reads lines into a 127-byte buffer and ignores the rest; mimicking it keeps both tools
/// agreeing on odd hand-edited files.
const MAX_LINE: usize = 127;

/// Parses a mapfile's text. `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Mapfile> {
    parse_bytes(text.as_bytes(), path)
}

/// Parses a mapfile given as bytes (comments, e.g. a command line naming a file, need not be
/// UTF-8). `path` is only used in error messages.
pub fn parse_bytes(text: &[u8], path: &Path) -> Result<Mapfile> {
    check_end_marker(text, path)?;
    let mut lines = data_lines(text);
    let Some((n, line)) = lines.next() else {
        // ddrescue treats a file without a status line as an empty map.
        return Ok(Mapfile::new(0));
    };
    let (current_pos, phase, pass) = parse_status_line(n, line, path)?;
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_end: Option<u64> = None;
    for (n, line) in lines {
        let b = parse_block_line(n, line, path)?;
        if let Some(end) = last_end {
            if b.pos != end {
                return Err(Error::corrupt(
                    path,
                    format!("line {n}"),
                    format!(
                        "blocks are not contiguous: block at 0x{:X} should start at 0x{:X}, \
                         where the previous one ends",
                        b.pos, end
                    ),
                ));
            }
        }
        last_end = Some(b.end());
        blocks.push(b);
    }
    let mut map = Mapfile::from_blocks(blocks).map_err(|e| Error::corrupt(path, "blocks", e))?;
    map.current_pos = current_pos;
    map.phase = phase;
    map.pass = pass;
    Ok(map)
}

/// Reads and parses a mapfile; Ok(None) if it does not exist.
pub fn parse_file(path: &Path) -> Result<Option<Mapfile>> {
    match std::fs::read(path) {
        Ok(t) => parse_bytes(&t, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Parses a domain mapfile loosely, like ddrescue's `-L`: blocks may come in any order, leave gaps
/// and overlap blocks of the same status (overlapping blocks of different statuses are an error,
/// as in ddrescue). Returns the finished (`+`) areas as sorted, merged `(pos, end)` ranges.
pub fn parse_domain(text: &str, path: &Path) -> Result<Vec<(u64, u64)>> {
    parse_domain_bytes(text.as_bytes(), path)
}

/// [`parse_domain`] on bytes.
pub fn parse_domain_bytes(text: &[u8], path: &Path) -> Result<Vec<(u64, u64)>> {
    check_end_marker(text, path)?;
    let mut lines = data_lines(text);
    let Some((n, line)) = lines.next() else {
        return Ok(Vec::new());
    };
    parse_status_line(n, line, path)?;
    let areas = loose_areas(lines, path)?;
    let mut finished: Vec<(u64, u64)> = Vec::new();
    for (&s, &(e, st)) in &areas {
        if st != BlockStatus::Finished {
            continue;
        }
        match finished.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => finished.push((s, e)),
        }
    }
    Ok(finished)
}

/// Parses a mapfile loosely (ddrescue's `-L`): blocks in any order, with gaps (filled with
/// non-tried) and overlaps of blocks of the same status.
pub fn parse_loose_bytes(text: &[u8], path: &Path) -> Result<Mapfile> {
    check_end_marker(text, path)?;
    let mut lines = data_lines(text);
    let Some((n, line)) = lines.next() else {
        return Ok(Mapfile::new(0));
    };
    let (current_pos, phase, pass) = parse_status_line(n, line, path)?;
    let areas = loose_areas(lines, path)?;
    let mut blocks = Vec::with_capacity(areas.len() * 2);
    let mut end = 0;
    for (&s, &(e, status)) in &areas {
        if s > end {
            blocks.push(Block {
                pos: end,
                size: s - end,
                status: BlockStatus::NonTried,
            });
        }
        blocks.push(Block {
            pos: s,
            size: e - s,
            status,
        });
        end = e;
    }
    let mut map = Mapfile::from_blocks(blocks).map_err(|e| Error::corrupt(path, "blocks", e))?;
    map.current_pos = current_pos;
    map.phase = phase;
    map.pass = pass;
    Ok(map)
}

/// The finished areas of a domain (`-m`) mapfile as sorted `(pos, end)` ranges. Without `loose`
/// the file must be a valid mapfile (contiguous, ordered blocks), as ddrescue requires unless
/// `-L` is given; with it, see [`parse_loose_bytes`].
pub fn parse_domain_checked(text: &[u8], path: &Path, loose: bool) -> Result<Vec<(u64, u64)>> {
    let map = if loose {
        parse_loose_bytes(text, path)?
    } else {
        parse_bytes(text, path)?
    };
    Ok(map.finished_ranges())
}

/// The block lines of a loose mapfile, merged: start -> (end, status), non-overlapping.
fn loose_areas<'a>(
    lines: impl Iterator<Item = (usize, &'a [u8])>,
    path: &Path,
) -> Result<BTreeMap<u64, (u64, BlockStatus)>> {
    let mut areas: BTreeMap<u64, (u64, BlockStatus)> = BTreeMap::new();
    for (n, line) in lines {
        let b = parse_block_line(n, line, path)?;
        if b.size == 0 {
            continue;
        }
        let (mut start, mut end) = (b.pos, b.end());
        let mut overlapping = Vec::new();
        // Areas are disjoint and sorted, so their ends are sorted too: walk back from the last
        // area starting before `end` until one ends at or before `pos`.
        for (&s, &(e, st)) in areas.range(..b.end()).rev() {
            if e <= b.pos {
                break;
            }
            if st != b.status {
                return Err(Error::corrupt(
                    path,
                    format!("line {n}"),
                    format!(
                        "blocks of different status overlap: 0x{:X}+0x{:X} '{}' and \
                         0x{:X}+0x{:X} '{}'",
                        b.pos,
                        b.size,
                        b.status.as_char(),
                        s,
                        e - s,
                        st.as_char()
                    ),
                ));
            }
            overlapping.push(s);
            start = start.min(s);
            end = end.max(e);
        }
        for s in overlapping {
            areas.remove(&s);
        }
        areas.insert(start, (end, b.status));
    }
    Ok(areas)
}

/// Reads and parses a domain mapfile (see [`parse_domain`]); a missing file is an error.
pub fn parse_domain_file(path: &Path) -> Result<Vec<(u64, u64)>> {
    let t = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_domain_bytes(&t, path)
}

/// Renders the map in ddrescue's exact layout, followed by salvor's end-marker comment.
pub fn render(map: &Mapfile, header: &Header) -> String {
    use std::fmt::Write;
    // Header fields are free text: a line break in one would turn the rest into data lines.
    fn one_line(s: &str) -> String {
        s.replace(['\n', '\r'], " ")
    }
    let mut s = String::with_capacity(400 + 32 * map.blocks().len());
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = writeln!(s, "# Mapfile. Created by {}", one_line(&header.tool));
    if !header.command_line.is_empty() {
        let _ = writeln!(s, "# Command line: {}", one_line(&header.command_line));
    }
    if !header.start_time.is_empty() {
        let _ = writeln!(s, "# Start time:   {}", one_line(&header.start_time));
        let _ = writeln!(s, "# Current time: {}", one_line(&header.current_time));
    }
    if !header.source.is_empty() {
        let _ = writeln!(s, "{SOURCE_PREFIX}{}", one_line(&header.source));
    }
    if !header.status_message.is_empty() {
        let _ = writeln!(s, "# {}", one_line(&header.status_message));
    }
    s.push_str("# current_pos  current_status  current_pass\n");
    let _ = writeln!(
        s,
        "0x{:08X}     {}               {}",
        map.current_pos,
        map.phase.as_char(),
        map.pass
    );
    s.push_str("#      pos        size  status\n");
    for b in map.blocks() {
        let _ = writeln!(
            s,
            "0x{:08X}  0x{:08X}  {}",
            b.pos,
            b.size,
            b.status.as_char()
        );
    }
    let _ = writeln!(s, "{}", end_marker(map.blocks().len()));
    s
}

fn end_marker(blocks: usize) -> String {
    let noun = if blocks == 1 { "block" } else { "blocks" };
    format!("{END_MARKER}{blocks} {noun}")
}

/// Formats a time as local time "YYYY-MM-DD HH:MM:SS", as ddrescue writes it in the header
/// (UTC if the local time zone cannot be determined).
// libc marks musl's `time_t` deprecated (its width changed on 32-bit musl); on x86_64 it is i64
// either way, and localtime_r takes exactly that type.
#[allow(deprecated)]
pub fn format_local_time(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    // time_t may be 32 bits on some targets.
    let Some(tt) = libc::time_t::try_from(secs).ok() else {
        return format_utc(secs);
    };
    // SAFETY: `tm` is a plain C struct for which all-zero bytes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned values; localtime_r is the thread-safe
    // variant and writes only to `tm`.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        return format_utc(secs);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// "YYYY-MM-DD HH:MM:SS" in UTC for seconds since the epoch (proleptic Gregorian calendar).
fn format_utc(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = crate::units::civil_utc(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The lines that carry data, as `(1-based line number, content)`: blank and comment lines are
/// skipped, leading whitespace and trailing comments removed.
fn data_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, raw)| {
            let start = raw.iter().position(|&b| !is_space(b))?;
            let line = &raw[start..];
            if line[0] == b'#' {
                return None;
            }
            // ddrescue's C string ends at a NUL byte; a '#' only starts a comment after whitespace.
            let end = (0..line.len())
                .find(|&k| line[k] == 0 || (k > 0 && line[k] == b'#' && is_space(line[k - 1])))
                .unwrap_or(line.len());
            Some((i + 1, &line[..end.min(MAX_LINE)]))
        })
}

/// Whether a salvor-written file is complete. Checked before parsing, so that a cut-off file is
/// reported as truncated rather than as a bad line.
fn check_end_marker(text: &[u8], path: &Path) -> Result<()> {
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let signed = first_line.starts_with(SALVOR_SIGNATURE.as_bytes())
        // A file cut inside its first line.
        || (!text.contains(&b'\n') && !text.is_empty()
            && SALVOR_SIGNATURE.as_bytes().starts_with(text));
    if !signed {
        return Ok(());
    }
    let truncated = |n: usize, what: &str| {
        Error::corrupt(
            path,
            format!("line {n}"),
            format!(
                "mapfile is truncated ({what}); it was probably cut short by a crash or a full \
                 disk: use {}.bak, the previous save",
                path.display()
            ),
        )
    };
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let Some((last_idx, last)) = lines
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| l.iter().any(|&b| !is_space(b)))
    else {
        return Err(truncated(1, "no end marker"));
    };
    let n = last_idx + 1;
    let last = trim_space(last);
    let found = data_lines(text).count().saturating_sub(1);
    if last == end_marker(found).as_bytes() {
        return Ok(());
    }
    if last.starts_with(END_MARKER.as_bytes()) {
        let said = String::from_utf8_lossy(&last[END_MARKER.len()..]).into_owned();
        return Err(truncated(
            n,
            &format!(
                "the end marker says {said} but there are {found} block lines; if you edited \
                 the file, correct the count"
            ),
        ));
    }
    Err(truncated(n, "no end marker"))
}

fn trim_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn show_char(c: u8) -> String {
    char::from(c).escape_default().to_string()
}

fn parse_status_line(n: usize, line: &[u8], path: &Path) -> Result<(u64, Phase, u32)> {
    let bad = |reason: String| Error::corrupt(path, format!("line {n}"), reason);
    let mut sc = Scanner { s: line, i: 0 };
    let (Some(pos), Some(c)) = (sc.integer(), sc.char()) else {
        return Err(bad(
            "bad or missing status line: expected 'current_pos current_status [current_pass]'"
                .into(),
        ));
    };
    if pos < 0 {
        return Err(bad(format!("status line: current_pos {pos} is negative")));
    }
    let phase = Phase::from_char(char::from(c)).ok_or_else(|| {
        bad(format!(
            "status line: '{}' is not a status (one of ? * / - F G +)",
            show_char(c)
        ))
    })?;
    // Like sscanf, a third field that is not a number leaves the default pass.
    let pass = match sc.decimal() {
        None => 1,
        Some(p) if p >= 1 => u32::try_from(p).unwrap_or(u32::MAX),
        Some(p) => {
            return Err(bad(format!(
                "status line: current_pass {p} is not a positive integer"
            )))
        }
    };
    Ok((pos.unsigned_abs(), phase, pass))
}

fn parse_block_line(n: usize, line: &[u8], path: &Path) -> Result<Block> {
    let bad = |reason: String| Error::corrupt(path, format!("line {n}"), reason);
    let mut sc = Scanner { s: line, i: 0 };
    let (Some(pos), Some(size), Some(c)) = (sc.integer(), sc.integer(), sc.char()) else {
        return Err(bad("bad block line: expected 'pos size status'".to_string()));
    };
    if pos < 0 {
        return Err(bad(format!("block position {pos} is negative")));
    }
    let status = BlockStatus::from_char(char::from(c)).ok_or_else(|| {
        bad(format!(
            "'{}' is not a block status (one of ? * / - +)",
            show_char(c)
        ))
    })?;
    if size < 0 {
        return Err(bad(format!("block size {size} is negative")));
    }
    if size == 0 && pos != 0 {
        return Err(bad(format!("empty block at position 0x{pos:X}")));
    }
    // ddrescue caps a block at the largest position it can represent instead of refusing it.
    let size = size.min(i64::MAX - pos);
    Ok(Block {
        pos: pos.unsigned_abs(),
        size: size.unsigned_abs(),
        status,
    })
}

/// Reads fields the way glibc's `sscanf` does for `%lli`, ` %c` and `%d`. Each method returns
/// None when its conversion fails, and then so do all later ones (sscanf stops at the first
/// failure).
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    fn skip_space(&mut self) {
        while self.peek_at(0).is_some_and(is_space) {
            self.i += 1;
        }
    }

    fn fail(&mut self) -> Option<i64> {
        self.i = self.s.len();
        None
    }

    /// An optional sign.
    fn sign(&mut self) -> bool {
        match self.peek_at(0) {
            Some(b'-') => {
                self.i += 1;
                true
            }
            Some(b'+') => {
                self.i += 1;
                false
            }
            _ => false,
        }
    }

    /// A C integer constant like `strtoll(s, 0)`, saturating at the i64 range.
    fn integer(&mut self) -> Option<i64> {
        self.skip_space();
        let negative = self.sign();
        let radix: u32 = match (self.peek_at(0), self.peek_at(1)) {
            (Some(b'0'), Some(b'x' | b'X')) => {
                self.i += 2;
                if !self.peek_at(0).is_some_and(|b| b.is_ascii_hexdigit()) {
                    // glibc reads a bare "0x" as 0 (it cannot push back two characters).
                    return Some(0);
                }
                16
            }
            (Some(b'0'), _) => 8,
            (Some(b'1'..=b'9'), _) => 10,
            _ => return self.fail(),
        };
        let digit = |b: u8| char::from(b).to_digit(radix);
        let digits_start = self.i;
        let mut magnitude: u64 = 0;
        while let Some(b) = self.peek_at(0) {
            let d = if b == b'_' {
                // ddrescue 1.30 allows `_` between two digits.
                let between = self.i > digits_start
                    && self.peek_at(1).and_then(digit).is_some()
                    && digit(self.s[self.i - 1]).is_some();
                if !between {
                    break;
                }
                self.i += 1;
                continue;
            } else {
                match digit(b) {
                    Some(d) => d,
                    None => break,
                }
            };
            magnitude = magnitude
                .checked_mul(u64::from(radix))
                .and_then(|m| m.checked_add(u64::from(d)))
                .unwrap_or(u64::MAX);
            self.i += 1;
        }
        let v = i64::try_from(magnitude).unwrap_or(i64::MAX);
        Some(if negative { -v } else { v })
    }

    /// One non-whitespace character.
    fn char(&mut self) -> Option<u8> {
        self.skip_space();
        let c = self.peek_at(0)?;
        self.i += 1;
        Some(c)
    }

    /// A decimal integer like `%d`, saturating at the i32 range.
    fn decimal(&mut self) -> Option<i64> {
        self.skip_space();
        let negative = self.sign();
        if !self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            return self.fail();
        }
        let mut v: i64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek_at(0) {
            v = (v * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX) + 1);
            self.i += 1;
        }
        Some(if negative {
            (-v).max(i64::from(i32::MIN))
        } else {
            v.min(i64::from(i32::MAX))
        })
    }
}

#[cfg(test)]
mod tests;
