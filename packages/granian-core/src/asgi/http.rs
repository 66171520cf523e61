//! ASGI 3 over HTTP: the scope, `receive` and `send`, implemented natively.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};
use tokio::sync::oneshot;

use super::ws::{AsgiWebsocket, WsReceive, WsSend};
use crate::app::AppContext;
use crate::bridge::{done, ready, resolve};
use crate::http::body::{DisconnectGuard, RequestState, ResponseBody};
use crate::http::pybytes::{bytes_of, chunk_of};
use crate::http::request::RequestBody;
use crate::http::response::{file_body, open_file, Chunk, ResponseSlot, StreamSend, StreamSlot};
use crate::http::server::{error_response, Handler};
use crate::http::util::{decode_path, version_label};
use crate::tls::{pem, TlsInfo};
use crate::ws::{take_upgrade, WsUpgrade};

/// Per-worker ASGI values, built once.
pub struct AsgiShared {
    /// The lifespan `state`, shallow-copied into every request scope.
    pub state: Option<Py<PyDict>>,
    pub root_path: String,
    pub server: Py<PyTuple>,
}

pub struct AsgiHandler {
    pub ctx: Arc<AppContext>,
    pub shared: Arc<AsgiShared>,
    pub websockets: bool,
}

impl Handler for AsgiHandler {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(RequestState::new(self.ctx.bridge.clone()));
        let guard = DisconnectGuard(state.clone());
        let handler = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let upgrade = if self.websockets { take_upgrade(&mut req) } else { None };
        match upgrade {
            Some(upgrade) => self.ctx.bridge.schedule(Box::new(move |py| {
                handler.start_websocket(py, req, peer, ResponseSlot::new(tx), upgrade, runtime);
            })),
            None => self.ctx.bridge.schedule(Box::new(move |py| {
                let response = ResponseSlot::batched(tx, handler.ctx.bridge.clone(), runtime.clone());
                handler.start(py, req, peer, response, state, runtime);
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

impl AsgiHandler {
    fn start_websocket(
        &self,
        py: Python<'_>,
        req: Request<Incoming>,
        peer: SocketAddr,
        response: ResponseSlot,
        upgrade: WsUpgrade,
        runtime: tokio::runtime::Handle,
    ) {
        let ctx = &self.ctx;
        let (parts, _) = req.into_parts();
        let started = (|| -> PyResult<()> {
            let scope = self.scope(py, &parts, peer)?;
            scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
            let scheme = if ctx.listener.scheme == "https" { "wss" } else { "ws" };
            scope.set_item(intern!(py, "scheme"), scheme)?;
            let subprotocols = PyList::empty(py);
            for value in parts.headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
                for token in value.to_str().unwrap_or("").split(',') {
                    let token = token.trim();
                    if !token.is_empty() {
                        subprotocols.append(token)?;
                    }
                }
            }
            scope.set_item(intern!(py, "subprotocols"), subprotocols)?;
            let extensions = PyDict::new(py);
            extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
            scope.set_item(intern!(py, "extensions"), extensions)?;
            let socket = Arc::new(AsgiWebsocket::new(ctx.clone(), runtime, response, upgrade));
            let receive = Py::new(py, WsReceive(socket.clone()))?;
            let send = Py::new(py, WsSend(socket.clone()))?;
            let coro = ctx.app.bind(py).call1((scope, receive, send))?;
            ctx.handles
                .spawn(&coro, Box::new(move |py, error| socket.app_finished(py, error)))?;
            Ok(())
        })();
        if let Err(err) = started {
            ctx.log_app_error(py, "Application callable raised an exception", &err);
        }
    }

    fn start(
        &self,
        py: Python<'_>,
        req: Request<Incoming>,
        peer: SocketAddr,
        response: ResponseSlot,
        state: Arc<RequestState>,
        runtime: tokio::runtime::Handle,
    ) {
        let ctx = &self.ctx;
        let (parts, body) = req.into_parts();
        let request = Arc::new(AsgiRequest {
            ctx: ctx.clone(),
            runtime,
            state,
            body: RequestBody::new(body),
            request_delivered: AtomicBool::new(false),
            response,
            stream: StreamSlot::default(),
            phase: Mutex::new(Phase::Start),
        });
        let started = (|| -> PyResult<()> {
            let scope = self.scope(py, &parts, peer)?;
            let receive = Py::new(py, Receive(request.clone()))?;
            let send = Py::new(py, Send(request.clone()))?;
            let coro = ctx.app.bind(py).call1((scope, receive, send))?;
            let finished = request.clone();
            ctx.handles
                .spawn(&coro, Box::new(move |py, error| finished.app_finished(py, error)))?;
            Ok(())
        })();
        if let Err(err) = started {
            ctx.log_app_error(py, "Application callable raised an exception", &err);
            request.response.fail();
        }
    }

    fn scope<'py>(
        &self,
        py: Python<'py>,
        parts: &http::request::Parts,
        peer: SocketAddr,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = PyDict::new(py);
        let asgi = PyDict::new(py);
        asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
        asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.3"))?;
        let headers = PyList::empty(py);
        for (name, value) in parts.headers.iter() {
            headers.append((
                PyBytes::new(py, name.as_str().as_bytes()),
                PyBytes::new(py, value.as_bytes()),
            ))?;
        }
        let extensions = PyDict::new(py);
        extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
        if let Some(tls) = parts.extensions.get::<Arc<TlsInfo>>() {
            extensions.set_item(intern!(py, "tls"), tls_extension(py, tls)?)?;
        }
        scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
        scope.set_item(intern!(py, "asgi"), asgi)?;
        scope.set_item(intern!(py, "http_version"), asgi_version_label(parts.version))?;
        scope.set_item(intern!(py, "server"), self.shared.server.bind(py))?;
        scope.set_item(intern!(py, "client"), (peer.ip().to_string(), peer.port()))?;
        scope.set_item(intern!(py, "scheme"), self.ctx.listener.scheme)?;
        scope.set_item(intern!(py, "method"), parts.method.as_str())?;
        scope.set_item(intern!(py, "root_path"), self.shared.root_path.as_str())?;
        scope.set_item(intern!(py, "path"), decode_path(parts.uri.path()).as_ref())?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, parts.uri.path().as_bytes()))?;
        scope.set_item(
            intern!(py, "query_string"),
            PyBytes::new(py, parts.uri.query().unwrap_or("").as_bytes()),
        )?;
        scope.set_item(intern!(py, "headers"), headers)?;
        scope.set_item(intern!(py, "extensions"), extensions)?;
        if let Some(state) = &self.shared.state {
            scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
        }
        Ok(scope)
    }
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

fn asgi_version_label(version: http::Version) -> &'static str {
    match version_label(version) {
        "1" => "1.0",
        other => other,
    }
}

enum Phase {
    Start,
    Started(StatusCode, HeaderMap),
    Streaming,
    Done,
}

struct AsgiRequest {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    state: Arc<RequestState>,
    body: RequestBody,
    request_delivered: AtomicBool,
    response: ResponseSlot,
    stream: StreamSlot,
    phase: Mutex<Phase>,
}

fn message<'py>(py: Python<'py>, kind: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyDict>> {
    let msg = PyDict::new(py);
    msg.set_item(intern!(py, "type"), kind)?;
    Ok(msg)
}

fn request_message(py: Python<'_>, body: &[u8], more: bool) -> PyResult<Py<PyAny>> {
    let msg = message(py, intern!(py, "http.request"))?;
    msg.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
    msg.set_item(intern!(py, "more_body"), more)?;
    Ok(msg.into_any().unbind())
}

fn disconnect_message(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(message(py, intern!(py, "http.disconnect"))?.into_any().unbind())
}

pub(crate) fn protocol_error(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(format!("ASGI protocol error: {}", msg.into()))
}

/// A message whose type the scope does not take; the text is granian 2.8.7's, which apps may match.
pub(crate) fn unsupported_message() -> PyErr {
    PyRuntimeError::new_err("Unsupported ASGI message")
}

/// A response message out of order; texts as in granian 2.8.7.
fn flow_error(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("ASGI flow error: {what}"))
}

