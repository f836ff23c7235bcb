//! Reading a disk (or a rescued copy of one) chunk by chunk for imaging and cloning.

use super::format::Hole;
use crate::device::{ReadFault, Source};
use crate::error::{Error, Result};
use crate::mapfile::{BlockStatus, Mapfile};
use std::path::{Path, PathBuf};

/// Which bytes of the source hold data. Without a mapfile everything does; with one, only the
/// finished blocks, and the rest is imaged as zeros.
#[derive(Debug, Clone, Default)]
pub struct Readable {
    /// Sorted, non-overlapping `[start, end)` ranges; None = the whole source.
    pub ranges: Option<Vec<(u64, u64)>>,
    pub holes: Vec<Hole>,
    /// Sorted, non-overlapping ranges that read as zeros whatever the source holds (not
    /// allocated by their filesystem). Small ones inside `ranges` are read and then zeroed: one
    /// larger read costs less than many small ones.
    pub zero: Vec<(u64, u64)>,
    /// Whether `ranges` come from a rescue mapfile (for the error messages).
    pub from_map: bool,
}

/// Unallocated gaps shorter than this are read along with their neighbours and then zeroed.
const READ_THROUGH_GAP: u64 = 256 << 10;

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
                holes.push(Hole {
                    offset: s,
                    size: e - s,
                });
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
            zero: Vec::new(),
            from_map: true,
        }
    }

    /// Leaves the (sorted, merged) `unallocated` ranges out: they read as zeros.
    pub fn without(mut self, unallocated: Vec<(u64, u64)>, size: u64) -> Readable {
        if unallocated.is_empty() {
            return self;
        }
        let skip: Vec<(u64, u64)> = unallocated
            .iter()
            .copied()
            .filter(|r| r.1 - r.0 >= READ_THROUGH_GAP)
            .collect();
        let base = self.ranges.take().unwrap_or_else(|| vec![(0, size)]);
        self.ranges = Some(super::used::subtract(&base, &skip));
        self.zero = unallocated;
        self
    }
}

/// Loads a GNU ddrescue mapfile (written by salvor rescue or GNU ddrescue).
pub fn load_mapfile(path: &Path) -> Result<Mapfile> {
    crate::mapfile::parse_file(path)?.ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "mapfile not found"),
        )
    })
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
    let end = pos + buf.len() as u64;
    match &readable.ranges {
        None => read_range(src, name, pos, buf, false)?,
        Some(ranges) => {
            buf.fill(0);
            let first = ranges.partition_point(|r| r.1 <= pos);
            for &(s, e) in ranges[first..].iter().take_while(|r| r.0 < end) {
                let (s, e) = (s.max(pos), e.min(end));
                let slice = &mut buf[(s - pos) as usize..(e - pos) as usize];
                read_range(src, name, s, slice, readable.from_map)?;
            }
        }
    }
    let zero = &readable.zero;
    let first = zero.partition_point(|r| r.1 <= pos);
    for &(s, e) in zero[first..].iter().take_while(|r| r.0 < end) {
        let (s, e) = (s.max(pos), e.min(end));
        buf[(s - pos) as usize..(e - pos) as usize].fill(0);
    }
    Ok(())
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
                            if rescued {
                                " (the mapfile marks data beyond the end of the rescued copy)"
                            } else {
                                ""
                            }
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
        std::io::Error::new(
            e.kind(),
            format!("read error at offset {pos} ({e}); {advice}"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lines() {
        let t = "# Mapfile\n# x\n0x00001000     +               1\n0x00000000  0x00001000  +\n0x00001000  0x00000200  -\n0x00001200  0x00000E00  ?\n0x00002000  0x00002000  +\n";
        let m = crate::mapfile::parse(t, Path::new("t")).unwrap();
        let r = Readable::from_map(&m, 0x5000);
        assert_eq!(
            r.ranges.as_deref(),
            Some(&[(0, 0x1000), (0x2000, 0x4000)][..])
        );
        assert_eq!(
            r.holes,
            vec![
                Hole {
                    offset: 0x1000,
                    size: 0x1000
                },
                Hole {
                    offset: 0x4000,
                    size: 0x1000
                }
            ]
        );
    }
}
