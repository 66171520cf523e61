//! RSGI websockets: starting the app, the protocol object (`accept`, `close`) and the
//! transport.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::errors::{ProtocolClosed, ProtocolError};
use super::scope::Scope;
use crate::app::{AppContext, Call};
use crate::awaitable::{ready, ready_none};
use crate::bridge::resolve;
use crate::http::response::{error_response, ResponseSlot};
use crate::task::Finisher;
use crate::ws::{establish, switching_protocols, Outgoing, Sent, WsChannel, WsEvent, WsUpgrade, MAX_MESSAGE};

/// Starts the app for a websocket upgrade request.
pub fn start(
    py: Python<'_>,
    ctx: &Arc<AppContext>,
    req: Request<Incoming>,
    peer: SocketAddr,
    call: Call,
    upgrade: WsUpgrade,
) {
    let (parts, _) = req.into_parts();
    // On failure the protocol, and its response slot, go down: the client gets a 500.
    ctx.start_app(
        py,
        || {
            let scope = Py::new(py, Scope::new(py, "ws", parts, peer, ctx.listener.clone())?)?;
            let protocol = Py::new(py, WsProtocol::new(ctx.clone(), call.runtime, call.response, upgrade))?;
            let finished = protocol.clone_ref(py);
            let finisher: Finisher = Box::new(move |py, error| finished.get().app_finished(py, error));
            Ok(((scope, protocol), finisher))
        },
        || {},
    );
}

/// The upgraded connection, once established, and a close asked for before that.
#[derive(Default)]
pub(crate) struct Link {
    channel: Option<Arc<WsChannel>>,
    pending_close: Option<u16>,
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIWebsocketProtocol")]
pub struct WsProtocol {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    response: ResponseSlot,
    upgrade: Mutex<Option<WsUpgrade>>,
    link: Arc<Mutex<Link>>,
}

impl WsProtocol {
    pub fn new(
        ctx: Arc<AppContext>,
        runtime: tokio::runtime::Handle,
        response: ResponseSlot,
        upgrade: WsUpgrade,
    ) -> Self {
        Self {
            ctx,
            runtime,
            response,
            upgrade: Mutex::new(Some(upgrade)),
            link: Arc::new(Mutex::new(Link::default())),
        }
    }

    /// The app ended: reject a websocket it never accepted, close one it did.
    pub fn app_finished(&self, py: Python<'_>, error: Option<PyErr>) {
        self.ctx.report_app_end(py, error);
        self.close(Some(1000));
    }
}

#[pymethods]
impl WsProtocol {
    fn accept(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let upgrade = self
            .upgrade
            .lock()
            .ok()
            .and_then(|mut u| u.take())
            .ok_or_else(|| ProtocolError::new_err("the websocket was already accepted or closed"))?;
        self.response
            .send(switching_protocols(&upgrade.accept_key, http::HeaderMap::new()));
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let ctx = self.ctx.clone();
        let runtime = self.runtime.clone();
        let link = self.link.clone();
        self.runtime.spawn(async move {
            let channel = establish(upgrade.on_upgrade, MAX_MESSAGE).await.ok();
            if let (Some(channel), Ok(mut link)) = (&channel, link.lock()) {
                link.channel = Some(channel.clone());
                if let Some(code) = link.pending_close.take() {
                    let _ = channel.send(Outgoing::Close(code, String::new()));
                }
            }
            let bridge = ctx.bridge.clone();
            resolve(&bridge, reply, move |py| match channel {
                Some(channel) => {
                    let closed = Arc::new(AtomicBool::new(false));
                    Ok(Py::new(
                        py,
                        WsTransport {
                            ctx,
                            runtime,
                            channel,
                            closed,
                        },
                    )?
                    .into_any())
                }
                None => Err(ProtocolClosed::new_err("the websocket upgrade failed")),
            });
        });
        Ok(future)
    }

    #[pyo3(signature = (status = None))]
    fn close(&self, status: Option<u16>) {
        if self.upgrade.lock().ok().and_then(|mut u| u.take()).is_some() {
            // Closing before accepting rejects the upgrade.
            self.response.send(error_response(StatusCode::FORBIDDEN));
            return;
        }
        let code = status.unwrap_or(1000);
        if let Ok(mut link) = self.link.lock() {
            match &link.channel {
                Some(channel) => {
                    let _ = channel.send(Outgoing::Close(code, String::new()));
                }
                None => link.pending_close = Some(code),
            }
        }
    }
}

/// A received websocket message: `kind` 0 (closed), 1 (bytes) or 2 (str), and `data`.
#[pyclass(frozen, module = "granian._granian", name = "RSGIWebsocketMessage")]
pub struct WsMessage {
    #[pyo3(get)]
    kind: u8,
    #[pyo3(get)]
    data: Py<PyAny>,
}

fn message(py: Python<'_>, event: WsEvent) -> PyResult<Py<PyAny>> {
    let (kind, data) = match event {
        WsEvent::Closed(..) => (0, py.None()),
        WsEvent::Binary(data) => (1, PyBytes::new(py, &data).into_any().unbind()),
        WsEvent::Text(text) => (2, PyString::new(py, &text).into_any().unbind()),
    };
    Ok(Py::new(py, WsMessage { kind, data })?.into_any())
}

#[pyclass(frozen, module = "granian._granian", name = "RSGIWebsocketTransport")]
pub struct WsTransport {
    ctx: Arc<AppContext>,
    runtime: tokio::runtime::Handle,
    channel: Arc<WsChannel>,
    /// Set once the app received the close message: receiving again raises ProtocolClosed
    /// (as in granian 2.8.7) instead of handing out close messages forever.
    closed: Arc<AtomicBool>,
}

impl WsTransport {
    fn note_close(&self, event: &WsEvent) {
        if matches!(event, WsEvent::Closed(..)) {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    fn send(&self, py: Python<'_>, outgoing: Outgoing) -> PyResult<Py<PyAny>> {
        match self.channel.send(outgoing) {
            Sent::Queued => Ok(ready_none(py)),
            Sent::Closed => Err(ProtocolClosed::new_err("the websocket is closed")),
            Sent::Full(sender, message) => {
                let future = self.ctx.handles.future(py)?.unbind();
                let reply = future.clone_ref(py);
                let bridge = self.ctx.bridge.clone();
                self.runtime.spawn(async move {
                    let sent = sender.send(message).await;
                    resolve(&bridge, reply, move |py| match sent {
                        Ok(()) => Ok(py.None()),
                        Err(_) => Err(ProtocolClosed::new_err("the websocket is closed")),
                    });
                });
                Ok(future)
            }
        }
    }
}

#[pymethods]
impl WsTransport {
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ProtocolClosed::new_err("the websocket is closed"));
        }
        if let Ok(event) = self.channel.try_receive() {
            self.note_close(&event);
            return ready(py, message(py, event)?);
        }
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let bridge = self.ctx.bridge.clone();
        let channel = self.channel.clone();
        let closed = self.closed.clone();
        self.runtime.spawn(async move {
            let event = channel.receive().await;
            if matches!(event, WsEvent::Closed(..)) {
                closed.store(true, Ordering::Relaxed);
            }
            resolve(&bridge, reply, move |py| message(py, event));
        });
        Ok(future)
    }

    fn send_bytes(&self, py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Py<PyAny>> {
        self.send(py, Outgoing::Binary(Bytes::copy_from_slice(data.as_bytes())))
    }

    fn send_str(&self, py: Python<'_>, data: Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
        self.send(py, Outgoing::Text(data.to_str()?.to_owned()))
    }
}
