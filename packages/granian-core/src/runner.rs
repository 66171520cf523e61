//! Running an app's coroutine on the event loop: as an `asyncio.Task` (`--task-impl
//! asyncio`, the default) wrapped so the request settles natively when it ends, or as a
//! native task (`--task-impl rust`).

use std::sync::Arc;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use crate::awaitable::{awaitable_iter, resume, Resumed};
use crate::task::{Finisher, RustTask, TaskHooks};

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

    /// Hands what the coroutine yielded to the task (`Some`); once it ended, settles the
    /// request and tells the task it is done (`None`, without an exception: the app's error
    /// was reported here).
    fn step(&mut self, py: Python<'_>, outcome: Resumed) -> Option<Py<PyAny>> {
        let error = match outcome {
            Resumed::Yielded(value) => return Some(value),
            Resumed::Returned => None,
            Resumed::Raised(err) if err.is_instance_of::<PyStopIteration>(py) => None,
            Resumed::Raised(err) => Some(err),
        };
        if let Some(finish) = self.finisher.take() {
            finish(py, error);
        }
        None
    }

    /// `send` and `throw` are method calls: their end is a raised `StopIteration`.
    fn step_or_stop(&mut self, py: Python<'_>, outcome: Resumed) -> PyResult<Py<PyAny>> {
        self.step(py, outcome).ok_or_else(|| PyStopIteration::new_err(()))
    }
}

#[pymethods]
impl AppCoroutine {
    fn send(&mut self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let outcome = resume(py, &self.coro, &value);
        self.step_or_stop(py, outcome)
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
        };
        self.step_or_stop(py, Resumed::from_call(outcome))
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

    /// How the task steps the coroutine (`PyIter_Send` with `None` calls `tp_iternext`): the
    /// end is NULL without an exception set, so no `StopIteration` is made per request.
    fn __next__(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        let outcome = resume(py, &self.coro, &py.None().into_bound(py));
        self.step(py, outcome)
    }
}
