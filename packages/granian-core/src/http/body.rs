//! Response bodies handed to hyper, and the per-request state that tells the app when its
//! client went away.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use pyo3::prelude::*;
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use super::response::{StreamRead, StreamReader};
use crate::bridge::{resolve, BridgeQueue};

pub type FileReader = Pin<Box<dyn AsyncRead + Send + Sync>>;

pub enum Payload {
    Empty,
    Full(Option<Bytes>),
    /// A body the app writes piece by piece; an aborted one ends with an error, not an end.
    Stream(StreamReader),
    File {
        chunks: ReaderStream<FileReader>,
        len: u64,
    },
}

/// Lives as long as the client may still receive the response. Dropping it before the
/// response completed means hyper gave up on the client: the app's disconnect watchers fire.
pub struct DisconnectGuard(pub Arc<RequestState>);

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.0.completed.load(Ordering::Acquire) {
            self.0.mark_disconnected();
        }
    }
}

pub struct ResponseBody {
    payload: Payload,
    guard: Option<DisconnectGuard>,
}

impl ResponseBody {
    pub fn new(payload: Payload) -> Self {
        Self { payload, guard: None }
    }

    pub fn empty() -> Self {
        Self::new(Payload::Empty)
    }

    pub fn full(data: Bytes) -> Self {
        Self::new(Payload::Full(Some(data)))
    }

    /// Bodies that keep flowing after the handler returned carry the guard with them;
    /// complete ones settle the request right away.
    pub fn watch(&mut self, guard: DisconnectGuard) {
        match self.payload {
            Payload::Stream(_) | Payload::File { .. } => self.guard = Some(guard),
            Payload::Empty | Payload::Full(_) => guard.0.complete(),
        }
    }

    fn finish(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.0.complete();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let next = match &mut this.payload {
            Payload::Empty => None,
            Payload::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            Payload::Stream(reader) => match reader.poll_read(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(StreamRead::Data(data)) => Some(Ok(Frame::data(data))),
                Poll::Ready(StreamRead::Aborted) => {
                    Some(Err(std::io::Error::other("the application failed mid-response")))
                }
                Poll::Ready(StreamRead::End) => None,
            },
            Payload::File { chunks, .. } => match Pin::new(chunks).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item.map(|r| r.map(Frame::data)),
            },
        };
        if next.is_none() {
            this.finish();
        }
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.payload, Payload::Empty | Payload::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.payload {
            Payload::Empty | Payload::Full(None) => SizeHint::with_exact(0),
            Payload::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            Payload::File { len, .. } => SizeHint::with_exact(*len),
            Payload::Stream(_) => SizeHint::default(),
        }
    }
}

/// Shared by the hyper side of a request and its Python protocol object.
pub struct RequestState {
    completed: AtomicBool,
    disconnected: Mutex<Disconnect>,
    /// Where disconnect watchers are resolved; none for interfaces without a loop (WSGI).
    bridge: Option<Arc<BridgeQueue>>,
}

/// A future to resolve with `value` on disconnect, and with `on_complete` also once the
/// response is fully handed over.
struct Watcher {
    future: Py<PyAny>,
    value: Py<PyAny>,
    on_complete: bool,
}

#[derive(Default)]
struct Disconnect {
    happened: bool,
    watchers: Vec<Watcher>,
}

impl RequestState {
    pub fn new(bridge: Arc<BridgeQueue>) -> Self {
        Self {
            completed: AtomicBool::new(false),
            disconnected: Mutex::new(Disconnect::default()),
            bridge: Some(bridge),
        }
    }

    pub fn new_detached() -> Self {
        Self {
            completed: AtomicBool::new(false),
            disconnected: Mutex::new(Disconnect::default()),
            bridge: None,
        }
    }

    fn resolve_all(&self, watchers: Vec<Watcher>) {
        if let Some(bridge) = &self.bridge {
            for watcher in watchers {
                resolve(bridge, watcher.future, move |_| Ok(watcher.value));
            }
        }
    }

    pub fn complete(&self) {
        self.completed.store(true, Ordering::Release);
        let done = {
            let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
            if !state.watchers.iter().any(|w| w.on_complete) {
                return;
            }
            let (done, kept): (Vec<Watcher>, Vec<Watcher>) = std::mem::take(&mut state.watchers)
                .into_iter()
                .partition(|w| w.on_complete);
            state.watchers = kept;
            done
        };
        self.resolve_all(done);
    }

    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }

    pub fn is_disconnected(&self) -> bool {
        self.disconnected.lock().map(|d| d.happened).unwrap_or(true)
    }

    fn mark_disconnected(&self) {
        let watchers = {
            let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
            if state.happened {
                return;
            }
            state.happened = true;
            std::mem::take(&mut state.watchers)
        };
        self.resolve_all(watchers);
    }

    /// Registers a future to resolve on disconnect (and, with `on_complete`, once the
    /// response is fully handed over); `false` when that already happened.
    pub fn watch_disconnect(&self, future: Py<PyAny>, value: Py<PyAny>, on_complete: bool) -> bool {
        let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
        if state.happened || (on_complete && self.is_completed()) {
            return false;
        }
        state.watchers.push(Watcher {
            future,
            value,
            on_complete,
        });
        true
    }
}
