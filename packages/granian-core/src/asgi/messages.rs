//! ASGI message dicts: building those the app receives, checking those it sends, and the
//! errors it sees when it misuses the protocol (texts as in granian 2.8.7, where apps may
//! match them).

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// A message dict of the given type, for the app's `receive`.
pub fn message<'py>(py: Python<'py>, kind: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyDict>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), kind)?;
    Ok(message)
}

/// A message the app sent, and its type.
pub fn sent_message<'a, 'py>(
    message: &'a Bound<'py, PyAny>,
) -> PyResult<(&'a Bound<'py, PyDict>, Bound<'py, PyString>)> {
    let message = message
        .cast::<PyDict>()
        .map_err(|_| protocol_error("messages sent must be dicts"))?;
    let kind = message
        .get_item(intern!(message.py(), "type"))?
        .ok_or_else(|| protocol_error("message without a 'type'"))?
        .cast_into::<PyString>()
        .map_err(|_| protocol_error("'type' must be a str"))?;
    Ok((message, kind))
}

pub fn protocol_error(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(format!("ASGI protocol error: {}", msg.into()))
}

/// A message whose type the scope does not take.
pub fn unsupported_message() -> PyErr {
    PyRuntimeError::new_err("Unsupported ASGI message")
}

/// A response message out of order.
pub fn flow_error(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("ASGI flow error: {what}"))
}
