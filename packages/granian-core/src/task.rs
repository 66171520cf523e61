//! `--task-impl rust`: app coroutines stepped natively instead of by `asyncio.Task`.
//!
//! The first step runs at once, inside the bridge job that built the request, so a handler
//! that never suspends costs no task object, no `call_soon` handle and no extra loop
//! iteration. When the coroutine does suspend on an asyncio future, the task wakes up from
//! that future's done callback, as `asyncio.Task` does. The object is registered as the
//! loop's current task while it runs, so `asyncio.current_task()`, `asyncio.timeout()`,
//! sniffio and anyio's cancel scopes see a task with the usual methods.

use pyo3::exceptions::asyncio::{CancelledError, InvalidStateError};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::awaitable::{resume, Resumed};

/// Told how an app's coroutine ended: with the error it raised, if any.
pub type Finisher = Box<dyn FnOnce(Python<'_>, Option<PyErr>) + Send + Sync>;

/// Module-level helpers of asyncio looked up once per worker.
pub struct TaskHooks {
    event_loop: Py<PyAny>,
    enter_task: Py<PyAny>,
    leave_task: Py<PyAny>,
    call_soon: Py<PyAny>,
}

impl TaskHooks {
    pub fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = event_loop.py();
        let tasks = py.import("asyncio.tasks")?;
        Ok(Self {
            event_loop: event_loop.clone().unbind(),
            enter_task: tasks.getattr("_enter_task")?.unbind(),
            leave_task: tasks.getattr("_leave_task")?.unbind(),
            call_soon: event_loop.getattr("call_soon")?.unbind(),
        })
    }

    /// Runs a done callback on the next loop turn, in its own context if it gave one.
    fn schedule_callback(&self, task: &Bound<'_, RustTask>, (callback, context): DoneCallback) -> PyResult<()> {
        let py = task.py();
        let kwargs = pyo3::types::PyDict::new(py);
        if let Some(context) = context {
            kwargs.set_item(intern!(py, "context"), context)?;
        }
        self.call_soon.call(py, (callback, task), Some(&kwargs))?;
        Ok(())
    }
}

#[pyclass(module = "granian._granian", weakref)]
pub struct RustTask {
    coro: Py<PyAny>,
    context: Py<PyAny>,
    /// Shared by every task of the worker: no reference counting per request.
    hooks: Arc<TaskHooks>,
    finisher: Option<Finisher>,
    name: Option<Py<PyAny>>,
    /// The future the coroutine waits on; cancelling the task cancels it.
    fut_waiter: Option<Py<PyAny>>,
    must_cancel: bool,
    cancel_message: Option<Py<PyAny>>,
    cancel_requests: u32,
    done: bool,
    cancelled: bool,
    done_callbacks: Vec<DoneCallback>,
}

/// A callback given to `add_done_callback`, with the context it asked to run in.
type DoneCallback = (Py<PyAny>, Option<Py<PyAny>>);

