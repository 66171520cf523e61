//! Responses: the one-shot slot a request's answer goes through, building a response from
//! its parts, and file bodies.

use std::sync::{Arc, Mutex};

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Response, StatusCode};
use http_body::Body as _;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;

use super::body::{FileReader, Payload, ResponseBody};

const FILE_CHUNK: usize = 128 * 1024;

pub type Responder = oneshot::Sender<Response<ResponseBody>>;

/// Work a thread hands back to the runtime (a response to its connection).
pub type Delivery = Box<dyn FnOnce() + Send>;

/// Where requests served on an event loop hand their responses back, so that those produced
/// in one pass of the loop leave together (one wake-up of the runtime for all of them).
pub trait ResponseOutbox: Send + Sync {
    /// A request that will answer through [`ResponseOutbox::deliver`] started.
    fn response_awaited(&self);
    /// That request answered (or gave up): called before its delivery.
    fn response_settled(&self);
    /// Runs `delivery` on `runtime`, now or with the others of the batch.
    fn deliver(&self, runtime: &tokio::runtime::Handle, delivery: Delivery);
}

/// Holds the sender of the one response a request gets.
pub struct ResponseSlot {
    responder: Mutex<Option<Responder>>,
    outbox: Option<(Arc<dyn ResponseOutbox>, tokio::runtime::Handle)>,
}

impl ResponseSlot {
    pub fn new(responder: Responder) -> Self {
        Self {
            responder: Mutex::new(Some(responder)),
            outbox: None,
        }
    }

    /// A slot whose response leaves through `outbox`.
    pub fn batched(responder: Responder, outbox: Arc<dyn ResponseOutbox>, runtime: tokio::runtime::Handle) -> Self {
        outbox.response_awaited();
        Self {
            responder: Mutex::new(Some(responder)),
            outbox: Some((outbox, runtime)),
        }
    }

    /// `false` when a response was already sent.
    pub fn send(&self, response: Response<ResponseBody>) -> bool {
        let Some(responder) = self.responder.lock().ok().and_then(|mut r| r.take()) else {
            return false;
        };
        // A send error means the client is gone: nothing left to tell it.
        match &self.outbox {
            Some((outbox, runtime)) => {
                outbox.response_settled();
                outbox.deliver(
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

    /// [`ResponseSlot::fail`] with a plain-text body (what ASGI apps' clients get, as in granian).
    pub fn fail_saying(&self, text: &'static str) -> bool {
        self.send(text_response(StatusCode::INTERNAL_SERVER_ERROR, text))
    }
}

impl Drop for ResponseSlot {
    fn drop(&mut self) {
        // Never answered (hyper sees the sender dropped): no longer awaited either.
        let unanswered = self.responder.get_mut().map(|r| r.is_some()).unwrap_or(false);
        if let (true, Some((outbox, _))) = (unanswered, &self.outbox) {
            outbox.response_settled();
        }
    }
}

/// A response from its parts.
pub fn response(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// An empty response with `status` (errors the server answers itself).
pub fn error_response(status: StatusCode) -> Response<ResponseBody> {
    response(status, HeaderMap::new(), ResponseBody::empty())
}

/// The 404 for a file that is not there (a static path, an RSGI `response_file`): says so in
/// plain words, as granian's does.
pub fn file_not_found() -> Response<ResponseBody> {
    text_response(StatusCode::NOT_FOUND, "Not found")
}

/// An answer the server makes itself, with a few words as its body (no content-type, as granian).
fn text_response(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let body = ResponseBody::full(bytes::Bytes::from_static(text.as_bytes()));
    response(status, HeaderMap::new(), body)
}

/// Holds the app's `content-length` to the body it gave. A length its body contradicts would
/// leave the HTTP/1 connection out of step with the client (or break an HTTP/2 stream), so
/// the client gets a 500 instead and the log says why; nothing was sent yet. A 204 or 1xx
/// says no length at all. HEAD and 304 answers state the length of a body they do not carry,
/// and a streamed body is held to the header by hyper (the connection is closed if it falls
/// short).
pub fn settle_length(mut response: Response<ResponseBody>, is_head: bool) -> Response<ResponseBody> {
    let status = response.status();
    if is_head || !response.headers().contains_key(CONTENT_LENGTH) {
        return response;
    }
    if status == StatusCode::NOT_MODIFIED {
        response.body_mut().settle_empty();
        return response;
    }
    if status == StatusCode::NO_CONTENT || status.is_informational() {
        response.headers_mut().remove(CONTENT_LENGTH);
        return response;
    }
    let Some(actual) = response.body().size_hint().exact() else {
        return response;
    };
    let declared = response.headers().get_all(CONTENT_LENGTH);
    if declared
        .iter()
        .all(|value| value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) == Some(actual))
    {
        return response;
    }
    let declared: Vec<_> = declared.iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
    log::error!(
        "the app's response says content-length {} but its body is {actual} bytes: answered 500 instead",
        declared.join(", ")
    );
    error_response(StatusCode::INTERNAL_SERVER_ERROR)
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
