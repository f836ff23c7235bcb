//! The one way a rescue job is set up, shared by the CLI and the TUI: open the source read-only,
//! run the refusal policy over every path the job reads and writes, take the mapfile's lock,
//! refuse a destination or mapfile another process is writing, load the mapfile and check it
//! belongs to this source, open the destination. Nothing is written before all of that passed.

use super::RescueOptions;
use crate::device::{FileDest, FileSource, Identity, OpenOptions, Source, TestModeSource};
use crate::error::{Error, Result};
use crate::mapfile::{self, Mapfile, MapfileLock, MapfileSaver};
use crate::safety::{Plan, Role};
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub source: PathBuf,
    pub dest: PathBuf,
    /// None: no mapfile (ddrescue's optional operand); the run cannot be resumed.
    pub mapfile: Option<PathBuf>,
    /// O_DIRECT reads of the source.
    pub direct: bool,
    /// Sector size override (0: the source's).
    pub sector_size: u32,
    /// A block device destination was confirmed (`-f`, or the typed name in the TUI).
    pub force_device: bool,
    /// Other files read: a domain mapfile, a test-mode mapfile.
    pub extra_reads: Vec<PathBuf>,
    /// ddrescue's test mode (`-H`): reads of blocks not finished in this mapfile fail.
    pub test_mode: Option<PathBuf>,
    /// Logs the job writes (`--log-reads`, ...).
    pub logs: Vec<PathBuf>,
    /// Recorded in the mapfile's header.
    pub command_line: String,
    /// ddrescue's `--same-file`: the destination may be the source file itself.
    pub same_file: bool,
    /// ddrescue's `-L`: the test-mode mapfile may be unordered and have gaps.
    pub loose_test_map: bool,
    /// The test-mode mapfile's text when it comes from standard input (`-H -`).
    pub test_map_text: Option<Vec<u8>>,
}

impl JobSpec {
    /// A spec with the given paths and every other field at its default.
    pub fn new(source: PathBuf, dest: PathBuf, mapfile: Option<PathBuf>) -> JobSpec {
        JobSpec {
            source,
            dest,
            mapfile,
            direct: false,
            sector_size: 0,
            force_device: false,
            extra_reads: Vec::new(),
            test_mode: None,
            logs: Vec::new(),
            command_line: String::new(),
            same_file: false,
            loose_test_map: false,
            test_map_text: None,
        }
    }
}

/// A job that passed every check, ready for [`super::rescue`].
pub struct Prepared {
    pub source: Box<dyn Source>,
    pub dest: FileDest,
    pub map: Mapfile,
    /// None when the job has no mapfile.
    pub saver: Option<MapfileSaver>,
    /// Held until the job ends.
    pub lock: Option<MapfileLock>,
    /// Whether the mapfile existed (and was loaded).
    pub map_loaded: bool,
    /// The source's identity as recorded in the mapfile.
    pub identity: String,
}

/// Bytes of the destination a rescue with `opts` of a `size`-byte source writes, from 0.
pub fn needed_size(opts: &RescueOptions, size: u64) -> u64 {
    let ipos = opts.input_pos;
    let end = opts
        .max_size
        .map_or(size, |s| ipos.saturating_add(s).min(size));
    let opos = opts.output_pos.unwrap_or(ipos);
    (i128::from(end) - i128::from(ipos) + i128::from(opos)).max(0) as u64
}

/// Sets the job up (see the module documentation). An empty rescue domain is an error here; see
/// [`prepare_or_nothing`].
pub fn prepare(spec: &JobSpec, opts: &RescueOptions) -> Result<Prepared> {
    prepare_or_nothing(spec, opts)?
        .ok_or_else(|| Error::LimitReached("nothing to rescue: the rescue domain is empty".into()))
}

/// [`prepare`], with `Ok(None)` when the rescue domain is empty: then, as in ddrescue, neither
/// the destination nor the mapfile is created.
pub fn prepare_or_nothing(spec: &JobSpec, opts: &RescueOptions) -> Result<Option<Prepared>> {
    let file_source = FileSource::open(
        &spec.source,
        OpenOptions {
            direct: spec.direct,
            sector_size: spec.sector_size,
        },
    )?;
    let identity = describe_identity(file_source.identity());
    let size = file_source.geometry().size;
    plan(spec, needed_size(opts, size)).check()?;
    let lock = spec
        .mapfile
        .as_deref()
        .map(MapfileLock::acquire)
        .transpose()?;
    let mut others = vec![(&spec.dest, "destination")];
    if let Some(m) = &spec.mapfile {
        others.push((m, "mapfile"));
    }
    for (path, what) in others {
        if let Some((pid, name)) = crate::safety::other_writer(path) {
            return Err(Error::refused(
                path,
                format!(
                    "the {what} is open for writing in process {pid} ({name}); is another rescue \
                     running on it?"
                ),
            ));
        }
    }
    let sizes_may_differ = opts.complete_only || spec.test_mode.is_some();
    let (map, map_loaded, recorded) = match &spec.mapfile {
        // With -C the mapfile, not the source, sets the extent (a partial copy or a device
        // reporting a wrong size), and in test mode the size is simulated: a different size is
        // expected there. Serial numbers and WWNs are still compared.
        Some(m) => load_mapfile(m, &identity, size, sizes_may_differ)?,
        None => (Mapfile::new(size), false, None),
    };
    let source: Box<dyn Source> = match &spec.test_mode {
        None => Box::new(file_source),
        Some(p) => {
            let bytes = match &spec.test_map_text {
                Some(t) => t.clone(),
                None => std::fs::read(p).map_err(|e| Error::io(p, e))?,
            };
            let test_map = if spec.loose_test_map {
                mapfile::text::parse_loose_bytes(&bytes, p)?
            } else {
                mapfile::parse_bytes(&bytes, p)?
            };
            Box::new(TestModeSource::new(file_source, test_map))
        }
    };
    if let Some(m) = &spec.mapfile {
        crate::rescue::prepare::check_map_fits(
            opts,
            &map,
            source.geometry().size,
            &source.describe(),
            m,
        )?;
    }
    let apparent = source.geometry().size;
    if opts.input_pos > 0 && opts.input_pos >= apparent && !opts.complete_only {
        // As ddrescue: starting past the end of the input is an error, not an empty domain.
        return Err(Error::invalid_arg(
            "--input-position",
            format!(
                "can't start reading at {}: {} is only {apparent} bytes long",
                opts.input_pos,
                source.describe()
            ),
        ));
    }
    if crate::rescue::prepare::domain_is_empty(opts, &map, apparent) {
        return Ok(None);
    }
    let dest = FileDest::open(&spec.dest, spec.force_device, true)?;
    let mut header = mapfile::Header::salvor(&spec.command_line);
    // A run that may differ in size keeps the identity of the disk the mapfile was made for: a
    // later plain run on that disk must still be accepted, one on another disk refused.
    header.source = match recorded {
        Some(r) if sizes_may_differ => r,
        _ => identity.clone(),
    };
    Ok(Some(Prepared {
        source,
        dest,
        map,
        saver: spec
            .mapfile
            .as_deref()
            .map(|m| MapfileSaver::with_header(m, header)),
        lock,
        map_loaded,
        identity,
    }))
}

