//! The RSGI HTTP protocol object and the handler that starts an app per request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tokio::sync::oneshot;

use super::scope::Scope;
use super::ws::WsProtocol;
use super::{ProtocolClosed, ProtocolError};
use crate::app::AppContext;
use crate::bridge::{done, ready, resolve, Failed};
use crate::http::body::{DisconnectGuard, RequestState, ResponseBody};
use crate::http::pybytes::{bytes_of, chunk_of};
use crate::http::request::{ReadError, RequestBody};
use crate::http::response::{file_body, open_file, Chunk, ResponseSlot, StreamSend, StreamSlot};
use crate::http::server::{error_response, Handler};
use crate::http::util::check_range;
use crate::ws::{take_upgrade, WsUpgrade};

pub struct RsgiHandler {
    pub ctx: Arc<AppContext>,
    pub websockets: bool,
}

impl Handler for RsgiHandler {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(RequestState::new(self.ctx.bridge.clone()));
        let guard = DisconnectGuard(state.clone());
        let ctx = self.ctx.clone();
        let runtime = tokio::runtime::Handle::current();
        let upgrade = if self.websockets { take_upgrade(&mut req) } else { None };
        match upgrade {
            Some(upgrade) => self.ctx.bridge.schedule(Box::new(move |py| {
                start_websocket(py, &ctx, req, peer, ResponseSlot::new(tx), upgrade, runtime);
            })),
            None => self.ctx.bridge.schedule(Box::new(move |py| {
                let response = ResponseSlot::batched(tx, ctx.bridge.clone(), runtime.clone());
                start_request(py, &ctx, req, peer, response, state, runtime);
            })),
        }
        match rx.await {
            Ok(mut response) => {
                response.body_mut().watch(guard);
                response
            }
            Err(_) => {
                guard.0.complete();
                error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

fn start_websocket(
    py: Python<'_>,
    ctx: &Arc<AppContext>,
    req: Request<Incoming>,
    peer: SocketAddr,
    response: ResponseSlot,
    upgrade: WsUpgrade,
    runtime: tokio::runtime::Handle,
) {
    let (parts, _) = req.into_parts();
    let started = (|| -> PyResult<()> {
        let scope = Scope::new(py, "ws", parts, peer, ctx.listener.clone())?;
        let protocol = Py::new(py, WsProtocol::new(ctx.clone(), runtime, response, upgrade))?;
        let coro = ctx.app.bind(py).call1((Py::new(py, scope)?, protocol.clone_ref(py)))?;
        let finished = protocol.clone_ref(py);
        ctx.handles
            .spawn(&coro, Box::new(move |py, error| finished.get().app_finished(py, error)))?;
        Ok(())
    })();
    if let Err(err) = started {
        // The response slot went down with the protocol: hyper answers 500 for it.
        ctx.log_app_error(py, "Application callable raised an exception", &err);
    }
}

fn start_request(
    py: Python<'_>,
    ctx: &Arc<AppContext>,
    req: Request<Incoming>,
    peer: SocketAddr,
    response: ResponseSlot,
    state: Arc<RequestState>,
    runtime: tokio::runtime::Handle,
) {
    let (parts, body) = req.into_parts();
    let started = (|| -> PyResult<()> {
        let scope = Scope::new(py, "http", parts, peer, ctx.listener.clone())?;
        let protocol = Py::new(
            py,
            HttpProtocol {
                ctx: ctx.clone(),
                runtime,
                state,
                body: RequestBody::new(body),
                body_taken: AtomicBool::new(false),
                response,
                stream: StreamSlot::default(),
            },
        )?;
        let outcome = (|| -> PyResult<()> {
            let coro = ctx.app.bind(py).call1((Py::new(py, scope)?, protocol.clone_ref(py)))?;
            let finished = protocol.clone_ref(py);
            ctx.handles
                .spawn(&coro, Box::new(move |py, error| finished.get().app_finished(py, error)))?;
            Ok(())
        })();
        if let Err(err) = outcome {
            ctx.log_app_error(py, "Application callable raised an exception", &err);
            protocol.get().response.fail();
        }
        Ok(())
    })();
    if let Err(err) = started {
        // The response slot went down with the protocol: hyper answers 500 for it.
        ctx.log_app_error(py, "Cannot start the request", &err);
    }
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
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let body = self.body.clone();
        let bridge = self.ctx.bridge.clone();
        self.runtime.spawn(async move {
            if whole {
                let outcome = body.read_all().await;
                resolve(&bridge, reply, move |py| match outcome {
                    Ok(data) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                    Err(err) => Err(read_error(err)),
                });
            } else {
                let outcome = body.read_chunk().await;
                resolve(&bridge, reply, move |py| match outcome {
                    Ok(Some((data, _))) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                    Ok(None) => Err(PyStopAsyncIteration::new_err(())),
                    Err(err) => Err(read_error(err)),
                });
            }
        });
        Ok(future)
    }

    /// The app's coroutine ended: log its failure, end a stream, answer 500 if it never did.
    fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        let raised = self.ctx.report_app_end(py, error);
        if raised {
            // A stream cut by an error must not look complete to the client.
            self.stream.abort();
        } else {
            self.stream.close();
        }
        if self.response.is_pending() {
            if !raised && !self.state.is_disconnected() {
                self.ctx
                    .log_error(py, "Application returned without sending a response: answering 500");
            }
            self.response.fail();
        }
    }
}

fn status_code(status: u16) -> PyResult<StatusCode> {
    StatusCode::from_u16(status).map_err(|_| PyValueError::new_err(format!("invalid HTTP status code: {status}")))
}

/// `headers` omitted (None) means none, as in granian 2.8.7.
fn build_response(
    status: u16,
    headers: Option<&Bound<'_, PyAny>>,
    body: ResponseBody,
) -> PyResult<Response<ResponseBody>> {
    let mut response = Response::new(body);
    *response.status_mut() = status_code(status)?;
    let Some(headers) = headers else {
        return Ok(response);
    };
    let map = response.headers_mut();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value): (Bound<'_, PyString>, Bound<'_, PyString>) = item.extract()?;
        let name = name.to_str()?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PyValueError::new_err(format!("invalid header name: {name:?}")))?;
        let value = value.to_str()?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| PyValueError::new_err(format!("invalid value for header {name}: {value:?}")))?;
        map.append(name, value);
    }
    Ok(response)
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
            return Ok(Py::new(py, Failed::new(PyStopAsyncIteration::new_err(())))?.into_any());
        }
        self.spawn_body_read(py, false)
    }

    fn client_disconnect(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let future = self.ctx.handles.future(py)?.unbind();
        if !self.state.watch_disconnect(future.clone_ref(py), py.None(), false) {
            return ready(py, py.None());
        }
        Ok(future)
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
                error_response(StatusCode::NOT_FOUND)
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
                error_response(StatusCode::NOT_FOUND)
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
        let payload = self.stream.open();
        self.respond(build_response(status, headers.as_ref(), ResponseBody::new(payload))?)?;
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
            StreamSend::Sent => Ok(done(py)),
            StreamSend::Closed => Err(ProtocolClosed::new_err("the client disconnected")),
            StreamSend::Wait => self.ctx.wait_for_room(py, &self.runtime, self.stream.clone(), |_| {
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
}
