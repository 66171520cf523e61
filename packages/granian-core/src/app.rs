//! What every interface's requests share within a worker: the app, the loop, the logger.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::{resolve, BridgeQueue, LoopHandles};
use crate::http::response::StreamSlot;

/// Values fixed for the life of a listener, shared by every request it serves.
pub struct ListenerInfo {
    pub ip: String,
    pub port: u16,
    pub server: String,
    pub scheme: &'static str,
}

impl ListenerInfo {
    pub fn new((ip, port): (String, u16), scheme: &'static str) -> Self {
        Self {
            server: format!("{ip}:{port}"),
            ip,
            port,
            scheme,
        }
    }
}

pub struct AppContext {
    pub app: Py<PyAny>,
    pub handles: LoopHandles,
    pub logger: Py<PyAny>,
    pub bridge: Arc<BridgeQueue>,
    pub listener: Arc<ListenerInfo>,
}

impl AppContext {
    pub fn log_error(&self, py: Python<'_>, message: &str) {
        let _ = self.logger.bind(py).call_method1("error", (message,));
    }

    pub fn log_debug(&self, py: Python<'_>, message: &str) {
        let _ = self.logger.bind(py).call_method1("debug", (message,));
    }

    /// Reports how an app's coroutine ended: `true` when it raised (or was cancelled), after
    /// logging the error; cancellation is only worth a debug line.
    pub fn report_app_end(&self, py: Python<'_>, error: Option<PyErr>) -> bool {
        match error {
            Some(err) if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) => {
                self.log_debug(py, "the application task was cancelled");
                true
            }
            Some(err) => {
                self.log_app_error(py, "Application callable raised an exception", &err);
                true
            }
            None => false,
        }
    }

    /// A future resolved with None once `stream` has room for more data again; with what
    /// `gone` gives when the client went away instead.
    pub fn wait_for_room(
        &self,
        py: Python<'_>,
        runtime: &tokio::runtime::Handle,
        stream: StreamSlot,
        gone: fn(Python<'_>) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let future = self.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let bridge = self.bridge.clone();
        runtime.spawn(async move {
            let room = stream.room().await;
            resolve(&bridge, reply, move |py| if room { Ok(py.None()) } else { gone(py) });
        });
        Ok(future)
    }

    /// Logs on `_granian` with the full traceback of `err`.
    pub fn log_app_error(&self, py: Python<'_>, message: &str, err: &PyErr) {
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        let kwargs = PyDict::new(py);
        let _ = kwargs.set_item("exc_info", exc_info);
        let _ = self.logger.bind(py).call_method("error", (message,), Some(&kwargs));
    }
}
