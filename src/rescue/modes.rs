//! GNU ddrescue's other modes: command mode (`--command-mode`: copy parts of the source on
//! demand, commands read from a stream), fill mode (`-F`: write data from the source into the
//! destination's blocks of chosen statuses) and generate mode (`-G`: an approximate mapfile from
//! a partial copy, all-zero sectors counting as not rescued).

use super::engine::{intersect, MapStore};
use super::RescueOptions;
use crate::device::{Dest, Source};
use crate::error::{Error, Result};
use crate::mapfile::{BlockStatus, Mapfile, Phase};
use std::io::{BufRead, Read, Write};

/// Default bytes per read in these modes: ddrescue's 64 KiB.
const DEFAULT_CLUSTER: u64 = 64 << 10;

fn sector_of(opts: &RescueOptions, src_sector: u32) -> u64 {
    if opts.sector_size != 0 {
        u64::from(opts.sector_size)
    } else {
        u64::from(src_sector.max(1))
    }
}

fn cluster_of(opts: &RescueOptions, sector: u64) -> u64 {
    let c = if opts.cluster_bytes != 0 {
        opts.cluster_bytes
    } else {
        DEFAULT_CLUSTER
    };
    c.div_ceil(sector).max(1) * sector
}

fn dest_pos(pos: u64, shift: i128) -> Result<u64> {
    u64::try_from(i128::from(pos) + shift).map_err(|_| {
        Error::invalid_arg("--output-position", "the output position would be negative")
    })
}

fn shift_of(opts: &RescueOptions) -> i128 {
    i128::from(opts.output_pos.unwrap_or(opts.input_pos)) - i128::from(opts.input_pos)
}

/// Saves `map` after syncing `dest`.
fn save(dest: &mut dyn Dest, map: &Mapfile, store: &mut dyn MapStore, msg: &str) -> Result<()> {
    dest.sync()?;
    store.store(map, msg)
}

/// `--command-mode`: reads commands from `input`, one per line, and answers on `output` the way
/// ddrescue does ("done", "error", or "error: MESSAGE" for a fatal error):
///
/// - `c POS SIZE` copies the part of `[POS, POS+SIZE)` inside the rescue domain that is not
///   finished yet;
/// - `s POS SIZE` prints the blocks of the map inside that range, then "done";
/// - `u` saves the mapfile; `f` (also at end of input) saves it and ends; `q` ends without saving.
///
/// The status line stays as it was loaded, as in ddrescue.
///
/// Returns the exit status: 1 if a command failed (bad arguments, unknown command), else 0.
#[allow(clippy::too_many_arguments)]
pub fn command_mode(
    src: &mut dyn Source,
    dest: &mut dyn Dest,
    map: &mut Mapfile,
    store: &mut dyn MapStore,
    opts: &RescueOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<i32> {
    let geo = src.geometry();
    let sector = sector_of(opts, geo.logical_sector);
    let cluster = cluster_of(opts, sector);
    let domain = super::prepare::prepare_map(map, opts, geo.size, sector, &src.describe())?;
    let shift = shift_of(opts);
    let mut buf = vec![0u8; cluster as usize];
    let say = |output: &mut dyn Write, text: &str| -> Result<()> {
        writeln!(output, "{text}")
            .and_then(|_| output.flush())
            .map_err(|e| Error::io("(standard output)", e))
    };
    let mut line = String::new();
    // Like ddrescue, a command that failed makes the exit status 1.
    let mut failed = false;
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| Error::io("(standard input)", e))?;
        // At end of input a partial command is discarded and 'f' is executed.
        let command = if n == 0 || !line.ends_with('\n') {
            "f"
        } else {
            line.trim()
        };
        let Some(letter) = command.chars().next() else {
            continue;
        };
        let rest = command[letter.len_utf8()..].trim();
        // POS SIZE; anything after them is ignored, as ddrescue does.
        let range = || -> Option<(u64, u64)> {
            let mut it = rest.split_whitespace();
            let pos = crate::units::parse_size(it.next()?, sector).ok()?;
            let size = crate::units::parse_size(it.next()?, sector).ok()?;
            Some((pos, pos.saturating_add(size)))
        };
        match letter {
            'c' => {
                let Some((lo, hi)) = range() else {
                    failed = true;
                    say(output, "error")?;
                    continue;
                };
                for (a, b) in intersect(&[(lo, hi)], &domain) {
                    if let Err(e) = copy_range(src, dest, map, a, b, shift, sector, &mut buf) {
                        say(output, &format!("error: {e}"))?;
                        return Err(e);
                    }
                }
                say(output, "done")?;
            }
            's' => {
                let blocks: Vec<_> = match range() {
                    Some((lo, hi)) => map
                        .blocks()
                        .iter()
                        .filter(|b| b.pos < hi && b.end() > lo)
                        .map(|b| (b.pos.max(lo), b.end().min(hi), b.status))
                        .collect(),
                    None => Vec::new(),
                };
                if blocks.is_empty() {
                    failed = true;
                    say(output, "error")?;
                    continue;
                }
                for (a, b, status) in blocks {
                    say(
                        output,
                        &format!("0x{a:08X}  0x{:08X}  {}", b - a, status.as_char()),
                    )?;
                }
                say(output, "done")?;
            }
            'u' if rest.is_empty() => match save(dest, map, store, "Command mode") {
                Ok(()) => say(output, "done")?,
                Err(e) => {
                    failed = true;
                    say(output, &format!("error: {e}"))?
                }
            },
            'f' if rest.is_empty() => {
                save(dest, map, store, "Finished")?;
                say(output, "done")?;
                return Ok(i32::from(failed));
            }
            'q' if rest.is_empty() => {
                dest.sync()?;
                return Ok(i32::from(failed));
            }
            _ => {
                failed = true;
                say(output, &format!("error: unknown command '{command}'"))?;
            }
        }
    }
}

