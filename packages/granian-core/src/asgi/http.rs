//! ASGI 3 over HTTP: `receive` and `send`, implemented natively.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::header::HeaderMap;
use http::StatusCode;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::messages::{flow_error, message, protocol_error, sent_message, unsupported_message};
use super::scope::{scope, AsgiShared};
use crate::app::{AppContext, Call};
use crate::awaitable::{ready, ready_none};
use crate::convert::{byte_headers, bytes_of, chunk_of, status_code};
use crate::http::body::ResponseBody;
use crate::http::request::RequestBody;
use crate::http::response::{error_response, file_body, open_file, response, ResponseSlot};
use crate::http::state::RequestState;
use crate::http::stream::{Chunk, StreamSend, StreamSlot};
use crate::task::Finisher;

/// Starts the app for an HTTP request.
pub fn start(py: Python<'_>, ctx: &Arc<AppContext>, shared: &AsgiShared, call: Call) {
    let (parts, body) = call.req.into_parts();
    let request = Arc::new(AsgiRequest {
        ctx: ctx.clone(),
        runtime: call.runtime,
        state: call.state,
        body: RequestBody::new(body, ctx.meter.clone()),
        request_delivered: AtomicBool::new(false),
        response: call.response,
        stream: StreamSlot::default(),
        phase: Mutex::new(Phase::Start),
    });
    ctx.start_app(
        py,
        || {
            let scope = scope(py, shared, &ctx.listener, &parts, call.peer, false)?;
            let receive = Py::new(py, HttpReceive(request.clone()))?;
            let send = Py::new(py, HttpSend(request.clone()))?;
            let finished = request.clone();
            let finisher: Finisher = Box::new(move |py, error| finished.app_finished(py, error));
            Ok(((scope, receive, send), finisher))
        },
        || {
            request.response.fail_saying(FAILURE_TEXT);
        },
    );
}

/// The body of the 500 an ASGI app's client gets when the app fails before its response
/// started (granian's words).
const FAILURE_TEXT: &str = "Internal server error";

enum Phase {
    Start,
    /// The head, and whether trailers will follow the body.
    Started(StatusCode, HeaderMap, bool),
    Streaming {
        trailers: bool,
    },
    /// The body is complete; trailer fields arrive until `more_trailers` is false.
    Trailers(HeaderMap),
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

fn request_message(py: Python<'_>, body: &[u8], more: bool) -> PyResult<Py<PyAny>> {
    let msg = message(py, intern!(py, "http.request"))?;
    msg.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
    msg.set_item(intern!(py, "more_body"), more)?;
    Ok(msg.into_any().unbind())
}

fn disconnect_message(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(message(py, intern!(py, "http.disconnect"))?.into_any().unbind())
}

impl AsgiRequest {
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.body.is_finished() {
            self.request_delivered.store(true, Ordering::Relaxed);
            let body = self.body.clone();
            let read = async move { body.read_chunk().await };
            return self
                .ctx
                .future_from(py, &self.runtime, read, |py, outcome| match outcome {
                    Ok(Some((data, more))) => request_message(py, &data, more),
                    Ok(None) => request_message(py, b"", false),
                    // The client went away mid-body.
                    Err(_) => disconnect_message(py),
                });
        }
        if !self.request_delivered.swap(true, Ordering::Relaxed) {
            return ready(py, request_message(py, b"", false)?);
        }
        match self
            .ctx
            .disconnect_future(py, &self.state, disconnect_message(py)?, true)?
        {
            Some(future) => Ok(future),
            None => ready(py, disconnect_message(py)?),
        }
    }

