//! Response plumbing shared by the interfaces: the one-shot slot a response goes through,
//! streamed bodies with backpressure, and file bodies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, Notify};
use tokio_util::io::ReaderStream;

use super::body::{FileReader, Payload, ResponseBody};
use super::server::error_response;
use crate::bridge::BridgeQueue;

const FILE_CHUNK: usize = 128 * 1024;

pub type Responder = oneshot::Sender<Response<ResponseBody>>;

/// Holds the sender of the one response a request gets.
pub struct ResponseSlot {
    responder: Mutex<Option<Responder>>,
    /// For requests served on the event loop: responses go back through the loop's outbox,
    /// in batches (see `BridgeQueue::deliver`).
    outbox: Option<(Arc<BridgeQueue>, tokio::runtime::Handle)>,
}

impl ResponseSlot {
    pub fn new(responder: Responder) -> Self {
        Self {
            responder: Mutex::new(Some(responder)),
            outbox: None,
        }
    }

    /// A slot whose response, sent from the loop thread, leaves with the others of the same
    /// pass of the loop.
    pub fn batched(responder: Responder, bridge: Arc<BridgeQueue>, runtime: tokio::runtime::Handle) -> Self {
        bridge.response_awaited();
        Self {
            responder: Mutex::new(Some(responder)),
            outbox: Some((bridge, runtime)),
        }
    }

    /// `false` when a response was already sent.
    pub fn send(&self, response: Response<ResponseBody>) -> bool {
        let Some(responder) = self.responder.lock().ok().and_then(|mut r| r.take()) else {
            return false;
        };
        // A send error means the client is gone: nothing left to tell it.
        match &self.outbox {
            Some((bridge, runtime)) => {
                bridge.response_settled();
                bridge.deliver(
                    runtime,
                    Box::new(move || {
                        let _ = responder.send(response);
                    }),
                )
            }
            None => {
                let _ = responder.send(response);
            }
        }
        true
    }

