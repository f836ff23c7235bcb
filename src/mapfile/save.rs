//! Saving the mapfile. STUB: atomic save is being written (see helper brief).

use super::{text, Mapfile};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes a mapfile atomically, keeping the previous version as `MAPFILE.bak`.
pub struct MapfileSaver {
    path: PathBuf,
    header: text::Header,
}

impl MapfileSaver {
    pub fn new(path: &Path, command_line: &str) -> MapfileSaver {
        MapfileSaver {
            path: path.to_path_buf(),
            header: text::Header {
                tool: format!("salvor version {}", env!("CARGO_PKG_VERSION")),
                command_line: command_line.to_string(),
                ..Default::default()
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves `map`. The caller must have made the data the map claims durable first.
    pub fn save(&mut self, map: &Mapfile, status_message: &str) -> Result<()> {
        self.header.status_message = status_message.to_string();
        std::fs::write(&self.path, text::render(map, &self.header))
            .map_err(|e| Error::io(&self.path, e))
    }
}
