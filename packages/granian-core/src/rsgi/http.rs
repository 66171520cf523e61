//! The RSGI HTTP protocol object and the handler that starts an app per request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::ReaderStream;

use super::scope::{ListenerInfo, Scope};
use super::{ProtocolClosed, ProtocolError};
use crate::bridge::{awaitable_iter, resolve, AppCoroutine, BridgeQueue, Failed, LoopHandles, Ready};
use crate::http::body::{DisconnectGuard, FileReader, Payload, RequestState, ResponseBody};
use crate::http::server::{error_response, Handler};
use crate::http::util::check_range;

const STREAM_QUEUE: usize = 16;
const FILE_CHUNK: usize = 128 * 1024;

type Responder = oneshot::Sender<Response<ResponseBody>>;
type StreamSender = mpsc::Sender<Bytes>;

/// The app and the loop objects a worker's requests share.
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

    /// Logs on `_granian` with the full traceback of `err`.
    pub fn log_app_error(&self, py: Python<'_>, message: &str, err: &PyErr) {
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        let kwargs = PyDict::new(py);
        let _ = kwargs.set_item("exc_info", exc_info);
        let _ = self.logger.bind(py).call_method("error", (message,), Some(&kwargs));
    }
}

pub struct RsgiHandler {
    pub ctx: Arc<AppContext>,
}

impl Handler for RsgiHandler {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(RequestState::new(self.ctx.bridge.clone()));
        let guard = DisconnectGuard(state.clone());
        let ctx = self.ctx.clone();
        let runtime = tokio::runtime::Handle::current();
        self.ctx.bridge.schedule(Box::new(move |py| {
            start_request(py, &ctx, req, peer, tx, state, runtime);
        }));
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

fn start_request(
    py: Python<'_>,
    ctx: &Arc<AppContext>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tx: Responder,
    state: Arc<RequestState>,
    runtime: tokio::runtime::Handle,
) {
    let (parts, body) = req.into_parts();
    let body_done = body.is_end_stream();
    let started = (|| -> PyResult<()> {
        let scope = Scope::new(py, "http", parts, peer, ctx.listener.clone())?;
        let protocol = Py::new(
            py,
            HttpProtocol {
                ctx: ctx.clone(),
                runtime,
                state,
                body: Arc::new(Mutex::new(BodySource {
                    incoming: if body_done { None } else { Some(body) },
                    finished: body_done,
                })),
                responder: Mutex::new(Some(tx)),
                stream: Arc::new(Mutex::new(None)),
            },
        )?;
        let outcome = (|| -> PyResult<()> {
            let coro = ctx.app.bind(py).call1((Py::new(py, scope)?, protocol.clone_ref(py)))?;
            let finished = protocol.clone_ref(py);
            let runner = AppCoroutine::new(
                awaitable_iter(&coro)?.unbind(),
                Box::new(move |py, error| finished.get().app_finished(py, error)),
            );
            ctx.handles.create_task.bind(py).call1((runner,))?;
            Ok(())
        })();
        if let Err(err) = outcome {
            ctx.log_app_error(py, "Application callable raised an exception", &err);
            protocol.get().fail();
        }
        Ok(())
    })();
    if let Err(err) = started {
        // The responder was moved into the failed protocol and dropped with it: hyper sends 500.
        ctx.log_app_error(py, "Cannot start the request", &err);
    }
}

struct BodySource {
    incoming: Option<Incoming>,
    finished: bool,
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIHTTPProtocol")]
pub struct HttpProtocol {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    state: Arc<RequestState>,
    body: Arc<Mutex<BodySource>>,
    responder: Mutex<Option<Responder>>,
    stream: Arc<Mutex<Option<StreamSender>>>,
}

impl HttpProtocol {
    fn respond(&self, response: Response<ResponseBody>) -> PyResult<()> {
        let responder = self
            .responder
            .lock()
            .map_err(|_| ProtocolError::new_err("protocol state poisoned"))?
            .take()
            .ok_or_else(|| ProtocolError::new_err("a response was already sent for this request"))?;
        // A send error means the client is gone: nothing left to tell it.
        let _ = responder.send(response);
        Ok(())
    }

    /// Called when the app finished: end a stream, or answer 500 for an app that never did.
    fn fail(&self) {
        if let Ok(mut responder) = self.responder.lock() {
            if let Some(responder) = responder.take() {
                let _ = responder.send(error_response(StatusCode::INTERNAL_SERVER_ERROR));
            }
        }
    }