/// Copies the non-finished parts of `[lo, hi)`, cluster by cluster; the failed part of a read is
/// marked bad-sector, as ddrescue's command mode does (it neither trims nor scrapes).
#[allow(clippy::too_many_arguments)]
fn copy_range(
    src: &mut dyn Source,
    dest: &mut dyn Dest,
    map: &mut Mapfile,
    lo: u64,
    hi: u64,
    shift: i128,
    sector: u64,
    buf: &mut [u8],
) -> Result<()> {
    let pending: Vec<(u64, u64)> = map
        .blocks()
        .iter()
        .filter(|b| b.status != BlockStatus::Finished && b.pos < hi && b.end() > lo)
        .map(|b| (b.pos.max(lo), b.end().min(hi)))
        .collect();
    let cluster = buf.len() as u64;
    for (a, b) in pending {
        let mut pos = a;
        while pos < b {
            let len = (cluster - pos % cluster).min(b - pos);
            let out = src.read_at(pos, &mut buf[..len as usize]);
            let mut good = (out.good as u64).min(len);
            if out.fault.is_some() {
                good -= good % sector;
            } else if good < len {
                return Err(Error::io(
                    src.describe(),
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the source ended at 0x{:X}", pos + good),
                    ),
                ));
            }
            if good > 0 {
                dest.write_at(dest_pos(pos, shift)?, &buf[..good as usize])?;
                map.set(pos, good, BlockStatus::Finished);
            }
            match out.fault {
                None => {}
                Some(crate::device::ReadFault::Media(_)) => {
                    map.set(pos + good, len - good, BlockStatus::BadSector);
                }
                Some(crate::device::ReadFault::Gone(e) | crate::device::ReadFault::Other(e)) => {
                    return Err(Error::io(src.describe(), e));
                }
            }
            pos += len;
        }
    }
    Ok(())
}

/// `-F TYPES`: fills the destination's blocks whose status is one of `types` (inside the rescue
/// domain, limited to the mapfile's extent) with data read from `input` at position 0: the data
/// (repeated if it is shorter) fills one cluster-sized buffer, which is written to every cluster
/// of those blocks (with `location`, each sector starts with a line naming its position, sector
/// number and status). The map's blocks are not changed; its status line records the progress.
/// With `ignore_write_errors`, an area whose write fails is filled sector by sector, skipping the
/// sectors that cannot be written.
#[allow(clippy::too_many_arguments)]
pub fn fill(
    input: &mut dyn Read,
    dest: &mut dyn Dest,
    map: &mut Mapfile,
    store: &mut dyn MapStore,
    opts: &RescueOptions,
    types: &[BlockStatus],
    location: bool,
    ignore_write_errors: bool,
) -> Result<u64> {
    let sector = sector_of(opts, 512);
    let cluster = cluster_of(opts, sector) as usize;
    let mut buf = vec![0u8; cluster];
    let mut got = 0;
    while got < cluster {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("the fill data (input file)", e)),
        }
    }
    if got == 0 {
        return Err(Error::invalid_arg(
            "--fill-mode",
            "the input file is empty: there is no data to fill with",
        ));
    }
    for i in got..cluster {
        buf[i] = buf[i % got];
    }
    let extent = map.end();
    let mut domain = vec![(
        opts.input_pos.min(extent),
        opts.max_size
            .map_or(extent, |s| opts.input_pos.saturating_add(s).min(extent)),
    )];
    if let Some(d) = &opts.domain {
        domain = intersect(&domain, d);
    }
    let blocks: Vec<(u64, u64, BlockStatus)> = map
        .blocks()
        .iter()
        .filter(|b| types.contains(&b.status))
        .map(|b| (b.pos, b.end(), b.status))
        .collect();
    let shift = shift_of(opts);
    map.phase = Phase::Filling;
    map.pass = 1;
    let mut filled = 0;
    let mut data = Vec::with_capacity(cluster);
    for (bpos, bend, status) in blocks {
        for (a, b) in intersect(&[(bpos, bend)], &domain) {
            let mut pos = a;
            while pos < b {
                let len = (cluster as u64).min(b - pos);
                map.current_pos = pos;
                data.clear();
                data.extend_from_slice(&buf[..len as usize]);
                if location {
                    write_locations(&mut data, pos, a, sector, status);
                }
                let at = dest_pos(pos, shift)?;
                match dest.write_at(at, &data) {
                    Ok(()) => filled += len,
                    Err(e) if !ignore_write_errors => return Err(e),
                    Err(_) => {
                        // Sector by sector for the rest of this area.
                        let mut p = pos;
                        while p < b {
                            let l = sector.min(b - p);
                            let off = ((p - pos) % cluster as u64) as usize;
                            let mut piece = buf[off..off + l as usize].to_vec();
                            if location {
                                write_locations(&mut piece, p, a, sector, status);
                            }
                            if dest.write_at(dest_pos(p, shift)?, &piece).is_ok() {
                                filled += l;
                            }
                            p += l;
                        }
                        break;
                    }
                }
                pos += len;
            }
        }
    }
    // The status line keeps the position of the last cluster filled, as in ddrescue.
    map.phase = Phase::Finished;
    save(dest, map, store, "Finished")?;
    Ok(filled)
}

