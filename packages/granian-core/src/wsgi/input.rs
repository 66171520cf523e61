//! `wsgi.input`: the request body, read ahead when small, else as the app reads it.

use std::collections::VecDeque;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

use crate::http::limits::{BodyError, IncomingBody};
use crate::http::request::{ReadError, RequestBody};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;

/// Request bodies up to this size (with a content-length) are read before the app runs.
const PREFETCH_LIMIT: u64 = 64 * 1024;

/// Where `wsgi.input` reads from.
pub enum InputSource {
    /// The whole body, as the frames it came in (shared, not joined).
    Read(VecDeque<Bytes>),
    Streamed(IncomingBody, Option<Meter>),
}

impl InputSource {
    /// A small body with a known length is read here, on the runtime: the app then reads it
    /// from memory instead of handing each read back and forth between threads.
    pub async fn prefetch(incoming: IncomingBody, meter: Option<Meter>) -> Result<Self, BodyError> {
        match incoming.size_hint().exact() {
            Some(len) if len > 0 && len <= PREFETCH_LIMIT => {
                let frames = read_frames(incoming).await?;
                if let Some(meter) = meter {
                    meter.count(Counter::RequestBodyBytes, frames.iter().map(|f| f.len() as u64).sum());
                }
                Ok(InputSource::Read(frames))
            }
            _ => Ok(InputSource::Streamed(incoming, meter)),
        }
    }
}

async fn read_frames(mut incoming: IncomingBody) -> Result<VecDeque<Bytes>, BodyError> {
    let mut chunks = VecDeque::new();
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() {
                chunks.push_back(data);
            }
        }
    }
    Ok(chunks)
}

/// `wsgi.input`: reads the request body as it arrives, waiting without the GIL.
///
/// What arrived and was not read yet is kept as the frames hyper received (shared, not
/// joined); a read copies its bytes once, straight into the `bytes` object it returns.
#[pyclass(module = "granian._granian", name = "WSGIInput")]
pub struct WsgiInput {
    body: RequestBody,
    runtime: tokio::runtime::Handle,
    chunks: VecDeque<Bytes>,
    buffered: usize,
}

impl WsgiInput {
    pub fn new(source: InputSource, runtime: tokio::runtime::Handle) -> Self {
        match source {
            InputSource::Read(chunks) => Self::read_already(chunks, runtime),
            InputSource::Streamed(incoming, meter) => Self::streamed(RequestBody::new(incoming, meter), runtime),
        }
    }

    fn streamed(body: RequestBody, runtime: tokio::runtime::Handle) -> Self {
        Self {
            body,
            runtime,
            chunks: VecDeque::new(),
            buffered: 0,
        }
    }

    /// A body the runtime read in full before the app started.
    fn read_already(chunks: VecDeque<Bytes>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            body: RequestBody::ended(),
            runtime,
            buffered: chunks.iter().map(Bytes::len).sum(),
            chunks,
        }
    }

    /// Where the first newline of the buffered bytes ends (one past it), scanning past `from`.
    fn newline_end(&self, from: usize) -> Option<usize> {
        let mut offset = 0;
        for chunk in &self.chunks {
            let start = from.saturating_sub(offset);
            if start < chunk.len() {
                if let Some(pos) = chunk[start..].iter().position(|&b| b == b'\n') {
                    return Some(offset + start + pos + 1);
                }
            }
            offset += chunk.len();
        }
        None
    }

    /// Appends the next chunk to the buffer; `false` at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.body.is_finished() {
            return Ok(false);
        }
        let (tx, rx) = oneshot::channel();
        let body = self.body.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(body.read_chunk().await);
        });
        match py.detach(move || rx.blocking_recv()) {
            Ok(Ok(Some((data, _)))) => {
                self.buffered += data.len();
                self.chunks.push_back(data);
                Ok(true)
            }
            Ok(Ok(None)) => Ok(false),
            Ok(Err(ReadError::Interrupted(BodyError::Refused(status)))) => {
                let why = BodyError::Refused(status);
                Err(pyo3::exceptions::PyOSError::new_err(format!(
                    "request body refused: {why}"
                )))
            }
            Ok(Err(_)) | Err(_) => Err(pyo3::exceptions::PyConnectionError::new_err(
                "the client disconnected while sending the request body",
            )),
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let n = n.min(self.buffered);
        self.buffered -= n;
        let chunks = &mut self.chunks;
        // Within one frame (the usual case): copied straight from it, no zero-filled buffer first.
        if let Some(front) = chunks.front_mut().filter(|front| front.len() >= n) {
            let data = PyBytes::new(py, &front[..n]);
            if n == front.len() {
                chunks.pop_front();
            } else {
                let _ = front.split_to(n);
            }
            return Ok(data);
        }
        PyBytes::new_with(py, n, |out| {
            let mut filled = 0;
            while filled < n {
                let Some(front) = chunks.front_mut() else { break };
                let step = front.len().min(n - filled);
                out[filled..filled + step].copy_from_slice(&front[..step]);
                filled += step;
                if step == front.len() {
                    chunks.pop_front();
                } else {
                    // Splitting shares the rest of the frame: no copy.
                    let _ = front.split_to(step);
                }
            }
            Ok(())
        })
    }
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = size.unwrap_or(-1);
        if size < 0 {
            while self.fill(py)? {}
            return self.take(py, usize::MAX);
        }
        let size = size as usize;
        while self.buffered < size && self.fill(py)? {}
        self.take(py, size)
    }

    #[pyo3(signature = (size = -1))]
    fn readline<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size.filter(|s| *s >= 0).map(|s| s as usize);
        let mut scanned = 0;
        loop {
            if let Some(end) = self.newline_end(scanned) {
                return self.take(py, limit.map_or(end, |l| l.min(end)));
            }
            scanned = self.buffered;
            if limit.is_some_and(|l| scanned >= l) || !self.fill(py)? {
                return self.take(py, limit.unwrap_or(usize::MAX));
            }
        }
    }

    #[pyo3(signature = (hint = -1))]
    fn readlines<'py>(&mut self, py: Python<'py>, hint: Option<isize>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = hint.filter(|h| *h > 0).map(|h| h as usize);
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let line = self.readline(py, None)?;
            if line.as_bytes().is_empty() {
                break;
            }
            total += line.as_bytes().len();
            lines.push(line);
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.readline(py, None)?;
        if line.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }
}