impl RustTask {
    /// Wraps `coro` (the iterator of the app's awaitable) and runs its first step now.
    pub fn start(py: Python<'_>, hooks: &Arc<TaskHooks>, coro: Py<PyAny>, finisher: Finisher) -> PyResult<()> {
        // SAFETY: returns a new reference to a copy of the running context, or NULL with an
        // exception set.
        let context = unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_CopyCurrent())? }.unbind();
        let task = Bound::new(
            py,
            Self {
                coro,
                context,
                hooks: hooks.clone(),
                finisher: Some(finisher),
                name: None,
                fut_waiter: None,
                must_cancel: false,
                cancel_message: None,
                cancel_requests: 0,
                done: false,
                cancelled: false,
                done_callbacks: Vec::new(),
            },
        )?;
        Self::step(&task, None);
        Ok(())
    }

    /// Resumes the coroutine with `None`, or throws `error` into it, and handles what it
    /// yields next. Never raises: failures end the task through the finisher.
    fn step(task: &Bound<'_, Self>, error: Option<PyErr>) {
        let py = task.py();
        let (coro, context, error) = {
            let mut this = task.borrow_mut();
            if this.done {
                return;
            }
            this.fut_waiter = None;
            let error = match error {
                None if this.must_cancel => {
                    this.must_cancel = false;
                    Some(this.cancelled_error(py))
                }
                other => other,
            };
            (this.coro.clone_ref(py), this.context.clone_ref(py), error)
        };

        let outcome = Self::run_in_task(task, &context, || match error {
            None => resume(py, &coro, &py.None().into_bound(py)),
            Some(err) => Resumed::from_call(coro.bind(py).call_method1(intern!(py, "throw"), (err.into_value(py),))),
        });

        match outcome {
            Resumed::Yielded(yielded) => Self::suspend(task, yielded.into_bound(py)),
            Resumed::Returned => Self::finish(task, None),
            Resumed::Raised(err) if err.is_instance_of::<PyStopIteration>(py) => Self::finish(task, None),
            Resumed::Raised(err) => Self::finish(task, Some(err)),
        }
    }

    /// Runs `body` inside the task's context with the task registered as current.
    fn run_in_task(task: &Bound<'_, Self>, context: &Py<PyAny>, body: impl FnOnce() -> Resumed) -> Resumed {
        let py = task.py();
        // SAFETY: `context` is a live contextvars.Context owned by the task; a context is
        // only entered by its own task's steps, which never nest.
        if unsafe { pyo3::ffi::PyContext_Enter(context.as_ptr()) } != 0 {
            return Resumed::Raised(PyErr::fetch(py));
        }
        let hooks = task.borrow().hooks.clone();
        let outcome = match hooks.enter_task.call1(py, (&hooks.event_loop, task)) {
            Ok(_) => {
                let outcome = body();
                if let Err(err) = hooks.leave_task.call1(py, (&hooks.event_loop, task)) {
                    err.write_unraisable(py, Some(task.as_any()));
                }
                outcome
            }
            Err(err) => Resumed::Raised(err),
        };
        // SAFETY: exits the context entered above, on the same thread.
        unsafe { pyo3::ffi::PyContext_Exit(context.as_ptr()) };
        outcome
    }

    /// The coroutine yielded: wait on the future it handed over, the way asyncio.Task does.
    fn suspend(task: &Bound<'_, Self>, yielded: Bound<'_, PyAny>) {
        let py = task.py();
        if yielded.is_none() {
            // A bare `yield` (asyncio.sleep(0)): give the loop one turn, then go on.
            let hooks = task.borrow().hooks.clone();
            if let Err(err) = hooks
                .call_soon
                .call1(py, (task.getattr(intern!(py, "_wakeup")).ok(), py.None()))
            {
                Self::step(task, Some(err));
            }
            return;
        }
        let blocking = match yielded.getattr(intern!(py, "_asyncio_future_blocking")) {
            Ok(flag) => flag.is_truthy().unwrap_or(false),
            Err(_) => {
                let message = format!(
                    "Task got bad yield: {}",
                    yielded.repr().map(|r| r.to_string()).unwrap_or_default()
                );
                return Self::step(task, Some(PyRuntimeError::new_err(message)));
            }
        };
        if !blocking {
            return Self::step(
                task,
                Some(PyRuntimeError::new_err("yield was used instead of yield from in task")),
            );
        }
        let registered = (|| -> PyResult<()> {
            yielded.setattr(intern!(py, "_asyncio_future_blocking"), false)?;
            yielded.call_method1(
                intern!(py, "add_done_callback"),
                (task.getattr(intern!(py, "_wakeup"))?,),
            )?;
            Ok(())
        })();
        if let Err(err) = registered {
            return Self::step(task, Some(err));
        }
        let cancel_now = {
            let mut this = task.borrow_mut();
            this.fut_waiter = Some(yielded.clone().unbind());
            this.must_cancel
                .then(|| this.cancel_message.as_ref().map(|m| m.clone_ref(py)))
        };
        if let Some(message) = cancel_now {
            // cancel() arrived while the coroutine ran: pass it on to what it now awaits.
            if yielded
                .call_method1(intern!(py, "cancel"), (message,))
                .is_ok_and(|c| c.is_truthy().unwrap_or(false))
            {
                task.borrow_mut().must_cancel = false;
            }
        }
    }

    fn finish(task: &Bound<'_, Self>, error: Option<PyErr>) {
        let py = task.py();
        let (finisher, callbacks, hooks) = {
            let mut this = task.borrow_mut();
            this.done = true;
            this.cancelled = error.as_ref().is_some_and(|e| e.is_instance_of::<CancelledError>(py));
            (
                this.finisher.take(),
                std::mem::take(&mut this.done_callbacks),
                this.hooks.clone(),
            )
        };
        if let Some(finish) = finisher {
            finish(py, error);
        }
        for callback in callbacks {
            if let Err(err) = hooks.schedule_callback(task, callback) {
                err.write_unraisable(py, Some(task.as_any()));
            }
        }
    }

    fn cancelled_error(&self, py: Python<'_>) -> PyErr {
        match &self.cancel_message {
            Some(message) => CancelledError::new_err((message.clone_ref(py),)),
            None => CancelledError::new_err(()),
        }
    }
}

