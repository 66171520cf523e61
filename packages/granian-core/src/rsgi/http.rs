//! RSGI over HTTP: the protocol object an app reads the body from and answers with, and
//! the transport of a streamed response.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response};
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::errors::{ProtocolClosed, ProtocolError};
use super::scope::Scope;
use crate::app::{AppContext, Call};
use crate::awaitable::{failed, ready, ready_none};
use crate::convert::{bytes_of, chunk_of, status_code, str_headers};
use crate::http::body::ResponseBody;
use crate::http::request::{ReadError, RequestBody};
use crate::http::response::{file_body, file_not_found, open_file, response, ResponseSlot};
use crate::http::state::RequestState;
use crate::http::stream::{Chunk, StreamSend, StreamSlot};
use crate::http::util::check_range;
use crate::task::Finisher;

/// Starts the app for an HTTP request.
pub fn start(py: Python<'_>, ctx: &Arc<AppContext>, _: &(), call: Call) {
    let Call {
        req,
        peer,
        response,
        state,
        runtime,
    } = call;
    let (parts, body) = req.into_parts();
    let protocol = HttpProtocol {
        ctx: ctx.clone(),
        runtime,
        state,
        body: RequestBody::new(body, ctx.meter.clone()),
        body_taken: AtomicBool::new(false),
        response,
        stream: StreamSlot::default(),
    };
    let protocol = match Py::new(py, protocol) {
        Ok(protocol) => protocol,
        // The response slot went down with the protocol: the client gets a 500.
        Err(err) => return ctx.log_app_error(py, "Cannot start the request", &err),
    };
    ctx.start_app(
        py,
        || {
            let scope = Py::new(py, Scope::new(py, "http", parts, peer, ctx.listener.clone())?)?;
            let finished = protocol.clone_ref(py);
            let finisher: Finisher = Box::new(move |py, error| finished.get().app_finished(py, error));
            Ok(((scope, protocol.clone_ref(py)), finisher))
        },
        || {
            protocol.get().response.fail();
        },
    );
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIHTTPProtocol")]
pub struct HttpProtocol {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    state: Arc<RequestState>,
    body: RequestBody,
    /// `await proto()` hands the whole body once; a second call is an app bug (ProtocolError,
    /// as in granian 2.8.7) rather than a silent empty body.
    body_taken: AtomicBool,
    response: ResponseSlot,
    stream: StreamSlot,
}

fn read_error(err: ReadError) -> PyErr {
    match err {
        ReadError::Busy => ProtocolError::new_err("the request body was already consumed, or is being read"),
        ReadError::Interrupted(err) => ProtocolClosed::new_err(format!("request body interrupted: {err}")),
    }
}

impl HttpProtocol {
    fn respond(&self, response: Response<ResponseBody>) -> PyResult<()> {
        if self.response.send(response) {
            Ok(())
        } else {
            Err(ProtocolError::new_err("a response was already sent for this request"))
        }
    }

    fn spawn_body_read(&self, py: Python<'_>, whole: bool) -> PyResult<Py<PyAny>> {
        let body = self.body.clone();
        if whole {
            let read = async move { body.read_all().await };
            return self
                .ctx
                .future_from(py, &self.runtime, read, |py, outcome| match outcome {
                    Ok(data) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                    Err(err) => Err(read_error(err)),
                });
        }
        let read = async move { body.read_chunk().await };
        self.ctx
            .future_from(py, &self.runtime, read, |py, outcome| match outcome {
                Ok(Some((data, _))) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                Ok(None) => Err(PyStopAsyncIteration::new_err(())),
                Err(err) => Err(read_error(err)),
            })
    }

    /// The app's coroutine ended: a stream it failed in is cut, a request it never
    /// answered gets a 500.
    fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        let raised = self.ctx.report_app_end(py, error);
        if self
            .ctx
            .settle(py, &self.state, &self.response, &self.stream, raised, raised)
        {
            self.response.fail();
        }
    }
}

/// `headers` omitted (None) means none, as in granian 2.8.7.
fn build_response(
    status: u16,
    headers: Option<&Bound<'_, PyAny>>,
    body: ResponseBody,
) -> PyResult<Response<ResponseBody>> {
    let headers = match headers {
        Some(headers) => str_headers(headers)?,
        None => HeaderMap::new(),
    };
    Ok(response(status_code(status)?, headers, body))
}

