//! Response data taken from Python `bytes` objects.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use super::response::Chunk;

/// From this size up, the data is shared with the Python object instead of copied: the
/// object stays alive until the socket has written it. Below it, a copy costs less than
/// the deferred reference release of a Python object dropped on a runtime thread.
const SHARE_FROM: usize = 64 * 1024;

/// A streamed piece of body: copied (and merged with its neighbours) below the sharing size.
pub fn chunk_of<'a>(data: &'a Bound<'_, PyBytes>) -> Chunk<'a> {
    let view = data.as_bytes();
    if view.len() < SHARE_FROM {
        return Chunk::Copy(view);
    }
    Chunk::Shared(Bytes::from_owner(PyBackedBytes::from(data.clone())))
}

pub fn bytes_of(data: &Bound<'_, PyBytes>) -> Bytes {
    let view = data.as_bytes();
    if view.len() < SHARE_FROM {
        return Bytes::copy_from_slice(view);
    }
    Bytes::from_owner(PyBackedBytes::from(data.clone()))
}
