//! What every request of a WSGI worker shares, and the environ built for each request.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use crate::app::{log_exception, ListenerInfo};
use crate::blocking::BlockingPool;
use crate::http::util::version_labels;
use crate::metrics::meter::Meter;

/// What every request of a WSGI worker shares.
pub struct WsgiShared {
    pub app: Py<PyAny>,
    pub logger: Py<PyAny>,
    pub errors: Py<PyAny>,
    pub script_name: String,
    pub multiprocess: bool,
    pub listener: Arc<ListenerInfo>,
    pub pool: BlockingPool,
    /// With `--metrics`: where request bodies are counted.
    pub meter: Option<Meter>,
}

impl WsgiShared {
    pub fn log_exception(&self, py: Python<'_>, message: &str, err: &PyErr) {
        log_exception(self.logger.bind(py), message, err);
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

pub fn environ<'py>(
    py: Python<'py>,
    shared: &WsgiShared,
    parts: &http::request::Parts,
    peer: SocketAddr,
    input: Py<WsgiInput>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    let raw_path: Vec<u8> = percent_encoding::percent_decode_str(parts.uri.path()).collect();
    let path = latin1(&raw_path);
    let prefix = shared.script_name.as_str();
    // Outside the prefix the app is not mounted there: SCRIPT_NAME + PATH_INFO stays the path.
    let (script_name, path_info) = match path.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with('/')) => (prefix, rest),
        _ => ("", path.as_str()),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), parts.method.as_str())?;
    env.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    env.set_item(intern!(py, "QUERY_STRING"), parts.uri.query().unwrap_or(""))?;
    env.set_item(intern!(py, "SERVER_NAME"), shared.listener.ip.as_str())?;
    env.set_item(intern!(py, "SERVER_PORT"), shared.listener.port.to_string())?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), version_labels(parts.version).protocol)?;
    env.set_item(intern!(py, "REMOTE_ADDR"), peer.ip().to_string())?;
    env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
    for name in parts.headers.keys() {
        let mut joined = Vec::new();
        for (i, value) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                joined.push(b',');
            }
            joined.extend_from_slice(value.as_bytes());
        }
        let value = latin1(&joined);
        if name == CONTENT_TYPE {
            env.set_item(intern!(py, "CONTENT_TYPE"), value)?;
        } else if name == CONTENT_LENGTH {
            env.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
        } else {
            let key = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
            env.set_item(PyString::new(py, &key), value)?;
        }
    }
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            env.set_item(intern!(py, "HTTP_HOST"), authority.as_str())?;
        }
    }
    env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    env.set_item(intern!(py, "wsgi.url_scheme"), shared.listener.scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    env.set_item(intern!(py, "wsgi.errors"), shared.errors.bind(py))?;
    env.set_item(intern!(py, "wsgi.multithread"), true)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), shared.multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.file_wrapper"), py.get_type::<FileWrapper>())?;
    Ok(env)
}