#[pymethods]
impl HttpProtocol {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.body_taken.swap(true, Ordering::Relaxed) {
            return Err(ProtocolError::new_err("the request body was already read"));
        }
        if self.body.is_finished() {
            return ready(py, PyBytes::new(py, b"").into_any().unbind());
        }
        self.spawn_body_read(py, true)
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.body.is_finished() {
            return failed(py, PyStopAsyncIteration::new_err(()));
        }
        self.spawn_body_read(py, false)
    }

    fn client_disconnect(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.ctx.disconnect_future(py, &self.state, py.None(), false)? {
            Some(future) => Ok(future),
            None => Ok(ready_none(py)),
        }
    }

    // Omitted headers and bodies are empty, as in granian 2.8.7 (`...` in the signature: the
    // default is an empty value, not None).
    #[pyo3(signature = (status = 200, headers = None), text_signature = "(self, /, status=200, headers=...)")]
    fn response_empty(&self, status: u16, headers: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        self.respond(build_response(status, headers.as_ref(), ResponseBody::empty())?)
    }

    #[pyo3(
        signature = (status = 200, headers = None, body = None),
        text_signature = "(self, /, status=200, headers=..., body=...)"
    )]
    fn response_str(
        &self,
        status: u16,
        headers: Option<Bound<'_, PyAny>>,
        body: Option<Bound<'_, PyString>>,
    ) -> PyResult<()> {
        let data = match body {
            Some(body) => Bytes::copy_from_slice(body.to_str()?.as_bytes()),
            None => Bytes::new(),
        };
        self.respond(build_response(status, headers.as_ref(), ResponseBody::full(data))?)
    }

    #[pyo3(
        signature = (status = 200, headers = None, body = None),
        text_signature = "(self, /, status=200, headers=..., body=...)"
    )]
    fn response_bytes(
        &self,
        status: u16,
        headers: Option<Bound<'_, PyAny>>,
        body: Option<Bound<'_, PyBytes>>,
    ) -> PyResult<()> {
        let data = body.map(|body| bytes_of(&body)).unwrap_or_default();
        self.respond(build_response(status, headers.as_ref(), ResponseBody::full(data))?)
    }

    #[pyo3(signature = (status, headers, file))]
    fn response_file(&self, status: u16, headers: Bound<'_, PyAny>, file: PathBuf) -> PyResult<()> {
        let response = match open_file(&file) {
            Some((handle, len)) => build_response(status, Some(&headers), file_body(handle, 0, len)?)?,
            None => {
                log::info!("response_file: cannot open {}", file.display());
                file_not_found()
            }
        };
        self.respond(response)
    }

    #[pyo3(signature = (status, headers, file, start, end))]
    fn response_file_range(
        &self,
        status: u16,
        headers: Bound<'_, PyAny>,
        file: PathBuf,
        start: i64,
        end: i64,
    ) -> PyResult<()> {
        let response = match open_file(&file) {
            Some((handle, len)) => {
                let (start, end) = check_range(start, end, len).map_err(PyValueError::new_err)?;
                build_response(status, Some(&headers), file_body(handle, start, end - start)?)?
            }
            None => {
                log::info!("response_file_range: cannot open {}", file.display());
                file_not_found()
            }
        };
        self.respond(response)
    }

    #[pyo3(signature = (status = 200, headers = None), text_signature = "(self, /, status=200, headers=...)")]
    fn response_stream(
        &self,
        py: Python<'_>,
        status: u16,
        headers: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<StreamTransport>> {
        if !self.response.is_pending() {
            return Err(ProtocolError::new_err("a response was already sent for this request"));
        }
        let body = ResponseBody::streamed(self.stream.open());
        self.respond(build_response(status, headers.as_ref(), body)?)?;
        Py::new(
            py,
            StreamTransport {
                stream: self.stream.clone(),
                ctx: self.ctx.clone(),
                runtime: self.runtime.clone(),
            },
        )
    }
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIHTTPStreamTransport")]
pub struct StreamTransport {
    stream: StreamSlot,
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
}

impl StreamTransport {
    fn send(&self, py: Python<'_>, data: Chunk<'_>) -> PyResult<Py<PyAny>> {
        match self.stream.send(data) {
            StreamSend::Sent => Ok(ready_none(py)),
            StreamSend::Closed => Err(ProtocolClosed::new_err("the client disconnected")),
            StreamSend::Wait => self.ctx.when_done(py, &self.runtime, self.stream.clone().room(), |_| {
                Err(ProtocolClosed::new_err("the client disconnected"))
            }),
        }
    }
}

#[pymethods]
impl StreamTransport {
    fn send_bytes(&self, py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Py<PyAny>> {
        self.send(py, chunk_of(&data))
    }

    fn send_str(&self, py: Python<'_>, data: Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
        self.send(py, Chunk::Copy(data.to_str()?.as_bytes()))
    }

    /// Ends the body with trailer fields (`[(name, value), ...]`): sent on HTTP/2, and on
    /// HTTP/1.1 to a client that asked for them (`TE: trailers`) when the response's `Trailer`
    /// header names them. Nothing may be sent after.
    fn send_trailers(&self, py: Python<'_>, headers: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let trailers = str_headers(&headers)?;
        if !self.stream.close_with_trailers(trailers) {
            return Err(ProtocolError::new_err("the response body has ended already"));
        }
        Ok(ready_none(py))
    }
}
