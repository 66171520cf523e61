//! The request body, shared by a protocol object and the runtime tasks that read it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;

use super::limits::{BodyError, IncomingBody};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;

#[derive(Debug)]
pub enum ReadError {
    /// Another read holds the body, or it was read already.
    Busy,
    Interrupted(BodyError),
}

struct Source {
    incoming: Option<IncomingBody>,
    finished: bool,
    meter: Option<Meter>,
}

#[derive(Clone)]
pub struct RequestBody(Arc<Mutex<Source>>);

impl RequestBody {
    /// The body of a request; `meter` counts its bytes as they are read.
    pub fn new(incoming: IncomingBody, meter: Option<Meter>) -> Self {
        let finished = incoming.is_end_stream();
        Self(Arc::new(Mutex::new(Source {
            incoming: if finished { None } else { Some(incoming) },
            finished,
            meter,
        })))
    }

    /// A body with nothing left to read.
    pub fn ended() -> Self {
        Self(Arc::new(Mutex::new(Source {
            incoming: None,
            finished: true,
            meter: None,
        })))
    }

    pub fn is_finished(&self) -> bool {
        self.0.lock().map(|s| s.finished).unwrap_or(true)
    }

    fn take(&self) -> Result<IncomingBody, ReadError> {
        self.0
            .lock()
            .ok()
            .and_then(|mut s| s.incoming.take())
            .ok_or(ReadError::Busy)
    }

    /// Gives the body back after a read of `read` bytes (counted with metrics on).
    fn settle(&self, incoming: Option<IncomingBody>, read: usize) {
        if let Ok(mut s) = self.0.lock() {
            s.finished = incoming.as_ref().is_none_or(|i| i.is_end_stream());
            s.incoming = if s.finished { None } else { incoming };
            if let (Some(meter), true) = (&s.meter, read > 0) {
                meter.count(Counter::RequestBodyBytes, read as u64);
            }
        }
    }

    /// The whole remaining body.
    pub async fn read_all(&self) -> Result<Bytes, ReadError> {
        let incoming = self.take()?;
        let collected = incoming.collect().await.map(|c| c.to_bytes());
        self.settle(None, collected.as_ref().map_or(0, Bytes::len));
        collected.map_err(ReadError::Interrupted)
    }

    /// The next data chunk, and whether more may follow; `None` at the end of the body.
    pub async fn read_chunk(&self) -> Result<Option<(Bytes, bool)>, ReadError> {
        let mut incoming = self.take()?;
        loop {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        let more = !incoming.is_end_stream();
                        self.settle(Some(incoming), data.len());
                        return Ok(Some((data, more)));
                    }
                }
                Some(Err(err)) => {
                    self.settle(None, 0);
                    return Err(ReadError::Interrupted(err));
                }
                None => {
                    self.settle(None, 0);
                    return Ok(None);
                }
            }
        }
    }
}
