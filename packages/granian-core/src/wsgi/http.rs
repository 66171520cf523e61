//! WSGI (PEP 3333) requests: calling the app, `start_response`, `write` and the iteration
//! of the result, on the blocking pool with the GIL; hyper only ever waits on channels.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::StatusCode;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::file_wrapper::FileWrapper;
use super::input::{InputSource, WsgiInput};
use super::scope::{environ, WsgiShared};
use crate::convert::{bytes_of, chunk_of, status_code, str_headers};
use crate::http::body::ResponseBody;
use crate::http::response::{response, ResponseSlot};
use crate::http::stream::{Chunk, StreamSend, StreamSlot};

/// Response state shared by `start_response`, `write` and the iteration of the result.
struct Exchange {
    head: Mutex<Head>,
    response: ResponseSlot,
    stream: StreamSlot,
    /// Where a writer held back by a slow client waits for room.
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Head {
    status: Option<StatusCode>,
    headers: HeaderMap,
    sent: bool,
}

impl Exchange {
    /// Sends the headers with a streamed body, if not sent yet.
    fn start_stream(&self) -> PyResult<()> {
        let mut head = self
            .head
            .lock()
            .map_err(|_| PyRuntimeError::new_err("state poisoned"))?;
        if head.sent {
            return Ok(());
        }
        let status = head
            .status
            .ok_or_else(|| PyRuntimeError::new_err("WSGI: start_response() was not called before the body"))?;
        head.sent = true;
        let body = ResponseBody::streamed(self.stream.open());
        self.response
            .send(response(status, std::mem::take(&mut head.headers), body));
        Ok(())
    }

    /// Sends the whole response at once, with its length.
    fn send_full(&self, body: ResponseBody) -> PyResult<()> {
        let mut head = self
            .head
            .lock()
            .map_err(|_| PyRuntimeError::new_err("state poisoned"))?;
        let status = head
            .status
            .ok_or_else(|| PyRuntimeError::new_err("WSGI: the application did not call start_response()"))?;
        head.sent = true;
        self.response
            .send(response(status, std::mem::take(&mut head.headers), body));
        Ok(())
    }

    fn headers_sent(&self) -> bool {
        self.head.lock().map(|h| h.sent).unwrap_or(true)
    }

    /// Writes a chunk, waiting (without the GIL) for the client to take it; `false` once the
    /// client is gone.
    fn push(&self, py: Python<'_>, data: Chunk<'_>) -> PyResult<bool> {
        self.start_stream()?;
        match self.stream.send(data) {
            StreamSend::Sent => Ok(true),
            StreamSend::Closed => Ok(false),
            StreamSend::Wait => {
                let stream = self.stream.clone();
                let runtime = self.runtime.clone();
                Ok(py.detach(move || runtime.block_on(stream.room())))
            }
        }
    }
}

pub fn run_request(
    py: Python<'_>,
    shared: &Arc<WsgiShared>,
    parts: http::request::Parts,
    body: InputSource,
    peer: SocketAddr,
    response: ResponseSlot,
    runtime: tokio::runtime::Handle,
) {
    let exchange = Arc::new(Exchange {
        head: Mutex::new(Head::default()),
        response,
        stream: StreamSlot::default(),
        runtime: runtime.clone(),
    });
    let outcome = (|| -> PyResult<()> {
        let input = Py::new(py, WsgiInput::new(body, runtime))?;
        let environ = environ(py, shared, &parts, peer, input)?;
        let start_response = Py::new(py, StartResponse(exchange.clone()))?;
        let result = shared.app.bind(py).call1((environ, start_response))?;
        let served = serve_result(py, &exchange, &result);
        // PEP 3333: close() is called whatever happened, client gone or error.
        let closed = match result.getattr_opt(intern!(py, "close")) {
            Ok(Some(close)) => close.call0().map(|_| ()),
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        if let (Ok(()), Err(err)) = (&served, &closed) {
            // The body is complete: a failing close() is the app's problem, not the client's.
            shared.log_exception(py, "Application callable raised an exception in close()", err);
            return Ok(());
        }
        served.and(closed)
    })();
    if let Err(err) = outcome {
        shared.log_exception(py, "Application callable raised an exception", &err);
        if exchange.headers_sent() {
            exchange.stream.abort();
        } else {
            exchange.response.fail();
        }
    }
    exchange.stream.close();
}

/// Sends what the app returned: a file natively, a one-chunk body with its length, or a
/// stream chunk by chunk.
fn serve_result(py: Python<'_>, exchange: &Exchange, result: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some(body) = wrapper.get().native_body(py) {
            return exchange.send_full(body);
        }
    }
    if !exchange.headers_sent() {
        if let Ok(list) = result.cast::<PyList>() {
            return exchange.send_full(ResponseBody::full(join_chunks(list.iter())?));
        }
        if let Ok(tuple) = result.cast::<PyTuple>() {
            return exchange.send_full(ResponseBody::full(join_chunks(tuple.iter())?));
        }
    }
    // An iterable that says it has one chunk gets a content-length; anything else streams
    // as it is produced (PEP 3333: no block may be held back).
    let single = !exchange.headers_sent() && result.len().is_ok_and(|n| n == 1);
    let mut chunks = result.try_iter()?;
    if single {
        let body = match chunks.next() {
            Some(chunk) => bytes_of(chunk_bytes(&chunk?)?),
            None => Bytes::new(),
        };
        return exchange.send_full(ResponseBody::full(body));
    }
    for chunk in chunks {
        if !exchange.push(py, chunk_of(chunk_bytes(&chunk?)?))? {
            log::debug!("client went away during a WSGI response");
            return Ok(());
        }
    }
    exchange.start_stream()
}