#[pymethods]
impl RustTask {
    /// Done callback of the awaited future (and `call_soon` target after a bare yield).
    fn _wakeup(slf: &Bound<'_, Self>, _future: Bound<'_, PyAny>) {
        Self::step(slf, None);
    }

    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> bool {
        let py = slf.py();
        let waiter = {
            let mut this = slf.borrow_mut();
            if this.done {
                return false;
            }
            this.cancel_requests += 1;
            this.fut_waiter.as_ref().map(|w| w.clone_ref(py))
        };
        if let Some(waiter) = waiter {
            // The waiter's done callback resumes us, and the coroutine sees CancelledError.
            if waiter
                .call_method1(py, intern!(py, "cancel"), (msg.as_ref().map(|m| m.clone_ref(py)),))
                .is_ok_and(|c| c.is_truthy(py).unwrap_or(false))
            {
                return true;
            }
        }
        let mut this = slf.borrow_mut();
        this.must_cancel = true;
        this.cancel_message = msg;
        true
    }

    fn cancelling(&self) -> u32 {
        self.cancel_requests
    }

    fn uncancel(&mut self) -> u32 {
        self.cancel_requests = self.cancel_requests.saturating_sub(1);
        if self.cancel_requests == 0 {
            self.must_cancel = false;
        }
        self.cancel_requests
    }

    fn done(&self) -> bool {
        self.done
    }

    fn cancelled(&self) -> bool {
        self.cancelled
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match (self.done, self.cancelled) {
            (false, _) => Err(InvalidStateError::new_err("Result is not set.")),
            (true, true) => Err(self.cancelled_error(py)),
            (true, false) => Ok(py.None()),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.result(py).map(|_| py.None())
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(slf: &Bound<'_, Self>, callback: Py<PyAny>, context: Option<Py<PyAny>>) -> PyResult<()> {
        if slf.borrow().done {
            let hooks = slf.borrow().hooks.clone();
            hooks.schedule_callback(slf, (callback, context))
        } else {
            slf.borrow_mut().done_callbacks.push((callback, context));
            Ok(())
        }
    }

    fn remove_done_callback(&mut self, py: Python<'_>, callback: Bound<'_, PyAny>) -> usize {
        let before = self.done_callbacks.len();
        self.done_callbacks
            .retain(|(cb, _)| !cb.bind(py).eq(&callback).unwrap_or(false));
        before - self.done_callbacks.len()
    }

    fn get_coro(&self, py: Python<'_>) -> Py<PyAny> {
        self.coro.clone_ref(py)
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.hooks.event_loop.clone_ref(py)
    }

    fn get_name(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.name {
            Some(name) => name.clone_ref(py),
            None => PyString::new(py, "granian-rust-task").into_any().unbind(),
        }
    }

    fn set_name(&mut self, name: Bound<'_, PyAny>) -> PyResult<()> {
        self.name = Some(name.str()?.into_any().unbind());
        Ok(())
    }

    #[getter]
    fn _fut_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.fut_waiter.as_ref().map(|w| w.clone_ref(py))
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.hooks.event_loop.clone_ref(py)
    }

    /// The pending done callbacks as `(callback, context)` pairs, as asyncio keeps them.
    #[getter]
    fn _callbacks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        pyo3::types::PyList::new(
            py,
            self.done_callbacks
                .iter()
                .map(|(callback, context)| (callback.clone_ref(py), context.as_ref().map(|c| c.clone_ref(py)))),
        )
    }

    #[getter]
    fn _must_cancel(&self) -> bool {
        self.must_cancel
    }

    fn __repr__(&self) -> String {
        let state = if self.done { "finished" } else { "pending" };
        format!("<RustTask {state}>")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.coro)?;
        visit.call(&self.context)?;
        if let Some(waiter) = &self.fut_waiter {
            visit.call(waiter)?;
        }
        for (callback, context) in &self.done_callbacks {
            visit.call(callback)?;
            if let Some(context) = context {
                visit.call(context)?;
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.fut_waiter = None;
        self.done_callbacks.clear();
    }
}