/// Every path the job reads and writes, for the refusal policy.
pub fn plan(spec: &JobSpec, needed: u64) -> Plan {
    let mut plan = Plan::new();
    plan = if spec.same_file {
        plan.read_same_as_destination(&spec.source)
    } else {
        plan.read(&spec.source)
    };
    plan = plan
        .destination(&spec.dest, needed)
        .device_confirmed(spec.force_device);
    if let Some(m) = &spec.mapfile {
        plan = plan.mapfile(m);
    }
    // "-" is standard input.
    for r in spec.extra_reads.iter().chain(&spec.test_mode) {
        if r.as_os_str() != "-" {
            plan = plan.read(r);
        }
    }
    for l in &spec.logs {
        plan = plan.write(Role::Log, l);
    }
    plan
}

/// The mapfile at `path` (a new one if it does not exist), refused if it records another disk;
/// and whether it existed.
fn load_mapfile(
    path: &Path,
    identity: &str,
    size: u64,
    sizes_may_differ: bool,
) -> Result<(Mapfile, bool, Option<String>)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if let Some(recorded) = mapfile::text::source_of(&text) {
                let why = identity_mismatch(recorded, identity)
                    .filter(|&why| !(sizes_may_differ && why == SIZE_DIFFERS));
                if let Some(why) = why {
                    return Err(Error::refused(
                        path,
                        format!(
                            "this mapfile belongs to another disk ({why}: it was made for \
                             '{recorded}', the source is '{identity}'); use the right mapfile or \
                             a new one"
                        ),
                    ));
                }
            }
            let recorded = mapfile::text::source_of(&text).map(str::to_string);
            Ok((mapfile::parse_bytes(&bytes, path)?, true, recorded))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Mapfile::new(size), false, None)),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// What an existing mapfile holds, for a user deciding whether to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapfileSummary {
    /// The disk it was made for, as recorded by salvor (`None` for GNU ddrescue's mapfiles).
    pub source: Option<String>,
    pub totals: mapfile::Totals,
    pub size: u64,
}

/// Reads the mapfile at `path`; `Ok(None)` when there is none.
pub fn summarize_mapfile(path: &Path) -> Result<Option<MapfileSummary>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let source = mapfile::text::source_of(&text).map(str::to_string);
    let map = mapfile::parse_bytes(&bytes, path)?;
    Ok(Some(MapfileSummary {
        source,
        totals: map.totals(),
        size: map.end(),
    }))
}

/// Why the mapfile at `path` cannot be resumed on a source with `identity`, if it cannot.
pub fn mapfile_mismatch(summary: &MapfileSummary, identity: &str) -> Option<String> {
    let recorded = summary.source.as_deref()?;
    identity_mismatch(recorded, identity).map(|why| format!("{why}: it was made for {recorded}"))
}

/// "size=… model=… serial=… wwn=…" with the fields that are known.
pub fn describe_identity(id: &Identity) -> String {
    let mut parts = vec![format!("size={}", id.size)];
    for (k, v) in [
        ("model", &id.model),
        ("serial", &id.serial),
        ("wwn", &id.wwn),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", v.replace(char::is_whitespace, "_")));
        }
    }
    parts.join(" ")
}

const SIZE_DIFFERS: &str = "size differs";

/// Why a recorded identity is not this source's, if it is not. Only facts both sides know count.
pub fn identity_mismatch(recorded: &str, current: &str) -> Option<&'static str> {
    let field = |text: &str, key: &str| -> Option<String> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    for (key, why) in [
        ("serial", "serial number differs"),
        ("wwn", "WWN differs"),
        ("size", SIZE_DIFFERS),
    ] {
        if let (Some(a), Some(b)) = (field(recorded, key), field(current, key)) {
            if a != b {
                return Some(why);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(
            identity_mismatch("size=10 serial=A", "size=10 serial=A model=x"),
            None
        );
        assert_eq!(
            identity_mismatch("size=10 serial=A", "size=10 serial=B"),
            Some("serial number differs")
        );
        assert_eq!(
            identity_mismatch("size=10", "size=12 serial=B"),
            Some("size differs")
        );
        assert_eq!(identity_mismatch("size=10", "size=10 serial=B"), None);
    }
}
