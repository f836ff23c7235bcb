//! Reading a disk (or a rescued copy of one) chunk by chunk for imaging and cloning.

use super::format::Hole;
use crate::device::{ReadFault, Source};
use crate::error::{Error, Result};
use crate::mapfile::{Block, BlockStatus, Mapfile};
use std::path::{Path, PathBuf};

/// Which bytes of the source hold data. Without a mapfile everything does; with one, only the
/// finished blocks, and the rest is imaged as zeros.
#[derive(Debug, Clone, Default)]
pub struct Readable {
    /// Sorted, non-overlapping `[start, end)` ranges; None = the whole source.
    pub ranges: Option<Vec<(u64, u64)>>,
    pub holes: Vec<Hole>,
}

impl Readable {
    pub fn all() -> Readable {
        Readable::default()
    }

    /// From a rescue map: finished blocks are data, everything else (non-tried, non-trimmed,
    /// non-scraped, bad) is a hole.
    pub fn from_map(map: &Mapfile, size: u64) -> Readable {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut holes: Vec<Hole> = Vec::new();
        for b in map.blocks() {
            let (s, e) = (b.pos.min(size), b.end().min(size));
            if s >= e {
                continue;
            }
            if b.status == BlockStatus::Finished {
                ranges.push((s, e));
            } else if let Some(h) = holes.last_mut().filter(|h| h.offset + h.size == s) {
                h.size += e - s;
            } else {
                holes.push(Hole { offset: s, size: e - s });
            }
        }
        if map.end() < size {
            holes.push(Hole {
                offset: map.end(),
                size: size - map.end(),
            });
        }
        Readable {
            ranges: Some(ranges),
            holes,
        }
    }
}

/// Loads a GNU ddrescue mapfile. Uses the mapfile module's parser; while that is still a stub in
/// this tree, falls back to reading just the block lines (the returned error stays the module's).
pub fn load_mapfile(path: &Path) -> Result<Mapfile> {
    match crate::mapfile::parse_file(path) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "mapfile not found"),
        )),
        Err(e) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            parse_block_lines(&text).map_err(|_| e)
        }
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The minimal part of the mapfile syntax: skip comments and the status line, read
/// `POS SIZE STATUS` lines.
fn parse_block_lines(text: &str) -> std::result::Result<Mapfile, String> {
    let mut blocks = Vec::new();
    let mut seen_status = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_status {
            seen_status = true;
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [pos, size, st] = f[..] else {
            return Err(format!("bad line '{line}'"));
        };
        let status = st
            .chars()
            .next()
            .filter(|_| st.len() == 1)
            .and_then(BlockStatus::from_char)
            .ok_or_else(|| format!("bad status '{st}'"))?;
        blocks.push(Block {
            pos: parse_num(pos).ok_or("bad position")?,
            size: parse_num(size).ok_or("bad size")?,
            status,
        });
    }
    if blocks.is_empty() {
        return Err("no blocks".into());
    }
    Mapfile::from_blocks(blocks)
}

/// Reads `buf.len()` bytes at `pos`. A read error stops imaging: bad sectors are the rescue
/// engine's job, which knows how to retry, skip and record them.
pub fn read_chunk(
    src: &mut dyn Source,
    name: &Path,
    pos: u64,
    buf: &mut [u8],
    readable: &Readable,
) -> Result<()> {
    match &readable.ranges {
        None => read_range(src, name, pos, buf, false),
        Some(ranges) => {
            buf.fill(0);
            let end = pos + buf.len() as u64;
            let first = ranges.partition_point(|r| r.1 <= pos);
            for &(s, e) in ranges[first..].iter().take_while(|r| r.0 < end) {
                let (s, e) = (s.max(pos), e.min(end));
                let slice = &mut buf[(s - pos) as usize..(e - pos) as usize];
                read_range(src, name, s, slice, true)?;
            }
            Ok(())
        }
    }
}

fn read_range(
    src: &mut dyn Source,
    name: &Path,
    pos: u64,
    buf: &mut [u8],
    rescued: bool,
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = pos + done as u64;
        let out = src.read_at(at, &mut buf[done..]);
        done += out.good;
        let fault_at = pos + done as u64;
        match out.fault {
            None if out.good == 0 => {
                return Err(Error::io(
                    name,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "source ends at offset {fault_at}, before its expected size{}",
                            if rescued { " (the mapfile marks data beyond the end of the rescued copy)" } else { "" }
                        ),
                    ),
                ))
            }
            None => {}
            Some(ReadFault::Gone(e)) => {
                return Err(Error::DeviceGone {
                    path: name.to_path_buf(),
                    reason: e.to_string(),
                })
            }
            Some(ReadFault::Media(e)) => return Err(read_error(name, fault_at, e, rescued)),
            Some(ReadFault::Other(e)) => return Err(Error::io(name, e)),
        }
    }
    Ok(())
}

fn read_error(name: &Path, pos: u64, e: std::io::Error, rescued: bool) -> Error {
    let advice = if rescued {
        "the mapfile marks this area as rescued, but it does not read".to_string()
    } else {
        format!(
            "the disk has unreadable sectors. Rescue it first: `salvor rescue {} RESCUED.img RESCUED.map`, \
             then image the copy: `salvor image RESCUED.img OUTPUT --mapfile RESCUED.map`",
            name.display()
        )
    };
    Error::io(
        PathBuf::from(name),
        std::io::Error::new(e.kind(), format!("read error at offset {pos} ({e}); {advice}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lines() {
        let t = "# Mapfile\n# x\n0x00001000     +               1\n0x00000000  0x00001000  +\n0x00001000  0x00000200  -\n0x00001200  0x00000E00  ?\n0x00002000  0x00002000  +\n";
        let m = parse_block_lines(t).unwrap();
        let r = Readable::from_map(&m, 0x5000);
        assert_eq!(r.ranges.as_deref(), Some(&[(0, 0x1000), (0x2000, 0x4000)][..]));
        assert_eq!(
            r.holes,
            vec![
                Hole { offset: 0x1000, size: 0x1000 },
                Hole { offset: 0x4000, size: 0x1000 }
            ]
        );
    }
}
