//! Getting a loaded map ready for a run, as ddrescue does before it reads anything: checked
//! against the source's size (or, with `-C`, taken as the limit), sub-sector fragments joined,
//! the rescue domain computed, and `-A`/`-M` applied inside it.

use super::RescueOptions;
use crate::error::{Error, Result};
use crate::mapfile::{Block, BlockStatus, Mapfile};
use std::path::Path;

/// How far a run may read: the source's size, or with `-C` the mapfile's extent.
fn extent(opts: &RescueOptions, map: &Mapfile, size: u64) -> u64 {
    if opts.complete_only {
        if size > 0 {
            map.end().min(size)
        } else {
            map.end()
        }
    } else {
        size
    }
}

/// The rescue domain inside `[0, extent)`: `-i`/`-s` intersected with `-m`.
fn domain_of(opts: &RescueOptions, extent: u64) -> Vec<(u64, u64)> {
    let mut domain = vec![(
        opts.input_pos.min(extent),
        opts.max_size
            .map_or(extent, |s| opts.input_pos.saturating_add(s).min(extent)),
    )];
    if let Some(d) = &opts.domain {
        domain = super::engine::intersect(&domain, d);
    }
    domain.retain(|&(a, b)| a < b);
    domain
}

/// Whether a run with `opts` on a source of `size` bytes and this map would have nothing to
/// read or write (then ddrescue creates no files).
pub(crate) fn domain_is_empty(opts: &RescueOptions, map: &Mapfile, size: u64) -> bool {
    domain_of(opts, extent(opts, map, size)).is_empty()
}

/// Refuses a map that records tried data past the end of the source (the mapfile of another
/// disk), unless `-C` makes the mapfile's extent the limit.
pub(crate) fn check_map_fits(
    opts: &RescueOptions,
    map: &Mapfile,
    size: u64,
    describe: &str,
    mapfile: &Path,
) -> Result<()> {
    if opts.complete_only {
        return Ok(());
    }
    let past_end = map
        .blocks()
        .iter()
        .find(|b| b.end() > size && b.status != BlockStatus::NonTried);
    if let Some(b) = past_end {
        return Err(Error::refused(
            mapfile,
            format!(
                "it records {} data up to 0x{:X}, past the end of {describe} (size 0x{size:X}): \
                 is this the mapfile of another disk? (-C/--complete-only uses the mapfile's \
                 extent as the limit)",
                b.status.name(),
                b.end(),
            ),
        ));
    }
    Ok(())
}

/// Prepares `map` for a rescue of a source of `size` bytes and returns the rescue domain (sorted,
/// disjoint, non-empty byte ranges).
pub(super) fn prepare_map(
    map: &mut Mapfile,
    opts: &RescueOptions,
    size: u64,
    sector: u64,
    describe: &str,
) -> Result<Vec<(u64, u64)>> {
    // -C: nothing beyond the mapfile's extent is read; its blocks past the source's end are kept
    // as they are (they may belong to a bigger original).
    let extent = if opts.complete_only {
        extent(opts, map, size)
    } else {
        check_map_fits(opts, map, size, describe, Path::new("the mapfile"))?;
        map.truncate(size);
        map.extend_to(size);
        size
    };
    map.join_subsectors(sector);
    let domain = domain_of(opts, extent);

    if opts.try_again || opts.retrim {
        for &(a, b) in &domain {
            let blocks: Vec<Block> = map
                .blocks()
                .iter()
                .filter(|x| x.pos < b && x.end() > a)
                .copied()
                .collect();
            for blk in blocks {
                use BlockStatus::*;
                let to = match blk.status {
                    NonTrimmed | NonScraped if opts.try_again => NonTried,
                    BadSector if opts.try_again && opts.retrim => NonTried,
                    NonScraped | BadSector if opts.retrim => NonTrimmed,
                    _ => continue,
                };
                let (s, e) = (blk.pos.max(a), blk.end().min(b));
                map.set(s, e - s, to);
            }
        }
    }
    Ok(domain)
}
