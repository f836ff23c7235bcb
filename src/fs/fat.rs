//! FAT12/16/32 (placeholder)
use super::vol::Vol;
use super::{Error, Found};
pub fn looks_like_fat(_s: &[u8]) -> bool { false }
pub(crate) fn analyze(_vol: &mut Vol) -> Result<Found, Error> { Err(Error::Unsupported("todo".into())) }
