//! salvor: rescue failing drives ddrescue-style, image, restore, clone and verify disks.
//!
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod blockdev;
pub mod cli;
pub mod device;
pub mod error;
pub mod export;
pub mod fs;
pub mod fuse;
pub mod image;
pub mod mapfile;
pub mod mount;
pub mod progress;
pub mod rescue;
pub mod safety;
pub mod serve;
pub mod tui;
pub mod units;

pub use error::{Error, ErrorKind, Result};
