//! Python values into HTTP parts: body data, status codes and header lists, validated the
//! same way for every interface.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};

use crate::http::stream::Chunk;

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

/// A status code an app gave.
pub fn status_code(status: u16) -> PyResult<StatusCode> {
    StatusCode::from_u16(status).map_err(|_| PyValueError::new_err(format!("invalid HTTP status code: {status}")))
}

fn append_header(map: &mut HeaderMap, name: &[u8], value: &[u8]) -> PyResult<()> {
    let name = HeaderName::from_bytes(name)
        .map_err(|_| PyValueError::new_err(format!("invalid header name: {:?}", String::from_utf8_lossy(name))))?;
    let value = HeaderValue::from_bytes(value).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid value for header {name}: {:?}",
            String::from_utf8_lossy(value)
        ))
    })?;
    map.append(name, value);
    Ok(())
}

/// Headers as RSGI and WSGI give them: an iterable of `(str, str)` pairs.
pub fn str_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter()? {
        let (name, value): (Bound<'_, PyString>, Bound<'_, PyString>) = item?.extract()?;
        append_header(&mut map, name.to_str()?.as_bytes(), value.to_str()?.as_bytes())?;
    }
    Ok(map)
}

/// Headers as ASGI gives them: an iterable of `[bytes, bytes]` pairs.
pub fn byte_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter()? {
        let item = item?;
        let mut pair = item.try_iter()?;
        let (Some(name), Some(value)) = (pair.next(), pair.next()) else {
            return Err(PyTypeError::new_err("headers must be [name, value] pairs"));
        };
        let (name, value) = (name?, value?);
        let (Ok(name), Ok(value)) = (name.cast::<PyBytes>(), value.cast::<PyBytes>()) else {
            return Err(PyTypeError::new_err("header names and values must be bytes"));
        };
        append_header(&mut map, name.as_bytes(), value.as_bytes())?;
    }
    Ok(map)
}
