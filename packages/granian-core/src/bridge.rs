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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::task::{RustTask, TaskHooks};

pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Work the loop thread hands back to the runtime (a response to its connection).
pub type Delivery = Box<dyn FnOnce() + Send>;

/// Deliveries that leave together at most: enough for the wake-up to be shared, few enough
/// that the first responses of a long loop pass do not wait for the last.
const BATCH_LIMIT: usize = 16;

pub struct BridgeQueue {
    jobs: Mutex<Vec<Job>>,
    signaled: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    outbox: Outbox,
}

/// Deliveries from the loop thread to the runtime, handed over in batches.
///
/// Completing a response wakes the task waiting for it; from the loop thread that is a
/// cross-thread wake-up of the runtime (an eventfd write, and on a shared core often a
/// switch to the runtime thread at once, which then writes that one response alone).
/// Batched, the runtime is woken once for every response the loop produced in one pass,
/// and an HTTP/2 connection writes the frames of all its finished streams together.
struct Outbox {
    pending: Mutex<Vec<(tokio::runtime::Handle, Delivery)>>,
    /// A flush is already due: at the end of the current drain, or queued with call_soon.
    flush_due: AtomicBool,
    draining: AtomicBool,
    /// `(loop.call_soon, flusher)`: how a flush is queued when no drain is running.
    scheduler: PyOnceLock<(Py<PyAny>, Py<PyAny>)>,
    /// The loop's thread: only deliveries made there wait for the batch.
    loop_thread: OnceLock<ThreadId>,
    /// Requests of this loop still waiting for their response: when the last one answers,
    /// the batch is complete and leaves at once (a lone request waits for no loop pass).
    awaiting: AtomicUsize,
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
            outbox: Outbox {
                pending: Mutex::new(Vec::with_capacity(64)),
                flush_due: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                scheduler: PyOnceLock::new(),
                loop_thread: OnceLock::new(),
                awaiting: AtomicUsize::new(0),
            },
        })
    }

    /// Runs `delivery` soon: from the loop's thread with the other deliveries of this loop
    /// pass (on `runtime`), from any other thread at once (an app may answer from a thread
    /// of its own; nothing would flush a batch there).
    pub fn deliver(self: &Arc<Self>, runtime: &tokio::runtime::Handle, delivery: Delivery) {
        let outbox = &self.outbox;
        if outbox.loop_thread.get() != Some(&std::thread::current().id()) {
            delivery();
            return;
        }
        let queued = {
            let mut pending = outbox.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((runtime.clone(), delivery));
            pending.len()
        };
        let draining = outbox.draining.load(Ordering::Acquire);
        // Leaves now when nothing else of this pass is coming (no other request of the loop
        // awaits its answer), or when the batch is long enough that the first answers would
        // wait too long for the last.
        if queued >= BATCH_LIMIT || (outbox.awaiting.load(Ordering::Acquire) == 0 && !draining) {
            self.flush_outbox();
            return;
        }
        if outbox.flush_due.swap(true, Ordering::AcqRel) {
            return;
        }
        if draining {
            return; // the drain flushes when its jobs are done
        }
        // Deliveries come from the loop thread, which holds the GIL: attaching is a check.
        let scheduled = Python::attach(|py| {
            outbox
                .scheduler
                .get(py)
                .is_some_and(|(call_soon, flusher)| call_soon.bind(py).call1((flusher.bind(py),)).is_ok())
        });
        if !scheduled {
            self.flush_outbox();
        }
    }

    /// A request that will answer through `deliver` started.
    pub fn response_awaited(&self) {
        self.outbox.awaiting.fetch_add(1, Ordering::AcqRel);
    }

    /// That request answered (or gave up): called before its delivery.
    pub fn response_settled(&self) {
        self.outbox.awaiting.fetch_sub(1, Ordering::AcqRel);
    }

    fn flush_outbox(&self) {
        let outbox = &self.outbox;
        outbox.flush_due.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *outbox.pending.lock().unwrap_or_else(|e| e.into_inner()));
        // One task per runtime (one unless several single-thread runtimes serve this loop):
        // one wake-up each, and the completions happen on the runtime's own thread, where
        // waking the connections' tasks costs no syscall.
        let mut by_runtime: Vec<(tokio::runtime::Handle, Vec<Delivery>)> = Vec::new();
        for (runtime, delivery) in batch {
            match by_runtime.iter_mut().find(|(r, _)| r.id() == runtime.id()) {
                Some((_, deliveries)) => deliveries.push(delivery),
                None => by_runtime.push((runtime, vec![delivery])),
            }
        }
        for (runtime, deliveries) in by_runtime {
            runtime.spawn(async move {
                for delivery in deliveries {
                    delivery();
                }
            });
        }
    }

    /// Queue a job to run on the loop thread. Callable from any thread, GIL or not.
    pub fn schedule(self: &Arc<Self>, job: Job) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).push(job);
        if !self.signaled.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                // On a runtime thread, the wake-up waits behind the tasks already runnable:
                // the other connections that have a request ready queue theirs first, and
                // the loop thread, once woken (it takes the core at once), drains them all.
                Ok(runtime) => {
                    let queue = self.clone();
                    runtime.spawn(async move { queue.wake() });
                }
                Err(_) => self.wake(),
            }
        }
    }

    fn wake(&self) {
        // A full socket buffer means a wake-up is already pending: nothing lost.
        let _ = (&self.wake_tx).write(&[1u8]);
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
        self.outbox.draining.store(true, Ordering::Release);
        for job in jobs {
            if catch_unwind(AssertUnwindSafe(|| job(py))).is_err() {
                log::error!("internal error while handing work to the event loop");
            }
        }
        self.outbox.draining.store(false, Ordering::Release);
        if self.outbox.flush_due.load(Ordering::Acquire) {
            self.flush_outbox();
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

    /// Lets deliveries made outside a drain be flushed with `loop.call_soon`, after the
    /// tasks that are ready in this pass of the loop. Without it they go out one by one.
    fn bind_loop(slf: &Bound<'_, Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let call_soon = event_loop.getattr("call_soon")?.unbind();
        let flusher = Py::new(
            py,
            OutboxFlusher {
                queue: Arc::downgrade(&slf.get().queue),
            },
        )?
        .into_any();
        let outbox = &slf.get().queue.outbox;
        let _ = outbox.scheduler.set(py, (call_soon, flusher));
        let _ = outbox.loop_thread.set(std::thread::current().id());
        Ok(())
    }

    /// Hands over what is still waiting in the outbox (a loop that stops before its
    /// queued flush ran).
    fn flush(&self) {
        self.queue.flush_outbox();
    }
}

/// What `call_soon` runs to flush the outbox. Weak: the queue holds this object, and a
/// strong reference back would keep both (and the loop) alive forever.
#[pyclass(frozen, module = "granian._granian")]
struct OutboxFlusher {
    queue: std::sync::Weak<BridgeQueue>,
}

#[pymethods]
impl OutboxFlusher {
    fn __call__(&self) {
        if let Some(queue) = self.queue.upgrade() {
            queue.flush_outbox();
        }
    }
}

/// The bits of the running asyncio loop that native code calls often, looked up once.
pub struct LoopHandles {
    pub create_future: Py<PyAny>,
    runner: TaskRunner,
}

/// How app coroutines are run: `--task-impl asyncio` or `rust`.
enum TaskRunner {
    Asyncio { create_task: Py<PyAny> },
    Rust(Arc<TaskHooks>),
}

impl LoopHandles {
    pub fn new(event_loop: &Bound<'_, PyAny>, rust_tasks: bool) -> PyResult<Self> {
        let runner = if rust_tasks {
            TaskRunner::Rust(Arc::new(TaskHooks::new(event_loop)?))
        } else {
            TaskRunner::Asyncio {
                create_task: event_loop.getattr("create_task")?.unbind(),
            }
        };
        Ok(Self {
            create_future: event_loop.getattr("create_future")?.unbind(),
            runner,
        })
    }

    pub fn future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.create_future.bind(py).call0()
    }

    /// Runs what the app returned as a task; `finisher` hears how it ended.
    pub fn spawn(&self, awaitable: &Bound<'_, PyAny>, finisher: Finisher) -> PyResult<()> {
        let py = awaitable.py();
        let coro = awaitable_iter(awaitable)?.unbind();
        match &self.runner {
            TaskRunner::Asyncio { create_task } => {
                create_task.bind(py).call1((AppCoroutine::new(coro, finisher),))?;
            }
            TaskRunner::Rust(hooks) => RustTask::start(py, hooks, coro, finisher)?,
        }
        Ok(())
    }
}

