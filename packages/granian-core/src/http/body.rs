//! Response bodies handed to hyper: empty, whole, streamed by the app, or read from a file.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use super::activity::InFlight;
use super::state::DisconnectGuard;
use super::stream::{StreamRead, StreamReader};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;

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

pub struct ResponseBody {
    payload: Payload,
    guard: Option<DisconnectGuard>,
    /// Counts the bytes handed to hyper, when metrics are on.
    meter: Option<Meter>,
    /// The request this body answers, ended when the body is dropped.
    _in_flight: Option<InFlight>,
}

impl ResponseBody {
    pub fn new(payload: Payload) -> Self {
        Self {
            payload,
            guard: None,
            meter: None,
            _in_flight: None,
        }
    }

    pub fn empty() -> Self {
        Self::new(Payload::Empty)
    }

    pub fn full(data: Bytes) -> Self {
        Self::new(Payload::Full(Some(data)))
    }

    /// An empty whole body becomes no body: hyper then writes none and takes no length from it
    /// (a 304's `content-length` is the length of a body it does not carry).
    pub fn settle_empty(&mut self) {
        if matches!(&self.payload, Payload::Full(Some(data)) if data.is_empty()) {
            self.payload = Payload::Empty;
        }
    }

    /// A body the app writes piece by piece through the stream `reader` belongs to.
    pub fn streamed(reader: StreamReader) -> Self {
        Self::new(Payload::Stream(reader))
    }

    /// Bodies that keep flowing after the handler returned carry the guard with them;
    /// complete ones settle the request right away.
    pub fn watch(&mut self, guard: DisconnectGuard) {
        match self.payload {
            Payload::Stream(_) | Payload::File { .. } => self.guard = Some(guard),
            Payload::Empty | Payload::Full(_) => guard.0.complete(),
        }
    }

    /// Keeps the request in flight on its connection until this body is dropped.
    pub fn hold(&mut self, in_flight: InFlight) {
        self._in_flight = Some(in_flight);
    }

    /// Counts the body's bytes into `meter` as they are written.
    pub fn count_into(&mut self, meter: Meter) {
        self.meter = Some(meter);
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
                Poll::Ready(StreamRead::Trailers(trailers)) => Some(Ok(Frame::trailers(trailers))),
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
        match &next {
            None => this.finish(),
            Some(Ok(frame)) => {
                if let (Some(meter), Some(data)) = (&this.meter, frame.data_ref()) {
                    meter.count(Counter::ResponseBodyBytes, data.len() as u64);
                }
            }
            Some(Err(_)) => {}
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