    fn finish(&self) -> bool {
        if let Ok(mut stream) = self.stream.lock() {
            stream.take();
        }
        self.responder.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    fn spawn_body_read(&self, py: Python<'_>, whole: bool) -> PyResult<Py<PyAny>> {
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let source = self.body.clone();
        let bridge = self.ctx.bridge.clone();
        self.runtime.spawn(async move {
            let taken = source.lock().ok().and_then(|mut s| s.incoming.take());
            let Some(mut incoming) = taken else {
                resolve(&bridge, reply, |_| {
                    Err(ProtocolError::new_err(
                        "the request body was already consumed, or is being read by another call",
                    ))
                });
                return;
            };
            if whole {
                let outcome = incoming.collect().await.map(|c| c.to_bytes());
                if let Ok(mut s) = source.lock() {
                    s.finished = true;
                }
                resolve(&bridge, reply, move |py| match outcome {
                    Ok(data) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                    Err(err) => Err(ProtocolClosed::new_err(format!("request body interrupted: {err}"))),
                });
                return;
            }
            loop {
                match incoming.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if data.is_empty() {
                                continue;
                            }
                            if let Ok(mut s) = source.lock() {
                                s.incoming = Some(incoming);
                            }
                            resolve(&bridge, reply, move |py| {
                                Ok(PyBytes::new(py, &data).into_any().unbind())
                            });
                            return;
                        }
                    }
                    Some(Err(err)) => {
                        if let Ok(mut s) = source.lock() {
                            s.finished = true;
                        }
                        resolve(&bridge, reply, move |_| {
                            Err(ProtocolClosed::new_err(format!("request body interrupted: {err}")))
                        });
                        return;
                    }
                    None => {
                        if let Ok(mut s) = source.lock() {
                            s.finished = true;
                        }
                        resolve(&bridge, reply, |_| Err(PyStopAsyncIteration::new_err(())));
                        return;
                    }
                }
            }
        });
        Ok(future)
    }

    /// The app's coroutine ended: log its failure, end a stream, answer 500 if it never did.
    fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        let raised = match error {
            Some(err) if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) => {
                log::debug!("the application task was cancelled");
                true
            }
            Some(err) => {
                self.ctx
                    .log_app_error(py, "Application callable raised an exception", &err);
                true
            }
            None => false,
        };
        if self.finish() {
            if !raised && !self.state.is_disconnected() {
                self.ctx
                    .log_error(py, "Application returned without sending a response: answering 500");
            }
            self.fail();
        }
    }

    fn body_finished(&self) -> bool {
        self.body.lock().map(|s| s.finished).unwrap_or(true)
    }
}

fn status_code(status: u16) -> PyResult<StatusCode> {
    StatusCode::from_u16(status).map_err(|_| PyValueError::new_err(format!("invalid HTTP status code: {status}")))
}

fn build_response(status: u16, headers: &Bound<'_, PyAny>, body: ResponseBody) -> PyResult<Response<ResponseBody>> {
    let mut response = Response::new(body);
    *response.status_mut() = status_code(status)?;
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

fn open_file(path: &str) -> Option<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some((file, meta.len()))
}

fn file_body(mut file: std::fs::File, start: u64, len: u64) -> std::io::Result<ResponseBody> {
    if start > 0 {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))?;
    }
    let reader: FileReader = Box::pin(tokio::fs::File::from_std(file).take(len));
    Ok(ResponseBody::new(Payload::File {
        chunks: ReaderStream::with_capacity(reader, FILE_CHUNK),
        len,
    }))
}