fn chunk_bytes<'a, 'py>(chunk: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    chunk.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "WSGI: response chunks must be bytes, not {}",
            chunk.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })
}

fn join_chunks<'py>(chunks: impl ExactSizeIterator<Item = Bound<'py, PyAny>>) -> PyResult<Bytes> {
    let as_bytes = |chunk: &Bound<'py, PyAny>| -> PyResult<Bound<'py, PyBytes>> {
        chunk
            .cast::<PyBytes>()
            .cloned()
            .map_err(|_| pyo3::exceptions::PyTypeError::new_err("WSGI: response chunks must be bytes"))
    };
    if chunks.len() == 1 {
        // The usual `[body]`: shared with the Python object rather than copied when large.
        return chunks
            .map(|chunk| as_bytes(&chunk).map(|b| bytes_of(&b)))
            .next()
            .unwrap_or(Ok(Bytes::new()));
    }
    let mut joined = BytesMut::new();
    for chunk in chunks {
        joined.extend_from_slice(as_bytes(&chunk)?.as_bytes());
    }
    Ok(joined.freeze())
}

fn parse_status(status: &str) -> PyResult<StatusCode> {
    let code = status
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status.len() == 3 || status.as_bytes()[3] == b' ')
        .ok_or_else(|| PyValueError::new_err(format!("WSGI: invalid status line {status:?}")))?;
    status_code(code)
}

#[pyclass(frozen, module = "granian._granian", name = "WSGIStartResponse")]
pub struct StartResponse(Arc<Exchange>);

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &str,
        headers: Bound<'_, PyAny>,
        exc_info: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Write>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let mut head = self
            .0
            .head
            .lock()
            .map_err(|_| PyRuntimeError::new_err("state poisoned"))?;
        match &exc_info {
            Some(info) if head.sent => {
                // PEP 3333: too late to change the response: re-raise the app's error.
                let value = info.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
            None if head.status.is_some() => {
                return Err(PyRuntimeError::new_err(
                    "WSGI: start_response() called again without exc_info",
                ));
            }
            _ => {}
        }
        let status = parse_status(status)?;
        let map = str_headers(&headers)?;
        head.status = Some(status);
        head.headers = map;
        drop(head);
        Py::new(py, Write(self.0.clone()))
    }
}

/// The legacy `write()` callable `start_response` returns.
#[pyclass(frozen, module = "granian._granian", name = "WSGIWrite")]
pub struct Write(Arc<Exchange>);

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<()> {
        if !self.0.push(py, chunk_of(&data))? {
            return Err(pyo3::exceptions::PyConnectionError::new_err("the client disconnected"));
        }
        Ok(())
    }
}
