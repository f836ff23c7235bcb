//! NTFS (placeholder)
use super::vol::Vol;
use super::{Error, Found};
pub(crate) fn analyze(_vol: &mut Vol) -> Result<Found, Error> {
    Err(Error::Unsupported("todo".into()))
}