/// Completes an asyncio future on the loop thread, unless the app already cancelled it.
pub fn resolve(
    queue: &Arc<BridgeQueue>,
    future: Py<PyAny>,
    outcome: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
) {
    queue.schedule(Box::new(move |py| {
        let future = future.bind(py);
        if future
            .call_method0(pyo3::intern!(py, "done"))
            .is_ok_and(|d| d.is_truthy().unwrap_or(true))
        {
            return;
        }
        let _ = match outcome(py) {
            Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
            Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),)),
        };
    }));
}

/// An awaitable whose value is already known: awaiting it never touches the event loop.
/// It holds no state that awaiting changes, so one shared instance serves every operation
/// that completed with None (no object allocated per send).
#[pyclass(frozen, module = "granian._granian")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

/// An awaitable that is already done with `value`.
pub fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    if value.is_none(py) {
        return Ok(done(py));
    }
    Ok(Py::new(py, Ready { value: Some(value) })?.into_any())
}

static DONE: PyOnceLock<Py<Ready>> = PyOnceLock::new();

/// The shared awaitable that completes at once with None.
pub fn done(py: Python<'_>) -> Py<PyAny> {
    DONE.get_or_init(py, || {
        Py::new(py, Ready { value: None }).expect("allocating the shared Ready awaitable")
    })
    .clone_ref(py)
    .into_any()
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.value {
            Some(value) => Err(PyStopIteration::new_err((value.clone_ref(py),))),
            // Ending without an exception set is how an iterator returns None: no StopIteration built.
            None => Ok(None),
        }
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

/// The iterator that drives an awaitable: the coroutine itself, or what `__await__` returns.
pub fn awaitable_iter<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if unsafe { pyo3::ffi::PyCoro_CheckExact(obj.as_ptr()) } != 0 {
        return Ok(obj.clone());
    }
    match obj.getattr(pyo3::intern!(obj.py(), "__await__")) {
        Ok(method) => method.call0(),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "the application returned {}, not an awaitable",
            obj.get_type().name()?
        ))),
    }
}

