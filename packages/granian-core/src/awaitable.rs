//! Awaitables handed to apps without a trip through the event loop, and resuming a
//! coroutine natively.

use std::sync::Mutex;

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// An awaitable whose outcome is already known: awaiting it never touches the event loop.
/// One that completed with None holds no state that awaiting changes, so one shared
/// instance serves every such operation (no object allocated per send).
#[pyclass(frozen, module = "granian._granian")]
pub struct Ready {
    value: Option<Py<PyAny>>,
    /// Raised (once) when awaited. None for the usual awaitable done with a value: awaiting
    /// that one takes no lock.
    error: Option<Mutex<Option<PyErr>>>,
}

/// An awaitable that is already done with `value`.
pub fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    if value.is_none(py) {
        return Ok(ready_none(py));
    }
    let ready = Ready {
        value: Some(value),
        error: None,
    };
    Ok(Py::new(py, ready)?.into_any())
}

/// An awaitable that raises `error` as soon as it is awaited.
pub fn failed(py: Python<'_>, error: PyErr) -> PyResult<Py<PyAny>> {
    let ready = Ready {
        value: None,
        error: Some(Mutex::new(Some(error))),
    };
    Ok(Py::new(py, ready)?.into_any())
}

static READY_NONE: PyOnceLock<Py<Ready>> = PyOnceLock::new();

/// The shared awaitable that is already done with None.
pub fn ready_none(py: Python<'_>) -> Py<PyAny> {
    READY_NONE
        .get_or_init(py, || {
            let ready = Ready {
                value: None,
                error: None,
            };
            Py::new(py, ready).expect("allocating the shared Ready awaitable")
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
        if let Some(error) = self.error.as_ref().and_then(|e| e.lock().ok()?.take()) {
            return Err(error);
        }
        match &self.value {
            Some(value) => Err(PyStopIteration::new_err((value.clone_ref(py),))),
            // Ending without an exception set is how an iterator returns None: no StopIteration built.
            None => Ok(None),
        }
    }
}

/// The iterator that drives an awaitable: the coroutine itself, or what `__await__` returns.
pub fn awaitable_iter<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `obj` is a live object for the duration of the call; the check only reads its type.
    if unsafe { pyo3::ffi::PyCoro_CheckExact(obj.as_ptr()) } != 0 {
        return Ok(obj.clone());
    }
    match obj.getattr(pyo3::intern!(obj.py(), "__await__")) {
        Ok(method) => method.call0(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "the application returned {}, not an awaitable",
            obj.get_type().name()?
        ))),
    }
}

/// What resuming a coroutine gave.
pub enum Resumed {
    /// It suspended, handing over this value (a future to wait on, or None).
    Yielded(Py<PyAny>),
    /// It finished.
    Returned,
    Raised(PyErr),
}

impl Resumed {
    /// The outcome of a Python-level `send` or `throw` call.
    pub fn from_call(outcome: PyResult<Bound<'_, PyAny>>) -> Self {
        match outcome {
            Ok(value) => Resumed::Yielded(value.unbind()),
            Err(err) => Resumed::Raised(err),
        }
    }
}

/// Resumes `coro` with `value`, as `coro.send(value)` does, through `PyIter_Send`: no bound
/// method looked up and no StopIteration built when it finishes.
pub fn resume(py: Python<'_>, coro: &Py<PyAny>, value: &Bound<'_, PyAny>) -> Resumed {
    let mut result: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both pointers are live references held for the call (the GIL is held through
    // `py`); PyIter_Send stores a new reference, or NULL with an exception set, in `result`.
    let status = unsafe { pyo3::ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut result) };
    match status {
        // SAFETY: on PYGEN_NEXT `result` is a new, non-NULL reference that we now own.
        pyo3::ffi::PySendResult::PYGEN_NEXT => Resumed::Yielded(unsafe { Bound::from_owned_ptr(py, result) }.unbind()),
        pyo3::ffi::PySendResult::PYGEN_RETURN => {
            // SAFETY: on PYGEN_RETURN `result` is the return value, a new reference we own
            // and do not need (the apps' return values are ignored).
            unsafe { pyo3::ffi::Py_XDECREF(result) };
            Resumed::Returned
        }
        _ => match PyErr::take(py) {
            Some(err) => Resumed::Raised(err),
            None => Resumed::Returned,
        },
    }
}
