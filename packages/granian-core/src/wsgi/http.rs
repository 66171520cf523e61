//! WSGI (PEP 3333): the environ, `start_response`, `write`, `wsgi.input` and response
//! iteration, run on the blocking pool with the GIL; hyper only ever waits on channels.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use tokio::sync::oneshot;

use crate::app::ListenerInfo;
use crate::blocking::BlockingPool;
use crate::http::body::{DisconnectGuard, RequestState, ResponseBody};
use crate::http::pybytes::{bytes_of, chunk_of};
use crate::http::request::RequestBody;
use crate::http::response::{file_body, Chunk, ResponseSlot, StreamSend, StreamSlot};
use crate::http::server::{error_response, Handler};

/// What every request of a WSGI worker shares.
pub struct WsgiShared {
    pub app: Py<PyAny>,
    pub logger: Py<PyAny>,
    pub errors: Py<PyAny>,
    pub script_name: String,
    pub multiprocess: bool,
    pub listener: Arc<ListenerInfo>,
    pub pool: BlockingPool,
}

impl WsgiShared {
    fn log_exception(&self, py: Python<'_>, message: &str, err: &PyErr) {
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        let kwargs = PyDict::new(py);
        let _ = kwargs.set_item("exc_info", exc_info);
        let _ = self.logger.bind(py).call_method("error", (message,), Some(&kwargs));
    }
}

pub struct WsgiHandler {
    pub shared: Arc<WsgiShared>,
}

impl Handler for WsgiHandler {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(RequestState::new_detached());
        let guard = DisconnectGuard(state);
        let shared = self.shared.clone();
        let runtime = tokio::runtime::Handle::current();
        let (parts, incoming) = req.into_parts();
        // A small body with a known length is read here, on the runtime: the app then reads
        // it from memory instead of handing each read back and forth between threads.
        let body = match incoming.size_hint().exact() {
            Some(len) if len > 0 && len <= PREFETCH_LIMIT => match read_frames(incoming).await {
                Ok(chunks) => InputSource::Read(chunks),
                Err(err) => {
                    log::debug!("the client went away while sending the request body: {err}");
                    guard.0.complete();
                    return error_response(StatusCode::BAD_REQUEST);
                }
            },
            _ => InputSource::Streamed(incoming),
        };
        self.shared.pool.spawn(Box::new(move || {
            Python::attach(|py| run_request(py, &shared, parts, body, peer, ResponseSlot::new(tx), runtime));
        }));
        match rx.await {
            Ok(mut response) => {
                response.body_mut().watch(guard);
                response
            }
            Err(_) => {
                guard.0.complete();
                error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

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
        let payload = self.stream.open();
        self.response.send(build_response(
            status,
            std::mem::take(&mut head.headers),
            ResponseBody::new(payload),
        ));
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
            .send(build_response(status, std::mem::take(&mut head.headers), body));
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

fn build_response(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Request bodies up to this size (with a content-length) are read before the app runs.
const PREFETCH_LIMIT: u64 = 64 * 1024;

/// Where `wsgi.input` reads from.
enum InputSource {
    /// The whole body, as the frames it came in (shared, not joined).
    Read(VecDeque<Bytes>),
    Streamed(Incoming),
}

async fn read_frames(mut incoming: Incoming) -> Result<VecDeque<Bytes>, hyper::Error> {
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

fn run_request(
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
        let input = Py::new(
            py,
            match body {
                InputSource::Read(data) => WsgiInput::read_already(data, runtime),
                InputSource::Streamed(incoming) => WsgiInput::new(RequestBody::new(incoming), runtime),
            },
        )?;
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

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn environ<'py>(
    py: Python<'py>,
    shared: &WsgiShared,
    parts: &http::request::Parts,
    peer: SocketAddr,
    input: Py<WsgiInput>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    let raw_path: Vec<u8> = percent_encoding::percent_decode_str(parts.uri.path()).collect();
    let path = latin1(&raw_path);
    let prefix = shared.script_name.as_str();
    // Outside the prefix the app is not mounted there: SCRIPT_NAME + PATH_INFO stays the path.
    let (script_name, path_info) = match path.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with('/')) => (prefix, rest),
        _ => ("", path.as_str()),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), parts.method.as_str())?;
    env.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    env.set_item(intern!(py, "QUERY_STRING"), parts.uri.query().unwrap_or(""))?;
    env.set_item(intern!(py, "SERVER_NAME"), shared.listener.ip.as_str())?;
    env.set_item(intern!(py, "SERVER_PORT"), shared.listener.port.to_string())?;
    env.set_item(
        intern!(py, "SERVER_PROTOCOL"),
        match parts.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        },
    )?;
    env.set_item(intern!(py, "REMOTE_ADDR"), peer.ip().to_string())?;
    env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
    for name in parts.headers.keys() {
        let mut joined = Vec::new();
        for (i, value) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                joined.push(b',');
            }
            joined.extend_from_slice(value.as_bytes());
        }
        let value = latin1(&joined);
        if name == CONTENT_TYPE {
            env.set_item(intern!(py, "CONTENT_TYPE"), value)?;
        } else if name == CONTENT_LENGTH {
            env.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
        } else {
            let key = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
            env.set_item(PyString::new(py, &key), value)?;
        }
    }
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            env.set_item(intern!(py, "HTTP_HOST"), authority.as_str())?;
        }
    }
    env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    env.set_item(intern!(py, "wsgi.url_scheme"), shared.listener.scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    env.set_item(intern!(py, "wsgi.errors"), shared.errors.bind(py))?;
    env.set_item(intern!(py, "wsgi.multithread"), true)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), shared.multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.file_wrapper"), py.get_type::<FileWrapper>())?;
    Ok(env)
}

fn parse_status(status: &str) -> PyResult<StatusCode> {
    let code = status
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status.len() == 3 || status.as_bytes()[3] == b' ')
        .ok_or_else(|| PyValueError::new_err(format!("WSGI: invalid status line {status:?}")))?;
    StatusCode::from_u16(code).map_err(|_| PyValueError::new_err(format!("WSGI: invalid status code {code}")))
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
        let mut map = HeaderMap::new();
        for item in headers.try_iter()? {
            let (name, value): (Bound<'_, PyString>, Bound<'_, PyString>) = item?.extract()?;
            let name = name.to_str()?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| PyValueError::new_err(format!("WSGI: invalid header name {name:?}")))?;
            let value = value.to_str()?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| PyValueError::new_err(format!("WSGI: invalid value for header {name}: {value:?}")))?;
            map.append(name, value);
        }
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

/// `wsgi.file_wrapper`: served from the file descriptor when the file-like has one.
#[pyclass(frozen, module = "granian._granian", name = "FileWrapper")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

impl FileWrapper {
    fn native_body(&self, py: Python<'_>) -> Option<ResponseBody> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
        let position: u64 = filelike
            .call_method0(intern!(py, "tell"))
            .ok()
            .and_then(|p| p.extract().ok())
            .unwrap_or(0);
        // A duplicate, so the app closing its file does not pull the descriptor from under us.
        let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        let file = unsafe { std::fs::File::from_raw_fd(owned.into_raw_fd()) };
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let len = meta.len().saturating_sub(position);
        file_body(file, position, len).ok()
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        if chunk.is_truthy()? {
            Ok(chunk.unbind())
        } else {
            Err(PyStopIteration::new_err(()))
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(close) = self.filelike.bind(py).getattr_opt(intern!(py, "close"))? {
            close.call0()?;
        }
        Ok(())
    }
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
    fn new(body: RequestBody, runtime: tokio::runtime::Handle) -> Self {
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
