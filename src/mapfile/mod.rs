//! The GNU ddrescue mapfile: the record of which parts of a source have been rescued.
//!
//! This module is the only place that knows the mapfile: the in-memory model ([`Mapfile`], a sorted
//! list of contiguous, non-overlapping [`Block`]s), its text form ([`text`]: parse exactly what
//! ddrescue 1.27–1.30 accepts, write ddrescue's exact layout) and how it is saved ([`save`]:
//! atomically, keeping `MAPFILE.bak`).

pub mod save;
pub mod text;

pub mod lock;
pub use lock::MapfileLock;
pub use save::{companion_paths, resolve_symlink as resolve_symlinks, MapfileSaver};
pub use text::{
    format_local_time, parse, parse_bytes, parse_domain, parse_domain_file, parse_file, render,
    Header,
};

use serde::Serialize;

/// The state of one block of the source, as in ddrescue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum BlockStatus {
    /// `?` never read.
    NonTried,
    /// `*` a large read failed here; edges not yet trimmed.
    NonTrimmed,
    /// `/` failed once; to be read sector by sector.
    NonScraped,
    /// `-` read sector by sector and failed.
    BadSector,
    /// `+` rescued.
    Finished,
}

impl BlockStatus {
    pub const ALL: [BlockStatus; 5] = [
        BlockStatus::NonTried,
        BlockStatus::NonTrimmed,
        BlockStatus::NonScraped,
        BlockStatus::BadSector,
        BlockStatus::Finished,
    ];

    pub fn as_char(self) -> char {
        match self {
            BlockStatus::NonTried => '?',
            BlockStatus::NonTrimmed => '*',
            BlockStatus::NonScraped => '/',
            BlockStatus::BadSector => '-',
            BlockStatus::Finished => '+',
        }
    }

    pub fn from_char(c: char) -> Option<BlockStatus> {
        Some(match c {
            '?' => BlockStatus::NonTried,
            '*' => BlockStatus::NonTrimmed,
            '/' => BlockStatus::NonScraped,
            '-' => BlockStatus::BadSector,
            '+' => BlockStatus::Finished,
            _ => return None,
        })
    }

    /// ddrescuelog's name for the status.
    pub fn name(self) -> &'static str {
        match self {
            BlockStatus::NonTried => "non-tried",
            BlockStatus::NonTrimmed => "non-trimmed",
            BlockStatus::NonScraped => "non-scraped",
            BlockStatus::BadSector => "bad-sector",
            BlockStatus::Finished => "rescued",
        }
    }
}

/// What the run was doing when the mapfile was written (the status line's character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// `?`
    Copying,
    /// `*`
    Trimming,
    /// `/`
    Scraping,
    /// `-`
    Retrying,
    /// `F`
    Filling,
    /// `G`
    Generating,
    /// `+`
    Finished,
}

impl Phase {
    pub fn as_char(self) -> char {
        match self {
            Phase::Copying => '?',
            Phase::Trimming => '*',
            Phase::Scraping => '/',
            Phase::Retrying => '-',
            Phase::Filling => 'F',
            Phase::Generating => 'G',
            Phase::Finished => '+',
        }
    }

    pub fn from_char(c: char) -> Option<Phase> {
        Some(match c {
            '?' => Phase::Copying,
            '*' => Phase::Trimming,
            '/' => Phase::Scraping,
            '-' => Phase::Retrying,
            'F' => Phase::Filling,
            'G' => Phase::Generating,
            '+' => Phase::Finished,
            _ => return None,
        })
    }

    /// The words ddrescue shows for the phase.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Copying => "Copying non-tried blocks",
            Phase::Trimming => "Trimming non-trimmed blocks",
            Phase::Scraping => "Scraping non-scraped blocks",
            Phase::Retrying => "Retrying bad sectors",
            Phase::Filling => "Filling specified blocks",
            Phase::Generating => "Generating approximate mapfile",
            Phase::Finished => "Finished",
        }
    }
}

/// A run of bytes `[pos, pos + size)` with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Block {
    pub pos: u64,
    pub size: u64,
    pub status: BlockStatus,
}

