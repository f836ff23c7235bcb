//! The mapfile's text form. STUB: parse/render are being written (see helper brief).

use super::Mapfile;
use crate::error::{Error, Result};
use std::path::Path;

/// The comment lines ddrescue writes at the top of a mapfile.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// e.g. "salvor 0.1.0"
    pub tool: String,
    pub command_line: String,
    pub start_time: String,
    pub current_time: String,
    /// The status message line ("Copying non-tried blocks... Pass 1 (forwards)", "Finished").
    pub status_message: String,
}

/// Parses a mapfile's text. `path` is only used in error messages.
pub fn parse(_text: &str, path: &Path) -> Result<Mapfile> {
    Err(Error::corrupt(
        path,
        "line 1",
        "mapfile parser not implemented yet",
    ))
}

/// Reads and parses a mapfile; Ok(None) if it does not exist.
pub fn parse_file(path: &Path) -> Result<Option<Mapfile>> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Renders the map in ddrescue's exact layout.
pub fn render(map: &Mapfile, header: &Header) -> String {
    let mut s = format!("# Mapfile. Created by {}\n", header.tool);
    s.push_str(&format!(
        "0x{:08X}     {}               {}\n",
        map.current_pos,
        map.phase.as_char(),
        map.pass
    ));
    for b in map.blocks() {
        s.push_str(&format!(
            "0x{:08X}  0x{:08X}  {}\n",
            b.pos,
            b.size,
            b.status.as_char()
        ));
    }
    s
}

// TEMP (main): replaced by the mapfile branch.
pub fn parse_domain(text: &str, path: &Path) -> Result<Vec<(u64, u64)>> {
    let m = parse(text, path)?;
    Ok(m.blocks()
        .iter()
        .filter(|b| b.status == super::BlockStatus::Finished)
        .map(|b| (b.pos, b.end()))
        .collect())
}
