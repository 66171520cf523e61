//! The exceptions RSGI apps see.

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
