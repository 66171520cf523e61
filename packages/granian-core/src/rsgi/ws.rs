//! RSGI websockets: starting the app, the protocol object (`accept`, `close`) and the
//! transport.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::errors::{ProtocolClosed, ProtocolError};
use super::scope::Scope;
use crate::app::{AppContext, Call};
use crate::awaitable::{ready, ready_none};
use crate::bridge::resolve;
use crate::task::Finisher;
use crate::ws::{Outgoing, PendingUpgrade, Sent, WsChannel, WsEvent, WsUpgrade};

/// Starts the app for a websocket upgrade request.
pub fn start(py: Python<'_>, ctx: &Arc<AppContext>, _: &(), call: Call, upgrade: WsUpgrade) {
    let (parts, _) = call.req.into_parts();
    let pending = PendingUpgrade::new(call.response, upgrade);
    // On failure the protocol, and the pending upgrade, go down: the client gets a 500.
    ctx.start_app(
        py,
        || {
            let scope = Py::new(py, Scope::new(py, "ws", parts, call.peer, ctx.listener.clone())?)?;
            let protocol = Py::new(py, WsProtocol::new(ctx.clone(), call.runtime, pending))?;
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
    pending: PendingUpgrade,
    link: Arc<Mutex<Link>>,
}

impl WsProtocol {
    fn new(ctx: Arc<AppContext>, runtime: tokio::runtime::Handle, pending: PendingUpgrade) -> Self {
        Self {
            ctx,
            runtime,
            pending,
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
        let future = self.ctx.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let ctx = self.ctx.clone();
        let runtime = self.runtime.clone();
        let link = self.link.clone();
        let accepted = self.pending.accept(&self.runtime, HeaderMap::new(), move |channel| {
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
                    let transport = WsTransport {
                        ctx,
                        runtime,
                        channel,
                        closed,
                    };
                    Ok(Py::new(py, transport)?.into_any())
                }
                None => Err(ProtocolClosed::new_err("the websocket upgrade failed")),
            });
        });
        if !accepted {
            return Err(ProtocolError::new_err("the websocket was already accepted or closed"));
        }
        Ok(future)
    }

    #[pyo3(signature = (status = None))]
    fn close(&self, status: Option<u16>) {
        if self.pending.reject() {
            // Closing before accepting rejects the upgrade.
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
            Sent::Full(pending) => self.ctx.when_done(py, &self.runtime, pending.deliver(), |_| {
                Err(ProtocolClosed::new_err("the websocket is closed"))
            }),
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
        let channel = self.channel.clone();
        let closed = self.closed.clone();
        let received = async move {
            let event = channel.receive().await;
            if matches!(event, WsEvent::Closed(..)) {
                closed.store(true, Ordering::Relaxed);
            }
            event
        };
        self.ctx.future_from(py, &self.runtime, received, message)
    }

    fn send_bytes(&self, py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Py<PyAny>> {
        self.send(py, Outgoing::Binary(Bytes::copy_from_slice(data.as_bytes())))
    }

    fn send_str(&self, py: Python<'_>, data: Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
        self.send(py, Outgoing::Text(data.to_str()?.to_owned()))
    }
}
