//! Python ⇄ Rust async hand-off.
//!
//! Tokio threads never take the GIL. Whatever must touch Python is boxed as a job and
//! queued on the [`LoopBridge`]; the asyncio loop owns the read end of a socket pair
//! (`loop.add_reader`) and drains the queue on its own thread, where it already holds the
//! GIL. One wake-up byte is written per batch, not per job, so a busy loop picks up many
//! requests per epoll round.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

pub struct BridgeQueue {
    jobs: Mutex<Vec<Job>>,
    signaled: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl BridgeQueue {
    fn new() -> std::io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Self {
            jobs: Mutex::new(Vec::with_capacity(64)),
            signaled: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        })
    }

    /// Queue a job to run on the loop thread. Callable from any thread, GIL or not.
    pub fn schedule(&self, job: Job) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).push(job);
        if !self.signaled.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending: nothing lost.
            let _ = (&self.wake_tx).write(&[1u8]);
        }
    }

    fn drain(&self, py: Python<'_>) {
        let mut sink = [0u8; 256];
        while let Ok(n) = (&self.wake_rx).read(&mut sink) {
            if n < sink.len() {
                break;
            }
        }
        // Cleared before taking the jobs: anything queued after this line wakes us again.
        self.signaled.store(false, Ordering::Release);
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
        for job in jobs {
            if catch_unwind(AssertUnwindSafe(|| job(py))).is_err() {
                log::error!("internal error while handing work to the event loop");
            }
        }
    }
}

/// The loop side of the bridge, given to Python so it can `add_reader` the wake socket.
#[pyclass(frozen, module = "granian._granian")]
pub struct LoopBridge {
    pub queue: Arc<BridgeQueue>,
}

#[pymethods]
impl LoopBridge {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            queue: Arc::new(BridgeQueue::new()?),
        })
    }

    fn fileno(&self) -> i32 {
        self.queue.wake_rx.as_raw_fd()
    }

    fn drain(&self, py: Python<'_>) {
        self.queue.drain(py);
    }
}

/// The bits of the running asyncio loop that native code calls often, looked up once.
pub struct LoopHandles {
    pub create_future: Py<PyAny>,
    pub create_task: Py<PyAny>,
}

impl LoopHandles {
    pub fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            create_future: event_loop.getattr("create_future")?.unbind(),
            create_task: event_loop.getattr("create_task")?.unbind(),
        })
    }

    pub fn future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.create_future.bind(py).call0()
    }
}

/// Completes an asyncio future on the loop thread, unless the app already cancelled it.
pub fn resolve(queue: &BridgeQueue, future: Py<PyAny>, outcome: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static) {
    queue.schedule(Box::new(move |py| {
        let future = future.bind(py);
        if future.call_method0(pyo3::intern!(py, "done")).is_ok_and(|d| d.is_truthy().unwrap_or(true)) {
            return;
        }
        let _ = match outcome(py) {
            Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
            Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),)),
        };
    }));
}

/// An awaitable whose value is already known: awaiting it never touches the event loop.
#[pyclass(module = "granian._granian")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Self {
        Self { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

/// An awaitable that raises as soon as it is awaited.
#[pyclass(module = "granian._granian")]
pub struct Failed {
    error: Option<PyErr>,
}

impl Failed {
    pub fn new(error: PyErr) -> Self {
        Self { error: Some(error) }
    }
}

#[pymethods]
impl Failed {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<()> {
        Err(self.error.take().unwrap_or_else(|| PyStopIteration::new_err(())))
    }
}
