//! Response plumbing shared by the interfaces: the one-shot slot a response goes through,
//! streamed bodies with backpressure, and file bodies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::ReaderStream;

use super::body::{FileReader, Payload, ResponseBody};
use super::server::error_response;

const STREAM_QUEUE: usize = 16;
const FILE_CHUNK: usize = 128 * 1024;

pub type Responder = oneshot::Sender<Response<ResponseBody>>;

/// Holds the sender of the one response a request gets.
pub struct ResponseSlot(Mutex<Option<Responder>>);

impl ResponseSlot {
    pub fn new(responder: Responder) -> Self {
        Self(Mutex::new(Some(responder)))
    }

    /// `false` when a response was already sent.
    pub fn send(&self, response: Response<ResponseBody>) -> bool {
        match self.0.lock().ok().and_then(|mut r| r.take()) {
            Some(responder) => {
                // A send error means the client is gone: nothing left to tell it.
                let _ = responder.send(response);
                true
            }
            None => false,
        }
    }

    pub fn is_pending(&self) -> bool {
        self.0.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// Answers 500 if nothing was sent; `true` if it did.
    pub fn fail(&self) -> bool {
        self.send(error_response(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

pub enum StreamSend {
    Sent,
    Closed,
    /// The client reads slower than the app writes: await this send on the runtime.
    Full(mpsc::Sender<Bytes>, Bytes),
}

/// The app's end of a streamed response body.
#[derive(Clone, Default)]
pub struct StreamSlot {
    sender: Arc<Mutex<Option<mpsc::Sender<Bytes>>>>,
    aborted: Arc<AtomicBool>,
}

impl StreamSlot {
    /// Opens the stream and returns the body hyper will read from.
    pub fn open(&self) -> Payload {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(tx);
        }
        Payload::Stream {
            rx,
            aborted: self.aborted.clone(),
        }
    }

    /// The sender, for blocking writers (WSGI) that wait for room themselves.
    pub fn sender(&self) -> Option<mpsc::Sender<Bytes>> {
        self.sender.lock().ok().and_then(|s| s.clone())
    }

    /// Ends the body with an error: the client sees a truncated response, not a complete one.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.close();
    }

    pub fn send(&self, data: Bytes) -> StreamSend {
        let Some(sender) = self.sender() else {
            return StreamSend::Closed;
        };
        match sender.try_send(data) {
            Ok(()) => StreamSend::Sent,
            Err(mpsc::error::TrySendError::Closed(_)) => StreamSend::Closed,
            Err(mpsc::error::TrySendError::Full(data)) => StreamSend::Full(sender, data),
        }
    }

    /// Ends the body: hyper sees its end once queued chunks are written.
    pub fn close(&self) {
        if let Ok(mut slot) = self.sender.lock() {
            slot.take();
        }
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