pub type Finisher = Box<dyn FnOnce(Python<'_>, Option<PyErr>) + Send + Sync>;

/// Wraps an app's coroutine so the task that runs it settles the request natively when the
/// coroutine ends: no done-callback round trip through the loop, and an app exception is
/// logged once here instead of surfacing as "Task exception was never retrieved".
#[pyclass(module = "granian._granian")]
pub struct AppCoroutine {
    coro: Py<PyAny>,
    finisher: Option<Finisher>,
}

impl AppCoroutine {
    pub fn new(coro: Py<PyAny>, finisher: Finisher) -> Self {
        Self {
            coro,
            finisher: Some(finisher),
        }
    }

    fn step(&mut self, py: Python<'_>, outcome: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match outcome {
            Ok(yielded) => Ok(yielded),
            Err(err) => {
                let error = if err.is_instance_of::<PyStopIteration>(py) {
                    None
                } else {
                    Some(err)
                };
                if let Some(finish) = self.finisher.take() {
                    finish(py, error);
                }
                Err(PyStopIteration::new_err(()))
            }
        }
    }

    fn send_inner(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut result: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both pointers are valid, owned references for the call; PyIter_Send hands
        // back a new reference (or NULL with an exception set) in `result`.
        let status = unsafe { pyo3::ffi::PyIter_Send(self.coro.as_ptr(), value.as_ptr(), &mut result) };
        match status {
            pyo3::ffi::PySendResult::PYGEN_NEXT => Ok(unsafe { Bound::from_owned_ptr(py, result) }.unbind()),
            pyo3::ffi::PySendResult::PYGEN_RETURN => {
                unsafe { pyo3::ffi::Py_XDECREF(result) };
                Err(PyStopIteration::new_err(()))
            }
            _ => Err(PyErr::take(py).unwrap_or_else(|| PyStopIteration::new_err(()))),
        }
    }
}

#[pymethods]
impl AppCoroutine {
    fn send(&mut self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let outcome = self.send_inner(py, &value);
        self.step(py, outcome)
    }

    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let coro = self.coro.bind(py).clone();
        let outcome = match (val, tb) {
            (None, None) => coro.call_method1(pyo3::intern!(py, "throw"), (typ,)),
            (val, tb) => coro.call_method1(pyo3::intern!(py, "throw"), (typ, val, tb)),
        }
        .map(Bound::unbind);
        self.step(py, outcome)
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        let closed = self.coro.bind(py).call_method0(pyo3::intern!(py, "close"));
        if let Some(finish) = self.finisher.take() {
            finish(py, closed.as_ref().err().map(|e| e.clone_ref(py)));
        }
        closed.map(|_| ())
    }

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let outcome = self.send_inner(py, &py.None().into_bound(py));
        self.step(py, outcome)
    }
}
