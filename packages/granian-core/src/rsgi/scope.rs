//! The RSGI scope and headers: thin views over the parsed request, converted to Python
//! values only when the app reads them.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderMap;
use http::{Method, Uri, Version};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::app::ListenerInfo;
use crate::http::util::{decode_path, version_labels};

#[pyclass(frozen, module = "granian._granian", name = "RSGIHeaders")]
pub struct Headers {
    map: HeaderMap,
}

impl Headers {
    fn value_str(value: &http::HeaderValue) -> String {
        match value.to_str() {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        }
    }
}

#[pymethods]
impl Headers {
    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match self.map.get(key.to_ascii_lowercase()) {
            Some(value) => Ok(PyString::new(py, &Self::value_str(value)).into_any().unbind()),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    fn get_all(&self, key: &str) -> Vec<String> {
        self.map
            .get_all(key.to_ascii_lowercase())
            .iter()
            .map(Self::value_str)
            .collect()
    }

    fn keys(&self) -> Vec<&str> {
        self.map.keys().map(|k| k.as_str()).collect()
    }

    fn values(&self) -> Vec<String> {
        self.map
            .keys()
            .filter_map(|k| self.map.get(k))
            .map(Self::value_str)
            .collect()
    }

    fn items(&self) -> Vec<(&str, String)> {
        self.map
            .keys()
            .filter_map(|k| self.map.get(k).map(|v| (k.as_str(), Self::value_str(v))))
            .collect()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.map.contains_key(key.to_ascii_lowercase())
    }

    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        match self.map.get(key.to_ascii_lowercase()) {
            Some(value) => Ok(PyString::new(py, &Self::value_str(value)).into_any().unbind()),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    /// Distinct names, as `keys()` lists them.
    fn __len__(&self) -> usize {
        self.map.keys_len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.map.keys().map(|k| k.as_str()))?
            .try_iter()
            .map(Bound::into_any)
    }

    fn __repr__(&self) -> String {
        format!("RSGIHeaders({:?})", self.items())
    }
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIScope")]
pub struct Scope {
    proto: &'static str,
    version: Version,
    method: Method,
    uri: Uri,
    client: SocketAddr,
    listener: Arc<ListenerInfo>,
    headers: Py<Headers>,
}

impl Scope {
    pub fn new(
        py: Python<'_>,
        proto: &'static str,
        parts: http::request::Parts,
        client: SocketAddr,
        listener: Arc<ListenerInfo>,
    ) -> PyResult<Self> {
        let headers = Py::new(py, Headers { map: parts.headers })?;
        Ok(Self {
            proto,
            version: parts.version,
            method: parts.method,
            uri: parts.uri,
            client,
            listener,
            headers,
        })
    }
}

#[pymethods]
impl Scope {
    #[getter]
    fn proto(&self) -> &'static str {
        self.proto
    }

    #[getter]
    fn rsgi_version(&self) -> &'static str {
        "1.6"
    }

    #[getter]
    fn http_version(&self) -> &'static str {
        version_labels(self.version).rsgi
    }

    #[getter]
    fn server(&self) -> &str {
        &self.listener.server
    }

    #[getter]
    fn client(&self) -> String {
        self.client.to_string()
    }

    #[getter]
    fn scheme(&self) -> &'static str {
        self.listener.scheme
    }

    #[getter]
    fn method(&self) -> &str {
        self.method.as_str()
    }

    #[getter]
    fn path(&self) -> String {
        decode_path(self.uri.path()).into_owned()
    }

    #[getter]
    fn query_string(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<Headers> {
        self.headers.clone_ref(py)
    }

    #[getter]
    fn authority(&self) -> Option<String> {
        match self.version {
            Version::HTTP_2 => self.uri.authority().map(|a| a.to_string()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "RSGIScope(proto={:?}, method={:?}, path={:?}, http_version={:?})",
            self.proto,
            self.method.as_str(),
            self.uri.path(),
            version_labels(self.version).rsgi
        )
    }
}
