//! ASGI websockets: `websocket.*` messages over the core's websocket channel, and the
//! `websocket.http.response` denial extension.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, StatusCode};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::messages::{message as msg, protocol_error, sent_message, unsupported_message};
use super::scope::{scope, AsgiShared};
use crate::app::{AppContext, Call};
use crate::awaitable::{ready, ready_none};
use crate::bridge::resolve;
use crate::convert::{byte_headers, status_code};
use crate::http::body::ResponseBody;
use crate::http::response::response;
use crate::task::Finisher;
use crate::ws::{Outgoing, PendingUpgrade, Sent, WsChannel, WsEvent, WsUpgrade};

/// Starts the app for a websocket upgrade request.
pub fn start(py: Python<'_>, ctx: &Arc<AppContext>, shared: &AsgiShared, call: Call, upgrade: WsUpgrade) {
    let (parts, _) = call.req.into_parts();
    let pending = PendingUpgrade::new(call.response, upgrade);
    // On failure the socket, and the pending upgrade, go down: the client gets a 500.
    ctx.start_app(
        py,
        || {
            let scope = scope(py, shared, &ctx.listener, &parts, call.peer, true)?;
            let socket = Arc::new(AsgiWebsocket::new(ctx.clone(), call.runtime, pending));
            let receive = Py::new(py, WsReceive(socket.clone()))?;
            let send = Py::new(py, WsSend(socket.clone()))?;
            let finisher: Finisher = Box::new(move |py, error| socket.app_finished(py, error));
            Ok(((scope, receive, send), finisher))
        },
        || {},
    );
}

/// Work waiting for the upgrade to complete; `None` if it failed.
type OnChannel = Box<dyn FnOnce(Option<Arc<WsChannel>>) + Send>;

enum Phase {
    /// `websocket.connect` not yet received by the app.
    Connecting,
    /// The app got `websocket.connect` and has not answered.
    Handshake,
    /// A denial response started: status and headers, body so far.
    Denying(StatusCode, HeaderMap, BytesMut),
    /// Accepted: waiting for, or holding, the established channel.
    Accepted,
    Closed,
}

struct State {
    phase: Phase,
    channel: Option<Arc<WsChannel>>,
    /// Futures waiting for the channel to be established (receives, early sends).
    waiting: Vec<OnChannel>,
    established: bool,
}

pub struct AsgiWebsocket {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    pending: PendingUpgrade,
    state: Arc<Mutex<State>>,
}

fn event_message(py: Python<'_>, event: WsEvent) -> PyResult<Py<PyAny>> {
    Ok(match event {
        WsEvent::Text(text) => {
            let m = msg(py, intern!(py, "websocket.receive"))?;
            m.set_item(intern!(py, "text"), text)?;
            m
        }
        WsEvent::Binary(data) => {
            let m = msg(py, intern!(py, "websocket.receive"))?;
            m.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
            m
        }
        WsEvent::Closed(code, reason) => disconnect(py, code, &reason)?,
    }
    .into_any()
    .unbind())
}

fn disconnect<'py>(py: Python<'py>, code: u16, reason: &str) -> PyResult<Bound<'py, PyDict>> {
    let m = msg(py, intern!(py, "websocket.disconnect"))?;
    m.set_item(intern!(py, "code"), code)?;
    m.set_item(intern!(py, "reason"), reason)?;
    Ok(m)
}

impl AsgiWebsocket {
    fn new(ctx: Arc<AppContext>, runtime: tokio::runtime::Handle, pending: PendingUpgrade) -> Self {
        Self {
            ctx,
            runtime,
            pending,
            state: Arc::new(Mutex::new(State {
                phase: Phase::Connecting,
                channel: None,
                waiting: Vec::new(),
                established: false,
            })),
        }
    }

