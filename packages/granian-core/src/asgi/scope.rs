//! The ASGI scope of a request: HTTP and websocket.

use std::net::SocketAddr;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::app::ListenerInfo;
use crate::http::util::{decode_path, version_labels};
use crate::tls::{pem, TlsInfo};

/// Per-worker ASGI values, built once.
pub struct AsgiShared {
    /// The lifespan `state`, shallow-copied into every request scope.
    pub state: Option<Py<PyDict>>,
    pub root_path: String,
    /// The `server` tuple.
    pub server: Py<PyTuple>,
}

impl AsgiShared {
    pub fn new(
        py: Python<'_>,
        listener: &ListenerInfo,
        state: Option<Py<PyDict>>,
        root_path: String,
    ) -> PyResult<Self> {
        let server = PyTuple::new(
            py,
            [listener.ip.as_str().into_py_any(py)?, listener.port.into_py_any(py)?],
        )?;
        Ok(Self {
            state,
            root_path,
            server: server.unbind(),
        })
    }
}

/// The scope of a request: HTTP, or a websocket (its type, scheme, subprotocols and
/// extensions differ).
pub fn scope<'py>(
    py: Python<'py>,
    shared: &AsgiShared,
    listener: &ListenerInfo,
    parts: &http::request::Parts,
    peer: SocketAddr,
    websocket: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.3"))?;
    let headers = PyList::empty(py);
    // HTTP/2 and HTTP/3 carry the host as `:authority`, not a header: apps (and frameworks
    // building URLs) look for `host`, so it leads the list, as in granian.
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            headers.append((
                PyBytes::new(py, b"host"),
                PyBytes::new(py, authority.as_str().as_bytes()),
            ))?;
        }
    }
    for (name, value) in parts.headers.iter() {
        headers.append((
            PyBytes::new(py, name.as_str().as_bytes()),
            PyBytes::new(py, value.as_bytes()),
        ))?;
    }
    let extensions = PyDict::new(py);
    if websocket {
        extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
    } else {
        extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
        extensions.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
        if let Some(tls) = parts.extensions.get::<Arc<TlsInfo>>() {
            extensions.set_item(intern!(py, "tls"), tls_extension(py, tls)?)?;
        }
    }
    let (kind, scheme) = match (websocket, listener.scheme) {
        (false, scheme) => (intern!(py, "http"), scheme),
        (true, "https") => (intern!(py, "websocket"), "wss"),
        (true, _) => (intern!(py, "websocket"), "ws"),
    };
    scope.set_item(intern!(py, "type"), kind)?;
    scope.set_item(intern!(py, "asgi"), asgi)?;
    scope.set_item(intern!(py, "http_version"), version_labels(parts.version).asgi)?;
    scope.set_item(intern!(py, "server"), shared.server.bind(py))?;
    scope.set_item(intern!(py, "client"), (peer.ip().to_string(), peer.port()))?;
    scope.set_item(intern!(py, "scheme"), scheme)?;
    scope.set_item(intern!(py, "method"), parts.method.as_str())?;
    scope.set_item(intern!(py, "root_path"), shared.root_path.as_str())?;
    scope.set_item(intern!(py, "path"), decode_path(parts.uri.path()).as_ref())?;
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, parts.uri.path().as_bytes()))?;
    scope.set_item(
        intern!(py, "query_string"),
        PyBytes::new(py, parts.uri.query().unwrap_or("").as_bytes()),
    )?;
    scope.set_item(intern!(py, "headers"), headers)?;
    scope.set_item(intern!(py, "extensions"), extensions)?;
    if let Some(state) = &shared.state {
        scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
    }
    if websocket {
        let subprotocols = PyList::empty(py);
        for value in parts.headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                if !token.is_empty() {
                    subprotocols.append(token)?;
                }
            }
        }
        scope.set_item(intern!(py, "subprotocols"), subprotocols)?;
    }
    Ok(scope)
}

/// The ASGI `tls` extension for a connection.
fn tls_extension<'py>(py: Python<'py>, tls: &TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let ext = PyDict::new(py);
    ext.set_item("server_cert", &*tls.server_cert)?;
    let chain = PyList::empty(py);
    for cert in &tls.client_chain {
        chain.append(pem(cert.as_ref()))?;
    }
    ext.set_item("client_cert_chain", chain)?;
    ext.set_item("client_cert_name", tls.client_name())?;
    ext.set_item("client_cert_error", py.None())?;
    ext.set_item("tls_version", tls.version)?;
    ext.set_item("cipher_suite", tls.cipher_suite)?;
    Ok(ext)
}