impl AsgiRequest {
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.body.is_finished() {
            self.request_delivered.store(true, Ordering::Relaxed);
            let future = self.ctx.handles.future(py)?.unbind();
            let reply = future.clone_ref(py);
            let body = self.body.clone();
            let bridge = self.ctx.bridge.clone();
            self.runtime.spawn(async move {
                let outcome = body.read_chunk().await;
                resolve(&bridge, reply, move |py| match outcome {
                    Ok(Some((data, more))) => request_message(py, &data, more),
                    Ok(None) => request_message(py, b"", false),
                    // The client went away mid-body.
                    Err(_) => disconnect_message(py),
                });
            });
            return Ok(future);
        }
        if !self.request_delivered.swap(true, Ordering::Relaxed) {
            return ready(py, request_message(py, b"", false)?);
        }
        let future = self.ctx.handles.future(py)?.unbind();
        if !self
            .state
            .watch_disconnect(future.clone_ref(py), disconnect_message(py)?, true)
        {
            return ready(py, disconnect_message(py)?);
        }
        Ok(future)
    }

    fn send(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let msg = msg
            .cast::<PyDict>()
            .map_err(|_| protocol_error("messages sent must be dicts"))?;
        let kind = msg
            .get_item(intern!(py, "type"))?
            .ok_or_else(|| protocol_error("message without a 'type'"))?;
        let kind = kind
            .cast::<PyString>()
            .map_err(|_| protocol_error("'type' must be a str"))?;
        let mut phase = self.phase.lock().map_err(|_| protocol_error("state poisoned"))?;
        match kind.to_str()? {
            "http.response.start" => {
                if !matches!(*phase, Phase::Start) {
                    return Err(flow_error("Response already started"));
                }
                let status = match msg.get_item(intern!(py, "status"))? {
                    Some(s) => s.extract::<u16>()?,
                    None => return Err(protocol_error("'http.response.start' without a status")),
                };
                let status = StatusCode::from_u16(status)
                    .map_err(|_| PyValueError::new_err(format!("invalid HTTP status code: {status}")))?;
                let headers = match msg.get_item(intern!(py, "headers"))? {
                    Some(h) => header_map(&h)?,
                    None => HeaderMap::new(),
                };
                *phase = Phase::Started(status, headers);
                Ok(done(py))
            }
            "http.response.body" => {
                let body = match msg.get_item(intern!(py, "body"))? {
                    Some(b) => Some(
                        b.cast_into::<PyBytes>()
                            .map_err(|_| protocol_error("'body' must be bytes"))?,
                    ),
                    None => None,
                };
                let chunk = || match &body {
                    Some(b) => chunk_of(b),
                    None => Chunk::Copy(b""),
                };
                let more = match msg.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                match std::mem::replace(&mut *phase, Phase::Done) {
                    Phase::Start => {
                        *phase = Phase::Start;
                        Err(flow_error("Response not started"))
                    }
                    Phase::Done => Err(protocol_error("message sent after the response completed")),
                    Phase::Started(status, headers) => {
                        if more {
                            let payload = self.stream.open();
                            self.response
                                .send(response(status, headers, ResponseBody::new(payload)));
                            *phase = Phase::Streaming;
                            self.push(py, chunk(), false)
                        } else {
                            let body = body.as_ref().map(bytes_of).unwrap_or_default();
                            self.response.send(response(status, headers, ResponseBody::full(body)));
                            Ok(done(py))
                        }
                    }
                    Phase::Streaming => {
                        if more {
                            *phase = Phase::Streaming;
                        }
                        self.push(py, chunk(), !more)
                    }
                }
            }
            "http.response.pathsend" => {
                let path: std::path::PathBuf = match msg.get_item(intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => return Err(protocol_error("'http.response.pathsend' without a path")),
                };
                match std::mem::replace(&mut *phase, Phase::Done) {
                    Phase::Started(status, headers) => {
                        let sent = match open_file(&path) {
                            Some((file, len)) => response(status, headers, file_body(file, 0, len)?),
                            None => {
                                self.ctx
                                    .log_error(py, &format!("pathsend: cannot open {}", path.display()));
                                error_response(StatusCode::NOT_FOUND)
                            }
                        };
                        self.response.send(sent);
                        Ok(done(py))
                    }
                    other => {
                        *phase = other;
                        Err(protocol_error(
                            "'http.response.pathsend' must follow 'http.response.start'",
                        ))
                    }
                }
            }
            _ => Err(unsupported_message()),
        }
    }

    /// Queues a body chunk on the stream; `last` ends the body after it.
    fn push(&self, py: Python<'_>, data: Chunk<'_>, last: bool) -> PyResult<Py<PyAny>> {
        let outcome = self.stream.send(data);
        if last {
            // Queued data still reaches the client: closing only stops new data.
            self.stream.close();
        }
        match outcome {
            // Spec 2.3: sending to a gone client is a no-op.
            StreamSend::Sent | StreamSend::Closed => Ok(done(py)),
            StreamSend::Wait => self
                .ctx
                .wait_for_room(py, &self.runtime, self.stream.clone(), |py| Ok(py.None())),
        }
    }

    fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        let raised = self.ctx.report_app_end(py, error);
        let streaming = self
            .phase
            .lock()
            .map(|mut p| matches!(std::mem::replace(&mut *p, Phase::Done), Phase::Streaming))
            .unwrap_or(false);
        if streaming {
            // The body never got its last chunk: the client must see a cut, not an end.
            if !raised && !self.state.is_disconnected() {
                self.ctx
                    .log_error(py, "Application returned before completing its response body");
            }
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

fn response(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

pub(crate) fn header_map(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter()? {
        let item = item?;
        let mut pair = item.try_iter()?;
        let (Some(name), Some(value)) = (pair.next(), pair.next()) else {
            return Err(protocol_error("headers must be [name, value] pairs"));
        };
        let (name, value) = (name?, value?);
        let name = name
            .cast::<PyBytes>()
            .map_err(|_| protocol_error("header names must be bytes"))?;
        let value = value
            .cast::<PyBytes>()
            .map_err(|_| protocol_error("header values must be bytes"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PyValueError::new_err(format!("invalid header name: {:?}", name.as_bytes())))?;
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| PyValueError::new_err(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

#[pyclass(frozen, module = "granian._granian", name = "ASGIReceive")]
pub struct Receive(Arc<AsgiRequest>);

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.receive(py)
    }
}

#[pyclass(frozen, module = "granian._granian", name = "ASGISend")]
pub struct Send(Arc<AsgiRequest>);

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.0.send(py, &message)
    }
}

/// The `server` tuple of the scope for a listener.
pub fn server_tuple(py: Python<'_>, ip: &str, port: u16) -> PyResult<Py<PyTuple>> {
    Ok(PyTuple::new(py, [ip.into_py_any(py)?, port.into_py_any(py)?])?.unbind())
}