/// Fill mode's `l` type: every sector's worth of the area (counted from where the area begins)
/// starts with a line giving its input position, sector number and status, over the fill data, as
/// ddrescue writes it. `data` is what is written at `pos`; `area_start` is where the area begins.
fn write_locations(data: &mut [u8], pos: u64, area_start: u64, sector: u64, status: BlockStatus) {
    let end = pos + data.len() as u64;
    let mut q = area_start + (pos - area_start).div_ceil(sector) * sector;
    while q < end {
        let line = format!(
            "\n# position 0x{q:08X} sector 0x{:08X} status {} ",
            q / sector,
            status.as_char()
        );
        let off = (q - pos) as usize;
        let n = line.len().min((end - q).min(sector) as usize);
        data[off..off + n].copy_from_slice(&line.as_bytes()[..n]);
        q += sector;
    }
}

/// `-G`: marks as finished every sector of the non-tried areas in the rescue domain whose copy in
/// `copy` (at the output position) is not all zeros; the rest stays non-tried. Reads only the
/// partial copy, `copy_len` bytes long; a new map (`fresh`) ends where the copy ends, as
/// ddrescue's does. Returns the bytes marked finished.
pub fn generate(
    copy: &mut dyn FnMut(u64, &mut [u8]) -> Result<usize>,
    copy_len: u64,
    map: &mut Mapfile,
    fresh: bool,
    opts: &RescueOptions,
    size: u64,
    sector: u64,
) -> Result<u64> {
    let shift = shift_of(opts);
    let copy_end = u64::try_from((i128::from(copy_len) - shift).max(0)).unwrap_or(u64::MAX);
    let extent = if fresh { size.min(copy_end) } else { size };
    map.truncate(extent);
    map.extend_to(extent);
    let mut domain = vec![(
        opts.input_pos.min(extent),
        opts.max_size
            .map_or(extent, |s| opts.input_pos.saturating_add(s).min(extent)),
    )];
    if let Some(d) = &opts.domain {
        domain = intersect(&domain, d);
    }
    let areas: Vec<(u64, u64)> = map
        .blocks()
        .iter()
        .filter(|b| b.status == BlockStatus::NonTried)
        .map(|b| (b.pos, b.end()))
        .collect();
    let chunk = cluster_of(opts, sector);
    let mut buf = vec![0u8; chunk as usize];
    let mut found = 0;
    map.phase = Phase::Generating;
    map.current_pos = 0;
    'areas: for (a, b) in intersect(&areas, &domain) {
        let mut pos = a;
        while pos < b {
            // Sector-aligned pieces, so that each sector is judged whole.
            let len = (chunk - pos % chunk).min(b - pos);
            map.current_pos = pos;
            let n = copy(dest_pos(pos, shift)?, &mut buf[..len as usize])? as u64;
            let mut p = 0;
            while p < n {
                let l = (sector - (pos + p) % sector).min(n - p);
                if !crate::device::is_zero(&buf[p as usize..(p + l) as usize]) {
                    map.set(pos + p, l, BlockStatus::Finished);
                    found += l;
                }
                p += l;
            }
            if n < len {
                // The copy ends here.
                continue 'areas;
            }
            pos += len;
        }
    }
    map.phase = Phase::Finished;
    map.pass = 1;
    Ok(found)
}