#[pymethods]
impl HttpProtocol {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.body_finished() {
            return Ok(Py::new(py, Ready::new(PyBytes::new(py, b"").into_any().unbind()))?.into_any());
        }
        self.spawn_body_read(py, true)
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.body_finished() {
            return Ok(Py::new(py, Failed::new(PyStopAsyncIteration::new_err(())))?.into_any());
        }
        self.spawn_body_read(py, false)
    }

    fn client_disconnect(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.state.is_disconnected() {
            return Ok(Py::new(py, Ready::new(py.None()))?.into_any());
        }
        let future = self.ctx.handles.future(py)?.unbind();
        if !self.state.watch_disconnect(future.clone_ref(py)) {
            return Ok(Py::new(py, Ready::new(py.None()))?.into_any());
        }
        Ok(future)
    }

    #[pyo3(signature = (status = 200, headers = None))]
    fn response_empty(&self, py: Python<'_>, status: u16, headers: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let headers = headers.unwrap_or_else(|| pyo3::types::PyList::empty(py).into_any());
        self.respond(build_response(status, &headers, ResponseBody::empty())?)
    }

    #[pyo3(signature = (status, headers, body))]
    fn response_str(&self, status: u16, headers: Bound<'_, PyAny>, body: Bound<'_, PyString>) -> PyResult<()> {
        let data = Bytes::copy_from_slice(body.to_str()?.as_bytes());
        self.respond(build_response(status, &headers, ResponseBody::full(data))?)
    }

    #[pyo3(signature = (status, headers, body))]
    fn response_bytes(&self, status: u16, headers: Bound<'_, PyAny>, body: Bound<'_, PyBytes>) -> PyResult<()> {
        let data = Bytes::copy_from_slice(body.as_bytes());
        self.respond(build_response(status, &headers, ResponseBody::full(data))?)
    }

    #[pyo3(signature = (status, headers, file))]
    fn response_file(&self, status: u16, headers: Bound<'_, PyAny>, file: PathBuf) -> PyResult<()> {
        let path = file.to_string_lossy();
        let response = match open_file(&path) {
            Some((handle, len)) => build_response(status, &headers, file_body(handle, 0, len)?)?,
            None => {
                log::info!("response_file: cannot open {path}");
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
        let path = file.to_string_lossy();
        let response = match open_file(&path) {
            Some((handle, len)) => {
                let (start, end) = check_range(start, end, len).map_err(PyValueError::new_err)?;
                build_response(status, &headers, file_body(handle, start, end - start)?)?
            }
            None => {
                log::info!("response_file_range: cannot open {path}");
                error_response(StatusCode::NOT_FOUND)
            }
        };
        self.respond(response)
    }

    #[pyo3(signature = (status, headers))]
    fn response_stream(&self, py: Python<'_>, status: u16, headers: Bound<'_, PyAny>) -> PyResult<Py<StreamTransport>> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let response = build_response(status, &headers, ResponseBody::new(Payload::Stream(rx)))?;
        self.respond(response)?;
        if let Ok(mut slot) = self.stream.lock() {
            *slot = Some(tx);
        }
        Py::new(
            py,
            StreamTransport {
                sender: self.stream.clone(),
                bridge: self.ctx.bridge.clone(),
                handles_future: self.ctx.handles.create_future.clone_ref(py),
                runtime: self.runtime.clone(),
            },
        )
    }
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIHTTPStreamTransport")]
pub struct StreamTransport {
    sender: Arc<Mutex<Option<StreamSender>>>,
    bridge: Arc<BridgeQueue>,
    handles_future: Py<PyAny>,
    runtime: tokio::runtime::Handle,
}

impl StreamTransport {
    fn send(&self, py: Python<'_>, data: Bytes) -> PyResult<Py<PyAny>> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| ProtocolClosed::new_err("the response stream is closed"))?;
        match sender.try_send(data) {
            Ok(()) => Ok(Py::new(py, Ready::new(py.None()))?.into_any()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ProtocolClosed::new_err("the client disconnected")),
            Err(mpsc::error::TrySendError::Full(data)) => {
                // The client reads slower than the app writes: wait for room, off the loop.
                let future = self.handles_future.bind(py).call0()?.unbind();
                let reply = future.clone_ref(py);
                let bridge = self.bridge.clone();
                self.runtime.spawn(async move {
                    let sent = sender.send(data).await;
                    resolve(&bridge, reply, move |py| match sent {
                        Ok(()) => Ok(py.None()),
                        Err(_) => Err(ProtocolClosed::new_err("the client disconnected")),
                    });
                });
                Ok(future)
            }
        }
    }
}

#[pymethods]
impl StreamTransport {
    fn send_bytes(&self, py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Py<PyAny>> {
        self.send(py, Bytes::copy_from_slice(data.as_bytes()))
    }

    fn send_str(&self, py: Python<'_>, data: Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
        self.send(py, Bytes::copy_from_slice(data.to_str()?.as_bytes()))
    }
}