impl Block {
    pub fn end(&self) -> u64 {
        self.pos + self.size
    }
}

/// Bytes and areas per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub non_tried: u64,
    pub non_trimmed: u64,
    pub non_scraped: u64,
    pub bad_sector: u64,
    pub finished: u64,
    pub non_tried_areas: u64,
    pub non_trimmed_areas: u64,
    pub non_scraped_areas: u64,
    pub bad_areas: u64,
    pub finished_areas: u64,
}

impl Totals {
    pub fn bytes(&self, s: BlockStatus) -> u64 {
        match s {
            BlockStatus::NonTried => self.non_tried,
            BlockStatus::NonTrimmed => self.non_trimmed,
            BlockStatus::NonScraped => self.non_scraped,
            BlockStatus::BadSector => self.bad_sector,
            BlockStatus::Finished => self.finished,
        }
    }

    pub fn areas(&self, s: BlockStatus) -> u64 {
        match s {
            BlockStatus::NonTried => self.non_tried_areas,
            BlockStatus::NonTrimmed => self.non_trimmed_areas,
            BlockStatus::NonScraped => self.non_scraped_areas,
            BlockStatus::BadSector => self.bad_areas,
            BlockStatus::Finished => self.finished_areas,
        }
    }

    fn add(&mut self, b: &Block) {
        let (bytes, areas) = match b.status {
            BlockStatus::NonTried => (&mut self.non_tried, &mut self.non_tried_areas),
            BlockStatus::NonTrimmed => (&mut self.non_trimmed, &mut self.non_trimmed_areas),
            BlockStatus::NonScraped => (&mut self.non_scraped, &mut self.non_scraped_areas),
            BlockStatus::BadSector => (&mut self.bad_sector, &mut self.bad_areas),
            BlockStatus::Finished => (&mut self.finished, &mut self.finished_areas),
        };
        *bytes += b.size;
        *areas += 1;
    }

    pub fn total(&self) -> u64 {
        self.non_tried + self.non_trimmed + self.non_scraped + self.bad_sector + self.finished
    }

    /// Bytes still to be tried in some phase (everything neither finished nor bad).
    pub fn pending(&self) -> u64 {
        self.non_tried + self.non_trimmed + self.non_scraped
    }
}

/// The whole map: status line plus blocks.
///
/// Invariants (checked by [`Mapfile::check`], kept by every method): blocks are sorted, contiguous
/// (each starts where the previous ends), non-empty, and adjacent blocks have different statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapfile {
    pub current_pos: u64,
    pub phase: Phase,
    pub pass: u32,
    blocks: Vec<Block>,
}

impl Mapfile {
    /// A fresh map: all of `[0, size)` non-tried.
    pub fn new(size: u64) -> Mapfile {
        let mut m = Mapfile {
            current_pos: 0,
            phase: Phase::Copying,
            pass: 1,
            blocks: Vec::new(),
        };
        if size > 0 {
            m.blocks.push(Block {
                pos: 0,
                size,
                status: BlockStatus::NonTried,
            });
        }
        m
    }

    /// Builds a map from blocks that must be contiguous; a first block may start above 0 (the gap
    /// becomes non-tried, as ddrescue does). Adjacent equal statuses are merged.
    pub fn from_blocks(blocks: Vec<Block>) -> std::result::Result<Mapfile, String> {
        let mut m = Mapfile::new(0);
        let mut expected = 0u64;
        for b in blocks {
            if b.size == 0 {
                continue;
            }
            if b.pos < expected {
                return Err(format!(
                    "block at 0x{:X} overlaps the previous one (which ends at 0x{:X})",
                    b.pos, expected
                ));
            }
            if b.pos > expected {
                if m.blocks.is_empty() {
                    m.push_merge(Block {
                        pos: 0,
                        size: b.pos,
                        status: BlockStatus::NonTried,
                    });
                } else {
                    return Err(format!(
                        "gap between 0x{:X} and 0x{:X}: blocks must be contiguous",
                        expected, b.pos
                    ));
                }
            }
            b.pos
                .checked_add(b.size)
                .ok_or_else(|| format!("block at 0x{:X} extends past 2^64", b.pos))?;
            m.push_merge(b);
            expected = b.end();
        }
        Ok(m)
    }