    pub fn is_pending(&self) -> bool {
        self.responder.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// Answers 500 if nothing was sent; `true` if it did.
    pub fn fail(&self) -> bool {
        self.send(error_response(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

impl Drop for ResponseSlot {
    fn drop(&mut self) {
        // Never answered (hyper sees the sender dropped): no longer awaited either.
        let unanswered = self.responder.get_mut().map(|r| r.is_some()).unwrap_or(false);
        if let (true, Some((bridge, _))) = (unanswered, &self.outbox) {
            bridge.response_settled();
        }
    }
}

pub enum StreamSend {
    Sent,
    /// The client is gone: nothing more reaches it.
    Closed,
    /// Queued, but the client reads slower than the app writes: wait for [`StreamSlot::room`]
    /// before sending more.
    Wait,
}

/// Body data from the app: small pieces are copied into the pending buffer (and merged with
/// their neighbours), large ones are shared.
pub enum Chunk<'a> {
    Copy(&'a [u8]),
    Shared(Bytes),
}

/// How many bytes may wait for the client before the app is held back.
const STREAM_LIMIT: usize = 256 * 1024;
/// Pieces smaller than this are merged into one buffer, written as one frame.
const MERGE_BELOW: usize = 16 * 1024;

/// The app's end of a streamed response body. What the app sends while the connection is
/// still writing the previous data is merged, so the body leaves in as few frames (and
/// syscalls) as the client's pace allows.
#[derive(Clone, Default)]
pub struct StreamSlot(Arc<Pipe>);

#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Writers waiting for the pending data to drop under the limit.
    room: Notify,
}

#[derive(Default)]
struct PipeState {
    /// Older pieces first; `tail` holds the newest small ones.
    queued: VecDeque<Bytes>,
    tail: BytesMut,
    pending: usize,
    /// The app ended the body; `aborted` if it failed mid-response.
    closed: bool,
    aborted: bool,
    /// The body was dropped: the client is gone.
    gone: bool,
    reader: Option<Waker>,
}

impl StreamSlot {
    /// Opens the stream and returns the body hyper will read from.
    pub fn open(&self) -> Payload {
        Payload::Stream(StreamReader(self.0.clone()))
    }

    /// Queues `data` (nothing is queued once the client is gone).
    pub fn send(&self, data: Chunk<'_>) -> StreamSend {
        let Ok(mut state) = self.0.state.lock() else {
            return StreamSend::Closed;
        };
        if state.gone || state.closed {
            return StreamSend::Closed;
        }
        match data {
            Chunk::Copy(piece) if piece.len() < MERGE_BELOW => {
                if piece.is_empty() {
                    return StreamSend::Sent;
                }
                if state.tail.capacity() - state.tail.len() < piece.len() {
                    state.tail.reserve(piece.len().max(MERGE_BELOW));
                }
                state.tail.extend_from_slice(piece);
                state.pending += piece.len();
            }
            other => {
                let data = match other {
                    Chunk::Copy(piece) => Bytes::copy_from_slice(piece),
                    Chunk::Shared(data) => data,
                };
                if data.is_empty() {
                    return StreamSend::Sent;
                }
                if !state.tail.is_empty() {
                    let merged = state.tail.split().freeze();
                    state.queued.push_back(merged);
                }
                state.pending += data.len();
                state.queued.push_back(data);
            }
        }
        let over = state.pending > STREAM_LIMIT;
        let reader = state.reader.take();
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
        }
        if over {
            StreamSend::Wait
        } else {
            StreamSend::Sent
        }
    }

    /// Waits until the pending data is under the limit; `false` if the client went away.
    pub async fn room(&self) -> bool {
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain between the two is not missed.
            notified.as_mut().enable();
            match self.0.state.lock() {
                Ok(state) if state.gone => return false,
                Ok(state) if state.pending <= STREAM_LIMIT => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            notified.await;
        }
    }

    /// Ends the body with an error: the client sees a truncated response, not a complete one.
    pub fn abort(&self) {
        self.end(true);
    }

    /// Ends the body: hyper sees its end once the queued data is written.
    pub fn close(&self) {
        self.end(false);
    }

    fn end(&self, aborted: bool) {
        let reader = match self.0.state.lock() {
            Ok(mut state) if !state.closed => {
                state.closed = true;
                state.aborted = aborted;
                state.reader.take()
            }
            _ => None,
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// Hyper's end of a streamed body.
pub struct StreamReader(Arc<Pipe>);

pub enum StreamRead {
    Data(Bytes),
    End,
    Aborted,
}

impl StreamReader {
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<StreamRead> {
        let Ok(mut state) = self.0.state.lock() else {
            return Poll::Ready(StreamRead::Aborted);
        };
        let data = match state.queued.pop_front() {
            Some(data) => data,
            None if !state.tail.is_empty() => state.tail.split().freeze(),
            None if state.closed && state.aborted => return Poll::Ready(StreamRead::Aborted),
            None if state.closed => return Poll::Ready(StreamRead::End),
            None => {
                state.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
        };
        let was_over = state.pending > STREAM_LIMIT;
        state.pending -= data.len();
        let room = was_over && state.pending <= STREAM_LIMIT;
        drop(state);
        if room {
            self.0.room.notify_waiters();
        }
        Poll::Ready(StreamRead::Data(data))
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.gone = true;
            state.queued.clear();
            state.tail = BytesMut::new();
        }
        self.0.room.notify_waiters();
    }
}

/// Opens a regular file: the descriptor and its length.
pub fn open_file(path: &std::path::Path) -> Option<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some((file, meta.len()))
}

/// Streams `len` bytes of `file` from `start`, read on the runtime's blocking threads.
pub fn file_body(mut file: std::fs::File, start: u64, len: u64) -> std::io::Result<ResponseBody> {
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))?;
    let reader: FileReader = Box::pin(tokio::fs::File::from_std(file).take(len));
    Ok(ResponseBody::new(Payload::File {
        chunks: ReaderStream::with_capacity(reader, FILE_CHUNK),
        len,
    }))
}
