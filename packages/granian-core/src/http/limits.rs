//! Limits on what a client sends: the request body's size and how long the server waits for
//! the next piece of it. A request over a limit is refused with its status (413, 408) and
//! its app never gets a truncated body: a read past the limit fails instead.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug, Default)]
pub struct BodyLimits {
    /// The most bytes a request body may have.
    pub max_size: Option<u64>,
    /// How long a read of the body waits for the client's next bytes.
    pub read_timeout: Option<Duration>,
}

impl BodyLimits {
    /// The refusal of a request whose declared length is over the limit, before anything runs.
    pub fn check_declared(&self, headers: &HeaderMap) -> Option<StatusCode> {
        let max = self.max_size?;
        let declared = headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse::<u64>().ok()?;
        (declared > max).then_some(StatusCode::PAYLOAD_TOO_LARGE)
    }
}

/// Why a request body ended early.
#[derive(Debug)]
pub enum BodyError {
    /// Over a limit: the request is answered with this status.
    Refused(StatusCode),
    /// The client went away or broke the protocol.
    Interrupted(BoxError),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a request body comes from: hyper (HTTP/1.1, HTTP/2), or a transport of our own
/// (HTTP/3), boxed so the common case stays unboxed.
pub enum BodySource {
    Hyper(Incoming),
    Other(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + Sync>>),
}

impl BodySource {
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Other(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Other(body) => body.size_hint(),
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Other(body) => body.as_mut().poll_frame(cx),
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(StatusCode::PAYLOAD_TOO_LARGE) => f.write_str("the request body is over the size limit"),
            Self::Refused(StatusCode::REQUEST_TIMEOUT) => {
                f.write_str("the client was too slow sending the request body")
            }
            Self::Refused(status) => write!(f, "the request body was refused ({status})"),
            Self::Interrupted(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for BodyError {}

/// Where a refused body leaves its status for the response, whoever reads the body.
#[derive(Clone, Default)]
pub struct Refusal(Arc<AtomicU16>);

impl Refusal {
    fn set(&self, status: StatusCode) {
        self.0.store(status.as_u16(), Ordering::Release);
    }

    /// The status the request was refused with, if a limit was hit.
    pub fn status(&self) -> Option<StatusCode> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            code => StatusCode::from_u16(code).ok(),
        }
    }
}

/// The body of a request as the apps read it, held to the limits.
pub struct IncomingBody {
    inner: BodySource,
    limits: BodyLimits,
    read: u64,
    /// The read timer, armed once a read has to wait for the client; when it fires, the
    /// read times out only if no byte came since it was armed (else it is armed again), so
    /// it is registered once per timeout period, not once per frame.
    waiting: Option<Pin<Box<Sleep>>>,
    read_when_armed: u64,
    refusal: Option<Refusal>,
}

impl IncomingBody {
    /// Wraps `inner`; a body with nothing to read or no limit to keep costs no allocation.
    pub fn new(inner: BodySource, limits: BodyLimits) -> (Self, Option<Refusal>) {
        let limited = limits.max_size.is_some() || limits.read_timeout.is_some();
        let refusal = (limited && !inner.is_end_stream()).then(Refusal::default);
        let body = Self {
            inner,
            limits,
            read: 0,
            waiting: None,
            read_when_armed: u64::MAX,
            refusal: refusal.clone(),
        };
        (body, refusal)
    }

    fn refuse(&mut self, status: StatusCode) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(refusal) = &self.refusal {
            refusal.set(status);
        }
        Poll::Ready(Some(Err(BodyError::Refused(status))))
    }

    /// Starts (or keeps) the read timer; true once a whole period passed without a byte.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = self.limits.read_timeout else {
            return false;
        };
        let read = self.read;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if self.read_when_armed == u64::MAX {
            self.read_when_armed = read; // armed just now
        }
        while sleep.as_mut().poll(cx).is_ready() {
            if read == self.read_when_armed {
                return true;
            }
            // Bytes came meanwhile: a new period starts now.
            sleep.as_mut().reset(Instant::now() + timeout);
            self.read_when_armed = read;
        }
        false
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                if this.timed_out(cx) {
                    return this.refuse(StatusCode::REQUEST_TIMEOUT);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.limits.max_size.is_some_and(|max| this.read > max) {
                        return this.refuse(StatusCode::PAYLOAD_TOO_LARGE);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(BodyError::Interrupted(err)))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