    /// Runs `then` with the channel once the upgrade completed (at once if it has).
    fn with_channel(&self, then: OnChannel) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.established {
            let channel = state.channel.clone();
            drop(state);
            then(channel);
        } else {
            state.waiting.push(then);
        }
    }

    pub fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        {
            let mut state = self.state.lock().map_err(|_| protocol_error("state poisoned"))?;
            match state.phase {
                Phase::Connecting => {
                    state.phase = Phase::Handshake;
                    return ready(py, msg(py, intern!(py, "websocket.connect"))?.into_any().unbind());
                }
                Phase::Closed if state.channel.is_none() => {
                    return ready(py, disconnect(py, 1006, "")?.into_any().unbind());
                }
                _ => {}
            }
            if let Some(channel) = &state.channel {
                if let Ok(event) = channel.try_receive() {
                    return ready(py, event_message(py, event)?);
                }
            }
        }
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let bridge = self.ctx.bridge.clone();
        let runtime = self.runtime.clone();
        self.with_channel(Box::new(move |channel| match channel {
            Some(channel) => {
                runtime.spawn(async move {
                    let event = channel.receive().await;
                    resolve(&bridge, reply, move |py| event_message(py, event));
                });
            }
            None => resolve(&bridge, reply, |py| Ok(disconnect(py, 1006, "")?.into_any().unbind())),
        }));
        Ok(future)
    }

    pub fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (message, kind) = sent_message(message)?;
        let mut state = self.state.lock().map_err(|_| protocol_error("state poisoned"))?;
        match kind.to_str()? {
            "websocket.accept" => {
                if !matches!(state.phase, Phase::Handshake | Phase::Connecting) {
                    return Err(protocol_error("'websocket.accept' is only valid during the handshake"));
                }
                let mut headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => byte_headers(&h)?,
                    None => HeaderMap::new(),
                };
                if let Some(sub) = message.get_item(intern!(py, "subprotocol"))? {
                    if !sub.is_none() {
                        let sub: String = sub.extract()?;
                        let value = HeaderValue::from_str(&sub)
                            .map_err(|_| protocol_error(format!("invalid subprotocol {sub:?}")))?;
                        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
                    }
                }
                let shared = self.state.clone();
                let accepted = self.pending.accept(&self.runtime, headers, move |channel| {
                    let waiting = {
                        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                        state.channel = channel.clone();
                        state.established = true;
                        std::mem::take(&mut state.waiting)
                    };
                    for then in waiting {
                        then(channel.clone());
                    }
                });
                if !accepted {
                    return Err(protocol_error("the websocket was already answered"));
                }
                state.phase = Phase::Accepted;
                Ok(ready_none(py))
            }
            "websocket.send" => {
                if !matches!(state.phase, Phase::Accepted) {
                    if matches!(state.phase, Phase::Closed) {
                        return Ok(ready_none(py));
                    }
                    return Err(protocol_error("'websocket.send' before 'websocket.accept'"));
                }
                let outgoing = match (
                    message.get_item(intern!(py, "bytes"))?.filter(|b| !b.is_none()),
                    message.get_item(intern!(py, "text"))?.filter(|t| !t.is_none()),
                ) {
                    (Some(b), _) => Outgoing::Binary(Bytes::copy_from_slice(
                        b.cast::<PyBytes>()
                            .map_err(|_| protocol_error("'bytes' must be bytes"))?
                            .as_bytes(),
                    )),
                    (None, Some(t)) => Outgoing::Text(
                        t.cast::<PyString>()
                            .map_err(|_| protocol_error("'text' must be a str"))?
                            .to_str()?
                            .to_owned(),
                    ),
                    (None, None) => return Err(protocol_error("'websocket.send' needs 'bytes' or 'text'")),
                };
                drop(state);
                self.deliver(py, outgoing)
            }
            "websocket.close" => {
                let code: u16 = match message.get_item(intern!(py, "code"))? {
                    Some(c) if !c.is_none() => c.extract()?,
                    _ => 1000,
                };
                let reason: String = match message.get_item(intern!(py, "reason"))? {
                    Some(r) if !r.is_none() => r.extract()?,
                    _ => String::new(),
                };
                let accepted = matches!(state.phase, Phase::Accepted);
                state.phase = Phase::Closed;
                drop(state);
                if accepted {
                    return self.deliver(py, Outgoing::Close(code, reason));
                }
                self.pending.reject();
                Ok(ready_none(py))
            }
            "websocket.http.response.start" => {
                if !matches!(state.phase, Phase::Handshake | Phase::Connecting) {
                    return Err(protocol_error(
                        "'websocket.http.response.start' is only valid during the handshake",
                    ));
                }
                let status: u16 = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| protocol_error("'websocket.http.response.start' without a status"))?
                    .extract()?;
                let status = status_code(status)?;
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => byte_headers(&h)?,
                    None => HeaderMap::new(),
                };
                state.phase = Phase::Denying(status, headers, BytesMut::new());
                Ok(ready_none(py))
            }
            "websocket.http.response.body" => {
                let Phase::Denying(_, _, body) = &mut state.phase else {
                    return Err(protocol_error("'websocket.http.response.body' before its start"));
                };
                if let Some(b) = message.get_item(intern!(py, "body"))? {
                    body.extend_from_slice(
                        b.cast::<PyBytes>()
                            .map_err(|_| protocol_error("'body' must be bytes"))?
                            .as_bytes(),
                    );
                }
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                if !more {
                    if let Phase::Denying(status, headers, body) = std::mem::replace(&mut state.phase, Phase::Closed) {
                        self.pending
                            .deny(response(status, headers, ResponseBody::full(body.freeze())));
                    }
                }
                Ok(ready_none(py))
            }
            _ => Err(unsupported_message()),
        }
    }

    fn deliver(&self, py: Python<'_>, outgoing: Outgoing) -> PyResult<Py<PyAny>> {
        let channel = self.state.lock().ok().and_then(|s| s.channel.clone());
        if let Some(channel) = channel {
            match channel.send(outgoing) {
                Sent::Queued | Sent::Closed => return Ok(ready_none(py)),
                // Spec 2.3: sending to a closed websocket is a no-op.
                Sent::Full(pending) => {
                    return self
                        .ctx
                        .when_done(py, &self.runtime, pending.deliver(), |py| Ok(py.None()))
                }
            }
        }
        // Accepted but not yet established: send once it is.
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let bridge = self.ctx.bridge.clone();
        let runtime = self.runtime.clone();
        self.with_channel(Box::new(move |channel| {
            runtime.spawn(async move {
                if let Some(channel) = channel {
                    if let Sent::Full(pending) = channel.send(outgoing) {
                        pending.deliver().await;
                    }
                }
                resolve(&bridge, reply, |py| Ok(py.None()));
            });
        }));
        Ok(future)
    }

    pub fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        self.ctx.report_app_end(py, error);
        if self.pending.reject() {
            // Returned (or failed) without accepting: the handshake is refused.
            return;
        }
        let accepted = self
            .state
            .lock()
            .map(|mut s| matches!(std::mem::replace(&mut s.phase, Phase::Closed), Phase::Accepted))
            .unwrap_or(false);
        if accepted {
            let _ = self.deliver(py, Outgoing::Close(1000, String::new()));
        }
    }
}

#[pyclass(frozen, module = "granian._granian", name = "ASGIWebsocketReceive")]
pub struct WsReceive(pub Arc<AsgiWebsocket>);

#[pymethods]
impl WsReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.receive(py)
    }
}

#[pyclass(frozen, module = "granian._granian", name = "ASGIWebsocketSend")]
pub struct WsSend(pub Arc<AsgiWebsocket>);

#[pymethods]
impl WsSend {
    fn __call__(&self, py: Python<'_>, message: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.0.send(py, &message)
    }
}