    fn send(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (msg, kind) = sent_message(msg)?;
        let mut phase = self.phase.lock().map_err(|_| protocol_error("state poisoned"))?;
        match kind.to_str()? {
            "http.response.start" => {
                if !matches!(*phase, Phase::Start) {
                    return Err(flow_error("Response already started"));
                }
                let status = match msg.get_item(intern!(py, "status"))? {
                    Some(s) => status_code(s.extract::<u16>()?)?,
                    None => return Err(protocol_error("'http.response.start' without a status")),
                };
                let headers = match msg.get_item(intern!(py, "headers"))? {
                    Some(h) => byte_headers(&h)?,
                    None => HeaderMap::new(),
                };
                let trailers = match msg.get_item(intern!(py, "trailers"))? {
                    Some(t) => t.is_truthy()?,
                    None => false,
                };
                *phase = Phase::Started(status, headers, trailers);
                Ok(ready_none(py))
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
                    Phase::Trailers(fields) => {
                        *phase = Phase::Trailers(fields);
                        Err(protocol_error("'http.response.body' after the body completed"))
                    }
                    Phase::Started(status, headers, trailers) => {
                        // With trailers to come, even a one-piece body is streamed.
                        if more || trailers {
                            let body = ResponseBody::streamed(self.stream.open());
                            self.response.send(response(status, headers, body));
                            *phase = match more {
                                true => Phase::Streaming { trailers },
                                false => Phase::Trailers(HeaderMap::new()),
                            };
                            self.push(py, chunk(), false)
                        } else {
                            let body = body.as_ref().map(bytes_of).unwrap_or_default();
                            self.response.send(response(status, headers, ResponseBody::full(body)));
                            Ok(ready_none(py))
                        }
                    }
                    Phase::Streaming { trailers } => {
                        *phase = match (more, trailers) {
                            (true, _) => Phase::Streaming { trailers },
                            (false, true) => Phase::Trailers(HeaderMap::new()),
                            (false, false) => Phase::Done,
                        };
                        self.push(py, chunk(), !more && !trailers)
                    }
                }
            }
            "http.response.trailers" => match std::mem::replace(&mut *phase, Phase::Done) {
                Phase::Trailers(mut fields) => {
                    if let Some(h) = msg.get_item(intern!(py, "headers"))? {
                        for (name, value) in byte_headers(&h)? {
                            if let Some(name) = name {
                                fields.append(name, value);
                            }
                        }
                    }
                    let more = match msg.get_item(intern!(py, "more_trailers"))? {
                        Some(m) => m.is_truthy()?,
                        None => false,
                    };
                    if more {
                        *phase = Phase::Trailers(fields);
                    } else {
                        self.stream.close_with_trailers(fields);
                    }
                    Ok(ready_none(py))
                }
                other => {
                    *phase = other;
                    Err(protocol_error(
                        "'http.response.trailers' needs 'trailers': True in 'http.response.start' and a completed body",
                    ))
                }
            },
            "http.response.pathsend" => {
                let path: std::path::PathBuf = match msg.get_item(intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => return Err(protocol_error("'http.response.pathsend' without a path")),
                };
                match std::mem::replace(&mut *phase, Phase::Done) {
                    Phase::Started(status, headers, _) => {
                        let sent = match open_file(&path) {
                            Some((file, len)) => response(status, headers, file_body(file, 0, len)?),
                            None => {
                                self.ctx
                                    .log_error(py, &format!("pathsend: cannot open {}", path.display()));
                                error_response(StatusCode::NOT_FOUND)
                            }
                        };
                        self.response.send(sent);
                        Ok(ready_none(py))
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
            StreamSend::Sent | StreamSend::Closed => Ok(ready_none(py)),
            StreamSend::Wait => self
                .ctx
                .when_done(py, &self.runtime, self.stream.clone().room(), |py| Ok(py.None())),
        }
    }

    fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        let raised = self.ctx.report_app_end(py, error);
        let streaming = self
            .phase
            .lock()
            .map(|mut p| {
                matches!(
                    std::mem::replace(&mut *p, Phase::Done),
                    Phase::Streaming { .. } | Phase::Trailers(_)
                )
            })
            .unwrap_or(false);
        // A body that never got its last chunk: the client must see a cut, not an end.
        if streaming && !raised && !self.state.is_disconnected() {
            self.ctx
                .log_error(py, "Application returned before completing its response body");
        }
        if self
            .ctx
            .settle(py, &self.state, &self.response, &self.stream, streaming, raised)
        {
            self.response.fail_saying(FAILURE_TEXT);
        }
    }
}

#[pyclass(frozen, module = "granian._granian", name = "ASGIReceive")]
pub struct HttpReceive(Arc<AsgiRequest>);

#[pymethods]
impl HttpReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.receive(py)
    }
}

#[pyclass(frozen, module = "granian._granian", name = "ASGISend")]
pub struct HttpSend(Arc<AsgiRequest>);

#[pymethods]
impl HttpSend {
    fn __call__(&self, py: Python<'_>, message: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.0.send(py, &message)
    }
}
