//! RSGI: scope, protocol objects and the handler that runs an app per request.

pub mod http;
pub mod scope;
pub mod ws;

pyo3::create_exception!(
    granian._granian,
    ProtocolError,
    pyo3::exceptions::PyRuntimeError,
    "The RSGI protocol was misused."
);
pyo3::create_exception!(
    granian._granian,
    ProtocolClosed,
    pyo3::exceptions::PyRuntimeError,
    "The client went away."
);