    fn push_merge(&mut self, b: Block) {
        if let Some(last) = self.blocks.last_mut() {
            if last.status == b.status && last.end() == b.pos {
                last.size += b.size;
                return;
            }
        }
        self.blocks.push(b);
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// End of the last block (the size the map covers).
    pub fn end(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.end())
    }

    /// Index of the block containing `pos`.
    pub fn index_of(&self, pos: u64) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.end() <= pos);
        (i < self.blocks.len() && self.blocks[i].pos <= pos).then_some(i)
    }

    pub fn status_at(&self, pos: u64) -> Option<BlockStatus> {
        self.index_of(pos).map(|i| self.blocks[i].status)
    }

    /// Appends non-tried space up to `size` (ddrescue extends the map to the input size).
    pub fn extend_to(&mut self, size: u64) {
        let end = self.end();
        if size > end {
            self.push_merge(Block {
                pos: end,
                size: size - end,
                status: BlockStatus::NonTried,
            });
        }
    }

    /// Drops everything at and past `size`.
    pub fn truncate(&mut self, size: u64) {
        self.blocks.retain(|b| b.pos < size);
        if let Some(last) = self.blocks.last_mut() {
            if last.end() > size {
                last.size = size - last.pos;
            }
        }
    }

    /// Sets `[pos, pos + size)` to `status`. The range must lie inside the map; the part outside is
    /// ignored.
    pub fn set(&mut self, pos: u64, size: u64, status: BlockStatus) {
        let end = pos.saturating_add(size).min(self.end());
        if pos >= end {
            return;
        }
        let Some(first) = self.index_of(pos) else {
            return;
        };
        let last = self.index_of(end - 1).unwrap_or(self.blocks.len() - 1);
        // Fast path: the whole range is inside one block that already has this status.
        if first == last && self.blocks[first].status == status {
            return;
        }
        let head = self.blocks[first];
        let tail = self.blocks[last];
        let mut replacement: Vec<Block> = Vec::with_capacity(3);
        if head.pos < pos {
            replacement.push(Block {
                pos: head.pos,
                size: pos - head.pos,
                status: head.status,
            });
        }
        replacement.push(Block {
            pos,
            size: end - pos,
            status,
        });
        if tail.end() > end {
            replacement.push(Block {
                pos: end,
                size: tail.end() - end,
                status: tail.status,
            });
        }
        // Merge with neighbours of equal status.
        let mut lo = first;
        let mut hi = last + 1;
        if lo > 0 && self.blocks[lo - 1].status == replacement[0].status {
            lo -= 1;
            replacement[0].size += replacement[0].pos - self.blocks[lo].pos;
            replacement[0].pos = self.blocks[lo].pos;
        }
        if hi < self.blocks.len() {
            let next = self.blocks[hi];
            if let Some(r) = replacement.last_mut() {
                if r.status == next.status {
                    r.size += next.size;
                    hi += 1;
                }
            }
        }
        // Merge inside the replacement (e.g. head kept its status equal to the new one).
        let mut merged: Vec<Block> = Vec::with_capacity(replacement.len());
        for b in replacement {
            match merged.last_mut() {
                Some(m) if m.status == b.status => m.size += b.size,
                _ => merged.push(b),
            }
        }
        self.blocks.splice(lo..hi, merged);
    }

    /// Joins non-finished sub-sector fragments, as ddrescue does when it loads a mapfile in rescue
    /// mode: inside every sector that holds more than one block, all non-finished parts get the
    /// least processed status among them (`?` before `*` before `/` before `-`), so that a later
    /// whole-sector read cannot discard a fragment's state. Finished parts are kept.
    pub fn join_subsectors(&mut self, sector: u64) {
        if sector <= 1 {
            return;
        }
        let mut sectors: Vec<u64> = self
            .blocks
            .iter()
            .skip(1)
            .filter(|b| b.pos % sector != 0)
            .map(|b| b.pos / sector)
            .collect();
        sectors.dedup();
        for k in sectors {
            let lo = k * sector;
            let hi = lo.saturating_add(sector).min(self.end());
            let Some(first) = self.index_of(lo) else {
                continue;
            };
            let pieces: Vec<(u64, u64, BlockStatus)> = self.blocks[first..]
                .iter()
                .take_while(|b| b.pos < hi)
                .filter(|b| b.status != BlockStatus::Finished)
                .map(|b| (b.pos.max(lo), b.end().min(hi), b.status))
                .collect();
            let Some(least) = pieces.iter().map(|p| p.2).min() else {
                continue;
            };
            for (a, b, st) in pieces {
                if st != least {
                    self.set(a, b - a, least);
                }
            }
        }
    }

    /// The finished areas as sorted `(pos, end)` ranges.
    pub fn finished_ranges(&self) -> Vec<(u64, u64)> {
        self.blocks
            .iter()
            .filter(|b| b.status == BlockStatus::Finished)
            .map(|b| (b.pos, b.end()))
            .collect()
    }

    /// Totals per status over the whole map.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for b in &self.blocks {
            t.add(b);
        }
        t
    }

    /// Totals restricted to a domain (sorted, non-overlapping ranges).
    pub fn totals_in(&self, domain: &[(u64, u64)]) -> Totals {
        let mut t = Totals::default();
        for &(dpos, dend) in domain {
            let Some(mut i) = self.index_of(dpos) else {
                continue;
            };
            while i < self.blocks.len() && self.blocks[i].pos < dend {
                let b = self.blocks[i];
                let s = b.pos.max(dpos);
                let e = b.end().min(dend);
                t.add(&Block {
                    pos: s,
                    size: e - s,
                    status: b.status,
                });
                i += 1;
            }
        }
        t
    }

    /// Checks the invariants; returns a description of the first violation.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut expected = 0;
        let mut prev: Option<BlockStatus> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.size == 0 {
                return Err(format!("block {i} is empty"));
            }
            if b.pos != expected {
                return Err(format!("block {i} starts at {} not {}", b.pos, expected));
            }
            if prev == Some(b.status) {
                return Err(format!("block {i} has the same status as its predecessor"));
            }
            prev = Some(b.status);
            expected = b.end();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_splits_and_merges() {
        let mut m = Mapfile::new(100);
        m.set(10, 10, BlockStatus::Finished);
        m.set(20, 10, BlockStatus::Finished);
        assert_eq!(m.blocks().len(), 3);
        assert_eq!(
            m.blocks()[1],
            Block {
                pos: 10,
                size: 20,
                status: BlockStatus::Finished
            }
        );
        m.set(0, 10, BlockStatus::Finished);
        m.set(30, 70, BlockStatus::Finished);
        assert_eq!(m.blocks().len(), 1);
        m.set(50, 1, BlockStatus::BadSector);
        assert_eq!(m.blocks().len(), 3);
        m.check().unwrap();
        assert_eq!(m.totals().bad_sector, 1);
    }

    fn map_of(blocks: &[(u64, u64, char)]) -> Mapfile {
        Mapfile::from_blocks(
            blocks
                .iter()
                .map(|&(pos, size, c)| Block {
                    pos,
                    size,
                    status: BlockStatus::from_char(c).unwrap(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn subsector_fragments_are_joined_like_ddrescue() {
        // What GNU ddrescue 1.27 makes of this map when it loads it (sector 512).
        let mut m = map_of(&[
            (0, 0x100, '+'),
            (0x100, 0x80, '-'),
            (0x180, 0x80, '?'),
            (0x200, 0x100, '?'),
            (0x300, 0x100, '/'),
            (0x400, 0x100, '*'),
            (0x500, 0x80, '-'),
            (0x580, 0x80, '+'),
            (0x600, 0x200, '-'),
        ]);
        m.join_subsectors(512);
        assert_eq!(
            m,
            map_of(&[
                (0, 0x100, '+'),
                (0x100, 0x300, '?'),
                (0x400, 0x180, '*'),
                (0x580, 0x80, '+'),
                (0x600, 0x200, '-'),
            ])
        );
    }
}
